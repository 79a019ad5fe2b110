/* ts_tailnet.h: the settings of one tailnet (one VirtualHost) that the core needs to
 * register nodes and build maps. Filled by the glue from directives, by ts2021ctl from flags. */
#ifndef TS_TAILNET_H
#define TS_TAILNET_H

#include <apr_pools.h>
#include <apr_time.h>

typedef enum { TS_IPALLOC_SEQUENTIAL = 0, TS_IPALLOC_RANDOM = 1 } ts_ipalloc_strategy_e;

typedef struct ts_tailnet_conf {
    const char *server_url;         /* "https://ctl.example.net" (no trailing slash) */
    const char *base_domain;        /* MagicDNS suffix, e.g. "tail.example.net"; NULL: none */
    const char *domain;             /* MapResponse.Domain shown by clients */
    const char *ipv4_prefix;        /* within 100.64.0.0/10, e.g. "100.64.0.0/10"; NULL: no v4 */
    const char *ipv6_prefix;        /* within fd7a:115c:a1e0::/48; NULL: no v6 */
    ts_ipalloc_strategy_e ipalloc;
    apr_interval_time_t node_expiry;        /* default key expiry of user nodes; 0: never */
    apr_interval_time_t ephemeral_timeout;  /* delete ephemeral nodes this long after their
                                             * last stream ended (default 120 s) */
    apr_interval_time_t registration_ttl;   /* pending interactive registrations (15 min) */
    int magic_dns;                  /* DNSConfig.Proxied */
    const char *dns_config_json;    /* extra DNSConfig fields as a JSON object text, or NULL */
    const char *derp_map_json;      /* the DERPMap JSON object to send (validated), or NULL */
    int min_capver;                 /* oldest client accepted (register/map answer 400 below) */
    const char *policy_file;        /* TS2021PolicyFile: the policy comes from it, not the
                                     * database; NULL: the database's newest policy */
    const char *policy_text;        /* that file's text, read at start-up */
} ts_tailnet_conf_t;

#endif
