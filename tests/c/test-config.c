/* The configuration value primitives (include/baseplate/config.h). */
#include "baseplate/config.h"
#include "bp-test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static char err[256];

#define S(lit) lit, sizeof(lit) - 1

/* ---- integer ---------------------------------------------------------- */

static int64_t int_ok(const char *text, int base) {
  int64_t v = -12345;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_integer(text, strlen(text), base, &v, err, sizeof err), BP_OK);
  CHECK_STR(err, "");
  return v;
}

static const char *int_bad(const char *text, int base) {
  int64_t v = 77;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_integer(text, strlen(text), base, &v, err, sizeof err), BP_EINVAL);
  CHECK_INT(v, 77); /* untouched on error */
  return err;
}

static void test_integer_base10(void) {
  CHECK_INT(int_ok("0", 10), 0);
  CHECK_INT(int_ok("42", 10), 42);
  CHECK_INT(int_ok("-17", 10), -17);
  CHECK_INT(int_ok("+17", 10), 17);
  CHECK_INT(int_ok("  9001 \t\n", 10), 9001);
  CHECK_INT(int_ok("010", 10), 10);
  CHECK_INT(int_ok("1_000_000", 10), 1000000);
  CHECK_INT(int_ok("1383890000", 10), 1383890000LL);
  CHECK_INT(int_ok("9223372036854775807", 10), INT64_MAX);
  CHECK_INT(int_ok("-9223372036854775808", 10), INT64_MIN);

  CHECK_STR(int_bad("1.5", 10), "expected a whole number, got \"1.5\"");
  CHECK_STR(int_bad("3.0", 10), "expected a whole number, got \"3.0\"");
  CHECK_STR(int_bad("abc", 10), "expected an integer, got \"abc\"");
  CHECK_STR(int_bad("12abc", 10), "expected an integer, got \"12abc\"");
  CHECK_STR(int_bad("1e3", 10), "expected an integer, got \"1e3\"");
  CHECK_STR(int_bad("", 10), "no value specified");
  CHECK_STR(int_bad("   ", 10), "no value specified");
  CHECK_STR(int_bad("1 2", 10), "expected an integer, got \"1 2\"");
  CHECK_STR(int_bad("- 1", 10), "expected an integer, got \"- 1\"");
  CHECK_STR(int_bad("+-1", 10), "expected an integer, got \"+-1\"");
  CHECK_STR(int_bad("-", 10), "expected an integer, got \"-\"");
  CHECK_STR(int_bad("_1", 10), "expected an integer, got \"_1\"");
  CHECK_STR(int_bad("1_", 10), "expected an integer, got \"1_\"");
  CHECK_STR(int_bad("1__0", 10), "expected an integer, got \"1__0\"");
  CHECK_STR(int_bad("0x1f", 10), "expected an integer, got \"0x1f\"");
  CHECK_STR(int_bad("9223372036854775808", 10), "integer out of range: \"9223372036854775808\"");
  CHECK_STR(int_bad("-9223372036854775809", 10), "integer out of range: \"-9223372036854775809\"");
  CHECK_STR(int_bad("99999999999999999999999", 10),
            "integer out of range: \"99999999999999999999999\"");
  /* junk after an overflowing run of digits is junk, not an overflow */
  CHECK_STR(int_bad("99999999999999999999999x", 10),
            "expected an integer, got \"99999999999999999999999x\"");
}

static void test_integer_bases(void) {
  CHECK_INT(int_ok("1f", 16), 31);
  CHECK_INT(int_ok("1F", 16), 31);
  CHECK_INT(int_ok("0x1f", 16), 31);
  CHECK_INT(int_ok("0X_1F", 16), 31);
  CHECK_INT(int_ok("-ff", 16), -255);
  CHECK_INT(int_ok("0b1", 16), 0xb1); /* "0b" is only a prefix in base 2 */
  CHECK_INT(int_ok("101", 2), 5);
  CHECK_INT(int_ok("0b101", 2), 5);
  CHECK_INT(int_ok("0o17", 8), 15);
  CHECK_INT(int_ok("17", 8), 15);
  CHECK_INT(int_ok("zz", 36), 36 * 36 - 1);
  CHECK_INT(int_ok("7fffffffffffffff", 16), INT64_MAX);
  CHECK_INT(int_ok("-8000000000000000", 16), INT64_MIN);

  CHECK_STR(int_bad("8000000000000000", 16), "integer out of range: \"8000000000000000\"");
  CHECK_STR(int_bad("zz", 16), "expected a base-16 integer, got \"zz\"");
  CHECK_STR(int_bad("2", 2), "expected a base-2 integer, got \"2\"");
  CHECK_STR(int_bad("8", 8), "expected a base-8 integer, got \"8\"");
  CHECK_STR(int_bad("0x", 16), "expected a base-16 integer, got \"0x\"");
  CHECK_STR(int_bad("1", 1), "invalid base 1 (must be 0 or 2 to 36)");
  CHECK_STR(int_bad("1", 37), "invalid base 37 (must be 0 or 2 to 36)");
  CHECK_STR(int_bad("1", -2), "invalid base -2 (must be 0 or 2 to 36)");
}

static void test_integer_base0(void) {
  CHECK_INT(int_ok("0x1f", 0), 31);
  CHECK_INT(int_ok("0X1F", 0), 31);
  CHECK_INT(int_ok("0o17", 0), 15);
  CHECK_INT(int_ok("0b101", 0), 5);
  CHECK_INT(int_ok("-0x10", 0), -16);
  CHECK_INT(int_ok("123", 0), 123);
  CHECK_INT(int_ok("0", 0), 0);
  CHECK_INT(int_ok("00", 0), 0);
  CHECK_INT(int_ok("0_0", 0), 0);

  /* as in Python, a leading zero is ambiguous without a prefix */
  CHECK_STR(int_bad("010", 0), "expected an integer, got \"010\"");
  CHECK_STR(int_bad("0x", 0), "expected an integer, got \"0x\"");
  CHECK_STR(int_bad("0b2", 0), "expected an integer, got \"0b2\"");
  CHECK_STR(int_bad("1.5", 0), "expected a whole number, got \"1.5\"");
}

static void test_integer_unterminated(void) {
  /* (pointer, length): bytes past len are never read */
  int64_t v = 0;
  CHECK_INT(bp_config_parse_integer("12345", 2, 10, &v, err, sizeof err), BP_OK);
  CHECK_INT(v, 12);
  /* a NUL inside the value is junk */
  static const char nul_inside[] = {'1', '\0', '2'};
  CHECK_INT(bp_config_parse_integer(nul_inside, 3, 10, &v, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "expected an integer, got \"1\\x002\"");
  /* NULL and zero-size error buffers are fine */
  CHECK_INT(bp_config_parse_integer(S("x"), 10, &v, NULL, 0), BP_EINVAL);
  err[0] = 'Z';
  CHECK_INT(bp_config_parse_integer(S("x"), 10, &v, err, 0), BP_EINVAL);
  CHECK(err[0] == 'Z');
  CHECK_INT(bp_config_parse_integer(NULL, 0, 10, &v, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "no value specified");
}

static void test_error_truncation(void) {
  char small[8];
  int64_t v;
  char big[300];
  memset(big, 'x', sizeof big);
  CHECK_INT(bp_config_parse_integer(S("nope"), 10, &v, small, sizeof small), BP_EINVAL);
  CHECK_STR(small, "expecte");
  /* long values are shortened in messages */
  CHECK_INT(bp_config_parse_integer(big, sizeof big, 10, &v, err, sizeof err), BP_EINVAL);
  CHECK_STR(err,
            "expected an integer, got \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"");
}

/* ---- float ------------------------------------------------------------ */

static double float_ok(const char *text) {
  double v = -1;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_float(text, strlen(text), &v, err, sizeof err), BP_OK);
  return v;
}

static const char *float_bad(const char *text) {
  double v = 0;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_float(text, strlen(text), &v, err, sizeof err), BP_EINVAL);
  return err;
}

static void test_float(void) {
  CHECK_NEAR(float_ok("1e3"), 1000);
  CHECK_NEAR(float_ok(" 2.5 "), 2.5);
  CHECK_NEAR(float_ok("-0.125"), -0.125);
  CHECK_NEAR(float_ok("+.5"), 0.5);
  CHECK_NEAR(float_ok("5."), 5);
  CHECK_NEAR(float_ok("3"), 3);
  CHECK_NEAR(float_ok("1E-2"), 0.01);
  CHECK_NEAR(float_ok("1_000.5"), 1000.5);
  CHECK_NEAR(float_ok("1e1_0"), 1e10);
  CHECK(float_ok("0.1") == 0.1);
  CHECK(isinf(float_ok("inf")) && float_ok("inf") > 0);
  CHECK(isinf(float_ok("-Infinity")) && float_ok("-Infinity") < 0);
  CHECK(isinf(float_ok("1e999")));
  CHECK(isnan(float_ok("nan")));
  CHECK(isnan(float_ok("NaN")));

  CHECK_STR(float_bad("abc"), "expected a number, got \"abc\"");
  CHECK_STR(float_bad(""), "no value specified");
  CHECK_STR(float_bad("1.5x"), "expected a number, got \"1.5x\"");
  CHECK_STR(float_bad("0x10"), "expected a number, got \"0x10\"");
  CHECK_STR(float_bad("."), "expected a number, got \".\"");
  CHECK_STR(float_bad("1e"), "expected a number, got \"1e\"");
  CHECK_STR(float_bad("1_.5"), "expected a number, got \"1_.5\"");
  CHECK_STR(float_bad("_1"), "expected a number, got \"_1\"");
  CHECK_STR(float_bad("infin"), "expected a number, got \"infin\"");
  CHECK_STR(float_bad("nan(1)"), "expected a number, got \"nan(1)\"");
  CHECK_STR(float_bad("1 2"), "expected a number, got \"1 2\"");
}

static void test_float_long(void) {
  /* longer than the stack buffer: still parsed */
  char text[400];
  double v = 0;
  memset(text, '0', sizeof text);
  text[sizeof text - 3] = '1';
  text[sizeof text - 2] = '.';
  text[sizeof text - 1] = '5';
  CHECK_INT(bp_config_parse_float(text, sizeof text, &v, err, sizeof err), BP_OK);
  CHECK_NEAR(v, 1.5);
}

/* ---- boolean ---------------------------------------------------------- */

static void test_boolean(void) {
  int v = -1;
  CHECK_INT(bp_config_parse_boolean(S("true"), &v, err, sizeof err), BP_OK);
  CHECK_INT(v, 1);
  CHECK_INT(bp_config_parse_boolean(S("FALSE"), &v, err, sizeof err), BP_OK);
  CHECK_INT(v, 0);
  CHECK_INT(bp_config_parse_boolean(S("True"), &v, err, sizeof err), BP_OK);
  CHECK_INT(v, 1);
  CHECK_INT(bp_config_parse_boolean(S(" fAlSe "), &v, err, sizeof err), BP_OK);
  CHECK_INT(v, 0);

  v = 5;
  CHECK_INT(bp_config_parse_boolean(S("yes"), &v, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "expected \"true\" or \"false\", got \"yes\"");
  CHECK_INT(v, 5);
  CHECK_INT(bp_config_parse_boolean(S("1"), &v, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_config_parse_boolean(S("on"), &v, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_config_parse_boolean(S("truee"), &v, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_config_parse_boolean(S(""), &v, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "no value specified");
}

/* ---- timespan --------------------------------------------------------- */

static double span_ok(const char *text, int allow_infinite) {
  double v = -1;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_timespan(text, strlen(text), allow_infinite, &v, err, sizeof err),
            BP_OK);
  CHECK_STR(err, "");
  return v;
}

static const char *span_bad(const char *text, int allow_infinite) {
  double v = -1;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_timespan(text, strlen(text), allow_infinite, &v, err, sizeof err),
            BP_EINVAL);
  CHECK(v == -1);
  return err;
}

static void test_timespan(void) {
  CHECK(span_ok("30 milliseconds", 0) == 0.03);
  CHECK(span_ok("300 milliseconds", 0) == 0.3);
  CHECK_NEAR(span_ok("1 millisecond", 0), 0.001);
  CHECK_NEAR(span_ok("1 second", 0), 1);
  CHECK_NEAR(span_ok("3 seconds", 0), 3);
  CHECK_NEAR(span_ok("30 seconds", 0), 30);
  CHECK_NEAR(span_ok("1 minute", 0), 60);
  CHECK_NEAR(span_ok("5 minutes", 0), 300);
  CHECK_NEAR(span_ok("1 hour", 0), 3600);
  CHECK_NEAR(span_ok("2 hours", 0), 7200);
  CHECK_NEAR(span_ok("1 day", 0), 86400);
  CHECK_NEAR(span_ok("3 days", 0), 3 * 86400);
  CHECK_NEAR(span_ok("0 seconds", 0), 0);
  CHECK_NEAR(span_ok("  12\tSeconds \n", 0), 12);
  CHECK_NEAR(span_ok("1 DAY", 0), 86400);

  CHECK_STR(span_bad("3.2 hours", 0), "the count must be a whole number, got \"3.2\"");
  CHECK_STR(span_bad("2 weeks", 0),
            "unknown unit \"weeks\" (expected milliseconds, seconds, minutes, hours or days)");
  CHECK_STR(span_bad("5 ms", 0),
            "unknown unit \"ms\" (expected milliseconds, seconds, minutes, hours or days)");
  CHECK_STR(span_bad("5 s", 0),
            "unknown unit \"s\" (expected milliseconds, seconds, minutes, hours or days)");
  CHECK_STR(span_bad("30", 0), "expected a count and a unit, e.g. \"30 seconds\", got \"30\"");
  CHECK_STR(span_bad("seconds", 0),
            "expected a count and a unit, e.g. \"30 seconds\", got \"seconds\"");
  CHECK_STR(span_bad("1 2 seconds", 0),
            "expected a count and a unit, e.g. \"30 seconds\", got \"1 2 seconds\"");
  CHECK_STR(span_bad("30seconds", 0),
            "expected a count and a unit, e.g. \"30 seconds\", got \"30seconds\"");
  CHECK_STR(span_bad("x seconds", 0),
            "expected a count and a unit, e.g. \"30 seconds\", got \"x seconds\"");
  CHECK_STR(span_bad("-1 seconds", 0), "timespan must not be negative, got \"-1 seconds\"");
  /* Baseplate.py's rstrip("s"): any number of trailing "s" */
  CHECK_NEAR(span_ok("2 secondss", 0), 2);
  CHECK_NEAR(span_ok("+2 hour", 0), 7200);
  CHECK_NEAR(span_ok("1_000 milliseconds", 0), 1);
  CHECK_STR(span_bad("", 0), "no value specified");
  CHECK_STR(span_bad("infinite", 0),
            "expected a count and a unit, e.g. \"30 seconds\", got \"infinite\"");
  CHECK_STR(span_bad("99999999999999999999 seconds", 0),
            "timespan out of range: \"99999999999999999999 seconds\"");
}

/* BP_CONFIG_TIMESPAN_NEGATIVE: Baseplate.py's Timespan takes int(count),
 * negative counts included. */
static void test_timespan_negative(void) {
  const int neg = BP_CONFIG_TIMESPAN_NEGATIVE;
  CHECK_NEAR(span_ok("-5 seconds", neg), -5);
  CHECK(span_ok("-30 milliseconds", neg) == -0.03);
  CHECK_NEAR(span_ok("-1 day", neg), -86400);
  double z = span_ok("-0 seconds", neg);
  CHECK(z == 0 && !signbit(z));
  CHECK_NEAR(span_ok("5 seconds", neg), 5);
  CHECK_STR(span_bad("-3.2 hours", neg), "the count must be a whole number, got \"-3.2\"");
  CHECK_STR(span_bad("-infinite", neg | BP_CONFIG_TIMESPAN_INFINITE),
            "expected a count and a unit, e.g. \"30 seconds\" or \"infinite\", got \"-infinite\"");
  CHECK(isinf(span_ok("infinite", neg | BP_CONFIG_TIMESPAN_INFINITE)));
  CHECK_NEAR(span_ok("-2 minutes", neg | BP_CONFIG_TIMESPAN_INFINITE), -120);
  /* without the flag (the default for C callers) negative stays refused */
  CHECK_STR(span_bad("-2 minutes", BP_CONFIG_TIMESPAN_INFINITE),
            "timespan must not be negative, got \"-2 minutes\"");
}

static void test_timespan_infinite(void) {
  double v = span_ok("infinite", 1);
  CHECK(isinf(v) && v > 0);
  v = span_ok(" Infinite ", 1);
  CHECK(isinf(v));
  CHECK_NEAR(span_ok("10 seconds", 1), 10);
  CHECK_STR(span_bad("infinity", 1),
            "expected a count and a unit, e.g. \"30 seconds\" or \"infinite\", got \"infinity\"");
}

/* ---- percent ---------------------------------------------------------- */

static double pct_ok(const char *text) {
  double v = -1;
  CHECK_INT(bp_config_parse_percent(text, strlen(text), &v, err, sizeof err), BP_OK);
  return v;
}

static const char *pct_bad(const char *text) {
  double v = -1;
  err[0] = '\0';
  CHECK_INT(bp_config_parse_percent(text, strlen(text), &v, err, sizeof err), BP_EINVAL);
  return err;
}

static void test_percent(void) {
  CHECK(pct_ok("37.2%") == 37.2 / 100.0);
  CHECK_NEAR(pct_ok("37.2%"), 0.372);
  CHECK_NEAR(pct_ok("37.1%"), 0.371);
  CHECK_NEAR(pct_ok("44%"), 0.44);
  CHECK_NEAR(pct_ok("100%"), 1.0);
  CHECK_NEAR(pct_ok("0%"), 0.0);
  CHECK(!signbit(pct_ok("-0%")));
  CHECK_NEAR(pct_ok(" 50 % "), 0.5);
  CHECK_NEAR(pct_ok("1e1%"), 0.1);

  CHECK_STR(pct_bad("101%"), "percentage must be from 0% to 100%, got \"101%\"");
  CHECK_STR(pct_bad("100.1%"), "percentage must be from 0% to 100%, got \"100.1%\"");
  CHECK_STR(pct_bad("-1%"), "percentage must be from 0% to 100%, got \"-1%\"");
  CHECK_STR(pct_bad("nan%"), "percentage must be from 0% to 100%, got \"nan%\"");
  CHECK_STR(pct_bad("37.2"), "expected a percentage ending in \"%\", got \"37.2\"");
  CHECK_STR(pct_bad("0.5"), "expected a percentage ending in \"%\", got \"0.5\"");
  CHECK_STR(pct_bad("%"), "expected a number before \"%\", got \"%\"");
  CHECK_STR(pct_bad("abc%"), "expected a number before \"%\", got \"abc%\"");
  CHECK_STR(pct_bad("5%%"), "expected a number before \"%\", got \"5%%\"");
  CHECK_STR(pct_bad(""), "no value specified");
}

/* ---- endpoint --------------------------------------------------------- */

static bp_endpoint_t ep;

static int ep_parse(const char *text) {
  err[0] = '\0';
  memset(&ep, 0x55, sizeof ep);
  return bp_config_parse_endpoint(text, strlen(text), &ep, err, sizeof err);
}

static void test_endpoint_inet(void) {
  CHECK_INT(ep_parse("127.0.0.1:9090"), BP_OK);
  CHECK_INT(ep.family, BP_AF_INET);
  CHECK_STR(ep.host, "127.0.0.1");
  CHECK_INT(ep.port, 9090);
  CHECK_STR(ep.path, "");

  CHECK_INT(ep_parse("localhost:80"), BP_OK);
  CHECK_INT(ep.family, BP_AF_INET);
  CHECK_STR(ep.host, "localhost");
  CHECK_INT(ep.port, 80);

  CHECK_INT(ep_parse(" example.com:0 "), BP_OK);
  CHECK_STR(ep.host, "example.com");
  CHECK_INT(ep.port, 0);

  CHECK_INT(ep_parse("h:65535"), BP_OK);
  CHECK_INT(ep.port, 65535);

  /* Baseplate.py's Endpoint: an empty host is "" (every interface when
   * listening), and the port is read by int(): white space, "+", "_". */
  CHECK_INT(ep_parse(":80"), BP_OK);
  CHECK_INT(ep.family, BP_AF_INET);
  CHECK_STR(ep.host, "");
  CHECK_INT(ep.port, 80);
  CHECK_INT(ep_parse(" :9090 "), BP_OK);
  CHECK_STR(ep.host, "");
  CHECK_INT(ep.port, 9090);
  CHECK_INT(ep_parse("localhost: 80"), BP_OK);
  CHECK_INT(ep.port, 80);
  CHECK_INT(ep_parse("localhost:+80"), BP_OK);
  CHECK_INT(ep.port, 80);
  CHECK_INT(ep_parse("localhost:8_0"), BP_OK);
  CHECK_INT(ep.port, 80);
  CHECK_INT(ep_parse("localhost:0080"), BP_OK);
  CHECK_INT(ep.port, 80);
  CHECK_INT(ep_parse("[::1]: 81"), BP_OK);
  CHECK_INT(ep.port, 81);
}

static void test_endpoint_inet6(void) {
  CHECK_INT(ep_parse("[::1]:80"), BP_OK);
  CHECK_INT(ep.family, BP_AF_INET6);
  CHECK_STR(ep.host, "::1");
  CHECK_INT(ep.port, 80);
  CHECK_STR(ep.path, "");

  CHECK_INT(ep_parse("[2001:db8::42]:9090"), BP_OK);
  CHECK_STR(ep.host, "2001:db8::42");
  CHECK_INT(ep.port, 9090);

  CHECK_INT(ep_parse("[fe80::1%eth0]:22"), BP_OK);
  CHECK_STR(ep.host, "fe80::1%eth0");

  CHECK_INT(ep_parse("[::1]"), BP_EINVAL);
  CHECK_STR(err, "no port specified in \"[::1]\"");
  CHECK_INT(ep_parse("[::1]80"), BP_EINVAL);
  CHECK_STR(err, "expected \":\" and a port after \"]\", got \"[::1]80\"");
  CHECK_INT(ep_parse("[::1:80"), BP_EINVAL);
  CHECK_STR(err, "missing \"]\" in \"[::1:80\"");
  CHECK_INT(ep_parse("[]:80"), BP_EINVAL);
  CHECK_STR(err, "no host specified in \"[]:80\"");
  CHECK_INT(ep_parse("[localhost]:80"), BP_EINVAL);
  CHECK_STR(err, "invalid IPv6 address \"localhost\"");
  CHECK_INT(ep_parse("[127.0.0.1]:80"), BP_EINVAL);
  CHECK_INT(ep_parse("[fe80::1%]:80"), BP_EINVAL);
  CHECK_INT(ep_parse("::1:80"), BP_EINVAL);
  CHECK_STR(err,
            "too many \":\" in \"::1:80\" (write IPv6 addresses in brackets, e.g. \"[::1]:80\")");
}

static void test_endpoint_unix(void) {
  char long_path[200];

  CHECK_INT(ep_parse("/run/x.sock"), BP_OK);
  CHECK_INT(ep.family, BP_AF_UNIX);
  CHECK_STR(ep.path, "/run/x.sock");
  CHECK_STR(ep.host, "");
  CHECK_INT(ep.port, 0);

  /* any '/' makes it a path, as in Baseplate.py */
  CHECK_INT(ep_parse("relative/x.sock"), BP_OK);
  CHECK_INT(ep.family, BP_AF_UNIX);
  CHECK_STR(ep.path, "relative/x.sock");

  memset(long_path, 'a', sizeof long_path);
  long_path[0] = '/';
  CHECK_INT(bp_config_parse_endpoint(long_path, BP_ENDPOINT_PATH_SIZE - 1, &ep, err, sizeof err),
            BP_OK);
  CHECK_INT((long long)strlen(ep.path), BP_ENDPOINT_PATH_SIZE - 1);
  CHECK_INT(bp_config_parse_endpoint(long_path, BP_ENDPOINT_PATH_SIZE, &ep, err, sizeof err),
            BP_EINVAL);
  CHECK_CONTAINS(err, "UNIX socket path too long (at most 107 bytes)");
}

static void test_endpoint_errors(void) {
  char long_host[300];

  CHECK_INT(ep_parse("localhost"), BP_EINVAL);
  CHECK_STR(err, "no port specified in \"localhost\"");
  CHECK_INT(ep_parse("localhost:"), BP_EINVAL);
  CHECK_STR(err, "no port specified in \"localhost:\"");
  CHECK_INT(ep_parse("localhost:http"), BP_EINVAL);
  CHECK_STR(err, "invalid port \"http\" (expected a number from 0 to 65535)");
  CHECK_INT(ep_parse("localhost:65536"), BP_EINVAL);
  CHECK_STR(err, "invalid port \"65536\" (expected a number from 0 to 65535)");
  CHECK_INT(ep_parse("localhost:-1"), BP_EINVAL);
  CHECK_STR(err, "invalid port \"-1\" (expected a number from 0 to 65535)");
  CHECK_INT(ep_parse("localhost:123456"), BP_EINVAL);
  CHECK_INT(ep_parse("localhost:8__0"), BP_EINVAL);
  CHECK_INT(ep_parse("localhost:0x50"), BP_EINVAL);
  CHECK_INT(ep_parse("localhost:80.0"), BP_EINVAL);
  CHECK_INT(ep_parse("a:b:c"), BP_EINVAL);
  CHECK_INT(ep_parse("my host:80"), BP_EINVAL);
  CHECK_STR(err, "invalid host \"my host\"");
  CHECK_INT(ep_parse(""), BP_EINVAL);
  CHECK_STR(err, "no value specified");

  memset(long_host, 'h', sizeof long_host);
  memcpy(long_host + sizeof long_host - 3, ":80", 3);
  CHECK_INT(bp_config_parse_endpoint(long_host, sizeof long_host, &ep, err, sizeof err), BP_EINVAL);
  CHECK_CONTAINS(err, "host name too long (at most 255 bytes)");
  /* 255 bytes of host is fine */
  CHECK_INT(bp_config_parse_endpoint(long_host + 300 - 258, 258, &ep, err, sizeof err), BP_OK);
  CHECK_INT((long long)strlen(ep.host), 255);
}

/* ---- base64 ----------------------------------------------------------- */

static size_t b64_len;
static unsigned char b64_out[64];

static int b64(const char *text) {
  err[0] = '\0';
  memset(b64_out, 0, sizeof b64_out);
  b64_len = 999;
  return bp_config_parse_base64(text, strlen(text), b64_out, sizeof b64_out, &b64_len, err,
                                sizeof err);
}

static void test_base64(void) {
  CHECK_INT(b64("aGVsbG8="), BP_OK);
  CHECK_INT(b64_len, 5);
  CHECK(memcmp(b64_out, "hello", 5) == 0);
  CHECK_INT(b64("Y29vbA=="), BP_OK);
  CHECK_INT(b64_len, 4);
  CHECK(memcmp(b64_out, "cool", 4) == 0);
  CHECK_INT(b64("YWJj"), BP_OK);
  CHECK_INT(b64_len, 3);
  CHECK(memcmp(b64_out, "abc", 3) == 0);
  CHECK_INT(b64("AP8+/w=="), BP_OK); /* 00 ff 3e ff: binary, '+' and '/' */
  CHECK_INT(b64_len, 4);
  CHECK(memcmp(b64_out, "\x00\xff\x3e\xff", 4) == 0);
  CHECK_INT(b64(" aGVs\n  bG8= "), BP_OK); /* white space anywhere */
  CHECK_INT(b64_len, 5);
  CHECK(memcmp(b64_out, "hello", 5) == 0);

  CHECK_INT(b64("aGVsbG8"), BP_EINVAL);
  CHECK_STR(err, "incorrect base64 padding");
  CHECK_INT(b64_len, 999);
  CHECK_INT(b64("aGVsbG8=="), BP_EINVAL);
  CHECK_STR(err, "incorrect base64 padding");
  CHECK_INT(b64("YWJj===="), BP_EINVAL);
  CHECK_STR(err, "incorrect base64 padding");
  CHECK_INT(b64("="), BP_EINVAL);
  CHECK_STR(err, "incorrect base64 padding");
  CHECK_INT(b64("aGVsb"), BP_EINVAL);
  CHECK_STR(err, "invalid base64: 5 data characters cannot be 1 more than a multiple of 4");
  CHECK_INT(b64("aGV$bG8="), BP_EINVAL);
  CHECK_STR(err, "invalid base64 character '$' at offset 3");
  CHECK_INT(b64("aGVs-G8="), BP_EINVAL); /* urlsafe alphabet is not the standard one */
  CHECK_STR(err, "invalid base64 character '-' at offset 4");
  CHECK_INT(b64("YQ==YQ=="), BP_EINVAL);
  CHECK_STR(err, "invalid base64: data after the \"=\" padding");
  CHECK_INT(b64("not base64!"), BP_EINVAL);
  CHECK_INT(b64(""), BP_EINVAL);
  CHECK_STR(err, "no value specified");
  CHECK_INT(
      bp_config_parse_base64(S("YQ\x01="), b64_out, sizeof b64_out, &b64_len, err, sizeof err),
      BP_EINVAL);
  CHECK_STR(err, "invalid base64 character 0x01 at offset 2");
}

static void test_base64_capacity(void) {
  unsigned char small[4];
  size_t n = 0;
  /* asking for the size */
  CHECK_INT(bp_config_parse_base64(S("aGVsbG8="), NULL, 0, &n, err, sizeof err), BP_ETOOBIG);
  CHECK_INT(n, 5);
  memset(small, 0x77, sizeof small);
  CHECK_INT(bp_config_parse_base64(S("aGVsbG8="), small, sizeof small, &n, err, sizeof err),
            BP_ETOOBIG);
  CHECK_INT(n, 5);
  CHECK_STR(err, "base64 value needs 5 bytes, the buffer holds 4");
  CHECK(small[0] == 0x77); /* nothing written */
  CHECK_INT(bp_config_parse_base64(S("YWJj"), small, 3, &n, err, sizeof err), BP_OK);
  CHECK_INT(n, 3);
  CHECK(memcmp(small, "abc", 3) == 0);
  /* validation comes before the size check */
  CHECK_INT(bp_config_parse_base64(S("!!!!"), NULL, 0, &n, err, sizeof err), BP_EINVAL);
}

/* ---- users and groups ------------------------------------------------- */

static void test_unix_user(void) {
  uint32_t id = 12345;
  CHECK_INT(bp_config_parse_unix_user(S("root"), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 0);
  id = 12345;
  CHECK_INT(bp_config_parse_unix_user(S("0"), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 0);
  CHECK_INT(bp_config_parse_unix_user(S(" 1000 "), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 1000);
  /* ids need not exist */
  CHECK_INT(bp_config_parse_unix_user(S("4294967294"), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 4294967294u);

  id = 7;
  CHECK_INT(bp_config_parse_unix_user(S("no-such-user-bp"), &id, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "unknown user \"no-such-user-bp\"");
  CHECK_INT(id, 7);
  CHECK_INT(bp_config_parse_unix_user(S("4294967295"), &id, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "user id out of range: \"4294967295\"");
  CHECK_INT(bp_config_parse_unix_user(S("-1"), &id, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "user id out of range: \"-1\"");
  /* ids as Python's int() reads them */
  CHECK_INT(bp_config_parse_unix_user(S("+1_000"), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 1000);
  CHECK_INT(bp_config_parse_unix_user(S(""), &id, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "no value specified");
  CHECK_INT(bp_config_parse_unix_user(S("ro\0ot"), &id, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "unknown user \"ro\\x00ot\"");
}

static void test_unix_group(void) {
  uint32_t id = 12345;
  CHECK_INT(bp_config_parse_unix_group(S("root"), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 0);
  CHECK_INT(bp_config_parse_unix_group(S("42"), &id, err, sizeof err), BP_OK);
  CHECK_INT(id, 42);
  CHECK_INT(bp_config_parse_unix_group(S("no-such-group-bp"), &id, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "unknown group \"no-such-group-bp\"");
}

int main(void) {
  RUN(test_integer_base10);
  RUN(test_integer_bases);
  RUN(test_integer_base0);
  RUN(test_integer_unterminated);
  RUN(test_error_truncation);
  RUN(test_float);
  RUN(test_float_long);
  RUN(test_boolean);
  RUN(test_timespan);
  RUN(test_timespan_negative);
  RUN(test_timespan_infinite);
  RUN(test_percent);
  RUN(test_endpoint_inet);
  RUN(test_endpoint_inet6);
  RUN(test_endpoint_unix);
  RUN(test_endpoint_errors);
  RUN(test_base64);
  RUN(test_base64_capacity);
  RUN(test_unix_user);
  RUN(test_unix_group);
  return bp_test_summary();
}
