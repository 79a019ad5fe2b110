/* ts_policy_filter.c: acls and grants compiled into each node's packet filter (FilterRules
 * whose destinations are the node's addresses or routes), the visible-peer matrix (A sees
 * B when either may reach the other) and who may use each primary route. */
#include "ts_policy_int.h"

#include <stdlib.h>
#include <string.h>

/* A FilterRule being built for one node: rules with the same sources and protocols
 * share one entry, their destinations concatenated. */
typedef struct {
    const char *key;
    json_t *src;
    json_t *protos;
    json_t *dsts;
    json_t *capgrant;
    const json_t *app;            /* the grant's app object, for CapGrant entries */
} filter_acc_t;

typedef struct {
    ts_policy_result_t *r;
    apr_array_header_t **acc;     /* per node: filter_acc_t */
    uint64_t *sbits, *dbits;      /* per rule scratch: nodes in src / dst */
    apr_array_header_t *proutes;  /* (node, route) primaries: filter_proute_t */
} filter_ctx_t;

typedef struct {
    int node;
    const ts_pol_addr_t *route;
    uint64_t *viewers;
} filter_proute_t;

static int filter_via_node(const ts_policy_result_t *r, const ts_pol_rule_t *rule, int j)
{
    int k;

    if (rule->via == NULL || rule->via->nelts == 0) {
        return 1;
    }
    for (k = 0; k < rule->via->nelts; k++) {
        if (ts_pol_node_has_tag(r, j, APR_ARRAY_IDX(rule->via, k, const char *))) {
            return 1;
        }
    }
    return 0;
}

static int filter_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sources as the sorted, de-duplicated JSON list of their texts, and its key. */
static json_t *filter_src_json(apr_pool_t *p, const ts_pol_set_t *s, int star,
                               const char **key)
{
    apr_array_header_t *t = apr_array_make(p, s->addrs->nelts + 1, sizeof(const char *));
    json_t *j = json_array();
    int k;
    size_t len = 1;
    char *buf, *w;

    if (star) {
        APR_ARRAY_PUSH(t, const char *) = "*";
    }
    for (k = 0; k < s->addrs->nelts; k++) {
        APR_ARRAY_PUSH(t, const char *) = APR_ARRAY_IDX(s->addrs, k, ts_pol_addr_t).text;
    }
    qsort(t->elts, (size_t)t->nelts, sizeof(const char *), filter_cmp_str);
    for (k = 0; k < t->nelts; k++) {
        const char *x = APR_ARRAY_IDX(t, k, const char *);
        if (k > 0 && strcmp(x, APR_ARRAY_IDX(t, k - 1, const char *)) == 0) {
            continue;
        }
        json_array_append_new(j, json_string(x));
        len += strlen(x) + 1;
    }
    w = buf = apr_palloc(p, len);
    for (k = 0; k < (int)json_array_size(j); k++) {
        const char *x = json_string_value(json_array_get(j, (size_t)k));
        size_t n = strlen(x);
        memcpy(w, x, n);
        w[n] = ',';
        w += n + 1;
    }
    *w = '\0';
    *key = buf;
    return j;
}

static json_t *filter_protos_json(const apr_array_header_t *protos)
{
    json_t *j;
    int k;

    if (protos == NULL || protos->nelts == 0) {
        return NULL;
    }
    j = json_array();
    for (k = 0; k < protos->nelts; k++) {
        json_array_append_new(j, json_integer(APR_ARRAY_IDX(protos, k, int)));
    }
    return j;
}

static filter_acc_t *filter_acc(filter_ctx_t *c, int node, const char *key, json_t *src,
                                json_t *protos, int cap)
{
    apr_array_header_t *a = c->acc[node];
    filter_acc_t *f;
    int k;

    if (a == NULL) {
        a = c->acc[node] = apr_array_make(c->r->pool, 2, sizeof(filter_acc_t));
    }
    for (k = 0; !cap && k < a->nelts; k++) {
        f = &APR_ARRAY_IDX(a, k, filter_acc_t);
        if (f->capgrant == NULL && strcmp(f->key, key) == 0) {
            return f;
        }
    }
    f = apr_array_push(a);
    f->key = key;
    f->src = src;
    f->protos = protos;
    f->dsts = cap ? NULL : json_array();
    f->capgrant = cap ? json_array() : NULL;
    f->app = NULL;
    return f;
}

static void filter_dstports(json_t *dsts, const char *ip, const apr_array_header_t *ports)
{
    int k;

    for (k = 0; k < ports->nelts; k++) {
        const ts_pol_ports_t *pr = &APR_ARRAY_IDX(ports, k, ts_pol_ports_t);
        json_array_append_new(dsts, json_pack("{s:s,s:{s:i,s:i}}", "IP", ip, "Ports", "First",
                                              pr->first, "Last", pr->last));
    }
}

static int filter_node_overlaps(const ts_pol_node_t *n, const ts_pol_range_t *rg)
{
    int m;

    for (m = 0; m < n->addrs->nelts; m++) {
        if (ts_pol_overlaps(rg, &APR_ARRAY_IDX(n->addrs, m, ts_pol_addr_t).r)) {
            return 1;
        }
    }
    for (m = 0; m < n->routes->nelts; m++) {
        if (ts_pol_overlaps(rg, &APR_ARRAY_IDX(n->routes, m, ts_pol_addr_t).r)) {
            return 1;
        }
    }
    return 0;
}

/* The destination IP texts of set d that land on node j (NULL-terminated in out). */
static int filter_landing(filter_ctx_t *c, const ts_pol_set_t *d, int internet, int j,
                          const char **out, int max)
{
    const ts_pol_node_t *n = &c->r->nodes[j];
    int k, cnt = 0;

    if (d->any) {
        out[cnt++] = "*";
        return cnt;
    }
    if (internet) {
        if (!n->exit) {
            return 0;
        }
        for (k = 0; k < d->cidrs->nelts && cnt < max; k++) {
            out[cnt++] = APR_ARRAY_IDX(d->cidrs, k, ts_pol_addr_t).text;
        }
        return cnt;
    }
    if (d->member[j]) {
        for (k = 0; k < n->addrs->nelts && cnt < max; k++) {
            out[cnt++] = APR_ARRAY_IDX(n->addrs, k, ts_pol_addr_t).text;
        }
    }
    for (k = 0; k < d->cidrs->nelts && cnt < max; k++) {
        const ts_pol_addr_t *a = &APR_ARRAY_IDX(d->cidrs, k, ts_pol_addr_t);
        if (filter_node_overlaps(n, &a->r)) {
            out[cnt++] = a->text;
        }
    }
    return cnt;
}

static int filter_set_overlaps(const ts_pol_set_t *s, const ts_pol_range_t *rg)
{
    int k;

    if (s->any) {
        return 1;
    }
    for (k = 0; k < s->cidrs->nelts; k++) {
        if (ts_pol_overlaps(&APR_ARRAY_IDX(s->cidrs, k, ts_pol_addr_t).r, rg)) {
            return 1;
        }
    }
    return 0;
}

static int filter_same(const ts_pol_addr_t *a, const ts_pol_addr_t *b)
{
    return a->r.fam == b->r.fam && a->r.lo == b->r.lo && a->r.hi == b->r.hi;
}

/* Among the via routers serving rt, the one a via grant's sources use: the primary
 * router when it is one of them, else the oldest. */
static int filter_via_router(const ts_policy_result_t *r, const ts_pol_rule_t *rule,
                             const ts_pol_addr_t *rt, const ts_pol_addr_t **which)
{
    int j, k, m, best = -1;

    for (j = 0; j < r->n; j++) {
        apr_array_header_t *a = r->nodes[j].routes, *pr = r->nodes[j].primary;
        const ts_pol_addr_t *x = NULL;
        if (!filter_via_node(r, rule, j) || !r->tn->nodes[j].online) {
            continue;
        }
        for (k = 0; k < a->nelts && x == NULL; k++) {
            if (filter_same(&APR_ARRAY_IDX(a, k, ts_pol_addr_t), rt)) {
                x = &APR_ARRAY_IDX(a, k, ts_pol_addr_t);
            }
        }
        if (x == NULL) {
            continue;
        }
        for (m = 0; m < pr->nelts; m++) {
            if (filter_same(&APR_ARRAY_IDX(pr, m, ts_pol_addr_t), rt)) {
                *which = x;
                return j;
            }
        }
        if (best < 0 || r->tn->nodes[j].join_order < r->tn->nodes[best].join_order) {
            best = j;
            *which = x;
        }
    }
    return best;
}

/* A via grant: its sources use the routes overlapping its destinations through the via
 * routers (one router per route), whether or not that router is primary. */
static void filter_via(filter_ctx_t *c, const ts_pol_rule_t *rule, const ts_pol_set_t *d)
{
    ts_policy_result_t *r = c->r;
    int k, q, w;

    for (k = 0; k < r->all_routes->nelts; k++) {
        const ts_pol_addr_t *rt = &APR_ARRAY_IDX(r->all_routes, k, ts_pol_addr_t), *which = NULL;
        filter_proute_t *v = NULL;
        int j;
        if (!filter_set_overlaps(d, &rt->r)
            || (j = filter_via_router(r, rule, rt, &which)) < 0) {
            continue;
        }
        for (q = 0; q < r->vias->nelts && v == NULL; q++) {
            filter_proute_t *x = &APR_ARRAY_IDX(r->vias, q, filter_proute_t);
            if (x->node == j && x->route == which) {
                v = x;
            }
        }
        if (v == NULL) {
            v = apr_array_push(r->vias);
            v->node = j;
            v->route = which;
            v->viewers = apr_pcalloc(r->pool, sizeof(uint64_t) * (size_t)r->words);
        }
        for (w = 0; w < r->words; w++) {
            v->viewers[w] |= c->sbits[w];
        }
    }
}

/* Peer visibility and route use for one (sources, destinations) pair of node sets. */
static void filter_visibility(filter_ctx_t *c, const ts_pol_set_t *s, const ts_pol_set_t *d)
{
    ts_policy_result_t *r = c->r;
    int w = r->words, i, k, q;

    for (i = 0; i < r->n; i++) {
        if (TS_POL_BIT(c->sbits, 0, 0, i)) {
            for (k = 0; k < w; k++) {
                r->see[(size_t)i * w + k] |= c->dbits[k];
            }
        }
        if (TS_POL_BIT(c->dbits, 0, 0, i)) {
            for (k = 0; k < w; k++) {
                r->see[(size_t)i * w + k] |= c->sbits[k];
            }
        }
    }
    for (q = 0; d != NULL && q < c->proutes->nelts; q++) {
        filter_proute_t *pr = &APR_ARRAY_IDX(c->proutes, q, filter_proute_t);
        int rd = filter_set_overlaps(d, &pr->route->r);
        int rs = s != NULL && filter_set_overlaps(s, &pr->route->r);
        for (k = 0; k < w; k++) {
            pr->viewers[k] |= (rd ? c->sbits[k] : 0) | (rs ? c->dbits[k] : 0);
        }
    }
}

static void filter_bits(filter_ctx_t *c, uint64_t *bits, const ts_pol_set_t *s, int internet)
{
    int i;

    memset(bits, 0, sizeof(uint64_t) * (size_t)c->r->words);
    for (i = 0; i < c->r->n; i++) {
        int in = internet ? c->r->nodes[i].exit : ts_pol_node_in_set(c->r, i, s);
        if (in) {
            TS_POL_BIT_SET(bits, 0, 0, i);
        }
    }
}

static json_t *filter_capgrant(const ts_pol_node_t *n, json_t *capmap)
{
    json_t *dsts = json_array();
    int k;

    for (k = 0; k < n->addrs->nelts; k++) {
        const ts_pol_addr_t *a = &APR_ARRAY_IDX(n->addrs, k, ts_pol_addr_t);
        json_array_append_new(dsts, json_sprintf("%s/%d", a->text, a->r.fam == 4 ? 32 : 128));
    }
    return json_pack("{s:o,s:O}", "Dsts", dsts, "CapMap", capmap);
}

/* Whether d names node j itself (its addresses), not only a route it serves: app
 * capabilities are for nodes, never for the subnets behind them. */
static int filter_lands_on_node(filter_ctx_t *c, const ts_pol_set_t *d, int internet, int j)
{
    const ts_pol_node_t *n = &c->r->nodes[j];
    int k, m;

    if (d->any || d->member[j]) {
        return 1;
    }
    for (k = 0; !internet && k < d->cidrs->nelts; k++) {
        for (m = 0; m < n->addrs->nelts; m++) {
            if (ts_pol_overlaps(&APR_ARRAY_IDX(d->cidrs, k, ts_pol_addr_t).r,
                                &APR_ARRAY_IDX(n->addrs, m, ts_pol_addr_t).r)) {
                return 1;
            }
        }
    }
    return 0;
}

/* Application capabilities granted to the sources on node j. */
static void filter_app(filter_ctx_t *c, int j, const ts_pol_rule_t *rule, const char *key,
                       json_t *src)
{
    apr_array_header_t *a = c->acc[j];
    filter_acc_t *f;
    int k;

    /* once per grant and node, however many of its destinations name the node */
    for (k = 0; a != NULL && k < a->nelts; k++) {
        f = &APR_ARRAY_IDX(a, k, filter_acc_t);
        if (f->app == rule->app && strcmp(f->key, key) == 0) {
            return;
        }
    }
    f = filter_acc(c, j, key, src, NULL, 1);
    f->app = rule->app;
    json_array_append_new(f->capgrant, filter_capgrant(&c->r->nodes[j], rule->app));
}

/* Some capabilities come with a companion in the other direction: the sources learn
 * that the destinations may use it back (drive: drive-sharer; relay: relay-target). The
 * companion goes on every source node, from the destinations (dsrc: their addresses in
 * source form). */
static void filter_companions(filter_ctx_t *c, const ts_pol_rule_t *rule, const uint64_t *srcs,
                              json_t *dsrc, const char *dkey)
{
    static const char *const companions[][2] = {
        { "tailscale.com/cap/drive", "tailscale.com/cap/drive-sharer" },
        { "tailscale.com/cap/relay", "tailscale.com/cap/relay-target" },
    };
    size_t k;
    int i;

    if (rule->app == NULL || json_array_size(dsrc) == 0) {
        return;
    }
    for (k = 0; k < sizeof(companions) / sizeof(companions[0]); k++) {
        json_t *m;
        if (json_object_get(rule->app, companions[k][0]) == NULL) {
            continue;
        }
        m = json_pack("{s:n}", companions[k][1]);
        for (i = 0; i < c->r->n; i++) {
            if (TS_POL_BIT(srcs, 0, 0, i)) {
                filter_acc_t *f = filter_acc(c, i, dkey, dsrc, NULL, 1);
                json_array_append_new(f->capgrant, filter_capgrant(&c->r->nodes[i], m));
            }
        }
        json_decref(m);
    }
}

/* The destinations of one dst alias for an acl (its ports) or a grant (its ip specs). */
static void filter_emit(filter_ctx_t *c, const ts_pol_rule_t *rule, const ts_pol_dst_t *dst,
                        const ts_pol_set_t *d, int internet, const char *key, json_t *src,
                        json_t **protos, const char **pkeys)
{
    const char *small[16], **ips = small;
    /* at most: the node's addresses (one per family) and every prefix of d */
    int max = 2 + d->cidrs->nelts, j, n, k, q;

    if (max > 16) {
        ips = malloc(sizeof(char *) * (size_t)max);
        if (ips == NULL) {
            return;
        }
    }
    for (j = 0; j < c->r->n; j++) {
        if (!filter_via_node(c->r, rule, j)) {
            continue;
        }
        n = filter_landing(c, d, internet, j, ips, max);
        if (n == 0) {
            continue;
        }
        if (rule->app != NULL && filter_lands_on_node(c, d, internet, j)) {
            filter_app(c, j, rule, key, src);
        }
        if (!rule->grant) {
            filter_acc_t *f = filter_acc(c, j, pkeys[0], src, protos[0], 0);
            for (k = 0; k < n; k++) {
                filter_dstports(f->dsts, ips[k], dst->ports);
            }
            continue;
        }
        for (q = 0; q < rule->ip->nelts; q++) {
            const ts_pol_ipspec_t *is = &APR_ARRAY_IDX(rule->ip, q, ts_pol_ipspec_t);
            filter_acc_t *f = filter_acc(c, j, pkeys[q], src, protos[q], 0);
            for (k = 0; k < n; k++) {
                filter_dstports(f->dsts, ips[k], is->ports);
            }
        }
    }
    if (ips != small) {
        free(ips);
    }
}

/* Protocol lists and accumulator keys: one for an acl, one per ip spec for a grant. */
static void filter_keys(filter_ctx_t *c, const ts_pol_rule_t *rule, const char *skey,
                        json_t ***protos, const char ***pkeys)
{
    int n = rule->grant ? rule->ip->nelts : 1, q;

    *protos = apr_pcalloc(c->r->pool, sizeof(json_t *) * (size_t)(n + 1));
    *pkeys = apr_pcalloc(c->r->pool, sizeof(const char *) * (size_t)(n + 1));
    for (q = 0; q < n; q++) {
        const apr_array_header_t *pr = rule->grant
            ? APR_ARRAY_IDX(rule->ip, q, ts_pol_ipspec_t).protos : rule->protos;
        char *dump;
        (*protos)[q] = filter_protos_json(pr);
        dump = (*protos)[q] ? json_dumps((*protos)[q], JSON_COMPACT) : NULL;
        (*pkeys)[q] = apr_pstrcat(c->r->pool, skey, "|", dump ? dump : "", NULL);
        free(dump);
    }
}

/* autogroup:self: per user, that user's untagged source nodes to each of the user's
 * untagged nodes. */
static void filter_self(filter_ctx_t *c, const ts_pol_rule_t *rule, const ts_pol_dst_t *dst,
                        const ts_pol_set_t *s, apr_array_header_t *keep)
{
    ts_policy_result_t *r = c->r;
    int u, i, j, k;

    for (u = 0; u < r->tn->nusers; u++) {
        ts_pol_set_t us;
        const char *skey;
        json_t *src, **protos;
        const char **pkeys;
        ts_pol_set_t d;

        memset(&us, 0, sizeof(us));
        us.addrs = apr_array_make(r->pool, 4, sizeof(ts_pol_addr_t));
        memset(c->sbits, 0, sizeof(uint64_t) * (size_t)r->words);
        memset(c->dbits, 0, sizeof(uint64_t) * (size_t)r->words);
        for (i = 0; i < r->n; i++) {
            if (r->tn->nodes[i].user != u || r->nodes[i].taglist->nelts > 0) {
                continue;
            }
            TS_POL_BIT_SET(c->dbits, 0, 0, i);
            if (s->any || s->member[i]) {
                TS_POL_BIT_SET(c->sbits, 0, 0, i);
                for (k = 0; k < r->nodes[i].addrs->nelts; k++) {
                    *(ts_pol_addr_t *)apr_array_push(us.addrs) =
                        APR_ARRAY_IDX(r->nodes[i].addrs, k, ts_pol_addr_t);
                }
            }
        }
        if (us.addrs->nelts == 0) {
            continue;
        }
        src = filter_src_json(r->pool, &us, 0, &skey);
        APR_ARRAY_PUSH(keep, json_t *) = src;
        filter_keys(c, rule, skey, &protos, &pkeys);
        memset(&d, 0, sizeof(d));
        d.addrs = d.cidrs = apr_array_make(r->pool, 1, sizeof(ts_pol_addr_t));
        d.member = apr_pcalloc(r->pool, (apr_size_t)r->n + 1);
        for (j = 0; j < r->n; j++) {
            d.member[j] = (unsigned char)TS_POL_BIT(c->dbits, 0, 0, j);
        }
        filter_emit(c, rule, dst, &d, 0, skey, src, protos, pkeys);
        for (k = 0; k < (rule->grant ? rule->ip->nelts : 1); k++) {
            APR_ARRAY_PUSH(keep, json_t *) = protos[k];
        }
        us.any = 0;
        us.cidrs = apr_array_make(r->pool, 1, sizeof(ts_pol_addr_t));
        filter_visibility(c, &us, &d);
        if (rule->app != NULL) {
            ts_pol_set_t ds;
            const char *dkey;
            json_t *dsrc;
            memset(&ds, 0, sizeof(ds));
            ds.addrs = apr_array_make(r->pool, 4, sizeof(ts_pol_addr_t));
            for (j = 0; j < r->n; j++) {
                for (k = 0; d.member[j] && k < r->nodes[j].addrs->nelts; k++) {
                    *(ts_pol_addr_t *)apr_array_push(ds.addrs) =
                        APR_ARRAY_IDX(r->nodes[j].addrs, k, ts_pol_addr_t);
                }
            }
            dsrc = filter_src_json(r->pool, &ds, 0, &dkey);
            APR_ARRAY_PUSH(keep, json_t *) = dsrc;
            filter_companions(c, rule, c->sbits, dsrc, dkey);
        }
    }
}

static apr_status_t filter_rule(filter_ctx_t *c, const ts_pol_rule_t *rule,
                                apr_array_header_t *keep, const char **err)
{
    ts_policy_result_t *r = c->r;
    ts_pol_set_t s;
    const char *skey, **pkeys;
    json_t *src, **protos;
    int k, danger = 0, nq = rule->grant ? rule->ip->nelts : 1;

    memset(&s, 0, sizeof(s));
    for (k = 0; k < rule->src->nelts; k++) {
        const char *a = APR_ARRAY_IDX(rule->src, k, const char *);
        danger |= strcmp(a, "autogroup:danger-all") == 0;
        if (ts_pol_resolve(r, a, 1, &s, err)) {
            return APR_EINVAL;
        }
    }
    if (s.addrs == NULL) {   /* no sources at all */
        s.addrs = apr_array_make(r->pool, 1, sizeof(ts_pol_addr_t));
        s.cidrs = s.addrs;
        s.member = apr_pcalloc(r->pool, (apr_size_t)r->n + 1);
    }
    src = filter_src_json(r->pool, &s, danger, &skey);
    APR_ARRAY_PUSH(keep, json_t *) = src;
    filter_keys(c, rule, skey, &protos, &pkeys);
    for (k = 0; k < nq; k++) {
        APR_ARRAY_PUSH(keep, json_t *) = protos[k];
    }
    for (k = 0; k < rule->dst->nelts; k++) {
        const ts_pol_dst_t *dst = &APR_ARRAY_IDX(rule->dst, k, ts_pol_dst_t);
        ts_pol_set_t d;
        int internet = strcmp(dst->alias, "autogroup:internet") == 0;

        if (strcmp(dst->alias, "autogroup:self") == 0) {
            filter_self(c, rule, dst, &s, keep);
            continue;
        }
        memset(&d, 0, sizeof(d));
        if (ts_pol_resolve(r, dst->alias, 0, &d, err)) {
            return APR_EINVAL;
        }
        if (json_array_size(src) > 0 || rule->app != NULL) {
            filter_emit(c, rule, dst, &d, internet, skey, src, protos, pkeys);
        }
        filter_bits(c, c->sbits, &s, 0);
        filter_bits(c, c->dbits, &d, internet);
        if (rule->via != NULL && rule->via->nelts > 0) {
            int j;
            for (j = 0; j < r->n; j++) {
                if (!filter_via_node(r, rule, j)) {
                    c->dbits[j >> 6] &= ~(1ULL << (j & 63));
                }
            }
            filter_via(c, rule, &d);
            filter_visibility(c, NULL, NULL);
        }
        else {
            filter_visibility(c, &s, &d);
        }
        if (rule->app != NULL) {
            ts_pol_set_t ds;
            const char *dkey;
            json_t *dsrc;
            memset(&ds, 0, sizeof(ds));
            if (ts_pol_resolve(r, dst->alias, 1, &ds, err)) {
                return APR_EINVAL;
            }
            dsrc = filter_src_json(r->pool, &ds, 0, &dkey);
            APR_ARRAY_PUSH(keep, json_t *) = dsrc;
            filter_companions(c, rule, c->sbits, dsrc, dkey);
        }
    }
    return APR_SUCCESS;
}

static json_t *filter_build(apr_array_header_t *acc)
{
    json_t *rules = json_array();
    int k;

    for (k = 0; acc != NULL && k < acc->nelts; k++) {
        filter_acc_t *f = &APR_ARRAY_IDX(acc, k, filter_acc_t);
        json_t *rule = json_pack("{s:O}", "SrcIPs", f->src);
        if (f->capgrant != NULL) {
            json_object_set_new(rule, "CapGrant", f->capgrant);
        }
        else {
            json_object_set_new(rule, "DstPorts", f->dsts);
            if (f->protos != NULL) {
                json_object_set(rule, "IPProto", f->protos);
            }
        }
        json_array_append_new(rules, rule);
    }
    return rules;
}

/* No acls and no grants: everything may reach everything. */
static void filter_allow_all(filter_ctx_t *c)
{
    ts_policy_result_t *r = c->r;
    ts_pol_set_t s;
    const char *key, *err;
    json_t *src;
    int i, q;

    memset(&s, 0, sizeof(s));
    ts_pol_resolve(r, "*", 1, &s, &err);
    src = filter_src_json(r->pool, &s, 0, &key);
    for (i = 0; i < r->n; i++) {
        r->nodes[i].filter = json_pack("[{s:O,s:[{s:s,s:{s:i,s:i}}]}]", "SrcIPs", src,
                                       "DstPorts", "IP", "*", "Ports", "First", 0, "Last",
                                       65535);
    }
    json_decref(src);
    memset(r->see, 0xff, sizeof(uint64_t) * (size_t)r->words * (size_t)r->n);
    for (q = 0; q < c->proutes->nelts; q++) {
        filter_proute_t *pr = &APR_ARRAY_IDX(c->proutes, q, filter_proute_t);
        memset(pr->viewers, 0xff, sizeof(uint64_t) * (size_t)r->words);
    }
}

static void filter_proutes(filter_ctx_t *c)
{
    ts_policy_result_t *r = c->r;
    int i, k;

    c->proutes = apr_array_make(r->pool, 4, sizeof(filter_proute_t));
    for (i = 0; i < r->n; i++) {
        apr_array_header_t *pr = r->nodes[i].primary;
        for (k = 0; k < pr->nelts; k++) {
            filter_proute_t *x = apr_array_push(c->proutes);
            x->node = i;
            x->route = &APR_ARRAY_IDX(pr, k, ts_pol_addr_t);
            x->viewers = apr_pcalloc(r->pool, sizeof(uint64_t) * (size_t)r->words);
        }
    }
}

apr_status_t ts_pol_filter(ts_policy_result_t *r, const char **err)
{
    filter_ctx_t c;
    apr_array_header_t *keep = apr_array_make(r->pool, 16, sizeof(json_t *));
    apr_status_t rv = APR_SUCCESS;
    int k, i;

    memset(&c, 0, sizeof(c));
    c.r = r;
    c.acc = apr_pcalloc(r->pool, sizeof(apr_array_header_t *) * (size_t)(r->n + 1));
    c.sbits = apr_pcalloc(r->pool, sizeof(uint64_t) * (size_t)r->words);
    c.dbits = apr_pcalloc(r->pool, sizeof(uint64_t) * (size_t)r->words);
    filter_proutes(&c);
    r->proutes = c.proutes;
    r->vias = apr_array_make(r->pool, 1, sizeof(filter_proute_t));
    if (r->pol == NULL || !r->pol->has_filter) {
        filter_allow_all(&c);
        return APR_SUCCESS;
    }
    for (k = 0; k < r->pol->rules->nelts && rv == APR_SUCCESS; k++) {
        rv = filter_rule(&c, &APR_ARRAY_IDX(r->pol->rules, k, ts_pol_rule_t), keep, err);
    }
    for (i = 0; i < r->n; i++) {
        r->nodes[i].filter = filter_build(c.acc[i]);
    }
    for (k = 0; k < keep->nelts; k++) {
        json_decref(APR_ARRAY_IDX(keep, k, json_t *));
    }
    return rv;
}

/* Whether viewer i may use primary route number q (index in r->proutes). */
int ts_pol_route_visible(const ts_policy_result_t *r, int q, int i)
{
    const filter_proute_t *pr = &APR_ARRAY_IDX(r->proutes, q, filter_proute_t);
    return (int)TS_POL_BIT(pr->viewers, 0, 0, i);
}

int ts_pol_route_node(const ts_policy_result_t *r, int q, const ts_pol_addr_t **route)
{
    const filter_proute_t *pr = &APR_ARRAY_IDX(r->proutes, q, filter_proute_t);
    *route = pr->route;
    return pr->node;
}

/* Via entry q: its router, and through *route whether viewer i is sent there. */
int ts_pol_via_route(const ts_policy_result_t *r, int q, int i, const ts_pol_addr_t **route)
{
    const filter_proute_t *v = &APR_ARRAY_IDX(r->vias, q, filter_proute_t);
    *route = TS_POL_BIT(v->viewers, 0, 0, i) ? v->route : NULL;
    return v->node;
}
