/* fanout.c: what a policy change costs the tailnet runtime, from the new text to the last
 * stream's frame: parse, the view's inputs snapshot, compile, prepare (texts, visibility
 * classes), install + delta build (under the view's lock), then every viewer's frame
 * (per class or per viewer, zstd), as the notifier renders them after unlocking.
 * The tailnet and the policy are policy_bench.c's. Usage: fanout [N ...] (1000 5000). */
#define main policy_bench_main
#include "policy_bench.c"
#undef main

#include "ts_map.h"
#include "ts_mapframe.h"

static const char *hexkey(apr_pool_t *p, const char *prefix, apr_int64_t id)
{
    return apr_psprintf(p, "%s%016" APR_UINT64_T_HEX_FMT "%048x", prefix, (apr_uint64_t)id, 7u);
}

static const char *hostinfo(apr_pool_t *p, apr_int64_t id)
{
    return apr_psprintf(p,
        "{\"IPNVersion\":\"1.96.0\",\"BackendLogID\":\"%064" APR_UINT64_T_HEX_FMT "\","
        "\"OS\":\"linux\",\"OSVersion\":\"6.1.0-18-amd64\",\"Distro\":\"debian\","
        "\"Hostname\":\"node%" APR_INT64_T_FMT "\",\"GoArch\":\"amd64\","
        "\"Services\":[{\"Proto\":\"peerapi4\",\"Port\":%d}],"
        "\"NetInfo\":{\"PreferredDERP\":900}}",
        (apr_uint64_t)id * 2654435761u, id - 1, 40000 + (int)(id % 20000));
}

/* The view of policy_bench's tailnet (its users and nodes as store rows). */
static ts_map_t *view_of(apr_pool_t *p, const ts_policy_tailnet_t *tn, apr_int64_t **uids)
{
    static const char derp[] = "{\"Regions\":{\"900\":{\"RegionID\":900,\"RegionCode\":\"b\","
        "\"Nodes\":[{\"Name\":\"900a\",\"RegionID\":900,\"HostName\":\"derp.bench\"}]}}}";
    ts_tailnet_conf_t conf = { 0 };
    const char *err = NULL;
    ts_map_t *m;
    int i, k;

    conf.server_url = "https://ctl.example";
    conf.base_domain = "bench.test";
    if (ts_map_create(&m, p) || ts_map_set_conf(m, &conf, p, &err)) abort();
    ts_map_set_derpmap(m, derp, strlen(derp));
    *uids = apr_palloc(p, sizeof(apr_int64_t) * (size_t)tn->nusers);
    for (i = 0; i < tn->nusers; i++) {
        ts_user_t u = { 0 };
        u.id = (*uids)[i] = tn->users[i].id;
        u.name = tn->users[i].name;
        u.email = tn->users[i].email;
        ts_map_user_upsert(m, &u);
    }
    for (i = 0; i < tn->nnodes; i++) {
        const ts_policy_node_t *pn = &tn->nodes[i];
        ts_node_t *n = apr_pcalloc(p, sizeof(*n));
        apr_array_header_t *routes = apr_array_make(p, 2, sizeof(ts_route_t));
        n->id = pn->id;
        n->given_name = pn->name;
        n->user_id = pn->user >= 0 ? tn->users[pn->user].id : 0;
        n->tags = pn->ntags ? apr_psprintf(p, "[\"%s\"]", pn->tags[0]) : NULL;
        n->node_key = hexkey(p, "nodekey:", pn->id);
        n->machine_key = hexkey(p, "mkey:", pn->id);
        n->disco_key = hexkey(p, "discokey:", pn->id);
        n->ipv4 = pn->ipv4;
        n->ipv6 = pn->ipv6;
        n->host_info = hostinfo(p, pn->id);
        n->endpoints = "[\"198.51.100.1:41641\"]";
        n->cap_version = 145;
        n->created_at = apr_time_from_sec(1780000000) + pn->id;
        for (k = 0; k < pn->nadvertised; k++) {
            ts_route_t *r = apr_array_push(routes);
            r->prefix = pn->advertised[k];
            r->advertised = 1;
        }
        if (ts_map_node_upsert(m, n, routes, p, &err)) {
            fprintf(stderr, "node %d: %s\n", (int)pn->id, err);
            abort();
        }
        ts_map_node_set_online(m, pn->id, 1, 0);
    }
    return m;
}

typedef struct result {
    double parse, inputs, compile, prepare, install, frames, total;
    int personal_frames, shared_frames, classes;
    double bytes, max_frame;
} result_t;

/* One policy change to text, timed step by step; frames for every node's stream. */
static result_t change(ts_map_t *m, apr_pool_t *p, const ts_policy_tailnet_t *tn,
                       const apr_int64_t *uids, const char *text, ts_mapframe_enc_t *enc)
{
    result_t r;
    ts_policy_t *pol;
    ts_policy_result_t *res;
    ts_map_pol_inputs_t in;
    ts_policy_tailnet_t t = *tn;
    ts_map_pol_t *mp;
    ts_map_delta_t *d = NULL;
    const char *err = NULL;
    apr_pool_t *cp, *fp;
    double t0 = now_ms(), t1;
    int i;

    memset(&r, 0, sizeof(r));
    apr_pool_create(&cp, p);
    if (ts_policy_parse(cp, text, strlen(text), &pol, &err)) {
        fprintf(stderr, "parse: %s\n", err);
        exit(1);
    }
    t1 = now_ms(); r.parse = t1 - t0; t0 = t1;
    ts_map_policy_inputs(m, cp, uids, tn->nusers, &in);
    t.nodes = in.nodes;
    t.nnodes = in.nnodes;
    t1 = now_ms(); r.inputs = t1 - t0; t0 = t1;
    if (ts_policy_compile(cp, pol, &t, &res, &err)) {
        fprintf(stderr, "compile: %s\n", err);
        exit(1);
    }
    t1 = now_ms(); r.compile = t1 - t0; t0 = t1;
    if (ts_map_pol_prepare(res, &in, &mp)) abort();
    t1 = now_ms(); r.prepare = t1 - t0; t0 = t1;
    ts_map_set_policy(m, mp);
    ts_map_delta_build(m, apr_time_now(), enc, &d);
    t1 = now_ms(); r.install = t1 - t0; t0 = t1;
    apr_pool_create(&fp, p);
    for (i = 0; d && i < tn->nnodes; i++) {
        const uint8_t *f;
        apr_size_t len;
        if (ts_map_delta_frame(d, tn->nodes[i].id, 1, enc, fp, &f, &len, &err)) continue;
        if (ts_map_delta_is_shared_for(d, tn->nodes[i].id)) r.shared_frames++;
        else r.personal_frames++;
        r.bytes += len;
        if (len > r.max_frame) r.max_frame = len;
        apr_pool_clear(fp);
    }
    t1 = now_ms(); r.frames = t1 - t0;
    r.total = r.parse + r.inputs + r.compile + r.prepare + r.install + r.frames;
    r.classes = -1;
    if (d) ts_map_delta_unref(d);
    apr_pool_destroy(fp);
    apr_pool_destroy(cp);
    return r;
}

static void print(const char *what, int n, const result_t *r)
{
    printf("nodes=%d change=%s parse_ms=%.1f inputs_ms=%.1f compile_ms=%.1f prepare_ms=%.1f "
           "install_delta_ms=%.1f frames_ms=%.1f total_ms=%.1f frames_personal=%d "
           "frames_class=%d bytes_total=%.0f max_frame=%.0f\n", n, what, r->parse, r->inputs,
           r->compile, r->prepare, r->install, r->frames, r->total, r->personal_frames,
           r->shared_frames, r->bytes, r->max_frame);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int sizes[8] = { 1000, 5000 }, ns = 2, i;

    if (argc > 1)
        for (ns = 0; ns < argc - 1 && ns < 8; ns++) sizes[ns] = atoi(argv[ns + 1]);
    apr_initialize();
    for (i = 0; i < ns; i++) {
        apr_pool_t *p;
        ts_policy_tailnet_t tn;
        ts_mapframe_enc_t *enc;
        apr_int64_t *uids;
        ts_map_t *m;
        ts_map_delta_t *d = NULL;
        char *a, *b, *c;
        result_t r;

        apr_pool_create(&p, NULL);
        make_tailnet(p, sizes[i], &tn);
        m = view_of(p, &tn, &uids);
        if (ts_mapframe_enc_create(&enc, p, 0)) abort();
        ts_map_delta_build(m, apr_time_now(), enc, &d);      /* the joins: not measured */
        if (d) ts_map_delta_unref(d);
        a = make_policy(p, tn.nusers);
        /* one rule's ports edited: only the nodes it lands on change */
        b = apr_pstrdup(p, a);
        c = strstr(b, ":22,443\"");
        if (!c) abort();
        memcpy(c, ":22,444\"", 8);
        r = change(m, p, &tn, uids, a, enc);            /* no policy -> the policy */
        print("first-policy", sizes[i], &r);
        r = change(m, p, &tn, uids, b, enc);
        print("one-rule-ports", sizes[i], &r);
        /* a group loses a tag: visibility changes for the group's and the tag's nodes */
        c = strstr(b, "\"group:g0\"], \"dst\": [\"tag:t2:22,444\"]");
        if (!c) abort();
        c[strlen("\"group:g0\"], \"dst\": [\"tag:t")] = '9';
        r = change(m, p, &tn, uids, b, enc);
        print("group-loses-tag", sizes[i], &r);
        apr_pool_destroy(p);
    }
    apr_terminate();
    return 0;
}
