/* ts_ipalloc.c: picks node addresses in the tailnet prefixes, either by asking about one
 * candidate at a time (a few indexed lookups inside the node's write transaction) or from a
 * list of the addresses in use; the database's unique indexes stay the final judge. */
#include "ts_ipalloc.h"
#include "ts_store.h"

#include <apr_strings.h>
#include <arpa/inet.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* pool memory is only 8-byte aligned: say so, or the compiler uses aligned 16-byte moves */
typedef unsigned __int128 u128 __attribute__((aligned(8)));

/* One family's prefix as integers: addresses base .. base + span - 1. */
typedef struct {
    int family;                 /* AF_INET, AF_INET6; 0: not configured */
    const char *text;
    u128 base;
    u128 span;
    apr_array_header_t *excluded;   /* u128 */
} ipalloc_pfx_t;

struct ts_ipalloc_t {
    apr_pool_t *pool;
    ts_ipalloc_strategy_e strategy;
    ipalloc_pfx_t v4, v6;
};

static u128 addr_to_int(const unsigned char *b, int len)
{
    u128 v = 0;
    int i;

    for (i = 0; i < len; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

static void int_to_addr(unsigned char *b, int len, u128 v)
{
    int i;

    for (i = len - 1; i >= 0; i--) {
        b[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static int family_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

/* Parses an address of the family into an integer; -1 if it is not one. */
static int parse_addr(int family, const char *text, u128 *v)
{
    unsigned char b[16];

    if (!text || inet_pton(family, text, b) != 1) {
        return -1;
    }
    *v = addr_to_int(b, family_len(family));
    return 0;
}

static const char *addr_text(apr_pool_t *p, int family, u128 v)
{
    unsigned char b[16];
    char out[INET6_ADDRSTRLEN];

    int_to_addr(b, family_len(family), v);
    inet_ntop(family, b, out, sizeof(out));
    return apr_pstrdup(p, out);
}

/* Splits "addr/bits" of the family; -1 unless canonical with no host bits. */
static int parse_prefix(apr_pool_t *p, int family, const char *text, u128 *base, int *bits)
{
    const char *slash = text ? strchr(text, '/') : NULL;
    int maxbits = family == AF_INET ? 32 : 128;
    char *end;
    long n;

    if (!slash || !slash[1] || (slash[1] == '0' && slash[2])) {
        return -1;
    }
    n = strtol(slash + 1, &end, 10);
    if (*end || n < 0 || n > maxbits
        || parse_addr(family, apr_pstrmemdup(p, text, (apr_size_t)(slash - text)), base)) {
        return -1;
    }
    *bits = (int)n;
    if (n < maxbits && (*base & (((u128)1 << (maxbits - n)) - 1)) != 0) {
        return -1;
    }
    return strcmp(text, apr_psprintf(p, "%s/%d", addr_text(p, family, *base), *bits)) == 0
        ? 0 : -1;
}

apr_status_t ts_ipalloc_check_prefix(apr_pool_t *p, const char *prefix, int family,
                                     const char **err)
{
    int af = family == 4 ? AF_INET : AF_INET6, bits, outer_bits = family == 4 ? 10 : 48;
    const char *outer = family == 4 ? "100.64.0.0/10" : "fd7a:115c:a1e0::/48";
    u128 base, outer_base;

    if (parse_prefix(p, af, prefix, &base, &bits) != 0) {
        *err = apr_psprintf(p, "'%s' is not a canonical IPv%d prefix (like %s)",
                            prefix ? prefix : "", family, outer);
        return APR_EINVAL;
    }
    parse_prefix(p, af, outer, &outer_base, &outer_bits);
    if (bits < outer_bits
        || (base >> (family_len(af) * 8 - outer_bits)) != (outer_base >> (family_len(af) * 8
                                                                           - outer_bits))) {
        *err = apr_psprintf(p, "IPv%d prefix '%s' is not inside %s, the range Tailscale "
                            "clients expect", family, prefix, outer);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

static apr_status_t pfx_init(apr_pool_t *p, ipalloc_pfx_t *x, const char *text, int family,
                             const char **err)
{
    int bits, af = family == 4 ? AF_INET : AF_INET6;
    apr_status_t rv;

    memset(x, 0, sizeof(*x));
    if (!text || !*text) {
        return APR_SUCCESS;
    }
    rv = ts_ipalloc_check_prefix(p, text, family, err);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    parse_prefix(p, af, text, &x->base, &bits);
    x->family = af;
    x->text = text;
    x->span = (u128)1 << (family_len(af) * 8 - bits);
    x->excluded = apr_array_make(p, 4, sizeof(u128));
    return APR_SUCCESS;
}

apr_status_t ts_ipalloc_create(ts_ipalloc_t **ap, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                               const char **err)
{
    ts_ipalloc_t *a = apr_pcalloc(p, sizeof(*a));
    apr_status_t rv;

    *ap = NULL;
    a->pool = p;
    a->strategy = conf->ipalloc;
    if ((rv = pfx_init(p, &a->v4, conf->ipv4_prefix, 4, err)) != APR_SUCCESS
        || (rv = pfx_init(p, &a->v6, conf->ipv6_prefix, 6, err)) != APR_SUCCESS) {
        return rv;
    }
    if (sodium_init() < 0) {
        *err = "libsodium failed to initialise";
        return APR_EGENERAL;
    }
    *ap = a;
    return APR_SUCCESS;
}

/* Addresses clients give a meaning of their own. */
#define IP4_QUAD100     0x64646464u     /* 100.100.100.100, MagicDNS */
#define IP4_CHROMEOS    0x64735c00u     /* 100.115.92.0/23, ChromeOS's container network */
#define IP6_QUAD100     ((((u128)0xfd7a115ca1e0ull) << 80) | 0x53)  /* fd7a:115c:a1e0::53 */

/* Reserved ranges as [first, last]; the prefix's own first and last come on top. */
static int reserved_range(const ipalloc_pfx_t *x, u128 v, u128 *last)
{
    if (x->family == AF_INET && v == IP4_QUAD100) {
        *last = v;
        return 1;
    }
    if (x->family == AF_INET && v >= IP4_CHROMEOS && v <= IP4_CHROMEOS + 511) {
        *last = IP4_CHROMEOS + 511;
        return 1;
    }
    if (x->family == AF_INET6 && v == IP6_QUAD100) {
        *last = v;
        return 1;
    }
    return 0;
}

static int pfx_reserved(const ipalloc_pfx_t *x, u128 v, u128 *last)
{
    if (v == x->base || v == x->base + x->span - 1) {
        *last = v;
        return 1;
    }
    return reserved_range(x, v, last);
}

int ts_ipalloc_reserved(const ts_ipalloc_t *a, const char *ip)
{
    const ipalloc_pfx_t *x = (ip && strchr(ip, ':')) ? &a->v6 : &a->v4;
    int af = (ip && strchr(ip, ':')) ? AF_INET6 : AF_INET;
    u128 v, last;

    if (parse_addr(af, ip, &v) != 0) {
        return 0;
    }
    if (x->family) {
        return pfx_reserved(x, v, &last);
    }
    else {
        ipalloc_pfx_t probe = { af, NULL, 0, 0, NULL };
        return reserved_range(&probe, v, &last);
    }
}

void ts_ipalloc_exclude(ts_ipalloc_t *a, const char *ip)
{
    ipalloc_pfx_t *x = (ip && strchr(ip, ':')) ? &a->v6 : &a->v4;
    u128 v;

    if (x->family && parse_addr(x->family, ip, &v) == 0) {
        APR_ARRAY_PUSH(x->excluded, u128) = v;
    }
}

static int cmp_u128(const void *a, const void *b)
{
    u128 x = *(const u128 *)a, y = *(const u128 *)b;

    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Parsed addresses of the family inside the prefix, appended to used[*n]. */
static void collect(const ipalloc_pfx_t *x, const apr_array_header_t *ips, u128 *used, int *n)
{
    int i;
    u128 v;

    for (i = 0; ips && i < ips->nelts; i++) {
        const char *ip = APR_ARRAY_IDX(ips, i, const char *);
        if (parse_addr(x->family, ip, &v) == 0 && v - x->base < x->span) {
            used[(*n)++] = v;
        }
    }
}

/* The addresses in use within the prefix (the given ones and the excluded), sorted. */
static u128 *used_sorted(apr_pool_t *p, const ipalloc_pfx_t *x, const apr_array_header_t *ips,
                         int *count)
{
    int n = 0, i, cap = (ips ? ips->nelts : 0) + x->excluded->nelts;
    u128 *used = apr_palloc(p, sizeof(u128) * (apr_size_t)(cap + 1));

    collect(x, ips, used, &n);
    for (i = 0; i < x->excluded->nelts; i++) {
        used[n++] = APR_ARRAY_IDX(x->excluded, i, u128);
    }
    qsort(used, (size_t)n, sizeof(u128), cmp_u128);
    *count = n;
    return used;
}

/* First free address in [from, to]; 0 when there is none (0 is never inside a prefix). */
static u128 scan(const ipalloc_pfx_t *x, const u128 *used, int nused, u128 from, u128 to)
{
    u128 v = from, last;

    while (v <= to) {
        if (pfx_reserved(x, v, &last)) {
            v = last + 1;
        }
        else if (nused && bsearch(&v, used, (size_t)nused, sizeof(u128), cmp_u128)) {
            v++;
        }
        else {
            return v;
        }
    }
    return 0;
}

static u128 random_offset(u128 span)
{
    u128 r;

    randombytes_buf(&r, sizeof(r));
    return r & (span - 1);      /* spans are powers of two */
}

static ipalloc_pfx_t *family_pfx(ts_ipalloc_t *a, int family)
{
    return family == 6 ? &a->v6 : &a->v4;
}

const char *ts_ipalloc_prefix(const ts_ipalloc_t *a, int family)
{
    const ipalloc_pfx_t *x = family == 6 ? &a->v6 : &a->v4;

    return x->family ? x->text : NULL;
}

static apr_status_t full(apr_pool_t *p, const ipalloc_pfx_t *x, const char **err)
{
    *err = apr_psprintf(p, "no free IPv%d address left in %s", x->family == AF_INET ? 4 : 6,
                        x->text);
    return TS_IPALLOC_EFULL;
}

/* Where a search starts: after last (sequential; else after the highest used address, or at
 * the prefix's start), or at a random address. */
static u128 start_at(const ts_ipalloc_t *a, const ipalloc_pfx_t *x, const char *last,
                     const u128 *used, int nused)
{
    u128 v, end = x->base + x->span - 1;

    if (a->strategy == TS_IPALLOC_RANDOM) {
        return x->base + random_offset(x->span);
    }
    if (last && parse_addr(x->family, last, &v) == 0 && v - x->base < x->span) {
        /* after the last one handed out rather than into the first hole: a freed address
         * is not handed to a new node while peers may still remember the old one */
        return v < end ? v + 1 : x->base;
    }
    if (used && nused) {
        return used[nused - 1] < end ? used[nused - 1] + 1 : x->base;
    }
    return x->base;
}

apr_status_t ts_ipalloc_pick_among(ts_ipalloc_t *a, apr_pool_t *p, int family,
                                   const char *last, const apr_array_header_t *used_ips,
                                   const char **ip, const char **err)
{
    ipalloc_pfx_t *x = family_pfx(a, family);
    int nused;
    u128 *used, start, end = x->base + x->span - 1, v;

    *ip = NULL;
    if (!x->family) {
        return APR_SUCCESS;
    }
    used = used_sorted(p, x, used_ips, &nused);
    start = start_at(a, x, last, used, nused);
    v = scan(x, used, nused, start, end);
    if (v == 0 && start > x->base) {
        v = scan(x, used, nused, x->base, start - 1);
    }
    if (v == 0) {
        return full(p, x, err);
    }
    *ip = addr_text(p, x->family, v);
    return APR_SUCCESS;
}

static int excluded(const ipalloc_pfx_t *x, u128 v)
{
    int i;

    for (i = 0; i < x->excluded->nelts; i++) {
        if (APR_ARRAY_IDX(x->excluded, i, u128) == v) {
            return 1;
        }
    }
    return 0;
}

apr_status_t ts_ipalloc_probe(ts_ipalloc_t *a, apr_pool_t *p, int family, const char *last,
                              int max_probes, ts_ipalloc_probe_fn probe, void *baton,
                              const char **ip, const char **err)
{
    ipalloc_pfx_t *x = family_pfx(a, family);
    u128 start, v, end = x->base + x->span - 1, rlast;
    int probes = 0, wrapped = 0, used;
    apr_status_t rv;

    *ip = NULL;
    if (!x->family) {
        return APR_SUCCESS;
    }
    start = start_at(a, x, last, NULL, 0);
    for (v = start;;) {
        if (wrapped && v >= start) {
            return full(p, x, err);         /* every address of the prefix was looked at */
        }
        if (pfx_reserved(x, v, &rlast)) {
            v = rlast;                      /* the end of the reserved range */
        }
        else if (!excluded(x, v)) {
            const char *text = addr_text(p, x->family, v);
            if (probes++ >= max_probes) {
                *err = apr_psprintf(p, "%d addresses in a row in use after %s", max_probes,
                                    addr_text(p, x->family, start));
                return TS_IPALLOC_EDENSE;
            }
            rv = probe(baton, family, text, &used);
            if (rv != APR_SUCCESS) {
                return rv;
            }
            if (!used) {
                *ip = text;
                return APR_SUCCESS;
            }
        }
        if (v >= end) {
            v = x->base;
            wrapped = 1;
        }
        else {
            v++;
        }
    }
}

apr_status_t ts_ipalloc_pick(ts_ipalloc_t *a, apr_pool_t *p, const apr_array_header_t *nodes,
                             const char **ipv4, const char **ipv6, const char **err)
{
    apr_array_header_t *v4 = apr_array_make(p, nodes ? nodes->nelts : 0, sizeof(char *));
    apr_array_header_t *v6 = apr_array_make(p, nodes ? nodes->nelts : 0, sizeof(char *));
    apr_status_t rv;
    int i;

    for (i = 0; nodes && i < nodes->nelts; i++) {
        const ts_node_t *n = APR_ARRAY_IDX(nodes, i, const ts_node_t *);
        APR_ARRAY_PUSH(v4, const char *) = n->ipv4;
        APR_ARRAY_PUSH(v6, const char *) = n->ipv6;
    }
    rv = ts_ipalloc_pick_among(a, p, 4, NULL, v4, ipv4, err);
    if (rv == APR_SUCCESS) {
        rv = ts_ipalloc_pick_among(a, p, 6, NULL, v6, ipv6, err);
    }
    return rv;
}
