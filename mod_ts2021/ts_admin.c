/* ts_admin.c: the REST admin API (docs/admin-api.yaml): routing, method and body checks,
 * and one function per endpoint over the store and registration code that ts2021ctl uses,
 * so every change bumps the generation and lands in the change log like the CLI's. */
#include "ts_admin.h"
#include "ts_names.h"
#include "ts_register.h"
#include "ts_config.h"

#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct admin_ctx_t {
    const ts_admin_env_t *env;
    apr_pool_t *p;
    const ts_admin_request_t *req;
    ts_admin_response_t *res;
    const char *seg[4];             /* path segments */
    int nseg;
    json_t *body;                   /* parsed JSON object, or NULL */
} admin_ctx_t;

/* ---- responses ---- */

static const char *json_text_of(apr_pool_t *p, json_t *j)
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
    res->body = json_text_of(p, json_pack("{s:s, s:s}", "error", msg, "code", code));
}

/* 0 so that handlers can `return fail(...)`. */
static int fail(admin_ctx_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(admin_ctx_t *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(c->p, fmt, ap);
    va_end(ap);
    ts_admin_error(c->p, c->res, status, code, "%s", msg);
    return 0;
}

static int reply(admin_ctx_t *c, int status, json_t *j)
{
    c->res->status = status;
    c->res->body = json_text_of(c->p, j);
    return 0;
}

/* A store failure as HTTP: validation 400, missing 404, conflicts 409, the rest 500/503. */
static int store_fail(admin_ctx_t *c, apr_status_t rv, const char *err)
{
    const char *msg = err ? err : "database error";

    switch (rv) {
    case APR_EINVAL: return fail(c, 400, "invalid", "%s", msg);
    case TS_STORE_ENOTFOUND: return fail(c, 404, "not_found", "%s", msg);
    case TS_STORE_ECONFLICT: return fail(c, 409, "conflict", "%s", msg);
    case TS_STORE_EREFERENCE: return fail(c, 409, "conflict", "%s", msg);
    case TS_STORE_EBUSY: return fail(c, 503, "busy", "%s", msg);
    default: return fail(c, 500, "database", "%s", msg);
    }
}

/* ---- values ---- */

static json_t *jtext(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *jtime(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    if (!t) return json_null();
    apr_time_exp_gmt(&tm, t);
    return json_string(apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                                    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                    tm.tm_sec));
}

static json_t *jtags(const char *tags)
{
    json_t *j = tags ? json_loads(tags, 0, NULL) : NULL;

    return json_is_array(j) ? j : (json_decref(j), json_array());
}

static int parse_id(const char *s, apr_int64_t *id)
{
    char *end;

    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18) return 0;
    *id = apr_strtoi64(s, &end, 10);
    return *id > 0;
}

static int is_number(const char *s)
{
    return s && *s && strspn(s, "0123456789") == strlen(s);
}

/* "90" (seconds), "30s", "15m", "36h", "7d", "2w", combined ("1h30m"); -1 if malformed. */
static apr_interval_time_t parse_duration(const char *s)
{
    apr_interval_time_t total = 0;

    if (!s || !*s) return -1;
    if (is_number(s)) return strlen(s) > 10 ? -1 : apr_time_from_sec(apr_atoi64(s));
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
static apr_time_t parse_expiration(admin_ctx_t *c, json_t *v, apr_interval_time_t dflt,
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
static int body_only(admin_ctx_t *c, const char *const *allowed)
{
    const char *key;
    json_t *v;
    int i, ok;

    json_object_foreach(c->body, key, v) {
        for (i = 0, ok = 0; allowed[i] && !ok; i++) ok = !strcmp(key, allowed[i]);
        if (!ok) {
            fail(c, 400, "invalid", "unknown field '%s'", key);
            return 0;
        }
    }
    return 1;
}

/* A string field: 1 and *out (NULL when absent/null and not required); 0 and a 400. */
static int body_string(admin_ctx_t *c, const char *key, int required, const char **out)
{
    json_t *v = json_object_get(c->body, key);

    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) fail(c, 400, "invalid", "field '%s' is required", key);
        return !required;
    }
    if (!json_is_string(v)) {
        fail(c, 400, "invalid", "field '%s' must be a string", key);
        return 0;
    }
    *out = apr_pstrdup(c->p, json_string_value(v));
    if (required && !**out) {
        fail(c, 400, "invalid", "field '%s' must not be empty", key);
        return 0;
    }
    return 1;
}

static int body_bool(admin_ctx_t *c, const char *key, int *out)
{
    json_t *v = json_object_get(c->body, key);

    if (!v || json_is_null(v)) return 1;
    if (!json_is_boolean(v)) {
        fail(c, 400, "invalid", "field '%s' must be true or false", key);
        return 0;
    }
    *out = json_is_true(v);
    return 1;
}

/* tags: an array of "tag:name" strings, as compact JSON text ("[]" for none). */
static int body_tags(admin_ctx_t *c, const char *key, const char **out)
{
    json_t *v = json_object_get(c->body, key), *t, *arr;
    size_t i, k;
    char *s;

    *out = NULL;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_array(v)) {
        fail(c, 400, "invalid", "field '%s' must be an array of tags", key);
        return 0;
    }
    arr = json_array();
    json_array_foreach(v, i, t) {
        const char *tag = json_string_value(t);
        int dup = 0;
        if (!tag || !ts_register_tag_valid(tag)) {
            json_decref(arr);
            fail(c, 400, "invalid", "'%s' is not a tag (tag:NAME, NAME a letter then letters, "
                 "digits or '-')", tag ? tag : "(not a string)");
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

static int find_user_by(admin_ctx_t *c, const char *which, ts_user_t **u, int status)
{
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv = parse_id(which, &id)
        ? ts_store_user_get(c->env->st, c->p, id, u, &err)
        : ts_store_user_get_by_name(c->env->st, c->p, which, u, &err);

    if (rv == TS_STORE_ENOTFOUND) {
        fail(c, status, "not_found", "no user '%s'", which);
        return 0;
    }
    if (rv != APR_SUCCESS) {
        store_fail(c, rv, err);
        return 0;
    }
    return 1;
}

/* A user named in a body: a string (name or id) or an integer id. 404 if unknown. */
static int body_user(admin_ctx_t *c, const char *key, int required, ts_user_t **u)
{
    json_t *v = json_object_get(c->body, key);

    *u = NULL;
    if (!v || json_is_null(v)) {
        if (required) fail(c, 400, "invalid", "field '%s' is required", key);
        return !required;
    }
    if (json_is_integer(v)) {
        return find_user_by(c, apr_psprintf(c->p, "%" APR_INT64_T_FMT,
                                            (apr_int64_t)json_integer_value(v)), u, 404);
    }
    if (!json_is_string(v) || !*json_string_value(v)) {
        fail(c, 400, "invalid", "field '%s' must be a user name or id", key);
        return 0;
    }
    return find_user_by(c, json_string_value(v), u, 404);
}

static const char *user_name(admin_ctx_t *c, apr_int64_t id)
{
    ts_user_t *u = NULL;
    const char *err = NULL;

    if (!id) return NULL;
    return ts_store_user_get(c->env->st, c->p, id, &u, &err) == APR_SUCCESS ? u->name : NULL;
}

/* ---- /info ---- */

static int info_get(admin_ctx_t *c)
{
    apr_array_header_t *users, *nodes, *keys, *regs;
    apr_int64_t generation = 0;
    const char *err = NULL;
    apr_status_t rv;
    int i, online = 0, expired = 0;

    if ((rv = ts_store_user_list(c->env->st, c->p, &users, &err)) != APR_SUCCESS
        || (rv = ts_store_node_list(c->env->st, c->p, &nodes, &err)) != APR_SUCCESS
        || (rv = ts_store_preauth_key_list(c->env->st, c->p, 0, &keys, &err)) != APR_SUCCESS
        || (rv = ts_store_registration_list_pending(c->env->st, c->p, c->env->now, &regs,
                                                    &err)) != APR_SUCCESS
        || (rv = ts_store_generation(c->env->st, c->p, &generation, &err)) != APR_SUCCESS) {
        return store_fail(c, rv, err);
    }
    for (i = 0; i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        if (c->env->online && c->env->online(c->env->online_baton, n->id)) online++;
        if (ts_register_node_expired(n, c->env->now)) expired++;
    }
    return reply(c, 200, json_pack("{s:s, s:o, s:o, s:s, s:I, s:{s:i, s:i, s:o, s:i, s:i, s:i}}",
                                   "version", c->env->version ? c->env->version : PACKAGE_VERSION,
                                   "server_url", jtext(c->env->conf->server_url),
                                   "base_domain", jtext(c->env->conf->base_domain),
                                   "database", ts_store_driver_name(c->env->st),
                                   "generation", (json_int_t)generation,
                                   "counts",
                                   "users", users->nelts, "nodes", nodes->nelts,
                                   "nodes_online", c->env->online ? json_integer(online)
                                                                  : json_null(),
                                   "nodes_expired", expired,
                                   "preauthkeys", keys->nelts,
                                   "registrations_pending", regs->nelts));
}

/* ---- users ---- */

static json_t *user_json(admin_ctx_t *c, const ts_user_t *u)
{
    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)u->id,
                     "name", u->name, "display_name", jtext(u->display_name),
                     "email", jtext(u->email), "provider", jtext(u->provider),
                     "created", jtime(c->p, u->created_at),
                     "updated", jtime(c->p, u->updated_at));
}

static int users_list(admin_ctx_t *c)
{
    apr_array_header_t *users;
    const char *err = NULL;
    apr_status_t rv = ts_store_user_list(c->env->st, c->p, &users, &err);
    json_t *out;
    int i;

    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < users->nelts; i++) {
        json_array_append_new(out, user_json(c, APR_ARRAY_IDX(users, i, ts_user_t *)));
    }
    return reply(c, 200, json_pack("{s:o}", "users", out));
}

static int user_name_ok(admin_ctx_t *c, const char *name)
{
    if (is_number(name)) {
        fail(c, 400, "invalid", "a user name must not be a number ('%s')", name);
        return 0;
    }
    return 1;
}

static int users_create(admin_ctx_t *c)
{
    static const char *const allowed[] = { "name", "display_name", "email", NULL };
    ts_user_t u;
    const char *err = NULL;
    apr_status_t rv;

    memset(&u, 0, sizeof(u));
    if (!body_only(c, allowed) || !body_string(c, "name", 1, &u.name)
        || !body_string(c, "display_name", 0, &u.display_name)
        || !body_string(c, "email", 0, &u.email) || !user_name_ok(c, u.name)) {
        return 0;
    }
    rv = ts_store_user_create(c->env->st, c->p, &u, &err);
    if (rv == TS_STORE_ECONFLICT) return fail(c, 409, "conflict", "user '%s' already exists", u.name);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return reply(c, 201, user_json(c, &u));
}

static int users_get(admin_ctx_t *c)
{
    ts_user_t *u;

    if (!find_user_by(c, c->seg[1], &u, 404)) return 0;
    return reply(c, 200, user_json(c, u));
}

static int users_patch(admin_ctx_t *c)
{
    static const char *const allowed[] = { "name", "display_name", "email", NULL };
    ts_user_t *u;
    const char *name = NULL, *err = NULL;
    apr_status_t rv;

    if (!find_user_by(c, c->seg[1], &u, 404) || !body_only(c, allowed)
        || !body_string(c, "name", 0, &name)) {
        return 0;
    }
    if (name) {
        if (!*name) return fail(c, 400, "invalid", "field 'name' must not be empty");
        if (!user_name_ok(c, name)) return 0;
        u->name = name;
    }
    if (json_object_get(c->body, "display_name")
        && !body_string(c, "display_name", 0, &u->display_name)) {
        return 0;
    }
    if (json_object_get(c->body, "email") && !body_string(c, "email", 0, &u->email)) return 0;
    rv = ts_store_user_update(c->env->st, c->p, u, &err);
    if (rv == TS_STORE_ECONFLICT) {
        return fail(c, 409, "conflict", "user '%s' already exists", u->name);
    }
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return reply(c, 200, user_json(c, u));
}

static int query_flag(admin_ctx_t *c, const char *name)
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

static int users_delete(admin_ctx_t *c)
{
    ts_user_t *u;
    apr_array_header_t *nodes;
    const char *err = NULL;
    apr_status_t rv;

    if (!find_user_by(c, c->seg[1], &u, 404)) return 0;
    rv = ts_store_node_list_by_user(c->env->st, c->p, u->id, &nodes, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    if (nodes->nelts && !query_flag(c, "force")) {
        return fail(c, 409, "has_nodes", "user '%s' has %d node(s); ?force=true deletes them "
                    "with the user", u->name, nodes->nelts);
    }
    rv = ts_store_user_delete(c->env->st, c->p, u->id, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return reply(c, 200, json_pack("{s:I, s:s, s:i}", "deleted", (json_int_t)u->id, "name",
                                   u->name, "nodes_deleted", nodes->nelts));
}

/* ---- nodes ---- */

static json_t *routes_json(const apr_array_header_t *routes)
{
    json_t *out = json_array();
    int i;

    for (i = 0; routes && i < routes->nelts; i++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, i, ts_route_t);
        json_array_append_new(out, json_pack("{s:s, s:b, s:b}", "prefix", r->prefix,
                                             "advertised", r->advertised,
                                             "approved", r->approved));
    }
    return out;
}

static json_t *node_json(admin_ctx_t *c, const ts_node_t *n, const apr_array_header_t *routes,
                         int full)
{
    json_t *hi = n->host_info ? json_loads(n->host_info, 0, NULL) : NULL;
    json_t *os = json_is_object(hi) ? json_object_get(hi, "OS") : NULL;
    json_t *ver = json_is_object(hi) ? json_object_get(hi, "IPNVersion") : NULL;
    json_t *j = json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:o, s:b, "
                          "s:o, s:b, s:o, s:o, s:o, s:o, s:o}",
                          "id", (json_int_t)n->id, "name", n->given_name,
                          "fqdn", ts_names_fqdn(c->p, n->given_name,
                                                c->env->conf->base_domain),
                          "hostname", jtext(n->hostname),
                          "user", jtext(user_name(c, n->user_id)),
                          "user_id", n->user_id ? json_integer(n->user_id) : json_null(),
                          "tags", jtags(n->tags), "ipv4", jtext(n->ipv4),
                          "ipv6", jtext(n->ipv6), "machine_key", n->machine_key,
                          "node_key", n->node_key, "expiry", jtime(c->p, n->expiry),
                          "expired", ts_register_node_expired(n, c->env->now),
                          "last_seen", jtime(c->p, n->last_seen), "ephemeral", n->ephemeral,
                          "register_method", jtext(n->register_method),
                          "created", jtime(c->p, n->created_at),
                          "online", c->env->online
                                    ? json_boolean(c->env->online(c->env->online_baton, n->id))
                                    : json_null(),
                          "os", json_is_string(os) ? json_incref(os) : json_null(),
                          "client_version", json_is_string(ver) ? json_incref(ver)
                                                                : json_null());

    json_object_set_new(j, "routes", routes_json(routes));
    if (full) json_object_set_new(j, "hostinfo", hi ? json_incref(hi) : json_null());
    json_decref(hi);
    return j;
}

static int node_routes(admin_ctx_t *c, apr_int64_t id, apr_array_header_t **routes)
{
    const char *err = NULL;
    apr_status_t rv = ts_store_node_routes_get(c->env->st, c->p, id, routes, &err);

    if (rv != APR_SUCCESS) {
        store_fail(c, rv, err);
        return 0;
    }
    return 1;
}

static int node_reply(admin_ctx_t *c, int status, const ts_node_t *n, int full)
{
    apr_array_header_t *routes;

    if (!node_routes(c, n->id, &routes)) return 0;
    return reply(c, status, node_json(c, n, routes, full));
}

static int find_node(admin_ctx_t *c, ts_node_t **n)
{
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv;

    if (!parse_id(c->seg[1], &id)) return fail(c, 404, "not_found", "no node '%s'", c->seg[1]);
    rv = ts_store_node_get(c->env->st, c->p, id, n, &err);
    if (rv == TS_STORE_ENOTFOUND) return fail(c, 404, "not_found", "no node %s", c->seg[1]);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    return 1;
}

static int nodes_list(admin_ctx_t *c)
{
    apr_array_header_t *nodes;
    ts_user_t *u = NULL;
    const char *err = NULL, *which = NULL;
    json_t *out;
    apr_status_t rv;
    int i;

    if (c->req->query && !strncmp(c->req->query, "user=", 5)) {
        which = apr_pstrndup(c->p, c->req->query + 5, strcspn(c->req->query + 5, "&"));
        if (!find_user_by(c, which, &u, 404)) return 0;
    }
    rv = u ? ts_store_node_list_by_user(c->env->st, c->p, u->id, &nodes, &err)
           : ts_store_node_list(c->env->st, c->p, &nodes, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        apr_array_header_t *routes;
        if (!node_routes(c, n->id, &routes)) {
            json_decref(out);
            return 0;
        }
        json_array_append_new(out, node_json(c, n, routes, 0));
    }
    return reply(c, 200, json_pack("{s:o}", "nodes", out));
}

static int nodes_get(admin_ctx_t *c)
{
    ts_node_t *n;

    if (!find_node(c, &n)) return 0;
    return node_reply(c, 200, n, 1);
}

static int node_write(admin_ctx_t *c, ts_node_t *n)
{
    const char *err = NULL;
    apr_status_t rv = ts_store_node_update(c->env->st, c->p, n, &err);

    if (rv == TS_STORE_ECONFLICT && err && strstr(err, "given_name")) {
        return fail(c, 409, "conflict", "name '%s' is taken by another node", n->given_name);
    }
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return node_reply(c, 200, n, 1);
}

static int nodes_patch(admin_ctx_t *c)
{
    static const char *const allowed[] = { "name", "tags", NULL };
    ts_node_t *n;
    const char *name = NULL, *tags = NULL, *err = NULL;

    if (!find_node(c, &n) || !body_only(c, allowed) || !body_string(c, "name", 0, &name)
        || !body_tags(c, "tags", &tags)) {
        return 0;
    }
    if (name) {
        if (ts_names_check(c->p, name, c->env->conf->base_domain, &err) != APR_SUCCESS) {
            return fail(c, 400, "invalid", "%s", err);
        }
        n->given_name = name;
    }
    if (tags) {
        if (!strcmp(tags, "[]") && !n->user_id) {
            return fail(c, 400, "invalid", "node %" APR_INT64_T_FMT " is owned by its tags: "
                        "it cannot lose all of them", n->id);
        }
        n->tags = strcmp(tags, "[]") ? tags : NULL;
        /* A tagged node belongs to its tags, not to a user (spec 5.1). */
        if (n->tags) n->user_id = 0;
    }
    if (!name && !tags) return fail(c, 400, "invalid", "give 'name', 'tags' or both");
    return node_write(c, n);
}

static int nodes_expire(admin_ctx_t *c)
{
    ts_node_t *n;

    if (!find_node(c, &n)) return 0;
    if (ts_register_node_expired(n, c->env->now)) return node_reply(c, 200, n, 1);
    n->expiry = c->env->now;
    return node_write(c, n);
}

static int nodes_delete(admin_ctx_t *c)
{
    ts_node_t *n;
    const char *err = NULL;
    apr_status_t rv;

    if (!find_node(c, &n)) return 0;
    rv = ts_store_node_delete(c->env->st, c->p, n->id, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return reply(c, 200, json_pack("{s:I, s:s}", "deleted", (json_int_t)n->id, "name",
                                   n->given_name));
}

/* approved: the complete list of approved prefixes; others lose their approval, and rows
 * neither advertised nor approved go. */
static int nodes_routes(admin_ctx_t *c)
{
    static const char *const allowed[] = { "approved", NULL };
    apr_array_header_t *routes, *next;
    json_t *list = NULL, *v;
    ts_node_t *n;
    const char *err = NULL;
    apr_status_t rv;
    size_t i;
    int k;

    if (!find_node(c, &n) || !body_only(c, allowed) || !node_routes(c, n->id, &routes)) {
        return 0;
    }
    list = json_object_get(c->body, "approved");
    if (!json_is_array(list)) {
        return fail(c, 400, "invalid", "field 'approved' must be an array of CIDR prefixes");
    }
    next = apr_array_make(c->p, routes->nelts + 2, sizeof(ts_route_t));
    for (k = 0; k < routes->nelts; k++) {
        ts_route_t r = APR_ARRAY_IDX(routes, k, ts_route_t);
        r.approved = 0;
        APR_ARRAY_PUSH(next, ts_route_t) = r;
    }
    json_array_foreach(list, i, v) {
        const char *pfx = json_string_value(v);
        int found = 0;
        if (!pfx) return fail(c, 400, "invalid", "'approved' must hold strings");
        for (k = 0; k < next->nelts; k++) {
            ts_route_t *r = &APR_ARRAY_IDX(next, k, ts_route_t);
            if (!strcmp(r->prefix, pfx)) found = r->approved = 1;
        }
        if (!found) {
            ts_route_t *r = &APR_ARRAY_PUSH(next, ts_route_t);
            r->prefix = apr_pstrdup(c->p, pfx);
            r->advertised = 0;
            r->approved = 1;
        }
    }
    routes = apr_array_make(c->p, next->nelts, sizeof(ts_route_t));
    for (k = 0; k < next->nelts; k++) {
        ts_route_t r = APR_ARRAY_IDX(next, k, ts_route_t);
        if (r.advertised || r.approved) APR_ARRAY_PUSH(routes, ts_route_t) = r;
    }
    rv = ts_store_node_routes_set(c->env->st, c->p, n->id, routes, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return node_reply(c, 200, n, 1);
}

/* ---- pre-auth keys ---- */

static const char *key_status(const ts_preauth_key_t *k, apr_time_t now)
{
    if (k->revoked) return "revoked";
    if (k->expiration && k->expiration <= now) return "expired";
    if (!k->reusable && k->used) return "used";
    return "valid";
}

static json_t *pak_json(admin_ctx_t *c, const ts_preauth_key_t *k)
{
    return json_pack("{s:I, s:s, s:o, s:o, s:b, s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:s}",
                     "id", (json_int_t)k->id, "prefix", k->prefix,
                     "user", jtext(user_name(c, k->user_id)),
                     "user_id", k->user_id ? json_integer(k->user_id) : json_null(),
                     "reusable", k->reusable, "ephemeral", k->ephemeral, "used", k->used,
                     "tags", jtags(k->tags), "expiration", jtime(c->p, k->expiration),
                     "revoked", jtime(c->p, k->revoked), "created", jtime(c->p, k->created_at),
                     "description", jtext(k->description),
                     "status", key_status(k, c->env->now));
}

static int paks_list(admin_ctx_t *c)
{
    apr_array_header_t *keys;
    ts_user_t *u = NULL;
    const char *err = NULL;
    json_t *out;
    apr_status_t rv;
    int i;

    if (c->req->query && !strncmp(c->req->query, "user=", 5)) {
        const char *which = apr_pstrndup(c->p, c->req->query + 5,
                                         strcspn(c->req->query + 5, "&"));
        if (!find_user_by(c, which, &u, 404)) return 0;
    }
    rv = ts_store_preauth_key_list(c->env->st, c->p, u ? u->id : 0, &keys, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < keys->nelts; i++) {
        json_array_append_new(out, pak_json(c, APR_ARRAY_IDX(keys, i, ts_preauth_key_t *)));
    }
    return reply(c, 200, json_pack("{s:o}", "preauthkeys", out));
}

static int paks_create(admin_ctx_t *c)
{
    static const char *const allowed[] = { "user", "reusable", "ephemeral", "expiration",
                                           "tags", "description", NULL };
    ts_preauth_key_t k;
    ts_user_t *u = NULL;
    const char *secret, *text, *err = NULL, *why = NULL;
    json_t *j;
    apr_status_t rv;

    memset(&k, 0, sizeof(k));
    if (!body_only(c, allowed) || !body_user(c, "user", 0, &u)
        || !body_bool(c, "reusable", &k.reusable) || !body_bool(c, "ephemeral", &k.ephemeral)
        || !body_tags(c, "tags", &k.tags)
        || !body_string(c, "description", 0, &k.description)) {
        return 0;
    }
    if (k.tags && !strcmp(k.tags, "[]")) k.tags = NULL;
    if (!u && !k.tags) return fail(c, 400, "invalid", "a pre-auth key needs 'user', 'tags' or both");
    k.expiration = parse_expiration(c, json_object_get(c->body, "expiration"),
                                    apr_time_from_sec(3600), &why);
    if (k.expiration < 0) return fail(c, 400, "invalid", "%s", why);
    k.user_id = u ? u->id : 0;
    if (ts_register_key_generate(c->p, &k.prefix, &secret, &text) != APR_SUCCESS) {
        return fail(c, 500, "internal", "cannot generate a key");
    }
    rv = ts_store_preauth_key_create(c->env->st, c->p, &k, secret, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    j = pak_json(c, &k);
    json_object_set_new(j, "key", json_string(text));
    return reply(c, 201, j);
}

static int paks_expire(admin_ctx_t *c)
{
    ts_preauth_key_t *k;
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv;

    if (!parse_id(c->seg[1], &id)) return fail(c, 404, "not_found", "no pre-auth key '%s'", c->seg[1]);
    rv = ts_store_preauth_key_get(c->env->st, c->p, id, &k, &err);
    if (rv == TS_STORE_ENOTFOUND) return fail(c, 404, "not_found", "no pre-auth key %s", c->seg[1]);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    if (!k->expiration || k->expiration > c->env->now) {
        k->expiration = c->env->now;
        rv = ts_store_preauth_key_update(c->env->st, c->p, k, &err);
        if (rv != APR_SUCCESS) return store_fail(c, rv, err);
        c->res->changed = 1;
    }
    return reply(c, 200, pak_json(c, k));
}

/* ---- API keys ---- */

static json_t *apikey_json(admin_ctx_t *c, const ts_api_key_t *k)
{
    const char *status = k->expiration && k->expiration <= c->env->now ? "expired" : "valid";

    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:s}", "id", (json_int_t)k->id,
                     "prefix", k->prefix, "expiration", jtime(c->p, k->expiration),
                     "last_seen", jtime(c->p, k->last_seen),
                     "created", jtime(c->p, k->created_at), "status", status);
}

static int apikeys_list(admin_ctx_t *c)
{
    apr_array_header_t *keys;
    const char *err = NULL;
    json_t *out;
    apr_status_t rv = ts_store_api_key_list(c->env->st, c->p, &keys, &err);
    int i;

    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < keys->nelts; i++) {
        json_array_append_new(out, apikey_json(c, APR_ARRAY_IDX(keys, i, ts_api_key_t *)));
    }
    return reply(c, 200, json_pack("{s:o}", "apikeys", out));
}

apr_status_t ts_admin_apikey_generate(apr_pool_t *p, const char **prefix, const char **secret,
                                      const char **text)
{
    apr_status_t rv = ts_register_key_generate(p, prefix, secret, text);

    if (rv == APR_SUCCESS) {
        *text = apr_pstrcat(p, TS_ADMIN_APIKEY_PREFIX, *prefix, "-", *secret, NULL);
    }
    return rv;
}

static int apikeys_create(admin_ctx_t *c)
{
    static const char *const allowed[] = { "expiration", NULL };
    ts_api_key_t k;
    const char *secret, *text, *err = NULL, *why = NULL;
    json_t *j;
    apr_status_t rv;

    memset(&k, 0, sizeof(k));
    if (!body_only(c, allowed)) return 0;
    k.expiration = parse_expiration(c, json_object_get(c->body, "expiration"),
                                    apr_time_from_sec(90 * 86400), &why);
    if (k.expiration < 0) return fail(c, 400, "invalid", "%s", why);
    if (ts_admin_apikey_generate(c->p, &k.prefix, &secret, &text) != APR_SUCCESS) {
        return fail(c, 500, "internal", "cannot generate a key");
    }
    rv = ts_store_api_key_create(c->env->st, c->p, &k, secret, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    j = apikey_json(c, &k);
    json_object_set_new(j, "key", json_string(text));
    return reply(c, 201, j);
}

static int apikeys_expire(admin_ctx_t *c)
{
    apr_array_header_t *keys;
    ts_api_key_t *k = NULL;
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv;
    int i;

    if (!parse_id(c->seg[1], &id)) return fail(c, 404, "not_found", "no API key '%s'", c->seg[1]);
    rv = ts_store_api_key_list(c->env->st, c->p, &keys, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    for (i = 0; i < keys->nelts && !k; i++) {
        ts_api_key_t *x = APR_ARRAY_IDX(keys, i, ts_api_key_t *);
        if (x->id == id) k = x;
    }
    if (!k) return fail(c, 404, "not_found", "no API key %s", c->seg[1]);
    if (!k->expiration || k->expiration > c->env->now) {
        k->expiration = c->env->now;
        rv = ts_store_api_key_update(c->env->st, c->p, k, &err);
        if (rv != APR_SUCCESS) return store_fail(c, rv, err);
        c->res->changed = 1;
    }
    return reply(c, 200, apikey_json(c, k));
}

ts_admin_bearer_e ts_admin_bearer_check(ts_store_t *st, apr_pool_t *p, const char *authorization,
                                        apr_time_t now, apr_int64_t *key_id, int *changed,
                                        const char **why)
{
    const char *tok, *rest, *dash, *prefix, *secret, *err = NULL;
    ts_api_key_t *k = NULL;
    apr_size_t kp = sizeof(TS_ADMIN_APIKEY_PREFIX) - 1;
    apr_status_t rv;

    *key_id = 0;
    *changed = 0;
    *why = NULL;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) {
        return TS_ADMIN_BEARER_NONE;
    }
    for (tok = authorization + 7; *tok == ' '; tok++) {}
    if (strncmp(tok, TS_ADMIN_APIKEY_PREFIX, kp) != 0) {
        *why = "the bearer token is not an API key (tskey-api-...)";
        return TS_ADMIN_BEARER_INVALID;
    }
    rest = tok + kp;
    dash = strchr(rest, '-');
    if (!dash || dash == rest || dash - rest > 64 || !dash[1] || strlen(dash + 1) > 128
        || strspn(rest, "abcdefghijklmnopqrstuvwxyz0123456789") != (apr_size_t)(dash - rest)
        || strspn(dash + 1, "0123456789abcdef") != strlen(dash + 1)) {
        *why = "malformed API key";
        return TS_ADMIN_BEARER_INVALID;
    }
    prefix = apr_pstrmemdup(p, rest, (apr_size_t)(dash - rest));
    secret = dash + 1;
    rv = ts_store_api_key_verify(st, p, prefix, secret, &k, &err);
    if (rv == TS_STORE_ENOTFOUND) {
        *why = "unknown API key";
        return TS_ADMIN_BEARER_INVALID;
    }
    if (rv != APR_SUCCESS) {
        *why = err;
        return TS_ADMIN_BEARER_ERROR;
    }
    if (k->expiration && k->expiration <= now) {
        *why = apr_psprintf(p, "API key %" APR_INT64_T_FMT " has expired", k->id);
        return TS_ADMIN_BEARER_EXPIRED;
    }
    *key_id = k->id;
    if (!k->last_seen || now - k->last_seen >= TS_ADMIN_APIKEY_SEEN_EVERY) {
        k->last_seen = now;
        *changed = ts_store_api_key_update(st, p, k, &err) == APR_SUCCESS;
    }
    return TS_ADMIN_BEARER_OK;
}

/* ---- registrations ---- */

static json_t *reg_json(admin_ctx_t *c, const ts_registration_t *g)
{
    json_t *hi = g->hostinfo ? json_loads(g->hostinfo, 0, NULL) : NULL;
    json_t *host = json_is_object(hi) ? json_object_get(hi, "Hostname") : NULL;
    json_t *os = json_is_object(hi) ? json_object_get(hi, "OS") : NULL;
    json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:o, s:o, s:s}",
                          "id", g->auth_id, "machine_key", g->machine_key,
                          "node_key", g->node_key,
                          "hostname", json_is_string(host) ? json_incref(host) : json_null(),
                          "os", json_is_string(os) ? json_incref(os) : json_null(),
                          "ephemeral", g->ephemeral, "created", jtime(c->p, g->created_at),
                          "expires", jtime(c->p, g->expires_at),
                          "state", g->state == TS_REG_PENDING ? "pending"
                                   : g->state == TS_REG_APPROVED ? "approved" : "rejected");

    json_decref(hi);
    return j;
}

static int regs_list(admin_ctx_t *c)
{
    apr_array_header_t *regs;
    const char *err = NULL;
    json_t *out;
    apr_status_t rv = ts_store_registration_list_pending(c->env->st, c->p, c->env->now, &regs,
                                                         &err);
    int i;

    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < regs->nelts; i++) {
        json_array_append_new(out, reg_json(c, APR_ARRAY_IDX(regs, i, ts_registration_t *)));
    }
    return reply(c, 200, json_pack("{s:o}", "registrations", out));
}

static int find_reg(admin_ctx_t *c, ts_registration_t **g)
{
    const char *err = NULL;
    apr_status_t rv;

    if (!ts_register_auth_id_valid(c->seg[1])) {
        return fail(c, 404, "not_found", "no registration '%s'", c->seg[1]);
    }
    rv = ts_store_registration_get(c->env->st, c->p, c->seg[1], g, &err);
    if (rv == TS_STORE_ENOTFOUND || (rv == APR_SUCCESS && (*g)->state == TS_REG_PENDING
                                     && (*g)->expires_at <= c->env->now)) {
        return fail(c, 404, "not_found", "no pending registration %s (expired or unknown)",
                    c->seg[1]);
    }
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    return 1;
}

static int regs_get(admin_ctx_t *c)
{
    ts_registration_t *g;

    if (!find_reg(c, &g)) return 0;
    return reply(c, 200, reg_json(c, g));
}

static int regs_approve(admin_ctx_t *c)
{
    static const char *const allowed[] = { "user", NULL };
    ts_registration_t *g;
    ts_user_t *u;
    ts_node_t *n;
    apr_int64_t node_id = 0;
    const char *err = NULL;
    apr_status_t rv;

    if (!body_only(c, allowed) || !find_reg(c, &g) || !body_user(c, "user", 1, &u)) return 0;
    if (g->state != TS_REG_PENDING) {
        return fail(c, 409, "conflict", "registration %s is already %s", g->auth_id,
                    g->state == TS_REG_APPROVED ? "approved" : "rejected");
    }
    rv = ts_register_approve(c->env->st, c->p, c->env->conf, g->auth_id, u->id, &node_id, &err);
    if (rv == APR_EACCES) return fail(c, 409, "conflict", "%s", err ? err : "key conflict");
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    rv = ts_store_node_get(c->env->st, c->p, node_id, &n, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    return node_reply(c, 200, n, 0);
}

static int regs_reject(admin_ctx_t *c)
{
    static const char *const allowed[] = { "reason", NULL };
    ts_registration_t *g;
    const char *reason = NULL, *err = NULL;
    apr_status_t rv;

    if (!body_only(c, allowed) || !find_reg(c, &g) || !body_string(c, "reason", 0, &reason)) {
        return 0;
    }
    if (g->state != TS_REG_PENDING) {
        return fail(c, 409, "conflict", "registration %s is already %s", g->auth_id,
                    g->state == TS_REG_APPROVED ? "approved" : "rejected");
    }
    rv = ts_register_reject(c->env->st, c->p, g->auth_id, reason, &err);
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    c->res->changed = 1;
    return reply(c, 200, json_pack("{s:s, s:s}", "id", g->auth_id, "state", "rejected"));
}

/* ---- policy ---- */

static int policy_get(admin_ctx_t *c)
{
    ts_store_policy_t *pol = NULL;
    const char *err = NULL;
    apr_status_t rv = ts_store_policy_get(c->env->st, c->p, &pol, &err);

    if (rv == TS_STORE_ENOTFOUND) {
        return reply(c, 200, json_pack("{s:n, s:n, s:n}", "policy", "id", "updated"));
    }
    if (rv != APR_SUCCESS) return store_fail(c, rv, err);
    return reply(c, 200, json_pack("{s:s, s:I, s:o}", "policy", pol->data, "id",
                                   (json_int_t)pol->id, "updated", jtime(c->p, pol->created_at)));
}

static int policy_put(admin_ctx_t *c)
{
    ts_admin_policy_put(c->env, c->p, c->req->body, c->req->body ? c->req->len : 0, c->res);
    return 0;
}

/* ---- routing ---- */

enum { B_NONE = 0, B_JSON = 1, B_OPTIONAL = 2, B_RAW = 3 };

typedef struct route_t {
    const char *first;      /* first segment */
    int nseg;
    const char *last;       /* third segment for 3-segment paths, else NULL */
    const char *method;
    int body;
    int (*fn)(admin_ctx_t *c);
} route_t;

static const route_t ROUTES[] = {
    { "info", 1, NULL, "GET", B_NONE, info_get },
    { "users", 1, NULL, "GET", B_NONE, users_list },
    { "users", 1, NULL, "POST", B_JSON, users_create },
    { "users", 2, NULL, "GET", B_NONE, users_get },
    { "users", 2, NULL, "PATCH", B_JSON, users_patch },
    { "users", 2, NULL, "DELETE", B_NONE, users_delete },
    { "nodes", 1, NULL, "GET", B_NONE, nodes_list },
    { "nodes", 2, NULL, "GET", B_NONE, nodes_get },
    { "nodes", 2, NULL, "PATCH", B_JSON, nodes_patch },
    { "nodes", 2, NULL, "DELETE", B_NONE, nodes_delete },
    { "nodes", 3, "expire", "POST", B_OPTIONAL, nodes_expire },
    { "nodes", 3, "routes", "POST", B_JSON, nodes_routes },
    { "preauthkeys", 1, NULL, "GET", B_NONE, paks_list },
    { "preauthkeys", 1, NULL, "POST", B_JSON, paks_create },
    { "preauthkeys", 3, "expire", "POST", B_OPTIONAL, paks_expire },
    { "apikeys", 1, NULL, "GET", B_NONE, apikeys_list },
    { "apikeys", 1, NULL, "POST", B_OPTIONAL, apikeys_create },
    { "apikeys", 3, "expire", "POST", B_OPTIONAL, apikeys_expire },
    { "registrations", 1, NULL, "GET", B_NONE, regs_list },
    { "registrations", 2, NULL, "GET", B_NONE, regs_get },
    { "registrations", 3, "approve", "POST", B_JSON, regs_approve },
    { "registrations", 3, "reject", "POST", B_OPTIONAL, regs_reject },
    { "policy", 1, NULL, "GET", B_NONE, policy_get },
    { "policy", 1, NULL, "PUT", B_RAW, policy_put },
    { NULL, 0, NULL, NULL, 0, NULL }
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

static int route_matches(const admin_ctx_t *c, const route_t *r)
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

    if (kind == B_NONE) return 1;
    if (kind == B_RAW) {
        if (!is_policy_type(c->req->content_type)) {
            fail(c, 415, "unsupported_media_type", "send the policy as application/json, "
                 "application/hujson or text/plain");
            return 0;
        }
        return 1;
    }
    if (c->req->len == 0 && kind == B_OPTIONAL) {
        c->body = json_object();
        return 1;
    }
    if (!is_json_type(c->req->content_type)) {
        fail(c, 415, "unsupported_media_type", "the body must be application/json");
        return 0;
    }
    c->body = json_loadb(c->req->body ? c->req->body : "", c->req->len, JSON_REJECT_DUPLICATES,
                         &jerr);
    if (!c->body) {
        fail(c, 400, "bad_json", "the body is not valid JSON: line %d, column %d: %s",
             jerr.line, jerr.column, jerr.text);
        return 0;
    }
    if (!json_is_object(c->body)) {
        fail(c, 400, "bad_json", "the body must be a JSON object");
        return 0;
    }
    return 1;
}

void ts_admin_handle(const ts_admin_env_t *env, apr_pool_t *p, const ts_admin_request_t *req,
                     ts_admin_response_t *res)
{
    admin_ctx_t c;
    const route_t *match = NULL;
    const char *allow = NULL;
    int i, known = 0;

    memset(res, 0, sizeof(*res));
    memset(&c, 0, sizeof(c));
    c.env = env;
    c.p = p;
    c.req = req;
    c.res = res;
    if (!split_path(&c, req->path) || c.nseg == 0) {
        fail(&c, 404, "not_found", "no such resource '%s'", req->path ? req->path : "");
        return;
    }
    for (i = 0; ROUTES[i].first; i++) {
        if (!route_matches(&c, &ROUTES[i])) continue;
        known = 1;
        allow = allow ? apr_pstrcat(p, allow, ", ", ROUTES[i].method, NULL) : ROUTES[i].method;
        if (!strcmp(req->method, ROUTES[i].method)) match = &ROUTES[i];
    }
    if (!known) {
        fail(&c, 404, "not_found", "no such resource '%s'", req->path);
        return;
    }
    if (!match) {
        res->allow = allow;
        fail(&c, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)", req->method,
             allow);
        return;
    }
    if (strcmp(req->method, "GET") && !req->bearer && !req->csrf_header) {
        fail(&c, 403, "csrf", "a change needs the header %s: 1 (or an API key)",
             TS_ADMIN_CSRF_HEADER);
        return;
    }
    if (parse_body(&c, match->body)) match->fn(&c);
    if (c.body) json_decref(c.body);
    if (!res->body) fail(&c, 500, "internal", "no answer");
}
