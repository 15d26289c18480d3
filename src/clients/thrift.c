/* Thrift client connections (include/baseplate/thrift_client.h,
 * docs/thrift.md): a request framed by the THeader transport
 * (src/thrift/theader.c) written on a libuv TCP or UNIX stream, one reply
 * frame read back.
 *
 * The connection itself (name lookup, connect, the timer that bounds
 * whatever is in flight, writes, waking the waiter once, reference counting
 * and close) is the clients' common one, src/clients/conn.c, as Redis's;
 * this file is the protocol on it.
 *
 * A reply is read into one buffer that grows as bytes come, up to the
 * frame limit (plus room for THeader's own header); bp__theader_read says
 * when the frame is whole. Bytes nobody asked for (after the reply, or on
 * an idle connection) break the connection: the stream is out of step. */
#include "baseplate/thrift_client.h"
#include "clients/conn.h"
#include "internal.h"
#include "thrift/codec.h"
#include "thrift/theader.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Our header struct is the transport's key-value pair. */
_Static_assert(sizeof(bp_thrift_header_t) == sizeof(bp__theader_kv_t) &&
                   offsetof(bp_thrift_header_t, key_len) == offsetof(bp__theader_kv_t, key_len) &&
                   offsetof(bp_thrift_header_t, value) == offsetof(bp__theader_kv_t, value) &&
                   offsetof(bp_thrift_header_t, value_len) == offsetof(bp__theader_kv_t, value_len),
               "bp_thrift_header_t is bp__theader_kv_t");

/* Room a reply frame may take beyond its payload limit (THeader's header). */
#define FRAME_SLACK (64 * 1024)
#define READ_CHUNK (64 * 1024)

struct bp_thrift_conn_s {
  bp__cconn_t base; /* first */
  int oneway;       /* the operation in flight is a oneway send: done once written */
  int have_reply;
  int32_t seqid;    /* THeader's sequence id of the last request */
  size_t max_frame; /* of the reply awaited */
  char *rbuf;       /* the reply being read */
  size_t rlen, rcap;
  bp__theader_frame_t frame;
};

static void conn_free(bp__cconn_t *base) {
  bp_thrift_conn_t *c = (bp_thrift_conn_t *)base;
  bp__theader_frame_free(&c->frame);
  free(c->rbuf);
  free(c);
}

#define set_err(c, ...) bp__cconn_set_err(&(c)->base, __VA_ARGS__)
#define break_conn(c) bp__cconn_break(&(c)->base)
#define finish(c, status) bp__cconn_finish(&(c)->base, status)

/* --- reading the reply ------------------------------------------------------- */

static void on_alloc(bp__cconn_t *base, uv_buf_t *buf) {
  bp_thrift_conn_t *c = (bp_thrift_conn_t *)base;
  size_t limit = c->max_frame + FRAME_SLACK;
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

static void on_read(bp__cconn_t *base, ssize_t nread, const uv_buf_t *buf) {
  bp_thrift_conn_t *c = (bp_thrift_conn_t *)base;
  char err[160];
  size_t need = 0;
  int rc;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      set_err(c, "%s: server closed the connection%s", c->base.where, c->base.busy ? "" : " (idle)");
    else if (nread == UV_ENOBUFS)
      set_err(c, "%s: a reply larger than max_frame_size (%zu bytes)", c->base.where, c->max_frame);
    else
      set_err(c, "%s: %s", c->base.where, uv_strerror((int)nread));
    break_conn(c);
    finish(c, nread == UV_ENOBUFS ? BP_ETOOBIG : BP_EIO);
    return;
  }
  if (!c->base.busy || c->oneway) {
    /* Nobody asked for these bytes: the stream is out of step. */
    set_err(c, "%s: unexpected bytes from the server", c->base.where);
    break_conn(c);
    finish(c, BP_EIO);
    return;
  }
  c->rlen += (size_t)nread;
  rc = bp__theader_read(&c->frame, c->rbuf, c->rlen, c->max_frame, &need, err, sizeof err);
  if (rc == BP_AGAIN) return;
  if (rc != BP_OK) {
    if (rc == BP_ETOOBIG)
      set_err(c, "%s: %s (max_frame_size is %zu bytes)", c->base.where, err, c->max_frame);
    else
      set_err(c, "%s: bad reply: %s", c->base.where, err);
    break_conn(c);
    finish(c, rc == BP_ETOOBIG ? BP_ETOOBIG : BP_ERROR);
    return;
  }
  c->have_reply = 1;
  if (c->frame.frame_len != c->rlen) {
    /* More than one reply: the reply is good, the stream is not. */
    set_err(c, "%s: unexpected bytes after the reply", c->base.where);
    break_conn(c);
  }
  finish(c, BP_OK);
}

/* --- connecting -------------------------------------------------------------- */

static void on_timeout(bp__cconn_t *base) {
  bp_thrift_conn_t *c = (bp_thrift_conn_t *)base;
  set_err(c, "%s: timed out after %gs waiting for the %s", c->base.where, c->base.timeout,
          c->oneway ? "request to be written" : "reply");
}

static const bp__cconn_proto_t thrift_proto = {
    .on_alloc = on_alloc,
    .on_read = on_read,
    .on_timeout = on_timeout,
    .on_free = conn_free,
};

int bp_thrift_connect(const char *host, int port, const char *path, double timeout, int waiter,
                      bp_thrift_conn_t **out, char *err, size_t errlen) {
  bp_thrift_conn_t *c;
  size_t hl = 0;

  *out = NULL;
  bp__ignore_sigpipe();
  if (!(timeout >= 0)) {
    snprintf(err, errlen, "thrift: invalid timeout");
    return BP_EINVAL;
  }
  if (path) {
    if (!*path || strlen(path) >= sizeof c->base.path) {
      snprintf(err, errlen, "thrift: invalid UNIX socket path (%s)", *path ? "too long" : "empty");
      return BP_EINVAL;
    }
  } else {
    if (!host || !*host || port < 1 || port > 65535) {
      snprintf(err, errlen, "thrift: invalid address (host %s, port %d)", host ? host : "(null)", port);
      return BP_EINVAL;
    }
    if (bp__cconn_parse_host("thrift", &host, &hl, err, errlen) != BP_OK) return BP_EINVAL;
  }
  if (!(c = calloc(1, sizeof *c))) {
    snprintf(err, errlen, "thrift: out of memory");
    return BP_ENOMEM;
  }
  bp__theader_frame_init(&c->frame);
  bp__cconn_init(&c->base, &thrift_proto, host, hl, port, path);
  if (path)
    snprintf(c->base.where, sizeof c->base.where, "%s", path);
  else
    snprintf(c->base.where, sizeof c->base.where, strchr(c->base.host, ':') ? "[%.100s]:%d" : "%.100s:%d",
             c->base.host, port);
  *out = c;
  bp__cconn_connect(&c->base, timeout, waiter);
  return BP_AGAIN;
}

int bp_thrift_connect_fd(int fd, double timeout, int waiter, bp_thrift_conn_t **out, char *err,
                         size_t errlen) {
  bp_thrift_conn_t *c;
  *out = NULL;
  bp__ignore_sigpipe();
  if (!(timeout >= 0)) {
    close(fd);
    snprintf(err, errlen, "thrift: invalid timeout");
    return BP_EINVAL;
  }
  if (!(c = calloc(1, sizeof *c))) {
    close(fd);
    snprintf(err, errlen, "thrift: out of memory");
    return BP_ENOMEM;
  }
  bp__theader_frame_init(&c->frame);
  bp__cconn_init(&c->base, &thrift_proto, NULL, 0, 0, "(socket pair)");
  snprintf(c->base.where, sizeof c->base.where, "(socket pair)");
  *out = c;
  bp__cconn_adopt(&c->base, fd, timeout, waiter);
  return BP_AGAIN;
}

/* --- sending --------------------------------------------------------------------- */

/* Whether the server closed the idle connection (or sent something) in a
 * way the loop has not reported yet: the socket is readable now. */
static int gone_while_idle(bp_thrift_conn_t *c) {
  uv_os_fd_t fd;
  char b;
  ssize_t n;
  if (uv_fileno(&c->base.sock->u.handle, &fd) != 0) return 1;
  do n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  if (n == 0) {
    set_err(c, "%s: server closed the connection (idle)", c->base.where);
    return 1;
  }
  if (n > 0) {
    set_err(c, "%s: unexpected bytes from the server", c->base.where);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
  set_err(c, "%s: %s", c->base.where, strerror(errno));
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
  c->base.sent = 0;
  if (c->base.busy || c->base.state != BP__CCONN_READY || c->base.user_closed) {
    if (c->base.busy) set_err(c, "busy: an operation is in flight");
    else if (!c->base.err[0]) set_err(c, "%s: the connection is broken", c->base.where);
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
  c->base.err[0] = '\0';
  c->rlen = 0;
  bp__theader_frame_reset(&c->frame); /* a new input: forget a walk an earlier read left */
  c->have_reply = 0;
  c->max_frame = max_frame;
  c->oneway = oneway != 0;
  c->base.done_when_written = c->oneway;
  bp__cconn_begin(&c->base, timeout, waiter);
  rc = bp__cconn_write(&c->base, buf, n, 1);
  if (rc < 0) {
    set_err(c, "%s: %s", c->base.where, uv_strerror(rc));
    break_conn(c);
    bp__cconn_finish_later(&c->base, BP_EIO);
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

int bp_thrift_conn_sent(const bp_thrift_conn_t *c) { return c ? c->base.sent : 0; }

const char *bp_thrift_conn_error(const bp_thrift_conn_t *c) { return c ? c->base.err : "closed"; }

int bp_thrift_conn_broken(const bp_thrift_conn_t *c) { return !c || bp__cconn_broken(&c->base); }

void bp_thrift_conn_close(bp_thrift_conn_t *c) {
  if (c) bp__cconn_close(&c->base);
}
