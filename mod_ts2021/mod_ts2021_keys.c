/* mod_ts2021_keys.c: start-up handling of the vhosts' key files: checked by
 * `apache2 -t`, generated and loaded by the root parent before children fork. */
#include "mod_ts2021.h"

#include <http_log.h>
#include <apr_strings.h>
#include <apr_file_info.h>

APLOG_USE_MODULE(ts2021);

/* Runs for `apache2 -t` too: report a broken or unreadable key file there. */
int ts_keys_check_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    (void)pconf;
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        const char *path, *err = NULL;
        ts_keys_t *keys;
        apr_status_t rv;

        if (conf->enabled != 1) continue;
        path = ts_config_key_file(ptemp, s, conf);
        rv = ts_keys_load(&keys, ptemp, path, &err);
        if (rv == APR_ENOENT) continue;  /* generated at start-up */
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, APLOGNO(10901)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

int ts_keys_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        const char *path, *dir, *err = NULL;
        apr_status_t rv;
        int created;

        if (conf->enabled != 1) continue;
        path = ts_config_key_file(ptemp, s, conf);
        if (!conf->key_file) {
            dir = ts_config_state_dir(ptemp, conf);
            rv = apr_dir_make_recursive(dir, APR_FPROT_OS_DEFAULT & 0700, ptemp);
            if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
                ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, APLOGNO(10902)
                             "TS2021: cannot create state directory %s "
                             "(set TS2021StateDir to a writable directory)", dir);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        }
        rv = ts_keys_load_or_create(&conf->keys, pconf, path, &created, &err);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, APLOGNO(10903)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (created) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, APLOGNO(10904)
                         "TS2021: generated new server keys in %s", path);
        }
    }
    return OK;
}
