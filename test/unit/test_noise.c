/* test_noise.c: unit tests for ts_noise: every vector's responder trace, messages, keys and
 * records; every server_must_reject initiation; corruptions, misuse, exhaustion, round trips. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>

#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"
#include "ts_util.h"

#include "test_vectors.h"

/* ---- recording the trace ---- */

typedef struct {
    char step[16];
    uint8_t h[32], ck[32], dh[32], k[32], k2[32], data[64];
    size_t data_len;
    int has_data, has_dh, has_k, has_k2;
} trace_event;

typedef struct {
    trace_event ev[20];
    int n;
} trace_log;

static void record_trace(void *baton, const ts_noise_trace_t *t)
{
    trace_log *log = baton;
    trace_event *e;

    assert_true(log->n < 20);
    e = &log->ev[log->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->step, sizeof(e->step), "%s", t->step);
    memcpy(e->h, t->h, 32);
    memcpy(e->ck, t->ck, 32);
    if ((e->has_data = t->data != NULL)) {
        assert_true(t->data_len <= sizeof(e->data));
        memcpy(e->data, t->data, t->data_len);
        e->data_len = t->data_len;
    }
    if ((e->has_dh = t->dh != NULL)) memcpy(e->dh, t->dh, 32);
    if ((e->has_k = t->k != NULL)) memcpy(e->k, t->k, 32);
    if ((e->has_k2 = t->k2 != NULL)) memcpy(e->k2, t->k2, 32);
}

/* Our 13 steps, in the order of the vectors' responder_trace. */
static const char *const expected_steps[] = {
    "init", "prologue", "pre s", "e", "es", "s", "ss", "payload", "e", "ee", "se", "payload", "split",
};

static void check_trace(const trace_log *log, json_t *v)
{
    json_t *trace = json_object_get(v, "responder_trace");
    size_t i;

    assert_int_equal(json_array_size(trace), 13);
    assert_int_equal(log->n, 13);
    for (i = 0; i < 13; i++) {
        const trace_event *e = &log->ev[i];
        json_t *st = json_array_get(trace, i);

        assert_string_equal(e->step, expected_steps[i]);
        if (i == 12) {
            assert_true(e->has_k && e->has_k2);
            assert_hex_field(e->k, 32, st, "c2s_key");
            assert_hex_field(e->k2, 32, st, "s2c_key");
            assert_hex_field(e->h, 32, st, "handshake_hash");
            continue;
        }
        assert_hex_field(e->h, 32, st, "h");
        assert_hex_field(e->ck, 32, st, "ck");
        assert_int_equal(e->has_data, json_object_get(st, "data") != NULL);
        if (e->has_data) assert_hex_field(e->data, e->data_len, st, "data");
        assert_int_equal(e->has_dh, json_object_get(st, "dh") != NULL);
        if (e->has_dh) assert_hex_field(e->dh, 32, st, "dh");
        assert_int_equal(e->has_k, json_object_get(st, "k") != NULL);
        if (e->has_k) assert_hex_field(e->k, 32, st, "k");
    }
}

/* ---- vectors: responder ---- */

static void run_responder_vector(json_t *v, ts_noise_session_t *sess)
{
    json_t *keys = json_object_get(v, "keys");
    uint8_t s_priv[32], e_priv[32], msg2[TS_NOISE_MSG2_LEN];
    size_t m1len;
    uint8_t *m1 = jhex(v, "initiation_message", &m1len);
    ts_noise_handshake_t hs;
    trace_log log = { .n = 0 };
    const char *err = NULL;

    jkey(s_priv, keys, "server_static_private");
    jkey(e_priv, keys, "server_ephemeral_private");
    assert_int_equal(ts_noise_responder_init(&hs, s_priv), APR_SUCCESS);
    ts_noise_set_trace(&hs, record_trace, &log);
    assert_int_equal(ts_noise_read_msg1(&hs, m1, m1len, &err), APR_SUCCESS);
    assert_int_equal(hs.version, json_integer_value(json_object_get(v, "protocol_version")));
    assert_hex_field(hs.rs, 32, keys, "client_static_public");
    assert_int_equal(ts_noise_write_msg2(&hs, e_priv, msg2, &err), APR_SUCCESS);
    assert_hex_field(msg2, sizeof(msg2), v, "response_message");
    assert_int_equal(ts_noise_split(&hs, sess, &err), APR_SUCCESS);
    check_trace(&log, v);

    assert_hex_field(sess->handshake_hash, 32, v, "handshake_hash");
    assert_hex_field(sess->peer_static, 32, keys, "client_static_public");
    assert_hex_field(sess->rx.key, 32, v, "server_rx_key");
    assert_hex_field(sess->tx.key, 32, v, "server_tx_key");
    assert_hex_field(sess->rx.key, 32, v, "c2s_key");
    assert_hex_field(sess->tx.key, 32, v, "s2c_key");
    assert_int_equal(sess->version, json_integer_value(json_object_get(v, "protocol_version")));
    assert_true(sodium_is_zero((const unsigned char *)&hs, sizeof(hs)));
    free(m1);
}

/* Walks one direction's records with cipher c: seals each plaintext with a copy of c (must give
 * the vector's bytes) and opens each frame with c itself (must give the plaintext). */
static void check_direction(json_t *v, const char *dir, ts_noise_cipher_t *c)
{
    json_t *recs = json_object_get(v, dir);
    ts_noise_cipher_t tx = *c;
    uint8_t buf[4096];
    size_t i, flen, ptlen;
    const char *err = NULL;

    assert_true(json_array_size(recs) >= 3);
    for (i = 0; i < json_array_size(recs); i++) {
        json_t *r = json_array_get(recs, i);
        uint8_t *frame = jhex(r, "frame", &flen);
        uint8_t *pt = jhex(r, "plaintext", &ptlen);

        assert_int_equal(ts_noise_cipher_counter(c),
                         json_integer_value(json_object_get(r, "nonce_counter")));
        assert_int_equal(ts_noise_cipher_seal(&tx, buf, pt, ptlen, &err), APR_SUCCESS);
        assert_memory_equal(buf, frame + 3, flen - 3);
        assert_int_equal(ts_noise_cipher_open(c, buf, frame + 3, flen - 3, &err), APR_SUCCESS);
        assert_memory_equal(buf, pt, ptlen);
        free(frame);
        free(pt);
    }
}

static void test_responder_vectors(void **state)
{
    size_t i;
    (void)state;

    for (i = 0; i < N_VECTORS; i++) {
        json_t *v = load_vector(vector_files[i]);
        ts_noise_session_t sess;

        run_responder_vector(v, &sess);
        check_direction(v, "c2s_records", &sess.rx);
        check_direction(v, "s2c_records", &sess.tx);
        ts_noise_session_wipe(&sess);
        json_decref(v);
    }
}

static void test_respond_oneshot(void **state)
{
    size_t i;
    (void)state;

    for (i = 0; i < N_VECTORS; i++) {
        json_t *v = load_vector(vector_files[i]);
        json_t *keys = json_object_get(v, "keys");
        uint8_t s_priv[32], e_priv[32], msg2[TS_NOISE_MSG2_LEN];
        size_t m1len;
        uint8_t *m1 = jhex(v, "initiation_message", &m1len);
        ts_noise_session_t sess;
        const char *err = NULL;

        jkey(s_priv, keys, "server_static_private");
        jkey(e_priv, keys, "server_ephemeral_private");
        assert_int_equal(ts_noise_respond(s_priv, m1, m1len, e_priv, msg2, &sess, &err),
                         APR_SUCCESS);
        assert_hex_field(msg2, sizeof(msg2), v, "response_message");
        assert_hex_field(sess.handshake_hash, 32, v, "handshake_hash");
        assert_hex_field(sess.peer_static, 32, keys, "client_static_public");
        assert_hex_field(sess.rx.key, 32, v, "c2s_key");
        assert_hex_field(sess.tx.key, 32, v, "s2c_key");
        free(m1);
        json_decref(v);
    }
}

/* ---- vectors: initiator ---- */

static void test_initiator_vectors(void **state)
{
    size_t i;
    (void)state;

    for (i = 0; i < N_VECTORS; i++) {
        json_t *v = load_vector(vector_files[i]);
        json_t *keys = json_object_get(v, "keys");
        uint8_t c_priv[32], e_priv[32], s_pub[32], msg1[TS_NOISE_MSG1_LEN];
        size_t m2len;
        uint8_t *m2 = jhex(v, "response_message", &m2len);
        uint16_t version = (uint16_t)json_integer_value(json_object_get(v, "protocol_version"));
        ts_noise_handshake_t hs;
        ts_noise_session_t sess;
        trace_log log = { .n = 0 };
        const char *err = NULL;

        jkey(c_priv, keys, "client_static_private");
        jkey(e_priv, keys, "client_ephemeral_private");
        jkey(s_pub, keys, "server_static_public");
        assert_int_equal(ts_noise_initiator_init(&hs, version, c_priv, s_pub), APR_SUCCESS);
        ts_noise_set_trace(&hs, record_trace, &log);
        assert_int_equal(ts_noise_write_msg1(&hs, e_priv, msg1, &err), APR_SUCCESS);
        assert_hex_field(msg1, sizeof(msg1), v, "initiation_message");
        assert_int_equal(ts_noise_read_msg2(&hs, m2, m2len, &err), APR_SUCCESS);
        assert_int_equal(ts_noise_split(&hs, &sess, &err), APR_SUCCESS);
        /* Same transcript, same chaining keys, same DH values: the trace matches too. */
        check_trace(&log, v);
        assert_hex_field(sess.handshake_hash, 32, v, "handshake_hash");
        assert_memory_equal(sess.peer_static, s_pub, 32);
        assert_hex_field(sess.tx.key, 32, v, "c2s_key");
        assert_hex_field(sess.rx.key, 32, v, "s2c_key");
        check_direction(v, "s2c_records", &sess.rx);
        check_direction(v, "c2s_records", &sess.tx);
        free(m2);
        json_decref(v);
    }
}

/* ---- rejections ---- */

/* The error frame a rejection must produce, if the vector names one. */
static void check_error_frame(json_t *rej, apr_status_t rv, const char *err)
{
    json_t *ref = json_object_get(rej, "reference_error_frame");
    uint8_t frame[TS_FRAME_HDR_LEN + TS_FRAME_ERROR_TEXT_MAX];
    size_t flen;

    if (!ref) {
        assert_int_equal(rv, APR_EGENERAL);
        return;
    }
    assert_int_equal(rv, APR_EINVAL);
    assert_int_equal(ts_frame_error_build(frame, sizeof(frame), err, &flen), APR_SUCCESS);
    assert_hex_field(frame, flen, rej, "reference_error_frame");
}

static void test_server_must_reject(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *rejs = json_object_get(v, "server_must_reject");
    uint8_t s_priv[32], msg2[TS_NOISE_MSG2_LEN];
    size_t i, n = 0, with_frame = 0;
    (void)state;

    jkey(s_priv, json_object_get(v, "keys"), "server_static_private");
    for (i = 0; i < json_array_size(rejs); i++) {
        json_t *rej = json_array_get(rejs, i);
        ts_noise_handshake_t hs;
        const char *err = NULL;
        size_t len;
        uint8_t *m1;
        apr_status_t rv;

        if (!json_object_get(rej, "initiation")) continue;
        m1 = jhex(rej, "initiation", &len);
        assert_int_equal(ts_noise_responder_init(&hs, s_priv), APR_SUCCESS);
        rv = ts_noise_read_msg1(&hs, m1, len, &err);
        assert_non_null(err);
        check_error_frame(rej, rv, err);
        with_frame += json_object_get(rej, "reference_error_frame") != NULL;
        /* A failed handshake keeps no secrets and cannot be continued. */
        assert_true(sodium_is_zero((const unsigned char *)&hs, sizeof(hs)));
        assert_int_equal(ts_noise_write_msg2(&hs, NULL, msg2, &err), APR_EGENERAL);
        free(m1);
        n++;
    }
    assert_int_equal(n, 7);
    assert_int_equal(with_frame, 3);
    json_decref(v);
}

static apr_status_t respond_to(const uint8_t s_priv[32], const uint8_t *m1, size_t len,
                               const char **err)
{
    ts_noise_handshake_t hs;

    assert_int_equal(ts_noise_responder_init(&hs, s_priv), APR_SUCCESS);
    return ts_noise_read_msg1(&hs, m1, len, err);
}

/* Every single-bit flip anywhere in message 1 must be refused, with the right kind of error. */
static void test_msg1_every_bit_flip(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    uint8_t s_priv[32], m1[TS_NOISE_MSG1_LEN];
    size_t i, len;
    uint8_t *orig = jhex(v, "initiation_message", &len);
    const char *err;
    int bit;
    (void)state;

    jkey(s_priv, json_object_get(v, "keys"), "server_static_private");
    assert_int_equal(len, TS_NOISE_MSG1_LEN);
    for (i = 0; i < TS_NOISE_MSG1_LEN; i++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(m1, orig, len);
            m1[i] ^= (uint8_t)(1u << bit);
            err = NULL;
            if (i == 2) {
                assert_int_equal(respond_to(s_priv, m1, len, &err), APR_EINVAL);
                assert_string_equal(err, "unexpected handshake message type");
            } else if (i == 3 || i == 4) {
                assert_int_equal(respond_to(s_priv, m1, len, &err), APR_EINVAL);
                assert_string_equal(err, "wrong handshake initiation length");
            } else {
                /* Version bytes feed the prologue; the rest is authenticated. */
                assert_int_equal(respond_to(s_priv, m1, len, &err), APR_EGENERAL);
            }
        }
    }
    memcpy(m1, orig, len);
    assert_int_equal(respond_to(s_priv, m1, len, &err), APR_SUCCESS);
    free(orig);
    json_decref(v);
}

static void test_msg1_wrong_sizes(void **state)
{
    uint8_t s_priv[32], s_pub[32], m1[TS_NOISE_MSG1_LEN + 1];
    static const size_t sizes[] = { 0, 1, 5, 100, 102 };
    size_t i;
    const char *err;
    (void)state;

    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    memset(m1, 0, sizeof(m1));
    m1[2] = 0x01;
    m1[4] = 0x60;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        err = NULL;
        assert_int_equal(respond_to(s_priv, m1, sizes[i], &err), APR_EINVAL);
        assert_string_equal(err, "wrong handshake initiation size");
    }
    /* Size is checked before type, as the reference does. */
    m1[2] = 0x02;
    assert_int_equal(respond_to(s_priv, m1, 100, &err), APR_EINVAL);
    assert_string_equal(err, "wrong handshake initiation size");
}

/* A message built for one version and relabelled as another fails authentication. */
static void test_msg1_wrong_version(void **state)
{
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32], m1[TS_NOISE_MSG1_LEN];
    ts_noise_handshake_t ini;
    const char *err = NULL;
    (void)state;

    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    assert_int_equal(ts_crypto_x25519_keypair(c_priv, c_pub), 0);
    assert_int_equal(ts_noise_initiator_init(&ini, 145, c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&ini, NULL, m1, &err), APR_SUCCESS);
    assert_int_equal(m1[0], 0x00);
    assert_int_equal(m1[1], 0x91);
    assert_int_equal(respond_to(s_priv, m1, sizeof(m1), &err), APR_SUCCESS);
    m1[1] = 0x90;
    assert_int_equal(respond_to(s_priv, m1, sizeof(m1), &err), APR_EGENERAL);
    assert_string_equal(err, "cannot decrypt the initiator's static key");
    /* Sent to the wrong server key: same failure. */
    m1[1] = 0x91;
    assert_int_equal(respond_to(c_priv, m1, sizeof(m1), &err), APR_EGENERAL);
    ts_noise_handshake_wipe(&ini);
}

/* Small-order points as the client ephemeral: es gives all zeros and must abort. */
static void test_msg1_low_order_ephemeral(void **state)
{
    static const char *const bad[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    json_t *v = load_vector("noise-basic-v1.json");
    uint8_t s_priv[32];
    size_t i, len;
    uint8_t *m1 = jhex(v, "initiation_message", &len);
    const char *err;
    (void)state;

    jkey(s_priv, json_object_get(v, "keys"), "server_static_private");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ts_hex_decode(m1 + 5, 32, bad[i], 64), 0);
        err = NULL;
        assert_int_equal(respond_to(s_priv, m1, len, &err), APR_EGENERAL);
        assert_string_equal(err, "X25519 gave all zeros (low-order public key)");
    }
    free(m1);
    json_decref(v);
}

/* ---- message 2 on the initiator side ---- */

static void initiator_from_vector(json_t *v, ts_noise_handshake_t *hs)
{
    json_t *keys = json_object_get(v, "keys");
    uint8_t c_priv[32], e_priv[32], s_pub[32], m1[TS_NOISE_MSG1_LEN];
    const char *err = NULL;

    jkey(c_priv, keys, "client_static_private");
    jkey(e_priv, keys, "client_ephemeral_private");
    jkey(s_pub, keys, "server_static_public");
    assert_int_equal(ts_noise_initiator_init(hs, (uint16_t)json_integer_value(
                         json_object_get(v, "protocol_version")), c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(hs, e_priv, m1, &err), APR_SUCCESS);
}

static void test_msg2_rejections(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    size_t len, i;
    uint8_t *m2 = jhex(v, "response_message", &len);
    uint8_t bad[TS_NOISE_MSG2_LEN], ef[64];
    ts_noise_handshake_t hs;
    const char *err;
    size_t eflen;
    (void)state;

    for (i = 0; i < TS_NOISE_MSG2_LEN; i++) {
        memcpy(bad, m2, len);
        bad[i] ^= 0x40;
        initiator_from_vector(v, &hs);
        err = NULL;
        assert_int_equal(ts_noise_read_msg2(&hs, bad, len, &err), i < 3 ? APR_EINVAL : APR_EGENERAL);
        assert_true(sodium_is_zero((const unsigned char *)&hs, sizeof(hs)));
    }
    initiator_from_vector(v, &hs);
    assert_int_equal(ts_noise_read_msg2(&hs, m2, len - 1, &err), APR_EINVAL);
    assert_string_equal(err, "wrong handshake response size");

    assert_int_equal(ts_frame_error_build(ef, sizeof(ef), "go away", &eflen), APR_SUCCESS);
    initiator_from_vector(v, &hs);
    assert_int_equal(ts_noise_read_msg2(&hs, ef, eflen, &err), APR_EINVAL);
    assert_string_equal(err, "server sent an error frame");

    initiator_from_vector(v, &hs);
    assert_int_equal(ts_noise_read_msg2(&hs, m2, len, &err), APR_SUCCESS);
    ts_noise_handshake_wipe(&hs);
    free(m2);
    json_decref(v);
}

/* ---- misuse ---- */

static void test_out_of_order_calls(void **state)
{
    uint8_t s_priv[32], s_pub[32], m1[TS_NOISE_MSG1_LEN], m2[TS_NOISE_MSG2_LEN];
    ts_noise_handshake_t hs;
    ts_noise_session_t sess;
    const char *err = NULL;
    (void)state;

    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    assert_int_equal(ts_noise_responder_init(&hs, s_priv), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, m1, &err), APR_EGENERAL);
    assert_string_equal(err, "handshake call out of order");
    assert_int_equal(ts_noise_write_msg2(&hs, NULL, m2, &err), APR_EGENERAL);
    assert_int_equal(ts_noise_read_msg2(&hs, m2, sizeof(m2), &err), APR_EGENERAL);
    assert_int_equal(ts_noise_split(&hs, &sess, &err), APR_EGENERAL);

    assert_int_equal(ts_noise_initiator_init(&hs, 1, s_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_read_msg1(&hs, m1, sizeof(m1), &err), APR_EGENERAL);
    assert_int_equal(ts_noise_split(&hs, &sess, &err), APR_EGENERAL);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, m1, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, m1, &err), APR_EGENERAL);
    ts_noise_handshake_wipe(&hs);
    /* A zeroed (never initialised or wiped) state refuses everything. */
    assert_int_equal(ts_noise_read_msg1(&hs, m1, sizeof(m1), &err), APR_EGENERAL);
}

/* ---- round trip ---- */

static void round_trip(uint16_t version)
{
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32];
    uint8_t m1[TS_NOISE_MSG1_LEN], m2[TS_NOISE_MSG2_LEN], buf[64], out[64];
    ts_noise_handshake_t ini, resp;
    ts_noise_session_t cs, ss;
    const char *err = NULL;
    static const uint8_t hello[] = "hello over noise";
    int i;

    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    assert_int_equal(ts_crypto_x25519_keypair(c_priv, c_pub), 0);
    assert_int_equal(ts_noise_initiator_init(&ini, version, c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_responder_init(&resp, s_priv), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&ini, NULL, m1, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_read_msg1(&resp, m1, sizeof(m1), &err), APR_SUCCESS);
    assert_int_equal(resp.version, version);
    assert_memory_equal(resp.rs, c_pub, 32);
    assert_int_equal(ts_noise_write_msg2(&resp, NULL, m2, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_read_msg2(&ini, m2, sizeof(m2), &err), APR_SUCCESS);
    assert_int_equal(ts_noise_split(&ini, &cs, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_split(&resp, &ss, &err), APR_SUCCESS);

    assert_memory_equal(cs.handshake_hash, ss.handshake_hash, 32);
    assert_memory_equal(cs.peer_static, s_pub, 32);
    assert_memory_equal(ss.peer_static, c_pub, 32);
    assert_int_equal(ss.version, version);
    assert_memory_not_equal(cs.tx.key, cs.rx.key, 32);
    for (i = 0; i < 5; i++) {
        assert_int_equal(ts_noise_cipher_seal(&cs.tx, buf, hello, sizeof(hello), &err), APR_SUCCESS);
        assert_int_equal(ts_noise_cipher_open(&ss.rx, out, buf, sizeof(hello) + 16, &err), APR_SUCCESS);
        assert_memory_equal(out, hello, sizeof(hello));
        assert_int_equal(ts_noise_cipher_seal(&ss.tx, buf, hello, sizeof(hello), &err), APR_SUCCESS);
        assert_int_equal(ts_noise_cipher_open(&cs.rx, out, buf, sizeof(hello) + 16, &err), APR_SUCCESS);
        assert_memory_equal(out, hello, sizeof(hello));
    }
    /* A record sealed for one direction does not open in the other. */
    assert_int_equal(ts_noise_cipher_seal(&cs.tx, buf, hello, sizeof(hello), &err), APR_SUCCESS);
    assert_int_equal(ts_noise_cipher_open(&cs.rx, out, buf, sizeof(hello) + 16, &err), APR_EGENERAL);
    ts_noise_session_wipe(&cs);
    ts_noise_session_wipe(&ss);
}

static void test_round_trip_random_keys(void **state)
{
    static const uint16_t versions[] = { 0, 1, 28, 49, 51, 90, 145, 65535 };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) round_trip(versions[i]);
}

/* Fresh ephemerals each time: two handshakes with the same static keys share nothing. */
static void test_fresh_ephemerals(void **state)
{
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32], a[TS_NOISE_MSG1_LEN], b[TS_NOISE_MSG1_LEN];
    ts_noise_handshake_t hs;
    const char *err = NULL;
    (void)state;

    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    assert_int_equal(ts_crypto_x25519_keypair(c_priv, c_pub), 0);
    assert_int_equal(ts_noise_initiator_init(&hs, 145, c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, a, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_initiator_init(&hs, 145, c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, b, &err), APR_SUCCESS);
    assert_memory_equal(a, b, 5);
    assert_memory_not_equal(a + 5, b + 5, 32);
    ts_noise_handshake_wipe(&hs);
}

/* ---- transport cipher ---- */

static void test_cipher_exhaustion(void **state)
{
    uint8_t key[32], ct[32], pt[16], ref[32];
    ts_noise_cipher_t tx, rx;
    const char *err = NULL;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    memset(pt, 0x11, sizeof(pt));
    ts_noise_cipher_init(&tx, key);
    ts_noise_cipher_init(&rx, key);
    ts_noise_cipher_set_counter(&tx, UINT64_MAX - 1);
    ts_noise_cipher_set_counter(&rx, UINT64_MAX - 1);

    /* 2^64-2 is the last valid counter, encoded big-endian like all others. */
    assert_int_equal(ts_noise_cipher_seal(&tx, ct, pt, sizeof(pt), &err), APR_SUCCESS);
    assert_int_equal(ts_crypto_aead_seal(ref, key, UINT64_MAX - 1, NULL, 0, pt, sizeof(pt)), 0);
    assert_memory_equal(ct, ref, sizeof(ref));
    assert_int_equal(ts_noise_cipher_counter(&tx), UINT64_MAX);
    assert_int_equal(ts_noise_cipher_open(&rx, pt, ct, sizeof(ct), &err), APR_SUCCESS);

    assert_int_equal(ts_noise_cipher_seal(&tx, ct, pt, sizeof(pt), &err), APR_ENOSPC);
    assert_string_equal(err, "cipher exhausted: nonce counter reached 2^64-1");
    assert_int_equal(ts_noise_cipher_open(&rx, pt, ct, sizeof(ct), &err), APR_ENOSPC);
    /* Dead for good, and the key is gone. */
    assert_true(sodium_is_zero(tx.key, sizeof(tx.key)));
    assert_true(sodium_is_zero(rx.key, sizeof(rx.key)));
    assert_int_equal(ts_noise_cipher_seal(&tx, ct, pt, sizeof(pt), &err), APR_EGENERAL);
    ts_noise_cipher_set_counter(&tx, 0);
    assert_int_equal(ts_noise_cipher_seal(&tx, ct, pt, sizeof(pt), &err), APR_EGENERAL);
}

static void test_cipher_failure_is_fatal(void **state)
{
    uint8_t key[32], ct[32], pt[16];
    ts_noise_cipher_t tx, rx;
    const char *err = NULL;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    memset(pt, 0x22, sizeof(pt));
    ts_noise_cipher_init(&tx, key);
    ts_noise_cipher_init(&rx, key);
    assert_int_equal(ts_noise_cipher_seal(&tx, ct, pt, sizeof(pt), &err), APR_SUCCESS);
    ct[31] ^= 0x80;
    assert_int_equal(ts_noise_cipher_open(&rx, pt, ct, sizeof(ct), &err), APR_EGENERAL);
    assert_string_equal(err, "record does not authenticate");
    ct[31] ^= 0x80;
    /* No resynchronisation, even with the genuine record. */
    assert_int_equal(ts_noise_cipher_open(&rx, pt, ct, sizeof(ct), &err), APR_EGENERAL);
    assert_string_equal(err, "cipher state discarded after an earlier failure");
    /* Too short to hold a tag. */
    ts_noise_cipher_init(&rx, key);
    assert_int_equal(ts_noise_cipher_open(&rx, pt, ct, 15, &err), APR_EGENERAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_responder_vectors),
        cmocka_unit_test(test_respond_oneshot),
        cmocka_unit_test(test_initiator_vectors),
        cmocka_unit_test(test_server_must_reject),
        cmocka_unit_test(test_msg1_every_bit_flip),
        cmocka_unit_test(test_msg1_wrong_sizes),
        cmocka_unit_test(test_msg1_wrong_version),
        cmocka_unit_test(test_msg1_low_order_ephemeral),
        cmocka_unit_test(test_msg2_rejections),
        cmocka_unit_test(test_out_of_order_calls),
        cmocka_unit_test(test_round_trip_random_keys),
        cmocka_unit_test(test_fresh_ephemerals),
        cmocka_unit_test(test_cipher_exhaustion),
        cmocka_unit_test(test_cipher_failure_is_fatal),
    };

    if (ts_crypto_init() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
