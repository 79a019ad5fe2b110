/* ts_policy_routes.c: which advertised routes are approved (by an admin or the policy's
 * autoApprovers), exit nodes, and the primary router of each subnet (oldest online). */
#include "ts_policy_int.h"

#include <string.h>

static int routes_is_exit(const ts_pol_range_t *r)
{
    return r->lo == 0 && ((r->fam == 4 && r->hi == 0xffffffffu) || (r->fam == 6 && r->hi == ~(ts_u128)0));
}

/* Whether node i is named by one of the approvers (tags, users, groups, autogroups). */
static int routes_approver(ts_policy_result_t *r, int i, apr_array_header_t *approvers)
{
    int k;

    for (k = 0; k < approvers->nelts; k++) {
        if (ts_pol_node_matches(r, i, APR_ARRAY_IDX(approvers, k, const char *))) {
            return 1;
        }
    }
    return 0;
}

static int routes_auto_approved(ts_policy_result_t *r, int i, const ts_pol_range_t *rt)
{
    const ts_policy_t *pol = r->pol;
    int k;

    if (pol == NULL) {
        return 0;
    }
    if (routes_is_exit(rt)) {
        return routes_approver(r, i, pol->auto_exit);
    }
    for (k = 0; k < pol->auto_routes->nelts; k++) {
        const ts_pol_autoroute_t *a = &APR_ARRAY_IDX(pol->auto_routes, k, ts_pol_autoroute_t);
        if (ts_pol_contains(&a->r, rt) && routes_approver(r, i, a->approvers)) {
            return 1;
        }
    }
    return 0;
}

static int routes_manual(const ts_policy_node_t *n, const ts_pol_range_t *rt)
{
    int k, bits;

    for (k = 0; k < n->napproved; k++) {
        ts_pol_range_t a;
        if (ts_pol_parse_prefix(n->approved[k], &a, &bits, 0) == 0 && a.fam == rt->fam
            && a.lo == rt->lo && a.hi == rt->hi) {
            return 1;
        }
    }
    return 0;
}

static void routes_add_unique(apr_array_header_t *a, const ts_pol_addr_t *x)
{
    int k;

    for (k = 0; k < a->nelts; k++) {
        ts_pol_addr_t *y = &APR_ARRAY_IDX(a, k, ts_pol_addr_t);
        if (y->r.fam == x->r.fam && y->r.lo == x->r.lo && y->r.hi == x->r.hi) {
            return;
        }
    }
    *(ts_pol_addr_t *)apr_array_push(a) = *x;
}

/* Approved = advertised and (approved by an admin or auto-approved). */
static apr_status_t routes_node(ts_policy_result_t *r, int i, const char **err)
{
    const ts_policy_node_t *n = &r->tn->nodes[i];
    ts_pol_node_t *pn = &r->nodes[i];
    int k, bits;

    for (k = 0; k < n->nadvertised; k++) {
        ts_pol_addr_t a;
        if (ts_pol_parse_prefix(n->advertised[k], &a.r, &bits, 1) != 0) {
            *err = apr_psprintf(r->pool, "node %s: advertised route \"%s\" is not a prefix",
                                n->name, n->advertised[k]);
            return APR_EINVAL;
        }
        if (!routes_manual(n, &a.r) && !routes_auto_approved(r, i, &a.r)) {
            continue;
        }
        a.text = ts_pol_range_text(r->pool, &a.r);
        if (routes_is_exit(&a.r)) {
            pn->exit = 1;
            continue;
        }
        routes_add_unique(pn->routes, &a);
        routes_add_unique(r->all_routes, &a);
    }
    return APR_SUCCESS;
}

/* The primary router of each subnet: the oldest online node approved for it. */
static void routes_primaries(ts_policy_result_t *r)
{
    int k, i, m;

    for (k = 0; k < r->all_routes->nelts; k++) {
        const ts_pol_addr_t *rt = &APR_ARRAY_IDX(r->all_routes, k, ts_pol_addr_t);
        int best = -1;
        for (i = 0; i < r->n; i++) {
            const ts_policy_node_t *n = &r->tn->nodes[i];
            apr_array_header_t *nr = r->nodes[i].routes;
            if (!n->online) {
                continue;
            }
            for (m = 0; m < nr->nelts; m++) {
                const ts_pol_addr_t *x = &APR_ARRAY_IDX(nr, m, ts_pol_addr_t);
                if (x->r.fam == rt->r.fam && x->r.lo == rt->r.lo && x->r.hi == rt->r.hi) {
                    if (best < 0 || n->join_order < r->tn->nodes[best].join_order) {
                        best = i;
                    }
                }
            }
        }
        if (best >= 0) {
            *(ts_pol_addr_t *)apr_array_push(r->nodes[best].primary) = *rt;
        }
    }
}

apr_status_t ts_pol_routes(ts_policy_result_t *r, const char **err)
{
    int i;

    for (i = 0; i < r->n; i++) {
        r->nodes[i].routes = apr_array_make(r->pool, 1, sizeof(ts_pol_addr_t));
        r->nodes[i].primary = apr_array_make(r->pool, 1, sizeof(ts_pol_addr_t));
        if (routes_node(r, i, err)) {
            return APR_EINVAL;
        }
    }
    routes_primaries(r);
    return APR_SUCCESS;
}
