/* ts_h2.h: the HTTP/2 server session inside the Noise stream (transport spec 2.7 and 6): requests
 * in, complete and never-ending responses out. Sans-I/O over libnghttp2; no threads or httpd. */
#ifndef TS_H2_H
#define TS_H2_H

#include <apr_errno.h>
#include <stddef.h>
#include <stdint.h>

/* Threading: a session and everything reached through it belong to one thread at a time (the
 * connection's owner: its event loop or its worker). No call is thread-safe; producers on other
 * threads hand data to the owner, which then calls ts_h2_stream_write (apache-notes 2.4, 3).
 *
 * Re-entrancy: the request callback may call every function below except ts_h2_session_recv,
 * ts_h2_session_send and ts_h2_session_destroy. The closed callback may call none.
 *
 * Status codes, with *errmsg (static text) where a function takes one:
 *   APR_SUCCESS
 *   APR_EGENERAL  fatal session error (bad preface, protocol violation, flood): flush the
 *                 pending output (it may hold a GOAWAY), then close the connection;
 *   APR_ENOMEM    out of memory: treat as fatal;
 *   APR_ENOSPC    ts_h2_stream_write: the stream's queue cap would be exceeded; nothing queued;
 *   APR_NOTFOUND  no such stream: closed, reset, or never handed to the request callback;
 *   APR_EINVAL    misuse: a response already started or ended, a bad status or header. */

#define TS_H2_DEFAULT_MAX_STREAMS      250          /* Go's server default; spec 2.7 */
#define TS_H2_DEFAULT_MAX_HEADER_LIST  (16u << 10)  /* RFC 9113 accounting: name + value + 32 */
#define TS_H2_DEFAULT_STREAM_WINDOW    (1u << 20)   /* a whole default body without a round trip */
#define TS_H2_DEFAULT_CONN_WINDOW      (2u << 20)
#define TS_H2_DEFAULT_MAX_BODY         (1u << 20)   /* spec 6.2, as headscale */
#define TS_H2_DEFAULT_MAX_QUEUED       (4u << 20)   /* per stream, bytes waiting for the client */

typedef struct ts_h2_session ts_h2_session_t;

/* Optional allocator for the session, its streams and nghttp2 itself (plain malloc when NULL).
 * Lets tests count bytes and inject failures; must not be an APR pool. */
typedef struct ts_h2_mem {
    void *baton;
    void *(*malloc)(size_t size, void *baton);
    void (*free)(void *ptr, void *baton);
    void *(*calloc)(size_t nmemb, size_t size, void *baton);
    void *(*realloc)(void *ptr, size_t size, void *baton);
} ts_h2_mem_t;

/* A complete request, valid only during the request callback; copy what you keep (or take the
 * body). Strings are NUL-terminated. */
typedef struct ts_h2_request {
    int32_t stream_id;
    void *conn_ctx;               /* the session's context: the client's machine key */
    const char *method;
    const char *path;             /* route on this (and method) only: spec 2.7 */
    const char *authority;        /* "" when absent; often "unused" */
    const char *content_type;     /* NULL when absent: clients often send none (spec 6.1) */
    int64_t content_length;       /* declared value, -1 when absent */
    uint8_t *body;                /* NULL when empty; else NUL-terminated (not in body_len) */
    size_t body_len;
} ts_h2_request_t;

typedef enum ts_h2_close_reason {
    TS_H2_CLOSE_COMPLETE,         /* the whole response went out, END_STREAM included */
    TS_H2_CLOSE_RESET,            /* RST_STREAM either way, or a stream error: see error_code */
    TS_H2_CLOSE_SESSION           /* the session was destroyed with the stream still open */
} ts_h2_close_reason_t;

/* Called once per request, on END_STREAM of a request whose body fit the cap. Respond now or
 * later (from the owner thread) by stream id. */
typedef void ts_h2_request_fn(void *conn_ctx, ts_h2_session_t *sess, ts_h2_request_t *req);

/* Called exactly once for every stream the request callback saw, when it goes away; stream_data
 * is what ts_h2_stream_set_data attached. Drop per-stream state here; the id is dead after. */
typedef void ts_h2_closed_fn(void *conn_ctx, int32_t stream_id, void *stream_data,
                             ts_h2_close_reason_t why, uint32_t error_code);

/* Zero fields take the defaults above. */
typedef struct ts_h2_config {
    uint32_t max_concurrent_streams;
    uint32_t max_header_list;     /* larger header blocks: 431, handler not called */
    uint32_t stream_window;       /* SETTINGS_INITIAL_WINDOW_SIZE we announce */
    uint32_t conn_window;         /* connection-level receive window */
    size_t max_body;              /* larger bodies (declared or sent): 413, handler not called */
    size_t max_queued;            /* cap on one stream's bytes waiting to be sent */
    ts_h2_request_fn *on_request; /* required */
    ts_h2_closed_fn *on_closed;   /* optional */
    const ts_h2_mem_t *mem;       /* optional; copied */
} ts_h2_config_t;

/* Response head. Header names must be lower case; content-length is added by ts_h2_respond. */
typedef struct ts_h2_header {
    const char *name;
    const char *value;
} ts_h2_header_t;

typedef struct ts_h2_response {
    int status;                   /* 200..599 */
    const char *content_type;     /* NULL: none */
    const ts_h2_header_t *headers;
    size_t nheaders;
} ts_h2_response_t;

/* ---- session ---- */

/* Creates the session and queues the server SETTINGS (the server preface) for the first send.
 * conn_ctx is opaque and never freed by us. */
apr_status_t ts_h2_session_create(ts_h2_session_t **sess, const ts_h2_config_t *conf,
                                  void *conn_ctx, const char **errmsg);

/* Calls on_closed (TS_H2_CLOSE_SESSION) for open handed-out streams, then frees everything. */
void ts_h2_session_destroy(ts_h2_session_t *sess);

void *ts_h2_session_ctx(const ts_h2_session_t *sess);

/* Feeds plaintext bytes from the client; dispatches callbacks. After a fatal status every later
 * call returns it again; still call ts_h2_session_send once to flush a GOAWAY, then close. */
apr_status_t ts_h2_session_recv(ts_h2_session_t *sess, const uint8_t *data, size_t len,
                                const char **errmsg);

/* Receives every piece of output; must take all len bytes (copy or seal them at once: data is
 * valid only during the call). A non-success return stops ts_h2_session_send and is returned;
 * the bytes handed over are gone from the session either way, so that is fatal. */
typedef apr_status_t ts_h2_out_fn(void *baton, const uint8_t *data, size_t len);

/* Hands pending output to out until nothing is left or at least budget bytes went out (the last
 * piece may overshoot by up to one frame). *sent (optional) gets the byte count. */
apr_status_t ts_h2_session_send(ts_h2_session_t *sess, size_t budget, ts_h2_out_fn *out,
                                void *baton, size_t *sent, const char **errmsg);

int ts_h2_session_want_read(const ts_h2_session_t *sess);
int ts_h2_session_want_write(const ts_h2_session_t *sess);
/* Neither wants read nor write: close the connection. */
int ts_h2_session_finished(const ts_h2_session_t *sess);

/* Bytes queued in all streams, waiting for the handler's next flush or the client's window.
 * With the driver's own out-buffer size this is the backpressure signal. */
size_t ts_h2_session_queued(const ts_h2_session_t *sess);

/* Streams the session holds: requests arriving, waiting for their answer, or answering (a
 * map stream). 0: nothing is in progress on this connection. */
size_t ts_h2_session_streams(const ts_h2_session_t *sess);

/* Graceful: GOAWAY(NO_ERROR) naming the last stream we took; those streams run on, newer ones
 * are refused. Never-ending responses must still be ended or reset by the caller. */
apr_status_t ts_h2_session_drain(ts_h2_session_t *sess);

/* Immediate: GOAWAY with error_code; nothing more is read. Flush with send, then close. */
apr_status_t ts_h2_session_terminate(ts_h2_session_t *sess, uint32_t error_code);

/* ---- requests and responses (by stream id) ---- */

/* Moves the request body out (free it with the session's allocator: ts_h2_free); req->body
 * becomes NULL. Lets a handler hand the body to a worker without copying. */
uint8_t *ts_h2_request_take_body(ts_h2_session_t *sess, ts_h2_request_t *req, size_t *len);
void ts_h2_free(ts_h2_session_t *sess, void *ptr);

/* A complete response; the body is copied. HEAD requests get the head only. */
apr_status_t ts_h2_respond(ts_h2_session_t *sess, int32_t stream_id,
                           const ts_h2_response_t *head, const uint8_t *body, size_t len);

/* A streaming response: the head now, the body by ts_h2_stream_write until ts_h2_stream_end. */
apr_status_t ts_h2_stream_start(ts_h2_session_t *sess, int32_t stream_id,
                                const ts_h2_response_t *head);

/* Copies len bytes into the stream's queue; they go out as the client's window allows. Fails
 * with APR_ENOSPC, queueing nothing, when the queue would exceed max_queued. */
apr_status_t ts_h2_stream_write(ts_h2_session_t *sess, int32_t stream_id, const uint8_t *data,
                                size_t len);

/* Ends the body after the queued bytes. */
apr_status_t ts_h2_stream_end(ts_h2_session_t *sess, int32_t stream_id);

/* RST_STREAM with error_code (e.g. 0x8 CANCEL); queued bytes are dropped. */
apr_status_t ts_h2_stream_reset(ts_h2_session_t *sess, int32_t stream_id, uint32_t error_code);

/* Bytes queued on one stream (0 for unknown streams). */
size_t ts_h2_stream_queued(const ts_h2_session_t *sess, int32_t stream_id);

/* The caller's per-stream pointer, passed back to on_closed. */
apr_status_t ts_h2_stream_set_data(ts_h2_session_t *sess, int32_t stream_id, void *data);
void *ts_h2_stream_data(const ts_h2_session_t *sess, int32_t stream_id);

#endif
