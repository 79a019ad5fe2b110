/* ts_util.h: small helpers shared by the core: hex, key text forms, time.
 * No httpd types; APR only. */
#ifndef TS_UTIL_H
#define TS_UTIL_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_time.h>
#include <stddef.h>
#include <stdint.h>

#define TS_KEY_LEN 32

/* Lower-case hex of len bytes into out (2*len+1 bytes, NUL-terminated). */
void ts_hex_encode(char *out, const uint8_t *in, size_t len);

/* Parses exactly 2*len hex digits (either case). Returns 0 on success, -1 otherwise. */
int ts_hex_decode(uint8_t *out, size_t len, const char *hex, size_t hexlen);

/* "<prefix><64 hex>" of a 32-byte key, allocated from p (e.g. prefix "mkey:"). */
char *ts_key_text(apr_pool_t *p, const char *prefix, const uint8_t key[TS_KEY_LEN]);

/* Parses "<prefix><64 hex>" (prefix case-sensitive, hex either case, exact length).
 * Returns 0 on success, -1 if the text is not of that form. */
int ts_key_parse(uint8_t key[TS_KEY_LEN], const char *prefix, const char *text);

/* RFC 3339 UTC text with microseconds and "Z" ("2026-11-25T13:15:23.123456Z"), from p. */
char *ts_time_rfc3339(apr_pool_t *p, apr_time_t t);

#endif
