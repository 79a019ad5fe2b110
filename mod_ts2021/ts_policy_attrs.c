/* ts_policy_attrs.c: nodeAttrs (and the top-level randomizeClientPort) compiled into each
 * node's own CapMap; "disable-ipv4" also takes the node's IPv4 address out of the map. */
#include "ts_policy_int.h"

#include <string.h>

/* Attributes the control plane expands into several capabilities. */
static const char *const attrs_funnel[] = {
    "funnel", "https://tailscale.com/cap/funnel-ports?ports=443,8443,10000",
    "https://tailscale.com/cap/warn-funnel-no-https", NULL
};

/* Attributes that describe tailnet state rather than a node setting: not from policy. */
static const char *const attrs_ignored[] = {
    "https://tailscale.com/cap/is-admin", "https://tailscale.com/cap/is-owner", NULL
};

static int attrs_in(const char *const *list, const char *s)
{
    for (; *list; list++) {
        if (strcmp(*list, s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Targets are identities (users, groups, tags, autogroups) or addresses (hosts, prefixes). */
static int attrs_target(ts_policy_result_t *r, int i, const char *t)
{
    const ts_pol_addr_t *h;
    ts_pol_range_t rg;
    apr_array_header_t *a = r->nodes[i].addrs;
    int bits, k;

    if (strchr(t, ':') != NULL || strchr(t, '@') != NULL || strcmp(t, "*") == 0) {
        if (strncmp(t, "autogroup:", 10) == 0 || strncmp(t, "tag:", 4) == 0
            || strncmp(t, "group:", 6) == 0 || strchr(t, '@') != NULL || strcmp(t, "*") == 0) {
            return ts_pol_node_matches(r, i, t);
        }
    }
    h = r->pol ? apr_hash_get(r->pol->hosts, t, APR_HASH_KEY_STRING) : NULL;
    if (h != NULL) {
        rg = h->r;
    }
    else if (ts_pol_parse_prefix(t, &rg, &bits, 0) != 0) {
        return 0;
    }
    for (k = 0; k < a->nelts; k++) {
        if (ts_pol_contains(&rg, &APR_ARRAY_IDX(a, k, ts_pol_addr_t).r)) {
            return 1;
        }
    }
    return 0;
}

static void attrs_set(json_t *cm, const char *attr)
{
    int k;

    if (attrs_in(attrs_ignored, attr)) {
        return;
    }
    if (strcmp(attr, "funnel") == 0) {
        for (k = 0; attrs_funnel[k]; k++) {
            json_object_set_new(cm, attrs_funnel[k], json_null());
        }
        return;
    }
    json_object_set_new(cm, attr, json_null());
}

static void attrs_node(ts_policy_result_t *r, int i)
{
    const ts_policy_t *pol = r->pol;
    json_t *cm = json_object(), *v;
    int k, t;
    size_t m;

    if (pol->randomize_client_port) {
        attrs_set(cm, "randomize-client-port");
    }
    for (k = 0; k < pol->node_attrs->nelts; k++) {
        const ts_pol_nodeattr_t *na = &APR_ARRAY_IDX(pol->node_attrs, k, ts_pol_nodeattr_t);
        int hit = 0;
        for (t = 0; t < na->target->nelts && !hit; t++) {
            hit = attrs_target(r, i, APR_ARRAY_IDX(na->target, t, const char *));
        }
        if (!hit) {
            continue;
        }
        json_array_foreach(na->attr, m, v) {
            if (json_is_string(v)) {
                attrs_set(cm, json_string_value(v));
            }
        }
    }
    if (json_object_get(cm, "disable-ipv4") != NULL) {
        apr_array_header_t *a = r->nodes[i].addrs, *keep;
        keep = apr_array_make(r->pool, a->nelts, sizeof(ts_pol_addr_t));
        for (t = 0; t < a->nelts; t++) {
            if (APR_ARRAY_IDX(a, t, ts_pol_addr_t).r.fam != 4) {
                *(ts_pol_addr_t *)apr_array_push(keep) = APR_ARRAY_IDX(a, t, ts_pol_addr_t);
            }
        }
        r->nodes[i].addrs = keep;
    }
    r->nodes[i].capmap = cm;
}

apr_status_t ts_pol_attrs(ts_policy_result_t *r, const char **err)
{
    int i;

    (void)err;
    for (i = 0; i < r->n; i++) {
        if (r->pol == NULL) {
            r->nodes[i].capmap = json_object();
        }
        else {
            attrs_node(r, i);
        }
    }
    return APR_SUCCESS;
}
