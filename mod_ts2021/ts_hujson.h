/* ts_hujson.h: HuJSON (JSON with comments and trailing commas, as Tailscale policies are
 * written) turned into standard JSON with every byte offset and line kept, then parsed. */
#ifndef TS_HUJSON_H
#define TS_HUJSON_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <jansson.h>

/* Largest document accepted (bytes): the store keeps policies up to this size. */
#define TS_HUJSON_MAX 1000000u

/* Rewrites HuJSON text to JSON of the same length: comments become spaces (newlines
 * kept), a comma before '}' or ']' becomes a space. The result is allocated from p and
 * NUL-terminated. On a lexical error (unterminated comment or string, NUL byte) returns
 * APR_EINVAL with *err naming the line. */
apr_status_t ts_hujson_standardize(apr_pool_t *p, const char *text, apr_size_t len,
                                   char **out, const char **err);

/* Standardizes then parses with jansson (duplicate keys rejected). The caller owns the
 * returned reference. Errors name the line and column. */
apr_status_t ts_hujson_parse(apr_pool_t *p, const char *text, apr_size_t len,
                             json_t **out, const char **err);

/* 1-based line of the first occurrence of the JSON string literal "value" in text (quoted,
 * escaping ignored; else of a literal "value:..."), or 0 if it is not found: used to name
 * the line of an offending value. */
int ts_hujson_line_of(const char *text, const char *value);

#endif
