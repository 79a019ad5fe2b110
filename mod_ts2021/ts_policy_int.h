/* ts_policy_int.h: the policy compiler's internal model shared by ts_policy*.c: address
 * ranges, the parsed rules, resolved aliases and the per-tailnet result. */
#ifndef TS_POLICY_INT_H
#define TS_POLICY_INT_H

#include "ts_policy.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <stdint.h>

/* 8-byte aligned: APR pools and arrays only guarantee 8 (a 16-byte alignment would let
 * the compiler use aligned vector moves on pool memory). */
typedef unsigned __int128 ts_u128 __attribute__((aligned(8)));

/* A contiguous address range of one family (4 or 6); IPv4 uses the low 32 bits. */
typedef struct {
    ts_u128 lo, hi;
    int fam;
} ts_pol_range_t;

/* An address entry as the wire prints it (single IP, CIDR, "a-b" or "*"). */
typedef struct {
    ts_pol_range_t r;
    const char *text;
} ts_pol_addr_t;

typedef struct {
    int first, last;
} ts_pol_ports_t;

/* A resolved alias: addresses (ts_pol_addr_t); any = "*" (every address). */
typedef struct {
    apr_array_header_t *addrs;
    int any;
    int self;                /* autogroup:self: restricted per destination node */
    unsigned char *member;   /* per node: named by identity (user, group, tag, autogroup) */
    apr_array_header_t *cidrs;  /* ts_pol_addr_t not from nodes: matched by overlap */
} ts_pol_set_t;

/* One destination of a rule: alias and its port ranges. */
typedef struct {
    const char *alias;
    apr_array_header_t *ports;  /* ts_pol_ports_t */
} ts_pol_dst_t;

/* One (protocol set, port ranges) of a grant's "ip". */
typedef struct {
    apr_array_header_t *protos; /* int; empty: the default TCP, UDP, ICMP, ICMPv6 */
    apr_array_header_t *ports;  /* ts_pol_ports_t */
} ts_pol_ipspec_t;

/* An acl or a grant. ACLs have one ipspec per dst (ports in dst); grants share ipspecs. */
typedef struct {
    int grant;
    int line;
    apr_array_header_t *src;    /* const char * */
    apr_array_header_t *dst;    /* ts_pol_dst_t (grants: ports empty) */
    apr_array_header_t *protos; /* acls: int */
    apr_array_header_t *ip;     /* grants: ts_pol_ipspec_t */
    json_t *app;                /* grants: {cap: [values]} or NULL */
    apr_array_header_t *via;    /* grants: const char * tags */
} ts_pol_rule_t;

typedef struct {
    int check;
    int line;
    apr_array_header_t *src, *dst, *users;  /* const char * */
    json_t *accept_env;         /* array or NULL */
    long check_period;          /* seconds; 0 = default; -1 = always */
} ts_pol_ssh_t;

typedef struct {
    ts_pol_range_t r;
    const char *text;
    apr_array_header_t *approvers;  /* const char * */
} ts_pol_autoroute_t;

typedef struct {
    apr_array_header_t *target;  /* const char * */
    json_t *attr;                /* array of strings, or NULL */
    json_t *ip_pool;             /* array, or NULL */
} ts_pol_nodeattr_t;

struct ts_policy {
    apr_pool_t *pool;
    const char *text;
    json_t *root;
    apr_hash_t *groups;          /* "group:x" -> apr_array of const char * */
    apr_hash_t *group_sets;      /* "group:x" -> apr_hash of its members (lookups) */
    apr_hash_t *hosts;           /* name -> ts_pol_addr_t * */
    apr_hash_t *tag_owners;      /* "tag:x" -> apr_array of const char * */
    apr_array_header_t *rules;   /* ts_pol_rule_t: acls first, then grants */
    apr_array_header_t *ssh;     /* ts_pol_ssh_t */
    apr_array_header_t *auto_routes;  /* ts_pol_autoroute_t */
    apr_array_header_t *auto_exit;    /* const char * */
    apr_array_header_t *node_attrs;   /* ts_pol_nodeattr_t */
    json_t *tests, *ssh_tests;
    int has_filter;              /* acls or grants present */
    int randomize_client_port;
};

/* Per-node state computed by the compiler. */
typedef struct {
    apr_array_header_t *addrs;      /* ts_pol_addr_t: own addresses */
    apr_array_header_t *routes;     /* ts_pol_addr_t: approved subnet routes */
    int exit;                       /* approved exit node (0.0.0.0/0 and ::/0) */
    apr_array_header_t *primary;    /* ts_pol_addr_t: routes it is primary for */
    json_t *filter;                 /* [FilterRule] */
    json_t *ssh;                    /* [SSHRule] */
    json_t *capmap;                 /* {cap: [..]} */
    apr_array_header_t *taglist;    /* const char * (after tagOwners filtering) */
} ts_pol_node_t;

struct ts_policy_result {
    apr_pool_t *pool;
    const ts_policy_t *pol;
    const ts_policy_tailnet_t *tn;
    int n;
    ts_pol_node_t *nodes;
    uint64_t *see;                  /* n x n bit matrix */
    int words;                      /* 64-bit words per row */
    apr_array_header_t *proutes;    /* primary routes and who may use them (filter.c) */
    apr_array_header_t *vias;       /* routes a via grant sends some viewers through */
    void *ssh_cache;                /* per ssh rule: sources, shared principals (ssh.c) */
    void *tests_cache;              /* per rule: resolved sources and destinations (tests.c) */
    apr_array_header_t *all_routes; /* ts_pol_addr_t: every approved subnet route */
    apr_hash_t *by_addr;            /* "ip text" -> int* node index */
    apr_hash_t *by_ip;              /* ts_pol_ipkey() -> int* node index */
    apr_hash_t *by_id;              /* node id (apr_int64_t) -> int* node index */
};

/* Addresses (ts_policy_alias.c). */
int ts_pol_parse_ip(const char *s, ts_pol_range_t *r);
int ts_pol_parse_prefix(const char *s, ts_pol_range_t *r, int *bits, int strict);
const char *ts_pol_range_text(apr_pool_t *p, const ts_pol_range_t *r);
const char *ts_pol_ip_text(apr_pool_t *p, int fam, ts_u128 v);
int ts_pol_overlaps(const ts_pol_range_t *a, const ts_pol_range_t *b);
int ts_pol_contains(const ts_pol_range_t *outer, const ts_pol_range_t *inner);
int ts_pol_parse_ports(apr_pool_t *p, const char *s, apr_array_header_t **out,
                       const char **err);

/* Alias resolution against the tailnet (ts_policy_alias.c). src: the "*" expansion
 * lists CGNAT + ULA + approved routes, dst: "*" stays "*". */
apr_status_t ts_pol_resolve(ts_policy_result_t *r, const char *alias, int src,
                            ts_pol_set_t *set, const char **err);
int ts_pol_node_in_set(const ts_policy_result_t *r, int i, const ts_pol_set_t *s);
int ts_pol_node_matches(const ts_policy_result_t *r, int i, const char *alias);
int ts_pol_node_has_tag(const ts_policy_result_t *r, int i, const char *tag);
int ts_pol_user_in_group(const ts_policy_t *pol, const ts_policy_user_t *u,
                         const char *alias);
int ts_pol_user_matches(const ts_policy_t *pol, const ts_policy_tailnet_t *tn,
                        const ts_policy_user_t *u, const char *alias);
const char *ts_pol_split_dst(apr_pool_t *p, const char *dst, const char **ports);

/* The node owning address ip (a single address), or -1. */
int ts_pol_node_by_ip(const ts_policy_result_t *r, const ts_pol_range_t *ip);
void ts_pol_ipkey(const ts_pol_range_t *ip, unsigned char key[17]);

/* Validation helpers shared by the parsers (ts_policy.c). */
apr_status_t ts_pol_check_alias(const ts_policy_t *pol, apr_pool_t *p, const char *alias,
                                const char *where, const char **err);

/* Stages (one file each). */
apr_status_t ts_pol_routes(ts_policy_result_t *r, const char **err);
apr_status_t ts_pol_filter(ts_policy_result_t *r, const char **err);
apr_status_t ts_pol_ssh(ts_policy_result_t *r, const char **err);
apr_status_t ts_pol_attrs(ts_policy_result_t *r, const char **err);
apr_status_t ts_pol_tests(ts_policy_result_t *r, const char **err);
apr_status_t ts_pol_parse_ssh(ts_policy_t *pol, json_t *arr, const char **err);
apr_status_t ts_pol_parse_duration(const char *s, long *secs);
int ts_pol_route_visible(const ts_policy_result_t *r, int q, int i);
int ts_pol_route_node(const ts_policy_result_t *r, int q, const ts_pol_addr_t **route);
int ts_pol_via_route(const ts_policy_result_t *r, int q, int i, const ts_pol_addr_t **route);

#define TS_POL_BIT_SET(m, w, i, j) ((m)[(size_t)(i) * (w) + ((j) >> 6)] |= (1ULL << ((j) & 63)))
#define TS_POL_BIT(m, w, i, j) (((m)[(size_t)(i) * (w) + ((j) >> 6)] >> ((j) & 63)) & 1)

#endif
