/* mod_ts2021_conn.h: the connection side of the glue: the upgrade handler, the
 * per-child event loop for cleartext connections, the worker-thread driver for TLS. */
#ifndef MOD_TS2021_CONN_H
#define MOD_TS2021_CONN_H

#include <httpd.h>
#include "ts_conn.h"
#include "ts_mailbox.h"

/* /ts2021: POST with the native upgrade, GET with WebSocket (mod_ts2021_conn.c). */
int ts_conn_handler(request_rec *r);

/* After the 101: hands the connection to the loop (cleartext) or drives it on this
 * worker thread (TLS). Takes over ns. */
int ts_conn_takeover(request_rec *r, ts_noise_session_t *ns, int websocket);
/* Per child: the early payload's challenge key pair. */
void ts_conn_child_init(void);

/* mod_ts2021_loop.c: one event-loop thread per child. */
void ts_loop_child_init(apr_pool_t *pchild, server_rec *s);
void ts_loop_child_stopping(apr_pool_t *pchild, int graceful);
/* Adopts a dup'ed, non-blocking socket fd and the finished handshake ns; initial holds
 * ciphertext httpd's filters had read already; websocket selects that carrier. On failure
 * the caller still owns fd. APR_EGENERAL if no loop runs (or it stops) in this child: ns is
 * then untouched; any other failure has consumed it. */
apr_status_t ts_loop_adopt(server_rec *s, int fd, const char *client_ip, ts_noise_session_t *ns,
                           const uint8_t *initial, size_t initial_len, int websocket);

/* mod_ts2021_tls.c: drives the connection on the request's worker thread, through
 * the connection filters (TLS, or cleartext when no loop runs). Returns at its end. */
int ts_tls_run(request_rec *r, ts_noise_session_t *ns, const uint8_t *initial,
               size_t initial_len, int websocket);
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
