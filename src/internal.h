/* Private declarations shared by the core's files. Never installed. */
#ifndef BASEPLATE_INTERNAL_H
#define BASEPLATE_INTERNAL_H

#include "baseplate/common.h"
#include <stddef.h>

#define BP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Read a whole file into a malloc'd, NUL-terminated buffer. BP_OK, -errno
 * (-EISDIR for a directory), BP_ENOMEM, or BP_ETOOBIG when larger than max. */
int bp__read_file(const char *path, char **out, size_t *len, size_t max);

/* `p` (n bytes) double-quoted and escaped (\" \\ \xNN), cut after `max` input
 * bytes with "...", into buf of cap bytes (max * 4 + 8 is enough). */
const char *bp__quote(const char *p, size_t n, size_t max, char *buf, size_t cap);

/* Writing to a peer that has gone must fail with EPIPE, never kill the
 * process: SIGPIPE is ignored (unless the application installed a handler
 * of its own). Idempotent; every part that writes to sockets calls it. */
void bp__ignore_sigpipe(void);

/* Forget per-logger levels (tests, and the end of a process). */
void bp__log_reset(void);

/* Prometheus (src/prometheus.c): whether this process records, and an HTTP
 * request no route matched, counted as Baseplate.py counts it
 * (http_endpoint "404"). */
int bp__prom_on(void);
void bp__prom_record_unrouted(const char *method, int status, uint64_t ns);

#endif
