/* mod_ts2021_notify.c: change notification. A generation counter in shared memory (bumped by
 * writers, waited on with a futex) wakes one notifier thread per child; one child per server
 * also polls the database's generation so changes made elsewhere wake everyone too. */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_notify.h"

#include <http_log.h>
#include <ap_mpm.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

APLOG_USE_MODULE(ts2021);

/* The leader polls the database this often; a dead leader is replaced after the lease. */
#define NOTIFY_DB_POLL      apr_time_from_msec(500)
#define NOTIFY_LEASE        apr_time_from_sec(3)
/* Notifiers also wake this often with no change, as a safety net. */
#define NOTIFY_WAIT_MS      1000

typedef struct notify_shm {
    volatile apr_uint32_t word;         /* futex word: bumped on every change */
    volatile apr_uint32_t leader_pid;   /* the child polling the database */
    volatile apr_uint64_t leader_beat;  /* its last poll (apr_time_t) */
} notify_shm;

typedef struct notify_tailnet {
    server_rec *s;
    ts_notify_fn *fn;
    void *baton;
    apr_int64_t db_generation;          /* last generation the leader saw in this database */
} notify_tailnet;

static notify_shm *shm;
static apr_array_header_t *tailnets;    /* notify_tailnet, registered in child_init */
static apr_thread_t *notifier;
static apr_pool_t *notifier_pool;
static volatile apr_uint32_t notify_stop;
static int notify_again;                /* notifier thread only */

static long futex(volatile apr_uint32_t *addr, int op, apr_uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

int ts_notify_post_config(server_rec *s)
{
    const char *key = "mod_ts2021_notify_shm";
    apr_shm_t **seg = ap_retained_data_get(key);

    if (!seg) {
        seg = ap_retained_data_create(key, sizeof(*seg));
        if (apr_shm_create(seg, sizeof(notify_shm), NULL, s->process->pool) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(11000)
                         "TS2021: cannot create the shared memory for change notification");
            *seg = NULL;
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        memset(apr_shm_baseaddr_get(*seg), 0, sizeof(notify_shm));
    }
    shm = *seg ? apr_shm_baseaddr_get(*seg) : NULL;
    return shm ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

void ts_notify_bump(void)
{
    if (!shm) return;
    apr_atomic_inc32(&shm->word);
    /* Shared (not private) futex: the word lives in memory every child maps. */
    futex(&shm->word, FUTEX_WAKE, INT32_MAX, NULL);
}

void ts_notify_again(void)
{
    notify_again = 1;
}

/* Notifier thread: when the last change rounds ran (a ring), and whether this is a storm. */
static apr_time_t round_at[TS_NOTIFY_STORM_ROUNDS];
static int round_next, storm;
static int streams_now, streams_seen;   /* open streams: being summed, as of the last round */

void ts_notify_add_streams(int n)
{
    streams_now += n;
}

/* After a change: waits until the word stays put for TS_NOTIFY_QUIET_MS, at most
 * TS_NOTIFY_DEBOUNCE_MS in all. In a storm (TS_NOTIFY_STORM_ROUNDS rounds within a second,
 * until no change came for half a second) rounds are TS_NOTIFY_STORM_MS apart instead. */
static void notify_debounce(void)
{
    apr_time_t now = apr_time_now(), until = now + apr_time_from_msec(TS_NOTIFY_DEBOUNCE_MS);
    apr_time_t last = round_at[(round_next + TS_NOTIFY_STORM_ROUNDS - 1) % TS_NOTIFY_STORM_ROUNDS];
    apr_time_t oldest = round_at[round_next];

    if (storm && now - last > apr_time_from_msec(500)) storm = 0;
    if (!storm && oldest && now - oldest < apr_time_from_sec(1)
        && streams_seen >= TS_NOTIFY_STORM_STREAMS)
        storm = 1;
    if (storm) {
        until = last + apr_time_from_msec(TS_NOTIFY_STORM_MS);
        while (!apr_atomic_read32(&notify_stop) && (now = apr_time_now()) < until)
            apr_sleep(until - now < apr_time_from_msec(50) ? until - now : apr_time_from_msec(50));
    }
    while (!storm && !apr_atomic_read32(&notify_stop)) {
        apr_uint32_t w = apr_atomic_read32(&shm->word);
        apr_time_t wait = apr_time_from_msec(TS_NOTIFY_QUIET_MS);
        struct timespec ts;

        now = apr_time_now();
        if (now >= until) break;
        if (until - now < wait) wait = until - now;
        ts.tv_sec = wait / APR_USEC_PER_SEC;
        ts.tv_nsec = (wait % APR_USEC_PER_SEC) * 1000;
        futex(&shm->word, FUTEX_WAIT, w, &ts);
        /* Still the same word after the wait (or a spurious wake-up): quiet enough. */
        if (apr_atomic_read32(&shm->word) == w && apr_time_now() - now >= wait) break;
    }
    round_at[round_next] = apr_time_now();
    round_next = (round_next + 1) % TS_NOTIFY_STORM_ROUNDS;
}

void ts_notify_register(server_rec *s, ts_notify_fn *fn, void *baton)
{
    notify_tailnet *t;

    if (!tailnets) return;
    t = apr_array_push(tailnets);
    t->s = s;
    t->fn = fn;
    t->baton = baton;
    t->db_generation = -1;
}

/* One child at a time holds the lease; a stale lease (crashed or exited child) is taken. */
static int notify_is_leader(apr_time_t now)
{
    apr_uint32_t me = (apr_uint32_t)getpid(), pid = apr_atomic_read32(&shm->leader_pid);

    if (pid == me) return 1;
    if (pid && now - (apr_time_t)shm->leader_beat < NOTIFY_LEASE && kill((pid_t)pid, 0) == 0) {
        return 0;
    }
    if (apr_atomic_cas32(&shm->leader_pid, me, pid) != pid) return 0;
    shm->leader_beat = (apr_uint64_t)now;
    return 1;
}

/* The leader's poll: a generation moved by another server or by ts2021ctl wakes all. */
static void notify_poll_databases(apr_pool_t *p)
{
    int i, moved = 0;

    for (i = 0; i < tailnets->nelts; i++) {
        notify_tailnet *t = &APR_ARRAY_IDX(tailnets, i, notify_tailnet);
        ap_dbd_t *rec;
        ts_store_t *st = ts_dbd_open(p, t->s, &rec);
        apr_int64_t g;
        const char *err;

        if (!st) continue;
        if (ts_store_generation(st, p, &g, &err) == APR_SUCCESS && g != t->db_generation) {
            moved |= t->db_generation >= 0;
            t->db_generation = g;
        }
        ts_dbd_close(t->s, rec);
    }
    shm->leader_beat = (apr_uint64_t)apr_time_now();
    if (moved) ts_notify_bump();
}

static void notify_run_callbacks(int changed)
{
    int i;

    streams_now = 0;
    for (i = 0; i < tailnets->nelts; i++) {
        notify_tailnet *t = &APR_ARRAY_IDX(tailnets, i, notify_tailnet);
        t->fn(t->baton, changed);
    }
    streams_seen = streams_now;
}

static void *APR_THREAD_FUNC notify_main(apr_thread_t *thd, void *data)
{
    apr_pool_t *p = data, *iter;
    apr_uint32_t seen = apr_atomic_read32(&shm->word);
    apr_time_t next_poll = 0;

    (void)thd;
    /* Own allocators: pchild's is not for threads other than the child's main one. */
    (void)p;
    apr_pool_create_unmanaged_ex(&iter, NULL, NULL);
    notify_run_callbacks(1);   /* initial load */
    while (!apr_atomic_read32(&notify_stop)) {
        struct timespec ts = { 0, 0 };
        apr_time_t now = apr_time_now();
        apr_interval_time_t wait = apr_time_from_msec(NOTIFY_WAIT_MS);

        if (next_poll && next_poll - now < wait) wait = next_poll > now ? next_poll - now : 0;
        ts.tv_sec = wait / APR_USEC_PER_SEC;
        ts.tv_nsec = (wait % APR_USEC_PER_SEC) * 1000;
        if (apr_atomic_read32(&shm->word) == seen && !notify_again) {
            futex(&shm->word, FUTEX_WAIT, seen, &ts);
        }
        if (apr_atomic_read32(&notify_stop)) break;
        now = apr_time_now();
        if (now >= next_poll && notify_is_leader(now)) {
            notify_poll_databases(iter);
            apr_pool_clear(iter);
            next_poll = now + NOTIFY_DB_POLL;
        }
        else if (now >= next_poll) {
            next_poll = now + NOTIFY_DB_POLL;
        }
        if (apr_atomic_read32(&shm->word) != seen || notify_again) {
            if (apr_atomic_read32(&shm->word) != seen) notify_debounce();
            seen = apr_atomic_read32(&shm->word);
            notify_again = 0;
            notify_run_callbacks(1);
        }
        else {
            notify_run_callbacks(0);
        }
    }
    apr_pool_destroy(iter);
    return NULL;
}

static apr_status_t notify_child_exit(void *data)
{
    apr_status_t rv;

    (void)data;
    if (!notifier) return APR_SUCCESS;
    apr_atomic_set32(&notify_stop, 1);
    if (shm) futex(&shm->word, FUTEX_WAKE, INT32_MAX, NULL);
    apr_thread_join(&rv, notifier);
    if (shm) apr_atomic_cas32(&shm->leader_pid, 0, (apr_uint32_t)getpid());
    notifier = NULL;
    apr_pool_destroy(notifier_pool);
    notifier_pool = NULL;
    return APR_SUCCESS;
}

void ts_notify_child_init(apr_pool_t *pchild, server_rec *s)
{
    tailnets = apr_array_make(pchild, 4, sizeof(notify_tailnet));
    (void)s;
}

/* Started after every tailnet registered (ts_notify_register) in child_init. */
void ts_notify_start(apr_pool_t *pchild, server_rec *s)
{
    apr_pool_t *p;
    apr_status_t rv;

    if (!shm || !tailnets || !tailnets->nelts) return;
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    notifier_pool = p;
    rv = apr_thread_create(&notifier, NULL, notify_main, p, p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, APLOGNO(11001)
                     "TS2021: cannot start the change notifier thread");
        apr_pool_destroy(p);
        notifier_pool = NULL;
        return;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, notify_child_exit);
    /* Also before the shared memory goes away with the process pool, should the MPM exit
     * without destroying pchild first (one-process mode). */
    apr_pool_pre_cleanup_register(s->process->pool, NULL, notify_child_exit);
}
