/* test_ws.c: unit tests for ts_ws (RFC 6455 examples, masking, fragmentation under every chunking,
 * ping/pong, close, every malformed frame) and for ts_conn carrying TS2021 over WebSocket. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <nghttp2/nghttp2.h>
#include <sodium.h>

#include "ts_conn.h"
#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"
#include "ts_ws.h"

/* ---- helpers ---- */

static const uint8_t rfc_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* A masked client frame with a minimal length; b0 carries FIN, RSV and the opcode. */
static size_t client_frame(uint8_t *out, uint8_t b0, const void *payload, size_t len,
                           const uint8_t mask[4])
{
    size_t n = ts_ws_header_build(out, 0, len), i;

    out[0] = b0;
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
    for (i = 0; i < len; i++) out[n + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return n + len;
}

typedef struct {
    uint8_t data[1 << 17];
    size_t data_len;
    uint8_t replies[4096];
    size_t replies_len;
    apr_status_t rv;
    const char *err;
    size_t consumed;
} run_t;

/* Feeds in to ws in pieces of step bytes with an output buffer of ocap bytes, taking every
 * reply as it comes; stops at the first status other than APR_SUCCESS. */
static void run(ts_ws_t *ws, const uint8_t *in, size_t len, size_t step, size_t ocap, run_t *r)
{
    uint8_t out[1 << 16], reply[TS_WS_CONTROL_FRAME_MAX];
    size_t off = 0;

    memset(r, 0, offsetof(run_t, rv) + sizeof(r->rv));
    r->rv = APR_SUCCESS;
    r->data_len = r->replies_len = 0;
    assert_true(ocap <= sizeof(out));
    while (off < len) {
        size_t chunk = len - off < step ? len - off : step, pos = 0;

        while (pos < chunk) {
            size_t used = 0, n = 0, rn;
            apr_status_t rv = ts_ws_recv(ws, in + off + pos, chunk - pos, &used, out, ocap, &n,
                                         &r->err);

            assert_true(r->data_len + n <= sizeof(r->data));
            memcpy(r->data + r->data_len, out, n);
            r->data_len += n;
            rn = ts_ws_reply(ws, reply);
            assert_true(r->replies_len + rn <= sizeof(r->replies));
            memcpy(r->replies + r->replies_len, reply, rn);
            r->replies_len += rn;
            pos += used;
            if (rv != APR_SUCCESS) {
                r->rv = rv;
                r->consumed = off + pos;
                return;
            }
            /* Every call makes progress. */
            assert_true(used > 0 || n > 0 || rn > 0);
        }
        off += chunk;
    }
    r->consumed = off;
}

static run_t R;

/* ---- the opening handshake ---- */

static void test_accept_rfc_example(void **state)
{
    char acc[TS_WS_ACCEPT_LEN + 1];

    (void)state;
    /* RFC 6455 1.3. */
    ts_ws_accept(acc, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* RFC 6455 4.2.2 example key. */
    ts_ws_accept(acc, "x3JJHMbDL1EzLkh9GBhXDw==");
    assert_string_equal(acc, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_key_valid(void **state)
{
    static const char *const bad[] = {
        "", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===", "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZR==",   /* non-zero trailing bits */
        "dGhl-HNhbXBsZSBub25jZQ==",   /* URL-safe alphabet */
        "dGhl HNhbXBsZSBub25jZQ==",
        "AAAAAAAAAAAAAAAAAAAAAAA=",   /* 17 bytes */
        "AAAAAAAAAAAAAAAAAAAA",       /* 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    size_t i;

    (void)state;
    assert_true(ts_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_true(ts_ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_false(ts_ws_key_valid(NULL));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ts_ws_key_valid(bad[i])) fail_msg("key %s accepted", bad[i]);
    }
}

/* ---- writing ---- */

static void test_header_build(void **state)
{
    static const struct {
        uint64_t len;
        size_t n;
        const char *hex;
    } cases[] = {
        { 0, 2, "8200" }, { 5, 2, "8205" }, { 125, 2, "827d" }, { 126, 4, "827e007e" },
        { 256, 4, "827e0100" }, { 65535, 4, "827effff" },
        { 65536, 10, "827f0000000000010000" }, { 0x0123456789abULL, 10, "827f00000123456789ab" },
    };
    uint8_t out[TS_WS_SERVER_HDR_MAX];
    char hex[2 * TS_WS_SERVER_HDR_MAX + 1];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = ts_ws_header_build(out, TS_WS_OP_BINARY, cases[i].len);
        assert_int_equal(n, cases[i].n);
        assert_int_equal(ts_ws_header_len(cases[i].len), n);
        sodium_bin2hex(hex, sizeof(hex), out, n);
        assert_string_equal(hex, cases[i].hex);
    }
    /* RFC 6455 5.7: an unmasked pong "Hello" header. */
    assert_int_equal(ts_ws_header_build(out, TS_WS_OP_PONG, 5), 2);
    assert_int_equal(out[0], 0x8a);
    assert_int_equal(out[1], 0x05);
}

static void test_close_build(void **state)
{
    uint8_t out[TS_WS_CONTROL_FRAME_MAX + 8];
    char reason[200];
    size_t n;

    (void)state;
    n = ts_ws_close_build(out, sizeof(out), TS_WS_CLOSE_POLICY, "bad");
    assert_int_equal(n, 7);
    assert_memory_equal(out, "\x88\x05\x03\xf0" "bad", 7);
    n = ts_ws_close_build(out, sizeof(out), TS_WS_CLOSE_NORMAL, NULL);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x88\x02\x03\xe8", 4);
    n = ts_ws_close_build(out, sizeof(out), TS_WS_CLOSE_NO_STATUS, "ignored");
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\x88\x00", 2);
    /* Long reasons are cut to 123 bytes, never inside a character. */
    memset(reason, 'r', sizeof(reason));
    reason[sizeof(reason) - 1] = 0;
    n = ts_ws_close_build(out, sizeof(out), TS_WS_CLOSE_PROTOCOL, reason);
    assert_int_equal(n, 2 + TS_WS_MAX_CONTROL);
    assert_int_equal(out[1], TS_WS_MAX_CONTROL);
    memset(reason, 'r', 122);
    memcpy(reason + 122, "\xc3\xa9tail", 6);
    n = ts_ws_close_build(out, sizeof(out), TS_WS_CLOSE_PROTOCOL, reason);
    assert_int_equal(n, 4 + 122);
    /* Too small a buffer: nothing. */
    assert_int_equal(ts_ws_close_build(out, 6, TS_WS_CLOSE_POLICY, "bad"), 0);
    assert_int_equal(ts_ws_close_build(out, 1, TS_WS_CLOSE_NO_STATUS, NULL), 0);
}

/* ---- reading: RFC 6455 5.7 examples ---- */

static void test_reader_rfc_examples(void **state)
{
    /* The RFC's masked "Hello", as a binary frame (its example is text). */
    static const uint8_t hello[] = { 0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d,
                                     0x51, 0x58 };
    static const uint8_t ping[] = { 0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d,
                                    0x51, 0x58 };
    static const uint8_t pong[] = { 0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    static const uint8_t text[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d,
                                    0x51, 0x58 };
    static const uint8_t unmasked[] = { 0x82, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    ts_ws_t ws;

    (void)state;
    ts_ws_init(&ws, 0);
    run(&ws, hello, sizeof(hello), sizeof(hello), 4096, &R);
    assert_int_equal(R.rv, APR_SUCCESS);
    assert_int_equal(R.data_len, 5);
    assert_memory_equal(R.data, "Hello", 5);
    assert_int_equal(R.replies_len, 0);

    run(&ws, ping, sizeof(ping), sizeof(ping), 4096, &R);
    assert_int_equal(R.rv, APR_SUCCESS);
    assert_int_equal(R.data_len, 0);
    assert_int_equal(R.replies_len, sizeof(pong));
    assert_memory_equal(R.replies, pong, sizeof(pong));

    ts_ws_init(&ws, 0);
    run(&ws, text, sizeof(text), sizeof(text), 4096, &R);
    assert_int_equal(R.rv, APR_EINVAL);
    assert_int_equal(ts_ws_close_code(&ws), TS_WS_CLOSE_UNSUPPORTED);
    assert_memory_equal(R.replies, "\x88", 1);
    assert_memory_equal(R.replies + 2, "\x03\xeb", 2);

    ts_ws_init(&ws, 0);
    run(&ws, unmasked, sizeof(unmasked), 1, 4096, &R);
    assert_int_equal(R.rv, APR_EINVAL);
    assert_int_equal(ts_ws_close_code(&ws), TS_WS_CLOSE_PROTOCOL);
    assert_string_equal(R.err, "unmasked client frame");
    /* Refused on the header alone: the payload was never read. */
    assert_int_equal(R.consumed, 2);
}

static void test_reader_extended_lengths(void **state)
{
    static uint8_t in[70000 + 14], payload[70000];
    ts_ws_t ws;
    size_t i, n, lens[] = { 125, 126, 256, 65535, 65536, 70000 };

    (void)state;
    for (i = 0; i < sizeof(payload); i++) payload[i] = (uint8_t)(i * 7 + 3);
    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        ts_ws_init(&ws, 70000);
        n = client_frame(in, 0x82, payload, lens[i], rfc_mask);
        assert_int_equal(n, lens[i] + 4 + (lens[i] < 126 ? 2 : lens[i] < 65536 ? 4 : 10));
        run(&ws, in, n, 4099, 4096, &R);
        assert_int_equal(R.rv, APR_SUCCESS);
        assert_int_equal(R.data_len, lens[i]);
        assert_memory_equal(R.data, payload, lens[i]);
    }
}

/* ---- reading: fragmentation and every chunking ---- */

/* Two fragmented messages with a ping between fragments, empty frames, a plain message. */
static size_t build_stream(uint8_t *in, uint8_t *want, size_t *want_len)
{
    static const uint8_t m1[4] = { 1, 2, 3, 4 }, m2[4] = { 0xff, 0, 0x80, 0x7f };
    uint8_t p[300];
    size_t n = 0, i;

    for (i = 0; i < sizeof(p); i++) p[i] = (uint8_t)(i ^ 0x5a);
    n += client_frame(in + n, 0x02, p, 3, m1);              /* binary, not FIN */
    n += client_frame(in + n, 0x89, "ping!", 5, m2);        /* ping inside the message */
    n += client_frame(in + n, 0x00, p + 3, 0, m1);          /* empty continuation */
    n += client_frame(in + n, 0x00, p + 3, 200, m2);        /* continuation */
    n += client_frame(in + n, 0x8a, "unsolicited", 11, m1); /* pong: ignored */
    n += client_frame(in + n, 0x80, p + 203, 50, m1);       /* final continuation */
    n += client_frame(in + n, 0x82, p, 0, m2);              /* empty binary message */
    n += client_frame(in + n, 0x82, p + 253, 47, m2);       /* a whole message */
    memcpy(want, p, 300);
    *want_len = 300;
    return n;
}

static void test_reader_fragmentation_every_chunking(void **state)
{
    uint8_t in[1024], want[300];
    uint8_t pong[7] = { 0x8a, 0x05, 'p', 'i', 'n', 'g', '!' };
    size_t len, want_len, step, caps[] = { 1, 3, 4096 }, c;
    ts_ws_t ws;

    (void)state;
    len = build_stream(in, want, &want_len);
    for (c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        for (step = 1; step <= len; step++) {
            ts_ws_init(&ws, 0);
            run(&ws, in, len, step, caps[c], &R);
            assert_int_equal(R.rv, APR_SUCCESS);
            assert_int_equal(R.consumed, len);
            assert_int_equal(R.data_len, want_len);
            assert_memory_equal(R.data, want, want_len);
            assert_int_equal(R.replies_len, sizeof(pong));
            assert_memory_equal(R.replies, pong, sizeof(pong));
            assert_false(ts_ws_closed(&ws));
        }
    }
}

static void test_reader_pong_replaced(void **state)
{
    uint8_t in[64], out[16], reply[TS_WS_CONTROL_FRAME_MAX];
    size_t n = 0, used, outlen, off = 0;
    const char *err;
    ts_ws_t ws;

    (void)state;
    n += client_frame(in + n, 0x89, "A", 1, rfc_mask);
    n += client_frame(in + n, 0x89, "BB", 2, rfc_mask);
    ts_ws_init(&ws, 0);
    /* It stops after each ping; a reply not taken is replaced by the next one. */
    assert_int_equal(ts_ws_recv(&ws, in, n, &used, out, sizeof(out), &outlen, &err), APR_SUCCESS);
    assert_int_equal(used, 7);
    off += used;
    assert_int_equal(ts_ws_recv(&ws, in + off, n - off, &used, out, sizeof(out), &outlen, &err),
                     APR_SUCCESS);
    assert_int_equal(off + used, n);
    assert_int_equal(ts_ws_reply(&ws, reply), 4);
    assert_memory_equal(reply, "\x8a\x02" "BB", 4);
    assert_int_equal(ts_ws_reply(&ws, reply), 0);
}

/* ---- reading: close ---- */

static void test_reader_close(void **state)
{
    uint8_t in[64], close_body[5] = { 0x03, 0xe8, 'b', 'y', 'e' };
    size_t n = 0, used, outlen;
    uint8_t out[16];
    const char *err;
    ts_ws_t ws;

    (void)state;
    n += client_frame(in + n, 0x82, "last", 4, rfc_mask);
    n += client_frame(in + n, 0x88, close_body, sizeof(close_body), rfc_mask);
    n += client_frame(in + n, 0x82, "after", 5, rfc_mask);
    ts_ws_init(&ws, 0);
    run(&ws, in, n, n, 4096, &R);
    /* Data before the close still counts; the close is echoed; nothing after it is read. */
    assert_int_equal(R.rv, APR_EOF);
    assert_int_equal(R.data_len, 4);
    assert_memory_equal(R.data, "last", 4);
    assert_int_equal(R.replies_len, 4);
    assert_memory_equal(R.replies, "\x88\x02\x03\xe8", 4);
    assert_int_equal(R.consumed, n - 11);
    assert_true(ts_ws_closed(&ws));
    assert_int_equal(ts_ws_close_code(&ws), TS_WS_CLOSE_NORMAL);
    assert_int_equal(ts_ws_recv(&ws, in, n, &used, out, sizeof(out), &outlen, &err), APR_EOF);
    assert_int_equal(used, 0);

    /* An empty close is echoed empty; application codes are fine. */
    ts_ws_init(&ws, 0);
    n = client_frame(in, 0x88, "", 0, rfc_mask);
    run(&ws, in, n, 1, 4096, &R);
    assert_int_equal(R.rv, APR_EOF);
    assert_int_equal(R.replies_len, 2);
    assert_memory_equal(R.replies, "\x88\x00", 2);
    assert_int_equal(ts_ws_close_code(&ws), TS_WS_CLOSE_NO_STATUS);
    ts_ws_init(&ws, 0);
    n = client_frame(in, 0x88, "\x0f\xa0" "\xc3\xa9t\xc3\xa9", 8, rfc_mask);
    run(&ws, in, n, 3, 4096, &R);
    assert_int_equal(R.rv, APR_EOF);
    assert_int_equal(ts_ws_close_code(&ws), 4000);
    assert_memory_equal(R.replies, "\x88\x02\x0f\xa0", 4);
}

/* ---- reading: every malformed case ---- */

typedef struct {
    const char *name;
    uint8_t b0;
    const char *payload;   /* NULL: raw carries the whole frame */
    size_t len;
    const char *raw;
    size_t raw_len;
    uint16_t code;
} bad_case;

static const bad_case bad_cases[] = {
    { "rsv1", 0xc2, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "rsv2", 0xa2, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "rsv3", 0x92, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "op3", 0x83, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "op7", 0x87, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "opB", 0x8b, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "opF", 0x8f, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "text", 0x81, "hello", 5, NULL, 0, TS_WS_CLOSE_UNSUPPORTED },
    { "empty text", 0x81, "", 0, NULL, 0, TS_WS_CLOSE_UNSUPPORTED },
    { "text not fin", 0x01, "he", 2, NULL, 0, TS_WS_CLOSE_UNSUPPORTED },
    { "continuation first", 0x80, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "ping not fin", 0x09, "x", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close not fin", 0x08, "", 0, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close 1-byte body", 0x88, "\x03", 1, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 999", 0x88, "\x03\xe7", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 1004", 0x88, "\x03\xec", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 1005", 0x88, "\x03\xed", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 1006", 0x88, "\x03\xee", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 1015", 0x88, "\x03\xf7", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 2000", 0x88, "\x07\xd0", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close code 5000", 0x88, "\x13\x88", 2, NULL, 0, TS_WS_CLOSE_PROTOCOL },
    { "close reason 0xff", 0x88, "\x03\xe8\xff", 3, NULL, 0, TS_WS_CLOSE_INVALID_DATA },
    { "close reason overlong", 0x88, "\x03\xe8\xc0\x80", 4, NULL, 0, TS_WS_CLOSE_INVALID_DATA },
    { "close reason surrogate", 0x88, "\x03\xe8\xed\xa0\x80", 5, NULL, 0,
      TS_WS_CLOSE_INVALID_DATA },
    { "close reason truncated", 0x88, "\x03\xe8\xe2\x82", 4, NULL, 0, TS_WS_CLOSE_INVALID_DATA },
    { "close reason above U+10FFFF", 0x88, "\x03\xe8\xf4\x90\x80\x80", 6, NULL, 0,
      TS_WS_CLOSE_INVALID_DATA },
    { "unmasked", 0, NULL, 0, "\x82\x01x", 3, TS_WS_CLOSE_PROTOCOL },
    { "ping over 125", 0, NULL, 0, "\x89\xfe\x00\x7e", 4, TS_WS_CLOSE_PROTOCOL },
    { "16-bit length under 126", 0, NULL, 0, "\x82\xfe\x00\x7d" "abcd", 8, TS_WS_CLOSE_PROTOCOL },
    { "64-bit length under 65536", 0, NULL, 0, "\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff" "abcd",
      14, TS_WS_CLOSE_PROTOCOL },
    { "64-bit length top bit", 0, NULL, 0, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00" "abcd", 14,
      TS_WS_CLOSE_PROTOCOL },
    { "oversize frame", 0, NULL, 0, "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x01" "abcd", 14,
      TS_WS_CLOSE_TOO_BIG },
    { "huge frame", 0, NULL, 0, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff" "abcd", 14,
      TS_WS_CLOSE_TOO_BIG },
    { "garbage", 0, NULL, 0, "\xff\xff\xff\xff\xff\xff", 6, TS_WS_CLOSE_PROTOCOL },
    { "http", 0, NULL, 0, "GET / HTTP/1.1\r\n", 16, TS_WS_CLOSE_PROTOCOL },
};

static size_t bad_frame(uint8_t *out, const bad_case *c)
{
    if (!c->payload) {
        memcpy(out, c->raw, c->raw_len);
        return c->raw_len;
    }
    return client_frame(out, c->b0, c->payload, c->len, rfc_mask);
}

static void check_failed(ts_ws_t *ws, const bad_case *c)
{
    uint8_t out[TS_WS_CONTROL_FRAME_MAX];
    size_t used, outlen;
    const char *err = NULL;

    if (R.rv != APR_EINVAL) fail_msg("%s: status %d", c->name, R.rv);
    assert_non_null(R.err);
    assert_true(ts_ws_closed(ws));
    if (ts_ws_close_code(ws) != c->code) {
        fail_msg("%s: close %u, want %u", c->name, ts_ws_close_code(ws), c->code);
    }
    /* The close frame carries the code and the reason. */
    assert_true(R.replies_len >= 4);
    assert_int_equal(R.replies[0], 0x88);
    assert_int_equal(R.replies[1], R.replies_len - 2);
    assert_int_equal((R.replies[2] << 8) | R.replies[3], c->code);
    assert_memory_equal(R.replies + 4, R.err, R.replies_len - 4);
    /* Sticky, and no second close frame. */
    assert_int_equal(ts_ws_recv(ws, (const uint8_t *)"\x82\x80\0\0\0\0", 6, &used, out,
                                sizeof(out), &outlen, &err), APR_EINVAL);
    assert_int_equal(used, 0);
    assert_string_equal(err, R.err);
    assert_int_equal(ts_ws_reply(ws, out), 0);
}

static void test_reader_malformed(void **state)
{
    uint8_t in[256], prefix[64];
    size_t i, n, p, step;
    ts_ws_t ws;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *c = &bad_cases[i];

        for (step = 1; step <= 2; step++) {
            /* Alone (whole, then byte by byte)... */
            n = bad_frame(in, c);
            ts_ws_init(&ws, 0);
            run(&ws, in, n, step == 1 ? n : 1, 4096, &R);
            check_failed(&ws, c);
            /* ...and after valid data, which is still delivered. */
            p = client_frame(prefix, 0x82, "ok", 2, rfc_mask);
            memcpy(in, prefix, p);
            n = p + bad_frame(in + p, c);
            ts_ws_init(&ws, 0);
            run(&ws, in, n, step == 1 ? n : 1, 4096, &R);
            assert_int_equal(R.data_len, 2);
            check_failed(&ws, c);
        }
    }
}

static void test_reader_fragment_misuse(void **state)
{
    uint8_t in[64];
    size_t n;
    ts_ws_t ws;
    bad_case c = { "binary inside a fragmented message", 0, NULL, 0, NULL, 0,
                   TS_WS_CLOSE_PROTOCOL };

    (void)state;
    n = client_frame(in, 0x02, "ab", 2, rfc_mask);
    n += client_frame(in + n, 0x82, "cd", 2, rfc_mask);
    ts_ws_init(&ws, 0);
    run(&ws, in, n, 1, 4096, &R);
    check_failed(&ws, &c);
    /* Text inside a binary message is a protocol error too (it cannot start one there). */
    n = client_frame(in, 0x02, "ab", 2, rfc_mask);
    n += client_frame(in + n, 0x81, "cd", 2, rfc_mask);
    ts_ws_init(&ws, 0);
    run(&ws, in, n, n, 4096, &R);
    c.name = "text inside a fragmented message";
    check_failed(&ws, &c);
    /* After a final fragment a continuation has nothing to continue. */
    n = client_frame(in, 0x02, "ab", 2, rfc_mask);
    n += client_frame(in + n, 0x80, "cd", 2, rfc_mask);
    n += client_frame(in + n, 0x80, "ef", 2, rfc_mask);
    ts_ws_init(&ws, 0);
    run(&ws, in, n, n, 4096, &R);
    assert_int_equal(R.data_len, 4);
    c.name = "continuation after the final fragment";
    check_failed(&ws, &c);
}

static void test_reader_custom_cap(void **state)
{
    uint8_t in[64], p[11] = { 0 };
    size_t n;
    ts_ws_t ws;
    bad_case c = { "over the cap", 0, NULL, 0, NULL, 0, TS_WS_CLOSE_TOO_BIG };

    (void)state;
    ts_ws_init(&ws, 10);
    n = client_frame(in, 0x82, p, 10, rfc_mask);
    run(&ws, in, n, 1, 4096, &R);
    assert_int_equal(R.rv, APR_SUCCESS);
    assert_int_equal(R.data_len, 10);
    n = client_frame(in, 0x82, p, 11, rfc_mask);
    run(&ws, in, n, 1, 4096, &R);
    check_failed(&ws, &c);
    /* Control frames are bounded by 125 alone. */
    ts_ws_init(&ws, 10);
    n = client_frame(in, 0x89, "0123456789abcdef", 16, rfc_mask);
    run(&ws, in, n, n, 4096, &R);
    assert_int_equal(R.rv, APR_SUCCESS);
    assert_int_equal(R.replies_len, 18);
}


/* ---- ts_conn over the WebSocket carrier ---- */

/* A client: its Noise session, an nghttp2 client session, and what came back. */
typedef struct {
    ts_noise_session_t ns;
    ts_frame_reader_t reader;
    nghttp2_session *h2;
    uint8_t h2out[8192];
    size_t h2out_len;
    int status;
    char body[256];
    size_t body_len;
    int stream_closed;
    size_t binary_frames, pongs, closes;
    uint8_t pong[TS_WS_MAX_CONTROL];
    size_t pong_len;
    uint16_t close_code;
} wsclient_t;

static ts_conn_t *the_conn;

static void conn_dispatch(void *baton, const ts_conn_request_t *req)
{
    (void)baton;
    assert_string_equal(req->path, "/hello");
    ts_conn_respond(req->conn, req->stream_id, 200, "text/plain", (const uint8_t *)"hi", 2);
}

static ssize_t cl_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    wsclient_t *c = ud;

    (void)s;
    (void)flags;
    assert_true(c->h2out_len + len <= sizeof(c->h2out));
    memcpy(c->h2out + c->h2out_len, data, len);
    c->h2out_len += len;
    return (ssize_t)len;
}

static int cl_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    wsclient_t *c = ud;

    (void)s;
    (void)f;
    (void)flags;
    if (namelen == 7 && !memcmp(name, ":status", 7)) c->status = atoi((const char *)value);
    (void)valuelen;
    return 0;
}

static int cl_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                   size_t len, void *ud)
{
    wsclient_t *c = ud;

    (void)s;
    (void)flags;
    (void)sid;
    assert_true(c->body_len + len <= sizeof(c->body));
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    return 0;
}

static int cl_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)s;
    (void)sid;
    (void)code;
    ((wsclient_t *)ud)->stream_closed = 1;
    return 0;
}

/* Handshake both ways; the server's half becomes a ts_conn with the WebSocket carrier. */
static void conn_setup(wsclient_t *c)
{
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32], msg1[TS_NOISE_MSG1_LEN];
    uint8_t msg2[TS_NOISE_MSG2_LEN];
    ts_noise_handshake_t hs;
    ts_noise_session_t server;
    ts_conn_env_t env;
    nghttp2_session_callbacks *cb;
    const char *err = NULL;

    memset(c, 0, sizeof(*c));
    assert_int_equal(ts_crypto_x25519_keypair(s_priv, s_pub), 0);
    assert_int_equal(ts_crypto_x25519_keypair(c_priv, c_pub), 0);
    assert_int_equal(ts_noise_initiator_init(&hs, 145, c_priv, s_pub), APR_SUCCESS);
    assert_int_equal(ts_noise_write_msg1(&hs, NULL, msg1, &err), APR_SUCCESS);
    assert_int_equal(ts_noise_respond(s_priv, msg1, sizeof(msg1), NULL, msg2, &server, &err),
                     APR_SUCCESS);
    assert_int_equal(ts_noise_read_msg2(&hs, msg2, sizeof(msg2), &err), APR_SUCCESS);
    assert_int_equal(ts_noise_split(&hs, &c->ns, &err), APR_SUCCESS);
    ts_frame_reader_init(&c->reader, &c->ns.rx);
    memset(&env, 0, sizeof(env));
    env.dispatch = conn_dispatch;
    env.websocket = 1;
    assert_int_equal(ts_conn_create(&the_conn, &server, &env, &err), APR_SUCCESS);
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, cl_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, cl_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_close);
    assert_int_equal(nghttp2_session_client_new(&c->h2, cb, c), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void conn_teardown(wsclient_t *c)
{
    nghttp2_session_del(c->h2);
    ts_frame_reader_wipe(&c->reader);
    ts_noise_session_wipe(&c->ns);
    ts_conn_destroy(the_conn);
    the_conn = NULL;
}

/* The client's HTTP/2 output, sealed into records, cut into masked fragments of at most frag
 * bytes, each fragment followed by a ping when ping is set; fed to the server in 5-byte reads. */
static apr_status_t conn_send_h2(wsclient_t *c, size_t frag, int ping)
{
    static uint8_t sealed[16384], wire[65536];
    size_t slen = 0, wlen = 0, off, n;
    const char *err = NULL;
    apr_status_t rv = APR_SUCCESS;

    c->h2out_len = 0;
    assert_int_equal(nghttp2_session_send(c->h2), 0);
    if (c->h2out_len == 0) return APR_SUCCESS;
    assert_int_equal(ts_frame_seal(&c->ns.tx, sealed, sizeof(sealed), c->h2out, c->h2out_len,
                                   &slen, &err), APR_SUCCESS);
    for (off = 0; off < slen; off += n) {
        uint8_t b0 = off == 0 ? TS_WS_OP_BINARY : TS_WS_OP_CONTINUATION;

        n = slen - off < frag ? slen - off : frag;
        if (off + n == slen) b0 |= 0x80;
        wlen += client_frame(wire + wlen, b0, sealed + off, n, rfc_mask);
        if (ping) wlen += client_frame(wire + wlen, 0x89, "p", 1, rfc_mask);
        assert_true(wlen + 64 < sizeof(wire));
    }
    for (off = 0; off < wlen && rv == APR_SUCCESS; off += n) {
        n = wlen - off < 5 ? wlen - off : 5;
        rv = ts_conn_recv(the_conn, wire + off, n, &err);
    }
    return rv;
}

/* Parses the server's output: unmasked final frames only; binary payloads are whole records. */
static void conn_read_server(wsclient_t *c, size_t *total)
{
    const uint8_t *out, *pt;
    size_t len, off = 0, used, ptlen;
    const char *err = NULL;

    assert_int_equal(ts_conn_pending(the_conn, &out, &len, &err), APR_SUCCESS);
    *total = len;
    while (off < len) {
        uint8_t op = out[off] & 0x0f;
        uint64_t plen = out[off + 1];
        size_t h = 2;

        assert_int_equal(out[off] & 0xf0, 0x80);           /* FIN, no RSV */
        assert_int_equal(out[off + 1] & 0x80, 0);          /* never masked */
        if (plen == 126) plen = ((size_t)out[off + 2] << 8) | out[off + 3], h = 4;
        assert_true(plen < 127 || h == 4);
        assert_true(off + h + plen <= len);
        if (op == TS_WS_OP_BINARY) {
            /* One record per message: type 04 and its length match the frame. */
            assert_int_equal(out[off + h], TS_FRAME_TYPE_RECORD);
            assert_int_equal(((size_t)out[off + h + 1] << 8) | out[off + h + 2], plen - 3);
            c->binary_frames++;
            assert_int_equal(ts_frame_reader_feed(&c->reader, out + off + h, plen, &used, &pt,
                                                  &ptlen, &err), APR_SUCCESS);
            assert_int_equal(used, plen);
            assert_int_equal(nghttp2_session_mem_recv(c->h2, pt, ptlen), (ssize_t)ptlen);
        }
        else if (op == TS_WS_OP_PONG) {
            c->pongs++;
            memcpy(c->pong, out + off + h, plen);
            c->pong_len = plen;
        }
        else {
            assert_int_equal(op, TS_WS_OP_CLOSE);
            assert_int_equal(c->closes, 0);
            c->closes++;
            c->close_code = plen >= 2 ? (uint16_t)((out[off + h] << 8) | out[off + h + 1])
                                      : TS_WS_CLOSE_NO_STATUS;
        }
        off += h + (size_t)plen;
    }
    ts_conn_sent(the_conn, len);
}

static void conn_request(wsclient_t *c, size_t frag, int ping)
{
    static const nghttp2_nv nv[] = {
#define NV(n, v) { (uint8_t *)n, (uint8_t *)v, sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }
        NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/hello"),
        NV(":authority", "unused"),
#undef NV
    };
    size_t total;
    int i;

    assert_true(nghttp2_submit_request(c->h2, NULL, nv, 4, NULL, NULL) > 0);
    for (i = 0; i < 10 && !c->stream_closed; i++) {
        assert_int_equal(conn_send_h2(c, frag, ping), APR_SUCCESS);
        conn_read_server(c, &total);
    }
    assert_true(c->stream_closed);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->body_len, 2);
    assert_memory_equal(c->body, "hi", 2);
}

static void test_conn_ws_request(void **state)
{
    static const size_t frags[] = { 1, 2, 7, 100, 5000 };
    wsclient_t *c = malloc(sizeof(*c));
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
        conn_setup(c);
        conn_request(c, frags[i], i % 2);
        assert_true(c->binary_frames >= 1);
        if (i % 2) {
            assert_true(c->pongs >= 1);
            assert_int_equal(c->pong_len, 1);
            assert_memory_equal(c->pong, "p", 1);
        }
        assert_int_equal(c->closes, 0);
        assert_false(ts_conn_finished(the_conn));
        assert_true(ts_conn_records_in(the_conn) > 0);
        conn_teardown(c);
    }
    free(c);
}

static void test_conn_ws_client_close(void **state)
{
    wsclient_t *c = malloc(sizeof(*c));
    uint8_t wire[64];
    const char *err = NULL;
    size_t n, total;

    (void)state;
    conn_setup(c);
    conn_request(c, 100, 0);
    n = client_frame(wire, 0x88, "\x03\xe8", 2, rfc_mask);
    n += client_frame(wire + n, 0x82, "junk", 4, rfc_mask);
    assert_int_equal(ts_conn_recv(the_conn, wire, n, &err), APR_SUCCESS);
    conn_read_server(c, &total);
    assert_int_equal(c->closes, 1);
    assert_int_equal(c->close_code, TS_WS_CLOSE_NORMAL);
    assert_true(ts_conn_finished(the_conn));
    /* Bytes after the close are ignored, nothing more goes out. */
    assert_int_equal(ts_conn_recv(the_conn, wire, n, &err), APR_SUCCESS);
    conn_read_server(c, &total);
    assert_int_equal(total, 0);
    conn_teardown(c);
    free(c);
}

static void test_conn_ws_protocol_errors(void **state)
{
    static const struct {
        uint8_t b0;
        int masked;
        uint16_t code;
    } cases[] = {
        { 0x81, 1, TS_WS_CLOSE_UNSUPPORTED }, { 0x82, 0, TS_WS_CLOSE_PROTOCOL },
        { 0xc2, 1, TS_WS_CLOSE_PROTOCOL }, { 0x80, 1, TS_WS_CLOSE_PROTOCOL },
    };
    wsclient_t *c = malloc(sizeof(*c));
    uint8_t wire[64];
    const char *err = NULL;
    size_t i, n, total;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        conn_setup(c);
        n = client_frame(wire, cases[i].b0, "text", 4, rfc_mask);
        if (!cases[i].masked) wire[1] &= 0x7f;
        assert_int_equal(ts_conn_recv(the_conn, wire, n, &err), APR_EINVAL);
        assert_non_null(err);
        /* The server's SETTINGS, then the close frame; nothing after. */
        conn_read_server(c, &total);
        assert_int_equal(c->closes, 1);
        assert_int_equal(c->close_code, cases[i].code);
        assert_true(ts_conn_finished(the_conn));
        conn_teardown(c);
    }
    /* An oversize frame header is refused before its payload. */
    conn_setup(c);
    assert_int_equal(ts_conn_recv(the_conn, (const uint8_t *)"\x82\xff\0\0\0\0\0\x10\0\0"
                                  "mask", 14, &err), APR_EINVAL);
    conn_read_server(c, &total);
    assert_int_equal(c->close_code, TS_WS_CLOSE_TOO_BIG);
    conn_teardown(c);
    free(c);
}

static void test_conn_ws_bad_record_kills(void **state)
{
    wsclient_t *c = malloc(sizeof(*c));
    uint8_t wire[64];
    const char *err = NULL;
    const uint8_t *out;
    size_t n, len;

    (void)state;
    conn_setup(c);
    /* A valid WebSocket frame around a record that does not authenticate: the Noise layer
     * is fatal as on the native path, no close frame. */
    n = client_frame(wire, 0x82, "\x04\x00\x10" "0123456789abcdef", 19, rfc_mask);
    assert_true(ts_conn_recv(the_conn, wire, n, &err) != APR_SUCCESS);
    assert_true(ts_conn_finished(the_conn));
    assert_int_equal(ts_conn_pending(the_conn, &out, &len, &err), APR_SUCCESS);
    assert_int_equal(len, 0);
    conn_teardown(c);
    free(c);
}

static void test_conn_ws_goaway_ends_with_close(void **state)
{
    wsclient_t *c = malloc(sizeof(*c));
    size_t total;
    int i;

    (void)state;
    conn_setup(c);
    conn_request(c, 50, 0);
    ts_conn_goaway(the_conn);
    for (i = 0; i < 5 && !c->closes; i++) {
        assert_int_equal(conn_send_h2(c, 50, 0), APR_SUCCESS);
        conn_read_server(c, &total);
    }
    assert_int_equal(c->closes, 1);
    assert_int_equal(c->close_code, TS_WS_CLOSE_GOING_AWAY);
    assert_true(ts_conn_finished(the_conn));
    conn_teardown(c);
    free(c);
}

static void test_conn_native_unchanged(void **state)
{
    wsclient_t *c = malloc(sizeof(*c));
    ts_noise_session_t server;
    ts_conn_env_t env;
    uint8_t s_priv[32], s_pub[32], c_priv[32], c_pub[32], msg1[TS_NOISE_MSG1_LEN];
    uint8_t msg2[TS_NOISE_MSG2_LEN];
    ts_noise_handshake_t hs;
    const uint8_t *out;
    const char *err = NULL;
    size_t len;

    (void)state;
    ts_crypto_x25519_keypair(s_priv, s_pub);
    ts_crypto_x25519_keypair(c_priv, c_pub);
    ts_noise_initiator_init(&hs, 145, c_priv, s_pub);
    ts_noise_write_msg1(&hs, NULL, msg1, &err);
    assert_int_equal(ts_noise_respond(s_priv, msg1, sizeof(msg1), NULL, msg2, &server, &err),
                     APR_SUCCESS);
    ts_noise_handshake_wipe(&hs);
    memset(&env, 0, sizeof(env));
    env.dispatch = conn_dispatch;
    assert_int_equal(ts_conn_create(&the_conn, &server, &env, &err), APR_SUCCESS);
    /* Without the flag the output is bare records (the server's SETTINGS). */
    assert_int_equal(ts_conn_pending(the_conn, &out, &len, &err), APR_SUCCESS);
    assert_true(len > 3);
    assert_int_equal(out[0], TS_FRAME_TYPE_RECORD);
    ts_conn_destroy(the_conn);
    the_conn = NULL;
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_rfc_example),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_header_build),
        cmocka_unit_test(test_close_build),
        cmocka_unit_test(test_reader_rfc_examples),
        cmocka_unit_test(test_reader_extended_lengths),
        cmocka_unit_test(test_reader_fragmentation_every_chunking),
        cmocka_unit_test(test_reader_pong_replaced),
        cmocka_unit_test(test_reader_close),
        cmocka_unit_test(test_reader_malformed),
        cmocka_unit_test(test_reader_fragment_misuse),
        cmocka_unit_test(test_reader_custom_cap),
        cmocka_unit_test(test_conn_ws_request),
        cmocka_unit_test(test_conn_ws_client_close),
        cmocka_unit_test(test_conn_ws_protocol_errors),
        cmocka_unit_test(test_conn_ws_bad_record_kills),
        cmocka_unit_test(test_conn_ws_goaway_ends_with_close),
        cmocka_unit_test(test_conn_native_unchanged),
    };

    if (sodium_init() < 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
