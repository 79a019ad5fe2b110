/* ts_admin_policy.c: the admin API's policy check: the policy compiler's parse and static
 * validation (ts_policy_parse), its "line N[, column M]: message" turned into a located
 * error for the API's answer. */
#include "ts_admin.h"
#include "ts_policy.h"

#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

/* "line 3, column 7: text" or "line 3: text" -> 3, 7 and text; else 0, 0 and msg. */
static void policy_locate(apr_pool_t *p, const char *msg, ts_admin_policy_error_t *e)
{
    const char *s = msg;
    char *end;

    e->line = e->column = 0;
    e->message = msg;
    if (strncmp(s, "line ", 5) != 0) return;
    e->line = (int)strtol(s + 5, &end, 10);
    s = end;
    if (!strncmp(s, ", column ", 9)) {
        e->column = (int)strtol(s + 9, &end, 10);
        s = end;
    }
    if (!strncmp(s, ": ", 2)) e->message = apr_pstrdup(p, s + 2);
    else e->line = e->column = 0, e->message = msg;
}

apr_status_t ts_admin_policy_check(apr_pool_t *p, const char *text, apr_size_t len,
                                   apr_array_header_t **errors)
{
    apr_pool_t *tmp;
    ts_policy_t *pol = NULL;
    const char *err = NULL;
    apr_status_t rv;

    *errors = apr_array_make(p, 1, sizeof(ts_admin_policy_error_t));
    apr_pool_create(&tmp, p);
    rv = ts_policy_parse(tmp, text ? text : "", text ? len : 0, &pol, &err);
    if (rv != APR_SUCCESS) {
        policy_locate(p, apr_pstrdup(p, err ? err : "the policy is not valid"),
                      &APR_ARRAY_PUSH(*errors, ts_admin_policy_error_t));
        rv = APR_EINVAL;
    }
    apr_pool_destroy(tmp);
    return rv;
}
