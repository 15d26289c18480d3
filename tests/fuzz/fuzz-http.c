/* The HTTP server's reading of requests (src/http/server.c: http_parser with our
 * callbacks, the limits, headers, routing, dispatch to C handlers and the
 * response), end to end: a real server on a UNIX socket, a client on the
 * same loop writes the input, shuts its side down and reads until the
 * server closes. Whatever it sent, the server answers with well-formed
 * responses (or just closes), closes the connection without waiting for a
 * timeout, and frees everything. */
#define _GNU_SOURCE /* memmem */
#include <baseplate.h>

#include "runtime.h"

#include <http_parser.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-http: %s\n", what);
    abort();
  }
}

/* --- the application ------------------------------------------------------------- */

static int hello(bp_request_t *r, void *data) {
  return bp_response_send(r, 200, "text/plain", "hello", 5) == BP_OK ? BP_OK : BP_OK;
}

/* Everything the request API hands out, read and sent back. */
static int echo(bp_request_t *r, void *data) {
  char out[8192];
  size_t n = 0, len;
  const char *s;
#define ADD(p, l)                                                                  \
  do {                                                                             \
    size_t l_ = (l) < sizeof out - n ? (l) : sizeof out - n;                       \
    memcpy(out + n, (p), l_);                                                      \
    n += l_;                                                                       \
  } while (0)
  s = bp_request_method(r);
  ADD(s, strlen(s));
  s = bp_request_path(r, &len);
  ADD(s, len);
  s = bp_request_query(r, &len);
  ADD(s, len);
  for (int i = 0; i < bp_request_header_count(r); i++) {
    const char *name, *value;
    size_t nl, vl;
    check(bp_request_header_at(r, i, &name, &nl, &value, &vl) == BP_OK, "a header in range");
    ADD(name, nl);
    ADD(value, vl);
  }
  check(bp_request_header_at(r, bp_request_header_count(r), &s, &len, &s, &len) == BP_ENOENT,
        "a header past the end");
  for (int i = 0; i < bp_request_param_count(r); i++) {
    const char *name, *value;
    check(bp_request_param_at(r, i, &name, &value, &len) == BP_OK, "a parameter in range");
    ADD(name, strlen(name));
    ADD(value, len);
  }
  s = bp_request_body(r, &len);
  ADD(s, len);
  (void)bp_request_http_version(r);
  (void)bp_request_route_name(r);
  (void)bp_request_remote_addr(r);
  /* A header the client chose: CR/LF in it is refused, not sent. */
  if ((s = bp_request_header(r, "X-Echo", &len))) {
    int rc = bp_response_header(r, "X-Echo", 6, s, len);
    check(rc == BP_OK || (rc == BP_EINVAL && (memchr(s, '\r', len) || memchr(s, '\n', len))),
          "an echoed header refused");
  }
  return bp_response_send(r, 200, "application/octet-stream", out, n) == BP_OK ? BP_OK : BP_OK;
#undef ADD
}

/* A streamed body: chunked for HTTP/1.1, until the close for HTTP/1.0. */
static int stream(bp_request_t *r, void *data) {
  size_t len;
  const char *path = bp_request_path(r, &len);
  if (bp_response_start(r, 200, "text/plain") != BP_OK) return BP_OK;
  for (int i = 0; i < 3; i++)
    if (bp_response_write(r, path, len, 0) == BP_ECLOSED) break;
  bp_response_finish(r);
  return BP_OK;
}

static int fail(bp_request_t *r, void *data) { return BP_EIO; }       /* a 500 */
static int silent(bp_request_t *r, void *data) { return BP_OK; }     /* a 500 too */

/* --- the server -------------------------------------------------------------------- */

static char dir[64], sock_path[96];
static bp_http_server_t *server;

static void cleanup(void) {
  unlink(sock_path);
  rmdir(dir);
}

static void init(void) {
  char err[256];
  bp_app_t *app = bp_app_new();
  bp_baseplate_t *bp = bp_baseplate_new("fuzz");
  bp_listener_t *l;
  bp_http_server_options_t opts;

  bp_log_set_level("", BP_LOG_CRITICAL); /* handler failures are expected */
  signal(SIGPIPE, SIG_IGN); /* as bp_runtime_open: a client's late write to a closed server */
  check(app && bp, "out of memory");
  check(bp_app_add_route(app, "hello", "GET", "/", hello, NULL, err, sizeof err) == BP_OK, err);
  check(bp_app_add_route(app, "echo", NULL, "/echo/{name}/*rest", echo, NULL, err, sizeof err) ==
            BP_OK, err);
  check(bp_app_add_route(app, "echo1", "POST", "/echo/{name}", echo, NULL, err, sizeof err) ==
            BP_OK, err);
  check(bp_app_add_route(app, "stream", "GET", "/stream/*rest", stream, NULL, err, sizeof err) ==
            BP_OK, err);
  check(bp_app_add_route(app, "fail", "*", "/fail", fail, NULL, err, sizeof err) == BP_OK, err);
  check(bp_app_add_route(app, "silent", "PUT", "/silent/{x}", silent, NULL, err, sizeof err) ==
            BP_OK, err);
  /* Spans from the trace headers: their parsing is fuzzed too. */
  bp_app_set_baseplate(app, bp, 1);

  snprintf(dir, sizeof dir, "/tmp/bp-fuzz-http-XXXXXX");
  check(mkdtemp(dir) != NULL, "mkdtemp failed");
  snprintf(sock_path, sizeof sock_path, "%s/sock", dir);
  atexit(cleanup);
  l = bp_listener_open(sock_path, 64, 0, err, sizeof err);
  check(l != NULL, err);
  bp_http_server_options_init(&opts);
  /* Small limits, so that short inputs reach them. */
  opts.max_header_size = 2048;
  opts.max_body_size = 4096;
  server = bp_http_server_start(app, l, &opts, err, sizeof err);
  check(server != NULL, err);
  bp_listener_free(l);
}

/* --- the clients --------------------------------------------------------------------- */

/* Two clients send the same input: one in a single write, the other in two
 * (the server reads the first half before the second arrives), so that the
 * parser resumes mid-request. Both must get the same answer. */
typedef struct {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_write_t write[2];
  uv_shutdown_t shutdown;
  uv_idle_t idle; /* lets the server read the first half */
  int idle_rounds;
  size_t split; /* bytes in the first write; the input's length: one write */
  char *in;     /* what the server answered */
  size_t len, cap;
  int closed;
} client_t;

static client_t cl[2];
static const unsigned char *request;
static size_t request_len;

static void client_closed(uv_handle_t *h) { ((client_t *)h->data)->closed = 1; }

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  client_t *c = h->data;
  if (c->cap - c->len < 65536) {
    c->cap = c->cap * 2 + 65536;
    c->in = realloc(c->in, c->cap);
    check(c->in != NULL, "out of memory");
  }
  *buf = uv_buf_init(c->in + c->len, (unsigned)(c->cap - c->len));
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client_t *c = s->data;
  if (n > 0) c->len += (size_t)n;
  if (n < 0) {
    if (uv_is_active((uv_handle_t *)&c->idle)) uv_idle_stop(&c->idle);
    uv_close((uv_handle_t *)&c->pipe, client_closed);
  }
}

static void client_shut(uv_shutdown_t *s, int status) {}

/* The server may close before taking everything: failed writes are fine. */
static void client_send(client_t *c, size_t from, size_t to, int last) {
  uv_buf_t b = uv_buf_init((char *)request + from, (unsigned)(to - from));
  if (to > from) uv_write(&c->write[from > 0], (uv_stream_t *)&c->pipe, &b, 1, NULL);
  if (last) uv_shutdown(&c->shutdown, (uv_stream_t *)&c->pipe, client_shut);
}

static void client_second_half(uv_idle_t *idle) {
  client_t *c = idle->data;
  if (++c->idle_rounds < 3) return;
  uv_idle_stop(idle);
  if (!uv_is_closing((uv_handle_t *)&c->pipe)) client_send(c, c->split, request_len, 1);
}

static void client_connected(uv_connect_t *req, int status) {
  client_t *c = req->data;
  check(status == 0, "cannot connect to the server");
  uv_read_start((uv_stream_t *)&c->pipe, client_alloc, client_read);
  client_send(c, 0, c->split, c->split == request_len);
  if (c->split < request_len) uv_idle_start(&c->idle, client_second_half);
}

static void client_start(client_t *c, size_t split) {
  c->len = 0;
  c->closed = 0;
  c->split = split;
  c->idle_rounds = 0;
  uv_pipe_init(bp_loop(), &c->pipe, 0);
  c->pipe.data = c;
  c->connect.data = c;
  if (!c->idle.data) uv_idle_init(bp_loop(), &c->idle);
  c->idle.data = c;
  uv_pipe_connect(&c->connect, &c->pipe, sock_path, client_connected);
}

/* --- what came back ---------------------------------------------------------------- */

static int responses, statuses_ok;

static int on_headers_complete(http_parser *p) {
  responses++;
  if (p->status_code < 100 || p->status_code > 599) statuses_ok = 0;
  return 0;
}

static void check_answer(const client_t *c) {
  http_parser p;
  http_parser_settings settings;
  size_t done;
  if (c->len == 0) return; /* closing without an answer is allowed */
  check(c->len > 12 && (memcmp(c->in, "HTTP/1.1 ", 9) == 0 || memcmp(c->in, "HTTP/1.0 ", 9) == 0),
        "the answer does not start with a status line");
  /* A HEAD's answer has a Content-Length and no body: a response parser
   * cannot tell without knowing which request it answers. */
  if (memmem(request, request_len, "HEAD", 4)) return;
  http_parser_init(&p, HTTP_RESPONSE);
  http_parser_settings_init(&settings);
  settings.on_headers_complete = on_headers_complete;
  responses = 0;
  statuses_ok = 1;
  done = http_parser_execute(&p, &settings, c->in, c->len);
  if (HTTP_PARSER_ERRNO(&p) == HPE_OK && done == c->len) http_parser_execute(&p, &settings, NULL, 0);
  if (HTTP_PARSER_ERRNO(&p) != HPE_OK || done != c->len) {
    fprintf(stderr, "fuzz-http: a malformed answer (%s after %zu of %zu bytes):\n%.*s\n",
            http_errno_name(HTTP_PARSER_ERRNO(&p)), done, c->len, (int)(c->len < 2000 ? c->len : 2000),
            c->in);
    abort();
  }
  check(responses > 0 && statuses_ok, "a response with a bad status");
}

/* The answer without its Date lines (the clock may tick between the two). */
static size_t strip_dates(const client_t *c, char *out) {
  size_t n = 0;
  for (size_t i = 0; i < c->len;) {
    const char *eol = memchr(c->in + i, '\n', c->len - i);
    size_t line = eol ? (size_t)(eol - (c->in + i)) + 1 : c->len - i;
    if (!(line >= 6 && memcmp(c->in + i, "Date: ", 6) == 0)) {
      memcpy(out + n, c->in + i, line);
      n += line;
    }
    i += line;
  }
  return n;
}

static void check_same_answers(void) {
  char *a = malloc(cl[0].len + 1), *b = malloc(cl[1].len + 1);
  size_t na = strip_dates(&cl[0], a), nb = strip_dates(&cl[1], b);
  if (na != nb || memcmp(a, b, na) != 0) {
    fprintf(stderr, "fuzz-http: the answer depends on how the request arrived\n"
            "in one write:\n%.*s\nin two (%zu + %zu bytes):\n%.*s\n",
            (int)(na < 2000 ? na : 2000), a, cl[1].split, request_len - cl[1].split,
            (int)(nb < 2000 ? nb : 2000), b);
    abort();
  }
  free(a);
  free(b);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  uint64_t start;
  if (!server) init();
  request = data;
  request_len = size;
  client_start(&cl[0], size);
  client_start(&cl[1], size / 2);

  start = uv_hrtime();
  while (!cl[0].closed || !cl[1].closed || bp_http_server_connections(server) > 0) {
    uv_run(bp_loop(), UV_RUN_ONCE);
    /* The clients are done sending: the server has no reason to wait. */
    if (uv_hrtime() - start > 5000000000ull) {
      fprintf(stderr, "fuzz-http: %s after 5 s\n",
              cl[0].closed && cl[1].closed ? "the server kept a connection open"
                                           : "the server neither answered nor closed");
      abort();
    }
  }
  check(bp_http_server_active_requests(server) == 0, "a request still counted as active");
  check_answer(&cl[0]);
  check_answer(&cl[1]);
  check_same_answers();
  return 0;
}
