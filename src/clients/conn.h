/* Private: the connection every client stands on (src/clients/redis.c,
 * src/clients/thrift.c), as hiredis keeps its protocol apart from its loop
 * adapters.
 *
 * A client connection is a stream socket (TCP after a non-blocking name
 * lookup, each resolved address tried in turn; or a UNIX socket path) and
 * one timer that bounds whatever is in flight: the connect, then each
 * operation. The waiter of the operation in flight is woken exactly once,
 * as the last thing a loop callback does (bp__cconn_finish): the woken
 * coroutine may send again or close at once.
 *
 * The protocol (RESP, THeader) embeds a bp__cconn_t first in its own
 * connection struct and plugs in through a bp__cconn_proto_t: what to do
 * once connected, how to read, what a timeout was waiting for, how to free
 * itself.
 *
 * Memory: the connection counts its references (the caller's, the socket
 * handle, the timer handle, the name lookup, the connect and write
 * requests) and is freed (the protocol's on_free) when the last goes, so
 * bp__cconn_close() is safe at any time, and after the loop itself is gone.
 * At loop shutdown (bp__loop_shutdown) the handles are closed and nobody is
 * woken. */
#ifndef BASEPLATE_CLIENTS_CONN_H
#define BASEPLATE_CLIENTS_CONN_H

#include "runtime.h"

#include <netdb.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

enum {
  BP__CCONN_RESOLVING, /* the name lookup is in flight */
  BP__CCONN_CONNECTING,
  BP__CCONN_HANDSHAKE, /* connected; the protocol's own handshake (TLS) goes on */
  BP__CCONN_READY,
  BP__CCONN_BROKEN /* can no longer be used; err says why */
};

typedef struct bp__cconn_s bp__cconn_t;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX, SSL, BIO */
struct ssl_st;
struct bio_st;

typedef struct {
  /* The socket is connected and read. BP_OK: the connection is ready (the
   * connect's waiter is woken with BP_OK). BP_AGAIN: the protocol has a
   * handshake to do and ends the connect itself (bp__cconn_ready, or
   * bp__cconn_break and bp__cconn_finish). Another status fails the connect
   * with it (err says why). NULL: ready at once. */
  int (*on_connect)(bp__cconn_t *c);
  /* A buffer for the next read, as libuv's alloc_cb (an empty one: libuv
   * reports UV_ENOBUFS to on_read). */
  void (*on_alloc)(bp__cconn_t *c, uv_buf_t *buf);
  /* As libuv's read_cb: bytes, or an error (UV_EOF…). */
  void (*on_read)(bp__cconn_t *c, ssize_t nread, const uv_buf_t *buf);
  /* The operation in flight ran out of time (the connect's timeout is said
   * here): write what it was waiting for into err. The connection breaks
   * and the waiter is woken with BP_ETIMEDOUT after. */
  void (*on_timeout)(bp__cconn_t *c);
  /* The last reference went: free what the protocol holds, and the struct
   * that embeds the connection. */
  void (*on_free)(bp__cconn_t *c);
} bp__cconn_proto_t;

typedef struct {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  bp__cconn_t *conn;
} bp__cconn_sock_t;

struct bp__cconn_s {
  bp__closable_t closable; /* first: loop handles point here */
  const bp__cconn_proto_t *proto;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t connect_req;
  bp__cconn_sock_t *sock; /* the current socket, NULL when none */
  struct addrinfo *addrs, *next_addr;
  struct sockaddr_storage numeric; /* the address when host was one */
  int have_numeric;
  int state;
  int refs;
  int busy; /* an operation's waiter has yet to be woken */
  int waiter;
  int timer_status; /* what the timer wakes with: BP_ETIMEDOUT, or a deferred status */
  int quiet;        /* the loop is shutting down: wake nobody */
  int user_closed;
  int done_when_written; /* the operation in flight ends once its bytes are written */
  int writing;           /* writes queued on the socket */
  int sent;              /* a byte of the operation in flight was written (or queued) */
  unsigned wakes;        /* operations finished so far */
  int port;
  double timeout; /* of the operation in flight */
  char host[256]; /* a DNS name has at most 253 characters */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* a UNIX socket's, or "" */
  char where[272]; /* how messages name the peer; the protocol writes it */
  struct ssl_ctx_st *tls_ctx; /* TLS on this connection (bp__cconn_use_tls), else NULL */
  struct ssl_st *ssl;
  struct bio_st *rbio, *wbio; /* what came from the socket / what goes to it */
  char err[256];
};

/* `*host` as a client takes it ("[::1]" stands for "::1"): on BP_OK, *host
 * and *len are the name without brackets (not NUL-terminated). BP_EINVAL
 * when it is empty or longer than 255 characters, with a message that
 * begins with `client` in err. */
int bp__cconn_parse_host(const char *client, const char **host, size_t *len, char *err,
                         size_t errlen);

/* Set up `c` (zeroed by the caller, who owns the memory until it hands it
 * over to the reference count here) for a TCP connection to host[0..hostlen)
 * (from bp__cconn_parse_host) and port, or for the UNIX socket `path` (host
 * NULL; shorter than sizeof c->path, checked by the caller). No loop work
 * yet; the caller's reference is the first. The caller writes c->where next. */
void bp__cconn_init(bp__cconn_t *c, const bp__cconn_proto_t *proto, const char *host,
                    size_t hostlen, int port, const char *path);

/* Connect, waking `waiter` once with BP_OK, or a failure (err says why),
 * within `timeout` seconds (0: no limit). Failures found now come from the
 * loop too: the caller returns BP_AGAIN. */
void bp__cconn_connect(bp__cconn_t *c, double timeout, int waiter);
/* As bp__cconn_connect, on a socket that is connected already (`fd`, a
 * non-blocking stream socket the connection owns from now on; its `path`
 * names it in errors): the waiter is woken with BP_OK on the next loop
 * turn (baseplate.testing's socket pairs). */
void bp__cconn_adopt(bp__cconn_t *c, int fd, double timeout, int waiter);

/* The protocol's handshake is done: the connection is ready, and the
 * connect's waiter is woken with BP_OK. */
void bp__cconn_ready(bp__cconn_t *c);

/* An operation begins: `waiter` is woken when it ends (bp__cconn_finish),
 * or with BP_ETIMEDOUT after `timeout` seconds (0: no limit) measured from
 * now. The socket keeps the loop alive until then. */
void bp__cconn_begin(bp__cconn_t *c, double timeout, int waiter);

/* Write buf[0..len) to the socket: at once if it takes it, else from the
 * loop. An `owned` buffer is the write's (freed when done, or on failure);
 * another is copied when it cannot go at once. A write that fails later
 * breaks the connection and ends the operation with BP_EIO. 0, or a uv
 * error code (nothing was queued). */
int bp__cconn_write(bp__cconn_t *c, char *buf, size_t len, int owned);

/* Wake the waiter of the operation in flight with `status` (nothing when
 * none). Only from loop callbacks, and last: the woken coroutine may send
 * again or close. */
void bp__cconn_finish(bp__cconn_t *c, int status);

/* The same from the loop as soon as it runs: for what a call from Lua
 * found (the waiter cannot be woken inside that call). */
void bp__cconn_finish_later(bp__cconn_t *c, int status);

/* The connection can no longer be used: a lookup in flight is cancelled,
 * the socket closed. Set err first. */
void bp__cconn_break(bp__cconn_t *c);

/* Write a message into err (printf). */
void bp__cconn_set_err(bp__cconn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether the connection can no longer be used (broken or closed). */
int bp__cconn_broken(const bp__cconn_t *c);

/* The caller's reference goes: an operation in flight is woken with
 * BP_ECLOSED (from the loop), the handles are closed, and the memory is
 * freed after their close callbacks. Idempotent. */
void bp__cconn_close(bp__cconn_t *c);

/* Start a client's timer for `ms` milliseconds from now. libuv measures
 * timers from the loop's cached time, taken when the loop last woke: code
 * that worked (or blocked) since would see its timer fire early, before a
 * reply that came in time is read. Every client arms its limits this way. */
void bp__client_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms);

/* --- TLS, a layer of the connection ---------------------------------------------
 * OpenSSL on memory BIOs: once connected, the handshake (SNI and the peer's
 * name or address verified when the context verifies), then what the
 * protocol writes with bp__cconn_write is encrypted, and on_read sees
 * plaintext. The protocol never touches OpenSSL. */

/* A client context for `ca_file` (NULL: the system's) and `verify`, kept for
 * the process's life (one per kind). NULL with "<client>: …" in err. */
struct ssl_ctx_st *bp__tls_client_context(const char *client, const char *ca_file, int verify, char *err,
                                          size_t errlen);
/* Speak TLS with `ctx` on this connection (before bp__cconn_connect). The
 * protocol's on_connect runs once the handshake is done. */
void bp__cconn_use_tls(bp__cconn_t *c, struct ssl_ctx_st *ctx);

#endif
