/* mod_ts2021_machine.h: the control API inside Noise (the /machine/ paths) and the per-child tailnet
 * runtime behind it: the map view, the open map streams, held registrations, presence. */
#ifndef MOD_TS2021_MACHINE_H
#define MOD_TS2021_MACHINE_H

#include "mod_ts2021_conn.h"
#include <apr_hash.h>
#include <apr_thread_cond.h>
#include "ts_map.h"
#include "ts_mapframe.h"

/* Names a stream across threads: its owner's mailbox (whoever keeps a key holds a reference
 * on key.mb, so the address is not reused meanwhile), the connection, the HTTP/2 stream. */
typedef struct machine_stream_key {
    ts_mailbox_t *mb;
    uint64_t conn_id;
    int64_t stream_id;
} machine_stream_key;

/* A frame waiting for a stream whose first map is still being compressed. */
typedef struct machine_frame {
    struct machine_frame *next;
    uint8_t *own;                   /* malloc'ed copy, or NULL */
    const uint8_t *data;
    size_t len;
    ts_map_delta_t *hold;           /* keeps shared bytes alive, or NULL */
} machine_frame;

/* A map stream registered for deltas and keep-alives. Lives in its tailnet's list, guarded by
 * the tailnet's mutex, and in its index by key, guarded by close_mu (owner threads look a
 * closed stream up there without taking the tailnet's mutex: it is marked dead and its node
 * loses the stream at once). Only the notifier thread unlinks and frees a stream that is not
 * pending (so it may post to streams it collected after unlocking); a pending one that
 * closed is freed by the worker that registered it. */
typedef struct machine_stream {
    struct machine_stream *prev, *next;
    machine_stream_key key;         /* a reference on key.mb is held */
    apr_int64_t node_id;
    int compress;
    int keepalive;
    apr_time_t next_keepalive;
    int pending;                    /* first map not posted yet: deltas wait in queue */
    int closed;                     /* closed while pending: unlinked, its worker frees it */
    machine_frame *queue, **queue_tail;
    int dead;                       /* close_mu: out of the index, waiting for the notifier */
    struct machine_stream *dead_next;   /* close_mu */
} machine_stream;

/* A Followup registration held open until its auth id is resolved. */
typedef struct machine_waiter {
    struct machine_waiter *next;
    ts_mailbox_t *mb;               /* a reference is held */
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
    apr_array_header_t *spare_scratch;  /* ts_tailnet_scratch *, for maps off the lock */
    int scratch_out;                /* scratch sets taken (full maps being compressed) */
    apr_size_t scratch_room;        /* JSON room a scratch pool reserves (largest map + 1/4) */
    apr_uint32_t maps_built;        /* full maps sent (for trimming the heap after a burst) */
    apr_uint32_t maps_trimmed;      /* maps_built at the last trim */
    apr_uint32_t maps_seen;         /* maps_built at the notifier's last round */
    apr_time_t next_trim;
    apr_thread_cond_t *scratch_cv;  /* signalled (with mu) when one is given back */
    int behind;                     /* the last round stopped short of the generation */
    machine_waiter *waiters;
    apr_array_header_t *offline_due;     /* apr_int64_t node ids whose last stream ended */
    apr_array_header_t *ephemeral_due;   /* (node id, when) pairs to delete */
    apr_time_t next_recheck;
    apr_time_t next_sweep;          /* presence orphans (streams of exited children) */
    uint8_t *keepalive_frame[2];    /* [compress] */
    size_t keepalive_len[2];
    /* Streams that ended, reported by owner threads, which never take mu: applied by the
     * notifier's next round (or the one after a wake-up). Guarded by close_mu alone. */
    apr_thread_mutex_t *close_mu;
    apr_hash_t *stream_index;       /* machine_stream_key -> live machine_stream */
    machine_stream *dead;           /* closed map streams, for the notifier to unlink */
    struct machine_closed *closed;  /* other closed streams (held registrations) */
    /* The policy (mod_ts2021_stream.c), guarded by pol_mu, which is taken before mu (never
     * while holding it) and held across a compilation: the text in force and its parse;
     * recompiled when the view's policy inputs move (ts_map_policy_gen). */
    apr_thread_mutex_t *pol_mu;
    char *pol_text;                 /* malloc'd; NULL: no policy */
    apr_pool_t *pol_pool;           /* owns pol */
    ts_policy_t *pol;
    int pol_reload;                 /* re-read the text (load, policy.set) */
    int pol_dirty;                  /* recompile: users changed */
    int pol_decided;                /* a first decision was made (guarded by mu) */
    unsigned pol_gen;               /* the view's ts_map_policy_gen compiled last */
    ts_mapframe_enc_t *post_enc;    /* notifier, off mu: frames of policy deltas */
} ts_tailnet_rt;

/* mod_ts2021_stream.c */
void ts_tailnets_child_init(apr_pool_t *pchild, server_rec *s);
ts_tailnet_rt *ts_tailnet_of(server_rec *s);
/* Loads the view if the notifier has not yet (caller holds no lock). */
apr_status_t ts_tailnet_ensure_loaded(ts_tailnet_rt *rt, apr_pool_t *p);
/* Under rt->mu: a stream to receive every delta from now on, registered pending: deltas
 * built meanwhile wait in its queue until ts_tailnet_stream_ready posts the first map. Takes
 * a reference on mb. NULL if out of memory. */
machine_stream *ts_tailnet_stream_add(ts_tailnet_rt *rt, ts_mailbox_t *mb, uint64_t conn_id,
                                      int32_t stream_id, apr_int64_t node_id, int compress,
                                      int keepalive);
/* Under rt->mu: posts the stream's head, its first map frame (malloc'ed; ownership passes
 * here in every case) and the deltas queued since ts_tailnet_stream_add, in that order; later
 * deltas go straight to it. With frame NULL (it could not be built) the stream is dropped.
 * If the stream closed meanwhile, it is freed here. 0 if the stream is gone. */
int ts_tailnet_stream_ready(ts_tailnet_rt *rt, machine_stream *ms, uint8_t *frame,
                            size_t len);
/* Owner thread: a stream of this connection ended (any stream; no-op if not a map stream).
 * Never takes rt->mu: queued for the notifier. */
void ts_tailnet_stream_closed(ts_conn_ctx *ctx, int32_t stream_id);
/* A node's first stream came up in this server: publish it (worker thread, no lock). */
void ts_tailnet_publish_online(ts_tailnet_rt *rt, apr_int64_t node_id);
/* Under rt->mu: hold a Followup registration. */
void ts_tailnet_waiter_add(ts_tailnet_rt *rt, machine_waiter *w);
/* What a worker needs to build and compress a full map off the lock, kept between maps so
 * that the multi-MB buffers are not faulted in afresh every time: the zstd context (chunked
 * maps for zstd clients) and the JSON pool (one-frame maps for raw-JSON clients). */
typedef struct ts_tailnet_scratch {
    apr_pool_t *pool;               /* unmanaged, own allocator: cleared on give */
    ts_mapframe_enc_t *enc;         /* lives in encpool (not cleared) */
    apr_pool_t *encpool;
    apr_size_t json_len;            /* JSON bytes of the last map built in the pool */
    apr_size_t room;                /* JSON bytes the pool's reserved block holds */
} ts_tailnet_scratch;
/* Under rt->mu: a scratch set for use after unlocking; give it back (under rt->mu) when
 * done (its pool is cleared then). At most a few are out at once per tailnet (waiting for
 * one releases rt->mu): compressing more maps at once than there are cores only holds
 * more multi-MB buffers. NULL if out of memory. */
ts_tailnet_scratch *ts_tailnet_scratch_take(ts_tailnet_rt *rt);
void ts_tailnet_scratch_give(ts_tailnet_rt *rt, ts_tailnet_scratch *sc);

/* Posted to a connection's owner: write a frame on a stream; the stream ends if the client
 * does not read (its queue is full), so that it reconnects and gets a full map. */
void ts_machine_post_frame(ts_mailbox_t *mb, uint64_t conn_id, int32_t stream_id,
                           const uint8_t *frame, size_t len, ts_map_delta_t *hold);
/* Posted to a connection's owner: the head of a never-ending 200 response. */
void ts_machine_post_stream_start(ts_mailbox_t *mb, uint64_t conn_id, int32_t stream_id);
/* Posted to a connection's owner: a complete response (body copied). */
void ts_machine_post_response(ts_mailbox_t *mb, uint64_t conn_id, int32_t stream_id, int status,
                              const char *content_type, const char *body, size_t len);

/* mod_ts2021_machine.c */
/* 1 if the request was a /machine/ path (answered, or queued to the worker pool). */
int ts_machine_dispatch(ts_conn_ctx *ctx, const ts_conn_request_t *req);

#endif
