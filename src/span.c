/*
 * Spans: trace context, the span tree, and dispatch of span events to C
 * observers. Where a span is made: bp_span_new_server() (the HTTP server
 * calls it for every request, baseplate.Baseplate:make_server_span for
 * scripts) and bp_span_make_child() (clients, local spans).
 *
 * Span structs are recycled through a small free list, so that a request's
 * span, its tag storage and its observer array cost no allocation once the
 * process is warm.
 */
#include "span_internal.h"
#include "internal.h"
#include "baseplate/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* --- IDs ----------------------------------------------------------------------- */

static uint64_t rng_state;
static int rng_seeded;

static void rng_seed(void) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
  }
  rng_state = seed;
}

/* A forked child must not repeat its parent's IDs. */
static void rng_reseed_child(void) { rng_seed(); }

/* splitmix64: fast, full period, good enough for span IDs (not secrets). */
uint64_t bp_random_id(void) {
  uint64_t z;
  if (!rng_seeded) {
    rng_seeded = 1;
    rng_seed();
    pthread_atfork(NULL, NULL, rng_reseed_child);
  }
  do {
    z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
  } while (z == 0);
  return z;
}

/* A random number in [0, 1) for sampling decisions. */
double bp__random_unit(void) { return (double)(bp_random_id() >> 11) * (1.0 / 9007199254740992.0); }

void bp_trace_info_new(bp_trace_info_t *ti) {
  ti->trace_id = ti->span_id = bp_random_id();
  ti->parent_id = 0;
  ti->sampled = -1;
  ti->flags = 0;
  ti->trace_id_high = 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!s || !*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}

int bp_trace_info_from_upstream(bp_trace_info_t *ti, const char *trace_id, const char *parent_id,
                                const char *span_id, const char *sampled, const char *flags,
                                char *err, size_t errlen) {
  const char *why = NULL;
  memset(ti, 0, sizeof *ti);
  ti->sampled = -1;
  if (!trace_id || parse_u64(trace_id, &ti->trace_id)) why = "invalid trace_id value";
  else if (!span_id || parse_u64(span_id, &ti->span_id)) why = "invalid span_id value";
  else if (parent_id && *parent_id && parse_u64(parent_id, &ti->parent_id))
    why = "invalid parent_id value";
  else if (flags && *flags && parse_u64(flags, &ti->flags)) why = "invalid flags value";
  if (!why && sampled) ti->sampled = strcmp(sampled, "1") == 0;
  if (why) {
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return BP_EINVAL;
  }
  return BP_OK;
}

/* --- W3C trace context --------------------------------------------------------- */

static int hex_u64(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return -1; /* lowercase only (W3C) */
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 0;
}

int bp_trace_info_from_traceparent(bp_trace_info_t *ti, const char *s, size_t len) {
  uint64_t version, high, low, parent, flags;
  memset(ti, 0, sizeof *ti);
  ti->sampled = -1;
  /* version "-" trace-id "-" parent-id "-" flags; a later version may add
   * fields after a "-" */
  if (len < 55 || (len > 55 && s[55] != '-')) return BP_EINVAL;
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') return BP_EINVAL;
  if (hex_u64(s, 2, &version) || version == 0xff || (version == 0 && len != 55)) return BP_EINVAL;
  if (hex_u64(s + 3, 16, &high) || hex_u64(s + 19, 16, &low) || hex_u64(s + 36, 16, &parent) ||
      hex_u64(s + 53, 2, &flags))
    return BP_EINVAL;
  if ((high == 0 && low == 0) || parent == 0) return BP_EINVAL;
  /* Baseplate's trace ID is the low 64 bits (Zipkin's rule for 64-bit
   * tracers); the high half rides along for the traceparent we send on. A
   * trace ID of zero low bits has no 64-bit form. */
  if (low == 0) return BP_EINVAL;
  ti->trace_id = low;
  ti->trace_id_high = high;
  ti->parent_id = parent;
  ti->span_id = bp_random_id();
  ti->sampled = (int)(flags & 1);
  return BP_OK;
}

size_t bp_trace_info_to_traceparent(const bp_trace_info_t *ti, char *out) {
  static const char hex[] = "0123456789abcdef";
  uint64_t v;
  int i;
  memcpy(out, "00-", 3);
  for (v = ti->trace_id_high, i = 15; i >= 0; i--, v >>= 4) out[3 + i] = hex[v & 15];
  for (v = ti->trace_id, i = 15; i >= 0; i--, v >>= 4) out[19 + i] = hex[v & 15];
  out[35] = '-';
  for (v = ti->span_id, i = 15; i >= 0; i--, v >>= 4) out[36 + i] = hex[v & 15];
  out[52] = '-';
  out[53] = '0';
  out[54] = ti->sampled == 1 ? '1' : '0';
  out[55] = '\0';
  return 55;
}

/* --- the span struct ------------------------------------------------------------- */

#define POOL_MAX 64
static bp_span_t *pool;
static int pool_n;

static bp_span_t *current;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Wall-clock microseconds for a monotonic reading (Zipkin timestamps): the
 * offset between the clocks is read again at most once a second. */
static uint64_t wall_us(uint64_t mono_ns) {
  static uint64_t offset_us, checked_ns;
  if (checked_ns == 0 || mono_ns - checked_ns > 1000000000ULL) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    offset_us = (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000 - mono_ns / 1000;
    checked_ns = mono_ns;
  }
  return mono_ns / 1000 + offset_us;
}

/* Copy a string into the span's arena; returns its offset or (size_t)-1. */
static size_t arena_put(bp_span_t *s, const char *str, size_t len) {
  size_t off = s->alen;
  if (s->alen + len + 1 > s->acap) {
    size_t cap = s->acap ? s->acap * 2 : 256;
    char *p;
    while (cap < s->alen + len + 1) cap *= 2;
    if (!(p = realloc(s->arena, cap))) return (size_t)-1;
    s->arena = p;
    s->acap = cap;
  }
  memcpy(s->arena + off, str, len);
  s->arena[off + len] = '\0';
  s->alen += len + 1;
  return off;
}

/* Room for one more of the *n elements at *arr (capacity *cap). */
static int grow_array(void **arr, int n, int *cap, size_t size, int first) {
  int c;
  void *p;
  if (n < *cap) return BP_OK;
  c = *cap ? *cap * 2 : first;
  if (!(p = realloc(*arr, (size_t)c * size))) return BP_ENOMEM;
  *arr = p;
  *cap = c;
  return BP_OK;
}
#define GROW(arr, n, cap, first) grow_array((void **)&(arr), (n), &(cap), sizeof *(arr), (first))

#define STR(s, off) ((s)->arena + (off))
#define TAG_KEY(s, i) ((s)->tags[i].skey ? (s)->tags[i].skey : STR(s, (s)->tags[i].key))
#define TAG_VALUE(s, i) ((s)->tags[i].svalue ? (s)->tags[i].svalue : STR(s, (s)->tags[i].value))

static bp_span_t *span_alloc(void) {
  bp_span_t *s;
  if (pool) {
    s = pool;
    pool = s->next_free;
    pool_n--;
  } else if (!(s = calloc(1, sizeof *s))) {
    return NULL;
  }
  s->next_free = NULL;
  s->refs = 1;
  s->state = 0;
  s->alen = 0;
  s->nobs = s->ntags = s->nctrs = 0;
  s->root = NULL;
  s->bp = NULL;
  s->batch = NULL;
  s->edge = s->tracestate = (size_t)-1;
  s->edge_len = 0;
  s->idstr[0] = '\0';
  s->start_ns = s->end_ns = 0;
  s->start_us = 0;
  s->component = (size_t)-1;
  s->mfamily = s->mlabels = s->mcounter = (size_t)-1;
  s->msuccess = -1;
  s->tagger = NULL;
  s->proto = 0;
  s->proto_method = NULL;
  s->proto_endpoint = NULL;
  s->proto_status = 0;
  return s;
}

void bp__span_defer_tags(bp_span_t *s, void (*tagger)(bp_span_t *s, void *ud), void *ud) {
  int i;
  s->tagger = tagger;
  s->tagger_ud = ud;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_set_tag) {
      bp__span_settle_tags(s);
      return;
    }
}

void bp__span_settle_tags(bp_span_t *s) {
  void (*tagger)(bp_span_t *, void *) = s->tagger;
  if (!tagger) return;
  s->tagger = NULL;
  tagger(s, s->tagger_ud);
}

/* Readers see the deferred tags too (settling is not a visible change). */
#define SETTLE(s)                                                                                  \
  do {                                                                                             \
    if ((s)->tagger) bp__span_settle_tags((bp_span_t *)(s));                                      \
  } while (0)

static void span_release(bp_span_t *s) {
  int i;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->release) s->obs[i].vt->release(s->obs[i].ud);
  s->nobs = 0;
  if (s->batch && s->batch_release) s->batch_release(s->batch_ud, s->batch);
  s->batch = NULL;
  if (s->root) bp_span_unref(s->root);
  s->root = NULL;
  if (s->bp) bp_baseplate_free(s->bp);
  s->bp = NULL;
  if (current == s) current = NULL;
  if (pool_n < POOL_MAX && s->acap <= 4096) {
    s->next_free = pool;
    pool = s;
    pool_n++;
    return;
  }
  free(s->arena);
  free(s->obs);
  free(s->tags);
  free(s->ctrs);
  free(s);
}

bp_span_t *bp_span_ref(bp_span_t *s) {
  if (s) s->refs++;
  return s;
}

void bp_span_unref(bp_span_t *s) {
  if (s && --s->refs == 0) span_release(s);
}

static int span_init(bp_span_t *s, bp_baseplate_t *bp, int kind, const char *name,
                     const char *component) {
  s->bp = bp;
  if (bp) bp__baseplate_ref(bp);
  s->kind = kind;
  s->name = arena_put(s, name ? name : "", name ? strlen(name) : 0);
  if (s->name == (size_t)-1) return BP_ENOMEM;
  if (component) {
    s->component = arena_put(s, component, strlen(component));
    if (s->component == (size_t)-1) return BP_ENOMEM;
  }
  return BP_OK;
}

bp_span_t *bp_span_new_server(bp_baseplate_t *bp, const char *name, const bp_trace_info_t *ti) {
  bp_span_t *s = span_alloc();
  if (!s) return NULL;
  if (span_init(s, bp, BP_SPAN_SERVER, name, NULL) != BP_OK) {
    span_release(s);
    return NULL;
  }
  if (ti) s->ti = *ti;
  else bp_trace_info_new(&s->ti);
  if (bp) bp__baseplate_server_span_created(bp, s);
  return s;
}

bp_span_t *bp_span_make_child(bp_span_t *parent, const char *name, int local,
                              const char *component, int *status) {
  bp_span_t *s;
  int i;
  if (status) *status = BP_OK;
  if (!parent || parent->state == 2) {
    if (status) *status = BP_EINVAL;
    return NULL;
  }
  if (!(s = span_alloc())) {
    if (status) *status = BP_ENOMEM;
    return NULL;
  }
  if (span_init(s, parent->bp, local ? BP_SPAN_LOCAL : BP_SPAN_CLIENT, name,
                local ? (component ? component : "") : NULL) != BP_OK) {
    span_release(s);
    if (status) *status = BP_ENOMEM;
    return NULL;
  }
  s->ti.trace_id = parent->ti.trace_id;
  s->ti.parent_id = parent->ti.span_id;
  s->ti.span_id = bp_random_id();
  s->ti.sampled = parent->ti.sampled;
  s->ti.flags = parent->ti.flags;
  s->ti.trace_id_high = parent->ti.trace_id_high;
  s->root = bp_span_ref(bp_span_root(parent));
  for (i = 0; i < parent->nobs; i++)
    if (parent->obs[i].vt->on_child_span_created)
      parent->obs[i].vt->on_child_span_created(parent->obs[i].ud, parent, s);
  return s;
}

int bp_span_register(bp_span_t *s, const bp_span_observer_t *vt, void *ud) {
  if (GROW(s->obs, s->nobs, s->cap_obs, 4) != BP_OK) {
    if (vt->release) vt->release(ud);
    return BP_ENOMEM;
  }
  s->obs[s->nobs].vt = vt;
  s->obs[s->nobs].ud = ud;
  s->nobs++;
  return BP_OK;
}

int bp_span_start(bp_span_t *s) {
  int i;
  if (s->state != 0) return BP_DECLINED;
  s->state = 1;
  s->start_ns = now_ns();
  s->start_us = wall_us(s->start_ns);
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_start) s->obs[i].vt->on_start(s->obs[i].ud, s);
  return BP_OK;
}

int bp_span_set_tag(bp_span_t *s, const char *key, const char *value, int type) {
  int i;
  size_t k, v;
  if (!key || !value) return BP_EINVAL;
  SETTLE(s);
  for (i = 0; i < s->ntags; i++)
    if (strcmp(TAG_KEY(s, i), key) == 0) break;
  if (i == s->ntags) {
    if (GROW(s->tags, s->ntags, s->cap_tags, 8) != BP_OK) return BP_ENOMEM;
    if ((k = arena_put(s, key, strlen(key))) == (size_t)-1) return BP_ENOMEM;
    s->tags[i].skey = NULL;
    s->tags[i].key = k;
    s->ntags++;
  }
  if ((v = arena_put(s, value, strlen(value))) == (size_t)-1) return BP_ENOMEM;
  s->tags[i].svalue = NULL;
  s->tags[i].value = v;
  s->tags[i].type = type;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_set_tag) s->obs[i].vt->on_set_tag(s->obs[i].ud, s, key, value, type);
  return BP_OK;
}

int bp__span_tag_static(bp_span_t *s, const char *key, const char *value, size_t len, int type) {
  size_t v;
  int i = s->ntags;
  if (GROW(s->tags, s->ntags, s->cap_tags, 8) != BP_OK) return BP_ENOMEM;
  if ((v = arena_put(s, value, len)) == (size_t)-1) return BP_ENOMEM;
  s->tags[i].skey = key;
  s->tags[i].svalue = NULL;
  s->tags[i].value = v;
  s->tags[i].type = type;
  s->ntags++;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_set_tag)
      s->obs[i].vt->on_set_tag(s->obs[i].ud, s, key, STR(s, v), type);
  return BP_OK;
}

int bp__span_tag_const(bp_span_t *s, const char *key, const char *value, int type) {
  int i = s->ntags;
  if (GROW(s->tags, s->ntags, s->cap_tags, 8) != BP_OK) return BP_ENOMEM;
  s->tags[i].skey = key;
  s->tags[i].svalue = value;
  s->tags[i].type = type;
  s->ntags++;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_set_tag) s->obs[i].vt->on_set_tag(s->obs[i].ud, s, key, value, type);
  return BP_OK;
}

int bp_span_incr_tag(bp_span_t *s, const char *key, double delta) {
  int i;
  if (!key) return BP_EINVAL;
  for (i = 0; i < s->nctrs; i++)
    if (strcmp(STR(s, s->ctrs[i].key), key) == 0) break;
  if (i == s->nctrs) {
    size_t k;
    if (GROW(s->ctrs, s->nctrs, s->cap_ctrs, 4) != BP_OK) return BP_ENOMEM;
    if ((k = arena_put(s, key, strlen(key))) == (size_t)-1) return BP_ENOMEM;
    s->ctrs[i].key = k;
    s->ctrs[i].total = 0;
    s->nctrs++;
  }
  s->ctrs[i].total += delta;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_incr_tag) s->obs[i].vt->on_incr_tag(s->obs[i].ud, s, key, delta);
  return BP_OK;
}

int bp_span_log(bp_span_t *s, const char *name, const char *payload) {
  int i;
  if (!name) return BP_EINVAL;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_log) s->obs[i].vt->on_log(s->obs[i].ud, s, name, payload);
  return BP_OK;
}

int bp_span_finish(bp_span_t *s, const char *error) {
  int i;
  if (s->state == 2) return BP_DECLINED;
  s->end_ns = now_ns();
  if (s->state == 0) {
    s->start_ns = s->end_ns;
    s->start_us = wall_us(s->start_ns);
  }
  s->state = 2;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt->on_finish) s->obs[i].vt->on_finish(s->obs[i].ud, s, error);
  return BP_OK;
}

/* --- accessors ------------------------------------------------------------------- */

const bp_trace_info_t *bp_span_trace(const bp_span_t *s) { return &s->ti; }
const char *bp_span_name(const bp_span_t *s) { return STR(s, s->name); }
const char *bp_span_component(const bp_span_t *s) {
  return s->component == (size_t)-1 ? NULL : STR(s, s->component);
}
int bp_span_kind(const bp_span_t *s) { return s->kind; }

/* A metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static int metric_name_ok(const char *p) {
  if (!*p || (*p >= '0' && *p <= '9')) return 0;
  for (; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == ':'))
      return 0;
  return 1;
}

/* Labels as the text format writes them: name="value" pairs joined by
 * commas, values escaped (\\, \", \n), or nothing. */
static int labels_ok(const char *p) {
  while (*p) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')) return 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_')
      p++;
    if (*p++ != '=' || *p++ != '"') return 0;
    for (; *p != '"'; p++) {
      if (!*p || *p == '\n') return 0;
      if (*p == '\\' && p[1] != '\\' && p[1] != '"' && p[1] != 'n') return 0;
      if (*p == '\\') p++;
    }
    p++;
    if (*p == ',' && p[1]) p++;
    else if (*p) return 0;
  }
  return 1;
}

int bp_span_set_metric_family(bp_span_t *s, const char *family, const char *labels,
                              const char *counter_labels, int success) {
  size_t f, l, c = (size_t)-1;
  if (!s || s->kind != BP_SPAN_CLIENT || !family || !metric_name_ok(family) ||
      !labels_ok(labels ? labels : "") || !labels_ok(counter_labels ? counter_labels : ""))
    return BP_EINVAL;
  if ((f = arena_put(s, family, strlen(family))) == (size_t)-1 ||
      (l = arena_put(s, labels ? labels : "", labels ? strlen(labels) : 0)) == (size_t)-1 ||
      (counter_labels &&
       (c = arena_put(s, counter_labels, strlen(counter_labels))) == (size_t)-1))
    return BP_ENOMEM;
  s->mfamily = f;
  s->mlabels = l;
  s->mcounter = c;
  s->msuccess = success < 0 ? -1 : success != 0;
  return BP_OK;
}

const char *bp_span_metric_family(const bp_span_t *s, const char **labels,
                                  const char **counter_labels, int *success) {
  if (success) *success = s->msuccess;
  if (labels) *labels = s->mlabels == (size_t)-1 ? "" : STR(s, s->mlabels);
  if (counter_labels) *counter_labels = s->mcounter == (size_t)-1 ? "" : STR(s, s->mcounter);
  return s->mfamily == (size_t)-1 ? NULL : STR(s, s->mfamily);
}
int bp_span_state(const bp_span_t *s) { return s->state; }
bp_span_t *bp_span_root(bp_span_t *s) { return s->root ? s->root : s; }
bp_baseplate_t *bp_span_baseplate(const bp_span_t *s) { return s->bp; }
bp_metrics_batch_t *bp_span_metrics(bp_span_t *s) { return bp_span_root(s)->batch; }

/* Decimal digits of v into buf (at least 21 bytes), NUL-terminated. */
size_t bp__u64_to_dec(uint64_t v, char *buf) {
  char tmp[20];
  size_t n = 0, i;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  buf[n] = '\0';
  return n;
}

const char *bp_span_trace_id_string(bp_span_t *s) {
  if (!s->idstr[0]) bp__u64_to_dec(s->ti.trace_id, s->idstr);
  return s->idstr;
}

double bp_span_duration(const bp_span_t *s) {
  uint64_t end = s->state == 2 ? s->end_ns : now_ns();
  if (s->state == 0) return 0;
  return (double)(end - s->start_ns) / 1e9;
}

uint64_t bp__span_start_us(const bp_span_t *s) { return s->start_us; }

const char *bp_span_get_tag(const bp_span_t *s, const char *key, int *type) {
  int i;
  SETTLE(s);
  for (i = 0; i < s->ntags; i++)
    if (strcmp(TAG_KEY(s, i), key) == 0) {
      if (type) *type = s->tags[i].type;
      return TAG_VALUE(s, i);
    }
  return NULL;
}

int bp__span_tag_count(const bp_span_t *s) {
  SETTLE(s);
  return s->ntags;
}

const char *bp__span_tag_at(const bp_span_t *s, int i, const char **value, int *type) {
  SETTLE(s);
  if (i < 0 || i >= s->ntags) return NULL;
  if (value) *value = TAG_VALUE(s, i);
  if (type) *type = s->tags[i].type;
  return TAG_KEY(s, i);
}

int bp__span_counter_count(const bp_span_t *s) { return s->nctrs; }

const char *bp__span_counter_at(const bp_span_t *s, int i, double *total) {
  if (i < 0 || i >= s->nctrs) return NULL;
  if (total) *total = s->ctrs[i].total;
  return STR(s, s->ctrs[i].key);
}

void bp__span_attach_batch(bp_span_t *s, bp_metrics_batch_t *b,
                           void (*release)(void *, bp_metrics_batch_t *), void *ud) {
  s->batch = b;
  s->batch_release = release;
  s->batch_ud = ud;
}

int bp_span_set_edge_request(bp_span_t *s, const char *data, size_t len) {
  size_t off = arena_put(s, data, len);
  if (off == (size_t)-1) return BP_ENOMEM;
  s->edge = off;
  s->edge_len = len;
  return BP_OK;
}

const char *bp_span_edge_request(const bp_span_t *s, size_t *len) {
  if (s->root) s = s->root;
  if (s->edge == (size_t)-1) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = s->edge_len;
  return STR(s, s->edge);
}

int bp_span_set_tracestate(bp_span_t *s, const char *value, size_t len) {
  size_t off, i;
  /* W3C: list members of printable ASCII; 512 characters is the most a
   * platform must pass on, and we pass on no more. */
  if (len > 512) return BP_EINVAL;
  for (i = 0; i < len; i++)
    if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e) return BP_EINVAL;
  if ((off = arena_put(s, value, len)) == (size_t)-1) return BP_ENOMEM;
  s->tracestate = off;
  return BP_OK;
}

const char *bp_span_tracestate(const bp_span_t *s) {
  if (s->root) s = s->root;
  return s->tracestate == (size_t)-1 ? NULL : STR(s, s->tracestate);
}

/* --- the span running now ------------------------------------------------------------- */

/* Log lines ask for the current span's trace ID when they are written. */
void bp_span_enter(bp_span_t *s) { current = s; }

bp_span_t *bp_span_current(void) { return current; }

void bp__span_pool_drain(void) {
  while (pool) {
    bp_span_t *s = pool;
    pool = s->next_free;
    free(s->arena);
    free(s->obs);
    free(s->tags);
    free(s->ctrs);
    free(s);
  }
  pool_n = 0;
}
