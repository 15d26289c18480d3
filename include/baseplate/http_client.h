/*
 * HTTP client calls (docs/http-client.md): libcurl's multi interface driven
 * by the process's libuv loop. One CURLM serves the process: libcurl's
 * sockets are watched with uv_poll handles and its one timer is a loop
 * timer, so the loop is never blocked (names are resolved by libcurl's
 * threaded resolver). Connections are kept alive and reused by libcurl's
 * connection cache; HTTP/2 is used over TLS when the server offers it.
 *
 * A call is one request and its response. It follows the core's async
 * convention: bp_http_call_start() returns BP_AGAIN and the coroutine
 * waiting as `waiter` is woken exactly once, from the loop, with BP_OK (a
 * response came: any status, 404 and 500 too), BP_ETIMEDOUT, BP_ETOOBIG
 * (the response outgrew max_size), BP_ECLOSED (the call was freed or the
 * loop shut down) or BP_EIO (anything else: bp_http_call_error() says what,
 * bp_http_call_failure() of what kind).
 *
 * An address filter (bp_http_filter_t) judges every address a call
 * connects to, when the socket is opened and again before each request is
 * sent on a new or reused connection, so neither DNS rebinding nor a
 * connection opened for another client gets past it.
 */
#ifndef BASEPLATE_HTTP_CLIENT_H
#define BASEPLATE_HTTP_CLIENT_H

#include "common.h"
#include <stddef.h>

typedef struct bp_http_call_s bp_http_call_t;
typedef struct bp_http_filter_s bp_http_filter_t;

/** What a filter lets through. */
#define BP_HTTP_FILTER_EXTERNAL 1 /* public addresses only (Baseplate.py's external client) */
#define BP_HTTP_FILTER_INTERNAL 2 /* non-public addresses only (its internal client) */

/** The lists of a filter (bp_http_filter_add). */
#define BP_HTTP_ALLOW 1
#define BP_HTTP_DENY 2

/** What made a call fail (bp_http_call_failure). */
#define BP_HTTP_FAIL_NONE 0
#define BP_HTTP_FAIL_CONNECT 1 /* resolving or connecting failed: nothing was sent */
#define BP_HTTP_FAIL_REFUSED 2 /* the filter refused the address (bp_http_call_address) */
#define BP_HTTP_FAIL_TIMEOUT 3
#define BP_HTTP_FAIL_TOOBIG 4
#define BP_HTTP_FAIL_OTHER 5 /* TLS, a broken response, a connection lost mid-way */

/** The wake status of a streamed call whose next chunk is ready
 * (bp_http_call_stream); positive, so never taken for an error. */
#define BP_HTTP_CHUNK 1

/** A call's settings. */
typedef struct {
  double connect_timeout; /* seconds to connect (0: libcurl's 300) */
  double timeout;         /* seconds for the whole call, from its start (0: no limit) */
  size_t max_size;        /* the most response body bytes kept (0: 64 MiB) */
  const bp_http_filter_t *filter; /* or NULL: any address */
  const char *ca_file;            /* CA bundle for https (NULL: the system's) */
  int verify;                     /* check the server's certificate and name (https) */
} bp_http_options_t;

/**
 * A new filter of `mode` (BP_HTTP_FILTER_EXTERNAL or _INTERNAL). An
 * external filter refuses loopback, private, link-local, carrier-grade NAT,
 * multicast, reserved and documentation ranges and IPv6's forms of them
 * (IPv4-mapped and NAT64 addresses are judged by the IPv4 address inside;
 * ULA, site-local, 6to4 and Teredo are refused), and every IPv6 address
 * unless `allow_ipv6`. An internal filter refuses public addresses. NULL
 * when out of memory. Reference counted: a call holds its filter.
 */
BP_EXTERN bp_http_filter_t *bp_http_filter_new(int mode, int allow_ipv6);

/** Add the network `cidr` ("1.2.3.0/24", "1.2.3.4", "2001:db8::/32") to
 * the allow or deny list. An allowed network is let through whatever else
 * says; a denied one is refused. BP_EINVAL with a message in err. */
BP_EXTERN int bp_http_filter_add(bp_http_filter_t *f, int list, const char *cidr, char *err,
                                 size_t errlen);

/** Add a TCP port to the allow or deny list (1..65535, else BP_EINVAL).
 * When the allow list has ports, only those are let through. */
BP_EXTERN int bp_http_filter_add_port(bp_http_filter_t *f, int list, int port);

/** Judge `ip` (text) and `port`: BP_OK, or BP_DECLINED with the reason in
 * why ("127.0.0.1 is a loopback address"), or BP_EINVAL (not an address). */
BP_EXTERN int bp_http_filter_check(const bp_http_filter_t *f, const char *ip, int port, char *why,
                                   size_t whylen);

/** Drop the caller's reference. NULL is fine. */
BP_EXTERN void bp_http_filter_free(bp_http_filter_t *f);

/**
 * A new call of `method` to `url` (http:// or https:// only; other schemes
 * and proxies from the environment are never used). BP_OK with *out, or
 * BP_EINVAL / BP_ENOMEM with the reason in err. Add headers and a body,
 * then start it.
 */
BP_EXTERN int bp_http_call_new(const char *method, const char *url, const bp_http_options_t *opts,
                               bp_http_call_t **out, char *err, size_t errlen);

/** Add a request header "Name: value" (copied). BP_EINVAL for a line with
 * CR or LF in it. */
BP_EXTERN int bp_http_call_header(bp_http_call_t *c, const char *line);

/** The request body (copied). */
BP_EXTERN int bp_http_call_body(bp_http_call_t *c, const char *body, size_t len);

/** Resolve a name to an address for this call ("host:port:address", as
 * curl's --resolve). Shared with later calls through libcurl's DNS cache. */
BP_EXTERN int bp_http_call_resolve(bp_http_call_t *c, const char *entry);

/** Start the call: BP_AGAIN, and `waiter` is woken once from the loop
 * (see above). BP_EINVAL when it was started already. */
BP_EXTERN int bp_http_call_start(bp_http_call_t *c, int waiter);

/**
 * Stream the response body instead of keeping it whole (before start):
 * what comes is buffered up to `window` bytes (0: 256 KiB; beyond, the
 * transfer is paused, so memory stays bounded whatever the body's size)
 * and handed out in chunks by bp_http_call_take. `max_size` limits the
 * whole body (0: no limit; beyond, the call fails with BP_ETOOBIG).
 *
 * The waiter is then woken with BP_HTTP_CHUNK whenever a chunk is ready
 * (status and headers are known by then), or with the call's final status
 * as above. After a BP_HTTP_CHUNK: take the chunk, then bp_http_call_next.
 * After the final status: take the last chunk (perhaps empty).
 */
BP_EXTERN int bp_http_call_stream(bp_http_call_t *c, size_t window, size_t max_size);

/** What a streamed call received since the last take (perhaps nothing);
 * the transfer, paused on a full window, goes on. The text is the call's,
 * valid until the next take or the call is freed. */
BP_EXTERN const char *bp_http_call_take(bp_http_call_t *c, size_t *len);

/** After a chunk was taken: BP_HTTP_CHUNK when another is ready now, the
 * final status when the call is over, or BP_AGAIN, and `waiter` is woken
 * once with one of those. BP_EINVAL when the call does not stream, or a
 * wake is owed already. */
BP_EXTERN int bp_http_call_next(bp_http_call_t *c, int waiter);

/** The response's status code (0 before one came). */
BP_EXTERN int bp_http_call_status(const bp_http_call_t *c);

/** The response's HTTP version: 10, 11, 20 (0 before one came). */
BP_EXTERN int bp_http_call_version(const bp_http_call_t *c);

/** The response's header lines ("Name: value\r\n"…, the status line left
 * out; of the final response after any 1xx). Valid until the call is freed. */
BP_EXTERN const char *bp_http_call_headers(const bp_http_call_t *c, size_t *len);

/** The response body. Valid until the call is freed. */
BP_EXTERN const char *bp_http_call_response_body(const bp_http_call_t *c, size_t *len);

/** Why the call failed ("" when it did not). */
BP_EXTERN const char *bp_http_call_error(const bp_http_call_t *c);

/** What kind of failure (BP_HTTP_FAIL_*). */
BP_EXTERN int bp_http_call_failure(const bp_http_call_t *c);

/** The address connected to, or the one refused ("" when none). */
BP_EXTERN const char *bp_http_call_address(const bp_http_call_t *c);

/** Free the call. A call in flight is abandoned: its waiter is woken with
 * BP_ECLOSED from the loop. NULL is fine. */
BP_EXTERN void bp_http_call_free(bp_http_call_t *c);

/** The calls in flight in the process. */
BP_EXTERN int bp_http_calls_in_flight(void);

/** The most idle connections kept alive for reuse (libcurl's connection
 * cache; by default four times the calls in flight). */
BP_EXTERN void bp_http_set_max_connections(int n);

#endif
