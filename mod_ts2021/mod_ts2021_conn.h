/* mod_ts2021_conn.h: the connection side of the glue: the upgrade handler, the
 * per-child event loop for cleartext connections, the worker-thread driver for TLS. */
#ifndef MOD_TS2021_CONN_H
#define MOD_TS2021_CONN_H

#include <httpd.h>
#include "ts_conn.h"
#include "ts_mailbox.h"

/* /ts2021: POST with the native upgrade, GET with WebSocket (mod_ts2021_conn.c). */
int ts_conn_handler(request_rec *r);

/* After the handshake: creates the connection core, sends the 101 (queued by the caller),
 * first (message 2 and the early payload, or message 2 alone in its WebSocket message) and the
 * core's HTTP/2 SETTINGS in one flushed write, then hands the connection to the loop
 * (cleartext) or drives it on this worker thread (TLS). Takes over ns. */
int ts_conn_takeover(request_rec *r, ts_noise_session_t *ns, const uint8_t *first,
                     size_t first_len, int websocket);
/* Per child: the early payload's challenge key pair. */
void ts_conn_child_init(void);

/* mod_ts2021_loop.c: one event-loop thread per child. */
void ts_loop_child_init(apr_pool_t *pchild, server_rec *s);
void ts_loop_child_stopping(apr_pool_t *pchild, int graceful);
/* A cleartext connection between its handshake and its adoption by the loop. */
typedef struct loop_conn ts_loop_conn_t;
/* Creates the connection core for the loop, before the 101 goes out (so that its first
 * output leaves with it). fd is a dup'ed, non-blocking socket, owned by the result on success.
 * NULL with *status APR_EGENERAL if no loop runs (or it stops) in this child: ns is then
 * untouched; NULL with any other status: ns is consumed. */
ts_loop_conn_t *ts_loop_prepare(server_rec *s, int fd, const char *client_ip,
                                ts_noise_session_t *ns, int websocket, apr_status_t *status);
ts_conn_t *ts_loop_core(ts_loop_conn_t *lc);
/* Frees a prepared connection that will not be adopted (closes its fd). */
void ts_loop_discard(ts_loop_conn_t *lc);
/* Hands the prepared connection to the loop thread, with the ciphertext httpd's filters had
 * read already (malloc'ed, taken over; fed on the loop thread). Consumes lc in any case. */
apr_status_t ts_loop_adopt(ts_loop_conn_t *lc, uint8_t *initial, size_t initial_len);

/* mod_ts2021_tls.c: drives the connection on the request's worker thread, through
 * the connection filters (TLS, or cleartext when no loop runs). */
typedef struct tls_conn ts_tls_conn_t;
/* Creates the connection core (before the 101), from r->pool; NULL on failure (ns consumed
 * in any case). */
ts_tls_conn_t *ts_tls_prepare(request_rec *r, ts_noise_session_t *ns, int websocket,
                              apr_status_t *status);
ts_conn_t *ts_tls_core(ts_tls_conn_t *tc);
/* Runs the connection until its end, initial being what httpd's filters had read already. */
int ts_tls_run(ts_tls_conn_t *tc, const uint8_t *initial, size_t initial_len);
/* Releases a prepared connection that will not run. */
void ts_tls_discard(ts_tls_conn_t *tc);
/* Per child: the eventfd that wakes every TLS thread when the child stops; and its signal
 * (from the child_stopping hook: a write, nothing else). */
void ts_tls_child_init(apr_pool_t *pchild);
void ts_tls_child_stopping(void);
/* When a stopping child's connection leaves: a random moment in the drain window, which
 * starts about a second late so that the new generation of children accepts by then. */
apr_interval_time_t ts_drain_delay(apr_interval_time_t window);
/* Number of connections the loop holds (for mod_status). */
int ts_loop_count(void);
/* 1 while the child is stopping (drivers drain). */
int ts_loop_stopping(void);

/* A driver owns connections on one thread (the loop, or a TLS worker thread).
 * Other threads reach a connection only through the driver's mailbox. */
typedef struct ts_driver ts_driver_t;
struct ts_driver {
    ts_mailbox_t *mb;
    /* Owner thread only: the live connection with that id, or NULL. */
    ts_conn_t *(*lookup)(ts_driver_t *d, uint64_t conn_id);
    /* Owner thread only: send what the connection has pending. */
    void (*kick)(ts_driver_t *d, uint64_t conn_id);
};

/* What the router needs to know of a connection; drivers embed it first. */
typedef struct ts_conn_ctx {
    ts_driver_t *driver;
    uint64_t id;
    server_rec *s;
    const char *client_ip;
} ts_conn_ctx;

/* mod_ts2021_router.c: request dispatch inside the Noise connection. */
void ts_router_env(ts_conn_env_t *env, ts_conn_ctx *ctx);
void ts_router_child_init(apr_pool_t *pchild, server_rec *s);
/* Runs fn(arg) on the child's worker pool. */
apr_status_t ts_router_submit(void *(APR_THREAD_FUNC *fn)(apr_thread_t *, void *), void *arg);
/* Stops the worker pool (waits for running tasks). */
void ts_router_child_exit(void);

#endif
