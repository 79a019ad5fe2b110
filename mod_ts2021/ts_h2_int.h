/* ts_h2_int.h: private to ts_h2*.c: the session and stream objects, their explicit states, and
 * the functions the session (ts_h2.c) and the stream code (ts_h2_stream.c) call in each other. */
#ifndef TS_H2_INT_H
#define TS_H2_INT_H

#include <nghttp2/nghttp2.h>

#include "ts_h2.h"

/* Request side of a stream. */
typedef enum ts_h2_req_phase {
    TS_H2_REQ_HEADERS,      /* header block arriving */
    TS_H2_REQ_BODY,         /* headers accepted, body arriving */
    TS_H2_REQ_REJECTED,     /* the core answered (413, 431); the rest is discarded, no handler */
    TS_H2_REQ_DISPATCHED    /* handed to on_request; from here on_closed is owed */
} ts_h2_req_phase_t;

/* Response side of a stream. */
typedef enum ts_h2_resp_phase {
    TS_H2_RESP_NONE,        /* nothing submitted yet */
    TS_H2_RESP_OPEN,        /* head submitted; body may still be appended */
    TS_H2_RESP_ENDING,      /* EOF queued behind the remaining bytes, or sent */
    TS_H2_RESP_RESET        /* RST_STREAM submitted; waiting for nghttp2 to close the stream */
} ts_h2_resp_phase_t;

typedef struct ts_h2_chunk {
    struct ts_h2_chunk *next;
    size_t len;             /* bytes in data */
    size_t off;             /* bytes already handed to nghttp2 */
    uint8_t data[];
} ts_h2_chunk_t;

/* What the request needs only until dispatch; freed then, so idle streams stay small. */
typedef struct ts_h2_reqbuf {
    char *method, *path, *authority, *host, *content_type;
    int64_t content_length;
    size_t header_bytes;    /* RFC 9113 accounting, against max_header_list */
    int too_large;          /* header list over the bound: answer 431 at END_HEADERS */
    uint8_t *body;
    size_t body_len, body_cap;
} ts_h2_reqbuf_t;

typedef struct ts_h2_stream {
    struct ts_h2_stream *prev, *next;   /* the session's list, walked on destroy */
    int32_t id;
    ts_h2_req_phase_t req_phase;
    ts_h2_resp_phase_t resp_phase;
    unsigned deferred : 1;  /* our data callback said DEFERRED: a write must resume it */
    unsigned is_head : 1;   /* HEAD: a head and no body, whatever the handler writes */
    unsigned end_sent : 1;  /* our END_STREAM is out: a close now is a completion */
    ts_h2_reqbuf_t *req;    /* until dispatch or rejection */
    ts_h2_chunk_t *first, *last;
    size_t queued;          /* unsent bytes in the chunks */
    void *user_data;
} ts_h2_stream_t;

struct ts_h2_session {
    nghttp2_session *ngh;
    ts_h2_config_t conf;    /* defaults filled in */
    ts_h2_mem_t mem;
    void *conn_ctx;
    ts_h2_stream_t *streams;
    size_t queued;          /* sum over streams */
    apr_status_t failed;    /* sticky, once recv or send hit a fatal error */
    const char *errmsg;
    int output_dead;        /* the output callback failed: nothing more can be written */
    int terminated;         /* ts_h2_session_terminate: input is ignored from then on */
};

/* Allocation through the session's allocator. */
void *ts_h2_alloc(ts_h2_session_t *sess, size_t size);
void *ts_h2_zalloc(ts_h2_session_t *sess, size_t size);

/* ts_h2_stream.c, called from the session's nghttp2 callbacks. Non-zero returns are nghttp2
 * error codes to hand back to the library. */
int ts_h2_stream_begin(ts_h2_session_t *sess, int32_t id);
int ts_h2_stream_on_header(ts_h2_session_t *sess, ts_h2_stream_t *st, const uint8_t *name,
                           size_t namelen, const uint8_t *value, size_t valuelen);
int ts_h2_stream_headers_done(ts_h2_session_t *sess, ts_h2_stream_t *st);
int ts_h2_stream_on_body(ts_h2_session_t *sess, ts_h2_stream_t *st, const uint8_t *data,
                         size_t len);
int ts_h2_stream_request_done(ts_h2_session_t *sess, ts_h2_stream_t *st);
int ts_h2_stream_sent_end(ts_h2_session_t *sess, ts_h2_stream_t *st);
void ts_h2_stream_gone(ts_h2_session_t *sess, ts_h2_stream_t *st, ts_h2_close_reason_t why,
                       uint32_t error_code);

#endif
