/* ts_store_users.c: the users table: create, read, list, update and delete (which also
 * logs the deletion of every node that goes with the user). */
#include "ts_store_int.h"

#define USER_COLS "id, name, display_name, email, provider, provider_identifier, " \
                  "profile_pic_url, version, created_at, updated_at"

static const ts_stmt_def_t SQL_USER_INSERT = {
    "user_insert", "user",
    "INSERT INTO users (name, display_name, email, provider, provider_identifier, "
    "profile_pic_url, version, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %lld, %lld, %lld)", NULL
};
static const ts_stmt_def_t SQL_USER_BY_ID = {
    "user_by_id", "user", "SELECT " USER_COLS " FROM users WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_USER_BY_NAME = {
    "user_by_name", "user", "SELECT " USER_COLS " FROM users WHERE name = %s", NULL
};
static const ts_stmt_def_t SQL_USER_BY_PROVIDER_ID = {
    "user_by_provider_id", "user",
    "SELECT " USER_COLS " FROM users WHERE provider_identifier = %s", NULL
};
static const ts_stmt_def_t SQL_USER_LIST = {
    "user_list", "user", "SELECT " USER_COLS " FROM users ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_USER_UPDATE = {
    "user_update", "user",
    "UPDATE users SET name = %s, display_name = %s, email = %s, provider = %s, "
    "provider_identifier = %s, profile_pic_url = %s, version = %lld, updated_at = %lld "
    "WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_USER_EXISTS = {
    "user_exists", "user", "SELECT id, name FROM users WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_USER_NODES = {
    "user_node_ids", "node", "SELECT id, node_key FROM nodes WHERE user_id = %lld ORDER BY id",
    NULL
};
static const ts_stmt_def_t SQL_USER_DELETE = {
    "user_delete", "user", "DELETE FROM users WHERE id = %lld", NULL
};

static ts_user_t *user_from_row(apr_pool_t *p, const char **r)
{
    ts_user_t *u = apr_pcalloc(p, sizeof(*u));

    u->id = ts_store__i64(r[0]);
    u->name = r[1];
    u->display_name = r[2];
    u->email = r[3];
    u->provider = r[4];
    u->provider_identifier = r[5];
    u->profile_pic_url = r[6];
    u->version = ts_store__i64(r[7]);
    u->created_at = ts_store__i64(r[8]);
    u->updated_at = ts_store__i64(r[9]);
    return u;
}

static apr_status_t user_check(apr_pool_t *p, const ts_user_t *u, const char **err)
{
    apr_status_t rv;

    if ((rv = ts_store__check_text(p, err, "user", "name", u->name, 255, 1))
        || (rv = ts_store__check_text(p, err, "user", "display_name", u->display_name, 255, 0))
        || (rv = ts_store__check_text(p, err, "user", "email", u->email, 255, 0))
        || (rv = ts_store__check_text(p, err, "user", "provider", u->provider, 64, 0))
        || (rv = ts_store__check_text(p, err, "user", "provider_identifier",
                                      u->provider_identifier, 512, 0))
        || (rv = ts_store__check_text(p, err, "user", "profile_pic_url", u->profile_pic_url,
                                      TS_STORE_TEXT_MAX, 0))) {
        return rv;
    }
    return APR_SUCCESS;
}

/* Used by every table that refers to a user: a clear message beats the foreign key's. */
apr_status_t ts_store__tx_user_exists(ts_store_tx_t *tx, const char *entity,
                                      apr_int64_t user_id)
{
    apr_array_header_t *rows;
    const void *args[] = { &user_id };
    apr_status_t rv;

    if (user_id == 0) {
        return APR_SUCCESS;
    }
    rv = ts_store__tx_select(tx, &SQL_USER_EXISTS, args, &rows);
    if (rv == APR_SUCCESS && rows->nelts == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_EREFERENCE, "%s: user_id %" APR_INT64_T_FMT
                               " does not exist", entity, user_id);
    }
    return rv;
}

static apr_status_t user_create_tx(ts_store_tx_t *tx, void *baton)
{
    ts_user_t *u = baton;
    const void *args[] = { u->name, ts_store__nz(u->display_name), ts_store__nz(u->email),
                           ts_store__nz(u->provider), ts_store__nz(u->provider_identifier),
                           ts_store__nz(u->profile_pic_url), &tx->generation, &tx->now,
                           &tx->now };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_USER_INSERT, args, NULL);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_last_id(tx, &u->id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_USER_CREATED, 0, u->id, NULL);
    }
    u->version = tx->generation;
    u->created_at = u->updated_at = tx->now;
    return rv;
}

apr_status_t ts_store_user_create(ts_store_t *st, apr_pool_t *p, ts_user_t *u, const char **err)
{
    apr_status_t rv = user_check(p, u, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    return ts_store__write(st, p, apr_psprintf(p, "creating user '%s'", u->name),
                           user_create_tx, u, err);
}

static apr_status_t user_get(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                             const void **args, const char *which, ts_user_t **u,
                             const char **err)
{
    const char **row;
    apr_status_t rv = ts_store__select_one(st, p, def, args, &row, err);

    *u = NULL;
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "user %s: %s", which, *err);
        return rv;
    }
    *u = user_from_row(p, row);
    return APR_SUCCESS;
}

apr_status_t ts_store_user_get(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                               ts_user_t **u, const char **err)
{
    const void *args[] = { &id };

    return user_get(st, p, &SQL_USER_BY_ID, args, apr_psprintf(p, "%" APR_INT64_T_FMT, id),
                    u, err);
}

apr_status_t ts_store_user_get_by_name(ts_store_t *st, apr_pool_t *p, const char *name,
                                       ts_user_t **u, const char **err)
{
    const void *args[] = { name ? name : "" };

    return user_get(st, p, &SQL_USER_BY_NAME, args,
                    apr_psprintf(p, "'%s'", (const char *)args[0]), u, err);
}

apr_status_t ts_store_user_get_by_provider_id(ts_store_t *st, apr_pool_t *p,
                                              const char *provider_identifier,
                                              ts_user_t **u, const char **err)
{
    const void *args[] = { provider_identifier ? provider_identifier : "" };

    return user_get(st, p, &SQL_USER_BY_PROVIDER_ID, args,
                    apr_psprintf(p, "with provider identifier '%s'",
                                 (const char *)args[0]), u, err);
}

apr_status_t ts_store_user_list(ts_store_t *st, apr_pool_t *p, apr_array_header_t **users,
                                const char **err)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__select(st, p, &SQL_USER_LIST, NULL, &rows, err);
    int i;

    *users = apr_array_make(p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(ts_user_t *));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "listing users: %s", *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*users, ts_user_t *) = user_from_row(p, TS_ROW(rows, i));
    }
    return APR_SUCCESS;
}

static apr_status_t user_update_tx(ts_store_tx_t *tx, void *baton)
{
    ts_user_t *u = baton;
    const void *args[] = { u->name, ts_store__nz(u->display_name), ts_store__nz(u->email),
                           ts_store__nz(u->provider), ts_store__nz(u->provider_identifier),
                           ts_store__nz(u->profile_pic_url), &tx->generation, &tx->now,
                           &u->id };
    int nrows = 0;
    /* version always moves, so even MySQL (which counts changed rows) reports the row */
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_USER_UPDATE, args, &nrows);

    if (rv == APR_SUCCESS && nrows == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_USER_UPDATED, 0, u->id, NULL);
    }
    if (rv == APR_SUCCESS) {
        u->version = tx->generation;
        u->updated_at = tx->now;
    }
    return rv;
}

apr_status_t ts_store_user_update(ts_store_t *st, apr_pool_t *p, ts_user_t *u, const char **err)
{
    apr_status_t rv = user_check(p, u, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    return ts_store__write(st, p, apr_psprintf(p, "updating user %" APR_INT64_T_FMT, u->id),
                           user_update_tx, u, err);
}

/* The foreign key removes the nodes; the change log must still say so, or streams on other
 * processes would keep showing them as peers. */
static apr_status_t user_delete_tx(ts_store_tx_t *tx, void *baton)
{
    apr_int64_t *id = baton;
    apr_array_header_t *rows;
    const void *args[] = { id };
    apr_status_t rv;
    int i;

    rv = ts_store__tx_select(tx, &SQL_USER_EXISTS, args, &rows);
    if (rv == APR_SUCCESS && rows->nelts == 0) {
        return ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_select(tx, &SQL_USER_NODES, args, &rows);
    }
    for (i = 0; rv == APR_SUCCESS && i < rows->nelts; i++) {
        const char **r = TS_ROW(rows, i);

        rv = ts_store__tx_change(tx, TS_CHANGE_NODE_DELETED, ts_store__i64(r[0]), *id,
                                 ts_store__payload(tx->scratch, "{s:s, s:s}", "node_key",
                                                   r[1] ? r[1] : "", "reason",
                                                   "user deleted"));
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_USER_DELETE, args, NULL);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_USER_DELETED, 0, *id, NULL);
    }
    return rv;
}

apr_status_t ts_store_user_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id, const char **err)
{
    return ts_store__write(st, p, apr_psprintf(p, "deleting user %" APR_INT64_T_FMT, id),
                           user_delete_tx, &id, err);
}
