/*
 * Prometheus exposition of the server's figures (docs/prometheus.md).
 *
 * A region of shared memory holds one slot per worker process (slot 1..N)
 * and the retired totals (slot 0). Each worker writes only its own slot,
 * with plain atomic stores (no lock, no allocation on the request path);
 * the process that serves the scrape sums every slot at scrape time. With
 * --workers the supervisor creates the region (a memfd) before it starts
 * the workers, which map it from the descriptor they inherit; when a worker
 * dies, the supervisor folds its slot into the retired totals before a new
 * worker takes the slot, so totals never go backwards. A single process
 * uses a region of its own with one slot.
 *
 * Recording: bp_prom_observe() adds a C observer to a Baseplate (on the one
 * observer bus); every server and client span it sees is counted, and its
 * latency goes into a histogram with fixed buckets (Baseplate.py's
 * default_latency_buckets). A slot holds at most max_series label sets;
 * later new label sets are counted in one overflow series per kind.
 */
#ifndef BASEPLATE_PROMETHEUS_H
#define BASEPLATE_PROMETHEUS_H

#include "common.h"
#include "span.h"
#include <stddef.h>
#include <stdint.h>

/** Create the region: `nslots` worker slots (1 for a single process, N for
 * --workers N) of `max_series` label sets each, in a memfd whose
 * descriptor (bp_prom_fd) is inherited across exec. The calling process
 * records into slot 1 until bp_prom_attach says otherwise. BP_EINVAL for
 * sizes out of range (nslots 1..1024, max_series 16..100000), or a system
 * error; `err` says why. */
BP_EXTERN int bp_prom_init(int nslots, int max_series, char *err, size_t errlen);

/** A worker: map the region of descriptor `fd` (inherited from the
 * supervisor) and record into slot `slot` (1..nslots). The slot must have
 * been retired (or never used). */
BP_EXTERN int bp_prom_attach(int fd, int slot, char *err, size_t errlen);

/** The region's descriptor, -1 without a region. */
BP_EXTERN int bp_prom_fd(void);

/** The slot this process records into (0: none). */
BP_EXTERN int bp_prom_slot(void);

/** The name baseplate.thrift's ErrorCode gives `code` ("NOT_FOUND" for 404;
 * "" for a code it does not name), for the thrift_baseplate_status labels. */
BP_EXTERN const char *bp_prom_error_code_name(int code);

/** The number of worker slots (0 without a region). */
BP_EXTERN int bp_prom_nslots(void);

/** Unmap the region and close its descriptor (NULL-safe: no region, nothing). */
BP_EXTERN void bp_prom_close(void);

/** Record the spans of Baseplate `bp` (a C observer on its bus). BP_EINVAL
 * without a region; BP_ENOMEM. */
BP_EXTERN int bp_prom_observe(bp_baseplate_t *bp);

/** Record one finished span by hand (what the observer does): kind
 * BP_SPAN_SERVER or BP_SPAN_CLIENT. For tests and benchmarks. */
BP_EXTERN void bp_prom_record_span(const bp_span_t *span, const char *error);

/** This process's runtime gauges (its own slot). */
BP_EXTERN void bp_prom_set_runtime(double open_connections, double active_requests,
                                   double lua_memory_bytes, double loop_lag_seconds);

/** Pool `i` (0..31) of this process: its name (truncated to 63 bytes),
 * size, connections in use and coroutines waiting. `npools` is then at
 * least i + 1. BP_EINVAL for i out of range. */
BP_EXTERN int bp_prom_set_pool(int i, const char *name, double size, double in_use,
                               double waiters);

/** Pool `i`'s client library, for Baseplate.py's pool gauges
 * (`redis_client_pool_*{redis_pool}`, `sql_client_pool_*{sql_client_name}`,
 * `memcached_client_pool_*{memcached_pool}`, `thrift_client_pool_*{thrift_pool}`):
 * "redis", "sql", "memcached" or "thrift" ("" or another name: the generic
 * `baseplate_client_pool_*`), with its open and idle connections. Set after
 * bp_prom_set_pool (a pool renamed there forgets its library). BP_EINVAL
 * for i out of range. */
BP_EXTERN int bp_prom_set_pool_family(int i, const char *family, double open, double idle);

/** Forget pools from `n` on. */
BP_EXTERN void bp_prom_set_npools(int n);

/** The supervisor, after a worker died: add slot `slot`'s counts to the
 * retired totals and empty it for the next worker. */
BP_EXTERN int bp_prom_retire(int slot);

/** The exposition, text format 0.0.4, of every slot summed. The text lives
 * in a buffer of the region's owner, valid until the next call; NULL when
 * out of memory or without a region. */
BP_EXTERN const char *bp_prom_scrape(size_t *len);

/** Introspection across processes: bump slot `slot`'s request number and
 * return it (the supervisor, before signalling the worker). */
BP_EXTERN uint64_t bp_prom_introspect_request(int slot);

/** Slot `slot`'s answered request number, its text and length. */
BP_EXTERN uint64_t bp_prom_introspect_answer(int slot, const char **text, size_t *len);

/** A worker: publish `text` (truncated to the slot's room, 256 KB) as the
 * answer to the latest request. */
BP_EXTERN int bp_prom_introspect_publish(const char *text, size_t len);

/** A worker: 1 when a request waits for an answer in its slot, else 0. */
BP_EXTERN int bp_prom_introspect_pending(void);

/** The room for an introspection answer, bytes. */
#define BP_PROM_INTROSPECT_MAX (256 * 1024)

#endif
