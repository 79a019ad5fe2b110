/* mod_ts2021_notify.h: change notification across threads, children and servers: a shared
 * generation word writers bump, and one notifier thread per child that runs callbacks. */
#ifndef MOD_TS2021_NOTIFY_H
#define MOD_TS2021_NOTIFY_H

#include <httpd.h>

/* Runs on the child's notifier thread: with changed = 1 after a change anywhere (this child,
 * another child, another server on the same database, ts2021ctl) and once at start for the
 * initial load; with changed = 0 at least once a second otherwise (timers). */
typedef void ts_notify_fn(void *baton, int changed);

int ts_notify_post_config(server_rec *s);
void ts_notify_child_init(apr_pool_t *pchild, server_rec *s);
void ts_notify_register(server_rec *s, ts_notify_fn *fn, void *baton);
void ts_notify_start(apr_pool_t *pchild, server_rec *s);

/* Any thread, after committing a change: wakes every child of this server at once. The
 * notifier debounces: it runs the callbacks once changes have been quiet for
 * TS_NOTIFY_QUIET_MS, or TS_NOTIFY_DEBOUNCE_MS after the first one at the latest (more in a
 * storm: TS_NOTIFY_STORM_MS), so that the changes of one event (a node's endpoints and
 * "online") make one delta. */
void ts_notify_bump(void);
#define TS_NOTIFY_QUIET_MS     10
#define TS_NOTIFY_DEBOUNCE_MS  40
/* A storm: TS_NOTIFY_STORM_ROUNDS change rounds within a second (thousands of nodes
 * reconnecting after a restart: each connect is a change). Rounds are then TS_NOTIFY_STORM_MS
 * apart, so that every open stream gets a few large deltas a second rather than 25 small
 * ones, until no change came for half a second. A join (two rounds) is no storm. */
#define TS_NOTIFY_STORM_ROUNDS 8
#define TS_NOTIFY_STORM_MS     250
/* ... and only when each round fans out to this many open streams in the child (a small
 * tailnet's deltas stay at the normal pace). */
#define TS_NOTIFY_STORM_STREAMS 1000

/* From a callback: the open streams it fans out to (summed over the child's tailnets). */
void ts_notify_add_streams(int n);

/* Notifier thread, from a callback: run the callbacks again at once, with changed = 1
 * (a round that stopped before catching up with the change log). */
void ts_notify_again(void);

#endif
