/* ts2021ctl.c: the admin command line: users, pre-auth keys and nodes of a mod_ts2021
 * database, reached over plain apr_dbd with the same store code the module uses. */
#include "ts2021ctl.h"
#include "ts_routes.h"
#include "ts_register.h"
#include "ts_names.h"
#include "ts_admin.h"

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- output ---- */

int ctl_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII);

    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(j);
    return 0;
}

static const char *time_text(apr_pool_t *p, apr_time_t t, const char *none)
{
    apr_time_exp_t tm;

    if (!t) {
        return none;
    }
    apr_time_exp_gmt(&tm, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static json_t *json_time(apr_pool_t *p, apr_time_t t)
{
    return t ? json_string(time_text(p, t, "")) : json_null();
}

static json_t *json_text(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Rows of equal length; the first is the heading. Columns padded to the widest cell. */
static void print_table(apr_array_header_t *rows, int ncols)
{
    int w[16] = { 0 }, i, c;

    for (i = 0; i < rows->nelts; i++) {
        for (c = 0; c < ncols; c++) {
            int len = (int)strlen(APR_ARRAY_IDX(rows, i, const char **)[c]);
            w[c] = len > w[c] ? len : w[c];
        }
    }
    for (i = 0; i < rows->nelts; i++) {
        for (c = 0; c < ncols; c++) {
            const char *cell = APR_ARRAY_IDX(rows, i, const char **)[c];
            if (c + 1 < ncols) {
                printf("%-*s  ", w[c], cell);
            }
            else {
                printf("%s\n", cell);
            }
        }
    }
}

static const char **row_new(apr_array_header_t *rows, int ncols)
{
    const char **r = apr_pcalloc(rows->pool, sizeof(char *) * (apr_size_t)ncols);

    APR_ARRAY_PUSH(rows, const char **) = r;
    return r;
}

/* ---- arguments ---- */

static int want_args(ctl_t *c, int n, const char *usage)
{
    if (c->args->nelts != n) {
        return ctl_fail(EXIT_USAGE, "usage: ts2021ctl %s %s %s", c->group, c->verb, usage);
    }
    return 0;
}

static const char *arg(ctl_t *c, int i)
{
    return APR_ARRAY_IDX(c->args, i, const char *);
}

static int is_number(const char *s)
{
    return s && *s && strspn(s, "0123456789") == strlen(s);
}

static int find_user(ctl_t *c, const char *which, ts_user_t **u)
{
    const char *err = NULL;
    apr_status_t rv = is_number(which)
        ? ts_store_user_get(c->st, c->p, apr_atoi64(which), u, &err)
        : ts_store_user_get_by_name(c->st, c->p, which, u, &err);

    if (rv == TS_STORE_ENOTFOUND) return ctl_fail(1, "no user '%s'", which);
    return rv == APR_SUCCESS ? 0 : ctl_fail(1, "%s", err);
}

static int find_node(ctl_t *c, const char *which, ts_node_t **n)
{
    const char *err = NULL;
    apr_status_t rv = is_number(which)
        ? ts_store_node_get(c->st, c->p, apr_atoi64(which), n, &err)
        : ts_store_node_get_by_given_name(c->st, c->p, which, n, &err);

    if (rv == TS_STORE_ENOTFOUND) return ctl_fail(1, "no node '%s'", which);
    return rv == APR_SUCCESS ? 0 : ctl_fail(1, "%s", err);
}

static int find_key(ctl_t *c, const char *which, ts_preauth_key_t **k)
{
    const char *err = NULL, *prefix = which, *secret;
    apr_status_t rv;

    if (ts_register_key_parse(c->p, which, &prefix, &secret) != 0) {
        prefix = which;
    }
    rv = is_number(which) ? ts_store_preauth_key_get(c->st, c->p, apr_atoi64(which), k, &err)
                          : ts_store_preauth_key_get_by_prefix(c->st, c->p, prefix, k, &err);
    if (rv == TS_STORE_ENOTFOUND) return ctl_fail(1, "no pre-auth key '%s'", which);
    return rv == APR_SUCCESS ? 0 : ctl_fail(1, "%s", err);
}

static const char *user_name(ctl_t *c, apr_int64_t id)
{
    ts_user_t *u = NULL;
    const char *err = NULL;

    if (!id) return NULL;
    return ts_store_user_get(c->st, c->p, id, &u, &err) == APR_SUCCESS ? u->name
           : apr_psprintf(c->p, "%" APR_INT64_T_FMT, id);
}

static const char *tags_text(apr_pool_t *p, const char *tags_json)
{
    json_t *j = tags_json ? json_loads(tags_json, 0, NULL) : NULL, *v;
    const char *out = "";
    size_t i;

    json_array_foreach(j, i, v) {
        out = apr_pstrcat(p, out, *out ? "," : "", json_string_value(v) ?
                          json_string_value(v) : "", NULL);
    }
    json_decref(j);
    return out;
}

static json_t *tags_json(const char *tags)
{
    json_t *j = tags ? json_loads(tags, 0, NULL) : NULL;

    return json_is_array(j) ? j : (json_decref(j), json_array());
}

/* ---- users ---- */

static json_t *user_json(ctl_t *c, const ts_user_t *u)
{
    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:o}", "id", (json_int_t)u->id, "name",
                     u->name, "display_name", json_text(u->display_name), "email",
                     json_text(u->email), "provider", json_text(u->provider), "created",
                     json_time(c->p, u->created_at));
}

static int cmd_users_create(ctl_t *c)
{
    ts_user_t u;
    const char *err = NULL;
    apr_status_t rv;

    if (want_args(c, 1, "NAME [--display-name TEXT] [--email ADDRESS]")) return EXIT_USAGE;
    memset(&u, 0, sizeof(u));
    u.name = arg(c, 0);
    u.display_name = ctl_opt(c, "display-name");
    u.email = ctl_opt(c, "email");
    if (is_number(u.name)) {
        return ctl_fail(EXIT_USAGE, "a user name must not be a number ('%s')", u.name);
    }
    rv = ts_store_user_create(c->st, c->p, &u, &err);
    if (rv == TS_STORE_ECONFLICT) return ctl_fail(1, "user '%s' already exists", u.name);
    if (rv != APR_SUCCESS) return ctl_fail(rv == APR_EINVAL ? EXIT_USAGE : 1, "%s", err);
    if (c->json) return ctl_print_json(user_json(c, &u));
    printf("user '%s' created (id %" APR_INT64_T_FMT ")\n", u.name, u.id);
    return 0;
}

static int cmd_users_list(ctl_t *c)
{
    apr_array_header_t *users, *rows = apr_array_make(c->p, 8, sizeof(char **));
    const char *err = NULL, **r;
    json_t *out = json_array();
    int i;

    if (want_args(c, 0, "")) return EXIT_USAGE;
    if (ts_store_user_list(c->st, c->p, &users, &err) != APR_SUCCESS) return ctl_fail(1, "%s", err);
    r = row_new(rows, 5);
    r[0] = "ID", r[1] = "NAME", r[2] = "DISPLAY NAME", r[3] = "EMAIL", r[4] = "CREATED";
    for (i = 0; i < users->nelts; i++) {
        ts_user_t *u = APR_ARRAY_IDX(users, i, ts_user_t *);
        json_array_append_new(out, user_json(c, u));
        r = row_new(rows, 5);
        r[0] = apr_psprintf(c->p, "%" APR_INT64_T_FMT, u->id);
        r[1] = u->name;
        r[2] = u->display_name ? u->display_name : "";
        r[3] = u->email ? u->email : "";
        r[4] = time_text(c->p, u->created_at, "");
    }
    if (c->json) return ctl_print_json(out);
    json_decref(out);
    print_table(rows, 5);
    return 0;
}

static int cmd_users_rename(ctl_t *c)
{
    ts_user_t *u;
    const char *err = NULL, *old;
    apr_status_t rv;
    int code;

    if (want_args(c, 2, "NAME|ID NEW-NAME")) return EXIT_USAGE;
    if ((code = find_user(c, arg(c, 0), &u)) != 0) return code;
    if (is_number(arg(c, 1))) {
        return ctl_fail(EXIT_USAGE, "a user name must not be a number ('%s')", arg(c, 1));
    }
    old = u->name;
    u->name = arg(c, 1);
    rv = ts_store_user_update(c->st, c->p, u, &err);
    if (rv == TS_STORE_ECONFLICT) return ctl_fail(1, "user '%s' already exists", u->name);
    if (rv != APR_SUCCESS) return ctl_fail(rv == APR_EINVAL ? EXIT_USAGE : 1, "%s", err);
    if (c->json) return ctl_print_json(user_json(c, u));
    printf("user '%s' renamed to '%s'\n", old, u->name);
    return 0;
}

static int cmd_users_delete(ctl_t *c)
{
    ts_user_t *u;
    apr_array_header_t *nodes;
    const char *err = NULL;
    int code;

    if (want_args(c, 1, "NAME|ID [--force]")) return EXIT_USAGE;
    if ((code = find_user(c, arg(c, 0), &u)) != 0) return code;
    if (ts_store_node_list_by_user(c->st, c->p, u->id, &nodes, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (nodes->nelts && !ctl_opt(c, "force")) {
        return ctl_fail(1, "user '%s' has %d node(s); --force deletes them with the user", u->name,
                    nodes->nelts);
    }
    if (ts_store_user_delete(c->st, c->p, u->id, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (c->json) {
        return ctl_print_json(json_pack("{s:I, s:s, s:i}", "deleted", (json_int_t)u->id, "name",
                                    u->name, "nodes_deleted", nodes->nelts));
    }
    printf("user '%s' deleted (%d node(s) with it)\n", u->name, nodes->nelts);
    return 0;
}

/* ---- pre-auth keys ---- */

static json_t *key_json(ctl_t *c, const ts_preauth_key_t *k)
{
    return json_pack("{s:I, s:s, s:o, s:o, s:b, s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:s}",
                     "id", (json_int_t)k->id, "prefix", k->prefix,
                     "user", json_text(user_name(c, k->user_id)),
                     "user_id", k->user_id ? json_integer(k->user_id) : json_null(),
                     "reusable", k->reusable, "ephemeral", k->ephemeral, "used", k->used,
                     "tags", tags_json(k->tags), "expiration", json_time(c->p, k->expiration),
                     "revoked", json_time(c->p, k->revoked),
                     "created", json_time(c->p, k->created_at),
                     "description", json_text(k->description),
                     "status", ts_store_preauth_key_status(k, apr_time_now()));
}

/* --tags tag:a,tag:b as a JSON array text; NULL and a message if one is malformed. */
static const char *parse_tags(ctl_t *c, const char *list)
{
    json_t *arr = json_array();
    char *copy = apr_pstrdup(c->p, list), *last, *t;
    const char *out;
    char *s;

    for (t = apr_strtok(copy, ", ", &last); t; t = apr_strtok(NULL, ", ", &last)) {
        if (!ts_register_tag_valid(t)) {
            json_decref(arr);
            ctl_fail(EXIT_USAGE, "--tags: '%s' is not a tag (tag:NAME, NAME a letter then "
                 "letters, digits or '-')", t);
            return NULL;
        }
        json_array_append_new(arr, json_string(t));
    }
    s = json_dumps(arr, JSON_COMPACT);
    out = apr_pstrdup(c->p, s);
    free(s);
    json_decref(arr);
    return out;
}

static int cmd_keys_create(ctl_t *c)
{
    ts_preauth_key_t k;
    ts_user_t *u = NULL;
    const char *secret, *text, *err = NULL, *exp = ctl_opt(c, "expiration");
    apr_interval_time_t ttl = exp ? ctl_parse_duration(exp) : apr_time_from_sec(3600);
    int code;

    if (want_args(c, 0, "--user USER [--reusable] [--ephemeral] [--expiration DURATION] "
                  "[--tags tag:a,tag:b] [--description TEXT]")) return EXIT_USAGE;
    if (ttl < 0) return ctl_fail(EXIT_USAGE, "--expiration: '%s' is not a duration (1h, 90d)", exp);
    if (!ctl_opt(c, "user") && !ctl_opt(c, "tags")) {
        return ctl_fail(EXIT_USAGE, "a pre-auth key needs --user, --tags, or both");
    }
    memset(&k, 0, sizeof(k));
    if (ctl_opt(c, "user") && (code = find_user(c, ctl_opt(c, "user"), &u)) != 0) return code;
    if (ctl_opt(c, "tags") && !(k.tags = parse_tags(c, ctl_opt(c, "tags")))) return EXIT_USAGE;
    k.user_id = u ? u->id : 0;
    k.reusable = ctl_opt(c, "reusable") != NULL;
    k.ephemeral = ctl_opt(c, "ephemeral") != NULL;
    k.expiration = ttl ? apr_time_now() + ttl : 0;
    k.description = ctl_opt(c, "description");
    if (ts_register_key_generate(c->p, &k.prefix, &secret, &text) != APR_SUCCESS) {
        return ctl_fail(1, "cannot generate a key (libsodium)");
    }
    if (ts_store_preauth_key_create(c->st, c->p, &k, secret, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (c->json) {
        json_t *j = key_json(c, &k);
        json_object_set_new(j, "key", json_string(text));
        return ctl_print_json(j);
    }
    printf("%s\n", text);
    fprintf(stderr, "pre-auth key %" APR_INT64_T_FMT " created; it is shown only this once\n",
            k.id);
    return 0;
}

static int cmd_keys_list(ctl_t *c)
{
    apr_array_header_t *keys, *rows = apr_array_make(c->p, 8, sizeof(char **));
    const char *err = NULL, **r;
    ts_user_t *u = NULL;
    json_t *out = json_array();
    int i, code;

    if (want_args(c, 0, "[--user USER]")) return EXIT_USAGE;
    if (ctl_opt(c, "user") && (code = find_user(c, ctl_opt(c, "user"), &u)) != 0) return code;
    if (ts_store_preauth_key_list(c->st, c->p, u ? u->id : 0, &keys, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    r = row_new(rows, 8);
    r[0] = "ID", r[1] = "PREFIX", r[2] = "USER", r[3] = "REUSABLE", r[4] = "EPHEMERAL";
    r[5] = "TAGS", r[6] = "EXPIRATION", r[7] = "STATUS";
    for (i = 0; i < keys->nelts; i++) {
        ts_preauth_key_t *k = APR_ARRAY_IDX(keys, i, ts_preauth_key_t *);
        json_array_append_new(out, key_json(c, k));
        r = row_new(rows, 8);
        r[0] = apr_psprintf(c->p, "%" APR_INT64_T_FMT, k->id);
        r[1] = k->prefix;
        r[2] = k->user_id ? user_name(c, k->user_id) : "-";
        r[3] = k->reusable ? "yes" : "no";
        r[4] = k->ephemeral ? "yes" : "no";
        r[5] = tags_text(c->p, k->tags);
        r[6] = time_text(c->p, k->expiration, "never");
        r[7] = ts_store_preauth_key_status(k, apr_time_now());
    }
    if (c->json) return ctl_print_json(out);
    json_decref(out);
    print_table(rows, 8);
    return 0;
}

static int cmd_keys_expire(ctl_t *c)
{
    ts_preauth_key_t *k;
    const char *err = NULL;
    apr_time_t now = apr_time_now();
    int code;

    if (want_args(c, 1, "ID|PREFIX")) return EXIT_USAGE;
    if ((code = find_key(c, arg(c, 0), &k)) != 0) return code;
    if (!k->expiration || k->expiration > now) {
        k->expiration = now;
        if (ts_store_preauth_key_update(c->st, c->p, k, &err) != APR_SUCCESS) {
            return ctl_fail(1, "%s", err);
        }
    }
    if (c->json) return ctl_print_json(key_json(c, k));
    printf("pre-auth key %" APR_INT64_T_FMT " (%s) expired at %s\n", k->id, k->prefix,
           time_text(c->p, k->expiration, ""));
    return 0;
}

/* ---- admin API keys ---- */

static json_t *apikey_json(ctl_t *c, const ts_api_key_t *k)
{
    apr_time_t now = apr_time_now();

    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:s}", "id", (json_int_t)k->id,
                     "prefix", k->prefix, "expiration", json_time(c->p, k->expiration),
                     "last_seen", json_time(c->p, k->last_seen),
                     "created", json_time(c->p, k->created_at),
                     "status", k->expiration && k->expiration <= now ? "expired" : "valid");
}

static int cmd_apikeys_create(ctl_t *c)
{
    ts_api_key_t k;
    const char *secret, *text, *err = NULL, *exp = ctl_opt(c, "expiration");
    apr_interval_time_t ttl = exp ? ctl_parse_duration(exp) : apr_time_from_sec(90 * 86400);

    if (want_args(c, 0, "[--expiration DURATION]")) return EXIT_USAGE;
    if (ttl < 0) return ctl_fail(EXIT_USAGE, "--expiration: '%s' is not a duration (1h, 90d)", exp);
    memset(&k, 0, sizeof(k));
    k.expiration = ttl ? apr_time_now() + ttl : 0;
    if (ts_admin_apikey_generate(c->p, &k.prefix, &secret, &text) != APR_SUCCESS) {
        return ctl_fail(1, "cannot generate a key (libsodium)");
    }
    if (ts_store_api_key_create(c->st, c->p, &k, secret, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (c->json) {
        json_t *j = apikey_json(c, &k);
        json_object_set_new(j, "key", json_string(text));
        return ctl_print_json(j);
    }
    printf("%s\n", text);
    fprintf(stderr, "API key %" APR_INT64_T_FMT " created; it is shown only this once\n", k.id);
    return 0;
}

static int cmd_apikeys_list(ctl_t *c)
{
    apr_array_header_t *keys, *rows = apr_array_make(c->p, 8, sizeof(char **));
    const char *err = NULL, **r;
    json_t *out = json_array();
    int i;

    if (want_args(c, 0, "")) return EXIT_USAGE;
    if (ts_store_api_key_list(c->st, c->p, &keys, &err) != APR_SUCCESS) {
        json_decref(out);
        return ctl_fail(1, "%s", err);
    }
    r = row_new(rows, 5);
    r[0] = "ID", r[1] = "PREFIX", r[2] = "EXPIRATION", r[3] = "LAST SEEN", r[4] = "STATUS";
    for (i = 0; i < keys->nelts; i++) {
        ts_api_key_t *k = APR_ARRAY_IDX(keys, i, ts_api_key_t *);
        json_array_append_new(out, apikey_json(c, k));
        r = row_new(rows, 5);
        r[0] = apr_psprintf(c->p, "%" APR_INT64_T_FMT, k->id);
        r[1] = k->prefix;
        r[2] = time_text(c->p, k->expiration, "never");
        r[3] = time_text(c->p, k->last_seen, "never");
        r[4] = k->expiration && k->expiration <= apr_time_now() ? "expired" : "valid";
    }
    if (c->json) return ctl_print_json(out);
    json_decref(out);
    print_table(rows, 5);
    return 0;
}

static int cmd_apikeys_expire(ctl_t *c)
{
    apr_array_header_t *keys;
    ts_api_key_t *k = NULL;
    const char *err = NULL, *which;
    apr_time_t now = apr_time_now();
    int i;

    if (want_args(c, 1, "ID|PREFIX")) return EXIT_USAGE;
    which = arg(c, 0);
    if (ts_store_api_key_list(c->st, c->p, &keys, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    for (i = 0; i < keys->nelts && !k; i++) {
        ts_api_key_t *x = APR_ARRAY_IDX(keys, i, ts_api_key_t *);
        if ((is_number(which) && x->id == apr_atoi64(which)) || !strcmp(x->prefix, which)) k = x;
    }
    if (!k) return ctl_fail(1, "no API key '%s'", which);
    if (!k->expiration || k->expiration > now) {
        k->expiration = now;
        if (ts_store_api_key_update(c->st, c->p, k, &err) != APR_SUCCESS) {
            return ctl_fail(1, "%s", err);
        }
    }
    if (c->json) return ctl_print_json(apikey_json(c, k));
    printf("API key %" APR_INT64_T_FMT " (%s) expired at %s\n", k->id, k->prefix,
           time_text(c->p, k->expiration, ""));
    return 0;
}

/* ---- nodes ---- */

static json_t *node_json(ctl_t *c, const ts_node_t *n)
{
    apr_time_t now = apr_time_now();

    return json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:o, s:b, "
                     "s:o, s:b, s:o, s:o}",
                     "id", (json_int_t)n->id, "name", n->given_name,
                     "fqdn", ts_names_fqdn(c->p, n->given_name, c->conf.base_domain),
                     "hostname", json_text(n->hostname),
                     "user", json_text(user_name(c, n->user_id)),
                     "user_id", n->user_id ? json_integer(n->user_id) : json_null(),
                     "tags", tags_json(n->tags), "ipv4", json_text(n->ipv4),
                     "ipv6", json_text(n->ipv6), "machine_key", n->machine_key,
                     "node_key", n->node_key, "expiry", json_time(c->p, n->expiry),
                     "expired", ts_register_node_expired(n, now),
                     "last_seen", json_time(c->p, n->last_seen), "ephemeral", n->ephemeral,
                     "register_method", json_text(n->register_method),
                     "created", json_time(c->p, n->created_at));
}

static const char *expiry_text(ctl_t *c, const ts_node_t *n)
{
    if (ts_register_node_expired(n, apr_time_now())) {
        return apr_pstrcat(c->p, "expired ", time_text(c->p, n->expiry, ""), NULL);
    }
    return time_text(c->p, n->expiry, "never");
}

static void node_row(ctl_t *c, apr_array_header_t *rows, const ts_node_t *n)
{
    const char **r = row_new(rows, 9);

    r[0] = apr_psprintf(c->p, "%" APR_INT64_T_FMT, n->id);
    r[1] = n->given_name;
    r[2] = n->hostname ? n->hostname : "";
    r[3] = n->user_id ? user_name(c, n->user_id) : "(tagged)";
    r[4] = tags_text(c->p, n->tags);
    r[5] = n->ipv4 ? n->ipv4 : "";
    r[6] = n->ipv6 ? n->ipv6 : "";
    r[7] = expiry_text(c, n);
    r[8] = time_text(c->p, n->last_seen, "never");
}

static int cmd_nodes_list(ctl_t *c)
{
    apr_array_header_t *nodes, *rows = apr_array_make(c->p, 8, sizeof(char **));
    const char *err = NULL, **r;
    ts_user_t *u = NULL;
    json_t *out = json_array();
    apr_status_t rv;
    int i, code;

    if (want_args(c, 0, "[--user USER]")) return EXIT_USAGE;
    if (ctl_opt(c, "user") && (code = find_user(c, ctl_opt(c, "user"), &u)) != 0) return code;
    rv = u ? ts_store_node_list_by_user(c->st, c->p, u->id, &nodes, &err)
           : ts_store_node_list(c->st, c->p, &nodes, &err);
    if (rv != APR_SUCCESS) return ctl_fail(1, "%s", err);
    r = row_new(rows, 9);
    r[0] = "ID", r[1] = "NAME", r[2] = "HOSTNAME", r[3] = "USER", r[4] = "TAGS";
    r[5] = "IPV4", r[6] = "IPV6", r[7] = "EXPIRY", r[8] = "LAST SEEN";
    for (i = 0; i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        json_array_append_new(out, node_json(c, n));
        node_row(c, rows, n);
    }
    if (c->json) return ctl_print_json(out);
    json_decref(out);
    print_table(rows, 9);
    return 0;
}

/* One node in detail: "field  value" lines, or JSON with its routes and Hostinfo. */
static int show_node(ctl_t *c, const ts_node_t *n)
{
    apr_array_header_t *routes, *rows = apr_array_make(c->p, 24, sizeof(char **));
    json_t *j = node_json(c, n), *rj = json_array(), *hi;
    const char *err = NULL, *key;
    void *iter;
    int i;

    if (ts_store_node_routes_get(c->st, c->p, n->id, &routes, &err) != APR_SUCCESS) {
        json_decref(j);
        json_decref(rj);
        return ctl_fail(1, "%s", err);
    }
    for (i = 0; i < routes->nelts; i++) {
        ts_route_t *r = &APR_ARRAY_IDX(routes, i, ts_route_t);
        json_array_append_new(rj, json_pack("{s:s, s:b, s:b}", "prefix", r->prefix,
                                            "advertised", r->advertised,
                                            "approved", r->approved));
    }
    json_object_set_new(j, "routes", rj);
    hi = n->host_info ? json_loads(n->host_info, 0, NULL) : NULL;
    json_object_set_new(j, "hostinfo", hi ? hi : json_null());
    if (c->json) return ctl_print_json(j);
    json_object_foreach(j, key, iter) {
        const char **r = row_new(rows, 2);
        char *s = json_is_string((json_t *)iter) ? NULL
                : json_dumps((json_t *)iter, JSON_COMPACT | JSON_ENCODE_ANY);
        r[0] = key;
        r[1] = s ? apr_pstrdup(c->p, s) : json_string_value((json_t *)iter);
        free(s);
    }
    print_table(rows, 2);
    json_decref(j);
    return 0;
}

static int cmd_nodes_show(ctl_t *c)
{
    ts_node_t *n;
    int code;

    if (want_args(c, 1, "ID|NAME")) return EXIT_USAGE;
    if ((code = find_node(c, arg(c, 0), &n)) != 0) return code;
    return show_node(c, n);
}

static int node_update(ctl_t *c, ts_node_t *n, const char *what)
{
    const char *err = NULL;
    apr_status_t rv = ts_store_node_update(c->st, c->p, n, &err);

    if (rv == TS_STORE_ECONFLICT && strstr(err, "given_name")) {
        return ctl_fail(1, "name '%s' is taken by another node", n->given_name);
    }
    if (rv != APR_SUCCESS) return ctl_fail(1, "%s", err);
    if (c->json) return ctl_print_json(node_json(c, n));
    printf("node %" APR_INT64_T_FMT " '%s' %s\n", n->id, n->given_name, what);
    return 0;
}

static int cmd_nodes_expire(ctl_t *c)
{
    ts_node_t *n;
    apr_time_t now = apr_time_now();
    int code;

    if (want_args(c, 1, "ID|NAME")) return EXIT_USAGE;
    if ((code = find_node(c, arg(c, 0), &n)) != 0) return code;
    if (ts_register_node_expired(n, now)) {
        if (c->json) return ctl_print_json(node_json(c, n));
        printf("node %" APR_INT64_T_FMT " '%s' had already expired\n", n->id, n->given_name);
        return 0;
    }
    n->expiry = now;
    return node_update(c, n, "expired: its client must log in again");
}

static int cmd_nodes_rename(ctl_t *c)
{
    ts_node_t *n;
    const char *err = NULL;
    int code;

    if (want_args(c, 2, "ID|NAME NEW-NAME")) return EXIT_USAGE;
    if ((code = find_node(c, arg(c, 0), &n)) != 0) return code;
    if (ts_names_check(c->p, arg(c, 1), c->conf.base_domain, &err) != APR_SUCCESS) {
        return ctl_fail(EXIT_USAGE, "%s", err);
    }
    n->given_name = arg(c, 1);
    return node_update(c, n, apr_psprintf(c->p, "renamed (%s)",
                                          ts_names_fqdn(c->p, n->given_name,
                                                        c->conf.base_domain)));
}

static int cmd_nodes_delete(ctl_t *c)
{
    ts_node_t *n;
    const char *err = NULL;
    int code;

    if (want_args(c, 1, "ID|NAME")) return EXIT_USAGE;
    if ((code = find_node(c, arg(c, 0), &n)) != 0) return code;
    if (ts_store_node_delete(c->st, c->p, n->id, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (c->json) {
        return ctl_print_json(json_pack("{s:I, s:s}", "deleted", (json_int_t)n->id, "name",
                                    n->given_name));
    }
    printf("node %" APR_INT64_T_FMT " '%s' deleted\n", n->id, n->given_name);
    return 0;
}

static int cmd_nodes_register(ctl_t *c)
{
    ts_user_t *u;
    ts_node_t *n;
    apr_int64_t node_id = 0;
    const char *err = NULL;
    int code;

    if (want_args(c, 1, "AUTH-ID --user USER")) return EXIT_USAGE;
    if (!ctl_opt(c, "user")) return ctl_fail(EXIT_USAGE, "nodes register needs --user USER");
    if (!ts_register_auth_id_valid(arg(c, 0))) {
        return ctl_fail(EXIT_USAGE, "'%s' is not a registration id (%s and 32 hex digits, the end "
                    "of the URL the client shows)", arg(c, 0), TS_REGISTER_AUTH_ID_PREFIX);
    }
    if ((code = find_user(c, ctl_opt(c, "user"), &u)) != 0) return code;
    if (ts_register_approve(c->st, c->p, &c->conf, arg(c, 0), u->id, &node_id, &err)
        != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if ((code = find_node(c, apr_psprintf(c->p, "%" APR_INT64_T_FMT, node_id), &n)) != 0) {
        return code;
    }
    if (c->json) return ctl_print_json(node_json(c, n));
    printf("node %" APR_INT64_T_FMT " '%s' registered for user '%s' (%s %s)\n", n->id,
           n->given_name, u->name, n->ipv4 ? n->ipv4 : "", n->ipv6 ? n->ipv6 : "");
    return 0;
}

static int cmd_nodes_reject(ctl_t *c)
{
    const char *err = NULL;

    if (want_args(c, 1, "AUTH-ID [--reason TEXT]")) return EXIT_USAGE;
    if (ts_register_reject(c->st, c->p, arg(c, 0), ctl_opt(c, "reason"), &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (c->json) return ctl_print_json(json_pack("{s:s}", "rejected", arg(c, 0)));
    printf("registration %s rejected\n", arg(c, 0));
    return 0;
}

/* ---- routes ---- */

static json_t *route_json(const ts_node_t *n, const ts_route_t *r)
{
    return json_pack("{s:I, s:s, s:s, s:b, s:b, s:b}", "node_id", (json_int_t)n->id, "node",
                     n->given_name, "prefix", r->prefix, "advertised", r->advertised,
                     "approved", r->approved, "exit", ts_routes_is_exit(r->prefix));
}

static void route_row(apr_array_header_t *rows, const ts_node_t *n, const ts_route_t *r,
                      apr_pool_t *p)
{
    const char **row = row_new(rows, 6);

    row[0] = apr_psprintf(p, "%" APR_INT64_T_FMT, n->id);
    row[1] = n->given_name;
    row[2] = r->prefix;
    row[3] = r->advertised ? "yes" : "no";
    row[4] = r->approved ? "yes" : "no";
    /* Served: advertised and approved; which router is primary is decided by the servers
     * from who is online (see docs/control.md). */
    row[5] = r->advertised && r->approved ? (ts_routes_is_exit(r->prefix) ? "exit" : "subnet")
                                          : "-";
}

static int cmd_routes_list(ctl_t *c)
{
    apr_array_header_t *nodes, *rows = apr_array_make(c->p, 8, sizeof(char **));
    const char *err = NULL, **r;
    json_t *out = json_array();
    ts_node_t *one = NULL;
    int i, k, code;

    if (want_args(c, 0, "[--node ID|NAME]")) return EXIT_USAGE;
    if (ctl_opt(c, "node")) {
        if ((code = find_node(c, ctl_opt(c, "node"), &one)) != 0) return code;
        nodes = apr_array_make(c->p, 1, sizeof(ts_node_t *));
        APR_ARRAY_PUSH(nodes, ts_node_t *) = one;
    }
    else if (ts_store_node_list(c->st, c->p, &nodes, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    r = row_new(rows, 6);
    r[0] = "NODE ID", r[1] = "NODE", r[2] = "PREFIX", r[3] = "ADVERTISED", r[4] = "APPROVED";
    r[5] = "SERVED";
    for (i = 0; i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        apr_array_header_t *routes;

        if (ts_store_node_routes_get(c->st, c->p, n->id, &routes, &err) != APR_SUCCESS) {
            json_decref(out);
            return ctl_fail(1, "%s", err);
        }
        for (k = 0; k < routes->nelts; k++) {
            ts_route_t *rt = &APR_ARRAY_IDX(routes, k, ts_route_t);

            json_array_append_new(out, route_json(n, rt));
            route_row(rows, n, rt, c->p);
        }
    }
    if (c->json) return ctl_print_json(out);
    json_decref(out);
    print_table(rows, 6);
    return 0;
}

static int routes_approve(ctl_t *c, int approved)
{
    apr_array_header_t *cur, *next, *prefixes = apr_array_make(c->p, 4, sizeof(const char *));
    const char *err = NULL;
    ts_node_t *n;
    json_t *out;
    int i, code, changed;

    if (c->args->nelts < 2) {
        return ctl_fail(EXIT_USAGE, "usage: ts2021ctl routes %s ID|NAME PREFIX [PREFIX...]",
                        c->verb);
    }
    for (i = 1; i < c->args->nelts; i++) {
        const char *pfx = ts_routes_canonical(c->p, arg(c, i), &err);

        if (!pfx) return ctl_fail(EXIT_USAGE, "%s", err);
        APR_ARRAY_PUSH(prefixes, const char *) = pfx;
    }
    if ((code = find_node(c, arg(c, 0), &n)) != 0) return code;
    if (ts_store_node_routes_get(c->st, c->p, n->id, &cur, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    next = ts_routes_set_approved(c->p, cur, prefixes, approved, &changed);
    if (changed && ts_store_node_routes_set(c->st, c->p, n->id, next, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (c->json) {
        out = json_array();
        for (i = 0; i < next->nelts; i++)
            json_array_append_new(out, route_json(n, &APR_ARRAY_IDX(next, i, ts_route_t)));
        return ctl_print_json(out);
    }
    for (i = 0; i < prefixes->nelts; i++) {
        const char *pfx = APR_ARRAY_IDX(prefixes, i, const char *);
        int advertised = 0, k;

        for (k = 0; k < next->nelts; k++) {
            const ts_route_t *r = &APR_ARRAY_IDX(next, k, ts_route_t);
            if (!strcmp(r->prefix, pfx)) advertised = r->advertised;
        }
        printf("node %" APR_INT64_T_FMT " '%s': %s %s%s\n", n->id, n->given_name, pfx,
               approved ? "approved" : "no longer approved",
               approved && !advertised ? " (not advertised yet: served once the node "
                                         "advertises it)" : "");
    }
    if (!changed) printf("(nothing changed)\n");
    return 0;
}

static int cmd_routes_approve(ctl_t *c)
{
    return routes_approve(c, 1);
}

static int cmd_routes_unapprove(ctl_t *c)
{
    return routes_approve(c, 0);
}

/* nodes tag: the admin sets a node's tags (no tagOwners check: the admin owns every tag).
 * A tagged node belongs to its tags (no user, no key expiry); clearing the tags needs the
 * user who owns the node from then on. */
static int cmd_nodes_tag(ctl_t *c)
{
    ts_node_t *n;
    ts_user_t *u = NULL;
    const char *tags = ctl_opt(c, "tags");
    int code;

    if (want_args(c, 1, "ID|NAME --tags tag:a,tag:b | --tags '' --user USER")) return EXIT_USAGE;
    if (!tags) return ctl_fail(EXIT_USAGE, "nodes tag needs --tags (empty to clear)");
    if ((code = find_node(c, arg(c, 0), &n)) != 0) return code;
    if (*tags) {
        if (!(tags = parse_tags(c, tags))) return EXIT_USAGE;
        if (ctl_opt(c, "user")) return ctl_fail(EXIT_USAGE, "a tagged node has no user: "
                                                "--user goes with --tags '' only");
        n->tags = tags;
        n->user_id = 0;
        n->expiry = 0;
        return node_update(c, n, apr_psprintf(c->p, "tagged %s", tags_text(c->p, tags)));
    }
    if (!ctl_opt(c, "user")) {
        return ctl_fail(EXIT_USAGE, "clearing the tags gives the node back to a user: "
                        "add --user USER");
    }
    if ((code = find_user(c, ctl_opt(c, "user"), &u)) != 0) return code;
    n->tags = NULL;
    n->user_id = u->id;
    return node_update(c, n, apr_psprintf(c->p, "untagged, owned by '%s'", u->name));
}

/* ---- commands ---- */

typedef struct {
    const char *group, *verb;
    int (*fn)(ctl_t *c);
    const char *usage;
    const char *help;
    const char *opts[8];
} cmd_def_t;

static const cmd_def_t COMMANDS[] = {
    { "users", "create", cmd_users_create, "NAME [--display-name TEXT] [--email ADDRESS]",
      "Creates a local user.", { "display-name", "email" } },
    { "users", "list", cmd_users_list, "", "Lists users.", { NULL } },
    { "users", "rename", cmd_users_rename, "NAME|ID NEW-NAME", "Renames a user.", { NULL } },
    { "users", "delete", cmd_users_delete, "NAME|ID [--force]",
      "Deletes a user; --force is needed when the user still has nodes, which are deleted "
      "too. The user's pre-auth keys stay, without a user.", { "force" } },
    { "preauthkeys", "create", cmd_keys_create,
      "--user USER [--reusable] [--ephemeral] [--expiration DURATION] [--tags tag:a,tag:b] "
      "[--description TEXT]",
      "Creates a pre-auth key and prints it, once (only its hash is stored). Default "
      "expiration 1h; 0 means never. With --tags the nodes are tagged (owned by no user, "
      "never expiring); --user may then be left out.",
      { "user", "reusable", "ephemeral", "expiration", "tags", "description" } },
    { "preauthkeys", "list", cmd_keys_list, "[--user USER]",
      "Lists pre-auth keys (never their secrets).", { "user" } },
    { "preauthkeys", "expire", cmd_keys_expire, "ID|PREFIX",
      "Makes a pre-auth key expire now.", { NULL } },
    { "apikeys", "create", cmd_apikeys_create, "[--expiration DURATION]",
      "Creates an admin API key (Authorization: Bearer, see docs/admin.md) and prints it, "
      "once (only its hash is stored). Default expiration 90d; 0 means never.",
      { "expiration" } },
    { "apikeys", "list", cmd_apikeys_list, "", "Lists admin API keys (never their secrets).",
      { NULL } },
    { "apikeys", "expire", cmd_apikeys_expire, "ID|PREFIX", "Makes an admin API key expire now.",
      { NULL } },
    { "nodes", "list", cmd_nodes_list, "[--user USER]", "Lists nodes.", { "user" } },
    { "nodes", "show", cmd_nodes_show, "ID|NAME",
      "Shows one node with its keys, routes and Hostinfo.", { NULL } },
    { "nodes", "expire", cmd_nodes_expire, "ID|NAME",
      "Expires a node's key now: its client must log in again.", { NULL } },
    { "nodes", "rename", cmd_nodes_rename, "ID|NAME NEW-NAME",
      "Gives a node a new MagicDNS name (a DNS label: a-z, 0-9, '-').", { NULL } },
    { "nodes", "delete", cmd_nodes_delete, "ID|NAME", "Deletes a node.", { NULL } },
    { "nodes", "register", cmd_nodes_register, "AUTH-ID --user USER",
      "Approves an interactive login: AUTH-ID is the end of the URL the client shows "
      "(https://SERVER/register/AUTH-ID).", { "user" } },
    { "nodes", "reject", cmd_nodes_reject, "AUTH-ID [--reason TEXT]",
      "Refuses an interactive login; the client shows the reason.", { "reason" } },
    { "nodes", "tag", cmd_nodes_tag, "ID|NAME --tags tag:a,tag:b | --tags '' --user USER",
      "Sets a node's tags (it then belongs to them: no user, no expiry), or clears them and "
      "gives the node to USER.", { "tags", "user" } },
    { "routes", "list", cmd_routes_list, "[--node ID|NAME]",
      "Lists advertised and approved routes.", { "node" } },
    { "routes", "approve", cmd_routes_approve, "ID|NAME PREFIX [PREFIX...]",
      "Approves routes of a node (0.0.0.0/0 or ::/0: the node as exit node, both families).",
      { NULL } },
    { "routes", "unapprove", cmd_routes_unapprove, "ID|NAME PREFIX [PREFIX...]",
      "Withdraws route approvals.", { NULL } },
    { "policy", "get", ctl_cmd_policy_get, "",
      "Prints the policy in force: the database's newest, or with --apache-config the file "
      "its vhost names with TS2021PolicyFile.", { NULL } },
    { "policy", "check", ctl_cmd_policy_check, "FILE",
      "Checks a policy (HuJSON; '-' reads standard input): parsed, compiled against the "
      "tailnet in the database, its tests and sshTests run. Errors name the line.", { NULL } },
    { "policy", "set", ctl_cmd_policy_set, "FILE",
      "Checks the policy as 'check' does, then stores it (in force at once) and approves the "
      "routes its autoApprovers allow. A refused policy is not written. With --apache-config "
      "naming a vhost that uses TS2021PolicyFile, refused (edit that file instead).",
      { NULL } },
    { NULL, NULL, NULL, NULL, NULL, { NULL } }
};

static int usage(FILE *out, const char *group, int code)
{
    int i;

    fprintf(out, "usage: ts2021ctl [options] %s COMMAND [arguments]\n\n",
            group ? group : "users|preauthkeys|apikeys|nodes|routes|policy");
    for (i = 0; COMMANDS[i].group; i++) {
        if (!group || !strcmp(group, COMMANDS[i].group)) {
            fprintf(out, "  %s %s%s%s\n", COMMANDS[i].group, COMMANDS[i].verb,
                    *COMMANDS[i].usage ? " " : "", COMMANDS[i].usage);
        }
    }
    fprintf(out, "\n%s\n'ts2021ctl GROUP COMMAND --help' describes one command.\n",
            CTL_GLOBAL_HELP);
    return code;
}

static int command_help(const cmd_def_t *d)
{
    printf("usage: ts2021ctl %s %s%s%s\n\n%s\n\n%s", d->group, d->verb, *d->usage ? " " : "",
           d->usage, d->help, CTL_GLOBAL_HELP);
    return 0;
}

static int run(ctl_t *c, apr_array_header_t *words)
{
    const cmd_def_t *d = NULL;
    int i, code;

    c->group = words->nelts > 0 ? APR_ARRAY_IDX(words, 0, const char *) : NULL;
    c->verb = words->nelts > 1 ? APR_ARRAY_IDX(words, 1, const char *) : NULL;
    for (i = 0; COMMANDS[i].group && c->group; i++) {
        if (!strcmp(c->group, COMMANDS[i].group) && c->verb
            && !strcmp(c->verb, COMMANDS[i].verb)) {
            d = &COMMANDS[i];
        }
    }
    if (!d) {
        int known_group = 0;
        for (i = 0; COMMANDS[i].group && c->group; i++) {
            known_group |= !strcmp(c->group, COMMANDS[i].group);
        }
        if (ctl_opt(c, "help") && (!c->group || known_group) && !c->verb) {
            return usage(stdout, known_group ? c->group : NULL, 0);
        }
        if (c->group) {
            ctl_fail(EXIT_USAGE, "unknown command '%s%s%s'", c->group, c->verb ? " " : "",
                 c->verb ? c->verb : "");
        }
        return usage(stderr, known_group ? c->group : NULL, EXIT_USAGE);
    }
    if (ctl_opt(c, "help")) {
        return command_help(d);
    }
    c->args = apr_array_make(c->p, 2, sizeof(char *));
    for (i = 2; i < words->nelts; i++) {
        APR_ARRAY_PUSH(c->args, const char *) = APR_ARRAY_IDX(words, i, const char *);
    }
    if ((code = ctl_check_opts(c, d->opts)) != 0 || (code = ctl_open_db(c)) != 0) {
        return code;
    }
    return d->fn(c);
}

int main(int argc, const char *const *argv)
{
    apr_array_header_t *words;
    apr_pool_t *p;
    ctl_t c;
    int code;

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS) {
        return ctl_fail(1, "cannot initialise APR");
    }
    apr_pool_create(&p, NULL);
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.opts = apr_hash_make(p);
    words = apr_array_make(p, 4, sizeof(char *));
    code = ctl_parse_argv(&c, argc, argv, words);
    if (code == 0) {
        c.json = ctl_opt(&c, "json") != NULL;
        code = run(&c, words);
    }
    if (c.st) {
        ts_store_close(c.st);
    }
    apr_pool_destroy(p);
    apr_terminate();
    return code;
}
