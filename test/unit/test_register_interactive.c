/* test_register_interactive.c: cmocka tests of interactive registration on sqlite3 and
 * MariaDB: AuthURL, held Followups, approval and rejection, expiry, rotation, conversions. */
#include "test_register_fixture.h"

#define URL_PREFIX "https://ctl.example.net/register/tsreg-"

/* An AuthURL answer; returns the auth id. */
static const char *expect_auth_url(fx_t *fx, json_t *j)
{
    const char *url = rx_str(j, "AuthURL", NULL);

    assert_non_null(url);
    assert_int_equal(strncmp(url, URL_PREFIX, strlen(URL_PREFIX)), 0);
    assert_false(rx_bool(j, "MachineAuthorized"));
    assert_false(rx_bool(j, "NodeKeyExpired"));
    assert_string_equal(rx_str(j, "Error", NULL), "");
    assert_null(json_object_get(j, "User"));
    return apr_pstrdup(fx->pool, strrchr(url, '/') + 1);
}

static const char *start(fx_t *fx, const ts_tailnet_conf_t *conf, const uint8_t *m,
                         const char *body)
{
    ts_register_result_t res;
    json_t *j = rx_call(fx, conf, m, body, &res);
    const char *id = expect_auth_url(fx, j);

    assert_true(res.changed);
    json_decref(j);
    return id;
}

static void expect_pending(fx_t *fx, const ts_tailnet_conf_t *conf, const uint8_t *m,
                           const char *body, const char *recheck_id, const char *auth_id)
{
    ts_register_result_t res;
    apr_int64_t before = rx_gen(fx);

    if (recheck_id) {
        assert_int_equal(ts_register_recheck(fx->st, fx->pool, conf, m, body, strlen(body),
                                             recheck_id, &res), APR_SUCCESS);
    }
    else {
        assert_int_equal(ts_register_handle(fx->st, fx->pool, conf, m, body, strlen(body),
                                            &res), APR_SUCCESS);
    }
    assert_int_equal(res.outcome, TS_REGISTER_PENDING);
    assert_string_equal(res.auth_id, auth_id);
    assert_true(res.wait_until > apr_time_now());
    assert_int_equal(res.status, 503);          /* the answer if the wait must end early */
    assert_non_null(strstr(res.body, auth_id));
    assert_false(res.changed);
    assert_int_equal(rx_gen(fx), before);
}

static const char *followup(fx_t *fx, const char *auth_id)
{
    return apr_pstrcat(fx->pool, "https://ctl.example.net/register/", auth_id, NULL);
}

/* Scenario e of the recordings, with the approval coming from ts2021ctl. */
static void test_interactive_v51(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *demo = rx_user(fx, "demo");
    const uint8_t *m = rx_mkey(fx->pool, MKEY_C);
    const char *id, *fu, *err = NULL;
    ts_register_result_t res;
    ts_registration_t *r = NULL;
    apr_int64_t node_id = 0, before;
    ts_node_t *n;
    json_t *j;

    conf.node_expiry = apr_time_from_sec(86400);
    id = start(fx, &conf, m, rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "client-c"));
    assert_true(ts_register_auth_id_valid(id));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, id, &r, &err));
    assert_int_equal(r->state, TS_REG_PENDING);
    assert_string_equal(r->machine_key, "mkey:" MKEY_C);
    assert_string_equal(r->node_key, NKEY_C);
    assert_null(r->old_node_key);
    assert_non_null(strstr(r->hostinfo, "client-c"));
    assert_true(r->expires_at > apr_time_now() + apr_time_from_sec(890));
    assert_int_equal(fx_count(fx, "nodes"), 0);

    fu = rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, followup(fx, id), "client-c");
    expect_pending(fx, &conf, m, fu, NULL, id);
    expect_pending(fx, &conf, m, fu, id, id);

    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, demo->id, &node_id,
                                               &err));
    n = rx_node(fx, NKEY_C);
    assert_int_equal(n->id, node_id);
    assert_int_equal(n->user_id, demo->id);
    assert_string_equal(n->given_name, "client-c");
    assert_string_equal(n->ipv4, "100.64.0.1");
    assert_string_equal(n->register_method, "cli");
    assert_true(n->expiry > apr_time_now() + apr_time_from_sec(86000));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, id, &r, &err));
    assert_int_equal(r->state, TS_REG_APPROVED);
    assert_int_equal(r->node_id, node_id);

    /* the held request, woken: success; and every later Followup too, writing nothing */
    before = rx_gen(fx);
    assert_int_equal(ts_register_recheck(fx->st, fx->pool, &conf, m, fu, strlen(fu), id, &res),
                     APR_SUCCESS);
    assert_int_equal(res.outcome, TS_REGISTER_ANSWER);
    assert_int_equal(res.status, 200);
    j = json_loads(res.body, 0, NULL);
    rx_expect_success(j, demo);
    json_decref(j);
    j = rx_call(fx, &conf, m, fu, &res);
    rx_expect_success(j, demo);
    json_decref(j);
    assert_int_equal(rx_gen(fx), before);
    ASSERT_RV(TS_STORE_ECONFLICT, ts_register_approve(fx->st, fx->pool, &conf, id, demo->id,
                                                      &node_id, &err));
    assert_non_null(strstr(err, "already approved"));
    assert_int_equal(rx_gen(fx), before);
}

static void test_interactive_current_client(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *u = rx_user(fx, "alice");
    const uint8_t *m = rx_mkey_n(fx->pool, 5);
    apr_time_t soon = apr_time_now() + apr_time_from_sec(7200);
    const char *id, *err = NULL;
    apr_int64_t node_id;
    ts_node_t *n;

    /* no Auth at all, a requested expiry and Ephemeral: both kept for the approval */
    id = start(fx, &conf, m, apr_pstrcat(fx->pool, "{\"Ephemeral\":true,",
                                         rx_req145(fx->pool, NKEY_A, NULL, NULL,
                                                   ts_time_rfc3339(fx->pool, soon), "Laptop",
                                                   NULL) + 1, NULL));
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, u->id, &node_id,
                                               &err));
    n = rx_node(fx, NKEY_A);
    assert_int_equal(n->expiry, soon);
    assert_true(n->ephemeral);
    assert_string_equal(n->given_name, "laptop");
    assert_string_equal(n->hostname, "Laptop");
}

static void test_interactive_reject(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    const uint8_t *m = rx_mkey(fx->pool, MKEY_C);
    const char *id, *fu, *err = NULL;
    ts_register_result_t res;
    apr_int64_t before;
    json_t *j;

    id = start(fx, &conf, m, rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "client-c"));
    fu = rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, followup(fx, id), "client-c");
    ASSERT_RV(APR_SUCCESS, ts_register_reject(fx->st, fx->pool, id, "not on this tailnet",
                                              &err));
    before = rx_gen(fx);
    assert_int_equal(ts_register_recheck(fx->st, fx->pool, &conf, m, fu, strlen(fu), id, &res),
                     APR_SUCCESS);
    j = json_loads(res.body, 0, NULL);
    assert_string_equal(rx_str(j, "Error", NULL), "not on this tailnet");
    json_decref(j);
    assert_int_equal(rx_gen(fx), before);
    ASSERT_RV(TS_STORE_ECONFLICT, ts_register_reject(fx->st, fx->pool, id, NULL, &err));
    /* the default reason */
    id = start(fx, &conf, m, rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "client-c"));
    ASSERT_RV(APR_SUCCESS, ts_register_reject(fx->st, fx->pool, id, NULL, &err));
    rx_expect_error(fx, &conf, m, rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL,
                                           followup(fx, id), "client-c"),
                    "registration rejected by an administrator");
    assert_int_equal(fx_count(fx, "nodes"), 0);
}

/* Only a lapsed entry earns a fresh URL; approving it is refused. */
static void test_interactive_expired(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *u = rx_user(fx, "demo");
    const uint8_t *m = rx_mkey(fx->pool, MKEY_C);
    const char *id, *id2, *fu, *err = NULL;
    ts_register_result_t res;
    apr_int64_t node_id = 0, before;
    json_t *j;

    id = start(fx, &conf, m, rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "client-c"));
    fu = rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, followup(fx, id), "client-c");
    fx_exec(fx, apr_psprintf(fx->pool, "UPDATE registration_requests SET expires_at = %"
                             APR_INT64_T_FMT " WHERE auth_id = '%s'",
                             apr_time_now() - 1000, id));
    before = rx_gen(fx);
    ASSERT_RV(TS_STORE_ECONFLICT, ts_register_approve(fx->st, fx->pool, &conf, id, u->id,
                                                      &node_id, &err));
    assert_non_null(strstr(err, "expired"));
    assert_int_equal(rx_gen(fx), before);
    /* the waiter rechecks: a new URL (and the lapsed entry is swept on the way) */
    assert_int_equal(ts_register_recheck(fx->st, fx->pool, &conf, m, fu, strlen(fu), id, &res),
                     APR_SUCCESS);
    assert_int_equal(res.outcome, TS_REGISTER_ANSWER);
    j = json_loads(res.body, 0, NULL);
    id2 = expect_auth_url(fx, j);
    json_decref(j);
    assert_string_not_equal(id, id2);
    assert_int_equal(fx_count(fx, "registration_requests"), 1);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_register_approve(fx->st, fx->pool, &conf, id, u->id,
                                                      &node_id, &err));
}

/* A Followup naming someone else's entry, or no valid entry, starts the client's own. */
static void test_followup_not_ours(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    const uint8_t *ma = rx_mkey(fx->pool, MKEY_A), *mb = rx_mkey(fx->pool, MKEY_B);
    const char *id, *mine;
    const char *bad[] = { "https://ctl.example.net/register/nodekey:abc", "garbage",
                          "https://ctl.example.net/register/tsreg-0123456789abcdef0123456789"
                          "abcdef" };
    size_t i;

    id = start(fx, &conf, ma, rx_req51(fx->pool, NKEY_A, NULL, "", "", NULL, NULL, "a"));
    mine = start(fx, &conf, mb, rx_req51(fx->pool, NKEY_B, NULL, "", "", NULL,
                                         followup(fx, id), "b"));
    assert_string_not_equal(mine, id);
    /* the same machine but another node key is not the entry's client either */
    assert_string_not_equal(start(fx, &conf, ma, rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL,
                                                          followup(fx, id), "a")), id);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        start(fx, &conf, mb, rx_req51(fx->pool, NKEY_B, NULL, "", "", NULL, bad[i], "b"));
    }
    /* a recheck on someone else's id decides afresh instead of waiting on it */
    {
        ts_register_result_t res;
        const char *body = rx_req51(fx->pool, NKEY_B, NULL, "", "", NULL, NULL, "b");
        assert_int_equal(ts_register_recheck(fx->st, fx->pool, &conf, mb, body, strlen(body),
                                             id, &res), APR_SUCCESS);
        assert_int_equal(res.outcome, TS_REGISTER_ANSWER);
    }
}

/* --force-reauth: a new key with OldNodeKey, approved for the same user, keeps the node. */
static void test_interactive_rotation(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *u = rx_user(fx, "demo");
    const char *key = rx_key(fx, u->id, 1, 0, NULL, NULL), *id, *err = NULL;
    const uint8_t *m = rx_mkey(fx->pool, MKEY_A);
    ts_registration_t *r = NULL;
    apr_int64_t node_id = 0, old_id;
    ts_node_t *n = NULL;

    json_decref(rx_call(fx, &conf, m, rx_req51(fx->pool, NKEY_A, NULL, key, NULL, NULL, NULL,
                                               "client-a"), NULL));
    old_id = rx_node(fx, NKEY_A)->id;
    id = start(fx, &conf, m, rx_req51(fx->pool, NKEY_B, NKEY_A, "", "demo", NULL, NULL,
                                      "client-a"));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, id, &r, &err));
    assert_string_equal(r->old_node_key, NKEY_A);
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, u->id, &node_id,
                                               &err));
    assert_int_equal(node_id, old_id);
    assert_string_equal(rx_node(fx, NKEY_B)->ipv4, "100.64.0.1");
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_get_by_node_key(fx->st, fx->pool, NKEY_A, &n,
                                                                &err));
    assert_int_equal(fx_count(fx, "nodes"), 1);
}

/* Approval of a tagged node's re-login converts it; another user gets a node of its own. */
static void test_approve_converts_tagged_and_splits_users(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *alice = rx_user(fx, "alice"), *bob = rx_user(fx, "bob");
    const char *tagkey = rx_key(fx, alice->id, 1, 0, "[\"tag:ci\"]", NULL);
    const char *akey = rx_key(fx, alice->id, 1, 0, NULL, NULL), *id, *err = NULL;
    const uint8_t *m = rx_mkey_n(fx->pool, 3), *m2 = rx_mkey_n(fx->pool, 4);
    apr_int64_t node_id = 0, tagged_id;
    ts_node_t *n;

    conf.node_expiry = apr_time_from_sec(3600);
    json_decref(rx_call(fx, &conf, m, rx_req145(fx->pool, NKEY_A, NULL, tagkey, NULL, "ci",
                                                NULL), NULL));
    tagged_id = rx_node(fx, NKEY_A)->id;
    id = start(fx, &conf, m, rx_req145(fx->pool, NKEY_B, NKEY_A, NULL, NULL, "ci", NULL));
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, bob->id, &node_id,
                                               &err));
    n = rx_node(fx, NKEY_B);
    assert_int_equal(n->id, tagged_id);
    assert_int_equal(n->user_id, bob->id);
    assert_null(n->tags);
    assert_true(n->expiry > apr_time_now());

    /* machine 2: alice's node by key; bob logs in with a new key: a second node */
    json_decref(rx_call(fx, &conf, m2, rx_req145(fx->pool, NKEY_C, NULL, akey, NULL, "desk",
                                                 NULL), NULL));
    id = start(fx, &conf, m2, rx_req145(fx->pool, fx_key(fx->pool, "nodekey:", 77), NULL,
                                        NULL, NULL, "desk", NULL));
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, bob->id, &node_id,
                                               &err));
    assert_int_not_equal(node_id, rx_node(fx, NKEY_C)->id);
    assert_string_equal(rx_node(fx, fx_key(fx->pool, "nodekey:", 77))->given_name, "desk-1");
    /* ... and alice again with yet another key: her existing node is updated */
    id = start(fx, &conf, m2, rx_req145(fx->pool, fx_key(fx->pool, "nodekey:", 78), NULL,
                                        NULL, NULL, "desk", NULL));
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, alice->id,
                                               &node_id, &err));
    assert_int_equal(rx_node(fx, fx_key(fx->pool, "nodekey:", 78))->id, node_id);
    assert_string_equal(rx_node(fx, fx_key(fx->pool, "nodekey:", 78))->given_name, "desk");
    assert_int_equal(fx_count(fx, "nodes"), 3);
}

static void test_approve_errors_write_nothing(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *u = rx_user(fx, "demo");
    const char *key = rx_key(fx, u->id, 1, 0, NULL, NULL), *id, *err = NULL;
    ts_registration_t r;
    apr_int64_t node_id = 0, before;

    json_decref(rx_call(fx, &conf, rx_mkey(fx->pool, MKEY_A),
                        rx_req51(fx->pool, NKEY_A, NULL, key, NULL, NULL, NULL, "a"), NULL));
    id = start(fx, &conf, rx_mkey(fx->pool, MKEY_C),
               rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "c"));
    before = rx_gen(fx);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_register_approve(fx->st, fx->pool, &conf,
                                                      "tsreg-00000000000000000000000000000000",
                                                      u->id, &node_id, &err));
    assert_non_null(strstr(err, "no registration"));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_register_approve(fx->st, fx->pool, &conf, id, 999,
                                                      &node_id, &err));
    assert_non_null(strstr(err, "user 999 not found"));
    /* a pending entry for a node key that another machine registered since */
    memset(&r, 0, sizeof(r));
    r.auth_id = "tsreg-11111111111111111111111111111111";
    r.machine_key = "mkey:" MKEY_B;
    r.node_key = NKEY_A;
    r.expires_at = apr_time_now() + apr_time_from_sec(60);
    ASSERT_RV(APR_SUCCESS, ts_store_registration_create(fx->st, fx->pool, &r, &err));
    before = rx_gen(fx);
    ASSERT_RV(APR_EACCES, ts_register_approve(fx->st, fx->pool, &conf, r.auth_id, u->id,
                                              &node_id, &err));
    assert_non_null(strstr(err, "another machine"));
    assert_int_equal(node_id, 0);
    /* a failure inside the node's transaction */
    ts_store_test_fail_at(fx->st, "node_insert", 1);
    ASSERT_RV(TS_STORE_EFAULT, ts_register_approve(fx->st, fx->pool, &conf, id, u->id,
                                                   &node_id, &err));
    ts_store_test_fail_at(fx->st, NULL, 0);
    assert_int_equal(rx_gen(fx), before);
    assert_int_equal(fx_count(fx, "nodes"), 1);
    /* interactive start with another machine's old key is refused, as is the waiting */
    rx_expect_error(fx, &conf, rx_mkey(fx->pool, MKEY_B),
                    rx_req51(fx->pool, NKEY_B, NKEY_A, "", "", NULL, NULL, "b"),
                    "node exists with a different machine key");
}

/* A registration that fails to write its entry answers 500 and leaves nothing. */
static void test_interactive_database_failure(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    const char *body = rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "c");
    ts_register_result_t res;
    apr_int64_t before = rx_gen(fx);

    ts_store_test_fail_at(fx->st, "registration_insert", 1);
    assert_int_equal(ts_register_handle(fx->st, fx->pool, &conf, rx_mkey(fx->pool, MKEY_C),
                                        body, strlen(body), &res), TS_STORE_EFAULT);
    ts_store_test_fail_at(fx->st, NULL, 0);
    assert_int_equal(res.status, 500);
    assert_int_equal(rx_gen(fx), before);
    assert_int_equal(fx_count(fx, "registration_requests"), 0);
}

#define BOTH(fn) FX_TEST(fn, FX_SQLITE), FX_TEST(fn, FX_MYSQL)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_interactive_v51),
        BOTH(test_interactive_current_client),
        BOTH(test_interactive_reject),
        BOTH(test_interactive_expired),
        BOTH(test_followup_not_ours),
        BOTH(test_interactive_rotation),
        BOTH(test_approve_converts_tagged_and_splits_users),
        BOTH(test_approve_errors_write_nothing),
        BOTH(test_interactive_database_failure),
    };

    apr_initialize();
    fx_note_mysql();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
