/* mod_ts2021_admin.c: SetHandler ts2021-admin: the REST admin API of ts_admin.c behind the
 * Apache auth the admin configures; with TS2021AdminAPIKeys On, an API key in
 * "Authorization: Bearer" authenticates the request in place of that auth (r->user becomes
 * "apikey:<id>", so `Require valid-user` is satisfied). */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_machine.h"
#include "mod_ts2021_metrics.h"
#include "mod_ts2021_notify.h"
#include "mod_ts2021_presence.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <http_core.h>
#include <mod_auth.h>
#include <apr_strings.h>

#include "ts_admin.h"

APLOG_USE_MODULE(ts2021);

#define ADMIN_NOTE_APIKEY "ts2021-admin-apikey"
#define ADMIN_NOTE_JSON_ERROR "ts2021-admin-json-error"

/* ---- directives ---- */

const char *ts_admin_set_base(cmd_parms *cmd, void *dcv, const char *arg)
{
    ts_dir_conf *dc = dcv;
    apr_size_t n = strlen(arg);

    (void)cmd;
    if (arg[0] != '/') return "TS2021AdminBase must be a URL path starting with '/'";
    while (n > 1 && arg[n - 1] == '/') n--;
    dc->admin_base = apr_pstrmemdup(cmd->pool, arg, n);
    return NULL;
}

const char *ts_admin_set_api_keys(cmd_parms *cmd, void *dcv, int flag)
{
    ts_dir_conf *dc = dcv;

    (void)cmd;
    dc->admin_api_keys = flag;
    return NULL;
}

/* 1 and the length without trailing slashes if section is a path prefix of uri. */
static int admin_prefix_of(const char *section, const char *uri, apr_size_t *len)
{
    apr_size_t n = section ? strlen(section) : 0;

    while (n > 0 && section[n - 1] == '/') n--;
    if (!section || section[0] != '/' || strncmp(uri, section, n)
        || (uri[n] != '\0' && uri[n] != '/')) {
        return 0;
    }
    *len = n;
    return 1;
}

/* The API's base: TS2021AdminBase, else the longest section path that is a path prefix of
 * the URI: the sections holding TS2021 directives, and the innermost section of the request
 * (core's, e.g. the <Location> with SetHandler). NULL if none fits. */
static const char *admin_base(request_rec *r, const ts_dir_conf *dc)
{
    core_dir_config *cd = ap_get_core_module_config(r->per_dir_config);
    const char *best = NULL, *s;
    apr_size_t best_len = 0, n;
    int i;

    if (dc && dc->admin_base) {
        if (!strcmp(dc->admin_base, "/")) return "";
        return admin_prefix_of(dc->admin_base, r->uri, &n) ? dc->admin_base : NULL;
    }
    for (i = -1; i < (dc ? dc->sections->nelts : 0); i++) {
        s = i < 0 ? (cd ? cd->d : NULL) : APR_ARRAY_IDX(dc->sections, i, const char *);
        if (admin_prefix_of(s, r->uri, &n) && (!best || n > best_len)) {
            best = s;
            best_len = n;
        }
    }
    return best ? apr_pstrmemdup(r->pool, best, best_len) : NULL;
}

/* ---- answers ---- */

static int admin_send(request_rec *r, const ts_admin_response_t *res)
{
    r->status = res->status;
    if (res->allow) apr_table_setn(r->headers_out, "Allow", res->allow);
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    ts_metrics_add(res->status < 400 ? TS_MET_ADMIN_OK : res->status < 500
                   ? TS_MET_ADMIN_CLIENT_ERR : TS_MET_ADMIN_SERVER_ERR, 1);
    if (!r->header_only) ap_rputs(res->body, r);
    return OK;
}

static int admin_answer_error(request_rec *r, int status, const char *code, const char *msg)
{
    ts_admin_response_t res;

    memset(&res, 0, sizeof(res));
    ts_admin_error(r->pool, &res, status, code, "%s", msg);
    return admin_send(r, &res);
}

/* The body, up to TS_ADMIN_BODY_MAX; 413 and -1 when longer. */
static int admin_read_body(request_rec *r, const char **body, apr_size_t *len, int *status)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    char *buf;
    apr_size_t got = 0;
    long n;

    *body = "";
    *len = 0;
    *status = 0;
    if (cl && apr_atoi64(cl) > TS_ADMIN_BODY_MAX) {
        *status = HTTP_REQUEST_ENTITY_TOO_LARGE;
        return -1;
    }
    if (ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK) != OK) {
        *status = HTTP_BAD_REQUEST;
        return -1;
    }
    if (!ap_should_client_block(r)) return 0;
    buf = apr_palloc(r->pool, TS_ADMIN_BODY_MAX + 1);
    while ((n = ap_get_client_block(r, buf + got, TS_ADMIN_BODY_MAX + 1 - got)) > 0) {
        got += (apr_size_t)n;
        if (got > TS_ADMIN_BODY_MAX) {
            *status = HTTP_REQUEST_ENTITY_TOO_LARGE;
            return -1;
        }
    }
    if (n < 0) {
        *status = HTTP_BAD_REQUEST;
        return -1;
    }
    buf[got] = '\0';
    *body = buf;
    *len = got;
    return 0;
}

static int admin_online(void *baton, apr_int64_t node_id)
{
    ts_tailnet_rt *rt = baton;

    return ts_presence_online(rt->index, node_id);
}

/* ---- the handler ---- */

int ts_admin_handler(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);
    ts_dir_conf *dc = ts_dir_conf_of(r);
    ts_tailnet_rt *rt = ts_tailnet_of(r->server);
    ts_admin_env_t env;
    ts_admin_request_t req;
    ts_admin_response_t res;
    const char *base, *csrf;
    int status;

    base = admin_base(r, dc);
    if (!base) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(11101)
                      "TS2021 admin: cannot tell where the API starts in %s: set "
                      "TS2021AdminBase", r->uri);
        return admin_answer_error(r, 500, "config", "the API base is unknown (TS2021AdminBase)");
    }
    if (!r->user) {
        /* No Require in force: refuse rather than serve the tailnet to anyone. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(11102)
                      "TS2021 admin: %s is not protected by authentication (AuthType + "
                      "Require): refused", r->uri);
        return admin_answer_error(r, 403, "unprotected", "the admin API needs Apache "
                                  "authentication (AuthType and Require) on its location");
    }
    if (conf->enabled != 1 || !conf->tailnet || !conf->dbd) {
        return admin_answer_error(r, 503, "not_enabled", "TS2021 is not On on this virtual host");
    }
    if (admin_read_body(r, &req.body, &req.len, &status) != 0) {
        r->connection->keepalive = AP_CONN_CLOSE;   /* the rest of the body stays unread */
        if (status == HTTP_REQUEST_ENTITY_TOO_LARGE) {
            return admin_answer_error(r, status, "too_large",
                                      apr_psprintf(r->pool, "the body is larger than %d bytes",
                                                   TS_ADMIN_BODY_MAX));
        }
        return admin_answer_error(r, status, "bad_request", "cannot read the body");
    }
    memset(&env, 0, sizeof(env));
    if (!(env.st = ts_dbd_acquire(r))) {
        return admin_answer_error(r, 503, "database", "database unavailable");
    }
    env.conf = conf->tailnet;
    env.now = apr_time_now();
    env.caller = r->user;
    env.policy_file = conf->policy_file;
    env.policy_file_text = conf->policy_text;
    if (rt) {
        env.online = admin_online;
        env.online_baton = rt;
    }
    req.method = r->method_number == M_GET ? "GET" : r->method;
    req.path = r->uri + strlen(base);
    req.query = r->args;
    req.content_type = apr_table_get(r->headers_in, "Content-Type");
    csrf = apr_table_get(r->headers_in, TS_ADMIN_CSRF_HEADER);
    req.csrf_header = csrf && *csrf;
    req.bearer = apr_table_get(r->notes, ADMIN_NOTE_APIKEY) != NULL;
    ts_admin_handle(&env, r->pool, &req, &res);
    if (res.changed) {
        ts_notify_bump();
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(11103)
                      "TS2021 admin: %s %s by %s: %d", r->method, req.path, r->user,
                      res.status);
        if (res.status == 200 && r->method_number == M_POST) {
            apr_size_t n = strlen(req.path);
            if (n > 8 && !strcmp(req.path + n - 8, "/approve")) {
                ts_metrics_add(TS_MET_REG_APPROVED, 1);
            }
            else if (n > 7 && !strcmp(req.path + n - 7, "/reject")) {
                ts_metrics_add(TS_MET_REG_REJECTED, 1);
            }
        }
    }
    return admin_send(r, &res);
}

/* ---- API keys as authentication ---- */

/* The error page of a refused key is JSON too: httpd writes custom responses as text/html,
 * so this filter corrects the type on the way out. */
static apr_status_t admin_json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    ap_set_content_type(f->r, "application/json");
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void admin_insert_error_filter(request_rec *r)
{
    if (apr_table_get(r->notes, ADMIN_NOTE_JSON_ERROR)) {
        ap_add_output_filter("TS2021_ADMIN_JSON_ERROR", NULL, r, r->connection);
    }
}

static int admin_refuse_key(request_rec *r, int status, const char *code, const char *why)
{
    ts_admin_response_t res;

    memset(&res, 0, sizeof(res));
    ts_admin_error(r->pool, &res, status, code, "%s", why);
    apr_table_setn(r->notes, ADMIN_NOTE_JSON_ERROR, "1");
    if (status == HTTP_UNAUTHORIZED) {
        apr_table_setn(r->err_headers_out, "WWW-Authenticate",
                       "Bearer realm=\"ts2021-admin\", error=\"invalid_token\"");
    }
    ap_custom_response(r, status, res.body);
    ts_metrics_add(TS_MET_ADMIN_CLIENT_ERR, 1);
    return status;
}

static int admin_check_authn(request_rec *r)
{
    ts_dir_conf *dc = ts_dir_conf_of(r);
    const char *authz = apr_table_get(r->headers_in, "Authorization"), *why = NULL;
    ts_store_t *st;
    apr_int64_t id = 0;
    int changed = 0;

    if (!dc || dc->admin_api_keys != 1) return DECLINED;
    if (!authz || strncasecmp(authz, "Bearer ", 7) != 0) {
        /* No other auth configured (keys only): say what is missing, as JSON. */
        if (!ap_auth_type(r)) {
            return admin_refuse_key(r, HTTP_UNAUTHORIZED, "key_required",
                                    "an API key is required (Authorization: Bearer "
                                    TS_ADMIN_APIKEY_PREFIX "...)");
        }
        return DECLINED;
    }
    if (!ts_conf(r->server)->dbd || !(st = ts_dbd_acquire(r))) {
        return admin_refuse_key(r, HTTP_SERVICE_UNAVAILABLE, "database",
                                "database unavailable");
    }
    switch (ts_admin_bearer_check(st, r->pool, authz, apr_time_now(), &id, &changed, &why)) {
    case TS_ADMIN_BEARER_OK:
        r->user = apr_psprintf(r->pool, "apikey:%" APR_INT64_T_FMT, id);
        r->ap_auth_type = "Bearer";
        apr_table_setn(r->notes, ADMIN_NOTE_APIKEY, "1");
        if (changed) ts_notify_bump();
        return OK;
    case TS_ADMIN_BEARER_EXPIRED:
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(11104)
                      "TS2021 admin: %s", why);
        return admin_refuse_key(r, HTTP_UNAUTHORIZED, "key_expired", why);
    case TS_ADMIN_BEARER_ERROR:
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(11105)
                      "TS2021 admin: checking an API key: %s", why ? why : "database error");
        return admin_refuse_key(r, HTTP_SERVICE_UNAVAILABLE, "database",
                                "database unavailable");
    default:
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(11106)
                      "TS2021 admin: refused API key: %s", why ? why : "invalid");
        return admin_refuse_key(r, HTTP_UNAUTHORIZED, "key_invalid",
                                why ? why : "invalid API key");
    }
}

/* Require ts2021-apikey: granted to requests authenticated by a valid API key, so that keys
 * combine with any other Require (user, group, ldap-group …) inside <RequireAny>. */
static authz_status admin_authz_apikey(request_rec *r, const char *require_line,
                                       const void *parsed)
{
    (void)require_line;
    (void)parsed;
    if (apr_table_get(r->notes, ADMIN_NOTE_APIKEY)) return AUTHZ_GRANTED;
    return r->user ? AUTHZ_DENIED : AUTHZ_DENIED_NO_USER;
}

static const authz_provider admin_authz_provider = { &admin_authz_apikey, NULL };

void ts_admin_register_hooks(apr_pool_t *p)
{
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "ts2021-apikey", AUTHZ_PROVIDER_VERSION,
                              &admin_authz_provider, AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_check_authn(admin_check_authn, NULL, NULL, APR_HOOK_FIRST,
                        AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_insert_error_filter(admin_insert_error_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter("TS2021_ADMIN_JSON_ERROR", admin_json_error_filter, NULL,
                              AP_FTYPE_RESOURCE);
}
