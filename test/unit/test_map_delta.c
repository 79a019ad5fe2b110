/* test_map_delta.c: the map view's deltas: join, leave, presence, endpoint/DERP/key patches, expiry,
 * settings, primary failover, bad rows, coalescing, and one delta shared by streams and threads. */
#include "test_map_fixture.h"

#include <apr_thread_proc.h>

/* ---- deltas ---- */

/* Three user nodes, all online, with the first delta (their arrival) already taken. */
static ts_map_t *settled_view(void)
{
    ts_map_t *m = new_map();
    int i;

    user(m, 1, "alice", "alice@example.net", "Alice");
    user(m, 2, "bob", "bob@example.net", "Bob");
    for (i = 1; i <= 3; i++) {
        upsert(m, node(i, apr_psprintf(pool, "n%d", i), i == 3 ? 2 : 1), NULL);
        ts_map_node_set_online(m, i, 1, 0);
    }
    ts_map_delta_unref(delta(m, NOW));
    no_delta(m, NOW);
    return m;
}

static void test_delta_join(void **state)
{
    ts_map_t *m = settled_view();
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    user(m, 3, "carol", "carol@example.net", "Carol");
    upsert(m, node(4, "n4", 3), NULL);
    d = delta(m, NOW);
    assert_true(ts_map_delta_is_shared_for(d, 1));
    got = delta_for(d, 1);
    assert_int_equal(json_array_size(get(got, "PeersChanged")), 1);
    assert_int_equal(num(got, "PeersChanged.0.ID"), 4);
    assert_true(json_is_false(get(got, "PeersChanged.0.Online")));   /* new: offline, explicit */
    assert_json(get(got, "UserProfiles"),
                "[{\"ID\":3,\"LoginName\":\"carol@example.net\",\"DisplayName\":\"Carol\"}]");
    assert_null(get(got, "PeersRemoved"));
    assert_null(get(got, "PeersChangedPatch"));
    assert_null(get(got, "Node"));
    assert_null(get(got, "Peers"));             /* never: it would override every delta */
    assert_string_equal(str(got, "ControlTime"), "2026-08-22T12:00:00Z");
    json_decref(got);
    /* the newcomer never receives itself as a peer */
    assert_false(ts_map_delta_is_shared_for(d, 4));
    got = delta_for(d, 4);
    assert_null(get(got, "PeersChanged"));
    assert_int_equal(num(got, "Node.ID"), 4);
    json_decref(got);
    ts_map_delta_unref(d);
    no_delta(m, NOW);
}

static void test_delta_leave(void **state)
{
    ts_map_t *m = settled_view();
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    assert_int_equal(ts_map_node_remove(m, 2), APR_SUCCESS);
    assert_int_equal(ts_map_node_remove(m, 2), APR_NOTFOUND);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(got, "{\"PeersRemoved\":[2],\"ControlTime\":\"2026-08-22T12:00:00Z\"}");
    json_decref(got);
    ts_map_delta_unref(d);
    got = full(m, 1, NOW);
    assert_int_equal(json_array_size(get(got, "Peers")), 1);
    assert_int_equal(num(got, "Peers.0.ID"), 3);
    json_decref(got);
}

static void test_delta_online_offline(void **state)
{
    ts_map_t *m = settled_view();
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    assert_int_equal(ts_map_node_set_online(m, 2, 0, NOW - 10 * APR_USEC_PER_SEC), APR_SUCCESS);
    d = delta(m, NOW);
    /* a patch is about a peer: everyone, the node itself included, gets the shared bytes */
    assert_true(ts_map_delta_is_shared_for(d, 2));
    got = delta_for(d, 1);
    assert_json(got, "{\"PeersChangedPatch\":[{\"NodeID\":2,\"Online\":false,"
                     "\"LastSeen\":\"2026-08-22T11:59:50Z\"}],"
                     "\"ControlTime\":\"2026-08-22T12:00:00Z\"}");
    json_decref(got);
    ts_map_delta_unref(d);
    ts_map_node_set_online(m, 2, 1, 0);
    d = delta(m, NOW);
    got = delta_for(d, 3);
    assert_json(get(got, "PeersChangedPatch"), "[{\"NodeID\":2,\"Online\":true}]");
    json_decref(got);
    ts_map_delta_unref(d);
    /* presence unchanged, or an online node merely seen again: nothing to send */
    ts_map_node_set_online(m, 2, 1, NOW);
    no_delta(m, NOW);
    assert_int_equal(ts_map_node_set_online(m, 99, 1, 0), APR_NOTFOUND);
}

static void test_delta_endpoints(void **state)
{
    ts_map_t *m = settled_view();
    ts_node_t *n = node(2, "n2", 1);
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    n->endpoints = "[\"203.0.113.9:41641\",\"10.0.0.2:41641\"]";
    upsert(m, n, NULL);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(get(got, "PeersChangedPatch"),
                "[{\"NodeID\":2,\"Endpoints\":[\"203.0.113.9:41641\",\"10.0.0.2:41641\"]}]");
    assert_null(get(got, "PeersChanged"));
    json_decref(got);
    /* the node's own Node changed too (its endpoints): it gets its own rendering */
    assert_false(ts_map_delta_is_shared_for(d, 2));
    got = delta_for(d, 2);
    assert_string_equal(strings(get(got, "Node.Endpoints"), 0),
                        "203.0.113.9:41641,10.0.0.2:41641");
    assert_non_null(get(got, "PeersChangedPatch"));
    json_decref(got);
    ts_map_delta_unref(d);
}

/* tailscaled restart (new disco key, new home DERP), key rotation, netcheck noise, Hostinfo. */
static void test_delta_disco_derp_key(void **state)
{
    ts_map_t *m = settled_view();
    ts_map_delta_t *d;
    ts_node_t *n;
    json_t *got;

    (void)state;
    /* tailscaled restart: new disco key and home DERP region, key rotation */
    n = node(2, "n2", 1);
    n->disco_key = key("discokey:", '9');
    n->node_key = key("nodekey:", '8');
    n->host_info = "{\"OS\":\"linux\",\"Hostname\":\"n2\",\"NetInfo\":{\"PreferredDERP\":901}}";
    upsert(m, n, NULL);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(get(got, "PeersChangedPatch"),
                apr_psprintf(pool, "[{\"NodeID\":2,\"Key\":\"%s\",\"DiscoKey\":\"%s\","
                             "\"DERPRegion\":901}]", n->node_key, n->disco_key));
    json_decref(got);
    ts_map_delta_unref(d);

    /* a netcheck that only moves DERP latencies: peers are not told, the stored copy changes */
    n->host_info = "{\"OS\":\"linux\",\"Hostname\":\"n2\",\"NetInfo\":{\"PreferredDERP\":901,"
                   "\"DERPLatency\":{\"901-v4\":0.012}}}";
    upsert(m, n, NULL);
    no_delta(m, NOW);
    got = full(m, 1, NOW);
    assert_non_null(get(got, "Peers.0.Hostinfo.NetInfo.DERPLatency"));
    json_decref(got);

    /* anything else (here Hostinfo) is a full PeersChanged entry */
    n->host_info = "{\"OS\":\"linux\",\"Hostname\":\"n2\",\"RoutableIPs\":[\"10.9.0.0/24\"],"
                   "\"NetInfo\":{\"PreferredDERP\":901}}";
    upsert(m, n, NULL);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_int_equal(num(got, "PeersChanged.0.ID"), 2);
    assert_string_equal(str(got, "PeersChanged.0.Hostinfo.RoutableIPs.0"), "10.9.0.0/24");
    assert_null(get(got, "PeersChangedPatch"));
    assert_int_equal(num(got, "UserProfiles.0.ID"), 1);
    json_decref(got);
    ts_map_delta_unref(d);
    /* the same row again changes nothing */
    upsert(m, n, NULL);
    no_delta(m, NOW);
}

static void test_delta_key_expiry(void **state)
{
    ts_map_t *m = settled_view();
    ts_node_t *n = node(2, "n2", 1);
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    n->expiry = NOW + HOUR;
    upsert(m, n, NULL);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(get(got, "PeersChangedPatch"),
                "[{\"NodeID\":2,\"KeyExpiry\":\"2026-08-22T13:00:00Z\"}]");
    json_decref(got);
    ts_map_delta_unref(d);
    no_delta(m, NOW + HOUR - 1);
    /* time passes beyond the expiry, no row changes: the next settle notices */
    d = delta(m, NOW + HOUR);
    got = delta_for(d, 1);
    assert_int_equal(num(got, "PeersChanged.0.ID"), 2);
    assert_true(json_is_true(get(got, "PeersChanged.0.Expired")));
    assert_null(get(got, "PeersChanged.0.Endpoints"));
    assert_null(get(got, "PeersChanged.0.DERP"));
    json_decref(got);
    got = delta_for(d, 2);
    assert_true(json_is_true(get(got, "Node.Expired")));
    assert_string_equal(str(got, "Node.KeyExpiry"), "2026-08-22T13:00:00Z");
    json_decref(got);
    ts_map_delta_unref(d);
    /* re-authenticated (new key, no expiry): back in full, Expired gone */
    n->expiry = 0;
    n->node_key = key("nodekey:", '7');
    upsert(m, n, NULL);
    d = delta(m, NOW + 2 * HOUR);
    got = delta_for(d, 1);
    assert_null(get(got, "PeersChanged.0.Expired"));
    assert_null(get(got, "PeersChanged.0.KeyExpiry"));
    assert_non_null(get(got, "PeersChanged.0.Endpoints"));
    json_decref(got);
    ts_map_delta_unref(d);
    /* an expiry cleared without anything else: the zero time means "never" */
    n->expiry = NOW + 5 * HOUR;
    upsert(m, n, NULL);
    ts_map_delta_unref(delta(m, NOW + 2 * HOUR));
    n->expiry = 0;
    upsert(m, n, NULL);
    d = delta(m, NOW + 2 * HOUR);
    got = delta_for(d, 1);
    assert_json(get(got, "PeersChangedPatch"),
                "[{\"NodeID\":2,\"KeyExpiry\":\"0001-01-01T00:00:00Z\"}]");
    json_decref(got);
    ts_map_delta_unref(d);
}

static void test_delta_coalescing(void **state)
{
    ts_map_t *m = settled_view();
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    /* joined and left within one batch: only the removal */
    upsert(m, node(5, "n5", 1), NULL);
    ts_map_node_remove(m, 5);
    /* left and came back: only the upsert */
    ts_map_node_remove(m, 3);
    upsert(m, node(3, "n3", 2), NULL);
    /* flapped offline and online: the final state */
    ts_map_node_set_online(m, 2, 0, NOW - 5 * APR_USEC_PER_SEC);
    ts_map_node_set_online(m, 2, 1, 0);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(get(got, "PeersRemoved"), "[5]");
    assert_int_equal(json_array_size(get(got, "PeersChanged")), 1);
    assert_int_equal(num(got, "PeersChanged.0.ID"), 3);
    json_decref(got);
    ts_map_delta_unref(d);

    /* a full map taken between two changes settles them; the next delta still carries them */
    ts_map_node_set_online(m, 1, 0, NOW);
    json_decref(full(m, 3, NOW));
    ts_map_node_set_online(m, 3, 0, NOW);
    d = delta(m, NOW);
    got = delta_for(d, 2);
    assert_json(get(got, "PeersChangedPatch"),
                "[{\"NodeID\":1,\"Online\":false,\"LastSeen\":\"2026-08-22T12:00:00Z\"},"
                "{\"NodeID\":3,\"LastSeen\":\"2026-08-22T12:00:00Z\"}]");   /* re-added: was offline */
    json_decref(got);
    ts_map_delta_unref(d);
}

static void test_delta_frames_shared(void **state)
{
    ts_map_t *m = settled_view();
    ts_mapframe_enc_t *enc;
    const uint8_t *f1, *f2, *f3, *raw;
    apr_size_t l1, l2, l3, lraw, jlen, used;
    const char *err = NULL, *json;
    ts_map_delta_t *d;
    char *decoded;

    (void)state;
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 0), APR_SUCCESS);
    upsert(m, node(4, "n4", 1), NULL);
    ts_map_node_set_online(m, 2, 0, NOW);
    assert_int_equal(ts_map_delta_build(m, NOW, enc, &d), APR_SUCCESS);
    /* the same compressed bytes for every other stream: built once, not per stream */
    assert_int_equal(ts_map_delta_frame(d, 1, 1, enc, pool, &f1, &l1, &err), APR_SUCCESS);
    assert_int_equal(ts_map_delta_frame(d, 3, 1, enc, pool, &f2, &l2, &err), APR_SUCCESS);
    assert_ptr_equal(f1, f2);
    assert_int_equal(ts_mapframe_decode(pool, f1, l1, 1, 0, &decoded, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_map_delta_json(d, 1, pool, &json, &jlen), APR_SUCCESS);
    assert_string_equal(decoded, json);
    /* uncompressed: the shared raw frame */
    assert_int_equal(ts_map_delta_frame(d, 1, 0, NULL, pool, &raw, &lraw, &err), APR_SUCCESS);
    assert_int_equal(lraw, jlen + 4);
    assert_memory_equal(raw + 4, json, jlen);
    /* the newcomer's own frame, without its entry */
    assert_int_equal(ts_map_delta_frame(d, 4, 1, enc, pool, &f3, &l3, &err), APR_SUCCESS);
    assert_ptr_not_equal(f3, f1);
    assert_int_equal(ts_mapframe_decode(pool, f3, l3, 1, 0, &decoded, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_null(strstr(decoded, "\"PeersChanged\""));
    assert_non_null(strstr(decoded, "\"PeersChangedPatch\""));
    /* a delta outlives the view's next changes while referenced */
    ts_map_delta_ref(d);
    ts_map_delta_unref(d);
    upsert(m, node(5, "n5", 1), NULL);
    ts_map_delta_unref(delta(m, NOW));
    assert_int_equal(ts_map_delta_json(d, 1, pool, &json, &jlen), APR_SUCCESS);
    assert_non_null(strstr(json, "\"ID\":4"));
    ts_map_delta_unref(d);
}

static void test_delta_settings(void **state)
{
    ts_map_t *m = settled_view();
    ts_tailnet_conf_t conf = { 0 };
    const char *err = NULL, *other = "{\"Regions\":{\"901\":{}}}";
    ts_map_delta_t *d;
    json_t *got;
    int i;

    (void)state;
    ts_map_set_derpmap(m, DERP_900, strlen(DERP_900));
    no_delta(m, NOW);                          /* unchanged */
    ts_map_set_derpmap(m, other, strlen(other));
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(got, "{\"DERPMap\":{\"Regions\":{\"901\":{}}},"
                     "\"ControlTime\":\"2026-08-22T12:00:00Z\"}");
    json_decref(got);
    ts_map_delta_unref(d);

    /* a new base domain renames every node: all peers and every self Node */
    conf.server_url = "https://ctl.example.net";
    conf.base_domain = "corp.example.org";
    conf.magic_dns = 1;
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_SUCCESS);
    d = delta(m, NOW);
    for (i = 1; i <= 3; i++) {
        assert_false(ts_map_delta_is_shared_for(d, i));
        got = delta_for(d, i);
        assert_int_equal(json_array_size(get(got, "PeersChanged")), 2);
        assert_string_equal(str(got, "Node.Name"),
                            apr_psprintf(pool, "n%d.corp.example.org.", i));
        assert_json(get(got, "DNSConfig"), "{\"Domains\":[\"corp.example.org\"],\"Proxied\":true}");
        json_decref(got);
    }
    ts_map_delta_unref(d);
    /* bad settings are refused and change nothing */
    conf.base_domain = "Bad_Domain";
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_EINVAL);
    assert_non_null(strstr(err, "Bad_Domain"));
    conf.base_domain = "corp.example.org";
    conf.dns_config_json = "{\"Routes\":{\"corp.\":7}}";
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_EINVAL);
    conf.dns_config_json = "[1]";
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_EINVAL);
    no_delta(m, NOW);
}

static void test_dns_config(void **state)
{
    ts_tailnet_conf_t conf = { 0 };
    const char *err = NULL;
    ts_map_t *m;
    json_t *got;

    (void)state;
    assert_int_equal(ts_map_create(&m, pool), APR_SUCCESS);
    ts_map_set_derpmap(m, DERP_900, strlen(DERP_900));
    conf.server_url = "https://ctl.example.net:8443/x";
    conf.base_domain = "tail.example.net";
    conf.magic_dns = 1;
    conf.dns_config_json = "{\"FallbackResolvers\":[{\"Addr\":\"9.9.9.9\"}],"
                           "\"Domains\":[\"corp.example.\",\"tail.example.net\"],"
                           "\"Routes\":{\"corp.example.\":null,"
                           "\"lab.example.\":[{\"Addr\":\"10.0.0.53\"}]},"
                           "\"ExtraRecords\":[{\"Name\":\"grafana.tail.example.net\","
                           "\"Type\":\"A\",\"Value\":\"100.64.0.3\"}]}";
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_SUCCESS);
    upsert(m, node(1, "a", 1), NULL);
    got = full(m, 1, NOW);
    assert_json(get(got, "DNSConfig"),
                "{\"FallbackResolvers\":[{\"Addr\":\"9.9.9.9\"}],"
                "\"Domains\":[\"tail.example.net\",\"corp.example\"],"
                "\"Routes\":{\"corp.example.\":[],\"lab.example.\":[{\"Addr\":\"10.0.0.53\"}]},"
                "\"ExtraRecords\":[{\"Name\":\"grafana.tail.example.net\",\"Type\":\"A\","
                "\"Value\":\"100.64.0.3\"}],\"Proxied\":true}");
    assert_string_equal(str(got, "Domain"), "ctl.example.net");
    json_decref(got);
    /* no MagicDNS, no base domain: bare labels, no DNSConfig at all */
    conf.base_domain = NULL;
    conf.dns_config_json = NULL;
    assert_int_equal(ts_map_set_conf(m, &conf, pool, &err), APR_SUCCESS);
    got = full(m, 1, NOW);
    assert_null(get(got, "DNSConfig"));
    assert_string_equal(str(got, "Node.Name"), "a");
    json_decref(got);
}

static void test_primary_failover_delta(void **state)
{
    ts_map_t *m = settled_view();
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    upsert(m, node(2, "n2", 1), routes("10.20.0.0/16", 1, 1));
    upsert(m, node(3, "n3", 2), routes("10.20.0.0/16", 1, 1));
    ts_map_delta_unref(delta(m, NOW));
    /* router 2 goes away: 3 takes over; both entries change beyond what a patch carries */
    ts_map_node_set_online(m, 2, 0, NOW);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_int_equal(json_array_size(get(got, "PeersChanged")), 2);
    assert_null(get(got, "PeersChanged.0.PrimaryRoutes"));
    assert_true(json_is_false(get(got, "PeersChanged.0.Online")));
    assert_string_equal(strings(get(got, "PeersChanged.1.PrimaryRoutes"), 0), "10.20.0.0/16");
    json_decref(got);
    got = delta_for(d, 3);                      /* the new primary learns it in its Node */
    assert_string_equal(strings(get(got, "Node.PrimaryRoutes"), 0), "10.20.0.0/16");
    assert_int_equal(json_array_size(get(got, "PeersChanged")), 1);
    json_decref(got);
    ts_map_delta_unref(d);
}

static void test_bad_rows(void **state)
{
    ts_map_t *m = settled_view();
    const char *err = NULL;
    ts_map_delta_t *d;
    ts_node_t *n;
    json_t *got;

    (void)state;
#define REFUSED(field, value, msg) \
    do { n = node(7, "n7", 1); n->field = value; \
         assert_int_equal(ts_map_node_upsert(m, n, NULL, pool, &err), APR_EINVAL); \
         assert_string_equal(err, msg); } while (0)
    REFUSED(node_key, "nodekey:12", "node 7 (\"n7\"): node_key: not a key of that kind");
    REFUSED(machine_key, key("nodekey:", 'a'), "node 7 (\"n7\"): machine_key: not a key of that kind");
    REFUSED(disco_key, "discokey:zz", "node 7 (\"n7\"): disco_key: not a key of that kind");
    REFUSED(given_name, "Not_A_Label", "node 7 (\"Not_A_Label\"): given_name: not a DNS label "
                                      "([a-z0-9-], 1 to 63 characters)");
    REFUSED(ipv4, "fd7a:115c:a1e0::7", "node 7 (\"n7\"): ipv4: not an address of that family");
    REFUSED(host_info, "{\"OS\":", "node 7 (\"n7\"): host_info: not valid JSON");
    REFUSED(host_info, "[]", "node 7 (\"n7\"): host_info: not a JSON object");
    REFUSED(endpoints, "[1]", "node 7 (\"n7\"): endpoints: has an invalid entry");
    REFUSED(tags, "[\"ci\"]", "node 7 (\"n7\"): tags: has an invalid entry");
#undef REFUSED
    n = node(7, "n7", 1);
    assert_int_equal(ts_map_node_upsert(m, n, routes("10.0.0.0/33", 1, 1), pool, &err),
                     APR_EINVAL);
    assert_string_equal(err, "node 7 (\"n7\"): routes: bad prefix \"10.0.0.0/33\"");
    assert_false(ts_map_has_node(m, 7));
    no_delta(m, NOW);
    /* a known node whose row turns bad leaves the view: one bad node must not break maps */
    n = node(2, "n2", 1);
    n->tags = "[\"tag:\"]";
    assert_int_equal(ts_map_node_upsert(m, n, NULL, pool, &err), APR_EINVAL);
    assert_false(ts_map_has_node(m, 2));
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(get(got, "PeersRemoved"), "[2]");
    json_decref(got);
    ts_map_delta_unref(d);
    /* all-zero disco key = unknown; zone-free canonical addresses */
    n = node(8, "n8", 1);
    n->disco_key = "discokey:0000000000000000000000000000000000000000000000000000000000000000";
    n->ipv6 = "FD7A:115C:A1E0:0:0:0:0:8";
    n->node_key = "nodekey:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    upsert(m, n, NULL);
    got = full(m, 1, NOW);
    assert_int_equal(num(got, "Peers.1.ID"), 8);
    assert_null(get(got, "Peers.1.DiscoKey"));
    assert_string_equal(str(got, "Peers.1.Addresses.1"), "fd7a:115c:a1e0::8/128");
    assert_string_equal(str(got, "Peers.1.Key"), key("nodekey:", 'a'));
    json_decref(got);
}

static void test_user_profiles(void **state)
{
    ts_map_t *m = settled_view();
    ts_user_t u = { 0 };
    ts_map_delta_t *d;
    json_t *got;

    (void)state;
    user(m, 2, "bob", "bob@example.net", "Bob");
    no_delta(m, NOW);
    user(m, 2, "bob", "bob@example.net", "Robert");
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(got, "{\"UserProfiles\":[{\"ID\":2,\"LoginName\":\"bob@example.net\","
                     "\"DisplayName\":\"Robert\"}],\"ControlTime\":\"2026-08-22T12:00:00Z\"}");
    json_decref(got);
    ts_map_delta_unref(d);
    /* fallbacks: provider id, then the numeric id; a picture when set; bad UTF-8 replaced */
    u.id = 9;
    u.provider_identifier = "https://idp.example/sub-9";
    u.profile_pic_url = "https://idp.example/9.png";
    u.display_name = "\xff\xfe";
    assert_int_equal(ts_map_user_upsert(m, &u), APR_SUCCESS);
    d = delta(m, NOW);
    got = delta_for(d, 1);
    assert_json(get(got, "UserProfiles"),
                "[{\"ID\":9,\"LoginName\":\"https://idp.example/sub-9\",\"DisplayName\":"
                "\"https://idp.example/sub-9\",\"ProfilePicURL\":\"https://idp.example/9.png\"}]");
    json_decref(got);
    ts_map_delta_unref(d);
    u.id = TS_MAP_TAGGED_USER_ID;
    assert_int_equal(ts_map_user_upsert(m, &u), APR_EINVAL);
    ts_map_user_remove(m, 9);
    ts_map_user_remove(m, 9);
}

/* Streams of several threads render one delta at once, each with its own encoder. */
typedef struct render_job {
    ts_map_delta_t *d;
    apr_int64_t viewer;
    int ok;
} render_job_t;

static void *APR_THREAD_FUNC render_thread(apr_thread_t *t, void *data)
{
    render_job_t *job = data;
    apr_pool_t *p;
    ts_mapframe_enc_t *enc;
    const uint8_t *f;
    apr_size_t len;
    const char *err;
    int i;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    ts_mapframe_enc_create(&enc, p, 0);
    for (i = 0; i < 200; i++)
        job->ok += ts_map_delta_frame(job->d, job->viewer, 1, enc, p, &f, &len, &err) == 0;
    ts_map_delta_unref(job->d);
    apr_pool_destroy(p);
    (void)t;
    return NULL;
}

static void test_delta_threads(void **state)
{
    ts_map_t *m = settled_view();
    ts_mapframe_enc_t *enc;
    render_job_t jobs[4];
    apr_thread_t *th[4];
    ts_map_delta_t *d;
    apr_status_t rv;
    int i;

    (void)state;
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 0), APR_SUCCESS);
    upsert(m, node(4, "n4", 1), NULL);
    assert_int_equal(ts_map_delta_build(m, NOW, enc, &d), APR_SUCCESS);
    for (i = 0; i < 4; i++) {
        jobs[i].d = d;
        jobs[i].viewer = i + 1;           /* viewer 4 renders its own variant */
        jobs[i].ok = 0;
        ts_map_delta_ref(d);
        assert_int_equal(apr_thread_create(&th[i], NULL, render_thread, &jobs[i], pool), 0);
    }
    ts_map_delta_unref(d);                /* the builder's reference goes first */
    for (i = 0; i < 4; i++) {
        apr_thread_join(&rv, th[i]);
        assert_int_equal(jobs[i].ok, 200);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_join),
        cmocka_unit_test(test_delta_leave),
        cmocka_unit_test(test_delta_online_offline),
        cmocka_unit_test(test_delta_endpoints),
        cmocka_unit_test(test_delta_disco_derp_key),
        cmocka_unit_test(test_delta_key_expiry),
        cmocka_unit_test(test_delta_coalescing),
        cmocka_unit_test(test_delta_frames_shared),
        cmocka_unit_test(test_delta_settings),
        cmocka_unit_test(test_dns_config),
        cmocka_unit_test(test_primary_failover_delta),
        cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_user_profiles),
        cmocka_unit_test(test_delta_threads),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
