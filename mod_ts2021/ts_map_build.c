/* ts_map_build.c: MapResponses assembled by concatenating cached texts: the full map of one
 * viewer, and deltas built once per settle and shared by every stream (control API 2.5, 2.6, 7.1). */
#include "ts_map_int.h"

#include <apr_atomic.h>
#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

static const char allow_all[] =
    "[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]";
static const char keepalive[] = "{\"KeepAlive\":true}";

const char *ts_map_keepalive_json(apr_size_t *len)
{
    if (len) *len = sizeof(keepalive) - 1;
    return keepalive;
}

/* ---- a list of text pieces, joined with one copy ---- */

typedef struct pieces {
    struct { const char *s; size_t n; } *v;
    int n, cap;
    size_t total;
} pieces_t;

static void pc_add(pieces_t *pc, const char *s, size_t n)
{
    if (pc->n == pc->cap) {
        pc->cap = pc->cap ? pc->cap * 2 : 64;
        if (!(pc->v = realloc(pc->v, sizeof(*pc->v) * (size_t)pc->cap))) abort();
    }
    pc->v[pc->n].s = s;
    pc->v[pc->n++].n = n;
    pc->total += n;
}

static void pc_lit(pieces_t *pc, const char *s)
{
    pc_add(pc, s, strlen(s));
}

/* The joined text after headroom bytes (room for a frame header), NUL-terminated, from p;
 * frees the list. */
static char *pc_join(pieces_t *pc, apr_pool_t *p, size_t headroom, size_t *len)
{
    char *buf = apr_palloc(p, headroom + pc->total + 1), *w = buf + headroom;
    int i;

    for (i = 0; i < pc->n; i++) {
        memcpy(w, pc->v[i].s, pc->v[i].n);
        w += pc->v[i].n;
    }
    *w = '\0';
    *len = pc->total;
    free(pc->v);
    memset(pc, 0, sizeof(*pc));
    return buf;
}

/* ---- UserProfiles ---- */

static void mark_user(ts_map_t *m, const ts_map_node_t *n, unsigned seq)
{
    ts_map_user_t *u = ts_map_find_user(m, ts_map_wire_user(n));

    if (u) u->mark = seq;
}

/* Profiles marked with seq (or pending, if also_pending), by ID; 0 if none. */
static int add_profiles(ts_map_t *m, pieces_t *pc, unsigned seq, int also_pending)
{
    int i, k = 0, tagged = m->tagged.mark == seq;

    for (i = 0; i <= m->nusers; i++) {
        ts_map_user_t *u = i < m->nusers ? m->users[i] : NULL;
        if (tagged && (!u || u->id > TS_MAP_TAGGED_USER_ID)) {
            pc_lit(pc, k++ ? "," : "[");
            pc_add(pc, m->tagged.profile, m->tagged.len);
            tagged = 0;
        }
        if (!u || !(u->mark == seq || (also_pending && u->pending))) continue;
        pc_lit(pc, k++ ? "," : "[");
        pc_add(pc, u->profile, u->len);
    }
    if (k) pc_lit(pc, "]");
    return k;
}

static unsigned next_seq(ts_map_t *m)
{
    if (!++m->mark_seq) ++m->mark_seq;      /* 0 is "never marked" */
    return m->mark_seq;
}

/* ---- full map ---- */

static void add_peers(ts_map_t *m, pieces_t *pc, const ts_map_node_t *viewer, unsigned seq)
{
    int i, k = 0;

    for (i = 0; i < m->nnodes; i++) {
        const ts_map_node_t *n = m->nodes[i];
        if (!ts_map_visible(m, viewer, n)) continue;
        pc_lit(pc, k++ ? "," : ",\"Peers\":[");
        pc_add(pc, n->peer_json, n->peer_len);
        mark_user(m, n, seq);
    }
    if (k) pc_lit(pc, "]");
}

apr_status_t ts_map_full(ts_map_t *m, apr_int64_t viewer, apr_time_t now, apr_pool_t *p,
                         char **json, apr_size_t *len, const char **err)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    char ctime[48];
    ts_map_node_t *v;
    unsigned seq;

    ts_map_settle(m, now);
    if (!(v = ts_map_find(m, viewer))) {
        *err = "node is not in the tailnet view";
        return APR_NOTFOUND;
    }
    if (!m->derp_json) {
        *err = "no DERP map loaded yet";
        return APR_EAGAIN;
    }
    seq = next_seq(m);
    mark_user(m, v, seq);
    pc_lit(&pc, "{\"Node\":");
    pc_add(&pc, v->self_json, v->self_len);
    pc_lit(&pc, ",\"DERPMap\":");
    pc_add(&pc, m->derp_json, m->derp_len);
    add_peers(m, &pc, v, seq);
    if (m->dns_json) {
        pc_lit(&pc, ",\"DNSConfig\":");
        pc_add(&pc, m->dns_json, m->dns_len);
    }
    if (m->domain_json) {
        pc_lit(&pc, ",\"Domain\":");
        pc_add(&pc, m->domain_json, m->domain_len);
    }
    pc_lit(&pc, ",\"CollectServices\":false,\"PacketFilter\":");
    pc_lit(&pc, allow_all);
    pc_lit(&pc, ",\"UserProfiles\":");
    if (!add_profiles(m, &pc, seq, 0)) pc_lit(&pc, "[]");
    pc_lit(&pc, ",\"ControlTime\":");
    pc_add(&pc, ctime, ts_map_fmt_time(ctime, sizeof(ctime), now));
    pc_lit(&pc, ",\"Debug\":{\"DisableLogTail\":true}}");
    *json = pc_join(&pc, p, 0, len);
    return APR_SUCCESS;
}

/* ---- deltas ---- */

typedef struct delta_entry {
    apr_int64_t id;
    const char *json;
    size_t len;
} delta_entry_t;

struct ts_map_delta {
    apr_pool_t *pool;                /* unmanaged: freed by whichever thread unrefs last */
    volatile apr_uint32_t refs;
    const char *removed, *patches, *profiles, *derp, *dns, *domain;  /* JSON texts or NULL */
    delta_entry_t *changed, *selves; /* by id */
    int nchanged, nselves;
    char ctime[48];
    uint8_t *raw;                    /* shared rendering: LE32 header + JSON */
    size_t json_len;
    uint8_t *zframe;                 /* the same compressed, when built with an encoder */
    size_t zlen;
    int shared_empty;                /* nothing for viewers outside changed/selves */
};

static int id_cmp(const void *a, const void *b)
{
    apr_int64_t x = *(const apr_int64_t *)a, y = *(const apr_int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Sorts and removes duplicates. */
static void ids_normalise(ts_map_ids_t *ids)
{
    int i, k = 0;

    if (ids->n) qsort(ids->v, (size_t)ids->n, sizeof(*ids->v), id_cmp);
    for (i = 0; i < ids->n; i++)
        if (!k || ids->v[k - 1] != ids->v[i]) ids->v[k++] = ids->v[i];
    ids->n = k;
}

static const delta_entry_t *entry_find(const delta_entry_t *v, int n, apr_int64_t id)
{
    int lo = 0, hi = n;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v[mid].id == id) return &v[mid];
        if (v[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int ts_map_delta_is_shared_for(const ts_map_delta_t *d, apr_int64_t viewer)
{
    return !entry_find(d->changed, d->nchanged, viewer)
           && !entry_find(d->selves, d->nselves, viewer);
}

static void field(pieces_t *pc, int *k, const char *name, const char *value)
{
    if (!value) return;
    pc_lit(pc, (*k)++ ? ",\"" : "{\"");
    pc_lit(pc, name);
    pc_lit(pc, "\":");
    pc_lit(pc, value);
}

/* The delta as viewer sees it (viewer 0: the shared rendering). Returns the number of fields
 * besides ControlTime. */
static int render_delta(const ts_map_delta_t *d, apr_int64_t viewer, pieces_t *pc)
{
    const delta_entry_t *self = entry_find(d->selves, d->nselves, viewer);
    int i, k = 0, c = 0;

    field(pc, &k, "PeersRemoved", d->removed);
    for (i = 0; i < d->nchanged; i++) {
        if (d->changed[i].id == viewer) continue;
        if (!c++) field(pc, &k, "PeersChanged", "[");
        else pc_lit(pc, ",");
        pc_add(pc, d->changed[i].json, d->changed[i].len);
    }
    if (c) pc_lit(pc, "]");
    field(pc, &k, "PeersChangedPatch", d->patches);
    field(pc, &k, "UserProfiles", d->profiles);
    field(pc, &k, "Node", self ? self->json : NULL);
    field(pc, &k, "DERPMap", d->derp);
    field(pc, &k, "DNSConfig", d->dns);
    field(pc, &k, "Domain", d->domain);
    field(pc, &k, "ControlTime", d->ctime);
    pc_lit(pc, "}");
    return k - 1;
}

/* {"NodeID":n,…} with the changed patchable fields' current values (control API 2.6).
 * Presence carries LastSeen along; an unset expiry is the zero time (= never). */
static void add_patch(ts_sb_t *b, const ts_map_node_t *n)
{
    char *const *pf = n->pf;
    unsigned mask = n->pend_patch;
    size_t start = b->len;
    int fields = 0;

#define PATCH(name, value) \
    do { ts_sb_lit(b, ",\"" name "\":"); ts_sb_lit(b, value); fields++; } while (0)
    ts_sb_lit(b, start ? ",{\"NodeID\":" : "[{\"NodeID\":");
    ts_sb_int(b, n->id);
    if ((mask & 1u << TS_PF_KEY) && pf[TS_PF_KEY]) PATCH("Key", pf[TS_PF_KEY]);
    if ((mask & 1u << TS_PF_DISCO) && pf[TS_PF_DISCO]) PATCH("DiscoKey", pf[TS_PF_DISCO]);
    if (mask & 1u << TS_PF_ENDPOINTS)
        PATCH("Endpoints", pf[TS_PF_ENDPOINTS] ? pf[TS_PF_ENDPOINTS] : "[]");
    if ((mask & 1u << TS_PF_DERP) && pf[TS_PF_DERP]) PATCH("DERPRegion", pf[TS_PF_DERP]);
    if (mask & 1u << TS_PF_ONLINE) PATCH("Online", pf[TS_PF_ONLINE]);
    if ((mask & (1u << TS_PF_ONLINE | 1u << TS_PF_LASTSEEN)) && pf[TS_PF_LASTSEEN])
        PATCH("LastSeen", pf[TS_PF_LASTSEEN]);
    if (mask & 1u << TS_PF_KEYEXPIRY)
        PATCH("KeyExpiry", pf[TS_PF_KEYEXPIRY] ? pf[TS_PF_KEYEXPIRY] : "\"0001-01-01T00:00:00Z\"");
#undef PATCH
    if (!fields) {
        b->len = start;
        if (b->d) b->d[start] = '\0';
        return;
    }
    ts_sb_lit(b, "}");
}

static const char *take_removed(ts_map_t *m, apr_pool_t *p)
{
    ts_sb_t b = { NULL, 0, 0 };
    const char *out = NULL;
    int i;

    ids_normalise(&m->removed);
    for (i = 0; i < m->removed.n; i++) {
        if (ts_map_find(m, m->removed.v[i])) continue;    /* came back in the same batch */
        ts_sb_lit(&b, b.len ? "," : "[");
        ts_sb_int(&b, m->removed.v[i]);
    }
    if (b.len) {
        ts_sb_lit(&b, "]");
        out = apr_pstrmemdup(p, b.d, b.len);
    }
    free(b.d);
    m->removed.n = 0;
    return out;
}

static void take_nodes(ts_map_t *m, ts_map_delta_t *d, ts_sb_t *patches, unsigned seq)
{
    int i;

    ids_normalise(&m->pending);
    d->changed = apr_palloc(d->pool, sizeof(*d->changed) * (size_t)(m->pending.n + 1));
    d->selves = apr_palloc(d->pool, sizeof(*d->selves) * (size_t)(m->pending.n + 1));
    for (i = 0; i < m->pending.n; i++) {
        ts_map_node_t *n = ts_map_find(m, m->pending.v[i]);
        if (!n) continue;
        if (n->pend_full) {
            delta_entry_t *e = &d->changed[d->nchanged++];
            e->id = n->id;
            e->json = apr_pstrmemdup(d->pool, n->peer_json, n->peer_len);
            e->len = n->peer_len;
            mark_user(m, n, seq);
        }
        else if (n->pend_patch) add_patch(patches, n);
        if (n->pend_self) {
            delta_entry_t *e = &d->selves[d->nselves++];
            e->id = n->id;
            e->json = apr_pstrmemdup(d->pool, n->self_json, n->self_len);
            e->len = n->self_len;
        }
        n->pend_full = n->pend_self = n->listed = 0;
        n->pend_patch = 0;
    }
    m->pending.n = 0;
}

/* Owners of changed peers, users that changed, and the settings that changed. */
static void take_rest(ts_map_t *m, ts_map_delta_t *d, unsigned seq)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    size_t len;
    int i;

    if (add_profiles(m, &pc, seq, m->pend_users)) d->profiles = pc_join(&pc, d->pool, 0, &len);
    else free(pc.v);
    for (i = 0; m->pend_users && i < m->nusers; i++) m->users[i]->pending = 0;
    if (m->pend_derp && m->derp_json) d->derp = apr_pstrdup(d->pool, m->derp_json);
    if (m->pend_dns) d->dns = m->dns_json ? apr_pstrdup(d->pool, m->dns_json) : "{}";
    if (m->pend_domain && m->domain_json) d->domain = apr_pstrdup(d->pool, m->domain_json);
    m->pend_users = m->pend_derp = m->pend_dns = m->pend_domain = 0;
}

/* The shared rendering, framed raw and, with enc, compressed. */
static void render_shared(ts_map_delta_t *d, ts_mapframe_enc_t *enc)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    const char *err;
    uint32_t n;

    d->shared_empty = render_delta(d, 0, &pc) == 0;
    d->raw = (uint8_t *)pc_join(&pc, d->pool, TS_MAPFRAME_HDR_LEN, &d->json_len);
    n = (uint32_t)d->json_len;
    d->raw[0] = (uint8_t)n;
    d->raw[1] = (uint8_t)(n >> 8);
    d->raw[2] = (uint8_t)(n >> 16);
    d->raw[3] = (uint8_t)(n >> 24);
    /* on failure zframe stays NULL and each viewer compresses for itself */
    if (enc && !d->shared_empty
        && ts_mapframe_encode(enc, d->pool, (const char *)d->raw + TS_MAPFRAME_HDR_LEN,
                              d->json_len, 1, &d->zframe, &d->zlen, &err) != APR_SUCCESS)
        d->zframe = NULL;
}

apr_status_t ts_map_delta_build(ts_map_t *m, apr_time_t now, ts_mapframe_enc_t *enc,
                                ts_map_delta_t **dp)
{
    ts_sb_t patches = { NULL, 0, 0 };
    ts_map_delta_t *d;
    apr_pool_t *pool;
    unsigned seq;

    *dp = NULL;
    ts_map_settle(m, now);
    if (!m->pending.n && !m->removed.n && !m->pend_derp && !m->pend_dns && !m->pend_domain
        && !m->pend_users)
        return APR_NOTFOUND;
    if (apr_pool_create_unmanaged_ex(&pool, NULL, NULL) != APR_SUCCESS) return APR_ENOMEM;
    d = apr_pcalloc(pool, sizeof(*d));
    d->pool = pool;
    d->refs = 1;
    seq = next_seq(m);
    d->removed = take_removed(m, pool);
    take_nodes(m, d, &patches, seq);
    if (patches.len) {
        ts_sb_lit(&patches, "]");
        d->patches = apr_pstrmemdup(pool, patches.d, patches.len);
    }
    free(patches.d);
    take_rest(m, d, seq);
    ts_map_fmt_time(d->ctime, sizeof(d->ctime), now);
    if (!d->removed && !d->nchanged && !d->patches && !d->profiles && !d->nselves && !d->derp
        && !d->dns && !d->domain) {
        apr_pool_destroy(pool);
        return APR_NOTFOUND;
    }
    render_shared(d, enc);
    *dp = d;
    return APR_SUCCESS;
}

void ts_map_delta_ref(ts_map_delta_t *d)
{
    apr_atomic_inc32(&d->refs);
}

void ts_map_delta_unref(ts_map_delta_t *d)
{
    if (d && !apr_atomic_dec32(&d->refs)) apr_pool_destroy(d->pool);
}

apr_status_t ts_map_delta_json(const ts_map_delta_t *d, apr_int64_t viewer, apr_pool_t *p,
                               const char **json, apr_size_t *len)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    int fields;

    if (ts_map_delta_is_shared_for(d, viewer)) {
        if (d->shared_empty) return APR_NOTFOUND;
        *json = (const char *)d->raw + TS_MAPFRAME_HDR_LEN;
        *len = d->json_len;
        return APR_SUCCESS;
    }
    fields = render_delta(d, viewer, &pc);
    *json = pc_join(&pc, p, 0, len);
    return fields ? APR_SUCCESS : APR_NOTFOUND;
}

apr_status_t ts_map_delta_frame(const ts_map_delta_t *d, apr_int64_t viewer, int compress,
                                ts_mapframe_enc_t *enc, apr_pool_t *p, const uint8_t **frame,
                                apr_size_t *len, const char **err)
{
    const char *json;
    apr_size_t jlen;
    apr_status_t rv;
    uint8_t *out;

    if (ts_map_delta_is_shared_for(d, viewer) && !d->shared_empty) {
        if (!compress) {
            *frame = d->raw;
            *len = TS_MAPFRAME_HDR_LEN + d->json_len;
            return APR_SUCCESS;
        }
        if (d->zframe) {
            *frame = d->zframe;
            *len = d->zlen;
            return APR_SUCCESS;
        }
    }
    if ((rv = ts_map_delta_json(d, viewer, p, &json, &jlen))) {
        *err = "nothing for this viewer";
        return rv;
    }
    if ((rv = ts_mapframe_encode(enc, p, json, jlen, compress, &out, len, err))) return rv;
    *frame = out;
    return APR_SUCCESS;
}
