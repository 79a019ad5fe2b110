/* ts_keys.h: the server's two X25519 key pairs (Noise control key, legacy NaCl key)
 * and the key file that holds them. Core: no httpd types. */
#ifndef TS_KEYS_H
#define TS_KEYS_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <stdint.h>

#include "ts_util.h"

typedef struct ts_keys_t {
    uint8_t noise_priv[TS_KEY_LEN];
    uint8_t noise_pub[TS_KEY_LEN];
    uint8_t legacy_priv[TS_KEY_LEN];
    uint8_t legacy_pub[TS_KEY_LEN];
} ts_keys_t;

/* Fresh, distinct, clamped key pairs. The secrets are wiped when p is cleared. */
apr_status_t ts_keys_generate(ts_keys_t **keys, apr_pool_t *p);

/* Reads a key file. APR_ENOENT if it does not exist; any other failure sets *err
 * to a message naming the file (and line, for a malformed file). */
apr_status_t ts_keys_load(ts_keys_t **keys, apr_pool_t *p, const char *path,
                          const char **err);

/* Writes the key file atomically (temporary file, fsync, rename) with mode 0600. */
apr_status_t ts_keys_save(const ts_keys_t *keys, apr_pool_t *p, const char *path,
                          const char **err);

/* Loads path, or generates and saves a new pair of keys if it does not exist.
 * *created tells which happened. */
apr_status_t ts_keys_load_or_create(ts_keys_t **keys, apr_pool_t *p, const char *path,
                                    int *created, const char **err);

#endif
