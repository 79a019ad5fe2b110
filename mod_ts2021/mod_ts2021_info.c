/* mod_ts2021_info.c: SetHandler ts2021-info: a small JSON view of the control server's
 * database (driver, schema version, change generation), read through mod_dbd per request. */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

APLOG_USE_MODULE(ts2021);

static int info_fail(request_rec *r, const char *what, const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(10990)
                  "TS2021 info: %s: %s", what, err ? err : "unknown error");
    r->status = HTTP_SERVICE_UNAVAILABLE;
    ap_set_content_type(r, "application/json");
    ap_rputs("{\"error\":\"database unavailable\"}\n", r);
    return OK;
}

/* Runs on a request's own pooled database handle (ap_dbd_acquire): released with r. */
int ts_info_handler(request_rec *r)
{
    ts_store_t *st;
    const char *err = NULL;
    apr_int64_t generation;
    int version;

    ap_allow_standard_methods(r, REPLACE_ALLOW, M_GET, -1);
    if (r->method_number != M_GET) return HTTP_METHOD_NOT_ALLOWED;
    if (!ts_conf(r->server)->dbd) {
        return info_fail(r, "not enabled", "TS2021 is Off on this virtual host");
    }
    st = ts_dbd_acquire(r);
    if (!st) return info_fail(r, "no database", "see the error above");
    if (ts_store_schema_version(st, r->pool, &version, &err) != APR_SUCCESS) {
        return info_fail(r, "schema version", err);
    }
    if (ts_store_generation(st, r->pool, &generation, &err) != APR_SUCCESS) {
        return info_fail(r, "generation", err);
    }
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rprintf(r, "{\"driver\":\"%s\",\"schemaVersion\":%d,\"generation\":%" APR_INT64_T_FMT "}\n",
               ts_store_driver_name(st), version, generation);
    return OK;
}
