/* The tracing observer (src/tracing.c): sampling decisions, and the
 * in-memory queue's batches (order, size limit, bound). The JSON of each
 * span is checked against the schema end to end by test-tracing.sh. */
#include "baseplate/span.h"
#include "span_internal.h"
#include "runtime.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "bp-test.h"

static char err[256];

static bp_tracer_t *tracer(bp_baseplate_t *bp, double rate, int max) {
  bp_tracing_options_t o = {.service_name = "svc", .sample_rate = rate, .collect = 1,
                            .max_span_queue_size = max, .batch_interval = 0.5};
  bp_tracer_t *t = bp_baseplate_add_tracing_observer(bp, &o, err, sizeof err);
  CHECK(t != NULL);
  return t;
}

static void one_span(bp_baseplate_t *bp, const char *name, const bp_trace_info_t *ti, int *sampled) {
  bp_span_t *s = bp_span_new_server(bp, name, ti);
  int st;
  bp_span_t *c;
  bp_span_start(s);
  c = bp_span_make_child(s, "child.call", 0, NULL, &st);
  if (sampled) sampled[0] = bp_span_trace(s)->sampled, sampled[1] = bp_span_trace(c)->sampled;
  bp_span_unref(c);
  bp_span_finish(s, NULL);
  bp_span_unref(s);
}

static void done(bp_baseplate_t *bp) {
  bp_baseplate_free(bp);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* the timer's close */
}

static void test_sampling(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  bp_tracer_t *t = tracer(bp, 0.0, 100);
  bp_trace_info_t ti;
  int sampled[2];
  one_span(bp, "a", NULL, sampled);
  CHECK_INT(sampled[0], 0); /* 0%: not sampled */
  CHECK_INT(sampled[1], 0);
  bp_trace_info_from_upstream(&ti, "5", NULL, "6", "1", NULL, err, sizeof err);
  one_span(bp, "b", &ti, sampled);
  CHECK_INT(sampled[0], 1); /* upstream's decision wins */
  CHECK_INT(sampled[1], 1); /* the child inherits it */
  bp_trace_info_from_upstream(&ti, "5", NULL, "6", "0", "1", err, sizeof err);
  one_span(bp, "c", &ti, sampled);
  CHECK_INT(sampled[0], 1); /* debug forces it */
  CHECK_INT(bp_tracing_pending(t), 2); /* b and c (their children never finish) */
  done(bp);

  bp = bp_baseplate_new("svc");
  t = tracer(bp, 1.0, 100);
  bp_trace_info_from_upstream(&ti, "5", NULL, "6", "0", NULL, err, sizeof err);
  one_span(bp, "d", &ti, sampled);
  CHECK_INT(sampled[0], 0); /* 100%, but upstream said no */
  one_span(bp, "e", NULL, sampled);
  CHECK_INT(sampled[0], 1);
  done(bp);

  bp = bp_baseplate_new("svc");
  t = tracer(bp, 0.25, 100000);
  for (int i = 0; i < 4000; i++) one_span(bp, "f", NULL, NULL);
  /* each sampled request gives 2 spans (the unstarted child finishes unstarted: not sent) */
  CHECK(bp_tracing_pending(t) > 800 && bp_tracing_pending(t) < 1200);
  done(bp);
}

static void test_batches(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  bp_tracer_t *t = tracer(bp, 1.0, 100000);
  char name[32], want[32];
  int next_in = 0, next_out = 0, n, total = 0, batches = 0;
  size_t len;
  const char *p;
  for (; next_in < 300; next_in++) {
    snprintf(name, sizeof name, "span%d", next_in);
    one_span(bp, name, NULL, NULL);
  }
  CHECK_INT(bp_tracing_pending(t), 300);
  /* take in small batches while more spans come, all in order */
  while ((p = bp_tracing_take(t, 4000, &n, &len)) && n > 0) {
    batches++;
    CHECK(p[0] == '[' && p[len - 1] == ']');
    CHECK(len <= 4000);
    for (const char *q = p; (q = strstr(q, "\"name\":\"span")); q += 12) {
      snprintf(want, sizeof want, "\"name\":\"span%d\"", next_out++);
      if (strncmp(q, want, strlen(want)) != 0) {
        CHECK(!"spans in order");
        break;
      }
    }
    total += n;
    if (next_in < 600) {
      for (int k = 0; k < 7 && next_in < 600; k++, next_in++) {
        snprintf(name, sizeof name, "span%d", next_in);
        one_span(bp, name, NULL, NULL);
      }
    }
  }
  CHECK_INT(total, 600);
  CHECK_INT(next_out, 600);
  CHECK(batches > 20);
  CHECK_INT(bp_tracing_pending(t), 0);
  CHECK_INT(bp_tracing_dropped(t), 0);
  done(bp);
}

static void test_full(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  bp_tracer_t *t = tracer(bp, 1.0, 5);
  int n;
  size_t len;
  for (int i = 0; i < 8; i++) one_span(bp, "x", NULL, NULL);
  CHECK_INT(bp_tracing_pending(t), 5);
  CHECK_INT(bp_tracing_dropped(t), 3);
  CHECK(bp_tracing_take(t, 1 << 20, &n, &len) != NULL);
  CHECK_INT(n, 5);
  one_span(bp, "x", NULL, NULL);
  CHECK_INT(bp_tracing_pending(t), 1); /* room again */
  done(bp);
}

static void test_options(void) {
  bp_baseplate_t *bp = bp_baseplate_new("svc");
  bp_tracing_options_t o = {.service_name = "svc", .sample_rate = 1.5};
  CHECK(bp_baseplate_add_tracing_observer(bp, &o, err, sizeof err) == NULL);
  CHECK_STR(err, "tracing.sample_rate: must be from 0% to 100%");
  o.sample_rate = 0.1;
  o.service_name = "";
  CHECK(bp_baseplate_add_tracing_observer(bp, &o, err, sizeof err) == NULL);
  CHECK_STR(err, "tracing.service_name: must not be empty");
  o.service_name = "svc";
  o.queue_name = "a/b";
  CHECK(bp_baseplate_add_tracing_observer(bp, &o, err, sizeof err) == NULL);
  CHECK_STR(err, "tracing.queue_name: invalid queue name \"a/b\"");
  done(bp);
}

static void test_traceparent(void) {
  bp_trace_info_t ti;
  char out[56];
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-00000000000000000000000000000064-00f067aa0ba902b8-01", 55), BP_OK);
  CHECK(ti.trace_id == 100 && ti.parent_id == 67667974448284344ULL && ti.sampled == 1 && ti.span_id != 0);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-00", 55), BP_OK);
  /* Baseplate's trace ID is the low half; the high half rides along and
   * goes on in the traceparent sent downstream, unchanged */
  CHECK(ti.trace_id == 0xa3ce929d0e0e4736ULL && ti.trace_id_high == 0x4bf92f3577b34da6ULL &&
        ti.sampled == 0);
  ti.span_id = 0x00f067aa0ba902b8ULL;
  bp_trace_info_to_traceparent(&ti, out);
  CHECK_STR(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-00");
  /* a later version may add fields; version 00 may not */
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "01-00000000000000000000000000000064-00f067aa0ba902b8-01-xyz", 59), BP_OK);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-00000000000000000000000000000064-00f067aa0ba902b8-01-xyz", 59), BP_EINVAL);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "ff-00000000000000000000000000000064-00f067aa0ba902b8-01", 55), BP_EINVAL);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-0000000000000000000000000000006A-00f067aa0ba902b8-01", 55), BP_EINVAL);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-00000000000000000000000000000000-00f067aa0ba902b8-01", 55), BP_EINVAL);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-00000000000000000000000000000064-0000000000000000-01", 55), BP_EINVAL);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00-00000000000000000000000000000064-00f067aa0ba902b8-0", 54), BP_EINVAL);
  CHECK_INT(bp_trace_info_from_traceparent(&ti, "00_00000000000000000000000000000064-00f067aa0ba902b8-01", 55), BP_EINVAL);
  bp_trace_info_new(&ti);
  CHECK(ti.trace_id_high == 0);
  ti.trace_id = 67667974448284344ULL;
  ti.span_id = 18446744073709551615ULL;
  ti.sampled = 1;
  CHECK_INT(bp_trace_info_to_traceparent(&ti, out), 55);
  CHECK_STR(out, "00-000000000000000000f067aa0ba902b8-ffffffffffffffff-01");
  ti.sampled = -1;
  bp_trace_info_to_traceparent(&ti, out);
  CHECK_STR(out + 52, "-00");
}

int main(void) {
  RUN(test_sampling);
  RUN(test_batches);
  RUN(test_full);
  RUN(test_options);
  RUN(test_traceparent);
  bp__span_pool_drain();
  return bp_test_summary();
}
