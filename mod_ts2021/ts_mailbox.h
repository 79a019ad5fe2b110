/* ts_mailbox.h: how other threads hand work to the thread that owns connections:
 * a mutex-protected queue plus a wake-up callback. Core: APR only. */
#ifndef TS_MAILBOX_H
#define TS_MAILBOX_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <stdint.h>

typedef struct ts_mailbox ts_mailbox_t;

/* Runs on the owner thread. conn_id names the connection the item is for; the owner
 * resolves it (and passes NULL when that connection is gone, so arg can be freed). */
typedef void ts_mailbox_fn(void *owner_ctx, uint64_t conn_id, void *arg);

/* Wakes the owner thread (a non-blocking pipe or eventfd write). Called under the mailbox
 * lock, only when the queue goes from empty to non-empty (one wake-up per batch the owner
 * takes, however many posts): it must never block (ignore EAGAIN: a full pipe already
 * means "wake up"), take locks others hold while posting, or post. */
typedef void ts_mailbox_wake_fn(void *wake_baton);

/* The mailbox is reference-counted: the creator holds one reference. */
apr_status_t ts_mailbox_create(ts_mailbox_t **mb, ts_mailbox_wake_fn *wake, void *wake_baton);
void ts_mailbox_ref(ts_mailbox_t *mb);
/* Drops a reference; the last one frees the mailbox and runs pending items with
 * owner_ctx NULL so their args are released. */
void ts_mailbox_unref(ts_mailbox_t *mb);

/* Any thread. APR_EOF once the owner closed the mailbox (the caller keeps arg). Wakes the
 * owner if the queue was empty; the owner takes every queued item at once (ts_mailbox_run),
 * so the next post after that wakes it again. */
apr_status_t ts_mailbox_post(ts_mailbox_t *mb, uint64_t conn_id, ts_mailbox_fn *fn, void *arg);

/* As ts_mailbox_post, without waking the owner: for an item that can wait until the owner
 * wakes up for another reason (an event of its own that the poster arranged, or its timer).
 * A later ordinary post still wakes it. */
apr_status_t ts_mailbox_post_quiet(ts_mailbox_t *mb, uint64_t conn_id, ts_mailbox_fn *fn,
                                   void *arg);

/* Owner thread: runs every queued item in order, outside the lock. Returns how many.
 * Consume pending wake-ups (drain the pipe) BEFORE this call, never after: a post landing
 * between the two would otherwise have its wake-up swallowed. */
int ts_mailbox_run(ts_mailbox_t *mb, void *owner_ctx);

/* Owner thread: refuse further posts (pending items stay until run or unref). */
void ts_mailbox_close(ts_mailbox_t *mb);

#endif
