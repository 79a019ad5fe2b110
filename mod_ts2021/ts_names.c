/* ts_names.c: hostname -> MagicDNS label, tailnet-wide de-duplication with numeric
 * suffixes, and validation of names an admin gives (control spec 5.3). */
#include "ts_names.h"

#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

/* Suffixes that only say "this network" and would make every laptop "x-local". */
static const char *const LOCAL_SUFFIXES[] = { ".localdomain", ".local", ".lan", NULL };

/* Generous: a tailnet with this many nodes of one name has bigger problems. */
#define NAMES_MAX_SUFFIX 1000000

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void strip_local_suffix(char *s)
{
    apr_size_t len = strlen(s);
    int i;

    while (len > 0 && s[len - 1] == '.') {
        s[--len] = '\0';
    }
    for (i = 0; LOCAL_SUFFIXES[i]; i++) {
        apr_size_t sl = strlen(LOCAL_SUFFIXES[i]);
        if (len > sl && strcmp(s + len - sl, LOCAL_SUFFIXES[i]) == 0) {
            s[len - sl] = '\0';
            return;
        }
    }
}

/* Drops '-' from both ends, in place; returns the new start. */
static char *trim_dashes(char *s)
{
    apr_size_t len;

    while (*s == '-') {
        s++;
    }
    len = strlen(s);
    while (len > 0 && s[len - 1] == '-') {
        s[--len] = '\0';
    }
    return s;
}

const char *ts_names_sanitize(apr_pool_t *p, const char *hostname)
{
    char *s = apr_pstrdup(p, hostname ? hostname : ""), *out = s, *in;

    for (in = s; *in; in++) {
        *in = (char)apr_tolower(*in);
    }
    strip_local_suffix(s);
    for (in = s; *in; in++) {
        if (is_alnum(*in) || *in == '-') {
            *out++ = *in;
        }
        else if (*in == ' ' || *in == '.' || *in == '@' || *in == '_') {
            *out++ = '-';
        }
        /* anything else (punctuation, UTF-8 bytes) is dropped */
    }
    *out = '\0';
    s = trim_dashes(s);
    if (strlen(s) > TS_NAMES_LABEL_MAX) {
        s[TS_NAMES_LABEL_MAX] = '\0';
        s = trim_dashes(s);
    }
    return *s ? s : "node";
}

apr_status_t ts_names_check(apr_pool_t *p, const char *name, const char *base_domain,
                            const char **err)
{
    apr_size_t len = name ? strlen(name) : 0, i;

    if (len == 0 || len > TS_NAMES_LABEL_MAX) {
        *err = apr_psprintf(p, "invalid name '%s': a DNS label has 1 to %d characters",
                            name ? name : "", TS_NAMES_LABEL_MAX);
        return APR_EINVAL;
    }
    for (i = 0; i < len; i++) {
        if (!is_alnum(name[i]) && name[i] != '-') {
            *err = apr_psprintf(p, "invalid name '%s': only lower-case letters, digits and "
                                "'-' are allowed", name);
            return APR_EINVAL;
        }
    }
    if (name[0] == '-' || name[len - 1] == '-') {
        *err = apr_psprintf(p, "invalid name '%s': it must not start or end with '-'", name);
        return APR_EINVAL;
    }
    if (base_domain && *base_domain
        && len + 1 + strlen(base_domain) + 1 > TS_NAMES_FQDN_MAX) {
        *err = apr_psprintf(p, "invalid name '%s': '%s' is longer than %d characters", name,
                            ts_names_fqdn(p, name, base_domain), TS_NAMES_FQDN_MAX);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

const char *ts_names_candidate(apr_pool_t *p, const char *base, int n)
{
    char suffix[16];
    char *head;
    apr_size_t room;

    if (n <= 0) {
        return base;
    }
    apr_snprintf(suffix, sizeof(suffix), "-%d", n);
    room = TS_NAMES_LABEL_MAX - strlen(suffix);
    head = apr_pstrndup(p, base, room);
    /* "abc-" + "-1" would make a double dash that the client did not ask for */
    head = trim_dashes(head);
    return apr_pstrcat(p, *head ? head : "node", suffix, NULL);
}

const char *ts_names_unique_in(apr_pool_t *p, const char *base, apr_int64_t self_id,
                               const apr_array_header_t *nodes)
{
    apr_hash_t *used = apr_hash_make(p);
    int i;

    for (i = 0; nodes && i < nodes->nelts; i++) {
        const ts_node_t *n = APR_ARRAY_IDX(nodes, i, const ts_node_t *);
        if (n->id != self_id && n->given_name) {
            apr_hash_set(used, n->given_name, APR_HASH_KEY_STRING, n);
        }
    }
    for (i = 0; i < NAMES_MAX_SUFFIX; i++) {
        const char *c = ts_names_candidate(p, base, i);
        if (!apr_hash_get(used, c, APR_HASH_KEY_STRING)) {
            return c;
        }
    }
    return ts_names_candidate(p, base, NAMES_MAX_SUFFIX);
}

const char *ts_names_suffix_prefix(apr_pool_t *p, const char *base)
{
    const char *longest = ts_names_candidate(p, base, NAMES_MAX_SUFFIX);
    const char *first = ts_names_candidate(p, base, 1);
    char suffix[16];
    apr_size_t head;

    apr_snprintf(suffix, sizeof(suffix), "-%d", NAMES_MAX_SUFFIX);
    head = strlen(longest) - strlen(suffix);
    /* a shorter suffix leaves room for a longer head, which starts with the shorter one */
    if (strlen(first) - 2 == head && strncmp(first, longest, head) == 0) {
        return apr_pstrndup(p, longest, head + 1);      /* one head for all: "base-" */
    }
    return apr_pstrndup(p, longest, head);
}

const char *ts_names_first_free(apr_pool_t *p, const char *base, const apr_array_header_t *taken)
{
    apr_hash_t *used = apr_hash_make(p);
    int i;

    for (i = 0; taken && i < taken->nelts; i++) {
        const char *name = APR_ARRAY_IDX(taken, i, const char *);
        if (name) {
            apr_hash_set(used, name, APR_HASH_KEY_STRING, name);
        }
    }
    /* at most taken->nelts candidates can be taken: the loop ends within that many + 1 */
    for (i = 1; i < NAMES_MAX_SUFFIX; i++) {
        const char *c = ts_names_candidate(p, base, i);
        if (!apr_hash_get(used, c, APR_HASH_KEY_STRING)) {
            return c;
        }
    }
    return ts_names_candidate(p, base, NAMES_MAX_SUFFIX);
}

apr_status_t ts_names_unique(ts_store_t *st, apr_pool_t *p, const char *base,
                             apr_int64_t self_id, const char **name, const char **err)
{
    int i;

    for (i = 0; i < NAMES_MAX_SUFFIX; i++) {
        const char *c = ts_names_candidate(p, base, i);
        ts_node_t *n = NULL;
        apr_status_t rv = ts_store_node_get_by_given_name(st, p, c, &n, err);
        if (rv == TS_STORE_ENOTFOUND || (rv == APR_SUCCESS && n->id == self_id)) {
            *name = c;
            return APR_SUCCESS;
        }
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    *err = apr_psprintf(p, "no free name derived from '%s'", base);
    return TS_STORE_ECONFLICT;
}

int ts_names_is_derived(apr_pool_t *p, const char *given_name, const char *hostname)
{
    const char *base = ts_names_sanitize(p, hostname);
    const char *dash;
    char *end;
    long n;

    if (!given_name) {
        return 0;
    }
    if (strcmp(given_name, base) == 0) {
        return 1;
    }
    dash = strrchr(given_name, '-');
    if (!dash || dash[1] < '1' || dash[1] > '9') {
        return 0;
    }
    n = strtol(dash + 1, &end, 10);
    if (*end || n <= 0 || n >= NAMES_MAX_SUFFIX) {
        return 0;
    }
    return strcmp(given_name, ts_names_candidate(p, base, (int)n)) == 0;
}

const char *ts_names_fqdn(apr_pool_t *p, const char *given_name, const char *base_domain)
{
    if (!base_domain || !*base_domain) {
        return given_name;
    }
    return apr_pstrcat(p, given_name, ".", base_domain, ".", NULL);
}
