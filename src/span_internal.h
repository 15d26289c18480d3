/* The span struct and the core's private span helpers. Never installed. */
#ifndef BASEPLATE_SPAN_INTERNAL_H
#define BASEPLATE_SPAN_INTERNAL_H

#include "baseplate/span.h"
#include <stddef.h>
#include <stdint.h>

struct bp_span_s {
  int refs;
  int kind;
  int state; /* 0 created, 1 started, 2 finished */
  bp_trace_info_t ti;
  bp_baseplate_t *bp;
  bp_span_t *root; /* NULL for a server span; a reference otherwise */
  uint64_t start_ns, end_ns, start_us;
  size_t name, component, edge, tracestate; /* arena offsets; (size_t)-1 for none */
  size_t mfamily, mlabels, mcounter; /* bp_span_set_metric_family: the same */
  int msuccess;                      /* its success (-1: the span's outcome) */
  size_t edge_len;
  struct {
    const bp_span_observer_t *vt;
    void *ud;
  } *obs;
  int nobs, cap_obs;
  struct {
    const char *skey;   /* a static key (the core's own tags), else NULL */
    const char *svalue; /* a static value (bp__span_tag_const), else NULL */
    size_t key, value;
    int type;
  } *tags;
  int ntags, cap_tags;
  struct {
    size_t key;
    double total;
  } *ctrs;
  int nctrs, cap_ctrs;
  char *arena; /* the span's strings */
  size_t alen, acap;
  char idstr[24];
  bp_metrics_batch_t *batch; /* server spans: the metrics observer's batch */
  void (*batch_release)(void *ud, bp_metrics_batch_t *b);
  void *batch_ud;
  /* the core's tags, added when first needed (bp__span_defer_tags) */
  void (*tagger)(bp_span_t *s, void *ud);
  void *tagger_ud;
  bp_span_t *next_free;
  int proto; /* a server span's protocol: BP__SPAN_PROTO_* (0: made by Lua) */
  /* what the protocol said of the message, for metrics labels
   * (bp__server_span_labels): a static method name, the answer's status,
   * the route's pattern (the app's, which outlives its requests' spans) */
  const char *proto_method, *proto_endpoint;
  int proto_status;
};

#define BP__SPAN_PROTO_HTTP 1
#define BP__SPAN_PROTO_THRIFT 2

/* observer.c: run the Baseplate's observers for a new server span. */
void bp__baseplate_server_span_created(bp_baseplate_t *bp, bp_span_t *span);
/* Spans hold their Baseplate: bp__baseplate_ref, and bp_baseplate_free to let go. */
void bp__baseplate_ref(bp_baseplate_t *bp);

double bp__random_unit(void);
size_t bp__u64_to_dec(uint64_t v, char *buf);
uint64_t bp__span_start_us(const bp_span_t *s);
int bp__span_tag_count(const bp_span_t *s);
const char *bp__span_tag_at(const bp_span_t *s, int i, const char **value, int *type);
int bp__span_counter_count(const bp_span_t *s);
const char *bp__span_counter_at(const bp_span_t *s, int i, double *total);
void bp__span_attach_batch(bp_span_t *s, bp_metrics_batch_t *b,
                           void (*release)(void *, bp_metrics_batch_t *), void *ud);
/* Free the recycled spans (end of process, tests under LeakSanitizer). */
void bp__span_pool_drain(void);

/* The core's own tags (http.method…): `key` is a string literal not yet set
 * on the span; `value` has `len` bytes. No copy of the key, no search. */
int bp__span_tag_static(bp_span_t *s, const char *key, const char *value, size_t len, int type);
/* The same with a value that lives as long as the process (not copied). */
int bp__span_tag_const(bp_span_t *s, const char *key, const char *value, int type);

/* The core's tags of a span, added only if someone looks: `tagger(s, ud)`
 * adds them (with bp__span_tag_static/const) the first time a tag is read
 * or set, or now if an observer watches tags being set. Whoever defers
 * must settle before `ud` goes away while the span may still be read. */
void bp__span_defer_tags(bp_span_t *s, void (*tagger)(bp_span_t *s, void *ud), void *ud);
/* Add the deferred tags now (nothing when there are none). */
void bp__span_settle_tags(bp_span_t *s);

#endif
