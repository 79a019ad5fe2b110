/* ts_admin_policy.c: the admin API's policy: the static check (ts_policy_parse, errors located
 * by line and column) and PUT /policy, which checks the text with the policy compiler against
 * the tailnet in the database and stores it (ts_policy_set, as `ts2021ctl policy set`). */
#include "ts_admin.h"
#include "ts_policy.h"
#include "ts_policy_manage.h"

#include <jansson.h>

#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

/* "line 3, column 7: text" or "line 3: text" -> 3, 7 and text; else 0, 0 and msg. */
static void policy_locate(apr_pool_t *p, const char *msg, ts_admin_policy_error_t *e)
{
    const char *s = msg;
    char *end;

    e->line = e->column = 0;
    e->message = msg;
    if (strncmp(s, "line ", 5) != 0) return;
    e->line = (int)strtol(s + 5, &end, 10);
    s = end;
    if (!strncmp(s, ", column ", 9)) {
        e->column = (int)strtol(s + 9, &end, 10);
        s = end;
    }
    if (!strncmp(s, ": ", 2)) e->message = apr_pstrdup(p, s + 2);
    else e->line = e->column = 0, e->message = msg;
}

apr_status_t ts_admin_policy_check(apr_pool_t *p, const char *text, apr_size_t len,
                                   apr_array_header_t **errors)
{
    apr_pool_t *tmp;
    ts_policy_t *pol = NULL;
    const char *err = NULL;
    apr_status_t rv;

    *errors = apr_array_make(p, 1, sizeof(ts_admin_policy_error_t));
    apr_pool_create(&tmp, p);
    rv = ts_policy_parse(tmp, text ? text : "", text ? len : 0, &pol, &err);
    if (rv != APR_SUCCESS) {
        policy_locate(p, apr_pstrdup(p, err ? err : "the policy is not valid"),
                      &APR_ARRAY_PUSH(*errors, ts_admin_policy_error_t));
        rv = APR_EINVAL;
    }
    apr_pool_destroy(tmp);
    return rv;
}

static void admin_policy_body(apr_pool_t *p, ts_admin_response_t *res, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    res->status = status;
    res->body = apr_pstrcat(p, s ? s : "{}", "\n", NULL);
    free(s);
    json_decref(j);
}

void ts_admin_policy_put(const ts_admin_env_t *env, apr_pool_t *p, const char *text,
                         apr_size_t len, ts_admin_response_t *res)
{
    ts_policy_error_t e;
    const char *err = NULL;
    apr_int64_t id = 0;
    apr_status_t rv;
    int approved = 0;

    if (!text || len == 0) {
        ts_admin_error(p, res, 400, "invalid", "the policy is empty");
        return;
    }
    if (env->conf && env->conf->policy_file) {
        ts_admin_error(p, res, 409, "policy_from_file", "this tailnet reads its policy from "
                       "TS2021PolicyFile (%s): edit that file and reload Apache; the API "
                       "cannot change it", env->conf->policy_file);
        return;
    }
    rv = ts_policy_set(env->st, p, env->conf, text, len, &id, &approved, &e, &err);
    if (rv == APR_EINVAL) {
        admin_policy_body(p, res, 400, json_pack(
            "{s:s, s:s, s:[{s:i, s:i, s:s}]}", "error", e.text, "code", "policy_invalid",
            "errors", "line", e.line, "column", e.column, "message", e.message));
        return;
    }
    if (id) res->changed = 1;
    if (rv != APR_SUCCESS && id == 0) {
        ts_admin_error(p, res, rv == TS_STORE_EBUSY ? 503 : rv == TS_STORE_ECONFLICT ? 409 : 500,
                       rv == TS_STORE_EBUSY ? "busy" : rv == TS_STORE_ECONFLICT ? "conflict"
                       : "database", "%s", err ? err : "database error");
        return;
    }
    if (rv != APR_SUCCESS) {
        ts_admin_error(p, res, 500, "database", "the policy was stored (id %" APR_INT64_T_FMT
                       ") but approving routes failed: %s", id, err ? err : "database error");
        return;
    }
    {
        apr_time_exp_t tm;
        apr_time_exp_gmt(&tm, env->now);
        admin_policy_body(p, res, 200, json_pack(
            "{s:I, s:s, s:i}", "id", (json_int_t)id, "updated",
            apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec),
            "auto_approved_nodes", approved));
    }
}
