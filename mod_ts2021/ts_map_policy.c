/* ts_map_policy.c: the compiled policy as the view uses it: the inputs snapshot the compiler
 * reads, the prepared form (texts per node, visibility classes as bitmaps), and installing it.
 * The rendering that follows a policy (full maps, per-class deltas) is in ts_map_build.c. */
#include "ts_map_int.h"

#include <apr_atomic.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *d = data;
    size_t i;

    for (i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ULL;
    return h;
}

uint64_t ts_map_node_pol_hash(const ts_map_node_t *n)
{
    uint64_t h = 1469598103934665603ULL;
    int i;

    h = fnv(h, &n->r.user_id, sizeof(n->r.user_id));
    if (n->r.tags) h = fnv(h, n->r.tags, strlen(n->r.tags) + 1);
    if (n->r.given_name) h = fnv(h, n->r.given_name, strlen(n->r.given_name) + 1);
    for (i = 0; i < n->r.naddr; i++) h = fnv(h, n->r.addr[i].text, strlen(n->r.addr[i].text) + 1);
    for (i = 0; i < n->r.nroutes; i++) {
        const ts_map_route_t *r = &n->r.routes[i];
        uint8_t f = (uint8_t)(r->advertised | r->approved << 1);
        h = fnv(h, r->pfx.text, strlen(r->pfx.text) + 1);
        h = fnv(h, &f, 1);
    }
    return h;
}

unsigned ts_map_policy_gen(const ts_map_t *m)
{
    return m->pol_gen;
}

int ts_map_has_policy(const ts_map_t *m)
{
    return m->pol != NULL;
}

static const char *addr_only(apr_pool_t *p, const char *pfx)
{
    const char *slash = strchr(pfx, '/');

    return slash ? apr_pstrmemdup(p, pfx, (apr_size_t)(slash - pfx)) : apr_pstrdup(p, pfx);
}

void ts_map_policy_inputs(ts_map_t *m, apr_pool_t *p, const apr_int64_t *user_ids, int nusers,
                          ts_map_pol_inputs_t *out)
{
    apr_hash_t *uidx = apr_hash_make(p);
    int i, k;

    for (i = 0; i < nusers; i++) {
        int *v = apr_palloc(p, sizeof(*v));
        *v = i;
        apr_hash_set(uidx, &user_ids[i], sizeof(user_ids[i]), v);
    }
    out->nnodes = m->nnodes;
    out->nodes = apr_pcalloc(p, sizeof(*out->nodes) * (size_t)(m->nnodes + 1));
    out->owners = apr_pcalloc(p, sizeof(*out->owners) * (size_t)(m->nnodes + 1));
    out->gen = m->pol_gen;
    for (i = 0; i < m->nnodes; i++) {
        const ts_map_node_t *n = m->nodes[i];
        ts_policy_node_t *pn = &out->nodes[i];
        const char **adv, **appr;
        int *ui;

        pn->id = n->id;
        pn->name = apr_pstrdup(p, n->r.given_name);
        ui = n->r.user_id ? apr_hash_get(uidx, &n->r.user_id, sizeof(n->r.user_id)) : NULL;
        pn->user = ui ? *ui : -1;
        out->owners[i] = ts_map_wire_user(n);
        if (n->r.tags) {
            json_t *t = json_loads(n->r.tags, 0, NULL), *v;
            const char **tags = apr_pcalloc(p, sizeof(*tags) * (json_array_size(t) + 1));
            size_t x;
            int nt = 0;
            json_array_foreach(t, x, v)
                if (json_is_string(v)) tags[nt++] = apr_pstrdup(p, json_string_value(v));
            json_decref(t);
            pn->tags = tags;
            pn->ntags = nt;
            if (nt) pn->user = -1;      /* tagged nodes belong to their tags */
        }
        for (k = 0; k < n->r.naddr; k++) {
            if (n->r.addr[k].family == 4) pn->ipv4 = addr_only(p, n->r.addr[k].text);
            else pn->ipv6 = addr_only(p, n->r.addr[k].text);
        }
        adv = apr_pcalloc(p, sizeof(*adv) * (size_t)(n->r.nroutes + 1));
        appr = apr_pcalloc(p, sizeof(*appr) * (size_t)(n->r.nroutes + 1));
        for (k = 0; k < n->r.nroutes; k++) {
            const ts_map_route_t *r = &n->r.routes[k];
            if (r->advertised) adv[pn->nadvertised++] = apr_pstrdup(p, r->pfx.text);
            if (r->approved) appr[pn->napproved++] = apr_pstrdup(p, r->pfx.text);
        }
        pn->advertised = adv;
        pn->approved = appr;
        pn->join_order = n->r.created ? n->r.created : n->id;
        pn->online = n->online;
    }
}

int ts_map_pol_index(const ts_map_pol_t *pol, apr_int64_t id)
{
    int lo = 0, hi;

    if (!pol) return -1;
    hi = pol->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (pol->ids[mid] == id) return mid;
        if (pol->ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static char *dump(apr_pool_t *p, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *out = s ? apr_pstrdup(p, s) : NULL;

    free(s);
    return out;
}

/* ,"CapMap":{policy attributes, then the defaults not named by them},"Capabilities":[…] */
static char *self_caps(apr_pool_t *p, json_t *capmap)
{
    static const char *defaults[] = { "https://tailscale.com/cap/is-admin",
                                      "https://tailscale.com/cap/ssh",
                                      "https://tailscale.com/cap/file-sharing" };
    json_t *cm, *caps;
    char *a, *b, *out;
    size_t i;

    if (!capmap || !json_object_size(capmap)) return NULL;
    cm = json_deep_copy(capmap);
    caps = json_array();
    for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        if (!json_object_get(cm, defaults[i])) json_object_set_new(cm, defaults[i], json_array());
        json_array_append_new(caps, json_string(defaults[i]));
    }
    if (!json_object_get(cm, "default-auto-update")) {
        json_t *f = json_array();
        json_array_append_new(f, json_false());
        json_object_set_new(cm, "default-auto-update", f);
    }
    a = json_dumps(cm, JSON_COMPACT);
    b = json_dumps(caps, JSON_COMPACT);
    out = apr_pstrcat(p, ",\"CapMap\":", a, ",\"Capabilities\":", b, NULL);
    free(a);
    free(b);
    json_decref(cm);
    json_decref(caps);
    return out;
}

typedef struct cls_key {
    const uint64_t *row;
    int words;
} cls_key_t;

apr_status_t ts_map_pol_prepare(const ts_policy_result_t *res, const ts_map_pol_inputs_t *in,
                                ts_map_pol_t **out)
{
    apr_pool_t *p;
    ts_map_pol_t *pol;
    apr_hash_t *classes;
    uint64_t *row;
    int i, j, n = in->nnodes;

    if (apr_pool_create_unmanaged_ex(&p, NULL, NULL) != APR_SUCCESS) return APR_ENOMEM;
    pol = apr_pcalloc(p, sizeof(*pol));
    pol->pool = p;
    pol->refs = 1;
    pol->n = n;
    pol->words = (n + 63) / 64;
    pol->ids = apr_palloc(p, sizeof(*pol->ids) * (size_t)(n + 1));
    pol->owners = apr_pmemdup(p, in->owners, sizeof(*pol->owners) * (size_t)(n + 1));
    pol->cls = apr_palloc(p, sizeof(*pol->cls) * (size_t)(n + 1));
    pol->filter = apr_pcalloc(p, sizeof(char *) * (size_t)(n + 1));
    pol->ssh = apr_pcalloc(p, sizeof(char *) * (size_t)(n + 1));
    pol->caps = apr_pcalloc(p, sizeof(char *) * (size_t)(n + 1));
    /* rows are first kept per node, then compacted to one per class */
    pol->rows = apr_pcalloc(p, sizeof(uint64_t) * (size_t)pol->words * (size_t)(n + 1));
    classes = apr_hash_make(p);
    for (i = 0; i < n; i++) {
        json_t *f, *ssh, *cm;
        int *c;
        pol->ids[i] = in->nodes[i].id;
        row = pol->rows + (size_t)pol->ncls * (size_t)pol->words;
        memset(row, 0, sizeof(uint64_t) * (size_t)pol->words);
        for (j = 0; j < n; j++)
            if (j == i || ts_policy_can_see(res, i, j)) row[j >> 6] |= (uint64_t)1 << (j & 63);
        c = apr_hash_get(classes, row, sizeof(uint64_t) * (size_t)pol->words);
        if (c) pol->cls[i] = *c;
        else {
            c = apr_palloc(p, sizeof(*c));
            *c = pol->ncls++;
            apr_hash_set(classes, row, sizeof(uint64_t) * (size_t)pol->words, c);
            pol->cls[i] = *c;
        }
        f = ts_policy_filter(res, i);
        pol->filter[i] = f ? dump(p, f) : apr_pstrdup(p, "[]");
        json_decref(f);
        ssh = ts_policy_ssh_rules(res, i);
        if (ssh && json_array_size(ssh)) {
            char *r = dump(p, ssh);
            pol->ssh[i] = apr_pstrcat(p, "{\"rules\":", r, "}", NULL);
        }
        json_decref(ssh);
        cm = ts_policy_capmap(res, i);
        pol->caps[i] = self_caps(p, cm);
        json_decref(cm);
    }
    *out = pol;
    return APR_SUCCESS;
}

void ts_map_pol_unref(ts_map_pol_t *pol)
{
    if (pol && !apr_atomic_dec32(&pol->refs)) apr_pool_destroy(pol->pool);
}

void ts_map_set_policy(ts_map_t *m, ts_map_pol_t *pol)
{
    if (!pol && !m->pol && !m->pol_changed) return;
    if (!m->pol_changed) {
        m->pol_prev = m->pol;           /* what streams were told so far */
        m->pol_changed = 1;
    }
    else {
        ts_map_pol_unref(m->pol);       /* never published */
    }
    m->pol = pol;
    m->pol_serial++;                    /* class variants of peer chunks are stale */
}
