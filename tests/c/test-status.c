/* The status vocabulary: an E* code is the negative errno it names, our own
 * codes share no number with errno or libuv, and bp_strerror names them all. */
#include <baseplate.h>
#include <errno.h>
#include <string.h>
#include <uv.h>

#include "bp-test.h"
#include "internal.h"

static const struct {
  const char *name;
  int code;
} codes[] = {
    {"BP_OK", BP_OK},           {"BP_ERROR", BP_ERROR},         {"BP_AGAIN", BP_AGAIN},
    {"BP_DECLINED", BP_DECLINED}, {"BP_ENOMEM", BP_ENOMEM},     {"BP_EINVAL", BP_EINVAL},
    {"BP_ENOENT", BP_ENOENT},   {"BP_EIO", BP_EIO},             {"BP_ECLOSED", BP_ECLOSED},
    {"BP_ETOOBIG", BP_ETOOBIG}, {"BP_ETIMEDOUT", BP_ETIMEDOUT}, {"BP_ECANCELED", BP_ECANCELED},
};

static void test_codes_are_distinct(void) {
  for (size_t i = 0; i < BP_ARRAY_SIZE(codes); i++)
    for (size_t j = i + 1; j < BP_ARRAY_SIZE(codes); j++)
      if (codes[i].code == codes[j].code) {
        fprintf(stderr, "%s and %s are both %d\n", codes[i].name, codes[j].name, codes[i].code);
        CHECK(codes[i].code != codes[j].code);
      }
}

static void test_errno_codes_are_errnos(void) {
  CHECK_INT(BP_ENOMEM, -ENOMEM);
  CHECK_INT(BP_EINVAL, -EINVAL);
  CHECK_INT(BP_ENOENT, -ENOENT);
  CHECK_INT(BP_EIO, -EIO);
  CHECK_INT(BP_ECLOSED, -EPIPE);
  CHECK_INT(BP_ETOOBIG, -EMSGSIZE);
  CHECK_INT(BP_ETIMEDOUT, -ETIMEDOUT);
  CHECK_INT(BP_ECANCELED, -ECANCELED);
  /* and libuv's names for them are the same numbers */
  CHECK_INT(BP_ENOMEM, UV_ENOMEM);
  CHECK_INT(BP_ETIMEDOUT, UV_ETIMEDOUT);
  CHECK_INT(BP_ECANCELED, UV_ECANCELED);
}

/* Our own codes are outside errno's range and every libuv code. */
static void test_own_codes_collide_with_nothing(void) {
  int own[] = {BP_ERROR, BP_AGAIN, BP_DECLINED};
  for (size_t i = 0; i < BP_ARRAY_SIZE(own); i++) {
    CHECK(own[i] < -4095);
#define CHECK_NOT_UV(name, _) CHECK(own[i] != UV_##name);
    UV_ERRNO_MAP(CHECK_NOT_UV)
#undef CHECK_NOT_UV
  }
  CHECK(BP_AGAIN != -EAGAIN);
  CHECK(BP_AGAIN != UV_EAGAIN);
}

static void test_strerror(void) {
  for (size_t i = 0; i < BP_ARRAY_SIZE(codes); i++)
    CHECK(strcmp(bp_strerror(codes[i].code), "unknown status") != 0);
  CHECK_STR(bp_strerror(BP_AGAIN), "operation in progress");
  CHECK_STR(bp_strerror(BP_ECANCELED), "interrupted");
  /* a failed fork's EAGAIN is itself, not "in progress" nor "interrupted" */
  CHECK_STR(bp_strerror(-EAGAIN), "Resource temporarily unavailable");
  CHECK_STR(bp_strerror(-ECONNREFUSED), "Connection refused");
  CHECK_STR(bp_strerror(UV_EOF), uv_strerror(UV_EOF));
  CHECK_STR(bp_strerror(UV_EAI_NONAME), uv_strerror(UV_EAI_NONAME));
  CHECK_STR(bp_strerror(-4000), "unknown status"); /* neither an errno nor libuv's */
  CHECK_STR(bp_strerror(-9999), "unknown status");
  CHECK_STR(bp_strerror(1), "unknown status");
}

/* A file that cannot be read says why with its own errno. */
static void test_read_file_returns_errno(void) {
  char *text;
  size_t len;
  CHECK_INT(bp__read_file("/nonexistent/x", &text, &len, 100), -ENOENT);
  CHECK_INT(bp__read_file("/", &text, &len, 100), -EISDIR);
  CHECK_INT(bp__read_file("/proc/self/status", &text, &len, 0), BP_OK);
  free(text);
}

int main(void) {
  RUN(test_codes_are_distinct);
  RUN(test_errno_codes_are_errnos);
  RUN(test_own_codes_collide_with_nothing);
  RUN(test_strerror);
  RUN(test_read_file_returns_errno);
  return bp_test_summary();
}
