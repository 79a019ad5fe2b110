/* ts_store.h: the storage core: schema, entities and the generation/change feed,
 * over apr_dbd prepared statements (sqlite3 and mysql drivers). APR, apr-util and jansson only. */
#ifndef TS_STORE_H
#define TS_STORE_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_time.h>
#include <apr_tables.h>
#include <apr_hash.h>
#include <apr_dbd.h>

/* Bumped by every schema change; ts_store_schema_apply migrates up to it and refuses newer. */
#define TS_STORE_SCHEMA_VERSION 2

/* Status codes beyond APR's. Validation errors use APR_EINVAL. */
#define TS_STORE_ERRSPACE  (APR_OS_START_USERERR + 4100)
#define TS_STORE_ENOTFOUND (TS_STORE_ERRSPACE + 1) /* no such row (HTTP 404) */
#define TS_STORE_ECONFLICT (TS_STORE_ERRSPACE + 2) /* unique value taken, key used up, stale version (409) */
#define TS_STORE_EREFERENCE (TS_STORE_ERRSPACE + 3) /* a referenced row (user_id …) does not exist */
#define TS_STORE_EBUSY     (TS_STORE_ERRSPACE + 4) /* lock contention outlasted every retry */
#define TS_STORE_ESCHEMA   (TS_STORE_ERRSPACE + 5) /* schema missing, or newer than this code */
#define TS_STORE_EPRUNED   (TS_STORE_ERRSPACE + 6) /* changes asked for were pruned: resync fully */
#define TS_STORE_EDB       (TS_STORE_ERRSPACE + 7) /* any other database error */
#define TS_STORE_EFAULT    (TS_STORE_ERRSPACE + 8) /* injected by ts_store_test_fail_at */

/* Conventions for every entity below:
 * - ids are > 0; an id field of 0 means SQL NULL ("no user", "no key").
 * - times are apr_time_t (microseconds since the epoch, UTC), stored as BIGINT;
 *   0 means SQL NULL ("never"). The store sets created_at/updated_at itself.
 * - strings are NUL-terminated UTF-8; NULL means SQL NULL. JSON fields hold JSON text.
 * - results and error messages are allocated from the pool p passed to the call.
 * - version is the generation of the last write that touched the row. */

typedef struct ts_store_t ts_store_t;

typedef struct ts_user_t {
    apr_int64_t id;
    const char *name;                 /* required, unique */
    const char *display_name;
    const char *email;
    const char *provider;             /* e.g. "oidc"; NULL for local users */
    const char *provider_identifier;  /* issuer + subject; unique when set */
    const char *profile_pic_url;
    apr_int64_t version;
    apr_time_t created_at;
    apr_time_t updated_at;
} ts_user_t;

typedef struct ts_node_t {
    apr_int64_t id;
    const char *machine_key;      /* "mkey:<hex>", required, indexed */
    const char *node_key;         /* "nodekey:<hex>", required, unique */
    const char *disco_key;        /* "discokey:<hex>" */
    const char *endpoints;        /* JSON array text */
    const char *host_info;        /* JSON object text (tailcfg.Hostinfo) */
    const char *ipv4;             /* canonical text, unique when set */
    const char *ipv6;             /* canonical text, unique when set */
    const char *hostname;         /* raw Hostinfo.Hostname */
    const char *given_name;       /* DNS label, required, unique */
    apr_int64_t user_id;          /* 0 for tagged nodes; deleting the user deletes the node */
    const char *register_method;  /* "authkey", "cli", "oidc" */
    const char *tags;             /* JSON array text */
    apr_int64_t auth_key_id;      /* pre-auth key used to register, 0 if none */
    int ephemeral;
    int cap_version;
    apr_time_t last_seen;         /* 0: never seen */
    apr_time_t expiry;            /* 0: never expires */
    apr_int64_t version;
    apr_time_t created_at;
    apr_time_t updated_at;
} ts_node_t;

/* One prefix of a node: what it advertises (Hostinfo.RoutableIPs) and what an admin approved. */
typedef struct ts_route_t {
    const char *prefix;           /* canonical CIDR text */
    int advertised;
    int approved;
} ts_route_t;

typedef struct ts_preauth_key_t {
    apr_int64_t id;
    const char *prefix;           /* unique lookup handle; the secret is stored only as a hash */
    const char *hash;             /* read-only: set by the store from the secret */
    apr_int64_t user_id;          /* 0: tag-only key; deleting the user sets it to 0 */
    int reusable;
    int ephemeral;
    int used;
    const char *tags;             /* JSON array text */
    apr_time_t expiration;        /* 0: never */
    apr_time_t revoked;           /* 0: not revoked; else when */
    apr_time_t created_at;
    const char *description;
} ts_preauth_key_t;

typedef struct ts_api_key_t {
    apr_int64_t id;
    const char *prefix;
    const char *hash;             /* read-only */
    apr_time_t expiration;        /* 0: never */
    apr_time_t last_seen;         /* 0: never used */
    apr_time_t created_at;
} ts_api_key_t;

typedef struct ts_store_policy_t {
    apr_int64_t id;
    const char *data;             /* HuJSON text as given */
    apr_time_t created_at;
} ts_store_policy_t;

typedef enum {
    TS_REG_PENDING = 0,
    TS_REG_APPROVED = 1,
    TS_REG_REJECTED = 2
} ts_reg_state_e;

typedef struct ts_registration_t {
    const char *auth_id;          /* primary key */
    const char *machine_key;
    const char *node_key;
    const char *old_node_key;
    const char *hostinfo;         /* JSON text */
    apr_time_t req_expiry;        /* RegisterRequest.Expiry, 0 if none */
    int ephemeral;                /* RegisterRequest.Ephemeral */
    apr_time_t created_at;
    apr_time_t expires_at;        /* required: when the pending entry lapses */
    ts_reg_state_e state;
    apr_int64_t node_id;          /* set on approval */
    apr_int64_t user_id;
    const char *error;            /* reason on rejection */
} ts_registration_t;

typedef struct ts_change_t {
    apr_int64_t id;
    apr_int64_t generation;
    apr_time_t created_at;
    const char *kind;             /* one of the TS_CHANGE_* strings */
    apr_int64_t node_id;          /* 0 if none */
    apr_int64_t user_id;          /* 0 if none */
    const char *payload;          /* JSON object text or NULL */
} ts_change_t;

#define TS_CHANGE_USER_CREATED     "user.created"
#define TS_CHANGE_USER_UPDATED     "user.updated"
#define TS_CHANGE_USER_DELETED     "user.deleted"
#define TS_CHANGE_NODE_CREATED     "node.created"
#define TS_CHANGE_NODE_UPDATED     "node.updated"
#define TS_CHANGE_NODE_ROUTES      "node.routes"
#define TS_CHANGE_NODE_SEEN        "node.seen"
#define TS_CHANGE_NODE_ONLINE      "node.online"   /* presence: a first stream came up */
#define TS_CHANGE_NODE_OFFLINE     "node.offline"  /* presence: the last stream is gone */
#define TS_CHANGE_NODE_DELETED     "node.deleted"
#define TS_CHANGE_PREAUTH_CREATED  "preauthkey.created"
#define TS_CHANGE_PREAUTH_UPDATED  "preauthkey.updated"
#define TS_CHANGE_PREAUTH_DELETED  "preauthkey.deleted"
#define TS_CHANGE_APIKEY_CREATED   "apikey.created"
#define TS_CHANGE_APIKEY_UPDATED   "apikey.updated"
#define TS_CHANGE_APIKEY_DELETED   "apikey.deleted"
#define TS_CHANGE_POLICY_SET       "policy.set"
#define TS_CHANGE_REG_CREATED      "registration.created"
#define TS_CHANGE_REG_RESOLVED     "registration.resolved"
#define TS_CHANGE_REG_DELETED      "registration.deleted"
#define TS_CHANGE_LOG_PRUNED       "changes.pruned"

/* ---- connections (ts_store.c) ----
 * A ts_store_t belongs to one DB connection and, like it, to one thread at a time. */

/* Opens a connection of its own (CLI, tests): apr_dbd_init + get_driver + open.
 * driver_name is "sqlite3" or "mysql"; params as for DBDParams. Lives until p is destroyed
 * or ts_store_close. err from p. */
apr_status_t ts_store_open(ts_store_t **st, apr_pool_t *p, const char *driver_name,
                           const char *params, const char **err);
void ts_store_close(ts_store_t *st);

/* Wraps a connection owned by someone else (mod_dbd's ap_dbd_t: pool, driver, handle).
 * Returns the same ts_store_t for every call on the same connection: it and its prepared
 * statements live in conn_pool's userdata, so a call costs one hash lookup. */
ts_store_t *ts_store_wrap(apr_pool_t *conn_pool, const apr_dbd_driver_t *driver,
                          apr_dbd_t *handle);

const char *ts_store_driver_name(const ts_store_t *st);   /* "sqlite3" or "mysql" */

/* Test seam: the nth (1-based) next execution of the named statement fails with
 * TS_STORE_EFAULT instead of running. NULL name clears it. */
void ts_store_test_fail_at(ts_store_t *st, const char *stmt_name, int nth);

/* Called (from any thread) on every database error that is not a lock wait, a unique or a
 * reference violation: for a metrics counter. Process-wide; NULL clears it. */
void ts_store_set_error_hook(void (*fn)(void));

/* ---- schema (ts_store_schema.c) ---- */

/* Creates or migrates the schema to TS_STORE_SCHEMA_VERSION; idempotent, and safe when several
 * processes call it at once on a fresh database. TS_STORE_ESCHEMA if the database is newer.
 * *err points into the store and stays valid until its next schema_apply (no pool is
 * consumed, even when a caller retries it on every request). */
apr_status_t ts_store_schema_apply(ts_store_t *st, const char **err);
/* Version recorded in the database; 0 when no schema exists. */
apr_status_t ts_store_schema_version(ts_store_t *st, apr_pool_t *p, int *version,
                                     const char **err);

/* ---- generation and change feed (ts_store_changes.c) ---- */

apr_status_t ts_store_generation(ts_store_t *st, apr_pool_t *p, apr_int64_t *generation,
                                 const char **err);
/* Change rows with since < generation <= *through, in generation then id order, as
 * ts_change_t* in *changes. *through is the current generation, capped at
 * since + max_generations when max_generations > 0 (whole generations only).
 * TS_STORE_EPRUNED when rows after since were already pruned. */
apr_status_t ts_store_changes_since(ts_store_t *st, apr_pool_t *p, apr_int64_t since,
                                    int max_generations, apr_array_header_t **changes,
                                    apr_int64_t *through, const char **err);
/* Deletes change rows created before cutoff; *pruned_through is the newest generation gone. */
apr_status_t ts_store_changes_prune(ts_store_t *st, apr_pool_t *p, apr_time_t cutoff,
                                    apr_int64_t *pruned_through, const char **err);

/* ---- users (ts_store_users.c) ---- */

/* Sets u->id, version, created_at, updated_at. */
apr_status_t ts_store_user_create(ts_store_t *st, apr_pool_t *p, ts_user_t *u, const char **err);
apr_status_t ts_store_user_get(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                               ts_user_t **u, const char **err);
apr_status_t ts_store_user_get_by_name(ts_store_t *st, apr_pool_t *p, const char *name,
                                       ts_user_t **u, const char **err);
apr_status_t ts_store_user_get_by_provider_id(ts_store_t *st, apr_pool_t *p,
                                              const char *provider_identifier,
                                              ts_user_t **u, const char **err);
/* All users as ts_user_t*, by id. */
apr_status_t ts_store_user_list(ts_store_t *st, apr_pool_t *p, apr_array_header_t **users,
                                const char **err);
/* Writes every field of u by u->id; sets version and updated_at. */
apr_status_t ts_store_user_update(ts_store_t *st, apr_pool_t *p, ts_user_t *u, const char **err);
/* Also deletes the user's nodes (each logged as node.deleted); its pre-auth keys keep no user. */
apr_status_t ts_store_user_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id, const char **err);

/* ---- nodes and routes (ts_store_nodes.c) ---- */

/* Inserts n and its routes (ts_route_t values, may be NULL) in one transaction and sets n->id,
 * version and times. When n->auth_key_id is set the key is checked and marked used in the
 * same transaction: ENOTFOUND if missing, ECONFLICT if revoked, expired, or single-use and
 * already used. */
apr_status_t ts_store_node_create(ts_store_t *st, apr_pool_t *p, ts_node_t *n,
                                  const apr_array_header_t *routes, const char **err);
apr_status_t ts_store_node_get(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                               ts_node_t **n, const char **err);
apr_status_t ts_store_node_get_by_node_key(ts_store_t *st, apr_pool_t *p, const char *node_key,
                                           ts_node_t **n, const char **err);
apr_status_t ts_store_node_get_by_given_name(ts_store_t *st, apr_pool_t *p,
                                             const char *given_name, ts_node_t **n,
                                             const char **err);
/* Lists as ts_node_t*, by id: all, one user's, one machine key's, or those whose version
 * is newer than a generation. */
apr_status_t ts_store_node_list(ts_store_t *st, apr_pool_t *p, apr_array_header_t **nodes,
                                const char **err);
apr_status_t ts_store_node_list_by_user(ts_store_t *st, apr_pool_t *p, apr_int64_t user_id,
                                        apr_array_header_t **nodes, const char **err);
apr_status_t ts_store_node_list_by_machine_key(ts_store_t *st, apr_pool_t *p,
                                               const char *machine_key,
                                               apr_array_header_t **nodes, const char **err);
apr_status_t ts_store_node_list_changed_since(ts_store_t *st, apr_pool_t *p,
                                              apr_int64_t generation,
                                              apr_array_header_t **nodes, const char **err);
/* Writes every field of n by n->id (not routes, not created_at). If n->version is non-zero it
 * must still be the row's version (optimistic check), else ECONFLICT. Sets version, updated_at. */
apr_status_t ts_store_node_update(ts_store_t *st, apr_pool_t *p, ts_node_t *n, const char **err);
apr_status_t ts_store_node_set_last_seen(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                         apr_time_t last_seen, const char **err);
/* Presence transitions, so every process and server hears of them through the change log:
 * online (last_seen kept) or offline since last_seen. */
apr_status_t ts_store_node_set_presence(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                        int online, apr_time_t last_seen, const char **err);
apr_status_t ts_store_node_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                  const char **err);
/* Routes of a node as ts_route_t values (not pointers), by prefix; empty if none. */
apr_status_t ts_store_node_routes_get(ts_store_t *st, apr_pool_t *p, apr_int64_t node_id,
                                      apr_array_header_t **routes, const char **err);
/* Every node's routes: apr_int64_t node id -> apr_array_header_t of ts_route_t (by prefix);
 * nodes without routes are absent. */
apr_status_t ts_store_node_routes_all(ts_store_t *st, apr_pool_t *p, apr_hash_t **by_node,
                                      const char **err);
/* Replaces all routes of a node (ts_route_t values) in one transaction. */
apr_status_t ts_store_node_routes_set(ts_store_t *st, apr_pool_t *p, apr_int64_t node_id,
                                      const apr_array_header_t *routes, const char **err);

/* ---- pre-auth and API keys (ts_store_keys.c) ----
 * Secrets are random and long, so a fast keyed hash suffices (no password hashing). */

/* Stores k with hash(secret); sets k->id, hash, created_at. */
/* "revoked", "expired", "used" (single-use, spent) or "valid" at now. */
const char *ts_store_preauth_key_status(const ts_preauth_key_t *k, apr_time_t now);
apr_status_t ts_store_preauth_key_create(ts_store_t *st, apr_pool_t *p, ts_preauth_key_t *k,
                                         const char *secret, const char **err);
apr_status_t ts_store_preauth_key_get(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                      ts_preauth_key_t **k, const char **err);
apr_status_t ts_store_preauth_key_get_by_prefix(ts_store_t *st, apr_pool_t *p,
                                                const char *prefix, ts_preauth_key_t **k,
                                                const char **err);
/* ENOTFOUND when the prefix is unknown or the secret does not match (same status for both). */
apr_status_t ts_store_preauth_key_verify(ts_store_t *st, apr_pool_t *p, const char *prefix,
                                         const char *secret, ts_preauth_key_t **k,
                                         const char **err);
/* user_id 0: all keys. As ts_preauth_key_t*, by id. */
apr_status_t ts_store_preauth_key_list(ts_store_t *st, apr_pool_t *p, apr_int64_t user_id,
                                       apr_array_header_t **keys, const char **err);
/* Writes user_id, reusable, ephemeral, used, tags, expiration, revoked, description by k->id. */
apr_status_t ts_store_preauth_key_update(ts_store_t *st, apr_pool_t *p,
                                         const ts_preauth_key_t *k, const char **err);
apr_status_t ts_store_preauth_key_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                         const char **err);

apr_status_t ts_store_api_key_create(ts_store_t *st, apr_pool_t *p, ts_api_key_t *k,
                                     const char *secret, const char **err);
apr_status_t ts_store_api_key_get_by_prefix(ts_store_t *st, apr_pool_t *p, const char *prefix,
                                            ts_api_key_t **k, const char **err);
apr_status_t ts_store_api_key_verify(ts_store_t *st, apr_pool_t *p, const char *prefix,
                                     const char *secret, ts_api_key_t **k, const char **err);
apr_status_t ts_store_api_key_list(ts_store_t *st, apr_pool_t *p, apr_array_header_t **keys,
                                   const char **err);
/* Writes expiration and last_seen by k->id. */
apr_status_t ts_store_api_key_update(ts_store_t *st, apr_pool_t *p, const ts_api_key_t *k,
                                     const char **err);
apr_status_t ts_store_api_key_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                     const char **err);

/* ---- policy and pending registrations (ts_store_policy.c) ---- */

/* Appends a policy row; the newest row is the policy in force. */
apr_status_t ts_store_policy_set(ts_store_t *st, apr_pool_t *p, const char *data,
                                 apr_int64_t *id, const char **err);
/* ENOTFOUND when no policy was ever stored. */
apr_status_t ts_store_policy_get(ts_store_t *st, apr_pool_t *p, ts_store_policy_t **pol,
                                 const char **err);

/* Inserts a pending registration (state, node_id, user_id, error ignored); sets created_at. */
apr_status_t ts_store_registration_create(ts_store_t *st, apr_pool_t *p,
                                          ts_registration_t *r, const char **err);
apr_status_t ts_store_registration_get(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                       ts_registration_t **r, const char **err);
/* Pending entries whose expires_at is after now, oldest first, as ts_registration_t*. */
apr_status_t ts_store_registration_list_pending(ts_store_t *st, apr_pool_t *p, apr_time_t now,
                                                apr_array_header_t **regs, const char **err);
/* pending -> approved/rejected, once: ECONFLICT if it is no longer pending. */
apr_status_t ts_store_registration_resolve(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                           ts_reg_state_e state, apr_int64_t node_id,
                                           apr_int64_t user_id, const char *error,
                                           const char **err);
apr_status_t ts_store_registration_delete(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                          const char **err);
/* Deletes entries whose expires_at <= now; *deleted counts them. */
apr_status_t ts_store_registration_delete_expired(ts_store_t *st, apr_pool_t *p,
                                                  apr_time_t now, int *deleted,
                                                  const char **err);

#endif
