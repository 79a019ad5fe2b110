/* ts2021ctl_conf.c: where ts2021ctl finds its database and tailnet settings: options,
 * durations, DBDriver/DBDParams and TS2021* directives read from an Apache configuration. */
#include "ts2021ctl.h"
#include "ts_ipalloc.h"
#include "ts_register.h"

#include <apr_strings.h>
#include <apr_lib.h>
#include <apr_file_io.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define INCLUDE_DEPTH 16

typedef struct {
    const char *name;
    int has_arg;
} opt_def_t;

static const opt_def_t OPTIONS[] = {
    { "db-driver", 1 }, { "db-params", 1 }, { "apache-config", 1 }, { "vhost", 1 },
    { "json", 0 }, { "help", 0 }, { "server-url", 1 }, { "base-domain", 1 },
    { "ipv4-prefix", 1 }, { "ipv6-prefix", 1 }, { "ip-allocation", 1 }, { "node-expiry", 1 },
    { "user", 1 }, { "reusable", 0 }, { "ephemeral", 0 }, { "expiration", 1 }, { "tags", 1 },
    { "description", 1 }, { "display-name", 1 }, { "email", 1 }, { "force", 0 },
    { "reason", 1 }, { "node", 1 }, { NULL, 0 }
};

const char CTL_GLOBAL_HELP[] =
    "Global options (anywhere on the line):\n"
    "  --db-driver sqlite3|mysql --db-params PARAMS   the database, as DBDriver/DBDParams\n"
    "  --apache-config FILE [--vhost NAME]           or read them from an Apache config\n"
    "  --json                                        machine-readable output\n"
    "  --server-url URL --base-domain DOMAIN --ipv4-prefix P|none --ipv6-prefix P|none\n"
    "  --ip-allocation sequential|random --node-expiry DURATION\n"
    "                                                tailnet settings for 'nodes register'\n"
    "                                                (default: the config's TS2021* values)\n";

int ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("ts2021ctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

/* ---- arguments ---- */

const char *ctl_opt(ctl_t *c, const char *name)
{
    return apr_hash_get(c->opts, name, APR_HASH_KEY_STRING);
}

static const opt_def_t *opt_find(const char *name)
{
    int i;

    for (i = 0; OPTIONS[i].name; i++) {
        if (strcmp(OPTIONS[i].name, name) == 0) {
            return &OPTIONS[i];
        }
    }
    return NULL;
}

/* Splits argv into options and words; 0, or an exit code after a message. */
int ctl_parse_argv(ctl_t *c, int argc, const char *const *argv, apr_array_header_t *words)
{
    int i, dashdash = 0;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *eq, *name;
        const opt_def_t *d;
        if (dashdash || a[0] != '-' || !a[1]) {
            APR_ARRAY_PUSH(words, const char *) = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = 1;
            continue;
        }
        name = strcmp(a, "-h") == 0 ? "help" : (a[1] == '-' ? a + 2 : a + 1);
        eq = strchr(name, '=');
        if (eq) {
            name = apr_pstrmemdup(c->p, name, (apr_size_t)(eq - name));
        }
        if (!(d = opt_find(name))) {
            return ctl_fail(EXIT_USAGE, "unknown option '%s' (see --help)", a);
        }
        if (d->has_arg && !eq && i + 1 >= argc) {
            return ctl_fail(EXIT_USAGE, "option --%s needs a value", name);
        }
        if (!d->has_arg && eq) {
            return ctl_fail(EXIT_USAGE, "option --%s takes no value", name);
        }
        apr_hash_set(c->opts, d->name, APR_HASH_KEY_STRING,
                     d->has_arg ? (eq ? eq + 1 : argv[++i]) : "");
    }
    return 0;
}

/* Only the global options and those listed are accepted by a command. */
int ctl_check_opts(ctl_t *c, const char *const *allowed)
{
    static const char *const global[] = { "db-driver", "db-params", "apache-config", "vhost",
        "json", "help", "server-url", "base-domain", "ipv4-prefix", "ipv6-prefix",
        "ip-allocation", "node-expiry", NULL };
    apr_hash_index_t *hi;
    int i, ok;

    for (hi = apr_hash_first(c->p, c->opts); hi; hi = apr_hash_next(hi)) {
        const char *name = apr_hash_this_key(hi);
        for (ok = 0, i = 0; !ok && global[i]; i++) ok = !strcmp(name, global[i]);
        for (i = 0; !ok && allowed && allowed[i]; i++) ok = !strcmp(name, allowed[i]);
        if (!ok) {
            return ctl_fail(EXIT_USAGE, "'%s %s' takes no option --%s (see %s %s --help)",
                        c->group, c->verb, name, c->group, c->verb);
        }
    }
    return 0;
}

/* "90", "30s", "15m"/"15mi", "36h", "7d", "2w", "1h30m", "500ms"; -1 if malformed. */
apr_interval_time_t ctl_parse_duration(const char *s)
{
    apr_interval_time_t total = 0;
    char *end;

    if (!s || !*s) {
        return -1;
    }
    while (*s) {
        long long n = strtoll(s, &end, 10);
        apr_interval_time_t unit;
        if (end == s || n < 0) return -1;
        s = end;
        if (!strncmp(s, "ms", 2)) { unit = 1000; s += 2; }
        else if (!strncmp(s, "mi", 2)) { unit = apr_time_from_sec(60); s += 2; }
        else if (*s == 's' || !*s) { unit = apr_time_from_sec(1); s += *s ? 1 : 0; }
        else if (*s == 'm') { unit = apr_time_from_sec(60); s++; }
        else if (*s == 'h') { unit = apr_time_from_sec(3600); s++; }
        else if (*s == 'd') { unit = apr_time_from_sec(86400); s++; }
        else if (*s == 'w') { unit = apr_time_from_sec(7 * 86400); s++; }
        else return -1;
        if (n > 10LL * 366 * 86400 * 1000) return -1;
        total += (apr_interval_time_t)n * unit;
    }
    return total;
}

/* ---- Apache configuration (DBDriver/DBDParams and the TS2021 tailnet directives) ---- */

typedef struct {
    const char *label;            /* "<VirtualHost *:443> in FILE:LINE" */
    apr_array_header_t *names;    /* ServerName, ServerAlias */
    apr_hash_t *vals;             /* lower-case directive -> value */
} ac_host_t;

typedef struct {
    apr_pool_t *p;
    const char *root;             /* ServerRoot */
    apr_hash_t *defines;
    ac_host_t *main, *cur;
    apr_array_header_t *vhosts;
    const char *err;
} ac_t;

static ac_host_t *ac_host(apr_pool_t *p, const char *label)
{
    ac_host_t *h = apr_pcalloc(p, sizeof(*h));

    h->label = label;
    h->names = apr_array_make(p, 2, sizeof(char *));
    h->vals = apr_hash_make(p);
    return h;
}

/* ${NAME} from Define, else from the environment; unknown ones are left as written. */
static const char *ac_expand(ac_t *ac, const char *s)
{
    const char *open, *close, *v;

    while ((open = strstr(s, "${")) && (close = strchr(open, '}'))) {
        const char *name = apr_pstrmemdup(ac->p, open + 2, (apr_size_t)(close - open - 2));
        v = apr_hash_get(ac->defines, name, APR_HASH_KEY_STRING);
        v = v ? v : getenv(name);
        if (!v) break;
        s = apr_pstrcat(ac->p, apr_pstrmemdup(ac->p, s, (apr_size_t)(open - s)), v, close + 1,
                        NULL);
    }
    return s;
}

/* Words of a directive line, honouring "double" and 'single' quotes. */
static apr_array_header_t *ac_words(apr_pool_t *p, const char *line)
{
    apr_array_header_t *w = apr_array_make(p, 4, sizeof(char *));

    while (*line) {
        const char *start;
        while (apr_isspace(*line)) line++;
        if (!*line) break;
        if (*line == '"' || *line == '\'') {
            char q = *line++;
            start = line;
            while (*line && *line != q) line++;
            APR_ARRAY_PUSH(w, char *) = apr_pstrmemdup(p, start, (apr_size_t)(line - start));
            if (*line) line++;
        }
        else {
            start = line;
            while (*line && !apr_isspace(*line)) line++;
            APR_ARRAY_PUSH(w, char *) = apr_pstrmemdup(p, start, (apr_size_t)(line - start));
        }
    }
    return w;
}

static int ac_file(ac_t *ac, const char *path, int depth, int optional);

static int ac_include(ac_t *ac, const char *pattern, int depth, int optional)
{
    glob_t g;
    struct stat sb;
    size_t i;
    int rv = 0;
    const char *path = pattern[0] == '/' ? pattern
                     : apr_pstrcat(ac->p, ac->root, "/", pattern, NULL);

    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        path = apr_pstrcat(ac->p, path, "/*", NULL);
    }
    if (glob(path, 0, NULL, &g) != 0) {
        if (optional || strpbrk(path, "*?[")) {
            return 0;
        }
        ac->err = apr_psprintf(ac->p, "Include %s: no such file", path);
        return -1;
    }
    for (i = 0; rv == 0 && i < g.gl_pathc; i++) {
        if (stat(g.gl_pathv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            rv = ac_include(ac, g.gl_pathv[i], depth + 1, optional);
        }
        else {
            rv = ac_file(ac, apr_pstrdup(ac->p, g.gl_pathv[i]), depth + 1, optional);
        }
    }
    globfree(&g);
    return rv;
}

static int ac_directive(ac_t *ac, apr_array_header_t *w, const char *where, int depth)
{
    const char *d = APR_ARRAY_IDX(w, 0, const char *);
    const char *a1 = w->nelts > 1 ? ac_expand(ac, APR_ARRAY_IDX(w, 1, const char *)) : NULL;
    int i;

    if (!strcasecmp(d, "<VirtualHost")) {
        ac->cur = ac_host(ac->p, apr_psprintf(ac->p, "<VirtualHost %s> at %s", a1 ? a1 : "",
                                              where));
        APR_ARRAY_PUSH(ac->vhosts, ac_host_t *) = ac->cur;
    }
    else if (!strcasecmp(d, "</VirtualHost>")) {
        ac->cur = ac->main;
    }
    else if ((!strcasecmp(d, "Include") || !strcasecmp(d, "IncludeOptional")) && a1) {
        return ac_include(ac, a1, depth, !strcasecmp(d, "IncludeOptional"));
    }
    else if (!strcasecmp(d, "ServerRoot") && a1) {
        ac->root = a1;
    }
    else if (!strcasecmp(d, "Define") && a1) {
        apr_hash_set(ac->defines, a1, APR_HASH_KEY_STRING,
                     w->nelts > 2 ? ac_expand(ac, APR_ARRAY_IDX(w, 2, const char *)) : "");
    }
    else if (!strcasecmp(d, "ServerName") || !strcasecmp(d, "ServerAlias")) {
        for (i = 1; i < w->nelts; i++) {
            APR_ARRAY_PUSH(ac->cur->names, const char *) =
                ac_expand(ac, APR_ARRAY_IDX(w, i, const char *));
        }
    }
    else if (a1) {
        char *key = apr_pstrdup(ac->p, d);
        for (i = 0; key[i]; i++) key[i] = (char)apr_tolower(key[i]);
        apr_hash_set(ac->cur->vals, key, APR_HASH_KEY_STRING, a1);
    }
    return 0;
}

static int ac_file(ac_t *ac, const char *path, int depth, int optional)
{
    apr_file_t *f;
    char buf[8192];
    const char *line = NULL;
    int lineno = 0;

    if (depth > INCLUDE_DEPTH) {
        ac->err = apr_psprintf(ac->p, "%s: Include nested too deeply", path);
        return -1;
    }
    if (apr_file_open(&f, path, APR_FOPEN_READ, 0, ac->p) != APR_SUCCESS) {
        if (optional) return 0;
        ac->err = apr_psprintf(ac->p, "cannot read the Apache config file %s", path);
        return -1;
    }
    while (apr_file_gets(buf, sizeof(buf), f) == APR_SUCCESS) {
        apr_size_t len = strlen(buf);
        lineno++;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
        line = line ? apr_pstrcat(ac->p, line, buf, NULL) : apr_pstrdup(ac->p, buf);
        if (len && buf[len - 1] == '\\') {          /* continued on the next line */
            ((char *)line)[strlen(line) - 1] = ' ';
            continue;
        }
        while (apr_isspace(*line)) line++;
        if (*line && *line != '#') {
            apr_array_header_t *w = ac_words(ac->p, line);
            if (w->nelts && ac_directive(ac, w, apr_psprintf(ac->p, "%s:%d", path, lineno),
                                         depth) != 0) {
                apr_file_close(f);
                return -1;
            }
        }
        line = NULL;
    }
    apr_file_close(f);
    return 0;
}

/* A directive of a host, falling back to the main server's. */
static const char *ac_get(ac_t *ac, ac_host_t *h, const char *key)
{
    const char *v = apr_hash_get(h->vals, key, APR_HASH_KEY_STRING);

    return v ? v : apr_hash_get(ac->main->vals, key, APR_HASH_KEY_STRING);
}

static int ac_matches(ac_host_t *h, const char *name)
{
    int i;

    for (i = 0; i < h->names->nelts; i++) {
        const char *n = APR_ARRAY_IDX(h->names, i, const char *);
        const char *colon = strrchr(n, ':');
        if (!strcasecmp(n, name) || (colon && strlen(name) == (apr_size_t)(colon - n)
                                     && !strncasecmp(n, name, strlen(name)))) {
            return 1;
        }
    }
    return 0;
}

static const char *ac_host_name(ac_host_t *h)
{
    return h->names->nelts ? APR_ARRAY_IDX(h->names, 0, const char *) : h->label;
}

/* The one host whose database to use: --vhost's, or the only distinct one. */
static int ac_pick(ctl_t *c, ac_t *ac, const char *file, ac_host_t **out)
{
    const char *vhost = ctl_opt(c, "vhost"), *names = NULL, *first_db = NULL;
    int i, distinct = 0, any_on = 0;

    for (i = 0; i < ac->vhosts->nelts; i++) {
        ac_host_t *h = APR_ARRAY_IDX(ac->vhosts, i, ac_host_t *);
        const char *on = ac_get(ac, h, "ts2021");
        any_on |= on && !strcasecmp(on, "on");
    }
    *out = NULL;
    for (i = 0; i < ac->vhosts->nelts; i++) {
        ac_host_t *h = APR_ARRAY_IDX(ac->vhosts, i, ac_host_t *);
        const char *on = ac_get(ac, h, "ts2021"), *db;
        if (vhost ? !ac_matches(h, vhost) : (any_on && !(on && !strcasecmp(on, "on")))) {
            continue;
        }
        db = apr_pstrcat(c->p, ac_get(ac, h, "dbdriver") ? ac_get(ac, h, "dbdriver") : "",
                         "|", ac_get(ac, h, "dbdparams") ? ac_get(ac, h, "dbdparams") : "", NULL);
        names = names ? apr_pstrcat(c->p, names, ", ", ac_host_name(h), NULL) : ac_host_name(h);
        if (!first_db || strcmp(first_db, db) != 0) distinct++;
        first_db = first_db ? first_db : db;
        *out = *out ? *out : h;
    }
    if (vhost && !*out) {
        return ctl_fail(1, "%s has no <VirtualHost> named '%s'", file, vhost);
    }
    if (distinct > 1) {
        return ctl_fail(EXIT_USAGE, "%s has virtual hosts with different databases (%s): choose "
                    "one with --vhost NAME", file, names);
    }
    *out = *out ? *out : ac->main;
    return 0;
}

static int load_apache_config(ctl_t *c, const char *file, const char **driver,
                              const char **params)
{
    ac_t ac;
    ac_host_t *h;
    char *dir = apr_pstrdup(c->p, file), *slash = strrchr(dir, '/');
    int rv;

    memset(&ac, 0, sizeof(ac));
    ac.p = c->p;
    ac.root = slash ? (*slash = '\0', *dir ? dir : "/") : ".";
    ac.defines = apr_hash_make(c->p);
    ac.main = ac.cur = ac_host(c->p, "the main server");
    ac.vhosts = apr_array_make(c->p, 4, sizeof(ac_host_t *));
    if (ac_file(&ac, file, 0, 0) != 0) {
        return ctl_fail(1, "%s", ac.err);
    }
    if ((rv = ac_pick(c, &ac, file, &h)) != 0) {
        return rv;
    }
    *driver = ac_get(&ac, h, "dbdriver");
    *params = ac_get(&ac, h, "dbdparams");
    if (!*driver || !*params) {
        return ctl_fail(1, "%s: no DBDriver and DBDParams for %s", file, ac_host_name(h));
    }
#define FROM_CONF(field, key) if (ac_get(&ac, h, key)) c->conf.field = ac_get(&ac, h, key)
    FROM_CONF(server_url, "ts2021serverurl");
    FROM_CONF(base_domain, "ts2021basedomain");
    FROM_CONF(ipv4_prefix, "ts2021ipv4prefix");
    FROM_CONF(ipv6_prefix, "ts2021ipv6prefix");
    FROM_CONF(policy_file, "ts2021policyfile");
#undef FROM_CONF
    if (c->conf.policy_file && c->conf.policy_file[0] != '/') {
        /* Apache resolves it against ServerRoot, which ac.root stands for */
        c->conf.policy_file = apr_pstrcat(c->p, ac.root, "/", c->conf.policy_file, NULL);
    }
    if (ac_get(&ac, h, "ts2021ipallocation")) {
        c->conf.ipalloc = strcasecmp(ac_get(&ac, h, "ts2021ipallocation"), "random") == 0
            ? TS_IPALLOC_RANDOM : TS_IPALLOC_SEQUENTIAL;
    }
    if (ac_get(&ac, h, "ts2021nodeexpiry")) {
        c->conf.node_expiry = ctl_parse_duration(ac_get(&ac, h, "ts2021nodeexpiry"));
    }
    return 0;
}

/* ---- database and tailnet ---- */

static int setup_conf(ctl_t *c)
{
    const char *v;
    const char *err = NULL;

    if ((v = ctl_opt(c, "server-url"))) c->conf.server_url = v;
    if ((v = ctl_opt(c, "base-domain"))) c->conf.base_domain = v;
    if ((v = ctl_opt(c, "ipv4-prefix"))) c->conf.ipv4_prefix = v;
    if ((v = ctl_opt(c, "ipv6-prefix"))) c->conf.ipv6_prefix = v;
    if ((v = ctl_opt(c, "ip-allocation"))) {
        if (strcmp(v, "sequential") && strcmp(v, "random")) {
            return ctl_fail(EXIT_USAGE, "--ip-allocation: '%s' is not sequential or random", v);
        }
        c->conf.ipalloc = strcmp(v, "random") ? TS_IPALLOC_SEQUENTIAL : TS_IPALLOC_RANDOM;
    }
    if ((v = ctl_opt(c, "node-expiry")) && (c->conf.node_expiry = ctl_parse_duration(v)) < 0) {
        return ctl_fail(EXIT_USAGE, "--node-expiry: '%s' is not a duration (e.g. 0, 90d, 36h)", v);
    }
    if (c->conf.node_expiry < 0) {
        return ctl_fail(EXIT_USAGE, "TS2021NodeExpiry in the Apache config is not a duration");
    }
    if (c->conf.ipv4_prefix && !strcasecmp(c->conf.ipv4_prefix, "none")) c->conf.ipv4_prefix = NULL;
    if (c->conf.ipv6_prefix && !strcasecmp(c->conf.ipv6_prefix, "none")) c->conf.ipv6_prefix = NULL;
    if ((c->conf.ipv4_prefix && ts_ipalloc_check_prefix(c->p, c->conf.ipv4_prefix, 4, &err))
        || (c->conf.ipv6_prefix
            && ts_ipalloc_check_prefix(c->p, c->conf.ipv6_prefix, 6, &err))) {
        return ctl_fail(EXIT_USAGE, "%s", err);
    }
    return 0;
}

int ctl_open_db(ctl_t *c)
{
    const char *driver = ctl_opt(c, "db-driver"), *params = ctl_opt(c, "db-params");
    const char *file = ctl_opt(c, "apache-config"), *err = NULL;
    apr_status_t rv;
    int code;

    c->conf.base_domain = "tailnet.internal";      /* the module's defaults */
    c->conf.ipv4_prefix = "100.64.0.0/10";
    c->conf.ipv6_prefix = "fd7a:115c:a1e0::/48";
    c->conf.registration_ttl = TS_REGISTER_DEFAULT_TTL;
    if (file && (driver || params)) {
        return ctl_fail(EXIT_USAGE, "give either --apache-config or --db-driver/--db-params");
    }
    if (file && (code = load_apache_config(c, file, &driver, &params)) != 0) {
        return code;
    }
    if (!driver || !params) {
        return ctl_fail(EXIT_USAGE, "no database: give --db-driver sqlite3|mysql and --db-params, "
                    "or --apache-config FILE");
    }
    if ((code = setup_conf(c)) != 0) {
        return code;
    }
    rv = ts_store_open(&c->st, c->p, driver, params, &err);
    if (rv == APR_SUCCESS) {
        rv = ts_store_schema_apply(c->st, &err);
    }
    return rv == APR_SUCCESS ? 0 : ctl_fail(1, "%s", err);
}

