/* ts_store_registrations.c: registration_requests, the pending interactive registrations
 * shared by every child process: create, read, resolve once, delete, expire. */
#include "ts_store_int.h"

#include <string.h>

#define REG_COLS "auth_id, machine_key, node_key, old_node_key, hostinfo, req_expiry, " \
                 "ephemeral, created_at, expires_at, state, node_id, user_id, error"

static const ts_stmt_def_t SQL_REG_INSERT = {
    "registration_insert", "registration",
    "INSERT INTO registration_requests (auth_id, machine_key, node_key, old_node_key, "
    "hostinfo, req_expiry, ephemeral, created_at, expires_at, state) "
    "VALUES (%s, %s, %s, %s, %s, %lld, %d, %lld, %lld, 'pending')", NULL
};
static const ts_stmt_def_t SQL_REG_GET = {
    "registration_get", "registration",
    "SELECT " REG_COLS " FROM registration_requests WHERE auth_id = %s", NULL
};
static const ts_stmt_def_t SQL_REG_RESOLVE = {
    "registration_resolve", "registration",
    "UPDATE registration_requests SET state = %s, node_id = %lld, user_id = %lld, error = %s "
    "WHERE auth_id = %s AND state = 'pending'", NULL
};
static const ts_stmt_def_t SQL_REG_STATE = {
    "registration_state", "registration",
    "SELECT state FROM registration_requests WHERE auth_id = %s", NULL
};
static const ts_stmt_def_t SQL_REG_DELETE = {
    "registration_delete", "registration",
    "DELETE FROM registration_requests WHERE auth_id = %s", NULL
};
static const ts_stmt_def_t SQL_REG_COUNT_EXPIRED = {
    "registration_count_expired", "registration",
    "SELECT COUNT(*) FROM registration_requests WHERE expires_at <= %lld", NULL
};
static const ts_stmt_def_t SQL_REG_DELETE_EXPIRED = {
    "registration_delete_expired", "registration",
    "DELETE FROM registration_requests WHERE expires_at <= %lld", NULL
};

static const ts_stmt_def_t SQL_REG_LIST_PENDING = {
    "registration_list_pending", "registration",
    "SELECT " REG_COLS " FROM registration_requests WHERE state = 'pending' AND expires_at > %lld "
    "ORDER BY created_at, auth_id", NULL
};

static const char *const STATE_NAMES[] = { "pending", "approved", "rejected" };

static ts_reg_state_e state_from_text(const char *s)
{
    int i;

    for (i = 0; i < 3; i++) {
        if (s && strcmp(s, STATE_NAMES[i]) == 0) {
            return (ts_reg_state_e)i;
        }
    }
    return TS_REG_PENDING;
}

static ts_registration_t *reg_from_row(apr_pool_t *p, const char **r)
{
    ts_registration_t *g = apr_pcalloc(p, sizeof(*g));

    g->auth_id = r[0];
    g->machine_key = r[1];
    g->node_key = r[2];
    g->old_node_key = r[3];
    g->hostinfo = r[4];
    g->req_expiry = ts_store__i64(r[5]);
    g->ephemeral = ts_store__int(r[6]);
    g->created_at = ts_store__i64(r[7]);
    g->expires_at = ts_store__i64(r[8]);
    g->state = state_from_text(r[9]);
    g->node_id = ts_store__i64(r[10]);
    g->user_id = ts_store__i64(r[11]);
    g->error = r[12];
    return g;
}

static apr_status_t reg_check(apr_pool_t *p, const ts_registration_t *r, const char **err)
{
    apr_status_t rv;
    const char *e = "registration";

    if ((rv = ts_store__check_text(p, err, e, "auth_id", r->auth_id, 64, 1))
        || (rv = ts_store__check_key(p, err, e, "machine_key", r->machine_key, "mkey:", 1))
        || (rv = ts_store__check_key(p, err, e, "node_key", r->node_key, "nodekey:", 1))
        || (rv = ts_store__check_key(p, err, e, "old_node_key", r->old_node_key,
                                     "nodekey:", 0))
        || (rv = ts_store__check_json(p, err, e, "hostinfo", r->hostinfo, TS_STORE_BLOB_MAX,
                                      0))) {
        return rv;
    }
    if (r->expires_at <= 0) {
        *err = "registration: expires_at is required";
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

static apr_status_t reg_create_tx(ts_store_tx_t *tx, void *baton)
{
    ts_registration_t *r = baton;
    int eph = r->ephemeral ? 1 : 0;
    const void *args[] = { r->auth_id, r->machine_key, r->node_key,
                           ts_store__nz(r->old_node_key), ts_store__nz(r->hostinfo),
                           TS_OPT(r->req_expiry), &eph, &tx->now, &r->expires_at };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_REG_INSERT, args, NULL);

    /* the key is the primary key, which MySQL reports only as 'PRIMARY' */
    if (rv == TS_STORE_ECONFLICT) {
        rv = ts_store__tx_fail(tx, rv, "registration auth_id '%s' already exists", r->auth_id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_REG_CREATED, 0, 0,
                                 ts_store__payload(tx->scratch, "{s:s}", "auth_id",
                                                   r->auth_id));
    }
    r->created_at = tx->now;
    return rv;
}

apr_status_t ts_store_registration_create(ts_store_t *st, apr_pool_t *p,
                                          ts_registration_t *r, const char **err)
{
    apr_status_t rv = reg_check(p, r, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    r->state = TS_REG_PENDING;
    r->node_id = r->user_id = 0;
    r->error = NULL;
    return ts_store__write(st, p, apr_psprintf(p, "creating registration '%s'", r->auth_id),
                           reg_create_tx, r, err);
}

apr_status_t ts_store_registration_get(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                       ts_registration_t **r, const char **err)
{
    const void *args[] = { auth_id ? auth_id : "" };
    const char **row;
    apr_status_t rv = ts_store__select_one(st, p, &SQL_REG_GET, args, &row, err);

    *r = NULL;
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "registration '%s': %s", (const char *)args[0], *err);
        return rv;
    }
    *r = reg_from_row(p, row);
    return APR_SUCCESS;
}

apr_status_t ts_store_registration_list_pending(ts_store_t *st, apr_pool_t *p, apr_time_t now,
                                                apr_array_header_t **regs, const char **err)
{
    const void *args[] = { &now };
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__select(st, p, &SQL_REG_LIST_PENDING, args, &rows, err);
    int i;

    *regs = apr_array_make(p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(ts_registration_t *));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "listing registrations: %s", *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*regs, ts_registration_t *) = reg_from_row(p, TS_ROW(rows, i));
    }
    return APR_SUCCESS;
}

typedef struct {
    const char *auth_id;
    ts_reg_state_e state;
    apr_int64_t node_id;
    apr_int64_t user_id;
    const char *error;
} reg_resolve_t;

/* Why a resolve matched no row: gone, or somebody resolved it first. */
static apr_status_t resolve_missed(ts_store_tx_t *tx, const char *auth_id)
{
    apr_array_header_t *rows;
    const void *args[] = { auth_id };
    apr_status_t rv = ts_store__tx_select(tx, &SQL_REG_STATE, args, &rows);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (rows->nelts == 0) {
        return ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    return ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "already %s",
                             TS_ROW(rows, 0)[0] ? TS_ROW(rows, 0)[0] : "resolved");
}

static apr_status_t reg_resolve_tx(ts_store_tx_t *tx, void *baton)
{
    reg_resolve_t *b = baton;
    const void *args[] = { STATE_NAMES[b->state], TS_OPT(b->node_id), TS_OPT(b->user_id),
                           ts_store__nz(b->error), b->auth_id };
    int nrows = 0;
    apr_status_t rv = ts_store__tx_user_exists(tx, "registration", b->user_id);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_REG_RESOLVE, args, &nrows);
    }
    if (rv == APR_SUCCESS && nrows == 0) {
        rv = resolve_missed(tx, b->auth_id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_REG_RESOLVED, b->node_id, b->user_id,
                                 ts_store__payload(tx->scratch, "{s:s, s:s}", "auth_id",
                                                   b->auth_id, "state",
                                                   STATE_NAMES[b->state]));
    }
    return rv;
}

apr_status_t ts_store_registration_resolve(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                           ts_reg_state_e state, apr_int64_t node_id,
                                           apr_int64_t user_id, const char *error,
                                           const char **err)
{
    reg_resolve_t b;
    apr_status_t rv;

    if (state != TS_REG_APPROVED && state != TS_REG_REJECTED) {
        *err = "registration: a resolution must be approved or rejected";
        return APR_EINVAL;
    }
    rv = ts_store__check_text(p, err, "registration", "error", error, TS_STORE_TEXT_MAX, 0);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    b.auth_id = auth_id ? auth_id : "";
    b.state = state;
    b.node_id = node_id;
    b.user_id = user_id;
    b.error = error;
    return ts_store__write(st, p, apr_psprintf(p, "resolving registration '%s'", b.auth_id),
                           reg_resolve_tx, &b, err);
}

static apr_status_t reg_delete_tx(ts_store_tx_t *tx, void *baton)
{
    const char *auth_id = baton;
    const void *args[] = { auth_id };
    int nrows = 0;
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_REG_DELETE, args, &nrows);

    if (rv == APR_SUCCESS && nrows == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_REG_DELETED, 0, 0,
                                 ts_store__payload(tx->scratch, "{s:s}", "auth_id", auth_id));
    }
    return rv;
}

apr_status_t ts_store_registration_delete(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                          const char **err)
{
    auth_id = auth_id ? auth_id : "";
    return ts_store__write(st, p, apr_psprintf(p, "deleting registration '%s'", auth_id),
                           reg_delete_tx, (void *)auth_id, err);
}

typedef struct {
    apr_time_t now;
    int deleted;
} reg_expire_t;

static apr_status_t reg_expire_tx(ts_store_tx_t *tx, void *baton)
{
    reg_expire_t *b = baton;
    const void *args[] = { &b->now };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_REG_DELETE_EXPIRED, args, &b->deleted);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_REG_DELETED, 0, 0,
                                 ts_store__payload(tx->scratch, "{s:i}", "expired",
                                                   b->deleted));
    }
    return rv;
}

apr_status_t ts_store_registration_delete_expired(ts_store_t *st, apr_pool_t *p,
                                                  apr_time_t now, int *deleted,
                                                  const char **err)
{
    reg_expire_t b;
    const void *args[] = { &now };
    const char **row;
    apr_status_t rv;

    /* a periodic sweep that finds nothing must not bump the generation and wake everyone */
    *deleted = 0;
    rv = ts_store__select_one(st, p, &SQL_REG_COUNT_EXPIRED, args, &row, err);
    if (rv != APR_SUCCESS || ts_store__i64(row[0]) == 0) {
        if (rv != APR_SUCCESS) {
            *err = apr_psprintf(p, "expiring registrations: %s", *err);
        }
        return rv;
    }
    b.now = now;
    b.deleted = 0;
    rv = ts_store__write(st, p, "expiring registrations", reg_expire_tx, &b, err);
    *deleted = rv == APR_SUCCESS ? b.deleted : 0;
    return rv;
}
