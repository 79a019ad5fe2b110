/* mod_ts2021_loop.c: the per-child event loop that owns every cleartext TS2021 connection
 * (epoll through apr_pollset): never blocks, drains with jitter when the child stops. */
#include "mod_ts2021.h"
#include "mod_ts2021_conn.h"
#include "mod_ts2021_status.h"

#include <http_log.h>
#include <apr_atomic.h>
#include <apr_hash.h>
#include <apr_thread_mutex.h>
#include <apr_poll.h>
#include <apr_portable.h>
#include <apr_thread_proc.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

APLOG_USE_MODULE(ts2021);

#define LOOP_MAX_CONNS        65536
#define LOOP_READ_CHUNK       (16u << 10)
/* Stop reading from a client that does not read what we send. */
#define LOOP_BACKLOG_LIMIT    (1u << 20)
/* No byte out for this long while output is pending: the peer is gone. */
#define LOOP_WRITE_STALL      apr_time_from_sec(60)
/* Output held for clients (HTTP/2 queues, sealed bytes) that peaked above this and then
 * drained below the low mark: the freed buffers are asked to leave the heap. */
#define LOOP_TRIM_PEAK        (16u << 20)
#define LOOP_TRIM_LOW         (1u << 20)
/* After its GOAWAY a connection gets this long to finish before it is cut. */
#define LOOP_DRAIN_GRACE      apr_time_from_sec(5)
/* Nothing sent for this long: the connection's frame buffer pages go back to the system. */
#define LOOP_RELEASE_AFTER    apr_time_from_sec(2)

struct loop_conn {
    ts_conn_ctx ctx;               /* first: the router's view */
    ts_conn_t *core;
    apr_socket_t *sock;
    apr_pollfd_t pfd;
    apr_int16_t reg;               /* events registered in the pollset, 0 = none */
    apr_time_t last_in, last_out, stall_since, drain_at, cut_at;
    int fd;
    uint8_t *initial;              /* until adopted: what httpd's filters had read already */
    size_t initial_len;
    struct loop_conn *prev, *next;
    char ip[48];
};
typedef struct loop_conn loop_conn;

typedef struct ts_loop {
    ts_driver_t driver;            /* first: what the router and workers see */
    apr_pool_t *pool;
    apr_pollset_t *ps;
    /* Our own wake-up pipe, non-blocking at both ends (APR 1.7's pollset wake-up pipe
     * blocks writers once full): a full pipe already means "wake up". */
    apr_file_t *wake_in, *wake_out;
    apr_pollfd_t wake_pfd;
    apr_thread_t *thread;
    apr_hash_t *conns;             /* id -> loop_conn, loop thread only */
    apr_array_header_t *free_socks; /* closed apr_socket_t structs, for reuse (under socks_mu) */
    apr_thread_mutex_t *socks_mu;  /* handlers take sockets too (quiet adoption) */
    loop_conn *list;
    loop_conn *dead;               /* closed this round: freed after it (events may name them) */
    server_rec *s;
    apr_interval_time_t drain_time;
    volatile apr_uint32_t count;
    volatile apr_uint32_t stop;    /* 1: drain gracefully, 2: close now */
    volatile apr_uint64_t next_id;
    apr_time_t next_sweep;
    size_t held_peak;              /* largest output held at a sweep since the last trim */
    uint8_t buf[LOOP_READ_CHUNK];
} ts_loop;

static ts_loop *the_loop;

static ts_conn_t *loop_lookup(ts_driver_t *d, uint64_t id)
{
    loop_conn *lc = apr_hash_get(((ts_loop *)d)->conns, &id, sizeof(id));

    return lc ? lc->core : NULL;
}

static void loop_service(ts_loop *loop, loop_conn *lc);
static void loop_socket_put(ts_loop *loop, apr_socket_t *sock);

static void loop_kick(ts_driver_t *d, uint64_t id)
{
    ts_loop *loop = (ts_loop *)d;
    loop_conn *lc = apr_hash_get(loop->conns, &id, sizeof(id));

    if (lc) loop_service(loop, lc);
}

/* Any thread (also the MPM's signal thread): never blocks, EAGAIN ignored. */
static void loop_wake(void *baton)
{
    ts_loop *loop = baton;
    char one = 1;
    apr_size_t n = 1;

    apr_file_write(loop->wake_out, &one, &n);
}

/* Loop thread, before running the mailbox (see ts_mailbox_run). */
static void loop_drain_wake(ts_loop *loop)
{
    char buf[256];
    apr_size_t n;

    do {
        n = sizeof(buf);
    } while (apr_file_read(loop->wake_in, buf, &n) == APR_SUCCESS && n == sizeof(buf));
}

static void loop_close(ts_loop *loop, loop_conn *lc, const char *why)
{
    if (why) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, lc->ctx.s, APLOGNO(10960)
                     "TS2021 connection from %s closed: %s", lc->ip, why);
    }
    if (lc->reg) apr_pollset_remove(loop->ps, &lc->pfd);
    lc->reg = 0;
    apr_socket_close(lc->sock);
    loop_socket_put(loop, lc->sock);
    ts_conn_destroy(lc->core);
    lc->core = NULL;
    apr_hash_set(loop->conns, &lc->ctx.id, sizeof(lc->ctx.id), NULL);
    if (lc->prev) lc->prev->next = lc->next;
    else loop->list = lc->next;
    if (lc->next) lc->next->prev = lc->prev;
    apr_atomic_dec32(&loop->count);
    ts_status_add(TS_STATUS_LOOP, -1);
    /* Freed at the end of the round: a later event of this round may still name it. */
    lc->next = loop->dead;
    loop->dead = lc;
}

static void loop_bury(ts_loop *loop)
{
    while (loop->dead) {
        loop_conn *lc = loop->dead;
        loop->dead = lc->next;
        free(lc);
    }
}

/* Registers exactly the events the connection needs now. */
static void loop_register(ts_loop *loop, loop_conn *lc, int want_out)
{
    apr_int16_t want = want_out ? APR_POLLOUT : 0;

    if (ts_conn_backlog(lc->core) < LOOP_BACKLOG_LIMIT) want |= APR_POLLIN;
    if (want == lc->reg) return;
    if (lc->reg) apr_pollset_remove(loop->ps, &lc->pfd);
    lc->reg = 0;
    if (!want) return;
    lc->pfd.reqevents = want;
    if (apr_pollset_add(loop->ps, &lc->pfd) == APR_SUCCESS) lc->reg = want;
}

/* Writes what the connection has pending; 1 if bytes remain (wait for POLLOUT). */
static int loop_flush(loop_conn *lc, const char **why)
{
    const uint8_t *out;
    apr_size_t n;
    size_t len;
    apr_status_t rv;

    for (;;) {
        if (ts_conn_pending(lc->core, &out, &len, why) != APR_SUCCESS) return -1;
        if (len == 0) {
            lc->stall_since = 0;
            return 0;
        }
        n = len;
        rv = apr_socket_send(lc->sock, (const char *)out, &n);
        if (n > 0) {
            ts_conn_sent(lc->core, n);
            lc->last_out = apr_time_now();
            lc->stall_since = 0;
        }
        if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && n < len)) {
            if (!lc->stall_since) lc->stall_since = apr_time_now();
            return 1;
        }
        if (rv != APR_SUCCESS) {
            *why = "write failed";
            return -1;
        }
    }
}

/* Reads until EAGAIN (or backpressure), feeding the connection. 0 on EOF/error. */
static int loop_read(ts_loop *loop, loop_conn *lc, const char **why)
{
    for (;;) {
        apr_size_t n = sizeof(loop->buf);
        apr_status_t rv;

        if (ts_conn_backlog(lc->core) >= LOOP_BACKLOG_LIMIT) return 1;
        rv = apr_socket_recv(lc->sock, (char *)loop->buf, &n);
        if (n > 0) {
            lc->last_in = apr_time_now();
            if (ts_conn_recv(lc->core, loop->buf, n, why) != APR_SUCCESS) return 0;
        }
        if (APR_STATUS_IS_EAGAIN(rv)) return 1;
        if (rv == APR_EOF) {
            *why = "closed by client";
            return 0;
        }
        if (rv != APR_SUCCESS) {
            *why = "read failed";
            return 0;
        }
    }
}

/* Sends, then re-registers or closes the connection. */
static void loop_service(ts_loop *loop, loop_conn *lc)
{
    const char *why = NULL;
    int more = loop_flush(lc, &why);

    if (more < 0) {
        loop_close(loop, lc, why);
        return;
    }
    if (!more && ts_conn_finished(lc->core)) {
        loop_close(loop, lc, "finished");
        return;
    }
    loop_register(loop, lc, more);
}

static void loop_on_event(ts_loop *loop, loop_conn *lc, apr_int16_t ev)
{
    const char *why = NULL;

    if (ev & (APR_POLLIN | APR_POLLHUP | APR_POLLERR)) {
        if (!loop_read(loop, lc, &why)) {
            /* Still send what the failure produced (a GOAWAY), best effort. */
            loop_flush(lc, &why);
            loop_close(loop, lc, why);
            return;
        }
    }
    if (ev & APR_POLLNVAL) {
        loop_close(loop, lc, "socket invalid");
        return;
    }
    loop_service(loop, lc);
}

/* apr_socket_t structs come from the loop's pool (pools are not freed piecemeal), so
 * closed ones are kept for reuse: apr_os_sock_put fills an existing struct. Any thread. */
static apr_socket_t *loop_socket(ts_loop *loop, int fd)
{
    apr_socket_t *sock = NULL;
    apr_os_sock_t os = fd;
    apr_status_t rv;

    apr_thread_mutex_lock(loop->socks_mu);
    if (loop->free_socks->nelts > 0) {
        sock = *(apr_socket_t **)apr_array_pop(loop->free_socks);
    }
    rv = apr_os_sock_put(&sock, &os, loop->pool);
    apr_thread_mutex_unlock(loop->socks_mu);
    if (rv != APR_SUCCESS) return NULL;
    /* A reused struct keeps its timeout 0 (no syscall); the fd is non-blocking already. */
    apr_socket_timeout_set(sock, 0);
    return sock;
}

static void loop_socket_put(ts_loop *loop, apr_socket_t *sock)
{
    apr_thread_mutex_lock(loop->socks_mu);
    *(apr_socket_t **)apr_array_push(loop->free_socks) = sock;
    apr_thread_mutex_unlock(loop->socks_mu);
}

/* A prepared connection that never reached the loop (out of the pollset first: the fd is a
 * dup, so closing it would not end a registration while httpd's copy lives). */
static void loop_conn_free(ts_loop *loop, loop_conn *lc)
{
    if (lc->reg) apr_pollset_remove(loop->ps, &lc->pfd);
    if (lc->sock) {
        apr_socket_close(lc->sock);
        loop_socket_put(loop, lc->sock);
    }
    else close(lc->fd);
    ts_conn_destroy(lc->core);
    free(lc->initial);
    free(lc);
}

/* Runs on the loop thread: a connection handed over by a request handler. The bytes the
 * client sent behind its request are fed here, on the owner thread, so that whatever their
 * requests post to this connection's mailbox comes after its adoption. */
static void loop_adopt_item(void *owner_ctx, uint64_t id, void *arg)
{
    ts_loop *loop = owner_ctx;
    loop_conn *lc = arg;
    const char *why = NULL;
    apr_status_t rv;

    (void)id;
    if (!loop || loop->stop == 2 || (!lc->sock && !(lc->sock = loop_socket(loop, lc->fd)))) {
        /* The loop is going (owner NULL: its mailbox is being emptied at exit). */
        loop = (ts_loop *)lc->ctx.driver;
        apr_atomic_dec32(&loop->count);
        loop_conn_free(loop, lc);
        return;
    }
    lc->pfd.desc_type = APR_POLL_SOCKET;
    lc->pfd.desc.s = lc->sock;
    lc->pfd.client_data = lc;
    ts_status_add(TS_STATUS_LOOP, 1);
    apr_hash_set(loop->conns, &lc->ctx.id, sizeof(lc->ctx.id), lc);
    lc->next = loop->list;
    if (lc->next) lc->next->prev = lc;
    loop->list = lc;
    if (loop->stop == 1) lc->drain_at = apr_time_now();
    if (lc->initial_len) {
        rv = ts_conn_recv(lc->core, lc->initial, lc->initial_len, &why);
        free(lc->initial);
        lc->initial = NULL;
        if (rv != APR_SUCCESS) {
            /* Send what the failure produced (a GOAWAY, a WebSocket close), then close. */
            loop_flush(lc, &why);
            loop_close(loop, lc, why);
            return;
        }
    }
    loop_service(loop, lc);
}

ts_loop_conn_t *ts_loop_prepare(server_rec *s, int fd, const char *client_ip,
                                ts_noise_session_t *ns, int websocket, apr_status_t *status)
{
    ts_loop *loop = the_loop;
    ts_conn_env_t env;
    loop_conn *lc;
    const char *why = NULL;
    apr_status_t rv;

    *status = APR_EGENERAL;
    if (!loop || loop->stop) return NULL;
    *status = APR_ENOSPC;
    if (apr_atomic_read32(&loop->count) >= LOOP_MAX_CONNS) goto fail;
    *status = APR_ENOMEM;
    if (!(lc = calloc(1, sizeof(*lc)))) goto fail;
    lc->ctx.driver = &loop->driver;
    lc->ctx.id = apr_atomic_inc64(&loop->next_id) + 1;
    lc->ctx.s = s;
    apr_cpystrn(lc->ip, client_ip, sizeof(lc->ip));
    lc->ctx.client_ip = lc->ip;
    ts_router_env(&env, &lc->ctx);
    env.websocket = websocket;
    rv = ts_conn_create(&lc->core, ns, &env, &why);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_INFO, rv, s, APLOGNO(10962)
                     "TS2021 connection from %s closed: %s", client_ip, why);
        free(lc);
        /* ns is consumed: never the "no loop here" status, or the caller would reuse it. */
        *status = rv == APR_EGENERAL ? APR_EINVAL : rv;
        return NULL;
    }
    lc->fd = fd;
    *status = APR_SUCCESS;
    return lc;
fail:
    ts_noise_session_wipe(ns);
    return NULL;
}

ts_conn_t *ts_loop_core(ts_loop_conn_t *lc)
{
    return lc->core;
}

void ts_loop_discard(ts_loop_conn_t *lc)
{
    loop_conn_free((ts_loop *)lc->ctx.driver, lc);
}

/* Quiet adoption: with nothing to send and nothing to read yet, the loop need not wake up
 * now. The socket goes into its pollset from here, then the adoption into its mailbox
 * without a wake-up: the loop runs it when it next wakes, at the latest when this client's
 * first bytes arrive (its mailbox runs before the events of a round). One wake-up of the
 * loop thread (and a pipe write and read) less per handshake. */
static apr_status_t loop_adopt_quiet(ts_loop *loop, loop_conn *lc)
{
    apr_status_t rv;

    if (!(lc->sock = loop_socket(loop, lc->fd))) return APR_ENOMEM;
    lc->pfd.desc_type = APR_POLL_SOCKET;
    lc->pfd.desc.s = lc->sock;
    lc->pfd.client_data = lc;
    lc->pfd.reqevents = APR_POLLIN;
    /* Registered first: until the adoption is posted the loop ignores its events (an
     * unknown connection); posted first, the loop could close it before it is registered. */
    lc->reg = APR_POLLIN;
    rv = apr_pollset_add(loop->ps, &lc->pfd);
    if (rv != APR_SUCCESS) {
        lc->reg = 0;
        return rv;
    }
    return ts_mailbox_post_quiet(loop->driver.mb, lc->ctx.id, loop_adopt_item, lc);
}

apr_status_t ts_loop_adopt(ts_loop_conn_t *lc, uint8_t *initial, size_t initial_len)
{
    ts_loop *loop = (ts_loop *)lc->ctx.driver;
    apr_status_t rv;

    lc->initial = initial;
    lc->initial_len = initial_len;
    lc->last_in = lc->last_out = apr_time_now();
    /* Counted now, so the child knows of it even before the loop picks it up. */
    apr_atomic_inc32(&loop->count);
    if (!initial_len && !ts_conn_backlog(lc->core) && !apr_atomic_read32(&loop->stop)) {
        rv = loop_adopt_quiet(loop, lc);
    }
    else rv = ts_mailbox_post(loop->driver.mb, lc->ctx.id, loop_adopt_item, lc);
    if (rv != APR_SUCCESS) {
        apr_atomic_dec32(&loop->count);
        loop_conn_free(loop, lc);
    }
    return rv;
}

apr_interval_time_t ts_drain_delay(apr_interval_time_t window)
{
    if (window <= 0) return 0;
    return apr_time_from_sec(1) + (apr_time_t)randombytes_uniform((uint32_t)(window / 1000) + 1)
                                  * 1000;
}

/* Picks each connection's moment to leave when the child stops: spread over the drain
 * window so that thousands of clients do not reconnect in the same second. */
static void loop_start_drain(ts_loop *loop, apr_time_t now)
{
    loop_conn *lc;
    apr_interval_time_t window = loop->drain_time;

    for (lc = loop->list; lc; lc = lc->next) {
        if (lc->drain_at) continue;
        lc->drain_at = now + ts_drain_delay(window);
    }
}

/* No traffic either way for TS2021IdleTimeout and nothing open: a held registration or a
 * map stream without keep-alives may stay silent for longer, and is not idle. */
static int loop_idle(loop_conn *lc, apr_time_t now)
{
    apr_interval_time_t idle = ts_config_idle_timeout(ts_conf(lc->ctx.s));

    return now - lc->last_in > idle && now - lc->last_out > idle && !ts_conn_streams(lc->core);
}

/* Timers, once a second (every tick while draining): handshake, stall, idle, drain. */
static void loop_sweep(ts_loop *loop, apr_time_t now)
{
    loop_conn *lc, *next;
    size_t held = 0;

    for (lc = loop->list; lc; lc = next) {
        next = lc->next;
        held += ts_conn_queued(lc->core);
        /* Until its first record a connection is only a promise: bound it. */
        if (!ts_conn_records_in(lc->core)
            && now - lc->last_in > ts_config_handshake_timeout(ts_conf(lc->ctx.s))) {
            loop_close(loop, lc, "no request after the handshake");
        }
        else if (lc->stall_since && now - lc->stall_since > LOOP_WRITE_STALL) {
            loop_close(loop, lc, "client stopped reading");
        }
        else if (lc->cut_at && now >= lc->cut_at) {
            loop_close(loop, lc, "drained");
        }
        else if (lc->drain_at && !lc->cut_at && now >= lc->drain_at) {
            ts_conn_goaway(lc->core);
            lc->cut_at = now + LOOP_DRAIN_GRACE;
            loop_service(loop, lc);
        }
        else if (loop_idle(lc, now)) {
            loop_close(loop, lc, "idle");
        }
        else if (now - lc->last_out > LOOP_RELEASE_AFTER) {
            ts_conn_idle_release(lc->core);     /* a flag test once done */
        }
    }
    /* A cold start's first maps can hold hundreds of MiB in the mailboxes and queues while
     * this thread and the clients work through them; they are freed here, after the
     * notifier's own trim of the burst. */
    held += ts_tailnet_posted_bytes();
    if (held > loop->held_peak) loop->held_peak = held;
    if (loop->held_peak >= LOOP_TRIM_PEAK && held < LOOP_TRIM_LOW) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, loop->s, APLOGNO(11088)
                     "TS2021: output drained (peak %" APR_SIZE_T_FMT " KiB posted or queued "
                     "for clients): heap trim asked", loop->held_peak >> 10);
        loop->held_peak = held;
        ts_tailnet_trim_request();
    }
}

static void loop_close_all(ts_loop *loop, const char *why)
{
    while (loop->list) loop_close(loop, loop->list, why);
}

static void *APR_THREAD_FUNC loop_main(apr_thread_t *thd, void *data)
{
    ts_loop *loop = data;
    const apr_pollfd_t *ev;
    apr_int32_t i, n;

    (void)thd;
    for (;;) {
        apr_time_t now;
        apr_uint32_t stop = apr_atomic_read32(&loop->stop);
        apr_interval_time_t timeout = stop ? apr_time_from_msec(100) : apr_time_from_sec(1);

        if (stop == 2) break;
        if (stop == 1 && !loop->list && !apr_atomic_read32(&loop->count)) break;
        n = 0;
        if (apr_pollset_poll(loop->ps, timeout, &n, &ev) != APR_SUCCESS) n = 0;
        for (i = 0; i < n; i++) {
            if (ev[i].client_data == &loop->wake_pfd) loop_drain_wake(loop);
        }
        /* Before the events: a quietly adopted connection's first event may be in them. */
        ts_mailbox_run(loop->driver.mb, loop);
        for (i = 0; i < n; i++) {
            loop_conn *lc = ev[i].client_data;
            /* Not yet adopted (its adoption is being posted), or closed earlier in this
             * round (still allocated until loop_bury): skip. */
            if (lc && lc != (loop_conn *)&loop->wake_pfd
                && apr_hash_get(loop->conns, &lc->ctx.id, sizeof(lc->ctx.id)) == lc) {
                loop_on_event(loop, lc, ev[i].rtnevents);
            }
        }
        now = apr_time_now();
        if (stop == 1) loop_start_drain(loop, now);
        if (stop || now >= loop->next_sweep) {
            loop_sweep(loop, now);
            loop->next_sweep = now + apr_time_from_sec(1);
        }
        loop_bury(loop);
    }
    /* Refuse new work, then release what was queued (adoptions close their sockets). */
    ts_mailbox_close(loop->driver.mb);
    ts_mailbox_run(loop->driver.mb, NULL);
    loop_close_all(loop, "child exiting");
    loop_bury(loop);
    return NULL;
}

int ts_loop_count(void)
{
    return the_loop ? (int)apr_atomic_read32(&the_loop->count) : 0;
}

int ts_loop_stopping(void)
{
    return the_loop ? apr_atomic_read32(&the_loop->stop) != 0 : 0;
}

void ts_loop_child_stopping(apr_pool_t *pchild, int graceful)
{
    (void)pchild;
    if (!the_loop) return;
    /* Only flags and a wake-up here: this runs in the MPM's signal-handling thread. */
    if (graceful) apr_atomic_cas32(&the_loop->stop, 1, 0);
    else apr_atomic_set32(&the_loop->stop, 2);
    loop_wake(the_loop);
}

/* pchild pre-cleanup: drain (if graceful and not yet done), join, stop the workers. */
static apr_status_t loop_child_exit(void *data)
{
    ts_loop *loop = data;
    apr_status_t rv;

    apr_atomic_cas32(&loop->stop, 1, 0);
    loop_wake(loop);
    apr_thread_join(&rv, loop->thread);
    ts_router_child_exit();
    ts_mailbox_unref(loop->driver.mb);
    the_loop = NULL;
    return APR_SUCCESS;
}

void ts_loop_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_allocator_t *alloc;
    apr_pool_t *p;
    ts_loop *loop;
    apr_status_t rv;

    /* The loop's pool gets its own allocator: no other thread allocates from it. */
    if (apr_allocator_create(&alloc) != APR_SUCCESS) return;
    apr_allocator_max_free_set(alloc, 256 << 10);
    apr_pool_create_ex(&p, pchild, NULL, alloc);
    apr_allocator_owner_set(alloc, p);
    loop = apr_pcalloc(p, sizeof(*loop));
    loop->pool = p;
    loop->s = s;
    loop->drain_time = ts_config_drain_time(ts_conf(s));
    loop->conns = apr_hash_make(p);
    loop->free_socks = apr_array_make(p, 64, sizeof(apr_socket_t *));
    loop->driver.lookup = loop_lookup;
    loop->driver.kick = loop_kick;
    /* NOCOPY: descriptors live in their loop_conn; with it (and THREADSAFE) a handler may
     * add its connection's socket itself (quiet adoption). */
    rv = apr_thread_mutex_create(&loop->socks_mu, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv == APR_SUCCESS) {
        rv = apr_pollset_create(&loop->ps, LOOP_MAX_CONNS + 1, p,
                                APR_POLLSET_THREADSAFE | APR_POLLSET_NOCOPY);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_pipe_create_ex(&loop->wake_in, &loop->wake_out, APR_FULL_NONBLOCK, p);
    }
    if (rv == APR_SUCCESS) {
        loop->wake_pfd.desc_type = APR_POLL_FILE;
        loop->wake_pfd.desc.f = loop->wake_in;
        loop->wake_pfd.reqevents = APR_POLLIN;
        loop->wake_pfd.client_data = &loop->wake_pfd;
        rv = apr_pollset_add(loop->ps, &loop->wake_pfd);
    }
    if (rv == APR_SUCCESS) rv = ts_mailbox_create(&loop->driver.mb, loop_wake, loop);
    if (rv == APR_SUCCESS) {
        ts_router_child_init(pchild, s);
        rv = apr_thread_create(&loop->thread, NULL, loop_main, loop, p);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, APLOGNO(10961)
                     "TS2021: cannot start the connection event loop; cleartext "
                     "connections will use worker threads");
        return;
    }
    the_loop = loop;
    apr_pool_pre_cleanup_register(pchild, loop, loop_child_exit);
}
