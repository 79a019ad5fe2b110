/* ts_map.h: the in-memory tailnet view map responses are built from (control API 2, 3, 5.7-5.9, 7):
 * nodes, users and presence; a cached peer entry per node; full maps by concatenation; shared deltas. */
#ifndef TS_MAP_H
#define TS_MAP_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_time.h>
#include <apr_tables.h>
#include <stdint.h>

#include "ts_store.h"
#include "ts_tailnet.h"
#include "ts_mapframe.h"
#include "ts_policy.h"

/* headscale's synthetic owner of tagged nodes (control API 5.1); always in UserProfiles when a
 * tagged node is. */
#define TS_MAP_TAGGED_USER_ID    2147455555
#define TS_MAP_TAGGED_LOGIN      "tagged-devices"
#define TS_MAP_TAGGED_DISPLAY    "Tagged Devices"

/* Threading.
 * - A ts_map_t is NOT thread-safe. Every call taking one (mutations, ts_map_full,
 *   ts_map_delta_build, getters) must be serialised by the caller, e.g. one mutex per view.
 *   Building a full map of N peers holds that lock for a memcpy of O(N) cached bytes;
 *   compress it (ts_mapframe_encode) after unlocking.
 * - A ts_map_delta_t is immutable once built: ts_map_delta_ref/unref/json/frame may run on
 *   any thread at once, without the view's lock, for as long as a reference is held.
 *
 * Model. Mutations only record what changed. The next ts_map_full or ts_map_delta_build
 * "settles" the view: re-elects primary routes, notices keys that expired, re-serialises
 * each changed node's entries once, and classifies every change (full peer entry, patch, self)
 * into the pending set that the next delta publishes and then clears.
 *
 * Streams. A stream's first frame is ts_map_full; register the stream for deltas in the same
 * critical section, then send it every delta built afterwards, in order. Deltas are
 * idempotent (upserts, removals, patches to absolute values), so a delta repeating what the
 * full map already showed is harmless; what must never happen is a delta built after the full
 * map that the stream does not get.
 *
 * Visibility. Without a policy every node sees every other node and gets the allow-all
 * PacketFilter. With one (ts_map_set_policy, below) a viewer sees only the peers the compiled
 * policy lets it see, gets its own PacketFilter, SSHPolicy and self CapMap; deltas are then
 * rendered once per visibility class (viewers that see the same set of nodes) and once per
 * viewer whose own view changed. */

typedef struct ts_map ts_map_t;
typedef struct ts_map_delta ts_map_delta_t;

/* An empty view living in p (its nodes are freed with p). */
apr_status_t ts_map_create(ts_map_t **m, apr_pool_t *p);

/* Tailnet settings: base_domain (node names), domain (MapResponse.Domain; defaults to the host
 * of server_url), and DNSConfig (control API 5.8): dns_config_json is a JSON object of extra
 * DNSConfig fields (Resolvers, FallbackResolvers, Routes, ExtraRecords, Domains as search
 * domains…); base_domain is prepended to Domains, Proxied = magic_dns with a base_domain, null
 * Routes values become []. A changed base_domain renames every node (all peers re-sent).
 * EINVAL (err from p) for a bad base_domain or dns_config_json; the view is unchanged then. */
apr_status_t ts_map_set_conf(ts_map_t *m, const ts_tailnet_conf_t *conf, apr_pool_t *p,
                             const char **err);

/* The DERPMap JSON object text to send (validated by ts_derp); copied. NULL or "" clears it,
 * and full maps then fail with APR_EAGAIN (clients retry) until one is set. */
void ts_map_set_derpmap(ts_map_t *m, const char *json, apr_size_t len);

/* Users, for UserProfiles: LoginName = email, else name, else provider id, else the id;
 * DisplayName = display_name, else name. Removing a user does not remove its nodes. */
apr_status_t ts_map_user_upsert(ts_map_t *m, const ts_user_t *u);
void ts_map_user_remove(ts_map_t *m, apr_int64_t id);

/* Adds or replaces a node from its row and routes (ts_route_t values; NULL = none). Runtime
 * presence is kept across upserts (a row never carries it); LastSeen is the newer of the row's
 * and the runtime one. A row that cannot be served (bad key, name, address, JSON field) is
 * refused with APR_EINVAL and err (from p) naming node and field; a node already in the view
 * is then removed from it (peers get PeersRemoved): one bad node must not break every map. */
apr_status_t ts_map_node_upsert(ts_map_t *m, const ts_node_t *n,
                                const apr_array_header_t *routes, apr_pool_t *p,
                                const char **err);
/* APR_NOTFOUND if the node is not in the view. */
apr_status_t ts_map_node_remove(ts_map_t *m, apr_int64_t id);
/* Presence (control API 5.7): online, or offline since last_seen (0: keep the known one).
 * New nodes start offline. APR_NOTFOUND if unknown. */
apr_status_t ts_map_node_set_online(ts_map_t *m, apr_int64_t id, int online,
                                    apr_time_t last_seen);
int ts_map_node_count(const ts_map_t *m);
int ts_map_has_node(const ts_map_t *m, apr_int64_t id);

/* The cached peer entry (tailcfg.Node as peers see it) of a node, after settling at now;
 * valid until the next call on the view. APR_NOTFOUND if unknown. */
apr_status_t ts_map_peer_json(ts_map_t *m, apr_int64_t id, apr_time_t now,
                              const char **json, apr_size_t *len);

/* The full MapResponse for viewer (control API 2.5): Node, DERPMap, Peers (by ID; omitted when
 * none), DNSConfig, Domain, CollectServices false, PacketFilter (allow-all without a policy;
 * with one: the viewer's, and SSHPolicy when it has rules, and its CapMap in Node; only the
 * peers it may see), UserProfiles of self and peers, ControlTime now,
 * Debug.DisableLogTail. NUL-terminated JSON from p.
 * APR_NOTFOUND: no such node; APR_EAGAIN: no DERP map yet. err is a static string.
 * Meant for a stream's first frame: clients ignore an absent or empty Peers, so a full map
 * sent later on the same stream must add PeersRemoved for peers that went away (7.2). */
apr_status_t ts_map_full(ts_map_t *m, apr_int64_t viewer, apr_time_t now, apr_pool_t *p,
                         char **json, apr_size_t *len, const char **err);

/* ---- full maps from shared compressed chunks (ts_map_chunks.c) ----
 * The same MapResponse as ts_map_full, as a frame whose zstd payload is several frames one
 * after the other (clients decode them all and concatenate the output): the viewer's own
 * texts (Node, settings, UserProfiles, ControlTime) compressed for it, and the peer list in
 * chunks of nodes compressed once per change and shared by every viewer that sees the whole
 * chunk (everyone without a policy; a visibility class sees a chunk it sees part of in a
 * variant of its own). The chunk holding the viewer itself is rendered for it.
 *
 * 1. ts_map_full_plan, under the view's lock: settles, references the cached chunks that are
 *    current, copies the texts to compress (the viewer's own, and stale or missing chunks).
 * 2. ts_map_plan_encode, no lock: compresses them with this thread's encoder.
 * 3. ts_map_plan_install, under the view's lock again: caches the chunks the plan compressed
 *    when they are still current (a chunk is keyed by its nodes and their entries' versions).
 * 4. ts_map_plan_frame: the frame (LE32 + payload), malloc'd; ts_map_plan_free. */
#define TS_MAP_CHUNKS 1             /* this API exists (benchmarks build against older trees too) */
typedef struct ts_map_plan ts_map_plan_t;

apr_status_t ts_map_full_plan(ts_map_t *m, apr_int64_t viewer, apr_time_t now,
                              ts_map_plan_t **plan, const char **err);
apr_status_t ts_map_plan_encode(ts_map_plan_t *plan, ts_mapframe_enc_t *enc, const char **err);
void ts_map_plan_install(ts_map_t *m, ts_map_plan_t *plan, apr_time_t now);
/* The whole frame, malloc'd (NULL: out of memory). */
uint8_t *ts_map_plan_frame(const ts_map_plan_t *plan, size_t *len);
void ts_map_plan_free(ts_map_plan_t *plan);
/* For tests and benchmarks: shared chunks referenced from the cache / compressed by the plan,
 * zstd frames in the payload, and the cached chunks. */
void ts_map_plan_stats(const ts_map_plan_t *plan, int *reused, int *built, int *frames);
int ts_map_zcache_count(const ts_map_t *m);

/* {"KeepAlive":true} (control API 2.4); a static string. */
const char *ts_map_keepalive_json(apr_size_t *len);

/* ---- deltas (control API 2.6, 7.1) ----
 * One delta per settle, the same for every stream of the view:
 *   PeersRemoved     nodes removed (or refused) since the last delta;
 *   PeersChanged     full entries of nodes added or changed in anything a patch cannot carry,
 *                    plus the UserProfiles of their owners (and of users that changed);
 *   PeersChangedPatch {NodeID, Key/DiscoKey/Endpoints/DERPRegion/Online/LastSeen/KeyExpiry}
 *                    for nodes that changed only in those fields (presence, endpoints, home
 *                    DERP, key rotation, expiry moved but not yet passed);
 *   DERPMap, DNSConfig, Domain when they changed; ControlTime.
 * The self node: a viewer never receives its own entry. A viewer whose node is in
 * PeersChanged, or whose self Node changed, gets its own rendering (the shared one without
 * its entry, plus "Node"); everyone else gets the shared bytes. Patches naming the viewer
 * itself stay in the shared rendering: clients ignore patches for unknown peers. */

/* Settles and takes the pending changes. APR_NOTFOUND (and *d NULL) when nothing changed.
 * With enc, the shared rendering is also compressed once, here. */
apr_status_t ts_map_delta_build(ts_map_t *m, apr_time_t now, ts_mapframe_enc_t *enc,
                                ts_map_delta_t **d);
void ts_map_delta_ref(ts_map_delta_t *d);
/* The last unref frees the delta (its own pool). */
void ts_map_delta_unref(ts_map_delta_t *d);
/* Whether viewer gets the shared rendering. */
int ts_map_delta_is_shared_for(const ts_map_delta_t *d, apr_int64_t viewer);
/* The MapResponse JSON for viewer: the shared text (owned by the delta) or one built in p.
 * APR_NOTFOUND when this viewer has nothing to receive (e.g. the delta only changed other
 * nodes' own Node, or only this viewer's entry). */
apr_status_t ts_map_delta_json(const ts_map_delta_t *d, apr_int64_t viewer, apr_pool_t *p,
                               const char **json, apr_size_t *len);
/* The same as a frame (LE32 + zstd or raw JSON). The shared frames are returned without
 * copying when the delta has them; otherwise the frame is built in p with enc (this thread's). */
apr_status_t ts_map_delta_frame(const ts_map_delta_t *d, apr_int64_t viewer, int compress,
                                ts_mapframe_enc_t *enc, apr_pool_t *p, const uint8_t **frame,
                                apr_size_t *len, const char **err);

/* ---- policy (ts_map_policy.c) ----
 * The runtime compiles the policy (ts_policy) against a snapshot of the view's nodes, off the
 * view's lock, prepares the result for the view (ts_map_pol_prepare: texts and bitmaps, also
 * off the lock), and installs it under the lock. Nodes missing from the installed policy (they
 * joined after its compilation) see nobody and nobody sees them until the next one. */

typedef struct ts_map_pol ts_map_pol_t;

/* The view's nodes as the policy compiler needs them (sorted by id); from p. */
typedef struct ts_map_pol_inputs {
    ts_policy_node_t *nodes;
    int nnodes;
    apr_int64_t *owners;            /* wire user id of each node (UserProfiles) */
    unsigned gen;                   /* ts_map_policy_gen when taken */
} ts_map_pol_inputs_t;

/* Bumped whenever something the policy depends on changed: a node added or removed, its
 * user, tags, addresses or routes, or a router's presence. */
unsigned ts_map_policy_gen(const ts_map_t *m);
/* Under the view's lock. user_ids (nusers, the order of the tailnet's users[]) give each
 * node's user index; a user missing there leaves its nodes without an owner (-1). */
void ts_map_policy_inputs(ts_map_t *m, apr_pool_t *p, const apr_int64_t *user_ids, int nusers,
                          ts_map_pol_inputs_t *out);
/* No lock: the view's form of a compiled result for those inputs (res indices = inputs
 * order). Owns a reference (refs 1); immutable, shareable by threads. */
apr_status_t ts_map_pol_prepare(const ts_policy_result_t *res, const ts_map_pol_inputs_t *in,
                                ts_map_pol_t **out);
void ts_map_pol_unref(ts_map_pol_t *pol);
/* Under the view's lock: installs pol (the view takes over the reference; NULL: no policy,
 * everyone sees everyone). The next delta carries a policy-style update (control API 7.1) to
 * every viewer whose view changed: PeersRemoved for peers no longer visible, PeersChanged with
 * the newly visible ones, PacketFilter, SSHPolicy, Node when its CapMap changed. */
void ts_map_set_policy(ts_map_t *m, ts_map_pol_t *pol);
int ts_map_has_policy(const ts_map_t *m);
/* Whether a delta must be rendered per class/viewer (a policy is or was in force): the
 * runtime then renders frames off the view's lock. */
int ts_map_delta_has_policy(const ts_map_delta_t *d);

#endif
