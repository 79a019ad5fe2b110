/* ts_conn.h: one TS2021 connection after the handshake: Noise records around an
 * HTTP/2 server session. Sans-I/O core (bytes in, bytes out); no httpd types. */
#ifndef TS_CONN_H
#define TS_CONN_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <stddef.h>
#include <stdint.h>

#include "ts_noise.h"

typedef struct ts_conn ts_conn_t;

/* A request as a handler sees it. Valid until the handler answers it. */
typedef struct ts_conn_request {
    ts_conn_t *conn;
    int32_t stream_id;
    const char *method;
    const char *path;
    const char *authority;
    const char *content_type;     /* NULL when absent */
    const uint8_t *body;
    size_t body_len;
    const uint8_t *machine_key;   /* the client's key, proven by the handshake */
    uint16_t version;             /* the client's capability version (Noise prologue) */
} ts_conn_request_t;

/* Called on the connection's owning thread for each complete request. The handler
 * must answer it (now, or later from the same thread) with ts_conn_respond or
 * ts_conn_stream_start. */
typedef void ts_conn_dispatch_fn(void *baton, const ts_conn_request_t *req);

/* Called when a stream ends (answered, reset by the client, or connection gone). */
typedef void ts_conn_closed_fn(void *baton, ts_conn_t *conn, int32_t stream_id);

typedef struct ts_conn_env {
    ts_conn_dispatch_fn *dispatch;
    ts_conn_closed_fn *stream_closed;   /* optional */
    void *baton;
    size_t max_body;                    /* request body cap (0: 1 MiB) */
    size_t max_stream_queue;            /* per-stream queued response bytes (0: 4 MiB) */
    int websocket;                      /* carrier: RFC 6455 binary messages (spec 2.6) */
} ts_conn_env_t;

/* With the WebSocket carrier, ts_conn_recv takes the client's WebSocket frames and de-frames
 * them before the Noise records; ts_conn_pending gives each record as one binary message,
 * answers pings, and ends with a close frame. WebSocket protocol errors queue a close frame
 * (1002, 1003, 1009) and fail the recv: send what is pending, then close. */


/* Takes over the session's ciphers (ns is wiped). Message 2 and the early payload were
 * sent already (with ns->tx, so its counter has moved on; on WebSocket, message 2 went in a
 * binary message of its own). */
apr_status_t ts_conn_create(ts_conn_t **conn, ts_noise_session_t *ns, const ts_conn_env_t *env,
                            const char **errmsg);
void ts_conn_destroy(ts_conn_t *conn);

/* Ciphertext from the client. Anything but APR_SUCCESS is fatal: close the connection. */
apr_status_t ts_conn_recv(ts_conn_t *conn, const uint8_t *in, size_t len, const char **errmsg);

/* Ciphertext to send: *out and *len stay valid until ts_conn_sent or the next recv/respond.
 * APR_SUCCESS with *len 0 when nothing is pending; other statuses are fatal. */
apr_status_t ts_conn_pending(ts_conn_t *conn, const uint8_t **out, size_t *len,
                             const char **errmsg);
void ts_conn_sent(ts_conn_t *conn, size_t n);

/* Seconds in the Retry-After header that every 503 answer carries. */
#define TS_CONN_RETRY_AFTER_S "2"

/* Answers a request at once. */
apr_status_t ts_conn_respond(ts_conn_t *conn, int32_t stream_id, int status,
                             const char *content_type, const uint8_t *body, size_t len);

/* Starts a response that goes on until ended; data follows with ts_conn_stream_write.
 * APR_ENOSPC from write: the client does not read and the stream's queue is full. */
apr_status_t ts_conn_stream_start(ts_conn_t *conn, int32_t stream_id, int status,
                                  const char *content_type);
apr_status_t ts_conn_stream_write(ts_conn_t *conn, int32_t stream_id, const uint8_t *data,
                                  size_t len);
apr_status_t ts_conn_stream_end(ts_conn_t *conn, int32_t stream_id);

/* Graceful end: GOAWAY, let open requests finish. */
void ts_conn_goaway(ts_conn_t *conn);

/* True once nothing more will be read or written: close the socket. */
int ts_conn_finished(const ts_conn_t *conn);

/* Sealed bytes waiting for the socket (backpressure: stop reading above a bound). */
size_t ts_conn_backlog(const ts_conn_t *conn);

/* HTTP/2 streams open on the connection (a request arriving or waiting for its answer, a
 * response under way): an idle timeout must not cut those. */
size_t ts_conn_streams(const ts_conn_t *conn);

/* Bytes the connection holds for its client: its HTTP/2 streams' queues plus sealed output. */
size_t ts_conn_queued(const ts_conn_t *conn);

/* Records decrypted so far: 0 means the client has not proven it holds the keys
 * (a replayed initiation never gets further). */
uint64_t ts_conn_records_in(const ts_conn_t *conn);

const uint8_t *ts_conn_machine_key(const ts_conn_t *conn);
/* Bytes of the HTTP/2 session held in their own mappings (its frame buffer: resident only
 * where touched, returned to the system at ts_conn_destroy). */
size_t ts_conn_mapped(const ts_conn_t *conn);
/* For a connection that has been quiet for a while: gives the frame buffer's pages back to
 * the system (its content is dead between frames; touched again, they come back zeroed).
 * 1 if it did (once per quiet period: the next output re-arms it), 0 if nothing to do. */
int ts_conn_idle_release(ts_conn_t *conn);
uint16_t ts_conn_version(const ts_conn_t *conn);

#endif
