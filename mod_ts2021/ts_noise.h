/* ts_noise.h: Noise_IK_25519_ChaChaPoly_BLAKE2s as TS2021 runs it (transport spec section 3):
 * the handshake in both roles, and the per-direction transport cipher states it splits into. */
#ifndef TS_NOISE_H
#define TS_NOISE_H

#include <apr_errno.h>
#include <stddef.h>
#include <stdint.h>

#define TS_NOISE_PROTOCOL_NAME   "Noise_IK_25519_ChaChaPoly_BLAKE2s"
#define TS_NOISE_PROLOGUE_PREFIX "Tailscale Control Protocol v"

#define TS_NOISE_KEY_LEN          32   /* X25519 keys, cipher keys */
#define TS_NOISE_HASH_LEN         32   /* h, ck, handshake hash */
#define TS_NOISE_TAG_LEN          16
#define TS_NOISE_MSG1_LEN         101  /* initiation: 5-byte header + 96 */
#define TS_NOISE_MSG1_HDR_LEN     5
#define TS_NOISE_MSG1_PAYLOAD_LEN 96   /* e (32) + encrypted s (48) + tag (16) */
#define TS_NOISE_MSG2_LEN         51   /* response: 3-byte header + 48 */
#define TS_NOISE_MSG2_HDR_LEN     3
#define TS_NOISE_MSG2_PAYLOAD_LEN 48   /* e (32) + tag (16) */
/* A direction whose counter reaches this value is dead: it is never used as a nonce. */
#define TS_NOISE_COUNTER_EXHAUSTED UINT64_MAX

/* Status codes, with *errmsg (a static string) naming the problem:
 *   APR_EINVAL   malformed input; from ts_noise_read_msg1 *errmsg is the exact
 *                error-frame text of spec 3.5.1 (send it, then close);
 *   APR_EGENERAL authentication/DH failure or misuse: close without sending anything;
 *   APR_ENOSPC   nonce counter exhausted: close. */

/* One direction of the transport. Fields are private; embed it, use the functions. */
typedef struct ts_noise_cipher {
    uint8_t key[TS_NOISE_KEY_LEN];
    uint64_t n;
    int live;
} ts_noise_cipher_t;

/* Optional observer of every handshake step (tests only: it sees the secrets). */
typedef struct ts_noise_trace {
    const char *step;           /* "init", "prologue", "pre s", "e", "es", "s", "ss", "payload",
                                 * "ee", "se", "split" */
    const uint8_t *h, *ck;      /* state after the step */
    const uint8_t *data;        /* bytes mixed into h, or NULL */
    size_t data_len;
    const uint8_t *dh;          /* DH output mixed into ck, or NULL */
    const uint8_t *k;           /* key made by the step (at "split": c2s), or NULL */
    const uint8_t *k2;          /* at "split": s2c, else NULL */
} ts_noise_trace_t;
typedef void ts_noise_trace_fn(void *baton, const ts_noise_trace_t *step);

/* Handshake state. Fields are private except: after ts_noise_read_msg1 succeeds,
 * version and rs (the client's machine key) may be read. */
typedef struct ts_noise_handshake {
    uint8_t h[TS_NOISE_HASH_LEN];
    uint8_t ck[TS_NOISE_HASH_LEN];
    uint8_t k[TS_NOISE_KEY_LEN];
    uint64_t n;
    uint8_t s_priv[TS_NOISE_KEY_LEN], s_pub[TS_NOISE_KEY_LEN];  /* local static */
    uint8_t e_priv[TS_NOISE_KEY_LEN], e_pub[TS_NOISE_KEY_LEN];  /* local ephemeral */
    uint8_t rs[TS_NOISE_KEY_LEN];                               /* remote static */
    uint8_t re[TS_NOISE_KEY_LEN];                               /* remote ephemeral */
    uint16_t version;
    int initiator;
    int next;
    ts_noise_trace_fn *trace;
    void *trace_baton;
} ts_noise_handshake_t;

/* What a finished handshake leaves: two ciphers and the authenticated identity. */
typedef struct ts_noise_session {
    ts_noise_cipher_t tx, rx;
    uint8_t handshake_hash[TS_NOISE_HASH_LEN];
    uint8_t peer_static[TS_NOISE_KEY_LEN];  /* responder: the client's machine key */
    uint16_t version;                        /* the client's capability version */
} ts_noise_session_t;

/* ---- handshake ---- */

/* Server side, with the server's Noise static private key. */
apr_status_t ts_noise_responder_init(ts_noise_handshake_t *hs, const uint8_t s_priv[TS_NOISE_KEY_LEN]);

/* Client side: its machine private key, the server's published Noise key, its capver. */
apr_status_t ts_noise_initiator_init(ts_noise_handshake_t *hs, uint16_t version,
                                     const uint8_t s_priv[TS_NOISE_KEY_LEN],
                                     const uint8_t server_pub[TS_NOISE_KEY_LEN]);

void ts_noise_set_trace(ts_noise_handshake_t *hs, ts_noise_trace_fn *fn, void *baton);

/* Initiator: message 1. e_priv fixes the ephemeral key (vectors); NULL makes a fresh one. */
apr_status_t ts_noise_write_msg1(ts_noise_handshake_t *hs, const uint8_t *e_priv,
                                 uint8_t out[TS_NOISE_MSG1_LEN], const char **errmsg);

/* Responder: validates message 1 in the reference order and learns the client's key. */
apr_status_t ts_noise_read_msg1(ts_noise_handshake_t *hs, const uint8_t *msg, size_t len,
                                const char **errmsg);

/* Responder: message 2. e_priv as for ts_noise_write_msg1. */
apr_status_t ts_noise_write_msg2(ts_noise_handshake_t *hs, const uint8_t *e_priv,
                                 uint8_t out[TS_NOISE_MSG2_LEN], const char **errmsg);

/* Initiator: message 2 (an error frame in its place gives APR_EINVAL; see ts_frame_error_parse). */
apr_status_t ts_noise_read_msg2(ts_noise_handshake_t *hs, const uint8_t *msg, size_t len,
                                const char **errmsg);

/* After the last message: fills the session and wipes hs. */
apr_status_t ts_noise_split(ts_noise_handshake_t *hs, ts_noise_session_t *out, const char **errmsg);

void ts_noise_handshake_wipe(ts_noise_handshake_t *hs);

/* The whole responder side in one call: read_msg1, write_msg2, split. hs is wiped either way. */
apr_status_t ts_noise_respond(const uint8_t s_priv[TS_NOISE_KEY_LEN], const uint8_t *msg1,
                              size_t len, const uint8_t *e_priv, uint8_t msg2[TS_NOISE_MSG2_LEN],
                              ts_noise_session_t *out, const char **errmsg);

void ts_noise_session_wipe(ts_noise_session_t *s);

/* ---- transport ---- */

void ts_noise_cipher_init(ts_noise_cipher_t *c, const uint8_t key[TS_NOISE_KEY_LEN]);

/* Seals len bytes into out (len + TS_NOISE_TAG_LEN bytes; out may equal pt), empty ad,
 * then advances the counter. */
apr_status_t ts_noise_cipher_seal(ts_noise_cipher_t *c, uint8_t *out, const uint8_t *pt,
                                  size_t len, const char **errmsg);

/* Opens len bytes (tag included) into out (out may equal ct). Any failure kills the cipher. */
apr_status_t ts_noise_cipher_open(ts_noise_cipher_t *c, uint8_t *out, const uint8_t *ct,
                                  size_t len, const char **errmsg);

/* The next counter value; and a setter so tests can reach exhaustion. */
uint64_t ts_noise_cipher_counter(const ts_noise_cipher_t *c);
void ts_noise_cipher_set_counter(ts_noise_cipher_t *c, uint64_t n);

void ts_noise_cipher_wipe(ts_noise_cipher_t *c);

#endif
