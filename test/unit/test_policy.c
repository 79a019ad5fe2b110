/* test_policy.c: cmocka tests of the policy compiler core: HuJSON edge cases, every kind
 * of bad policy the issue lists (each a clear error naming the line), and compiled
 * filters, peers, routes (primary failover), SSH rules, node attributes and tests. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "ts_hujson.h"
#include "ts_policy.h"

static apr_pool_t *pool;

static int setup(void **state)
{
    (void)state;
    return apr_pool_create(&pool, NULL) == APR_SUCCESS ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

/* ---- HuJSON ---- */

static json_t *hujson_ok(const char *text)
{
    json_t *j = NULL;
    const char *err = NULL;

    assert_int_equal(ts_hujson_parse(pool, text, strlen(text), &j, &err), APR_SUCCESS);
    assert_non_null(j);
    return j;
}

static const char *hujson_bad(const char *text)
{
    json_t *j = NULL;
    const char *err = NULL;

    assert_int_equal(ts_hujson_parse(pool, text, strlen(text), &j, &err), APR_EINVAL);
    assert_null(j);
    assert_non_null(err);
    return err;
}

static void test_hujson_comments_commas(void **state)
{
    json_t *j;

    (void)state;
    j = hujson_ok("// leading comment\n{\n  \"a\": [1, 2, 3,], // trailing comma in a list\n"
                  "  /* block\n     comment */ \"b\": {\"c\": true,},\n}\n");
    assert_int_equal(json_array_size(json_object_get(j, "a")), 3);
    assert_true(json_is_true(json_object_get(json_object_get(j, "b"), "c")));
    json_decref(j);
    /* comment markers and commas inside strings are data */
    j = hujson_ok("{\"url\": \"http://x/*y*/\", \"s\": \"a,]\", \"q\": \"say \\\"hi\\\" // no\"}");
    assert_string_equal(json_string_value(json_object_get(j, "url")), "http://x/*y*/");
    assert_string_equal(json_string_value(json_object_get(j, "s")), "a,]");
    assert_string_equal(json_string_value(json_object_get(j, "q")), "say \"hi\" // no");
    json_decref(j);
    /* a comma followed by a comment then the closing bracket */
    j = hujson_ok("[1, 2, /* two */\n // end\n]");
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);
    /* byte order mark */
    j = hujson_ok("\xef\xbb\xbf{\"x\": 1}");
    assert_int_equal(json_integer_value(json_object_get(j, "x")), 1);
    json_decref(j);
}

static void test_hujson_errors_keep_lines(void **state)
{
    const char *err;

    (void)state;
    /* the block comment spans lines 2-4: the error on line 5 is still reported there */
    err = hujson_bad("{\n/* one\n two\n three */\n \"a\": nope\n}");
    assert_non_null(strstr(err, "line 5"));
    err = hujson_bad("{\"a\": 1}\n\n/* never closed\n");
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "unterminated"));
    err = hujson_bad("{\n\"a\": \"open\n}");
    assert_non_null(strstr(err, "line 2"));
    err = hujson_bad("{\"a\": 1, \"a\": 2}");   /* duplicate keys */
    assert_non_null(strstr(err, "line 1"));
    err = hujson_bad("{,}");
    assert_non_null(strstr(err, "line 1"));
    err = hujson_bad("[1,\n,]");                 /* only one trailing comma */
    assert_non_null(strstr(err, "line 2"));
    err = hujson_bad("{\"a\":\n ,}");
    assert_non_null(strstr(err, "line 2"));
    assert_int_equal(ts_hujson_line_of("{\n\n \"x\": \"tag:y\"}", "tag:y"), 3);
    assert_int_equal(ts_hujson_line_of("{}", "tag:y"), 0);
}

static void test_hujson_nul_and_size(void **state)
{
    static const char nul[] = "{\"a\":\n\"b\0c\"}";
    json_t *j = NULL;
    const char *err = NULL;
    char *big;

    (void)state;
    assert_int_equal(ts_hujson_parse(pool, nul, sizeof(nul) - 1, &j, &err), APR_EINVAL);
    assert_non_null(strstr(err, "line 2"));
    big = malloc(10u * 1024 * 1024);
    assert_non_null(big);
    memset(big, ' ', 10u * 1024 * 1024);
    big[0] = '{';
    big[10u * 1024 * 1024 - 1] = '}';
    assert_int_equal(ts_hujson_parse(pool, big, 10u * 1024 * 1024, &j, &err), APR_EINVAL);
    assert_non_null(strstr(err, "limit"));
    free(big);
}

/* ---- bad policies ---- */

static const char *policy_bad(const char *text)
{
    ts_policy_t *pol = NULL;
    const char *err = NULL;

    assert_int_equal(ts_policy_parse(pool, text, strlen(text), &pol, &err), APR_EINVAL);
    assert_non_null(err);
    return err;
}

static void assert_contains(const char *s, const char *part)
{
    if (strstr(s, part) == NULL) {
        fail_msg("\"%s\" does not contain \"%s\"", s, part);
    }
}

static void test_policy_bad_input(void **state)
{
    const char *err;

    (void)state;
    err = policy_bad("{\n \"acls\": [\n  {\"action\": \"accept\", \"src\": [\"*\"],,}\n ]\n}");
    assert_contains(err, "line 3");
    err = policy_bad("{\n\"acls\": [{\"action\": \"accept\",\n"
                     " \"src\": [\"group:nobody\"], \"dst\": [\"*:*\"]}]}");
    assert_contains(err, "line 3");
    assert_contains(err, "group not found: \"group:nobody\"");
    err = policy_bad("{\"tagOwners\": {\"tag:a\": []},\n\"acls\": [{\"action\": \"accept\",\n"
                     " \"src\": [\"*\"],\n \"dst\": [\"tag:missing:22\"]}]}");
    assert_contains(err, "line 4");
    assert_contains(err, "tag not found: \"tag:missing\"");
    err = policy_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n"
                     "  \"dst\": [\"nosuchhost:80\"]}]}");
    assert_contains(err, "line 2");
    assert_contains(err, "nosuchhost");
    err = policy_bad("{\"hosts\": {\n \"web\": \"10.0.0.0/33\"}}");
    assert_contains(err, "line 2");
    assert_contains(err, "10.0.0.0/33");
    err = policy_bad("{\"hosts\": {\"web\": \"300.1.1.1\"}}");
    assert_contains(err, "300.1.1.1");
    err = policy_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n"
                     "\n  \"dst\": [\"10.0.0.0/8:99999\"]}]}");
    assert_contains(err, "line 3");
    assert_contains(err, "port range \"99999\"");
    err = policy_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], "
                     "\"dst\": [\"10.0.0.0/8:ssh\"]}]}");
    assert_contains(err, "invalid first integer");
    err = policy_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], "
                     "\"dst\": [\"10.0.0.0/8:90-80\"]}]}");
    assert_contains(err, "90-80");
    err = policy_bad("{\"groups\": {\n \"group:a\": [\"group:b\"],\n"
                     " \"group:b\": [\"group:a\"]}}");
    assert_contains(err, "recursive");
    assert_contains(err, "line 2");
    err = policy_bad("{\"tagOwners\": {\"tag:r\": []},\n \"autoApprovers\": {\"routes\": {\n"
                     "  \"10.0.0.1/8\": [\"tag:r\"]}}}");
    assert_contains(err, "line 3");
    assert_contains(err, "not a valid prefix");
    err = policy_bad("{\"autoApprovers\": {\"routes\": {\"banana\": []}}}");
    assert_contains(err, "banana");
    err = policy_bad("{\"acls\": [{\"action\": \"deny\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}");
    assert_contains(err, "not supported");
    err = policy_bad("{\"acl\": []}");
    assert_contains(err, "unknown field \"acl\"");
    err = policy_bad("[1, 2]");
    assert_contains(err, "object");
    err = policy_bad("{\"ssh\": [{\"action\": \"accept\", \"src\": [\"*\"], "
                     "\"dst\": [\"tag:x\"], \"users\": []}]}");
    assert_contains(err, "users must be specified");
    err = policy_bad("{\"ssh\": [{\"action\": \"check\", \"checkPeriod\": \"200h\", "
                     "\"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self\"], "
                     "\"users\": [\"root\"]}]}");
    assert_contains(err, "above the max");
    err = policy_bad("{\"grants\": [{\"src\": [\"*\"], \"dst\": [\"*\"]}]}");
    assert_contains(err, "ip and app can not both be empty");
    err = policy_bad("{\"grants\": [{\"src\": [\"*\"], \"dst\": [\"*\"], "
                     "\"app\": {\"tailscale.com/cap/funnel\": [{}]}}]}");
    assert_contains(err, "tailscale.com");
    err = policy_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"tag:a\"], "
                     "\"dst\": [\"autogroup:self:*\"]}], \"tagOwners\": {\"tag:a\": []}}");
    assert_contains(err, "autogroup:self");
}

static void test_policy_too_big(void **state)
{
    size_t n = 10u * 1024 * 1024;
    char *big = malloc(n + 1);
    ts_policy_t *pol = NULL;
    const char *err = NULL;
    size_t i;

    (void)state;
    assert_non_null(big);
    /* a syntactically valid 10 MB policy: one huge group */
    strcpy(big, "{\"groups\": {\"group:g\": [");
    for (i = strlen(big); i + 32 < n; i += 22) {
        memcpy(big + i, "\"u0000000@example.com\",", 22);
    }
    strcpy(big + i, "\"x@example.com\"]}}");
    assert_int_equal(ts_policy_parse(pool, big, strlen(big), &pol, &err), APR_EINVAL);
    assert_null(pol);
    assert_contains(err, "limit");
    free(big);
}

/* ---- compilation ---- */

static const ts_policy_user_t users[] = {
    { 1, "odin", "odin@example.com", 1, 1 },
    { 2, "thor", "thor@example.org", 1, 0 },
};
static const char *const tag_server[] = { "tag:server" };
static const char *const tag_router[] = { "tag:router" };
static const char *const route_10[] = { "10.1.0.0/16" };
static const char *const domains[] = { "example.com" };

/* laptop (odin), phone (odin), desk (thor), server, r1 + r2 routers for 10.1.0.0/16 */
static ts_policy_node_t nodes[] = {
    { 1, "laptop", 0, NULL, 0, "100.64.0.1", "fd7a:115c:a1e0::1", NULL, 0, NULL, 0, 1, 1 },
    { 2, "phone", 0, NULL, 0, "100.64.0.2", "fd7a:115c:a1e0::2", NULL, 0, NULL, 0, 2, 1 },
    { 3, "desk", 1, NULL, 0, "100.64.0.3", "fd7a:115c:a1e0::3", NULL, 0, NULL, 0, 3, 1 },
    { 4, "server", -1, tag_server, 1, "100.64.0.4", "fd7a:115c:a1e0::4", NULL, 0, NULL, 0, 4, 1 },
    { 5, "r1", -1, tag_router, 1, "100.64.0.5", "fd7a:115c:a1e0::5", route_10, 1, NULL, 0, 5, 1 },
    { 6, "r2", -1, tag_router, 1, "100.64.0.6", "fd7a:115c:a1e0::6", route_10, 1, NULL, 0, 6, 1 },
};

static const ts_policy_tailnet_t tailnet = {
    users, 2, nodes, 6, domains, 1, "https://ctl.example"
};

static const char *const good_policy =
    "// the test tailnet\n"
    "{\n"
    "  \"groups\": {\"group:admins\": [\"odin@example.com\"],},\n"
    "  \"tagOwners\": {\"tag:server\": [\"group:admins\"], \"tag:router\": [\"group:admins\"]},\n"
    "  \"hosts\": {\"lan\": \"10.1.0.0/16\"},\n"
    "  \"autoApprovers\": {\"routes\": {\"10.0.0.0/8\": [\"tag:router\"]}},\n"
    "  \"acls\": [\n"
    "    {\"action\": \"accept\", \"src\": [\"group:admins\"], \"dst\": [\"tag:server:22,443\"]},\n"
    "    {\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self:*\"]},\n"
    "    {\"action\": \"accept\", \"src\": [\"thor@example.org\"], \"dst\": [\"lan:80\"],\n"
    "     \"proto\": \"tcp\"},\n"
    "  ],\n"
    "  \"ssh\": [{\"action\": \"accept\", \"src\": [\"group:admins\"], \"dst\": [\"tag:server\"],\n"
    "            \"users\": [\"root\", \"autogroup:nonroot\"]}],\n"
    "  \"nodeAttrs\": [{\"target\": [\"tag:server\"], \"attr\": [\"funnel\"]}],\n"
    "  \"tests\": [{\"src\": \"odin@example.com\", \"accept\": [\"tag:server:22\"],\n"
    "             \"deny\": [\"tag:server:80\"]}],\n"
    "  \"sshTests\": [{\"src\": \"odin@example.com\", \"dst\": [\"tag:server\"],\n"
    "                \"accept\": [\"root\", \"alice\"]}],\n"
    "}\n";

static ts_policy_result_t *compile_ok(const char *text, const ts_policy_tailnet_t *tn)
{
    ts_policy_t *pol = NULL;
    ts_policy_result_t *r = NULL;
    const char *err = NULL;

    if (ts_policy_parse(pool, text, strlen(text), &pol, &err) != APR_SUCCESS
        || ts_policy_compile(pool, pol, tn, &r, &err) != APR_SUCCESS) {
        fail_msg("policy rejected: %s", err);
    }
    return r;
}

static int has_peer(const ts_policy_result_t *r, int i, int j)
{
    apr_array_header_t *p = ts_policy_peers(r, pool, i);
    int k;

    for (k = 0; k < p->nelts; k++) {
        if (APR_ARRAY_IDX(p, k, int) == j) {
            return 1;
        }
    }
    return 0;
}

static int json_has_string(json_t *a, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(a, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_compile_filters_and_peers(void **state)
{
    ts_policy_result_t *r = compile_ok(good_policy, &tailnet);
    json_t *f, *rule, *dp;
    char *dump;

    (void)state;
    /* server: admins (odin's two devices) on 22 and 443 of both its addresses */
    f = ts_policy_filter(r, 3);
    assert_int_equal(json_array_size(f), 1);
    rule = json_array_get(f, 0);
    assert_int_equal(json_array_size(json_object_get(rule, "SrcIPs")), 4);
    assert_true(json_has_string(json_object_get(rule, "SrcIPs"), "100.64.0.2"));
    dp = json_object_get(rule, "DstPorts");
    assert_int_equal(json_array_size(dp), 4);
    assert_null(json_object_get(rule, "IPProto"));
    json_decref(f);
    /* laptop: autogroup:self, from odin's devices only */
    f = ts_policy_filter(r, 0);
    dump = json_dumps(f, JSON_COMPACT);
    assert_non_null(strstr(dump, "\"100.64.0.2\""));
    assert_null(strstr(dump, "\"100.64.0.3\""));
    free(dump);
    json_decref(f);
    /* both routers get thor's rule for the subnet, TCP only */
    f = ts_policy_filter(r, 5);
    dump = json_dumps(f, JSON_COMPACT);
    assert_non_null(strstr(dump, "\"IP\":\"10.1.0.0/16\""));
    assert_non_null(strstr(dump, "\"IPProto\":[6]"));
    free(dump);
    json_decref(f);
    assert_int_equal(ts_policy_index_of(r, 4), 3);
    assert_int_equal(ts_policy_index_of(r, 99), -1);
    /* peers: symmetric, and only where a rule connects them */
    assert_true(has_peer(r, 0, 3) && has_peer(r, 3, 0));
    assert_true(has_peer(r, 0, 1));
    assert_false(has_peer(r, 0, 2));            /* odin and thor share nothing */
    assert_true(has_peer(r, 2, 4) && has_peer(r, 2, 5));
    assert_false(has_peer(r, 3, 4));
    assert_false(ts_policy_can_see(r, 0, 0));
}

static void test_compile_legacy_fields(void **state)
{
    ts_policy_result_t *r = compile_ok("{\"tagOwners\": {\"tag:server\": []}, \"acls\": [\n"
                                       " {\"action\": \"accept\", \"users\": [\"thor@example.org\"],"
                                       " \"ports\": [\"tag:server:80\"]}]}", &tailnet);
    json_t *f = ts_policy_filter(r, 3);
    char *dump = json_dumps(f, JSON_COMPACT);

    (void)state;
    assert_non_null(strstr(dump, "\"100.64.0.3\""));
    assert_non_null(strstr(dump, "\"First\":80"));
    free(dump);
    json_decref(f);
    assert_true(has_peer(r, 2, 3));
    assert_false(has_peer(r, 0, 3));
}

static void test_compile_routes_primary_failover(void **state)
{
    ts_policy_result_t *r = compile_ok(good_policy, &tailnet);
    ts_policy_node_t copy[6];
    ts_policy_tailnet_t tn = tailnet;
    json_t *a;

    (void)state;
    a = ts_policy_approved_routes(r, 4);
    assert_true(json_has_string(a, "10.1.0.0/16"));       /* auto-approved */
    json_decref(a);
    a = ts_policy_primary_routes(r, 4);
    assert_int_equal(json_array_size(a), 1);               /* r1 joined first */
    json_decref(a);
    a = ts_policy_primary_routes(r, 5);
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
    /* thor may reach the subnet: told about it on r1, not on r2; odin is not told */
    a = ts_policy_peer_allowed_ips(r, 2, 4);
    assert_true(json_has_string(a, "10.1.0.0/16"));
    json_decref(a);
    a = ts_policy_peer_allowed_ips(r, 2, 5);
    assert_false(json_has_string(a, "10.1.0.0/16"));
    json_decref(a);
    /* r1 goes offline: r2 becomes primary and thor is told so */
    memcpy(copy, nodes, sizeof(copy));
    copy[4].online = 0;
    tn.nodes = copy;
    r = compile_ok(good_policy, &tn);
    a = ts_policy_primary_routes(r, 5);
    assert_true(json_has_string(a, "10.1.0.0/16"));
    json_decref(a);
    a = ts_policy_peer_allowed_ips(r, 2, 5);
    assert_true(json_has_string(a, "10.1.0.0/16"));
    json_decref(a);
}

static void test_may_tag(void **state)
{
    ts_policy_t *pol = NULL;
    const char *err = NULL;

    (void)state;
    assert_int_equal(ts_policy_parse(pool, good_policy, strlen(good_policy), &pol, &err),
                     APR_SUCCESS);
    assert_true(ts_policy_may_tag(pol, &tailnet, 0, "tag:server"));    /* odin: admins */
    assert_false(ts_policy_may_tag(pol, &tailnet, 1, "tag:server"));   /* thor: not */
    assert_false(ts_policy_may_tag(pol, &tailnet, 0, "tag:unknown"));
    assert_false(ts_policy_may_tag(pol, &tailnet, -1, "tag:server"));
    assert_false(ts_policy_may_tag(NULL, &tailnet, 0, "tag:server"));
}

static void test_compile_ssh_attrs(void **state)
{
    ts_policy_result_t *r = compile_ok(good_policy, &tailnet);
    json_t *s, *users, *cm;
    char *dump;

    (void)state;
    s = ts_policy_ssh_rules(r, 3);
    assert_int_equal(json_array_size(s), 1);
    users = json_object_get(json_array_get(s, 0), "sshUsers");
    assert_string_equal(json_string_value(json_object_get(users, "root")), "root");
    assert_string_equal(json_string_value(json_object_get(users, "*")), "=");
    dump = json_dumps(s, JSON_COMPACT);
    assert_non_null(strstr(dump, "\"accept\":true"));
    assert_non_null(strstr(dump, "\"nodeIP\":\"100.64.0.1\""));
    free(dump);
    json_decref(s);
    s = ts_policy_ssh_rules(r, 0);
    assert_int_equal(json_array_size(s), 0);
    json_decref(s);
    cm = ts_policy_capmap(r, 3);
    assert_non_null(json_object_get(cm, "funnel"));
    json_decref(cm);
    cm = ts_policy_capmap(r, 0);
    assert_int_equal(json_object_size(cm), 0);
    json_decref(cm);
}

static void test_compile_default_and_rejections(void **state)
{
    ts_policy_result_t *r = NULL;
    ts_policy_t *pol = NULL;
    const char *err = NULL, *text;
    const char *const bad_route[] = { "10.1.0.1/16" };
    ts_policy_node_t copy[6];
    ts_policy_tailnet_t tn = tailnet;
    json_t *f, *dst;

    (void)state;
    /* no policy at all: the default, everyone sees everyone */
    assert_int_equal(ts_policy_compile(pool, NULL, &tailnet, &r, &err), APR_SUCCESS);
    assert_true(has_peer(r, 0, 5) && has_peer(r, 5, 0));
    /* no acls, no grants: everyone sees everyone, any source to any port */
    r = compile_ok("{}", &tailnet);
    assert_true(has_peer(r, 0, 2) && has_peer(r, 3, 5));
    f = ts_policy_filter(r, 0);
    dst = json_array_get(json_object_get(json_array_get(f, 0), "DstPorts"), 0);
    assert_string_equal(json_string_value(json_object_get(dst, "IP")), "*");
    assert_true(json_has_string(json_object_get(json_array_get(f, 0), "SrcIPs"),
                                "fd7a:115c:a1e0::/48"));
    json_decref(f);
    /* a failing test rejects the policy */
    text = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:server:22\"]}],"
           " \"tagOwners\": {\"tag:server\": []},"
           " \"tests\": [{\"src\": \"odin@example.com\", \"deny\": [\"tag:server:22\"]}]}";
    assert_int_equal(ts_policy_parse(pool, text, strlen(text), &pol, &err), APR_SUCCESS);
    assert_int_equal(ts_policy_compile(pool, pol, &tailnet, &r, &err), APR_EINVAL);
    assert_contains(err, "test(s) failed");
    /* an sshTest that does not hold */
    text = "{\"ssh\": [{\"action\": \"accept\", \"src\": [\"autogroup:member\"],"
           " \"dst\": [\"tag:server\"], \"users\": [\"root\"]}], \"tagOwners\": {\"tag:server\": []},"
           " \"sshTests\": [{\"src\": \"thor@example.org\", \"dst\": [\"tag:server\"],"
           " \"accept\": [\"ubuntu\"]}]}";
    assert_int_equal(ts_policy_parse(pool, text, strlen(text), &pol, &err), APR_SUCCESS);
    assert_int_equal(ts_policy_compile(pool, pol, &tailnet, &r, &err), APR_EINVAL);
    assert_contains(err, "test(s) failed");
    /* localpart of a domain the tailnet does not own */
    text = "{\"ssh\": [{\"action\": \"accept\", \"src\": [\"autogroup:member\"],\n"
           " \"dst\": [\"autogroup:self\"], \"users\": [\"localpart:*@example.org\"]}]}";
    assert_int_equal(ts_policy_parse(pool, text, strlen(text), &pol, &err), APR_SUCCESS);
    assert_int_equal(ts_policy_compile(pool, pol, &tailnet, &r, &err), APR_EINVAL);
    assert_contains(err, "example.org is not associated");
    assert_contains(err, "line 1");
    /* a node advertising something that is not a prefix */
    memcpy(copy, nodes, sizeof(copy));
    copy[5].advertised = bad_route;
    tn.nodes = copy;
    assert_int_equal(ts_policy_parse(pool, good_policy, strlen(good_policy), &pol, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_policy_compile(pool, pol, &tn, &r, &err), APR_EINVAL);
    assert_contains(err, "r2");
    assert_contains(err, "10.1.0.1/16");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hujson_comments_commas),
        cmocka_unit_test(test_hujson_errors_keep_lines),
        cmocka_unit_test(test_hujson_nul_and_size),
        cmocka_unit_test(test_policy_bad_input),
        cmocka_unit_test(test_policy_too_big),
        cmocka_unit_test(test_compile_filters_and_peers),
        cmocka_unit_test(test_compile_legacy_fields),
        cmocka_unit_test(test_compile_routes_primary_failover),
        cmocka_unit_test(test_may_tag),
        cmocka_unit_test(test_compile_ssh_attrs),
        cmocka_unit_test(test_compile_default_and_rejections),
    };

    apr_initialize();
    return cmocka_run_group_tests(tests, setup, teardown);
}
