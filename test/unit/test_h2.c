/* test_h2.c: the HTTP/2 server session core against an in-memory nghttp2 client: requests and
 * their fields, complete and streaming responses, flow control, resets and shutdown. */
#include "test_h2_harness.h"

static void test_preface_and_settings(void **state)
{
    harness_t *h = &H;
    capture_t cap = { { 0 }, 0 };
    const char *err = NULL;
    size_t sent = 0;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    /* The server speaks first: SETTINGS (type 4, stream 0) without waiting for the client. */
    assert_true(ts_h2_session_want_write(h->srv));
    assert_int_equal(ts_h2_session_send(h->srv, SIZE_MAX, to_capture, &cap, &sent, &err),
                     APR_SUCCESS);
    assert_int_equal(sent, cap.len);
    assert_true(cap.len >= 9 + 18);
    assert_int_equal(cap.buf[3], NGHTTP2_SETTINGS);
    assert_int_equal(cap.buf[5] | cap.buf[6] | cap.buf[7] | cap.buf[8], 0);
    assert_int_equal((cap.buf[0] << 16) | (cap.buf[1] << 8) | cap.buf[2], 18);  /* 3 settings */
    assert_int_equal(nghttp2_session_mem_recv(h->cli, cap.buf, cap.len), (ssize_t)cap.len);
    pump();
    assert_int_equal(h->srv_rv, APR_SUCCESS);
    assert_int_equal(nghttp2_session_get_remote_settings(h->cli,
                     NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), TS_H2_DEFAULT_MAX_STREAMS);
    assert_int_equal(nghttp2_session_get_remote_settings(h->cli,
                     NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), TS_H2_DEFAULT_MAX_HEADER_LIST);
    assert_int_equal(nghttp2_session_get_remote_settings(h->cli,
                     NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), TS_H2_DEFAULT_STREAM_WINDOW);
    assert_int_equal(nghttp2_session_get_remote_window_size(h->cli), TS_H2_DEFAULT_CONN_WINDOW);
    /* both SETTINGS acknowledged: nothing left to say, still listening */
    assert_false(ts_h2_session_want_write(h->srv));
    assert_false(nghttp2_session_want_write(h->cli));
    assert_true(ts_h2_session_want_read(h->srv));
    assert_false(ts_h2_session_finished(h->srv));
    assert_int_equal(h->nreq, 0);
    h_fini();
}

static void test_get_and_post_reach_handler(void **state)
{
    harness_t *h = &H;
    static const char json[] = "{\"Version\":145,\"NodeKey\":\"nodekey:ab\"}";
    static const char *const lb[] = { "ts-lb", "nodekey:ab", NULL };
    char clen[24];
    int32_t g, p;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    g = request_ex("GET", "/machine/whoami", "example.com:80", NULL, NULL, NULL, 0, 0, NULL);
    snprintf(clen, sizeof(clen), "%zu", strlen(json));
    p = request_ex("POST", "/machine/register", "unused", "application/json", clen, json,
                   strlen(json), 0, lb);
    pump();
    assert_int_equal(h->nreq, 2);

    assert_int_equal(h->req[0].id, g);
    assert_string_equal(h->req[0].method, "GET");
    assert_string_equal(h->req[0].path, "/machine/whoami");
    assert_string_equal(h->req[0].authority, "example.com:80");
    assert_false(h->req[0].has_ctype);
    assert_int_equal(h->req[0].clen, -1);
    assert_int_equal(h->req[0].body_len, 0);
    assert_ptr_equal(h->req[0].conn_ctx, conn_key);

    assert_int_equal(h->req[1].id, p);
    assert_string_equal(h->req[1].method, "POST");
    assert_string_equal(h->req[1].path, "/machine/register");
    assert_string_equal(h->req[1].authority, "unused");
    assert_string_equal(h->req[1].ctype, "application/json");
    assert_int_equal(h->req[1].clen, (int64_t)strlen(json));
    assert_int_equal(h->req[1].body_len, strlen(json));
    assert_memory_equal(h->req[1].body, json, strlen(json));
    assert_true(h->req[1].body_nul);
    /* a body without content-length arrives just the same */
    request("POST", "/machine/map", NULL, json, strlen(json));
    pump();
    assert_int_equal(h->nreq, 3);
    assert_false(h->req[2].has_ctype);
    assert_int_equal(h->req[2].clen, -1);
    assert_int_equal(h->req[2].body_len, strlen(json));
    h_fini();
}

static void test_body_assembly(void **state)
{
    harness_t *h = &H;
    static uint8_t big[TS_H2_DEFAULT_MAX_BODY];
    static const char *const host[] = { "host", "controlplane.example:8080", NULL };
    int32_t a, b, c;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i % 251);
    h_init(NULL, NULL, 0, 0);
    /* many DATA frames, no length known: the buffer grows to exactly the cap */
    a = request("POST", "/machine/map", NULL, big, sizeof(big));
    /* length declared: one buffer of that size */
    b = request_ex("POST", "/machine/map", "unused", NULL, "5000", big, 5000, 0, NULL);
    /* no :authority, only host */
    c = request_ex("GET", "/machine/whoami", NULL, NULL, NULL, NULL, 0, 0, host);
    pump();
    assert_int_equal(h->nreq, 3);
    assert_int_equal(sreq(h, a)->body_len, sizeof(big));
    assert_int_equal(sreq(h, a)->body_hash, fnv1a(big, sizeof(big)));
    assert_true(sreq(h, a)->body_nul);
    assert_int_equal(sreq(h, b)->body_len, 5000);
    assert_int_equal(sreq(h, b)->clen, 5000);
    assert_int_equal(sreq(h, b)->body_hash, fnv1a(big, 5000));
    assert_string_equal(sreq(h, c)->authority, "controlplane.example:8080");
    h_fini();
}

/* A request can end with a trailer block rather than with DATA. */
static void test_request_trailers(void **state)
{
    harness_t *h = &H;
    int32_t id;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    id = request("POST", "/machine/audit-log", NULL, "{\"a\":1}", 7);
    h->src[h->nsrc - 1].trailer = 1;
    pump();
    assert_int_equal(h->nreq, 1);
    assert_int_equal(h->req[0].id, id);
    assert_int_equal(h->req[0].body_len, 7);
    assert_memory_equal(h->req[0].body, "{\"a\":1}", 7);
    h_fini();
}

static void test_concurrent_streams(void **state)
{
    harness_t *h = &H;
    static char path[6][32];    /* request bodies must outlive the client's sending */
    int32_t id[6];
    char body[6][160];
    int i;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    for (i = 0; i < 6; i++) {
        snprintf(path[i], sizeof(path[i]), "/machine/r%d", i);
        id[i] = request("POST", path[i], NULL, path[i], strlen(path[i]));
    }
    pump();
    assert_int_equal(h->nreq, 6);
    /* answer in reverse order; every answer must land on its own stream */
    for (i = 5; i >= 0; i--) {
        snprintf(body[i], sizeof(body[i]), "answer to %s", h->req[i].path);
        assert_int_equal(h->req[i].id, id[i]);
        assert_int_equal(ts_h2_respond(h->srv, id[i], &head_200, (const uint8_t *)body[i],
                                       strlen(body[i])), APR_SUCCESS);
    }
    pump();
    for (i = 0; i < 6; i++) {
        cstream_t *c = cstream(h, id[i]);

        assert_int_equal(c->status, 200);
        assert_true(c->ended);
        assert_body(c, body[i], strlen(body[i]));
    }
    assert_int_equal(h->nclosed, 6);
    for (i = 0; i < 6; i++)
        assert_int_equal(h->closed[i].why, TS_H2_CLOSE_COMPLETE);
    h_fini();
}

static void test_complete_response(void **state)
{
    harness_t *h = &H;
    static const ts_h2_header_t extra[] = { { "retry-after", "30" } };
    ts_h2_response_t head = { 429, "application/json", extra, 1 };
    uint8_t *big = malloc(100000);
    cstream_t *c;
    int32_t id;
    size_t i;

    (void)state;
    assert_non_null(big);
    for (i = 0; i < 100000; i++)
        big[i] = (uint8_t)(i * 7);
    h_init(NULL, NULL, 0, 0);
    id = request("POST", "/machine/register", NULL, "{}", 2);
    pump();
    assert_int_equal(h->nreq, 1);
    assert_int_equal(ts_h2_respond(h->srv, id, &head, big, 100000), APR_SUCCESS);
    assert_int_equal(ts_h2_session_queued(h->srv), 100000);
    memset(big, 0, 100000);     /* the session copied it: scribbling now must not show */
    pump();
    c = cstream(h, id);
    assert_int_equal(c->status, 429);
    assert_string_equal(c->content_type, "application/json");
    assert_int_equal(c->content_length, 100000);
    assert_true(c->ended);
    assert_int_equal(c->len, 100000);
    for (i = 0; i < 100000; i++)
        if (c->body[i] != (uint8_t)(i * 7))
            fail_msg("body byte %zu differs", i);
    assert_int_equal(ts_h2_session_queued(h->srv), 0);
    assert_int_equal(h->nclosed, 1);
    assert_int_equal(h->closed[0].id, id);
    assert_int_equal(h->closed[0].why, TS_H2_CLOSE_COMPLETE);
    assert_int_equal(h->closed[0].code, NGHTTP2_NO_ERROR);
    /* the stream is gone: its id is dead */
    assert_int_equal(ts_h2_respond(h->srv, id, &head_200, NULL, 0), APR_NOTFOUND);
    free(big);
    h_fini();
}

static void test_streaming_response(void **state)
{
    harness_t *h = &H;
    static const char *const chunks[] = { "\x05\0\0\0hello", "\x03\0\0\0abc", "\x02\0\0\0{}" };
    char want[64] = "";
    size_t wantlen = 0;
    cstream_t *c;
    int32_t id;
    int i;
    static int marker;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    h->action = ACT_STREAM;
    id = request("POST", "/machine/map", NULL, "{\"Stream\":true}", 15);
    pump();
    assert_int_equal(h->nreq, 1);
    assert_int_equal(ts_h2_stream_set_data(h->srv, id, &marker), APR_SUCCESS);
    assert_ptr_equal(ts_h2_stream_data(h->srv, id), &marker);
    c = cstream(h, id);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->content_length, -1);
    assert_int_equal(c->len, 0);
    assert_false(c->ended);
    /* parked: nothing to send until the next write */
    assert_false(ts_h2_session_want_write(h->srv));
    for (i = 0; i < 3; i++) {
        size_t len = 4 + (size_t)chunks[i][0];

        assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)chunks[i], len),
                         APR_SUCCESS);
        assert_int_equal(ts_h2_stream_queued(h->srv, id), len);
        assert_true(ts_h2_session_want_write(h->srv));
        pump();
        memcpy(want + wantlen, chunks[i], len);
        wantlen += len;
        assert_body(c, want, wantlen);
        assert_false(c->ended);
        assert_int_equal(ts_h2_session_queued(h->srv), 0);
    }
    /* two writes before one flush coalesce fine */
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"xy", 2), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"z", 1), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_end(h->srv, id), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"late", 4), APR_EINVAL);
    pump();
    memcpy(want + wantlen, "xyz", 3);
    assert_body(c, want, wantlen + 3);
    assert_true(c->ended);
    assert_int_equal(h->nclosed, 1);
    assert_ptr_equal(h->closed[0].data, &marker);
    assert_int_equal(h->closed[0].why, TS_H2_CLOSE_COMPLETE);
    h_fini();
}

static void test_flow_control(void **state)
{
    harness_t *h = &H;
    uint8_t data[1000];
    cstream_t *c;
    int32_t id;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i;
    h_init(NULL, tiny_window, 1, 1);
    h->action = ACT_STREAM;
    id = request("POST", "/machine/map", NULL, "{}", 2);
    pump();
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, sizeof(data)), APR_SUCCESS);
    pump();
    c = cstream(h, id);
    assert_body(c, data, 100);  /* the window, not a byte more */
    assert_int_equal(ts_h2_stream_queued(h->srv, id), 900);
    assert_int_equal(ts_h2_session_queued(h->srv), 900);
    assert_false(ts_h2_session_want_write(h->srv));
    /* writes keep queueing behind the closed window */
    assert_int_equal(ts_h2_stream_write(h->srv, id, data, 10), APR_SUCCESS);
    pump();
    assert_int_equal(c->len, 100);
    assert_int_equal(ts_h2_stream_queued(h->srv, id), 910);
    /* the client reads and opens its window: part, then the rest */
    assert_int_equal(nghttp2_submit_window_update(h->cli, NGHTTP2_FLAG_NONE, id, 400), 0);
    pump();
    assert_body(c, data, 500);
    assert_int_equal(ts_h2_stream_queued(h->srv, id), 510);
    assert_int_equal(nghttp2_submit_window_update(h->cli, NGHTTP2_FLAG_NONE, id, 10000), 0);
    pump();
    assert_int_equal(c->len, 1010);
    assert_memory_equal(c->body, data, 1000);
    assert_memory_equal(c->body + 1000, data, 10);
    assert_int_equal(ts_h2_session_queued(h->srv), 0);
    assert_false(c->ended);
    h_fini();
}

static void test_head_request(void **state)
{
    harness_t *h = &H;
    cstream_t *c;
    int32_t a, b;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    a = request("HEAD", "/ping/1", NULL, NULL, 0);
    b = request("HEAD", "/ping/2", NULL, NULL, 0);
    pump();
    assert_int_equal(h->nreq, 2);
    assert_int_equal(ts_h2_respond(h->srv, a, &head_200, (const uint8_t *)"abc", 3), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_start(h->srv, b, &head_stream), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_write(h->srv, b, (const uint8_t *)"dropped", 7), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_end(h->srv, b), APR_SUCCESS);
    pump();
    c = cstream(h, a);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->content_length, 3);
    assert_int_equal(c->len, 0);
    assert_true(c->ended);
    c = cstream(h, b);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->len, 0);
    assert_true(c->ended);
    assert_int_equal(ts_h2_session_queued(h->srv), 0);
    h_fini();
}

static void test_take_body(void **state)
{
    harness_t *h = &H;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    h->action = ACT_TAKE_BODY;
    request("POST", "/machine/set-dns", NULL, "{\"Type\":\"TXT\"}", 14);
    pump();
    assert_int_equal(h->nreq, 1);
    assert_int_equal(h->req[0].body_len, 14);
    h_fini();                   /* the taken body was freed by the handler: no bytes left */
}

static void test_misuse(void **state)
{
    harness_t *h = &H;
    static const ts_h2_header_t upper[] = { { "Retry-After", "1" } };
    static const ts_h2_header_t crlf[] = { { "x-a", "1\r\nx-b: 2" } };
    ts_h2_response_t bad_status = { 99, NULL, NULL, 0 };
    ts_h2_response_t bad_name = { 200, NULL, upper, 1 };
    ts_h2_response_t bad_value = { 200, NULL, crlf, 1 };
    int32_t id;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    assert_int_equal(ts_h2_respond(h->srv, 1, &head_200, NULL, 0), APR_NOTFOUND);
    assert_int_equal(ts_h2_stream_write(h->srv, 0, (const uint8_t *)"x", 1), APR_NOTFOUND);
    assert_int_equal(ts_h2_stream_write(h->srv, -1, (const uint8_t *)"x", 1), APR_NOTFOUND);
    id = request("GET", "/machine/whoami", NULL, NULL, 0);
    pump();
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"x", 1), APR_EINVAL);
    assert_int_equal(ts_h2_stream_end(h->srv, id), APR_EINVAL);
    assert_int_equal(ts_h2_respond(h->srv, id, &bad_status, NULL, 0), APR_EINVAL);
    assert_int_equal(ts_h2_respond(h->srv, id, &bad_name, NULL, 0), APR_EINVAL);
    assert_int_equal(ts_h2_respond(h->srv, id, &bad_value, NULL, 0), APR_EINVAL);
    assert_int_equal(ts_h2_respond(h->srv, id, &head_200, NULL, 5), APR_EINVAL);
    assert_int_equal(ts_h2_session_queued(h->srv), 0);
    assert_int_equal(ts_h2_respond(h->srv, id, &head_200, (const uint8_t *)"{}", 2), APR_SUCCESS);
    assert_int_equal(ts_h2_respond(h->srv, id, &head_200, NULL, 0), APR_EINVAL);
    assert_int_equal(ts_h2_stream_start(h->srv, id, &head_stream), APR_EINVAL);
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"x", 1), APR_EINVAL);
    pump();
    assert_int_equal(cstream(h, id)->status, 200);
    assert_body(cstream(h, id), "{}", 2);
    h_fini();
}

static void test_send_budget(void **state)
{
    harness_t *h = &H;
    static uint8_t big[50000];
    const char *err = NULL;
    size_t sent = 0;
    int32_t id;

    (void)state;
    memset(big, 'q', sizeof(big));
    h_init(NULL, NULL, 0, 0);
    id = request("GET", "/machine/whoami", NULL, NULL, 0);
    pump();
    assert_int_equal(ts_h2_respond(h->srv, id, &head_200, big, sizeof(big)), APR_SUCCESS);
    assert_int_equal(ts_h2_session_send(h->srv, 100, to_client, h, &sent, &err), APR_SUCCESS);
    assert_true(sent >= 100);
    assert_true(sent < 100 + 16384 + 9);
    assert_true(ts_h2_session_want_write(h->srv));
    pump();
    assert_body(cstream(h, id), big, sizeof(big));
    h_fini();
}

static void test_client_reset_streaming(void **state)
{
    harness_t *h = &H;
    static int sub;
    int32_t id;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    h->action = ACT_STREAM;
    id = request("POST", "/machine/map", NULL, "{}", 2);
    pump();
    assert_int_equal(ts_h2_stream_set_data(h->srv, id, &sub), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"abc", 3), APR_SUCCESS);
    pump();
    assert_int_equal(cstream(h, id)->len, 3);
    assert_int_equal(h->nclosed, 0);
    assert_int_equal(nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL), 0);
    pump();
    assert_int_equal(h->nclosed, 1);
    assert_int_equal(h->closed[0].id, id);
    assert_ptr_equal(h->closed[0].data, &sub);
    assert_int_equal(h->closed[0].why, TS_H2_CLOSE_RESET);
    assert_int_equal(h->closed[0].code, NGHTTP2_CANCEL);
    /* the id is dead for every verb */
    assert_int_equal(ts_h2_stream_write(h->srv, id, (const uint8_t *)"x", 1), APR_NOTFOUND);
    assert_int_equal(ts_h2_stream_end(h->srv, id), APR_NOTFOUND);
    assert_int_equal(ts_h2_stream_reset(h->srv, id, 0), APR_NOTFOUND);
    assert_null(ts_h2_stream_data(h->srv, id));
    assert_true(ts_h2_session_want_read(h->srv));
    h_fini();
}

static void test_goaway_drain(void **state)
{
    harness_t *h = &H;
    const uint8_t *p;
    uint8_t held[512];
    size_t heldlen = 0;
    ssize_t n;
    const char *err = NULL;
    int32_t first, late;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    h->action = ACT_STREAM;
    first = request("POST", "/machine/map", NULL, "{}", 2);
    pump();
    assert_int_equal(h->nreq, 1);
    /* a request on the wire while the server decides to drain */
    late = request("GET", "/machine/whoami", NULL, NULL, 0);
    while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
        assert_true(heldlen + (size_t)n <= sizeof(held));
        memcpy(held + heldlen, p, (size_t)n);
        heldlen += (size_t)n;
    }
    assert_int_equal(ts_h2_session_drain(h->srv), APR_SUCCESS);
    server_to_client(h);
    assert_int_equal(h->goaway_seen, 1);
    assert_int_equal(h->goaway_last, first);
    assert_int_equal(h->goaway_code, NGHTTP2_NO_ERROR);
    assert_int_equal(cstream(h, late)->close_code, NGHTTP2_REFUSED_STREAM);
    assert_int_equal(ts_h2_session_recv(h->srv, held, heldlen, &err), APR_SUCCESS);
    pump();
    assert_int_equal(h->nreq, 1);    /* the late request was not taken */
    /* the running stream is not cut off; the session ends when it does */
    assert_false(ts_h2_session_finished(h->srv));
    assert_int_equal(ts_h2_stream_write(h->srv, first, (const uint8_t *)"last", 4), APR_SUCCESS);
    assert_int_equal(ts_h2_stream_end(h->srv, first), APR_SUCCESS);
    pump();
    assert_body(cstream(h, first), "last", 4);
    assert_true(cstream(h, first)->ended);
    assert_true(ts_h2_session_finished(h->srv));
    h_fini();
}

static void test_terminate(void **state)
{
    harness_t *h = &H;

    (void)state;
    h_init(NULL, NULL, 0, 0);
    h->action = ACT_STREAM;
    request("POST", "/machine/map", NULL, "{}", 2);
    pump();
    assert_int_equal(ts_h2_session_terminate(h->srv, NGHTTP2_ENHANCE_YOUR_CALM), APR_SUCCESS);
    assert_false(ts_h2_session_want_read(h->srv));
    assert_true(ts_h2_session_want_write(h->srv));
    /* a request already on its way is not taken any more */
    request("GET", "/machine/whoami", NULL, NULL, 0);
    client_to_server(h);
    assert_int_equal(h->srv_rv, APR_SUCCESS);
    assert_int_equal(h->nreq, 1);
    server_to_client(h);
    assert_int_equal(h->goaway_seen, 1);
    assert_int_equal(h->goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(ts_h2_session_finished(h->srv));
    /* the open stream is reported when the session goes */
    assert_int_equal(h->nclosed, 0);
    ts_h2_session_destroy(h->srv);
    h->srv = NULL;
    assert_int_equal(h->nclosed, 1);
    assert_int_equal(h->closed[0].why, TS_H2_CLOSE_SESSION);
    h_fini();
}

static void test_destroy_with_open_streams(void **state)
{
    harness_t *h = &H;
    int32_t a, b;

    (void)state;
    h_init(NULL, tiny_window, 1, 1);
    h->action = ACT_STREAM;
    a = request("POST", "/machine/map", NULL, "{}", 2);
    b = request("POST", "/machine/map", NULL, "{}", 2);
    /* a request still arriving: the caller never saw it, so it hears nothing of it */
    request_ex("POST", "/machine/map", "unused", NULL, NULL, "0123456789", 10, 4, NULL);
    pump();
    assert_int_equal(h->nreq, 2);
    assert_int_equal(ts_h2_stream_write(h->srv, a, (const uint8_t *)"0123456789", 10),
                     APR_SUCCESS);
    {
        static uint8_t lots[3000];

        assert_int_equal(ts_h2_stream_write(h->srv, b, lots, sizeof(lots)), APR_SUCCESS);
    }
    pump();
    assert_int_equal(ts_h2_session_queued(h->srv), 2900);
    ts_h2_session_destroy(h->srv);
    h->srv = NULL;
    assert_int_equal(h->nclosed, 2);
    assert_int_equal(h->closed[0].why, TS_H2_CLOSE_SESSION);
    assert_int_equal(h->closed[1].why, TS_H2_CLOSE_SESSION);
    assert_true((h->closed[0].id == a && h->closed[1].id == b)
                || (h->closed[0].id == b && h->closed[1].id == a));
    h_fini();                   /* and every byte, queued or not, was freed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_preface_and_settings, h_cleanup),
        cmocka_unit_test_teardown(test_get_and_post_reach_handler, h_cleanup),
        cmocka_unit_test_teardown(test_body_assembly, h_cleanup),
        cmocka_unit_test_teardown(test_request_trailers, h_cleanup),
        cmocka_unit_test_teardown(test_concurrent_streams, h_cleanup),
        cmocka_unit_test_teardown(test_complete_response, h_cleanup),
        cmocka_unit_test_teardown(test_streaming_response, h_cleanup),
        cmocka_unit_test_teardown(test_flow_control, h_cleanup),
        cmocka_unit_test_teardown(test_head_request, h_cleanup),
        cmocka_unit_test_teardown(test_take_body, h_cleanup),
        cmocka_unit_test_teardown(test_misuse, h_cleanup),
        cmocka_unit_test_teardown(test_send_budget, h_cleanup),
        cmocka_unit_test_teardown(test_client_reset_streaming, h_cleanup),
        cmocka_unit_test_teardown(test_goaway_drain, h_cleanup),
        cmocka_unit_test_teardown(test_terminate, h_cleanup),
        cmocka_unit_test_teardown(test_destroy_with_open_streams, h_cleanup),
    };

    return cmocka_run_group_tests_name("ts_h2", tests, NULL, NULL);
}
