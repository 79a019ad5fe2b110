/* ts_derp.c: DERPMap validation, parsing, file loading and merging. The rules follow what
 * clients need (control API 5.11, 7.3): never a null region, IDs that fit the legacy port form. */
#include "ts_derp.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_hash.h>
#include <arpa/inet.h>
#include <string.h>

/* Where an error is: "src: region \"900\"" or "src: region \"900\": node 1 (\"900b\")". */
typedef struct where {
    apr_pool_t *p;
    const char *src;
    const char *region;
    int node;                 /* -1: not inside a node */
    const char *node_name;
} where_t;

static apr_status_t fail(const where_t *w, const char **err, const char *field,
                         const char *why)
{
    const char *at = w->src;

    if (w->region) at = apr_psprintf(w->p, "%s: region \"%s\"", at, w->region);
    if (w->node >= 0)
        at = w->node_name ? apr_psprintf(w->p, "%s: node %d (\"%s\")", at, w->node,
                                         w->node_name)
                          : apr_psprintf(w->p, "%s: node %d", at, w->node);
    *err = field ? apr_psprintf(w->p, "%s: %s: %s", at, field, why)
                 : apr_psprintf(w->p, "%s: %s", at, why);
    return APR_EINVAL;
}

/* An optional integer field in [min, max]; required fields must be present. */
static int int_field(const json_t *o, const char *name, int required, json_int_t min,
                     json_int_t max, json_int_t *v, const char **why)
{
    const json_t *f = json_object_get(o, name);

    *v = 0;
    if (!f || json_is_null(f)) {
        if (required) *why = "missing";
        return required ? -1 : 0;
    }
    if (!json_is_integer(f)) {
        *why = "must be an integer";
        return -1;
    }
    *v = json_integer_value(f);
    if (*v < min || *v > max) {
        *why = "out of range";
        return -1;
    }
    return 0;
}

static int str_field(const json_t *o, const char *name, int required, const char **v,
                     const char **why)
{
    const json_t *f = json_object_get(o, name);

    *v = NULL;
    if (!f || json_is_null(f)) {
        if (required) *why = "missing";
        return required ? -1 : 0;
    }
    if (!json_is_string(f)) {
        *why = "must be a string";
        return -1;
    }
    *v = json_string_value(f);
    if (required && !**v) {
        *why = "must not be empty";
        return -1;
    }
    return 0;
}

static int bool_fields(const json_t *o, const char *const *names, const char **bad)
{
    for (; *names; names++) {
        const json_t *f = json_object_get(o, *names);
        if (f && !json_is_null(f) && !json_is_boolean(f)) {
            *bad = *names;
            return -1;
        }
    }
    return 0;
}

/* "" (resolve HostName), "none" (family disabled) or an address literal of that family. */
static int ip_ok(const char *s, int family)
{
    unsigned char buf[16];

    return !*s || !strcmp(s, "none") || inet_pton(family, s, buf) == 1;
}

static apr_status_t check_node_addrs(const where_t *w, const json_t *n, const char **err)
{
    const char *s, *why;
    json_int_t v;

    if (str_field(n, "IPv4", 0, &s, &why)) return fail(w, err, "IPv4", why);
    if (s && !ip_ok(s, AF_INET)) return fail(w, err, "IPv4", "not an IPv4 address or \"none\"");
    if (str_field(n, "IPv6", 0, &s, &why)) return fail(w, err, "IPv6", why);
    if (s && !ip_ok(s, AF_INET6)) return fail(w, err, "IPv6", "not an IPv6 address or \"none\"");
    if (str_field(n, "STUNTestIP", 0, &s, &why)) return fail(w, err, "STUNTestIP", why);
    if (s && *s && !ip_ok(s, AF_INET) && !ip_ok(s, AF_INET6))
        return fail(w, err, "STUNTestIP", "not an IP address");
    /* -1 disables STUN; 0 means the default port (3478 / 443). */
    if (int_field(n, "STUNPort", 0, -1, 65535, &v, &why)) return fail(w, err, "STUNPort", why);
    if (int_field(n, "DERPPort", 0, 0, 65535, &v, &why)) return fail(w, err, "DERPPort", why);
    return APR_SUCCESS;
}

static apr_status_t check_node(where_t *w, const json_t *n, json_int_t region_id,
                               apr_hash_t *names, const char **err)
{
    static const char *const bools[] = { "STUNOnly", "InsecureForTests", "CanPort80", NULL };
    const char *name, *host, *why, *bad;
    json_int_t rid;

    w->node_name = NULL;
    if (!json_is_object(n)) return fail(w, err, NULL, "must be an object");
    if (str_field(n, "Name", 1, &name, &why)) return fail(w, err, "Name", why);
    w->node_name = name;
    if (apr_hash_get(names, name, APR_HASH_KEY_STRING))
        return fail(w, err, "Name", "used by another node of the map");
    apr_hash_set(names, name, APR_HASH_KEY_STRING, name);
    if (int_field(n, "RegionID", 1, 1, TS_DERP_REGION_MAX, &rid, &why))
        return fail(w, err, "RegionID", why);
    if (rid != region_id) return fail(w, err, "RegionID", "differs from its region's ID");
    if (str_field(n, "HostName", 1, &host, &why)) return fail(w, err, "HostName", why);
    if (str_field(n, "CertName", 0, &host, &why)) return fail(w, err, "CertName", why);
    if (bool_fields(n, bools, &bad)) return fail(w, err, bad, "must be true or false");
    return check_node_addrs(w, n, err);
}

/* Region keys are canonical decimal: "900", never "0900", "+9" or "9.0". */
static json_int_t region_key_id(const char *key)
{
    json_int_t v = 0;
    const char *c;

    if (!*key || *key == '0' || strlen(key) > 5) return -1;
    for (c = key; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        v = v * 10 + (*c - '0');
    }
    return v <= TS_DERP_REGION_MAX ? v : -1;
}

static apr_status_t check_region_fields(const where_t *w, const json_t *r, json_int_t id,
                                        const char **err)
{
    static const char *const bools[] = { "Avoid", "NoMeasureNoHome", NULL };
    const char *s, *why, *bad;
    json_int_t rid;
    const json_t *f;

    if (int_field(r, "RegionID", 1, 1, TS_DERP_REGION_MAX, &rid, &why))
        return fail(w, err, "RegionID", why);
    if (rid != id) return fail(w, err, "RegionID", "differs from the region's key");
    if (str_field(r, "RegionCode", 1, &s, &why)) return fail(w, err, "RegionCode", why);
    if (str_field(r, "RegionName", 0, &s, &why)) return fail(w, err, "RegionName", why);
    if (bool_fields(r, bools, &bad)) return fail(w, err, bad, "must be true or false");
    if ((f = json_object_get(r, "Latitude")) && !json_is_number(f))
        return fail(w, err, "Latitude", "must be a number");
    if ((f = json_object_get(r, "Longitude")) && !json_is_number(f))
        return fail(w, err, "Longitude", "must be a number");
    return APR_SUCCESS;
}

static apr_status_t check_region(where_t *w, const char *key, const json_t *r,
                                 apr_hash_t *names, const char **err)
{
    json_int_t id = region_key_id(key);
    const json_t *nodes, *n;
    apr_status_t rv;
    size_t i;

    w->region = key;
    w->node = -1;
    if (id < 0) return fail(w, err, NULL, "region key must be a decimal ID from 1 to 65535");
    if (json_is_null(r)) return fail(w, err, NULL, "region is null");
    if (!json_is_object(r)) return fail(w, err, NULL, "region must be an object");
    if ((rv = check_region_fields(w, r, id, err))) return rv;
    nodes = json_object_get(r, "Nodes");
    if (!json_is_array(nodes)) return fail(w, err, "Nodes", "must be an array of nodes");
    if (!json_array_size(nodes)) return fail(w, err, "Nodes", "region has no nodes");
    json_array_foreach(nodes, i, n) {
        w->node = (int)i;
        if ((rv = check_node(w, n, id, names, err))) return rv;
    }
    w->node = -1;
    return APR_SUCCESS;
}

apr_status_t ts_derp_validate(apr_pool_t *p, const char *source, const json_t *map,
                              const char **err)
{
    where_t w = { p, source, NULL, -1, NULL };
    const json_t *regions, *r, *f;
    apr_hash_t *names = apr_hash_make(p);
    const char *key;
    apr_status_t rv;

    if (!json_is_object(map)) return fail(&w, err, NULL, "DERP map must be a JSON object");
    regions = json_object_get(map, "Regions");
    if (!json_is_object(regions))
        return fail(&w, err, "Regions", "missing or not an object keyed by region ID");
    if (!json_object_size(regions)) return fail(&w, err, "Regions", "no regions");
    if ((f = json_object_get(map, "HomeParams")) && !json_is_null(f) && !json_is_object(f))
        return fail(&w, err, "HomeParams", "must be an object");
    if ((f = json_object_get(map, "omitDefaultRegions")) && !json_is_boolean(f))
        return fail(&w, err, "omitDefaultRegions", "must be true or false");
    json_object_foreach((json_t *)regions, key, r) {
        if ((rv = check_region(&w, key, r, names, err))) return rv;
    }
    return APR_SUCCESS;
}

apr_status_t ts_derp_parse(apr_pool_t *p, const char *source, const char *text,
                           apr_size_t len, json_t **map, const char **err)
{
    json_error_t je;
    json_t *m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    apr_status_t rv;

    if (!m) {
        *err = apr_psprintf(p, "%s:%d:%d: %s", source, je.line, je.column, je.text);
        return APR_EINVAL;
    }
    if ((rv = ts_derp_validate(p, source, m, err))) {
        json_decref(m);
        return rv;
    }
    *map = m;
    return APR_SUCCESS;
}

apr_status_t ts_derp_load_file(apr_pool_t *p, const char *path, json_t **map,
                               const char **err)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n;
    apr_status_t rv;
    char *buf;

    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p);
    if (rv == APR_SUCCESS) rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    if (rv != APR_SUCCESS) {
        char msg[120];
        *err = apr_psprintf(p, "%s: cannot read DERP map: %s", path,
                            apr_strerror(rv, msg, sizeof(msg)));
        return rv;
    }
    if (fi.size > (apr_off_t)TS_DERP_FETCH_MAX_BYTES) {
        apr_file_close(f);
        *err = apr_psprintf(p, "%s: DERP map larger than %lu bytes", path,
                            (unsigned long)TS_DERP_FETCH_MAX_BYTES);
        return APR_EINVAL;
    }
    n = (apr_size_t)fi.size;
    buf = apr_palloc(p, n + 1);
    rv = apr_file_read_full(f, buf, n, &n);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        *err = apr_psprintf(p, "%s: cannot read DERP map", path);
        return rv;
    }
    return ts_derp_parse(p, path, buf, n, map, err);
}

apr_status_t ts_derp_merge(apr_pool_t *p, json_t *const *maps, int n, json_t **out,
                           const char **err)
{
    json_t *m = json_object(), *regions = json_object();
    const char *key;
    json_t *v;
    int i;

    json_object_set_new(m, "Regions", regions);
    for (i = 0; i < n; i++) {
        if (!maps[i]) continue;
        json_object_foreach(maps[i], key, v) {
            if (strcmp(key, "Regions")) json_object_set(m, key, v);
        }
        json_object_foreach(json_object_get(maps[i], "Regions"), key, v) {
            if (json_is_object(v)) json_object_set(regions, key, v);
        }
    }
    if (!json_object_size(regions)) {
        json_decref(m);
        *err = apr_pstrdup(p, "no DERP region from any source");
        return APR_ENOENT;
    }
    *out = m;
    return APR_SUCCESS;
}

char *ts_derp_text(apr_pool_t *p, const json_t *map, apr_size_t *len)
{
    char *s = json_dumps(map, JSON_COMPACT), *r;

    if (!s) return NULL;
    *len = strlen(s);
    r = apr_pstrmemdup(p, s, *len);
    free(s);
    return r;
}

int ts_derp_region_count(const json_t *map)
{
    return map ? (int)json_object_size(json_object_get(map, "Regions")) : 0;
}
