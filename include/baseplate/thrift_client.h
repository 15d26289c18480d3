/*
 * Thrift client connections (docs/thrift.md, "Calling Thrift services"): one
 * request at a time on a TCP or UNIX stream of the process's loop, framed
 * with THeader (info headers, binary or compact inside), and exactly one
 * reply frame read back. The loop is never blocked: names are resolved with
 * uv_getaddrinfo, and the connect and call time limits are loop timers.
 *
 * The messages themselves are the caller's: the Lua side
 * (baseplate.clients.thrift) encodes the call and decodes the reply with
 * the Thrift codec; pooling, retries, spans and errors are its too.
 * Operations follow the core's async convention: a function returns
 * BP_AGAIN and the coroutine waiting as `waiter` is woken exactly once,
 * from the loop, with the operation's status; when a function returns
 * anything else, nobody is woken. An idle connection does not keep the loop
 * alive.
 *
 * A connection that lost its server, timed out, failed to connect, or got
 * something other than the one reply it waited for is broken: it cannot
 * send again, bp_thrift_conn_error() says why, and the only thing left to
 * do is bp_thrift_conn_close().
 */
#ifndef BASEPLATE_THRIFT_CLIENT_H
#define BASEPLATE_THRIFT_CLIENT_H

#include "common.h"
#include <stddef.h>

typedef struct bp_thrift_conn_s bp_thrift_conn_t;

/** A THeader info header to send (neither string NUL-terminated). */
typedef struct {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} bp_thrift_header_t;

/**
 * Start connecting to `path` (a UNIX socket) when it is not NULL, else to
 * host:port. `host` is an IPv4 or IPv6 address ("::1" or "[::1]") or a
 * name; a name is resolved on libuv's thread pool and its addresses are
 * tried in turn. `timeout` (seconds, 0 = none) covers the resolution and
 * every attempt.
 *
 * On success *out gets the connection at once, owned by the caller (free it
 * with bp_thrift_conn_close()), and BP_AGAIN is returned: `waiter` is woken
 * with BP_OK once connected, BP_EIO when resolving or connecting failed
 * (refused, no such host or file), or BP_ETIMEDOUT; after a failure the
 * connection is broken and bp_thrift_conn_error() says why.
 *
 * At once (*out NULL, the reason in err, nobody woken): BP_EINVAL (no
 * path and an empty host or a port outside 1..65535, a path too long for a
 * UNIX socket, a negative or NaN timeout), BP_ENOMEM.
 */
BP_EXTERN int bp_thrift_connect(const char *host, int port, const char *path, double timeout,
                                int waiter, bp_thrift_conn_t **out, char *err, size_t errlen);
/**
 * As bp_thrift_connect, on a stream socket that is connected already (the
 * connection owns `fd` from now on, closed on failure too): BP_AGAIN, and
 * `waiter` is woken with BP_OK on the next loop turn. baseplate.testing
 * talks to a server through a socket pair this way.
 */
BP_EXTERN int bp_thrift_connect_fd(int fd, double timeout, int waiter, bp_thrift_conn_t **out,
                                   char *err, size_t errlen);

/**
 * Send `msg` (len bytes: one whole Thrift message, CALL or ONEWAY, in
 * `protocol`, 0 binary or 1 compact) as one THeader frame carrying the
 * `nheaders` info headers. Everything is copied before this returns.
 *
 * A CALL (`oneway` 0) then waits for one reply frame of at most
 * `max_frame` bytes (1024 to 2^30 - 1): `waiter` is woken with BP_OK once it is in
 * (bp_thrift_conn_reply), BP_EIO when the connection was lost, BP_ETIMEDOUT
 * when `timeout` seconds (0 = none) passed first, BP_ETOOBIG when the reply
 * is larger than max_frame, or BP_ERROR when what came back is not a frame;
 * after any failure the connection is broken. A ONEWAY message (`oneway`
 * 1) wakes with BP_OK once written, or fails as above.
 *
 * Before anything is written the connection is checked: a server that
 * closed it while it sat idle is found here. bp_thrift_conn_sent() says
 * whether any byte of the request left, so that a caller knows when a
 * failed request may be sent again on another connection.
 *
 * At once, nobody woken: BP_EINVAL when the connection is busy or broken
 * (a server that went away is found this way too: nothing was sent), or
 * for bad arguments; BP_ENOMEM.
 */
BP_EXTERN int bp_thrift_conn_send(bp_thrift_conn_t *c, const char *msg, size_t len, int protocol,
                                  const bp_thrift_header_t *headers, int nheaders, int oneway,
                                  double timeout, size_t max_frame, int waiter);

/**
 * The last reply's message (envelope and body, transforms undone) and its
 * protocol in *protocol (0 binary, 1 compact; may be NULL); NULL when the
 * last send brought no reply. Owned by the connection, valid until its next
 * send or close.
 */
BP_EXTERN const char *bp_thrift_conn_reply(const bp_thrift_conn_t *c, size_t *len, int *protocol);

/** Whether any byte of the last request was written: 0 means it may be sent again elsewhere. */
BP_EXTERN int bp_thrift_conn_sent(const bp_thrift_conn_t *c);

/**
 * Why the last operation failed or the connection broke ("127.0.0.1:9090:
 * connection refused", "server closed the connection", "timed out after
 * 1s waiting for the reply"…); "" when nothing failed. Owned by the
 * connection, valid until its next operation or close; "closed" for NULL.
 */
BP_EXTERN const char *bp_thrift_conn_error(const bp_thrift_conn_t *c);

/** Whether the connection can no longer send (see above); 1 for NULL. */
BP_EXTERN int bp_thrift_conn_broken(const bp_thrift_conn_t *c);

/**
 * Close the connection and free it; accepts NULL; c is invalid afterwards.
 * Safe at any time: an operation in flight is abandoned and its waiter is
 * woken with BP_ECLOSED (from the loop). When the loop shuts down
 * (bp_runtime_close), open connections are disconnected without waking
 * anyone; their memory still waits for this call.
 */
BP_EXTERN void bp_thrift_conn_close(bp_thrift_conn_t *c);

#endif
