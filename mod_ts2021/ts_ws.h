/* ts_ws.h: RFC 6455 WebSocket framing, server side, for the /ts2021 WebSocket carrier (transport
 * spec 2.6): a streaming reader of masked client frames, unmasked frame writing, the accept key. */
#ifndef TS_WS_H
#define TS_WS_H

#include <apr_errno.h>
#include <stddef.h>
#include <stdint.h>

#define TS_WS_GUID            "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define TS_WS_KEY_LEN         24            /* Sec-WebSocket-Key: base64 of 16 bytes */
#define TS_WS_ACCEPT_LEN      28            /* Sec-WebSocket-Accept: base64 of a SHA-1 */

#define TS_WS_OP_CONTINUATION 0x0
#define TS_WS_OP_TEXT         0x1
#define TS_WS_OP_BINARY       0x2
#define TS_WS_OP_CLOSE        0x8
#define TS_WS_OP_PING         0x9
#define TS_WS_OP_PONG         0xA

#define TS_WS_CLOSE_NORMAL       1000
#define TS_WS_CLOSE_GOING_AWAY   1001
#define TS_WS_CLOSE_PROTOCOL     1002
#define TS_WS_CLOSE_UNSUPPORTED  1003     /* e.g. a text message on a binary-only carrier */
#define TS_WS_CLOSE_NO_STATUS    1005     /* never on the wire: a close without a code */
#define TS_WS_CLOSE_INVALID_DATA 1007
#define TS_WS_CLOSE_POLICY       1008
#define TS_WS_CLOSE_TOO_BIG      1009
#define TS_WS_CLOSE_INTERNAL     1011

#define TS_WS_MAX_CONTROL     125           /* payload of a control frame */
#define TS_WS_CLOSE_REASON_MAX (TS_WS_MAX_CONTROL - 2)
#define TS_WS_CLIENT_HDR_MAX  14            /* 2 + 8 (length) + 4 (mask) */
#define TS_WS_SERVER_HDR_MAX  10            /* 2 + 8 (length), never masked */
#define TS_WS_CONTROL_FRAME_MAX (2 + TS_WS_MAX_CONTROL)
/* Our cap on one client frame's payload: the reference client sends one Noise record
 * (at most 4096 bytes) per message, so this leaves room without inviting abuse. */
#define TS_WS_DEFAULT_MAX_FRAME (64u << 10)

/* ---- the opening handshake ---- */

/* 1 if key is what RFC 6455 4.1 asks for: standard base64 of exactly 16 bytes. */
int ts_ws_key_valid(const char *key);

/* Sec-WebSocket-Accept for key: base64(SHA-1(key || GUID)), NUL-terminated. */
void ts_ws_accept(char out[TS_WS_ACCEPT_LEN + 1], const char *key);

/* ---- writing (server frames: FIN set, never masked) ---- */

/* Header size for a payload of len bytes: 2, 4 or 10. */
size_t ts_ws_header_len(uint64_t len);

/* Writes a final frame's header for opcode and len; returns its size. */
size_t ts_ws_header_build(uint8_t out[TS_WS_SERVER_HDR_MAX], uint8_t opcode, uint64_t len);

/* A close frame: code (TS_WS_CLOSE_NO_STATUS: empty body) and an optional reason of at most
 * TS_WS_CLOSE_REASON_MAX bytes (longer ones are cut). Needs cap >= TS_WS_CONTROL_FRAME_MAX
 * or the exact size; returns the frame size, 0 if it does not fit. */
size_t ts_ws_close_build(uint8_t *out, size_t cap, uint16_t code, const char *reason);

/* ---- reading (client frames) ---- */

/* One endpoint's inbound state: the frame being parsed, an open fragmented message, and the
 * one control frame it owes the peer (a pong or a close). Fields are private. */
typedef struct ts_ws {
    size_t max_frame;
    uint8_t hdr[TS_WS_CLIENT_HDR_MAX];
    size_t hdr_have, hdr_need;
    uint8_t opcode;
    int fin;
    uint8_t mask[4];
    uint64_t remaining, offset;      /* of the current frame's payload */
    int in_payload;
    int in_message;                  /* a binary message awaits its continuation frames */
    uint8_t ctl[TS_WS_MAX_CONTROL];  /* a control frame's payload, being collected */
    size_t ctl_len;
    uint8_t reply[TS_WS_CONTROL_FRAME_MAX];
    size_t reply_len;
    int closed;                      /* close received (APR_EOF) or failed */
    apr_status_t failed;             /* sticky fatal status */
    const char *errmsg;
    uint16_t close_code;             /* received (after APR_EOF) or sent (after a failure) */
} ts_ws_t;

/* max_frame: payload cap per frame (0: TS_WS_DEFAULT_MAX_FRAME). */
void ts_ws_init(ts_ws_t *ws, size_t max_frame);

/* Consumes client bytes. Binary payload, unmasked and concatenated across frames and
 * messages, goes to out (up to cap bytes, *outlen of them). It stops early when out is full
 * or a control reply was queued; call again with the rest (in + *used). Returns:
 *   APR_SUCCESS  continue (take the reply first, see ts_ws_reply);
 *   APR_EOF      the peer closed; the echo of its close is queued; *outlen bytes before it
 *                are still valid data; nothing more is read;
 *   APR_EINVAL   protocol error (a close frame with the code is queued, *errmsg says why);
 *                sticky, like APR_EOF. */
apr_status_t ts_ws_recv(ts_ws_t *ws, const uint8_t *in, size_t len, size_t *used,
                        uint8_t *out, size_t cap, size_t *outlen, const char **errmsg);

/* The control frame owed to the peer (a pong, or the close), 0 if none; taking it clears it.
 * A pong not taken before the next ping is replaced (RFC 6455 5.5.3 allows that). */
size_t ts_ws_reply(ts_ws_t *ws, uint8_t out[TS_WS_CONTROL_FRAME_MAX]);

/* 1 once a close was received or a failure queued one: the reader is done. */
int ts_ws_closed(const ts_ws_t *ws);

/* The code received in the peer's close, or the one queued for a failure. */
uint16_t ts_ws_close_code(const ts_ws_t *ws);

#endif
