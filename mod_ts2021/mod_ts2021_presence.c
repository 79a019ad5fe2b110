/* mod_ts2021_presence.c: how many map streams each node holds in this server (all children),
 * in shared memory, so that a node goes offline only when its last stream anywhere is gone. */
#include "mod_ts2021.h"
#include "mod_ts2021_presence.h"

#include <http_log.h>
#include <apr_atomic.h>
#include <apr_shm.h>

APLOG_USE_MODULE(ts2021);

/* Open addressing over (tailnet, node id); a slot once used keeps its key. */
#define PRESENCE_SLOTS 65536

typedef struct presence_slot {
    volatile apr_uint64_t key;     /* tailnet << 48 | node id; 0 = free */
    volatile apr_uint32_t streams; /* live map streams in this server */
    volatile apr_uint32_t online;  /* 1 once "online" was published, until "offline" is */
    volatile apr_uint64_t last_end;/* when the count last fell to 0 (apr_time_t) */
} presence_slot;

static presence_slot *slots;

int ts_presence_post_config(server_rec *s)
{
    const char *key = "mod_ts2021_presence_shm";
    apr_shm_t **seg = ap_retained_data_get(key);
    apr_size_t size = PRESENCE_SLOTS * sizeof(presence_slot);

    if (!seg) {
        seg = ap_retained_data_create(key, sizeof(*seg));
        if (apr_shm_create(seg, size, NULL, s->process->pool) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, APLOGNO(11010)
                         "TS2021: cannot create the shared presence table");
            *seg = NULL;
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        memset(apr_shm_baseaddr_get(*seg), 0, size);
    }
    slots = *seg ? apr_shm_baseaddr_get(*seg) : NULL;
    return slots ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static apr_uint64_t presence_key(int tailnet, apr_int64_t node_id)
{
    return ((apr_uint64_t)(tailnet + 1) << 48) | ((apr_uint64_t)node_id & 0xffffffffffffULL);
}

/* The node's slot, claimed if need be; NULL when the table is full. */
static presence_slot *presence_slot_of(int tailnet, apr_int64_t node_id, int claim)
{
    apr_uint64_t key = presence_key(tailnet, node_id);
    apr_uint64_t i, h = (key * 0x9E3779B97F4A7C15ULL) >> 48;

    if (!slots) return NULL;
    for (i = 0; i < PRESENCE_SLOTS; i++) {
        presence_slot *sl = &slots[(h + i) % PRESENCE_SLOTS];
        apr_uint64_t k = apr_atomic_read64(&sl->key);
        if (k == key) return sl;
        if (k == 0) {
            if (!claim) return NULL;
            if (apr_atomic_cas64(&sl->key, key, 0) == 0 || apr_atomic_read64(&sl->key) == key) {
                return sl;
            }
        }
    }
    return NULL;
}

int ts_presence_stream_up(int tailnet, apr_int64_t node_id)
{
    presence_slot *sl = presence_slot_of(tailnet, node_id, 1);

    if (!sl) return 0;
    apr_atomic_inc32(&sl->streams);
    /* Whoever flips online 0 -> 1 publishes it; a quick reconnect finds it still 1. */
    return apr_atomic_cas32(&sl->online, 1, 0) == 0;
}

void ts_presence_stream_down(int tailnet, apr_int64_t node_id, apr_time_t now)
{
    presence_slot *sl = presence_slot_of(tailnet, node_id, 0);

    if (!sl) return;
    if (apr_atomic_dec32(&sl->streams) == 0) sl->last_end = (apr_uint64_t)now;
}

int ts_presence_should_go_offline(int tailnet, apr_int64_t node_id, apr_time_t now,
                                  apr_interval_time_t grace)
{
    presence_slot *sl = presence_slot_of(tailnet, node_id, 0);

    if (!sl || apr_atomic_read32(&sl->streams) != 0) return 0;
    if (now - (apr_time_t)sl->last_end < grace) return 0;
    /* Exactly one caller publishes "offline". */
    return apr_atomic_cas32(&sl->online, 0, 1) == 1;
}

void ts_presence_sweep(int tailnet, apr_time_t now, apr_interval_time_t grace,
                       void (*fn)(void *baton, apr_int64_t node_id), void *baton)
{
    apr_uint64_t tag = (apr_uint64_t)(tailnet + 1) << 48;
    int i;

    if (!slots) return;
    for (i = 0; i < PRESENCE_SLOTS; i++) {
        presence_slot *sl = &slots[i];
        apr_uint64_t key = apr_atomic_read64(&sl->key);
        if ((key & ~0xffffffffffffULL) != tag || apr_atomic_read32(&sl->online) != 1
            || apr_atomic_read32(&sl->streams) != 0 || now - (apr_time_t)sl->last_end < grace) {
            continue;
        }
        if (apr_atomic_cas32(&sl->online, 0, 1) == 1) {
            fn(baton, (apr_int64_t)(key & 0xffffffffffffULL));
        }
    }
}

apr_uint32_t ts_presence_streams(int tailnet, apr_int64_t node_id)
{
    presence_slot *sl = presence_slot_of(tailnet, node_id, 0);

    return sl ? apr_atomic_read32(&sl->streams) : 0;
}

int ts_presence_online(int tailnet, apr_int64_t node_id)
{
    presence_slot *sl = presence_slot_of(tailnet, node_id, 0);

    return sl && apr_atomic_read32(&sl->online) == 1;
}

void ts_presence_totals(apr_uint64_t *nodes, apr_uint64_t *streams)
{
    int i;

    *nodes = *streams = 0;
    for (i = 0; slots && i < PRESENCE_SLOTS; i++) {
        apr_uint32_t n;
        if (!apr_atomic_read64(&slots[i].key)) continue;
        n = apr_atomic_read32(&slots[i].streams);
        if (n && n < 0x80000000u) {
            (*nodes)++;
            *streams += n;
        }
    }
}
