/* ts2021ctl_policy.c: `ts2021ctl policy get|check|set`: the tailnet policy in the database,
 * checked (parsed, compiled against the database's tailnet, its tests run) by the same core
 * function as the admin API's PUT /policy (ts_policy_set). */
#include "ts2021ctl.h"
#include "ts_hujson.h"
#include "ts_policy_manage.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text of path ("-": standard input), at most TS_HUJSON_MAX bytes; NULL after a message. */
static const char *policy_read(ctl_t *c, const char *path, apr_size_t *len)
{
    apr_file_t *f;
    char *buf = apr_palloc(c->p, TS_HUJSON_MAX + 2);
    apr_size_t n = TS_HUJSON_MAX + 1;
    apr_status_t rv;
    char msg[120];

    rv = !strcmp(path, "-") ? apr_file_open_stdin(&f, c->p)
                            : apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, c->p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_read_full(f, buf, n, &n);
        if (APR_STATUS_IS_EOF(rv)) rv = APR_SUCCESS;
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS) {
        ctl_fail(1, "%s: %s", path, apr_strerror(rv, msg, sizeof(msg)));
        return NULL;
    }
    if (n > TS_HUJSON_MAX) {
        ctl_fail(1, "%s: larger than %u bytes: refused", path, TS_HUJSON_MAX);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int policy_refused(ctl_t *c, const char *path, const ts_policy_error_t *e)
{
    if (c->json) {
        ctl_print_json(json_pack("{s:b, s:s, s:i, s:i, s:s}", "valid", 0, "error", e->text,
                                    "line", e->line, "column", e->column, "message",
                                    e->message));
        return 1;
    }
    return ctl_fail(1, "%s: policy refused: %s", path, e->text);
}

int ctl_cmd_policy_get(ctl_t *c)
{
    ts_store_policy_t *row = NULL;
    const char *err = NULL, *text;
    apr_size_t len;
    apr_status_t rv;

    if (c->args->nelts != 0) return ctl_fail(EXIT_USAGE, "usage: ts2021ctl policy get");
    if (c->conf.policy_file) {
        /* the vhost of --apache-config reads it from a file: that is the one in force */
        if (!(text = policy_read(c, c->conf.policy_file, &len))) return 1;
        if (c->json) {
            return ctl_print_json(json_pack("{s:s, s:n, s:n, s:s, s:s}", "policy", text,
                                               "id", "updated", "source", "file", "file",
                                               c->conf.policy_file));
        }
        fprintf(stderr, "ts2021ctl: the policy in force comes from TS2021PolicyFile %s\n",
                c->conf.policy_file);
        fputs(text, stdout);
        return 0;
    }
    rv = ts_store_policy_get(c->st, c->p, &row, &err);
    if (rv == TS_STORE_ENOTFOUND) {
        if (c->json) {
            return ctl_print_json(json_pack("{s:n, s:n, s:n, s:s}", "policy", "id",
                                               "updated", "source", "database"));
        }
        fprintf(stderr, "ts2021ctl: no policy stored: every node may reach every other\n");
        return 0;
    }
    if (rv != APR_SUCCESS) return ctl_fail(1, "%s", err);
    if (c->json) {
        apr_time_exp_t tm;
        apr_time_exp_gmt(&tm, row->created_at);
        return ctl_print_json(json_pack(
            "{s:s, s:I, s:s, s:s}", "policy", row->data, "id", (json_int_t)row->id, "updated",
            apr_psprintf(c->p, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec),
            "source", "database"));
    }
    fputs(row->data, stdout);
    if (*row->data && row->data[strlen(row->data) - 1] != '\n') fputc('\n', stdout);
    return 0;
}

int ctl_cmd_policy_check(ctl_t *c)
{
    ts_policy_tailnet_t *tn = NULL;
    ts_policy_error_t e;
    const char *text, *err = NULL, *path;
    apr_size_t len = 0;

    if (c->args->nelts != 1) return ctl_fail(EXIT_USAGE, "usage: ts2021ctl policy check FILE");
    path = APR_ARRAY_IDX(c->args, 0, const char *);
    if (!(text = policy_read(c, path, &len))) return 1;
    if (ts_policy_tailnet_load(c->st, c->p, &tn, &err) != APR_SUCCESS) {
        return ctl_fail(1, "%s", err);
    }
    if (ts_policy_check_text(c->p, text, len, tn, NULL, &e) != APR_SUCCESS) {
        return policy_refused(c, path, &e);
    }
    if (c->json) {
        return ctl_print_json(json_pack("{s:b, s:i, s:i}", "valid", 1, "users", tn->nusers,
                                           "nodes", tn->nnodes));
    }
    printf("%s: the policy is valid (compiled for %d user(s) and %d node(s), its tests "
           "pass)\n", path, tn->nusers, tn->nnodes);
    if (c->conf.policy_file) {
        printf("note: this tailnet reads its policy from TS2021PolicyFile %s\n",
               c->conf.policy_file);
    }
    return 0;
}

int ctl_cmd_policy_set(ctl_t *c)
{
    ts_policy_error_t e;
    const char *text, *err = NULL, *path;
    apr_size_t len = 0;
    apr_int64_t id = 0;
    apr_status_t rv;
    int approved = 0;

    if (c->args->nelts != 1) return ctl_fail(EXIT_USAGE, "usage: ts2021ctl policy set FILE");
    path = APR_ARRAY_IDX(c->args, 0, const char *);
    if (!(text = policy_read(c, path, &len))) return 1;
    rv = ts_policy_set(c->st, c->p, &c->conf, text, len, &id, &approved, &e, &err);
    if (rv == APR_EINVAL) return policy_refused(c, path, &e);
    if (rv != APR_SUCCESS && id == 0) return ctl_fail(1, "%s", err ? err : "failed");
    if (rv != APR_SUCCESS) {
        return ctl_fail(1, "policy stored (id %" APR_INT64_T_FMT "), but approving routes "
                        "failed: %s", id, err ? err : "database error");
    }
    if (c->json) {
        return ctl_print_json(json_pack("{s:I, s:i}", "id", (json_int_t)id,
                                           "auto_approved_nodes", approved));
    }
    printf("policy stored (id %" APR_INT64_T_FMT ")", id);
    if (approved) printf("; autoApprovers approved routes of %d node(s)", approved);
    printf("\n");
    return 0;
}
