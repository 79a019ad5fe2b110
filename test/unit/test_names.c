/* test_names.c: cmocka tests of MagicDNS naming: hostname sanitising, -N de-duplication
 * (in memory and against the store on sqlite3 and MariaDB), rename checks, derived names. */
#include "test_store_fixture.h"
#include "ts_names.h"

static void test_sanitize(void **state)
{
    apr_pool_t *p;
    static const char *const cases[][2] = {
        { "client-a", "client-a" },
        { "Alice's MacBook Pro", "alices-macbook-pro" },
        { "build_1.local", "build-1" },
        { "nas.localdomain", "nas" },
        { "pi.lan", "pi" },
        { "host.example.com", "host-example-com" },
        { "user@box", "user-box" },
        { "--weird--", "weird" },
        { "  spaced  ", "spaced" },
        { "\xc3\xa9t\xc3\xa9", "t" },          /* "été": non-ASCII bytes dropped */
        { "", "node" },
        { "!!!", "node" },
        { ".local", "local" },                 /* nothing before the suffix: kept */
        { "HOST.LOCAL.", "host" },
        { NULL, "node" },
    };
    size_t i;
    char long_name[200];

    (void)state;
    apr_pool_create(&p, NULL);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(ts_names_sanitize(p, cases[i][0]), cases[i][1]);
    }
    memset(long_name, 'a', sizeof(long_name));
    long_name[62] = '-';                      /* a cut that would end on '-' */
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(strlen(ts_names_sanitize(p, long_name)), 62);
    long_name[62] = 'b';
    assert_int_equal(strlen(ts_names_sanitize(p, long_name)), TS_NAMES_LABEL_MAX);
    apr_pool_destroy(p);
}

static void test_check(void **state)
{
    apr_pool_t *p;
    const char *err = NULL;
    char label[80], domain[260];

    (void)state;
    apr_pool_create(&p, NULL);
    assert_int_equal(ts_names_check(p, "web-1", "tail.example.net", &err), APR_SUCCESS);
    assert_int_equal(ts_names_check(p, "a", NULL, &err), APR_SUCCESS);
    assert_int_equal(ts_names_check(p, "", NULL, &err), APR_EINVAL);
    assert_non_null(strstr(err, "1 to 63"));
    assert_int_equal(ts_names_check(p, "Web", NULL, &err), APR_EINVAL);
    assert_non_null(strstr(err, "lower-case"));
    assert_int_equal(ts_names_check(p, "a_b", NULL, &err), APR_EINVAL);
    assert_int_equal(ts_names_check(p, "a.b", NULL, &err), APR_EINVAL);
    assert_int_equal(ts_names_check(p, "-a", NULL, &err), APR_EINVAL);
    assert_non_null(strstr(err, "start or end"));
    assert_int_equal(ts_names_check(p, "a-", NULL, &err), APR_EINVAL);
    memset(label, 'x', 64);
    label[64] = '\0';
    assert_int_equal(ts_names_check(p, label, NULL, &err), APR_EINVAL);
    label[63] = '\0';
    assert_int_equal(ts_names_check(p, label, NULL, &err), APR_SUCCESS);
    /* 63 + 1 + 190 + 1 = 255 fits; one more does not */
    memset(domain, 'd', 190);
    domain[190] = '\0';
    assert_int_equal(ts_names_check(p, label, domain, &err), APR_SUCCESS);
    strcat(domain, "d");
    assert_int_equal(ts_names_check(p, label, domain, &err), APR_EINVAL);
    assert_non_null(strstr(err, "255"));
    apr_pool_destroy(p);
}

static void test_candidates_and_derived(void **state)
{
    apr_pool_t *p;
    char base[64];

    (void)state;
    apr_pool_create(&p, NULL);
    assert_string_equal(ts_names_candidate(p, "web", 0), "web");
    assert_string_equal(ts_names_candidate(p, "web", 2), "web-2");
    memset(base, 'a', 63);
    base[63] = '\0';
    base[59] = '-';
    /* shortened to fit "-12", and no "--" where the cut lands on a dash */
    assert_string_equal(ts_names_candidate(p, base, 12),
                        apr_pstrcat(p, apr_pstrndup(p, base, 59), "-12", NULL));
    assert_int_equal(strlen(ts_names_candidate(p, "node", 123456)), 11);

    assert_true(ts_names_is_derived(p, "client-a", "client-a"));
    assert_true(ts_names_is_derived(p, "client-a-3", "Client-A.local"));
    assert_false(ts_names_is_derived(p, "client-a-03", "client-a"));
    assert_false(ts_names_is_derived(p, "my-box", "client-a"));
    assert_false(ts_names_is_derived(p, "client-a-", "client-a"));
    assert_false(ts_names_is_derived(p, NULL, "client-a"));
    assert_true(ts_names_is_derived(p, "node", NULL));

    assert_string_equal(ts_names_fqdn(p, "web", "tail.example.net"), "web.tail.example.net.");
    assert_string_equal(ts_names_fqdn(p, "web", NULL), "web");
    assert_string_equal(ts_names_fqdn(p, "web", ""), "web");
    apr_pool_destroy(p);
}

static ts_node_t *named(apr_pool_t *p, apr_int64_t id, const char *name)
{
    ts_node_t *n = apr_pcalloc(p, sizeof(*n));

    n->id = id;
    n->given_name = name;
    return n;
}

static void test_unique_in_list(void **state)
{
    apr_pool_t *p;
    apr_array_header_t *nodes;

    (void)state;
    apr_pool_create(&p, NULL);
    nodes = apr_array_make(p, 4, sizeof(ts_node_t *));
    assert_string_equal(ts_names_unique_in(p, "web", 0, nodes), "web");
    APR_ARRAY_PUSH(nodes, ts_node_t *) = named(p, 1, "web");
    APR_ARRAY_PUSH(nodes, ts_node_t *) = named(p, 2, "web-1");
    APR_ARRAY_PUSH(nodes, ts_node_t *) = named(p, 3, "web-3");
    assert_string_equal(ts_names_unique_in(p, "web", 0, nodes), "web-2");
    assert_string_equal(ts_names_unique_in(p, "web", 1, nodes), "web");     /* itself */
    assert_string_equal(ts_names_unique_in(p, "db", 0, nodes), "db");
    assert_string_equal(ts_names_unique_in(p, "web", 0, NULL), "web");
    apr_pool_destroy(p);
}

static apr_array_header_t *names(apr_pool_t *p, const char *first, ...)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));
    const char *n;
    va_list ap;

    va_start(ap, first);
    for (n = first; n; n = va_arg(ap, const char *)) {
        APR_ARRAY_PUSH(a, const char *) = n;
    }
    va_end(ap);
    return a;
}

/* What the registration reads (one index range) and how it picks from it. */
static void test_suffix_prefix_and_first_free(void **state)
{
    apr_pool_t *p;
    const char *base55 = "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeefffff";
    const char *base60 = "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffff";
    const char *pre;
    int n;

    (void)state;
    apr_pool_create(&p, NULL);
    assert_string_equal(ts_names_suffix_prefix(p, "web"), "web-");
    assert_string_equal(ts_names_suffix_prefix(p, base55), apr_pstrcat(p, base55, "-", NULL));
    /* long names are shortened for their suffix: every candidate starts with the prefix */
    pre = ts_names_suffix_prefix(p, base60);
    assert_string_equal(pre, "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeefffff");
    for (n = 1; n < 2000000; n = n * 3 + 1) {
        const char *c = ts_names_candidate(p, base60, n);
        assert_int_equal(strncmp(c, pre, strlen(pre)), 0);
        assert_true(strlen(c) <= 63);
    }
    pre = ts_names_suffix_prefix(p, "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z-0-1-2-3");
    for (n = 1; n < 2000000; n = n * 3 + 1) {
        const char *c = ts_names_candidate(p, "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x"
                                           "-y-z-0-1-2-3", n);
        assert_int_equal(strncmp(c, pre, strlen(pre)), 0);
    }
    assert_string_equal(ts_names_first_free(p, "web", names(p, NULL)), "web-1");
    assert_string_equal(ts_names_first_free(p, "web", NULL), "web-1");
    assert_string_equal(ts_names_first_free(p, "web", names(p, "web-1", "web-3", "web-10",
                                                            "webby", NULL)), "web-2");
    assert_string_equal(ts_names_first_free(p, "web", names(p, "web-2", "web-1", "web-3",
                                                            NULL)), "web-4");
    assert_string_equal(ts_names_first_free(p, base60, names(p,
                        ts_names_candidate(p, base60, 1), NULL)),
                        ts_names_candidate(p, base60, 2));
    apr_pool_destroy(p);
}

static void store_node(fx_t *fx, int n, const char *name)
{
    ts_node_t node;
    const char *err = NULL;

    memset(&node, 0, sizeof(node));
    node.machine_key = fx_key(fx->pool, "mkey:", n);
    node.node_key = fx_key(fx->pool, "nodekey:", n);
    node.given_name = name;
    ASSERT_RV(APR_SUCCESS, ts_store_node_create(fx->st, fx->pool, &node, NULL, &err));
}

static void test_unique_in_store(void **state)
{
    FX_REQUIRE(state);
    const char *err = NULL, *name = NULL;
    ts_node_t *n = NULL;

    ASSERT_RV(APR_SUCCESS, ts_names_unique(fx->st, fx->pool, "web", 0, &name, &err));
    assert_string_equal(name, "web");
    store_node(fx, 1, "web");
    store_node(fx, 2, "web-1");
    ASSERT_RV(APR_SUCCESS, ts_names_unique(fx->st, fx->pool, "web", 0, &name, &err));
    assert_string_equal(name, "web-2");
    ASSERT_RV(APR_SUCCESS, ts_store_node_get_by_given_name(fx->st, fx->pool, "web-1", &n,
                                                           &err));
    ASSERT_RV(APR_SUCCESS, ts_names_unique(fx->st, fx->pool, "web", n->id, &name, &err));
    assert_string_equal(name, "web-1");
    /* a database failure is reported, not taken for "free" */
    ts_store_test_fail_at(fx->st, "node_by_given_name", 1);
    ASSERT_RV(TS_STORE_EFAULT, ts_names_unique(fx->st, fx->pool, "web", 0, &name, &err));
    ts_store_test_fail_at(fx->st, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_candidates_and_derived),
        cmocka_unit_test(test_unique_in_list),
        cmocka_unit_test(test_suffix_prefix_and_first_free),
        FX_TEST(test_unique_in_store, FX_SQLITE),
        FX_TEST(test_unique_in_store, FX_MYSQL),
    };

    apr_initialize();
    fx_note_mysql();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
