/* test_vectors.h: loading the shared Noise test vectors (test/vectors, or TS_VECTORS_DIR)
 * and comparing bytes against their hex fields; included by the crypto, noise and frame tests. */
#ifndef TEST_VECTORS_H
#define TEST_VECTORS_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ts_util.h"

static const char *const vector_files[] __attribute__((unused)) = {
    "noise-basic-v1.json", "noise-capver145-early-payload.json", "noise-max-frame-v90.json",
};
#define N_VECTORS (sizeof(vector_files) / sizeof(vector_files[0]))

/* Helpers are static: every test binary links all ts_*.o. */

static inline json_t *load_vector(const char *name)
{
    const char *dir = getenv("TS_VECTORS_DIR");
    char path[1024];
    json_error_t err;
    json_t *j;

    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "test/vectors", name);
    j = json_load_file(path, 0, &err);
    if (!j) fail_msg("cannot load %s: %s (line %d)", path, err.text, err.line);
    return j;
}

static inline const char *jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s) fail_msg("vector field %s missing", key);
    return s;
}

static inline uint8_t *jhex(json_t *obj, const char *key, size_t *len)
{
    const char *s = jstr(obj, key);
    size_t n = strlen(s) / 2;
    uint8_t *b = malloc(n ? n : 1);

    assert_non_null(b);
    assert_int_equal(ts_hex_decode(b, n, s, strlen(s)), 0);
    *len = n;
    return b;
}

static inline void jkey(uint8_t out[32], json_t *obj, const char *key)
{
    const char *s = jstr(obj, key);
    assert_int_equal(ts_hex_decode(out, 32, s, strlen(s)), 0);
}

static inline void assert_hex_field(const uint8_t *got, size_t len, json_t *obj, const char *key)
{
    size_t n;
    uint8_t *want = jhex(obj, key, &n);

    assert_int_equal(n, len);
    assert_memory_equal(got, want, len);
    free(want);
}

#endif
