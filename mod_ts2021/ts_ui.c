/* ts_ui.c: the admin UI's files by name, its page with the API URL filled in, and its
 * Content-Security-Policy. */
#include "ts_ui.h"
#include "ts_regpage.h"

#include <apr_strings.h>
#include <string.h>

#define API_PLACEHOLDER "@@TS2021_API_URL@@"

const ts_ui_asset_t *ts_ui_find(const char *name)
{
    const ts_ui_asset_t *a;

    for (a = ts_ui_assets; name && a->name; a++) {
        if (!strcmp(a->name, name)) return a;
    }
    return NULL;
}

int ts_ui_api_url_valid(const char *url)
{
    const char *c;

    if (!url || !*url) return 0;
    if (url[0] != '/' && strncmp(url, "https://", 8) && strncmp(url, "http://", 7)) return 0;
    if (url[0] == '/' && url[1] == '/') return 0;           /* protocol-relative */
    for (c = url; *c; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || strchr("\"'<>\\`", *c)) return 0;
    }
    return 1;
}

const char *ts_ui_index(apr_pool_t *p, const char *api_url)
{
    const ts_ui_asset_t *a = ts_ui_find(TS_UI_INDEX);
    const char *page = a ? (const char *)a->data : "", *at = strstr(page, API_PLACEHOLDER);

    if (!ts_ui_api_url_valid(api_url)) api_url = TS_UI_DEFAULT_API_URL;
    if (!at) return page;
    return apr_pstrcat(p, apr_pstrndup(p, page, (apr_size_t)(at - page)),
                       ts_regpage_escape(p, api_url), at + strlen(API_PLACEHOLDER), NULL);
}

/* "https://host:port" of an absolute URL, NULL for a path. */
static const char *ui_origin(apr_pool_t *p, const char *url)
{
    const char *host;

    if (!url || url[0] == '/') return NULL;
    host = strstr(url, "://") + 3;
    return apr_pstrndup(p, url, (apr_size_t)(host - url) + strcspn(host, "/?#"));
}

const char *ts_ui_csp(apr_pool_t *p, const char *api_url)
{
    const char *origin = ts_ui_api_url_valid(api_url) ? ui_origin(p, api_url) : NULL;

    return apr_pstrcat(p, "default-src 'none'; script-src 'self'; style-src 'self'; "
                       "img-src 'self' data:; connect-src 'self'", origin ? " " : "",
                       origin ? origin : "", "; form-action 'self'; frame-ancestors 'none'; "
                       "base-uri 'none'", NULL);
}
