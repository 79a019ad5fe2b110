/* ts_h2.c: the HTTP/2 server session: nghttp2 set-up and its callbacks, plaintext bytes in and
 * out, shutdown. Stream bookkeeping (requests, response queues) lives in ts_h2_stream.c. */
#include "ts_config.h"

#include <stdlib.h>
#include <string.h>

#include "ts_h2_int.h"

/* Flood guards, set explicitly so they do not depend on the build's defaults. Tailscale clients
 * reset streams rarely (a replaced map poll), so the library's numbers are generous for them. */
#define TS_H2_RST_BURST         1000
#define TS_H2_RST_RATE          33
#define TS_H2_MAX_CONTINUATIONS 8

/* ---- allocation ---- */

static void *std_malloc(size_t size, void *baton)
{
    (void)baton;
    return malloc(size);
}

static void std_free(void *ptr, void *baton)
{
    (void)baton;
    free(ptr);
}

static void *std_calloc(size_t nmemb, size_t size, void *baton)
{
    (void)baton;
    return calloc(nmemb, size);
}

static void *std_realloc(void *ptr, size_t size, void *baton)
{
    (void)baton;
    return realloc(ptr, size);
}

static const ts_h2_mem_t std_mem = { NULL, std_malloc, std_free, std_calloc, std_realloc };

void *ts_h2_alloc(ts_h2_session_t *sess, size_t size)
{
    return sess->mem.malloc(size, sess->mem.baton);
}

void *ts_h2_zalloc(ts_h2_session_t *sess, size_t size)
{
    return sess->mem.calloc(1, size, sess->mem.baton);
}

void ts_h2_free(ts_h2_session_t *sess, void *ptr)
{
    if (ptr)
        sess->mem.free(ptr, sess->mem.baton);
}

/* ---- nghttp2 callbacks: thin, each hands off to a named stream function ---- */

static ts_h2_stream_t *stream_of(nghttp2_session *ngh, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ngh, id);
}

static int on_begin_headers(nghttp2_session *ngh, const nghttp2_frame *frame, void *user_data)
{
    (void)ngh;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    return ts_h2_stream_begin(user_data, frame->hd.stream_id);
}

static int on_header(nghttp2_session *ngh, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    ts_h2_stream_t *st = stream_of(ngh, frame->hd.stream_id);

    (void)flags;
    if (!st || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;               /* trailers and streams we dropped: nothing we use */
    return ts_h2_stream_on_header(user_data, st, name, namelen, value, valuelen);
}

static int on_frame_recv(nghttp2_session *ngh, const nghttp2_frame *frame, void *user_data)
{
    ts_h2_stream_t *st;
    int rv = 0;

    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    st = stream_of(ngh, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        rv = ts_h2_stream_headers_done(user_data, st);
    if (rv == 0 && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        rv = ts_h2_stream_request_done(user_data, st);
    return rv;
}

static int on_data_chunk_recv(nghttp2_session *ngh, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    ts_h2_stream_t *st = stream_of(ngh, stream_id);

    (void)flags;
    return st ? ts_h2_stream_on_body(user_data, st, data, len) : 0;
}

static int on_frame_send(nghttp2_session *ngh, const nghttp2_frame *frame, void *user_data)
{
    ts_h2_stream_t *st;

    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    st = stream_of(ngh, frame->hd.stream_id);
    return st ? ts_h2_stream_sent_end(user_data, st) : 0;
}

static int on_stream_close(nghttp2_session *ngh, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    ts_h2_stream_t *st = stream_of(ngh, stream_id);
    ts_h2_close_reason_t why;

    if (!st)
        return 0;
    why = error_code == NGHTTP2_NO_ERROR && st->end_sent ? TS_H2_CLOSE_COMPLETE
                                                         : TS_H2_CLOSE_RESET;
    /* nghttp2 forgets the stream after this callback; make sure no one reaches ours through it */
    nghttp2_session_set_stream_user_data(ngh, stream_id, NULL);
    ts_h2_stream_gone(user_data, st, why, error_code);
    return 0;
}

static apr_status_t make_callbacks(nghttp2_session_callbacks **cbs)
{
    if (nghttp2_session_callbacks_new(cbs) != 0)
        return APR_ENOMEM;
    nghttp2_session_callbacks_set_on_begin_headers_callback(*cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(*cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(*cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(*cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(*cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(*cbs, on_stream_close);
    return APR_SUCCESS;
}

static apr_status_t make_options(nghttp2_option **opt)
{
    if (nghttp2_option_new(opt) != 0)
        return APR_ENOMEM;
    /* Nothing here needs the RFC 7540 priority tree, so closed streams need not linger. */
    nghttp2_option_set_no_closed_streams(*opt, 1);
    /* Responses carry a few short headers: HPACK's dynamic table would keep copies of them
     * per connection (memory of thousands of idle sessions) to save a few bytes. */
    nghttp2_option_set_max_deflate_dynamic_table_size(*opt, 0);
#ifdef HAVE_NGHTTP2_OPTION_SET_STREAM_RESET_RATE_LIMIT
    nghttp2_option_set_stream_reset_rate_limit(*opt, TS_H2_RST_BURST, TS_H2_RST_RATE);
#endif
#ifdef HAVE_NGHTTP2_OPTION_SET_MAX_CONTINUATIONS
    nghttp2_option_set_max_continuations(*opt, TS_H2_MAX_CONTINUATIONS);
#endif
    return APR_SUCCESS;
}

/* ---- session ---- */

static void fill_defaults(ts_h2_config_t *c)
{
    if (!c->max_concurrent_streams)
        c->max_concurrent_streams = TS_H2_DEFAULT_MAX_STREAMS;
    if (!c->max_header_list)
        c->max_header_list = TS_H2_DEFAULT_MAX_HEADER_LIST;
    if (!c->stream_window)
        c->stream_window = TS_H2_DEFAULT_STREAM_WINDOW;
    if (!c->conn_window)
        c->conn_window = TS_H2_DEFAULT_CONN_WINDOW;
    if (!c->max_body)
        c->max_body = TS_H2_DEFAULT_MAX_BODY;
    if (!c->max_queued)
        c->max_queued = TS_H2_DEFAULT_MAX_QUEUED;
}

static apr_status_t new_nghttp2(ts_h2_session_t *sess)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_mem ngmem;
    apr_status_t rv;

    ngmem.mem_user_data = sess->mem.baton;
    ngmem.malloc = sess->mem.malloc;
    ngmem.free = sess->mem.free;
    ngmem.calloc = sess->mem.calloc;
    ngmem.realloc = sess->mem.realloc;
    rv = make_callbacks(&cbs);
    if (rv == APR_SUCCESS)
        rv = make_options(&opt);
    if (rv == APR_SUCCESS && nghttp2_session_server_new3(&sess->ngh, cbs, sess, opt, &ngmem) != 0)
        rv = APR_ENOMEM;
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return rv;
}

/* The server preface: our SETTINGS, then a larger connection window (that one has no setting). */
static apr_status_t submit_preface(ts_h2_session_t *sess)
{
    nghttp2_settings_entry iv[3] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, sess->conf.max_concurrent_streams },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, sess->conf.max_header_list },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, sess->conf.stream_window },
    };

    if (nghttp2_submit_settings(sess->ngh, NGHTTP2_FLAG_NONE, iv, 3) != 0)
        return APR_EINVAL;
    if (sess->conf.conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE
        && nghttp2_session_set_local_window_size(sess->ngh, NGHTTP2_FLAG_NONE, 0,
                                                 (int32_t)sess->conf.conn_window) != 0)
        return APR_EINVAL;
    return APR_SUCCESS;
}

static int config_valid(const ts_h2_config_t *c)
{
    return c->on_request && c->max_body <= SIZE_MAX / 2
           && c->stream_window <= NGHTTP2_MAX_WINDOW_SIZE
           && c->conn_window <= NGHTTP2_MAX_WINDOW_SIZE
           && (!c->mem || (c->mem->malloc && c->mem->free && c->mem->calloc && c->mem->realloc));
}

apr_status_t ts_h2_session_create(ts_h2_session_t **out, const ts_h2_config_t *conf,
                                  void *conn_ctx, const char **errmsg)
{
    const ts_h2_mem_t *mem = conf && conf->mem ? conf->mem : &std_mem;
    ts_h2_session_t *sess;
    apr_status_t rv;

    *out = NULL;
    if (!conf || !config_valid(conf)) {
        *errmsg = "HTTP/2 session: no request callback, a size out of range or an incomplete "
                  "allocator";
        return APR_EINVAL;
    }
    sess = mem->calloc(1, sizeof(*sess), mem->baton);
    if (!sess) {
        *errmsg = "HTTP/2 session: out of memory";
        return APR_ENOMEM;
    }
    sess->mem = *mem;
    sess->conf = *conf;
    sess->conf.mem = NULL;
    fill_defaults(&sess->conf);
    sess->conn_ctx = conn_ctx;
    rv = new_nghttp2(sess);
    if (rv == APR_SUCCESS)
        rv = submit_preface(sess);
    if (rv != APR_SUCCESS) {
        *errmsg = rv == APR_ENOMEM ? "HTTP/2 session: out of memory"
                                   : "HTTP/2 session: cannot queue the server SETTINGS";
        ts_h2_session_destroy(sess);
        return rv;
    }
    *out = sess;
    return APR_SUCCESS;
}

void ts_h2_session_destroy(ts_h2_session_t *sess)
{
    if (!sess)
        return;
    while (sess->streams) {
        ts_h2_stream_t *st = sess->streams;

        if (sess->ngh)
            nghttp2_session_set_stream_user_data(sess->ngh, st->id, NULL);
        ts_h2_stream_gone(sess, st, TS_H2_CLOSE_SESSION, NGHTTP2_NO_ERROR);
    }
    nghttp2_session_del(sess->ngh);
    sess->mem.free(sess, sess->mem.baton);
}

void *ts_h2_session_ctx(const ts_h2_session_t *sess)
{
    return sess->conn_ctx;
}

/* Texts for the fatal codes a client can provoke; the rest use nghttp2's own (static) text. */
static const char *fatal_text(int lib_error)
{
    switch (lib_error) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
        return "HTTP/2: the client did not start with the connection preface";
    case NGHTTP2_ERR_FLOODED:
        return "HTTP/2: flooded with control frames the client does not read the answers to";
    case NGHTTP2_ERR_NOMEM:
    case NGHTTP2_ERR_CALLBACK_FAILURE:
        return "HTTP/2: out of memory";
#ifdef HAVE_NGHTTP2_OPTION_SET_MAX_CONTINUATIONS   /* the error came with the option */
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
        return "HTTP/2: too many CONTINUATION frames";
#endif
    default:
        return nghttp2_strerror(lib_error);
    }
}

static apr_status_t fail(ts_h2_session_t *sess, int lib_error, const char **errmsg)
{
    if (sess->failed == APR_SUCCESS) {
        sess->failed = (lib_error == NGHTTP2_ERR_NOMEM || lib_error == NGHTTP2_ERR_CALLBACK_FAILURE)
                       ? APR_ENOMEM : APR_EGENERAL;
        sess->errmsg = fatal_text(lib_error);
        /* nghttp2 queues a GOAWAY for the connection errors it handles itself, not for a bad
         * preface: queue one, so the client learns why before the close. */
        if (lib_error == NGHTTP2_ERR_BAD_CLIENT_MAGIC
            && nghttp2_session_terminate_session(sess->ngh, NGHTTP2_PROTOCOL_ERROR) == 0)
            sess->terminated = 1;
    }
    *errmsg = sess->errmsg;
    return sess->failed;
}

apr_status_t ts_h2_session_recv(ts_h2_session_t *sess, const uint8_t *data, size_t len,
                                const char **errmsg)
{
    /* nghttp2 would still parse until its GOAWAY is out; after a terminate nothing counts. */
    if (sess->terminated && sess->failed == APR_SUCCESS)
        return APR_SUCCESS;
    while (sess->failed == APR_SUCCESS && len > 0) {
        /* Only a pausing callback (we have none) makes nghttp2 take less than all of it. */
        ssize_t n = nghttp2_session_mem_recv(sess->ngh, data, len);

        if (n < 0)
            return fail(sess, (int)n, errmsg);
        if (n == 0)
            break;
        data += n;
        len -= (size_t)n;
    }
    if (sess->failed != APR_SUCCESS) {
        *errmsg = sess->errmsg;
        return sess->failed;
    }
    return APR_SUCCESS;
}

apr_status_t ts_h2_session_send(ts_h2_session_t *sess, size_t budget, ts_h2_out_fn *out,
                                void *baton, size_t *sent, const char **errmsg)
{
    size_t total = 0;
    apr_status_t rv = APR_SUCCESS;

    if (sess->output_dead) {
        *errmsg = sess->errmsg;
        return sess->failed;
    }
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(sess->ngh, &p);

        if (n < 0) {
            rv = fail(sess, (int)n, errmsg);
            break;
        }
        if (n == 0)
            break;
        total += (size_t)n;
        rv = out(baton, p, (size_t)n);
        if (rv != APR_SUCCESS) {
            sess->failed = rv;
            sess->output_dead = 1;
            *errmsg = sess->errmsg = "HTTP/2: the output callback refused bytes";
            break;
        }
        if (total >= budget)
            break;
    }
    if (sent)
        *sent = total;
    return rv;
}

int ts_h2_session_want_read(const ts_h2_session_t *sess)
{
    return sess->failed == APR_SUCCESS && !sess->terminated
           && nghttp2_session_want_read(sess->ngh);
}

int ts_h2_session_want_write(const ts_h2_session_t *sess)
{
    return !sess->output_dead && nghttp2_session_want_write(sess->ngh);
}

int ts_h2_session_finished(const ts_h2_session_t *sess)
{
    return !ts_h2_session_want_read(sess) && !ts_h2_session_want_write(sess);
}

size_t ts_h2_session_queued(const ts_h2_session_t *sess)
{
    return sess->queued;
}

size_t ts_h2_session_streams(const ts_h2_session_t *sess)
{
    const ts_h2_stream_t *st;
    size_t n = 0;

    for (st = sess->streams; st; st = st->next)
        n++;
    return n;
}

apr_status_t ts_h2_session_drain(ts_h2_session_t *sess)
{
    int32_t last = nghttp2_session_get_last_proc_stream_id(sess->ngh);
    int rv = nghttp2_submit_goaway(sess->ngh, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);

    return rv == 0 ? APR_SUCCESS : rv == NGHTTP2_ERR_NOMEM ? APR_ENOMEM : APR_EINVAL;
}

apr_status_t ts_h2_session_terminate(ts_h2_session_t *sess, uint32_t error_code)
{
    int rv = nghttp2_session_terminate_session(sess->ngh, error_code);

    if (rv == 0)
        sess->terminated = 1;
    return rv == 0 ? APR_SUCCESS : rv == NGHTTP2_ERR_NOMEM ? APR_ENOMEM : APR_EINVAL;
}
