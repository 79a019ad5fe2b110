/* mod_ts2021_dbd.h: how glue code gets a store on top of mod_dbd.
 * Requests: ts_dbd_acquire. Threads: ts_dbd_open ... ts_dbd_close per unit of work. */
#ifndef MOD_TS2021_DBD_H
#define MOD_TS2021_DBD_H

#include <httpd.h>
#include <apr_dbd.h>
#include <mod_dbd.h>

#include "ts_store.h"

/* A store on the request's pooled handle (released with the request). NULL on error
 * (logged). The schema is checked once per child. */
ts_store_t *ts_dbd_acquire(request_rec *r);

/* For module threads: never hold the handle across a wait. NULL on error (logged). */
ts_store_t *ts_dbd_open(apr_pool_t *p, server_rec *s, ap_dbd_t **rec);
void ts_dbd_close(server_rec *s, ap_dbd_t *rec);

#endif
