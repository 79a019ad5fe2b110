/* ts_hujson.c: HuJSON to JSON in place (same length, so jansson's line and column numbers
 * are the author's), then parsing; plus finding the line of a value for error messages. */
#include "ts_hujson.h"

#include <apr_strings.h>
#include <ctype.h>
#include <string.h>

static int hujson_line_at(const char *s, apr_size_t off)
{
    int line = 1;
    apr_size_t i;

    for (i = 0; i < off; i++) {
        if (s[i] == '\n') {
            line++;
        }
    }
    return line;
}

/* Blanks a comment starting at *i; returns -1 if it never ends. */
static int hujson_comment(char *b, apr_size_t len, apr_size_t *i)
{
    apr_size_t j = *i;

    if (b[j + 1] == '/') {
        while (j < len && b[j] != '\n') {
            b[j++] = ' ';
        }
        *i = j;
        return 0;
    }
    b[j] = b[j + 1] = ' ';
    for (j += 2; j + 1 < len; j++) {
        if (b[j] == '*' && b[j + 1] == '/') {
            b[j] = b[j + 1] = ' ';
            *i = j + 2;
            return 0;
        }
        if (b[j] != '\n') {
            b[j] = ' ';
        }
    }
    return -1;
}

/* Skips a string literal starting at *i (on the quote); returns -1 if unterminated. */
static int hujson_string(const char *b, apr_size_t len, apr_size_t *i)
{
    apr_size_t j;

    for (j = *i + 1; j < len; j++) {
        if (b[j] == '\\') {
            j++;
        }
        else if (b[j] == '"') {
            *i = j + 1;
            return 0;
        }
        else if (b[j] == '\n') {
            return -1;
        }
    }
    return -1;
}

/* A comma whose next significant byte closes an object or array: blank it. Comments after
 * the comma were blanked already when the scan reaches them, so look past them too. */
static void hujson_trailing_comma(char *b, apr_size_t len, apr_size_t comma)
{
    apr_size_t j = comma + 1;

    while (j < len) {
        if (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
            j++;
        }
        else if (b[j] == '/' && j + 1 < len && (b[j + 1] == '/' || b[j + 1] == '*')) {
            apr_size_t k = j;
            if (hujson_comment(b, len, &k) != 0) {
                return;
            }
            j = k;
        }
        else {
            break;
        }
    }
    if (j < len && (b[j] == '}' || b[j] == ']')) {
        b[comma] = ' ';
    }
}

apr_status_t ts_hujson_standardize(apr_pool_t *p, const char *text, apr_size_t len,
                                   char **out, const char **err)
{
    char *b;
    apr_size_t i = 0;
    char last = 0;     /* last significant byte outside strings and comments */

    if (len > TS_HUJSON_MAX) {
        *err = apr_psprintf(p, "document is %" APR_SIZE_T_FMT " bytes, above the %u byte limit",
                            len, TS_HUJSON_MAX);
        return APR_EINVAL;
    }
    b = apr_pmemdup(p, text, len + 1);
    b[len] = '\0';
    if (len >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0) {
        b[0] = b[1] = b[2] = ' ';
    }
    while (i < len) {
        char c = b[i];
        if (c == '\0') {
            *err = apr_psprintf(p, "line %d: NUL byte in document", hujson_line_at(b, i));
            return APR_EINVAL;
        }
        if (c == '"') {
            apr_size_t start = i;
            if (hujson_string(b, len, &i) != 0) {
                *err = apr_psprintf(p, "line %d: unterminated string", hujson_line_at(b, start));
                return APR_EINVAL;
            }
            last = '"';
            continue;
        }
        if (c == '/' && i + 1 < len && (b[i + 1] == '/' || b[i + 1] == '*')) {
            apr_size_t start = i;
            if (hujson_comment(b, len, &i) != 0) {
                *err = apr_psprintf(p, "line %d: unterminated /* comment",
                                    hujson_line_at(b, start));
                return APR_EINVAL;
            }
            continue;
        }
        /* only a comma after a value may trail: "{,}" and "[1,,]" stay errors */
        if (c == ',' && (last == '"' || last == '}' || last == ']' || isalnum((unsigned char)last))) {
            hujson_trailing_comma(b, len, i);
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            last = b[i];
        }
        i++;
    }
    *out = b;
    return APR_SUCCESS;
}

apr_status_t ts_hujson_parse(apr_pool_t *p, const char *text, apr_size_t len,
                             json_t **out, const char **err)
{
    char *std;
    json_error_t je;
    json_t *j;
    apr_status_t rv = ts_hujson_standardize(p, text, len, &std, err);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    j = json_loadb(std, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        *err = apr_psprintf(p, "line %d, column %d: %s", je.line, je.column, je.text);
        return APR_EINVAL;
    }
    *out = j;
    return APR_SUCCESS;
}

/* The exact literal "value" first; else a literal that starts with value and a ':' (a
 * destination "alias:ports" when value is its alias). */
int ts_hujson_line_of(const char *text, const char *value)
{
    apr_size_t vl = strlen(value);
    int pass;

    for (pass = 0; pass < 2; pass++) {
        const char *s = text;
        while ((s = strchr(s, '"')) != NULL) {
            if (strncmp(s + 1, value, vl) == 0 && s[vl + 1] == (pass == 0 ? '"' : ':')) {
                return hujson_line_at(text, (apr_size_t)(s - text));
            }
            s++;
        }
    }
    return 0;
}
