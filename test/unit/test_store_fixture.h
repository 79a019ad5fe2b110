/* test_store_fixture.h: the per-driver fixture shared by the test_store*.c programs: a fresh
 * sqlite3 file or a wiped MariaDB database per test, plus a raw apr_dbd side connection. */
#ifndef TEST_STORE_FIXTURE_H
#define TEST_STORE_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_dbd.h>

#include "ts_store.h"

/* not every program uses every helper */
#define FX_UNUSED __attribute__((unused))

/* libmariadb allocates its library state once (pthread_once) and nobody calls
 * mysql_library_end; that is not ours to free. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:__pthread_once_slow\n";
}

typedef struct {
    const char *driver;          /* "sqlite3" or "mysql" */
    int apply_schema;            /* setup applies it */
} fx_config_t;

typedef struct {
    const fx_config_t *cfg;
    int available;
    const char *params;
    char dir[64];                /* sqlite: temp directory holding the file */
    apr_pool_t *pool;
    ts_store_t *st;
    const apr_dbd_driver_t *raw_driver;   /* side connection for checks */
    apr_dbd_t *raw;
    apr_pool_t *raw_pool;
} fx_t;

FX_UNUSED static const fx_config_t FX_SQLITE = { "sqlite3", 1 };
FX_UNUSED static const fx_config_t FX_MYSQL = { "mysql", 1 };
FX_UNUSED static const fx_config_t FX_SQLITE_EMPTY = { "sqlite3", 0 };
FX_UNUSED static const fx_config_t FX_MYSQL_EMPTY = { "mysql", 0 };

FX_UNUSED static const char *fx_mysql_params(void)
{
    const char *p = getenv("TS_TEST_MYSQL_PARAMS");
    return (p && *p) ? p : NULL;
}

FX_UNUSED static void fx_note_mysql(void)
{
    if (!fx_mysql_params()) {
        print_message("NOTE: TS_TEST_MYSQL_PARAMS is not set: every MySQL test is SKIPPED "
                      "(start one with build/mariadb-private start DIR)\n");
    }
}

#define FX_REQUIRE(state) fx_t *fx = *(state); do { if (!fx->available) { skip(); } } while (0)

FX_UNUSED static void fx_exec(fx_t *fx, const char *sql)
{
    int nrows = 0;
    int rv = apr_dbd_query(fx->raw_driver, fx->raw, &nrows, sql);
    if (rv != 0) {
        fail_msg("%s: %s", sql, apr_dbd_error(fx->raw_driver, fx->raw, rv));
    }
}

/* First column of the first row, as an integer (0 for NULL / no row). */
FX_UNUSED static apr_int64_t fx_int(fx_t *fx, const char *sql)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    apr_int64_t v = 0;
    int first = 1, rv;
    apr_pool_t *qp;

    apr_pool_create(&qp, fx->raw_pool);
    rv = apr_dbd_select(fx->raw_driver, qp, fx->raw, &res, sql, 0);
    if (rv != 0) {
        fail_msg("%s: %s", sql, apr_dbd_error(fx->raw_driver, fx->raw, rv));
    }
    while (apr_dbd_get_row(fx->raw_driver, qp, res, &row, -1) == 0) {
        const char *s = apr_dbd_get_entry(fx->raw_driver, row, 0);
        if (first && s) {
            v = apr_atoi64(s);
        }
        first = 0;
    }
    apr_pool_destroy(qp);
    return v;
}

FX_UNUSED static apr_int64_t fx_count(fx_t *fx, const char *table)
{
    return fx_int(fx, apr_psprintf(fx->pool, "SELECT COUNT(*) FROM %s", table));
}

/* Drops every table of the MySQL test database, whatever an earlier run left. */
FX_UNUSED static void fx_mysql_wipe(fx_t *fx)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    apr_array_header_t *names = apr_array_make(fx->pool, 16, sizeof(char *));
    apr_pool_t *qp;
    int i;

    apr_pool_create(&qp, fx->raw_pool);
    assert_int_equal(apr_dbd_select(fx->raw_driver, qp, fx->raw, &res,
                                    "SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = DATABASE()", 0), 0);
    while (apr_dbd_get_row(fx->raw_driver, qp, res, &row, -1) == 0) {
        APR_ARRAY_PUSH(names, char *) =
            apr_pstrdup(fx->pool, apr_dbd_get_entry(fx->raw_driver, row, 0));
    }
    apr_pool_destroy(qp);
    fx_exec(fx, "SET FOREIGN_KEY_CHECKS = 0");
    for (i = 0; i < names->nelts; i++) {
        fx_exec(fx, apr_psprintf(fx->pool, "DROP TABLE IF EXISTS `%s`",
                                 APR_ARRAY_IDX(names, i, char *)));
    }
    fx_exec(fx, "SET FOREIGN_KEY_CHECKS = 1");
}

FX_UNUSED static int fx_setup(void **state)
{
    const fx_config_t *cfg = *state;
    fx_t *fx = calloc(1, sizeof(*fx));
    const char *err = NULL;
    apr_status_t rv;

    fx->cfg = cfg;
    *state = fx;
    apr_pool_create(&fx->pool, NULL);
    if (strcmp(cfg->driver, "mysql") == 0) {
        fx->params = fx_mysql_params();
        if (!fx->params) {
            return 0;     /* the test calls skip() */
        }
    }
    else {
        strcpy(fx->dir, "/tmp/ts_store_test.XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        fx->params = apr_pstrcat(fx->pool, fx->dir, "/ts2021.db", NULL);
    }
    fx->available = 1;
    apr_pool_create(&fx->raw_pool, fx->pool);
    assert_int_equal(apr_dbd_init(fx->pool), APR_SUCCESS);
    assert_int_equal(apr_dbd_get_driver(fx->pool, cfg->driver, &fx->raw_driver), APR_SUCCESS);
    assert_int_equal(apr_dbd_open(fx->raw_driver, fx->raw_pool, fx->params, &fx->raw), 0);
    if (strcmp(cfg->driver, "mysql") == 0) {
        fx_mysql_wipe(fx);
    }
    rv = ts_store_open(&fx->st, fx->pool, cfg->driver, fx->params, &err);
    if (rv != APR_SUCCESS) {
        fail_msg("ts_store_open: %s", err);
    }
    if (cfg->apply_schema) {
        rv = ts_store_schema_apply(fx->st, &err);
        if (rv != APR_SUCCESS) {
            fail_msg("ts_store_schema_apply: %s", err);
        }
    }
    return 0;
}

FX_UNUSED static int fx_teardown(void **state)
{
    fx_t *fx = *state;

    if (fx->available) {
        ts_store_close(fx->st);
        /* leave the shared MariaDB database empty for whatever runs next */
        if (strcmp(fx->cfg->driver, "mysql") == 0) {
            fx_mysql_wipe(fx);
        }
        apr_dbd_close(fx->raw_driver, fx->raw);
    }
    if (fx->dir[0]) {
        const char *suffix[] = { "/ts2021.db", "/ts2021.db-wal", "/ts2021.db-shm" };
        size_t i;
        for (i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
            unlink(apr_pstrcat(fx->pool, fx->dir, suffix[i], NULL));
        }
        rmdir(fx->dir);
    }
    apr_pool_destroy(fx->pool);
    free(fx);
    return 0;
}

/* Asserts a store call's status; expects a "const char *err" in scope for the message. */
#define ASSERT_RV(expected, call) do { \
        apr_status_t rv_ = (call); \
        if (rv_ != (apr_status_t)(expected)) { \
            fail_msg("%s: status %d, expected %d (%s)", #call, rv_, (int)(expected), \
                     err ? err : "no message"); \
        } \
    } while (0)

#define FX_TEST(fn, cfg) cmocka_unit_test_prestate_setup_teardown(fn, fx_setup, fx_teardown, \
                                                                 (void *)&(cfg))

/* A key text of the given kind whose last byte is n: distinct and well-formed. */
FX_UNUSED static const char *fx_key(apr_pool_t *p, const char *prefix, int n)
{
    return apr_psprintf(p, "%s%062x%02x", prefix, 0, n & 0xff);
}

#endif
