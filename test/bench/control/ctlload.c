/* ctlload.c: a control-plane load generator for mod_ts2021: thousands of simulated Tailscale
 * nodes in one process (epoll, non-blocking sockets, one TCP connection per node). Each node
 * does what tailscaled does: POST /ts2021 upgrade with Noise message 1, message 2 and the early
 * payload, HTTP/2 (nghttp2 client session) inside Noise records, then /machine/register with a
 * pre-auth key and/or a streaming /machine/map (Compress "zstd", KeepAlive true) whose frames
 * (LE32 length + one or more zstd frames of JSON) are decoded as they arrive.
 *
 * Modes:
 *   register  --nodes N --keys FILE --authkey K
 *             makes N node identities (written to FILE), connects them all (handshakes only),
 *             then sends every /machine/register at once and reports registrations per second
 *             and their latency. --pipeline: each node registers as soon as its connection is
 *             up instead (connect + handshake + register, end to end).
 *   maps      --keys FILE [--nodes N] [--joins J --authkey K]
 *             cold start: every node of FILE opens its connection and map stream at once
 *             (at most --concurrency handshakes in flight), each with a fresh disco key (its
 *             tailscaled restarted too; --same-disco: not); time until each has its first full
 *             map, and the peers it lists. Then waits for the delta storm to settle, reports
 *             the server's memory per connected node, and does J joins one after another: a
 *             new node registers and opens its map; the time from its map request (and from
 *             its register request) until every open stream has heard of it.
 *
 * Times of arrival are the kernel's receive timestamps (SO_TIMESTAMPNS), so the generator's
 * own processing delay is not counted. With --apache-pid, the Apache instance's CPU time and
 * memory (all its processes, from /proc) are reported per phase.
 * Output: "key value" lines on stdout, progress on stderr. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <sodium.h>
#include <zstd.h>

#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"

/* ---- options ---- */

enum { MODE_REGISTER, MODE_MAPS };
enum { DECODE_NONE, DECODE_ALL, DECODE_EVERY };

static struct {
    int mode;
    const char *host;
    int port;
    uint8_t server_pub[32];
    const char *keys;
    long nodes;
    const char *authkey;
    int version;
    int concurrency;            /* connections being set up at once */
    double timeout;             /* a phase gives up after this */
    pid_t apache_pid;
    int pipeline;
    int joins;
    double join_timeout;
    double join_gap;
    int decode;                 /* first maps: decompress and count peers */
    long decode_every;
    int verify;                 /* first maps also parsed with jansson (this many) */
    double quiet;               /* settled: no frame on any stream for this long */
    double settle_max;
    int retry;                  /* map streams: reconnect after a failure before the first map */
    double hold;                /* maps: stay connected this long at the end */
    int quiet_log;
    long expect_peers;          /* maps: peers a first map should list (-1: keys - 1) */
    int same_disco;             /* maps: keep the disco keys of the keys file */
    const char *policy_cmd;     /* maps: a shell command that stores a new policy */
    double policy_timeout;
} opt = {
    .host = "127.0.0.1", .version = 145, .concurrency = 1000, .timeout = 120,
    .joins = 0, .join_timeout = 30, .join_gap = 1, .decode = DECODE_ALL, .decode_every = 1,
    .verify = 3, .quiet = 3, .settle_max = 120, .retry = 1,
    .expect_peers = -1, .policy_timeout = 60,
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);      /* the clock of SO_TIMESTAMPNS */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(const char *fmt, ...)
{
    va_list ap;

    if (opt.quiet_log) return;
    va_start(ap, fmt);
    fprintf(stderr, "ctlload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- failure reasons, counted ---- */

#define MAX_REASONS 64
static struct { char *what; long n; } reasons[MAX_REASONS];
static int nreasons;

static void count_reason(const char *what)
{
    int i;

    for (i = 0; i < nreasons; i++) {
        if (!strcmp(reasons[i].what, what)) {
            reasons[i].n++;
            return;
        }
    }
    if (nreasons < MAX_REASONS) {
        reasons[nreasons].what = strdup(what);
        reasons[nreasons++].n = 1;
    }
}

static void print_reasons(const char *prefix)
{
    int i;

    for (i = 0; i < nreasons; i++) printf("%s \"%s\" %ld\n", prefix, reasons[i].what, reasons[i].n);
    for (i = 0; i < nreasons; i++) free(reasons[i].what);
    nreasons = 0;
}

/* ---- statistics ---- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double pct(const double *v, long n, double p)
{
    long i;

    if (n <= 0) return NAN;
    i = (long)ceil(p * (double)n) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return v[i];
}

/* Prints name_n, _p50_ms, _p90_ms, _p99_ms, _max_ms of seconds in v (sorted here). */
static void print_dist(const char *name, double *v, long n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    printf("%s_n %ld\n", name, n);
    if (!n) return;
    printf("%s_min_ms %.1f\n%s_p50_ms %.1f\n%s_p90_ms %.1f\n%s_p99_ms %.1f\n%s_max_ms %.1f\n",
           name, v[0] * 1e3, name, pct(v, n, 0.5) * 1e3, name, pct(v, n, 0.9) * 1e3, name,
           pct(v, n, 0.99) * 1e3, name, v[n - 1] * 1e3);
}

/* ---- /proc: an Apache instance (parent + children), and this process ---- */

typedef struct {
    int ppid;
    unsigned long long ticks, cticks;
} ps_stat_t;

static int ps_read_stat(pid_t pid, ps_stat_t *st)
{
    char path[64], buf[2048], *p;
    unsigned long long ut, stt;
    long long cu, cs;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(p = strrchr(buf, ')'))) return -1;
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
               &st->ppid, &ut, &stt, &cu, &cs) != 5) {
        return -1;
    }
    st->ticks = ut + stt;
    st->cticks = (unsigned long long)(cu + cs);
    return 0;
}

static int ps_instance(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    ps_stat_t st;
    int n = 0;

    if (!d) return 0;
    out[n++] = parent;
    while ((e = readdir(d)) && n < max) {
        pid_t pid;
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        pid = (pid_t)atoi(e->d_name);
        if (pid != parent && ps_read_stat(pid, &st) == 0 && st.ppid == parent) out[n++] = pid;
    }
    closedir(d);
    return n;
}

/* CPU seconds of the instance so far, including its reaped children. */
static double ps_cpu(pid_t parent)
{
    pid_t pids[1024];
    int i, n;
    unsigned long long t = 0;
    ps_stat_t st;

    if (!parent) return 0;
    n = ps_instance(parent, pids, 1024);
    for (i = 0; i < n; i++) {
        if (ps_read_stat(pids[i], &st) != 0) continue;
        t += st.ticks + (pids[i] == parent ? st.cticks : 0);
    }
    return (double)t / (double)sysconf(_SC_CLK_TCK);
}

static long ps_field_kb(const char *path, const char *name)
{
    char line[256];
    size_t len = strlen(name);
    long v = -1;
    FILE *f = fopen(path, "r");

    if (!f) return -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, name, len) && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

typedef struct {
    int nproc;
    long rss_kb, pss_kb, anon_kb, max_child_rss_kb;
} ps_mem_t;

static ps_mem_t ps_mem(pid_t parent)
{
    pid_t pids[1024];
    ps_mem_t m = { 0, 0, 0, 0, 0 };
    char path[64];
    long v;
    int i, n;

    if (!parent) return m;
    n = ps_instance(parent, pids, 1024);
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pids[i]);
        if ((v = ps_field_kb(path, "VmRSS")) < 0) continue;
        m.nproc++;
        m.rss_kb += v;
        if (i > 0 && v > m.max_child_rss_kb) m.max_child_rss_kb = v;
        if ((v = ps_field_kb(path, "RssAnon")) > 0) m.anon_kb += v;
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pids[i]);
        if ((v = ps_field_kb(path, "Pss")) > 0) m.pss_kb += v;
    }
    return m;
}

static void print_mem(const char *name, ps_mem_t m)
{
    printf("%s_procs %d\n%s_rss_kib %ld\n%s_pss_kib %ld\n%s_anon_kib %ld\n"
           "%s_largest_child_rss_kib %ld\n", name, m.nproc, name, m.rss_kb, name, m.pss_kb,
           name, m.anon_kb, name, m.max_child_rss_kb);
}

static double self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
           + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds spent by the whole box (all CPUs, not idle) so far. */
static double sys_busy(void)
{
    unsigned long long v[10] = { 0 }, busy = 0;
    FILE *f = fopen("/proc/stat", "r");
    int i, k;

    if (!f) return 0;
    k = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    for (i = 0; i < k; i++) {
        if (i != 3 && i != 4) busy += v[i];      /* not idle, not iowait */
    }
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* CPU used by other processes on the box: anything else competing for the cores. */
typedef struct { double sys, apache, self; } cpu_mark_t;

static cpu_mark_t cpu_mark(void)
{
    cpu_mark_t m = { sys_busy(), ps_cpu(opt.apache_pid), self_cpu() };
    return m;
}

static double other_cpu(cpu_mark_t a, cpu_mark_t b)
{
    double o = (b.sys - a.sys) - (b.apache - a.apache) - (b.self - a.self);
    return o > 0 ? o : 0;
}

static long self_rss_kb(void)
{
    return ps_field_kb("/proc/self/status", "VmRSS");
}

/* ---- node identities ---- */

typedef struct ident {
    uint8_t mpriv[32], npriv[32], dpriv[32];
    long seq;                   /* makes its Hostinfo, endpoints and host name */
    char name[48];
    char nodekey[8 + 64 + 1];
    char discokey[9 + 64 + 1];
} ident_t;

static void hex(char *out, const uint8_t *in, size_t n)
{
    static const char d[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

static void ident_texts(ident_t *id)
{
    uint8_t pub[32];

    ts_crypto_x25519_public(pub, id->npriv);
    memcpy(id->nodekey, "nodekey:", 8);
    hex(id->nodekey + 8, pub, 32);
    ts_crypto_x25519_public(pub, id->dpriv);
    memcpy(id->discokey, "discokey:", 9);
    hex(id->discokey + 9, pub, 32);
}

static void ident_new(ident_t *id)
{
    uint8_t pub[32];

    ts_crypto_x25519_keypair(id->mpriv, pub);
    ts_crypto_x25519_keypair(id->npriv, pub);
    ts_crypto_x25519_keypair(id->dpriv, pub);
    ident_texts(id);
}

static int idents_save(const char *path, const ident_t *ids, long n)
{
    FILE *f = fopen(path, "w");
    char a[65], b[65], c[65];
    long i;

    if (!f) return -1;
    for (i = 0; i < n; i++) {
        hex(a, ids[i].mpriv, 32);
        hex(b, ids[i].npriv, 32);
        hex(c, ids[i].dpriv, 32);
        fprintf(f, "%s %s %s %ld %s\n", a, b, c, ids[i].seq, ids[i].name);
    }
    return fclose(f);
}

static long idents_load(const char *path, ident_t **out)
{
    FILE *f = fopen(path, "r");
    char a[80], b[80], c[80], name[48];
    long n = 0, cap = 1024, seq;
    ident_t *ids = malloc(sizeof(*ids) * (size_t)cap);

    if (!f || !ids) return -1;
    while (fscanf(f, "%79s %79s %79s %ld %47s", a, b, c, &seq, name) == 5) {
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, sizeof(*ids) * (size_t)cap);
            if (!ids) return -1;
        }
        if (sodium_hex2bin(ids[n].mpriv, 32, a, 64, NULL, NULL, NULL) != 0
            || sodium_hex2bin(ids[n].npriv, 32, b, 64, NULL, NULL, NULL) != 0
            || sodium_hex2bin(ids[n].dpriv, 32, c, 64, NULL, NULL, NULL) != 0) {
            fclose(f);
            return -1;
        }
        ident_texts(&ids[n]);
        ids[n].seq = seq;
        memcpy(ids[n].name, name, sizeof(name));
        n++;
    }
    fclose(f);
    *out = ids;
    return n;
}

/* A Hostinfo shaped like a Linux tailscaled's (about 900 bytes with NetInfo); the same text in
 * the register and the map request, as a client sends it. */
static int hostinfo(char *out, size_t cap, const char *name, long i)
{
    return snprintf(out, cap,
        "{\"IPNVersion\":\"1.96.0-ctlload\",\"BackendLogID\":\"%064lx\",\"OS\":\"linux\","
        "\"OSVersion\":\"6.1.0-18-amd64\",\"Distro\":\"debian\",\"DistroVersion\":\"12.5\","
        "\"DistroCodeName\":\"bookworm\",\"Desktop\":false,\"Hostname\":\"%s\",\"GoArch\":\"amd64\","
        "\"GoVersion\":\"go1.22.1\",\"Services\":[{\"Proto\":\"peerapi4\",\"Port\":%ld},"
        "{\"Proto\":\"peerapi6\",\"Port\":%ld},{\"Proto\":\"peerapi-dns-proxy\",\"Port\":1}],"
        "\"NetInfo\":{\"MappingVariesByDestIP\":false,\"HairPinning\":false,\"WorkingIPv6\":true,"
        "\"OSHasIPv6\":true,\"WorkingUDP\":true,\"WorkingICMPv4\":true,\"UPnP\":false,"
        "\"PMP\":false,\"PCP\":false,\"PreferredDERP\":900,\"DERPLatency\":{\"900-v4\":0.0123,"
        "\"900-v6\":0.0131}},\"Userspace\":false,\"UserspaceRouter\":false}",
        (unsigned long)i * 2654435761u, name, 40000 + i % 20000, 40000 + i % 20000);
}

/* ---- nodes and their connection ---- */

enum { ST_IDLE, ST_CONNECTING, ST_UPGRADE, ST_MSG2, ST_H2, ST_DEAD };
enum { ROLE_REG, ROLE_MAP, ROLE_JOIN };
enum { SK_REG = 1, SK_MAP = 2 };

struct node;
typedef struct h2req {
    struct node *n;
    int kind;
    int32_t sid;
    char *body;
    size_t len, off;
    int status;
} h2req_t;

typedef struct node {
    long idx;
    int role;
    ident_t *id;
    char name[48];
    int fd, state;
    uint32_t reg_ev;
    ts_noise_handshake_t *hs;
    ts_noise_cipher_t tx, rx;
    ts_frame_reader_t *reader;
    int early_done;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    nghttp2_session *h2;
    h2req_t reg, map;
    char *resp;                 /* register answer, or an error body */
    size_t resp_len, resp_cap;
    /* the map stream's frames */
    uint8_t fhdr[4];
    int fhdr_have;
    uint32_t flen, fgot;
    int fkeep;
    uint8_t *fbuf;
    size_t fcap;
    double rx_ts;               /* kernel arrival time of the bytes being processed */
    /* timeline (CLOCK_REALTIME s) */
    double t_start, t_attempt, t_conn, t_up, t_reg_sent, t_reg_done, t_map_sent, t_map_head, t_first;
    double retry_at;
    int attempts;
    int up;                     /* HTTP/2 session working */
    int reg_done, reg_ok;
    int want_map;               /* join: map request after the register answer */
    long frames;
    uint64_t zbytes;
    long peers;                 /* first map: peers listed (-1: not decoded) */
    uint32_t first_z;
    size_t first_raw;
    int first_node_ok;
    int dropped;                /* the stream ended after its first map */
    int closing;
    const char *fail;
    char failbuf[128];
    int goaway;
} node_t;

static int epfd;
static nghttp2_session_callbacks *h2cbs;
static long setting_up;         /* connections in ST_CONNECTING..H2 before up */
static ZSTD_DCtx *dctx;
static uint8_t *zout;
static size_t zout_cap;
static uint8_t *scratch;        /* HTTP/2 bytes to seal */
static size_t scratch_cap;

static long st_frames, st_deltas, st_keepalives;
static uint64_t st_zbytes, st_rawbytes;
static double last_frame_at;    /* any stream, map-mode base nodes */
static long st_goaways, st_dropped;

/* the join in progress */
static struct {
    int active;
    ident_t *id;
    long node_id;
    double *heard_peer, *heard_disco, *heard_online;
    long parses;
} J;

/* the policy change in progress: when each base stream got its new PacketFilter */
static struct {
    int active;
    double *heard;
} P;

static node_t *base;            /* the N nodes */
static long nbase;
static long nkeys;              /* nodes registered beforehand (the keys file) */

static int buf_reserve(void *bufp, size_t *cap, size_t need)
{
    uint8_t **buf = bufp, *p;
    size_t ncap;

    if (need <= *cap) return 0;
    ncap = *cap ? *cap : 512;
    while (ncap < need) ncap *= 2;
    if (!(p = realloc(*buf, ncap))) return -1;
    *buf = p;
    *cap = ncap;
    return 0;
}

static void node_fail(node_t *n, const char *fmt, ...)
{
    va_list ap;

    if (n->closing) return;
    n->closing = 1;
    if (!fmt) return;
    va_start(ap, fmt);
    vsnprintf(n->failbuf, sizeof(n->failbuf), fmt, ap);
    va_end(ap);
    n->fail = n->failbuf;
}

static void on_node_closed(node_t *n);

/* Tears the connection down (never from inside an nghttp2 callback: node_fail defers). */
static void node_close(node_t *n)
{
    if (n->state == ST_DEAD || n->state == ST_IDLE) return;
    if (!n->up) setting_up--;
    n->state = ST_DEAD;
    if (n->fd >= 0) close(n->fd);
    n->fd = -1;
    if (n->h2) nghttp2_session_del(n->h2);
    n->h2 = NULL;
    if (n->hs) {
        ts_noise_handshake_wipe(n->hs);
        free(n->hs);
        n->hs = NULL;
    }
    free(n->reader);
    free(n->in);
    free(n->out);
    free(n->fbuf);
    free(n->reg.body);
    free(n->map.body);
    n->reader = NULL;
    n->in = n->out = n->fbuf = NULL;
    n->in_cap = n->in_len = n->out_cap = n->out_len = n->out_off = n->fcap = 0;
    n->reg.body = n->map.body = NULL;
    on_node_closed(n);
}

static void node_update_events(node_t *n)
{
    uint32_t want = EPOLLIN;
    struct epoll_event ev;

    if (n->state == ST_CONNECTING || n->out_len > n->out_off) want |= EPOLLOUT;
    if (want == n->reg_ev) return;
    memset(&ev, 0, sizeof(ev));
    ev.events = want;
    ev.data.ptr = n;
    epoll_ctl(epfd, EPOLL_CTL_MOD, n->fd, &ev);
    n->reg_ev = want;
}

static int queue_raw(node_t *n, const void *data, size_t len)
{
    if (n->out_off == n->out_len) n->out_off = n->out_len = 0;
    if (buf_reserve(&n->out, &n->out_cap, n->out_len + len) != 0) return -1;
    memcpy(n->out + n->out_len, data, len);
    n->out_len += len;
    return 0;
}

static int queue_sealed(node_t *n, const uint8_t *pt, size_t len)
{
    size_t w = 0;
    const char *err = NULL;

    if (!len) return 0;
    if (n->out_off == n->out_len) n->out_off = n->out_len = 0;
    if (buf_reserve(&n->out, &n->out_cap, n->out_len + ts_frame_sealed_len(len)) != 0) return -1;
    if (ts_frame_seal(&n->tx, n->out + n->out_len, n->out_cap - n->out_len, pt, len, &w, &err)
        != APR_SUCCESS) {
        return -1;
    }
    n->out_len += w;
    return 0;
}

/* What nghttp2 wants to send, sealed in as few records as possible. */
static int h2_pump(node_t *n)
{
    size_t have = 0;

    if (!n->h2 || n->closing) return 0;
    for (;;) {
        const uint8_t *d;
        ssize_t k = nghttp2_session_mem_send(n->h2, &d);
        if (k < 0) {
            node_fail(n, "nghttp2 send: %s", nghttp2_strerror((int)k));
            return -1;
        }
        if (k == 0) break;
        if (buf_reserve(&scratch, &scratch_cap, have + (size_t)k) != 0) return -1;
        memcpy(scratch + have, d, (size_t)k);
        have += (size_t)k;
    }
    if (queue_sealed(n, scratch, have) != 0) {
        node_fail(n, "seal");
        return -1;
    }
    return 0;
}

static int node_flush(node_t *n)
{
    while (n->out_off < n->out_len) {
        ssize_t k = send(n->fd, n->out + n->out_off, n->out_len - n->out_off, MSG_NOSIGNAL);
        if (k > 0) {
            n->out_off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1;
    }
    n->out_off = n->out_len = 0;
    if (n->out_cap > 65536) {
        free(n->out);
        n->out = NULL;
        n->out_cap = 0;
    }
    return 0;
}

/* ---- requests ---- */

static ssize_t body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    h2req_t *r = src->ptr;
    size_t k = r->len - r->off;

    (void)s;
    (void)sid;
    (void)ud;
    if (k > len) k = len;
    memcpy(buf, r->body + r->off, k);
    r->off += k;
    if (r->off == r->len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)k;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

static int submit_post(node_t *n, h2req_t *r, int kind, const char *path, char *body, size_t len)
{
    char clen[24];
    nghttp2_data_provider prd;

    snprintf(clen, sizeof(clen), "%zu", len);
    {
        nghttp2_nv h[] = {
            NV(":method", "POST"), NV(":path", path), NV(":scheme", "https"),
            NV(":authority", "127.0.0.1"), NV("content-type", "application/json"),
            NV("content-length", clen), NV("user-agent", "ctlload"),
        };
        memset(r, 0, sizeof(*r));
        r->n = n;
        r->kind = kind;
        r->body = body;
        r->len = len;
        prd.source.ptr = r;
        prd.read_callback = body_read;
        r->sid = nghttp2_submit_request(n->h2, NULL, h, sizeof(h) / sizeof(h[0]), &prd, r);
    }
    if (r->sid < 0) {
        node_fail(n, "submit: %s", nghttp2_strerror(r->sid));
        return -1;
    }
    if (h2_pump(n) != 0) return -1;
    if (node_flush(n) != 0) {
        node_fail(n, "write failed");
        return -1;
    }
    node_update_events(n);
    return 0;
}

static int send_register(node_t *n)
{
    char hi[1200], *body = malloc(4096);
    int len;

    if (!body) return -1;
    hostinfo(hi, sizeof(hi), n->name, n->id->seq);
    len = snprintf(body, 4096,
                   "{\"Version\":%d,\"NodeKey\":\"%s\",\"OldNodeKey\":\"nodekey:"
                   "0000000000000000000000000000000000000000000000000000000000000000\","
                   "\"Auth\":{\"AuthKey\":\"%s\"},\"Expiry\":\"0001-01-01T00:00:00Z\","
                   "\"Followup\":\"\",\"Hostinfo\":%s,\"Ephemeral\":false}",
                   opt.version, n->id->nodekey, opt.authkey ? opt.authkey : "", hi);
    n->t_reg_sent = now_s();
    return submit_post(n, &n->reg, SK_REG, "/machine/register", body, (size_t)len);
}

static int send_map(node_t *n)
{
    char hi[1200], *body = malloc(4096);
    long i = n->id->seq;
    int len;

    if (!body) return -1;
    hostinfo(hi, sizeof(hi), n->name, n->id->seq);
    len = snprintf(body, 4096,
                   "{\"Version\":%d,\"NodeKey\":\"%s\",\"DiscoKey\":\"%s\","
                   "\"Endpoints\":[\"198.51.%ld.%ld:41641\",\"10.%ld.%ld.%ld:41641\"],"
                   "\"EndpointTypes\":[2,1],\"Hostinfo\":%s,\"Stream\":true,\"OmitPeers\":false,"
                   "\"ReadOnly\":false,\"KeepAlive\":true,\"Compress\":\"zstd\"}",
                   opt.version, n->id->nodekey, n->id->discokey, 100 + (i >> 8) % 100, i & 255,
                   (i >> 16) & 255, (i >> 8) & 255, i & 255, hi);
    n->fhdr_have = 0;
    n->t_map_sent = now_s();
    return submit_post(n, &n->map, SK_MAP, "/machine/map", body, (size_t)len);
}

/* ---- map frames ---- */

/* A map payload: one or more whole zstd frames, outputs concatenated (as clients decode it:
 * a server may send a full map as a head frame, shared peer-chunk frames and a tail frame). */
static const uint8_t *zstd_decode(const uint8_t *src, size_t len, size_t *out_len)
{
    unsigned long long total = 0;
    size_t off = 0, r;
    int unknown = 0;

    if (!len) return NULL;
    while (off < len) {
        size_t fsize = ZSTD_findFrameCompressedSize(src + off, len - off);
        unsigned long long sz;
        if (ZSTD_isError(fsize)) return NULL;
        sz = ZSTD_getFrameContentSize(src + off, len - off);
        if (sz == ZSTD_CONTENTSIZE_ERROR) return NULL;
        if (sz == ZSTD_CONTENTSIZE_UNKNOWN) unknown = 1;
        else total += sz;
        off += fsize;
    }
    if (!unknown) {
        if (buf_reserve(&zout, &zout_cap, (size_t)total + 1) != 0) return NULL;
        r = ZSTD_decompressDCtx(dctx, zout, zout_cap, src, len);     /* every frame */
        if (ZSTD_isError(r) || r != total) return NULL;
    }
    else {
        ZSTD_inBuffer in = { src, len, 0 };
        ZSTD_outBuffer out;
        r = 0;
        ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
        for (;;) {
            size_t rv;
            if (buf_reserve(&zout, &zout_cap, r + 65536) != 0) return NULL;
            out.dst = zout;
            out.size = zout_cap - 1;
            out.pos = r;
            rv = ZSTD_decompressStream(dctx, &out, &in);
            if (ZSTD_isError(rv)) return NULL;
            r = out.pos;
            if (rv == 0 && in.pos == in.size) break;                  /* the last frame */
            if (rv != 0 && in.pos == in.size && out.pos < out.size) return NULL;   /* truncated */
        }
    }
    zout[r] = 0;
    *out_len = r;
    return zout;
}

static long count_str(const uint8_t *s, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    const uint8_t *p = s, *end = s + len;
    long c = 0;

    while ((p = memmem(p, (size_t)(end - p), needle, nl)) != NULL) {
        c++;
        p += nl;
    }
    return c;
}

static long verified, verify_mismatch;

static void first_map_decoded(node_t *n, const uint8_t *js, size_t len)
{
    long stable = count_str(js, len, "\"StableID\":\"");
    int has_node = memmem(js, len, "\"Node\":{", 8) != NULL;

    n->first_raw = len;
    n->first_node_ok = has_node && memmem(js, len, "\"DERPMap\":", 10) != NULL;
    n->peers = stable - (has_node ? 1 : 0);
    if (verified < opt.verify) {
        json_t *j = json_loadb((const char *)js, len, 0, NULL);
        json_t *peers = j ? json_object_get(j, "Peers") : NULL;
        long np = peers ? (long)json_array_size(peers) : 0;
        verified++;
        if (!j || !json_object_get(j, "Node") || np != n->peers) verify_mismatch++;
        if (j) json_decref(j);
    }
}

/* A delta on a base stream during a join: did it name the joining node? */
static void join_inspect(node_t *n, const uint8_t *js, size_t len, double ts)
{
    long i = n->idx;
    const char *nk = J.id->nodekey + 8, *dk = J.id->discokey + 9;
    char idpat[40];
    int hit = memmem(js, len, nk, 64) != NULL || memmem(js, len, dk, 64) != NULL;
    json_t *j, *a, *v;
    size_t k;

    if (!hit && J.node_id > 0) {
        int l = snprintf(idpat, sizeof(idpat), "%ld", J.node_id);
        hit = memmem(js, len, idpat, (size_t)l) != NULL;
    }
    if (!hit) return;
    J.parses++;
    if (!(j = json_loadb((const char *)js, len, 0, NULL))) return;
    a = json_object_get(j, "PeersChanged");
    json_array_foreach(a, k, v) {
        const char *key = json_string_value(json_object_get(v, "Key"));
        const char *disco = json_string_value(json_object_get(v, "DiscoKey"));
        if (!key || strcmp(key, J.id->nodekey)) continue;
        if (J.node_id <= 0) J.node_id = (long)json_integer_value(json_object_get(v, "ID"));
        if (!J.heard_peer[i]) J.heard_peer[i] = ts;
        if (disco && !strcmp(disco, J.id->discokey) && !J.heard_disco[i]) J.heard_disco[i] = ts;
        if (json_is_true(json_object_get(v, "Online")) && !J.heard_online[i]) J.heard_online[i] = ts;
    }
    a = json_object_get(j, "PeersChangedPatch");
    json_array_foreach(a, k, v) {
        const char *disco = json_string_value(json_object_get(v, "DiscoKey"));
        if (J.node_id <= 0 || json_integer_value(json_object_get(v, "NodeID")) != J.node_id) continue;
        if (disco && !strcmp(disco, J.id->discokey) && !J.heard_disco[i]) J.heard_disco[i] = ts;
        if (json_is_true(json_object_get(v, "Online")) && !J.heard_online[i]) J.heard_online[i] = ts;
    }
    a = json_object_get(j, "OnlineChange");
    if (J.node_id > 0 && json_is_object(a)) {
        char key[32];
        snprintf(key, sizeof(key), "%ld", J.node_id);
        if (json_is_true(json_object_get(a, key)) && !J.heard_online[i]) J.heard_online[i] = ts;
    }
    json_decref(j);
}

static int frame_wanted(node_t *n)
{
    if (n->frames == 0) {
        if (n->role == ROLE_JOIN) return 1;
        if (opt.decode == DECODE_ALL) return 1;
        if (opt.decode == DECODE_EVERY) return n->idx % opt.decode_every == 0;
        return 0;
    }
    return (J.active || P.active) && n->role == ROLE_MAP;
}

static void frame_done(node_t *n)
{
    double ts = n->rx_ts;
    const uint8_t *js = NULL;
    size_t jlen = 0;

    st_frames++;
    st_zbytes += n->flen + 4;
    n->zbytes += n->flen + 4;
    if (n->role == ROLE_MAP) last_frame_at = ts;
    if (n->fkeep) {
        js = zstd_decode(n->fbuf, n->flen, &jlen);
        if (!js) {
            node_fail(n, "bad zstd frame");
            return;
        }
        st_rawbytes += jlen;
    }
    if (n->frames++ == 0) {
        n->t_first = ts;
        n->first_z = n->flen;
        if (js) first_map_decoded(n, js, jlen);
        if (n->role == ROLE_JOIN && js && J.node_id <= 0) {
            json_t *j = json_loadb((const char *)js, jlen, 0, NULL);
            if (j) {
                J.node_id = (long)json_integer_value(json_object_get(json_object_get(j, "Node"),
                                                                     "ID"));
                json_decref(j);
            }
        }
    }
    else {
        st_deltas++;
        if (js && jlen == 18 && !memcmp(js, "{\"KeepAlive\":true}", 18)) st_keepalives++;
        else if (js && J.active && n->role == ROLE_MAP) join_inspect(n, js, jlen, ts);
        if (js && P.active && n->role == ROLE_MAP && !P.heard[n->idx]
            && memmem(js, jlen, "\"PacketFilter\"", 14))
            P.heard[n->idx] = ts;
    }
    if (n->fcap > 65536) {
        free(n->fbuf);
        n->fbuf = NULL;
        n->fcap = 0;
    }
}

static void map_bytes(node_t *n, const uint8_t *d, size_t len)
{
    while (len > 0 && !n->closing) {
        if (n->fhdr_have < 4) {
            n->fhdr[n->fhdr_have++] = *d++;
            len--;
            if (n->fhdr_have == 4) {
                n->flen = (uint32_t)n->fhdr[0] | (uint32_t)n->fhdr[1] << 8
                          | (uint32_t)n->fhdr[2] << 16 | (uint32_t)n->fhdr[3] << 24;
                n->fgot = 0;
                n->fkeep = frame_wanted(n);
                if (n->flen > (256u << 20)) {
                    node_fail(n, "map frame of %u bytes", n->flen);
                    return;
                }
                if (n->fkeep && buf_reserve(&n->fbuf, &n->fcap, n->flen + 1) != 0) {
                    node_fail(n, "oom");
                    return;
                }
                if (n->flen == 0) {
                    n->fhdr_have = 0;
                    frame_done(n);
                }
            }
            continue;
        }
        {
            size_t take = n->flen - n->fgot;
            if (take > len) take = len;
            if (n->fkeep) memcpy(n->fbuf + n->fgot, d, take);
            n->fgot += (uint32_t)take;
            d += take;
            len -= take;
            if (n->fgot == n->flen) {
                n->fhdr_have = 0;
                frame_done(n);
            }
        }
    }
}

/* ---- nghttp2 callbacks ---- */

static int cb_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    h2req_t *r;

    (void)flags;
    (void)ud;
    (void)vl;
    if (f->hd.type != NGHTTP2_HEADERS || nl != 7 || memcmp(name, ":status", 7)) return 0;
    r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (r) r->status = atoi((const char *)value);
    return 0;
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    node_t *n = ud;
    h2req_t *r;

    if (f->hd.type == NGHTTP2_GOAWAY) {
        n->goaway = 1;
        st_goaways++;
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_RESPONSE) return 0;
    r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (r && r->kind == SK_MAP && r->status == 200) n->t_map_head = n->rx_ts;
    return 0;
}

static int cb_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t len,
                   void *ud)
{
    node_t *n = ud;
    h2req_t *r = nghttp2_session_get_stream_user_data(s, sid);

    (void)flags;
    if (!r) return 0;
    if (r->kind == SK_MAP && r->status == 200) {
        map_bytes(n, d, len);
        return 0;
    }
    if (n->resp_len < 65536) {
        if (buf_reserve(&n->resp, &n->resp_cap, n->resp_len + len + 1) != 0) return 0;
        memcpy(n->resp + n->resp_len, d, len);
        n->resp_len += len;
        n->resp[n->resp_len] = 0;
    }
    return 0;
}

static void reg_answer(node_t *n, h2req_t *r, uint32_t code)
{
    json_t *j;
    const char *e;

    n->reg_done = 1;
    n->t_reg_done = n->rx_ts;
    if (code || r->status != 200) {
        node_fail(n, "register: HTTP %d%s %.60s", r->status, code ? " (reset)" : "",
                  n->resp ? n->resp : "");
        return;
    }
    j = n->resp ? json_loadb(n->resp, n->resp_len, 0, NULL) : NULL;
    if (!j) {
        node_fail(n, "register: answer is not JSON");
        return;
    }
    e = json_string_value(json_object_get(j, "Error"));
    if (e && *e) node_fail(n, "register: Error \"%.80s\"", e);
    else if (!json_is_true(json_object_get(j, "MachineAuthorized"))) {
        const char *u = json_string_value(json_object_get(j, "AuthURL"));
        node_fail(n, "register: not authorized%s", u && *u ? " (AuthURL)" : "");
    }
    else n->reg_ok = 1;
    json_decref(j);
    n->resp_len = 0;
    if (n->reg_ok && n->role == ROLE_JOIN) n->want_map = 1;
}

static int cb_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    node_t *n = ud;
    h2req_t *r = nghttp2_session_get_stream_user_data(s, sid);

    if (!r) return 0;
    if (r->kind == SK_REG) reg_answer(n, r, code);
    else if (r->kind == SK_MAP) {
        if (!n->frames) {
            node_fail(n, "map: HTTP %d%s %.60s", r->status, code ? " (reset)" : "",
                      n->resp ? n->resp : "ended before the first frame");
        }
        else {
            n->dropped = 1;
            node_fail(n, NULL);
        }
    }
    return 0;
}

/* ---- the connection ---- */

static int send_upgrade(node_t *n)
{
    uint8_t msg1[TS_NOISE_MSG1_LEN];
    char b64[sodium_base64_ENCODED_LEN(TS_NOISE_MSG1_LEN, sodium_base64_VARIANT_ORIGINAL)];
    char req[512];
    const char *err = NULL;
    int k;

    if (!(n->hs = malloc(sizeof(*n->hs)))) return -1;
    if (ts_noise_initiator_init(n->hs, (uint16_t)opt.version, n->id->mpriv, opt.server_pub)
        != APR_SUCCESS || ts_noise_write_msg1(n->hs, NULL, msg1, &err) != APR_SUCCESS) {
        return -1;
    }
    sodium_bin2base64(b64, sizeof(b64), msg1, sizeof(msg1), sodium_base64_VARIANT_ORIGINAL);
    k = snprintf(req, sizeof(req),
                 "POST /ts2021 HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: Go-http-client/1.1\r\n"
                 "Content-Length: 0\r\nConnection: upgrade\r\n"
                 "Upgrade: tailscale-control-protocol\r\nX-Tailscale-Handshake: %s\r\n\r\n",
                 opt.host, opt.port, b64);
    n->state = ST_UPGRADE;
    return queue_raw(n, req, (size_t)k);
}

static void on_up(node_t *n);

static int h2_start(node_t *n)
{
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 4 << 20 },
    };

    if (nghttp2_session_client_new(&n->h2, h2cbs, n) != 0) return -1;
    if (nghttp2_submit_settings(n->h2, NGHTTP2_FLAG_NONE, iv, 2) != 0) return -1;
    nghttp2_session_set_local_window_size(n->h2, NGHTTP2_FLAG_NONE, 0, 1 << 30);
    return h2_pump(n);
}

/* Plaintext from the server: the early payload first, then HTTP/2. */
static void h2_plain(node_t *n, const uint8_t *pt, size_t len)
{
    ssize_t k;

    if (!n->early_done) {
        size_t total = 0, off = 0;
        apr_status_t rv;
        if (buf_reserve(&n->in, &n->in_cap, n->in_len + len) != 0) {
            node_fail(n, "oom");
            return;
        }
        memcpy(n->in + n->in_len, pt, len);
        n->in_len += len;
        rv = ts_frame_early_payload_detect(n->in, n->in_len, &total);
        if (rv == APR_INCOMPLETE) return;
        if (rv == APR_SUCCESS) {
            if (n->in_len < total) return;
            off = total;
        }
        else if (rv != APR_NOTFOUND) {
            node_fail(n, "bad early payload");
            return;
        }
        n->early_done = 1;
        pt = n->in + off;
        len = n->in_len - off;
    }
    if (len) {
        k = nghttp2_session_mem_recv(n->h2, pt, len);
        if (k < 0) node_fail(n, "nghttp2 recv: %s", nghttp2_strerror((int)k));
    }
    if (n->in) {
        free(n->in);
        n->in = NULL;
        n->in_len = n->in_cap = 0;
    }
}

static void records_in(node_t *n, const uint8_t *in, size_t len)
{
    const uint8_t *pt;
    size_t used, ptlen;
    const char *err = NULL;

    while (len > 0 && !n->closing) {
        apr_status_t rv = ts_frame_reader_feed(n->reader, in, len, &used, &pt, &ptlen, &err);
        in += used;
        len -= used;
        if (rv == APR_INCOMPLETE) break;
        if (rv != APR_SUCCESS) {
            node_fail(n, "bad record: %s", err ? err : "?");
            return;
        }
        h2_plain(n, pt, ptlen);
    }
}

static void node_input(node_t *n, const uint8_t *data, size_t len)
{
    if (n->state == ST_H2) {
        records_in(n, data, len);
        return;
    }
    if (buf_reserve(&n->in, &n->in_cap, n->in_len + len) != 0) {
        node_fail(n, "oom");
        return;
    }
    memcpy(n->in + n->in_len, data, len);
    n->in_len += len;
    if (n->state == ST_UPGRADE) {
        uint8_t *end = memmem(n->in, n->in_len, "\r\n\r\n", 4);
        int status = 0;
        size_t head;
        if (!end) {
            if (n->in_len > 16384) node_fail(n, "HTTP head too long");
            return;
        }
        head = (size_t)(end - n->in) + 4;
        if (sscanf((char *)n->in, "HTTP/1.%*d %d", &status) != 1) status = -1;
        if (status != 101) {
            node_fail(n, "upgrade: HTTP %d", status);
            return;
        }
        memmove(n->in, n->in + head, n->in_len - head);
        n->in_len -= head;
        n->state = ST_MSG2;
    }
    if (n->state == ST_MSG2) {
        ts_noise_session_t sess;
        const char *err = NULL;
        uint8_t *rest;
        size_t nrest;

        if (n->in_len >= 1 && n->in[0] == TS_FRAME_TYPE_ERROR) {
            node_fail(n, "Noise error frame");
            return;
        }
        if (n->in_len < TS_NOISE_MSG2_LEN) return;
        if (ts_noise_read_msg2(n->hs, n->in, TS_NOISE_MSG2_LEN, &err) != APR_SUCCESS
            || ts_noise_split(n->hs, &sess, &err) != APR_SUCCESS) {
            node_fail(n, "Noise message 2 rejected");
            return;
        }
        ts_noise_handshake_wipe(n->hs);
        free(n->hs);
        n->hs = NULL;
        n->tx = sess.tx;
        n->rx = sess.rx;
        ts_noise_session_wipe(&sess);
        if (!(n->reader = malloc(sizeof(*n->reader)))) {
            node_fail(n, "oom");
            return;
        }
        ts_frame_reader_init(n->reader, &n->rx);
        n->state = ST_H2;
        rest = n->in;
        nrest = n->in_len - TS_NOISE_MSG2_LEN;
        n->in = NULL;
        n->in_len = n->in_cap = 0;
        if (h2_start(n) != 0) {
            free(rest);
            node_fail(n, "HTTP/2 start");
            return;
        }
        n->up = 1;
        n->t_up = now_s();
        setting_up--;
        if (nrest) records_in(n, rest + TS_NOISE_MSG2_LEN, nrest);
        free(rest);
        if (!n->closing) on_up(n);
    }
}

static ssize_t node_recv(node_t *n, uint8_t *buf, size_t len)
{
    char cbuf[CMSG_SPACE(sizeof(struct timespec)) + 64];
    struct iovec iov = { buf, len };
    struct msghdr mh;
    struct cmsghdr *cm;
    ssize_t k;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    do k = recvmsg(n->fd, &mh, 0);
    while (k < 0 && errno == EINTR);
    if (k <= 0) return k;
    n->rx_ts = 0;
    for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            n->rx_ts = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        }
    }
    if (!n->rx_ts) n->rx_ts = now_s();
    return k;
}

static long kernel_ts_missing;

static void node_event(node_t *n, uint32_t ev)
{
    static uint8_t buf[65536];

    if (n->state == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            node_fail(n, "connect: %s", strerror(err));
            node_close(n);
            return;
        }
        n->t_conn = now_s();
        if (send_upgrade(n) != 0) {
            node_fail(n, "upgrade request");
            node_close(n);
            return;
        }
    }
    if (node_flush(n) != 0) {
        node_fail(n, "write failed");
        node_close(n);
        return;
    }
    for (;;) {
        ssize_t k = node_recv(n, buf, sizeof(buf));
        if (k > 0) {
            node_input(n, buf, (size_t)k);
            if (n->closing) break;
            if (n->want_map) {
                n->want_map = 0;
                send_map(n);
            }
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        node_fail(n, k == 0 ? (n->goaway ? "closed after GOAWAY" : "closed by server")
                            : "read failed");
        break;
    }
    if (!n->closing && h2_pump(n) == 0 && node_flush(n) != 0) node_fail(n, "write failed");
    if (n->closing) {
        node_close(n);
        return;
    }
    if (n->h2 && !nghttp2_session_want_read(n->h2) && !nghttp2_session_want_write(n->h2)) {
        node_fail(n, "HTTP/2 session over");
        node_close(n);
        return;
    }
    node_update_events(n);
}

static int node_start(node_t *n)
{
    struct sockaddr_in sa;
    struct epoll_event ev;
    int one = 1;

    n->state = ST_CONNECTING;
    n->closing = 0;
    n->fail = NULL;
    n->up = 0;
    n->early_done = 0;
    n->goaway = 0;
    n->frames = 0;
    n->fhdr_have = 0;
    n->reg_ev = 0;
    n->resp_len = 0;
    n->attempts++;
    n->t_attempt = now_s();
    if (!n->t_start) n->t_start = n->t_attempt;
    setting_up++;
    n->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        node_fail(n, "socket: %s", strerror(errno));
        node_close(n);
        return -1;
    }
    setsockopt(n->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (setsockopt(n->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) != 0) kernel_ts_missing++;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt.port);
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    if (connect(n->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        node_fail(n, "connect: %s", strerror(errno));
        node_close(n);
        return -1;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = n;
    n->reg_ev = ev.events;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, n->fd, &ev) != 0) {
        node_fail(n, "epoll_ctl: %s", strerror(errno));
        node_close(n);
        return -1;
    }
    return 0;
}

static void run_events(double timeout_s)
{
    static struct epoll_event evs[1024];
    int i, k = epoll_wait(epfd, evs, 1024, (int)(timeout_s * 1000));

    for (i = 0; i < k; i++) {
        node_t *n = evs[i].data.ptr;
        if (n->state != ST_DEAD && n->state != ST_IDLE) node_event(n, evs[i].events);
    }
}

/* ---- roles ---- */

static long reg_ok, reg_failed, map_failed_attempts;
static int reg_fire;            /* register mode: requests may go */

static void on_up(node_t *n)
{
    if (n->role == ROLE_MAP) send_map(n);
    else if (n->role == ROLE_JOIN) send_register(n);
    else if (opt.pipeline || reg_fire) send_register(n);
}

static void on_node_closed(node_t *n)
{
    if (n->role == ROLE_REG) {
        if (n->reg_ok) reg_ok++;
        else {
            reg_failed++;
            count_reason(n->fail ? n->fail : "closed");
        }
        return;
    }
    if (n->role == ROLE_MAP) {
        if (n->frames > 0) {
            if (n->fail || n->dropped) {
                st_dropped++;
                count_reason(n->fail ? n->fail : "stream ended");
            }
            return;
        }
        map_failed_attempts++;
        count_reason(n->fail ? n->fail : "closed");
        if (opt.retry) n->retry_at = now_s() + 1.0 + (double)(n->idx % 100) / 100.0;
        return;
    }
    if (n->fail) count_reason(n->fail);
}

/* Connections still setting up past the timeout are failures. */
static void sweep_timeouts(node_t *ns, long count, double t)
{
    long i;

    for (i = 0; i < count; i++) {
        node_t *n = &ns[i];
        if (n->state != ST_DEAD && n->state != ST_IDLE && !n->up
            && t - n->t_attempt > opt.timeout) {
            node_fail(n, "set-up timeout");
            node_close(n);
        }
    }
}

static node_t *nodes_make(ident_t *ids, long count, int role, const char *prefix)
{
    node_t *ns = calloc((size_t)count, sizeof(*ns));
    long i;

    for (i = 0; ns && i < count; i++) {
        ns[i].idx = i;
        ns[i].role = role;
        ns[i].id = &ids[i];
        ns[i].fd = -1;
        ns[i].peers = -1;
        if (!ids[i].name[0]) {      /* a new identity: name and number it */
            ids[i].seq = i;
            snprintf(ids[i].name, sizeof(ids[i].name), "%s-%ld", prefix, i);
        }
        snprintf(ns[i].name, sizeof(ns[i].name), "%s", ids[i].name);
    }
    return ns;
}

/* ---- mode: register ---- */

static int mode_register(void)
{
    ident_t *ids = calloc((size_t)opt.nodes, sizeof(*ids));
    node_t *ns;
    long i, next = 0, up = 0, nlat = 0;
    double t0, t_all_up = 0, t_fire, t_last = 0, cpu0, cpu1, me0, *lat, last_log, *done;
    cpu_mark_t mk0, mk1;
    char prefix[32];

    if (!ids || !opt.authkey || !opt.keys) return 2;
    for (i = 0; i < opt.nodes; i++) ident_new(&ids[i]);
    snprintf(prefix, sizeof(prefix), "node%d", (int)getpid() % 1000);
    ns = nodes_make(ids, opt.nodes, ROLE_REG, prefix);
    lat = calloc((size_t)opt.nodes, sizeof(double));
    me0 = self_cpu();
    cpu0 = ps_cpu(opt.apache_pid);
    t0 = last_log = now_s();
    mk0 = cpu_mark();
    /* Connect (and, with --pipeline, register) with at most --concurrency in set-up. */
    for (;;) {
        double t = now_s();
        while (next < opt.nodes && setting_up < opt.concurrency) node_start(&ns[next++]);
        run_events(0.01);
        sweep_timeouts(ns, opt.nodes, now_s());
        for (i = 0, up = 0; i < opt.nodes; i++) up += ns[i].up || ns[i].reg_done;
        if (next == opt.nodes && setting_up == 0) {
            if (!opt.pipeline) break;
            for (i = 0; i < opt.nodes; i++) {
                if (ns[i].state != ST_DEAD && !ns[i].reg_done) break;
            }
            if (i == opt.nodes) break;
        }
        if (t - t0 > opt.timeout + 60) break;
        if (t - last_log >= 2) {
            progress("%ld started, %ld up, %ld registered, %ld failed", next, up, reg_ok,
                     reg_failed);
            last_log = t;
        }
        if (opt.pipeline) {
            for (i = 0; i < opt.nodes; i++) {
                if (ns[i].reg_done && ns[i].state != ST_DEAD) {
                    node_close(&ns[i]);     /* done: leave, as a client that registered */
                }
            }
        }
    }
    t_all_up = now_s();
    printf("mode register\nnodes %ld\npipeline %d\nconcurrency %d\n", opt.nodes, opt.pipeline,
           opt.concurrency);
    if (!opt.pipeline) {
        for (i = 0, up = 0; i < opt.nodes; i++) up += ns[i].up && ns[i].state == ST_H2;
        printf("connected %ld\nconnect_wall_s %.2f\n", up, t_all_up - t0);
        progress("%ld connected in %.1f s; sending %ld registers at once", up, t_all_up - t0, up);
        run_events(0.2);
        me0 = self_cpu();
        cpu0 = ps_cpu(opt.apache_pid);
        reg_fire = 1;
        t_fire = now_s();
        mk0 = cpu_mark();
        for (i = 0; i < opt.nodes; i++) {
            if (ns[i].state == ST_H2 && !ns[i].closing) send_register(&ns[i]);
            if (ns[i].closing) node_close(&ns[i]);
        }
        last_log = now_s();
        for (;;) {
            double t = now_s();
            long pending = 0;
            run_events(0.01);
            for (i = 0; i < opt.nodes; i++) {
                if (ns[i].reg_done && ns[i].state != ST_DEAD) node_close(&ns[i]);
                if (ns[i].state != ST_DEAD) pending++;
            }
            if (!pending) break;
            if (t - t_fire > opt.timeout) {
                for (i = 0; i < opt.nodes; i++) {
                    if (ns[i].state != ST_DEAD) {
                        node_fail(&ns[i], "register timeout");
                        node_close(&ns[i]);
                    }
                }
                break;
            }
            if (t - last_log >= 2) {
                progress("%ld registered, %ld failed, %ld pending", reg_ok, reg_failed, pending);
                last_log = t;
            }
        }
    }
    else t_fire = t0;
    cpu1 = ps_cpu(opt.apache_pid);
    mk1 = cpu_mark();
    done = calloc((size_t)opt.nodes, sizeof(double));
    for (i = 0; i < opt.nodes; i++) {
        if (ns[i].reg_ok) {
            done[nlat] = ns[i].t_reg_done;
            lat[nlat++] = ns[i].t_reg_done - ns[i].t_reg_sent;
            if (ns[i].t_reg_done > t_last) t_last = ns[i].t_reg_done;
        }
    }
    /* The keys file lists the nodes that did register: the maps mode expects every one of
     * them to get a map. */
    {
        ident_t *okids = calloc((size_t)opt.nodes, sizeof(*okids));
        long k = 0;
        for (i = 0; i < opt.nodes; i++) {
            if (ns[i].reg_ok) okids[k++] = ids[i];
        }
        if (idents_save(opt.keys, okids, k) != 0) {
            perror("ctlload: keys file");
            return 2;
        }
        free(okids);
    }
    printf("registered %ld\nregister_failed %ld\n", reg_ok, reg_failed);
    print_reasons("failure");
    printf("register_wall_s %.3f\n", t_last > 0 ? t_last - t_fire : 0.0);
    printf("registrations_per_s %.1f\n", t_last > t_fire ? (double)reg_ok / (t_last - t_fire) : 0);
    print_dist("register_latency", lat, nlat);
    /* The rate early and late in the run: constant unless a registration costs O(nodes). */
    qsort(done, (size_t)nlat, sizeof(double), cmp_d);
    if (nlat >= 20) {
        long d = nlat / 10;
        printf("registrations_per_s_first_tenth %.1f\nregistrations_per_s_last_tenth %.1f\n",
               (double)d / (done[d - 1] - t_fire), (double)d / (done[nlat - 1] - done[nlat - 1 - d]));
    }
    printf("client_cpu_s %.2f\n", self_cpu() - me0);
    printf("other_processes_cpu_s %.2f\n", other_cpu(mk0, mk1));
    if (opt.apache_pid) {
        printf("server_cpu_s %.2f\n", cpu1 - cpu0);
        if (t_last > t_fire) printf("server_cpu_pct %.0f\n", (cpu1 - cpu0) * 100 / (t_last - t_fire));
        if (reg_ok) printf("server_cpu_ms_per_registration %.2f\n", (cpu1 - cpu0) * 1e3 / (double)reg_ok);
    }
    return reg_failed ? 1 : 0;
}

/* ---- mode: maps (cold start, settle, memory, joins) ---- */

static long count_open(void)
{
    long i, c = 0;

    for (i = 0; i < nbase; i++) c += base[i].state == ST_H2 && base[i].frames > 0;
    return c;
}

static double join_one(int j, double *lat_peer_map, double *lat_disco_map, double *lat_online_map,
                       double *lat_peer_reg, long *nlat, double *last_disco_map,
                       double *last_peer_reg, double *last_all_map, double *own_first,
                       long *missing, long *own_peers)
{
    ident_t *id = calloc(1, sizeof(*id));
    node_t *jn;
    char prefix[32];
    double t0 = now_s(), tmax_d = 0, tmax_p = 0, tmax_all = 0;
    long i, k = *nlat, open = 0, heard = 0, d0;

    ident_new(id);
    snprintf(prefix, sizeof(prefix), "join%d-%d", (int)getpid() % 1000, j);
    id->seq = 1000000 + j;
    snprintf(id->name, sizeof(id->name), "%s", prefix);
    jn = nodes_make(id, 1, ROLE_JOIN, prefix);
    jn->idx = 1000000 + j;
    J.id = id;
    J.node_id = -1;
    for (i = 0; i < nbase; i++) J.heard_peer[i] = J.heard_disco[i] = J.heard_online[i] = 0;
    J.active = 1;
    d0 = st_deltas;
    node_start(jn);
    for (;;) {
        double t = now_s();
        run_events(0.005);
        if (jn->state == ST_DEAD && !jn->frames) break;
        if (jn->frames > 0) {
            for (i = 0, open = 0, heard = 0; i < nbase; i++) {
                if (base[i].state != ST_H2 || !base[i].frames) continue;
                open++;
                heard += J.heard_peer[i] && J.heard_disco[i] && J.heard_online[i];
            }
            if (heard == open) break;
        }
        if (t - t0 > opt.join_timeout) break;
    }
    J.active = 0;
    *missing = 0;
    *own_peers = jn->peers;
    if (!jn->frames) {
        const char *why = jn->fail ? jn->fail
                          : !jn->up ? "no connection within the join timeout"
                          : !jn->reg_done ? "no register answer within the join timeout"
                          : "no first map within the join timeout";
        printf("join_%d_failed \"%s\"\n", j, why);
        if (!jn->fail) count_reason(why);     /* a closed one was counted when it closed */
        if (jn->state != ST_DEAD) {
            node_fail(jn, NULL);
            node_close(jn);
        }
        return -1;
    }
    *own_first = jn->t_first - jn->t_map_sent;
    for (i = 0; i < nbase; i++) {
        if (base[i].state != ST_H2 || !base[i].frames) continue;
        if (!(J.heard_peer[i] && J.heard_disco[i] && J.heard_online[i])) {
            (*missing)++;
            continue;
        }
        lat_peer_map[k] = J.heard_peer[i] - jn->t_map_sent;
        lat_disco_map[k] = J.heard_disco[i] - jn->t_map_sent;
        lat_online_map[k] = J.heard_online[i] - jn->t_map_sent;
        lat_peer_reg[k] = J.heard_peer[i] - jn->t_reg_sent;
        if (lat_disco_map[k] > tmax_d) tmax_d = lat_disco_map[k];
        if (lat_peer_reg[k] > tmax_p) tmax_p = lat_peer_reg[k];
        {
            double a = J.heard_peer[i], b = J.heard_disco[i], c = J.heard_online[i];
            double last = a > b ? a : b;
            last = last > c ? last : c;
            if (last - jn->t_map_sent > tmax_all) tmax_all = last - jn->t_map_sent;
        }
        k++;
    }
    /* A stream that never heard: the join's "last stream" time is at least the timeout. */
    if (*missing) tmax_d = tmax_all = tmax_p = opt.join_timeout;
    *nlat = k;
    *last_disco_map = tmax_d;
    *last_peer_reg = tmax_p;
    *last_all_map = tmax_all;
    printf("join_%d register_ms %.1f map_first_ms %.1f last_stream_disco_ms %.1f "
           "last_stream_all_ms %.1f last_stream_peer_since_register_ms %.1f missing %ld "
           "own_peers %ld delta_frames_per_stream %.2f\n", j,
           (jn->t_reg_done - jn->t_reg_sent) * 1e3, *own_first * 1e3, tmax_d * 1e3,
           tmax_all * 1e3, tmax_p * 1e3, *missing, jn->peers,
           open ? (double)(st_deltas - d0) / (double)open : 0.0);
    return tmax_d;
}

static int mode_maps(void)
{
    ident_t *ids = NULL;
    long n = idents_load(opt.keys, &ids), i, next = 0, nlat, peers_min = -1, peers_max = -1;
    long decoded = 0, bad_first = 0, first_ok, retries = 0;
    double t0, last_log, cpu0, cpu_first, cpu_settle, me0, me_first, t_all = 0, t_settled;
    double *lat0, *latm, *lath;
    ps_mem_t m_before, m_after;
    cpu_mark_t mk0, mk1, mk2;
    char prefix[32];
    int rc = 0;

    if (n <= 0) {
        fprintf(stderr, "ctlload: no identities in %s\n", opt.keys);
        return 2;
    }
    nkeys = opt.expect_peers >= 0 ? opt.expect_peers + 1 : n;
    /* Every tailscaled restarted too (a fresh disco key each, as after a restart): every run
     * then makes the same changes (DiscoKey patch, then online), whatever ran before. */
    for (i = 0; i < n && !opt.same_disco; i++) {
        uint8_t pub[32];
        ts_crypto_x25519_keypair(ids[i].dpriv, pub);
        ident_texts(&ids[i]);
    }
    if (opt.nodes > 0 && opt.nodes < n) n = opt.nodes;
    snprintf(prefix, sizeof(prefix), "m");
    nbase = n;
    base = nodes_make(ids, n, ROLE_MAP, prefix);
    lat0 = calloc((size_t)n, sizeof(double));
    latm = calloc((size_t)n, sizeof(double));
    lath = calloc((size_t)n, sizeof(double));
    m_before = ps_mem(opt.apache_pid);
    printf("mode maps\nnodes %ld\nconcurrency %d\ndecode %s\n", n, opt.concurrency,
           opt.decode == DECODE_ALL ? "all" : opt.decode == DECODE_NONE ? "none" : "sample");
    progress("cold start: %ld nodes open their map streams (<= %d handshakes at once)", n,
             opt.concurrency);
    me0 = self_cpu();
    cpu0 = ps_cpu(opt.apache_pid);
    mk0 = cpu_mark();
    t0 = last_log = now_s();
    for (;;) {
        double t = now_s();
        while (next < n && setting_up < opt.concurrency) node_start(&base[next++]);
        for (i = 0; i < next && setting_up < opt.concurrency; i++) {
            if (base[i].state == ST_DEAD && !base[i].frames && base[i].retry_at
                && base[i].retry_at <= t) {
                base[i].retry_at = 0;
                retries++;
                node_start(&base[i]);
            }
        }
        run_events(0.01);
        sweep_timeouts(base, next, now_s());
        for (i = 0, first_ok = 0; i < n; i++) first_ok += base[i].frames > 0;
        if (first_ok == n) break;
        if (t - t0 > opt.timeout) break;
        if (t - last_log >= 2) {
            progress("t+%.0fs: %ld of %ld have their first map; %ld setting up, %ld failed "
                     "attempts", t - t0, first_ok, n, setting_up, map_failed_attempts);
            last_log = t;
        }
    }
    t_all = now_s();
    mk1 = cpu_mark();
    me_first = self_cpu();
    cpu_first = ps_cpu(opt.apache_pid);
    for (i = 0, nlat = 0, first_ok = 0; i < n; i++) {
        node_t *b = &base[i];
        if (!b->frames) continue;
        first_ok++;
        lat0[nlat] = b->t_first - t0;
        latm[nlat] = b->t_first - b->t_map_sent;
        lath[nlat] = b->t_map_head ? b->t_map_head - b->t_map_sent : b->t_first - b->t_map_sent;
        nlat++;
        if (b->peers >= 0) {
            decoded++;
            if (peers_min < 0 || b->peers < peers_min) peers_min = b->peers;
            if (b->peers > peers_max) peers_max = b->peers;
            if (!b->first_node_ok) bad_first++;
        }
    }
    {
        long within30 = 0;
        double zsum = 0, rawsum = 0;
        long rawn = 0;
        for (i = 0; i < nlat; i++) within30 += lat0[i] <= 30.0;
        for (i = 0; i < n; i++) {
            if (!base[i].frames) continue;
            zsum += base[i].first_z;
            if (base[i].first_raw) {
                rawsum += (double)base[i].first_raw;
                rawn++;
            }
        }
        printf("first_map_ok %ld\nfirst_map_missing %ld\nfirst_map_within_30s %ld\n", first_ok,
               n - first_ok, within30);
        printf("cold_start_wall_s %.2f\n", nlat ? (t_all - t0) : -1.0);
        printf("map_attempts_failed %ld\nretries %ld\n", map_failed_attempts, retries);
        print_reasons("failure");
        print_dist("first_map_since_start", lat0, nlat);
        print_dist("first_map_since_request", latm, nlat);
        print_dist("map_response_head_since_request", lath, nlat);
        printf("first_map_decoded %ld\nfirst_map_peers_min %ld\nfirst_map_peers_max %ld\n"
               "first_map_peers_expected %ld\nfirst_map_without_node_or_derpmap %ld\n",
               decoded, peers_min, peers_max, nkeys - 1, bad_first);
        printf("first_map_verified_json %ld\nfirst_map_verify_mismatch %ld\n", verified,
               verify_mismatch);
        printf("first_map_compressed_avg_bytes %.0f\n", first_ok ? zsum / (double)first_ok : 0);
        if (rawn) printf("first_map_json_avg_bytes %.0f\n", rawsum / (double)rawn);
        printf("cold_start_client_cpu_s %.2f\n", me_first - me0);
        if (opt.apache_pid) printf("cold_start_server_cpu_s %.2f\n", cpu_first - cpu0);
        printf("cold_start_other_processes_cpu_s %.2f\n", other_cpu(mk0, mk1));
    }
    /* The storm of presence/endpoint deltas that the connections caused: wait for quiet. */
    progress("waiting for the deltas to settle (no frame for %.0f s)", opt.quiet);
    {
        long d0 = st_deltas;
        uint64_t z0 = st_zbytes;
        for (;;) {
            double t = now_s(), last = last_frame_at > t_all ? last_frame_at : t_all;
            run_events(0.05);
            if (t - last >= opt.quiet) break;
            if (t - t_all > opt.settle_max) break;
        }
        t_settled = last_frame_at > t_all ? last_frame_at : t_all;
        cpu_settle = ps_cpu(opt.apache_pid);
        printf("settled_after_all_first_maps_s %.2f\nlast_storm_frame_since_start_s %.2f\n",
               t_settled - t_all, last_frame_at - t0);
        printf("deltas_during_settle %ld\ndelta_bytes_during_settle %llu\n", st_deltas - d0,
               (unsigned long long)(st_zbytes - z0));
        if (opt.apache_pid) printf("settle_server_cpu_s %.2f\n", cpu_settle - cpu_first);
    }
    printf("deltas_total %ld\nkeepalives_total %ld\nstreams_open %ld\nstreams_dropped %ld\n"
           "goaways %ld\n", st_deltas, st_keepalives, count_open(), st_dropped, st_goaways);
    /* memory per connected node */
    if (opt.apache_pid) {
        long open = count_open();
        double idle0, idle1, ti;
        m_after = ps_mem(opt.apache_pid);
        print_mem("apache_before", m_before);
        print_mem("apache_connected", m_after);
        if (open) {
            printf("apache_pss_kib_per_node %.1f\napache_rss_kib_per_node %.1f\n"
                   "apache_anon_kib_per_node %.1f\n",
                   (double)(m_after.pss_kb - m_before.pss_kb) / (double)open,
                   (double)(m_after.rss_kb - m_before.rss_kb) / (double)open,
                   (double)(m_after.anon_kb - m_before.anon_kb) / (double)open);
        }
        ti = now_s();
        idle0 = ps_cpu(opt.apache_pid);
        run_events(0);
        {
            double end = ti + 3;
            while (now_s() < end) run_events(0.05);
        }
        idle1 = ps_cpu(opt.apache_pid);
        printf("idle_server_cpu_pct %.1f\n", (idle1 - idle0) * 100 / (now_s() - ti));
    }
    printf("client_rss_kib %ld\n", self_rss_kb());
    /* joins */
    if (opt.joins > 0) {
        long cap = (long)opt.joins * n, nl = 0, missing_total = 0;
        double *a = calloc((size_t)cap, sizeof(double)), *b = calloc((size_t)cap, sizeof(double));
        double *c = calloc((size_t)cap, sizeof(double)), *d = calloc((size_t)cap, sizeof(double));
        double *jd = calloc((size_t)opt.joins, sizeof(double));
        double *jp = calloc((size_t)opt.joins, sizeof(double));
        double *ja = calloc((size_t)opt.joins, sizeof(double));
        double *jo = calloc((size_t)opt.joins, sizeof(double));
        double cpu_j0 = ps_cpu(opt.apache_pid), me_j0 = self_cpu();
        cpu_mark_t mj0 = cpu_mark();
        int j, ok = 0;
        long own_bad = 0;

        J.heard_peer = calloc((size_t)n, sizeof(double));
        J.heard_disco = calloc((size_t)n, sizeof(double));
        J.heard_online = calloc((size_t)n, sizeof(double));
        if (!opt.authkey) {
            fprintf(stderr, "ctlload: --joins needs --authkey\n");
            return 2;
        }
        progress("%d joins with %ld open streams", opt.joins, count_open());
        for (j = 0; j < opt.joins; j++) {
            long missing = 0, own_peers = -1;
            double own, r = join_one(j, a, b, c, d, &nl, &jd[ok], &jp[ok], &ja[ok], &own,
                                     &missing, &own_peers);
            missing_total += missing;
            if (r >= 0) {
                jo[ok] = own;
                if (own_peers != nkeys + j) own_bad++;
                ok++;
            }
            {
                double end = now_s() + opt.join_gap;
                while (now_s() < end) run_events(0.05);
            }
        }
        printf("joins_ok %d\njoins_failed %d\njoin_streams_missing %ld\n", ok, opt.joins - ok,
               missing_total);
        print_reasons("join_failure");
        printf("join_own_map_unexpected_peer_count %ld\n", own_bad);
        print_dist("join_last_stream_disco_since_map_request", jd, ok);
        print_dist("join_last_stream_all_since_map_request", ja, ok);
        print_dist("join_last_stream_peer_since_register_request", jp, ok);
        print_dist("join_own_first_map_since_map_request", jo, ok);
        print_dist("join_each_stream_peer_since_map_request", a, nl);
        print_dist("join_each_stream_disco_since_map_request", b, nl);
        print_dist("join_each_stream_online_since_map_request", c, nl);
        print_dist("join_each_stream_peer_since_register_request", d, nl);
        printf("join_delta_parses %ld\n", J.parses);
        printf("joins_client_cpu_s %.2f\n", self_cpu() - me_j0);
        if (opt.apache_pid) printf("joins_server_cpu_s %.2f\n", ps_cpu(opt.apache_pid) - cpu_j0);
        mk2 = cpu_mark();
        printf("joins_other_processes_cpu_s %.2f\n", other_cpu(mj0, mk2));
        if (ok < opt.joins || missing_total) rc = 1;
    }
    /* a policy change: from running the command that stores it until every open stream
     * has a frame with its new PacketFilter */
    if (opt.policy_cmd) {
        double t0, tc, end, cpu_p0 = ps_cpu(opt.apache_pid), *lat;
        long i, open = count_open(), heard = 0, nl = 0;
        int st;

        P.heard = calloc((size_t)nbase, sizeof(double));
        lat = calloc((size_t)nbase + 1, sizeof(double));
        progress("policy change with %ld open streams", open);
        P.active = 1;
        t0 = now_s();
        st = system(opt.policy_cmd);
        tc = now_s();
        end = t0 + opt.policy_timeout;
        while (now_s() < end) {
            run_events(0.05);
            for (i = 0, heard = 0; i < nbase; i++) heard += P.heard[i] > 0;
            if (heard >= count_open()) break;
        }
        P.active = 0;
        for (i = 0; i < nbase; i++)
            if (P.heard[i] > 0) lat[nl++] = P.heard[i] - t0;
        printf("policy_cmd_status %d\npolicy_cmd_s %.3f\npolicy_streams_open %ld\n"
               "policy_streams_updated %ld\n", st, tc - t0, open, nl);
        print_dist("policy_stream_update_since_cmd", lat, nl);
        if (opt.apache_pid) printf("policy_server_cpu_s %.2f\n", ps_cpu(opt.apache_pid) - cpu_p0);
        if (nl < open || st != 0) rc = 1;
        free(lat);
    }
    if (opt.hold > 0) {
        double end = now_s() + opt.hold;
        while (now_s() < end) run_events(0.05);
    }
    printf("streams_open_at_end %ld\nstreams_dropped_total %ld\n", count_open(), st_dropped);
    printf("kernel_timestamps_unavailable %ld\n", kernel_ts_missing);
    printf("client_cpu_s %.2f\nclient_rss_kib_end %ld\n", self_cpu() - me0, self_rss_kb());
    if (first_ok < n) rc = 1;
    return rc;
}

/* ---- set-up ---- */

static int fetch_key(void)
{
    struct sockaddr_in sa;
    char req[256], resp[8192], *p;
    size_t got = 0;
    int fd, k;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt.port);
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("ctlload: /key connect");
        return -1;
    }
    k = snprintf(req, sizeof(req), "GET /key?v=%d HTTP/1.0\r\nHost: %s:%d\r\n\r\n", opt.version,
                 opt.host, opt.port);
    if (write(fd, req, (size_t)k) != k) return -1;
    for (;;) {
        ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    resp[got] = 0;
    close(fd);
    p = strstr(resp, "\"publicKey\":\"mkey:");
    if (!p || sodium_hex2bin(opt.server_pub, 32, p + 18, 64, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "ctlload: no Noise key in /key answer: %.200s\n", resp);
        return -1;
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;

    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ctlload register --port N --nodes N --keys FILE --authkey K [--pipeline]\n"
            "       ctlload maps --port N --keys FILE [--nodes N] [--joins J --authkey K]\n"
            "                    [--policy-cmd SHELL-COMMAND [--policy-timeout S]]\n"
            "               [--decode all|none|every:K] [--verify N] [--quiet-s S]\n"
            "               [--settle-max S] [--join-timeout S] [--join-gap S] [--hold S]\n"
            "               [--no-retry] [--expect-peers P] [--same-disco]\n"
            "  common: [--host IP] [--apache-pid PID] [--concurrency C] [--timeout S]\n"
            "          [--version CAPVER] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    int i, rc;

    if (argc < 2) usage();
    if (!strcmp(argv[1], "register")) opt.mode = MODE_REGISTER;
    else if (!strcmp(argv[1], "maps")) opt.mode = MODE_MAPS;
    else usage();
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && ++i)
        if (ARG("--port")) opt.port = atoi(v);
        else if (ARG("--host")) opt.host = v;
        else if (ARG("--nodes")) opt.nodes = atol(v);
        else if (ARG("--keys")) opt.keys = v;
        else if (ARG("--authkey")) opt.authkey = v;
        else if (ARG("--version")) opt.version = atoi(v);
        else if (ARG("--concurrency")) opt.concurrency = atoi(v);
        else if (ARG("--timeout")) opt.timeout = atof(v);
        else if (ARG("--apache-pid")) opt.apache_pid = (pid_t)atoi(v);
        else if (!strcmp(a, "--pipeline")) opt.pipeline = 1;
        else if (ARG("--joins")) opt.joins = atoi(v);
        else if (ARG("--join-timeout")) opt.join_timeout = atof(v);
        else if (ARG("--join-gap")) opt.join_gap = atof(v);
        else if (ARG("--verify")) opt.verify = atoi(v);
        else if (ARG("--quiet-s")) opt.quiet = atof(v);
        else if (ARG("--settle-max")) opt.settle_max = atof(v);
        else if (ARG("--hold")) opt.hold = atof(v);
        else if (ARG("--expect-peers")) opt.expect_peers = atol(v);
        else if (!strcmp(a, "--same-disco")) opt.same_disco = 1;
        else if (ARG("--policy-cmd")) opt.policy_cmd = v;
        else if (ARG("--policy-timeout")) opt.policy_timeout = atof(v);
        else if (!strcmp(a, "--no-retry")) opt.retry = 0;
        else if (!strcmp(a, "--quiet")) opt.quiet_log = 1;
        else if (ARG("--decode")) {
            if (!strcmp(v, "all")) opt.decode = DECODE_ALL;
            else if (!strcmp(v, "none")) opt.decode = DECODE_NONE;
            else if (!strncmp(v, "every:", 6) && atol(v + 6) > 0) {
                opt.decode = DECODE_EVERY;
                opt.decode_every = atol(v + 6);
            }
            else usage();
        }
        else usage();
#undef ARG
    }
    if (!opt.port || !opt.keys) usage();
    if (opt.mode == MODE_REGISTER && (opt.nodes <= 0 || !opt.authkey)) usage();
    signal(SIGPIPE, SIG_IGN);
    if (ts_crypto_init() != 0) return 1;
    raise_nofile();
    getrlimit(RLIMIT_NOFILE, &rl);
    if (opt.nodes + opt.joins + 64 > (long)rl.rlim_cur) {
        fprintf(stderr, "ctlload: RLIMIT_NOFILE %lu too low\n", (unsigned long)rl.rlim_cur);
        return 2;
    }
    if (fetch_key() != 0) return 2;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    dctx = ZSTD_createDCtx();
    nghttp2_session_callbacks_new(&h2cbs);
    nghttp2_session_callbacks_set_on_header_callback(h2cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(h2cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2cbs, cb_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(h2cbs, cb_stream_close);
    rc = opt.mode == MODE_REGISTER ? mode_register() : mode_maps();
    fflush(stdout);
    return rc;
}
