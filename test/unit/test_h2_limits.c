/* test_h2_limits.c: the ts_h2 session against hostile and unlucky input: caps, floods, bad
 * prefaces, failing output and allocations, and what an idle connection costs in memory. */
#include "test_h2_harness.h"

static void test_queue_cap(void **state)
{
    harness_t *h = &H;
    ts_h2_config_t conf = { 0 };
    static const nghttp2_settings_entry zero_window[] = {
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0 },
    };
    uint8_t data[1000];
    cstream_t *c;
    int32_t id;

    (void)state;
    memset(data, 'm', sizeof(data));
    conf.max_queued = 1000;
    h_init(&conf, zero_window, 1, 1);
    h->action = ACT_STREAM;
    id = request("POST", "/machine/map", NULL, "{}", 2);
    pump();
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 600), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 400), APR_SUCCESS);   /* exactly full */
    pump();
    assert_int_equal(ts_h2_stream_queued(h->srv, id), 1000);
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 1), APR_ENOSPC);
    assert_int_equal(ts_h2_stream_queued(h->srv, id), 1000);   /* nothing queued by the failure */
    /* once the client reads, there is room again */
    assert_int_equal(nghttp2_submit_window_update(h->cli, NGHTTP2_FLAG_NONE, id, 700), 0);
    pump();
    c = cstream(h, id);
    assert_int_equal(c->len, 700);
    assert_int_equal(ts_h2_stream_queued(h->srv, id), 300);
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 700), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 1), APR_ENOSPC);
    /* the caller's way out: reset the stream; the queue goes with it */
    assert_int_equal(ts_h2_stream_reset(h->srv, id, NGHTTP2_CANCEL), APR_SUCCESS);
    assert_int_equal(ts_h2_session_queued(h->srv), 0);
    pump();
    assert_true(c->rst_seen);
    assert_true(c->closed);
    assert_int_equal(c->close_code, NGHTTP2_CANCEL);
    assert_int_equal(h->nclosed, 1);
    assert_int_equal(h->closed[0].why, TS_H2_CLOSE_RESET);
    assert_int_equal(h->closed[0].code, NGHTTP2_CANCEL);
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 1), APR_NOTFOUND);
    h_fini();
}

static void test_body_over_cap(void **state)
{
    harness_t *h = &H;
    ts_h2_config_t conf = { 0 };
    static uint8_t body[5000];
    cstream_t *c;
    int32_t a, b, d, ok;

    (void)state;
    memset(body, 'b', sizeof(body));
    conf.max_body = 1000;
    h_init(&conf, NULL, 0, 0);
    h->action = ACT_ECHO;
    /* no content-length: found out while the body arrives */
    a = request("POST", "/machine/register", NULL, body, sizeof(body));
    /* content-length over the cap: refused at the end of the headers */
    b = request_ex("POST", "/machine/register", "unused", NULL, "5000", body, sizeof(body), 0,
                   NULL);
    /* exactly the cap is fine */
    ok = request("POST", "/machine/register", NULL, body, 1000);
    pump();
    assert_int_equal(h->nreq, 1);
    assert_int_equal(h->req[0].id, ok);
    assert_int_equal(h->req[0].body_len, 1000);
    c = cstream(h, a);
    assert_int_equal(c->status, 413);
    assert_true(c->ended);
    assert_body(c, "request body too large\n", 23);
    assert_int_equal(cstream(h, b)->status, 413);
    assert_int_equal(cstream(h, ok)->status, 200);
    assert_body(cstream(h, ok), body, 1000);
    /* a client still sending when the 413 is out is told to stop with RST_STREAM(NO_ERROR) */
    d = request_ex("POST", "/machine/map", "unused", NULL, NULL, body, sizeof(body), 2000, NULL);
    pump();
    c = cstream(h, d);
    assert_int_equal(c->status, 413);
    assert_true(c->rst_seen);
    assert_true(c->closed);
    assert_int_equal(c->close_code, NGHTTP2_NO_ERROR);
    assert_int_equal(h->nreq, 1);   /* the handler never saw any of them */
    assert_int_equal(h->nclosed, 1);
    assert_int_equal(ts_h2_session_queued(h->srv), 0);
    assert_true(ts_h2_session_want_read(h->srv));
    h_fini();
}

static void test_content_length_mismatch(void **state)
{
    harness_t *h = &H;
    cstream_t *c;
    int32_t more, less;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    more = request_ex("POST", "/machine/map", "unused", NULL, "5", "0123456789", 10, 0, NULL);
    less = request_ex("POST", "/machine/map", "unused", NULL, "20", "0123456789", 10, 0, NULL);
    pump();
    assert_int_equal(h->nreq, 0);
    c = cstream(h, more);
    assert_true(c->closed);
    assert_int_equal(c->close_code, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(c->status, 0);
    c = cstream(h, less);
    assert_true(c->closed);
    assert_int_equal(c->close_code, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(h->nclosed, 0);
    assert_true(ts_h2_session_want_read(h->srv));  /* stream errors, not connection errors */
    h_fini();
}

static void test_header_list_too_large(void **state)
{
    harness_t *h = &H;
    ts_h2_config_t conf = { 0 };
    char big[600];
    const char *extra[] = { "x-big", big, NULL };
    cstream_t *c;
    int32_t id, ok;

    (void)state;
    memset(big, 'h', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    conf.max_header_list = 512;
    h_init(&conf, NULL, 0, 0);
    id = request_ex("GET", "/machine/whoami", "unused", NULL, NULL, NULL, 0, 0, extra);
    ok = request("GET", "/machine/whoami", NULL, NULL, 0);
    pump();
    assert_int_equal(h->nreq, 1);
    assert_int_equal(h->req[0].id, ok);
    c = cstream(h, id);
    assert_int_equal(c->status, 431);
    assert_true(c->ended);
    h_fini();
}

/* CONNECT has no :path; the core answers it without bothering a handler. */
static void test_connect_refused(void **state)
{
    harness_t *h = &H;
    nghttp2_nv nv[2];
    int32_t id;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    hdr(&nv[0], ":method", "CONNECT");
    hdr(&nv[1], ":authority", "elsewhere.example:443");
    id = nghttp2_submit_request(h->cli, NULL, nv, 2, NULL, NULL);
    assert_true(id > 0);
    pump();
    assert_int_equal(h->nreq, 0);
    assert_int_equal(cstream(h, id)->status, 400);
    assert_int_equal(h->nclosed, 0);
    h_fini();
}

static void test_garbage_preface(void **state)
{
    harness_t *h = &H;
    static const char junk[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    const char *err = NULL;
    apr_status_t rv;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    rv = ts_h2_session_recv(h->srv, (const uint8_t *)junk, strlen(junk), &err);
    assert_int_equal(rv, APR_EGENERAL);
    assert_non_null(strstr(err, "preface"));
    /* sticky, and the session stays safe to flush and destroy */
    err = NULL;
    assert_int_equal(ts_h2_session_recv(h->srv, (const uint8_t *)"x", 1, &err), APR_EGENERAL);
    assert_non_null(strstr(err, "preface"));
    assert_false(ts_h2_session_want_read(h->srv));
    /* What was queued still goes (SETTINGS), then a GOAWAY(PROTOCOL_ERROR) that nghttp2
     * would not queue itself for a bad preface: the client learns why. */
    {
        capture_t cap = { { 0 }, 0 };
        size_t sent, first;

        assert_int_equal(ts_h2_session_send(h->srv, SIZE_MAX, to_capture, &cap, &sent, &err),
                         APR_SUCCESS);
        assert_int_equal(cap.buf[3], NGHTTP2_SETTINGS);
        first = 9 + ((size_t)cap.buf[0] << 16 | (size_t)cap.buf[1] << 8 | cap.buf[2]);
        while (first < sent && cap.buf[first + 3] != NGHTTP2_GOAWAY)
            first += 9 + ((size_t)cap.buf[first] << 16 | (size_t)cap.buf[first + 1] << 8
                          | cap.buf[first + 2]);
        assert_true(first + 17 <= sent);
        assert_int_equal(cap.buf[first + 3], NGHTTP2_GOAWAY);
        assert_int_equal(cap.buf[first + 16], NGHTTP2_PROTOCOL_ERROR);
    }
    assert_true(ts_h2_session_finished(h->srv));
    assert_int_equal(h->nreq, 0);
    h_fini();
}

/* A header block spread over more CONTINUATION frames than allowed (CVE-2024-27316 class). */
static void test_continuation_flood(void **state)
{
    harness_t *h = &H;
    static char value[20][12001];
    nghttp2_nv nv[24];
    nghttp2_option *opt;
    nghttp2_session_callbacks *cbs;
    size_t i, j, n = 0;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    /* a client willing to send a 250 KB header block */
    nghttp2_session_del(h->cli);
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_option_set_max_send_header_block_length(opt, 1u << 20);
    assert_int_equal(nghttp2_session_client_new2(&h->cli, cbs, h, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    srand(7);
    hdr(&nv[n++], ":method", "GET");
    hdr(&nv[n++], ":scheme", "https");
    hdr(&nv[n++], ":path", "/");
    hdr(&nv[n++], ":authority", "unused");
    for (i = 0; i < 20; i++) {
        for (j = 0; j < 12000; j++)
            value[i][j] = (char)('!' + rand() % 90);
        value[i][12000] = '\0';
        hdr(&nv[n], "x-pad", value[i]);
        nv[n++].flags = NGHTTP2_NV_FLAG_NO_INDEX;
    }
    assert_true(nghttp2_submit_request(h->cli, NULL, nv, n, NULL, NULL) > 0);
    pump();
    assert_int_equal(h->srv_rv, APR_EGENERAL);
    assert_non_null(strstr(h->srv_err, "CONTINUATION"));
    assert_int_equal(h->nreq, 0);
    h_fini();
}

/* Asking for PING answers without ever reading them trips nghttp2's outbound-ack guard. */
static void test_ping_flood(void **state)
{
    harness_t *h = &H;
    uint8_t opaque[8] = { 0 };
    int i;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    pump();
    for (i = 0; i < 2000; i++) {
        opaque[0] = (uint8_t)i;
        assert_int_equal(nghttp2_submit_ping(h->cli, NGHTTP2_FLAG_NONE, opaque), 0);
    }
    client_to_server(h);
    assert_int_equal(h->srv_rv, APR_EGENERAL);
    assert_non_null(strstr(h->srv_err, "flood"));
    assert_false(ts_h2_session_want_read(h->srv));
    h_fini();
}

/* Open-and-cancel at full speed (CVE-2023-44487): the reset rate limit ends the connection. */
static void test_rapid_reset_flood(void **state)
{
    harness_t *h = &H;
    int i;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    h->quiet = 1;
    pump();
    for (i = 0; i < 3000 && h->srv_rv == APR_SUCCESS && !h->goaway_seen; i++) {
        int32_t id = request("GET", "/machine/whoami", NULL, NULL, 0);

        client_to_server(h);
        if (h->srv_rv != APR_SUCCESS)
            break;
        assert_int_equal(nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, id,
                                                   NGHTTP2_CANCEL), 0);
        client_to_server(h);
        if (h->srv_rv == APR_SUCCESS)
            server_to_client(h);
    }
    print_message("connection ended after %d open-and-reset streams (%s)\n", i,
                  h->srv_rv == APR_SUCCESS ? "GOAWAY" : h->srv_err);
    assert_true(i < 3000);
    assert_true(h->goaway_seen || h->srv_rv != APR_SUCCESS);
    assert_int_equal(h->nquiet_closed, h->nquiet_req);  /* every stream seen was let go */
    assert_false(ts_h2_session_want_read(h->srv));
    h_fini();
}

/* A driver whose output fails must be told, and nothing more may be produced. */
static apr_status_t refuse_output(void *baton, const uint8_t *data, size_t len)
{
    (void)baton, (void)data, (void)len;
    return APR_EOF;
}

static void test_output_failure(void **state)
{
    harness_t *h = &H;
    const char *err = NULL;
    size_t sent = 0;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    assert_int_equal(ts_h2_session_send(h->srv, SIZE_MAX, refuse_output, NULL, &sent, &err),
                     APR_EOF);
    assert_true(sent > 0);
    assert_non_null(err);
    assert_false(ts_h2_session_want_write(h->srv));
    assert_false(ts_h2_session_want_read(h->srv));
    assert_true(ts_h2_session_finished(h->srv));
    err = NULL;
    assert_int_equal(ts_h2_session_send(h->srv, SIZE_MAX, to_client, h, &sent, &err), APR_EOF);
    assert_non_null(err);
    h_fini();
}

static void test_default_allocator_and_bad_config(void **state)
{
    harness_t *h = &H;
    ts_h2_config_t conf = { 0 };
    ts_h2_mem_t half = { NULL, NULL, NULL, NULL, NULL };
    ts_h2_session_t *s = (ts_h2_session_t *)&conf;
    const char *err = NULL;
    int32_t id;

    (void)state;
    assert_int_equal(ts_h2_session_create(&s, &conf, NULL, &err), APR_EINVAL);
    assert_null(s);
    assert_non_null(err);
    conf.on_request = on_request;
    conf.mem = &half;
    assert_int_equal(ts_h2_session_create(&s, &conf, NULL, &err), APR_EINVAL);
    conf.mem = NULL;
    conf.stream_window = 1u << 31;
    assert_int_equal(ts_h2_session_create(&s, &conf, NULL, &err), APR_EINVAL);
    /* plain malloc: the sanitizers and valgrind are the judges of this one */
    memset(h, 0, sizeof(*h));
    conf.stream_window = 0;
    conf.on_closed = on_closed;
    assert_int_equal(ts_h2_session_create(&h->srv, &conf, conn_key, &err), APR_SUCCESS);
    client_new(h, NULL, 0, 0);
    h->action = ACT_ECHO;
    id = request("POST", "/machine/set-dns", NULL, "{}", 2);
    pump();
    assert_body(cstream(h, id), "{}", 2);
    h_fini();
}

/* ---- memory: what an idle connection with one open map stream costs ---- */

static ssize_t bare_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)buf, (void)length, (void)flags, (void)src, (void)ud;
    return NGHTTP2_ERR_DEFERRED;
}

static int bare_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    nghttp2_nv nv[2];
    nghttp2_data_provider prd;

    (void)ud;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) || !f->hd.stream_id
        || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    hdr(&nv[0], ":status", "200");
    hdr(&nv[1], "content-type", "application/octet-stream");
    prd.source.ptr = NULL;
    prd.read_callback = bare_read;
    return nghttp2_submit_response(s, f->hd.stream_id, nv, 2, &prd);
}

/* The same exchange against nghttp2 alone, with our options and settings: its own share. */
static size_t bare_nghttp2_idle_bytes(void)
{
    counter_t cnt = { 0 };
    nghttp2_mem mem = { &cnt, cnt_malloc, cnt_free, cnt_calloc, cnt_realloc };
    nghttp2_settings_entry iv[3] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, TS_H2_DEFAULT_MAX_STREAMS },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, TS_H2_DEFAULT_MAX_HEADER_LIST },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, TS_H2_DEFAULT_STREAM_WINDOW },
    };
    static const char *const lb[] = { "ts-lb", "nodekey:ab", NULL };
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_session *bare;
    const uint8_t *p;
    ssize_t n;
    size_t live, moved;

    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, bare_on_frame_recv);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_closed_streams(opt, 1);
    assert_int_equal(nghttp2_session_server_new3(&bare, cbs, NULL, opt, &mem), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(bare, NGHTTP2_FLAG_NONE, iv, 3);
    nghttp2_session_set_local_window_size(bare, NGHTTP2_FLAG_NONE, 0, TS_H2_DEFAULT_CONN_WINDOW);
    client_new(&H, NULL, 0, 0);
    request_ex("POST", "/machine/map", "unused", NULL, NULL, "{\"Stream\":true}", 15, 0, lb);
    do {
        moved = 0;
        while ((n = nghttp2_session_mem_send(H.cli, &p)) > 0) {
            assert_int_equal(nghttp2_session_mem_recv(bare, p, (size_t)n), n);
            moved += (size_t)n;
        }
        while ((n = nghttp2_session_mem_send(bare, &p)) > 0) {
            assert_int_equal(nghttp2_session_mem_recv(H.cli, p, (size_t)n), n);
            moved += (size_t)n;
        }
    } while (moved);
    assert_int_equal(cstream(&H, 1)->status, 200);
    live = cnt.live;
    nghttp2_session_del(bare);
    nghttp2_session_del(H.cli);
    H.cli = NULL;
    assert_int_equal(cnt.live, 0);
    return live;
}

static void test_idle_streaming_memory(void **state)
{
    harness_t *h = &H;
    static const char *const lb[] = { "ts-lb", "nodekey:ab", NULL };
    static uint8_t frame[2000];
    size_t idle, bare;
    int32_t id;

    (void)state;
    memset(frame, 'z', sizeof(frame));
    h_init(NULL, NULL, 0, 0);
    print_message("fresh session: %zu bytes live\n", h->mem_count.live);
    h->action = ACT_STREAM;
    id = request_ex("POST", "/machine/map", "unused", NULL, NULL, "{\"Stream\":true}", 15, 0, lb);
    pump();
    assert_int_equal(cstream(h, id)->status, 200);
    idle = h->mem_count.live;
    /* a message comes and goes; the stream's buffers go with it */
    h->mem_count.peak = h->mem_count.live;
    assert_int_equal(ts_h2_stream_write(h->srv, id, frame, sizeof(frame)), APR_SUCCESS);
    assert_true(h->mem_count.live >= idle + sizeof(frame));
    pump();
    assert_int_equal(cstream(h, id)->len, sizeof(frame));
    assert_true(h->mem_count.live <= idle);
    print_message("peak while one 2000-byte message passed: %zu bytes\n", h->mem_count.peak);
    idle = h->mem_count.live;
    h_fini();

    bare = bare_nghttp2_idle_bytes();
    print_message("idle session, one open streaming response: %zu bytes live "
                  "(nghttp2 alone: %zu, ts_h2's own: %zu)\n", idle, bare, idle - bare);
    assert_true(idle >= bare);
    assert_true(idle - bare <= 1024);
}

/* ---- every allocation failing in turn: clean errors, no leaks, no crashes ---- */

static uint8_t oom_body[2000];

static int oom_run(size_t fail_at)
{
    harness_t *h = &H;
    const char *err = NULL;
    int triggered, done;

    memset(h, 0, sizeof(*h));
    h->mem_count.fail_at = fail_at;
    h->conf.on_request = on_request;
    h->conf.on_closed = on_closed;
    h->mem = (ts_h2_mem_t){ &h->mem_count, cnt_malloc, cnt_free, cnt_calloc, cnt_realloc };
    h->conf.mem = &h->mem;
    h->conf.max_body = 1500;
    if (ts_h2_session_create(&h->srv, &h->conf, conn_key, &err) != APR_SUCCESS) {
        assert_non_null(err);
        assert_int_equal(h->mem_count.live, 0);
        return 1;
    }
    client_new(h, NULL, 0, 0);
    request("POST", "/machine/map", "application/json", "{\"Stream\":true,\"x\":1}", 21);
    request("POST", "/machine/register", NULL, oom_body, 1200);   /* grows the body buffer */
    request("POST", "/machine/register", NULL, oom_body, sizeof(oom_body));    /* 413 */
    for (int round = 0; round < 3; round++) {
        if (client_to_server(h), h->srv_rv == APR_SUCCESS) {
            size_t sent;

            ts_h2_session_send(h->srv, SIZE_MAX, to_client, h, &sent, &err);
        }
        if (round == 0)
            for (int i = 0; i < h->nreq; i++)
                if (ts_h2_stream_start(h->srv, h->req[i].id, &head_stream) == APR_SUCCESS
                    && ts_h2_stream_write(h->srv, h->req[i].id, (const uint8_t *)"abc", 3)
                       == APR_SUCCESS)
                    ts_h2_stream_end(h->srv, h->req[i].id);
    }
    triggered = h->mem_count.allocs >= fail_at;
    done = cstream(h, 1)->ended && cstream(h, 3)->ended && cstream(h, 5)->status == 413;
    if (!triggered)
        assert_true(done);      /* nothing failed: it must all have worked */
    h_fini();
    return triggered;
}

static void test_allocation_failures(void **state)
{
    size_t k;

    (void)state;
    for (k = 1; k < 10000; k++)
        if (!oom_run(k))
            break;
    print_message("%zu allocation points failed in turn\n", k - 1);
    assert_true(k > 20);        /* the scenario allocates; each point was failed once */
    assert_true(k < 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_queue_cap, h_cleanup),
        cmocka_unit_test_teardown(test_body_over_cap, h_cleanup),
        cmocka_unit_test_teardown(test_content_length_mismatch, h_cleanup),
        cmocka_unit_test_teardown(test_header_list_too_large, h_cleanup),
        cmocka_unit_test_teardown(test_connect_refused, h_cleanup),
        cmocka_unit_test_teardown(test_garbage_preface, h_cleanup),
        cmocka_unit_test_teardown(test_continuation_flood, h_cleanup),
        cmocka_unit_test_teardown(test_ping_flood, h_cleanup),
        cmocka_unit_test_teardown(test_rapid_reset_flood, h_cleanup),
        cmocka_unit_test_teardown(test_output_failure, h_cleanup),
        cmocka_unit_test_teardown(test_default_allocator_and_bad_config, h_cleanup),
        cmocka_unit_test_teardown(test_idle_streaming_memory, h_cleanup),
        cmocka_unit_test_teardown(test_allocation_failures, h_cleanup),
    };

    return cmocka_run_group_tests_name("ts_h2_limits", tests, NULL, NULL);
}
