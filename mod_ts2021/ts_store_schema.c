/* ts_store_schema.c: the schema, one definition per driver (sqlite3, mysql), its version
 * record and race-safe creation/migration (GET_LOCK on MySQL, BEGIN IMMEDIATE on sqlite). */
#include "ts_store_int.h"

#include <stdlib.h>
#include <string.h>

#define TS_SCHEMA_LOCK_WAIT_S "60"
#define TS_WAL_ATTEMPTS 20
#define TS_BEGIN_ATTEMPTS 20

/* Version 1. Times are BIGINT microseconds since the epoch (UTC); see docs/schema.md.
 * AUTOINCREMENT: a deleted node's id must never come back, clients key peers by it. */
static const char *const SQLITE_V1[] = {
    "CREATE TABLE IF NOT EXISTS ts_state ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " generation INTEGER NOT NULL,"
    " pruned_through INTEGER NOT NULL DEFAULT 0)",
    "INSERT OR IGNORE INTO ts_state (id, generation, pruned_through) VALUES (1, 0, 0)",

    "CREATE TABLE IF NOT EXISTS users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL, display_name TEXT, email TEXT, provider TEXT,"
    " provider_identifier TEXT, profile_pic_url TEXT,"
    " version INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS users_name ON users (name)",
    "CREATE UNIQUE INDEX IF NOT EXISTS users_provider_identifier"
    " ON users (provider_identifier)",

    "CREATE TABLE IF NOT EXISTS pre_auth_keys ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " prefix TEXT NOT NULL, hash TEXT NOT NULL,"
    " user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,"
    " reusable INTEGER NOT NULL DEFAULT 0, ephemeral INTEGER NOT NULL DEFAULT 0,"
    " used INTEGER NOT NULL DEFAULT 0, tags TEXT, expiration INTEGER, revoked INTEGER,"
    " created_at INTEGER NOT NULL, description TEXT)",
    "CREATE UNIQUE INDEX IF NOT EXISTS pre_auth_keys_prefix ON pre_auth_keys (prefix)",
    "CREATE INDEX IF NOT EXISTS pre_auth_keys_user_id ON pre_auth_keys (user_id)",

    "CREATE TABLE IF NOT EXISTS api_keys ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " prefix TEXT NOT NULL, hash TEXT NOT NULL,"
    " expiration INTEGER, last_seen INTEGER, created_at INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS api_keys_prefix ON api_keys (prefix)",

    "CREATE TABLE IF NOT EXISTS nodes ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " machine_key TEXT NOT NULL, node_key TEXT NOT NULL, disco_key TEXT,"
    " endpoints TEXT, host_info TEXT, ipv4 TEXT, ipv6 TEXT, hostname TEXT,"
    " given_name TEXT NOT NULL,"
    " user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,"
    " register_method TEXT, tags TEXT,"
    " auth_key_id INTEGER REFERENCES pre_auth_keys (id) ON DELETE SET NULL,"
    " ephemeral INTEGER NOT NULL DEFAULT 0, cap_version INTEGER NOT NULL DEFAULT 0,"
    " last_seen INTEGER, expiry INTEGER,"
    " version INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS nodes_node_key ON nodes (node_key)",
    "CREATE UNIQUE INDEX IF NOT EXISTS nodes_given_name ON nodes (given_name)",
    "CREATE UNIQUE INDEX IF NOT EXISTS nodes_ipv4 ON nodes (ipv4)",
    "CREATE UNIQUE INDEX IF NOT EXISTS nodes_ipv6 ON nodes (ipv6)",
    "CREATE INDEX IF NOT EXISTS nodes_machine_key ON nodes (machine_key)",
    "CREATE INDEX IF NOT EXISTS nodes_user_id ON nodes (user_id)",
    "CREATE INDEX IF NOT EXISTS nodes_auth_key_id ON nodes (auth_key_id)",
    "CREATE INDEX IF NOT EXISTS nodes_version ON nodes (version)",

    "CREATE TABLE IF NOT EXISTS node_routes ("
    " node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,"
    " prefix TEXT NOT NULL,"
    " advertised INTEGER NOT NULL DEFAULT 0, approved INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (node_id, prefix))",

    "CREATE TABLE IF NOT EXISTS policies ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " data TEXT NOT NULL, created_at INTEGER NOT NULL)",

    "CREATE TABLE IF NOT EXISTS registration_requests ("
    " auth_id TEXT NOT NULL PRIMARY KEY,"
    " machine_key TEXT NOT NULL, node_key TEXT NOT NULL, old_node_key TEXT,"
    " hostinfo TEXT, req_expiry INTEGER, ephemeral INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK (state IN ('pending', 'approved', 'rejected')),"
    " node_id INTEGER REFERENCES nodes (id) ON DELETE SET NULL,"
    " user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,"
    " error TEXT)",
    "CREATE INDEX IF NOT EXISTS registration_requests_expires_at"
    " ON registration_requests (expires_at)",
    "CREATE INDEX IF NOT EXISTS registration_requests_node_id"
    " ON registration_requests (node_id)",
    "CREATE INDEX IF NOT EXISTS registration_requests_user_id"
    " ON registration_requests (user_id)",

    "CREATE TABLE IF NOT EXISTS change_log ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " generation INTEGER NOT NULL, created_at INTEGER NOT NULL, kind TEXT NOT NULL,"
    " node_id INTEGER, user_id INTEGER, payload TEXT)",
    "CREATE INDEX IF NOT EXISTS change_log_generation ON change_log (generation)",
    "CREATE INDEX IF NOT EXISTS change_log_created_at ON change_log (created_at)",
    NULL
};

/* utf8mb4_bin everywhere: byte-wise comparison, as sqlite's default BINARY collation.
 * Unique keys are named after their column so that error 1062 names the field. */
#define MY_TABLE " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
static const char *const MYSQL_V1[] = {
    "CREATE TABLE IF NOT EXISTS ts_state ("
    " id INT NOT NULL PRIMARY KEY CHECK (id = 1),"
    " generation BIGINT NOT NULL,"
    " pruned_through BIGINT NOT NULL DEFAULT 0)" MY_TABLE,
    "INSERT IGNORE INTO ts_state (id, generation, pruned_through) VALUES (1, 0, 0)",

    "CREATE TABLE IF NOT EXISTS users ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " name VARCHAR(255) NOT NULL, display_name VARCHAR(255) NULL, email VARCHAR(255) NULL,"
    " provider VARCHAR(64) NULL, provider_identifier VARCHAR(512) NULL,"
    " profile_pic_url TEXT NULL,"
    " version BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " UNIQUE KEY name (name), UNIQUE KEY provider_identifier (provider_identifier))" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS pre_auth_keys ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " prefix VARCHAR(64) NOT NULL, hash VARCHAR(128) NOT NULL, user_id BIGINT NULL,"
    " reusable TINYINT NOT NULL DEFAULT 0, ephemeral TINYINT NOT NULL DEFAULT 0,"
    " used TINYINT NOT NULL DEFAULT 0, tags TEXT NULL, expiration BIGINT NULL,"
    " revoked BIGINT NULL, created_at BIGINT NOT NULL, description VARCHAR(255) NULL,"
    " UNIQUE KEY prefix (prefix), KEY user_id (user_id),"
    " CONSTRAINT pre_auth_keys_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"
    "  ON DELETE SET NULL)" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS api_keys ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " prefix VARCHAR(64) NOT NULL, hash VARCHAR(128) NOT NULL,"
    " expiration BIGINT NULL, last_seen BIGINT NULL, created_at BIGINT NOT NULL,"
    " UNIQUE KEY prefix (prefix))" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS nodes ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " machine_key VARCHAR(80) NOT NULL, node_key VARCHAR(80) NOT NULL,"
    " disco_key VARCHAR(80) NULL, endpoints TEXT NULL, host_info MEDIUMTEXT NULL,"
    " ipv4 VARCHAR(15) NULL, ipv6 VARCHAR(39) NULL, hostname VARCHAR(255) NULL,"
    " given_name VARCHAR(63) NOT NULL, user_id BIGINT NULL, register_method VARCHAR(16) NULL,"
    " tags TEXT NULL, auth_key_id BIGINT NULL,"
    " ephemeral TINYINT NOT NULL DEFAULT 0, cap_version INT NOT NULL DEFAULT 0,"
    " last_seen BIGINT NULL, expiry BIGINT NULL,"
    " version BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " UNIQUE KEY node_key (node_key), UNIQUE KEY given_name (given_name),"
    " UNIQUE KEY ipv4 (ipv4), UNIQUE KEY ipv6 (ipv6),"
    " KEY machine_key (machine_key), KEY user_id (user_id), KEY auth_key_id (auth_key_id),"
    " KEY version (version),"
    " CONSTRAINT nodes_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"
    "  ON DELETE CASCADE,"
    " CONSTRAINT nodes_auth_key_fk FOREIGN KEY (auth_key_id) REFERENCES pre_auth_keys (id)"
    "  ON DELETE SET NULL)" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS node_routes ("
    " node_id BIGINT NOT NULL, prefix VARCHAR(43) NOT NULL,"
    " advertised TINYINT NOT NULL DEFAULT 0, approved TINYINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (node_id, prefix),"
    " CONSTRAINT node_routes_node_fk FOREIGN KEY (node_id) REFERENCES nodes (id)"
    "  ON DELETE CASCADE)" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS policies ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " data MEDIUMTEXT NOT NULL, created_at BIGINT NOT NULL)" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS registration_requests ("
    " auth_id VARCHAR(64) NOT NULL PRIMARY KEY,"
    " machine_key VARCHAR(80) NOT NULL, node_key VARCHAR(80) NOT NULL,"
    " old_node_key VARCHAR(80) NULL, hostinfo MEDIUMTEXT NULL, req_expiry BIGINT NULL,"
    " ephemeral TINYINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
    " state VARCHAR(16) NOT NULL DEFAULT 'pending'"
    "  CHECK (state IN ('pending', 'approved', 'rejected')),"
    " node_id BIGINT NULL, user_id BIGINT NULL, error TEXT NULL,"
    " KEY expires_at (expires_at), KEY node_id (node_id), KEY user_id (user_id),"
    " CONSTRAINT registration_node_fk FOREIGN KEY (node_id) REFERENCES nodes (id)"
    "  ON DELETE SET NULL,"
    " CONSTRAINT registration_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"
    "  ON DELETE SET NULL)" MY_TABLE,

    "CREATE TABLE IF NOT EXISTS change_log ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " generation BIGINT NOT NULL, created_at BIGINT NOT NULL, kind VARCHAR(32) NOT NULL,"
    " node_id BIGINT NULL, user_id BIGINT NULL, payload TEXT NULL,"
    " KEY generation (generation), KEY created_at (created_at))" MY_TABLE,
    NULL
};

/* Version 2: where sequential address allocation goes on, one row per prefix, so that a
 * registration reads one row instead of every node's address (docs/schema.md). */
static const char *const SQLITE_V2[] = {
    "CREATE TABLE IF NOT EXISTS ip_cursors ("
    " prefix TEXT NOT NULL PRIMARY KEY, last_ip TEXT NOT NULL)",
    NULL
};
static const char *const MYSQL_V2[] = {
    "CREATE TABLE IF NOT EXISTS ip_cursors ("
    " prefix VARCHAR(43) NOT NULL PRIMARY KEY, last_ip VARCHAR(39) NOT NULL)" MY_TABLE,
    NULL
};

typedef struct {
    int version;
    const char *const *sqlite;
    const char *const *mysql;
} migration_t;

/* Step N takes a database at version N-1 to N. Append; never edit a released step. */
static const migration_t MIGRATIONS[] = {
    { 1, SQLITE_V1, MYSQL_V1 },
    { 2, SQLITE_V2, MYSQL_V2 },
};
#define N_MIGRATIONS ((int)(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])))

static const char SQL_VERSION_TABLE_SQLITE[] =
    "CREATE TABLE IF NOT EXISTS ts_schema_version ("
    " version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL)";
static const char SQL_VERSION_TABLE_MYSQL[] =
    "CREATE TABLE IF NOT EXISTS ts_schema_version ("
    " version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)" MY_TABLE;

static const ts_stmt_def_t SQL_VERSION_INSERT = {
    "schema_version_insert", "schema version",
    "INSERT INTO ts_schema_version (version, applied_at) VALUES (%d, %lld)", NULL
};

static apr_status_t read_version(ts_store_t *st, apr_pool_t *p, int *version,
                                 const char **err)
{
    const char *v = NULL;
    apr_status_t rv;

    *version = 0;
    rv = ts_store__query_value(st, p, st->mysql
        ? "SELECT COUNT(*) FROM information_schema.tables"
          " WHERE table_schema = DATABASE() AND table_name = 'ts_schema_version'"
        : "SELECT COUNT(*) FROM sqlite_master"
          " WHERE type = 'table' AND name = 'ts_schema_version'", &v, err);
    if (rv != APR_SUCCESS || !v || atoi(v) == 0) {
        return rv;
    }
    rv = ts_store__query_value(st, p, "SELECT MAX(version) FROM ts_schema_version", &v, err);
    if (rv == APR_SUCCESS && v) {
        *version = atoi(v);
    }
    return rv;
}

apr_status_t ts_store_schema_version(ts_store_t *st, apr_pool_t *p, int *version,
                                     const char **err)
{
    apr_status_t rv = ts_store__session_ready(st, p, err);

    if (rv == APR_SUCCESS) {
        rv = read_version(st, p, version, err);
    }
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "reading the schema version: %s", *err);
    }
    return rv;
}

static apr_status_t run_step(ts_store_t *st, apr_pool_t *p, const migration_t *m,
                             const char **err)
{
    const char *const *sql = st->mysql ? m->mysql : m->sqlite;
    apr_int64_t now = apr_time_now();
    const void *args[2];
    apr_status_t rv;

    for (; *sql; sql++) {
        rv = ts_store__query(st, p, *sql, err);
        if (rv != APR_SUCCESS) {
            *err = apr_psprintf(p, "migration to version %d: %s", m->version, *err);
            return rv;
        }
    }
    /* sqlite's legacy-prepared statements die with the old schema: prepare afresh */
    ts_store__forget_statements(st);
    args[0] = &m->version;
    args[1] = &now;
    rv = ts_store__exec_raw(st, p, &SQL_VERSION_INSERT, args, err);
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "recording schema version %d: %s", m->version, *err);
    }
    return rv;
}

/* Runs with the schema lock held, so it sees either no schema or a finished one. */
static apr_status_t migrate(ts_store_t *st, apr_pool_t *p, const char **err)
{
    apr_status_t rv;
    int current, i;

    rv = ts_store__query(st, p, st->mysql ? SQL_VERSION_TABLE_MYSQL : SQL_VERSION_TABLE_SQLITE,
                         err);
    if (rv == APR_SUCCESS) {
        rv = read_version(st, p, &current, err);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (current > TS_STORE_SCHEMA_VERSION) {
        *err = apr_psprintf(p, "the database has schema version %d, newer than the %d this "
                            "build understands: upgrade mod_ts2021/ts2021ctl or use another "
                            "database", current, TS_STORE_SCHEMA_VERSION);
        return TS_STORE_ESCHEMA;
    }
    for (i = 0; i < N_MIGRATIONS && rv == APR_SUCCESS; i++) {
        if (MIGRATIONS[i].version > current) {
            rv = run_step(st, p, &MIGRATIONS[i], err);
        }
    }
    return rv;
}

/* MySQL DDL commits implicitly, so a transaction cannot fence it: an advisory lock named
 * after the database does, and IF NOT EXISTS lets a run cut short be repeated. */
static apr_status_t apply_mysql(ts_store_t *st, apr_pool_t *p, const char **err)
{
    const char *got = NULL, *ignored = NULL, *uerr = NULL;
    apr_status_t rv;

    rv = ts_store__query_value(st, p, "SELECT GET_LOCK(LEFT(CONCAT('ts2021.schema.', "
                               "IFNULL(DATABASE(), '')), 64), " TS_SCHEMA_LOCK_WAIT_S ")",
                               &got, err);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (!got || strcmp(got, "1") != 0) {
        *err = "another process held the schema lock for " TS_SCHEMA_LOCK_WAIT_S " s";
        return TS_STORE_EBUSY;
    }
    rv = migrate(st, p, err);
    (void)ts_store__query_value(st, p, "SELECT RELEASE_LOCK(LEFT(CONCAT('ts2021.schema.', "
                                "IFNULL(DATABASE(), '')), 64))", &ignored, &uerr);
    return rv;
}

/* WAL lets readers run beside the one writer. The mode sticks to the file, so setting it
 * every time is a cheap no-op; switching needs a moment alone with the file, so a process
 * that collides with another one starting up waits and tries again. */
static apr_status_t sqlite_wal(ts_store_t *st, apr_pool_t *p, const char **err)
{
    const char *mode = NULL;
    apr_status_t rv = APR_SUCCESS;
    int attempt;

    for (attempt = 1; attempt <= TS_WAL_ATTEMPTS; attempt++) {
        rv = ts_store__query_value(st, p, "PRAGMA journal_mode = WAL", &mode, err);
        /* in-memory databases answer "memory" and cannot do WAL: fine for them */
        if (rv == APR_SUCCESS && mode
            && (strcmp(mode, "wal") == 0 || strcmp(mode, "memory") == 0)) {
            return APR_SUCCESS;
        }
        ts_store__backoff(attempt);
    }
    if (rv == APR_SUCCESS) {
        *err = apr_psprintf(p, "cannot switch to WAL journal mode (still '%s')",
                            mode ? mode : "unknown");
        rv = TS_STORE_EDB;
    }
    return rv;
}

static apr_status_t apply_sqlite(ts_store_t *st, apr_pool_t *p, const char **err)
{
    const char *ignored = NULL;
    apr_status_t rv = sqlite_wal(st, p, err);
    int attempt;

    /* BEGIN IMMEDIATE takes the write lock up front: racing processes queue here, and the
     * second one finds the schema complete. */
    for (attempt = 1; rv == APR_SUCCESS; attempt++) {
        rv = ts_store__query(st, p, "BEGIN IMMEDIATE", err);
        if (rv != TS_STORE_EBUSY || attempt >= TS_BEGIN_ATTEMPTS) {
            break;
        }
        rv = APR_SUCCESS;
        ts_store__backoff(attempt);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = migrate(st, p, err);
    if (rv == APR_SUCCESS) {
        rv = ts_store__query(st, p, "COMMIT", err);
    }
    if (rv != APR_SUCCESS) {
        (void)ts_store__query(st, p, "ROLLBACK", &ignored);
        ts_store__forget_statements(st);
    }
    return rv;
}

apr_status_t ts_store_schema_apply(ts_store_t *st, const char **err)
{
    const char *msg = NULL;
    apr_pool_t *sp;
    apr_status_t rv;

    apr_pool_create(&sp, st->pool);
    rv = ts_store__session_ready(st, sp, &msg);
    if (rv == APR_SUCCESS) {
        rv = st->mysql ? apply_mysql(st, sp, &msg) : apply_sqlite(st, sp, &msg);
    }
    if (rv != APR_SUCCESS) {
        apr_snprintf(st->schema_err, sizeof(st->schema_err),
                     "applying the database schema: %s", msg ? msg : "failed");
        *err = st->schema_err;
    }
    apr_pool_destroy(sp);
    return rv;
}
