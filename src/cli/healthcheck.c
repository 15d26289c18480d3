/* baseplate-healthcheck: ask a service whether it is healthy, as
 * Baseplate.py's tool does. HTTP (`wsgi`, `http`): GET /health?type=PROBE
 * (formats.md), healthy when the answer is a 2xx with a JSON body. Thrift:
 * BaseplateServiceV2.is_healthy(IsHealthyRequest{probe}) over THeader in
 * the binary protocol, healthy when it returns true (healthcheck_thrift.c).
 *
 * Prints "OK!" and exits 0, or "NOT OK: reason" and exits 1 (both on
 * stdout, as Baseplate.py prints them). Usage errors exit 2. The whole check
 * (resolving, connecting, the request, the answer) is bounded by --timeout.
 *
 * The tool needs no Lua: a private libuv loop runs the one request. */
#include "args.h"
#include "healthcheck_reply.h"
#include "healthcheck_thrift.h"

#include <http_parser.h>
#include <uv.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  uv_loop_t loop;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } conn;
  int conn_open;
  uv_timer_t timer;
  uv_getaddrinfo_t resolve;
  struct addrinfo *addrs, *next_addr;
  uv_connect_t connect;
  uv_write_t write;
  bp__hc_reply_t reply;
  bp__hc_thrift_t thrift_reply;
  int thrift; /* the check is Thrift's, not HTTP's */
  int probe;
  char host[256], port[16];
  const char *path; /* UNIX socket, or NULL */
  const char *endpoint;
  char url[512];
  char request[1024];
  size_t request_len;
  char readbuf[16384];
  int finished;
  int resolving;    /* a name lookup is in flight */
  char error[1024]; /* the reason it is not healthy; empty: healthy */
} check_t;

static check_t ck;

/* --- the check ---------------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {}

/* End the check (the first reason wins); the loop ends once all is closed. */
static void finish(const char *fmt, ...) {
  if (ck.finished) return;
  ck.finished = 1;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ck.error, sizeof ck.error, fmt, ap);
    va_end(ap);
  }
  uv_timer_stop(&ck.timer);
  uv_close((uv_handle_t *)&ck.timer, on_closed);
  if (ck.conn_open) uv_close((uv_handle_t *)&ck.conn, on_closed);
  ck.conn_open = 0;
}

static void on_timeout(uv_timer_t *t) {
  double seconds = *(double *)t->data;
  finish("timed out after %g seconds waiting for %s", seconds, ck.url);
  if (ck.resolving && uv_cancel((uv_req_t *)&ck.resolve) != 0) {
    /* The name lookup is under way in a thread and cannot be stopped:
     * answer now rather than wait for the resolver's own timeout. */
    printf("NOT OK: %s\n", ck.error);
    fflush(stdout);
    _exit(1);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  buf->base = ck.readbuf;
  buf->len = sizeof ck.readbuf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  char verdict[sizeof ck.error];
  if (ck.finished || n == 0) return; /* 0: nothing this time (EAGAIN), not the end */
  if (n < 0 && n != UV_EOF) {
    finish("cannot read from %s: %s", ck.endpoint, uv_strerror((int)n));
    return;
  }
  if (ck.thrift ? bp__hc_thrift_feed(&ck.thrift_reply, buf->base, n == UV_EOF ? 0 : (size_t)n,
                                     ck.probe, ck.endpoint, verdict, sizeof verdict)
                : bp__hc_reply_feed(&ck.reply, buf->base, n == UV_EOF ? 0 : (size_t)n, ck.url,
                                    ck.endpoint, verdict, sizeof verdict))
    finish(verdict[0] ? "%s" : NULL, verdict);
}

static void on_written(uv_write_t *w, int status) {
  if (status < 0) finish("cannot send the request to %s: %s", ck.endpoint, uv_strerror(status));
}

static void try_connect(void);

static void on_closed_retry(uv_handle_t *h) {
  if (!ck.finished) try_connect();
}

/* A connection attempt failed: try the name's next address (IPv4 after
 * IPv6...) once the handle is closed, or give up. */
static void connect_failed(int status) {
  if (ck.next_addr) {
    ck.conn_open = 0;
    uv_close((uv_handle_t *)&ck.conn, on_closed_retry);
    return;
  }
  finish("cannot connect to %s: %s", ck.endpoint, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status) {
  if (ck.finished) return;
  if (status < 0) {
    connect_failed(status);
    return;
  }
  uv_buf_t b = uv_buf_init(ck.request, (unsigned)ck.request_len);
  int rc = uv_write(&ck.write, (uv_stream_t *)&ck.conn, &b, 1, on_written);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&ck.conn, on_alloc, on_read);
  if (rc < 0) finish("cannot talk to %s: %s", ck.endpoint, uv_strerror(rc));
}

static void try_connect(void) {
  struct addrinfo *ai = ck.next_addr;
  int rc;
  ck.next_addr = ai->ai_next;
  uv_tcp_init(&ck.loop, &ck.conn.tcp);
  ck.conn_open = 1;
  rc = uv_tcp_connect(&ck.connect, &ck.conn.tcp, ai->ai_addr, on_connect);
  if (rc < 0) connect_failed(rc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  ck.resolving = 0;
  if (status == UV_ECANCELED || ck.finished) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0) {
    finish("cannot resolve %s: %s", ck.host, uv_strerror(status));
    return;
  }
  ck.addrs = ck.next_addr = res;
  try_connect();
}

/* "host:port", "[v6]:port" or a UNIX socket path (anything with a '/'). */
static int parse_endpoint(const char *e) {
  const char *colon;
  size_t hlen;
  if (strchr(e, '/')) {
    ck.path = e;
    return 0;
  }
  if (e[0] == '[') {
    const char *close = strchr(e, ']');
    if (!close || close[1] != ':') return -1;
    hlen = (size_t)(close - e - 1);
    colon = close + 1;
    e++;
  } else {
    colon = strrchr(e, ':');
    if (!colon || strchr(e, ':') != colon) return -1;
    hlen = (size_t)(colon - e);
  }
  if (hlen == 0 || hlen >= sizeof ck.host) return -1;
  memcpy(ck.host, e, hlen);
  ck.host[hlen] = '\0';
  const char *port = colon + 1;
  char *end;
  long p = strtol(port, &end, 10);
  if (!*port || *end || p <= 0 || p > 65535) return -1;
  snprintf(ck.port, sizeof ck.port, "%ld", p);
  return 0;
}

static int run_check(const char *endpoint, int probe, double timeout) {
  int rc;
  ck.endpoint = endpoint;
  ck.probe = probe;
  if (ck.thrift) {
    snprintf(ck.url, sizeof ck.url, "is_healthy (probe %d) from %s", probe, endpoint);
    ck.request_len = bp__hc_thrift_request(probe, ck.request, sizeof ck.request);
    bp__hc_thrift_init(&ck.thrift_reply);
  } else if (ck.path) {
    snprintf(ck.url, sizeof ck.url, "http+unix://%s/health?type=%d", ck.path, probe);
  } else {
    snprintf(ck.url, sizeof ck.url, "http://%s%s%s:%s/health?type=%d",
             strchr(ck.host, ':') ? "[" : "", ck.host, strchr(ck.host, ':') ? "]" : "", ck.port,
             probe);
  }
  if (!ck.thrift) {
    snprintf(ck.request, sizeof ck.request,
             "GET /health?type=%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: baseplate-healthcheck\r\n"
             "Accept: application/json\r\nConnection: close\r\n\r\n",
             probe, ck.path ? "localhost" : endpoint);
    ck.request_len = strlen(ck.request);
  }

  uv_loop_init(&ck.loop);
  bp__hc_reply_init(&ck.reply);

  uv_timer_init(&ck.loop, &ck.timer);
  ck.timer.data = &timeout;
  uv_timer_start(&ck.timer, on_timeout, (uint64_t)(timeout * 1000.0 + 0.5), 0);

  if (ck.path) {
    uv_pipe_init(&ck.loop, &ck.conn.pipe, 0);
    ck.conn_open = 1;
    uv_pipe_connect(&ck.connect, &ck.conn.pipe, ck.path, on_connect);
  } else {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    rc = uv_getaddrinfo(&ck.loop, &ck.resolve, on_resolved, ck.host, ck.port, &hints);
    if (rc < 0) {
      finish("cannot resolve %s: %s", ck.host, uv_strerror(rc));
    } else {
      ck.resolving = 1;
    }
  }
  uv_run(&ck.loop, UV_RUN_DEFAULT);
  if (ck.addrs) uv_freeaddrinfo(ck.addrs);
  uv_loop_close(&ck.loop);
  if (ck.thrift) bp__hc_thrift_free(&ck.thrift_reply);
  if (ck.error[0]) {
    printf("NOT OK: %s\n", ck.error);
    return 1;
  }
  printf("OK!\n");
  return 0;
}

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--probe", "{readiness,liveness,startup}", "The probe to check. (default: readiness)", NULL},
      {"--timeout", "SECONDS", "give up after this long (default: 30)", NULL},
  };
  static const char *pos[] = {"type", "endpoint"};
  static const char *probes[] = {"readiness", "liveness", "startup"};
  bp_cli_t cli = {
      .prog = "baseplate-healthcheck",
      .usage =
          "baseplate-healthcheck [-h] [--probe {readiness,liveness,startup}]\n"
          "                             [--timeout SECONDS] [--version]\n"
          "                             {wsgi,http,thrift} endpoint",
      .description =
          "Check health of a Baseplate service.\n\n"
          "type is the protocol of the service to check (wsgi and http are the\n"
          "same); endpoint is host:port, [v6addr]:port or a UNIX socket path.",
      .opts = opts,
      .nopts = 2,
      .positional_names = pos,
      .npositional = 2,
  };
  int probe = 1;
  double timeout = 30;

  bp_cli_parse(&cli, argc, argv);
  /* a service that closes before reading the request: NOT OK, not death
   * by SIGPIPE */
  signal(SIGPIPE, SIG_IGN);
  const char *type = cli.positionals[0], *endpoint = cli.positionals[1];
  if (strcmp(type, "wsgi") != 0 && strcmp(type, "http") != 0 && strcmp(type, "thrift") != 0)
    bp_cli_fail(&cli, "argument type: invalid choice: '%s' (choose from 'wsgi', 'http', 'thrift')",
                type);
  if (opts[0].value) {
    probe = 0;
    for (int i = 0; i < 3; i++)
      if (strcmp(opts[0].value, probes[i]) == 0) probe = i + 1;
    if (!probe)
      bp_cli_fail(&cli,
                  "argument --probe: invalid choice: '%s' (choose from 'readiness', 'liveness', "
                  "'startup')",
                  opts[0].value);
  }
  if (opts[1].value) {
    char *end;
    timeout = strtod(opts[1].value, &end);
    if (end == opts[1].value || *end || !(timeout > 0) || timeout > 86400)
      bp_cli_fail(&cli, "argument --timeout: invalid value: '%s' (a number of seconds above 0)",
                  opts[1].value);
  }
  if (parse_endpoint(endpoint) < 0)
    bp_cli_fail(&cli, "argument endpoint: invalid endpoint: '%s' (expected host:port or a path)",
                endpoint);
  ck.thrift = strcmp(type, "thrift") == 0;
  return run_check(endpoint, probe, timeout);
}
