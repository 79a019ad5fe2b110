/* ts_derp.h: the DERP map (control API 5.11): load and validate DERPMap JSON, merge sources,
 * and fetch one from a URL with libcurl, keeping the last good copy. jansson values throughout. */
#ifndef TS_DERP_H
#define TS_DERP_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_time.h>
#include <jansson.h>

/* Built-in default: there is no compiled-in region data. Tailscale's public relays are the
 * usual choice for a self-hosted server, and this URL (what headscale fetches too) is the
 * default source the glue should use when no DERP source is configured. Why no embedded copy:
 * - the public map changes (relays are added, retired and renumbered, addresses move); a
 *   frozen copy goes stale without anyone noticing and sends clients to dead relays;
 * - those relays are a third party's infrastructure and see connection metadata: relaying
 *   through them should follow from configuration (even the default), not be baked into code;
 * - ts_derp_url_t keeps the last good download in a cache file, so a restart during an
 *   outage still has the map it had before.
 * Until some source has produced a region, maps cannot be served (ts_map refuses them) and
 * clients retry: a clear failure instead of a client that never reaches Running. */
#define TS_DERP_DEFAULT_URL     "https://controlplane.tailscale.com/derpmap/default"
#define TS_DERP_FETCH_TIMEOUT   apr_time_from_sec(15)
#define TS_DERP_FETCH_MAX_BYTES ((apr_size_t)1 << 20)  /* the public map is ~20 KB */
#define TS_DERP_REFRESH         apr_time_from_sec(3 * 3600)

/* Region IDs are also the port of the legacy "127.3.3.40:<id>" DERP address. */
#define TS_DERP_REGION_MAX      65535

/* ---- parsing, validation, merging (pure; any thread) ----
 * Maps are jansson objects; functions returning one hand the caller a new reference
 * (json_decref when done). Errors are from p and name the source (file name or URL), the
 * region key and the field: "derp.json: region \"900\": node 0 (\"900a\"): HostName: ...". */

/* Checks a DERPMap: "Regions" a non-empty object keyed by decimal region IDs 1..65535, no
 * null region; each region with a matching RegionID, a RegionCode and a non-empty "Nodes"
 * array; each node with a Name (unique in the map), the region's RegionID, a HostName, and
 * well-typed optional fields (IPv4/IPv6 literal or "none", ports in range, booleans).
 * Fields it does not know are kept and passed on to clients. */
apr_status_t ts_derp_validate(apr_pool_t *p, const char *source, const json_t *map,
                              const char **err);
/* Parses JSON text (syntax errors carry line:column) and validates it. */
apr_status_t ts_derp_parse(apr_pool_t *p, const char *source, const char *text,
                           apr_size_t len, json_t **map, const char **err);
/* Reads, parses and validates a DERPMap JSON file (at most TS_DERP_FETCH_MAX_BYTES). */
apr_status_t ts_derp_load_file(apr_pool_t *p, const char *path, json_t **map,
                               const char **err);
/* Merges maps[0..n) (NULL entries skipped) into a new map: the union of their regions, a later
 * map's region replacing an earlier one with the same ID; other top-level keys (HomeParams…)
 * from the last map that has them. Region objects are shared with the inputs (references),
 * so treat every map as immutable. APR_ENOENT when the result has no region. */
apr_status_t ts_derp_merge(apr_pool_t *p, json_t *const *maps, int n, json_t **out,
                           const char **err);
/* Compact JSON text of a map (from p), for ts_map_set_derpmap. */
char *ts_derp_text(apr_pool_t *p, const json_t *map, apr_size_t *len);
/* Number of regions (0 for NULL). */
int ts_derp_region_count(const json_t *map);

/* ---- fetching ---- */

/* curl_global_init: once per process before any thread fetches (glue: post_config). */
apr_status_t ts_derp_global_init(void);
void ts_derp_global_cleanup(void);

/* One GET of url (http, https or file; redirects only to http/https), at most max_bytes of
 * body (0: TS_DERP_FETCH_MAX_BYTES), whole transfer within timeout (0: TS_DERP_FETCH_TIMEOUT).
 * HTTP status other than 200 is an error. Blocks; safe on any thread after global init. */
apr_status_t ts_derp_fetch(apr_pool_t *p, const char *url, apr_interval_time_t timeout,
                           apr_size_t max_bytes, json_t **map, const char **err);

/* A URL source with its last good map: a background thread calls refresh periodically,
 * any thread calls get. The object lives until p is destroyed. */
typedef struct ts_derp_url ts_derp_url_t;

/* cache_path (may be NULL): file holding the last good map across restarts; loaded here when
 * present and valid (an invalid cache is ignored), rewritten atomically after each change. */
apr_status_t ts_derp_url_create(ts_derp_url_t **u, apr_pool_t *p, const char *url,
                                const char *cache_path, apr_interval_time_t timeout,
                                apr_size_t max_bytes);
/* Fetches once. On failure the last good map stays (error returned, from p). On success
 * *changed says whether the map differs from the previous one; if the cache file could not
 * be written the status is still APR_SUCCESS and *err holds a warning (else NULL).
 * One refresh at a time per source; concurrent gets are fine. */
apr_status_t ts_derp_url_refresh(ts_derp_url_t *u, apr_pool_t *p, int *changed,
                                 const char **err);
/* The last good map (new reference) or NULL; when it was obtained (0 if none). Any thread. */
json_t *ts_derp_url_get(ts_derp_url_t *u, apr_time_t *obtained);
const char *ts_derp_url_name(const ts_derp_url_t *u);

#endif
