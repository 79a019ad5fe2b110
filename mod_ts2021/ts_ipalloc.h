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
 * so that later picks of this allocator skip it even if the caller's node list is older. */
void ts_ipalloc_exclude(ts_ipalloc_t *a, const char *ip);

/* Free addresses for a new node, given every node (ts_node_t *) in the database: canonical
 * text, or NULL for a family without a prefix. Sequential: the first free address after the
 * highest one in use, wrapping round to refill holes; random: a random start, then the
 * same probing. TS_IPALLOC_EFULL naming the prefix when one is full. */
apr_status_t ts_ipalloc_pick(ts_ipalloc_t *a, apr_pool_t *p, const apr_array_header_t *nodes,
                             const char **ipv4, const char **ipv6, const char **err);

#endif
