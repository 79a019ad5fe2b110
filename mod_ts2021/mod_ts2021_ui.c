/* mod_ts2021_ui.c: SetHandler ts2021-ui: the web admin UI's page and files, embedded in the
 * module. The page calls the admin API (TS2021AdminAPIURL) from the browser; protect both
 * locations with the same Apache authentication. */
#include "mod_ts2021.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_strings.h>

#include "ts_ui.h"

static void ui_headers(request_rec *r, const ts_server_conf *conf)
{
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "X-Frame-Options", "DENY");
    apr_table_setn(r->headers_out, "Referrer-Policy", "no-referrer");
    apr_table_setn(r->headers_out, "Content-Security-Policy",
                   ts_ui_csp(r->pool, conf->admin_api_url));
}

int ts_ui_handler(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);
    const char *name = strrchr(r->uri, '/') ? strrchr(r->uri, '/') + 1 : r->uri;
    const ts_ui_asset_t *a;
    const char *inm;

    ap_allow_standard_methods(r, REPLACE_ALLOW, M_GET, -1);
    if (r->method_number != M_GET) return HTTP_METHOD_NOT_ALLOWED;
    if (!*name || !strcmp(name, TS_UI_INDEX)) {
        const char *page = ts_ui_index(r->pool, conf->admin_api_url);
        ui_headers(r, conf);
        ap_set_content_type(r, "text/html; charset=utf-8");
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
        if (!r->header_only) ap_rputs(page, r);
        return OK;
    }
    if (!(a = ts_ui_find(name))) {
        if (!strchr(name, '.')) {
            /* /admin/ui -> /admin/ui/, so that the page's relative links work */
            apr_table_setn(r->headers_out, "Location",
                           apr_pstrcat(r->pool, ap_escape_uri(r->pool, r->uri), "/", NULL));
            return HTTP_MOVED_PERMANENTLY;
        }
        return HTTP_NOT_FOUND;
    }
    ui_headers(r, conf);
    apr_table_setn(r->headers_out, "ETag", a->etag);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    inm = apr_table_get(r->headers_in, "If-None-Match");
    if (inm && ap_find_etag_strong(r->pool, inm, a->etag)) {
        return HTTP_NOT_MODIFIED;
    }
    ap_set_content_type(r, a->content_type);
    ap_set_content_length(r, a->len);
    if (!r->header_only) ap_rwrite(a->data, (int)a->len, r);
    return OK;
}
