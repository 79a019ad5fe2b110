/* ts_map_render.c: a node's tailcfg.Node serialised once per change, as peers see it and as it
 * sees itself (control API 3.1, 2.9 union encoding), and what changed since the last render. */
#include "ts_map_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable text ---- */

static void sb_need(ts_sb_t *b, size_t n)
{
    size_t cap;
    char *d;

    if (b->len + n + 1 <= b->cap) return;
    cap = b->cap ? b->cap : 2048;
    while (cap < b->len + n + 1) cap *= 2;
    if (!(d = realloc(b->d, cap))) abort();
    b->d = d;
    b->cap = cap;
}

void ts_sb_raw(ts_sb_t *b, const char *s, size_t n)
{
    sb_need(b, n);
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

void ts_sb_lit(ts_sb_t *b, const char *s)
{
    ts_sb_raw(b, s, strlen(s));
}

void ts_sb_int(ts_sb_t *b, apr_int64_t v)
{
    char buf[24];

    ts_sb_raw(b, buf, (size_t)snprintf(buf, sizeof(buf), "%" APR_INT64_T_FMT, v));
}

/* RFC 3339 UTC like Go's RFC3339Nano: fraction only when non-zero, without trailing zeros. */
size_t ts_map_fmt_time(char *out, size_t cap, apr_time_t t)
{
    apr_time_exp_t tm;
    int n;

    apr_time_exp_gmt(&tm, t);
    n = snprintf(out, cap, "\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (tm.tm_usec) {
        n += snprintf(out + n, cap - (size_t)n, ".%06d", tm.tm_usec);
        while (out[n - 1] == '0') n--;
    }
    out[n++] = 'Z';
    out[n++] = '"';
    out[n] = '\0';
    return (size_t)n;
}

void ts_sb_time(ts_sb_t *b, apr_time_t t)
{
    char buf[48];

    ts_sb_raw(b, buf, ts_map_fmt_time(buf, sizeof(buf), t));
}

char *ts_sb_take(ts_sb_t *b, size_t *len)
{
    char *d = b->d;

    if (!d) {
        if (!(d = malloc(1))) abort();
        d[0] = '\0';
    }
    if (len) *len = b->len;
    b->d = NULL;
    b->len = b->cap = 0;
    return d;
}

/* ---- the entries ---- */

/* Node attributes every node gets until a policy adds nodeAttrs (control API 3.2): the flag
 * caps in both CapMap (capver >= 74) and Capabilities (below 74, e.g. v1.34.2). */
const char ts_map_self_caps[] =
    ",\"CapMap\":{\"https://tailscale.com/cap/is-admin\":[],"
    "\"https://tailscale.com/cap/ssh\":[],\"https://tailscale.com/cap/file-sharing\":[],"
    "\"default-auto-update\":[false]}"
    ",\"Capabilities\":[\"https://tailscale.com/cap/is-admin\","
    "\"https://tailscale.com/cap/ssh\",\"https://tailscale.com/cap/file-sharing\"]";

static const ts_map_pfx_t exit4 = { 4, 0, { 0 }, "0.0.0.0/0" };
static const ts_map_pfx_t exit6 = { 6, 0, { 0 }, "::/0" };

/* Ranges left out of the change hashes: patchable fields (peer view) and NetInfo (both).
 * At most one range per patchable field (DERP and HomeDERP share one) plus NetInfo. */
typedef struct render {
    ts_sb_t b;
    struct { size_t start, end; int netinfo; } skip[TS_PF_COUNT + 1];
    int nskip;
} render_t;

static char *dup_text(const char *s)
{
    char *d = s ? strdup(s) : NULL;

    if (s && !d) abort();
    return d;
}

static char *quoted(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 3);

    if (!d) abort();
    d[0] = '"';
    memcpy(d + 1, s, n);
    d[n + 1] = '"';
    d[n + 2] = '\0';
    return d;
}

static char *time_text(apr_time_t t)
{
    char buf[48];

    ts_map_fmt_time(buf, sizeof(buf), t);
    return dup_text(buf);
}

/* The patchable values of the view: peers lose Endpoints and home DERP of an expired node
 * (the only cut-off capver < 53 viewers honour); only peers see presence. */
static void patch_values(const ts_map_node_t *n, int expired, int self, char *pf[TS_PF_COUNT])
{
    char buf[16];

    memset(pf, 0, sizeof(char *) * TS_PF_COUNT);
    pf[TS_PF_KEY] = quoted(n->r.node_key);
    if (n->r.disco_key) pf[TS_PF_DISCO] = quoted(n->r.disco_key);
    if ((self || !expired) && n->r.endpoints) pf[TS_PF_ENDPOINTS] = dup_text(n->r.endpoints);
    if ((self || !expired) && n->r.derp_region) {
        snprintf(buf, sizeof(buf), "%d", n->r.derp_region);
        pf[TS_PF_DERP] = dup_text(buf);
    }
    if (!self) {
        pf[TS_PF_ONLINE] = dup_text(n->online ? "true" : "false");
        if (!n->online && n->last_seen) pf[TS_PF_LASTSEEN] = time_text(n->last_seen);
    }
    if (n->r.expiry) pf[TS_PF_KEYEXPIRY] = time_text(n->r.expiry);
}

static void free_values(char *pf[TS_PF_COUNT])
{
    int i;

    for (i = 0; i < TS_PF_COUNT; i++) free(pf[i]);
}

static void skip_begin(render_t *r, int netinfo)
{
    r->skip[r->nskip].start = r->b.len;
    r->skip[r->nskip].netinfo = netinfo;
}

static void skip_end(render_t *r)
{
    r->skip[r->nskip++].end = r->b.len;
}

/* ,"Name":value as a patchable field: remembered so the base hash can skip it. */
static void put_pf(render_t *r, const char *name, const char *value)
{
    if (!value) return;
    skip_begin(r, 0);
    ts_sb_lit(&r->b, ",\"");
    ts_sb_lit(&r->b, name);
    ts_sb_lit(&r->b, "\":");
    ts_sb_lit(&r->b, value);
    skip_end(r);
}

static void put_derp(render_t *r, const char *region)
{
    if (!region) return;
    skip_begin(r, 0);
    ts_sb_lit(&r->b, ",\"DERP\":\"127.3.3.40:");
    ts_sb_lit(&r->b, region);
    ts_sb_lit(&r->b, "\",\"HomeDERP\":");
    ts_sb_lit(&r->b, region);
    skip_end(r);
}

/* The stored Hostinfo with NetInfo spliced back in as its last member. */
static void put_hostinfo(render_t *r, const ts_map_node_t *n)
{
    const char *hi = n->r.hostinfo;
    size_t len = strlen(hi);

    ts_sb_lit(&r->b, ",\"Hostinfo\":");
    if (!n->r.netinfo) {
        ts_sb_raw(&r->b, hi, len);
        return;
    }
    ts_sb_raw(&r->b, hi, len - 1);
    skip_begin(r, 1);
    ts_sb_lit(&r->b, len > 2 ? ",\"NetInfo\":" : "\"NetInfo\":");
    ts_sb_lit(&r->b, n->r.netinfo);
    skip_end(r);
    ts_sb_lit(&r->b, "}");
}

static void put_pfx_list(ts_sb_t *b, const char *name, const ts_map_pfx_t **v, int n)
{
    int i;

    ts_sb_lit(b, ",\"");
    ts_sb_lit(b, name);
    ts_sb_lit(b, "\":[");
    for (i = 0; i < n; i++) {
        ts_sb_lit(b, i ? ",\"" : "\"");
        ts_sb_lit(b, v[i]->text);
        ts_sb_lit(b, "\"");
    }
    ts_sb_lit(b, "]");
}

static int pfx_ptr_cmp(const void *a, const void *b)
{
    return ts_map_pfx_cmp(*(const ts_map_pfx_t *const *)a, *(const ts_map_pfx_t *const *)b);
}

/* Addresses; AllowedIPs = addresses + primary subnet routes + both exit routes, sorted;
 * PrimaryRoutes when there are any (control API 3.1, 5.9). */
static void put_addresses(ts_sb_t *b, const ts_map_node_t *n)
{
    const ts_map_pfx_t *stack[16], **v = stack;
    int i, k = 0, nprim = 0;

    if (n->r.naddr + n->r.nroutes + 2 > 16
        && !(v = malloc(sizeof(*v) * (size_t)(n->r.naddr + n->r.nroutes + 2))))
        abort();
    for (i = 0; i < n->r.naddr; i++) v[k++] = &n->r.addr[i];
    put_pfx_list(b, "Addresses", v, k);
    for (i = 0; i < n->r.nroutes; i++)
        if (n->r.routes[i].primary) v[k++] = &n->r.routes[i].pfx;
    nprim = k - n->r.naddr;
    if (n->r.exit_node) {
        v[k++] = &exit4;
        v[k++] = &exit6;
    }
    qsort(v, (size_t)k, sizeof(*v), pfx_ptr_cmp);
    put_pfx_list(b, "AllowedIPs", v, k);
    if (nprim) {
        for (i = 0, k = 0; i < n->r.nroutes; i++)   /* routes are sorted already */
            if (n->r.routes[i].primary) v[k++] = &n->r.routes[i].pfx;
        put_pfx_list(b, "PrimaryRoutes", v, k);
    }
    if (v != stack) free(v);
}

static void put_head(const ts_map_t *m, render_t *r, const ts_map_node_t *n, char **pf)
{
    ts_sb_lit(&r->b, "{\"ID\":");
    ts_sb_int(&r->b, n->id);
    ts_sb_lit(&r->b, ",\"StableID\":\"");
    ts_sb_int(&r->b, n->id);
    ts_sb_lit(&r->b, "\",\"Name\":\"");
    ts_sb_lit(&r->b, n->r.given_name);
    if (m->base_domain) {
        ts_sb_lit(&r->b, ".");
        ts_sb_lit(&r->b, m->base_domain);
        ts_sb_lit(&r->b, ".");
    }
    ts_sb_lit(&r->b, "\",\"User\":");
    ts_sb_int(&r->b, ts_map_wire_user(n));
    put_pf(r, "Key", pf[TS_PF_KEY]);
    put_pf(r, "KeyExpiry", pf[TS_PF_KEYEXPIRY]);
    ts_sb_lit(&r->b, ",\"Machine\":\"");
    ts_sb_lit(&r->b, n->r.machine_key);
    ts_sb_lit(&r->b, "\"");
    put_pf(r, "DiscoKey", pf[TS_PF_DISCO]);
}

static void render_entry(const ts_map_t *m, render_t *r, const ts_map_node_t *n, char **pf,
                         int expired, int self)
{
    put_head(m, r, n, pf);
    put_addresses(&r->b, n);
    put_pf(r, "Endpoints", pf[TS_PF_ENDPOINTS]);
    put_derp(r, pf[TS_PF_DERP]);
    put_hostinfo(r, n);
    if (n->r.created) {
        ts_sb_lit(&r->b, ",\"Created\":");
        ts_sb_time(&r->b, n->r.created);
    }
    if (n->r.cap) {
        ts_sb_lit(&r->b, ",\"Cap\":");
        ts_sb_int(&r->b, n->r.cap);
    }
    if (n->r.tags) {
        ts_sb_lit(&r->b, ",\"Tags\":");
        ts_sb_lit(&r->b, n->r.tags);
    }
    put_pf(r, "Online", pf[TS_PF_ONLINE]);
    put_pf(r, "LastSeen", pf[TS_PF_LASTSEEN]);
    ts_sb_lit(&r->b, expired ? ",\"MachineAuthorized\":false,\"Expired\":true"
                             : ",\"MachineAuthorized\":true");
    if (self) ts_sb_lit(&r->b, ts_map_self_caps);
    ts_sb_lit(&r->b, "}");
}

/* FNV-1a over the entry minus the skipped ranges (all of them, or only NetInfo). */
static uint64_t entry_hash(const render_t *r, int only_netinfo)
{
    uint64_t h = 1469598103934665603ULL;
    size_t pos = 0, i;
    int k;

    for (k = 0; k <= r->nskip; k++) {
        size_t end = k < r->nskip ? r->skip[k].start : r->b.len;
        if (k < r->nskip && only_netinfo && !r->skip[k].netinfo) continue;
        for (i = pos; i < end; i++) h = (h ^ (uint8_t)r->b.d[i]) * 1099511628211ULL;
        if (k < r->nskip) pos = r->skip[k].end;
    }
    return h;
}

static int text_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

/* A patch cannot unset the key, the disco key or the home DERP: those need the full entry. */
static unsigned patch_mask(char *const *old, char *const *cur, int *needs_full)
{
    unsigned mask = 0;
    int i;

    for (i = 0; i < TS_PF_COUNT; i++) {
        if (!text_differs(old[i], cur[i])) continue;
        mask |= 1u << i;
        if (!cur[i] && (i == TS_PF_KEY || i == TS_PF_DISCO || i == TS_PF_DERP)) *needs_full = 1;
    }
    return mask;
}

/* What viewers must be told: nothing (NetInfo-only changes included: peers keep a stale
 * copy, full maps carry the new one), a patch, or the full entry; and whether the node's own
 * Node changed. */
static void classify(ts_map_node_t *n, const render_t *peer, uint64_t hash, char **pf,
                     uint64_t self_hash)
{
    int needs_full = 0;
    unsigned mask;

    if (!n->peer_json) {
        n->pend_full = n->pend_self = 1;
        return;
    }
    if (self_hash != n->self_hash) n->pend_self = 1;
    if (peer->b.len == n->peer_len && !memcmp(peer->b.d, n->peer_json, n->peer_len)) return;
    mask = patch_mask(n->pf, pf, &needs_full);
    if (hash != n->peer_base_hash || needs_full) n->pend_full = 1;
    else n->pend_patch |= mask;
}

void ts_map_node_render(ts_map_t *m, ts_map_node_t *n, apr_time_t now)
{
    render_t peer, self;
    int expired = n->r.expiry && n->r.expiry <= now;
    char *pf[TS_PF_COUNT], *spf[TS_PF_COUNT];
    uint64_t hash, self_hash;

    memset(&peer, 0, sizeof(peer));
    memset(&self, 0, sizeof(self));
    patch_values(n, expired, 0, pf);
    patch_values(n, expired, 1, spf);
    render_entry(m, &peer, n, pf, expired, 0);
    render_entry(m, &self, n, spf, expired, 1);
    free_values(spf);
    hash = entry_hash(&peer, 0);
    self_hash = entry_hash(&self, 1);
    classify(n, &peer, hash, pf, self_hash);
    if (!n->peer_json || peer.b.len != n->peer_len || memcmp(peer.b.d, n->peer_json, n->peer_len))
        n->peer_gen = ++m->peer_seq;        /* its compressed chunk is stale (ts_map_chunks.c) */
    free(n->peer_json);
    free(n->self_json);
    free_values(n->pf);
    memcpy(n->pf, pf, sizeof(pf));
    n->peer_json = ts_sb_take(&peer.b, &n->peer_len);
    n->self_json = ts_sb_take(&self.b, &n->self_len);
    n->peer_base_hash = hash;
    n->self_hash = self_hash;
    n->expired = expired;
    n->dirty = 0;
    if ((n->pend_full || n->pend_self || n->pend_patch) && !n->listed) {
        ts_map_ids_push(&m->pending, n->id);
        n->listed = 1;
    }
}
