/* ts2021ctl.h: what the two halves of the admin command line share: the run's state and
 * the option, duration and database helpers of ts2021ctl_conf.c. Not part of the module. */
#ifndef TS2021CTL_H
#define TS2021CTL_H

#include <apr_pools.h>
#include <apr_hash.h>
#include <apr_tables.h>
#include <apr_time.h>
#include <jansson.h>
#include "ts_store.h"
#include "ts_tailnet.h"

#define EXIT_USAGE 2

typedef struct ctl_t {
    apr_pool_t *p;
    apr_hash_t *opts;             /* option name -> value ("" for flags) */
    apr_array_header_t *args;     /* positional words after the command */
    const char *group, *verb;
    int json;
    ts_store_t *st;
    ts_tailnet_conf_t conf;       /* for nodes register/rename */
} ctl_t;

extern const char CTL_GLOBAL_HELP[];

/* j as indented JSON on stdout; takes the reference; returns 0. */
int ctl_print_json(json_t *j);

/* "ts2021ctl: <message>" on stderr; returns code. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The value of --name ("" for a flag), or NULL when not given. */
const char *ctl_opt(ctl_t *c, const char *name);

/* Options anywhere on the line into c->opts, the other words into words; 0 or an exit code. */
int ctl_parse_argv(ctl_t *c, int argc, const char *const *argv, apr_array_header_t *words);

/* 0 if every option given is global or in allowed (NULL-terminated); else a usage error. */
int ctl_check_opts(ctl_t *c, const char *const *allowed);

/* "90", "30s", "15m", "15mi", "36h", "7d", "2w", "1h30m", "500ms" (a bare number: seconds);
 * -1 if malformed. */
apr_interval_time_t ctl_parse_duration(const char *s);

/* Opens the database named by --db-driver/--db-params or --apache-config [--vhost], applies
 * the schema, and fills c->conf (module defaults, then the config's TS2021*, then flags). */
int ctl_open_db(ctl_t *c);

/* ts2021ctl_policy.c: policy get|check|set. */
int ctl_cmd_policy_get(ctl_t *c);
int ctl_cmd_policy_check(ctl_t *c);
int ctl_cmd_policy_set(ctl_t *c);

#endif
