/* connmem.c: heap bytes per idle TS2021 connection in the module's sans-I/O core, without
 * Apache: N ts_conn_t, each after a real in-memory Noise handshake, the client's HTTP/2
 * preface, SETTINGS, WINDOW_UPDATE, one GET answered with a never-ending stream (as the
 * /ts2021-test/stream endpoint does), and the client's SETTINGS ACK; all output drained.
 * Also the HTTP/2 session alone (ts_h2 with nghttp2), through a counting allocator.
 * Explains the per-connection figure of `tsload idle` (the rest is Apache, APR and malloc).
 *
 *   connmem [--conns N]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_conn.h"
#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_h2.h"
#include "ts_noise.h"

static void dispatch(void *baton, const ts_conn_request_t *req)
{
    (void)baton;
    ts_conn_stream_start(req->conn, req->stream_id, 200, "application/octet-stream");
}

/* What tsload sends after message 2: preface, SETTINGS (no push, 4 MiB window), connection
 * WINDOW_UPDATE, HEADERS for GET /ts2021-test/stream?chunks=0&size=1; then SETTINGS ACK. */
static size_t client_start(uint8_t *p)
{
    static const char path[] = "/ts2021-test/stream?chunks=0&size=1";
    size_t n = 0, blen;
    uint8_t *hb;

    memcpy(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    memcpy(p + n, "\0\0\x0c\x04\0\0\0\0\0" "\x00\x02\x00\x00\x00\x00" "\x00\x04\x00\x40\x00\x00", 21);
    n += 21;
    memcpy(p + n, "\0\0\x04\x08\0\0\0\0\0" "\x3f\xff\x00\x00", 13);
    n += 13;
    hb = p + n + 9;
    blen = 0;
    hb[blen++] = 0x82;
    hb[blen++] = 0x87;
    hb[blen++] = 0x04;
    hb[blen++] = (uint8_t)strlen(path);
    memcpy(hb + blen, path, strlen(path));
    blen += strlen(path);
    hb[blen++] = 0x01;
    hb[blen++] = 6;
    memcpy(hb + blen, "unused", 6);
    blen += 6;
    memcpy(p + n, "\0\0", 2);
    p[n + 2] = (uint8_t)blen;
    p[n + 3] = 0x01;
    p[n + 4] = 0x05;
    memcpy(p + n + 5, "\0\0\0\x01", 4);
    n += 9 + blen;
    return n;
}

static const uint8_t settings_ack[9] = { 0, 0, 0, 4, 1, 0, 0, 0, 0 };

/* ---- counting allocator for the ts_h2-only measurement ---- */
static size_t live;
static void *c_malloc(size_t n, void *b) { (void)b; void *p = malloc(n); if (p) live += malloc_usable_size(p); return p; }
static void c_free(void *p, void *b) { (void)b; if (p) live -= malloc_usable_size(p); free(p); }
static void *c_calloc(size_t m, size_t n, void *b) { (void)b; void *p = calloc(m, n); if (p) live += malloc_usable_size(p); return p; }
static void *c_realloc(void *p, size_t n, void *b)
{
    (void)b;
    if (p) live -= malloc_usable_size(p);
    p = realloc(p, n);
    if (p) live += malloc_usable_size(p);
    return p;
}

static void h2_req(void *ctx, ts_h2_session_t *s, ts_h2_request_t *r)
{
    ts_h2_response_t head = { 200, "application/octet-stream", NULL, 0 };

    (void)ctx;
    ts_h2_stream_start(s, r->stream_id, &head);
}

static apr_status_t h2_discard(void *baton, const uint8_t *d, size_t n)
{
    (void)baton;
    (void)d;
    (void)n;
    return APR_SUCCESS;
}

static long rss_kib(void)
{
    char line[256];
    long v = 0;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    }
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    long n = 10000, i;
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32];
    uint8_t msg1[TS_NOISE_MSG1_LEN], msg2[TS_NOISE_MSG2_LEN], plain[512], wire[1024];
    ts_conn_t **conns;
    ts_h2_session_t **h2s;
    ts_conn_env_t env;
    struct mallinfo2 m0, m1;
    long r0, r1;
    const char *err = NULL;
    size_t plen;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--conns") && i + 1 < argc) n = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: connmem [--conns N]\n");
            return 2;
        }
    }
    ts_crypto_init();
    ts_crypto_x25519_keypair(s_priv, s_pub);
    ts_crypto_x25519_keypair(c_priv, c_pub);
    conns = calloc((size_t)n, sizeof(*conns));
    h2s = calloc((size_t)n, sizeof(*h2s));
    memset(&env, 0, sizeof(env));
    env.dispatch = dispatch;
    plen = client_start(plain);

    malloc_trim(0);
    m0 = mallinfo2();
    r0 = rss_kib();
    for (i = 0; i < n; i++) {
        ts_noise_handshake_t hs;
        ts_noise_session_t srv, cli;
        const uint8_t *out;
        size_t len, wl;

        ts_noise_initiator_init(&hs, 145, c_priv, s_pub);
        ts_noise_write_msg1(&hs, NULL, msg1, &err);
        if (ts_noise_respond(s_priv, msg1, sizeof(msg1), NULL, msg2, &srv, &err) != APR_SUCCESS
            || ts_noise_read_msg2(&hs, msg2, sizeof(msg2), &err) != APR_SUCCESS
            || ts_noise_split(&hs, &cli, &err) != APR_SUCCESS
            || ts_conn_create(&conns[i], &srv, &env, &err) != APR_SUCCESS) {
            fprintf(stderr, "connmem: %s\n", err ? err : "?");
            return 1;
        }
        ts_frame_seal(&cli.tx, wire, sizeof(wire), plain, plen, &wl, &err);
        if (ts_conn_recv(conns[i], wire, wl, &err) != APR_SUCCESS) {
            fprintf(stderr, "connmem: recv: %s\n", err);
            return 1;
        }
        while (ts_conn_pending(conns[i], &out, &len, &err) == APR_SUCCESS && len) {
            ts_conn_sent(conns[i], len);
        }
        ts_frame_seal(&cli.tx, wire, sizeof(wire), settings_ack, 9, &wl, &err);
        ts_conn_recv(conns[i], wire, wl, &err);
        while (ts_conn_pending(conns[i], &out, &len, &err) == APR_SUCCESS && len) {
            ts_conn_sent(conns[i], len);
        }
        ts_noise_session_wipe(&cli);
    }
    m1 = mallinfo2();
    r1 = rss_kib();
    printf("conns %ld\n", n);
    printf("ts_conn_heap_bytes_per_conn %.0f\n", (double)(m1.uordblks - m0.uordblks) / (double)n);
    printf("ts_conn_rss_kib_per_conn %.2f\n", (double)(r1 - r0) / (double)n);

    /* The HTTP/2 part alone, counted by the session's allocator (usable sizes). */
    {
        ts_h2_mem_t mem = { NULL, c_malloc, c_free, c_calloc, c_realloc };
        ts_h2_config_t hc;
        memset(&hc, 0, sizeof(hc));
        hc.on_request = h2_req;
        hc.mem = &mem;
        for (i = 0; i < n; i++) {
            if (ts_h2_session_create(&h2s[i], &hc, NULL, &err) != APR_SUCCESS
                || ts_h2_session_recv(h2s[i], plain, plen, &err) != APR_SUCCESS) {
                fprintf(stderr, "connmem: h2: %s\n", err ? err : "?");
                return 1;
            }
            ts_h2_session_send(h2s[i], 1 << 20, h2_discard, NULL, NULL, &err);
            ts_h2_session_recv(h2s[i], settings_ack, 9, &err);
            ts_h2_session_send(h2s[i], 1 << 20, h2_discard, NULL, NULL, &err);
        }
        printf("ts_h2_session_bytes_per_conn %.0f\n", (double)live / (double)n);
    }
    for (i = 0; i < n; i++) {
        ts_conn_destroy(conns[i]);
        ts_h2_session_destroy(h2s[i]);
    }
    return 0;
}
