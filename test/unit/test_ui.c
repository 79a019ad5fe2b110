/* test_ui.c: cmocka tests of the admin UI core: embedded files, the API URL check, the page
 * with the URL escaped into it, and the Content-Security-Policy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "ts_ui.h"

static void test_assets(void **state)
{
    const ts_ui_asset_t *a;

    (void)state;
    assert_non_null(a = ts_ui_find("app.js"));
    assert_string_equal(a->content_type, "text/javascript; charset=utf-8");
    assert_true(a->len > 1000);
    assert_int_equal(strlen((const char *)a->data), a->len);    /* NUL-terminated, no NULs */
    assert_int_equal(a->etag[0], '"');
    assert_non_null(a = ts_ui_find("app.css"));
    assert_string_equal(a->content_type, "text/css; charset=utf-8");
    assert_non_null(ts_ui_find(TS_UI_INDEX));
    assert_null(ts_ui_find("nope.js"));
    assert_null(ts_ui_find(""));
    assert_null(ts_ui_find(NULL));
    assert_null(ts_ui_find("../app.js"));
}

static void test_api_url_valid(void **state)
{
    (void)state;
    assert_true(ts_ui_api_url_valid("/admin/api"));
    assert_true(ts_ui_api_url_valid("https://api.example.net/x?a=1&b=2"));
    assert_true(ts_ui_api_url_valid("http://127.0.0.1:8080/api"));
    assert_false(ts_ui_api_url_valid(NULL));
    assert_false(ts_ui_api_url_valid(""));
    assert_false(ts_ui_api_url_valid("admin/api"));
    assert_false(ts_ui_api_url_valid("//evil.example/api"));
    assert_false(ts_ui_api_url_valid("javascript:alert(1)"));
    assert_false(ts_ui_api_url_valid("/a\"><script>"));
    assert_false(ts_ui_api_url_valid("/a b"));
    assert_false(ts_ui_api_url_valid("/a\nb"));
    assert_false(ts_ui_api_url_valid("/a'b"));
    assert_false(ts_ui_api_url_valid("/a\\b"));
}

static void test_index_and_csp(void **state)
{
    apr_pool_t *p;
    const char *page;

    (void)state;
    apr_pool_create(&p, NULL);
    page = ts_ui_index(p, NULL);
    assert_non_null(strstr(page, "<body data-api=\"/admin/api\">"));
    assert_null(strstr(page, "@@"));
    page = ts_ui_index(p, "/tailnet/api?a=1&b=2");
    assert_non_null(strstr(page, "data-api=\"/tailnet/api?a=1&amp;b=2\""));
    page = ts_ui_index(p, "/x\"><script>");           /* refused: the default instead */
    assert_non_null(strstr(page, "data-api=\"/admin/api\""));
    assert_string_equal(ts_ui_csp(p, "/admin/api"),
                        "default-src 'none'; script-src 'self'; style-src 'self'; "
                        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                        "frame-ancestors 'none'; base-uri 'none'");
    assert_non_null(strstr(ts_ui_csp(p, "https://api.example.net:8443/v1?x"),
                           "connect-src 'self' https://api.example.net:8443;"));
    assert_non_null(strstr(ts_ui_csp(p, "http://h"), "connect-src 'self' http://h;"));
    assert_non_null(strstr(ts_ui_csp(p, "//evil"), "connect-src 'self';"));
    apr_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_api_url_valid),
        cmocka_unit_test(test_index_and_csp),
    };

    apr_initialize();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
