/* ts_regpage.h: the interactive login page (/register/<id>, SetHandler ts2021-register):
 * looking up a pending registration, the confirm form's CSRF token, HTML rendering with
 * escaping, and approval for a login name (the user is created on first login). */
#ifndef TS_REGPAGE_H
#define TS_REGPAGE_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>
#include <stdint.h>

#include "ts_store.h"
#include "ts_tailnet.h"
#include "ts_util.h"

#define TS_REGPAGE_SECRET_LEN 32
/* How long a confirm form stays valid (a registration lapses after 15 minutes anyway). */
#define TS_REGPAGE_TOKEN_TTL apr_time_from_sec(60 * 60)
/* Longest login name accepted (the users.name column). */
#define TS_REGPAGE_LOGIN_MAX 255

/* The form secret of a tailnet, derived from its Noise private key: every server that shares
 * the key file accepts the tokens of the others, and nothing else needs storing. */
void ts_regpage_secret(uint8_t out[TS_REGPAGE_SECRET_LEN], const uint8_t noise_priv[TS_KEY_LEN]);

/* A token for one registration and one login name, issued at now: "<hex time>.<hex HMAC>". */
const char *ts_regpage_token(apr_pool_t *p, const uint8_t secret[TS_REGPAGE_SECRET_LEN],
                             const char *auth_id, const char *login, apr_time_t now);
/* 1 if token was issued by ts_regpage_token for this auth_id and login, at most
 * TS_REGPAGE_TOKEN_TTL ago (and not from the future); 0 otherwise. Constant-time compare. */
int ts_regpage_token_check(const uint8_t secret[TS_REGPAGE_SECRET_LEN], const char *token,
                           const char *auth_id, const char *login, apr_time_t now);

/* HTML text/attribute escaping of & < > " ' (NULL gives ""). */
const char *ts_regpage_escape(apr_pool_t *p, const char *s);

/* 1 if a login name can name a user: 1..TS_REGPAGE_LOGIN_MAX bytes of valid UTF-8 without
 * control characters, not starting or ending with white space. */
int ts_regpage_login_valid(const char *login);

/* What the page shows about the device, taken from the registration's Hostinfo. Every field
 * is raw text (escape before use); absent ones are "". */
typedef struct ts_regpage_device_t {
    const char *hostname;
    const char *os;               /* "linux 6.1", "windows 10.0.19045" ... */
    const char *client_version;   /* Hostinfo.IPNVersion */
    const char *node_key;         /* "nodekey:<hex>" */
    const char *fingerprint;      /* first 16 hex digits of the node key, in groups of 4 */
    const char *machine_key;
    apr_array_header_t *tags;     /* Hostinfo.RequestTags, const char * */
    apr_array_header_t *routes;   /* Hostinfo.RoutableIPs, const char * */
    int ephemeral;
} ts_regpage_device_t;

void ts_regpage_device(apr_pool_t *p, const ts_registration_t *r, ts_regpage_device_t *d);

/* The outcome of looking up /register/<auth_id>, as an HTTP status and a message. */
typedef struct ts_regpage_lookup_t {
    int status;                   /* 200 pending, 404 unknown, 409 approved, 410 expired or
                                   * rejected, 500 database error */
    const char *title;
    const char *message;          /* plain text */
    const char *log;              /* for the error log on 500, else NULL */
    ts_registration_t *reg;       /* when found */
} ts_regpage_lookup_t;

void ts_regpage_lookup(ts_store_t *st, apr_pool_t *p, const char *auth_id, apr_time_t now,
                       ts_regpage_lookup_t *out);

/* Approves auth_id for the user named login, creating that user on first login (a race with
 * another creator is settled by reading the winner). *user and *node_id are set on success.
 * Status as ts_register_approve; APR_EINVAL for a bad login name. Nothing is written when
 * the registration cannot be approved (the user is created only after it was found
 * pending). */
apr_status_t ts_regpage_approve(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                const char *auth_id, const char *login, ts_user_t **user,
                                apr_int64_t *node_id, const char **err);

/* Complete HTML documents. form_token NULL renders the page without a form. */
const char *ts_regpage_render_confirm(apr_pool_t *p, const ts_registration_t *r,
                                      const char *login, const char *form_token);
const char *ts_regpage_render_done(apr_pool_t *p, const ts_node_t *n, const char *login,
                                   int approved);
const char *ts_regpage_render_message(apr_pool_t *p, const char *title, const char *message);

#endif
