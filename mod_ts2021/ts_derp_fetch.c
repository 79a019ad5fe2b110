/* ts_derp_fetch.c: DERP maps from URLs: one bounded libcurl GET, and a source object that keeps
 * the last good map (in memory and in a cache file) for a background refresher thread. */
#include "ts_derp.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

apr_status_t ts_derp_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? APR_SUCCESS : APR_EGENERAL;
}

void ts_derp_global_cleanup(void)
{
    curl_global_cleanup();
}

typedef struct body {
    char *data;
    size_t len, cap, max;
    int too_big;
} body_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body_t *b = userdata;
    size_t n = size * nmemb;

    if (b->len + n > b->max) {
        b->too_big = 1;
        return 0;                  /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        char *d;
        while (cap < b->len + n + 1) cap *= 2;
        if (!(d = realloc(b->data, cap))) return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

static void set_options(CURL *c, const char *url, apr_interval_time_t timeout, body_t *b,
                        char *errbuf)
{
    long ms = (long)apr_time_as_msec(timeout);

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);       /* we run on threads */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms < 10000 ? ms : 10000L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)b->max);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  /* the cap applies to decoded bytes */
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mod_ts2021");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
}

static apr_status_t get_body(apr_pool_t *p, const char *url, apr_interval_time_t timeout,
                             body_t *b, const char **err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    CURLcode rc;
    long status = 0;

    if (!c) {
        *err = apr_psprintf(p, "%s: cannot create a libcurl handle", url);
        return APR_ENOMEM;
    }
    set_options(c, url, timeout, b, errbuf);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (b->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        *err = apr_psprintf(p, "%s: DERP map larger than %lu bytes", url,
                            (unsigned long)b->max);
        return APR_EINVAL;
    }
    if (rc != CURLE_OK) {
        *err = apr_psprintf(p, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return rc == CURLE_OPERATION_TIMEDOUT ? APR_TIMEUP : APR_EGENERAL;
    }
    /* file:// has no status; any HTTP answer but 200 is a failure */
    if (status != 0 && status != 200) {
        *err = apr_psprintf(p, "%s: HTTP status %ld", url, status);
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

apr_status_t ts_derp_fetch(apr_pool_t *p, const char *url, apr_interval_time_t timeout,
                           apr_size_t max_bytes, json_t **map, const char **err)
{
    body_t b = { NULL, 0, 0, max_bytes ? max_bytes : TS_DERP_FETCH_MAX_BYTES, 0 };
    apr_status_t rv;

    rv = get_body(p, url, timeout > 0 ? timeout : TS_DERP_FETCH_TIMEOUT, &b, err);
    if (rv == APR_SUCCESS) rv = ts_derp_parse(p, url, b.data ? b.data : "", b.len, map, err);
    free(b.data);
    return rv;
}

/* ---- a URL source with its last good copy ---- */

struct ts_derp_url {
    const char *url;
    const char *cache_path;
    apr_interval_time_t timeout;
    apr_size_t max_bytes;
    apr_thread_mutex_t *lock;   /* guards good and obtained */
    json_t *good;
    apr_time_t obtained;
};

static apr_status_t url_cleanup(void *data)
{
    ts_derp_url_t *u = data;

    json_decref(u->good);
    u->good = NULL;
    return APR_SUCCESS;
}

static void load_cache(ts_derp_url_t *u, apr_pool_t *p)
{
    apr_pool_t *tmp;
    apr_finfo_t fi;
    const char *err;
    json_t *m;

    apr_pool_create(&tmp, p);
    if (ts_derp_load_file(tmp, u->cache_path, &m, &err) == APR_SUCCESS) {
        u->good = m;
        u->obtained = apr_stat(&fi, u->cache_path, APR_FINFO_MTIME, tmp) == APR_SUCCESS
                      ? fi.mtime : apr_time_now();
    }
    apr_pool_destroy(tmp);
}

apr_status_t ts_derp_url_create(ts_derp_url_t **up, apr_pool_t *p, const char *url,
                                const char *cache_path, apr_interval_time_t timeout,
                                apr_size_t max_bytes)
{
    ts_derp_url_t *u = apr_pcalloc(p, sizeof(*u));
    apr_status_t rv;

    u->url = apr_pstrdup(p, url);
    u->cache_path = cache_path ? apr_pstrdup(p, cache_path) : NULL;
    u->timeout = timeout;
    u->max_bytes = max_bytes;
    if ((rv = apr_thread_mutex_create(&u->lock, APR_THREAD_MUTEX_DEFAULT, p))) return rv;
    apr_pool_cleanup_register(p, u, url_cleanup, apr_pool_cleanup_null);
    if (u->cache_path) load_cache(u, p);
    *up = u;
    return APR_SUCCESS;
}

/* Temporary file + rename, so a crash never leaves a half-written cache behind. */
static apr_status_t write_cache(ts_derp_url_t *u, apr_pool_t *p, const json_t *m,
                                const char **err)
{
    const char *tmp = apr_pstrcat(p, u->cache_path, ".tmp", NULL);
    apr_size_t len;
    char *text = ts_derp_text(p, m, &len);
    apr_file_t *f;
    apr_status_t rv;

    rv = apr_file_open(&f, tmp, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE
                       | APR_FOPEN_BINARY, APR_FPROT_UREAD | APR_FPROT_UWRITE
                       | APR_FPROT_GREAD | APR_FPROT_WREAD, p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_write_full(f, text, len, NULL);
        if (rv == APR_SUCCESS) rv = apr_file_flush(f);
        apr_file_close(f);
    }
    if (rv == APR_SUCCESS) rv = apr_file_rename(tmp, u->cache_path, p);
    if (rv != APR_SUCCESS) {
        char msg[120];
        *err = apr_psprintf(p, "%s: cannot write DERP cache: %s", u->cache_path,
                            apr_strerror(rv, msg, sizeof(msg)));
        apr_file_remove(tmp, p);
    }
    return rv;
}

apr_status_t ts_derp_url_refresh(ts_derp_url_t *u, apr_pool_t *p, int *changed,
                                 const char **err)
{
    json_t *m, *old;
    apr_status_t rv;

    *changed = 0;
    *err = NULL;
    rv = ts_derp_fetch(p, u->url, u->timeout, u->max_bytes, &m, err);
    if (rv != APR_SUCCESS) return rv;
    apr_thread_mutex_lock(u->lock);
    old = u->good;
    *changed = !old || !json_equal(old, m);
    u->good = m;
    u->obtained = apr_time_now();
    apr_thread_mutex_unlock(u->lock);
    json_decref(old);
    if (*changed && u->cache_path) write_cache(u, p, m, err);
    return APR_SUCCESS;
}

json_t *ts_derp_url_get(ts_derp_url_t *u, apr_time_t *obtained)
{
    json_t *m;

    apr_thread_mutex_lock(u->lock);
    m = json_incref(u->good);
    if (obtained) *obtained = u->obtained;
    apr_thread_mutex_unlock(u->lock);
    return m;
}

const char *ts_derp_url_name(const ts_derp_url_t *u)
{
    return u->url;
}
