/* ts_policy.h: the tailnet policy (HuJSON: groups, hosts, tagOwners, acls, grants, ssh,
 * autoApprovers, nodeAttrs, tests) parsed, validated and compiled per node. No httpd types. */
#ifndef TS_POLICY_H
#define TS_POLICY_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>
#include <jansson.h>

/* A parsed and statically validated policy (no tailnet needed). Immutable once built;
 * it may be shared by threads. Lives in the pool given to ts_policy_parse. */
typedef struct ts_policy ts_policy_t;

/* The tailnet the policy is compiled against. */
typedef struct {
    apr_int64_t id;
    const char *name;        /* login name, e.g. "odin" */
    const char *email;       /* "odin@example.com"; "" when unknown */
    int is_admin;
    int is_owner;
} ts_policy_user_t;

typedef struct {
    apr_int64_t id;
    const char *name;        /* host name (for messages and tests) */
    int user;                /* index in users[], -1 for a tagged node */
    const char *const *tags; /* ntags tags ("tag:x"): a node with tags is owned by them */
    int ntags;
    const char *ipv4;        /* "100.x.y.z" or NULL */
    const char *ipv6;        /* "fd7a:..." or NULL */
    const char *const *advertised; /* Hostinfo.RoutableIPs (prefix text) */
    int nadvertised;
    const char *const *approved;   /* routes approved by an admin (prefix text) */
    int napproved;
    apr_int64_t join_order;  /* creation order: lower = older (primary election) */
    int online;              /* offline routers lose primary election */
} ts_policy_node_t;

typedef struct {
    const ts_policy_user_t *users;
    int nusers;
    const ts_policy_node_t *nodes;
    int nnodes;
    const char *const *domains;    /* tailnet domains for user:*@d / localpart:*@d */
    int ndomains;
    const char *control_url;       /* base of SSH check URLs ("https://host") */
} ts_policy_tailnet_t;

/* Whether user (index in tn->users) may give a node tag: the tag is in tagOwners and
 * the user is one of its owners (directly, through a group or an autogroup). For
 * RequestTags and pre-auth key tags; a NULL policy allows no tag. */
int ts_policy_may_tag(const ts_policy_t *pol, const ts_policy_tailnet_t *tn, int user,
                      const char *tag);

/* Compiled result for one tailnet: answers the map builder's per-node questions. */
typedef struct ts_policy_result ts_policy_result_t;

/* Parses HuJSON and validates everything that needs no tailnet. On failure returns
 * APR_EINVAL and *err says what and where ("line 12: ..."). The pool owns the policy;
 * a cleanup releases its JSON. */
apr_status_t ts_policy_parse(apr_pool_t *p, const char *text, apr_size_t len,
                             ts_policy_t **out, const char **err);

/* Compiles pol for the tailnet (NULL pol: the default allow-all policy). Runs the
 * policy's tests and sshTests: a failing test rejects the policy (APR_EINVAL, *err says
 * which). Cost is about O(rules x nodes) plus the peer matrix (nodes^2 bits). */
apr_status_t ts_policy_compile(apr_pool_t *p, const ts_policy_t *pol,
                               const ts_policy_tailnet_t *tn,
                               ts_policy_result_t **out, const char **err);

/* Releases the JSON a result holds (also done when its pool goes). */
void ts_policy_result_free(ts_policy_result_t *r);

/* The index in tn->nodes of the node with this id, or -1. */
int ts_policy_index_of(const ts_policy_result_t *r, apr_int64_t node_id);

/* Per node i (index in tn->nodes). JSON results are new references. */
json_t *ts_policy_addresses(const ts_policy_result_t *r, int i);     /* ["a/32", "b/128"] */
json_t *ts_policy_filter(const ts_policy_result_t *r, int i);        /* [FilterRule] */
int ts_policy_can_see(const ts_policy_result_t *r, int i, int j);    /* symmetric */
apr_array_header_t *ts_policy_peers(const ts_policy_result_t *r, apr_pool_t *p, int i);
json_t *ts_policy_ssh_rules(const ts_policy_result_t *r, int i);     /* [SSHRule] */
json_t *ts_policy_capmap(const ts_policy_result_t *r, int i);        /* {cap: [values]} */
json_t *ts_policy_approved_routes(const ts_policy_result_t *r, int i);  /* ["prefix"] */
json_t *ts_policy_primary_routes(const ts_policy_result_t *r, int i);   /* ["prefix"] */
/* What viewer i is told about peer j: AllowedIPs (addresses then routes), PrimaryRoutes,
 * and the peer CapMap ({"suggest-exit-node": null} for exit nodes), all new references. */
json_t *ts_policy_peer_allowed_ips(const ts_policy_result_t *r, int i, int j);
json_t *ts_policy_peer_primary_routes(const ts_policy_result_t *r, int i, int j);
json_t *ts_policy_peer_capmap(const ts_policy_result_t *r, int i, int j);
/* Capabilities viewer i grants peer j through app grants (WhoIs), or NULL when none. */
json_t *ts_policy_whois_capmap(const ts_policy_result_t *r, int i, int j);
/* Whether the policy randomizes client ports (randomizeClientPort). */
int ts_policy_randomize_client_port(const ts_policy_result_t *r);

#endif
