/* mod_ts2021_presence.h: per-server map-stream counts per node (shared by all children), so a
 * node counts as offline only after its last stream has been gone for a grace period. */
#ifndef MOD_TS2021_PRESENCE_H
#define MOD_TS2021_PRESENCE_H

#include <httpd.h>

int ts_presence_post_config(server_rec *s);

/* A map stream of the node started; 1 if the caller must publish "online". */
int ts_presence_stream_up(int tailnet, apr_int64_t node_id);
/* A map stream of the node ended. */
void ts_presence_stream_down(int tailnet, apr_int64_t node_id, apr_time_t now);
/* 1 (to exactly one caller) once the node has had no stream for grace: publish "offline". */
int ts_presence_should_go_offline(int tailnet, apr_int64_t node_id, apr_time_t now,
                                  apr_interval_time_t grace);
/* Calls fn for each node of the tailnet published online whose streams have all been gone
 * for grace (e.g. ended in a child that exited before it could publish): the caller
 * publishes "offline" for each; exactly one caller gets each node. */
void ts_presence_sweep(int tailnet, apr_time_t now, apr_interval_time_t grace,
                       void (*fn)(void *baton, apr_int64_t node_id), void *baton);

/* Map streams the node holds in this server now. */
apr_uint32_t ts_presence_streams(int tailnet, apr_int64_t node_id);
/* 1 while the node is published online by this server. */
int ts_presence_online(int tailnet, apr_int64_t node_id);

/* Over every tailnet: nodes with at least one stream, and the streams. */
void ts_presence_totals(apr_uint64_t *nodes, apr_uint64_t *streams);

#endif
