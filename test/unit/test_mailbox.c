/* test_mailbox.c: ts_mailbox: FIFO order and owner context, coalesced wake-ups (one per
 * empty -> non-empty), close refusing posts, refcounted teardown releasing pending items,
 * producer threads racing the owner, and an owner that runs only when woken (no lost wake). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "ts_mailbox.h"

/* ---- recording what runs ---- */

#define LOG_MAX 64

typedef struct {
    void *owner[LOG_MAX];
    uint64_t conn_id[LOG_MAX];
    void *arg[LOG_MAX];
    int n;
} run_log_t;

static run_log_t LOG;
static int OWNER;               /* its address is the owner context */

static void log_item(void *owner_ctx, uint64_t conn_id, void *arg)
{
    assert_true(LOG.n < LOG_MAX);
    LOG.owner[LOG.n] = owner_ctx;
    LOG.conn_id[LOG.n] = conn_id;
    LOG.arg[LOG.n] = arg;
    LOG.n++;
}

/* An argument that must be released exactly once, whoever runs it. */
typedef struct {
    int *released;
    int ran_with_owner;
} owned_arg_t;

static void release_item(void *owner_ctx, uint64_t conn_id, void *arg)
{
    owned_arg_t *a = arg;

    (void)conn_id;
    log_item(owner_ctx, conn_id, arg);
    if (owner_ctx)
        a->ran_with_owner = 1;
    (*a->released)++;
    free(a);
}

static owned_arg_t *owned(int *released)
{
    owned_arg_t *a = calloc(1, sizeof(*a));

    assert_non_null(a);
    a->released = released;
    return a;
}

static int wakes;
static int COUNTED;

static void count_wake(void *baton)
{
    assert_ptr_equal(baton, &wakes);
    wakes++;
}

static int reset(void **state)
{
    (void)state;
    memset(&LOG, 0, sizeof(LOG));
    wakes = 0;
    COUNTED = 0;
    return 0;
}

/* ---- single-threaded semantics ---- */

static void test_fifo_order_and_owner(void **state)
{
    ts_mailbox_t *mb;
    static int args[5];
    int i;

    (void)state;
    assert_int_equal(ts_mailbox_create(&mb, count_wake, &wakes), APR_SUCCESS);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 0);
    for (i = 0; i < 5; i++)
        assert_int_equal(ts_mailbox_post(mb, 100 + (uint64_t)i * 7, log_item, &args[i]),
                         APR_SUCCESS);
    assert_int_equal(LOG.n, 0);          /* nothing runs on post */
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 5);
    assert_int_equal(LOG.n, 5);
    for (i = 0; i < 5; i++) {
        assert_ptr_equal(LOG.owner[i], &OWNER);
        assert_int_equal(LOG.conn_id[i], 100 + (uint64_t)i * 7);
        assert_ptr_equal(LOG.arg[i], &args[i]);
    }
    /* a run takes every item once */
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 0);
    assert_int_equal(LOG.n, 5);
    /* the queue is usable again after being emptied, order kept across runs */
    assert_int_equal(ts_mailbox_post(mb, 1, log_item, &args[4]), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post(mb, 2, log_item, &args[3]), APR_SUCCESS);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 2);
    assert_int_equal(LOG.conn_id[5], 1);
    assert_ptr_equal(LOG.arg[5], &args[4]);
    assert_int_equal(LOG.conn_id[6], 2);
    assert_ptr_equal(LOG.arg[6], &args[3]);
    /* the full uint64 range of ids goes through unchanged; NULL args are fine */
    assert_int_equal(ts_mailbox_post(mb, UINT64_MAX, log_item, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 1);
    assert_int_equal(LOG.conn_id[7], UINT64_MAX);
    assert_null(LOG.arg[7]);
    ts_mailbox_unref(mb);
    assert_int_equal(LOG.n, 8);          /* nothing was pending: nothing more ran */
}

/* One wake-up per batch: the first post into an empty queue wakes the owner, the posts
 * that follow before it runs do not (a fan-out of thousands costs one pipe write). */
static void count_item(void *owner_ctx, uint64_t conn_id, void *arg)
{
    (void)conn_id;
    (void)arg;
    assert_ptr_equal(owner_ctx, &OWNER);
    COUNTED++;
}

static void test_wake_coalesced(void **state)
{
    ts_mailbox_t *mb;
    int i;

    (void)state;
    assert_int_equal(ts_mailbox_create(&mb, count_wake, &wakes), APR_SUCCESS);
    assert_int_equal(wakes, 0);
    for (i = 1; i <= 1000; i++) {
        assert_int_equal(ts_mailbox_post(mb, (uint64_t)i, count_item, NULL), APR_SUCCESS);
        assert_int_equal(wakes, 1);      /* N posts, not drained: still one wake */
    }
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 1000);
    assert_int_equal(wakes, 1);          /* running does not wake */
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 0);
    assert_int_equal(wakes, 1);          /* nor does running an empty queue */
    /* drained: the next post wakes again, once */
    assert_int_equal(ts_mailbox_post(mb, 1001, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 2);
    assert_int_equal(ts_mailbox_post(mb, 1002, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 2);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 2);
    ts_mailbox_close(mb);
    assert_int_equal(ts_mailbox_post(mb, 11, count_item, NULL), APR_EOF);
    assert_int_equal(wakes, 2);          /* a refused post wakes nobody */
    ts_mailbox_unref(mb);

    /* no wake callback at all */
    assert_int_equal(ts_mailbox_create(&mb, NULL, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post(mb, 1, count_item, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 1);
    assert_int_equal(COUNTED, 1003);
    ts_mailbox_unref(mb);
}

/* A quiet post wakes nobody, and does not swallow the wake-up of the next ordinary post:
 * that one still wakes the owner, once, and a run takes both. */
static void test_quiet_post(void **state)
{
    ts_mailbox_t *mb;

    (void)state;
    assert_int_equal(ts_mailbox_create(&mb, count_wake, &wakes), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post_quiet(mb, 1, count_item, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post_quiet(mb, 2, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 0);
    assert_int_equal(ts_mailbox_post(mb, 3, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 1);
    assert_int_equal(ts_mailbox_post(mb, 4, count_item, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post_quiet(mb, 5, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 1);          /* one wake-up covers the batch */
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 5);
    assert_int_equal(COUNTED, 5);
    /* a quiet item alone is run by the owner's next run, whatever woke it */
    assert_int_equal(ts_mailbox_post_quiet(mb, 6, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 1);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 1);
    assert_int_equal(ts_mailbox_post(mb, 7, count_item, NULL), APR_SUCCESS);
    assert_int_equal(wakes, 2);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 1);
    ts_mailbox_close(mb);
    assert_int_equal(ts_mailbox_post_quiet(mb, 8, count_item, NULL), APR_EOF);
    ts_mailbox_unref(mb);
    assert_int_equal(COUNTED, 7);
}

static void test_post_after_close(void **state)
{
    ts_mailbox_t *mb;
    int released = 0;
    owned_arg_t *before, *after;

    (void)state;
    assert_int_equal(ts_mailbox_create(&mb, count_wake, &wakes), APR_SUCCESS);
    before = owned(&released);
    assert_int_equal(ts_mailbox_post(mb, 1, release_item, before), APR_SUCCESS);
    ts_mailbox_close(mb);
    ts_mailbox_close(mb);                /* idempotent */
    after = owned(&released);
    assert_int_equal(ts_mailbox_post(mb, 2, release_item, after), APR_EOF);
    /* refused: not run, not freed; the caller still owns it */
    assert_int_equal(released, 0);
    assert_ptr_equal(after->released, &released);
    assert_int_equal(after->ran_with_owner, 0);
    after->ran_with_owner = 42;          /* still ours to touch (ASan would object otherwise) */
    /* what came before the close is still delivered */
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 1);
    assert_int_equal(released, 1);
    assert_int_equal(LOG.n, 1);
    assert_int_equal(LOG.conn_id[0], 1);
    assert_ptr_equal(LOG.owner[0], &OWNER);
    assert_int_equal(ts_mailbox_run(mb, &OWNER), 0);
    ts_mailbox_unref(mb);
    assert_int_equal(released, 1);
    assert_int_equal(after->ran_with_owner, 42);
    free(after);
}

/* The last reference runs what is pending with a NULL owner, so args can be released. */
static void test_unref_releases_pending(void **state)
{
    ts_mailbox_t *mb;
    int released = 0, i;
    owned_arg_t *a[4];

    (void)state;
    assert_int_equal(ts_mailbox_create(&mb, count_wake, &wakes), APR_SUCCESS);
    ts_mailbox_ref(mb);                  /* a second holder (a worker) */
    ts_mailbox_ref(mb);                  /* and a third */
    for (i = 0; i < 4; i++) {
        a[i] = owned(&released);
        assert_int_equal(ts_mailbox_post(mb, 10 + (uint64_t)i, release_item, a[i]), APR_SUCCESS);
    }
    ts_mailbox_close(mb);
    /* the owner goes without running them; the workers still hold the mailbox */
    ts_mailbox_unref(mb);
    ts_mailbox_unref(mb);
    assert_int_equal(released, 0);
    assert_int_equal(LOG.n, 0);
    /* a holder's post is refused (closed) */
    assert_int_equal(ts_mailbox_post(mb, 99, log_item, NULL), APR_EOF);
    /* the last reference: every pending item runs once, in order, with no owner */
    ts_mailbox_unref(mb);
    assert_int_equal(released, 4);
    assert_int_equal(LOG.n, 4);
    for (i = 0; i < 4; i++) {
        assert_null(LOG.owner[i]);
        assert_int_equal(LOG.conn_id[i], 10 + (uint64_t)i);
        assert_ptr_equal(LOG.arg[i], a[i]);
    }

    /* unref of an open mailbox with items: the same (close is not required) */
    released = 0;
    memset(&LOG, 0, sizeof(LOG));
    assert_int_equal(ts_mailbox_create(&mb, NULL, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post(mb, 5, release_item, owned(&released)), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post(mb, 6, release_item, owned(&released)), APR_SUCCESS);
    ts_mailbox_unref(mb);
    assert_int_equal(released, 2);
    assert_int_equal(LOG.n, 2);
    assert_null(LOG.owner[0]);
    assert_null(LOG.owner[1]);
}

/* An item may post from its function (it runs outside the lock): it runs on the next run. */
static ts_mailbox_t *REPOST_MB;

static void repost_item(void *owner_ctx, uint64_t conn_id, void *arg)
{
    log_item(owner_ctx, conn_id, arg);
    if (conn_id < 3)
        assert_int_equal(ts_mailbox_post(REPOST_MB, conn_id + 1, repost_item, arg), APR_SUCCESS);
}

static void test_post_from_item(void **state)
{
    (void)state;
    assert_int_equal(ts_mailbox_create(&REPOST_MB, count_wake, &wakes), APR_SUCCESS);
    assert_int_equal(ts_mailbox_post(REPOST_MB, 1, repost_item, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_run(REPOST_MB, &OWNER), 1);
    assert_int_equal(wakes, 2);         /* posted from the item into the emptied queue */
    assert_int_equal(ts_mailbox_run(REPOST_MB, &OWNER), 1);
    assert_int_equal(ts_mailbox_run(REPOST_MB, &OWNER), 1);
    assert_int_equal(ts_mailbox_run(REPOST_MB, &OWNER), 0);
    assert_int_equal(LOG.n, 3);
    assert_int_equal(LOG.conn_id[0], 1);
    assert_int_equal(LOG.conn_id[1], 2);
    assert_int_equal(LOG.conn_id[2], 3);
    assert_int_equal(wakes, 3);
    ts_mailbox_unref(REPOST_MB);
    REPOST_MB = NULL;
}

/* ---- threads ---- */

#define PRODUCERS  6
#define PER_THREAD 5000

typedef struct stress stress_t;

typedef struct {
    stress_t *s;
    int idx;
    int seq;
} item_t;

typedef struct {
    stress_t *s;
    int idx;
    int posted, refused;        /* written by the producer only */
    int status_ok;              /* every refusal was APR_EOF */
} producer_t;

struct stress {
    ts_mailbox_t *mb;
    volatile apr_uint32_t wakes;
    volatile apr_uint32_t started;
    volatile apr_uint32_t done;
    volatile apr_uint32_t ran_owner, ran_null;
    volatile apr_uint32_t posted_total;
    int next_seq[PRODUCERS];    /* the next sequence number expected per producer */
    int order_errors;           /* items out of order per producer */
    int id_errors;
    unsigned char *seen;        /* [PRODUCERS * PER_THREAD] run counts */
    int ref_per_producer;       /* each producer holds its own reference and drops it */
    int close_after;            /* owner closes once this many items ran (0: never) */
};

static void stress_wake(void *baton)
{
    stress_t *s = baton;

    apr_atomic_inc32(&s->wakes);
}

static void stress_item(void *owner_ctx, uint64_t conn_id, void *arg)
{
    item_t *it = arg;
    stress_t *s = it->s;

    if (conn_id != ((uint64_t)it->idx << 32 | (uint64_t)it->seq))
        s->id_errors++;
    if (s->seen[it->idx * PER_THREAD + it->seq] < 255)
        s->seen[it->idx * PER_THREAD + it->seq]++;
    /* runs never overlap (the owner's, then the last unref's): each producer's items
     * arrive in its posting order, none skipped */
    if (it->seq != s->next_seq[it->idx])
        s->order_errors++;
    s->next_seq[it->idx] = it->seq + 1;
    if (owner_ctx) {
        apr_atomic_inc32(&s->ran_owner);
    } else {
        apr_atomic_inc32(&s->ran_null);
    }
    free(it);
}

static void *APR_THREAD_FUNC producer(apr_thread_t *t, void *data)
{
    producer_t *p = data;
    stress_t *s = p->s;
    int i;

    apr_atomic_inc32(&s->started);
    while (apr_atomic_read32(&s->started) < PRODUCERS)
        apr_thread_yield();     /* start together, for the most contention */
    for (i = 0; i < PER_THREAD; i++) {
        item_t *it = malloc(sizeof(*it));
        apr_status_t rv;

        if (!it)
            break;
        it->s = s;
        it->idx = p->idx;
        it->seq = i;
        rv = ts_mailbox_post(s->mb, (uint64_t)p->idx << 32 | (uint64_t)i, stress_item, it);
        if (rv == APR_SUCCESS) {
            p->posted++;
            apr_atomic_inc32(&s->posted_total);
        } else {
            if (rv != APR_EOF)
                p->status_ok = 0;
            p->refused++;
            free(it);           /* refused: still ours */
        }
        if ((i & 255) == 0)
            apr_thread_yield();
    }
    apr_atomic_inc32(&s->done);
    if (s->ref_per_producer)
        ts_mailbox_unref(s->mb);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static void stress_start(stress_t *s, producer_t *prod, apr_thread_t **th, apr_pool_t *pool)
{
    int i;

    for (i = 0; i < PRODUCERS; i++) {
        prod[i].s = s;
        prod[i].idx = i;
        prod[i].status_ok = 1;
        if (s->ref_per_producer)
            ts_mailbox_ref(s->mb);
        assert_int_equal(apr_thread_create(&th[i], NULL, producer, &prod[i], pool), APR_SUCCESS);
    }
}

static void stress_join(apr_thread_t **th)
{
    apr_status_t trv;
    int i;

    for (i = 0; i < PRODUCERS; i++) {
        assert_int_equal(apr_thread_join(&trv, th[i]), APR_SUCCESS);
        assert_int_equal(trv, APR_SUCCESS);
    }
}

/* Producers post thousands of items while the owner drains: each runs exactly once, in
 * per-producer order, on the owner, with at most one wake per post (fewer: coalesced). */
static void test_stress_producers(void **state)
{
    stress_t s;
    producer_t prod[PRODUCERS];
    apr_thread_t *th[PRODUCERS];
    apr_pool_t *pool;
    int i, runs = 0, total = 0;
    unsigned spins = 0;

    (void)state;
    memset(&s, 0, sizeof(s));
    memset(prod, 0, sizeof(prod));
    s.seen = calloc(PRODUCERS * PER_THREAD, 1);
    assert_non_null(s.seen);
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_create(&s.mb, stress_wake, &s), APR_SUCCESS);
    s.ref_per_producer = 1;
    stress_start(&s, prod, th, pool);
    /* the owner: run while anyone produces, then once more for the tail */
    while (apr_atomic_read32(&s.done) < PRODUCERS) {
        int n = ts_mailbox_run(s.mb, &s);

        total += n;
        runs++;
        if (!n && ++spins % 64 == 0)
            apr_sleep(50);
    }
    stress_join(th);
    total += ts_mailbox_run(s.mb, &s);
    assert_int_equal(ts_mailbox_run(s.mb, &s), 0);

    assert_int_equal(total, PRODUCERS * PER_THREAD);
    assert_int_equal(apr_atomic_read32(&s.ran_owner), PRODUCERS * PER_THREAD);
    assert_int_equal(apr_atomic_read32(&s.ran_null), 0);
    assert_true(apr_atomic_read32(&s.wakes) >= 1);
    assert_true(apr_atomic_read32(&s.wakes) <= (apr_uint32_t)runs + 1);  /* one per batch */
    print_message("%u wakes for %d posts\n", apr_atomic_read32(&s.wakes),
                  PRODUCERS * PER_THREAD);
    assert_int_equal(s.order_errors, 0);
    assert_int_equal(s.id_errors, 0);
    for (i = 0; i < PRODUCERS; i++) {
        assert_int_equal(prod[i].posted, PER_THREAD);
        assert_int_equal(prod[i].refused, 0);
        assert_int_equal(s.next_seq[i], PER_THREAD);
    }
    for (i = 0; i < PRODUCERS * PER_THREAD; i++)
        if (s.seen[i] != 1)
            fail_msg("item %d of producer %d ran %d times", i % PER_THREAD, i / PER_THREAD,
                     s.seen[i]);
    print_message("%d items in %d runs\n", total, runs);
    ts_mailbox_unref(s.mb);      /* the producers dropped theirs: this is the last */
    apr_pool_destroy(pool);
    free(s.seen);
}

/* The owner closes while producers still post and lets go with items pending: every post
 * either succeeds (and its item runs exactly once, by the owner or by the last unref, on a
 * producer thread, with NULL) or is refused with APR_EOF (and the producer frees it). */
static void test_stress_close_race(void **state)
{
    stress_t s;
    producer_t prod[PRODUCERS];
    apr_thread_t *th[PRODUCERS];
    apr_pool_t *pool;
    int i, posted = 0, refused = 0, ran_total;

    (void)state;
    memset(&s, 0, sizeof(s));
    memset(prod, 0, sizeof(prod));
    s.seen = calloc(PRODUCERS * PER_THREAD, 1);
    assert_non_null(s.seen);
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_int_equal(ts_mailbox_create(&s.mb, stress_wake, &s), APR_SUCCESS);
    s.ref_per_producer = 1;
    stress_start(&s, prod, th, pool);
    /* drain a while, then close mid-stream */
    while (apr_atomic_read32(&s.ran_owner) < PRODUCERS * PER_THREAD / 3
           && apr_atomic_read32(&s.done) < PRODUCERS) {
        if (!ts_mailbox_run(s.mb, &s))
            apr_thread_yield();
    }
    /* stop running; let posts pile up, then close with them pending */
    {
        apr_uint32_t at = apr_atomic_read32(&s.ran_owner);
        while (apr_atomic_read32(&s.posted_total) < at + 100
               && apr_atomic_read32(&s.done) < PRODUCERS)
            apr_thread_yield();
    }
    ts_mailbox_close(s.mb);
    ts_mailbox_unref(s.mb);     /* the owner lets go; the producers' references keep it */
    stress_join(th);            /* the last producer's unref ran the rest with NULL */

    for (i = 0; i < PRODUCERS; i++) {
        assert_true(prod[i].status_ok);
        assert_int_equal(s.next_seq[i], prod[i].posted);
        assert_int_equal(prod[i].posted + prod[i].refused, PER_THREAD);
        posted += prod[i].posted;
        refused += prod[i].refused;
    }
    ran_total = (int)(apr_atomic_read32(&s.ran_owner) + apr_atomic_read32(&s.ran_null));
    print_message("posted %d, refused %d, run by owner %u, released by unref %u\n", posted,
                  refused, apr_atomic_read32(&s.ran_owner), apr_atomic_read32(&s.ran_null));
    assert_int_equal(ran_total, posted);
    assert_true(apr_atomic_read32(&s.ran_null) > 0);   /* the pile was released, not lost */
    assert_true(apr_atomic_read32(&s.wakes) <= (apr_uint32_t)posted);
    assert_true(posted >= PRODUCERS * PER_THREAD / 3);
    assert_int_equal(s.id_errors, 0);
    assert_int_equal(s.order_errors, 0);
    /* per producer, what got through is a prefix: once refused, always refused */
    for (i = 0; i < PRODUCERS * PER_THREAD; i++) {
        int seq = i % PER_THREAD, p = i / PER_THREAD;
        int want = seq < prod[p].posted;

        if (s.seen[i] != want)
            fail_msg("producer %d item %d ran %d times (expected %d)", p, seq, s.seen[i], want);
    }
    apr_pool_destroy(pool);
    free(s.seen);
}

/* An owner that sleeps until woken, as the event loop does: it consumes the wake-up first,
 * then runs. With coalesced wake-ups no post may be left behind without one: every wait for
 * a wake-up that ends by timeout while items are queued is a lost wake-up. */
typedef struct {
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *cond;
    int flag;
    volatile apr_uint32_t count;
} waker_t;

static void cond_wake(void *baton)
{
    waker_t *w = baton;

    apr_atomic_inc32(&w->count);
    apr_thread_mutex_lock(w->mu);
    w->flag = 1;
    apr_thread_cond_signal(w->cond);
    apr_thread_mutex_unlock(w->mu);
}

static void test_stress_sleeping_owner(void **state)
{
    stress_t s;
    producer_t prod[PRODUCERS];
    apr_thread_t *th[PRODUCERS];
    apr_pool_t *pool;
    waker_t w;
    int total = 0, lost = 0, runs = 0, i;

    (void)state;
    memset(&s, 0, sizeof(s));
    memset(prod, 0, sizeof(prod));
    memset(&w, 0, sizeof(w));
    s.seen = calloc(PRODUCERS * PER_THREAD, 1);
    assert_non_null(s.seen);
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_int_equal(apr_thread_mutex_create(&w.mu, APR_THREAD_MUTEX_DEFAULT, pool),
                     APR_SUCCESS);
    assert_int_equal(apr_thread_cond_create(&w.cond, pool), APR_SUCCESS);
    assert_int_equal(ts_mailbox_create(&s.mb, cond_wake, &w), APR_SUCCESS);
    s.ref_per_producer = 1;
    stress_start(&s, prod, th, pool);
    while (total < PRODUCERS * PER_THREAD) {
        int n, woken;

        apr_thread_mutex_lock(w.mu);
        if (!w.flag)
            apr_thread_cond_timedwait(w.cond, w.mu, apr_time_from_msec(500));
        woken = w.flag;
        w.flag = 0;                 /* consume the wake-up before running */
        apr_thread_mutex_unlock(w.mu);
        n = ts_mailbox_run(s.mb, &s);
        runs++;
        if (!woken && n)
            lost++;                 /* items were waiting and nobody woke us */
        total += n;
        if (!woken && !n && apr_atomic_read32(&s.done) == PRODUCERS
            && total < PRODUCERS * PER_THREAD)
            fail_msg("items missing: %d of %d", total, PRODUCERS * PER_THREAD);
    }
    stress_join(th);
    assert_int_equal(ts_mailbox_run(s.mb, &s), 0);
    print_message("%d items, %d runs, %u wakes, %d lost\n", total, runs,
                  apr_atomic_read32(&w.count), lost);
    assert_int_equal(lost, 0);
    assert_int_equal(total, PRODUCERS * PER_THREAD);
    assert_true(apr_atomic_read32(&w.count) <= (apr_uint32_t)runs);
    assert_int_equal(s.order_errors, 0);
    assert_int_equal(s.id_errors, 0);
    for (i = 0; i < PRODUCERS * PER_THREAD; i++)
        assert_int_equal(s.seen[i], 1);
    ts_mailbox_unref(s.mb);
    apr_pool_destroy(pool);
    free(s.seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fifo_order_and_owner, reset),
        cmocka_unit_test_setup(test_wake_coalesced, reset),
        cmocka_unit_test_setup(test_quiet_post, reset),
        cmocka_unit_test_setup(test_post_after_close, reset),
        cmocka_unit_test_setup(test_unref_releases_pending, reset),
        cmocka_unit_test_setup(test_post_from_item, reset),
        cmocka_unit_test_setup(test_stress_producers, reset),
        cmocka_unit_test_setup(test_stress_close_race, reset),
        cmocka_unit_test_setup(test_stress_sleeping_owner, reset),
    };
    int rc;

    apr_initialize();
    rc = cmocka_run_group_tests_name("ts_mailbox", tests, NULL, NULL);
    apr_terminate();
    return rc;
}
