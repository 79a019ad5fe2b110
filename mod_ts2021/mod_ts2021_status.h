/* mod_ts2021_status.h: connection counts per child for mod_status.
 * Counters live in shared memory that outlives graceful restarts. */
#ifndef MOD_TS2021_STATUS_H
#define MOD_TS2021_STATUS_H

#include <httpd.h>

typedef enum { TS_STATUS_LOOP = 0, TS_STATUS_TLS = 1, TS_STATUS_KINDS = 2 } ts_status_kind;

int ts_status_post_config(apr_pool_t *pconf, server_rec *s);
void ts_status_child_init(apr_pool_t *pchild);
/* Any thread: one more (+1) or one fewer (-1) connection of that kind in this child. */
void ts_status_add(ts_status_kind kind, int delta);
void ts_status_register_hooks(void);
/* Sums over every live child: connections by kind and the number of children. */
void ts_status_totals(apr_uint64_t *loop, apr_uint64_t *tls, apr_uint64_t *children);

#endif
