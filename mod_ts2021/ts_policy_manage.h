/* ts_policy_manage.h: the policy as the store, the admin tools and registration use it:
 * a text checked (parsed, then compiled with its tests against the tailnet the database
 * holds) before it is stored, tags a registering node asks for checked against tagOwners,
 * and routes approved by autoApprovers. No httpd types. */
#ifndef TS_POLICY_MANAGE_H
#define TS_POLICY_MANAGE_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>

#include "ts_policy.h"
#include "ts_store.h"
#include "ts_tailnet.h"

/* Why a policy text was refused: the whole message ("line 4: dst=tag not found: ..."),
 * and the line and column it names (0 when it names none), message without them. */
typedef struct ts_policy_error_t {
    const char *text;        /* as ts_policy_parse/compile wrote it */
    int line;
    int column;
    const char *message;     /* text without its "line N[, column M]: " head */
} ts_policy_error_t;

/* The tailnet the store holds, for compiling a policy: every user (e-mail domains as the
 * tailnet's domains), every node with its tags, addresses, advertised and approved routes
 * (join order = id; every node counted online). From p. */
apr_status_t ts_policy_tailnet_load(ts_store_t *st, apr_pool_t *p, ts_policy_tailnet_t **tn,
                                    const char **err);

/* Parses text and compiles it against tn, running the policy's tests and sshTests.
 * APR_SUCCESS (*pol parsed, may be NULL if not wanted), or APR_EINVAL with e filled. */
apr_status_t ts_policy_check_text(apr_pool_t *p, const char *text, apr_size_t len,
                                  const ts_policy_tailnet_t *tn, ts_policy_t **pol,
                                  ts_policy_error_t *e);

/* The policy text in force: conf->policy_file's text when the tailnet reads its policy from
 * a file (TS2021PolicyFile), else the newest stored; NULL when there is none (allow all). */
apr_status_t ts_policy_text_in_force(ts_store_t *st, apr_pool_t *p,
                                     const ts_tailnet_conf_t *conf, const char **text,
                                     const char **err);

/* The policy in force, parsed (NULL: none). APR_EINVAL when its text does not parse (*err
 * says why): callers refuse what needs the policy rather than guess. */
apr_status_t ts_policy_in_force(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                ts_policy_t **pol, const char **err);

/* Checks text against the store's tailnet (ts_policy_check_text), stores it (change
 * "policy.set") and approves what its autoApprovers allow on every node (node.routes
 * changes; *approved counts the nodes whose approvals grew). APR_EINVAL with e for a
 * refused text, TS_STORE_ECONFLICT (*err) when conf names a policy file (the database's
 * policy would not be in force), else the store's status. Nothing is written when the text
 * is refused; an approval failing after the policy was stored returns its status with *id
 * set (the approval is made again when that node's routes next change). */
apr_status_t ts_policy_set(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                           const char *text, apr_size_t len, apr_int64_t *id, int *approved,
                           ts_policy_error_t *e, const char **err);

/* ---- decisions (pure) ---- */

/* autoApprovers: the node's routes (ts_route_t values) with every advertised route approved
 * that the policy approves automatically for node tn->nodes[node] (a subnet route inside an
 * autoApprovers.routes prefix whose approvers name the node; 0.0.0.0/0 and ::/0 only through
 * autoApprovers.exitNode, both families at once). Approvals are only added, never withdrawn.
 * *changed says whether any was added. NULL pol: routes unchanged. */
apr_array_header_t *ts_policy_auto_approve(apr_pool_t *p, const ts_policy_t *pol,
                                           const ts_policy_tailnet_t *tn, int node,
                                           const apr_array_header_t *routes, int *changed);

/* Whether a registering node may carry the tags it asks for (Hostinfo.RequestTags): each
 * must be a valid tag in the policy's tagOwners, owned by the authenticating user (index in
 * tn->users, -1: none) directly, through a group or an autogroup, or by one of the tags
 * the node already has (owner_tags). NULL when every tag passes, else the message the
 * client shows, naming each refused tag. */
const char *ts_policy_tags_refusal(apr_pool_t *p, const ts_policy_t *pol,
                                   const ts_policy_tailnet_t *tn, int user,
                                   const apr_array_header_t *owner_tags,
                                   const apr_array_header_t *requested);

/* Pre-auth key tags (the admin made the key): NULL when each is in the policy's tagOwners or
 * the policy has no tagOwners (or there is no policy); else the message naming the others. */
const char *ts_policy_key_tags_refusal(apr_pool_t *p, const ts_policy_t *pol,
                                       const apr_array_header_t *tags);

/* ---- store helpers for registration and map requests ---- */

/* Applies ts_policy_auto_approve to one stored node with the policy in force: reads its
 * routes and the users, writes the routes (node.routes) if approvals were added. *changed
 * (may be NULL) tells. A policy that does not parse approves nothing (not an error). */
apr_status_t ts_policy_auto_approve_node(ts_store_t *st, apr_pool_t *p,
                                         const ts_tailnet_conf_t *conf, const ts_node_t *n,
                                         int *changed, const char **err);

/* Registration's tag checks (control API 5.10) with the policy in force and the stored
 * users. key_tags (JSON array text, NULL: an untagged key or no key) are trusted but must be
 * in the policy's tagOwners (ts_policy_key_tags_refusal), and requested tags must then be
 * among them; requested tags without key tags must be ownable by the authenticating user
 * (user_id, 0: none) or by the node's present tags (node_tags, JSON text or NULL).
 * *why is NULL when allowed, else the message the client shows. A policy in force that does
 * not parse refuses every tag. Store failures are returned with *err. */
apr_status_t ts_policy_registration_tags(ts_store_t *st, apr_pool_t *p,
                                         const ts_tailnet_conf_t *conf, apr_int64_t user_id,
                                         const char *node_tags, const char *key_tags,
                                         const apr_array_header_t *requested,
                                         const char **why, const char **err);

/* The tags of a JSON array text as an array of strings (empty when none or not an array). */
apr_array_header_t *ts_policy_tag_list(apr_pool_t *p, const char *tags_json);

#endif
