/* ts_admin.c: the REST admin API (docs/admin-api.yaml): routing, method, CSRF and body checks,
 * and the helpers the endpoint files (ts_admin_users.c, _nodes.c, _keys.c) share. Every change
 * goes through the store code ts2021ctl uses, so it bumps the generation and is logged. */
#include "ts_admin_int.h"

#include <apr_strings.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- responses ---- */

const char *admin_json_text(apr_pool_t *p, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *out = apr_pstrcat(p, s ? s : "null", "\n", NULL);

    free(s);
    json_decref(j);
    return out;
}

void ts_admin_error(apr_pool_t *p, ts_admin_response_t *res, int status, const char *code,
                    const char *fmt, ...)
{
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    res->status = status;
    res->body = admin_json_text(p, json_pack("{s:s, s:s}", "error", msg, "code", code));
}

int admin_fail(admin_ctx_t *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(c->p, fmt, ap);
    va_end(ap);
    ts_admin_error(c->p, c->res, status, code, "%s", msg);
    return 0;
}

int admin_reply(admin_ctx_t *c, int status, json_t *j)
{
    c->res->status = status;
    c->res->body = admin_json_text(c->p, j);
    return 0;
}

/* A store failure as HTTP: validation 400, missing 404, conflicts 409, the rest 500/503. */
int admin_store_fail(admin_ctx_t *c, apr_status_t rv, const char *err)
{
    const char *msg = err ? err : "database error";

    switch (rv) {
    case APR_EINVAL: return admin_fail(c, 400, "invalid", "%s", msg);
    case TS_STORE_ENOTFOUND: return admin_fail(c, 404, "not_found", "%s", msg);
    case TS_STORE_ECONFLICT: return admin_fail(c, 409, "conflict", "%s", msg);
    case TS_STORE_EREFERENCE: return admin_fail(c, 409, "conflict", "%s", msg);
    case TS_STORE_EBUSY: return admin_fail(c, 503, "busy", "%s", msg);
    default: return admin_fail(c, 500, "database", "%s", msg);
    }
}

/* ---- values ---- */

json_t *admin_jtext(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *admin_jtime(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    if (!t) return json_null();
    apr_time_exp_gmt(&tm, t);
    return json_string(apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                                    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                    tm.tm_sec));
}

json_t *admin_jtags(const char *tags)
{
    json_t *j = tags ? json_loads(tags, 0, NULL) : NULL;

    return json_is_array(j) ? j : (json_decref(j), json_array());
}

int admin_parse_id(const char *s, apr_int64_t *id)
{
    char *end;

    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18) return 0;
    *id = apr_strtoi64(s, &end, 10);
    return *id > 0;
}

int admin_is_number(const char *s)
{
    return s && *s && strspn(s, "0123456789") == strlen(s);
}

/* "90" (seconds), "30s", "15m", "36h", "7d", "2w", combined ("1h30m"); -1 if malformed. */
static apr_interval_time_t parse_duration(const char *s)
{
    apr_interval_time_t total = 0;

    if (!s || !*s) return -1;
    if (admin_is_number(s)) return strlen(s) > 10 ? -1 : apr_time_from_sec(apr_atoi64(s));
    while (*s) {
        char *end;
        apr_int64_t n;
        apr_int64_t unit;
        if (*s < '0' || *s > '9') return -1;
        n = apr_strtoi64(s, &end, 10);
        if (end - s > 10) return -1;
        switch (*end) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return -1;
        }
        total += apr_time_from_sec(n * unit);
        s = end + 1;
    }
    return total;
}

/* An expiration field: null/absent -> dflt from now (0 = never); a number of seconds from
 * now (0 = never); an RFC 3339 time; or a duration text ("90d"). -1 and a message if bad. */
apr_time_t admin_parse_expiration(admin_ctx_t *c, json_t *v, apr_interval_time_t dflt,
                                   const char **why)
{
    apr_time_t t;
    int zero;

    if (!v || json_is_null(v)) return dflt ? c->env->now + dflt : 0;
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n > 100LL * 365 * 86400) {
            *why = "expiration: seconds must be between 0 and 100 years";
            return -1;
        }
        return n ? c->env->now + apr_time_from_sec(n) : 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        apr_interval_time_t d = parse_duration(s);
        if (d > 0) return c->env->now + d;
        if (d == 0) return 0;
        if (ts_register_parse_time(s, &t, &zero) == 0) {
            if (zero) return 0;
            if (t <= c->env->now) {
                *why = "expiration: the time is in the past";
                return -1;
            }
            return t;
        }
    }
    *why = "expiration: give seconds, a duration (\"90d\", \"12h\") or an RFC 3339 time";
    return -1;
}

/* ---- body fields ---- */

/* 1 if every key of the body is in allowed (NULL-terminated); else a 400 is set. */
int admin_body_only(admin_ctx_t *c, const char *const *allowed)
{
    const char *key;
    json_t *v;
    int i, ok;

    json_object_foreach(c->body, key, v) {
        for (i = 0, ok = 0; allowed[i] && !ok; i++) ok = !strcmp(key, allowed[i]);
        if (!ok) {
            admin_fail(c, 400, "invalid", "unknown field '%s'", key);
            return 0;
        }
    }
    return 1;
}

/* A string field: 1 and *out (NULL when absent/null and not required); 0 and a 400. */
int admin_body_string(admin_ctx_t *c, const char *key, int required, const char **out)
{
    json_t *v = json_object_get(c->body, key);

    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) admin_fail(c, 400, "invalid", "field '%s' is required", key);
        return !required;
    }
    if (!json_is_string(v)) {
        admin_fail(c, 400, "invalid", "field '%s' must be a string", key);
        return 0;
    }
    *out = apr_pstrdup(c->p, json_string_value(v));
    if (required && !**out) {
        admin_fail(c, 400, "invalid", "field '%s' must not be empty", key);
        return 0;
    }
    return 1;
}

int admin_body_bool(admin_ctx_t *c, const char *key, int *out)
{
    json_t *v = json_object_get(c->body, key);

    if (!v || json_is_null(v)) return 1;
    if (!json_is_boolean(v)) {
        admin_fail(c, 400, "invalid", "field '%s' must be true or false", key);
        return 0;
    }
    *out = json_is_true(v);
    return 1;
}

/* tags: an array of "tag:name" strings, as compact JSON text ("[]" for none). */
int admin_body_tags(admin_ctx_t *c, const char *key, const char **out)
{
    json_t *v = json_object_get(c->body, key), *t, *arr;
    size_t i, k;
    char *s;

    *out = NULL;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_array(v)) {
        admin_fail(c, 400, "invalid", "field '%s' must be an array of tags", key);
        return 0;
    }
    arr = json_array();
    json_array_foreach(v, i, t) {
        const char *tag = json_string_value(t);
        int dup = 0;
        if (!tag || !ts_register_tag_valid(tag)) {
            json_decref(arr);
            admin_fail(c, 400, "invalid", "'%s' is not a tag (tag:NAME, NAME a letter then "
                       "letters, digits or '-')", tag ? tag : "(not a string)");
            return 0;
        }
        for (k = 0; k < json_array_size(arr) && !dup; k++) {
            dup = !strcmp(json_string_value(json_array_get(arr, k)), tag);
        }
        if (!dup) json_array_append_new(arr, json_string(tag));
    }
    s = json_dumps(arr, JSON_COMPACT);
    *out = apr_pstrdup(c->p, s ? s : "[]");
    free(s);
    json_decref(arr);
    return 1;
}

/* ---- lookups ---- */

int admin_find_user(admin_ctx_t *c, const char *which, ts_user_t **u, int status)
{
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv = admin_parse_id(which, &id)
        ? ts_store_user_get(c->env->st, c->p, id, u, &err)
        : ts_store_user_get_by_name(c->env->st, c->p, which, u, &err);

    if (rv == TS_STORE_ENOTFOUND) {
        admin_fail(c, status, "not_found", "no user '%s'", which);
        return 0;
    }
    if (rv != APR_SUCCESS) {
        admin_store_fail(c, rv, err);
        return 0;
    }
    return 1;
}

/* A user named in a body: a string (name or id) or an integer id. 404 if unknown. */
int admin_body_user(admin_ctx_t *c, const char *key, int required, ts_user_t **u)
{
    json_t *v = json_object_get(c->body, key);

    *u = NULL;
    if (!v || json_is_null(v)) {
        if (required) admin_fail(c, 400, "invalid", "field '%s' is required", key);
        return !required;
    }
    if (json_is_integer(v)) {
        return admin_find_user(c, apr_psprintf(c->p, "%" APR_INT64_T_FMT,
                                            (apr_int64_t)json_integer_value(v)), u, 404);
    }
    if (!json_is_string(v) || !*json_string_value(v)) {
        admin_fail(c, 400, "invalid", "field '%s' must be a user name or id", key);
        return 0;
    }
    return admin_find_user(c, json_string_value(v), u, 404);
}

const char *admin_user_name(admin_ctx_t *c, apr_int64_t id)
{
    ts_user_t *u = NULL;
    const char *err = NULL, *name;
    apr_int64_t *key;

    if (!id) return NULL;
    if (!c->user_names) c->user_names = apr_hash_make(c->p);
    name = apr_hash_get(c->user_names, &id, sizeof(id));
    if (name) return name;
    name = ts_store_user_get(c->env->st, c->p, id, &u, &err) == APR_SUCCESS ? u->name : NULL;
    if (name) {
        key = apr_palloc(c->p, sizeof(*key));
        *key = id;
        apr_hash_set(c->user_names, key, sizeof(*key), name);
    }
    return name;
}

int admin_query_flag(admin_ctx_t *c, const char *name)
{
    const char *q = c->req->query;
    apr_size_t n = strlen(name);

    while (q && *q) {
        if (!strncmp(q, name, n) && (q[n] == '\0' || q[n] == '&')) return 1;
        if (!strncmp(q, name, n) && q[n] == '=') {
            return !strncmp(q + n + 1, "true", 4) || !strncmp(q + n + 1, "1", 1);
        }
        q = strchr(q, '&');
        if (q) q++;
    }
    return 0;
}

/* ---- routing ---- */

static const admin_route_t *const ROUTE_TABLES[] = {
    admin_users_routes, admin_nodes_routes, admin_keys_routes, NULL
};

static int split_path(admin_ctx_t *c, const char *path)
{
    char *copy = apr_pstrdup(c->p, path ? path : ""), *last, *s;

    c->nseg = 0;
    for (s = apr_strtok(copy, "/", &last); s; s = apr_strtok(NULL, "/", &last)) {
        if (c->nseg == 4) return 0;
        c->seg[c->nseg++] = s;
    }
    return 1;
}

static int route_matches(const admin_ctx_t *c, const admin_route_t *r)
{
    return c->nseg == r->nseg && !strcmp(c->seg[0], r->first)
           && (r->nseg < 3 || !strcmp(c->seg[2], r->last));
}

/* "application/json" with any parameters, case-insensitive. */
static int is_json_type(const char *ct)
{
    apr_size_t n = sizeof("application/json") - 1;

    return ct && !strncasecmp(ct, "application/json", n)
           && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static int is_policy_type(const char *ct)
{
    static const char *const ok[] = { "application/json", "application/hujson", "text/plain",
                                      "application/octet-stream", NULL };
    int i;

    for (i = 0; ct && ok[i]; i++) {
        apr_size_t n = strlen(ok[i]);
        if (!strncasecmp(ct, ok[i], n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ')) {
            return 1;
        }
    }
    return 0;
}

static int parse_body(admin_ctx_t *c, int kind)
{
    json_error_t jerr;

    if (kind == ADMIN_B_NONE) return 1;
    if (kind == ADMIN_B_RAW) {
        if (!is_policy_type(c->req->content_type)) {
            admin_fail(c, 415, "unsupported_media_type", "send the policy as application/json, "
                       "application/hujson or text/plain");
            return 0;
        }
        return 1;
    }
    if (c->req->len == 0 && kind == ADMIN_B_OPTIONAL) {
        c->body = json_object();
        return 1;
    }
    if (!is_json_type(c->req->content_type)) {
        admin_fail(c, 415, "unsupported_media_type", "the body must be application/json");
        return 0;
    }
    c->body = json_loadb(c->req->body ? c->req->body : "", c->req->len, JSON_REJECT_DUPLICATES,
                         &jerr);
    if (!c->body) {
        admin_fail(c, 400, "bad_json", "the body is not valid JSON: line %d, column %d: %s",
                   jerr.line, jerr.column, jerr.text);
        return 0;
    }
    if (!json_is_object(c->body)) {
        admin_fail(c, 400, "bad_json", "the body must be a JSON object");
        return 0;
    }
    return 1;
}

void ts_admin_handle(const ts_admin_env_t *env, apr_pool_t *p, const ts_admin_request_t *req,
                     ts_admin_response_t *res)
{
    admin_ctx_t c;
    const admin_route_t *match = NULL, *r;
    const char *allow = NULL;
    int t, known = 0;

    memset(res, 0, sizeof(*res));
    memset(&c, 0, sizeof(c));
    c.env = env;
    c.p = p;
    c.req = req;
    c.res = res;
    if (!split_path(&c, req->path) || c.nseg == 0) {
        admin_fail(&c, 404, "not_found", "no such resource '%s'", req->path ? req->path : "");
        return;
    }
    for (t = 0; ROUTE_TABLES[t]; t++) {
        for (r = ROUTE_TABLES[t]; r->first; r++) {
            if (!route_matches(&c, r)) continue;
            known = 1;
            allow = allow ? apr_pstrcat(p, allow, ", ", r->method, NULL) : r->method;
            if (!strcmp(req->method, r->method)) match = r;
        }
    }
    if (!known) {
        admin_fail(&c, 404, "not_found", "no such resource '%s'", req->path);
        return;
    }
    if (!match) {
        res->allow = allow;
        admin_fail(&c, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)",
                   req->method,
                   allow);
        return;
    }
    if (strcmp(req->method, "GET") && !req->bearer && !req->csrf_header) {
        admin_fail(&c, 403, "csrf", "a change needs the header %s: 1 (or an API key)",
                   TS_ADMIN_CSRF_HEADER);
        return;
    }
    if (parse_body(&c, match->body)) match->fn(&c);
    if (c.body) json_decref(c.body);
    if (!res->body) admin_fail(&c, 500, "internal", "no answer");
}
