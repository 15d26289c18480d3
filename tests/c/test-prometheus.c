/* Prometheus recording (src/prometheus.c): spans counted through the
 * observer bus, the text exposition, label escaping, the overflow series,
 * a dead worker's slot folded into the retired totals, and the
 * introspection hand-over between processes' slots. */
#include "baseplate/prometheus.h"
#include "baseplate/span.h"

#include <stdlib.h>
#include <string.h>

#include "bp-test.h"

static char err[256];

static const char *scrape(void) {
  size_t len = 0;
  const char *t = bp_prom_scrape(&len);
  CHECK(t != NULL);
  CHECK_INT(strlen(t ? t : ""), len);
  return t ? t : "";
}

#define HAS(text, needle)                                                                     \
  do {                                                                                        \
    const char *t_ = (text);                                                                  \
    bp_test_checks++;                                                                         \
    if (!strstr(t_, needle)) {                                                                \
      bp_test_failures++;                                                                     \
      bp_test_cur_failed = 1;                                                                 \
      fprintf(stderr, "%s:%d: exposition lacks: %s\n--- got:\n%s\n", __FILE__, __LINE__,     \
              needle, t_);                                                                    \
    }                                                                                         \
  } while (0)

static void server_span(bp_baseplate_t *bp, const char *name, const char *error) {
  bp_span_t *s = bp_span_new_server(bp, name, NULL);
  CHECK(s != NULL);
  bp_span_start(s);
  bp_span_finish(s, error);
  bp_span_unref(s);
}

static void test_record_and_scrape(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  bp_span_t *s, *c;
  const char *t;
  CHECK_INT(bp_prom_observe(bp), BP_EINVAL); /* no region yet */
  CHECK_INT(bp_prom_init(1, 64, err, sizeof err), BP_OK);
  CHECK_INT(bp_prom_slot(), 1);
  CHECK_INT(bp_prom_nslots(), 1);
  CHECK_INT(bp_prom_observe(bp), BP_OK);
  server_span(bp, "work", NULL);
  server_span(bp, "work", NULL);
  server_span(bp, "work", NULL);
  server_span(bp, "work", "ValueError");
  server_span(bp, "we\"ird\\name\n", NULL);
  s = bp_span_new_server(bp, "outer", NULL);
  bp_span_start(s);
  c = bp_span_make_child(s, "redis.get", 0, NULL, NULL);
  bp_span_start(c);
  bp_span_finish(c, NULL);
  bp_span_unref(c);
  /* a client span in its library's family (bp_span_set_metric_family) */
  c = bp_span_make_child(s, "cache.get", 0, NULL, NULL);
  CHECK_INT(bp_span_set_metric_family(c, "redis_client",
                                      "redis_client_name=\"cache\",redis_command=\"get\"", NULL, -1), BP_OK);
  bp_span_start(c);
  bp_span_finish(c, "RedisError");
  bp_span_unref(c);
  c = bp_span_make_child(s, "api.request", 0, NULL, NULL);
  CHECK_INT(bp_span_set_metric_family(c, "http_client", "http_client_name=\"api\",http_method=\"get\"",
                                      "http_response_code=\"404\"", 0), BP_OK); /* (a 4xx: false) */
  /* what the text format would not take is refused */
  CHECK_INT(bp_span_set_metric_family(c, "9bad", "", NULL, -1), BP_EINVAL);
  CHECK_INT(bp_span_set_metric_family(c, "ok", "a=\"unterminated", NULL, -1), BP_EINVAL);
  CHECK_INT(bp_span_set_metric_family(c, "ok", "a=\"x\"b=\"y\"", NULL, -1), BP_EINVAL);
  CHECK_INT(bp_span_set_metric_family(c, "ok", "a=\"bad \\q\"", NULL, -1), BP_EINVAL);
  CHECK_INT(bp_span_set_metric_family(c, "ok", "a=\"x\",", NULL, -1), BP_EINVAL);
  CHECK_INT(bp_span_set_metric_family(c, "ok", "", "-=\"x\"", -1), BP_EINVAL);
  CHECK_INT(bp_span_set_metric_family(s, "ok", "", NULL, -1), BP_EINVAL); /* not a client span */
  bp_span_start(c);
  bp_span_finish(c, NULL);
  bp_span_unref(c);
  c = bp_span_make_child(s, "local", 1, "comp", NULL); /* local spans are not counted */
  bp_span_start(c);
  bp_span_finish(c, NULL);
  bp_span_unref(c);
  bp_span_finish(s, NULL);
  bp_span_unref(s);
  bp_prom_set_runtime(3, 1, 4096, 0.25);
  CHECK_INT(bp_prom_set_pool(0, "db", 10, 2, 1), BP_OK);
  CHECK_INT(bp_prom_set_pool(32, "no", 1, 1, 1), BP_EINVAL);
  /* a library's pools: Baseplate.py's gauges (redis: idle is the free slots, active the open connections) */
  CHECK_INT(bp_prom_set_pool(1, "cache", 10, 3, 2), BP_OK);
  CHECK_INT(bp_prom_set_pool_family(1, "redis", 5, 2), BP_OK);
  CHECK_INT(bp_prom_set_pool(2, "main", 4, 1, 0), BP_OK);
  CHECK_INT(bp_prom_set_pool_family(2, "sql", 3, 2), BP_OK);
  CHECK_INT(bp_prom_set_pool(3, "users", 8, 2, 0), BP_OK);
  CHECK_INT(bp_prom_set_pool_family(3, "thrift", 2, 0), BP_OK);
  CHECK_INT(bp_prom_set_pool(4, "odd", 1, 0, 0), BP_OK);
  CHECK_INT(bp_prom_set_pool_family(4, "nonesuch", 1, 1), BP_OK); /* (an unknown library: generic) */
  CHECK_INT(bp_prom_set_pool_family(32, "redis", 1, 1), BP_EINVAL);
  t = scrape();
  HAS(t, "# TYPE baseplate_server_latency_seconds histogram\n");
  HAS(t, "baseplate_server_requests_total{endpoint=\"work\",success=\"true\",exception_type=\"\"} 3\n");
  HAS(t, "baseplate_server_requests_total{endpoint=\"work\",success=\"false\",exception_type=\"ValueError\"} 1\n");
  HAS(t, "baseplate_server_latency_seconds_bucket{endpoint=\"work\",success=\"true\",le=\"+Inf\"} 3\n");
  HAS(t, "baseplate_server_latency_seconds_count{endpoint=\"work\",success=\"true\"} 3\n");
  HAS(t, "baseplate_server_latency_seconds_bucket{endpoint=\"work\",success=\"true\",le=\"0.0001\"} 3\n");
  HAS(t, "endpoint=\"we\\\"ird\\\\name\\n\"");
  HAS(t, "baseplate_client_requests_total{client=\"redis\",endpoint=\"get\",success=\"true\"} 1\n");
  HAS(t, "# TYPE redis_client_latency_seconds histogram\n");
  HAS(t, "redis_client_latency_seconds_count{redis_client_name=\"cache\",redis_command=\"get\",redis_success=\"false\"} 1\n");
  HAS(t, "# TYPE redis_client_requests_total counter\n");
  HAS(t, "redis_client_requests_total{redis_client_name=\"cache\",redis_command=\"get\",redis_success=\"false\"} 1\n");
  HAS(t, "http_client_latency_seconds_bucket{http_client_name=\"api\",http_method=\"get\",http_success=\"false\",le=\"+Inf\"} 1\n");
  HAS(t, "http_client_requests_total{http_client_name=\"api\",http_method=\"get\",http_success=\"false\",http_response_code=\"404\"} 1\n");
  CHECK(strstr(t, "client=\"cache\"") == NULL); /* not in the generic family as well */
  CHECK(strstr(t, "comp") == NULL && strstr(t, "\"local\"") == NULL);
  HAS(t, "baseplate_open_connections{worker=\"1\"} 3\n");
  HAS(t, "baseplate_loop_lag_seconds{worker=\"1\"} 0.25\n");
  HAS(t, "baseplate_client_pool_max_size{pool=\"db\",worker=\"1\"} 10\n");
  HAS(t, "baseplate_client_pool_waiters{pool=\"db\",worker=\"1\"} 1\n");
  HAS(t, "# TYPE redis_client_pool_max_size gauge\n");
  HAS(t, "redis_client_pool_max_size{redis_pool=\"cache\",worker=\"1\"} 10\n");
  HAS(t, "redis_client_pool_active_connections{redis_pool=\"cache\",worker=\"1\"} 5\n");
  HAS(t, "redis_client_pool_idle_connections{redis_pool=\"cache\",worker=\"1\"} 7\n");
  HAS(t, "sql_client_pool_active_connections{sql_client_name=\"main\",worker=\"1\"} 1\n");
  HAS(t, "sql_client_pool_idle_connections{sql_client_name=\"main\",worker=\"1\"} 2\n");
  HAS(t, "thrift_client_pool_max_size{thrift_pool=\"users\",worker=\"1\"} 8\n");
  HAS(t, "thrift_client_pool_active_connections{thrift_pool=\"users\",worker=\"1\"} 2\n");
  CHECK(strstr(t, "thrift_client_pool_idle_connections") == NULL);
  HAS(t, "baseplate_client_pool_max_size{pool=\"odd\",worker=\"1\"} 1\n");
  CHECK(strstr(t, "baseplate_client_pool_max_size{pool=\"cache\"") == NULL);
  HAS(t, "baseplate_client_pool_waiters{pool=\"cache\",worker=\"1\"} 2\n"); /* (every pool's) */
  HAS(t, "baseplate_prometheus_overflow_total 0\n");
  bp_prom_set_npools(0);
  CHECK(strstr(scrape(), "pool=\"db\"") == NULL);
  bp_baseplate_free(bp);
  bp_prom_close();
  CHECK(bp_prom_scrape(&(size_t){0}) == NULL);
  CHECK_INT(bp_prom_fd(), -1);
}

static void test_overflow(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  char name[16];
  const char *t;
  int i;
  CHECK_INT(bp_prom_init(1, 16, err, sizeof err), BP_OK); /* 8 label sets, 8 kept for overflow */
  CHECK_INT(bp_prom_observe(bp), BP_OK);
  for (i = 0; i < 12; i++) {
    snprintf(name, sizeof name, "r%d", i);
    server_span(bp, name, NULL);
  }
  server_span(bp, "r0", NULL);
  server_span(bp, "r11", NULL);
  t = scrape();
  HAS(t, "baseplate_server_requests_total{endpoint=\"r0\",success=\"true\",exception_type=\"\"} 2\n");
  HAS(t, "baseplate_server_requests_total{endpoint=\"r7\",success=\"true\",exception_type=\"\"} 1\n");
  HAS(t, "baseplate_server_requests_total{endpoint=\"_overflow\",success=\"true\",exception_type=\"\"} 5\n");
  HAS(t, "baseplate_prometheus_overflow_total 5\n");
  CHECK(strstr(t, "\"r8\"") == NULL);
  bp_baseplate_free(bp);
  bp_prom_close();
}

/* A supervisor's region with two slots; this process plays the workers. */
static void test_retire(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  const char *t, *text;
  size_t len;
  uint64_t seq;
  int fd, i;
  CHECK_INT(bp_prom_init(2, 32, err, sizeof err), BP_OK);
  CHECK_INT(bp_prom_slot(), 0); /* a supervisor records nothing */
  fd = bp_prom_fd();
  CHECK(fd >= 0);
  CHECK_INT(bp_prom_attach(fd, 3, err, sizeof err), BP_EINVAL);
  CHECK(strstr(err, "out of range") != NULL);
  CHECK_INT(bp_prom_attach(-1, 1, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_prom_observe(bp), BP_OK);
  CHECK_INT(bp_prom_attach(fd, 1, err, sizeof err), BP_OK);
  for (i = 0; i < 5; i++) server_span(bp, "a", NULL);
  bp_prom_set_runtime(1, 1, 1, 1);
  CHECK_INT(bp_prom_attach(fd, 2, err, sizeof err), BP_OK);
  server_span(bp, "a", NULL);
  server_span(bp, "b", NULL);
  t = scrape();
  HAS(t, "endpoint=\"a\",success=\"true\",exception_type=\"\"} 6\n");
  HAS(t, "baseplate_lua_memory_bytes{worker=\"1\"} 1\n");
  /* worker 1 dies: its counts are kept, its gauges go */
  CHECK_INT(bp_prom_retire(1), BP_OK);
  CHECK_INT(bp_prom_retire(3), BP_EINVAL);
  t = scrape();
  HAS(t, "endpoint=\"a\",success=\"true\",exception_type=\"\"} 6\n");
  CHECK(strstr(t, "{worker=\"1\"}") == NULL);
  HAS(t, "baseplate_workers_retired_total 1\n");
  /* the next worker in slot 1 starts from nothing and adds to the totals */
  CHECK_INT(bp_prom_attach(fd, 1, err, sizeof err), BP_OK);
  server_span(bp, "a", NULL);
  server_span(bp, "c", "Boom");
  t = scrape();
  HAS(t, "endpoint=\"a\",success=\"true\",exception_type=\"\"} 7\n");
  HAS(t, "endpoint=\"b\",success=\"true\",exception_type=\"\"} 1\n");
  HAS(t, "endpoint=\"c\",success=\"false\",exception_type=\"Boom\"} 1\n");
  HAS(t, "baseplate_server_latency_seconds_count{endpoint=\"a\",success=\"true\"} 7\n");

  /* introspection: a request number the worker answers in its slot */
  CHECK_INT(bp_prom_introspect_pending(), 0);
  seq = bp_prom_introspect_request(1);
  CHECK(seq > 0);
  CHECK_INT(bp_prom_introspect_pending(), 1);
  CHECK(bp_prom_introspect_answer(1, &text, &len) < seq);
  CHECK_INT(bp_prom_introspect_publish("{\"worker\":1}", 12), BP_OK);
  CHECK_INT(bp_prom_introspect_pending(), 0);
  CHECK(bp_prom_introspect_answer(1, &text, &len) == seq);
  CHECK_INT(len, 12);
  CHECK(memcmp(text, "{\"worker\":1}", 12) == 0);
  CHECK_INT(bp_prom_introspect_request(0), 0);
  bp_baseplate_free(bp);
  bp_prom_close();
}

static void test_bad_sizes(void) {
  CHECK_INT(bp_prom_init(0, 100, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_prom_init(1025, 100, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_prom_init(1, 15, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_prom_slot(), 0);
  bp_prom_set_runtime(1, 2, 3, 4); /* no region: nothing */
  bp_prom_close();
}

int main(void) {
  RUN(test_record_and_scrape);
  RUN(test_overflow);
  RUN(test_retire);
  RUN(test_bad_sizes);
  return bp_test_summary();
}
