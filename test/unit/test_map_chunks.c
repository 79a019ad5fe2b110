/* test_map_chunks.c: full maps made of shared compressed chunks (ts_map_chunks.c): the decoded
 * frame is byte for byte ts_map_full's JSON for every viewer, with and without a policy; chunks
 * are reused across viewers and rebuilt only where a node changed; the frame decoder reads
 * concatenated zstd frames and refuses broken ones. */
#include "test_map_fixture.h"

#include "ts_mapframe.h"

static ts_mapframe_enc_t *enc;


/* n nodes (ids 1..n, every 7th tagged tag:web, the rest alice's or bob's), all online. */
static ts_map_t *view(int n)
{
    ts_map_t *m = new_map();
    int i;

    user(m, 1, "alice", "alice@example.net", "Alice");
    user(m, 2, "bob", "bob@example.net", "Bob");
    for (i = 1; i <= n; i++) {
        ts_node_t *row = node(i, apr_psprintf(pool, "n%d", i), i % 7 == 0 ? 0 : 1 + i % 2);
        if (i % 7 == 0) row->tags = "[\"tag:web\"]";
        upsert(m, row, NULL);
        ts_map_node_set_online(m, i, 1, 0);
    }
    ts_map_delta_unref(delta(m, NOW));
    return m;
}

typedef struct stats {
    int reused, built, frames;
} stats_t;

/* The chunked frame of viewer, decoded; it must equal ts_map_full's JSON exactly. */
static void same_as_full(ts_map_t *m, apr_int64_t viewer, apr_time_t now, stats_t *st)
{
    ts_map_plan_t *plan = NULL;
    const char *err = NULL;
    char *want, *got;
    apr_size_t wlen;
    size_t flen, glen, used;
    uint8_t *frame;

    assert_int_equal(ts_map_full(m, viewer, now, pool, &want, &wlen, &err), APR_SUCCESS);
    assert_int_equal(ts_map_full_plan(m, viewer, now, &plan, &err), APR_SUCCESS);
    assert_int_equal(ts_map_plan_encode(plan, enc, &err), APR_SUCCESS);
    ts_map_plan_install(m, plan, now);
    assert_non_null(frame = ts_map_plan_frame(plan, &flen));
    if (st) ts_map_plan_stats(plan, &st->reused, &st->built, &st->frames);
    ts_map_plan_free(plan);
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &got, &glen, &used, &err),
                     APR_SUCCESS);
    assert_int_equal(used, flen);
    free(frame);
    if (glen != wlen || memcmp(got, want, wlen))
        fail_msg("viewer %d: chunked map differs\ngot  %.300s\nwant %.300s", (int)viewer, got,
                 want);
    json_decref(parse(got, glen));          /* valid JSON, no duplicate keys */
}

static void test_every_viewer_allow_all(void **state)
{
    ts_map_t *m = view(300);
    stats_t st;
    int i;

    (void)state;
    same_as_full(m, 150, NOW, &st);
    assert_true(st.built >= 2);             /* a cold cache: every shared chunk built */
    assert_int_equal(st.reused, 0);
    assert_true(st.frames >= st.built + 2); /* own head and tail frames around the chunks */
    assert_true(ts_map_zcache_count(m) >= st.built);
    for (i = 1; i <= 300; i++) {
        same_as_full(m, i, NOW, &st);
        /* at most the first-position variant of a chunk is new */
        assert_true(st.built <= 1);
        assert_true(st.reused >= 2);
    }
}

static void test_rebuilds_only_changed_chunks(void **state)
{
    ts_map_t *m = view(300);
    ts_node_t *row;
    stats_t st, warm;
    int i;

    (void)state;
    /* warm: chunk 0 in both variants (viewers in it, viewers after it), the rest */
    for (i = 1; i <= 3; i++) same_as_full(m, i, NOW, NULL);
    same_as_full(m, 298, NOW, NULL);
    same_as_full(m, 299, NOW, &warm);
    assert_int_equal(warm.built, 0);
    /* one node's endpoints change: its chunk only */
    row = node(100, "n100", 1);
    row->endpoints = "[\"192.0.2.1:41641\"]";
    upsert(m, row, NULL);
    same_as_full(m, 299, NOW, &st);
    assert_int_equal(st.built, 1);
    assert_int_equal(st.reused, warm.reused - 1);
    same_as_full(m, 298, NOW, &st);
    assert_int_equal(st.built, 0);
    /* presence: Online and LastSeen move in node 5's entry */
    ts_map_node_set_online(m, 5, 0, NOW);
    same_as_full(m, 299, NOW + 1000, &st);
    assert_int_equal(st.built, 1);
    /* a node removed, one joining at the end, one in between (id 1000 then 301) */
    assert_int_equal(ts_map_node_remove(m, 42), APR_SUCCESS);
    upsert(m, node(1000, "late", 2), NULL);
    upsert(m, node(301, "n301", 1), NULL);
    for (i = 1; i <= 301; i += 11) if (i != 42) same_as_full(m, i, NOW + 2000, NULL);
    same_as_full(m, 1000, NOW + 2000, NULL);
    same_as_full(m, 301, NOW + 2000, NULL);
    /* nothing changed since: all shared */
    same_as_full(m, 200, NOW + 2000, &st);
    assert_int_equal(st.built, 0);
}

static const char web_only[] =
    "{ \"groups\": {\"group:a\": [\"alice@example.net\"]},\n"
    "  \"tagOwners\": {\"tag:web\": [\"alice@example.net\"]},\n"
    "  \"acls\": [{\"action\": \"accept\", \"src\": [\"group:a\"], \"dst\": [\"tag:web:80\"]},\n"
    "           {\"action\": \"accept\", \"src\": [\"bob@example.net\"],\n"
    "            \"dst\": [\"bob@example.net:*\"]}]}";

static void test_every_viewer_under_policy(void **state)
{
    ts_map_t *m = view(200);
    stats_t st;
    int i, total = 0;

    (void)state;
    install(m, web_only);
    /* alice's nodes see the web nodes (part of each chunk: a variant for their class); the web
     * nodes see alice's; bob's see bob's */
    for (i = 1; i <= 200; i++) {
        same_as_full(m, i, NOW, &st);
        total += st.reused;
    }
    assert_true(total > 200);
    /* a new policy: the class variants of the old one are not used */
    install(m, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}");
    for (i = 1; i <= 200; i += 3) same_as_full(m, i, NOW, NULL);
    /* a node that joined after the compilation is seen by nobody until the next one */
    upsert(m, node(500, "late", 1), NULL);
    for (i = 1; i <= 200; i += 13) same_as_full(m, i, NOW, NULL);
    same_as_full(m, 500, NOW, NULL);
    install(m, web_only);
    for (i = 1; i <= 200; i += 5) same_as_full(m, i, NOW, NULL);
    same_as_full(m, 500, NOW, NULL);
}

static void test_small_views(void **state)
{
    ts_map_t *m = view(1);
    int i;

    (void)state;
    same_as_full(m, 1, NOW, NULL);          /* no Peers at all */
    for (i = 2; i <= 20; i++) {
        upsert(m, node(i, apr_psprintf(pool, "n%d", i), 1), NULL);
        same_as_full(m, 1, NOW, NULL);
        same_as_full(m, i, NOW, NULL);
    }
}

static void test_errors(void **state)
{
    ts_map_t *m = view(3);
    ts_map_plan_t *plan = NULL;
    const char *err = NULL;

    (void)state;
    assert_int_equal(ts_map_full_plan(m, 99, NOW, &plan, &err), APR_NOTFOUND);
    assert_null(plan);
    ts_map_set_derpmap(m, NULL, 0);
    assert_int_equal(ts_map_full_plan(m, 1, NOW, &plan, &err), APR_EAGAIN);
    assert_null(plan);
}

/* The decoder reads any number of whole frames, and nothing else. */
static void test_decode_concatenated(void **state)
{
    static const char *parts[] = { "{\"a\":", "[1,2,3]", ",\"b\":\"", "x\"}" };
    uint8_t buf[4096], *w = buf + 4;
    size_t n, used, jlen;
    const char *err = NULL;
    char *json;
    uint32_t total;
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        assert_int_equal(ts_mapframe_zstd_into(enc, parts[i], strlen(parts[i]), w,
                                               sizeof(buf) - (size_t)(w - buf), &n, &err),
                         APR_SUCCESS);
        w += n;
    }
    total = (uint32_t)(w - buf - 4);
    buf[0] = (uint8_t)total;
    buf[1] = (uint8_t)(total >> 8);
    buf[2] = buf[3] = 0;
    assert_int_equal(ts_mapframe_decode(pool, buf, total + 4, 1, 0, &json, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_string_equal(json, "{\"a\":[1,2,3],\"b\":\"x\"}");
    assert_int_equal(used, total + 4);
    /* the limit counts all frames */
    assert_int_equal(ts_mapframe_decode(pool, buf, total + 4, 1, 10, &json, &jlen, &used, &err),
                     APR_EINVAL);
    /* a frame cut short inside the payload */
    buf[0] = (uint8_t)(total - 3);
    assert_int_equal(ts_mapframe_decode(pool, buf, total + 1, 1, 0, &json, &jlen, &used, &err),
                     APR_EINVAL);
    /* garbage after the last frame */
    buf[0] = (uint8_t)(total + 2);
    buf[total + 4] = 0x12;
    buf[total + 5] = 0x34;
    assert_int_equal(ts_mapframe_decode(pool, buf, total + 6, 1, 0, &json, &jlen, &used, &err),
                     APR_EINVAL);
    /* a flipped byte in the last frame's checksum */
    buf[0] = (uint8_t)total;
    buf[total + 3] ^= 0xff;
    assert_int_equal(ts_mapframe_decode(pool, buf, total + 4, 1, 0, &json, &jlen, &used, &err),
                     APR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_viewer_allow_all),
        cmocka_unit_test(test_rebuilds_only_changed_chunks),
        cmocka_unit_test(test_every_viewer_under_policy),
        cmocka_unit_test(test_small_views),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_decode_concatenated),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (ts_mapframe_enc_create(&enc, pool, 0) != APR_SUCCESS) return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
