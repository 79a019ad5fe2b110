/* ts_names.h: node names for MagicDNS (control spec 5.3): a client hostname turned into a
 * DNS label, made unique in the tailnet by -1, -2 … suffixes, and checks of admin renames. */
#ifndef TS_NAMES_H
#define TS_NAMES_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>
#include "ts_store.h"

#define TS_NAMES_LABEL_MAX 63
#define TS_NAMES_FQDN_MAX 255

/* The DNS label for a raw Hostinfo.Hostname: .local/.localdomain/.lan dropped, lower case,
 * space . @ _ turned into '-', anything outside [a-z0-9-] removed, no '-' at either end,
 * at most 63 characters; "node" when nothing is left. Never NULL. */
const char *ts_names_sanitize(apr_pool_t *p, const char *hostname);

/* APR_SUCCESS if name may be given to a node by an admin: a label of 1-63 characters from
 * [a-z0-9-] not starting or ending with '-', and name.base_domain. within 255 characters
 * (base_domain may be NULL). Else APR_EINVAL and a message naming the problem. */
apr_status_t ts_names_check(apr_pool_t *p, const char *name, const char *base_domain,
                            const char **err);

/* Candidate n of a base name: base itself for 0, else base-n with base shortened so that
 * the whole stays within 63 characters. */
const char *ts_names_candidate(apr_pool_t *p, const char *base, int n);

/* The first candidate of base that no node in nodes (ts_node_t *) other than self_id
 * (0: none) uses. A hint only: the unique index decides when the node is written. */
const char *ts_names_unique_in(apr_pool_t *p, const char *base, apr_int64_t self_id,
                               const apr_array_header_t *nodes);

/* What every candidate n >= 1 of base starts with: base + "-" when no candidate needs
 * shortening, else the shortest head. Names in the range [prefix, prefix with its last
 * byte + 1) are all a registration has to read to choose a suffix. */
const char *ts_names_suffix_prefix(apr_pool_t *p, const char *base);

/* The first candidate n >= 1 of base that is not in taken (const char *, NULL entries
 * ignored): "base-1", "base-2" ... */
const char *ts_names_first_free(apr_pool_t *p, const char *base, const apr_array_header_t *taken);

/* The same, asking the store one candidate at a time (for callers without a node list). */
apr_status_t ts_names_unique(ts_store_t *st, apr_pool_t *p, const char *base,
                             apr_int64_t self_id, const char **name, const char **err);

/* 1 if given_name is what the server derives from hostname (a candidate of
 * sanitize(hostname)), so that a client's new hostname may replace it; 0 after an admin
 * rename. */
int ts_names_is_derived(apr_pool_t *p, const char *given_name, const char *hostname);

/* "<given_name>.<base_domain>." or, without a base domain, the bare label. */
const char *ts_names_fqdn(apr_pool_t *p, const char *given_name, const char *base_domain);

#endif
