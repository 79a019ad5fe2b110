/* test_regpage.c: cmocka tests of the login page's core: escaping, login names, CSRF tokens,
 * device facts from hostile Hostinfo, lookups and approval for a login name on sqlite3 and
 * MariaDB (user created on first login, nothing written on refusal). */
#include "test_register_fixture.h"
#include "ts_regpage.h"

#include <sodium.h>

static const uint8_t SECRET[TS_REGPAGE_SECRET_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
#define ID_A "tsreg-0123456789abcdef0123456789abcdef"
#define ID_B "tsreg-fedcba9876543210fedcba9876543210"

static void test_escape(void **state)
{
    apr_pool_t *p;

    (void)state;
    apr_pool_create(&p, NULL);
    assert_string_equal(ts_regpage_escape(p, "<a href=\"x\">'&'</a>"),
                        "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;");
    assert_string_equal(ts_regpage_escape(p, "plain é"), "plain é");
    assert_string_equal(ts_regpage_escape(p, ""), "");
    assert_string_equal(ts_regpage_escape(p, NULL), "");
    apr_pool_destroy(p);
}

static void test_login_valid(void **state)
{
    char longname[TS_REGPAGE_LOGIN_MAX + 2];

    (void)state;
    assert_true(ts_regpage_login_valid("alice"));
    assert_true(ts_regpage_login_valid("alice@example.com"));
    assert_true(ts_regpage_login_valid("Jürgen Müller"));
    assert_true(ts_regpage_login_valid("CN=x,OU=y"));
    assert_false(ts_regpage_login_valid(NULL));
    assert_false(ts_regpage_login_valid(""));
    assert_false(ts_regpage_login_valid(" alice"));
    assert_false(ts_regpage_login_valid("alice "));
    assert_false(ts_regpage_login_valid("al\nice"));
    assert_false(ts_regpage_login_valid("al\x7f" "ice"));
    assert_false(ts_regpage_login_valid("caf\xe9"));           /* Latin-1, not UTF-8 */
    assert_false(ts_regpage_login_valid("\xc0\xaf"));          /* overlong */
    assert_false(ts_regpage_login_valid("\xed\xa0\x80"));      /* surrogate */
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_false(ts_regpage_login_valid(longname));
    longname[TS_REGPAGE_LOGIN_MAX] = '\0';
    assert_true(ts_regpage_login_valid(longname));
}

static void test_token(void **state)
{
    apr_pool_t *p;
    apr_time_t now = apr_time_from_sec(1800000000);
    uint8_t other[TS_REGPAGE_SECRET_LEN] = { 9 };
    const char *t;
    char *bad;

    (void)state;
    apr_pool_create(&p, NULL);
    t = ts_regpage_token(p, SECRET, ID_A, "alice", now);
    assert_int_equal(strlen(t), 16 + 1 + 64);
    assert_true(ts_regpage_token_check(SECRET, t, ID_A, "alice", now));
    assert_true(ts_regpage_token_check(SECRET, t, ID_A, "alice", now + TS_REGPAGE_TOKEN_TTL));
    /* bound to the id, the user, the secret and the time */
    assert_false(ts_regpage_token_check(SECRET, t, ID_B, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, t, ID_A, "bob", now));
    assert_false(ts_regpage_token_check(SECRET, t, ID_A, "alic", now));
    assert_false(ts_regpage_token_check(other, t, ID_A, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, t, ID_A, "alice",
                                        now + TS_REGPAGE_TOKEN_TTL + apr_time_from_sec(1)));
    assert_false(ts_regpage_token_check(SECRET, t, ID_A, "alice", now - apr_time_from_sec(120)));
    /* no splicing of id and user: the NUL separators keep ("a","bc") apart from ("ab","c") */
    assert_false(ts_regpage_token_check(SECRET, ts_regpage_token(p, SECRET, "a", "bc", now),
                                        "ab", "c", now));
    /* a changed time or MAC digit, malformed tokens */
    bad = apr_pstrdup(p, t);
    bad[15] = bad[15] == '0' ? '1' : '0';
    assert_false(ts_regpage_token_check(SECRET, bad, ID_A, "alice", now));
    bad = apr_pstrdup(p, t);
    bad[40] = bad[40] == '0' ? '1' : '0';
    assert_false(ts_regpage_token_check(SECRET, bad, ID_A, "alice", now));
    bad = apr_pstrdup(p, t);
    bad[20] = bad[20] >= 'a' ? bad[20] - 'a' + 'A' : 'G';
    assert_false(ts_regpage_token_check(SECRET, bad, ID_A, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, apr_pstrndup(p, t, 80), ID_A, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, apr_pstrcat(p, t, "0", NULL), ID_A, "alice",
                                        now));
    assert_false(ts_regpage_token_check(SECRET, "", ID_A, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, NULL, ID_A, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, t, NULL, "alice", now));
    assert_false(ts_regpage_token_check(SECRET, t, ID_A, NULL, now));
    apr_pool_destroy(p);
}

static void test_secret_from_key(void **state)
{
    uint8_t k1[TS_KEY_LEN] = { 1 }, k2[TS_KEY_LEN] = { 2 };
    uint8_t a[TS_REGPAGE_SECRET_LEN], b[TS_REGPAGE_SECRET_LEN], c[TS_REGPAGE_SECRET_LEN];

    (void)state;
    ts_regpage_secret(a, k1);
    ts_regpage_secret(b, k1);
    ts_regpage_secret(c, k2);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, c, sizeof(a));
    assert_memory_not_equal(a, k1, sizeof(a));
}

static ts_registration_t *reg_of(apr_pool_t *p, const char *id, const char *hostinfo)
{
    ts_registration_t *r = apr_pcalloc(p, sizeof(*r));

    r->auth_id = id;
    r->machine_key = "mkey:" MKEY_A;
    r->node_key = NKEY_A;
    r->hostinfo = hostinfo;
    r->expires_at = apr_time_now() + apr_time_from_sec(600);
    return r;
}

static void test_device_and_render(void **state)
{
    apr_pool_t *p;
    ts_regpage_device_t d;
    ts_registration_t *r;
    const char *html;

    (void)state;
    apr_pool_create(&p, NULL);
    r = reg_of(p, ID_A, "{\"Hostname\":\"<script>x</script>\",\"OS\":\"linux\","
               "\"OSVersion\":\"6.1\",\"IPNVersion\":\"1.96.0\","
               "\"RequestTags\":[\"tag:web\",\"tag:\\\"q\\\"\",7],"
               "\"RoutableIPs\":[\"10.0.0.0/8\"]}");
    ts_regpage_device(p, r, &d);
    assert_string_equal(d.hostname, "<script>x</script>");
    assert_string_equal(d.os, "linux 6.1");
    assert_string_equal(d.client_version, "1.96.0");
    assert_string_equal(d.fingerprint, "aec0 0352 f7f0 f4b9");
    assert_int_equal(d.tags->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(d.tags, 1, const char *), "tag:\"q\"");
    assert_int_equal(d.routes->nelts, 1);

    html = ts_regpage_render_confirm(p, r, "a<b>&c", "00.ff\"");
    assert_null(strstr(html, "<script>x"));
    assert_non_null(strstr(html, "&lt;script&gt;x&lt;/script&gt;"));
    assert_non_null(strstr(html, "tag:web, tag:&quot;q&quot;"));
    assert_non_null(strstr(html, "<strong>a&lt;b&gt;&amp;c</strong>"));
    assert_non_null(strstr(html, "value=\"00.ff&quot;\""));
    assert_non_null(strstr(html, "aec0 0352 f7f0 f4b9"));
    assert_non_null(strstr(html, "<form method=\"post\">"));
    assert_non_null(strstr(html, " UTC</dd>"));              /* link expiry, readable */
    assert_null(strstr(ts_regpage_render_confirm(p, r, "alice", NULL), "<form"));

    /* hostile or missing Hostinfo: empty fields, no crash */
    r = reg_of(p, ID_A, "[1,2]");
    ts_regpage_device(p, r, &d);
    assert_string_equal(d.hostname, "");
    assert_int_equal(d.tags->nelts, 0);
    r = reg_of(p, ID_A, NULL);
    r->node_key = "nodekey:12";
    ts_regpage_device(p, r, &d);
    assert_string_equal(d.fingerprint, "");
    assert_non_null(strstr(ts_regpage_render_confirm(p, r, "alice", "t"), "(no host name)"));

    html = ts_regpage_render_message(p, "Gone <now>", "a & b");
    assert_non_null(strstr(html, "<title>Gone &lt;now&gt;</title>"));
    assert_non_null(strstr(html, "<p>a &amp; b</p>"));
    apr_pool_destroy(p);
}

/* A pending registration of machine A in the store. */
static void add_reg(fx_t *fx, const char *id, apr_time_t expires_at)
{
    ts_registration_t *r = reg_of(fx->pool, id, "{\"Hostname\":\"laptop\",\"OS\":\"linux\"}");
    const char *err = NULL;

    r->expires_at = expires_at;
    ASSERT_RV(APR_SUCCESS, ts_store_registration_create(fx->st, fx->pool, r, &err));
}

static void test_lookup(void **state)
{
    FX_REQUIRE(state);
    ts_regpage_lookup_t look;
    apr_time_t now = apr_time_now();
    const char *err = NULL;

    ts_regpage_lookup(fx->st, fx->pool, "tsreg-nope", now, &look);
    assert_int_equal(look.status, 404);
    ts_regpage_lookup(fx->st, fx->pool, ID_A, now, &look);
    assert_int_equal(look.status, 404);
    assert_null(look.reg);
    add_reg(fx, ID_A, now + apr_time_from_sec(600));
    ts_regpage_lookup(fx->st, fx->pool, ID_A, now, &look);
    assert_int_equal(look.status, 200);
    assert_string_equal(look.reg->node_key, NKEY_A);
    ts_regpage_lookup(fx->st, fx->pool, ID_A, now + apr_time_from_sec(601), &look);
    assert_int_equal(look.status, 410);
    assert_non_null(strstr(look.message, "expired"));
    ASSERT_RV(APR_SUCCESS, ts_register_reject(fx->st, fx->pool, ID_A, NULL, &err));
    ts_regpage_lookup(fx->st, fx->pool, ID_A, now, &look);
    assert_int_equal(look.status, 410);
    assert_non_null(strstr(look.message, "rejected"));
    ts_store_test_fail_at(fx->st, "registration_get", 1);
    ts_regpage_lookup(fx->st, fx->pool, ID_A, now, &look);
    ts_store_test_fail_at(fx->st, NULL, 0);
    assert_int_equal(look.status, 500);
    assert_non_null(look.log);
}

static void test_approve_creates_user_once(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_regpage_lookup_t look;
    ts_user_t *u = NULL, *u2 = NULL;
    ts_node_t *n = NULL;
    apr_int64_t node_id = 0, node2 = 0, before;
    const char *err = NULL;

    add_reg(fx, ID_A, apr_time_now() + apr_time_from_sec(600));
    ASSERT_RV(APR_SUCCESS, ts_regpage_approve(fx->st, fx->pool, &conf, ID_A,
                                              "alice@example.com", &u, &node_id, &err));
    assert_non_null(u);
    assert_string_equal(u->name, "alice@example.com");
    assert_string_equal(u->email, "alice@example.com");
    ASSERT_RV(APR_SUCCESS, ts_store_node_get(fx->st, fx->pool, node_id, &n, &err));
    assert_int_equal(n->user_id, u->id);
    assert_string_equal(n->node_key, NKEY_A);
    ts_regpage_lookup(fx->st, fx->pool, ID_A, apr_time_now(), &look);
    assert_int_equal(look.status, 409);

    /* again: ECONFLICT, nothing written */
    before = rx_gen(fx);
    assert_int_equal(ts_regpage_approve(fx->st, fx->pool, &conf, ID_A, "alice@example.com",
                                        &u2, &node2, &err), TS_STORE_ECONFLICT);
    assert_int_equal(rx_gen(fx), before);

    /* the second login of the same name reuses the user (here a new node key of machine B) */
    {
        ts_registration_t *r = reg_of(fx->pool, ID_B, NULL);
        r->machine_key = "mkey:" MKEY_B;
        r->node_key = NKEY_B;
        ASSERT_RV(APR_SUCCESS, ts_store_registration_create(fx->st, fx->pool, r, &err));
    }
    ASSERT_RV(APR_SUCCESS, ts_regpage_approve(fx->st, fx->pool, &conf, ID_B,
                                              "alice@example.com", &u2, &node2, &err));
    assert_int_equal(u2->id, u->id);
    assert_int_not_equal(node2, node_id);
    assert_int_equal(fx_count(fx, "users"), 1);
    assert_int_equal(fx_count(fx, "nodes"), 2);
}

static void test_approve_refusals_write_nothing(void **state)
{
    FX_REQUIRE(state);
    ts_tailnet_conf_t conf = rx_conf();
    ts_user_t *u = NULL;
    apr_int64_t node_id = 0, before;
    const char *err = NULL;

    add_reg(fx, ID_A, apr_time_now() - apr_time_from_sec(1));   /* lapsed */
    add_reg(fx, ID_B, apr_time_now() + apr_time_from_sec(600));
    before = rx_gen(fx);
    assert_int_equal(ts_regpage_approve(fx->st, fx->pool, &conf, ID_A, "bob", &u, &node_id,
                                        &err), TS_STORE_ECONFLICT);
    assert_non_null(strstr(err, "expired"));
    assert_int_equal(ts_regpage_approve(fx->st, fx->pool, &conf,
                                        "tsreg-00000000000000000000000000000000", "bob", &u,
                                        &node_id, &err), TS_STORE_ENOTFOUND);
    assert_int_equal(ts_regpage_approve(fx->st, fx->pool, &conf, ID_B, " bob", &u, &node_id,
                                        &err), APR_EINVAL);
    assert_int_equal(ts_regpage_approve(fx->st, fx->pool, &conf, ID_B, "", &u, &node_id,
                                        &err), APR_EINVAL);
    assert_null(u);
    assert_int_equal(node_id, 0);
    assert_int_equal(rx_gen(fx), before);
    assert_int_equal(fx_count(fx, "users"), 0);
    assert_int_equal(fx_count(fx, "nodes"), 0);
    /* an existing user of that name (made by an admin) is used as is */
    rx_user(fx, "bob");
    ASSERT_RV(APR_SUCCESS, ts_regpage_approve(fx->st, fx->pool, &conf, ID_B, "bob", &u,
                                              &node_id, &err));
    assert_null(u->email);
    assert_int_equal(fx_count(fx, "users"), 1);
}

#define BOTH(fn) FX_TEST(fn, FX_SQLITE), FX_TEST(fn, FX_MYSQL)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_login_valid),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_secret_from_key),
        cmocka_unit_test(test_device_and_render),
        BOTH(test_lookup),
        BOTH(test_approve_creates_user_once),
        BOTH(test_approve_refusals_write_nothing),
    };

    apr_initialize();
    if (sodium_init() < 0) return 1;
    fx_note_mysql();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
