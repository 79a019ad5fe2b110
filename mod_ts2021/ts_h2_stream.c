/* ts_h2_stream.c: one HTTP/2 stream of the server session: request assembly with its caps, the
 * answers the core gives itself (400, 413, 431), response heads and the queued response body. */
#include <stdio.h>
#include <string.h>

#include "ts_h2_int.h"

#define BODY_MIN_ALLOC 1024

/* ---- list and lifetime ---- */

static void link_stream(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    st->next = sess->streams;
    if (sess->streams)
        sess->streams->prev = st;
    sess->streams = st;
}

static void unlink_stream(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        sess->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
}

static void reqbuf_free(ts_h2_session_t *sess, ts_h2_reqbuf_t *r)
{
    if (!r)
        return;
    ts_h2_free(sess, r->method);
    ts_h2_free(sess, r->path);
    ts_h2_free(sess, r->authority);
    ts_h2_free(sess, r->host);
    ts_h2_free(sess, r->content_type);
    ts_h2_free(sess, r->body);
    ts_h2_free(sess, r);
}

static void queue_drop(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    while (st->first) {
        ts_h2_chunk_t *c = st->first;

        st->first = c->next;
        ts_h2_free(sess, c);
    }
    st->last = NULL;
    sess->queued -= st->queued;
    st->queued = 0;
}

static void stream_free(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    unlink_stream(sess, st);
    queue_drop(sess, st);
    reqbuf_free(sess, st->req);
    ts_h2_free(sess, st);
}

void ts_h2_stream_gone(ts_h2_session_t *sess, ts_h2_stream_t *st, ts_h2_close_reason_t why,
                       uint32_t error_code)
{
    /* Only streams the caller has seen are its business. */
    if (st->req_phase == TS_H2_REQ_DISPATCHED && sess->conf.on_closed)
        sess->conf.on_closed(sess->conn_ctx, st->id, st->user_data, why, error_code);
    stream_free(sess, st);
}

int ts_h2_stream_begin(ts_h2_session_t *sess, int32_t id)
{
    ts_h2_stream_t *st = ts_h2_zalloc(sess, sizeof(*st));

    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* resets this stream only */
    st->req = ts_h2_zalloc(sess, sizeof(*st->req));
    if (!st->req) {
        ts_h2_free(sess, st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->id = id;
    st->req->content_length = -1;
    link_stream(sess, st);
    if (nghttp2_session_set_stream_user_data(sess->ngh, id, st) != 0) {
        stream_free(sess, st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* ---- the response queue ---- */

static apr_status_t queue_append(ts_h2_session_t *sess, ts_h2_stream_t *st, const uint8_t *data,
                                 size_t len)
{
    ts_h2_chunk_t *c = ts_h2_alloc(sess, sizeof(*c) + len);

    if (!c)
        return APR_ENOMEM;
    c->next = NULL;
    c->len = len;
    c->off = 0;
    memcpy(c->data, data, len);
    if (st->last)
        st->last->next = c;
    else
        st->first = c;
    st->last = c;
    st->queued += len;
    sess->queued += len;
    return APR_SUCCESS;
}

static size_t queue_take(ts_h2_session_t *sess, ts_h2_stream_t *st, uint8_t *buf, size_t cap)
{
    size_t n = 0;

    while (n < cap && st->first) {
        ts_h2_chunk_t *c = st->first;
        size_t k = c->len - c->off;

        if (k > cap - n)
            k = cap - n;
        memcpy(buf + n, c->data + c->off, k);
        c->off += k;
        n += k;
        if (c->off == c->len) {
            st->first = c->next;
            ts_h2_free(sess, c);
        }
    }
    if (!st->first)
        st->last = NULL;
    st->queued -= n;
    sess->queued -= n;
    return n;
}

/* nghttp2 asks for at most what the client's windows and its frame size allow, so queued bytes
 * simply wait here for WINDOW_UPDATE. An empty queue parks the stream until the next write. */
static ssize_t data_read(nghttp2_session *ngh, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    ts_h2_stream_t *st = source->ptr;
    size_t n = queue_take(user_data, st, buf, length);

    (void)ngh;
    (void)stream_id;
    if (st->queued == 0) {
        if (st->resp_phase == TS_H2_RESP_ENDING)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        else if (n == 0) {
            st->deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

static apr_status_t resume(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    if (!st->deferred)
        return APR_SUCCESS;
    st->deferred = 0;
    return nghttp2_session_resume_data(sess->ngh, st->id) == NGHTTP2_ERR_NOMEM ? APR_ENOMEM
                                                                               : APR_SUCCESS;
}

/* ---- response heads ---- */

static int head_valid(const ts_h2_response_t *head)
{
    size_t i;

    if (head->status < 200 || head->status > 599)
        return 0;
    if (head->content_type
        && !nghttp2_check_header_value((const uint8_t *)head->content_type,
                                       strlen(head->content_type)))
        return 0;
    for (i = 0; i < head->nheaders; i++) {
        const ts_h2_header_t *h = &head->headers[i];

        if (!h->name || !h->value
            || !nghttp2_check_header_name((const uint8_t *)h->name, strlen(h->name))
            || !nghttp2_check_header_value((const uint8_t *)h->value, strlen(h->value)))
            return 0;
    }
    return 1;
}

static nghttp2_nv nv_make(const char *name, const char *value)
{
    nghttp2_nv nv;

    nv.name = (uint8_t *)name;
    nv.namelen = strlen(name);
    nv.value = (uint8_t *)value;
    nv.valuelen = strlen(value);
    nv.flags = NGHTTP2_NV_FLAG_NONE;
    return nv;
}

/* content_length < 0: none (a streaming body). with_body: attach our data provider. */
static apr_status_t submit_head(ts_h2_session_t *sess, ts_h2_stream_t *st,
                                const ts_h2_response_t *head, int64_t content_length,
                                int with_body)
{
    char status[8], clen[24];
    nghttp2_data_provider prd;
    nghttp2_nv *nva;
    size_t n = 0, i;
    int rv;

    if (!head_valid(head))
        return APR_EINVAL;
    nva = ts_h2_alloc(sess, (head->nheaders + 3) * sizeof(*nva));
    if (!nva)
        return APR_ENOMEM;
    snprintf(status, sizeof(status), "%d", head->status);
    nva[n++] = nv_make(":status", status);
    if (head->content_type)
        nva[n++] = nv_make("content-type", head->content_type);
    for (i = 0; i < head->nheaders; i++)
        nva[n++] = nv_make(head->headers[i].name, head->headers[i].value);
    if (content_length >= 0) {
        snprintf(clen, sizeof(clen), "%lld", (long long)content_length);
        nva[n++] = nv_make("content-length", clen);
    }
    prd.source.ptr = st;
    prd.read_callback = data_read;
    /* nghttp2 copies the header block, so the local buffers may go right after */
    rv = nghttp2_submit_response(sess->ngh, st->id, nva, n, with_body ? &prd : NULL);
    ts_h2_free(sess, nva);
    if (rv != 0)
        return rv == NGHTTP2_ERR_NOMEM ? APR_ENOMEM : APR_EINVAL;
    return APR_SUCCESS;
}

/* A whole response in one go; used by handlers and by the core's own refusals. */
static apr_status_t submit_complete(ts_h2_session_t *sess, ts_h2_stream_t *st,
                                    const ts_h2_response_t *head, const uint8_t *body,
                                    size_t len)
{
    int with_body = len > 0 && !st->is_head;
    apr_status_t rv;

    if (with_body && (rv = queue_append(sess, st, body, len)) != APR_SUCCESS)
        return rv;
    rv = submit_head(sess, st, head, (int64_t)len, with_body);
    if (rv != APR_SUCCESS) {
        queue_drop(sess, st);
        return rv;
    }
    st->resp_phase = TS_H2_RESP_ENDING;
    return APR_SUCCESS;
}

/* ---- request assembly ---- */

/* Gives up on a request the handler has not seen (out of memory). Frame and data callbacks
 * cannot ask nghttp2 for a stream reset by return value, so submit it; only a failure to do
 * even that is fatal. */
static int abandon(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    reqbuf_free(sess, st->req);
    st->req = NULL;
    queue_drop(sess, st);
    st->req_phase = TS_H2_REQ_REJECTED;
    st->resp_phase = TS_H2_RESP_RESET;
    return nghttp2_submit_rst_stream(sess->ngh, NGHTTP2_FLAG_NONE, st->id,
                                     NGHTTP2_INTERNAL_ERROR) == 0 ? 0
                                                                  : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* The core answers this request itself; the handler never sees it. */
static int reject(ts_h2_session_t *sess, ts_h2_stream_t *st, int status, const char *text)
{
    ts_h2_response_t head = { status, "text/plain; charset=utf-8", NULL, 0 };

    reqbuf_free(sess, st->req);
    st->req = NULL;
    st->req_phase = TS_H2_REQ_REJECTED;
    if (submit_complete(sess, st, &head, (const uint8_t *)text, strlen(text)) != APR_SUCCESS)
        return abandon(sess, st);
    return 0;
}

static int keep(ts_h2_session_t *sess, char **field, const uint8_t *value, size_t len)
{
    if (*field)
        return 0;               /* the first one wins; nghttp2 already refuses repeated pseudo */
    *field = ts_h2_alloc(sess, len + 1);
    if (!*field)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    memcpy(*field, value, len);
    (*field)[len] = '\0';
    return 0;
}

/* nghttp2 has checked the syntax already; this only turns it into a number, -1 if absurd. */
static int64_t parse_length(const uint8_t *v, size_t len)
{
    int64_t n = 0;
    size_t i;

    if (len == 0 || len > 18)
        return -1;
    for (i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

#define NAME_IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)

int ts_h2_stream_on_header(ts_h2_session_t *sess, ts_h2_stream_t *st, const uint8_t *name,
                           size_t namelen, const uint8_t *value, size_t valuelen)
{
    ts_h2_reqbuf_t *r = st->req;

    if (st->req_phase != TS_H2_REQ_HEADERS)
        return 0;
    r->header_bytes += namelen + valuelen + 32;
    if (r->header_bytes > sess->conf.max_header_list)
        r->too_large = 1;
    if (r->too_large)
        return 0;               /* keep reading the block; 431 goes out at its end */
    if (NAME_IS(":method"))
        return keep(sess, &r->method, value, valuelen);
    if (NAME_IS(":path"))
        return keep(sess, &r->path, value, valuelen);
    if (NAME_IS(":authority"))
        return keep(sess, &r->authority, value, valuelen);
    if (NAME_IS("host"))
        return keep(sess, &r->host, value, valuelen);
    if (NAME_IS("content-type"))
        return keep(sess, &r->content_type, value, valuelen);
    if (NAME_IS("content-length"))
        r->content_length = parse_length(value, valuelen);
    return 0;
}

int ts_h2_stream_headers_done(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    ts_h2_reqbuf_t *r = st->req;

    if (st->req_phase != TS_H2_REQ_HEADERS)
        return 0;
    if (r->too_large)
        return reject(sess, st, 431, "request header fields too large\n");
    if (!r->method || !r->path)     /* CONNECT has no :path; nothing here tunnels */
        return reject(sess, st, 400, "method and path required\n");
    st->is_head = strcmp(r->method, "HEAD") == 0;
    if (r->content_length > 0 && (uint64_t)r->content_length > sess->conf.max_body)
        return reject(sess, st, 413, "request body too large\n");
    st->req_phase = TS_H2_REQ_BODY;
    return 0;
}

/* 0, or -1 when out of memory. */
static int body_reserve(ts_h2_session_t *sess, ts_h2_reqbuf_t *r, size_t need)
{
    size_t cap = r->body_cap ? r->body_cap : BODY_MIN_ALLOC;
    uint8_t *p;

    if (need <= r->body_cap)
        return 0;
    if (!r->body_cap && r->content_length > 0 && (size_t)r->content_length > cap)
        cap = (size_t)r->content_length;   /* headers_done bounded it by max_body */
    while (cap < need)
        cap *= 2;
    if (cap > sess->conf.max_body)
        cap = sess->conf.max_body;
    p = sess->mem.realloc(r->body, cap + 1, sess->mem.baton);   /* + 1: a NUL for parsers */
    if (!p)
        return -1;
    r->body = p;
    r->body_cap = cap;
    return 0;
}

int ts_h2_stream_on_body(ts_h2_session_t *sess, ts_h2_stream_t *st, const uint8_t *data,
                         size_t len)
{
    ts_h2_reqbuf_t *r = st->req;

    if (st->req_phase != TS_H2_REQ_BODY || len == 0)
        return 0;               /* a rejected request's remainder just drains */
    if (len > sess->conf.max_body - r->body_len)
        return reject(sess, st, 413, "request body too large\n");
    if (body_reserve(sess, r, r->body_len + len) != 0)
        return abandon(sess, st);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

int ts_h2_stream_request_done(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    ts_h2_reqbuf_t *r = st->req;
    ts_h2_request_t req;

    if (st->req_phase != TS_H2_REQ_BODY)
        return 0;
    req.stream_id = st->id;
    req.conn_ctx = sess->conn_ctx;
    req.method = r->method;
    req.path = r->path;
    req.authority = r->authority ? r->authority : r->host ? r->host : "";
    req.content_type = r->content_type;
    req.content_length = r->content_length;
    req.body = r->body_len ? r->body : NULL;
    req.body_len = r->body_len;
    /* From here on the stream is the caller's: it is owed on_closed. */
    st->req_phase = TS_H2_REQ_DISPATCHED;
    st->req = NULL;
    sess->conf.on_request(sess->conn_ctx, sess, &req);
    if (!req.body && r->body_len)
        r->body = NULL;         /* taken by the handler */
    reqbuf_free(sess, r);
    return 0;
}

/* Our END_STREAM is out. If that answered a refused request while the client may still be
 * sending, tell it to stop, with NO_ERROR, as RFC 9113 8.1 allows. */
int ts_h2_stream_sent_end(ts_h2_session_t *sess, ts_h2_stream_t *st)
{
    st->end_sent = 1;
    if (st->req_phase != TS_H2_REQ_REJECTED
        || nghttp2_session_get_stream_remote_close(sess->ngh, st->id))
        return 0;
    return nghttp2_submit_rst_stream(sess->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR)
           == NGHTTP2_ERR_NOMEM ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* ---- the public verbs, by stream id ---- */

static ts_h2_stream_t *find(const ts_h2_session_t *sess, int32_t stream_id)
{
    ts_h2_stream_t *st;

    if (stream_id <= 0)
        return NULL;
    st = nghttp2_session_get_stream_user_data(sess->ngh, stream_id);
    return st && st->req_phase == TS_H2_REQ_DISPATCHED ? st : NULL;
}

uint8_t *ts_h2_request_take_body(ts_h2_session_t *sess, ts_h2_request_t *req, size_t *len)
{
    uint8_t *body = req->body;

    (void)sess;
    *len = req->body_len;
    req->body = NULL;
    return body;
}

apr_status_t ts_h2_respond(ts_h2_session_t *sess, int32_t stream_id,
                           const ts_h2_response_t *head, const uint8_t *body, size_t len)
{
    ts_h2_stream_t *st = find(sess, stream_id);

    if (!st)
        return APR_NOTFOUND;
    if (st->resp_phase != TS_H2_RESP_NONE || (len && !body))
        return APR_EINVAL;
    return submit_complete(sess, st, head, body, len);
}

apr_status_t ts_h2_stream_start(ts_h2_session_t *sess, int32_t stream_id,
                                const ts_h2_response_t *head)
{
    ts_h2_stream_t *st = find(sess, stream_id);
    apr_status_t rv;

    if (!st)
        return APR_NOTFOUND;
    if (st->resp_phase != TS_H2_RESP_NONE)
        return APR_EINVAL;
    rv = submit_head(sess, st, head, -1, !st->is_head);
    if (rv == APR_SUCCESS)
        st->resp_phase = st->is_head ? TS_H2_RESP_ENDING : TS_H2_RESP_OPEN;
    return rv;
}

apr_status_t ts_h2_stream_write(ts_h2_session_t *sess, int32_t stream_id, const uint8_t *data,
                                size_t len)
{
    ts_h2_stream_t *st = find(sess, stream_id);
    apr_status_t rv;

    if (!st)
        return APR_NOTFOUND;
    if (st->is_head && st->resp_phase == TS_H2_RESP_ENDING)
        return APR_SUCCESS;     /* a HEAD response has no body to add to */
    if (st->resp_phase != TS_H2_RESP_OPEN || (len && !data))
        return APR_EINVAL;
    if (len == 0)
        return APR_SUCCESS;
    if (len > sess->conf.max_queued - st->queued)
        return APR_ENOSPC;
    rv = queue_append(sess, st, data, len);
    return rv == APR_SUCCESS ? resume(sess, st) : rv;
}

apr_status_t ts_h2_stream_end(ts_h2_session_t *sess, int32_t stream_id)
{
    ts_h2_stream_t *st = find(sess, stream_id);

    if (!st)
        return APR_NOTFOUND;
    if (st->is_head && st->resp_phase == TS_H2_RESP_ENDING)
        return APR_SUCCESS;
    if (st->resp_phase != TS_H2_RESP_OPEN)
        return APR_EINVAL;
    st->resp_phase = TS_H2_RESP_ENDING;
    return resume(sess, st);
}

apr_status_t ts_h2_stream_reset(ts_h2_session_t *sess, int32_t stream_id, uint32_t error_code)
{
    ts_h2_stream_t *st = find(sess, stream_id);
    int rv;

    if (!st)
        return APR_NOTFOUND;
    if (st->resp_phase == TS_H2_RESP_RESET)
        return APR_SUCCESS;
    rv = nghttp2_submit_rst_stream(sess->ngh, NGHTTP2_FLAG_NONE, stream_id, error_code);
    if (rv != 0)
        return rv == NGHTTP2_ERR_NOMEM ? APR_ENOMEM : APR_EINVAL;
    queue_drop(sess, st);
    st->resp_phase = TS_H2_RESP_RESET;
    return APR_SUCCESS;
}

size_t ts_h2_stream_queued(const ts_h2_session_t *sess, int32_t stream_id)
{
    ts_h2_stream_t *st = find(sess, stream_id);

    return st ? st->queued : 0;
}

apr_status_t ts_h2_stream_set_data(ts_h2_session_t *sess, int32_t stream_id, void *data)
{
    ts_h2_stream_t *st = find(sess, stream_id);

    if (!st)
        return APR_NOTFOUND;
    st->user_data = data;
    return APR_SUCCESS;
}

void *ts_h2_stream_data(const ts_h2_session_t *sess, int32_t stream_id)
{
    ts_h2_stream_t *st = find(sess, stream_id);

    return st ? st->user_data : NULL;
}
