/* ts_admin_nodes.c: the admin API's /nodes (rename, tags, expiry, routes, delete) and
 * /registrations (pending interactive logins: approve, reject) endpoints. */
#include "ts_admin_int.h"
#include "ts_routes.h"

#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

/* ---- nodes ---- */

static json_t *routes_json(const apr_array_header_t *routes)
{
    json_t *out = json_array();
    int i;

    for (i = 0; routes && i < routes->nelts; i++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, i, ts_route_t);
        json_array_append_new(out, json_pack("{s:s, s:b, s:b, s:b}", "prefix", r->prefix,
                                             "advertised", r->advertised,
                                             "approved", r->approved,
                                             "exit", ts_routes_is_exit(r->prefix)));
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
                          "hostname", admin_jtext(n->hostname),
                          "user", admin_jtext(admin_user_name(c, n->user_id)),
                          "user_id", n->user_id ? json_integer(n->user_id) : json_null(),
                          "tags", admin_jtags(n->tags), "ipv4", admin_jtext(n->ipv4),
                          "ipv6", admin_jtext(n->ipv6), "machine_key", n->machine_key,
                          "node_key", n->node_key, "expiry", admin_jtime(c->p, n->expiry),
                          "expired", ts_register_node_expired(n, c->env->now),
                          "last_seen", admin_jtime(c->p, n->last_seen), "ephemeral", n->ephemeral,
                          "register_method", admin_jtext(n->register_method),
                          "created", admin_jtime(c->p, n->created_at),
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
        admin_store_fail(c, rv, err);
        return 0;
    }
    return 1;
}

static int node_reply(admin_ctx_t *c, int status, const ts_node_t *n, int full)
{
    apr_array_header_t *routes;

    if (!node_routes(c, n->id, &routes)) return 0;
    return admin_reply(c, status, node_json(c, n, routes, full));
}

static int find_node(admin_ctx_t *c, ts_node_t **n)
{
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv;

    if (!admin_parse_id(c->seg[1], &id)) {
        return admin_fail(c, 404, "not_found", "no node '%s'", c->seg[1]);
    }
    rv = ts_store_node_get(c->env->st, c->p, id, n, &err);
    if (rv == TS_STORE_ENOTFOUND) return admin_fail(c, 404, "not_found", "no node %s", c->seg[1]);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    return 1;
}

static int nodes_list(admin_ctx_t *c)
{
    apr_array_header_t *nodes;
    apr_hash_t *routes;
    ts_user_t *u = NULL;
    const char *err = NULL, *which = NULL;
    json_t *out;
    apr_status_t rv;
    int i;

    if (c->req->query && !strncmp(c->req->query, "user=", 5)) {
        which = apr_pstrndup(c->p, c->req->query + 5, strcspn(c->req->query + 5, "&"));
        if (!admin_find_user(c, which, &u, 404)) return 0;
    }
    rv = u ? ts_store_node_list_by_user(c->env->st, c->p, u->id, &nodes, &err)
           : ts_store_node_list(c->env->st, c->p, &nodes, &err);
    if (rv == APR_SUCCESS) rv = ts_store_node_routes_all(c->env->st, c->p, &routes, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        json_array_append_new(out, node_json(c, n, apr_hash_get(routes, &n->id,
                                                                sizeof(n->id)), 0));
    }
    return admin_reply(c, 200, json_pack("{s:o}", "nodes", out));
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
        return admin_fail(c, 409, "conflict", "name '%s' is taken by another node", n->given_name);
    }
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return node_reply(c, 200, n, 1);
}

static int nodes_patch(admin_ctx_t *c)
{
    static const char *const allowed[] = { "name", "tags", NULL };
    ts_node_t *n;
    const char *name = NULL, *tags = NULL, *err = NULL;

    if (!find_node(c, &n) || !admin_body_only(c, allowed) || !admin_body_string(c, "name", 0, &name)
        || !admin_body_tags(c, "tags", &tags)) {
        return 0;
    }
    if (name) {
        if (ts_names_check(c->p, name, c->env->conf->base_domain, &err) != APR_SUCCESS) {
            return admin_fail(c, 400, "invalid", "%s", err);
        }
        n->given_name = name;
    }
    if (tags) {
        if (!strcmp(tags, "[]") && !n->user_id) {
            return admin_fail(c, 400, "invalid", "node %" APR_INT64_T_FMT " is owned by its tags: "
                              "it cannot lose all of them", n->id);
        }
        n->tags = strcmp(tags, "[]") ? tags : NULL;
        /* A tagged node belongs to its tags, not to a user (spec 5.1). */
        if (n->tags) n->user_id = 0;
    }
    if (!name && !tags) return admin_fail(c, 400, "invalid", "give 'name', 'tags' or both");
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
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return admin_reply(c, 200, json_pack("{s:I, s:s}", "deleted", (json_int_t)n->id, "name",
                                   n->given_name));
}

/* 1 if both hold the same rows, in any order. */
static int routes_same(const apr_array_header_t *a, const apr_array_header_t *b)
{
    int i, k, found;

    if (a->nelts != b->nelts) return 0;
    for (i = 0; i < a->nelts; i++) {
        const ts_route_t *x = &APR_ARRAY_IDX(a, i, ts_route_t);
        for (k = 0, found = 0; k < b->nelts && !found; k++) {
            const ts_route_t *y = &APR_ARRAY_IDX(b, k, ts_route_t);
            found = !strcmp(x->prefix, y->prefix) && !x->advertised == !y->advertised
                    && !x->approved == !y->approved;
        }
        if (!found) return 0;
    }
    return 1;
}

/* approved: the complete list of approved prefixes (canonicalised; an exit route approves
 * both families). Others lose their approval; rows neither advertised nor approved go; a
 * listed prefix the node does not advertise stays approved for when it does. */
static int nodes_routes(admin_ctx_t *c)
{
    static const char *const allowed[] = { "approved", NULL };
    apr_array_header_t *routes, *want, *drop, *next;
    json_t *list = NULL, *v;
    ts_node_t *n;
    const char *err = NULL;
    apr_status_t rv;
    size_t i;
    int k, changed = 0;

    if (!find_node(c, &n) || !admin_body_only(c, allowed) || !node_routes(c, n->id, &routes)) {
        return 0;
    }
    list = json_object_get(c->body, "approved");
    if (!json_is_array(list)) {
        return admin_fail(c, 400, "invalid", "field 'approved' must be an array of CIDR prefixes");
    }
    if (json_array_size(list) > TS_ROUTES_MAX) {
        return admin_fail(c, 400, "invalid", "at most %d routes", TS_ROUTES_MAX);
    }
    want = apr_array_make(c->p, (int)json_array_size(list) + 1, sizeof(const char *));
    json_array_foreach(list, i, v) {
        const char *pfx = json_string_value(v);
        if (!pfx) return admin_fail(c, 400, "invalid", "'approved' must hold strings");
        if (!(pfx = ts_routes_canonical(c->p, pfx, &err))) {
            return admin_fail(c, 400, "invalid", "%s", err);
        }
        APR_ARRAY_PUSH(want, const char *) = pfx;
    }
    drop = apr_array_make(c->p, routes->nelts + 1, sizeof(const char *));
    for (k = 0; k < routes->nelts; k++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, k, ts_route_t);
        if (r->approved) APR_ARRAY_PUSH(drop, const char *) = r->prefix;
    }
    /* withdraw everything, then approve the list: the result is exactly the list */
    next = ts_routes_set_approved(c->p, routes, drop, 0, &changed);
    next = ts_routes_set_approved(c->p, next, want, 1, &changed);
    if (routes_same(routes, next)) return node_reply(c, 200, n, 1);
    rv = ts_store_node_routes_set(c->env->st, c->p, n->id, next, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return node_reply(c, 200, n, 1);
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
                          "ephemeral", g->ephemeral, "created", admin_jtime(c->p, g->created_at),
                          "expires", admin_jtime(c->p, g->expires_at),
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

    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < regs->nelts; i++) {
        json_array_append_new(out, reg_json(c, APR_ARRAY_IDX(regs, i, ts_registration_t *)));
    }
    return admin_reply(c, 200, json_pack("{s:o}", "registrations", out));
}

static int find_reg(admin_ctx_t *c, ts_registration_t **g)
{
    const char *err = NULL;
    apr_status_t rv;

    if (!ts_register_auth_id_valid(c->seg[1])) {
        return admin_fail(c, 404, "not_found", "no registration '%s'", c->seg[1]);
    }
    rv = ts_store_registration_get(c->env->st, c->p, c->seg[1], g, &err);
    if (rv == TS_STORE_ENOTFOUND || (rv == APR_SUCCESS && (*g)->state == TS_REG_PENDING
                                     && (*g)->expires_at <= c->env->now)) {
        return admin_fail(c, 404, "not_found", "no pending registration %s (expired or unknown)",
                          c->seg[1]);
    }
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    return 1;
}

static int regs_get(admin_ctx_t *c)
{
    ts_registration_t *g;

    if (!find_reg(c, &g)) return 0;
    return admin_reply(c, 200, reg_json(c, g));
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

    if (!admin_body_only(c, allowed) || !find_reg(c, &g) || !admin_body_user(c, "user", 1, &u)) {
        return 0;
    }
    if (g->state != TS_REG_PENDING) {
        return admin_fail(c, 409, "conflict", "registration %s is already %s", g->auth_id,
                          g->state == TS_REG_APPROVED ? "approved" : "rejected");
    }
    rv = ts_register_approve(c->env->st, c->p, c->env->conf, g->auth_id, u->id, &node_id, &err);
    if (rv == APR_EACCES) return admin_fail(c, 409, "conflict", "%s", err ? err : "key conflict");
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    rv = ts_store_node_get(c->env->st, c->p, node_id, &n, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    return node_reply(c, 200, n, 0);
}

static int regs_reject(admin_ctx_t *c)
{
    static const char *const allowed[] = { "reason", NULL };
    ts_registration_t *g;
    const char *reason = NULL, *err = NULL;
    apr_status_t rv;

    if (!admin_body_only(c, allowed) || !find_reg(c, &g)
        || !admin_body_string(c, "reason", 0, &reason)) {
        return 0;
    }
    if (g->state != TS_REG_PENDING) {
        return admin_fail(c, 409, "conflict", "registration %s is already %s", g->auth_id,
                          g->state == TS_REG_APPROVED ? "approved" : "rejected");
    }
    rv = ts_register_reject(c->env->st, c->p, g->auth_id, reason, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return admin_reply(c, 200, json_pack("{s:s, s:s}", "id", g->auth_id, "state", "rejected"));
}

const admin_route_t admin_nodes_routes[] = {
    { "nodes", 1, NULL, "GET", ADMIN_B_NONE, nodes_list },
    { "nodes", 2, NULL, "GET", ADMIN_B_NONE, nodes_get },
    { "nodes", 2, NULL, "PATCH", ADMIN_B_JSON, nodes_patch },
    { "nodes", 2, NULL, "DELETE", ADMIN_B_NONE, nodes_delete },
    { "nodes", 3, "expire", "POST", ADMIN_B_OPTIONAL, nodes_expire },
    { "nodes", 3, "routes", "POST", ADMIN_B_JSON, nodes_routes },
    { "registrations", 1, NULL, "GET", ADMIN_B_NONE, regs_list },
    { "registrations", 2, NULL, "GET", ADMIN_B_NONE, regs_get },
    { "registrations", 3, "approve", "POST", ADMIN_B_JSON, regs_approve },
    { "registrations", 3, "reject", "POST", ADMIN_B_OPTIONAL, regs_reject },
    { NULL, 0, NULL, NULL, 0, NULL }
};
