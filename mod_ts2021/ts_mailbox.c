/* ts_mailbox.c: a FIFO of (connection, function, argument) items posted by worker and
 * notifier threads, run by the single thread that owns the connections. */
#include "ts_mailbox.h"

#include <apr_atomic.h>
#include <apr_thread_mutex.h>
#include <stdlib.h>

typedef struct mailbox_item {
    struct mailbox_item *next;
    uint64_t conn_id;
    ts_mailbox_fn *fn;
    void *arg;
} mailbox_item;

struct ts_mailbox {
    apr_pool_t *pool;
    apr_thread_mutex_t *mu;
    mailbox_item *head, *tail;
    ts_mailbox_wake_fn *wake;
    void *wake_baton;
    volatile apr_uint32_t refs;
    int closed;
    int woken;              /* a wake-up went out since the owner last took the queue */
};

apr_status_t ts_mailbox_create(ts_mailbox_t **out, ts_mailbox_wake_fn *wake, void *wake_baton)
{
    apr_pool_t *p;
    ts_mailbox_t *mb;
    apr_status_t rv;

    /* Own root pool: the mailbox may outlive whoever created it. */
    rv = apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (rv != APR_SUCCESS) return rv;
    mb = apr_pcalloc(p, sizeof(*mb));
    mb->pool = p;
    rv = apr_thread_mutex_create(&mb->mu, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(p);
        return rv;
    }
    mb->wake = wake;
    mb->wake_baton = wake_baton;
    mb->refs = 1;
    *out = mb;
    return APR_SUCCESS;
}

void ts_mailbox_ref(ts_mailbox_t *mb)
{
    apr_atomic_inc32(&mb->refs);
}

static mailbox_item *mailbox_take_all(ts_mailbox_t *mb)
{
    mailbox_item *items;

    apr_thread_mutex_lock(mb->mu);
    items = mb->head;
    mb->head = mb->tail = NULL;
    mb->woken = 0;
    apr_thread_mutex_unlock(mb->mu);
    return items;
}

static int mailbox_run_items(mailbox_item *it, void *owner_ctx)
{
    int n = 0;

    while (it) {
        mailbox_item *next = it->next;
        it->fn(owner_ctx, it->conn_id, it->arg);
        free(it);
        it = next;
        n++;
    }
    return n;
}

void ts_mailbox_unref(ts_mailbox_t *mb)
{
    if (apr_atomic_dec32(&mb->refs) != 0) return;
    mailbox_run_items(mailbox_take_all(mb), NULL);
    apr_pool_destroy(mb->pool);
}

static apr_status_t mailbox_post(ts_mailbox_t *mb, uint64_t conn_id, ts_mailbox_fn *fn,
                                 void *arg, int wake)
{
    mailbox_item *it = malloc(sizeof(*it));

    if (!it) return APR_ENOMEM;
    it->next = NULL;
    it->conn_id = conn_id;
    it->fn = fn;
    it->arg = arg;
    apr_thread_mutex_lock(mb->mu);
    if (mb->closed) {
        apr_thread_mutex_unlock(mb->mu);
        free(it);
        return APR_EOF;
    }
    if (mb->tail) mb->tail->next = it;
    else mb->head = it;
    mb->tail = it;
    /* Once per batch: a wake-up already on its way covers this item too (the owner empties
     * the queue in one go, after draining its wake-ups), so a fan-out of thousands of posts
     * costs one pipe write, not thousands that could fill the pipe. A quiet post leaves the
     * flag alone, so the next ordinary post still wakes the owner. Under the lock, so that
     * once ts_mailbox_close returns nobody wakes a target the owner is about to tear down;
     * wake callbacks never block. */
    if (wake && !mb->woken && mb->wake) {
        mb->woken = 1;
        mb->wake(mb->wake_baton);
    }
    apr_thread_mutex_unlock(mb->mu);
    return APR_SUCCESS;
}

apr_status_t ts_mailbox_post(ts_mailbox_t *mb, uint64_t conn_id, ts_mailbox_fn *fn, void *arg)
{
    return mailbox_post(mb, conn_id, fn, arg, 1);
}

apr_status_t ts_mailbox_post_quiet(ts_mailbox_t *mb, uint64_t conn_id, ts_mailbox_fn *fn,
                                   void *arg)
{
    return mailbox_post(mb, conn_id, fn, arg, 0);
}

int ts_mailbox_run(ts_mailbox_t *mb, void *owner_ctx)
{
    return mailbox_run_items(mailbox_take_all(mb), owner_ctx);
}

void ts_mailbox_close(ts_mailbox_t *mb)
{
    apr_thread_mutex_lock(mb->mu);
    mb->closed = 1;
    apr_thread_mutex_unlock(mb->mu);
}
