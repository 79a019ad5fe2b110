/* ts_conn.c: a TS2021 connection after the handshake: decrypts records into the HTTP/2
 * session and seals its output into records. Buffers exist only while bytes are in flight. */
#include "ts_conn.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ts_frame.h"
#include "ts_h2.h"

/* Pull more from HTTP/2 only while less than this waits for the socket. */
#define CONN_OUT_LOW_WATER  (64u << 10)
#define CONN_SEND_BUDGET    (64u << 10)

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
};

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
    memset(&hc, 0, sizeof(hc));
    hc.max_body = env->max_body;
    hc.max_queued = env->max_stream_queue;
    hc.on_request = conn_on_request;
    hc.on_closed = conn_on_closed;
    rv = ts_h2_session_create(&conn->h2, &hc, conn, errmsg);
    if (rv != APR_SUCCESS) {
        ts_conn_destroy(conn);
        return rv;
    }
    *out = conn;
    return APR_SUCCESS;
}

void ts_conn_destroy(ts_conn_t *conn)
{
    if (!conn) return;
    if (conn->h2) ts_h2_session_destroy(conn->h2);
    if (conn->reader) {
        ts_frame_reader_wipe(conn->reader);
        free(conn->reader);
    }
    free(conn->plain);
    free(conn->out);
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

apr_status_t ts_conn_recv(ts_conn_t *conn, const uint8_t *in, size_t len, const char **errmsg)
{
    const uint8_t *pt;
    size_t used, ptlen;
    apr_status_t rv;

    if (conn->dead || conn->closing) {
        *errmsg = "connection is closing";
        return APR_EGENERAL;
    }
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
    size_t n;
    apr_status_t rv;

    if (conn->plain_len == 0) return APR_SUCCESS;
    rv = conn_out_reserve(conn, ts_frame_sealed_len(conn->plain_len));
    if (rv != APR_SUCCESS) {
        *errmsg = "out of memory";
        return rv;
    }
    rv = ts_frame_seal_record(&conn->tx, conn->out + conn->out_len,
                              conn->out_cap - conn->out_len, conn->plain, conn->plain_len, &n,
                              errmsg);
    if (rv != APR_SUCCESS) return rv;
    conn->out_len += n;
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

    if (conn->dead || !ts_h2_session_want_write(conn->h2)) return APR_SUCCESS;
    if (conn->out_len - conn->out_off >= CONN_OUT_LOW_WATER) return APR_SUCCESS;
    if (!conn->plain && !(conn->plain = malloc(TS_FRAME_MAX_PLAINTEXT))) {
        *errmsg = "out of memory";
        return APR_ENOMEM;
    }
    rv = ts_h2_session_send(conn->h2, CONN_SEND_BUDGET, conn_h2_out, conn, NULL, errmsg);
    rv2 = conn_seal_staged(conn, errmsg);
    free(conn->plain);
    conn->plain = NULL;
    if (rv == APR_SUCCESS) rv = rv2;
    if (rv != APR_SUCCESS && !conn->closing) conn_kill(conn);
    return rv;
}

apr_status_t ts_conn_pending(ts_conn_t *conn, const uint8_t **out, size_t *len,
                             const char **errmsg)
{
    apr_status_t rv = conn_fill(conn, errmsg);

    if (rv != APR_SUCCESS && !conn->closing) return rv;
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

static ts_h2_response_t conn_head(int status, const char *content_type)
{
    ts_h2_response_t head;

    memset(&head, 0, sizeof(head));
    head.status = status;
    head.content_type = content_type;
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
    if (!conn->dead && !conn->closing) ts_h2_session_drain(conn->h2);
}

int ts_conn_finished(const ts_conn_t *conn)
{
    int drained = conn->out_len == conn->out_off;

    if (conn->dead) return 1;
    if (conn->closing) return drained;
    return drained && ts_h2_session_finished(conn->h2);
}

/* Only bytes waiting for the socket count: bytes waiting for the client's HTTP/2 window
 * are capped per stream, and reading on is how the WINDOW_UPDATE that frees them arrives. */
size_t ts_conn_backlog(const ts_conn_t *conn)
{
    return conn->out_len - conn->out_off;
}

uint64_t ts_conn_records_in(const ts_conn_t *conn)
{
    return conn->records_in;
}

const uint8_t *ts_conn_machine_key(const ts_conn_t *conn)
{
    return conn->machine_key;
}

uint16_t ts_conn_version(const ts_conn_t *conn)
{
    return conn->version;
}
