/* ts_metrics.c: metric names, HELP texts and labels, the fan-out buckets, the registration
 * outcome of an answer, and the Prometheus text format 0.0.4 of a snapshot. */
#include "ts_metrics.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <jansson.h>
#include <string.h>

const double ts_metrics_fanout_bounds[TS_METRICS_FANOUT_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5
};

typedef struct {
    const char *family;     /* metric name */
    const char *label;      /* label name=value text, or NULL */
} counter_def_t;

static const counter_def_t COUNTERS[TS_MET_COUNTERS] = {
    [TS_MET_HS_OK] = { "ts2021_handshakes_total", "result=\"ok\"" },
    [TS_MET_HS_BAD_REQUEST] = { "ts2021_handshakes_total", "result=\"bad_request\"" },
    [TS_MET_HS_BAD_MESSAGE] = { "ts2021_handshakes_total", "result=\"bad_message\"" },
    [TS_MET_HS_NOISE] = { "ts2021_handshakes_total", "result=\"noise_failed\"" },
    [TS_MET_HS_VERSION] = { "ts2021_handshakes_total", "result=\"client_version\"" },
    [TS_MET_HS_NO_KEYS] = { "ts2021_handshakes_total", "result=\"no_server_keys\"" },
    [TS_MET_HS_IO] = { "ts2021_handshakes_total", "result=\"write_failed\"" },
    [TS_MET_REG_NODE] = { "ts2021_registrations_total", "outcome=\"authorized\"" },
    [TS_MET_REG_AUTH_URL] = { "ts2021_registrations_total", "outcome=\"auth_url\"" },
    [TS_MET_REG_WAITING] = { "ts2021_registrations_total", "outcome=\"waiting\"" },
    [TS_MET_REG_REFUSED] = { "ts2021_registrations_total", "outcome=\"refused\"" },
    [TS_MET_REG_LOGGED_OUT] = { "ts2021_registrations_total", "outcome=\"logged_out\"" },
    [TS_MET_REG_BAD_REQUEST] = { "ts2021_registrations_total", "outcome=\"bad_request\"" },
    [TS_MET_REG_FAILED] = { "ts2021_registrations_total", "outcome=\"failed\"" },
    [TS_MET_REG_APPROVED] = { "ts2021_registrations_total", "outcome=\"approved\"" },
    [TS_MET_REG_REJECTED] = { "ts2021_registrations_total", "outcome=\"rejected\"" },
    [TS_MET_MAP_FULL] = { "ts2021_map_responses_total", "kind=\"full\"" },
    [TS_MET_MAP_DELTA] = { "ts2021_map_responses_total", "kind=\"delta\"" },
    [TS_MET_DB_ERRORS] = { "ts2021_db_errors_total", NULL },
    [TS_MET_ADMIN_OK] = { "ts2021_admin_requests_total", "class=\"2xx\"" },
    [TS_MET_ADMIN_CLIENT_ERR] = { "ts2021_admin_requests_total", "class=\"4xx\"" },
    [TS_MET_ADMIN_SERVER_ERR] = { "ts2021_admin_requests_total", "class=\"5xx\"" },
};

static const struct {
    const char *family, *help;
} HELP[] = {
    { "ts2021_handshakes_total", "TS2021 upgrade handshakes by result." },
    { "ts2021_registrations_total", "Answers to /machine/register and admin decisions on "
      "interactive logins, by outcome." },
    { "ts2021_map_responses_total", "Map responses sent: full maps and delta frames." },
    { "ts2021_db_errors_total", "Database errors seen by the module." },
    { "ts2021_admin_requests_total", "Admin API answers by status class." },
};

int ts_metrics_fanout_bucket(apr_interval_time_t latency)
{
    double s = (double)latency / 1e6;
    int i;

    for (i = 0; i < TS_METRICS_FANOUT_BUCKETS; i++) {
        if (s <= ts_metrics_fanout_bounds[i]) return i;
    }
    return TS_METRICS_FANOUT_BUCKETS;
}

ts_metrics_counter_e ts_metrics_register_outcome(int pending, int status, const char *body)
{
    json_t *j, *v;
    ts_metrics_counter_e out = TS_MET_REG_REFUSED;

    if (pending) return TS_MET_REG_WAITING;
    if (status >= 500) return TS_MET_REG_FAILED;
    if (status >= 400 || status < 200) return TS_MET_REG_BAD_REQUEST;
    j = body ? json_loads(body, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return TS_MET_REG_FAILED;
    }
    if ((v = json_object_get(j, "Error")) && json_string_value(v) && *json_string_value(v)) {
        out = TS_MET_REG_REFUSED;
    }
    else if ((v = json_object_get(j, "AuthURL")) && json_string_value(v)
             && *json_string_value(v)) {
        out = TS_MET_REG_AUTH_URL;
    }
    else if (json_is_true(json_object_get(j, "MachineAuthorized"))) {
        out = TS_MET_REG_NODE;
    }
    else if (json_is_true(json_object_get(j, "NodeKeyExpired"))) {
        out = TS_MET_REG_LOGGED_OUT;
    }
    json_decref(j);
    return out;
}

static const char *fmt_bound(apr_pool_t *p, double b)
{
    char *s = apr_psprintf(p, "%.4f", b), *e = s + strlen(s) - 1;

    while (e > s && *e == '0') *e-- = '\0';
    if (*e == '.') *e = '\0';
    return s;
}

const char *ts_metrics_render(apr_pool_t *p, const ts_metrics_snapshot_t *s)
{
    apr_array_header_t *out = apr_array_make(p, 64, sizeof(const char *));
    apr_uint64_t cum = 0;
    unsigned h;
    int i;

#define EMIT(...) (APR_ARRAY_PUSH(out, const char *) = apr_psprintf(p, __VA_ARGS__))
    for (h = 0; h < sizeof(HELP) / sizeof(HELP[0]); h++) {
        EMIT("# HELP %s %s\n# TYPE %s counter\n", HELP[h].family, HELP[h].help,
             HELP[h].family);
        for (i = 0; i < TS_MET_COUNTERS; i++) {
            if (strcmp(COUNTERS[i].family, HELP[h].family)) continue;
            if (COUNTERS[i].label) {
                EMIT("%s{%s} %" APR_UINT64_T_FMT "\n", COUNTERS[i].family, COUNTERS[i].label,
                     s->counter[i]);
            }
            else {
                EMIT("%s %" APR_UINT64_T_FMT "\n", COUNTERS[i].family, s->counter[i]);
            }
        }
    }
    EMIT("# HELP ts2021_delta_fanout_seconds Time from the start of a notifier round after a "
         "change (debounce excluded) to the last delta frame handed to a connection.\n"
         "# TYPE ts2021_delta_fanout_seconds histogram\n");
    for (i = 0; i <= TS_METRICS_FANOUT_BUCKETS; i++) {
        cum += s->fanout_bucket[i];
        EMIT("ts2021_delta_fanout_seconds_bucket{le=\"%s\"} %" APR_UINT64_T_FMT "\n",
             i < TS_METRICS_FANOUT_BUCKETS ? fmt_bound(p, ts_metrics_fanout_bounds[i]) : "+Inf",
             cum);
    }
    EMIT("ts2021_delta_fanout_seconds_sum %.6f\n", (double)s->fanout_sum_us / 1e6);
    EMIT("ts2021_delta_fanout_seconds_count %" APR_UINT64_T_FMT "\n", cum);
    EMIT("# HELP ts2021_connections Open TS2021 connections by transport.\n"
         "# TYPE ts2021_connections gauge\n"
         "ts2021_connections{transport=\"cleartext\"} %" APR_UINT64_T_FMT "\n"
         "ts2021_connections{transport=\"tls\"} %" APR_UINT64_T_FMT "\n",
         s->conn_cleartext, s->conn_tls);
    EMIT("# HELP ts2021_nodes_connected Nodes with at least one open map stream.\n"
         "# TYPE ts2021_nodes_connected gauge\nts2021_nodes_connected %" APR_UINT64_T_FMT "\n",
         s->nodes_connected);
    EMIT("# HELP ts2021_map_streams Open map streams.\n"
         "# TYPE ts2021_map_streams gauge\nts2021_map_streams %" APR_UINT64_T_FMT "\n",
         s->map_streams);
    EMIT("# HELP ts2021_processes Apache child processes counted in these figures.\n"
         "# TYPE ts2021_processes gauge\nts2021_processes %" APR_UINT64_T_FMT "\n",
         s->processes);
#undef EMIT
    return apr_array_pstrcat(p, out, '\0');
}
