/* ts_policy_decide.c: decisions the policy makes outside map building: which advertised
 * routes autoApprovers approve for a node, and whether a registering node may have the
 * tags it asks for or its pre-auth key gives it (tagOwners). */
#include "ts_policy_manage.h"
#include "ts_policy_int.h"
#include "ts_routes.h"

#include <string.h>

/* ---- autoApprovers ---- */

/* A one-node view of the tailnet, enough for ts_pol_node_matches on that node. */
static void decide_view(apr_pool_t *p, const ts_policy_t *pol, const ts_policy_tailnet_t *tn,
                        int node, ts_policy_result_t *r)
{
    const ts_policy_node_t *n = &tn->nodes[node];
    int k;

    memset(r, 0, sizeof(*r));
    r->pool = p;
    r->pol = pol;
    r->tn = tn;
    r->n = tn->nnodes;
    r->nodes = apr_pcalloc(p, sizeof(*r->nodes) * (apr_size_t)(tn->nnodes > 0 ? tn->nnodes : 1));
    r->nodes[node].taglist = apr_array_make(p, n->ntags > 0 ? n->ntags : 1, sizeof(char *));
    for (k = 0; k < n->ntags; k++) {
        APR_ARRAY_PUSH(r->nodes[node].taglist, const char *) = n->tags[k];
    }
}

static int decide_named(const ts_policy_result_t *r, int node, const apr_array_header_t *who)
{
    int k;

    for (k = 0; who && k < who->nelts; k++) {
        if (ts_pol_node_matches(r, node, APR_ARRAY_IDX(who, k, const char *))) return 1;
    }
    return 0;
}

/* Whether the policy approves prefix (canonical, not an exit route) for the node. */
static int decide_route(const ts_policy_result_t *r, int node, const char *prefix)
{
    ts_pol_range_t rt;
    int k, bits;

    if (ts_pol_parse_prefix(prefix, &rt, &bits, 1) != 0) return 0;
    for (k = 0; k < r->pol->auto_routes->nelts; k++) {
        const ts_pol_autoroute_t *a = &APR_ARRAY_IDX(r->pol->auto_routes, k,
                                                     ts_pol_autoroute_t);
        if (ts_pol_contains(&a->r, &rt) && decide_named(r, node, a->approvers)) return 1;
    }
    return 0;
}

apr_array_header_t *ts_policy_auto_approve(apr_pool_t *p, const ts_policy_t *pol,
                                           const ts_policy_tailnet_t *tn, int node,
                                           const apr_array_header_t *routes, int *changed)
{
    apr_array_header_t *approve = apr_array_make(p, 2, sizeof(const char *));
    ts_policy_result_t view;
    int k, exit_done = 0;

    *changed = 0;
    if (!pol || node < 0 || node >= tn->nnodes) return (apr_array_header_t *)routes;
    decide_view(p, pol, tn, node, &view);
    for (k = 0; k < routes->nelts; k++) {
        const ts_route_t *rt = &APR_ARRAY_IDX(routes, k, ts_route_t);

        if (!rt->advertised || rt->approved) continue;
        if (ts_routes_is_exit(rt->prefix)) {
            /* one approval covers both families (ts_routes_set_approved) */
            if (!exit_done && decide_named(&view, node, pol->auto_exit)) {
                APR_ARRAY_PUSH(approve, const char *) = rt->prefix;
                exit_done = 1;
            }
        }
        else if (decide_route(&view, node, rt->prefix)) {
            APR_ARRAY_PUSH(approve, const char *) = rt->prefix;
        }
    }
    if (approve->nelts == 0) return (apr_array_header_t *)routes;
    return ts_routes_set_approved(p, routes, approve, 1, changed);
}

/* ---- tags ---- */

static int decide_has(const apr_array_header_t *list, const char *s)
{
    int k;

    for (k = 0; list && k < list->nelts; k++) {
        if (!strcmp(APR_ARRAY_IDX(list, k, const char *), s)) return 1;
    }
    return 0;
}

/* 1 if tag is "tag:" + a letter + letters, digits and dashes. */
static int decide_tag_valid(const char *tag)
{
    static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
    char c;

    if (!tag || strncmp(tag, "tag:", 4) != 0 || strlen(tag) > 255) return 0;
    c = tag[4];
    return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
           && strspn(tag + 5, rest) == strlen(tag + 5);
}

/* How a refusal names a user: the e-mail, or the name when the e-mail is only "name@". */
static const char *decide_who(const ts_policy_user_t *u)
{
    size_t n = strlen(u->email);

    return n > 0 && u->email[n - 1] != '@' ? u->email : u->name;
}

static const char *decide_join(apr_pool_t *p, const char *acc, const char *item)
{
    return acc ? apr_pstrcat(p, acc, "; ", item, NULL) : item;
}

const char *ts_policy_tags_refusal(apr_pool_t *p, const ts_policy_t *pol,
                                   const ts_policy_tailnet_t *tn, int user,
                                   const apr_array_header_t *owner_tags,
                                   const apr_array_header_t *requested)
{
    const char *why = NULL, *who;
    int k, o;

    who = user >= 0 && user < tn->nusers ? decide_who(&tn->users[user]) : NULL;
    for (k = 0; requested && k < requested->nelts; k++) {
        const char *tag = APR_ARRAY_IDX(requested, k, const char *);
        apr_array_header_t *owners;
        int ok = 0;

        if (!decide_tag_valid(tag)) {
            why = decide_join(p, why, apr_psprintf(p, "\"%s\" is not a tag (tag:name)", tag));
            continue;
        }
        if (!pol || !(owners = apr_hash_get(pol->tag_owners, tag, APR_HASH_KEY_STRING))) {
            why = decide_join(p, why, apr_psprintf(p, "%s is not in the policy's tagOwners",
                                                   tag));
            continue;
        }
        ok = user >= 0 && ts_policy_may_tag(pol, tn, user, tag);
        for (o = 0; !ok && o < owners->nelts; o++) {
            const char *owner = APR_ARRAY_IDX(owners, o, const char *);
            ok = !strncmp(owner, "tag:", 4) && decide_has(owner_tags, owner);
        }
        if (!ok) {
            why = decide_join(p, why, who ? apr_psprintf(p, "%s may not apply %s (tagOwners)",
                                                         who, tag)
                                          : apr_psprintf(p, "nobody here may apply %s "
                                                         "(tagOwners)", tag));
        }
    }
    return why ? apr_pstrcat(p, "requested tags refused: ", why, NULL) : NULL;
}

const char *ts_policy_key_tags_refusal(apr_pool_t *p, const ts_policy_t *pol,
                                       const apr_array_header_t *tags)
{
    const char *why = NULL;
    int k;

    if (!pol || !json_object_get(pol->root, "tagOwners")) return NULL;
    for (k = 0; tags && k < tags->nelts; k++) {
        const char *tag = APR_ARRAY_IDX(tags, k, const char *);
        if (!apr_hash_get(pol->tag_owners, tag, APR_HASH_KEY_STRING)) {
            why = decide_join(p, why, tag);
        }
    }
    return why ? apr_pstrcat(p, "the pre-auth key's tags are not in the policy's tagOwners: ",
                             why, NULL) : NULL;
}
