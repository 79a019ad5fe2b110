/* ts_regpage.c: the interactive login page's logic: registration lookup, CSRF tokens (HMAC
 * over id, login name and issue time), device facts from Hostinfo, approval for a login name,
 * and the HTML it answers, every value escaped. */
#include "ts_regpage.h"
#include "ts_register.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <jansson.h>
#include <sodium.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#define TOKEN_CONTEXT "mod_ts2021 register form v1"
#define TOKEN_SKEW apr_time_from_sec(60)

void ts_regpage_secret(uint8_t out[TS_REGPAGE_SECRET_LEN], const uint8_t noise_priv[TS_KEY_LEN])
{
    static const char label[] = "mod_ts2021 login page CSRF secret v1";

    crypto_generichash(out, TS_REGPAGE_SECRET_LEN, (const unsigned char *)label,
                       sizeof(label) - 1, noise_priv, TS_KEY_LEN);
}

/* HMAC-SHA256 over the context, the time and both names, each ended by a NUL so that no two
 * (id, login) pairs give the same message. */
static void regpage_mac(uint8_t mac[crypto_auth_hmacsha256_BYTES],
                        const uint8_t secret[TS_REGPAGE_SECRET_LEN], const char *when_hex,
                        const char *auth_id, const char *login)
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, secret, TS_REGPAGE_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)TOKEN_CONTEXT,
                                  sizeof(TOKEN_CONTEXT));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)when_hex, strlen(when_hex) + 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)auth_id, strlen(auth_id) + 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)login, strlen(login) + 1);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
}

const char *ts_regpage_token(apr_pool_t *p, const uint8_t secret[TS_REGPAGE_SECRET_LEN],
                             const char *auth_id, const char *login, apr_time_t now)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    char when[17], hex[2 * sizeof(mac) + 1];

    snprintf(when, sizeof(when), "%016llx", (unsigned long long)apr_time_sec(now));
    regpage_mac(mac, secret, when, auth_id ? auth_id : "", login ? login : "");
    ts_hex_encode(hex, mac, sizeof(mac));
    return apr_pstrcat(p, when, ".", hex, NULL);
}

int ts_regpage_token_check(const uint8_t secret[TS_REGPAGE_SECRET_LEN], const char *token,
                           const char *auth_id, const char *login, apr_time_t now)
{
    uint8_t want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    char when[17];
    unsigned long long t;
    char *end;
    apr_time_t issued;
    int ok;

    if (!token || !auth_id || !login || strlen(token) != 16 + 1 + 2 * sizeof(got)
        || token[16] != '.' || strspn(token, "0123456789abcdef") != 16
        || strspn(token + 17, "0123456789abcdef") != 2 * sizeof(got)) {
        return 0;
    }
    memcpy(when, token, 16);
    when[16] = '\0';
    t = strtoull(when, &end, 16);
    if (*end || t > (unsigned long long)apr_time_sec(now + TOKEN_SKEW)) {
        return 0;
    }
    issued = apr_time_from_sec((apr_time_t)t);
    if (now - issued > TS_REGPAGE_TOKEN_TTL) {
        return 0;
    }
    if (ts_hex_decode(got, sizeof(got), token + 17, 2 * sizeof(got)) != 0) {
        return 0;
    }
    regpage_mac(want, secret, when, auth_id, login);
    ok = sodium_memcmp(want, got, sizeof(want)) == 0;
    sodium_memzero(want, sizeof(want));
    return ok;
}

const char *ts_regpage_escape(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    const char *c;
    char *out, *o;

    if (!s) return "";
    for (c = s; *c; c++) {
        switch (*c) {
        case '&': n += 5; break;
        case '<': case '>': n += 4; break;
        case '"': case '\'': n += 6; break;
        default: n++;
        }
    }
    o = out = apr_palloc(p, n + 1);
    for (c = s; *c; c++) {
        switch (*c) {
        case '&': memcpy(o, "&amp;", 5); o += 5; break;
        case '<': memcpy(o, "&lt;", 4); o += 4; break;
        case '>': memcpy(o, "&gt;", 4); o += 4; break;
        case '"': memcpy(o, "&quot;", 6); o += 6; break;
        case '\'': memcpy(o, "&#x27;", 6); o += 6; break;
        default: *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

/* Length of the UTF-8 sequence at s (shortest form, no surrogates), 0 if invalid. */
static int utf8_len(const unsigned char *s)
{
    unsigned int cp;
    int n, i;

    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) n = 4, cp = s[0] & 0x07;
    else return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

int ts_regpage_login_valid(const char *login)
{
    const unsigned char *s = (const unsigned char *)login;
    apr_size_t len;
    int n;

    if (!login || !*login || (len = strlen(login)) > TS_REGPAGE_LOGIN_MAX) return 0;
    if (s[0] == ' ' || s[len - 1] == ' ') return 0;
    while (*s) {
        if (*s < 0x20 || *s == 0x7f) return 0;
        if (!(n = utf8_len(s))) return 0;
        s += n;
    }
    return 1;
}

static const char *json_text(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));

    return v ? v : "";
}

static apr_array_header_t *json_strings(apr_pool_t *p, json_t *arr)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v) {
        if (json_is_string(v)) {
            APR_ARRAY_PUSH(a, const char *) = apr_pstrdup(p, json_string_value(v));
        }
    }
    return a;
}

void ts_regpage_device(apr_pool_t *p, const ts_registration_t *r, ts_regpage_device_t *d)
{
    json_t *h = r->hostinfo ? json_loads(r->hostinfo, 0, NULL) : NULL;
    const char *nk = r->node_key ? r->node_key : "";
    const char *hex = strchr(nk, ':') ? strchr(nk, ':') + 1 : nk;
    const char *os, *osv;

    memset(d, 0, sizeof(*d));
    d->hostname = apr_pstrdup(p, json_text(h, "Hostname"));
    os = json_text(h, "OS");
    osv = json_text(h, "OSVersion");
    d->os = *osv ? apr_pstrcat(p, os, " ", osv, NULL) : apr_pstrdup(p, os);
    d->client_version = apr_pstrdup(p, json_text(h, "IPNVersion"));
    d->tags = json_strings(p, json_object_get(h, "RequestTags"));
    d->routes = json_strings(p, json_object_get(h, "RoutableIPs"));
    d->node_key = nk;
    d->machine_key = r->machine_key ? r->machine_key : "";
    d->fingerprint = strlen(hex) >= 16
        ? apr_psprintf(p, "%.4s %.4s %.4s %.4s", hex, hex + 4, hex + 8, hex + 12) : "";
    d->ephemeral = r->ephemeral;
    json_decref(h);
}

static void lookup_answer(ts_regpage_lookup_t *out, int status, const char *title,
                          const char *message)
{
    out->status = status;
    out->title = title;
    out->message = message;
}

void ts_regpage_lookup(ts_store_t *st, apr_pool_t *p, const char *auth_id, apr_time_t now,
                       ts_regpage_lookup_t *out)
{
    const char *err = NULL;
    apr_status_t rv;

    memset(out, 0, sizeof(*out));
    if (!ts_register_auth_id_valid(auth_id)) {
        lookup_answer(out, 404, "Unknown registration",
                      "This is not a device registration link. Run 'tailscale up' again "
                      "and open the link it prints.");
        return;
    }
    rv = ts_store_registration_get(st, p, auth_id, &out->reg, &err);
    if (rv == TS_STORE_ENOTFOUND) {
        lookup_answer(out, 404, "Unknown or expired registration",
                      "This registration link is unknown or has expired. Run 'tailscale up' "
                      "again and open the new link it prints.");
        return;
    }
    if (rv != APR_SUCCESS) {
        lookup_answer(out, 500, "Server error",
                      "The registration could not be read. Try again later.");
        out->log = err;
        return;
    }
    if (out->reg->state == TS_REG_APPROVED) {
        lookup_answer(out, 409, "Already approved",
                      "This device was already approved. You can close this page.");
    }
    else if (out->reg->state == TS_REG_REJECTED) {
        lookup_answer(out, 410, "Registration rejected",
                      "This registration was rejected. Run 'tailscale up' again to start "
                      "over.");
    }
    else if (out->reg->expires_at <= now) {
        lookup_answer(out, 410, "Registration expired",
                      "This registration link has expired. Run 'tailscale up' again and "
                      "open the new link it prints.");
    }
    else {
        lookup_answer(out, 200, "Add a device", NULL);
    }
}

/* The user named login, created when missing. */
static apr_status_t regpage_user(ts_store_t *st, apr_pool_t *p, const char *login,
                                 ts_user_t **user, const char **err)
{
    ts_user_t *u;
    apr_status_t rv = ts_store_user_get_by_name(st, p, login, user, err);

    if (rv != TS_STORE_ENOTFOUND) {
        return rv;
    }
    u = apr_pcalloc(p, sizeof(*u));
    u->name = login;
    if (strchr(login, '@')) {
        u->email = login;
    }
    rv = ts_store_user_create(st, p, u, err);
    if (rv == TS_STORE_ECONFLICT) {
        /* created meanwhile by another login or an admin */
        return ts_store_user_get_by_name(st, p, login, user, err);
    }
    *user = rv == APR_SUCCESS ? u : NULL;
    return rv;
}

apr_status_t ts_regpage_approve(ts_store_t *st, apr_pool_t *p, const ts_tailnet_conf_t *conf,
                                const char *auth_id, const char *login, ts_user_t **user,
                                apr_int64_t *node_id, const char **err)
{
    ts_regpage_lookup_t look;
    apr_status_t rv;

    *user = NULL;
    *node_id = 0;
    if (!ts_regpage_login_valid(login)) {
        *err = "the login name is empty, too long or not printable UTF-8";
        return APR_EINVAL;
    }
    ts_regpage_lookup(st, p, auth_id, apr_time_now(), &look);
    if (look.status != 200) {
        *err = look.log ? look.log : look.message;
        return look.status == 404 ? TS_STORE_ENOTFOUND
             : look.status == 500 ? TS_STORE_EDB : TS_STORE_ECONFLICT;
    }
    rv = regpage_user(st, p, login, user, err);
    if (rv == APR_SUCCESS) {
        rv = ts_register_approve(st, p, conf, auth_id, (*user)->id, node_id, err);
    }
    return rv;
}

/* ---- HTML ---- */

static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta name=\"robots\" content=\"noindex\">\n<title>%s</title>\n<style>\n"
    "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1c1e21;margin:0}\n"
    "main{max-width:36em;margin:3em auto;background:#fff;padding:1.5em 2em;"
    "border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15)}\n"
    "h1{font-size:1.4em;margin-top:0}dl{display:grid;grid-template-columns:max-content 1fr;"
    "gap:.4em 1em}dt{color:#555}dd{margin:0;overflow-wrap:anywhere}\n"
    "code{font-size:.85em}button{font-size:1em;padding:.5em 1.2em;border-radius:4px;"
    "border:1px solid #888;cursor:pointer;margin-right:.5em}\n"
    "button.ok{background:#1a73e8;color:#fff;border-color:#1a73e8}\n"
    ".who{background:#eef3fd;padding:.6em .8em;border-radius:4px}\n"
    "</style></head><body><main>\n<h1>%s</h1>\n";
static const char PAGE_TAIL[] = "</main></body></html>\n";

static const char *page(apr_pool_t *p, const char *title, const char *body)
{
    const char *t = ts_regpage_escape(p, title);

    return apr_pstrcat(p, apr_psprintf(p, PAGE_HEAD, t, t), body, PAGE_TAIL, NULL);
}

/* "2026-11-25 17:17 UTC" */
static const char *when(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;
    char buf[32];
    apr_size_t n = 0;

    if (apr_time_exp_gmt(&x, t) != APR_SUCCESS
        || apr_strftime(buf, &n, sizeof(buf), "%Y-%m-%d %H:%M UTC", &x) != APR_SUCCESS) {
        return ts_time_rfc3339(p, t);
    }
    return apr_pstrdup(p, buf);
}

static const char *joined(apr_pool_t *p, const apr_array_header_t *a)
{
    const char *s = "";
    int i;

    for (i = 0; i < a->nelts; i++) {
        s = apr_pstrcat(p, s, i ? ", " : "", APR_ARRAY_IDX(a, i, const char *), NULL);
    }
    return s;
}

static const char *row(apr_pool_t *p, const char *label, const char *value, int code)
{
    if (!value || !*value) return "";
    return apr_pstrcat(p, "<dt>", label, "</dt><dd>", code ? "<code>" : "",
                       ts_regpage_escape(p, value), code ? "</code>" : "", "</dd>\n", NULL);
}

const char *ts_regpage_render_confirm(apr_pool_t *p, const ts_registration_t *r,
                                      const char *login, const char *form_token)
{
    ts_regpage_device_t d;
    const char *body;

    ts_regpage_device(p, r, &d);
    body = apr_pstrcat(p,
        "<p>A device asks to join the tailnet.</p>\n<dl>\n",
        row(p, "Device", *d.hostname ? d.hostname : "(no host name)", 0),
        row(p, "Operating system", d.os, 0),
        row(p, "Tailscale version", d.client_version, 0),
        row(p, "Key fingerprint", d.fingerprint, 1),
        row(p, "Node key", d.node_key, 1),
        row(p, "Requested tags", joined(p, d.tags), 0),
        row(p, "Advertised routes", joined(p, d.routes), 0),
        d.ephemeral ? row(p, "Ephemeral", "yes", 0) : "",
        row(p, "Link expires", when(p, r->expires_at), 0),
        "</dl>\n<p class=\"who\">It will belong to <strong>",
        ts_regpage_escape(p, login), "</strong>.</p>\n", NULL);
    if (form_token) {
        body = apr_pstrcat(p, body,
            "<p>Only confirm if you started this on the device yourself, just now.</p>\n"
            "<form method=\"post\">\n<input type=\"hidden\" name=\"token\" value=\"",
            ts_regpage_escape(p, form_token), "\">\n"
            "<button class=\"ok\" type=\"submit\" name=\"action\" value=\"approve\">"
            "Confirm</button>\n"
            "<button type=\"submit\" name=\"action\" value=\"reject\">"
            "This is not my device</button>\n</form>\n", NULL);
    }
    return page(p, "Add a device", body);
}

const char *ts_regpage_render_done(apr_pool_t *p, const ts_node_t *n, const char *login,
                                   int approved)
{
    if (!approved) {
        return page(p, "Registration rejected",
                    "<p>The device was not added. You can close this page.</p>\n");
    }
    return page(p, "Device added", apr_pstrcat(p,
        "<p>The device <strong>", ts_regpage_escape(p, n->given_name),
        "</strong> now belongs to <strong>", ts_regpage_escape(p, login),
        "</strong>.</p>\n<dl>\n",
        row(p, "IPv4 address", n->ipv4, 1),
        row(p, "IPv6 address", n->ipv6, 1),
        row(p, "Key expiry", n->expiry ? when(p, n->expiry) : "never", 0),
        "</dl>\n<p>The device connects by itself; you can close this page.</p>\n", NULL));
}

const char *ts_regpage_render_message(apr_pool_t *p, const char *title, const char *message)
{
    return page(p, title, apr_pstrcat(p, "<p>", ts_regpage_escape(p, message), "</p>\n",
                                      NULL));
}
