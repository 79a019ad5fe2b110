/* test_frame.c: unit tests for ts_frame: headers, error frames, record sealing and splitting,
 * the streaming reader under every chunking and every fatal case, and the early payload. */
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

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void bytes_add(bytes *b, const uint8_t *p, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 16;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (len) memcpy(b->p + b->len, p, len);
    b->len += len;
}

/* Concatenates a hex field of every record of a direction. */
static void direction_concat(json_t *v, const char *dir, const char *field, bytes *out)
{
    json_t *recs = json_object_get(v, dir);
    size_t i, n;

    for (i = 0; i < json_array_size(recs); i++) {
        uint8_t *b = jhex(json_array_get(recs, i), field, &n);
        bytes_add(out, b, n);
        free(b);
    }
}

/* The server's session for a vector, via the vector's fixed keys. */
static void server_session(json_t *v, ts_noise_session_t *sess, uint8_t msg2[TS_NOISE_MSG2_LEN])
{
    json_t *keys = json_object_get(v, "keys");
    uint8_t s_priv[32], e_priv[32];
    size_t len;
    uint8_t *m1 = jhex(v, "initiation_message", &len);
    const char *err = NULL;

    jkey(s_priv, keys, "server_static_private");
    jkey(e_priv, keys, "server_ephemeral_private");
    assert_int_equal(ts_noise_respond(s_priv, m1, len, e_priv, msg2, sess, &err), APR_SUCCESS);
    free(m1);
}

/* Feeds a whole stream to the reader in chunks of the given size (0: random sizes), collecting
 * plaintext; returns the first status that is neither success nor "need more". */
static apr_status_t read_stream(ts_frame_reader_t *r, const uint8_t *in, size_t len, size_t chunk,
                                bytes *out, int *records)
{
    size_t pos = 0, used, ptlen;
    const uint8_t *pt;
    apr_status_t rv;

    while (pos < len) {
        size_t n = chunk ? chunk : 1 + (size_t)randombytes_uniform(700);
        const uint8_t *p;
        if (n > len - pos) n = len - pos;
        p = in + pos;
        pos += n;
        while (n > 0) {
            rv = ts_frame_reader_feed(r, p, n, &used, &pt, &ptlen, NULL);
            assert_true(used <= n);
            p += used;
            n -= used;
            if (rv == APR_INCOMPLETE) {
                assert_int_equal(n, 0);
                break;
            }
            if (rv != APR_SUCCESS) return rv;
            assert_true(ptlen > 0);   /* empty records are never surfaced */
            bytes_add(out, pt, ptlen);
            (*records)++;
        }
    }
    return APR_SUCCESS;
}

/* ---- headers and error frames ---- */

static void test_header_build_parse(void **state)
{
    uint8_t h[3], type;
    uint16_t len;
    int t;
    (void)state;

    for (t = TS_FRAME_TYPE_INITIATION; t <= TS_FRAME_TYPE_RECORD; t++) {
        ts_frame_header_build(h, (uint8_t)t, 0x0ffd);
        assert_int_equal(h[0], t);
        assert_int_equal(h[1], 0x0f);
        assert_int_equal(h[2], 0xfd);
        ts_frame_header_parse(h, &type, &len);
        assert_int_equal(type, t);
        assert_int_equal(len, 4093);
    }
    assert_int_equal(TS_FRAME_MAX_CIPHERTEXT, 4093);
    assert_int_equal(TS_FRAME_MAX_PLAINTEXT, 4077);
}

static void test_error_frames(void **state)
{
    static const char *const texts[] = {
        "unexpected handshake message type", "wrong handshake initiation length",
        "wrong handshake initiation size",
    };
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *rejs = json_object_get(v, "server_must_reject");
    uint8_t buf[3 + TS_FRAME_ERROR_TEXT_MAX + 1];
    char longtext[TS_FRAME_ERROR_TEXT_MAX + 2];
    const uint8_t *text;
    size_t i, n, tlen, flen;
    (void)state;

    for (i = 0; i < 3; i++) {
        json_t *rej = json_array_get(rejs, i);
        assert_int_equal(ts_frame_error_build(buf, sizeof(buf), texts[i], &n), APR_SUCCESS);
        assert_hex_field(buf, n, rej, "reference_error_frame");
        assert_int_equal(ts_frame_error_parse(buf, n, &text, &tlen, &flen), APR_SUCCESS);
        assert_int_equal(flen, n);
        assert_int_equal(tlen, strlen(texts[i]));
        assert_memory_equal(text, texts[i], tlen);
        assert_int_equal(ts_frame_error_parse(buf, n - 1, &text, &tlen, &flen), APR_INCOMPLETE);
        assert_int_equal(ts_frame_error_parse(buf, 2, &text, &tlen, &flen), APR_INCOMPLETE);
    }
    /* Message 2 is not an error frame. */
    buf[0] = TS_FRAME_TYPE_RESPONSE;
    assert_int_equal(ts_frame_error_parse(buf, 51, &text, &tlen, &flen), APR_NOTFOUND);
    assert_int_equal(ts_frame_error_parse(buf, 0, &text, &tlen, &flen), APR_INCOMPLETE);

    assert_int_equal(ts_frame_error_build(buf, 10, "wrong handshake initiation size", &n), APR_EINVAL);
    assert_int_equal(n, 0);
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    assert_int_equal(ts_frame_error_build(buf, sizeof(buf), longtext, &n), APR_EINVAL);
    longtext[TS_FRAME_ERROR_TEXT_MAX] = '\0';
    assert_int_equal(ts_frame_error_build(buf, sizeof(buf), longtext, &n), APR_SUCCESS);
    assert_int_equal(n, 3 + TS_FRAME_ERROR_TEXT_MAX);
    json_decref(v);
}

/* ---- sealing ---- */

static void seal_direction(json_t *v, const char *dir, ts_noise_cipher_t *tx)
{
    json_t *recs = json_object_get(v, dir);
    uint8_t out[TS_FRAME_MAX_LEN];
    size_t i, ptlen, flen, n;
    const char *err = NULL;

    for (i = 0; i < json_array_size(recs); i++) {
        json_t *r = json_array_get(recs, i);
        uint8_t *pt = jhex(r, "plaintext", &ptlen);
        uint8_t *frame = jhex(r, "frame", &flen);

        assert_int_equal(ts_frame_seal_record(tx, out, sizeof(out), pt, ptlen, &n, &err),
                         APR_SUCCESS);
        assert_int_equal(n, flen);
        assert_memory_equal(out, frame, flen);
        free(pt);
        free(frame);
    }
}

static void test_seal_vector_records(void **state)
{
    size_t i;
    uint8_t c2s[32];
    (void)state;

    for (i = 0; i < N_VECTORS; i++) {
        json_t *v = load_vector(vector_files[i]);
        ts_noise_session_t sess;
        ts_noise_cipher_t client_tx;
        uint8_t msg2[TS_NOISE_MSG2_LEN];

        server_session(v, &sess, msg2);
        seal_direction(v, "s2c_records", &sess.tx);
        jkey(c2s, v, "c2s_key");
        ts_noise_cipher_init(&client_tx, c2s);
        seal_direction(v, "c2s_records", &client_tx);
        ts_noise_session_wipe(&sess);
        json_decref(v);
    }
}

static void test_sealed_len(void **state)
{
    (void)state;
    assert_int_equal(ts_frame_sealed_len(0), 0);
    assert_int_equal(ts_frame_sealed_len(1), 20);
    assert_int_equal(ts_frame_sealed_len(4077), 4096);
    assert_int_equal(ts_frame_sealed_len(4078), 4116);
    assert_int_equal(ts_frame_sealed_len(2 * 4077), 8192);
    assert_int_equal(ts_frame_sealed_len(2 * 4077 + 1), 8212);
}

/* One 4078-byte write becomes a full 4096-byte record and a 1-byte one, exactly as the vector. */
static void test_seal_split_4077_plus_1(void **state)
{
    json_t *v = load_vector("noise-max-frame-v90.json");
    json_t *recs = json_object_get(v, "c2s_records");
    uint8_t c2s[32], out[8192];
    size_t inlen, n;
    uint8_t *in = jhex(v, "write_split_input_c2s", &inlen);
    bytes want = { NULL, 0, 0 };
    ts_noise_cipher_t tx;
    const char *err = NULL;
    (void)state;

    assert_int_equal(inlen, 4078);
    jkey(c2s, v, "c2s_key");
    ts_noise_cipher_init(&tx, c2s);
    for (n = 0; n < 2; n++) {
        size_t fl;
        uint8_t *f = jhex(json_array_get(recs, n), "frame", &fl);
        bytes_add(&want, f, fl);
        free(f);
    }
    assert_int_equal(ts_frame_seal(&tx, out, sizeof(out), in, inlen, &n, &err), APR_SUCCESS);
    assert_int_equal(n, 4116);
    assert_int_equal(want.len, 4116);
    assert_memory_equal(out, want.p, n);
    assert_int_equal(out[0], 0x04);
    assert_int_equal(out[1], 0x0f);
    assert_int_equal(out[2], 0xfd);
    assert_int_equal(ts_noise_cipher_counter(&tx), 2);
    /* An empty write produces nothing and uses no counter. */
    assert_int_equal(ts_frame_seal(&tx, out, sizeof(out), NULL, 0, &n, &err), APR_SUCCESS);
    assert_int_equal(n, 0);
    assert_int_equal(ts_noise_cipher_counter(&tx), 2);
    free(want.p);
    free(in);
    json_decref(v);
}

static void test_seal_limits(void **state)
{
    uint8_t key[32], pt[TS_FRAME_MAX_PLAINTEXT + 1], out[2 * TS_FRAME_MAX_LEN];
    ts_noise_cipher_t tx;
    size_t n;
    const char *err = NULL;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    memset(pt, 0x5a, sizeof(pt));
    ts_noise_cipher_init(&tx, key);
    assert_int_equal(ts_frame_seal_record(&tx, out, sizeof(out), pt, sizeof(pt), &n, &err),
                     APR_EINVAL);
    assert_int_equal(ts_frame_seal_record(&tx, out, 4095, pt, 4077, &n, &err), APR_EINVAL);
    assert_int_equal(ts_frame_seal(&tx, out, 4115, pt, 4078, &n, &err), APR_EINVAL);
    /* Refusals must not burn nonces. */
    assert_int_equal(ts_noise_cipher_counter(&tx), 0);
    assert_int_equal(ts_frame_seal_record(&tx, out, 4096, pt, 4077, &n, &err), APR_SUCCESS);
    assert_int_equal(n, TS_FRAME_MAX_LEN);
    assert_int_equal(ts_frame_seal_record(&tx, out, 19, NULL, 0, &n, &err), APR_SUCCESS);
    assert_int_equal(n, 19);
    /* Exhaustion while sealing a write. */
    ts_noise_cipher_set_counter(&tx, UINT64_MAX - 1);
    assert_int_equal(ts_frame_seal(&tx, out, sizeof(out), pt, 4078, &n, &err), APR_ENOSPC);
    assert_int_equal(n, 0);
}

/* ---- reading ---- */

/* Every vector stream, both directions, under several chunkings, gives the plaintext stream. */
static void check_read(json_t *v, const char *dir, const uint8_t key[32])
{
    static const size_t chunks[] = { 1, 2, 3, 7, 19, 4096, 100000, 0, 0, 0 };
    bytes wire = { NULL, 0, 0 }, want = { NULL, 0, 0 };
    size_t i;

    direction_concat(v, dir, "frame", &wire);
    direction_concat(v, dir, "plaintext", &want);
    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        ts_noise_cipher_t rx;
        ts_frame_reader_t r;
        bytes got = { NULL, 0, 0 };
        int records = 0;

        ts_noise_cipher_init(&rx, key);
        ts_frame_reader_init(&r, &rx);
        assert_int_equal(read_stream(&r, wire.p, wire.len, chunks[i], &got, &records), APR_SUCCESS);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.p, want.p, want.len);
        assert_int_equal(ts_noise_cipher_counter(&rx), json_array_size(json_object_get(v, dir)));
        assert_true(ts_frame_reader_at_boundary(&r));
        free(got.p);
    }
    free(wire.p);
    free(want.p);
}

static void test_reader_vector_streams(void **state)
{
    size_t i;
    uint8_t c2s[32], s2c[32];
    (void)state;

    for (i = 0; i < N_VECTORS; i++) {
        json_t *v = load_vector(vector_files[i]);
        jkey(c2s, v, "c2s_key");
        jkey(s2c, v, "s2c_key");
        check_read(v, "c2s_records", c2s);
        check_read(v, "s2c_records", s2c);
        json_decref(v);
    }
}

/* Several records in one buffer come out one at a time; the empty one is skipped silently. */
static void test_reader_one_record_per_call(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    bytes wire = { NULL, 0, 0 };
    uint8_t c2s[32];
    ts_noise_cipher_t rx;
    ts_frame_reader_t r;
    const uint8_t *pt;
    size_t used, ptlen;
    (void)state;

    direction_concat(v, "c2s_records", "frame", &wire);
    jkey(c2s, v, "c2s_key");
    ts_noise_cipher_init(&rx, c2s);
    ts_frame_reader_init(&r, &rx);
    assert_int_equal(ts_frame_reader_feed(&r, wire.p, wire.len, &used, &pt, &ptlen, NULL),
                     APR_SUCCESS);
    assert_int_equal(used, 32);
    assert_int_equal(ptlen, 13);
    assert_memory_equal(pt, "client>server", 13);
    /* Next: the empty record (19 bytes) is consumed, then the third (38). */
    assert_int_equal(ts_frame_reader_feed(&r, wire.p + 32, wire.len - 32, &used, &pt, &ptlen, NULL),
                     APR_SUCCESS);
    assert_int_equal(used, 19 + 38);
    assert_int_equal(ptlen, 19);
    assert_memory_equal(pt, "third client record", 19);
    assert_int_equal(ts_frame_reader_feed(&r, NULL, 0, &used, &pt, &ptlen, NULL), APR_INCOMPLETE);
    assert_int_equal(used, 0);
    /* A partial header is not a boundary. */
    assert_int_equal(ts_frame_reader_feed(&r, wire.p, 2, &used, &pt, &ptlen, NULL), APR_INCOMPLETE);
    assert_false(ts_frame_reader_at_boundary(&r));
    free(wire.p);
    json_decref(v);
}

/* Feeds a bad frame as the first c2s record; checks status, bytes consumed, message, that the
 * receive key is gone, and that the failure is sticky. */
static void expect_fatal(const uint8_t *frame, size_t flen, size_t want_used, apr_status_t want,
                         const char *want_msg)
{
    json_t *v = load_vector("noise-basic-v1.json");
    uint8_t c2s[32];
    ts_noise_cipher_t rx;
    ts_frame_reader_t r;
    const uint8_t *pt;
    size_t used, ptlen, n;
    uint8_t *good = jhex(json_array_get(json_object_get(v, "c2s_records"), 0), "frame", &n);
    const char *err = NULL;

    jkey(c2s, v, "c2s_key");
    ts_noise_cipher_init(&rx, c2s);
    ts_frame_reader_init(&r, &rx);
    assert_int_equal(ts_frame_reader_feed(&r, frame, flen, &used, &pt, &ptlen, &err), want);
    assert_int_equal(used, want_used);
    assert_string_equal(err, want_msg);
    assert_true(sodium_is_zero(rx.key, sizeof(rx.key)));
    assert_false(ts_frame_reader_at_boundary(&r));
    /* Sticky: even the genuine record is refused now. */
    err = NULL;
    assert_int_equal(ts_frame_reader_feed(&r, good, n, &used, &pt, &ptlen, &err), want);
    assert_int_equal(used, 0);
    assert_string_equal(err, want_msg);
    free(good);
    json_decref(v);
}

static void test_reader_must_reject_vectors(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *rejs = json_object_get(v, "server_must_reject");
    size_t i, n, seen = 0;
    (void)state;

    for (i = 0; i < json_array_size(rejs); i++) {
        json_t *rej = json_array_get(rejs, i);
        const char *name = jstr(rej, "name");
        uint8_t *f;

        if (!json_is_true(json_object_get(rej, "after_handshake"))) continue;
        if (strcmp(name, "record_bad_tag") == 0) {
            f = jhex(rej, "frame", &n);
            expect_fatal(f, n, n, APR_EGENERAL, "record does not authenticate");
        } else if (strcmp(name, "record_wrong_type") == 0) {
            f = jhex(rej, "frame", &n);
            /* Refused at the header: the body is never buffered. */
            expect_fatal(f, n, 3, APR_EINVAL, "frame type is not a transport record");
        } else if (strcmp(name, "record_too_long_header") == 0) {
            f = jhex(rej, "frame_header", &n);
            assert_int_equal(n, 3);
            expect_fatal(f, n, 3, APR_EINVAL, "record longer than 4096 bytes");
        } else {
            fail_msg("unknown rejection case %s", name);
            return;
        }
        free(f);
        seen++;
    }
    assert_int_equal(seen, 3);
    json_decref(v);
}

static void test_reader_corruptions(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *recs = json_object_get(v, "c2s_records");
    uint8_t hdr[3], buf[64];
    size_t n, i;
    uint8_t *good = jhex(json_array_get(recs, 0), "frame", &n);
    (void)state;

    /* A flipped bit anywhere in the ciphertext or tag. */
    for (i = 3; i < n; i++) {
        memcpy(buf, good, n);
        buf[i] ^= 0x01;
        expect_fatal(buf, n, n, APR_EGENERAL, "record does not authenticate");
    }
    /* Wrong length field: shorter (tag misplaced) or longer (swallows the next bytes). */
    memcpy(buf, good, n);
    buf[2] = (uint8_t)(buf[2] - 1);
    expect_fatal(buf, n, n - 1, APR_EGENERAL, "record does not authenticate");
    /* Error-frame and handshake types are not records after the handshake. */
    memcpy(buf, good, n);
    buf[0] = TS_FRAME_TYPE_ERROR;
    expect_fatal(buf, n, 3, APR_EINVAL, "frame type is not a transport record");
    buf[0] = TS_FRAME_TYPE_RESPONSE;
    expect_fatal(buf, n, 3, APR_EINVAL, "frame type is not a transport record");
    /* Shorter than a tag. */
    ts_frame_header_build(hdr, TS_FRAME_TYPE_RECORD, 15);
    expect_fatal(hdr, 3, 3, APR_EINVAL, "record shorter than its tag");
    /* Oversize is checked before the type. */
    ts_frame_header_build(hdr, 0x05, 4094);
    expect_fatal(hdr, 3, 3, APR_EINVAL, "record longer than 4096 bytes");
    ts_frame_header_build(hdr, TS_FRAME_TYPE_RECORD, 0xffff);
    expect_fatal(hdr, 3, 3, APR_EINVAL, "record longer than 4096 bytes");
    free(good);
    json_decref(v);
}

/* The maximum header (4093) is accepted and waits for its body. */
static void test_reader_max_header_waits(void **state)
{
    uint8_t key[32], hdr[3];
    ts_noise_cipher_t rx;
    ts_frame_reader_t r;
    const uint8_t *pt;
    size_t used, ptlen;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    ts_noise_cipher_init(&rx, key);
    ts_frame_reader_init(&r, &rx);
    ts_frame_header_build(hdr, TS_FRAME_TYPE_RECORD, 4093);
    assert_int_equal(ts_frame_reader_feed(&r, hdr, 3, &used, &pt, &ptlen, NULL), APR_INCOMPLETE);
    assert_int_equal(used, 3);
    ts_frame_reader_wipe(&r);
}

/* A stock Noise library's little-endian nonce breaks from the second record on. */
static void test_reader_rejects_le_nonce_stream(void **state)
{
    json_t *v = load_vector("noise-basic-v1.json");
    json_t *recs = json_object_get(v, "s2c_records");
    uint8_t s2c[32];
    size_t n0, n1;
    uint8_t *first = jhex(json_array_get(recs, 0), "frame", &n0);
    uint8_t *wrong = jhex(json_array_get(recs, 1), "frame_if_little_endian_nonce_WRONG", &n1);
    ts_noise_cipher_t rx;
    ts_frame_reader_t r;
    const uint8_t *pt;
    size_t used, ptlen;
    const char *err = NULL;
    (void)state;

    jkey(s2c, v, "s2c_key");
    ts_noise_cipher_init(&rx, s2c);
    ts_frame_reader_init(&r, &rx);
    assert_int_equal(ts_frame_reader_feed(&r, first, n0, &used, &pt, &ptlen, &err), APR_SUCCESS);
    assert_int_equal(ts_frame_reader_feed(&r, wrong, n1, &used, &pt, &ptlen, &err), APR_EGENERAL);
    free(first);
    free(wrong);
    json_decref(v);
}

static void test_reader_exhaustion(void **state)
{
    uint8_t key[32], wire[64];
    ts_noise_cipher_t tx, rx;
    ts_frame_reader_t r;
    const uint8_t *pt;
    size_t used, ptlen, n;
    const char *err = NULL;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    ts_noise_cipher_init(&tx, key);
    ts_noise_cipher_init(&rx, key);
    ts_noise_cipher_set_counter(&tx, UINT64_MAX - 1);
    ts_noise_cipher_set_counter(&rx, UINT64_MAX - 1);
    ts_frame_reader_init(&r, &rx);
    assert_int_equal(ts_frame_seal_record(&tx, wire, sizeof(wire), (const uint8_t *)"last", 4, &n,
                                          &err), APR_SUCCESS);
    assert_int_equal(n, 23);
    assert_int_equal(ts_frame_reader_feed(&r, wire, n, &used, &pt, &ptlen, &err), APR_SUCCESS);
    assert_memory_equal(pt, "last", 4);
    /* The writer cannot go on, and a record at the exhausted counter is refused. */
    assert_int_equal(ts_frame_seal_record(&tx, wire, sizeof(wire), (const uint8_t *)"x", 1, &n,
                                          &err), APR_ENOSPC);
    assert_int_equal(ts_frame_reader_feed(&r, wire, 23, &used, &pt, &ptlen, &err), APR_ENOSPC);
    assert_string_equal(err, "cipher exhausted: nonce counter reached 2^64-1");
}

/* ---- early payload ---- */

static void test_early_payload_build(void **state)
{
    json_t *v = load_vector("noise-capver145-early-payload.json");
    json_t *ep = json_object_get(v, "early_payload");
    uint8_t priv[32], pub[32], plain[TS_FRAME_EARLY_PLAIN_LEN];
    const char *json = jstr(ep, "json");
    (void)state;

    jkey(priv, ep, "challenge_private");
    assert_int_equal(ts_crypto_x25519_public(pub, priv), 0);
    assert_hex_field(pub, 32, ep, "challenge_public");
    ts_frame_early_payload_build(plain, pub);
    assert_hex_field(plain, sizeof(plain), ep, "plaintext_stream");
    assert_hex_field(plain, TS_FRAME_EARLY_HDR_LEN, ep, "header_9_bytes");
    assert_int_equal(strlen(json), TS_FRAME_EARLY_JSON_LEN);
    assert_memory_equal(plain + TS_FRAME_EARLY_HDR_LEN, json, TS_FRAME_EARLY_JSON_LEN);
    json_decref(v);
}

/* msg2 then the sealed early payload: byte for byte what the server sends after the 101. */
static void test_early_payload_wire(void **state)
{
    json_t *v = load_vector("noise-capver145-early-payload.json");
    json_t *ep = json_object_get(v, "early_payload");
    uint8_t priv[32], wire[TS_NOISE_MSG2_LEN + TS_FRAME_EARLY_SEALED_LEN + 64];
    ts_noise_session_t sess;
    size_t n, flen;
    const char *err = NULL;
    json_t *r3 = json_array_get(json_object_get(v, "s2c_records"), 3);
    uint8_t *pt3, *f3;
    (void)state;

    server_session(v, &sess, wire);
    jkey(priv, ep, "challenge_private");
    assert_int_equal(ts_frame_early_payload_seal(&sess.tx, 145, priv, wire + TS_NOISE_MSG2_LEN,
                                                 sizeof(wire) - TS_NOISE_MSG2_LEN, &n, &err),
                     APR_SUCCESS);
    assert_int_equal(n, TS_FRAME_EARLY_SEALED_LEN);
    assert_hex_field(wire, TS_NOISE_MSG2_LEN + n, v, "server_wire_after_101");
    /* HTTP/2 continues at counter 3, as in the vector. */
    pt3 = jhex(r3, "plaintext", &n);
    f3 = jhex(r3, "frame", &flen);
    assert_int_equal(ts_frame_seal(&sess.tx, wire, sizeof(wire), pt3, n, &n, &err), APR_SUCCESS);
    assert_int_equal(n, flen);
    assert_memory_equal(wire, f3, flen);
    free(pt3);
    free(f3);
    ts_noise_session_wipe(&sess);
    json_decref(v);
}

static void test_early_payload_versions(void **state)
{
    uint8_t key[32], out[TS_FRAME_EARLY_SEALED_LEN], out2[TS_FRAME_EARLY_SEALED_LEN];
    uint8_t plain[TS_FRAME_EARLY_PLAIN_LEN], plain2[TS_FRAME_EARLY_PLAIN_LEN];
    ts_noise_cipher_t tx, rx;
    ts_frame_reader_t r;
    size_t n, total;
    bytes got = { NULL, 0, 0 };
    int records = 0;
    const char *err = NULL;
    (void)state;

    ts_crypto_random(key, sizeof(key));
    ts_noise_cipher_init(&tx, key);
    assert_int_equal(ts_frame_early_payload_seal(&tx, 48, NULL, out, sizeof(out), &n, &err),
                     APR_SUCCESS);
    assert_int_equal(n, 0);
    assert_int_equal(ts_noise_cipher_counter(&tx), 0);
    assert_int_equal(ts_frame_early_payload_seal(&tx, 49, NULL, out, sizeof(out) - 1, &n, &err),
                     APR_EINVAL);
    assert_int_equal(ts_noise_cipher_counter(&tx), 0);
    assert_int_equal(ts_frame_early_payload_seal(&tx, 49, NULL, out, sizeof(out), &n, &err),
                     APR_SUCCESS);
    assert_int_equal(n, TS_FRAME_EARLY_SEALED_LEN);
    assert_int_equal(ts_noise_cipher_counter(&tx), 3);

    /* The receiving side sees a well-formed payload with a fresh random key each time. */
    ts_noise_cipher_init(&rx, key);
    ts_frame_reader_init(&r, &rx);
    assert_int_equal(read_stream(&r, out, n, 0, &got, &records), APR_SUCCESS);
    assert_int_equal(records, 3);
    assert_int_equal(got.len, TS_FRAME_EARLY_PLAIN_LEN);
    assert_int_equal(ts_frame_early_payload_detect(got.p, got.len, &total), APR_SUCCESS);
    assert_int_equal(total, TS_FRAME_EARLY_PLAIN_LEN);
    memcpy(plain, got.p, sizeof(plain));
    assert_memory_equal(plain + 9, "{\"nodeKeyChallenge\":\"chalpub:", 29);
    assert_int_equal(ts_frame_early_payload_seal(&tx, 65535, NULL, out2, sizeof(out2), &n, &err),
                     APR_SUCCESS);
    got.len = 0;
    assert_int_equal(read_stream(&r, out2, n, 5, &got, &records), APR_SUCCESS);
    memcpy(plain2, got.p, sizeof(plain2));
    assert_memory_not_equal(plain + 38, plain2 + 38, 64);
    free(got.p);
}

static void test_early_payload_detect(void **state)
{
    static const uint8_t settings[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
    static const uint8_t magic_only[] = { 0xff, 0xff, 0xff, 0x54 };
    static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0x54, 0x53, 0x00, 0xa0, 0x00, 0x01 };
    static const uint8_t max[] = { 0xff, 0xff, 0xff, 0x54, 0x53, 0x00, 0xa0, 0x00, 0x00 };
    static const uint8_t near[] = { 0xff, 0xff, 0xff, 0x54, 0x54, 0, 0, 0, 1 };
    size_t total;
    (void)state;

    assert_int_equal(ts_frame_early_payload_detect(settings, 9, &total), APR_NOTFOUND);
    assert_int_equal(ts_frame_early_payload_detect(settings, 2, &total), APR_NOTFOUND);
    assert_int_equal(ts_frame_early_payload_detect(near, 9, &total), APR_NOTFOUND);
    assert_int_equal(ts_frame_early_payload_detect(magic_only, 4, &total), APR_INCOMPLETE);
    assert_int_equal(ts_frame_early_payload_detect(NULL, 0, &total), APR_INCOMPLETE);
    assert_int_equal(ts_frame_early_payload_detect(huge, 8, &total), APR_INCOMPLETE);
    assert_int_equal(ts_frame_early_payload_detect(huge, 9, &total), APR_EINVAL);
    assert_int_equal(ts_frame_early_payload_detect(max, 9, &total), APR_SUCCESS);
    assert_int_equal(total, 9 + (10u << 20));
}

/* Client view of the capver-145 wire: message 2, then records carrying the early payload. */
static void test_client_reads_server_wire(void **state)
{
    json_t *v = load_vector("noise-capver145-early-payload.json");
    json_t *keys = json_object_get(v, "keys");
    uint8_t c_priv[32], e_priv[32], s_pub[32], m1[TS_NOISE_MSG1_LEN];
    size_t len, total;
    uint8_t *wire = jhex(v, "server_wire_after_101", &len);
    ts_noise_handshake_t hs;
    ts_noise_session_t sess;
    ts_frame_reader_t r;
    bytes got = { NULL, 0, 0 };
    int records = 0;
    const char *err = NULL;
    (void)state;

    jkey(c_priv, keys, "client_static_private");
    jkey(e_priv, keys, "client_ephemeral_private");
    jkey(s_pub, keys, "server_static_public");
    assert_int_equal(ts_noise_initiator_init(&hs, 145, c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, e_priv, m1, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_read_msg2(&hs, wire, TS_NOISE_MSG2_LEN, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_split(&hs, &sess, &err), APR_SUCCESS);
    ts_frame_reader_init(&r, &sess.rx);
    assert_int_equal(read_stream(&r, wire + TS_NOISE_MSG2_LEN, len - TS_NOISE_MSG2_LEN, 0, &got,
                                 &records), APR_SUCCESS);
    assert_int_equal(records, 3);
    assert_hex_field(got.p, got.len, json_object_get(v, "early_payload"), "plaintext_stream");
    assert_int_equal(ts_frame_early_payload_detect(got.p, got.len, &total), APR_SUCCESS);
    assert_int_equal(total, got.len);
    free(got.p);
    free(wire);
    ts_noise_session_wipe(&sess);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_build_parse),
        cmocka_unit_test(test_error_frames),
        cmocka_unit_test(test_seal_vector_records),
        cmocka_unit_test(test_sealed_len),
        cmocka_unit_test(test_seal_split_4077_plus_1),
        cmocka_unit_test(test_seal_limits),
        cmocka_unit_test(test_reader_vector_streams),
        cmocka_unit_test(test_reader_one_record_per_call),
        cmocka_unit_test(test_reader_must_reject_vectors),
        cmocka_unit_test(test_reader_corruptions),
        cmocka_unit_test(test_reader_max_header_waits),
        cmocka_unit_test(test_reader_rejects_le_nonce_stream),
        cmocka_unit_test(test_reader_exhaustion),
        cmocka_unit_test(test_early_payload_build),
        cmocka_unit_test(test_early_payload_wire),
        cmocka_unit_test(test_early_payload_versions),
        cmocka_unit_test(test_early_payload_detect),
        cmocka_unit_test(test_client_reads_server_wire),
    };

    if (ts_crypto_init() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
