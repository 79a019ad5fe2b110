/* test_routes.c: prefixes made canonical or refused with the value named, the advertised set
 * from Hostinfo, approvals kept across advertisement changes, exit routes as a pair. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <string.h>

#include "ts_routes.h"

static apr_pool_t *pool;

static int setup(void **state)
{
    (void)state;
    apr_initialize();
    return apr_pool_create(&pool, NULL);
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}

static const char *canon(const char *text)
{
    const char *err = NULL, *c = ts_routes_canonical(pool, text, &err);

    assert_true((c == NULL) == (err != NULL));
    return c ? c : err;
}

static void test_canonical(void **state)
{
    (void)state;
    assert_string_equal(canon("10.0.0.0/24"), "10.0.0.0/24");
    assert_string_equal(canon("0.0.0.0/0"), "0.0.0.0/0");
    assert_string_equal(canon("::/0"), "::/0");
    assert_string_equal(canon("FD00:0:0:1::/64"), "fd00:0:0:1::/64");
    assert_string_equal(canon("192.168.1.7/32"), "192.168.1.7/32");
    assert_non_null(strstr(canon("10.0.0.1/24"), "'10.0.0.1/24' has host bits set"));
    assert_non_null(strstr(canon("fd00::1/64"), "has host bits set"));
    assert_non_null(strstr(canon("10.0.0.0"), "'10.0.0.0' is not an IP prefix"));
    assert_non_null(strstr(canon("10.0.0.0/33"), "is not an IP prefix"));
    assert_non_null(strstr(canon("fd00::/129"), "is not an IP prefix"));
    assert_non_null(strstr(canon("10.0.0.0/-1"), "is not an IP prefix"));
    assert_non_null(strstr(canon("10.0.0.0/08"), "is not an IP prefix"));
    assert_non_null(strstr(canon("10.0.0.0/8x"), "is not an IP prefix"));
    assert_non_null(strstr(canon("/8"), "is not an IP prefix"));
    assert_non_null(strstr(canon("10.0.0.0/"), "is not an IP prefix"));
    assert_non_null(strstr(canon("example.com/24"), "is not an IP prefix"));
    assert_true(ts_routes_is_exit("0.0.0.0/0") && ts_routes_is_exit("::/0"));
    assert_false(ts_routes_is_exit("10.0.0.0/8"));
}

static void test_from_hostinfo(void **state)
{
    int skipped = -1;
    apr_array_header_t *a = ts_routes_from_hostinfo(pool,
        "{\"Hostname\":\"r\",\"RoutableIPs\":[\"10.0.0.0/24\",\"bad\",\"10.0.0.0/24\","
        "\"FD00::/64\",7,\"10.0.0.1/24\"]}", &skipped);

    (void)state;
    assert_int_equal(a->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(a, 0, const char *), "10.0.0.0/24");
    assert_string_equal(APR_ARRAY_IDX(a, 1, const char *), "fd00::/64");
    assert_int_equal(skipped, 3);
    assert_int_equal(ts_routes_from_hostinfo(pool, "{}", NULL)->nelts, 0);
    assert_int_equal(ts_routes_from_hostinfo(pool, "not json", NULL)->nelts, 0);
    assert_int_equal(ts_routes_from_hostinfo(pool, NULL, NULL)->nelts, 0);
    assert_int_equal(ts_routes_from_hostinfo(pool, "{\"RoutableIPs\":\"10.0.0.0/8\"}",
                                             NULL)->nelts, 0);
}

static apr_array_header_t *prefixes(const char *a, const char *b)
{
    apr_array_header_t *arr = apr_array_make(pool, 2, sizeof(const char *));

    if (a) APR_ARRAY_PUSH(arr, const char *) = a;
    if (b) APR_ARRAY_PUSH(arr, const char *) = b;
    return arr;
}

static const ts_route_t *route(const apr_array_header_t *r, const char *prefix)
{
    int i;

    for (i = 0; i < r->nelts; i++)
        if (!strcmp(APR_ARRAY_IDX(r, i, ts_route_t).prefix, prefix))
            return &APR_ARRAY_IDX(r, i, ts_route_t);
    return NULL;
}

static void test_advertise_and_approve(void **state)
{
    apr_array_header_t *r;
    int changed = -1;

    (void)state;
    r = ts_routes_with_advertised(pool, NULL, prefixes("10.0.0.0/24", "0.0.0.0/0"), &changed);
    assert_true(changed);
    assert_int_equal(r->nelts, 2);
    assert_true(route(r, "10.0.0.0/24")->advertised && !route(r, "10.0.0.0/24")->approved);

    r = ts_routes_set_approved(pool, r, prefixes("10.0.0.0/24", "0.0.0.0/0"), 1, &changed);
    assert_true(changed);
    /* the exit route approves both families, ::/0 even before it is advertised */
    assert_int_equal(r->nelts, 3);
    assert_true(route(r, "::/0")->approved && !route(r, "::/0")->advertised);
    assert_true(route(r, "0.0.0.0/0")->approved && route(r, "0.0.0.0/0")->advertised);
    /* sorted by prefix */
    assert_string_equal(APR_ARRAY_IDX(r, 0, ts_route_t).prefix, "0.0.0.0/0");

    /* same again: no change */
    r = ts_routes_set_approved(pool, r, prefixes("10.0.0.0/24", NULL), 1, &changed);
    assert_false(changed);

    /* the node stops advertising the subnet: the approval stays for when it comes back */
    r = ts_routes_with_advertised(pool, r, prefixes("0.0.0.0/0", "::/0"), &changed);
    assert_true(changed);
    assert_true(route(r, "10.0.0.0/24")->approved && !route(r, "10.0.0.0/24")->advertised);
    r = ts_routes_with_advertised(pool, r, prefixes("0.0.0.0/0", "::/0"), &changed);
    assert_false(changed);

    /* withdrawing: the exit pair together; a row neither advertised nor approved goes */
    r = ts_routes_set_approved(pool, r, prefixes("::/0", "10.0.0.0/24"), 0, &changed);
    assert_true(changed);
    assert_null(route(r, "10.0.0.0/24"));
    assert_false(route(r, "0.0.0.0/0")->approved);
    assert_false(route(r, "::/0")->approved);
    assert_int_equal(r->nelts, 2);

    /* withdrawing what was never there changes nothing */
    r = ts_routes_set_approved(pool, r, prefixes("192.168.0.0/16", NULL), 0, &changed);
    assert_false(changed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_from_hostinfo),
        cmocka_unit_test(test_advertise_and_approve),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
