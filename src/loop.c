/* The process's event loop, and loop-level services (sleep). */
#include "runtime.h"
#include "internal.h"

#include <stdlib.h>

uv_loop_t *bp_loop(void) { return uv_default_loop(); }

void bp_loop_stop(void) { uv_stop(uv_default_loop()); }

double bp_now(void) { return (double)uv_now(uv_default_loop()) / 1000.0; }

double bp_monotonic(void) { return (double)uv_hrtime() / 1e9; }

typedef struct {
  bp__closable_t closable;
  uv_timer_t timer;
  int waiter;
} bp_sleep_t;

static void sleep_closed(uv_handle_t *h) { free(h->data); }

static void sleep_fired(uv_timer_t *t) {
  bp_sleep_t *s = t->data;
  int waiter = s->waiter;
  uv_close((uv_handle_t *)t, sleep_closed);
  bp__vm_wake(waiter, BP_OK);
}

static void sleep_cancel(bp__closable_t *c) {
  bp_sleep_t *s = (bp_sleep_t *)c;
  uv_close((uv_handle_t *)&s->timer, sleep_closed);
}

int bp_sleep(double seconds, int waiter) {
  bp_sleep_t *s = malloc(sizeof *s);
  uint64_t ms;
  if (!s) return BP_ENOMEM;
  s->closable.magic = BP_CLOSABLE_MAGIC;
  s->closable.close = sleep_cancel;
  s->waiter = waiter;
  uv_timer_init(uv_default_loop(), &s->timer);
  s->timer.data = s;
  ms = seconds <= 0 ? 0 : (uint64_t)(seconds * 1000.0 + 0.5);
  uv_timer_start(&s->timer, sleep_fired, ms, 0);
  return BP_AGAIN;
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
