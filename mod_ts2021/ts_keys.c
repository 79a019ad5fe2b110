/* ts_keys.c: generation, parsing and atomic storage of the server key file.
 * The Noise key and the legacy key must differ (transport spec 4.1). */
#include "ts_keys.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#define TS_KEYS_MAX_FILE 4096

static apr_status_t keys_wipe(void *data)
{
    sodium_memzero(data, sizeof(ts_keys_t));
    return APR_SUCCESS;
}

static ts_keys_t *keys_alloc(apr_pool_t *p)
{
    ts_keys_t *k = apr_pcalloc(p, sizeof(*k));

    apr_pool_cleanup_register(p, k, keys_wipe, apr_pool_cleanup_null);
    return k;
}

static void keys_clamp(uint8_t priv[TS_KEY_LEN])
{
    priv[0] &= 248;
    priv[31] = (priv[31] & 127) | 64;
}

static int keys_derive(uint8_t pub[TS_KEY_LEN], const uint8_t priv[TS_KEY_LEN])
{
    return crypto_scalarmult_curve25519_base(pub, priv);
}

apr_status_t ts_keys_generate(ts_keys_t **keys, apr_pool_t *p)
{
    ts_keys_t *k = keys_alloc(p);

    if (sodium_init() < 0) return APR_EGENERAL;
    do {
        randombytes_buf(k->noise_priv, TS_KEY_LEN);
        randombytes_buf(k->legacy_priv, TS_KEY_LEN);
        keys_clamp(k->noise_priv);
        keys_clamp(k->legacy_priv);
    } while (sodium_memcmp(k->noise_priv, k->legacy_priv, TS_KEY_LEN) == 0);
    if (keys_derive(k->noise_pub, k->noise_priv) != 0
        || keys_derive(k->legacy_pub, k->legacy_priv) != 0) {
        return APR_EGENERAL;
    }
    *keys = k;
    return APR_SUCCESS;
}

/* One "name privkey:<hex>" line into the matching slot; NULL on success. */
static const char *keys_parse_line(ts_keys_t *k, char *line, int *seen)
{
    char *name, *value, *last;
    uint8_t *slot;
    int bit;

    name = apr_strtok(line, " \t\r", &last);
    value = apr_strtok(NULL, " \t\r", &last);
    if (!name || !value || apr_strtok(NULL, " \t\r", &last)) {
        return "expected '<noise|legacy> privkey:<64 hex digits>'";
    }
    if (strcmp(name, "noise") == 0) {
        slot = k->noise_priv;
        bit = 1;
    }
    else if (strcmp(name, "legacy") == 0) {
        slot = k->legacy_priv;
        bit = 2;
    }
    else {
        return "unknown key name (expected 'noise' or 'legacy')";
    }
    if (*seen & bit) return "key given twice";
    if (ts_key_parse(slot, "privkey:", value) != 0) {
        return "malformed private key (expected privkey: and 64 hex digits)";
    }
    *seen |= bit;
    return NULL;
}

static apr_status_t keys_read_file(char **text, apr_pool_t *p, const char *path,
                                   const char **err)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n;
    apr_status_t rv;

    rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, p);
    if (APR_STATUS_IS_ENOENT(rv)) return APR_ENOENT;
    if (rv == APR_SUCCESS) rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "cannot read key file %s: %pm", path, &rv);
        return rv;
    }
    if (fi.size > TS_KEYS_MAX_FILE) {
        apr_file_close(f);
        *err = apr_psprintf(p, "key file %s is too large to be a key file", path);
        return APR_EINVAL;
    }
    n = (apr_size_t)fi.size;
    *text = apr_palloc(p, n + 1);
    rv = apr_file_read_full(f, *text, n, &n);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        *err = apr_psprintf(p, "cannot read key file %s: %pm", path, &rv);
        return rv;
    }
    (*text)[n] = '\0';
    return APR_SUCCESS;
}

static apr_status_t keys_parse(ts_keys_t *k, apr_pool_t *p, const char *path,
                               char *text, const char **err)
{
    char *line, *next;
    const char *msg;
    int lineno = 0, seen = 0;

    for (line = text; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        while (apr_isspace(*line)) line++;
        if (line[0] == '\0' || line[0] == '#') continue;
        msg = keys_parse_line(k, line, &seen);
        if (msg) {
            *err = apr_psprintf(p, "key file %s, line %d: %s", path, lineno, msg);
            return APR_EINVAL;
        }
    }
    if (seen != 3) {
        *err = apr_psprintf(p, "key file %s: missing the '%s privkey:...' line", path,
                            (seen & 1) ? "legacy" : "noise");
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

apr_status_t ts_keys_load(ts_keys_t **keys, apr_pool_t *p, const char *path,
                          const char **err)
{
    ts_keys_t *k;
    char *text = NULL;
    apr_status_t rv;

    rv = keys_read_file(&text, p, path, err);
    if (rv != APR_SUCCESS) return rv;
    k = keys_alloc(p);
    rv = keys_parse(k, p, path, text, err);
    sodium_memzero(text, strlen(text));
    if (rv != APR_SUCCESS) return rv;
    if (sodium_memcmp(k->noise_priv, k->legacy_priv, TS_KEY_LEN) == 0) {
        *err = apr_psprintf(p, "key file %s: the noise and legacy keys must differ", path);
        return APR_EINVAL;
    }
    if (keys_derive(k->noise_pub, k->noise_priv) != 0
        || keys_derive(k->legacy_pub, k->legacy_priv) != 0) {
        *err = apr_psprintf(p, "key file %s: a private key gives an invalid public key", path);
        return APR_EINVAL;
    }
    *keys = k;
    return APR_SUCCESS;
}

apr_status_t ts_keys_save(const ts_keys_t *keys, apr_pool_t *p, const char *path,
                          const char **err)
{
    char text[512], noise[2 * TS_KEY_LEN + 1], legacy[2 * TS_KEY_LEN + 1];
    char *tmp = apr_pstrcat(p, path, ".XXXXXX", NULL);
    apr_file_t *f;
    apr_size_t n;
    apr_status_t rv;

    ts_hex_encode(noise, keys->noise_priv, TS_KEY_LEN);
    ts_hex_encode(legacy, keys->legacy_priv, TS_KEY_LEN);
    n = (apr_size_t)apr_snprintf(text, sizeof(text),
        "# mod_ts2021 server keys. Secret: keep this file mode 0600.\n"
        "# Replacing the noise key disconnects every node until it restarts.\n"
        "noise privkey:%s\nlegacy privkey:%s\n", noise, legacy);
    sodium_memzero(noise, sizeof(noise));
    sodium_memzero(legacy, sizeof(legacy));

    /* mkstemp creates the file 0600 before any secret is written to it. */
    rv = apr_file_mktemp(&f, tmp, APR_FOPEN_CREATE | APR_FOPEN_WRITE | APR_FOPEN_EXCL, p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_write_full(f, text, n, NULL);
        if (rv == APR_SUCCESS) rv = apr_file_sync(f);
        apr_file_close(f);
        if (rv == APR_SUCCESS) rv = apr_file_perms_set(tmp, APR_FPROT_UREAD | APR_FPROT_UWRITE);
        if (rv == APR_SUCCESS || rv == APR_ENOTIMPL) rv = apr_file_rename(tmp, path, p);
        if (rv != APR_SUCCESS) apr_file_remove(tmp, p);
    }
    sodium_memzero(text, sizeof(text));
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "cannot write key file %s: %pm", path, &rv);
    }
    return rv;
}

apr_status_t ts_keys_load_or_create(ts_keys_t **keys, apr_pool_t *p, const char *path,
                                    int *created, const char **err)
{
    apr_status_t rv = ts_keys_load(keys, p, path, err);

    *created = 0;
    if (rv != APR_ENOENT) return rv;
    rv = ts_keys_generate(keys, p);
    if (rv != APR_SUCCESS) {
        *err = "cannot generate server keys (libsodium failed to initialise)";
        return rv;
    }
    rv = ts_keys_save(*keys, p, path, err);
    if (rv == APR_SUCCESS) *created = 1;
    return rv;
}
