/*
 * The tracing observer (docs/observers.md#the-tracing-observer): a C
 * observer that decides whether each trace is sampled and turns the spans
 * of sampled ones into Zipkin v1 JSON (formats.md, "Zipkin spans").
 *
 * The request path pays for the decision only: an unsampled server span
 * gets no span observer, so neither do its children. A sampled span is
 * written as JSON when it finishes, straight into its destination:
 *
 * - tracing.queue_name: one message per span on the POSIX queue
 *   /traces-NAME (mq_send on a non-blocking descriptor), which the trace
 *   publisher sidecar drains;
 * - tracing.endpoint: the tracer's in-memory queue (bounded in spans and
 *   bytes), which a Lua flusher (baseplate.baseplate) takes in batches and
 *   POSTs with the HTTP client. The flusher waits on bp_tracing_wait; a loop
 *   timer (unreferenced: it never keeps the process up) wakes it once per
 *   batch interval when spans are waiting. So Lua runs once per batch,
 *   never per span;
 * - neither: each span is logged at DEBUG (logger baseplate.tracing).
 *
 * A full queue drops the span and counts it; the count is logged as one
 * warning per batch interval. Nothing ever waits for a destination.
 */
#include "span_internal.h"
#include "baseplate/mqueue.h"
#include "internal.h"
#include "runtime.h"
#include "baseplate/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <mqueue.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOGGER "baseplate.tracing"
#define MQ_MAX_MESSAGES 10000
#define MQ_MAX_MESSAGE_SIZE 102400
#define MEMORY_LIMIT ((size_t)64 << 20) /* the in-memory queue's bytes */

typedef struct {
  char *p;
  size_t len, cap;
  int failed; /* out of memory: the span is dropped */
} jbuf_t;

typedef struct flush_timer_s flush_timer_t;

struct bp_tracer_s {
  char *service_name;
  char endpoint_json[320]; /* {"serviceName":…,"ipv4":…} */
  double sample_rate;
  int collect; /* keep spans for bp_tracing_take */
  int otlp;    /* ... as OTLP JSON spans, not Zipkin's */
  mqd_t mq;    /* (mqd_t)-1: none */
  size_t max_message; /* the largest span sent */
  char mq_name[300];
  jbuf_t scratch; /* the span being written */
  /* the in-memory queue: spans back to back, span i ending at ends[i];
   * spans first.. wait (those before were taken), from byte head on */
  jbuf_t queue;
  size_t *ends, head;
  int first, nspans, cap_spans, max_spans;
  jbuf_t out; /* the batch last taken */
  uint64_t dropped_full, dropped_big, sent, dropped_logged;
  int waiter; /* the flusher parked in bp_tracing_wait, or 0 */
  flush_timer_t *timer;
};

struct flush_timer_s {
  bp__closable_t closable;
  uv_timer_t timer;
  bp_tracer_t *tracer; /* NULL once the tracer is gone */
};

/* --- JSON ------------------------------------------------------------------------ */

static void jb_reserve(jbuf_t *b, size_t n) {
  size_t cap;
  char *p;
  if (b->failed || b->len + n <= b->cap) return;
  cap = b->cap ? b->cap : 1024;
  while (cap < b->len + n) cap *= 2;
  if (!(p = realloc(b->p, cap))) {
    b->failed = 1;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void jb_put(jbuf_t *b, const char *s, size_t n) {
  jb_reserve(b, n);
  if (b->failed) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

#define JB_LIT(b, lit) jb_put((b), lit, sizeof lit - 1)

static void jb_u64(jbuf_t *b, uint64_t v) {
  char d[24];
  jb_put(b, d, bp__u64_to_dec(v, d));
}

/* The length of the valid UTF-8 sequence at s (n bytes left), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t len, i;
  uint32_t cp;
  if (s[0] < 0xc2) return 0;
  if (s[0] < 0xe0) len = 2, cp = s[0] & 0x1f;
  else if (s[0] < 0xf0) len = 3, cp = s[0] & 0x0f;
  else if (s[0] < 0xf5) len = 4, cp = s[0] & 0x07;
  else return 0;
  if (len > n) return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void jb_str(jbuf_t *b, const char *str) {
  const unsigned char *s = (const unsigned char *)(str ? str : "");
  size_t n = strlen((const char *)s), i = 0, run;
  static const char hex[] = "0123456789abcdef";
  jb_put(b, "\"", 1);
  while (i < n) {
    unsigned char c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      run = i;
      while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
      jb_put(b, (const char *)s + i, run - i);
      i = run;
    } else if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      jb_put(b, e, 2);
      i++;
    } else if (c < 0x20) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      jb_put(b, e, 6);
      i++;
    } else if ((run = utf8_len(s + i, n - i)) > 0) {
      jb_put(b, (const char *)s + i, run);
      i += run;
    } else {
      JB_LIT(b, "\\ufffd");
      i++;
    }
  }
  jb_put(b, "\"", 1);
}

static void binary_annotation(bp_tracer_t *t, jbuf_t *b, int *first, const char *key,
                              const char *value) {
  if (!*first) jb_put(b, ",", 1);
  *first = 0;
  JB_LIT(b, "{\"key\":");
  jb_str(b, key);
  JB_LIT(b, ",\"value\":");
  jb_str(b, value);
  JB_LIT(b, ",\"endpoint\":");
  jb_put(b, t->endpoint_json, strlen(t->endpoint_json));
  jb_put(b, "}", 1);
}

static void annotation(bp_tracer_t *t, jbuf_t *b, uint64_t ts, const char *value) {
  JB_LIT(b, "{\"endpoint\":");
  jb_put(b, t->endpoint_json, strlen(t->endpoint_json));
  JB_LIT(b, ",\"timestamp\":");
  jb_u64(b, ts);
  JB_LIT(b, ",\"value\":\"");
  jb_put(b, value, 2);
  JB_LIT(b, "\"}");
}

static void number_text(double v, char *buf, size_t size) {
  if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, size, "%.0f", v);
  else snprintf(buf, size, "%.17g", v);
}

/* Span s, finished (`error` non-NULL for a failure), as Zipkin v1 JSON. */
static void span_json(bp_tracer_t *t, jbuf_t *b, bp_span_t *s, const char *error) {
  uint64_t start = bp__span_start_us(s);
  uint64_t dur = s->end_ns > s->start_ns ? (s->end_ns - s->start_ns) / 1000 : 0;
  int first = 1, i, n, type;
  const char *key, *value;
  char num[64], ckey[300];
  double total;
  JB_LIT(b, "{\"traceId\":");
  jb_u64(b, s->ti.trace_id);
  JB_LIT(b, ",\"name\":");
  jb_str(b, bp_span_name(s));
  JB_LIT(b, ",\"id\":");
  jb_u64(b, s->ti.span_id);
  JB_LIT(b, ",\"timestamp\":");
  jb_u64(b, start);
  JB_LIT(b, ",\"duration\":");
  jb_u64(b, dur);
  JB_LIT(b, ",\"parentId\":");
  jb_u64(b, s->ti.parent_id);
  JB_LIT(b, ",\"annotations\":[");
  if (s->kind != BP_SPAN_LOCAL) {
    annotation(t, b, start, s->kind == BP_SPAN_SERVER ? "sr" : "cs");
    jb_put(b, ",", 1);
    annotation(t, b, start + dur, s->kind == BP_SPAN_SERVER ? "ss" : "cr");
  }
  JB_LIT(b, "],\"binaryAnnotations\":[");
  binary_annotation(t, b, &first, "component", "baseplate");
  if (s->kind == BP_SPAN_LOCAL) binary_annotation(t, b, &first, "lc", bp_span_component(s));
  n = bp__span_tag_count(s);
  for (i = 0; i < n; i++) {
    key = bp__span_tag_at(s, i, &value, &type);
    if (type == BP_TAG_BOOL)
      value = (strcmp(value, "True") == 0 || strcmp(value, "true") == 0) ? "true" : "false";
    binary_annotation(t, b, &first, key, value);
  }
  if (error) binary_annotation(t, b, &first, "error", "true");
  if (s->ti.flags & 1) binary_annotation(t, b, &first, "debug", "true");
  n = bp__span_counter_count(s);
  for (i = 0; i < n; i++) {
    key = bp__span_counter_at(s, i, &total);
    snprintf(ckey, sizeof ckey, "counter.%s", key);
    number_text(total, num, sizeof num);
    binary_annotation(t, b, &first, ckey, num);
  }
  JB_LIT(b, "]}");
}

/* Span s as an OpenTelemetry span in OTLP/HTTP JSON (an element of
 * scopeSpans[].spans; the sender wraps the batch in resourceSpans). */
static void jb_hex(jbuf_t *b, uint64_t high, uint64_t v, int digits) {
  static const char hex[] = "0123456789abcdef";
  char d[34];
  int i, n = 0;
  d[n++] = '"';
  if (digits == 32)
    for (i = 15; i >= 0; i--) d[n++] = hex[(high >> (i * 4)) & 15];
  for (i = 15; i >= 0; i--) d[n++] = hex[(v >> (i * 4)) & 15];
  d[n++] = '"';
  jb_put(b, d, (size_t)n);
}

static void otlp_attr(jbuf_t *b, int *first, const char *key, const char *value, int type) {
  char *end;
  double v;
  if (!*first) jb_put(b, ",", 1);
  *first = 0;
  JB_LIT(b, "{\"key\":");
  jb_str(b, key);
  JB_LIT(b, ",\"value\":{");
  if (type == BP_TAG_BOOL) {
    if (strcmp(value, "True") == 0 || strcmp(value, "true") == 0) JB_LIT(b, "\"boolValue\":true}}");
    else JB_LIT(b, "\"boolValue\":false}}");
    return;
  }
  if (type == BP_TAG_NUMBER && (v = strtod(value, &end), *value && !*end) && isfinite(v)) {
    char num[64];
    if (v == floor(v) && fabs(v) < 9e15) {
      snprintf(num, sizeof num, "\"intValue\":\"%.0f\"}}", v); /* int64 as a string (OTLP JSON) */
    } else {
      snprintf(num, sizeof num, "\"doubleValue\":%.17g}}", v);
    }
    jb_put(b, num, strlen(num));
    return;
  }
  JB_LIT(b, "\"stringValue\":");
  jb_str(b, value);
  JB_LIT(b, "}}");
}

static void otlp_json(bp_tracer_t *t, jbuf_t *b, bp_span_t *s, const char *error) {
  uint64_t start_ns = bp__span_start_us(s) * 1000;
  uint64_t dur = s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0;
  int first = 1, i, n, type;
  const char *key, *value;
  char num[80], ckey[300];
  double total;
  (void)t;
  JB_LIT(b, "{\"traceId\":");
  jb_hex(b, s->ti.trace_id_high, s->ti.trace_id, 32);
  JB_LIT(b, ",\"spanId\":");
  jb_hex(b, 0, s->ti.span_id, 16);
  if (s->ti.parent_id) {
    JB_LIT(b, ",\"parentSpanId\":");
    jb_hex(b, 0, s->ti.parent_id, 16);
  }
  JB_LIT(b, ",\"name\":");
  jb_str(b, bp_span_name(s));
  /* SPAN_KIND_INTERNAL 1, SERVER 2, CLIENT 3 */
  snprintf(num, sizeof num, ",\"kind\":%d,\"startTimeUnixNano\":\"",
           s->kind == BP_SPAN_SERVER ? 2 : s->kind == BP_SPAN_CLIENT ? 3 : 1);
  jb_put(b, num, strlen(num));
  jb_u64(b, start_ns);
  JB_LIT(b, "\",\"endTimeUnixNano\":\"");
  jb_u64(b, start_ns + dur);
  JB_LIT(b, "\",\"attributes\":[");
  if (s->kind == BP_SPAN_LOCAL) otlp_attr(b, &first, "lc", bp_span_component(s), BP_TAG_STRING);
  n = bp__span_tag_count(s);
  for (i = 0; i < n; i++) {
    key = bp__span_tag_at(s, i, &value, &type);
    otlp_attr(b, &first, key, value, type);
  }
  if (s->ti.flags & 1) otlp_attr(b, &first, "debug", "true", BP_TAG_BOOL);
  n = bp__span_counter_count(s);
  for (i = 0; i < n; i++) {
    key = bp__span_counter_at(s, i, &total);
    snprintf(ckey, sizeof ckey, "counter.%s", key);
    number_text(total, num, sizeof num);
    otlp_attr(b, &first, ckey, num, BP_TAG_NUMBER);
  }
  JB_LIT(b, "]");
  if (error) { /* STATUS_CODE_ERROR, the error class as the message */
    JB_LIT(b, ",\"status\":{\"code\":2,\"message\":");
    jb_str(b, error);
    JB_LIT(b, "}");
  }
  JB_LIT(b, "}");
}

/* --- the queues ------------------------------------------------------------------ */

/* Drop the taken spans from the front of the queue. */
static void compact(bp_tracer_t *t) {
  int i;
  memmove(t->queue.p, t->queue.p + t->head, t->queue.len - t->head);
  t->queue.len -= t->head;
  for (i = t->first; i < t->nspans; i++) t->ends[i - t->first] = t->ends[i] - t->head;
  t->nspans -= t->first;
  t->first = 0;
  t->head = 0;
}

static void enqueue(bp_tracer_t *t, const char *json, size_t len) {
  if (t->nspans - t->first >= t->max_spans || t->queue.len - t->head + len > MEMORY_LIMIT) {
    t->dropped_full++;
    return;
  }
  if (t->nspans == t->cap_spans && t->first > 0) compact(t);
  if (t->nspans == t->cap_spans) {
    int cap = t->cap_spans ? t->cap_spans * 2 : 256;
    size_t *p;
    if (cap > t->max_spans) cap = t->max_spans;
    if (!(p = realloc(t->ends, (size_t)cap * sizeof *p))) {
      t->dropped_full++;
      return;
    }
    t->ends = p;
    t->cap_spans = cap;
  }
  jb_put(&t->queue, json, len);
  if (t->queue.failed) {
    t->queue.failed = 0;
    t->dropped_full++;
    return;
  }
  t->ends[t->nspans++] = t->queue.len;
}

static void record(bp_tracer_t *t, bp_span_t *s, const char *error) {
  jbuf_t *b = &t->scratch;
  b->len = 0;
  b->failed = 0;
  if (t->otlp) otlp_json(t, b, s, error);
  else span_json(t, b, s, error);
  if (b->failed) {
    t->dropped_full++;
    return;
  }
  if (b->len > t->max_message) {
    t->dropped_big++;
    bp_log(BP_LOG_WARNING, LOGGER, "Span %s of %zu bytes is too large to send; dropped",
           bp_span_name(s), b->len);
    return;
  }
  if (t->mq != (mqd_t)-1) {
    if (mq_send(t->mq, b->p, b->len, 0) != 0) t->dropped_full++;
    else t->sent++;
  } else if (t->collect) {
    enqueue(t, b->p, b->len);
  } else if (bp_log_enabled(LOGGER, BP_LOG_DEBUG)) {
    bp_log(BP_LOG_DEBUG, LOGGER, "Would send span: %.*s", (int)b->len, b->p);
  }
}

/* --- the observer ---------------------------------------------------------------- */

static void trace_finish(void *ud, bp_span_t *span, const char *error) {
  record(ud, span, error);
}

static void trace_child(void *ud, bp_span_t *span, bp_span_t *child);

static const bp_span_observer_t trace_vt = {.on_finish = trace_finish,
                                            .on_child_span_created = trace_child};

static void trace_child(void *ud, bp_span_t *span, bp_span_t *child) {
  (void)span;
  bp_span_register(child, &trace_vt, ud);
}

/* The sampling decision (formats.md): debug forces it, else upstream's
 * decision stands, else the sample rate. Children copy it when made. */
static void trace_span_created(void *ud, bp_span_t *span) {
  bp_tracer_t *t = ud;
  if (span->ti.flags & 1) span->ti.sampled = 1;
  else if (span->ti.sampled < 0) span->ti.sampled = t->sample_rate >= 1.0 || bp__random_unit() < t->sample_rate;
  if (span->ti.sampled) bp_span_register(span, &trace_vt, t);
}

static void timer_closed(uv_handle_t *h) { free(h->data); }

static void timer_close(bp__closable_t *c) {
  flush_timer_t *ft = (flush_timer_t *)c;
  if (ft->tracer) ft->tracer->timer = NULL;
  ft->tracer = NULL;
  if (!uv_is_closing((uv_handle_t *)&ft->timer)) uv_close((uv_handle_t *)&ft->timer, timer_closed);
}

static void timer_tick(uv_timer_t *h) {
  flush_timer_t *ft = h->data;
  bp_tracer_t *t = ft->tracer;
  uint64_t dropped;
  if (!t) return;
  dropped = t->dropped_full - t->dropped_logged;
  if (dropped > 0) {
    t->dropped_logged = t->dropped_full;
    bp_log(BP_LOG_WARNING, LOGGER, "Trace queue is full: dropped %llu span%s (%llu in all)",
           (unsigned long long)dropped, dropped == 1 ? "" : "s",
           (unsigned long long)t->dropped_full);
  }
  if (t->nspans > t->first && t->waiter) {
    int w = t->waiter;
    t->waiter = 0;
    bp__vm_wake(w, BP_OK);
  }
}

static void tracer_free(void *ud) {
  bp_tracer_t *t = ud;
  if (!t) return;
  if (t->timer) timer_close(&t->timer->closable);
  if (t->mq != (mqd_t)-1) mq_close(t->mq);
  free(t->scratch.p);
  free(t->queue.p);
  free(t->out.p);
  free(t->ends);
  free(t->service_name);
  free(t);
}

/* The host's IPv4 address, as Baseplate.py finds it (the host name
 * resolved), else 127.0.0.1. */
static void host_ipv4(char *out, size_t size) {
  char host[256];
  struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;
  snprintf(out, size, "127.0.0.1");
  if (gethostname(host, sizeof host) != 0) return;
  host[sizeof host - 1] = '\0';
  if (getaddrinfo(host, NULL, &hints, &res) == 0 && res) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, out, (socklen_t)size);
    freeaddrinfo(res);
  }
}

bp_tracer_t *bp_baseplate_add_tracing_observer(bp_baseplate_t *bp, const bp_tracing_options_t *o,
                                               char *err, size_t errlen) {
  bp_tracer_t *t;
  bp_observer_t vt = {.on_server_span_created = trace_span_created, .release = tracer_free};
  char ip[INET_ADDRSTRLEN];
  jbuf_t ep = {0};
  if (!o->service_name || !*o->service_name) {
    snprintf(err, errlen, "tracing.service_name: must not be empty");
    return NULL;
  }
  if (!(o->sample_rate >= 0 && o->sample_rate <= 1)) {
    snprintf(err, errlen, "tracing.sample_rate: must be from 0%% to 100%%");
    return NULL;
  }
  if (o->collect && o->max_span_queue_size < 1) {
    snprintf(err, errlen, "tracing.max_span_queue_size: must be at least 1");
    return NULL;
  }
  if (!(t = calloc(1, sizeof *t))) goto oom;
  t->mq = (mqd_t)-1;
  t->max_message = MQ_MAX_MESSAGE_SIZE;
  t->sample_rate = o->sample_rate;
  t->collect = o->collect;
  t->otlp = o->collect && o->format == BP_TRACING_OTLP;
  t->max_spans = o->max_span_queue_size;
  if (!(t->service_name = strdup(o->service_name))) goto oom;
  host_ipv4(ip, sizeof ip);
  JB_LIT(&ep, "{\"serviceName\":");
  jb_str(&ep, o->service_name);
  JB_LIT(&ep, ",\"ipv4\":\"");
  jb_put(&ep, ip, strlen(ip));
  JB_LIT(&ep, "\"}");
  if (ep.failed) goto oom;
  if (ep.len >= sizeof t->endpoint_json) {
    free(ep.p);
    tracer_free(t);
    snprintf(err, errlen, "tracing.service_name: too long");
    return NULL;
  }
  memcpy(t->endpoint_json, ep.p, ep.len);
  t->endpoint_json[ep.len] = '\0';
  free(ep.p);
  ep.p = NULL;
  if (o->queue_name && *o->queue_name) {
    struct mq_attr attr;
    int shrunk = 0;
    if (strchr(o->queue_name, '/') || strlen(o->queue_name) > 200) {
      tracing_bad:
      snprintf(err, errlen, "tracing.queue_name: invalid queue name \"%s\"", o->queue_name);
      tracer_free(t);
      return NULL;
    }
    snprintf(t->mq_name, sizeof t->mq_name, "/traces-%s", o->queue_name);
    t->mq = bp_mq_open(t->mq_name, O_WRONLY | O_NONBLOCK, MQ_MAX_MESSAGES, MQ_MAX_MESSAGE_SIZE, &attr,
                       &shrunk);
    if (t->mq != (mqd_t)-1 && shrunk)
      bp_log(BP_LOG_WARNING, LOGGER,
             "%s: the system's limits (/proc/sys/fs/mqueue) allow %ld messages of at most %ld "
             "bytes, not %d of %d",
             t->mq_name, (long)attr.mq_maxmsg, (long)attr.mq_msgsize, MQ_MAX_MESSAGES,
             MQ_MAX_MESSAGE_SIZE);
    if (t->mq != (mqd_t)-1 && attr.mq_msgsize < MQ_MAX_MESSAGE_SIZE)
      t->max_message = (size_t)attr.mq_msgsize; /* a queue made by someone else, or smaller */
    if (t->mq == (mqd_t)-1) {
      if (errno == ENAMETOOLONG) goto tracing_bad;
      snprintf(err, errlen, "tracing.queue_name: cannot open the message queue %s: %s", t->mq_name,
               strerror(errno));
      tracer_free(t);
      return NULL;
    }
  }
  if (t->collect || t->mq != (mqd_t)-1) { /* (the drop warnings need it too) */
    flush_timer_t *ft = calloc(1, sizeof *ft);
    uint64_t ms = t->collect && o->batch_interval > 0 ? (uint64_t)(o->batch_interval * 1000.0 + 0.5) : 500;
    if (!ft) goto oom;
    ft->closable.magic = BP_CLOSABLE_MAGIC;
    ft->closable.close = timer_close;
    ft->tracer = t;
    uv_timer_init(bp_loop(), &ft->timer);
    ft->timer.data = ft;
    uv_timer_start(&ft->timer, timer_tick, ms ? ms : 1, ms ? ms : 1);
    uv_unref((uv_handle_t *)&ft->timer);
    t->timer = ft;
  }
  if (bp_baseplate_register(bp, &vt, t) != BP_OK) { /* (it released t) */
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return t;
oom:
  free(ep.p);
  tracer_free(t);
  snprintf(err, errlen, "out of memory");
  return NULL;
}

int bp_tracing_wait(bp_tracer_t *t, int waiter) {
  if (!t->timer) return BP_ECLOSED;
  t->waiter = waiter;
  return BP_AGAIN;
}

const char *bp_tracing_take(bp_tracer_t *t, size_t max_bytes, int *nspans, size_t *len) {
  int n = t->first;
  size_t bytes, start = t->head;
  jbuf_t *o = &t->out;
  o->len = 0;
  o->failed = 0;
  jb_put(o, "[", 1);
  while (n < t->nspans) {
    bytes = t->ends[n] - start;
    if (n > t->first && o->len + bytes + 2 > max_bytes) break;
    if (n > t->first) jb_put(o, ",", 1);
    jb_put(o, t->queue.p + start, bytes);
    start = t->ends[n++];
  }
  jb_put(o, "]", 2); /* (and a NUL, not counted) */
  if (o->failed) {
    *nspans = 0;
    *len = 0;
    return NULL;
  }
  /* what was taken leaves the queue */
  *nspans = n - t->first;
  *len = --o->len;
  t->first = n;
  t->head = start;
  if (t->first == t->nspans) t->first = t->nspans = 0, t->head = t->queue.len = 0;
  else if (t->first > t->nspans / 2) compact(t);
  return o->p;
}

int bp_tracing_pending(const bp_tracer_t *t) { return t->nspans - t->first; }

uint64_t bp_tracing_dropped(const bp_tracer_t *t) { return t->dropped_full + t->dropped_big; }
