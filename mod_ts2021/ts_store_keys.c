/* ts_store_keys.c: pre_auth_keys and api_keys: secrets stored only as keyed BLAKE2b hashes
 * (libsodium), lookup by prefix, verification in constant time, updates and deletion. */
#include "ts_store_int.h"
#include "ts_util.h"

#include <string.h>
#include <sodium.h>
#include <jansson.h>

/* The secrets are 256-bit random values, so a fast hash cannot be brute-forced and a slow
 * password hash (bcrypt, argon2) would only cost CPU per registration. The key doubles as
 * domain separation: a pre-auth hash never verifies as an API key. */
#define HASH_TAG "b2b256:"
#define PREAUTH_DOMAIN "ts2021 pre-auth key v1"
#define APIKEY_DOMAIN "ts2021 api key v1"

#define PAK_COLS "id, prefix, hash, user_id, reusable, ephemeral, used, tags, expiration, " \
                 "revoked, created_at, description"
#define API_COLS "id, prefix, hash, expiration, last_seen, created_at"

static const ts_stmt_def_t SQL_PAK_INSERT = {
    "preauth_key_insert", "pre-auth key",
    "INSERT INTO pre_auth_keys (prefix, hash, user_id, reusable, ephemeral, used, tags, "
    "expiration, revoked, created_at, description) "
    "VALUES (%s, %s, %lld, %d, %d, %d, %s, %lld, %lld, %lld, %s)", NULL
};
static const ts_stmt_def_t SQL_PAK_BY_ID = {
    "preauth_key_by_id", "pre-auth key",
    "SELECT " PAK_COLS " FROM pre_auth_keys WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_PAK_BY_PREFIX = {
    "preauth_key_by_prefix", "pre-auth key",
    "SELECT " PAK_COLS " FROM pre_auth_keys WHERE prefix = %s", NULL
};
static const ts_stmt_def_t SQL_PAK_LIST = {
    "preauth_key_list", "pre-auth key",
    "SELECT " PAK_COLS " FROM pre_auth_keys ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_PAK_LIST_USER = {
    "preauth_key_list_by_user", "pre-auth key",
    "SELECT " PAK_COLS " FROM pre_auth_keys WHERE user_id = %lld ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_PAK_EXISTS = {
    "preauth_key_exists", "pre-auth key", "SELECT id FROM pre_auth_keys WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_PAK_UPDATE = {
    "preauth_key_update", "pre-auth key",
    "UPDATE pre_auth_keys SET user_id = %lld, reusable = %d, ephemeral = %d, used = %d, "
    "tags = %s, expiration = %lld, revoked = %lld, description = %s WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_PAK_DELETE = {
    "preauth_key_delete", "pre-auth key", "DELETE FROM pre_auth_keys WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_API_INSERT = {
    "api_key_insert", "API key",
    "INSERT INTO api_keys (prefix, hash, expiration, last_seen, created_at) "
    "VALUES (%s, %s, %lld, %lld, %lld)", NULL
};
static const ts_stmt_def_t SQL_API_BY_PREFIX = {
    "api_key_by_prefix", "API key", "SELECT " API_COLS " FROM api_keys WHERE prefix = %s", NULL
};
static const ts_stmt_def_t SQL_API_LIST = {
    "api_key_list", "API key", "SELECT " API_COLS " FROM api_keys ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_API_EXISTS = {
    "api_key_exists", "API key", "SELECT id FROM api_keys WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_API_UPDATE = {
    "api_key_update", "API key",
    "UPDATE api_keys SET expiration = %lld, last_seen = %lld WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_API_DELETE = {
    "api_key_delete", "API key", "DELETE FROM api_keys WHERE id = %lld", NULL
};

static const char *secret_hash(apr_pool_t *p, const char *domain, const char *secret)
{
    unsigned char out[crypto_generichash_BYTES];
    char *text = apr_palloc(p, sizeof(HASH_TAG) + 2 * sizeof(out));

    if (sodium_init() < 0) {
        return NULL;
    }
    crypto_generichash(out, sizeof(out), (const unsigned char *)secret, strlen(secret),
                       (const unsigned char *)domain, strlen(domain));
    memcpy(text, HASH_TAG, sizeof(HASH_TAG) - 1);
    ts_hex_encode(text + sizeof(HASH_TAG) - 1, out, sizeof(out));
    sodium_memzero(out, sizeof(out));
    return text;
}

static int secret_matches(apr_pool_t *p, const char *domain, const char *secret,
                          const char *stored)
{
    const char *h = secret && *secret ? secret_hash(p, domain, secret) : NULL;

    return h && stored && strlen(h) == strlen(stored)
        && sodium_memcmp(h, stored, strlen(h)) == 0;
}

/* Shared shape of "check existence, then write": MySQL counts only rows whose values
 * change, so an UPDATE that rewrites equal values reports 0 rows for a row that exists. */
static apr_status_t tx_exists(ts_store_tx_t *tx, const ts_stmt_def_t *def, apr_int64_t id)
{
    apr_array_header_t *rows;
    const void *args[] = { &id };
    apr_status_t rv = ts_store__tx_select(tx, def, args, &rows);

    if (rv == APR_SUCCESS && rows->nelts == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    return rv;
}

static apr_status_t tx_delete(ts_store_tx_t *tx, const ts_stmt_def_t *def, apr_int64_t id,
                              const char *kind)
{
    const void *args[] = { &id };
    int nrows = 0;
    apr_status_t rv = ts_store__tx_exec(tx, def, args, &nrows);

    if (rv == APR_SUCCESS && nrows == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, kind, 0, 0,
                                 ts_store__payload(tx->scratch, "{s:I}", "id", (json_int_t)id));
    }
    return rv;
}

/* ---- pre-auth keys ---- */

static ts_preauth_key_t *pak_from_row(apr_pool_t *p, const char **r)
{
    ts_preauth_key_t *k = apr_pcalloc(p, sizeof(*k));

    k->id = ts_store__i64(r[0]);
    k->prefix = r[1];
    k->hash = r[2];
    k->user_id = ts_store__i64(r[3]);
    k->reusable = ts_store__int(r[4]);
    k->ephemeral = ts_store__int(r[5]);
    k->used = ts_store__int(r[6]);
    k->tags = r[7];
    k->expiration = ts_store__i64(r[8]);
    k->revoked = ts_store__i64(r[9]);
    k->created_at = ts_store__i64(r[10]);
    k->description = r[11];
    return k;
}

static apr_status_t pak_check(apr_pool_t *p, const ts_preauth_key_t *k, const char **err)
{
    apr_status_t rv;

    if ((rv = ts_store__check_text(p, err, "pre-auth key", "prefix", k->prefix, 64, 1))
        || (rv = ts_store__check_json(p, err, "pre-auth key", "tags", k->tags,
                                      TS_STORE_TEXT_MAX, 1))
        || (rv = ts_store__check_text(p, err, "pre-auth key", "description", k->description,
                                      255, 0))) {
        return rv;
    }
    return APR_SUCCESS;
}

static apr_status_t pak_create_tx(ts_store_tx_t *tx, void *baton)
{
    ts_preauth_key_t *k = baton;
    int reusable = k->reusable ? 1 : 0, eph = k->ephemeral ? 1 : 0, used = k->used ? 1 : 0;
    const void *args[] = { k->prefix, k->hash, TS_OPT(k->user_id), &reusable, &eph, &used,
                           ts_store__nz(k->tags), TS_OPT(k->expiration), TS_OPT(k->revoked),
                           &tx->now, ts_store__nz(k->description) };
    apr_status_t rv = ts_store__tx_user_exists(tx, "pre-auth key", k->user_id);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_PAK_INSERT, args, NULL);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_last_id(tx, &k->id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_PREAUTH_CREATED, 0, k->user_id,
                                 ts_store__payload(tx->scratch, "{s:I}", "id",
                                                   (json_int_t)k->id));
    }
    k->created_at = tx->now;
    return rv;
}

apr_status_t ts_store_preauth_key_create(ts_store_t *st, apr_pool_t *p, ts_preauth_key_t *k,
                                         const char *secret, const char **err)
{
    apr_status_t rv = pak_check(p, k, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (!secret || !*secret) {
        *err = "pre-auth key: secret is required";
        return APR_EINVAL;
    }
    k->hash = secret_hash(p, PREAUTH_DOMAIN, secret);
    if (!k->hash) {
        *err = "pre-auth key: libsodium failed to initialise";
        return APR_EGENERAL;
    }
    return ts_store__write(st, p, apr_psprintf(p, "creating pre-auth key '%s'", k->prefix),
                           pak_create_tx, k, err);
}

static apr_status_t pak_get(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                            const void **args, const char *which, ts_preauth_key_t **k,
                            const char **err)
{
    const char **row;
    apr_status_t rv = ts_store__select_one(st, p, def, args, &row, err);

    *k = NULL;
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "pre-auth key %s: %s", which, *err);
        return rv;
    }
    *k = pak_from_row(p, row);
    return APR_SUCCESS;
}

apr_status_t ts_store_preauth_key_get(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                      ts_preauth_key_t **k, const char **err)
{
    const void *args[] = { &id };

    return pak_get(st, p, &SQL_PAK_BY_ID, args, apr_psprintf(p, "%" APR_INT64_T_FMT, id),
                   k, err);
}

apr_status_t ts_store_preauth_key_get_by_prefix(ts_store_t *st, apr_pool_t *p,
                                                const char *prefix, ts_preauth_key_t **k,
                                                const char **err)
{
    const void *args[] = { prefix ? prefix : "" };

    return pak_get(st, p, &SQL_PAK_BY_PREFIX, args,
                   apr_psprintf(p, "'%s'", (const char *)args[0]), k, err);
}

apr_status_t ts_store_preauth_key_verify(ts_store_t *st, apr_pool_t *p, const char *prefix,
                                         const char *secret, ts_preauth_key_t **k,
                                         const char **err)
{
    apr_status_t rv = ts_store_preauth_key_get_by_prefix(st, p, prefix, k, err);

    if (rv == APR_SUCCESS && !secret_matches(p, PREAUTH_DOMAIN, secret, (*k)->hash)) {
        *k = NULL;
        rv = TS_STORE_ENOTFOUND;
    }
    if (rv == TS_STORE_ENOTFOUND) {
        /* one answer for "no such prefix" and "wrong secret" */
        *err = "pre-auth key: no key matches";
    }
    return rv;
}

apr_status_t ts_store_preauth_key_list(ts_store_t *st, apr_pool_t *p, apr_int64_t user_id,
                                       apr_array_header_t **keys, const char **err)
{
    apr_array_header_t *rows;
    const void *args[] = { &user_id };
    apr_status_t rv = ts_store__select(st, p, user_id ? &SQL_PAK_LIST_USER : &SQL_PAK_LIST,
                                       user_id ? args : NULL, &rows, err);
    int i;

    *keys = apr_array_make(p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(ts_preauth_key_t *));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "listing pre-auth keys: %s", *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*keys, ts_preauth_key_t *) = pak_from_row(p, TS_ROW(rows, i));
    }
    return APR_SUCCESS;
}

static apr_status_t pak_update_tx(ts_store_tx_t *tx, void *baton)
{
    const ts_preauth_key_t *k = baton;
    int reusable = k->reusable ? 1 : 0, eph = k->ephemeral ? 1 : 0, used = k->used ? 1 : 0;
    const void *args[] = { TS_OPT(k->user_id), &reusable, &eph, &used, ts_store__nz(k->tags),
                           TS_OPT(k->expiration), TS_OPT(k->revoked),
                           ts_store__nz(k->description), &k->id };
    apr_status_t rv = tx_exists(tx, &SQL_PAK_EXISTS, k->id);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_user_exists(tx, "pre-auth key", k->user_id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_PAK_UPDATE, args, NULL);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_PREAUTH_UPDATED, 0, k->user_id,
                                 ts_store__payload(tx->scratch, "{s:I}", "id",
                                                   (json_int_t)k->id));
    }
    return rv;
}

apr_status_t ts_store_preauth_key_update(ts_store_t *st, apr_pool_t *p,
                                         const ts_preauth_key_t *k, const char **err)
{
    apr_status_t rv = ts_store__check_json(p, err, "pre-auth key", "tags", k->tags,
                                           TS_STORE_TEXT_MAX, 1);

    if (rv == APR_SUCCESS) {
        rv = ts_store__check_text(p, err, "pre-auth key", "description", k->description,
                                  255, 0);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return ts_store__write(st, p, apr_psprintf(p, "updating pre-auth key %" APR_INT64_T_FMT,
                                               k->id), pak_update_tx, (void *)k, err);
}

static apr_status_t pak_delete_tx(ts_store_tx_t *tx, void *baton)
{
    return tx_delete(tx, &SQL_PAK_DELETE, *(apr_int64_t *)baton, TS_CHANGE_PREAUTH_DELETED);
}

apr_status_t ts_store_preauth_key_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                         const char **err)
{
    return ts_store__write(st, p, apr_psprintf(p, "deleting pre-auth key %" APR_INT64_T_FMT,
                                               id), pak_delete_tx, &id, err);
}

/* ---- API keys ---- */

static ts_api_key_t *api_from_row(apr_pool_t *p, const char **r)
{
    ts_api_key_t *k = apr_pcalloc(p, sizeof(*k));

    k->id = ts_store__i64(r[0]);
    k->prefix = r[1];
    k->hash = r[2];
    k->expiration = ts_store__i64(r[3]);
    k->last_seen = ts_store__i64(r[4]);
    k->created_at = ts_store__i64(r[5]);
    return k;
}

static apr_status_t api_create_tx(ts_store_tx_t *tx, void *baton)
{
    ts_api_key_t *k = baton;
    const void *args[] = { k->prefix, k->hash, TS_OPT(k->expiration), TS_OPT(k->last_seen),
                           &tx->now };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_API_INSERT, args, NULL);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_last_id(tx, &k->id);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_APIKEY_CREATED, 0, 0,
                                 ts_store__payload(tx->scratch, "{s:I}", "id",
                                                   (json_int_t)k->id));
    }
    k->created_at = tx->now;
    return rv;
}

apr_status_t ts_store_api_key_create(ts_store_t *st, apr_pool_t *p, ts_api_key_t *k,
                                     const char *secret, const char **err)
{
    apr_status_t rv = ts_store__check_text(p, err, "API key", "prefix", k->prefix, 64, 1);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (!secret || !*secret) {
        *err = "API key: secret is required";
        return APR_EINVAL;
    }
    k->hash = secret_hash(p, APIKEY_DOMAIN, secret);
    if (!k->hash) {
        *err = "API key: libsodium failed to initialise";
        return APR_EGENERAL;
    }
    return ts_store__write(st, p, apr_psprintf(p, "creating API key '%s'", k->prefix),
                           api_create_tx, k, err);
}

apr_status_t ts_store_api_key_get_by_prefix(ts_store_t *st, apr_pool_t *p, const char *prefix,
                                            ts_api_key_t **k, const char **err)
{
    const void *args[] = { prefix ? prefix : "" };
    const char **row;
    apr_status_t rv = ts_store__select_one(st, p, &SQL_API_BY_PREFIX, args, &row, err);

    *k = NULL;
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "API key '%s': %s", (const char *)args[0], *err);
        return rv;
    }
    *k = api_from_row(p, row);
    return APR_SUCCESS;
}

apr_status_t ts_store_api_key_verify(ts_store_t *st, apr_pool_t *p, const char *prefix,
                                     const char *secret, ts_api_key_t **k, const char **err)
{
    apr_status_t rv = ts_store_api_key_get_by_prefix(st, p, prefix, k, err);

    if (rv == APR_SUCCESS && !secret_matches(p, APIKEY_DOMAIN, secret, (*k)->hash)) {
        *k = NULL;
        rv = TS_STORE_ENOTFOUND;
    }
    if (rv == TS_STORE_ENOTFOUND) {
        *err = "API key: no key matches";
    }
    return rv;
}

apr_status_t ts_store_api_key_list(ts_store_t *st, apr_pool_t *p, apr_array_header_t **keys,
                                   const char **err)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__select(st, p, &SQL_API_LIST, NULL, &rows, err);
    int i;

    *keys = apr_array_make(p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(ts_api_key_t *));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "listing API keys: %s", *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*keys, ts_api_key_t *) = api_from_row(p, TS_ROW(rows, i));
    }
    return APR_SUCCESS;
}

static apr_status_t api_update_tx(ts_store_tx_t *tx, void *baton)
{
    const ts_api_key_t *k = baton;
    const void *args[] = { TS_OPT(k->expiration), TS_OPT(k->last_seen), &k->id };
    apr_status_t rv = tx_exists(tx, &SQL_API_EXISTS, k->id);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_API_UPDATE, args, NULL);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_APIKEY_UPDATED, 0, 0,
                                 ts_store__payload(tx->scratch, "{s:I}", "id",
                                                   (json_int_t)k->id));
    }
    return rv;
}

apr_status_t ts_store_api_key_update(ts_store_t *st, apr_pool_t *p, const ts_api_key_t *k,
                                     const char **err)
{
    return ts_store__write(st, p, apr_psprintf(p, "updating API key %" APR_INT64_T_FMT, k->id),
                           api_update_tx, (void *)k, err);
}

static apr_status_t api_delete_tx(ts_store_tx_t *tx, void *baton)
{
    return tx_delete(tx, &SQL_API_DELETE, *(apr_int64_t *)baton, TS_CHANGE_APIKEY_DELETED);
}

apr_status_t ts_store_api_key_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                     const char **err)
{
    return ts_store__write(st, p, apr_psprintf(p, "deleting API key %" APR_INT64_T_FMT, id),
                           api_delete_tx, &id, err);
}

const char *ts_store_preauth_key_status(const ts_preauth_key_t *k, apr_time_t now)
{
    if (k->revoked) return "revoked";
    if (k->expiration && k->expiration <= now) return "expired";
    if (!k->reusable && k->used) return "used";
    return "valid";
}
