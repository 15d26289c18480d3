/*
 * Spans and observers (docs/observers.md).
 *
 * A server span is the time spent on one request this process serves; a
 * child span is an outbound call (client span) or a piece of local work
 * (local span). Observers watch spans: a bp_observer_t registered on the
 * bp_baseplate_t sees every new server span and registers bp_span_observer_t
 * entries on it, which see its events (start, tags, logs, finish, children).
 * The built-in observers (metrics, logging) are C observers: no Lua runs on
 * their path. Lua observers are dispatched by the Lua span API
 * (baseplate.span), after the C observers, each under its own pcall.
 *
 * Spans are reference counted: whoever creates one holds a reference, and
 * bp_span_ref/bp_span_unref add and drop more; a child holds its root.
 */
#ifndef BASEPLATE_SPAN_H
#define BASEPLATE_SPAN_H

#include "common.h"
#include "ini.h"
#include "metrics.h"
#include <stdint.h>

typedef struct bp_span_s bp_span_t;
typedef struct bp_baseplate_s bp_baseplate_t;

#define BP_SPAN_SERVER 0
#define BP_SPAN_CLIENT 1
#define BP_SPAN_LOCAL 2

#define BP_TAG_STRING 0
#define BP_TAG_NUMBER 1
#define BP_TAG_BOOL 2

/* Trace context (formats.md): IDs are unsigned 64-bit, 0 = absent. */
typedef struct {
  uint64_t trace_id;
  uint64_t parent_id; /* 0: a root span */
  uint64_t span_id;
  int sampled;        /* -1 undecided, 0 no, 1 yes */
  uint64_t flags;
  /* The high 64 bits of a 128-bit W3C trace ID this trace arrived with
   * (0 for Baseplate's own 64-bit IDs): not part of Baseplate's trace ID,
   * carried along so that `traceparent` goes on unchanged. */
  uint64_t trace_id_high;
} bp_trace_info_t;

/** A new root: random trace ID, span ID = trace ID, no parent, undecided. */
BP_EXTERN void bp_trace_info_new(bp_trace_info_t *ti);

/**
 * From upstream strings (any may be NULL). trace_id and span_id are
 * required decimal u64s, parent_id optional; sampled "1" means sampled and
 * anything else not, NULL undecided; flags a decimal integer. BP_EINVAL with
 * the reason in err ("invalid sampled value", "invalid flags value",
 * "invalid trace_id value"…) when a value is inappropriate.
 */
BP_EXTERN int bp_trace_info_from_upstream(bp_trace_info_t *ti, const char *trace_id,
                                          const char *parent_id, const char *span_id,
                                          const char *sampled, const char *flags, char *err,
                                          size_t errlen);

/**
 * From a W3C `traceparent` value (formats.md): the upstream's span becomes
 * the parent, this span gets a new ID, `sampled` is flags & 1. The trace
 * ID's low 64 bits are Baseplate's trace ID and its high 64 bits go to
 * `trace_id_high`, so the `traceparent` this trace sends on carries the
 * same 128-bit ID. BP_EINVAL for a malformed value (uppercase hex, version
 * ff, all-zero IDs, zero low bits…).
 */
BP_EXTERN int bp_trace_info_from_traceparent(bp_trace_info_t *ti, const char *value, size_t len);
/** The `traceparent` of a call made as span ti ("00-" 32 hex "-" 16 hex
 * "-0x"): 55 characters and a NUL in out (56 bytes). */
BP_EXTERN size_t bp_trace_info_to_traceparent(const bp_trace_info_t *ti, char *out);

/** A random 64-bit ID, never 0. */
BP_EXTERN uint64_t bp_random_id(void);

/* Events a span observer receives. Any member may be NULL. `error` is NULL
 * for a normal finish, else the error's class name ("Error", "HTTPError"…).
 * `release` is called once when the span is freed (or the registration
 * fails): the place to free per-span state. */
typedef struct {
  void (*on_start)(void *ud, bp_span_t *span);
  void (*on_set_tag)(void *ud, bp_span_t *span, const char *key, const char *value, int type);
  void (*on_incr_tag)(void *ud, bp_span_t *span, const char *key, double delta);
  void (*on_log)(void *ud, bp_span_t *span, const char *name, const char *payload);
  void (*on_finish)(void *ud, bp_span_t *span, const char *error);
  void (*on_child_span_created)(void *ud, bp_span_t *span, bp_span_t *child);
  void (*release)(void *ud);
} bp_span_observer_t;

/* Sees every server span as it is created (before it starts). `release`
 * (may be NULL) is called once when the Baseplate is freed, after its last
 * span: the place to free the observer's state. */
typedef struct {
  void (*on_server_span_created)(void *ud, bp_span_t *span);
  void (*release)(void *ud);
} bp_observer_t;

/* --- the Baseplate object ---------------------------------------------------- */

BP_EXTERN bp_baseplate_t *bp_baseplate_new(const char *service_name);
/** Drop the owner's reference: freed once no span uses it any more. */
BP_EXTERN void bp_baseplate_free(bp_baseplate_t *bp);
BP_EXTERN const char *bp_baseplate_service_name(const bp_baseplate_t *bp);

/** Register an observer; it stays for the object's life. On failure
 * (BP_ENOMEM) its release has been called. */
BP_EXTERN int bp_baseplate_register(bp_baseplate_t *bp, const bp_observer_t *obs, void *ud);

/* --- observer factories ------------------------------------------------------
 * configure_observers (baseplate.Baseplate) installs the observers a
 * service's config asks for from a registry of factories, each keyed by a
 * config prefix: the built-in ones (metrics, tracing, sentry,
 * server_timeout) and those C extension modules add here (from their app
 * factory, their luaopen_ function, or any function called before
 * configure_observers). A factory whose prefix no key of the app config
 * starts with is not called (it is listed as unconfigured). */
typedef struct {
  const char *name;   /* "myobs": in logs and errors; unique */
  const char *prefix; /* "myobs.": the keys that configure it */
  /* Install the observer on bp (bp_baseplate_register) from `config` (the
   * whole app config): BP_OK, BP_DECLINED when the keys leave it off, or an
   * error status with a reason naming the key in err. */
  int (*create)(void *ud, bp_baseplate_t *bp, const bp_section_t *config, char *err,
                size_t errlen);
  void *ud;
} bp_observer_factory_t;

/** Add a factory (the struct is copied; its strings must stay valid).
 * BP_EINVAL for a missing name, prefix or create, or a name already taken. */
BP_EXTERN int bp_observer_factory_register(const bp_observer_factory_t *f);
BP_EXTERN int bp_observer_factory_count(void);
/** The i-th factory in registration order, or NULL. */
BP_EXTERN const bp_observer_factory_t *bp_observer_factory_at(int i);

/* The metrics observers (docs/observers.md). namespace_ non-empty: the
 * untagged observer; tagging: the tagged one (not both). allowlist: tag
 * keys passed on by the tagged observer (comma separated, may be NULL).
 * sample_rate in (0, 1]. The transport is borrowed: it must outlive bp. */
typedef struct {
  const char *namespace_;
  int tagging;
  const char *allowlist;
  double sample_rate;
} bp_metrics_observer_options_t;

BP_EXTERN int bp_baseplate_add_metrics_observer(bp_baseplate_t *bp, bp_metrics_t *transport,
                                                const bp_metrics_observer_options_t *o,
                                                char *err, size_t errlen);

/** The transport set by the metrics observer, or NULL. */
BP_EXTERN bp_metrics_t *bp_baseplate_metrics(const bp_baseplate_t *bp);

/* The tracing observer (docs/observers.md#the-tracing-observer): samples
 * traces and writes the spans of sampled ones as Zipkin v1 JSON to the
 * POSIX queue /traces-{queue_name} (queue_name set), else to an in-memory
 * queue when `collect` (taken with bp_tracing_take: the tracing.endpoint
 * flusher), else to the DEBUG log. Released with bp. */
typedef struct bp_tracer_s bp_tracer_t;
typedef struct {
  const char *service_name; /* required */
  double sample_rate;       /* [0, 1] */
  const char *queue_name;   /* or NULL */
  int collect;              /* keep spans in memory for bp_tracing_take */
  int max_span_queue_size;  /* the in-memory queue's spans (collect) */
  double batch_interval;    /* seconds between wake-ups of bp_tracing_wait */
  int format;               /* collect: BP_TRACING_ZIPKIN, or BP_TRACING_OTLP (OTLP JSON spans) */
} bp_tracing_options_t;
#define BP_TRACING_ZIPKIN 0
#define BP_TRACING_OTLP 1

/** The tracer, or NULL with the reason (naming the key) in err. */
BP_EXTERN bp_tracer_t *bp_baseplate_add_tracing_observer(bp_baseplate_t *bp,
                                                         const bp_tracing_options_t *o,
                                                         char *err, size_t errlen);
/** Park `waiter` until spans wait in the in-memory queue (checked every
 * batch interval): BP_AGAIN, or BP_ECLOSED when the loop has shut down. */
BP_EXTERN int bp_tracing_wait(bp_tracer_t *t, int waiter);
/** The oldest queued spans as a JSON array of at most max_bytes (at least
 * one span), taken off the queue; valid until the next take. */
BP_EXTERN const char *bp_tracing_take(bp_tracer_t *t, size_t max_bytes, int *nspans, size_t *len);
BP_EXTERN int bp_tracing_pending(const bp_tracer_t *t);
/** Spans dropped: a full queue, out of memory, or too large. */
BP_EXTERN uint64_t bp_tracing_dropped(const bp_tracer_t *t);

/* --- Lua observers -------------------------------------------------------------
 * Lua observers listen behind one C observer (src/observer_lua.c) that queues
 * the span events of a Baseplate's spans; baseplate.span takes the queue and
 * calls them. Used by the Lua runtime; C code registers C observers. */

#define BP_OBSERVE_CREATED 1  /* a server span was made */
#define BP_OBSERVE_START 2
#define BP_OBSERVE_SET_TAG 3  /* a: key, b: value, tag_type */
#define BP_OBSERVE_INCR_TAG 4 /* a: key, delta */
#define BP_OBSERVE_LOG 5      /* a: name, b: payload (may be NULL) */
#define BP_OBSERVE_FINISH 6   /* a: the error class, NULL for success */
#define BP_OBSERVE_CHILD 7    /* child: the new child span */
#define BP_OBSERVE_RELEASED 8 /* the span at addr was freed (span is NULL) */

typedef struct {
  int type;
  int tag_type;
  bp_span_t *span;  /* held until the next take */
  bp_span_t *child; /* BP_OBSERVE_CHILD, held until the next take */
  uintptr_t addr;   /* the span's address */
  const char *a;    /* valid until the next take */
  const char *b;
  double delta;
} bp_observer_event_t;

/** Forward the span events of bp's spans to the Lua observers. */
BP_EXTERN int bp_baseplate_forward_to_lua(bp_baseplate_t *bp);
/** Forward one span's events (and its children's): BP_DECLINED if they
 * already are. */
BP_EXTERN int bp_span_forward_to_lua(bp_span_t *span);
/** The number of events queued (a pointer, read without a call). */
BP_EXTERN const int *bp_observer_events_pending(void);
/** The queued events, oldest first (*n of them; NULL if none); the previous
 * batch's references and strings are let go. */
BP_EXTERN const bp_observer_event_t *bp_observer_events_take(int *n);

/* --- spans ------------------------------------------------------------------ */

/**
 * A server span for `name` (a route or method) with the given trace context
 * (NULL: a new trace). Observers' on_server_span_created run now.
 */
BP_EXTERN bp_span_t *bp_span_new_server(bp_baseplate_t *bp, const char *name,
                                        const bp_trace_info_t *ti);

/** BP_EINVAL ("Cannot make child span of parent that already finished"). */
BP_EXTERN bp_span_t *bp_span_make_child(bp_span_t *parent, const char *name, int local,
                                        const char *component_name, int *status);

BP_EXTERN bp_span_t *bp_span_ref(bp_span_t *span);
BP_EXTERN void bp_span_unref(bp_span_t *span);

BP_EXTERN int bp_span_register(bp_span_t *span, const bp_span_observer_t *vt, void *ud);
BP_EXTERN int bp_span_start(bp_span_t *span);
BP_EXTERN int bp_span_set_tag(bp_span_t *span, const char *key, const char *value, int type);
BP_EXTERN int bp_span_incr_tag(bp_span_t *span, const char *key, double delta);
BP_EXTERN int bp_span_log(bp_span_t *span, const char *name, const char *payload);
/** Finish (error NULL: success). A second finish is ignored (BP_DECLINED). */
BP_EXTERN int bp_span_finish(bp_span_t *span, const char *error);

/* Accessors. */
BP_EXTERN const bp_trace_info_t *bp_span_trace(const bp_span_t *span);
BP_EXTERN const char *bp_span_name(const bp_span_t *span);
BP_EXTERN const char *bp_span_component(const bp_span_t *span);
BP_EXTERN int bp_span_kind(const bp_span_t *span);
/**
 * Prometheus (docs/prometheus.md): count this client span in `family`
 * (Baseplate.py's per-library names, "redis_client", "http_client", ...:
 * `FAMILY_latency_seconds`, `FAMILY_requests_total`) with `labels`, written
 * as the text format writes them (`a="x",b="y"`, values escaped), and
 * `counter_labels` on the requests counter only (NULL: none); `success` 1
 * or 0 says what the family's success label is (an HTTP client's: a 2xx or
 * 3xx answer), -1 that it is the span's outcome (no error). Called again,
 * the last call counts. BP_EINVAL: not a client span, or a name or labels
 * the text format would not take.
 */
BP_EXTERN int bp_span_set_metric_family(bp_span_t *span, const char *family, const char *labels,
                                        const char *counter_labels, int success);
/** The span's family (NULL: none), its labels ("" when none) and success. */
BP_EXTERN const char *bp_span_metric_family(const bp_span_t *span, const char **labels,
                                            const char **counter_labels, int *success);
/** 0 created, 1 started, 2 finished. */
BP_EXTERN int bp_span_state(const bp_span_t *span);
/** The decimal trace ID (valid while the span lives). */
BP_EXTERN const char *bp_span_trace_id_string(bp_span_t *span);
/** Seconds from start to finish (or to now while running). */
BP_EXTERN double bp_span_duration(const bp_span_t *span);
/** The span's tag `key` (NULL if unset) and its BP_TAG_* type. */
BP_EXTERN const char *bp_span_get_tag(const bp_span_t *span, const char *key, int *type);
/** The server span at the root of this one's tree. */
BP_EXTERN bp_span_t *bp_span_root(bp_span_t *span);
/** The root's metrics batch (made by the metrics observer), or NULL. */
BP_EXTERN bp_metrics_batch_t *bp_span_metrics(bp_span_t *span);
BP_EXTERN bp_baseplate_t *bp_span_baseplate(const bp_span_t *span);
/** The edge-request bytes carried along: set on the server span (the raw
 * bytes: an HTTP X-Edge-Request's base64 decoded); a client or local span
 * answers its root's (may be NULL). */
BP_EXTERN int bp_span_set_edge_request(bp_span_t *span, const char *data, size_t len);
BP_EXTERN const char *bp_span_edge_request(const bp_span_t *span, size_t *len);
/** The W3C `tracestate` the request came with, to send on with the trace
 * (server spans; a client or local span answers its root's; may be NULL).
 * BP_EINVAL for a value that is not one (over 512 characters, characters
 * outside printable ASCII). */
BP_EXTERN int bp_span_set_tracestate(bp_span_t *span, const char *value, size_t len);
BP_EXTERN const char *bp_span_tracestate(const bp_span_t *span);

/**
 * The span whose code runs now (its trace ID goes on log lines), or NULL.
 * The runtime sets it when a request's coroutine resumes.
 */
BP_EXTERN void bp_span_enter(bp_span_t *span);
BP_EXTERN bp_span_t *bp_span_current(void);

#endif
