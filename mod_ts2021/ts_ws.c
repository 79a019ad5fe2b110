/* ts_ws.c: RFC 6455 framing for the server side of the WebSocket carrier: parses masked client
 * frames byte by byte into a binary stream plus control replies, writes unmasked frames. */
#include "ts_ws.h"

#include <apr_sha1.h>
#include <sodium.h>
#include <string.h>

/* ---- the opening handshake ---- */

int ts_ws_key_valid(const char *key)
{
    uint8_t raw[16 + 2];
    size_t n = 0;

    if (!key || strlen(key) != TS_WS_KEY_LEN) return 0;
    /* sodium's decoder is strict: alphabet, padding, no trailing bits. */
    if (sodium_base642bin(raw, sizeof(raw), key, TS_WS_KEY_LEN, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        return 0;
    }
    return n == 16;
}

void ts_ws_accept(char out[TS_WS_ACCEPT_LEN + 1], const char *key)
{
    apr_sha1_ctx_t ctx;
    unsigned char digest[APR_SHA1_DIGESTSIZE];

    apr_sha1_init(&ctx);
    apr_sha1_update(&ctx, key, (unsigned int)strlen(key));
    apr_sha1_update(&ctx, TS_WS_GUID, (unsigned int)strlen(TS_WS_GUID));
    apr_sha1_final(digest, &ctx);
    sodium_bin2base64(out, TS_WS_ACCEPT_LEN + 1, digest, sizeof(digest),
                      sodium_base64_VARIANT_ORIGINAL);
}

/* ---- writing ---- */

size_t ts_ws_header_len(uint64_t len)
{
    if (len < 126) return 2;
    return len <= 0xffff ? 4 : 10;
}

size_t ts_ws_header_build(uint8_t out[TS_WS_SERVER_HDR_MAX], uint8_t opcode, uint64_t len)
{
    size_t n = ts_ws_header_len(len), i;

    out[0] = 0x80 | (opcode & 0x0f);
    if (n == 2) {
        out[1] = (uint8_t)len;
        return n;
    }
    out[1] = n == 4 ? 126 : 127;
    for (i = n - 1; i >= 2; i--) {
        out[i] = (uint8_t)len;
        len >>= 8;
    }
    return n;
}

size_t ts_ws_close_build(uint8_t *out, size_t cap, uint16_t code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;

    if (code == TS_WS_CLOSE_NO_STATUS) rlen = 0;
    if (rlen > TS_WS_CLOSE_REASON_MAX) {
        rlen = TS_WS_CLOSE_REASON_MAX;
        /* Cut on a character boundary: the reason must stay UTF-8. */
        while (rlen > 0 && ((uint8_t)reason[rlen] & 0xc0) == 0x80) rlen--;
    }
    if (code == TS_WS_CLOSE_NO_STATUS) {
        if (cap < 2) return 0;
        ts_ws_header_build(out, TS_WS_OP_CLOSE, 0);
        return 2;
    }
    if (cap < 4 + rlen) return 0;
    ts_ws_header_build(out, TS_WS_OP_CLOSE, 2 + rlen);
    out[2] = (uint8_t)(code >> 8);
    out[3] = (uint8_t)code;
    if (rlen) memcpy(out + 4, reason, rlen);
    return 4 + rlen;
}

/* ---- reading ---- */

void ts_ws_init(ts_ws_t *ws, size_t max_frame)
{
    memset(ws, 0, sizeof(*ws));
    ws->max_frame = max_frame ? max_frame : TS_WS_DEFAULT_MAX_FRAME;
    ws->hdr_need = 2;
}

/* Every failure queues a close frame naming the problem, and sticks. */
static apr_status_t ws_fail(ts_ws_t *ws, uint16_t code, const char *why, const char **errmsg)
{
    ws->failed = APR_EINVAL;
    ws->errmsg = why;
    ws->closed = 1;
    ws->close_code = code;
    ws->reply_len = ts_ws_close_build(ws->reply, sizeof(ws->reply), code, why);
    *errmsg = why;
    return APR_EINVAL;
}

static int ws_is_control(uint8_t op)
{
    return (op & 0x8) != 0;
}

/* The first two header bytes: everything that can be refused before the payload arrives. */
static apr_status_t ws_header_start(ts_ws_t *ws, const char **errmsg)
{
    uint8_t op = ws->hdr[0] & 0x0f, len7 = ws->hdr[1] & 0x7f;

    if (ws->hdr[0] & 0x70) {
        return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "reserved bits set", errmsg);
    }
    if (op != TS_WS_OP_CONTINUATION && op != TS_WS_OP_TEXT && op != TS_WS_OP_BINARY
        && op != TS_WS_OP_CLOSE && op != TS_WS_OP_PING && op != TS_WS_OP_PONG) {
        return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "reserved opcode", errmsg);
    }
    if (!(ws->hdr[1] & 0x80)) {
        return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "unmasked client frame", errmsg);
    }
    ws->fin = ws->hdr[0] >> 7;
    if (ws_is_control(op)) {
        if (!ws->fin) return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "fragmented control frame", errmsg);
        if (len7 > TS_WS_MAX_CONTROL) {
            return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "control frame over 125 bytes", errmsg);
        }
    }
    else if (op == TS_WS_OP_CONTINUATION && !ws->in_message) {
        return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "continuation frame outside a message", errmsg);
    }
    else if (op != TS_WS_OP_CONTINUATION && ws->in_message) {
        return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "new message inside a fragmented one", errmsg);
    }
    else if (op == TS_WS_OP_TEXT) {
        return ws_fail(ws, TS_WS_CLOSE_UNSUPPORTED, "text frame (binary only)", errmsg);
    }
    ws->opcode = op;
    ws->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return APR_SUCCESS;
}

/* The whole header: the extended length (minimal encoding, RFC 6455 5.2) and the mask. */
static apr_status_t ws_header_end(ts_ws_t *ws, const char **errmsg)
{
    uint8_t len7 = ws->hdr[1] & 0x7f;
    const uint8_t *p = ws->hdr + 2;
    uint64_t len = len7;
    size_t i, ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;

    if (ext) {
        for (len = 0, i = 0; i < ext; i++) len = (len << 8) | p[i];
        p += ext;
        if (len >> 63) {
            return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "frame length with the top bit set", errmsg);
        }
        if (len < (ext == 2 ? 126u : 0x10000u)) {
            return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "frame length not minimally encoded",
                           errmsg);
        }
    }
    if (!ws_is_control(ws->opcode) && len > ws->max_frame) {
        return ws_fail(ws, TS_WS_CLOSE_TOO_BIG, "frame larger than the server accepts", errmsg);
    }
    memcpy(ws->mask, p, 4);
    ws->remaining = len;
    ws->offset = 0;
    ws->ctl_len = 0;
    ws->in_payload = 1;
    if (!ws_is_control(ws->opcode)) ws->in_message = !ws->fin;
    return APR_SUCCESS;
}

static void ws_unmask(ts_ws_t *ws, uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) dst[i] = src[i] ^ ws->mask[(ws->offset + i) & 3];
    ws->offset += n;
    ws->remaining -= n;
}

static int ws_close_code_valid(uint16_t code)
{
    if (code >= 3000 && code <= 4999) return 1;
    return code >= 1000 && code <= 1014 && code != 1004 && code != TS_WS_CLOSE_NO_STATUS
           && code != 1006;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int ws_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0, n, k;
    uint32_t cp, min;

    while (i < len) {
        uint8_t c = s[i];

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n >= len - i) return 0;
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += n + 1;
    }
    return 1;
}

static apr_status_t ws_close_received(ts_ws_t *ws, const char **errmsg)
{
    uint16_t code = TS_WS_CLOSE_NO_STATUS;

    if (ws->ctl_len == 1) {
        return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "close frame with a 1-byte body", errmsg);
    }
    if (ws->ctl_len >= 2) {
        code = (uint16_t)((ws->ctl[0] << 8) | ws->ctl[1]);
        if (!ws_close_code_valid(code)) {
            return ws_fail(ws, TS_WS_CLOSE_PROTOCOL, "invalid close code", errmsg);
        }
        if (!ws_utf8_valid(ws->ctl + 2, ws->ctl_len - 2)) {
            return ws_fail(ws, TS_WS_CLOSE_INVALID_DATA, "close reason is not UTF-8", errmsg);
        }
    }
    /* Echo the code (RFC 6455 5.5.1); the connection ends once it is sent. */
    ws->closed = 1;
    ws->close_code = code;
    ws->reply_len = ts_ws_close_build(ws->reply, sizeof(ws->reply), code, NULL);
    *errmsg = "closed by the client";
    return APR_EOF;
}

/* A control frame is complete: a ping owes a pong, a close ends the reader. */
static apr_status_t ws_control_done(ts_ws_t *ws, const char **errmsg)
{
    size_t n;

    if (ws->opcode == TS_WS_OP_CLOSE) return ws_close_received(ws, errmsg);
    if (ws->opcode == TS_WS_OP_PING) {
        n = ts_ws_header_build(ws->reply, TS_WS_OP_PONG, ws->ctl_len);
        memcpy(ws->reply + n, ws->ctl, ws->ctl_len);
        ws->reply_len = n + ws->ctl_len;
    }
    return APR_SUCCESS;
}

/* Takes header bytes; APR_INCOMPLETE while the header is not whole. */
static apr_status_t ws_take_header(ts_ws_t *ws, const uint8_t *in, size_t len, size_t *off,
                                   const char **errmsg)
{
    apr_status_t rv;

    for (;;) {
        size_t n = ws->hdr_need - ws->hdr_have;

        if (n > len - *off) n = len - *off;
        memcpy(ws->hdr + ws->hdr_have, in + *off, n);
        ws->hdr_have += n;
        *off += n;
        if (ws->hdr_have < ws->hdr_need) return APR_INCOMPLETE;
        if (ws->hdr_need > 2) return ws_header_end(ws, errmsg);
        if ((rv = ws_header_start(ws, errmsg)) != APR_SUCCESS) return rv;
    }
}

apr_status_t ts_ws_recv(ts_ws_t *ws, const uint8_t *in, size_t len, size_t *used,
                        uint8_t *out, size_t cap, size_t *outlen, const char **errmsg)
{
    size_t off = 0, n;
    apr_status_t rv = APR_SUCCESS;

    *used = 0;
    *outlen = 0;
    if (ws->failed != APR_SUCCESS) {
        *errmsg = ws->errmsg;
        return ws->failed;
    }
    if (ws->closed) return APR_EOF;
    for (;;) {
        if (!ws->in_payload) {
            if (off == len) break;
            rv = ws_take_header(ws, in, len, &off, errmsg);
            if (rv == APR_INCOMPLETE) break;
            if (rv != APR_SUCCESS) break;
        }
        if (ws->remaining > 0) {
            int control = ws_is_control(ws->opcode);
            size_t room = control ? sizeof(ws->ctl) - ws->ctl_len : cap - *outlen;

            n = len - off;
            if (n > ws->remaining) n = (size_t)ws->remaining;
            if (n > room) n = room;
            if (n == 0) break;
            ws_unmask(ws, control ? ws->ctl + ws->ctl_len : out + *outlen, in + off, n);
            if (control) ws->ctl_len += n;
            else *outlen += n;
            off += n;
            if (ws->remaining > 0) continue;
        }
        ws->in_payload = 0;
        ws->hdr_have = 0;
        ws->hdr_need = 2;
        if (!ws_is_control(ws->opcode)) continue;
        rv = ws_control_done(ws, errmsg);
        if (rv != APR_SUCCESS || ws->reply_len) break;
    }
    *used = off;
    return rv == APR_INCOMPLETE ? APR_SUCCESS : rv;
}

size_t ts_ws_reply(ts_ws_t *ws, uint8_t out[TS_WS_CONTROL_FRAME_MAX])
{
    size_t n = ws->reply_len;

    if (n) memcpy(out, ws->reply, n);
    ws->reply_len = 0;
    return n;
}

int ts_ws_closed(const ts_ws_t *ws)
{
    return ws->closed;
}

uint16_t ts_ws_close_code(const ts_ws_t *ws)
{
    return ws->close_code;
}
