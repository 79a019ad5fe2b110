/* ts_frame.c: TS2021 frames on the byte stream after the 101: headers, error frames, records
 * (sealing with 4077-byte splitting, and a bounded incremental reader), and the early payload. */
#include "ts_frame.h"
#include "ts_crypto.h"
#include "ts_util.h"

#include <sodium.h>
#include <string.h>

static apr_status_t fail_with(const char **errmsg, apr_status_t rv, const char *text)
{
    if (errmsg) *errmsg = text;
    return rv;
}

/* ---- headers and error frames ---- */

void ts_frame_header_build(uint8_t out[TS_FRAME_HDR_LEN], uint8_t type, uint16_t len)
{
    out[0] = type;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
}

void ts_frame_header_parse(const uint8_t in[TS_FRAME_HDR_LEN], uint8_t *type, uint16_t *len)
{
    *type = in[0];
    *len = (uint16_t)((in[1] << 8) | in[2]);
}

apr_status_t ts_frame_error_build(uint8_t *out, size_t cap, const char *text, size_t *outlen)
{
    size_t len = strlen(text);

    *outlen = 0;
    if (len > TS_FRAME_ERROR_TEXT_MAX || cap < TS_FRAME_HDR_LEN + len) return APR_EINVAL;
    ts_frame_header_build(out, TS_FRAME_TYPE_ERROR, (uint16_t)len);
    memcpy(out + TS_FRAME_HDR_LEN, text, len);
    *outlen = TS_FRAME_HDR_LEN + len;
    return APR_SUCCESS;
}

apr_status_t ts_frame_error_parse(const uint8_t *in, size_t len, const uint8_t **text,
                                  size_t *textlen, size_t *framelen)
{
    uint8_t type;
    uint16_t tlen;

    if (len < 1) return APR_INCOMPLETE;
    if (in[0] != TS_FRAME_TYPE_ERROR) return APR_NOTFOUND;
    if (len < TS_FRAME_HDR_LEN) return APR_INCOMPLETE;
    ts_frame_header_parse(in, &type, &tlen);
    if (len < (size_t)TS_FRAME_HDR_LEN + tlen) return APR_INCOMPLETE;
    *text = in + TS_FRAME_HDR_LEN;
    *textlen = tlen;
    *framelen = (size_t)TS_FRAME_HDR_LEN + tlen;
    return APR_SUCCESS;
}

/* ---- writing records ---- */

size_t ts_frame_sealed_len(size_t len)
{
    size_t records = (len + TS_FRAME_MAX_PLAINTEXT - 1) / TS_FRAME_MAX_PLAINTEXT;

    return len + records * TS_FRAME_RECORD_OVERHEAD;
}

apr_status_t ts_frame_seal_record(ts_noise_cipher_t *tx, uint8_t *out, size_t cap,
                                  const uint8_t *pt, size_t len, size_t *outlen,
                                  const char **errmsg)
{
    apr_status_t rv;

    *outlen = 0;
    if (len > TS_FRAME_MAX_PLAINTEXT) {
        return fail_with(errmsg, APR_EINVAL, "record plaintext longer than 4077 bytes");
    }
    if (cap < len + TS_FRAME_RECORD_OVERHEAD) {
        return fail_with(errmsg, APR_EINVAL, "output buffer too small for the record");
    }
    rv = ts_noise_cipher_seal(tx, out + TS_FRAME_HDR_LEN, pt, len, errmsg);
    if (rv != APR_SUCCESS) return rv;
    ts_frame_header_build(out, TS_FRAME_TYPE_RECORD, (uint16_t)(len + TS_NOISE_TAG_LEN));
    *outlen = len + TS_FRAME_RECORD_OVERHEAD;
    return APR_SUCCESS;
}

apr_status_t ts_frame_seal(ts_noise_cipher_t *tx, uint8_t *out, size_t cap, const uint8_t *pt,
                           size_t len, size_t *outlen, const char **errmsg)
{
    size_t pos = 0, off = 0, n;
    apr_status_t rv;

    *outlen = 0;
    /* Checked up front so a small buffer never leaves the counter advanced for nothing. */
    if (cap < ts_frame_sealed_len(len)) {
        return fail_with(errmsg, APR_EINVAL, "output buffer too small for the records");
    }
    while (off < len) {
        size_t chunk = len - off;
        if (chunk > TS_FRAME_MAX_PLAINTEXT) chunk = TS_FRAME_MAX_PLAINTEXT;
        rv = ts_frame_seal_record(tx, out + pos, cap - pos, pt + off, chunk, &n, errmsg);
        if (rv != APR_SUCCESS) return rv;
        pos += n;
        off += chunk;
    }
    *outlen = pos;
    return APR_SUCCESS;
}

/* ---- reading records ---- */

void ts_frame_reader_init(ts_frame_reader_t *r, ts_noise_cipher_t *rx)
{
    r->rx = rx;
    r->have = 0;
    r->need = TS_FRAME_HDR_LEN;
    r->failed = APR_SUCCESS;
    r->errmsg = NULL;
}

/* Fatal for the connection: no resynchronisation, and the receive key is destroyed. */
static apr_status_t reader_fail(ts_frame_reader_t *r, apr_status_t rv, const char *text,
                                const char **errmsg)
{
    r->failed = rv;
    r->errmsg = text;
    ts_noise_cipher_wipe(r->rx);
    sodium_memzero(r->frame, sizeof(r->frame));
    r->have = 0;
    return fail_with(errmsg, rv, text);
}

/* The header decides the body size; oversize is refused before any body byte is read. */
static apr_status_t reader_header(ts_frame_reader_t *r, const char **errmsg)
{
    uint8_t type;
    uint16_t len;

    ts_frame_header_parse(r->frame, &type, &len);
    if ((size_t)TS_FRAME_HDR_LEN + len > TS_FRAME_MAX_LEN) {
        return reader_fail(r, APR_EINVAL, "record longer than 4096 bytes", errmsg);
    }
    if (type != TS_FRAME_TYPE_RECORD) {
        return reader_fail(r, APR_EINVAL, "frame type is not a transport record", errmsg);
    }
    if (len < TS_NOISE_TAG_LEN) {
        return reader_fail(r, APR_EINVAL, "record shorter than its tag", errmsg);
    }
    r->need = TS_FRAME_HDR_LEN + (size_t)len;
    return APR_SUCCESS;
}

/* A complete frame is buffered: open it in place. */
static apr_status_t reader_open(ts_frame_reader_t *r, size_t *ptlen, const char **errmsg)
{
    size_t clen = r->need - TS_FRAME_HDR_LEN;
    const char *why = NULL;
    apr_status_t rv;

    rv = ts_noise_cipher_open(r->rx, r->frame + TS_FRAME_HDR_LEN, r->frame + TS_FRAME_HDR_LEN,
                              clen, &why);
    if (rv != APR_SUCCESS) return reader_fail(r, rv, why, errmsg);
    r->have = 0;
    r->need = TS_FRAME_HDR_LEN;
    *ptlen = clen - TS_NOISE_TAG_LEN;
    return APR_SUCCESS;
}

apr_status_t ts_frame_reader_feed(ts_frame_reader_t *r, const uint8_t *in, size_t len,
                                  size_t *used, const uint8_t **pt, size_t *ptlen,
                                  const char **errmsg)
{
    size_t off = 0, take, n;
    apr_status_t rv;

    *used = 0;
    *pt = NULL;
    *ptlen = 0;
    if (r->failed != APR_SUCCESS) return fail_with(errmsg, r->failed, r->errmsg);
    for (;;) {
        take = r->need - r->have;
        if (take > len - off) take = len - off;
        if (take) memcpy(r->frame + r->have, in + off, take);
        r->have += take;
        off += take;
        *used = off;
        if (r->have < r->need) return APR_INCOMPLETE;
        if (r->need == TS_FRAME_HDR_LEN) {
            if ((rv = reader_header(r, errmsg)) != APR_SUCCESS) return rv;
            continue;
        }
        if ((rv = reader_open(r, &n, errmsg)) != APR_SUCCESS) return rv;
        /* Empty records are legal and carry nothing for the stream. */
        if (n == 0) continue;
        *pt = r->frame + TS_FRAME_HDR_LEN;
        *ptlen = n;
        return APR_SUCCESS;
    }
}

int ts_frame_reader_at_boundary(const ts_frame_reader_t *r)
{
    return r->failed == APR_SUCCESS && r->have == 0;
}

void ts_frame_reader_wipe(ts_frame_reader_t *r)
{
    sodium_memzero(r, sizeof(*r));
}

/* ---- early payload ---- */

void ts_frame_early_payload_build(uint8_t out[TS_FRAME_EARLY_PLAIN_LEN],
                                  const uint8_t chal_pub[TS_NOISE_KEY_LEN])
{
    static const char head[] = "{\"nodeKeyChallenge\":\"chalpub:";
    static const char tail[] = "\"}";
    char hex[2 * TS_NOISE_KEY_LEN + 1];
    uint8_t *p = out;

    memcpy(p, TS_FRAME_EARLY_MAGIC, TS_FRAME_EARLY_MAGIC_LEN);
    p += TS_FRAME_EARLY_MAGIC_LEN;
    *p++ = 0;
    *p++ = 0;
    *p++ = 0;
    *p++ = TS_FRAME_EARLY_JSON_LEN;
    ts_hex_encode(hex, chal_pub, TS_NOISE_KEY_LEN);
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    memcpy(p, hex, 2 * TS_NOISE_KEY_LEN);
    p += 2 * TS_NOISE_KEY_LEN;
    memcpy(p, tail, sizeof(tail) - 1);
}

apr_status_t ts_frame_early_payload_seal(ts_noise_cipher_t *tx, uint16_t version,
                                         const uint8_t *chal_priv, uint8_t *out, size_t cap,
                                         size_t *outlen, const char **errmsg)
{
    /* The reference's three writes; any split would do, this one matches the vectors. */
    static const size_t parts[3] = { TS_FRAME_EARLY_MAGIC_LEN, 4, TS_FRAME_EARLY_JSON_LEN };
    uint8_t priv[TS_NOISE_KEY_LEN], pub[TS_NOISE_KEY_LEN], plain[TS_FRAME_EARLY_PLAIN_LEN];
    size_t i, off = 0, pos = 0, n;
    apr_status_t rv = APR_SUCCESS;
    int bad;

    *outlen = 0;
    /* Older clients would hand the magic to HTTP/2 and fail. */
    if (version < TS_FRAME_EARLY_MIN_VERSION) return APR_SUCCESS;
    if (cap < TS_FRAME_EARLY_SEALED_LEN) {
        return fail_with(errmsg, APR_EINVAL, "output buffer too small for the early payload");
    }
    if (chal_priv) {
        memcpy(priv, chal_priv, sizeof(priv));
        bad = ts_crypto_x25519_public(pub, priv);
    } else {
        bad = ts_crypto_x25519_keypair(priv, pub);
    }
    sodium_memzero(priv, sizeof(priv));
    if (bad) return fail_with(errmsg, APR_EGENERAL, "cannot make the challenge key");
    ts_frame_early_payload_build(plain, pub);
    for (i = 0; i < 3 && rv == APR_SUCCESS; i++) {
        rv = ts_frame_seal_record(tx, out + pos, cap - pos, plain + off, parts[i], &n, errmsg);
        pos += n;
        off += parts[i];
    }
    if (rv == APR_SUCCESS) *outlen = pos;
    return rv;
}

apr_status_t ts_frame_early_payload_detect(const uint8_t *in, size_t len, size_t *total)
{
    size_t cmp = len < TS_FRAME_EARLY_MAGIC_LEN ? len : TS_FRAME_EARLY_MAGIC_LEN;
    uint32_t jlen;

    *total = 0;
    if (cmp && memcmp(in, TS_FRAME_EARLY_MAGIC, cmp) != 0) return APR_NOTFOUND;
    if (len < TS_FRAME_EARLY_HDR_LEN) return APR_INCOMPLETE;
    jlen = ((uint32_t)in[5] << 24) | ((uint32_t)in[6] << 16) | ((uint32_t)in[7] << 8) | in[8];
    if (jlen > TS_FRAME_EARLY_JSON_MAX) return APR_EINVAL;
    *total = TS_FRAME_EARLY_HDR_LEN + (size_t)jlen;
    return APR_SUCCESS;
}
