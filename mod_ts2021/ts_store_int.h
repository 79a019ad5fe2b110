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

/* ---- a node's unique values, chosen inside its write transaction (ts_store_nodes.c) ----
 * Writers are serialised by the generation lock, so a value these lookups find free stays
 * free until the transaction commits; the unique indexes remain the final judge. */

/* Called inside ts_store__node_create_with's transaction, before the insert, to set
 * n->ipv4, ipv6 and given_name (from tx->p); a failure other than APR_SUCCESS aborts it. */
typedef apr_status_t (*ts_store_node_fill_fn)(ts_store_tx_t *tx, ts_node_t *n, void *baton);

/* ts_store_node_create, with the unique fields filled in by fill (NULL: as given). */
apr_status_t ts_store__node_create_with(ts_store_t *st, apr_pool_t *p, ts_node_t *n,
                                        const apr_array_header_t *routes,
                                        ts_store_node_fill_fn fill, void *baton,
                                        const char **err);
/* The node with this given_name, 0 if none (the unique index). */
apr_status_t ts_store__tx_name_owner(ts_store_tx_t *tx, const char *name, apr_int64_t *id);
/* The given_names (const char *) that start with prefix, but self_id's: one index range. */
apr_status_t ts_store__tx_names_with_prefix(ts_store_tx_t *tx, const char *prefix,
                                            apr_int64_t self_id, apr_array_header_t **names);
/* 1 in *used if a node has ip as its address of family 4 or 6 (the unique index). */
apr_status_t ts_store__tx_ip_used(ts_store_tx_t *tx, int family, const char *ip, int *used);
/* Every address of family 4 or 6 in use (const char *): for a prefix crowded after the
 * cursor only, since it reads one column of every node. */
apr_status_t ts_store__tx_ips(ts_store_tx_t *tx, int family, apr_array_header_t **ips);
/* The last address handed out in prefix (NULL: none recorded) and recording it. */
apr_status_t ts_store__tx_ip_cursor_get(ts_store_tx_t *tx, const char *prefix,
                                        const char **last);
apr_status_t ts_store__tx_ip_cursor_set(ts_store_tx_t *tx, const char *prefix,
                                        const char *last);

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
