/* test_ipalloc.c: cmocka tests of address allocation: prefix checks, sequential and random
 * picks, reserved addresses, holes, full prefixes, addresses lost to concurrent writers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_hash.h>

#include "ts_ipalloc.h"
#include "ts_store.h"

static apr_pool_t *pool;

static int setup(void **state)
{
    (void)state;
    apr_pool_create(&pool, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static ts_ipalloc_t *alloc(const char *v4, const char *v6, ts_ipalloc_strategy_e s)
{
    ts_tailnet_conf_t conf;
    ts_ipalloc_t *a = NULL;
    const char *err = NULL;

    memset(&conf, 0, sizeof(conf));
    conf.ipv4_prefix = v4;
    conf.ipv6_prefix = v6;
    conf.ipalloc = s;
    if (ts_ipalloc_create(&a, pool, &conf, &err) != APR_SUCCESS) {
        fail_msg("ts_ipalloc_create: %s", err);
    }
    return a;
}

/* A node list holding the given addresses (NULL-terminated). */
static apr_array_header_t *nodes_with(const char *first, ...)
{
    apr_array_header_t *nodes = apr_array_make(pool, 8, sizeof(ts_node_t *));
    const char *ip;
    va_list ap;

    va_start(ap, first);
    for (ip = first; ip; ip = va_arg(ap, const char *)) {
        ts_node_t *n = apr_pcalloc(pool, sizeof(*n));
        if (strchr(ip, ':')) {
            n->ipv6 = ip;
        }
        else {
            n->ipv4 = ip;
        }
        APR_ARRAY_PUSH(nodes, ts_node_t *) = n;
    }
    va_end(ap);
    return nodes;
}

static void add(apr_array_header_t *nodes, const char *v4, const char *v6)
{
    ts_node_t *n = apr_pcalloc(pool, sizeof(*n));

    n->ipv4 = v4;
    n->ipv6 = v6;
    APR_ARRAY_PUSH(nodes, ts_node_t *) = n;
}

static void test_check_prefix(void **state)
{
    const char *err = NULL;

    (void)state;
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.64.0.0/10", 4, &err), APR_SUCCESS);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.100.0.0/16", 4, &err), APR_SUCCESS);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "fd7a:115c:a1e0::/48", 6, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "fd7a:115c:a1e0:ab12::/64", 6, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "10.0.0.0/8", 4, &err), APR_EINVAL);
    assert_non_null(strstr(err, "not inside 100.64.0.0/10"));
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.0.0.0/8", 4, &err), APR_EINVAL);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.64.0.1/24", 4, &err), APR_EINVAL);
    assert_non_null(strstr(err, "canonical"));
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.64.0.0", 4, &err), APR_EINVAL);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.64.0.0/33", 4, &err), APR_EINVAL);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.64.0.0/010", 4, &err), APR_EINVAL);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "fd7a:115c:a1e0:0::/64", 6, &err),
                     APR_EINVAL);
    assert_int_equal(ts_ipalloc_check_prefix(pool, "fd7a:115c::/32", 6, &err), APR_EINVAL);
    assert_non_null(strstr(err, "fd7a:115c:a1e0::/48"));
    assert_int_equal(ts_ipalloc_check_prefix(pool, "100.64.0.0/10", 6, &err), APR_EINVAL);
    assert_int_equal(ts_ipalloc_check_prefix(pool, NULL, 4, &err), APR_EINVAL);
}

static void test_create_refuses_bad_prefix(void **state)
{
    ts_tailnet_conf_t conf;
    ts_ipalloc_t *a = NULL;
    const char *err = NULL;

    (void)state;
    memset(&conf, 0, sizeof(conf));
    conf.ipv4_prefix = "192.168.0.0/16";
    assert_int_equal(ts_ipalloc_create(&a, pool, &conf, &err), APR_EINVAL);
    assert_null(a);
    assert_non_null(strstr(err, "192.168.0.0/16"));
}

static void test_sequential(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.0.0/10", "fd7a:115c:a1e0::/48", TS_IPALLOC_SEQUENTIAL);
    const char *v4, *v6, *err = NULL;

    (void)state;
    assert_int_equal(ts_ipalloc_pick(a, pool, NULL, &v4, &v6, &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.0.1");
    assert_string_equal(v6, "fd7a:115c:a1e0::1");
    /* after the highest address in use, not into the hole at .2 */
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes_with("100.64.0.1", "100.64.0.5",
                                                         "fd7a:115c:a1e0::9", NULL),
                                     &v4, &v6, &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.0.6");
    assert_string_equal(v6, "fd7a:115c:a1e0::a");
    /* addresses outside the prefix (an old configuration) do not matter */
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes_with("100.128.0.1", NULL), &v4, &v6,
                                     &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.0.1");
    /* crossing an octet */
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes_with("100.64.0.255", NULL), &v4, &v6,
                                     &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.1.0");
}

static void test_holes_then_full(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.0.0/29", NULL, TS_IPALLOC_SEQUENTIAL);
    apr_array_header_t *nodes;
    const char *v4, *v6, *err = NULL;

    (void)state;
    /* .0 is the network and .7 the broadcast address: .1-.6 are usable */
    nodes = nodes_with("100.64.0.1", "100.64.0.2", "100.64.0.4", "100.64.0.6", NULL);
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.0.3");      /* wrapped round into the first hole */
    assert_null(v6);                             /* no IPv6 prefix configured */
    add(nodes, "100.64.0.3", NULL);
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.0.5");
    add(nodes, "100.64.0.5", NULL);
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), TS_IPALLOC_EFULL);
    assert_non_null(strstr(err, "100.64.0.0/29"));
}

static void test_reserved_addresses(void **state)
{
    ts_ipalloc_t *a = alloc("100.100.100.96/29", NULL, TS_IPALLOC_SEQUENTIAL);
    ts_ipalloc_t *cros = alloc("100.115.92.0/22", "fd7a:115c:a1e0::/120",
                               TS_IPALLOC_SEQUENTIAL);
    apr_array_header_t *nodes = apr_array_make(pool, 8, sizeof(ts_node_t *));
    const char *v4, *v6, *err = NULL;
    const char *want[] = { "100.100.100.97", "100.100.100.98", "100.100.100.99",
                           "100.100.100.101", "100.100.100.102" };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), APR_SUCCESS);
        assert_string_equal(v4, want[i]);
        add(nodes, v4, NULL);
    }
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), TS_IPALLOC_EFULL);
    /* 100.115.92.0/23 belongs to ChromeOS; fd7a:115c:a1e0::53 to MagicDNS */
    assert_int_equal(ts_ipalloc_pick(cros, pool, nodes_with("fd7a:115c:a1e0::52", NULL),
                                     &v4, &v6, &err), APR_SUCCESS);
    assert_string_equal(v4, "100.115.94.0");
    assert_string_equal(v6, "fd7a:115c:a1e0::54");
    assert_true(ts_ipalloc_reserved(a, "100.100.100.100"));
    assert_true(ts_ipalloc_reserved(a, "100.100.100.96"));
    assert_true(ts_ipalloc_reserved(a, "100.100.100.103"));
    assert_false(ts_ipalloc_reserved(a, "100.100.100.101"));
    assert_true(ts_ipalloc_reserved(a, "100.115.93.7"));
    assert_true(ts_ipalloc_reserved(a, "fd7a:115c:a1e0::53"));
    assert_true(ts_ipalloc_reserved(cros, "fd7a:115c:a1e0::ff"));      /* last of /120 */
    assert_false(ts_ipalloc_reserved(cros, "fd7a:115c:a1e0::52"));
    assert_false(ts_ipalloc_reserved(a, "not an address"));
}

static void test_random(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.7.0/24", "fd7a:115c:a1e0::/48", TS_IPALLOC_RANDOM);
    apr_array_header_t *nodes = apr_array_make(pool, 256, sizeof(ts_node_t *));
    apr_hash_t *seen = apr_hash_make(pool);
    const char *v4, *v6, *err = NULL;
    int i, in_order = 1;

    (void)state;
    for (i = 0; i < 254; i++) {
        assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), APR_SUCCESS);
        assert_int_equal(strncmp(v4, "100.64.7.", 9), 0);
        assert_false(ts_ipalloc_reserved(a, v4));
        assert_null(apr_hash_get(seen, v4, APR_HASH_KEY_STRING));
        assert_int_equal(strncmp(v6, "fd7a:115c:a1e0:", 15), 0);
        assert_null(apr_hash_get(seen, v6, APR_HASH_KEY_STRING));
        apr_hash_set(seen, v4, APR_HASH_KEY_STRING, v4);
        apr_hash_set(seen, v6, APR_HASH_KEY_STRING, v6);
        if (strcmp(v4, apr_psprintf(pool, "100.64.7.%d", i + 1)) != 0) {
            in_order = 0;
        }
        add(nodes, v4, v6);
    }
    assert_false(in_order);                     /* 1 in 254! it is not sequential */
    assert_int_equal(ts_ipalloc_pick(a, pool, nodes, &v4, &v6, &err), TS_IPALLOC_EFULL);
}

static void test_exclude(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.0.0/24", "fd7a:115c:a1e0::/48", TS_IPALLOC_SEQUENTIAL);
    const char *v4, *v6, *err = NULL;

    (void)state;
    /* lost to another process whose row this caller's list does not show yet */
    ts_ipalloc_exclude(a, "100.64.0.1");
    ts_ipalloc_exclude(a, "fd7a:115c:a1e0::1");
    ts_ipalloc_exclude(a, "garbage");
    assert_int_equal(ts_ipalloc_pick(a, pool, NULL, &v4, &v6, &err), APR_SUCCESS);
    assert_string_equal(v4, "100.64.0.2");
    assert_string_equal(v6, "fd7a:115c:a1e0::2");
}

/* A fake index: the addresses in a hash, and how often it was asked. */
typedef struct {
    apr_hash_t *used;
    int asked;
    int fail_at;                /* 1-based probe that fails, 0: none */
} index_t;

static apr_status_t probe(void *baton, int family, const char *ip, int *used)
{
    index_t *ix = baton;

    assert_true(family == (strchr(ip, ':') ? 6 : 4));
    if (++ix->asked == ix->fail_at) {
        return APR_EGENERAL;
    }
    *used = apr_hash_get(ix->used, ip, APR_HASH_KEY_STRING) != NULL;
    return APR_SUCCESS;
}

static index_t *index_with(const char *first, ...)
{
    index_t *ix = apr_pcalloc(pool, sizeof(*ix));
    const char *ip;
    va_list ap;

    ix->used = apr_hash_make(pool);
    va_start(ap, first);
    for (ip = first; ip; ip = va_arg(ap, const char *)) {
        apr_hash_set(ix->used, ip, APR_HASH_KEY_STRING, ip);
    }
    va_end(ap);
    return ix;
}

static void test_probe_sequential(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.0.0/10", "fd7a:115c:a1e0::/48", TS_IPALLOC_SEQUENTIAL);
    index_t *ix = index_with("100.64.0.1", "100.64.0.7", "100.64.0.8", NULL);
    const char *ip, *err = NULL;

    (void)state;
    assert_string_equal(ts_ipalloc_prefix(a, 4), "100.64.0.0/10");
    assert_string_equal(ts_ipalloc_prefix(a, 6), "fd7a:115c:a1e0::/48");
    /* no cursor: from the prefix's start, the network address never asked about */
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, NULL, 16, probe, ix, &ip, &err), APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.2");
    assert_int_equal(ix->asked, 2);
    /* after the cursor, skipping used ones, never back into the hole at .2 */
    ix->asked = 0;
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, "100.64.0.6", 16, probe, ix, &ip, &err),
                     APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.9");
    assert_int_equal(ix->asked, 3);
    /* a cursor outside the prefix (it was changed) starts over */
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, "10.0.0.1", 16, probe, ix, &ip, &err),
                     APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.2");
    assert_int_equal(ts_ipalloc_probe(a, pool, 6, "fd7a:115c:a1e0::ff", 16, probe, ix, &ip,
                                      &err), APR_SUCCESS);
    assert_string_equal(ip, "fd7a:115c:a1e0::100");
    /* reserved addresses are skipped without a probe: 100.100.100.100 */
    ix->asked = 0;
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, "100.100.100.99", 16, probe, ix, &ip, &err),
                     APR_SUCCESS);
    assert_string_equal(ip, "100.100.100.101");
    assert_int_equal(ix->asked, 1);
    /* a family without a prefix */
    a = alloc("100.64.0.0/10", NULL, TS_IPALLOC_SEQUENTIAL);
    assert_null(ts_ipalloc_prefix(a, 6));
    assert_int_equal(ts_ipalloc_probe(a, pool, 6, NULL, 16, probe, ix, &ip, &err), APR_SUCCESS);
    assert_null(ip);
}

static void test_probe_wraps_dense_full_and_failing(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.0.0/29", NULL, TS_IPALLOC_SEQUENTIAL);
    index_t *ix = index_with("100.64.0.2", "100.64.0.3", "100.64.0.4", "100.64.0.5",
                             "100.64.0.6", NULL);
    apr_array_header_t *used = apr_array_make(pool, 8, sizeof(char *));
    const char *ip, *err = NULL;

    (void)state;
    /* at the end of the prefix: round to its start, where .1 is free */
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, "100.64.0.6", 16, probe, ix, &ip, &err),
                     APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.1");
    /* too many used in a row: the caller reads them all */
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, "100.64.0.1", 3, probe, ix, &ip, &err),
                     TS_IPALLOC_EDENSE);
    assert_null(ip);
    APR_ARRAY_PUSH(used, const char *) = "100.64.0.2";
    APR_ARRAY_PUSH(used, const char *) = "100.64.0.3";
    APR_ARRAY_PUSH(used, const char *) = "fd7a:115c:a1e0::9";     /* other family: ignored */
    APR_ARRAY_PUSH(used, const char *) = NULL;
    assert_int_equal(ts_ipalloc_pick_among(a, pool, 4, "100.64.0.1", used, &ip, &err),
                     APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.4");
    /* no cursor: after the highest in use, as before there were cursors */
    assert_int_equal(ts_ipalloc_pick_among(a, pool, 4, NULL, used, &ip, &err), APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.4");
    /* every address looked at: full, by probing and from the list */
    apr_hash_set(ix->used, "100.64.0.1", APR_HASH_KEY_STRING, "x");
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, "100.64.0.3", 100, probe, ix, &ip, &err),
                     TS_IPALLOC_EFULL);
    assert_string_equal(err, "no free IPv4 address left in 100.64.0.0/29");
    assert_null(ip);
    APR_ARRAY_PUSH(used, const char *) = "100.64.0.1";
    APR_ARRAY_PUSH(used, const char *) = "100.64.0.4";
    APR_ARRAY_PUSH(used, const char *) = "100.64.0.5";
    APR_ARRAY_PUSH(used, const char *) = "100.64.0.6";
    assert_int_equal(ts_ipalloc_pick_among(a, pool, 4, "100.64.0.3", used, &ip, &err),
                     TS_IPALLOC_EFULL);
    /* a failing lookup is passed on, not taken for "free" */
    ix = index_with(NULL);
    ix->fail_at = 1;
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, NULL, 16, probe, ix, &ip, &err),
                     APR_EGENERAL);
    assert_null(ip);
    /* excluded addresses (lost to a concurrent writer) are not asked about */
    ix = index_with(NULL);
    ts_ipalloc_exclude(a, "100.64.0.1");
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, NULL, 16, probe, ix, &ip, &err),
                     APR_SUCCESS);
    assert_string_equal(ip, "100.64.0.2");
    assert_int_equal(ix->asked, 1);
}

static void test_probe_random(void **state)
{
    ts_ipalloc_t *a = alloc("100.64.7.0/24", "fd7a:115c:a1e0::/48", TS_IPALLOC_RANDOM);
    index_t *ix = index_with(NULL);
    const char *ip, *err = NULL;
    int i, in_order = 1;

    (void)state;
    for (i = 0; i < 254; i++) {
        assert_int_equal(ts_ipalloc_probe(a, pool, 4, NULL, 1000, probe, ix, &ip, &err),
                         APR_SUCCESS);
        assert_int_equal(strncmp(ip, "100.64.7.", 9), 0);
        assert_false(ts_ipalloc_reserved(a, ip));
        assert_null(apr_hash_get(ix->used, ip, APR_HASH_KEY_STRING));
        apr_hash_set(ix->used, ip, APR_HASH_KEY_STRING, ip);
        if (strcmp(ip, apr_psprintf(pool, "100.64.7.%d", i + 1)) != 0) {
            in_order = 0;
        }
    }
    assert_false(in_order);
    assert_int_equal(ts_ipalloc_probe(a, pool, 4, NULL, 1000, probe, ix, &ip, &err),
                     TS_IPALLOC_EFULL);
    assert_int_equal(ts_ipalloc_probe(a, pool, 6, NULL, 16, probe, ix, &ip, &err),
                     APR_SUCCESS);
    assert_int_equal(strncmp(ip, "fd7a:115c:a1e0:", 15), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_prefix),
        cmocka_unit_test(test_create_refuses_bad_prefix),
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_holes_then_full),
        cmocka_unit_test(test_reserved_addresses),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_probe_sequential),
        cmocka_unit_test(test_probe_wraps_dense_full_and_failing),
        cmocka_unit_test(test_probe_random),
    };

    apr_initialize();
    return cmocka_run_group_tests(tests, setup, teardown);
}
