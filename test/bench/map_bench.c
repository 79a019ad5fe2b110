/* map_bench.c: micro-benchmark of the map view: full map for a node with N peers from cached
 * entries, its compressed size, one peer entry rebuilt, and deltas. Build: make -C test/bench/map */
#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_map.h"
#include "ts_mapframe.h"

#define DERP "{\"Regions\":{\"900\":{\"RegionID\":900,\"RegionCode\":\"ctl\",\"RegionName\":" \
    "\"Example DERP\",\"Nodes\":[{\"Name\":\"900a\",\"RegionID\":900,\"HostName\":" \
    "\"derp.example.net\",\"IPv4\":\"203.0.113.10\",\"STUNPort\":3478,\"DERPPort\":443}]}}}"

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Medians: the suite's machines are shared, and a mean would report their neighbours. */
static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), dbl_cmp);
    return v[n / 2];
}

static const char *hexkey(apr_pool_t *p, const char *prefix, apr_int64_t id, int salt)
{
    return apr_psprintf(p, "%s%016" APR_UINT64_T_HEX_FMT "%048x", prefix, (apr_uint64_t)id,
                        (unsigned)salt);
}

/* A Hostinfo shaped like the ones recorded from v1.34.2 (~900 bytes with NetInfo). */
static const char *hostinfo(apr_pool_t *p, apr_int64_t id, int variant)
{
    return apr_psprintf(p,
        "{\"IPNVersion\":\"1.96.0-t%d\",\"BackendLogID\":\"%064" APR_UINT64_T_HEX_FMT "\","
        "\"OS\":\"linux\",\"OSVersion\":\"6.1.0-18-amd64\",\"Distro\":\"debian\","
        "\"DistroVersion\":\"12.5\",\"DistroCodeName\":\"bookworm\",\"Desktop\":false,"
        "\"Hostname\":\"host-%" APR_INT64_T_FMT "\",\"GoArch\":\"amd64\",\"GoVersion\":\"go1.22.1\","
        "\"Services\":[{\"Proto\":\"peerapi4\",\"Port\":%d},{\"Proto\":\"peerapi6\",\"Port\":%d},"
        "{\"Proto\":\"peerapi-dns-proxy\",\"Port\":1}],"
        "\"NetInfo\":{\"MappingVariesByDestIP\":false,\"HairPinning\":false,\"WorkingIPv6\":true,"
        "\"OSHasIPv6\":true,\"WorkingUDP\":true,\"WorkingICMPv4\":true,\"UPnP\":false,"
        "\"PMP\":false,\"PCP\":false,\"PreferredDERP\":900,\"DERPLatency\":{\"900-v4\":0.0123,"
        "\"900-v6\":0.0131}},\"Userspace\":false,\"UserspaceRouter\":false}",
        variant, (apr_uint64_t)id * 2654435761u, id, 40000 + (int)(id % 20000),
        40000 + (int)(id % 20000));
}

static ts_node_t *row(apr_pool_t *p, apr_int64_t id, int variant)
{
    ts_node_t *n = apr_pcalloc(p, sizeof(*n));

    n->id = id;
    n->given_name = apr_psprintf(p, "host-%" APR_INT64_T_FMT, id);
    n->user_id = id % 10 == 0 ? 0 : 1 + id % 97;
    n->tags = n->user_id ? NULL : "[\"tag:server\"]";
    n->node_key = hexkey(p, "nodekey:", id, 0);
    n->machine_key = hexkey(p, "mkey:", id, 0);
    n->disco_key = hexkey(p, "discokey:", id, variant);
    n->ipv4 = apr_psprintf(p, "100.64.%d.%d", (int)(id / 250), (int)(id % 250) + 1);
    n->ipv6 = apr_psprintf(p, "fd7a:115c:a1e0::%x", (unsigned)id);
    n->host_info = hostinfo(p, id, variant);
    n->endpoints = apr_psprintf(p, "[\"198.51.%d.%d:41641\",\"192.168.1.%d:41641\"]",
                                (int)(id / 250) % 250, (int)(id % 250), (int)(id % 250));
    n->cap_version = 145;
    n->created_at = apr_time_from_sec(1780000000) + id;
    n->expiry = n->user_id ? apr_time_from_sec(1900000000) : 0;
    return n;
}

static ts_map_t *build_view(apr_pool_t *p, int peers)
{
    ts_tailnet_conf_t conf = { 0 };
    const char *err = NULL;
    ts_map_t *m;
    int i;

    conf.server_url = "https://ctl.example.net";
    conf.base_domain = "tail.example.net";
    conf.magic_dns = 1;
    conf.dns_config_json = "{\"Resolvers\":[{\"Addr\":\"1.1.1.1\"}]}";
    ts_map_create(&m, p);
    ts_map_set_conf(m, &conf, p, &err);
    ts_map_set_derpmap(m, DERP, strlen(DERP));
    for (i = 1; i <= 97; i++) {
        ts_user_t u = { 0 };
        u.id = i;
        u.name = apr_psprintf(p, "user%d", i);
        u.email = apr_psprintf(p, "user%d@example.net", i);
        ts_map_user_upsert(m, &u);
    }
    for (i = 1; i <= peers + 1; i++) {
        apr_pool_t *tmp;
        apr_pool_create(&tmp, p);
        if (ts_map_node_upsert(m, row(tmp, i, 0), NULL, tmp, &err) != APR_SUCCESS) {
            fprintf(stderr, "upsert: %s\n", err);
            exit(1);
        }
        ts_map_node_set_online(m, i, 1, 0);
        apr_pool_destroy(tmp);
    }
    return m;
}

static void bench_full(ts_map_t *m, ts_mapframe_enc_t *enc, apr_pool_t *p, int peers)
{
    enum { reps = 31 };
    double t0, build[reps], comp[reps];
    apr_size_t len = 0, flen = 0;
    const char *err;
    uint8_t *frame;
    char *json;
    int i;

    for (i = 0; i < reps; i++) {
        apr_pool_t *tmp;
        apr_pool_create(&tmp, p);
        t0 = now_us();
        ts_map_full(m, 1, apr_time_now(), tmp, &json, &len, &err);
        build[i] = now_us() - t0;
        t0 = now_us();
        ts_mapframe_encode(enc, tmp, json, len, 1, &frame, &flen, &err);
        comp[i] = now_us() - t0;
        apr_pool_destroy(tmp);
    }
    printf("  full map, %d peers:       %8.0f us build (concatenation)  %8.0f us zstd -1\n",
           peers, median(build, reps), median(comp, reps));
    printf("  full map size:             %8lu bytes JSON  %8lu bytes compressed (%.1fx)\n",
           (unsigned long)len, (unsigned long)flen, (double)len / (double)flen);
}

#ifdef TS_MAP_CHUNKS
/* One chunked first map (ts_map_chunks.c): plan (the part under the view's lock), compression
 * of what is not cached, caching, and the flat frame. */
static void chunked_one(ts_map_t *m, ts_mapframe_enc_t *enc, apr_int64_t viewer, double *plan_us,
                        double *enc_us, size_t *flen, int *built, int *reused, int *frames)
{
    ts_map_plan_t *plan = NULL;
    const char *err;
    uint8_t *frame;
    double t0 = now_us();

    if (ts_map_full_plan(m, viewer, apr_time_now(), &plan, &err) != APR_SUCCESS) abort();
    *plan_us = now_us() - t0;
    t0 = now_us();
    if (ts_map_plan_encode(plan, enc, &err) != APR_SUCCESS) abort();
    ts_map_plan_install(m, plan, apr_time_now());
    frame = ts_map_plan_frame(plan, flen);
    *enc_us = now_us() - t0;
    ts_map_plan_stats(plan, reused, built, frames);
    free(frame);
    ts_map_plan_free(plan);
}

static void bench_chunked(ts_map_t *m, ts_mapframe_enc_t *enc, int peers)
{
    enum { reps = 41 };
    double pl[reps], en[reps], cold_pl, cold_en;
    size_t flen = 0;
    int i, built = 0, reused = 0, frames = 0;

    chunked_one(m, enc, 1, &cold_pl, &cold_en, &flen, &built, &reused, &frames);
    printf("  chunked, cold cache:       %8.0f us plan (locked)  %8.0f us compress+frame "
           "(%d chunks built, %d frames, %lu bytes)\n", cold_pl, cold_en, built, frames,
           (unsigned long)flen);
    for (i = 0; i < reps; i++)
        chunked_one(m, enc, 2 + (apr_int64_t)i * peers / reps, &pl[i], &en[i], &flen, &built,
                    &reused, &frames);
    printf("  chunked, warm, per viewer: %8.1f us plan (locked)  %8.1f us compress+frame "
           "(%d shared chunks reused, %d built, %lu bytes)\n", median(pl, reps),
           median(en, reps), reused, built, (unsigned long)flen);
}
#endif

/* One peer's row changes (its Hostinfo): validate + re-render its entries. */
static void bench_rebuild(ts_map_t *m, apr_pool_t *p)
{
    enum { reps = 2001 };
    static double t[reps];
    const char *err, *json;
    apr_size_t len;
    double t0;
    int i;

    for (i = 0; i < reps; i++) {
        apr_pool_t *tmp;
        apr_pool_create(&tmp, p);
        ts_node_t *n = row(tmp, 2, i + 1);
        t0 = now_us();
        ts_map_node_upsert(m, n, NULL, tmp, &err);
        ts_map_peer_json(m, 2, apr_time_now(), &json, &len);
        t[i] = now_us() - t0;
        apr_pool_destroy(tmp);
    }
    printf("  one peer entry rebuilt:    %8.1f us (row upsert: validate + parse JSON fields; "
           "render; entry %lu bytes)\n", median(t, reps), (unsigned long)len);
    for (i = 0; i < reps; i++) {
        t0 = now_us();
        ts_map_node_set_online(m, 2, i % 2, apr_time_now());
        ts_map_peer_json(m, 2, apr_time_now(), &json, &len);
        t[i] = now_us() - t0;
    }
    printf("  one peer entry re-rendered:%8.1f us (presence change: render only)\n",
           median(t, reps));
}

static void bench_delta(ts_map_t *m, ts_mapframe_enc_t *enc, apr_pool_t *p, int patch)
{
    enum { reps = 2001 };
    static double build[reps], own[reps];
    double t0;
    apr_size_t len = 0, zlen = 0;
    const uint8_t *frame;
    const char *err;
    int i;

    ts_map_delta_t *d;

    while (ts_map_delta_build(m, apr_time_now(), NULL, &d) == APR_SUCCESS)
        ts_map_delta_unref(d);
    for (i = 0; i < reps; i++) {
        apr_pool_t *tmp;
        apr_pool_create(&tmp, p);
        if (patch) ts_map_node_set_online(m, 3, i % 2, apr_time_now());
        else ts_map_node_upsert(m, row(tmp, 3, 1000 + i), NULL, tmp, &err);
        t0 = now_us();
        ts_map_delta_build(m, apr_time_now(), enc, &d);
        build[i] = now_us() - t0;
        ts_map_delta_frame(d, 1, 1, enc, tmp, &frame, &zlen, &err);
        ts_map_delta_json(d, 1, tmp, &err, &len);
        t0 = now_us();
        ts_map_delta_frame(d, 3, 1, enc, tmp, &frame, &len, &err);   /* the node itself */
        own[i] = now_us() - t0;
        ts_map_delta_unref(d);
        apr_pool_destroy(tmp);
    }
    printf("  delta, %s %8.1f us build+compress once, %lu bytes framed; %6.1f us for "
           "the changed node's own frame\n", patch ? "online patch:" : "PeersChanged:",
           median(build, reps), (unsigned long)zlen, median(own, reps));
}

static void run(int peers)
{
    apr_pool_t *p;
    ts_mapframe_enc_t *enc;
    ts_map_t *m;
    double t0;
    char *json;
    apr_size_t len;
    const char *err;

    apr_pool_create(&p, NULL);
    ts_mapframe_enc_create(&enc, p, TS_MAPFRAME_LEVEL);
    t0 = now_us();
    m = build_view(p, peers);
    ts_map_full(m, 1, apr_time_now(), p, &json, &len, &err);   /* settles: renders all */
    printf("N = %d peers (%d nodes loaded and rendered in %.0f ms)\n", peers, peers + 1,
           (now_us() - t0) / 1000);
    bench_full(m, enc, p, peers);
#ifdef TS_MAP_CHUNKS
    bench_chunked(m, enc, peers);
#endif
    bench_rebuild(m, p);
    bench_delta(m, enc, p, 1);
    bench_delta(m, enc, p, 0);
    apr_pool_destroy(p);
}

int main(int argc, char **argv)
{
    int i;

    apr_initialize();
    if (argc > 1)
        for (i = 1; i < argc; i++) run(atoi(argv[i]));
    else {
        run(1000);
        run(5000);
    }
    apr_terminate();
    return 0;
}
