/*
 * Redis connections (docs/redis.md): commands written in RESP on a libuv
 * TCP stream of the process's loop (optionally TLS, through OpenSSL),
 * replies parsed by hiredis's reader. The
 * loop is never blocked: names are resolved with uv_getaddrinfo, connecting,
 * writing and reading wait for the socket, and the connect and command time
 * limits are loop timers. Sockets get TCP_NODELAY.
 *
 * One connection runs one operation at a time (a connect, then sends); the
 * pooling, spans and waiting are the Lua side's (baseplate.clients.redis).
 * Operations follow the core's async convention: the function returns
 * BP_AGAIN and the coroutine waiting as `waiter` is woken exactly once, from
 * the loop, with the operation's status; when a function returns anything
 * else, nobody is woken. An idle connection does not keep the loop alive.
 *
 * A connection that lost its server, timed out or failed to connect is
 * broken: it cannot send again, bp_redis_error() says why, and the only
 * thing left to do is bp_redis_close().
 *
 * Replies are hiredis's reply objects, kept by the connection and readable
 * until the next send or the close. Commands that make the server answer
 * more or less than once per command (SUBSCRIBE and friends, MONITOR, SYNC,
 * CLIENT REPLY) are refused: they need a different kind of client.
 */
#ifndef BASEPLATE_REDIS_H
#define BASEPLATE_REDIS_H

#include "common.h"
#include <stddef.h>

typedef struct bp_redis_conn_s bp_redis_conn_t;
typedef struct bp_redis_reply_s bp_redis_reply_t;

/* Reply types (RESP2). NIL is both the null bulk string and the null array
 * (e.g. a BLPOP that timed out). */
#define BP_REDIS_STRING 1
#define BP_REDIS_ARRAY 2
#define BP_REDIS_INTEGER 3
#define BP_REDIS_NIL 4
#define BP_REDIS_STATUS 5
#define BP_REDIS_ERROR 6

/**
 * Start connecting to host:port. `host` is an IPv4 or IPv6 address ("::1"
 * or "[::1]") or a name; a name is resolved on libuv's thread pool and its
 * addresses are tried in turn until one accepts. connect_timeout (seconds,
 * 0 = none) covers the resolution and every attempt.
 *
 * On success *out gets the connection at once, owned by the caller (free it
 * with bp_redis_close()), and BP_AGAIN is returned: `waiter` is woken with
 * BP_OK once connected, with BP_EIO when resolving or connecting failed
 * (refused, unreachable, no such host), or with BP_ETIMEDOUT; after either
 * failure the connection is broken and bp_redis_error() says why.
 *
 * Errors at once (*out NULL, the reason in err, nobody woken): BP_EINVAL
 * (NULL or empty host, a port outside 1..65535, a negative or NaN timeout),
 * BP_ENOMEM.
 */
BP_EXTERN int bp_redis_connect(const char *host, int port, double connect_timeout, int waiter,
                               bp_redis_conn_t **out, char *err, size_t errlen);

/** TLS settings for bp_redis_connect_tls (rediss://). */
typedef struct {
  const char *ca_file; /* PEM CA certificates to trust; NULL: the system's */
  int verify;          /* check the server's certificate and name (or IP address) */
} bp_redis_tls_t;

/**
 * bp_redis_connect over TLS (`tls` NULL: plain TCP, as bp_redis_connect).
 * The handshake is part of connecting (and of connect_timeout); a failed
 * one wakes with BP_EIO and bp_redis_error() says why ("TLS handshake
 * failed: certificate verify failed"…). SNI carries `host` when it is a
 * name. BP_EINVAL at once when the CA file cannot be loaded.
 */
BP_EXTERN int bp_redis_connect_tls(const char *host, int port, double connect_timeout,
                                   const bp_redis_tls_t *tls, int waiter, bp_redis_conn_t **out,
                                   char *err, size_t errlen);

/**
 * Send ncmds commands in one write (a pipeline). Command i has argcs[i] >= 1
 * arguments, its name first; argv/argvlen hold all the commands' arguments
 * back to back (binary-safe; an argument may be NULL when its length is 0).
 * The commands are formatted (copied) before this returns: the caller's
 * buffers are not needed afterwards.
 *
 * BP_AGAIN: `waiter` is woken with BP_OK once all ncmds replies are in (a
 * Redis error reply is a reply of type BP_REDIS_ERROR, not a wake status),
 * BP_EIO when the connection was lost (it is then broken), BP_ETIMEDOUT
 * when `timeout` seconds (0 = none) passed first (the connection is then
 * dropped and broken: what the server did is unknown), or BP_ENOMEM when a
 * reply could not be kept (the connection is then broken too).
 *
 * At once, nobody woken: BP_EINVAL when the connection is busy or broken,
 * ncmds < 1, an argc < 1, a NULL argument with a length, a negative
 * timeout, or a refused command (see above; bp_redis_error() names it);
 * BP_ENOMEM (when some commands had been queued already, the connection is
 * dropped and broken).
 */
BP_EXTERN int bp_redis_send(bp_redis_conn_t *c, int ncmds, const int *argcs,
                            const char *const *argv, const size_t *argvlen, double timeout,
                            int waiter);

/**
 * How many replies the last send collected: ncmds after BP_OK, those that
 * had arrived after a failure. 0 for NULL.
 */
BP_EXTERN int bp_redis_reply_count(const bp_redis_conn_t *c);

/**
 * Reply i (0-based) of the last send, or NULL when out of range. Owned by
 * the connection; valid, with everything reached from it, until the next
 * send or the close.
 */
BP_EXTERN const bp_redis_reply_t *bp_redis_reply(const bp_redis_conn_t *c, int i);

/** A reply's BP_REDIS_* type; 0 for NULL. */
BP_EXTERN int bp_redis_reply_type(const bp_redis_reply_t *r);

/** An INTEGER reply's value; 0 for other types and NULL. */
BP_EXTERN long long bp_redis_reply_integer(const bp_redis_reply_t *r);

/**
 * The bytes of a STRING, STATUS or ERROR reply (an ERROR's text is Redis's
 * message, e.g. "ERR value is not an integer or out of range"), with their
 * length in *len (when len is not NULL). NUL-terminated after len bytes,
 * but a STRING may hold NULs itself. NULL (and *len 0) for other types.
 * Same lifetime as the reply.
 */
BP_EXTERN const char *bp_redis_reply_string(const bp_redis_reply_t *r, size_t *len);

/** The number of elements of an ARRAY reply; 0 for other types and NULL. */
BP_EXTERN size_t bp_redis_reply_elements(const bp_redis_reply_t *r);

/** Element i (0-based) of an ARRAY reply; NULL when out of range. */
BP_EXTERN const bp_redis_reply_t *bp_redis_reply_element(const bp_redis_reply_t *r, size_t i);

/**
 * Why the last operation failed or the connection broke ("127.0.0.1:6379:
 * Connection refused", "Server closed the connection", "timed out after
 * 0.2s waiting for 1 of 3 replies", "closed"…); "" when nothing failed.
 * Owned by the connection, valid until its next operation or close.
 */
BP_EXTERN const char *bp_redis_error(const bp_redis_conn_t *c);

/** Whether the connection can no longer send (see above); 1 for NULL. */
BP_EXTERN int bp_redis_broken(const bp_redis_conn_t *c);

/**
 * Whether an operation is in flight: its waiter has not been woken yet.
 * 0 for NULL.
 */
BP_EXTERN int bp_redis_busy(const bp_redis_conn_t *c);

/**
 * Close the connection and free it; accepts NULL; c is invalid afterwards.
 * Safe at any time: an operation in flight is abandoned and its waiter is
 * woken with BP_ECLOSED (later, from the loop: the memory goes once the
 * loop has released it). When the loop shuts down (bp_runtime_close), open
 * connections are disconnected without waking anyone; their memory still
 * waits for this call, which may then come after the loop is gone.
 */
BP_EXTERN void bp_redis_close(bp_redis_conn_t *c);

/**
 * Redis Cluster's hash slot of a key (0 to 16383): CRC16 (XMODEM) of the
 * key, or of its hash tag (what is between the first `{` and the next
 * `}`, when not empty), modulo 16384.
 */
BP_EXTERN int bp_redis_keyslot(const char *key, size_t len);

#endif
