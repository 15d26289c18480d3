/* Minimal assertions for tests/c/test-*.c. Each test file is one ctest test:
 *
 *   static void test_something(void) { CHECK(x == 1); CHECK_STR(s, "a"); }
 *   int main(void) { RUN(test_something); return bp_test_summary(); }
 */
#ifndef BP_TEST_H
#define BP_TEST_H

#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

static int bp_test_failures, bp_test_checks, bp_test_passed, bp_test_failed;
static int bp_test_cur_failed;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    bp_test_checks++;                                                               \
    if (!(cond)) {                                                                  \
      bp_test_failures++;                                                           \
      bp_test_cur_failed = 1;                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
    }                                                                               \
  } while (0)

#define CHECK_INT(got, want)                                                        \
  do {                                                                              \
    long long g_ = (long long)(got), w_ = (long long)(want);                        \
    bp_test_checks++;                                                               \
    if (g_ != w_) {                                                                 \
      bp_test_failures++;                                                           \
      bp_test_cur_failed = 1;                                                       \
      fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__,    \
              #got, g_, w_);                                                        \
    }                                                                               \
  } while (0)

#define CHECK_NEAR(got, want)                                                       \
  do {                                                                              \
    double g_ = (got), w_ = (want);                                                 \
    bp_test_checks++;                                                               \
    if (fabs(g_ - w_) > 1e-9) {                                                     \
      bp_test_failures++;                                                           \
      bp_test_cur_failed = 1;                                                       \
      fprintf(stderr, "%s:%d: %s == %g, expected %g\n", __FILE__, __LINE__, #got,  \
              g_, w_);                                                              \
    }                                                                               \
  } while (0)

#define CHECK_STR(got, want)                                                        \
  do {                                                                              \
    const char *g_ = (got), *w_ = (want);                                           \
    bp_test_checks++;                                                               \
    if (!g_ || !w_ || strcmp(g_, w_) != 0) {                                        \
      bp_test_failures++;                                                           \
      bp_test_cur_failed = 1;                                                       \
      fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
              #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)");                        \
    }                                                                               \
  } while (0)

#define CHECK_CONTAINS(got, want)                                                   \
  do {                                                                              \
    const char *g_ = (got), *w_ = (want);                                           \
    bp_test_checks++;                                                               \
    if (!g_ || !strstr(g_, w_)) {                                                   \
      bp_test_failures++;                                                           \
      bp_test_cur_failed = 1;                                                       \
      fprintf(stderr, "%s:%d: %s == \"%s\", expected to contain \"%s\"\n",        \
              __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_);                    \
    }                                                                               \
  } while (0)

#define RUN(fn)                                                                     \
  do {                                                                              \
    bp_test_cur_failed = 0;                                                         \
    fn();                                                                           \
    if (bp_test_cur_failed) {                                                       \
      bp_test_failed++;                                                             \
      printf("FAILED %s\n", #fn);                                                   \
    } else {                                                                        \
      bp_test_passed++;                                                             \
      printf("ok     %s\n", #fn);                                                   \
    }                                                                               \
  } while (0)

/* Run fn with stdout (where log lines go) redirected into out. */
static inline void bp_test_capture(void (*fn)(void), char *out, size_t size) {
  int fds[2], saved;
  ssize_t n;
  fflush(stdout);
  if (pipe(fds) != 0) abort();
  saved = dup(1);
  dup2(fds[1], 1);
  close(fds[1]);
  fn();
  dup2(saved, 1);
  close(saved);
  n = read(fds[0], out, size - 1);
  out[n > 0 ? n : 0] = '\0';
  close(fds[0]);
}

/* Text log lines begin with the time ("2026-11-22 03:04:39,123 "): drop it
 * from every line of `s` (in place), so the rest can be compared. */
static inline void bp_test_strip_log_times(char *s) {
  char *r = s, *w = s;
  while (*r) {
    int stamp = strlen(r) >= 24 && r[4] == '-' && r[7] == '-' && r[10] == ' ' && r[13] == ':' &&
                r[16] == ':' && r[19] == ',' && r[23] == ' ';
    if (stamp) r += 24;
    while (*r && *r != '\n') *w++ = *r++;
    if (*r) *w++ = *r++;
  }
  *w = '\0';
}

static inline int bp_test_summary(void) {
  printf("%d passed, %d failed\n", bp_test_passed, bp_test_failed);
  return bp_test_failed ? 1 : 0;
}

#endif
