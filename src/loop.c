/* The process's event loop, and loop-level services (sleep). */
#include "runtime.h"
#include "internal.h"

#include <stdlib.h>

uv_loop_t *bp_loop(void) { return uv_default_loop(); }

void bp_loop_stop(void) { uv_stop(uv_default_loop()); }

double bp_now(void) { return (double)uv_now(uv_default_loop()) / 1000.0; }

double bp_monotonic(void) { return (double)uv_hrtime() / 1e9; }

/* A sleep and a timeout are one thing: a timer that wakes a waiter with a
 * status, freeing itself when it fires or is cancelled. */
struct bp_timeout_s {
  bp__closable_t closable;
  uv_timer_t timer;
  int waiter;
  int status;
};

static void timeout_closed(uv_handle_t *h) { free(h->data); }

static void timeout_fired(uv_timer_t *t) {
  bp_timeout_t *s = t->data;
  int waiter = s->waiter, status = s->status;
  uv_close((uv_handle_t *)t, timeout_closed);
  bp__vm_wake(waiter, status);
}

static void timeout_shutdown(bp__closable_t *c) { bp_timeout_cancel((bp_timeout_t *)c); }

static bp_timeout_t *timer_start(double seconds, int waiter, int status) {
  bp_timeout_t *s = malloc(sizeof *s);
  uint64_t ms;
  if (!s) return NULL;
  s->closable.magic = BP_CLOSABLE_MAGIC;
  s->closable.close = timeout_shutdown;
  s->waiter = waiter;
  s->status = status;
  uv_timer_init(uv_default_loop(), &s->timer);
  s->timer.data = s;
  ms = !(seconds > 0) ? 0 : (uint64_t)(seconds * 1000.0 + 0.5);
  uv_timer_start(&s->timer, timeout_fired, ms, 0);
  return s;
}

int bp_sleep(double seconds, int waiter) {
  return timer_start(seconds, waiter, BP_OK) ? BP_AGAIN : BP_ENOMEM;
}

bp_timeout_t *bp_timeout_start(double seconds, int waiter) {
  return timer_start(seconds, waiter, BP_ETIMEDOUT);
}

void bp_timeout_cancel(bp_timeout_t *t) {
  if (t && !uv_is_closing((uv_handle_t *)&t->timer)) uv_close((uv_handle_t *)&t->timer, timeout_closed);
}

static void close_walk(uv_handle_t *h, void *arg) {
  bp__closable_t *c = h->data;
  if (uv_is_closing(h)) return;
  if (c && c->magic == BP_CLOSABLE_MAGIC) {
    c->close(c);
    return;
  }
  uv_close(h, NULL);
}

void bp__loop_shutdown(void) {
  uv_loop_t *loop = uv_default_loop();
  /* Closing one owner may close others' handles; walk until quiet. */
  for (int i = 0; i < 4; i++) {
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(loop);
}
