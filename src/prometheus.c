/*
 * Prometheus: per-process slots in shared memory, recorded without locks,
 * summed at scrape time (include/baseplate/prometheus.h, docs/prometheus.md).
 *
 * Who writes what:
 * - a worker writes only its own slot. Each figure has one writer, so a
 *   relaxed load and store replace an atomic add; a new label set is
 *   filled in before the slot's series count is published (release), and
 *   readers load the count with acquire, so they never see half a label;
 * - the supervisor writes slot 0 (the retired totals), and a dead worker's
 *   slot when it folds it into slot 0 and empties it, before the next
 *   worker takes it; it also serves the scrape, in the same thread, so a
 *   fold and a scrape never overlap and no count is seen twice or lost.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include "baseplate/prometheus.h"
#include "span_internal.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Baseplate.py's default_latency_buckets (seconds), as nanoseconds. */
#define NBUCKETS 15
static const uint64_t bucket_ns[NBUCKETS] = {
    100000ULL,     500000ULL,     1000000ULL,    2500000ULL,     5000000ULL,
    10000000ULL,   25000000ULL,   50000000ULL,   100000000ULL,   250000000ULL,
    500000000ULL,  1000000000ULL, 5000000000ULL, 15000000000ULL, 30000000000ULL};
static const char *const bucket_le[NBUCKETS] = {"0.0001", "0.0005", "0.001", "0.0025", "0.005",
                                                "0.01",   "0.025",  "0.05",  "0.1",    "0.25",
                                                "0.5",    "1",      "5",     "15",     "30"};

/* K_FAMILY: a client span with its library's own family
 * (bp_span_set_metric_family): b is the family, a its labels and c the
 * counter's, as the text format writes them. */
enum { K_HTTP = 1, K_THRIFT, K_SERVER, K_CLIENT, K_FAMILY, K_COUNT = 5 };

/* Label sets kept for the overflow series: one per kind and success
 * (K_FAMILY's spans overflow into K_CLIENT's). */
#define RESERVED ((K_COUNT - 1) * 2)
#define OVERFLOW "_overflow"
#define MAX_POOLS 32
#define MAGIC 0x62707072u /* "bppr" */

typedef struct {
  uint32_t kind; /* K_*; 0: never used */
  uint32_t success;
  uint32_t hash; /* of kind, success and labels (find_series): others passed over quickly */
  uint32_t pad;
  char a[192]; /* endpoint, route or method; a family's labels */
  char b[32];  /* HTTP method, client, Thrift error code; a family */
  char c[128]; /* response code, exception type; a family's counter labels */
  uint64_t count;
  uint64_t sum_ns;
  uint64_t bucket[NBUCKETS]; /* not cumulative: bucket i counts le[i-1] < d <= le[i] */
} series_t;

typedef struct {
  uint32_t nseries; /* published: series[0..nseries) are filled in */
  uint32_t pid;
  uint64_t generation; /* slot 0: workers retired */
  uint64_t overflowed; /* spans counted in an overflow series */
  double rt[4];        /* open connections, active requests, Lua memory, loop lag */
  uint32_t npools, pad;
  struct {
    char name[64];
    double size, in_use, waiters;
    char family[16]; /* bp_prom_set_pool_family ("": the generic gauges) */
    double open, idle;
  } pools[MAX_POOLS];
  uint64_t intro_req, intro_ans;
  uint64_t intro_len;
  char intro[BP_PROM_INTROSPECT_MAX];
  series_t series[];
} slot_t;

typedef struct {
  uint32_t magic, nslots, max_series, pad;
  uint64_t slot_size, size;
} region_t;

#define HEADER_SIZE 4096

static struct {
  region_t *r;
  int fd;
  int slot; /* this process's own */
  uint32_t *index; /* this process's: hash of its own label sets -> series + 1 */
  uint32_t index_mask;
  char *text;
  size_t text_cap;
} P = {.fd = -1};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static slot_t *slot_at(int i) {
  return (slot_t *)((char *)P.r + HEADER_SIZE + (size_t)i * P.r->slot_size);
}

static size_t slot_size(int max_series) {
  size_t s = sizeof(slot_t) + (size_t)max_series * sizeof(series_t);
  return (s + 4095) & ~(size_t)4095;
}

static int make_index(char *err, size_t errlen) {
  uint32_t n = 16;
  while (n < P.r->max_series * 2u) n <<= 1;
  free(P.index);
  if (!(P.index = calloc(n, sizeof *P.index))) {
    snprintf(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  P.index_mask = n - 1;
  return BP_OK;
}

int bp_prom_init(int nslots, int max_series, char *err, size_t errlen) {
  size_t ss, size;
  int fd;
  void *p;
  if (nslots < 1 || nslots > 1024 || max_series < 16 || max_series > 100000) {
    snprintf(err, errlen, "slots must be 1 to 1024 and label sets 16 to 100000");
    return BP_EINVAL;
  }
  bp_prom_close();
  ss = slot_size(max_series);
  size = HEADER_SIZE + (size_t)(nslots + 1) * ss;
  /* inherited by the workers across exec (they close their copy's flag) */
  if ((fd = memfd_create("baseplate-prometheus", 0)) < 0) goto sys;
  if (ftruncate(fd, (off_t)size) < 0) {
    close(fd);
    goto sys;
  }
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    goto sys;
  }
  P.r = p;
  P.fd = fd;
  P.r->magic = MAGIC;
  P.r->nslots = (uint32_t)nslots;
  P.r->max_series = (uint32_t)max_series;
  P.r->slot_size = ss;
  P.r->size = size;
  /* a single process records into its one slot; a supervisor into none */
  P.slot = nslots == 1 ? 1 : 0;
  if (P.slot) slot_at(1)->pid = (uint32_t)getpid();
  return make_index(err, errlen);
sys:
  snprintf(err, errlen, "cannot make the shared memory for the metrics: %s", strerror(errno));
  return -errno;
}

int bp_prom_attach(int fd, int slot, char *err, size_t errlen) {
  region_t head;
  void *p;
  int flags;
  if (pread(fd, &head, sizeof head, 0) != (ssize_t)sizeof head || head.magic != MAGIC) {
    snprintf(err, errlen, "descriptor %d is not the metrics' shared memory", fd);
    return BP_EINVAL;
  }
  if (slot < 1 || (uint32_t)slot > head.nslots) {
    snprintf(err, errlen, "worker slot %d is out of range (1 to %u)", slot, head.nslots);
    return BP_EINVAL;
  }
  p = mmap(NULL, head.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    snprintf(err, errlen, "cannot map the metrics' shared memory: %s", strerror(errno));
    return -errno;
  }
  if (P.r && P.r != p) munmap(P.r, P.r->size);
  P.r = p;
  P.fd = fd;
  P.slot = slot;
  /* (not for the processes this one starts) */
  if ((flags = fcntl(fd, F_GETFD)) >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  STORE(&slot_at(slot)->pid, (uint32_t)getpid());
  return make_index(err, errlen);
}

int bp_prom_fd(void) { return P.fd; }
int bp_prom_slot(void) { return P.r ? P.slot : 0; }
int bp_prom_nslots(void) { return P.r ? (int)P.r->nslots : 0; }

void bp_prom_close(void) {
  if (P.r) munmap(P.r, P.r->size);
  if (P.fd >= 0) close(P.fd);
  free(P.index);
  free(P.text);
  memset(&P, 0, sizeof P);
  P.fd = -1;
}

/* --- recording ------------------------------------------------------------------ */

/* A label: its bytes and length (cut to fit its room in the series). */
typedef struct {
  const char *p;
  size_t n;
} lab_t;

/* One pass over a label: its length (at most room - 1) and the hash. */
static lab_t lab_hash(const char *s, size_t room, uint32_t *h) {
  lab_t l = {s, 0};
  uint32_t x = *h;
  while (l.n < room - 1 && s[l.n]) x = (x ^ (unsigned char)s[l.n++]) * 16777619u;
  *h = (x ^ 0xff) * 16777619u;
  return l;
}

#define ROOM_A sizeof(((series_t *)0)->a)
#define ROOM_B sizeof(((series_t *)0)->b)
#define ROOM_C sizeof(((series_t *)0)->c)

static int same_lab(const char *stored, lab_t l) {
  for (size_t k = 0; k < l.n; k++)
    if (stored[k] != l.p[k]) return 0;
  return stored[l.n] == '\0';
}

static int same_key(const series_t *s, uint32_t kind, uint32_t success, uint32_t h, lab_t a,
                    lab_t b, lab_t c) {
  return s->hash == h && s->kind == kind && s->success == success && same_lab(s->a, a) &&
         same_lab(s->b, b) && same_lab(s->c, c);
}

static void put_lab(char *dst, lab_t l) {
  memcpy(dst, l.p, l.n);
  dst[l.n] = '\0';
}

static void copy_label(char *dst, size_t size, const char *src) {
  uint32_t h = 0;
  put_lab(dst, lab_hash(src, size, &h));
}

/* The series for a label set in slot `sl`, made if there is room (`limit`
 * series); `idx` (this process's hash index) may be NULL: a linear search.
 * Labels longer than their room are cut (the key is what is stored). */
static series_t *find_series(slot_t *sl, uint32_t limit, uint32_t *idx, uint32_t mask,
                             uint32_t kind, uint32_t success, const char *a0, const char *b0,
                             const char *c0) {
  uint32_t h = 2166136261u ^ (kind * 31u + success);
  lab_t a = lab_hash(a0, ROOM_A, &h), b = lab_hash(b0, ROOM_B, &h), c = lab_hash(c0, ROOM_C, &h);
  uint32_t n = LOAD(&sl->nseries), i = 0;
  series_t *s;
  if (idx) {
    for (i = h & mask;; i = (i + 1) & mask) {
      if (!idx[i]) break;
      s = &sl->series[idx[i] - 1];
      if (same_key(s, kind, success, h, a, b, c)) return s;
    }
  } else {
    for (uint32_t k = 0; k < n; k++)
      if (same_key(&sl->series[k], kind, success, h, a, b, c)) return &sl->series[k];
  }
  if (n >= limit) return NULL;
  s = &sl->series[n];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->success = success;
  s->hash = h;
  put_lab(s->a, a);
  put_lab(s->b, b);
  put_lab(s->c, c);
  __atomic_store_n(&sl->nseries, n + 1, __ATOMIC_RELEASE);
  if (idx) idx[i] = n + 1;
  return s;
}

static void add_sample(series_t *s, uint64_t count, uint64_t sum_ns, const uint64_t *buckets) {
  for (int i = 0; i < NBUCKETS; i++)
    if (buckets[i]) STORE(&s->bucket[i], LOAD(&s->bucket[i]) + buckets[i]);
  STORE(&s->sum_ns, LOAD(&s->sum_ns) + sum_ns);
  STORE(&s->count, LOAD(&s->count) + count);
}

static void record(uint32_t kind, uint32_t success, const char *a, const char *b, const char *c,
                   uint64_t ns) {
  slot_t *sl = slot_at(P.slot);
  uint32_t max = P.r->max_series;
  series_t *s = find_series(sl, max - RESERVED, P.index, P.index_mask, kind, success, a, b, c);
  int i;
  if (!s) {
    /* beyond the limit: the kind's overflow series, in the reserved room
     * (a family's in the clients' overflow series) */
    if (kind == K_FAMILY) kind = K_CLIENT;
    s = find_series(sl, max, P.index, P.index_mask, kind, success, OVERFLOW, "", "");
    STORE(&sl->overflowed, LOAD(&sl->overflowed) + 1);
    if (!s) return;
  }
  for (i = 0; i < NBUCKETS && ns > bucket_ns[i]; i++) continue;
  if (i < NBUCKETS) STORE(&s->bucket[i], LOAD(&s->bucket[i]) + 1);
  STORE(&s->sum_ns, LOAD(&s->sum_ns) + ns);
  STORE(&s->count, LOAD(&s->count) + 1);
}

/* An HTTP request, as Baseplate.py labels it: the route's pattern, the
 * method in lower case, the status, and success for an answer of 2xx or
 * 3xx that no error ended. */
static void record_http(const char *endpoint, const char *method, int status, int ok, uint64_t ns) {
  char m[ROOM_B], code[24];
  size_t i = 0;
  for (; method && method[i] && i < sizeof m - 1; i++)
    m[i] = (char)(method[i] >= 'A' && method[i] <= 'Z' ? method[i] + ('a' - 'A') : method[i]);
  m[i] = '\0';
  code[0] = '\0';
  if (status > 0) code[bp__u64_to_dec((uint64_t)status, code)] = '\0';
  record(K_HTTP, ok && status >= 200 && status < 400, endpoint, m, code, ns);
}

void bp_prom_record_span(const bp_span_t *span, const char *error) {
  char client[ROOM_B], code[24];
  const char *name, *dot;
  uint64_t ns;
  uint32_t ok = error == NULL;
  if (!P.r || !P.slot || span->state != 2) return;
  ns = span->end_ns > span->start_ns ? span->end_ns - span->start_ns : 0;
  name = bp_span_name(span);
  if (span->kind == BP_SPAN_SERVER) {
    switch (span->proto) {
    case BP__SPAN_PROTO_HTTP:
      /* (the protocol's own facts, not the tags: reading those would add
       * every deferred tag to every span) */
      record_http(span->proto_endpoint ? span->proto_endpoint : name, span->proto_method,
                  span->proto_status, ok, ns);
      break;
    case BP__SPAN_PROTO_THRIFT:
      /* (b: the error's baseplate.thrift code, bp_thrift_call_set_error_code) */
      code[0] = '\0';
      if (span->proto_status > 0) code[bp__u64_to_dec((uint64_t)span->proto_status, code)] = '\0';
      record(K_THRIFT, ok, name, code, error ? error : "", ns);
      break;
    default:
      record(K_SERVER, ok, name, "", error ? error : "", ns);
      break;
    }
  } else if (span->kind == BP_SPAN_CLIENT) {
    const char *labels, *counter;
    int success;
    const char *family = bp_span_metric_family(span, &labels, &counter, &success);
    /* (labels too long for the series are never cut: the generic family) */
    if (family && strlen(family) < ROOM_B && strlen(labels) < ROOM_A && strlen(counter) < ROOM_C) {
      record(K_FAMILY, success >= 0 ? (uint32_t)success : ok, labels, family, counter, ns);
      return;
    }
    if ((dot = strchr(name, '.')) && (size_t)(dot - name) < sizeof client) {
      memcpy(client, name, (size_t)(dot - name));
      client[dot - name] = '\0';
      record(K_CLIENT, ok, dot + 1, client, "", ns);
    } else {
      record(K_CLIENT, ok, "", name, "", ns);
    }
  }
}

int bp__prom_on(void) { return P.r && P.slot; }

void bp__prom_record_unrouted(const char *method, int status, uint64_t ns) {
  if (P.r && P.slot) record_http("404", method, status, 1, ns);
}

/* --- the observer ------------------------------------------------------------------ */

static void prom_finish(void *ud, bp_span_t *span, const char *error) {
  (void)ud;
  bp_prom_record_span(span, error);
}

static void prom_child(void *ud, bp_span_t *span, bp_span_t *child);

static const bp_span_observer_t prom_span_vt = {.on_finish = prom_finish,
                                                .on_child_span_created = prom_child};

static void prom_child(void *ud, bp_span_t *span, bp_span_t *child) {
  (void)span;
  if (child->kind == BP_SPAN_CLIENT) bp_span_register(child, &prom_span_vt, ud);
}

static void prom_span_created(void *ud, bp_span_t *span) {
  bp_span_register(span, &prom_span_vt, ud);
}

int bp_prom_observe(bp_baseplate_t *bp) {
  static const bp_observer_t vt = {.on_server_span_created = prom_span_created};
  if (!P.r || !bp) return BP_EINVAL;
  return bp_baseplate_register(bp, &vt, NULL);
}

/* --- gauges ------------------------------------------------------------------------- */

static void store_double(double *p, double v) { __atomic_store(p, &v, __ATOMIC_RELAXED); }

static double load_double(const double *p) {
  double v;
  __atomic_load(p, &v, __ATOMIC_RELAXED);
  return v;
}

void bp_prom_set_runtime(double open_connections, double active_requests, double lua_memory_bytes,
                         double loop_lag_seconds) {
  slot_t *sl;
  if (!P.r || !P.slot) return;
  sl = slot_at(P.slot);
  store_double(&sl->rt[0], open_connections);
  store_double(&sl->rt[1], active_requests);
  store_double(&sl->rt[2], lua_memory_bytes);
  store_double(&sl->rt[3], loop_lag_seconds);
}

int bp_prom_set_pool(int i, const char *name, double size, double in_use, double waiters) {
  slot_t *sl;
  if (!P.r || !P.slot || i < 0 || i >= MAX_POOLS || !name) return BP_EINVAL;
  sl = slot_at(P.slot);
  /* (a reader may see a name being rewritten: pools are named once, at
   * the first report, and keep their place) */
  if (strncmp(sl->pools[i].name, name, sizeof sl->pools[i].name - 1) != 0) {
    sl->pools[i].family[0] = '\0';
    copy_label(sl->pools[i].name, sizeof sl->pools[i].name, name);
  }
  store_double(&sl->pools[i].size, size);
  store_double(&sl->pools[i].in_use, in_use);
  store_double(&sl->pools[i].waiters, waiters);
  if (LOAD(&sl->npools) < (uint32_t)i + 1) __atomic_store_n(&sl->npools, i + 1, __ATOMIC_RELEASE);
  return BP_OK;
}

/* Baseplate.py's pool gauges per client library: the family's label, and
 * which of size, in use, idle (for redis: size - in use, its free slots)
 * and open each gauge reports. */
enum { G_SIZE, G_IN_USE, G_IDLE, G_FREE, G_OPEN, G_NONE };
static const struct {
  const char *family, *label;
  int active, idle; /* G_*: what _active_connections and _idle_connections are */
} pool_families[] = {
    {"redis", "redis_pool", G_OPEN, G_FREE},
    {"sql", "sql_client_name", G_IN_USE, G_IDLE},
    {"memcached", "memcached_pool", G_IN_USE, G_IDLE},
    {"thrift", "thrift_pool", G_IN_USE, G_NONE},
};
#define NPOOL_FAMILIES (int)(sizeof pool_families / sizeof pool_families[0])

static int pool_family(const char *family) {
  for (int f = 0; f < NPOOL_FAMILIES; f++)
    if (!strcmp(family, pool_families[f].family)) return f;
  return -1;
}

int bp_prom_set_pool_family(int i, const char *family, double open, double idle) {
  slot_t *sl;
  if (!P.r || !P.slot || i < 0 || i >= MAX_POOLS || !family) return BP_EINVAL;
  sl = slot_at(P.slot);
  if (strcmp(sl->pools[i].family, family) != 0)
    copy_label(sl->pools[i].family, sizeof sl->pools[i].family,
               pool_family(family) >= 0 ? family : "");
  store_double(&sl->pools[i].open, open);
  store_double(&sl->pools[i].idle, idle);
  return BP_OK;
}

void bp_prom_set_npools(int n) {
  if (!P.r || !P.slot || n < 0 || n > MAX_POOLS) return;
  __atomic_store_n(&slot_at(P.slot)->npools, (uint32_t)n, __ATOMIC_RELEASE);
}

/* --- retiring a dead worker's slot ------------------------------------------------------ */

int bp_prom_retire(int slot) {
  slot_t *dead, *ret;
  uint32_t i, n, max;
  if (!P.r || slot < 1 || (uint32_t)slot > P.r->nslots) return BP_EINVAL;
  dead = slot_at(slot);
  ret = slot_at(0);
  max = P.r->max_series;
  n = __atomic_load_n(&dead->nseries, __ATOMIC_ACQUIRE);
  for (i = 0; i < n; i++) {
    series_t *from = &dead->series[i];
    series_t *to = find_series(ret, max - RESERVED, NULL, 0, from->kind, from->success, from->a,
                               from->b, from->c);
    if (!to) {
      to = find_series(ret, max, NULL, 0, from->kind, from->success, OVERFLOW, "", "");
      ret->overflowed += from->count;
    }
    if (to) add_sample(to, from->count, from->sum_ns, from->bucket);
  }
  ret->overflowed += dead->overflowed;
  ret->generation++;
  /* empty for the next worker (the introspection numbers go on) */
  dead->nseries = 0;
  dead->pid = 0;
  dead->overflowed = 0;
  memset(dead->rt, 0, sizeof dead->rt);
  dead->npools = 0;
  memset(dead->pools, 0, sizeof dead->pools);
  dead->generation++;
  if (slot == P.slot) memset(P.index, 0, (P.index_mask + 1) * sizeof *P.index);
  return BP_OK;
}

/* --- the scrape ------------------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
  if (o->oom) return;
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap ? o->cap : 16384;
    char *q;
    while (o->len + n + 1 > cap) cap *= 2;
    if (!(q = realloc(o->p, cap))) {
      o->oom = 1;
      return;
    }
    o->p = q;
    o->cap = cap;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void printf_(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(out_t *o, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void label(out_t *o, const char *name, const char *value, int comma) {
  if (comma) puts_(o, ",");
  puts_(o, name);
  puts_(o, "=\"");
  for (const char *p = value; *p; p++) {
    if (*p == '\\') puts_(o, "\\\\");
    else if (*p == '"') puts_(o, "\\\"");
    else if (*p == '\n') puts_(o, "\\n");
    else put(o, p, 1);
  }
  puts_(o, "\"");
}

typedef struct {
  const char *hist, *counter, *hist_help, *counter_help;
  const char *a, *b, *success, *c; /* label names; NULL: not a label */
  int b_counter_only; /* b labels the counter only (and the histogram sums over it) */
} family_t;

static const family_t families[K_COUNT + 1] = {
    [K_HTTP] = {"http_server_latency_seconds", "http_server_requests_total",
                "Time spent processing requests", "Total number of requests handled",
                "http_endpoint", "http_method", "http_success", "http_response_code"},
    [K_THRIFT] = {"thrift_server_latency_seconds", "thrift_server_requests_total",
                  "Time spent processing requests", "Total RPC request count", "thrift_method",
                  "thrift_baseplate_status_code", "thrift_success", "thrift_exception_type", 1},
    [K_SERVER] = {"baseplate_server_latency_seconds", "baseplate_server_requests_total",
                  "Time spent in server spans (queue consumers, scripts)",
                  "Total number of server spans", "endpoint", NULL, "success", "exception_type"},
    [K_CLIENT] = {"baseplate_client_latency_seconds", "baseplate_client_requests_total",
                  "Latency of calls made by clients", "Total number of calls made by clients",
                  "endpoint", "client", "success", NULL},
    [K_FAMILY] = {"_latency_seconds", "_requests_total", "Latency histogram of calls made by clients",
                  "Total number of requests made by clients", NULL, NULL, NULL, NULL},
};

static int b_in_hist(uint32_t kind) { return kind > K_COUNT || !families[kind].b_counter_only; }

/* Sorted so that a histogram's series are together: a label only the
 * counter has comes after the ones both have. */
static int cmp_series(const void *x, const void *y) {
  const series_t *s = *(series_t *const *)x, *t = *(series_t *const *)y;
  int r, b_first;
  if (s->kind != t->kind) return s->kind < t->kind ? -1 : 1;
  if (s->kind == K_FAMILY && (r = strcmp(s->b, t->b))) return r;
  b_first = b_in_hist(s->kind);
  if ((r = strcmp(s->a, t->a))) return r;
  if (b_first && (r = strcmp(s->b, t->b))) return r;
  if (s->success != t->success) return s->success < t->success ? -1 : 1;
  if ((r = strcmp(s->c, t->c))) return r;
  return b_first ? 0 : strcmp(s->b, t->b);
}

static int same_hist(const series_t *s, const series_t *t) {
  return s->kind == t->kind && s->success == t->success && !strcmp(s->a, t->a) &&
         (!b_in_hist(s->kind) || !strcmp(s->b, t->b));
}

/* baseplate.thrift's ErrorCode names, for thrift_baseplate_status. */
const char *bp_prom_error_code_name(int c) {
  static const struct {
    int code;
    const char *name;
  } names[] = {{400, "BAD_REQUEST"},
               {401, "UNAUTHORIZED"},
               {402, "PAYMENT_REQUIRED"},
               {403, "FORBIDDEN"},
               {404, "NOT_FOUND"},
               {409, "CONFLICT"},
               {410, "GONE"},
               {412, "PRECONDITION_FAILED"},
               {413, "PAYLOAD_TOO_LARGE"},
               {418, "IM_A_TEAPOT"},
               {421, "MISDIRECTED_REQUEST"},
               {422, "UNPROCESSABLE_ENTITY"},
               {423, "LOCKED"},
               {424, "FAILED_DEPENDENCY"},
               {425, "TOO_EARLY"},
               {428, "PRECONDITION_REQUIRED"},
               {429, "TOO_MANY_REQUESTS"},
               {431, "REQUEST_HEADER_FIELDS_TOO_LARGE"},
               {451, "UNAVAILABLE_FOR_LEGAL_REASONS"},
               {500, "INTERNAL_SERVER_ERROR"},
               {501, "NOT_IMPLEMENTED"},
               {502, "BAD_GATEWAY"},
               {503, "SERVICE_UNAVAILABLE"},
               {504, "TIMEOUT"},
               {507, "INSUFFICIENT_STORAGE"},
               {508, "LOOP_DETECTED"},
               {1000, "USER_DEFINED"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].code == c) return names[i].name;
  return "";
}

static void labels_of(out_t *o, const family_t *f, const series_t *s, int with_c) {
  int comma = 0;
  if (f->b && !f->b_counter_only) {
    label(o, f->b, s->b, comma);
    comma = 1;
  }
  label(o, f->a, s->a, comma);
  label(o, f->success, s->success ? "true" : "false", 1);
  if (with_c && f->c) label(o, f->c, s->c, 1);
  if (with_c && f->b && f->b_counter_only) {
    /* (Thrift: the error's code and its baseplate.thrift name) */
    label(o, "thrift_baseplate_status", bp_prom_error_code_name(atoi(s->b)), 1);
    label(o, f->b, s->b, 1);
  }
}

/* One histogram and one counter family over all[from, to), sorted so that
 * a histogram's series are together; `labels` writes a series' labels
 * (with_c: the counter's own too). */
typedef void (*labels_fn)(out_t *o, const void *ctx, const series_t *s, int with_c);

static void emit(out_t *o, const char *hist, const char *counter, const char *hist_help,
                 const char *counter_help, labels_fn labels, const void *ctx, series_t **all,
                 size_t from, size_t to) {
  size_t i, j;
  printf_(o, "# HELP %s %s\n# TYPE %s histogram\n", hist, hist_help, hist);
  for (i = from; i < to; i = j) {
    uint64_t b[NBUCKETS] = {0}, count = 0, sum = 0, cum = 0;
    for (j = i; j < to && same_hist(all[i], all[j]); j++) {
      for (int k = 0; k < NBUCKETS; k++) b[k] += LOAD(&all[j]->bucket[k]);
      sum += LOAD(&all[j]->sum_ns);
      count += LOAD(&all[j]->count);
    }
    for (int k = 0; k < NBUCKETS; k++) {
      cum += b[k];
      printf_(o, "%s_bucket{", hist);
      labels(o, ctx, all[i], 0);
      printf_(o, ",le=\"%s\"} %llu\n", bucket_le[k], (unsigned long long)cum);
    }
    /* (a worker may have counted a bucket and not yet its total) */
    if (count < cum) count = cum;
    printf_(o, "%s_bucket{", hist);
    labels(o, ctx, all[i], 0);
    printf_(o, ",le=\"+Inf\"} %llu\n%s_count{", (unsigned long long)count, hist);
    labels(o, ctx, all[i], 0);
    printf_(o, "} %llu\n%s_sum{", (unsigned long long)count, hist);
    labels(o, ctx, all[i], 0);
    printf_(o, "} %.9f\n", (double)sum / 1e9);
  }
  printf_(o, "# HELP %s %s\n# TYPE %s counter\n", counter, counter_help, counter);
  for (i = from; i < to; i = j) {
    uint64_t count = 0;
    for (j = i; j < to && cmp_series(&all[i], &all[j]) == 0; j++) count += LOAD(&all[j]->count);
    printf_(o, "%s{", counter);
    labels(o, ctx, all[i], 1);
    printf_(o, "} %llu\n", (unsigned long long)count);
  }
}

static void kind_labels(out_t *o, const void *ctx, const series_t *s, int with_c) {
  labels_of(o, ctx, s, with_c);
}

static void emit_kind(out_t *o, int kind, series_t **all, size_t from, size_t to) {
  const family_t *f = &families[kind];
  emit(o, f->hist, f->counter, f->hist_help, f->counter_help, kind_labels, f, all, from, to);
}

/* A family's labels: its own (already in the text format's form), the
 * success label named after the family (ctx: redis_client's is
 * redis_success), and with_c the counter's own. */
static void family_labels(out_t *o, const void *ctx, const series_t *s, int with_c) {
  puts_(o, s->a);
  if (s->a[0]) puts_(o, ",");
  label(o, ctx, s->success ? "true" : "false", 0);
  if (with_c && s->c[0]) {
    puts_(o, ",");
    puts_(o, s->c);
  }
}

/* The K_FAMILY series, sorted by family (b): each family's pair. */
static void emit_families(out_t *o, series_t **all, size_t from, size_t to) {
  const family_t *f = &families[K_FAMILY];
  size_t end;
  for (size_t start = from; start < to; start = end) {
    const char *fam = all[start]->b;
    char success[48], hist[64], counter[64];
    size_t flen = strlen(fam);
    for (end = start; end < to && !strcmp(all[end]->b, fam); end++) continue;
    if (flen > 7 && !strcmp(fam + flen - 7, "_client"))
      snprintf(success, sizeof success, "%.*s_success", (int)(flen - 7), fam);
    else
      snprintf(success, sizeof success, "%s_success", fam);
    snprintf(hist, sizeof hist, "%s%s", fam, f->hist);
    snprintf(counter, sizeof counter, "%s%s", fam, f->counter);
    emit(o, hist, counter, f->hist_help, f->counter_help, family_labels, success, all, start, end);
  }
}

static void gauge_family(out_t *o, const char *name, const char *help) {
  printf_(o, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

const char *bp_prom_scrape(size_t *len) {
  out_t o = {P.text, 0, P.text_cap, 0};
  series_t **all;
  size_t n = 0, i, j;
  uint32_t s, k, nslots;
  uint64_t overflowed = 0;
  static const char *const rt_names[4][2] = {
      {"baseplate_open_connections", "Connections open now"},
      {"baseplate_active_requests", "Requests in a handler now"},
      {"baseplate_lua_memory_bytes", "The Lua heap, bytes"},
      {"baseplate_loop_lag_seconds", "How late the event loop's last one-second timer fired"},
  };
  static const char *const pool_names[3][2] = {
      {"baseplate_client_pool_max_size", "Connections a client pool may open"},
      {"baseplate_client_pool_active_connections", "Connections of a client pool in use"},
      {"baseplate_client_pool_waiters", "Coroutines waiting for a connection of a client pool"},
  };
  if (!P.r) return NULL;
  nslots = P.r->nslots;
  for (s = 0; s <= nslots; s++) n += __atomic_load_n(&slot_at((int)s)->nseries, __ATOMIC_ACQUIRE);
  if (!(all = malloc((n ? n : 1) * sizeof *all))) return NULL;
  n = 0;
  for (s = 0; s <= nslots; s++) {
    slot_t *sl = slot_at((int)s);
    uint32_t ns = __atomic_load_n(&sl->nseries, __ATOMIC_ACQUIRE);
    for (k = 0; k < ns; k++) all[n++] = &sl->series[k];
    overflowed += LOAD(&sl->overflowed);
  }
  qsort(all, n, sizeof *all, cmp_series);
  for (i = 0; i < n; i = j) {
    for (j = i; j < n && all[j]->kind == all[i]->kind; j++) continue;
    if (all[i]->kind == K_FAMILY) emit_families(&o, all, i, j);
    else if (all[i]->kind >= 1 && all[i]->kind <= K_COUNT) emit_kind(&o, (int)all[i]->kind, all, i, j);
  }
  free(all);
  for (k = 0; k < 4; k++) {
    gauge_family(&o, rt_names[k][0], rt_names[k][1]);
    for (s = 1; s <= nslots; s++) {
      slot_t *sl = slot_at((int)s);
      if (!LOAD(&sl->pid)) continue;
      printf_(&o, "%s{worker=\"%u\"} %.17g\n", rt_names[k][0], s, load_double(&sl->rt[k]));
    }
  }
  /* the pools: -1 the generic gauges (pool_names), then each library's */
  for (int f = -1; f < NPOOL_FAMILIES; f++) {
    for (k = 0; k < 3; k++) {
      static const char *const suffix[3] = {"max_size", "active_connections", "idle_connections"};
      static const char *const help[3] = {"Maximum number of connections allowed in this pool",
                                          "Number of connections in use by this pool",
                                          "Number of idle connections in this pool"};
      char gauge[64];
      int what = k == 0 ? G_SIZE : f < 0 ? (k == 1 ? G_IN_USE : -1)
                 : k == 1 ? pool_families[f].active : pool_families[f].idle;
      if (f < 0) {
        gauge_family(&o, pool_names[k][0], pool_names[k][1]);
      } else {
        if (what == G_NONE) continue;
        snprintf(gauge, sizeof gauge, "%s_client_pool_%s", pool_families[f].family, suffix[k]);
        gauge_family(&o, gauge, help[k]);
      }
      for (s = 1; s <= nslots; s++) {
        slot_t *sl = slot_at((int)s);
        uint32_t np = __atomic_load_n(&sl->npools, __ATOMIC_ACQUIRE);
        if (!LOAD(&sl->pid)) continue;
        for (i = 0; i < np && i < MAX_POOLS; i++) {
          char name[64], family[16];
          double v, size = load_double(&sl->pools[i].size), in_use = load_double(&sl->pools[i].in_use);
          memcpy(family, sl->pools[i].family, sizeof family);
          family[sizeof family - 1] = '\0';
          /* (waiters: of every pool, a library's too) */
          if (pool_family(family) != f && !(f < 0 && k == 2)) continue;
          switch (what) {
          case G_SIZE: v = size; break;
          case G_IN_USE: v = in_use; break;
          case G_IDLE: v = load_double(&sl->pools[i].idle); break;
          case G_FREE: v = size > in_use ? size - in_use : 0; break;
          case G_OPEN: v = load_double(&sl->pools[i].open); break;
          default: v = load_double(&sl->pools[i].waiters); break; /* (generic: waiters) */
          }
          memcpy(name, sl->pools[i].name, sizeof name);
          name[sizeof name - 1] = '\0';
          printf_(&o, "%s{", f < 0 ? pool_names[k][0] : gauge);
          label(&o, f < 0 ? "pool" : pool_families[f].label, name, 0);
          printf_(&o, ",worker=\"%u\"} %.17g\n", s, v);
        }
      }
    }
  }
  printf_(&o,
          "# HELP baseplate_prometheus_overflow_total Spans counted under " OVERFLOW
          " because the label sets were full\n# TYPE baseplate_prometheus_overflow_total counter\n"
          "baseplate_prometheus_overflow_total %llu\n",
          (unsigned long long)overflowed);
  printf_(&o,
          "# HELP baseplate_workers_retired_total Worker processes that ended and whose counts "
          "were kept\n# TYPE baseplate_workers_retired_total counter\n"
          "baseplate_workers_retired_total %llu\n",
          (unsigned long long)LOAD(&slot_at(0)->generation));
  P.text = o.p;
  P.text_cap = o.cap;
  if (o.oom) return NULL;
  *len = o.len;
  return o.p ? o.p : "";
}

/* --- introspection across processes ------------------------------------------------------- */

uint64_t bp_prom_introspect_request(int slot) {
  slot_t *sl;
  if (!P.r || slot < 1 || (uint32_t)slot > P.r->nslots) return 0;
  sl = slot_at(slot);
  return __atomic_add_fetch(&sl->intro_req, 1, __ATOMIC_ACQ_REL);
}

uint64_t bp_prom_introspect_answer(int slot, const char **text, size_t *len) {
  slot_t *sl;
  uint64_t ans;
  if (!P.r || slot < 1 || (uint32_t)slot > P.r->nslots) return 0;
  sl = slot_at(slot);
  ans = __atomic_load_n(&sl->intro_ans, __ATOMIC_ACQUIRE);
  *text = sl->intro;
  *len = LOAD(&sl->intro_len);
  if (*len > BP_PROM_INTROSPECT_MAX) *len = BP_PROM_INTROSPECT_MAX;
  return ans;
}

int bp_prom_introspect_publish(const char *text, size_t len) {
  slot_t *sl;
  if (!P.r || !P.slot) return BP_EINVAL;
  sl = slot_at(P.slot);
  if (len > BP_PROM_INTROSPECT_MAX) len = BP_PROM_INTROSPECT_MAX;
  memcpy(sl->intro, text, len);
  STORE(&sl->intro_len, (uint64_t)len);
  __atomic_store_n(&sl->intro_ans, __atomic_load_n(&sl->intro_req, __ATOMIC_ACQUIRE),
                   __ATOMIC_RELEASE);
  return BP_OK;
}

int bp_prom_introspect_pending(void) {
  slot_t *sl;
  if (!P.r || !P.slot) return 0;
  sl = slot_at(P.slot);
  return __atomic_load_n(&sl->intro_req, __ATOMIC_ACQUIRE) !=
         __atomic_load_n(&sl->intro_ans, __ATOMIC_ACQUIRE);
}
