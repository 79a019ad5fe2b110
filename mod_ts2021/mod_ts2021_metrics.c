/* mod_ts2021_metrics.c: SetHandler ts2021-metrics: counters in one shared memory segment that
 * every child adds to atomically (surviving graceful restarts, like the status slots), plus
 * gauges read from the connection and presence tables, rendered by ts_metrics.c. */
#include "mod_ts2021.h"
#include "mod_ts2021_metrics.h"
#include "mod_ts2021_presence.h"
#include "mod_ts2021_status.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_atomic.h>
#include <apr_shm.h>

#include "ts_store.h"

APLOG_USE_MODULE(ts2021);

typedef struct metrics_shm {
    volatile apr_uint64_t counter[TS_MET_COUNTERS];
    volatile apr_uint64_t fanout_bucket[TS_METRICS_FANOUT_BUCKETS + 1];
    volatile apr_uint64_t fanout_sum_us;
} metrics_shm;

static metrics_shm *shm;

int ts_metrics_post_config(server_rec *s)
{
    const char *key = "mod_ts2021_metrics_shm";
    apr_shm_t **seg = ap_retained_data_get(key);

    if (!seg) {
        seg = ap_retained_data_create(key, sizeof(*seg));
        if (apr_shm_create(seg, sizeof(metrics_shm), NULL, s->process->pool) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, APLOGNO(11100)
                         "TS2021: no shared memory for metrics; ts2021-metrics will show "
                         "zeros");
            *seg = NULL;
            return OK;
        }
        memset(apr_shm_baseaddr_get(*seg), 0, sizeof(metrics_shm));
    }
    shm = *seg ? apr_shm_baseaddr_get(*seg) : NULL;
    return OK;
}

static void metrics_db_error(void)
{
    ts_metrics_add(TS_MET_DB_ERRORS, 1);
}

void ts_metrics_child_init(void)
{
    ts_store_set_error_hook(metrics_db_error);
}

void ts_metrics_add(ts_metrics_counter_e c, apr_uint64_t n)
{
    if (shm && c < TS_MET_COUNTERS) apr_atomic_add64(&shm->counter[c], n);
}

void ts_metrics_fanout(apr_interval_time_t latency)
{
    if (!shm) return;
    if (latency < 0) latency = 0;
    apr_atomic_inc64(&shm->fanout_bucket[ts_metrics_fanout_bucket(latency)]);
    apr_atomic_add64(&shm->fanout_sum_us, (apr_uint64_t)latency);
}

void ts_metrics_registration(int pending, int status, const char *body)
{
    ts_metrics_add(ts_metrics_register_outcome(pending, status, body), 1);
}

int ts_metrics_handler(request_rec *r)
{
    ts_metrics_snapshot_t snap;
    int i;

    ap_allow_standard_methods(r, REPLACE_ALLOW, M_GET, -1);
    if (r->method_number != M_GET) return HTTP_METHOD_NOT_ALLOWED;
    memset(&snap, 0, sizeof(snap));
    if (shm) {
        for (i = 0; i < TS_MET_COUNTERS; i++) snap.counter[i] = apr_atomic_read64(&shm->counter[i]);
        for (i = 0; i <= TS_METRICS_FANOUT_BUCKETS; i++) {
            snap.fanout_bucket[i] = apr_atomic_read64(&shm->fanout_bucket[i]);
        }
        snap.fanout_sum_us = apr_atomic_read64(&shm->fanout_sum_us);
    }
    ts_status_totals(&snap.conn_cleartext, &snap.conn_tls, &snap.processes);
    ts_presence_totals(&snap.nodes_connected, &snap.map_streams);
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (!r->header_only) ap_rputs(ts_metrics_render(r->pool, &snap), r);
    return OK;
}
