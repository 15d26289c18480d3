/*
 * Lua observers: one C observer that forwards span events to Lua.
 *
 * Observers are C (bp_observer_t, bp_span_observer_t); a Lua observer is not
 * a second kind but a listener behind this one. A Baseplate with Lua
 * observers (baseplate.Baseplate:register) registers the forwarder, which
 * watches every server span and child span of that Baseplate as any C
 * observer does, and queues each event it sees — the core's tags, C routes'
 * spans, failures the core decides (a 5xx) included — with a reference to
 * the span. Lua takes the queue (bp_observer_events_take) and calls its
 * observers, in the order the events happened:
 *
 * - right after any call of the Lua span API (baseplate.span checks the
 *   pending count, one load), so that events Lua code causes reach Lua
 *   observers before that code goes on, as a direct call would;
 * - when a Lua job starts (the request's own span was made by the core just
 *   before);
 * - at the end of each loop iteration, from a uv_check handle, for events
 *   no Lua code follows (a C route, a span the core finishes after the
 *   response). The core never calls Lua from inside an FFI call, so events
 *   raised inside one (a span finished by bp_response_send) wait for one of
 *   these points.
 *
 * When a span is freed the forwarder queues RELEASED with its address, so
 * that Lua can forget what it kept for it before the address is reused.
 */
#include "span_internal.h"
#include "internal.h"
#include "runtime.h"
#include "baseplate/log.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  int type, tag_type;
  bp_span_t *span, *child; /* references (NULL for RELEASED) */
  uintptr_t addr;
  size_t a, b; /* offsets into the batch's strings; (size_t)-1 for none */
  double delta;
} queued_t;

typedef struct {
  queued_t *ev;
  int n, cap;
  char *str;
  size_t slen, scap;
} batch_t;

static struct {
  bp__closable_t closable; /* first: bp__loop_shutdown() finds it through the handle's data */
  uv_check_t check;
  int check_init, closing;
  batch_t cur, taken;         /* being filled; handed to Lua by the last take */
  bp_observer_event_t *out;   /* the taken batch as Lua reads it */
  int out_cap;
  int pending;                /* cur.n, read by Lua through a pointer */
} q;

static size_t str_put(batch_t *b, const char *s) {
  size_t len, off;
  if (!s) return (size_t)-1;
  len = strlen(s);
  if (b->slen + len + 1 > b->scap) {
    size_t cap = b->scap ? b->scap * 2 : 1024;
    char *p;
    while (cap < b->slen + len + 1) cap *= 2;
    if (!(p = realloc(b->str, cap))) return (size_t)-2;
    b->str = p;
    b->scap = cap;
  }
  off = b->slen;
  memcpy(b->str + off, s, len + 1);
  b->slen += len + 1;
  return off;
}

static void on_check(uv_check_t *h);

/* The loop delivers what is queued at the end of this iteration. */
static void arm(void) {
  if (!q.check_init) return;
  if (!uv_is_active((uv_handle_t *)&q.check)) uv_check_start(&q.check, on_check);
}

static void push(int type, bp_span_t *span, bp_span_t *child, const char *a, const char *b,
                 int tag_type, double delta) {
  queued_t *e;
  size_t sa, sb;
  if (q.closing) return;
  if (q.cur.n == q.cur.cap) {
    int cap = q.cur.cap ? q.cur.cap * 2 : 64;
    void *p = realloc(q.cur.ev, (size_t)cap * sizeof *q.cur.ev);
    if (!p) goto oom;
    q.cur.ev = p;
    q.cur.cap = cap;
  }
  if ((sa = str_put(&q.cur, a)) == (size_t)-2 || (sb = str_put(&q.cur, b)) == (size_t)-2) goto oom;
  e = &q.cur.ev[q.cur.n++];
  e->type = type;
  e->tag_type = tag_type;
  e->addr = (uintptr_t)span;
  e->span = type == BP_OBSERVE_RELEASED ? NULL : bp_span_ref(span);
  e->child = child ? bp_span_ref(child) : NULL;
  e->a = sa;
  e->b = sb;
  e->delta = delta;
  q.pending = q.cur.n;
  arm();
  return;
oom:
  bp_log(BP_LOG_ERROR, "baseplate.observers", "out of memory: a span event was not passed to the Lua observers");
}

/* --- the forwarder: a C observer like any other -------------------------------- */

static void fw_start(void *ud, bp_span_t *s) {
  (void)ud;
  push(BP_OBSERVE_START, s, NULL, NULL, NULL, 0, 0);
}
static void fw_set_tag(void *ud, bp_span_t *s, const char *key, const char *value, int type) {
  (void)ud;
  push(BP_OBSERVE_SET_TAG, s, NULL, key, value, type, 0);
}
static void fw_incr_tag(void *ud, bp_span_t *s, const char *key, double delta) {
  (void)ud;
  push(BP_OBSERVE_INCR_TAG, s, NULL, key, NULL, 0, delta);
}
static void fw_log(void *ud, bp_span_t *s, const char *name, const char *payload) {
  (void)ud;
  push(BP_OBSERVE_LOG, s, NULL, name, payload, 0, 0);
}
static void fw_finish(void *ud, bp_span_t *s, const char *error) {
  (void)ud;
  push(BP_OBSERVE_FINISH, s, NULL, error, NULL, 0, 0);
}
static void fw_child(void *ud, bp_span_t *s, bp_span_t *child);
/* ud is the span itself: when it is freed, Lua hears its address. */
static void fw_release(void *ud) { push(BP_OBSERVE_RELEASED, ud, NULL, NULL, NULL, 0, 0); }

static const bp_span_observer_t fw_vt = {
    .on_start = fw_start,
    .on_set_tag = fw_set_tag,
    .on_incr_tag = fw_incr_tag,
    .on_log = fw_log,
    .on_finish = fw_finish,
    .on_child_span_created = fw_child,
    .release = fw_release,
};

static void fw_child(void *ud, bp_span_t *s, bp_span_t *child) {
  (void)ud;
  push(BP_OBSERVE_CHILD, s, child, NULL, NULL, 0, 0);
  bp_span_register(child, &fw_vt, child);
}

static void fw_span_created(void *ud, bp_span_t *s) {
  (void)ud;
  push(BP_OBSERVE_CREATED, s, NULL, NULL, NULL, 0, 0);
  bp_span_register(s, &fw_vt, s);
}

/* --- the queue's loop handle ------------------------------------------------------ */

static void on_check(uv_check_t *h) {
  if (q.cur.n == 0) {
    uv_check_stop(h);
    return;
  }
  bp__vm_dispatch(BP__PROTOCOL_OBSERVE, NULL, 0);
  if (q.cur.n == 0) uv_check_stop(h);
}

static void release_batch(batch_t *b) {
  int i, n = b->n;
  b->n = 0; /* (dropping a reference may free a span, whose RELEASED goes to cur) */
  b->slen = 0;
  for (i = 0; i < n; i++) {
    bp_span_unref(b->ev[i].span);
    bp_span_unref(b->ev[i].child);
  }
}

static void check_closed(uv_handle_t *h) { (void)h; }

/* Loop shutdown: what was not delivered is dropped (bp__observe_flush runs
 * before it), and nothing more is queued. */
static void check_close(bp__closable_t *c) {
  (void)c;
  q.closing = 1;
  release_batch(&q.taken);
  release_batch(&q.cur);
  q.pending = 0;
  free(q.cur.ev);
  free(q.cur.str);
  free(q.taken.ev);
  free(q.taken.str);
  free(q.out);
  memset(&q.cur, 0, sizeof q.cur);
  memset(&q.taken, 0, sizeof q.taken);
  q.out = NULL;
  q.out_cap = 0;
  q.check_init = 0;
  uv_close((uv_handle_t *)&q.check, check_closed);
}

static int check_open(void) {
  if (q.check_init) return BP_OK;
  if (uv_check_init(bp_loop(), &q.check) != 0) return BP_ERROR;
  q.closable.magic = BP_CLOSABLE_MAGIC;
  q.closable.close = check_close;
  q.check.data = &q.closable;
  uv_unref((uv_handle_t *)&q.check); /* delivering events never keeps a process alive */
  q.check_init = 1;
  q.closing = 0;
  return BP_OK;
}

void bp__observe_flush(void) {
  if (q.cur.n > 0 && !q.closing) bp__vm_dispatch(BP__PROTOCOL_OBSERVE, NULL, 0);
}

/* --- the API Lua uses -------------------------------------------------------------- */

int bp_baseplate_forward_to_lua(bp_baseplate_t *bp) {
  bp_observer_t vt = {.on_server_span_created = fw_span_created};
  int rc = check_open();
  if (rc != BP_OK) return rc;
  return bp_baseplate_register(bp, &vt, NULL);
}

int bp_span_forward_to_lua(bp_span_t *s) {
  int i, rc = check_open();
  if (rc != BP_OK) return rc;
  for (i = 0; i < s->nobs; i++)
    if (s->obs[i].vt == &fw_vt) return BP_DECLINED;
  return bp_span_register(s, &fw_vt, s);
}

const int *bp_observer_events_pending(void) { return &q.pending; }

const bp_observer_event_t *bp_observer_events_take(int *n) {
  batch_t t;
  int i;
  /* The previous batch is done with: drop its references first (which may
   * queue RELEASED events), then hand over what is queued. */
  release_batch(&q.taken);
  *n = 0;
  if (q.cur.n == 0) return NULL;
  if (q.cur.n > q.out_cap) {
    int cap = q.out_cap ? q.out_cap : 64;
    void *p;
    while (cap < q.cur.n) cap *= 2;
    if (!(p = realloc(q.out, (size_t)cap * sizeof *q.out))) return NULL; /* (kept for later) */
    q.out = p;
    q.out_cap = cap;
  }
  t = q.taken;
  q.taken = q.cur;
  q.cur = t;
  q.pending = 0;
  for (i = 0; i < q.taken.n; i++) {
    const queued_t *e = &q.taken.ev[i];
    bp_observer_event_t *o = &q.out[i];
    o->type = e->type;
    o->tag_type = e->tag_type;
    o->span = e->span;
    o->child = e->child;
    o->addr = e->addr;
    o->a = e->a == (size_t)-1 ? NULL : q.taken.str + e->a;
    o->b = e->b == (size_t)-1 ? NULL : q.taken.str + e->b;
    o->delta = e->delta;
  }
  *n = q.taken.n;
  return q.out;
}
