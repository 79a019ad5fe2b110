/* mod_ts2021_register.c: SetHandler ts2021-register: the page behind a client's AuthURL
 * (/register/<id>). Apache's own auth modules decide who reaches it; the login name they
 * establish (r->user, or TS2021LoginUserVar/Expr) owns the device once confirmed. */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_metrics.h"
#include "mod_ts2021_notify.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_strings.h>
#include <sodium.h>

#include "ts_regpage.h"
#include "ts_register.h"

APLOG_USE_MODULE(ts2021);

#define FORM_MAX 4096

static int regpage_send(request_rec *r, int status, const char *html)
{
    r->status = status;
    ap_set_content_type(r, "text/html; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "X-Frame-Options", "DENY");
    apr_table_setn(r->headers_out, "Referrer-Policy", "no-referrer");
    apr_table_setn(r->headers_out, "Content-Security-Policy",
                   "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                   "frame-ancestors 'none'; base-uri 'none'");
    ap_rputs(html, r);
    return OK;
}

static int regpage_message(request_rec *r, int status, const char *title, const char *text)
{
    return regpage_send(r, status, ts_regpage_render_message(r->pool, title, text));
}

/* The login name: TS2021LoginUserExpr, else TS2021LoginUserVar (environment, then notes),
 * else the authenticated user. NULL when there is none; *why says where it was looked for. */
static const char *regpage_login(request_rec *r, const ts_server_conf *conf, const char **why)
{
    const char *v = NULL, *err = NULL;

    if (conf->login_user_expr) {
        v = ap_expr_str_exec(r, conf->login_user_expr, &err);
        *why = err ? apr_psprintf(r->pool, "TS2021LoginUserExpr failed: %s", err)
                   : "TS2021LoginUserExpr gave an empty string";
    }
    else if (conf->login_user_var) {
        v = apr_table_get(r->subprocess_env, conf->login_user_var);
        if (!v || !*v) v = apr_table_get(r->notes, conf->login_user_var);
        *why = apr_psprintf(r->pool, "TS2021LoginUserVar %s is not set", conf->login_user_var);
    }
    else {
        v = r->user;
        *why = "no authenticated user: protect this location with AuthType and Require";
    }
    return (v && *v && !err) ? v : NULL;
}

static const char *form_value(request_rec *r, apr_array_header_t *pairs, const char *name)
{
    int i;

    for (i = 0; pairs && i < pairs->nelts; i++) {
        ap_form_pair_t *f = &APR_ARRAY_IDX(pairs, i, ap_form_pair_t);
        apr_off_t len;
        apr_size_t size;
        char *buf;

        if (strcmp(f->name, name) != 0) continue;
        if (apr_brigade_length(f->value, 1, &len) != APR_SUCCESS || len > FORM_MAX) {
            return NULL;
        }
        size = (apr_size_t)len;
        buf = apr_palloc(r->pool, size + 1);
        if (apr_brigade_flatten(f->value, buf, &size) != APR_SUCCESS) return NULL;
        buf[size] = '\0';
        return buf;
    }
    return NULL;
}

static int regpage_post(request_rec *r, ts_server_conf *conf, ts_store_t *st,
                        const uint8_t *secret, const char *auth_id, const char *login)
{
    apr_array_header_t *pairs = NULL;
    const char *token, *action, *err = NULL;
    ts_user_t *u = NULL;
    ts_node_t *n = NULL;
    apr_int64_t node_id = 0;
    apr_status_t rv;
    int status;

    status = ap_parse_form_data(r, NULL, &pairs, 8, FORM_MAX);
    if (status != OK) {
        return regpage_message(r, status == HTTP_REQUEST_ENTITY_TOO_LARGE ? status : 400,
                               "Bad request", "The form could not be read.");
    }
    token = form_value(r, pairs, "token");
    action = form_value(r, pairs, "action");
    if (!ts_regpage_token_check(secret, token, auth_id, login, apr_time_now())) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, APLOGNO(11300)
                      "TS2021 login page: %s for %s by '%s' refused: %s form token",
                      action ? action : "POST", auth_id, login, token ? "bad" : "no");
        return regpage_message(r, HTTP_FORBIDDEN, "Confirmation refused",
                               "This form has expired or did not come from this server. "
                               "Reload the page and confirm again.");
    }
    if (action && !strcmp(action, "reject")) {
        rv = ts_register_reject(st, r->pool, auth_id, apr_psprintf(r->pool,
                                "registration rejected by %s", login), &err);
        if (rv == APR_SUCCESS) {
            ts_notify_bump();
            ts_metrics_add(TS_MET_REG_REJECTED, 1);
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(11301)
                          "TS2021 login page: %s rejected by '%s'", auth_id, login);
            return regpage_send(r, HTTP_OK, ts_regpage_render_done(r->pool, NULL, login, 0));
        }
    }
    else if (!action || !strcmp(action, "approve")) {
        rv = ts_regpage_approve(st, r->pool, conf->tailnet, auth_id, login, &u, &node_id, &err);
        if (rv == APR_SUCCESS) {
            /* the waiting client's follow-up is rechecked when the notifier wakes */
            ts_notify_bump();
            ts_metrics_add(TS_MET_REG_APPROVED, 1);
            rv = ts_store_node_get(st, r->pool, node_id, &n, &err);
        }
        if (rv == APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(11302)
                          "TS2021 login page: %s approved by '%s': node %" APR_INT64_T_FMT
                          " '%s'", auth_id, login, n->id, n->given_name);
            return regpage_send(r, HTTP_OK, ts_regpage_render_done(r->pool, n, login, 1));
        }
    }
    else {
        return regpage_message(r, HTTP_BAD_REQUEST, "Bad request", "Unknown action.");
    }
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, APLOGNO(11303)
                  "TS2021 login page: %s for %s by '%s' failed: %s",
                  action ? action : "approve", auth_id, login, err ? err : "unknown error");
    if (rv == TS_STORE_ENOTFOUND) {
        return regpage_message(r, HTTP_NOT_FOUND, "Unknown or expired registration",
                               "This registration link is unknown or has expired. Run "
                               "'tailscale up' again.");
    }
    if (rv == TS_STORE_ECONFLICT) {
        return regpage_message(r, HTTP_CONFLICT, "Not approved",
                               "This registration is no longer pending (approved, rejected "
                               "or expired meanwhile).");
    }
    if (rv == APR_EACCES || rv == APR_EINVAL) {
        return regpage_message(r, HTTP_FORBIDDEN, "Not approved", err ? err : "refused");
    }
    return regpage_message(r, HTTP_INTERNAL_SERVER_ERROR, "Server error",
                           "The device could not be registered. Try again later.");
}

int ts_regpage_handler(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);
    const char *auth_id, *login, *why = NULL;
    uint8_t secret[TS_REGPAGE_SECRET_LEN];
    ts_regpage_lookup_t look;
    ts_store_t *st;
    int status;

    ap_allow_standard_methods(r, REPLACE_ALLOW, M_GET, M_POST, -1);
    if (r->method_number != M_GET && r->method_number != M_POST) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (conf->enabled != 1 || !conf->dbd || !conf->keys || !conf->tailnet) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(11304)
                      "TS2021 login page: TS2021 is not On in this virtual host");
        return regpage_message(r, HTTP_NOT_FOUND, "Not found",
                               "No control server runs on this host.");
    }
    auth_id = strrchr(r->uri, '/') ? strrchr(r->uri, '/') + 1 : r->uri;
    login = regpage_login(r, conf, &why);
    if (!login || !ts_regpage_login_valid(login)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(11305)
                      "TS2021 login page: %s", login ? "the login name is not a valid user "
                      "name (empty, too long, or not printable UTF-8)" : why);
        return regpage_message(r, HTTP_FORBIDDEN, "No user name",
                               "Your login did not give a user name this server can use.");
    }
    if (!(st = ts_dbd_acquire(r))) {
        return regpage_message(r, HTTP_SERVICE_UNAVAILABLE, "Server busy",
                               "The database is unavailable. Try again later.");
    }
    ts_regpage_lookup(st, r->pool, auth_id, apr_time_now(), &look);
    if (look.log) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(11306)
                      "TS2021 login page: reading %s: %s", auth_id, look.log);
    }
    if (look.status != HTTP_OK) {
        if (r->method_number == M_POST) {
            /* drain the form, so the connection can be kept */
            ap_discard_request_body(r);
        }
        return regpage_message(r, look.status, look.title, look.message);
    }
    ts_regpage_secret(secret, conf->keys->noise_priv);
    if (r->method_number == M_POST) {
        status = regpage_post(r, conf, st, secret, auth_id, login);
    }
    else {
        status = regpage_send(r, HTTP_OK, ts_regpage_render_confirm(r->pool, look.reg, login,
                              ts_regpage_token(r->pool, secret, auth_id, login,
                                               apr_time_now())));
    }
    sodium_memzero(secret, sizeof(secret));
    return status;
}
