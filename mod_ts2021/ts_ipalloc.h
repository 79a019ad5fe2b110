/* ts_ipalloc.h: tailnet address allocation (control spec 5.4): one IPv4 and one IPv6 per
 * node inside the configured prefixes, sequential or random, skipping reserved addresses. */
#ifndef TS_IPALLOC_H
#define TS_IPALLOC_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>
#include "ts_tailnet.h"

/* Status when a prefix has no free address left. */
#define TS_IPALLOC_EFULL APR_ENOSPC

typedef struct ts_ipalloc_t ts_ipalloc_t;

/* APR_SUCCESS if prefix is a canonical CIDR prefix (no host bits) inside 100.64.0.0/10
 * (family 4) or fd7a:115c:a1e0::/48 (family 6), the ranges clients hard-code. */
apr_status_t ts_ipalloc_check_prefix(apr_pool_t *p, const char *prefix, int family,
                                     const char **err);

/* An allocator for conf's prefixes (either may be NULL: that family is not handed out)
 * and strategy. Lives in p; cheap, so one per registration is fine. */
apr_status_t ts_ipalloc_create(ts_ipalloc_t **a, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                               const char **err);

/* 1 if ip is never given to a node: the prefix's first and last address, 100.100.100.100,
 * 100.115.92.0/23, fd7a:115c:a1e0::53; 0 otherwise (also for text that is no address). */
int ts_ipalloc_reserved(const ts_ipalloc_t *a, const char *ip);

/* Remembers an address lost to a concurrent writer (the database's unique index said so)
 * so that later picks and probes of this allocator skip it. */
void ts_ipalloc_exclude(ts_ipalloc_t *a, const char *ip);

/* The prefix text of family 4 or 6, NULL when that family is not handed out. */
const char *ts_ipalloc_prefix(const ts_ipalloc_t *a, int family);

/* Status when probing gave up: too many candidates in a row were in use. */
#define TS_IPALLOC_EDENSE APR_EAGAIN

/* Whether ip (canonical text of family 4 or 6) is in use: *used 1 or 0, or a failure. */
typedef apr_status_t (*ts_ipalloc_probe_fn)(void *baton, int family, const char *ip,
                                            int *used);

/* A free address of family (4 or 6) found by asking probe about candidates one at a time,
 * so that a registration costs a few indexed lookups whatever the tailnet's size.
 * Sequential: from the address after last (the one handed out before; NULL or outside the
 * prefix: the prefix's start), wrapping round at its end; random: from a random address.
 * Reserved and excluded addresses are skipped without asking. After max_probes used
 * candidates: TS_IPALLOC_EDENSE (ask ts_ipalloc_pick_among with the addresses in use);
 * TS_IPALLOC_EFULL when the whole prefix was looked at. *ip NULL for a family without a
 * prefix. probe's failures are returned as they are. */
apr_status_t ts_ipalloc_probe(ts_ipalloc_t *a, apr_pool_t *p, int family, const char *last,
                              int max_probes, ts_ipalloc_probe_fn probe, void *baton,
                              const char **ip, const char **err);

/* The same from the list of addresses in use (const char *; others families' and NULL
 * entries ignored): after last, or, when last is NULL, after the highest address in use;
 * wrapping round to refill holes. TS_IPALLOC_EFULL naming the prefix when it is full. */
apr_status_t ts_ipalloc_pick_among(ts_ipalloc_t *a, apr_pool_t *p, int family,
                                   const char *last, const apr_array_header_t *used,
                                   const char **ip, const char **err);

/* Both families at once, given every node (ts_node_t *): ts_ipalloc_pick_among with no
 * last address. */
apr_status_t ts_ipalloc_pick(ts_ipalloc_t *a, apr_pool_t *p, const apr_array_header_t *nodes,
                             const char **ipv4, const char **ipv6, const char **err);

#endif
