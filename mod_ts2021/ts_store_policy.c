/* ts_store_policy.c: the policies table: append a policy document; the newest row is the
 * policy in force (older rows stay as history). */
#include "ts_store_int.h"

static const ts_stmt_def_t SQL_POLICY_INSERT = {
    "policy_insert", "policy",
    "INSERT INTO policies (data, created_at) VALUES (%s, %lld)", NULL
};
static const ts_stmt_def_t SQL_POLICY_LATEST = {
    "policy_latest", "policy",
    "SELECT id, data, created_at FROM policies ORDER BY id DESC LIMIT 1", NULL
};

typedef struct {
    const char *data;
    apr_int64_t id;
} policy_set_t;

static apr_status_t policy_set_tx(ts_store_tx_t *tx, void *baton)
{
    policy_set_t *b = baton;
    const void *args[] = { b->data, &tx->now };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_POLICY_INSERT, args, NULL);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_last_id(tx, &b->id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_POLICY_SET, 0, 0, NULL);
    }
    return rv;
}

apr_status_t ts_store_policy_set(ts_store_t *st, apr_pool_t *p, const char *data,
                                 apr_int64_t *id, const char **err)
{
    policy_set_t b;
    /* HuJSON (comments, trailing commas) is not JSON: only size and presence are checked */
    apr_status_t rv = ts_store__check_text(p, err, "policy", "data", data, TS_STORE_BLOB_MAX,
                                           1);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    b.data = data;
    b.id = 0;
    rv = ts_store__write(st, p, "storing the policy", policy_set_tx, &b, err);
    if (id) {
        *id = rv == APR_SUCCESS ? b.id : 0;
    }
    return rv;
}

apr_status_t ts_store_policy_get(ts_store_t *st, apr_pool_t *p, ts_store_policy_t **pol,
                                 const char **err)
{
    const char **row;
    apr_status_t rv = ts_store__select_one(st, p, &SQL_POLICY_LATEST, NULL, &row, err);

    *pol = NULL;
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "policy: %s", rv == TS_STORE_ENOTFOUND
                            ? "none stored yet" : *err);
        return rv;
    }
    *pol = apr_pcalloc(p, sizeof(**pol));
    (*pol)->id = ts_store__i64(row[0]);
    (*pol)->data = row[1];
    (*pol)->created_at = ts_store__i64(row[2]);
    return APR_SUCCESS;
}
