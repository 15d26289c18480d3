/* The PostgreSQL connection's C side against the real server of
 * tests/services.sh (BP_TEST_PG_URL), without Lua: an operation is over when
 * bp_pg_busy() says so (nobody is there to be woken). Covers the errors at
 * once, results, prepared statements, a connect timeout against a server
 * that never answers, closing a busy connection, and the loop shutting down
 * under open and busy connections that are freed afterwards. */
#include "bp-test.h"
#include "runtime.h"

#include <baseplate/postgres.h>
#include <uv.h>

static const char *url;
static char err[512];

static double now(void) { return (double)uv_hrtime() / 1e9; }

/* Run the loop until c is no longer busy (or 10 s passed). */
static void wait_idle(bp_pg_conn_t *c) {
  double t0 = now();
  while (bp_pg_busy(c) && now() - t0 < 10) uv_run(bp_loop(), UV_RUN_ONCE);
}

static bp_pg_conn_t *connect_to(const char *conninfo, double connect_timeout) {
  bp_pg_conn_t *c = NULL;
  int rc = bp_pg_connect(conninfo, connect_timeout, 0, 1, &c, err, sizeof err);
  CHECK_INT(rc, BP_AGAIN);
  CHECK(c != NULL);
  wait_idle(c);
  return c;
}

static void test_errors_at_once(void) {
  bp_pg_conn_t *c = (bp_pg_conn_t *)1;
  CHECK_INT(bp_pg_connect(NULL, 1, 0, 1, &c, err, sizeof err), BP_EINVAL);
  CHECK(c == NULL);
  CHECK_INT(bp_pg_connect("nonsense=1", 1, 0, 1, &c, err, sizeof err), BP_EINVAL);
  CHECK_CONTAINS(err, "invalid connection string");
  CHECK_INT(bp_pg_connect("postgresql://x@127.0.0.1/db", -1, 0, 1, &c, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_pg_connect("postgresql://x@127.0.0.1/db", 1, NAN, 1, &c, err, sizeof err),
            BP_EINVAL);
  CHECK_INT(bp_pg_connect("host=a.example,b.example dbname=x", 1, 0, 1, &c, err, sizeof err),
            BP_EINVAL);
  CHECK_CONTAINS(err, "a.example");
  CHECK(c == NULL);
  CHECK_INT(bp_pg_query(NULL, "SELECT 1", 0, NULL, 0, 1), BP_EINVAL);
  CHECK(bp_pg_broken(NULL));
  CHECK_INT(bp_pg_busy(NULL), 0);
  CHECK_STR(bp_pg_error(NULL), "");
  CHECK(bp_pg_take_result(NULL) == NULL);
  bp_pg_close(NULL);
  bp_pg_result_free(NULL);
  CHECK_INT(bp_pg_result_ok(NULL), 0);
  CHECK_STR(bp_pg_result_sqlstate(NULL), "");
}

static void test_statements(void) {
  bp_pg_conn_t *c = connect_to(url, 5);
  const char *values[2] = {"41", NULL};
  bp_pg_result_t *r;
  size_t len = 99;
  CHECK_INT(bp_pg_broken(c), 0);
  CHECK_STR(bp_pg_error(c), "");

  CHECK_INT(bp_pg_query(c, "SELECT $1::int + 1 AS n, $2::text AS z", 2, values, 5, 2), BP_AGAIN);
  CHECK_INT(bp_pg_busy(c), 1);
  CHECK_INT(bp_pg_query(c, "SELECT 1", 0, NULL, 0, 3), BP_EINVAL); /* busy */
  CHECK_CONTAINS(bp_pg_error(c), "busy");
  CHECK(bp_pg_take_result(c) == NULL);
  wait_idle(c);
  r = bp_pg_take_result(c);
  CHECK(r != NULL);
  CHECK(bp_pg_take_result(c) == NULL); /* handed over */
  CHECK_INT(bp_pg_result_ok(r), 1);
  CHECK_INT(bp_pg_result_rows(r), 1);
  CHECK_INT(bp_pg_result_cols(r), 2);
  CHECK_STR(bp_pg_result_col_name(r, 0), "n");
  CHECK_INT(bp_pg_result_col_type(r, 0), 23);
  CHECK_STR(bp_pg_result_value(r, 0, 0, &len), "42");
  CHECK_INT(len, 2);
  CHECK(bp_pg_result_value(r, 0, 1, &len) == NULL); /* NULL */
  CHECK_INT(len, 0);
  CHECK(bp_pg_result_value(r, 1, 0, NULL) == NULL);
  CHECK(bp_pg_result_col_name(r, 2) == NULL);
  CHECK_INT(bp_pg_result_affected(r), 1);
  CHECK_STR(bp_pg_result_error(r), "");
  bp_pg_result_free(r);

  CHECK_INT(bp_pg_query(c, "SELEKT 1", 0, NULL, 0, 4), BP_AGAIN);
  wait_idle(c);
  r = bp_pg_take_result(c);
  CHECK_INT(bp_pg_result_ok(r), 0);
  CHECK_STR(bp_pg_result_sqlstate(r), "42601");
  CHECK_CONTAINS(bp_pg_result_error(r), "syntax error");
  CHECK_STR(bp_pg_result_error_field(r, 'V'), "ERROR");
  bp_pg_result_free(r);
  CHECK_INT(bp_pg_broken(c), 0);

  CHECK_INT(bp_pg_prepare(c, "c_add", "SELECT $1::int + $2::int AS s", 5, 5), BP_AGAIN);
  wait_idle(c);
  r = bp_pg_take_result(c);
  CHECK_INT(bp_pg_result_ok(r), 1);
  bp_pg_result_free(r);
  values[0] = "2";
  values[1] = "3";
  CHECK_INT(bp_pg_query_prepared(c, "c_add", 2, values, 5, 6), BP_AGAIN);
  wait_idle(c);
  r = bp_pg_take_result(c);
  CHECK_STR(bp_pg_result_value(r, 0, 0, NULL), "5");
  bp_pg_result_free(r);
  CHECK_INT(bp_pg_query_prepared(c, "c_nope", 0, NULL, 5, 7), BP_AGAIN);
  wait_idle(c);
  r = bp_pg_take_result(c);
  CHECK_STR(bp_pg_result_sqlstate(r), "26000");
  bp_pg_close(c); /* the result outlives its connection */
  CHECK_INT(bp_pg_result_ok(r), 0);
  bp_pg_result_free(r);
  uv_run(bp_loop(), UV_RUN_DEFAULT); /* nothing left: returns */
}

static void test_refused_and_names(void) {
  char conninfo[256];
  const char *port = strrchr(url, ':');
  bp_pg_conn_t *c = connect_to("postgresql://baseplate@127.0.0.1:1/baseplate", 5);
  CHECK_INT(bp_pg_broken(c), 1);
  CHECK_CONTAINS(bp_pg_error(c), "refused");
  CHECK_INT(bp_pg_query(c, "SELECT 1", 0, NULL, 0, 2), BP_EINVAL);
  bp_pg_close(c);

  c = connect_to("postgresql://baseplate@no-such-host.invalid/baseplate", 5);
  CHECK_INT(bp_pg_broken(c), 1);
  CHECK_CONTAINS(bp_pg_error(c), "no-such-host.invalid");
  bp_pg_close(c);

  /* a name that resolves: tried address by address */
  snprintf(conninfo, sizeof conninfo, "postgresql://baseplate@localhost%s", port);
  c = connect_to(conninfo, 5);
  CHECK_INT(bp_pg_broken(c), 0);
  bp_pg_close(c);
  uv_run(bp_loop(), UV_RUN_DEFAULT);
}

/* A server that accepts and never says a word. */
static uv_tcp_t silent;
static uv_tcp_t *accepted[4];
static int naccepted;

static void on_silent_conn(uv_stream_t *server, int status) {
  uv_tcp_t *t = malloc(sizeof *t);
  uv_tcp_init(bp_loop(), t);
  if (status == 0 && uv_accept(server, (uv_stream_t *)t) == 0 && naccepted < 4) {
    accepted[naccepted++] = t;
    return;
  }
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void test_timeouts_and_close(void) {
  struct sockaddr_in sa;
  int namelen = sizeof sa;
  char conninfo[128];
  bp_pg_conn_t *c;
  double t0;
  uv_tcp_init(bp_loop(), &silent);
  uv_ip4_addr("127.0.0.1", 0, &sa);
  CHECK_INT(uv_tcp_bind(&silent, (struct sockaddr *)&sa, 0), 0);
  CHECK_INT(uv_listen((uv_stream_t *)&silent, 8, on_silent_conn), 0);
  uv_tcp_getsockname(&silent, (struct sockaddr *)&sa, &namelen);
  snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable",
           ntohs(sa.sin_port));

  t0 = now();
  c = connect_to(conninfo, 0.2);
  CHECK(now() - t0 >= 0.19 && now() - t0 < 2);
  CHECK_INT(bp_pg_broken(c), 1);
  CHECK_CONTAINS(bp_pg_error(c), "connect timed out after 0.2s");
  bp_pg_close(c);

  /* closed while connecting: the loop lets go at once */
  CHECK_INT(bp_pg_connect(conninfo, 0, 0, 1, &c, err, sizeof err), BP_AGAIN);
  uv_run(bp_loop(), UV_RUN_NOWAIT);
  bp_pg_close(c);
  uv_close((uv_handle_t *)&silent, NULL);
  for (int i = 0; i < naccepted; i++) uv_close((uv_handle_t *)accepted[i], (uv_close_cb)free);
  naccepted = 0;
  t0 = now();
  uv_run(bp_loop(), UV_RUN_DEFAULT);
  CHECK(now() - t0 < 1);

  /* closed during a statement */
  c = connect_to(url, 5);
  CHECK_INT(bp_pg_query(c, "SELECT pg_sleep(5)", 0, NULL, 0, 2), BP_AGAIN);
  uv_run(bp_loop(), UV_RUN_NOWAIT);
  bp_pg_close(c);
  t0 = now();
  uv_run(bp_loop(), UV_RUN_DEFAULT);
  CHECK(now() - t0 < 1);
}

static void test_statement_timeouts(void) {
  bp_pg_conn_t *c = NULL;
  bp_pg_result_t *r;
  double t0;
  CHECK_INT(bp_pg_connect(url, 5, 0.1, 1, &c, err, sizeof err), BP_AGAIN);
  wait_idle(c);
  /* the server's limit: an error result, the connection stays */
  CHECK_INT(bp_pg_query(c, "SELECT pg_sleep(2)", 0, NULL, 0, 2), BP_AGAIN);
  wait_idle(c);
  r = bp_pg_take_result(c);
  CHECK_STR(bp_pg_result_sqlstate(r), "57014");
  bp_pg_result_free(r);
  CHECK_INT(bp_pg_broken(c), 0);
  /* the client's limit (here below the server's): the connection goes */
  CHECK_INT(bp_pg_query(c, "SET statement_timeout = 0", 0, NULL, 0, 3), BP_AGAIN);
  wait_idle(c);
  bp_pg_result_free(bp_pg_take_result(c));
  t0 = now();
  CHECK_INT(bp_pg_query(c, "SELECT pg_sleep(2)", 0, NULL, 0.15, 4), BP_AGAIN);
  wait_idle(c);
  CHECK(now() - t0 < 1);
  CHECK_INT(bp_pg_broken(c), 1);
  CHECK_CONTAINS(bp_pg_error(c), "timed out after 0.15s waiting for the result");
  CHECK(bp_pg_take_result(c) == NULL);
  bp_pg_close(c);
  uv_run(bp_loop(), UV_RUN_DEFAULT);
}

/* bp_runtime_close's order: the loop goes first, the owners free later. */
static void test_loop_shutdown(void) {
  char conninfo[256];
  bp_pg_conn_t *idle = connect_to(url, 5), *busy = connect_to(url, 5), *resolving = NULL;
  snprintf(conninfo, sizeof conninfo, "postgresql://baseplate@localhost%s", strrchr(url, ':'));
  CHECK_INT(bp_pg_query(busy, "SELECT pg_sleep(5)", 0, NULL, 10, 2), BP_AGAIN);
  CHECK_INT(bp_pg_connect(conninfo, 5, 0, 3, &resolving, err, sizeof err), BP_AGAIN);
  uv_run(bp_loop(), UV_RUN_NOWAIT);
  bp__loop_shutdown();
  CHECK_INT(bp_pg_busy(busy), 0);
  CHECK_INT(bp_pg_broken(idle), 1);
  CHECK_INT(bp_pg_broken(busy), 1);
  CHECK_INT(bp_pg_broken(resolving), 1);
  CHECK_CONTAINS(bp_pg_error(idle), "shut down");
  bp_pg_close(idle);
  bp_pg_close(busy);
  bp_pg_close(resolving);
}

int main(void) {
  url = getenv("BP_TEST_PG_URL");
  if (!url) {
    fprintf(stderr, "BP_TEST_PG_URL is not set (ctest sets it)\n");
    return 1;
  }
  RUN(test_errors_at_once);
  RUN(test_statements);
  RUN(test_refused_and_names);
  RUN(test_timeouts_and_close);
  RUN(test_statement_timeouts);
  RUN(test_loop_shutdown);
  return bp_test_summary();
}
