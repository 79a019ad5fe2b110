/* tsload.c: a TS2021 load generator for benchmarks: one process, one epoll loop, non-blocking
 * sockets (cleartext, or TLS with OpenSSL and no certificate check). Each connection does what
 * tailscaled does: POST /ts2021 upgrade with Noise message 1, message 2 and the early payload,
 * then HTTP/2 with prior knowledge inside Noise records, and one request.
 *
 * Modes:
 *   handshake  connections one after another (--concurrency in flight), each up to the first
 *              response (GET /machine/whoami by default), then closed. With --apache-pid,
 *              reports the Apache instance's CPU per handshake (from /proc).
 *   idle       --conns connections, each with one open request (GET /ts2021-test/stream?...,
 *              a response that never ends), then idle. Reports the instance's memory before
 *              and after, and any connection refused or dropped.
 *   restart    as idle, then SIGUSR1 (graceful restart) to --apache-pid; every client that gets
 *              a GOAWAY or loses its connection reconnects at once (new handshake and stream).
 *              Reports the time until all have a working connection again.
 *
 * Output: "key value" lines on stdout (progress on stderr). */
#include <arpa/inet.h>
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "procstat.h"
#include "ts_crypto.h"
#include "ts_frame.h"
#include "ts_noise.h"

/* ---- options ---- */

enum { MODE_HANDSHAKE, MODE_IDLE, MODE_RESTART };

static struct {
    int mode;
    const char *host;
    int port;
    int tls;
    uint8_t server_pub[32];
    int have_key;
    long conns;             /* idle/restart: clients */
    long total;             /* handshake: handshakes to do (0: until --duration) */
    double duration;        /* handshake: seconds (0: until --total) */
    int concurrency;        /* connections being set up at once */
    pid_t apache_pid;
    const char *path;
    double settle;          /* idle: seconds after the last connection before measuring */
    double hold;            /* idle: seconds to stay connected after measuring */
    double conn_timeout;    /* one connection's set-up */
    double restart_timeout; /* restart: give up after this */
    int version;
    int quiet;
    int http_get;           /* handshake: plain GET /key per connection instead (the floor) */
} opt = {
    .mode = MODE_HANDSHAKE, .host = "127.0.0.1", .port = 0, .concurrency = 32,
    .path = NULL, .settle = 5, .hold = 5, .conn_timeout = 30, .restart_timeout = 120,
    .version = 145,
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(const char *fmt, ...)
{
    va_list ap;

    if (opt.quiet) return;
    va_start(ap, fmt);
    fprintf(stderr, "tsload: ");
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
}

/* ---- connections ---- */

enum { ST_CONNECTING, ST_TLS, ST_UPGRADE, ST_MSG2, ST_H2, ST_DEAD };

typedef struct conn {
    int fd;
    int state;
    long slot;
    SSL *ssl;
    int ssl_want_write;
    uint32_t reg;               /* epoll events registered */
    double t_start;
    int established;            /* response head seen on stream 1 */
    int goaway;
    int status;
    ts_noise_handshake_t *hs;
    ts_noise_cipher_t tx, rx;
    ts_frame_reader_t *reader;
    int early_done;
    uint8_t *in;                /* HTTP head / message 2 / HTTP/2 plaintext not parsed yet */
    size_t in_len, in_cap;
    uint8_t *out;               /* bytes waiting for the socket */
    size_t out_off, out_len, out_cap;
    uint64_t data_unacked;
} conn_t;

typedef struct slot {
    conn_t *c;
    double retry_at;            /* restart: connect when now >= this (0: not pending) */
    double dropped_at;          /* restart: first GOAWAY/close after the signal */
    double ok_at;               /* restart: working again after the signal */
    int drops;
} slot_t;

static int epfd;
static SSL_CTX *ssl_ctx;
static long inflight;           /* connections not yet established */
static long nopen;              /* all open connections */
static slot_t *slots;
static int phase_restart;       /* restart mode: the signal was sent */
static double t_signal;

/* statistics */
static long st_started, st_ok, st_failed, st_dropped_goaway, st_dropped_close;
static double *lat;             /* handshake latencies (s) */
static long nlat, lat_cap;

static void conn_failed(conn_t *c, const char *why);
static void on_established(conn_t *c);
static void on_goaway(conn_t *c);
static void on_closed(conn_t *c, const char *why);

static int buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    uint8_t *p;
    size_t ncap;

    if (need <= *cap) return 0;
    ncap = *cap ? *cap : 512;
    while (ncap < need) ncap *= 2;
    if (!(p = realloc(*buf, ncap))) return -1;
    *buf = p;
    *cap = ncap;
    return 0;
}

/* Closed connections are freed only after the current batch of events, which may still
 * name them (they are skipped: state ST_DEAD). */
static conn_t *graveyard;

/* Closes c; the slot learns of it through on_closed. */
static void conn_close(conn_t *c, const char *why)
{
    if (c->state == ST_DEAD) return;
    if (!c->established) inflight--;
    nopen--;
    c->state = ST_DEAD;
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);   /* also leaves epoll */
    c->fd = -1;
    if (c->hs) {
        ts_noise_handshake_wipe(c->hs);
        free(c->hs);
        c->hs = NULL;
    }
    free(c->reader);
    free(c->in);
    free(c->out);
    c->reader = NULL;
    c->in = c->out = NULL;
    on_closed(c, why);
    c->slot = (long)(intptr_t)graveyard;   /* reused as the list link */
    graveyard = c;
}

static void bury(void)
{
    while (graveyard) {
        conn_t *next = (conn_t *)(intptr_t)graveyard->slot;
        free(graveyard);
        graveyard = next;
    }
}

static void conn_update_events(conn_t *c)
{
    uint32_t want = EPOLLIN;
    struct epoll_event ev;

    if (c->state == ST_CONNECTING || c->out_len > c->out_off || c->ssl_want_write) want |= EPOLLOUT;
    if (want == c->reg) return;
    memset(&ev, 0, sizeof(ev));
    ev.events = want;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->reg = want;
}

static int conn_queue_raw(conn_t *c, const void *data, size_t len)
{
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (buf_reserve(&c->out, &c->out_cap, c->out_len + len) != 0) return -1;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* Plaintext for the server, sealed into records. */
static int conn_queue_plain(conn_t *c, const void *data, size_t len)
{
    size_t n = 0;
    const char *err = NULL;

    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (buf_reserve(&c->out, &c->out_cap, c->out_len + ts_frame_sealed_len(len)) != 0) return -1;
    if (ts_frame_seal(&c->tx, c->out + c->out_len, c->out_cap - c->out_len, data, len, &n, &err)
        != APR_SUCCESS) {
        return -1;
    }
    c->out_len += n;
    return 0;
}

/* >0 bytes, 0 EOF, -1 would block, -2 error */
static ssize_t conn_read(conn_t *c, void *buf, size_t len)
{
    if (c->ssl) {
        int n = SSL_read(c->ssl, buf, (int)len);
        if (n > 0) return n;
        switch (SSL_get_error(c->ssl, n)) {
        case SSL_ERROR_WANT_READ: return -1;
        case SSL_ERROR_WANT_WRITE: c->ssl_want_write = 1; return -1;
        case SSL_ERROR_ZERO_RETURN: return 0;
        case SSL_ERROR_SYSCALL: return n == 0 ? 0 : -2;
        default: return -2;
        }
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
    }
}

/* 0 all written or would block, -1 error */
static int conn_flush(conn_t *c)
{
    c->ssl_want_write = 0;
    while (c->out_off < c->out_len) {
        size_t len = c->out_len - c->out_off;
        if (c->ssl) {
            int n = SSL_write(c->ssl, c->out + c->out_off, (int)len);
            if (n > 0) {
                c->out_off += (size_t)n;
                continue;
            }
            switch (SSL_get_error(c->ssl, n)) {
            case SSL_ERROR_WANT_WRITE: c->ssl_want_write = 1; return 0;
            case SSL_ERROR_WANT_READ: return 0;
            default: return -1;
            }
        }
        else {
            ssize_t n = send(c->fd, c->out + c->out_off, len, MSG_NOSIGNAL);
            if (n > 0) {
                c->out_off += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            return -1;
        }
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > 16384) {   /* idle connections keep no big buffer */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    return 0;
}

static conn_t *conn_start(long slot)
{
    conn_t *c = calloc(1, sizeof(*c));
    struct sockaddr_in sa;
    struct epoll_event ev;
    int one = 1;

    if (!c) return NULL;
    c->fd = -1;
    c->slot = slot;
    slots[slot].c = c;
    c->t_start = now_s();
    st_started++;
    inflight++;
    nopen++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        char why[128];
        snprintf(why, sizeof(why), "socket: %s", strerror(errno));
        conn_failed(c, why);
        return NULL;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt.port);
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        char why[128];
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        conn_failed(c, why);
        return NULL;
    }
    c->state = ST_CONNECTING;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    c->reg = ev.events;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_failed(c, "epoll_ctl");
        return NULL;
    }
    return c;
}

static void conn_failed(conn_t *c, const char *why)
{
    if (c->established) st_dropped_close++;
    else {
        st_failed++;
        count_reason(why);
    }
    conn_close(c, why);
}

/* ---- the protocol ---- */

static int send_upgrade(conn_t *c)
{
    uint8_t msg1[TS_NOISE_MSG1_LEN], priv[32], pub[32];
    char b64[sodium_base64_ENCODED_LEN(TS_NOISE_MSG1_LEN, sodium_base64_VARIANT_ORIGINAL)];
    char req[512];
    const char *err = NULL;
    int n;

    c->hs = malloc(sizeof(*c->hs));
    if (!c->hs) return -1;
    ts_crypto_x25519_keypair(priv, pub);
    if (ts_noise_initiator_init(c->hs, (uint16_t)opt.version, priv, opt.server_pub) != APR_SUCCESS
        || ts_noise_write_msg1(c->hs, NULL, msg1, &err) != APR_SUCCESS) {
        return -1;
    }
    sodium_memzero(priv, sizeof(priv));
    sodium_bin2base64(b64, sizeof(b64), msg1, sizeof(msg1), sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(req, sizeof(req),
                 "POST /ts2021 HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: Go-http-client/1.1\r\n"
                 "Content-Length: 0\r\nConnection: upgrade\r\n"
                 "Upgrade: tailscale-control-protocol\r\nX-Tailscale-Handshake: %s\r\n\r\n",
                 opt.host, opt.port, b64);
    c->state = ST_UPGRADE;
    return conn_queue_raw(c, req, (size_t)n);
}

/* --http-get: the cost of a new connection and a trivial request, without TS2021. */
static int send_get(conn_t *c)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET /key?v=%d HTTP/1.1\r\nHost: %s:%d\r\n"
                     "User-Agent: tsload\r\n\r\n", opt.version, opt.host, opt.port);

    c->state = ST_UPGRADE;
    return conn_queue_raw(c, req, (size_t)n);
}

static size_t hpack_str(uint8_t *p, uint8_t name_index, const char *v)
{
    size_t len = strlen(v), n = 0;

    p[n++] = name_index;            /* literal without indexing, indexed name (4-bit prefix) */
    if (len < 127) p[n++] = (uint8_t)len;
    else {
        size_t rest = len - 127;
        p[n++] = 127;
        while (rest >= 128) {
            p[n++] = (uint8_t)(0x80 | (rest & 0x7f));
            rest >>= 7;
        }
        p[n++] = (uint8_t)rest;
    }
    memcpy(p + n, v, len);
    return n + len;
}

static void h2_frame_hdr(uint8_t *p, size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(sid >> 24) & 0x7f;
    p[6] = (uint8_t)(sid >> 16);
    p[7] = (uint8_t)(sid >> 8);
    p[8] = (uint8_t)sid;
}

/* Client preface, SETTINGS and a larger connection window as Go's client sends them, then
 * the request on stream 1. */
static int send_h2_start(conn_t *c)
{
    uint8_t buf[1024], *p = buf, *hb;
    size_t blen;

    memcpy(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    p += 24;
    h2_frame_hdr(p, 12, 0x4, 0, 0);
    p += 9;
    memcpy(p, "\x00\x02\x00\x00\x00\x00" "\x00\x04\x00\x40\x00\x00", 12);  /* no push, 4 MiB */
    p += 12;
    h2_frame_hdr(p, 4, 0x8, 0, 0);
    p += 9;
    memcpy(p, "\x3f\xff\x00\x00", 4);  /* +1 GiB - 65536 */
    p += 4;
    hb = p + 9;
    blen = 0;
    hb[blen++] = 0x82;                  /* :method GET */
    hb[blen++] = 0x87;                  /* :scheme https */
    blen += hpack_str(hb + blen, 0x04, opt.path);       /* :path */
    blen += hpack_str(hb + blen, 0x01, "unused");       /* :authority */
    h2_frame_hdr(p, blen, 0x1, 0x5, 1); /* HEADERS, END_STREAM | END_HEADERS */
    p = hb + blen;
    return conn_queue_plain(c, buf, (size_t)(p - buf));
}

/* The :status of a response head, from its first HPACK field (static table 8..14). */
static int hpack_status(const uint8_t *b, size_t len)
{
    static const int st[] = { 200, 204, 206, 304, 400, 404, 500 };

    /* dynamic table size updates (001xxxxx, 5-bit prefix integer) may come first */
    while (len > 0 && (b[0] & 0xe0) == 0x20) {
        int more = (b[0] & 0x1f) == 0x1f;
        b++, len--;
        while (more && len > 0) {
            more = (b[0] & 0x80) != 0;
            b++, len--;
        }
    }
    if (len > 0 && (b[0] & 0x80) && (b[0] & 0x7f) >= 8 && (b[0] & 0x7f) <= 14)
        return st[(b[0] & 0x7f) - 8];
    /* literal with an indexed :status name: 0x48 (incremental), 0x08 or 0x18 (never/without) */
    if (len > 2 && ((b[0] & 0x3f) == 8 || (b[0] & 0x0f) == 8) && !(b[1] & 0x80) && b[1] == 3)
        return (b[2] - '0') * 100 + (b[3] - '0') * 10 + (b[4] - '0');
    return 0;
}

/* One HTTP/2 frame from the server. -1: the connection is gone. */
static int h2_frame(conn_t *c, uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *pl,
                    size_t len)
{
    uint8_t f[32];

    switch (type) {
    case 0x4: /* SETTINGS */
        if (!(flags & 1)) {
            h2_frame_hdr(f, 0, 0x4, 1, 0);
            if (conn_queue_plain(c, f, 9) != 0) return conn_failed(c, "seal"), -1;
        }
        break;
    case 0x6: /* PING */
        if (!(flags & 1) && len == 8) {
            h2_frame_hdr(f, 8, 0x6, 1, 0);
            memcpy(f + 9, pl, 8);
            if (conn_queue_plain(c, f, 17) != 0) return conn_failed(c, "seal"), -1;
        }
        break;
    case 0x7: /* GOAWAY */
        if (!c->goaway) {
            c->goaway = 1;
            on_goaway(c);
            if (c->state == ST_DEAD) return -1;
        }
        break;
    case 0x1: /* HEADERS */
        if (sid == 1 && !c->established) {
            size_t off = 0;
            if (flags & 0x8) off += 1 + (len ? pl[0] : 0);   /* PADDED */
            if (flags & 0x20) off += 5;                      /* PRIORITY */
            c->status = off < len ? hpack_status(pl + off, len - off) : 0;
            if (c->status != 200) {
                char why[64];
                snprintf(why, sizeof(why), "HTTP/2 status %d", c->status);
                conn_failed(c, why);
                return -1;
            }
            c->established = 1;
            inflight--;
            on_established(c);
            if (c->state == ST_DEAD) return -1;
        }
        break;
    case 0x0: /* DATA: keep the windows open (connection and stream) */
        c->data_unacked += len;
        if (c->data_unacked >= (1u << 20)) {
            uint32_t inc = (uint32_t)c->data_unacked;
            int k;
            for (k = 0; k < 2; k++) {
                uint8_t *w = f + 13 * k;
                h2_frame_hdr(w, 4, 0x8, 0, k ? sid : 0);
                w[9] = (uint8_t)(inc >> 24);
                w[10] = (uint8_t)(inc >> 16);
                w[11] = (uint8_t)(inc >> 8);
                w[12] = (uint8_t)inc;
            }
            if (conn_queue_plain(c, f, 26) != 0) return conn_failed(c, "seal"), -1;
            c->data_unacked = 0;
        }
        break;
    case 0x3: /* RST_STREAM */
        if (sid == 1) {
            conn_failed(c, "stream reset");
            return -1;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Decrypted bytes: the early payload first, then HTTP/2 frames. */
static int h2_plain(conn_t *c, const uint8_t *pt, size_t n)
{
    size_t off = 0;

    if (buf_reserve(&c->in, &c->in_cap, c->in_len + n) != 0) return conn_failed(c, "oom"), -1;
    memcpy(c->in + c->in_len, pt, n);
    c->in_len += n;
    if (!c->early_done) {
        size_t total = 0;
        apr_status_t rv = ts_frame_early_payload_detect(c->in, c->in_len, &total);
        if (rv == APR_INCOMPLETE) return 0;
        if (rv == APR_SUCCESS) {
            if (c->in_len < total) return 0;
            off = total;
        }
        else if (rv != APR_NOTFOUND) return conn_failed(c, "bad early payload"), -1;
        c->early_done = 1;
    }
    while (c->in_len - off >= 9) {
        const uint8_t *h = c->in + off;
        size_t flen = ((size_t)h[0] << 16) | ((size_t)h[1] << 8) | h[2];
        uint32_t sid = ((uint32_t)(h[5] & 0x7f) << 24) | ((uint32_t)h[6] << 16)
                       | ((uint32_t)h[7] << 8) | h[8];
        if (c->in_len - off < 9 + flen) break;
        if (h2_frame(c, h[3], h[4], sid, h + 9, flen) != 0) return -1;
        off += 9 + flen;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > 4096) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

static int records_in(conn_t *c, const uint8_t *in, size_t len)
{
    const uint8_t *pt;
    size_t used, ptlen;
    const char *err = NULL;

    while (len > 0) {
        apr_status_t rv = ts_frame_reader_feed(c->reader, in, len, &used, &pt, &ptlen, &err);
        in += used;
        len -= used;
        if (rv == APR_INCOMPLETE) break;
        if (rv != APR_SUCCESS) return conn_failed(c, "bad record"), -1;
        if (h2_plain(c, pt, ptlen) != 0) return -1;
    }
    return 0;
}

/* Bytes from the server, in whatever state. -1: the connection is gone. */
static int conn_input(conn_t *c, const uint8_t *data, size_t len)
{
    if (c->state == ST_H2) return records_in(c, data, len);
    if (buf_reserve(&c->in, &c->in_cap, c->in_len + len) != 0) return conn_failed(c, "oom"), -1;
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    if (c->state == ST_UPGRADE) {
        uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        int status = 0;
        size_t head;
        if (!end) {
            if (c->in_len > 16384) return conn_failed(c, "HTTP head too long"), -1;
            return 0;
        }
        head = (size_t)(end - c->in) + 4;
        if (sscanf((char *)c->in, "HTTP/1.%*d %d", &status) != 1) status = -1;
        if (opt.http_get && status == 200) {
            const char *cl = strcasestr((char *)c->in, "\ncontent-length:");
            size_t want = head + (cl && cl < (char *)end ? (size_t)atol(cl + 16) : 0);
            if (c->in_len < want) return 0;
            c->established = 1;
            inflight--;
            on_established(c);
            return -1;
        }
        if (status != 101) {
            char why[64];
            snprintf(why, sizeof(why), "HTTP status %d", status);
            return conn_failed(c, why), -1;
        }
        memmove(c->in, c->in + head, c->in_len - head);
        c->in_len -= head;
        c->state = ST_MSG2;
    }
    if (c->state == ST_MSG2) {
        ts_noise_session_t sess;
        const char *err = NULL;
        uint8_t *rest;
        size_t nrest;

        if (c->in_len >= 1 && c->in[0] == TS_FRAME_TYPE_ERROR) {
            return conn_failed(c, "Noise error frame"), -1;
        }
        if (c->in_len < TS_NOISE_MSG2_LEN) return 0;
        if (ts_noise_read_msg2(c->hs, c->in, TS_NOISE_MSG2_LEN, &err) != APR_SUCCESS
            || ts_noise_split(c->hs, &sess, &err) != APR_SUCCESS) {
            return conn_failed(c, "Noise message 2 rejected"), -1;
        }
        free(c->hs);
        c->hs = NULL;
        c->tx = sess.tx;
        c->rx = sess.rx;
        ts_noise_session_wipe(&sess);
        if (!(c->reader = malloc(sizeof(*c->reader)))) return conn_failed(c, "oom"), -1;
        ts_frame_reader_init(c->reader, &c->rx);
        c->state = ST_H2;
        if (send_h2_start(c) != 0) return conn_failed(c, "seal"), -1;
        nrest = c->in_len - TS_NOISE_MSG2_LEN;
        rest = c->in;
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        if (nrest && records_in(c, rest + TS_NOISE_MSG2_LEN, nrest) != 0) {
            free(rest);
            return -1;
        }
        free(rest);
    }
    return 0;
}

static void conn_event(conn_t *c, uint32_t ev)
{
    uint8_t buf[16384];

    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            char why[128];
            snprintf(why, sizeof(why), "connect: %s", strerror(err));
            conn_failed(c, why);
            return;
        }
        if (opt.tls) {
            c->ssl = SSL_new(ssl_ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            c->state = ST_TLS;
        }
        else if ((opt.http_get ? send_get(c) : send_upgrade(c)) != 0) {
            conn_failed(c, "upgrade request");
            return;
        }
    }
    if (c->state == ST_TLS) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                c->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
                conn_update_events(c);
                return;
            }
            conn_failed(c, "TLS handshake failed");
            return;
        }
        if ((opt.http_get ? send_get(c) : send_upgrade(c)) != 0) {
            conn_failed(c, "upgrade request");
            return;
        }
    }
    if (conn_flush(c) != 0) {
        conn_failed(c, "write failed");
        return;
    }
    for (;;) {
        ssize_t n = conn_read(c, buf, sizeof(buf));
        if (n > 0) {
            if (conn_input(c, buf, (size_t)n) != 0) return;
            continue;
        }
        if (n == -1) break;
        conn_failed(c, n == 0 ? "closed by server" : "read failed");
        return;
    }
    if (conn_flush(c) != 0) {
        conn_failed(c, "write failed");
        return;
    }
    conn_update_events(c);
}

/* ---- modes ---- */

static long slots_ok;           /* restart: slots working again after the signal */

static void on_established(conn_t *c)
{
    double t = now_s();

    st_ok++;
    if (nlat < lat_cap) lat[nlat++] = t - c->t_start;
    if (opt.mode == MODE_HANDSHAKE) {
        /* The handshake is done: leave (the loop starts the next one). */
        conn_close(c, NULL);
        return;
    }
    if (opt.mode == MODE_RESTART && phase_restart && c->t_start >= t_signal) {
        slot_t *s = &slots[c->slot];
        if (!s->ok_at) {
            s->ok_at = t;
            slots_ok++;
        }
    }
}

static void on_goaway(conn_t *c)
{
    if (opt.mode == MODE_HANDSHAKE) return;
    st_dropped_goaway++;
    if (opt.mode == MODE_RESTART && phase_restart) {
        /* Leave at once and reconnect, as a client whose server is going away. */
        conn_close(c, "goaway");
    }
}

static void on_closed(conn_t *c, const char *why)
{
    slot_t *s = &slots[c->slot];

    (void)why;
    if (s->c != c) return;
    s->c = NULL;
    if (opt.mode != MODE_RESTART || !phase_restart) return;
    if (c->established && c->t_start < t_signal) {
        if (!s->dropped_at) s->dropped_at = now_s();
        s->drops++;
        s->retry_at = now_s();            /* at once */
    }
    else if (c->established) {
        /* A new connection lost again (it landed on a child that was still draining). */
        s->drops++;
        if (s->ok_at) {
            s->ok_at = 0;
            slots_ok--;
        }
        s->retry_at = now_s();
    }
    else {
        s->retry_at = now_s() + 0.25;      /* a failed attempt: retry shortly */
    }
}

static void run_events(double timeout_s)
{
    struct epoll_event evs[1024];
    int i, n = epoll_wait(epfd, evs, 1024, (int)(timeout_s * 1000));

    for (i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->state != ST_DEAD) conn_event(c, evs[i].events);
    }
    bury();
}

/* Connections still being set up past their time are failures. */
static void sweep_slots_timeouts(double t)
{
    long i;

    for (i = 0; i < opt.conns; i++) {
        conn_t *c = slots[i].c;
        if (c && !c->established && t - c->t_start > opt.conn_timeout) conn_failed(c, "timeout");
    }
    bury();
}

static double pct(double *v, long n, double p)
{
    long i;

    if (n == 0) return 0;
    i = (long)floor(p * (double)(n - 1) + 0.5);
    return v[i];
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void print_latency(const char *name)
{
    qsort(lat, (size_t)nlat, sizeof(double), cmp_d);
    printf("%s_p50_ms %.2f\n%s_p99_ms %.2f\n%s_max_ms %.2f\n", name, pct(lat, nlat, 0.5) * 1e3,
           name, pct(lat, nlat, 0.99) * 1e3, name, nlat ? lat[nlat - 1] * 1e3 : 0.0);
}

static double self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
           + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int mode_handshake(void)
{
    double t0, t1, cpu0 = 0, cpu1 = 0, idle0, idle1, idle_rate = 0, me0, me1;
    double t_idle;
    long target = opt.total, i;

    if (opt.apache_pid) {
        /* The instance's own background CPU (timers, the MPM's maintenance), subtracted. */
        t_idle = now_s();
        idle0 = ps_cpu(opt.apache_pid);
        usleep(3000000);
        idle1 = ps_cpu(opt.apache_pid);
        idle_rate = (idle1 - idle0) / (now_s() - t_idle);
    }
    lat_cap = target ? target : 10000000;
    if (lat_cap > 10000000) lat_cap = 10000000;
    lat = malloc(sizeof(double) * (size_t)lat_cap);
    if (opt.apache_pid) cpu0 = ps_cpu(opt.apache_pid);
    me0 = self_cpu();
    t0 = now_s();
    for (;;) {
        double t = now_s();
        int more = (target == 0 || st_started < target) && (opt.duration == 0 || t - t0 < opt.duration);
        if (!more && inflight == 0) break;
        for (i = 0; more && i < opt.conns && (target == 0 || st_started < target); i++) {
            if (!slots[i].c) conn_start(i);
        }
        run_events(0.05);
        sweep_slots_timeouts(now_s());
        if (!more && now_s() - t0 > (opt.duration ? opt.duration : 0) + opt.conn_timeout + 60) break;
    }
    t1 = now_s();
    me1 = self_cpu();
    if (opt.apache_pid) cpu1 = ps_cpu(opt.apache_pid);
    printf("mode %s\ntls %d\nconcurrency %d\n", opt.http_get ? "http-get" : "handshake", opt.tls,
           opt.concurrency);
    printf("handshakes_ok %ld\nhandshakes_failed %ld\n", st_ok, st_failed);
    print_reasons("failure");
    printf("wall_s %.3f\nrate_per_s %.1f\n", t1 - t0, (double)st_ok / (t1 - t0));
    print_latency("handshake_latency");
    printf("client_cpu_us_per_handshake %.1f\n", st_ok ? (me1 - me0) * 1e6 / (double)st_ok : 0.0);
    if (opt.apache_pid && st_ok) {
        double raw = cpu1 - cpu0, idle = idle_rate * (t1 - t0);
        printf("server_cpu_s %.3f\nserver_idle_cpu_s %.3f\n", raw, idle);
        printf("server_cpu_us_per_handshake %.1f\n", (raw - idle) * 1e6 / (double)st_ok);
        printf("server_cpu_us_per_handshake_uncorrected %.1f\n", raw * 1e6 / (double)st_ok);
    }
    return st_failed ? 1 : 0;
}

static void print_mem(const char *name, ps_mem_t m)
{
    printf("%s_procs %d\n%s_rss_kib %ld\n%s_pss_kib %ld\n%s_anon_kib %ld\n", name, m.nproc, name,
           m.rss_kb, name, m.pss_kb, name, m.anon_kb);
}

/* Opens every slot's connection (at most --concurrency being set up at once) and waits
 * until each is working or failed. Returns the number working. */
static long connect_all(double *elapsed)
{
    double t0 = now_s(), last = t0;
    long next = 0, i, up;

    for (;;) {
        double t = now_s();
        while (next < opt.conns && inflight < opt.concurrency) conn_start(next++);
        if (next >= opt.conns && inflight == 0) break;
        run_events(0.05);
        sweep_slots_timeouts(t);
        if (t - last >= 2) {
            progress("%ld started, %ld working, %ld failed, %ld setting up", st_started, st_ok,
                     st_failed, inflight);
            last = t;
        }
    }
    *elapsed = now_s() - t0;
    for (i = 0, up = 0; i < opt.conns; i++) up += slots[i].c && slots[i].c->established;
    return up;
}

static void run_for(double seconds)
{
    double end = now_s() + seconds;

    while (now_s() < end) run_events(0.1);
}

static long count_up(void)
{
    long i, up = 0;

    for (i = 0; i < opt.conns; i++) up += slots[i].c && slots[i].c->established;
    return up;
}

static void close_all(void)
{
    long i;

    for (i = 0; i < opt.conns; i++) {
        if (slots[i].c) conn_close(slots[i].c, NULL);
    }
}

static int mode_idle(void)
{
    ps_mem_t before = { 0 }, after = { 0 }, closed = { 0 };
    double el, cpu0 = 0, cpu1 = 0, me0, t_hold;
    long up, up2;

    if (opt.apache_pid) before = ps_mem(opt.apache_pid);
    lat_cap = opt.conns;
    lat = malloc(sizeof(double) * (size_t)lat_cap);
    me0 = self_cpu();
    up = connect_all(&el);
    progress("%ld of %ld working after %.1f s; settling %.0f s", up, opt.conns, el, opt.settle);
    run_for(opt.settle);
    if (opt.apache_pid) {
        after = ps_mem(opt.apache_pid);
        cpu0 = ps_cpu(opt.apache_pid);
    }
    t_hold = now_s();
    run_for(opt.hold);
    if (opt.apache_pid) cpu1 = ps_cpu(opt.apache_pid);
    t_hold = now_s() - t_hold;
    up2 = count_up();
    printf("mode idle\ntls %d\nconns %ld\n", opt.tls, opt.conns);
    printf("connected %ld\nrefused_or_failed %ld\n", up, st_failed);
    print_reasons("failure");
    printf("connect_wall_s %.2f\n", el);
    print_latency("setup_latency");
    printf("dropped_goaway %ld\ndropped_closed %ld\nstill_connected_after_hold %ld\n",
           st_dropped_goaway, st_dropped_close, up2);
    printf("client_cpu_s %.2f\n", self_cpu() - me0);
    if (opt.apache_pid) {
        print_mem("before", before);
        print_mem("after", after);
        if (up > 0) {
            printf("per_conn_rss_kib %.2f\nper_conn_pss_kib %.2f\nper_conn_anon_kib %.2f\n",
                   (double)(after.rss_kb - before.rss_kb) / (double)up,
                   (double)(after.pss_kb - before.pss_kb) / (double)up,
                   (double)(after.anon_kb - before.anon_kb) / (double)up);
        }
        printf("idle_server_cpu_pct %.2f\n", (cpu1 - cpu0) * 100.0 / t_hold);
    }
    close_all();
    bury();
    if (opt.apache_pid) {
        run_for(3);
        closed = ps_mem(opt.apache_pid);
        print_mem("after_close", closed);
    }
    return (st_failed || up2 != opt.conns) ? 1 : 0;
}

static int mode_restart(void)
{
    double el, t_all = -1, t_first_drop = 0, t_last_drop = 0, *rl, stable_since = 0, t_end;
    long up, i, n, never_dropped = 0, without = 0, failed_before;
    ps_mem_t m;

    lat_cap = opt.conns * 4;
    lat = malloc(sizeof(double) * (size_t)lat_cap);
    up = connect_all(&el);
    printf("mode restart\ntls %d\nconns %ld\n", opt.tls, opt.conns);
    printf("connected_before %ld\nfailed_before %ld\nconnect_wall_s %.2f\n", up, st_failed, el);
    print_reasons("failure_before");
    failed_before = st_failed;
    nreasons = 0;
    run_for(2);
    if (opt.apache_pid) {
        m = ps_mem(opt.apache_pid);
        print_mem("before_restart", m);
    }
    progress("%ld working; graceful restart (SIGUSR1 to %d)", up, (int)opt.apache_pid);
    phase_restart = 1;
    t_signal = now_s();
    if (kill(opt.apache_pid, SIGUSR1) != 0) {
        perror("tsload: kill");
        return 2;
    }
    for (;;) {
        double t = now_s();
        long pending = 0;
        for (i = 0; i < opt.conns; i++) {
            slot_t *s = &slots[i];
            if (!s->c && s->retry_at && s->retry_at <= t && inflight < opt.concurrency) {
                s->retry_at = 0;
                conn_start(i);
            }
            if (!s->c && s->retry_at) pending++;
        }
        run_events(0.01);
        sweep_slots_timeouts(now_s());
        t = now_s();
        if (slots_ok == opt.conns) {
            if (!stable_since) {
                stable_since = t;
                t_all = t - t_signal;
            }
            /* Done once every client has worked for 3 s after the old children are gone. */
            if (t - stable_since >= 3) break;
        }
        else stable_since = 0;
        if (t - t_signal > opt.restart_timeout) break;
        {
            static double last;
            if (t - last >= 2) {
                progress("t+%.0fs: %ld of %ld working again, %ld waiting to retry", t - t_signal,
                         slots_ok, opt.conns, pending);
                last = t;
            }
        }
    }
    t_end = now_s() - t_signal;
    rl = malloc(sizeof(double) * (size_t)opt.conns);
    for (i = 0, n = 0; i < opt.conns; i++) {
        slot_t *s = &slots[i];
        if (!s->dropped_at) never_dropped++;
        else {
            if (!t_first_drop || s->dropped_at < t_first_drop) t_first_drop = s->dropped_at;
            if (s->dropped_at > t_last_drop) t_last_drop = s->dropped_at;
            if (s->ok_at) rl[n++] = s->ok_at - s->dropped_at;
        }
        if (!s->ok_at) without++;
    }
    {
        long slow = 0;
        double s0 = 1e9, s1 = -1;
        for (i = 0; i < opt.conns; i++) {
            slot_t *s = &slots[i];
            if (s->dropped_at && s->ok_at && s->ok_at - s->dropped_at > 0.5) {
                slow++;
                if (s->dropped_at - t_signal < s0) s0 = s->dropped_at - t_signal;
                if (s->dropped_at - t_signal > s1) s1 = s->dropped_at - t_signal;
            }
        }
        printf("slow_reconnects_over_500ms %ld\n", slow);
        if (slow) printf("slow_reconnects_dropped_between_s %.2f %.2f\n", s0, s1);
    }
    qsort(rl, (size_t)n, sizeof(double), cmp_d);
    printf("all_reconnected_s %.2f\n", t_all);
    printf("observed_s %.2f\n", t_end);
    printf("slots_working_at_end %ld\nslots_without_connection %ld\nslots_never_dropped %ld\n",
           slots_ok, without, never_dropped);
    printf("first_drop_s %.2f\nlast_drop_s %.2f\n", t_first_drop ? t_first_drop - t_signal : -1,
           t_last_drop ? t_last_drop - t_signal : -1);
    printf("reconnect_latency_p50_ms %.1f\nreconnect_latency_p99_ms %.1f\n"
           "reconnect_latency_max_ms %.1f\n", pct(rl, n, 0.5) * 1e3, pct(rl, n, 0.99) * 1e3,
           n ? rl[n - 1] * 1e3 : 0.0);
    printf("goaways %ld\nclosed_without_goaway %ld\n", st_dropped_goaway, st_dropped_close);
    printf("reconnect_attempts_failed %ld\n", st_failed - failed_before);
    print_reasons("failure_after");
    if (opt.apache_pid) {
        m = ps_mem(opt.apache_pid);
        print_mem("after_restart", m);
    }
    close_all();
    return (without || t_all < 0) ? 1 : 0;
}

/* ---- set-up ---- */

/* GET /key?v=N over a blocking socket (TLS if asked): the server's Noise key. */
static int fetch_key(void)
{
    struct sockaddr_in sa;
    char req[256], resp[8192], *p;
    size_t got = 0;
    int fd, n;
    SSL *ssl = NULL;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt.port);
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("tsload: /key connect");
        return -1;
    }
    if (opt.tls) {
        ssl = SSL_new(ssl_ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1) {
            fprintf(stderr, "tsload: /key TLS handshake failed\n");
            return -1;
        }
    }
    n = snprintf(req, sizeof(req), "GET /key?v=%d HTTP/1.0\r\nHost: %s:%d\r\n\r\n", opt.version,
                 opt.host, opt.port);
    if ((ssl ? SSL_write(ssl, req, n) : (int)write(fd, req, (size_t)n)) != n) return -1;
    for (;;) {
        int r = ssl ? SSL_read(ssl, resp + got, (int)(sizeof(resp) - 1 - got))
                    : (int)read(fd, resp + got, sizeof(resp) - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    resp[got] = 0;
    if (ssl) SSL_free(ssl);
    close(fd);
    p = strstr(resp, "\"publicKey\":\"mkey:");
    if (!p || sodium_hex2bin(opt.server_pub, 32, p + 18, 64, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "tsload: no Noise key in /key answer: %.200s\n", resp);
        return -1;
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;

    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    if (rl.rlim_max < 1048576) {
        struct rlimit want = { 1048576, 1048576 };
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) return;   /* root */
    }
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tsload MODE --port N [--tls] [--host IP] [--apache-pid PID]\n"
            "  MODE handshake: [--total N] [--duration S] [--concurrency C] [--path P]\n"
            "                  [--http-get: GET /key on each new connection instead]\n"
            "  MODE idle:      --conns N [--concurrency C] [--settle S] [--hold S] [--path P]\n"
            "  MODE restart:   --conns N [--concurrency C] [--restart-timeout S] [--path P]\n"
            "  common: [--timeout S] [--version CAPVER] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int i, rc;
    struct rlimit rl;

    if (argc < 2) usage();
    if (!strcmp(argv[1], "handshake")) opt.mode = MODE_HANDSHAKE;
    else if (!strcmp(argv[1], "idle")) opt.mode = MODE_IDLE;
    else if (!strcmp(argv[1], "restart")) opt.mode = MODE_RESTART;
    else usage();
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && ++i)
        if (ARG("--port")) opt.port = atoi(v);
        else if (ARG("--host")) opt.host = v;
        else if (!strcmp(a, "--tls")) opt.tls = 1;
        else if (!strcmp(a, "--quiet")) opt.quiet = 1;
        else if (!strcmp(a, "--http-get")) opt.http_get = 1;
        else if (ARG("--conns")) opt.conns = atol(v);
        else if (ARG("--total")) opt.total = atol(v);
        else if (ARG("--duration")) opt.duration = atof(v);
        else if (ARG("--concurrency")) opt.concurrency = atoi(v);
        else if (ARG("--apache-pid")) opt.apache_pid = (pid_t)atoi(v);
        else if (ARG("--path")) opt.path = v;
        else if (ARG("--settle")) opt.settle = atof(v);
        else if (ARG("--hold")) opt.hold = atof(v);
        else if (ARG("--timeout")) opt.conn_timeout = atof(v);
        else if (ARG("--restart-timeout")) opt.restart_timeout = atof(v);
        else if (ARG("--version")) opt.version = atoi(v);
        else usage();
#undef ARG
    }
    if (!opt.port) usage();
    if (opt.mode == MODE_HANDSHAKE && !opt.total && !opt.duration) opt.total = 10000;
    if (opt.mode != MODE_HANDSHAKE && opt.conns <= 0) usage();
    if (opt.mode == MODE_RESTART && !opt.apache_pid) usage();
    if (!opt.path) {
        opt.path = opt.mode == MODE_HANDSHAKE ? "/machine/whoami"
                                              : "/ts2021-test/stream?chunks=0&size=1";
    }
    signal(SIGPIPE, SIG_IGN);
    if (ts_crypto_init() != 0) return 1;
    raise_nofile();
    getrlimit(RLIMIT_NOFILE, &rl);
    if (opt.mode != MODE_HANDSHAKE && (rlim_t)opt.conns + 64 > rl.rlim_cur) {
        fprintf(stderr, "tsload: RLIMIT_NOFILE %lu too low for %ld connections\n",
                (unsigned long)rl.rlim_cur, opt.conns);
        return 2;
    }
    if (opt.tls) {
        ssl_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
    }
    if (fetch_key() != 0) return 2;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    /* handshake: one slot per connection in flight */
    if (opt.mode == MODE_HANDSHAKE) opt.conns = opt.concurrency;
    slots = calloc((size_t)opt.conns, sizeof(*slots));
    if (!slots) return 1;
    switch (opt.mode) {
    case MODE_HANDSHAKE: rc = mode_handshake(); break;
    case MODE_IDLE: rc = mode_idle(); break;
    default: rc = mode_restart(); break;
    }
    fflush(stdout);
    return rc;
}
