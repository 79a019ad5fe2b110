/* ts_admin.h: the REST admin API (docs/admin-api.yaml) as a function of method, path below
 * the API base, headers and body: status and JSON text, over the same store and registration
 * code as ts2021ctl. API keys for scripts (Authorization: Bearer). No httpd types. */
#ifndef TS_ADMIN_H
#define TS_ADMIN_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "ts_store.h"
#include "ts_tailnet.h"

/* Largest request body (a policy is stored up to TS_STORE_BLOB_MAX). */
#define TS_ADMIN_BODY_MAX 1000000
/* API keys as handed out: "tskey-api-<12 prefix chars>-<64 hex secret>". */
#define TS_ADMIN_APIKEY_PREFIX "tskey-api-"
/* The header the web UI sends on mutations made with cookie/Basic credentials. */
#define TS_ADMIN_CSRF_HEADER "X-TS2021-CSRF"
/* An API key's last_seen is written at most this often (each write wakes every map stream). */
#define TS_ADMIN_APIKEY_SEEN_EVERY apr_time_from_sec(300)

typedef struct ts_admin_env_t {
    ts_store_t *st;
    const ts_tailnet_conf_t *conf;  /* server_url, base_domain, registration defaults */
    const char *version;            /* for /info; NULL: this build's PACKAGE_VERSION */
    apr_time_t now;
    const char *caller;             /* who is asking (REMOTE_USER), shown by /info */
    /* Presence: 1 online, 0 offline; NULL callback: unknown (null in JSON). */
    int (*online)(void *baton, apr_int64_t node_id);
    void *online_baton;
    /* Validates a policy text; NULL: ts_admin_policy_check. */
    apr_status_t (*policy_check)(apr_pool_t *p, const char *text, apr_size_t len,
                                 apr_array_header_t **errors);
    /* TS2021PolicyFile: its path and text when set (the file is in force, PUT is refused). */
    const char *policy_file;
    const char *policy_file_text;
} ts_admin_env_t;

typedef struct ts_admin_request_t {
    const char *method;             /* "GET", "POST" … */
    const char *path;               /* below the base: "/users/3"; "" or "/" is the root */
    const char *query;              /* after '?', or NULL */
    const char *content_type;       /* NULL if none */
    const char *body;
    apr_size_t len;
    int csrf_header;                /* TS_ADMIN_CSRF_HEADER was sent */
    int bearer;                     /* authenticated with an API key */
} ts_admin_request_t;

typedef struct ts_admin_response_t {
    int status;
    const char *body;               /* JSON text, newline-terminated */
    const char *allow;              /* for 405: the methods the path has */
    int changed;                    /* the store was written: wake the map streams */
} ts_admin_response_t;

/* Answers one request. Every error is {"error": text, "code": word} with a 4xx/5xx status;
 * nothing is written when the answer is an error. */
void ts_admin_handle(const ts_admin_env_t *env, apr_pool_t *p, const ts_admin_request_t *req,
                     ts_admin_response_t *res);

/* Fills res with an error body. */
void ts_admin_error(apr_pool_t *p, ts_admin_response_t *res, int status, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

typedef enum {
    TS_ADMIN_BEARER_NONE = 0,       /* no "Bearer" credentials in the header */
    TS_ADMIN_BEARER_OK = 1,
    TS_ADMIN_BEARER_INVALID = 2,    /* malformed, unknown or wrong secret */
    TS_ADMIN_BEARER_EXPIRED = 3,
    TS_ADMIN_BEARER_ERROR = 4       /* the database failed */
} ts_admin_bearer_e;

/* Checks an Authorization header value against the stored API keys (constant-time secret
 * comparison in the store); on OK *key_id is the key's id and last_seen may be written
 * (at most every TS_ADMIN_APIKEY_SEEN_EVERY; *changed is then 1). *why explains failures. */
ts_admin_bearer_e ts_admin_bearer_check(ts_store_t *st, apr_pool_t *p, const char *authorization,
                                        apr_time_t now, apr_int64_t *key_id, int *changed,
                                        const char **why);

/* A fresh API key: prefix and secret for ts_store_api_key_create and the text shown once. */
apr_status_t ts_admin_apikey_generate(apr_pool_t *p, const char **prefix, const char **secret,
                                      const char **text);

/* ---- PUT /policy (ts_admin_policy.c) ---- */

typedef struct ts_admin_policy_error_t {
    int line;                       /* 1-based; 0 if unknown */
    int column;                     /* 1-based; 0 if unknown */
    const char *message;
} ts_admin_policy_error_t;

/* The policy compiler's parse and static validation (ts_policy_parse: HuJSON, sections,
 * groups, tags, rules, tests that need no tailnet). APR_SUCCESS, or APR_EINVAL with
 * ts_admin_policy_error_t values in *errors. */
apr_status_t ts_admin_policy_check(apr_pool_t *p, const char *text, apr_size_t len,
                                   apr_array_header_t **errors);
/* Checks the text with the policy compiler against the tailnet in env->st and stores it
 * (ts_policy_set: the same check as `ts2021ctl policy set`); 400 policy_invalid with
 * {"errors": [{line, column, message}]} when refused, 409 policy_file while env->conf names
 * a TS2021PolicyFile. Nothing is written when refused. */
void ts_admin_policy_put(const ts_admin_env_t *env, apr_pool_t *p, const char *text,
                         apr_size_t len, ts_admin_response_t *res);

#endif
