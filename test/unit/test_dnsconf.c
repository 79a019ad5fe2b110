/* test_dnsconf.c: DNS directive values checked (resolvers, domains, records) and merged into the
 * DNSConfig object of TS2021DNSConfigFile: override on/off, split routes, search domains,
 * extra records, duplicates, and file fields of the wrong type. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

#include "ts_dnsconf.h"

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

static apr_array_header_t *strs(const char *a, const char *b)
{
    apr_array_header_t *arr = apr_array_make(pool, 2, sizeof(const char *));

    if (a) APR_ARRAY_PUSH(arr, const char *) = a;
    if (b) APR_ARRAY_PUSH(arr, const char *) = b;
    return arr;
}

static json_t *merged(const char *base, const ts_dnsconf_t *d)
{
    const char *out = NULL, *err = NULL;
    json_t *o;

    assert_int_equal(ts_dnsconf_merge(pool, base, d, &out, &err), APR_SUCCESS);
    assert_null(err);
    assert_non_null(out);
    o = json_loads(out, 0, NULL);
    assert_non_null(o);
    return o;
}

static void test_check_resolver(void **state)
{
    (void)state;
    assert_null(ts_dnsconf_check_resolver(pool, "1.1.1.1"));
    assert_null(ts_dnsconf_check_resolver(pool, "2606:4700:4700::1111"));
    assert_null(ts_dnsconf_check_resolver(pool, "https://dns.nextdns.io/abc123"));
    assert_non_null(strstr(ts_dnsconf_check_resolver(pool, "1.1.1"), "'1.1.1' is not an IP"));
    assert_non_null(ts_dnsconf_check_resolver(pool, "http://dns.example/q"));
    assert_non_null(ts_dnsconf_check_resolver(pool, "https://"));
    assert_non_null(ts_dnsconf_check_resolver(pool, "https:///path"));
    assert_non_null(ts_dnsconf_check_resolver(pool, "https://a b"));
    assert_non_null(ts_dnsconf_check_resolver(pool, "https://x\"y"));
    assert_non_null(ts_dnsconf_check_resolver(pool, "dns.example"));
}

static void test_check_domain_and_record(void **state)
{
    char long_label[80];

    (void)state;
    assert_null(ts_dnsconf_check_domain(pool, "corp.example"));
    assert_null(ts_dnsconf_check_domain(pool, "corp.example."));
    assert_null(ts_dnsconf_check_domain(pool, "_msdcs.corp.example"));
    assert_non_null(strstr(ts_dnsconf_check_domain(pool, "a..b"), "'a..b' is not a DNS name"));
    assert_non_null(ts_dnsconf_check_domain(pool, "-a.example"));
    assert_non_null(ts_dnsconf_check_domain(pool, "a-.example"));
    assert_non_null(ts_dnsconf_check_domain(pool, "a b"));
    assert_non_null(ts_dnsconf_check_domain(pool, ""));
    assert_non_null(ts_dnsconf_check_domain(pool, "."));
    memset(long_label, 'a', 64);
    long_label[64] = '\0';
    assert_non_null(ts_dnsconf_check_domain(pool, long_label));

    assert_null(ts_dnsconf_check_record(pool, "grafana.tail.example", "A", "100.64.0.3"));
    assert_null(ts_dnsconf_check_record(pool, "grafana.tail.example", "aaaa", "fd7a:115c:a1e0::3"));
    assert_non_null(strstr(ts_dnsconf_check_record(pool, "g.example", "TXT", "x"),
                           "only A and AAAA"));
    assert_non_null(strstr(ts_dnsconf_check_record(pool, "g.example", "A", "fd7a::1"),
                           "not an IPv4 address"));
    assert_non_null(strstr(ts_dnsconf_check_record(pool, "g.example", "AAAA", "10.0.0.1"),
                           "not an IPv6 address"));
    assert_non_null(ts_dnsconf_check_record(pool, "bad name", "A", "10.0.0.1"));
}

static void test_nothing_is_null(void **state)
{
    const char *out = "x", *err = NULL;
    ts_dnsconf_t d = { NULL, -1, NULL, NULL, NULL };

    (void)state;
    assert_int_equal(ts_dnsconf_merge(pool, NULL, NULL, &out, &err), APR_SUCCESS);
    assert_null(out);
    assert_int_equal(ts_dnsconf_merge(pool, NULL, &d, &out, &err), APR_SUCCESS);
    assert_null(out);
    assert_int_equal(ts_dnsconf_merge(pool, "{}", &d, &out, &err), APR_SUCCESS);
    assert_null(out);
}

static void test_nameservers_override(void **state)
{
    ts_dnsconf_t d = { NULL, -1, NULL, NULL, NULL };
    json_t *o;

    (void)state;
    d.nameservers = strs("1.1.1.1", "https://dns.example/q");
    o = merged(NULL, &d);
    assert_int_equal(json_array_size(json_object_get(o, "Resolvers")), 2);
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(o, "Resolvers"), 1), "Addr")), "https://dns.example/q");
    assert_null(json_object_get(o, "FallbackResolvers"));
    json_decref(o);

    d.override_local = 0;
    o = merged(NULL, &d);
    assert_null(json_object_get(o, "Resolvers"));
    assert_int_equal(json_array_size(json_object_get(o, "FallbackResolvers")), 2);
    json_decref(o);

    /* after the file's, without duplicates */
    d.override_local = 1;
    o = merged("{\"Resolvers\":[{\"Addr\":\"1.1.1.1\"},{\"Addr\":\"9.9.9.9\"}]}", &d);
    assert_int_equal(json_array_size(json_object_get(o, "Resolvers")), 3);
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(o, "Resolvers"), 1), "Addr")), "9.9.9.9");
    json_decref(o);
}

static void test_split_search_records(void **state)
{
    ts_dnsconf_t d = { NULL, -1, NULL, NULL, NULL };
    ts_dnsconf_split_t *sp;
    ts_dnsconf_record_t *r;
    json_t *o, *routes, *rec;

    (void)state;
    d.split = apr_array_make(pool, 2, sizeof(ts_dnsconf_split_t));
    sp = &APR_ARRAY_PUSH(d.split, ts_dnsconf_split_t);
    sp->domain = "Corp.Example.";
    sp->resolvers = strs("10.0.0.53", "10.0.0.54");
    sp = &APR_ARRAY_PUSH(d.split, ts_dnsconf_split_t);
    sp->domain = "internal.example";
    sp->resolvers = strs(NULL, NULL);
    d.search = strs("Example.COM", "other.example");
    d.records = apr_array_make(pool, 1, sizeof(ts_dnsconf_record_t));
    r = &APR_ARRAY_PUSH(d.records, ts_dnsconf_record_t);
    r->name = "grafana.tail.example.";
    r->type = "a";
    r->value = "100.64.0.3";

    o = merged("{\"Routes\":{\"corp.example.\":[{\"Addr\":\"192.0.2.1\"}],"
               "\"keep.example.\":[]},\"Domains\":[\"example.com\"],"
               "\"ExtraRecords\":[{\"Name\":\"a.example\",\"Type\":\"A\",\"Value\":\"10.1.1.1\"}]}",
               &d);
    routes = json_object_get(o, "Routes");
    assert_int_equal(json_object_size(routes), 3);
    /* the directive's route replaces the file's for the same domain */
    assert_int_equal(json_array_size(json_object_get(routes, "corp.example.")), 2);
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(routes, "corp.example."), 0), "Addr")), "10.0.0.53");
    /* an empty list, never null: answered at 100.100.100.100 */
    assert_true(json_is_array(json_object_get(routes, "internal.example.")));
    assert_int_equal(json_array_size(json_object_get(routes, "internal.example.")), 0);
    assert_non_null(json_object_get(routes, "keep.example."));
    /* lower-cased, de-duplicated, after the file's */
    assert_int_equal(json_array_size(json_object_get(o, "Domains")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "Domains"), 1)),
                        "other.example");
    assert_int_equal(json_array_size(json_object_get(o, "ExtraRecords")), 2);
    rec = json_array_get(json_object_get(o, "ExtraRecords"), 1);
    assert_string_equal(json_string_value(json_object_get(rec, "Name")), "grafana.tail.example");
    assert_string_equal(json_string_value(json_object_get(rec, "Type")), "A");
    assert_string_equal(json_string_value(json_object_get(rec, "Value")), "100.64.0.3");
    json_decref(o);
}

static void test_bad_base(void **state)
{
    ts_dnsconf_t d = { NULL, -1, NULL, NULL, NULL };
    const char *out = NULL, *err = NULL;

    (void)state;
    assert_int_equal(ts_dnsconf_merge(pool, "[1]", &d, &out, &err), APR_EINVAL);
    assert_non_null(strstr(err, "not a JSON object"));
    assert_int_equal(ts_dnsconf_merge(pool, "{bad", &d, &out, &err), APR_EINVAL);
    assert_non_null(strstr(err, "not a JSON object"));
    d.nameservers = strs("1.1.1.1", NULL);
    assert_int_equal(ts_dnsconf_merge(pool, "{\"Resolvers\":\"1.1.1.1\"}", &d, &out, &err),
                     APR_EINVAL);
    assert_non_null(strstr(err, "\"Resolvers\" must be an array"));
    assert_null(out);
    d.nameservers = NULL;
    d.split = apr_array_make(pool, 1, sizeof(ts_dnsconf_split_t));
    APR_ARRAY_PUSH(d.split, ts_dnsconf_split_t).domain = "x.example";
    APR_ARRAY_IDX(d.split, 0, ts_dnsconf_split_t).resolvers = NULL;
    assert_int_equal(ts_dnsconf_merge(pool, "{\"Routes\":[]}", &d, &out, &err), APR_EINVAL);
    assert_non_null(strstr(err, "\"Routes\" must be an object"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_resolver),
        cmocka_unit_test(test_check_domain_and_record),
        cmocka_unit_test(test_nothing_is_null),
        cmocka_unit_test(test_nameservers_override),
        cmocka_unit_test(test_split_search_records),
        cmocka_unit_test(test_bad_base),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
