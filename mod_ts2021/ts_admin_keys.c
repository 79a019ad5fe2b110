/* ts_admin_keys.c: the admin API's /preauthkeys and /apikeys endpoints, and the check of an
 * API key presented as "Authorization: Bearer" (the secret compared by the store, in constant
 * time). */
#include "ts_admin_int.h"

#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

/* ---- pre-auth keys ---- */

static json_t *pak_json(admin_ctx_t *c, const ts_preauth_key_t *k)
{
    return json_pack("{s:I, s:s, s:o, s:o, s:b, s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:s}",
                     "id", (json_int_t)k->id, "prefix", k->prefix,
                     "user", admin_jtext(admin_user_name(c, k->user_id)),
                     "user_id", k->user_id ? json_integer(k->user_id) : json_null(),
                     "reusable", k->reusable, "ephemeral", k->ephemeral, "used", k->used,
                     "tags", admin_jtags(k->tags), "expiration", admin_jtime(c->p, k->expiration),
                     "revoked", admin_jtime(c->p, k->revoked),
                     "created", admin_jtime(c->p, k->created_at),
                     "description", admin_jtext(k->description),
                     "status", ts_store_preauth_key_status(k, c->env->now));
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
        if (!admin_find_user(c, which, &u, 404)) return 0;
    }
    rv = ts_store_preauth_key_list(c->env->st, c->p, u ? u->id : 0, &keys, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < keys->nelts; i++) {
        json_array_append_new(out, pak_json(c, APR_ARRAY_IDX(keys, i, ts_preauth_key_t *)));
    }
    return admin_reply(c, 200, json_pack("{s:o}", "preauthkeys", out));
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
    if (!admin_body_only(c, allowed) || !admin_body_user(c, "user", 0, &u)
        || !admin_body_bool(c, "reusable", &k.reusable)
        || !admin_body_bool(c, "ephemeral", &k.ephemeral)
        || !admin_body_tags(c, "tags", &k.tags)
        || !admin_body_string(c, "description", 0, &k.description)) {
        return 0;
    }
    if (k.tags && !strcmp(k.tags, "[]")) k.tags = NULL;
    if (!u && !k.tags) {
        return admin_fail(c, 400, "invalid", "a pre-auth key needs 'user', 'tags' or both");
    }
    k.expiration = admin_parse_expiration(c, json_object_get(c->body, "expiration"),
                                          apr_time_from_sec(3600), &why);
    if (k.expiration < 0) return admin_fail(c, 400, "invalid", "%s", why);
    k.user_id = u ? u->id : 0;
    if (ts_register_key_generate(c->p, &k.prefix, &secret, &text) != APR_SUCCESS) {
        return admin_fail(c, 500, "internal", "cannot generate a key");
    }
    rv = ts_store_preauth_key_create(c->env->st, c->p, &k, secret, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    j = pak_json(c, &k);
    json_object_set_new(j, "key", json_string(text));
    return admin_reply(c, 201, j);
}

static int paks_expire(admin_ctx_t *c)
{
    ts_preauth_key_t *k;
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv;

    if (!admin_parse_id(c->seg[1], &id)) {
        return admin_fail(c, 404, "not_found", "no pre-auth key '%s'", c->seg[1]);
    }
    rv = ts_store_preauth_key_get(c->env->st, c->p, id, &k, &err);
    if (rv == TS_STORE_ENOTFOUND) {
        return admin_fail(c, 404, "not_found", "no pre-auth key %s", c->seg[1]);
    }
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    if (!k->expiration || k->expiration > c->env->now) {
        k->expiration = c->env->now;
        rv = ts_store_preauth_key_update(c->env->st, c->p, k, &err);
        if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
        c->res->changed = 1;
    }
    return admin_reply(c, 200, pak_json(c, k));
}

/* ---- API keys ---- */

static json_t *apikey_json(admin_ctx_t *c, const ts_api_key_t *k)
{
    const char *status = k->expiration && k->expiration <= c->env->now ? "expired" : "valid";

    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:s}", "id", (json_int_t)k->id,
                     "prefix", k->prefix, "expiration", admin_jtime(c->p, k->expiration),
                     "last_seen", admin_jtime(c->p, k->last_seen),
                     "created", admin_jtime(c->p, k->created_at), "status", status);
}

static int apikeys_list(admin_ctx_t *c)
{
    apr_array_header_t *keys;
    const char *err = NULL;
    json_t *out;
    apr_status_t rv = ts_store_api_key_list(c->env->st, c->p, &keys, &err);
    int i;

    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    out = json_array();
    for (i = 0; i < keys->nelts; i++) {
        json_array_append_new(out, apikey_json(c, APR_ARRAY_IDX(keys, i, ts_api_key_t *)));
    }
    return admin_reply(c, 200, json_pack("{s:o}", "apikeys", out));
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
    if (!admin_body_only(c, allowed)) return 0;
    k.expiration = admin_parse_expiration(c, json_object_get(c->body, "expiration"),
                                          apr_time_from_sec(90 * 86400), &why);
    if (k.expiration < 0) return admin_fail(c, 400, "invalid", "%s", why);
    if (ts_admin_apikey_generate(c->p, &k.prefix, &secret, &text) != APR_SUCCESS) {
        return admin_fail(c, 500, "internal", "cannot generate a key");
    }
    rv = ts_store_api_key_create(c->env->st, c->p, &k, secret, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    c->res->changed = 1;
    j = apikey_json(c, &k);
    json_object_set_new(j, "key", json_string(text));
    return admin_reply(c, 201, j);
}

static int apikeys_expire(admin_ctx_t *c)
{
    apr_array_header_t *keys;
    ts_api_key_t *k = NULL;
    const char *err = NULL;
    apr_int64_t id;
    apr_status_t rv;
    int i;

    if (!admin_parse_id(c->seg[1], &id)) {
        return admin_fail(c, 404, "not_found", "no API key '%s'", c->seg[1]);
    }
    rv = ts_store_api_key_list(c->env->st, c->p, &keys, &err);
    if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
    for (i = 0; i < keys->nelts && !k; i++) {
        ts_api_key_t *x = APR_ARRAY_IDX(keys, i, ts_api_key_t *);
        if (x->id == id) k = x;
    }
    if (!k) return admin_fail(c, 404, "not_found", "no API key %s", c->seg[1]);
    if (!k->expiration || k->expiration > c->env->now) {
        k->expiration = c->env->now;
        rv = ts_store_api_key_update(c->env->st, c->p, k, &err);
        if (rv != APR_SUCCESS) return admin_store_fail(c, rv, err);
        c->res->changed = 1;
    }
    return admin_reply(c, 200, apikey_json(c, k));
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

const admin_route_t admin_keys_routes[] = {
    { "preauthkeys", 1, NULL, "GET", ADMIN_B_NONE, paks_list },
    { "preauthkeys", 1, NULL, "POST", ADMIN_B_JSON, paks_create },
    { "preauthkeys", 3, "expire", "POST", ADMIN_B_OPTIONAL, paks_expire },
    { "apikeys", 1, NULL, "GET", ADMIN_B_NONE, apikeys_list },
    { "apikeys", 1, NULL, "POST", ADMIN_B_OPTIONAL, apikeys_create },
    { "apikeys", 3, "expire", "POST", ADMIN_B_OPTIONAL, apikeys_expire },
    { NULL, 0, NULL, NULL, 0, NULL }
};
