/* ts_register_int.h: what ts_register.c (the decision order) and ts_register_node.c (node
 * writes and approvals) share: the parsed request, the per-call context, owner rules. */
#ifndef TS_REGISTER_INT_H
#define TS_REGISTER_INT_H

#include "ts_register.h"
#include <jansson.h>
#include "ts_store_int.h"   /* one transaction for a node update and the pre-auth key it uses */

/* The RegisterRequest fields the server acts on, keys in canonical text form. */
typedef struct reg_req_t {
    int version;
    const char *node_key;
    const char *old_node_key;     /* NULL when zero or absent */
    const char *auth_key;         /* NULL when no key was given (absent, null or "") */
    apr_time_t expiry;            /* meaningful when expiry_set; <= 0 before 1970 */
    int expiry_set;
    const char *followup;
    const char *hostinfo;         /* compact JSON object text, or NULL */
    const char *hostname;         /* Hostinfo.Hostname, at most 255 bytes, or NULL */
    int ephemeral;
    apr_array_header_t *request_tags; /* Hostinfo.RequestTags (const char *), NULL if none */
} reg_req_t;

typedef struct reg_ctx_t {
    ts_store_t *st;
    apr_pool_t *p;
    const ts_tailnet_conf_t *conf;
    const char *mkey;             /* "mkey:<hex>" of the connection */
    apr_time_t now;
    reg_req_t req;
    ts_register_result_t *res;
    const char *err;              /* the store's message of the last failure */
    int redo;                     /* lost a race to a write of the same node: decide again */
    int busy;                     /* lost every race, or the database stayed locked: 503 */
} reg_ctx_t;

/* Who a node written by this registration belongs to. */
typedef struct reg_owner_t {
    apr_int64_t user_id;          /* 0: tagged */
    const char *tags;             /* normalised JSON array text when tagged, else NULL */
    const char *method;           /* register_method */
    const ts_preauth_key_t *key;  /* checked and marked used in the node's transaction */
    int ephemeral;
} reg_owner_t;

#define REG_HOSTNAME_MAX 255

/* Hostinfo.RequestTags of a Hostinfo object (entries that are not strings kept as their
 * JSON text, so that they are refused by name); NULL when absent or empty. */
apr_array_header_t *reg_request_tags(apr_pool_t *p, json_t *hostinfo);

/* s cut to at most max bytes, never inside a UTF-8 sequence. */
const char *reg_utf8_cut(apr_pool_t *p, const char *s, apr_size_t max);

apr_status_t reg_find_node(reg_ctx_t *c, const char *node_key, ts_node_t **n);
int reg_foreign(const reg_ctx_t *c, const ts_node_t *n);

/* Sorted, de-duplicated JSON array text of the tags in a JSON array text; NULL if none. */
const char *reg_tags_norm(apr_pool_t *p, const char *tags_json);

/* The tags (JSON text) of the node this registration re-authenticates: by_key's, else
 * the node of the request's old node key when this machine owns it; NULL if none. */
const char *reg_present_tags(reg_ctx_t *c, const ts_node_t *by_key);

/* The same from an array of tag strings. */
const char *reg_tags_list_norm(apr_pool_t *p, const apr_array_header_t *tags);

/* After a node was written: the routes it advertises that the policy's autoApprovers allow
 * are approved (control API 1.5 step 7). A failure is not the registration's: it is logged
 * in c->res->log and the approvals wait for the node's next route change. */
void reg_auto_approve(reg_ctx_t *c, const ts_node_t *n);

/* n belongs to o: same user, or both tagged (and, if exact_tags, with the same tags). */
int reg_same_owner(apr_pool_t *p, const ts_node_t *n, const reg_owner_t *o, int exact_tags);

/* This machine's node a registration for o updates rather than creating one: the node of
 * the request's node key (by_key), else of its old node key when owned alike (or tagged,
 * if convert_tagged), else the machine's node of that owner (then its tagged node, if
 * convert_tagged). *out NULL: create. APR_EACCES: the old key is another machine's. */
apr_status_t reg_find_existing(reg_ctx_t *c, ts_node_t *by_key, const reg_owner_t *o,
                               int convert_tagged, ts_node_t **out);

/* Creates (existing NULL) or updates the node for c->req and o; addresses and name are
 * chosen inside the write transaction by indexed lookups, so concurrent registrations
 * cannot pick the same ones. Lost version (or, in theory, uniqueness) races are retried a
 * few times; *out is the row written. TS_IPALLOC_EFULL with a message when a prefix is
 * full; ECONFLICT/ENOTFOUND about the pre-auth key when it no longer validates; c->redo set
 * when another registration of the same node key won; c->busy when every attempt lost or
 * the database stayed locked (the answer is then 503, try again). */
apr_status_t reg_node_write(reg_ctx_t *c, ts_node_t *existing, const reg_owner_t *o,
                            ts_node_t **out);

#endif
