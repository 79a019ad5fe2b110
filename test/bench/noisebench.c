/* noisebench.c: the raw crypto cost of the server side of a TS2021 handshake on this machine:
 * ts_noise_respond (read message 1, write message 2, split) in a loop, single thread, CPU time.
 * Also the other per-handshake crypto the upgrade handler does (the early payload: one more
 * X25519 key pair and three records), and one X25519 for scale.
 *
 *   noisebench [--iterations N]
 * Prints "key value" lines (microseconds per operation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"

#define NMSG 256

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

    printf("noise_respond_us %.1f\n", respond_us);
    printf("early_payload_us %.1f\n", early_us);
    printf("x25519_us %.1f\n", x_us);
    printf("iterations %ld\n", iters);
    return 0;
}
