/* test_policy_manage.c: managing the policy (ts_policy_manage.c, ts_policy_decide.c):
 * autoApprovers and tagOwners decisions on their own; on SQLite and MariaDB: checking and
 * storing a policy (refusals write nothing, errors name the line, approvals follow a stored
 * policy), tags asked for at registration (pre-auth keys, RequestTags, interactive approval)
 * and routes approved when a node registers. */
#include "test_register_fixture.h"
#include "ts_policy_manage.h"
#include "ts_routes.h"

/* ---- pure decisions ---- */

static const ts_policy_user_t USERS[] = {
    { 1, "alice", "alice@example.com", 0, 0 },
    { 2, "bob", "bob@example.com", 0, 0 },
};
static const char *const ROUTER_TAGS[] = { "tag:router" };

static ts_policy_t *parse_ok(apr_pool_t *p, const char *text)
{
    ts_policy_t *pol = NULL;
    const char *err = NULL;

    if (ts_policy_parse(p, text, strlen(text), &pol, &err) != APR_SUCCESS) fail_msg("%s", err);
    return pol;
}

static const char *APPROVERS =
    "{\"groups\": {\"group:eng\": [\"alice@example.com\"]},\n"
    " \"tagOwners\": {\"tag:router\": [\"group:eng\"], \"tag:ci\": [\"tag:router\"],\n"
    "               \"tag:free\": []},\n"
    " \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}],\n"
    " \"autoApprovers\": {\"routes\": {\"10.0.0.0/8\": [\"tag:router\"],\n"
    "                                 \"192.168.1.0/24\": [\"group:eng\"]},\n"
    "                     \"exitNode\": [\"tag:router\"]}}";

static apr_array_header_t *routes_of(apr_pool_t *p, const char *const *adv, int n)
{
    apr_array_header_t *r = apr_array_make(p, n, sizeof(ts_route_t));
    int k;

    for (k = 0; k < n; k++) {
        ts_route_t *x = &APR_ARRAY_PUSH(r, ts_route_t);
        x->prefix = adv[k];
        x->advertised = 1;
        x->approved = 0;
    }
    return r;
}

static int approved(const apr_array_header_t *routes, const char *prefix)
{
    int k;

    for (k = 0; k < routes->nelts; k++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, k, ts_route_t);
        if (!strcmp(r->prefix, prefix)) return r->approved;
    }
    return -1;
}

static void test_auto_approve_decision(void **state)
{
    apr_pool_t *p;
    ts_policy_t *pol;
    ts_policy_node_t nodes[2];
    ts_policy_tailnet_t tn;
    static const char *const adv[] = { "0.0.0.0/0", "10.1.0.0/16", "172.16.0.0/12", "::/0",
                                       "192.168.1.0/24" };
    apr_array_header_t *in, *out;
    int changed = -1;

    (void)state;
    apr_pool_create(&p, NULL);
    pol = parse_ok(p, APPROVERS);
    memset(nodes, 0, sizeof(nodes));
    memset(&tn, 0, sizeof(tn));
    nodes[0].id = 1, nodes[0].name = "router", nodes[0].user = -1;
    nodes[0].tags = ROUTER_TAGS, nodes[0].ntags = 1, nodes[0].ipv4 = "100.64.0.1";
    nodes[1].id = 2, nodes[1].name = "laptop", nodes[1].user = 0, nodes[1].ipv4 = "100.64.0.2";
    tn.users = USERS, tn.nusers = 2, tn.nodes = nodes, tn.nnodes = 2;
    in = routes_of(p, adv, 5);

    /* the tagged router: its subnet inside 10/8 and the exit routes (both families) */
    out = ts_policy_auto_approve(p, pol, &tn, 0, in, &changed);
    assert_true(changed);
    assert_int_equal(approved(out, "10.1.0.0/16"), 1);
    assert_int_equal(approved(out, "0.0.0.0/0"), 1);
    assert_int_equal(approved(out, "::/0"), 1);
    assert_int_equal(approved(out, "172.16.0.0/12"), 0);      /* no approver covers it */
    assert_int_equal(approved(out, "192.168.1.0/24"), 0);     /* tagged: not alice's */
    assert_int_equal(approved(in, "10.1.0.0/16"), 0);         /* the input is untouched */

    /* alice's laptop: only the route her group may approve, never the exit routes */
    out = ts_policy_auto_approve(p, pol, &tn, 1, in, &changed);
    assert_true(changed);
    assert_int_equal(approved(out, "192.168.1.0/24"), 1);
    assert_int_equal(approved(out, "10.1.0.0/16"), 0);
    assert_int_equal(approved(out, "0.0.0.0/0"), 0);

    /* nothing more to approve, a node of nobody, no policy: unchanged */
    ts_policy_auto_approve(p, pol, &tn, 1, out, &changed);
    assert_false(changed);
    nodes[1].user = -1;
    assert_ptr_equal(ts_policy_auto_approve(p, pol, &tn, 1, in, &changed), in);
    assert_false(changed);
    assert_ptr_equal(ts_policy_auto_approve(p, NULL, &tn, 0, in, &changed), in);
    assert_false(changed);
    apr_pool_destroy(p);
}

static apr_array_header_t *list(apr_pool_t *p, const char *a, const char *b)
{
    apr_array_header_t *l = apr_array_make(p, 2, sizeof(const char *));

    if (a) APR_ARRAY_PUSH(l, const char *) = a;
    if (b) APR_ARRAY_PUSH(l, const char *) = b;
    return l;
}

static void test_tags_decision(void **state)
{
    apr_pool_t *p;
    ts_policy_t *pol;
    ts_policy_tailnet_t tn;
    const char *why;

    (void)state;
    apr_pool_create(&p, NULL);
    pol = parse_ok(p, APPROVERS);
    memset(&tn, 0, sizeof(tn));
    tn.users = USERS, tn.nusers = 2;
    /* alice owns tag:router through group:eng; bob does not */
    assert_null(ts_policy_tags_refusal(p, pol, &tn, 0, NULL, list(p, "tag:router", NULL)));
    why = ts_policy_tags_refusal(p, pol, &tn, 1, NULL, list(p, "tag:router", NULL));
    assert_non_null(why);
    assert_non_null(strstr(why, "bob@example.com may not apply tag:router"));
    /* all must pass: one refused tag refuses the lot, each named */
    why = ts_policy_tags_refusal(p, pol, &tn, 0, NULL, list(p, "tag:router", "tag:nope"));
    assert_non_null(why);
    assert_non_null(strstr(why, "tag:nope is not in the policy's tagOwners"));
    assert_null(strstr(why, "apply tag:router"));
    why = ts_policy_tags_refusal(p, pol, &tn, 0, NULL, list(p, "router", NULL));
    assert_non_null(strstr(why, "\"router\" is not a tag"));
    /* a tag owned by a tag: the node's present tags may apply it, a user may not */
    assert_null(ts_policy_tags_refusal(p, pol, &tn, -1, list(p, "tag:router", NULL),
                                       list(p, "tag:ci", NULL)));
    assert_non_null(ts_policy_tags_refusal(p, pol, &tn, 0, NULL, list(p, "tag:ci", NULL)));
    /* an owner-less tag: nobody may ask for it, only a key can give it */
    assert_non_null(ts_policy_tags_refusal(p, pol, &tn, 0, NULL, list(p, "tag:free", NULL)));
    assert_non_null(ts_policy_tags_refusal(p, NULL, &tn, 0, NULL, list(p, "tag:router", NULL)));

    /* pre-auth key tags: in tagOwners, or the policy has none */
    assert_null(ts_policy_key_tags_refusal(p, pol, list(p, "tag:free", "tag:ci")));
    why = ts_policy_key_tags_refusal(p, pol, list(p, "tag:free", "tag:gone"));
    assert_non_null(why);
    assert_non_null(strstr(why, "tag:gone"));
    assert_null(strstr(why, "tag:free"));
    assert_null(ts_policy_key_tags_refusal(p, parse_ok(p, "{\"acls\": []}"),
                                           list(p, "tag:gone", NULL)));
    assert_null(ts_policy_key_tags_refusal(p, NULL, list(p, "tag:gone", NULL)));
    apr_pool_destroy(p);
}

/* Refusals name their line: a compiler error, and a failing test wherever its entry is. */
static void test_check_text_lines(void **state)
{
    apr_pool_t *p;
    ts_policy_tailnet_t tn;
    ts_policy_error_t e;
    static const char *const text =
        "{\n"
        "  \"acls\": [],\n"
        "  \"tests\"   // a \"tests\": [ in a comment\n"
        "     :\n"
        "  [ /* [ { */\n"
        "    {\"src\": \"10.0.0.1\", \"deny\": [\"10.0.0.2:22\"]}, {\"src\": \"10.0.0.1\",\n"
        "     \"accept\": [\"10.0.0.2:22\"]},\n"
        "  ],\n"
        "}\n";

    (void)state;
    apr_pool_create(&p, NULL);
    memset(&tn, 0, sizeof(tn));
    tn.users = USERS, tn.nusers = 2;
    assert_int_equal(ts_policy_check_text(p, text, strlen(text), &tn, NULL, &e), APR_EINVAL);
    assert_int_equal(e.line, 6);
    assert_non_null(strstr(e.message, "tests[1]"));
    assert_int_equal(ts_policy_check_text(p, "{\n\n  \"acls\": 7}", 15, &tn, NULL, &e),
                     APR_EINVAL);
    assert_int_equal(e.line, 3);
    assert_int_equal(ts_policy_check_text(p, "{\"acls\": [}", 11, &tn, NULL, &e), APR_EINVAL);
    assert_int_equal(e.line, 1);
    assert_true(e.column > 0);
    assert_int_equal(ts_policy_check_text(p, "", 0, &tn, NULL, &e), APR_EINVAL);
    assert_int_equal(e.line, 0);
    assert_string_equal(e.message, "the policy is empty");
    apr_pool_destroy(p);
}

/* ---- with a store ---- */

static ts_node_t *node_with_routes(fx_t *fx, const char *name, apr_int64_t user_id,
                                   const char *tags, int n, const char *ipv4)
{
    ts_node_t *nd = apr_pcalloc(fx->pool, sizeof(*nd));
    static const char *const adv[] = { "10.1.0.0/16", "0.0.0.0/0", "::/0" };
    const char *err = NULL;

    nd->machine_key = fx_key(fx->pool, "mkey:", n);
    nd->node_key = fx_key(fx->pool, "nodekey:", n);
    nd->given_name = name;
    nd->hostname = name;
    nd->user_id = user_id;
    nd->tags = tags;
    nd->ipv4 = ipv4;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, nd,
                                                routes_of(fx->pool, adv, 3), &err));
    return nd;
}

static apr_array_header_t *stored_routes(fx_t *fx, apr_int64_t id)
{
    apr_array_header_t *r = NULL;
    const char *err = NULL;

    ASSERT_RV(APR_SUCCESS, ts_store_node_routes_get(fx->st, fx->pool, id, &r, &err));
    return r;
}

static void test_policy_set(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *alice = rx_user(fx, "alice");
    ts_node_t *router, *laptop;
    ts_policy_error_t e;
    ts_policy_tailnet_t *tn = NULL;
    const char *err = NULL, *text;
    apr_int64_t id = 0, gen;
    int nappr = -1;
    static const char *const bad_group =
        "// refused\n{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"group:x\"], "
        "\"dst\": [\"*:*\"]},\n  ],\n}\n";
    static const char *const bad_test =
        "{\"acls\": [{\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"*:22\"]}],\n"
        " \"tests\": [\n  {\"src\": \"alice@\", \"accept\": [\"100.64.0.1:22\"]},\n"
        "  {\"src\": \"alice@\", \"accept\": [\"100.64.0.1:80\"]},\n ]}";

    router = node_with_routes(fx, "router", 0, "[\"tag:router\"]", 1, "100.64.0.1");
    laptop = node_with_routes(fx, "laptop", alice->id, NULL, 2, "100.64.0.2");
    ASSERT_RV(APR_SUCCESS, ts_policy_tailnet_load(fx->st, fx->pool, &tn, &err));
    assert_int_equal(tn->nusers, 1);
    assert_int_equal(tn->nnodes, 2);
    assert_int_equal(tn->nodes[0].user, -1);
    assert_int_equal(tn->nodes[0].ntags, 1);
    assert_int_equal(tn->nodes[1].user, 0);
    assert_int_equal(tn->nodes[1].nadvertised, 3);

    gen = rx_gen(fx);
    /* refused: nothing written, the line and the value named */
    ASSERT_RV(APR_EINVAL, ts_policy_set(fx->st, fx->pool, &conf, bad_group, strlen(bad_group),
                                        &id, &nappr, &e, &err));
    assert_int_equal(e.line, 4);
    assert_non_null(strstr(e.message, "group:x"));
    assert_non_null(strstr(e.text, "line 4: "));
    /* the second test fails (port 80 is not allowed): its line */
    ASSERT_RV(APR_EINVAL, ts_policy_set(fx->st, fx->pool, &conf, bad_test, strlen(bad_test),
                                        &id, &nappr, &e, &err));
    assert_int_equal(e.line, 4);
    assert_non_null(strstr(e.message, "tests[1]"));
    assert_int_equal(id, 0);
    assert_int_equal(fx_count(fx, "policies"), 0);
    assert_int_equal(rx_gen(fx), gen);
    /* the first test alone holds */
    text = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"*:22\"]}],\n"
           " \"tests\": [{\"src\": \"alice@\", \"accept\": [\"100.64.0.1:22\"]}]}";
    ASSERT_RV(APR_SUCCESS, ts_policy_check_text(fx->pool, text, strlen(text), tn, NULL, &e));

    /* TS2021PolicyFile in force: refused before anything */
    conf.policy_file = "/etc/policy.hujson";
    conf.policy_text = "{}";
    ASSERT_RV(TS_STORE_ECONFLICT, ts_policy_set(fx->st, fx->pool, &conf, text, strlen(text),
                                                &id, &nappr, &e, &err));
    assert_non_null(strstr(err, "TS2021PolicyFile"));
    assert_int_equal(fx_count(fx, "policies"), 0);
    conf.policy_file = conf.policy_text = NULL;

    /* stored: the router's subnet and exit routes are approved, the laptop's are not */
    ASSERT_RV(APR_SUCCESS, ts_policy_set(fx->st, fx->pool, &conf, APPROVERS, strlen(APPROVERS),
                                         &id, &nappr, &e, &err));
    assert_true(id > 0);
    assert_int_equal(nappr, 1);
    assert_int_equal(approved(stored_routes(fx, router->id), "10.1.0.0/16"), 1);
    assert_int_equal(approved(stored_routes(fx, router->id), "0.0.0.0/0"), 1);
    assert_int_equal(approved(stored_routes(fx, router->id), "::/0"), 1);
    assert_int_equal(approved(stored_routes(fx, laptop->id), "10.1.0.0/16"), 0);
    assert_int_equal(fx_int(fx, "SELECT COUNT(*) FROM change_log WHERE kind = 'node.routes'"), 1);
    assert_int_equal(fx_int(fx, "SELECT COUNT(*) FROM change_log WHERE kind = 'policy.set'"), 1);
    ASSERT_RV(APR_SUCCESS, ts_policy_text_in_force(fx->st, fx->pool, &conf, &text, &err));
    assert_string_equal(text, APPROVERS);
}

/* A RegisterRequest of a current client asking for tags and advertising routes. */
static const char *req_tags(fx_t *fx, int n, const char *key, const char *tags_json)
{
    return rx_req145(fx->pool, fx_key(fx->pool, "nodekey:", n), NULL, key, NULL,
                     apr_psprintf(fx->pool, "host%d", n),
                     apr_psprintf(fx->pool, ",\"RequestTags\":%s,\"RoutableIPs\":"
                                  "[\"10.2.0.0/24\",\"0.0.0.0/0\",\"::/0\"]",
                                  tags_json ? tags_json : "null"));
}

static void set_policy(fx_t *fx, const char *text)
{
    apr_int64_t id;
    const char *err = NULL;

    ASSERT_RV(APR_SUCCESS, ts_store_policy_set(fx->st, fx->pool, text, &id, &err));
}

static void test_registration_tags(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *alice = rx_user(fx, "alice"), *bob = rx_user(fx, "bob");
    const char *akey = rx_key(fx, alice->id, 1, 0, NULL, NULL);
    const char *bkey = rx_key(fx, bob->id, 1, 0, NULL, NULL);
    const char *tkey = rx_key(fx, 0, 1, 0, "[\"tag:ci\"]", NULL);
    const char *gone = rx_key(fx, 0, 1, 0, "[\"tag:gone\"]", NULL);
    ts_node_t *n;
    json_t *j;

    /* no policy: no tag can be asked for; a key's tags are trusted */
    rx_expect_error(fx, &conf, rx_mkey_n(fx->pool, 1), req_tags(fx, 1, akey, "[\"tag:router\"]"),
                    "requested tags refused: tag:router is not in the policy's tagOwners");
    j = rx_call(fx, &conf, rx_mkey_n(fx->pool, 2), req_tags(fx, 2, gone, NULL), NULL);
    rx_expect_success(j, NULL);
    json_decref(j);

    set_policy(fx, "{\"groups\": {\"group:eng\": [\"alice@\"]},\n"
                   " \"tagOwners\": {\"tag:router\": [\"group:eng\"], \"tag:ci\": []},\n"
                   " \"autoApprovers\": {\"routes\": {\"10.0.0.0/8\": [\"tag:router\"]},\n"
                   "                   \"exitNode\": [\"tag:router\"]}}");
    /* bob may not apply tag:router: refused, nothing written */
    rx_expect_error(fx, &conf, rx_mkey_n(fx->pool, 3), req_tags(fx, 3, bkey, "[\"tag:router\"]"),
                    "requested tags refused: bob may not apply tag:router (tagOwners)");
    /* a key tag no longer in tagOwners; a requested tag the key does not give */
    rx_expect_error(fx, &conf, rx_mkey_n(fx->pool, 4), req_tags(fx, 4, gone, NULL),
                    "the pre-auth key's tags are not in the policy's tagOwners: tag:gone");
    rx_expect_error(fx, &conf, rx_mkey_n(fx->pool, 4), req_tags(fx, 4, tkey, "[\"tag:router\"]"),
                    "requested tags refused: not among the pre-auth key's tags: tag:router");
    assert_int_equal(fx_count(fx, "nodes"), 1);

    /* alice may: the node belongs to the tag (no user, no expiry), routes auto-approved */
    conf.node_expiry = apr_time_from_sec(3600);
    j = rx_call(fx, &conf, rx_mkey_n(fx->pool, 5), req_tags(fx, 5, akey, "[\"tag:router\"]"),
                NULL);
    rx_expect_success(j, NULL);
    json_decref(j);
    n = rx_node(fx, fx_key(fx->pool, "nodekey:", 5));
    assert_int_equal(n->user_id, 0);
    assert_string_equal(n->tags, "[\"tag:router\"]");
    assert_int_equal(n->expiry, 0);
    assert_int_equal(approved(stored_routes(fx, n->id), "10.2.0.0/24"), 1);
    assert_int_equal(approved(stored_routes(fx, n->id), "0.0.0.0/0"), 1);
    assert_int_equal(approved(stored_routes(fx, n->id), "::/0"), 1);

    /* the tagged key with a matching request: its tags; not auto-approved (tag:ci) */
    j = rx_call(fx, &conf, rx_mkey_n(fx->pool, 6), req_tags(fx, 6, tkey, "[\"tag:ci\"]"), NULL);
    rx_expect_success(j, NULL);
    json_decref(j);
    n = rx_node(fx, fx_key(fx->pool, "nodekey:", 6));
    assert_string_equal(n->tags, "[\"tag:ci\"]");
    assert_int_equal(approved(stored_routes(fx, n->id), "10.2.0.0/24"), 0);

    /* a user node without tags: hers, expiring, routes left to an admin */
    j = rx_call(fx, &conf, rx_mkey_n(fx->pool, 7), req_tags(fx, 7, akey, NULL), NULL);
    rx_expect_success(j, alice);
    json_decref(j);
    n = rx_node(fx, fx_key(fx->pool, "nodekey:", 7));
    assert_int_equal(n->user_id, alice->id);
    assert_true(n->expiry > 0);
    assert_int_equal(approved(stored_routes(fx, n->id), "10.2.0.0/24"), 0);
}

/* The AuthURL's registration id of an interactive request. */
static const char *start_interactive(fx_t *fx, const ts_tailnet_conf_t *conf, int n,
                                     const char *tags_json)
{
    json_t *j = rx_call(fx, conf, rx_mkey_n(fx->pool, n), req_tags(fx, n, NULL, tags_json),
                        NULL);
    const char *url = rx_str(j, "AuthURL", NULL), *id;

    assert_non_null(url);
    id = apr_pstrdup(fx->pool, strrchr(url, '/') + 1);
    json_decref(j);
    return id;
}

static void test_interactive_tags(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *alice = rx_user(fx, "alice"), *bob = rx_user(fx, "bob");
    ts_registration_t *r = NULL;
    apr_int64_t node_id = 0;
    const char *id, *err = NULL;
    ts_node_t *n;

    set_policy(fx, "{\"tagOwners\": {\"tag:router\": [\"alice@\"], \"tag:ci\": [\"tag:router\"]},\n"
                   " \"autoApprovers\": {\"routes\": {\"10.2.0.0/16\": [\"alice@\"]}}}");
    /* bob approves a node asking for tag:router: refused, the client is told why */
    id = start_interactive(fx, &conf, 1, "[\"tag:router\"]");
    ASSERT_RV(APR_EACCES, ts_register_approve(fx->st, fx->pool, &conf, id, bob->id, &node_id,
                                              &err));
    assert_string_equal(err, "requested tags refused: bob may not apply tag:router (tagOwners)");
    assert_int_equal(fx_count(fx, "nodes"), 0);
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, id, &r, &err));
    assert_int_equal(r->state, TS_REG_REJECTED);
    assert_string_equal(r->error, "requested tags refused: bob may not apply tag:router "
                        "(tagOwners)");
    /* alice may: a tagged node */
    id = start_interactive(fx, &conf, 2, "[\"tag:router\"]");
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, alice->id, &node_id,
                                               &err));
    n = rx_node(fx, fx_key(fx->pool, "nodekey:", 2));
    assert_int_equal(n->user_id, 0);
    assert_string_equal(n->tags, "[\"tag:router\"]");
    /* it re-authenticates with a new key asking for tag:ci, which tag:router owns: the
     * node's present tag lets even bob's approval through; the same node, re-tagged */
    {
        json_t *j = rx_call(fx, &conf, rx_mkey_n(fx->pool, 2), rx_req145(
            fx->pool, fx_key(fx->pool, "nodekey:", 9), fx_key(fx->pool, "nodekey:", 2), NULL,
            NULL, "host2", ",\"RequestTags\":[\"tag:ci\"]"), NULL);
        const char *url = rx_str(j, "AuthURL", NULL);
        apr_int64_t before = n->id;

        assert_non_null(url);
        id = apr_pstrdup(fx->pool, strrchr(url, '/') + 1);
        json_decref(j);
        ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, bob->id,
                                                   &node_id, &err));
        n = rx_node(fx, fx_key(fx->pool, "nodekey:", 9));
        assert_int_equal(n->id, before);
        assert_int_equal(n->user_id, 0);
        assert_string_equal(n->tags, "[\"tag:ci\"]");
    }
    /* without tags, alice's node gets the route her autoApprovers entry covers */
    id = start_interactive(fx, &conf, 3, NULL);
    ASSERT_RV(APR_SUCCESS, ts_register_approve(fx->st, fx->pool, &conf, id, alice->id, &node_id,
                                               &err));
    n = rx_node(fx, fx_key(fx->pool, "nodekey:", 3));
    assert_int_equal(n->user_id, alice->id);
    assert_int_equal(approved(stored_routes(fx, n->id), "10.2.0.0/24"), 1);
    assert_int_equal(approved(stored_routes(fx, n->id), "0.0.0.0/0"), 0);
}

#define BOTH(fn) FX_TEST(fn, FX_SQLITE), FX_TEST(fn, FX_MYSQL)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_approve_decision),
        cmocka_unit_test(test_tags_decision),
        cmocka_unit_test(test_check_text_lines),
        BOTH(test_policy_set),
        BOTH(test_registration_tags),
        BOTH(test_interactive_tags),
    };

    apr_initialize();
    fx_note_mysql();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
