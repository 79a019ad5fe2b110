/* ts_policy_manage.c: the policy and the store: the tailnet read for compiling, a text
 * checked before it is stored (ts2021ctl policy check|set, PUT /policy), the policy in force
 * for registration, and autoApprovers applied to stored nodes. */
#include "ts_policy_manage.h"
#include "ts_hujson.h"
#include "ts_policy_int.h"
#include "ts_routes.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tailnet from the store ---- */

static const char *const *manage_tags(apr_pool_t *p, const char *tags_json, int *n)
{
    json_t *j = tags_json ? json_loads(tags_json, 0, NULL) : NULL, *v;
    const char **out;
    size_t i;

    *n = 0;
    if (!json_is_array(j) || json_array_size(j) == 0) {
        json_decref(j);
        return NULL;
    }
    out = apr_pcalloc(p, sizeof(char *) * json_array_size(j));
    json_array_foreach(j, i, v) {
        if (json_is_string(v)) out[(*n)++] = apr_pstrdup(p, json_string_value(v));
    }
    json_decref(j);
    return out;
}

/* Users into tn (with their e-mail domains as the tailnet's domains); ids -> index in *idx. */
static apr_status_t manage_users(ts_store_t *st, apr_pool_t *p, ts_policy_tailnet_t *tn,
                                 apr_hash_t **idx, const char **err)
{
    apr_array_header_t *users;
    apr_hash_t *doms = apr_hash_make(p);
    ts_policy_user_t *u;
    const char **domains;
    apr_status_t rv = ts_store_user_list(st, p, &users, err);
    int i, nd = 0;

    if (rv != APR_SUCCESS) return rv;
    *idx = apr_hash_make(p);
    u = apr_pcalloc(p, sizeof(*u) * (apr_size_t)(users->nelts + 1));
    domains = apr_pcalloc(p, sizeof(char *) * (apr_size_t)(users->nelts + 1));
    for (i = 0; i < users->nelts; i++) {
        const ts_user_t *su = APR_ARRAY_IDX(users, i, const ts_user_t *);
        const char *at = su->email ? strchr(su->email, '@') : NULL;

        u[i].id = su->id;
        u[i].name = su->name;
        /* a user without an e-mail is written "name@" in policies (control API 5.1): as
         * its e-mail, group members and direct references both match it */
        u[i].email = su->email && *su->email ? su->email : apr_pstrcat(p, su->name, "@", NULL);
        apr_hash_set(*idx, apr_pmemdup(p, &su->id, sizeof(su->id)), sizeof(su->id),
                     apr_pmemdup(p, &i, sizeof(i)));
        if (at && at[1] && !apr_hash_get(doms, at + 1, APR_HASH_KEY_STRING)) {
            apr_hash_set(doms, at + 1, APR_HASH_KEY_STRING, "");
            domains[nd++] = at + 1;
        }
    }
    tn->users = u;
    tn->nusers = users->nelts;
    tn->domains = domains;
    tn->ndomains = nd;
    return APR_SUCCESS;
}

/* One stored node (and its routes) as the compiler sees it. */
static apr_status_t manage_node(ts_store_t *st, apr_pool_t *p, apr_hash_t *idx,
                                const ts_node_t *sn, ts_policy_node_t *n, const char **err)
{
    apr_array_header_t *routes;
    const char **adv, **appr;
    int *ui = sn->user_id ? apr_hash_get(idx, &sn->user_id, sizeof(sn->user_id)) : NULL;
    apr_status_t rv = ts_store_node_routes_get(st, p, sn->id, &routes, err);
    int k;

    if (rv != APR_SUCCESS) return rv;
    memset(n, 0, sizeof(*n));
    n->id = sn->id;
    n->name = sn->given_name;
    n->tags = manage_tags(p, sn->tags, &n->ntags);
    n->user = n->ntags > 0 || !ui ? -1 : *ui;
    n->ipv4 = sn->ipv4;
    n->ipv6 = sn->ipv6;
    adv = apr_pcalloc(p, sizeof(char *) * (apr_size_t)(routes->nelts + 1));
    appr = apr_pcalloc(p, sizeof(char *) * (apr_size_t)(routes->nelts + 1));
    for (k = 0; k < routes->nelts; k++) {
        const ts_route_t *r = &APR_ARRAY_IDX(routes, k, ts_route_t);
        if (r->advertised) adv[n->nadvertised++] = r->prefix;
        if (r->approved) appr[n->napproved++] = r->prefix;
    }
    n->advertised = adv;
    n->approved = appr;
    n->join_order = sn->id;
    n->online = 1;
    return APR_SUCCESS;
}

apr_status_t ts_policy_tailnet_load(ts_store_t *st, apr_pool_t *p, ts_policy_tailnet_t **out,
                                    const char **err)
{
    ts_policy_tailnet_t *tn = apr_pcalloc(p, sizeof(*tn));
    apr_array_header_t *nodes;
    ts_policy_node_t *n;
    apr_hash_t *idx;
    apr_status_t rv = manage_users(st, p, tn, &idx, err);
    int i;

    if (rv == APR_SUCCESS) rv = ts_store_node_list(st, p, &nodes, err);
    if (rv != APR_SUCCESS) return rv;
    n = apr_pcalloc(p, sizeof(*n) * (apr_size_t)(nodes->nelts + 1));
    for (i = 0; i < nodes->nelts; i++) {
        rv = manage_node(st, p, idx, APR_ARRAY_IDX(nodes, i, const ts_node_t *), &n[i], err);
        if (rv != APR_SUCCESS) return rv;
    }
    tn->nodes = n;
    tn->nnodes = nodes->nelts;
    tn->control_url = "";
    *out = tn;
    return APR_SUCCESS;
}

/* ---- checking a text ---- */

/* "line N: msg" or "line N, column M: msg" into e. */
static void manage_error(apr_pool_t *p, const char *text, ts_policy_error_t *e)
{
    const char *s = text;
    char *end;
    long line = 0, col = 0;

    e->text = text;
    e->line = e->column = 0;
    e->message = text;
    if (strncmp(s, "line ", 5) != 0) return;
    line = strtol(s + 5, &end, 10);
    if (end == s + 5 || line <= 0) return;
    if (!strncmp(end, ", column ", 9)) {
        s = end + 9;
        col = strtol(s, &end, 10);
        if (end == s) return;
    }
    if (strncmp(end, ": ", 2) != 0) return;
    e->line = (int)line;
    e->column = (int)col;
    e->message = apr_pstrdup(p, end + 2);
}

/* Skips a JSON string starting at s[i] == '"'; returns the index after its closing quote. */
static apr_size_t manage_skip_string(const char *s, apr_size_t i, apr_size_t len)
{
    for (i++; i < len && s[i] != '"'; i++) {
        if (s[i] == '\\') i++;
    }
    return i < len ? i + 1 : len;
}

/* The 1-based line where element idx of the top-level array named key starts in a policy
 * text (comments and trailing commas allowed), 0 if there is none: failing tests name it. */
static int manage_element_line(apr_pool_t *p, const char *text, apr_size_t len,
                               const char *key, int idx)
{
    char *s = NULL;
    const char *err = NULL;
    apr_size_t i = 0, klen = strlen(key);
    int depth = 0, in_array = 0, count = -1, expect = 0, line = 1;

    if (ts_hujson_standardize(p, text, len, &s, &err) != APR_SUCCESS) return 0;
    while (i < len) {
        char c = s[i];
        if (c == '\n') line++;
        if (c == '"') {
            apr_size_t end = manage_skip_string(s, i, len), j = end;
            if (in_array && depth == 2 && expect) {
                if (++count == idx) return line;
                expect = 0;
            }
            while (j < len && strchr(" \t\r\n", s[j])) j++;
            if (!in_array && depth == 1 && j < len && s[j] == ':' && end - i - 2 == klen
                && !strncmp(s + i + 1, key, klen)) {
                for (; end < j; end++) line += s[end] == '\n';
                for (j++; j < len && strchr(" \t\r\n", s[j]); j++) {
                    if (s[j] == '\n') line++;
                }
                if (j >= len || s[j] != '[') return 0;
                in_array = 1;
                expect = 1;
                depth = 2;
                i = j + 1;
                continue;
            }
            i = end;
            continue;
        }
        if (in_array && depth == 2 && expect && !strchr(" \t\r\n,]", c)) {
            if (++count == idx) return line;
            expect = 0;
        }
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            depth--;
            if (in_array && depth < 2) return 0;
        }
        else if (c == ',' && in_array && depth == 2) expect = 1;
        i++;
    }
    return 0;
}

/* A failing test names its section and index ("tests[2]: ..."): add the line it is on. */
static const char *manage_test_line(apr_pool_t *p, const char *text, apr_size_t len,
                                    const char *err)
{
    static const char head[] = "test(s) failed: ";
    const char *sec = strncmp(err, head, sizeof(head) - 1) ? NULL : err + sizeof(head) - 1;
    const char *br = sec ? strchr(sec, '[') : NULL;
    int line;

    if (!br || (strncmp(sec, "tests[", 6) && strncmp(sec, "sshTests[", 9))) return err;
    line = manage_element_line(p, text, len, apr_pstrmemdup(p, sec, (apr_size_t)(br - sec)),
                               atoi(br + 1));
    return line > 0 ? apr_psprintf(p, "line %d: %s", line, err) : err;
}

apr_status_t ts_policy_check_text(apr_pool_t *p, const char *text, apr_size_t len,
                                  const ts_policy_tailnet_t *tn, ts_policy_t **pol_out,
                                  ts_policy_error_t *e)
{
    ts_policy_t *pol = NULL;
    ts_policy_result_t *res = NULL;
    const char *err = NULL;
    apr_pool_t *tmp;
    apr_status_t rv;

    memset(e, 0, sizeof(*e));
    if (pol_out) *pol_out = NULL;
    if (!text || len == 0) {
        manage_error(p, "the policy is empty", e);
        return APR_EINVAL;
    }
    rv = ts_policy_parse(p, text, len, &pol, &err);
    if (rv == APR_SUCCESS) {
        /* the compiled result is not kept: its own pool, gone at once */
        apr_pool_create(&tmp, p);
        rv = ts_policy_compile(tmp, pol, tn, &res, &err);
        if (rv != APR_SUCCESS) {
            err = manage_test_line(p, text, len,
                                   apr_pstrdup(p, err ? err : "the policy does not compile"));
        }
        apr_pool_destroy(tmp);
    }
    if (rv != APR_SUCCESS) {
        manage_error(p, apr_pstrdup(p, err ? err : "the policy is not valid"), e);
        return APR_EINVAL;
    }
    if (pol_out) *pol_out = pol;
    return APR_SUCCESS;
}

/* ---- the policy in force ---- */

apr_status_t ts_policy_text_in_force(ts_store_t *st, apr_pool_t *p,
                                     const ts_tailnet_conf_t *conf, const char **text,
                                     const char **err)
{
    ts_store_policy_t *row = NULL;
    apr_status_t rv;

    *text = NULL;
    if (conf && conf->policy_file) {
        *text = conf->policy_text;
        return APR_SUCCESS;
    }
    rv = ts_store_policy_get(st, p, &row, err);
    if (rv == TS_STORE_ENOTFOUND) return APR_SUCCESS;
    if (rv == APR_SUCCESS) *text = row->data;
    return rv;
}

apr_status_t ts_policy_in_force(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                ts_policy_t **pol, const char **err)
{
    const char *text = NULL, *perr = NULL;
    apr_status_t rv = ts_policy_text_in_force(st, p, conf, &text, err);

    *pol = NULL;
    if (rv != APR_SUCCESS || !text) return rv;
    if (ts_policy_parse(p, text, strlen(text), pol, &perr) != APR_SUCCESS) {
        *pol = NULL;
        *err = apr_psprintf(p, "the policy in force does not parse: %s", perr);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

/* ---- autoApprovers on stored nodes ---- */

/* Writes node i's routes when the policy approves more of them; *changed tells. */
static apr_status_t manage_approve(ts_store_t *st, apr_pool_t *p, const ts_policy_t *pol,
                                   const ts_policy_tailnet_t *tn, int i, int *changed,
                                   const char **err)
{
    apr_array_header_t *routes, *next;
    apr_status_t rv = ts_store_node_routes_get(st, p, tn->nodes[i].id, &routes, err);

    *changed = 0;
    if (rv != APR_SUCCESS) return rv;
    next = ts_policy_auto_approve(p, pol, tn, i, routes, changed);
    if (!*changed) return APR_SUCCESS;
    rv = ts_store_node_routes_set(st, p, tn->nodes[i].id, next, err);
    if (rv != APR_SUCCESS) *changed = 0;
    return rv;
}

apr_status_t ts_policy_auto_approve_node(ts_store_t *st, apr_pool_t *p,
                                         const ts_tailnet_conf_t *conf, const ts_node_t *n,
                                         int *changed, const char **err)
{
    ts_policy_tailnet_t tn;
    ts_policy_node_t one;
    ts_policy_t *pol = NULL;
    apr_hash_t *idx;
    apr_pool_t *tmp;
    apr_status_t rv;
    int dummy;

    if (!changed) changed = &dummy;
    *changed = 0;
    apr_pool_create(&tmp, p);
    rv = ts_policy_in_force(st, tmp, conf, &pol, err);
    if (rv == APR_EINVAL || (rv == APR_SUCCESS && !pol)) {
        apr_pool_destroy(tmp);
        return APR_SUCCESS;     /* nothing to approve with */
    }
    memset(&tn, 0, sizeof(tn));
    if (rv == APR_SUCCESS && !pol->auto_routes->nelts && !pol->auto_exit->nelts) {
        apr_pool_destroy(tmp);
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) rv = manage_users(st, tmp, &tn, &idx, err);
    if (rv == APR_SUCCESS) rv = manage_node(st, tmp, idx, n, &one, err);
    if (rv == APR_SUCCESS) {
        tn.nodes = &one;
        tn.nnodes = 1;
        rv = manage_approve(st, tmp, pol, &tn, 0, changed, err);
    }
    if (rv != APR_SUCCESS && err && *err) *err = apr_pstrdup(p, *err);
    apr_pool_destroy(tmp);
    return rv;
}

/* ---- storing ---- */

apr_status_t ts_policy_set(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                           const char *text, apr_size_t len, apr_int64_t *id, int *approved,
                           ts_policy_error_t *e, const char **err)
{
    ts_policy_tailnet_t *tn = NULL;
    ts_policy_t *pol = NULL;
    apr_status_t rv;
    int i, changed;

    memset(e, 0, sizeof(*e));
    *approved = 0;
    *id = 0;
    if (conf && conf->policy_file) {
        *err = apr_psprintf(p, "this tailnet reads its policy from TS2021PolicyFile %s: a "
                            "policy stored in the database would not be in force; edit "
                            "that file and reload Apache instead", conf->policy_file);
        return TS_STORE_ECONFLICT;
    }
    rv = ts_policy_tailnet_load(st, p, &tn, err);
    if (rv != APR_SUCCESS) return rv;
    rv = ts_policy_check_text(p, text, len, tn, &pol, e);
    if (rv != APR_SUCCESS) {
        *err = e->text;
        return rv;
    }
    rv = ts_store_policy_set(st, p, apr_pstrmemdup(p, text, len), id, err);
    if (rv != APR_SUCCESS) return rv;
    /* the policy is in force from here on: approvals that fail now are made again the
     * next time the node's routes change, so a failure is reported, not undone */
    for (i = 0; i < tn->nnodes; i++) {
        if (tn->nodes[i].nadvertised == 0) continue;
        rv = manage_approve(st, p, pol, tn, i, &changed, err);
        if (rv != APR_SUCCESS) return rv;
        *approved += changed;
    }
    return APR_SUCCESS;
}

/* ---- registration ---- */

apr_array_header_t *ts_policy_tag_list(apr_pool_t *p, const char *tags_json)
{
    apr_array_header_t *out = apr_array_make(p, 2, sizeof(const char *));
    const char *const *t;
    int n = 0, k;

    t = manage_tags(p, tags_json, &n);
    for (k = 0; k < n; k++) APR_ARRAY_PUSH(out, const char *) = t[k];
    return out;
}

static int manage_has(const apr_array_header_t *list, const char *s)
{
    int k;

    for (k = 0; k < list->nelts; k++) {
        if (!strcmp(APR_ARRAY_IDX(list, k, const char *), s)) return 1;
    }
    return 0;
}

apr_status_t ts_policy_registration_tags(ts_store_t *st, apr_pool_t *p,
                                         const ts_tailnet_conf_t *conf, apr_int64_t user_id,
                                         const char *node_tags, const char *key_tags,
                                         const apr_array_header_t *requested,
                                         const char **why, const char **err)
{
    apr_array_header_t *ktags = ts_policy_tag_list(p, key_tags);
    ts_policy_tailnet_t tn;
    ts_policy_t *pol = NULL;
    apr_hash_t *idx;
    const char *perr = NULL, *extra = NULL;
    apr_status_t rv;
    int k, *ui;

    *why = NULL;
    if ((!requested || !requested->nelts) && !ktags->nelts) return APR_SUCCESS;
    rv = ts_policy_in_force(st, p, conf, &pol, &perr);
    if (rv == APR_EINVAL) {
        *why = apr_pstrcat(p, "tags cannot be checked: ", perr, NULL);
        return APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        *err = perr;
        return rv;
    }
    if (ktags->nelts) {
        if ((*why = ts_policy_key_tags_refusal(p, pol, ktags)) != NULL) return APR_SUCCESS;
        for (k = 0; requested && k < requested->nelts; k++) {
            const char *t = APR_ARRAY_IDX(requested, k, const char *);
            if (!manage_has(ktags, t)) extra = extra ? apr_pstrcat(p, extra, ", ", t, NULL) : t;
        }
        if (extra) {
            *why = apr_pstrcat(p, "requested tags refused: not among the pre-auth key's tags: ",
                               extra, NULL);
        }
        return APR_SUCCESS;
    }
    memset(&tn, 0, sizeof(tn));
    rv = manage_users(st, p, &tn, &idx, err);
    if (rv != APR_SUCCESS) return rv;
    ui = user_id ? apr_hash_get(idx, &user_id, sizeof(user_id)) : NULL;
    *why = ts_policy_tags_refusal(p, pol, &tn, ui ? *ui : -1, ts_policy_tag_list(p, node_tags),
                                  requested);
    return APR_SUCCESS;
}
