/* Configuration values (src/config.c): the first byte picks the parser, the
 * rest is the value. Every parser answers BP_OK with a sane result or
 * BP_EINVAL with a reason, never a crash or an overrun. */
#include <baseplate.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-config: %s\n", what);
    abort();
  }
}

static void check_result(int rc, const char *err, size_t errlen) {
  check(rc == BP_OK || rc == BP_EINVAL, "unexpected status");
  check(memchr(err, '\0', errlen) != NULL, "reason not terminated");
  if (rc != BP_OK) check(err[0] != '\0', "an error without a reason");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char err[256];
  const char *text;
  size_t len;
  int rc;

  if (size < 1) return 0;
  text = (const char *)data + 1;
  len = size - 1;
  /* The value is a (pointer, length) pair: a copy without a terminator makes
   * ASan catch any read past the end. */
  char *copy = malloc(len ? len : 1);
  memcpy(copy, text, len);
  text = copy;
  memset(err, 0, sizeof err);

  switch (data[0] % 10) {
  case 0: {
    int64_t v = 0;
    int base = (data[0] / 10) % 38; /* 0..37: the invalid ones too */
    rc = bp_config_parse_integer(text, len, base, &v, err, sizeof err);
    check_result(rc, err, sizeof err);
    break;
  }
  case 1: {
    double v = 0;
    rc = bp_config_parse_float(text, len, &v, err, sizeof err);
    check_result(rc, err, sizeof err);
    break;
  }
  case 2: {
    int v = -1;
    rc = bp_config_parse_boolean(text, len, &v, err, sizeof err);
    check_result(rc, err, sizeof err);
    if (rc == BP_OK) check(v == 0 || v == 1, "a boolean neither 0 nor 1");
    break;
  }
  case 3: {
    double v = -1;
    int flags = (data[0] >> 6) & 3;
    rc = bp_config_parse_timespan(text, len, flags, &v, err, sizeof err);
    check_result(rc, err, sizeof err);
    if (rc == BP_OK)
      check(!isnan(v) && (v >= 0 || (flags & BP_CONFIG_TIMESPAN_NEGATIVE)), "a negative or NaN time span");
    break;
  }
  case 4: {
    double v = -1;
    rc = bp_config_parse_percent(text, len, &v, err, sizeof err);
    check_result(rc, err, sizeof err);
    if (rc == BP_OK) check(v >= 0 && v <= 1, "a percentage outside 0..100%");
    break;
  }
  case 5: {
    bp_endpoint_t e;
    memset(&e, 0x55, sizeof e);
    rc = bp_config_parse_endpoint(text, len, &e, err, sizeof err);
    check_result(rc, err, sizeof err);
    if (rc == BP_OK) {
      check(memchr(e.host, '\0', sizeof e.host) && memchr(e.path, '\0', sizeof e.path),
            "endpoint strings not terminated");
      if (e.family == BP_AF_UNIX)
        check(e.path[0] && !e.host[0] && e.port == 0, "a UNIX endpoint without a path");
      else
        /* (an empty host, ":80", is every interface: IPv4 only, as Baseplate.py's) */
        check((e.family == BP_AF_INET || e.family == BP_AF_INET6) &&
                  (e.host[0] || e.family == BP_AF_INET) && !e.path[0] &&
                  e.port >= 0 && e.port <= 65535,
              "a bad host:port endpoint");
    }
    break;
  }
  case 6: {
    size_t need = (size_t)-1, got = (size_t)-1;
    rc = bp_config_parse_base64(text, len, NULL, 0, &need, err, sizeof err);
    check(rc == BP_OK || rc == BP_EINVAL || rc == BP_ETOOBIG, "unexpected base64 status");
    if (rc == BP_OK) check(need == 0, "decoded bytes into no room");
    if (rc == BP_ETOOBIG) {
      unsigned char *out;
      check(need <= len / 4 * 3, "decoded length over len / 4 * 3");
      out = malloc(need);
      rc = bp_config_parse_base64(text, len, out, need, &got, err, sizeof err);
      check(rc == BP_OK && got == need, "the size asked for was not enough");
      free(out);
    }
    break;
  }
  case 7:
  case 8: {
    uint32_t id;
    /* Names are looked up in the system's user and group databases: only
     * ids and junk unless the high bit says otherwise, so that most runs do
     * not depend on /etc/passwd. */
    if (len && (text[0] < '0' || text[0] > '9') && (data[0] & 0x80) == 0) break;
    rc = (data[0] % 10 == 7 ? bp_config_parse_unix_user : bp_config_parse_unix_group)(
        text, len, &id, err, sizeof err);
    check_result(rc, err, sizeof err);
    break;
  }
  case 9: {
    /* A short error buffer: reasons are cut, still terminated. */
    double v;
    char small[8];
    memset(small, 0x55, sizeof small);
    rc = bp_config_parse_timespan(text, len, 1, &v, small, 1 + data[0] % 7);
    check(rc == BP_OK || rc == BP_EINVAL, "unexpected status");
    if (rc != BP_OK)
      check(memchr(small, '\0', 1 + data[0] % 7) != NULL, "a cut reason not terminated");
    rc = bp_config_parse_endpoint(text, len, &(bp_endpoint_t){0}, NULL, 0);
    check(rc == BP_OK || rc == BP_EINVAL, "unexpected status without a reason buffer");
    break;
  }
  }
  free(copy);
  return 0;
}
