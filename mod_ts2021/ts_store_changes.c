/* ts_store_changes.c: the generation counter (single ts_state row) and the change_log feed:
 * taking the next generation inside each write, appending changes, reading and pruning them. */
#include "ts_store_int.h"

/* MySQL: the row lock makes writers take generations one at a time and commit in that order,
 * so a reader that sees generation G sees every change <= G. sqlite's BEGIN IMMEDIATE
 * already serializes writers, and it has no FOR UPDATE. */
static const ts_stmt_def_t SQL_STATE_LOCK = {
    "state_lock", "state",
    "SELECT generation FROM ts_state WHERE id = 1",
    "SELECT generation FROM ts_state WHERE id = 1 FOR UPDATE"
};
static const ts_stmt_def_t SQL_STATE_SET = {
    "state_set_generation", "state",
    "UPDATE ts_state SET generation = %lld WHERE id = 1", NULL
};
static const ts_stmt_def_t SQL_STATE_GET = {
    "state_get", "state",
    "SELECT generation, pruned_through FROM ts_state WHERE id = 1", NULL
};
static const ts_stmt_def_t SQL_CHANGE_INSERT = {
    "change_insert", "change",
    "INSERT INTO change_log (generation, created_at, kind, node_id, user_id, payload) "
    "VALUES (%lld, %lld, %s, %lld, %lld, %s)", NULL
};
static const ts_stmt_def_t SQL_CHANGE_RANGE = {
    "change_range", "change",
    "SELECT id, generation, created_at, kind, node_id, user_id, payload FROM change_log "
    "WHERE generation > %lld AND generation <= %lld ORDER BY generation, id", NULL
};
static const ts_stmt_def_t SQL_CHANGE_PRUNE_MAX = {
    "change_prune_max", "change",
    "SELECT MAX(generation) FROM change_log WHERE created_at < %lld", NULL
};
static const ts_stmt_def_t SQL_CHANGE_PRUNE = {
    "change_prune", "change",
    "DELETE FROM change_log WHERE generation <= %lld", NULL
};
static const ts_stmt_def_t SQL_STATE_PRUNED = {
    "state_set_pruned", "state",
    "UPDATE ts_state SET pruned_through = %lld WHERE id = 1 AND pruned_through < %lld", NULL
};

apr_status_t ts_store__tx_bump(ts_store_tx_t *tx)
{
    apr_array_header_t *rows;
    apr_int64_t next;
    const void *args[1];
    apr_status_t rv;

    rv = ts_store__tx_select(tx, &SQL_STATE_LOCK, NULL, &rows);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (rows->nelts != 1) {
        return ts_store__tx_fail(tx, TS_STORE_ESCHEMA, "the ts_state row is missing "
                                 "(was the schema applied?)");
    }
    next = ts_store__i64(TS_ROW(rows, 0)[0]) + 1;
    args[0] = &next;
    rv = ts_store__tx_exec(tx, &SQL_STATE_SET, args, NULL);
    if (rv == APR_SUCCESS) {
        tx->generation = next;
    }
    return rv;
}

apr_status_t ts_store__tx_change(ts_store_tx_t *tx, const char *kind, apr_int64_t node_id,
                                 apr_int64_t user_id, const char *payload)
{
    const void *args[] = { &tx->generation, &tx->now, kind, TS_OPT(node_id),
                           TS_OPT(user_id), payload };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_CHANGE_INSERT, args, NULL);

    if (rv == APR_SUCCESS) {
        tx->changes++;
    }
    return rv;
}

static apr_status_t read_state(ts_store_t *st, apr_pool_t *p, apr_int64_t *generation,
                               apr_int64_t *pruned, const char **err)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__select(st, p, &SQL_STATE_GET, NULL, &rows, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (rows->nelts != 1) {
        *err = "the ts_state row is missing (was the schema applied?)";
        return TS_STORE_ESCHEMA;
    }
    *generation = ts_store__i64(TS_ROW(rows, 0)[0]);
    if (pruned) {
        *pruned = ts_store__i64(TS_ROW(rows, 0)[1]);
    }
    return APR_SUCCESS;
}

apr_status_t ts_store_generation(ts_store_t *st, apr_pool_t *p, apr_int64_t *generation,
                                 const char **err)
{
    apr_status_t rv = read_state(st, p, generation, NULL, err);

    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "reading the generation: %s", *err);
    }
    return rv;
}

static ts_change_t *change_from_row(apr_pool_t *p, const char **r)
{
    ts_change_t *c = apr_pcalloc(p, sizeof(*c));

    c->id = ts_store__i64(r[0]);
    c->generation = ts_store__i64(r[1]);
    c->created_at = ts_store__i64(r[2]);
    c->kind = r[3];
    c->node_id = ts_store__i64(r[4]);
    c->user_id = ts_store__i64(r[5]);
    c->payload = r[6];
    return c;
}

apr_status_t ts_store_changes_since(ts_store_t *st, apr_pool_t *p, apr_int64_t since,
                                    int max_generations, apr_array_header_t **changes,
                                    apr_int64_t *through, const char **err)
{
    apr_array_header_t *rows;
    apr_int64_t current = 0, pruned = 0, upto;
    const void *args[2];
    apr_status_t rv;
    int i;

    *changes = apr_array_make(p, 0, sizeof(ts_change_t *));
    *through = since;
    /* The state row first: every generation up to the one read is committed, so reading
     * the rows after it cannot miss one that commits late. */
    rv = read_state(st, p, &current, &pruned, err);
    if (rv == APR_SUCCESS && (since < pruned || since > current)) {
        *err = apr_psprintf(p, "generation %" APR_INT64_T_FMT " is %s (current %"
                            APR_INT64_T_FMT ", pruned through %" APR_INT64_T_FMT
                            "): reload everything", since,
                            since > current ? "ahead of the database" : "already pruned",
                            current, pruned);
        return TS_STORE_EPRUNED;
    }
    upto = current;
    if (max_generations > 0 && since + max_generations < current) {
        upto = since + max_generations;
    }
    args[0] = &since;
    args[1] = &upto;
    if (rv == APR_SUCCESS) {
        rv = ts_store__select(st, p, &SQL_CHANGE_RANGE, args, &rows, err);
    }
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "reading changes since %" APR_INT64_T_FMT ": %s", since, *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*changes, ts_change_t *) = change_from_row(p, TS_ROW(rows, i));
    }
    *through = upto;
    return APR_SUCCESS;
}

typedef struct {
    apr_time_t cutoff;
    apr_int64_t pruned_through;
} prune_baton_t;

static apr_status_t prune_tx(ts_store_tx_t *tx, void *baton)
{
    prune_baton_t *b = baton;
    apr_array_header_t *rows;
    const void *args[2];
    apr_status_t rv;

    args[0] = &b->cutoff;
    rv = ts_store__tx_select(tx, &SQL_CHANGE_PRUNE_MAX, args, &rows);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    b->pruned_through = rows->nelts ? ts_store__i64(TS_ROW(rows, 0)[0]) : 0;
    if (b->pruned_through > 0) {
        /* whole generations only, so no reader sees half of one */
        args[0] = &b->pruned_through;
        rv = ts_store__tx_exec(tx, &SQL_CHANGE_PRUNE, args, NULL);
        args[1] = &b->pruned_through;
        if (rv == APR_SUCCESS) {
            rv = ts_store__tx_exec(tx, &SQL_STATE_PRUNED, args, NULL);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_LOG_PRUNED, 0, 0, NULL);
    }
    return rv;
}

apr_status_t ts_store_changes_prune(ts_store_t *st, apr_pool_t *p, apr_time_t cutoff,
                                    apr_int64_t *pruned_through, const char **err)
{
    prune_baton_t b;
    apr_status_t rv;

    b.cutoff = cutoff;
    b.pruned_through = 0;
    rv = ts_store__write(st, p, "pruning the change log", prune_tx, &b, err);
    *pruned_through = rv == APR_SUCCESS ? b.pruned_through : 0;
    return rv;
}
