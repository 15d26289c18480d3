/*
 * HTTP/1.1 on the server core (src/server/): Debian's http_parser, one
 * request at a time per connection (pipelined requests wait in the read
 * buffer and are answered in order), and every response written with one
 * write. The core accepts, reads, writes, keeps deadlines and closes; this
 * file is the protocol: parsing, the request API, responses (whole or
 * streamed) and the request's server span.
 *
 * Where a request enters: http_on_input() -> on_message_complete() ->
 * dispatch(). Where it leaves: bp_response_send() -> respond() ->
 * bp__conn_write().
 */
#include "app.h"
#include "baseplate/span.h"
#include "span_internal.h"
#include "baseplate/config.h"
#include "internal.h"
#include "runtime.h"
#include "baseplate/log.h"
#include "server/server.h"
#include "server/span.h"

#include <http_parser.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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
  bp__server_t base;
  bp_app_t *app;
  bp_http_server_options_t opts;
};

enum { HDR_NONE, HDR_FIELD, HDR_VALUE };

/* An HTTP connection: the core's, then the parser's state and the request. */
struct bp_conn_s {
  bp__conn_t base;
  http_parser parser;
  char *abuf; /* the request being parsed: url, header names and values, body */
  size_t alen, acap;
  bp_hdr_t *hdrs;
  int nhdrs, hcap, hdr_state;
  int too_many_headers; /* more than max_header_count: 431 once the head is in */
  int head_done; /* the current request's head is parsed */
  size_t url_len;
  size_t head_raw; /* bytes of the current request's head fed to the parser so far */
  char *hbuf; /* response headers added by the handler */
  size_t hlen, hcap_bytes;
  bp_request_t req;
  int close_after; /* the request's framing cannot be trusted past it: close once answered */
  int parse_error; /* status to answer a bad request with, then close */
  uint64_t body_deadline; /* loop time (ms) the request's body must be in by (0: none) */
};

#define SERVER(c) ((bp_http_server_t *)(c)->base.server)

static void conn_process(bp_conn_t *c);
static void send_simple(bp_conn_t *c, int status, const char *extra_header);

static int append(bp_conn_t *c, const char *at, size_t len) {
  if (bp__grow(&c->abuf, &c->acap, c->alen + len + 1)) return BP_ENOMEM;
  memcpy(c->abuf + c->alen, at, len);
  c->alen += len;
  return BP_OK;
}

/* --- deadlines ------------------------------------------------------------------ */

static void on_header_timeout(uv_timer_t *t);

/* Waiting for (the rest of) a request from the client: header_timeout for
 * the head (from its first byte) and for each pause in the body, and the
 * body's own deadline (body_timeout) over it all. */
static void arm_read_timeout(bp_conn_t *c) {
  double t = SERVER(c)->opts.header_timeout;
  if (c->body_deadline) {
    uint64_t now = uv_now(uv_default_loop());
    double left = c->body_deadline > now ? (double)(c->body_deadline - now) / 1000.0 : 0.001;
    if (!(t > 0) || left < t) t = left;
  }
  bp__conn_arm(&c->base, on_header_timeout, t);
}

/* --- http_parser callbacks ---------------------------------------------------- */

/* http_parser's own limit on a request head is process-wide (80 KiB unless
 * set): it is raised to the largest server's max_header_size, so that it
 * never fires before a server's own (conn_process feeds the parser at most
 * max_header_size + 1 bytes of a head, and counts them all). */
static void raise_parser_limit(size_t max_header_size) {
  static uint64_t current; /* (0: not set yet; http_parser's own is 80 KiB) */
  uint64_t want = (uint64_t)max_header_size + 64; /* (its count may include the byte past ours) */
  if (want > UINT32_MAX) want = UINT32_MAX;
  if (want > current) {
    current = want;
    http_parser_set_max_header_size((uint32_t)want);
  }
}

static int on_message_begin(http_parser *p) {
  bp_conn_t *c = p->data;
  arm_read_timeout(c); /* the keep-alive wait is over; the request has begun */
  c->base.receiving = 1;
  c->alen = c->url_len = 0;
  c->nhdrs = 0;
  c->too_many_headers = 0;
  c->hdr_state = HDR_NONE;
  c->hlen = 0;
  c->body_deadline = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  if (append(c, at, len)) return -1;
  c->url_len += len;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  /* RFC 9112 5.1: no whitespace between a field name and its colon (a
   * proxy may read "Content-Length : 5" otherwise than we do) */
  if (memchr(at, ' ', len) || memchr(at, '\t', len)) {
    c->parse_error = 400;
    return -1;
  }
  if (c->hdr_state != HDR_FIELD) {
    c->hdr_state = HDR_FIELD;
    /* Too many: the rest are not kept, and the answer (431) waits for the
     * end of the head, so that it does not depend on how the head arrived
     * (a malformed field further on is a 400 either way). */
    if (c->nhdrs >= SERVER(c)->opts.max_header_count) c->too_many_headers = 1;
    if (c->too_many_headers) return 0;
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
  }
  if (c->too_many_headers) return 0;
  if (append(c, at, len)) return -1;
  c->hdrs[c->nhdrs - 1].name_len += len;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  bp_conn_t *c = p->data;
  if (c->too_many_headers) return 0;
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
  if (c->too_many_headers) {
    c->parse_error = 431;
    return -1;
  }
  c->head_done = 1;
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
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > SERVER(c)->opts.max_body_size) {
    c->parse_error = 413;
    return -1;
  }
  if ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)) {
    /* the whole body within body_timeout, however slowly it comes */
    double t = SERVER(c)->opts.body_timeout;
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
        if (uv_try_write(&c->base.h.stream, &b, 1) != (int)(sizeof cont - 1)) {
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
  if (c->alen - c->req.body_len + len > SERVER(c)->opts.max_body_size) {
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
  r->start_ns = SERVER(c)->opts.access_log ? uv_hrtime() : 0; /* (a clock read costs) */
  r->body = c->abuf + body_off;
  r->body_len = c->alen - body_off;
  c->abuf[c->alen] = '\0';
  c->base.keep_alive = http_should_keep_alive(p) && !c->close_after;
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
  c->base.busy = 1;
  c->base.receiving = 0;
  bp__conn_disarm(&c->base); /* the handler has all the time it needs */
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

static void add_status_tag(bp_span_t *span, int status);

/* The server span's own tags, added when someone reads the span's tags (an
 * observer, the handler, a span kept past the response): most requests
 * never pay for them. */
static void request_tags(bp_span_t *span, void *ud) {
  bp_request_t *r = ud;
  bp__span_tag_const(span, "http.method", r->method, BP_TAG_STRING); /* http_parser's names */
  bp__span_tag_static(span, "peer.ipv4", r->conn->base.remote, strlen(r->conn->base.remote), BP_TAG_STRING);
  if (r->span_status) add_status_tag(span, r->span_status);
}

static const char *request_header_get(void *r, const char *name, size_t *len) {
  const char *v = bp_request_header(r, name, len);
  return v;
}

/* The request's span: named after its route, the child of the upstream
 * span when the trace headers are trusted and valid. */
static void start_span(bp_request_t *r, bp_baseplate_t *bp, int trust) {
  r->span_status = 0;
  r->error[0] = '\0';
  r->span = bp__server_span_start(bp, bp__route_name(r->match.route), trust, &bp__http_trace_names,
                                  request_header_get, r, request_tags, r);
}

bp_span_t *bp_request_span(bp_request_t *r) { return r->span; }

void bp_request_set_error(bp_request_t *r, const char *error_class) {
  snprintf(r->error, sizeof r->error, "%s", error_class ? error_class : "");
}

static void dispatch(bp_conn_t *c) {
  bp_request_t *r = &c->req;
  bp_http_server_t *s = SERVER(c);
  bp_baseplate_t *bp;
  int trust;
  int status = bp__app_match(s->app, r->method, r->path, r->path_len, &r->match);
  void *data;
  bp_handler_fn fn;

  s->base.active++;
  if (status == 404) {
    /* (counted as Baseplate.py counts a request no route matched, by an
     * app with a Baseplate, as its spans are; the method's name is
     * http_parser's, static: the answer may free c) */
    const char *method = r->method;
    uint64_t t0 = bp__prom_on() && bp__app_baseplate(s->app, &trust) ? uv_hrtime() : 0;
    send_simple(c, 404, NULL);
    if (t0) bp__prom_record_unrouted(method, 404, uv_hrtime() - t0);
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
    bp__vm_dispatch(BP__PROTOCOL_HTTP, r, bp__route_lua_handler(r->match.route));
    if (span) bp_span_enter(NULL);
  }
}

/* --- parsing ------------------------------------------------------------------- */

/* Answer a request that never parsed (bad, too big, too slow) with `status`,
 * then close: nothing after it on this connection can be trusted. */
static void reject(bp_conn_t *c, int status) {
  bp__conn_stop_reading(&c->base);
  c->base.keep_alive = 0;
  c->base.rlen = 0;
  c->base.unread_input = 1; /* the rest of the request: the core lingers */
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
  while (!c->base.closing && !c->base.busy && !c->base.writing) {
    size_t n;
    if (c->base.rlen == 0) {
      bp__conn_idle(&c->base); /* may come back here with what it reads */
      return;
    }
    /* A head is at most max_header_size bytes, every byte counted (blank
     * lines before it too): the parser sees one byte more at most, so that
     * a malformed head is a 400 and an oversized one a 431 however the
     * bytes arrived. */
    size_t feed = c->base.rlen;
    int in_head = !c->head_done;
    if (in_head) {
      size_t room = SERVER(c)->opts.max_header_size + 1 - c->head_raw;
      if (feed > room) feed = room;
    }
    n = http_parser_execute(&c->parser, &settings, c->base.rbuf, feed);
    if (in_head) c->head_raw += n;
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
    memmove(c->base.rbuf, c->base.rbuf + n, c->base.rlen - n);
    c->base.rlen -= n;
    if (!c->head_done && c->head_raw > SERVER(c)->opts.max_header_size) {
      reject(c, 431);
      return;
    }
    if (c->base.busy) {
      c->head_done = 0; /* what follows is the next request's head */
      c->head_raw = 0;
      dispatch(c);
      return;
    }
    if (c->parser.upgrade) { /* Upgrade/CONNECT: not supported */
      c->base.keep_alive = 0;
      send_simple(c, 501, NULL);
      return;
    }
  }
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
  if (bp__server_span_tags_deferred(span))
    r->span_status = status; /* for request_tags, if they are ever added */
  else
    add_status_tag(span, status);
  if (!error && status >= 500) error = "HTTPError";
  bp__server_span_labels(span, r->method, status, bp__route_pattern(r->match.route));
  /* (a span kept past the response gets its tags now: they point into this
   * request, which the next one reuses) */
  bp__server_span_finish(span, error);
  r->span_status = 0;
}

static void request_done(bp_conn_t *c, int status, size_t body_len) {
  bp_request_t *r = &c->req;
  bp_http_server_t *s = SERVER(c);
  s->base.active--;
  c->base.busy = 0;
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
           c->base.remote, when, r->method ? r->method : "-", (int)r->path_len, r->path ? r->path : "",
           r->query_len ? "?" : "", (int)r->query_len, r->query ? r->query : "", r->version / 10,
           r->version % 10, status, body_len, secs);
  }
  if (r->span) span_finish(r, status);
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

  if (c->base.server->stopping || c->base.server->draining)
    c->base.keep_alive = 0; /* say so: the connection closes after this */
  if (content_length < 0 && r->version < 11) c->base.keep_alive = 0;
  /* status line, Date, Content-Length or Transfer-Encoding, Content-Type, Connection, extra */
  if (bp__grow(&c->base.wbuf, &c->base.wcap, 13 + rlen + 2 + dlen + 40 + (ctlen ? 14 + ctlen + 2 : 0) + 24 +
                                   extra_len + 2 + reserve))
    return 0;
  p = c->base.wbuf;
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
  if (!c->base.keep_alive) p = PUT_LIT(p, "Connection: close\r\n");
  else if (r->version < 11) p = PUT_LIT(p, "Connection: keep-alive\r\n");
  if (extra_len) p = put(p, extra, extra_len);
  p = PUT_LIT(p, "\r\n");
  return (size_t)(p - c->base.wbuf);
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
    bp__conn_close(&c->base);
    return BP_ENOMEM;
  }
  if (send_body && body_len) memcpy(c->base.wbuf + n, body, body_len), n += body_len;
  r->sent = 1;
  request_done(c, status, send_body ? body_len : 0);
  return bp__conn_write(&c->base, n);
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
  if (!c->base.busy) {
    /* A protocol error: nothing was dispatched; count it like a request. */
    c->base.server->active++;
    c->base.busy = 1;
  }
  if (status >= 400 && status != 404 && status != 405) c->base.keep_alive = 0;
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

const char *bp_request_remote_addr(const bp_request_t *r) { return r->conn->base.remote; }

int bp_response_header(bp_request_t *r, const char *name, size_t name_len, const char *value,
                       size_t value_len) {
  bp_conn_t *c = r->conn;
  if (r->sent || r->streaming) return BP_ECLOSED; /* the head is built already */
  if (memchr(name, '\r', name_len) || memchr(name, '\n', name_len) || memchr(name, ':', name_len) ||
      memchr(value, '\r', value_len) || memchr(value, '\n', value_len) || name_len == 0)
    return BP_EINVAL;
  if (bp__grow(&c->hbuf, &c->hcap_bytes, c->hlen + name_len + value_len + 4)) return BP_ENOMEM;
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
    if (!c->base.peer_gone && !c->base.closing)
      return respond(c, status, "application/json", NULL, 0, err,
                     bp_http_error_body(status, NULL, err, sizeof err));
  }
  if (c->base.peer_gone || c->base.closing) {
    /* The client left while the handler ran: drop the answer, free the conn. */
    r->sent = 1;
    request_done(c, status, 0);
    bp__conn_close(&c->base);
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
  c->base.writing = 0;
  if (status < 0) c->base.peer_gone = 1;
  free(cw);
  bp__vm_wake(waiter, status < 0 ? BP_ECLOSED : BP_OK);
}

/* Write now if the socket takes it all, else copy the rest and wake
 * `waiter` once it is written (the caller waits: one write at a time). */
static int stream_send(bp_conn_t *c, const char *buf, size_t n, int waiter) {
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
  int k = uv_try_write(&c->base.h.stream, &b, 1);
  bp_chunk_write_t *cw;
  if (k == (int)n) return BP_OK;
  if (k < 0 && k != UV_EAGAIN) {
    c->base.peer_gone = 1;
    return BP_ECLOSED;
  }
  if (k < 0) k = 0;
  if (!(cw = malloc(sizeof *cw + n - (size_t)k))) return BP_ENOMEM;
  memcpy(cw->data, buf + k, n - (size_t)k);
  cw->c = c;
  cw->waiter = waiter;
  b = uv_buf_init(cw->data, (unsigned)(n - (size_t)k));
  if (uv_write(&cw->w, &c->base.h.stream, &b, 1, chunk_written) != 0) {
    free(cw);
    c->base.peer_gone = 1;
    return BP_ECLOSED;
  }
  c->base.writing = 1;
  return BP_AGAIN;
}

static int stream_gone(bp_request_t *r) {
  bp_conn_t *c = r->conn;
  return r->sent || c->base.peer_gone || c->base.closing;
}

int bp_response_start(bp_request_t *r, int status, const char *content_type) {
  bp_conn_t *c = r->conn;
  size_t n;
  if (r->sent || r->streaming) return BP_ECLOSED;
  if (status < 200 || status > 999 || status == 204 || status == 304) return BP_EINVAL;
  if (content_type && strlen(content_type) > 1024) return BP_EINVAL;
  r->streaming = 1;
  r->stream_status = status;
  if (c->base.peer_gone || c->base.closing) return BP_ECLOSED;
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
  if (bp__grow(&c->base.wbuf, &c->base.wcap, need)) return BP_ENOMEM;
  p = c->base.wbuf + n;
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
  return stream_send(c, c->base.wbuf, (size_t)(p - c->base.wbuf), waiter);
}

int bp_response_finish(bp_request_t *r) {
  bp_conn_t *c = r->conn;
  size_t n = r->head_pending;
  if (!r->streaming || r->sent) return BP_EINVAL;
  r->sent = 1;
  request_done(c, r->stream_status, r->stream_bytes);
  if (c->base.peer_gone || c->base.closing) {
    bp__conn_close(&c->base);
    return BP_ECLOSED;
  }
  if (bp__grow(&c->base.wbuf, &c->base.wcap, n + 5)) {
    bp__conn_close(&c->base);
    return BP_ENOMEM;
  }
  if (r->version >= 11 && !r->head) memcpy(c->base.wbuf + n, "0\r\n\r\n", 5), n += 5;
  if (n == 0) { /* HTTP/1.0: the close ends the body */
    bp__conn_close(&c->base);
    return BP_OK;
  }
  return bp__conn_write(&c->base, n);
}

int bp_response_abort(bp_request_t *r) {
  bp_conn_t *c = r->conn;
  if (r->sent) return BP_ECLOSED;
  r->sent = 1;
  request_done(c, r->streaming ? r->stream_status : 500, r->stream_bytes);
  c->base.keep_alive = 0;
  bp__conn_close(&c->base); /* an unfinished body tells the client something went wrong */
  return BP_OK;
}

/* --- deadlines ----------------------------------------------------------------------- */

/* A slow client: 408 if a request had begun, else just close. */
static void on_header_timeout(uv_timer_t *t) {
  bp_conn_t *c = t->data;
  if (c->base.busy || c->base.writing || c->base.closing) return;
  if (c->base.receiving) {
    reject(c, 408);
  } else {
    bp__conn_stop_reading(&c->base);
    c->base.rlen = 0;
    bp__conn_close(&c->base);
  }
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

/* --- the protocol's callbacks and the server ------------------------------------------ */

static void http_on_open(bp__conn_t *base) {
  bp_conn_t *c = (bp_conn_t *)base;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->head_done = c->too_many_headers = 0;
  c->head_raw = 0;
  arm_read_timeout(c);
}

static void http_on_input(bp__conn_t *base) { conn_process((bp_conn_t *)base); }

static void http_on_close(bp__conn_t *base) {
  bp_conn_t *c = (bp_conn_t *)base;
  if (c->req.span) { /* abandoned: the client went away or the process stops */
    bp_request_set_error(&c->req, "ConnectionClosed");
    span_finish(&c->req, 499);
  }
  free(c->abuf);
  free(c->hdrs);
  free(c->hbuf);
}

static size_t http_on_compact(bp__conn_t *base) {
  bp_conn_t *c = (bp_conn_t *)base;
  size_t freed = c->acap + (size_t)c->hcap * sizeof *c->hdrs + c->hcap_bytes;
  free(c->abuf);
  free(c->hdrs);
  free(c->hbuf);
  c->abuf = c->hbuf = NULL;
  c->hdrs = NULL;
  c->acap = c->hcap_bytes = c->alen = c->hlen = 0;
  c->hcap = c->nhdrs = 0;
  return freed;
}

static const bp__protocol_t http_protocol = {
    .name = "http",
    .conn_size = sizeof(bp_conn_t),
    .on_open = http_on_open,
    .on_input = http_on_input,
    .on_close = http_on_close,
    .on_compact = http_on_compact,
};

static void http_server_free(bp__server_t *s) { free(s); }

bp_http_server_t *bp_http_server_start(bp_app_t *app, bp_listener_t *l,
                                       const bp_http_server_options_t *opts, char *err,
                                       size_t errlen) {
  bp_http_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->app = app;
  if (opts) s->opts = *opts;
  else bp_http_server_options_init(&s->opts);
  if (options_invalid(&s->opts, err, errlen)) {
    free(s);
    return NULL;
  }
  raise_parser_limit(s->opts.max_header_size);
  s->base.max_concurrency = s->opts.max_concurrency;
  s->base.shared_socket = s->opts.shared_socket;
  s->base.keepalive_timeout = s->opts.keepalive_timeout;
  /* pipelined input kept while a request is handled: a request's head */
  s->base.max_buffered = s->opts.max_header_size + 16384;
  s->base.free_fn = http_server_free;
  if (bp__server_start(&s->base, &http_protocol, l, err, errlen) != BP_OK) return NULL;
  return s;
}

void bp_http_server_drain(bp_http_server_t *s) { bp__server_drain(&s->base); }

void bp_http_server_stop(bp_http_server_t *s) {
  if (s) bp__server_stop(&s->base);
}

int bp_http_server_shutdown(bp_http_server_t *s, int waiter) {
  int rc = bp__server_shutdown(&s->base, waiter);
  return rc;
}

int bp_http_server_connections(const bp_http_server_t *s) { return s->base.nconns; }

int bp_http_server_active_requests(const bp_http_server_t *s) { return s->base.active; }
