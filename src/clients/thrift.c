/* Thrift client connections (include/baseplate/thrift_client.h,
 * docs/thrift.md): a request framed by the THeader transport
 * (src/thrift/theader.c) written on a libuv TCP or UNIX stream, one reply
 * frame read back.
 *
 * As the Redis connection (src/clients/redis.c), a connection is driven by
 * the connect (after an asynchronous name lookup), reads, and one timer
 * that bounds whatever is in flight; the waiter of the operation in flight
 * is woken exactly once, as the last thing a loop callback does
 * (finish()). The connection counts its references (the caller's, the
 * socket handle, the timer handle, the name lookup, the connect and write
 * requests) and is freed when the last goes.
 *
 * A reply is read into one buffer that grows as bytes come, up to the
 * frame limit (plus room for THeader's own header); bp__theader_read says
 * when the frame is whole. Bytes nobody asked for (after the reply, or on
 * an idle connection) break the connection: the stream is out of step. */
#include "baseplate/thrift_client.h"
#include "internal.h"
#include "runtime.h"
#include "thrift/codec.h"
#include "thrift/theader.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Our header struct is the transport's key-value pair. */
_Static_assert(sizeof(bp_thrift_header_t) == sizeof(bp__theader_kv_t) &&
                   offsetof(bp_thrift_header_t, key_len) == offsetof(bp__theader_kv_t, key_len) &&
                   offsetof(bp_thrift_header_t, value) == offsetof(bp__theader_kv_t, value) &&
                   offsetof(bp_thrift_header_t, value_len) == offsetof(bp__theader_kv_t, value_len),
               "bp_thrift_header_t is bp__theader_kv_t");

enum { ST_RESOLVING, ST_CONNECTING, ST_READY, ST_BROKEN };

/* Room a reply frame may take beyond its payload limit (THeader's header). */
#define FRAME_SLACK (64 * 1024)
#define READ_CHUNK (64 * 1024)

typedef struct {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  struct bp_thrift_conn_s *conn;
} sock_t;

typedef struct {
  uv_write_t req;
  struct bp_thrift_conn_s *conn;
  char *buf;
} write_t;

struct bp_thrift_conn_s {
  bp__closable_t closable; /* first: loop handles point here */
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t connect_req;
  sock_t *sock; /* the current socket, NULL when none */
  struct addrinfo *addrs, *next_addr;
  struct sockaddr_storage numeric; /* the address when host was one */
  int have_numeric;
  int state;
  int refs;
  int busy;         /* an operation's waiter has yet to be woken */
  int waiter;
  int timer_status; /* what the timer wakes with: BP_ETIMEDOUT, or a deferred status */
  int quiet;        /* the loop is shutting down: wake nobody */
  int user_closed;
  int oneway;       /* the operation in flight is a oneway send: done once written */
  int writing;      /* writes queued on the socket */
  int sent;         /* a byte of the last request was written */
  int have_reply;
  int32_t seqid;    /* THeader's sequence id of the last request */
  double timeout;   /* of the operation in flight */
  size_t max_frame; /* of the reply awaited */
  char *rbuf;       /* the reply being read */
  size_t rlen, rcap;
  bp__theader_frame_t frame;
  int port;
  char where[128]; /* host:port or the path, for messages */
  char host[256];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char err[256];
};

static void conn_free(bp_thrift_conn_t *c) {
  bp__theader_frame_free(&c->frame);
  if (c->addrs) uv_freeaddrinfo(c->addrs);
  free(c->rbuf);
  free(c);
}

static void unref(bp_thrift_conn_t *c) {
  if (--c->refs == 0) conn_free(c);
}

/* Wake the waiter of the operation in flight with `status`. Call last: the
 * woken coroutine may send again or close. */
static void finish(bp_thrift_conn_t *c, int status) {
  int waiter = c->waiter;
  if (!c->busy) return;
  c->busy = 0;
  c->waiter = 0;
  uv_timer_stop(&c->timer);
  /* An idle connection does not keep the process alive (a script ends). */
  if (c->sock) uv_unref(&c->sock->u.handle);
  if (!c->quiet) bp__vm_wake(waiter, status);
}

static void sock_closed(uv_handle_t *h) {
  sock_t *s = (sock_t *)h;
  bp_thrift_conn_t *c = s->conn;
  free(s);
  unref(c);
}

static void close_sock(bp_thrift_conn_t *c) {
  if (!c->sock) return;
  uv_close(&c->sock->u.handle, sock_closed);
  c->sock = NULL;
}

static void set_err(bp_thrift_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(bp_thrift_conn_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
}

static void break_conn(bp_thrift_conn_t *c) {
  if (c->state == ST_RESOLVING) uv_cancel((uv_req_t *)&c->gai); /* on_resolved frees the rest */
  c->state = ST_BROKEN;
  close_sock(c);
}

/* Fail (or end) the operation in flight from the loop, not from inside the
 * call that found out. */
static void on_timer(uv_timer_t *t);
static void finish_later(bp_thrift_conn_t *c, int status) {
  c->timer_status = status;
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* --- reading the reply ------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  bp_thrift_conn_t *c = ((sock_t *)h)->conn;
  size_t limit = c->max_frame + FRAME_SLACK;
  (void)suggested;
  if (c->rcap - c->rlen < READ_CHUNK / 4 && c->rcap < limit) {
    size_t cap = c->rcap ? c->rcap * 2 : READ_CHUNK;
    char *n;
    if (cap < c->rlen + READ_CHUNK) cap = c->rlen + READ_CHUNK;
    if (cap > limit) cap = limit;
    if ((n = realloc(c->rbuf, cap))) {
      c->rbuf = n;
      c->rcap = cap;
    }
  }
  /* Full (at the limit, or out of memory): libuv reports UV_ENOBUFS. */
  buf->base = c->rbuf ? c->rbuf + c->rlen : NULL;
  buf->len = c->rbuf ? c->rcap - c->rlen : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bp_thrift_conn_t *c = ((sock_t *)s)->conn;
  char err[160];
  size_t need = 0;
  int rc;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      set_err(c, "%s: server closed the connection%s", c->where, c->busy ? "" : " (idle)");
    else if (nread == UV_ENOBUFS)
      set_err(c, "%s: a reply larger than max_frame_size (%zu bytes)", c->where, c->max_frame);
    else
      set_err(c, "%s: %s", c->where, uv_strerror((int)nread));
    break_conn(c);
    finish(c, nread == UV_ENOBUFS ? BP_ETOOBIG : BP_EIO);
    return;
  }
  if (!c->busy || c->oneway) {
    /* Nobody asked for these bytes: the stream is out of step. */
    set_err(c, "%s: unexpected bytes from the server", c->where);
    break_conn(c);
    finish(c, BP_EIO);
    return;
  }
  c->rlen += (size_t)nread;
  rc = bp__theader_read(&c->frame, c->rbuf, c->rlen, c->max_frame, &need, err, sizeof err);
  if (rc == BP_AGAIN) return;
  if (rc != BP_OK) {
    if (rc == BP_ETOOBIG)
      set_err(c, "%s: %s (max_frame_size is %zu bytes)", c->where, err, c->max_frame);
    else
      set_err(c, "%s: bad reply: %s", c->where, err);
    break_conn(c);
    finish(c, rc == BP_ETOOBIG ? BP_ETOOBIG : BP_ERROR);
    return;
  }
  c->have_reply = 1;
  if (c->frame.frame_len != c->rlen) {
    /* More than one reply: the reply is good, the stream is not. */
    set_err(c, "%s: unexpected bytes after the reply", c->where);
    break_conn(c);
  }
  finish(c, BP_OK);
}

/* --- writing ------------------------------------------------------------------- */

static void write_done(uv_write_t *req, int status) {
  write_t *w = (write_t *)req;
  bp_thrift_conn_t *c = w->conn;
  free(w->buf);
  free(w);
  c->writing--;
  if (status < 0 && c->state != ST_BROKEN) {
    set_err(c, "%s: %s", c->where, uv_strerror(status));
    break_conn(c);
    finish(c, BP_EIO);
  } else if (status == 0 && c->oneway && c->writing == 0) {
    finish(c, BP_OK);
  }
  unref(c);
}

/* Write buf[0..len) (owned: freed when written): at once if the socket
 * takes it, else from the loop. A uv error code, or 0. */
static int write_out(bp_thrift_conn_t *c, char *buf, size_t len) {
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  size_t written = 0;
  write_t *w;
  int rc = uv_try_write(&c->sock->u.stream, &b, 1);
  if (rc > 0) written = (size_t)rc, c->sent = 1;
  if (rc < 0 && rc != UV_EAGAIN) {
    free(buf);
    return rc;
  }
  if (written == len) {
    free(buf);
    if (c->oneway) finish_later(c, BP_OK);
    return 0;
  }
  if (!(w = malloc(sizeof *w))) {
    free(buf);
    return UV_ENOMEM;
  }
  w->conn = c;
  w->buf = buf;
  b = uv_buf_init(buf + written, (unsigned)(len - written));
  rc = uv_write(&w->req, &c->sock->u.stream, &b, 1, write_done);
  if (rc < 0) {
    free(buf);
    free(w);
    return rc;
  }
  c->sent = 1; /* queued: as good as sent, the server may see it */
  c->writing++;
  c->refs++;
  return 0;
}

/* --- connecting -------------------------------------------------------------- */

static void try_next_address(bp_thrift_conn_t *c);

static void on_connect(uv_connect_t *req, int status) {
  bp_thrift_conn_t *c = req->data;
  int rc;
  if (c->state != ST_CONNECTING) { /* timed out or closed meanwhile */
    unref(c);
    return;
  }
  c->refs--; /* the request; the caller's reference still holds */
  if (status < 0) {
    set_err(c, "%s: %s", c->where, uv_strerror(status));
    close_sock(c);
    if (c->path[0]) {
      c->state = ST_BROKEN;
      finish(c, BP_EIO);
    } else {
      try_next_address(c);
    }
    return;
  }
  if (!c->path[0]) uv_tcp_nodelay(&c->sock->u.tcp, 1);
  rc = uv_read_start(&c->sock->u.stream, on_alloc, on_read);
  if (rc < 0) {
    set_err(c, "%s: %s", c->where, uv_strerror(rc));
    break_conn(c);
    finish(c, BP_EIO);
    return;
  }
  c->state = ST_READY;
  c->err[0] = '\0';
  finish(c, BP_OK);
}

static int new_sock(bp_thrift_conn_t *c) {
  if (!(c->sock = malloc(sizeof *c->sock))) {
    set_err(c, "out of memory");
    return BP_ENOMEM;
  }
  c->sock->conn = c;
  if (c->path[0])
    uv_pipe_init(bp_loop(), &c->sock->u.pipe, 0);
  else
    uv_tcp_init(bp_loop(), &c->sock->u.tcp);
  c->sock->u.handle.data = c;
  c->refs++;
  c->connect_req.data = c;
  return BP_OK;
}

/* Connect to the next address of the lookup (or the numeric one); once
 * none is left, fail with the last error. */
static void try_next_address(bp_thrift_conn_t *c) {
  const struct sockaddr *addr = NULL;
  int rc;
  for (;;) {
    if (c->have_numeric) {
      addr = (const struct sockaddr *)&c->numeric;
      c->have_numeric = 0;
    } else {
      while (c->next_addr && c->next_addr->ai_family != AF_INET && c->next_addr->ai_family != AF_INET6)
        c->next_addr = c->next_addr->ai_next;
      if (!c->next_addr) break;
      addr = c->next_addr->ai_addr;
      c->next_addr = c->next_addr->ai_next;
    }
    if (new_sock(c) != BP_OK) break;
    rc = uv_tcp_connect(&c->connect_req, &c->sock->u.tcp, addr, on_connect);
    if (rc == 0) {
      c->refs++;
      c->state = ST_CONNECTING;
      return;
    }
    set_err(c, "%s: %s", c->where, uv_strerror(rc));
    close_sock(c);
  }
  c->state = ST_BROKEN;
  if (!c->err[0]) set_err(c, "%s: no address to connect to", c->where);
  finish_later(c, BP_EIO);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  bp_thrift_conn_t *c = req->data;
  if (c->state != ST_RESOLVING) { /* timed out or closed meanwhile */
    if (res) uv_freeaddrinfo(res);
    unref(c);
    return;
  }
  c->refs--;
  if (status < 0) {
    set_err(c, "%s: %s", c->where, uv_strerror(status));
    c->state = ST_BROKEN;
    finish(c, BP_EIO);
    return;
  }
  c->addrs = c->next_addr = res;
  try_next_address(c);
}

static void on_timer(uv_timer_t *t) {
  bp_thrift_conn_t *c = t->data;
  int status = c->timer_status;
  if (status == BP_ETIMEDOUT) {
    if (c->state == ST_RESOLVING || c->state == ST_CONNECTING)
      set_err(c, "%s: timed out connecting after %gs", c->where, c->timeout);
    else
      set_err(c, "%s: timed out after %gs waiting for the %s", c->where, c->timeout,
              c->oneway ? "request to be written" : "reply");
    break_conn(c);
  }
  finish(c, status);
}

static void timer_closed(uv_handle_t *h) {
  bp_thrift_conn_t *c = h->data;
  finish(c, BP_ECLOSED); /* a close while an operation was in flight */
  unref(c);
}

/* Loop shutdown: close the handles, wake nobody. */
static void conn_shutdown(bp__closable_t *self) {
  bp_thrift_conn_t *c = (bp_thrift_conn_t *)self;
  c->quiet = 1;
  break_conn(c);
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, timer_closed);
}

static void arm_timer(bp_thrift_conn_t *c, double seconds) {
  c->timeout = seconds;
  c->timer_status = BP_ETIMEDOUT;
  /* From now, not from when the loop last woke: the caller may have
   * worked (or blocked) since. */
  uv_update_time(bp_loop());
  if (seconds > 0) uv_timer_start(&c->timer, on_timer, (uint64_t)(seconds * 1000.0 + 0.5), 0);
}

int bp_thrift_connect(const char *host, int port, const char *path, double timeout, int waiter,
                      bp_thrift_conn_t **out, char *err, size_t errlen) {
  bp_thrift_conn_t *c;
  struct addrinfo hints;
  char portstr[16];
  size_t hl = 0;
  int rc;

  *out = NULL;
  bp__ignore_sigpipe();
  if (!(timeout >= 0)) {
    snprintf(err, errlen, "thrift: invalid timeout");
    return BP_EINVAL;
  }
  if (path) {
    if (!*path || strlen(path) >= sizeof c->path) {
      snprintf(err, errlen, "thrift: invalid UNIX socket path (%s)", *path ? "too long" : "empty");
      return BP_EINVAL;
    }
  } else {
    if (!host || !*host || port < 1 || port > 65535) {
      snprintf(err, errlen, "thrift: invalid address (host %s, port %d)", host ? host : "(null)", port);
      return BP_EINVAL;
    }
    if (host[0] == '[') host++;
    hl = strlen(host);
    if (hl && host[hl - 1] == ']') hl--;
    if (hl == 0 || hl >= sizeof c->host) {
      snprintf(err, errlen, "thrift: invalid host name (%s)", hl ? "longer than 255 characters" : "empty");
      return BP_EINVAL;
    }
  }
  if (!(c = calloc(1, sizeof *c))) {
    snprintf(err, errlen, "thrift: out of memory");
    return BP_ENOMEM;
  }
  bp__theader_frame_init(&c->frame);
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_shutdown;
  c->refs = 2; /* the caller's and the timer's */
  uv_timer_init(bp_loop(), &c->timer);
  c->timer.data = c;
  c->busy = 1;
  c->waiter = waiter;
  *out = c;
  arm_timer(c, timeout);

  if (path) {
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->where, sizeof c->where, "%s", path);
    if (new_sock(c) != BP_OK) {
      c->state = ST_BROKEN;
      finish_later(c, BP_EIO);
      return BP_AGAIN;
    }
    c->state = ST_CONNECTING;
    c->refs++;
    uv_pipe_connect(&c->connect_req, &c->sock->u.pipe, c->path, on_connect);
    return BP_AGAIN;
  }
  memcpy(c->host, host, hl);
  c->port = port;
  snprintf(c->where, sizeof c->where, strchr(c->host, ':') ? "[%.100s]:%d" : "%.100s:%d", c->host, port);
  if (uv_ip4_addr(c->host, port, (struct sockaddr_in *)&c->numeric) == 0 ||
      uv_ip6_addr(c->host, port, (struct sockaddr_in6 *)&c->numeric) == 0) {
    c->have_numeric = 1;
    try_next_address(c);
    return BP_AGAIN;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(portstr, sizeof portstr, "%d", port);
  c->gai.data = c;
  c->state = ST_RESOLVING;
  rc = uv_getaddrinfo(bp_loop(), &c->gai, on_resolved, c->host, portstr, &hints);
  if (rc < 0) {
    set_err(c, "%s: %s", c->where, uv_strerror(rc));
    c->state = ST_BROKEN;
    finish_later(c, BP_EIO);
  } else {
    c->refs++;
  }
  return BP_AGAIN;
}

/* --- sending --------------------------------------------------------------------- */

/* Whether the server closed the idle connection (or sent something) in a
 * way the loop has not reported yet: the socket is readable now. */
static int gone_while_idle(bp_thrift_conn_t *c) {
  uv_os_fd_t fd;
  char b;
  ssize_t n;
  if (uv_fileno(&c->sock->u.handle, &fd) != 0) return 1;
  do n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  if (n == 0) {
    set_err(c, "%s: server closed the connection (idle)", c->where);
    return 1;
  }
  if (n > 0) {
    set_err(c, "%s: unexpected bytes from the server", c->where);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
  set_err(c, "%s: %s", c->where, strerror(errno));
  return 1;
}

int bp_thrift_conn_send(bp_thrift_conn_t *c, const char *msg, size_t len, int protocol,
                        const bp_thrift_header_t *headers, int nheaders, int oneway, double timeout,
                        size_t max_frame, int waiter) {
  bp__theader_out_t o;
  size_t bound, n;
  char *buf;
  int rc;

  if (!c) return BP_EINVAL;
  c->sent = 0;
  if (c->busy || c->state != ST_READY || c->user_closed) {
    if (c->busy) set_err(c, "busy: an operation is in flight");
    else if (!c->err[0]) set_err(c, "%s: the connection is broken", c->where);
    return BP_EINVAL;
  }
  if (!msg || len == 0 || (protocol != BP__T_BINARY && protocol != BP__T_COMPACT) || nheaders < 0 ||
      (nheaders > 0 && !headers) || nheaders > BP__THEADER_MAX_INFO || !(timeout >= 0) ||
      max_frame < 1024 || max_frame > 0x3fffffffu || len > 0x7fffffffu) {
    set_err(c, "invalid arguments");
    return BP_EINVAL;
  }
  if (gone_while_idle(c)) {
    break_conn(c);
    return BP_EINVAL;
  }
  memset(&o, 0, sizeof o);
  o.transport = BP__TT_HEADER;
  o.protocol = protocol;
  o.seqid = ++c->seqid;
  if (c->seqid == INT32_MAX) c->seqid = 0;
  o.headers = (const bp__theader_kv_t *)headers;
  o.nheaders = nheaders;
  bound = bp__theader_write_bound(&o, len);
  if (!(buf = malloc(bound))) {
    set_err(c, "out of memory");
    return BP_ENOMEM;
  }
  if ((n = bp__theader_write(&o, msg, len, buf, bound)) == 0) {
    free(buf);
    set_err(c, "cannot frame the request (%zu bytes, %d headers)", len, nheaders);
    return BP_EINVAL;
  }
  c->err[0] = '\0';
  c->rlen = 0;
  bp__theader_frame_reset(&c->frame); /* a new input: forget a walk an earlier read left */
  c->have_reply = 0;
  c->max_frame = max_frame;
  c->oneway = oneway != 0;
  c->busy = 1;
  c->waiter = waiter;
  uv_ref(&c->sock->u.handle);
  arm_timer(c, timeout);
  rc = write_out(c, buf, n);
  if (rc < 0) {
    set_err(c, "%s: %s", c->where, uv_strerror(rc));
    break_conn(c);
    uv_timer_stop(&c->timer);
    finish_later(c, BP_EIO);
  }
  return BP_AGAIN;
}

/* --- replies and state -------------------------------------------------------------- */

const char *bp_thrift_conn_reply(const bp_thrift_conn_t *c, size_t *len, int *protocol) {
  if (!c || !c->have_reply) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = c->frame.payload_len;
  if (protocol) *protocol = c->frame.protocol;
  return c->frame.payload;
}

int bp_thrift_conn_sent(const bp_thrift_conn_t *c) { return c ? c->sent : 0; }

const char *bp_thrift_conn_error(const bp_thrift_conn_t *c) { return c ? c->err : "closed"; }

int bp_thrift_conn_broken(const bp_thrift_conn_t *c) {
  return !c || c->state == ST_BROKEN || c->user_closed;
}

void bp_thrift_conn_close(bp_thrift_conn_t *c) {
  if (!c || c->user_closed) return;
  c->user_closed = 1;
  if (!uv_is_closing((uv_handle_t *)&c->timer)) {
    if (c->busy) set_err(c, "closed");
    break_conn(c);
    uv_close((uv_handle_t *)&c->timer, timer_closed); /* wakes a waiter with BP_ECLOSED */
  }
  unref(c);
}
