/* ts_noise.c: Noise IK (symmetric state, one function per pattern token, both roles) and the
 * transport cipher states; the only place TS2021 session keys are derived. */
#include "ts_noise.h"
#include "ts_crypto.h"
#include "ts_frame.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* Which call a handshake expects next; anything else is misuse. */
enum {
    STEP_DEAD = 0,          /* zeroed: never initialised, failed, or split */
    STEP_WRITE_MSG1,
    STEP_READ_MSG1,
    STEP_WRITE_MSG2,
    STEP_READ_MSG2,
    STEP_SPLIT
};

/* Field offsets inside the two handshake messages (spec 3.5.1, 3.5.2). */
#define MSG1_E_OFF   5
#define MSG1_S_OFF   37
#define MSG1_TAG_OFF 85
#define MSG2_E_OFF   3
#define MSG2_TAG_OFF 35
#define ENC_S_LEN    (TS_NOISE_KEY_LEN + TS_NOISE_TAG_LEN)

/* "Tailscale Control Protocol v65535" is the longest prologue. */
#define PROLOGUE_MAX (sizeof(TS_NOISE_PROLOGUE_PREFIX) - 1 + 5)
/* Largest MixHash input: the encrypted static key (48). */
#define MIX_HASH_MAX 64

static apr_status_t fail_with(const char **errmsg, apr_status_t rv, const char *text)
{
    if (errmsg) *errmsg = text;
    return rv;
}

static void trace(const ts_noise_handshake_t *hs, const char *step, const uint8_t *data,
                  size_t data_len, const uint8_t *dh, const uint8_t *k, const uint8_t *k2)
{
    ts_noise_trace_t t;

    if (!hs->trace) return;
    t.step = step;
    t.h = hs->h;
    t.ck = hs->ck;
    t.data = data;
    t.data_len = data_len;
    t.dh = dh;
    t.k = k;
    t.k2 = k2;
    hs->trace(hs->trace_baton, &t);
}

/* ---- symmetric state (Noise spec 5.2) ---- */

static apr_status_t initialize_symmetric(ts_noise_handshake_t *hs, const char **errmsg)
{
    static const char name[] = TS_NOISE_PROTOCOL_NAME;

    /* The name is longer than HASHLEN, so it is hashed rather than padded. */
    if (ts_crypto_blake2s(hs->h, (const uint8_t *)name, sizeof(name) - 1) != 0) {
        return fail_with(errmsg, APR_EGENERAL, "BLAKE2s unavailable in libcrypto");
    }
    memcpy(hs->ck, hs->h, TS_NOISE_HASH_LEN);
    trace(hs, "init", NULL, 0, NULL, NULL, NULL);
    return APR_SUCCESS;
}

static apr_status_t mix_hash(ts_noise_handshake_t *hs, const char *step, const uint8_t *data,
                             size_t len, const char **errmsg)
{
    uint8_t buf[TS_NOISE_HASH_LEN + MIX_HASH_MAX];

    if (len > MIX_HASH_MAX) {
        return fail_with(errmsg, APR_EGENERAL, "MixHash input longer than any handshake field");
    }
    memcpy(buf, hs->h, TS_NOISE_HASH_LEN);
    memcpy(buf + TS_NOISE_HASH_LEN, data, len);
    if (ts_crypto_blake2s(hs->h, buf, TS_NOISE_HASH_LEN + len) != 0) {
        return fail_with(errmsg, APR_EGENERAL, "BLAKE2s unavailable in libcrypto");
    }
    trace(hs, step, data, len, NULL, NULL, NULL);
    return APR_SUCCESS;
}

static apr_status_t mix_key(ts_noise_handshake_t *hs, const char *step,
                            const uint8_t dh[TS_NOISE_KEY_LEN], const char **errmsg)
{
    if (ts_crypto_hkdf2(hs->ck, hs->k, hs->ck, dh, TS_NOISE_KEY_LEN) != 0) {
        return fail_with(errmsg, APR_EGENERAL, "HKDF (HMAC-BLAKE2s) unavailable in libcrypto");
    }
    hs->n = 0;
    trace(hs, step, NULL, 0, dh, hs->k, NULL);
    return APR_SUCCESS;
}

/* Every DH token is MixKey(X25519(one of ours, one of theirs)). */
static apr_status_t mix_dh(ts_noise_handshake_t *hs, const char *step, const uint8_t *priv,
                           const uint8_t *pub, const char **errmsg)
{
    uint8_t dh[TS_NOISE_KEY_LEN];
    apr_status_t rv;

    if (ts_crypto_x25519(dh, priv, pub) != 0) {
        return fail_with(errmsg, APR_EGENERAL, "X25519 gave all zeros (low-order public key)");
    }
    rv = mix_key(hs, step, dh, errmsg);
    sodium_memzero(dh, sizeof(dh));
    return rv;
}

/* In IK every handshake encryption happens after a MixKey, so a key is always set here. */
static apr_status_t encrypt_and_hash(ts_noise_handshake_t *hs, const char *step,
                                     const uint8_t *pt, size_t len, uint8_t *out,
                                     const char **errmsg)
{
    if (ts_crypto_aead_seal(out, hs->k, hs->n, hs->h, TS_NOISE_HASH_LEN, pt, len) != 0) {
        return fail_with(errmsg, APR_EGENERAL, "ChaCha20-Poly1305 seal failed");
    }
    hs->n++;
    return mix_hash(hs, step, out, len + TS_NOISE_TAG_LEN, errmsg);
}

static apr_status_t decrypt_and_hash(ts_noise_handshake_t *hs, const char *step,
                                     const uint8_t *ct, size_t len, uint8_t *out,
                                     const char *why, const char **errmsg)
{
    if (ts_crypto_aead_open(out, hs->k, hs->n, hs->h, TS_NOISE_HASH_LEN, ct, len) != 0) {
        return fail_with(errmsg, APR_EGENERAL, why);
    }
    hs->n++;
    return mix_hash(hs, step, ct, len, errmsg);
}

/* Both sides hash the same things before message 1's tokens: the protocol name, the prologue
 * (which binds the version in message 1's clear header) and the pre-message "<- s". */
static apr_status_t start(ts_noise_handshake_t *hs, const uint8_t responder_pub[TS_NOISE_KEY_LEN],
                          const char **errmsg)
{
    char prologue[PROLOGUE_MAX + 1];
    int len = snprintf(prologue, sizeof(prologue), "%s%u", TS_NOISE_PROLOGUE_PREFIX,
                       (unsigned)hs->version);
    apr_status_t rv;

    if ((rv = initialize_symmetric(hs, errmsg)) != APR_SUCCESS) return rv;
    if ((rv = mix_hash(hs, "prologue", (const uint8_t *)prologue, (size_t)len, errmsg))
        != APR_SUCCESS) {
        return rv;
    }
    return mix_hash(hs, "pre s", responder_pub, TS_NOISE_KEY_LEN, errmsg);
}

/* ---- pattern tokens ---- */

static apr_status_t write_e(ts_noise_handshake_t *hs, const uint8_t *e_priv, uint8_t *out,
                            const char **errmsg)
{
    int bad;

    if (e_priv) {
        memcpy(hs->e_priv, e_priv, TS_NOISE_KEY_LEN);
        bad = ts_crypto_x25519_public(hs->e_pub, hs->e_priv);
    } else {
        bad = ts_crypto_x25519_keypair(hs->e_priv, hs->e_pub);
    }
    if (bad) return fail_with(errmsg, APR_EGENERAL, "cannot make an ephemeral key");
    memcpy(out, hs->e_pub, TS_NOISE_KEY_LEN);
    return mix_hash(hs, "e", hs->e_pub, TS_NOISE_KEY_LEN, errmsg);
}

static apr_status_t read_e(ts_noise_handshake_t *hs, const uint8_t *in, const char **errmsg)
{
    memcpy(hs->re, in, TS_NOISE_KEY_LEN);
    return mix_hash(hs, "e", hs->re, TS_NOISE_KEY_LEN, errmsg);
}

static apr_status_t token_es(ts_noise_handshake_t *hs, const char **errmsg)
{
    return hs->initiator ? mix_dh(hs, "es", hs->e_priv, hs->rs, errmsg)
                         : mix_dh(hs, "es", hs->s_priv, hs->re, errmsg);
}

static apr_status_t token_ss(ts_noise_handshake_t *hs, const char **errmsg)
{
    return mix_dh(hs, "ss", hs->s_priv, hs->rs, errmsg);
}

static apr_status_t token_ee(ts_noise_handshake_t *hs, const char **errmsg)
{
    return mix_dh(hs, "ee", hs->e_priv, hs->re, errmsg);
}

static apr_status_t token_se(ts_noise_handshake_t *hs, const char **errmsg)
{
    return hs->initiator ? mix_dh(hs, "se", hs->s_priv, hs->re, errmsg)
                         : mix_dh(hs, "se", hs->e_priv, hs->rs, errmsg);
}

static apr_status_t write_s(ts_noise_handshake_t *hs, uint8_t out[ENC_S_LEN], const char **errmsg)
{
    return encrypt_and_hash(hs, "s", hs->s_pub, TS_NOISE_KEY_LEN, out, errmsg);
}

static apr_status_t read_s(ts_noise_handshake_t *hs, const uint8_t in[ENC_S_LEN],
                           const char **errmsg)
{
    return decrypt_and_hash(hs, "s", in, ENC_S_LEN, hs->rs,
                            "cannot decrypt the initiator's static key", errmsg);
}

/* Both TS2021 handshake payloads are empty: only the tag travels. */
static apr_status_t write_payload(ts_noise_handshake_t *hs, uint8_t out[TS_NOISE_TAG_LEN],
                                  const char **errmsg)
{
    return encrypt_and_hash(hs, "payload", NULL, 0, out, errmsg);
}

static apr_status_t read_payload(ts_noise_handshake_t *hs, const uint8_t in[TS_NOISE_TAG_LEN],
                                 const char **errmsg)
{
    uint8_t none[1];

    return decrypt_and_hash(hs, "payload", in, TS_NOISE_TAG_LEN, none,
                            "handshake payload tag does not authenticate", errmsg);
}

/* ---- handshake messages ---- */

static apr_status_t fail(ts_noise_handshake_t *hs, apr_status_t rv)
{
    ts_noise_handshake_wipe(hs);
    return rv;
}

static apr_status_t misuse(const char **errmsg)
{
    return fail_with(errmsg, APR_EGENERAL, "handshake call out of order");
}

static apr_status_t init_common(ts_noise_handshake_t *hs, const uint8_t s_priv[TS_NOISE_KEY_LEN])
{
    memset(hs, 0, sizeof(*hs));
    memcpy(hs->s_priv, s_priv, TS_NOISE_KEY_LEN);
    if (ts_crypto_x25519_public(hs->s_pub, hs->s_priv) != 0) return fail(hs, APR_EGENERAL);
    return APR_SUCCESS;
}

apr_status_t ts_noise_responder_init(ts_noise_handshake_t *hs, const uint8_t s_priv[TS_NOISE_KEY_LEN])
{
    apr_status_t rv = init_common(hs, s_priv);

    if (rv == APR_SUCCESS) hs->next = STEP_READ_MSG1;
    return rv;
}

apr_status_t ts_noise_initiator_init(ts_noise_handshake_t *hs, uint16_t version,
                                     const uint8_t s_priv[TS_NOISE_KEY_LEN],
                                     const uint8_t server_pub[TS_NOISE_KEY_LEN])
{
    apr_status_t rv = init_common(hs, s_priv);

    if (rv != APR_SUCCESS) return rv;
    hs->initiator = 1;
    hs->version = version;
    memcpy(hs->rs, server_pub, TS_NOISE_KEY_LEN);
    hs->next = STEP_WRITE_MSG1;
    return APR_SUCCESS;
}

void ts_noise_set_trace(ts_noise_handshake_t *hs, ts_noise_trace_fn *fn, void *baton)
{
    hs->trace = fn;
    hs->trace_baton = baton;
}

/* -> e, es, s, ss */
apr_status_t ts_noise_write_msg1(ts_noise_handshake_t *hs, const uint8_t *e_priv,
                                 uint8_t out[TS_NOISE_MSG1_LEN], const char **errmsg)
{
    apr_status_t rv;

    if (!hs->initiator || hs->next != STEP_WRITE_MSG1) return misuse(errmsg);
    out[0] = (uint8_t)(hs->version >> 8);
    out[1] = (uint8_t)hs->version;
    ts_frame_header_build(out + 2, TS_FRAME_TYPE_INITIATION, TS_NOISE_MSG1_PAYLOAD_LEN);
    if ((rv = start(hs, hs->rs, errmsg)) != APR_SUCCESS
        || (rv = write_e(hs, e_priv, out + MSG1_E_OFF, errmsg)) != APR_SUCCESS
        || (rv = token_es(hs, errmsg)) != APR_SUCCESS
        || (rv = write_s(hs, out + MSG1_S_OFF, errmsg)) != APR_SUCCESS
        || (rv = token_ss(hs, errmsg)) != APR_SUCCESS
        || (rv = write_payload(hs, out + MSG1_TAG_OFF, errmsg)) != APR_SUCCESS) {
        return fail(hs, rv);
    }
    hs->next = STEP_READ_MSG2;
    return APR_SUCCESS;
}

/* Checks and texts in the reference's order (spec 3.5.1); the texts go into error frames. */
static apr_status_t check_msg1_framing(const uint8_t *msg, size_t len, const char **errmsg)
{
    uint8_t type;
    uint16_t plen;

    if (len != TS_NOISE_MSG1_LEN) {
        return fail_with(errmsg, APR_EINVAL, "wrong handshake initiation size");
    }
    ts_frame_header_parse(msg + 2, &type, &plen);
    if (type != TS_FRAME_TYPE_INITIATION) {
        return fail_with(errmsg, APR_EINVAL, "unexpected handshake message type");
    }
    if (plen != TS_NOISE_MSG1_PAYLOAD_LEN) {
        return fail_with(errmsg, APR_EINVAL, "wrong handshake initiation length");
    }
    return APR_SUCCESS;
}

/* <- s ... -> e, es, s, ss, as the responder */
apr_status_t ts_noise_read_msg1(ts_noise_handshake_t *hs, const uint8_t *msg, size_t len,
                                const char **errmsg)
{
    apr_status_t rv;

    if (hs->initiator || hs->next != STEP_READ_MSG1) return misuse(errmsg);
    if ((rv = check_msg1_framing(msg, len, errmsg)) != APR_SUCCESS) return fail(hs, rv);
    hs->version = (uint16_t)((msg[0] << 8) | msg[1]);
    if ((rv = start(hs, hs->s_pub, errmsg)) != APR_SUCCESS
        || (rv = read_e(hs, msg + MSG1_E_OFF, errmsg)) != APR_SUCCESS
        || (rv = token_es(hs, errmsg)) != APR_SUCCESS
        || (rv = read_s(hs, msg + MSG1_S_OFF, errmsg)) != APR_SUCCESS
        || (rv = token_ss(hs, errmsg)) != APR_SUCCESS
        || (rv = read_payload(hs, msg + MSG1_TAG_OFF, errmsg)) != APR_SUCCESS) {
        return fail(hs, rv);
    }
    hs->next = STEP_WRITE_MSG2;
    return APR_SUCCESS;
}

/* <- e, ee, se */
apr_status_t ts_noise_write_msg2(ts_noise_handshake_t *hs, const uint8_t *e_priv,
                                 uint8_t out[TS_NOISE_MSG2_LEN], const char **errmsg)
{
    apr_status_t rv;

    if (hs->initiator || hs->next != STEP_WRITE_MSG2) return misuse(errmsg);
    ts_frame_header_build(out, TS_FRAME_TYPE_RESPONSE, TS_NOISE_MSG2_PAYLOAD_LEN);
    if ((rv = write_e(hs, e_priv, out + MSG2_E_OFF, errmsg)) != APR_SUCCESS
        || (rv = token_ee(hs, errmsg)) != APR_SUCCESS
        || (rv = token_se(hs, errmsg)) != APR_SUCCESS
        || (rv = write_payload(hs, out + MSG2_TAG_OFF, errmsg)) != APR_SUCCESS) {
        return fail(hs, rv);
    }
    /* The responder's ephemeral key has done its job; forget it now, not at split. */
    sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
    hs->next = STEP_SPLIT;
    return APR_SUCCESS;
}

static apr_status_t check_msg2_framing(const uint8_t *msg, size_t len, const char **errmsg)
{
    uint8_t type;
    uint16_t plen;

    if (len >= 1 && msg[0] == TS_FRAME_TYPE_ERROR) {
        return fail_with(errmsg, APR_EINVAL, "server sent an error frame");
    }
    if (len != TS_NOISE_MSG2_LEN) {
        return fail_with(errmsg, APR_EINVAL, "wrong handshake response size");
    }
    ts_frame_header_parse(msg, &type, &plen);
    if (type != TS_FRAME_TYPE_RESPONSE) {
        return fail_with(errmsg, APR_EINVAL, "unexpected handshake message type");
    }
    if (plen != TS_NOISE_MSG2_PAYLOAD_LEN) {
        return fail_with(errmsg, APR_EINVAL, "wrong handshake response length");
    }
    return APR_SUCCESS;
}

/* <- e, ee, se, as the initiator */
apr_status_t ts_noise_read_msg2(ts_noise_handshake_t *hs, const uint8_t *msg, size_t len,
                                const char **errmsg)
{
    apr_status_t rv;

    if (!hs->initiator || hs->next != STEP_READ_MSG2) return misuse(errmsg);
    if ((rv = check_msg2_framing(msg, len, errmsg)) != APR_SUCCESS) return fail(hs, rv);
    if ((rv = read_e(hs, msg + MSG2_E_OFF, errmsg)) != APR_SUCCESS
        || (rv = token_ee(hs, errmsg)) != APR_SUCCESS
        || (rv = token_se(hs, errmsg)) != APR_SUCCESS
        || (rv = read_payload(hs, msg + MSG2_TAG_OFF, errmsg)) != APR_SUCCESS) {
        return fail(hs, rv);
    }
    hs->next = STEP_SPLIT;
    return APR_SUCCESS;
}

apr_status_t ts_noise_split(ts_noise_handshake_t *hs, ts_noise_session_t *out, const char **errmsg)
{
    uint8_t c2s[TS_NOISE_KEY_LEN], s2c[TS_NOISE_KEY_LEN];

    if (hs->next != STEP_SPLIT) return misuse(errmsg);
    memset(out, 0, sizeof(*out));
    if (ts_crypto_hkdf2(c2s, s2c, hs->ck, NULL, 0) != 0) {
        fail(hs, APR_EGENERAL);
        return fail_with(errmsg, APR_EGENERAL, "HKDF (HMAC-BLAKE2s) unavailable in libcrypto");
    }
    trace(hs, "split", NULL, 0, NULL, c2s, s2c);
    ts_noise_cipher_init(&out->tx, hs->initiator ? c2s : s2c);
    ts_noise_cipher_init(&out->rx, hs->initiator ? s2c : c2s);
    memcpy(out->handshake_hash, hs->h, TS_NOISE_HASH_LEN);
    memcpy(out->peer_static, hs->rs, TS_NOISE_KEY_LEN);
    out->version = hs->version;
    sodium_memzero(c2s, sizeof(c2s));
    sodium_memzero(s2c, sizeof(s2c));
    ts_noise_handshake_wipe(hs);
    return APR_SUCCESS;
}

void ts_noise_handshake_wipe(ts_noise_handshake_t *hs)
{
    sodium_memzero(hs, sizeof(*hs));
}

apr_status_t ts_noise_respond(const uint8_t s_priv[TS_NOISE_KEY_LEN], const uint8_t *msg1,
                              size_t len, const uint8_t *e_priv, uint8_t msg2[TS_NOISE_MSG2_LEN],
                              ts_noise_session_t *out, const char **errmsg)
{
    ts_noise_handshake_t hs;
    apr_status_t rv;

    if ((rv = ts_noise_responder_init(&hs, s_priv)) != APR_SUCCESS) {
        rv = fail_with(errmsg, rv, "bad server static key");
    }
    else if ((rv = ts_noise_read_msg1(&hs, msg1, len, errmsg)) == APR_SUCCESS
             && (rv = ts_noise_write_msg2(&hs, e_priv, msg2, errmsg)) == APR_SUCCESS) {
        rv = ts_noise_split(&hs, out, errmsg);
    }
    ts_noise_handshake_wipe(&hs);
    return rv;
}

void ts_noise_session_wipe(ts_noise_session_t *s)
{
    sodium_memzero(s, sizeof(*s));
}

/* ---- transport cipher states ---- */

void ts_noise_cipher_init(ts_noise_cipher_t *c, const uint8_t key[TS_NOISE_KEY_LEN])
{
    memcpy(c->key, key, TS_NOISE_KEY_LEN);
    c->n = 0;
    c->live = 1;
}

/* Shared by seal and open: a dead or exhausted cipher is never used again (no rekey in TS2021). */
static apr_status_t cipher_usable(ts_noise_cipher_t *c, const char **errmsg)
{
    if (!c->live) {
        return fail_with(errmsg, APR_EGENERAL, "cipher state discarded after an earlier failure");
    }
    if (c->n == TS_NOISE_COUNTER_EXHAUSTED) {
        ts_noise_cipher_wipe(c);
        return fail_with(errmsg, APR_ENOSPC, "cipher exhausted: nonce counter reached 2^64-1");
    }
    return APR_SUCCESS;
}

apr_status_t ts_noise_cipher_seal(ts_noise_cipher_t *c, uint8_t *out, const uint8_t *pt,
                                  size_t len, const char **errmsg)
{
    apr_status_t rv = cipher_usable(c, errmsg);

    if (rv != APR_SUCCESS) return rv;
    if (ts_crypto_aead_seal(out, c->key, c->n, NULL, 0, pt, len) != 0) {
        ts_noise_cipher_wipe(c);
        return fail_with(errmsg, APR_EGENERAL, "ChaCha20-Poly1305 seal failed");
    }
    c->n++;
    return APR_SUCCESS;
}

apr_status_t ts_noise_cipher_open(ts_noise_cipher_t *c, uint8_t *out, const uint8_t *ct,
                                  size_t len, const char **errmsg)
{
    apr_status_t rv = cipher_usable(c, errmsg);

    if (rv != APR_SUCCESS) return rv;
    if (ts_crypto_aead_open(out, c->key, c->n, NULL, 0, ct, len) != 0) {
        ts_noise_cipher_wipe(c);
        return fail_with(errmsg, APR_EGENERAL, "record does not authenticate");
    }
    c->n++;
    return APR_SUCCESS;
}

uint64_t ts_noise_cipher_counter(const ts_noise_cipher_t *c)
{
    return c->n;
}

void ts_noise_cipher_set_counter(ts_noise_cipher_t *c, uint64_t n)
{
    c->n = n;
}

void ts_noise_cipher_wipe(ts_noise_cipher_t *c)
{
    sodium_memzero(c, sizeof(*c));
}
