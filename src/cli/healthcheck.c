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
 * The tool needs no Lua. libcurl connects (the name resolved, each address
 * tried, IPv6 and IPv4, or a UNIX socket) and carries the bytes
 * (CURLOPT_CONNECT_ONLY, curl_easy_send/recv); the answer is read and
 * judged as it arrives by healthcheck_reply.c (HTTP) or healthcheck_thrift.c
 * (THeader), whose parsers are fuzzed. */
#include "args.h"
#include "healthcheck_reply.h"
#include "healthcheck_thrift.h"

#include <curl/curl.h>
#include <http_parser.h>
#include <uv.h> /* uv_strerror: errors worded as the rest of the project words them */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  CURL *curl;
  curl_socket_t sock;
  double deadline; /* monotonic seconds */
  double timeout;
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
  char curl_err[CURL_ERROR_SIZE];
  char error[1024]; /* the reason it is not healthy; empty: healthy */
} check_t;

static check_t ck;

/* --- the check ---------------------------------------------------------------- */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The reason it is not healthy (the first one wins). */
static void fail(const char *fmt, ...) {
  va_list ap;
  if (ck.error[0]) return;
  va_start(ap, fmt);
  vsnprintf(ck.error, sizeof ck.error, fmt, ap);
  va_end(ap);
}

static void timed_out(void) { fail("timed out after %g seconds waiting for %s", ck.timeout, ck.url); }

/* Wait until the socket is readable (or writable); 0, or -1 when the check
 * is out of time. */
static int wait_for(int writable) {
  struct pollfd p = {.fd = (int)ck.sock, .events = writable ? POLLOUT : POLLIN};
  for (;;) {
    double left = ck.deadline - now();
    int rc;
    if (left <= 0) return -1;
    rc = poll(&p, 1, (int)(left * 1000.0) + 1);
    if (rc > 0) return 0;
    if (rc < 0 && errno != EINTR) return -1;
  }
}

/* The OS error libcurl met, as libuv words it ("connection refused"). */
static const char *os_error(CURLcode rc) {
  long e = 0;
  curl_easy_getinfo(ck.curl, CURLINFO_OS_ERRNO, &e);
  if (e) return uv_strerror((int)-e);
  return ck.curl_err[0] ? ck.curl_err : curl_easy_strerror(rc);
}

static int connect_service(void) {
  char url[300];
  CURLcode rc;
  if (ck.path) {
    snprintf(url, sizeof url, "http://localhost/");
    curl_easy_setopt(ck.curl, CURLOPT_UNIX_SOCKET_PATH, ck.path);
  } else {
    snprintf(url, sizeof url, "http://%s%s%s:%s/", strchr(ck.host, ':') ? "[" : "", ck.host,
             strchr(ck.host, ':') ? "]" : "", ck.port);
  }
  curl_easy_setopt(ck.curl, CURLOPT_URL, url);
  curl_easy_setopt(ck.curl, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(ck.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(ck.curl, CURLOPT_ERRORBUFFER, ck.curl_err);
  curl_easy_setopt(ck.curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(ck.timeout * 1000.0 + 0.5));
  curl_easy_setopt(ck.curl, CURLOPT_TIMEOUT_MS, (long)(ck.timeout * 1000.0 + 0.5));
  rc = curl_easy_perform(ck.curl);
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    timed_out();
    return -1;
  }
  if (rc == CURLE_COULDNT_RESOLVE_HOST) {
    fail("cannot resolve %s: %s", ck.host, ck.curl_err[0] ? ck.curl_err : curl_easy_strerror(rc));
    return -1;
  }
  if (rc != CURLE_OK) {
    fail("cannot connect to %s: %s", ck.endpoint, os_error(rc));
    return -1;
  }
  if (curl_easy_getinfo(ck.curl, CURLINFO_ACTIVESOCKET, &ck.sock) != CURLE_OK ||
      ck.sock == CURL_SOCKET_BAD) {
    fail("cannot connect to %s: no socket", ck.endpoint);
    return -1;
  }
  return 0;
}

static int send_request(void) {
  size_t off = 0;
  while (off < ck.request_len) {
    size_t n = 0;
    CURLcode rc = curl_easy_send(ck.curl, ck.request + off, ck.request_len - off, &n);
    if (rc == CURLE_AGAIN) {
      if (wait_for(1) < 0) {
        timed_out();
        return -1;
      }
      continue;
    }
    if (rc != CURLE_OK) {
      fail("cannot send the request to %s: %s", ck.endpoint, os_error(rc));
      return -1;
    }
    off += n;
  }
  return 0;
}

/* Read and judge the answer until there is a verdict. */
static void read_answer(void) {
  char verdict[sizeof ck.error];
  for (;;) {
    size_t n = 0;
    int done;
    CURLcode rc = curl_easy_recv(ck.curl, ck.readbuf, sizeof ck.readbuf, &n);
    if (rc == CURLE_AGAIN) {
      if (wait_for(0) < 0) {
        timed_out();
        return;
      }
      continue;
    }
    if (rc != CURLE_OK) {
      fail("cannot read from %s: %s", ck.endpoint, os_error(rc));
      return;
    }
    /* n == 0: the end of the answer (the service closed) */
    verdict[0] = '\0';
    done = ck.thrift ? bp__hc_thrift_feed(&ck.thrift_reply, ck.readbuf, n, ck.probe, ck.endpoint, verdict,
                                          sizeof verdict)
                     : bp__hc_reply_feed(&ck.reply, ck.readbuf, n, ck.url, ck.endpoint, verdict,
                                         sizeof verdict);
    if (done) {
      if (verdict[0]) fail("%s", verdict);
      return;
    }
    if (n == 0) { /* (the parsers judge the end themselves; this is a backstop) */
      fail("%s closed the connection without answering", ck.endpoint);
      return;
    }
  }
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
  if (hlen >= sizeof ck.host) return -1;
  memcpy(ck.host, e, hlen);
  ck.host[hlen] = '\0';
  /* ":9090", as Baseplate.py's Endpoint reads it: "" is this host. */
  if (hlen == 0) strcpy(ck.host, "0.0.0.0");
  const char *port = colon + 1;
  char *end;
  long p = strtol(port, &end, 10);
  if (!*port || *end || p <= 0 || p > 65535) return -1;
  snprintf(ck.port, sizeof ck.port, "%ld", p);
  return 0;
}

static int run_check(const char *endpoint, int probe, double timeout) {
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

  bp__hc_reply_init(&ck.reply);
  ck.timeout = timeout;
  ck.deadline = now() + timeout;
  ck.sock = CURL_SOCKET_BAD;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(ck.curl = curl_easy_init())) {
    fail("cannot start libcurl");
  } else {
    if (connect_service() == 0 && send_request() == 0) read_answer();
    curl_easy_cleanup(ck.curl);
  }
  curl_global_cleanup();
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
