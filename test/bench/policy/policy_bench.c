/* policy_bench.c: compile time of the policy compiler for a generated tailnet (users in
 * groups, tagged servers, HA subnet routers, exit nodes) and a realistic 50-rule policy:
 * parse, compile (routes, every node's filter, the peer matrix, SSH, attributes, tests),
 * then every node's filter serialised to JSON and its peer list, as a map builder would.
 * Usage: policy_bench [N ...] (default 1000 5000); prints one line per size. */
#include "ts_policy.h"

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTAGS 20
#define NGROUPS 10
#define REPEAT 3

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 50 rules: group -> tag ports, tag -> tag, self, subnets, grants with protocols and an
 * app capability; 3 SSH rules; nodeAttrs; 2 tests. */
static char *make_policy(apr_pool_t *p, int nusers)
{
    char *s = apr_pstrdup(p, "{\n // generated benchmark policy\n \"groups\": {\n");
    int g, u, t, k;

    for (g = 0; g < NGROUPS; g++) {
        s = apr_pstrcat(p, s, apr_psprintf(p, "  \"group:g%d\": [", g), NULL);
        for (u = g, k = 0; u < nusers; u += NGROUPS, k++) {
            s = apr_pstrcat(p, s, k ? ", " : "", apr_psprintf(p, "\"u%d@example.com\"", u), NULL);
        }
        s = apr_pstrcat(p, s, "],\n", NULL);
    }
    s = apr_pstrcat(p, s, "  \"group:admins\": [\"u0@example.com\", \"u1@example.com\"],\n },\n"
                    " \"tagOwners\": {\n", NULL);
    for (t = 0; t < NTAGS; t++) {
        s = apr_pstrcat(p, s, apr_psprintf(p, "  \"tag:t%d\": [\"group:admins\"],\n", t), NULL);
    }
    s = apr_pstrcat(p, s, " },\n \"hosts\": {\"lan1\": \"10.1.0.0/16\", \"lan2\": \"10.2.0.0/16\","
                    " \"lan3\": \"10.3.0.0/16\", \"db\": \"10.4.0.10\", \"wide\": \"10.0.0.0/8\"},\n"
                    " \"autoApprovers\": {\"routes\": {\"10.0.0.0/8\": [\"tag:t0\"]},"
                    " \"exitNode\": [\"tag:t1\"]},\n \"acls\": [\n", NULL);
    for (k = 0; k < 40; k++) {
        const char *r;
        switch (k % 8) {
        case 0: r = apr_psprintf(p, "{\"action\": \"accept\", \"src\": [\"group:g%d\"], "
                                 "\"dst\": [\"tag:t%d:22,443\"]}", k % NGROUPS, 2 + k % 18); break;
        case 1: r = apr_psprintf(p, "{\"action\": \"accept\", \"src\": [\"tag:t%d\"], "
                                 "\"dst\": [\"tag:t%d:5432\"]}", 2 + k % 18, 2 + (k + 5) % 18); break;
        case 2: r = "{\"action\": \"accept\", \"src\": [\"autogroup:member\"], "
                    "\"dst\": [\"autogroup:self:*\"]}"; break;
        case 3: r = apr_psprintf(p, "{\"action\": \"accept\", \"src\": [\"group:g%d\", "
                                 "\"group:g%d\"], \"dst\": [\"lan%d:80,443\", \"db:5432\"]}",
                                 k % NGROUPS, (k + 1) % NGROUPS, 1 + k % 3); break;
        case 4: r = apr_psprintf(p, "{\"action\": \"accept\", \"src\": [\"tag:t%d\"], "
                                 "\"dst\": [\"tag:t%d:8000-8100\"], \"proto\": \"tcp\"}",
                                 2 + k % 18, 2 + (k + 3) % 18); break;
        case 5: r = "{\"action\": \"accept\", \"src\": [\"group:admins\"], \"dst\": [\"*:22\"]}";
            break;
        case 6: r = apr_psprintf(p, "{\"action\": \"accept\", \"src\": [\"u%d@example.com\"], "
                                 "\"dst\": [\"tag:t%d:*\"]}", k % nusers, 2 + k % 18); break;
        default: r = "{\"action\": \"accept\", \"src\": [\"autogroup:member\"], "
                     "\"dst\": [\"autogroup:internet:*\"]}"; break;
        }
        s = apr_pstrcat(p, s, "  ", r, ",\n", NULL);
    }
    s = apr_pstrcat(p, s, " ],\n \"grants\": [\n", NULL);
    for (k = 0; k < 10; k++) {
        const char *r = k % 5 == 4
            ? "{\"src\": [\"group:admins\"], \"dst\": [\"tag:t3\"], "
              "\"app\": {\"example.com/cap/admin\": [{\"level\": \"full\"}]}}"
            : apr_psprintf(p, "{\"src\": [\"group:g%d\"], \"dst\": [\"tag:t%d\"], "
                           "\"ip\": [\"tcp:443\", \"udp:53\"]}", k % NGROUPS, 2 + k % 18);
        s = apr_pstrcat(p, s, "  ", r, ",\n", NULL);
    }
    s = apr_pstrcat(p, s, " ],\n \"ssh\": [\n"
        "  {\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self\"],"
        " \"users\": [\"autogroup:nonroot\", \"root\"]},\n"
        "  {\"action\": \"check\", \"src\": [\"group:admins\"], \"dst\": [\"tag:t2\", \"tag:t3\"],"
        " \"users\": [\"root\"]},\n"
        "  {\"action\": \"accept\", \"src\": [\"group:g1\"], \"dst\": [\"tag:t4\"],"
        " \"users\": [\"ubuntu\"]},\n ],\n"
        " \"nodeAttrs\": [{\"target\": [\"tag:t5\"], \"attr\": [\"funnel\"]}],\n"
        " \"tests\": [{\"src\": \"u0@example.com\", \"accept\": [\"tag:t2:22\"]},\n"
        "            {\"src\": \"tag:t3\", \"deny\": [\"tag:t9:22\"]}],\n}\n", NULL);
    return s;
}

static void make_tailnet(apr_pool_t *p, int n, ts_policy_tailnet_t *tn)
{
    int nusers = n / 4 > 2 ? n / 4 : 2, i;
    ts_policy_user_t *u = apr_pcalloc(p, sizeof(*u) * (size_t)nusers);
    ts_policy_node_t *nd = apr_pcalloc(p, sizeof(*nd) * (size_t)n);
    static const char *const domains[] = { "example.com" };

    for (i = 0; i < nusers; i++) {
        u[i].id = i + 1;
        u[i].name = apr_psprintf(p, "u%d", i);
        u[i].email = apr_psprintf(p, "u%d@example.com", i);
        u[i].is_admin = i < 2;
        u[i].is_owner = i == 0;
    }
    for (i = 0; i < n; i++) {
        const char **tags = apr_pcalloc(p, sizeof(char *));
        int a = i + 1;
        nd[i].id = i + 1;
        nd[i].name = apr_psprintf(p, "node%d", i);
        nd[i].ipv4 = apr_psprintf(p, "100.%d.%d.%d", 64 + a / 65536, (a / 256) % 256, a % 256);
        nd[i].ipv6 = apr_psprintf(p, "fd7a:115c:a1e0::%x", a);
        nd[i].join_order = i + 1;
        nd[i].online = 1;
        nd[i].user = -1;
        if (i % 5 < 3) {                  /* 60 % personal devices */
            nd[i].user = i % nusers;
            continue;
        }
        tags[0] = apr_psprintf(p, "tag:t%d", i < 40 ? i % 2 : 2 + i % (NTAGS - 2));
        nd[i].tags = tags;
        nd[i].ntags = 1;
        if (i < 40 && i % 2 == 0) {       /* routers: HA pairs for 10 subnets */
            const char **r = apr_pcalloc(p, sizeof(char *));
            r[0] = apr_psprintf(p, "10.%d.0.0/16", 1 + (i / 4) % 10);
            nd[i].advertised = r;
            nd[i].nadvertised = 1;
        }
        else if (i < 40) {                /* exit nodes */
            static const char *const ex[] = { "0.0.0.0/0", "::/0" };
            nd[i].advertised = ex;
            nd[i].nadvertised = 2;
        }
    }
    tn->users = u;
    tn->nusers = nusers;
    tn->nodes = nd;
    tn->nnodes = n;
    tn->domains = domains;
    tn->ndomains = 1;
    tn->control_url = "https://ctl.example";
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double parse, comp, out;
    size_t bytes, peers, rules;
    int ok;
} sample_t;

/* One measurement, in a child process so that every repetition starts on a fresh heap
 * (freeing the previous repetition's JSON fragments glibc's heap and slows the next). */
static sample_t measure(int n)
{
    apr_pool_t *p, *scratch;
    ts_policy_tailnet_t tn;
    ts_policy_t *pol;
    ts_policy_result_t *r;
    const char *err = NULL, *text;
    double t0, t1, t2, t3;
    sample_t s;
    int i;

    memset(&s, 0, sizeof(s));
    apr_pool_create(&p, NULL);
    memset(&tn, 0, sizeof(tn));
    make_tailnet(p, n, &tn);
    apr_pool_create(&scratch, NULL);     /* built by repeated concatenation */
    text = apr_pstrdup(p, make_policy(scratch, tn.nusers));
    apr_pool_destroy(scratch);
    t0 = now_ms();
    if (ts_policy_parse(p, text, strlen(text), &pol, &err) != APR_SUCCESS) {
        fprintf(stderr, "parse: %s\n", err);
        return s;
    }
    t1 = now_ms();
    if (ts_policy_compile(p, pol, &tn, &r, &err) != APR_SUCCESS) {
        fprintf(stderr, "compile: %s\n", err);
        return s;
    }
    t2 = now_ms();
    for (i = 0; i < n; i++) {
        json_t *f = ts_policy_filter(r, i), *sh = ts_policy_ssh_rules(r, i);
        char *a = json_dumps(f, JSON_COMPACT), *b = json_dumps(sh, JSON_COMPACT);
        apr_array_header_t *pl = ts_policy_peers(r, p, i);
        s.bytes += strlen(a) + strlen(b);
        s.rules += json_array_size(f);
        s.peers += (size_t)pl->nelts;
        free(a);
        free(b);
        json_decref(f);
        json_decref(sh);
    }
    t3 = now_ms();
    s.parse = t1 - t0;
    s.comp = t2 - t1;
    s.out = t3 - t2;
    s.ok = 1;
    apr_pool_destroy(p);
    return s;
}

static int run(int n)
{
    double parse[REPEAT], comp[REPEAT], out[REPEAT];
    sample_t s;
    int rep, fd[2], st;

    memset(&s, 0, sizeof(s));
    for (rep = 0; rep < REPEAT; rep++) {
        pid_t pid;
        if (pipe(fd) != 0 || (pid = fork()) < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(fd[0]);
            s = measure(n);
            _exit(write(fd[1], &s, sizeof(s)) == (ssize_t)sizeof(s) && s.ok ? 0 : 1);
        }
        close(fd[1]);
        if (read(fd[0], &s, sizeof(s)) != (ssize_t)sizeof(s) || !s.ok) {
            close(fd[0]);
            waitpid(pid, &st, 0);
            return 1;
        }
        close(fd[0]);
        waitpid(pid, &st, 0);
        parse[rep] = s.parse;
        comp[rep] = s.comp;
        out[rep] = s.out;
    }
    qsort(parse, REPEAT, sizeof(double), cmp_double);
    qsort(comp, REPEAT, sizeof(double), cmp_double);
    qsort(out, REPEAT, sizeof(double), cmp_double);
    printf("nodes=%d rules=50+3ssh parse_ms=%.1f compile_ms=%.1f filters_json_peers_ms=%.1f "
           "total_ms=%.1f avg_filter_rules=%.1f avg_json_bytes=%zu avg_peers=%zu "
           "(median of %d)\n", n, parse[REPEAT / 2], comp[REPEAT / 2], out[REPEAT / 2],
           parse[REPEAT / 2] + comp[REPEAT / 2] + out[REPEAT / 2], (double)s.rules / n,
           s.bytes / (size_t)n, s.peers / (size_t)n, REPEAT);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    int i, rc = 0;

    apr_initialize();
    if (argc < 2) {
        rc |= run(1000);
        rc |= run(5000);
    }
    for (i = 1; i < argc; i++) {
        rc |= run(atoi(argv[i]));
    }
    apr_terminate();
    return rc;
}
