/* ts_map_int.h: internals shared by ts_map*.c: node and user records, the pending change set,
 * a growable text buffer, and the visibility seam. Not for use outside the map core. */
#ifndef TS_MAP_INT_H
#define TS_MAP_INT_H

#include "ts_map.h"

#include <stddef.h>
#include <stdint.h>

/* Fields a PeersChangedPatch can carry (control API 2.6, 2.9: the ones both capver 51 and 145
 * apply). A change confined to these is sent as a patch; anything else as the full entry. */
enum {
    TS_PF_KEY = 0,
    TS_PF_DISCO,
    TS_PF_ENDPOINTS,
    TS_PF_DERP,          /* the region number: DERP + HomeDERP in a Node, DERPRegion in a patch */
    TS_PF_ONLINE,
    TS_PF_LASTSEEN,
    TS_PF_KEYEXPIRY,
    TS_PF_COUNT
};

typedef struct ts_map_pfx {
    uint8_t family;                  /* 4 or 6 */
    uint8_t bits;
    uint8_t addr[16];
    char text[52];                   /* canonical "a.b.c.d/n" or "x::y/n" */
} ts_map_pfx_t;

typedef struct ts_map_route {
    ts_map_pfx_t pfx;
    unsigned advertised:1;
    unsigned approved:1;
    unsigned primary:1;              /* elected by the last settle (non-exit routes only) */
} ts_map_route_t;

/* A node's row, validated and canonical; strings malloc'd. Replaced as a whole on upsert. */
typedef struct ts_map_row {
    apr_int64_t user_id;             /* 0: tagged (TS_MAP_TAGGED_USER_ID on the wire) */
    char *given_name, *node_key, *machine_key;
    char *disco_key;                 /* NULL: not known yet */
    char *endpoints;                 /* compact JSON array text or NULL */
    char *hostinfo;                  /* compact JSON object text without NetInfo, never NULL */
    char *netinfo;                   /* Hostinfo.NetInfo as compact JSON, or NULL */
    char *tags;                      /* compact JSON array text or NULL (none) */
    ts_map_pfx_t addr[2];            /* IPv4 /32 first, then IPv6 /128 */
    int naddr;
    int derp_region;                 /* Hostinfo.NetInfo.PreferredDERP, 0: unknown */
    int cap;
    apr_time_t created, expiry;
    ts_map_route_t *routes;          /* sorted */
    int nroutes;
    int exit_node;                   /* an exit route advertised and approved */
} ts_map_row_t;

typedef struct ts_map_node {
    apr_int64_t id;
    ts_map_row_t r;
    /* runtime */
    apr_time_t last_seen;
    int online;
    uint64_t pol_hash;               /* hash of what the policy reads of this node */
    int expired;                     /* as of the last render */
    /* caches, rebuilt by ts_map_node_render only when the node changed */
    char *peer_json, *self_json;
    size_t peer_len, self_len;
    uint64_t peer_base_hash;         /* hash of the peer entry without the patchable fields */
    uint64_t self_hash;              /* hash of the self entry without Hostinfo.NetInfo */
    uint64_t peer_gen;               /* the view's peer_seq when peer_json last changed */
    char *pf[TS_PF_COUNT];           /* patchable values as JSON text; NULL: absent */
    /* change tracking */
    unsigned dirty:1;                /* must be re-rendered at the next settle */
    unsigned listed:1;               /* in the view's pending list */
    unsigned pend_full:1;            /* PeersChanged */
    unsigned pend_self:1;            /* its own Node changed */
    unsigned pend_patch;             /* TS_PF_* bits for PeersChangedPatch */
} ts_map_node_t;

typedef struct ts_map_user {
    apr_int64_t id;
    char *profile;                   /* UserProfile JSON text, malloc'd */
    size_t len;
    unsigned pending:1;
    unsigned mark;                   /* scratch: collected for the map being built */
} ts_map_user_t;

typedef struct ts_map_ids {
    apr_int64_t *v;
    int n, cap;
} ts_map_ids_t;

struct ts_map {
    apr_pool_t *pool;
    char *base_domain;               /* NULL: bare labels as names */
    char *domain_json;               /* JSON string text or NULL */
    char *dns_json;                  /* DNSConfig object text or NULL */
    char *derp_json;
    size_t derp_len, dns_len, domain_len;
    ts_map_node_t **nodes;           /* sorted by id */
    int nnodes, capnodes;
    ts_map_user_t **users;           /* sorted by id */
    int nusers, capusers;
    ts_map_user_t tagged;            /* the synthetic tagged-devices profile */
    ts_map_ids_t dirty, pending, removed;
    int routes_dirty;                /* re-elect primaries at the next settle */
    apr_time_t next_expiry;          /* earliest expiry not yet rendered as expired */
    unsigned pend_derp:1, pend_dns:1, pend_domain:1, pend_users:1;
    unsigned mark_seq;
    /* policy (ts_map_policy.c) */
    ts_map_pol_t *pol;               /* in force; NULL: everyone sees everyone */
    ts_map_pol_t *pol_prev;          /* what the last delta published, while pol_changed */
    unsigned pol_changed:1;          /* the next delta carries a policy-style update */
    unsigned pol_gen;                /* ts_map_policy_gen */
    unsigned pol_serial;             /* bumped whenever pol is replaced */
    /* compressed peer chunks (ts_map_chunks.c), sorted by (first, cls, pol_serial) */
    uint64_t peer_seq;               /* bumped whenever a node's peer_json changes */
    struct ts_map_zchunk *zc;
    int nzc, capzc;
    struct ts_map_cpart *cpart;      /* the chunk partition as of peer_seq */
    apr_time_t zc_swept;
};

/* A prepared policy: per node (index = position in ids, sorted) its texts, and visibility
 * as one bitmap row per class of nodes that see the same set (the row holds the members'
 * own bits too: a node never sees itself). */
struct ts_map_pol {
    apr_pool_t *pool;
    volatile apr_uint32_t refs;
    int n, words;
    apr_int64_t *ids;
    apr_int64_t *owners;
    int *cls;
    int ncls;
    uint64_t *rows;                  /* ncls x words */
    char **filter;                   /* PacketFilter JSON text */
    char **ssh;                      /* SSHPolicy JSON text, NULL when no rules */
    char **caps;                     /* self ,"CapMap":…,"Capabilities":… text, NULL: default */
};

/* The policy index of node id, or -1. */
int ts_map_pol_index(const ts_map_pol_t *pol, apr_int64_t id);
static inline int ts_map_pol_sees(const ts_map_pol_t *pol, int i, int j)
{
    const uint64_t *row;

    if (i < 0 || j < 0 || i == j) return 0;
    row = pol->rows + (size_t)pol->cls[i] * (size_t)pol->words;
    return (int)((row[j >> 6] >> (j & 63)) & 1u);
}
/* The default self capabilities text of ts_map_render.c (at the end of every self entry). */
extern const char ts_map_self_caps[];
/* Hash of what the policy reads of a node (user, tags, name, addresses, routes); a change
 * moves ts_map_policy_gen (ts_map_policy.c). */
uint64_t ts_map_node_pol_hash(const ts_map_node_t *n);

struct ts_sb;
/* ---- full-map pieces shared by ts_map_full and ts_map_chunks.c (ts_map_build.c) ---- */
void ts_map_mark_user(ts_map_t *m, const ts_map_node_t *n, unsigned seq);
/* The start of every full map: the view settled, the viewer found, the DERP map present
 * (APR_NOTFOUND / APR_EAGAIN with *err otherwise), a new seq with the viewer's user marked,
 * and the viewer's policy index. */
apr_status_t ts_map_full_begin(ts_map_t *m, apr_int64_t viewer, apr_time_t now,
                               ts_map_node_t **v, unsigned *seq, int *iv, const char **err);
/* {"Node":<self>,"DERPMap":<derp> (iv: the viewer's policy index or -1) */
void ts_map_full_head(ts_map_t *m, const ts_map_node_t *v, int iv, struct ts_sb *b);
/* DNSConfig .. the closing brace; UserProfiles are the users marked with seq. */
void ts_map_full_tail(ts_map_t *m, int iv, unsigned seq, apr_time_t now, struct ts_sb *b);
/* Frees the compressed chunk cache (the view's cleanup). */
void ts_map_zcache_free(ts_map_t *m);

/* ---- growable text (ts_map_node.c) ---- */
typedef struct ts_sb {
    char *d;
    size_t len, cap;
} ts_sb_t;
void ts_sb_raw(ts_sb_t *b, const char *s, size_t n);
void ts_sb_lit(ts_sb_t *b, const char *s);
void ts_sb_int(ts_sb_t *b, apr_int64_t v);
void ts_sb_time(ts_sb_t *b, apr_time_t t);      /* a JSON string "2026-…Z" */
char *ts_sb_take(ts_sb_t *b, size_t *len);      /* malloc'd, NUL-terminated; b is reset */
/* "\"2026-…Z\"" (quotes included) into out; returns its length. */
size_t ts_map_fmt_time(char *out, size_t cap, apr_time_t t);

/* ---- records ---- */
ts_map_node_t *ts_map_find(const ts_map_t *m, apr_int64_t id);
ts_map_user_t *ts_map_find_user(const ts_map_t *m, apr_int64_t id);
void ts_map_ids_push(ts_map_ids_t *ids, apr_int64_t id);
void ts_map_mark_dirty(ts_map_t *m, ts_map_node_t *n);
/* Runs the settle step described in ts_map.h. */
void ts_map_settle(ts_map_t *m, apr_time_t now);

/* Replaces n's row with a store row (n->id already set); n is untouched on failure. */
apr_status_t ts_map_node_load(ts_map_node_t *n, const ts_node_t *row,
                              const apr_array_header_t *routes, apr_pool_t *p,
                              const char **err);
/* Frees a node's row and caches (not n itself). */
void ts_map_node_free(ts_map_node_t *n);
/* Re-serialises n's peer and self entries and records what changed in its pend_* fields. */
void ts_map_node_render(ts_map_t *m, ts_map_node_t *n, apr_time_t now);
/* The synthetic or real owner id as sent on the wire. */
apr_int64_t ts_map_wire_user(const ts_map_node_t *n);

/* Parses "a.b.c.d/n" or "x::y/n", masking host bits. 0, or -1 if malformed. */
int ts_map_pfx_parse(ts_map_pfx_t *out, const char *text);
int ts_map_pfx_cmp(const ts_map_pfx_t *a, const ts_map_pfx_t *b);


#endif
