/* ts_map_node.c: a node's store row turned into a canonical record for the map view: keys, name,
 * addresses, routes, and the JSON fields (Hostinfo, Endpoints, Tags) checked and compacted once. */
#include "ts_map_int.h"
#include "ts_util.h"

#include <apr_strings.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    if (!d) abort();             /* like an APR pool: out of memory is fatal */
    return d;
}

int ts_map_pfx_parse(ts_map_pfx_t *out, const char *text)
{
    const char *slash = text ? strchr(text, '/') : NULL;
    char host[INET6_ADDRSTRLEN + 1], *end;
    long bits;
    int i, max;

    if (!slash || (size_t)(slash - text) >= sizeof(host) || !slash[1]) return -1;
    memcpy(host, text, (size_t)(slash - text));
    host[slash - text] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1) out->family = 4;
    else if (inet_pton(AF_INET6, host, out->addr) == 1) out->family = 6;
    else return -1;
    max = out->family == 4 ? 32 : 128;
    bits = strtol(slash + 1, &end, 10);
    if (*end || bits < 0 || bits > max || slash[1] == '+' || slash[1] == '-') return -1;
    out->bits = (uint8_t)bits;
    for (i = 0; i < max / 8; i++) {
        int keep = (int)bits - 8 * i;
        if (keep <= 0) out->addr[i] = 0;
        else if (keep < 8) out->addr[i] &= (uint8_t)(0xff << (8 - keep));
    }
    inet_ntop(out->family == 4 ? AF_INET : AF_INET6, out->addr, host, sizeof(host));
    snprintf(out->text, sizeof(out->text), "%s/%d", host, out->bits);
    return 0;
}

int ts_map_pfx_cmp(const ts_map_pfx_t *a, const ts_map_pfx_t *b)
{
    int c;

    if (a->family != b->family) return a->family < b->family ? -1 : 1;
    c = memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16);
    if (c) return c;
    return (int)a->bits - (int)b->bits;
}

typedef struct loader {
    apr_pool_t *p;
    const ts_node_t *row;
    const char **err;
} loader_t;

static apr_status_t bad(const loader_t *l, const char *field, const char *why)
{
    *l->err = apr_psprintf(l->p, "node %" APR_INT64_T_FMT " (\"%s\"): %s: %s", l->row->id,
                           l->row->given_name ? l->row->given_name : "", field, why);
    return APR_EINVAL;
}

/* Canonical lower-case key text; optional keys may be absent (NULL, "" or all zeros). */
static apr_status_t load_key(const loader_t *l, char **out, const char *field,
                             const char *prefix, const char *text, int optional)
{
    static const uint8_t zero[TS_KEY_LEN];
    uint8_t k[TS_KEY_LEN];
    char buf[24 + 2 * TS_KEY_LEN];

    *out = NULL;
    if (optional && (!text || !*text)) return APR_SUCCESS;
    if (ts_key_parse(k, prefix, text)) return bad(l, field, "not a key of that kind");
    if (optional && !memcmp(k, zero, sizeof(k))) return APR_SUCCESS;
    memcpy(buf, prefix, strlen(prefix));
    ts_hex_encode(buf + strlen(prefix), k, TS_KEY_LEN);
    *out = xstrdup(buf);
    return APR_SUCCESS;
}

static int label_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0, i;

    if (n < 1 || n > 63 || s[0] == '-' || s[n - 1] == '-') return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int tag_ok(const char *s)
{
    if (strncmp(s, "tag:", 4) || !((s[4] >= 'a' && s[4] <= 'z') || (s[4] >= 'A' && s[4] <= 'Z')))
        return 0;
    for (s += 5; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')
              || *s == '-'))
            return 0;
    return 1;
}

/* A JSON array of strings (each accepted by ok, if given), or an object; compacted. */
static apr_status_t load_json(const loader_t *l, char **out, json_t **parsed,
                              const char *field, const char *text, int want_object,
                              int (*ok)(const char *))
{
    json_error_t je;
    json_t *j, *v;
    size_t i;

    *out = NULL;
    if (!text || !*text) return APR_SUCCESS;
    if (!(j = json_loads(text, 0, &je))) return bad(l, field, "not valid JSON");
    if (want_object ? !json_is_object(j) : !json_is_array(j)) {
        json_decref(j);
        return bad(l, field, want_object ? "not a JSON object" : "not a JSON array");
    }
    if (!want_object) {
        json_array_foreach(j, i, v) {
            if (!json_is_string(v) || (ok && !ok(json_string_value(v)))) {
                json_decref(j);
                return bad(l, field, "has an invalid entry");
            }
        }
        if (!json_array_size(j)) {
            json_decref(j);
            return APR_SUCCESS;
        }
    }
    if (!(*out = json_dumps(j, JSON_COMPACT))) abort();
    if (parsed) *parsed = j;
    else json_decref(j);
    return APR_SUCCESS;
}

static int preferred_derp(const json_t *hostinfo)
{
    const json_t *r = json_object_get(json_object_get(hostinfo, "NetInfo"), "PreferredDERP");
    json_int_t v = json_is_integer(r) ? json_integer_value(r) : 0;

    return v > 0 && v <= 65535 ? (int)v : 0;
}

static apr_status_t load_addrs(const loader_t *l, ts_map_row_t *r)
{
    const char *t[2] = { l->row->ipv4, l->row->ipv6 };
    int i;

    r->naddr = 0;
    for (i = 0; i < 2; i++) {
        ts_map_pfx_t *a = &r->addr[r->naddr];
        if (!t[i] || !*t[i]) continue;
        if (ts_map_pfx_parse(a, apr_pstrcat(l->p, t[i], i ? "/128" : "/32", NULL))
            || a->family != (i ? 6 : 4))
            return bad(l, i ? "ipv6" : "ipv4", "not an address of that family");
        r->naddr++;
    }
    return APR_SUCCESS;
}

static int route_cmp(const void *a, const void *b)
{
    return ts_map_pfx_cmp(&((const ts_map_route_t *)a)->pfx, &((const ts_map_route_t *)b)->pfx);
}

static apr_status_t load_routes(const loader_t *l, ts_map_row_t *t,
                                const apr_array_header_t *routes)
{
    int i, count = routes ? routes->nelts : 0;

    t->routes = count ? calloc((size_t)count, sizeof(*t->routes)) : NULL;
    if (count && !t->routes) abort();
    for (i = 0; i < count; i++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, i, ts_route_t);
        ts_map_route_t *d = &t->routes[t->nroutes];
        if (ts_map_pfx_parse(&d->pfx, r->prefix))
            return bad(l, "routes", apr_psprintf(l->p, "bad prefix \"%s\"", r->prefix));
        d->advertised = !!r->advertised;
        d->approved = !!r->approved;
        if (d->pfx.bits == 0 && d->advertised && d->approved) t->exit_node = 1;
        t->nroutes++;
    }
    if (t->nroutes) qsort(t->routes, (size_t)t->nroutes, sizeof(*t->routes), route_cmp);
    return APR_SUCCESS;
}

static void free_row(ts_map_row_t *r)
{
    free(r->given_name);
    free(r->node_key);
    free(r->machine_key);
    free(r->disco_key);
    free(r->endpoints);
    free(r->hostinfo);
    free(r->netinfo);
    free(r->tags);
    free(r->routes);
    memset(r, 0, sizeof(*r));
}

void ts_map_node_free(ts_map_node_t *n)
{
    int i;

    free_row(&n->r);
    for (i = 0; i < TS_PF_COUNT; i++) {
        free(n->pf[i]);
        n->pf[i] = NULL;
    }
    free(n->peer_json);
    free(n->self_json);
    n->peer_json = n->self_json = NULL;
}

/* NetInfo is kept apart: it changes with every netcheck (DERP latencies) and peers have no use
 * for fresh copies, so changes confined to it are not worth a PeersChanged to every peer. */
static void split_netinfo(ts_map_row_t *t, json_t *hi)
{
    json_t *ni = json_object_get(hi, "NetInfo");

    if (!ni || json_is_null(ni)) return;
    if (!(t->netinfo = json_dumps(ni, JSON_COMPACT | JSON_ENCODE_ANY))) abort();
    json_object_del(hi, "NetInfo");
    free(t->hostinfo);
    if (!(t->hostinfo = json_dumps(hi, JSON_COMPACT))) abort();
}

static apr_status_t load_json_fields(const loader_t *l, ts_map_row_t *t)
{
    json_t *hi = NULL;
    apr_status_t rv;

    if ((rv = load_json(l, &t->hostinfo, &hi, "host_info", l->row->host_info, 1, NULL)))
        return rv;
    t->derp_region = preferred_derp(hi);
    if (hi) split_netinfo(t, hi);
    json_decref(hi);
    if (!t->hostinfo) t->hostinfo = xstrdup("{}");
    if ((rv = load_json(l, &t->endpoints, NULL, "endpoints", l->row->endpoints, 0, NULL)))
        return rv;
    return load_json(l, &t->tags, NULL, "tags", l->row->tags, 0, tag_ok);
}

apr_status_t ts_map_node_load(ts_map_node_t *n, const ts_node_t *row,
                              const apr_array_header_t *routes, apr_pool_t *p,
                              const char **err)
{
    loader_t l = { p, row, err };
    ts_map_row_t t;
    apr_status_t rv;

    memset(&t, 0, sizeof(t));
    if (!label_ok(row->given_name)) {
        rv = bad(&l, "given_name", "not a DNS label ([a-z0-9-], 1 to 63 characters)");
        goto fail;
    }
    t.given_name = xstrdup(row->given_name);
    if ((rv = load_key(&l, &t.node_key, "node_key", "nodekey:", row->node_key, 0))
        || (rv = load_key(&l, &t.machine_key, "machine_key", "mkey:", row->machine_key, 0))
        || (rv = load_key(&l, &t.disco_key, "disco_key", "discokey:", row->disco_key, 1))
        || (rv = load_addrs(&l, &t)) || (rv = load_json_fields(&l, &t))
        || (rv = load_routes(&l, &t, routes)))
        goto fail;
    t.user_id = row->user_id > 0 ? row->user_id : 0;
    t.cap = row->cap_version > 0 ? row->cap_version : 0;
    t.created = row->created_at;
    t.expiry = row->expiry;
    free_row(&n->r);
    n->r = t;
    if (row->last_seen > n->last_seen) n->last_seen = row->last_seen;
    return APR_SUCCESS;
fail:
    free_row(&t);
    return rv;
}

/* Tagged nodes have no owner (control API 5.10); a row with tags and a user is served as
 * tagged too, since tags are the node's identity. */
apr_int64_t ts_map_wire_user(const ts_map_node_t *n)
{
    return n->r.user_id > 0 && !n->r.tags ? n->r.user_id : TS_MAP_TAGGED_USER_ID;
}
