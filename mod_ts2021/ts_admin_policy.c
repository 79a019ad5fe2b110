/* ts_admin_policy.c: the admin API's policy check until the policy compiler replaces it:
 * HuJSON (JSON with comments and trailing commas) that must hold one object; errors by line. */
#include "ts_admin.h"

#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

char *ts_admin_hujson_standardize(apr_pool_t *p, const char *text, apr_size_t len,
                                  int *open_comment, int *line)
{
    char *out = apr_palloc(p, len + 1);
    apr_size_t i, last_comma = (apr_size_t)-1;
    int in_string = 0, cur_line = 1;
    char last_sig = '\0';          /* the last significant character before a comma */

    memcpy(out, text, len);
    out[len] = '\0';
    *open_comment = 0;
    *line = 0;
    for (i = 0; i < len; i++) {
        char c = out[i];
        if (c == '\n') cur_line++;
        if (in_string) {
            if (c == '\\' && i + 1 < len) {
                i++;
            }
            else if (c == '"' || c == '\n') {
                in_string = 0;
                last_sig = '"';
            }
            continue;
        }
        if (c == '/' && i + 1 < len && out[i + 1] == '/') {
            for (; i < len && out[i] != '\n'; i++) out[i] = ' ';
            if (i < len) cur_line++;
        }
        else if (c == '/' && i + 1 < len && out[i + 1] == '*') {
            int start = cur_line;
            out[i] = out[i + 1] = ' ';
            for (i += 2; i < len && !(out[i] == '*' && i + 1 < len && out[i + 1] == '/'); i++) {
                if (out[i] == '\n') cur_line++;
                else out[i] = ' ';
            }
            if (i >= len) {
                *open_comment = 1;
                *line = start;
                return out;
            }
            out[i] = out[i + 1] = ' ';
            i++;
        }
        else if (c == ',') {
            /* a trailing comma only after a value: "[,]" and "{,}" stay errors */
            last_comma = (last_sig && !strchr("{[,:", last_sig)) ? i : (apr_size_t)-1;
            last_sig = ',';
        }
        else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            continue;
        }
        else {
            if ((c == '}' || c == ']') && last_comma != (apr_size_t)-1) out[last_comma] = ' ';
            last_comma = (apr_size_t)-1;
            last_sig = c;
            if (c == '"') in_string = 1;
        }
    }
    return out;
}

static void policy_error(apr_array_header_t *errors, int line, int column, const char *msg)
{
    ts_admin_policy_error_t *e = &APR_ARRAY_PUSH(errors, ts_admin_policy_error_t);

    e->line = line;
    e->column = column;
    e->message = msg;
}

apr_status_t ts_admin_policy_check(apr_pool_t *p, const char *text, apr_size_t len,
                                   apr_array_header_t **errors)
{
    int open_comment, line;
    char *json;
    json_error_t jerr;
    json_t *j;

    *errors = apr_array_make(p, 1, sizeof(ts_admin_policy_error_t));
    if (!text || memchr(text, '\0', len)) {
        policy_error(*errors, 0, 0, "the policy contains a NUL byte");
        return APR_EINVAL;
    }
    json = ts_admin_hujson_standardize(p, text, len, &open_comment, &line);
    if (open_comment) {
        policy_error(*errors, line, 0, "a /* comment is not closed");
        return APR_EINVAL;
    }
    j = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        policy_error(*errors, jerr.line > 0 ? jerr.line : 0, jerr.column > 0 ? jerr.column : 0,
                     apr_pstrdup(p, jerr.text));
        return APR_EINVAL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        policy_error(*errors, 1, 1, "the policy must be a JSON object");
        return APR_EINVAL;
    }
    json_decref(j);
    return APR_SUCCESS;
}
