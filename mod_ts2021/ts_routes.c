/* ts_routes.c: subnet and exit routes of a node: canonical prefixes, the advertised set from
 * Hostinfo, approvals (control API 5.9). */
#include "ts_routes.h"

#include <apr_strings.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ROUTES_EXIT4 "0.0.0.0/0"
#define ROUTES_EXIT6 "::/0"

const char *ts_routes_canonical(apr_pool_t *p, const char *text, const char **err)
{
    unsigned char addr[16];
    char buf[INET6_ADDRSTRLEN], *end;
    const char *slash = text ? strchr(text, '/') : NULL;
    char *host;
    long bits;
    int af, max, i;

    *err = NULL;
    if (!slash || slash == text || !slash[1]) goto bad;
    host = apr_pstrmemdup(p, text, (apr_size_t)(slash - text));
    af = strchr(host, ':') ? AF_INET6 : AF_INET;
    max = af == AF_INET6 ? 128 : 32;
    if (inet_pton(af, host, addr) != 1) goto bad;
    if (slash[1] < '0' || slash[1] > '9') goto bad;
    bits = strtol(slash + 1, &end, 10);
    if (*end || bits < 0 || bits > max || (slash[1] == '0' && slash[2])) goto bad;
    for (i = 0; i < max / 8; i++) {
        int keep = (int)bits - i * 8;
        unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));

        if (addr[i] & (unsigned char)~mask) {
            *err = apr_psprintf(p, "'%s' has host bits set (the prefix is not its first address)",
                                text);
            return NULL;
        }
    }
    if (!inet_ntop(af, addr, buf, sizeof(buf))) goto bad;
    return apr_psprintf(p, "%s/%ld", buf, bits);
bad:
    *err = apr_psprintf(p, "'%s' is not an IP prefix (address/length)", text ? text : "");
    return NULL;
}

int ts_routes_is_exit(const char *prefix)
{
    return prefix && (!strcmp(prefix, ROUTES_EXIT4) || !strcmp(prefix, ROUTES_EXIT6));
}

static int routes_has(const apr_array_header_t *list, const char *prefix)
{
    int i;

    for (i = 0; list && i < list->nelts; i++)
        if (!strcmp(APR_ARRAY_IDX(list, i, const char *), prefix)) return 1;
    return 0;
}

apr_array_header_t *ts_routes_from_hostinfo(apr_pool_t *p, const char *hostinfo, int *skipped)
{
    apr_array_header_t *out = apr_array_make(p, 4, sizeof(const char *));
    json_t *hi = hostinfo ? json_loads(hostinfo, 0, NULL) : NULL, *v;
    json_t *ips = json_is_object(hi) ? json_object_get(hi, "RoutableIPs") : NULL;
    size_t i;
    int bad = 0;

    json_array_foreach(ips, i, v) {
        const char *err, *c = json_is_string(v)
                              ? ts_routes_canonical(p, json_string_value(v), &err) : NULL;

        if (!c || out->nelts >= TS_ROUTES_MAX) {
            bad++;
            continue;
        }
        if (!routes_has(out, c)) APR_ARRAY_PUSH(out, const char *) = c;
    }
    json_decref(hi);
    if (skipped) *skipped = bad;
    return out;
}

/* A working copy of cur (NULL: none). */
static apr_array_header_t *routes_copy(apr_pool_t *p, const apr_array_header_t *cur)
{
    return cur ? apr_array_copy(p, cur) : apr_array_make(p, 4, sizeof(ts_route_t));
}

static int routes_cmp(const void *a, const void *b)
{
    return strcmp(((const ts_route_t *)a)->prefix, ((const ts_route_t *)b)->prefix);
}

static ts_route_t *routes_find(apr_array_header_t *list, const char *prefix)
{
    int i;

    for (i = 0; i < list->nelts; i++) {
        ts_route_t *r = &APR_ARRAY_IDX(list, i, ts_route_t);

        if (!strcmp(r->prefix, prefix)) return r;
    }
    return NULL;
}

/* Rows that say something, sorted; *changed if the result differs from cur. */
static apr_array_header_t *routes_finish(apr_pool_t *p, const apr_array_header_t *cur,
                                         apr_array_header_t *work, int *changed)
{
    apr_array_header_t *out = apr_array_make(p, work->nelts ? work->nelts : 1, sizeof(ts_route_t));
    apr_array_header_t *old = routes_copy(p, cur);
    int i;

    for (i = 0; i < work->nelts; i++) {
        ts_route_t *r = &APR_ARRAY_IDX(work, i, ts_route_t);

        if (r->advertised || r->approved) APR_ARRAY_PUSH(out, ts_route_t) = *r;
    }
    qsort(out->elts, (size_t)out->nelts, sizeof(ts_route_t), routes_cmp);
    qsort(old->elts, (size_t)old->nelts, sizeof(ts_route_t), routes_cmp);
    *changed = out->nelts != old->nelts;
    for (i = 0; !*changed && i < out->nelts; i++) {
        const ts_route_t *a = &APR_ARRAY_IDX(out, i, ts_route_t);
        const ts_route_t *b = &APR_ARRAY_IDX(old, i, ts_route_t);

        *changed = strcmp(a->prefix, b->prefix) || !a->advertised != !b->advertised
                   || !a->approved != !b->approved;
    }
    return out;
}

apr_array_header_t *ts_routes_with_advertised(apr_pool_t *p, const apr_array_header_t *cur,
                                              const apr_array_header_t *adv, int *changed)
{
    apr_array_header_t *work = routes_copy(p, cur);
    int i;

    for (i = 0; i < work->nelts; i++) APR_ARRAY_IDX(work, i, ts_route_t).advertised = 0;
    for (i = 0; adv && i < adv->nelts; i++) {
        const char *prefix = APR_ARRAY_IDX(adv, i, const char *);
        ts_route_t *r = routes_find(work, prefix);

        if (!r) {
            r = &APR_ARRAY_PUSH(work, ts_route_t);
            r->prefix = apr_pstrdup(p, prefix);
            r->approved = 0;
        }
        r->advertised = 1;
    }
    return routes_finish(p, cur, work, changed);
}

static void routes_mark(apr_pool_t *p, apr_array_header_t *work, const char *prefix,
                        int approved)
{
    ts_route_t *r = routes_find(work, prefix);

    if (!r) {
        if (!approved) return;
        r = &APR_ARRAY_PUSH(work, ts_route_t);
        r->prefix = apr_pstrdup(p, prefix);
        r->advertised = 0;
    }
    r->approved = approved;
}

apr_array_header_t *ts_routes_set_approved(apr_pool_t *p, const apr_array_header_t *cur,
                                           const apr_array_header_t *prefixes, int approved,
                                           int *changed)
{
    apr_array_header_t *work = routes_copy(p, cur);
    int i;

    for (i = 0; prefixes && i < prefixes->nelts; i++) {
        const char *prefix = APR_ARRAY_IDX(prefixes, i, const char *);

        if (ts_routes_is_exit(prefix)) {
            routes_mark(p, work, ROUTES_EXIT4, approved);
            routes_mark(p, work, ROUTES_EXIT6, approved);
        }
        else {
            routes_mark(p, work, prefix, approved);
        }
    }
    return routes_finish(p, cur, work, changed);
}
