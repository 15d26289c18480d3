/* The core's private metrics entry points: lines whose key (name and tags)
 * was checked and formatted once, for the observers' per-request lines. */
#ifndef BASEPLATE_METRICS_INTERNAL_H
#define BASEPLATE_METRICS_INTERNAL_H

#include "baseplate/metrics.h"
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char key[256];   /* "name,k=v,…" without the namespace */
  size_t key_len;
  size_t name_len; /* the name part of key */
  /* the counter hash for one namespace and rate, computed on first use */
  int hashed;
  uint32_t hash;
  double hash_rate;
  size_t hash_ns_len;
  char hash_ns[64];
  /* where this counter was summed last (bp__metrics_span_done): the
   * transport, its window's generation, the counter's index there */
  const void *win;
  unsigned long win_gen;
  size_t win_idx;
} bp__metric_key_t;

/* Check and format a key once: BP_EINVAL as bp_metrics_* would refuse it,
 * BP_ETOOBIG when it does not fit. */
int bp__metric_key_prepare(bp__metric_key_t *k, const char *name, const bp_metric_tag_t *tags,
                           size_t ntags);
int bp__metrics_timer_prepared(bp_metrics_batch_t *b, const bp__metric_key_t *k, double ms,
                               double rate);
int bp__metrics_counter_prepared(bp_metrics_batch_t *b, bp__metric_key_t *k, double delta,
                                 double rate);

/* A finished server span's timer line and its counter (+1), then flush the
 * batch: the observers' common case. When the batch holds nothing else, the
 * line goes straight into the transport's datagram and the counter into its
 * window (the same bytes as through the batch, without the copies). */
/* `v` as printf's "%g" (a '.' whatever the locale); dst has NUM_SIZE (32)
 * bytes. The metrics' own formatter, exposed for its test. */
size_t bp__metrics_fmt_g(char *dst, double v);

int bp__metrics_span_done(bp_metrics_batch_t *b, const bp__metric_key_t *timer, double ms,
                          bp__metric_key_t *counter, double rate);

#endif
