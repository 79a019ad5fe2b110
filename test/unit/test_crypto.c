/* test_crypto.c: unit tests for ts_crypto (BLAKE2s, HMAC, HKDF, X25519, AEAD nonce).
 * Expected values: RFC 7693, RFC 7748, Python hashlib/hmac, and the TS2021 vectors. */
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
#include "ts_util.h"

#include "test_vectors.h"

/* ---- helpers (static: every test binary links all ts_*.o) ---- */

static void hex_to(uint8_t *out, size_t len, const char *hex)
{
    assert_int_equal(ts_hex_decode(out, len, hex, strlen(hex)), 0);
}

static void assert_hex_equal(const uint8_t *got, size_t len, const char *hex)
{
    char buf[2 * 256 + 1];

    assert_true(len <= 256);
    ts_hex_encode(buf, got, len);
    assert_string_equal(buf, hex);
}

/* ---- BLAKE2s ---- */

static void test_blake2s_rfc7693_abc(void **state)
{
    uint8_t out[TS_CRYPTO_HASH_LEN];
    (void)state;

    assert_int_equal(ts_crypto_blake2s(out, (const uint8_t *)"abc", 3), 0);
    assert_hex_equal(out, sizeof(out),
                     "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
}

static void test_blake2s_empty_and_protocol_name(void **state)
{
    static const char name[] = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
    uint8_t out[TS_CRYPTO_HASH_LEN];
    (void)state;

    assert_int_equal(ts_crypto_blake2s(out, NULL, 0), 0);
    assert_hex_equal(out, sizeof(out),
                     "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9");
    /* Also the initial h of every vector's responder_trace. */
    assert_int_equal(ts_crypto_blake2s(out, (const uint8_t *)name, strlen(name)), 0);
    assert_hex_equal(out, sizeof(out),
                     "bbea022b948cf3bc5857d70804229179e1116bc40cb8cc074835349c464bca36");
}

/* ---- HMAC-BLAKE2s and HKDF (expected values from Python hashlib/hmac) ---- */

static void test_hmac_blake2s_python(void **state)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    static const char big[] = "Test Using Larger Than Block-Size Key";
    uint8_t key[100], out[TS_CRYPTO_HASH_LEN];
    (void)state;

    assert_int_equal(ts_crypto_hmac_blake2s(out, (const uint8_t *)"key", 3,
                                            (const uint8_t *)fox, strlen(fox)), 0);
    assert_hex_equal(out, sizeof(out),
                     "f93215bb90d4af4c3061cd932fb169fb8bb8a91d0b4022baea1271e1323cd9a0");

    /* A key longer than the 64-byte block is hashed first (RFC 2104). */
    memset(key, 0xaa, sizeof(key));
    assert_int_equal(ts_crypto_hmac_blake2s(out, key, sizeof(key),
                                            (const uint8_t *)big, strlen(big)), 0);
    assert_hex_equal(out, sizeof(out),
                     "5701a0c602dec0c38dc0b998dc6c47cda63b86e145e3ed5e227028dc500b2779");

    assert_int_equal(ts_crypto_hmac_blake2s(out, NULL, 0, NULL, 0), 0);
    assert_hex_equal(out, sizeof(out),
                     "eaf4bb25938f4d20e72656bbbc7a9bf63c0c18537333c35bdb67db1402661acd");
}

static void test_hkdf2_python(void **state)
{
    uint8_t ck[32], ikm[32], o1[32], o2[32];
    int i;
    (void)state;

    for (i = 0; i < 32; i++) {
        ck[i] = (uint8_t)i;
        ikm[i] = (uint8_t)(32 + i);
    }
    assert_int_equal(ts_crypto_hkdf2(o1, o2, ck, ikm, sizeof(ikm)), 0);
    assert_hex_equal(o1, 32, "6a96444e20e8d4c1cee974416acae1c10b3c92886010e54ed94dafb2c3b80ea0");
    assert_hex_equal(o2, 32, "57af120b0de7acbe7907ec149c5ae870a2dbb74232b65777ba4123f1f7f888f5");

    /* Split() uses a zero-length ikm. */
    assert_int_equal(ts_crypto_hkdf2(o1, o2, ck, NULL, 0), 0);
    assert_hex_equal(o1, 32, "7a38c34bf2b8738d7374ca77c44ecb309a11d2b2528304fa86052c365e722624");
    assert_hex_equal(o2, 32, "1a17621f346abdc520746a9fb64d8eb03231d674fc15687537b0780fd9c060fd");

    /* MixKey writes the new chaining key over the old one: out1 aliasing ck must work. */
    assert_int_equal(ts_crypto_hkdf2(ck, o2, ck, ikm, sizeof(ikm)), 0);
    assert_hex_equal(ck, 32, "6a96444e20e8d4c1cee974416acae1c10b3c92886010e54ed94dafb2c3b80ea0");
    assert_hex_equal(o2, 32, "57af120b0de7acbe7907ec149c5ae870a2dbb74232b65777ba4123f1f7f888f5");
}

/* Every MixKey step of a vector's responder trace: HKDF(ck_before, dh) = (ck_after, k). */
static void test_hkdf2_against_trace(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *trace = json_object_get(v, "responder_trace");
    uint8_t ck[32], dh[32], o1[32], o2[32];
    size_t i;
    int mixkeys = 0;
    (void)state;

    jkey(ck, json_array_get(trace, 0), "ck");
    for (i = 1; i < json_array_size(trace); i++) {
        json_t *st = json_array_get(trace, i);
        if (json_object_get(st, "dh")) {
            jkey(dh, st, "dh");
            assert_int_equal(ts_crypto_hkdf2(o1, o2, ck, dh, sizeof(dh)), 0);
            assert_hex_equal(o1, 32, jstr(st, "ck"));
            assert_hex_equal(o2, 32, jstr(st, "k"));
            mixkeys++;
        }
        if (json_object_get(st, "ck")) jkey(ck, st, "ck");
    }
    assert_int_equal(mixkeys, 4);
    json_decref(v);
}

/* ---- X25519 ---- */

static void test_x25519_rfc7748(void **state)
{
    uint8_t a[32], b[32], apub[32], bpub[32], s1[32], s2[32];
    (void)state;

    hex_to(a, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    hex_to(b, 32, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    assert_int_equal(ts_crypto_x25519_public(apub, a), 0);
    assert_int_equal(ts_crypto_x25519_public(bpub, b), 0);
    assert_hex_equal(apub, 32, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    assert_hex_equal(bpub, 32, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    assert_int_equal(ts_crypto_x25519(s1, a, bpub), 0);
    assert_int_equal(ts_crypto_x25519(s2, b, apub), 0);
    assert_hex_equal(s1, 32, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_memory_equal(s1, s2, 32);
}

static void test_x25519_vector_keys(void **state)
{
    static const char *const pairs[][2] = {
        { "client_static_private", "client_static_public" },
        { "client_ephemeral_private", "client_ephemeral_public" },
        { "server_static_private", "server_static_public" },
        { "server_ephemeral_private", "server_ephemeral_public" },
    };
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *keys = json_object_get(v, "keys");
    uint8_t priv[32], pub[32], dh[32];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        jkey(priv, keys, pairs[i][0]);
        assert_int_equal(ts_crypto_x25519_public(pub, priv), 0);
        assert_hex_equal(pub, 32, jstr(keys, pairs[i][1]));
    }
    /* es of the trace: X25519(server static, client ephemeral). */
    jkey(priv, keys, "server_static_private");
    jkey(pub, keys, "client_ephemeral_public");
    assert_int_equal(ts_crypto_x25519(dh, priv, pub), 0);
    assert_hex_equal(dh, 32, jstr(json_array_get(json_object_get(v, "responder_trace"), 4), "dh"));
    json_decref(v);
}

static void test_x25519_rejects_low_order(void **state)
{
    /* Zero, one, and an order-8 point: each yields an all-zero shared secret. */
    static const char *const bad[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    };
    uint8_t priv[32], pub[32], out[32];
    size_t i;
    (void)state;

    assert_int_equal(ts_crypto_x25519_keypair(priv, pub), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hex_to(pub, 32, bad[i]);
        memset(out, 0x55, sizeof(out));
        assert_int_equal(ts_crypto_x25519(out, priv, pub), -1);
        assert_true(sodium_is_zero(out, sizeof(out)));
    }
}

static void test_x25519_keypair_clamped_and_agrees(void **state)
{
    uint8_t a[32], apub[32], b[32], bpub[32], s1[32], s2[32], again[32];
    (void)state;

    assert_int_equal(ts_crypto_x25519_keypair(a, apub), 0);
    assert_int_equal(ts_crypto_x25519_keypair(b, bpub), 0);
    assert_int_equal(a[0] & 7, 0);
    assert_int_equal(a[31] & 0xc0, 0x40);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(ts_crypto_x25519_public(again, a), 0);
    assert_memory_equal(again, apub, 32);
    assert_int_equal(ts_crypto_x25519(s1, a, bpub), 0);
    assert_int_equal(ts_crypto_x25519(s2, b, apub), 0);
    assert_memory_equal(s1, s2, 32);
}

/* ---- AEAD with the TS2021 nonce ---- */

static void test_nonce_big_endian(void **state)
{
    uint8_t n[TS_CRYPTO_NONCE_LEN];
    (void)state;

    ts_crypto_nonce(n, 1);
    assert_hex_equal(n, sizeof(n), "000000000000000000000001");
    ts_crypto_nonce(n, 0x0102030405060708ULL);
    assert_hex_equal(n, sizeof(n), "000000000102030405060708");
    ts_crypto_nonce(n, UINT64_MAX - 1);
    assert_hex_equal(n, sizeof(n), "00000000fffffffffffffffe");
}

/* Seals every record body of a vector and checks it against the frame; the
 * little-endian nonce a stock Noise library would use must give the WRONG value instead. */
static void check_records(json_t *v, const char *dir, const char *keyfield)
{
    json_t *recs = json_object_get(v, dir);
    uint8_t key[32], out[4096], le_nonce[12];
    size_t i, ptlen, flen;

    jkey(key, v, keyfield);
    assert_true(json_array_size(recs) > 0);
    for (i = 0; i < json_array_size(recs); i++) {
        json_t *r = json_array_get(recs, i);
        uint64_t n = (uint64_t)json_integer_value(json_object_get(r, "nonce_counter"));
        uint8_t *pt = jhex(r, "plaintext", &ptlen);
        uint8_t *frame = jhex(r, "frame", &flen);

        assert_int_equal(flen, 3 + ptlen + TS_CRYPTO_TAG_LEN);
        assert_int_equal(ts_crypto_aead_seal(out, key, n, NULL, 0, pt, ptlen), 0);
        assert_memory_equal(out, frame + 3, flen - 3);
        assert_int_equal(ts_crypto_aead_open(out, key, n, NULL, 0, frame + 3, flen - 3), 0);
        assert_memory_equal(out, pt, ptlen);
        if (n >= 1) {
            size_t wlen;
            uint8_t *wrong = jhex(r, "frame_if_little_endian_nonce_WRONG", &wlen);
            int k;
            memset(le_nonce, 0, sizeof(le_nonce));
            for (k = 0; k < 8; k++) le_nonce[4 + k] = (uint8_t)(n >> (8 * k));
            crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, ptlen, NULL, 0, NULL,
                                                      le_nonce, key);
            assert_memory_equal(out, wrong + 3, wlen - 3);
            assert_int_equal(ts_crypto_aead_seal(out, key, n, NULL, 0, pt, ptlen), 0);
            assert_memory_not_equal(out, wrong + 3, wlen - 3);
            /* The LE-sealed body must not open under the BE nonce either. */
            assert_int_equal(ts_crypto_aead_open(out, key, n, NULL, 0, wrong + 3, wlen - 3), -1);
            free(wrong);
        }
        free(pt);
        free(frame);
    }
}

static void test_aead_vector_records(void **state)
{
    static const char *const files[] = {
        "noise-basic-v1.json", "noise-capver145-early-payload.json", "noise-max-frame-v90.json",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        json_t *v = load_vector(files[i]);
        check_records(v, "c2s_records", "c2s_key");
        check_records(v, "s2c_records", "s2c_key");
        json_decref(v);
    }
}

static void test_aead_tamper_and_ad(void **state)
{
    uint8_t key[32], buf[64 + TS_CRYPTO_TAG_LEN], out[64];
    static const uint8_t msg[] = "attack at dawn";
    size_t clen = sizeof(msg) + TS_CRYPTO_TAG_LEN;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    assert_int_equal(ts_crypto_aead_seal(buf, key, 7, (const uint8_t *)"ad", 2, msg, sizeof(msg)), 0);
    assert_int_equal(ts_crypto_aead_open(out, key, 7, (const uint8_t *)"ad", 2, buf, clen), 0);
    assert_memory_equal(out, msg, sizeof(msg));
    assert_int_equal(ts_crypto_aead_open(out, key, 8, (const uint8_t *)"ad", 2, buf, clen), -1);
    assert_int_equal(ts_crypto_aead_open(out, key, 7, (const uint8_t *)"aD", 2, buf, clen), -1);
    assert_int_equal(ts_crypto_aead_open(out, key, 7, (const uint8_t *)"ad", 2, buf, 15), -1);
    buf[clen - 1] ^= 0x01;
    assert_int_equal(ts_crypto_aead_open(out, key, 7, (const uint8_t *)"ad", 2, buf, clen), -1);
    buf[clen - 1] ^= 0x01;
    /* In place, as the record reader does it. */
    assert_int_equal(ts_crypto_aead_open(buf, key, 7, (const uint8_t *)"ad", 2, buf, clen), 0);
    assert_memory_equal(buf, msg, sizeof(msg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blake2s_rfc7693_abc),
        cmocka_unit_test(test_blake2s_empty_and_protocol_name),
        cmocka_unit_test(test_hmac_blake2s_python),
        cmocka_unit_test(test_hkdf2_python),
        cmocka_unit_test(test_hkdf2_against_trace),
        cmocka_unit_test(test_x25519_rfc7748),
        cmocka_unit_test(test_x25519_vector_keys),
        cmocka_unit_test(test_x25519_rejects_low_order),
        cmocka_unit_test(test_x25519_keypair_clamped_and_agrees),
        cmocka_unit_test(test_nonce_big_endian),
        cmocka_unit_test(test_aead_vector_records),
        cmocka_unit_test(test_aead_tamper_and_ad),
    };

    if (ts_crypto_init() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
