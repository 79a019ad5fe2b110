/* ts_store.c: connections (open/wrap/close), the per-connection prepared-statement cache,
 * query helpers, error classification and the retrying write-transaction runner. */
#include "ts_store_int.h"
#include "ts_util.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <jansson.h>

#define TS_STORE_USERDATA "ts_store:conn"
#define TS_WRITE_ATTEMPTS 8
#define TS_READ_ATTEMPTS 4
#define TS_PREPARE_ATTEMPTS 20

/* sqlite3 result codes the driver hands back unchanged */
#define TS_SQLITE_BUSY 5
#define TS_SQLITE_LOCKED 6
#define TS_SQLITE_SCHEMA 17
/* MySQL/MariaDB server error numbers */
#define TS_MY_DUP_ENTRY 1062
#define TS_MY_DUP_ENTRY_WITH_KEY 1586
#define TS_MY_LOCK_WAIT_TIMEOUT 1205
#define TS_MY_DEADLOCK 1213
#define TS_MY_ROW_IS_REFERENCED 1451
#define TS_MY_NO_REFERENCED_ROW 1452

static apr_status_t close_handle(void *data)
{
    ts_store_t *st = data;

    apr_dbd_close(st->driver, st->handle);
    return APR_SUCCESS;
}

static ts_store_t *store_new(apr_pool_t *pool, const apr_dbd_driver_t *driver,
                             apr_dbd_t *handle)
{
    ts_store_t *st = apr_pcalloc(pool, sizeof(*st));
    const char *name = apr_dbd_name(driver);

    st->pool = pool;
    st->driver = driver;
    st->handle = handle;
    st->mysql = strcmp(name, "mysql") == 0;
    st->supported = st->mysql || strcmp(name, "sqlite3") == 0;
    st->stmts = apr_hash_make(pool);
    return st;
}

apr_status_t ts_store_open(ts_store_t **stp, apr_pool_t *p, const char *driver_name,
                           const char *params, const char **err)
{
    const apr_dbd_driver_t *driver = NULL;
    apr_dbd_t *handle = NULL;
    const char *derr = NULL;
    apr_pool_t *cp;
    apr_status_t rv;

    *stp = NULL;
    apr_dbd_init(p);
    rv = apr_dbd_get_driver(p, driver_name, &driver);
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "cannot load the apr_dbd driver '%s' (is libaprutil1-dbd-%s "
                            "installed?): %pm", driver_name, driver_name, &rv);
        return rv;
    }
    apr_pool_create(&cp, p);
    rv = apr_dbd_open_ex(driver, cp, params, &handle, &derr);
    if (rv != APR_SUCCESS) {
        /* never echo params: they may hold a password */
        *err = apr_psprintf(p, "cannot open the %s database: %s", driver_name,
                            derr ? derr : "the driver gave no reason");
        apr_pool_destroy(cp);
        return TS_STORE_EDB;
    }
    *stp = store_new(cp, driver, handle);
    (*stp)->owned = 1;
    /* Registered before any statement is prepared on cp, so (cleanups run last-in first-out)
     * the mysql statements are closed before their connection. */
    apr_pool_cleanup_register(cp, *stp, close_handle, apr_pool_cleanup_null);
    if (!(*stp)->supported) {
        *err = apr_psprintf(p, "apr_dbd driver '%s' is not supported (use sqlite3 or mysql)",
                            driver_name);
        apr_pool_destroy(cp);
        *stp = NULL;
        return APR_ENOTIMPL;
    }
    return APR_SUCCESS;
}

void ts_store_close(ts_store_t *st)
{
    if (st && st->owned) {
        apr_pool_destroy(st->pool);
    }
}

ts_store_t *ts_store_wrap(apr_pool_t *conn_pool, const apr_dbd_driver_t *driver,
                          apr_dbd_t *handle)
{
    void *data = NULL;
    ts_store_t *st;

    apr_pool_userdata_get(&data, TS_STORE_USERDATA, conn_pool);
    st = data;
    if (st && st->handle == handle && st->driver == driver) {
        return st;
    }
    st = store_new(conn_pool, driver, handle);
    apr_pool_userdata_setn(st, TS_STORE_USERDATA, NULL, conn_pool);
    return st;
}

const char *ts_store_driver_name(const ts_store_t *st)
{
    return apr_dbd_name(st->driver);
}

void ts_store_test_fail_at(ts_store_t *st, const char *stmt_name, int nth)
{
    st->fault_stmt = stmt_name ? apr_pstrdup(st->pool, stmt_name) : NULL;
    st->fault_countdown = nth;
}

static int fault_fires(ts_store_t *st, const ts_stmt_def_t *def)
{
    if (!st->fault_stmt || strcmp(st->fault_stmt, def->name) != 0) {
        return 0;
    }
    if (--st->fault_countdown > 0) {
        return 0;
    }
    st->fault_stmt = NULL;
    return 1;
}

void ts_store__backoff(int attempt)
{
    static __thread unsigned int seed;
    apr_interval_time_t base;

    if (!seed) {
        seed = (unsigned int)apr_time_now() ^ ((unsigned int)getpid() << 16);
    }
    seed = seed * 1103515245u + 12345u;
    base = APR_TIME_C(10000) << (attempt < 5 ? attempt : 5);   /* 20 ms … 320 ms */
    /* jitter keeps processes that collided from colliding again in lockstep */
    apr_sleep(base + (apr_interval_time_t)((seed >> 8) % (unsigned int)base));
}

/* ---- error classification ---- */

typedef enum { ERR_OTHER, ERR_BUSY, ERR_REPREPARE, ERR_UNIQUE, ERR_REFERENCE } err_class_e;

static err_class_e classify(ts_store_t *st, int rv, const char *msg)
{
    msg = msg ? msg : "";
    if (st->mysql) {
        switch (rv) {
        case TS_MY_DEADLOCK:
        case TS_MY_LOCK_WAIT_TIMEOUT: return ERR_BUSY;
        case TS_MY_DUP_ENTRY:
        case TS_MY_DUP_ENTRY_WITH_KEY: return ERR_UNIQUE;
        case TS_MY_NO_REFERENCED_ROW:
        case TS_MY_ROW_IS_REFERENCED: return ERR_REFERENCE;
        default: return ERR_OTHER;
        }
    }
    /* The sqlite3 driver prepares with the legacy interface, so step() reports most failures
     * as plain SQLITE_ERROR: the message is what tells them apart. */
    if (rv == TS_SQLITE_BUSY || rv == TS_SQLITE_LOCKED || strstr(msg, "database is locked")
        || strstr(msg, "database table is locked")) {
        return ERR_BUSY;
    }
    if (rv == TS_SQLITE_SCHEMA || strstr(msg, "schema has changed")) {
        return ERR_REPREPARE;
    }
    if (strncmp(msg, "UNIQUE constraint failed", 24) == 0) {
        return ERR_UNIQUE;
    }
    if (strncmp(msg, "FOREIGN KEY constraint failed", 29) == 0) {
        return ERR_REFERENCE;
    }
    return ERR_OTHER;
}

/* Which column a uniqueness violation is about, from the driver's message:
 * sqlite "UNIQUE constraint failed: nodes.given_name[, …]"; MariaDB "Duplicate entry 'x' for
 * key 'given_name'" (our MySQL unique keys are named after their column; MySQL 8 prefixes
 * the table). */
static const char *unique_field(ts_store_t *st, apr_pool_t *p, const char *msg)
{
    const char *s, *e, *dot;

    if (!st->mysql) {
        s = strchr(msg, ':');
        if (!s) {
            return "a unique field";
        }
        s++;
        while (*s == ' ') {
            s++;
        }
        e = s + strcspn(s, ",");
        dot = memchr(s, '.', (apr_size_t)(e - s));
        return apr_pstrmemdup(p, dot ? dot + 1 : s, (apr_size_t)(e - (dot ? dot + 1 : s)));
    }
    s = strstr(msg, "for key '");
    if (!s) {
        return "a unique field";
    }
    s += 9;
    e = strchr(s, '\'');
    if (!e) {
        return "a unique field";
    }
    dot = memchr(s, '.', (apr_size_t)(e - s));
    if (dot) {
        s = dot + 1;
    }
    if (e - s == 7 && strncmp(s, "PRIMARY", 7) == 0) {
        return "primary key";
    }
    return apr_pstrmemdup(p, s, (apr_size_t)(e - s));
}

static void (*store_error_hook)(void);

void ts_store_set_error_hook(void (*fn)(void))
{
    store_error_hook = fn;
}

/* Turns a driver failure into a status and a message from p. */
static apr_status_t db_error(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                             int rv, const char **msg)
{
    const char *dmsg = apr_dbd_error(st->driver, st->handle, rv);
    const char *entity = def ? def->entity : "database";

    dmsg = apr_pstrdup(p, dmsg ? dmsg : "unknown error");
    switch (classify(st, rv, dmsg)) {
    case ERR_UNIQUE:
        *msg = apr_psprintf(p, "%s %s already exists (%s)", entity,
                            unique_field(st, p, dmsg), dmsg);
        return TS_STORE_ECONFLICT;
    case ERR_REFERENCE:
        *msg = apr_psprintf(p, "%s refers to a row that does not exist, or is still "
                            "referenced (%s)", entity, dmsg);
        return TS_STORE_EREFERENCE;
    case ERR_BUSY:
    case ERR_REPREPARE:
        *msg = apr_psprintf(p, "database busy (%s, code %d)", dmsg, rv);
        return TS_STORE_EBUSY;
    default:
        if (store_error_hook) store_error_hook();
        *msg = apr_psprintf(p, "%s: statement %s failed: %s (code %d)", entity,
                            def ? def->name : "(direct)", dmsg, rv);
        return TS_STORE_EDB;
    }
}

static int needs_reprepare(ts_store_t *st, int rv)
{
    return !st->mysql
        && classify(st, rv, apr_dbd_error(st->driver, st->handle, rv)) == ERR_REPREPARE;
}

void ts_store__forget_statements(ts_store_t *st)
{
    /* sqlite keeps the old statements linked to the handle and finalizes them on close,
     * so dropping our references is enough; this only happens after a schema change. */
    apr_hash_clear(st->stmts);
}

/* ---- per-connection session and statements ---- */

/* The sqlite3 driver compiles with the legacy interface, which does not recompile a
 * statement when another process changed the schema since this connection last read it:
 * the statement fails once with "schema has changed", and running it again works. */
#define TS_SCHEMA_RETRIES 3

apr_status_t ts_store__query(ts_store_t *st, apr_pool_t *p, const char *sql, const char **err)
{
    int nrows = 0, attempt, rv = 0;

    for (attempt = 0; attempt < TS_SCHEMA_RETRIES; attempt++) {
        rv = apr_dbd_query(st->driver, st->handle, &nrows, sql);
        if (rv == 0) {
            return APR_SUCCESS;
        }
        if (!needs_reprepare(st, rv)) {
            break;
        }
    }
    return db_error(st, p, NULL, rv, err);
}

apr_status_t ts_store__query_value(ts_store_t *st, apr_pool_t *p, const char *sql,
                                   const char **value, const char **err)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    apr_pool_t *qp;
    int rv = 0, attempt;

    *value = NULL;
    apr_pool_create(&qp, p);
    for (attempt = 0; attempt < TS_SCHEMA_RETRIES; attempt++) {
        res = NULL;
        rv = apr_dbd_select(st->driver, qp, st->handle, &res, sql, 0);
        if (rv == 0 || !needs_reprepare(st, rv)) {
            break;
        }
    }
    if (rv != 0) {
        apr_status_t s = db_error(st, p, NULL, rv, err);
        apr_pool_destroy(qp);
        return s;
    }
    /* a streamed mysql result must be read to the end before the next query */
    while (res && apr_dbd_get_row(st->driver, qp, res, &row, -1) == 0) {
        const char *v = apr_dbd_get_entry(st->driver, row, 0);
        if (!*value && v) {
            *value = apr_pstrdup(p, v);
        }
    }
    apr_pool_destroy(qp);
    return APR_SUCCESS;
}

/* Settings that belong to the connection, applied once before its first use by us. */
apr_status_t ts_store__session_ready(ts_store_t *st, apr_pool_t *p, const char **err)
{
    apr_status_t rv;

    if (!st->supported) {
        *err = apr_psprintf(p, "apr_dbd driver '%s' is not supported (use sqlite3 or mysql)",
                            apr_dbd_name(st->driver));
        return APR_ENOTIMPL;
    }
    if (st->session_ready) {
        return APR_SUCCESS;
    }
    if (st->mysql) {
        /* The driver has no charset option, and a server-side sql_mode such as ANSI_QUOTES
         * would change what our SQL means; with reconnect=0 these stick to the session. */
        rv = ts_store__query(st, p, "SET NAMES utf8mb4", err);
        if (rv == APR_SUCCESS) {
            rv = ts_store__query(st, p, "SET SESSION sql_mode = 'STRICT_ALL_TABLES,"
                                 "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'", err);
        }
    }
    else {
        /* sqlite enforces foreign keys (ON DELETE CASCADE/SET NULL) only when asked, per
         * connection. No busy_timeout on purpose: sqlite would sleep holding apr_dbd's global
         * mutex and stall every other thread's queries; the driver's own retries unlock it. */
        rv = ts_store__query(st, p, "PRAGMA foreign_keys = ON", err);
    }
    if (rv == APR_SUCCESS) {
        st->session_ready = 1;
    }
    else {
        *err = apr_psprintf(p, "setting up the database session: %s", *err);
    }
    return rv;
}

static apr_status_t prepared(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                             apr_dbd_prepared_t **stmt, const char **err)
{
    const char *sql = (st->mysql && def->mysql) ? def->mysql : def->sqlite;
    apr_status_t rv;
    int attempt, drv;

    *stmt = apr_hash_get(st->stmts, def->name, APR_HASH_KEY_STRING);
    if (*stmt) {
        return APR_SUCCESS;
    }
    rv = ts_store__session_ready(st, p, err);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* Prepared with the connection's pool: the mysql driver ties each statement's lifetime
     * to that pool. sqlite's prepare is not retried by the driver when the file is locked. */
    for (attempt = 1;; attempt++) {
        *stmt = NULL;
        drv = apr_dbd_prepare(st->driver, st->pool, st->handle, sql, def->name, stmt);
        if (drv == 0) {
            break;
        }
        rv = db_error(st, p, def, drv, err);
        if (rv != TS_STORE_EBUSY || attempt >= TS_PREPARE_ATTEMPTS) {
            *err = apr_psprintf(p, "preparing statement %s: %s", def->name, *err);
            return rv;
        }
        ts_store__backoff(attempt);
    }
    apr_hash_set(st->stmts, def->name, APR_HASH_KEY_STRING, *stmt);
    return APR_SUCCESS;
}

/* Copies every row of a result into p, reading to the end (the portable loop: rownum -1
 * until the driver says -1). */
static apr_status_t fetch_all(ts_store_t *st, apr_pool_t *qp, apr_pool_t *p,
                              const ts_stmt_def_t *def, apr_dbd_results_t *res,
                              apr_array_header_t **rows, const char **err)
{
    apr_dbd_row_t *row = NULL;
    int ncols = apr_dbd_num_cols(st->driver, res);
    int rv, i;

    *rows = apr_array_make(p, 4, sizeof(const char **));
    while ((rv = apr_dbd_get_row(st->driver, qp, res, &row, -1)) == 0) {
        const char **vals = apr_pcalloc(p, sizeof(*vals) * (apr_size_t)(ncols + 1));
        for (i = 0; i < ncols; i++) {
            /* mysql returns its bind buffer, overwritten by the next row: copy now */
            const char *v = apr_dbd_get_entry(st->driver, row, i);
            vals[i] = v ? apr_pstrdup(p, v) : NULL;
        }
        APR_ARRAY_PUSH(*rows, const char **) = vals;
    }
    if (rv != -1) {
        return db_error(st, p, def, rv, err);
    }
    return APR_SUCCESS;
}

/* One execution of a prepared statement; rows == NULL for statements without a result. */
static apr_status_t run_stmt(ts_store_t *st, apr_pool_t *p, apr_pool_t *scratch,
                             const ts_stmt_def_t *def, const void **args,
                             apr_array_header_t **rows, int *nrows, const char **err)
{
    apr_dbd_prepared_t *stmt;
    apr_dbd_results_t *res = NULL;
    apr_pool_t *qp;
    apr_status_t rv;
    int drv, n = 0;

    if (fault_fires(st, def)) {
        *err = apr_psprintf(p, "injected fault at statement %s", def->name);
        return TS_STORE_EFAULT;
    }
    rv = prepared(st, p, def, &stmt, err);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* results in a short-lived pool: mysql allocates a buffer per column up to fldsz */
    apr_pool_create(&qp, scratch);
    if (rows) {
        drv = apr_dbd_pbselect(st->driver, qp, st->handle, &res, stmt, 0, args);
        rv = drv ? db_error(st, p, def, drv, err) : fetch_all(st, qp, p, def, res, rows, err);
    }
    else {
        drv = apr_dbd_pbquery(st->driver, qp, st->handle, &n, stmt, args);
        rv = drv ? db_error(st, p, def, drv, err) : APR_SUCCESS;
    }
    if (drv && needs_reprepare(st, drv)) {
        ts_store__forget_statements(st);
    }
    apr_pool_destroy(qp);
    if (nrows) {
        *nrows = n;
    }
    return rv;
}

apr_status_t ts_store__select(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                              const void **args, apr_array_header_t **rows, const char **err)
{
    apr_status_t rv;
    int attempt;

    for (attempt = 1;; attempt++) {
        rv = run_stmt(st, p, p, def, args, rows, NULL, err);
        if (rv != TS_STORE_EBUSY || attempt >= TS_READ_ATTEMPTS) {
            return rv;
        }
        ts_store__backoff(attempt);
    }
}

apr_status_t ts_store__tx_select(ts_store_tx_t *tx, const ts_stmt_def_t *def,
                                 const void **args, apr_array_header_t **rows)
{
    return run_stmt(tx->st, tx->p, tx->scratch, def, args, rows, NULL, &tx->msg);
}

apr_status_t ts_store__tx_exec(ts_store_tx_t *tx, const ts_stmt_def_t *def,
                               const void **args, int *nrows)
{
    return run_stmt(tx->st, tx->p, tx->scratch, def, args, NULL, nrows, &tx->msg);
}

apr_status_t ts_store__tx_fail(ts_store_tx_t *tx, apr_status_t rv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tx->msg = apr_pvsprintf(tx->p, fmt, ap);
    va_end(ap);
    return rv;
}

static const ts_stmt_def_t SQL_LAST_ID = {
    "last_insert_id", "row",
    "SELECT last_insert_rowid()",
    "SELECT LAST_INSERT_ID()"
};

apr_status_t ts_store__tx_last_id(ts_store_tx_t *tx, apr_int64_t *id)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__tx_select(tx, &SQL_LAST_ID, NULL, &rows);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    *id = rows->nelts ? ts_store__i64(TS_ROW(rows, 0)[0]) : 0;
    if (*id <= 0) {
        return ts_store__tx_fail(tx, TS_STORE_EDB, "the database returned no id for the new row");
    }
    return APR_SUCCESS;
}

/* ---- write transactions ---- */

/* Ends the transaction; a failed COMMIT leaves sqlite's transaction open, so it is rolled
 * back by hand rather than handed back to a pooled connection half-done. */
static apr_status_t tx_end(ts_store_tx_t *tx, apr_dbd_transaction_t *trans, apr_status_t rv)
{
    ts_store_t *st = tx->st;
    int nrows, drv;

    if (rv != APR_SUCCESS) {
        apr_dbd_transaction_mode_set(st->driver, trans, APR_DBD_TRANSACTION_ROLLBACK);
    }
    drv = apr_dbd_transaction_end(st->driver, tx->scratch, trans);
    if (rv == APR_SUCCESS && drv != 0) {
        rv = db_error(st, tx->p, NULL, drv, &tx->msg);
        tx->msg = apr_psprintf(tx->p, "commit failed: %s", tx->msg);
        if (!st->mysql) {
            (void)apr_dbd_query(st->driver, st->handle, &nrows, "ROLLBACK");
        }
    }
    return rv;
}

static apr_status_t tx_attempt(ts_store_t *st, apr_pool_t *p, ts_store_tx_fn fn, void *baton,
                               const char **msg)
{
    ts_store_tx_t tx;
    apr_dbd_transaction_t *trans = NULL;
    apr_status_t rv;
    int drv;

    memset(&tx, 0, sizeof(tx));
    tx.st = st;
    tx.p = p;
    tx.now = apr_time_now();
    rv = ts_store__session_ready(st, p, &tx.msg);
    if (rv != APR_SUCCESS) {
        *msg = tx.msg;
        return rv;
    }
    apr_pool_create(&tx.scratch, p);
    /* sqlite: BEGIN IMMEDIATE, so writers queue here rather than deadlock on upgrade */
    drv = apr_dbd_transaction_start(st->driver, tx.scratch, st->handle, &trans);
    if (drv != 0) {
        rv = db_error(st, p, NULL, drv, &tx.msg);
    }
    else {
        rv = ts_store__tx_bump(&tx);
        if (rv == APR_SUCCESS) {
            rv = fn(&tx, baton);
        }
        if (rv == APR_SUCCESS && tx.changes == 0) {
            rv = ts_store__tx_fail(&tx, TS_STORE_EDB, "internal error: a write without a "
                                   "change_log row");
        }
    }
    if (trans) {
        rv = tx_end(&tx, trans, rv);
    }
    apr_pool_destroy(tx.scratch);
    *msg = tx.msg;
    return rv;
}

apr_status_t ts_store__write(ts_store_t *st, apr_pool_t *p, const char *what,
                             ts_store_tx_fn fn, void *baton, const char **err)
{
    const char *msg = NULL;
    apr_status_t rv;
    int attempt;

    for (attempt = 1;; attempt++) {
        rv = tx_attempt(st, p, fn, baton, &msg);
        if (rv != TS_STORE_EBUSY || attempt >= TS_WRITE_ATTEMPTS) {
            break;
        }
        ts_store__backoff(attempt);
    }
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "%s: %s%s", what, msg ? msg : "failed",
                            rv == TS_STORE_EBUSY ? " (gave up after retries)" : "");
    }
    return rv;
}

/* ---- values and validation ---- */

apr_int64_t ts_store__i64(const char *s)
{
    return s ? apr_atoi64(s) : 0;
}

int ts_store__int(const char *s)
{
    return s ? atoi(s) : 0;
}

apr_status_t ts_store__check_text(apr_pool_t *p, const char **err, const char *entity,
                                  const char *field, const char *v, apr_size_t max,
                                  int required)
{
    if (!v || !*v) {
        if (required) {
            *err = apr_psprintf(p, "%s: %s is required", entity, field);
            return APR_EINVAL;
        }
        return APR_SUCCESS;
    }
    /* the same limit on both drivers: MySQL's column size, which sqlite would not enforce */
    if (strlen(v) > max) {
        *err = apr_psprintf(p, "%s: %s is longer than %" APR_SIZE_T_FMT " bytes", entity,
                            field, max);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

apr_status_t ts_store__check_json(apr_pool_t *p, const char **err, const char *entity,
                                  const char *field, const char *v, apr_size_t max,
                                  int want_array)
{
    json_error_t jerr;
    json_t *j;
    apr_status_t rv = ts_store__check_text(p, err, entity, field, v, max, 0);

    if (rv != APR_SUCCESS || !v || !*v) {
        return rv;
    }
    /* checked here so that every reader of the column can trust it to parse */
    j = json_loads(v, JSON_DECODE_ANY, &jerr);
    if (!j) {
        *err = apr_psprintf(p, "%s: %s is not valid JSON: %s (at %d:%d)", entity, field,
                            jerr.text, jerr.line, jerr.column);
        return APR_EINVAL;
    }
    if (want_array ? !json_is_array(j) : !json_is_object(j)) {
        *err = apr_psprintf(p, "%s: %s must be a JSON %s", entity, field,
                            want_array ? "array" : "object");
        rv = APR_EINVAL;
    }
    json_decref(j);
    return rv;
}

apr_status_t ts_store__exec_raw(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                                const void **args, const char **err)
{
    return run_stmt(st, p, p, def, args, NULL, NULL, err);
}

apr_status_t ts_store__select_one(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                                  const void **args, const char ***row, const char **err)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__select(st, p, def, args, &rows, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (rows->nelts == 0) {
        *err = "not found";
        return TS_STORE_ENOTFOUND;
    }
    *row = TS_ROW(rows, 0);
    return APR_SUCCESS;
}

const char *ts_store__nz(const char *s)
{
    return (s && *s) ? s : NULL;
}

const char *ts_store__payload(apr_pool_t *p, const char *fmt, ...)
{
    json_error_t jerr;
    const char *out = NULL;
    va_list ap;
    json_t *j;
    char *s;

    va_start(ap, fmt);
    j = json_vpack_ex(&jerr, 0, fmt, ap);
    va_end(ap);
    if (!j) {
        return NULL;
    }
    s = json_dumps(j, JSON_COMPACT);
    if (s) {
        out = apr_pstrdup(p, s);
        free(s);
    }
    json_decref(j);
    return out;
}

apr_status_t ts_store__check_key(apr_pool_t *p, const char **err, const char *entity,
                                 const char *field, const char *v, const char *prefix,
                                 int required)
{
    uint8_t key[TS_KEY_LEN];

    if (!v || !*v) {
        return ts_store__check_text(p, err, entity, field, v, 0, required);
    }
    /* one spelling per key, or the unique index on it would not catch a duplicate */
    if (ts_key_parse(key, prefix, v) != 0 || strncmp(v, prefix, strlen(prefix)) != 0
        || strspn(v + strlen(prefix), "0123456789abcdef") != 2 * TS_KEY_LEN) {
        *err = apr_psprintf(p, "%s: %s must be '%s' and 64 lower-case hex digits", entity,
                            field, prefix);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}
