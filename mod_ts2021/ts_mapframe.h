/* ts_mapframe.h: map response framing (control API 2.3): LE32 length + zstd frame(s)
 * of the JSON (or the raw JSON when the client asked for Compress ""), and a decoder for tests. */
#ifndef TS_MAPFRAME_H
#define TS_MAPFRAME_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <stddef.h>
#include <stdint.h>

#define TS_MAPFRAME_HDR_LEN   4
/* "fastest": maps are rebuilt often and are very repetitive, so level 1 already shrinks them
 * 5-10x; higher levels cost far more CPU per byte saved. */
#define TS_MAPFRAME_LEVEL     1
/* Largest JSON we frame or decode by default (the client's own decode cap is 4 MiB for tsp,
 * far more for tailscaled; a tailnet of 10k nodes stays well below this). */
#define TS_MAPFRAME_MAX_JSON  ((size_t)256 << 20)

/* A reusable compression context. Not thread-safe: one per thread (or per caller holding
 * a lock). Freed with the pool it was created from. */
typedef struct ts_mapframe_enc ts_mapframe_enc_t;

/* level <= 0 means TS_MAPFRAME_LEVEL. APR_ENOMEM if libzstd cannot allocate. */
apr_status_t ts_mapframe_enc_create(ts_mapframe_enc_t **enc, apr_pool_t *p, int level);

/* Upper bound of the frame size for len bytes of JSON (header included). */
size_t ts_mapframe_bound(size_t len, int compress);

/* Writes one frame of json[0..len) into out (cap bytes, at least ts_mapframe_bound): the LE32
 * length then the payload. compress != 0: one zstd frame with content size and checksum;
 * else the JSON as is. enc may be NULL when compress is 0. */
apr_status_t ts_mapframe_encode_into(ts_mapframe_enc_t *enc, const char *json, size_t len,
                                     int compress, uint8_t *out, size_t cap, size_t *outlen,
                                     const char **err);

/* One zstd frame of src[0..len) (content size and checksum, no LE32 header) into out (cap bytes,
 * at least ts_mapframe_zbound(len)). A map frame's payload may be several such frames one
 * after the other: clients decode all of them and concatenate the output (control API 2.3). */
size_t ts_mapframe_zbound(size_t len);
apr_status_t ts_mapframe_zstd_into(ts_mapframe_enc_t *enc, const void *src, size_t len,
                                   uint8_t *out, size_t cap, size_t *outlen, const char **err);

/* The same, allocated from p. err is a static string. */
apr_status_t ts_mapframe_encode(ts_mapframe_enc_t *enc, apr_pool_t *p, const char *json,
                                size_t len, int compress, uint8_t **out, size_t *outlen,
                                const char **err);

/* Reads one frame from the start of in: APR_INCOMPLETE when in holds less than a whole
 * frame; else the NUL-terminated JSON (from p), its length and the bytes consumed.
 * compressed: expect a zstd payload (one or more whole zstd frames, their outputs
 * concatenated, checksums verified; skippable frames are skipped). Payloads that
 * would decode to more than max_json bytes (0: TS_MAPFRAME_MAX_JSON) fail with APR_EINVAL.
 * Thread-safe (a decompression context per call; meant for tests and tools). */
apr_status_t ts_mapframe_decode(apr_pool_t *p, const uint8_t *in, size_t len, int compressed,
                                size_t max_json, char **json, size_t *json_len,
                                size_t *consumed, const char **err);

#endif
