/* mod_ts2021_tls.c: drives a TS2021 connection on its request's worker thread, reading and
 * writing through the connection filters: TLS (mod_ssl state cannot leave the conn_rec). */
#include "mod_ts2021.h"
#include "mod_ts2021_conn.h"
#include "mod_ts2021_status.h"

#include <http_log.h>
#include <http_core.h>
#include <util_filter.h>
#include <ap_mpm.h>
#include <apr_poll.h>
#include <sodium.h>
#include <string.h>

APLOG_USE_MODULE(ts2021);

/* On the thread's stack: keep it small (each TLS connection holds a thread). */
#define TLS_READ_CHUNK        (4u << 10)
#define TLS_BACKLOG_LIMIT     (1u << 20)
#define TLS_IDLE_TIMEOUT      apr_time_from_sec(600)
#define TLS_DRAIN_GRACE       apr_time_from_sec(5)
/* A blocking write to a client that stopped reading gives up after this. */
#define TLS_WRITE_TIMEOUT     apr_time_from_sec(60)

typedef struct tls_conn {
    ts_conn_ctx ctx;
    ts_driver_t driver;
    ts_conn_t *core;
    conn_rec *c;
    apr_file_t *wake_in, *wake_out;
    apr_pollset_t *ps;
    apr_bucket_brigade *bb;
    request_rec *r;
    apr_time_t last_in, last_out, drain_at, cut_at;
} tls_conn;

static tls_conn *tls_of(ts_driver_t *d)
{
    return (tls_conn *)((char *)d - offsetof(tls_conn, driver));
}

static ts_conn_t *tls_lookup(ts_driver_t *d, uint64_t id)
{
    tls_conn *tc = tls_of(d);

    return id == tc->ctx.id ? tc->core : NULL;
}

static void tls_kick(ts_driver_t *d, uint64_t id)
{
    /* The run loop flushes after every mailbox round. */
    (void)d;
    (void)id;
}

static void tls_wake(void *baton)
{
    tls_conn *tc = baton;
    char one = 1;
    apr_size_t n = 1;

    /* Non-blocking: a full pipe already means "wake up". */
    apr_file_write(tc->wake_out, &one, &n);
}

static apr_status_t tls_flush(tls_conn *tc, const char **why)
{
    const uint8_t *out;
    size_t len;
    apr_status_t rv;

    for (;;) {
        if (ts_conn_pending(tc->core, &out, &len, why) != APR_SUCCESS) return APR_EGENERAL;
        if (len == 0) return APR_SUCCESS;
        APR_BRIGADE_INSERT_TAIL(tc->bb, apr_bucket_transient_create((const char *)out, len,
                                                                    tc->c->bucket_alloc));
        APR_BRIGADE_INSERT_TAIL(tc->bb, apr_bucket_flush_create(tc->c->bucket_alloc));
        rv = ap_pass_brigade(tc->c->output_filters, tc->bb);
        apr_brigade_cleanup(tc->bb);
        if (rv != APR_SUCCESS) {
            *why = "write failed";
            return rv;
        }
        ts_conn_sent(tc->core, len);
        tc->last_out = apr_time_now();
    }
}

/* Non-blocking reads until EAGAIN: mod_ssl may hold decrypted bytes poll() cannot see. */
static apr_status_t tls_read(tls_conn *tc, int *got, const char **why)
{
    char buf[TLS_READ_CHUNK];
    apr_size_t n;
    apr_status_t rv;

    *got = 0;
    while (ts_conn_backlog(tc->core) < TLS_BACKLOG_LIMIT) {
        rv = ap_get_brigade(tc->c->input_filters, tc->bb, AP_MODE_READBYTES, APR_NONBLOCK_READ,
                            sizeof(buf));
        if (APR_STATUS_IS_EAGAIN(rv)) return APR_SUCCESS;
        if (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(tc->bb)) rv = APR_EOF;
        if (rv != APR_SUCCESS) {
            *why = rv == APR_EOF ? "closed by client" : "read failed";
            return rv;
        }
        n = sizeof(buf);
        rv = apr_brigade_flatten(tc->bb, buf, &n);
        apr_brigade_cleanup(tc->bb);
        if (rv != APR_SUCCESS) return rv;
        if (n == 0) continue;
        tc->last_in = apr_time_now();
        if (ts_conn_recv(tc->core, (uint8_t *)buf, n, why) != APR_SUCCESS) return APR_EGENERAL;
        *got = 1;
    }
    return APR_SUCCESS;
}

static int tls_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    if (ts_loop_stopping()) return 1;
    return ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS && state == AP_MPMQ_STOPPING;
}

/* Timers; returns the reason to stop, or NULL. */
static const char *tls_timers(tls_conn *tc, apr_time_t now)
{
    if (!ts_conn_records_in(tc->core)
        && now - tc->last_in > ts_config_handshake_timeout(ts_conf(tc->ctx.s))) {
        return "no request after the handshake";
    }
    if (tc->cut_at && now >= tc->cut_at) return "drained";
    if (!tc->drain_at && tls_stopping()) {
        apr_interval_time_t window = ts_config_drain_time(ts_conf(tc->ctx.s));
        tc->drain_at = now + ts_drain_delay(window);
    }
    if (tc->drain_at && !tc->cut_at && now >= tc->drain_at) {
        ts_conn_goaway(tc->core);
        tc->cut_at = now + TLS_DRAIN_GRACE;
    }
    if (now - tc->last_in > TLS_IDLE_TIMEOUT && now - tc->last_out > TLS_IDLE_TIMEOUT) {
        return "idle";
    }
    return NULL;
}

static apr_status_t tls_setup(tls_conn *tc, request_rec *r)
{
    apr_pollfd_t pfd;
    apr_status_t rv;

    rv = apr_file_pipe_create_ex(&tc->wake_in, &tc->wake_out, APR_FULL_NONBLOCK, r->pool);
    if (rv == APR_SUCCESS) rv = apr_pollset_create(&tc->ps, 2, r->pool, 0);
    if (rv != APR_SUCCESS) return rv;
    memset(&pfd, 0, sizeof(pfd));
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.desc.s = ap_get_conn_socket(r->connection);
    pfd.reqevents = APR_POLLIN;
    rv = apr_pollset_add(tc->ps, &pfd);
    if (rv != APR_SUCCESS) return rv;
    pfd.desc_type = APR_POLL_FILE;
    pfd.desc.f = tc->wake_in;
    rv = apr_pollset_add(tc->ps, &pfd);
    if (rv == APR_SUCCESS) rv = ts_mailbox_create(&tc->driver.mb, tls_wake, tc);
    return rv;
}

static const char *tls_loop(tls_conn *tc)
{
    const apr_pollfd_t *ev;
    const char *why = NULL;
    apr_int32_t n;
    char drain[64];
    apr_size_t dn;
    int got;

    for (;;) {
        if (tls_flush(tc, &why) != APR_SUCCESS) return why;
        if (ts_conn_finished(tc->core)) return "finished";
        if (tls_read(tc, &got, &why) != APR_SUCCESS) {
            tls_flush(tc, &why);
            return why;
        }
        if (got) continue;
        apr_pollset_poll(tc->ps, apr_time_from_sec(1), &n, &ev);
        do {
            dn = sizeof(drain);
        } while (apr_file_read(tc->wake_in, drain, &dn) == APR_SUCCESS && dn == sizeof(drain));
        ts_mailbox_run(tc->driver.mb, &tc->driver);
        if ((why = tls_timers(tc, apr_time_now())) != NULL) return why;
    }
}

ts_tls_conn_t *ts_tls_prepare(request_rec *r, ts_noise_session_t *ns, int websocket,
                              apr_status_t *status)
{
    tls_conn *tc = apr_pcalloc(r->pool, sizeof(*tc));
    ts_conn_env_t env;
    const char *why = NULL;
    apr_status_t rv;

    tc->r = r;
    tc->c = r->connection;
    tc->ctx.driver = &tc->driver;
    tc->ctx.id = 1;
    tc->ctx.s = r->server;
    tc->ctx.client_ip = r->useragent_ip;
    tc->driver.lookup = tls_lookup;
    tc->driver.kick = tls_kick;
    tc->bb = apr_brigade_create(r->pool, tc->c->bucket_alloc);
    ts_router_env(&env, &tc->ctx);
    env.websocket = websocket;
    rv = tls_setup(tc, r);
    if (rv == APR_SUCCESS) rv = ts_conn_create(&tc->core, ns, &env, &why);
    else ts_noise_session_wipe(ns);
    *status = rv;
    if (rv == APR_SUCCESS) return tc;
    ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r, APLOGNO(10971)
                  "TS2021 connection from %s closed: %s", r->useragent_ip,
                  why ? why : "setup failed");
    ts_tls_discard(tc);
    return NULL;
}

ts_conn_t *ts_tls_core(ts_tls_conn_t *tc)
{
    return tc->core;
}

void ts_tls_discard(ts_tls_conn_t *tc)
{
    if (tc->driver.mb) {
        ts_mailbox_close(tc->driver.mb);
        ts_mailbox_run(tc->driver.mb, NULL);
    }
    /* Before our reference goes: destroying the connection reports its streams closed,
     * naming this mailbox. */
    ts_conn_destroy(tc->core);
    tc->core = NULL;
    if (tc->driver.mb) ts_mailbox_unref(tc->driver.mb);
    tc->driver.mb = NULL;
}

int ts_tls_run(ts_tls_conn_t *tc, const uint8_t *initial, size_t initial_len)
{
    const char *why = NULL;

    tc->last_in = tc->last_out = apr_time_now();
    apr_socket_timeout_set(ap_get_conn_socket(tc->c), TLS_WRITE_TIMEOUT);
    /* A failure here still lets the loop send what it produced, then close. */
    if (initial_len) ts_conn_recv(tc->core, initial, initial_len, &why);
    ts_status_add(TS_STATUS_TLS, 1);
    why = tls_loop(tc);
    ts_status_add(TS_STATUS_TLS, -1);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, tc->r, APLOGNO(10970)
                  "TS2021 connection from %s closed: %s", tc->r->useragent_ip, why);
    ts_tls_discard(tc);
    return DONE;
}
