/* test_conn.c: ts_conn driven as a socket drives it: a real Noise handshake, records both ways
 * around an nghttp2 client; requests, responses, streaming and windows, chunking, fatal input, drain, teardown. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#include "test_h2_harness.h"   /* the client half of it: nghttp2 client, recorders, requests */
#pragma GCC diagnostic pop

#include <sodium.h>

#include "ts_conn.h"
#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"

/* ---- the world: one ts_conn, one client (Noise ciphers + record reader + nghttp2) ---- */

#define MAX_REQ   16
#define MAX_RECS  512

typedef struct {                /* a request as the dispatch callback saw it */
    int32_t id;
    ts_conn_t *conn;
    char method[16], path[128], authority[64], ctype[64];
    int has_ctype;
    uint8_t body[256];          /* the first bytes */
    size_t body_len;
    uint32_t body_hash;
    uint8_t mkey[TS_NOISE_KEY_LEN];
    uint16_t version;
} dreq_t;

typedef enum { DO_NOTHING, DO_RESPOND, DO_STREAM } conn_action_t;

typedef struct {
    uint16_t version;           /* 0: 145 */
    size_t max_body, max_queue;
    const nghttp2_settings_entry *iv;
    size_t niv;
    int no_auto_window_update;
    int no_closed_cb;
} opts_t;

typedef struct {
    ts_conn_t *conn;
    ts_conn_env_t env;
    ts_noise_cipher_t ctx, crx; /* the client's ciphers: it sends with ctx */
    ts_frame_reader_t crd;      /* the client's reader of server records (on crx) */
    uint8_t mpub[TS_NOISE_KEY_LEN];
    uint8_t early[TS_FRAME_EARLY_PLAIN_LEN];
    conn_action_t action;
    dreq_t req[MAX_REQ];
    int nreq;
    int32_t closed[MAX_REQ];
    int nclosed;
    size_t piece;               /* client -> server chunk size; 0: everything in one call */
    apr_status_t rv;            /* the last ts_conn_recv status */
    const char *err;
    uint64_t crecs;             /* non-empty records the client sealed */
    size_t srecs;               /* records the client opened from the server */
    size_t srec_len[MAX_RECS];
    uint8_t first_pt[64];       /* the start of the first server record after the early payload */
    size_t first_pt_len;
} world_t;

static world_t W;

static void on_dispatch(void *baton, const ts_conn_request_t *r)
{
    world_t *w = baton;
    dreq_t *d;

    assert_ptr_equal(w, &W);
    assert_true(w->nreq < MAX_REQ);
    d = &w->req[w->nreq++];
    d->id = r->stream_id;
    d->conn = r->conn;
    copy_str(d->method, sizeof(d->method), r->method);
    copy_str(d->path, sizeof(d->path), r->path);
    copy_str(d->authority, sizeof(d->authority), r->authority);
    d->has_ctype = r->content_type != NULL;
    copy_str(d->ctype, sizeof(d->ctype), r->content_type);
    d->body_len = r->body_len;
    if (r->body_len) {
        memcpy(d->body, r->body, r->body_len < sizeof(d->body) ? r->body_len : sizeof(d->body));
        d->body_hash = fnv1a(r->body, r->body_len);
    }
    memcpy(d->mkey, r->machine_key, TS_NOISE_KEY_LEN);
    d->version = r->version;
    if (w->action == DO_RESPOND)
        assert_int_equal(ts_conn_respond(r->conn, r->stream_id, 200, "application/json", r->body,
                                         r->body_len), APR_SUCCESS);
    else if (w->action == DO_STREAM)
        assert_int_equal(ts_conn_stream_start(r->conn, r->stream_id, 200,
                                              "application/octet-stream"), APR_SUCCESS);
}

static void on_stream_closed(void *baton, ts_conn_t *conn, int32_t stream_id)
{
    world_t *w = baton;

    assert_ptr_equal(w, &W);
    assert_ptr_equal(conn, w->conn);
    assert_true(w->nclosed < MAX_REQ);
    w->closed[w->nclosed++] = stream_id;
}

static dreq_t *dreq(int32_t id)
{
    int i;

    for (i = 0; i < W.nreq; i++)
        if (W.req[i].id == id)
            return &W.req[i];
    fail_msg("stream %d never reached the dispatch callback", id);
    return NULL;
}

/* The client opens what the server sent; plaintext goes to nghttp2 (or to sink when given). */
static void client_read(const uint8_t *in, size_t len, uint8_t *sink, size_t *sinklen)
{
    const uint8_t *pt;
    size_t used, ptlen;
    const char *err = NULL;
    apr_status_t rv;

    while (len > 0) {
        rv = ts_frame_reader_feed(&W.crd, in, len, &used, &pt, &ptlen, &err);
        in += used;
        len -= used;
        if (rv == APR_INCOMPLETE)
            break;
        if (rv != APR_SUCCESS)
            fail_msg("client cannot open a server record: %s", err);
        if (sink) {
            memcpy(sink + *sinklen, pt, ptlen);
            *sinklen += ptlen;
            continue;
        }
        if (W.srecs < MAX_RECS)
            W.srec_len[W.srecs] = ptlen;
        if (W.srecs == 0) {
            W.first_pt_len = ptlen < sizeof(W.first_pt) ? ptlen : sizeof(W.first_pt);
            memcpy(W.first_pt, pt, W.first_pt_len);
        }
        W.srecs++;
        assert_int_equal(nghttp2_session_mem_recv(H.cli, pt, ptlen), (ssize_t)ptlen);
    }
}

static void world_init(const opts_t *o)
{
    static const opts_t defaults = { 145, 0, 0, NULL, 0, 0, 0 };
    uint8_t s_priv[32], s_pub[32], m_priv[32];
    uint8_t msg1[TS_NOISE_MSG1_LEN], msg2[TS_NOISE_MSG2_LEN];
    ts_noise_handshake_t hs;
    ts_noise_session_t ss, cs;
    const char *err = NULL;
    uint16_t version;

    if (!o)
        o = &defaults;
    version = o->version ? o->version : 145;
    memset(&W, 0, sizeof(W));
    memset(&H, 0, sizeof(H));
    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    assert_int_equal(ts_crypto_x25519_keypair(m_priv, W.mpub), 0);

    /* the handshake, both roles */
    assert_int_equal(ts_noise_initiator_init(&hs, version, m_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, msg1, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_respond(s_priv, msg1, sizeof(msg1), NULL, msg2, &ss, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_noise_read_msg2(&hs, msg2, sizeof(msg2), &err), APR_SUCCESS);
    assert_int_equal(ts_noise_split(&hs, &cs, &err), APR_SUCCESS);
    assert_memory_equal(ss.handshake_hash, cs.handshake_hash, TS_NOISE_HASH_LEN);
    assert_memory_equal(ss.peer_static, W.mpub, TS_NOISE_KEY_LEN);
    W.ctx = cs.tx;
    W.crx = cs.rx;
    ts_noise_session_wipe(&cs);
    ts_frame_reader_init(&W.crd, &W.crx);

    /* what the upgrade handler sends with the session's tx before handing it over */
    if (version >= TS_FRAME_EARLY_MIN_VERSION) {
        uint8_t sealed[TS_FRAME_EARLY_SEALED_LEN];
        size_t n = 0, got = 0, total = 0;

        assert_int_equal(ts_frame_early_payload_seal(&ss.tx, version, NULL, sealed,
                                                     sizeof(sealed), &n, &err), APR_SUCCESS);
        assert_int_equal(n, TS_FRAME_EARLY_SEALED_LEN);
        client_read(sealed, n, W.early, &got);
        assert_int_equal(got, TS_FRAME_EARLY_PLAIN_LEN);
        assert_int_equal(ts_frame_early_payload_detect(W.early, got, &total), APR_SUCCESS);
        assert_int_equal(total, TS_FRAME_EARLY_PLAIN_LEN);
        assert_int_equal(ts_noise_cipher_counter(&ss.tx), 3);
    }

    W.env.dispatch = on_dispatch;
    W.env.stream_closed = o->no_closed_cb ? NULL : on_stream_closed;
    W.env.baton = &W;
    W.env.max_body = o->max_body;
    W.env.max_stream_queue = o->max_queue;
    assert_int_equal(ts_conn_create(&W.conn, &ss, &W.env, &err), APR_SUCCESS);
    assert_true(sodium_is_zero((const unsigned char *)&ss, sizeof(ss)));
    client_new(&H, o->iv, o->niv, o->no_auto_window_update);
}

static int world_cleanup(void **state)
{
    ts_conn_destroy(W.conn);
    W.conn = NULL;
    return h_cleanup(state);
}

/* Seals everything the client has to say; *nrec gets the record count. Caller frees. */
static uint8_t *client_wire(size_t *len, size_t *nrec)
{
    uint8_t *plain = NULL, *wire;
    size_t plen = 0, cap = 0, n = 0;
    const uint8_t *p;
    const char *err = NULL;
    ssize_t got;

    while ((got = nghttp2_session_mem_send(H.cli, &p)) > 0) {
        if (plen + (size_t)got > cap) {
            cap = (plen + (size_t)got) * 2;
            plain = realloc(plain, cap);
            assert_non_null(plain);
        }
        memcpy(plain + plen, p, (size_t)got);
        plen += (size_t)got;
    }
    assert_true(got == 0);
    *len = 0;
    *nrec = 0;
    if (!plen)
        return NULL;
    wire = malloc(ts_frame_sealed_len(plen));
    assert_non_null(wire);
    assert_int_equal(ts_frame_seal(&W.ctx, wire, ts_frame_sealed_len(plen), plain, plen, &n,
                                   &err), APR_SUCCESS);
    assert_int_equal(n, ts_frame_sealed_len(plen));
    free(plain);
    *len = n;
    *nrec = (plen + TS_FRAME_MAX_PLAINTEXT - 1) / TS_FRAME_MAX_PLAINTEXT;
    W.crecs += *nrec;
    return wire;
}

/* Ciphertext into the connection in W.piece-sized reads, as a socket would deliver it. */
static void feed_server(const uint8_t *wire, size_t len)
{
    size_t off = 0, piece = W.piece ? W.piece : len;

    while (off < len && W.rv == APR_SUCCESS) {
        size_t n = len - off < piece ? len - off : piece;

        W.rv = ts_conn_recv(W.conn, wire + off, n, &W.err);
        off += n;
    }
}

static size_t client_to_conn(void)
{
    size_t len, nrec;
    uint8_t *wire = client_wire(&len, &nrec);

    if (wire)
        feed_server(wire, len);
    free(wire);
    return len;
}

/* Everything the connection has for the socket, to the client; returns the byte count. */
static size_t conn_to_client(void)
{
    const uint8_t *out;
    size_t len, total = 0;
    const char *err = NULL;

    for (;;) {
        assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
        assert_int_equal(ts_conn_backlog(W.conn), len);
        if (!len)
            break;
        assert_non_null(out);
        client_read(out, len, NULL, NULL);
        /* the connection only ever hands out whole records */
        assert_true(ts_frame_reader_at_boundary(&W.crd));
        ts_conn_sent(W.conn, len);
        total += len;
    }
    return total;
}

static void cpump(void)
{
    for (;;) {
        size_t moved = client_to_conn();

        if (W.rv != APR_SUCCESS)
            return;
        moved += conn_to_client();
        if (!moved)
            return;
    }
}

/* The idle state: nothing for the socket, and no output buffer kept. */
static void assert_idle_output(void)
{
    const uint8_t *out = (const uint8_t *)"not touched";
    size_t len = 1;
    const char *err = NULL;

    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_int_equal(len, 0);
    assert_null(out);
    assert_int_equal(ts_conn_backlog(W.conn), 0);
}

/* One record sealed by the client's cipher, outside nghttp2. */
static size_t client_record(uint8_t *out, size_t cap, const void *pt, size_t len)
{
    size_t n = 0;
    const char *err = NULL;

    assert_int_equal(ts_frame_seal_record(&W.ctx, out, cap, pt, len, &n, &err), APR_SUCCESS);
    if (len)
        W.crecs++;
    return n;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 31 + seed) ^ (i >> 8));
}

/* ---- tests ---- */

/* Handshake, then the server speaks first: its SETTINGS in one record after the early payload. */
static void test_handshake_and_settings(void **state)
{
    uint8_t partial[TS_FRAME_HDR_LEN];

    (void)state;
    world_init(NULL);
    assert_memory_equal(ts_conn_machine_key(W.conn), W.mpub, TS_NOISE_KEY_LEN);
    assert_int_equal(ts_conn_version(W.conn), 145);
    assert_int_equal(ts_conn_records_in(W.conn), 0);
    assert_false(ts_conn_finished(W.conn));
    assert_memory_equal(W.early, TS_FRAME_EARLY_MAGIC, TS_FRAME_EARLY_MAGIC_LEN);

    /* before the client says anything: one record, a SETTINGS frame on stream 0 first */
    assert_true(conn_to_client() > 0);
    assert_int_equal(W.srecs, 1);
    assert_true(W.first_pt_len >= 9);
    assert_int_equal(W.first_pt[3], NGHTTP2_SETTINGS);
    assert_int_equal(W.first_pt[4], 0);                             /* not an ACK */
    assert_int_equal(W.first_pt[5] | W.first_pt[6] | W.first_pt[7] | W.first_pt[8], 0);
    assert_int_equal(nghttp2_session_get_remote_settings(H.cli,
                     NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), TS_H2_DEFAULT_MAX_STREAMS);
    assert_int_equal(nghttp2_session_get_remote_settings(H.cli,
                     NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), TS_H2_DEFAULT_STREAM_WINDOW);
    assert_idle_output();

    /* a record header alone proves nothing: still 0 records in */
    memcpy(partial, "\x04\x00\x20", 3);
    assert_int_equal(ts_conn_recv(W.conn, partial, sizeof(partial), &W.err), APR_SUCCESS);
    assert_int_equal(ts_conn_records_in(W.conn), 0);
    /* (that half record desynchronises this connection; start a fresh one) */
    world_cleanup(NULL);

    world_init(NULL);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_true(ts_conn_records_in(W.conn) >= 1);
    assert_int_equal(ts_conn_records_in(W.conn), W.crecs);
    /* both SETTINGS acknowledged: quiet, not finished */
    assert_false(nghttp2_session_want_write(H.cli));
    assert_idle_output();
    assert_false(ts_conn_finished(W.conn));
    assert_int_equal(W.nreq, 0);
}

/* nghttp2's 16 KiB frame buffer lives in a mapping of its own (resident only where touched,
 * unmapped at the end); so does a request body announced at 16 KiB or more, and its mapping
 * goes when the request is over. Everything still flows. */
static void test_big_blocks_mapped(void **state)
{
    static uint8_t body[40000];
    char clen[16];
    size_t base, i;
    int32_t id;

    (void)state;
    world_init(NULL);
    base = ts_conn_mapped(W.conn);
    assert_true(base >= 16384);
    assert_int_equal(base % 4096, 0);
    for (i = 0; i < sizeof(body); i++) body[i] = (uint8_t)(i * 7 + 3);
    snprintf(clen, sizeof(clen), "%zu", sizeof(body));
    W.action = DO_RESPOND;
    id = request_ex("POST", "/machine/echo", "unused", "application/octet-stream", clen, body,
                    sizeof(body), 0, NULL);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(W.nreq, 1);
    assert_int_equal(W.req[0].body_len, sizeof(body));
    assert_int_equal(W.req[0].body_hash, fnv1a(body, sizeof(body)));
    assert_body(cstream(&H, id), body, sizeof(body));
    assert_int_equal(ts_conn_mapped(W.conn), base);
    assert_idle_output();
}

/* A quiet connection gives its frame buffer's pages back, once per quiet period, never with
 * output on its way; the buffer works as before afterwards (and can be released again). */
static void test_idle_release(void **state)
{
    int32_t id;

    (void)state;
    world_init(NULL);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(ts_conn_idle_release(W.conn), 1);
    assert_int_equal(ts_conn_idle_release(W.conn), 0);
    W.action = DO_RESPOND;
    id = request("POST", "/machine/register", "application/json", "{\"a\":1}", 7);
    assert_true(client_to_conn() > 0);
    /* answered inside the dispatch: the response waits for nghttp2's send */
    assert_int_equal(W.nreq, 1);
    assert_int_equal(ts_conn_idle_release(W.conn), 0);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(cstream(&H, id)->status, 200);
    assert_body(cstream(&H, id), "{\"a\":1}", 7);
    assert_idle_output();
    assert_int_equal(ts_conn_idle_release(W.conn), 1);
    id = request("POST", "/machine/register", "application/json", "{\"b\":2}", 7);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_body(cstream(&H, id), "{\"b\":2}", 7);
}

/* A client below version 49 gets no early payload: the first record is HTTP/2 already. */
static void test_old_client_no_early_payload(void **state)
{
    opts_t o = { 40, 0, 0, NULL, 0, 0, 0 };
    int32_t id;

    (void)state;
    world_init(&o);
    assert_int_equal(ts_conn_version(W.conn), 40);
    W.action = DO_RESPOND;
    id = request("POST", "/machine/register", "application/json", "{}", 2);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(W.first_pt[3], NGHTTP2_SETTINGS);
    assert_int_equal(dreq(id)->version, 40);
    assert_int_equal(cstream(&H, id)->status, 200);
    assert_body(cstream(&H, id), "{}", 2);
}

static void test_request_dispatch_and_respond(void **state)
{
    static const char json[] = "{\"Version\":145,\"NodeKey\":\"nodekey:ab\"}";
    static const char answer[] = "{\"MachineAuthorized\":true}";
    dreq_t *d;
    cstream_t *c;
    int32_t p, g;

    (void)state;
    world_init(NULL);
    p = request("POST", "/machine/register", "application/json", json, strlen(json));
    g = request_ex("GET", "/machine/whoami", "example.com", NULL, NULL, NULL, 0, 0, NULL);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(W.nreq, 2);

    d = dreq(p);
    assert_ptr_equal(d->conn, W.conn);
    assert_string_equal(d->method, "POST");
    assert_string_equal(d->path, "/machine/register");
    assert_string_equal(d->authority, "unused");
    assert_true(d->has_ctype);
    assert_string_equal(d->ctype, "application/json");
    assert_int_equal(d->body_len, strlen(json));
    assert_memory_equal(d->body, json, strlen(json));
    assert_memory_equal(d->mkey, W.mpub, TS_NOISE_KEY_LEN);
    assert_int_equal(d->version, 145);

    d = dreq(g);
    assert_string_equal(d->method, "GET");
    assert_string_equal(d->path, "/machine/whoami");
    assert_string_equal(d->authority, "example.com");
    assert_false(d->has_ctype);
    assert_int_equal(d->body_len, 0);

    /* answered later, in the other order, from outside the callback */
    assert_int_equal(ts_conn_respond(W.conn, g, 503, "text/plain", (const uint8_t *)"no", 2),
                     APR_SUCCESS);
    assert_int_equal(ts_conn_respond(W.conn, p, 200, "application/json",
                                     (const uint8_t *)answer, strlen(answer)), APR_SUCCESS);
    /* answering twice, or a stream that does not exist, is refused */
    assert_int_equal(ts_conn_respond(W.conn, p, 200, NULL, NULL, 0), APR_EINVAL);
    assert_int_equal(ts_conn_respond(W.conn, 99, 200, NULL, NULL, 0), APR_NOTFOUND);
    cpump();
    c = cstream(&H, p);
    assert_int_equal(c->status, 200);
    assert_string_equal(c->content_type, "application/json");
    assert_int_equal(c->content_length, (long long)strlen(answer));
    assert_true(c->ended);
    assert_body(c, answer, strlen(answer));
    assert_string_equal(c->retry_after, "");
    c = cstream(&H, g);
    assert_int_equal(c->status, 503);         /* passing contention: says when to come back */
    assert_string_equal(c->retry_after, TS_CONN_RETRY_AFTER_S);
    assert_string_equal(c->content_type, "text/plain");
    assert_body(c, "no", 2);
    assert_true(c->ended);
    assert_int_equal(W.nclosed, 2);
    assert_true((W.closed[0] == g && W.closed[1] == p) || (W.closed[0] == p && W.closed[1] == g));
    assert_int_equal(ts_conn_records_in(W.conn), W.crecs);
    assert_idle_output();
    assert_false(ts_conn_finished(W.conn));
}

/* The same exchange under every way a socket may cut the ciphertext. */
static void test_input_chunking(void **state)
{
    static const size_t pieces[] = { 1, 2, 3, 7, 19, 100, 4095, 4096, 4097, 9000, 0 };
    static uint8_t body[9000];
    size_t i;

    (void)state;
    fill_pattern(body, sizeof(body), 5);
    for (i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        cstream_t *c;
        int32_t id;

        world_init(NULL);
        W.piece = pieces[i];
        W.action = DO_RESPOND;
        id = request("POST", "/machine/map", NULL, body, sizeof(body));
        cpump();
        if (W.rv != APR_SUCCESS)
            fail_msg("piece %zu: %s", pieces[i], W.err);
        assert_int_equal(W.nreq, 1);
        assert_int_equal(W.req[0].body_len, sizeof(body));
        assert_int_equal(W.req[0].body_hash, fnv1a(body, sizeof(body)));
        c = cstream(&H, id);
        assert_int_equal(c->status, 200);
        assert_true(c->ended);
        assert_body(c, body, sizeof(body));
        /* the body took three records at least; each one was counted */
        assert_true(W.crecs >= 4);
        assert_int_equal(ts_conn_records_in(W.conn), W.crecs);
        assert_idle_output();
        world_cleanup(NULL);
    }
}

/* Several records in one read: each is decrypted and fed in order; a big body in one call. */
static void test_coalesced_records(void **state)
{
    static uint8_t big[200000];
    uint8_t *wire[4], *all;
    size_t len[4], nrec[4], total = 0, off = 0, i;
    int32_t id[4];
    static char paths[3][32];

    (void)state;
    fill_pattern(big, sizeof(big), 9);
    world_init(NULL);
    cpump();
    W.action = DO_RESPOND;
    /* three separate writes, three records, delivered in one read */
    for (i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/machine/r%zu", i);
        id[i] = request("POST", paths[i], NULL, paths[i], strlen(paths[i]));
        wire[i] = client_wire(&len[i], &nrec[i]);
        assert_int_equal(nrec[i], 1);
        total += len[i];
    }
    /* and a 200 KB body: ~50 full records behind them, in the same read */
    id[3] = request("POST", "/machine/map", NULL, big, sizeof(big));
    wire[3] = client_wire(&len[3], &nrec[3]);
    assert_true(nrec[3] >= sizeof(big) / TS_FRAME_MAX_PLAINTEXT);
    total += len[3];
    all = malloc(total);
    assert_non_null(all);
    for (i = 0; i < 4; i++) {
        memcpy(all + off, wire[i], len[i]);
        off += len[i];
        free(wire[i]);
    }
    /* the client's nghttp2 may need the server's WINDOW_UPDATEs for all of the body */
    assert_int_equal(ts_conn_recv(W.conn, all, total, &W.err), APR_SUCCESS);
    free(all);
    assert_int_equal(ts_conn_records_in(W.conn), W.crecs);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(W.nreq, 4);
    for (i = 0; i < 3; i++) {
        assert_int_equal(W.req[i].id, id[i]);
        assert_string_equal(W.req[i].path, paths[i]);
        assert_body(cstream(&H, id[i]), paths[i], strlen(paths[i]));
    }
    assert_int_equal(W.req[3].id, id[3]);
    assert_int_equal(W.req[3].body_len, sizeof(big));
    assert_int_equal(W.req[3].body_hash, fnv1a(big, sizeof(big)));
    assert_body(cstream(&H, id[3]), big, sizeof(big));
    assert_int_equal(ts_conn_records_in(W.conn), W.crecs);
    /* zero-length records are legal and skipped; the counters stay in step */
    {
        uint8_t rec[64];
        size_t n = client_record(rec, sizeof(rec), NULL, 0);

        assert_int_equal(n, TS_FRAME_RECORD_OVERHEAD);
        assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_SUCCESS);
        request("GET", "/machine/whoami", NULL, NULL, 0);
        cpump();
        assert_int_equal(W.rv, APR_SUCCESS);
        assert_int_equal(W.nreq, 5);
        assert_int_equal(cstream(&H, W.req[4].id)->status, 200);
    }
}

/* Output: small frames gathered into one record; big responses in full 4077-byte records. */
static void test_output_records(void **state)
{
    static uint8_t big[50000];
    size_t i, first, plain = 0;
    int32_t a, b;

    (void)state;
    fill_pattern(big, sizeof(big), 3);
    world_init(NULL);
    a = request("GET", "/a", NULL, NULL, 0);
    b = request("GET", "/b", NULL, NULL, 0);
    cpump();
    assert_int_equal(W.nreq, 2);
    first = W.srecs;
    assert_int_equal(ts_conn_respond(W.conn, a, 200, "text/plain", (const uint8_t *)"A", 1),
                     APR_SUCCESS);
    assert_int_equal(ts_conn_respond(W.conn, b, 200, "text/plain", (const uint8_t *)"B", 1),
                     APR_SUCCESS);
    conn_to_client();
    /* two HEADERS and two DATA frames: one record */
    assert_int_equal(W.srecs - first, 1);
    assert_body(cstream(&H, a), "A", 1);
    assert_body(cstream(&H, b), "B", 1);

    b = request("GET", "/big", NULL, NULL, 0);
    cpump();
    first = W.srecs;
    assert_int_equal(ts_conn_respond(W.conn, b, 200, NULL, big, sizeof(big)), APR_SUCCESS);
    cpump();
    assert_body(cstream(&H, b), big, sizeof(big));
    assert_true(W.srecs - first >= sizeof(big) / TS_FRAME_MAX_PLAINTEXT);
    assert_true(W.srecs < MAX_RECS);
    for (i = first; i < W.srecs; i++)
        plain += W.srec_len[i];
    assert_true(plain > sizeof(big));
    /* every record of that burst but the last is full */
    for (i = first; i + 1 < W.srecs; i++)
        if (W.srec_len[i] != TS_FRAME_MAX_PLAINTEXT)
            fail_msg("record %zu of %zu holds %zu bytes", i - first, W.srecs - first,
                     W.srec_len[i]);
    assert_idle_output();
}

/* Partial writes: the rest stays in place; the buffer goes once everything is sent. */
static void test_partial_send_and_idle_buffers(void **state)
{
    static uint8_t big[300000];
    const uint8_t *out, *out2;
    size_t len, len2;
    const char *err = NULL;
    int32_t id;

    (void)state;
    fill_pattern(big, sizeof(big), 11);
    world_init(NULL);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > TS_FRAME_RECORD_OVERHEAD);
    assert_int_equal(ts_conn_backlog(W.conn), len);
    ts_conn_sent(W.conn, 5);
    assert_int_equal(ts_conn_backlog(W.conn), len - 5);
    assert_int_equal(ts_conn_pending(W.conn, &out2, &len2, &err), APR_SUCCESS);
    assert_ptr_equal(out2, out + 5);
    assert_int_equal(len2, len - 5);
    client_read(out, len, NULL, NULL);
    ts_conn_sent(W.conn, len - 5);
    assert_idle_output();

    id = request("GET", "/machine/map", NULL, NULL, 0);
    cpump();
    assert_int_equal(ts_conn_respond(W.conn, id, 200, NULL, big, sizeof(big)), APR_SUCCESS);
    /* the socket is not drained in one go: output is pulled in bounded slices */
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 0);
    assert_true(len < 128u << 10);
    assert_int_equal(ts_conn_backlog(W.conn), len);
    /* whole records each time, so the client can read a slice as it comes */
    client_read(out, len, NULL, NULL);
    assert_true(ts_frame_reader_at_boundary(&W.crd));
    ts_conn_sent(W.conn, len);
    cpump();
    assert_body(cstream(&H, id), big, sizeof(big));
    assert_true(cstream(&H, id)->ended);
    assert_idle_output();
}

/* A client with windows far larger than the response. */
static const nghttp2_settings_entry big_window[] = {
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 8u << 20 },
};

/* A socket that does not drain: the connection stops pulling from HTTP/2 at a bound, and
 * pulls again once the backlog is low; the bytes stay in order throughout. */
static void test_output_backpressure(void **state)
{
    static uint8_t big[1u << 20];
    opts_t o = { 0, 0, 0, big_window, 1, 0, 0 };
    const uint8_t *out, *out2;
    size_t len, len2, len3, keep = 1000;
    const char *err = NULL;
    int32_t id;

    (void)state;
    fill_pattern(big, sizeof(big), 13);
    world_init(&o);
    assert_int_equal(nghttp2_session_set_local_window_size(H.cli, NGHTTP2_FLAG_NONE, 0, 16 << 20),
                     0);
    id = request("GET", "/machine/map", NULL, NULL, 0);
    cpump();
    assert_int_equal(ts_conn_respond(W.conn, id, 200, NULL, big, sizeof(big)), APR_SUCCESS);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    /* about one send budget (64 KiB, plus at most one HTTP/2 frame and record overhead) */
    assert_true(len >= 64u << 10);
    assert_true(len < 96u << 10);
    /* nothing sent: asking again pulls nothing more */
    assert_int_equal(ts_conn_pending(W.conn, &out2, &len2, &err), APR_SUCCESS);
    assert_ptr_equal(out2, out);
    assert_int_equal(len2, len);
    /* most of it sent: still above nothing, so it refills behind what is left */
    client_read(out, len - keep, NULL, NULL);
    ts_conn_sent(W.conn, len - keep);
    assert_int_equal(ts_conn_backlog(W.conn), keep);
    assert_int_equal(ts_conn_pending(W.conn, &out2, &len3, &err), APR_SUCCESS);
    assert_true(len3 > keep + (32u << 10));
    assert_true(len3 < keep + (96u << 10));
    assert_int_equal(ts_conn_backlog(W.conn), len3);
    client_read(out2, len3, NULL, NULL);
    ts_conn_sent(W.conn, len3);
    cpump();
    assert_body(cstream(&H, id), big, sizeof(big));
    assert_true(cstream(&H, id)->ended);
    assert_idle_output();
}

/* A never-ending response: the client's window decides what goes, WINDOW_UPDATE the rest. */
static void test_streaming_window(void **state)
{
    opts_t o = { 0, 0, 3000, tiny_window, 1, 1, 0 };
    uint8_t data[1000];
    cstream_t *c;
    int32_t id;

    (void)state;
    fill_pattern(data, sizeof(data), 1);
    world_init(&o);
    W.action = DO_STREAM;
    id = request("POST", "/machine/map", NULL, "{\"Stream\":true}", 15);
    cpump();
    assert_int_equal(W.nreq, 1);
    c = cstream(&H, id);
    assert_int_equal(c->status, 200);
    assert_string_equal(c->content_type, "application/octet-stream");
    assert_false(c->ended);
    assert_int_equal(ts_conn_stream_write(W.conn, id, data, sizeof(data)), APR_SUCCESS);
    cpump();
    assert_body(c, data, 100);   /* the window, not a byte more */
    /* what waits for the window is not socket backlog, and no output buffer is kept */
    assert_idle_output();
    /* the per-stream queue cap: 1900 waiting + 1101 > 3000 */
    assert_int_equal(ts_conn_stream_write(W.conn, id, data, 1000), APR_SUCCESS);
    assert_int_equal(ts_conn_stream_write(W.conn, id, data, 1101), APR_ENOSPC);
    assert_int_equal(nghttp2_submit_window_update(H.cli, NGHTTP2_FLAG_NONE, id, 400), 0);
    cpump();
    assert_body(c, data, 500);
    assert_int_equal(nghttp2_submit_window_update(H.cli, NGHTTP2_FLAG_NONE, id, 100000), 0);
    assert_int_equal(ts_conn_stream_end(W.conn, id), APR_SUCCESS);
    cpump();
    assert_int_equal(c->len, 2000);
    assert_memory_equal(c->body, data, 1000);
    assert_memory_equal(c->body + 1000, data, 1000);
    assert_true(c->ended);
    assert_int_equal(W.nclosed, 1);
    assert_int_equal(W.closed[0], id);
    assert_int_equal(ts_conn_stream_write(W.conn, id, data, 1), APR_NOTFOUND);
    assert_idle_output();
}

/* The request body cap from the environment reaches HTTP/2: 413, no dispatch. */
static void test_max_body(void **state)
{
    opts_t o = { 0, 100, 0, NULL, 0, 0, 0 };
    static uint8_t body[200];
    int32_t id;

    (void)state;
    world_init(&o);
    id = request("POST", "/machine/map", NULL, body, sizeof(body));
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(W.nreq, 0);
    assert_int_equal(cstream(&H, id)->status, 413);
}

/* A record that fails authentication kills the connection: no output, not even what waited. */
static void test_bad_mac(void **state)
{
    uint8_t rec[128];
    const uint8_t *out;
    size_t n, len;
    uint64_t before;
    const char *err = NULL;
    int32_t done, held;

    (void)state;
    world_init(NULL);
    done = request("GET", "/machine/whoami", NULL, NULL, 0);
    held = request("GET", "/machine/whoami", NULL, NULL, 0);
    cpump();
    assert_int_equal(W.nreq, 2);
    assert_int_equal(ts_conn_respond(W.conn, done, 200, NULL, (const uint8_t *)"{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 0);       /* sealed, waiting for the socket */
    /* handed to the record layer whole: that stream is over as far as HTTP/2 goes */
    assert_int_equal(W.nclosed, 1);
    assert_int_equal(W.closed[0], done);
    before = ts_conn_records_in(W.conn);
    n = client_record(rec, sizeof(rec), "\0\0\0\x06\0\0\0\0\0", 9);
    rec[n - 1] ^= 0x01;         /* the tag */
    W.err = NULL;
    assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_EGENERAL);
    assert_non_null(W.err);
    assert_int_equal(ts_conn_records_in(W.conn), before);
    assert_true(ts_conn_finished(W.conn));
    /* what waited for the socket is dropped: nothing more goes out */
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_int_equal(len, 0);
    assert_int_equal(ts_conn_backlog(W.conn), 0);
    /* dead for good */
    assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_EGENERAL);
    assert_int_equal(ts_conn_respond(W.conn, held, 200, NULL, NULL, 0), APR_EGENERAL);
    assert_int_equal(ts_conn_stream_start(W.conn, held, 200, NULL), APR_EGENERAL);
    assert_int_equal(ts_conn_stream_write(W.conn, held, (const uint8_t *)"x", 1), APR_EGENERAL);
    assert_int_equal(ts_conn_stream_end(W.conn, held), APR_EGENERAL);
    ts_conn_goaway(W.conn);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_int_equal(len, 0);
    assert_true(ts_conn_finished(W.conn));
    /* the stream the handler still held is reported when the connection goes */
    assert_int_equal(W.nclosed, 1);
    ts_conn_destroy(W.conn);
    W.conn = NULL;
    assert_int_equal(W.nclosed, 2);
    assert_int_equal(W.closed[1], held);
}

/* A good record followed by a bad one in the same read: the first counts, then death. */
static void test_bad_record_after_good(void **state)
{
    uint8_t wire[256];
    size_t n;
    uint64_t before;

    (void)state;
    world_init(NULL);
    cpump();
    before = ts_conn_records_in(W.conn);
    /* a PING (legal HTTP/2), then a record sealed with the wrong counter */
    n = client_record(wire, sizeof(wire), "\0\0\x08\x06\0\0\0\0\0" "12345678", 17);
    ts_noise_cipher_set_counter(&W.ctx, ts_noise_cipher_counter(&W.ctx) + 1);
    n += client_record(wire + n, sizeof(wire) - n, "\0\0\x08\x06\0\0\0\0\0" "abcdefgh", 17);
    assert_int_equal(ts_conn_recv(W.conn, wire, n, &W.err), APR_EGENERAL);
    assert_int_equal(ts_conn_records_in(W.conn), before + 1);
    assert_true(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_backlog(W.conn), 0);
}

static void expect_fatal_frame(const uint8_t *wire, size_t n, apr_status_t want,
                               const char *text)
{
    const uint8_t *out;
    size_t len;
    const char *err = NULL;

    world_init(NULL);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    W.err = NULL;
    assert_int_equal(ts_conn_recv(W.conn, wire, n, &W.err), want);
    assert_non_null(W.err);
    assert_non_null(strstr(W.err, text));
    assert_true(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_int_equal(len, 0);
    assert_int_equal(ts_conn_recv(W.conn, wire, n, &W.err), APR_EGENERAL);
    world_cleanup(NULL);
}

/* Type other than 04, or a length above 4096 (refused on the header alone). */
static void test_wrong_type_and_oversize(void **state)
{
    uint8_t rec[128];
    size_t n;

    (void)state;
    /* a correctly sealed record under an error-frame type byte */
    world_init(NULL);
    cpump();
    n = client_record(rec, sizeof(rec), "\0\0\0\x04\0\0\0\0\0", 9);
    rec[0] = TS_FRAME_TYPE_ERROR;
    W.err = NULL;
    assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_EINVAL);
    assert_non_null(strstr(W.err, "type"));
    assert_true(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_backlog(W.conn), 0);
    world_cleanup(NULL);

    expect_fatal_frame((const uint8_t *)"\x02\x00\x30", 3, APR_EINVAL, "type");
    /* 3 + 4094 > 4096: no body byte is needed to know */
    expect_fatal_frame((const uint8_t *)"\x04\x0f\xfe", 3, APR_EINVAL, "4096");
    expect_fatal_frame((const uint8_t *)"\x04\xff\xff", 3, APR_EINVAL, "4096");
    /* shorter than a tag */
    expect_fatal_frame((const uint8_t *)"\x04\x00\x0f", 3, APR_EINVAL, "tag");
}

/* Not HTTP/2 inside valid records: fatal, and what HTTP/2 queued still leaves, sealed,
 * before the connection reports finished. */
static void test_garbage_preface(void **state)
{
    static const char junk[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    uint8_t rec[128];
    const uint8_t *out;
    size_t n, len;
    const char *err = NULL;

    (void)state;
    world_init(NULL);
    n = client_record(rec, sizeof(rec), junk, strlen(junk));
    W.err = NULL;
    assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_EGENERAL);
    assert_non_null(strstr(W.err, "preface"));
    assert_int_equal(ts_conn_records_in(W.conn), 1);    /* it did hold the keys */
    assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_EGENERAL);
    /* the driver flushes, then asks */
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 0);
    assert_false(ts_conn_finished(W.conn));
    client_read(out, len, NULL, NULL);
    ts_conn_sent(W.conn, len);
    assert_int_equal(W.srecs, 1);
    assert_int_equal(W.first_pt[3], NGHTTP2_SETTINGS);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_int_equal(len, 0);
    assert_true(ts_conn_finished(W.conn));
    assert_int_equal(W.nreq, 0);
}

/* A protocol violation after a good preface: GOAWAY(PROTOCOL_ERROR) goes out in a record,
 * then the connection is finished. */
static void test_garbage_frame_goaway(void **state)
{
    /* DATA on stream 0 is a connection error (RFC 9113 6.1) */
    static const uint8_t bad[] = { 0, 0, 4, NGHTTP2_DATA, 0, 0, 0, 0, 0, 'j', 'u', 'n', 'k' };
    uint8_t rec[128];
    const uint8_t *out;
    size_t n, len;
    const char *err = NULL;

    (void)state;
    world_init(NULL);
    request("GET", "/machine/whoami", NULL, NULL, 0);
    cpump();
    assert_int_equal(W.nreq, 1);
    n = client_record(rec, sizeof(rec), bad, sizeof(bad));
    /* nghttp2 handles a connection error itself: the read succeeds, reading stops */
    assert_int_equal(ts_conn_recv(W.conn, rec, n, &W.err), APR_SUCCESS);
    assert_false(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 0);
    assert_false(ts_conn_finished(W.conn));              /* not before it went out */
    client_read(out, len, NULL, NULL);
    ts_conn_sent(W.conn, len);
    assert_int_equal(H.goaway_seen, 1);
    assert_int_equal(H.goaway_code, NGHTTP2_PROTOCOL_ERROR);
    assert_true(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_backlog(W.conn), 0);
}

/* A flood is fatal: the answers already queued are still flushed before finished. */
static void test_ping_flood_fatal(void **state)
{
    uint8_t opaque[8] = { 0 };
    const uint8_t *out;
    size_t len, total = 0;
    const char *err = NULL;
    int i;

    (void)state;
    world_init(NULL);
    cpump();
    for (i = 0; i < 2000; i++) {
        opaque[0] = (uint8_t)i;
        opaque[1] = (uint8_t)(i >> 8);
        assert_int_equal(nghttp2_submit_ping(H.cli, NGHTTP2_FLAG_NONE, opaque), 0);
    }
    client_to_conn();
    assert_int_equal(W.rv, APR_EGENERAL);
    assert_non_null(strstr(W.err, "flood"));
    for (;;) {
        assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
        if (!len)
            break;
        assert_false(ts_conn_finished(W.conn));
        client_read(out, len, NULL, NULL);
        ts_conn_sent(W.conn, len);
        total += len;
    }
    assert_true(total > 0);
    assert_true(ts_conn_finished(W.conn));
}

/* Graceful end: GOAWAY(NO_ERROR) at once, the open stream runs on, finished when it ends. */
static void test_goaway_drain(void **state)
{
    const uint8_t *out;
    size_t len;
    const char *err = NULL;
    int32_t first, late;

    (void)state;
    world_init(NULL);
    W.action = DO_STREAM;
    first = request("POST", "/machine/map", NULL, "{}", 2);
    cpump();
    assert_int_equal(W.nreq, 1);
    ts_conn_goaway(W.conn);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 0);
    client_read(out, len, NULL, NULL);
    ts_conn_sent(W.conn, len);
    assert_int_equal(H.goaway_seen, 1);
    assert_int_equal(H.goaway_code, NGHTTP2_NO_ERROR);
    assert_int_equal(H.goaway_last, first);
    assert_false(ts_conn_finished(W.conn));
    /* a new request after the GOAWAY never reaches the handler */
    late = request("GET", "/machine/whoami", NULL, NULL, 0);
    cpump();
    assert_int_equal(W.nreq, 1);
    assert_int_equal(cstream(&H, late)->status, 0);
    assert_false(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_stream_write(W.conn, first, (const uint8_t *)"last", 4), APR_SUCCESS);
    cpump();
    assert_false(ts_conn_finished(W.conn));
    assert_int_equal(ts_conn_stream_end(W.conn, first), APR_SUCCESS);
    cpump();
    assert_body(cstream(&H, first), "last", 4);
    assert_true(cstream(&H, first)->ended);
    assert_int_equal(W.nclosed, 1);
    assert_true(ts_conn_finished(W.conn));
    assert_idle_output();
}

/* A request already on the wire when the server drains is refused, not dispatched. */
static void test_goaway_refuses_late_stream(void **state)
{
    uint8_t *wire;
    size_t len, nrec;
    int32_t first, late;

    (void)state;
    world_init(NULL);
    W.action = DO_STREAM;
    first = request("POST", "/machine/map", NULL, "{}", 2);
    cpump();
    late = request("GET", "/machine/whoami", NULL, NULL, 0);
    wire = client_wire(&len, &nrec);
    ts_conn_goaway(W.conn);
    conn_to_client();
    assert_int_equal(H.goaway_last, first);
    assert_int_equal(cstream(&H, late)->close_code, NGHTTP2_REFUSED_STREAM);
    feed_server(wire, len);
    free(wire);
    assert_int_equal(W.rv, APR_SUCCESS);
    cpump();
    assert_int_equal(W.nreq, 1);
    assert_int_equal(ts_conn_stream_end(W.conn, first), APR_SUCCESS);
    cpump();
    assert_true(ts_conn_finished(W.conn));
}

/* The client cancels a streaming response: stream_closed fires, the id is dead. */
static void test_client_rst_stream(void **state)
{
    int32_t a, b;

    (void)state;
    world_init(NULL);
    W.action = DO_STREAM;
    a = request("POST", "/machine/map", NULL, "{}", 2);
    b = request("POST", "/machine/map", NULL, "{}", 2);
    cpump();
    assert_int_equal(W.nreq, 2);
    assert_int_equal(ts_conn_stream_write(W.conn, a, (const uint8_t *)"abc", 3), APR_SUCCESS);
    cpump();
    assert_body(cstream(&H, a), "abc", 3);
    assert_int_equal(W.nclosed, 0);
    assert_int_equal(nghttp2_submit_rst_stream(H.cli, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL), 0);
    cpump();
    assert_int_equal(W.nclosed, 1);
    assert_int_equal(W.closed[0], a);
    assert_int_equal(ts_conn_stream_write(W.conn, a, (const uint8_t *)"x", 1), APR_NOTFOUND);
    assert_int_equal(ts_conn_stream_end(W.conn, a), APR_NOTFOUND);
    /* the other stream is untouched */
    assert_int_equal(ts_conn_stream_write(W.conn, b, (const uint8_t *)"def", 3), APR_SUCCESS);
    cpump();
    assert_body(cstream(&H, b), "def", 3);
    assert_false(ts_conn_finished(W.conn));
    assert_idle_output();
}

/* Destroy mid-flight: open streams with queued bytes, half a record buffered, unsent output. */
static void test_destroy_with_open_streams(void **state)
{
    static uint8_t lots[5000];
    uint8_t rec[64];
    const uint8_t *out;
    size_t n, len;
    const char *err = NULL;
    opts_t o = { 0, 0, 0, tiny_window, 1, 1, 0 };
    int32_t a, b;

    (void)state;
    world_init(&o);
    W.action = DO_STREAM;
    a = request("POST", "/machine/map", NULL, "{}", 2);
    b = request("POST", "/machine/map", NULL, "{}", 2);
    cpump();
    assert_int_equal(W.nreq, 2);
    assert_int_equal(ts_conn_stream_write(W.conn, a, lots, sizeof(lots)), APR_SUCCESS);
    assert_int_equal(ts_conn_stream_write(W.conn, b, lots, sizeof(lots)), APR_SUCCESS);
    assert_int_equal(ts_conn_pending(W.conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 0);       /* sealed, never sent */
    n = client_record(rec, sizeof(rec), "\0\0\0\x04\0\0\0\0\0", 9);
    assert_int_equal(ts_conn_recv(W.conn, rec, n - 4, &W.err), APR_SUCCESS);
    assert_int_equal(W.nclosed, 0);
    ts_conn_destroy(W.conn);
    W.conn = NULL;
    assert_int_equal(W.nclosed, 2);
    assert_true((W.closed[0] == a && W.closed[1] == b) || (W.closed[0] == b && W.closed[1] == a));
}

/* What an idle timeout asks: is any stream open? A request still arriving, one waiting for
 * its answer and a response under way count; answered and reset streams do not. */
static void test_open_streams(void **state)
{
    static const char body[] = "0123456789";
    int32_t slow, held, map;

    (void)state;
    world_init(NULL);
    assert_int_equal(ts_conn_streams(W.conn), 0);
    W.action = DO_NOTHING;
    slow = request_ex("POST", "/machine/register", "unused", NULL, NULL, body, sizeof(body) - 1,
                      4, NULL);        /* 4 bytes of the body, then the client pauses */
    held = request("POST", "/machine/register", NULL, "{}", 2);
    cpump();
    assert_int_equal(W.rv, APR_SUCCESS);
    assert_int_equal(W.nreq, 1);        /* only the complete one reached the handler */
    assert_int_equal(dreq(held)->id, held);
    assert_int_equal(ts_conn_streams(W.conn), 2);
    W.action = DO_STREAM;
    map = request("POST", "/machine/map", NULL, "{}", 2);
    cpump();
    assert_int_equal(ts_conn_streams(W.conn), 3);
    /* bytes held for the client: queued in the stream until the connection is pumped */
    assert_int_equal(ts_conn_queued(W.conn), 0);
    assert_int_equal(ts_conn_stream_write(W.conn, map, (const uint8_t *)"frame", 5), APR_SUCCESS);
    assert_int_equal(ts_conn_queued(W.conn), 5);
    cpump();
    assert_int_equal(ts_conn_queued(W.conn), 0);
    assert_body(cstream(&H, map), "frame", 5);
    assert_int_equal(ts_conn_respond(W.conn, held, 200, "application/json",
                                     (const uint8_t *)"{}", 2), APR_SUCCESS);
    cpump();
    assert_true(cstream(&H, held)->ended);
    assert_int_equal(ts_conn_streams(W.conn), 2);
    assert_int_equal(nghttp2_submit_rst_stream(H.cli, NGHTTP2_FLAG_NONE, slow, NGHTTP2_CANCEL), 0);
    cpump();
    assert_int_equal(ts_conn_streams(W.conn), 1);   /* the map stream runs on */
    assert_int_equal(ts_conn_stream_end(W.conn, map), APR_SUCCESS);
    cpump();
    assert_true(cstream(&H, map)->ended);
    assert_int_equal(ts_conn_streams(W.conn), 0);
    assert_false(ts_conn_finished(W.conn));
}

/* Without a stream_closed callback everything works the same. */
static void test_no_closed_callback(void **state)
{
    opts_t o = { 0, 0, 0, NULL, 0, 0, 1 };
    int32_t a, b;

    (void)state;
    world_init(&o);
    W.action = DO_STREAM;
    a = request("POST", "/machine/map", NULL, "{}", 2);
    b = request("POST", "/machine/map", NULL, "{}", 2);
    cpump();
    assert_int_equal(ts_conn_stream_end(W.conn, a), APR_SUCCESS);
    assert_int_equal(nghttp2_submit_rst_stream(H.cli, NGHTTP2_FLAG_NONE, b, NGHTTP2_CANCEL), 0);
    cpump();
    assert_true(cstream(&H, a)->ended);
    assert_int_equal(W.nclosed, 0);
    ts_conn_destroy(W.conn);
    W.conn = NULL;
    assert_int_equal(W.nclosed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_big_blocks_mapped, world_cleanup),
        cmocka_unit_test_teardown(test_idle_release, world_cleanup),
        cmocka_unit_test_teardown(test_handshake_and_settings, world_cleanup),
        cmocka_unit_test_teardown(test_old_client_no_early_payload, world_cleanup),
        cmocka_unit_test_teardown(test_request_dispatch_and_respond, world_cleanup),
        cmocka_unit_test_teardown(test_input_chunking, world_cleanup),
        cmocka_unit_test_teardown(test_coalesced_records, world_cleanup),
        cmocka_unit_test_teardown(test_output_records, world_cleanup),
        cmocka_unit_test_teardown(test_partial_send_and_idle_buffers, world_cleanup),
        cmocka_unit_test_teardown(test_output_backpressure, world_cleanup),
        cmocka_unit_test_teardown(test_streaming_window, world_cleanup),
        cmocka_unit_test_teardown(test_max_body, world_cleanup),
        cmocka_unit_test_teardown(test_bad_mac, world_cleanup),
        cmocka_unit_test_teardown(test_bad_record_after_good, world_cleanup),
        cmocka_unit_test_teardown(test_wrong_type_and_oversize, world_cleanup),
        cmocka_unit_test_teardown(test_garbage_preface, world_cleanup),
        cmocka_unit_test_teardown(test_garbage_frame_goaway, world_cleanup),
        cmocka_unit_test_teardown(test_ping_flood_fatal, world_cleanup),
        cmocka_unit_test_teardown(test_goaway_drain, world_cleanup),
        cmocka_unit_test_teardown(test_goaway_refuses_late_stream, world_cleanup),
        cmocka_unit_test_teardown(test_client_rst_stream, world_cleanup),
        cmocka_unit_test_teardown(test_destroy_with_open_streams, world_cleanup),
        cmocka_unit_test_teardown(test_no_closed_callback, world_cleanup),
        cmocka_unit_test_teardown(test_open_streams, world_cleanup),
    };

    if (ts_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests_name("ts_conn", tests, NULL, NULL);
}
