/* ts_policy_ssh.c: the policy's "ssh" section: parsed and validated, then compiled into
 * each destination node's SSHPolicy rules (check rules first, then accept rules). */
#include "ts_policy_int.h"
#include "ts_hujson.h"

#include <ctype.h>
#include <string.h>

#define SSH_CHECK_MAX (168L * 3600)

static apr_status_t ssh_fail(ts_policy_t *pol, const char **err, const char *value,
                             const char *msg)
{
    int line = value ? ts_hujson_line_of(pol->text, value) : 0;

    *err = line > 0 ? apr_psprintf(pol->pool, "line %d: %s", line, msg) : msg;
    return APR_EINVAL;
}

static const char *ssh_trim(apr_pool_t *p, const char *s)
{
    const char *e;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        e--;
    }
    return apr_pstrndup(p, s, (size_t)(e - s));
}

/* Go-style duration ("90s", "1h30m", "0s"); -1 on error. */
apr_status_t ts_pol_parse_duration(const char *s, long *secs)
{
    double total = 0;

    if (*s == '\0') {
        return APR_EINVAL;
    }
    if (strcmp(s, "0") == 0) {
        *secs = 0;
        return APR_SUCCESS;
    }
    while (*s) {
        double v = 0, scale = 1;
        int digits = 0;
        while (isdigit((unsigned char)*s) || *s == '.') {
            if (*s == '.') {
                scale = scale == 1 ? 0.1 : scale;
            }
            else if (scale < 1) {
                v += (*s - '0') * scale;
                scale /= 10;
            }
            else {
                v = v * 10 + (*s - '0');
            }
            digits++;
            s++;
        }
        if (digits == 0) {
            return APR_EINVAL;
        }
        if (s[0] == 'h') {
            total += v * 3600;
            s++;
        }
        else if (s[0] == 'm' && s[1] == 's') {
            total += v / 1000;
            s += 2;
        }
        else if (s[0] == 'm') {
            total += v * 60;
            s++;
        }
        else if (s[0] == 's') {
            total += v;
            s++;
        }
        else {
            return APR_EINVAL;
        }
    }
    *secs = (long)(total + 0.999999);
    return APR_SUCCESS;
}

static const char *ssh_duration_text(apr_pool_t *p, long s)
{
    return apr_psprintf(p, "%ldh%ldm%lds", s / 3600, (s / 60) % 60, s % 60);
}

static apr_status_t ssh_strings(ts_policy_t *pol, json_t *j, apr_array_header_t **out)
{
    size_t i;
    json_t *v;

    *out = apr_array_make(pol->pool, 4, sizeof(const char *));
    json_array_foreach(j, i, v) {
        if (!json_is_string(v)) {
            return APR_EINVAL;
        }
        APR_ARRAY_PUSH(*out, const char *) = ssh_trim(pol->pool, json_string_value(v));
    }
    return APR_SUCCESS;
}

static apr_status_t ssh_check_users(ts_policy_t *pol, ts_pol_ssh_t *s, json_t *j,
                                    const char **err)
{
    int i;

    if (!json_is_array(j) || json_array_size(j) == 0) {
        return ssh_fail(pol, err, NULL, "users must be specified");
    }
    if (ssh_strings(pol, j, &s->users)) {
        return ssh_fail(pol, err, NULL, "users must be a list of strings");
    }
    for (i = 0; i < s->users->nelts; i++) {
        const char *u = APR_ARRAY_IDX(s->users, i, const char *);
        if (*u == '\0' || strcmp(u, "*") == 0) {
            return ssh_fail(pol, err, NULL, apr_psprintf(pol->pool, "user \"%s\" is not valid",
                                                         u));
        }
    }
    return APR_SUCCESS;
}

static apr_status_t ssh_check_dst(ts_policy_t *pol, ts_pol_ssh_t *s, const char **err)
{
    int i;

    for (i = 0; i < s->dst->nelts; i++) {
        const char *d = APR_ARRAY_IDX(s->dst, i, const char *);
        if (strncmp(d, "tag:", 4) == 0 || strcmp(d, "autogroup:self") == 0
            || strcmp(d, "autogroup:member") == 0 || strcmp(d, "autogroup:tagged") == 0
            || strncmp(d, "group:", 6) == 0 || (strchr(d, '@') && strncmp(d, "user:", 5))) {
            if (ts_pol_check_alias(pol, pol->pool, d, "dst", err)) {
                return APR_EINVAL;
            }
            continue;
        }
        return ssh_fail(pol, err, d, apr_psprintf(pol->pool, "invalid dst \"%s\"", d));
    }
    for (i = 0; i < s->src->nelts; i++) {
        const char *a = APR_ARRAY_IDX(s->src, i, const char *);
        if (strcmp(a, "autogroup:self") == 0 || strcmp(a, "autogroup:internet") == 0) {
            return ssh_fail(pol, err, a, apr_psprintf(pol->pool, "\"%s\" not valid on the src "
                                                      "side of a rule", a));
        }
        if (ts_pol_check_alias(pol, pol->pool, a, "src", err)) {
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

static apr_status_t ssh_rule(ts_policy_t *pol, json_t *j, const char **err)
{
    ts_pol_ssh_t *s = apr_array_push(pol->ssh);
    const char *action = json_string_value(json_object_get(j, "action"));
    const char *period = json_string_value(json_object_get(j, "checkPeriod"));

    memset(s, 0, sizeof(*s));
    if (action == NULL || *action == '\0') {
        return ssh_fail(pol, err, NULL, "action must be specified");
    }
    action = ssh_trim(pol->pool, action);
    if (strcmp(action, "accept") != 0 && strcmp(action, "check") != 0) {
        return ssh_fail(pol, err, action, apr_psprintf(pol->pool, "\"%s\" is not a valid action",
                                                       json_string_value(json_object_get(j,
                                                       "action"))));
    }
    s->check = strcmp(action, "check") == 0;
    if (ssh_strings(pol, json_object_get(j, "src"), &s->src)
        || ssh_strings(pol, json_object_get(j, "dst"), &s->dst)) {
        return ssh_fail(pol, err, NULL, "ssh: src and dst must be lists of strings");
    }
    if (ssh_check_users(pol, s, json_object_get(j, "users"), err)
        || ssh_check_dst(pol, s, err)) {
        return APR_EINVAL;
    }
    if (period != NULL && strcmp(period, "always") != 0) {
        if (ts_pol_parse_duration(period, &s->check_period) != APR_SUCCESS) {
            return ssh_fail(pol, err, period, apr_psprintf(pol->pool, "time: invalid duration "
                                                           "\"%s\"", period));
        }
        if (s->check_period > SSH_CHECK_MAX) {
            return ssh_fail(pol, err, period, apr_psprintf(pol->pool, "checkPeriod %s is above "
                            "the max (168h)", ssh_duration_text(pol->pool, s->check_period)));
        }
    }
    else if (period != NULL) {
        s->check_period = -1;
    }
    s->accept_env = json_object_get(j, "acceptEnv");
    s->line = ts_hujson_line_of(pol->text, action);
    return APR_SUCCESS;
}

apr_status_t ts_pol_parse_ssh(ts_policy_t *pol, json_t *arr, const char **err)
{
    size_t i;
    json_t *j;

    json_array_foreach(arr, i, j) {
        if (!json_is_object(j)) {
            return ssh_fail(pol, err, NULL, "ssh: each rule must be an object");
        }
        if (ssh_rule(pol, j, err)) {
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

/* ---- compilation ---- */

/* Per ssh rule, computed once per compilation: which nodes are sources, and the
 * principals lists shared by every destination (all sources; one user's sources). */
typedef struct {
    unsigned char *src;
    json_t *all;
    json_t **user;
} ssh_cache_t;

static ssh_cache_t *ssh_cache(const ts_policy_result_t *r, const ts_pol_ssh_t *s)
{
    return &((ssh_cache_t *)r->ssh_cache)[s - &APR_ARRAY_IDX(r->pol->ssh, 0, ts_pol_ssh_t)];
}

static int ssh_src_node(ts_policy_result_t *r, const ts_pol_ssh_t *s, int i)
{
    return ssh_cache(r, s)->src[i];
}

static void ssh_principals(ts_policy_result_t *r, json_t *pr, int i);

/* Principals of every source (user < 0), or of user's untagged sources. */
static json_t *ssh_shared_principals(ts_policy_result_t *r, const ts_pol_ssh_t *s, int user)
{
    ssh_cache_t *c = ssh_cache(r, s);
    json_t **slot = user < 0 ? &c->all : &c->user[user];
    int i;

    if (*slot == NULL) {
        *slot = json_array();
        for (i = 0; i < r->n; i++) {
            if (c->src[i] && (user < 0 || (r->nodes[i].taglist->nelts == 0
                                           && r->tn->nodes[i].user == user))) {
                ssh_principals(r, *slot, i);
            }
        }
    }
    return *slot;
}

static void ssh_cache_build(ts_policy_result_t *r)
{
    const ts_policy_t *pol = r->pol;
    ssh_cache_t *cache = apr_pcalloc(r->pool, sizeof(ssh_cache_t) * (size_t)(pol->ssh->nelts + 1));
    int k, i, a;

    for (k = 0; k < pol->ssh->nelts; k++) {
        const ts_pol_ssh_t *s = &APR_ARRAY_IDX(pol->ssh, k, ts_pol_ssh_t);
        cache[k].src = apr_pcalloc(r->pool, (apr_size_t)r->n + 1);
        cache[k].user = apr_pcalloc(r->pool, sizeof(json_t *) * (size_t)(r->tn->nusers + 1));
        for (i = 0; i < r->n; i++) {
            for (a = 0; a < s->src->nelts && !cache[k].src[i]; a++) {
                cache[k].src[i] = (unsigned char)ts_pol_node_matches(r, i,
                                                   APR_ARRAY_IDX(s->src, a, const char *));
            }
        }
    }
    r->ssh_cache = cache;
}

static void ssh_cache_free(ts_policy_result_t *r)
{
    ssh_cache_t *cache = r->ssh_cache;
    int k, u;

    for (k = 0; cache != NULL && k < r->pol->ssh->nelts; k++) {
        json_decref(cache[k].all);
        for (u = 0; u < r->tn->nusers; u++) {
            json_decref(cache[k].user[u]);
        }
    }
    r->ssh_cache = NULL;
}

/* Whether rule s applies to destination d; *self set when only through autogroup:self. */
static int ssh_dst_node(ts_policy_result_t *r, const ts_pol_ssh_t *s, int d, int *self)
{
    int k, hit = 0;

    *self = 0;
    for (k = 0; k < s->dst->nelts; k++) {
        const char *a = APR_ARRAY_IDX(s->dst, k, const char *);
        if (strcmp(a, "autogroup:self") == 0) {
            if (r->nodes[d].taglist->nelts == 0 && r->tn->nodes[d].user >= 0) {
                *self = 1;
            }
        }
        else if (ts_pol_node_matches(r, d, a)) {
            hit = 1;
        }
    }
    if (hit) {
        *self = 0;
        return 1;
    }
    return *self;
}

static json_t *ssh_action(const ts_policy_result_t *r, const ts_pol_ssh_t *s)
{
    if (s->check) {
        const char *base = r->tn->control_url ? r->tn->control_url : "";
        return json_pack("{s:s+}", "holdAndDelegate", base,
                         "/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID"
                         "?local_user=$LOCAL_USER");
    }
    return json_pack("{s:b,s:b,s:b,s:b}", "accept", 1, "allowAgentForwarding", 1,
                     "allowLocalPortForwarding", 1, "allowRemotePortForwarding", 1);
}

/* The sshUsers map without localpart entries; *localpart gets the localpart domain. */
static json_t *ssh_users(const ts_pol_ssh_t *s, const char **localpart)
{
    json_t *m = json_object();
    int k;

    *localpart = NULL;
    for (k = 0; k < s->users->nelts; k++) {
        const char *u = APR_ARRAY_IDX(s->users, k, const char *);
        if (strncmp(u, "localpart:*@", 12) == 0) {
            *localpart = u + 12;
        }
        else if (strcmp(u, "autogroup:nonroot") == 0) {
            json_object_set_new(m, "*", json_string("="));
        }
        else {
            json_object_set_new(m, u, json_string(u));
        }
    }
    if (json_object_get(m, "root") == NULL) {
        json_object_set_new(m, "root", json_string(""));
    }
    return m;
}

static void ssh_principals(ts_policy_result_t *r, json_t *pr, int i)
{
    apr_array_header_t *a = r->nodes[i].addrs;
    int k;

    for (k = 0; k < a->nelts; k++) {
        json_array_append_new(pr, json_pack("{s:s}", "nodeIP",
                                            APR_ARRAY_IDX(a, k, ts_pol_addr_t).text));
    }
}

static void ssh_emit(json_t *rules, const ts_pol_ssh_t *s, json_t *principals, json_t *users,
                     json_t *action)
{
    json_t *rule = json_pack("{s:O,s:O,s:O}", "principals", principals, "sshUsers", users,
                             "action", action);
    if (s->accept_env != NULL && json_array_size(s->accept_env) > 0) {
        json_object_set(rule, "acceptEnv", s->accept_env);
    }
    json_array_append_new(rules, rule);
}

static const char *ssh_domain(const char *email)
{
    const char *at = email ? strrchr(email, '@') : NULL;
    return at ? at + 1 : "";
}

/* localpart rules: per source user, the common users then the user's own login. */
static void ssh_per_user(ts_policy_result_t *r, const ts_pol_ssh_t *s, int d, int self,
                         json_t *rules, json_t *users, const char *domain, json_t *action)
{
    const ts_policy_tailnet_t *tn = r->tn;
    int u, i;
    json_t *tagged = json_array();

    for (u = 0; u < tn->nusers; u++) {
        json_t *pr = json_array();
        for (i = 0; i < r->n; i++) {
            if (tn->nodes[i].user == u && r->nodes[i].taglist->nelts == 0
                && ssh_src_node(r, s, i) && (!self || tn->nodes[d].user == u)) {
                ssh_principals(r, pr, i);
            }
        }
        if (json_array_size(pr) > 0) {
            ssh_emit(rules, s, pr, users, action);
            if (strcmp(ssh_domain(tn->users[u].email), domain) == 0) {
                const char *at = strrchr(tn->users[u].email, '@');
                char *local = apr_pstrndup(r->pool, tn->users[u].email,
                                           (size_t)(at - tn->users[u].email));
                json_t *own = json_pack("{s:s}", local, local);
                ssh_emit(rules, s, pr, own, action);
                json_decref(own);
            }
        }
        json_decref(pr);
    }
    for (i = 0; !self && i < r->n; i++) {
        if (r->nodes[i].taglist->nelts > 0 && ssh_src_node(r, s, i)) {
            ssh_principals(r, tagged, i);
        }
    }
    if (json_array_size(tagged) > 0) {
        ssh_emit(rules, s, tagged, users, action);
    }
    json_decref(tagged);
}

/* With localpart users the control plane also gives each source node the rule for
 * itself alone (its own login mapping included): reproduced as recorded. */
static void ssh_localpart_self(ts_policy_result_t *r, const ts_pol_ssh_t *s, int d,
                               json_t *rules)
{
    const char *localpart;
    json_t *users, *action, *pr;
    int u = r->tn->nodes[d].user;

    if (!ssh_src_node(r, s, d)) {
        return;
    }
    users = ssh_users(s, &localpart);
    if (localpart == NULL) {
        json_decref(users);
        return;
    }
    action = ssh_action(r, s);
    pr = json_array();
    ssh_principals(r, pr, d);
    ssh_emit(rules, s, pr, users, action);
    if (r->nodes[d].taglist->nelts == 0 && u >= 0
        && strcmp(ssh_domain(r->tn->users[u].email), localpart) == 0) {
        const char *email = r->tn->users[u].email, *at = strrchr(email, '@');
        char *local = apr_pstrndup(r->pool, email, (size_t)(at - email));
        json_t *own = json_pack("{s:s}", local, local);
        ssh_emit(rules, s, pr, own, action);
        json_decref(own);
    }
    json_decref(pr);
    json_decref(users);
    json_decref(action);
}

static void ssh_compile_rule(ts_policy_result_t *r, const ts_pol_ssh_t *s, int d,
                             json_t *rules)
{
    int self;
    const char *localpart;
    json_t *users, *action, *pr;

    if (!ssh_dst_node(r, s, d, &self)) {
        ssh_localpart_self(r, s, d, rules);
        return;
    }
    users = ssh_users(s, &localpart);
    action = ssh_action(r, s);
    if (localpart != NULL) {
        ssh_per_user(r, s, d, self, rules, users, localpart, action);
    }
    else {
        pr = ssh_shared_principals(r, s, self ? r->tn->nodes[d].user : -1);
        if (json_array_size(pr) > 0) {
            ssh_emit(rules, s, pr, users, action);
        }
    }
    json_decref(users);
    json_decref(action);
}

/* Checks localpart domains against the tailnet's. */
static apr_status_t ssh_check_domains(ts_policy_result_t *r, const char **err)
{
    const ts_policy_t *pol = r->pol;
    int k, u, t;

    for (k = 0; k < pol->ssh->nelts; k++) {
        const ts_pol_ssh_t *s = &APR_ARRAY_IDX(pol->ssh, k, ts_pol_ssh_t);
        for (u = 0; u < s->users->nelts; u++) {
            const char *x = APR_ARRAY_IDX(s->users, u, const char *);
            int ok = 0;
            if (strncmp(x, "localpart:*@", 12) != 0) {
                continue;
            }
            for (t = 0; t < r->tn->ndomains; t++) {
                ok |= strcmp(r->tn->domains[t], x + 12) == 0;
            }
            if (!ok) {
                *err = apr_psprintf(r->pool, "line %d: %s is not associated with this Tailnet "
                                    "and cannot be used in user:*@<domain> expressions",
                                    s->line, x + 12);
                return APR_EINVAL;
            }
        }
    }
    return APR_SUCCESS;
}

apr_status_t ts_pol_ssh(ts_policy_result_t *r, const char **err)
{
    const ts_policy_t *pol = r->pol;
    int d, k, pass;

    if (pol != NULL && ssh_check_domains(r, err)) {
        return APR_EINVAL;
    }
    if (pol != NULL) {
        ssh_cache_build(r);
    }
    for (d = 0; d < r->n; d++) {
        json_t *rules = json_array();
        for (pass = 1; pol != NULL && pass >= 0; pass--) {
            for (k = 0; k < pol->ssh->nelts; k++) {
                const ts_pol_ssh_t *s = &APR_ARRAY_IDX(pol->ssh, k, ts_pol_ssh_t);
                if (s->check == pass) {
                    ssh_compile_rule(r, s, d, rules);
                }
            }
        }
        r->nodes[d].ssh = rules;
    }
    if (pol != NULL) {
        ssh_cache_free(r);
    }
    return APR_SUCCESS;
}
