/* ts_dnsconf.h: the tailnet's DNS settings from directives (control API 5.8): global
 * nameservers (Resolvers, or FallbackResolvers when local DNS is not overridden), split DNS
 * routes, search domains and extra records, checked one by one and merged into the extra
 * tailcfg.DNSConfig object that TS2021DNSConfigFile may also give. Pure: APR + jansson. */
#ifndef TS_DNSCONF_H
#define TS_DNSCONF_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_errno.h>

typedef struct ts_dnsconf_split {
    const char *domain;               /* "corp.example", no trailing dot */
    apr_array_header_t *resolvers;    /* const char *; empty: answered by 100.100.100.100 */
} ts_dnsconf_split_t;

typedef struct ts_dnsconf_record {
    const char *name;                 /* "grafana.tail.example.net", no trailing dot */
    const char *type;                 /* "A" or "AAAA" */
    const char *value;                /* an address of that family */
} ts_dnsconf_record_t;

typedef struct ts_dnsconf {
    apr_array_header_t *nameservers;  /* const char *: IP literals or https:// DoH URLs */
    int override_local;               /* -1 unset (= on), 0, 1 */
    apr_array_header_t *split;        /* ts_dnsconf_split_t */
    apr_array_header_t *search;       /* const char * */
    apr_array_header_t *records;      /* ts_dnsconf_record_t */
} ts_dnsconf_t;

/* Checks, each NULL when fine or an error text from p that names the value. */
const char *ts_dnsconf_check_resolver(apr_pool_t *p, const char *addr);
const char *ts_dnsconf_check_domain(apr_pool_t *p, const char *domain);
const char *ts_dnsconf_check_record(apr_pool_t *p, const char *name, const char *type,
                                    const char *value);

/* A domain as clients want it: lower case, no trailing dot; from p. */
const char *ts_dnsconf_domain(apr_pool_t *p, const char *domain);

/* Merges the directive settings d (may be NULL or empty) into base, the file's DNSConfig
 * object as JSON text (may be NULL). Directive nameservers and search domains come after
 * the file's (duplicates dropped), a split route for a domain replaces the file's route for
 * it, extra records are appended. *out: compact JSON text from p, or NULL when there is
 * nothing at all. APR_EINVAL with *err when base is not a JSON object or has fields of the
 * wrong type for what the directives add to. */
apr_status_t ts_dnsconf_merge(apr_pool_t *p, const char *base, const ts_dnsconf_t *d,
                              const char **out, const char **err);

#endif
