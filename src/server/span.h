/*
 * A message's server span, whatever the protocol: the trace context read
 * from the message's headers (HTTP's X-Trace…, THeader's Trace…), the span
 * started and, once answered, finished. Protocols use this, not the span's
 * internals. Internal to the library.
 */
#ifndef BP_SERVER_SPAN_H
#define BP_SERVER_SPAN_H

#include "baseplate/span.h"
#include <stddef.h>

/* The names a protocol carries trace context under (formats.md). */
typedef struct {
  const char *trace, *span, *parent, *sampled, *flags, *edge;
  const char *traceparent; /* W3C trace context (HTTP), or NULL */
  const char *tracestate;
  int edge_base64; /* the edge context comes base64-encoded (HTTP) */
} bp__trace_names_t;

extern const bp__trace_names_t bp__http_trace_names;    /* X-Trace, X-Span, … X-Edge-Request */
extern const bp__trace_names_t bp__theader_trace_names; /* Trace, Span, … Edge-Request */

/* A message's headers as the protocol keeps them: the value of `name` (any
 * case) and its length, or NULL. */
typedef const char *(*bp__carrier_get_fn)(void *carrier, const char *name, size_t *len);

/*
 * Make and start the server span of a message named `name` (the route, the
 * method): the child of the upstream span when `trust` and the carrier's
 * trace context is valid, else the root of a new trace (an invalid context
 * is no error to the client). The protocol's own tags are added by
 * `tagger(span, ud)` only when someone reads the span's tags (or at once,
 * if an observer watches tags being set): most messages never pay for
 * them. NULL on ENOMEM.
 */
bp_span_t *bp__server_span_start(bp_baseplate_t *bp, const char *name, int trust,
                                 const bp__trace_names_t *names, bp__carrier_get_fn get,
                                 void *carrier, void (*tagger)(bp_span_t *span, void *ud),
                                 void *ud);

/* Whether the tagger has not run yet (it can then add what the answer says,
 * a status, when it runs). */
int bp__server_span_tags_deferred(const bp_span_t *span);

/*
 * Finish a message's server span with `error` (an error class; NULL for
 * success). If someone keeps the span past the message (a Lua span object,
 * a C module), its deferred tags are added now, while what they point into
 * is alive. Then the span stops being current, and the message's reference
 * is dropped.
 */
void bp__server_span_finish(bp_span_t *span, const char *error);

/*
 * Before the finish: the message's method (a string that lives as long as
 * the process, as http_parser's names), the answer's status and the
 * route's pattern (NULL: none), for the metrics that label by them
 * (src/prometheus.c) without settling the deferred tags.
 */
void bp__server_span_labels(bp_span_t *span, const char *method, int status,
                            const char *endpoint);

#endif
