/*
 * Configuration values: the parsing primitives behind baseplate.lib.config.
 *
 * The rules follow Baseplate.py (docs/lib-config.md has the user's view).
 * Values arrive as (pointer, length) pairs straight from Lua strings, so
 * nothing here assumes a terminating NUL; a NUL inside a value is just
 * another invalid character. Reasons written to `err` quote the offending
 * text, shortened and escaped, and never name the key.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getpwnam_r, getgrnam_r, inet_pton under -std=c11 */
#endif
#include "baseplate/config.h"
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <locale.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define QUOTE_MAX 48    /* input bytes shown when quoting a value */
#define QUOTE_SIZE 256  /* QUOTE_MAX bytes, escaped (4 each), quotes, "..." */
#define FLOAT_STACK 128 /* numbers longer than this are copied to the heap */

typedef struct {
  const char *p;
  size_t n;
} span_t;

static int is_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

static span_t span_trim(const char *p, size_t n) {
  span_t s;
  if (!p) n = 0;
  while (n > 0 && is_space((unsigned char)p[0])) {
    p++;
    n--;
  }
  while (n > 0 && is_space((unsigned char)p[n - 1])) n--;
  s.p = p;
  s.n = n;
  return s;
}

static int span_ieq(span_t s, const char *word) {
  size_t i, n = strlen(word);
  if (s.n != n) return 0;
  for (i = 0; i < n; i++)
    if (lower((unsigned char)s.p[i]) != word[i]) return 0;
  return 1;
}

/* `p` (n bytes) double-quoted, escaped and shortened to `max` input bytes
 * into buf (cap bytes: max * 4 + 8 is always enough). */
const char *bp__quote(const char *p, size_t n, size_t max, char *buf, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t i, o = 0, shown = n > max ? max : n;

  buf[o++] = '"';
  for (i = 0; i < shown && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      buf[o++] = '\\';
      buf[o++] = 'x';
      buf[o++] = hex[c >> 4];
      buf[o++] = hex[c & 15];
    } else {
      buf[o++] = (char)c;
    }
  }
  if (i < n) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}

static const char *quote(span_t s, char *buf, size_t cap) { return bp__quote(s.p, s.n, QUOTE_MAX, buf, cap); }

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return BP_EINVAL;
}

static int fail_empty(char *err, size_t errlen) { return fail(err, errlen, "no value specified"); }

/* ---- numbers ---------------------------------------------------------- */

static int digit_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  return 99;
}

/*
 * Python's int(text, base) on trimmed, non-empty text, limited to int64_t.
 * Returns BP_OK, BP_EINVAL for a syntax error or -ERANGE for overflow.
 */
static int scan_integer(span_t s, int base, int64_t *out) {
  const char *p = s.p, *end = s.p + s.n;
  int negative = 0, digits = 0, prev_underscore = 0, leading_zero = 0, nonzero = 0;
  int overflow = 0;
  uint64_t mag = 0, limit;

  if (p < end && (*p == '+' || *p == '-')) negative = (*p++ == '-');

  if (end - p >= 2 && p[0] == '0') {
    int c = lower((unsigned char)p[1]), prefix_base = 0;
    if (c == 'x')
      prefix_base = 16;
    else if (c == 'o')
      prefix_base = 8;
    else if (c == 'b')
      prefix_base = 2;
    if (prefix_base && (base == 0 || base == prefix_base)) {
      base = prefix_base;
      p += 2;
      /* Python allows one underscore right after the prefix: 0x_ff. */
      if (p < end && *p == '_') {
        p++;
        prev_underscore = 1;
      }
    }
  }
  if (base == 0) {
    base = 10;
    leading_zero = (p < end && *p == '0');
  }

  limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; p < end; p++) {
    int d;
    if (*p == '_') {
      if (prev_underscore || digits == 0) return BP_EINVAL;
      prev_underscore = 1;
      continue;
    }
    d = digit_value((unsigned char)*p);
    if (d >= base) return BP_EINVAL;
    prev_underscore = 0;
    digits++;
    if (d) nonzero = 1;
    /* After an overflow keep checking the syntax: junk is reported as junk. */
    if (overflow || mag > (limit - (uint64_t)d) / (uint64_t)base)
      overflow = 1;
    else
      mag = mag * (uint64_t)base + (uint64_t)d;
  }
  if (digits == 0 || prev_underscore) return BP_EINVAL;
  /* With base 0, "010" is ambiguous and refused; "0", "00" and "0_0" are fine. */
  if (leading_zero && nonzero) return BP_EINVAL;
  if (overflow) return -ERANGE;

  if (negative)
    *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  else
    *out = (int64_t)mag;
  return 0;
}

/*
 * Python's float() syntax on trimmed text: checks it and, when fine, converts
 * it with strtod after dropping underscores. Returns BP_OK, BP_EINVAL or
 * BP_ENOMEM.
 */
static int scan_float(span_t s, double *out) {
  const char *p = s.p, *end = s.p + s.n;
  int negative = 0, mant_digits = 0, ok;
  char stackbuf[FLOAT_STACK], *buf = stackbuf, *q, *parsed_end;
  const char *decimal_point;
  double v;
  size_t i;

  if (p < end && (*p == '+' || *p == '-')) negative = (*p++ == '-');
  {
    span_t word = {p, (size_t)(end - p)};
    if (span_ieq(word, "inf") || span_ieq(word, "infinity")) {
      *out = negative ? -HUGE_VAL : HUGE_VAL;
      return 0;
    }
    if (span_ieq(word, "nan")) {
      *out = negative ? -(double)NAN : (double)NAN;
      return 0;
    }
  }

  /* digits [. digits] [e [sign] digits], underscores only between digits */
#define SCAN_DIGITS(count)                                                                \
  do {                                                                                    \
    while (p < end) {                                                                     \
      if (is_digit((unsigned char)*p)) {                                                  \
        p++;                                                                              \
        (count)++;                                                                        \
      } else if (*p == '_' && p > s.p && is_digit((unsigned char)p[-1]) && p + 1 < end && \
                 is_digit((unsigned char)p[1])) {                                         \
        p++;                                                                              \
      } else {                                                                            \
        break;                                                                            \
      }                                                                                   \
    }                                                                                     \
  } while (0)

  SCAN_DIGITS(mant_digits);
  if (p < end && *p == '.') {
    p++;
    SCAN_DIGITS(mant_digits);
  }
  if (mant_digits == 0) return BP_EINVAL;
  if (p < end && (*p == 'e' || *p == 'E')) {
    int exp_digits = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    SCAN_DIGITS(exp_digits);
    if (exp_digits == 0) return BP_EINVAL;
  }
#undef SCAN_DIGITS
  if (p != end) return BP_EINVAL;

  if (s.n + 1 > sizeof stackbuf) {
    buf = malloc(s.n + 1);
    if (!buf) return BP_ENOMEM;
  }
  /* strtod reads the locale's decimal point; the text always uses '.'. */
  decimal_point = localeconv()->decimal_point;
  if (!decimal_point || strlen(decimal_point) != 1) decimal_point = ".";
  for (i = 0, q = buf; i < s.n; i++) {
    char c = s.p[i];
    if (c == '_') continue;
    *q++ = c == '.' ? decimal_point[0] : c;
  }
  *q = '\0';
  /* On ERANGE strtod gives +-HUGE_VAL (overflow) or 0 or a denormal
   * (underflow): what Python's float() returns, so errno is not looked at. */
  v = strtod(buf, &parsed_end);
  ok = parsed_end == q;
  if (buf != stackbuf) free(buf);
  if (!ok) return BP_EINVAL;
  *out = v;
  return 0;
}

/* "1.5": a number, but not a whole one; worth a clearer message. */
static int looks_fractional(span_t s) {
  double ignored;
  return memchr(s.p, '.', s.n) != NULL && scan_float(s, &ignored) == 0;
}

int bp_config_parse_integer(const char *text, size_t len, int base, int64_t *out, char *err,
                            size_t errlen) {
  span_t s = span_trim(text, len);
  char q[QUOTE_SIZE];
  int64_t v;
  int rc;

  if (base != 0 && (base < 2 || base > 36))
    return fail(err, errlen, "invalid base %d (must be 0 or 2 to 36)", base);
  if (s.n == 0) return fail_empty(err, errlen);

  rc = scan_integer(s, base, &v);
  if (rc == -ERANGE) return fail(err, errlen, "integer out of range: %s", quote(s, q, sizeof q));
  if (rc != 0) {
    if ((base == 10 || base == 0) && looks_fractional(s))
      return fail(err, errlen, "expected a whole number, got %s", quote(s, q, sizeof q));
    if (base == 10 || base == 0)
      return fail(err, errlen, "expected an integer, got %s", quote(s, q, sizeof q));
    return fail(err, errlen, "expected a base-%d integer, got %s", base, quote(s, q, sizeof q));
  }
  *out = v;
  return BP_OK;
}

int bp_config_parse_float(const char *text, size_t len, double *out, char *err, size_t errlen) {
  span_t s = span_trim(text, len);
  char q[QUOTE_SIZE];
  double v;

  if (s.n == 0) return fail_empty(err, errlen);
  if (scan_float(s, &v) != 0)
    return fail(err, errlen, "expected a number, got %s", quote(s, q, sizeof q));
  *out = v;
  return BP_OK;
}

int bp_config_parse_boolean(const char *text, size_t len, int *out, char *err, size_t errlen) {
  span_t s = span_trim(text, len);
  char q[QUOTE_SIZE];

  if (s.n == 0) return fail_empty(err, errlen);
  if (span_ieq(s, "true")) {
    *out = 1;
    return BP_OK;
  }
  if (span_ieq(s, "false")) {
    *out = 0;
    return BP_OK;
  }
  return fail(err, errlen, "expected \"true\" or \"false\", got %s", quote(s, q, sizeof q));
}

/* ---- time spans and percentages --------------------------------------- */

static const struct {
  const char *name;
  double seconds;
} timespan_units[] = {
    {"millisecond", 0.001}, {"second", 1}, {"minute", 60}, {"hour", 3600}, {"day", 86400},
};

static int next_token(const char **p, const char *end, span_t *tok) {
  while (*p < end && is_space((unsigned char)**p)) (*p)++;
  if (*p == end) return 0;
  tok->p = *p;
  while (*p < end && !is_space((unsigned char)**p)) (*p)++;
  tok->n = (size_t)(*p - tok->p);
  return 1;
}

int bp_config_parse_timespan(const char *text, size_t len, int flags, double *out, char *err,
                             size_t errlen) {
  span_t s = span_trim(text, len), count_tok, unit_tok, extra;
  const char *p = s.p, *end = s.p + s.n;
  char q[QUOTE_SIZE];
  int allow_infinite = flags & BP_CONFIG_TIMESPAN_INFINITE;
  int64_t count;
  size_t i;
  int rc;

  if (s.n == 0) return fail_empty(err, errlen);
  if (allow_infinite && span_ieq(s, "infinite")) {
    *out = HUGE_VAL;
    return BP_OK;
  }
  if (!next_token(&p, end, &count_tok) || !next_token(&p, end, &unit_tok) ||
      next_token(&p, end, &extra)) {
    return fail(err, errlen, "expected a count and a unit, e.g. \"30 seconds\"%s, got %s",
                allow_infinite ? " or \"infinite\"" : "", quote(s, q, sizeof q));
  }

  rc = scan_integer(count_tok, 10, &count);
  if (rc == -ERANGE) return fail(err, errlen, "timespan out of range: %s", quote(s, q, sizeof q));
  if (rc != 0) {
    if (looks_fractional(count_tok))
      return fail(err, errlen, "the count must be a whole number, got %s",
                  quote(count_tok, q, sizeof q));
    return fail(err, errlen, "expected a count and a unit, e.g. \"30 seconds\", got %s",
                quote(s, q, sizeof q));
  }
  if (count < 0 && !(flags & BP_CONFIG_TIMESPAN_NEGATIVE))
    return fail(err, errlen, "timespan must not be negative, got %s", quote(s, q, sizeof q));
  if (count == 0) count = 0; /* "-0 seconds": no -0.0 */

  for (i = 0; i < BP_ARRAY_SIZE(timespan_units); i++) {
    /* Every trailing "s" goes, as Baseplate.py's rstrip("s") depluralizes:
     * "seconds" and "secondss" are seconds, "s" alone is no unit. */
    span_t singular = unit_tok;
    while (singular.n > 0 && lower((unsigned char)singular.p[singular.n - 1]) == 's') singular.n--;
    if (span_ieq(singular, timespan_units[i].name)) {
      /* count / 1000 rather than count * 0.001: 30 ms is exactly 0.03. */
      if (timespan_units[i].seconds < 1)
        *out = (double)count / 1000.0;
      else
        *out = (double)count * timespan_units[i].seconds;
      return BP_OK;
    }
  }
  return fail(err, errlen,
              "unknown unit %s (expected milliseconds, seconds, minutes, hours or days)",
              quote(unit_tok, q, sizeof q));
}

int bp_config_parse_percent(const char *text, size_t len, double *out, char *err, size_t errlen) {
  span_t s = span_trim(text, len), number;
  char q[QUOTE_SIZE];
  double v;

  if (s.n == 0) return fail_empty(err, errlen);
  if (s.p[s.n - 1] != '%')
    return fail(err, errlen, "expected a percentage ending in \"%%\", got %s",
                quote(s, q, sizeof q));
  number = span_trim(s.p, s.n - 1);
  if (number.n == 0 || scan_float(number, &v) != 0)
    return fail(err, errlen, "expected a number before \"%%\", got %s", quote(s, q, sizeof q));
  if (!(v >= 0.0 && v <= 100.0))
    return fail(err, errlen, "percentage must be from 0%% to 100%%, got %s", quote(s, q, sizeof q));
  *out = v == 0.0 ? 0.0 : v / 100.0; /* no -0.0 */
  return BP_OK;
}

/* ---- endpoints -------------------------------------------------------- */

/* A port as Python's int() reads it (Baseplate.py's Endpoint takes
 * int(port)): white space around it, a sign, underscores between digits;
 * then 0..65535, since no other port can be bound or connected to. */
static int parse_port(span_t port, int *out) {
  int64_t v;
  port = span_trim(port.p, port.n);
  if (port.n == 0 || scan_integer(port, 10, &v) != 0 || v < 0 || v > 65535) return BP_EINVAL;
  *out = (int)v;
  return 0;
}

static int valid_host_byte(unsigned char c) { return c > 0x20 && c != 0x7f; }

int bp_config_parse_endpoint(const char *text, size_t len, bp_endpoint_t *out, char *err,
                             size_t errlen) {
  span_t s = span_trim(text, len), host, port;
  const char *colon;
  char q[QUOTE_SIZE];
  size_t i;
  int family = BP_AF_INET, portnum;

  if (s.n == 0) return fail_empty(err, errlen);

  if (memchr(s.p, '/', s.n)) {
    if (memchr(s.p, '\0', s.n))
      return fail(err, errlen, "invalid UNIX socket path %s", quote(s, q, sizeof q));
    if (s.n >= BP_ENDPOINT_PATH_SIZE)
      return fail(err, errlen, "UNIX socket path too long (at most %d bytes): %s",
                  BP_ENDPOINT_PATH_SIZE - 1, quote(s, q, sizeof q));
    memset(out, 0, sizeof *out);
    out->family = BP_AF_UNIX;
    memcpy(out->path, s.p, s.n);
    return BP_OK;
  }

  if (s.p[0] == '[') {
    const char *close = memchr(s.p, ']', s.n);
    char addr[BP_ENDPOINT_HOST_SIZE];
    unsigned char bin[16];
    const char *pct;
    size_t addr_len;

    if (!close) return fail(err, errlen, "missing \"]\" in %s", quote(s, q, sizeof q));
    host.p = s.p + 1;
    host.n = (size_t)(close - host.p);
    if (host.n == 0) return fail(err, errlen, "no host specified in %s", quote(s, q, sizeof q));
    if (host.n >= sizeof addr)
      return fail(err, errlen, "host name too long (at most %d bytes): %s",
                  BP_ENDPOINT_HOST_SIZE - 1, quote(s, q, sizeof q));
    /* An optional zone ("fe80::1%eth0") is left for getaddrinfo to judge. */
    pct = memchr(host.p, '%', host.n);
    addr_len = pct ? (size_t)(pct - host.p) : host.n;
    memcpy(addr, host.p, addr_len);
    addr[addr_len] = '\0';
    if (memchr(host.p, '\0', host.n) || inet_pton(AF_INET6, addr, bin) != 1 ||
        (pct && (pct + 1 == host.p + host.n)))
      return fail(err, errlen, "invalid IPv6 address %s", quote(host, q, sizeof q));
    for (i = 0; i < host.n; i++)
      if (!valid_host_byte((unsigned char)host.p[i]))
        return fail(err, errlen, "invalid IPv6 address %s", quote(host, q, sizeof q));
    colon = close + 1;
    if (colon == s.p + s.n)
      return fail(err, errlen, "no port specified in %s", quote(s, q, sizeof q));
    if (*colon != ':')
      return fail(err, errlen, "expected \":\" and a port after \"]\", got %s",
                  quote(s, q, sizeof q));
    family = BP_AF_INET6;
  } else {
    colon = memchr(s.p, ':', s.n);
    if (!colon) return fail(err, errlen, "no port specified in %s", quote(s, q, sizeof q));
    host.p = s.p;
    host.n = (size_t)(colon - s.p);
    if (memchr(colon + 1, ':', (size_t)(s.p + s.n - colon - 1)))
      return fail(err, errlen,
                  "too many \":\" in %s (write IPv6 addresses in brackets, e.g. \"[::1]:80\")",
                  quote(s, q, sizeof q));
    /* An empty host (":80") is Baseplate.py's "": every interface for a
     * listener, this host for a client. */
    if (host.n >= BP_ENDPOINT_HOST_SIZE)
      return fail(err, errlen, "host name too long (at most %d bytes): %s",
                  BP_ENDPOINT_HOST_SIZE - 1, quote(s, q, sizeof q));
    for (i = 0; i < host.n; i++)
      if (!valid_host_byte((unsigned char)host.p[i]))
        return fail(err, errlen, "invalid host %s", quote(host, q, sizeof q));
  }

  port = span_trim(colon + 1, (size_t)(s.p + s.n - colon - 1));
  if (port.n == 0) return fail(err, errlen, "no port specified in %s", quote(s, q, sizeof q));
  if (parse_port(port, &portnum) != 0)
    return fail(err, errlen, "invalid port %s (expected a number from 0 to 65535)",
                quote(port, q, sizeof q));

  memset(out, 0, sizeof *out);
  out->family = family;
  out->port = portnum;
  memcpy(out->host, host.p, host.n);
  return BP_OK;
}

/* ---- base64 ----------------------------------------------------------- */

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int bp_config_parse_base64(const char *text, size_t len, unsigned char *out, size_t cap,
                           size_t *outlen, char *err, size_t errlen) {
  span_t s = span_trim(text, len);
  size_t i, data = 0, pad = 0, need, o = 0;
  uint32_t acc = 0;
  int bits = 0;

  if (s.n == 0) return fail_empty(err, errlen);

  for (i = 0; i < s.n; i++) {
    unsigned char c = (unsigned char)s.p[i];
    if (is_space(c)) continue;
    if (c == '=') {
      pad++;
      continue;
    }
    if (b64_value(c) < 0) {
      if (c > 0x20 && c < 0x7f)
        return fail(err, errlen, "invalid base64 character '%c' at offset %zu", c, i);
      return fail(err, errlen, "invalid base64 character 0x%02x at offset %zu", c, i);
    }
    if (pad) return fail(err, errlen, "invalid base64: data after the \"=\" padding");
    data++;
  }
  if (data % 4 == 1)
    return fail(err, errlen,
                "invalid base64: %zu data characters cannot be 1 more than a multiple of 4", data);
  if (pad > 2 || (data + pad) % 4 != 0 || (pad && data % 4 == 0))
    return fail(err, errlen, "incorrect base64 padding");

  need = data / 4 * 3 + (data % 4) * 3 / 4;
  *outlen = need;
  if (need > cap) {
    fail(err, errlen, "base64 value needs %zu bytes, the buffer holds %zu", need, cap);
    return BP_ETOOBIG;
  }
  for (i = 0; i < s.n; i++) {
    int v = b64_value((unsigned char)s.p[i]);
    if (v < 0) continue; /* white space and padding, checked above */
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return BP_OK;
}

/* ---- users and groups ------------------------------------------------- */

#define NAME_SIZE 256
#define LOOKUP_STACK 1024
#define LOOKUP_MAX (1 << 20)

/* A decimal id as Python's int() reads it ("+5", "1_000"), from 0 to
 * (uid_t)-1 exclusive: -1 means "no change" to setuid/chown, and other
 * negative ids do not exist. Returns BP_OK, or BP_EINVAL if s is not an
 * integer, -ERANGE if it is but is out of range. */
static int scan_id(span_t s, uint32_t *out) {
  int64_t v;
  int rc = scan_integer(s, 10, &v);
  if (rc != 0) return rc;
  if (v < 0 || v >= (int64_t)UINT32_MAX) return -ERANGE;
  *out = (uint32_t)v;
  return 0;
}

/* strerror() is not thread-safe; these are the failures getpwnam_r documents. */
static const char *lookup_error(int rc) {
  switch (rc) {
    case EINTR:
      return "interrupted";
    case EIO:
      return "I/O error";
    case EMFILE:
    case ENFILE:
      return "too many open files";
    case ENOMEM:
      return "out of memory";
    case ERANGE:
      return "the entry is too large";
  }
  return "lookup error";
}

static int lookup_failed(int rc) {
  /* getpwnam_r(3): these may all mean "no such name". */
  return rc != 0 && rc != ENOENT && rc != ESRCH && rc != EBADF && rc != EPERM;
}

static int parse_unix_id(const char *text, size_t len, int is_group, uint32_t *out, char *err,
                         size_t errlen) {
  const char *what = is_group ? "group" : "user";
  span_t s = span_trim(text, len);
  char q[QUOTE_SIZE], name[NAME_SIZE], stackbuf[LOOKUP_STACK], *buf = stackbuf;
  size_t bufsize = sizeof stackbuf;
  struct passwd pw, *pwres = NULL;
  struct group gr, *grres = NULL;
  int rc;

  if (s.n == 0) return fail_empty(err, errlen);
  rc = scan_id(s, out);
  if (rc == 0) return BP_OK;
  if (rc == -ERANGE) return fail(err, errlen, "%s id out of range: %s", what, quote(s, q, sizeof q));
  if (s.n >= sizeof name || memchr(s.p, '\0', s.n))
    return fail(err, errlen, "unknown %s %s", what, quote(s, q, sizeof q));
  memcpy(name, s.p, s.n);
  name[s.n] = '\0';

  for (;;) {
    if (is_group)
      rc = getgrnam_r(name, &gr, buf, bufsize, &grres);
    else
      rc = getpwnam_r(name, &pw, buf, bufsize, &pwres);
    if (rc != ERANGE || bufsize >= LOOKUP_MAX) break;
    /* A big group (many members) needs more room than the stack buffer. */
    if (buf != stackbuf) free(buf);
    bufsize *= 4;
    buf = malloc(bufsize);
    if (!buf) {
      rc = ENOMEM;
      break;
    }
  }
  if (buf != stackbuf) free(buf);

  if (lookup_failed(rc))
    return fail(err, errlen, "cannot look up %s %s: %s", what, quote(s, q, sizeof q),
                lookup_error(rc));
  if (is_group ? grres == NULL : pwres == NULL)
    return fail(err, errlen, "unknown %s %s", what, quote(s, q, sizeof q));
  *out = is_group ? (uint32_t)gr.gr_gid : (uint32_t)pw.pw_uid;
  return BP_OK;
}

int bp_config_parse_unix_user(const char *text, size_t len, uint32_t *uid, char *err,
                              size_t errlen) {
  return parse_unix_id(text, len, 0, uid, err, errlen);
}

int bp_config_parse_unix_group(const char *text, size_t len, uint32_t *gid, char *err,
                               size_t errlen) {
  return parse_unix_id(text, len, 1, gid, err, errlen);
}
