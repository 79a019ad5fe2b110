/* ts_util.c: hex and key text encodings (transport spec 1.4) and time formatting.
 * Shared by every core file so no one re-implements them. */
#include "ts_util.h"

#include <apr_strings.h>
#include <string.h>

void ts_hex_encode(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ts_hex_decode(uint8_t *out, size_t len, const char *hex, size_t hexlen)
{
    size_t i;

    if (hexlen != 2 * len) return -1;
    for (i = 0; i < len; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return 0;
}

char *ts_key_text(apr_pool_t *p, const char *prefix, const uint8_t key[TS_KEY_LEN])
{
    size_t plen = strlen(prefix);
    char *s = apr_palloc(p, plen + 2 * TS_KEY_LEN + 1);

    memcpy(s, prefix, plen);
    ts_hex_encode(s + plen, key, TS_KEY_LEN);
    return s;
}

int ts_key_parse(uint8_t key[TS_KEY_LEN], const char *prefix, const char *text)
{
    size_t plen = strlen(prefix);

    if (!text || strncmp(text, prefix, plen) != 0) return -1;
    return ts_hex_decode(key, TS_KEY_LEN, text + plen, strlen(text + plen));
}

char *ts_time_rfc3339(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_usec);
}
