/*
 * The Baseplate object and the built-in C observers.
 *
 * Where a metric leaves: the metrics observers below write each span's
 * lines into its server span's batch (bp_span_metrics) when the span
 * finishes, and the server span's finish hands the batch to the transport
 * (src/metrics.c), which packs many requests' lines into each datagram.
 */
#include "span_internal.h"
#include "internal.h"
#include "metrics_internal.h"
#include "baseplate/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  bp_observer_t vt;
  void *ud;
} observer_entry;

struct bp_baseplate_s {
  int refs; /* the owner's, and one per live span (spans use its observers) */
  char *service_name;
  observer_entry *obs;
  int nobs, cap_obs;
  bp_metrics_t *metrics; /* the metrics observer's transport, if there is one */
};

bp_baseplate_t *bp_baseplate_new(const char *service_name) {
  bp_baseplate_t *bp = calloc(1, sizeof *bp);
  if (!bp) return NULL;
  if (!(bp->service_name = strdup(service_name ? service_name : ""))) {
    free(bp);
    return NULL;
  }
  bp->refs = 1;
  return bp;
}

void bp__baseplate_ref(bp_baseplate_t *bp) { bp->refs++; }

/* The owner lets go; the object goes once no span needs it, and with it
 * its observers (each one's release, in the order they were registered). */
void bp_baseplate_free(bp_baseplate_t *bp) {
  int i;
  if (!bp || --bp->refs > 0) return;
  for (i = 0; i < bp->nobs; i++)
    if (bp->obs[i].vt.release) bp->obs[i].vt.release(bp->obs[i].ud);
  free(bp->obs);
  free(bp->service_name);
  free(bp);
}

const char *bp_baseplate_service_name(const bp_baseplate_t *bp) { return bp->service_name; }

bp_metrics_t *bp_baseplate_metrics(const bp_baseplate_t *bp) { return bp->metrics; }

int bp_baseplate_register(bp_baseplate_t *bp, const bp_observer_t *obs, void *ud) {
  if (bp->nobs == bp->cap_obs) {
    int cap = bp->cap_obs ? bp->cap_obs * 2 : 4;
    void *p = realloc(bp->obs, (size_t)cap * sizeof *bp->obs);
    if (!p) {
      if (obs->release) obs->release(ud);
      return BP_ENOMEM;
    }
    bp->obs = p;
    bp->cap_obs = cap;
  }
  bp->obs[bp->nobs].vt = *obs;
  bp->obs[bp->nobs].ud = ud;
  bp->nobs++;
  return BP_OK;
}

void bp__baseplate_server_span_created(bp_baseplate_t *bp, bp_span_t *span) {
  int i;
  for (i = 0; i < bp->nobs; i++)
    if (bp->obs[i].vt.on_server_span_created)
      bp->obs[i].vt.on_server_span_created(bp->obs[i].ud, span);
}

/* --- observer factories ------------------------------------------------------------ */

#define MAX_FACTORIES 32
static bp_observer_factory_t factories[MAX_FACTORIES];
static int nfactories;

int bp_observer_factory_register(const bp_observer_factory_t *f) {
  int i;
  if (!f || !f->name || !*f->name || !f->prefix || !*f->prefix || !f->create) return BP_EINVAL;
  for (i = 0; i < nfactories; i++)
    if (strcmp(factories[i].name, f->name) == 0) return BP_EINVAL;
  if (nfactories == MAX_FACTORIES) return BP_ETOOBIG;
  factories[nfactories++] = *f;
  return BP_OK;
}

int bp_observer_factory_count(void) { return nfactories; }

const bp_observer_factory_t *bp_observer_factory_at(int i) {
  return i >= 0 && i < nfactories ? &factories[i] : NULL;
}

/* --- metrics observers ------------------------------------------------------------ */

#define MAX_ALLOW 32
#define MAX_TAGS (MAX_ALLOW + 3)

/* The keys of one span name's lines, checked and formatted once: a request
 * whose span has no allowlisted tags reuses them. */
#define KEY_CACHE 64
typedef struct {
  char name[128]; /* "" for an empty slot */
  int kind;
  int ok;           /* the keys could be prepared */
  bp__metric_key_t timer, success, failure;
} key_set_t;

typedef struct {
  key_set_t cache[KEY_CACHE];
  key_set_t *last; /* the slot cached_keys found last */
  bp_metrics_t *transport;
  char *namespace_;
  int tagging;
  double rate;
  char *allow_buf;
  const char *allow[MAX_ALLOW];
  int nallow;
  bp_metrics_batch_t *free_batches[16];
  int nfree;
} metrics_observer_t;

static void metrics_observer_free(void *ud) {
  metrics_observer_t *m = ud;
  if (!m) return;
  while (m->nfree > 0) bp_metrics_batch_free(m->free_batches[--m->nfree]);
  free(m->namespace_);
  free(m->allow_buf);
  free(m);
}

static void batch_release(void *ud, bp_metrics_batch_t *b) {
  metrics_observer_t *m = ud;
  if (m->nfree < (int)BP_ARRAY_SIZE(m->free_batches)) m->free_batches[m->nfree++] = b;
  else bp_metrics_batch_free(b);
}

static double span_ms(const bp_span_t *s) { return bp_span_duration(s) * 1000.0; }

/* The root's batch goes out when the root finishes; a child finishing after
 * its root sends its own lines at once. */
static void flush_if_done(bp_span_t *span) {
  bp_span_t *root = bp_span_root(span);
  if (root->state == 2 && root->batch) bp_metrics_batch_flush(root->batch);
}

static int build_keys(const metrics_observer_t *m, key_set_t *k, const bp_span_t *s);

/* The key set for span s, from the cache (built on a miss); NULL if its
 * lines need the general path. */
static key_set_t *cached_keys(metrics_observer_t *m, const bp_span_t *s) {
  const char *name = bp_span_name(s);
  uint32_t h = 2166136261u;
  size_t len;
  key_set_t *k = m->last;
  /* a service serving one route many times in a row: no hashing */
  if (k && k->kind == s->kind && strcmp(k->name, name) == 0) return k->ok ? k : NULL;
  len = strlen(name);
  if (len >= sizeof m->cache[0].name || s->kind == BP_SPAN_LOCAL) return NULL;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)name[i]) * 16777619u;
  k = &m->cache[(h ^ (uint32_t)s->kind) % KEY_CACHE];
  if (k->kind != s->kind || strcmp(k->name, name) != 0) {
    memcpy(k->name, name, len + 1);
    k->kind = s->kind;
    k->ok = build_keys(m, k, s) == BP_OK;
  }
  m->last = k;
  return k->ok ? k : NULL;
}

static void untagged_finish(void *ud, bp_span_t *s, const char *error) {
  metrics_observer_t *m = ud;
  bp_metrics_batch_t *b = bp_span_metrics(s);
  char name[512];
  const char *sname = bp_span_name(s);
  int i, n;
  double total;
  const char *key;
  key_set_t *k;
  if (!b) return;
  if (s->nctrs == 0 && !(s->kind == BP_SPAN_SERVER && (error || bp_span_get_tag(s, "timed_out", NULL))) &&
      (k = cached_keys(m, s))) {
    if (s->kind == BP_SPAN_SERVER) {
      bp__metrics_span_done(b, &k->timer, span_ms(s), error ? &k->failure : &k->success, m->rate);
      return;
    }
    bp__metrics_timer_prepared(b, &k->timer, span_ms(s), m->rate);
    bp__metrics_counter_prepared(b, error ? &k->failure : &k->success, 1, m->rate);
    flush_if_done(s);
    return;
  }
  switch (s->kind) {
  case BP_SPAN_SERVER:
    snprintf(name, sizeof name, "server.%s", sname);
    break;
  case BP_SPAN_CLIENT:
    snprintf(name, sizeof name, "clients.%s", sname);
    break;
  default:
    snprintf(name, sizeof name, "%s.%s", bp_span_component(s) ? bp_span_component(s) : "", sname);
    break;
  }
  bp_metrics_timer(b, name, NULL, 0, span_ms(s), m->rate);
  if (s->kind != BP_SPAN_LOCAL) {
    size_t len = strlen(name);
    snprintf(name + len, sizeof name - len, error ? ".failure" : ".success");
    bp_metrics_counter(b, name, NULL, 0, 1, m->rate);
    name[len] = '\0';
    if (s->kind == BP_SPAN_SERVER) {
      const char *t = bp_span_get_tag(s, "timed_out", NULL);
      if (t && (strcmp(t, "True") == 0 || strcmp(t, "true") == 0)) {
        snprintf(name + len, sizeof name - len, ".timed_out");
        bp_metrics_counter(b, name, NULL, 0, 1, m->rate);
      }
      if (error) {
        snprintf(name, sizeof name, "errors.%s", error);
        bp_metrics_counter(b, name, NULL, 0, 1, m->rate);
      }
    }
  }
  n = bp__span_counter_count(s);
  for (i = 0; i < n; i++) {
    key = bp__span_counter_at(s, i, &total);
    bp_metrics_counter(b, key, NULL, 0, total, m->rate);
  }
  if (s->kind == BP_SPAN_SERVER) bp_metrics_batch_flush(b);
  else flush_if_done(s);
}

static int allowed(const metrics_observer_t *m, const char *key) {
  int i;
  for (i = 0; i < m->nallow; i++)
    if (strcmp(m->allow[i], key) == 0) return 1;
  return 0;
}

static int tag_value_ok(const char *v) { return v[0] && !strpbrk(v, ",=:|\n"); }

/* The tags every line of span s carries in tagged mode (endpoint, or client
 * and endpoint), and its metric names. `client` holds the client part. */
static size_t base_tags(const bp_span_t *s, bp_metric_tag_t *tags, char *client, size_t csize,
                        const char **latency, const char **rate) {
  const char *sname = bp_span_name(s), *dot;
  size_t nt = 0;
  switch (s->kind) {
  case BP_SPAN_SERVER:
    *latency = "baseplate.server.latency";
    *rate = "baseplate.server.rate";
    tags[nt].key = "endpoint";
    tags[nt++].value = sname;
    break;
  case BP_SPAN_CLIENT:
    *latency = "baseplate.client.latency";
    *rate = "baseplate.client.rate";
    dot = strchr(sname, '.');
    if (dot && (size_t)(dot - sname) < csize) {
      memcpy(client, sname, (size_t)(dot - sname));
      client[dot - sname] = '\0';
      tags[nt].key = "client";
      tags[nt++].value = client;
      tags[nt].key = "endpoint";
      tags[nt++].value = dot + 1;
    } else {
      tags[nt].key = "client";
      tags[nt++].value = sname;
    }
    break;
  default:
    *latency = "baseplate.local.latency";
    *rate = "baseplate.local.rate";
    tags[nt].key = "endpoint";
    tags[nt++].value = sname;
    break;
  }
  return nt;
}

static int build_keys(const metrics_observer_t *m, key_set_t *k, const bp_span_t *s) {
  char client[128], name[300];
  const char *sname = bp_span_name(s), *latency, *rate;
  bp_metric_tag_t tags[4];
  size_t nt;
  int rc;
  if (m->tagging) {
    nt = base_tags(s, tags, client, sizeof client, &latency, &rate);
    if ((rc = bp__metric_key_prepare(&k->timer, latency, tags, nt)) != BP_OK) return rc;
    tags[nt].key = "success";
    tags[nt].value = "True";
    if ((rc = bp__metric_key_prepare(&k->success, rate, tags, nt + 1)) != BP_OK) return rc;
    tags[nt].value = "False";
    return bp__metric_key_prepare(&k->failure, rate, tags, nt + 1);
  }
  snprintf(name, sizeof name, "%s.%s", s->kind == BP_SPAN_SERVER ? "server" : "clients", sname);
  if ((rc = bp__metric_key_prepare(&k->timer, name, NULL, 0)) != BP_OK) return rc;
  snprintf(name, sizeof name, "%s.%s.success", s->kind == BP_SPAN_SERVER ? "server" : "clients", sname);
  if ((rc = bp__metric_key_prepare(&k->success, name, NULL, 0)) != BP_OK) return rc;
  snprintf(name, sizeof name, "%s.%s.failure", s->kind == BP_SPAN_SERVER ? "server" : "clients", sname);
  return bp__metric_key_prepare(&k->failure, name, NULL, 0);
}

/* Whether span s has a tag the allowlist passes (the general path then). */
static int has_allowed_tag(const metrics_observer_t *m, const bp_span_t *s) {
  int i, n = m->nallow ? bp__span_tag_count(s) : 0;
  for (i = 0; i < n; i++) {
    const char *key = bp__span_tag_at(s, i, NULL, NULL);
    if (allowed(m, key)) return 1;
  }
  return 0;
}

static void tagged_finish(void *ud, bp_span_t *s, const char *error) {
  metrics_observer_t *m = ud;
  bp_metrics_batch_t *b = bp_span_metrics(s);
  bp_metric_tag_t tags[MAX_TAGS];
  size_t nt, base;
  char client[256];
  const char *latency, *rate, *key, *value;
  key_set_t *k;
  int i, n, type;
  double total;
  if (!b) return;
  if (s->nctrs == 0 && !has_allowed_tag(m, s) && (k = cached_keys(m, s))) {
    if (s->kind == BP_SPAN_SERVER) {
      bp__metrics_span_done(b, &k->timer, span_ms(s), error ? &k->failure : &k->success, m->rate);
      return;
    }
    bp__metrics_timer_prepared(b, &k->timer, span_ms(s), m->rate);
    bp__metrics_counter_prepared(b, error ? &k->failure : &k->success, 1, m->rate);
    flush_if_done(s);
    return;
  }
  nt = base_tags(s, tags, client, sizeof client, &latency, &rate);
  n = bp__span_tag_count(s);
  for (i = 0; i < n && nt < MAX_TAGS - 1; i++) {
    key = bp__span_tag_at(s, i, &value, &type);
    if (strcmp(key, "endpoint") == 0 || strcmp(key, "client") == 0 || strcmp(key, "success") == 0)
      continue;
    if (!allowed(m, key) || !tag_value_ok(value)) continue;
    tags[nt].key = key;
    tags[nt++].value = value;
  }
  base = nt;
  bp_metrics_timer(b, latency, tags, base, span_ms(s), m->rate);
  tags[nt].key = "success";
  tags[nt++].value = error ? "False" : "True";
  bp_metrics_counter(b, rate, tags, nt, 1, m->rate);
  n = bp__span_counter_count(s);
  for (i = 0; i < n; i++) {
    key = bp__span_counter_at(s, i, &total);
    bp_metrics_counter(b, key, tags, base, total, m->rate);
  }
  if (s->kind == BP_SPAN_SERVER) bp_metrics_batch_flush(b);
  else flush_if_done(s);
}

/* A server span left out by sampling still flushes what the handler sent
 * through request.metrics. */
static void flush_finish(void *ud, bp_span_t *s, const char *error) {
  (void)ud;
  (void)error;
  if (s->kind == BP_SPAN_SERVER && s->batch) bp_metrics_batch_flush(s->batch);
}

static void untagged_child(void *ud, bp_span_t *span, bp_span_t *child);
static void tagged_child(void *ud, bp_span_t *span, bp_span_t *child);

static const bp_span_observer_t untagged_vt = {
    .on_finish = untagged_finish, .on_child_span_created = untagged_child};
static const bp_span_observer_t tagged_vt = {
    .on_finish = tagged_finish, .on_child_span_created = tagged_child};
static const bp_span_observer_t flush_vt = {.on_finish = flush_finish};

static void untagged_child(void *ud, bp_span_t *span, bp_span_t *child) {
  (void)span;
  bp_span_register(child, &untagged_vt, ud);
}

static void tagged_child(void *ud, bp_span_t *span, bp_span_t *child) {
  (void)span;
  bp_span_register(child, &tagged_vt, ud);
}

static void metrics_span_created(void *ud, bp_span_t *span) {
  metrics_observer_t *m = ud;
  bp_metrics_batch_t *b = m->nfree > 0 ? m->free_batches[--m->nfree]
                                       : bp_metrics_batch_new(m->transport, m->namespace_);
  if (!b) return;
  bp__span_attach_batch(span, b, batch_release, m);
  if (m->rate < 1.0 && bp__random_unit() >= m->rate) {
    bp_span_register(span, &flush_vt, m);
    return;
  }
  bp_span_register(span, m->tagging ? &tagged_vt : &untagged_vt, m);
}

int bp_baseplate_add_metrics_observer(bp_baseplate_t *bp, bp_metrics_t *transport,
                                      const bp_metrics_observer_options_t *o, char *err,
                                      size_t errlen) {
  metrics_observer_t *m;
  bp_observer_t vt = {.on_server_span_created = metrics_span_created,
                      .release = metrics_observer_free};
  const char *ns = o->namespace_ ? o->namespace_ : "";
  if (bp->metrics) {
    snprintf(err, errlen, "the metrics observer is already configured");
    return BP_EINVAL;
  }
  if (o->tagging && *ns) {
    snprintf(err, errlen, "metrics.namespace: cannot be combined with metrics.tagging");
    return BP_EINVAL;
  }
  if (!(o->sample_rate > 0 && o->sample_rate <= 1)) {
    snprintf(err, errlen, "metrics_observer.sample_rate: must be above 0%% and at most 100%%");
    return BP_EINVAL;
  }
  if (!(m = calloc(1, sizeof *m))) goto oom;
  m->transport = transport;
  m->tagging = o->tagging;
  m->rate = o->sample_rate;
  if (!(m->namespace_ = strdup(o->tagging ? "" : ns))) goto oom;
  if (o->allowlist && *o->allowlist) {
    char *p, *save = NULL, *tok;
    if (!(m->allow_buf = strdup(o->allowlist))) goto oom;
    for (p = m->allow_buf; (tok = strtok_r(p, ", \t", &save)); p = NULL) {
      if (m->nallow == MAX_ALLOW) {
        snprintf(err, errlen, "metrics.allowlist: at most %d tags", MAX_ALLOW);
        metrics_observer_free(m);
        return BP_EINVAL;
      }
      m->allow[m->nallow++] = tok;
    }
  }
  if (bp_baseplate_register(bp, &vt, m) != BP_OK) { /* (it released m) */
    snprintf(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  bp->metrics = transport;
  return BP_OK;
oom:
  metrics_observer_free(m);
  snprintf(err, errlen, "out of memory");
  return BP_ENOMEM;
}
