/* mod_ts2021_policy.c: where a tailnet's policy text comes from: the file named by
 * TS2021PolicyFile (read at start-up, checked by `apache2 -t`, re-read on graceful restart),
 * else the newest row of the policies table (ts2021ctl policy set, the admin API). */
#include "mod_ts2021.h"

#include <http_log.h>
#include <apr_file_io.h>
#include <apr_strings.h>

#include "ts_policy.h"

APLOG_USE_MODULE(ts2021);

#define POLICY_FILE_MAX (16u << 20)

/* The file's text (from p), checked by the policy parser; NULL and *err on failure. */
static const char *policy_read_file(apr_pool_t *p, const char *path, const char **err)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n;
    char *buf;
    ts_policy_t *pol;
    const char *perr = NULL;
    apr_pool_t *tmp;
    apr_status_t rv;

    *err = NULL;
    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p);
    if (rv == APR_SUCCESS) rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    if (rv != APR_SUCCESS) {
        char msg[120];
        *err = apr_psprintf(p, "TS2021PolicyFile %s: %s", path, apr_strerror(rv, msg, sizeof(msg)));
        return NULL;
    }
    if (fi.size > POLICY_FILE_MAX) {
        apr_file_close(f);
        *err = apr_psprintf(p, "TS2021PolicyFile %s: larger than %u MB", path,
                            POLICY_FILE_MAX >> 20);
        return NULL;
    }
    n = (apr_size_t)fi.size;
    buf = apr_palloc(p, n + 1);
    rv = apr_file_read_full(f, buf, n, &n);
    apr_file_close(f);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EOF(rv)) {
        *err = apr_psprintf(p, "TS2021PolicyFile %s: cannot read", path);
        return NULL;
    }
    buf[n] = '\0';
    apr_pool_create(&tmp, p);
    rv = ts_policy_parse(tmp, buf, n, &pol, &perr);
    if (rv != APR_SUCCESS) *err = apr_psprintf(p, "TS2021PolicyFile %s: %s", path, perr);
    apr_pool_destroy(tmp);
    return rv == APR_SUCCESS ? buf : NULL;
}

int ts_policy_check_config(apr_pool_t *ptemp, server_rec *s)
{
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        const char *err = NULL;

        if (conf->enabled != 1 || !conf->policy_file) continue;
        if (!policy_read_file(ptemp, conf->policy_file, &err)) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(11070)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

int ts_policy_post_config(apr_pool_t *pconf, server_rec *s)
{
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        const char *err = NULL;

        if (conf->enabled != 1 || !conf->policy_file) continue;
        if (!(conf->policy_text = policy_read_file(pconf, conf->policy_file, &err))) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(11071)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (conf->tailnet) {
            /* registration, ts_policy_set and the admin API see where the policy comes from */
            conf->tailnet->policy_file = conf->policy_file;
            conf->tailnet->policy_text = conf->policy_text;
        }
    }
    return OK;
}

apr_status_t ts_tailnet_policy_text(server_rec *s, ts_store_t *st, apr_pool_t *p,
                                    const char **text, int *from_file, const char **err)
{
    ts_server_conf *conf = ts_conf(s);
    ts_store_policy_t *row = NULL;
    apr_status_t rv;

    *text = NULL;
    *err = NULL;
    if (from_file) *from_file = conf->policy_file != NULL;
    if (conf->policy_file) {
        *text = conf->policy_text;
        return APR_SUCCESS;
    }
    rv = ts_store_policy_get(st, p, &row, err);
    if (rv == TS_STORE_ENOTFOUND) {
        *err = NULL;
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) *text = row->data;
    return rv;
}
