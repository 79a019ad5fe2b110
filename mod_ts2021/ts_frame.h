/* ts_frame.h: the TS2021 frame layer (transport spec 3.5 and 2.5): 3-byte headers, error frames,
 * encrypted records and a streaming record reader, and the early payload. Sans-I/O: bytes in, bytes out. */
#ifndef TS_FRAME_H
#define TS_FRAME_H

#include <apr_errno.h>
#include <stddef.h>
#include <stdint.h>

#include "ts_noise.h"

#define TS_FRAME_TYPE_INITIATION 0x01
#define TS_FRAME_TYPE_RESPONSE   0x02
#define TS_FRAME_TYPE_ERROR      0x03
#define TS_FRAME_TYPE_RECORD     0x04

#define TS_FRAME_HDR_LEN         3
#define TS_FRAME_MAX_LEN         4096                                        /* header + body */
#define TS_FRAME_MAX_CIPHERTEXT  (TS_FRAME_MAX_LEN - TS_FRAME_HDR_LEN)        /* 4093 */
#define TS_FRAME_MAX_PLAINTEXT   (TS_FRAME_MAX_CIPHERTEXT - TS_NOISE_TAG_LEN) /* 4077 */
#define TS_FRAME_RECORD_OVERHEAD (TS_FRAME_HDR_LEN + TS_NOISE_TAG_LEN)        /* 19 */

/* Our own bound on error texts; the wire would allow 65535. */
#define TS_FRAME_ERROR_TEXT_MAX  256

#define TS_FRAME_EARLY_MAGIC       "\xff\xff\xff" "TS"
#define TS_FRAME_EARLY_MAGIC_LEN   5
#define TS_FRAME_EARLY_HDR_LEN     9            /* magic + BE32 length */
#define TS_FRAME_EARLY_MIN_VERSION 49
#define TS_FRAME_EARLY_JSON_MAX    (10u << 20)  /* clients refuse more */
#define TS_FRAME_EARLY_JSON_LEN    95           /* {"nodeKeyChallenge":"chalpub:<64 hex>"} */
#define TS_FRAME_EARLY_PLAIN_LEN   (TS_FRAME_EARLY_HDR_LEN + TS_FRAME_EARLY_JSON_LEN)
/* Three records, as the reference writes them: magic, length, JSON. */
#define TS_FRAME_EARLY_SEALED_LEN  (3 * TS_FRAME_RECORD_OVERHEAD + TS_FRAME_EARLY_PLAIN_LEN)

/* Status codes as in ts_noise.h, plus APR_INCOMPLETE (more input needed) and
 * APR_NOTFOUND (no early payload at the start of the stream). */

/* ---- headers and error frames ---- */

void ts_frame_header_build(uint8_t out[TS_FRAME_HDR_LEN], uint8_t type, uint16_t len);
void ts_frame_header_parse(const uint8_t in[TS_FRAME_HDR_LEN], uint8_t *type, uint16_t *len);

/* 03 || BE16 len || text. Texts longer than TS_FRAME_ERROR_TEXT_MAX or cap are refused. */
apr_status_t ts_frame_error_build(uint8_t *out, size_t cap, const char *text, size_t *outlen);

/* Client side, where message 2 is expected: APR_SUCCESS with the text (not NUL-terminated)
 * and the frame's total size, APR_INCOMPLETE, or APR_NOTFOUND when it is no error frame. */
apr_status_t ts_frame_error_parse(const uint8_t *in, size_t len, const uint8_t **text,
                                  size_t *textlen, size_t *framelen);

/* ---- writing records ---- */

/* Bytes ts_frame_seal produces for len plaintext bytes (0 for 0). */
size_t ts_frame_sealed_len(size_t len);

/* One record of up to TS_FRAME_MAX_PLAINTEXT bytes (0 allowed), written to out. */
apr_status_t ts_frame_seal_record(ts_noise_cipher_t *tx, uint8_t *out, size_t cap,
                                  const uint8_t *pt, size_t len, size_t *outlen,
                                  const char **errmsg);

/* A write of any length, split into full records and one shorter last one; nothing for len 0.
 * On failure the output is unusable and the connection must be closed. */
apr_status_t ts_frame_seal(ts_noise_cipher_t *tx, uint8_t *out, size_t cap, const uint8_t *pt,
                           size_t len, size_t *outlen, const char **errmsg);

/* ---- reading records ---- */

/* Holds at most one frame; decrypts in place. Fields are private. */
typedef struct ts_frame_reader {
    ts_noise_cipher_t *rx;
    size_t have;                 /* bytes of the current frame buffered */
    size_t need;                 /* its total size once the header is in, else the header size */
    apr_status_t failed;         /* sticky fatal status */
    const char *errmsg;
    uint8_t frame[TS_FRAME_MAX_LEN];
} ts_frame_reader_t;

/* The reader uses (and on a fatal error wipes) rx, which must outlive it. */
void ts_frame_reader_init(ts_frame_reader_t *r, ts_noise_cipher_t *rx);

/* Consumes input until one non-empty record is decrypted: APR_SUCCESS with *pt, *ptlen (valid
 * until the next call) and *used bytes consumed; call again with the rest. APR_INCOMPLETE when
 * all len bytes were consumed without completing one. Anything else is fatal and sticky. */
apr_status_t ts_frame_reader_feed(ts_frame_reader_t *r, const uint8_t *in, size_t len,
                                  size_t *used, const uint8_t **pt, size_t *ptlen,
                                  const char **errmsg);

/* True when no partial frame is buffered: EOF here is a clean end, elsewhere a truncation. */
int ts_frame_reader_at_boundary(const ts_frame_reader_t *r);

void ts_frame_reader_wipe(ts_frame_reader_t *r);

/* ---- early payload ---- */

/* The plaintext: magic, BE32 length, {"nodeKeyChallenge":"chalpub:<hex>"}. */
void ts_frame_early_payload_build(uint8_t out[TS_FRAME_EARLY_PLAIN_LEN],
                                  const uint8_t chal_pub[TS_NOISE_KEY_LEN]);

/* Seals the early payload for a client of this version into out: nothing below
 * TS_FRAME_EARLY_MIN_VERSION. chal_priv is the challenge key (kept by the caller if it wants to
 * use it later); NULL makes a fresh one and forgets it. */
apr_status_t ts_frame_early_payload_seal(ts_noise_cipher_t *tx, uint16_t version,
                                         const uint8_t *chal_priv, uint8_t *out, size_t cap,
                                         size_t *outlen, const char **errmsg);

/* Client side, on the first plaintext bytes: APR_SUCCESS with *total = 9 + JSON length,
 * APR_NOTFOUND (no magic: the bytes are HTTP/2), APR_INCOMPLETE (fewer than 9 bytes),
 * APR_EINVAL (length above the client limit). */
apr_status_t ts_frame_early_payload_detect(const uint8_t *in, size_t len, size_t *total);

#endif
