/* test_register_fixture.h: helpers shared by the registration tests: a tailnet, users and
 * pre-auth keys, RegisterRequest bodies in v1.34.2 and current shapes, answers as JSON. */
#ifndef TEST_REGISTER_FIXTURE_H
#define TEST_REGISTER_FIXTURE_H

#include "test_store_fixture.h"
#include "ts_register.h"
#include <jansson.h>

/* Keys of the recorded sessions (spec/examples): client-a, client-b, client-c. */
#define MKEY_A "ab0df76c029e312f69b9affef05f875671fc30d867fd703b6fc77e022da76b7a"
#define MKEY_B "bb3089cf2bb3d21bb013c84467712c7c84ccd310f0ced004daa1f351e7e0884b"
#define MKEY_C "784ff5ea7e46cb25ff4db4557466572741b52fde3d4e19b7c2ae0ca1c378fd02"
#define NKEY_A "nodekey:aec00352f7f0f4b9fec546f8cad27559f3355710c27e62f17a634ddc89839239"
#define NKEY_B "nodekey:2aa63182f5f289a1a139023242b2835f0da74bed9351d3bbaf8e518acae2a755"
#define NKEY_C "nodekey:ec67f14ebf48c190c855dede2ee01974dab79f82cf0ac0be544cb9d003762f40"
#define ZERO_NODEKEY "nodekey:0000000000000000000000000000000000000000000000000000000000000000"
#define GO_ZERO_TIME "0001-01-01T00:00:00Z"
#define LOGOUT_TIME "1970-01-01T00:02:03Z"

FX_UNUSED static ts_tailnet_conf_t rx_conf(void)
{
    ts_tailnet_conf_t c;

    memset(&c, 0, sizeof(c));
    c.server_url = "https://ctl.example.net";
    c.base_domain = "tail.example.net";
    c.ipv4_prefix = "100.64.0.0/10";
    c.ipv6_prefix = "fd7a:115c:a1e0::/48";
    c.registration_ttl = apr_time_from_sec(900);
    c.min_capver = 32;
    return c;
}

FX_UNUSED static const uint8_t *rx_mkey(apr_pool_t *p, const char *hex)
{
    uint8_t *k = apr_palloc(p, TS_KEY_LEN);

    assert_int_equal(ts_hex_decode(k, TS_KEY_LEN, hex, strlen(hex)), 0);
    return k;
}

/* A machine key of the fx_key kind (last byte n). */
FX_UNUSED static const uint8_t *rx_mkey_n(apr_pool_t *p, int n)
{
    return rx_mkey(p, fx_key(p, "", n));
}

FX_UNUSED static apr_int64_t rx_gen(fx_t *fx)
{
    apr_int64_t g = -1;
    const char *err = NULL;

    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    return g;
}

FX_UNUSED static ts_user_t *rx_user(fx_t *fx, const char *name)
{
    ts_user_t *u = apr_pcalloc(fx->pool, sizeof(*u));
    const char *err = NULL;

    u->name = name;
    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, u, &err));
    return u;
}

/* A pre-auth key; returns the text a user would pass to --authkey. */
FX_UNUSED static const char *rx_key(fx_t *fx, apr_int64_t user_id, int reusable,
                                    int ephemeral, const char *tags, ts_preauth_key_t **out)
{
    ts_preauth_key_t *k = apr_pcalloc(fx->pool, sizeof(*k));
    const char *prefix, *secret, *text, *err = NULL;

    assert_int_equal(ts_register_key_generate(fx->pool, &prefix, &secret, &text), 0);
    k->prefix = prefix;
    k->user_id = user_id;
    k->reusable = reusable;
    k->ephemeral = ephemeral;
    k->tags = tags;
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_create(fx->st, fx->pool, k, secret, &err));
    if (out) {
        *out = k;
    }
    return text;
}

/* A RegisterRequest as v1.34.2 sends it (the Auth object is always there). */
FX_UNUSED static const char *rx_req51(apr_pool_t *p, const char *node_key, const char *old_key,
                                      const char *auth_key, const char *login,
                                      const char *expiry, const char *followup,
                                      const char *hostname)
{
    return apr_psprintf(p,
        "{\"Version\":51,\"NodeKey\":\"%s\",\"OldNodeKey\":\"%s\","
        "\"NLKey\":\"nlpub:273400570acd83366daa3549b8f40e9687f684df0813806d615c453ca452bfc0\","
        "\"Auth\":{\"Provider\":\"\",\"LoginName\":\"%s\",\"Oauth2Token\":null,"
        "\"AuthKey\":\"%s\"},\"Expiry\":\"%s\",\"Followup\":\"%s\","
        "\"Hostinfo\":{\"IPNVersion\":\"1.34.2-tc5ef9103d\",\"BackendLogID\":"
        "\"b4869fe6d30d179efc867c61055234a908b1d098a9dbe909cb046e469b9dc1a0\",\"OS\":\"linux\","
        "\"OSVersion\":\"6.18.44-fc-v657\",\"Container\":true,\"Distro\":\"debian\","
        "\"DistroVersion\":\"12.11\",\"DistroCodeName\":\"bookworm\",\"Desktop\":false,"
        "\"Hostname\":\"%s\",\"NoLogsNoSupport\":true,\"GoArch\":\"amd64\","
        "\"GoVersion\":\"go1.19.8\",\"Userspace\":true,\"UserspaceRouter\":true},"
        "\"NodeKeySignature\":null}",
        node_key, old_key ? old_key : ZERO_NODEKEY, login ? login : "",
        auth_key ? auth_key : "", expiry ? expiry : GO_ZERO_TIME, followup ? followup : "",
        hostname);
}

/* The same from a current client: Auth only with a key, Tailnet hint, no Timestamp. */
FX_UNUSED static const char *rx_req145(apr_pool_t *p, const char *node_key,
                                       const char *old_key, const char *auth_key,
                                       const char *expiry, const char *hostname,
                                       const char *extra_hostinfo)
{
    return apr_psprintf(p,
        "{\"Version\":145,\"NodeKey\":\"%s\",\"OldNodeKey\":\"%s\","
        "\"NLKey\":\"nlpub:691a20dd50e9e51e338c366098f16247af902674e330211831bde6366aa3c982\","
        "%s%s%s\"Expiry\":\"%s\",\"Followup\":\"\",\"Tailnet\":\"\","
        "\"Hostinfo\":{\"IPNVersion\":\"1.96.0\",\"BackendLogID\":\"abc\",\"OS\":\"linux\","
        "\"Hostname\":\"%s\"%s},\"NodeKeySignature\":null}",
        node_key, old_key ? old_key : ZERO_NODEKEY, auth_key ? "\"Auth\":{\"AuthKey\":\"" : "",
        auth_key ? auth_key : "", auth_key ? "\"}," : "", expiry ? expiry : GO_ZERO_TIME,
        hostname, extra_hostinfo ? extra_hostinfo : "");
}

/* Runs a request; the answer must be a 200 RegisterResponse, returned as JSON. */
FX_UNUSED static json_t *rx_call(fx_t *fx, const ts_tailnet_conf_t *conf, const uint8_t *mkey,
                                 const char *body, ts_register_result_t *res)
{
    ts_register_result_t local;
    json_error_t jerr;
    json_t *j;

    res = res ? res : &local;
    assert_int_equal(ts_register_handle(fx->st, fx->pool, conf, mkey, body, strlen(body), res),
                     APR_SUCCESS);
    if (res->status != 200 || res->outcome != TS_REGISTER_ANSWER) {
        fail_msg("status %d outcome %d: %s", res->status, res->outcome, res->body);
    }
    assert_string_equal(res->content_type, "application/json");
    j = json_loads(res->body, 0, &jerr);
    assert_non_null(j);
    return j;
}

FX_UNUSED static const char *rx_str(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);

    if (path2) {
        v = json_object_get(v, path2);
    }
    return json_is_string(v) ? json_string_value(v) : NULL;
}

FX_UNUSED static json_int_t rx_int(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);

    if (path2) {
        v = json_object_get(v, path2);
    }
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

FX_UNUSED static int rx_bool(json_t *j, const char *name)
{
    json_t *v = json_object_get(j, name);

    assert_true(json_is_boolean(v));
    return json_is_true(v);
}

/* The answer is a client-visible Error with exactly this text, and nothing else happened. */
FX_UNUSED static void rx_expect_error(fx_t *fx, const ts_tailnet_conf_t *conf,
                                      const uint8_t *mkey, const char *body, const char *msg)
{
    apr_int64_t before = rx_gen(fx);
    ts_register_result_t res;
    json_t *j = rx_call(fx, conf, mkey, body, &res);

    assert_string_equal(rx_str(j, "Error", NULL), msg);
    assert_false(rx_bool(j, "MachineAuthorized"));
    assert_string_equal(rx_str(j, "AuthURL", NULL), "");
    assert_false(res.changed);
    assert_int_equal(rx_gen(fx), before);
    json_decref(j);
}

/* The success shape of spec 1.2 for a user (or the tagged-devices user when u is NULL). */
FX_UNUSED static void rx_expect_success(json_t *j, const ts_user_t *u)
{
    assert_string_equal(rx_str(j, "Error", NULL), "");
    assert_string_equal(rx_str(j, "AuthURL", NULL), "");
    assert_true(rx_bool(j, "MachineAuthorized"));
    assert_false(rx_bool(j, "NodeKeyExpired"));
    assert_int_equal(rx_int(j, "User", "ID"), u ? u->id : TS_TAGGED_USER_ID);
    assert_int_equal(rx_int(j, "Login", "ID"), u ? u->id : TS_TAGGED_USER_ID);
    assert_string_equal(rx_str(j, "Login", "LoginName"), u ? u->name : "tagged-devices");
    assert_null(json_object_get(j, "NodeKeySignature"));
}

FX_UNUSED static ts_node_t *rx_node(fx_t *fx, const char *node_key)
{
    ts_node_t *n = NULL;
    const char *err = NULL;

    ASSERT_RV(APR_SUCCESS, ts_store_node_get_by_node_key(fx->st, fx->pool, node_key, &n, &err));
    return n;
}

#endif
