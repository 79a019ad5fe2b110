/* ts_conn.c: a TS2021 connection after the handshake: decrypts records into the HTTP/2
 * session and seals its output into records. Buffers exist only while bytes are in flight. */
#include "ts_conn.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ts_frame.h"
#include "ts_h2.h"
#include "ts_ws.h"

/* Pull more from HTTP/2 only while less than this waits for the socket. */
#define CONN_OUT_LOW_WATER  (64u << 10)
#define CONN_SEND_BUDGET    (64u << 10)
/* HTTP/2 allocations this big get their own anonymous mapping: nghttp2's 16 KiB outbound
 * frame buffer, which an idle connection hardly touches. Its untouched pages then never
 * become resident (heap memory reused after other connections would be), and all of it goes
 * back to the system when the connection closes. */
#define CONN_MAP_MIN        (16u << 10)
#define CONN_MAP_SLOTS      4

struct ts_conn {
    ts_noise_cipher_t tx, rx;
    ts_frame_reader_t *reader;      /* only while a partial record is buffered */
    ts_h2_session_t *h2;
    ts_conn_env_t env;
    uint8_t machine_key[TS_NOISE_KEY_LEN];
    uint16_t version;
    uint8_t *plain;                 /* staging of one record's plaintext, while sealing */
    size_t plain_len;
    uint8_t *out;                   /* sealed bytes waiting for the socket */
    size_t out_off, out_len, out_cap;
    uint64_t records_in;            /* client records decrypted: it holds the keys */
    int dead;                       /* nothing more to send or read: close now */
    int closing;                    /* HTTP/2 failed: flush its GOAWAY, then close */
    int draining;                   /* ts_conn_goaway was called */
    ts_ws_t *ws;                    /* the WebSocket carrier's reader, NULL on the native path */
    int ws_closed;                  /* our close frame is queued: nothing goes out after it */
    struct {                        /* the HTTP/2 session's mapped allocations */
        void *p;
        size_t len;
    } map[CONN_MAP_SLOTS];
    int creating;                   /* inside ts_h2_session_create */
    int fb_slot;                    /* nghttp2's frame buffer: the mapping made at creation */
    int fb_released;                /* its pages were given back (ts_conn_idle_release) */
};

/* The HTTP/2 session's allocator: big blocks mapped (while a slot is free), the rest malloc. */
static void *conn_map(ts_conn_t *conn, size_t size)
{
    size_t len = (size + 4095) & ~(size_t)4095;
    void *p;
    int i;

    for (i = 0; i < CONN_MAP_SLOTS; i++) {
        if (conn->map[i].p) continue;
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        conn->map[i].p = p;
        conn->map[i].len = len;
        if (conn->creating && conn->fb_slot < 0) conn->fb_slot = i;
        return p;
    }
    return NULL;
}

static int conn_map_slot(const ts_conn_t *conn, const void *ptr)
{
    int i;

    for (i = 0; ptr && i < CONN_MAP_SLOTS; i++) {
        if (conn->map[i].p == ptr) return i;
    }
    return -1;
}

static void *conn_mem_malloc(size_t size, void *baton)
{
    void *p = size >= CONN_MAP_MIN ? conn_map(baton, size) : NULL;

    return p ? p : malloc(size);
}

static void conn_mem_free(void *ptr, void *baton)
{
    ts_conn_t *conn = baton;
    int i = conn_map_slot(conn, ptr);

    if (i < 0) {
        free(ptr);
        return;
    }
    munmap(ptr, conn->map[i].len);
    conn->map[i].p = NULL;
    if (i == conn->fb_slot) conn->fb_slot = -1;
}

static void *conn_mem_calloc(size_t nmemb, size_t size, void *baton)
{
    void *p = NULL;

    /* Fresh mappings are zero-filled. */
    if (size && nmemb <= (size_t)-1 / size && nmemb * size >= CONN_MAP_MIN) {
        p = conn_map(baton, nmemb * size);
    }
    return p ? p : calloc(nmemb, size);
}

static void *conn_mem_realloc(void *ptr, size_t size, void *baton)
{
    ts_conn_t *conn = baton;
    int i = conn_map_slot(conn, ptr);
    void *p;

    if (!ptr) return conn_mem_malloc(size, baton);
    if (i < 0) return realloc(ptr, size);     /* heap blocks stay on the heap */
    if (size <= conn->map[i].len) return ptr;
    if (!(p = conn_mem_malloc(size, baton))) return NULL;
    memcpy(p, ptr, conn->map[i].len);
    conn_mem_free(ptr, baton);
    return p;
}


static void conn_on_request(void *ctx, ts_h2_session_t *sess, ts_h2_request_t *req)
{
    ts_conn_t *conn = ctx;
    ts_conn_request_t r;

    (void)sess;
    r.conn = conn;
    r.stream_id = req->stream_id;
    r.method = req->method;
    r.path = req->path;
    r.authority = req->authority;
    r.content_type = req->content_type;
    r.body = req->body;
    r.body_len = req->body_len;
    r.machine_key = conn->machine_key;
    r.version = conn->version;
    conn->env.dispatch(conn->env.baton, &r);
}

static void conn_on_closed(void *ctx, int32_t stream_id, void *data, ts_h2_close_reason_t why,
                           uint32_t code)
{
    ts_conn_t *conn = ctx;

    (void)data;
    (void)why;
    (void)code;
    if (conn->env.stream_closed) conn->env.stream_closed(conn->env.baton, conn, stream_id);
}

apr_status_t ts_conn_create(ts_conn_t **out, ts_noise_session_t *ns, const ts_conn_env_t *env,
                            const char **errmsg)
{
    ts_conn_t *conn = calloc(1, sizeof(*conn));
    ts_h2_config_t hc;
    ts_h2_mem_t mem;
    apr_status_t rv;

    if (!conn) {
        ts_noise_session_wipe(ns);
        *errmsg = "out of memory";
        return APR_ENOMEM;
    }
    conn->tx = ns->tx;
    conn->rx = ns->rx;
    memcpy(conn->machine_key, ns->peer_static, TS_NOISE_KEY_LEN);
    conn->version = ns->version;
    ts_noise_session_wipe(ns);
    conn->env = *env;
    if (env->websocket) {
        conn->env.websocket = 1;
        if (!(conn->ws = malloc(sizeof(*conn->ws)))) {
            ts_conn_destroy(conn);
            *errmsg = "out of memory";
            return APR_ENOMEM;
        }
        ts_ws_init(conn->ws, 0);
    }
    memset(&hc, 0, sizeof(hc));
    mem.baton = conn;
    mem.malloc = conn_mem_malloc;
    mem.free = conn_mem_free;
    mem.calloc = conn_mem_calloc;
    mem.realloc = conn_mem_realloc;
    hc.mem = &mem;
    hc.max_body = env->max_body;
    hc.max_queued = env->max_stream_queue;
    hc.on_request = conn_on_request;
    hc.on_closed = conn_on_closed;
    conn->fb_slot = -1;
    conn->creating = 1;
    rv = ts_h2_session_create(&conn->h2, &hc, conn, errmsg);
    conn->creating = 0;
    if (rv != APR_SUCCESS) {
        ts_conn_destroy(conn);
        return rv;
    }
    *out = conn;
    return APR_SUCCESS;
}

void ts_conn_destroy(ts_conn_t *conn)
{
    int i;

    if (!conn) return;
    if (conn->h2) ts_h2_session_destroy(conn->h2);
    for (i = 0; i < CONN_MAP_SLOTS; i++) {
        if (conn->map[i].p) munmap(conn->map[i].p, conn->map[i].len);
    }
    if (conn->reader) {
        ts_frame_reader_wipe(conn->reader);
        free(conn->reader);
    }
    free(conn->plain);
    free(conn->out);
    free(conn->ws);
    ts_noise_cipher_wipe(&conn->tx);
    ts_noise_cipher_wipe(&conn->rx);
    free(conn);
}

/* Stops everything: no more output, the ciphers are forgotten. */
static void conn_kill(ts_conn_t *conn)
{
    conn->dead = 1;
    conn->out_off = conn->out_len = 0;
    ts_noise_cipher_wipe(&conn->tx);
    ts_noise_cipher_wipe(&conn->rx);
}

static apr_status_t conn_feed_h2(ts_conn_t *conn, const uint8_t *pt, size_t len,
                                 const char **errmsg)
{
    apr_status_t rv = ts_h2_session_recv(conn->h2, pt, len, errmsg);

    /* Keep the GOAWAY nghttp2 queued for this: it tells the client why. */
    if (rv != APR_SUCCESS) conn->closing = 1;
    return rv;
}

static apr_status_t conn_out_reserve(ts_conn_t *conn, size_t more);

/* Noise records from the stream, each decrypted into the HTTP/2 session. */
static apr_status_t conn_recv_records(ts_conn_t *conn, const uint8_t *in, size_t len,
                                      const char **errmsg)
{
    const uint8_t *pt;
    size_t used, ptlen;
    apr_status_t rv;

    while (len > 0) {
        if (!conn->reader) {
            conn->reader = malloc(sizeof(*conn->reader));
            if (!conn->reader) {
                conn_kill(conn);
                *errmsg = "out of memory";
                return APR_ENOMEM;
            }
            ts_frame_reader_init(conn->reader, &conn->rx);
        }
        rv = ts_frame_reader_feed(conn->reader, in, len, &used, &pt, &ptlen, errmsg);
        in += used;
        len -= used;
        if (rv == APR_INCOMPLETE) break;
        if (rv != APR_SUCCESS) {
            conn_kill(conn);
            return rv;
        }
        conn->records_in++;
        rv = conn_feed_h2(conn, pt, ptlen, errmsg);
        if (rv != APR_SUCCESS) return rv;
    }
    if (conn->reader && ts_frame_reader_at_boundary(conn->reader)) {
        ts_frame_reader_wipe(conn->reader);
        free(conn->reader);
        conn->reader = NULL;
    }
    return APR_SUCCESS;
}

/* Output only ever holds whole WebSocket frames, so control frames go at its end. */
static apr_status_t conn_ws_queue(ts_conn_t *conn, const uint8_t *frame, size_t n,
                                  const char **errmsg)
{
    if (n == 0 || conn->ws_closed) return APR_SUCCESS;
    if (conn_out_reserve(conn, n) != APR_SUCCESS) {
        conn_kill(conn);
        *errmsg = "out of memory";
        return APR_ENOMEM;
    }
    memcpy(conn->out + conn->out_len, frame, n);
    conn->out_len += n;
    if ((frame[0] & 0x0f) == TS_WS_OP_CLOSE) conn->ws_closed = 1;
    return APR_SUCCESS;
}

/* WebSocket frames: their binary payload is the record stream; pongs and the close (an
 * echo, or ours for a protocol error) are queued behind the output. */
static apr_status_t conn_recv_ws(ts_conn_t *conn, const uint8_t *in, size_t len,
                                 const char **errmsg)
{
    uint8_t buf[TS_FRAME_MAX_LEN], reply[TS_WS_CONTROL_FRAME_MAX];
    size_t used, n;
    apr_status_t rv, rv2;

    while (len > 0 && !conn->ws_closed) {
        rv = ts_ws_recv(conn->ws, in, len, &used, buf, sizeof(buf), &n, errmsg);
        in += used;
        len -= used;
        if (n > 0 && (rv == APR_SUCCESS || rv == APR_EOF)) {
            rv2 = conn_recv_records(conn, buf, n, errmsg);
            if (rv2 != APR_SUCCESS) return rv2;
        }
        rv2 = conn_ws_queue(conn, reply, ts_ws_reply(conn->ws, reply), errmsg);
        if (rv2 != APR_SUCCESS) return rv2;
        /* The client's close is the end of its stream, not an error. */
        if (rv == APR_EOF) return APR_SUCCESS;
        if (rv != APR_SUCCESS) return rv;
    }
    return APR_SUCCESS;
}

apr_status_t ts_conn_recv(ts_conn_t *conn, const uint8_t *in, size_t len, const char **errmsg)
{
    if (conn->dead || conn->closing) {
        *errmsg = "connection is closing";
        return APR_EGENERAL;
    }
    /* After a close frame either way, what the client still sends is of no use. */
    if (conn->ws && conn->ws_closed) return APR_SUCCESS;
    if (conn->ws) return conn_recv_ws(conn, in, len, errmsg);
    return conn_recv_records(conn, in, len, errmsg);
}

static apr_status_t conn_out_reserve(ts_conn_t *conn, size_t more)
{
    size_t need = conn->out_len + more;
    uint8_t *p;

    if (need <= conn->out_cap) return APR_SUCCESS;
    if (conn->out_off > 0) {
        memmove(conn->out, conn->out + conn->out_off, conn->out_len - conn->out_off);
        conn->out_len -= conn->out_off;
        conn->out_off = 0;
        need = conn->out_len + more;
        if (need <= conn->out_cap) return APR_SUCCESS;
    }
    if (need < 2 * conn->out_cap) need = 2 * conn->out_cap;
    p = realloc(conn->out, need);
    if (!p) return APR_ENOMEM;
    conn->out = p;
    conn->out_cap = need;
    return APR_SUCCESS;
}

/* Seals the staged plaintext into one record. */
static apr_status_t conn_seal_staged(ts_conn_t *conn, const char **errmsg)
{
    size_t n, sealed, hdr = 0;
    apr_status_t rv;

    if (conn->plain_len == 0) return APR_SUCCESS;
    sealed = ts_frame_sealed_len(conn->plain_len);
    /* On WebSocket each record is one binary message, as the reference sends them. */
    if (conn->ws) hdr = ts_ws_header_len(sealed);
    rv = conn_out_reserve(conn, hdr + sealed);
    if (rv != APR_SUCCESS) {
        *errmsg = "out of memory";
        return rv;
    }
    if (hdr) ts_ws_header_build(conn->out + conn->out_len, TS_WS_OP_BINARY, sealed);
    rv = ts_frame_seal_record(&conn->tx, conn->out + conn->out_len + hdr,
                              conn->out_cap - conn->out_len - hdr, conn->plain, conn->plain_len,
                              &n, errmsg);
    if (rv != APR_SUCCESS) return rv;
    conn->out_len += hdr + n;
    conn->plain_len = 0;
    return APR_SUCCESS;
}

/* nghttp2 hands out many small frames: gather them into full records. */
static apr_status_t conn_h2_out(void *baton, const uint8_t *data, size_t len)
{
    ts_conn_t *conn = baton;
    const char *errmsg;
    apr_status_t rv;

    while (len > 0) {
        size_t room = TS_FRAME_MAX_PLAINTEXT - conn->plain_len;
        size_t n = len < room ? len : room;

        memcpy(conn->plain + conn->plain_len, data, n);
        conn->plain_len += n;
        data += n;
        len -= n;
        if (conn->plain_len == TS_FRAME_MAX_PLAINTEXT) {
            rv = conn_seal_staged(conn, &errmsg);
            if (rv != APR_SUCCESS) return rv;
        }
    }
    return APR_SUCCESS;
}

static apr_status_t conn_fill(ts_conn_t *conn, const char **errmsg)
{
    apr_status_t rv, rv2;

    if (conn->dead || conn->ws_closed || !ts_h2_session_want_write(conn->h2)) return APR_SUCCESS;
    if (conn->out_len - conn->out_off >= CONN_OUT_LOW_WATER) return APR_SUCCESS;
    if (!conn->plain && !(conn->plain = malloc(TS_FRAME_MAX_PLAINTEXT))) {
        *errmsg = "out of memory";
        return APR_ENOMEM;
    }
    conn->fb_released = 0;          /* nghttp2 serialises its frames into it */
    rv = ts_h2_session_send(conn->h2, CONN_SEND_BUDGET, conn_h2_out, conn, NULL, errmsg);
    rv2 = conn_seal_staged(conn, errmsg);
    free(conn->plain);
    conn->plain = NULL;
    if (rv == APR_SUCCESS) rv = rv2;
    if (rv != APR_SUCCESS && !conn->closing) conn_kill(conn);
    return rv;
}

/* The WebSocket ends with our close frame once HTTP/2 has said its last word. */
static apr_status_t conn_ws_finish(ts_conn_t *conn, const char **errmsg)
{
    uint8_t frame[TS_WS_CONTROL_FRAME_MAX];
    uint16_t code = TS_WS_CLOSE_NORMAL;
    int drained = conn->out_len == conn->out_off;

    if (conn->dead || conn->ws_closed) return APR_SUCCESS;
    if (conn->closing) {
        if (!drained && ts_h2_session_want_write(conn->h2)) return APR_SUCCESS;
        code = TS_WS_CLOSE_PROTOCOL;
    }
    else if (!ts_h2_session_finished(conn->h2)) return APR_SUCCESS;
    else if (conn->draining) code = TS_WS_CLOSE_GOING_AWAY;
    return conn_ws_queue(conn, frame, ts_ws_close_build(frame, sizeof(frame), code, NULL),
                         errmsg);
}

apr_status_t ts_conn_pending(ts_conn_t *conn, const uint8_t **out, size_t *len,
                             const char **errmsg)
{
    apr_status_t rv = conn_fill(conn, errmsg);

    if (rv != APR_SUCCESS && !conn->closing) return rv;
    if (conn->ws && (rv = conn_ws_finish(conn, errmsg)) != APR_SUCCESS) return rv;
    *out = conn->out ? conn->out + conn->out_off : NULL;
    *len = conn->out_len - conn->out_off;
    return APR_SUCCESS;
}

void ts_conn_sent(ts_conn_t *conn, size_t n)
{
    conn->out_off += n;
    if (conn->out_off >= conn->out_len) {
        /* Idle connections keep no output buffer. */
        free(conn->out);
        conn->out = NULL;
        conn->out_off = conn->out_len = conn->out_cap = 0;
    }
}

/* A 503 is contention that passes (a busy database, a full worker queue): say when to come
 * back, so that a burst of clients does not return all at once (clients back off anyway). */
static const ts_h2_header_t conn_retry_after[] = { { "retry-after", TS_CONN_RETRY_AFTER_S } };

static ts_h2_response_t conn_head(int status, const char *content_type)
{
    ts_h2_response_t head;

    memset(&head, 0, sizeof(head));
    head.status = status;
    head.content_type = content_type;
    if (status == 503) {
        head.headers = conn_retry_after;
        head.nheaders = 1;
    }
    return head;
}

apr_status_t ts_conn_respond(ts_conn_t *conn, int32_t stream_id, int status,
                             const char *content_type, const uint8_t *body, size_t len)
{
    ts_h2_response_t head = conn_head(status, content_type);

    if (conn->dead) return APR_EGENERAL;
    return ts_h2_respond(conn->h2, stream_id, &head, body, len);
}

apr_status_t ts_conn_stream_start(ts_conn_t *conn, int32_t stream_id, int status,
                                  const char *content_type)
{
    ts_h2_response_t head = conn_head(status, content_type);

    if (conn->dead) return APR_EGENERAL;
    return ts_h2_stream_start(conn->h2, stream_id, &head);
}

apr_status_t ts_conn_stream_write(ts_conn_t *conn, int32_t stream_id, const uint8_t *data,
                                  size_t len)
{
    if (conn->dead) return APR_EGENERAL;
    return ts_h2_stream_write(conn->h2, stream_id, data, len);
}

apr_status_t ts_conn_stream_end(ts_conn_t *conn, int32_t stream_id)
{
    if (conn->dead) return APR_EGENERAL;
    return ts_h2_stream_end(conn->h2, stream_id);
}

void ts_conn_goaway(ts_conn_t *conn)
{
    if (!conn->dead && !conn->closing) {
        conn->draining = 1;
        ts_h2_session_drain(conn->h2);
    }
}

int ts_conn_finished(const ts_conn_t *conn)
{
    int drained = conn->out_len == conn->out_off;

    if (conn->dead) return 1;
    /* WebSocket: not before the close frame is out (see conn_ws_finish). */
    if (conn->ws) return conn->ws_closed && drained;
    if (conn->closing) return drained && !ts_h2_session_want_write(conn->h2);
    return drained && ts_h2_session_finished(conn->h2);
}

/* Only bytes waiting for the socket count: bytes waiting for the client's HTTP/2 window
 * are capped per stream, and reading on is how the WINDOW_UPDATE that frees them arrives. */
size_t ts_conn_backlog(const ts_conn_t *conn)
{
    return conn->out_len - conn->out_off;
}

size_t ts_conn_streams(const ts_conn_t *conn)
{
    return conn->h2 ? ts_h2_session_streams(conn->h2) : 0;
}

size_t ts_conn_queued(const ts_conn_t *conn)
{
    return (conn->h2 ? ts_h2_session_queued(conn->h2) : 0) + conn->out_len - conn->out_off;
}

uint64_t ts_conn_records_in(const ts_conn_t *conn)
{
    return conn->records_in;
}

const uint8_t *ts_conn_machine_key(const ts_conn_t *conn)
{
    return conn->machine_key;
}

int ts_conn_idle_release(ts_conn_t *conn)
{
    int i = conn->fb_slot;

    if (i < 0 || conn->fb_released || conn->dead) return 0;
    /* Only between frames: nothing of ours waiting, nothing nghttp2 is half-way through. */
    if (conn->out_len != conn->out_off || conn->plain || ts_h2_session_want_write(conn->h2)) {
        return 0;
    }
    if (madvise(conn->map[i].p, conn->map[i].len, MADV_DONTNEED) != 0) return 0;
    conn->fb_released = 1;
    return 1;
}

size_t ts_conn_mapped(const ts_conn_t *conn)
{
    size_t n = 0;
    int i;

    for (i = 0; i < CONN_MAP_SLOTS; i++) {
        if (conn->map[i].p) n += conn->map[i].len;
    }
    return n;
}

uint16_t ts_conn_version(const ts_conn_t *conn)
{
    return conn->version;
}
