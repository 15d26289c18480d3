/* The logging facility: levels, logger hierarchy, the JSON and text formats. */
#include <baseplate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp-test.h"

static char out[8192];

/* Run fn with stdout redirected into `out`. */
static void capture(void (*fn)(void)) { bp_test_capture(fn, out, sizeof out); }

/* Text lines begin with the local time, to the millisecond. */
static int has_time(const char *line) {
  int y, mo, d, h, mi, sec, ms, n = 0;
  return sscanf(line, "%4d-%2d-%2d %2d:%2d:%2d,%3d %n", &y, &mo, &d, &h, &mi, &sec, &ms, &n) == 7 &&
         n == 24 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && sec <= 60;
}

static void write_json(void) {
  bp_log_set_format(BP_LOG_FORMAT_JSON);
  bp_log(BP_LOG_INFO, "baseplate.test", "hello %s %d", "world", 42);
  bp_log(BP_LOG_DEBUG, "baseplate.test", "hidden at INFO");
}

static void test_json_format(void) {
  char want[256];
  capture(write_json);
  snprintf(want, sizeof want,
           "{\"message\": \"hello world 42\", \"level\": \"INFO\", \"name\": \"baseplate.test\", "
           "\"process\": %d}\n",
           (int)getpid());
  CHECK_STR(out, want);
}

static void write_escapes(void) {
  const char msg[] = "quote\" back\\ nl\n tab\t ctl\x01 utf8 \xc3\xa9";
  bp_log_set_format(BP_LOG_FORMAT_JSON);
  bp_log_set_trace_id("1234567890");
  bp_log_write(BP_LOG_ERROR, "x", 1, msg, sizeof msg - 1, "mod", 7, "trace\nback", "\"k\": 1");
  bp_log_set_trace_id(NULL);
}

static void test_json_escapes_and_fields(void) {
  char want[512];
  capture(write_escapes);
  snprintf(want, sizeof want,
           "{\"message\": \"quote\\\" back\\\\ nl\\n tab\\t ctl\\u0001 utf8 \xc3\xa9\", \"level\": "
           "\"ERROR\", \"name\": \"x\", \"process\": %d, \"traceID\": \"1234567890\", \"module\": "
           "\"mod\", \"lineno\": 7, \"exc_info\": \"trace\\nback\", \"k\": 1}\n",
           (int)getpid());
  CHECK_STR(out, want);
}

static void write_text(void) {
  bp_log_set_format(BP_LOG_FORMAT_TEXT);
  bp_log(BP_LOG_WARNING, NULL, "careful");
  bp_log(BP_LOG_ERROR, "y", "bad");
}

static void test_text_format(void) {
  char *second;
  capture(write_text);
  second = strchr(out, '\n');
  CHECK(has_time(out));
  CHECK(second && has_time(second + 1));
  bp_test_strip_log_times(out);
  CHECK_STR(out, "WARNING  [root] careful\nERROR    [y] bad\n");
}

static void test_levels(void) {
  CHECK_INT(bp_log_level_from_name("debug"), BP_LOG_DEBUG);
  CHECK_INT(bp_log_level_from_name("Warning"), BP_LOG_WARNING);
  CHECK_INT(bp_log_level_from_name("WARN"), BP_LOG_WARNING);
  CHECK_INT(bp_log_level_from_name("loud"), BP_EINVAL);
  CHECK_STR(bp_log_level_name(BP_LOG_CRITICAL), "CRITICAL");
  CHECK_STR(bp_log_level_name(BP_LOG_INFO), "INFO");

  bp_log_set_level(NULL, BP_LOG_INFO);
  CHECK(!bp_log_enabled("a.b", BP_LOG_DEBUG));
  CHECK(bp_log_enabled("a.b", BP_LOG_INFO));
  bp_log_set_level("a", BP_LOG_ERROR);
  bp_log_set_level("a.b.c", BP_LOG_DEBUG);
  CHECK_INT(bp_log_get_level("a"), BP_LOG_ERROR);
  CHECK_INT(bp_log_get_level("a.b"), BP_LOG_ERROR);     /* inherits from a */
  CHECK_INT(bp_log_get_level("a.b.c.d"), BP_LOG_DEBUG); /* longest prefix */
  CHECK_INT(bp_log_get_level("ab"), BP_LOG_INFO);       /* not a child of a */
  CHECK(bp_log_enabled("a.b.c", BP_LOG_DEBUG));
  CHECK(!bp_log_enabled("a.x", BP_LOG_WARNING));
  bp_log_set_level("a", BP_LOG_INFO); /* replaces the level */
  CHECK_INT(bp_log_get_level("a.x"), BP_LOG_INFO);
}

static void write_long(void) {
  char big[5000];
  bp_log_set_format(BP_LOG_FORMAT_TEXT);
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  bp_log(BP_LOG_INFO, NULL, "%s", big);
}

static void test_long_message(void) {
  capture(write_long);
  CHECK_INT(strlen(out), 24 + 9 + 7 + 4999 + 1); /* time, level, "[root] ", message, \n */
}

/* A line from another thread (librdkafka's, the thread pool's) reads none
 * of the loop thread's state: no trace ID of the loop's current span, and
 * the capture buffer the loop's thread owns is left alone. */
static void *log_from_thread(void *arg) {
  (void)arg;
  bp_log(BP_LOG_WARNING, "baseplate.thread", "from another thread");
  return NULL;
}

static void write_from_thread(void) {
  pthread_t t;
  size_t len;
  bp_log_set_format(BP_LOG_FORMAT_JSON);
  bp_log_set_trace_id("1234567890");
  bp_log_capture(1, 0);
  if (pthread_create(&t, NULL, log_from_thread, NULL) == 0) pthread_join(t, NULL);
  bp_log_captured(&len);
  bp_log(BP_LOG_WARNING, "baseplate.thread", "captured %zu", len);
  bp_log_capture(0, 0);
  bp_log_set_trace_id(NULL);
}

static void test_other_thread(void) {
  char want[512];
  capture(write_from_thread);
  snprintf(want, sizeof want,
           "{\"message\": \"from another thread\", \"level\": \"WARNING\", \"name\": "
           "\"baseplate.thread\", \"process\": %d}\n"
           "{\"message\": \"captured 0\", \"level\": \"WARNING\", \"name\": "
           "\"baseplate.thread\", \"process\": %d, \"traceID\": \"1234567890\"}\n",
           (int)getpid(), (int)getpid());
  CHECK_STR(out, want);
}

int main(void) {
  RUN(test_json_format);
  RUN(test_json_escapes_and_fields);
  RUN(test_text_format);
  RUN(test_levels);
  RUN(test_long_message);
  RUN(test_other_thread);
  return bp_test_summary();
}
