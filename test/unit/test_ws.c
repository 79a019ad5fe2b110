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

#include <sodium.h>

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
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
