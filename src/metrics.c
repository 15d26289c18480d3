/*
 * StatsD metrics: the UDP transport and per-request batches. See
 * include/baseplate/metrics.h; the wire format is Baseplate.py's.
 *
 * Ownership: a batch keeps a pointer to its transport, which must outlive
 * it. The transport's loop handles (the flush timer, and the check that
 * sends full datagrams at the end of the loop iteration) live in their own
 * small block (a closable, so that bp__loop_shutdown() sends what is pending
 * and closes them); the block is freed by the handles' close callbacks, so
 * bp_metrics_free() can free the transport at once and the loop reclaims
 * the block on its next turn.
 *
 * Sending: lines are packed into datagrams of datagram_size bytes. A full
 * datagram leaves at the end of a loop iteration (the check phase, right
 * after the I/O callbacks) at least SEND_SPACING_MS after the previous send,
 * together with every other full one, in one sendmmsg(); a datagram that is
 * not full leaves when the flush timer fires (flush_interval after its first
 * line), and that timer also sends any full one still waiting. So no line
 * waits longer than flush_interval, and at high request rates the datagrams
 * go several per system call: a loopback send costs the sender mostly the
 * wake-up of the receiver, and 4 datagrams at once cost about 1.6 times one
 * (measured on a 2-core VM: 12.3 us for one, 19.6 us for four).
 *
 * Memory on the request path: a batch owns three growable buffers (other
 * lines, counter keys, a hash index) that are kept across flushes, so a
 * reused batch records and flushes without malloc once it has warmed up.
 * The transport's datagram buffers are allocated once: READY_MAX + 1 of
 * datagram_size bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* qsort_r */
#endif
#include "baseplate/metrics.h"
#include "metrics_internal.h"
#include "baseplate/config.h"
#include "baseplate/log.h"
#include "internal.h"
#include "runtime.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOGGER "baseplate.lib.metrics"
#define NUM_SIZE 32               /* a "%g" number and its NUL ("-1.79769e+308" is 13) */
#define NAME_BAD ":|\n"           /* bytes a name cannot hold */
#define TAG_BAD ":|\n,="          /* bytes a tag key or value cannot hold */
#define DEFAULT_DATAGRAM_SIZE 1400
#define DEFAULT_FLUSH_INTERVAL 0.005
#define ERROR_LOG_INTERVAL_NS 1000000000u /* send errors are logged at most once a second */
#define QUOTE_MAX 64                      /* endpoint bytes shown in an error */
#define KEEP_BYTES 65536   /* a batch's buffers above this are freed when it is emptied */
#define KEEP_COUNTERS 1024 /* and its counters above this */

/* --- small helpers ------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

/* Room for `extra` more bytes. */
static int buf_reserve(buf_t *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra <= b->cap - b->len) return BP_OK;
  if (extra > SIZE_MAX - b->len) return BP_ENOMEM;
  need = b->len + extra;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (!(p = realloc(b->p, cap))) return BP_ENOMEM;
  b->p = p;
  b->cap = cap;
  return BP_OK;
}

/* After buf_reserve. */
static void buf_put(buf_t *b, const void *s, size_t n) {
  if (n == 0) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static int buf_append(buf_t *b, const void *s, size_t n) {
  if (buf_reserve(b, n) != BP_OK) return BP_ENOMEM;
  buf_put(b, s, n);
  return BP_OK;
}

static void buf_free(buf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* `v` as "%g" into dst (NUM_SIZE bytes) with snprintf; returns the length.
 * StatsD wants a '.' whatever LC_NUMERIC someone set. */
static size_t fmt_g_slow(char *dst, double v) {
  int n = snprintf(dst, NUM_SIZE, "%g", v);
  if (n < 0) n = 0;
  for (int i = 0; i < n; i++)
    if (dst[i] == ',') dst[i] = '.';
  return (size_t)n;
}

static const double pow10_tab[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* `v` as "%g" into dst, without printf for what metrics carry on every
 * request (counts, and times from 0.0001 up to 999999.5): the value is
 * scaled to 6 significant digits and rounded; near a rounding tie, or out of
 * that range, snprintf decides. Same output as "%g" either way. */
static size_t fmt_g(char *dst, double v) {
  double a = v < 0 ? -v : v, scaled, frac;
  char digits[8];
  size_t o = 0;
  int x, i, nd;
  int64_t r;
  if (!(a >= 1e-4 && a < 999999.5)) {
    if (a == 0 && !signbit(v)) {
      dst[0] = '0';
      return 1;
    }
    return fmt_g_slow(dst, v);
  }
  /* x: the decimal exponent, 10^x <= a < 10^(x+1), from -4 to 5 */
  if (a >= 1)
    x = a >= 1e3 ? (a >= 1e5 ? 5 : a >= 1e4 ? 4 : 3) : (a >= 1e2 ? 2 : a >= 1e1 ? 1 : 0);
  else
    x = a >= 1e-1 ? -1 : a >= 1e-2 ? -2 : a >= 1e-3 ? -3 : -4;
  scaled = a * pow10_tab[5 - x]; /* 6 significant digits before the point */
  r = (int64_t)scaled;           /* floor: scaled > 0 */
  frac = scaled - (double)r;
  if (frac - 0.5 < 1e-7 && 0.5 - frac < 1e-7) return fmt_g_slow(dst, v);
  r += frac >= 0.5;
  if (r >= 1000000 || r < 100000) return fmt_g_slow(dst, v); /* rounds into another decade */
  {
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    uint32_t u = (uint32_t)r;
    memcpy(digits, pairs + 2 * (u / 10000), 2);
    memcpy(digits + 2, pairs + 2 * (u / 100 % 100), 2);
    memcpy(digits + 4, pairs + 2 * (u % 100), 2);
  }
  nd = 6;
  while (digits[nd - 1] == '0') nd--; /* %g drops trailing zeros (digits[0] is not 0) */
  if (v < 0) dst[o++] = '-';
  if (x >= 0) {
    for (i = 0; i <= x; i++) dst[o++] = digits[i];
    /* i = x + 1: the digits left are decimals */
    if (nd > i) dst[o++] = '.';
  } else {
    dst[o++] = '0';
    dst[o++] = '.';
    for (i = 0; i < -x - 1; i++) dst[o++] = '0';
    i = 0;
  }
  for (; i < nd; i++) dst[o++] = digits[i];
  return o;
}

size_t bp__metrics_fmt_g(char *dst, double v) { return fmt_g(dst, v); }

static void strip_dots(const char **p, size_t *n) {
  while (*n > 0 && (*p)[0] == '.') {
    (*p)++;
    (*n)--;
  }
  while (*n > 0 && (*p)[*n - 1] == '.') (*n)--;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!err || errlen == 0) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* `s` double-quoted, escaped and shortened into buf (QUOTE_MAX * 4 + 8 bytes). */
static const char *quote(const char *s, char *buf) {
  return bp__quote(s, strlen(s), QUOTE_MAX, buf, QUOTE_MAX * 4 + 8);
}

/* --- the transport ------------------------------------------------------------ */

typedef struct metrics_timer_s {
  bp__closable_t closable; /* first: bp__loop_shutdown() finds it through handle.data */
  uv_timer_t handle;
  uv_check_t check;    /* sends the full datagrams at the end of the iteration */
  int open;            /* handles not closed yet */
  bp_metrics_t *owner; /* NULL once the transport let go of it */
} metrics_timer_t;

/* Full datagrams that may wait (more leave at once), and the least time
 * between two sends of full datagrams. */
#define READY_MAX 16
#define SEND_SPACING_MS 1

struct bp_metrics_s {
  int fd; /* connected UDP socket, or -1: no endpoint */
  int log_if_unconfigured;
  int swallow_network_errors;
  size_t datagram_size;
  uint64_t interval_ms;
  char *bufs;    /* READY_MAX + 1 datagram buffers: the full ones first, then pending */
  char *pending; /* the datagram being filled: lines waiting, joined by "\n" */
  size_t pending_len;
  unsigned long long pending_lines;
  int nready; /* full datagrams waiting in bufs */
  uint64_t last_send_ms; /* loop time of the last send of full datagrams */
  size_t ready_len[READY_MAX];
  unsigned long long ready_lines[READY_MAX];
  int check_active;
  metrics_timer_t *timer; /* NULL without an endpoint and after loop shutdown */
  int timer_armed;
  unsigned long long datagrams, lines;
  uint64_t last_error_ns;
  int error_logged;
  /* Counters of the batches flushed since the last send, summed across
   * batches (timers, gauges and histograms never are) and written when the
   * flush timer fires: one line per counter, not one per request. */
  bp_metrics_batch_t *window;
  unsigned long window_gen; /* changes whenever the window is emptied */
};

static unsigned long window_gens;

static void flush_window(bp_metrics_t *m);

void bp_metrics_options_init(bp_metrics_options_t *o) {
  memset(o, 0, sizeof *o);
  o->datagram_size = DEFAULT_DATAGRAM_SIZE;
  o->flush_interval = DEFAULT_FLUSH_INTERVAL;
}

static void report_send_error(bp_metrics_t *m, int err) {
  uint64_t now = uv_hrtime();
  if (m->error_logged && now - m->last_error_ns < ERROR_LOG_INTERVAL_NS) return;
  m->error_logged = 1;
  m->last_error_ns = now;
  bp_log(m->swallow_network_errors ? BP_LOG_DEBUG : BP_LOG_ERROR, LOGGER,
         "Failed to send metrics: %s", strerror(err));
}

/* Datagrams, each one message of msgs, in as few system calls as the kernel
 * allows; one that fails is dropped (never blocks). */
static void send_datagrams(bp_metrics_t *m, struct mmsghdr *msgs, int n,
                           const unsigned long long *nlines) {
  int i = 0, retried = -1;
  while (i < n) {
    int r = sendmmsg(m->fd, msgs + i, (unsigned)(n - i), MSG_DONTWAIT | MSG_NOSIGNAL);
    int err;
    if (r > 0) {
      for (int k = i; k < i + r; k++) m->lines += nlines[k];
      m->datagrams += (unsigned long long)r;
      i += r;
      continue;
    }
    err = r < 0 ? errno : EIO;
    if (err == EINTR) continue;
    report_send_error(m, err);
    /* ECONNREFUSED is an ICMP error left by an earlier datagram: this one
     * was not sent yet, so it gets a second chance. */
    if (err == ECONNREFUSED && retried != i) {
      retried = i;
      continue;
    }
    i++;
  }
}

/* One datagram of the bytes in iov, now. */
static void send_datagram(bp_metrics_t *m, struct iovec *iov, int iovcnt,
                          unsigned long long nlines) {
  struct mmsghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_hdr.msg_iov = iov;
  msg.msg_hdr.msg_iovlen = (size_t)iovcnt;
  send_datagrams(m, &msg, 1, &nlines);
}

/* Send the full datagrams; what is pending moves to the first buffer. */
static void send_ready(bp_metrics_t *m) {
  struct mmsghdr msgs[READY_MAX];
  struct iovec iov[READY_MAX];
  size_t stride = m->datagram_size + 1;
  if (m->nready == 0) return;
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < m->nready; i++) {
    iov[i].iov_base = m->bufs + (size_t)i * stride;
    iov[i].iov_len = m->ready_len[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  send_datagrams(m, msgs, m->nready, m->ready_lines);
  if (m->timer) m->last_send_ms = uv_now(uv_default_loop());
  if (m->pending_len > 0) memcpy(m->bufs, m->pending, m->pending_len);
  m->pending = m->bufs;
  m->nready = 0;
}

static void check_fired(uv_check_t *h);

/* The datagram being filled is full: it waits for the check phase (or goes
 * now without a loop, or when READY_MAX wait). */
static void ready_pending(bp_metrics_t *m) {
  if (m->pending_len == 0) return;
  m->ready_len[m->nready] = m->pending_len;
  m->ready_lines[m->nready] = m->pending_lines;
  m->nready++;
  m->pending += m->datagram_size + 1;
  m->pending_len = 0;
  m->pending_lines = 0;
  if (m->nready == READY_MAX || !m->timer) {
    send_ready(m);
  } else if (!m->check_active) {
    uv_check_start(&m->timer->check, check_fired);
    m->check_active = 1;
  }
}

static size_t window_count(const bp_metrics_t *m);

/* Everything waiting leaves now. */
static void send_pending(bp_metrics_t *m) {
  if (m->timer_armed && window_count(m) == 0) { /* counters still wait for it */
    uv_timer_stop(&m->timer->handle);
    m->timer_armed = 0;
  }
  if (m->pending_len > 0) {
    m->ready_len[m->nready] = m->pending_len;
    m->ready_lines[m->nready] = m->pending_lines;
    m->nready++;
    m->pending_len = 0;
    m->pending_lines = 0;
  }
  send_ready(m);
}

/* Python's repr() of the line's bytes, after "Would send metric ". */
static void log_unsent(const struct iovec *iov, int iovcnt) {
  static const char prefix[] = "Would send metric b";
  static const char hex[] = "0123456789abcdef";
  char stack[512], *msg = stack, q = '\'';
  size_t need = sizeof prefix + 2, o = 0;
  int has_single = 0, has_double = 0;

  for (int k = 0; k < iovcnt; k++) {
    const char *p = iov[k].iov_base;
    need += iov[k].iov_len * 4;
    has_single |= memchr(p, '\'', iov[k].iov_len) != NULL;
    has_double |= memchr(p, '"', iov[k].iov_len) != NULL;
  }
  if (has_single && !has_double) q = '"';
  if (need > sizeof stack && !(msg = malloc(need))) return;
  memcpy(msg, prefix, sizeof prefix - 1);
  o = sizeof prefix - 1;
  msg[o++] = q;
  for (int k = 0; k < iovcnt; k++) {
    const unsigned char *p = iov[k].iov_base;
    for (size_t i = 0; i < iov[k].iov_len; i++) {
      unsigned char c = p[i];
      if (c == '\\' || c == (unsigned char)q) {
        msg[o++] = '\\';
        msg[o++] = (char)c;
      } else if (c == '\t' || c == '\n' || c == '\r') {
        msg[o++] = '\\';
        msg[o++] = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
      } else if (c < 0x20 || c >= 0x7f) {
        msg[o++] = '\\';
        msg[o++] = 'x';
        msg[o++] = hex[c >> 4];
        msg[o++] = hex[c & 15];
      } else {
        msg[o++] = (char)c;
      }
    }
  }
  msg[o++] = q;
  bp_log_write(BP_LOG_DEBUG, LOGGER, sizeof LOGGER - 1, msg, o, NULL, 0, NULL, NULL);
  if (msg != stack) free(msg);
}

static void timer_fired(uv_timer_t *t);

/* One line, given in one or two parts. Lines are never split: a line longer
 * than a datagram goes alone. */
static void put_line(bp_metrics_t *m, const char *a, size_t an, const char *b, size_t bn) {
  struct iovec iov[2] = {{(void *)a, an}, {(void *)b, bn}};
  int iovcnt = bn ? 2 : 1;
  size_t n = an + bn;

  if (m->fd < 0) {
    m->lines++;
    if (m->log_if_unconfigured && bp_log_enabled(LOGGER, BP_LOG_DEBUG)) log_unsent(iov, iovcnt);
    return;
  }
  if (n > m->datagram_size) {
    send_pending(m);
    send_datagram(m, iov, iovcnt, 1);
    return;
  }
  if (m->pending_len > 0 && m->pending_len + 1 + n > m->datagram_size) ready_pending(m);
  if (m->pending_len > 0) m->pending[m->pending_len++] = '\n';
  memcpy(m->pending + m->pending_len, a, an);
  if (bn) memcpy(m->pending + m->pending_len + an, b, bn);
  m->pending_len += n;
  m->pending_lines++;
  if (m->pending_len + 2 > m->datagram_size) {
    ready_pending(m); /* not even "\n" and one byte fit any more */
  } else if (m->timer && !m->timer_armed) {
    uv_timer_start(&m->timer->handle, timer_fired, m->interval_ms, 0);
    m->timer_armed = 1;
  }
}

static void timer_fired(uv_timer_t *t) {
  metrics_timer_t *tb = t->data;
  if (!tb->owner) return;
  tb->owner->timer_armed = 0;
  flush_window(tb->owner);
  send_pending(tb->owner);
}

static void check_fired(uv_check_t *h) {
  metrics_timer_t *tb = h->data;
  bp_metrics_t *m = tb->owner;
  if (m && m->nready > 0 && uv_now(h->loop) - m->last_send_ms < SEND_SPACING_MS)
    return; /* too soon: look again next iteration (the flush timer is the backstop) */
  uv_check_stop(h);
  if (!m) return;
  m->check_active = 0;
  send_ready(m);
}

static void timer_closed(uv_handle_t *h) {
  metrics_timer_t *tb = h->data;
  if (--tb->open == 0) free(tb);
}

/* At loop shutdown (through the closable) and from bp_metrics_free(): send
 * what waits, then close the handles. The transport stays usable: without
 * them, each batch is sent as soon as it is flushed. */
static void timer_close(bp__closable_t *c) {
  metrics_timer_t *tb = (metrics_timer_t *)c;
  bp_metrics_t *m = tb->owner;
  if (m) {
    flush_window(m);
    send_pending(m);
    m->timer = NULL;
    m->check_active = 0;
    tb->owner = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&tb->handle)) {
    uv_close((uv_handle_t *)&tb->handle, timer_closed);
    uv_close((uv_handle_t *)&tb->check, timer_closed);
  }
}

static int open_socket(bp_metrics_t *m, const char *endpoint, char *err, size_t errlen) {
  bp_endpoint_t e;
  struct addrinfo hints, *res = NULL;
  char port[16], q[QUOTE_MAX * 4 + 8];
  int rc, fd;

  if (bp_config_parse_endpoint(endpoint, strlen(endpoint), &e, NULL, 0) != BP_OK ||
      e.family == BP_AF_UNIX || e.port == 0) {
    set_err(err, errlen, "metrics.endpoint: expected host:port, got %s", quote(endpoint, q));
    return BP_EINVAL;
  }
  /* As Baseplate.py: "host:port" is IPv4, "[v6]:port" IPv6. */
  memset(&hints, 0, sizeof hints);
  hints.ai_family = e.family == BP_AF_INET6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(port, sizeof port, "%d", e.port);
  /* ":8125": Python sends to "" (INADDR_ANY), which is this host. */
  if (e.host[0] == '\0') strcpy(e.host, "0.0.0.0");
  if ((rc = getaddrinfo(e.host, port, &hints, &res)) != 0) {
    set_err(err, errlen, "metrics.endpoint: cannot resolve %s: %s", quote(e.host, q),
            rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    return BP_EINVAL;
  }
  fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    set_err(err, errlen, "metrics.endpoint: cannot connect to %s: %s", quote(endpoint, q),
            strerror(errno));
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return BP_EIO;
  }
  freeaddrinfo(res);
  m->fd = fd;
  return BP_OK;
}

bp_metrics_t *bp_metrics_new(const bp_metrics_options_t *o, char *err, size_t errlen) {
  bp_metrics_options_t defaults;
  bp_metrics_t *m;
  double interval;

  if (!o) {
    bp_metrics_options_init(&defaults);
    o = &defaults;
  }
  if (!(m = calloc(1, sizeof *m))) {
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  m->fd = -1;
  m->window_gen = ++window_gens; /* never one a prepared key saw: it may have known a transport at this address */
  m->log_if_unconfigured = o->log_if_unconfigured;
  m->swallow_network_errors = o->swallow_network_errors;
  /* A datagram can never carry more than a batch may hold. */
  m->datagram_size = o->datagram_size > BP_METRICS_MAX_BATCH ? BP_METRICS_MAX_BATCH
                                                             : o->datagram_size;
  interval = o->flush_interval;
  if (!(interval > 0)) interval = 0; /* and NaN */
  if (interval > 86400) interval = 86400;
  m->interval_ms = (uint64_t)(interval * 1000.0 + 0.5);

  if (!o->endpoint || !*o->endpoint) return m;

  if (open_socket(m, o->endpoint, err, errlen) != BP_OK) {
    free(m);
    return NULL;
  }
  m->bufs = malloc((READY_MAX + 1) * (m->datagram_size + 1));
  m->pending = m->bufs;
  m->timer = malloc(sizeof *m->timer);
  if (!m->bufs || !m->timer) {
    set_err(err, errlen, "out of memory");
    close(m->fd);
    free(m->bufs);
    free(m->timer);
    free(m);
    return NULL;
  }
  m->timer->closable.magic = BP_CLOSABLE_MAGIC;
  m->timer->closable.close = timer_close;
  m->timer->owner = m;
  m->timer->open = 2;
  uv_timer_init(uv_default_loop(), &m->timer->handle);
  uv_check_init(uv_default_loop(), &m->timer->check);
  m->timer->handle.data = m->timer;
  m->timer->check.data = m->timer;
  /* Waiting metrics never keep the process alive; shutdown flushes them. */
  uv_unref((uv_handle_t *)&m->timer->handle);
  uv_unref((uv_handle_t *)&m->timer->check);
  return m;
}

void bp_metrics_flush(bp_metrics_t *m) {
  if (m && m->fd >= 0) {
    flush_window(m);
    send_pending(m);
  }
}

void bp_metrics_free(bp_metrics_t *m) {
  if (!m) return;
  if (m->fd >= 0) {
    flush_window(m);
    send_pending(m);
    if (m->timer) timer_close(&m->timer->closable);
    close(m->fd);
  }
  bp_metrics_batch_free(m->window);
  free(m->bufs);
  free(m);
}

int bp_metrics_configured(const bp_metrics_t *m) { return m && m->fd >= 0; }

void bp_metrics_stats(const bp_metrics_t *m, unsigned long long *datagrams,
                      unsigned long long *lines) {
  if (datagrams) *datagrams = m ? m->datagrams : 0;
  if (lines) *lines = m ? m->lines : 0;
}

/* --- batches --------------------------------------------------------------------- */

typedef struct {
  size_t key_off, key_len; /* "name,k=v..." in the batch's keys buffer */
  size_t name_len;         /* the name part of the key */
  double rate, total;
  uint32_t hash, slot;
  size_t order; /* used while reporting a batch too large */
} counter_t;

struct bp_metrics_batch_s {
  bp_metrics_t *m;
  char *ns; /* the namespace without its end dots, or NULL */
  size_t ns_len;
  int ns_invalid; /* every record is refused */
  buf_t lines;    /* lines other than counters, each followed by "\n" */
  buf_t keys;     /* counter keys, back to back */
  counter_t *counters;
  size_t ncounters, counters_cap;
  uint32_t *slots; /* open addressing over counters: index + 1, 0 = free */
  size_t nslots;   /* a power of two, at least twice ncounters */
};

bp_metrics_batch_t *bp_metrics_batch_new(bp_metrics_t *m, const char *namespace_) {
  bp_metrics_batch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->m = m;
  if (namespace_ && *namespace_) {
    const char *p = namespace_;
    size_t n = strcspn(p, NAME_BAD);
    if (p[n]) {
      b->ns_invalid = 1;
      return b;
    }
    strip_dots(&p, &n);
    if (n > 0) {
      if (!(b->ns = malloc(n))) {
        free(b);
        return NULL;
      }
      memcpy(b->ns, p, n);
      b->ns_len = n;
    }
  }
  return b;
}

void bp_metrics_batch_free(bp_metrics_batch_t *b) {
  if (!b) return;
  free(b->ns);
  buf_free(&b->lines);
  buf_free(&b->keys);
  free(b->counters);
  free(b->slots);
  free(b);
}

/* Empty the batch, keeping its memory for the next request unless an
 * unusual one made it large. */
static void batch_clear(bp_metrics_batch_t *b) {
  for (size_t i = 0; i < b->ncounters; i++) b->slots[b->counters[i].slot] = 0;
  b->ncounters = 0;
  b->keys.len = 0;
  b->lines.len = 0;
  if (b->lines.cap > KEEP_BYTES) buf_free(&b->lines);
  if (b->keys.cap > KEEP_BYTES) buf_free(&b->keys);
  if (b->counters_cap > KEEP_COUNTERS) {
    free(b->counters);
    free(b->slots);
    b->counters = NULL;
    b->slots = NULL;
    b->counters_cap = b->nslots = 0;
  }
}

/* Append "namespace.name,k=v..." to out. On error out is as it was. */
static int put_key(const bp_metrics_batch_t *b, buf_t *out, const char *name,
                   const bp_metric_tag_t *tags, size_t ntags, size_t *name_len) {
  size_t start = out->len, n;
  const char *p = name;

  if (b->ns_invalid || !name || (ntags > 0 && !tags)) return BP_EINVAL;
  n = strcspn(name, NAME_BAD);
  if (name[n]) return BP_EINVAL;
  strip_dots(&p, &n);
  if (b->ns_len == 0 && n == 0) return BP_EINVAL;
  if (buf_reserve(out, b->ns_len + 1 + n) != BP_OK) return BP_ENOMEM;
  buf_put(out, b->ns, b->ns_len);
  if (b->ns_len > 0 && n > 0) out->p[out->len++] = '.';
  buf_put(out, p, n);
  *name_len = out->len - start;

  for (size_t i = 0; i < ntags; i++) {
    const char *k = tags[i].key, *v = tags[i].value;
    size_t kl, vl;
    if (!k || !v) goto invalid;
    kl = strcspn(k, TAG_BAD);
    vl = strcspn(v, TAG_BAD);
    if (kl == 0 || k[kl] || v[vl]) goto invalid;
    if (buf_reserve(out, kl + vl + 2) != BP_OK) {
      out->len = start;
      return BP_ENOMEM;
    }
    out->p[out->len++] = ',';
    buf_put(out, k, kl);
    out->p[out->len++] = '=';
    buf_put(out, v, vl);
  }
  return BP_OK;
invalid:
  out->len = start;
  return BP_EINVAL;
}

/* A key known to be valid ("name,k=v…", dots stripped) after the namespace. */
static int put_key_prepared(const bp_metrics_batch_t *b, buf_t *out, const char *key,
                            size_t key_len, size_t name_len, size_t *full_name_len) {
  size_t start = out->len;
  if (b->ns_invalid) return BP_EINVAL;
  if (buf_reserve(out, b->ns_len + 1 + key_len) != BP_OK) return BP_ENOMEM;
  buf_put(out, b->ns, b->ns_len);
  if (b->ns_len > 0 && name_len > 0) out->p[out->len++] = '.';
  *full_name_len = out->len - start + name_len;
  buf_put(out, key, key_len);
  return BP_OK;
}

/* ":value|type[|@rate]" into dst (at least 2 * NUM_SIZE + 8 bytes). */
static size_t put_value(char *dst, double value, const char *type, double rate) {
  size_t o = 0, tl = strlen(type);
  dst[o++] = ':';
  o += fmt_g(dst + o, value);
  dst[o++] = '|';
  memcpy(dst + o, type, tl);
  o += tl;
  if (rate < 1) {
    dst[o++] = '|';
    dst[o++] = '@';
    o += fmt_g(dst + o, rate);
  }
  return o;
}

#define VALUE_SIZE (2 * NUM_SIZE + 8)

static int record(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                  size_t ntags, double value, const char *type, double rate) {
  size_t start, name_len;
  int rc;

  if (!b || !isfinite(value) || !(rate > 0 && rate <= 1)) return BP_EINVAL;
  start = b->lines.len;
  if ((rc = put_key(b, &b->lines, name, tags, ntags, &name_len)) != BP_OK) return rc;
  if (buf_reserve(&b->lines, VALUE_SIZE + 1) != BP_OK) {
    b->lines.len = start;
    return BP_ENOMEM;
  }
  b->lines.len += put_value(b->lines.p + b->lines.len, value, type, rate);
  b->lines.p[b->lines.len++] = '\n';
  return BP_OK;
}

int bp_metrics_timer(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                     size_t ntags, double ms, double rate) {
  return record(b, name, tags, ntags, ms, "ms", rate);
}

int bp__metrics_timer_prepared(bp_metrics_batch_t *b, const bp__metric_key_t *k, double ms,
                               double rate) {
  size_t start, name_len;
  int rc;
  if (!b || !isfinite(ms) || !(rate > 0 && rate <= 1)) return BP_EINVAL;
  start = b->lines.len;
  rc = put_key_prepared(b, &b->lines, k->key, k->key_len, k->name_len, &name_len);
  if (rc != BP_OK) return rc;
  if (buf_reserve(&b->lines, VALUE_SIZE + 1) != BP_OK) {
    b->lines.len = start;
    return BP_ENOMEM;
  }
  b->lines.len += put_value(b->lines.p + b->lines.len, ms, "ms", rate);
  b->lines.p[b->lines.len++] = '\n';
  return BP_OK;
}

int bp_metrics_gauge(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                     size_t ntags, double value) {
  /* StatsD reads a leading '-' as a decrement of the gauge. */
  if (value < 0) return BP_EINVAL;
  return record(b, name, tags, ntags, value, "g", 1);
}

int bp_metrics_histogram(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                         size_t ntags, double value) {
  return record(b, name, tags, ntags, value, "h", 1);
}

static uint32_t hash_key(const char *p, size_t n, double rate) {
  uint32_t h = 2166136261u; /* FNV-1a */
  uint64_t bits;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  memcpy(&bits, &rate, sizeof bits);
  h = (h ^ (uint32_t)(bits ^ (bits >> 32))) * 16777619u;
  return h;
}

static int grow_index(bp_metrics_batch_t *b) {
  size_t n = b->nslots ? b->nslots * 2 : 32;
  uint32_t *s;
  if (n > SIZE_MAX / sizeof *s || !(s = calloc(n, sizeof *s))) return BP_ENOMEM;
  for (size_t j = 0; j < b->ncounters; j++) {
    size_t i = b->counters[j].hash & (n - 1);
    while (s[i]) i = (i + 1) & (n - 1);
    s[i] = (uint32_t)(j + 1);
    b->counters[j].slot = (uint32_t)i;
  }
  free(b->slots);
  b->slots = s;
  b->nslots = n;
  return BP_OK;
}

/* Count `delta` for the key just written at b->keys.p + start (taken back
 * if the counter exists). */
static int counter_add_hashed(bp_metrics_batch_t *b, size_t start, size_t name_len, double delta,
                              double rate, uint32_t h, size_t *idx) {
  const char *key = b->keys.p + start;
  size_t key_len = b->keys.len - start, i;
  counter_t *c;

  if (b->ncounters == b->counters_cap || (b->ncounters + 1) * 2 > b->nslots) {
    if (b->ncounters == b->counters_cap) {
      size_t cap = b->counters_cap ? b->counters_cap * 2 : 16;
      counter_t *nc;
      if (cap >= UINT32_MAX / 2 || !(nc = realloc(b->counters, cap * sizeof *nc))) goto nomem;
      b->counters = nc;
      b->counters_cap = cap;
    }
    if ((b->ncounters + 1) * 2 > b->nslots && grow_index(b) != BP_OK) goto nomem;
  }

  for (i = h & (b->nslots - 1); b->slots[i]; i = (i + 1) & (b->nslots - 1)) {
    c = &b->counters[b->slots[i] - 1];
    if (c->hash == h && c->rate == rate && c->key_len == key_len &&
        memcmp(b->keys.p + c->key_off, key, key_len) == 0) {
      c->total += delta;
      b->keys.len = start;
      if (idx) *idx = b->slots[i] - 1;
      return BP_OK;
    }
  }
  c = &b->counters[b->ncounters];
  c->key_off = start;
  c->key_len = key_len;
  c->name_len = name_len;
  c->rate = rate;
  c->total = delta;
  c->hash = h;
  c->slot = (uint32_t)i;
  b->slots[i] = (uint32_t)(++b->ncounters);
  if (idx) *idx = b->ncounters - 1;
  return BP_OK;
nomem:
  b->keys.len = start;
  return BP_ENOMEM;
}

static int counter_add(bp_metrics_batch_t *b, size_t start, size_t name_len, double delta,
                       double rate) {
  return counter_add_hashed(b, start, name_len, delta, rate,
                            hash_key(b->keys.p + start, b->keys.len - start, rate), NULL);
}

int bp_metrics_counter(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                       size_t ntags, double delta, double rate) {
  size_t start, name_len;
  int rc;

  if (!b || !isfinite(delta) || !(rate > 0 && rate <= 1)) return BP_EINVAL;
  /* The key is written where it would stay, and taken back if it is known. */
  start = b->keys.len;
  if ((rc = put_key(b, &b->keys, name, tags, ntags, &name_len)) != BP_OK) return rc;
  return counter_add(b, start, name_len, delta, rate);
}

/* The counter hash of prepared key k under b's namespace (the key's bytes
 * at keys + start), computed once per namespace and rate and kept in k.
 * 0 when the namespace is too long to remember (hash each time). */
static int prepared_hash(const bp_metrics_batch_t *b, bp__metric_key_t *k, double rate,
                         const char *key, size_t key_len) {
  if (!k->hashed || k->hash_rate != rate || k->hash_ns_len != b->ns_len ||
      (b->ns_len && memcmp(k->hash_ns, b->ns, b->ns_len < sizeof k->hash_ns ? b->ns_len : sizeof k->hash_ns))) {
    if (b->ns_len > sizeof k->hash_ns) return 0;
    k->hash = hash_key(key, key_len, rate);
    k->hash_rate = rate;
    k->hash_ns_len = b->ns_len;
    if (b->ns_len) memcpy(k->hash_ns, b->ns, b->ns_len);
    k->hashed = 1;
  }
  return 1;
}

int bp__metrics_counter_prepared(bp_metrics_batch_t *b, bp__metric_key_t *k,
                                 double delta, double rate) {
  size_t start, name_len;
  int rc;
  if (!b || !isfinite(delta) || !(rate > 0 && rate <= 1)) return BP_EINVAL;
  start = b->keys.len;
  rc = put_key_prepared(b, &b->keys, k->key, k->key_len, k->name_len, &name_len);
  if (rc != BP_OK) return rc;
  /* the hash depends on the namespace and the rate only: kept in the key */
  if (!prepared_hash(b, k, rate, b->keys.p + start, b->keys.len - start))
    return counter_add(b, start, name_len, delta, rate);
  return counter_add_hashed(b, start, name_len, delta, rate, k->hash, NULL);
}

int bp__metrics_span_done(bp_metrics_batch_t *b, const bp__metric_key_t *timer, double ms,
                          bp__metric_key_t *counter, double rate) {
  bp_metrics_t *m = b ? b->m : NULL;
  char line[512];
  size_t n, start, name_len;
  buf_t out = {line, 0, sizeof line};
  if (m && m->fd < 0 && b->lines.len == 0 && b->ncounters == 0 && !b->ns_invalid && isfinite(ms) &&
      rate > 0 && rate <= 1 && !(m->log_if_unconfigured && bp_log_enabled(LOGGER, BP_LOG_DEBUG))) {
    m->lines += 2; /* no endpoint and nobody reading "Would send": counted, as put_line does */
    return BP_OK;
  }
  if (!m || m->fd < 0 || !m->timer || b->lines.len > 0 || b->ncounters > 0 || b->ns_invalid ||
      !isfinite(ms) || !(rate > 0 && rate <= 1) ||
      b->ns_len + 1 + timer->key_len + VALUE_SIZE > sizeof line ||
      (!m->window && !(m->window = bp_metrics_batch_new(NULL, NULL))))
    goto general;
  /* the counter, summed in the window as flushing the batch would: where
   * it was summed last while the window has not been emptied since */
  if (counter->win == m && counter->win_gen == m->window_gen && counter->hashed &&
      counter->hash_rate == rate && counter->hash_ns_len == b->ns_len &&
      (b->ns_len == 0 || memcmp(counter->hash_ns, b->ns, b->ns_len) == 0)) {
    m->window->counters[counter->win_idx].total += 1;
  } else {
    size_t idx;
    start = m->window->keys.len;
    if (put_key_prepared(b, &m->window->keys, counter->key, counter->key_len, counter->name_len,
                         &name_len) != BP_OK)
      goto general;
    if (!prepared_hash(b, counter, rate, m->window->keys.p + start, m->window->keys.len - start)) {
      m->window->keys.len = start;
      goto general;
    }
    if (counter_add_hashed(m->window, start, name_len, 1, rate, counter->hash, &idx) != BP_OK)
      goto general;
    counter->win = m;
    counter->win_gen = m->window_gen;
    counter->win_idx = idx;
  }
  /* the timer line, as the batch would have sent it */
  put_key_prepared(b, &out, timer->key, timer->key_len, timer->name_len, &name_len);
  n = out.len + put_value(line + out.len, ms, "ms", rate);
  put_line(m, line, n, NULL, 0);
  if (!m->timer_armed) {
    uv_timer_start(&m->timer->handle, timer_fired, m->interval_ms, 0);
    m->timer_armed = 1;
  }
  return BP_OK;
general:
  bp__metrics_timer_prepared(b, timer, ms, rate);
  bp__metrics_counter_prepared(b, counter, 1, rate);
  return bp_metrics_batch_flush(b);
}

int bp__metric_key_prepare(bp__metric_key_t *k, const char *name, const bp_metric_tag_t *tags,
                           size_t ntags) {
  static const bp_metrics_batch_t plain; /* no namespace */
  buf_t out = {k->key, 0, sizeof k->key};
  size_t name_len;
  /* put_key validates; it must not grow the fixed buffer */
  size_t need = strlen(name) + 1;
  for (size_t i = 0; i < ntags; i++)
    need += (tags[i].key ? strlen(tags[i].key) : 0) + (tags[i].value ? strlen(tags[i].value) : 0) + 2;
  if (need > sizeof k->key) return BP_ETOOBIG;
  if (put_key(&plain, &out, name, tags, ntags, &name_len) != BP_OK) return BP_EINVAL;
  k->hashed = 0;
  k->win = NULL;
  k->key_len = out.len;
  k->name_len = name_len;
  return BP_OK;
}

static size_t window_count(const bp_metrics_t *m) { return m->window ? m->window->ncounters : 0; }

/* Into the transport's window; BP_ENOMEM leaves the caller to send it. */
static int window_add(bp_metrics_t *m, const bp_metrics_batch_t *b, const counter_t *c) {
  size_t start;
  if (!m->window && !(m->window = bp_metrics_batch_new(NULL, NULL))) return BP_ENOMEM;
  start = m->window->keys.len;
  if (buf_append(&m->window->keys, b->keys.p + c->key_off, c->key_len) != BP_OK) return BP_ENOMEM;
  /* the same key bytes and rate: the same hash */
  return counter_add_hashed(m->window, start, c->name_len, c->total, c->rate, c->hash, NULL);
}

static void flush_window(bp_metrics_t *m) {
  bp_metrics_batch_t *w = m->window;
  char value[VALUE_SIZE];
  if (!w || w->ncounters == 0) return;
  for (size_t i = 0; i < w->ncounters; i++) {
    const counter_t *c = &w->counters[i];
    put_line(m, w->keys.p + c->key_off, c->key_len, value, put_value(value, c->total, "c", c->rate));
  }
  batch_clear(w);
  m->window_gen = ++window_gens;
}

size_t bp_metrics_batch_size(const bp_metrics_batch_t *b) {
  char value[VALUE_SIZE];
  size_t n;
  if (!b) return 0;
  n = b->lines.len; /* each line and its "\n" */
  for (size_t i = 0; i < b->ncounters; i++) {
    const counter_t *c = &b->counters[i];
    n += c->key_len + put_value(value, c->total, "c", c->rate) + 1;
  }
  return n > 0 ? n - 1 : 0;
}

/* Top counters by name (all tags and rates summed, as Baseplate.py counts
 * them), largest total first, then first seen. */
static int by_name(const void *x, const void *y, void *keys) {
  const counter_t *a = x, *b = y;
  size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
  int r = memcmp((const char *)keys + a->key_off, (const char *)keys + b->key_off, n);
  if (r) return r;
  if (a->name_len != b->name_len) return a->name_len < b->name_len ? -1 : 1;
  return a->order < b->order ? -1 : a->order > b->order;
}

static int by_total(const void *x, const void *y) {
  const counter_t *a = x, *b = y;
  if (a->total != b->total) return a->total > b->total ? -1 : 1;
  return a->order < b->order ? -1 : a->order > b->order;
}

static void warn_too_big(const bp_metrics_batch_t *b, size_t size) {
  static const char head[] = "Metrics batch of %zu bytes is too large to send, flush more often "
                             "or reduce amount done in this request. Top counters: ";
  char num[NUM_SIZE + 320];
  counter_t *v = NULL;
  size_t k = 0;
  buf_t msg = {0};
  int n;

  if (!bp_log_enabled(LOGGER, BP_LOG_WARNING)) return;
  if (b->ncounters > 0 && (v = malloc(b->ncounters * sizeof *v))) {
    memcpy(v, b->counters, b->ncounters * sizeof *v);
    for (size_t i = 0; i < b->ncounters; i++) v[i].order = i;
    qsort_r(v, b->ncounters, sizeof *v, by_name, b->keys.p);
    for (size_t i = 0; i < b->ncounters; i++) {
      if (k > 0 && v[k - 1].name_len == v[i].name_len &&
          memcmp(b->keys.p + v[k - 1].key_off, b->keys.p + v[i].key_off, v[i].name_len) == 0)
        v[k - 1].total += v[i].total; /* v[k - 1] was seen first */
      else
        v[k++] = v[i];
    }
    qsort(v, k, sizeof *v, by_total);
  }
  n = snprintf(num, sizeof num, head, size);
  if (buf_append(&msg, num, (size_t)n) != BP_OK) goto out;
  for (size_t i = 0; i < k && i < 10; i++) {
    if (i > 0 && buf_append(&msg, ", ", 2) != BP_OK) goto out;
    if (buf_append(&msg, b->keys.p + v[i].key_off, v[i].name_len) != BP_OK) goto out;
    n = snprintf(num, sizeof num, "=%.0f", v[i].total);
    if (n < 0 || (size_t)n >= sizeof num || buf_append(&msg, num, (size_t)n) != BP_OK) goto out;
  }
  bp_log_write(BP_LOG_WARNING, LOGGER, sizeof LOGGER - 1, msg.p, msg.len, NULL, 0, NULL, NULL);
out:
  buf_free(&msg);
  free(v);
}

int bp_metrics_batch_flush(bp_metrics_batch_t *b) {
  bp_metrics_t *m;
  size_t size;

  if (!b) return BP_EINVAL;
  /* Formatting every counter's total to learn the exact size is only
   * needed when a quick upper bound is too large. */
  size = b->lines.len + b->keys.len + b->ncounters * (VALUE_SIZE + 1);
  if (size > BP_METRICS_MAX_BATCH) size = bp_metrics_batch_size(b);
  if (size > BP_METRICS_MAX_BATCH) {
    warn_too_big(b, size);
    batch_clear(b);
    return BP_ETOOBIG;
  }
  if ((m = b->m) != NULL && size > 0) { /* size: the exact size, or a bound */
    const char *p = b->lines.p, *end = p + b->lines.len;
    char value[VALUE_SIZE];
    while (p < end) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      put_line(m, p, (size_t)(nl - p), NULL, 0);
      p = nl + 1;
    }
    for (size_t i = 0; i < b->ncounters; i++) {
      const counter_t *c = &b->counters[i];
      if (m->fd >= 0 && m->timer && window_add(m, b, c) == BP_OK) continue;
      put_line(m, b->keys.p + c->key_off, c->key_len, value,
               put_value(value, c->total, "c", c->rate));
    }
    if (window_count(m) > 0 && !m->timer_armed) {
      uv_timer_start(&m->timer->handle, timer_fired, m->interval_ms, 0);
      m->timer_armed = 1;
    }
    /* After loop shutdown there is no timer to wait for. */
    if (m->fd >= 0 && !m->timer) send_pending(m);
  }
  batch_clear(b);
  return BP_OK;
}
