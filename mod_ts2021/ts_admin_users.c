/* ts_admin_users.c: the admin API's /info, /users and /policy endpoints over the store (the
 * policy check is ts_admin_policy.c's until the policy compiler takes its place). */
#include "ts_admin_int.h"

#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

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
        return admin_store_fail(c, rv, err);
    }
    for (i = 0; i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        if (c->env->online && c->env->online(c->env->online_baton, n->id)) online++;
        if (ts_register_node_expired(n, c->env->now)) expired++;
    }
    return admin_reply(c, 200, json_pack("{s:s, s:o, s:o, s:o, s:s, s:I, "
                                   "s:{s:i, s:i, s:o, s:i, s:i, s:i}}",
                                   "version", c->env->version ? c->env->version : PACKAGE_VERSION,
                                   "caller", admin_jtext(c->env->caller),
                                   "server_url", admin_jtext(c->env->conf->server_url),
                                   "base_domain", admin_jtext(c->env->conf->base_domain),
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
                     "name", u->name, "display_name", admin_jtext(u->display_name),
                     "email", admin_jtext(u->email), "provider", admin_jtext(u->provider),
                     "created", admin_jtime(c->p, u->created_at),
                     "updated", admin_jtime(c->p, u->updated_at));
}

static int users_list(admin_ctx_t *c)
{
    apr_array_header_t *users;
    const char *err = NULL;
    apr_status_t rv = ts_store_user_list(c->env->st, c->p, &users, &err);
    json_t *out;
    int i;

    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < users->nelts; i++) {
        json_array_append_new(out, user_json(c, APR_ARRAY_IDX(users, i, ts_user_t *)));
    }
    return admin_reply(c, 200, json_pack("{s:o}", "users", out));
}

static int user_name_ok(admin_ctx_t *c, const char *name)
{
    if (admin_is_number(name)) {
        admin_fail(c, 400, "invalid", "a user name must not be a number ('%s')", name);
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
    if (!admin_body_only(c, allowed) || !admin_body_string(c, "name", 1, &u.name)
        || !admin_body_string(c, "display_name", 0, &u.display_name)
        || !admin_body_string(c, "email", 0, &u.email) || !user_name_ok(c, u.name)) {
        return 0;
    }
    rv = ts_store_user_create(c->env->st, c->p, &u, &err);
    if (rv == TS_STORE_ECONFLICT) {
        return admin_fail(c, 409, "conflict", "user '%s' already exists", u.name);
    }
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return admin_reply(c, 201, user_json(c, &u));
}

static int users_get(admin_ctx_t *c)
{
    ts_user_t *u;

    if (!admin_find_user(c, c->seg[1], &u, 404)) return 0;
    return admin_reply(c, 200, user_json(c, u));
}

static int users_patch(admin_ctx_t *c)
{
    static const char *const allowed[] = { "name", "display_name", "email", NULL };
    ts_user_t *u;
    const char *name = NULL, *err = NULL;
    apr_status_t rv;

    if (!admin_find_user(c, c->seg[1], &u, 404) || !admin_body_only(c, allowed)
        || !admin_body_string(c, "name", 0, &name)) {
        return 0;
    }
    if (name) {
        if (!*name) return admin_fail(c, 400, "invalid", "field 'name' must not be empty");
        if (!user_name_ok(c, name)) return 0;
        u->name = name;
    }
    if (json_object_get(c->body, "display_name")
        && !admin_body_string(c, "display_name", 0, &u->display_name)) {
        return 0;
    }
    if (json_object_get(c->body, "email") && !admin_body_string(c, "email", 0, &u->email)) return 0;
    rv = ts_store_user_update(c->env->st, c->p, u, &err);
    if (rv == TS_STORE_ECONFLICT) {
        return admin_fail(c, 409, "conflict", "user '%s' already exists", u->name);
    }
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return admin_reply(c, 200, user_json(c, u));
}

static int users_delete(admin_ctx_t *c)
{
    ts_user_t *u;
    apr_array_header_t *nodes;
    const char *err = NULL;
    apr_status_t rv;

    if (!admin_find_user(c, c->seg[1], &u, 404)) return 0;
    rv = ts_store_node_list_by_user(c->env->st, c->p, u->id, &nodes, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    if (nodes->nelts && !admin_query_flag(c, "force")) {
        return admin_fail(c, 409, "has_nodes", "user '%s' has %d node(s); ?force=true deletes them "
                          "with the user", u->name, nodes->nelts);
    }
    rv = ts_store_user_delete(c->env->st, c->p, u->id, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    return admin_reply(c, 200, json_pack("{s:I, s:s, s:i}", "deleted", (json_int_t)u->id, "name",
                                   u->name, "nodes_deleted", nodes->nelts));
}

/* ---- policy ---- */

static int policy_get(admin_ctx_t *c)
{
    ts_store_policy_t *pol = NULL;
    const char *err = NULL;
    apr_status_t rv;

    if (c->env->policy_file) {
        return admin_reply(c, 200, json_pack("{s:o, s:n, s:n, s:s, s:s}", "policy",
                                             admin_jtext(c->env->policy_file_text), "id",
                                             "updated", "source", "file",
                                             "file", c->env->policy_file));
    }
    rv = ts_store_policy_get(c->env->st, c->p, &pol, &err);
    if (rv == TS_STORE_ENOTFOUND) {
        return admin_reply(c, 200, json_pack("{s:n, s:n, s:n, s:s}", "policy", "id", "updated",
                                             "source", "none"));
    }
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    return admin_reply(c, 200, json_pack("{s:s, s:I, s:o, s:s}", "policy", pol->data, "id",
                                         (json_int_t)pol->id,
                                         "updated", admin_jtime(c->p, pol->created_at),
                                         "source", "database"));
}

static int policy_put(admin_ctx_t *c)
{
    if (c->env->policy_file) {
        return admin_fail(c, 409, "policy_from_file", "the policy in force is read from "
                          "TS2021PolicyFile %s: change that file (and restart gracefully)",
                          c->env->policy_file);
    }
    /* Checked by the compiler against the tailnet, tests run, stored, autoApprovers applied:
     * the same as `ts2021ctl policy set`. */
    ts_admin_policy_put(c->env, c->p, c->req->body, c->req->body ? c->req->len : 0, c->res);
    return 0;
}

const admin_route_t admin_users_routes[] = {
    { "info", 1, NULL, "GET", ADMIN_B_NONE, info_get },
    { "users", 1, NULL, "GET", ADMIN_B_NONE, users_list },
    { "users", 1, NULL, "POST", ADMIN_B_JSON, users_create },
    { "users", 2, NULL, "GET", ADMIN_B_NONE, users_get },
    { "users", 2, NULL, "PATCH", ADMIN_B_JSON, users_patch },
    { "users", 2, NULL, "DELETE", ADMIN_B_NONE, users_delete },
    { "policy", 1, NULL, "GET", ADMIN_B_NONE, policy_get },
    { "policy", 1, NULL, "PUT", ADMIN_B_RAW, policy_put },
    { NULL, 0, NULL, NULL, 0, NULL }
};
