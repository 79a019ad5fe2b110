/* mod_ts2021_dbd.c: the module's access to mod_dbd. Requests borrow a handle with
 * ap_dbd_acquire; module threads open and close one per unit of work. */
#include "mod_ts2021.h"
#include "mod_ts2021_dbd.h"
#include "mod_ts2021_metrics.h"

#include <http_log.h>
#include <apr_optional.h>
#include <apr_strings.h>

APLOG_USE_MODULE(ts2021);

static APR_OPTIONAL_FN_TYPE(ap_dbd_open) *dbd_open_fn;
static APR_OPTIONAL_FN_TYPE(ap_dbd_close) *dbd_close_fn;
static APR_OPTIONAL_FN_TYPE(ap_dbd_acquire) *dbd_acquire_fn;

/* Per-child: whether the schema was found or made current for this vhost. Set once,
 * read by many threads; a lost race only repeats an idempotent check. */
struct ts_dbd_state {
    volatile int schema_ok;
};

static void dbd_retrieve(void)
{
    dbd_open_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
    dbd_close_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    dbd_acquire_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_acquire);
}

/* mod_dbd keeps its configuration private; look for DBDriver in the parsed tree so
 * `apache2 -t` can say what is missing instead of failing at the first request. */
static int dbd_tree_has_driver(const ap_directive_t *d)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "DBDriver")) return 1;
        if (d->first_child && dbd_tree_has_driver(d->first_child)) return 1;
    }
    return 0;
}

int ts_dbd_check_config(apr_pool_t *pconf, server_rec *s)
{
    server_rec *v;
    int any = 0;

    (void)pconf;
    for (v = s; v; v = v->next) any |= (ts_conf(v)->enabled == 1);
    if (!any) return OK;
    dbd_retrieve();
    if (!dbd_open_fn || !dbd_close_fn || !dbd_acquire_fn) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(10920)
                     "TS2021 On needs mod_dbd: enable it (a2enmod dbd, or "
                     "LoadModule dbd_module .../mod_dbd.so) and set DBDriver/DBDParams");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!dbd_tree_has_driver(ap_conftree)) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(10921)
                     "TS2021 On needs a database: add DBDriver sqlite3 (or mysql) and "
                     "DBDParams to the server or virtual host configuration");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

int ts_dbd_post_config(apr_pool_t *pconf, server_rec *s)
{
    dbd_retrieve();
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        if (conf->enabled == 1) conf->dbd = apr_pcalloc(pconf, sizeof(*conf->dbd));
    }
    return OK;
}

static apr_status_t dbd_ensure_schema(server_rec *s, ts_store_t *st)
{
    ts_server_conf *conf = ts_conf(s);
    const char *err = NULL;
    apr_status_t rv;

    if (conf->dbd->schema_ok) return APR_SUCCESS;
    rv = ts_store_schema_apply(st, &err);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, APLOGNO(10922)
                     "TS2021: database schema not usable: %s", err ? err : "unknown error");
        return rv;
    }
    conf->dbd->schema_ok = 1;
    return APR_SUCCESS;
}

ts_store_t *ts_dbd_acquire(request_rec *r)
{
    ap_dbd_t *rec = dbd_acquire_fn ? dbd_acquire_fn(r) : NULL;
    ts_store_t *st;

    if (!rec) {
        ts_metrics_add(TS_MET_DB_ERRORS, 1);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(10923)
                      "TS2021: no database connection (check DBDriver/DBDParams)");
        return NULL;
    }
    st = ts_store_wrap(rec->pool, rec->driver, rec->handle);
    if (!st || dbd_ensure_schema(r->server, st) != APR_SUCCESS) return NULL;
    return st;
}

ts_store_t *ts_dbd_open(apr_pool_t *p, server_rec *s, ap_dbd_t **rec)
{
    ts_store_t *st;

    *rec = dbd_open_fn ? dbd_open_fn(p, s) : NULL;
    if (!*rec) {
        /* mod_dbd drops a handle that failed its check and does not retry: we do, once. */
        *rec = dbd_open_fn ? dbd_open_fn(p, s) : NULL;
    }
    if (!*rec) {
        ts_metrics_add(TS_MET_DB_ERRORS, 1);
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, APLOGNO(10924)
                     "TS2021: no database connection (check DBDriver/DBDParams)");
        return NULL;
    }
    st = ts_store_wrap((*rec)->pool, (*rec)->driver, (*rec)->handle);
    if (!st || dbd_ensure_schema(s, st) != APR_SUCCESS) {
        ts_dbd_close(s, *rec);
        *rec = NULL;
        return NULL;
    }
    return st;
}

void ts_dbd_close(server_rec *s, ap_dbd_t *rec)
{
    if (rec && dbd_close_fn) dbd_close_fn(s, rec);
}

/* Brings the schema up as soon as the child has its database pool, so the first
 * client does not pay for it and a broken database shows in the error log at once. */
void ts_dbd_child_init(apr_pool_t *pchild, server_rec *s)
{
    for (; s; s = s->next) {
        ts_server_conf *conf = ts_conf(s);
        apr_pool_t *p;
        ap_dbd_t *rec;

        if (conf->enabled != 1 || !conf->dbd || conf->dbd->schema_ok) continue;
        apr_pool_create(&p, pchild);
        if (ts_dbd_open(p, s, &rec)) ts_dbd_close(s, rec);
        apr_pool_destroy(p);
    }
}
