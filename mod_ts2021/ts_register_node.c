/* ts_register_node.c: the node a registration creates or updates (addresses, name, owner,
 * expiry), the races it may lose and retry, and approvals of interactive registrations. */
#include "ts_register_int.h"
#include "ts_ipalloc.h"
#include "ts_names.h"
#include "ts_policy_manage.h"

#include <apr_strings.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Addresses and names are chosen inside the write transaction, where writers take turns,
 * so a lost race needs a writer outside this code (or a schema surprise): a few attempts
 * with jitter, then the client is told to come back (503). */
#define WRITE_ATTEMPTS 5
/* Used addresses in a row after the cursor before reading every address of the family. */
#define PROBES_MAX 16

static ts_register_test_hook_fn test_hook;
static void *test_hook_baton;

void ts_register_test_hook(ts_register_test_hook_fn fn, void *baton)
{
    test_hook = fn;
    test_hook_baton = baton;
}

/* ---- owners ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *reg_tags_norm(apr_pool_t *p, const char *tags_json)
{
    json_t *j = tags_json ? json_loads(tags_json, 0, NULL) : NULL, *out, *v;
    const char **tags;
    size_t i, n = 0;
    char *s;
    const char *res = NULL;

    if (!json_is_array(j) || json_array_size(j) == 0) {
        json_decref(j);
        return NULL;
    }
    tags = apr_palloc(p, sizeof(char *) * json_array_size(j));
    json_array_foreach(j, i, v) {
        if (json_is_string(v)) {
            tags[n++] = apr_pstrdup(p, json_string_value(v));
        }
    }
    qsort(tags, n, sizeof(char *), cmp_str);
    out = json_array();
    for (i = 0; i < n; i++) {
        if (i == 0 || strcmp(tags[i], tags[i - 1]) != 0) {
            json_array_append_new(out, json_string(tags[i]));
        }
    }
    s = json_array_size(out) ? json_dumps(out, JSON_COMPACT) : NULL;
    res = s ? apr_pstrdup(p, s) : NULL;
    free(s);
    json_decref(out);
    json_decref(j);
    return res;
}

const char *reg_tags_list_norm(apr_pool_t *p, const apr_array_header_t *tags)
{
    json_t *j = json_array();
    char *s;
    const char *out;
    int i;

    for (i = 0; tags && i < tags->nelts; i++) {
        json_array_append_new(j, json_string(APR_ARRAY_IDX(tags, i, const char *)));
    }
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    out = reg_tags_norm(p, s);
    free(s);
    return out;
}

const char *reg_present_tags(reg_ctx_t *c, const ts_node_t *by_key)
{
    ts_node_t *old = NULL;

    if (by_key) return by_key->tags;
    if (reg_find_node(c, c->req.old_node_key, &old) != APR_SUCCESS || !old
        || reg_foreign(c, old)) {
        return NULL;
    }
    return old->tags;
}

void reg_auto_approve(reg_ctx_t *c, const ts_node_t *n)
{
    const char *err = NULL;

    if (ts_policy_auto_approve_node(c->st, c->p, c->conf, n, NULL, &err) != APR_SUCCESS) {
        c->res->log = apr_psprintf(c->p, "node %" APR_INT64_T_FMT " registered, but its "
                                   "routes were not auto-approved: %s", n->id,
                                   err ? err : "database error");
    }
}

int reg_same_owner(apr_pool_t *p, const ts_node_t *n, const reg_owner_t *o, int exact_tags)
{
    const char *have;

    if (o->user_id) {
        return n->user_id == o->user_id;
    }
    if (n->user_id) {
        return 0;
    }
    have = exact_tags ? reg_tags_norm(p, n->tags) : NULL;
    return !exact_tags || (!have && !o->tags) || (have && o->tags && !strcmp(have, o->tags));
}

static apr_status_t by_old_key(reg_ctx_t *c, const reg_owner_t *o, int convert_tagged,
                               ts_node_t **out)
{
    ts_node_t *old = NULL;
    apr_status_t rv = reg_find_node(c, c->req.old_node_key, &old);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (reg_foreign(c, old)) {
        c->err = "the old node key belongs to another machine";
        return APR_EACCES;
    }
    if (old && (reg_same_owner(c->p, old, o, 0) || (convert_tagged && old->user_id == 0))) {
        *out = old;
    }
    return APR_SUCCESS;
}

apr_status_t reg_find_existing(reg_ctx_t *c, ts_node_t *by_key, const reg_owner_t *o,
                               int convert_tagged, ts_node_t **out)
{
    apr_array_header_t *nodes;
    ts_node_t *tagged = NULL;
    apr_status_t rv;
    int i;

    /* the node key is unique: its node is the one, whoever owned it */
    *out = by_key;
    if (by_key) {
        return APR_SUCCESS;
    }
    rv = by_old_key(c, o, convert_tagged, out);
    if (rv != APR_SUCCESS || *out) {
        return rv;
    }
    rv = ts_store_node_list_by_machine_key(c->st, c->p, c->mkey, &nodes, &c->err);
    for (i = 0; rv == APR_SUCCESS && i < nodes->nelts; i++) {
        ts_node_t *n = APR_ARRAY_IDX(nodes, i, ts_node_t *);
        if (reg_same_owner(c->p, n, o, 0)) {
            *out = n;
            return APR_SUCCESS;
        }
        if (n->user_id == 0 && !tagged) {
            tagged = n;
        }
    }
    if (rv == APR_SUCCESS && convert_tagged) {
        *out = tagged;
    }
    return rv;
}

/* ---- node fields ---- */

/* Tagged nodes never expire; else the tailnet default, or the client's wish if sooner. */
static apr_time_t node_expiry(const reg_ctx_t *c, const reg_owner_t *o)
{
    apr_time_t def = c->conf->node_expiry > 0 ? c->now + c->conf->node_expiry : 0;
    apr_time_t want = (c->req.expiry_set && c->req.expiry > c->now) ? c->req.expiry : 0;

    if (o->tags) {
        return 0;
    }
    return (want && (!def || want < def)) ? want : def;
}

/* The new Hostinfo, keeping the stored NetInfo when the new one has none (clients send
 * none at start-up; the map stream fills it in later). */
static const char *merge_hostinfo(apr_pool_t *p, const char *new_hi, const char *old_hi)
{
    json_t *n, *o, *ni;
    const char *out = new_hi;
    char *s;

    if (!new_hi || !old_hi) {
        return new_hi ? new_hi : old_hi;
    }
    n = json_loads(new_hi, 0, NULL);
    o = json_loads(old_hi, 0, NULL);
    ni = json_is_object(o) ? json_object_get(o, "NetInfo") : NULL;
    if (json_is_object(n) && ni && !json_is_null(ni)
        && (!json_object_get(n, "NetInfo") || json_is_null(json_object_get(n, "NetInfo")))) {
        json_object_set(n, "NetInfo", ni);
        s = json_dumps(n, JSON_COMPACT);
        out = (s && strlen(s) <= TS_STORE_BLOB_MAX) ? apr_pstrdup(p, s) : new_hi;
        free(s);
    }
    json_decref(n);
    json_decref(o);
    return out;
}

/* 1 if text is a prefix the store accepts: canonical address, no host bits. */
static int canonical_prefix(apr_pool_t *p, const char *text)
{
    const char *slash = strchr(text, '/');
    unsigned char b[16];
    char canon[INET6_ADDRSTRLEN], *end;
    int af, max, bits, i;
    const char *addr;

    if (!slash || !slash[1] || (slash[1] == '0' && slash[2])) {
        return 0;
    }
    addr = apr_pstrmemdup(p, text, (apr_size_t)(slash - text));
    af = strchr(addr, ':') ? AF_INET6 : AF_INET;
    max = af == AF_INET ? 32 : 128;
    bits = (int)strtol(slash + 1, &end, 10);
    if (*end || bits < 0 || bits > max || inet_pton(af, addr, b) != 1
        || !inet_ntop(af, b, canon, sizeof(canon)) || strcmp(canon, addr) != 0) {
        return 0;
    }
    for (i = bits; i < max; i++) {
        if (b[i / 8] & (0x80 >> (i % 8))) {
            return 0;
        }
    }
    return 1;
}

/* Hostinfo.RoutableIPs as advertised (not approved) routes; malformed entries skipped. */
static apr_array_header_t *advertised_routes(apr_pool_t *p, const char *hostinfo)
{
    apr_array_header_t *routes = apr_array_make(p, 2, sizeof(ts_route_t));
    json_t *hi = hostinfo ? json_loads(hostinfo, 0, NULL) : NULL, *v;
    json_t *ips = json_is_object(hi) ? json_object_get(hi, "RoutableIPs") : NULL;
    size_t i;
    int k, dup;

    json_array_foreach(ips, i, v) {
        const char *s = json_string_value(v);
        if (!s || !canonical_prefix(p, s)) {
            continue;
        }
        for (k = 0, dup = 0; k < routes->nelts && !dup; k++) {
            dup = strcmp(APR_ARRAY_IDX(routes, k, ts_route_t).prefix, s) == 0;
        }
        if (!dup) {
            ts_route_t *r = &APR_ARRAY_PUSH(routes, ts_route_t);
            r->prefix = apr_pstrdup(p, s);
            r->advertised = 1;
            r->approved = 0;
        }
    }
    json_decref(hi);
    return routes;
}

static void apply_owner(reg_ctx_t *c, ts_node_t *n, const reg_owner_t *o)
{
    n->user_id = o->user_id;
    n->tags = o->tags;
    n->register_method = o->method;
    n->ephemeral = o->ephemeral;
    n->expiry = node_expiry(c, o);
    if (o->key) {
        n->auth_key_id = o->key->id;
    }
    if (c->req.version > 0) {
        n->cap_version = c->req.version;
    }
}

/* ---- unique values, chosen inside the write transaction ---- */

static apr_status_t probe_ip(void *baton, int family, const char *ip, int *used)
{
    return ts_store__tx_ip_used(baton, family, ip, used);
}

/* One family's address: from the prefix's cursor by indexed probes; every address of the
 * family is read only when the probes keep hitting used ones (a crowded or wrapped prefix),
 * or once when the prefix has no cursor yet (new prefix, database from schema 1), so that
 * allocation goes on after the highest address rather than into a hole at the start. */
static apr_status_t pick_ip(ts_store_tx_t *tx, ts_ipalloc_t *a, int sequential, int family,
                            const char **ip)
{
    const char *prefix = ts_ipalloc_prefix(a, family), *last = NULL;
    apr_array_header_t *used;
    apr_status_t rv;

    *ip = NULL;
    if (!prefix) {
        return APR_SUCCESS;
    }
    rv = sequential ? ts_store__tx_ip_cursor_get(tx, prefix, &last) : APR_SUCCESS;
    if (rv == APR_SUCCESS) {
        rv = (sequential && !last) ? TS_IPALLOC_EDENSE
            : ts_ipalloc_probe(a, tx->p, family, last, PROBES_MAX, probe_ip, tx, ip, &tx->msg);
    }
    if (rv == TS_IPALLOC_EDENSE) {
        rv = ts_store__tx_ips(tx, family, &used);
        if (rv == APR_SUCCESS) {
            rv = ts_ipalloc_pick_among(a, tx->p, family, last, used, ip, &tx->msg);
        }
    }
    if (rv == APR_SUCCESS && sequential) {
        rv = ts_store__tx_ip_cursor_set(tx, prefix, *ip);
    }
    return rv;
}

/* base if free (or self's), else the first free base-N: one probe, then one index range
 * over the names that start with base's candidates (spec 5.3). */
static apr_status_t pick_name(ts_store_tx_t *tx, const char *base, apr_int64_t self_id,
                              const char **name)
{
    apr_array_header_t *taken;
    apr_int64_t owner = 0;
    apr_status_t rv = ts_store__tx_name_owner(tx, base, &owner);

    if (rv == APR_SUCCESS && (owner == 0 || owner == self_id)) {
        *name = base;
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_names_with_prefix(tx, ts_names_suffix_prefix(tx->p, base), self_id,
                                            &taken);
    }
    if (rv == APR_SUCCESS) {
        *name = ts_names_first_free(tx->p, base, taken);
    }
    return rv;
}

typedef struct {
    reg_ctx_t *c;
    ts_ipalloc_t *a;
    const char *base;           /* sanitized hostname */
    const char *full;           /* out: the message when a prefix is full */
} fill_t;

static apr_status_t fill_tx(ts_store_tx_t *tx, ts_node_t *n, void *baton)
{
    fill_t *f = baton;
    int seq = f->c->conf->ipalloc == TS_IPALLOC_SEQUENTIAL;
    apr_status_t rv = pick_ip(tx, f->a, seq, 4, &n->ipv4);

    if (rv == APR_SUCCESS) {
        rv = pick_ip(tx, f->a, seq, 6, &n->ipv6);
    }
    if (rv == TS_IPALLOC_EFULL) {
        f->full = tx->msg;
    }
    if (rv == APR_SUCCESS) {
        rv = pick_name(tx, f->base, 0, &n->given_name);
    }
    if (rv == APR_SUCCESS && test_hook) {
        test_hook(test_hook_baton, n);
    }
    return rv;
}

/* ---- writes ---- */

static apr_status_t create_once(reg_ctx_t *c, ts_ipalloc_t *a, const reg_owner_t *o,
                                ts_node_t **out)
{
    ts_node_t *n = apr_pcalloc(c->p, sizeof(*n));
    fill_t f;
    apr_status_t rv;

    n->machine_key = c->mkey;
    n->node_key = c->req.node_key;
    n->host_info = c->req.hostinfo;
    n->hostname = c->req.hostname;
    apply_owner(c, n, o);
    *out = n;
    memset(&f, 0, sizeof(f));
    f.c = c;
    f.a = a;
    f.base = ts_names_sanitize(c->p, c->req.hostname);
    rv = ts_store__node_create_with(c->st, c->p, n, advertised_routes(c->p, c->req.hostinfo),
                                    fill_tx, &f, &c->err);
    if (rv == TS_IPALLOC_EFULL && f.full) {
        c->err = f.full;
    }
    return rv;
}

static const ts_stmt_def_t SQL_REG_KEY_STATE = {
    "register_key_state", "pre-auth key",
    "SELECT reusable, used, revoked, expiration FROM pre_auth_keys WHERE id = %lld", NULL
};
static const ts_stmt_def_t SQL_REG_KEY_USE = {
    "register_key_use", "pre-auth key",
    "UPDATE pre_auth_keys SET used = 1 WHERE id = %lld AND used = 0", NULL
};
/* the store's node update, plus nothing: kept to the columns registration changes */
static const ts_stmt_def_t SQL_REG_NODE_UPDATE = {
    "register_node_update", "node",
    "UPDATE nodes SET node_key = %s, host_info = %s, hostname = %s, given_name = %s, "
    "user_id = %lld, register_method = %s, tags = %s, auth_key_id = %lld, ephemeral = %d, "
    "cap_version = %d, expiry = %lld, version = %lld, updated_at = %lld "
    "WHERE id = %lld AND version = %lld", NULL
};

/* Checks and uses the key inside the transaction, as node creation does: writers are
 * serialised by the generation lock, so two registrations cannot both take a one-off key. */
static apr_status_t use_key_tx(ts_store_tx_t *tx, apr_int64_t key_id)
{
    const void *args[] = { &key_id };
    apr_array_header_t *rows;
    const char **r;
    apr_status_t rv = ts_store__tx_select(tx, &SQL_REG_KEY_STATE, args, &rows);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (rows->nelts == 0) {
        return ts_store__tx_fail(tx, TS_STORE_ENOTFOUND, "pre-auth key %" APR_INT64_T_FMT
                                 " not found", key_id);
    }
    r = TS_ROW(rows, 0);
    if (ts_store__i64(r[2])) {
        return ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "pre-auth key is revoked");
    }
    if (ts_store__i64(r[3]) && ts_store__i64(r[3]) <= tx->now) {
        return ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "pre-auth key has expired");
    }
    if (ts_store__int(r[1])) {
        return ts_store__int(r[0]) ? APR_SUCCESS
            : ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "pre-auth key is already used");
    }
    return ts_store__tx_exec(tx, &SQL_REG_KEY_USE, args, NULL);
}

typedef struct {
    ts_node_t *n;
    const char *rename_base;  /* a new hostname's label: given_name chosen in the transaction */
    apr_int64_t key_id;       /* the key this registration presents, 0: none */
    apr_int64_t version;      /* out */
    apr_time_t updated_at;    /* out */
} update_t;

static apr_status_t update_tx(ts_store_tx_t *tx, void *baton)
{
    update_t *b = baton;
    ts_node_t *n = b->n;
    int eph = n->ephemeral ? 1 : 0, nrows = 0;
    const void *args[] = { n->node_key, ts_store__nz(n->host_info), ts_store__nz(n->hostname),
        NULL, TS_OPT(n->user_id), ts_store__nz(n->register_method),
        ts_store__nz(n->tags), TS_OPT(n->auth_key_id), &eph, &n->cap_version,
        TS_OPT(n->expiry), &tx->generation, &tx->now, &n->id, &n->version };
    apr_status_t rv = ts_store__tx_user_exists(tx, "node", n->user_id);

    if (rv == APR_SUCCESS && b->key_id) {
        rv = use_key_tx(tx, b->key_id);
    }
    if (rv == APR_SUCCESS && b->rename_base) {
        rv = pick_name(tx, b->rename_base, n->id, &n->given_name);
    }
    args[3] = n->given_name;
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_exec(tx, &SQL_REG_NODE_UPDATE, args, &nrows);
    }
    if (rv == APR_SUCCESS && nrows == 0) {
        rv = ts_store__tx_fail(tx, TS_STORE_ECONFLICT, "changed by someone else");
    }
    if (rv == APR_SUCCESS) {
        rv = ts_store__tx_change(tx, TS_CHANGE_NODE_UPDATED, n->id, n->user_id, NULL);
    }
    b->version = tx->generation;
    b->updated_at = tx->now;
    return rv;
}

static apr_status_t update_once(reg_ctx_t *c, const ts_node_t *existing, const reg_owner_t *o,
                                ts_node_t **out)
{
    ts_node_t *n = apr_pmemdup(c->p, existing, sizeof(*n));
    update_t b;
    apr_status_t rv;

    memset(&b, 0, sizeof(b));
    n->node_key = c->req.node_key;
    n->host_info = merge_hostinfo(c->p, c->req.hostinfo, existing->host_info);
    if (c->req.hostname && (!existing->hostname
                            || strcmp(c->req.hostname, existing->hostname) != 0)) {
        /* an admin's rename sticks; a name derived from the old hostname follows the new */
        if (ts_names_is_derived(c->p, existing->given_name, existing->hostname)) {
            b.rename_base = ts_names_sanitize(c->p, c->req.hostname);
        }
        n->hostname = c->req.hostname;
    }
    apply_owner(c, n, o);
    *out = n;
    b.n = n;
    b.key_id = o->key ? o->key->id : 0;
    rv = ts_store__write(c->st, c->p, apr_psprintf(c->p, "registering node %" APR_INT64_T_FMT,
                                                   n->id), update_tx, &b, &c->err);
    if (rv == APR_SUCCESS) {
        n->version = b.version;
        n->updated_at = b.updated_at;
    }
    return rv;
}

/* After a lost race: 1 if trying again can succeed (and prepares it). */
static int retry_after(reg_ctx_t *c, ts_ipalloc_t *a, const ts_node_t *tried,
                       ts_node_t **existing)
{
    const char *e = c->err ? c->err : "";

    if (strstr(e, "node ipv4 already exists") && tried && tried->ipv4) {
        ts_ipalloc_exclude(a, tried->ipv4);
        return 1;
    }
    if (strstr(e, "node ipv6 already exists") && tried && tried->ipv6) {
        ts_ipalloc_exclude(a, tried->ipv6);
        return 1;
    }
    if (strstr(e, "node given_name already exists")) {
        return 1;           /* the next attempt looks at the names again */
    }
    if (*existing && strstr(e, "changed by someone else")) {
        ts_node_t *fresh = NULL;
        if (ts_store_node_get(c->st, c->p, (*existing)->id, &fresh, &c->err) == APR_SUCCESS) {
            *existing = fresh;
            return 1;
        }
        c->redo = 1;        /* deleted meanwhile */
        return 0;
    }
    if (strstr(e, "node node_key already exists")) {
        c->redo = 1;        /* the same client registered twice at once: see what won */
    }
    return 0;
}

apr_status_t reg_node_write(reg_ctx_t *c, ts_node_t *existing, const reg_owner_t *o,
                            ts_node_t **out)
{
    ts_ipalloc_t *a = NULL;
    ts_node_t *tried = NULL;
    apr_status_t rv;
    int attempt;

    if (!existing && (rv = ts_ipalloc_create(&a, c->p, c->conf, &c->err)) != APR_SUCCESS) {
        return rv;
    }
    for (attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
        tried = NULL;
        rv = existing ? update_once(c, existing, o, &tried) : create_once(c, a, o, &tried);
        if (rv == APR_SUCCESS) {
            *out = tried;
            return rv;
        }
        if (rv == TS_STORE_EBUSY) {
            c->busy = 1;        /* the store's own retries ran out: the client comes back */
            return rv;
        }
        if (rv != TS_STORE_ECONFLICT || !retry_after(c, a, tried, &existing)) {
            return rv;
        }
        apr_sleep((apr_interval_time_t)randombytes_uniform(2000u + 1000u * (unsigned)attempt));
        c->now = apr_time_now();
        c->res->retries++;
    }
    c->busy = 1;                /* lost every round */
    return rv;
}

/* ---- approvals (spec 5.13) ---- */

static const char *hostinfo_hostname(apr_pool_t *p, const char *hostinfo)
{
    json_t *hi = hostinfo ? json_loads(hostinfo, 0, NULL) : NULL;
    json_t *v = json_is_object(hi) ? json_object_get(hi, "Hostname") : NULL;
    const char *out = NULL;

    if (json_is_string(v) && *json_string_value(v)) {
        out = reg_utf8_cut(p, apr_pstrdup(p, json_string_value(v)), REG_HOSTNAME_MAX);
    }
    json_decref(hi);
    return out;
}

/* The registration's request, as if the client were asking now. */
static void ctx_from_registration(reg_ctx_t *c, const ts_registration_t *r)
{
    c->mkey = r->machine_key;
    c->req.node_key = r->node_key;
    c->req.old_node_key = r->old_node_key;
    c->req.hostinfo = r->hostinfo;
    c->req.hostname = hostinfo_hostname(c->p, r->hostinfo);
    c->req.expiry = r->req_expiry;
    c->req.expiry_set = r->req_expiry != 0;
    c->req.ephemeral = r->ephemeral;
    if (r->hostinfo) {
        json_t *hi = json_loads(r->hostinfo, 0, NULL);
        c->req.request_tags = reg_request_tags(c->p, hi);
        json_decref(hi);
    }
}

/* RequestTags of an interactive registration: the approving user (or the node's present
 * tags) must own each (control API 5.10); then the node belongs to the tags. *why: the
 * refusal the client is shown. */
static apr_status_t approve_tags(reg_ctx_t *c, reg_owner_t *o, const ts_node_t *by_key,
                                 const char **why)
{
    apr_status_t rv;

    *why = NULL;
    if (!c->req.request_tags) return APR_SUCCESS;
    rv = ts_policy_registration_tags(c->st, c->p, c->conf, o->user_id,
                                     reg_present_tags(c, by_key), NULL, c->req.request_tags,
                                     why, &c->err);
    if (rv == APR_SUCCESS && !*why) {
        o->tags = reg_tags_list_norm(c->p, c->req.request_tags);
        o->user_id = 0;
    }
    return rv;
}

static apr_status_t approve_once(reg_ctx_t *c, apr_int64_t user_id, ts_node_t **out,
                                 const char **refused)
{
    ts_node_t *by_key = NULL, *existing = NULL;
    reg_owner_t o;
    apr_status_t rv = reg_find_node(c, c->req.node_key, &by_key);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (reg_foreign(c, by_key)) {
        c->err = apr_psprintf(c->p, "node key %s is registered to another machine",
                              c->req.node_key);
        return APR_EACCES;
    }
    memset(&o, 0, sizeof(o));
    o.user_id = user_id;
    o.method = "cli";
    o.ephemeral = c->req.ephemeral;
    rv = approve_tags(c, &o, by_key, refused);
    if (rv != APR_SUCCESS || *refused) {
        return rv;
    }
    rv = reg_find_existing(c, by_key, &o, 1, &existing);
    if (rv == APR_SUCCESS) {
        rv = reg_node_write(c, existing, &o, out);
    }
    if (rv == APR_SUCCESS) {
        reg_auto_approve(c, *out);
    }
    return rv;
}

/* The registration, still pending and not lapsed. */
static apr_status_t approvable(reg_ctx_t *c, const char *auth_id, ts_registration_t **r)
{
    static const char *const states[] = { "pending", "approved", "rejected" };
    apr_status_t rv = ts_store_registration_get(c->st, c->p, auth_id, r, &c->err);

    if (rv == TS_STORE_ENOTFOUND) {
        c->err = apr_psprintf(c->p, "no registration '%s' (wrong id, or it lapsed and was "
                              "cleaned up)", auth_id ? auth_id : "");
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if ((*r)->state != TS_REG_PENDING) {
        c->err = apr_psprintf(c->p, "registration '%s' is already %s", auth_id,
                              states[(*r)->state]);
        return TS_STORE_ECONFLICT;
    }
    if ((*r)->expires_at <= c->now) {
        c->err = apr_psprintf(c->p, "registration '%s' has expired: the client will show a "
                              "new URL", auth_id);
        return TS_STORE_ECONFLICT;
    }
    return APR_SUCCESS;
}

apr_status_t ts_register_approve(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                 const char *auth_id, apr_int64_t user_id,
                                 apr_int64_t *node_id, const char **err)
{
    ts_register_result_t res;
    ts_registration_t *r = NULL;
    ts_user_t *u = NULL;
    ts_node_t *n = NULL;
    reg_ctx_t c;
    apr_status_t rv;
    int attempt;
    const char *refused = NULL;

    memset(&c, 0, sizeof(c));
    memset(&res, 0, sizeof(res));
    c.st = st;
    c.p = p;
    c.conf = conf;
    c.res = &res;
    c.now = apr_time_now();
    *node_id = 0;
    rv = approvable(&c, auth_id, &r);
    if (rv == APR_SUCCESS) {
        rv = ts_store_user_get(st, p, user_id, &u, &c.err);
        if (rv == TS_STORE_ENOTFOUND) {
            c.err = apr_psprintf(p, "user %" APR_INT64_T_FMT " not found", user_id);
        }
    }
    if (rv == APR_SUCCESS) {
        ctx_from_registration(&c, r);
        for (attempt = 0, c.redo = 1; attempt < 3 && c.redo; attempt++) {
            c.redo = 0;
            rv = approve_once(&c, user_id, &n, &refused);
        }
    }
    if (rv == APR_SUCCESS && refused) {
        /* the client waiting on this registration is shown why; no node is written */
        (void)ts_store_registration_resolve(st, p, auth_id, TS_REG_REJECTED, 0, 0, refused,
                                            &c.err);
        *err = refused;
        return APR_EACCES;
    }
    if (rv != APR_SUCCESS) {
        *err = c.err ? c.err : "approval failed";
        return rv;
    }
    *node_id = n->id;
    /* wakes the waiter; the node exists whatever happens here, and a client asking again
     * finds it by its node key, so losing this entry to the sweeper costs nothing */
    rv = ts_store_registration_resolve(st, p, auth_id, TS_REG_APPROVED, n->id, user_id, NULL,
                                       &c.err);
    if (rv != APR_SUCCESS && rv != TS_STORE_ENOTFOUND && rv != TS_STORE_ECONFLICT) {
        *err = c.err;
        return rv;
    }
    return APR_SUCCESS;
}

apr_status_t ts_register_reject(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                const char *reason, const char **err)
{
    return ts_store_registration_resolve(st, p, auth_id, TS_REG_REJECTED, 0, 0,
                                         (reason && *reason) ? reason
                                         : "registration rejected by an administrator", err);
}
