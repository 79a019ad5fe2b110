/* noisebench.c: the raw crypto cost of the server side of a TS2021 handshake on this machine:
 * ts_noise_respond (read message 1, write message 2, split) in a loop, single thread, CPU time.
 * Also the other per-handshake crypto the upgrade handler does (the early payload: one more
 * X25519 key pair and three records), one X25519 for scale, and the sans-I/O connection core's
 * share of a handshake as tsload makes it (ts_conn_create, the client's preface, SETTINGS and
 * request in, SETTINGS and the answer out, SETTINGS ACK in, ts_conn_destroy).
 *
 *   noisebench [--iterations N]
 * Prints "key value" lines (microseconds per operation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "ts_conn.h"
#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"

#define NMSG 256

static void dispatch(void *baton, const ts_conn_request_t *req)
{
    static const char body[] = "{\"MachineKey\":\"mkey:0000000000000000000000000000000000000000"
                               "000000000000000000000000\",\"Version\":145}\n";
    (void)baton;
    ts_conn_respond(req->conn, req->stream_id, 200, "application/json", (const uint8_t *)body,
                    sizeof(body) - 1);
}

/* tsload's bytes after message 2: preface, SETTINGS, WINDOW_UPDATE, GET /machine/whoami. */
static size_t client_start(uint8_t *p)
{
    static const char path[] = "/machine/whoami";
    size_t n, blen = 0;
    uint8_t *hb;

    memcpy(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    memcpy(p + n, "\0\0\x0c\x04\0\0\0\0\0" "\x00\x02\x00\x00\x00\x00" "\x00\x04\x00\x40\x00\x00", 21);
    n += 21;
    memcpy(p + n, "\0\0\x04\x08\0\0\0\0\0" "\x3f\xff\x00\x00", 13);
    n += 13;
    hb = p + n + 9;
    hb[blen++] = 0x82;
    hb[blen++] = 0x87;
    hb[blen++] = 0x04;
    hb[blen++] = (uint8_t)(sizeof(path) - 1);
    memcpy(hb + blen, path, sizeof(path) - 1);
    blen += sizeof(path) - 1;
    hb[blen++] = 0x01;
    hb[blen++] = 6;
    memcpy(hb + blen, "unused", 6);
    blen += 6;
    memcpy(p + n, "\0\0", 2);
    p[n + 2] = (uint8_t)blen;
    p[n + 3] = 0x01;
    p[n + 4] = 0x05;
    memcpy(p + n + 5, "\0\0\0\x01", 4);
    return n + 9 + blen;
}

static double cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static uint8_t msg1[NMSG][TS_NOISE_MSG1_LEN];
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32], msg2[TS_NOISE_MSG2_LEN];
    uint8_t early[TS_FRAME_EARLY_SEALED_LEN], x[32];
    ts_noise_handshake_t hs;
    ts_noise_session_t sess;
    const char *err = NULL;
    long iters = 20000, i;
    double t0, respond_us, early_us, x_us;
    size_t n;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iters = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: noisebench [--iterations N]\n");
            return 2;
        }
    }
    if (ts_crypto_init() != 0) return 1;
    ts_crypto_x25519_keypair(s_priv, s_pub);
    /* Distinct initiations from distinct clients, made before the clock starts. */
    for (i = 0; i < NMSG; i++) {
        ts_crypto_x25519_keypair(c_priv, c_pub);
        if (ts_noise_initiator_init(&hs, 145, c_priv, s_pub) != APR_SUCCESS
            || ts_noise_write_msg1(&hs, NULL, msg1[i], &err) != APR_SUCCESS) {
            fprintf(stderr, "noisebench: initiator: %s\n", err ? err : "?");
            return 1;
        }
        ts_noise_handshake_wipe(&hs);
    }
    /* Warm-up: page in code and libcrypto's method tables. */
    for (i = 0; i < 200; i++) {
        ts_noise_respond(s_priv, msg1[i % NMSG], TS_NOISE_MSG1_LEN, NULL, msg2, &sess, &err);
        ts_noise_session_wipe(&sess);
    }
    t0 = cpu_now();
    for (i = 0; i < iters; i++) {
        if (ts_noise_respond(s_priv, msg1[i % NMSG], TS_NOISE_MSG1_LEN, NULL, msg2, &sess, &err)
            != APR_SUCCESS) {
            fprintf(stderr, "noisebench: respond: %s\n", err ? err : "?");
            return 1;
        }
        ts_noise_session_wipe(&sess);
    }
    respond_us = (cpu_now() - t0) * 1e6 / (double)iters;

    ts_noise_respond(s_priv, msg1[0], TS_NOISE_MSG1_LEN, NULL, msg2, &sess, &err);
    t0 = cpu_now();
    for (i = 0; i < iters; i++) {
        ts_frame_early_payload_seal(&sess.tx, 145, NULL, early, sizeof(early), &n, &err);
    }
    early_us = (cpu_now() - t0) * 1e6 / (double)iters;

    t0 = cpu_now();
    for (i = 0; i < iters; i++) {
        if (crypto_scalarmult_curve25519(x, s_priv, c_pub) != 0) x[0] = 0;
        c_pub[0] ^= x[0] & 1;   /* keep the calls dependent */
    }
    x_us = (cpu_now() - t0) * 1e6 / (double)iters;

    /* The connection core: sessions made outside the clock (the crypto is counted above);
     * the client's records sealed outside the clock too. */
    {
        enum { NC = 512 };
        static ts_noise_session_t srv[NC];
        static uint8_t wire1[NC][512], wire2[NC][64];
        static size_t wl1[NC], wl2[NC];
        static const uint8_t ack[9] = { 0, 0, 0, 4, 1, 0, 0, 0, 0 };
        uint8_t plain[512];
        size_t plen = client_start(plain);
        ts_conn_env_t env;
        long rounds = iters / NC + 1, r, k, done = 0;
        double spent = 0;

        memset(&env, 0, sizeof(env));
        env.dispatch = dispatch;
        for (r = 0; r < rounds; r++) {
            for (k = 0; k < NC; k++) {
                ts_noise_session_t cli;
                ts_noise_initiator_init(&hs, 145, c_priv, s_pub);
                ts_noise_write_msg1(&hs, NULL, msg1[0], &err);
                ts_noise_respond(s_priv, msg1[0], TS_NOISE_MSG1_LEN, NULL, msg2, &srv[k], &err);
                ts_noise_read_msg2(&hs, msg2, TS_NOISE_MSG2_LEN, &err);
                ts_noise_split(&hs, &cli, &err);
                /* the handler seals the early payload with tx first */
                ts_frame_early_payload_seal(&srv[k].tx, 145, NULL, early, sizeof(early), &n, &err);
                ts_frame_seal(&cli.tx, wire1[k], sizeof(wire1[k]), plain, plen, &wl1[k], &err);
                ts_frame_seal(&cli.tx, wire2[k], sizeof(wire2[k]), ack, 9, &wl2[k], &err);
                ts_noise_session_wipe(&cli);
            }
            t0 = cpu_now();
            for (k = 0; k < NC; k++) {
                ts_conn_t *conn;
                const uint8_t *out;
                size_t len;
                if (ts_conn_create(&conn, &srv[k], &env, &err) != APR_SUCCESS) return 1;
                while (ts_conn_pending(conn, &out, &len, &err) == APR_SUCCESS && len)
                    ts_conn_sent(conn, len);
                if (ts_conn_recv(conn, wire1[k], wl1[k], &err) != APR_SUCCESS) {
                    fprintf(stderr, "noisebench: conn: %s\n", err);
                    return 1;
                }
                while (ts_conn_pending(conn, &out, &len, &err) == APR_SUCCESS && len)
                    ts_conn_sent(conn, len);
                ts_conn_recv(conn, wire2[k], wl2[k], &err);
                ts_conn_destroy(conn);
                done++;
            }
            spent += cpu_now() - t0;
        }
        printf("conn_core_us %.1f\n", spent * 1e6 / (double)done);
    }
    printf("noise_respond_us %.1f\n", respond_us);
    printf("early_payload_us %.1f\n", early_us);
    printf("x25519_us %.1f\n", x_us);
    printf("iterations %ld\n", iters);
    return 0;
}
