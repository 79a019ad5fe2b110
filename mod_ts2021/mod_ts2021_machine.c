/* mod_ts2021_machine.c: the control API inside the Noise connection: /machine/register and
 * /machine/map on the worker pool, the other /machine/ calls answered as clients expect. */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_machine.h"
#include "mod_ts2021_metrics.h"
#include "mod_ts2021_notify.h"
#include "mod_ts2021_presence.h"

#include <http_log.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>

#include "ts_register.h"
#include "ts_routes.h"
#include "ts_policy_manage.h"

APLOG_USE_MODULE(ts2021);

/* A /machine/ request copied off its connection for a worker. */
typedef struct machine_task {
    ts_tailnet_rt *rt;
    ts_mailbox_t *mb;               /* the connection owner's; a reference is held */
    uint64_t conn_id;
    int32_t stream_id;
    server_rec *s;
    char client_ip[48];             /* copied: the connection may be gone meanwhile */
    uint8_t machine_key[32];
    uint16_t version;
    char *body;
    size_t len;
} machine_task;

static void task_free(machine_task *t)
{
    ts_mailbox_unref(t->mb);
    free(t->body);
    free(t);
}

static void task_answer(machine_task *t, int status, const char *ctype, const char *body)
{
    ts_machine_post_response(t->mb, t->conn_id, t->stream_id, status, ctype, body,
                             body ? strlen(body) : 0);
}

static void task_text(machine_task *t, int status, const char *text)
{
    task_answer(t, status, "text/plain; charset=utf-8", text);
}

/* ---- /machine/register ---- */

static void *APR_THREAD_FUNC run_register(apr_thread_t *thd, void *arg)
{
    machine_task *t = arg;
    ts_register_result_t res;
    apr_pool_t *p;
    ap_dbd_t *rec;
    ts_store_t *st;

    (void)thd;
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (!(st = ts_dbd_open(p, t->s, &rec))) {
        task_text(t, 503, "database unavailable\n");
    }
    else {
        ts_register_handle(st, p, t->rt->conf, t->machine_key, t->body, t->len, &res);
        ts_dbd_close(t->s, rec);
        if (res.log) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, t->s, APLOGNO(11040)
                         "TS2021 register from %s: %s", t->client_ip, res.log);
        }
        if (res.changed) ts_notify_bump();
        ts_metrics_registration(res.outcome == TS_REGISTER_PENDING, res.status, res.body);
        if (res.outcome == TS_REGISTER_PENDING) {
            machine_waiter *w = calloc(1, sizeof(*w));
            if (w && (w->auth_id = strdup(res.auth_id))) {
                w->mb = t->mb;
                ts_mailbox_ref(w->mb);
                w->conn_id = t->conn_id;
                w->stream_id = t->stream_id;
                memcpy(w->machine_key, t->machine_key, sizeof(w->machine_key));
                w->body = t->body;
                w->len = t->len;
                w->until = res.wait_until;
                t->body = NULL;
                apr_thread_mutex_lock(t->rt->mu);
                ts_tailnet_waiter_add(t->rt, w);
                apr_thread_mutex_unlock(t->rt->mu);
            }
            else {
                free(w);
                task_text(t, 503, "server busy\n");
            }
        }
        else {
            task_answer(t, res.status, res.content_type, res.body);
        }
    }
    apr_pool_destroy(p);
    task_free(t);
    return NULL;
}

/* ---- /machine/map ---- */

typedef struct map_request {
    int version;
    const char *node_key, *disco_key;
    json_t *endpoints, *hostinfo;
    int stream, omit_peers, read_only, keepalive, compress;
} map_request;

static const char *map_parse(json_t *j, map_request *m)
{
    json_t *v;

    if (!json_is_object(j)) return "map request is not a JSON object";
    memset(m, 0, sizeof(*m));
    m->version = (int)json_integer_value(json_object_get(j, "Version"));
    m->node_key = json_string_value(json_object_get(j, "NodeKey"));
    if (!m->node_key) return "map request without NodeKey";
    m->disco_key = json_string_value(json_object_get(j, "DiscoKey"));
    m->endpoints = json_object_get(j, "Endpoints");
    m->hostinfo = json_object_get(j, "Hostinfo");
    m->stream = json_is_true(json_object_get(j, "Stream"));
    m->omit_peers = json_is_true(json_object_get(j, "OmitPeers"));
    m->read_only = json_is_true(json_object_get(j, "ReadOnly"));
    m->keepalive = json_is_true(json_object_get(j, "KeepAlive"));
    v = json_object_get(j, "Compress");
    m->compress = json_is_string(v) && !strcmp(json_string_value(v), "zstd");
    if (m->endpoints && !json_is_array(m->endpoints) && !json_is_null(m->endpoints)) {
        return "Endpoints is not an array";
    }
    if (m->hostinfo && !json_is_object(m->hostinfo) && !json_is_null(m->hostinfo)) {
        return "Hostinfo is not an object";
    }
    return NULL;
}

/* Hostinfo: the new one, but the stored NetInfo survives a request without one. */
static char *map_merge_hostinfo(apr_pool_t *p, const char *stored, json_t *fresh)
{
    json_t *merged = json_deep_copy(fresh);
    char *text, *out;

    if (!merged) return NULL;
    if (!json_object_get(merged, "NetInfo") && stored) {
        json_t *old = json_loads(stored, 0, NULL);
        json_t *ni = old ? json_object_get(old, "NetInfo") : NULL;
        if (ni) json_object_set(merged, "NetInfo", ni);
        if (old) json_decref(old);
    }
    text = json_dumps(merged, JSON_COMPACT);
    json_decref(merged);
    out = text ? apr_pstrdup(p, text) : NULL;
    free(text);
    return out;
}

static int map_str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

/* Applies what the request says of the node; 1 if the row changed. authoritative: a lite
 * update or an old client's stream (spec 2.2); else only non-empty values that differ. */
static int map_apply(apr_pool_t *p, ts_node_t *n, const map_request *m, int authoritative)
{
    int changed = 0;

    if (m->disco_key && strcmp(m->disco_key, "discokey:" "0000000000000000000000000000000000000000000000000000000000000000")
        && map_str_differs(m->disco_key, n->disco_key)) {
        n->disco_key = apr_pstrdup(p, m->disco_key);
        changed = 1;
    }
    if (json_is_array(m->endpoints) && (authoritative || json_array_size(m->endpoints))) {
        char *text = json_dumps(m->endpoints, JSON_COMPACT);
        if (text && map_str_differs(text, n->endpoints)) {
            n->endpoints = apr_pstrdup(p, text);
            changed = 1;
        }
        free(text);
    }
    if (json_is_object(m->hostinfo) && (authoritative || json_object_size(m->hostinfo))) {
        char *h = map_merge_hostinfo(p, n->host_info, m->hostinfo);
        if (h && map_str_differs(h, n->host_info)) {
            n->host_info = h;
            changed = 1;
        }
    }
    if (m->version && m->version != n->cap_version) {
        n->cap_version = m->version;
        changed = 1;
    }
    return changed;
}

/* Hostinfo.RoutableIPs, as stored with the node, become its advertised routes; approvals
 * stay. *routes is updated when they change (the change goes out with the caller's bump). */
static apr_status_t map_sync_routes(ts_store_t *st, apr_pool_t *p,
                                    const ts_tailnet_conf_t *conf, const ts_node_t *n,
                                    apr_array_header_t **routes, int *bump, const char **err)
{
    int changed = 0;
    apr_array_header_t *next = ts_routes_with_advertised(p, *routes,
                                                         ts_routes_from_hostinfo(p, n->host_info,
                                                                                 NULL),
                                                         &changed);
    apr_status_t rv;

    if (!changed) return APR_SUCCESS;
    rv = ts_store_node_routes_set(st, p, n->id, next, err);
    if (rv == APR_SUCCESS) {
        *routes = next;
        *bump = 1;
        /* what the policy's autoApprovers allow is approved now (control API 5.9) */
        rv = ts_policy_auto_approve_node(st, p, conf, n, &changed, err);
        if (rv == APR_SUCCESS && changed) rv = ts_store_node_routes_get(st, p, n->id, routes, err);
    }
    return rv;
}

/* Authorises the request's node and stores what it reports; *n is the node. *bump: the row
 * changed and the notifier must be told (the caller does, once, together with "online"). */
static int map_prepare(machine_task *t, apr_pool_t *p, const map_request *m, ts_node_t **n,
                       apr_array_header_t **routes, int *bump)
{
    ap_dbd_t *rec;
    ts_store_t *st = ts_dbd_open(p, t->s, &rec);
    const char *err = NULL;
    apr_status_t rv;
    int authoritative = !m->read_only && ((!m->stream && m->omit_peers) || m->version < 68
                                          || !m->stream);

    if (!st) {
        task_text(t, 503, "database unavailable\n");
        return 0;
    }
    rv = ts_register_node_of_machine(st, p, t->machine_key, m->node_key, n, &err);
    if (rv == APR_SUCCESS && !m->read_only && map_apply(p, *n, m, authoritative)) {
        (*n)->version = 0;      /* last writer wins: this is the node speaking for itself */
        rv = ts_store_node_update(st, p, *n, &err);
        if (rv == APR_SUCCESS) *bump = 1;
    }
    if (rv == APR_SUCCESS) rv = ts_store_node_routes_get(st, p, (*n)->id, routes, &err);
    if (rv == APR_SUCCESS && !m->read_only && json_is_object(m->hostinfo))
        rv = map_sync_routes(st, p, ts_conf(t->s)->tailnet, *n, routes, bump, &err);
    ts_dbd_close(t->s, rec);
    if (rv == TS_STORE_ENOTFOUND || rv == APR_EACCES) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, t->s, APLOGNO(11041)
                     "TS2021 map from %s refused: %s", t->client_ip, err);
        task_text(t, rv == APR_EACCES ? 403 : 404, "node not found for this machine key\n");
        return 0;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, t->s, APLOGNO(11042)
                     "TS2021 map: %s", err ? err : "database error");
        task_text(t, 500, "database error\n");
        return 0;
    }
    return 1;
}

/* The full map as one frame. Under rt->mu the map is planned from cached pieces: for zstd
 * clients the shared compressed peer chunks that are current (referenced) and the texts to
 * compress (the viewer's own, stale chunks: copied); for raw-JSON clients the JSON itself. A
 * stream is registered in the same critical section (pending: the deltas built meanwhile
 * wait in its queue), the compression happens after unlocking, and then, under rt->mu again,
 * the chunks compressed here are cached and the stream's head, this frame and the queued
 * deltas are posted in order, so that no delta is missed or overtakes the map. The node's
 * first stream here publishes it online before the compression, with the change
 * map_prepare stored (bump) in the same notification, so that peers get one delta for both. */
static void map_send_full(machine_task *t, const ts_node_t *n,
                          const map_request *m, int streaming, int bump)
{
    ts_tailnet_rt *rt = t->rt;
    ts_tailnet_scratch *sc;
    machine_stream *ms = NULL;
    ts_map_plan_t *plan = NULL;
    const char *err = NULL;
    char *json = NULL;
    apr_size_t len = 0;
    uint8_t *frame = NULL;
    size_t flen = 0;
    apr_status_t rv;
    int first = 0;

    apr_thread_mutex_lock(rt->mu);
    if (!(sc = ts_tailnet_scratch_take(rt))) {
        rv = APR_ENOMEM;
        err = "out of memory";
    }
    else if (m->compress) {
        rv = ts_map_full_plan(rt->map, n->id, apr_time_now(), &plan, &err);
    }
    else {
        rv = ts_map_full(rt->map, n->id, apr_time_now(), sc->pool, &json, &len, &err);
        if (rv == APR_SUCCESS) sc->json_len = len;
    }
    if (rv == APR_SUCCESS && streaming) {
        ms = ts_tailnet_stream_add(rt, t->mb, t->conn_id, t->stream_id, n->id, m->compress,
                                   m->keepalive);
        if (ms) first = ts_presence_stream_up(rt->index, n->id);
    }
    if (rv == APR_SUCCESS) ts_metrics_add(TS_MET_MAP_FULL, 1);
    apr_thread_mutex_unlock(rt->mu);
    if (first) ts_tailnet_publish_online(rt, n->id);      /* bumps */
    else if (bump) ts_notify_bump();
    if (rv == APR_SUCCESS && plan) {
        rv = ts_map_plan_encode(plan, sc->enc, &err);
        if (rv == APR_SUCCESS && !(frame = ts_map_plan_frame(plan, &flen))) {
            rv = APR_ENOMEM;
            err = "out of memory";
        }
    }
    else if (rv == APR_SUCCESS) {
        if (!(frame = malloc(ts_mapframe_bound(len, 0)))) {
            rv = APR_ENOMEM;
            err = "out of memory";
        }
        else {
            rv = ts_mapframe_encode_into(NULL, json, len, 0, frame, ts_mapframe_bound(len, 0),
                                         &flen, &err);
        }
    }
    if (rv != APR_SUCCESS) {
        free(frame);
        frame = NULL;
    }
    if (sc || ms || plan) {
        apr_thread_mutex_lock(rt->mu);
        if (plan && rv == APR_SUCCESS) ts_map_plan_install(rt->map, plan, apr_time_now());
        ts_tailnet_scratch_give(rt, sc);
        if (ms) ts_tailnet_stream_ready(rt, ms, frame, flen);
        apr_thread_mutex_unlock(rt->mu);
        if (ms) frame = NULL;       /* passed on (or freed) */
    }
    ts_map_plan_free(plan);
    if (rv == APR_SUCCESS && streaming && !ms) {
        task_text(t, 503, "server busy\n");
    }
    if (rv == APR_SUCCESS && !streaming) {
        ts_machine_post_response(t->mb, t->conn_id, t->stream_id, 200,
                                 "application/octet-stream", (const char *)frame, flen);
    }
    free(frame);
    if (rv == APR_EAGAIN) {
        task_text(t, 503, "no DERP map configured on this server (TS2021DERPMapFile)\n");
    }
    else if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, t->s, APLOGNO(11043)
                     "TS2021 map for node %" APR_INT64_T_FMT ": %s", n->id,
                     err ? err : "cannot build");
        task_text(t, 500, "cannot build the map\n");
    }
}

static void *APR_THREAD_FUNC run_map(apr_thread_t *thd, void *arg)
{
    machine_task *t = arg;
    json_t *j = json_loadb(t->body, t->len, 0, NULL);
    const char *bad;
    map_request m;
    apr_pool_t *p;
    apr_array_header_t *routes = NULL;
    ts_node_t *n;
    int bump = 0;

    (void)thd;
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    bad = j ? map_parse(j, &m) : "map request is not valid JSON";
    if (bad) {
        task_text(t, 400, apr_pstrcat(p, bad, "\n", NULL));
    }
    else if (m.version && m.version < t->rt->conf->min_capver) {
        task_text(t, 400, apr_psprintf(p, "unsupported client version %d (minimum %d)\n",
                                       m.version, t->rt->conf->min_capver));
    }
    else if (map_prepare(t, p, &m, &n, &routes, &bump)) {
        if (!m.stream && m.omit_peers) {
            task_answer(t, 200, "application/octet-stream", "");   /* lite update */
        }
        else if (ts_tailnet_ensure_loaded(t->rt, p) != APR_SUCCESS) {
            task_text(t, 503, "database unavailable\n");
        }
        else {
            apr_thread_mutex_lock(t->rt->mu);
            ts_map_node_upsert(t->rt->map, n, routes, p, &bad);
            apr_thread_mutex_unlock(t->rt->mu);
            /* Old clients' read-only first poll is answered as a one-shot (spec 2.2). */
            map_send_full(t, n, &m, m.stream && !m.read_only, bump);
            bump = 0;
        }
    }
    if (bump) ts_notify_bump();
    if (j) json_decref(j);
    apr_pool_destroy(p);
    task_free(t);
    return NULL;
}

/* ---- dispatch ---- */

static int machine_submit(ts_conn_ctx *ctx, const ts_conn_request_t *req, ts_tailnet_rt *rt,
                          void *(APR_THREAD_FUNC *fn)(apr_thread_t *, void *))
{
    machine_task *t = calloc(1, sizeof(*t));

    if (!t || !(t->body = malloc(req->body_len + 1))) {
        free(t);
        return 0;
    }
    memcpy(t->body, req->body, req->body_len);
    t->body[req->body_len] = '\0';
    t->len = req->body_len;
    t->rt = rt;
    t->mb = ctx->driver->mb;
    t->conn_id = ctx->id;
    t->stream_id = req->stream_id;
    t->s = ctx->s;
    apr_cpystrn(t->client_ip, ctx->client_ip ? ctx->client_ip : "", sizeof(t->client_ip));
    memcpy(t->machine_key, req->machine_key, sizeof(t->machine_key));
    t->version = req->version;
    ts_mailbox_ref(ctx->driver->mb);
    if (ts_router_submit(fn, t) != APR_SUCCESS) {
        ts_mailbox_unref(ctx->driver->mb);
        free(t->body);
        free(t);
        return 0;
    }
    return 1;
}

static void machine_text(const ts_conn_request_t *req, int status, const char *text)
{
    ts_conn_respond(req->conn, req->stream_id, status, "text/plain; charset=utf-8",
                    (const uint8_t *)text, strlen(text));
}

/* The calls clients make that this server does not implement, answered the way that
 * keeps them quiet (spec 4.1): never a 404 they would retry forever. */
static int machine_minor(const ts_conn_request_t *req)
{
    const char *path = req->path + strlen("/machine/");

    if (!strcmp(path, "update-health") || !strcmp(path, "audit-log")) {
        ts_conn_respond(req->conn, req->stream_id, 200, "application/json",
                        (const uint8_t *)"{}", 2);
        return 1;
    }
    if (!strcmp(path, "feature/query")) {
        static const char body[] = "{\"Complete\":false,\"Text\":\"not supported by this "
                                   "server\"}";
        ts_conn_respond(req->conn, req->stream_id, 200, "application/json",
                        (const uint8_t *)body, sizeof(body) - 1);
        return 1;
    }
    if (!strcmp(path, "set-dns") || !strcmp(path, "id-token")
        || !strcmp(path, "set-device-attr") || !strncmp(path, "tka/", 4)
        || !strncmp(path, "webclient/", 10)) {
        machine_text(req, 501, "not implemented by this server\n");
        return 1;
    }
    return 0;
}

int ts_machine_dispatch(ts_conn_ctx *ctx, const ts_conn_request_t *req)
{
    ts_tailnet_rt *rt;

    if (strncmp(req->path, "/machine/", 9)) return 0;
    if (machine_minor(req)) return 1;
    if (strcmp(req->path, "/machine/register") && strcmp(req->path, "/machine/map")) return 0;
    if (strcmp(req->method, "POST")) {
        machine_text(req, 405, "use POST\n");
        return 1;
    }
    /* Clients often send no type (spec 6.1); anything but JSON is a mistake. */
    if (req->content_type && strncasecmp(req->content_type, "application/json", 16)) {
        machine_text(req, 415, "the body must be JSON (application/json)\n");
        return 1;
    }
    if (!(rt = ts_tailnet_of(ctx->s))) {
        machine_text(req, 503, "tailnet not available in this process\n");
        return 1;
    }
    if (!machine_submit(ctx, req, rt, !strcmp(req->path, "/machine/register") ? run_register
                                                                                : run_map)) {
        machine_text(req, 503, "server busy\n");
    }
    return 1;
}
