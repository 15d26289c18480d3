/* One exchange with a server over a socket pair (baseplate/testing.h). */
#include "baseplate/testing.h"
#include "internal.h"
#include "runtime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct bp_test_exchange_s {
  uv_pipe_t pipe;
  uv_write_t wreq;
  char *request; /* our copy, until written */
  char *buf;     /* the response */
  size_t len, cap, max;
  int waiter;
  int status;    /* the outcome, once over */
  int open;      /* the pipe handle is not closed yet */
  int over;
  int abandoned; /* freed by its owner before it was over */
};

static void closed(uv_handle_t *h) {
  bp_test_exchange_t *x = h->data;
  int waiter = x->waiter;
  x->open = 0;
  if (x->abandoned) {
    free(x->buf);
    free(x->request);
    free(x);
    return;
  }
  x->over = 1;
  if (waiter) {
    x->waiter = 0;
    bp__vm_wake(waiter, x->status);
  }
}

static void finish(bp_test_exchange_t *x, int status) {
  if (!x->open || uv_is_closing((uv_handle_t *)&x->pipe)) return;
  x->status = status;
  uv_close((uv_handle_t *)&x->pipe, closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  bp_test_exchange_t *x = h->data;
  (void)suggested;
  if (x->cap - x->len < 16384) {
    size_t cap = x->cap ? x->cap * 2 : 65536;
    char *p;
    while (cap - x->len < 16384) cap *= 2;
    if (!(p = realloc(x->buf, cap))) {
      *b = uv_buf_init(NULL, 0); /* (libuv reports UV_ENOBUFS) */
      return;
    }
    x->buf = p;
    x->cap = cap;
  }
  *b = uv_buf_init(x->buf + x->len, (unsigned)(x->cap - x->len));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  bp_test_exchange_t *x = st->data;
  (void)b;
  if (n > 0) {
    x->len += (size_t)n;
    if (x->len > x->max) finish(x, BP_ETOOBIG);
  } else if (n == UV_EOF) {
    finish(x, BP_OK);
  } else if (n < 0) {
    finish(x, (int)n);
  }
}

static void on_write(uv_write_t *w, int status) {
  bp_test_exchange_t *x = w->data;
  free(x->request);
  x->request = NULL;
  if (status < 0 && status != UV_ECANCELED) finish(x, status);
}

bp_test_exchange_t *bp_test_exchange_start(bp_server_t *server, const char *request, size_t len,
                                           size_t max_response, int waiter, int *status) {
  int fds[2], rc;
  uv_buf_t b;
  bp_test_exchange_t *x = calloc(1, sizeof *x);
  if (!x || !(x->request = malloc(len ? len : 1))) {
    free(x);
    *status = BP_ENOMEM;
    return NULL;
  }
  memcpy(x->request, request, len);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    *status = -errno;
    free(x->request);
    free(x);
    return NULL;
  }
  x->max = max_response;
  x->waiter = waiter;
  uv_pipe_init(uv_default_loop(), &x->pipe, 0);
  x->pipe.data = x;
  x->open = 1;
  if ((rc = uv_pipe_open(&x->pipe, fds[1])) != 0) {
    close(fds[0]);
    close(fds[1]);
    x->abandoned = 1;
    uv_close((uv_handle_t *)&x->pipe, closed);
    *status = rc;
    return NULL;
  }
  if ((rc = bp_server_adopt(server, fds[0])) != BP_OK) {
    x->abandoned = 1;
    uv_close((uv_handle_t *)&x->pipe, closed);
    *status = rc;
    return NULL;
  }
  b = uv_buf_init(x->request, (unsigned)len);
  x->wreq.data = x;
  if ((rc = uv_write(&x->wreq, (uv_stream_t *)&x->pipe, &b, 1, on_write)) != 0 ||
      (rc = uv_read_start((uv_stream_t *)&x->pipe, on_alloc, on_read)) != 0) {
    x->abandoned = 1;
    uv_close((uv_handle_t *)&x->pipe, closed);
    *status = rc;
    return NULL;
  }
  *status = BP_AGAIN;
  return x;
}

const char *bp_test_exchange_response(const bp_test_exchange_t *x, size_t *len) {
  *len = x->len;
  return x->buf ? x->buf : "";
}

void bp_test_exchange_free(bp_test_exchange_t *x) {
  if (!x) return;
  if (x->open) { /* not over: nobody is told, the handle's close frees it */
    x->abandoned = 1;
    x->waiter = 0;
    if (!uv_is_closing((uv_handle_t *)&x->pipe)) uv_close((uv_handle_t *)&x->pipe, closed);
    return;
  }
  free(x->buf);
  free(x->request);
  free(x);
}

int bp_test_connect(bp_server_t *server) {
  int fds[2], rc;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) return -errno;
  if ((rc = bp_server_adopt(server, fds[0])) != BP_OK) {
    close(fds[1]);
    return rc;
  }
  return fds[1];
}
