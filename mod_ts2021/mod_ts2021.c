/* mod_ts2021.c: the module's hooks: start-up checks, key loading, per-child
 * database bring-up, and dispatch of the Tailscale control paths to handlers. */
#include "mod_ts2021.h"
#include "mod_ts2021_conn.h"
#include "mod_ts2021_status.h"
#include "mod_ts2021_machine.h"
#include "mod_ts2021_notify.h"
#include "mod_ts2021_presence.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <ap_mpm.h>
#include <mpm_common.h>
#include <sodium.h>


static int ts_any_enabled(server_rec *s)
{
    for (; s; s = s->next) {
        if (ts_conf(s)->enabled == 1) return 1;
    }
    return 0;
}

/* Runs for `apache2 -t` as well as for a start: every configuration mistake we can
 * see without side effects is reported here. */
static int ts_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                           server_rec *s)
{
    int threaded = 0;

    (void)plog;
    if (!ts_any_enabled(s)) return OK;
    if (ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) == APR_SUCCESS
        && threaded == AP_MPMQ_NOT_SUPPORTED) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(10930)
                     "TS2021 needs a threaded MPM (event or worker): long-lived "
                     "control connections would pin one prefork process each");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ts_dbd_check_config(pconf, s) != OK) return HTTP_INTERNAL_SERVER_ERROR;
    if (ts_tailnet_check_config(ptemp, s) != OK) return HTTP_INTERNAL_SERVER_ERROR;
    if (ts_policy_check_config(ptemp, s) != OK) return HTTP_INTERNAL_SERVER_ERROR;
    return ts_keys_check_config(pconf, ptemp, s);
}

static int ts_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                          server_rec *s)
{
    (void)plog;
    if (!ts_any_enabled(s)) return OK;
    if (sodium_init() < 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(10931)
                     "TS2021: libsodium failed to initialise");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ts_keys_post_config(pconf, ptemp, s) != OK) return HTTP_INTERNAL_SERVER_ERROR;
    ts_status_post_config(pconf, s);
    ts_metrics_post_config(s);
    if (ts_tailnet_post_config(pconf, ptemp, s) != OK || ts_policy_post_config(pconf, s) != OK
        || ts_notify_post_config(s) != OK
        || ts_presence_post_config(s) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return ts_dbd_post_config(pconf, s);
}

static void ts_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (!ts_any_enabled(s)) return;
    ts_status_child_init(pchild);
    ts_metrics_child_init();
    ts_conn_child_init();
    ts_dbd_child_init(pchild, s);
    ts_loop_child_init(pchild, s);
    ts_tls_child_init(pchild);
    ts_tailnets_child_init(pchild, s);
    ts_derpsrc_child_init(pchild, s);
    ts_notify_start(pchild, s);
}

static void ts_child_stopping(apr_pool_t *pchild, int graceful)
{
    ts_loop_child_stopping(pchild, graceful);
    ts_tls_child_stopping();
}

/* The protocol fixes the paths, so an enabled vhost serves them without SetHandler;
 * SetHandler ts2021-key also works, e.g. to serve /key on another vhost. */
static int ts_handler(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);
    const char *h = r->handler ? r->handler : "";
    int on = conf->enabled == 1 && r->uri;

    if (!strcmp(h, "ts2021-key") || (on && !strcmp(r->uri, "/key"))) return ts_key_handler(r);
    if (!strcmp(h, "ts2021-info")) return ts_info_handler(r);
    if (!strcmp(h, "ts2021-register")) return ts_regpage_handler(r);
    if (!strcmp(h, "ts2021-admin")) return ts_admin_handler(r);
    if (!strcmp(h, "ts2021-metrics")) return ts_metrics_handler(r);
    if (!strcmp(h, "ts2021-ui")) return ts_ui_handler(r);
    if (!strcmp(h, "ts2021-noise") || (on && !strcmp(r->uri, "/ts2021"))) return ts_conn_handler(r);
    return DECLINED;
}

/* /key and /ts2021 are no files: skip core's directory walk (stats and .htaccess lookups
 * on every request; <Location> sections still apply). */
static int ts_map_to_storage(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);

    if (conf->enabled == 1 && r->uri && (!strcmp(r->uri, "/key") || !strcmp(r->uri, "/ts2021"))) {
        return OK;
    }
    return DECLINED;
}

static void ts_register_hooks(apr_pool_t *p)
{
    static const char *const after_dbd[] = { "mod_dbd.c", NULL };

    (void)p;
    ap_hook_check_config(ts_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(ts_post_config, after_dbd, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(ts_child_init, after_dbd, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(ts_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(ts_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(ts_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ts_status_register_hooks();
    ts_admin_register_hooks(p);
}

AP_DECLARE_MODULE(ts2021) = {
    STANDARD20_MODULE_STUFF,
    ts_config_create_dir,
    ts_config_merge_dir,
    ts_config_create_server,
    ts_config_merge_server,
    ts_config_cmds,
    ts_register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    AP_MODULE_FLAG_NONE
#endif
};
