/* ts_policy.c: the policy document parsed from HuJSON into the model of ts_policy_int.h
 * and validated; every error names the line and the offending value. */
#include "ts_policy_int.h"
#include "ts_hujson.h"

#include <ctype.h>
#include <string.h>

static const char *const policy_top_keys[] = {
    "acls", "grants", "ssh", "groups", "hosts", "tagOwners", "autoApprovers", "nodeAttrs",
    "tests", "sshTests", "randomizeClientPort", "postures", "defaultSrcPosture", "ipsets",
    "derpMap", "disableIPv4", "OneCGNATRoute", NULL
};

static const char *const policy_autogroups[] = {
    "member", "tagged", "self", "internet", "admin", "owner", "danger-all", "nonroot",
    "shared", "it-admin", "network-admin", "billing-admin", "auditor", NULL
};

/* tailscale.com capabilities a grant may name (the others are the control plane's own). */
static const char *const policy_ts_caps[] = {
    "tailscale.com/cap/drive", "tailscale.com/cap/kubernetes", "tailscale.com/cap/relay",
    "tailscale.com/cap/webui", "tailscale.com/cap/tsidp", NULL
};

static int policy_in(const char *const *list, const char *s)
{
    for (; *list; list++) {
        if (strcmp(*list, s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* "line N: msg" when value is found in the text, else msg. */
static apr_status_t policy_fail(const ts_policy_t *pol, const char **err, const char *value,
                                const char *msg)
{
    int line = value ? ts_hujson_line_of(pol->text, value) : 0;

    *err = line > 0 ? apr_psprintf(pol->pool, "line %d: %s", line, msg) : msg;
    return APR_EINVAL;
}

/* An array of strings (NULL allowed when optional) into an apr array. */
static apr_status_t policy_strings_at(ts_policy_t *pol, json_t *j, const char *what,
                                      const char *at, apr_array_header_t **out,
                                      const char **err)
{
    size_t i;
    json_t *v;

    *out = apr_array_make(pol->pool, 4, sizeof(const char *));
    if (j == NULL || json_is_null(j)) {
        return APR_SUCCESS;
    }
    if (!json_is_array(j)) {
        return policy_fail(pol, err, at, apr_psprintf(pol->pool, "%s must be a list", what));
    }
    json_array_foreach(j, i, v) {
        if (!json_is_string(v)) {
            return policy_fail(pol, err, at,
                               apr_psprintf(pol->pool, "%s must be a list of strings", what));
        }
        APR_ARRAY_PUSH(*out, const char *) = json_string_value(v);
    }
    return APR_SUCCESS;
}

static apr_status_t policy_strings(ts_policy_t *pol, json_t *j, const char *what,
                                   apr_array_header_t **out, const char **err)
{
    return policy_strings_at(pol, j, what, NULL, out, err);
}

static int policy_valid_tag(const char *t)
{
    const char *s = t + 4;

    if (strncmp(t, "tag:", 4) != 0 || !isalpha((unsigned char)*s)) {
        return 0;
    }
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_') {
            return 0;
        }
    }
    return 1;
}

/* Checks that alias names something that can exist: known autogroup, defined group, tag
 * with owners, host, address or prefix, user e-mail. */
apr_status_t ts_pol_check_alias(const ts_policy_t *pol, apr_pool_t *p, const char *alias,
                                const char *where, const char **err)
{
    ts_pol_range_t r;
    int bits;

    if (strcmp(alias, "*") == 0) {
        return APR_SUCCESS;
    }
    if (strncmp(alias, "autogroup:", 10) == 0) {
        if (!policy_in(policy_autogroups, alias + 10)) {
            return policy_fail(pol, err, alias, apr_psprintf(p, "%s=autogroup not found: \"%s\"",
                                                             where, alias));
        }
        return APR_SUCCESS;
    }
    if (strncmp(alias, "tag:", 4) == 0) {
        if (apr_hash_get(pol->tag_owners, alias, APR_HASH_KEY_STRING) == NULL) {
            return policy_fail(pol, err, alias, apr_psprintf(p, "%s=tag not found: \"%s\"",
                                                             where, alias));
        }
        return APR_SUCCESS;
    }
    if (strncmp(alias, "group:", 6) == 0) {
        if (apr_hash_get(pol->groups, alias, APR_HASH_KEY_STRING) == NULL) {
            return policy_fail(pol, err, alias, apr_psprintf(p, "%s=group not found: \"%s\"",
                                                             where, alias));
        }
        return APR_SUCCESS;
    }
    if (strchr(alias, '@') != NULL) {
        return APR_SUCCESS;
    }
    if (apr_hash_get(pol->hosts, alias, APR_HASH_KEY_STRING) != NULL
        || ts_pol_parse_prefix(alias, &r, &bits, 0) == 0) {
        return APR_SUCCESS;
    }
    return policy_fail(pol, err, alias, apr_psprintf(p, "%s=\"%s\": invalid address (not a "
                                                     "host, user, group, tag or prefix)",
                                                     where, alias));
}

static apr_status_t policy_groups(ts_policy_t *pol, json_t *j, const char **err)
{
    const char *k;
    json_t *v;

    json_object_foreach(j, k, v) {
        apr_array_header_t *m;
        int i;
        if (strncmp(k, "group:", 6) != 0 || k[6] == '\0') {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "group name \"%s\" must "
                                                         "start with \"group:\"", k));
        }
        if (policy_strings_at(pol, v, apr_psprintf(pol->pool, "groups[\"%s\"]", k), k, &m,
                              err)) {
            return APR_EINVAL;
        }
        for (i = 0; i < m->nelts; i++) {
            const char *e = APR_ARRAY_IDX(m, i, const char *);
            if (strncmp(e, "group:", 6) == 0) {
                return policy_fail(pol, err, e, apr_psprintf(pol->pool, "groups[\"%s\"]: \"%s\": "
                                   "group members cannot be recursive", k, e));
            }
            if (strchr(e, '@') == NULL) {
                return policy_fail(pol, err, e, apr_psprintf(pol->pool, "groups[\"%s\"]: \"%s\": "
                                   "members must be users (name@domain)", k, e));
            }
        }
        apr_hash_set(pol->groups, k, APR_HASH_KEY_STRING, m);
        apr_hash_set(pol->group_sets, k, APR_HASH_KEY_STRING, apr_hash_make(pol->pool));
        for (i = 0; i < m->nelts; i++) {
            apr_hash_set(apr_hash_get(pol->group_sets, k, APR_HASH_KEY_STRING),
                         APR_ARRAY_IDX(m, i, const char *), APR_HASH_KEY_STRING, "");
        }
    }
    return APR_SUCCESS;
}

static apr_status_t policy_hosts(ts_policy_t *pol, json_t *j, const char **err)
{
    const char *k;
    json_t *v;

    json_object_foreach(j, k, v) {
        ts_pol_addr_t *a = apr_pcalloc(pol->pool, sizeof(*a));
        int bits;
        const char *s = json_string_value(v);
        if (s == NULL || ts_pol_parse_prefix(s, &a->r, &bits, 0) != 0) {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "hosts[\"%s\"]: \"%s\": "
                               "invalid IP address or prefix", k, s ? s : "(not a string)"));
        }
        if (strchr(k, ':') != NULL || strchr(k, '@') != NULL || k[0] == '\0') {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "hosts[\"%s\"]: invalid "
                               "host name", k));
        }
        a->text = ts_pol_range_text(pol->pool, &a->r);
        apr_hash_set(pol->hosts, k, APR_HASH_KEY_STRING, a);
    }
    return APR_SUCCESS;
}

static apr_status_t policy_tag_owners(ts_policy_t *pol, json_t *j, const char **err)
{
    const char *k;
    json_t *v;
    apr_hash_index_t *hi;

    json_object_foreach(j, k, v) {
        apr_array_header_t *m;
        if (!policy_valid_tag(k)) {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "tagOwners[\"%s\"]: tag "
                               "names must start with a letter, after 'tag:'", k));
        }
        if (policy_strings_at(pol, v, apr_psprintf(pol->pool, "tagOwners[\"%s\"]", k), k, &m,
                              err)) {
            return APR_EINVAL;
        }
        apr_hash_set(pol->tag_owners, k, APR_HASH_KEY_STRING, m);
    }
    for (hi = apr_hash_first(pol->pool, pol->tag_owners); hi; hi = apr_hash_next(hi)) {
        apr_array_header_t *m = apr_hash_this_val(hi);
        int i;
        for (i = 0; i < m->nelts; i++) {
            if (ts_pol_check_alias(pol, pol->pool, APR_ARRAY_IDX(m, i, const char *),
                                   "tagOwners", err)) {
                return APR_EINVAL;
            }
        }
    }
    return APR_SUCCESS;
}

static int policy_proto_number(const char *s)
{
    static const struct { const char *n; int v; } names[] = {
        { "tcp", 6 }, { "udp", 17 }, { "icmp", 1 }, { "ipv6-icmp", 58 }, { "icmpv6", 58 },
        { "sctp", 132 }, { "igmp", 2 }, { "gre", 47 }, { "esp", 50 }, { "ah", 51 },
        { "ipv4", 4 }, { "ip-in-ip", 4 }, { "egp", 8 }, { "igp", 9 }, { "tcp6", -1 },
    };
    size_t i;
    int v = 0;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].n) == 0) {
            return names[i].v;
        }
    }
    if (*s == '\0' || strlen(s) > 3) {
        return -1;
    }
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v <= 255 ? v : -1;
}

/* The protocols of an acl's "proto" (one name or number); empty for the default set. */
static apr_status_t policy_protos(ts_policy_t *pol, const char *proto,
                                  apr_array_header_t **out, const char **err)
{
    int v;

    *out = apr_array_make(pol->pool, 2, sizeof(int));
    if (proto == NULL || *proto == '\0') {
        return APR_SUCCESS;
    }
    v = policy_proto_number(proto);
    if (v < 0) {
        return policy_fail(pol, err, proto, apr_psprintf(pol->pool, "proto=\"%s\": unknown "
                                                         "protocol", proto));
    }
    APR_ARRAY_PUSH(*out, int) = v;
    return APR_SUCCESS;
}

/* Sources: aliases that exist; autogroup:self only as a destination. */
static apr_status_t policy_check_src(ts_policy_t *pol, apr_array_header_t *src,
                                     const char **err)
{
    int i;

    for (i = 0; i < src->nelts; i++) {
        const char *a = APR_ARRAY_IDX(src, i, const char *);
        if (strcmp(a, "autogroup:self") == 0) {
            return policy_fail(pol, err, a, "\"autogroup:self\" not valid on the src side of "
                               "a rule");
        }
        if (strcmp(a, "autogroup:internet") == 0) {
            return policy_fail(pol, err, a, "\"autogroup:internet\" not valid on the src side "
                               "of a rule");
        }
        if (ts_pol_check_alias(pol, pol->pool, a, "src", err)) {
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

/* autogroup:self as a destination needs sources that are users: users, groups,
 * autogroup:member (and "*" in acls, which then means the members). */
static apr_status_t policy_check_self(ts_policy_t *pol, const ts_pol_rule_t *r,
                                      const char **err)
{
    int i, self = 0;

    for (i = 0; i < r->dst->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(r->dst, i, ts_pol_dst_t).alias, "autogroup:self") == 0) {
            self = 1;
        }
    }
    for (i = 0; self && i < r->src->nelts; i++) {
        const char *a = APR_ARRAY_IDX(r->src, i, const char *);
        if ((strcmp(a, "*") == 0 && !r->grant) || strcmp(a, "autogroup:member") == 0
            || strncmp(a, "group:", 6) == 0 || strncmp(a, "user:", 5) == 0
            || (strchr(a, '@') != NULL && strncmp(a, "tag:", 4) != 0)) {
            continue;
        }
        return policy_fail(pol, err, a, "autogroup:self can only be used with users, groups, "
                           "or supported autogroups");
    }
    return APR_SUCCESS;
}

static apr_status_t policy_acl(ts_policy_t *pol, json_t *j, const char **err)
{
    ts_pol_rule_t *r = apr_array_push(pol->rules);
    const char *action = json_string_value(json_object_get(j, "action"));
    apr_array_header_t *dst;
    int i;

    memset(r, 0, sizeof(*r));
    if (!json_is_object(j)) {
        return policy_fail(pol, err, NULL, "acls: each rule must be an object");
    }
    if (action == NULL || strcmp(action, "accept") != 0) {
        return policy_fail(pol, err, action, apr_psprintf(pol->pool, "action=\"%s\" is not "
                           "supported", action ? action : ""));
    }
    /* "users" and "ports" are the legacy names of "src" and "dst" */
    if (policy_strings(pol, json_object_get(j, "src") ? json_object_get(j, "src")
                            : json_object_get(j, "users"), "src", &r->src, err)
        || policy_strings(pol, json_object_get(j, "dst") ? json_object_get(j, "dst")
                               : json_object_get(j, "ports"), "dst", &dst, err)
        || policy_protos(pol, json_string_value(json_object_get(j, "proto")), &r->protos,
                         err)
        || policy_check_src(pol, r->src, err)) {
        return APR_EINVAL;
    }
    r->dst = apr_array_make(pol->pool, dst->nelts, sizeof(ts_pol_dst_t));
    for (i = 0; i < dst->nelts; i++) {
        const char *d = APR_ARRAY_IDX(dst, i, const char *), *ports, *perr;
        ts_pol_dst_t *pd = apr_array_push(r->dst);
        pd->alias = ts_pol_split_dst(pol->pool, d, &ports);
        if (ports == NULL) {
            return policy_fail(pol, err, d, apr_psprintf(pol->pool, "dst=\"%s\": missing port "
                                                         "range", d));
        }
        if (ts_pol_parse_ports(pol->pool, ports, &pd->ports, &perr) != 0) {
            return policy_fail(pol, err, d, apr_psprintf(pol->pool, "dst=\"%s\": %s", d, perr));
        }
        if (ts_pol_check_alias(pol, pol->pool, pd->alias, "dst", err)) {
            return APR_EINVAL;
        }
    }
    r->line = ts_hujson_line_of(pol->text, dst->nelts ? APR_ARRAY_IDX(dst, 0, const char *)
                                                      : "acls");
    return policy_check_self(pol, r, err);
}

/* One entry of a grant's "ip": "*", "443", "tcp:443", "udp:53-60", "icmp:*", "47:*". */
static apr_status_t policy_ipspec(ts_policy_t *pol, const char *s, ts_pol_ipspec_t *out,
                                  const char **err)
{
    const char *colon = strchr(s, ':'), *ports = s, *perr;

    out->protos = apr_array_make(pol->pool, 2, sizeof(int));
    if (colon != NULL) {
        const char *proto = apr_pstrndup(pol->pool, s, (size_t)(colon - s));
        apr_array_header_t *pr;
        if (policy_protos(pol, proto, &pr, err)) {
            return APR_EINVAL;
        }
        out->protos = pr;
        ports = colon + 1;
    }
    if (ts_pol_parse_ports(pol->pool, ports, &out->ports, &perr) != 0) {
        return policy_fail(pol, err, s, perr);
    }
    return APR_SUCCESS;
}

static apr_status_t policy_grant_app(ts_policy_t *pol, ts_pol_rule_t *r, const char **err)
{
    const char *k;
    json_t *v;
    int i;

    json_object_foreach(r->app, k, v) {
        const char *slash = strchr(k, '/');
        if (slash == NULL || slash == k || slash[1] == '\0' || strstr(k, "://") != NULL
            || strchr(k, ' ') != NULL) {
            return policy_fail(pol, err, k, "capability name must have the form "
                               "{domain}/{path}");
        }
        if (strncmp(k, "tailscale.com/", 14) == 0 && !policy_in(policy_ts_caps, k)) {
            return policy_fail(pol, err, k, "capability name must not be in the tailscale.com "
                               "domain");
        }
        if (!json_is_array(v)) {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "app[\"%s\"] must be a "
                                                         "list", k));
        }
    }
    for (i = 0; i < r->dst->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(r->dst, i, ts_pol_dst_t).alias, "autogroup:internet") == 0) {
            return policy_fail(pol, err, "autogroup:internet", "cannot use app grants with "
                               "autogroup:internet");
        }
    }
    return APR_SUCCESS;
}

static apr_status_t policy_grant(ts_policy_t *pol, json_t *j, const char **err)
{
    ts_pol_rule_t *r = apr_array_push(pol->rules);
    apr_array_header_t *dst, *ip;
    int i;

    memset(r, 0, sizeof(*r));
    r->grant = 1;
    if (!json_is_object(j)) {
        return policy_fail(pol, err, NULL, "grants: each grant must be an object");
    }
    if (policy_strings(pol, json_object_get(j, "src"), "src", &r->src, err)
        || policy_strings(pol, json_object_get(j, "dst"), "dst", &dst, err)
        || policy_strings(pol, json_object_get(j, "ip"), "ip", &ip, err)
        || policy_strings(pol, json_object_get(j, "via"), "via", &r->via, err)
        || policy_check_src(pol, r->src, err)) {
        return APR_EINVAL;
    }
    r->app = json_object_get(j, "app");
    if (r->app != NULL && (!json_is_object(r->app) || json_object_size(r->app) == 0)) {
        r->app = NULL;
    }
    if (ip->nelts == 0 && r->app == NULL) {
        return policy_fail(pol, err, NULL, "ip and app can not both be empty");
    }
    r->dst = apr_array_make(pol->pool, dst->nelts, sizeof(ts_pol_dst_t));
    for (i = 0; i < dst->nelts; i++) {
        ts_pol_dst_t *pd = apr_array_push(r->dst);
        pd->alias = APR_ARRAY_IDX(dst, i, const char *);
        pd->ports = NULL;
        if (strcmp(pd->alias, "0.0.0.0/0") == 0 || strcmp(pd->alias, "::/0") == 0) {
            return policy_fail(pol, err, pd->alias, apr_psprintf(pol->pool, "dst \"%s\": to "
                               "allow all IP addresses, use \"*\" or \"autogroup:internet\"",
                               pd->alias));
        }
        if (ts_pol_check_alias(pol, pol->pool, pd->alias, "dst", err)) {
            return APR_EINVAL;
        }
    }
    r->ip = apr_array_make(pol->pool, ip->nelts, sizeof(ts_pol_ipspec_t));
    for (i = 0; i < ip->nelts; i++) {
        if (policy_ipspec(pol, APR_ARRAY_IDX(ip, i, const char *), apr_array_push(r->ip), err)) {
            return APR_EINVAL;
        }
    }
    for (i = 0; i < r->via->nelts; i++) {
        const char *t = APR_ARRAY_IDX(r->via, i, const char *);
        if (apr_hash_get(pol->tag_owners, t, APR_HASH_KEY_STRING) == NULL) {
            return policy_fail(pol, err, t, apr_psprintf(pol->pool, "tag \"%s\" not found", t));
        }
    }
    r->line = ts_hujson_line_of(pol->text, dst->nelts ? APR_ARRAY_IDX(dst, 0, const char *)
                                                      : "grants");
    if (r->app != NULL && policy_grant_app(pol, r, err)) {
        return APR_EINVAL;
    }
    return policy_check_self(pol, r, err);
}

static apr_status_t policy_auto_approvers(ts_policy_t *pol, json_t *j, const char **err)
{
    json_t *routes = json_object_get(j, "routes"), *v;
    const char *k;
    int i;

    if (policy_strings(pol, json_object_get(j, "exitNode"), "autoApprovers.exitNode",
                       &pol->auto_exit, err)) {
        return APR_EINVAL;
    }
    json_object_foreach(routes, k, v) {
        ts_pol_autoroute_t *ar = apr_array_push(pol->auto_routes);
        int bits;
        if (ts_pol_parse_prefix(k, &ar->r, &bits, 1) != 0) {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "autoApprovers.routes: "
                               "\"%s\" is not a valid prefix (address/bits, host bits zero)",
                               k));
        }
        ar->text = k;
        if (policy_strings_at(pol, v, apr_psprintf(pol->pool, "autoApprovers.routes[\"%s\"]",
                                                   k), k, &ar->approvers, err)) {
            return APR_EINVAL;
        }
    }
    for (i = 0; i < pol->auto_routes->nelts; i++) {
        apr_array_header_t *a = APR_ARRAY_IDX(pol->auto_routes, i, ts_pol_autoroute_t).approvers;
        int k2;
        for (k2 = 0; k2 < a->nelts; k2++) {
            if (ts_pol_check_alias(pol, pol->pool, APR_ARRAY_IDX(a, k2, const char *),
                                   "autoApprovers", err)) {
                return APR_EINVAL;
            }
        }
    }
    for (i = 0; i < pol->auto_exit->nelts; i++) {
        if (ts_pol_check_alias(pol, pol->pool, APR_ARRAY_IDX(pol->auto_exit, i, const char *),
                               "autoApprovers", err)) {
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

static apr_status_t policy_node_attrs(ts_policy_t *pol, json_t *arr, const char **err)
{
    size_t i;
    json_t *j;

    json_array_foreach(arr, i, j) {
        ts_pol_nodeattr_t *na = apr_array_push(pol->node_attrs);
        int k;
        if (policy_strings(pol, json_object_get(j, "target"), "nodeAttrs.target", &na->target,
                           err)) {
            return APR_EINVAL;
        }
        na->attr = json_object_get(j, "attr");
        na->ip_pool = json_object_get(j, "ipPool");
        for (k = 0; k < na->target->nelts; k++) {
            const char *t = APR_ARRAY_IDX(na->target, k, const char *);
            ts_pol_range_t r;
            int bits;
            if (strchr(t, ':') == NULL && strchr(t, '@') == NULL && strcmp(t, "*") != 0
                && apr_hash_get(pol->hosts, t, APR_HASH_KEY_STRING) == NULL
                && ts_pol_parse_prefix(t, &r, &bits, 0) != 0) {
                return policy_fail(pol, err, t, apr_psprintf(pol->pool, "\"%s\": invalid "
                                                             "address", t));
            }
            if (ts_pol_check_alias(pol, pol->pool, t, "target", err)) {
                return APR_EINVAL;
            }
        }
    }
    return APR_SUCCESS;
}

static apr_status_t policy_sections(ts_policy_t *pol, const char **err)
{
    json_t *root = pol->root, *v;
    size_t i;

    if ((v = json_object_get(root, "groups")) && policy_groups(pol, v, err)) {
        return APR_EINVAL;
    }
    if ((v = json_object_get(root, "hosts")) && policy_hosts(pol, v, err)) {
        return APR_EINVAL;
    }
    if ((v = json_object_get(root, "tagOwners")) && policy_tag_owners(pol, v, err)) {
        return APR_EINVAL;
    }
    json_array_foreach(json_object_get(root, "acls"), i, v) {
        if (policy_acl(pol, v, err)) {
            return APR_EINVAL;
        }
    }
    json_array_foreach(json_object_get(root, "grants"), i, v) {
        if (policy_grant(pol, v, err)) {
            return APR_EINVAL;
        }
    }
    if ((v = json_object_get(root, "ssh")) && ts_pol_parse_ssh(pol, v, err)) {
        return APR_EINVAL;
    }
    if ((v = json_object_get(root, "autoApprovers")) && policy_auto_approvers(pol, v, err)) {
        return APR_EINVAL;
    }
    if ((v = json_object_get(root, "nodeAttrs")) && policy_node_attrs(pol, v, err)) {
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

/* sshTests may not test logins to the internet. */
static apr_status_t policy_ssh_tests(ts_policy_t *pol, const char **err)
{
    json_t *t, *v;
    size_t i, k;

    json_array_foreach(pol->ssh_tests, i, t) {
        json_array_foreach(json_object_get(t, "dst"), k, v) {
            if (json_is_string(v) && strcmp(json_string_value(v), "autogroup:internet") == 0) {
                return policy_fail(pol, err, "autogroup:internet", "SSH tests dst contains "
                                   "disallowed element \"autogroup:internet\"");
            }
        }
    }
    return APR_SUCCESS;
}

static apr_status_t policy_cleanup(void *data)
{
    json_decref(data);
    return APR_SUCCESS;
}

static apr_status_t policy_shape(ts_policy_t *pol, const char **err)
{
    static const char *const objects[] = { "groups", "hosts", "tagOwners", "autoApprovers",
                                           NULL };
    static const char *const arrays[] = { "acls", "grants", "ssh", "nodeAttrs", "tests",
                                          "sshTests", NULL };
    const char *k;
    json_t *v;
    int i;

    if (!json_is_object(pol->root)) {
        return policy_fail(pol, err, NULL, "line 1: the policy must be a JSON object");
    }
    json_object_foreach(pol->root, k, v) {
        if (!policy_in(policy_top_keys, k)) {
            return policy_fail(pol, err, k, apr_psprintf(pol->pool, "unknown field \"%s\"", k));
        }
    }
    for (i = 0; objects[i]; i++) {
        v = json_object_get(pol->root, objects[i]);
        if (v != NULL && !json_is_object(v) && !json_is_null(v)) {
            return policy_fail(pol, err, objects[i], apr_psprintf(pol->pool, "\"%s\" must be an "
                               "object", objects[i]));
        }
    }
    for (i = 0; arrays[i]; i++) {
        v = json_object_get(pol->root, arrays[i]);
        if (v != NULL && !json_is_array(v) && !json_is_null(v)) {
            return policy_fail(pol, err, arrays[i], apr_psprintf(pol->pool, "\"%s\" must be a "
                               "list", arrays[i]));
        }
    }
    return APR_SUCCESS;
}

apr_status_t ts_policy_parse(apr_pool_t *p, const char *text, apr_size_t len,
                             ts_policy_t **out, const char **err)
{
    ts_policy_t *pol = apr_pcalloc(p, sizeof(*pol));
    apr_status_t rv;

    pol->pool = p;
    pol->text = apr_pstrmemdup(p, text, len);
    rv = ts_hujson_parse(p, text, len, &pol->root, err);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_cleanup_register(p, pol->root, policy_cleanup, apr_pool_cleanup_null);
    pol->groups = apr_hash_make(p);
    pol->group_sets = apr_hash_make(p);
    pol->hosts = apr_hash_make(p);
    pol->tag_owners = apr_hash_make(p);
    pol->rules = apr_array_make(p, 8, sizeof(ts_pol_rule_t));
    pol->ssh = apr_array_make(p, 4, sizeof(ts_pol_ssh_t));
    pol->auto_routes = apr_array_make(p, 4, sizeof(ts_pol_autoroute_t));
    pol->auto_exit = apr_array_make(p, 1, sizeof(const char *));
    pol->node_attrs = apr_array_make(p, 2, sizeof(ts_pol_nodeattr_t));
    if (policy_shape(pol, err) || policy_sections(pol, err)) {
        return APR_EINVAL;
    }
    pol->has_filter = json_object_get(pol->root, "acls") != NULL
                      || json_object_get(pol->root, "grants") != NULL;
    pol->tests = json_object_get(pol->root, "tests");
    pol->ssh_tests = json_object_get(pol->root, "sshTests");
    if (policy_ssh_tests(pol, err)) {
        return APR_EINVAL;
    }
    pol->randomize_client_port = json_is_true(json_object_get(pol->root,
                                                              "randomizeClientPort"));
    *out = pol;
    return APR_SUCCESS;
}

int ts_policy_may_tag(const ts_policy_t *pol, const ts_policy_tailnet_t *tn, int user,
                      const char *tag)
{
    apr_array_header_t *owners;
    int k;

    if (pol == NULL || user < 0 || user >= tn->nusers) {
        return 0;
    }
    owners = apr_hash_get(pol->tag_owners, tag, APR_HASH_KEY_STRING);
    for (k = 0; owners != NULL && k < owners->nelts; k++) {
        const char *o = APR_ARRAY_IDX(owners, k, const char *);
        if (strncmp(o, "tag:", 4) != 0 && ts_pol_user_matches(pol, tn, &tn->users[user], o)) {
            return 1;
        }
    }
    return 0;
}
