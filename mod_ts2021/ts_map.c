/* ts_map.c: the tailnet view's records and mutations: nodes and users kept sorted by id, presence,
 * tailnet settings, and the settle step (expiry, primary route election, re-rendering). */
#include "ts_map_int.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- sorted record arrays ---- */

static int find_pos(ts_map_node_t *const *v, int n, apr_int64_t id)
{
    int lo = 0, hi = n;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v[mid]->id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

ts_map_node_t *ts_map_find(const ts_map_t *m, apr_int64_t id)
{
    int i = find_pos(m->nodes, m->nnodes, id);

    return i < m->nnodes && m->nodes[i]->id == id ? m->nodes[i] : NULL;
}

static int find_user_pos(ts_map_user_t *const *v, int n, apr_int64_t id)
{
    int lo = 0, hi = n;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v[mid]->id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

ts_map_user_t *ts_map_find_user(const ts_map_t *m, apr_int64_t id)
{
    int i;

    if (id == TS_MAP_TAGGED_USER_ID) return (ts_map_user_t *)&m->tagged;
    i = find_user_pos(m->users, m->nusers, id);
    return i < m->nusers && m->users[i]->id == id ? m->users[i] : NULL;
}

/* Grows a pointer array by one slot at pos. */
static void *insert_slot(void *v, int *n, int *cap, int pos, size_t size)
{
    char *a = v;

    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        if (!(a = realloc(a, (size_t)*cap * size))) abort();
    }
    memmove(a + (size_t)(pos + 1) * size, a + (size_t)pos * size, (size_t)(*n - pos) * size);
    (*n)++;
    return a;
}

void ts_map_ids_push(ts_map_ids_t *ids, apr_int64_t id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? ids->cap * 2 : 64;
        if (!(ids->v = realloc(ids->v, (size_t)ids->cap * sizeof(*ids->v)))) abort();
    }
    ids->v[ids->n++] = id;
}

void ts_map_mark_dirty(ts_map_t *m, ts_map_node_t *n)
{
    if (n->dirty) return;
    n->dirty = 1;
    ts_map_ids_push(&m->dirty, n->id);
}

static apr_status_t map_cleanup(void *data)
{
    ts_map_t *m = data;
    int i;

    for (i = 0; i < m->nnodes; i++) {
        ts_map_node_free(m->nodes[i]);
        free(m->nodes[i]);
    }
    for (i = 0; i < m->nusers; i++) {
        free(m->users[i]->profile);
        free(m->users[i]);
    }
    free(m->tagged.profile);
    free(m->base_domain);
    free(m->domain_json);
    free(m->dns_json);
    free(m->derp_json);
    free(m->nodes);
    free(m->users);
    free(m->dirty.v);
    free(m->pending.v);
    free(m->removed.v);
    ts_map_pol_unref(m->pol);
    ts_map_pol_unref(m->pol_prev);
    ts_map_zcache_free(m);
    return APR_SUCCESS;
}

apr_status_t ts_map_create(ts_map_t **mp, apr_pool_t *p)
{
    static const char tagged[] = "{\"ID\":2147455555,\"LoginName\":\"" TS_MAP_TAGGED_LOGIN
                                 "\",\"DisplayName\":\"" TS_MAP_TAGGED_DISPLAY "\"}";
    ts_map_t *m = apr_pcalloc(p, sizeof(*m));

    m->pool = p;
    m->next_expiry = APR_INT64_MAX;
    m->tagged.id = TS_MAP_TAGGED_USER_ID;
    if (!(m->tagged.profile = strdup(tagged))) return APR_ENOMEM;
    m->tagged.len = strlen(tagged);
    apr_pool_cleanup_register(p, m, map_cleanup, apr_pool_cleanup_null);
    *mp = m;
    return APR_SUCCESS;
}

/* ---- settings ---- */

void ts_map_set_derpmap(ts_map_t *m, const char *json, apr_size_t len)
{
    if (!json || !len) len = 0;
    if (len == m->derp_len && (!len || !memcmp(json, m->derp_json, len))) return;
    free(m->derp_json);
    m->derp_json = NULL;
    m->derp_len = len;
    if (len) {
        if (!(m->derp_json = malloc(len + 1))) abort();
        memcpy(m->derp_json, json, len);
        m->derp_json[len] = '\0';
    }
    m->pend_derp = 1;
}

/* Replaces *slot by text when it differs; returns whether it did. */
static int replace_text(char **slot, size_t *slot_len, const char *text)
{
    if (!text ? !*slot : (*slot && !strcmp(*slot, text))) return 0;
    free(*slot);
    *slot = NULL;
    if (text && !(*slot = strdup(text))) abort();
    if (slot_len) *slot_len = text ? strlen(text) : 0;
    return 1;
}

/* The host part of server_url, the default MapResponse.Domain ("[::1]" stays bracketed). */
static const char *url_host(apr_pool_t *p, const char *url)
{
    const char *h = url ? strstr(url, "://") : NULL;
    size_t n;

    if (!h) return NULL;
    h += 3;
    n = *h == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
    return n && n <= strlen(h) ? apr_pstrmemdup(p, h, n) : NULL;
}

static int domain_ok(const char *d)
{
    size_t n = strlen(d), i;

    if (!n || n > 190 || d[0] == '.' || d[n - 1] == '.') return 0;   /* 63 + 2 + 190 <= 255 */
    for (i = 0; i < n; i++)
        if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '-'
              || (d[i] == '.' && d[i + 1] != '.')))
            return 0;
    return 1;
}

/* Search domains: base_domain first, then the configured ones without trailing dots. */
static apr_status_t dns_domains(apr_pool_t *p, json_t *o, const char *base, const char **err)
{
    json_t *in = json_object_get(o, "Domains"), *out = json_array(), *v;
    size_t i, j;

    if (in && !json_is_array(in)) {
        json_decref(out);
        *err = "DNS config: Domains: not an array";
        return APR_EINVAL;
    }
    if (base) json_array_append_new(out, json_string(base));
    json_array_foreach(in, i, v) {
        const char *d = json_string_value(v);
        size_t n = d ? strlen(d) : 0;
        int dup = 0;
        if (!n) continue;
        if (d[n - 1] == '.') d = apr_pstrmemdup(p, d, n - 1);
        for (j = 0; j < json_array_size(out); j++)
            dup |= !strcmp(json_string_value(json_array_get(out, j)), d);
        if (!dup) json_array_append_new(out, json_string(d));
    }
    if (json_array_size(out)) json_object_set_new(o, "Domains", out);
    else {
        json_object_del(o, "Domains");
        json_decref(out);
    }
    return APR_SUCCESS;
}

/* Split DNS routes: a null resolver list means "answer locally", which clients only read
 * correctly as [] (control API 5.8). */
static apr_status_t dns_routes(json_t *o, const char **err)
{
    json_t *routes = json_object_get(o, "Routes"), *v;
    const char *k;

    if (!routes) return APR_SUCCESS;
    if (!json_is_object(routes)) {
        *err = "DNS config: Routes: not an object";
        return APR_EINVAL;
    }
    json_object_foreach(routes, k, v) {
        if (json_is_null(v)) json_object_set_new(routes, k, json_array());
        else if (!json_is_array(v)) {
            *err = "DNS config: Routes: a value is not a list of resolvers";
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

/* DNSConfig text (control API 5.8) from the settings; NULL when there is nothing to say. */
static apr_status_t dns_config(apr_pool_t *p, const ts_tailnet_conf_t *c, char **out,
                               const char **err)
{
    json_error_t je;
    json_t *o = c->dns_config_json ? json_loads(c->dns_config_json, 0, &je) : json_object();
    apr_status_t rv;

    *out = NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        *err = apr_psprintf(p, "DNS config: not a JSON object%s%s", o ? "" : ": ",
                            o ? "" : je.text);
        return APR_EINVAL;
    }
    if ((rv = dns_domains(p, o, c->base_domain, err)) || (rv = dns_routes(o, err))) {
        json_decref(o);
        return rv;
    }
    if (c->magic_dns && c->base_domain) json_object_set_new(o, "Proxied", json_true());
    else json_object_del(o, "Proxied");
    if (json_object_size(o)) {
        char *s = json_dumps(o, JSON_COMPACT);
        *out = apr_pstrdup(p, s);
        free(s);
    }
    json_decref(o);
    return APR_SUCCESS;
}

apr_status_t ts_map_set_conf(ts_map_t *m, const ts_tailnet_conf_t *conf, apr_pool_t *p,
                             const char **err)
{
    const char *dom = conf->domain ? conf->domain : url_host(p, conf->server_url);
    char *dns, *dom_json = NULL;
    apr_status_t rv;
    int i;

    if (conf->base_domain && !domain_ok(conf->base_domain)) {
        *err = apr_psprintf(p, "base domain \"%s\": not a lower-case DNS name of at most 190 "
                            "characters", conf->base_domain);
        return APR_EINVAL;
    }
    if ((rv = dns_config(p, conf, &dns, err))) return rv;
    if (dom) {
        json_t *s = json_string(dom);
        dom_json = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        json_decref(s);
    }
    if (replace_text(&m->base_domain, NULL, conf->base_domain))
        for (i = 0; i < m->nnodes; i++) ts_map_mark_dirty(m, m->nodes[i]);
    if (replace_text(&m->dns_json, &m->dns_len, dns)) m->pend_dns = 1;
    if (replace_text(&m->domain_json, &m->domain_len, dom_json)) m->pend_domain = 1;
    free(dom_json);
    return APR_SUCCESS;
}

/* ---- users ---- */

/* json_string refuses invalid UTF-8: fall back rather than emit a broken profile. */
static json_t *utf8_or(const char *s, const char *fallback)
{
    json_t *j = s && *s ? json_string(s) : NULL;

    return j ? j : json_string(fallback);
}

static char *profile_json(const ts_user_t *u)
{
    const char *login = u->email && *u->email ? u->email
                        : u->name && *u->name ? u->name
                        : u->provider_identifier && *u->provider_identifier
                          ? u->provider_identifier : NULL;
    const char *display = u->display_name && *u->display_name ? u->display_name : u->name;
    char idbuf[24];
    json_t *o = json_object(), *pic;
    char *s;

    snprintf(idbuf, sizeof(idbuf), "%" APR_INT64_T_FMT, u->id);
    json_object_set_new(o, "ID", json_integer(u->id));
    json_object_set_new(o, "LoginName", utf8_or(login, idbuf));
    json_object_set_new(o, "DisplayName", utf8_or(display, login ? login : idbuf));
    if (u->profile_pic_url && *u->profile_pic_url && (pic = json_string(u->profile_pic_url)))
        json_object_set_new(o, "ProfilePicURL", pic);
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) abort();
    return s;
}

apr_status_t ts_map_user_upsert(ts_map_t *m, const ts_user_t *u)
{
    ts_map_user_t *rec;
    char *prof;

    if (u->id <= 0 || u->id == TS_MAP_TAGGED_USER_ID) return APR_EINVAL;
    rec = ts_map_find_user(m, u->id);
    prof = profile_json(u);
    if (!rec) {
        int pos = find_user_pos(m->users, m->nusers, u->id);
        if (!(rec = calloc(1, sizeof(*rec)))) abort();
        rec->id = u->id;
        m->users = insert_slot(m->users, &m->nusers, &m->capusers, pos, sizeof(*m->users));
        m->users[pos] = rec;
    }
    else if (!strcmp(rec->profile, prof)) {
        free(prof);
        return APR_SUCCESS;
    }
    free(rec->profile);
    rec->profile = prof;
    rec->len = strlen(prof);
    rec->pending = 1;
    m->pend_users = 1;
    return APR_SUCCESS;
}

void ts_map_user_remove(ts_map_t *m, apr_int64_t id)
{
    int i = find_user_pos(m->users, m->nusers, id);

    if (i >= m->nusers || m->users[i]->id != id) return;
    free(m->users[i]->profile);
    free(m->users[i]);
    memmove(m->users + i, m->users + i + 1, sizeof(*m->users) * (size_t)(m->nusers - i - 1));
    m->nusers--;
}

/* ---- nodes ---- */

static void forget_removed(ts_map_t *m, apr_int64_t id)
{
    int i;

    for (i = 0; i < m->removed.n; i++)
        if (m->removed.v[i] == id) m->removed.v[i--] = m->removed.v[--m->removed.n];
}

static int has_subnet_routes(const ts_map_node_t *n)
{
    int i;

    for (i = 0; i < n->r.nroutes; i++)
        if (n->r.routes[i].pfx.bits && n->r.routes[i].advertised && n->r.routes[i].approved)
            return 1;
    return 0;
}

apr_status_t ts_map_node_upsert(ts_map_t *m, const ts_node_t *row,
                                const apr_array_header_t *routes, apr_pool_t *p,
                                const char **err)
{
    ts_map_node_t *n = ts_map_find(m, row->id);
    int fresh = !n, routed;
    uint64_t ph;
    apr_status_t rv;

    if (row->id <= 0) {
        *err = "node id must be positive";
        return APR_EINVAL;
    }
    if (fresh) {
        if (!(n = calloc(1, sizeof(*n)))) abort();
        n->id = row->id;
    }
    routed = has_subnet_routes(n);
    ph = n->pol_hash;
    if ((rv = ts_map_node_load(n, row, routes, p, err))) {
        if (fresh) free(n);
        else ts_map_node_remove(m, row->id);
        return rv;
    }
    n->pol_hash = ts_map_node_pol_hash(n);
    if (fresh || ph != n->pol_hash) m->pol_gen++;
    if (fresh) {
        int pos = find_pos(m->nodes, m->nnodes, n->id);
        m->nodes = insert_slot(m->nodes, &m->nnodes, &m->capnodes, pos, sizeof(*m->nodes));
        m->nodes[pos] = n;
        forget_removed(m, n->id);
    }
    if (routed || has_subnet_routes(n)) m->routes_dirty = 1;
    if (n->r.expiry && n->r.expiry < m->next_expiry) m->next_expiry = n->r.expiry;
    ts_map_mark_dirty(m, n);
    return APR_SUCCESS;
}

apr_status_t ts_map_node_remove(ts_map_t *m, apr_int64_t id)
{
    int pos = find_pos(m->nodes, m->nnodes, id);
    ts_map_node_t *n;

    if (pos >= m->nnodes || m->nodes[pos]->id != id) return APR_NOTFOUND;
    n = m->nodes[pos];
    if (has_subnet_routes(n)) m->routes_dirty = 1;
    ts_map_node_free(n);
    free(n);
    memmove(m->nodes + pos, m->nodes + pos + 1, sizeof(*m->nodes) * (size_t)(m->nnodes - pos - 1));
    m->nnodes--;
    ts_map_ids_push(&m->removed, id);
    m->pol_gen++;
    m->peer_seq++;                      /* its chunk changed (ts_map_chunks.c) */
    return APR_SUCCESS;
}

apr_status_t ts_map_node_set_online(ts_map_t *m, apr_int64_t id, int online,
                                    apr_time_t last_seen)
{
    ts_map_node_t *n = ts_map_find(m, id);

    if (!n) return APR_NOTFOUND;
    if (last_seen > n->last_seen) n->last_seen = last_seen;
    if (n->online != !!online && n->r.nroutes) m->pol_gen++;   /* primary election input */
    n->online = !!online;
    /* presence moves primary routes (lowest online advertiser) */
    if (has_subnet_routes(n)) m->routes_dirty = 1;
    ts_map_mark_dirty(m, n);
    return APR_SUCCESS;
}

int ts_map_node_count(const ts_map_t *m)
{
    return m->nnodes;
}

int ts_map_has_node(const ts_map_t *m, apr_int64_t id)
{
    return ts_map_find(m, id) != NULL;
}

/* ---- settling ---- */

/* Nodes whose key expired since they were rendered change (Expired, cleared endpoints). */
static void expiry_scan(ts_map_t *m, apr_time_t now)
{
    apr_time_t next = APR_INT64_MAX;
    int i;

    for (i = 0; i < m->nnodes; i++) {
        ts_map_node_t *n = m->nodes[i];
        int expired = n->r.expiry && n->r.expiry <= now;
        if (expired != n->expired) {
            ts_map_mark_dirty(m, n);
            if (has_subnet_routes(n)) m->routes_dirty = 1;
        }
        if (n->r.expiry > now && n->r.expiry < next) next = n->r.expiry;
    }
    m->next_expiry = next;
}

typedef struct candidate {
    const ts_map_pfx_t *pfx;
    apr_int64_t id;
} candidate_t;

static int candidate_cmp(const void *a, const void *b)
{
    const candidate_t *x = a, *y = b;
    int c = ts_map_pfx_cmp(x->pfx, y->pfx);

    return c ? c : (x->id < y->id ? -1 : x->id > y->id);
}

/* First index whose entry is not less than key. */
static int lower_bound(const candidate_t *c, int n, const candidate_t *key)
{
    int lo = 0, hi = n;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (candidate_cmp(&c[mid], key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int is_candidate(const ts_map_node_t *n, const ts_map_route_t *r, apr_time_t now)
{
    return n->online && !(n->r.expiry && n->r.expiry <= now) && r->pfx.bits && r->advertised
           && r->approved;
}

/* Primary election, stateless on purpose: per subnet prefix the lowest-ID online advertiser
 * with the route approved. Every child's view computes the same answer from the same rows,
 * which a "keep the previous primary" rule (anti-flap) could only promise with the choice
 * stored in the database. */
static void elect_primaries(ts_map_t *m, apr_time_t now)
{
    candidate_t *c = NULL, key;
    int i, j, nc = 0, cap = 0;

    for (i = 0; i < m->nnodes; i++)
        for (j = 0; j < m->nodes[i]->r.nroutes; j++) {
            if (!is_candidate(m->nodes[i], &m->nodes[i]->r.routes[j], now)) continue;
            if (nc == cap && !(c = realloc(c, sizeof(*c) * (size_t)(cap = cap ? cap * 2 : 64))))
                abort();
            c[nc].pfx = &m->nodes[i]->r.routes[j].pfx;
            c[nc++].id = m->nodes[i]->id;
        }
    if (nc) qsort(c, (size_t)nc, sizeof(*c), candidate_cmp);
    for (i = 0; i < m->nnodes; i++) {
        ts_map_node_t *n = m->nodes[i];
        for (j = 0; j < n->r.nroutes; j++) {
            ts_map_route_t *r = &n->r.routes[j];
            unsigned primary = 0;
            if (is_candidate(n, r, now)) {
                /* the first candidate of this prefix in (prefix, id) order wins */
                key.pfx = &r->pfx;
                key.id = 0;
                primary = c[lower_bound(c, nc, &key)].id == n->id;
            }
            if (primary != r->primary) {
                r->primary = primary;
                ts_map_mark_dirty(m, n);
            }
        }
    }
    free(c);
    m->routes_dirty = 0;
}

void ts_map_settle(ts_map_t *m, apr_time_t now)
{
    int i;

    if (now >= m->next_expiry) expiry_scan(m, now);
    if (m->routes_dirty) elect_primaries(m, now);
    for (i = 0; i < m->dirty.n; i++) {
        ts_map_node_t *n = ts_map_find(m, m->dirty.v[i]);
        if (n && n->dirty) ts_map_node_render(m, n, now);
    }
    m->dirty.n = 0;
}

apr_status_t ts_map_peer_json(ts_map_t *m, apr_int64_t id, apr_time_t now,
                              const char **json, apr_size_t *len)
{
    ts_map_node_t *n;

    ts_map_settle(m, now);
    if (!(n = ts_map_find(m, id))) return APR_NOTFOUND;
    *json = n->peer_json;
    *len = n->peer_len;
    return APR_SUCCESS;
}
