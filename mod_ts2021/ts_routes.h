/* ts_routes.h: a node's subnet and exit routes (control API 5.9) as the store keeps them
 * (ts_route_t: prefix, advertised, approved): prefixes checked and made canonical, the
 * advertised set taken from Hostinfo.RoutableIPs, approvals added and withdrawn (an exit route
 * approves or withdraws both families). Pure: APR + jansson; the store writes the result. */
#ifndef TS_ROUTES_H
#define TS_ROUTES_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "ts_store.h"

#define TS_ROUTES_MAX 1024    /* per node: more is refused (a Hostinfo from a broken client) */

/* The canonical text of a prefix ("10.0.0.0/24", "fd00:1::/64"): lower-case, compressed,
 * family-sized bit count. NULL and *err (from p, naming the value) when it is not a prefix
 * or has host bits set ("10.0.0.1/24"). */
const char *ts_routes_canonical(apr_pool_t *p, const char *text, const char **err);

/* 0.0.0.0/0 or ::/0 (canonical text). */
int ts_routes_is_exit(const char *prefix);

/* Hostinfo.RoutableIPs of a Hostinfo JSON object text, canonical, without duplicates, in the
 * client's order; entries that are not prefixes are skipped (counted in *skipped if given). */
apr_array_header_t *ts_routes_from_hostinfo(apr_pool_t *p, const char *hostinfo, int *skipped);

/* The node's routes (ts_route_t values) with the advertised flags set from adv (canonical
 * prefixes): approvals are kept (also for prefixes no longer advertised, so re-advertising
 * needs no new approval), rows neither advertised nor approved are dropped. Sorted by prefix
 * text. *changed says whether anything differs from cur. */
apr_array_header_t *ts_routes_with_advertised(apr_pool_t *p, const apr_array_header_t *cur,
                                              const apr_array_header_t *adv, int *changed);

/* The node's routes with each of prefixes (canonical) approved or not; approving or
 * withdrawing an exit route does both families. A prefix approved but not advertised is kept
 * (pre-approval); withdrawing one the node does not advertise drops its row. */
apr_array_header_t *ts_routes_set_approved(apr_pool_t *p, const apr_array_header_t *cur,
                                           const apr_array_header_t *prefixes, int approved,
                                           int *changed);

#endif
