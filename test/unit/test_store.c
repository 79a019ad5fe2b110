/* test_store.c: cmocka tests of the store's machinery on sqlite3 and MariaDB: schema apply
 * (twice, racing processes, newer database), generations and the change feed, atomicity. */
#include "test_store_fixture.h"

#define RACERS 6
#define WRITERS 4
#define WRITES_EACH 8

static void test_schema_apply_is_idempotent(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    apr_int64_t g = -1;
    int version = -1;

    /* setup applied it once already */
    ASSERT_RV(APR_SUCCESS, ts_store_schema_apply(fx->st, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_schema_apply(fx->st, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_schema_version(fx->st, fx->pool, &version, &err));
    assert_int_equal(version, TS_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_count(fx, "ts_schema_version"), TS_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_count(fx, "ts_state"), 1);
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    assert_int_equal(g, 0);
    if (strcmp(fx->cfg->driver, "sqlite3") == 0) {
        apr_dbd_results_t *res = NULL;
        apr_dbd_row_t *row = NULL;
        assert_int_equal(apr_dbd_select(fx->raw_driver, fx->pool, fx->raw, &res,
                                        "PRAGMA journal_mode", 0), 0);
        assert_int_equal(apr_dbd_get_row(fx->raw_driver, fx->pool, res, &row, -1), 0);
        assert_string_equal(apr_dbd_get_entry(fx->raw_driver, row, 0), "wal");
        while (apr_dbd_get_row(fx->raw_driver, fx->pool, res, &row, -1) == 0) {
        }
    }
}

static void test_schema_version_on_empty_database(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    int version = -1;

    ASSERT_RV(APR_SUCCESS, ts_store_schema_version(fx->st, fx->pool, &version, &err));
    assert_int_equal(version, 0);
    ASSERT_RV(APR_SUCCESS, ts_store_schema_apply(fx->st, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_schema_version(fx->st, fx->pool, &version, &err));
    assert_int_equal(version, TS_STORE_SCHEMA_VERSION);
}

static void test_schema_refuses_newer_database(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;

    fx_exec(fx, "INSERT INTO ts_schema_version (version, applied_at) VALUES (99, 0)");
    ASSERT_RV(TS_STORE_ESCHEMA, ts_store_schema_apply(fx->st, &err));
    assert_non_null(strstr(err, "99"));
    assert_non_null(strstr(err, "newer"));
}

/* Child side of the race: open its own connection, wait for the start signal, apply. */
static void race_child(const fx_t *fx, int go_fd)
{
    apr_pool_t *p;
    ts_store_t *st;
    const char *err = NULL;
    char c;
    int code = 0;

    apr_pool_create(&p, NULL);
    if (ts_store_open(&st, p, fx->cfg->driver, fx->params, &err) != APR_SUCCESS) {
        fprintf(stderr, "child open: %s\n", err);
        _exit(2);
    }
    (void)!read(go_fd, &c, 1);    /* EOF when the parent closes the pipe: all start at once */
    if (ts_store_schema_apply(st, &err) != APR_SUCCESS) {
        fprintf(stderr, "child %d: %s\n", (int)getpid(), err);
        code = 1;
    }
    ts_store_close(st);
    apr_pool_destroy(p);
    /* _exit: leave the parent's inherited connection and pools alone */
    _exit(code);
}

/* Starts n children running fn(fx, go_fd), releases them together, asserts all exit 0. */
static void run_children(fx_t *fx, int n, void (*fn)(const fx_t *, int))
{
    pid_t pids[16];
    int go[2], i, status;

    assert_true(n <= 16);
    assert_int_equal(pipe(go), 0);
    for (i = 0; i < n; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(go[1]);
            fn(fx, go[0]);
        }
    }
    close(go[0]);
    usleep(200 * 1000);          /* let every child connect first */
    close(go[1]);
    for (i = 0; i < n; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

static void test_schema_apply_races_on_fresh_database(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    int version = -1;

    run_children(fx, RACERS, race_child);
    ASSERT_RV(APR_SUCCESS, ts_store_schema_version(fx->st, fx->pool, &version, &err));
    assert_int_equal(version, TS_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_count(fx, "ts_schema_version"), TS_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_count(fx, "ts_state"), 1);
    assert_int_equal(fx_int(fx, "SELECT generation FROM ts_state"), 0);
    /* and the result is usable */
    ASSERT_RV(APR_SUCCESS, ts_store_schema_apply(fx->st, &err));
    {
        ts_user_t u = { .name = "after-race" };
        ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &u, &err));
    }
}

/* The changes of exactly generation g, asserted to be the expected kinds in order. */
static void expect_changes(fx_t *fx, apr_int64_t g, const char *const *kinds, int n)
{
    apr_array_header_t *changes;
    apr_int64_t through = 0, now = 0;
    const char *err = NULL;
    int i;

    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &now, &err));
    assert_int_equal(now, g);
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, g - 1, 0, &changes,
                                                  &through, &err));
    assert_int_equal(through, g);
    assert_int_equal(changes->nelts, n);
    for (i = 0; i < n; i++) {
        ts_change_t *c = APR_ARRAY_IDX(changes, i, ts_change_t *);
        assert_int_equal(c->generation, g);
        assert_string_equal(c->kind, kinds[i]);
        assert_true(c->created_at > 0);
    }
}

static void test_every_write_bumps_generation_and_logs(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t u = { .name = "gen-user" };
    ts_node_t n = { 0 };
    apr_array_header_t *changes;
    apr_int64_t through;
    static const char *const created[] = { TS_CHANGE_USER_CREATED };
    static const char *const updated[] = { TS_CHANGE_USER_UPDATED };
    static const char *const node_created[] = { TS_CHANGE_NODE_CREATED };
    static const char *const seen[] = { TS_CHANGE_NODE_SEEN };
    static const char *const user_deleted[] = { TS_CHANGE_NODE_DELETED,
                                                TS_CHANGE_USER_DELETED };

    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &u, &err));
    assert_int_equal(u.version, 1);
    expect_changes(fx, 1, created, 1);
    u.email = "gen@example.com";
    ASSERT_RV(APR_SUCCESS, ts_store_user_update(fx->st, fx->pool, &u, &err));
    assert_int_equal(u.version, 2);
    expect_changes(fx, 2, updated, 1);
    n.machine_key = fx_key(fx->pool, "mkey:", 1);
    n.node_key = fx_key(fx->pool, "nodekey:", 1);
    n.given_name = "gen-node";
    n.user_id = u.id;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, &n, NULL, &err));
    assert_int_equal(n.version, 3);
    expect_changes(fx, 3, node_created, 1);
    ASSERT_RV(APR_SUCCESS, ts_store_node_set_last_seen(fx->st, fx->pool, n.id,
                                                       apr_time_now(), &err));
    expect_changes(fx, 4, seen, 1);
    ASSERT_RV(APR_SUCCESS, ts_store_user_delete(fx->st, fx->pool, u.id, &err));
    expect_changes(fx, 5, user_deleted, 2);

    /* a failed write changes nothing: no generation, no log row */
    ASSERT_RV(TS_STORE_ENOTFOUND, ts_store_user_delete(fx->st, fx->pool, u.id, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, 0, 0, &changes, &through,
                                                  &err));
    assert_int_equal(through, 5);
    assert_int_equal(changes->nelts, 6);
    assert_int_equal(fx_count(fx, "change_log"), 6);
}

static void test_changes_paging_and_pruning(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    apr_array_header_t *changes;
    apr_int64_t through = 0, pruned = 0;
    int i;

    for (i = 0; i < 5; i++) {
        ts_user_t u = { .name = apr_psprintf(fx->pool, "page-%d", i) };
        ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &u, &err));
    }
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, 1, 2, &changes, &through,
                                                  &err));
    assert_int_equal(through, 3);
    assert_int_equal(changes->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(changes, 0, ts_change_t *)->generation, 2);
    assert_int_equal(APR_ARRAY_IDX(changes, 1, ts_change_t *)->generation, 3);
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, 5, 0, &changes, &through,
                                                  &err));
    assert_int_equal(through, 5);
    assert_int_equal(changes->nelts, 0);
    ASSERT_RV(TS_STORE_EPRUNED, ts_store_changes_since(fx->st, fx->pool, 9, 0, &changes,
                                                       &through, &err));

    ASSERT_RV(APR_SUCCESS, ts_store_changes_prune(fx->st, fx->pool, apr_time_now() + 1,
                                                  &pruned, &err));
    assert_int_equal(pruned, 5);
    assert_int_equal(fx_count(fx, "change_log"), 1);   /* the prune's own row */
    ASSERT_RV(TS_STORE_EPRUNED, ts_store_changes_since(fx->st, fx->pool, 2, 0, &changes,
                                                       &through, &err));
    assert_non_null(strstr(err, "pruned"));
    ASSERT_RV(APR_SUCCESS, ts_store_changes_since(fx->st, fx->pool, 5, 0, &changes, &through,
                                                  &err));
    assert_int_equal(through, 6);
    assert_int_equal(changes->nelts, 1);
    assert_string_equal(APR_ARRAY_IDX(changes, 0, ts_change_t *)->kind, TS_CHANGE_LOG_PRUNED);
}

static apr_array_header_t *two_routes(apr_pool_t *p, const char *a, const char *b)
{
    apr_array_header_t *routes = apr_array_make(p, 2, sizeof(ts_route_t));
    ts_route_t r1 = { a, 1, 0 }, r2 = { b, 1, 1 };

    APR_ARRAY_PUSH(routes, ts_route_t) = r1;
    APR_ARRAY_PUSH(routes, ts_route_t) = r2;
    return routes;
}

static void fault_node(fx_t *fx, ts_node_t *n, apr_int64_t user_id, apr_int64_t key_id)
{
    memset(n, 0, sizeof(*n));
    n->machine_key = fx_key(fx->pool, "mkey:", 7);
    n->node_key = fx_key(fx->pool, "nodekey:", 7);
    n->given_name = "atomic";
    n->ipv4 = "100.64.0.7";
    n->user_id = user_id;
    n->auth_key_id = key_id;
}

/* The second statement of a multi-row write fails: the node, its first route, the key's
 * "used" mark and the generation must all stay as they were. */
static void test_injected_fault_mid_transaction_leaves_nothing(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t u = { .name = "atomic-user" };
    ts_preauth_key_t k = { .prefix = "atomickey", .tags = "[]" };
    ts_preauth_key_t *got;
    ts_node_t n;
    apr_int64_t g = 0;

    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &u, &err));
    k.user_id = u.id;
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_create(fx->st, fx->pool, &k, "s3cret", &err));
    fault_node(fx, &n, u.id, k.id);

    ts_store_test_fail_at(fx->st, "route_insert", 2);
    ASSERT_RV(TS_STORE_EFAULT, ts_store_node_create(fx->st, fx->pool, &n,
                                                    two_routes(fx->pool, "10.1.0.0/16",
                                                               "10.2.0.0/16"), &err));
    assert_non_null(strstr(err, "route_insert"));
    assert_int_equal(n.id, 0);
    assert_int_equal(fx_count(fx, "nodes"), 0);
    assert_int_equal(fx_count(fx, "node_routes"), 0);
    assert_int_equal(fx_count(fx, "change_log"), 2);
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    assert_int_equal(g, 2);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_get(fx->st, fx->pool, k.id, &got, &err));
    assert_int_equal(got->used, 0);

    /* the same write without the fault goes through whole */
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, &n,
                                                two_routes(fx->pool, "10.1.0.0/16",
                                                           "10.2.0.0/16"), &err));
    assert_int_equal(fx_count(fx, "node_routes"), 2);
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    assert_int_equal(g, 3);
    ASSERT_RV(APR_SUCCESS, ts_store_preauth_key_get(fx->st, fx->pool, k.id, &got, &err));
    assert_int_equal(got->used, 1);

    /* a fault on the last statement (the change row) rolls back the whole user too */
    ts_store_test_fail_at(fx->st, "change_insert", 1);
    {
        ts_user_t v = { .name = "never-there" };
        ASSERT_RV(TS_STORE_EFAULT, ts_store_user_create(fx->st, fx->pool, &v, &err));
    }
    assert_int_equal(fx_count(fx, "users"), 1);
    assert_int_equal(fx_int(fx, "SELECT generation FROM ts_state"), 3);
}

/* A real database error on the second row (duplicate route) rolls back the first one. */
static void test_database_error_mid_transaction_rolls_back(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_node_t n;

    fault_node(fx, &n, 0, 0);
    ASSERT_RV(TS_STORE_ECONFLICT, ts_store_node_create(fx->st, fx->pool, &n,
                                                       two_routes(fx->pool, "10.9.0.0/16",
                                                                  "10.9.0.0/16"), &err));
    assert_non_null(strstr(err, "route 10.9.0.0/16 is listed twice"));
    assert_int_equal(fx_count(fx, "nodes"), 0);
    assert_int_equal(fx_count(fx, "node_routes"), 0);
    assert_int_equal(fx_count(fx, "change_log"), 0);
    assert_int_equal(fx_int(fx, "SELECT generation FROM ts_state"), 0);
}

static void writer_child(const fx_t *fx, int go_fd)
{
    apr_pool_t *p;
    ts_store_t *st;
    const char *err = NULL;
    char c;
    int i;

    apr_pool_create(&p, NULL);
    if (ts_store_open(&st, p, fx->cfg->driver, fx->params, &err) != APR_SUCCESS) {
        fprintf(stderr, "writer open: %s\n", err);
        _exit(2);
    }
    (void)!read(go_fd, &c, 1);
    for (i = 0; i < WRITES_EACH; i++) {
        ts_user_t u = { .name = apr_psprintf(p, "w%d-%d", (int)getpid(), i) };
        if (ts_store_user_create(st, p, &u, &err) != APR_SUCCESS) {
            fprintf(stderr, "writer %d: %s\n", (int)getpid(), err);
            _exit(1);
        }
    }
    ts_store_close(st);
    apr_pool_destroy(p);
    _exit(0);
}

/* Writers in several processes at once: all succeed (retrying on contention) and every
 * write gets its own generation, with no gaps. */
static void test_concurrent_writers_get_distinct_generations(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    apr_int64_t g = 0;

    run_children(fx, WRITERS, writer_child);
    ASSERT_RV(APR_SUCCESS, ts_store_generation(fx->st, fx->pool, &g, &err));
    assert_int_equal(g, WRITERS * WRITES_EACH);
    assert_int_equal(fx_count(fx, "users"), WRITERS * WRITES_EACH);
    assert_int_equal(fx_int(fx, "SELECT COUNT(DISTINCT generation) FROM change_log"),
                     WRITERS * WRITES_EACH);
    assert_int_equal(fx_int(fx, "SELECT MIN(generation) FROM change_log"), 1);
    assert_int_equal(fx_int(fx, "SELECT COUNT(*) FROM users u JOIN change_log c "
                            "ON c.user_id = u.id AND c.generation = u.version"),
                     WRITERS * WRITES_EACH);
}

/* mod_dbd's case: a connection owned by someone else, wrapped on every use. */
static void test_wrap_reuses_one_store_per_connection(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_store_t *a = ts_store_wrap(fx->raw_pool, fx->raw_driver, fx->raw);
    ts_store_t *b = ts_store_wrap(fx->raw_pool, fx->raw_driver, fx->raw);
    ts_user_t u = { .name = "wrapped" };
    ts_user_t *got = NULL;

    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_string_equal(ts_store_driver_name(a), fx->cfg->driver);
    ASSERT_RV(APR_SUCCESS, ts_store_user_create(a, fx->pool, &u, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_user_get(b, fx->pool, u.id, &got, &err));
    assert_string_equal(got->name, "wrapped");
    ASSERT_RV(APR_SUCCESS, ts_store_user_get(fx->st, fx->pool, u.id, &got, &err));
    assert_string_equal(got->name, "wrapped");
}

/* Another process changing the schema invalidates sqlite statements prepared (the legacy
 * way) on this connection; the next use must prepare them afresh, not fail. */
static void test_cached_statements_survive_schema_change(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL;
    ts_user_t u = { .name = "before" }, *got = NULL;
    apr_array_header_t *users;

    ASSERT_RV(APR_SUCCESS, ts_store_user_create(fx->st, fx->pool, &u, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_user_get(fx->st, fx->pool, u.id, &got, &err));
    fx_exec(fx, "CREATE TABLE unrelated_extra (id INTEGER)");
    ASSERT_RV(APR_SUCCESS, ts_store_user_get(fx->st, fx->pool, u.id, &got, &err));
    assert_string_equal(got->name, "before");
    fx_exec(fx, "DROP TABLE unrelated_extra");
    u.name = "after";
    ASSERT_RV(APR_SUCCESS, ts_store_user_update(fx->st, fx->pool, &u, &err));
    ASSERT_RV(APR_SUCCESS, ts_store_user_list(fx->st, fx->pool, &users, &err));
    assert_int_equal(users->nelts, 1);
    assert_string_equal(APR_ARRAY_IDX(users, 0, ts_user_t *)->name, "after");
}

#define STORE_TESTS(full, empty) \
    FX_TEST(test_schema_apply_is_idempotent, full), \
    FX_TEST(test_schema_version_on_empty_database, empty), \
    FX_TEST(test_schema_refuses_newer_database, full), \
    FX_TEST(test_schema_apply_races_on_fresh_database, empty), \
    FX_TEST(test_every_write_bumps_generation_and_logs, full), \
    FX_TEST(test_changes_paging_and_pruning, full), \
    FX_TEST(test_injected_fault_mid_transaction_leaves_nothing, full), \
    FX_TEST(test_database_error_mid_transaction_rolls_back, full), \
    FX_TEST(test_concurrent_writers_get_distinct_generations, full), \
    FX_TEST(test_wrap_reuses_one_store_per_connection, full), \
    FX_TEST(test_cached_statements_survive_schema_change, full)

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = { STORE_TESTS(FX_SQLITE, FX_SQLITE_EMPTY) };
    const struct CMUnitTest mysql_tests[] = { STORE_TESTS(FX_MYSQL, FX_MYSQL_EMPTY) };
    int failed;

    apr_initialize();
    fx_note_mysql();
    failed = cmocka_run_group_tests_name("store/sqlite3", sqlite_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("store/mysql", mysql_tests, NULL, NULL);
    apr_terminate();
    return failed ? 1 : 0;
}
