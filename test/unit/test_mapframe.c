/* test_mapframe.c: map frame codec: zstd and raw round trips, the frames a real v1.34.2 client
 * accepted (examples/), partial input, bad payloads and size limits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_base64.h>
#include <apr_strings.h>
#include <jansson.h>
#include <string.h>
#include <zstd.h>

#include "ts_mapframe.h"

static apr_pool_t *pool;

/* The first full MapResponse client-a received in examples/a-preauth-join-and-keepalive.json
 * (LE32 length prefix 1269): a zstd frame with a content size. */
static const char full_b64[] =
    "KLUv/WSIDD0nAKpYyA8q4IxoBQD9GWPFbewJjj73I5yIP6mDAQO+8JJPaTLbJBUpAfAIY4wxRngB6QDtAPgAb6JT"
    "nVprS8nsYyht7LM8UD5ZG30go7DGV5v4pIvQaSR0jLHwQblARlYn50RL4Jqv/fxEH8A138XVaXRgpNY51jHWBzoL"
    "i/aJsLFsqU+L8MXmeezp56HSkfBxbWnpWIXxscyhc6IlIp/v6EIqRXD1BoxNxiZjChpTNKZojLHPT0hXAoFhog9c"
    "XS5OLo1sqrXMAmlsj4MdXWUtvrcsj3wvOktr80Dm1X6kwzzsiY97C2O16ZxoibY4+vxEH7hq81LnBVefck8rQxaO"
    "tF1UMUV9ofr5jlDG1dvnFw0NOXRyXLX5RcMp820x45Tzk4QlkokDM3IEdsCMq0edIfrMS/AkkXtx9YiEH0hg7LTF"
    "C1iaWlsOS1O+i6tH9DptP4+lKd/FVU+kaV7q6NIpwgtXjw86UNRHwTCraQt+PsI3S83AkeDqECbRhT7vSHB1Rlu1"
    "0pGQacgwp0om27GSNpLZ5jRMUmZx77EGa4RNfVrGZtliYT8SNozz+UVDBHawUUtUOuDqdmFNPv3qpHCLWVb7fIRv"
    "lpoBo9Fwyjx+ojtlbODqbDJmLWtZ0bXPNx4YFo0G2w8wBClcPd64ltDmZN3orK+1SaN9ru6WhLbYYuBirB1iPnfO"
    "LVmrcBW5pwl+OGU+4j4RXnAwFleVSuVRYQ1rXBOZZX6ScIOxQIHj6m2xxVZ0bcrYgJSSAjGf22LG1RsPDAsAtq1t"
    "J9IAGqI1W9oQ9Qz5fFu8oKSU84sGKeUp8znCN6IfTpmXUASNB4bFVeVxSM7RjViqyFc9IroShWRFQ/dJkNCaEMF1"
    "NURrhi6dEhJmlkwT5BDzue90oetQCV2wHeFKGDJNFDq6kEoROLiQgqT7QHShKAGMUrao2zFl6nD1Bk4uzy3NYm82"
    "b7qm4DlFawromPu87Ym2tHBVkXqa4IeuVJKlzgu6Uklulmyr4Qhc4OoMtBH6eUiVFHCBq55IU5VKT6RpHrpUQQR2"
    "aMih+S5OmY+YOL24eoPlOfdkjB25CiAsPSoP/HD1zzs8LKi3IWCCQhIcaRvdCOwA3QdLjUflUam85T04z+anLF0C"
    "p1zl6Q64eoDPNxomCTemvLh6PMAh5nOjoUqOUyDmp5aotJG7XgdSO6baEIQXPt8O21JP0CXQFjOmC4HhQsBS4+oB"
    "MZ+jSyN4cVWBoEk0ZRPhYxbpZJNMyibCxyyNa1rDGtlE+Jglutgii7KBEMIIH7O4xpxsInzM4hprsonwMYtrkrVU"
    "Ed3FWFuMtasHxDyVSHRByV3Psisuutpq66266GqrFztlPnEgIMMhgtABygkwq1o8XBh62AzK3xfLkBmlQb5nVm7K"
    "HOZnLoeRkUaSgYRmLEbjjzrHQGLAdUmpF9zNSYDsCHaLxmTDnWOtJXhABhTwgAzY1E3d1G0twAMyUIAHZMCmbuq2"
    "bmoBHsiAAjwgAzZ1Wzd1UwvAO2NhKEBJDTwVyNay3IVZxHIWZhEXBDKLLGdhFrGchVnkci0IZItYzsIsYjkLu4gt"
    "h/WdmzOstR9jLKcYJQSojFlDyNPPQNkTzTxV20O7OTIOMN9bdM39KPpt0NR4QfpROSNPos+xRW3T4LwUUTQ8dPm8"
    "hdsg6eMbEunaHFPdDNmn";

/* The keep-alive frame of the same recording: no content size, one raw block, checksum. */
static const char keepalive_b64[] = "KLUv/QQAkQAAeyJLZWVwQWxpdmUiOnRydWV9DiYMEA==";

static uint8_t *unb64(const char *b64, size_t *len)
{
    uint8_t *out = apr_palloc(pool, apr_base64_decode_len(b64));

    *len = (size_t)apr_base64_decode_binary(out, b64);
    return out;
}

static uint8_t *with_prefix(const uint8_t *payload, size_t n, size_t *outlen)
{
    uint8_t *f = apr_palloc(pool, n + 4);

    f[0] = (uint8_t)n;
    f[1] = (uint8_t)(n >> 8);
    f[2] = (uint8_t)(n >> 16);
    f[3] = (uint8_t)(n >> 24);
    memcpy(f + 4, payload, n);
    *outlen = n + 4;
    return f;
}

static void test_roundtrip_zstd(void **state)
{
    ts_mapframe_enc_t *enc;
    const char *json = "{\"Node\":{\"ID\":1},\"Peers\":[{\"ID\":2},{\"ID\":3}]}", *err = NULL;
    uint8_t *frame;
    size_t flen, jlen, used;
    char *out;

    (void)state;
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 0), APR_SUCCESS);
    assert_int_equal(ts_mapframe_encode(enc, pool, json, strlen(json), 1, &frame, &flen, &err),
                     APR_SUCCESS);
    assert_true(flen <= ts_mapframe_bound(strlen(json), 1));
    assert_int_equal(frame[0] | frame[1] << 8 | frame[2] << 16 | frame[3] << 24, flen - 4);
    /* one complete frame, zstd magic, content size recorded */
    assert_memory_equal(frame + 4, "\x28\xb5\x2f\xfd", 4);
    assert_int_equal(ZSTD_findFrameCompressedSize(frame + 4, flen - 4), flen - 4);
    assert_int_equal(ZSTD_getFrameContentSize(frame + 4, flen - 4), strlen(json));
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &out, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_int_equal(used, flen);
    assert_int_equal(jlen, strlen(json));
    assert_string_equal(out, json);
}

static void test_roundtrip_raw(void **state)
{
    const char *json = "{\"KeepAlive\":true}", *err = NULL;
    uint8_t buf[64];
    size_t flen, jlen, used;
    char *out;

    (void)state;
    assert_int_equal(ts_mapframe_encode_into(NULL, json, 18, 0, buf, sizeof(buf), &flen, &err),
                     APR_SUCCESS);
    assert_int_equal(flen, 22);
    assert_memory_equal(buf, "\x12\0\0\0{\"KeepAlive\":true}", 22);
    assert_int_equal(ts_mapframe_decode(pool, buf, flen, 0, 0, &out, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_string_equal(out, json);
    /* a buffer that cannot hold the frame is refused, not overrun */
    assert_int_equal(ts_mapframe_encode_into(NULL, json, 18, 0, buf, 21, &flen, &err),
                     APR_EINVAL);
}

static void test_large_and_repetitive(void **state)
{
    ts_mapframe_enc_t *enc;
    const char *err = NULL;
    size_t n = 2u << 20, flen, jlen, used, i;
    char *json = apr_palloc(pool, n + 1), *out;
    uint8_t *frame;

    (void)state;
    for (i = 0; i < n; i++) json[i] = "{\"Peers\":[]}abcdefgh"[i % 20];
    json[n] = '\0';
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 1), APR_SUCCESS);
    assert_int_equal(ts_mapframe_encode(enc, pool, json, n, 1, &frame, &flen, &err),
                     APR_SUCCESS);
    assert_true(flen < n / 20);
    /* the context is reusable: a second encode gives the same bytes */
    {
        uint8_t *again;
        size_t alen;
        assert_int_equal(ts_mapframe_encode(enc, pool, json, n, 1, &again, &alen, &err),
                         APR_SUCCESS);
        assert_int_equal(alen, flen);
        assert_memory_equal(again, frame, flen);
    }
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &out, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_int_equal(jlen, n);
    assert_memory_equal(out, json, n);
    /* the decode limit applies to the decompressed size */
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, n - 1, &out, &jlen, &used, &err),
                     APR_EINVAL);
    assert_non_null(strstr(err, "limit"));
}

static void test_recorded_frames(void **state)
{
    const char *err = NULL;
    size_t plen, flen, jlen, used;
    uint8_t *payload, *frame;
    char *json;
    json_t *root;

    (void)state;
    payload = unb64(keepalive_b64, &plen);
    assert_int_equal(plen, 31);
    frame = with_prefix(payload, plen, &flen);
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &json, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_string_equal(json, "{\"KeepAlive\":true}");

    payload = unb64(full_b64, &plen);
    assert_int_equal(plen, 1269);
    frame = with_prefix(payload, plen, &flen);
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &json, &jlen, &used, &err),
                     APR_SUCCESS);
    assert_int_equal(jlen, 3464);
    root = json_loads(json, 0, NULL);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "Node"), "ID")), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "Node"), "Name")),
                        "client-a.demo.hs.test");
    json_decref(root);
}

static void test_partial_and_concatenated(void **state)
{
    ts_mapframe_enc_t *enc;
    const char *err = NULL;
    uint8_t *a, *b, *both;
    size_t alen, blen, jlen, used, i;
    char *json;

    (void)state;
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 0), APR_SUCCESS);
    assert_int_equal(ts_mapframe_encode(enc, pool, "{\"A\":1}", 7, 1, &a, &alen, &err), 0);
    assert_int_equal(ts_mapframe_encode(enc, pool, "{\"B\":2}", 7, 1, &b, &blen, &err), 0);
    both = apr_palloc(pool, alen + blen);
    memcpy(both, a, alen);
    memcpy(both + alen, b, blen);
    for (i = 0; i < alen; i++)
        assert_int_equal(ts_mapframe_decode(pool, both, i, 1, 0, &json, &jlen, &used, &err),
                         APR_INCOMPLETE);
    assert_int_equal(ts_mapframe_decode(pool, both, alen + blen, 1, 0, &json, &jlen, &used,
                                        &err), APR_SUCCESS);
    assert_string_equal(json, "{\"A\":1}");
    assert_int_equal(used, alen);
    assert_int_equal(ts_mapframe_decode(pool, both + used, blen, 1, 0, &json, &jlen, &used,
                                        &err), APR_SUCCESS);
    assert_string_equal(json, "{\"B\":2}");
}

static void test_bad_payloads(void **state)
{
    ts_mapframe_enc_t *enc;
    const char *err = NULL;
    uint8_t *a, *frame;
    size_t alen, flen, jlen, used;
    char *json;

    (void)state;
    assert_int_equal(ts_mapframe_enc_create(&enc, pool, 0), APR_SUCCESS);
    assert_int_equal(ts_mapframe_encode(enc, pool, "{\"A\":1}", 7, 1, &a, &alen, &err), 0);
    /* raw JSON where zstd is expected */
    frame = with_prefix((const uint8_t *)"{\"A\":1}", 7, &flen);
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &json, &jlen, &used, &err),
                     APR_EINVAL);
    /* a corrupted checksum */
    frame = with_prefix(a + 4, alen - 4, &flen);
    frame[flen - 1] ^= 0xff;
    assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &json, &jlen, &used, &err),
                     APR_EINVAL);
    /* two zstd frames in one message: their outputs concatenated (as clients decode them);
     * the second cut short: refused */
    {
        uint8_t two[64];
        memcpy(two, a + 4, alen - 4);
        memcpy(two + alen - 4, a + 4, alen - 4);
        frame = with_prefix(two, 2 * (alen - 4), &flen);
        assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &json, &jlen, &used,
                                            &err), APR_SUCCESS);
        assert_string_equal(json, "{\"A\":1}{\"A\":1}");
        frame = with_prefix(two, 2 * (alen - 4) - 2, &flen);
        assert_int_equal(ts_mapframe_decode(pool, frame, flen, 1, 0, &json, &jlen, &used,
                                            &err), APR_EINVAL);
        assert_non_null(strstr(err, "whole zstd frames"));
    }
    /* compressing without a context */
    assert_int_equal(ts_mapframe_encode(NULL, pool, "{}", 2, 1, &a, &alen, &err), APR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_zstd),
        cmocka_unit_test(test_roundtrip_raw),
        cmocka_unit_test(test_large_and_repetitive),
        cmocka_unit_test(test_recorded_frames),
        cmocka_unit_test(test_partial_and_concatenated),
        cmocka_unit_test(test_bad_payloads),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
