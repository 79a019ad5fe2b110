/* mod_ts2021_status.c: per-child connection counts in shared memory, so mod_status can show
 * how many TS2021 connections each child holds (the loop's are invisible to the scoreboard). */
#include "mod_ts2021.h"
#include "mod_ts2021_status.h"

#include <http_log.h>
#include <http_protocol.h>
#include <ap_mpm.h>
#include <mod_status.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <signal.h>
#include <unistd.h>

APLOG_USE_MODULE(ts2021);

/* Fixed, so the segment survives restarts that change ServerLimit: 64 KiB in all. */
#define STATUS_SLOTS 4096

typedef struct status_slot {
    volatile apr_uint32_t pid;
    volatile apr_uint32_t generation;
    volatile apr_uint32_t count[TS_STATUS_KINDS];
} status_slot;

static status_slot *slots;          /* the shared segment, inherited by children */
static status_slot *my_slot;        /* this child's */

/* One anonymous segment for the life of the parent: children of an older generation keep
 * counting into it through a graceful restart. */
int ts_status_post_config(apr_pool_t *pconf, server_rec *s)
{
    const char *key = "mod_ts2021_status_shm";
    apr_shm_t **shm;
    void *data = ap_retained_data_get(key);

    (void)pconf;
    if (!data) {
        shm = ap_retained_data_create(key, sizeof(*shm));
        if (apr_shm_create(shm, STATUS_SLOTS * sizeof(status_slot), NULL,
                           s->process->pool) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, APLOGNO(10980)
                         "TS2021: no shared memory for connection counts; mod_status will "
                         "not show them");
            *shm = NULL;
            return OK;
        }
        memset(apr_shm_baseaddr_get(*shm), 0, STATUS_SLOTS * sizeof(status_slot));
        data = shm;
    }
    shm = data;
    slots = *shm ? apr_shm_baseaddr_get(*shm) : NULL;
    return OK;
}

static apr_status_t status_release(void *data)
{
    status_slot *slot = data;
    int i;

    for (i = 0; i < TS_STATUS_KINDS; i++) apr_atomic_set32(&slot->count[i], 0);
    apr_atomic_set32(&slot->pid, 0);
    my_slot = NULL;
    return APR_SUCCESS;
}

/* Claims a free slot, or one whose process died without releasing it. */
void ts_status_child_init(apr_pool_t *pchild)
{
    apr_uint32_t me = (apr_uint32_t)getpid();
    int i, k, gen = 0;

    if (!slots) return;
    ap_mpm_query(AP_MPMQ_GENERATION, &gen);
    for (i = 0; i < STATUS_SLOTS; i++) {
        apr_uint32_t pid = apr_atomic_read32(&slots[i].pid);
        if (pid && kill((pid_t)pid, 0) == 0) continue;
        if (apr_atomic_cas32(&slots[i].pid, me, pid) != pid) continue;
        for (k = 0; k < TS_STATUS_KINDS; k++) apr_atomic_set32(&slots[i].count[k], 0);
        apr_atomic_set32(&slots[i].generation, (apr_uint32_t)gen);
        my_slot = &slots[i];
        apr_pool_cleanup_register(pchild, my_slot, status_release, apr_pool_cleanup_null);
        return;
    }
}

void ts_status_add(ts_status_kind kind, int delta)
{
    if (my_slot) apr_atomic_add32(&my_slot->count[kind], (apr_uint32_t)delta);
}

static int status_hook(request_rec *r, int flags)
{
    static const char *const names[TS_STATUS_KINDS] = { "cleartext (event loop)",
                                                        "TLS (worker threads)" };
    apr_uint32_t total[TS_STATUS_KINDS] = { 0, 0 };
    int i, k, short_report = flags & AP_STATUS_SHORT;

    if (!slots) return OK;
    if (!short_report) {
        ap_rputs("<hr />\n<h2>TS2021 connections</h2>\n<table border=\"0\"><tr><th>PID</th>"
                 "<th>generation</th><th>cleartext (event loop)</th><th>TLS (worker threads)"
                 "</th></tr>\n", r);
    }
    for (i = 0; i < STATUS_SLOTS; i++) {
        apr_uint32_t pid = apr_atomic_read32(&slots[i].pid), c[TS_STATUS_KINDS];
        if (!pid) continue;
        for (k = 0; k < TS_STATUS_KINDS; k++) total[k] += c[k] = slots[i].count[k];
        if (!short_report) {
            ap_rprintf(r, "<tr><td>%u</td><td>%u</td><td>%u</td><td>%u</td></tr>\n", pid,
                       slots[i].generation, c[0], c[1]);
        }
    }
    if (short_report) {
        ap_rprintf(r, "TS2021Connections: %u\nTS2021CleartextConnections: %u\n"
                   "TS2021TLSConnections: %u\n", total[0] + total[1], total[0], total[1]);
    }
    else {
        ap_rprintf(r, "</table>\n<p>Total: %u %s, %u %s.</p>\n", total[0], names[0], total[1],
                   names[1]);
    }
    return OK;
}

void ts_status_register_hooks(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

void ts_status_totals(apr_uint64_t *loop, apr_uint64_t *tls, apr_uint64_t *children)
{
    int i;

    *loop = *tls = *children = 0;
    for (i = 0; slots && i < STATUS_SLOTS; i++) {
        if (!apr_atomic_read32(&slots[i].pid)) continue;
        (*children)++;
        *loop += apr_atomic_read32(&slots[i].count[TS_STATUS_LOOP]);
        *tls += apr_atomic_read32(&slots[i].count[TS_STATUS_TLS]);
    }
}
