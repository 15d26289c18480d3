/*
 * What baseplate.testing stands on: one exchange of bytes with a server
 * over a socket pair, so a test talks to an application through the real
 * server (parser, limits, spans) without a listening socket.
 */
#ifndef BASEPLATE_TESTING_H
#define BASEPLATE_TESTING_H

#include "common.h"
#include "runtime.h"
#include <stddef.h>

typedef struct bp_test_exchange_s bp_test_exchange_t;

/**
 * Connect to `server` through a socket pair (bp_server_adopt), send the
 * `len` bytes of `request` and read until the server closes the
 * connection (send `Connection: close`) or `max_response` bytes came.
 * Returns the exchange, or NULL with *status set (BP_ENOMEM, an errno);
 * `waiter` is woken (bp_wake) once it is over: BP_OK, BP_ETOOBIG past
 * max_response, or a read or write error. Free it with
 * bp_test_exchange_free, also before it is over (the waiter is then never
 * woken).
 */
BP_EXTERN bp_test_exchange_t *bp_test_exchange_start(bp_server_t *server, const char *request,
                                                     size_t len, size_t max_response, int waiter,
                                                     int *status);
/** The bytes received (valid until the exchange is freed). */
BP_EXTERN const char *bp_test_exchange_response(const bp_test_exchange_t *x, size_t *len);
BP_EXTERN void bp_test_exchange_free(bp_test_exchange_t *x);

/**
 * A socket pair with one end given to `server` (bp_server_adopt), as if a
 * client had connected: returns the other end (non-blocking, close-on-exec,
 * the caller's to close), or a negative status (an errno, BP_ECANCELED when
 * the server is stopping). baseplate.testing's Thrift client connects so.
 */
BP_EXTERN int bp_test_connect(bp_server_t *server);

#endif
