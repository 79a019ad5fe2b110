/* test_map_fixture.h: helpers shared by the map view tests: rows with defaults, a view with the
 * tailnet settings of control API 2.8, JSON access by path, and delta shortcuts. */
#ifndef TEST_MAP_FIXTURE_H
#define TEST_MAP_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "ts_map.h"

static apr_pool_t *pool;   /* the test program's, created in main */

/* 2026-08-22T12:00:00Z, the ControlTime of control API 2.8 */
#define NOW ((apr_time_t)1787400000 * APR_USEC_PER_SEC)
#define HOUR ((apr_time_t)3600 * APR_USEC_PER_SEC)

/* ---- helpers ---- */

static inline const char *key(const char *prefix, char c)
{
    char hex[65];

    memset(hex, c, 64);
    hex[64] = '\0';
    return apr_pstrcat(pool, prefix, hex, NULL);
}

/* A user node with defaults; tests override fields. */
static inline ts_node_t *node(apr_int64_t id, const char *name, apr_int64_t user)
{
    ts_node_t *n = apr_pcalloc(pool, sizeof(*n));
    char c = "0123456789abcdef"[id % 16];

    n->id = id;
    n->given_name = name;
    n->user_id = user;
    n->node_key = key("nodekey:", c);
    n->machine_key = key("mkey:", c);
    n->disco_key = key("discokey:", c);
    n->ipv4 = apr_psprintf(pool, "100.64.%d.%d", (int)(id / 256), (int)(id % 256));
    n->ipv6 = apr_psprintf(pool, "fd7a:115c:a1e0::%x", (unsigned)id);
    n->host_info = apr_psprintf(pool, "{\"OS\":\"linux\",\"Hostname\":\"%s\","
                                "\"NetInfo\":{\"PreferredDERP\":900}}", name);
    n->endpoints = apr_psprintf(pool, "[\"198.51.100.%d:41641\"]", (int)(id % 250) + 1);
    n->cap_version = 145;
    n->created_at = NOW - 24 * HOUR;
    return n;
}

static inline apr_array_header_t *routes(const char *prefix, int advertised, int approved)
{
    apr_array_header_t *a = apr_array_make(pool, 2, sizeof(ts_route_t));
    ts_route_t *r = apr_array_push(a);

    r->prefix = prefix;
    r->advertised = advertised;
    r->approved = approved;
    return a;
}

static inline void add_route(apr_array_header_t *a, const char *prefix, int adv, int appr)
{
    ts_route_t *r = apr_array_push(a);

    r->prefix = prefix;
    r->advertised = adv;
    r->approved = appr;
}

static inline void upsert(ts_map_t *m, const ts_node_t *n, const apr_array_header_t *r)
{
    const char *err = NULL;
    apr_status_t rv = ts_map_node_upsert(m, n, r, pool, &err);

    if (rv) fail_msg("upsert %d: %s", (int)n->id, err);
}

static inline void user(ts_map_t *m, apr_int64_t id, const char *name, const char *email,
                 const char *display)
{
    ts_user_t u = { 0 };

    u.id = id;
    u.name = name;
    u.email = email;
    u.display_name = display;
    assert_int_equal(ts_map_user_upsert(m, &u), APR_SUCCESS);
}

#define DERP_900 \
    "{\"Regions\":{\"900\":{\"RegionID\":900,\"RegionCode\":\"ctl\",\"RegionName\":" \
    "\"Example DERP\",\"Nodes\":[{\"Name\":\"900a\",\"RegionID\":900,\"HostName\":" \
    "\"derp.example.net\",\"IPv4\":\"203.0.113.10\",\"STUNPort\":3478,\"DERPPort\":443}]}}}"

static inline ts_map_t *new_map(void)
{
    ts_tailnet_conf_t conf = { 0 };
    const char *err = NULL;
    ts_map_t *m;

    conf.server_url = "https://ctl.example.net";
    conf.base_domain = "tail.example.net";
    conf.magic_dns = 1;
    conf.dns_config_json = "{\"Resolvers\":[{\"Addr\":\"1.1.1.1\"}]}";
    assert_int_equal(ts_map_create(&m, pool), APR_SUCCESS);
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_SUCCESS);
    ts_map_set_derpmap(m, DERP_900, strlen(DERP_900));
    return m;
}

static inline json_t *parse(const char *json, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);

    if (!j) fail_msg("bad JSON (%s): %.*s", je.text, (int)len, json);
    return j;
}

static inline json_t *full(ts_map_t *m, apr_int64_t viewer, apr_time_t now)
{
    const char *err = NULL;
    apr_size_t len;
    char *json;

    assert_int_equal(ts_map_full(m, viewer, now, pool, &json, &len, &err), APR_SUCCESS);
    assert_int_equal(strlen(json), len);
    return parse(json, len);
}

static inline json_t *delta_for(const ts_map_delta_t *d, apr_int64_t viewer)
{
    const char *json;
    apr_size_t len;

    assert_int_equal(ts_map_delta_json(d, viewer, pool, &json, &len), APR_SUCCESS);
    return parse(json, len);
}

/* Builds the next delta, which must exist; the caller unrefs. */
static inline ts_map_delta_t *delta(ts_map_t *m, apr_time_t now)
{
    ts_map_delta_t *d = NULL;

    assert_int_equal(ts_map_delta_build(m, now, NULL, &d), APR_SUCCESS);
    assert_non_null(d);
    return d;
}

static inline void no_delta(ts_map_t *m, apr_time_t now)
{
    ts_map_delta_t *d = (ts_map_delta_t *)1;

    assert_int_equal(ts_map_delta_build(m, now, NULL, &d), APR_NOTFOUND);
    assert_null(d);
}

static inline json_t *get(json_t *o, const char *path)
{
    char *p = apr_pstrdup(pool, path), *tok, *last;

    for (tok = apr_strtok(p, ".", &last); tok && o; tok = apr_strtok(NULL, ".", &last)) {
        if (json_is_array(o)) o = json_array_get(o, (size_t)atoi(tok));
        else o = json_object_get(o, tok);
    }
    return o;
}

static inline const char *str(json_t *o, const char *path)
{
    return json_string_value(get(o, path));
}

static inline json_int_t num(json_t *o, const char *path)
{
    return json_integer_value(get(o, path));
}

static inline void assert_json(json_t *got, const char *expected)
{
    json_t *e = parse(expected, strlen(expected));

    if (!json_equal(got, e)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got %s\nwant %s", g ? g : "(null)", expected);
    }
    json_decref(e);
}

/* Array of strings as one comma-joined string, sorted or as is. */
static inline const char *strings(json_t *a, int sorted)
{
    const char *v[64];
    size_t i, j, n = json_array_size(a);
    char *out = "";

    assert_true(n < 64);
    for (i = 0; i < n; i++) v[i] = json_string_value(json_array_get(a, i));
    for (i = 0; sorted && i < n; i++)
        for (j = i + 1; j < n; j++)
            if (strcmp(v[j], v[i]) < 0) {
                const char *t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    for (i = 0; i < n; i++) out = apr_pstrcat(pool, out, i ? "," : "", v[i], NULL);
    return out;
}


/* Compiles policy text against the view (users alice = 1 and bob = 2) and installs it;
 * NULL: no policy. */
static inline void install(ts_map_t *m, const char *text)
{
    static const ts_policy_user_t users[] = {
        { 1, "alice", "alice@example.net", 0, 0 },
        { 2, "bob", "bob@example.net", 0, 0 },
    };
    static const apr_int64_t user_ids[] = { 1, 2 };
    ts_map_pol_inputs_t in;
    ts_policy_tailnet_t tn;
    ts_policy_t *pol;
    ts_policy_result_t *res;
    ts_map_pol_t *mp;
    const char *err = NULL;
    apr_pool_t *p;

    if (!text) {
        ts_map_set_policy(m, NULL);
        return;
    }
    apr_pool_create(&p, pool);
    ts_map_policy_inputs(m, p, user_ids, 2, &in);
    memset(&tn, 0, sizeof(tn));
    tn.users = users;
    tn.nusers = 2;
    tn.nodes = in.nodes;
    tn.nnodes = in.nnodes;
    tn.control_url = "https://ctl.example.net";
    if (ts_policy_parse(p, text, strlen(text), &pol, &err)
        || ts_policy_compile(p, pol, &tn, &res, &err))
        fail_msg("policy: %s", err);
    assert_int_equal(ts_map_pol_prepare(res, &in, &mp), APR_SUCCESS);
    apr_pool_destroy(p);            /* the prepared form owns what it needs */
    ts_map_set_policy(m, mp);
}


#endif
