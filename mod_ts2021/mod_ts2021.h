/* mod_ts2021.h: the module's shared glue declarations: per-server configuration
 * and the hooks' entry points. Only glue files (mod_ts2021*.c) include it. */
#ifndef MOD_TS2021_H
#define MOD_TS2021_H

#include <httpd.h>
#include <http_config.h>
#include <ap_expr.h>

#include "ts_keys.h"
#include "ts_tailnet.h"
#include "ts_dnsconf.h"
#include "ts_store.h"

/* Only the module structure is exported (-fvisibility=hidden elsewhere). */
extern module AP_MODULE_DECLARE_DATA __attribute__((visibility("default"))) ts2021_module;

#define TS_UNSET (-1)

typedef struct ts_server_conf {
    int enabled;                /* TS2021 On|Off, TS_UNSET until set */
    const char *state_dir;      /* TS2021StateDir; NULL until set */
    const char *key_file;       /* TS2021KeyFile; NULL = derived from state_dir */
    const char *server_url;     /* TS2021ServerURL; NULL = derived from the request */
    int min_capver;             /* TS2021MinCapVersion */
    int test_endpoints;         /* TS2021TestEndpoints: /ts2021-test/ paths inside Noise */
    apr_interval_time_t drain_time; /* TS2021DrainTime; -1 until set */
    apr_interval_time_t idle_timeout;   /* TS2021IdleTimeout; -1 until set */
    apr_interval_time_t handshake_timeout; /* TS2021HandshakeTimeout; -1 until set */
    /* The tailnet (mod_ts2021_tailnet.c). */
    const char *base_domain;        /* TS2021BaseDomain */
    const char *ipv4_prefix;        /* TS2021IPv4Prefix ("none" disables) */
    const char *ipv6_prefix;        /* TS2021IPv6Prefix ("none" disables) */
    int ipalloc;                    /* TS2021IPAllocation sequential|random */
    apr_interval_time_t node_expiry;        /* TS2021NodeExpiry; -1 until set */
    apr_interval_time_t ephemeral_timeout;  /* TS2021EphemeralTimeout; -1 until set */
    apr_interval_time_t offline_grace;      /* TS2021OfflineGrace; -1 until set */
    apr_interval_time_t keepalive;          /* TS2021KeepAliveInterval; -1 until set */
    apr_array_header_t *derp_files; /* TS2021DERPMapFile, in order */
    apr_array_header_t *derp_urls;  /* TS2021DERPMapURL, in order */
    apr_interval_time_t derp_refresh; /* TS2021DERPMapRefresh; -1 until set */
    struct ts_derpsrc *derpsrc;     /* the URL sources (mod_ts2021_derp.c) */
    const char *policy_file;        /* TS2021PolicyFile */
    const char *policy_text;        /* its text, read at start-up (mod_ts2021_policy.c) */
    const char *dns_file;           /* TS2021DNSConfigFile */
    int magic_dns;                  /* TS2021MagicDNS */
    ts_dnsconf_t dns;               /* TS2021DNSNameservers, ...Split, ...SearchDomains,
                                     * ...ExtraRecord, ...OverrideLocal */
    ts_tailnet_conf_t *tailnet;     /* built at start-up from the above */
    const char *derp_json;          /* the merged DERP map text */
    /* The login page (mod_ts2021_register.c) and the admin UI (mod_ts2021_ui.c). */
    const char *login_user_var;     /* TS2021LoginUserVar: env/note naming the user */
    ap_expr_info_t *login_user_expr;   /* TS2021LoginUserExpr: a string expression */
    const char *admin_api_url;      /* TS2021AdminAPIURL (default /admin/api) */
    /* Runtime (post_config, read-only once children run). */
    ts_keys_t *keys;            /* loaded server key pairs */
    struct ts_dbd_state *dbd;   /* per-child database state (mod_ts2021_dbd.c) */
} ts_server_conf;

/* Per-directory configuration (<Location> sections). */
typedef struct ts_dir_conf {
    apr_array_header_t *sections;   /* paths of the sections merged into this one */
    const char *admin_base;         /* TS2021AdminBase; NULL: the <Location> path */
    int admin_api_keys;             /* TS2021AdminAPIKeys On|Off, TS_UNSET until set */
} ts_dir_conf;

void *ts_config_create_dir(apr_pool_t *p, char *dir);
void *ts_config_merge_dir(apr_pool_t *p, void *basev, void *addv);
ts_dir_conf *ts_dir_conf_of(request_rec *r);

#define TS_DEFAULT_MIN_CAPVER 32
#define TS_MAX_CAPVER 65535

ts_server_conf *ts_conf(server_rec *s);
/* Time from the 101 to the client's first valid record (default 30 s). */
apr_interval_time_t ts_config_handshake_timeout(const ts_server_conf *conf);

/* mod_ts2021_config.c */
extern const command_rec ts_config_cmds[];
void *ts_config_create_server(apr_pool_t *p, server_rec *s);
void *ts_config_merge_server(apr_pool_t *p, void *basev, void *addv);
const char *ts_config_state_dir(apr_pool_t *p, const ts_server_conf *conf);
const char *ts_config_key_file(apr_pool_t *p, server_rec *s, const ts_server_conf *conf);

/* mod_ts2021_info.c: SetHandler ts2021-info */
int ts_info_handler(request_rec *r);

/* mod_ts2021_register.c: SetHandler ts2021-register, the interactive login page */
int ts_regpage_handler(request_rec *r);
/* mod_ts2021_admin.c: SetHandler ts2021-admin (REST API), API keys as Apache authn */
int ts_admin_handler(request_rec *r);
void ts_admin_register_hooks(apr_pool_t *p);
const char *ts_admin_set_base(cmd_parms *cmd, void *dc, const char *arg);
const char *ts_admin_set_api_keys(cmd_parms *cmd, void *dc, int flag);

/* mod_ts2021_metrics.c: SetHandler ts2021-metrics (Prometheus text) */
int ts_metrics_handler(request_rec *r);
int ts_metrics_post_config(server_rec *s);
void ts_metrics_child_init(void);

/* mod_ts2021_ui.c: SetHandler ts2021-ui, the web admin UI */
int ts_ui_handler(request_rec *r);

/* mod_ts2021_key.c: GET /key */
int ts_key_handler(request_rec *r);

/* mod_ts2021_keys.c: key files checked, generated and loaded at start-up */
int ts_keys_check_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s);
int ts_keys_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s);

/* mod_ts2021_tailnet.c: the tailnet settings of each enabled vhost */
/* mod_ts2021_derp.c: DERP maps from URLs */
typedef struct ts_derpsrc ts_derpsrc_t;
/* Sets up conf->derpsrc; the merged map (URLs, then files) as text from pconf, or NULL when
 * no source has a region yet; *err only for a broken configuration. */
const char *ts_derpsrc_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s,
                                   ts_server_conf *conf, const char **err);
void ts_derpsrc_child_init(apr_pool_t *pchild, server_rec *s);

/* mod_ts2021_policy.c: the policy's source. TS2021PolicyFile (checked by apache2 -t, read
 * at start-up) wins over the database (the newest row of policies). */
int ts_policy_check_config(apr_pool_t *ptemp, server_rec *s);
int ts_policy_post_config(apr_pool_t *pconf, server_rec *s);
/* The policy text in force for s's tailnet: NULL when there is none (allow all). from_file
 * (may be NULL) says whether it comes from TS2021PolicyFile (then the database is not read
 * and writing a policy through ts2021ctl or the admin API has no effect here). */
apr_status_t ts_tailnet_policy_text(server_rec *s, ts_store_t *st, apr_pool_t *p,
                                    const char **text, int *from_file, const char **err);

int ts_tailnet_check_config(apr_pool_t *ptemp, server_rec *s);
int ts_tailnet_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s);
/* Any thread: output buffers of a burst were freed (queues drained): the notifier's next
 * round gives the heap's free pages back (mod_ts2021_stream.c). */
void ts_tailnet_trim_request(void);
/* Bytes of frames and answers posted to owner threads and not yet handed to a connection. */
apr_size_t ts_tailnet_posted_bytes(void);
apr_interval_time_t ts_config_offline_grace(const ts_server_conf *conf);
apr_interval_time_t ts_config_keepalive(const ts_server_conf *conf);
/* The window over which a stopping child spreads its connections' GOAWAYs (default 10 s). */
apr_interval_time_t ts_config_drain_time(const ts_server_conf *conf);
apr_interval_time_t ts_config_idle_timeout(const ts_server_conf *conf);

/* mod_ts2021_dbd.c: mod_dbd access and schema bring-up */
int ts_dbd_check_config(apr_pool_t *pconf, server_rec *s);
int ts_dbd_post_config(apr_pool_t *pconf, server_rec *s);
void ts_dbd_child_init(apr_pool_t *pchild, server_rec *s);

#endif
