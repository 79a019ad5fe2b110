/* ts_mapframe.c: the map frame codec: LE32 length + zstd frame (or raw JSON), with one reusable
 * ZSTD_CCtx per encoder; the decoder accepts frames with or without a content size. */
#include "ts_mapframe.h"

#include <apr_strings.h>
#include <string.h>
#include <zstd.h>

struct ts_mapframe_enc {
    ZSTD_CCtx *cctx;
};

static apr_status_t enc_cleanup(void *data)
{
    ts_mapframe_enc_t *enc = data;

    ZSTD_freeCCtx(enc->cctx);
    enc->cctx = NULL;
    return APR_SUCCESS;
}

apr_status_t ts_mapframe_enc_create(ts_mapframe_enc_t **encp, apr_pool_t *p, int level)
{
    ts_mapframe_enc_t *enc = apr_pcalloc(p, sizeof(*enc));

    enc->cctx = ZSTD_createCCtx();
    if (!enc->cctx) return APR_ENOMEM;
    /* The clients' decoder verifies the checksum when present; both recorded servers set it. */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(enc->cctx, ZSTD_c_compressionLevel,
                                            level > 0 ? level : TS_MAPFRAME_LEVEL))
        || ZSTD_isError(ZSTD_CCtx_setParameter(enc->cctx, ZSTD_c_checksumFlag, 1))
        || ZSTD_isError(ZSTD_CCtx_setParameter(enc->cctx, ZSTD_c_contentSizeFlag, 1))) {
        ZSTD_freeCCtx(enc->cctx);
        return APR_EINVAL;
    }
    apr_pool_cleanup_register(p, enc, enc_cleanup, apr_pool_cleanup_null);
    *encp = enc;
    return APR_SUCCESS;
}

size_t ts_mapframe_bound(size_t len, int compress)
{
    return TS_MAPFRAME_HDR_LEN + (compress ? ZSTD_compressBound(len) : len);
}

static void put_le32(uint8_t *out, uint32_t v)
{
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)(v >> 16);
    out[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *in)
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16
           | (uint32_t)in[3] << 24;
}

apr_status_t ts_mapframe_encode_into(ts_mapframe_enc_t *enc, const char *json, size_t len,
                                     int compress, uint8_t *out, size_t cap, size_t *outlen,
                                     const char **err)
{
    size_t n;

    if (len > TS_MAPFRAME_MAX_JSON) {
        *err = "map response too large to frame";
        return APR_EINVAL;
    }
    if (cap < TS_MAPFRAME_HDR_LEN) {
        *err = "frame buffer too small";
        return APR_EINVAL;
    }
    if (!compress) {
        if (cap - TS_MAPFRAME_HDR_LEN < len) {
            *err = "frame buffer too small";
            return APR_EINVAL;
        }
        memcpy(out + TS_MAPFRAME_HDR_LEN, json, len);
        n = len;
    }
    else {
        if (!enc) {
            *err = "no compression context";
            return APR_EINVAL;
        }
        n = ZSTD_compress2(enc->cctx, out + TS_MAPFRAME_HDR_LEN, cap - TS_MAPFRAME_HDR_LEN,
                           json, len);
        if (ZSTD_isError(n)) {
            *err = ZSTD_getErrorName(n);
            return APR_EGENERAL;
        }
    }
    put_le32(out, (uint32_t)n);
    *outlen = TS_MAPFRAME_HDR_LEN + n;
    return APR_SUCCESS;
}

size_t ts_mapframe_zbound(size_t len)
{
    return ZSTD_compressBound(len);
}

apr_status_t ts_mapframe_zstd_into(ts_mapframe_enc_t *enc, const void *src, size_t len,
                                   uint8_t *out, size_t cap, size_t *outlen, const char **err)
{
    size_t n = ZSTD_compress2(enc->cctx, out, cap, src, len);

    if (ZSTD_isError(n)) {
        *err = ZSTD_getErrorName(n);
        return APR_EGENERAL;
    }
    *outlen = n;
    return APR_SUCCESS;
}

apr_status_t ts_mapframe_encode(ts_mapframe_enc_t *enc, apr_pool_t *p, const char *json,
                                size_t len, int compress, uint8_t **out, size_t *outlen,
                                const char **err)
{
    size_t cap = ts_mapframe_bound(len, compress);
    uint8_t *buf = apr_palloc(p, cap);
    apr_status_t rv = ts_mapframe_encode_into(enc, json, len, compress, buf, cap, outlen, err);

    if (rv == APR_SUCCESS) *out = buf;
    return rv;
}

/* Frames without a content size (streaming encoders) are decoded incrementally up to max. */
static apr_status_t decode_stream(ZSTD_DCtx *d, apr_pool_t *p, const uint8_t *src, size_t n,
                                  size_t max, char **json, size_t *json_len, const char **err)
{
    ZSTD_inBuffer in = { src, n, 0 };
    ZSTD_outBuffer out = { NULL, 0, 0 };
    size_t cap = n * 4 + 64, ret;

    for (;;) {
        char *nb;
        if (cap > max + 1) cap = max + 1;
        nb = apr_palloc(p, cap + 1);
        if (out.pos) memcpy(nb, out.dst, out.pos);
        out.dst = nb;
        out.size = cap;
        ret = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(ret)) {
            *err = ZSTD_getErrorName(ret);
            return APR_EINVAL;
        }
        if (out.pos > max) {
            *err = "map frame decodes to more than the limit";
            return APR_EINVAL;
        }
        if (ret == 0 && in.pos == in.size) break;    /* the last frame is complete */
        if (ret == 0) continue;                      /* the next frame */
        if (in.pos == in.size && out.pos < out.size) {
            *err = "truncated zstd frame";
            return APR_EINVAL;
        }
        cap *= 2;
    }
    ((char *)out.dst)[out.pos] = '\0';
    *json = out.dst;
    *json_len = out.pos;
    return APR_SUCCESS;
}

/* One or more whole frames (ZSTD_decompressDCtx and ZSTD_decompressStream both go on across
 * frame boundaries); their outputs concatenated. */
static apr_status_t decode_zstd(apr_pool_t *p, const uint8_t *src, size_t n, size_t max,
                                char **json, size_t *json_len, const char **err)
{
    unsigned long long size, total = 0;
    int unknown = 0;
    ZSTD_DCtx *d;
    apr_status_t rv = APR_SUCCESS;
    size_t off = 0, got;

    if (!n) {
        *err = "empty zstd payload";
        return APR_EINVAL;
    }
    while (off < n) {
        size_t fsize = ZSTD_findFrameCompressedSize(src + off, n - off);
        if (ZSTD_isError(fsize)) {
            *err = "payload is not a sequence of whole zstd frames";
            return APR_EINVAL;
        }
        size = ZSTD_getFrameContentSize(src + off, n - off);
        if (size == ZSTD_CONTENTSIZE_ERROR) {
            *err = "bad zstd frame header";
            return APR_EINVAL;
        }
        if (size == ZSTD_CONTENTSIZE_UNKNOWN) unknown = 1;
        else total += size;
        if (total > max) {
            *err = "map frame decodes to more than the limit";
            return APR_EINVAL;
        }
        off += fsize;
    }
    if (!(d = ZSTD_createDCtx())) return APR_ENOMEM;
    if (unknown) {
        rv = decode_stream(d, p, src, n, max, json, json_len, err);
    }
    else {
        char *buf = apr_palloc(p, (size_t)total + 1);
        got = ZSTD_decompressDCtx(d, buf, (size_t)total, src, n);
        if (ZSTD_isError(got) || got != total) {
            *err = ZSTD_isError(got) ? ZSTD_getErrorName(got) : "zstd content size mismatch";
            rv = APR_EINVAL;
        }
        else {
            buf[got] = '\0';
            *json = buf;
            *json_len = got;
        }
    }
    ZSTD_freeDCtx(d);
    return rv;
}

apr_status_t ts_mapframe_decode(apr_pool_t *p, const uint8_t *in, size_t len, int compressed,
                                size_t max_json, char **json, size_t *json_len,
                                size_t *consumed, const char **err)
{
    uint32_t n;
    apr_status_t rv;

    if (!max_json) max_json = TS_MAPFRAME_MAX_JSON;
    if (len < TS_MAPFRAME_HDR_LEN) return APR_INCOMPLETE;
    n = get_le32(in);
    if (len - TS_MAPFRAME_HDR_LEN < n) return APR_INCOMPLETE;
    if (!compressed) {
        if (n > max_json) {
            *err = "map frame larger than the limit";
            return APR_EINVAL;
        }
        *json = apr_pstrmemdup(p, (const char *)in + TS_MAPFRAME_HDR_LEN, n);
        *json_len = n;
        rv = APR_SUCCESS;
    }
    else {
        rv = decode_zstd(p, in + TS_MAPFRAME_HDR_LEN, n, max_json, json, json_len, err);
    }
    if (rv == APR_SUCCESS) *consumed = TS_MAPFRAME_HDR_LEN + (size_t)n;
    return rv;
}
