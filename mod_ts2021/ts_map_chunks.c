/* ts_map_chunks.c: full maps for zstd clients as concatenated zstd frames: the viewer's own texts
 * compressed for it, the peer list in chunks compressed once per change and shared by every
 * viewer that sees them (control API 2.3, 2.5). The cost of N first maps is then O(N) in
 * compression instead of N times a map of N peers. */
#include "ts_map_int.h"

#include <apr_atomic.h>
#include <stdlib.h>
#include <string.h>

/* Chunk boundaries depend on the node ids only (content-defined): a chunk ends after a node
 * whose id hashes to 0 mod CH_AVG once it has CH_MIN nodes, or at CH_MAX nodes. Adding or
 * removing a node changes its own chunk (and at most the next one), never the rest. */
#define CH_MIN   16
#define CH_AVG   64
#define CH_MAX   256
/* Cached chunks unused for this long are dropped (checked at most every CH_SWEEP). */
#define CH_IDLE  apr_time_from_sec(120)
#define CH_SWEEP apr_time_from_sec(30)

/* An immutable compressed piece: one zstd frame, shared by reference. */
typedef struct zpart {
    volatile apr_uint32_t refs;
    size_t len;
    uint8_t data[];
} zpart_t;

/* A cached chunk variant: key (first, cls, pol_serial), validity (n, sig). */
typedef struct ts_map_zchunk {
    apr_int64_t first;               /* id of the chunk's first node */
    int cls;                         /* -1: all its nodes; else a class of the policy */
    unsigned polser;                 /* m->pol_serial for class variants, 0 otherwise */
    int n;
    uint64_t sig;                    /* its nodes' ids and entry versions */
    zpart_t *z[2];                   /* [0] a comma before every entry; [1] none before the first */
    apr_time_t used;
} zchunk_t;

static void cpart_free(struct ts_map_cpart *cp);

static zpart_t *zpart_ref(zpart_t *z)
{
    apr_atomic_inc32(&z->refs);
    return z;
}

static void zpart_unref(zpart_t *z)
{
    if (z && !apr_atomic_dec32(&z->refs)) free(z);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* ---- the cache (under the view's lock) ---- */

static int zc_cmp(const zchunk_t *e, apr_int64_t first, int cls, unsigned polser)
{
    if (e->first != first) return e->first < first ? -1 : 1;
    if (e->cls != cls) return e->cls < cls ? -1 : 1;
    if (e->polser != polser) return e->polser < polser ? -1 : 1;
    return 0;
}

/* Position of the key, or where it would go (*found 0). */
static int zc_pos(const ts_map_t *m, apr_int64_t first, int cls, unsigned polser, int *found)
{
    int lo = 0, hi = m->nzc;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = zc_cmp(&m->zc[mid], first, cls, polser);
        if (!c) {
            *found = 1;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static void zc_drop(zchunk_t *e)
{
    zpart_unref(e->z[0]);
    zpart_unref(e->z[1]);
    e->z[0] = e->z[1] = NULL;
}

void ts_map_zcache_free(ts_map_t *m)
{
    int i;

    for (i = 0; i < m->nzc; i++) zc_drop(&m->zc[i]);
    cpart_free(m->cpart);
    m->cpart = NULL;
    free(m->zc);
    m->zc = NULL;
    m->nzc = m->capzc = 0;
}

int ts_map_zcache_count(const ts_map_t *m)
{
    return m->nzc;
}

static void zc_sweep(ts_map_t *m, apr_time_t now)
{
    int i, k = 0;

    if (now - m->zc_swept < CH_SWEEP) return;
    m->zc_swept = now;
    for (i = 0; i < m->nzc; i++) {
        zchunk_t *e = &m->zc[i];
        if (now - e->used > CH_IDLE || (e->cls >= 0 && e->polser != m->pol_serial)) zc_drop(e);
        else m->zc[k++] = *e;
    }
    m->nzc = k;
}

/* ---- chunks of the view ---- */

typedef struct chunk {
    int i0, i1;                      /* m->nodes[i0 .. i1) */
    int n;                           /* nodes with an entry */
    uint64_t sig;
} chunk_t;

/* The chunk starting at m->nodes[i0]. */
static void chunk_at(const ts_map_t *m, int i0, chunk_t *c)
{
    int i;

    c->i0 = i0;
    c->n = 0;
    c->sig = 0x9e3779b97f4a7c15ULL;
    for (i = i0; i < m->nnodes; i++) {
        const ts_map_node_t *n = m->nodes[i];
        int k = i - i0 + 1;
        if (n->peer_json) {
            c->n++;
            c->sig = mix64(c->sig ^ (uint64_t)n->id);
            c->sig = mix64(c->sig ^ n->peer_gen);
        }
        if (k >= CH_MAX || (k >= CH_MIN && !(mix64((uint64_t)n->id) & (CH_AVG - 1)))) {
            i++;
            break;
        }
    }
    c->i1 = i;
}

static void *grow(void *v, int *cap, int need, size_t size)
{
    if (need <= *cap) return v;
    *cap = *cap ? *cap * 2 : 32;
    if (*cap < need) *cap = need;
    if (!(v = realloc(v, (size_t)*cap * size))) abort();
    return v;
}

/* The partition of the view into chunks, with each chunk's owners (wire user ids, for
 * UserProfiles), kept until a peer entry changes or a node goes. */
typedef struct ts_map_cpart {
    uint64_t seq;
    int nnodes;
    chunk_t *v;
    int n, cap;
    apr_int64_t *owners;             /* chunk k's: owners[off[k] .. off[k + 1]) */
    int *off;
    int nown, capown;
} cpart_t;

static void cpart_free(struct ts_map_cpart *cp)
{
    if (!cp) return;
    free(cp->v);
    free(cp->owners);
    free(cp->off);
    free(cp);
}

static const cpart_t *partition(ts_map_t *m)
{
    cpart_t *cp = m->cpart;
    int i = 0, k, capoff = 0;

    if (cp && cp->seq == m->peer_seq && cp->nnodes == m->nnodes) return cp;
    if (!cp && !(cp = m->cpart = calloc(1, sizeof(*cp)))) abort();
    cp->seq = m->peer_seq;
    cp->nnodes = m->nnodes;
    cp->n = cp->nown = 0;
    free(cp->off);
    cp->off = NULL;
    while (i < m->nnodes) {
        chunk_t c;
        chunk_at(m, i, &c);
        cp->v = grow(cp->v, &cp->cap, cp->n + 1, sizeof(*cp->v));
        cp->off = grow(cp->off, &capoff, cp->n + 2, sizeof(*cp->off));
        cp->off[cp->n] = cp->nown;
        for (k = c.i0; k < c.i1; k++) {
            apr_int64_t u = ts_map_wire_user(m->nodes[k]);
            int x;
            if (!m->nodes[k]->peer_json) continue;
            for (x = cp->off[cp->n]; x < cp->nown && cp->owners[x] != u; x++)
                ;
            if (x < cp->nown) continue;
            cp->owners = grow(cp->owners, &cp->capown, cp->nown + 1, sizeof(*cp->owners));
            cp->owners[cp->nown++] = u;
        }
        cp->v[cp->n++] = c;
        i = c.i1;
    }
    cp->off = grow(cp->off, &capoff, cp->n + 1, sizeof(*cp->off));
    cp->off[cp->n] = cp->nown;
    return cp;
}

/* ---- plans ---- */

enum { IT_TEXT, IT_PART, IT_JOB };

typedef struct item {
    int kind;
    size_t off, len;                 /* IT_TEXT: in plan->text */
    zpart_t *z;                      /* IT_PART: a reference */
    int job, variant;                /* IT_JOB */
} item_t;

/* A chunk variant to compress off the lock, and to cache afterwards. */
typedef struct job {
    apr_int64_t first;
    int cls;
    unsigned polser;
    int n;
    uint64_t sig;
    char *text;                      /* ",entry,entry…" */
    size_t len;
    int variant;
    zpart_t *z;                      /* built */
} job_t;

/* Output segment: own bytes (off in plan->out) or a shared part. */
typedef struct seg {
    size_t off, len;
    const zpart_t *z;
} seg_t;

struct ts_map_plan {
    ts_sb_t text;
    item_t *items;
    int nitems, capitems;
    job_t *jobs;
    int njobs, capjobs;
    int reused;
    /* encoded */
    uint8_t *out;                    /* LE32 header + the viewer's own frames */
    size_t outlen, outcap;
    seg_t *segs;
    int nsegs, capsegs;
    size_t total;                    /* payload bytes */
    int frames;
};


static item_t *item_new(ts_map_plan_t *pl, int kind)
{
    item_t *it;

    pl->items = grow(pl->items, &pl->capitems, pl->nitems + 1, sizeof(*pl->items));
    it = &pl->items[pl->nitems++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    return it;
}

/* Text for the viewer: appended to the previous text item when there is one. */
static void pl_text(ts_map_plan_t *pl, const char *s, size_t n)
{
    item_t *last = pl->nitems ? &pl->items[pl->nitems - 1] : NULL;

    if (!last || last->kind != IT_TEXT) {
        last = item_new(pl, IT_TEXT);
        last->off = pl->text.len;
    }
    ts_sb_raw(&pl->text, s, n);
    last->len += n;
}

static void pl_lit(ts_map_plan_t *pl, const char *s)
{
    pl_text(pl, s, strlen(s));
}

/* Whether viewer (index iv in pol, or -1) sees node n at pol index j (merge cursor). */
static int sees(const ts_map_t *m, int iv, const ts_map_node_t *n, int *j)
{
    const ts_map_pol_t *pol = m->pol;

    if (!pol) return 1;
    if (iv < 0) return 0;
    while (*j < pol->n && pol->ids[*j] < n->id) (*j)++;
    return *j < pol->n && pol->ids[*j] == n->id && ts_map_pol_sees(pol, iv, *j);
}

/* The chunk's entries the viewer sees (except itself), each after a comma; marks owners.
 * dst NULL: only counts. */
static int chunk_visible(ts_map_t *m, const chunk_t *c, const ts_map_node_t *v, int iv,
                         int jstart, unsigned seq, ts_sb_t *dst)
{
    int i, j = jstart, k = 0;

    for (i = c->i0; i < c->i1; i++) {
        const ts_map_node_t *n = m->nodes[i];
        if (!n->peer_json || n == v || !sees(m, iv, n, &j)) continue;
        k++;
        if (seq) ts_map_mark_user(m, n, seq);
        if (dst) {
            ts_sb_raw(dst, ",", 1);
            ts_sb_raw(dst, n->peer_json, n->peer_len);
        }
    }
    return k;
}

/* The shared variant of chunk c (cls -1: all its nodes) as the next item: a cached part, or
 * a job. first: no comma before its first entry. */
static void pl_shared(ts_map_t *m, ts_map_plan_t *pl, const chunk_t *c, int cls,
                      const ts_map_node_t *v, int iv, int jstart, int first, apr_time_t now)
{
    apr_int64_t fid = m->nodes[c->i0]->id;
    unsigned polser = cls >= 0 ? m->pol_serial : 0;
    int found, pos = zc_pos(m, fid, cls, polser, &found), variant = first ? 1 : 0, i;
    zchunk_t *e = found ? &m->zc[pos] : NULL;
    item_t *it;
    job_t *jb;
    ts_sb_t b = { NULL, 0, 0 };

    if (e && e->n == c->n && e->sig == c->sig && e->z[variant]) {
        e->used = now;
        it = item_new(pl, IT_PART);
        it->z = zpart_ref(e->z[variant]);
        pl->reused++;
        return;
    }
    /* a chunk appears once in a map: one job per shared chunk */
    pl->jobs = grow(pl->jobs, &pl->capjobs, pl->njobs + 1, sizeof(*pl->jobs));
    jb = &pl->jobs[pl->njobs];
    memset(jb, 0, sizeof(*jb));
    jb->first = fid;
    jb->cls = cls;
    jb->polser = polser;
    jb->n = c->n;
    jb->sig = c->sig;
    jb->variant = variant;
    if (cls >= 0) {
        chunk_visible(m, c, v, iv, jstart, 0, &b);        /* what the class sees */
    }
    else {
        for (i = c->i0; i < c->i1; i++) {                 /* every entry */
            const ts_map_node_t *n = m->nodes[i];
            if (!n->peer_json) continue;
            ts_sb_raw(&b, ",", 1);
            ts_sb_raw(&b, n->peer_json, n->peer_len);
        }
    }
    jb->text = b.d;
    jb->len = b.len;
    it = item_new(pl, IT_JOB);
    it->job = pl->njobs++;
    it->variant = variant;
}

static void plan_peers(ts_map_t *m, ts_map_plan_t *pl, const ts_map_node_t *v, int iv,
                       unsigned seq, apr_time_t now)
{
    const ts_map_pol_t *pol = m->pol;
    const cpart_t *cp;
    int ci, j = 0, k = 0;

    if (pol && iv < 0) return;                          /* sees nobody */
    cp = partition(m);
    for (ci = 0; ci < cp->n; ci++) {
        const chunk_t *c = &cp->v[ci];
        int jstart, vis, all, has_v, x;
        /* the pol cursor moves with the chunks (both sorted by id) */
        while (pol && j < pol->n && pol->ids[j] < m->nodes[c->i0]->id) j++;
        jstart = j;
        has_v = v->id >= m->nodes[c->i0]->id && v->id <= m->nodes[c->i1 - 1]->id;
        vis = pol ? chunk_visible(m, c, v, iv, jstart, 0, NULL) : c->n - has_v;
        if (!vis) continue;
        all = vis == c->n && !has_v;
        if (!k) pl_lit(pl, ",\"Peers\":[");
        if (has_v) {
            /* the viewer's own chunk: its visible entries, for it alone */
            ts_sb_t b = { NULL, 0, 0 };
            chunk_visible(m, c, v, iv, jstart, seq, &b);
            pl_text(pl, k ? b.d : b.d + 1, k ? b.len : b.len - 1);
            free(b.d);
        }
        else {
            if (all) {
                for (x = cp->off[ci]; x < cp->off[ci + 1]; x++) {
                    ts_map_user_t *u = ts_map_find_user(m, cp->owners[x]);
                    if (u) u->mark = seq;
                }
            }
            else {
                chunk_visible(m, c, v, iv, jstart, seq, NULL);
            }
            pl_shared(m, pl, c, all ? -1 : pol->cls[iv], v, iv, jstart, !k, now);
        }
        k += vis;
    }
    if (k) pl_lit(pl, "]");
}

apr_status_t ts_map_full_plan(ts_map_t *m, apr_int64_t viewer, apr_time_t now,
                              ts_map_plan_t **plan, const char **err)
{
    ts_map_plan_t *pl;
    ts_sb_t b = { NULL, 0, 0 };
    ts_map_node_t *v;
    unsigned seq;
    int iv;
    apr_status_t rv = ts_map_full_begin(m, viewer, now, &v, &seq, &iv, err);

    if (rv != APR_SUCCESS) return rv;
    if (!(pl = calloc(1, sizeof(*pl)))) return APR_ENOMEM;
    ts_map_full_head(m, v, iv, &b);
    pl_text(pl, b.d, b.len);
    b.len = 0;
    plan_peers(m, pl, v, iv, seq, now);
    ts_map_full_tail(m, iv, seq, now, &b);
    pl_text(pl, b.d, b.len);
    free(b.d);
    *plan = pl;
    return APR_SUCCESS;
}

/* ---- encoding (no lock) ---- */

static void seg_add(ts_map_plan_t *pl, size_t off, size_t len, const zpart_t *z)
{
    pl->segs = grow(pl->segs, &pl->capsegs, pl->nsegs + 1, sizeof(*pl->segs));
    pl->segs[pl->nsegs].off = off;
    pl->segs[pl->nsegs].len = len;
    pl->segs[pl->nsegs++].z = z;
    pl->total += len;
    pl->frames++;
}

static apr_status_t own_frame(ts_map_plan_t *pl, ts_mapframe_enc_t *enc, const char *src,
                              size_t len, const char **err)
{
    size_t need = pl->outlen + ts_mapframe_zbound(len), n;
    apr_status_t rv;

    if (need > pl->outcap) {
        size_t cap = pl->outcap ? pl->outcap * 2 : 4096;
        uint8_t *nb;
        while (cap < need) cap *= 2;
        if (!(nb = realloc(pl->out, cap))) {
            *err = "out of memory";
            return APR_ENOMEM;
        }
        pl->out = nb;
        pl->outcap = cap;
    }
    rv = ts_mapframe_zstd_into(enc, src, len, pl->out + pl->outlen, pl->outcap - pl->outlen, &n,
                               err);
    if (rv) return rv;
    /* adjacent own frames make one segment */
    if (pl->nsegs && !pl->segs[pl->nsegs - 1].z
        && pl->segs[pl->nsegs - 1].off + pl->segs[pl->nsegs - 1].len == pl->outlen) {
        pl->segs[pl->nsegs - 1].len += n;
        pl->total += n;
        pl->frames++;
    }
    else {
        seg_add(pl, pl->outlen, n, NULL);
    }
    pl->outlen += n;
    return APR_SUCCESS;
}

static apr_status_t part_build(job_t *jb, ts_mapframe_enc_t *enc, const char **err)
{
    const char *src = jb->text + jb->variant;
    size_t len = jb->len - (size_t)jb->variant, cap = ts_mapframe_zbound(len), n;
    zpart_t *z = malloc(sizeof(*z) + cap);
    apr_status_t rv;

    if (!z) {
        *err = "out of memory";
        return APR_ENOMEM;
    }
    if ((rv = ts_mapframe_zstd_into(enc, src, len, z->data, cap, &n, err))) {
        free(z);
        return rv;
    }
    /* keep only what the frame needs */
    {
        zpart_t *small = realloc(z, sizeof(*z) + n);
        if (small) z = small;
    }
    z->refs = 1;
    z->len = n;
    jb->z = z;
    return APR_SUCCESS;
}

apr_status_t ts_map_plan_encode(ts_map_plan_t *pl, ts_mapframe_enc_t *enc, const char **err)
{
    apr_status_t rv;
    int i;

    pl->outlen = 0;
    pl->nsegs = 0;
    pl->total = 0;
    pl->frames = 0;
    if (!(pl->out = malloc(pl->outcap = 4096))) {
        *err = "out of memory";
        return APR_ENOMEM;
    }
    pl->outlen = 4;                  /* the LE32 length, written last */
    for (i = 0; i < pl->nitems; i++) {
        item_t *it = &pl->items[i];
        if (it->kind == IT_TEXT) {
            if (!it->len) continue;
            rv = own_frame(pl, enc, pl->text.d + it->off, it->len, err);
        }
        else if (it->kind == IT_PART) {
            seg_add(pl, 0, it->z->len, it->z);
            rv = APR_SUCCESS;
        }
        else {
            job_t *jb = &pl->jobs[it->job];
            rv = jb->z ? APR_SUCCESS : part_build(jb, enc, err);
            if (!rv) seg_add(pl, 0, jb->z->len, jb->z);
        }
        if (rv) return rv;
    }
    if (pl->total > UINT32_MAX) {
        *err = "map response too large to frame";
        return APR_EINVAL;
    }
    pl->out[0] = (uint8_t)pl->total;
    pl->out[1] = (uint8_t)(pl->total >> 8);
    pl->out[2] = (uint8_t)(pl->total >> 16);
    pl->out[3] = (uint8_t)(pl->total >> 24);
    return APR_SUCCESS;
}

/* ---- afterwards ---- */

void ts_map_plan_install(ts_map_t *m, ts_map_plan_t *pl, apr_time_t now)
{
    int i;

    for (i = 0; i < pl->njobs; i++) {
        job_t *jb = &pl->jobs[i];
        int found, pos, k, hi = m->nnodes;
        zchunk_t *e;
        chunk_t c;
        if (!jb->z) continue;
        /* still the chunk's current entries? (its first node, by binary search) */
        for (k = 0; k < hi;) {
            int mid = (k + hi) / 2;
            if (m->nodes[mid]->id < jb->first) k = mid + 1;
            else hi = mid;
        }
        if (k >= m->nnodes || m->nodes[k]->id != jb->first) continue;
        chunk_at(m, k, &c);
        if (c.n != jb->n || c.sig != jb->sig) continue;
        if (jb->cls >= 0 && jb->polser != m->pol_serial) continue;
        pos = zc_pos(m, jb->first, jb->cls, jb->polser, &found);
        if (!found) {
            m->zc = grow(m->zc, &m->capzc, m->nzc + 1, sizeof(*m->zc));
            memmove(m->zc + pos + 1, m->zc + pos, sizeof(*m->zc) * (size_t)(m->nzc - pos));
            m->nzc++;
            e = &m->zc[pos];
            memset(e, 0, sizeof(*e));
            e->first = jb->first;
            e->cls = jb->cls;
            e->polser = jb->polser;
        }
        else {
            e = &m->zc[pos];
        }
        if (e->n != jb->n || e->sig != jb->sig) {
            zc_drop(e);
            e->n = jb->n;
            e->sig = jb->sig;
        }
        if (!e->z[jb->variant]) e->z[jb->variant] = zpart_ref(jb->z);
        e->used = now;
    }
    zc_sweep(m, now);
}

uint8_t *ts_map_plan_frame(const ts_map_plan_t *pl, size_t *len)
{
    uint8_t *f = malloc(4 + pl->total), *w;
    int i;

    if (!f) return NULL;
    memcpy(f, pl->out, 4);
    w = f + 4;
    for (i = 0; i < pl->nsegs; i++) {
        const seg_t *s = &pl->segs[i];
        memcpy(w, s->z ? s->z->data : pl->out + s->off, s->len);
        w += s->len;
    }
    *len = 4 + pl->total;
    return f;
}

void ts_map_plan_stats(const ts_map_plan_t *pl, int *reused, int *built, int *frames)
{
    if (reused) *reused = pl->reused;
    if (built) *built = pl->njobs;
    if (frames) *frames = pl->frames;
}

void ts_map_plan_free(ts_map_plan_t *pl)
{
    int i;

    if (!pl) return;
    for (i = 0; i < pl->nitems; i++)
        if (pl->items[i].kind == IT_PART) zpart_unref(pl->items[i].z);
    for (i = 0; i < pl->njobs; i++) {
        free(pl->jobs[i].text);
        zpart_unref(pl->jobs[i].z);
    }
    free(pl->items);
    free(pl->jobs);
    free(pl->text.d);
    free(pl->out);
    free(pl->segs);
    free(pl);
}
