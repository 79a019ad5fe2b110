/* test_derp.c: DERP map validation errors (file, region and field named), merging, and fetching
 * over file:// and a local HTTP responder: status, size cap, timeout, last good copy, cache. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_derp.h"

static apr_pool_t *pool;
static char dir[] = "/tmp/ts-derp-test.XXXXXX";

/* Region 900 as in control API 2.8, region 999 as headscale served it in examples/. */
#define REGION_900 \
    "\"900\":{\"RegionID\":900,\"RegionCode\":\"ctl\",\"RegionName\":\"Example DERP\"," \
    "\"Nodes\":[{\"Name\":\"900a\",\"RegionID\":900,\"HostName\":\"derp.example.net\"," \
    "\"IPv4\":\"203.0.113.10\",\"STUNPort\":3478,\"DERPPort\":443}]}"
#define REGION_999 \
    "\"999\":{\"RegionID\":999,\"RegionCode\":\"hs\",\"RegionName\":\"headscale embedded DERP\"," \
    "\"Nodes\":[{\"Name\":\"999\",\"RegionID\":999,\"HostName\":\"127.0.0.1\"," \
    "\"STUNPort\":3478,\"DERPPort\":28080}]}"
#define GOOD_MAP "{\"Regions\":{" REGION_900 "," REGION_999 "}}"

static const char *path_in_dir(const char *name)
{
    return apr_pstrcat(pool, dir, "/", name, NULL);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *parse_err(const char *text)
{
    const char *err = NULL;
    json_t *m = NULL;

    assert_int_equal(ts_derp_parse(pool, "derp.json", text, strlen(text), &m, &err),
                     APR_EINVAL);
    assert_null(m);
    assert_non_null(err);
    return err;
}

static void test_valid_map(void **state)
{
    const char *err = NULL;
    json_t *m;
    apr_size_t len;
    char *text;

    (void)state;
    assert_int_equal(ts_derp_parse(pool, "derp.json", GOOD_MAP, strlen(GOOD_MAP), &m, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_derp_region_count(m), 2);
    text = ts_derp_text(pool, m, &len);
    assert_int_equal(len, strlen(text));
    assert_non_null(strstr(text, "\"900\":{\"RegionID\":900"));
    json_decref(m);
    /* unknown fields pass through; STUNPort -1 (no STUN) and "none" addresses are valid */
    {
        const char *t = "{\"Regions\":{\"1\":{\"RegionID\":1,\"RegionCode\":\"x\",\"Future\":7,"
                        "\"Nodes\":[{\"Name\":\"1a\",\"RegionID\":1,\"HostName\":\"h\","
                        "\"IPv6\":\"none\",\"STUNPort\":-1,\"CanPort80\":true}]}},"
                        "\"omitDefaultRegions\":true}";
        assert_int_equal(ts_derp_parse(pool, "x", t, strlen(t), &m, &err), APR_SUCCESS);
        assert_int_equal(json_integer_value(json_object_get(
            json_object_get(json_object_get(m, "Regions"), "1"), "Future")), 7);
        json_decref(m);
    }
}

static void test_region_errors(void **state)
{
    (void)state;
    assert_string_equal(parse_err("{\"Regions\":{\"900\":null}}"),
                        "derp.json: region \"900\": region is null");
    assert_string_equal(parse_err("{\"Regions\":{\"0900\":{}}}"),
                        "derp.json: region \"0900\": region key must be a decimal ID from 1 "
                        "to 65535");
    assert_non_null(strstr(parse_err("{\"Regions\":{\"70000\":{}}}"), "region \"70000\""));
    assert_non_null(strstr(parse_err("{\"Regions\":{\"abc\":{}}}"), "region \"abc\""));
    assert_string_equal(parse_err("{\"Regions\":{\"900\":{\"RegionID\":901,"
                                  "\"RegionCode\":\"x\",\"Nodes\":[]}}}"),
                        "derp.json: region \"900\": RegionID: differs from the region's key");
    assert_string_equal(parse_err("{\"Regions\":{\"900\":{\"RegionID\":900,"
                                  "\"RegionCode\":\"x\",\"Nodes\":[]}}}"),
                        "derp.json: region \"900\": Nodes: region has no nodes");
    assert_string_equal(parse_err("{\"Regions\":{\"900\":{\"RegionID\":900,\"Nodes\":[]}}}"),
                        "derp.json: region \"900\": RegionCode: missing");
    assert_string_equal(parse_err("{\"Regions\":{\"900\":{\"RegionID\":\"900\"}}}"),
                        "derp.json: region \"900\": RegionID: must be an integer");
    assert_string_equal(parse_err("{\"Regions\":{}}"), "derp.json: Regions: no regions");
    assert_string_equal(parse_err("{}"),
                        "derp.json: Regions: missing or not an object keyed by region ID");
    assert_string_equal(parse_err("[]"), "derp.json: DERP map must be a JSON object");
    assert_string_equal(parse_err("{\"Regions\":{\"1\":{\"RegionID\":1,\"RegionCode\":\"a\","
                                  "\"Avoid\":1,\"Nodes\":[]}}}"),
                        "derp.json: region \"1\": Avoid: must be true or false");
}

#define NODE_MAP(node) \
    "{\"Regions\":{\"900\":{\"RegionID\":900,\"RegionCode\":\"ctl\",\"Nodes\":[" node "]}}}"

static void test_node_errors(void **state)
{
    (void)state;
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"900a\",\"RegionID\":900}")),
                        "derp.json: region \"900\": node 0 (\"900a\"): HostName: missing");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"900a\",\"RegionID\":900,"
                                           "\"HostName\":\"h\"},{\"RegionID\":900}")),
                        "derp.json: region \"900\": node 1: Name: missing");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"a\",\"RegionID\":9,\"HostName\":\"h\"}")),
                        "derp.json: region \"900\": node 0 (\"a\"): RegionID: differs from its "
                        "region's ID");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"a\",\"RegionID\":900,\"HostName\":\"h\","
                                           "\"IPv4\":\"2001:db8::1\"}")),
                        "derp.json: region \"900\": node 0 (\"a\"): IPv4: not an IPv4 address "
                        "or \"none\"");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"a\",\"RegionID\":900,\"HostName\":\"h\","
                                           "\"DERPPort\":70000}")),
                        "derp.json: region \"900\": node 0 (\"a\"): DERPPort: out of range");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"a\",\"RegionID\":900,\"HostName\":\"\"}")),
                        "derp.json: region \"900\": node 0 (\"a\"): HostName: must not be empty");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"a\",\"RegionID\":900,\"HostName\":\"h\","
                                           "\"STUNOnly\":\"yes\"}")),
                        "derp.json: region \"900\": node 0 (\"a\"): STUNOnly: must be true or "
                        "false");
    assert_string_equal(parse_err(NODE_MAP("{\"Name\":\"a\",\"RegionID\":900,\"HostName\":\"h\"},"
                                           "{\"Name\":\"a\",\"RegionID\":900,\"HostName\":\"i\"}")),
                        "derp.json: region \"900\": node 1 (\"a\"): Name: used by another node "
                        "of the map");
    assert_string_equal(parse_err(NODE_MAP("7")),
                        "derp.json: region \"900\": node 0: must be an object");
}

static void test_syntax_and_file_errors(void **state)
{
    const char *err = NULL, *path = path_in_dir("bad.json");
    json_t *m;

    (void)state;
    assert_string_equal(parse_err("{\"Regions\":\n  {\"900\": }"),
                        "derp.json:2:11: unexpected token near '}'");
    assert_non_null(strstr(parse_err("{\"Regions\":{},\"Regions\":{}}"), "duplicate"));
    write_file(path, "{\"Regions\":{\"900\":null}}");
    assert_int_equal(ts_derp_load_file(pool, path, &m, &err), APR_EINVAL);
    assert_string_equal(err, apr_pstrcat(pool, path, ": region \"900\": region is null", NULL));
    assert_int_not_equal(ts_derp_load_file(pool, path_in_dir("missing.json"), &m, &err),
                         APR_SUCCESS);
    assert_non_null(strstr(err, "missing.json: cannot read DERP map"));
    path = path_in_dir("good.json");
    write_file(path, GOOD_MAP);
    assert_int_equal(ts_derp_load_file(pool, path, &m, &err), APR_SUCCESS);
    assert_int_equal(ts_derp_region_count(m), 2);
    json_decref(m);
}

static void test_merge(void **state)
{
    const char *err = NULL;
    const char *a = "{\"Regions\":{" REGION_900 "},\"HomeParams\":{\"RegionScore\":{}}}";
    const char *b = "{\"Regions\":{\"900\":{\"RegionID\":900,\"RegionCode\":\"new\",\"Nodes\":"
                    "[{\"Name\":\"n\",\"RegionID\":900,\"HostName\":\"new.example\"}]},"
                    REGION_999 "}}";
    json_t *maps[3] = { NULL, NULL, NULL }, *m;

    (void)state;
    assert_int_equal(ts_derp_parse(pool, "a", a, strlen(a), &maps[0], &err), APR_SUCCESS);
    assert_int_equal(ts_derp_parse(pool, "b", b, strlen(b), &maps[2], &err), APR_SUCCESS);
    assert_int_equal(ts_derp_merge(pool, maps, 3, &m, &err), APR_SUCCESS);
    assert_int_equal(ts_derp_region_count(m), 2);
    assert_string_equal(json_string_value(json_object_get(
        json_object_get(json_object_get(m, "Regions"), "900"), "RegionCode")), "new");
    assert_non_null(json_object_get(m, "HomeParams"));
    assert_int_equal(ts_derp_validate(pool, "merged", m, &err), APR_SUCCESS);
    json_decref(m);
    /* the other order: a's 900 wins */
    {
        json_t *rev[2] = { maps[2], maps[0] };
        assert_int_equal(ts_derp_merge(pool, rev, 2, &m, &err), APR_SUCCESS);
        assert_string_equal(json_string_value(json_object_get(
            json_object_get(json_object_get(m, "Regions"), "900"), "RegionCode")), "ctl");
        json_decref(m);
    }
    json_decref(maps[0]);
    json_decref(maps[2]);
    maps[0] = maps[2] = NULL;
    assert_int_equal(ts_derp_merge(pool, maps, 3, &m, &err), APR_ENOENT);
    assert_string_equal(err, "no DERP region from any source");
}

/* ---- a one-shot HTTP responder on 127.0.0.1 ---- */

typedef struct responder {
    int fd;
    int port;
    const char *answer;        /* NULL: accept nothing, let the client time out */
    pthread_t thread;
} responder_t;

static void *respond(void *arg)
{
    responder_t *r = arg;
    char buf[4096];
    int c = accept(r->fd, NULL, NULL);

    if (c >= 0) {
        ssize_t n = read(c, buf, sizeof(buf));
        (void)n;
        n = write(c, r->answer, strlen(r->answer));
        (void)n;
        close(c);
    }
    return NULL;
}

static void responder_start(responder_t *r, const char *answer)
{
    struct sockaddr_in a = { 0 };
    socklen_t alen = sizeof(a);

    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(r->fd, 4), 0);
    getsockname(r->fd, (struct sockaddr *)&a, &alen);
    r->port = ntohs(a.sin_port);
    r->answer = answer;
    if (answer) pthread_create(&r->thread, NULL, respond, r);
}

static void responder_stop(responder_t *r)
{
    if (r->answer) pthread_join(r->thread, NULL);
    close(r->fd);
}

static const char *http_url(const responder_t *r)
{
    return apr_psprintf(pool, "http://127.0.0.1:%d/derpmap", r->port);
}

static void test_fetch_http(void **state)
{
    const char *err = NULL;
    responder_t r;
    json_t *m = NULL;
    const char *ok = apr_psprintf(pool, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                  "Connection: close\r\n\r\n%s", (int)strlen(GOOD_MAP),
                                  GOOD_MAP);

    (void)state;
    responder_start(&r, ok);
    assert_int_equal(ts_derp_fetch(pool, http_url(&r), 0, 0, &m, &err), APR_SUCCESS);
    responder_stop(&r);
    assert_int_equal(ts_derp_region_count(m), 2);
    json_decref(m);

    responder_start(&r, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(ts_derp_fetch(pool, http_url(&r), 0, 0, &m, &err), APR_EGENERAL);
    responder_stop(&r);
    assert_string_equal(err, apr_pstrcat(pool, http_url(&r), ": HTTP status 404", NULL));

    responder_start(&r, ok);
    assert_int_equal(ts_derp_fetch(pool, http_url(&r), 0, 100, &m, &err), APR_EINVAL);
    responder_stop(&r);
    assert_non_null(strstr(err, "DERP map larger than 100 bytes"));
}

static void test_fetch_timeout(void **state)
{
    const char *err = NULL;
    responder_t r;
    json_t *m = NULL;
    apr_time_t t0 = apr_time_now();

    (void)state;
    responder_start(&r, NULL);     /* connects (backlog) but never answers */
    assert_int_equal(ts_derp_fetch(pool, http_url(&r), apr_time_from_msec(300), 0, &m, &err),
                     APR_TIMEUP);
    responder_stop(&r);
    assert_true(apr_time_now() - t0 < apr_time_from_sec(5));
    assert_non_null(strstr(err, http_url(&r)));
}

static void test_fetch_file_and_bad_body(void **state)
{
    const char *err = NULL, *path = path_in_dir("fetched.json");
    const char *url = apr_pstrcat(pool, "file://", path, NULL);
    json_t *m = NULL;

    (void)state;
    write_file(path, GOOD_MAP);
    assert_int_equal(ts_derp_fetch(pool, url, 0, 0, &m, &err), APR_SUCCESS);
    json_decref(m);
    write_file(path, "{\"Regions\":{\"900\":null}}");
    assert_int_equal(ts_derp_fetch(pool, url, 0, 0, &m, &err), APR_EINVAL);
    assert_string_equal(err, apr_pstrcat(pool, url, ": region \"900\": region is null", NULL));
    assert_int_not_equal(ts_derp_fetch(pool, "gopher://127.0.0.1/x", 0, 0, &m, &err),
                         APR_SUCCESS);
}

static void test_url_source_keeps_last_good(void **state)
{
    const char *err = NULL, *path = path_in_dir("src.json"), *cache = path_in_dir("cache.json");
    const char *url = apr_pstrcat(pool, "file://", path, NULL);
    ts_derp_url_t *u, *u2;
    apr_time_t when;
    json_t *m;
    int changed;

    (void)state;
    assert_int_equal(ts_derp_url_create(&u, pool, url, cache, 0, 0), APR_SUCCESS);
    assert_null(ts_derp_url_get(u, &when));
    assert_int_equal(when, 0);
    write_file(path, GOOD_MAP);
    assert_int_equal(ts_derp_url_refresh(u, pool, &changed, &err), APR_SUCCESS);
    assert_null(err);
    assert_true(changed);
    assert_int_equal(ts_derp_url_refresh(u, pool, &changed, &err), APR_SUCCESS);
    assert_false(changed);
    write_file(path, "not json");
    assert_int_equal(ts_derp_url_refresh(u, pool, &changed, &err), APR_EINVAL);
    assert_false(changed);
    m = ts_derp_url_get(u, &when);
    assert_non_null(m);
    assert_true(when > 0);
    assert_int_equal(ts_derp_region_count(m), 2);
    json_decref(m);
    /* a new source (a restart) with the URL unreachable starts from the cache file */
    unlink(path);
    assert_int_equal(ts_derp_url_create(&u2, pool, url, cache, 0, 0), APR_SUCCESS);
    assert_int_not_equal(ts_derp_url_refresh(u2, pool, &changed, &err), APR_SUCCESS);
    m = ts_derp_url_get(u2, NULL);
    assert_non_null(m);
    assert_int_equal(ts_derp_region_count(m), 2);
    json_decref(m);
    assert_string_equal(ts_derp_url_name(u2), url);
    /* an unwritable cache is a warning, the new map is still used */
    assert_int_equal(ts_derp_url_create(&u2, pool, apr_pstrcat(pool, "file://", cache, NULL),
                                        "/nonexistent-dir/cache.json", 0, 0), APR_SUCCESS);
    assert_int_equal(ts_derp_url_refresh(u2, pool, &changed, &err), APR_SUCCESS);
    assert_true(changed);
    assert_non_null(strstr(err, "cannot write DERP cache"));
    m = ts_derp_url_get(u2, NULL);
    assert_non_null(m);
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_map),
        cmocka_unit_test(test_region_errors),
        cmocka_unit_test(test_node_errors),
        cmocka_unit_test(test_syntax_and_file_errors),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_fetch_http),
        cmocka_unit_test(test_fetch_timeout),
        cmocka_unit_test(test_fetch_file_and_bad_body),
        cmocka_unit_test(test_url_source_keeps_last_good),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (!mkdtemp(dir) || ts_derp_global_init() != APR_SUCCESS) return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    ts_derp_global_cleanup();
    apr_terminate();
    {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0) rc = rc ? rc : 1;
    }
    return rc;
}
