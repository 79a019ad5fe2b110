/* test_store_entities.c: cmocka tests of each table's operations on sqlite3 and MariaDB:
 * CRUD, uniqueness answered as ECONFLICT naming the field, validation, foreign keys. */
#include "test_store_fixture.h"

static ts_user_t *new_user(fx_t *fx, const char *name)
{
    ts_user_t *u = apr_pcalloc(fx->pool, sizeof(*u));
    const char *err = NULL;

    u->name = name;
    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, u, &err));
    return u;
}

static ts_node_t *node_template(fx_t *fx, int n, apr_int64_t user_id)
{
    ts_node_t *node = apr_pcalloc(fx->pool, sizeof(*node));

    node->machine_key = fx_key(fx->pool, "mkey:", n);
    node->node_key = fx_key(fx->pool, "nodekey:", n);
    node->disco_key = fx_key(fx->pool, "discokey:", n);
    node->given_name = apr_psprintf(fx->pool, "node-%d", n);
    node->hostname = apr_psprintf(fx->pool, "Node %d.local", n);
    node->ipv4 = apr_psprintf(fx->pool, "100.64.0.%d", n);
    node->ipv6 = apr_psprintf(fx->pool, "fd7a:115c:a1e0::%x", n);
    node->endpoints = "[\"192.0.2.1:41641\"]";
    node->host_info = "{\"OS\":\"linux\"}";
    node->tags = "[]";
    node->user_id = user_id;
    node->register_method = "cli";
    node->cap_version = 106;
    return node;
}

static void test_user_crud(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t u = { .name = "alice", .display_name = "Alice \xf0\x9f\x90\x87 Ünïcode",
                    .email = "alice@example.com", .provider = "oidc",
                    .provider_identifier = "https://idp.example/#alice" };
    ts_user_t *got = NULL;
    apr_array_header_t *list;

    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &u, &err));
    assert_true(u.id > 0);
    assert_true(u.created_at > 0 && u.created_at == u.updated_at);
    ASSERT_RV(APR_SUCCESS, ts_store_user_get(fx->st, fx->pool, u.id, &got, &err));
    assert_string_equal(got->name, "alice");
    assert_string_equal(got->display_name, u.display_name);   /* 4-byte UTF-8 survives */
    assert_string_equal(got->email, "alice@example.com");
    assert_null(got->profile_pic_url);
    assert_int_equal(got->created_at, u.created_at);
    assert_int_equal(got->version, u.version);
    ASSERT_RV(APR_SUCCESS, ts_store_user_get_by_name(fx->st, fx->pool, "alice", &got, &err));
    assert_int_equal(got->id, u.id);
    ASSERT_RV(APR_SUCCESS, ts_store_user_get_by_provider_id(fx->st, fx->pool,
                                                            "https://idp.example/#alice",
                                                            &got, &err));
    assert_int_equal(got->id, u.id);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_user_get_by_name(fx->st, fx->pool, "ALICE", &got,
                                                            &err));
    assert_non_null(strstr(err, "not found"));
    assert_null(got);

    u.display_name = "";         /* empty optional text is stored as NULL */
    u.email = "alice@new.example";
    ASSERT_RV(APR_SUCCESS, ts_store_user_update(fx->st, fx->pool, &u, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_user_get(fx->st, fx->pool, u.id, &got, &err));
    assert_null(got->display_name);
    assert_string_equal(got->email, "alice@new.example");
    assert_true(got->version > 1);

    new_user(fx, "bob");
    ASSERT_RV(APR_SUCCESS, ts_store_user_list(fx->st, fx->pool, &list, &err));
    assert_int_equal(list->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(list, 0, ts_user_t *)->name, "alice");
    assert_string_equal(APR_ARRAY_IDX(list, 1, ts_user_t *)->name, "bob");

    ASSERT_RV(APR_SUCCESS, ts_store_user_delete(fx->st, fx->pool, u.id, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_user_get(fx->st, fx->pool, u.id, &got, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_user_delete(fx->st, fx->pool, u.id, &err));
    u.id = 424242;
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_user_update(fx->st, fx->pool, &u, &err));
    assert_non_null(strstr(err, "424242"));
}

static void test_user_uniqueness_and_validation(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t a = { .name = "carol", .provider_identifier = "iss#1" };
    ts_user_t b = { .name = "carol" };
    ts_user_t c = { .name = "dave", .provider_identifier = "iss#1" };
    ts_user_t d = { .name = "erin", .provider_identifier = "" };
    ts_user_t e = { .name = "frank", .provider_identifier = "" };
    ts_user_t bad = { .name = NULL };

    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &a, &err));
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_user_create(fx->st, fx->pool, &b, &err));
    assert_non_null(strstr(err, "user name already exists"));
    assert_int_equal(b.id, 0);
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_user_create(fx->st, fx->pool, &c, &err));
    assert_non_null(strstr(err, "provider_identifier already exists"));
    /* NULL (from "") provider identifiers never collide */
    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &d, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &e, &err));
    /* renaming onto a taken name is a conflict too */
    d.name = "carol";
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_user_update(fx->st, fx->pool, &d, &err));
    assert_non_null(strstr(err, "name"));

    ASSERT_RV(APR_EINVAL, ts_store_user_create(fx->st, fx->pool, &bad, &err));
    assert_string_equal(err, "user: name is required");
    bad.name = apr_pstrndup(fx->pool, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxx", 256);
    ASSERT_RV(APR_EINVAL, ts_store_user_create(fx->st, fx->pool, &bad, &err));
    assert_non_null(strstr(err, "name is longer than 255 bytes"));
    assert_int_equal(fx_count(fx, "users"), 3);
}

static apr_array_header_t *routes_of(apr_pool_t *p, int n, ...)
{
    apr_array_header_t *routes = apr_array_make(p, n, sizeof(ts_route_t));
    va_list ap;
    int i;

    va_start(ap, n);
    for (i = 0; i < n; i++) {
        ts_route_t *r = &APR_ARRAY_PUSH(routes, ts_route_t);
        r->prefix = va_arg(ap, const char *);
        r->advertised = 1;
        r->approved = va_arg(ap, int);
    }
    va_end(ap);
    return routes;
}

static void assert_node_equal(const ts_node_t *a, const ts_node_t *b)
{
    assert_int_equal(a->id, b->id);
    assert_string_equal(a->machine_key, b->machine_key);
    assert_string_equal(a->node_key, b->node_key);
    assert_string_equal(a->disco_key, b->disco_key);
    assert_string_equal(a->endpoints, b->endpoints);
    assert_string_equal(a->host_info, b->host_info);
    assert_string_equal(a->ipv4, b->ipv4);
    assert_string_equal(a->ipv6, b->ipv6);
    assert_string_equal(a->hostname, b->hostname);
    assert_string_equal(a->given_name, b->given_name);
    assert_int_equal(a->user_id, b->user_id);
    assert_string_equal(a->register_method, b->register_method);
    assert_string_equal(a->tags, b->tags);
    assert_int_equal(a->auth_key_id, b->auth_key_id);
    assert_int_equal(a->ephemeral, b->ephemeral);
    assert_int_equal(a->cap_version, b->cap_version);
    assert_int_equal(a->last_seen, b->last_seen);
    assert_int_equal(a->expiry, b->expiry);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->updated_at, b->updated_at);
}

static void test_node_create_get_list(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t *u = new_user(fx, "owner"), *other = new_user(fx, "other");
    ts_node_t *n = node_template(fx, 1, u->id), *m = node_template(fx, 2, other->id), *got;
    apr_array_header_t *list, *routes;

    n->expiry = apr_time_from_sec(2000000000);
    n->ephemeral = 1;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n,
                                                routes_of(fx->pool, 2, "10.0.0.0/24", 0,
                                                          "0.0.0.0/0", 1), &err));
    m->machine_key = n->machine_key;           /* same machine, another user */
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, m, NULL, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n->id, &got, &err));
    assert_node_equal(got, n);
    ASSERT_RV(APR_SUCCESS, ts_store_node_get_by_node_key(fx->st, fx->pool, n->node_key, &got,
                                                         &err));
    assert_int_equal(got->id, n->id);
    ASSERT_RV(APR_SUCCESS, ts_store_node_get_by_given_name(fx->st, fx->pool, "node-2", &got,
                                                           &err));
    assert_int_equal(got->id, m->id);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_get(fx->st, fx->pool, 999, &got, &err));
    assert_non_null(strstr(err, "node 999"));

    ASSERT_RV(APR_SUCCESS, ts_store_node_list(fx->st, fx->pool, &list, &err));
    assert_int_equal(list->nelts, 2);
    ASSERT_RV(APR_SUCCESS, ts_store_node_list_by_user(fx->st, fx->pool, other->id, &list, &err));
    assert_int_equal(list->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(list, 0, ts_node_t *)->id, m->id);
    ASSERT_RV(APR_SUCCESS, ts_store_node_list_by_machine_key(fx->st, fx->pool, n->machine_key,
                                                             &list, &err));
    assert_int_equal(list->nelts, 2);
    ASSERT_RV(APR_SUCCESS, ts_store_node_list_changed_since(fx->st, fx->pool, n->version, &list,
                                                            &err));
    assert_int_equal(list->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(list, 0, ts_node_t *)->id, m->id);

    ASSERT_RV(APR_SUCCESS, ts_store_node_routes_get(fx->st, fx->pool, n->id, &routes, &err));
    assert_int_equal(routes->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(routes, 0, ts_route_t).prefix, "0.0.0.0/0");
    assert_int_equal(APR_ARRAY_IDX(routes, 0, ts_route_t).approved, 1);
    assert_string_equal(APR_ARRAY_IDX(routes, 1, ts_route_t).prefix, "10.0.0.0/24");
    assert_int_equal(APR_ARRAY_IDX(routes, 1, ts_route_t).approved, 0);
    assert_int_equal(APR_ARRAY_IDX(routes, 1, ts_route_t).advertised, 1);
}

static void test_node_update_routes_seen_delete(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t *u = new_user(fx, "owner");
    ts_node_t *n = node_template(fx, 3, u->id), *got, stale;
    apr_array_header_t *routes, *changes;
    apr_int64_t v0, through, g;

    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n,
                                                routes_of(fx->pool, 1, "192.168.1.0/24", 0),
                                                &err));
    stale = *n;
    v0 = n->version;
    n->hostname = "renamed";
    n->tags = "[\"tag:web\"]";
    n->user_id = 0;                        /* becomes a tagged node */
    n->expiry = 0;
    ASSERT_RV(APR_SUCCESS, ts_store_node_update(fx->st, fx->pool, n, &err));
    assert_true(n->version > v0);
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n->id, &got, &err));
    assert_node_equal(got, n);
    assert_int_equal(got->user_id, 0);

    /* optimistic check: the copy taken before the update is stale now */
    stale.hostname = "lost update";
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_update(fx->st, fx->pool, &stale, &err));
    assert_non_null(strstr(err, "changed by someone else"));
    stale.version = 0;                     /* unconditional */
    ASSERT_RV(APR_SUCCESS, ts_store_node_update(fx->st, fx->pool, &stale, &err));

    ASSERT_RV(APR_SUCCESS, ts_store_node_routes_set(fx->st, fx->pool, n->id,
                                                    routes_of(fx->pool, 2, "::/0", 1,
                                                              "0.0.0.0/0", 1), &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_routes_get(fx->st, fx->pool, n->id, &routes, &err));
    assert_int_equal(routes->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(routes, 0, ts_route_t).prefix, "0.0.0.0/0");
    assert_string_equal(APR_ARRAY_IDX(routes, 1, ts_route_t).prefix, "::/0");
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n->id, &got, &err));
    assert_int_equal(got->version, g);     /* route changes make the node "changed" */
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_routes_set(fx->st, fx->pool, 999, routes,
                                                           &err));

    ASSERT_RV(APR_SUCCESS, ts_store_node_set_last_seen(fx->st, fx->pool, n->id,
                                                       apr_time_from_sec(1700000000), &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n->id, &got, &err));
    assert_int_equal(got->last_seen, apr_time_from_sec(1700000000));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_set_last_seen(fx->st, fx->pool, 999, 1, &err));

    ASSERT_RV(APR_SUCCESS, ts_store_node_delete(fx->st, fx->pool, n->id, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_get(fx->st, fx->pool, n->id, &got, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_delete(fx->st, fx->pool, n->id, &err));
    assert_int_equal(fx_count(fx, "node_routes"), 0);
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, g - 1, 0, &changes,
                                                  &through, &err));
    assert_int_equal(changes->nelts, 1);
    assert_string_equal(APR_ARRAY_IDX(changes, 0, ts_change_t *)->kind, TS_CHANGE_NODE_DELETED);
    assert_int_equal(APR_ARRAY_IDX(changes, 0, ts_change_t *)->node_id, n->id);
    assert_non_null(strstr(APR_ARRAY_IDX(changes, 0, ts_change_t *)->payload, n->node_key));
}

/* Each unique node column, violated alone: ECONFLICT, and the message names the column. */
static void test_node_uniqueness_names_the_field(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    static const char *const fields[] = { "node_key", "given_name", "ipv4", "ipv6" };
    ts_node_t *a = node_template(fx, 10, 0), *b;
    size_t i;

    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, a, NULL, &err));
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        b = node_template(fx, 20 + (int)i, 0);
        if (i == 0) b->node_key = a->node_key;
        if (i == 1) b->given_name = a->given_name;
        if (i == 2) b->ipv4 = a->ipv4;
        if (i == 3) b->ipv6 = a->ipv6;
        ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_create(fx->st, fx->pool, b, NULL, &err));
        if (!strstr(err, apr_pstrcat(fx->pool, "node ", fields[i], " already exists", NULL))) {
            fail_msg("message does not name %s: %s", fields[i], err);
        }
        assert_int_equal(b->id, 0);
    }
    /* NULL addresses may repeat */
    b = node_template(fx, 30, 0);
    b->ipv4 = b->ipv6 = NULL;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, b, NULL, &err));
    b = node_template(fx, 31, 0);
    b->ipv4 = b->ipv6 = "";
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, b, NULL, &err));
    assert_int_equal(fx_count(fx, "nodes"), 3);
    /* an update into a taken name is a conflict as well */
    b->given_name = a->given_name;
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_update(fx->st, fx->pool, b, &err));
    assert_non_null(strstr(err, "given_name"));
}

static void test_node_validation(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_node_t *n;

    n = node_template(fx, 40, 0);
    n->node_key = "nodekey:ABCDEF";
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "node_key"));
    n = node_template(fx, 40, 0);
    n->machine_key = fx_key(fx->pool, "nodekey:", 40);
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "machine_key must be 'mkey:'"));
    n = node_template(fx, 40, 0);
    n->given_name = NULL;
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_string_equal(err, "node: given_name is required");
    n = node_template(fx, 40, 0);
    n->ipv6 = "fd7a:115c:a1e0:0::1";
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "canonical IPv6"));
    n = node_template(fx, 40, 0);
    n->ipv4 = "100.64.0.256";
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    n = node_template(fx, 40, 0);
    n->host_info = "{\"OS\":";
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "host_info is not valid JSON"));
    n = node_template(fx, 40, 0);
    n->endpoints = "{}";
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "endpoints must be a JSON array"));
    n = node_template(fx, 40, 0);
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n,
                                               routes_of(fx->pool, 1, "10.0.0.1/8", 0), &err));
    assert_non_null(strstr(err, "10.0.0.1/8"));
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n,
                                               routes_of(fx->pool, 1, "10.0.0.0/33", 0), &err));
    n->user_id = 999;
    ASSERT_RV(TS_STORE_EREFERENCE, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "user_id 999 does not exist"));
    assert_int_equal(fx_count(fx, "nodes"), 0);
    assert_int_equal(fx_int(fx, "SELECT generation FROM ts_state"), 0);
}

static void test_user_delete_cascades(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t *u = new_user(fx, "leaver"), *stays = new_user(fx, "stays");
    ts_node_t *n1 = node_template(fx, 50, u->id), *n2 = node_template(fx, 51, u->id);
    ts_node_t *n3 = node_template(fx, 52, stays->id), *got;
    ts_preauth_key_t k = { .prefix = "leaverkey", .reusable = 1 }, *gk;
    ts_registration_t r = { .auth_id = "reg-cascade" }, *gr;
    apr_array_header_t *changes;
    apr_int64_t g, through;
    int i, deleted = 0;

    k.user_id = u->id;
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_create(fx->st, fx->pool, &k, "x", &err));
    n1->auth_key_id = k.id;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n1,
                                                routes_of(fx->pool, 1, "10.5.0.0/16", 1), &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n2, NULL, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n3, NULL, &err));
    r.machine_key = n1->machine_key;
    r.node_key = n1->node_key;
    r.expires_at = apr_time_now() + apr_time_from_sec(900);
    ASSERT_RV(APR_SUCCESS, ts_store_registration_create(fx->st, fx->pool, &r, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_resolve(fx->st, fx->pool, r.auth_id,
                                                         TS_REG_APPROVED, n1->id, u->id, NULL,
                                                         &err));
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));

    ASSERT_RV(APR_SUCCESS, ts_store_user_delete(fx->st, fx->pool, u->id, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_get(fx->st, fx->pool, n1->id, &got, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_get(fx->st, fx->pool, n2->id, &got, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n3->id, &got, &err));
    assert_int_equal(fx_count(fx, "node_routes"), 0);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_get(fx->st, fx->pool, k.id, &gk, &err));
    assert_int_equal(gk->user_id, 0);       /* ON DELETE SET NULL */
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, r.auth_id, &gr, &err));
    assert_int_equal(gr->user_id, 0);
    assert_int_equal(gr->node_id, 0);

    /* one transaction: node.deleted for each node, then user.deleted */
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, g, 0, &changes, &through,
                                                  &err));
    assert_int_equal(through, g + 1);
    assert_int_equal(changes->nelts, 3);
    for (i = 0; i < 2; i++) {
        ts_change_t *c = APR_ARRAY_IDX(changes, i, ts_change_t *);
        assert_string_equal(c->kind, TS_CHANGE_NODE_DELETED);
        assert_int_equal(c->node_id, i == 0 ? n1->id : n2->id);
        assert_non_null(strstr(c->payload, i == 0 ? n1->node_key : n2->node_key));
    }
    assert_string_equal(APR_ARRAY_IDX(changes, 2, ts_change_t *)->kind, TS_CHANGE_USER_DELETED);

    /* deleting a key a node registered with leaves the node, without the key */
    k.user_id = 0;
    n3->auth_key_id = k.id;
    ASSERT_RV(APR_SUCCESS, ts_store_node_update(fx->st, fx->pool, n3, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_delete(fx->st, fx->pool, k.id, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n3->id, &got, &err));
    assert_int_equal(got->auth_key_id, 0);
    ASSERT_RV(APR_SUCCESS, ts_store_registration_delete_expired(fx->st, fx->pool,
                                                                apr_time_now(), &deleted, &err));
    assert_int_equal(deleted, 0);
}

static void test_preauth_keys(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t *u = new_user(fx, "keyholder");
    ts_preauth_key_t k = { .prefix = "abcdef123456", .tags = "[]", .description = "ci" };
    ts_preauth_key_t dup = { .prefix = "abcdef123456" }, tagonly = { .prefix = "tagonly" };
    ts_preauth_key_t ghost = { .prefix = "ghost", .user_id = 999 }, *got;
    apr_array_header_t *list;

    k.user_id = u->id;
    k.expiration = apr_time_now() + apr_time_from_sec(3600);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_create(fx->st, fx->pool, &k, "0f1e2d3c4b5a",
                                                       &err));
    assert_true(k.id > 0);
    assert_non_null(k.hash);
    assert_null(strstr(k.hash, "0f1e2d3c4b5a"));
    assert_int_equal(strncmp(k.hash, "b2b256:", 7), 0);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_verify(fx->st, fx->pool, "abcdef123456",
                                                       "0f1e2d3c4b5a", &got, &err));
    assert_int_equal(got->id, k.id);
    assert_int_equal(got->user_id, u->id);
    assert_string_equal(got->description, "ci");
    assert_int_equal(got->expiration, k.expiration);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_preauth_key_verify(fx->st, fx->pool, "abcdef123456",
                                                              "wrong", &got, &err));
    assert_string_equal(err, "pre-auth key: no key matches");
    assert_null(got);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_preauth_key_verify(fx->st, fx->pool, "nope",
                                                              "0f1e2d3c4b5a", &got, &err));
    assert_string_equal(err, "pre-auth key: no key matches");
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_preauth_key_create(fx->st, fx->pool, &dup, "y",
                                                              &err));
    assert_non_null(strstr(err, "prefix already exists"));
    ASSERT_RV(TS_STORE_EREFERENCE, ts_store_preauth_key_create(fx->st, fx->pool, &ghost, "y",
                                                               &err));
    ASSERT_RV(APR_EINVAL, ts_store_preauth_key_create(fx->st, fx->pool, &tagonly, "", &err));
    tagonly.tags = "[\"tag:ci\"]";
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_create(fx->st, fx->pool, &tagonly, "z", &err));

    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_list(fx->st, fx->pool, 0, &list, &err));
    assert_int_equal(list->nelts, 2);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_list(fx->st, fx->pool, u->id, &list, &err));
    assert_int_equal(list->nelts, 1);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_get_by_prefix(fx->st, fx->pool, "tagonly", &got,
                                                              &err));
    assert_string_equal(got->tags, "[\"tag:ci\"]");
    assert_int_equal(got->user_id, 0);

    k.revoked = apr_time_now();
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_update(fx->st, fx->pool, &k, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_update(fx->st, fx->pool, &k, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_get(fx->st, fx->pool, k.id, &got, &err));
    assert_int_equal(got->revoked, k.revoked);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_delete(fx->st, fx->pool, k.id, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_preauth_key_get(fx->st, fx->pool, k.id, &got, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_preauth_key_delete(fx->st, fx->pool, k.id, &err));
    k.id = 777;
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_preauth_key_update(fx->st, fx->pool, &k, &err));
}

static ts_preauth_key_t *key_for_use(fx_t *fx, const char *prefix, int reusable,
                                     apr_time_t expiration, apr_time_t revoked)
{
    ts_preauth_key_t *k = apr_pcalloc(fx->pool, sizeof(*k));
    const char *err = NULL;

    k->prefix = prefix;
    k->reusable = reusable;
    k->expiration = expiration;
    k->revoked = revoked;
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_create(fx->st, fx->pool, k, "secret", &err));
    return k;
}

static void test_node_create_uses_preauth_key(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    apr_time_t now = apr_time_now();
    ts_preauth_key_t *once = key_for_use(fx, "once", 0, 0, 0);
    ts_preauth_key_t *many = key_for_use(fx, "many", 1, now + apr_time_from_sec(60), 0);
    ts_preauth_key_t *old = key_for_use(fx, "old", 1, now - 1, 0);
    ts_preauth_key_t *revoked = key_for_use(fx, "revoked", 1, 0, now);
    ts_preauth_key_t *got;
    ts_node_t *n;
    apr_int64_t g;

    n = node_template(fx, 60, 0);
    n->auth_key_id = once->id;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_get(fx->st, fx->pool, once->id, &got, &err));
    assert_int_equal(got->used, 1);
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    n = node_template(fx, 61, 0);
    n->auth_key_id = once->id;
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "single-use and already used"));
    n->auth_key_id = old->id;
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "expired"));
    n->auth_key_id = revoked->id;
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "revoked"));
    n->auth_key_id = 4242;
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "pre-auth key 4242 not found"));
    assert_int_equal(fx_int(fx, "SELECT generation FROM ts_state"), g);

    n->auth_key_id = many->id;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    n = node_template(fx, 62, 0);
    n->auth_key_id = many->id;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_int_equal(fx_count(fx, "nodes"), 3);
}

static void test_api_keys(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_api_key_t k = { .prefix = "apikey01" }, dup = { .prefix = "apikey01" }, *got;
    ts_preauth_key_t *pak;
    apr_array_header_t *list;

    k.expiration = apr_time_now() + apr_time_from_sec(86400);
    ASSERT_RV(APR_SUCCESS, ts_store_api_key_create(fx->st, fx->pool, &k, "topsecret", &err));
    ASSERT_RV(APR_SUCCESS, ts_store_api_key_verify(fx->st, fx->pool, "apikey01", "topsecret",
                                                   &got, &err));
    assert_int_equal(got->id, k.id);
    assert_int_equal(got->expiration, k.expiration);
    assert_int_equal(got->last_seen, 0);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_api_key_verify(fx->st, fx->pool, "apikey01",
                                                          "topsecreT", &got, &err));
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_api_key_create(fx->st, fx->pool, &dup, "x", &err));
    assert_non_null(strstr(err, "prefix already exists"));
    /* the same secret under the same prefix as a pre-auth key does not verify there */
    pak = key_for_use(fx, "apikey01", 0, 0, 0);
    assert_string_not_equal(pak->hash, k.hash);

    k.last_seen = apr_time_now();
    ASSERT_RV(APR_SUCCESS, ts_store_api_key_update(fx->st, fx->pool, &k, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_api_key_get_by_prefix(fx->st, fx->pool, "apikey01", &got,
                                                          &err));
    assert_int_equal(got->last_seen, k.last_seen);
    ASSERT_RV(APR_SUCCESS, ts_store_api_key_list(fx->st, fx->pool, &list, &err));
    assert_int_equal(list->nelts, 1);
    ASSERT_RV(APR_SUCCESS, ts_store_api_key_delete(fx->st, fx->pool, k.id, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_api_key_get_by_prefix(fx->st, fx->pool, "apikey01",
                                                                 &got, &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_api_key_update(fx->st, fx->pool, &k, &err));
}

static void test_policy_latest_wins(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    const char *hujson = "{\n  // comment\n  \"acls\": [],\n}\n";
    ts_store_policy_t *pol = NULL;
    apr_int64_t id1 = 0, id2 = 0;

    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_policy_get(fx->st, fx->pool, &pol, &err));
    assert_string_equal(err, "policy: none stored yet");
    ASSERT_RV(APR_SUCCESS, ts_store_policy_set(fx->st, fx->pool, "{}", &id1, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_policy_set(fx->st, fx->pool, hujson, &id2, &err));
    assert_true(id2 > id1);
    ASSERT_RV(APR_SUCCESS, ts_store_policy_get(fx->st, fx->pool, &pol, &err));
    assert_int_equal(pol->id, id2);
    assert_string_equal(pol->data, hujson);
    assert_true(pol->created_at > 0);
    ASSERT_RV(APR_EINVAL, ts_store_policy_set(fx->st, fx->pool, "", NULL, &err));
}

static ts_registration_t *new_registration(fx_t *fx, const char *auth_id, int n,
                                           apr_time_t expires_at)
{
    ts_registration_t *r = apr_pcalloc(fx->pool, sizeof(*r));
    const char *err = NULL;

    r->auth_id = auth_id;
    r->machine_key = fx_key(fx->pool, "mkey:", n);
    r->node_key = fx_key(fx->pool, "nodekey:", n);
    r->old_node_key = fx_key(fx->pool, "nodekey:", n + 1);
    r->hostinfo = "{\"Hostname\":\"laptop\"}";
    r->ephemeral = 1;
    r->req_expiry = apr_time_from_sec(2000000000);
    r->expires_at = expires_at;
    ASSERT_RV(APR_SUCCESS, ts_store_registration_create(fx->st, fx->pool, r, &err));
    return r;
}

static void test_registration_resolves_once(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t *u = new_user(fx, "approver");
    ts_registration_t *r = new_registration(fx, "authid-0001", 70,
                                            apr_time_now() + apr_time_from_sec(900));
    ts_registration_t dup, *got;

    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, "authid-0001", &got,
                                                     &err));
    assert_string_equal(got->node_key, r->node_key);
    assert_string_equal(got->old_node_key, r->old_node_key);
    assert_string_equal(got->hostinfo, r->hostinfo);
    assert_int_equal(got->req_expiry, r->req_expiry);
    assert_int_equal(got->expires_at, r->expires_at);
    assert_int_equal(got->created_at, r->created_at);
    assert_int_equal(got->ephemeral, 1);
    assert_int_equal(got->state, TS_REG_PENDING);
    dup = *r;
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_registration_create(fx->st, fx->pool, &dup, &err));
    assert_string_equal(err, "creating registration 'authid-0001': registration auth_id "
                        "'authid-0001' already exists");
    dup.expires_at = 0;
    ASSERT_RV(APR_EINVAL, ts_store_registration_create(fx->st, fx->pool, &dup, &err));

    ASSERT_RV(APR_SUCCESS, ts_store_registration_resolve(fx->st, fx->pool, "authid-0001",
                                                         TS_REG_APPROVED, 0, u->id, NULL,
                                                         &err));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, "authid-0001", &got,
                                                     &err));
    assert_int_equal(got->state, TS_REG_APPROVED);
    assert_int_equal(got->user_id, u->id);
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_registration_resolve(fx->st, fx->pool, "authid-0001",
                                                                TS_REG_REJECTED, 0, 0, "late",
                                                                &err));
    assert_non_null(strstr(err, "already approved"));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_registration_resolve(fx->st, fx->pool, "missing",
                                                                TS_REG_REJECTED, 0, 0, "x",
                                                                &err));
    ASSERT_RV(APR_EINVAL, ts_store_registration_resolve(fx->st, fx->pool, "authid-0001",
                                                        TS_REG_PENDING, 0, 0, NULL, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_delete(fx->st, fx->pool, "authid-0001", &err));
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_registration_delete(fx->st, fx->pool, "authid-0001",
                                                               &err));
}

static void test_registration_expiry_sweep(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    apr_time_t now = apr_time_now();
    ts_registration_t *got;
    apr_int64_t g;
    int deleted = -1;

    new_registration(fx, "authid-live", 72, now + apr_time_from_sec(900));
    new_registration(fx, "authid-old", 74, now - 1);
    ASSERT_RV(APR_SUCCESS, ts_store_registration_resolve(fx->st, fx->pool, "authid-old",
                                                         TS_REG_REJECTED, 0, 0, "denied",
                                                         &err));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, "authid-old", &got,
                                                     &err));
    assert_int_equal(got->state, TS_REG_REJECTED);
    assert_string_equal(got->error, "denied");
    ASSERT_RV(APR_SUCCESS, ts_store_registration_delete_expired(fx->st, fx->pool, now, &deleted,
                                                                &err));
    assert_int_equal(deleted, 1);
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_registration_get(fx->st, fx->pool, "authid-old",
                                                            &got, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_get(fx->st, fx->pool, "authid-live", &got,
                                                     &err));
    /* a sweep that finds nothing writes nothing */
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_registration_delete_expired(fx->st, fx->pool, now, &deleted,
                                                                &err));
    assert_int_equal(deleted, 0);
    assert_int_equal(fx_int(fx, "SELECT generation FROM ts_state"), g);
}

/* Near the mysql driver's per-column buffer (fldsz, 1 MB by default): a big Hostinfo comes
 * back whole, a bigger one is refused up front rather than truncated on the way back. */
static void test_large_host_info_round_trips(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_node_t *n = node_template(fx, 80, 0), *got;
    apr_size_t size = 900000, i;
    char *big = apr_palloc(fx->pool, size + 1);

    memcpy(big, "{\"Services\":\"", 13);
    for (i = 13; i < size - 2; i++) {
        big[i] = (char)('a' + (i % 26));
    }
    memcpy(big + size - 2, "\"}", 3);
    n->host_info = big;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, n->id, &got, &err));
    assert_int_equal(strlen(got->host_info), size);
    assert_string_equal(got->host_info, big);

    n = node_template(fx, 81, 0);
    big = apr_palloc(fx->pool, 1000003);
    memset(big, ' ', 1000002);
    big[0] = '{';
    big[1000001] = '}';
    big[1000002] = '\0';
    n->host_info = big;
    ASSERT_RV(APR_EINVAL, ts_store_node_create(fx->st, fx->pool, n, NULL, &err));
    assert_non_null(strstr(err, "host_info is longer than"));
}

#define ENTITY_TESTS(full) \
    FX_TEST(test_user_crud, full), \
    FX_TEST(test_user_uniqueness_and_validation, full), \
    FX_TEST(test_node_create_get_list, full), \
    FX_TEST(test_node_update_routes_seen_delete, full), \
    FX_TEST(test_node_uniqueness_names_the_field, full), \
    FX_TEST(test_node_validation, full), \
    FX_TEST(test_user_delete_cascades, full), \
    FX_TEST(test_preauth_keys, full), \
    FX_TEST(test_node_create_uses_preauth_key, full), \
    FX_TEST(test_api_keys, full), \
    FX_TEST(test_policy_latest_wins, full), \
    FX_TEST(test_registration_resolves_once, full), \
    FX_TEST(test_registration_expiry_sweep, full), \
    FX_TEST(test_large_host_info_round_trips, full)

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = { ENTITY_TESTS(FX_SQLITE) };
    const struct CMUnitTest mysql_tests[] = { ENTITY_TESTS(FX_MYSQL) };
    int failed;

    apr_initialize();
    fx_note_mysql();
    failed = cmocka_run_group_tests_name("store entities/sqlite3", sqlite_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("store entities/mysql", mysql_tests, NULL, NULL);
    apr_terminate();
    return failed ? 1 : 0;
}
