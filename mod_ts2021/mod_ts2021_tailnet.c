/* mod_ts2021_tailnet.c: each enabled vhost's tailnet settings (ts_tailnet_conf_t) built from
 * the directives at start-up; DERP and DNS files are checked by `apache2 -t` as well. */
#include "mod_ts2021.h"

#include <http_log.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <jansson.h>

#include "ts_derp.h"

APLOG_USE_MODULE(ts2021);

#define TS_DEFAULT_BASE_DOMAIN "tailnet.internal"
#define TS_DNS_FILE_MAX (1 << 20)

/* The merged DERP map of the vhost's files, as JSON text; NULL (and no error) when none. */
static const char *tailnet_derp(apr_pool_t *p, const ts_server_conf *conf, const char **err)
{
    json_t **maps, *merged;
    const char *text = NULL;
    apr_size_t len;
    int i, n = conf->derp_files ? conf->derp_files->nelts : 0;

    *err = NULL;
    if (!n) return NULL;
    maps = apr_pcalloc(p, n * sizeof(*maps));
    for (i = 0; i < n && !*err; i++) {
        if (ts_derp_load_file(p, APR_ARRAY_IDX(conf->derp_files, i, const char *), &maps[i],
                              err) != APR_SUCCESS && !*err) {
            *err = "cannot load DERP map";
        }
    }
    if (!*err && ts_derp_merge(p, maps, n, &merged, err) == APR_SUCCESS) {
        text = ts_derp_text(p, merged, &len);
        json_decref(merged);
    }
    for (i = 0; i < n; i++) {
        if (maps[i]) json_decref(maps[i]);
    }
    return *err ? NULL : text;
}

/* The extra DNSConfig fields of the file: a JSON object, as text. */
static const char *tailnet_dns_file(apr_pool_t *p, const char *path, const char **err)
{
    json_error_t jerr;
    json_t *j;
    char *text;

    *err = NULL;
    if (!path) return NULL;
    j = json_load_file(path, 0, &jerr);
    if (!j) {
        *err = apr_psprintf(p, "TS2021DNSConfigFile %s, line %d: %s", path, jerr.line,
                            jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *err = apr_psprintf(p, "TS2021DNSConfigFile %s: not a JSON object", path);
        return NULL;
    }
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) return NULL;
    {
        char *copy = apr_pstrdup(p, text);
        free(text);
        return copy;
    }
}

/* The file's fields with the DNS directives merged in. */
static const char *tailnet_dns(apr_pool_t *p, const ts_server_conf *conf, const char **err)
{
    const char *file = tailnet_dns_file(p, conf->dns_file, err), *out = NULL;

    if (*err) return NULL;
    if (ts_dnsconf_merge(p, file, &conf->dns, &out, err) != APR_SUCCESS) {
        if (conf->dns_file)
            *err = apr_psprintf(p, "TS2021DNSConfigFile %s: %s", conf->dns_file, *err);
        return NULL;
    }
    return out;
}

int ts_tailnet_check_config(apr_pool_t *ptemp, server_rec *s)
{
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        const char *err = NULL;

        if (conf->enabled != 1) continue;
        tailnet_derp(ptemp, conf, &err);
        if (!err) tailnet_dns(ptemp, conf, &err);
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(11020)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

static const char *tailnet_server_url(apr_pool_t *p, server_rec *s, const ts_server_conf *conf)
{
    if (conf->server_url) return conf->server_url;
    /* Without TS2021ServerURL: the vhost's name; https unless it listens on port 80. */
    return apr_psprintf(p, "%s://%s", s->port == 80 ? "http" : "https", s->server_hostname);
}

static const char *tailnet_prefix(const char *set, const char *dflt)
{
    if (!set) return dflt;
    return strcasecmp(set, "none") ? set : NULL;
}

int ts_tailnet_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        ts_tailnet_conf_t *t;
        const char *err = NULL;

        (void)ptemp;
        if (conf->enabled != 1) continue;
        t = conf->tailnet = apr_pcalloc(pconf, sizeof(*t));
        t->server_url = tailnet_server_url(pconf, s, conf);
        t->base_domain = conf->base_domain ? conf->base_domain : TS_DEFAULT_BASE_DOMAIN;
        t->ipv4_prefix = tailnet_prefix(conf->ipv4_prefix, "100.64.0.0/10");
        t->ipv6_prefix = tailnet_prefix(conf->ipv6_prefix, "fd7a:115c:a1e0::/48");
        t->ipalloc = conf->ipalloc != TS_UNSET ? conf->ipalloc : TS_IPALLOC_SEQUENTIAL;
        t->node_expiry = conf->node_expiry >= 0 ? conf->node_expiry : 0;
        t->ephemeral_timeout = conf->ephemeral_timeout >= 0 ? conf->ephemeral_timeout
                                                            : apr_time_from_sec(120);
        t->registration_ttl = apr_time_from_sec(15 * 60);
        t->magic_dns = conf->magic_dns != 0;
        t->min_capver = conf->min_capver != TS_UNSET ? conf->min_capver : TS_DEFAULT_MIN_CAPVER;
        t->derp_map_json = conf->derp_json =
            conf->derp_urls ? ts_derpsrc_post_config(pconf, ptemp, s, conf, &err)
                            : tailnet_derp(pconf, conf, &err);
        if (!err) t->dns_config_json = tailnet_dns(pconf, conf, &err);
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(11021)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (!t->derp_map_json) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, APLOGNO(11022)
                         "TS2021 (%s:%u): no DERP map (TS2021DERPMapFile, "
                         "TS2021DERPMapURL): clients will register but get no network map "
                         "until one is available", s->server_hostname, s->port);
        }
    }
    return OK;
}
