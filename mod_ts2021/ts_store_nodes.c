/* ts_store_nodes.c: the nodes and node_routes tables: registration (node + routes + pre-auth
 * key use in one transaction), lookups, updates, last-seen, deletion. */
#include "ts_store_int.h"
#include "ts_util.h"

#include <string.h>
#include <stdlib.h>
#include <arpa/inet.h>

#define NODE_COLS "id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, " \
    "hostname, given_name, user_id, register_method, tags, auth_key_id, ephemeral, " \
    "cap_version, last_seen, expiry, version, created_at, updated_at"

static const ts_stmt_def_t SQL_NODE_INSERT = {
    "node_insert", "node",
    "INSERT INTO nodes (machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, "
    "hostname, given_name, user_id, register_method, tags, auth_key_id, ephemeral, "
    "cap_version, last_seen, expiry, version, created_at, updated_at) VALUES (%s, %s, %s, "
    "%s, %s, %s, %s, %s, %s, %lld, %s, %s, %lld, %d, %d, %lld, %lld, %lld, %lld, %lld)", NULL
};
static const ts_stmt_def_t SQL_NODE_UPDATE = {
    "node_update", "node",
    "UPDATE nodes SET machine_key = %s, node_key = %s, disco_key = %s, endpoints = %s, "
    "host_info = %s, ipv4 = %s, ipv6 = %s, hostname = %s, given_name = %s, user_id = %lld, "
    "register_method = %s, tags = %s, auth_key_id = %lld, ephemeral = %d, cap_version = %d, "
    "last_seen = %lld, expiry = %lld, version = %lld, updated_at = %lld "
    "WHERE id = %lld AND (%lld = 0 OR version = %lld)", NULL
};
static const ts_stmt_def_t SQL_NODE_BY_ID = {
    "node_by_id", "node", "SELECT " NODE_COLS " FROM nodes WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_NODE_BY_NODE_KEY = {
    "node_by_node_key", "node", "SELECT " NODE_COLS " FROM nodes WHERE node_key = %s", NULL
};
static const ts_stmt_def_t SQL_NODE_BY_GIVEN_NAME = {
    "node_by_given_name", "node", "SELECT " NODE_COLS " FROM nodes WHERE given_name = %s", NULL
};
static const ts_stmt_def_t SQL_NODE_LIST = {
    "node_list", "node", "SELECT " NODE_COLS " FROM nodes ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_NODE_LIST_USER = {
    "node_list_by_user", "node",
    "SELECT " NODE_COLS " FROM nodes WHERE user_id = %lld ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_NODE_LIST_MKEY = {
    "node_list_by_machine_key", "node",
    "SELECT " NODE_COLS " FROM nodes WHERE machine_key = %s ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_NODE_LIST_SINCE = {
    "node_list_since", "node",
    "SELECT " NODE_COLS " FROM nodes WHERE version > %lld ORDER BY id", NULL
};
static const ts_stmt_def_t SQL_NODE_VERSION = {
    "node_version", "node", "SELECT version, user_id, node_key FROM nodes WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_NODE_SEEN = {
    "node_set_last_seen", "node",
    "UPDATE nodes SET last_seen = %lld, version = %lld, updated_at = %lld WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_NODE_TOUCH = {
    "node_touch", "node",
    "UPDATE nodes SET version = %lld, updated_at = %lld WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_NODE_DELETE = {
    "node_delete", "node", "DELETE FROM nodes WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_ROUTE_INSERT = {
    "route_insert", "route",
    "INSERT INTO node_routes (node_id, prefix, advertised, approved) VALUES (%lld, %s, %d, %d)",
    NULL
};
static const ts_stmt_def_t SQL_ROUTE_CLEAR = {
    "route_clear", "route", "DELETE FROM node_routes WHERE node_id = %lld", NULL
};
static const ts_stmt_def_t SQL_ROUTE_LIST = {
    "route_list", "route",
    "SELECT prefix, advertised, approved FROM node_routes WHERE node_id = %lld ORDER BY prefix",
    NULL
};
static const ts_stmt_def_t SQL_ROUTE_LIST_ALL = {
    "route_list_all", "route",
    "SELECT node_id, prefix, advertised, approved FROM node_routes ORDER BY node_id, prefix",
    NULL
};
static const ts_stmt_def_t SQL_KEY_FOR_USE = {
    "preauth_key_for_use", "pre-auth key",
    "SELECT reusable, used, revoked, expiration FROM pre_auth_keys WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_KEY_MARK_USED = {
    "preauth_key_mark_used", "pre-auth key",
    "UPDATE pre_auth_keys SET used = 1 WHERE id = %lld", NULL
};

/* Lookups a node's write transaction makes to choose its unique values: each one an index
 * probe or range, so that a registration costs the same in any size of tailnet. On MariaDB
 * they are locking reads, which see the latest committed rows whatever the transaction's
 * snapshot; the generation lock already serialises writers, so they wait for nobody. */
static const ts_stmt_def_t SQL_NODE_NAME_OWNER = {
    "node_name_owner", "node", "SELECT id FROM nodes WHERE given_name = %s",
    "SELECT id FROM nodes WHERE given_name = %s FOR UPDATE"
};
static const ts_stmt_def_t SQL_NODE_NAMES_RANGE = {
    "node_names_range", "node",
    "SELECT id, given_name FROM nodes WHERE given_name >= %s AND given_name < %s",
    "SELECT id, given_name FROM nodes WHERE given_name >= %s AND given_name < %s FOR UPDATE"
};
static const ts_stmt_def_t SQL_NODE_IPV4_OWNER = {
    "node_ipv4_owner", "node", "SELECT id FROM nodes WHERE ipv4 = %s",
    "SELECT id FROM nodes WHERE ipv4 = %s FOR UPDATE"
};
static const ts_stmt_def_t SQL_NODE_IPV6_OWNER = {
    "node_ipv6_owner", "node", "SELECT id FROM nodes WHERE ipv6 = %s",
    "SELECT id FROM nodes WHERE ipv6 = %s FOR UPDATE"
};
static const ts_stmt_def_t SQL_NODE_IPV4_ALL = {
    "node_ipv4_all", "node", "SELECT ipv4 FROM nodes WHERE ipv4 IS NOT NULL",
    "SELECT ipv4 FROM nodes WHERE ipv4 IS NOT NULL LOCK IN SHARE MODE"
};
static const ts_stmt_def_t SQL_NODE_IPV6_ALL = {
    "node_ipv6_all", "node", "SELECT ipv6 FROM nodes WHERE ipv6 IS NOT NULL",
    "SELECT ipv6 FROM nodes WHERE ipv6 IS NOT NULL LOCK IN SHARE MODE"
};
static const ts_stmt_def_t SQL_IP_CURSOR_GET = {
    "ip_cursor_get", "address cursor", "SELECT last_ip FROM ip_cursors WHERE prefix = %s",
    "SELECT last_ip FROM ip_cursors WHERE prefix = %s FOR UPDATE"
};
static const ts_stmt_def_t SQL_IP_CURSOR_SET = {
    "ip_cursor_set", "address cursor",
    "REPLACE INTO ip_cursors (prefix, last_ip) VALUES (%s, %s)", NULL
};

static ts_node_t *node_from_row(apr_pool_t *p, const char **r)
{
    ts_node_t *n = apr_pcalloc(p, sizeof(*n));

    n->id = ts_store__i64(r[0]);
    n->machine_key = r[1];
    n->node_key = r[2];
    n->disco_key = r[3];
    n->endpoints = r[4];
    n->host_info = r[5];
    n->ipv4 = r[6];
    n->ipv6 = r[7];
    n->hostname = r[8];
    n->given_name = r[9];
    n->user_id = ts_store__i64(r[10]);
    n->register_method = r[11];
    n->tags = r[12];
    n->auth_key_id = ts_store__i64(r[13]);
    n->ephemeral = ts_store__int(r[14]);
    n->cap_version = ts_store__int(r[15]);
    n->last_seen = ts_store__i64(r[16]);
    n->expiry = ts_store__i64(r[17]);
    n->version = ts_store__i64(r[18]);
    n->created_at = ts_store__i64(r[19]);
    n->updated_at = ts_store__i64(r[20]);
    return n;
}

/* Addresses must be in canonical text form: the unique indexes compare strings, so
 * "fd7a:115c:a1e0:0::1" would otherwise slip past "fd7a:115c:a1e0::1". */
static apr_status_t check_ip(apr_pool_t *p, const char **err, const char *field,
                             const char *v, int family)
{
    unsigned char buf[16];
    char canon[INET6_ADDRSTRLEN];

    if (!v || !*v) {
        return APR_SUCCESS;
    }
    if (inet_pton(family, v, buf) != 1
        || !inet_ntop(family, buf, canon, sizeof(canon)) || strcmp(canon, v) != 0) {
        *err = apr_psprintf(p, "node: %s '%s' is not a canonical IPv%d address", field, v,
                            family == AF_INET ? 4 : 6);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

/* Canonical CIDR: canonical address, no host bits set, length within the family. */
static apr_status_t check_prefix(apr_pool_t *p, const char **err, const char *v)
{
    unsigned char buf[16];
    char canon[INET6_ADDRSTRLEN];
    const char *slash = v ? strchr(v, '/') : NULL;
    char *addr, *end;
    long bits;
    int family, maxbits, i;

    if (!slash || slash == v || strlen(v) > 43) {
        goto bad;
    }
    addr = apr_pstrmemdup(p, v, (apr_size_t)(slash - v));
    family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    maxbits = family == AF_INET ? 32 : 128;
    bits = strtol(slash + 1, &end, 10);
    if (!slash[1] || *end || bits < 0 || bits > maxbits || (slash[1] == '0' && slash[2])
        || inet_pton(family, addr, buf) != 1
        || !inet_ntop(family, buf, canon, sizeof(canon)) || strcmp(canon, addr) != 0) {
        goto bad;
    }
    for (i = 0; i < maxbits / 8; i++) {
        int keep = bits >= (i + 1) * 8 ? 8 : (bits > i * 8 ? (int)bits - i * 8 : 0);
        if (buf[i] & (unsigned char)~(0xff << (8 - keep))) {
            goto bad;
        }
    }
    return APR_SUCCESS;
bad:
    *err = apr_psprintf(p, "route: prefix '%s' is not a canonical CIDR prefix", v ? v : "");
    return APR_EINVAL;
}

/* The fields a registration chooses inside its transaction. */
static apr_status_t node_check_unique(apr_pool_t *p, const ts_node_t *n, const char **err)
{
    apr_status_t rv;

    if ((rv = check_ip(p, err, "ipv4", n->ipv4, AF_INET))
        || (rv = check_ip(p, err, "ipv6", n->ipv6, AF_INET6))
        || (rv = ts_store__check_text(p, err, "node", "given_name", n->given_name, 63, 1))) {
        return rv;
    }
    return APR_SUCCESS;
}

/* Every other field. */
static apr_status_t node_check_rest(apr_pool_t *p, const ts_node_t *n, const char **err)
{
    apr_status_t rv;

    if ((rv = ts_store__check_key(p, err, "node", "machine_key", n->machine_key, "mkey:", 1))
        || (rv = ts_store__check_key(p, err, "node", "node_key", n->node_key, "nodekey:", 1))
        || (rv = ts_store__check_key(p, err, "node", "disco_key", n->disco_key,
                                     "discokey:", 0))
        || (rv = ts_store__check_json(p, err, "node", "endpoints", n->endpoints,
                                      TS_STORE_TEXT_MAX, 1))
        || (rv = ts_store__check_json(p, err, "node", "host_info", n->host_info,
                                      TS_STORE_BLOB_MAX, 0))
        || (rv = ts_store__check_text(p, err, "node", "hostname", n->hostname, 255, 0))
        || (rv = ts_store__check_text(p, err, "node", "register_method", n->register_method,
                                      16, 0))
        || (rv = ts_store__check_json(p, err, "node", "tags", n->tags, TS_STORE_TEXT_MAX, 1))) {
        return rv;
    }
    return APR_SUCCESS;
}

static apr_status_t node_check(apr_pool_t *p, const ts_node_t *n, const char **err)
{
    apr_status_t rv = node_check_rest(p, n, err);

    return rv == APR_SUCCESS ? node_check_unique(p, n, err) : rv;
}

static apr_status_t routes_check(apr_pool_t *p, const apr_array_header_t *routes,
                                 const char **err)
{
    int i;

    for (i = 0; routes && i < routes->nelts; i++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, i, ts_route_t);
        apr_status_t rv = check_prefix(p, err, r->prefix);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    return APR_SUCCESS;
}

/* Single-use keys must not register two nodes, even from two processes at once: the check
 * and the mark happen inside the node's own (writer-serialized) transaction. */
static apr_status_t use_preauth_key(ts_store_tx_t *tx, apr_int64_t key_id)
{
    apr_array_header_t *rows;
    const void *args[] = { &key_id };
    const char **r;
    apr_status_t rv = ts_store__tx_select(tx, &SQL_KEY_FOR_USE, args, &rows);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (rows->nelts == 0) {
        return ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "pre-auth key %" APR_INT64_T_FMT
                                 " not found", key_id);
    }
    r = TS_ROW(rows, 0);
    if (ts_store__i64(r[2]) != 0) {
        return ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "pre-auth key %" APR_INT64_T_FMT
                                 " is revoked", key_id);
    }
    if (ts_store__i64(r[3]) != 0 && ts_store__i64(r[3]) <= tx->now) {
        return ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "pre-auth key %" APR_INT64_T_FMT
                                 " has expired", key_id);
    }
    if (ts_store__int(r[1])) {
        if (!ts_store__int(r[0])) {
            return ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "pre-auth key %" APR_INT64_T_FMT
                                     " is single-use and already used", key_id);
        }
        return APR_SUCCESS;
    }
    return ts_store__tx_exec(tx, &SQL_KEY_MARK_USED, args, NULL);
}

static apr_status_t routes_insert(ts_store_tx_t *tx, apr_int64_t node_id,
                                  const apr_array_header_t *routes)
{
    apr_status_t rv = APR_SUCCESS;
    int i;

    for (i = 0; routes && rv == APR_SUCCESS && i < routes->nelts; i++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, i, ts_route_t);
        int adv = r->advertised ? 1 : 0, appr = r->approved ? 1 : 0;
        const void *args[] = { &node_id, r->prefix, &adv, &appr };
        rv = ts_store__tx_exec(tx, &SQL_ROUTE_INSERT, args, NULL);
        if (rv == TS_STORE_ECONFLICT) {
            rv = ts_store__tx_fail(tx, rv, "route %s is listed twice (%s)", r->prefix, tx->msg);
        }
    }
    return rv;
}

typedef struct {
    ts_node_t *n;
    const apr_array_header_t *routes;
    ts_store_node_fill_fn fill;
    void *fill_baton;
} node_create_t;

static apr_status_t node_insert(ts_store_tx_t *tx, node_create_t *b);

static apr_status_t node_create_tx(ts_store_tx_t *tx, void *baton)
{
    node_create_t *b = baton;
    apr_status_t rv = ts_store__tx_user_exists(tx, "node", b->n->user_id);

    if (rv == APR_SUCCESS && b->n->auth_key_id) {
        rv = use_preauth_key(tx, b->n->auth_key_id);
    }
    /* chosen after the generation lock: no other writer can take them before the commit */
    if (rv == APR_SUCCESS && b->fill) {
        rv = b->fill(tx, b->n, b->fill_baton);
        if (rv == APR_SUCCESS && node_check_unique(tx->p, b->n, &tx->msg) != APR_SUCCESS) {
            rv = APR_EINVAL;
        }
    }
    return rv == APR_SUCCESS ? node_insert(tx, b) : rv;
}

static apr_status_t node_insert(ts_store_tx_t *tx, node_create_t *b)
{
    ts_node_t *n = b->n;
    int eph = n->ephemeral ? 1 : 0;
    const void *args[] = { n->machine_key, n->node_key, ts_store__nz(n->disco_key),
        ts_store__nz(n->endpoints), ts_store__nz(n->host_info), ts_store__nz(n->ipv4),
        ts_store__nz(n->ipv6), ts_store__nz(n->hostname), n->given_name, TS_OPT(n->user_id),
        ts_store__nz(n->register_method), ts_store__nz(n->tags), TS_OPT(n->auth_key_id), &eph,
        &n->cap_version, TS_OPT(n->last_seen), TS_OPT(n->expiry), &tx->generation, &tx->now,
        &tx->now };
    apr_status_t rv = ts_store__tx_exec(tx, &SQL_NODE_INSERT, args, NULL);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_last_id(tx, &n->id);
    }
    if (rv == APR_SUCCESS) {
        rv = routes_insert(tx, n->id, b->routes);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_NODE_CREATED, n->id, n->user_id, NULL);
    }
    n->version = tx->generation;
    n->created_at = n->updated_at = tx->now;
    return rv;
}

apr_status_t ts_store__node_create_with(ts_store_t *st, apr_pool_t *p, ts_node_t *n,
                                        const apr_array_header_t *routes,
                                        ts_store_node_fill_fn fill, void *baton,
                                        const char **err)
{
    node_create_t b;
    apr_status_t rv = fill ? node_check_rest(p, n, err) : node_check(p, n, err);

    if (rv == APR_SUCCESS) {
        rv = routes_check(p, routes, err);
    }
    if (rv != APR_SUCCESS) {
        n->id = 0;
        return rv;
    }
    b.n = n;
    b.routes = routes;
    b.fill = fill;
    b.fill_baton = baton;
    rv = ts_store__write(st, p, fill ? apr_psprintf(p, "creating a node for '%s'",
                                                    n->hostname ? n->hostname : "")
                                     : apr_psprintf(p, "creating node '%s'", n->given_name),
                         node_create_tx, &b, err);
    if (rv != APR_SUCCESS) {
        n->id = 0;
    }
    return rv;
}

apr_status_t ts_store_node_create(ts_store_t *st, apr_pool_t *p, ts_node_t *n,
                                  const apr_array_header_t *routes, const char **err)
{
    return ts_store__node_create_with(st, p, n, routes, NULL, NULL, err);
}

/* ---- lookups for the unique values of a node being written ---- */

static apr_status_t first_id(ts_store_tx_t *tx, const ts_stmt_def_t *def, const char *value,
                             apr_int64_t *id)
{
    apr_array_header_t *rows;
    const void *args[] = { value };
    apr_status_t rv = ts_store__tx_select(tx, def, args, &rows);

    *id = (rv == APR_SUCCESS && rows->nelts) ? ts_store__i64(TS_ROW(rows, 0)[0]) : 0;
    return rv;
}

apr_status_t ts_store__tx_name_owner(ts_store_tx_t *tx, const char *name, apr_int64_t *id)
{
    return first_id(tx, &SQL_NODE_NAME_OWNER, name, id);
}

apr_status_t ts_store__tx_names_with_prefix(ts_store_tx_t *tx, const char *prefix,
                                            apr_int64_t self_id, apr_array_header_t **names)
{
    apr_size_t len = strlen(prefix);
    char *hi = apr_pstrdup(tx->scratch, prefix);
    apr_array_header_t *rows;
    const void *args[2];
    apr_status_t rv;
    int i;

    *names = apr_array_make(tx->p, 4, sizeof(const char *));
    if (len == 0 || (unsigned char)hi[len - 1] >= 0x7f) {
        return ts_store__tx_fail(tx, APR_EINVAL, "no name range for prefix '%s'", prefix);
    }
    /* [prefix, prefix with its last byte + 1): exactly the names that start with prefix */
    hi[len - 1] = (char)(hi[len - 1] + 1);
    args[0] = prefix;
    args[1] = hi;
    rv = ts_store__tx_select(tx, &SQL_NODE_NAMES_RANGE, args, &rows);
    for (i = 0; rv == APR_SUCCESS && i < rows->nelts; i++) {
        if (ts_store__i64(TS_ROW(rows, i)[0]) != self_id) {
            APR_ARRAY_PUSH(*names, const char *) = TS_ROW(rows, i)[1];
        }
    }
    return rv;
}

apr_status_t ts_store__tx_ip_used(ts_store_tx_t *tx, int family, const char *ip, int *used)
{
    apr_int64_t id = 0;
    apr_status_t rv = first_id(tx, family == 6 ? &SQL_NODE_IPV6_OWNER : &SQL_NODE_IPV4_OWNER,
                               ip, &id);

    *used = id != 0;
    return rv;
}

apr_status_t ts_store__tx_ips(ts_store_tx_t *tx, int family, apr_array_header_t **ips)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__tx_select(tx, family == 6 ? &SQL_NODE_IPV6_ALL
                                                          : &SQL_NODE_IPV4_ALL, NULL, &rows);
    int i;

    *ips = apr_array_make(tx->p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(const char *));
    for (i = 0; rv == APR_SUCCESS && i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*ips, const char *) = TS_ROW(rows, i)[0];
    }
    return rv;
}

apr_status_t ts_store__tx_ip_cursor_get(ts_store_tx_t *tx, const char *prefix,
                                        const char **last)
{
    apr_array_header_t *rows;
    const void *args[] = { prefix };
    apr_status_t rv = ts_store__tx_select(tx, &SQL_IP_CURSOR_GET, args, &rows);

    *last = (rv == APR_SUCCESS && rows->nelts) ? TS_ROW(rows, 0)[0] : NULL;
    return rv;
}

apr_status_t ts_store__tx_ip_cursor_set(ts_store_tx_t *tx, const char *prefix,
                                        const char *last)
{
    const void *args[] = { prefix, last };

    return ts_store__tx_exec(tx, &SQL_IP_CURSOR_SET, args, NULL);
}

static apr_status_t node_get(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                             const void **args, const char *which, ts_node_t **n,
                             const char **err)
{
    const char **row;
    apr_status_t rv = ts_store__select_one(st, p, def, args, &row, err);

    *n = NULL;
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "node %s: %s", which, *err);
        return rv;
    }
    *n = node_from_row(p, row);
    return APR_SUCCESS;
}

apr_status_t ts_store_node_get(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                               ts_node_t **n, const char **err)
{
    const void *args[] = { &id };

    return node_get(st, p, &SQL_NODE_BY_ID, args, apr_psprintf(p, "%" APR_INT64_T_FMT, id),
                    n, err);
}

apr_status_t ts_store_node_get_by_node_key(ts_store_t *st, apr_pool_t *p, const char *node_key,
                                           ts_node_t **n, const char **err)
{
    const void *args[] = { node_key ? node_key : "" };

    return node_get(st, p, &SQL_NODE_BY_NODE_KEY, args,
                    apr_psprintf(p, "with key '%s'", (const char *)args[0]), n, err);
}

apr_status_t ts_store_node_get_by_given_name(ts_store_t *st, apr_pool_t *p,
                                             const char *given_name, ts_node_t **n,
                                             const char **err)
{
    const void *args[] = { given_name ? given_name : "" };

    return node_get(st, p, &SQL_NODE_BY_GIVEN_NAME, args,
                    apr_psprintf(p, "'%s'", (const char *)args[0]), n, err);
}

static apr_status_t node_list(ts_store_t *st, apr_pool_t *p, const ts_stmt_def_t *def,
                              const void **args, apr_array_header_t **nodes, const char **err)
{
    apr_array_header_t *rows;
    apr_status_t rv = ts_store__select(st, p, def, args, &rows, err);
    int i;

    *nodes = apr_array_make(p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(ts_node_t *));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "listing nodes: %s", *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*nodes, ts_node_t *) = node_from_row(p, TS_ROW(rows, i));
    }
    return APR_SUCCESS;
}

apr_status_t ts_store_node_list(ts_store_t *st, apr_pool_t *p, apr_array_header_t **nodes,
                                const char **err)
{
    return node_list(st, p, &SQL_NODE_LIST, NULL, nodes, err);
}

apr_status_t ts_store_node_list_by_user(ts_store_t *st, apr_pool_t *p, apr_int64_t user_id,
                                        apr_array_header_t **nodes, const char **err)
{
    const void *args[] = { &user_id };

    return node_list(st, p, &SQL_NODE_LIST_USER, args, nodes, err);
}

apr_status_t ts_store_node_list_by_machine_key(ts_store_t *st, apr_pool_t *p,
                                               const char *machine_key,
                                               apr_array_header_t **nodes, const char **err)
{
    const void *args[] = { machine_key ? machine_key : "" };

    return node_list(st, p, &SQL_NODE_LIST_MKEY, args, nodes, err);
}

apr_status_t ts_store_node_list_changed_since(ts_store_t *st, apr_pool_t *p,
                                              apr_int64_t generation,
                                              apr_array_header_t **nodes, const char **err)
{
    const void *args[] = { &generation };

    return node_list(st, p, &SQL_NODE_LIST_SINCE, args, nodes, err);
}

/* The node's current row, for the statements that need to know it exists first. */
static apr_status_t node_current(ts_store_tx_t *tx, apr_int64_t id, const char ***row)
{
    apr_array_header_t *rows;
    const void *args[] = { &id };
    apr_status_t rv = ts_store__tx_select(tx, &SQL_NODE_VERSION, args, &rows);

    if (rv == APR_SUCCESS && rows->nelts == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "not found");
    }
    if (rv == APR_SUCCESS) {
        *row = TS_ROW(rows, 0);
    }
    return rv;
}

typedef struct {
    const ts_node_t *n;
    apr_int64_t version;      /* out: the row's new version */
    apr_time_t updated_at;
} node_update_t;

static apr_status_t node_update_tx(ts_store_tx_t *tx, void *baton)
{
    node_update_t *b = baton;
    const ts_node_t *n = b->n;
    const char **cur;
    int eph = n->ephemeral ? 1 : 0, nrows = 0;
    const void *args[] = { n->machine_key, n->node_key, ts_store__nz(n->disco_key),
        ts_store__nz(n->endpoints), ts_store__nz(n->host_info), ts_store__nz(n->ipv4),
        ts_store__nz(n->ipv6), ts_store__nz(n->hostname), n->given_name, TS_OPT(n->user_id),
        ts_store__nz(n->register_method), ts_store__nz(n->tags), TS_OPT(n->auth_key_id), &eph,
        &n->cap_version, TS_OPT(n->last_seen), TS_OPT(n->expiry), &tx->generation, &tx->now,
        &n->id, &n->version, &n->version };
    apr_status_t rv = ts_store__tx_user_exists(tx, "node", n->user_id);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_NODE_UPDATE, args, &nrows);
    }
    if (rv == APR_SUCCESS && nrows == 0) {
        rv = node_current(tx, n->id, &cur);
        if (rv == APR_SUCCESS) {
            rv = ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "changed by someone else "
                                   "(version %" APR_INT64_T_FMT " expected, now %s)",
                                   n->version, cur[0]);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_NODE_UPDATED, n->id, n->user_id, NULL);
    }
    b->version = tx->generation;
    b->updated_at = tx->now;
    return rv;
}

apr_status_t ts_store_node_update(ts_store_t *st, apr_pool_t *p, ts_node_t *n, const char **err)
{
    node_update_t b;
    apr_status_t rv = node_check(p, n, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    b.n = n;
    rv = ts_store__write(st, p, apr_psprintf(p, "updating node %" APR_INT64_T_FMT, n->id),
                         node_update_tx, &b, err);
    if (rv == APR_SUCCESS) {
        n->version = b.version;
        n->updated_at = b.updated_at;
    }
    return rv;
}

typedef struct {
    apr_int64_t id;
    apr_time_t last_seen;
    int presence;               /* -1: only last_seen; 0: went offline; 1: came online */
} node_seen_t;

static apr_status_t node_seen_tx(ts_store_tx_t *tx, void *baton)
{
    node_seen_t *b = baton;
    const void *args[] = { TS_OPT(b->last_seen), &tx->generation, &tx->now, &b->id };
    const char **cur;
    apr_status_t rv = node_current(tx, b->id, &cur);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_NODE_SEEN, args, NULL);
    }
    if (rv == APR_SUCCESS) {
        const char *kind = b->presence < 0 ? TS_CHANGE_NODE_SEEN
                           : b->presence ? TS_CHANGE_NODE_ONLINE : TS_CHANGE_NODE_OFFLINE;
        rv = ts_store__tx_change(tx, kind, b->id, ts_store__i64(cur[1]), NULL);
    }
    return rv;
}

apr_status_t ts_store_node_set_last_seen(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                         apr_time_t last_seen, const char **err)
{
    node_seen_t b;

    b.id = id;
    b.last_seen = last_seen;
    b.presence = -1;
    return ts_store__write(st, p, apr_psprintf(p, "setting last_seen of node %"
                                               APR_INT64_T_FMT, id), node_seen_tx, &b, err);
}

apr_status_t ts_store_node_set_presence(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                        int online, apr_time_t last_seen, const char **err)
{
    node_seen_t b;
    const char **row = NULL;
    const void *args[] = { &id };
    apr_status_t rv;

    b.id = id;
    b.presence = online ? 1 : 0;
    b.last_seen = last_seen;
    if (online) {
        /* Coming online keeps the stored last_seen: it is shown only while offline. */
        rv = ts_store__select_one(st, p, &SQL_NODE_BY_ID, args, &row, err);
        if (rv != APR_SUCCESS) return rv;
        b.last_seen = node_from_row(p, row)->last_seen;
    }
    return ts_store__write(st, p, apr_psprintf(p, "setting node %" APR_INT64_T_FMT " %s", id,
                                               online ? "online" : "offline"),
                           node_seen_tx, &b, err);
}

static apr_status_t node_delete_tx(ts_store_tx_t *tx, void *baton)
{
    apr_int64_t *id = baton;
    const void *args[] = { id };
    const char **cur;
    apr_status_t rv = node_current(tx, *id, &cur);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_NODE_DELETE, args, NULL);
    }
    /* the row is gone: the payload is all a reader will have to find the peer by key */
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_NODE_DELETED, *id, ts_store__i64(cur[1]),
                                 ts_store__payload(tx->scratch, "{s:s}", "node_key",
                                                   cur[2] ? cur[2] : ""));
    }
    return rv;
}

apr_status_t ts_store_node_delete(ts_store_t *st, apr_pool_t *p, apr_int64_t id,
                                  const char **err)
{
    return ts_store__write(st, p, apr_psprintf(p, "deleting node %" APR_INT64_T_FMT, id),
                           node_delete_tx, &id, err);
}

apr_status_t ts_store_node_routes_get(ts_store_t *st, apr_pool_t *p, apr_int64_t node_id,
                                      apr_array_header_t **routes, const char **err)
{
    apr_array_header_t *rows;
    const void *args[] = { &node_id };
    apr_status_t rv = ts_store__select(st, p, &SQL_ROUTE_LIST, args, &rows, err);
    int i;

    *routes = apr_array_make(p, rv == APR_SUCCESS ? rows->nelts : 0, sizeof(ts_route_t));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "reading routes of node %" APR_INT64_T_FMT ": %s", node_id,
                            *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        ts_route_t *r = &APR_ARRAY_PUSH(*routes, ts_route_t);
        r->prefix = TS_ROW(rows, i)[0];
        r->advertised = ts_store__int(TS_ROW(rows, i)[1]);
        r->approved = ts_store__int(TS_ROW(rows, i)[2]);
    }
    return APR_SUCCESS;
}

apr_status_t ts_store_node_routes_all(ts_store_t *st, apr_pool_t *p, apr_hash_t **by_node,
                                      const char **err)
{
    apr_array_header_t *rows, *routes = NULL;
    apr_int64_t last = 0;
    apr_status_t rv = ts_store__select(st, p, &SQL_ROUTE_LIST_ALL, NULL, &rows, err);
    int i;

    *by_node = apr_hash_make(p);
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "reading routes: %s", *err);
        return rv;
    }
    for (i = 0; i < rows->nelts; i++) {
        apr_int64_t id = ts_store__i64(TS_ROW(rows, i)[0]);
        ts_route_t *r;
        if (!routes || id != last) {
            apr_int64_t *key = apr_palloc(p, sizeof(*key));
            *key = last = id;
            routes = apr_array_make(p, 2, sizeof(ts_route_t));
            apr_hash_set(*by_node, key, sizeof(*key), routes);
        }
        r = &APR_ARRAY_PUSH(routes, ts_route_t);
        r->prefix = TS_ROW(rows, i)[1];
        r->advertised = ts_store__int(TS_ROW(rows, i)[2]);
        r->approved = ts_store__int(TS_ROW(rows, i)[3]);
    }
    return APR_SUCCESS;
}

typedef struct {
    apr_int64_t node_id;
    const apr_array_header_t *routes;
} routes_set_t;

static apr_status_t routes_set_tx(ts_store_tx_t *tx, void *baton)
{
    routes_set_t *b = baton;
    const void *args[] = { &b->node_id };
    const void *touch[] = { &tx->generation, &tx->now, &b->node_id };
    const char **cur;
    apr_status_t rv = node_current(tx, b->node_id, &cur);

    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_ROUTE_CLEAR, args, NULL);
    }
    if (rv == APR_SUCCESS) {
        rv = routes_insert(tx, b->node_id, b->routes);
    }
    /* readers that poll nodes by version must see the node as changed */
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_NODE_TOUCH, touch, NULL);
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_NODE_ROUTES, b->node_id, ts_store__i64(cur[1]),
                                 NULL);
    }
    return rv;
}

apr_status_t ts_store_node_routes_set(ts_store_t *st, apr_pool_t *p, apr_int64_t node_id,
                                      const apr_array_header_t *routes, const char **err)
{
    routes_set_t b;
    apr_status_t rv = routes_check(p, routes, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    b.node_id = node_id;
    b.routes = routes;
    return ts_store__write(st, p, apr_psprintf(p, "setting routes of node %" APR_INT64_T_FMT,
                                               node_id), routes_set_tx, &b, err);
}
