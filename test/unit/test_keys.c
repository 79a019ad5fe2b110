/* test_keys.c: the server key file: generation, atomic 0600 save, load, and the
 * file-and-line errors for every malformed form. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_file_io.h>
#include <apr_strings.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_keys.h"

static apr_pool_t *pool;
static char dir[] = "/tmp/ts-keys-test.XXXXXX";

static const char *path_in_dir(const char *name)
{
    return apr_pstrcat(pool, dir, "/", name, NULL);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_generate_distinct_and_clamped(void **state)
{
    ts_keys_t *k;
    uint8_t pub[TS_KEY_LEN];

    (void)state;
    assert_int_equal(ts_keys_generate(&k, pool), APR_SUCCESS);
    assert_memory_not_equal(k->noise_priv, k->legacy_priv, TS_KEY_LEN);
    assert_memory_not_equal(k->noise_pub, k->legacy_pub, TS_KEY_LEN);
    assert_int_equal(k->noise_priv[0] & 7, 0);
    assert_int_equal(k->noise_priv[31] & 0xc0, 0x40);
    crypto_scalarmult_curve25519_base(pub, k->noise_priv);
    assert_memory_equal(pub, k->noise_pub, TS_KEY_LEN);
}

static void test_save_load_roundtrip(void **state)
{
    const char *path = path_in_dir("roundtrip.key"), *err = NULL;
    ts_keys_t *k, *l;
    struct stat st;

    (void)state;
    assert_int_equal(ts_keys_generate(&k, pool), APR_SUCCESS);
    assert_int_equal(ts_keys_save(k, pool, path, &err), APR_SUCCESS);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ts_keys_load(&l, pool, path, &err), APR_SUCCESS);
    assert_memory_equal(k, l, sizeof(*k));
}

static void test_load_or_create(void **state)
{
    const char *path = path_in_dir("loc.key"), *err = NULL;
    ts_keys_t *a, *b;
    int created;

    (void)state;
    assert_int_equal(ts_keys_load(&a, pool, path, &err), APR_ENOENT);
    assert_int_equal(ts_keys_load_or_create(&a, pool, path, &created, &err), APR_SUCCESS);
    assert_int_equal(created, 1);
    assert_int_equal(ts_keys_load_or_create(&b, pool, path, &created, &err), APR_SUCCESS);
    assert_int_equal(created, 0);
    assert_memory_equal(a->noise_pub, b->noise_pub, TS_KEY_LEN);
    assert_memory_equal(a->legacy_pub, b->legacy_pub, TS_KEY_LEN);
}

static void expect_error(const char *text, const char *message)
{
    const char *path = path_in_dir("bad.key"), *err = NULL;
    ts_keys_t *k;

    write_file(path, text);
    assert_int_not_equal(ts_keys_load(&k, pool, path, &err), APR_SUCCESS);
    assert_non_null(err);
    assert_non_null(strstr(err, path));
    if (!strstr(err, message)) fail_msg("error '%s' lacks '%s'", err, message);
}

#define HEX_A "1111111111111111111111111111111111111111111111111111111111111111"
#define HEX_B "2222222222222222222222222222222222222222222222222222222222222222"

static void test_malformed_files(void **state)
{
    (void)state;
    expect_error("noise privkey:" HEX_A "\n", "missing the 'legacy privkey:...' line");
    expect_error("legacy privkey:" HEX_A "\n", "missing the 'noise privkey:...' line");
    expect_error("", "missing the 'noise");
    expect_error("noise privkey:" HEX_A "\nlegacy privkey:" HEX_A "\n", "must differ");
    expect_error("# x\nnoise privkey:" HEX_A "0\nlegacy privkey:" HEX_B "\n",
                 "line 2: malformed private key");
    expect_error("noise nodekey:" HEX_A "\nlegacy privkey:" HEX_B "\n",
                 "line 1: malformed private key");
    expect_error("noise privkey:" HEX_A "\nother privkey:" HEX_B "\n", "line 2: unknown key name");
    expect_error("noise\n", "line 1: expected");
    expect_error("noise privkey:" HEX_A " x\n", "line 1: expected");
    expect_error("noise privkey:" HEX_A "\nnoise privkey:" HEX_B "\n", "line 2: key given twice");
}

static void test_comments_blank_lines_and_crlf(void **state)
{
    const char *path = path_in_dir("ok.key"), *err = NULL;
    ts_keys_t *k;

    (void)state;
    write_file(path, "# comment\r\n\r\n   noise privkey:" HEX_A "\r\n\tlegacy  privkey:" HEX_B "\r\n");
    assert_int_equal(ts_keys_load(&k, pool, path, &err), APR_SUCCESS);
    assert_int_equal(k->noise_priv[0], 0x11);
    assert_int_equal(k->legacy_priv[0], 0x22);
}

static void test_oversize_and_unreadable(void **state)
{
    const char *path = path_in_dir("big.key"), *err = NULL;
    char *big = apr_palloc(pool, 10000);
    ts_keys_t *k;

    (void)state;
    memset(big, '#', 9999);
    big[9999] = '\0';
    write_file(path, big);
    assert_int_equal(ts_keys_load(&k, pool, path, &err), APR_EINVAL);
    assert_non_null(strstr(err, "too large"));
    assert_int_not_equal(ts_keys_load(&k, pool, dir, &err), APR_SUCCESS);
    assert_non_null(strstr(err, "cannot read key file"));
}

static void test_save_fails_cleanly(void **state)
{
    const char *err = NULL;
    ts_keys_t *k;

    (void)state;
    assert_int_equal(ts_keys_generate(&k, pool), APR_SUCCESS);
    assert_int_not_equal(ts_keys_save(k, pool, "/nonexistent-dir/x.key", &err), APR_SUCCESS);
    assert_non_null(strstr(err, "cannot write key file /nonexistent-dir/x.key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_distinct_and_clamped),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_load_or_create),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_comments_blank_lines_and_crlf),
        cmocka_unit_test(test_oversize_and_unreadable),
        cmocka_unit_test(test_save_fails_cleanly),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (sodium_init() < 0 || !mkdtemp(dir)) return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0) rc = rc ? rc : 1;
    }
    return rc;
}
