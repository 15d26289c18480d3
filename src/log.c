/* Logging. See include/baseplate/log.h. Single-threaded by design: one
 * process, one loop; every write is one write(2) of a whole line. */
#include "baseplate/log.h"
#include "baseplate/span.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  char *name;
  size_t len;
  int level;
} bp_logger_level_t;

static int root_level = BP_LOG_INFO;
static bp_logger_level_t *levels;
static int nlevels;
static int format_setting = BP_LOG_FORMAT_AUTO;
static int format_resolved = -1;
static const char *current_trace_id;

/* The thread that loaded the library: the loop's. A line logged from
 * another (a library's own thread, the loop's thread pool) must not read
 * the loop's current span, nor the capture buffer the loop's thread owns:
 * it goes to stdout alone. */
static pthread_t loop_thread;
__attribute__((constructor)) static void remember_loop_thread(void) { loop_thread = pthread_self(); }
static int on_loop_thread(void) { return pthread_equal(pthread_self(), loop_thread); }

const char *bp_log_level_name(int level) {
  if (level >= BP_LOG_CRITICAL) return "CRITICAL";
  if (level >= BP_LOG_ERROR) return "ERROR";
  if (level >= BP_LOG_WARNING) return "WARNING";
  if (level >= BP_LOG_INFO) return "INFO";
  return "DEBUG";
}

int bp_log_level_from_name(const char *name) {
  static const struct { const char *n; int l; } t[] = {
      {"DEBUG", BP_LOG_DEBUG},     {"INFO", BP_LOG_INFO},   {"WARNING", BP_LOG_WARNING},
      {"WARN", BP_LOG_WARNING},    {"ERROR", BP_LOG_ERROR}, {"CRITICAL", BP_LOG_CRITICAL},
      {"FATAL", BP_LOG_CRITICAL},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (strcasecmp(name, t[i].n) == 0) return t[i].l;
  return BP_EINVAL;
}

int bp_log_set_level(const char *logger, int level) {
  size_t len;
  if (!logger || !*logger) {
    root_level = level;
    return BP_OK;
  }
  len = strlen(logger);
  for (int i = 0; i < nlevels; i++)
    if (levels[i].len == len && memcmp(levels[i].name, logger, len) == 0) {
      levels[i].level = level;
      return BP_OK;
    }
  bp_logger_level_t *n = realloc(levels, (nlevels + 1) * sizeof *n);
  if (!n) return BP_ENOMEM;
  levels = n;
  if (!(levels[nlevels].name = strdup(logger))) return BP_ENOMEM;
  levels[nlevels].len = len;
  levels[nlevels].level = level;
  nlevels++;
  return BP_OK;
}

static int level_of(const char *logger, size_t len) {
  size_t best = 0;
  int level = root_level;
  for (int i = 0; i < nlevels; i++) {
    size_t l = levels[i].len;
    if (l <= len && l > best && memcmp(levels[i].name, logger, l) == 0 &&
        (l == len || logger[l] == '.')) {
      best = l;
      level = levels[i].level;
    }
  }
  return level;
}

int bp_log_get_level(const char *logger) {
  return logger ? level_of(logger, strlen(logger)) : root_level;
}

int bp_log_enabled(const char *logger, int level) {
  if (level < root_level && nlevels == 0) return 0;
  return level >= (logger ? level_of(logger, strlen(logger)) : root_level);
}

void bp_log_set_format(int format) {
  format_setting = format;
  format_resolved = -1;
}

void bp_log_set_trace_id(const char *trace_id) { current_trace_id = trace_id; }

/* --- line assembly ---------------------------------------------------------- */

typedef struct {
  char stack[2048];
  char *p;
  size_t len, cap;
  int oom;
} linebuf_t;

static void lb_init(linebuf_t *b) {
  b->p = b->stack;
  b->len = 0;
  b->cap = sizeof b->stack;
  b->oom = 0;
}

static void lb_put(linebuf_t *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap * 2;
    while (cap < b->len + n) cap *= 2;
    char *np = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    if (b->p == b->stack) memcpy(np, b->stack, b->len);
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void lb_puts(linebuf_t *b, const char *s) { lb_put(b, s, strlen(s)); }

static void lb_json_str(linebuf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t start = 0;
  lb_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    lb_put(b, s + start, i - start);
    start = i + 1;
    switch (c) {
      case '"': lb_put(b, "\\\"", 2); break;
      case '\\': lb_put(b, "\\\\", 2); break;
      case '\n': lb_put(b, "\\n", 2); break;
      case '\r': lb_put(b, "\\r", 2); break;
      case '\t': lb_put(b, "\\t", 2); break;
      default: {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        lb_put(b, u, 6);
      }
    }
  }
  lb_put(b, s + start, n - start);
  lb_put(b, "\"", 1);
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { /* stdout made non-blocking by someone: spin politely */
        usleep(100);
        continue;
      }
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

/* A line as Baseplate.py's JSON formatter writes it (no newline). */
static void build_json(linebuf_t *b, const char *lname, const char *logger, size_t logger_len,
                       const char *msg, size_t msg_len, const char *module, int lineno,
                       const char *exc_info, const char *extra) {
  char num[32];
  lb_puts(b, "{\"message\": ");
  lb_json_str(b, msg, msg_len);
  lb_puts(b, ", \"level\": \"");
  lb_puts(b, lname);
  lb_puts(b, "\", \"name\": ");
  lb_json_str(b, logger_len ? logger : "root", logger_len ? logger_len : 4);
  snprintf(num, sizeof num, ", \"process\": %ld", (long)getpid());
  lb_puts(b, num);
  {
    /* set explicitly, else the span whose code runs now (made lazily) */
    const char *tid = NULL;
    if (on_loop_thread()) {
      tid = current_trace_id;
      if (!tid && bp_span_current()) tid = bp_span_trace_id_string(bp_span_current());
    }
    if (tid) {
      lb_puts(b, ", \"traceID\": ");
      lb_json_str(b, tid, strlen(tid));
    }
  }
  if (module) {
    lb_puts(b, ", \"module\": ");
    lb_json_str(b, module, strlen(module));
    snprintf(num, sizeof num, ", \"lineno\": %d", lineno);
    lb_puts(b, num);
  }
  if (exc_info && *exc_info) {
    lb_puts(b, ", \"exc_info\": ");
    lb_json_str(b, exc_info, strlen(exc_info));
  }
  if (extra && *extra) {
    lb_puts(b, ", ");
    lb_puts(b, extra);
  }
  lb_puts(b, "}");
}

/* Lines kept for baseplate.testing (bp_log_capture), as JSON lines. */
static struct {
  int on, quiet;
  char *p;
  size_t len, cap;
} capture;

void bp_log_capture(int on, int quiet) {
  capture.on = on;
  capture.quiet = on && quiet;
  if (!on) bp_log_capture_clear();
}

const char *bp_log_captured(size_t *len) {
  *len = capture.len;
  return capture.p ? capture.p : "";
}

void bp_log_capture_clear(void) {
  free(capture.p);
  capture.p = NULL;
  capture.len = capture.cap = 0;
}

static void capture_line(const char *p, size_t n) {
  if (capture.len + n > ((size_t)64 << 20)) return; /* (a test's log, not a store: 64 MiB at most) */
  if (capture.len + n > capture.cap) {
    size_t cap = capture.cap ? capture.cap * 2 : 4096;
    char *np;
    while (cap < capture.len + n) cap *= 2;
    if (!(np = realloc(capture.p, cap))) return; /* (a line lost, never a crash) */
    capture.p = np;
    capture.cap = cap;
  }
  memcpy(capture.p + capture.len, p, n);
  capture.len += n;
}

void bp_log_write(int level, const char *logger, size_t logger_len, const char *msg,
                  size_t msg_len, const char *module, int lineno, const char *exc_info,
                  const char *extra) {
  linebuf_t b;
  char num[32];
  const char *lname = bp_log_level_name(level);

  if (!logger) logger = "", logger_len = 0;
  if (level < level_of(logger, logger_len)) return;
  if (format_resolved < 0)
    format_resolved = format_setting != BP_LOG_FORMAT_AUTO ? format_setting
                      : isatty(STDOUT_FILENO)            ? BP_LOG_FORMAT_TEXT
                                                         : BP_LOG_FORMAT_JSON;
  lb_init(&b);
  if (capture.on && on_loop_thread()) {
    build_json(&b, lname, logger, logger_len, msg, msg_len, module, lineno, exc_info, extra);
    lb_put(&b, "\n", 1);
    if (!b.oom) capture_line(b.p, b.len);
    if (capture.quiet || format_resolved != BP_LOG_FORMAT_TEXT) {
      if (!capture.quiet && !b.oom) write_all(b.p, b.len);
      if (b.p != b.stack) free(b.p);
      return;
    }
    if (b.p != b.stack) free(b.p);
    lb_init(&b);
  }
  if (format_resolved == BP_LOG_FORMAT_TEXT) {
    /* "2026-11-22 03:04:39,123 INFO     [baseplate.server] message": the
     * local time (as Python's asctime), the level, the logger. */
    struct timespec ts;
    struct tm tm;
    char when[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(num, sizeof num, ",%03d ", (int)(ts.tv_nsec / 1000000));
    lb_puts(&b, when);
    lb_puts(&b, num);
    snprintf(num, sizeof num, "%-8s [", lname);
    lb_puts(&b, num);
    if (logger_len) {
      lb_put(&b, logger, logger_len);
    } else {
      lb_puts(&b, "root");
    }
    lb_puts(&b, "] ");
    lb_put(&b, msg, msg_len);
    if (exc_info && *exc_info) {
      lb_put(&b, "\n", 1);
      lb_puts(&b, exc_info);
    }
  } else {
    build_json(&b, lname, logger, logger_len, msg, msg_len, module, lineno, exc_info, extra);
  }
  lb_put(&b, "\n", 1);
  if (!b.oom) write_all(b.p, b.len);
  if (b.p != b.stack) free(b.p);
}

void bp_log(int level, const char *logger, const char *fmt, ...) {
  char stack[1024], *msg = stack;
  va_list ap;
  int n;
  size_t ll = logger ? strlen(logger) : 0;

  if (level < level_of(logger ? logger : "", ll)) return;
  va_start(ap, fmt);
  n = vsnprintf(stack, sizeof stack, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof stack) {
    if (!(msg = malloc((size_t)n + 1))) return;
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  bp_log_write(level, logger, ll, msg, (size_t)n, NULL, 0, NULL, NULL);
  if (msg != stack) free(msg);
}

void bp__log_reset(void) {
  for (int i = 0; i < nlevels; i++) free(levels[i].name);
  free(levels);
  levels = NULL;
  nlevels = 0;
  root_level = BP_LOG_INFO;
}
