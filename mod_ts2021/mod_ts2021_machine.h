/* mod_ts2021_machine.h: the control API inside Noise (the /machine/ paths) and the per-child tailnet
 * runtime behind it: the map view, the open map streams, held registrations, presence. */
#ifndef MOD_TS2021_MACHINE_H
#define MOD_TS2021_MACHINE_H

#include "mod_ts2021_conn.h"
#include "ts_map.h"
#include "ts_mapframe.h"

/* A map stream registered for deltas and keep-alives. Lives in its tailnet's registry;
 * everything but the owner-side fields is guarded by the tailnet's mutex. */
typedef struct machine_stream {
    struct machine_stream *prev, *next;
    ts_driver_t *driver;            /* a reference on driver->mb is held */
    uint64_t conn_id;
    int32_t stream_id;
    apr_int64_t node_id;
    int compress;
    int keepalive;
    apr_time_t next_keepalive;
} machine_stream;

/* A Followup registration held open until its auth id is resolved. */
typedef struct machine_waiter {
    struct machine_waiter *next;
    ts_driver_t *driver;
    uint64_t conn_id;
    int32_t stream_id;
    uint8_t machine_key[32];
    char *body;
    size_t len;
    char *auth_id;
    apr_time_t until;
    int gone;                       /* the request's stream closed */
} machine_waiter;

typedef struct ts_tailnet_rt {
    int index;                      /* for the presence table */
    server_rec *s;                  /* the vhost whose database we use */
    const ts_tailnet_conf_t *conf;
    apr_interval_time_t offline_grace;
    apr_interval_time_t keepalive;      /* silence before a keep-alive; jitter on top */
    apr_thread_mutex_t *mu;         /* guards everything below */
    apr_pool_t *pool;
    ts_map_t *map;
    ts_mapframe_enc_t *enc;
    apr_int64_t generation;         /* changes applied up to here */
    int loaded;
    machine_stream *streams;
    int nstreams;
    machine_waiter *waiters;
    apr_array_header_t *offline_due;     /* apr_int64_t node ids whose last stream ended */
    apr_array_header_t *ephemeral_due;   /* (node id, when) pairs to delete */
    apr_time_t next_recheck;
    apr_time_t next_sweep;          /* presence orphans (streams of exited children) */
    uint8_t *keepalive_frame[2];    /* [compress] */
    size_t keepalive_len[2];
} ts_tailnet_rt;

/* mod_ts2021_stream.c */
void ts_tailnets_child_init(apr_pool_t *pchild, server_rec *s);
ts_tailnet_rt *ts_tailnet_of(server_rec *s);
/* Loads the view if the notifier has not yet (caller holds no lock). */
apr_status_t ts_tailnet_ensure_loaded(ts_tailnet_rt *rt, apr_pool_t *p);
/* Under rt->mu: a stream to receive every delta from now on. */
machine_stream *ts_tailnet_stream_add(ts_tailnet_rt *rt, ts_conn_ctx *ctx, int32_t stream_id,
                                      apr_int64_t node_id, int compress, int keepalive);
/* Owner thread: a stream of this connection ended (any stream; no-op if not a map stream). */
void ts_tailnet_stream_closed(ts_conn_ctx *ctx, int32_t stream_id);
/* A node's first stream came up in this server: publish it (worker thread, no lock). */
void ts_tailnet_publish_online(ts_tailnet_rt *rt, apr_int64_t node_id);
/* Under rt->mu: hold a Followup registration. */
void ts_tailnet_waiter_add(ts_tailnet_rt *rt, machine_waiter *w);

/* Posted to a connection's owner: write a frame on a stream; the stream ends if the client
 * does not read (its queue is full), so that it reconnects and gets a full map. */
void ts_machine_post_frame(ts_driver_t *d, uint64_t conn_id, int32_t stream_id,
                           const uint8_t *frame, size_t len, ts_map_delta_t *hold);
/* Posted to a connection's owner: the head of a never-ending 200 response. */
void ts_machine_post_stream_start(ts_driver_t *d, uint64_t conn_id, int32_t stream_id);
/* Posted to a connection's owner: a complete response (body copied). */
void ts_machine_post_response(ts_driver_t *d, uint64_t conn_id, int32_t stream_id, int status,
                              const char *content_type, const char *body, size_t len);

/* mod_ts2021_machine.c */
/* 1 if the request was a /machine/ path (answered, or queued to the worker pool). */
int ts_machine_dispatch(ts_conn_ctx *ctx, const ts_conn_request_t *req);

#endif
