/* ts_policy_tests.c: the policy's own "tests" (src may or may not reach dst:port) and
 * "sshTests" (src may or may not log in as a user on dst), evaluated against the compiled
 * rules; a test that does not hold, or cannot be evaluated, rejects the policy. */
#include "ts_policy_int.h"

#include <ctype.h>
#include <string.h>

/* Protocol of a test ("tcp" when absent); -1 when unknown. */
static int tests_proto(const char *s)
{
    static const struct { const char *n; int v; } names[] = {
        { "tcp", 6 }, { "udp", 17 }, { "icmp", 1 }, { "ipv6-icmp", 58 }, { "sctp", 132 },
    };
    size_t i;
    int v = 0;

    if (s == NULL || *s == '\0') {
        return 6;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].n) == 0) {
            return names[i].v;
        }
    }
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > 255) {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v <= 255 ? v : -1;
}

/* Whether alias can name something in this tailnet (tests do not fail validation: an
 * unknown name just makes the test fail). */
static int tests_known(const ts_policy_result_t *r, const char *alias)
{
    const ts_policy_t *pol = r->pol;
    ts_pol_range_t rg;
    int bits;

    if (strncmp(alias, "tag:", 4) == 0) {
        return apr_hash_get(pol->tag_owners, alias, APR_HASH_KEY_STRING) != NULL;
    }
    if (strncmp(alias, "group:", 6) == 0) {
        return apr_hash_get(pol->groups, alias, APR_HASH_KEY_STRING) != NULL;
    }
    if (strncmp(alias, "autogroup:", 10) == 0) {
        return strcmp(alias, "autogroup:member") == 0 || strcmp(alias, "autogroup:tagged") == 0
               || strcmp(alias, "autogroup:admin") == 0 || strcmp(alias, "autogroup:owner") == 0
               || strcmp(alias, "autogroup:self") == 0;
    }
    if (strchr(alias, '@') != NULL || strcmp(alias, "*") == 0) {
        return 1;
    }
    return apr_hash_get(pol->hosts, alias, APR_HASH_KEY_STRING) != NULL
           || ts_pol_parse_prefix(alias, &rg, &bits, 0) == 0;
}

/* The single addresses a test names (a prefix that is not one address cannot be tested). */
static int tests_addrs(ts_policy_result_t *r, const char *alias, ts_pol_set_t *s)
{
    const char *err;
    int k;

    memset(s, 0, sizeof(*s));
    if (!tests_known(r, alias) || strcmp(alias, "*") == 0
        || ts_pol_resolve(r, alias, 1, s, &err) != APR_SUCCESS) {
        return -1;
    }
    for (k = 0; k < s->addrs->nelts; k++) {
        const ts_pol_addr_t *a = &APR_ARRAY_IDX(s->addrs, k, ts_pol_addr_t);
        if (a->r.lo != a->r.hi) {
            return -1;
        }
    }
    return s->addrs->nelts > 0 ? 0 : -1;
}

static int tests_node_of(const ts_policy_result_t *r, const ts_pol_range_t *ip)
{
    return ts_pol_node_by_ip(r, ip);
}

/* Whether resolved set s contains address ip: by node identity, else by its prefixes. */
static int tests_set_has(const ts_policy_result_t *r, const ts_pol_set_t *s,
                         const ts_pol_range_t *ip)
{
    int k, i;

    if (s->any) {
        return 1;
    }
    i = ts_pol_node_by_ip(r, ip);
    if (i >= 0 && s->member != NULL && s->member[i]) {
        return 1;
    }
    for (k = 0; s->cidrs != NULL && k < s->cidrs->nelts; k++) {
        if (ts_pol_contains(&APR_ARRAY_IDX(s->cidrs, k, ts_pol_addr_t).r, ip)) {
            return 1;
        }
    }
    return 0;
}

static int tests_ports_have(const apr_array_header_t *ports, int port)
{
    int k;

    for (k = 0; ports != NULL && k < ports->nelts; k++) {
        const ts_pol_ports_t *p = &APR_ARRAY_IDX(ports, k, ts_pol_ports_t);
        if (p->first <= port && port <= p->last) {
            return 1;
        }
    }
    return 0;
}

static int tests_protos_have(const apr_array_header_t *protos, int proto)
{
    int k;

    if (protos == NULL || protos->nelts == 0) {
        return proto == 6 || proto == 17 || proto == 1 || proto == 58;
    }
    for (k = 0; k < protos->nelts; k++) {
        if (APR_ARRAY_IDX(protos, k, int) == proto) {
            return 1;
        }
    }
    return 0;
}

/* Each rule's sources and destinations, resolved once for all the tests. */
typedef struct {
    ts_pol_set_t src;
    ts_pol_set_t *dst;
} tests_rule_t;

static tests_rule_t *tests_rule(ts_policy_result_t *r, int k)
{
    tests_rule_t *c = r->tests_cache;
    const ts_pol_rule_t *rule = &APR_ARRAY_IDX(r->pol->rules, k, ts_pol_rule_t);
    const char *err;
    int m;

    if (c == NULL) {
        c = r->tests_cache = apr_pcalloc(r->pool, sizeof(tests_rule_t)
                                                  * (size_t)(r->pol->rules->nelts + 1));
    }
    if (c[k].dst == NULL) {
        c[k].dst = apr_pcalloc(r->pool, sizeof(ts_pol_set_t) * (size_t)(rule->dst->nelts + 1));
        for (m = 0; m < rule->src->nelts; m++) {
            ts_pol_resolve(r, APR_ARRAY_IDX(rule->src, m, const char *), 1, &c[k].src, &err);
        }
        for (m = 0; m < rule->dst->nelts; m++) {
            ts_pol_resolve(r, APR_ARRAY_IDX(rule->dst, m, ts_pol_dst_t).alias, 0, &c[k].dst[m],
                           &err);
        }
    }
    return &c[k];
}

/* Whether one rule's destination d (resolved: ds) lets src reach dst:port/proto. */
static int tests_dst_allows(ts_policy_result_t *r, const ts_pol_rule_t *rule,
                            const ts_pol_dst_t *d, const ts_pol_set_t *ds,
                            const ts_pol_range_t *src, const ts_pol_range_t *dst, int port,
                            int proto)
{
    int q, ok = 0;

    if (!rule->grant) {
        if (!tests_ports_have(d->ports, port) || !tests_protos_have(rule->protos, proto)) {
            return 0;
        }
    }
    else {
        for (q = 0; q < rule->ip->nelts; q++) {
            const ts_pol_ipspec_t *is = &APR_ARRAY_IDX(rule->ip, q, ts_pol_ipspec_t);
            ok |= tests_ports_have(is->ports, port) && tests_protos_have(is->protos, proto);
        }
        if (!ok) {
            return 0;
        }
    }
    if (strcmp(d->alias, "autogroup:self") == 0) {
        int a = tests_node_of(r, src), b = tests_node_of(r, dst);
        return a >= 0 && b >= 0 && r->nodes[a].taglist->nelts == 0
               && r->nodes[b].taglist->nelts == 0
               && r->tn->nodes[a].user == r->tn->nodes[b].user;
    }
    return ds->addrs != NULL && tests_set_has(r, ds, dst);
}

static int tests_allowed(ts_policy_result_t *r, const ts_pol_range_t *src,
                         const ts_pol_range_t *dst, int port, int proto)
{
    const ts_policy_t *pol = r->pol;
    int k, i;

    if (!pol->has_filter) {
        return 1;
    }
    for (k = 0; k < pol->rules->nelts; k++) {
        const ts_pol_rule_t *rule = &APR_ARRAY_IDX(pol->rules, k, ts_pol_rule_t);
        tests_rule_t *c;
        if (rule->grant && rule->ip->nelts == 0) {
            continue;
        }
        c = tests_rule(r, k);
        if (c->src.addrs == NULL || !tests_set_has(r, &c->src, src)) {
            continue;
        }
        for (i = 0; i < rule->dst->nelts; i++) {
            if (tests_dst_allows(r, rule, &APR_ARRAY_IDX(rule->dst, i, ts_pol_dst_t), &c->dst[i],
                                 src, dst, port, proto)) {
                return 1;
            }
        }
    }
    return 0;
}

/* One "alias:port" of a test: 1 when src may reach it, 0 when not, -1 when untestable. */
static int tests_reach(ts_policy_result_t *r, const ts_pol_set_t *src, const char *target,
                       int proto)
{
    const char *ports, *alias = ts_pol_split_dst(r->pool, target, &ports);
    ts_pol_set_t dst;
    int port = 0, pairs = 0, allowed = 0, k, m;
    const char *c;

    if (ports == NULL || *ports == '\0' || strlen(ports) > 5) {
        return -1;
    }
    for (c = ports; *c; c++) {
        if (!isdigit((unsigned char)*c)) {
            return -1;
        }
        port = port * 10 + (*c - '0');
    }
    if (port < 1 || port > 65535 || strcmp(alias, "autogroup:internet") == 0) {
        return -1;
    }
    if (strcmp(alias, "autogroup:self") == 0) {
        dst = *src;   /* the source's own nodes */
    }
    else if (tests_addrs(r, alias, &dst) != 0) {
        return -1;
    }
    for (k = 0; k < src->addrs->nelts; k++) {
        const ts_pol_range_t *s = &APR_ARRAY_IDX(src->addrs, k, ts_pol_addr_t).r;
        for (m = 0; m < dst.addrs->nelts; m++) {
            const ts_pol_range_t *d = &APR_ARRAY_IDX(dst.addrs, m, ts_pol_addr_t).r;
            if (s->fam != d->fam) {
                continue;
            }
            pairs++;
            allowed += tests_allowed(r, s, d, port, proto);
        }
    }
    if (pairs == 0) {
        return -1;
    }
    return allowed == pairs ? 1 : (allowed == 0 ? 0 : 2);
}

/* One entry of "tests"; NULL when it holds, else why not. */
static const char *tests_one(ts_policy_result_t *r, json_t *t)
{
    const char *src = json_string_value(json_object_get(t, "src"));
    json_t *accept = json_object_get(t, "accept"), *deny = json_object_get(t, "deny"), *v;
    int proto = tests_proto(json_string_value(json_object_get(t, "proto")));
    ts_pol_set_t ss;
    size_t i;

    if (src == NULL || proto < 0 || (json_array_size(accept) + json_array_size(deny)) == 0) {
        return "the test needs a src, a known proto and accept or deny entries";
    }
    if (tests_addrs(r, src, &ss) != 0) {
        return apr_psprintf(r->pool, "src \"%s\" names no node or address", src);
    }
    json_array_foreach(accept, i, v) {
        const char *d = json_string_value(v);
        if (d == NULL || tests_reach(r, &ss, d, proto) != 1) {
            return apr_psprintf(r->pool, "%s cannot reach %s", src, d ? d : "(not a string)");
        }
    }
    json_array_foreach(deny, i, v) {
        const char *d = json_string_value(v);
        int res = d ? tests_reach(r, &ss, d, proto) : -1;
        if (res != 0) {
            return apr_psprintf(r->pool, "%s %s %s", src, res < 0 ? "cannot be tested against"
                                : "can reach", d ? d : "(not a string)");
        }
    }
    return NULL;
}

/* ---- sshTests ---- */

/* Whether src node s may log in as user on dst node d: 0 no, 1 accept, 2 check. */
static int tests_ssh_login(const ts_policy_result_t *r, int s, int d, const char *user)
{
    json_t *rule;
    size_t k, m;

    json_array_foreach(r->nodes[d].ssh, k, rule) {
        json_t *pr, *users = json_object_get(rule, "sshUsers"), *map;
        int hit = 0;
        json_array_foreach(json_object_get(rule, "principals"), m, pr) {
            const char *ip = json_string_value(json_object_get(pr, "nodeIP"));
            int *idx = ip ? apr_hash_get(r->by_addr, ip, APR_HASH_KEY_STRING) : NULL;
            hit |= idx != NULL && *idx == s;
        }
        if (!hit) {
            continue;
        }
        map = json_object_get(users, user);
        if (map == NULL && strcmp(user, "root") != 0) {
            map = json_object_get(users, "*");
        }
        if (json_string_length(map) > 0) {
            return json_object_get(json_object_get(rule, "action"), "holdAndDelegate") ? 2 : 1;
        }
    }
    return 0;
}

static int tests_ssh_nodes(ts_policy_result_t *r, const char *alias, unsigned char *out)
{
    ts_pol_set_t s;
    int i, any = 0, k;

    if (tests_addrs(r, alias, &s) != 0) {
        return -1;
    }
    for (k = 0; k < s.addrs->nelts; k++) {
        i = tests_node_of(r, &APR_ARRAY_IDX(s.addrs, k, ts_pol_addr_t).r);
        if (i >= 0) {
            out[i] = 1;
            any = 1;
        }
    }
    return any ? 0 : -1;
}

static const char *tests_ssh_one(ts_policy_result_t *r, json_t *t)
{
    const char *src = json_string_value(json_object_get(t, "src"));
    static const char *const kinds[] = { "accept", "check", "deny" };
    unsigned char *sn = apr_pcalloc(r->pool, (apr_size_t)r->n + 1);
    unsigned char *dn = apr_pcalloc(r->pool, (apr_size_t)r->n + 1);
    json_t *v;
    size_t i, entries = 0;
    int k, s, d;

    if (src == NULL || tests_ssh_nodes(r, src, sn) != 0) {
        return apr_psprintf(r->pool, "src \"%s\" names no node", src ? src : "");
    }
    json_array_foreach(json_object_get(t, "dst"), i, v) {
        if (!json_is_string(v) || tests_ssh_nodes(r, json_string_value(v), dn) != 0) {
            return apr_psprintf(r->pool, "dst \"%s\" names no node",
                                json_is_string(v) ? json_string_value(v) : "");
        }
    }
    for (k = 0; k < 3; k++) {
        json_array_foreach(json_object_get(t, kinds[k]), i, v) {
            const char *user = json_string_value(v);
            entries++;
            if (user == NULL || *user == '\0') {
                return "an empty user cannot be tested";
            }
            for (s = 0; s < r->n; s++) {
                for (d = 0; sn[s] && d < r->n; d++) {
                    int res = dn[d] ? tests_ssh_login(r, s, d, user) : -1;
                    if (res < 0 || (k < 2 && res == 0) || (k == 2 && res > 0)) {
                        if (res >= 0) {
                            return apr_psprintf(r->pool, "%s: %s as %s on %s does not hold",
                                                kinds[k], src, user, r->tn->nodes[d].name);
                        }
                    }
                }
            }
        }
    }
    return entries ? NULL : "the test needs accept, check or deny entries";
}

static apr_status_t tests_fail(ts_policy_result_t *r, const char **err, const char *kind,
                               size_t i, const char *why)
{
    *err = apr_psprintf(r->pool, "test(s) failed: %s[%" APR_SIZE_T_FMT "]: %s", kind, i, why);
    return APR_EINVAL;
}

apr_status_t ts_pol_tests(ts_policy_result_t *r, const char **err)
{
    json_t *t;
    size_t i;
    const char *why;

    if (r->pol == NULL) {
        return APR_SUCCESS;
    }
    json_array_foreach(r->pol->tests, i, t) {
        if ((why = tests_one(r, t)) != NULL) {
            return tests_fail(r, err, "tests", i, why);
        }
    }
    json_array_foreach(r->pol->ssh_tests, i, t) {
        if ((why = tests_ssh_one(r, t)) != NULL) {
            return tests_fail(r, err, "sshTests", i, why);
        }
    }
    return APR_SUCCESS;
}
