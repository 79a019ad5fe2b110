/* test_map_policy.c: the map view under a compiled policy: who appears in whose full map, each
 * node's PacketFilter/SSHPolicy/CapMap, deltas filtered by visibility, and the policy-style
 * update a policy change produces (removed and newly visible peers, new filters). */
#include "test_map_fixture.h"


/* alice's n1, n2; bob's n3; n4 tagged tag:web. All online, first delta taken. */
static ts_map_t *view4(void)
{
    ts_map_t *m = new_map();
    ts_node_t *n;
    int i;

    user(m, 1, "alice", "alice@example.net", "Alice");
    user(m, 2, "bob", "bob@example.net", "Bob");
    for (i = 1; i <= 3; i++) upsert(m, node(i, apr_psprintf(pool, "n%d", i), i == 3 ? 2 : 1), NULL);
    n = node(4, "web", 0);
    n->tags = "[\"tag:web\"]";
    upsert(m, n, NULL);
    for (i = 1; i <= 4; i++) ts_map_node_set_online(m, i, 1, 0);
    ts_map_delta_unref(delta(m, NOW));
    return m;
}

static const char *peer_ids(json_t *map, const char *field)
{
    json_t *a = get(map, field), *v;
    char *out = "";
    size_t i;

    json_array_foreach(a, i, v) {
        json_t *id = json_is_integer(v) ? v : json_object_get(v, "ID");
        out = apr_psprintf(pool, "%s%s%d", out, i ? "," : "", (int)json_integer_value(id));
    }
    return out;
}

static const char web_only[] =
    "{ // alice reaches the web server on port 80\n"
    "  \"groups\": {\"group:a\": [\"alice@example.net\"]},\n"
    "  \"tagOwners\": {\"tag:web\": [\"alice@example.net\"]},\n"
    "  \"acls\": [{\"action\": \"accept\", \"src\": [\"group:a\"], \"dst\": [\"tag:web:80\"]}],\n"
    "  \"ssh\": [{\"action\": \"accept\", \"src\": [\"group:a\"], \"dst\": [\"tag:web\"],\n"
    "            \"users\": [\"root\"]}],\n"
    "  \"nodeAttrs\": [{\"target\": [\"tag:web\"], \"attr\": [\"funnel\"]}],\n"
    "}";

static void test_full_maps(void **state)
{
    ts_map_t *m = view4();
    json_t *got;

    (void)state;
    assert_false(ts_map_has_policy(m));
    install(m, web_only);
    assert_true(ts_map_has_policy(m));
    got = full(m, 1, NOW);
    assert_string_equal(peer_ids(got, "Peers"), "4");
    assert_json(get(got, "PacketFilter"), "[]");
    assert_null(get(got, "SSHPolicy"));
    assert_null(get(got, "Node.CapMap.funnel"));
    json_decref(got);
    got = full(m, 3, NOW);                  /* bob: nobody */
    assert_null(get(got, "Peers"));
    assert_json(get(got, "PacketFilter"), "[]");
    assert_json(get(got, "UserProfiles"),
                "[{\"ID\":2,\"LoginName\":\"bob@example.net\",\"DisplayName\":\"Bob\"}]");
    json_decref(got);
    got = full(m, 4, NOW);
    assert_string_equal(peer_ids(got, "Peers"), "1,2");
    assert_string_equal(str(got, "PacketFilter.0.SrcIPs.0"), "100.64.0.1");
    assert_string_equal(str(got, "PacketFilter.0.DstPorts.0.IP"), "100.64.0.4");
    assert_int_equal(num(got, "PacketFilter.0.DstPorts.0.Ports.First"), 80);
    assert_true(json_array_size(get(got, "SSHPolicy.rules")) > 0);
    assert_non_null(get(got, "Node.CapMap.funnel"));
    json_decref(got);
}

static void test_delta_visibility(void **state)
{
    ts_map_t *m = view4();
    ts_map_delta_t *d;
    json_t *got;
    const char *json;
    apr_size_t len;

    (void)state;
    install(m, web_only);
    ts_map_delta_unref(delta(m, NOW));   /* the policy-style update */
    /* bob's node goes offline: only those who see it hear */
    ts_map_node_set_online(m, 3, 0, NOW);
    ts_map_node_set_online(m, 4, 0, NOW);
    d = delta(m, NOW);
    assert_true(ts_map_delta_has_policy(d));
    got = delta_for(d, 3);      /* its class's rendering: its own patch (ignored), not n4's */
    assert_int_equal(json_array_size(get(got, "PeersChangedPatch")), 1);
    assert_int_equal(num(got, "PeersChangedPatch.0.NodeID"), 3);
    json_decref(got);
    got = delta_for(d, 1);
    assert_int_equal(num(got, "PeersChangedPatch.0.NodeID"), 4);
    assert_int_equal(json_array_size(get(got, "PeersChangedPatch")), 1);
    json_decref(got);
    ts_map_delta_unref(d);
    /* a new node nobody may see yet: not sent to anyone */
    upsert(m, node(5, "n5", 2), NULL);
    d = delta(m, NOW);
    assert_int_equal(ts_map_delta_json(d, 1, pool, &json, &len), APR_NOTFOUND);
    assert_int_equal(ts_map_delta_json(d, 4, pool, &json, &len), APR_NOTFOUND);
    ts_map_delta_unref(d);
}

static const char web_all[] =
    "{\"tagOwners\": {\"tag:web\": [\"alice@example.net\"]},\n"
    " \"acls\": [{\"action\": \"accept\", \"src\": [\"bob@example.net\"], \"dst\": [\"tag:web:443\"]}]}";

static void test_policy_change(void **state)
{
    ts_map_t *m = view4();
    ts_map_delta_t *d;
    json_t *got;
    const char *json;
    apr_size_t len;

    (void)state;
    /* no policy -> web_only: everyone loses what it may no longer see */
    install(m, web_only);
    d = delta(m, NOW);
    got = delta_for(d, 3);
    assert_string_equal(peer_ids(got, "PeersRemoved"), "1,2,4");
    assert_null(get(got, "PeersChanged"));
    assert_json(get(got, "PacketFilter"), "[]");
    json_decref(got);
    got = delta_for(d, 1);
    assert_string_equal(peer_ids(got, "PeersRemoved"), "2,3");
    assert_json(get(got, "PacketFilter"), "[]");
    json_decref(got);
    got = delta_for(d, 4);
    assert_string_equal(peer_ids(got, "PeersRemoved"), "3");
    assert_int_equal(num(got, "PacketFilter.0.DstPorts.0.Ports.First"), 80);
    assert_non_null(get(got, "SSHPolicy.rules"));
    assert_non_null(get(got, "Node.CapMap.funnel"));
    json_decref(got);
    ts_map_delta_unref(d);
    no_delta(m, NOW);
    /* web_only -> web_all: alice loses the web server, bob gains it */
    install(m, web_all);
    d = delta(m, NOW);
    got = delta_for(d, 3);
    assert_null(get(got, "PeersRemoved"));
    assert_string_equal(peer_ids(got, "PeersChanged"), "4");
    assert_json(get(got, "PacketFilter"), "[]");
    json_decref(got);
    got = delta_for(d, 1);
    assert_string_equal(peer_ids(got, "PeersRemoved"), "4");
    json_decref(got);
    got = delta_for(d, 4);
    assert_string_equal(peer_ids(got, "PeersRemoved"), "1,2");
    assert_string_equal(peer_ids(got, "PeersChanged"), "3");
    assert_int_equal(num(got, "PacketFilter.0.DstPorts.0.Ports.First"), 443);
    assert_json(get(got, "SSHPolicy"), "{\"rules\":[]}");
    assert_null(get(got, "Node.CapMap.funnel"));
    json_decref(got);
    ts_map_delta_unref(d);
    /* the same policy again: nothing to say */
    install(m, web_all);
    no_delta(m, NOW);
    /* back to no policy: everyone sees everyone with the allow-all filter */
    install(m, web_only);
    ts_map_delta_unref(delta(m, NOW));
    install(m, NULL);
    assert_false(ts_map_has_policy(m));
    d = delta(m, NOW);
    got = delta_for(d, 1);                  /* n4 it saw already */
    assert_string_equal(peer_ids(got, "PeersChanged"), "2,3");
    assert_string_equal(str(got, "PacketFilter.0.SrcIPs.0"), "*");
    json_decref(got);
    got = delta_for(d, 4);                  /* its nodeAttrs are gone */
    assert_non_null(get(got, "Node.CapMap"));
    assert_null(get(got, "Node.CapMap.funnel"));
    assert_json(get(got, "SSHPolicy"), "{\"rules\":[]}");
    json_decref(got);
    ts_map_delta_unref(d);
    no_delta(m, NOW);
    (void)json;
    (void)len;
}

static void test_frames(void **state)
{
    ts_map_t *m = view4();
    ts_mapframe_enc_t *enc;
    ts_map_delta_t *d;
    const uint8_t *f1, *f2;
    apr_size_t l1, l2;
    const char *err;

    (void)state;
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 0), APR_SUCCESS);
    install(m, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}");
    ts_map_delta_unref(delta(m, NOW));
    ts_map_node_set_online(m, 3, 0, NOW);
    d = delta(m, NOW);
    /* n1 and n2 see the same nodes: one class, one shared frame */
    assert_true(ts_map_delta_is_shared_for(d, 1));
    assert_int_equal(ts_map_delta_frame(d, 1, 1, enc, pool, &f1, &l1, &err), APR_SUCCESS);
    assert_int_equal(ts_map_delta_frame(d, 2, 1, enc, pool, &f2, &l2, &err), APR_SUCCESS);
    assert_ptr_equal(f1, f2);
    ts_map_delta_unref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_maps),
        cmocka_unit_test(test_delta_visibility),
        cmocka_unit_test(test_policy_change),
        cmocka_unit_test(test_frames),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
