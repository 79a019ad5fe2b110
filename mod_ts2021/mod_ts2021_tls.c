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
#include <apr_portable.h>
#include <sodium.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

APLOG_USE_MODULE(ts2021);

/* On the thread's stack: keep it small (each TLS connection holds a thread). */
#define TLS_READ_CHUNK        (4u << 10)
#define TLS_BACKLOG_LIMIT     (1u << 20)
#define TLS_DRAIN_GRACE       apr_time_from_sec(5)
/* A blocking write to a client that stopped reading gives up after this. */
#define TLS_WRITE_TIMEOUT     apr_time_from_sec(60)
/* Nothing sent for this long: the connection's frame buffer pages go back to the system. */
#define TLS_RELEASE_AFTER     apr_time_from_sec(2)
/* The longest sleep without a timer due (a safety net: stops and wake-ups are signalled). */
#define TLS_MAX_SLEEP         apr_time_from_sec(30)

/* Per child: an eventfd that becomes readable (and stays so) when the child starts stopping,
 * so that every idle TLS thread wakes up to drain; -1 if it could not be made (then the
 * threads look every second). */
static int tls_stop_fd = -1;
static apr_file_t *tls_stop_file;

typedef struct tls_conn {
    ts_conn_ctx ctx;
    ts_driver_t driver;
    ts_conn_t *core;
    conn_rec *c;
    int wake_fd;                   /* eventfd: the mailbox's wake-ups */
    apr_file_t *wake_file;
    int stop_seen;                 /* tls_stop_fd fired: no longer polled (level-triggered) */
    apr_time_t released_out;       /* last_out when the frame buffer was last released */
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

/* Any thread: never blocks (an eventfd counter does not fill up in practice). */
static void tls_wake(void *baton)
{
    tls_conn *tc = baton;
    uint64_t one = 1;

    if (write(tc->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is full, a wake-up is pending anyway */
    }
}

static apr_status_t tls_fd_cleanup(void *data)
{
    close((int)(intptr_t)data);
    return APR_SUCCESS;
}

/* An eventfd wrapped for apr_poll, closed with pool. */
static apr_status_t tls_eventfd(apr_pool_t *pool, int *fd, apr_file_t **file)
{
    apr_os_file_t os;

    *fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (*fd < 0) return APR_FROM_OS_ERROR(errno);
    os = *fd;
    apr_pool_cleanup_register(pool, (void *)(intptr_t)*fd, tls_fd_cleanup,
                              apr_pool_cleanup_null);
    return apr_os_file_put(file, &os, APR_FOPEN_READ, pool);
}

void ts_tls_child_init(apr_pool_t *pchild)
{
    if (tls_eventfd(pchild, &tls_stop_fd, &tls_stop_file) != APR_SUCCESS) tls_stop_fd = -1;
}

void ts_tls_child_stopping(void)
{
    uint64_t one = 1;

    /* Never read: every TLS thread sees it readable from now on. */
    if (tls_stop_fd >= 0 && write(tls_stop_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: already signalled */
    }
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
    /* as on the event loop: a connection with an open stream is never idle */
    if (now - tc->last_in > ts_config_idle_timeout(ts_conf(tc->ctx.s))
        && now - tc->last_out > ts_config_idle_timeout(ts_conf(tc->ctx.s))
        && !ts_conn_streams(tc->core)) {
        return "idle";
    }
    if (tc->released_out != tc->last_out && now - tc->last_out > TLS_RELEASE_AFTER) {
        ts_conn_idle_release(tc->core);
        tc->released_out = tc->last_out;
    }
    return NULL;
}

static apr_status_t tls_setup(tls_conn *tc, request_rec *r)
{
    apr_status_t rv = tls_eventfd(r->pool, &tc->wake_fd, &tc->wake_file);

    if (rv == APR_SUCCESS) rv = ts_mailbox_create(&tc->driver.mb, tls_wake, tc);
    return rv;
}

/* Until the nearest timer of tls_timers (a millisecond late, so that it is due then). */
static apr_interval_time_t tls_sleep(tls_conn *tc, apr_time_t now)
{
    apr_time_t due = (tc->last_in > tc->last_out ? tc->last_in : tc->last_out)
                     + ts_config_idle_timeout(ts_conf(tc->ctx.s));
    apr_time_t t;

    if (!ts_conn_records_in(tc->core)) {
        t = tc->last_in + ts_config_handshake_timeout(ts_conf(tc->ctx.s));
        if (t < due) due = t;
    }
    t = tc->cut_at ? tc->cut_at : tc->drain_at;
    if (t && t < due) due = t;
    t = tc->last_out + TLS_RELEASE_AFTER;
    if (tc->released_out != tc->last_out && t < due) due = t;
    if (tls_stop_fd < 0 && now + apr_time_from_sec(1) < due) due = now + apr_time_from_sec(1);
    if (due <= now) return 0;
    due += apr_time_from_msec(1);
    return due - now < TLS_MAX_SLEEP ? due - now : TLS_MAX_SLEEP;
}

/* Sleeps on the socket, the mailbox's eventfd and (until seen) the child's stop eventfd:
 * apr_poll on three descriptors, no pollset of its own. */
static void tls_wait(tls_conn *tc)
{
    apr_pollfd_t pfd[3];
    apr_int32_t n = 2, got = 0;
    uint64_t count;
    int i;

    memset(pfd, 0, sizeof(pfd));
    pfd[0].desc_type = APR_POLL_SOCKET;
    pfd[0].desc.s = ap_get_conn_socket(tc->c);
    pfd[0].reqevents = APR_POLLIN;
    pfd[1].desc_type = APR_POLL_FILE;
    pfd[1].desc.f = tc->wake_file;
    pfd[1].reqevents = APR_POLLIN;
    if (tls_stop_fd >= 0 && !tc->stop_seen) {
        pfd[2].desc_type = APR_POLL_FILE;
        pfd[2].desc.f = tls_stop_file;
        pfd[2].reqevents = APR_POLLIN;
        n = 3;
    }
    if (apr_poll(pfd, n, &got, tls_sleep(tc, apr_time_now())) != APR_SUCCESS) return;
    for (i = 1; i < n; i++) {
        if (!(pfd[i].rtnevents & APR_POLLIN)) continue;
        if (i == 2) tc->stop_seen = 1;
        else if (read(tc->wake_fd, &count, sizeof(count)) < 0) {
            /* EAGAIN: nothing pending after all */
        }
    }
}

static const char *tls_loop(tls_conn *tc)
{
    const char *why = NULL;
    int got;

    for (;;) {
        if (tls_flush(tc, &why) != APR_SUCCESS) return why;
        if (ts_conn_finished(tc->core)) return "finished";
        if (tls_read(tc, &got, &why) != APR_SUCCESS) {
            tls_flush(tc, &why);
            return why;
        }
        if (got) continue;
        /* Wake-ups consumed in tls_wait, before the mailbox runs (see ts_mailbox_run). */
        tls_wait(tc);
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
