/* ts_map_build.c: MapResponses assembled by concatenating cached texts: the full map of one
 * viewer, and deltas built once per settle and shared by every stream (control API 2.5, 2.6, 7.1). */
#include "ts_map_int.h"

#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <stdio.h>
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

void ts_map_mark_user(ts_map_t *m, const ts_map_node_t *n, unsigned seq)
{
    mark_user(m, n, seq);
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

/* A self entry, with the policy's CapMap/Capabilities instead of the default ones. */
static void self_add(pieces_t *pc, const char *json, size_t len, const char *caps)
{
    size_t tail = strlen(ts_map_self_caps) + 1;

    if (!caps || len < tail) {
        pc_add(pc, json, len);
        return;
    }
    pc_add(pc, json, len - tail);
    pc_lit(pc, caps);
    pc_lit(pc, "}");
}

static void add_peers(ts_map_t *m, pieces_t *pc, const ts_map_node_t *viewer, unsigned seq)
{
    const ts_map_pol_t *pol = m->pol;
    int iv = pol ? ts_map_pol_index(pol, viewer->id) : -1;
    int i, j = 0, k = 0;

    for (i = 0; i < m->nnodes && (!pol || iv >= 0); i++) {
        const ts_map_node_t *n = m->nodes[i];
        if (n == viewer) continue;
        if (pol) {
            /* both sorted by id */
            while (j < pol->n && pol->ids[j] < n->id) j++;
            if (j >= pol->n || pol->ids[j] != n->id || !ts_map_pol_sees(pol, iv, j)) continue;
        }
        pc_lit(pc, k++ ? "," : ",\"Peers\":[");
        pc_add(pc, n->peer_json, n->peer_len);
        mark_user(m, n, seq);
    }
    if (k) pc_lit(pc, "]");
}

/* The pieces' text appended to b; frees the list. */
static void pc_to_sb(pieces_t *pc, ts_sb_t *b)
{
    int i;

    for (i = 0; i < pc->n; i++) ts_sb_raw(b, pc->v[i].s, pc->v[i].n);
    free(pc->v);
    memset(pc, 0, sizeof(*pc));
}

void ts_map_full_head(ts_map_t *m, const ts_map_node_t *v, int iv, ts_sb_t *b)
{
    pieces_t pc = { NULL, 0, 0, 0 };

    pc_lit(&pc, "{\"Node\":");
    self_add(&pc, v->self_json, v->self_len, iv >= 0 ? m->pol->caps[iv] : NULL);
    pc_lit(&pc, ",\"DERPMap\":");
    pc_add(&pc, m->derp_json, m->derp_len);
    pc_to_sb(&pc, b);
}

void ts_map_full_tail(ts_map_t *m, int iv, unsigned seq, apr_time_t now, ts_sb_t *b)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    char ctime[48];

    if (m->dns_json) {
        pc_lit(&pc, ",\"DNSConfig\":");
        pc_add(&pc, m->dns_json, m->dns_len);
    }
    if (m->domain_json) {
        pc_lit(&pc, ",\"Domain\":");
        pc_add(&pc, m->domain_json, m->domain_len);
    }
    pc_lit(&pc, ",\"CollectServices\":false,\"PacketFilter\":");
    pc_lit(&pc, !m->pol ? allow_all : iv >= 0 ? m->pol->filter[iv] : "[]");
    if (iv >= 0 && m->pol->ssh[iv]) {
        pc_lit(&pc, ",\"SSHPolicy\":");
        pc_lit(&pc, m->pol->ssh[iv]);
    }
    pc_lit(&pc, ",\"UserProfiles\":");
    if (!add_profiles(m, &pc, seq, 0)) pc_lit(&pc, "[]");
    pc_lit(&pc, ",\"ControlTime\":");
    pc_add(&pc, ctime, ts_map_fmt_time(ctime, sizeof(ctime), now));
    pc_lit(&pc, ",\"Debug\":{\"DisableLogTail\":true}}");
    pc_to_sb(&pc, b);
}

apr_status_t ts_map_full_begin(ts_map_t *m, apr_int64_t viewer, apr_time_t now,
                               ts_map_node_t **v, unsigned *seq, int *iv, const char **err)
{
    ts_map_settle(m, now);
    if (!(*v = ts_map_find(m, viewer))) {
        *err = "node is not in the tailnet view";
        return APR_NOTFOUND;
    }
    if (!m->derp_json) {
        *err = "no DERP map loaded yet";
        return APR_EAGAIN;
    }
    *seq = next_seq(m);
    mark_user(m, *v, *seq);
    *iv = ts_map_pol_index(m->pol, viewer);
    return APR_SUCCESS;
}

apr_status_t ts_map_full(ts_map_t *m, apr_int64_t viewer, apr_time_t now, apr_pool_t *p,
                         char **json, apr_size_t *len, const char **err)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    ts_sb_t head = { NULL, 0, 0 }, tail = { NULL, 0, 0 };
    ts_map_node_t *v;
    unsigned seq;
    int iv;
    apr_status_t rv = ts_map_full_begin(m, viewer, now, &v, &seq, &iv, err);

    if (rv != APR_SUCCESS) return rv;
    ts_map_full_head(m, v, iv, &head);
    pc_add(&pc, head.d, head.len);
    add_peers(m, &pc, v, seq);
    ts_map_full_tail(m, iv, seq, now, &tail);
    pc_add(&pc, tail.d, tail.len);
    *json = pc_join(&pc, p, 0, len);
    free(head.d);
    free(tail.d);
    return APR_SUCCESS;
}

/* ---- deltas ---- */

typedef struct delta_entry {
    apr_int64_t id;
    const char *json;
    size_t len;
    int idx;                         /* index in the delta's policy, -1 (policy deltas) */
    int pidx;                        /* index in the previous policy (all[] only) */
    apr_int64_t owner;               /* wire user (changed[] and all[]) */
    int flag;                        /* all[]: also in changed[]; profiles: the user changed */
} delta_entry_t;

/* A rendering shared by every viewer of one visibility class (policy deltas). */
typedef struct cls_render {
    uint8_t *raw;                    /* LE32 header + JSON */
    size_t json_len;
    uint8_t *zframe;
    size_t zlen;
    int built, empty;
} cls_render_t;

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
    /* policy deltas (a policy is in force, or was until this delta) */
    int policy;
    ts_map_pol_t *pol, *prev;        /* references held; pol NULL: no policy now */
    int polchg, prev_none;           /* a policy-style update; before it, no policy */
    apr_int64_t *removed_ids;
    int nremoved;
    delta_entry_t *patchv, *profv, *all;
    int npatch, nprof, nall;
    unsigned char *personal;         /* polchg: per pol index, its view changed */
    int *prev_to_pol;                /* polchg: index in pol of each prev node, or -1 */
    apr_thread_mutex_t *mu;          /* guards cls (built on first use) and pool then */
    cls_render_t *cls;               /* pol->ncls + 1 (the last: viewers not in pol) */
};

static int id_cmp(const void *a, const void *b)
{
    apr_int64_t x = *(const apr_int64_t *)a, y = *(const apr_int64_t *)b;

    return x < y ? -1 : x > y;
}

static int entry_cmp(const void *a, const void *b)
{
    return id_cmp(&((const delta_entry_t *)a)->id, &((const delta_entry_t *)b)->id);
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

/* Whether viewer's view changed with the policy (it gets PacketFilter & co.). */
static int delta_personal(const ts_map_delta_t *d, apr_int64_t viewer)
{
    int iv;

    if (!d->polchg) return 0;
    if (!d->pol) return 1;
    if ((iv = ts_map_pol_index(d->pol, viewer)) >= 0) return d->personal[iv];
    return ts_map_pol_index(d->prev, viewer) >= 0;
}

int ts_map_delta_is_shared_for(const ts_map_delta_t *d, apr_int64_t viewer)
{
    return !entry_find(d->changed, d->nchanged, viewer)
           && !entry_find(d->selves, d->nselves, viewer) && !delta_personal(d, viewer);
}

int ts_map_delta_has_policy(const ts_map_delta_t *d)
{
    return d->policy;
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
/* The fields every delta rendering ends with, and the closing brace; the field count. */
static int delta_close(pieces_t *pc, int k, const ts_map_delta_t *d)
{
    field(pc, &k, "DERPMap", d->derp);
    field(pc, &k, "DNSConfig", d->dns);
    field(pc, &k, "Domain", d->domain);
    field(pc, &k, "ControlTime", d->ctime);
    pc_lit(pc, "}");
    return k - 1;
}

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
    return delta_close(pc, k, d);
}

/* ---- policy renderings ---- */

/* Who one rendering is for: a class of d->pol (viewer 0), or one viewer. */
typedef struct view {
    const ts_map_delta_t *d;
    apr_int64_t viewer;
    const uint64_t *row;             /* visibility in d->pol; NULL: sees nobody */
    int all;                         /* no policy: sees everyone */
    int personal, iv, ivp;
} view_t;

static int v_sees(const view_t *v, int j, apr_int64_t id)
{
    if (id == v->viewer) return 0;
    if (v->all) return 1;
    return v->row && j >= 0 && (int)((v->row[j >> 6] >> (j & 63)) & 1u);
}

/* Before the policy change (personal views only). */
static int v_saw(const view_t *v, int jp, apr_int64_t id)
{
    if (id == v->viewer) return 0;
    if (v->d->prev_none) return 1;
    return ts_map_pol_sees(v->d->prev, v->ivp, jp);
}

static int owns_visible(const view_t *v, apr_int64_t user)
{
    const ts_map_pol_t *pol = v->d->pol;
    int j;

    if (v->all) return 1;
    for (j = 0; pol && j < pol->n; j++)
        if (pol->owners[j] == user && v_sees(v, j, pol->ids[j])) return 1;
    return 0;
}

/* Decimal digits of v (>= 0) at w; returns the end. */
static char *put_id(char *w, apr_int64_t v)
{
    char tmp[24];
    int n = 0;

    do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) > 0);
    while (n) *w++ = tmp[--n];
    return w;
}

/* ids: sorted unless unsorted (then sorted here); duplicates dropped. */
static void ids_text(pieces_t *pc, apr_pool_t *p, apr_int64_t *ids, int n, int unsorted,
                     int *k, const char *name)
{
    char *buf, *w;
    int i;

    if (!n) return;
    if (unsorted) qsort(ids, (size_t)n, sizeof(*ids), id_cmp);
    buf = w = apr_palloc(p, (size_t)n * 21 + 3);
    *w++ = '[';
    for (i = 0; i < n; i++) {
        if (i && ids[i] == ids[i - 1]) continue;
        if (w > buf + 1) *w++ = ',';
        w = put_id(w, ids[i]);
    }
    *w++ = ']';
    *w = '\0';
    field(pc, k, name, buf);
}

static int render_policy(const view_t *v, apr_pool_t *p, pieces_t *pc)
{
    const ts_map_delta_t *d = v->d;
    const delta_entry_t *self = v->viewer ? entry_find(d->selves, d->nselves, v->viewer) : NULL;
    apr_int64_t *ids, *owners;
    int i, k = 0, c = 0, nids = 0, nown = 0, np = 0;

    /* PeersRemoved: removed nodes, and (personal) peers no longer visible */
    ids = apr_palloc(p, sizeof(*ids) * (size_t)(d->nremoved + d->nall + 1));
    for (i = 0; i < d->nremoved; i++) ids[nids++] = d->removed_ids[i];
    if (v->personal) {
        if (d->prev && !d->prev_none)
            for (i = 0; i < d->prev->n; i++) {
                apr_int64_t id = d->prev->ids[i];
                if (ts_map_pol_sees(d->prev, v->ivp, i) && !v_sees(v, d->prev_to_pol[i], id))
                    ids[nids++] = id;
            }
        else
            for (i = 0; i < d->nall; i++)
                if (v_saw(v, d->all[i].pidx, d->all[i].id) && !v_sees(v, d->all[i].idx, d->all[i].id))
                    ids[nids++] = d->all[i].id;
    }
    ids_text(pc, p, ids, nids, d->nremoved && nids > d->nremoved, &k, "PeersRemoved");
    /* PeersChanged: changed visible peers, and (personal) newly visible ones */
    owners = apr_palloc(p, sizeof(*owners) * (size_t)(d->nchanged + d->nall + 1));
    if (v->personal) {
        for (i = 0; i < d->nall; i++) {
            const delta_entry_t *e = &d->all[i];
            if (!v_sees(v, e->idx, e->id) || (!e->flag && v_saw(v, e->pidx, e->id))) continue;
            if (!c++) field(pc, &k, "PeersChanged", "[");
            else pc_lit(pc, ",");
            pc_add(pc, e->json, e->len);
            owners[nown++] = e->owner;
        }
    }
    else {
        for (i = 0; i < d->nchanged; i++) {
            const delta_entry_t *e = &d->changed[i];
            if (!v_sees(v, e->idx, e->id)) continue;
            if (!c++) field(pc, &k, "PeersChanged", "[");
            else pc_lit(pc, ",");
            pc_add(pc, e->json, e->len);
            owners[nown++] = e->owner;
        }
    }
    if (c) pc_lit(pc, "]");
    for (i = 0; i < d->npatch; i++) {
        const delta_entry_t *e = &d->patchv[i];
        if (!v_sees(v, e->idx, e->id)) continue;
        pc_lit(pc, np++ ? "," : (k++ ? ",\"PeersChangedPatch\":[" : "{\"PeersChangedPatch\":["));
        pc_add(pc, e->json, e->len);
    }
    if (np) pc_lit(pc, "]");
    if (nown) qsort(owners, (size_t)nown, sizeof(*owners), id_cmp);
    for (i = 0, np = 0; i < d->nprof; i++) {
        const delta_entry_t *e = &d->profv[i];
        if (!(nown && bsearch(&e->id, owners, (size_t)nown, sizeof(*owners), id_cmp))
            && !(e->flag && owns_visible(v, e->id)))
            continue;
        pc_lit(pc, np++ ? "," : (k++ ? ",\"UserProfiles\":[" : "{\"UserProfiles\":["));
        pc_add(pc, e->json, e->len);
    }
    if (np) pc_lit(pc, "]");
    field(pc, &k, "Node", self ? self->json : NULL);
    if (v->personal) {
        const char *ssh = v->iv >= 0 ? d->pol->ssh[v->iv] : NULL;
        const char *old = d->prev && v->ivp >= 0 ? d->prev->ssh[v->ivp] : NULL;
        field(pc, &k, "PacketFilter", !d->pol ? allow_all : v->iv >= 0 ? d->pol->filter[v->iv] : "[]");
        field(pc, &k, "SSHPolicy", ssh ? ssh : old ? "{\"rules\":[]}" : NULL);
    }
    return delta_close(pc, k, d);
}

static void view_init(view_t *v, const ts_map_delta_t *d, apr_int64_t viewer)
{
    memset(v, 0, sizeof(*v));
    v->d = d;
    v->viewer = viewer;
    v->all = !d->pol;
    v->iv = ts_map_pol_index(d->pol, viewer);
    v->ivp = d->prev_none ? -1 : ts_map_pol_index(d->prev, viewer);
    if (v->iv >= 0) v->row = d->pol->rows + (size_t)d->pol->cls[v->iv] * (size_t)d->pol->words;
    v->personal = delta_personal(d, viewer);
}

static void frame_header(uint8_t *raw, size_t len)
{
    uint32_t n = (uint32_t)len;

    raw[0] = (uint8_t)n;
    raw[1] = (uint8_t)(n >> 8);
    raw[2] = (uint8_t)(n >> 16);
    raw[3] = (uint8_t)(n >> 24);
}

/* The shared rendering of viewer's class, built on first use (under d->mu). */
static const cls_render_t *cls_get(ts_map_delta_t *d, apr_int64_t viewer, int compress,
                                   ts_mapframe_enc_t *enc)
{
    int iv = ts_map_pol_index(d->pol, viewer), c = iv >= 0 ? d->pol->cls[iv] : d->pol->ncls;
    cls_render_t *cr = &d->cls[c];
    const char *err;

    apr_thread_mutex_lock(d->mu);
    if (!cr->built) {
        pieces_t pc = { NULL, 0, 0, 0 };
        view_t v;
        view_init(&v, d, 0);
        v.row = iv >= 0 ? d->pol->rows + (size_t)c * (size_t)d->pol->words : NULL;
        v.personal = 0;
        cr->empty = render_policy(&v, d->pool, &pc) == 0;
        cr->raw = (uint8_t *)pc_join(&pc, d->pool, TS_MAPFRAME_HDR_LEN, &cr->json_len);
        frame_header(cr->raw, cr->json_len);
        cr->built = 1;
    }
    if (compress && enc && !cr->empty && !cr->zframe
        && ts_mapframe_encode(enc, d->pool, (const char *)cr->raw + TS_MAPFRAME_HDR_LEN,
                              cr->json_len, 1, &cr->zframe, &cr->zlen, &err) != APR_SUCCESS)
        cr->zframe = NULL;
    apr_thread_mutex_unlock(d->mu);
    return cr;
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

static const char *take_removed(ts_map_t *m, ts_map_delta_t *d, apr_pool_t *p)
{
    ts_sb_t b = { NULL, 0, 0 };
    const char *out = NULL;
    int i;

    ids_normalise(&m->removed);
    d->removed_ids = apr_palloc(p, sizeof(apr_int64_t) * (size_t)(m->removed.n + 1));
    for (i = 0; i < m->removed.n; i++) {
        if (ts_map_find(m, m->removed.v[i])) continue;    /* came back in the same batch */
        ts_sb_lit(&b, b.len ? "," : "[");
        ts_sb_int(&b, m->removed.v[i]);
        d->removed_ids[d->nremoved++] = m->removed.v[i];
    }
    if (b.len) {
        ts_sb_lit(&b, "]");
        out = apr_pstrmemdup(p, b.d, b.len);
    }
    free(b.d);
    m->removed.n = 0;
    return out;
}

/* The self entry as the delta sends it (policy CapMap spliced in). */
static void self_entry(ts_map_t *m, ts_map_delta_t *d, delta_entry_t *e, const ts_map_node_t *n)
{
    int iv = ts_map_pol_index(m->pol, n->id);
    pieces_t pc = { NULL, 0, 0, 0 };

    e->id = n->id;
    self_add(&pc, n->self_json, n->self_len, iv >= 0 ? m->pol->caps[iv] : NULL);
    e->json = pc_join(&pc, d->pool, 0, &e->len);
}

static void take_nodes(ts_map_t *m, ts_map_delta_t *d, ts_sb_t *patches, unsigned seq)
{
    int i;

    ids_normalise(&m->pending);
    d->changed = apr_palloc(d->pool, sizeof(*d->changed) * (size_t)(m->pending.n + 1));
    d->selves = apr_palloc(d->pool, sizeof(*d->selves)
                                    * (size_t)(m->pending.n + (m->pol_changed ? m->nnodes : 0) + 1));
    if (d->policy)
        d->patchv = apr_palloc(d->pool, sizeof(*d->patchv) * (size_t)(m->pending.n + 1));
    for (i = 0; i < m->pending.n; i++) {
        ts_map_node_t *n = ts_map_find(m, m->pending.v[i]);
        if (!n) continue;
        if (n->pend_full) {
            delta_entry_t *e = &d->changed[d->nchanged++];
            e->id = n->id;
            e->json = apr_pstrmemdup(d->pool, n->peer_json, n->peer_len);
            e->len = n->peer_len;
            e->idx = ts_map_pol_index(m->pol, n->id);
            e->owner = ts_map_wire_user(n);
            mark_user(m, n, seq);
        }
        else if (n->pend_patch && d->policy) {
            ts_sb_t one = { NULL, 0, 0 };
            add_patch(&one, n);
            if (one.len) {
                delta_entry_t *e = &d->patchv[d->npatch++];
                e->id = n->id;
                e->idx = ts_map_pol_index(m->pol, n->id);
                e->json = apr_pstrmemdup(d->pool, one.d + 1, one.len - 1);   /* no "[" */
                e->len = one.len - 1;
            }
            free(one.d);
        }
        else if (n->pend_patch) add_patch(patches, n);
        if (n->pend_self) self_entry(m, d, &d->selves[d->nselves++], n);
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

    if (d->policy) {
        /* every candidate profile; each rendering picks those it may see */
        d->profv = apr_palloc(d->pool, sizeof(*d->profv) * (size_t)(m->nusers + 2));
        for (i = 0; i <= m->nusers; i++) {
            ts_map_user_t *u = i < m->nusers ? m->users[i] : &m->tagged;
            delta_entry_t *e;
            if (!d->polchg && u->mark != seq && !(m->pend_users && u->pending)) continue;
            e = &d->profv[d->nprof++];
            memset(e, 0, sizeof(*e));
            e->id = u->id;
            e->json = apr_pstrmemdup(d->pool, u->profile, u->len);
            e->len = u->len;
            e->flag = m->pend_users && u->pending;
        }
        if (d->nprof) qsort(d->profv, (size_t)d->nprof, sizeof(*d->profv), entry_cmp);
    }
    else if (add_profiles(m, &pc, seq, m->pend_users)) d->profiles = pc_join(&pc, d->pool, 0, &len);
    else free(pc.v);
    for (i = 0; m->pend_users && i < m->nusers; i++) m->users[i]->pending = 0;
    if (m->pend_derp && m->derp_json) d->derp = apr_pstrdup(d->pool, m->derp_json);
    if (m->pend_dns) d->dns = m->dns_json ? apr_pstrdup(d->pool, m->dns_json) : "{}";
    if (m->pend_domain && m->domain_json) d->domain = apr_pstrdup(d->pool, m->domain_json);
    m->pend_users = m->pend_derp = m->pend_dns = m->pend_domain = 0;
}

/* Whether viewer i of pol (ip in prev) sees a different set, filter, SSH rules or CapMap.
 * remap: prev index -> pol index, or NULL when both list the same nodes. */
static int view_changed(const ts_map_pol_t *pol, const ts_map_pol_t *prev, const int *remap,
                        int i, int ip)
{
    int j;

    if (ip < 0) return 1;
    if (strcmp(pol->filter[i], prev->filter[ip])
        || (pol->ssh[i] == NULL) != (prev->ssh[ip] == NULL)
        || (pol->ssh[i] && strcmp(pol->ssh[i], prev->ssh[ip]))
        || (pol->caps[i] == NULL) != (prev->caps[ip] == NULL)
        || (pol->caps[i] && strcmp(pol->caps[i], prev->caps[ip])))
        return 1;
    if (!remap) {
        const uint64_t *a = pol->rows + (size_t)pol->cls[i] * (size_t)pol->words;
        const uint64_t *b = prev->rows + (size_t)prev->cls[ip] * (size_t)prev->words;
        return memcmp(a, b, sizeof(uint64_t) * (size_t)pol->words) != 0;
    }
    for (j = 0; j < prev->n; j++)
        if (ts_map_pol_sees(prev, ip, j) != (remap[j] >= 0 && ts_map_pol_sees(pol, i, remap[j])))
            return 1;
    for (j = 0; j < pol->n; j++)     /* new nodes */
        if (ts_map_pol_index(prev, pol->ids[j]) < 0 && ts_map_pol_sees(pol, i, j)) return 1;
    return 0;
}

/* A policy change: who must hear about it, and every node's entry for those who do. */
static void take_policy(ts_map_t *m, ts_map_delta_t *d, apr_pool_t *p)
{
    ts_map_pol_t *pol = m->pol, *prev = m->pol_prev;
    int i, j, *remap = NULL, any = 0;

    d->polchg = 1;
    d->prev_none = prev == NULL;
    d->prev = prev;                  /* the delta takes the view's reference */
    m->pol_prev = NULL;
    m->pol_changed = 0;
    if (pol) {
        d->personal = apr_pcalloc(p, (size_t)pol->n + 1);
        if (prev && !(prev->n == pol->n
                      && !memcmp(prev->ids, pol->ids, sizeof(*pol->ids) * (size_t)pol->n))) {
            remap = apr_palloc(p, sizeof(int) * (size_t)(prev->n + 1));
            for (j = 0; j < prev->n; j++) remap[j] = ts_map_pol_index(pol, prev->ids[j]);
        }
        int nself = d->nselves;
        for (i = 0; i < pol->n; i++) {
            int ip = ts_map_pol_index(prev, pol->ids[i]);
            const char *old;
            ts_map_node_t *n;
            d->personal[i] = !prev || view_changed(pol, prev, remap, i, ip);
            any |= d->personal[i];
            /* a changed CapMap is told through Node */
            if (!d->personal[i] || entry_find(d->selves, nself, pol->ids[i])) continue;
            old = prev && ip >= 0 ? prev->caps[ip] : NULL;    /* NULL: the default */
            if ((pol->caps[i] == NULL) == (old == NULL) && (!old || !strcmp(pol->caps[i], old)))
                continue;
            if ((n = ts_map_find(m, pol->ids[i])) != NULL && n->self_json)
                self_entry(m, d, &d->selves[d->nselves++], n);
        }
        if (d->nselves > nself)
            qsort(d->selves, (size_t)d->nselves, sizeof(*d->selves), entry_cmp);
    }
    if (!pol && prev) {
        /* back to no policy: nodes that had attributes get the default CapMap */
        int nself = d->nselves;
        for (i = 0; i < prev->n; i++) {
            ts_map_node_t *n;
            if (!prev->caps[i] || entry_find(d->selves, nself, prev->ids[i])) continue;
            if ((n = ts_map_find(m, prev->ids[i])) != NULL && n->self_json)
                self_entry(m, d, &d->selves[d->nselves++], n);
        }
        if (d->nselves > nself)
            qsort(d->selves, (size_t)d->nselves, sizeof(*d->selves), entry_cmp);
    }
    for (i = 0; prev && !any && i < prev->n; i++)
        any = ts_map_pol_index(pol, prev->ids[i]) < 0;
    if (pol && prev && !any) {
        d->polchg = 0;               /* nobody's view changed */
        return;
    }
    if (prev) {
        d->prev_to_pol = apr_palloc(d->pool, sizeof(int) * (size_t)(prev->n + 1));
        for (j = 0; j < prev->n; j++)
            d->prev_to_pol[j] = remap ? remap[j] : ts_map_pol_index(pol, prev->ids[j]);
    }
    d->nall = 0;
    d->all = apr_palloc(d->pool, sizeof(*d->all) * (size_t)(m->nnodes + 1));
    for (i = 0; i < m->nnodes; i++) {
        const ts_map_node_t *n = m->nodes[i];
        delta_entry_t *e;
        if (!n->peer_json) continue;
        e = &d->all[d->nall++];
        e->id = n->id;
        e->json = apr_pstrmemdup(d->pool, n->peer_json, n->peer_len);
        e->len = n->peer_len;
        e->idx = ts_map_pol_index(pol, n->id);
        e->pidx = ts_map_pol_index(prev, n->id);
        e->owner = ts_map_wire_user(n);
        e->flag = entry_find(d->changed, d->nchanged, n->id) != NULL;
    }
}

/* The shared rendering, framed raw and, with enc, compressed. */
static void render_shared(ts_map_delta_t *d, ts_mapframe_enc_t *enc)
{
    pieces_t pc = { NULL, 0, 0, 0 };
    const char *err;

    d->shared_empty = render_delta(d, 0, &pc) == 0;
    d->raw = (uint8_t *)pc_join(&pc, d->pool, TS_MAPFRAME_HDR_LEN, &d->json_len);
    frame_header(d->raw, d->json_len);
    /* on failure zframe stays NULL and each viewer compresses for itself */
    if (enc && !d->shared_empty
        && ts_mapframe_encode(enc, d->pool, (const char *)d->raw + TS_MAPFRAME_HDR_LEN,
                              d->json_len, 1, &d->zframe, &d->zlen, &err) != APR_SUCCESS)
        d->zframe = NULL;
}

static apr_status_t delta_pool_cleanup(void *data)
{
    ts_map_delta_t *d = data;

    ts_map_pol_unref(d->pol);
    ts_map_pol_unref(d->prev);
    return APR_SUCCESS;
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
        && !m->pend_users && !m->pol_changed)
        return APR_NOTFOUND;
    if (apr_pool_create_unmanaged_ex(&pool, NULL, NULL) != APR_SUCCESS) return APR_ENOMEM;
    d = apr_pcalloc(pool, sizeof(*d));
    d->pool = pool;
    d->refs = 1;
    d->policy = m->pol || m->pol_changed;
    if (d->policy) {
        apr_pool_cleanup_register(pool, d, delta_pool_cleanup, apr_pool_cleanup_null);
        if (m->pol) {
            apr_atomic_inc32(&m->pol->refs);
            d->pol = m->pol;
        }
        if (apr_thread_mutex_create(&d->mu, APR_THREAD_MUTEX_DEFAULT, pool) != APR_SUCCESS) {
            apr_pool_destroy(pool);
            return APR_ENOMEM;
        }
        d->cls = apr_pcalloc(pool, sizeof(*d->cls) * (size_t)((d->pol ? d->pol->ncls : 0) + 1));
    }
    seq = next_seq(m);
    d->removed = take_removed(m, d, pool);
    take_nodes(m, d, &patches, seq);
    if (m->pol_changed) take_policy(m, d, pool);
    if (patches.len) {
        ts_sb_lit(&patches, "]");
        d->patches = apr_pstrmemdup(pool, patches.d, patches.len);
    }
    free(patches.d);
    take_rest(m, d, seq);
    ts_map_fmt_time(d->ctime, sizeof(d->ctime), now);
    if (!d->removed && !d->nchanged && !d->patches && !d->npatch && !d->profiles && !d->nprof
        && !d->nselves && !d->derp && !d->dns && !d->domain && !d->polchg) {
        apr_pool_destroy(pool);
        return APR_NOTFOUND;
    }
    if (!d->policy) render_shared(d, enc);
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

    if (d->policy) {
        view_t v;
        if (ts_map_delta_is_shared_for(d, viewer)) {
            const cls_render_t *cr = cls_get((ts_map_delta_t *)d, viewer, 0, NULL);
            if (cr->empty) return APR_NOTFOUND;
            *json = (const char *)cr->raw + TS_MAPFRAME_HDR_LEN;
            *len = cr->json_len;
            return APR_SUCCESS;
        }
        view_init(&v, d, viewer);
        fields = render_policy(&v, p, &pc);
        *json = pc_join(&pc, p, 0, len);
        return fields ? APR_SUCCESS : APR_NOTFOUND;
    }
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

    if (d->policy && ts_map_delta_is_shared_for(d, viewer)) {
        const cls_render_t *cr = cls_get((ts_map_delta_t *)d, viewer, compress, enc);
        if (cr->empty) {
            *err = "nothing for this viewer";
            return APR_NOTFOUND;
        }
        if (!compress) {
            *frame = cr->raw;
            *len = TS_MAPFRAME_HDR_LEN + cr->json_len;
            return APR_SUCCESS;
        }
        if (cr->zframe) {
            *frame = cr->zframe;
            *len = cr->zlen;
            return APR_SUCCESS;
        }
    }
    else if (!d->policy && ts_map_delta_is_shared_for(d, viewer) && !d->shared_empty) {
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
