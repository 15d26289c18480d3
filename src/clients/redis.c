/* Redis connections (include/baseplate/redis.h, docs/redis.md): commands in
 * RESP written on a libuv TCP stream, replies parsed by hiredis's reader.
 *
 * A connection is driven by three loop events: the connect (after an
 * asynchronous name lookup), reads, and one timer that bounds whatever is in
 * flight. The waiter of the operation in flight is woken exactly once, as
 * the last thing a loop callback does (finish()): the woken coroutine may
 * send again or close at once.
 *
 * Memory: the connection counts its references (the caller's, the TCP
 * handle, the timer handle, the name lookup, the connect and write
 * requests) and is freed when the last goes, so bp_redis_close() is safe at
 * any time, and after the loop itself is gone. */
#include "baseplate/redis.h"
#include "internal.h"
#include "runtime.h"

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* hiredis's reply types are ours. */
_Static_assert(REDIS_REPLY_STRING == BP_REDIS_STRING && REDIS_REPLY_ARRAY == BP_REDIS_ARRAY &&
                   REDIS_REPLY_INTEGER == BP_REDIS_INTEGER && REDIS_REPLY_NIL == BP_REDIS_NIL &&
                   REDIS_REPLY_STATUS == BP_REDIS_STATUS && REDIS_REPLY_ERROR == BP_REDIS_ERROR,
               "reply types");

enum { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_BROKEN };

typedef struct {
  uv_tcp_t handle;
  struct bp_redis_conn_s *conn;
} redis_tcp_t;

typedef struct {
  uv_write_t req;
  struct bp_redis_conn_s *conn;
  char *buf;
} redis_write_t;

struct bp_redis_conn_s {
  bp__closable_t closable; /* first: loop handles point here */
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t connect_req;
  redis_tcp_t *tcp; /* the current socket, NULL when none */
  struct addrinfo *addrs, *next_addr;
  struct sockaddr_storage numeric; /* the address when host was one */
  int have_numeric;
  int state;
  int refs;
  int busy;               /* an operation's waiter has yet to be woken */
  int waiter;
  int timer_status;       /* what the timer wakes with: BP_ETIMEDOUT, or a deferred failure */
  int quiet;              /* the loop is shutting down: wake nobody */
  unsigned wakes;         /* operations finished so far */
  int user_closed;
  int port;
  double timeout;         /* of the operation in flight */
  redisReader *reader;
  SSL_CTX *tls_ctx;       /* rediss://: TLS through memory BIOs, NULL for plain TCP */
  SSL *ssl;
  BIO *rbio, *wbio;       /* what came from the socket / what goes to it */
  redisReply **replies;
  int nreplies, expected, cap;
  size_t reply_elements;  /* array elements announced so far by the reply being read */
  int too_many;           /* the reply announced more than MAX_REPLY_ELEMENTS */
  char *out;              /* formatting buffer, reused */
  size_t outcap;
  char host[256];  /* a DNS name has at most 253 characters */
  char err[256];
};

static void conn_free(bp_redis_conn_t *c) {
  int i;
  for (i = 0; i < c->nreplies; i++) freeReplyObject(c->replies[i]);
  free(c->replies);
  if (c->reader) redisReaderFree(c->reader);
  if (c->addrs) uv_freeaddrinfo(c->addrs);
  if (c->ssl) SSL_free(c->ssl); /* and its BIOs */
  free(c->out);
  free(c);
}

static void unref(bp_redis_conn_t *c) {
  if (--c->refs == 0) conn_free(c);
}

/* Wake the waiter of the operation in flight with `status`. Call last: the
 * woken coroutine may send again or close. */
static void finish(bp_redis_conn_t *c, int status) {
  int waiter = c->waiter;
  if (!c->busy) return;
  c->busy = 0;
  c->waiter = 0;
  c->wakes++;
  uv_timer_stop(&c->timer);
  /* An idle connection does not keep the process alive (a script ends). */
  if (c->tcp) uv_unref((uv_handle_t *)&c->tcp->handle);
  if (!c->quiet) bp__vm_wake(waiter, status);
}

static void tcp_closed(uv_handle_t *h) {
  redis_tcp_t *t = (redis_tcp_t *)h;
  bp_redis_conn_t *c = t->conn;
  free(t);
  unref(c);
}

static void close_tcp(bp_redis_conn_t *c) {
  if (!c->tcp) return;
  uv_close((uv_handle_t *)&c->tcp->handle, tcp_closed);
  c->tcp = NULL;
}

/* The connection can no longer be used; `why` (printf) says why. */
static void set_err(bp_redis_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(bp_redis_conn_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
}

static void break_conn(bp_redis_conn_t *c) {
  if (c->state == ST_RESOLVING) uv_cancel((uv_req_t *)&c->gai); /* on_resolved frees the rest */
  c->state = ST_BROKEN;
  close_tcp(c);
}

/* Fail the operation in flight from the loop, not from inside the call
 * that found the failure. */
static void on_timer(uv_timer_t *t);
static void fail_later(bp_redis_conn_t *c, int status) {
  c->timer_status = status;
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* --- reading replies ------------------------------------------------------ */

static char read_buf[64 * 1024]; /* one loop thread: every read is consumed at once */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  buf->base = read_buf;
  buf->len = sizeof read_buf;
}

static int keep_reply(bp_redis_conn_t *c, redisReply *r) {
  if (c->nreplies == c->cap) {
    int cap = c->cap ? c->cap * 2 : 4;
    redisReply **n = realloc(c->replies, (size_t)cap * sizeof *n);
    if (!n) return BP_ENOMEM;
    c->replies = n;
    c->cap = cap;
  }
  c->replies[c->nreplies++] = r;
  return BP_OK;
}

static void feed(bp_redis_conn_t *c, const char *data, size_t len);
static void tls_read(bp_redis_conn_t *c, const char *data, size_t len);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bp_redis_conn_t *c = ((redis_tcp_t *)s)->conn;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      set_err(c, "%s:%d: Server closed the connection", c->host, c->port);
    else
      set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror((int)nread));
    break_conn(c);
    finish(c, BP_EIO);
    return;
  }
  if (c->ssl)
    tls_read(c, buf->base, (size_t)nread);
  else
    feed(c, buf->base, (size_t)nread);
}

/* hiredis allocates an array's element pointers as soon as its header
 * arrives: unbounded, "*2000000000\r\n" (14 bytes from a broken server)
 * would cost 16 GB. One reply may announce this many elements in all (its
 * nested arrays included); a reply announcing more is a protocol error. */
#define MAX_REPLY_ELEMENTS ((size_t)1 << 24)

static redisReplyObjectFunctions reply_functions;
static void *(*default_create_array)(const redisReadTask *task, int elements);
static bp_redis_conn_t *feeding; /* the connection whose input hiredis reads now */

static void *create_array(const redisReadTask *task, int elements) {
  bp_redis_conn_t *c = feeding;
  if (c && (elements < 0 || (size_t)elements > MAX_REPLY_ELEMENTS - c->reply_elements)) {
    c->too_many = 1;
    return NULL;
  }
  if (c) c->reply_elements += (size_t)elements;
  return default_create_array(task, elements);
}

/* A reader whose arrays are bounded as above. NULL on ENOMEM. */
static redisReader *reader_new(void) {
  redisReader *r = redisReaderCreate();
  if (!r) return NULL;
  if (!default_create_array) {
    reply_functions = *r->fn;
    default_create_array = reply_functions.createArray;
    reply_functions.createArray = create_array;
  }
  r->fn = &reply_functions;
  return r;
}

/* Parse what came from the server; the last expected reply wakes the
 * waiter. */
static void feed(bp_redis_conn_t *c, const char *data, size_t len) {
  void *reply;
  int rc;
  if (redisReaderFeed(c->reader, data, len) != REDIS_OK) goto protocol;
  for (;;) {
    feeding = c;
    rc = redisReaderGetReply(c->reader, &reply);
    feeding = NULL;
    if (rc != REDIS_OK) goto protocol;
    if (!reply) return;
    c->reply_elements = 0;
    if (!c->busy) {
      /* A reply nobody asked for: the stream is out of step. */
      freeReplyObject(reply);
      set_err(c, "%s:%d: unexpected reply from the server", c->host, c->port);
      break_conn(c);
      return;
    }
    if (keep_reply(c, reply) != BP_OK) {
      freeReplyObject(reply);
      set_err(c, "out of memory");
      break_conn(c);
      finish(c, BP_ENOMEM);
      return;
    }
    if (c->nreplies == c->expected) {
      finish(c, BP_OK);
      return;
    }
  }
protocol:
  if (c->too_many)
    set_err(c, "%s:%d: protocol error: a reply with more than %zu array elements, or a negative count",
            c->host, c->port, MAX_REPLY_ELEMENTS);
  else
    set_err(c, "%s:%d: protocol error: %s", c->host, c->port, c->reader->errstr);
  break_conn(c);
  finish(c, BP_EIO);
}

/* --- writing --------------------------------------------------------------- */

static void write_done(uv_write_t *req, int status) {
  redis_write_t *w = (redis_write_t *)req;
  bp_redis_conn_t *c = w->conn;
  free(w->buf);
  free(w);
  if (status < 0 && c->state != ST_BROKEN) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(status));
    break_conn(c);
    finish(c, BP_EIO);
  }
  unref(c);
}

/* Write buf[0..len) to the socket: at once if it takes it, else from the
 * loop. `owned` buffers are the write's (freed when done); others are
 * copied when they cannot go at once. A uv error code, or 0. */
static int write_out(bp_redis_conn_t *c, char *buf, size_t len, int owned) {
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  size_t written = 0;
  redis_write_t *w;
  int rc = uv_try_write((uv_stream_t *)&c->tcp->handle, &b, 1);
  if (rc > 0) written = (size_t)rc;
  if (rc < 0 && rc != UV_EAGAIN) goto fail;
  if (written == len) {
    if (owned) free(buf);
    return 0;
  }
  rc = UV_ENOMEM;
  if (!(w = malloc(sizeof *w))) goto fail;
  w->conn = c;
  w->buf = owned ? buf : malloc(len - written);
  if (!w->buf) {
    free(w);
    goto fail;
  }
  if (owned) {
    b = uv_buf_init(buf + written, (unsigned)(len - written));
  } else {
    memcpy(w->buf, buf + written, len - written);
    b = uv_buf_init(w->buf, (unsigned)(len - written));
  }
  rc = uv_write(&w->req, (uv_stream_t *)&c->tcp->handle, &b, 1, write_done);
  if (rc < 0) {
    free(w->buf);
    free(w);
    return rc;
  }
  c->refs++;
  return 0;
fail:
  if (owned) free(buf);
  return rc;
}

/* --- TLS (rediss://) ---------------------------------------------------------
 * OpenSSL works on memory BIOs: bytes from the socket go into rbio, what
 * OpenSSL wants sent comes out of wbio and is written like plain data. */

static int tls_failed(bp_redis_conn_t *c, const char *what) {
  unsigned long e = ERR_get_error();
  char detail[160] = "";
  long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
  if (v != X509_V_OK)
    snprintf(detail, sizeof detail, "certificate verify failed: %s", X509_verify_cert_error_string(v));
  else if (e)
    ERR_error_string_n(e, detail, sizeof detail);
  else
    snprintf(detail, sizeof detail, "connection closed");
  ERR_clear_error();
  set_err(c, "%s:%d: TLS %s failed: %s", c->host, c->port, what, detail);
  break_conn(c);
  return BP_EIO;
}

/* Send what OpenSSL has for the socket. */
static int tls_flush(bp_redis_conn_t *c) {
  size_t n = BIO_ctrl_pending(c->wbio);
  char *buf;
  int rc;
  if (n == 0) return BP_OK;
  if (!(buf = malloc(n))) return BP_ENOMEM;
  BIO_read(c->wbio, buf, (int)n);
  rc = write_out(c, buf, n, 1);
  if (rc < 0) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(rc));
    break_conn(c);
    return BP_EIO;
  }
  return BP_OK;
}

static void tls_handshake(bp_redis_conn_t *c) {
  int r = SSL_do_handshake(c->ssl);
  if (tls_flush(c) != BP_OK) {
    finish(c, BP_EIO);
    return;
  }
  if (r == 1) {
    c->state = ST_READY;
    c->err[0] = '\0';
    finish(c, BP_OK);
  } else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
    finish(c, tls_failed(c, "handshake"));
  }
}

static void tls_read(bp_redis_conn_t *c, const char *data, size_t len) {
  static char plain[16 * 1024];
  int n;
  BIO_write(c->rbio, data, (int)len);
  if (c->state == ST_HANDSHAKE) {
    tls_handshake(c);
    return;
  }
  for (;;) {
    n = SSL_read(c->ssl, plain, sizeof plain);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_WANT_READ) break;
      if (e == SSL_ERROR_ZERO_RETURN) {
        set_err(c, "%s:%d: Server closed the connection", c->host, c->port);
        break_conn(c);
        finish(c, BP_EIO);
      } else {
        finish(c, tls_failed(c, "read"));
      }
      return;
    }
    /* A reply can wake the waiter, who may send or close at once. */
    unsigned wakes = c->wakes;
    feed(c, plain, (size_t)n);
    if (c->state != ST_READY || c->wakes != wakes) return;
  }
  if (tls_flush(c) != BP_OK) finish(c, BP_EIO);
}

/* One client context per CA file and verification mode, kept for the
 * process's life. */
static SSL_CTX *tls_context(const char *ca_file, int verify, char *err, size_t errlen) {
  static struct {
    char *ca_file;
    int verify;
    SSL_CTX *ctx;
  } cache[8];
  static int ncache;
  SSL_CTX *ctx;
  int i;
  for (i = 0; i < ncache; i++)
    if (cache[i].verify == verify && ((!ca_file && !cache[i].ca_file) ||
                                      (ca_file && cache[i].ca_file && !strcmp(ca_file, cache[i].ca_file))))
      return cache[i].ctx;
  if (!(ctx = SSL_CTX_new(TLS_client_method()))) {
    snprintf(err, errlen, "redis: cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) ||
        (!ca_file && SSL_CTX_set_default_verify_paths(ctx) != 1)) {
      unsigned long e = ERR_get_error();
      snprintf(err, errlen, "redis: cannot load the CA certificates %s: %s", ca_file ? ca_file : "(system)",
               e ? ERR_reason_error_string(e) : "unknown error");
      ERR_clear_error();
      SSL_CTX_free(ctx);
      return NULL;
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }
  if (ncache == (int)BP_ARRAY_SIZE(cache)) return ctx; /* not cached: leaks, but only past 8 kinds */
  cache[ncache].ca_file = ca_file ? strdup(ca_file) : NULL;
  cache[ncache].verify = verify;
  cache[ncache].ctx = ctx;
  ncache++;
  return ctx;
}

static int tls_start(bp_redis_conn_t *c) {
  struct in6_addr a6;
  struct in_addr a4;
  int is_ip = inet_pton(AF_INET, c->host, &a4) == 1 || inet_pton(AF_INET6, c->host, &a6) == 1;
  if (!(c->ssl = SSL_new(c->tls_ctx)) || !(c->rbio = BIO_new(BIO_s_mem())) ||
      !(c->wbio = BIO_new(BIO_s_mem()))) {
    BIO_free(c->rbio);
    c->rbio = NULL;
    return tls_failed(c, "set-up");
  }
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_connect_state(c->ssl);
  if (!is_ip) SSL_set_tlsext_host_name(c->ssl, c->host);
  if (SSL_CTX_get_verify_mode(c->tls_ctx) & SSL_VERIFY_PEER) {
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host)
               : SSL_set1_host(c->ssl, c->host)) != 1)
      return tls_failed(c, "set-up");
  }
  c->state = ST_HANDSHAKE;
  tls_handshake(c);
  return BP_OK;
}

/* --- connecting ----------------------------------------------------------- */

static void try_next_address(bp_redis_conn_t *c);

static void on_connect(uv_connect_t *req, int status) {
  bp_redis_conn_t *c = req->data;
  int rc;
  if (c->state != ST_CONNECTING) { /* timed out or closed meanwhile */
    unref(c);
    return;
  }
  c->refs--; /* the request; the caller's reference still holds */
  if (status < 0) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(status));
    close_tcp(c);
    try_next_address(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp->handle, 1);
  rc = uv_read_start((uv_stream_t *)&c->tcp->handle, on_alloc, on_read);
  if (rc < 0) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(rc));
    break_conn(c);
    finish(c, BP_EIO);
    return;
  }
  if (c->tls_ctx) {
    if (tls_start(c) != BP_OK) finish(c, BP_EIO);
    return;
  }
  c->state = ST_READY;
  c->err[0] = '\0';
  finish(c, BP_OK);
}

/* Connect to the next address of the lookup (or the numeric one); once
 * none is left, fail with the last error. */
static void try_next_address(bp_redis_conn_t *c) {
  const struct sockaddr *addr = NULL;
  int rc;
  for (;;) {
    if (c->have_numeric) {
      addr = (const struct sockaddr *)&c->numeric;
      c->have_numeric = 0;
    } else {
      while (c->next_addr && c->next_addr->ai_family != AF_INET && c->next_addr->ai_family != AF_INET6)
        c->next_addr = c->next_addr->ai_next;
      if (!c->next_addr) break;
      addr = c->next_addr->ai_addr;
      c->next_addr = c->next_addr->ai_next;
    }
    c->tcp = malloc(sizeof *c->tcp);
    if (!c->tcp) {
      set_err(c, "out of memory");
      break;
    }
    c->tcp->conn = c;
    uv_tcp_init(bp_loop(), &c->tcp->handle);
    c->tcp->handle.data = c;
    c->refs++;
    c->connect_req.data = c;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp->handle, addr, on_connect);
    if (rc == 0) {
      c->refs++;
      c->state = ST_CONNECTING;
      return;
    }
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(rc));
    close_tcp(c);
  }
  c->state = ST_BROKEN;
  if (!c->err[0]) set_err(c, "%s:%d: no address to connect to", c->host, c->port);
  fail_later(c, BP_EIO);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  bp_redis_conn_t *c = req->data;
  if (c->state != ST_RESOLVING) { /* timed out or closed meanwhile */
    if (res) uv_freeaddrinfo(res);
    unref(c);
    return;
  }
  c->refs--;
  if (status < 0) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(status));
    c->state = ST_BROKEN;
    finish(c, BP_EIO);
    return;
  }
  c->addrs = c->next_addr = res;
  try_next_address(c);
}

static void on_timer(uv_timer_t *t) {
  bp_redis_conn_t *c = t->data;
  int status = c->timer_status;
  if (status == BP_ETIMEDOUT) {
    if (c->state == ST_RESOLVING || c->state == ST_CONNECTING || c->state == ST_HANDSHAKE)
      set_err(c, "%s:%d: timed out connecting after %gs", c->host, c->port, c->timeout);
    else
      set_err(c, "%s:%d: timed out after %gs waiting for %d of %d replies", c->host, c->port,
              c->timeout, c->expected - c->nreplies, c->expected);
    break_conn(c);
  }
  finish(c, status);
}

static void timer_closed(uv_handle_t *h) {
  bp_redis_conn_t *c = h->data;
  /* A close while an operation was in flight wakes its waiter now. */
  finish(c, BP_ECLOSED);
  unref(c);
}

/* Loop shutdown: close the handles, wake nobody. */
static void conn_shutdown(bp__closable_t *self) {
  bp_redis_conn_t *c = (bp_redis_conn_t *)self;
  c->quiet = 1;
  break_conn(c);
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, timer_closed);
}

static void arm_timer(bp_redis_conn_t *c, double seconds) {
  c->timeout = seconds;
  c->timer_status = BP_ETIMEDOUT;
  if (seconds > 0) uv_timer_start(&c->timer, on_timer, (uint64_t)(seconds * 1000.0 + 0.5), 0);
}

int bp_redis_connect(const char *host, int port, double connect_timeout, int waiter,
                     bp_redis_conn_t **out, char *err, size_t errlen) {
  return bp_redis_connect_tls(host, port, connect_timeout, NULL, waiter, out, err, errlen);
}

int bp_redis_connect_tls(const char *host, int port, double connect_timeout,
                         const bp_redis_tls_t *tls, int waiter, bp_redis_conn_t **out, char *err,
                         size_t errlen) {
  SSL_CTX *tls_ctx = NULL;
  bp_redis_conn_t *c;
  struct addrinfo hints;
  char portstr[16];
  size_t hl;
  int rc;

  *out = NULL;
  bp__ignore_sigpipe();
  if (!host || !*host || port < 1 || port > 65535 || !(connect_timeout >= 0)) {
    snprintf(err, errlen, "redis: invalid address or timeout (host %s, port %d)", host ? host : "(null)",
             port);
    return BP_EINVAL;
  }
  if (host[0] == '[') host++;
  hl = strlen(host);
  if (hl && host[hl - 1] == ']') hl--;
  if (hl == 0 || hl >= sizeof c->host) {
    snprintf(err, errlen, "redis: invalid host name (%s)", hl ? "longer than 255 characters" : "empty");
    return BP_EINVAL;
  }
  if (tls && !(tls_ctx = tls_context(tls->ca_file, tls->verify, err, errlen))) return BP_EINVAL;
  c = calloc(1, sizeof *c);
  if (!c || !(c->reader = reader_new())) {
    free(c);
    snprintf(err, errlen, "redis: out of memory");
    return BP_ENOMEM;
  }
  memcpy(c->host, host, hl);
  c->port = port;
  c->tls_ctx = tls_ctx;
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_shutdown;
  c->refs = 2; /* the caller's and the timer's */
  uv_timer_init(bp_loop(), &c->timer);
  c->timer.data = c;
  c->busy = 1;
  c->waiter = waiter;
  *out = c;
  arm_timer(c, connect_timeout);

  if (uv_ip4_addr(c->host, port, (struct sockaddr_in *)&c->numeric) == 0 ||
      uv_ip6_addr(c->host, port, (struct sockaddr_in6 *)&c->numeric) == 0) {
    c->have_numeric = 1;
    try_next_address(c);
    return BP_AGAIN;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(portstr, sizeof portstr, "%d", port);
  c->gai.data = c;
  c->state = ST_RESOLVING;
  rc = uv_getaddrinfo(bp_loop(), &c->gai, on_resolved, c->host, portstr, &hints);
  if (rc < 0) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(rc));
    c->state = ST_BROKEN;
    fail_later(c, BP_EIO);
  } else {
    c->refs++;
  }
  return BP_AGAIN;
}

/* --- sending -------------------------------------------------------------- */

/* Commands whose replies do not come once per command. */
static const char *refused_command(const char *name, size_t len, const char *next, size_t nextlen) {
  static const char *const refused[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
                                        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC"};
  size_t i;
  for (i = 0; i < BP_ARRAY_SIZE(refused); i++)
    if (strlen(refused[i]) == len && strncasecmp(name, refused[i], len) == 0) return refused[i];
  if (len == 6 && strncasecmp(name, "CLIENT", 6) == 0 && nextlen == 5 && next &&
      strncasecmp(next, "REPLY", 5) == 0)
    return "CLIENT REPLY";
  return NULL;
}

static size_t digits(size_t n) {
  size_t d = 1;
  while (n >= 10) n /= 10, d++;
  return d;
}

static char *put_header(char *p, char kind, size_t n) {
  char tmp[24];
  size_t i = 0;
  *p++ = kind;
  do tmp[i++] = (char)('0' + n % 10); while ((n /= 10) > 0);
  while (i > 0) *p++ = tmp[--i];
  *p++ = '\r';
  *p++ = '\n';
  return p;
}


/* Writing failed (uv error `rc`): the connection breaks, and the waiter
 * learns it from the loop. */
static int send_failed(bp_redis_conn_t *c, int rc, int waiter) {
  if (c->state != ST_BROKEN) {
    set_err(c, "%s:%d: %s", c->host, c->port, uv_strerror(rc));
    break_conn(c);
  }
  c->busy = 1;
  c->waiter = waiter;
  fail_later(c, BP_EIO);
  return BP_AGAIN;
}

int bp_redis_send(bp_redis_conn_t *c, int ncmds, const int *argcs, const char *const *argv,
                  const size_t *argvlen, double timeout, int waiter) {
  size_t total = 0, k = 0;
  int i, j, rc;
  char *p;

  if (!c || c->busy || c->state != ST_READY || c->user_closed) {
    if (c && c->busy) set_err(c, "busy: an operation is in flight");
    return BP_EINVAL;
  }
  if (ncmds < 1 || !argcs || !argv || !argvlen || !(timeout >= 0)) {
    set_err(c, "invalid arguments");
    return BP_EINVAL;
  }
  for (i = 0; i < ncmds; i++) {
    const char *refused;
    if (argcs[i] < 1) {
      set_err(c, "command %d has no name", i + 1);
      return BP_EINVAL;
    }
    refused = refused_command(argv[k], argvlen[k], argcs[i] > 1 ? argv[k + 1] : NULL,
                              argcs[i] > 1 ? argvlen[k + 1] : 0);
    if (refused) {
      set_err(c, "%s is not supported: its replies do not come one per command", refused);
      return BP_EINVAL;
    }
    total += 1 + digits((size_t)argcs[i]) + 2;
    for (j = 0; j < argcs[i]; j++, k++) {
      if (!argv[k] && argvlen[k]) {
        set_err(c, "argument %zu is NULL", k + 1);
        return BP_EINVAL;
      }
      total += 1 + digits(argvlen[k]) + 2 + argvlen[k] + 2;
    }
  }
  if (total > c->outcap) {
    char *n = malloc(total);
    if (!n) {
      set_err(c, "out of memory");
      return BP_ENOMEM;
    }
    free(c->out);
    c->out = n;
    c->outcap = total;
  }
  p = c->out;
  for (i = 0, k = 0; i < ncmds; i++) {
    p = put_header(p, '*', (size_t)argcs[i]);
    for (j = 0; j < argcs[i]; j++, k++) {
      p = put_header(p, '$', argvlen[k]);
      if (argvlen[k]) memcpy(p, argv[k], argvlen[k]);
      p += argvlen[k];
      *p++ = '\r';
      *p++ = '\n';
    }
  }

  for (i = 0; i < c->nreplies; i++) freeReplyObject(c->replies[i]);
  c->nreplies = 0;
  c->expected = ncmds;
  c->err[0] = '\0';

  uv_ref((uv_handle_t *)&c->tcp->handle);
  if (c->ssl) {
    /* Memory BIOs take everything: SSL_write completes at once. */
    if (SSL_write(c->ssl, c->out, (int)total) != (int)total) {
      tls_failed(c, "write");
      return send_failed(c, 0, waiter);
    }
    rc = tls_flush(c) == BP_OK ? 0 : UV_EIO;
  } else {
    rc = write_out(c, c->out, total, 0);
  }
  if (rc < 0) return send_failed(c, rc, waiter);
  c->busy = 1;
  c->waiter = waiter;
  arm_timer(c, timeout);
  return BP_AGAIN;
}

/* --- replies and state ------------------------------------------------------ */

int bp_redis_reply_count(const bp_redis_conn_t *c) { return c ? c->nreplies : 0; }

const bp_redis_reply_t *bp_redis_reply(const bp_redis_conn_t *c, int i) {
  if (!c || i < 0 || i >= c->nreplies) return NULL;
  return (const bp_redis_reply_t *)c->replies[i];
}

int bp_redis_reply_type(const bp_redis_reply_t *r) { return r ? ((const redisReply *)r)->type : 0; }

long long bp_redis_reply_integer(const bp_redis_reply_t *r) {
  const redisReply *x = (const redisReply *)r;
  return x && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
}

const char *bp_redis_reply_string(const bp_redis_reply_t *r, size_t *len) {
  const redisReply *x = (const redisReply *)r;
  if (!x || (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS &&
             x->type != REDIS_REPLY_ERROR)) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = x->len;
  return x->str;
}

size_t bp_redis_reply_elements(const bp_redis_reply_t *r) {
  const redisReply *x = (const redisReply *)r;
  return x && x->type == REDIS_REPLY_ARRAY ? x->elements : 0;
}

const bp_redis_reply_t *bp_redis_reply_element(const bp_redis_reply_t *r, size_t i) {
  const redisReply *x = (const redisReply *)r;
  if (!x || x->type != REDIS_REPLY_ARRAY || i >= x->elements) return NULL;
  return (const bp_redis_reply_t *)x->element[i];
}

const char *bp_redis_error(const bp_redis_conn_t *c) { return c ? c->err : "closed"; }

int bp_redis_broken(const bp_redis_conn_t *c) { return !c || c->state == ST_BROKEN || c->user_closed; }

int bp_redis_busy(const bp_redis_conn_t *c) { return c ? c->busy : 0; }

void bp_redis_close(bp_redis_conn_t *c) {
  if (!c || c->user_closed) return;
  c->user_closed = 1;
  if (!uv_is_closing((uv_handle_t *)&c->timer)) {
    if (c->busy) set_err(c, "closed");
    break_conn(c);
    uv_close((uv_handle_t *)&c->timer, timer_closed); /* wakes a waiter with BP_ECLOSED */
  }
  unref(c);
}
