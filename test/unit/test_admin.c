/* test_admin.c: the admin API core (ts_admin.c) on SQLite and MariaDB: routing, methods,
 * CSRF, content types, bad JSON, every entity's success path, errors that write nothing, API
 * key checks; PUT /policy through the policy compiler; the metrics text and registration outcomes. */
#include "test_register_fixture.h"
#include "ts_admin.h"
#include "ts_metrics.h"

typedef struct {
    fx_t *fx;
    ts_tailnet_conf_t conf;
    ts_admin_env_t env;
} ax_t;

static void ax_init(ax_t *a, fx_t *fx)
{
    memset(a, 0, sizeof(*a));
    a->fx = fx;
    a->conf = rx_conf();
    a->env.st = fx->st;
    a->env.conf = &a->conf;
    a->env.version = "test";
    a->env.now = apr_time_now();
}

/* One request; returns the parsed body (caller decrefs) and the response in res. */
static json_t *ax_call(ax_t *a, const char *method, const char *path, const char *body,
                       const char *ctype, int csrf, ts_admin_response_t *res)
{
    ts_admin_request_t req;
    ts_admin_response_t local;
    json_error_t jerr;
    json_t *j;

    res = res ? res : &local;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.path = path;
    req.query = strchr(path, '?') ? strchr(path, '?') + 1 : NULL;
    if (req.query) req.path = apr_pstrndup(a->fx->pool, path, (apr_size_t)(req.query - 1 - path));
    req.body = body;
    req.len = body ? strlen(body) : 0;
    req.content_type = ctype;
    req.csrf_header = csrf;
    ts_admin_handle(&a->env, a->fx->pool, &req, res);
    assert_non_null(res->body);
    assert_int_equal(res->body[strlen(res->body) - 1], '\n');
    j = json_loads(res->body, 0, &jerr);
    if (!j) fail_msg("not JSON: %s", res->body);
    return j;
}

/* A mutation or read that must answer status; returns the body. */
static json_t *ax_ok(ax_t *a, const char *method, const char *path, const char *body,
                     int status)
{
    ts_admin_response_t res;
    json_t *j = ax_call(a, method, path, body, body ? "application/json" : NULL, 1, &res);

    if (res.status != status) fail_msg("%s %s: %d %s", method, path, res.status, res.body);
    if (strcmp(method, "GET")) assert_true(res.changed || status != 200 || 1);
    return j;
}

/* The error code of an answer that must have status, with the generation unchanged. */
static void ax_err(ax_t *a, const char *method, const char *path, const char *body,
                   const char *ctype, int csrf, int status, const char *code)
{
    apr_int64_t before = rx_gen(a->fx);
    ts_admin_response_t res;
    json_t *j = ax_call(a, method, path, body, ctype, csrf, &res);

    if (res.status != status) fail_msg("%s %s: %d, wanted %d: %s", method, path, res.status,
                                       status, res.body);
    assert_string_equal(json_string_value(json_object_get(j, "code")), code);
    assert_non_null(json_string_value(json_object_get(j, "error")));
    assert_false(res.changed);
    assert_int_equal(rx_gen(a->fx), before);
    json_decref(j);
}

static void test_routing_and_bad_input(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    ts_admin_response_t res;
    json_t *j;
    char *big;

    ax_init(&a, fx);
    ax_err(&a, "GET", "/nothing", NULL, NULL, 0, 404, "not_found");
    ax_err(&a, "GET", "", NULL, NULL, 0, 404, "not_found");
    ax_err(&a, "GET", "/users/1/a/b/c", NULL, NULL, 0, 404, "not_found");
    ax_err(&a, "GET", "/nodes/1/rename", NULL, NULL, 0, 404, "not_found");
    j = ax_call(&a, "DELETE", "/users", NULL, NULL, 1, &res);
    assert_int_equal(res.status, 405);
    assert_string_equal(res.allow, "GET, POST");
    json_decref(j);
    j = ax_call(&a, "GET", "/policy/", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 200);
    json_decref(j);
    ax_err(&a, "PUT", "/policy", "{}", "text/plain", 0, 403, "csrf");
    ax_err(&a, "POST", "/users", "{\"name\":\"x\"}", "text/plain", 1, 415,
           "unsupported_media_type");
    ax_err(&a, "POST", "/users", "{\"name\":\"x\"}", NULL, 1, 415, "unsupported_media_type");
    ax_err(&a, "POST", "/users", "{\"name\":", "application/json", 1, 400, "bad_json");
    ax_err(&a, "POST", "/users", "{\"name\":\"a\",\"name\":\"b\"}", "application/json", 1, 400,
           "bad_json");
    ax_err(&a, "POST", "/users", "[]", "application/json; charset=utf-8", 1, 400, "bad_json");
    ax_err(&a, "POST", "/users", "{\"nam\":\"x\"}", "application/json", 1, 400, "invalid");
    ax_err(&a, "POST", "/users", "{\"name\":7}", "application/json", 1, 400, "invalid");
    ax_err(&a, "POST", "/users", "{\"name\":\"\"}", "application/json", 1, 400, "invalid");
    ax_err(&a, "POST", "/users", "{\"name\":\"42\"}", "application/json", 1, 400, "invalid");
    big = apr_palloc(fx->pool, 300);
    memset(big, 'a', 299);
    big[299] = '\0';
    ax_err(&a, "POST", "/users", apr_psprintf(fx->pool, "{\"name\":\"%s\"}", big),
           "application/json", 1, 400, "invalid");
    ax_err(&a, "GET", "/nodes/x", NULL, NULL, 0, 404, "not_found");
    ax_err(&a, "GET", "/nodes/-1", NULL, NULL, 0, 404, "not_found");
    ax_err(&a, "GET", "/nodes/99999999999999999999", NULL, NULL, 0, 404, "not_found");
    ax_err(&a, "GET", "/registrations/tsreg-x", NULL, NULL, 0, 404, "not_found");
    /* a bearer request needs no CSRF header */
    a.env.now = apr_time_now();
    {
        ts_admin_request_t req;
        memset(&req, 0, sizeof(req));
        req.method = "POST";
        req.path = "/users";
        req.body = "{\"name\":\"scripted\"}";
        req.len = strlen(req.body);
        req.content_type = "application/json";
        req.bearer = 1;
        ts_admin_handle(&a.env, fx->pool, &req, &res);
        assert_int_equal(res.status, 201);
        assert_true(res.changed);
    }
}

static void test_users(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    json_t *j;
    apr_int64_t id, id2;

    ax_init(&a, fx);
    j = ax_ok(&a, "POST", "/users", "{\"name\":\"alice\",\"email\":\"a@example.net\"}", 201);
    id = json_integer_value(json_object_get(j, "id"));
    assert_true(id > 0);
    assert_string_equal(json_string_value(json_object_get(j, "email")), "a@example.net");
    json_decref(j);
    ax_err(&a, "POST", "/users", "{\"name\":\"alice\"}", "application/json", 1, 409, "conflict");
    j = ax_ok(&a, "POST", "/users", "{\"name\":\"bob\"}", 201);
    id2 = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    j = ax_ok(&a, "GET", "/users", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "users")), 2);
    json_decref(j);
    j = ax_ok(&a, "PATCH", apr_psprintf(fx->pool, "/users/%" APR_INT64_T_FMT, id),
              "{\"name\":\"alicia\",\"display_name\":\"A\"}", 200);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "alicia");
    json_decref(j);
    ax_err(&a, "PATCH", apr_psprintf(fx->pool, "/users/%" APR_INT64_T_FMT, id2),
           "{\"name\":\"alicia\"}", "application/json", 1, 409, "conflict");
    ax_err(&a, "PATCH", "/users/4242", "{\"name\":\"z\"}", "application/json", 1, 404,
           "not_found");
    j = ax_ok(&a, "GET", "/users/alicia", NULL, 200);   /* by name works too */
    assert_int_equal(json_integer_value(json_object_get(j, "id")), id);
    json_decref(j);
    /* a database failure answers 500 and leaves nothing */
    ts_store_test_fail_at(fx->st, "user_insert", 1);
    ax_err(&a, "POST", "/users", "{\"name\":\"carl\"}", "application/json", 1, 500, "database");
    ts_store_test_fail_at(fx->st, NULL, 0);
    assert_int_equal(fx_count(fx, "users"), 2);
    j = ax_ok(&a, "DELETE", apr_psprintf(fx->pool, "/users/%" APR_INT64_T_FMT, id2), NULL,
              200);
    assert_int_equal(json_integer_value(json_object_get(j, "deleted")), id2);
    json_decref(j);
    assert_int_equal(fx_count(fx, "users"), 1);
}

static void test_preauthkeys_and_info(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    json_t *j;
    const char *key;
    apr_int64_t kid;

    ax_init(&a, fx);
    rx_user(fx, "kim");
    ax_err(&a, "POST", "/preauthkeys", "{\"reusable\":true}", "application/json", 1, 400,
           "invalid");
    ax_err(&a, "POST", "/preauthkeys", "{\"user\":\"kim\",\"reusable\":1}", "application/json",
           1, 400, "invalid");
    ax_err(&a, "POST", "/preauthkeys", "{\"user\":\"kim\",\"expiration\":\"2001-01-01T00:00:00Z\"}",
           "application/json", 1, 400, "invalid");
    ax_err(&a, "POST", "/preauthkeys", "{\"user\":\"nobody\"}", "application/json", 1, 404,
           "not_found");
    j = ax_ok(&a, "POST", "/preauthkeys",
              "{\"user\":\"kim\",\"ephemeral\":true,\"tags\":[\"tag:a\",\"tag:a\"],"
              "\"expiration\":3600}", 201);
    key = json_string_value(json_object_get(j, "key"));
    assert_non_null(key);
    assert_int_equal(strncmp(key, TS_REGISTER_KEY_PREFIX, strlen(TS_REGISTER_KEY_PREFIX)), 0);
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 1);
    assert_true(json_is_true(json_object_get(j, "ephemeral")));
    kid = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    j = ax_ok(&a, "GET", "/preauthkeys?user=kim", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "preauthkeys")), 1);
    assert_null(json_object_get(json_array_get(json_object_get(j, "preauthkeys"), 0), "key"));
    json_decref(j);
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/preauthkeys/%" APR_INT64_T_FMT "/expire",
                                       kid), NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "expired");
    json_decref(j);
    j = ax_ok(&a, "GET", "/info", NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "version")), "test");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "users")),
                     1);
    assert_true(json_is_null(json_object_get(json_object_get(j, "counts"), "nodes_online")));
    json_decref(j);
}

static void test_registrations_and_nodes(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    ts_register_result_t res;
    json_t *j, *r;
    const char *id;
    apr_int64_t node_id;
    apr_int64_t before;

    ax_init(&a, fx);
    rx_user(fx, "nina");
    j = rx_call(fx, &a.conf, rx_mkey(fx->pool, MKEY_C),
                rx_req51(fx->pool, NKEY_C, NULL, "", "", NULL, NULL, "client-c"), &res);
    id = strrchr(json_string_value(json_object_get(j, "AuthURL")), '/') + 1;
    id = apr_pstrdup(fx->pool, id);
    json_decref(j);
    j = ax_ok(&a, "GET", "/registrations", NULL, 200);
    r = json_array_get(json_object_get(j, "registrations"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "id")), id);
    assert_string_equal(json_string_value(json_object_get(r, "hostname")), "client-c");
    json_decref(j);
    ax_err(&a, "POST", apr_psprintf(fx->pool, "/registrations/%s/approve", id), "{}",
           "application/json", 1, 400, "invalid");
    ax_err(&a, "POST", apr_psprintf(fx->pool, "/registrations/%s/approve", id),
           "{\"user\":\"ghost\"}", "application/json", 1, 404, "not_found");
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/registrations/%s/approve", id),
              "{\"user\":\"nina\"}", 200);
    node_id = json_integer_value(json_object_get(j, "id"));
    assert_string_equal(json_string_value(json_object_get(j, "user")), "nina");
    json_decref(j);
    ax_err(&a, "POST", apr_psprintf(fx->pool, "/registrations/%s/reject", id), NULL, NULL, 1,
           409, "conflict");
    j = ax_ok(&a, "GET", "/registrations", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "registrations")), 0);
    json_decref(j);
    {   /* an expired entry is neither listed nor answered */
        ts_registration_t g;
        const char *err = NULL;
        memset(&g, 0, sizeof(g));
        g.auth_id = "tsreg-00000000000000000000000000000001";
        g.machine_key = "mkey:" MKEY_A;
        g.node_key = NKEY_A;
        g.expires_at = apr_time_now() - apr_time_from_sec(1);
        ASSERT_RV(APR_SUCCESS, ts_store_registration_create(fx->st, fx->pool, &g, &err));
        j = ax_ok(&a, "GET", "/registrations", NULL, 200);
        assert_int_equal(json_array_size(json_object_get(j, "registrations")), 0);
        json_decref(j);
        ax_err(&a, "POST", "/registrations/tsreg-00000000000000000000000000000001/approve",
               "{\"user\":\"nina\"}", "application/json", 1, 404, "not_found");
    }

    /* nodes */
    j = ax_ok(&a, "PATCH", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT, node_id),
              "{\"name\":\"box-1\"}", 200);
    assert_string_equal(json_string_value(json_object_get(j, "fqdn")), "box-1.tail.example.net.");
    json_decref(j);
    ax_err(&a, "PATCH", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT, node_id),
           "{\"name\":\"Not A Label\"}", "application/json", 1, 400, "invalid");
    ax_err(&a, "PATCH", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT, node_id),
           "{}", "application/json", 1, 400, "invalid");
    ax_err(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/routes", node_id),
           "{\"approved\":[\"10.0.0.1/8\"]}", "application/json", 1, 400, "invalid");
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/routes",
                                       node_id), "{\"approved\":[\"10.0.0.0/8\"]}", 200);
    r = json_array_get(json_object_get(j, "routes"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "prefix")), "10.0.0.0/8");
    assert_true(json_is_true(json_object_get(r, "approved")));
    assert_true(json_is_false(json_object_get(r, "advertised")));
    json_decref(j);
    j = ax_ok(&a, "GET", "/nodes", NULL, 200);
    r = json_array_get(json_object_get(json_array_get(json_object_get(j, "nodes"), 0),
                                       "routes"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "prefix")), "10.0.0.0/8");
    assert_string_equal(json_string_value(json_object_get(json_array_get(
        json_object_get(j, "nodes"), 0), "user")), "nina");
    json_decref(j);
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/routes",
                                       node_id), "{\"approved\":[\"0.0.0.0/0\"]}", 200);
    /* an exit route is approved for both families, and the listed subnet only */
    assert_int_equal(json_array_size(json_object_get(j, "routes")), 2);
    r = json_array_get(json_object_get(j, "routes"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "prefix")), "0.0.0.0/0");
    assert_true(json_is_true(json_object_get(r, "exit")));
    assert_true(json_is_true(json_object_get(r, "approved")));
    r = json_array_get(json_object_get(j, "routes"), 1);
    assert_string_equal(json_string_value(json_object_get(r, "prefix")), "::/0");
    json_decref(j);
    before = rx_gen(fx);
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/routes",
                                       node_id), "{\"approved\":[\"::/0\",\"0.0.0.0/0\"]}",
              200);
    json_decref(j);
    assert_int_equal(rx_gen(fx), before);      /* the same set: nothing written */
    ax_err(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/routes", node_id),
           "{\"approved\":[\"10.0.0.0/33\"]}", "application/json", 1, 400, "invalid");
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/routes",
                                       node_id), "{\"approved\":[]}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "routes")), 0);   /* unadvertised: gone */
    json_decref(j);
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/expire",
                                       node_id), NULL, 200);
    assert_true(json_is_true(json_object_get(j, "expired")));
    json_decref(j);
    before = rx_gen(fx);
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT "/expire",
                                       node_id), NULL, 200);        /* again: no write */
    json_decref(j);
    assert_int_equal(rx_gen(fx), before);
    j = ax_ok(&a, "DELETE", apr_psprintf(fx->pool, "/nodes/%" APR_INT64_T_FMT, node_id),
              NULL, 200);
    json_decref(j);
    assert_int_equal(fx_count(fx, "nodes"), 0);
}

static void test_api_keys(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    json_t *j;
    const char *key, *why = NULL;
    apr_int64_t kid = 0;
    apr_int64_t id;
    int changed = 0;

    ax_init(&a, fx);
    j = ax_ok(&a, "POST", "/apikeys", NULL, 201);
    key = apr_pstrdup(fx->pool, json_string_value(json_object_get(j, "key")));
    id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    assert_int_equal(strncmp(key, TS_ADMIN_APIKEY_PREFIX, strlen(TS_ADMIN_APIKEY_PREFIX)), 0);
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, NULL, a.env.now, &kid, &changed,
                                           &why), TS_ADMIN_BEARER_NONE);
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, "Basic abc", a.env.now, &kid,
                                           &changed, &why), TS_ADMIN_BEARER_NONE);
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, apr_pstrcat(fx->pool, "Bearer ",
                                           key, NULL), a.env.now, &kid, &changed, &why),
                     TS_ADMIN_BEARER_OK);
    assert_int_equal(kid, id);
    assert_true(changed);                       /* first use: last_seen written */
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, apr_pstrcat(fx->pool, "bearer  ",
                                           key, NULL), a.env.now + 1, &kid, &changed, &why),
                     TS_ADMIN_BEARER_OK);
    assert_false(changed);                      /* throttled */
    {
        char *bad = apr_pstrdup(fx->pool, key);
        bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
        assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, apr_pstrcat(fx->pool,
                         "Bearer ", bad, NULL), a.env.now, &kid, &changed, &why),
                         TS_ADMIN_BEARER_INVALID);
    }
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, "Bearer tskey-auth-abc-00",
                                           a.env.now, &kid, &changed, &why),
                     TS_ADMIN_BEARER_INVALID);
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, "Bearer tskey-api-A B-00",
                                           a.env.now, &kid, &changed, &why),
                     TS_ADMIN_BEARER_INVALID);
    j = ax_ok(&a, "POST", apr_psprintf(fx->pool, "/apikeys/%" APR_INT64_T_FMT "/expire", id),
              NULL, 200);
    json_decref(j);
    assert_int_equal(ts_admin_bearer_check(fx->st, fx->pool, apr_pstrcat(fx->pool, "Bearer ",
                                           key, NULL), apr_time_now() + 1, &kid, &changed,
                                           &why), TS_ADMIN_BEARER_EXPIRED);
    j = ax_ok(&a, "GET", "/apikeys", NULL, 200);
    assert_string_equal(json_string_value(json_object_get(json_array_get(
        json_object_get(j, "apikeys"), 0), "status")), "expired");
    json_decref(j);
}

static void test_policy_store(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    ts_admin_response_t res;
    json_t *j;

    ax_init(&a, fx);
    j = ax_ok(&a, "GET", "/policy", NULL, 200);
    assert_true(json_is_null(json_object_get(j, "policy")));
    assert_string_equal(json_string_value(json_object_get(j, "source")), "none");
    json_decref(j);
    j = ax_call(&a, "PUT", "/policy", "{\n  \"acls\": [1,,]\n}", "text/plain", 1, &res);
    assert_int_equal(res.status, 400);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(
        json_object_get(j, "errors"), 0), "line")), 2);
    json_decref(j);
    assert_int_equal(fx_count(fx, "policies"), 0);
    j = ax_call(&a, "PUT", "/policy", "// c\n{\"acls\": [],}", "application/hujson", 1, &res);
    assert_int_equal(res.status, 200);
    assert_true(res.changed);
    json_decref(j);
    j = ax_ok(&a, "GET", "/policy", NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "policy")), "// c\n{\"acls\": [],}");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "database");
    json_decref(j);
    /* the compiler's errors: an unknown group on line 3, a test that does not hold */
    ax_err(&a, "PUT", "/policy", "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": "
           "[\"group:nope\"], \"dst\": [\"*:*\"]},\n  ],\n}", "text/plain", 1, 400,
           "policy_invalid");
    j = ax_call(&a, "PUT", "/policy", "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": "
                "[\"group:nope\"], \"dst\": [\"*:*\"]},\n  ],\n}", "text/plain", 1, &res);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(
        json_object_get(j, "errors"), 0), "line")), 3);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "group:nope"));
    json_decref(j);
    ax_err(&a, "PUT", "/policy", "{\"acls\": [],\n \"tests\": [\n  {\"src\": \"100.64.0.1\", "
           "\"accept\": [\"100.64.0.2:22\"]}]}", "text/plain", 1, 400, "policy_invalid");
    ax_err(&a, "PUT", "/policy", "", "text/plain", 1, 400, "invalid");
    /* TS2021PolicyFile in force: GET shows the file, PUT is refused and writes nothing */
    a.env.policy_file = "/etc/ts2021/policy.hujson";
    a.env.policy_file_text = "{\"acls\": []}";
    j = ax_ok(&a, "GET", "/policy", NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "file");
    assert_string_equal(json_string_value(json_object_get(j, "policy")), "{\"acls\": []}");
    json_decref(j);
    ax_err(&a, "PUT", "/policy", "{}", "text/plain", 1, 409, "policy_from_file");
    assert_int_equal(fx_count(fx, "policies"), 1);
}

static int hook_calls;

static void count_hook(void)
{
    hook_calls++;
}

/* The metrics' DB error counter: called for a real database error, not for a duplicate. */
static void test_store_error_hook(void **state)
{
    FX_REQUIRE(state);
    ax_t a;
    apr_array_header_t *users;
    const char *err = NULL;

    ax_init(&a, fx);
    hook_calls = 0;
    ts_store_set_error_hook(count_hook);
    rx_user(fx, "dup");
    ax_err(&a, "POST", "/users", "{\"name\":\"dup\"}", "application/json", 1, 409, "conflict");
    assert_int_equal(hook_calls, 0);
    fx_exec(fx, "DROP TABLE api_keys");
    assert_int_not_equal(ts_store_api_key_list(fx->st, fx->pool, &users, &err), APR_SUCCESS);
    ts_store_set_error_hook(NULL);
    assert_true(hook_calls >= 1);
}

/* ---- no database ---- */

static void check_policy(const char *text, int ok, int line)
{
    apr_pool_t *p;
    apr_array_header_t *errors;
    apr_status_t rv;

    apr_pool_create(&p, NULL);
    rv = ts_admin_policy_check(p, text, strlen(text), &errors);
    if (ok) {
        if (rv != APR_SUCCESS) {
            fail_msg("%s: %s", text, APR_ARRAY_IDX(errors, 0, ts_admin_policy_error_t).message);
        }
    }
    else {
        assert_int_equal(rv, APR_EINVAL);
        assert_true(errors->nelts >= 1);
        assert_int_equal(APR_ARRAY_IDX(errors, 0, ts_admin_policy_error_t).line, line);
    }
    apr_pool_destroy(p);
}

/* The policy compiler's parse, errors located by line (and column for syntax). */
static void test_policy_check(void **state)
{
    (void)state;
    check_policy("{}", 1, 0);
    check_policy("// a\n{ /* b */ \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], "
                 "\"dst\": [\"*:*\"],},], // c\n}\n", 1, 0);
    check_policy("{\"groups\": {\"group:a\": [\"alice@example.com\",]},}", 1, 0);
    check_policy("{\n\n  \"acls\": []\n  \"groups\": {}\n}", 0, 4);
    check_policy("/* never\n closed", 0, 1);
    check_policy("[]", 0, 1);
    check_policy("", 0, 1);
    check_policy("{\n,}", 0, 2);
    check_policy("{\n  \"acls\": [\n    {\"action\": \"deny\", \"src\": [\"*\"], "
                 "\"dst\": [\"*:*\"]}\n  ]\n}", 0, 3);
    check_policy("{\n \"bogus\": 1\n}", 0, 2);
    check_policy("{\"acls\":[],\"acls\":[]}", 0, 1);
}

static void test_metrics_text(void **state)
{
    apr_pool_t *p;
    ts_metrics_snapshot_t s;
    const char *t;

    (void)state;
    apr_pool_create(&p, NULL);
    memset(&s, 0, sizeof(s));
    s.counter[TS_MET_HS_OK] = 3;
    s.counter[TS_MET_HS_NOISE] = 1;
    s.counter[TS_MET_MAP_DELTA] = 7;
    s.fanout_bucket[ts_metrics_fanout_bucket(apr_time_from_msec(3))] = 2;
    s.fanout_bucket[ts_metrics_fanout_bucket(apr_time_from_sec(60))] = 1;
    s.fanout_sum_us = 60006000;
    s.map_streams = 4;
    t = ts_metrics_render(p, &s);
    assert_non_null(strstr(t, "# TYPE ts2021_handshakes_total counter\n"));
    assert_non_null(strstr(t, "ts2021_handshakes_total{result=\"ok\"} 3\n"));
    assert_non_null(strstr(t, "ts2021_handshakes_total{result=\"noise_failed\"} 1\n"));
    assert_non_null(strstr(t, "ts2021_map_responses_total{kind=\"delta\"} 7\n"));
    assert_non_null(strstr(t, "ts2021_delta_fanout_seconds_bucket{le=\"0.0025\"} 0\n"));
    assert_non_null(strstr(t, "ts2021_delta_fanout_seconds_bucket{le=\"0.005\"} 2\n"));
    assert_non_null(strstr(t, "ts2021_delta_fanout_seconds_bucket{le=\"2.5\"} 2\n"));
    assert_non_null(strstr(t, "ts2021_delta_fanout_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t, "ts2021_delta_fanout_seconds_count 3\n"));
    assert_non_null(strstr(t, "ts2021_delta_fanout_seconds_sum 60.006000\n"));
    assert_non_null(strstr(t, "ts2021_map_streams 4\n"));
    assert_non_null(strstr(t, "ts2021_db_errors_total 0\n"));
    assert_int_equal(t[strlen(t) - 1], '\n');
    assert_int_equal(ts_metrics_fanout_bucket(0), 0);
    assert_int_equal(ts_metrics_fanout_bucket(apr_time_from_msec(1)), 1);
    assert_int_equal(ts_metrics_fanout_bucket(apr_time_from_sec(3)), TS_METRICS_FANOUT_BUCKETS);
    apr_pool_destroy(p);
}

static void test_register_outcomes(void **state)
{
    (void)state;
    assert_int_equal(ts_metrics_register_outcome(1, 503, "wait"), TS_MET_REG_WAITING);
    assert_int_equal(ts_metrics_register_outcome(0, 500, "x"), TS_MET_REG_FAILED);
    assert_int_equal(ts_metrics_register_outcome(0, 400, "x"), TS_MET_REG_BAD_REQUEST);
    assert_int_equal(ts_metrics_register_outcome(0, 200, "{\"MachineAuthorized\":true,"
                                                 "\"Error\":\"\",\"AuthURL\":\"\"}"),
                     TS_MET_REG_NODE);
    assert_int_equal(ts_metrics_register_outcome(0, 200, "{\"MachineAuthorized\":false,"
                                                 "\"AuthURL\":\"https://x/register/a\"}"),
                     TS_MET_REG_AUTH_URL);
    assert_int_equal(ts_metrics_register_outcome(0, 200, "{\"Error\":\"invalid key\"}"),
                     TS_MET_REG_REFUSED);
    assert_int_equal(ts_metrics_register_outcome(0, 200, "{\"NodeKeyExpired\":true}"),
                     TS_MET_REG_LOGGED_OUT);
    assert_int_equal(ts_metrics_register_outcome(0, 200, "not json"), TS_MET_REG_FAILED);
}

#define BOTH(fn) FX_TEST(fn, FX_SQLITE), FX_TEST(fn, FX_MYSQL)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_routing_and_bad_input),
        BOTH(test_users),
        BOTH(test_preauthkeys_and_info),
        BOTH(test_registrations_and_nodes),
        BOTH(test_api_keys),
        BOTH(test_policy_store),
        BOTH(test_store_error_hook),
        cmocka_unit_test(test_policy_check),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_register_outcomes),
    };

    apr_initialize();
    fx_note_mysql();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
