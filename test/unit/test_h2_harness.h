/* test_h2_harness.h: shared by the ts_h2 tests: a counting, failure-injecting allocator, and an
 * in-memory nghttp2 client wired to a server session, with recorders on both sides. */
#ifndef TEST_H2_HARNESS_H
#define TEST_H2_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_h2.h"

/* ---- a counting, failure-injecting allocator ---- */

typedef struct {
    size_t live, peak, allocs;
    size_t fail_at;             /* the n-th allocation (1-based) fails; 0: never */
} counter_t;

#define HDR 16                  /* keeps max_align_t alignment */

static void *cnt_malloc(size_t size, void *baton)
{
    counter_t *c = baton;
    uint8_t *p;

    if (c->fail_at && ++c->allocs == c->fail_at)
        return NULL;
    p = malloc(size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof(size));
    c->live += size;
    if (c->live > c->peak)
        c->peak = c->live;
    return p + HDR;
}

static void cnt_free(void *ptr, void *baton)
{
    counter_t *c = baton;
    size_t size;

    if (!ptr)
        return;
    memcpy(&size, (uint8_t *)ptr - HDR, sizeof(size));
    c->live -= size;
    free((uint8_t *)ptr - HDR);
}

static void *cnt_calloc(size_t nmemb, size_t size, void *baton)
{
    void *p = cnt_malloc(nmemb * size, baton);

    if (p)
        memset(p, 0, nmemb * size);
    return p;
}

static void *cnt_realloc(void *ptr, size_t size, void *baton)
{
    size_t old = 0;
    void *p;

    if (!ptr)
        return cnt_malloc(size, baton);
    memcpy(&old, (uint8_t *)ptr - HDR, sizeof(old));
    p = cnt_malloc(size, baton);
    if (!p)
        return NULL;
    memcpy(p, ptr, old < size ? old : size);
    cnt_free(ptr, baton);
    return p;
}

/* ---- the harness: one server session, one nghttp2 client, both in memory ---- */

#define MAX_STREAMS 16

typedef struct {                /* what the client saw on one stream */
    int32_t id;
    int status;
    char content_type[64];
    char retry_after[16];
    long long content_length;
    uint8_t *body;
    size_t len, cap;
    int ended, closed, rst_seen;
    uint32_t close_code;
} cstream_t;

typedef struct {                /* a request as the server's callback saw it */
    int32_t id;
    char method[16], path[128], authority[64], ctype[64];
    int has_ctype;
    int64_t clen;
    uint8_t body[8192];         /* the first bytes of the body */
    size_t body_len;
    uint32_t body_hash;         /* FNV-1a of the whole body */
    int body_nul;
    void *conn_ctx;
} sreq_t;

typedef struct {                /* a client request body, handed out by a data provider */
    const uint8_t *data;
    size_t len, off, first;     /* first: bytes to give before holding (0: all) */
    int hold;
    int trailer;                /* end the request with a trailer block instead */
} csrc_t;

typedef enum { ACT_NONE, ACT_ECHO, ACT_STREAM, ACT_TAKE_BODY } action_t;

typedef struct harness {
    ts_h2_session_t *srv;
    nghttp2_session *cli;
    ts_h2_config_t conf;
    counter_t mem_count;
    ts_h2_mem_t mem;
    action_t action;
    cstream_t cs[MAX_STREAMS];
    sreq_t req[MAX_STREAMS];
    int nreq;
    csrc_t src[MAX_STREAMS];
    int nsrc;
    struct { int32_t id; void *data; ts_h2_close_reason_t why; uint32_t code; } closed[MAX_STREAMS];
    int nclosed;
    int goaway_seen;
    int32_t goaway_last;
    uint32_t goaway_code;
    apr_status_t srv_rv;
    const char *srv_err;
    int quiet;                  /* many streams: count requests and closes, record nothing */
    int nquiet_req, nquiet_closed;
} harness_t;

static harness_t H;
static char conn_key[] = "mkey:the-client";

static cstream_t *cstream(harness_t *h, int32_t id)
{
    int i;

    for (i = 0; i < MAX_STREAMS; i++)
        if (h->cs[i].id == id)
            return &h->cs[i];
    for (i = 0; i < MAX_STREAMS; i++)
        if (h->cs[i].id == 0) {
            h->cs[i].id = id;
            h->cs[i].content_length = -1;
            return &h->cs[i];
        }
    fail_msg("too many client streams");
    return NULL;
}

/* Not every test file looks requests up by id. */
__attribute__((unused)) static sreq_t *sreq(harness_t *h, int32_t id)
{
    int i;

    for (i = 0; i < h->nreq; i++)
        if (h->req[i].id == id)
            return &h->req[i];
    fail_msg("stream %d never reached the handler", id);
    return NULL;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static uint32_t fnv1a(const uint8_t *p, size_t len)
{
    uint32_t h = 2166136261u;

    while (len--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

static void on_request(void *conn_ctx, ts_h2_session_t *sess, ts_h2_request_t *r)
{
    harness_t *h = &H;
    sreq_t *s;

    if (h->quiet) {
        h->nquiet_req++;
        return;
    }
    assert_true(h->nreq < MAX_STREAMS);
    s = &h->req[h->nreq++];
    s->id = r->stream_id;
    s->conn_ctx = r->conn_ctx;
    assert_ptr_equal(conn_ctx, r->conn_ctx);
    assert_ptr_equal(ts_h2_session_ctx(sess), conn_ctx);
    copy_str(s->method, sizeof(s->method), r->method);
    copy_str(s->path, sizeof(s->path), r->path);
    copy_str(s->authority, sizeof(s->authority), r->authority);
    s->has_ctype = r->content_type != NULL;
    copy_str(s->ctype, sizeof(s->ctype), r->content_type);
    s->clen = r->content_length;
    assert_true((r->body == NULL) == (r->body_len == 0));
    if (r->body_len) {
        memcpy(s->body, r->body, r->body_len < sizeof(s->body) ? r->body_len : sizeof(s->body));
        s->body_nul = r->body[r->body_len] == '\0';
        s->body_hash = fnv1a(r->body, r->body_len);
    }
    s->body_len = r->body_len;
    if (h->action == ACT_ECHO) {
        ts_h2_response_t head = { 200, "application/json", NULL, 0 };

        assert_int_equal(ts_h2_respond(sess, r->stream_id, &head, r->body, r->body_len),
                         APR_SUCCESS);
    } else if (h->action == ACT_STREAM) {
        ts_h2_response_t head = { 200, "application/octet-stream", NULL, 0 };

        assert_int_equal(ts_h2_stream_start(sess, r->stream_id, &head), APR_SUCCESS);
    } else if (h->action == ACT_TAKE_BODY) {
        size_t len;
        uint8_t *b = ts_h2_request_take_body(sess, r, &len);

        assert_int_equal(len, s->body_len);
        assert_null(r->body);
        assert_int_equal(fnv1a(b, len), s->body_hash);
        ts_h2_free(sess, b);
    }
}

static void on_closed(void *conn_ctx, int32_t id, void *data, ts_h2_close_reason_t why,
                      uint32_t code)
{
    harness_t *h = &H;

    assert_ptr_equal(conn_ctx, conn_key);
    if (h->quiet) {
        h->nquiet_closed++;
        return;
    }
    assert_true(h->nclosed < MAX_STREAMS);
    h->closed[h->nclosed].id = id;
    h->closed[h->nclosed].data = data;
    h->closed[h->nclosed].why = why;
    h->closed[h->nclosed].code = code;
    h->nclosed++;
}

/* ---- client callbacks ---- */

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
    cstream_t *c;

    (void)s, (void)flags, (void)namelen, (void)valuelen;
    if (((harness_t *)ud)->quiet)
        return 0;
    c = cstream(ud, f->hd.stream_id);
    if (!strcmp((const char *)name, ":status"))
        c->status = atoi((const char *)value);
    else if (!strcmp((const char *)name, "content-type"))
        copy_str(c->content_type, sizeof(c->content_type), (const char *)value);
    else if (!strcmp((const char *)name, "content-length"))
        c->content_length = atoll((const char *)value);
    else if (!strcmp((const char *)name, "retry-after"))
        copy_str(c->retry_after, sizeof(c->retry_after), (const char *)value);
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                     size_t len, void *ud)
{
    cstream_t *c;

    (void)s, (void)flags;
    if (((harness_t *)ud)->quiet)
        return 0;
    c = cstream(ud, id);
    if (c->len + len > c->cap) {
        c->cap = (c->len + len) * 2;
        c->body = realloc(c->body, c->cap);
        assert_non_null(c->body);
    }
    memcpy(c->body + c->len, data, len);
    c->len += len;
    return 0;
}

static int c_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    harness_t *h = ud;

    (void)s;
    if (h->quiet && f->hd.type != NGHTTP2_GOAWAY)
        return 0;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->goaway_seen++;
        h->goaway_last = f->goaway.last_stream_id;
        h->goaway_code = f->goaway.error_code;
    } else if (f->hd.type == NGHTTP2_RST_STREAM) {
        cstream(h, f->hd.stream_id)->rst_seen = 1;
    } else if (f->hd.stream_id && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        cstream(h, f->hd.stream_id)->ended = 1;
    }
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    cstream_t *c;

    (void)s;
    if (((harness_t *)ud)->quiet)
        return 0;
    c = cstream(ud, id);
    c->closed = 1;
    c->close_code = code;
    return 0;
}

static ssize_t c_body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *source, void *ud)
{
    csrc_t *b = source->ptr;
    size_t n = b->len - b->off;

    (void)ud;
    if (b->first && b->off >= b->first && b->hold)
        return NGHTTP2_ERR_DEFERRED;
    if (b->first && b->off < b->first && n > b->first - b->off)
        n = b->first - b->off;
    if (n > length)
        n = length;
    memcpy(buf, b->data + b->off, n);
    b->off += n;
    if (b->off == b->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (b->trailer) {
            nghttp2_nv nv = { (uint8_t *)"x-checksum", (uint8_t *)"abc", 10, 3, 0 };

            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            assert_int_equal(nghttp2_submit_trailer(s, id, &nv, 1), 0);
        }
    }
    return (ssize_t)n;
}

/* ---- setting up and pumping ---- */

static void client_new(harness_t *h, const nghttp2_settings_entry *iv, size_t niv,
                       int no_auto_window_update)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;

    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_option_set_no_auto_window_update(opt, no_auto_window_update);
    assert_int_equal(nghttp2_session_client_new2(&h->cli, cbs, h, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, iv, niv), 0);
}

/* conf may be NULL for the defaults; the harness always counts memory. */
static void h_init(const ts_h2_config_t *conf, const nghttp2_settings_entry *iv, size_t niv,
                   int no_auto_window_update)
{
    harness_t *h = &H;
    const char *err = NULL;

    memset(h, 0, sizeof(*h));
    if (conf)
        h->conf = *conf;
    h->conf.on_request = on_request;
    h->conf.on_closed = on_closed;
    h->mem = (ts_h2_mem_t){ &h->mem_count, cnt_malloc, cnt_free, cnt_calloc, cnt_realloc };
    h->conf.mem = &h->mem;
    assert_int_equal(ts_h2_session_create(&h->srv, &h->conf, conn_key, &err), APR_SUCCESS);
    client_new(h, iv, niv, no_auto_window_update);
}

static void h_fini(void)
{
    harness_t *h = &H;
    int i;

    ts_h2_session_destroy(h->srv);
    h->srv = NULL;
    nghttp2_session_del(h->cli);
    h->cli = NULL;
    for (i = 0; i < MAX_STREAMS; i++) {
        free(h->cs[i].body);
        h->cs[i].body = NULL;
    }
    assert_int_equal(h->mem_count.live, 0);
}

/* After a failed assertion h_fini did not run: release what is left without judging it. */
static int h_cleanup(void **state)
{
    harness_t *h = &H;
    int i;

    (void)state;
    ts_h2_session_destroy(h->srv);
    h->srv = NULL;
    nghttp2_session_del(h->cli);
    h->cli = NULL;
    for (i = 0; i < MAX_STREAMS; i++) {
        free(h->cs[i].body);
        h->cs[i].body = NULL;
    }
    return 0;
}

static apr_status_t to_client(void *baton, const uint8_t *data, size_t len)
{
    harness_t *h = baton;

    assert_int_equal(nghttp2_session_mem_recv(h->cli, data, len), (ssize_t)len);
    return APR_SUCCESS;
}

static size_t client_to_server(harness_t *h)
{
    const uint8_t *p;
    ssize_t n;
    size_t moved = 0;

    while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
        moved += (size_t)n;
        h->srv_rv = ts_h2_session_recv(h->srv, p, (size_t)n, &h->srv_err);
        if (h->srv_rv != APR_SUCCESS)
            break;
    }
    assert_true(n >= 0);
    return moved;
}

static size_t server_to_client(harness_t *h)
{
    const char *err = NULL;
    size_t sent = 0;

    assert_int_equal(ts_h2_session_send(h->srv, SIZE_MAX, to_client, h, &sent, &err),
                     APR_SUCCESS);
    return sent;
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(void)
{
    harness_t *h = &H;

    for (;;) {
        size_t moved = client_to_server(h);

        if (h->srv_rv != APR_SUCCESS)
            return;
        moved += server_to_client(h);
        if (!moved)
            return;
    }
}

static void hdr(nghttp2_nv *nv, const char *name, const char *value)
{
    nv->name = (uint8_t *)name;
    nv->namelen = strlen(name);
    nv->value = (uint8_t *)value;
    nv->valuelen = strlen(value);
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* extra: optional "name", "value" pairs, NULL-terminated. */
static int32_t request_ex(const char *method, const char *path, const char *authority,
                          const char *ctype, const char *clen, const void *body, size_t len,
                          size_t first, const char *const *extra)
{
    harness_t *h = &H;
    nghttp2_nv nv[12];
    nghttp2_data_provider prd;
    size_t n = 0;
    int32_t id;

    hdr(&nv[n++], ":method", method);
    hdr(&nv[n++], ":scheme", "https");
    hdr(&nv[n++], ":path", path);
    if (authority)
        hdr(&nv[n++], ":authority", authority);
    if (ctype)
        hdr(&nv[n++], "content-type", ctype);
    if (clen)
        hdr(&nv[n++], "content-length", clen);
    while (extra && *extra) {
        hdr(&nv[n++], extra[0], extra[1]);
        extra += 2;
    }
    if (body) {
        csrc_t *b = &h->src[h->nsrc++];

        *b = (csrc_t){ body, len, 0, first, first != 0, 0 };
        prd.source.ptr = b;
        prd.read_callback = c_body_read;
    }
    id = nghttp2_submit_request(h->cli, NULL, nv, n, body ? &prd : NULL, NULL);
    assert_true(id > 0);
    return id;
}

static int32_t request(const char *method, const char *path, const char *ctype, const void *body,
                       size_t len)
{
    return request_ex(method, path, "unused", ctype, NULL, body, len, 0, NULL);
}

static void assert_body(const cstream_t *c, const void *want, size_t len)
{
    assert_int_equal(c->len, len);
    if (len)
        assert_memory_equal(c->body, want, len);
}

static const ts_h2_response_t head_200 = { 200, "application/json", NULL, 0 };
static const ts_h2_response_t head_stream = { 200, "application/octet-stream", NULL, 0 };

typedef struct {
    uint8_t buf[256];
    size_t len;
} capture_t;

static apr_status_t to_capture(void *baton, const uint8_t *data, size_t len)
{
    capture_t *c = baton;

    assert_true(c->len + len <= sizeof(c->buf));
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    return APR_SUCCESS;
}

/* A client with a 100-byte stream window that never opens it by itself. */
static const nghttp2_settings_entry tiny_window[] = {
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 100 },
};

#endif
