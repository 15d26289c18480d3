/* Sockets that libraries own, watched on the loop (src/clients/watch.h). */
#include "clients/watch.h"

#include <stdlib.h>

static void on_poll(uv_poll_t *p, int status, int events) {
  bp__watch_t *w = (bp__watch_t *)p;
  if (status < 0) w->events = 0; /* (libuv stopped watching) */
  w->cb(w, status, events);
}

bp__watch_t *bp__watch_new(int fd, void *handle_data, void *owner, bp__watch_cb cb,
                           void (*closed)(bp__watch_t *w), int *rc) {
  bp__watch_t *w = calloc(1, sizeof *w);
  if (!w) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  if ((*rc = uv_poll_init_socket(uv_default_loop(), &w->poll, fd)) != 0) {
    free(w);
    return NULL;
  }
  w->poll.data = handle_data;
  w->fd = fd;
  w->owner = owner;
  w->cb = cb;
  w->closed = closed;
  return w;
}

int bp__watch_set(bp__watch_t *w, int events) {
  int rc = 0;
  if (events == w->events) return 0;
  rc = events ? uv_poll_start(&w->poll, events, on_poll) : uv_poll_stop(&w->poll);
  if (rc == 0) w->events = events;
  return rc;
}

void bp__watch_keep_loop(bp__watch_t *w, int keep) {
  if (keep)
    uv_ref((uv_handle_t *)&w->poll);
  else
    uv_unref((uv_handle_t *)&w->poll);
}

static void watch_closed(uv_handle_t *h) {
  bp__watch_t *w = (bp__watch_t *)h;
  if (w->closed) w->closed(w);
  free(w);
}

void bp__watch_close(bp__watch_t *w) { uv_close((uv_handle_t *)&w->poll, watch_closed); }
