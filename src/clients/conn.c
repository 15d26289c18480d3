/* The connection every client stands on (src/clients/conn.h): name lookup,
 * connect (each address in turn), the timer, writes, reference counting
 * across libuv's close callbacks, close and loop shutdown. The protocols
 * (redis.c, thrift.c) read and say what their timeouts waited for. */
#include "clients/conn.h"
#include "internal.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  uv_write_t req;
  bp__cconn_t *conn;
  char *buf;
} write_t;

static void unref(bp__cconn_t *c) {
  if (--c->refs > 0) return;
  if (c->addrs) uv_freeaddrinfo(c->addrs);
  if (c->ssl) SSL_free(c->ssl); /* and its BIOs */
  c->ssl = NULL;
  c->proto->on_free(c);
}

void bp__cconn_set_err(bp__cconn_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
}

void bp__client_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms) {
  uv_update_time(t->loop);
  uv_timer_start(t, cb, ms, 0);
}

void bp__cconn_finish(bp__cconn_t *c, int status) {
  int waiter = c->waiter;
  if (!c->busy) return;
  c->busy = 0;
  c->waiter = 0;
  c->wakes++;
  uv_timer_stop(&c->timer);
  /* An idle connection does not keep the process alive (a script ends). */
  if (c->sock) uv_unref(&c->sock->u.handle);
  if (!c->quiet) bp__vm_wake(waiter, status);
}

static void sock_closed(uv_handle_t *h) {
  bp__cconn_sock_t *s = (bp__cconn_sock_t *)h;
  bp__cconn_t *c = s->conn;
  free(s);
  unref(c);
}

static void close_sock(bp__cconn_t *c) {
  if (!c->sock) return;
  uv_close(&c->sock->u.handle, sock_closed);
  c->sock = NULL;
}

void bp__cconn_break(bp__cconn_t *c) {
  if (c->state == BP__CCONN_RESOLVING)
    uv_cancel((uv_req_t *)&c->gai); /* on_resolved frees the rest */
  c->state = BP__CCONN_BROKEN;
  close_sock(c);
}

int bp__cconn_broken(const bp__cconn_t *c) {
  return c->state == BP__CCONN_BROKEN || c->user_closed;
}

/* --- the timer ----------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  bp__cconn_t *c = t->data;
  int status = c->timer_status;
  if (status == BP_ETIMEDOUT) {
    if (c->state == BP__CCONN_RESOLVING || c->state == BP__CCONN_CONNECTING ||
        c->state == BP__CCONN_HANDSHAKE)
      bp__cconn_set_err(c, "%s: timed out connecting after %gs", c->where, c->timeout);
    else
      c->proto->on_timeout(c);
    bp__cconn_break(c);
  }
  bp__cconn_finish(c, status);
}

void bp__cconn_finish_later(bp__cconn_t *c, int status) {
  c->timer_status = status;
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

static void arm_timer(bp__cconn_t *c, double seconds) {
  c->timeout = seconds;
  c->timer_status = BP_ETIMEDOUT;
  if (seconds > 0) bp__client_timer_start(&c->timer, on_timer, (uint64_t)(seconds * 1000.0 + 0.5));
}

void bp__cconn_begin(bp__cconn_t *c, double timeout, int waiter) {
  c->busy = 1;
  c->waiter = waiter;
  c->sent = 0;
  if (c->sock) uv_ref(&c->sock->u.handle);
  arm_timer(c, timeout);
}

/* --- closing -------------------------------------------------------------------- */

static void timer_closed(uv_handle_t *h) {
  bp__cconn_t *c = h->data;
  bp__cconn_finish(c, BP_ECLOSED); /* a close while an operation was in flight */
  unref(c);
}

/* Loop shutdown: close the handles, wake nobody. */
static void conn_shutdown(bp__closable_t *self) {
  bp__cconn_t *c = (bp__cconn_t *)self;
  c->quiet = 1;
  bp__cconn_break(c);
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, timer_closed);
}

void bp__cconn_close(bp__cconn_t *c) {
  if (c->user_closed) return;
  c->user_closed = 1;
  if (!uv_is_closing((uv_handle_t *)&c->timer)) {
    if (c->busy) bp__cconn_set_err(c, "closed");
    bp__cconn_break(c);
    uv_close((uv_handle_t *)&c->timer, timer_closed); /* wakes a waiter with BP_ECLOSED */
  }
  unref(c);
}

/* --- reading and writing -------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  bp__cconn_t *c = ((bp__cconn_sock_t *)h)->conn;
  (void)suggested;
  c->proto->on_alloc(c, buf);
}

static void tls_read(bp__cconn_t *c, const char *data, size_t len);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bp__cconn_t *c = ((bp__cconn_sock_t *)s)->conn;
  if (c->ssl && nread > 0)
    tls_read(c, buf->base, (size_t)nread);
  else
    c->proto->on_read(c, nread, buf);
}

static void write_done(uv_write_t *req, int status) {
  write_t *w = (write_t *)req;
  bp__cconn_t *c = w->conn;
  free(w->buf);
  free(w);
  c->writing--;
  if (status < 0 && c->state != BP__CCONN_BROKEN) {
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(status));
    bp__cconn_break(c);
    bp__cconn_finish(c, BP_EIO);
  } else if (status == 0 && c->done_when_written && c->writing == 0) {
    bp__cconn_finish(c, BP_OK);
  }
  unref(c);
}

static int raw_write(bp__cconn_t *c, char *buf, size_t len, int owned);
static int tls_write(bp__cconn_t *c, char *buf, size_t len, int owned);

int bp__cconn_write(bp__cconn_t *c, char *buf, size_t len, int owned) {
  int rc = c->ssl ? tls_write(c, buf, len, owned) : raw_write(c, buf, len, owned);
  return rc;
}

static int raw_write(bp__cconn_t *c, char *buf, size_t len, int owned) {
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  size_t written = 0;
  write_t *w;
  int rc = uv_try_write(&c->sock->u.stream, &b, 1);
  if (rc > 0) written = (size_t)rc, c->sent = 1;
  if (rc < 0 && rc != UV_EAGAIN) goto fail;
  if (written == len) {
    if (owned) free(buf);
    if (c->done_when_written && c->writing == 0) bp__cconn_finish_later(c, BP_OK);
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
  rc = uv_write(&w->req, &c->sock->u.stream, &b, 1, write_done);
  if (rc < 0) {
    free(w->buf);
    free(w);
    return rc;
  }
  c->sent = 1; /* queued: as good as sent, the server may see it */
  c->writing++;
  c->refs++;
  return 0;
fail:
  if (owned) free(buf);
  return rc;
}

/* --- connecting -------------------------------------------------------------------- */

static void try_next_address(bp__cconn_t *c);

void bp__cconn_ready(bp__cconn_t *c) {
  c->state = BP__CCONN_READY;
  c->err[0] = '\0';
  bp__cconn_finish(c, BP_OK);
}

/* The connection (and its TLS) is up: the protocol's turn. */
static void connected(bp__cconn_t *c) {
  int rc = c->proto->on_connect ? c->proto->on_connect(c) : BP_OK;
  if (rc == BP_OK)
    bp__cconn_ready(c);
  else if (rc != BP_AGAIN)
    bp__cconn_finish(c, rc);
}

static void tls_start(bp__cconn_t *c);

static void on_connect(uv_connect_t *req, int status) {
  bp__cconn_t *c = req->data;
  int rc;
  if (c->state != BP__CCONN_CONNECTING) { /* timed out or closed meanwhile */
    unref(c);
    return;
  }
  c->refs--; /* the request; the caller's reference still holds */
  if (status < 0) {
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(status));
    close_sock(c);
    if (c->path[0]) {
      c->state = BP__CCONN_BROKEN;
      bp__cconn_finish(c, BP_EIO);
    } else {
      try_next_address(c);
    }
    return;
  }
  if (!c->path[0]) uv_tcp_nodelay(&c->sock->u.tcp, 1);
  rc = uv_read_start(&c->sock->u.stream, on_alloc, on_read);
  if (rc < 0) {
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(rc));
    bp__cconn_break(c);
    bp__cconn_finish(c, BP_EIO);
    return;
  }
  if (c->tls_ctx) {
    tls_start(c); /* connected() once the handshake is done */
    return;
  }
  connected(c);
}

static int new_sock(bp__cconn_t *c) {
  if (!(c->sock = malloc(sizeof *c->sock))) {
    bp__cconn_set_err(c, "out of memory");
    return BP_ENOMEM;
  }
  c->sock->conn = c;
  if (c->path[0])
    uv_pipe_init(bp_loop(), &c->sock->u.pipe, 0);
  else
    uv_tcp_init(bp_loop(), &c->sock->u.tcp);
  c->sock->u.handle.data = c;
  c->refs++;
  c->connect_req.data = c;
  return BP_OK;
}

/* Connect to the next address of the lookup (or the numeric one); once
 * none is left, fail with the last error. */
static void try_next_address(bp__cconn_t *c) {
  const struct sockaddr *addr = NULL;
  int rc;
  for (;;) {
    if (c->have_numeric) {
      addr = (const struct sockaddr *)&c->numeric;
      c->have_numeric = 0;
    } else {
      while (c->next_addr && c->next_addr->ai_family != AF_INET &&
             c->next_addr->ai_family != AF_INET6)
        c->next_addr = c->next_addr->ai_next;
      if (!c->next_addr) break;
      addr = c->next_addr->ai_addr;
      c->next_addr = c->next_addr->ai_next;
    }
    if (new_sock(c) != BP_OK) break;
    rc = uv_tcp_connect(&c->connect_req, &c->sock->u.tcp, addr, on_connect);
    if (rc == 0) {
      c->refs++;
      c->state = BP__CCONN_CONNECTING;
      return;
    }
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(rc));
    close_sock(c);
  }
  c->state = BP__CCONN_BROKEN;
  if (!c->err[0]) bp__cconn_set_err(c, "%s: no address to connect to", c->where);
  bp__cconn_finish_later(c, BP_EIO);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  bp__cconn_t *c = req->data;
  if (c->state != BP__CCONN_RESOLVING) { /* timed out or closed meanwhile */
    if (res) uv_freeaddrinfo(res);
    unref(c);
    return;
  }
  c->refs--;
  if (status < 0) {
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(status));
    c->state = BP__CCONN_BROKEN;
    bp__cconn_finish(c, BP_EIO);
    return;
  }
  c->addrs = c->next_addr = res;
  try_next_address(c);
}

int bp__cconn_parse_host(const char *client, const char **host, size_t *len, char *err,
                         size_t errlen) {
  const char *h = *host;
  size_t hl;
  if (h[0] == '[') h++;
  hl = strlen(h);
  if (hl && h[hl - 1] == ']') hl--;
  if (hl == 0 || hl >= sizeof(((bp__cconn_t *)0)->host)) {
    snprintf(err, errlen, "%s: invalid host name (%s)", client,
             hl ? "longer than 255 characters" : "empty");
    return BP_EINVAL;
  }
  *host = h;
  *len = hl;
  return BP_OK;
}

void bp__cconn_init(bp__cconn_t *c, const bp__cconn_proto_t *proto, const char *host,
                    size_t hostlen, int port, const char *path) {
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_shutdown;
  c->proto = proto;
  c->refs = 2; /* the caller's and the timer's */
  uv_timer_init(bp_loop(), &c->timer);
  c->timer.data = c;
  if (path) {
    snprintf(c->path, sizeof c->path, "%s", path);
  } else {
    memcpy(c->host, host, hostlen);
    c->port = port;
  }
}

void bp__cconn_connect(bp__cconn_t *c, double timeout, int waiter) {
  struct addrinfo hints;
  char portstr[16];
  int rc;
  c->busy = 1;
  c->waiter = waiter;
  arm_timer(c, timeout);

  if (c->path[0]) {
    if (new_sock(c) != BP_OK) {
      c->state = BP__CCONN_BROKEN;
      bp__cconn_finish_later(c, BP_EIO);
      return;
    }
    c->state = BP__CCONN_CONNECTING;
    c->refs++;
    uv_pipe_connect(&c->connect_req, &c->sock->u.pipe, c->path, on_connect);
    return;
  }
  if (uv_ip4_addr(c->host, c->port, (struct sockaddr_in *)&c->numeric) == 0 ||
      uv_ip6_addr(c->host, c->port, (struct sockaddr_in6 *)&c->numeric) == 0) {
    c->have_numeric = 1;
    try_next_address(c);
    return;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(portstr, sizeof portstr, "%d", c->port);
  c->gai.data = c;
  c->state = BP__CCONN_RESOLVING;
  rc = uv_getaddrinfo(bp_loop(), &c->gai, on_resolved, c->host, portstr, &hints);
  if (rc < 0) {
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(rc));
    c->state = BP__CCONN_BROKEN;
    bp__cconn_finish_later(c, BP_EIO);
  } else {
    c->refs++;
  }
}

void bp__cconn_adopt(bp__cconn_t *c, int fd, double timeout, int waiter) {
  int rc;
  c->busy = 1;
  c->waiter = waiter;
  arm_timer(c, timeout);
  if (new_sock(c) != BP_OK) {
    close(fd);
    c->state = BP__CCONN_BROKEN;
    bp__cconn_finish_later(c, BP_EIO);
    return;
  }
  if ((rc = uv_pipe_open(&c->sock->u.pipe, fd)) < 0 ||
      (rc = uv_read_start(&c->sock->u.stream, on_alloc, on_read)) < 0) {
    if (rc < 0) bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(rc));
    bp__cconn_break(c);
    bp__cconn_finish_later(c, BP_EIO);
    return;
  }
  /* connected already: ready on the next turn (the waiter is woken from a
   * loop callback, never from inside the call that started the wait) */
  c->state = BP__CCONN_READY;
  c->err[0] = '\0';
  bp__cconn_finish_later(c, BP_OK);
}

/* --- TLS ----------------------------------------------------------------------------
 * OpenSSL works on memory BIOs: bytes from the socket go into rbio, what
 * OpenSSL wants sent comes out of wbio and is written like plain data. */

void bp__cconn_use_tls(bp__cconn_t *c, SSL_CTX *ctx) { c->tls_ctx = ctx; }

static int tls_failed(bp__cconn_t *c, const char *what) {
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
  bp__cconn_set_err(c, "%s: TLS %s failed: %s", c->where, what, detail);
  bp__cconn_break(c);
  return BP_EIO;
}

/* Send what OpenSSL has for the socket. */
static int tls_flush(bp__cconn_t *c) {
  size_t n = BIO_ctrl_pending(c->wbio);
  char *buf;
  int rc;
  if (n == 0) return BP_OK;
  if (!(buf = malloc(n))) {
    bp__cconn_set_err(c, "%s: out of memory", c->where);
    bp__cconn_break(c);
    return BP_ENOMEM;
  }
  BIO_read(c->wbio, buf, (int)n);
  rc = raw_write(c, buf, n, 1);
  if (rc < 0) {
    bp__cconn_set_err(c, "%s: %s", c->where, uv_strerror(rc));
    bp__cconn_break(c);
    return BP_EIO;
  }
  return BP_OK;
}

static int tls_write(bp__cconn_t *c, char *buf, size_t len, int owned) {
  /* Memory BIOs take everything: SSL_write completes at once. */
  int n = SSL_write(c->ssl, buf, (int)len);
  if (owned) free(buf);
  if (n != (int)len) {
    tls_failed(c, "write");
    return UV_EIO;
  }
  return tls_flush(c) == BP_OK ? 0 : UV_EIO;
}

static void tls_handshake(bp__cconn_t *c) {
  int r = SSL_do_handshake(c->ssl);
  if (tls_flush(c) != BP_OK) {
    bp__cconn_finish(c, BP_EIO);
    return;
  }
  if (r == 1) {
    connected(c);
  } else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
    bp__cconn_finish(c, tls_failed(c, "handshake"));
  }
}

static void tls_read(bp__cconn_t *c, const char *data, size_t len) {
  static char plain[16 * 1024];
  int n;
  BIO_write(c->rbio, data, (int)len);
  if (c->state == BP__CCONN_HANDSHAKE) {
    tls_handshake(c);
    return;
  }
  for (;;) {
    n = SSL_read(c->ssl, plain, sizeof plain);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      uv_buf_t none = uv_buf_init(NULL, 0);
      if (e == SSL_ERROR_WANT_READ) break;
      if (e == SSL_ERROR_ZERO_RETURN) {
        c->proto->on_read(c, UV_EOF, &none); /* the server closed it */
      } else {
        bp__cconn_finish(c, tls_failed(c, "read"));
      }
      return;
    }
    /* What the protocol reads can wake the waiter, who may send or close at once. */
    {
      unsigned wakes = c->wakes;
      uv_buf_t b = uv_buf_init(plain, (unsigned)n);
      c->proto->on_read(c, n, &b);
      if (c->state != BP__CCONN_READY || c->wakes != wakes || !c->ssl) return;
    }
  }
  if (tls_flush(c) != BP_OK) bp__cconn_finish(c, BP_EIO);
}

static void tls_start(bp__cconn_t *c) {
  struct in6_addr a6;
  struct in_addr a4;
  int is_ip = inet_pton(AF_INET, c->host, &a4) == 1 || inet_pton(AF_INET6, c->host, &a6) == 1;
  if (!(c->ssl = SSL_new(c->tls_ctx)) || !(c->rbio = BIO_new(BIO_s_mem())) ||
      !(c->wbio = BIO_new(BIO_s_mem()))) {
    BIO_free(c->rbio);
    c->rbio = NULL;
    bp__cconn_finish(c, tls_failed(c, "set-up"));
    return;
  }
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_connect_state(c->ssl);
  if (!is_ip) SSL_set_tlsext_host_name(c->ssl, c->host);
  if (SSL_CTX_get_verify_mode(c->tls_ctx) & SSL_VERIFY_PEER) {
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) : SSL_set1_host(c->ssl, c->host)) !=
        1) {
      bp__cconn_finish(c, tls_failed(c, "set-up"));
      return;
    }
  }
  c->state = BP__CCONN_HANDSHAKE;
  tls_handshake(c);
}

/* One client context per CA file and verification mode, kept for the
 * process's life. */
SSL_CTX *bp__tls_client_context(const char *client, const char *ca_file, int verify, char *err,
                                size_t errlen) {
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
    snprintf(err, errlen, "%s: cannot create a TLS context", client);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) ||
        (!ca_file && SSL_CTX_set_default_verify_paths(ctx) != 1)) {
      unsigned long e = ERR_get_error();
      snprintf(err, errlen, "%s: cannot load the CA certificates %s: %s", client, ca_file ? ca_file : "(system)",
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
