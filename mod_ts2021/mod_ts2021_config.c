/* mod_ts2021_config.c: the TS2021* directives, per-server creation and merging.
 * Every field starts unset so a VirtualHost inherits what it does not set. */
#include "mod_ts2021.h"
#include "ts_ui.h"

#include <http_log.h>
#include <http_core.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <apr_uri.h>

#ifndef TS_DEFAULT_STATE_DIR
#define TS_DEFAULT_STATE_DIR "/var/lib/apache2/ts2021"
#endif

ts_server_conf *ts_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &ts2021_module);
}

void *ts_config_create_server(apr_pool_t *p, server_rec *s)
{
    ts_server_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)s;
    conf->enabled = TS_UNSET;
    conf->min_capver = TS_UNSET;
    conf->test_endpoints = TS_UNSET;
    conf->drain_time = -1;
    conf->handshake_timeout = -1;
    conf->idle_timeout = -1;
    conf->ipalloc = TS_UNSET;
    conf->node_expiry = conf->ephemeral_timeout = conf->offline_grace = -1;
    conf->keepalive = -1;
    conf->magic_dns = TS_UNSET;
    conf->dns.override_local = TS_UNSET;
    conf->derp_refresh = -1;
    return conf;
}

void *ts_config_merge_server(apr_pool_t *p, void *basev, void *addv)
{
    ts_server_conf *base = basev, *add = addv;
    ts_server_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->enabled = add->enabled != TS_UNSET ? add->enabled : base->enabled;
    conf->state_dir = add->state_dir ? add->state_dir : base->state_dir;
    /* A key file is one vhost's identity: never inherited, unless the vhost says so. */
    conf->key_file = add->key_file;
    conf->server_url = add->server_url ? add->server_url : base->server_url;
    conf->min_capver = add->min_capver != TS_UNSET ? add->min_capver : base->min_capver;
    conf->test_endpoints = add->test_endpoints != TS_UNSET ? add->test_endpoints
                                                           : base->test_endpoints;
    conf->drain_time = add->drain_time >= 0 ? add->drain_time : base->drain_time;
    conf->handshake_timeout = add->handshake_timeout >= 0 ? add->handshake_timeout
                                                          : base->handshake_timeout;
    conf->idle_timeout = add->idle_timeout >= 0 ? add->idle_timeout : base->idle_timeout;
#define MERGE_PTR(f) conf->f = add->f ? add->f : base->f
#define MERGE_INT(f) conf->f = add->f != TS_UNSET ? add->f : base->f
#define MERGE_TIME(f) conf->f = add->f >= 0 ? add->f : base->f
    MERGE_PTR(base_domain);
    MERGE_PTR(ipv4_prefix);
    MERGE_PTR(ipv6_prefix);
    MERGE_INT(ipalloc);
    MERGE_TIME(node_expiry);
    MERGE_TIME(ephemeral_timeout);
    MERGE_TIME(offline_grace);
    MERGE_TIME(keepalive);
    MERGE_PTR(derp_files);
    MERGE_PTR(derp_urls);
    MERGE_PTR(policy_file);
    MERGE_TIME(derp_refresh);
    MERGE_PTR(dns_file);
    MERGE_INT(magic_dns);
    MERGE_PTR(dns.nameservers);
    MERGE_INT(dns.override_local);
    MERGE_PTR(dns.split);
    MERGE_PTR(dns.search);
    MERGE_PTR(dns.records);
    MERGE_PTR(login_user_var);
    MERGE_PTR(login_user_expr);
    MERGE_PTR(admin_api_url);
#undef MERGE_PTR
#undef MERGE_INT
#undef MERGE_TIME
    return conf;
}

void *ts_config_create_dir(apr_pool_t *p, char *dir)
{
    ts_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->sections = apr_array_make(p, 1, sizeof(const char *));
    if (dir) APR_ARRAY_PUSH(dc->sections, const char *) = apr_pstrdup(p, dir);
    dc->admin_api_keys = TS_UNSET;
    return dc;
}

void *ts_config_merge_dir(apr_pool_t *p, void *basev, void *addv)
{
    ts_dir_conf *base = basev, *add = addv;
    ts_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->sections = apr_array_append(p, base->sections, add->sections);
    dc->admin_base = add->admin_base ? add->admin_base : base->admin_base;
    dc->admin_api_keys = add->admin_api_keys != TS_UNSET ? add->admin_api_keys
                                                         : base->admin_api_keys;
    return dc;
}

ts_dir_conf *ts_dir_conf_of(request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &ts2021_module);
}

const char *ts_config_state_dir(apr_pool_t *p, const ts_server_conf *conf)
{
    (void)p;
    return conf->state_dir ? conf->state_dir : TS_DEFAULT_STATE_DIR;
}

/* Default key file: one per ServerName, not per port, since a client fetches /key
 * once and then upgrades on :80 or :443, and both must hold the same Noise key. */
const char *ts_config_key_file(apr_pool_t *p, server_rec *s, const ts_server_conf *conf)
{
    char *name, *c;

    if (conf->key_file) return conf->key_file;
    name = apr_psprintf(p, "%s.key", s->server_hostname ? s->server_hostname : "default");
    for (c = name; *c; c++) {
        if (!apr_isalnum(*c) && *c != '.' && *c != '-' && *c != '_') *c = '_';
    }
    return apr_pstrcat(p, ts_config_state_dir(p, conf), "/", name, NULL);
}

static const char *set_enabled(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);

    (void)dc;
    if (!strcasecmp(arg, "on")) conf->enabled = 1;
    else if (!strcasecmp(arg, "off")) conf->enabled = 0;
    else return apr_psprintf(cmd->pool, "TS2021: '%s' is not On or Off", arg);
    return NULL;
}

static const char *set_state_dir(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);

    (void)dc;
    conf->state_dir = ap_server_root_relative(cmd->pool, arg);
    if (!conf->state_dir) return apr_psprintf(cmd->pool, "TS2021StateDir: invalid path '%s'", arg);
    return NULL;
}

static const char *set_key_file(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);

    (void)dc;
    conf->key_file = ap_server_root_relative(cmd->pool, arg);
    if (!conf->key_file) return apr_psprintf(cmd->pool, "TS2021KeyFile: invalid path '%s'", arg);
    return NULL;
}

static const char *set_server_url(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    apr_uri_t uri;

    (void)dc;
    if (apr_uri_parse(cmd->pool, arg, &uri) != APR_SUCCESS || !uri.scheme || !uri.hostname
        || (strcasecmp(uri.scheme, "http") && strcasecmp(uri.scheme, "https"))
        || (uri.path && strcmp(uri.path, "/") && uri.path[0]) || uri.query) {
        return apr_psprintf(cmd->pool, "TS2021ServerURL: '%s' is not an http:// or https:// "
                            "URL of the form scheme://host[:port]", arg);
    }
    {
        char *url = apr_pstrdup(cmd->pool, arg);
        size_t n = strlen(url);
        if (n && url[n - 1] == '/') url[n - 1] = '\0';
        conf->server_url = url;
    }
    return NULL;
}

static const char *set_min_capver(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    char *end;
    apr_int64_t v;

    (void)dc;
    v = apr_strtoi64(arg, &end, 10);
    if (*end || end == arg || v < 1 || v > TS_MAX_CAPVER) {
        return apr_psprintf(cmd->pool, "TS2021MinCapVersion: '%s' is not a number "
                            "between 1 and %d", arg, TS_MAX_CAPVER);
    }
    conf->min_capver = (int)v;
    return NULL;
}

static const char *set_test_endpoints(cmd_parms *cmd, void *dc, int flag)
{
    (void)dc;
    ts_conf(cmd->server)->test_endpoints = flag;
    return NULL;
}

apr_interval_time_t ts_config_handshake_timeout(const ts_server_conf *conf)
{
    return conf->handshake_timeout >= 0 ? conf->handshake_timeout : apr_time_from_sec(30);
}

/* Durations with an optional unit (ms, s, mi, h; seconds by default), bounded. */
static const char *parse_duration(cmd_parms *cmd, const char *arg, apr_interval_time_t min,
                                  apr_interval_time_t *out)
{
    apr_interval_time_t t;

    if (ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS || t < min
        || t > apr_time_from_sec(3600)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration between %d ms and 3600 "
                            "seconds", cmd->cmd->name, arg, (int)(min / 1000));
    }
    *out = t;
    return NULL;
}

static const char *set_drain_time(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err;

    (void)dc;
    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY))) return err;
    return parse_duration(cmd, arg, 0, &ts_conf(cmd->server)->drain_time);
}

static const char *set_handshake_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return parse_duration(cmd, arg, apr_time_from_msec(100),
                          &ts_conf(cmd->server)->handshake_timeout);
}

static const char *set_idle_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return parse_duration(cmd, arg, apr_time_from_sec(1), &ts_conf(cmd->server)->idle_timeout);
}

apr_interval_time_t ts_config_idle_timeout(const ts_server_conf *conf)
{
    return conf->idle_timeout >= 0 ? conf->idle_timeout : apr_time_from_sec(600);
}

apr_interval_time_t ts_config_drain_time(const ts_server_conf *conf)
{
    return conf->drain_time >= 0 ? conf->drain_time : apr_time_from_sec(10);
}

apr_interval_time_t ts_config_keepalive(const ts_server_conf *conf)
{
    return conf->keepalive > 0 ? conf->keepalive : apr_time_from_sec(50);
}

apr_interval_time_t ts_config_offline_grace(const ts_server_conf *conf)
{
    return conf->offline_grace >= 0 ? conf->offline_grace : apr_time_from_sec(10);
}

static const char *set_base_domain(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *c;

    (void)dc;
    for (c = arg; *c; c++) {
        if (!apr_isalnum(*c) && *c != '-' && *c != '.') break;
    }
    if (*c || !*arg || arg[0] == '.' || arg[strlen(arg) - 1] == '.' || strlen(arg) > 200) {
        return apr_psprintf(cmd->pool, "TS2021BaseDomain: '%s' is not a domain name "
                            "(letters, digits, '-' and '.', no leading or trailing dot)", arg);
    }
    ts_conf(cmd->server)->base_domain = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *set_prefix(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    int v6 = cmd->info != NULL;

    (void)dc;
    /* Parsed for real (against 100.64.0.0/10 and fd7a:115c:a1e0::/48) at start-up. */
    if (strcasecmp(arg, "none") && !strchr(arg, '/')) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a prefix (address/length) or none",
                            cmd->cmd->name, arg);
    }
    if (v6) conf->ipv6_prefix = apr_pstrdup(cmd->pool, arg);
    else conf->ipv4_prefix = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *set_ipalloc(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    if (!strcasecmp(arg, "sequential")) ts_conf(cmd->server)->ipalloc = TS_IPALLOC_SEQUENTIAL;
    else if (!strcasecmp(arg, "random")) ts_conf(cmd->server)->ipalloc = TS_IPALLOC_RANDOM;
    else return apr_psprintf(cmd->pool, "TS2021IPAllocation: '%s' is not sequential or random",
                             arg);
    return NULL;
}

static const char *set_long_duration(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    apr_interval_time_t t, *slot;
    apr_interval_time_t max = apr_time_from_sec(10 * 365 * 86400);

    (void)dc;
    slot = !strcmp(cmd->cmd->name, "TS2021NodeExpiry") ? &conf->node_expiry
         : !strcmp(cmd->cmd->name, "TS2021EphemeralTimeout") ? &conf->ephemeral_timeout
         : !strcmp(cmd->cmd->name, "TS2021KeepAliveInterval") ? &conf->keepalive
         : &conf->offline_grace;
    if (ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS || t < 0 || t > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration (e.g. 0, 30s, 90mi, "
                            "4320h)", cmd->cmd->name, arg);
    }
    *slot = t;
    return NULL;
}

static const char *add_derp_file(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    const char *path = ap_server_root_relative(cmd->pool, arg);

    (void)dc;
    if (!path) return apr_psprintf(cmd->pool, "TS2021DERPMapFile: invalid path '%s'", arg);
    if (!conf->derp_files) conf->derp_files = apr_array_make(cmd->pool, 2, sizeof(char *));
    APR_ARRAY_PUSH(conf->derp_files, const char *) = path;
    return NULL;
}

static const char *add_derp_url(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);

    (void)dc;
    if ((strncasecmp(arg, "http://", 7) || !arg[7]) && (strncasecmp(arg, "https://", 8) || !arg[8])
        && (strncasecmp(arg, "file:///", 8) || !arg[8])) {
        return apr_psprintf(cmd->pool, "TS2021DERPMapURL: '%s' is not an http://, https:// or "
                            "file:/// URL", arg);
    }
    if (!conf->derp_urls) conf->derp_urls = apr_array_make(cmd->pool, 2, sizeof(char *));
    APR_ARRAY_PUSH(conf->derp_urls, const char *) = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *set_derp_refresh(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_interval_time_t t;

    (void)dc;
    if (ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS || t < apr_time_from_sec(1)
        || t > apr_time_from_sec(7 * 86400)) {
        return apr_psprintf(cmd->pool, "TS2021DERPMapRefresh: '%s' is not a duration between "
                            "1 second and 7 days (e.g. 3h)", arg);
    }
    ts_conf(cmd->server)->derp_refresh = t;
    return NULL;
}

static const char *set_policy_file(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    ts_conf(cmd->server)->policy_file = ap_server_root_relative(cmd->pool, arg);
    if (!ts_conf(cmd->server)->policy_file) {
        return apr_psprintf(cmd->pool, "TS2021PolicyFile: invalid path '%s'", arg);
    }
    return NULL;
}

static const char *set_dns_file(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    ts_conf(cmd->server)->dns_file = ap_server_root_relative(cmd->pool, arg);
    if (!ts_conf(cmd->server)->dns_file) {
        return apr_psprintf(cmd->pool, "TS2021DNSConfigFile: invalid path '%s'", arg);
    }
    return NULL;
}

static const char *set_magic_dns(cmd_parms *cmd, void *dc, int flag)
{
    (void)dc;
    ts_conf(cmd->server)->magic_dns = flag;
    return NULL;
}

static const char *add_dns_nameservers(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    const char *err = ts_dnsconf_check_resolver(cmd->pool, arg);

    (void)dc;
    if (err) return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    if (!conf->dns.nameservers)
        conf->dns.nameservers = apr_array_make(cmd->pool, 2, sizeof(const char *));
    APR_ARRAY_PUSH(conf->dns.nameservers, const char *) = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *set_dns_override(cmd_parms *cmd, void *dc, int flag)
{
    (void)dc;
    ts_conf(cmd->server)->dns.override_local = flag;
    return NULL;
}

static const char *add_dns_search(cmd_parms *cmd, void *dc, const char *arg)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    const char *err = ts_dnsconf_check_domain(cmd->pool, arg);

    (void)dc;
    if (err) return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    if (!conf->dns.search) conf->dns.search = apr_array_make(cmd->pool, 2, sizeof(const char *));
    APR_ARRAY_PUSH(conf->dns.search, const char *) = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

/* TS2021DNSSplit DOMAIN [RESOLVER...]: no resolver = answered by the client (extra records). */
static const char *add_dns_split(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    ts_server_conf *conf = ts_conf(cmd->server);
    ts_dnsconf_split_t *sp;
    const char *err;
    int i;

    (void)dc;
    if (argc < 1) return "TS2021DNSSplit: a domain, then its resolvers (or none)";
    if ((err = ts_dnsconf_check_domain(cmd->pool, argv[0])) != NULL)
        return apr_pstrcat(cmd->pool, "TS2021DNSSplit: ", err, NULL);
    if (!conf->dns.split)
        conf->dns.split = apr_array_make(cmd->pool, 2, sizeof(ts_dnsconf_split_t));
    sp = &APR_ARRAY_PUSH(conf->dns.split, ts_dnsconf_split_t);
    sp->domain = apr_pstrdup(cmd->pool, argv[0]);
    sp->resolvers = apr_array_make(cmd->pool, argc, sizeof(const char *));
    for (i = 1; i < argc; i++) {
        if ((err = ts_dnsconf_check_resolver(cmd->pool, argv[i])) != NULL)
            return apr_pstrcat(cmd->pool, "TS2021DNSSplit: ", err, NULL);
        APR_ARRAY_PUSH(sp->resolvers, const char *) = apr_pstrdup(cmd->pool, argv[i]);
    }
    return NULL;
}

static const char *add_dns_record(cmd_parms *cmd, void *dc, const char *name, const char *type,
                                  const char *value)
{
    ts_server_conf *conf = ts_conf(cmd->server);
    const char *err = ts_dnsconf_check_record(cmd->pool, name, type, value);
    ts_dnsconf_record_t *r;

    (void)dc;
    if (err) return apr_pstrcat(cmd->pool, "TS2021DNSExtraRecord: ", err, NULL);
    if (!conf->dns.records)
        conf->dns.records = apr_array_make(cmd->pool, 2, sizeof(ts_dnsconf_record_t));
    r = &APR_ARRAY_PUSH(conf->dns.records, ts_dnsconf_record_t);
    r->name = apr_pstrdup(cmd->pool, name);
    r->type = apr_pstrdup(cmd->pool, type);
    r->value = apr_pstrdup(cmd->pool, value);
    return NULL;
}

static const char *set_login_user_var(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    if (!*arg) return "TS2021LoginUserVar: the variable name is empty";
    if (!strncasecmp(arg, "HTTP_", 5)) {
        return apr_psprintf(cmd->pool, "TS2021LoginUserVar: '%s' would come from a request "
                            "header, which the client chooses", arg);
    }
    ts_conf(cmd->server)->login_user_var = arg;
    return NULL;
}

static const char *set_login_user_expr(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = NULL;
    ap_expr_info_t *e = ap_expr_parse_cmd(cmd, arg, AP_EXPR_FLAG_STRING_RESULT, &err, NULL);

    (void)dc;
    if (err) return apr_psprintf(cmd->pool, "TS2021LoginUserExpr: '%s': %s", arg, err);
    ts_conf(cmd->server)->login_user_expr = e;
    return NULL;
}

static const char *set_admin_api_url(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    if (!ts_ui_api_url_valid(arg)) {
        return apr_psprintf(cmd->pool, "TS2021AdminAPIURL: '%s' is not a URL path (/...) or "
                            "an http(s) URL without quotes, blanks or angle brackets", arg);
    }
    ts_conf(cmd->server)->admin_api_url = arg;
    return NULL;
}

const command_rec ts_config_cmds[] = {
    AP_INIT_TAKE1("TS2021", set_enabled, NULL, RSRC_CONF,
                  "On|Off: serve the Tailscale control protocol on this virtual host"),
    AP_INIT_TAKE1("TS2021StateDir", set_state_dir, NULL, RSRC_CONF,
                  "directory for the server key files (default " TS_DEFAULT_STATE_DIR ")"),
    AP_INIT_TAKE1("TS2021KeyFile", set_key_file, NULL, RSRC_CONF,
                  "file holding this virtual host's Noise and legacy key pairs"),
    AP_INIT_TAKE1("TS2021ServerURL", set_server_url, NULL, RSRC_CONF,
                  "public URL clients use as --login-server (scheme://host[:port])"),
    AP_INIT_TAKE1("TS2021MinCapVersion", set_min_capver, NULL, RSRC_CONF,
                  "oldest client capability version accepted (default 32, v1.24)"),
    AP_INIT_FLAG("TS2021TestEndpoints", set_test_endpoints, NULL, RSRC_CONF,
                 "On: serve /ts2021-test/ echo and stream paths inside Noise (tests only)"),
    AP_INIT_TAKE1("TS2021DrainTime", set_drain_time, NULL, RSRC_CONF,
                  "window over which a stopping child closes its connections (default 10s)"),
    AP_INIT_TAKE1("TS2021HandshakeTimeout", set_handshake_timeout, NULL, RSRC_CONF,
                  "time from the 101 to the client's first valid record (default 30s)"),
    AP_INIT_TAKE1("TS2021IdleTimeout", set_idle_timeout, NULL, RSRC_CONF,
                  "silence after which a connection with no open stream is closed (default "
                  "600s)"),
    AP_INIT_TAKE1("TS2021BaseDomain", set_base_domain, NULL, RSRC_CONF,
                  "MagicDNS suffix of node names, e.g. tail.example.net"),
    AP_INIT_TAKE1("TS2021IPv4Prefix", set_prefix, NULL, RSRC_CONF,
                  "IPv4 prefix within 100.64.0.0/10 for node addresses, or none"),
    AP_INIT_TAKE1("TS2021IPv6Prefix", set_prefix, "6", RSRC_CONF,
                  "IPv6 prefix within fd7a:115c:a1e0::/48 for node addresses, or none"),
    AP_INIT_TAKE1("TS2021IPAllocation", set_ipalloc, NULL, RSRC_CONF,
                  "sequential (default) or random address allocation"),
    AP_INIT_TAKE1("TS2021NodeExpiry", set_long_duration, NULL, RSRC_CONF,
                  "key expiry of user-owned nodes (0, the default: never)"),
    AP_INIT_TAKE1("TS2021EphemeralTimeout", set_long_duration, NULL, RSRC_CONF,
                  "delete ephemeral nodes this long after their last stream (default 120s)"),
    AP_INIT_TAKE1("TS2021KeepAliveInterval", set_long_duration, NULL, RSRC_CONF,
                  "silence on a map stream before a keep-alive (default 50s, plus up to 9s)"),
    AP_INIT_TAKE1("TS2021OfflineGrace", set_long_duration, NULL, RSRC_CONF,
                  "a node is offline this long after its last stream ended (default 10s)"),
    AP_INIT_ITERATE("TS2021DERPMapFile", add_derp_file, NULL, RSRC_CONF,
                    "DERPMap JSON file(s); later files override regions of earlier ones"),
    AP_INIT_ITERATE("TS2021DERPMapURL", add_derp_url, NULL, RSRC_CONF,
                    "DERPMap JSON URL(s), refreshed; merged before the TS2021DERPMapFile maps"),
    AP_INIT_TAKE1("TS2021DERPMapRefresh", set_derp_refresh, NULL, RSRC_CONF,
                  "how often each child fetches the DERP map URLs again (default 3h)"),
    AP_INIT_TAKE1("TS2021PolicyFile", set_policy_file, NULL, RSRC_CONF,
                  "HuJSON policy file of this tailnet (instead of the one in the database)"),
    AP_INIT_TAKE1("TS2021DNSConfigFile", set_dns_file, NULL, RSRC_CONF,
                  "JSON object of extra tailcfg.DNSConfig fields (resolvers, routes...)"),
    AP_INIT_FLAG("TS2021MagicDNS", set_magic_dns, NULL, RSRC_CONF,
                 "On (default): MagicDNS names under TS2021BaseDomain"),
    AP_INIT_ITERATE("TS2021DNSNameservers", add_dns_nameservers, NULL, RSRC_CONF,
                    "global nameservers for nodes: IP addresses or https:// DoH URLs"),
    AP_INIT_FLAG("TS2021DNSOverrideLocal", set_dns_override, NULL, RSRC_CONF,
                 "On (default): nodes use the global nameservers instead of their own; "
                 "Off: only as a fallback"),
    AP_INIT_TAKE_ARGV("TS2021DNSSplit", add_dns_split, NULL, RSRC_CONF,
                      "DOMAIN [RESOLVER...]: split DNS, queries under DOMAIN go to these"),
    AP_INIT_ITERATE("TS2021DNSSearchDomains", add_dns_search, NULL, RSRC_CONF,
                    "search domains after the MagicDNS base domain"),
    AP_INIT_TAKE3("TS2021DNSExtraRecord", add_dns_record, NULL, RSRC_CONF,
                  "NAME A|AAAA ADDRESS: a record MagicDNS answers"),
    AP_INIT_TAKE1("TS2021LoginUserVar", set_login_user_var, NULL, RSRC_CONF,
                  "login page: the environment variable or note naming the user "
                  "(default: the authenticated user, REMOTE_USER)"),
    AP_INIT_TAKE1("TS2021LoginUserExpr", set_login_user_expr, NULL, RSRC_CONF,
                  "login page: a string expression naming the user, e.g. "
                  "\"%{env:OIDC_CLAIM_email}\""),
    AP_INIT_TAKE1("TS2021AdminAPIURL", set_admin_api_url, NULL, RSRC_CONF,
                  "admin UI: the URL path of the admin API (default /admin/api)"),
    AP_INIT_TAKE1("TS2021AdminBase", ts_admin_set_base, NULL, ACCESS_CONF,
                  "URL path under which SetHandler ts2021-admin serves the API (default: the "
                  "<Location> path)"),
    AP_INIT_FLAG("TS2021AdminAPIKeys", ts_admin_set_api_keys, NULL, ACCESS_CONF,
                 "On: a valid admin API key (Authorization: Bearer) authenticates a request"),
    {NULL}
};
