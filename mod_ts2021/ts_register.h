/* ts_register.h: POST /machine/register (control spec 1) over the store, as a function of the
 * connection's machine key and the request body; interactive approvals; key ownership checks. */
#ifndef TS_REGISTER_H
#define TS_REGISTER_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <stdint.h>
#include "ts_store.h"
#include "ts_tailnet.h"
#include "ts_util.h"

/* The synthetic owner of tagged nodes (spec 5.1), as User/Login and in UserProfiles. */
#define TS_TAGGED_USER_ID 2147455555
#define TS_TAGGED_LOGIN_NAME "tagged-devices"
#define TS_TAGGED_DISPLAY_NAME "Tagged Devices"

/* Pending interactive registrations: "tsreg-" and 32 hex digits, the tail of the AuthURL. */
#define TS_REGISTER_AUTH_ID_PREFIX "tsreg-"
/* Pre-auth keys as handed to users: "tskey-auth-<12 prefix chars>-<64 hex secret>". */
#define TS_REGISTER_KEY_PREFIX "tskey-auth-"

#define TS_REGISTER_DEFAULT_TTL apr_time_from_sec(15 * 60)

typedef enum {
    TS_REGISTER_ANSWER = 0,     /* send status/body now */
    TS_REGISTER_PENDING = 1     /* hold the request until auth_id is resolved, then recheck */
} ts_register_outcome_e;

typedef struct ts_register_result_t {
    ts_register_outcome_e outcome;
    int status;                 /* HTTP status; while PENDING, the answer for giving up early */
    const char *content_type;
    const char *body;           /* RegisterResponse JSON for 200, a text line otherwise */
    const char *auth_id;        /* PENDING: the registration to wait for */
    apr_time_t wait_until;      /* PENDING: when it lapses (a recheck then hands out a new URL) */
    apr_int64_t node_id;        /* the node this request concerns, 0 if none */
    int changed;                /* 1 if the store was written (peers need to hear of it) */
    const char *log;            /* why a 4xx/5xx was sent, for the error log; NULL otherwise */
    int retries;                /* node writes tried again after losing a race (0 normally) */
} ts_register_result_t;

/* Runs the decision order of spec 1.4 for one request: logout, restart with a known key,
 * expired key, expiry shortening, Followup, pre-auth key, interactive registration. Every
 * answer is in res (Error answers are 200, as clients expect; bad requests 400; database
 * failures 500; 503 when concurrent registrations or a locked database outlasted every
 * retry), and nothing is written when the answer is an error. Returns the store's status
 * for a 500 or 503, APR_SUCCESS otherwise. */
apr_status_t ts_register_handle(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                const uint8_t machine_key[TS_KEY_LEN], const char *body,
                                apr_size_t len, ts_register_result_t *res);

/* For a request held PENDING on auth_id: still pending ⇒ PENDING again (one cheap read);
 * otherwise the request is decided afresh: approved ⇒ success, rejected ⇒ Error, expired
 * or gone ⇒ a new AuthURL. Same body as the original request. */
apr_status_t ts_register_recheck(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                 const uint8_t machine_key[TS_KEY_LEN], const char *body,
                                 apr_size_t len, const char *auth_id,
                                 ts_register_result_t *res);

/* Approves a pending registration for user_id (spec 5.13): this machine's node with that node
 * key, old node key or owner is updated (a tagged one converted to the user), else a node is
 * created; then the entry is marked approved so that its waiter wakes. *node_id is the node.
 * ENOTFOUND for an unknown auth_id or user, ECONFLICT when no longer pending or expired,
 * APR_EACCES when the node key belongs to another machine, or when the registration's
 * Hostinfo.RequestTags are not the user's to apply (tagOwners): the registration is then
 * rejected with that message, which its client shows. No node is written on error. */
apr_status_t ts_register_approve(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                 const char *auth_id, apr_int64_t user_id,
                                 apr_int64_t *node_id, const char **err);

/* Marks a pending registration rejected; its waiter gets reason (or a default) as Error. */
apr_status_t ts_register_reject(ts_store_t *st, apr_pool_t *p, const char *auth_id,
                                const char *reason, const char **err);

/* 1 if auth_id has the form this server hands out (safe to echo into HTML). */
int ts_register_auth_id_valid(const char *auth_id);

/* The node with node_key (text form) if the machine key owns it, for /machine/map and
 * friends: ENOTFOUND when no node has the key, APR_EACCES when another machine's node has. */
apr_status_t ts_register_node_of_machine(ts_store_t *st, apr_pool_t *p,
                                         const uint8_t machine_key[TS_KEY_LEN],
                                         const char *node_key, ts_node_t **n,
                                         const char **err);

/* 1 if the node's key expiry has passed at now. */
int ts_register_node_expired(const ts_node_t *n, apr_time_t now);

/* The name clients show for a user (spec 5.1): email, else name, else provider id, else the
 * id in decimal. NULL u: the tagged-devices user. */
const char *ts_register_login_name(apr_pool_t *p, const ts_user_t *u);

/* A fresh pre-auth key: prefix and secret for ts_store_preauth_key_create, and the text the
 * user is shown once. */
apr_status_t ts_register_key_generate(apr_pool_t *p, const char **prefix, const char **secret,
                                      const char **text);
/* Splits a key text into prefix and secret; -1 if it is not of the form above. */
int ts_register_key_parse(apr_pool_t *p, const char *text, const char **prefix,
                          const char **secret);

/* 1 if tag is "tag:" + a letter + [A-Za-z0-9-]* (spec 5.10). */
int ts_register_tag_valid(const char *tag);

/* Parses RFC 3339 ("2026-01-02T03:04:05.5Z", "…+02:00"). *zero is set for Go's zero time
 * 0001-01-01T00:00:00Z; times before 1970 come back as values <= 0. -1 on bad syntax. */
int ts_register_parse_time(const char *text, apr_time_t *t, int *zero);

/* Test seam: called inside the write transaction of every attempt to insert a node, once
 * its addresses and name are chosen; a test may change them (e.g. to values in use) to
 * play a writer that bypassed the generation lock. NULL clears it. */
typedef void (*ts_register_test_hook_fn)(void *baton, ts_node_t *about_to_insert);
void ts_register_test_hook(ts_register_test_hook_fn fn, void *baton);

#endif
