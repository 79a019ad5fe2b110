/* ts_admin_int.h: what the ts_admin*.c files share and nobody else sees: the request context,
 * the route tables of the endpoint files, and the answer, value and body helpers. */
#ifndef TS_ADMIN_INT_H
#define TS_ADMIN_INT_H

#include "ts_admin.h"
#include "ts_names.h"
#include "ts_register.h"
#include "ts_config.h"

#include <apr_hash.h>
#include <jansson.h>

typedef struct admin_ctx_t {
    const ts_admin_env_t *env;
    apr_pool_t *p;
    const ts_admin_request_t *req;
    ts_admin_response_t *res;
    const char *seg[4];             /* path segments */
    int nseg;
    json_t *body;                   /* parsed JSON object, or NULL */
    apr_hash_t *user_names;         /* id -> name, read once per request */
} admin_ctx_t;

/* What an endpoint takes as its body. */
enum {
    ADMIN_B_NONE = 0,            /* nothing (ignored if sent) */
    ADMIN_B_JSON = 1,            /* an application/json object */
    ADMIN_B_OPTIONAL = 2,        /* the same, or no body at all */
    ADMIN_B_RAW = 3              /* text as it is (the policy) */
};

typedef struct admin_route_t {
    const char *first;              /* first segment */
    int nseg;
    const char *last;               /* third segment of 3-segment paths, else NULL */
    const char *method;
    int body;                       /* ADMIN_B_* */
    int (*fn)(admin_ctx_t *c);      /* answers in c->res; the return value is unused */
} admin_route_t;

/* NULL-terminated, one per endpoint file. */
extern const admin_route_t admin_users_routes[];
extern const admin_route_t admin_nodes_routes[];
extern const admin_route_t admin_keys_routes[];

/* ---- answers: all return 0, so that a handler can `return admin_fail(...)` ---- */
const char *admin_json_text(apr_pool_t *p, json_t *j);      /* steals j */
int admin_fail(admin_ctx_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int admin_reply(admin_ctx_t *c, int status, json_t *j);     /* steals j */
/* A store failure as HTTP: validation 400, missing 404, conflicts 409, the rest 500/503. */
int admin_store_fail(admin_ctx_t *c, apr_status_t rv, const char *err);

/* ---- values ---- */
json_t *admin_jtext(const char *s);                         /* null for NULL */
json_t *admin_jtime(apr_pool_t *p, apr_time_t t);           /* RFC 3339, null for 0 */
json_t *admin_jtags(const char *tags);                      /* JSON text -> array */
int admin_parse_id(const char *s, apr_int64_t *id);         /* 1 if a positive id */
int admin_is_number(const char *s);
/* null/absent: now + dflt (0: never); seconds; a duration ("90d"); an RFC 3339 time in the
 * future. -1 and *why when malformed. */
apr_time_t admin_parse_expiration(admin_ctx_t *c, json_t *v, apr_interval_time_t dflt,
                                      const char **why);
/* 1 if the query string has name, name=true or name=1 */
int admin_query_flag(admin_ctx_t *c, const char *name);

/* ---- body fields: 1 when fine, else 0 with a 400 (or 404 for users) in c->res ---- */
int admin_body_only(admin_ctx_t *c, const char *const *allowed);
int admin_body_string(admin_ctx_t *c, const char *key, int required, const char **out);
int admin_body_bool(admin_ctx_t *c, const char *key, int *out);
int admin_body_tags(admin_ctx_t *c, const char *key, const char **out);
int admin_body_user(admin_ctx_t *c, const char *key, int required, ts_user_t **u);

/* ---- lookups ---- */
/* A user by id or name: 1, or 0 with status (404) in c->res. */
int admin_find_user(admin_ctx_t *c, const char *which, ts_user_t **u, int status);
/* A user's name, read once per request; NULL for 0 or a missing user. */
const char *admin_user_name(admin_ctx_t *c, apr_int64_t id);

#endif
