/*
 * The HTTP/1.1 server: libuv streams, Debian's http_parser, one request at a
 * time per connection (pipelined requests wait in the read buffer and are
 * answered in order), and every response written with one write. Connections
 * are read through the loop's edge-triggered set (bp__edge_t, loop.c), so
 * that under load they are served in the order their requests arrived.
 *
 * Where a request enters: on_message_complete() -> dispatch(). Where it
 * leaves: bp_response_send() -> conn_write().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include "app.h"
#include "baseplate/span.h"
#include "span_internal.h"
#include "baseplate/config.h"
#include "internal.h"
#include "runtime.h"
#include "baseplate/log.h"
#include "server/listener.h"

#include <http_parser.h>
#include <linux/filter.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* --- connections and requests -------------------------------------------------- */

typedef struct {
  size_t name_off, name_len, value_off, value_len;
} bp_hdr_t;

typedef struct bp_conn_s bp_conn_t;

struct bp_request_s {
  bp_conn_t *conn;
  int span_status; /* the status for the span's deferred tags, once known */
  const char *method;
  const char *path, *query, *body;
  size_t path_len, query_len, body_len;
  int version;
  int head;
  int sent;
  uint64_t start_ns; /* when the request was complete, for the access log */
  int streaming;       /* bp_response_start was called */
  int stream_status;
  size_t head_pending; /* bytes of head in wbuf not yet written (streaming) */
  size_t stream_bytes;
  bp__match_t match;
  bp_span_t *span;   /* the server span, while the request is in flight */
  char error[64];    /* the error class the span finishes with ("" for none) */
};

struct bp_http_server_s {
  bp__closable_t closable;
  /* The listening socket is polled and accepted from here (not uv_listen):
   * running out of file descriptors must pause accepting, not make libuv
   * close the waiting connections unseen. */
  int lfd;
  uv_poll_t lpoll;
  uv_timer_t accept_retry; /* accepting paused after EMFILE and the like */
  uv_timer_t sweep;        /* once a second: idle connections give their buffers back */
  int listener_handles;    /* lpoll, accept_retry and sweep not closed yet */
  int peak_conns;          /* the most connections since memory was last trimmed */
  int polling, accept_paused;
  int family;
  bp_app_t *app;
  bp_http_server_options_t opts;
  bp_conn_t *conns; /* doubly linked */
  int nconns, active;
  int stopping;
  int draining;
  int listener_closed;
  int closed_waiter;  /* Lua waiter to wake when the last connection closes */
  int accept_errors;  /* failed accepts not logged yet */
  uint64_t accept_error_logged; /* loop time of the last such log line */
};

enum { HDR_NONE, HDR_FIELD, HDR_VALUE };

struct bp_conn_s {
  bp__closable_t closable;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } h;
  bp_http_server_t *server;
  bp__edge_t edge; /* input readiness */
  bp_conn_t *prev, *next;
  uv_timer_t timer; /* header read timeout, or keep-alive idle timeout */
  uint64_t deadline; /* loop time (ms) the current timeout expires at */
  uv_timer_cb on_deadline; /* what to do then; NULL: no timeout */
  int handles_open; /* the stream and the timer: freed when both closed */
  http_parser parser;
  char *rbuf; /* bytes read, not yet parsed */
  size_t rlen, rcap;
  char *abuf; /* the request being parsed: url, header names and values, body */
  size_t alen, acap;
  bp_hdr_t *hdrs;
  int nhdrs, hcap, hdr_state;
  size_t url_len, head_bytes;
  char *hbuf; /* response headers added by the handler */
  size_t hlen, hcap_bytes;
  char *wbuf; /* the response being written */
  size_t wcap;
  uv_write_t wreq;
  bp_request_t req;
  int receiving;  /* part of a request has arrived */
  int in_request; /* a complete request is being handled */
  int writing;
  int reading;  /* we want input (else it waits in the kernel: backpressure) */
  int readable; /* input may be waiting: no short read or EAGAIN since the last event */
  int hangup;   /* the peer closed or the socket failed: read until EOF or the error */
  int closing;
  int peer_gone;  /* read error: nobody to answer */
  int read_eof;   /* the client finished sending: answer what came, then close */
  int keep_alive;
  int close_after; /* the request's framing cannot be trusted past it: close once answered */
  int parse_error; /* status to answer a bad request with, then close */
  int lingering;   /* answered and half-closed: reading and discarding until the client closes */
  int unread_input; /* a request was refused before all of it was read */
  uint64_t linger_until; /* loop time (ms) lingering ends at the latest */
  size_t linger_bytes; /* discarded so far */
  uint64_t body_deadline; /* loop time (ms) the request's body must be in by (0: none) */
  uint64_t idle_since; /* loop time (ms) the connection last went idle */
  char remote[64];
};

static uv_idle_t resume_idle;   /* continues parsing pipelined requests */
static bp_conn_t **resume_list; /* connections waiting for it */
static int resume_count, resume_cap, resume_init;

static void conn_close(bp_conn_t *c);
static void conn_process(bp_conn_t *c);
static void send_simple(bp_conn_t *c, int status, const char *extra_header);

static int grow(char **buf, size_t *cap, size_t need) {
  size_t n = *cap ? *cap : 1024;
  char *p;
  if (need <= *cap) return BP_OK;
  while (n < need) n *= 2;
  if (!(p = realloc(*buf, n))) return BP_ENOMEM;
  *buf = p;
  *cap = n;
  return BP_OK;
}

static int append(bp_conn_t *c, const char *at, size_t len) {
  if (grow(&c->abuf, &c->acap, c->alen + len + 1)) return BP_ENOMEM;
  memcpy(c->abuf + c->alen, at, len);
  c->alen += len;
  return BP_OK;
}

/* --- timeouts ------------------------------------------------------------------ */

static void on_header_timeout(uv_timer_t *t);
static void on_idle_timeout(uv_timer_t *t);

/* Timeouts are lazy: arming moves a deadline; the timer itself is only
 * started when not running, and when it fires early it is re-armed for the
 * rest. That keeps timer-heap operations off the per-request path. */
static void on_timer(uv_timer_t *t) {
  bp_conn_t *c = t->data;
  uint64_t now = uv_now(uv_default_loop());
  if (!c->on_deadline) return;
  if (now < c->deadline) {
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    return;
  }
  c->on_deadline(t);
}

static void arm(bp_conn_t *c, uv_timer_cb cb, double seconds) {
  if (seconds <= 0) {
    c->on_deadline = NULL;
    return;
  }
  uint64_t ms = (uint64_t)(seconds * 1000.0 + 0.5);
  c->deadline = uv_now(uv_default_loop()) + ms;
  c->on_deadline = cb;
  /* A later deadline waits for the running timer (on_timer re-arms); an
   * earlier one restarts it. */
  if (!uv_is_active((uv_handle_t *)&c->timer) || uv_timer_get_due_in(&c->timer) > ms)
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void disarm(bp_conn_t *c) { c->on_deadline = NULL; }

/* Lingering close (as nginx's): closing a socket with unread input makes
 * the kernel send a reset, and a reset makes the client's kernel drop what
 * it had received but not yet handed to the client, such as the error
 * response just sent. So: send our FIN after the response, then read and
 * discard until the client closes too, for LINGER_MS at most, LINGER_IDLE_MS
 * without input, LINGER_BYTES in all. */
#define LINGER_MS 5000
#define LINGER_IDLE_MS 2000
#define LINGER_BYTES (16u << 20)

static void on_linger_timeout(uv_timer_t *t) { conn_close(t->data); }

static void linger_arm(bp_conn_t *c) {
  uint64_t now = uv_now(uv_default_loop());
  uint64_t left = c->linger_until > now ? c->linger_until - now : 1;
  arm(c, on_linger_timeout, (double)(left < LINGER_IDLE_MS ? left : LINGER_IDLE_MS) / 1000.0);
}


/* Waiting for (the rest of) a request from the client: header_timeout for
 * the head (from its first byte) and for each pause in the body, and the
 * body's own deadline (body_timeout) over it all. */
static void arm_read_timeout(bp_conn_t *c) {
  double t = c->server->opts.header_timeout;
  if (c->body_deadline) {
    uint64_t now = uv_now(uv_default_loop());
    double left = c->body_deadline > now ? (double)(c->body_deadline - now) / 1000.0 : 0.001;
    if (!(t > 0) || left < t) t = left;
  }
  arm(c, on_header_timeout, t);
}

/* --- http_parser callbacks ---------------------------------------------------- */

static int count_head(bp_conn_t *c, size_t len) {
  c->head_bytes += len;
  if (c->head_bytes > c->server->opts.max_header_size) {
    c->parse_error = 431;
    return -1;
  }
  return 0;
}

/* http_parser's own limit on a request head is process-wide (80 KiB unless
 * set): it is raised to the largest server's max_header_size. It counts
 * every byte (separators, whitespace); count_head counts what the callbacks
 * see, never more, and keeps a server with a smaller limit than another's
 * to its own. */
static void raise_parser_limit(size_t max_header_size) {
  static uint64_t current; /* (0: not set yet; http_parser's own is 80 KiB) */
  uint64_t want = (uint64_t)max_header_size;
  if (want > UINT32_MAX) want = UINT32_MAX;
  if (want > current) {
    current = want;
    http_parser_set_max_header_size((uint32_t)want);
  }
}

static int on_message_begin(http_parser *p) {
  bp_conn_t *c = p->data;
  arm_read_timeout(c); /* the keep-alive wait is over; the request has begun */
  c->receiving = 1;
  c->alen = c->url_len = c->head_bytes = 0;
  c->nhdrs = 0;
  c->hdr_state = HDR_NONE;
  c->hlen = 0;
  c->body_deadline = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  if (count_head(c, len) || append(c, at, len)) return -1;
  c->url_len += len;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  if (count_head(c, len)) return -1;
  /* RFC 9112 5.1: no whitespace between a field name and its colon (a
   * proxy may read "Content-Length : 5" otherwise than we do) */
  if (memchr(at, ' ', len) || memchr(at, '\t', len)) {
    c->parse_error = 400;
    return -1;
  }
  if (c->hdr_state != HDR_FIELD) {
    if (c->nhdrs >= c->server->opts.max_header_count) {
      c->parse_error = 431;
      return -1;
    }
    if (count_head(c, 4)) return -1; /* ": " and CRLF */
    if (c->nhdrs == c->hcap) {
      int cap = c->hcap ? c->hcap * 2 : 16;
      bp_hdr_t *n = realloc(c->hdrs, cap * sizeof *n);
      if (!n) return -1;
      c->hdrs = n;
      c->hcap = cap;
    }
    c->hdrs[c->nhdrs].name_off = c->alen;
    c->hdrs[c->nhdrs].name_len = 0;
    c->hdrs[c->nhdrs].value_off = 0;
    c->hdrs[c->nhdrs].value_len = 0;
    c->nhdrs++;
    c->hdr_state = HDR_FIELD;
  }
  if (append(c, at, len)) return -1;
  c->hdrs[c->nhdrs - 1].name_len += len;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  if (count_head(c, len)) return -1;
  if (c->hdr_state != HDR_VALUE) {
    c->hdrs[c->nhdrs - 1].value_off = c->alen;
    c->hdr_state = HDR_VALUE;
  }
  if (append(c, at, len)) return -1;
  c->hdrs[c->nhdrs - 1].value_len += len;
  return 0;
}

static int header_is(const bp_conn_t *c, const bp_hdr_t *h, const char *name, size_t len) {
  return h->name_len == len && strncasecmp(c->abuf + h->name_off, name, len) == 0;
}

static int on_headers_complete(http_parser *p) {
  bp_conn_t *c = p->data;
  int hosts = 0, te = 0;
  if (p->http_major != 1 || p->http_minor > 1) {
    c->parse_error = 505;
    return -1;
  }
  for (int i = 0; i < c->nhdrs; i++) {
    if (header_is(c, &c->hdrs[i], "host", 4)) hosts++;
    else if (header_is(c, &c->hdrs[i], "transfer-encoding", 17)) te++;
  }
  /* RFC 9112 3.2: exactly one Host in HTTP/1.1 (at most one in 1.0) */
  if (hosts > 1 || (hosts == 0 && p->http_minor == 1)) {
    c->parse_error = 400;
    return -1;
  }
  /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing: the
   * request is answered, then the connection closes */
  c->close_after = te && p->http_minor == 0;
  /* An Upgrade is ignored (RFC 9110 7.8): the request is served as it is,
   * but the parser reads nothing after it, so the connection closes. We
   * are no proxy: CONNECT is not implemented. */
  if (p->upgrade) c->close_after = 1;
  if (p->method == HTTP_CONNECT) {
    c->parse_error = 501;
    return -1;
  }
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->server->opts.max_body_size) {
    c->parse_error = 413;
    return -1;
  }
  if ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)) {
    /* the whole body within body_timeout, however slowly it comes */
    double t = c->server->opts.body_timeout;
    c->body_deadline = t > 0 ? uv_now(uv_default_loop()) + (uint64_t)(t * 1000.0 + 0.5) : 0;
  }
  c->req.body = NULL;
  /* Everything after this point in abuf is body. */
  c->req.body_len = c->alen; /* start offset, fixed up in on_message_complete */
  if (p->http_major == 1 && p->http_minor >= 1 && (p->flags & (F_CONTENTLENGTH | F_CHUNKED)) &&
      (p->content_length > 0 || (p->flags & F_CHUNKED))) {
    /* Expect: 100-continue: the client waits for a go-ahead before the body. */
    for (int i = 0; i < c->nhdrs; i++) {
      bp_hdr_t *h = &c->hdrs[i];
      if (h->name_len == 6 && strncasecmp(c->abuf + h->name_off, "expect", 6) == 0 &&
          h->value_len == 12 && strncasecmp(c->abuf + h->value_off, "100-continue", 12) == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
        if (uv_try_write(&c->h.stream, &b, 1) != (int)(sizeof cont - 1)) {
          c->parse_error = 400; /* cannot even send 25 bytes: give up on it */
          return -1;
        }
        break;
      }
    }
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  arm_read_timeout(c); /* progress: the pause counts from the last read */
  if (c->alen - c->req.body_len + len > c->server->opts.max_body_size) {
    c->parse_error = 413;
    return -1;
  }
  return append(c, at, len) ? -1 : 0;
}

static void dispatch(bp_conn_t *c);

static int on_message_complete(http_parser *p) {
  bp_conn_t *c = p->data;
  bp_request_t *r = &c->req;
  struct http_parser_url u;
  size_t body_off = r->body_len;

  r->match.route = NULL; /* (params are read up to nparams only) */
  r->match.nparams = 0;
  r->match.allow[0] = '\0';
  r->conn = c;
  r->method = http_method_str(p->method);
  r->version = p->http_major * 10 + p->http_minor;
  r->head = p->method == HTTP_HEAD;
  r->sent = 0;
  r->streaming = 0;
  r->head_pending = 0;
  r->stream_bytes = 0;
  r->start_ns = c->server->opts.access_log ? uv_hrtime() : 0; /* (a clock read costs) */
  r->body = c->abuf + body_off;
  r->body_len = c->alen - body_off;
  c->abuf[c->alen] = '\0';
  c->keep_alive = http_should_keep_alive(p) && !c->close_after;
  c->body_deadline = 0;

  /* The request target: origin-form, or absolute-form from a proxy. */
  http_parser_url_init(&u);
  if (http_parser_parse_url(c->abuf, c->url_len, p->method == HTTP_CONNECT, &u) != 0) {
    c->parse_error = 400;
    return -1;
  }
  if (u.field_set & (1 << UF_PATH)) {
    r->path = c->abuf + u.field_data[UF_PATH].off;
    r->path_len = u.field_data[UF_PATH].len;
  } else {
    r->path = "/";
    r->path_len = 1;
  }
  if (u.field_set & (1 << UF_QUERY)) {
    r->query = c->abuf + u.field_data[UF_QUERY].off;
    r->query_len = u.field_data[UF_QUERY].len;
  } else {
    r->query = "";
    r->query_len = 0;
  }
  c->in_request = 1;
  c->receiving = 0;
  disarm(c); /* the handler has all the time it needs */
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- dispatch ------------------------------------------------------------------ */

/* Copy a header value into buf as a C string; NULL if absent, and a value
 * that cannot parse if too long (the trace is then not trusted). */
static const char *header_str(bp_request_t *r, const char *name, char *buf, size_t size) {
  size_t len;
  const char *v = bp_request_header(r, name, &len);
  if (!v) return NULL;
  if (len >= size) return "invalid";
  memcpy(buf, v, len);
  buf[len] = '\0';
  return buf;
}

/* Where a span is made for a request: named after the route, the child of
 * the upstream span when the trace headers are trusted and valid. */
static void add_status_tag(bp_span_t *span, int status);

/* The server span's own tags, added when someone reads the span's tags (an
 * observer, the handler, a span kept past the response): most requests
 * never pay for them. */
static void request_tags(bp_span_t *span, void *ud) {
  bp_request_t *r = ud;
  bp__span_tag_const(span, "http.method", r->method, BP_TAG_STRING); /* http_parser's names */
  bp__span_tag_static(span, "peer.ipv4", r->conn->remote, strlen(r->conn->remote), BP_TAG_STRING);
  if (r->span_status) add_status_tag(span, r->span_status);
}

static void start_span(bp_request_t *r, bp_baseplate_t *bp, int trust) {
  bp_trace_info_t ti, *tip = NULL;
  bp_span_t *span;
  if (trust) {
    char t[32], sp[32], pa[32], sa[8], fl[32];
    const char *trace = header_str(r, "X-Trace", t, sizeof t);
    const char *spid = header_str(r, "X-Span", sp, sizeof sp);
    if (trace && spid &&
        bp_trace_info_from_upstream(&ti, trace, header_str(r, "X-Parent", pa, sizeof pa), spid,
                                    header_str(r, "X-Sampled", sa, sizeof sa),
                                    header_str(r, "X-Flags", fl, sizeof fl), NULL, 0) == BP_OK)
      tip = &ti;
  }
  span = bp_span_new_server(bp, bp__route_name(r->match.route), tip);
  if (!span) return;
  r->span = span;
  r->error[0] = '\0';
  if (trust) {
    size_t len;
    const char *edge = bp_request_header(r, "X-Edge-Request", &len);
    if (edge) bp_span_set_edge_request(span, edge, len);
  }
  r->span_status = 0;
  bp__span_defer_tags(span, request_tags, r);
  bp_span_start(span);
}

bp_span_t *bp_request_span(bp_request_t *r) { return r->span; }

void bp_request_set_error(bp_request_t *r, const char *error_class) {
  snprintf(r->error, sizeof r->error, "%s", error_class ? error_class : "");
}

static void dispatch(bp_conn_t *c) {
  bp_request_t *r = &c->req;
  bp_http_server_t *s = c->server;
  bp_baseplate_t *bp;
  int trust;
  int status = bp__app_match(s->app, r->method, r->path, r->path_len, &r->match);
  void *data;
  bp_handler_fn fn;

  s->active++;
  if (status == 404) {
    send_simple(c, 404, NULL);
    return;
  }
  if (status == 405) {
    char allow[160];
    snprintf(allow, sizeof allow, "Allow: %s\r\n", r->match.allow);
    send_simple(c, 405, allow);
    return;
  }
  if ((bp = bp__app_baseplate(s->app, &trust))) start_span(r, bp, trust);
  fn = bp__route_handler(r->match.route, &data);
  if (fn) {
    int rc;
    bp_span_t *span = r->span;
    if (span) bp_span_enter(span);
    rc = fn(r, data);
    if (span && bp_span_current() == span) bp_span_enter(NULL);
    if (rc != BP_OK && rc != BP_AGAIN && !r->sent) {
      bp_log(BP_LOG_ERROR, "baseplate.server", "C handler for route %s failed: %s",
             bp__route_name(r->match.route), bp_strerror(rc));
      send_simple(c, 500, NULL);
    } else if (rc == BP_OK && !r->sent) {
      bp_log(BP_LOG_ERROR, "baseplate.server", "C handler for route %s returned without a response",
             bp__route_name(r->match.route));
      send_simple(c, 500, NULL);
    }
    return;
  }
  {
    /* The span runs with the handler's coroutine (its trace ID on log lines);
     * the scheduler re-enters it each time the coroutine resumes. */
    bp_span_t *span = r->span;
    if (span) bp_span_enter(span);
    bp__vm_dispatch_request(r, bp__route_lua_handler(r->match.route));
    if (span) bp_span_enter(NULL);
  }
}

/* --- reading ------------------------------------------------------------------- */

static void stop_reading(bp_conn_t *c) { c->reading = 0; }

static void on_read(bp_conn_t *c, ssize_t n);

/* Read while we want input and some may be waiting. A short read means the
 * socket is drained: the next arrival brings a new event. */
static void conn_read(bp_conn_t *c) {
  while (c->reading && c->readable && !c->closing) {
    ssize_t n;
    size_t room;
    if (grow(&c->rbuf, &c->rcap, c->rlen + 16384)) {
      on_read(c, UV_ENOMEM);
      return;
    }
    room = c->rcap - c->rlen;
    /* recv, not read: a socket call skips the file layer's position lock */
    n = recv(c->edge.fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      c->readable = 0;
      if (errno != EAGAIN && errno != EWOULDBLOCK) on_read(c, -errno);
      return;
    }
    if (n == 0) {
      c->readable = 0;
      on_read(c, UV_EOF);
      return;
    }
    if ((size_t)n < room && !c->hangup) c->readable = 0;
    on_read(c, n);
  }
}

static void on_edge(bp__edge_t *e, int hangup) {
  bp_conn_t *c = (bp_conn_t *)((char *)e - offsetof(bp_conn_t, edge));
  if (hangup) c->hangup = 1;
  c->readable = 1;
  conn_read(c);
}

/* Want input again; read what came meanwhile (no new event comes for it). */
static void start_reading(bp_conn_t *c) {
  c->reading = 1;
  conn_read(c);
}

static void on_read(bp_conn_t *c, ssize_t n) {
  if (c->lingering) {
    if (n < 0) {
      stop_reading(c);
      conn_close(c); /* the client has closed (or reset) too */
      return;
    }
    c->rlen = 0;
    c->linger_bytes += (size_t)n;
    if (c->linger_bytes > LINGER_BYTES) conn_close(c);
    else linger_arm(c);
    return;
  }
  if (n < 0) {
    stop_reading(c);
    if (n == UV_EOF) {
      /* A half-close still wants the answers to what it sent. */
      c->read_eof = 1;
      if (!c->in_request && !c->writing) conn_process(c);
      return;
    }
    c->peer_gone = 1;
    if (!c->in_request && !c->writing) conn_close(c);
    return;
  }
  if (n == 0) return;
  c->rlen += (size_t)n;
  if (c->in_request || c->writing) {
    /* Pipelined bytes while a request is answered: keep them for later, but
     * stop reading once a full request's worth is waiting (backpressure). */
    if (c->rlen > c->server->opts.max_header_size + 16384) stop_reading(c);
    return;
  }
  conn_process(c);
}

static void schedule_resume(bp_conn_t *c);

/* Answer a request that never parsed (bad, too big, too slow) with `status`,
 * then close: nothing after it on this connection can be trusted. */
static void reject(bp_conn_t *c, int status) {
  stop_reading(c);
  c->keep_alive = 0;
  c->rlen = 0;
  c->unread_input = 1; /* the rest of the request: see conn_end */
  c->req.version = 11;
  c->req.head = 0;
  c->req.method = NULL;
  c->req.path = c->req.query = NULL;
  c->req.path_len = c->req.query_len = 0;
  c->req.start_ns = 0;
  send_simple(c, status, NULL);
}

/* Parse what is buffered until a request is complete (then dispatch it) or
 * the buffer is empty (then read more). */
static void conn_process(bp_conn_t *c) {
  while (!c->closing && !c->in_request && !c->writing) {
    size_t n;
    if (c->rlen == 0) {
      if (c->peer_gone || c->read_eof) {
        conn_close(c);
        return;
      }
      if (c->server->stopping) {
        conn_close(c);
      } else if (!c->reading) {
        start_reading(c); /* may come back here with what it read */
      }
      return;
    }
    n = http_parser_execute(&c->parser, &settings, c->rbuf, c->rlen);
    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
      http_parser_pause(&c->parser, 0);
    } else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || c->parse_error) {
      int status = c->parse_error                                         ? c->parse_error
                   : HTTP_PARSER_ERRNO(&c->parser) == HPE_HEADER_OVERFLOW ? 431
                                                                          : 400;
      if (c->parser.upgrade && !c->parse_error) status = 501;
      reject(c, status);
      return;
    }
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
    if (c->in_request) {
      dispatch(c);
      return;
    }
    if (c->parser.upgrade) { /* Upgrade/CONNECT: not supported */
      c->keep_alive = 0;
      send_simple(c, 501, NULL);
      return;
    }
  }
}

static void resume_cb(uv_idle_t *idle) {
  int n = resume_count;
  bp_conn_t **list = malloc(n * sizeof *list);
  if (!list) return; /* try again next iteration */
  memcpy(list, resume_list, n * sizeof *list);
  resume_count = 0;
  uv_idle_stop(idle);
  for (int i = 0; i < n; i++) {
    if (list[i]) conn_process(list[i]);
  }
  free(list);
}

/* Continue parsing on the next loop iteration rather than now: the response
 * may have been sent from inside a Lua FFI call, where re-entering Lua for the
 * next pipelined request is not allowed. */
static void schedule_resume(bp_conn_t *c) {
  if (!resume_init) {
    uv_idle_init(uv_default_loop(), &resume_idle);
    uv_unref((uv_handle_t *)&resume_idle);
    resume_init = 1;
  }
  if (resume_count == resume_cap) {
    int cap = resume_cap ? resume_cap * 2 : 64;
    bp_conn_t **n = realloc(resume_list, cap * sizeof *n);
    if (!n) {
      conn_close(c);
      return;
    }
    resume_list = n;
    resume_cap = cap;
  }
  resume_list[resume_count++] = c;
  uv_idle_start(&resume_idle, resume_cb);
}

static void unschedule_resume(bp_conn_t *c) {
  for (int i = 0; i < resume_count; i++)
    if (resume_list[i] == c) resume_list[i] = NULL;
}

/* --- writing ------------------------------------------------------------------- */

static const char *date_header(void) {
  static char buf[64];
  static time_t last;
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    last = now;
  }
  return buf;
}

const char *bp_http_status_text(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
  }
  return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
         : status < 500 ? "Client Error" : "Server Error";
}

/* The request's server span ends with its response. */
/* "100" … "599", made once: status tags are not copied per request. */
static const char *status_text(int status) {
  static char text[600][4];
  char *t;
  if (status < 100 || status > 599) return NULL;
  t = text[status];
  if (!t[0]) {
    t[0] = (char)('0' + status / 100);
    t[1] = (char)('0' + status / 10 % 10);
    t[2] = (char)('0' + status % 10);
  }
  return t;
}

/* http.status_code, unless the handler set it itself. */
static void add_status_tag(bp_span_t *span, int status) {
  char num[24];
  const char *text;
  if (bp_span_get_tag(span, "http.status_code", NULL)) return;
  if ((text = status_text(status)))
    bp__span_tag_const(span, "http.status_code", text, BP_TAG_NUMBER);
  else
    bp__span_tag_static(span, "http.status_code", num, bp__u64_to_dec((uint64_t)status, num),
                        BP_TAG_NUMBER);
}

static void span_finish(bp_request_t *r, int status) {
  bp_span_t *span = r->span;
  const char *error = r->error[0] ? r->error : NULL;
  r->span = NULL;
  if (span->tagger)
    r->span_status = status; /* for request_tags, if they are ever added */
  else
    add_status_tag(span, status);
  if (!error && status >= 500) error = "HTTPError";
  bp_span_finish(span, error);
  /* Kept by someone (a Lua span object, a C module): its tags must not
   * point into this request, which the next one reuses. */
  if (span->refs > 1) bp__span_settle_tags(span);
  r->span_status = 0;
  if (bp_span_current() == span) bp_span_enter(NULL);
  bp_span_unref(span);
}

static void request_done(bp_conn_t *c, int status, size_t body_len) {
  bp_request_t *r = &c->req;
  bp_http_server_t *s = c->server;
  s->active--;
  c->in_request = 0;
  if (r->span && !bp_span_current()) bp_span_enter(r->span); /* its trace ID on the access log */
  if (s->opts.access_log && bp_log_enabled("baseplate.server.http", BP_LOG_DEBUG)) {
    /* The reference's shape: 127.0.0.1 - - [time] "GET / HTTP/1.1" 200 18 0.000123 */
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    double secs = r->start_ns ? (double)(uv_hrtime() - r->start_ns) / 1e9 : 0.0;
    bp_log(BP_LOG_DEBUG, "baseplate.server.http", "%s - - [%s] \"%s %.*s%s%.*s HTTP/%d.%d\" %d %zu %.6f",
           c->remote, when, r->method ? r->method : "-", (int)r->path_len, r->path ? r->path : "",
           r->query_len ? "?" : "", (int)r->query_len, r->query ? r->query : "", r->version / 10,
           r->version % 10, status, body_len, secs);
  }
  if (r->span) span_finish(r, status);
}

/* The response is out: close, or go on with the next request. Reading is
 * still on unless backpressure stopped it; pipelined bytes already buffered
 * are parsed on the next loop iteration (see schedule_resume). */
static int input_pending(bp_conn_t *c) {
  int n = 0;
  if (c->unread_input || c->rlen > 0) return 1;
  return ioctl(c->edge.fd, FIONREAD, &n) == 0 && n > 0;
}

static void conn_end(bp_conn_t *c) {
  if (c->read_eof || c->peer_gone || c->edge.fd < 0 || !input_pending(c) ||
      shutdown(c->edge.fd, SHUT_WR) != 0) {
    conn_close(c);
    return;
  }
  c->lingering = 1;
  c->rlen = 0;
  c->linger_until = uv_now(uv_default_loop()) + LINGER_MS;
  linger_arm(c);
  start_reading(c);
}

static void response_written(bp_conn_t *c) {
  if (!c->keep_alive || c->server->stopping || (c->read_eof && c->rlen == 0)) {
    conn_end(c);
    return;
  }
  arm(c, on_idle_timeout, c->server->opts.keepalive_timeout);
  c->idle_since = uv_now(uv_default_loop());
  if (c->rlen > 0 || !c->reading) schedule_resume(c);
}

static void after_write(uv_write_t *w, int status) {
  bp_conn_t *c = w->data;
  c->writing = 0;
  if (status < 0) {
    conn_close(c);
    return;
  }
  response_written(c);
}

static int conn_write(bp_conn_t *c, size_t len) {
  uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)len);
  ssize_t n;
  /* send, not write (as recv in conn_read); libuv's stream has nothing
   * queued (c->writing is clear), so writing around it keeps the order */
  do n = send(c->edge.fd, c->wbuf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n == (ssize_t)len) {
    response_written(c);
    return BP_OK;
  }
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    conn_close(c);
    return BP_ECLOSED;
  }
  if (n > 0) {
    b.base += n;
    b.len -= (unsigned)n;
  }
  c->writing = 1;
  c->wreq.data = c;
  if (uv_write(&c->wreq, &c->h.stream, &b, 1, after_write) != 0) {
    c->writing = 0;
    conn_close(c);
    return BP_ECLOSED;
  }
  return BP_OK;
}

/* Append helpers for the response head (no printf on the hot path). */
static char *put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}
#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_uint(char *p, size_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

/* Write the status line and headers into wbuf (grown to hold `reserve` more
 * bytes after them). content_length < 0: a streamed body (chunked for
 * HTTP/1.1, delimited by the close for HTTP/1.0). Returns the length, or 0
 * on ENOMEM. */
static size_t build_head(bp_conn_t *c, int status, const char *content_type, const char *extra,
                         size_t extra_len, long long content_length, size_t reserve) {
  bp_request_t *r = &c->req;
  const char *reason = bp_http_status_text(status), *date = date_header();
  size_t rlen = strlen(reason), dlen = strlen(date), ctlen = content_type ? strlen(content_type) : 0;
  char *p;

  if (c->server->stopping || c->server->draining)
    c->keep_alive = 0; /* say so: the connection closes after this */
  if (content_length < 0 && r->version < 11) c->keep_alive = 0;
  /* status line, Date, Content-Length or Transfer-Encoding, Content-Type, Connection, extra */
  if (grow(&c->wbuf, &c->wcap, 13 + rlen + 2 + dlen + 40 + (ctlen ? 14 + ctlen + 2 : 0) + 24 +
                                   extra_len + 2 + reserve))
    return 0;
  p = c->wbuf;
  p = PUT_LIT(p, "HTTP/1.1 ");
  p = put_uint(p, (size_t)status);
  *p++ = ' ';
  p = put(p, reason, rlen);
  p = PUT_LIT(p, "\r\n");
  p = put(p, date, dlen);
  if (content_length >= 0 && status != 204 && status != 304) {
    /* (RFC 9110 8.6: none in a 204; a 304's would describe what it does
     * not carry) */
    p = PUT_LIT(p, "Content-Length: ");
    p = put_uint(p, (size_t)content_length);
    p = PUT_LIT(p, "\r\n");
  } else if (content_length < 0 && r->version >= 11) {
    p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
  }
  if (ctlen) {
    p = PUT_LIT(p, "Content-Type: ");
    p = put(p, content_type, ctlen);
    p = PUT_LIT(p, "\r\n");
  }
  if (!c->keep_alive) p = PUT_LIT(p, "Connection: close\r\n");
  else if (r->version < 11) p = PUT_LIT(p, "Connection: keep-alive\r\n");
  if (extra_len) p = put(p, extra, extra_len);
  p = PUT_LIT(p, "\r\n");
  return (size_t)(p - c->wbuf);
}

static int respond(bp_conn_t *c, int status, const char *content_type, const char *extra,
                   size_t extra_len, const char *body, size_t body_len) {
  bp_request_t *r = &c->req;
  size_t n;
  int send_body;

  if (status < 200 || status > 999) status = 500; /* (checked by the callers) */
  if (content_type && strlen(content_type) > 1024) return BP_EINVAL;
  send_body = !r->head && status != 204 && status != 304;
  n = build_head(c, status, content_type, extra, extra_len, (long long)body_len,
                 send_body ? body_len : 0);
  if (!n) {
    conn_close(c);
    return BP_ENOMEM;
  }
  if (send_body && body_len) memcpy(c->wbuf + n, body, body_len), n += body_len;
  r->sent = 1;
  request_done(c, status, send_body ? body_len : 0);
  return conn_write(c, n);
}

size_t bp_http_error_body(int status, const char *reason, char *buf, size_t size) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  int k;
  if (!reason) reason = bp_http_status_text(status);
  k = snprintf(buf, size, "{\"error\": %d, \"reason\": \"", status);
  if (k < 0 || (size_t)k >= size) return 0;
  n = (size_t)k;
  for (const unsigned char *p = (const unsigned char *)reason; *p; p++) {
    /* room for the longest escape and the closing "} */
    if (n + 8 >= size) return 0;
    if (*p == '"' || *p == '\\') {
      buf[n++] = '\\';
      buf[n++] = (char)*p;
    } else if (*p < 0x20 || *p == 0x7f) {
      memcpy(buf + n, "\\u00", 4);
      buf[n + 4] = hex[*p >> 4];
      buf[n + 5] = hex[*p & 15];
      n += 6;
    } else {
      buf[n++] = (char)*p;
    }
  }
  memcpy(buf + n, "\"}", 3);
  return n + 2;
}

static void send_simple(bp_conn_t *c, int status, const char *extra_header) {
  char body[160];
  size_t n = bp_http_error_body(status, NULL, body, sizeof body);
  if (!c->in_request) {
    /* A protocol error: nothing was dispatched; count it like a request. */
    c->server->active++;
    c->in_request = 1;
  }
  if (status >= 400 && status != 404 && status != 405) c->keep_alive = 0;
  respond(c, status, "application/json", extra_header, extra_header ? strlen(extra_header) : 0,
          body, n);
}

/* --- public request API ---------------------------------------------------------- */

const char *bp_request_method(const bp_request_t *r) { return r->method; }

const char *bp_request_path(const bp_request_t *r, size_t *len) {
  *len = r->path_len;
  return r->path;
}

const char *bp_request_query(const bp_request_t *r, size_t *len) {
  *len = r->query_len;
  return r->query;
}

const char *bp_request_body(const bp_request_t *r, size_t *len) {
  *len = r->body_len;
  return r->body;
}

int bp_request_header_count(const bp_request_t *r) { return r->conn->nhdrs; }

int bp_request_header_at(const bp_request_t *r, int i, const char **name, size_t *name_len,
                         const char **value, size_t *value_len) {
  const bp_conn_t *c = r->conn;
  if (i < 0 || i >= c->nhdrs) return BP_ENOENT;
  *name = c->abuf + c->hdrs[i].name_off;
  *name_len = c->hdrs[i].name_len;
  *value = c->abuf + c->hdrs[i].value_off;
  *value_len = c->hdrs[i].value_len;
  return BP_OK;
}

const char *bp_request_header(const bp_request_t *r, const char *name, size_t *len) {
  const bp_conn_t *c = r->conn;
  size_t nl = strlen(name);
  for (int i = 0; i < c->nhdrs; i++)
    if (c->hdrs[i].name_len == nl && strncasecmp(c->abuf + c->hdrs[i].name_off, name, nl) == 0) {
      *len = c->hdrs[i].value_len;
      return c->abuf + c->hdrs[i].value_off;
    }
  return NULL;
}

int bp_request_http_version(const bp_request_t *r) { return r->version; }

const char *bp_request_route_name(const bp_request_t *r) {
  return r->match.route ? bp__route_name(r->match.route) : "";
}

int bp_request_param_count(const bp_request_t *r) { return r->match.nparams; }

int bp_request_param_at(const bp_request_t *r, int i, const char **name, const char **value,
                        size_t *value_len) {
  if (i < 0 || i >= r->match.nparams) return BP_ENOENT;
  *name = r->match.params[i].name;
  *value = r->path + r->match.params[i].off;
  *value_len = r->match.params[i].len;
  return BP_OK;
}

const char *bp_request_remote_addr(const bp_request_t *r) { return r->conn->remote; }

int bp_response_header(bp_request_t *r, const char *name, size_t name_len, const char *value,
                       size_t value_len) {
  bp_conn_t *c = r->conn;
  if (r->sent || r->streaming) return BP_ECLOSED; /* the head is built already */
  if (memchr(name, '\r', name_len) || memchr(name, '\n', name_len) || memchr(name, ':', name_len) ||
      memchr(value, '\r', value_len) || memchr(value, '\n', value_len) || name_len == 0)
    return BP_EINVAL;
  if (grow(&c->hbuf, &c->hcap_bytes, c->hlen + name_len + value_len + 4)) return BP_ENOMEM;
  memcpy(c->hbuf + c->hlen, name, name_len);
  c->hlen += name_len;
  memcpy(c->hbuf + c->hlen, ": ", 2);
  c->hlen += 2;
  memcpy(c->hbuf + c->hlen, value, value_len);
  c->hlen += value_len;
  memcpy(c->hbuf + c->hlen, "\r\n", 2);
  c->hlen += 2;
  return BP_OK;
}

/* A final status, or a 500 in its place (logged): a 1xx would leave the
 * client waiting for the final answer that never comes. */
static int final_status(bp_request_t *r, int status) {
  if (status >= 200 && status <= 999) return status;
  bp_log(BP_LOG_ERROR, "baseplate.server", "route %s answered with status %d, which is not a final status (200-999); sent 500 instead",
         r->match.route ? bp__route_name(r->match.route) : "-", status);
  bp_request_set_error(r, "ValueError");
  return 500;
}

int bp_response_send(bp_request_t *r, int status, const char *content_type, const char *body,
                     size_t body_len) {
  bp_conn_t *c = r->conn;
  if (r->sent || r->streaming) return BP_ECLOSED;
  if (status < 200 || status > 999) {
    char err[160];
    status = final_status(r, status);
    c->hlen = 0; /* (the handler's headers went with its answer) */
    if (!c->peer_gone && !c->closing)
      return respond(c, status, "application/json", NULL, 0, err,
                     bp_http_error_body(status, NULL, err, sizeof err));
  }
  if (c->peer_gone || c->closing) {
    /* The client left while the handler ran: drop the answer, free the conn. */
    r->sent = 1;
    request_done(c, status, 0);
    conn_close(c);
    return BP_ECLOSED;
  }
  return respond(c, status, content_type, c->hbuf, c->hlen, body, body_len);
}

int bp_response_sent(const bp_request_t *r) { return r->sent; }

/* --- streamed responses -------------------------------------------------------- */

typedef struct {
  uv_write_t w;
  bp_conn_t *c;
  int waiter;
  char data[];
} bp_chunk_write_t;

static void chunk_written(uv_write_t *w, int status) {
  bp_chunk_write_t *cw = (bp_chunk_write_t *)w;
  bp_conn_t *c = cw->c;
  int waiter = cw->waiter;
  c->writing = 0;
  if (status < 0) c->peer_gone = 1;
  free(cw);
  bp__vm_wake(waiter, status < 0 ? BP_ECLOSED : BP_OK);
}

/* Write now if the socket takes it all, else copy the rest and wake
 * `waiter` once it is written (the caller waits: one write at a time). */
static int stream_send(bp_conn_t *c, const char *buf, size_t n, int waiter) {
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
  int k = uv_try_write(&c->h.stream, &b, 1);
  bp_chunk_write_t *cw;
  if (k == (int)n) return BP_OK;
  if (k < 0 && k != UV_EAGAIN) {
    c->peer_gone = 1;
    return BP_ECLOSED;
  }
  if (k < 0) k = 0;
  if (!(cw = malloc(sizeof *cw + n - (size_t)k))) return BP_ENOMEM;
  memcpy(cw->data, buf + k, n - (size_t)k);
  cw->c = c;
  cw->waiter = waiter;
  b = uv_buf_init(cw->data, (unsigned)(n - (size_t)k));
  if (uv_write(&cw->w, &c->h.stream, &b, 1, chunk_written) != 0) {
    free(cw);
    c->peer_gone = 1;
    return BP_ECLOSED;
  }
  c->writing = 1;
  return BP_AGAIN;
}

static int stream_gone(bp_request_t *r) {
  bp_conn_t *c = r->conn;
  return r->sent || c->peer_gone || c->closing;
}

int bp_response_start(bp_request_t *r, int status, const char *content_type) {
  bp_conn_t *c = r->conn;
  size_t n;
  if (r->sent || r->streaming) return BP_ECLOSED;
  if (status < 200 || status > 999 || status == 204 || status == 304) return BP_EINVAL;
  if (content_type && strlen(content_type) > 1024) return BP_EINVAL;
  r->streaming = 1;
  r->stream_status = status;
  if (c->peer_gone || c->closing) return BP_ECLOSED;
  n = build_head(c, status, content_type, c->hbuf, c->hlen, -1, 0);
  if (!n) return BP_ENOMEM;
  r->head_pending = n; /* goes out with the first chunk */
  return BP_OK;
}

int bp_response_write(bp_request_t *r, const char *data, size_t len, int waiter) {
  bp_conn_t *c = r->conn;
  size_t n = r->head_pending, need;
  char *p;
  int chunked = r->version >= 11;
  if (!r->streaming) return BP_EINVAL;
  if (stream_gone(r)) return BP_ECLOSED;
  if (r->head) len = 0; /* HEAD: the head only */
  if (len == 0 && n == 0) return BP_OK;
  need = n + (len ? 20 + len : 0);
  if (grow(&c->wbuf, &c->wcap, need)) return BP_ENOMEM;
  p = c->wbuf + n;
  if (len) {
    if (chunked) {
      static const char hex[] = "0123456789abcdef";
      char tmp[20];
      int k = 0;
      size_t v = len;
      do {
        tmp[k++] = hex[v & 15];
        v >>= 4;
      } while (v);
      while (k) *p++ = tmp[--k];
      p = PUT_LIT(p, "\r\n");
    }
    p = put(p, data, len);
    if (chunked) p = PUT_LIT(p, "\r\n");
  }
  r->head_pending = 0;
  r->stream_bytes += len;
  return stream_send(c, c->wbuf, (size_t)(p - c->wbuf), waiter);
}

int bp_response_finish(bp_request_t *r) {
  bp_conn_t *c = r->conn;
  size_t n = r->head_pending;
  if (!r->streaming || r->sent) return BP_EINVAL;
  r->sent = 1;
  request_done(c, r->stream_status, r->stream_bytes);
  if (c->peer_gone || c->closing) {
    conn_close(c);
    return BP_ECLOSED;
  }
  if (grow(&c->wbuf, &c->wcap, n + 5)) {
    conn_close(c);
    return BP_ENOMEM;
  }
  if (r->version >= 11 && !r->head) memcpy(c->wbuf + n, "0\r\n\r\n", 5), n += 5;
  if (n == 0) { /* HTTP/1.0: the close ends the body */
    conn_close(c);
    return BP_OK;
  }
  return conn_write(c, n);
}

int bp_response_abort(bp_request_t *r) {
  bp_conn_t *c = r->conn;
  if (r->sent) return BP_ECLOSED;
  r->sent = 1;
  request_done(c, r->streaming ? r->stream_status : 500, r->stream_bytes);
  c->keep_alive = 0;
  conn_close(c); /* an unfinished body tells the client something went wrong */
  return BP_OK;
}

/* --- connection lifecycle ---------------------------------------------------------- */

static void listener_update(bp_http_server_t *s);
static void conn_free(bp_conn_t *c);

static void conn_closed(uv_handle_t *h) {
  bp_conn_t *c = h->data;
  bp_http_server_t *s = c->server;
  if (--c->handles_open > 0) return;
  if (c->req.span) { /* abandoned: the client went away or the process stops */
    bp_request_set_error(&c->req, "ConnectionClosed");
    span_finish(&c->req, 499);
  }
  free(c->rbuf);
  free(c->abuf);
  free(c->hdrs);
  free(c->hbuf);
  free(c->wbuf);
  conn_free(c);
  s->nconns--;
  if (!s->stopping) listener_update(s); /* below max_concurrency again */
  if (s->stopping && s->nconns == 0) {
    if (s->closed_waiter) {
      int w = s->closed_waiter;
      s->closed_waiter = 0;
      bp__vm_wake(w, BP_OK);
    }
    if (s->listener_closed) free(s);
  }
}

static void conn_close(bp_conn_t *c) {
  bp_http_server_t *s = c->server;
  if (c->closing) return;
  if (c->in_request && !c->req.sent) {
    /* A handler still holds the request: close once it answers. */
    c->peer_gone = 1;
    stop_reading(c);
    return;
  }
  if (c->writing) { /* after_write closes it */
    c->keep_alive = 0;
    return;
  }
  c->closing = 1;
  bp__edge_remove(&c->edge);
  unschedule_resume(c);
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  uv_close(&c->h.handle, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void conn_close_closable(bp__closable_t *cl) {
  bp_conn_t *c = (bp_conn_t *)cl;
  c->in_request = 0; /* shutdown: abandon whatever is in flight */
  c->writing = 0;
  conn_close(c);
}

static void remote_name(bp_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  strcpy(c->remote, "-");
  if (c->server->family == AF_UNIX) return;
  if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof c->remote);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof c->remote);
}

/* Connections live in slabs of their own, not among their buffers in
 * malloc's heap: there, a connection's struct would sit between the holes
 * its idle buffers leave and pin the pages around it (an idle connection
 * cost 4.5-5.5 KB after a while instead of its 1.7). Packed together, the
 * freed buffers leave whole pages that malloc_trim gives back. A slab is
 * unmapped when its last connection closes. Sanitizer builds use malloc,
 * which sees every use after free. */
#if defined(__SANITIZE_ADDRESS__)
#define CONN_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONN_SLABS 0
#endif
#endif
#ifndef CONN_SLABS
#define CONN_SLABS 1
#endif

#if CONN_SLABS
#define SLAB_CONNS 64

typedef struct conn_slab_s conn_slab_t;
typedef struct conn_slot_s conn_slot_t;
struct conn_slot_s {
  conn_slab_t *slab;
  conn_slot_t *next_free;
  bp_conn_t conn;
};
struct conn_slab_s {
  conn_slab_t *prev, *next; /* slabs with a free slot */
  conn_slot_t *free;
  int used;
  conn_slot_t slots[SLAB_CONNS];
};

static conn_slab_t *slabs_with_room;

static conn_slot_t *slot_of(bp_conn_t *c) {
  return (conn_slot_t *)((char *)c - offsetof(conn_slot_t, conn));
}

static void slab_unlink(conn_slab_t *sl) {
  if (sl->prev) sl->prev->next = sl->next;
  else slabs_with_room = sl->next;
  if (sl->next) sl->next->prev = sl->prev;
  sl->prev = sl->next = NULL;
}

static bp_conn_t *conn_alloc(void) {
  conn_slab_t *sl = slabs_with_room;
  conn_slot_t *slot;
  if (!sl) {
    sl = mmap(NULL, sizeof *sl, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sl == MAP_FAILED) return NULL;
    for (int i = SLAB_CONNS - 1; i >= 0; i--) {
      sl->slots[i].slab = sl;
      sl->slots[i].next_free = sl->free;
      sl->free = &sl->slots[i];
    }
    slabs_with_room = sl;
  }
  slot = sl->free;
  sl->free = slot->next_free;
  if (++sl->used == SLAB_CONNS) slab_unlink(sl);
  memset(&slot->conn, 0, sizeof slot->conn);
  return &slot->conn;
}

static void conn_free(bp_conn_t *c) {
  conn_slot_t *slot = slot_of(c);
  conn_slab_t *sl = slot->slab;
  if (sl->used-- == SLAB_CONNS) { /* it has room again */
    sl->next = slabs_with_room;
    if (slabs_with_room) slabs_with_room->prev = sl;
    slabs_with_room = sl;
  }
  if (sl->used == 0 && (sl->prev || sl->next)) { /* keep one empty slab, not more */
    slab_unlink(sl);
    munmap(sl, sizeof *sl);
    return;
  }
  slot->next_free = sl->free;
  sl->free = slot;
}
#else
static bp_conn_t *conn_alloc(void) { return calloc(1, sizeof(bp_conn_t)); }
static void conn_free(bp_conn_t *c) { free(c); }
#endif

static void conn_free_cb(uv_handle_t *h) { conn_free(h->data); }

/* A new connection: its handle is initialised by the caller, which then
 * accepts or opens into it. */
static bp_conn_t *conn_new(bp_http_server_t *s) {
  bp_conn_t *c = conn_alloc();
  if (!c) return NULL;
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_close_closable;
  c->server = s;
  c->edge.fd = -1;
  if (s->family == AF_UNIX) uv_pipe_init(uv_default_loop(), &c->h.pipe, 0);
  else uv_tcp_init(uv_default_loop(), &c->h.tcp);
  c->h.handle.data = c;
  return c;
}

/* The handle is connected: register the connection and start reading. */
static void conn_start(bp_http_server_t *s, bp_conn_t *c) {
  uv_os_fd_t fd;
  int rc;
  uv_timer_init(uv_default_loop(), &c->timer);
  c->timer.data = c;
  c->handles_open = 2;
  if (s->family != AF_UNIX) uv_tcp_nodelay(&c->h.tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  if (++s->nconns > s->peak_conns) s->peak_conns = s->nconns;
  remote_name(c);
  c->reading = 1;
  c->idle_since = uv_now(uv_default_loop());
  arm_read_timeout(c);
  /* Input already there is reported at once. */
  if ((rc = uv_fileno(&c->h.handle, &fd)) != 0 || (rc = bp__edge_add(&c->edge, fd, on_edge)) != 0) {
    bp_log(BP_LOG_ERROR, "baseplate.server", "cannot watch a new connection: %s", uv_strerror(rc));
    conn_close(c);
  }
}

/* Serve a connection accepted on the listening socket. */
static void conn_adopt(bp_http_server_t *s, int fd) {
  bp_conn_t *c = conn_new(s);
  int rc;
  if (!c) {
    close(fd);
    return;
  }
  rc = s->family == AF_UNIX ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
  if (rc != 0) {
    close(fd);
    uv_close(&c->h.handle, conn_free_cb);
    return;
  }
  conn_start(s, c);
}

static int at_capacity(const bp_http_server_t *s) {
  return s->opts.max_concurrency > 0 && s->nconns >= s->opts.max_concurrency;
}

static void on_listener(uv_poll_t *h, int status, int events);

/* Poll the listening socket when we can take connections; else they wait
 * in the kernel's backlog (max_concurrency reached, accepting paused). */
static void listener_update(bp_http_server_t *s) {
  int want = !s->stopping && !s->accept_paused && !at_capacity(s);
  if (want == s->polling) return;
  s->polling = want;
  if (want) uv_poll_start(&s->lpoll, UV_READABLE, on_listener);
  else uv_poll_stop(&s->lpoll);
}

static void on_accept_retry(uv_timer_t *t) {
  bp_http_server_t *s = t->data;
  s->accept_paused = 0;
  listener_update(s);
}

/* Accepting failed for want of resources (file descriptors, most often).
 * As nginx does, stop accepting for a while: the connections wait in the
 * backlog and are served once descriptors are free again. Logged at most
 * once in 10 seconds, with how often it happened. */
static void accept_failed(bp_http_server_t *s, int err) {
  uint64_t now = uv_now(uv_default_loop());
  s->accept_errors++;
  s->accept_paused = 1;
  listener_update(s);
  uv_timer_start(&s->accept_retry, on_accept_retry, 100, 0);
  if (s->accept_error_logged && now - s->accept_error_logged < 10000) return;
  {
    struct rlimit rl;
    char limit[32] = "unlimited";
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      snprintf(limit, sizeof limit, "%llu", (unsigned long long)rl.rlim_cur);
    bp_log(BP_LOG_ERROR, "baseplate.server",
           "cannot accept connections: %s (%d open connections, file descriptor limit %s): "
           "new connections wait until some close (accepting paused %d time%s in %s)",
           strerror(err), s->nconns, limit, s->accept_errors, s->accept_errors == 1 ? "" : "s",
           s->accept_error_logged ? "the last 10 seconds" : "a row");
  }
  s->accept_error_logged = now ? now : 1;
  s->accept_errors = 0;
}

/* Take the connections the kernel has completed: as many as are there (up
 * to a bound, so other work gets its turn), or one per wake-up when other
 * processes share the socket (else the first awake takes them all). */
static void accept_ready(bp_http_server_t *s) {
  for (int n = 0; n < 256 && !s->stopping && !at_capacity(s); n++) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM) continue;
      accept_failed(s, e); /* EMFILE, ENFILE, ENOBUFS, ENOMEM */
      return;
    }
    conn_adopt(s, fd);
    if (s->opts.shared_socket) return;
  }
  listener_update(s);
}

static void on_listener(uv_poll_t *h, int status, int events) {
  bp_http_server_t *s = h->data;
  if (status < 0) {
    accept_failed(s, -status);
    return;
  }
  accept_ready(s);
}

/* Stopping: take every connection the kernel has completed but we have not
 * accepted, so that closing the listener does not reset them; each is
 * answered once, with Connection: close. A socket of our own first stops
 * taking new connections (a filter that drops every packet: SYNs go
 * unanswered, clients retry and then find the port closed). A socket shared
 * with other processes is left alone: it stays open in them. */
static void drain_backlog(bp_http_server_t *s) {
  static struct sock_filter drop[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  struct sock_fprog prog = {1, drop};
  int fd, n = 0;
  if (s->opts.shared_socket) return;
  if (s->family != AF_UNIX) (void)setsockopt(s->lfd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
  while (n++ < 4096 && (fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
    conn_adopt(s, fd);
}

/* A slow client: 408 if a request had begun, else just close. */
static void on_header_timeout(uv_timer_t *t) {
  bp_conn_t *c = t->data;
  if (c->in_request || c->writing || c->closing) return;
  if (c->receiving) {
    reject(c, 408);
  } else {
    stop_reading(c);
    c->rlen = 0;
    conn_close(c);
  }
}

static void on_idle_timeout(uv_timer_t *t) {
  bp_conn_t *c = t->data;
  if (!c->in_request && !c->writing) conn_close(c);
}

/* --- server ---------------------------------------------------------------------- */

size_t bp_http_server_options_size(void) { return sizeof(bp_http_server_options_t); }

void bp_http_server_options_init(bp_http_server_options_t *o) {
  o->max_header_size = 64 * 1024;
  o->max_body_size = 16 * 1024 * 1024;
  o->header_timeout = 10.0;
  o->keepalive_timeout = 75.0;
  o->max_concurrency = 0;
  o->access_log = 0;
  o->shared_socket = 0;
  o->max_header_count = 100;
  o->body_timeout = 60.0;
}

static void listener_closed(uv_handle_t *h) {
  bp_http_server_t *s = h->data;
  if (--s->listener_handles > 0) return;
  if (s->lfd >= 0) close(s->lfd);
  s->lfd = -1;
  s->listener_closed = 1;
  if (s->nconns == 0 && !s->closed_waiter) free(s);
}

static void listener_close(bp_http_server_t *s) {
  s->polling = 0;
  uv_close((uv_handle_t *)&s->lpoll, listener_closed);
  uv_close((uv_handle_t *)&s->accept_retry, listener_closed);
  uv_close((uv_handle_t *)&s->sweep, listener_closed);
}

/* An idle keep-alive connection keeps only itself (about 1.4 KB): its
 * buffers, sized for the requests it served, go back to the allocator
 * once it has been idle for a second (not per request: a busy connection
 * reuses them). */
static size_t conn_compact(bp_conn_t *c) {
  size_t freed = c->rcap + c->acap + c->hcap * sizeof *c->hdrs + c->hcap_bytes + c->wcap;
  free(c->rbuf);
  free(c->abuf);
  free(c->hdrs);
  free(c->hbuf);
  free(c->wbuf);
  c->rbuf = c->abuf = c->hbuf = c->wbuf = NULL;
  c->hdrs = NULL;
  c->rcap = c->acap = c->hcap_bytes = c->wcap = 0;
  c->hcap = 0;
  c->rlen = c->alen = c->hlen = 0;
  c->nhdrs = 0;
  return freed;
}

static void on_sweep(uv_timer_t *t) {
  bp_http_server_t *s = t->data;
  uint64_t now = uv_now(uv_default_loop());
  size_t freed = 0;
  for (bp_conn_t *c = s->conns; c; c = c->next) {
    if (c->receiving || c->in_request || c->writing || c->rlen || c->lingering || c->closing ||
        now - c->idle_since < 1000 || !(c->rbuf || c->abuf || c->wbuf))
      continue;
    freed += conn_compact(c);
  }
  /* Load has fallen (a flood of connections has closed, or their buffers
   * are released): hand free memory back to the system, which glibc does
   * not do by itself for memory in the middle of its heap. */
  if (freed >= (1u << 20) || (s->peak_conns >= 1000 && s->nconns < s->peak_conns / 2)) {
    malloc_trim(0);
    s->peak_conns = s->nconns;
  }
}

void bp_http_server_drain(bp_http_server_t *s) { s->draining = 1; }

int bp_http_server_shutdown(bp_http_server_t *s, int waiter) {
  bp_http_server_stop(s);
  if (s->nconns == 0) return BP_OK;
  s->closed_waiter = waiter;
  return BP_AGAIN;
}

void bp_http_server_stop(bp_http_server_t *s) {
  bp_conn_t *c, *next;
  if (!s || s->stopping) return;
  s->stopping = 1;
  listener_update(s);
  drain_backlog(s);
  listener_close(s);
  for (c = s->conns; c; c = next) {
    next = c->next;
    /* Idle keep-alive connections go after a short linger (a request may
     * already be on the wire: it is answered, with Connection: close); a
     * request half received, being handled or being written finishes first. */
    if (!c->in_request && !c->writing && !c->receiving && c->rlen == 0)
      arm(c, on_idle_timeout, 0.2);
  }
}

/* Limits the timers and counters can hold: a timeout of 1e17 seconds once
 * overflowed the milliseconds and reset every connection. */
static int options_invalid(const bp_http_server_options_t *o, char *err, size_t errlen) {
  const char *bad = NULL;
  if (!(o->header_timeout >= 0 && o->header_timeout <= 86400)) bad = "header_timeout (0 to 86400 seconds)";
  else if (!(o->keepalive_timeout >= 0 && o->keepalive_timeout <= 86400)) bad = "keepalive_timeout (0 to 86400 seconds)";
  else if (!(o->body_timeout >= 0 && o->body_timeout <= 86400)) bad = "body_timeout (0 to 86400 seconds)";
  else if (o->max_header_size < 1024 || o->max_header_size > 0x80000000u) bad = "max_header_size (1024 to 2^31)";
  else if (o->max_header_count < 1 || o->max_header_count > 100000) bad = "max_header_count (1 to 100000)";
  else if (o->max_concurrency < 0) bad = "max_concurrency (0 or more)";
  if (bad) snprintf(err, errlen, "invalid server option %s", bad);
  return bad != NULL;
}

static void server_close_closable(bp__closable_t *cl) {
  bp_http_server_t *s = (bp_http_server_t *)cl;
  bp_http_server_stop(s);
}

bp_http_server_t *bp_http_server_start(bp_app_t *app, bp_listener_t *l,
                                       const bp_http_server_options_t *opts, char *err,
                                       size_t errlen) {
  bp_http_server_t *s = calloc(1, sizeof *s);
  int rc;
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->closable.magic = BP_CLOSABLE_MAGIC;
  s->closable.close = server_close_closable;
  bp__ignore_sigpipe();
  s->app = app;
  s->family = l->family;
  if (opts) s->opts = *opts;
  else bp_http_server_options_init(&s->opts);
  if (options_invalid(&s->opts, err, errlen)) {
    free(s);
    return NULL;
  }
  raise_parser_limit(s->opts.max_header_size);
  s->lfd = l->fd;
  l->fd = -1; /* the server owns the socket now */
  uv_timer_init(uv_default_loop(), &s->accept_retry);
  s->accept_retry.data = s;
  rc = uv_poll_init(uv_default_loop(), &s->lpoll, s->lfd);
  s->lpoll.data = s;
  uv_timer_init(uv_default_loop(), &s->sweep);
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, 1000, 1000);
  uv_unref((uv_handle_t *)&s->sweep);
  s->listener_handles = rc == 0 ? 3 : 2;
  if (rc == 0 && listen(s->lfd, 511) != 0) rc = -errno;
  if (rc != 0) {
    snprintf(err, errlen, "cannot serve on %s: %s", l->describe, uv_strerror(rc));
    s->stopping = 1;
    if (s->listener_handles == 3) uv_close((uv_handle_t *)&s->lpoll, listener_closed);
    uv_close((uv_handle_t *)&s->accept_retry, listener_closed);
    uv_close((uv_handle_t *)&s->sweep, listener_closed);
    return NULL;
  }
  listener_update(s);
  return s;
}

int bp_http_server_connections(const bp_http_server_t *s) { return s->nconns; }

int bp_http_server_active_requests(const bp_http_server_t *s) { return s->active; }
