/* ts_policy_compile.c: runs the compiler stages for one tailnet (nodes, routes, filters
 * and peers, SSH, capabilities, the policy's tests) and answers per-node questions. */
#include "ts_policy_int.h"

#include <string.h>

/* Own addresses, and the tags the node really has (tags without owners are dropped). */
static apr_status_t compile_node(ts_policy_result_t *r, int i, const char **err)
{
    const ts_policy_node_t *n = &r->tn->nodes[i];
    ts_pol_node_t *pn = &r->nodes[i];
    const char *ips[2] = { n->ipv4, n->ipv6 };
    int k;

    pn->addrs = apr_array_make(r->pool, 2, sizeof(ts_pol_addr_t));
    pn->taglist = apr_array_make(r->pool, n->ntags, sizeof(const char *));
    for (k = 0; k < 2; k++) {
        ts_pol_addr_t *a;
        if (ips[k] == NULL || *ips[k] == '\0') {
            continue;
        }
        a = apr_array_push(pn->addrs);
        if (ts_pol_parse_ip(ips[k], &a->r) != 0) {
            *err = apr_psprintf(r->pool, "node %s: invalid address \"%s\"", n->name, ips[k]);
            return APR_EINVAL;
        }
        a->text = ts_pol_ip_text(r->pool, a->r.fam, a->r.lo);
        apr_hash_set(r->by_addr, a->text, APR_HASH_KEY_STRING, apr_pmemdup(r->pool, &i,
                                                                             sizeof(i)));
        {
            unsigned char *key = apr_palloc(r->pool, 17);
            ts_pol_ipkey(&a->r, key);
            apr_hash_set(r->by_ip, key, 17, apr_pmemdup(r->pool, &i, sizeof(i)));
        }
    }
    for (k = 0; k < n->ntags; k++) {
        APR_ARRAY_PUSH(pn->taglist, const char *) = n->tags[k];
    }
    apr_hash_set(r->by_id, &n->id, sizeof(n->id), apr_pmemdup(r->pool, &i, sizeof(i)));
    return APR_SUCCESS;
}

static apr_status_t compile_cleanup(void *data)
{
    ts_policy_result_free(data);
    return APR_SUCCESS;
}

apr_status_t ts_policy_compile(apr_pool_t *p, const ts_policy_t *pol,
                               const ts_policy_tailnet_t *tn,
                               ts_policy_result_t **out, const char **err)
{
    ts_policy_result_t *r = apr_pcalloc(p, sizeof(*r));
    int i;

    r->pool = p;
    r->pol = pol;
    r->tn = tn;
    r->n = tn->nnodes;
    r->words = (r->n + 63) / 64;
    if (r->words == 0) {
        r->words = 1;
    }
    r->nodes = apr_pcalloc(p, sizeof(ts_pol_node_t) * (size_t)(r->n + 1));
    r->see = apr_pcalloc(p, sizeof(uint64_t) * (size_t)r->words * (size_t)(r->n + 1));
    r->all_routes = apr_array_make(p, 4, sizeof(ts_pol_addr_t));
    r->by_addr = apr_hash_make(p);
    r->by_ip = apr_hash_make(p);
    r->by_id = apr_hash_make(p);
    apr_pool_cleanup_register(p, r, compile_cleanup, apr_pool_cleanup_null);
    for (i = 0; i < r->n; i++) {
        if (compile_node(r, i, err)) {
            return APR_EINVAL;
        }
    }
    /* attributes first: disable-ipv4 changes the node's addresses */
    if (ts_pol_attrs(r, err) || ts_pol_routes(r, err) || ts_pol_filter(r, err)
        || ts_pol_ssh(r, err) || ts_pol_tests(r, err)) {
        return APR_EINVAL;
    }
    *out = r;
    return APR_SUCCESS;
}

void ts_pol_ipkey(const ts_pol_range_t *ip, unsigned char key[17])
{
    ts_u128 v = ip->lo;
    int k;

    key[0] = (unsigned char)ip->fam;
    for (k = 16; k >= 1; k--) {
        key[k] = (unsigned char)v;
        v >>= 8;
    }
}

int ts_pol_node_by_ip(const ts_policy_result_t *r, const ts_pol_range_t *ip)
{
    unsigned char key[17];
    int *i;

    if (ip->lo != ip->hi) {
        return -1;
    }
    ts_pol_ipkey(ip, key);
    i = apr_hash_get(r->by_ip, key, 17);
    return i ? *i : -1;
}

void ts_policy_result_free(ts_policy_result_t *r)
{
    int i;

    for (i = 0; r != NULL && i < r->n; i++) {
        json_decref(r->nodes[i].filter);
        json_decref(r->nodes[i].ssh);
        json_decref(r->nodes[i].capmap);
        r->nodes[i].filter = r->nodes[i].ssh = r->nodes[i].capmap = NULL;
    }
}

int ts_policy_index_of(const ts_policy_result_t *r, apr_int64_t node_id)
{
    int *i = apr_hash_get(r->by_id, &node_id, sizeof(node_id));
    return i ? *i : -1;
}

json_t *ts_policy_filter(const ts_policy_result_t *r, int i)
{
    return json_incref(r->nodes[i].filter);
}

int ts_policy_can_see(const ts_policy_result_t *r, int i, int j)
{
    return i != j && (TS_POL_BIT(r->see, r->words, i, j) || TS_POL_BIT(r->see, r->words, j, i));
}

apr_array_header_t *ts_policy_peers(const ts_policy_result_t *r, apr_pool_t *p, int i)
{
    apr_array_header_t *a = apr_array_make(p, 8, sizeof(int));
    int j;

    for (j = 0; j < r->n; j++) {
        if (ts_policy_can_see(r, i, j)) {
            APR_ARRAY_PUSH(a, int) = j;
        }
    }
    return a;
}

json_t *ts_policy_ssh_rules(const ts_policy_result_t *r, int i)
{
    return json_incref(r->nodes[i].ssh);
}

json_t *ts_policy_capmap(const ts_policy_result_t *r, int i)
{
    return r->nodes[i].capmap ? json_incref(r->nodes[i].capmap) : json_object();
}

static void compile_texts(json_t *out, const apr_array_header_t *a)
{
    int k;

    for (k = 0; k < a->nelts; k++) {
        json_array_append_new(out, json_string(APR_ARRAY_IDX(a, k, ts_pol_addr_t).text));
    }
}

static void compile_cidrs(json_t *out, const apr_array_header_t *a)
{
    int k;

    for (k = 0; k < a->nelts; k++) {
        const ts_pol_addr_t *x = &APR_ARRAY_IDX(a, k, ts_pol_addr_t);
        json_array_append_new(out, json_sprintf("%s/%d", x->text, x->r.fam == 4 ? 32 : 128));
    }
}

json_t *ts_policy_addresses(const ts_policy_result_t *r, int i)
{
    json_t *a = json_array();
    compile_cidrs(a, r->nodes[i].addrs);
    return a;
}

json_t *ts_policy_approved_routes(const ts_policy_result_t *r, int i)
{
    json_t *a = json_array();

    compile_texts(a, r->nodes[i].routes);
    if (r->nodes[i].exit) {
        json_array_append_new(a, json_string("0.0.0.0/0"));
        json_array_append_new(a, json_string("::/0"));
    }
    return a;
}

json_t *ts_policy_primary_routes(const ts_policy_result_t *r, int i)
{
    json_t *a = json_array();
    compile_texts(a, r->nodes[i].primary);
    return a;
}

static void compile_extend(json_t *a, json_t *b)
{
    json_array_extend(a, b);
    json_decref(b);
}

static int compile_has_route(const ts_pol_node_t *n, const ts_pol_addr_t *rt)
{
    int k;

    for (k = 0; k < n->routes->nelts; k++) {
        const ts_pol_addr_t *x = &APR_ARRAY_IDX(n->routes, k, ts_pol_addr_t);
        if (x->r.fam == rt->r.fam && x->r.lo == rt->r.lo && x->r.hi == rt->r.hi) {
            return 1;
        }
    }
    return 0;
}

static int compile_same(const ts_pol_addr_t *a, const ts_pol_addr_t *b)
{
    return a->r.fam == b->r.fam && a->r.lo == b->r.lo && a->r.hi == b->r.hi;
}

/* Whether viewer i may use route rt on its primary: the policy lets i reach it or be
 * reached from it (via grants aside), or i serves it too (an HA partner). */
static int compile_primary_visible(const ts_policy_result_t *r, int i, int j, int q,
                                   const ts_pol_addr_t *rt)
{
    return ts_pol_route_visible(r, q, i)
           || (compile_has_route(&r->nodes[i], rt) && ts_policy_can_see(r, i, j));
}

/* Whether a via grant sends viewer i through router j for rt. */
static int compile_via_sends(const ts_policy_result_t *r, int i, int j,
                             const ts_pol_addr_t *rt)
{
    int q;

    for (q = 0; q < r->vias->nelts; q++) {
        const ts_pol_addr_t *vr;
        if (ts_pol_via_route(r, q, i, &vr) == j && vr != NULL && compile_same(vr, rt)) {
            return 1;
        }
    }
    return 0;
}

/* Whether j is the primary router for rt, and whether the policy (not a via grant)
 * lets i use rt on its primary. */
static void compile_primary_of(const ts_policy_result_t *r, int i, const ts_pol_addr_t *rt,
                               int *primary, int *regular)
{
    int q;

    *primary = -1;
    *regular = 0;
    for (q = 0; q < r->proutes->nelts; q++) {
        const ts_pol_addr_t *pr;
        int node = ts_pol_route_node(r, q, &pr);
        if (compile_same(pr, rt)) {
            *primary = node;
            *regular = ts_pol_route_visible(r, q, i);
        }
    }
}

/* The subnet routes of j that viewer i is told about: j's primary routes i may use or
 * that a via grant sends i through j for, and the routes j is not primary for that a
 * via grant sends i through j for (unless i may use the primary anyway). */
static json_t *compile_peer_routes(const ts_policy_result_t *r, int i, int j)
{
    json_t *a = json_array();
    int q;

    for (q = 0; q < r->proutes->nelts; q++) {
        const ts_pol_addr_t *rt;
        if (ts_pol_route_node(r, q, &rt) != j) {
            continue;
        }
        if (compile_primary_visible(r, i, j, q, rt) || compile_via_sends(r, i, j, rt)) {
            json_array_append_new(a, json_string(rt->text));
        }
    }
    for (q = 0; q < r->vias->nelts; q++) {
        const ts_pol_addr_t *vr;
        int primary, regular;
        if (ts_pol_via_route(r, q, i, &vr) != j || vr == NULL) {
            continue;
        }
        compile_primary_of(r, i, vr, &primary, &regular);
        if (primary != j && !regular) {
            json_array_append_new(a, json_string(vr->text));
        }
    }
    return a;
}

json_t *ts_policy_peer_allowed_ips(const ts_policy_result_t *r, int i, int j)
{
    json_t *a = json_array();
    /* a viewer without IPv4 is told only its peers' IPv6 addresses */
    int v6only = i != j && json_object_get(r->nodes[i].capmap, "disable-ipv4") != NULL;
    int k;

    for (k = 0; k < r->nodes[j].addrs->nelts; k++) {
        const ts_pol_addr_t *x = &APR_ARRAY_IDX(r->nodes[j].addrs, k, ts_pol_addr_t);
        if (!v6only || x->r.fam == 6) {
            json_array_append_new(a, json_sprintf("%s/%d", x->text, x->r.fam == 4 ? 32 : 128));
        }
    }
    if (i == j) {
        compile_extend(a, ts_policy_approved_routes(r, i));
        return a;
    }
    compile_extend(a, compile_peer_routes(r, i, j));
    if (r->nodes[j].exit) {
        json_array_append_new(a, json_string("0.0.0.0/0"));
        json_array_append_new(a, json_string("::/0"));
    }
    return a;
}

json_t *ts_policy_peer_primary_routes(const ts_policy_result_t *r, int i, int j)
{
    return i == j ? ts_policy_primary_routes(r, i) : compile_peer_routes(r, i, j);
}

json_t *ts_policy_peer_capmap(const ts_policy_result_t *r, int i, int j)
{
    (void)i;
    if (r->nodes[j].exit) {
        return json_pack("{s:n}", "suggest-exit-node");
    }
    return NULL;
}

int ts_policy_randomize_client_port(const ts_policy_result_t *r)
{
    return r->pol != NULL && r->pol->randomize_client_port;
}

/* Whether text (an address, CIDR, "a-b" range or "*") covers the address rg. */
static int compile_src_covers(const char *text, const ts_pol_range_t *rg)
{
    ts_pol_range_t x;
    int bits;
    const char *dash = strchr(text, '-');

    if (strcmp(text, "*") == 0) {
        return 1;
    }
    if (dash != NULL) {
        char lo[64];
        ts_pol_range_t b;
        size_t n = (size_t)(dash - text);
        if (n >= sizeof(lo)) {
            return 0;
        }
        memcpy(lo, text, n);
        lo[n] = '\0';
        if (ts_pol_parse_ip(lo, &x) != 0 || ts_pol_parse_ip(dash + 1, &b) != 0) {
            return 0;
        }
        x.hi = b.lo;
        return ts_pol_contains(&x, rg);
    }
    return ts_pol_parse_prefix(text, &x, &bits, 0) == 0 && ts_pol_contains(&x, rg);
}

static int compile_srcs_cover(json_t *srcs, const ts_pol_node_t *n)
{
    size_t k;
    json_t *v;
    int m;

    json_array_foreach(srcs, k, v) {
        for (m = 0; m < n->addrs->nelts; m++) {
            if (compile_src_covers(json_string_value(v),
                                   &APR_ARRAY_IDX(n->addrs, m, ts_pol_addr_t).r)) {
                return 1;
            }
        }
    }
    return 0;
}

/* What i's own CapGrant rules give peer j: each capability's values concatenated. */
json_t *ts_policy_whois_capmap(const ts_policy_result_t *r, int i, int j)
{
    json_t *out = NULL, *rule, *cg, *m, *v;
    size_t k, g;
    const char *cap;

    json_array_foreach(r->nodes[i].filter, k, rule) {
        if ((cg = json_object_get(rule, "CapGrant")) == NULL
            || !compile_srcs_cover(json_object_get(rule, "SrcIPs"), &r->nodes[j])) {
            continue;
        }
        json_array_foreach(cg, g, m) {
            json_object_foreach(json_object_get(m, "CapMap"), cap, v) {
                json_t *have;
                if (out == NULL) {
                    out = json_object();
                }
                have = json_object_get(out, cap);
                if (json_is_array(v)) {
                    if (!json_is_array(have)) {
                        have = json_array();
                        json_object_set_new(out, cap, have);
                    }
                    json_array_extend(have, v);
                }
                else if (have == NULL) {
                    json_object_set(out, cap, v);
                }
            }
        }
    }
    return out;
}
