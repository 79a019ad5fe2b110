/* mod_ts2021_stream.c: each child's tailnet runtime: the map view kept current from the change
 * log by the notifier thread, deltas built once and fanned out to every open map stream,
 * keep-alives, presence (online/offline with a grace period), held registrations. */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_machine.h"
#include "mod_ts2021_metrics.h"
#include "mod_ts2021_notify.h"
#include "mod_ts2021_presence.h"

#include <http_log.h>
#include <apr_atomic.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "ts_register.h"

APLOG_USE_MODULE(ts2021);

/* Keep-alives after rt->keepalive of silence, plus up to this much jitter (or a fifth). */
#define STREAM_KEEPALIVE_JIT  9000      /* ms */
#define STREAM_RECHECK        apr_time_from_sec(2)
#define STREAM_CHANGES_BATCH  1000
/* Batches one round applies (each followed by its fan-out) before it lets the notifier's
 * other tailnets run; a round left behind asks for the next one at once. */
#define STREAM_BATCHES_PER_ROUND 4

static apr_array_header_t *tailnets;     /* ts_tailnet_rt *, one per ServerName */

ts_tailnet_rt *ts_tailnet_of(server_rec *s)
{
    int i;

    for (i = 0; tailnets && i < tailnets->nelts; i++) {
        ts_tailnet_rt *rt = APR_ARRAY_IDX(tailnets, i, ts_tailnet_rt *);
        if (!strcmp(rt->s->server_hostname, s->server_hostname)) return rt;
    }
    return NULL;
}

/* ---- posting to a connection's owner ---- */

static void tailnet_close_key(ts_tailnet_rt *rt, ts_mailbox_t *mb, uint64_t conn_id,
                              int32_t stream_id);

typedef struct machine_item {
    int32_t stream_id;
    int kind;                       /* 0 frame, 1 response, 2 stream head */
    int status;
    const char *content_type;
    const uint8_t *data;
    size_t len;
    uint8_t *own;                   /* malloc'ed copy, or NULL */
    ts_map_delta_t *hold;           /* keeps shared bytes alive, or NULL */
    ts_tailnet_rt *rt;              /* a registered map stream's: report it if it is gone */
} machine_item;

/* Bytes of the frames and answers copied for owner threads, not yet run by them: with a
 * busy event loop a cold start's first maps wait here, not in the HTTP/2 queues. */
static volatile apr_uint64_t posted_bytes;

apr_size_t ts_tailnet_posted_bytes(void)
{
    return (apr_size_t)apr_atomic_read64(&posted_bytes);
}

static void item_free(machine_item *it)
{
    if (it->hold) ts_map_delta_unref(it->hold);
    if (it->own) apr_atomic_sub64(&posted_bytes, it->len);
    free(it->own);
    free(it);
}

static void item_run(void *owner_ctx, uint64_t conn_id, void *arg)
{
    machine_item *it = arg;
    ts_driver_t *d = owner_ctx;
    ts_conn_t *conn = d ? d->lookup(d, conn_id) : NULL;
    apr_status_t rv = APR_SUCCESS;

    if (conn) {
        if (it->kind == 1) {
            ts_conn_respond(conn, it->stream_id, it->status, it->content_type, it->data,
                            it->len);
        }
        else if (it->kind == 2) {
            ts_conn_stream_start(conn, it->stream_id, 200, "application/octet-stream");
        }
        else if ((rv = ts_conn_stream_write(conn, it->stream_id, it->data, it->len))
                 == APR_ENOSPC) {
            /* The client stopped reading: end the stream; it comes back for a full map. */
            ts_conn_stream_end(conn, it->stream_id);
        }
        d->kick(d, conn_id);
    }
    /* A map stream that is no more (its close may have been reported before it was
     * registered): make sure the registry forgets it. */
    if (d && it->rt && it->kind == 0 && (!conn || rv == APR_NOTFOUND || rv == APR_EGENERAL)) {
        tailnet_close_key(it->rt, d->mb, conn_id, it->stream_id);
    }
    item_free(it);
}

static void post_item(ts_mailbox_t *mb, uint64_t conn_id, machine_item *it)
{
    ts_tailnet_rt *rt = it->kind == 0 ? it->rt : NULL;
    int32_t stream_id = it->stream_id;

    if (it->own) apr_atomic_add64(&posted_bytes, it->len);
    if (ts_mailbox_post(mb, conn_id, item_run, it) == APR_SUCCESS) return;
    item_free(it);
    /* The owner is gone (a TLS connection that ended): so is the stream. */
    if (rt) tailnet_close_key(rt, mb, conn_id, stream_id);
}

/* own: a malloc'ed frame whose ownership passes to the item; else data is copied unless
 * hold keeps it alive. */
static void post_frame(ts_tailnet_rt *rt, ts_mailbox_t *mb, uint64_t conn_id,
                       int32_t stream_id, uint8_t *own, const uint8_t *frame, size_t len,
                       ts_map_delta_t *hold)
{
    machine_item *it = calloc(1, sizeof(*it));

    if (!it) {
        free(own);
        return;
    }
    it->stream_id = stream_id;
    it->rt = rt;
    if (own) {
        it->own = own;
        it->data = own;
    }
    else if (hold) {
        ts_map_delta_ref(hold);
        it->hold = hold;
        it->data = frame;
    }
    else {
        it->own = malloc(len ? len : 1);
        if (!it->own) {
            free(it);
            return;
        }
        memcpy(it->own, frame, len);
        it->data = it->own;
    }
    it->len = len;
    post_item(mb, conn_id, it);
}

void ts_machine_post_frame(ts_mailbox_t *mb, uint64_t conn_id, int32_t stream_id,
                           const uint8_t *frame, size_t len, ts_map_delta_t *hold)
{
    post_frame(NULL, mb, conn_id, stream_id, NULL, frame, len, hold);
}

void ts_machine_post_stream_start(ts_mailbox_t *mb, uint64_t conn_id, int32_t stream_id)
{
    machine_item *it = calloc(1, sizeof(*it));

    if (!it) return;
    it->kind = 2;
    it->stream_id = stream_id;
    post_item(mb, conn_id, it);
}

void ts_machine_post_response(ts_mailbox_t *mb, uint64_t conn_id, int32_t stream_id, int status,
                              const char *content_type, const char *body, size_t len)
{
    machine_item *it = calloc(1, sizeof(*it));

    if (!it || !(it->own = malloc(len ? len : 1))) {
        free(it);
        return;
    }
    memcpy(it->own, body, len);
    it->kind = 1;
    it->stream_id = stream_id;
    it->status = status;
    it->content_type = content_type;
    it->data = it->own;
    it->len = len;
    post_item(mb, conn_id, it);
}

/* ---- loading the view ---- */

static apr_status_t load_node(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p, ts_node_t *n)
{
    apr_array_header_t *routes = NULL;
    const char *err = NULL;
    apr_status_t rv = ts_store_node_routes_get(st, p, n->id, &routes, &err);

    if (rv != APR_SUCCESS) return rv;
    apr_thread_mutex_lock(rt->mu);
    rv = ts_map_node_upsert(rt->map, n, routes, p, &err);
    if (rv == APR_SUCCESS && ts_presence_online(rt->index, n->id)) {
        ts_map_node_set_online(rt->map, n->id, 1, 0);
    }
    apr_thread_mutex_unlock(rt->mu);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->s, APLOGNO(11030)
                     "TS2021: node %" APR_INT64_T_FMT " left out of maps: %s", n->id, err);
    }
    return APR_SUCCESS;
}

/* Every user and node, with the generation read first: a change committed while we read is
 * applied again by the next round (upserts are idempotent). */
static apr_status_t load_all(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p)
{
    apr_array_header_t *users, *nodes;
    const char *err = NULL;
    apr_int64_t g;
    apr_status_t rv;
    int i;

    if ((rv = ts_store_generation(st, p, &g, &err)) != APR_SUCCESS
        || (rv = ts_store_user_list(st, p, &users, &err)) != APR_SUCCESS
        || (rv = ts_store_node_list(st, p, &nodes, &err)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, rt->s, APLOGNO(11031)
                     "TS2021: cannot load the tailnet: %s", err);
        return rv;
    }
    for (i = 0; i < users->nelts; i++) {
        apr_thread_mutex_lock(rt->mu);
        ts_map_user_upsert(rt->map, APR_ARRAY_IDX(users, i, ts_user_t *));
        apr_thread_mutex_unlock(rt->mu);
    }
    for (i = 0; i < nodes->nelts && rv == APR_SUCCESS; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        rv = load_node(rt, st, p, n);
        if (n->ephemeral && !ts_presence_online(rt->index, n->id)) {
            apr_int64_t *due;
            apr_thread_mutex_lock(rt->mu);
            due = apr_array_push(rt->ephemeral_due);
            due[0] = n->id;
            due[1] = apr_time_now() + rt->conf->ephemeral_timeout;
            apr_thread_mutex_unlock(rt->mu);
        }
    }
    apr_thread_mutex_lock(rt->mu);
    rt->generation = g;
    rt->loaded = rv == APR_SUCCESS;
    apr_thread_mutex_unlock(rt->mu);
    apr_thread_mutex_lock(rt->pol_mu);
    rt->pol_reload = 1;
    apr_thread_mutex_unlock(rt->pol_mu);
    return rv;
}

/* ---- the policy ---- */

/* pol_mu held: compiles pol against the view's current nodes and installs the result. */
static apr_status_t policy_install(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p,
                                   const ts_policy_t *pol, const char **err)
{
    apr_array_header_t *users;
    ts_policy_user_t *pu;
    apr_int64_t *uids;
    ts_map_pol_inputs_t in;
    ts_policy_tailnet_t tn;
    ts_policy_result_t *res;
    ts_map_pol_t *mp = NULL;
    apr_pool_t *cp;
    apr_time_t t0 = apr_time_now();
    apr_status_t rv;
    int i;

    if ((rv = ts_store_user_list(st, p, &users, err)) != APR_SUCCESS) return rv;
    pu = apr_pcalloc(p, sizeof(*pu) * (size_t)(users->nelts + 1));
    uids = apr_pcalloc(p, sizeof(*uids) * (size_t)(users->nelts + 1));
    for (i = 0; i < users->nelts; i++) {
        const ts_user_t *u = APR_ARRAY_IDX(users, i, ts_user_t *);
        pu[i].id = uids[i] = u->id;
        pu[i].name = u->name;
        /* a user without an email is "name@" to the policy (its groups list "name@") */
        pu[i].email = u->email && *u->email ? u->email : apr_pstrcat(p, u->name, "@", NULL);
    }
    apr_thread_mutex_lock(rt->mu);
    ts_map_policy_inputs(rt->map, p, uids, users->nelts, &in);
    apr_thread_mutex_unlock(rt->mu);
    memset(&tn, 0, sizeof(tn));
    tn.users = pu;
    tn.nusers = users->nelts;
    tn.nodes = in.nodes;
    tn.nnodes = in.nnodes;
    tn.control_url = rt->conf->server_url;
    /* off mu: compiling takes O(rules x nodes) and the peer matrix */
    apr_pool_create_unmanaged_ex(&cp, NULL, NULL);
    rv = ts_policy_compile(cp, pol, &tn, &res, err);
    if (rv == APR_SUCCESS) rv = ts_map_pol_prepare(res, &in, &mp);
    if (rv != APR_SUCCESS && *err) *err = apr_pstrdup(p, *err);
    apr_pool_destroy(cp);
    if (rv != APR_SUCCESS) return rv;
    apr_thread_mutex_lock(rt->mu);
    ts_map_set_policy(rt->map, mp);
    apr_thread_mutex_unlock(rt->mu);
    rt->pol_gen = in.gen;
    rt->pol_dirty = 0;
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, rt->s, APLOGNO(11072)
                 "TS2021: policy compiled for %d nodes in %" APR_TIME_T_FMT " ms", in.nnodes,
                 apr_time_as_msec(apr_time_now() - t0));
    return APR_SUCCESS;
}

static void policy_decided(ts_tailnet_rt *rt)
{
    apr_thread_mutex_lock(rt->mu);
    rt->pol_decided = 1;
    apr_thread_mutex_unlock(rt->mu);
}

/* pol_mu held: the first decision of a view found a policy text that fails. With no
 * previous result to keep, fail closed: nobody sees anybody, every filter is empty, until
 * a good text is stored (the bad one is not retried until then). */
static void policy_fail_closed(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p,
                               const char *text)
{
    static const char deny[] = "{\"acls\": []}";
    apr_pool_t *dp;
    ts_policy_t *pol;
    const char *err = NULL;
    int first;

    apr_thread_mutex_lock(rt->mu);
    first = !rt->pol_decided;
    apr_thread_mutex_unlock(rt->mu);
    if (!first || rt->pol) return;
    apr_pool_create_unmanaged_ex(&dp, NULL, NULL);
    if (ts_policy_parse(dp, deny, sizeof(deny) - 1, &pol, &err) != APR_SUCCESS
        || policy_install(rt, st, p, pol, &err) != APR_SUCCESS) {
        apr_pool_destroy(dp);
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->s, APLOGNO(11076)
                 "TS2021: no previous policy to keep: every node sees nobody until a valid "
                 "policy is stored");
    rt->pol = pol;
    rt->pol_pool = dp;
    free(rt->pol_text);
    rt->pol_text = text ? strdup(text) : NULL;
}

/* Any thread but under no lock: re-reads the policy text when asked (load, policy.set) and
 * recompiles when the text or the view's policy inputs changed. A text that does not parse
 * or compile leaves the previous policy in force (logged). */
static void policy_update(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p)
{
    const char *text = NULL, *err = NULL;
    ts_policy_t *fresh = NULL;
    apr_pool_t *fpool = NULL;
    int changed_text = 0, need;
    unsigned gen;

    apr_thread_mutex_lock(rt->pol_mu);
    if (rt->pol_reload) {
        if (ts_tailnet_policy_text(rt->s, st, p, &text, NULL, &err) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->s, APLOGNO(11073)
                         "TS2021: cannot read the policy: %s", err ? err : "?");
            apr_thread_mutex_unlock(rt->pol_mu);
            return;
        }
        rt->pol_reload = 0;
        changed_text = !text != !rt->pol_text || (text && strcmp(text, rt->pol_text));
    }
    if (changed_text && !text) {
        /* the policy was removed: everyone sees everyone again */
        apr_thread_mutex_lock(rt->mu);
        ts_map_set_policy(rt->map, NULL);
        apr_thread_mutex_unlock(rt->mu);
        if (rt->pol_pool) apr_pool_destroy(rt->pol_pool);
        free(rt->pol_text);
        rt->pol_text = NULL;
        rt->pol_pool = NULL;
        rt->pol = NULL;
        policy_decided(rt);
        apr_thread_mutex_unlock(rt->pol_mu);
        return;
    }
    if (changed_text) {
        apr_pool_create_unmanaged_ex(&fpool, NULL, NULL);
        if (ts_policy_parse(fpool, text, strlen(text), &fresh, &err) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->s, APLOGNO(11074)
                         "TS2021: new policy rejected, the previous one stays in force: %s",
                         err);
            apr_pool_destroy(fpool);
            policy_fail_closed(rt, st, p, text);
            policy_decided(rt);
            apr_thread_mutex_unlock(rt->pol_mu);
            return;
        }
    }
    apr_thread_mutex_lock(rt->mu);
    gen = ts_map_policy_gen(rt->map);
    apr_thread_mutex_unlock(rt->mu);
    need = fresh || (rt->pol && (rt->pol_dirty || gen != rt->pol_gen));
    if (need && policy_install(rt, st, p, fresh ? fresh : rt->pol, &err) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->s, APLOGNO(11075)
                     "TS2021: %s policy does not compile against the tailnet, the previous "
                     "result stays in force: %s", fresh ? "new" : "the", err ? err : "?");
        if (fpool) apr_pool_destroy(fpool);
        fresh = NULL;
        rt->pol_gen = gen;          /* retried when the tailnet moves again */
        rt->pol_dirty = 0;
        if (changed_text) policy_fail_closed(rt, st, p, text);
    }
    else if (fresh) {
        if (rt->pol_pool) apr_pool_destroy(rt->pol_pool);
        free(rt->pol_text);
        rt->pol_text = strdup(text);
        rt->pol_pool = fpool;
        rt->pol = fresh;
    }
    policy_decided(rt);
    apr_thread_mutex_unlock(rt->pol_mu);
}

apr_status_t ts_tailnet_ensure_loaded(ts_tailnet_rt *rt, apr_pool_t *p)
{
    ap_dbd_t *rec;
    ts_store_t *st;
    apr_status_t rv = APR_SUCCESS;
    int loaded, decided;

    /* not pol_mu: a compilation may hold it for a second */
    apr_thread_mutex_lock(rt->mu);
    loaded = rt->loaded;
    decided = rt->pol_decided;
    apr_thread_mutex_unlock(rt->mu);
    if (loaded && decided) return APR_SUCCESS;
    if (!(st = ts_dbd_open(p, rt->s, &rec))) return APR_EGENERAL;
    if (!loaded) rv = load_all(rt, st, p);
    /* no map leaves before the policy was decided (it could show every node to everyone) */
    if (rv == APR_SUCCESS) policy_update(rt, st, p);
    ts_dbd_close(rt->s, rec);
    return rv;
}

/* ---- applying changes ---- */

/* What one batch of the change log asks of the view. */
typedef struct change_plan {
    apr_hash_t *nodes;          /* id -> kind of the last change */
    apr_hash_t *users;
    int reload;                 /* the log was pruned past us: reload everything */
    int policy;                 /* a policy was stored */
} change_plan;

static void plan_changes(change_plan *plan, apr_pool_t *p, apr_array_header_t *changes)
{
    int i;

    plan->nodes = apr_hash_make(p);
    plan->users = apr_hash_make(p);
    plan->policy = 0;
    for (i = 0; i < changes->nelts; i++) {
        ts_change_t *c = APR_ARRAY_IDX(changes, i, ts_change_t *);
        if (!strncmp(c->kind, "node.", 5) && c->node_id) {
            apr_int64_t *id = apr_pmemdup(p, &c->node_id, sizeof(c->node_id));
            apr_hash_set(plan->nodes, id, sizeof(*id), c->kind);
        }
        if (!strncmp(c->kind, "user.", 5) && c->user_id) {
            apr_int64_t *id = apr_pmemdup(p, &c->user_id, sizeof(c->user_id));
            apr_hash_set(plan->users, id, sizeof(*id), c->kind);
        }
        if (!strcmp(c->kind, TS_CHANGE_POLICY_SET)) plan->policy = 1;
    }
}

static void apply_user(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p, apr_int64_t id)
{
    ts_user_t *u = NULL;
    const char *err;
    apr_status_t rv = ts_store_user_get(st, p, id, &u, &err);

    apr_thread_mutex_lock(rt->mu);
    if (rv == APR_SUCCESS) ts_map_user_upsert(rt->map, u);
    else if (rv == TS_STORE_ENOTFOUND) ts_map_user_remove(rt->map, id);
    apr_thread_mutex_unlock(rt->mu);
}

static void apply_node(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                       const char *kind)
{
    ts_node_t *n = NULL;
    const char *err;
    apr_status_t rv = ts_store_node_get(st, p, id, &n, &err);

    if (rv == TS_STORE_ENOTFOUND) {
        apr_thread_mutex_lock(rt->mu);
        ts_map_node_remove(rt->map, id);
        apr_thread_mutex_unlock(rt->mu);
        return;
    }
    if (rv != APR_SUCCESS) return;
    load_node(rt, st, p, n);
    apr_thread_mutex_lock(rt->mu);
    if (!strcmp(kind, TS_CHANGE_NODE_ONLINE)) ts_map_node_set_online(rt->map, id, 1, 0);
    else if (!strcmp(kind, TS_CHANGE_NODE_OFFLINE)) {
        ts_map_node_set_online(rt->map, id, ts_presence_online(rt->index, id), n->last_seen);
    }
    apr_thread_mutex_unlock(rt->mu);
}

/* Reads one batch of the changes since the view's generation and applies them; the delta is
 * built by the caller. 1 if the batch was full (more may follow), else 0. */
static int apply_changes(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p)
{
    apr_array_header_t *changes;
    apr_int64_t through, since;
    apr_hash_index_t *hi;
    change_plan plan;
    const char *err = NULL;
    apr_status_t rv;

    apr_thread_mutex_lock(rt->mu);
    since = rt->generation;
    apr_thread_mutex_unlock(rt->mu);
    rv = ts_store_changes_since(st, p, since, STREAM_CHANGES_BATCH, &changes, &through, &err);
    if (rv == TS_STORE_EPRUNED) {
        load_all(rt, st, p);
        return 0;
    }
    if (rv != APR_SUCCESS || through == since) return 0;
    plan_changes(&plan, p, changes);
    if (plan.policy || apr_hash_count(plan.users)) {
        apr_thread_mutex_lock(rt->pol_mu);
        rt->pol_reload |= plan.policy;
        rt->pol_dirty |= apr_hash_count(plan.users) > 0;
        apr_thread_mutex_unlock(rt->pol_mu);
    }
    for (hi = apr_hash_first(p, plan.users); hi; hi = apr_hash_next(hi)) {
        apply_user(rt, st, p, *(const apr_int64_t *)apr_hash_this_key(hi));
    }
    for (hi = apr_hash_first(p, plan.nodes); hi; hi = apr_hash_next(hi)) {
        apply_node(rt, st, p, *(const apr_int64_t *)apr_hash_this_key(hi),
                   apr_hash_this_val(hi));
    }
    apr_thread_mutex_lock(rt->mu);
    rt->generation = through;
    apr_thread_mutex_unlock(rt->mu);
    return through >= since + STREAM_CHANGES_BATCH;
}

/* A post collected under rt->mu, made after unlocking. */
typedef struct post_target {
    machine_stream_key key;
    apr_int64_t node_id;            /* frame NULL: render it from hold (a policy delta) */
    int compress;
    const uint8_t *frame;
    size_t len;
    ts_map_delta_t *hold;           /* shared bytes (the round holds a reference), or NULL */
} post_target;

static apr_interval_time_t keepalive_delay(const ts_tailnet_rt *rt)
{
    apr_uint32_t jit = (apr_uint32_t)(rt->keepalive / 1000 / 5);

    if (jit > STREAM_KEEPALIVE_JIT) jit = STREAM_KEEPALIVE_JIT;
    return rt->keepalive + apr_time_from_msec(jit ? randombytes_uniform(jit) : 0);
}

/* Under rt->mu: a frame for a pending stream waits in its queue. */
static void stream_enqueue(machine_stream *ms, const uint8_t *frame, size_t len,
                           ts_map_delta_t *hold)
{
    machine_frame *f = calloc(1, sizeof(*f));

    if (!f) return;
    if (hold) {
        ts_map_delta_ref(hold);
        f->hold = hold;
        f->data = frame;
    }
    else {
        if (!(f->own = malloc(len ? len : 1))) {
            free(f);
            return;
        }
        memcpy(f->own, frame, len);
        f->data = f->own;
    }
    f->len = len;
    *ms->queue_tail = f;
    ms->queue_tail = &f->next;
}

static void frame_free(machine_frame *f)
{
    if (f->hold) ts_map_delta_unref(f->hold);
    free(f->own);
    free(f);
}

/* Under rt->mu: what the round sends, built once (the delta) and collected per stream
 * (its frame; keep-alives to streams idle for about 50-59 s). Pending streams get theirs
 * queued. Posting happens after unlocking (fan_out_post): a post may have to wait for a
 * mailbox lock, and nothing that waits may run under rt->mu. */
static apr_array_header_t *fan_out_collect(ts_tailnet_rt *rt, apr_pool_t *p, apr_time_t now,
                                           ts_map_delta_t **dp, int *ndelta)
{
    apr_array_header_t *targets = apr_array_make(p, rt->nstreams ? rt->nstreams : 1,
                                                 sizeof(post_target));
    ts_map_delta_t *d = NULL;
    machine_stream *ms;

    if (!rt->loaded || ts_map_delta_build(rt->map, now, rt->enc, &d) != APR_SUCCESS) d = NULL;
    for (ms = rt->streams; ms; ms = ms->next) {
        const uint8_t *frame = NULL;
        apr_size_t len = 0;
        ts_map_delta_t *hold = NULL;
        const char *err;
        post_target *pt;

        if (d && !ms->pending && ts_map_delta_has_policy(d)) {
            /* rendered per class or viewer after unlocking (fan_out_post) */
            pt = apr_array_push(targets);
            pt->key = ms->key;
            pt->node_id = ms->node_id;
            pt->compress = ms->compress;
            pt->frame = NULL;
            pt->len = 0;
            pt->hold = d;
            ms->next_keepalive = now + rt->keepalive;
            (*ndelta)++;
            continue;
        }
        if (d && ts_map_delta_frame(d, ms->node_id, ms->compress, rt->enc, p, &frame, &len,
                                    &err) == APR_SUCCESS) {
            if (ts_map_delta_is_shared_for(d, ms->node_id)) hold = d;
            ms->next_keepalive = now + rt->keepalive;
            (*ndelta)++;
        }
        else if (ms->keepalive && now >= ms->next_keepalive && !ms->pending
                 && rt->keepalive_frame[ms->compress ? 1 : 0]) {
            frame = rt->keepalive_frame[ms->compress ? 1 : 0];
            len = rt->keepalive_len[ms->compress ? 1 : 0];
            hold = NULL;
            ms->next_keepalive = now + keepalive_delay(rt);
        }
        else {
            continue;
        }
        if (ms->pending) {
            stream_enqueue(ms, frame, len, hold);
            continue;
        }
        pt = apr_array_push(targets);
        pt->key = ms->key;
        pt->frame = frame;
        pt->len = len;
        pt->hold = hold;
    }
    *dp = d;
    return targets;
}

/* No lock: the collected posts. Streams that are not pending are freed only by this
 * (notifier) thread, so the mailboxes named are still referenced. */
static void fan_out_post(ts_tailnet_rt *rt, apr_pool_t *p, apr_array_header_t *targets,
                         ts_map_delta_t *d)
{
    apr_pool_t *sub = NULL;
    int i;

    for (i = 0; i < targets->nelts; i++) {
        post_target *pt = &APR_ARRAY_IDX(targets, i, post_target);
        if (!pt->frame) {
            const uint8_t *frame;
            apr_size_t len;
            const char *err;
            if (!sub) apr_pool_create(&sub, p);
            else apr_pool_clear(sub);
            if (ts_map_delta_frame(pt->hold, pt->node_id, pt->compress, rt->post_enc, sub,
                                   &frame, &len, &err) != APR_SUCCESS)
                continue;
            post_frame(rt, pt->key.mb, pt->key.conn_id, (int32_t)pt->key.stream_id, NULL,
                       frame, len,
                       ts_map_delta_is_shared_for(pt->hold, pt->node_id) ? pt->hold : NULL);
            continue;
        }
        post_frame(rt, pt->key.mb, pt->key.conn_id, (int32_t)pt->key.stream_id, NULL,
                   pt->frame, pt->len, pt->hold);
    }
    if (sub) apr_pool_destroy(sub);
    if (d) ts_map_delta_unref(d);
}

static void fan_out(ts_tailnet_rt *rt, apr_pool_t *p, apr_time_t now)
{
    apr_array_header_t *targets;
    ts_map_delta_t *d;
    int ndelta = 0;

    apr_thread_mutex_lock(rt->mu);
    targets = fan_out_collect(rt, p, now, &d, &ndelta);
    apr_thread_mutex_unlock(rt->mu);
    fan_out_post(rt, p, targets, d);
    if (ndelta) {
        ts_metrics_add(TS_MET_MAP_DELTA, ndelta);
        ts_metrics_fanout(apr_time_now() - now);   /* now: the round's start */
    }
}

/* ---- presence ---- */

void ts_tailnet_publish_online(ts_tailnet_rt *rt, apr_int64_t node_id)
{
    apr_pool_t *p;
    ap_dbd_t *rec;
    ts_store_t *st;
    const char *err = NULL;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if ((st = ts_dbd_open(p, rt->s, &rec)) != NULL) {
        if (ts_store_node_set_presence(st, p, node_id, 1, 0, &err) == APR_SUCCESS) {
            ts_notify_bump();
        }
        ts_dbd_close(rt->s, rec);
    }
    apr_pool_destroy(p);
}

/* Nodes whose last stream ended a grace period ago go offline (published once, by whoever
 * wins the presence slot); ephemeral ones are deleted after their own timeout. */
static void presence_timers(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p, apr_time_t now)
{
    apr_array_header_t *due, *gone;
    const char *err;
    int i, changed = 0;

    apr_thread_mutex_lock(rt->mu);
    due = apr_array_copy(p, rt->offline_due);
    apr_array_clear(rt->offline_due);
    apr_thread_mutex_unlock(rt->mu);
    gone = apr_array_make(p, 4, sizeof(apr_int64_t));
    for (i = 0; i < due->nelts; i++) {
        apr_int64_t id = APR_ARRAY_IDX(due, i, apr_int64_t);
        ts_node_t *n;
        if (!ts_presence_should_go_offline(rt->index, id, now, rt->offline_grace)) {
            /* Within the grace period: look again later. Back online or already published
             * offline by another child: nothing to do. */
            if (ts_presence_online(rt->index, id) && !ts_presence_streams(rt->index, id)) {
                APR_ARRAY_PUSH(gone, apr_int64_t) = id;
            }
            continue;
        }
        if (ts_store_node_set_presence(st, p, id, 0, now, &err) == APR_SUCCESS) changed = 1;
        if (ts_store_node_get(st, p, id, &n, &err) == APR_SUCCESS && n->ephemeral) {
            apr_int64_t *e;
            apr_thread_mutex_lock(rt->mu);
            e = apr_array_push(rt->ephemeral_due);
            e[0] = id;
            e[1] = now + rt->conf->ephemeral_timeout;
            apr_thread_mutex_unlock(rt->mu);
        }
    }
    apr_thread_mutex_lock(rt->mu);
    apr_array_cat(rt->offline_due, gone);
    for (i = 0; i < rt->ephemeral_due->nelts; i++) {
        apr_int64_t *e = &((apr_int64_t *)rt->ephemeral_due->elts)[2 * i];
        if (e[1] > now || ts_presence_online(rt->index, e[0])) continue;
        apr_thread_mutex_unlock(rt->mu);
        changed |= ts_store_node_delete(st, p, e[0], &err) == APR_SUCCESS;
        apr_thread_mutex_lock(rt->mu);
        e[1] = APR_INT64_MAX;   /* done (or failed: not retried until the next start) */
    }
    apr_thread_mutex_unlock(rt->mu);
    if (changed) ts_notify_bump();
}

/* Nodes whose last stream ended in a child that exited before publishing "offline". */
typedef struct sweep_ctx {
    ts_tailnet_rt *rt;
    ts_store_t *st;
    apr_pool_t *p;
    apr_time_t now;
    int changed;
} sweep_ctx;

static void sweep_one(void *baton, apr_int64_t node_id)
{
    sweep_ctx *sc = baton;
    const char *err;

    if (ts_store_node_set_presence(sc->st, sc->p, node_id, 0, sc->now, &err) == APR_SUCCESS) {
        sc->changed = 1;
    }
}

static void presence_sweep(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p, apr_time_t now)
{
    sweep_ctx sc = { rt, st, p, now, 0 };

    ts_presence_sweep(rt->index, now, rt->offline_grace + apr_time_from_sec(5), sweep_one, &sc);
    if (sc.changed) ts_notify_bump();
}

/* ---- held registrations ---- */

void ts_tailnet_waiter_add(ts_tailnet_rt *rt, machine_waiter *w)
{
    w->next = rt->waiters;
    rt->waiters = w;
}

static void waiter_free(machine_waiter *w)
{
    ts_mailbox_unref(w->mb);
    free(w->body);
    free(w->auth_id);
    free(w);
}

/* Re-decides every held registration; answered ones leave the list. */
static void waiters_recheck(ts_tailnet_rt *rt, ts_store_t *st, apr_pool_t *p)
{
    machine_waiter *list, *w, *keep = NULL;
    int changed = 0;

    apr_thread_mutex_lock(rt->mu);
    list = rt->waiters;
    rt->waiters = NULL;
    apr_thread_mutex_unlock(rt->mu);
    while ((w = list) != NULL) {
        ts_register_result_t res;
        list = w->next;
        if (w->gone) {
            waiter_free(w);
            continue;
        }
        if (ts_register_recheck(st, p, rt->conf, w->machine_key, w->body, w->len, w->auth_id,
                                &res) == APR_SUCCESS && res.outcome == TS_REGISTER_PENDING) {
            w->next = keep;
            keep = w;
            continue;
        }
        changed |= res.changed;
        ts_metrics_registration(0, res.status, res.body);
        ts_machine_post_response(w->mb, w->conn_id, w->stream_id, res.status,
                                 res.content_type, res.body, res.body ? strlen(res.body) : 0);
        waiter_free(w);
    }
    apr_thread_mutex_lock(rt->mu);
    while ((w = keep) != NULL) {
        keep = w->next;
        ts_tailnet_waiter_add(rt, w);
    }
    apr_thread_mutex_unlock(rt->mu);
    if (changed) ts_notify_bump();
}

/* ---- streams ---- */

typedef struct machine_closed {
    struct machine_closed *next;
    machine_stream_key key;         /* a reference on key.mb is held */
} machine_closed;

/* Any thread, no lock but close_mu: a stream ended (maybe not a map stream at all). A map
 * stream leaves the index and its node loses it now (presence is shared memory); the
 * notifier unlinks it from the list on its next round. */
static void tailnet_close_key(ts_tailnet_rt *rt, ts_mailbox_t *mb, uint64_t conn_id,
                              int32_t stream_id)
{
    machine_stream_key key;
    machine_stream *ms;
    machine_closed *c = NULL;
    apr_int64_t node_id = 0;

    memset(&key, 0, sizeof(key));
    key.mb = mb;
    key.conn_id = conn_id;
    key.stream_id = stream_id;
    apr_thread_mutex_lock(rt->close_mu);
    ms = apr_hash_get(rt->stream_index, &key, sizeof(key));
    if (ms) {
        apr_hash_set(rt->stream_index, &ms->key, sizeof(ms->key), NULL);
        ms->dead = 1;
        ms->dead_next = rt->dead;
        rt->dead = ms;
        node_id = ms->node_id;
    }
    else if ((c = calloc(1, sizeof(*c))) != NULL) {
        ts_mailbox_ref(mb);
        c->key = key;
        c->next = rt->closed;
        rt->closed = c;
    }
    apr_thread_mutex_unlock(rt->close_mu);
    if (ms) ts_presence_stream_down(rt->index, node_id, apr_time_now());
}

void ts_tailnet_stream_closed(ts_conn_ctx *ctx, int32_t stream_id)
{
    ts_tailnet_rt *rt = ts_tailnet_of(ctx->s);

    if (rt) tailnet_close_key(rt, ctx->driver->mb, ctx->id, stream_id);
}

static void stream_free(machine_stream *ms)
{
    machine_frame *f;

    while ((f = ms->queue) != NULL) {
        ms->queue = f->next;
        frame_free(f);
    }
    ts_mailbox_unref(ms->key.mb);
    free(ms);
}

/* Under rt->mu: out of the list. */
static void stream_unlink(ts_tailnet_rt *rt, machine_stream *ms)
{
    if (ms->prev) ms->prev->next = ms->next;
    else rt->streams = ms->next;
    if (ms->next) ms->next->prev = ms->prev;
    ms->prev = ms->next = NULL;
    rt->nstreams--;
    APR_ARRAY_PUSH(rt->offline_due, apr_int64_t) = ms->node_id;
}

/* Notifier: applies the stream ends reported since the last round. */
static void streams_reap(ts_tailnet_rt *rt)
{
    machine_closed *list, *c;
    machine_stream *dead, *ms, *gone = NULL;
    machine_waiter *w;

    apr_thread_mutex_lock(rt->close_mu);
    list = rt->closed;
    rt->closed = NULL;
    dead = rt->dead;
    rt->dead = NULL;
    apr_thread_mutex_unlock(rt->close_mu);
    if (!list && !dead) return;
    apr_thread_mutex_lock(rt->mu);
    while ((ms = dead) != NULL) {
        dead = ms->dead_next;
        stream_unlink(rt, ms);
        if (ms->pending) {
            ms->closed = 1;             /* its worker frees it */
        }
        else {
            ms->next = gone;
            gone = ms;
        }
    }
    for (c = list; c; c = c->next) {
        for (w = rt->waiters; w; w = w->next) {
            if (w->mb == c->key.mb && w->conn_id == c->key.conn_id
                && w->stream_id == c->key.stream_id) {
                w->gone = 1;
            }
        }
    }
    apr_thread_mutex_unlock(rt->mu);
    while ((ms = gone) != NULL) {
        gone = ms->next;
        stream_free(ms);
    }
    while ((c = list) != NULL) {
        list = c->next;
        ts_mailbox_unref(c->key.mb);
        free(c);
    }
}

machine_stream *ts_tailnet_stream_add(ts_tailnet_rt *rt, ts_mailbox_t *mb, uint64_t conn_id,
                                      int32_t stream_id, apr_int64_t node_id, int compress,
                                      int keepalive)
{
    machine_stream *ms = calloc(1, sizeof(*ms));

    if (!ms) return NULL;
    ts_mailbox_ref(mb);
    ms->key.mb = mb;
    ms->key.conn_id = conn_id;
    ms->key.stream_id = stream_id;
    ms->node_id = node_id;
    ms->compress = compress;
    ms->keepalive = keepalive;
    ms->next_keepalive = apr_time_now() + keepalive_delay(rt);
    ms->pending = 1;
    ms->queue_tail = &ms->queue;
    ms->next = rt->streams;
    if (ms->next) ms->next->prev = ms;
    rt->streams = ms;
    rt->nstreams++;
    apr_thread_mutex_lock(rt->close_mu);
    apr_hash_set(rt->stream_index, &ms->key, sizeof(ms->key), ms);
    apr_thread_mutex_unlock(rt->close_mu);
    return ms;
}

int ts_tailnet_stream_ready(ts_tailnet_rt *rt, machine_stream *ms, uint8_t *frame, size_t len)
{
    machine_frame *f;
    int dead;

    if (ms->closed) {
        free(frame);
        stream_free(ms);
        return 0;
    }
    if (!frame) {
        apr_thread_mutex_lock(rt->close_mu);
        dead = ms->dead;
        if (!dead) apr_hash_set(rt->stream_index, &ms->key, sizeof(ms->key), NULL);
        apr_thread_mutex_unlock(rt->close_mu);
        ms->pending = 0;
        if (!dead) {
            /* Not reported closed: drop it here. Else the notifier's reap frees it. */
            stream_unlink(rt, ms);
            ts_presence_stream_down(rt->index, ms->node_id, apr_time_now());
            stream_free(ms);
        }
        return 0;
    }
    /* Under rt->mu, so that no delta collected after this point can overtake these. */
    ts_machine_post_stream_start(ms->key.mb, ms->key.conn_id, (int32_t)ms->key.stream_id);
    post_frame(rt, ms->key.mb, ms->key.conn_id, (int32_t)ms->key.stream_id, frame, NULL, len,
               NULL);
    while ((f = ms->queue) != NULL) {
        ms->queue = f->next;
        if (f->own) {
            post_frame(rt, ms->key.mb, ms->key.conn_id, (int32_t)ms->key.stream_id, f->own,
                       NULL, f->len, NULL);
            f->own = NULL;
        }
        else {
            post_frame(rt, ms->key.mb, ms->key.conn_id, (int32_t)ms->key.stream_id, NULL,
                       f->data, f->len, f->hold);
        }
        frame_free(f);
    }
    ms->queue_tail = &ms->queue;
    ms->pending = 0;
    return 1;
}

/* Scratch sets per tailnet (each a zstd context for chunked maps and a JSON pool for
 * one-frame maps): full maps compressed at once, all kept for reuse. */
#define STREAM_SPARE_SCRATCH  2

static void scratch_destroy(ts_tailnet_scratch *sc)
{
    if (sc->pool) apr_pool_destroy(sc->pool);
    if (sc->encpool) apr_pool_destroy(sc->encpool);
    free(sc);
}

/* A map's JSON is one block of the scratch pool, and an APR allocator keeps every block it
 * was given back, for good (Debian's APR maps each one separately). A map a few KiB larger
 * than the last (every cold start: the tailnet comes online node by node) fits in none of
 * them and gets a fresh block, so each such map left one map-sized block behind: ~60 MiB
 * per child after a 1,000-node cold start. So the pool gets an allocator of its own with one
 * block reserved for JSON up to room bytes, and is replaced (the stale blocks unmapped) once
 * a map outgrew it. */
static apr_status_t scratch_pool_fresh(ts_tailnet_scratch *sc, apr_size_t room)
{
    apr_allocator_t *a;
    apr_memnode_t *node;

    if (sc->pool) apr_pool_destroy(sc->pool);       /* and its allocator: the owner */
    sc->pool = NULL;
    sc->room = 0;
    if (apr_allocator_create(&a) != APR_SUCCESS) return APR_ENOMEM;
    if (apr_pool_create_unmanaged_ex(&sc->pool, NULL, a) != APR_SUCCESS) {
        apr_allocator_destroy(a);
        sc->pool = NULL;
        return APR_ENOMEM;
    }
    apr_allocator_owner_set(a, sc->pool);
    /* mapped, not touched: resident only once a map was written into it */
    if (room && (node = apr_allocator_alloc(a, room)) != NULL) {
        apr_allocator_free(a, node);
        sc->room = room;
    }
    return APR_SUCCESS;
}

ts_tailnet_scratch *ts_tailnet_scratch_take(ts_tailnet_rt *rt)
{
    ts_tailnet_scratch *sc;

    while (rt->scratch_out >= STREAM_SPARE_SCRATCH) apr_thread_cond_wait(rt->scratch_cv, rt->mu);
    if (rt->spare_scratch->nelts) {
        rt->scratch_out++;
        return *(ts_tailnet_scratch **)apr_array_pop(rt->spare_scratch);
    }
    if (!(sc = calloc(1, sizeof(*sc)))) return NULL;
    if (scratch_pool_fresh(sc, rt->scratch_room) != APR_SUCCESS
        || apr_pool_create_unmanaged_ex(&sc->encpool, NULL, NULL) != APR_SUCCESS
        || ts_mapframe_enc_create(&sc->enc, sc->encpool, 0) != APR_SUCCESS) {
        scratch_destroy(sc);
        return NULL;
    }
    rt->scratch_out++;
    return sc;
}

void ts_tailnet_scratch_give(ts_tailnet_rt *rt, ts_tailnet_scratch *sc)
{
    if (!sc) return;
    rt->scratch_out--;
    rt->maps_built++;
    apr_thread_cond_signal(rt->scratch_cv);
    if (rt->spare_scratch->nelts >= STREAM_SPARE_SCRATCH) {
        scratch_destroy(sc);
        return;
    }
    /* past the reserved room, the next maps get a quarter more (+ the pool's own bits) */
    if (sc->json_len + (8u << 10) > sc->room) {
        apr_size_t room = sc->json_len + sc->json_len / 4 + (16u << 10);
        if (room > rt->scratch_room) rt->scratch_room = room;
        if (scratch_pool_fresh(sc, rt->scratch_room) != APR_SUCCESS) {
            scratch_destroy(sc);
            return;
        }
    }
    else {
        apr_pool_clear(sc->pool);   /* keeps its blocks for the next map */
    }
    APR_ARRAY_PUSH(rt->spare_scratch, ts_tailnet_scratch *) = sc;
}

/* ---- the notifier's round ---- */

/* After a burst of full maps (a cold start: thousands of multi-MB JSON buffers and frames
 * queued for clients, freed on other threads) glibc keeps the freed pages; once the burst is
 * over (no map for a round, none being built), give them back, with the spare scratch sets
 * (a few MiB each: the next map makes one again). At most every 5 s. The event loop asks
 * again (ts_tailnet_trim_request) when its output queues drained after a peak: with slow
 * clients the first maps' frames are freed long after the last map was built. */
static volatile apr_uint32_t trim_asked;

void ts_tailnet_trim_request(void)
{
    apr_atomic_set32(&trim_asked, 1);
}

static void heap_trim(ts_tailnet_rt *rt, apr_time_t now)
{
    ts_tailnet_scratch *spare[STREAM_SPARE_SCRATCH];
    int trim = 0, nspare = 0, freed = 0, asked = apr_atomic_xchg32(&trim_asked, 0) != 0;
    apr_uint32_t built = 0;
    apr_size_t reserved = 0;

    apr_thread_mutex_lock(rt->mu);
    if (rt->maps_built != rt->maps_trimmed && !rt->scratch_out && now >= rt->next_trim) {
        if (rt->maps_built == rt->maps_seen) {      /* quiet since the last round */
            rt->maps_trimmed = rt->maps_built;
            rt->next_trim = now + apr_time_from_sec(5);
            trim = 1;
            while (rt->spare_scratch->nelts && nspare < STREAM_SPARE_SCRATCH) {
                spare[nspare++] = *(ts_tailnet_scratch **)apr_array_pop(rt->spare_scratch);
            }
        }
    }
    rt->maps_seen = rt->maps_built;
    built = rt->maps_built;
    apr_thread_mutex_unlock(rt->mu);
    if (!trim && !asked) return;
    freed = nspare;
    while (nspare > 0) {
        reserved += spare[nspare - 1]->room;
        scratch_destroy(spare[--nspare]);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    malloc_trim(0);
    if (APLOGdebug(rt->s)) {
        struct mallinfo2 mi = mallinfo2();
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, rt->s, APLOGNO(11089)
                     "TS2021: %s (%u full maps built so far): %d spare scratch sets "
                     "(%" APR_SIZE_T_FMT " KiB of JSON room and frame buffers) freed, heap "
                     "trimmed: %" APR_SIZE_T_FMT " KiB in use, %" APR_SIZE_T_FMT " KiB free "
                     "in the heap, %" APR_SIZE_T_FMT " KiB in large blocks",
                     trim ? "full maps quiet" : "output queues drained", built, freed,
                     reserved >> 10, (apr_size_t)mi.uordblks >> 10,
                     (apr_size_t)mi.fordblks >> 10, (apr_size_t)mi.hblkhd >> 10);
    }
#elif defined(__GLIBC__)
    malloc_trim(0);
#endif
    (void)built;
    (void)freed;
    (void)reserved;
}

static void tailnet_round(void *baton, int changed)
{
    ts_tailnet_rt *rt = baton;
    apr_time_t now = apr_time_now();
    apr_pool_t *p;
    ap_dbd_t *rec = NULL;
    ts_store_t *st;
    int recheck = changed || now >= rt->next_recheck;
    int sweep = now >= rt->next_sweep;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    streams_reap(rt);
    changed |= rt->behind;
    st = (changed || recheck || sweep || rt->offline_due->nelts || rt->ephemeral_due->nelts)
         ? ts_dbd_open(p, rt->s, &rec) : NULL;
    rt->behind = 0;
    if (st && !rt->loaded) {
        load_all(rt, st, p);
    }
    else if (st && changed) {
        /* Until caught up with the change log, a batch at a time, each fanned out; past
         * the round's budget the next round starts at once (never waiting for a bump). */
        int batches = 0;
        while (apply_changes(rt, st, p)) {
            if (++batches >= STREAM_BATCHES_PER_ROUND) {
                rt->behind = 1;
                ts_notify_again();
                break;
            }
            fan_out(rt, p, apr_time_now());
        }
    }
    if (st) policy_update(rt, st, p);
    if (st) presence_timers(rt, st, p, now);
    if (st && sweep) {
        presence_sweep(rt, st, p, now);
        rt->next_sweep = now + apr_time_from_sec(5);
    }
    if (st && recheck && rt->waiters) waiters_recheck(rt, st, p);
    if (recheck) rt->next_recheck = now + STREAM_RECHECK;
    if (rec) ts_dbd_close(rt->s, rec);
    fan_out(rt, p, now);
    apr_pool_destroy(p);
    heap_trim(rt, now);
    ts_notify_add_streams(rt->nstreams);    /* notifier thread: the storm rule's load */
}

/* ---- per child ---- */

static void tailnet_keepalive_frames(ts_tailnet_rt *rt)
{
    apr_size_t len;
    const char *json = ts_map_keepalive_json(&len), *err;
    int c;

    for (c = 0; c < 2; c++) {
        ts_mapframe_encode(rt->enc, rt->pool, json, len, c, &rt->keepalive_frame[c],
                           &rt->keepalive_len[c], &err);
    }
}

static apr_status_t tailnet_pool_destroy(void *data)
{
    apr_pool_destroy(data);
    return APR_SUCCESS;
}

/* pchild cleanup, after every thread of the child was joined (pre-cleanups): what streams
 * and closes were still waiting for a notifier round (connections closed at exit) is freed. */
static apr_status_t tailnet_exit_reap(void *data)
{
    ts_tailnet_rt *rt = data;
    machine_stream *ms;

    streams_reap(rt);
    while ((ms = rt->streams) != NULL) {
        stream_unlink(rt, ms);
        stream_free(ms);
    }
    return APR_SUCCESS;
}

static ts_tailnet_rt *tailnet_create(apr_pool_t *pchild, server_rec *s, int index)
{
    ts_server_conf *conf = ts_conf(s);
    ts_tailnet_rt *rt;
    apr_pool_t *p;
    const char *err = NULL;

    /* Its own allocator: the view grows from worker and notifier threads (under rt->mu),
     * and pchild's allocator is not to be shared with them. */
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    apr_pool_cleanup_register(pchild, p, tailnet_pool_destroy, apr_pool_cleanup_null);
    rt = apr_pcalloc(p, sizeof(*rt));
    rt->pool = p;
    rt->index = index;
    rt->s = s;
    rt->conf = conf->tailnet;
    rt->offline_grace = ts_config_offline_grace(conf);
    rt->keepalive = ts_config_keepalive(conf);
    rt->offline_due = apr_array_make(p, 16, sizeof(apr_int64_t));
    rt->ephemeral_due = apr_array_make(p, 16, 2 * sizeof(apr_int64_t));
    rt->stream_index = apr_hash_make(p);
    rt->spare_scratch = apr_array_make(p, STREAM_SPARE_SCRATCH, sizeof(ts_tailnet_scratch *));
    if (apr_thread_mutex_create(&rt->mu, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS
        || apr_thread_mutex_create(&rt->close_mu, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS
        || apr_thread_cond_create(&rt->scratch_cv, p) != APR_SUCCESS
        || apr_thread_mutex_create(&rt->pol_mu, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS
        || ts_mapframe_enc_create(&rt->post_enc, p, 0) != APR_SUCCESS
        || ts_map_create(&rt->map, p) != APR_SUCCESS
        || ts_mapframe_enc_create(&rt->enc, p, 0) != APR_SUCCESS
        || ts_map_set_conf(rt->map, rt->conf, p, &err) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, APLOGNO(11032)
                     "TS2021: cannot set up the tailnet of %s: %s", s->server_hostname,
                     err ? err : "out of memory");
        return NULL;
    }
    if (rt->conf->derp_map_json) {
        ts_map_set_derpmap(rt->map, rt->conf->derp_map_json, strlen(rt->conf->derp_map_json));
    }
    tailnet_keepalive_frames(rt);
    /* Registered after the pool's own cleanup: runs before it. */
    apr_pool_cleanup_register(pchild, rt, tailnet_exit_reap, apr_pool_cleanup_null);
    return rt;
}

void ts_tailnets_child_init(apr_pool_t *pchild, server_rec *s)
{
    ts_notify_child_init(pchild, s);
    tailnets = apr_array_make(pchild, 2, sizeof(ts_tailnet_rt *));
    for (; s; s = s->next) {
        ts_tailnet_rt *rt;
        if (ts_conf(s)->enabled != 1 || !ts_conf(s)->tailnet || ts_tailnet_of(s)) continue;
        if (!(rt = tailnet_create(pchild, s, tailnets->nelts))) continue;
        APR_ARRAY_PUSH(tailnets, ts_tailnet_rt *) = rt;
        ts_notify_register(s, tailnet_round, rt);
    }
}
