/*
 * StatsD metrics: the transport and per-request batches (docs/metrics.md).
 *
 * A bp_metrics_t is one destination: a UDP endpoint, or none (lines are
 * dropped, or logged at DEBUG as "Would send metric b'…'" when
 * log_if_unconfigured is set). A bp_metrics_batch_t collects the lines of
 * one unit of work (a request's server span); bp_metrics_batch_flush()
 * hands them to the transport at once. The transport packs the lines of many
 * batches into datagrams of about datagram_size bytes, sent when full or
 * flush_interval after the first line waiting, whichever comes first, and
 * always on bp_metrics_flush() and when the loop shuts down.
 *
 * Line format: name[,tag=value...]:value|type[|@rate] with values printed
 * as %g, the rate suffix only when rate < 1. Counters of a batch with the
 * same name, tags and rate are summed and written after the other lines.
 */
#ifndef BASEPLATE_METRICS_H
#define BASEPLATE_METRICS_H

#include "common.h"
#include <stddef.h>

typedef struct bp_metrics_s bp_metrics_t;
typedef struct bp_metrics_batch_s bp_metrics_batch_t;

/* One tag. Boolean-looking values are the caller's business ("True"). */
typedef struct {
  const char *key;
  const char *value;
} bp_metric_tag_t;

typedef struct {
  const char *endpoint;       /* "host:port" ([v6]:port too); NULL or "" for none */
  int log_if_unconfigured;    /* no endpoint: log each line at DEBUG */
  int swallow_network_errors; /* send errors logged at DEBUG instead of ERROR */
  size_t datagram_size;       /* packing target, bytes (default 1400) */
  double flush_interval;      /* seconds a line may wait (default 0.005) */
} bp_metrics_options_t;

/* The largest batch that fits one UDP datagram. */
#define BP_METRICS_MAX_BATCH 65507

BP_EXTERN void bp_metrics_options_init(bp_metrics_options_t *o);

/** A transport; NULL with a message in err (bad endpoint, socket error). */
BP_EXTERN bp_metrics_t *bp_metrics_new(const bp_metrics_options_t *o, char *err, size_t errlen);

/** Flush and free. */
BP_EXTERN void bp_metrics_free(bp_metrics_t *m);

/** Send whatever waits, now. */
BP_EXTERN void bp_metrics_flush(bp_metrics_t *m);

/** Whether the transport has an endpoint. */
BP_EXTERN int bp_metrics_configured(const bp_metrics_t *m);

/** Datagrams and lines sent so far (for tests and runtime figures). */
BP_EXTERN void bp_metrics_stats(const bp_metrics_t *m, unsigned long long *datagrams,
                                unsigned long long *lines);

/**
 * A batch whose names are prefixed with `namespace` (may be NULL or "").
 * Names are joined with "." after stripping dots at their ends.
 */
BP_EXTERN bp_metrics_batch_t *bp_metrics_batch_new(bp_metrics_t *m, const char *namespace_);

/** Free without sending. */
BP_EXTERN void bp_metrics_batch_free(bp_metrics_batch_t *b);

/* Each returns BP_OK, BP_ENOMEM, or BP_EINVAL (a negative gauge, a rate
 * outside (0, 1], a name or tag with ':', '|', ',', '=' or a newline where
 * StatsD cannot carry it). rate < 1 only adds the "|@rate" suffix: whether
 * to record at all is the caller's decision. */
BP_EXTERN int bp_metrics_counter(bp_metrics_batch_t *b, const char *name,
                                 const bp_metric_tag_t *tags, size_t ntags, double delta,
                                 double rate);
BP_EXTERN int bp_metrics_timer(bp_metrics_batch_t *b, const char *name,
                               const bp_metric_tag_t *tags, size_t ntags, double ms, double rate);
BP_EXTERN int bp_metrics_gauge(bp_metrics_batch_t *b, const char *name,
                               const bp_metric_tag_t *tags, size_t ntags, double value);
BP_EXTERN int bp_metrics_histogram(bp_metrics_batch_t *b, const char *name,
                                   const bp_metric_tag_t *tags, size_t ntags, double value);

/**
 * Hand the batch's lines to the transport and empty it (it can be reused).
 * A batch larger than BP_METRICS_MAX_BATCH is not sent: the warning
 * "Metrics batch of N bytes is too large to send" names its top 10 counters
 * ("name=total, …"), and BP_ETOOBIG is returned.
 */
BP_EXTERN int bp_metrics_batch_flush(bp_metrics_batch_t *b);

/** Bytes the batch would send now (lines joined by "\n"). */
BP_EXTERN size_t bp_metrics_batch_size(const bp_metrics_batch_t *b);

#endif
