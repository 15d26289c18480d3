/*
 * Thrift on the server core (src/server/): THeader and the transports that
 * predate it (src/thrift/theader.c), one call at a time per connection.
 * The core accepts, reads, writes, keeps deadlines and closes; this file
 * is the protocol: framing, the call API, replies in the call's own
 * transport and protocol, and the call's server span. The methods are Lua's
 * (lua/baseplate/server/thrift.lua decodes the arguments and encodes the
 * result with the codec).
 *
 * Where a call enters: thrift_on_input() -> thrift_process() -> dispatch().
 * Where it leaves: bp_thrift_call_reply() -> answer() -> bp__conn_write().
 */
#include "baseplate/thrift.h"
#include "baseplate/log.h"
#include "internal.h"
#include "span_internal.h"
#include "runtime.h"
#include "server/server.h"
#include "server/span.h"
#include "thrift/codec.h"
#include "thrift/theader.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOGGER "baseplate.server.thrift"

struct bp_thrift_server_s {
  bp__server_t base;
  bp_baseplate_t *bp; /* borrowed; NULL: no spans */
  int trust;
  int handler; /* the Lua handler's id */
  bp_thrift_server_options_t opts;
  uint64_t drop_window;    /* loop time the current window of "closing a connection" lines began */
  int drops_logged;        /* lines in that window */
  int drops_unlogged;      /* connections closed without a line since the last line */
};

typedef struct tconn_s tconn_t;

struct bp_thrift_call_s {
  tconn_t *conn;
  int transport, protocol, zlib, type;
  int32_t seqid;  /* the message's */
  int32_t hseqid; /* THeader's own */
  uint16_t flags;
  const char *msg; /* the message, in the connection's mbuf (or the frame's buffer) */
  size_t msg_len, body_off;
  const char *method; /* NUL-terminated, in mbuf */
  size_t method_len;
  const bp__theader_kv_t *headers;
  int nheaders;
  bp_span_t *span;
  char error[64];
  int error_code; /* bp_thrift_call_set_error_code */
};

struct tconn_s {
  bp__conn_t base;
  bp__theader_frame_t frame;
  char *mbuf; /* the call being handled: its frame's bytes, then the method's name */
  size_t mcap;
  bp_thrift_call_t call;
};

#define SERVER(c) ((bp_thrift_server_t *)(c)->base.server)

/* --- when a connection must go ------------------------------------------------ */

/* Close a connection whose input makes no sense (or too much of it). The
 * reason is logged, at most DROP_LINES lines in DROP_WINDOW ms per server: a
 * client sending garbage must not flood the log. */
#define DROP_LINES 10
#define DROP_WINDOW 10000
static void drop(tconn_t *c, int level, const char *fmt, ...) {
  bp_thrift_server_t *s = SERVER(c);
  uint64_t now = uv_now(uv_default_loop());
  if (bp_log_enabled(LOGGER, level)) {
    if (s->drops_logged == 0 || now - s->drop_window >= DROP_WINDOW) {
      s->drop_window = now;
      s->drops_logged = 0;
    }
    if (s->drops_logged < DROP_LINES) {
      char why[256];
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(why, sizeof why, fmt, ap);
      va_end(ap);
      if (s->drops_unlogged)
        bp_log(level, LOGGER, "closing the connection from %s: %s (and %d more not logged)",
               c->base.remote, why, s->drops_unlogged);
      else
        bp_log(level, LOGGER, "closing the connection from %s: %s", c->base.remote, why);
      s->drops_logged++;
      s->drops_unlogged = 0;
    } else {
      s->drops_unlogged++;
    }
  }
  bp__conn_stop_reading(&c->base);
  c->base.rlen = 0;
  c->base.keep_alive = 0;
  bp__conn_close(&c->base);
}

/* A message began and did not finish arriving in time; or, between
 * messages, the connection was idle too long. */
static void on_message_timeout(uv_timer_t *t) {
  tconn_t *c = t->data;
  if (c->base.busy || c->base.writing || c->base.closing) return;
  drop(c, BP_LOG_DEBUG, "a message did not arrive within message_timeout");
}

/* --- calls --------------------------------------------------------------------- */

static const char *call_header_get(void *carrier, const char *name, size_t *len) {
  const bp_thrift_call_t *call = carrier;
  size_t n = strlen(name);
  for (int i = 0; i < call->nheaders; i++) {
    const bp__theader_kv_t *h = &call->headers[i];
    if (h->key_len == n && strncasecmp(h->key, name, n) == 0) {
      if (len) *len = h->value_len;
      return h->value;
    }
  }
  return NULL;
}

/* The server span's own tags, added only when someone reads them. */
static void call_tags(bp_span_t *span, void *ud) {
  bp_thrift_call_t *call = ud;
  const char *remote = call->conn->base.remote;
  bp__span_tag_static(span, "peer.ipv4", remote, strlen(remote), BP_TAG_STRING);
}

/* Where p points into the input buffer, the same byte in the copy. */
static const char *moved(const char *p, const char *from, size_t n, const char *to) {
  uintptr_t a = (uintptr_t)p, b = (uintptr_t)from;
  return a >= b && a < b + n ? to + (a - b) : p;
}

/* A frame is in: take it out of the read buffer (the core may read more
 * into that buffer, and move it, while the call is handled) and hand the
 * call to Lua. -1 when the connection was dropped. */
static int dispatch(tconn_t *c) {
  bp_thrift_server_t *s = SERVER(c);
  bp__theader_frame_t *f = &c->frame;
  bp_thrift_call_t *call = &c->call;
  bp__thrift_message_t m;
  char err[160];
  const char *in = c->base.rbuf;
  size_t flen = f->frame_len;

  if (bp__thrift_read_message(f->payload, f->payload_len, f->protocol, &m, err, sizeof err) != BP_OK) {
    drop(c, BP_LOG_WARNING, "%s", err);
    return -1;
  }
  if (m.type != BP__T_CALL && m.type != BP__T_ONEWAY) {
    drop(c, BP_LOG_WARNING, "expected a call, got a message of type %d", m.type);
    return -1;
  }
  if (bp__grow(&c->mbuf, &c->mcap, flen + m.name_len + 1)) {
    drop(c, BP_LOG_ERROR, "out of memory");
    return -1;
  }
  memcpy(c->mbuf, in, flen);
  for (int i = 0; i < f->nheaders; i++) {
    f->headers[i].key = moved(f->headers[i].key, in, flen, c->mbuf);
    f->headers[i].value = moved(f->headers[i].value, in, flen, c->mbuf);
  }
  call->conn = c;
  call->transport = f->transport;
  call->protocol = f->protocol;
  call->zlib = f->zlib;
  call->hseqid = f->seqid;
  call->flags = f->flags;
  call->type = m.type;
  call->seqid = m.seqid;
  call->msg = moved(f->payload, in, flen, c->mbuf);
  call->msg_len = f->payload_len;
  call->body_off = m.body;
  memcpy(c->mbuf + flen, moved(m.name, f->payload, f->payload_len, call->msg), m.name_len);
  c->mbuf[flen + m.name_len] = '\0';
  call->method = c->mbuf + flen;
  call->method_len = m.name_len;
  call->headers = f->headers;
  call->nheaders = f->nheaders;
  call->error[0] = '\0';
  call->error_code = 0;
  call->span = NULL;
  memmove(c->base.rbuf, c->base.rbuf + flen, c->base.rlen - flen);
  c->base.rlen -= flen;

  s->base.active++;
  c->base.busy = 1;
  c->base.receiving = 0;
  c->base.keep_alive = !s->base.draining;
  bp__conn_disarm(&c->base); /* the handler has all the time it needs */
  if (s->bp)
    call->span = bp__server_span_start(s->bp, call->method, s->trust, &bp__theader_trace_names,
                                       call_header_get, call, call_tags, call);
  {
    bp_span_t *span = call->span;
    if (span) bp_span_enter(span);
    bp__vm_dispatch(BP__PROTOCOL_THRIFT, call, s->handler);
    if (span) bp_span_enter(NULL);
  }
  return 0;
}

/* Parse what is buffered until a call is complete (then dispatch it) or
 * more bytes are needed. */
static void thrift_process(tconn_t *c) {
  bp_thrift_server_t *s = SERVER(c);
  while (!c->base.closing && !c->base.busy && !c->base.writing) {
    size_t need = 0;
    char err[160];
    int rc;
    if (c->base.rlen == 0) {
      if (c->base.receiving) { /* (a message was taken whole: the next has not begun) */
        c->base.receiving = 0;
        bp__conn_arm(&c->base, on_message_timeout, s->opts.idle_timeout);
      }
      bp__conn_idle(&c->base); /* may come back here with what it reads */
      return;
    }
    if (!c->base.receiving) { /* a message begins: all of it within message_timeout */
      c->base.receiving = 1;
      bp__conn_arm(&c->base, on_message_timeout, s->opts.message_timeout);
    }
    rc = bp__theader_read(&c->frame, c->base.rbuf, c->base.rlen, s->opts.max_frame_size, &need, err,
                          sizeof err);
    if (rc == BP_AGAIN) {
      if (c->base.read_eof || c->base.peer_gone) {
        drop(c, BP_LOG_DEBUG, "the client closed the connection in the middle of a message");
        return;
      }
      bp__conn_idle(&c->base);
      return;
    }
    if (rc == BP_ETOOBIG) {
      drop(c, BP_LOG_WARNING, "%s (max_frame_size is %zu bytes)", err, s->opts.max_frame_size);
      return;
    }
    if (rc != BP_OK) {
      drop(c, BP_LOG_WARNING, "%s", err);
      return;
    }
    dispatch(c);
    return; /* the next message on the next loop iteration (the core resumes) */
  }
}

/* The call is over: its span finishes, the connection may go on. */
static void call_done(bp_thrift_call_t *call) {
  tconn_t *c = call->conn;
  bp_span_t *span = call->span;
  SERVER(c)->base.active--;
  c->base.busy = 0;
  if (span) {
    call->span = NULL;
    if (call->error_code) bp__server_span_labels(span, NULL, call->error_code, NULL);
    bp__server_span_finish(span, call->error[0] ? call->error : NULL);
  }
}

/* Send msg (a whole message) back framed as the call came. */
static int answer(bp_thrift_call_t *call, const char *msg, size_t len) {
  tconn_t *c = call->conn;
  bp__theader_out_t o;
  size_t bound, n;
  memset(&o, 0, sizeof o);
  o.transport = call->transport;
  o.protocol = call->protocol;
  o.zlib = call->zlib;
  o.seqid = call->hseqid;
  o.flags = call->flags;
  bound = bp__theader_write_bound(&o, len);
  if (bp__grow(&c->base.wbuf, &c->base.wcap, bound) ||
      (n = bp__theader_write(&o, msg, len, c->base.wbuf, c->base.wcap)) == 0) {
    bp_log(BP_LOG_ERROR, LOGGER, "cannot frame the reply of %s (%zu bytes): out of memory", call->method, len);
    snprintf(call->error, sizeof call->error, "MemoryError");
    call_done(call);
    c->base.keep_alive = 0;
    bp__conn_close(&c->base);
    return BP_ENOMEM;
  }
  call_done(call);
  return bp__conn_write(&c->base, n);
}

static int check_open(const bp_thrift_call_t *call) {
  return call->conn && call->conn->base.busy ? BP_OK : BP_EINVAL;
}

int bp_thrift_call_reply(bp_thrift_call_t *call, const char *msg, size_t len) {
  if (check_open(call) || call->type == BP__T_ONEWAY) return BP_EINVAL;
  int rc = answer(call, msg, len);
  return rc;
}

int bp_thrift_call_fail(bp_thrift_call_t *call, int type, const char *message) {
  char small[512], *buf = small;
  size_t n;
  int rc;
  if (check_open(call)) return BP_EINVAL;
  if (!message) message = "";
  if (call->type == BP__T_ONEWAY) { /* nobody to tell */
    rc = bp_thrift_call_finish(call);
    return rc;
  }
  n = bp__thrift_write_app_exception(call->protocol, call->method, call->method_len, call->seqid, type,
                                     message, NULL, 0);
  if (n > sizeof small && !(buf = malloc(n))) n = 0;
  if (n) n = bp__thrift_write_app_exception(call->protocol, call->method, call->method_len, call->seqid,
                                            type, message, buf, n);
  if (n == 0) {
    call->conn->base.keep_alive = 0;
    snprintf(call->error, sizeof call->error, "MemoryError");
    call_done(call);
    bp__conn_close(&call->conn->base);
    return BP_ENOMEM;
  }
  rc = answer(call, buf, n);
  if (buf != small) free(buf);
  return rc;
}

int bp_thrift_call_finish(bp_thrift_call_t *call) {
  if (check_open(call)) return BP_EINVAL;
  call_done(call);
  bp__conn_continue(&call->conn->base);
  return BP_OK;
}

int bp_thrift_call_answered(const bp_thrift_call_t *call) { return check_open(call) != BP_OK; }

const char *bp_thrift_call_method(const bp_thrift_call_t *call, size_t *len) {
  if (len) *len = call->method_len;
  return call->method;
}

int bp_thrift_call_type(const bp_thrift_call_t *call) { return call->type; }

int32_t bp_thrift_call_seqid(const bp_thrift_call_t *call) { return call->seqid; }

int bp_thrift_call_protocol(const bp_thrift_call_t *call) { return call->protocol; }

int bp_thrift_call_transport(const bp_thrift_call_t *call) { return call->transport; }

const char *bp_thrift_call_message(const bp_thrift_call_t *call, size_t *len, size_t *body_off) {
  if (len) *len = call->msg_len;
  if (body_off) *body_off = call->body_off;
  return call->msg;
}

const char *bp_thrift_call_header(const bp_thrift_call_t *call, const char *name, size_t *len) {
  const char *v = call_header_get((void *)call, name, len);
  return v;
}

int bp_thrift_call_header_count(const bp_thrift_call_t *call) { return call->nheaders; }

void bp_thrift_call_header_at(const bp_thrift_call_t *call, int i, const char **name, size_t *name_len,
                              const char **value, size_t *value_len) {
  const bp__theader_kv_t *h = &call->headers[i];
  *name = h->key;
  *name_len = h->key_len;
  *value = h->value;
  *value_len = h->value_len;
}

const char *bp_thrift_call_remote_addr(const bp_thrift_call_t *call) { return call->conn->base.remote; }

bp_span_t *bp_thrift_call_span(const bp_thrift_call_t *call) { return call->span; }

void bp_thrift_call_set_error(bp_thrift_call_t *call, const char *error_class) {
  snprintf(call->error, sizeof call->error, "%s", error_class ? error_class : "");
}

void bp_thrift_call_set_error_code(bp_thrift_call_t *call, int code) { call->error_code = code; }

/* --- the protocol's callbacks ----------------------------------------------------- */

static void thrift_on_open(bp__conn_t *base) {
  tconn_t *c = (tconn_t *)base;
  bp__theader_frame_init(&c->frame);
  c->mbuf = NULL;
  c->mcap = 0;
  memset(&c->call, 0, sizeof c->call);
  c->base.keep_alive = 1;
  bp__conn_arm(base, on_message_timeout, SERVER(c)->opts.idle_timeout);
}

static void thrift_on_input(bp__conn_t *base) { thrift_process((tconn_t *)base); }

static void thrift_on_close(bp__conn_t *base) {
  tconn_t *c = (tconn_t *)base;
  if (c->call.span) { /* abandoned: the process stops */
    bp_thrift_call_set_error(&c->call, "ConnectionClosed");
    bp__server_span_finish(c->call.span, c->call.error);
    c->call.span = NULL;
  }
  bp__theader_frame_free(&c->frame);
  free(c->mbuf);
}

static size_t thrift_on_compact(bp__conn_t *base) {
  tconn_t *c = (tconn_t *)base;
  size_t freed = c->mcap + bp__theader_frame_compact(&c->frame);
  free(c->mbuf);
  c->mbuf = NULL;
  c->mcap = 0;
  return freed;
}

static const bp__protocol_t thrift_protocol = {
    .name = "thrift",
    .conn_size = sizeof(tconn_t),
    .on_open = thrift_on_open,
    .on_input = thrift_on_input,
    .on_close = thrift_on_close,
    .on_compact = thrift_on_compact,
};

/* --- the server ------------------------------------------------------------------ */

size_t bp_thrift_server_options_size(void) { return sizeof(bp_thrift_server_options_t); }

void bp_thrift_server_options_init(bp_thrift_server_options_t *o) {
  o->max_frame_size = 16 * 1024 * 1024;
  o->message_timeout = 10.0;
  o->idle_timeout = 0.0;
  o->max_concurrency = 0;
  o->shared_socket = 0;
}

static int options_invalid(const bp_thrift_server_options_t *o, char *err, size_t errlen) {
  const char *bad = NULL;
  if (!(o->message_timeout >= 0 && o->message_timeout <= 86400)) bad = "message_timeout (0 to 86400 seconds)";
  else if (!(o->idle_timeout >= 0 && o->idle_timeout <= 86400)) bad = "idle_timeout (0 to 86400 seconds)";
  else if (o->max_frame_size < 1024 || o->max_frame_size > 0x3fffffffu) bad = "max_frame_size (1024 to 2^30 - 1)";
  else if (o->max_concurrency < 0) bad = "max_concurrency (0 or more)";
  if (bad) snprintf(err, errlen, "invalid server option %s", bad);
  return bad != NULL;
}

static void thrift_server_free(bp__server_t *s) { free(s); }

bp_thrift_server_t *bp_thrift_server_start(bp_baseplate_t *bp, int trust_trace_headers, int handler,
                                           bp_listener_t *l, const bp_thrift_server_options_t *opts,
                                           char *err, size_t errlen) {
  bp_thrift_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->bp = bp;
  s->trust = trust_trace_headers;
  s->handler = handler;
  if (opts) s->opts = *opts;
  else bp_thrift_server_options_init(&s->opts);
  if (options_invalid(&s->opts, err, errlen)) {
    free(s);
    return NULL;
  }
  s->base.max_concurrency = s->opts.max_concurrency;
  s->base.shared_socket = s->opts.shared_socket;
  s->base.keepalive_timeout = s->opts.idle_timeout;
  /* input kept while a call is handled: the start of the next */
  s->base.max_buffered = 64 * 1024;
  s->base.free_fn = thrift_server_free;
  if (bp__server_start(&s->base, &thrift_protocol, l, err, errlen) != BP_OK) return NULL;
  return s;
}
