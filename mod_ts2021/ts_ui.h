/* ts_ui.h: the web admin UI's files (mod_ts2021/ui/, embedded by build/embed-ui into
 * ts_ui_assets.c), the page that carries the API URL, and the headers it is served with. */
#ifndef TS_UI_H
#define TS_UI_H

#include <apr_pools.h>

typedef struct ts_ui_asset_t {
    const char *name;             /* "app.js" */
    const char *content_type;
    const unsigned char *data;    /* NUL-terminated as well */
    apr_size_t len;
    const char *etag;             /* quoted, from the content */
} ts_ui_asset_t;

/* Every file, ended by an entry with name NULL. */
extern const ts_ui_asset_t ts_ui_assets[];

#define TS_UI_DEFAULT_API_URL "/admin/api"
#define TS_UI_INDEX "index.html"

/* The file called name (a last path segment), or NULL. */
const ts_ui_asset_t *ts_ui_find(const char *name);

/* 1 if the API URL can go into the page and its policy: a path starting with '/', or an
 * http(s) URL, without quotes, angle brackets, backslashes, blanks or control characters. */
int ts_ui_api_url_valid(const char *url);

/* index.html with the API URL (escaped) in <body data-api>; NULL api_url: the default. */
const char *ts_ui_index(apr_pool_t *p, const char *api_url);

/* The Content-Security-Policy of the UI: its own scripts and styles only, fetches to itself
 * and to the API's origin when that is another one. */
const char *ts_ui_csp(apr_pool_t *p, const char *api_url);

#endif
