/* mod_ts2021_metrics.h: server-wide counters in shared memory (every child adds atomically),
 * exposed by SetHandler ts2021-metrics. Safe to call from any thread, and before start-up
 * (no-ops then). */
#ifndef MOD_TS2021_METRICS_H
#define MOD_TS2021_METRICS_H

#include <httpd.h>
#include "ts_metrics.h"

void ts_metrics_add(ts_metrics_counter_e c, apr_uint64_t n);
/* One fan-out round that sent delta frames, with its latency. */
void ts_metrics_fanout(apr_interval_time_t latency);
/* One /machine/register answer. */
void ts_metrics_registration(int pending, int status, const char *body);

#endif
