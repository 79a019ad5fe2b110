/* mod_ts2021_derp.c: DERP maps from URLs (TS2021DERPMapURL). The parent (root) loads each URL's
 * last good copy from the state directory, fetches it when there is none or it is older than
 * the refresh interval, and rewrites the cache; children inherit that map. Each child then
 * refreshes in memory on its own thread (jittered, with back-off after failures, the last good
 * map kept) and hands a changed merged map to its tailnet, whose streams get it as a delta.
 * URL maps come first in the merge, TS2021DERPMapFile maps after (they override regions). */
#include "mod_ts2021.h"
#include "mod_ts2021_machine.h"

#include <http_core.h>
#include <http_log.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_proc.h>
#include <sodium.h>

#include "ts_derp.h"
#include "ts_map.h"

APLOG_USE_MODULE(ts2021);

#define DERPSRC_FETCH_TIMEOUT apr_time_from_sec(10)
#define DERPSRC_RETRY_MIN     apr_time_from_sec(30)

struct ts_derpsrc {
    server_rec *s;
    apr_array_header_t *urls;       /* ts_derp_url_t * (pconf) */
    apr_array_header_t *files;      /* json_t *: TS2021DERPMapFile maps, in order */
    apr_interval_time_t refresh;
    /* child */
    apr_time_t *next;               /* per URL: when to fetch next */
    int *fails;                     /* per URL: failures in a row */
    apr_thread_t *thread;
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *cv;
    int stop;
};

static int derpsrc_curl_ready;

static apr_status_t derpsrc_files_release(void *data)
{
    apr_array_header_t *files = data;
    int i;

    for (i = 0; i < files->nelts; i++) json_decref(APR_ARRAY_IDX(files, i, json_t *));
    return APR_SUCCESS;
}

/* <state dir>/derp-<hash of the URL>.json */
static const char *derpsrc_cache_path(apr_pool_t *p, const ts_server_conf *conf,
                                      const char *url)
{
    unsigned char h[crypto_generichash_BYTES_MIN];
    char hex[2 * sizeof(h) + 1];

    crypto_generichash(h, sizeof(h), (const unsigned char *)url, strlen(url), NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    return apr_pstrcat(p, ts_config_state_dir(p, conf), "/derp-", hex, ".json", NULL);
}

/* URL maps, then file maps, merged into text from p; NULL (with *err) when no region at all. */
static const char *derpsrc_merged(apr_pool_t *p, ts_derpsrc_t *d, int *regions,
                                  const char **err)
{
    int n = d->urls->nelts + d->files->nelts, i, k = 0;
    json_t **maps = apr_pcalloc(p, (n ? n : 1) * sizeof(*maps)), *merged = NULL;
    const char *text = NULL;
    apr_size_t len;

    *err = NULL;
    *regions = 0;
    for (i = 0; i < d->urls->nelts; i++)
        maps[k++] = ts_derp_url_get(APR_ARRAY_IDX(d->urls, i, ts_derp_url_t *), NULL);
    for (i = 0; i < d->files->nelts; i++) {
        maps[k] = APR_ARRAY_IDX(d->files, i, json_t *);
        json_incref(maps[k++]);
    }
    if (ts_derp_merge(p, maps, n, &merged, err) == APR_SUCCESS) {
        *regions = ts_derp_region_count(merged);
        text = ts_derp_text(p, merged, &len);
        json_decref(merged);
    }
    for (i = 0; i < n; i++) json_decref(maps[i]);
    return text;
}

const char *ts_derpsrc_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s,
                                   ts_server_conf *conf, const char **err)
{
    int dry = ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG;
    ts_derpsrc_t *d;
    const char *text;
    int i, regions;

    *err = NULL;
    if (!conf->derp_urls) return NULL;
    if (!derpsrc_curl_ready) {
        if (ts_derp_global_init() != APR_SUCCESS) {
            *err = "libcurl failed to initialise";
            return NULL;
        }
        derpsrc_curl_ready = 1;
    }
    d = conf->derpsrc = apr_pcalloc(pconf, sizeof(*d));
    d->s = s;
    d->refresh = conf->derp_refresh > 0 ? conf->derp_refresh : TS_DERP_REFRESH;
    d->urls = apr_array_make(pconf, conf->derp_urls->nelts, sizeof(ts_derp_url_t *));
    d->files = apr_array_make(pconf, 2, sizeof(json_t *));
    apr_pool_cleanup_register(pconf, d->files, derpsrc_files_release, apr_pool_cleanup_null);
    for (i = 0; conf->derp_files && i < conf->derp_files->nelts; i++) {
        json_t *m = NULL;

        if (ts_derp_load_file(ptemp, APR_ARRAY_IDX(conf->derp_files, i, const char *), &m, err)
            != APR_SUCCESS) {
            if (!*err) *err = "cannot load DERP map";
            return NULL;
        }
        APR_ARRAY_PUSH(d->files, json_t *) = m;
    }
    for (i = 0; i < conf->derp_urls->nelts; i++) {
        const char *url = APR_ARRAY_IDX(conf->derp_urls, i, const char *), *ferr = NULL;
        ts_derp_url_t *u;
        apr_time_t obtained = 0;
        json_t *m;
        int changed;

        if (ts_derp_url_create(&u, pconf, url, derpsrc_cache_path(pconf, conf, url),
                               DERPSRC_FETCH_TIMEOUT, 0) != APR_SUCCESS) {
            *err = apr_psprintf(ptemp, "TS2021DERPMapURL %s: cannot set up the source", url);
            return NULL;
        }
        APR_ARRAY_PUSH(d->urls, ts_derp_url_t *) = u;
        m = ts_derp_url_get(u, &obtained);
        json_decref(m);
        /* The start-up dry run only reads caches; the real start fetches what is stale. */
        if (dry || (m && apr_time_now() - obtained < d->refresh)) continue;
        if (ts_derp_url_refresh(u, ptemp, &changed, &ferr) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, APLOGNO(11060)
                         "TS2021 (%s:%u): DERP map from %s: %s%s", s->server_hostname, s->port,
                         url, ferr, m ? " (using the cached copy)" : "");
        }
        else if (ferr) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, APLOGNO(11061)
                         "TS2021 (%s:%u): %s", s->server_hostname, s->port, ferr);
        }
    }
    text = derpsrc_merged(ptemp, d, &regions, err);
    *err = NULL;       /* no region yet is a warning (logged by the caller), not an error */
    return text ? apr_pstrdup(pconf, text) : NULL;
}

/* ---- children ---- */

static apr_interval_time_t derpsrc_jitter(apr_interval_time_t span)
{
    return span > 0 ? (apr_interval_time_t)randombytes_uniform((uint32_t)
                       (span / 10 > 0x7fffffff ? 0x7fffffff : span / 10 + 1)) : 0;
}

static void derpsrc_publish(ts_derpsrc_t *d, apr_pool_t *p)
{
    ts_tailnet_rt *rt = ts_tailnet_of(d->s);
    const char *err, *text;
    int regions;

    text = derpsrc_merged(p, d, &regions, &err);
    if (!text || !rt) return;
    apr_thread_mutex_lock(rt->mu);
    ts_map_set_derpmap(rt->map, text, strlen(text));
    apr_thread_mutex_unlock(rt->mu);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s, APLOGNO(11062)
                 "TS2021 (%s:%u): DERP map changed: %d region(s), sent to open streams",
                 d->s->server_hostname, d->s->port, regions);
}

static void *APR_THREAD_FUNC derpsrc_thread(apr_thread_t *t, void *arg)
{
    ts_derpsrc_t *d = arg;

    for (;;) {
        apr_time_t now = apr_time_now(), due = 0;
        apr_pool_t *p;
        int i, changed_any = 0;

        apr_thread_mutex_lock(d->mu);
        for (i = 0; i < d->urls->nelts; i++)
            if (!due || d->next[i] < due) due = d->next[i];
        while (!d->stop && due > now) {
            apr_thread_cond_timedwait(d->cv, d->mu, due - now);
            now = apr_time_now();
        }
        if (d->stop) {
            apr_thread_mutex_unlock(d->mu);
            break;
        }
        apr_thread_mutex_unlock(d->mu);
        apr_pool_create_unmanaged_ex(&p, NULL, NULL);
        for (i = 0; i < d->urls->nelts; i++) {
            ts_derp_url_t *u = APR_ARRAY_IDX(d->urls, i, ts_derp_url_t *);
            const char *err = NULL;
            int changed = 0;

            if (d->next[i] > now) continue;
            if (ts_derp_url_refresh(u, p, &changed, &err) == APR_SUCCESS) {
                d->fails[i] = 0;
                d->next[i] = now + d->refresh + derpsrc_jitter(d->refresh);
                changed_any |= changed;
            }
            else {
                apr_interval_time_t back = DERPSRC_RETRY_MIN << (d->fails[i] < 8 ? d->fails[i] : 8);

                d->fails[i]++;
                d->next[i] = now + (back < d->refresh ? back : d->refresh);
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, APLOGNO(11063)
                             "TS2021 (%s:%u): DERP map from %s: %s (keeping the last good "
                             "copy; next try in %" APR_TIME_T_FMT " s)", d->s->server_hostname,
                             d->s->port, ts_derp_url_name(u), err,
                             apr_time_sec(d->next[i] - now));
            }
        }
        if (changed_any) derpsrc_publish(d, p);
        apr_pool_destroy(p);
    }
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static apr_status_t derpsrc_child_exit(void *data)
{
    ts_derpsrc_t *d = data;
    apr_status_t rv;

    apr_thread_mutex_lock(d->mu);
    d->stop = 1;
    apr_thread_cond_signal(d->cv);
    apr_thread_mutex_unlock(d->mu);
    apr_thread_join(&rv, d->thread);
    return APR_SUCCESS;
}

/* After ts_tailnets_child_init. A pre-cleanup: the thread is joined before pchild destroys
 * its subpools (the thread's own among them) and before the tailnets go away. */
void ts_derpsrc_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_time_t now = apr_time_now();

    for (; s; s = s->next) {
        ts_derpsrc_t *d = ts_conf(s)->derpsrc;
        int i;

        if (ts_conf(s)->enabled != 1 || !d || d->thread || d->s != s) continue;
        d->next = apr_pcalloc(pchild, d->urls->nelts * sizeof(*d->next));
        d->fails = apr_pcalloc(pchild, d->urls->nelts * sizeof(*d->fails));
        for (i = 0; i < d->urls->nelts; i++) {
            apr_time_t obtained = 0;
            json_t *m = ts_derp_url_get(APR_ARRAY_IDX(d->urls, i, ts_derp_url_t *), &obtained);

            /* Children started together spread their fetches over a tenth of the interval. */
            d->next[i] = m ? obtained + d->refresh + derpsrc_jitter(d->refresh)
                           : now + derpsrc_jitter(apr_time_from_sec(100));
            json_decref(m);
        }
        if (apr_thread_mutex_create(&d->mu, APR_THREAD_MUTEX_DEFAULT, pchild) != APR_SUCCESS
            || apr_thread_cond_create(&d->cv, pchild) != APR_SUCCESS
            || apr_thread_create(&d->thread, NULL, derpsrc_thread, d, pchild) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, APLOGNO(11064)
                         "TS2021 (%s:%u): cannot start the DERP map refresher",
                         s->server_hostname, s->port);
            d->thread = NULL;
            continue;
        }
        apr_pool_pre_cleanup_register(pchild, d, derpsrc_child_exit);
    }
}
