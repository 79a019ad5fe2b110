/* ts_dnsconf.c: DNS directives checked and merged into the extra tailcfg.DNSConfig object
 * (control API 5.8). */
#include "ts_dnsconf.h"

#include <apr_strings.h>
#include <apr_lib.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define DNSCONF_NAME_MAX 253
#define DNSCONF_URL_MAX 1024

static int dnsconf_is_ip(const char *s, int *family)
{
    unsigned char buf[16];

    if (inet_pton(AF_INET, s, buf) == 1) {
        *family = 4;
        return 1;
    }
    if (inet_pton(AF_INET6, s, buf) == 1) {
        *family = 6;
        return 1;
    }
    return 0;
}

/* Letters, digits, hyphens and underscores in labels of 1..63, not starting or ending with a
 * hyphen; an optional single trailing dot. */
static int dnsconf_name_ok(const char *s)
{
    size_t len = strlen(s), label = 0, i;

    if (len && s[len - 1] == '.') len--;
    if (len == 0 || len > DNSCONF_NAME_MAX) return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') return 0;
            label = 0;
            continue;
        }
        if (!apr_isalnum(c) && c != '-' && c != '_') return 0;
        if (c == '-' && label == 0) return 0;
        if (++label > 63) return 0;
    }
    return s[len - 1] != '-';
}

const char *ts_dnsconf_check_resolver(apr_pool_t *p, const char *addr)
{
    int family;
    size_t i;

    if (dnsconf_is_ip(addr, &family)) return NULL;
    if (strncmp(addr, "https://", 8) == 0 && strlen(addr) > 8 && strlen(addr) <= DNSCONF_URL_MAX) {
        for (i = 8; addr[i]; i++) {
            unsigned char c = (unsigned char)addr[i];

            if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\') break;
        }
        if (!addr[i] && addr[8] != '/') return NULL;
    }
    return apr_psprintf(p, "'%s' is not an IP address or an https:// DNS-over-HTTPS URL", addr);
}

const char *ts_dnsconf_check_domain(apr_pool_t *p, const char *domain)
{
    if (dnsconf_name_ok(domain)) return NULL;
    return apr_psprintf(p, "'%s' is not a DNS name", domain);
}

const char *ts_dnsconf_check_record(apr_pool_t *p, const char *name, const char *type,
                                    const char *value)
{
    int family;

    if (!dnsconf_name_ok(name)) return apr_psprintf(p, "'%s' is not a DNS name", name);
    if (strcasecmp(type, "A") && strcasecmp(type, "AAAA")) {
        return apr_psprintf(p, "record type '%s': only A and AAAA are used by clients", type);
    }
    if (!dnsconf_is_ip(value, &family) || family != (strcasecmp(type, "A") ? 6 : 4)) {
        return apr_psprintf(p, "'%s' is not an IPv%d address for an %s record", value,
                            strcasecmp(type, "A") ? 6 : 4, strcasecmp(type, "A") ? "AAAA" : "A");
    }
    return NULL;
}

const char *ts_dnsconf_domain(apr_pool_t *p, const char *domain)
{
    char *d = apr_pstrdup(p, domain), *c;
    size_t len = strlen(d);

    if (len && d[len - 1] == '.') d[len - 1] = '\0';
    for (c = d; *c; c++) *c = (char)apr_tolower(*c);
    return d;
}

/* The field of o named key, created as an empty value of the same kind as proto when absent;
 * NULL when present with another type. */
static json_t *dnsconf_field(json_t *o, const char *key, int want_array)
{
    json_t *v = json_object_get(o, key);

    if (!v) {
        v = want_array ? json_array() : json_object();
        if (json_object_set_new(o, key, v) != 0) return NULL;
        return v;
    }
    if (want_array ? !json_is_array(v) : !json_is_object(v)) return NULL;
    return v;
}

static int dnsconf_has_resolver(const json_t *arr, const char *addr)
{
    size_t i;
    json_t *r;

    json_array_foreach(arr, i, r) {
        const char *a = json_string_value(json_object_get(r, "Addr"));

        if (a && strcmp(a, addr) == 0) return 1;
    }
    return 0;
}

static int dnsconf_has_string(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v) {
        if (json_is_string(v) && strcasecmp(json_string_value(v), s) == 0) return 1;
    }
    return 0;
}

static json_t *dnsconf_resolver_list(const apr_array_header_t *addrs)
{
    json_t *arr = json_array();
    int i;

    for (i = 0; arr && addrs && i < addrs->nelts; i++) {
        const char *a = APR_ARRAY_IDX(addrs, i, const char *);

        if (!dnsconf_has_resolver(arr, a))
            json_array_append_new(arr, json_pack("{s:s}", "Addr", a));
    }
    return arr;
}

static const char *dnsconf_wrong(apr_pool_t *p, const char *field, int want_array)
{
    return apr_psprintf(p, "DNS config: \"%s\" must be %s to add the directives' values to it",
                        field, want_array ? "an array" : "an object");
}

static apr_status_t dnsconf_apply(apr_pool_t *p, json_t *o, const ts_dnsconf_t *d,
                                  const char **err)
{
    const char *key;
    json_t *arr, *routes;
    int i;

    if (d->nameservers && d->nameservers->nelts) {
        key = d->override_local == 0 ? "FallbackResolvers" : "Resolvers";
        if (!(arr = dnsconf_field(o, key, 1))) {
            *err = dnsconf_wrong(p, key, 1);
            return APR_EINVAL;
        }
        for (i = 0; i < d->nameservers->nelts; i++) {
            const char *a = APR_ARRAY_IDX(d->nameservers, i, const char *);

            if (!dnsconf_has_resolver(arr, a))
                json_array_append_new(arr, json_pack("{s:s}", "Addr", a));
        }
    }
    if (d->split && d->split->nelts) {
        if (!(routes = dnsconf_field(o, "Routes", 0))) {
            *err = dnsconf_wrong(p, "Routes", 0);
            return APR_EINVAL;
        }
        for (i = 0; i < d->split->nelts; i++) {
            const ts_dnsconf_split_t *sp = &APR_ARRAY_IDX(d->split, i, ts_dnsconf_split_t);
            const char *k = apr_pstrcat(p, ts_dnsconf_domain(p, sp->domain), ".", NULL);

            json_object_set_new(routes, k, dnsconf_resolver_list(sp->resolvers));
        }
    }
    if (d->search && d->search->nelts) {
        if (!(arr = dnsconf_field(o, "Domains", 1))) {
            *err = dnsconf_wrong(p, "Domains", 1);
            return APR_EINVAL;
        }
        for (i = 0; i < d->search->nelts; i++) {
            const char *s = ts_dnsconf_domain(p, APR_ARRAY_IDX(d->search, i, const char *));

            if (!dnsconf_has_string(arr, s)) json_array_append_new(arr, json_string(s));
        }
    }
    if (d->records && d->records->nelts) {
        if (!(arr = dnsconf_field(o, "ExtraRecords", 1))) {
            *err = dnsconf_wrong(p, "ExtraRecords", 1);
            return APR_EINVAL;
        }
        for (i = 0; i < d->records->nelts; i++) {
            const ts_dnsconf_record_t *r = &APR_ARRAY_IDX(d->records, i, ts_dnsconf_record_t);
            const char *type = strcasecmp(r->type, "A") ? "AAAA" : "A";

            json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "Name",
                                                 ts_dnsconf_domain(p, r->name), "Type", type,
                                                 "Value", r->value));
        }
    }
    return APR_SUCCESS;
}

apr_status_t ts_dnsconf_merge(apr_pool_t *p, const char *base, const ts_dnsconf_t *d,
                              const char **out, const char **err)
{
    json_error_t je;
    json_t *o;
    apr_status_t rv = APR_SUCCESS;
    char *text;

    *out = NULL;
    *err = NULL;
    o = base ? json_loads(base, 0, &je) : json_object();
    if (!json_is_object(o)) {
        *err = apr_psprintf(p, "DNS config: not a JSON object%s%s", o ? "" : ": ",
                            o ? "" : je.text);
        json_decref(o);
        return APR_EINVAL;
    }
    if (d) rv = dnsconf_apply(p, o, d, err);
    if (rv == APR_SUCCESS && json_object_size(o)) {
        text = json_dumps(o, JSON_COMPACT);
        if (!text) {
            *err = "DNS config: out of memory";
            rv = APR_ENOMEM;
        }
        else {
            *out = apr_pstrdup(p, text);
            free(text);
        }
    }
    json_decref(o);
    return rv;
}
