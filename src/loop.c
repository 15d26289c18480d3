/* The process's event loop, and loop-level services (sleep). */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

uv_loop_t *bp_loop(void) { return uv_default_loop(); }

void bp_loop_stop(void) { uv_stop(uv_default_loop()); }

/* The clock baseplate's code reads (bp_now, bp_time): the loop's and the
 * system's, unless a test froze it or moved it on (baseplate.testing). */
static struct {
  int frozen;
  double offset;            /* added to both while not frozen */
  double frozen_now, frozen_time;
} clk;

static double wall_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bp_now(void) {
  if (clk.frozen) return clk.frozen_now;
  return (double)uv_now(uv_default_loop()) / 1000.0 + clk.offset;
}

double bp_time(void) {
  if (clk.frozen) return clk.frozen_time;
  return wall_clock() + clk.offset;
}

void bp_clock_freeze(int on) {
  if (on && !clk.frozen) {
    clk.frozen_now = bp_now();
    clk.frozen_time = bp_time();
  }
  clk.frozen = on != 0;
}

void bp_clock_advance(double seconds) {
  if (!(seconds == seconds)) return; /* NaN: no move */
  clk.offset += seconds;
  clk.frozen_now += seconds;
  clk.frozen_time += seconds;
}

void bp_clock_reset(void) {
  clk.frozen = 0;
  clk.offset = 0;
}

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
  /* from now: libuv counts from the loop's cached time, which code that
   * ran long since the loop last woke has left behind */
  uv_update_time(uv_default_loop());
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

void bp_timeout_unref(bp_timeout_t *t) {
  if (t) uv_unref((uv_handle_t *)&t->timer);
}

/* --- edge-triggered readiness (see runtime.h) ------------------------------------- */

#define EDGE_ROUNDS 4
#define EDGE_BUDGET 256

static struct {
  bp__closable_t closable;
  uv_poll_t poll; /* the loop watches the set's own descriptor */
  int epfd;       /* -1: not open */
  struct epoll_event batch[256]; /* the events being dispatched */
  int next, count;
} edge = {.epfd = -1};

static void edge_dispatch(uv_poll_t *p, int status, int events) {
  (void)p;
  (void)status;
  (void)events;
  /* A busy server finds more sockets ready by the time it has served a
   * round: serve them now, up to EDGE_ROUNDS rounds or EDGE_BUDGET events,
   * rather than going around libuv's loop (its own epoll_wait and phases)
   * for each small round. Timers and other handles wait that long at most. */
  int served = 0;
  for (int round = 0; round < EDGE_ROUNDS && served < EDGE_BUDGET; round++) {
    edge.count = epoll_wait(edge.epfd, edge.batch, (int)(sizeof edge.batch / sizeof edge.batch[0]), 0);
    if (edge.count <= 0) break;
    served += edge.count;
    for (edge.next = 0; edge.next < edge.count;) {
      struct epoll_event *ev = &edge.batch[edge.next++];
      bp__edge_t *e = ev->data.ptr;
      if (e) e->cb(e, (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
    }
  }
  edge.count = edge.next = 0;
}

static void edge_closed(uv_handle_t *h) {
  (void)h;
  close(edge.epfd);
  edge.epfd = -1;
}

static void edge_shutdown(bp__closable_t *c) {
  (void)c;
  uv_close((uv_handle_t *)&edge.poll, edge_closed);
}

static int edge_open(void) {
  int rc;
  if ((edge.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) return -errno;
  edge.closable.magic = BP_CLOSABLE_MAGIC;
  edge.closable.close = edge_shutdown;
  if ((rc = uv_poll_init(uv_default_loop(), &edge.poll, edge.epfd)) != 0) {
    close(edge.epfd);
    edge.epfd = -1;
    return rc;
  }
  edge.poll.data = &edge.closable;
  uv_unref((uv_handle_t *)&edge.poll); /* the watched sockets' owners keep the loop alive */
  return uv_poll_start(&edge.poll, UV_READABLE, edge_dispatch);
}

int bp__edge_add(bp__edge_t *e, int fd, void (*cb)(bp__edge_t *e, int hangup)) {
  struct epoll_event ev;
  int rc;
  e->fd = -1;
  e->cb = cb;
  if (edge.epfd < 0 && (rc = edge_open()) != 0) return rc;
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = e;
  if (epoll_ctl(edge.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return -errno;
  e->fd = fd;
  return 0;
}

void bp__edge_remove(bp__edge_t *e) {
  if (e->fd < 0) return;
  if (edge.epfd >= 0) {
    (void)epoll_ctl(edge.epfd, EPOLL_CTL_DEL, e->fd, NULL);
    for (int i = edge.next; i < edge.count; i++)
      if (edge.batch[i].data.ptr == e) edge.batch[i].data.ptr = NULL;
  }
  e->fd = -1;
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
