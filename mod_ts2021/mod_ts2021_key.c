/* mod_ts2021_key.c: GET /key, the server public key discovery of transport spec 1.
 * Outside Noise; cheap, since clients fetch it before every register call. */
#include "mod_ts2021.h"

#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_strings.h>
#include <apr_lib.h>

APLOG_USE_MODULE(ts2021);

/* Longer queries than this are not from a Tailscale client. */
#define TS_KEY_MAX_QUERY 256

static int key_error(request_rec *r, int status, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10910)
                  "TS2021 /key from %s refused: %s", r->useragent_ip, msg);
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rvputs(r, msg, "\n", NULL);
    return OK;
}

/* Finds the single "v" parameter of the query. 0 = found, 1 = absent, -1 = twice. */
static int key_query_v(request_rec *r, const char **value)
{
    char *args = apr_pstrdup(r->pool, r->args ? r->args : ""), *pair, *last;
    int found = 0;

    for (pair = apr_strtok(args, "&", &last); pair; pair = apr_strtok(NULL, "&", &last)) {
        if (strncmp(pair, "v=", 2) == 0 || strcmp(pair, "v") == 0) {
            if (found++) return -1;
            *value = pair[1] ? pair + 2 : "";
        }
    }
    return found ? 0 : 1;
}

/* Parses the capability version: decimal digits only, within the uint16 range. */
static int key_parse_capver(const char *s, int *capver)
{
    long v = 0;
    const char *c;

    if (!*s || strlen(s) > 5) return -1;
    for (c = s; *c; c++) {
        if (!apr_isdigit(*c)) return -1;
        v = v * 10 + (*c - '0');
    }
    if (v > TS_MAX_CAPVER) return -1;
    *capver = (int)v;
    return 0;
}

int ts_key_handler(request_rec *r)
{
    ts_server_conf *conf = ts_conf(r->server);
    static const uint8_t zero_key[TS_KEY_LEN];
    const char *v = NULL;
    int capver, min, found;

    ap_allow_standard_methods(r, REPLACE_ALLOW, M_GET, -1);
    if (r->method_number != M_GET) return HTTP_METHOD_NOT_ALLOWED;
    if (!conf->keys) return key_error(r, HTTP_SERVICE_UNAVAILABLE, "server keys not loaded");
    if (r->args && strlen(r->args) > TS_KEY_MAX_QUERY) {
        return key_error(r, HTTP_BAD_REQUEST, "query string too long");
    }
    found = key_query_v(r, &v);
    if (found == 1) {
        /* Clients without v are pre-Noise (<= v1.22); the legacy transport is not offered. */
        return key_error(r, HTTP_BAD_REQUEST, "capability version must be set (?v=N)");
    }
    if (found < 0) return key_error(r, HTTP_BAD_REQUEST, "capability version given twice");
    if (key_parse_capver(v, &capver) != 0) {
        return key_error(r, HTTP_BAD_REQUEST,
                         "capability version must be a number between 0 and 65535");
    }
    min = conf->min_capver != TS_UNSET ? conf->min_capver : TS_DEFAULT_MIN_CAPVER;
    if (capver < min) {
        return key_error(r, HTTP_BAD_REQUEST, apr_psprintf(r->pool,
                         "unsupported client version %d (minimum %d); upgrade Tailscale",
                         capver, min));
    }
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Access-Control-Allow-Origin", "*");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    /* The legacy NaCl transport is not offered: publish the zero key (spec 1.2). */
    ap_rvputs(r, "{\"legacyPublicKey\":\"", ts_key_text(r->pool, "mkey:", zero_key),
              "\",\"publicKey\":\"", ts_key_text(r->pool, "mkey:", conf->keys->noise_pub),
              "\"}\n", NULL);
    return OK;
}
