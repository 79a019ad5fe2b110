/* ts_register.c: the /machine/register decision order (control spec 1.4-1.7): request
 * parsing, logout, restart, expiry, Followup, pre-auth keys, interactive registrations. */
#include "ts_register.h"
#include "ts_register_int.h"
#include "ts_ipalloc.h"
#include "ts_policy_manage.h"

#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Error texts clients show to their users, as the spec words them. */
#define ERR_MACHINE     "node exists with a different machine key"
#define ERR_EXTEND      "extending key is not allowed"
#define ERR_KEY_INVALID "invalid pre auth key"
#define ERR_KEY_EXPIRED "authkey expired"
#define ERR_KEY_USED    "authkey already used"
#define ERR_KEY_REVOKED "authkey revoked"

/* A registration losing a race to another one of the same node key is decided again. */
#define DECIDE_ATTEMPTS 3

/* ---- answers ---- */

static void answer(reg_ctx_t *c, int status, const char *ctype, const char *body)
{
    c->res->outcome = TS_REGISTER_ANSWER;
    c->res->status = status;
    c->res->content_type = ctype;
    c->res->body = body;
}

static void answer_text(reg_ctx_t *c, int status, const char *text)
{
    answer(c, status, "text/plain; charset=utf-8", apr_pstrcat(c->p, text, "\n", NULL));
    c->res->log = text;
}

static void answer_json(reg_ctx_t *c, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    answer(c, 200, "application/json", apr_pstrdup(c->p, s ? s : "{}"));
    free(s);
    json_decref(j);
}

/* The RegisterResponse fields every answer carries, appended after User/Login if any. */
static json_t *resp_fields(json_t *j, int key_expired, int authorized, const char *auth_url,
                           const char *error)
{
    json_object_set_new(j, "NodeKeyExpired", json_boolean(key_expired));
    json_object_set_new(j, "MachineAuthorized", json_boolean(authorized));
    json_object_set_new(j, "AuthURL", json_string(auth_url ? auth_url : ""));
    json_object_set_new(j, "Error", json_string(error ? error : ""));
    return j;
}

static apr_status_t answer_error(reg_ctx_t *c, const char *msg)
{
    answer_json(c, resp_fields(json_object(), 0, 0, "", msg));
    return APR_SUCCESS;
}

const char *ts_register_login_name(apr_pool_t *p, const ts_user_t *u)
{
    if (!u) {
        return TS_TAGGED_LOGIN_NAME;
    }
    if (u->email && *u->email) return u->email;
    if (u->name && *u->name) return u->name;
    if (u->provider_identifier && *u->provider_identifier) return u->provider_identifier;
    return apr_psprintf(p, "%" APR_INT64_T_FMT, u->id);
}

static const char *display_name(const ts_user_t *u)
{
    if (!u) {
        return TS_TAGGED_DISPLAY_NAME;
    }
    return (u->display_name && *u->display_name) ? u->display_name : u->name;
}

/* User and Login of an owner (NULL: the tagged-devices user). */
static void add_owner(apr_pool_t *p, json_t *j, const ts_user_t *u)
{
    json_int_t id = u ? (json_int_t)u->id : TS_TAGGED_USER_ID;
    json_t *user = json_pack("{s:I, s:s}", "ID", id, "DisplayName", display_name(u));
    json_t *login = json_pack("{s:I, s:s, s:s, s:s}", "ID", id, "Provider",
                              (u && u->provider) ? u->provider : "", "LoginName",
                              ts_register_login_name(p, u), "DisplayName", display_name(u));

    if (u && u->profile_pic_url && *u->profile_pic_url) {
        json_object_set_new(user, "ProfilePicURL", json_string(u->profile_pic_url));
        json_object_set_new(login, "ProfilePicURL", json_string(u->profile_pic_url));
    }
    json_object_set_new(j, "User", user);
    json_object_set_new(j, "Login", login);
}

/* The state of a node as a RegisterResponse: its owner, authorised unless key_expired. */
static apr_status_t answer_node(reg_ctx_t *c, const ts_node_t *n, int key_expired)
{
    ts_user_t *u = NULL;
    json_t *j;

    if (n->user_id) {
        apr_status_t rv = ts_store_user_get(c->st, c->p, n->user_id, &u, &c->err);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    j = json_object();
    add_owner(c->p, j, u);
    answer_json(c, resp_fields(j, key_expired, !key_expired, "", ""));
    c->res->node_id = n->id;
    return APR_SUCCESS;
}

/* ---- request ---- */

/* A key field: NULL out for absent, null, "" or the all-zero key. -1 if malformed, or
 * required and absent. */
static int parse_key_field(apr_pool_t *p, json_t *obj, const char *name, const char *prefix,
                           int required, const char **out)
{
    static const uint8_t zero[TS_KEY_LEN];
    json_t *v = json_object_get(obj, name);
    uint8_t key[TS_KEY_LEN];

    *out = NULL;
    if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v))) {
        return required ? -1 : 0;
    }
    if (!json_is_string(v) || ts_key_parse(key, prefix, json_string_value(v)) != 0) {
        return -1;
    }
    if (sodium_memcmp(key, zero, TS_KEY_LEN) == 0) {
        return required ? -1 : 0;
    }
    *out = ts_key_text(p, prefix, key);
    return 0;
}

/* At most max bytes, not cutting a UTF-8 sequence in two. */
const char *reg_utf8_cut(apr_pool_t *p, const char *s, apr_size_t max)
{
    apr_size_t len = strlen(s);

    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80) {
            len--;
        }
    }
    return apr_pstrmemdup(p, s, len);
}

apr_array_header_t *reg_request_tags(apr_pool_t *p, json_t *hi)
{
    json_t *rt = json_is_object(hi) ? json_object_get(hi, "RequestTags") : NULL, *v;
    apr_array_header_t *out;
    size_t i;

    if (!json_is_array(rt) || json_array_size(rt) == 0) return NULL;
    out = apr_array_make(p, (int)json_array_size(rt), sizeof(const char *));
    json_array_foreach(rt, i, v) {
        char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        APR_ARRAY_PUSH(out, const char *) = apr_pstrdup(p, s ? s : json_string_value(v));
        free(s);
    }
    return out;
}

static const char *parse_hostinfo(reg_ctx_t *c, json_t *hi)
{
    json_t *name = json_object_get(hi, "Hostname");
    char *s;

    if (!json_is_object(hi)) {
        return json_is_null(hi) || !hi ? NULL : "Hostinfo is not an object";
    }
    if (json_is_string(name) && *json_string_value(name)) {
        c->req.hostname = reg_utf8_cut(c->p, json_string_value(name), REG_HOSTNAME_MAX);
    }
    s = json_dumps(hi, JSON_COMPACT);
    if (!s || strlen(s) > TS_STORE_BLOB_MAX) {
        free(s);
        return "Hostinfo is too large";
    }
    c->req.hostinfo = apr_pstrdup(c->p, s);
    free(s);
    c->req.request_tags = reg_request_tags(c->p, hi);
    return NULL;
}

static const char *parse_expiry(reg_ctx_t *c, json_t *v)
{
    int zero = 0;

    if (!v || json_is_null(v)) {
        return NULL;
    }
    if (!json_is_string(v)
        || ts_register_parse_time(json_string_value(v), &c->req.expiry, &zero) != 0) {
        return "Expiry is not an RFC 3339 time";
    }
    c->req.expiry_set = !zero;
    if (zero) {
        c->req.expiry = 0;
    }
    return NULL;
}

/* NULL when the request is usable, else why not (answered with 400). */
static const char *parse_fields(reg_ctx_t *c, json_t *j)
{
    json_t *auth = json_object_get(j, "Auth"), *v = json_object_get(j, "Version");
    const char *why;

    c->req.version = json_is_integer(v) ? (int)json_integer_value(v) : 0;
    if (c->req.version < c->conf->min_capver) {
        return apr_psprintf(c->p, "client capability version %d is below this server's "
                            "minimum %d: upgrade Tailscale", c->req.version,
                            c->conf->min_capver);
    }
    if (parse_key_field(c->p, j, "NodeKey", "nodekey:", 1, &c->req.node_key) != 0) {
        return "NodeKey is missing or not a node key";
    }
    if (parse_key_field(c->p, j, "OldNodeKey", "nodekey:", 0, &c->req.old_node_key) != 0) {
        return "OldNodeKey is not a node key";
    }
    /* v1.34.2 always sends an Auth object: only a non-empty AuthKey means "use a key" */
    v = json_is_object(auth) ? json_object_get(auth, "AuthKey") : NULL;
    if (json_is_string(v) && *json_string_value(v)) {
        c->req.auth_key = apr_pstrdup(c->p, json_string_value(v));
    }
    if ((why = parse_expiry(c, json_object_get(j, "Expiry"))) != NULL
        || (why = parse_hostinfo(c, json_object_get(j, "Hostinfo"))) != NULL) {
        return why;
    }
    v = json_object_get(j, "Followup");
    if (json_is_string(v) && *json_string_value(v)) {
        c->req.followup = apr_pstrdup(c->p, json_string_value(v));
    }
    c->req.ephemeral = json_is_true(json_object_get(j, "Ephemeral"));
    return NULL;
}

static const char *parse_request(reg_ctx_t *c, const char *body, apr_size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, 0, &jerr);
    const char *why;

    if (!j || !json_is_object(j)) {
        why = j ? "the request body is not a JSON object"
                : apr_psprintf(c->p, "the request body is not JSON: %s", jerr.text);
    }
    else {
        why = parse_fields(c, j);
    }
    json_decref(j);
    return why;
}

/* ---- helpers shared with ts_register_node.c ---- */

apr_status_t reg_find_node(reg_ctx_t *c, const char *node_key, ts_node_t **n)
{
    apr_status_t rv;

    *n = NULL;
    if (!node_key) {
        return APR_SUCCESS;
    }
    rv = ts_store_node_get_by_node_key(c->st, c->p, node_key, n, &c->err);
    if (rv == TS_STORE_ENOTFOUND) {
        *n = NULL;
        return APR_SUCCESS;
    }
    return rv;
}

int reg_foreign(const reg_ctx_t *c, const ts_node_t *n)
{
    return n && strcmp(n->machine_key, c->mkey) != 0;
}

int ts_register_node_expired(const ts_node_t *n, apr_time_t now)
{
    return n->expiry != 0 && n->expiry <= now;
}

/* ---- rows 1-4: requests about a node that exists ---- */

static apr_status_t row_logout(reg_ctx_t *c, ts_node_t *n)
{
    apr_status_t rv = APR_SUCCESS;

    if (!n) {
        answer_json(c, resp_fields(json_object(), 1, 0, "", ""));
        return APR_SUCCESS;
    }
    if (n->ephemeral) {
        rv = ts_store_node_delete(c->st, c->p, n->id, &c->err);
        if (rv == TS_STORE_ENOTFOUND) {
            rv = APR_SUCCESS;        /* gone already: same outcome */
        }
        c->res->changed = rv == APR_SUCCESS;
    }
    else if (!ts_register_node_expired(n, c->now)) {
        /* now, not the client's 1970 sentinel: "logged out at" stays meaningful */
        n->expiry = c->now;
        rv = ts_store_node_update(c->st, c->p, n, &c->err);
        c->redo = rv == TS_STORE_ECONFLICT;
        c->res->changed = rv == APR_SUCCESS;
    }
    return rv == APR_SUCCESS ? answer_node(c, n, 1) : rv;
}

/* Row 4: a client may ask for its key to expire sooner, never later. */
static apr_status_t row_shorten(reg_ctx_t *c, ts_node_t *n)
{
    apr_status_t rv;

    if (n->expiry != 0 && c->req.expiry > n->expiry) {
        return answer_error(c, ERR_EXTEND);
    }
    if (n->expiry == 0 || c->req.expiry < n->expiry) {
        n->expiry = c->req.expiry;
        rv = ts_store_node_update(c->st, c->p, n, &c->err);
        if (rv != APR_SUCCESS) {
            c->redo = rv == TS_STORE_ECONFLICT;
            return rv;
        }
        c->res->changed = 1;
    }
    return answer_node(c, n, 0);
}

/* ---- rows 5 and 7: interactive registration ---- */

int ts_register_auth_id_valid(const char *id)
{
    apr_size_t plen = sizeof(TS_REGISTER_AUTH_ID_PREFIX) - 1;

    return id && strncmp(id, TS_REGISTER_AUTH_ID_PREFIX, plen) == 0
        && strlen(id + plen) == 32 && strspn(id + plen, "0123456789abcdef") == 32;
}

static const char *new_auth_id(apr_pool_t *p)
{
    uint8_t raw[16];
    char hex[33];

    randombytes_buf(raw, sizeof(raw));
    ts_hex_encode(hex, raw, sizeof(raw));
    return apr_pstrcat(p, TS_REGISTER_AUTH_ID_PREFIX, hex, NULL);
}

static const char *auth_url(reg_ctx_t *c, const char *auth_id)
{
    return apr_pstrcat(c->p, c->conf->server_url ? c->conf->server_url : "", "/register/",
                       auth_id, NULL);
}

/* Row 7: a pending entry any child (or ts2021ctl) can approve, and its URL. */
static apr_status_t row_interactive(reg_ctx_t *c)
{
    ts_registration_t r;
    ts_node_t *old = NULL;
    apr_interval_time_t ttl = c->conf->registration_ttl > 0 ? c->conf->registration_ttl
                                                           : TS_REGISTER_DEFAULT_TTL;
    apr_status_t rv = reg_find_node(c, c->req.old_node_key, &old);
    int attempt, deleted;

    if (rv != APR_SUCCESS || reg_foreign(c, old)) {
        return rv != APR_SUCCESS ? rv : answer_error(c, ERR_MACHINE);
    }
    memset(&r, 0, sizeof(r));
    r.machine_key = c->mkey;
    r.node_key = c->req.node_key;
    r.old_node_key = c->req.old_node_key;
    r.hostinfo = c->req.hostinfo;
    r.req_expiry = (c->req.expiry_set && c->req.expiry > c->now) ? c->req.expiry : 0;
    r.ephemeral = c->req.ephemeral;
    r.expires_at = c->now + ttl;
    for (attempt = 0, rv = TS_STORE_ECONFLICT; attempt < 3 && rv == TS_STORE_ECONFLICT;
         attempt++) {
        r.auth_id = new_auth_id(c->p);     /* a collision of 128 random bits: try again */
        rv = ts_store_registration_create(c->st, c->p, &r, &c->err);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    c->res->changed = 1;
    /* housekeeping on the way: lapsed entries of clients that never came back */
    (void)ts_store_registration_delete_expired(c->st, c->p, c->now, &deleted, &c->err);
    answer_json(c, resp_fields(json_object(), 0, 0, auth_url(c, r.auth_id), ""));
    return APR_SUCCESS;
}

static const char *followup_auth_id(apr_pool_t *p, const char *url)
{
    const char *s = NULL, *hit = url;
    apr_size_t len;

    while ((hit = strstr(hit, "/register/")) != NULL) {
        s = hit + strlen("/register/");
        hit = s;
    }
    if (!s) {
        return NULL;
    }
    len = strcspn(s, "?#");
    s = apr_pstrmemdup(p, s, len);
    return ts_register_auth_id_valid(s) ? s : NULL;
}

static void set_pending(reg_ctx_t *c, const ts_registration_t *r)
{
    answer_text(c, 503, apr_psprintf(c->p, "registration is waiting for approval at %s",
                                     auth_url(c, r->auth_id)));
    c->res->log = NULL;
    c->res->outcome = TS_REGISTER_PENDING;
    c->res->auth_id = r->auth_id;
    c->res->wait_until = r->expires_at;
}

/* Row 5: the client waits for the URL it was given. */
static apr_status_t row_followup(reg_ctx_t *c)
{
    const char *id = followup_auth_id(c->p, c->req.followup);
    ts_registration_t *r = NULL;
    apr_status_t rv;

    if (!id) {
        return row_interactive(c);
    }
    rv = ts_store_registration_get(c->st, c->p, id, &r, &c->err);
    if (rv == TS_STORE_ENOTFOUND) {
        return row_interactive(c);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* someone else's entry, or a lapsed one: this client starts over with its own */
    if (strcmp(r->machine_key, c->mkey) != 0 || strcmp(r->node_key, c->req.node_key) != 0
        || r->expires_at <= c->now) {
        return row_interactive(c);
    }
    if (r->state == TS_REG_PENDING) {
        set_pending(c, r);
        return APR_SUCCESS;
    }
    if (r->state == TS_REG_REJECTED) {
        return answer_error(c, (r->error && *r->error) ? r->error : "registration rejected");
    }
    /* approved, yet no node has this key (deleted since): ask again */
    return row_interactive(c);
}

/* ---- row 6: pre-auth keys ---- */

static apr_status_t key_error(reg_ctx_t *c, apr_status_t rv)
{
    const char *e = c->err ? c->err : "";

    if (rv == TS_STORE_ENOTFOUND && strstr(e, "pre-auth key")) {
        return answer_error(c, ERR_KEY_INVALID);     /* deleted since it was looked up */
    }
    if (rv != TS_STORE_ECONFLICT) return rv;
    if (strstr(e, "is revoked")) return answer_error(c, ERR_KEY_REVOKED);
    if (strstr(e, "has expired")) return answer_error(c, ERR_KEY_EXPIRED);
    if (strstr(e, "already used")) return answer_error(c, ERR_KEY_USED);
    return rv;
}

/* The key's state in the spec's order: revoked, expired, reusable, used. */
static const char *key_refusal(const reg_ctx_t *c, const ts_preauth_key_t *k)
{
    if (k->revoked) return ERR_KEY_REVOKED;
    if (k->expiration && k->expiration <= c->now) return ERR_KEY_EXPIRED;
    if (!k->reusable && k->used) return ERR_KEY_USED;
    return NULL;
}

/* Tags (control API 5.10): a tagged key's tags must be in tagOwners and RequestTags among
 * them; RequestTags with an untagged key must be the key user's to apply, and then the node
 * belongs to those tags. A refusal is answered with an Error and *refused set. */
static apr_status_t reg_tags(reg_ctx_t *c, reg_owner_t *o, const ts_node_t *by_key,
                             const char *key_tags, int *refused)
{
    const char *why = NULL;
    apr_status_t rv = ts_policy_registration_tags(c->st, c->p, c->conf, o->user_id,
                                                  key_tags || !c->req.request_tags ? NULL
                                                  : reg_present_tags(c, by_key), key_tags,
                                                  c->req.request_tags, &why, &c->err);

    *refused = why != NULL;
    if (rv != APR_SUCCESS) return rv;
    if (why) return answer_error(c, why);
    if (!o->tags && c->req.request_tags) {
        o->tags = reg_tags_list_norm(c->p, c->req.request_tags);
        o->user_id = 0;
    }
    return APR_SUCCESS;
}

static apr_status_t row_authkey(reg_ctx_t *c, ts_node_t *by_key)
{
    const char *prefix, *secret, *refusal;
    ts_preauth_key_t *k = NULL;
    ts_node_t *existing = NULL, *done = NULL;
    reg_owner_t o;
    apr_status_t rv;
    int refused = 0;

    if (ts_register_key_parse(c->p, c->req.auth_key, &prefix, &secret) != 0) {
        return answer_error(c, ERR_KEY_INVALID);
    }
    rv = ts_store_preauth_key_verify(c->st, c->p, prefix, secret, &k, &c->err);
    if (rv != APR_SUCCESS) {
        return rv == TS_STORE_ENOTFOUND ? answer_error(c, ERR_KEY_INVALID) : rv;
    }
    memset(&o, 0, sizeof(o));
    o.tags = reg_tags_norm(c->p, k->tags);
    o.user_id = o.tags ? 0 : k->user_id;
    o.method = "authkey";
    o.key = k;
    o.ephemeral = k->ephemeral || c->req.ephemeral;
    if (!o.tags && !o.user_id) {
        return answer_error(c, ERR_KEY_INVALID);    /* its user was deleted */
    }
    if ((rv = reg_tags(c, &o, by_key, o.tags ? k->tags : NULL, &refused)) != APR_SUCCESS
        || refused) {
        return rv;                                   /* refused: answered with an Error */
    }
    rv = reg_find_existing(c, by_key, &o, 0, &existing);
    if (rv != APR_SUCCESS) {
        return rv == APR_EACCES ? answer_error(c, ERR_MACHINE) : rv;
    }
    /* a container re-running "up --authkey" with its spent one-off key: nothing changes */
    if (existing && strcmp(existing->node_key, c->req.node_key) == 0
        && !ts_register_node_expired(existing, c->now) && reg_same_owner(c->p, existing, &o, 1)) {
        return answer_node(c, existing, 0);
    }
    if ((refusal = key_refusal(c, k)) != NULL) {
        return answer_error(c, refusal);
    }
    rv = reg_node_write(c, existing, &o, &done);
    if (rv == TS_IPALLOC_EFULL) {
        return answer_error(c, c->err);
    }
    if (rv != APR_SUCCESS) {
        return c->redo ? rv : key_error(c, rv);
    }
    c->res->changed = 1;
    reg_auto_approve(c, done);
    return answer_node(c, done, 0);
}

/* ---- the decision order ---- */

static apr_status_t decide(reg_ctx_t *c)
{
    ts_node_t *n = NULL;
    apr_status_t rv = reg_find_node(c, c->req.node_key, &n);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (reg_foreign(c, n)) {
        return answer_error(c, ERR_MACHINE);
    }
    /* 1: an Expiry in the past is a logout, whatever else the request says */
    if (c->req.expiry_set && c->req.expiry < c->now) {
        return row_logout(c, n);
    }
    if (n && !c->req.auth_key) {
        if (ts_register_node_expired(n, c->now)) {
            return answer_node(c, n, 1);                    /* 3 */
        }
        return c->req.expiry_set ? row_shorten(c, n)       /* 4 */
                                 : answer_node(c, n, 0);   /* 2 */
    }
    if (c->req.followup) {
        return row_followup(c);                             /* 5 */
    }
    if (c->req.auth_key) {
        return row_authkey(c, n);                           /* 6 */
    }
    return row_interactive(c);                              /* 7 */
}

static void ctx_init(reg_ctx_t *c, ts_store_t *st, apr_pool_t *p,
                     const ts_tailnet_conf_t *conf, const char *mkey,
                     ts_register_result_t *res)
{
    memset(c, 0, sizeof(*c));
    memset(res, 0, sizeof(*res));
    c->st = st;
    c->p = p;
    c->conf = conf;
    c->mkey = mkey;
    c->now = apr_time_now();
    c->res = res;
}

static apr_status_t run_decision(reg_ctx_t *c)
{
    apr_status_t rv = APR_SUCCESS;
    int attempt;

    for (attempt = 0; attempt < DECIDE_ATTEMPTS; attempt++) {
        c->redo = 0;
        c->res->changed = 0;
        rv = decide(c);
        if (!c->redo) {
            break;
        }
        c->now = apr_time_now();
    }
    if (rv != APR_SUCCESS && (c->busy || c->redo || rv == TS_STORE_EBUSY)) {
        /* contention, not a fault: nothing was written, and the client will come back */
        answer_text(c, 503, "the server is busy registering other nodes: try again");
        c->res->log = apr_psprintf(c->p, "register (503, busy): %s",
                                   c->err ? c->err : "failed");
    }
    else if (rv != APR_SUCCESS) {
        answer_text(c, 500, "internal error while registering");
        c->res->log = apr_psprintf(c->p, "register: %s", c->err ? c->err : "failed");
    }
    return rv;
}

apr_status_t ts_register_handle(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                const uint8_t machine_key[TS_KEY_LEN], const char *body,
                                apr_size_t len, ts_register_result_t *res)
{
    reg_ctx_t c;
    const char *why;

    ctx_init(&c, st, p, conf, ts_key_text(p, "mkey:", machine_key), res);
    if ((why = parse_request(&c, body, len)) != NULL) {
        answer_text(&c, 400, why);
        return APR_SUCCESS;
    }
    return run_decision(&c);
}

apr_status_t ts_register_recheck(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                 const uint8_t machine_key[TS_KEY_LEN], const char *body,
                                 apr_size_t len, const char *auth_id,
                                 ts_register_result_t *res)
{
    reg_ctx_t c;
    ts_registration_t *r = NULL;
    const char *err = NULL;

    ctx_init(&c, st, p, conf, ts_key_text(p, "mkey:", machine_key), res);
    /* the common case while an admin has not acted yet: one read, no decision */
    if (ts_store_registration_get(st, p, auth_id, &r, &err) == APR_SUCCESS
        && r->state == TS_REG_PENDING && r->expires_at > c.now
        && strcmp(r->machine_key, c.mkey) == 0) {
        set_pending(&c, r);
        return APR_SUCCESS;
    }
    return ts_register_handle(st, p, conf, machine_key, body, len, res);
}

apr_status_t ts_register_node_of_machine(ts_store_t *st, apr_pool_t *p,
                                         const uint8_t machine_key[TS_KEY_LEN],
                                         const char *node_key, ts_node_t **n,
                                         const char **err)
{
    apr_status_t rv = ts_store_node_get_by_node_key(st, p, node_key, n, err);

    if (rv == APR_SUCCESS && strcmp((*n)->machine_key, ts_key_text(p, "mkey:",
                                                                   machine_key)) != 0) {
        *err = apr_psprintf(p, "node key %s belongs to another machine", node_key);
        *n = NULL;
        return APR_EACCES;
    }
    return rv;
}

/* ---- keys, tags, times ---- */

apr_status_t ts_register_key_generate(apr_pool_t *p, const char **prefix, const char **secret,
                                      const char **text)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char pfx[13], hex[2 * 32 + 1];
    uint8_t raw[32];
    int i;

    if (sodium_init() < 0) {
        return APR_EGENERAL;
    }
    for (i = 0; i < 12; i++) {
        pfx[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    }
    pfx[12] = '\0';
    randombytes_buf(raw, sizeof(raw));
    ts_hex_encode(hex, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    *prefix = apr_pstrdup(p, pfx);
    *secret = apr_pstrdup(p, hex);
    *text = apr_pstrcat(p, TS_REGISTER_KEY_PREFIX, pfx, "-", hex, NULL);
    sodium_memzero(hex, sizeof(hex));
    return APR_SUCCESS;
}

int ts_register_key_parse(apr_pool_t *p, const char *text, const char **prefix,
                          const char **secret)
{
    apr_size_t kp = sizeof(TS_REGISTER_KEY_PREFIX) - 1, plen;
    const char *rest, *dash;
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    if (!text || strncmp(text, TS_REGISTER_KEY_PREFIX, kp) != 0) {
        return -1;
    }
    rest = text + kp;
    dash = strchr(rest, '-');
    plen = dash ? (apr_size_t)(dash - rest) : 0;
    if (plen == 0 || plen > 64 || strspn(rest, alnum) != plen || !dash[1]
        || strlen(dash + 1) > 128 || strspn(dash + 1, alnum) != strlen(dash + 1)) {
        return -1;
    }
    *prefix = apr_pstrmemdup(p, rest, plen);
    *secret = apr_pstrdup(p, dash + 1);
    return 0;
}

int ts_register_tag_valid(const char *tag)
{
    static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
    char c;

    if (!tag || strncmp(tag, "tag:", 4) != 0) {
        return 0;
    }
    c = tag[4];
    return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        && strspn(tag + 5, rest) == strlen(tag + 5) && strlen(tag) <= 255;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (the usual era arithmetic). */
static apr_int64_t days_from_civil(apr_int64_t y, int m, int d)
{
    apr_int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int two_digits(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
        return -1;
    }
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

/* Fraction and zone after the seconds: ".123456789" then "Z" or "+hh:mm"/"-hh:mm". */
static int parse_zone(const char *s, apr_int64_t *usec, apr_int64_t *offset)
{
    int digits = 0, oh, om;

    *usec = 0;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
            if (digits < 6) {
                *usec = *usec * 10 + (*s - '0');
            }
        }
        if (digits == 0) {
            return -1;
        }
        for (; digits < 6; digits++) {
            *usec *= 10;
        }
    }
    if ((*s == 'Z' || *s == 'z') && !s[1]) {
        *offset = 0;
        return 0;
    }
    if ((*s != '+' && *s != '-') || two_digits(s + 1, &oh) || s[3] != ':'
        || two_digits(s + 4, &om) || s[6] || oh > 23 || om > 59) {
        return -1;
    }
    *offset = (*s == '-' ? -1 : 1) * (apr_int64_t)(oh * 3600 + om * 60);
    return 0;
}

int ts_register_parse_time(const char *s, apr_time_t *t, int *zero)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y1, y2, mo, d, h, mi, se;
    apr_int64_t usec, offset, secs;

    if (!s || strlen(s) < 20 || two_digits(s, &y1) || two_digits(s + 2, &y2) || s[4] != '-'
        || two_digits(s + 5, &mo) || s[7] != '-' || two_digits(s + 8, &d)
        || (s[10] != 'T' && s[10] != 't') || two_digits(s + 11, &h) || s[13] != ':'
        || two_digits(s + 14, &mi) || s[16] != ':' || two_digits(s + 17, &se)
        || parse_zone(s + 19, &usec, &offset) != 0) {
        return -1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) {
        return -1;
    }
    secs = days_from_civil(y1 * 100 + y2, mo, d) * 86400 + h * 3600 + mi * 60
        + (se == 60 ? 59 : se) - offset;
    *zero = secs == days_from_civil(1, 1, 1) * 86400 && usec == 0;
    *t = secs * APR_USEC_PER_SEC + usec;
    return 0;
}
