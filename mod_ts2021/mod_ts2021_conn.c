/* mod_ts2021_conn.c: /ts2021, native (POST) and WebSocket (GET): validates the upgrade, runs the
 * Noise responder, sends the 101 and message 2, and takes the connection over from HTTP/1. */
#include "mod_ts2021.h"
#include "mod_ts2021_conn.h"
#include "mod_ts2021_metrics.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <http_core.h>
#include <http_ssl.h>
#include <util_filter.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <apr_portable.h>

#include "ts_frame.h"
#include "ts_crypto.h"
#include <apr_atomic.h>
#include "ts_util.h"
#include "ts_ws.h"

APLOG_USE_MODULE(ts2021);

#define TS_UPGRADE_TOKEN "tailscale-control-protocol"

/* The early payload's node-key challenge: one key pair per child, not one per connection
 * (an X25519 each time, for a key no client uses yet), replaced every hour. */
#define TS_CHALLENGE_LIFETIME apr_time_from_sec(3600)

static uint8_t challenge_keys[2][TS_NOISE_KEY_LEN];
static volatile apr_uint32_t challenge_current, challenge_rotating;
static volatile apr_time_t challenge_made;

void ts_conn_child_init(void)
{
    uint8_t pub[TS_NOISE_KEY_LEN];

    ts_crypto_x25519_keypair(challenge_keys[0], pub);
    challenge_made = apr_time_now();
}

static const uint8_t *conn_challenge_key(void)
{
    apr_time_t now = apr_time_now();
    uint8_t pub[TS_NOISE_KEY_LEN];

    if (now - challenge_made > TS_CHALLENGE_LIFETIME
        && apr_atomic_cas32(&challenge_rotating, 1, 0) == 0) {
        /* Fill the other slot, then switch: readers of the current one are undisturbed. */
        apr_uint32_t next = apr_atomic_read32(&challenge_current) ^ 1;
        ts_crypto_x25519_keypair(challenge_keys[next], pub);
        challenge_made = now;
        apr_atomic_set32(&challenge_current, next);
        apr_atomic_set32(&challenge_rotating, 0);
    }
    return challenge_keys[apr_atomic_read32(&challenge_current)];
}
#define TS_HANDSHAKE_HEADER "X-Tailscale-Handshake"
#define TS_WS_UPGRADE_TOKEN "websocket"

static int conn_refuse(request_rec *r, int status, const char *reason)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10940)
                  "TS2021 upgrade from %s refused: %s", r->useragent_ip, reason);
    r->status = status;
    apr_table_setn(r->err_headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "text/plain; charset=utf-8");
    ap_rvputs(r, reason, "\n", NULL);
    return OK;
}

static int conn_has_body(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");

    return apr_table_get(r->headers_in, "Transfer-Encoding") || (cl && strcmp(cl, "0"));
}

/* RFC 6455 4.2.1 checks of the WebSocket variant (spec 2.6); what the spec settles after the
 * handshake (subprotocol, query parameter) is left to conn_ws_handler. NULL when fine. */
static const char *conn_ws_check_request(request_rec *r, int *status)
{
    const char *connection = apr_table_get(r->headers_in, "Connection");
    const char *version = apr_table_get(r->headers_in, "Sec-WebSocket-Version");
    const char *key = apr_table_get(r->headers_in, "Sec-WebSocket-Key");

    if (r->method_number != M_GET) {
        *status = HTTP_METHOD_NOT_ALLOWED;
        apr_table_setn(r->err_headers_out, "Allow", "GET");
        return "the WebSocket upgrade is a GET";
    }
    if (!connection || !ap_find_token(r->pool, connection, "upgrade")) {
        return "WebSocket upgrade without Connection: Upgrade";
    }
    if (!version || strcmp(version, "13")) {
        *status = HTTP_UPGRADE_REQUIRED;
        apr_table_setn(r->err_headers_out, "Upgrade", TS_WS_UPGRADE_TOKEN);
        apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version", "13");
        return "unsupported WebSocket version (13 only)";
    }
    if (!key || !*key) return "missing Sec-WebSocket-Key";
    if (!ts_ws_key_valid(key)) return "invalid Sec-WebSocket-Key";
    if (conn_has_body(r)) return "request body not allowed on the upgrade";
    return NULL;
}

/* Header checks of transport spec 2.2, in the reference order; NULL when fine. */
static const char *conn_check_request(request_rec *r, int *status)
{
    const char *upgrade = apr_table_get(r->headers_in, "Upgrade");
    const char *hs;

    *status = HTTP_BAD_REQUEST;
    if (r->connection->master) return "make request over HTTP/1";
    if (r->proto_num < HTTP_VERSION(1, 1)) return "upgrade needs HTTP/1.1";
    if (!upgrade || !*upgrade) return "missing next protocol";
    if (!strcasecmp(upgrade, TS_WS_UPGRADE_TOKEN)) return conn_ws_check_request(r, status);
    if (strcasecmp(upgrade, TS_UPGRADE_TOKEN)) return "unknown next protocol";
    if (r->method_number != M_POST) {
        *status = HTTP_METHOD_NOT_ALLOWED;
        return "the control protocol upgrade is a POST";
    }
    if (conn_has_body(r)) return "request body not allowed on the upgrade";
    hs = apr_table_get(r->headers_in, TS_HANDSHAKE_HEADER);
    if (!hs || !*hs) {
        return "missing Tailscale handshake header";
    }
    return NULL;
}

/* Standard base64 with padding, strictly (sodium rejects any other alphabet). */
static int conn_decode_b64(const char *b64, size_t n, uint8_t *msg1, size_t *len)
{
    if (n > 2 * TS_NOISE_MSG1_LEN) return -1;
    if (sodium_base642bin(msg1, TS_NOISE_MSG1_LEN + 8, b64, n, NULL, len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        return -1;
    }
    return 0;
}

static int conn_decode_handshake(request_rec *r, uint8_t *msg1, size_t *len)
{
    const char *b64 = apr_table_get(r->headers_in, TS_HANDSHAKE_HEADER);

    return conn_decode_b64(b64, strlen(b64), msg1, len);
}

/* Queues the 101 with the headers in r->headers_out, unflushed: the bytes that follow
 * (message 2, the early payload) leave in the same write, as the reference's cork does.
 * The connection is ours after. */
static void conn_switch(request_rec *r)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, c->bucket_alloc);
    const apr_array_header_t *h = apr_table_elts(r->headers_out);
    const apr_table_entry_t *e = (const apr_table_entry_t *)h->elts;
    char *head = apr_pstrdup(r->pool, "HTTP/1.1 101 Switching Protocols\r\n");
    int i;

    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = "101 Switching Protocols";
    for (i = 0; i < h->nelts; i++) {
        head = apr_pstrcat(r->pool, head, e[i].key, ": ", e[i].val, "\r\n", NULL);
    }
    head = apr_pstrcat(r->pool, head, "\r\n", NULL);
    apr_table_clear(r->headers_out);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(head, strlen(head), r->pool,
                                                        c->bucket_alloc));
    ap_pass_brigade(c->output_filters, bb);

    /* From here on the bytes on this connection are ours, not HTTP/1's. */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    c->keepalive = AP_CONN_CLOSE;
    r->output_filters = r->proto_output_filters = c->output_filters;
    r->input_filters = r->proto_input_filters = c->input_filters;
}

/* Bytes after the 101, flushed. */
static apr_status_t conn_write(request_rec *r, const uint8_t *out, size_t len)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, c->bucket_alloc);

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create((const char *)out, len,
                                                             c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    return ap_pass_brigade(c->output_filters, bb);
}

/* The native 101's headers, queued unflushed. */
static void conn_native_switch(request_rec *r)
{
    apr_table_clear(r->headers_out);
    apr_table_setn(r->headers_out, "Upgrade", TS_UPGRADE_TOKEN);
    apr_table_setn(r->headers_out, "Connection", "upgrade");
    conn_switch(r);
}

/* 101, then what follows in one flushed brigade. */
static apr_status_t conn_send_101(request_rec *r, const uint8_t *out, size_t len)
{
    conn_native_switch(r);
    return conn_write(r, out, len);
}

/* Framing errors get the reference's error frame after the 101 (clients print its
 * text); the connection then closes. */
static int conn_send_error_frame(request_rec *r, const char *text)
{
    uint8_t frame[TS_FRAME_HDR_LEN + TS_FRAME_ERROR_TEXT_MAX];
    size_t n;

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10941)
                  "TS2021 handshake from %s refused: %s", r->useragent_ip, text);
    if (ts_frame_error_build(frame, sizeof(frame), text, &n) == APR_SUCCESS) {
        conn_send_101(r, frame, n);
    }
    return DONE;
}

/* ---- the WebSocket variant (transport spec 2.6) ---- */

/* Exact match of one token in a comma-separated list (subprotocol names are case-sensitive). */
static int conn_ws_offers(const char *list, const char *token)
{
    size_t n = strlen(token);

    while (list && *list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);

        while (len && (*list == ' ' || *list == '\t')) list++, len--;
        while (len && (list[len - 1] == ' ' || list[len - 1] == '\t')) len--;
        if (len == n && !memcmp(list, token, n)) return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

/* application/x-www-form-urlencoded: '+' is a space, %XX a byte; NULL on a bad escape. */
static char *conn_form_decode(apr_pool_t *p, const char *s, size_t n, size_t *outlen)
{
    char *out = apr_palloc(p, n + 1);
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            uint8_t b;

            if (n - i < 3 || ts_hex_decode(&b, 1, s + i + 1, 2) != 0) return NULL;
            out[o++] = (char)b;
            i += 2;
        }
        else out[o++] = s[i] == '+' ? ' ' : s[i];
    }
    out[o] = 0;
    *outlen = o;
    return out;
}

/* Message 1 from the query (first X-Tailscale-Handshake, case-sensitive); NULL, or the reason
 * for the 1008 close. */
static const char *conn_ws_handshake(request_rec *r, uint8_t *msg1, size_t *len)
{
    const char *q = r->args, *name = TS_HANDSHAKE_HEADER;

    while (q && *q) {
        const char *end = strchr(q, '&'), *eq;
        size_t seg = end ? (size_t)(end - q) : strlen(q), raw, klen, vlen;
        char *key, *val;

        eq = memchr(q, '=', seg);
        raw = eq ? (size_t)(eq - q) : seg;
        key = conn_form_decode(r->pool, q, raw, &klen);
        val = conn_form_decode(r->pool, eq ? eq + 1 : "", eq ? seg - raw - 1 : 0, &vlen);
        if (!key || !val) return "Could not parse parameters";
        if (!strcmp(key, name)) {
            if (vlen == 0) break;
            if (conn_decode_b64(val, vlen, msg1, len) != 0) {
                return "invalid tailscale handshake parameter";
            }
            return NULL;
        }
        q = end ? end + 1 : NULL;
    }
    return "missing Tailscale handshake parameter";
}

/* Ends the WebSocket after its 101 with a close frame (the client can read its reason). */
static int conn_ws_close(request_rec *r, uint16_t code, const char *reason)
{
    uint8_t frame[TS_WS_CONTROL_FRAME_MAX];
    size_t n = ts_ws_close_build(frame, sizeof(frame), code, reason);

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10944)
                  "TS2021 WebSocket upgrade from %s refused: %s", r->useragent_ip, reason);
    conn_write(r, frame, n);
    return DONE;
}

/* The reference's framing error frame goes in a binary message, then the close. */
static int conn_ws_error_frame(request_rec *r, const char *text)
{
    uint8_t ef[TS_FRAME_HDR_LEN + TS_FRAME_ERROR_TEXT_MAX];
    uint8_t msg[TS_WS_SERVER_HDR_MAX + sizeof(ef)];
    size_t n, h;

    if (ts_frame_error_build(ef, sizeof(ef), text, &n) == APR_SUCCESS) {
        h = ts_ws_header_build(msg, TS_WS_OP_BINARY, n);
        memcpy(msg + h, ef, n);
        conn_write(r, msg, h + n);
    }
    return conn_ws_close(r, TS_WS_CLOSE_POLICY, text);
}

/* 101 with the accept key, and the subprotocol when the client offered it. */
static void conn_ws_switch(request_rec *r, int proto)
{
    char accept[TS_WS_ACCEPT_LEN + 1];

    ts_ws_accept(accept, apr_table_get(r->headers_in, "Sec-WebSocket-Key"));
    apr_table_clear(r->headers_out);
    apr_table_setn(r->headers_out, "Upgrade", TS_WS_UPGRADE_TOKEN);
    apr_table_setn(r->headers_out, "Connection", "Upgrade");
    apr_table_set(r->headers_out, "Sec-WebSocket-Accept", accept);
    if (proto) apr_table_setn(r->headers_out, "Sec-WebSocket-Protocol", TS_UPGRADE_TOKEN);
    conn_switch(r);
}

/* After the HTTP checks: 101, then what the reference settles inside the WebSocket, the Noise
 * responder, message 2 alone in one binary message (never the early payload), takeover. */
static int conn_ws_handler(request_rec *r, ts_server_conf *conf)
{
    uint8_t msg1[TS_NOISE_MSG1_LEN + 8], out[TS_WS_SERVER_HDR_MAX + TS_NOISE_MSG2_LEN];
    int proto = conn_ws_offers(apr_table_get(r->headers_in, "Sec-WebSocket-Protocol"),
                               TS_UPGRADE_TOKEN);
    ts_noise_session_t ns;
    const char *reason, *err = NULL;
    size_t len = 0, h = ts_ws_header_len(TS_NOISE_MSG2_LEN);
    int min;
    apr_status_t rv;

    conn_ws_switch(r, proto);
    if (!proto) {
        ts_metrics_add(TS_MET_HS_BAD_REQUEST, 1);
        return conn_ws_close(r, TS_WS_CLOSE_POLICY, "client must speak the control subprotocol");
    }
    if ((reason = conn_ws_handshake(r, msg1, &len)) != NULL) {
        ts_metrics_add(TS_MET_HS_BAD_MESSAGE, 1);
        return conn_ws_close(r, TS_WS_CLOSE_POLICY, reason);
    }
    rv = ts_noise_respond(conf->keys->noise_priv, msg1, len, NULL, out + h, &ns, &err);
    sodium_memzero(msg1, sizeof(msg1));
    if (rv != APR_SUCCESS) ts_metrics_add(TS_MET_HS_NOISE, 1);
    if (rv == APR_EINVAL) return conn_ws_error_frame(r, err);
    if (rv != APR_SUCCESS) {
        return conn_ws_close(r, TS_WS_CLOSE_POLICY, "Noise handshake failed (wrong server key?)");
    }
    min = conf->min_capver != TS_UNSET ? conf->min_capver : TS_DEFAULT_MIN_CAPVER;
    if (ns.version < min) {
        reason = apr_psprintf(r->pool, "unsupported client version %d (minimum %d)",
                              ns.version, min);
        ts_noise_session_wipe(&ns);
        ts_metrics_add(TS_MET_HS_VERSION, 1);
        return conn_ws_close(r, TS_WS_CLOSE_POLICY, reason);
    }
    ts_ws_header_build(out, TS_WS_OP_BINARY, TS_NOISE_MSG2_LEN);
    return ts_conn_takeover(r, &ns, out, h + TS_NOISE_MSG2_LEN, 1);
}

int ts_conn_handler(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);
    uint8_t msg1[TS_NOISE_MSG1_LEN + 8];
    uint8_t out[TS_NOISE_MSG2_LEN + TS_FRAME_EARLY_SEALED_LEN];
    ts_noise_session_t ns;
    const char *reason, *err = NULL;
    size_t len = 0, early = 0;
    int status, min;
    apr_status_t rv;

    reason = conn_check_request(r, &status);
    if (reason) ts_metrics_add(TS_MET_HS_BAD_REQUEST, 1);
    if (reason) return conn_refuse(r, status, reason);
    if (!conf->keys) ts_metrics_add(TS_MET_HS_NO_KEYS, 1);
    if (!conf->keys) return conn_refuse(r, HTTP_SERVICE_UNAVAILABLE, "server keys not loaded");
    if (!strcasecmp(apr_table_get(r->headers_in, "Upgrade"), TS_WS_UPGRADE_TOKEN)) {
        return conn_ws_handler(r, conf);
    }
    if (conn_decode_handshake(r, msg1, &len) != 0) {
        ts_metrics_add(TS_MET_HS_BAD_MESSAGE, 1);
        return conn_refuse(r, HTTP_BAD_REQUEST, "invalid tailscale handshake header");
    }
    rv = ts_noise_respond(conf->keys->noise_priv, msg1, len, NULL, out, &ns, &err);
    sodium_memzero(msg1, sizeof(msg1));
    if (rv != APR_SUCCESS) ts_metrics_add(TS_MET_HS_NOISE, 1);
    if (rv == APR_EINVAL) return conn_send_error_frame(r, err);
    if (rv != APR_SUCCESS) {
        return conn_refuse(r, HTTP_BAD_REQUEST, "Noise handshake failed (wrong server key?)");
    }
    min = conf->min_capver != TS_UNSET ? conf->min_capver : TS_DEFAULT_MIN_CAPVER;
    if (ns.version < min) {
        reason = apr_psprintf(r->pool, "unsupported client version %d (minimum %d)",
                              ns.version, min);
        ts_noise_session_wipe(&ns);
        ts_metrics_add(TS_MET_HS_VERSION, 1);
        return conn_refuse(r, HTTP_BAD_REQUEST, reason);
    }
    rv = ts_frame_early_payload_seal(&ns.tx, ns.version, conn_challenge_key(),
                                     out + TS_NOISE_MSG2_LEN,
                                     sizeof(out) - TS_NOISE_MSG2_LEN, &early, &err);
    if (rv != APR_SUCCESS) {
        ts_metrics_add(TS_MET_HS_IO, 1);
        ts_noise_session_wipe(&ns);
        r->connection->aborted = 1;
        return DONE;
    }
    conn_native_switch(r);
    return ts_conn_takeover(r, &ns, out, TS_NOISE_MSG2_LEN + early, 0);
}

/* Bytes the client sent after its request that httpd's input filters already hold:
 * read them out (non-blocking) before the socket changes hands. */
static apr_status_t conn_drain_buffered(conn_rec *c, apr_pool_t *p, uint8_t **buf, size_t *len)
{
    apr_bucket_brigade *bb = apr_brigade_create(p, c->bucket_alloc);
    apr_size_t n;
    apr_status_t rv;

    *buf = NULL;
    *len = 0;
    for (;;) {
        rv = ap_get_brigade(c->input_filters, bb, AP_MODE_READBYTES, APR_NONBLOCK_READ, 8192);
        if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb))) break;
        if (rv != APR_SUCCESS) return rv;
        n = 0;
        apr_brigade_length(bb, 1, (apr_off_t *)&n);
        *buf = *buf ? realloc(*buf, *len + n) : malloc(n ? n : 1);
        if (!*buf) return APR_ENOMEM;
        apr_brigade_flatten(bb, (char *)*buf + *len, &n);
        *len += n;
        apr_brigade_cleanup(bb);
        if (*len > (1u << 20)) return APR_ENOSPC;
    }
    apr_brigade_destroy(bb);
    return APR_SUCCESS;
}

/* Cleartext: a dup of the socket for the child's event loop (httpd closes its own copy
 * without a shutdown, c->aborted), non-blocking; -1 if that cannot be. */
static int conn_dup(conn_rec *c)
{
    apr_socket_t *sock = ap_get_conn_socket(c);
    apr_os_sock_t os;
    apr_int32_t nonblock = 0;
    int fd, flags;

    if (!sock || apr_os_sock_get(&os, sock) != APR_SUCCESS) return -1;
    fd = dup(os);
    if (fd < 0) return -1;
    /* The dup shares file status flags with httpd's copy, which is non-blocking already
     * when APR says so (a socket with a timeout); otherwise set it. */
    if (apr_socket_opt_get(sock, APR_SO_NONBLOCK, &nonblock) == APR_SUCCESS && nonblock) {
        return fd;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Where the connection goes after the 101: the loop (cleartext) or this thread. */
typedef struct conn_driver {
    ts_loop_conn_t *lc;
    ts_tls_conn_t *tc;
    ts_conn_t *core;
} conn_driver;

static apr_status_t conn_prepare(request_rec *r, ts_noise_session_t *ns, int websocket,
                                 conn_driver *d)
{
    apr_status_t rv = APR_EGENERAL;
    int fd = -1;

    memset(d, 0, sizeof(*d));
    if (!ap_ssl_conn_is_ssl(r->connection) && (fd = conn_dup(r->connection)) >= 0) {
        d->lc = ts_loop_prepare(r->server, fd, r->useragent_ip, ns, websocket, &rv);
        if (!d->lc) close(fd);
    }
    if (d->lc) d->core = ts_loop_core(d->lc);
    else if (rv == APR_EGENERAL && (d->tc = ts_tls_prepare(r, ns, websocket, &rv)) != NULL) {
        d->core = ts_tls_core(d->tc);
    }
    return d->core ? APR_SUCCESS : rv;
}

static void conn_discard(conn_driver *d)
{
    if (d->lc) ts_loop_discard(d->lc);
    if (d->tc) ts_tls_discard(d->tc);
}

/* first, then the connection core's first output (its HTTP/2 SETTINGS), flushed: one write
 * with the 101 queued before. */
static apr_status_t conn_write_first(request_rec *r, const uint8_t *first, size_t first_len,
                                     ts_conn_t *core)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, c->bucket_alloc);
    const uint8_t *out = NULL;
    const char *why = NULL;
    size_t len = 0;
    apr_status_t rv;

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create((const char *)first, first_len,
                                                             c->bucket_alloc));
    if (ts_conn_pending(core, &out, &len, &why) == APR_SUCCESS && len > 0) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create((const char *)out, len,
                                                                 c->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    rv = ap_pass_brigade(c->output_filters, bb);
    apr_brigade_cleanup(bb);
    /* A flushed brigade that passed is on the wire. */
    if (rv == APR_SUCCESS && len > 0) ts_conn_sent(core, len);
    return rv;
}

int ts_conn_takeover(request_rec *r, ts_noise_session_t *ns, const uint8_t *first,
                     size_t first_len, int websocket)
{
    uint16_t version = ns->version;
    conn_driver d;
    uint8_t *buf = NULL;
    size_t len = 0;
    apr_status_t rv;
    int rc;

    rv = conn_prepare(r, ns, websocket, &d);
    if (rv == APR_SUCCESS) rv = conn_write_first(r, first, first_len, d.core);
    if (rv == APR_SUCCESS) rv = conn_drain_buffered(r->connection, r->pool, &buf, &len);
    if (rv != APR_SUCCESS) {
        ts_metrics_add(TS_MET_HS_IO, 1);
        if (d.core) conn_discard(&d);
        free(buf);
        r->connection->aborted = 1;
        return DONE;
    }
    if (websocket) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, APLOGNO(10945)
                      "TS2021 WebSocket handshake with %s done (client version %d)",
                      r->useragent_ip, version);
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, APLOGNO(10942)
                      "TS2021 handshake with %s done (client version %d)", r->useragent_ip,
                      version);
    }
    ts_metrics_add(TS_MET_HS_OK, 1);
    if (d.tc) {
        rc = ts_tls_run(d.tc, buf, len);
        free(buf);
        return rc;
    }
    rv = ts_loop_adopt(d.lc, buf, len);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r, APLOGNO(10943)
                      "TS2021 connection from %s could not be handed to the event loop",
                      r->useragent_ip);
    }
    r->connection->aborted = 1;
    return DONE;
}
