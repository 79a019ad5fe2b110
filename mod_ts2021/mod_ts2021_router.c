/* mod_ts2021_router.c: routes the HTTP/2 requests of a Noise connection by path, inline
 * when trivial, on the child's worker pool when they may block (database, map building). */
#include "mod_ts2021.h"
#include "mod_ts2021_conn.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_machine.h"

#include <http_log.h>
#include <apr_strings.h>
#include <apr_thread_pool.h>
#include <stdlib.h>
#include <string.h>

APLOG_USE_MODULE(ts2021);

#define ROUTER_MIN_THREADS 2
#define ROUTER_MAX_THREADS 8
#define ROUTER_TEST_PREFIX "/ts2021-test/"

static apr_thread_pool_t *router_pool;

/* A request copied off its connection, for a worker; the answer rides back in it. */
typedef struct route_task {
    ts_mailbox_t *mb;               /* the owner's; a reference is held */
    uint64_t conn_id;
    int32_t stream_id;
    server_rec *s;
    void (*run)(struct route_task *t);
    uint8_t machine_key[32];
    uint16_t version;
    char *path;
    uint8_t *body;
    size_t body_len;
    int status;
    const char *content_type;
    uint8_t *out;
    size_t out_len;
} route_task;

static void task_free(route_task *t)
{
    free(t->path);
    free(t->body);
    free(t->out);
    free(t);
}

/* Owner thread: the worker's answer goes out if the connection is still there. */
static void task_done(void *owner_ctx, uint64_t conn_id, void *arg)
{
    route_task *t = arg;
    ts_driver_t *d = owner_ctx;
    ts_conn_t *conn = d ? d->lookup(d, conn_id) : NULL;

    if (conn) {
        ts_conn_respond(conn, t->stream_id, t->status, t->content_type, t->out, t->out_len);
        d->kick(d, conn_id);
    }
    task_free(t);
}

static void *APR_THREAD_FUNC task_thread(apr_thread_t *thd, void *arg)
{
    route_task *t = arg;
    ts_mailbox_t *mb = t->mb;

    (void)thd;
    t->run(t);
    if (ts_mailbox_post(mb, t->conn_id, task_done, t) != APR_SUCCESS) task_free(t);
    ts_mailbox_unref(mb);
    return NULL;
}

static void route_respond_text(const ts_conn_request_t *req, int status, const char *text)
{
    ts_conn_respond(req->conn, req->stream_id, status, "text/plain; charset=utf-8",
                    (const uint8_t *)text, strlen(text));
}

/* Hands req to the worker pool; the caller's run() fills status/content_type/out. */
static void route_to_worker(ts_conn_ctx *ctx, const ts_conn_request_t *req,
                            void (*run)(route_task *t))
{
    route_task *t = calloc(1, sizeof(*t));

    if (!t || !(t->path = strdup(req->path))
        || (req->body_len && !(t->body = malloc(req->body_len)))) {
        if (t) task_free(t);
        route_respond_text(req, 503, "server busy\n");
        return;
    }
    t->mb = ctx->driver->mb;
    t->conn_id = ctx->id;
    t->stream_id = req->stream_id;
    t->s = ctx->s;
    t->run = run;
    memcpy(t->machine_key, req->machine_key, sizeof(t->machine_key));
    t->version = req->version;
    if (req->body_len) memcpy(t->body, req->body, req->body_len);
    t->body_len = req->body_len;
    ts_mailbox_ref(ctx->driver->mb);
    if (!router_pool || apr_thread_pool_push(router_pool, task_thread, t, 0, NULL) != APR_SUCCESS) {
        ts_mailbox_unref(ctx->driver->mb);
        task_free(t);
        route_respond_text(req, 503, "server busy\n");
    }
}

/* GET /machine/whoami: the identity this connection proved (spec 6.2, debug helper). */
static void route_whoami(const ts_conn_request_t *req)
{
    char hex[65], body[160];
    int n;

    ts_hex_encode(hex, req->machine_key, 32);
    n = snprintf(body, sizeof(body), "{\"MachineKey\":\"mkey:%s\",\"Version\":%u}\n", hex,
                 (unsigned)req->version);
    ts_conn_respond(req->conn, req->stream_id, 200, "application/json", (const uint8_t *)body,
                    (size_t)n);
}

/* Test endpoint (TS2021TestEndpoints On): echoes the body back from a worker thread. */
static void run_echo(route_task *t)
{
    t->status = 200;
    t->content_type = "application/octet-stream";
    t->out = t->body;
    t->out_len = t->body_len;
    t->body = NULL;
}

/* Test endpoint: the database from a module thread (the worker), with a handle opened and
 * closed around this unit of work, as every long-lived thread must. */
static void run_db(route_task *t)
{
    apr_pool_t *p;
    ap_dbd_t *rec;
    ts_store_t *st;
    apr_int64_t g = 0;
    const char *err = NULL;
    char *body;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    st = ts_dbd_open(p, t->s, &rec);
    if (st && ts_store_generation(st, p, &g, &err) == APR_SUCCESS) {
        body = apr_psprintf(p, "{\"generation\":%" APR_INT64_T_FMT "}\n", g);
        t->status = 200;
    }
    else {
        body = apr_psprintf(p, "{\"error\":\"%s\"}\n", st ? "query failed" : "no database");
        t->status = 503;
    }
    if (st) ts_dbd_close(t->s, rec);
    t->content_type = "application/json";
    t->out_len = strlen(body);
    t->out = (uint8_t *)strdup(body);
    if (!t->out) {
        t->out_len = 0;
        t->status = 503;
    }
    apr_pool_destroy(p);
}

/* Test endpoint: a response that never ends: ?chunks=N&size=S queued at once, then
 * the stream stays open (flow control decides when the bytes go). */
static void route_stream(const ts_conn_request_t *req)
{
    const char *q = strchr(req->path, '?');
    long chunks = 4, size = 1024, i;
    uint8_t *buf;

    if (q) {
        const char *c = strstr(q, "chunks="), *z = strstr(q, "size=");
        if (c) chunks = strtol(c + 7, NULL, 10);
        if (z) size = strtol(z + 5, NULL, 10);
    }
    if (chunks < 0 || chunks > 4096 || size < 1 || size > (1 << 20)) {
        route_respond_text(req, 400, "chunks must be 0..4096 and size 1..1048576\n");
        return;
    }
    if (ts_conn_stream_start(req->conn, req->stream_id, 200, "application/octet-stream")
        != APR_SUCCESS || !(buf = malloc((size_t)size))) {
        return;
    }
    for (i = 0; i < chunks; i++) {
        memset(buf, 'a' + (int)(i % 26), (size_t)size);
        if (ts_conn_stream_write(req->conn, req->stream_id, buf, (size_t)size) != APR_SUCCESS) {
            break;
        }
    }
    free(buf);
}

static void router_dispatch(void *baton, const ts_conn_request_t *req)
{
    ts_conn_ctx *ctx = baton;
    ts_server_conf *conf = ts_conf(ctx->s);
    const char *path = req->path;

    if (!strcmp(path, "/machine/whoami")) {
        route_whoami(req);
        return;
    }
    if (ts_machine_dispatch(ctx, req)) return;
    if (conf->test_endpoints == 1 && !strncmp(path, ROUTER_TEST_PREFIX, strlen(ROUTER_TEST_PREFIX))) {
        path += strlen(ROUTER_TEST_PREFIX);
        if (!strcmp(path, "echo") && !strcmp(req->method, "POST")) {
            route_to_worker(ctx, req, run_echo);
            return;
        }
        if (!strcmp(path, "db")) {
            route_to_worker(ctx, req, run_db);
            return;
        }
        if (!strncmp(path, "stream", 6) && (path[6] == '\0' || path[6] == '?')) {
            route_stream(req);
            return;
        }
    }
    route_respond_text(req, 404, "not found\n");
}

static void router_stream_closed(void *baton, ts_conn_t *conn, int32_t stream_id)
{
    (void)conn;
    ts_tailnet_stream_closed(baton, stream_id);
}

void ts_router_env(ts_conn_env_t *env, ts_conn_ctx *ctx)
{
    memset(env, 0, sizeof(*env));
    env->dispatch = router_dispatch;
    env->stream_closed = router_stream_closed;
    env->baton = ctx;
}

apr_status_t ts_router_submit(void *(APR_THREAD_FUNC *fn)(apr_thread_t *, void *), void *arg)
{
    if (!router_pool) return APR_EGENERAL;
    return apr_thread_pool_push(router_pool, fn, arg, 0, NULL);
}

void ts_router_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv = apr_thread_pool_create(&router_pool, ROUTER_MIN_THREADS,
                                             ROUTER_MAX_THREADS, pchild);

    if (rv != APR_SUCCESS) {
        router_pool = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, APLOGNO(10950)
                     "TS2021: cannot start the request worker pool");
    }
}

void ts_router_child_exit(void)
{
    if (router_pool) {
        apr_thread_pool_destroy(router_pool);
        router_pool = NULL;
    }
}
