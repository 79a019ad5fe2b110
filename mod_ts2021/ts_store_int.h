/* ts_store_int.h: what the ts_store_*.c files share and nobody else sees: the store struct,
 * statement definitions, the query helpers and the write-transaction runner. */
#ifndef TS_STORE_INT_H
#define TS_STORE_INT_H

#include "ts_store.h"
#include <apr_hash.h>
#include <apr_strings.h>

/* One SQL statement in both dialects. Placeholders are apr_dbd's (%s, %d, %lld); statements
 * run through the binary calls (pbquery/pbselect), so an argument is a pointer to a char
 * string, int or apr_int64_t, and a NULL pointer binds SQL NULL. */
typedef struct ts_stmt_def_t {
    const char *name;     /* unique: the cache key and the name in messages and fault seams */
    const char *entity;   /* what the rows are, for messages: "user", "node" … */
    const char *sqlite;
    const char *mysql;    /* NULL: same text as sqlite */
} ts_stmt_def_t;

struct ts_store_t {
    apr_pool_t *pool;                 /* lives as long as the connection */
    const apr_dbd_driver_t *driver;
    apr_dbd_t *handle;
    int mysql;                        /* 1: mysql, 0: sqlite3 */
    int supported;                    /* 0: some other driver; every call fails */
    int session_ready;                /* per-connection settings applied */
    int owned;                        /* opened by ts_store_open */
    apr_hash_t *stmts;                /* name -> apr_dbd_prepared_t*, prepared once */
    const char *fault_stmt;           /* test seam */
    int fault_countdown;
    /* schema_apply's message: it may fail on every request of a long-lived connection, so
     * its message must not be allocated from the connection's pool each time */
    char schema_err[1024];
};

/* One attempt of a write transaction. */
typedef struct ts_store_tx_t {
    ts_store_t *st;
    apr_pool_t *p;           /* caller's pool: results and messages */
    apr_pool_t *scratch;     /* this attempt only */
    apr_int64_t generation;  /* the generation this transaction writes */
    apr_time_t now;
    const char *msg;         /* why it failed */
    int changes;             /* change_log rows appended */
} ts_store_tx_t;

typedef apr_status_t (*ts_store_tx_fn)(ts_store_tx_t *tx, void *baton);

/* Arguments: optional id/time as SQL NULL when 0. */
#define TS_OPT(x) ((x) ? (const void *)&(x) : NULL)

/* Rows come back as arrays of const char ** (one string per column, NULL for SQL NULL),
 * copied into the pool given. */
#define TS_ROW(arr, i) (APR_ARRAY_IDX((arr), (i), const char **))

apr_status_t ts_store__select(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                              const void **args, apr_array_header_t **rows, const char **err);
/* exactly one row expected: TS_STORE_ENOTFOUND ("not found") when there is none */
apr_status_t ts_store__select_one(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                                  const void **args, const char ***row, const char **err);
apr_status_t ts_store__tx_select(ts_store_tx_t *tx, const ts_stmt_def_t *def,
                                 const void **args, apr_array_header_t **rows);
apr_status_t ts_store__tx_exec(ts_store_tx_t *tx, const ts_stmt_def_t *def,
                               const void **args, int *nrows);
/* id of the row the last INSERT on this connection created */
apr_status_t ts_store__tx_last_id(ts_store_tx_t *tx, apr_int64_t *id);
/* records why the transaction fails; returns rv */
apr_status_t ts_store__tx_fail(ts_store_tx_t *tx, apr_status_t rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* locks the state row and takes the next generation (the first statement of every write) */
apr_status_t ts_store__tx_bump(ts_store_tx_t *tx);
/* appends one change_log row with this transaction's generation */
apr_status_t ts_store__tx_change(ts_store_tx_t *tx, const char *kind, apr_int64_t node_id,
                                 apr_int64_t user_id, const char *payload);

/* ENOTFOUND-free check used before writing a user_id: EREFERENCE naming the entity */
apr_status_t ts_store__tx_user_exists(ts_store_tx_t *tx, const char *entity,
                                      apr_int64_t user_id);
/* compact JSON text from a jansson json_pack format, copied into p (NULL if it fails) */
const char *ts_store__payload(apr_pool_t *p, const char *fmt, ...);

/* Runs fn inside a transaction that first takes the next generation, retrying the whole
 * transaction on lock contention. On failure *err is "<what>: <reason>" from p. */
apr_status_t ts_store__write(ts_store_t *st, apr_pool_t *p, const char *what,
                             ts_store_tx_fn fn, void *baton, const char **err);

/* A prepared statement outside any write transaction: for the schema code only, since it
 * neither bumps the generation nor logs a change. */
apr_status_t ts_store__exec_raw(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                                const void **args, const char **err);
/* Connection-level helpers for the schema code (no prepared statements there). */
apr_status_t ts_store__session_ready(ts_store_t *st, apr_pool_t *p, const char **err);
apr_status_t ts_store__query(ts_store_t *st, apr_pool_t *p, const char *sql, const char **err);
/* first column of the first row of an unprepared SELECT (drained); NULL value if no row */
apr_status_t ts_store__query_value(ts_store_t *st, apr_pool_t *p, const char *sql,
                                   const char **value, const char **err);
void ts_store__forget_statements(ts_store_t *st);
void ts_store__backoff(int attempt);

/* Column value helpers. Optional text is stored as NULL, never as "": an empty
 * provider_identifier or ipv4 must not collide with another one in a unique index. */
const char *ts_store__nz(const char *s);    /* "" -> NULL */
apr_int64_t ts_store__i64(const char *s);   /* NULL -> 0 */
int ts_store__int(const char *s);           /* NULL -> 0 */

/* Validation shared by the entity files; messages name entity and field. */
apr_status_t ts_store__check_text(apr_pool_t *p, const char **err, const char *entity,
                                  const char *field, const char *v, apr_size_t max,
                                  int required);
apr_status_t ts_store__check_json(apr_pool_t *p, const char **err, const char *entity,
                                  const char *field, const char *v, apr_size_t max,
                                  int want_array);
/* "<prefix><64 hex>" as ts_util prints keys (e.g. "nodekey:") */
apr_status_t ts_store__check_key(apr_pool_t *p, const char **err, const char *entity,
                                 const char *field, const char *v, const char *prefix,
                                 int required);

/* Largest JSON/text blobs: below the mysql driver's default 1 MB result buffer (fldsz),
 * because longer values would come back truncated. */
#define TS_STORE_BLOB_MAX 1000000
#define TS_STORE_TEXT_MAX 65535

#endif
