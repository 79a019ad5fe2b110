/* policy_case.c: feeds conformance case files (policy + topology) through the policy
 * compiler and prints, one JSON line per case, what each node would receive; the
 * comparison with the recorded results is compare_policy.py's. */
#include "ts_policy.h"

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str_or_null(json_t *j)
{
    return json_is_string(j) ? json_string_value(j) : NULL;
}

static const char *const *strings(apr_pool_t *p, json_t *arr, int *n)
{
    const char **out = apr_pcalloc(p, sizeof(char *) * (json_array_size(arr) + 1));
    size_t i;
    json_t *v;

    *n = 0;
    json_array_foreach(arr, i, v) {
        out[(*n)++] = json_string_value(v);
    }
    return out;
}

static int by_join(const void *a, const void *b)
{
    const ts_policy_node_t *x = a, *y = b;
    return x->join_order < y->join_order ? -1 : x->join_order > y->join_order;
}

/* Users and nodes of topology, nodes in join order. */
static void tailnet(apr_pool_t *p, json_t *topo, ts_policy_tailnet_t *tn)
{
    json_t *users = json_object_get(topo, "users"), *nodes = json_object_get(topo, "nodes");
    ts_policy_user_t *u = apr_pcalloc(p, sizeof(*u) * (json_array_size(users) + 1));
    ts_policy_node_t *n = apr_pcalloc(p, sizeof(*n) * (json_object_size(nodes) + 1));
    const char **domains = apr_pcalloc(p, sizeof(char *) * 2);
    const char *k;
    json_t *v;
    size_t i;
    int cnt = 0;

    json_array_foreach(users, i, v) {
        u[i].id = json_integer_value(json_object_get(v, "id"));
        u[i].name = json_string_value(json_object_get(v, "name"));
        u[i].email = str_or_null(json_object_get(v, "email"));
        u[i].email = u[i].email ? u[i].email : "";
        u[i].is_admin = 1;
        u[i].is_owner = i == 0;
    }
    tn->users = u;
    tn->nusers = (int)json_array_size(users);
    if (tn->nusers > 0 && strchr(u[0].email, '@') != NULL) {
        domains[0] = strchr(u[0].email, '@') + 1;
        tn->ndomains = 1;
    }
    tn->domains = domains;
    json_object_foreach(nodes, k, v) {
        const char *user = str_or_null(json_object_get(v, "user"));
        json_t *jo = json_object_get(v, "join_order");
        n[cnt].id = cnt + 1;
        n[cnt].name = k;
        n[cnt].user = -1;
        for (i = 0; user != NULL && i < json_array_size(users); i++) {
            if (strcmp(u[i].name, user) == 0) {
                n[cnt].user = (int)i;
            }
        }
        n[cnt].tags = strings(p, json_object_get(v, "tags"), &n[cnt].ntags);
        n[cnt].ipv4 = str_or_null(json_object_get(v, "ipv4"));
        n[cnt].ipv6 = str_or_null(json_object_get(v, "ipv6"));
        n[cnt].advertised = strings(p, json_object_get(v, "routable_ips"), &n[cnt].nadvertised);
        n[cnt].approved = strings(p, json_object_get(v, "approved_routes"), &n[cnt].napproved);
        n[cnt].join_order = json_is_integer(jo) ? json_integer_value(jo) : 1000000 + cnt;
        n[cnt].online = 1;
        cnt++;
    }
    qsort(n, (size_t)cnt, sizeof(*n), by_join);
    tn->nodes = n;
    tn->nnodes = cnt;
    tn->control_url = "https://unused";
}

static json_t *node_result(const ts_policy_result_t *r, const ts_policy_tailnet_t *tn, int i)
{
    json_t *o = json_object(), *peers = json_array(), *info = json_object();
    int j;

    json_object_set_new(o, "addresses", ts_policy_addresses(r, i));
    json_object_set_new(o, "allowed_ips", ts_policy_peer_allowed_ips(r, i, i));
    json_object_set_new(o, "primary_routes", ts_policy_primary_routes(r, i));
    json_object_set_new(o, "packet_filter_rules", ts_policy_filter(r, i));
    json_object_set_new(o, "ssh_rules", ts_policy_ssh_rules(r, i));
    json_object_set_new(o, "cap_map", ts_policy_capmap(r, i));
    for (j = 0; j < tn->nnodes; j++) {
        json_t *pi, *cm, *w;
        if (!ts_policy_can_see(r, i, j)) {
            continue;
        }
        json_array_append_new(peers, json_string(tn->nodes[j].name));
        pi = json_pack("{s:o,s:o}", "allowed_ips", ts_policy_peer_allowed_ips(r, i, j),
                       "primary_routes", ts_policy_peer_primary_routes(r, i, j));
        if ((cm = ts_policy_peer_capmap(r, i, j)) != NULL) {
            json_object_set_new(pi, "cap_map", cm);
        }
        w = ts_policy_whois_capmap(r, i, j);
        json_object_set_new(pi, "whois_cap_map", w ? w : json_null());
        json_object_set_new(info, tn->nodes[j].name, pi);
    }
    json_object_set_new(o, "peers", peers);
    json_object_set_new(o, "peer_info", info);
    return o;
}

static void run_case(const char *path)
{
    apr_pool_t *p;
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je), *out;
    ts_policy_tailnet_t tn;
    ts_policy_t *pol = NULL;
    ts_policy_result_t *res = NULL;
    const char *err = NULL, *text;
    char *line;
    int i;

    if (c == NULL) {
        printf("{\"file\":\"%s\",\"load_error\":\"%s\"}\n", path, je.text);
        return;
    }
    apr_pool_create(&p, NULL);
    memset(&tn, 0, sizeof(tn));
    tailnet(p, json_object_get(c, "topology"), &tn);
    text = json_string_value(json_object_get(c, "policy"));
    out = json_pack("{s:s,s:s}", "file", path, "id", json_string_value(json_object_get(c, "id")));
    if (ts_policy_parse(p, text, strlen(text), &pol, &err) != APR_SUCCESS
        || ts_policy_compile(p, pol, &tn, &res, &err) != APR_SUCCESS) {
        json_object_set_new(out, "accepted", json_false());
        json_object_set_new(out, "error", json_string(err ? err : "(no message)"));
    }
    else {
        json_t *nodes = json_object();
        json_object_set_new(out, "accepted", json_true());
        for (i = 0; i < tn.nnodes; i++) {
            json_object_set_new(nodes, tn.nodes[i].name, node_result(res, &tn, i));
        }
        json_object_set_new(out, "nodes", nodes);
    }
    line = json_dumps(out, JSON_COMPACT);
    puts(line);
    free(line);
    json_decref(out);
    apr_pool_destroy(p);
    json_decref(c);
}

int main(int argc, char **argv)
{
    int i;

    apr_initialize();
    for (i = 1; i < argc; i++) {
        run_case(argv[i]);
    }
    apr_terminate();
    return 0;
}
