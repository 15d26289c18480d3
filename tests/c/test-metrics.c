/* StatsD metrics (src/metrics.c): line formats, batches, and the UDP
 * transport's packing, timer, shutdown flush and error handling, against a
 * real UDP socket on 127.0.0.1. */
#include "baseplate/log.h"
#include "baseplate/metrics.h"
#include "metrics_internal.h"
#include "runtime.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "bp-test.h"

#define LOGGER "baseplate.lib.metrics"

static int server_fd = -1;
static int server_port;
static char endpoint[64];
static char err[256];
static char dgram[BP_METRICS_MAX_BATCH + 16];
static char out[16384];

/* ---- helpers ------------------------------------------------------------- */

static int udp_bind(const char *addr, int family, int *port) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  memset(&ss, 0, sizeof ss);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &in->sin_addr);
    len = sizeof *in;
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    in6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr, &in6->sin6_addr);
    len = sizeof *in6;
  }
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                  : ((struct sockaddr_in6 *)&ss)->sin6_port);
  return fd;
}

/* The next datagram on fd within timeout_ms, NUL-terminated in dgram; its
 * length, or -1 when none came. */
static int recv_on(int fd, int timeout_ms) {
  struct pollfd p = {fd, POLLIN, 0};
  ssize_t n;
  if (poll(&p, 1, timeout_ms) <= 0) return -1;
  n = recv(fd, dgram, sizeof dgram - 1, 0);
  if (n < 0) return -1;
  dgram[n] = '\0';
  return (int)n;
}

static int recv_dgram(int timeout_ms) { return recv_on(server_fd, timeout_ms); }

static void drain(void) {
  while (recv_dgram(0) >= 0) {
  }
}

static bp_metrics_t *transport(size_t datagram_size, double flush_interval) {
  bp_metrics_options_t o;
  bp_metrics_t *m;
  bp_metrics_options_init(&o);
  o.endpoint = endpoint;
  o.datagram_size = datagram_size;
  o.flush_interval = flush_interval;
  err[0] = '\0';
  m = bp_metrics_new(&o, err, sizeof err);
  CHECK(m != NULL);
  CHECK_STR(err, "");
  return m;
}

/* Everything the batch sends, as one datagram. */
static const char *sent(bp_metrics_t *m, bp_metrics_batch_t *b) {
  drain();
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(m);
  if (recv_dgram(1000) < 0) return "(nothing sent)";
  return dgram;
}

/* Run fn with stdout redirected into `out`. */
/* The log lines fn writes (text format), without their times. */
static void capture(void (*fn)(void)) {
  bp_test_capture(fn, out, sizeof out);
  bp_test_strip_log_times(out);
}

static void on_tick(uv_timer_t *t) { uv_close((uv_handle_t *)t, NULL); }

/* Run the loop for about ms milliseconds (the metrics timer is unref'd and
 * does not keep it running by itself). */
static void run_loop_for(uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(uv_default_loop(), &t);
  uv_timer_start(&t, on_tick, ms, 0);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

static unsigned long long stat_datagrams(bp_metrics_t *m) {
  unsigned long long d, l;
  bp_metrics_stats(m, &d, &l);
  return d;
}

static unsigned long long stat_lines(bp_metrics_t *m) {
  unsigned long long d, l;
  bp_metrics_stats(m, &d, &l);
  return l;
}

/* ---- line formats -------------------------------------------------------- */

static void test_options_defaults(void) {
  bp_metrics_options_t o;
  memset(&o, 0xff, sizeof o);
  bp_metrics_options_init(&o);
  CHECK(o.endpoint == NULL);
  CHECK_INT(o.log_if_unconfigured, 0);
  CHECK_INT(o.swallow_network_errors, 0);
  CHECK_INT(o.datagram_size, 1400);
  CHECK_NEAR(o.flush_interval, 0.005);
}

static void test_line_formats(void) {
  bp_metrics_t *m = transport(BP_METRICS_MAX_BATCH, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "..ns..");
  bp_metric_tag_t tags[] = {{"k", "v"}, {"a", "True"}};
  const char *want = "ns.t:1.80316|ms\n"
                     "ns.g:4000|g\n"
                     "ns.h,k=v,a=True:320|h\n"
                     "ns.sampled:0.5|ms|@0.25\n"
                     "ns.big:1e+20|g\n"
                     "ns.a.b:0|h\n"
                     "ns.c:1|c\n"
                     "ns.example:2|c|@0.5";

  CHECK(bp_metrics_configured(m));
  CHECK_INT(bp_metrics_batch_size(b), 0);
  CHECK_INT(bp_metrics_timer(b, ".t.", NULL, 0, 1.80316, 1), BP_OK);
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 4000), BP_OK);
  CHECK_INT(bp_metrics_histogram(b, "h", tags, 2, 320), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_timer(b, "sampled", NULL, 0, 0.5, 0.25), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "example", NULL, 0, 2, 0.5), BP_OK);
  CHECK_INT(bp_metrics_gauge(b, "big", NULL, 0, 1e20), BP_OK);
  CHECK_INT(bp_metrics_histogram(b, "..a.b..", NULL, 0, 0), BP_OK);
  CHECK_INT(bp_metrics_batch_size(b), strlen(want));
  CHECK_STR(sent(m, b), want);
  CHECK_INT(bp_metrics_batch_size(b), 0);
  bp_metrics_batch_free(b);

  /* no namespace: just the name */
  b = bp_metrics_batch_new(m, NULL);
  CHECK_INT(bp_metrics_counter(b, "example", NULL, 0, 2, 0.5), BP_OK);
  CHECK_STR(sent(m, b), "example:2|c|@0.5");
  bp_metrics_batch_free(b);
  b = bp_metrics_batch_new(m, "");
  CHECK_INT(bp_metrics_counter(b, ".x.y.", NULL, 0, 1, 1), BP_OK);
  CHECK_STR(sent(m, b), "x.y:1|c");
  bp_metrics_batch_free(b);
  /* an empty name after a namespace is the namespace */
  b = bp_metrics_batch_new(m, "svc.");
  CHECK_INT(bp_metrics_gauge(b, "", NULL, 0, 1), BP_OK);
  CHECK_STR(sent(m, b), "svc:1|g");
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
}

/* Values are printed as printf's "%g" would, including the fast path's
 * edges: decades, rounding into the next decade, ties, tiny and huge. */
static void test_value_format(void) {
  static const double values[] = {0, -0.0, 1, -1, 0.5, 2.5, 12.5, 0.0001, 0.00009999, 0.00015,
                                  0.000123456789, 0.1, 0.12345650, 1.80316, 9.999995, 99999.95,
                                  123456, 999999, 999999.4, 999999.5, 1e6, 1234567, 1e-5,
                                  0.30000000000000004, 3.14159265, -271.828182, 65536.5};
  bp_metrics_t *m = transport(BP_METRICS_MAX_BATCH, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, NULL);
  char want[4096] = "", line[64];
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    snprintf(line, sizeof line, "%sv:%g|h", i ? "\n" : "", values[i]);
    strcat(want, line);
    CHECK_INT(bp_metrics_histogram(b, "v", NULL, 0, values[i]), BP_OK);
  }
  CHECK_STR(sent(m, b), want);
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
}

/* The fast formatter against snprintf on a million values spread over the
 * decades metrics carry (and past them), ties and decade edges included. */
static void test_value_format_random(void) {
  uint64_t x = 88172645463325252ull;
  char got[40], want[40];
  int bad = 0;
  for (int i = 0; i < 1000000 && bad < 5; i++) {
    double v;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift */
    switch (i % 4) {
    case 0: /* log-uniform over 1e-6 .. 1e8 */
      v = pow(10.0, -6.0 + (double)(x % 1400000) / 100000.0);
      break;
    case 1: /* a millisecond time with microsecond resolution */
      v = (double)(x % 100000000) / 1000.0;
      break;
    case 2: /* near a rounding tie of the 6th digit */
      v = ((double)(x % 900000 + 100000) + 0.5) * pow(10.0, (double)(int)(x % 11) - 9);
      break;
    default: /* integers, and negatives */
      v = (double)(int64_t)(x % 20000000) - 10000000.0;
      break;
    }
    got[bp__metrics_fmt_g(got, v)] = '\0';
    snprintf(want, sizeof want, "%g", v);
    if (strcmp(got, want) != 0) {
      fprintf(stderr, "  %.17g: got %s, want %s\n", v, got, want);
      bad++;
    }
  }
  CHECK_INT(bad, 0);
}

static void test_counter_aggregation(void) {
  bp_metrics_t *m = transport(BP_METRICS_MAX_BATCH, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "app");
  bp_metric_tag_t x1[] = {{"x", "1"}}, x2[] = {{"x", "2"}};
  static char want[65536];
  char *w;

  CHECK_INT(bp_metrics_counter(b, "hits", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_timer(b, "t", NULL, 0, 5, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "hits", NULL, 0, 2, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "hits", x1, 1, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "misses", NULL, 0, 1, 0.5), BP_OK);
  CHECK_INT(bp_metrics_timer(b, "t", NULL, 0, 5, 1), BP_OK); /* timers are never merged */
  CHECK_INT(bp_metrics_counter(b, "hits", NULL, 0, 1, 0.5), BP_OK);
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 3), BP_OK);
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 3), BP_OK); /* nor gauges */
  CHECK_INT(bp_metrics_counter(b, "misses", NULL, 0, 3, 0.5), BP_OK);
  CHECK_INT(bp_metrics_counter(b, ".hits.", NULL, 0, -0.5, 1), BP_OK); /* same full name */
  CHECK_INT(bp_metrics_counter(b, "hits", x2, 1, 4, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "hits", x1, 1, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_histogram(b, "h", NULL, 0, 7), BP_OK);
  CHECK_INT(bp_metrics_histogram(b, "h", NULL, 0, 7), BP_OK); /* nor histograms */
  CHECK_STR(sent(m, b), "app.t:5|ms\n"
                        "app.t:5|ms\n"
                        "app.g:3|g\n"
                        "app.g:3|g\n"
                        "app.h:7|h\n"
                        "app.h:7|h\n"
                        "app.hits:2.5|c\n"
                        "app.hits,x=1:2|c\n"
                        "app.misses:4|c|@0.5\n"
                        "app.hits:1|c|@0.5\n"
                        "app.hits,x=2:4|c");

  /* the batch is empty after a flush and can be used again */
  CHECK_INT(bp_metrics_batch_size(b), 0);
  drain();
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(50), -1);
  CHECK_INT(bp_metrics_counter(b, "hits", NULL, 0, 1, 1), BP_OK);
  CHECK_STR(sent(m, b), "app.hits:1|c");

  /* many counters: first-seen order, each summed */
  w = want;
  for (int i = 0; i < 300; i++) w += sprintf(w, "%sapp.c%d:3|c", i ? "\n" : "", i);
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 300; i++) {
      char name[32];
      snprintf(name, sizeof name, "c%d", i);
      CHECK_INT(bp_metrics_counter(b, name, NULL, 0, 1, 1), BP_OK);
    }
  CHECK_INT(bp_metrics_batch_size(b), strlen(want));
  CHECK_STR(sent(m, b), want);
  /* and again after the clear, in the reused index */
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 300; i++) {
      char name[32];
      snprintf(name, sizeof name, "c%d", i);
      CHECK_INT(bp_metrics_counter(b, name, NULL, 0, 1, 1), BP_OK);
    }
  CHECK_STR(sent(m, b), want);

  /* an unusually large batch (its memory is given back), then a small one */
  w = want;
  for (int i = 0; i < 2000; i++) {
    char name[32];
    snprintf(name, sizeof name, "k%d", i);
    CHECK_INT(bp_metrics_counter(b, name, x1, 1, i, 1), BP_OK);
    w += sprintf(w, "%sapp.k%d,x=1:%d|c", i ? "\n" : "", i, i);
  }
  CHECK_STR(sent(m, b), want);
  CHECK_INT(bp_metrics_counter(b, "hits", x1, 1, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "hits", x1, 1, 1, 1), BP_OK);
  CHECK_STR(sent(m, b), "app.hits,x=1:2|c");
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
}

static void test_validation(void) {
  bp_metrics_batch_t *b = bp_metrics_batch_new(NULL, "ns");
  bp_metrics_batch_t *bad_ns = bp_metrics_batch_new(NULL, "a:b");
  bp_metric_tag_t t_comma_key[] = {{"a,b", "v"}}, t_eq_key[] = {{"a=b", "v"}};
  bp_metric_tag_t t_comma_val[] = {{"k", "1,2"}}, t_eq_val[] = {{"k", "1=2"}};
  bp_metric_tag_t t_colon[] = {{"k", "1:2"}}, t_pipe[] = {{"k|", "v"}}, t_nl[] = {{"k", "a\nb"}};
  bp_metric_tag_t t_null[] = {{"k", NULL}}, t_empty_key[] = {{"", "v"}}, t_ok[] = {{"k", ""}};

  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, -1), BP_EINVAL);
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, -0.001), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "a:b", NULL, 0, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "a|b", NULL, 0, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_timer(b, "a\nb", NULL, 0, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_histogram(b, NULL, NULL, 0, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "c", t_comma_key, 1, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "c", t_eq_key, 1, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_timer(b, "c", t_comma_val, 1, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_timer(b, "c", t_eq_val, 1, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_gauge(b, "c", t_colon, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_gauge(b, "c", t_pipe, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_histogram(b, "c", t_nl, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_histogram(b, "c", t_null, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_histogram(b, "c", t_empty_key, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_histogram(b, "c", NULL, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 0), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1.5), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, -0.5), BP_EINVAL);
  CHECK_INT(bp_metrics_timer(b, "c", NULL, 0, 1, NAN), BP_EINVAL);
  CHECK_INT(bp_metrics_timer(b, "c", NULL, 0, 1, 0), BP_EINVAL);
  CHECK_INT(bp_metrics_timer(b, "c", NULL, 0, NAN, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, INFINITY, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(NULL, "c", NULL, 0, 1, 1), BP_EINVAL);
  CHECK_INT(bp_metrics_counter(bad_ns, "c", NULL, 0, 1, 1), BP_EINVAL);
  /* nothing was recorded by the refused calls */
  CHECK_INT(bp_metrics_batch_size(b), 0);

  /* what is allowed: '=' and ',' in names, an empty tag value, a zero gauge */
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 0), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "a=b", t_ok, 1, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1e-9), BP_OK);
  CHECK_INT(bp_metrics_batch_size(b), strlen("ns.g:0|g\nns.a=b,k=:1|c\nns.c:1|c|@1e-09"));
  /* a batch without a transport sends nowhere */
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  CHECK_INT(bp_metrics_batch_size(b), 0);
  bp_metrics_batch_free(b);
  bp_metrics_batch_free(bad_ns);

  /* NULL is fine everywhere it can be */
  bp_metrics_batch_free(NULL);
  bp_metrics_free(NULL);
  bp_metrics_flush(NULL);
  CHECK(!bp_metrics_configured(NULL));
  CHECK_INT(bp_metrics_batch_size(NULL), 0);
}

/* ---- the transport --------------------------------------------------------- */

static void idle_stop(uv_idle_t *h) { uv_idle_stop(h); }

/* One turn of the loop, as a server's loop turns (it has something alive),
 * after the least spacing between two sends of full datagrams. */
static void one_iteration(void) {
  uv_idle_t idle;
  usleep(2000);
  uv_idle_init(uv_default_loop(), &idle);
  uv_idle_start(&idle, idle_stop);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

static void add_gauges(bp_metrics_batch_t *b, int from, int to) {
  char name[32];
  for (int i = from; i < to; i++) {
    snprintf(name, sizeof name, "gauge%d", i); /* "gaugeN:1|g" is 10 bytes */
    CHECK_INT(bp_metrics_gauge(b, name, NULL, 0, 1), BP_OK);
  }
}

/* Counters of several batches are summed until the flush timer sends them;
 * timers are not. */
static void test_counters_summed_across_batches(void) {
  bp_metrics_t *m = transport(BP_METRICS_MAX_BATCH, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "svc");
  bp_metric_tag_t ok[] = {{"endpoint", "x"}, {"success", "True"}};
  drain();
  for (int i = 0; i < 3; i++) {
    CHECK_INT(bp_metrics_timer(b, "latency", NULL, 0, 1 + i, 1), BP_OK);
    CHECK_INT(bp_metrics_counter(b, "rate", ok, 2, 1, 1), BP_OK);
    CHECK_INT(bp_metrics_counter(b, "sampled", NULL, 0, 1, 0.5), BP_OK);
    CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  }
  CHECK_INT(recv_dgram(20), -1); /* waiting for the timer (60 s) or a flush */
  bp_metrics_flush(m);
  CHECK(recv_dgram(1000) > 0);
  CHECK_STR(dgram, "svc.latency:1|ms\nsvc.latency:2|ms\nsvc.latency:3|ms\n"
                   "svc.rate,endpoint=x,success=True:3|c\nsvc.sampled:3|c|@0.5");
  CHECK_INT(stat_lines(m), 5);
  /* and the flush timer sends the summed counters on its own */
  bp_metrics_free(m);
  m = transport(BP_METRICS_MAX_BATCH, 0.01);
  bp_metrics_batch_free(b);
  b = bp_metrics_batch_new(m, NULL);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 2, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 5, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  run_loop_for(100);
  CHECK(recv_dgram(1000) > 0);
  CHECK_STR(dgram, "c:7|c");
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
}

/* The observers' path (bp__metrics_span_done): the same lines as through a
 * batch; the counter summed where it was summed last until the window is
 * sent, then anew; a batch holding other lines takes the general path. */
static void test_span_done(void) {
  bp_metrics_t *m = transport(BP_METRICS_MAX_BATCH, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "svc");
  bp__metric_key_t timer, ok, fail;
  bp_metric_tag_t t_ok[] = {{"endpoint", "x"}, {"success", "True"}};
  bp_metric_tag_t t_fail[] = {{"endpoint", "x"}, {"success", "False"}};
  bp_metric_tag_t t_ep[] = {{"endpoint", "x"}};
  CHECK_INT(bp__metric_key_prepare(&timer, "latency", t_ep, 1), BP_OK);
  CHECK_INT(bp__metric_key_prepare(&ok, "rate", t_ok, 2), BP_OK);
  CHECK_INT(bp__metric_key_prepare(&fail, "rate", t_fail, 2), BP_OK);
  drain();
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 3; i++) CHECK_INT(bp__metrics_span_done(b, &timer, 1 + i, &ok, 1), BP_OK);
    CHECK_INT(bp__metrics_span_done(b, &timer, 0.5, &fail, 1), BP_OK);
    CHECK_INT(bp__metrics_span_done(b, &timer, 4, &ok, 1), BP_OK);
    /* a batch with a line of its own: through the batch, summed all the same */
    CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 7), BP_OK);
    CHECK_INT(bp__metrics_span_done(b, &timer, 5, &ok, 1), BP_OK);
    CHECK_INT(recv_dgram(20), -1);
    bp_metrics_flush(m);
    CHECK(recv_dgram(1000) > 0);
    CHECK_STR(dgram, "svc.latency,endpoint=x:1|ms\nsvc.latency,endpoint=x:2|ms\n"
                     "svc.latency,endpoint=x:3|ms\nsvc.latency,endpoint=x:0.5|ms\n"
                     "svc.latency,endpoint=x:4|ms\nsvc.g:7|g\nsvc.latency,endpoint=x:5|ms\n"
                     "svc.rate,endpoint=x,success=True:5|c\nsvc.rate,endpoint=x,success=False:1|c");
  }
  CHECK_INT(stat_lines(m), 18);
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
  /* a new transport (perhaps at the same address): nothing of the old one is reused */
  m = transport(BP_METRICS_MAX_BATCH, 60);
  b = bp_metrics_batch_new(m, "svc");
  drain();
  CHECK_INT(bp__metrics_span_done(b, &timer, 1, &ok, 1), BP_OK);
  CHECK_INT(bp__metrics_span_done(b, &timer, 1, &ok, 0.5), BP_OK); /* another rate: another counter */
  bp_metrics_flush(m);
  CHECK(recv_dgram(1000) > 0);
  CHECK_STR(dgram, "svc.latency,endpoint=x:1|ms\nsvc.latency,endpoint=x:1|ms|@0.5\n"
                   "svc.rate,endpoint=x,success=True:1|c\nsvc.rate,endpoint=x,success=True:1|c|@0.5");
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
}

static void test_packing(void) {
  /* 4 lines of 10 bytes and 3 "\n" fit in 45 bytes, 5 do not */
  bp_metrics_t *m = transport(45, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, NULL);
  char longname[64];

  drain();
  add_gauges(b, 0, 2);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  add_gauges(b, 2, 4);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  CHECK_INT(recv_dgram(20), -1); /* two batches wait in one datagram */
  CHECK_INT(stat_datagrams(m), 0);
  add_gauges(b, 4, 6);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  /* the 5th line did not fit: the first four are a full datagram, which
   * leaves at the end of the loop iteration (not after flush_interval) */
  CHECK_INT(recv_dgram(20), -1);
  CHECK_INT(stat_datagrams(m), 0);
  one_iteration();
  CHECK_INT(recv_dgram(1000), 43);
  CHECK_STR(dgram, "gauge0:1|g\ngauge1:1|g\ngauge2:1|g\ngauge3:1|g");
  CHECK_INT(recv_dgram(20), -1);
  CHECK_INT(stat_datagrams(m), 1);
  CHECK_INT(stat_lines(m), 4);
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(1000), 21);
  CHECK_STR(dgram, "gauge4:1|g\ngauge5:1|g");
  CHECK_INT(stat_datagrams(m), 2);
  CHECK_INT(stat_lines(m), 6);

  /* a line longer than a datagram goes alone, never split */
  memset(longname, 'L', 60);
  longname[60] = '\0';
  add_gauges(b, 6, 7);
  CHECK_INT(bp_metrics_timer(b, longname, NULL, 0, 1, 1), BP_OK);
  add_gauges(b, 7, 8);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(1000), 10);
  CHECK_STR(dgram, "gauge6:1|g");
  CHECK_INT(recv_dgram(1000), 65);
  CHECK_INT(strncmp(dgram, longname, 60), 0);
  CHECK_STR(dgram + 60, ":1|ms");
  CHECK_INT(recv_dgram(1000), 10);
  CHECK_STR(dgram, "gauge7:1|g");
  CHECK_INT(recv_dgram(20), -1);
  CHECK_INT(stat_datagrams(m), 5);
  CHECK_INT(stat_lines(m), 9);

  /* full datagrams leave together at the end of a loop iteration (1 ms or
   * more after the previous send), in order, without waiting for the flush
   * timer (60 s here); no more than 16 wait (the 16th full one sends them
   * all at once). "gaugeNNN:1|g" is 12 bytes: 3 make a full datagram of 38. */
  drain();
  add_gauges(b, 100, 112);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  add_gauges(b, 112, 113); /* the 4th datagram is full now */
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  CHECK_INT(recv_dgram(20), -1);
  CHECK_INT(stat_datagrams(m), 5);
  one_iteration();
  CHECK_INT(recv_dgram(1000), 38);
  CHECK_STR(dgram, "gauge100:1|g\ngauge101:1|g\ngauge102:1|g");
  CHECK_INT(recv_dgram(1000), 38);
  CHECK_STR(dgram, "gauge103:1|g\ngauge104:1|g\ngauge105:1|g");
  CHECK_INT(recv_dgram(1000), 38);
  CHECK_INT(recv_dgram(1000), 38);
  CHECK_STR(dgram, "gauge109:1|g\ngauge110:1|g\ngauge111:1|g");
  CHECK_INT(recv_dgram(20), -1); /* gauge112 waits to fill its datagram */
  CHECK_INT(stat_datagrams(m), 9);
  add_gauges(b, 113, 163); /* 112..159 fill 16 datagrams; 160..162 wait */
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  for (int i = 0; i < 16; i++) CHECK_INT(recv_dgram(1000), 38);
  CHECK_STR(dgram, "gauge157:1|g\ngauge158:1|g\ngauge159:1|g");
  CHECK_INT(recv_dgram(20), -1);
  CHECK_INT(stat_datagrams(m), 25);
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(1000), 38);
  CHECK_STR(dgram, "gauge160:1|g\ngauge161:1|g\ngauge162:1|g");
  CHECK_INT(stat_datagrams(m), 26);

  /* counters are packed too */
  CHECK_INT(bp_metrics_counter(b, "c1", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "c2", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(1000), 13);
  CHECK_STR(dgram, "c1:1|c\nc2:1|c");
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

static void test_flush_timer(void) {
  bp_metrics_t *m = transport(1400, 0.2);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "timer");
  uv_loop_t *loop = uv_default_loop();

  uv_run(loop, UV_RUN_NOWAIT);
  drain();
  uv_update_time(loop);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  /* the armed timer does not keep the loop alive */
  CHECK(!uv_loop_alive(loop));
  CHECK_INT(recv_dgram(0), -1);
  run_loop_for(50);
  CHECK_INT(recv_dgram(0), -1); /* not yet: flush_interval is 200 ms */
  CHECK_INT(stat_datagrams(m), 0);
  run_loop_for(400);
  CHECK_INT(stat_datagrams(m), 1);
  CHECK_INT(recv_dgram(1000), 11);
  CHECK_STR(dgram, "timer.c:1|c");

  /* a new line starts the wait again */
  uv_update_time(loop);
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 2), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  run_loop_for(400);
  CHECK_INT(recv_dgram(1000), 11);
  CHECK_STR(dgram, "timer.g:2|g");

  /* an explicit flush stops the timer: nothing is left for it */
  CHECK_INT(bp_metrics_gauge(b, "g", NULL, 0, 3), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(1000), 11);
  CHECK_STR(dgram, "timer.g:3|g");
  run_loop_for(400);
  CHECK_INT(recv_dgram(0), -1);
  CHECK_INT(stat_datagrams(m), 3);
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void test_flush_on_free(void) {
  bp_metrics_t *m = transport(1400, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "bye");

  drain();
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_batch_free(b);
  CHECK_INT(recv_dgram(20), -1);
  bp_metrics_free(m);
  CHECK_INT(recv_dgram(1000), 9);
  CHECK_STR(dgram, "bye.c:1|c");
  uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* the timer's close callback frees it */
}

static void test_flush_on_loop_shutdown(void) {
  bp_metrics_t *m = transport(1400, 60);
  bp_metrics_batch_t *b = bp_metrics_batch_new(m, "exit");

  drain();
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  CHECK_INT(recv_dgram(20), -1);
  bp__loop_shutdown();
  CHECK_INT(recv_dgram(1000), 10);
  CHECK_STR(dgram, "exit.c:1|c");
  CHECK_INT(stat_datagrams(m), 1);

  /* after the loop is gone, batches are sent as they are flushed */
  CHECK_INT(bp_metrics_counter(b, "d", NULL, 0, 2, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "e", NULL, 0, 3, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  CHECK_INT(recv_dgram(1000), 21);
  CHECK_STR(dgram, "exit.d:2|c\nexit.e:3|c");
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
}

/* ---- too large a batch ----------------------------------------------------- */

static bp_metrics_t *big_m;
static bp_metrics_batch_t *big_b;
static int big_rc;

static void flush_big(void) { big_rc = bp_metrics_batch_flush(big_b); }

static void test_batch_too_large(void) {
  bp_metrics_t *m = big_m = transport(BP_METRICS_MAX_BATCH, 60);
  bp_metrics_batch_t *b = big_b = bp_metrics_batch_new(m, "big");
  bp_metric_tag_t tag[] = {{"t", "1"}};
  size_t want_size = 0;
  char want[1024], name[32], x91[92] = {0}, y51[52] = {0};

  drain();
  for (int i = 0; i < 12; i++) {
    snprintf(name, sizeof name, "c%02d", i);
    CHECK_INT(bp_metrics_counter(b, name, NULL, 0, i + 1, 1), BP_OK);
    want_size += strlen("big.c00:1|c") + (i + 1 >= 10) + 1;
  }
  /* counted by name: tags and rates add up */
  CHECK_INT(bp_metrics_counter(b, "c05", tag, 1, 50, 1), BP_OK);
  CHECK_INT(bp_metrics_counter(b, "c05", NULL, 0, 50, 0.5), BP_OK);
  want_size += strlen("big.c05,t=1:50|c") + 1 + strlen("big.c05:50|c|@0.5") + 1;
  for (int i = 0; i < 3000; i++) {
    CHECK_INT(bp_metrics_timer(b, "filler.timer.name", NULL, 0, 12.5, 1), BP_OK);
    want_size += strlen("big.filler.timer.name:12.5|ms") + 1;
  }
  want_size -= 1;
  CHECK_INT(bp_metrics_batch_size(b), want_size);

  capture(flush_big);
  CHECK_INT(big_rc, BP_ETOOBIG);
  snprintf(want, sizeof want,
           "WARNING  [" LOGGER "] Metrics batch of %zu bytes is too large to send, flush more often or reduce "
           "amount done in this request. Top counters: big.c05=106, big.c11=12, big.c10=11, "
           "big.c09=10, big.c08=9, big.c07=8, big.c06=7, big.c04=5, big.c03=4, big.c02=3\n",
           want_size);
  CHECK_STR(out, want);
  CHECK_INT(bp_metrics_batch_size(b), 0); /* cleared */
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(50), -1); /* and nothing sent */
  CHECK_INT(stat_datagrams(m), 0);
  CHECK_INT(stat_lines(m), 0);

  /* exactly BP_METRICS_MAX_BATCH bytes is fine: 648 lines of 100 bytes
   * ("big." + 91 + ":1|ms"), one of 59, and 648 "\n" */
  memset(x91, 'x', 91);
  memset(y51, 'y', 51);
  for (int i = 0; i < 648; i++) CHECK_INT(bp_metrics_timer(b, x91, NULL, 0, 1, 1), BP_OK);
  y51[50] = '\0';
  CHECK_INT(bp_metrics_timer(b, y51, NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_size(b), BP_METRICS_MAX_BATCH);
  capture(flush_big);
  CHECK_INT(big_rc, BP_OK);
  CHECK_STR(out, "");
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(1000), BP_METRICS_MAX_BATCH);
  CHECK_INT(stat_lines(m), 649);

  /* one byte more is too much, even without counters */
  for (int i = 0; i < 648; i++) CHECK_INT(bp_metrics_timer(b, x91, NULL, 0, 1, 1), BP_OK);
  y51[50] = 'y';
  CHECK_INT(bp_metrics_timer(b, y51, NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_size(b), BP_METRICS_MAX_BATCH + 1);
  capture(flush_big);
  CHECK_INT(big_rc, BP_ETOOBIG);
  CHECK_STR(out, "WARNING  [" LOGGER "] Metrics batch of 65508 bytes is too large to send, flush more often or "
                 "reduce amount done in this request. Top counters: \n");
  bp_metrics_flush(m);
  CHECK_INT(recv_dgram(50), -1);
  bp_metrics_batch_free(b);
  bp_metrics_free(m);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

/* ---- endpoints -------------------------------------------------------------- */

static const char *bad_endpoint(const char *ep) {
  bp_metrics_options_t o;
  bp_metrics_t *m;
  bp_metrics_options_init(&o);
  o.endpoint = ep;
  err[0] = '\0';
  m = bp_metrics_new(&o, err, sizeof err);
  CHECK(m == NULL);
  bp_metrics_free(m);
  return err;
}

static void test_endpoints(void) {
  bp_metrics_options_t o;
  bp_metrics_t *m;
  int port6, fd6;
  char ep[64];

  CHECK_STR(bad_endpoint("localhost"), "metrics.endpoint: expected host:port, got \"localhost\"");
  CHECK_STR(bad_endpoint("localhost:"), "metrics.endpoint: expected host:port, got \"localhost:\"");
  CHECK_STR(bad_endpoint("localhost:statsd"),
            "metrics.endpoint: expected host:port, got \"localhost:statsd\"");
  CHECK_STR(bad_endpoint("127.0.0.1:70000"),
            "metrics.endpoint: expected host:port, got \"127.0.0.1:70000\"");
  CHECK_STR(bad_endpoint("127.0.0.1:0"), "metrics.endpoint: expected host:port, got \"127.0.0.1:0\"");
  CHECK_STR(bad_endpoint("::1:8125"), "metrics.endpoint: expected host:port, got \"::1:8125\"");
  CHECK_STR(bad_endpoint("[::1]"), "metrics.endpoint: expected host:port, got \"[::1]\"");
  CHECK_STR(bad_endpoint("/run/statsd.sock"),
            "metrics.endpoint: expected host:port, got \"/run/statsd.sock\"");
  CHECK_STR(bad_endpoint("a\"b\n"), "metrics.endpoint: expected host:port, got \"a\\\"b\\x0a\"");

  /* a name is resolved (once) */
  bp_metrics_options_init(&o);
  snprintf(ep, sizeof ep, "localhost:%d", server_port);
  o.endpoint = ep;
  m = bp_metrics_new(&o, err, sizeof err);
  CHECK(m != NULL);
  if (m) {
    bp_metrics_batch_t *b = bp_metrics_batch_new(m, "byname");
    CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
    CHECK_STR(sent(m, b), "byname.c:1|c");
    bp_metrics_batch_free(b);
  }
  bp_metrics_free(m);

  /* [v6]:port, when the host has IPv6 */
  if ((fd6 = udp_bind("::1", AF_INET6, &port6)) >= 0) {
    snprintf(ep, sizeof ep, "[::1]:%d", port6);
    o.endpoint = ep;
    m = bp_metrics_new(&o, err, sizeof err);
    CHECK(m != NULL);
    if (m) {
      bp_metrics_batch_t *b = bp_metrics_batch_new(m, "v6");
      CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
      CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
      bp_metrics_flush(m);
      CHECK_INT(recv_on(fd6, 1000), 8);
      CHECK_STR(dgram, "v6.c:1|c");
      bp_metrics_batch_free(b);
    }
    bp_metrics_free(m);
    close(fd6);
  } else {
    printf("(no IPv6 on this host: [::1] not tried)\n");
  }
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

/* ---- no endpoint -------------------------------------------------------------- */

static bp_metrics_t *unconf;

static void flush_unconfigured(void) {
  bp_metrics_batch_t *b = bp_metrics_batch_new(unconf, "ns");
  CHECK_INT(bp_metrics_counter(b, "a", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_timer(b, "it's", NULL, 0, 2, 1), BP_OK);
  CHECK_INT(bp_metrics_gauge(b, "x\\y", NULL, 0, 3), BP_OK);
  CHECK_INT(bp_metrics_histogram(b, "caf\xc3\xa9\t", NULL, 0, 4), BP_OK);
  CHECK_INT(bp_metrics_histogram(b, "q'\"", NULL, 0, 5), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(unconf);
  bp_metrics_batch_free(b);
}

static void test_unconfigured(void) {
  bp_metrics_options_t o;

  bp_log_set_level(LOGGER, BP_LOG_DEBUG);
  bp_metrics_options_init(&o);
  o.log_if_unconfigured = 1;
  unconf = bp_metrics_new(&o, err, sizeof err);
  CHECK(unconf != NULL);
  CHECK(!bp_metrics_configured(unconf));
  capture(flush_unconfigured);
  CHECK_STR(out, "DEBUG    [" LOGGER "] Would send metric b\"ns.it's:2|ms\"\n"
                 "DEBUG    [" LOGGER "] Would send metric b'ns.x\\\\y:3|g'\n"
                 "DEBUG    [" LOGGER "] Would send metric b'ns.caf\\xc3\\xa9\\t:4|h'\n"
                 "DEBUG    [" LOGGER "] Would send metric b'ns.q\\'\":5|h'\n"
                 "DEBUG    [" LOGGER "] Would send metric b'ns.a:1|c'\n");
  CHECK_INT(stat_datagrams(unconf), 0);
  CHECK_INT(stat_lines(unconf), 5);
  bp_metrics_free(unconf);

  /* without log_if_unconfigured (and with an empty endpoint) lines are dropped quietly */
  o.log_if_unconfigured = 0;
  o.endpoint = "";
  unconf = bp_metrics_new(&o, err, sizeof err);
  CHECK(unconf != NULL);
  CHECK(!bp_metrics_configured(unconf));
  capture(flush_unconfigured);
  CHECK_STR(out, "");
  CHECK_INT(stat_lines(unconf), 5);
  bp_metrics_free(unconf);

  /* and at INFO, nothing is logged either */
  bp_log_set_level(LOGGER, BP_LOG_INFO);
  o.log_if_unconfigured = 1;
  unconf = bp_metrics_new(&o, err, sizeof err);
  capture(flush_unconfigured);
  CHECK_STR(out, "");
  bp_metrics_free(unconf);
}

/* ---- send errors --------------------------------------------------------------- */

static bp_metrics_t *errm;

static void send_one(void) {
  bp_metrics_batch_t *b = bp_metrics_batch_new(errm, NULL);
  CHECK_INT(bp_metrics_counter(b, "c", NULL, 0, 1, 1), BP_OK);
  CHECK_INT(bp_metrics_batch_flush(b), BP_OK);
  bp_metrics_flush(errm);
  bp_metrics_batch_free(b);
  usleep(20000); /* let the ICMP port unreachable come back */
}

static bp_metrics_t *refused_transport(int swallow) {
  bp_metrics_options_t o;
  int port, fd = udp_bind("127.0.0.1", AF_INET, &port);
  char ep[64];
  bp_metrics_t *m;
  close(fd); /* nobody listens there any more */
  snprintf(ep, sizeof ep, "127.0.0.1:%d", port);
  bp_metrics_options_init(&o);
  o.endpoint = ep;
  o.swallow_network_errors = swallow;
  m = bp_metrics_new(&o, err, sizeof err);
  CHECK(m != NULL);
  return m;
}

static void test_send_errors(void) {
  errm = refused_transport(0);
  capture(send_one);
  CHECK_STR(out, "");
  CHECK_INT(stat_datagrams(errm), 1);
  capture(send_one);
  CHECK_STR(out, "ERROR    [" LOGGER "] Failed to send metrics: Connection refused\n");
  /* the refusal was about the earlier datagram: this one still went */
  CHECK_INT(stat_datagrams(errm), 2);
  capture(send_one);
  CHECK_STR(out, ""); /* at most one message a second */
  CHECK_INT(stat_datagrams(errm), 3);
  bp_metrics_free(errm);

  /* swallow_network_errors: DEBUG, so invisible at INFO */
  errm = refused_transport(1);
  capture(send_one);
  capture(send_one);
  CHECK_STR(out, "");
  bp_metrics_free(errm);
  bp_log_set_level(LOGGER, BP_LOG_DEBUG);
  errm = refused_transport(1);
  capture(send_one);
  capture(send_one);
  CHECK_STR(out, "DEBUG    [" LOGGER "] Failed to send metrics: Connection refused\n");
  bp_metrics_free(errm);
  bp_log_set_level(LOGGER, BP_LOG_INFO);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

int main(void) {
  bp_log_set_format(BP_LOG_FORMAT_TEXT);
  server_fd = udp_bind("127.0.0.1", AF_INET, &server_port);
  if (server_fd < 0) {
    perror("bind");
    return 1;
  }
  snprintf(endpoint, sizeof endpoint, "127.0.0.1:%d", server_port);

  RUN(test_options_defaults);
  RUN(test_line_formats);
  RUN(test_value_format);
  RUN(test_value_format_random);
  RUN(test_counter_aggregation);
  RUN(test_validation);
  RUN(test_counters_summed_across_batches);
  RUN(test_span_done);
  RUN(test_packing);
  RUN(test_flush_timer);
  RUN(test_flush_on_free);
  RUN(test_batch_too_large);
  RUN(test_endpoints);
  RUN(test_unconfigured);
  RUN(test_send_errors);
  RUN(test_flush_on_loop_shutdown); /* last: it closes the loop */

  close(server_fd);
  bp__loop_shutdown();
  return bp_test_summary();
}
