/* ts_policy_alias.c: addresses, prefixes and port ranges, and the resolution of policy
 * aliases (users, groups, tags, hosts, autogroups, CIDRs) to node and address sets. */
#include "ts_policy_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- addresses ---- */

int ts_pol_parse_ip(const char *s, ts_pol_range_t *r)
{
    unsigned char b[16];
    int i;

    if (strchr(s, ':') == NULL) {
        if (inet_pton(AF_INET, s, b) != 1) {
            return -1;
        }
        r->fam = 4;
        r->lo = ((ts_u128)b[0] << 24) | ((ts_u128)b[1] << 16) | ((ts_u128)b[2] << 8) | b[3];
    }
    else {
        if (inet_pton(AF_INET6, s, b) != 1) {
            return -1;
        }
        r->fam = 6;
        r->lo = 0;
        for (i = 0; i < 16; i++) {
            r->lo = (r->lo << 8) | b[i];
        }
    }
    r->hi = r->lo;
    return 0;
}

static ts_u128 alias_hostmask(int fam, int bits)
{
    int width = fam == 4 ? 32 : 128;
    int host = width - bits;

    if (host >= 128) {
        return ~(ts_u128)0;
    }
    return host == 0 ? 0 : (((ts_u128)1 << host) - 1);
}

/* "a.b.c.d/n", "x::/n" or a bare address (/32, /128). strict: host bits must be zero. */
int ts_pol_parse_prefix(const char *s, ts_pol_range_t *r, int *bits, int strict)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    int width, b;
    ts_u128 mask;

    if (slash == NULL) {
        if (ts_pol_parse_ip(s, r) != 0) {
            return -1;
        }
        *bits = r->fam == 4 ? 32 : 128;
        return 0;
    }
    if ((size_t)(slash - s) >= sizeof(buf) || slash[1] == '\0') {
        return -1;
    }
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = '\0';
    if (ts_pol_parse_ip(buf, r) != 0) {
        return -1;
    }
    width = r->fam == 4 ? 32 : 128;
    b = 0;
    for (slash++; *slash; slash++) {
        if (!isdigit((unsigned char)*slash) || b > width) {
            return -1;
        }
        b = b * 10 + (*slash - '0');
    }
    if (b > width) {
        return -1;
    }
    mask = alias_hostmask(r->fam, b);
    if (strict && (r->lo & mask) != 0) {
        return -1;
    }
    r->lo &= ~mask;
    if (r->fam == 4) {
        r->lo &= 0xffffffffu;
    }
    r->hi = r->lo | mask;
    if (r->fam == 4) {
        r->hi &= 0xffffffffu;
    }
    *bits = b;
    return 0;
}

const char *ts_pol_ip_text(apr_pool_t *p, int fam, ts_u128 v)
{
    unsigned char b[16];
    char out[INET6_ADDRSTRLEN];
    int i;

    if (fam == 4) {
        b[0] = (unsigned char)(v >> 24);
        b[1] = (unsigned char)(v >> 16);
        b[2] = (unsigned char)(v >> 8);
        b[3] = (unsigned char)v;
        inet_ntop(AF_INET, b, out, sizeof(out));
    }
    else {
        for (i = 15; i >= 0; i--) {
            b[i] = (unsigned char)v;
            v >>= 8;
        }
        inet_ntop(AF_INET6, b, out, sizeof(out));
    }
    return apr_pstrdup(p, out);
}

/* Single address bare, a prefix as CIDR, anything else "first-last" (the wire's forms). */
const char *ts_pol_range_text(apr_pool_t *p, const ts_pol_range_t *r)
{
    int width = r->fam == 4 ? 32 : 128, bits;

    if (r->lo == r->hi) {
        return ts_pol_ip_text(p, r->fam, r->lo);
    }
    for (bits = 0; bits <= width; bits++) {
        ts_u128 m = alias_hostmask(r->fam, bits);
        if ((r->lo & m) == 0 && (r->lo | m) == r->hi) {
            return apr_psprintf(p, "%s/%d", ts_pol_ip_text(p, r->fam, r->lo), bits);
        }
    }
    return apr_psprintf(p, "%s-%s", ts_pol_ip_text(p, r->fam, r->lo),
                        ts_pol_ip_text(p, r->fam, r->hi));
}

int ts_pol_overlaps(const ts_pol_range_t *a, const ts_pol_range_t *b)
{
    return a->fam == b->fam && a->lo <= b->hi && b->lo <= a->hi;
}

int ts_pol_contains(const ts_pol_range_t *outer, const ts_pol_range_t *inner)
{
    return outer->fam == inner->fam && outer->lo <= inner->lo && inner->hi <= outer->hi;
}

/* ---- ports ---- */

static int alias_port(const char *s, size_t n, int *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 5) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* "*", "22", "80,443", "1000-2000" (comma separated) into ts_pol_ports_t ranges. */
int ts_pol_parse_ports(apr_pool_t *p, const char *s, apr_array_header_t **out,
                       const char **err)
{
    apr_array_header_t *a = apr_array_make(p, 2, sizeof(ts_pol_ports_t));
    const char *item = s;

    while (1) {
        const char *end = strchr(item, ',');
        size_t n = end ? (size_t)(end - item) : strlen(item);
        const char *dash = memchr(item, '-', n);
        ts_pol_ports_t pr;
        const char *text = apr_pstrndup(p, item, n);

        if (n == 1 && item[0] == '*') {
            pr.first = 0;
            pr.last = 65535;
        }
        else {
            size_t n1 = dash ? (size_t)(dash - item) : n;
            if (alias_port(item, n1, &pr.first) != 0) {
                *err = apr_psprintf(p, "port range \"%s\": invalid first integer", text);
                return -1;
            }
            if (dash == NULL) {
                pr.last = pr.first;
            }
            else if (alias_port(dash + 1, n - n1 - 1, &pr.last) != 0) {
                *err = apr_psprintf(p, "port range \"%s\": invalid last integer", text);
                return -1;
            }
            if (pr.first == 0) {
                *err = apr_psprintf(p, "port range \"%s\": first port must be >0, or use "
                                    "'*' for wildcard", text);
                return -1;
            }
            if (pr.last < pr.first) {
                *err = apr_psprintf(p, "port range \"%s\": last port below first", text);
                return -1;
            }
        }
        APR_ARRAY_PUSH(a, ts_pol_ports_t) = pr;
        if (end == NULL) {
            break;
        }
        item = end + 1;
    }
    *out = a;
    return 0;
}

/* "alias:ports": the ports follow the last ':' ("[v6]:22" and "v6:22" both work). */
const char *ts_pol_split_dst(apr_pool_t *p, const char *dst, const char **ports)
{
    const char *colon = strrchr(dst, ':');
    const char *alias;

    if (colon == NULL) {
        *ports = NULL;
        return dst;
    }
    *ports = colon + 1;
    alias = apr_pstrndup(p, dst, (size_t)(colon - dst));
    if (alias[0] == '[' && alias[strlen(alias) - 1] == ']') {
        alias = apr_pstrndup(p, alias + 1, strlen(alias) - 2);
    }
    return alias;
}

/* ---- users, groups, tags ---- */

static const char *alias_domain(const char *email)
{
    const char *at = email ? strrchr(email, '@') : NULL;
    return at ? at + 1 : "";
}

int ts_pol_user_in_group(const ts_policy_t *pol, const ts_policy_user_t *u, const char *alias)
{
    apr_hash_t *m = pol ? apr_hash_get(pol->group_sets, alias, APR_HASH_KEY_STRING) : NULL;
    char key[300];

    if (m == NULL) {
        return 0;
    }
    if (apr_hash_get(m, u->email, APR_HASH_KEY_STRING) != NULL) {
        return 1;
    }
    /* a member "user:*@domain" names every user of the domain */
    return apr_snprintf(key, sizeof(key), "user:*@%s", alias_domain(u->email)) < (int)sizeof(key)
           && apr_hash_get(m, key, APR_HASH_KEY_STRING) != NULL;
}

/* Whether user u is named by alias (email, group, user:*@domain, autogroups of users). */
int ts_pol_user_matches(const ts_policy_t *pol, const ts_policy_tailnet_t *tn,
                        const ts_policy_user_t *u, const char *alias)
{
    (void)tn;
    if (strcmp(alias, "*") == 0 || strcmp(alias, "autogroup:member") == 0
        || strcmp(alias, "autogroup:danger-all") == 0) {
        return 1;
    }
    if (strcmp(alias, "autogroup:admin") == 0) {
        return u->is_admin;
    }
    if (strcmp(alias, "autogroup:owner") == 0) {
        return u->is_owner;
    }
    if (strncmp(alias, "group:", 6) == 0) {
        return ts_pol_user_in_group(pol, u, alias);
    }
    if (strncmp(alias, "user:*@", 7) == 0) {
        return strcmp(alias_domain(u->email), alias + 7) == 0;
    }
    if (strchr(alias, '@') != NULL) {
        size_t nl = strlen(u->name);
        return strcmp(alias, u->email) == 0
               || (strncmp(alias, u->name, nl) == 0 && alias[nl] == '@' && alias[nl + 1] == 0);
    }
    return 0;
}

int ts_pol_node_has_tag(const ts_policy_result_t *r, int i, const char *tag)
{
    apr_array_header_t *t = r->nodes[i].taglist;
    int k;

    for (k = 0; k < t->nelts; k++) {
        if (strcmp(APR_ARRAY_IDX(t, k, const char *), tag) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether node i is named by alias through its identity (user, tag, autogroup), not by
 * address. Hosts and prefixes return 0 (they match by address). */
int ts_pol_node_matches(const ts_policy_result_t *r, int i, const char *alias)
{
    const ts_policy_node_t *n = &r->tn->nodes[i];
    int tagged = r->nodes[i].taglist->nelts > 0;

    if (strcmp(alias, "*") == 0 || strcmp(alias, "autogroup:danger-all") == 0) {
        return 1;
    }
    if (strcmp(alias, "autogroup:tagged") == 0) {
        return tagged;
    }
    if (strncmp(alias, "tag:", 4) == 0) {
        return ts_pol_node_has_tag(r, i, alias);
    }
    if (tagged || n->user < 0 || n->user >= r->tn->nusers) {
        return 0;
    }
    return ts_pol_user_matches(r->pol, r->tn, &r->tn->users[n->user], alias);
}

/* ---- resolution ---- */

static void alias_push(ts_policy_result_t *r, ts_pol_set_t *s, const ts_pol_range_t *rg,
                       const char *text)
{
    ts_pol_addr_t *a = apr_array_push(s->addrs);
    a->r = *rg;
    a->text = text ? text : ts_pol_range_text(r->pool, rg);
    *(ts_pol_addr_t *)apr_array_push(s->cidrs) = *a;
}

static void alias_push_addr(ts_pol_set_t *s, const ts_pol_addr_t *a)
{
    *(ts_pol_addr_t *)apr_array_push(s->addrs) = *a;
}

static void alias_push_node(ts_policy_result_t *r, ts_pol_set_t *s, int i)
{
    apr_array_header_t *ad = r->nodes[i].addrs;
    int k;

    if (s->member[i]) {
        return;
    }
    s->member[i] = 1;
    for (k = 0; k < ad->nelts; k++) {
        alias_push_addr(s, &APR_ARRAY_IDX(ad, k, ts_pol_addr_t));
    }
}

/* The source "*": the tailnet's address space (100.64.0.0/10 less the 100.115.92.0/23
 * that Tailscale keeps for ChromeOS, and fd7a:115c:a1e0::/48) plus every approved
 * subnet route. */
static void alias_star_src(ts_policy_result_t *r, ts_pol_set_t *s)
{
    ts_pol_range_t rg;
    int bits, k;

    rg.fam = 4;
    rg.lo = (100u << 24) | (64u << 16);
    rg.hi = (100u << 24) | (115u << 16) | (91u << 8) | 255u;
    alias_push(r, s, &rg, NULL);
    rg.lo = (100u << 24) | (115u << 16) | (94u << 8);
    rg.hi = (100u << 24) | (127u << 16) | (255u << 8) | 255u;
    alias_push(r, s, &rg, NULL);
    ts_pol_parse_prefix("fd7a:115c:a1e0::/48", &rg, &bits, 1);
    alias_push(r, s, &rg, NULL);
    for (k = 0; k < r->all_routes->nelts; k++) {
        ts_pol_addr_t *a = &APR_ARRAY_IDX(r->all_routes, k, ts_pol_addr_t);
        alias_push(r, s, &a->r, a->text);
    }
}

static apr_status_t alias_prefix(ts_policy_result_t *r, const char *alias, ts_pol_set_t *s,
                                 const char **err)
{
    ts_pol_range_t rg;
    int bits;

    if (ts_pol_parse_prefix(alias, &rg, &bits, 0) != 0) {
        *err = apr_psprintf(r->pool, "\"%s\": invalid address", alias);
        return APR_EINVAL;
    }
    alias_push(r, s, &rg, NULL);
    return APR_SUCCESS;
}

/* Resolves alias to its addresses. src selects the source form of "*". */
apr_status_t ts_pol_resolve(ts_policy_result_t *r, const char *alias, int src,
                            ts_pol_set_t *s, const char **err)
{
    ts_pol_addr_t *h;
    int i;

    if (s->addrs == NULL) {
        s->addrs = apr_array_make(r->pool, 8, sizeof(ts_pol_addr_t));
        s->cidrs = apr_array_make(r->pool, 2, sizeof(ts_pol_addr_t));
        s->member = apr_pcalloc(r->pool, (apr_size_t)r->n + 1);
    }
    if (strcmp(alias, "*") == 0) {
        s->any = 1;
        if (src) {
            alias_star_src(r, s);
        }
        return APR_SUCCESS;
    }
    if (strcmp(alias, "autogroup:danger-all") == 0) {
        s->any = 1;
        return APR_SUCCESS;
    }
    if (strcmp(alias, "autogroup:self") == 0) {
        s->self = 1;
        return APR_SUCCESS;
    }
    if (strcmp(alias, "autogroup:internet") == 0) {
        /* lands on approved exit nodes only */
        for (i = 0; i < r->n; i++) {
            if (r->nodes[i].exit) {
                ts_pol_range_t rg;
                int bits;
                ts_pol_parse_prefix("0.0.0.0/0", &rg, &bits, 1);
                alias_push(r, s, &rg, "0.0.0.0/0");
                ts_pol_parse_prefix("::/0", &rg, &bits, 1);
                alias_push(r, s, &rg, "::/0");
                break;
            }
        }
        return APR_SUCCESS;
    }
    if (strncmp(alias, "tag:", 4) == 0 || strncmp(alias, "group:", 6) == 0
        || strncmp(alias, "autogroup:", 10) == 0 || strchr(alias, '@') != NULL) {
        for (i = 0; i < r->n; i++) {
            if (ts_pol_node_matches(r, i, alias)) {
                alias_push_node(r, s, i);
            }
        }
        return APR_SUCCESS;
    }
    h = r->pol ? apr_hash_get(r->pol->hosts, alias, APR_HASH_KEY_STRING) : NULL;
    if (h != NULL) {
        alias_push(r, s, &h->r, h->text);
        return APR_SUCCESS;
    }
    return alias_prefix(r, alias, s, err);
}

/* Whether node i's addresses or approved routes fall in s. */
int ts_pol_node_in_set(const ts_policy_result_t *r, int i, const ts_pol_set_t *s)
{
    const ts_pol_node_t *n = &r->nodes[i];
    int k, m;

    if (s->any || s->member[i]) {
        return 1;
    }
    for (k = 0; k < s->cidrs->nelts; k++) {
        const ts_pol_addr_t *a = &APR_ARRAY_IDX(s->cidrs, k, ts_pol_addr_t);
        for (m = 0; m < n->addrs->nelts; m++) {
            if (ts_pol_overlaps(&a->r, &APR_ARRAY_IDX(n->addrs, m, ts_pol_addr_t).r)) {
                return 1;
            }
        }
        for (m = 0; m < n->routes->nelts; m++) {
            if (ts_pol_overlaps(&a->r, &APR_ARRAY_IDX(n->routes, m, ts_pol_addr_t).r)) {
                return 1;
            }
        }
    }
    return 0;
}
