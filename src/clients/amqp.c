/* AMQP 0-9-1 connections over rabbitmq-c, on the loop
 * (include/baseplate/amqp.h, docs/architecture.md "AMQP").
 *
 * rabbitmq-c's connect and handshake block: they run on libuv's thread
 * pool (uv_queue_work), with the connect's time limit, and the loop takes
 * the connection over when they are done. From then on only the loop
 * thread touches it: its socket is watched with a poll handle, and each
 * time it is readable the frames are read with
 * amqp_simple_wait_frame_noblock and a zero timeout until none is left
 * (what one read brought may hold several frames, and a publish may read
 * ahead into rabbitmq-c's buffer: then a zero timer drains it). Methods are
 * sent with rabbitmq-c's calls, which write at once on the non-blocking
 * socket (they wait only when the kernel's send buffer is full). A timer
 * sends heartbeats and breaks a connection that sent nothing for two
 * heartbeat intervals.
 *
 * Waiters are woken only from loop callbacks, never inside a call from
 * Lua: a failure found there breaks the connection and the wakes follow
 * from the zero timer. The connection counts its references (the owner,
 * the connect in flight, each handle) and is freed when the last goes. */
#include "baseplate/amqp.h"
#include "baseplate/log.h"
#include "clients/watch.h"
#include "runtime.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_CONNECTING, ST_READY, ST_BROKEN };

/* A body larger than this is refused (RabbitMQ's own limit is 128 MB). */
#define MAX_BODY (128u * 1024 * 1024)

enum { NFIELDS = 7 };

struct bp_amqp_delivery_s {
  bp_amqp_delivery_t *next;
  uint64_t tag;
  int redelivered;
  int have_header;
  int discard; /* a returned message: read and dropped */
  char *field[NFIELDS];
  size_t field_len[NFIELDS];
  size_t body_size, body_got, body_cap;
  int nheaders;
  char **hkey, **hval;
  size_t *hkey_len, *hval_len;
};

typedef struct {
  uint64_t seq;
  int waiter;
} pending_t;

struct bp_amqp_conn_s {
  bp__closable_t closable; /* first: every handle's data points here */
  amqp_connection_state_t st;
  uv_work_t work;
  uv_timer_t hb_timer, kick_timer;
  bp__watch_t *poll;
  int refs;
  int state;
  int owner_gone, loop_gone, timers_closed;
  int fail_status; /* what waiters are woken with once broken */
  int connect_busy, connect_waiter, connect_rc;
  int rpc_busy, rpc_waiter;
  amqp_method_number_t rpc_expect;
  int next_busy, next_waiter;
  int confirming;
  uint64_t publish_seq;
  pending_t *pending;
  int npending, cap_pending;
  /* Acknowledgements: those asked for and not yet sent (acks), and the tags
   * settled above `floor` (every tag up to it is settled) */
  uint64_t *acks, *done;
  int nacks, cap_acks, ndone, cap_done;
  uint64_t floor;
  bp_amqp_delivery_t *head, *tail, *cur;
  int nqueued;
  uint64_t last_recv, last_send; /* loop time, ms */
  /* options, kept until connected (the password is wiped then) */
  char *host, *vhost, *user, *password;
  int port, heartbeat;
  int tls, tls_verify_peer, tls_verify_hostname;
  char *tls_ca_certs, *tls_certfile, *tls_keyfile;
  double timeout;
  int no_io; /* no socket (the fuzz target): nothing is sent */
  char where[300];
  char err[512];
};

static const char *LOGGER = "baseplate.clients.amqp";

/* --- errors and deliveries -------------------------------------------------------- */

static void set_err(bp_amqp_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(bp_amqp_conn_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
}

static void copy_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

void bp_amqp_delivery_free(bp_amqp_delivery_t *d) {
  if (!d) return;
  for (int i = 0; i < NFIELDS; i++) free(d->field[i]);
  for (int i = 0; i < d->nheaders; i++) {
    free(d->hkey[i]);
    free(d->hval[i]);
  }
  free(d->hkey);
  free(d->hval);
  free(d->hkey_len);
  free(d->hval_len);
  free(d);
}

/* Copy `b` into field `i` (NUL-terminated). 0, or -1 out of memory. */
static int set_field(bp_amqp_delivery_t *d, int i, amqp_bytes_t b) {
  char *s;
  if (b.len > MAX_BODY) return -1; /* (decoded from one frame: never this long) */
  if (!(s = malloc(b.len + 1))) return -1;
  if (b.len) memcpy(s, b.bytes, b.len);
  s[b.len] = '\0';
  free(d->field[i]);
  d->field[i] = s;
  d->field_len[i] = b.len;
  return 0;
}

static char *dup_bytes(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* A header value as text: strings as they are, numbers in decimal,
 * booleans as true/false. Other kinds (tables, arrays, decimals,
 * timestamps, void) give 0 (left out). */
static int value_text(const amqp_field_value_t *v, char *buf, size_t cap, const char **out,
                      size_t *len) {
  int n = -1;
  switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      *out = v->value.bytes.bytes;
      *len = v->value.bytes.len;
      return 1;
    case AMQP_FIELD_KIND_BOOLEAN: n = snprintf(buf, cap, "%s", v->value.boolean ? "true" : "false"); break;
    case AMQP_FIELD_KIND_I8: n = snprintf(buf, cap, "%d", (int)v->value.i8); break;
    case AMQP_FIELD_KIND_U8: n = snprintf(buf, cap, "%u", (unsigned)v->value.u8); break;
    case AMQP_FIELD_KIND_I16: n = snprintf(buf, cap, "%d", (int)v->value.i16); break;
    case AMQP_FIELD_KIND_U16: n = snprintf(buf, cap, "%u", (unsigned)v->value.u16); break;
    case AMQP_FIELD_KIND_I32: n = snprintf(buf, cap, "%" PRId32, v->value.i32); break;
    case AMQP_FIELD_KIND_U32: n = snprintf(buf, cap, "%" PRIu32, v->value.u32); break;
    case AMQP_FIELD_KIND_I64: n = snprintf(buf, cap, "%" PRId64, v->value.i64); break;
    case AMQP_FIELD_KIND_U64: n = snprintf(buf, cap, "%" PRIu64, v->value.u64); break;
    default: return 0;
  }
  if (n < 0 || (size_t)n >= cap) return 0;
  *out = buf;
  *len = (size_t)n;
  return 1;
}

/* The header frame's properties: content type, encoding, message id and
 * the headers that have a text form. 0, or -1 out of memory. */
static int take_properties(bp_amqp_delivery_t *d, const amqp_basic_properties_t *p) {
  if (!p) return 0;
  if ((p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) && set_field(d, BP_AMQP_CONTENT_TYPE, p->content_type))
    return -1;
  if ((p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) &&
      set_field(d, BP_AMQP_CONTENT_ENCODING, p->content_encoding))
    return -1;
  if ((p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && set_field(d, BP_AMQP_MESSAGE_ID, p->message_id))
    return -1;
  if ((p->_flags & AMQP_BASIC_HEADERS_FLAG) && p->headers.num_entries > 0) {
    int n = p->headers.num_entries;
    if (!(d->hkey = calloc((size_t)n, sizeof *d->hkey)) || !(d->hval = calloc((size_t)n, sizeof *d->hval)) ||
        !(d->hkey_len = calloc((size_t)n, sizeof *d->hkey_len)) ||
        !(d->hval_len = calloc((size_t)n, sizeof *d->hval_len)))
      return -1;
    for (int i = 0; i < n; i++) {
      const amqp_table_entry_t *e = &p->headers.entries[i];
      char buf[32];
      const char *v;
      size_t vlen;
      int k = d->nheaders;
      if (!value_text(&e->value, buf, sizeof buf, &v, &vlen)) continue;
      if (!(d->hkey[k] = dup_bytes(e->key.bytes, e->key.len))) return -1;
      if (!(d->hval[k] = dup_bytes(v, vlen))) {
        free(d->hkey[k]);
        d->hkey[k] = NULL;
        return -1;
      }
      d->hkey_len[k] = e->key.len;
      d->hval_len[k] = vlen;
      d->nheaders++;
    }
  }
  return 0;
}

/* --- lifetime ------------------------------------------------------------------------ */

static void conn_free(bp_amqp_conn_t *c) {
  bp_amqp_delivery_t *d, *next;
  if (c->st) amqp_destroy_connection(c->st);
  for (d = c->head; d; d = next) {
    next = d->next;
    bp_amqp_delivery_free(d);
  }
  bp_amqp_delivery_free(c->cur);
  free(c->pending);
  free(c->acks);
  free(c->done);
  free(c->host);
  free(c->vhost);
  free(c->user);
  free(c->tls_ca_certs);
  free(c->tls_certfile);
  free(c->tls_keyfile);
  if (c->password) {
    memset(c->password, 0, strlen(c->password));
    free(c->password);
  }
  free(c);
}

static void unref(bp_amqp_conn_t *c) {
  if (--c->refs == 0) conn_free(c);
}

static void handle_closed(uv_handle_t *h) { unref(h->data); }
static void poll_closed(bp__watch_t *w) { unref(w->owner); }

static void unwatch(bp_amqp_conn_t *c) {
  if (!c->poll) return;
  bp__watch_close(c->poll);
  c->poll = NULL;
}

static void close_timers(bp_amqp_conn_t *c) {
  if (c->timers_closed || c->no_io) return;
  c->timers_closed = 1;
  uv_close((uv_handle_t *)&c->hb_timer, handle_closed);
  uv_close((uv_handle_t *)&c->kick_timer, handle_closed);
}

static int has_waiters(const bp_amqp_conn_t *c) {
  return c->connect_busy || c->rpc_busy || c->next_busy || c->npending > 0;
}

/* The poll handle keeps the loop alive while someone waits. */
static void keep(bp_amqp_conn_t *c) {
  if (c->poll) bp__watch_keep_loop(c->poll, has_waiters(c));
}

static void on_kick(uv_timer_t *t);

static void kick(bp_amqp_conn_t *c) {
  if (c->no_io || c->timers_closed) return;
  uv_timer_start(&c->kick_timer, on_kick, 0, 0);
}

/* The connection cannot be used again (c->err says why); the waiters are
 * woken from the loop (on_kick). */
static void conn_break(bp_amqp_conn_t *c, int status) {
  if (c->state == ST_BROKEN) return;
  c->state = ST_BROKEN;
  c->fail_status = status;
  unwatch(c);
  if (!c->no_io && !c->timers_closed) uv_timer_stop(&c->hb_timer);
  bp_log(BP_LOG_DEBUG, LOGGER, "%s: %s", c->where, c->err);
  kick(c);
}

/* Wake every waiter of a broken connection, one at a time (a woken
 * coroutine may call in again: it finds the connection broken). */
static void wake_all(bp_amqp_conn_t *c) {
  int st = c->owner_gone ? BP_ECLOSED : c->fail_status;
  c->refs++;
  for (;;) {
    int w;
    if (c->loop_gone) break;
    if (c->connect_busy) {
      c->connect_busy = 0;
      w = c->connect_waiter;
    } else if (c->rpc_busy) {
      c->rpc_busy = 0;
      w = c->rpc_waiter;
    } else if (c->next_busy) {
      c->next_busy = 0;
      w = c->next_waiter;
    } else if (c->npending > 0) {
      w = c->pending[0].waiter;
      memmove(c->pending, c->pending + 1, (size_t)(c->npending - 1) * sizeof *c->pending);
      c->npending--;
    } else {
      break;
    }
    bp__vm_wake(w, st);
  }
  if (c->owner_gone) close_timers(c);
  unref(c);
}

/* --- reading frames ------------------------------------------------------------------ */

static int send_method(bp_amqp_conn_t *c, amqp_channel_t ch, amqp_method_number_t id, void *m) {
  int rc;
  if (c->no_io) return 0;
  rc = amqp_send_method(c->st, ch, id, m);
  c->last_send = uv_now(bp_loop());
  return rc;
}

static void finish_rpc(bp_amqp_conn_t *c, int status) {
  if (!c->rpc_busy) return;
  c->rpc_busy = 0;
  keep(c);
  if (!c->no_io) bp__vm_wake(c->rpc_waiter, status);
}

/* The broker acked (BP_OK) or nacked (BP_DECLINED) publish `tag` (and
 * those before it when `multiple`). */
static void confirm(bp_amqp_conn_t *c, uint64_t tag, int multiple, int status) {
  for (;;) {
    int i, w;
    if (c->state == ST_BROKEN || c->loop_gone) return;
    for (i = 0; i < c->npending; i++)
      if (c->pending[i].seq == tag || (multiple && c->pending[i].seq < tag)) break;
    if (i == c->npending) return;
    w = c->pending[i].waiter;
    memmove(c->pending + i, c->pending + i + 1, (size_t)(c->npending - i - 1) * sizeof *c->pending);
    c->npending--;
    keep(c);
    if (!c->no_io) bp__vm_wake(w, status);
  }
}

static void protocol_error(bp_amqp_conn_t *c, const char *what) {
  set_err(c, "%s: protocol error: %s", c->where, what);
  conn_break(c, BP_EIO);
}

static void complete(bp_amqp_conn_t *c) {
  bp_amqp_delivery_t *d = c->cur;
  c->cur = NULL;
  if (d->discard) {
    bp_amqp_delivery_free(d);
    return;
  }
  if (c->tail)
    c->tail->next = d;
  else
    c->head = d;
  c->tail = d;
  c->nqueued++;
  if (c->next_busy) {
    c->next_busy = 0;
    keep(c);
    if (!c->no_io) bp__vm_wake(c->next_waiter, BP_OK);
  }
}

static int start_delivery(bp_amqp_conn_t *c, int discard) {
  if (c->cur) {
    protocol_error(c, "a new message began before the last one's content was complete");
    return -1;
  }
  if (!(c->cur = calloc(1, sizeof *c->cur))) {
    set_err(c, "%s: out of memory reading a message", c->where);
    conn_break(c, BP_ENOMEM);
    return -1;
  }
  c->cur->discard = discard;
  return 0;
}

static void on_method(bp_amqp_conn_t *c, const amqp_frame_t *f) {
  amqp_method_number_t id = f->payload.method.id;
  void *m = f->payload.method.decoded;
  if (f->channel == 0) {
    if (id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *cl = m;
      amqp_connection_close_ok_t ok = {0};
      set_err(c, "%s: the broker closed the connection: %u %.*s", c->where, (unsigned)cl->reply_code,
              (int)(cl->reply_text.len > 200 ? 200 : cl->reply_text.len), (const char *)cl->reply_text.bytes);
      send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      conn_break(c, BP_EIO);
    } else if (id == AMQP_CONNECTION_BLOCKED_METHOD) {
      bp_log(BP_LOG_WARNING, LOGGER, "%s: the broker blocks publishing (resource alarm)", c->where);
    } else if (id == AMQP_CONNECTION_UNBLOCKED_METHOD) {
      bp_log(BP_LOG_INFO, LOGGER, "%s: the broker unblocked publishing", c->where);
    }
    return;
  }
  if (f->channel != 1) return;
  switch (id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      amqp_basic_deliver_t *d = m;
      if (start_delivery(c, 0)) return;
      c->cur->tag = d->delivery_tag;
      c->cur->redelivered = d->redelivered ? 1 : 0;
      if (set_field(c->cur, BP_AMQP_EXCHANGE, d->exchange) || set_field(c->cur, BP_AMQP_ROUTING_KEY, d->routing_key) ||
          set_field(c->cur, BP_AMQP_CONSUMER_TAG, d->consumer_tag)) {
        set_err(c, "%s: out of memory reading a message", c->where);
        conn_break(c, BP_ENOMEM);
      }
      return;
    }
    case AMQP_BASIC_RETURN_METHOD:
      start_delivery(c, 1);
      return;
    case AMQP_BASIC_ACK_METHOD: {
      amqp_basic_ack_t *a = m;
      confirm(c, a->delivery_tag, a->multiple, BP_OK);
      return;
    }
    case AMQP_BASIC_NACK_METHOD: {
      amqp_basic_nack_t *n = m;
      confirm(c, n->delivery_tag, n->multiple, BP_DECLINED);
      return;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      amqp_channel_close_t *cl = m;
      amqp_channel_close_ok_t ok = {0};
      set_err(c, "%s: the broker closed the channel: %u %.*s", c->where, (unsigned)cl->reply_code,
              (int)(cl->reply_text.len > 200 ? 200 : cl->reply_text.len), (const char *)cl->reply_text.bytes);
      send_method(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      conn_break(c, BP_EIO);
      return;
    }
    case AMQP_BASIC_CANCEL_METHOD:
      set_err(c, "%s: the broker cancelled the consumer (was the queue deleted?)", c->where);
      conn_break(c, BP_EIO);
      return;
    case AMQP_CHANNEL_FLOW_METHOD: {
      amqp_channel_flow_t *fl = m;
      amqp_channel_flow_ok_t ok = {fl->active};
      send_method(c, 1, AMQP_CHANNEL_FLOW_OK_METHOD, &ok);
      return;
    }
    default:
      if (c->rpc_busy && id == c->rpc_expect) finish_rpc(c, BP_OK);
      return;
  }
}

/* One frame that came in (also the fuzz target's way in). */
void bp__amqp_on_frame(bp_amqp_conn_t *c, const amqp_frame_t *f);
void bp__amqp_on_frame(bp_amqp_conn_t *c, const amqp_frame_t *f) {
  bp_amqp_delivery_t *d = c->cur;
  switch (f->frame_type) {
    case AMQP_FRAME_METHOD:
      on_method(c, f);
      return;
    case AMQP_FRAME_HEADER:
      if (f->channel != 1) return;
      if (!d || d->have_header) {
        protocol_error(c, "a content header came without its method");
        return;
      }
      if (f->payload.properties.class_id != AMQP_BASIC_CLASS) {
        /* (decoded as another class's properties: not basic's struct) */
        protocol_error(c, "a content header of another class than basic");
        return;
      }
      if (f->payload.properties.body_size > MAX_BODY) {
        protocol_error(c, "a message body is larger than 128 MB");
        return;
      }
      d->have_header = 1;
      d->body_size = (size_t)f->payload.properties.body_size;
      if (take_properties(d, f->payload.properties.decoded)) {
        set_err(c, "%s: out of memory reading a message", c->where);
        conn_break(c, BP_ENOMEM);
        return;
      }
      if (d->body_size == 0) {
        if (set_field(d, BP_AMQP_BODY, amqp_empty_bytes)) {
          set_err(c, "%s: out of memory reading a message", c->where);
          conn_break(c, BP_ENOMEM);
          return;
        }
        complete(c);
      }
      return;
    case AMQP_FRAME_BODY: {
      amqp_bytes_t b = f->payload.body_fragment;
      if (f->channel != 1) return;
      if (!d || !d->have_header || d->body_got + b.len > d->body_size) {
        protocol_error(c, "message content does not match its header");
        return;
      }
      if (d->body_got + b.len + 1 > d->body_cap) {
        /* Grown as the frames come, so a header's size alone allocates nothing. */
        size_t cap = d->body_cap ? d->body_cap * 2 : 4096;
        char *p;
        while (cap < d->body_got + b.len + 1) cap *= 2;
        if (cap > d->body_size + 1) cap = d->body_size + 1;
        if (!(p = realloc(d->field[BP_AMQP_BODY], cap))) {
          set_err(c, "%s: out of memory reading a message", c->where);
          conn_break(c, BP_ENOMEM);
          return;
        }
        d->field[BP_AMQP_BODY] = p;
        d->body_cap = cap;
      }
      if (b.len) memcpy(d->field[BP_AMQP_BODY] + d->body_got, b.bytes, b.len);
      d->body_got += b.len;
      d->field[BP_AMQP_BODY][d->body_got] = '\0';
      d->field_len[BP_AMQP_BODY] = d->body_got;
      if (d->body_got == d->body_size) complete(c);
      return;
    }
    default:
      return;
  }
}

static void flush_acks(bp_amqp_conn_t *c);

/* Read every frame rabbitmq-c has or the socket holds. */
static void drain(bp_amqp_conn_t *c) {
  struct timeval zero = {0, 0};
  c->refs++;
  while (c->state == ST_READY && !c->owner_gone && !c->loop_gone) {
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(c->st, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) {
      set_err(c, "%s: connection lost: %s", c->where, amqp_error_string2(rc));
      if (c->tls) {
        /* OpenSSL's reason, and its queue left empty for the loop's other
         * OpenSSL users */
        unsigned long e = ERR_peek_last_error();
        size_t n = strlen(c->err);
        if (e) snprintf(c->err + n, sizeof c->err - n, " (TLS: %s)", ERR_reason_error_string(e));
        ERR_clear_error();
      }
      conn_break(c, BP_EIO);
      break;
    }
    c->last_recv = uv_now(bp_loop());
    bp__amqp_on_frame(c, &f);
  }
  flush_acks(c);
  if (c->st && !c->cur) amqp_maybe_release_buffers(c->st);
  unref(c);
}

static void on_poll(bp__watch_t *w, int status, int events) {
  bp_amqp_conn_t *c = w->owner;
  (void)events;
  if (c->state != ST_READY) return;
  if (status < 0) {
    set_err(c, "%s: connection lost: %s", c->where, uv_strerror(status));
    conn_break(c, BP_EIO);
    return;
  }
  c->last_recv = uv_now(bp_loop()); /* (a heartbeat rabbitmq-c reads and drops counts too) */
  drain(c);
}

static void on_kick(uv_timer_t *t) {
  bp_amqp_conn_t *c = t->data;
  if (c->loop_gone) return;
  if (c->state == ST_BROKEN || c->owner_gone) {
    wake_all(c);
    return;
  }
  if (c->state == ST_READY && (c->tls || amqp_data_in_buffer(c->st)))
    drain(c);
  else
    flush_acks(c);
}

/* After a call from Lua: frames a write read ahead are read from the loop.
 * Over TLS always: what OpenSSL holds decrypted is not in rabbitmq-c's
 * buffer nor readable on the socket (drain reads until OpenSSL wants more
 * from the socket, so a zero timer's drain costs one read attempt). */
static void after_call(bp_amqp_conn_t *c) {
  if (c->state == ST_READY && !c->no_io &&
      (c->tls || amqp_data_in_buffer(c->st) || amqp_frames_enqueued(c->st)))
    kick(c);
}

static void on_heartbeat(uv_timer_t *t) {
  bp_amqp_conn_t *c = t->data;
  uint64_t now = uv_now(bp_loop()), hb = (uint64_t)c->heartbeat * 1000;
  if (c->state != ST_READY) return;
  if (now - c->last_recv > 2 * hb) {
    set_err(c, "%s: connection lost: nothing from the broker for %d seconds (heartbeat %ds)", c->where,
            2 * c->heartbeat, c->heartbeat);
    conn_break(c, BP_EIO);
    wake_all(c);
    return;
  }
  if (now - c->last_send >= hb / 2) {
    amqp_frame_t f;
    int rc;
    memset(&f, 0, sizeof f);
    f.frame_type = AMQP_FRAME_HEARTBEAT;
    f.channel = 0;
    rc = amqp_send_frame(c->st, &f);
    c->last_send = now;
    if (rc != AMQP_STATUS_OK) {
      set_err(c, "%s: connection lost: %s", c->where, amqp_error_string2(rc));
      conn_break(c, BP_EIO);
      wake_all(c);
    }
  }
}

/* --- connecting ------------------------------------------------------------------------ */

static void reply_err(bp_amqp_conn_t *c, amqp_rpc_reply_t r, const char *what) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      set_err(c, "%s: %s failed", c->where, what);
      break;
    case AMQP_RESPONSE_NONE:
      set_err(c, "%s: %s failed: no reply", c->where, what);
      break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      set_err(c, "%s: %s failed: %s", c->where, what, amqp_error_string2(r.library_error));
      break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *m = r.reply.decoded;
        set_err(c, "%s: %s refused: %u %.*s", c->where, what, (unsigned)m->reply_code,
                (int)(m->reply_text.len > 200 ? 200 : m->reply_text.len), (const char *)m->reply_text.bytes);
      } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded;
        set_err(c, "%s: %s refused: %u %.*s", c->where, what, (unsigned)m->reply_code,
                (int)(m->reply_text.len > 200 ? 200 : m->reply_text.len), (const char *)m->reply_text.bytes);
      } else {
        set_err(c, "%s: %s refused by the broker", c->where, what);
      }
      break;
    default:
      set_err(c, "%s: %s failed", c->where, what);
  }
}

/* TLS: why the broker's certificate was refused, noted by the verify
 * callback during the handshake (on the connecting thread). */
static _Thread_local char tls_verify_err[160];

static int tls_verify_cb(int ok, X509_STORE_CTX *x) {
  if (!ok && !tls_verify_err[0]) {
    int e = X509_STORE_CTX_get_error(x);
    snprintf(tls_verify_err, sizeof tls_verify_err, "%s", X509_verify_cert_error_string(e));
  }
  return ok;
}

/* The TLS socket with the connection's settings, or NULL (c->err says why). */
static amqp_socket_t *tls_socket(bp_amqp_conn_t *c) {
  amqp_socket_t *sock = amqp_ssl_socket_new(c->st);
  SSL_CTX *ctx;
  int rc;
  if (!sock) {
    set_err(c, "%s: cannot set up TLS (out of memory)", c->where);
    return NULL;
  }
  ctx = amqp_ssl_socket_get_context(sock);
  /* the mode is set again by rabbitmq-c on its SSL object; the callback
   * stays (it only notes why a certificate was refused) */
  if (ctx) SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, tls_verify_cb);
  amqp_ssl_socket_set_verify_peer(sock, c->tls_verify_peer ? 1 : 0);
  /* The host is checked by OpenSSL's own verification (rabbitmq-c's check
   * knows DNS names only): a DNS name, or an IP address against the
   * certificate's IP addresses. A mismatch fails the handshake, and the
   * callback notes "hostname mismatch" or "IP address mismatch". */
  amqp_ssl_socket_set_verify_hostname(sock, 0);
  if (c->tls_verify_peer && c->tls_verify_hostname) {
    X509_VERIFY_PARAM *param = ctx ? SSL_CTX_get0_param(ctx) : NULL;
    if (!param || (X509_VERIFY_PARAM_set1_ip_asc(param, c->host) != 1 &&
                   X509_VERIFY_PARAM_set1_host(param, c->host, 0) != 1)) {
      set_err(c, "%s: cannot set up the TLS host name check", c->where);
      return NULL;
    }
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  }
  if ((rc = amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST)) != AMQP_STATUS_OK) {
    set_err(c, "%s: TLS 1.2 is not available: %s", c->where, amqp_error_string2(rc));
    return NULL;
  }
  if (c->tls_ca_certs) {
    if ((rc = amqp_ssl_socket_set_cacert(sock, c->tls_ca_certs)) != AMQP_STATUS_OK) {
      set_err(c, "%s: cannot load the CA certificates %s: %s", c->where, c->tls_ca_certs,
              ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error()) : amqp_error_string2(rc));
      return NULL;
    }
  } else if (ctx && SSL_CTX_set_default_verify_paths(ctx) != 1) {
    set_err(c, "%s: cannot load the system's CA certificates", c->where);
    return NULL;
  }
  if (c->tls_certfile) {
    const char *key = c->tls_keyfile ? c->tls_keyfile : c->tls_certfile;
    if ((rc = amqp_ssl_socket_set_key(sock, c->tls_certfile, key)) != AMQP_STATUS_OK) {
      set_err(c, "%s: cannot load the client certificate %s (key %s): %s", c->where, c->tls_certfile, key,
              ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error()) : amqp_error_string2(rc));
      return NULL;
    }
  }
  return sock;
}

/* Why a TLS connect failed, from the verify callback or OpenSSL's queue. */
static void tls_connect_err(bp_amqp_conn_t *c, int rc) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  if (tls_verify_err[0])
    set_err(c, "%s: cannot connect: TLS handshake failed: certificate verify failed: %s", c->where,
            tls_verify_err);
  else if (reason)
    set_err(c, "%s: cannot connect: TLS handshake failed: %s", c->where, reason);
  else
    set_err(c, "%s: cannot connect: %s", c->where, amqp_error_string2(rc));
}

/* On the thread pool: only this thread touches c->st and c->err until
 * on_connected runs. */
static void connect_work(uv_work_t *req) {
  bp_amqp_conn_t *c = req->data;
  struct timeval tv, *tvp = NULL;
  amqp_socket_t *sock;
  amqp_rpc_reply_t r;
  int rc;
  if (c->timeout > 0) {
    tv.tv_sec = (time_t)c->timeout;
    tv.tv_usec = (suseconds_t)((c->timeout - (double)tv.tv_sec) * 1e6);
    tvp = &tv;
  }
  c->connect_rc = BP_EIO;
  if (!(c->st = amqp_new_connection()) || (!c->tls && !(sock = amqp_tcp_socket_new(c->st)))) {
    set_err(c, "%s: out of memory", c->where);
    c->connect_rc = BP_ENOMEM;
    return;
  }
  if (c->tls) {
    ERR_clear_error();
    tls_verify_err[0] = '\0';
    if (!(sock = tls_socket(c))) {
      ERR_clear_error();
      return;
    }
  }
  rc = amqp_socket_open_noblock(sock, c->host, c->port, tvp);
  if (rc != AMQP_STATUS_OK) {
    if (c->tls && rc != AMQP_STATUS_TIMEOUT && rc != AMQP_STATUS_SOCKET_ERROR &&
        rc != AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED)
      tls_connect_err(c, rc);
    else
      set_err(c, "%s: cannot connect: %s", c->where, amqp_error_string2(rc));
    if (c->tls) ERR_clear_error();
    if (rc == AMQP_STATUS_TIMEOUT) c->connect_rc = BP_ETIMEDOUT;
    return;
  }
  if (c->tls) ERR_clear_error();
  if (tvp) {
    amqp_set_handshake_timeout(c->st, tvp);
    amqp_set_rpc_timeout(c->st, tvp);
  }
  r = amqp_login(c->st, c->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, c->heartbeat, AMQP_SASL_METHOD_PLAIN, c->user,
                 c->password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    reply_err(c, r, "login");
    if (c->tls && ERR_peek_last_error()) {
      /* e.g. the broker refused our client certificate (TLS 1.3 says so
       * after the handshake) */
      size_t n = strlen(c->err);
      snprintf(c->err + n, sizeof c->err - n, " (TLS: %s)", ERR_reason_error_string(ERR_peek_last_error()));
    }
    if (c->tls) ERR_clear_error();
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
      c->connect_rc = BP_ETIMEDOUT;
    return;
  }
  amqp_channel_open(c->st, 1);
  r = amqp_get_rpc_reply(c->st);
  if (c->tls) ERR_clear_error();
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    reply_err(c, r, "opening a channel");
    return;
  }
  amqp_set_rpc_timeout(c->st, NULL);
  c->connect_rc = BP_OK;
}

static void on_connected(uv_work_t *req, int status) {
  bp_amqp_conn_t *c = req->data;
  int rc = c->connect_rc;
  if (c->password) {
    memset(c->password, 0, strlen(c->password));
    free(c->password);
    c->password = NULL;
  }
  if (status == UV_ECANCELED) {
    set_err(c, "%s: the event loop was shut down", c->where);
    rc = BP_ECLOSED;
  }
  if (c->owner_gone || c->loop_gone) {
    if (c->state != ST_BROKEN) c->state = ST_BROKEN;
    unref(c);
    return;
  }
  if (rc == BP_OK) {
    int fd = amqp_get_sockfd(c->st), urc = 0;
    if (!(c->poll = bp__watch_new(fd, c, c, on_poll, poll_closed, &urc)) ||
        (urc = bp__watch_set(c->poll, UV_READABLE)) != 0) {
      set_err(c, "%s: cannot watch the socket: %s", c->where, uv_strerror(urc));
      rc = BP_EIO;
    } else {
      c->refs++;
    }
  }
  c->connect_busy = 0;
  if (rc != BP_OK) {
    c->state = ST_BROKEN;
    c->fail_status = rc;
    unwatch(c);
    bp__vm_wake(c->connect_waiter, rc);
    unref(c);
    return;
  }
  c->state = ST_READY;
  c->last_recv = c->last_send = uv_now(bp_loop());
  if (c->heartbeat > 0) {
    uint64_t ms = (uint64_t)c->heartbeat * 1000 / 2;
    uv_timer_start(&c->hb_timer, on_heartbeat, ms ? ms : 1, ms ? ms : 1);
  }
  keep(c);
  bp__vm_wake(c->connect_waiter, BP_OK);
  if (c->state == ST_READY) after_call(c);
  unref(c);
}

/* bp__loop_shutdown: close the handles, wake nobody; the owner frees later. */
static void conn_shutdown(bp__closable_t *self) {
  bp_amqp_conn_t *c = (bp_amqp_conn_t *)self;
  if (c->loop_gone) return;
  c->loop_gone = 1;
  c->connect_busy = c->rpc_busy = c->next_busy = 0;
  c->npending = 0;
  if (c->state != ST_BROKEN) {
    set_err(c, "%s: the event loop was shut down", c->where);
    c->state = ST_BROKEN;
  }
  unwatch(c);
  close_timers(c);
}

int bp_amqp_connect(const bp_amqp_options_t *o, int waiter, bp_amqp_conn_t **out, char *err,
                    size_t errlen) {
  bp_amqp_conn_t *c;
  int rc;
  if (out) *out = NULL;
  if (!o || !out || !o->host || !*o->host || strlen(o->host) > 255) {
    copy_err(err, errlen, "amqp: a host name (1 to 255 characters) is required");
    return BP_EINVAL;
  }
  if (o->port < 1 || o->port > 65535 || o->heartbeat < 0 || o->heartbeat > 65535 || isnan(o->timeout) ||
      o->timeout < 0) {
    copy_err(err, errlen, "amqp: invalid port, heartbeat or timeout");
    return BP_EINVAL;
  }
  if (!(c = calloc(1, sizeof *c)) || !(c->host = strdup(o->host)) ||
      !(c->vhost = strdup(o->vhost ? o->vhost : "/")) || !(c->user = strdup(o->user ? o->user : "guest")) ||
      !(c->password = strdup(o->password ? o->password : "guest"))) {
    if (c) conn_free(c);
    copy_err(err, errlen, "amqp: out of memory");
    return BP_ENOMEM;
  }
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_shutdown;
  c->port = o->port;
  c->heartbeat = o->heartbeat;
  c->tls = o->tls ? 1 : 0;
  c->tls_verify_peer = o->tls_verify_peer ? 1 : 0;
  c->tls_verify_hostname = o->tls_verify_hostname ? 1 : 0;
  if (c->tls && ((o->tls_ca_certs && !(c->tls_ca_certs = strdup(o->tls_ca_certs))) ||
                 (o->tls_certfile && !(c->tls_certfile = strdup(o->tls_certfile))) ||
                 (o->tls_keyfile && !(c->tls_keyfile = strdup(o->tls_keyfile))))) {
    conn_free(c);
    copy_err(err, errlen, "amqp: out of memory");
    return BP_ENOMEM;
  }
  c->timeout = o->timeout;
  snprintf(c->where, sizeof c->where, "amqp %s%s%s:%d", strchr(c->host, ':') ? "[" : "", c->host,
           strchr(c->host, ':') ? "]" : "", c->port);
  c->refs = 1;
  uv_timer_init(bp_loop(), &c->hb_timer);
  uv_timer_init(bp_loop(), &c->kick_timer);
  c->hb_timer.data = c->kick_timer.data = c;
  uv_unref((uv_handle_t *)&c->hb_timer);
  c->refs += 2;
  c->state = ST_CONNECTING;
  c->connect_busy = 1;
  c->connect_waiter = waiter;
  c->work.data = c;
  if ((rc = uv_queue_work(bp_loop(), &c->work, connect_work, on_connected)) != 0) {
    set_err(c, "%s: cannot start connecting: %s", c->where, uv_strerror(rc));
    conn_break(c, BP_EIO);
  } else {
    c->refs++;
  }
  *out = c;
  return BP_AGAIN;
}

/* --- methods ---------------------------------------------------------------------------- */

static int usable(bp_amqp_conn_t *c) { return c && c->state == ST_READY && !c->owner_gone; }

/* After sending a method that the broker answers with `expect`. */
static int rpc_sent(bp_amqp_conn_t *c, int rc, amqp_method_number_t expect, int waiter, const char *what) {
  if (rc != AMQP_STATUS_OK) {
    set_err(c, "%s: sending %s failed: %s", c->where, what, amqp_error_string2(rc));
    conn_break(c, BP_EIO);
    return BP_EIO;
  }
  c->rpc_busy = 1;
  c->rpc_waiter = waiter;
  c->rpc_expect = expect;
  keep(c);
  after_call(c);
  return BP_AGAIN;
}

static int rpc_check(bp_amqp_conn_t *c) {
  if (!usable(c)) return BP_EIO;
  if (c->rpc_busy) return BP_DECLINED;
  return BP_OK;
}

static amqp_bytes_t bytes_of(const char *s) { return s ? amqp_cstring_bytes(s) : amqp_empty_bytes; }

int bp_amqp_exchange_declare(bp_amqp_conn_t *c, const char *name, const char *type, int durable,
                             int auto_delete, int waiter) {
  amqp_exchange_declare_t m;
  int rc = rpc_check(c);
  if (rc != BP_OK) return rc;
  memset(&m, 0, sizeof m);
  m.exchange = bytes_of(name);
  m.type = bytes_of(type ? type : "direct");
  m.durable = durable ? 1 : 0;
  m.auto_delete = auto_delete ? 1 : 0;
  m.arguments = amqp_empty_table;
  rc = send_method(c, 1, AMQP_EXCHANGE_DECLARE_METHOD, &m);
  return rpc_sent(c, rc, AMQP_EXCHANGE_DECLARE_OK_METHOD, waiter, "exchange.declare");
}

int bp_amqp_queue_declare(bp_amqp_conn_t *c, const char *name, int durable, int exclusive,
                          int auto_delete, int waiter) {
  amqp_queue_declare_t m;
  int rc = rpc_check(c);
  if (rc != BP_OK) return rc;
  memset(&m, 0, sizeof m);
  m.queue = bytes_of(name);
  m.durable = durable ? 1 : 0;
  m.exclusive = exclusive ? 1 : 0;
  m.auto_delete = auto_delete ? 1 : 0;
  m.arguments = amqp_empty_table;
  rc = send_method(c, 1, AMQP_QUEUE_DECLARE_METHOD, &m);
  return rpc_sent(c, rc, AMQP_QUEUE_DECLARE_OK_METHOD, waiter, "queue.declare");
}

int bp_amqp_queue_bind(bp_amqp_conn_t *c, const char *queue, const char *exchange, const char *routing_key,
                       int waiter) {
  amqp_queue_bind_t m;
  int rc = rpc_check(c);
  if (rc != BP_OK) return rc;
  memset(&m, 0, sizeof m);
  m.queue = bytes_of(queue);
  m.exchange = bytes_of(exchange);
  m.routing_key = bytes_of(routing_key);
  m.arguments = amqp_empty_table;
  rc = send_method(c, 1, AMQP_QUEUE_BIND_METHOD, &m);
  return rpc_sent(c, rc, AMQP_QUEUE_BIND_OK_METHOD, waiter, "queue.bind");
}

int bp_amqp_qos(bp_amqp_conn_t *c, int prefetch_count, int waiter) {
  amqp_basic_qos_t m;
  int rc = rpc_check(c);
  if (rc != BP_OK) return rc;
  if (prefetch_count < 0 || prefetch_count > 65535) return BP_EINVAL;
  memset(&m, 0, sizeof m);
  m.prefetch_count = (uint16_t)prefetch_count;
  rc = send_method(c, 1, AMQP_BASIC_QOS_METHOD, &m);
  return rpc_sent(c, rc, AMQP_BASIC_QOS_OK_METHOD, waiter, "basic.qos");
}

int bp_amqp_consume(bp_amqp_conn_t *c, const char *queue, int waiter) {
  amqp_basic_consume_t m;
  int rc = rpc_check(c);
  if (rc != BP_OK) return rc;
  memset(&m, 0, sizeof m);
  m.queue = bytes_of(queue);
  m.consumer_tag = amqp_empty_bytes;
  m.arguments = amqp_empty_table;
  rc = send_method(c, 1, AMQP_BASIC_CONSUME_METHOD, &m);
  return rpc_sent(c, rc, AMQP_BASIC_CONSUME_OK_METHOD, waiter, "basic.consume");
}

int bp_amqp_confirm_select(bp_amqp_conn_t *c, int waiter) {
  amqp_confirm_select_t m;
  int rc = rpc_check(c);
  if (rc != BP_OK) return rc;
  memset(&m, 0, sizeof m);
  rc = send_method(c, 1, AMQP_CONFIRM_SELECT_METHOD, &m);
  if (rc == AMQP_STATUS_OK) {
    c->confirming = 1;
    c->publish_seq = 0;
  }
  return rpc_sent(c, rc, AMQP_CONFIRM_SELECT_OK_METHOD, waiter, "confirm.select");
}

int bp_amqp_publish(bp_amqp_conn_t *c, const char *exchange, const char *routing_key, const char *body,
                    size_t len, const char *content_type, int persistent, int nheaders,
                    const char *const *keys, const char *const *vals, int waiter) {
  amqp_basic_properties_t p;
  amqp_table_entry_t stack[8], *entries = stack;
  amqp_bytes_t b;
  int rc;
  if (!usable(c)) return BP_EIO;
  if (nheaders < 0 || (nheaders > 0 && (!keys || !vals))) return BP_EINVAL;
  if (c->confirming && c->npending == c->cap_pending) {
    int cap = c->cap_pending ? c->cap_pending * 2 : 16;
    pending_t *np = realloc(c->pending, (size_t)cap * sizeof *np);
    if (!np) return BP_ENOMEM;
    c->pending = np;
    c->cap_pending = cap;
  }
  if (nheaders > 8 && !(entries = calloc((size_t)nheaders, sizeof *entries))) return BP_ENOMEM;
  memset(&p, 0, sizeof p);
  if (content_type) {
    p._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.content_type = amqp_cstring_bytes(content_type);
  }
  if (persistent) {
    p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = 2;
  }
  if (nheaders > 0) {
    for (int i = 0; i < nheaders; i++) {
      entries[i].key = bytes_of(keys[i]);
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = bytes_of(vals[i]);
    }
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers.num_entries = nheaders;
    p.headers.entries = entries;
  }
  b.bytes = (void *)(uintptr_t)body;
  b.len = body ? len : 0;
  rc = amqp_basic_publish(c->st, 1, bytes_of(exchange), bytes_of(routing_key), 0, 0, &p, b);
  c->last_send = uv_now(bp_loop());
  if (entries != stack) free(entries);
  if (rc != AMQP_STATUS_OK) {
    set_err(c, "%s: publishing failed: %s", c->where, amqp_error_string2(rc));
    conn_break(c, BP_EIO);
    return BP_EIO;
  }
  after_call(c);
  if (!c->confirming) return BP_OK;
  c->pending[c->npending].seq = ++c->publish_seq;
  c->pending[c->npending].waiter = waiter;
  c->npending++;
  keep(c);
  return BP_AGAIN;
}

int bp_amqp_next(bp_amqp_conn_t *c, int waiter, bp_amqp_delivery_t **out) {
  bp_amqp_delivery_t *d;
  if (out) *out = NULL;
  if (!c || !out) return BP_EINVAL;
  if ((d = c->head) != NULL) {
    c->head = d->next;
    if (!c->head) c->tail = NULL;
    d->next = NULL;
    c->nqueued--;
    *out = d;
    return BP_OK;
  }
  if (!usable(c)) return BP_EIO;
  /* (a later call replaces a waiter that gave up) */
  c->next_busy = 1;
  c->next_waiter = waiter;
  keep(c);
  return BP_AGAIN;
}

/* Acknowledgements are gathered for the rest of the loop turn and sent
 * together: the acks of a run of consecutive delivery tags (delivery tags
 * count up from 1 on the channel) as one basic.ack with `multiple`, the
 * others one by one. A multiple ack must name a tag not yet settled, and
 * covers every unsettled tag below it: so it names the highest pending ack
 * at or below `floor`, the tag below which everything is settled. */
static int push_tag(uint64_t **a, int *n, int *cap, uint64_t tag) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 32;
    uint64_t *p = realloc(*a, (size_t)nc * sizeof *p);
    if (!p) return -1;
    *a = p;
    *cap = nc;
  }
  (*a)[(*n)++] = tag;
  return 0;
}

static int cmp_tag(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int send_ack(bp_amqp_conn_t *c, uint64_t tag, int multiple) {
  int rc = amqp_basic_ack(c->st, 1, tag, multiple);
  c->last_send = uv_now(bp_loop());
  if (rc != AMQP_STATUS_OK) {
    set_err(c, "%s: basic.ack failed: %s", c->where, amqp_error_string2(rc));
    conn_break(c, BP_EIO);
    return -1;
  }
  return 0;
}

/* `tag` was settled (sent): note it, and move the floor up over what is done. */
static int settled(bp_amqp_conn_t *c, uint64_t tag) {
  if (tag <= c->floor) return 0;
  if (push_tag(&c->done, &c->ndone, &c->cap_done, tag)) return -1;
  return 0;
}

static void raise_floor(bp_amqp_conn_t *c) {
  int i = 0, k = 0;
  qsort(c->done, (size_t)c->ndone, sizeof *c->done, cmp_tag);
  while (i < c->ndone && c->done[i] <= c->floor + 1) {
    if (c->done[i] == c->floor + 1) c->floor++;
    i++;
  }
  for (; i < c->ndone; i++) c->done[k++] = c->done[i];
  c->ndone = k;
}

static void flush_acks(bp_amqp_conn_t *c) {
  uint64_t multi = 0;
  int n = c->nacks;
  if (n == 0) return;
  c->nacks = 0;
  if (!usable(c) || c->no_io) return; /* (the broker delivers them again) */
  for (int i = 0; i < n; i++) {
    if (settled(c, c->acks[i])) {
      set_err(c, "%s: out of memory settling messages", c->where);
      conn_break(c, BP_ENOMEM);
      return;
    }
  }
  {
    uint64_t before = c->floor;
    raise_floor(c);
    for (int i = 0; i < n; i++)
      if (c->acks[i] > before && c->acks[i] <= c->floor && c->acks[i] > multi) multi = c->acks[i];
  }
  if (multi && send_ack(c, multi, 1)) return;
  for (int i = 0; i < n; i++) {
    if (c->acks[i] > c->floor && send_ack(c, c->acks[i], 0)) return;
  }
  after_call(c);
}

static int settle(bp_amqp_conn_t *c, uint64_t tag, int ack, int requeue) {
  int rc;
  if (!usable(c)) return BP_EIO;
  if (ack) {
    if (push_tag(&c->acks, &c->nacks, &c->cap_acks, tag)) return BP_ENOMEM;
    kick(c); /* (sent at the end of this loop turn) */
    return BP_OK;
  }
  rc = amqp_basic_reject(c->st, 1, tag, requeue ? 1 : 0);
  c->last_send = uv_now(bp_loop());
  if (rc != AMQP_STATUS_OK) {
    set_err(c, "%s: basic.reject failed: %s", c->where, amqp_error_string2(rc));
    conn_break(c, BP_EIO);
    return BP_EIO;
  }
  if (settled(c, tag)) {
    set_err(c, "%s: out of memory settling messages", c->where);
    conn_break(c, BP_ENOMEM);
    return BP_ENOMEM;
  }
  after_call(c);
  return BP_OK;
}

int bp_amqp_ack(bp_amqp_conn_t *c, uint64_t delivery_tag) { return settle(c, delivery_tag, 1, 0); }

int bp_amqp_reject(bp_amqp_conn_t *c, uint64_t delivery_tag, int requeue) {
  return settle(c, delivery_tag, 0, requeue);
}

const char *bp_amqp_error(const bp_amqp_conn_t *c) { return c ? c->err : "no connection"; }

int bp_amqp_broken(const bp_amqp_conn_t *c) { return !c || c->state == ST_BROKEN || c->owner_gone; }

int bp_amqp_queued(const bp_amqp_conn_t *c) { return c ? c->nqueued : 0; }

void bp_amqp_close(bp_amqp_conn_t *c) {
  if (!c || c->owner_gone) return;
  flush_acks(c); /* (what was acknowledged goes before the connection does) */
  c->owner_gone = 1;
  if (c->state != ST_BROKEN) set_err(c, "%s: closed", c->where);
  if (!c->loop_gone && !c->no_io) {
    if (c->state != ST_BROKEN) {
      c->state = ST_BROKEN;
      c->fail_status = BP_ECLOSED;
      unwatch(c);
      uv_timer_stop(&c->hb_timer);
    }
    kick(c); /* on_kick wakes the waiters, then closes the timers */
  }
  unref(c);
}

/* --- deliveries ------------------------------------------------------------------------- */

uint64_t bp_amqp_delivery_tag(const bp_amqp_delivery_t *d) { return d ? d->tag : 0; }

int bp_amqp_delivery_redelivered(const bp_amqp_delivery_t *d) { return d ? d->redelivered : 0; }

const char *bp_amqp_delivery_field(const bp_amqp_delivery_t *d, int which, size_t *len) {
  if (len) *len = 0;
  if (!d || which < 0 || which >= NFIELDS || !d->field[which]) return NULL;
  if (len) *len = d->field_len[which];
  return d->field[which];
}

int bp_amqp_delivery_nheaders(const bp_amqp_delivery_t *d) { return d ? d->nheaders : 0; }

const char *bp_amqp_delivery_header(const bp_amqp_delivery_t *d, int i, const char **key, size_t *keylen,
                                    size_t *len) {
  if (!d || i < 0 || i >= d->nheaders) return NULL;
  if (key) *key = d->hkey[i];
  if (keylen) *keylen = d->hkey_len[i];
  if (len) *len = d->hval_len[i];
  return d->hval[i];
}

/* --- the fuzz target's connection --------------------------------------------------------- */

/* A connection with no socket and no loop handles, ready, consuming: frames
 * given to bp__amqp_on_frame are handled as the broker's would be. */
bp_amqp_conn_t *bp__amqp_fuzz_conn(void);
bp_amqp_conn_t *bp__amqp_fuzz_conn(void) {
  bp_amqp_conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->no_io = 1;
  c->timers_closed = 1;
  c->refs = 1;
  c->state = ST_READY;
  snprintf(c->where, sizeof c->where, "amqp fuzz");
  return c;
}

/* Free it (deliveries still queued go too). */
void bp__amqp_fuzz_free(bp_amqp_conn_t *c);
void bp__amqp_fuzz_free(bp_amqp_conn_t *c) {
  if (c) conn_free(c);
}
