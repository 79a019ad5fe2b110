/* ts_metrics.h: the counters behind SetHandler ts2021-metrics: their names and labels, the
 * fan-out latency buckets, the registration outcome of an answer, and the Prometheus text
 * exposition (format 0.0.4) of one snapshot. No httpd types; the glue keeps the values in
 * shared memory. */
#ifndef TS_METRICS_H
#define TS_METRICS_H

#include <apr_pools.h>
#include <apr_time.h>

/* Counters (monotonic). Keep in step with the table in ts_metrics.c. */
typedef enum {
    TS_MET_HS_OK = 0,               /* handshakes by result */
    TS_MET_HS_BAD_REQUEST,          /* not an upgrade we serve (method, headers) */
    TS_MET_HS_BAD_MESSAGE,          /* missing or undecodable handshake message */
    TS_MET_HS_NOISE,                /* Noise failed (wrong server key, bad message) */
    TS_MET_HS_VERSION,              /* client older than TS2021MinCapVersion */
    TS_MET_HS_NO_KEYS,              /* server keys not loaded */
    TS_MET_HS_IO,                   /* the 101 could not be written */
    TS_MET_REG_NODE,                /* registrations by outcome: node authorized */
    TS_MET_REG_AUTH_URL,            /* an interactive login URL handed out */
    TS_MET_REG_WAITING,             /* a Followup held until approval */
    TS_MET_REG_REFUSED,             /* an Error answer (bad key, rejected …) */
    TS_MET_REG_LOGGED_OUT,          /* logout / expired key answer */
    TS_MET_REG_BAD_REQUEST,         /* 4xx */
    TS_MET_REG_FAILED,              /* 5xx */
    TS_MET_REG_APPROVED,            /* approved by an admin (API) */
    TS_MET_REG_REJECTED,            /* rejected by an admin (API) */
    TS_MET_MAP_FULL,                /* map responses sent: full maps */
    TS_MET_MAP_DELTA,               /* map responses sent: delta frames */
    TS_MET_DB_ERRORS,               /* database errors (not retried lock waits) */
    TS_MET_ADMIN_OK,                /* admin API answers 2xx */
    TS_MET_ADMIN_CLIENT_ERR,        /* admin API answers 4xx */
    TS_MET_ADMIN_SERVER_ERR,        /* admin API answers 5xx */
    TS_MET_COUNTERS
} ts_metrics_counter_e;

/* Upper bounds (seconds) of the fan-out latency buckets; one more bucket is +Inf. */
#define TS_METRICS_FANOUT_BUCKETS 12
extern const double ts_metrics_fanout_bounds[TS_METRICS_FANOUT_BUCKETS];

typedef struct ts_metrics_snapshot_t {
    apr_uint64_t counter[TS_MET_COUNTERS];
    apr_uint64_t fanout_bucket[TS_METRICS_FANOUT_BUCKETS + 1];   /* not cumulative */
    apr_uint64_t fanout_sum_us;
    /* gauges */
    apr_uint64_t conn_cleartext, conn_tls;
    apr_uint64_t nodes_connected, map_streams;
    apr_uint64_t processes;          /* children reporting */
} ts_metrics_snapshot_t;

/* The bucket index of a latency (0 .. TS_METRICS_FANOUT_BUCKETS, the last is +Inf). */
int ts_metrics_fanout_bucket(apr_interval_time_t latency);

/* The outcome counter of a /machine/register answer: pending (held), HTTP status and body. */
ts_metrics_counter_e ts_metrics_register_outcome(int pending, int status, const char *body);

/* The exposition text of a snapshot, from p. */
const char *ts_metrics_render(apr_pool_t *p, const ts_metrics_snapshot_t *s);

#endif
