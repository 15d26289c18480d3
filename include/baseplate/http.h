/*
 * Applications, routes, requests and responses, shared by Lua handlers
 * (through baseplate.http) and C handlers (C extension modules).
 *
 * A request enters in src/http.c, is matched against the application's
 * routes (src/app.c), and goes to its handler: a C function called directly,
 * or a Lua function run in a coroutine by lua/baseplate/runtime.lua. Either
 * way the handler answers through bp_response_* below, which write the whole
 * response with one write.
 */
#ifndef BASEPLATE_HTTP_H
#define BASEPLATE_HTTP_H

#include "common.h"
#include "span.h"

typedef struct bp_app_s bp_app_t;
typedef struct bp_request_s bp_request_t;

/**
 * A C request handler. It answers with bp_response_send() before returning
 * BP_OK, or returns BP_AGAIN and answers later (the request stays valid until
 * it does). Any other return without an answer gives the client a 500.
 */
typedef int (*bp_handler_fn)(bp_request_t *req, void *data);

/**
 * Give every routed request a server span of `bp` (named after its route),
 * observed by bp's observers. With trust_trace_headers, X-Trace, X-Span,
 * X-Parent, X-Sampled, X-Flags and X-Edge-Request are read from the
 * request; else every request starts a new trace. `bp` is borrowed.
 */
BP_EXTERN void bp_app_set_baseplate(bp_app_t *app, bp_baseplate_t *bp, int trust_trace_headers);

/** The request's server span (NULL without a Baseplate or once answered). */
BP_EXTERN bp_span_t *bp_request_span(bp_request_t *req);

/**
 * Mark the request failed with an error class ("Error", …): its server span
 * finishes as a failure when the response goes out.
 */
BP_EXTERN void bp_request_set_error(bp_request_t *req, const char *error_class);

/** A new, empty application. Free with bp_app_free. NULL on ENOMEM. */
BP_EXTERN bp_app_t *bp_app_new(void);

/** Free an application and its routes. NULL is fine. */
BP_EXTERN void bp_app_free(bp_app_t *app);

/**
 * Add a route named `name` (used for spans and metrics) for `method`
 * ("GET", …; NULL or "*" for any) and `pattern`. Patterns are paths whose
 * segments may be `{param}` (one segment) or, last, `*param` (the rest of
 * the path). Routes are tried in the order added. Returns BP_OK, BP_EINVAL
 * for a malformed pattern (err says why), or BP_ENOMEM. Strings are copied.
 */
BP_EXTERN int bp_app_add_route(bp_app_t *app, const char *name, const char *method,
                               const char *pattern, bp_handler_fn fn, void *data,
                               char *err, size_t errlen);

/** Same for a Lua handler, identified by the Lua side's handler id. */
BP_EXTERN int bp_app_add_lua_route(bp_app_t *app, const char *name, const char *method,
                                   const char *pattern, int lua_handler, char *err,
                                   size_t errlen);

/** Number of routes. */
BP_EXTERN int bp_app_route_count(const bp_app_t *app);

/** The name of the route `method` `path` would reach, or NULL. */
BP_EXTERN const char *bp_app_find_route(const bp_app_t *app, const char *method, const char *path);

/* --- request ---------------------------------------------------------------- */

/** The method ("GET", …). Static string. */
BP_EXTERN const char *bp_request_method(const bp_request_t *req);

/** The path (before '?', not decoded). *len receives its length. */
BP_EXTERN const char *bp_request_path(const bp_request_t *req, size_t *len);

/** The query string (after '?', not decoded; "" when none). */
BP_EXTERN const char *bp_request_query(const bp_request_t *req, size_t *len);

/** The body ("" when none). Valid until the response is sent. */
BP_EXTERN const char *bp_request_body(const bp_request_t *req, size_t *len);

/** Number of header fields. */
BP_EXTERN int bp_request_header_count(const bp_request_t *req);

/** The i-th header as received (name case preserved). BP_ENOENT past the end. */
BP_EXTERN int bp_request_header_at(const bp_request_t *req, int i, const char **name,
                                   size_t *name_len, const char **value, size_t *value_len);

/** The first header called `name` (case-insensitive), or NULL. */
BP_EXTERN const char *bp_request_header(const bp_request_t *req, const char *name, size_t *len);

/** HTTP version as major * 10 + minor (11 for HTTP/1.1). */
BP_EXTERN int bp_request_http_version(const bp_request_t *req);

/** The matched route's name. */
BP_EXTERN const char *bp_request_route_name(const bp_request_t *req);

/** Number of path parameters captured by the route. */
BP_EXTERN int bp_request_param_count(const bp_request_t *req);

/** The i-th path parameter (name NUL-terminated; value into the path). */
BP_EXTERN int bp_request_param_at(const bp_request_t *req, int i, const char **name,
                                  const char **value, size_t *value_len);

/** The peer's address as text ("127.0.0.1"). Static per connection. */
BP_EXTERN const char *bp_request_remote_addr(const bp_request_t *req);

/* --- response --------------------------------------------------------------- */

/**
 * Add a response header. Copied. Content-Length, Connection and Date are
 * set by the server. BP_EINVAL for CR/LF in name or value, BP_ECLOSED when
 * the response was already sent or its stream started.
 */
BP_EXTERN int bp_response_header(bp_request_t *req, const char *name, size_t name_len,
                                 const char *value, size_t value_len);

/**
 * Send the response: status line, headers and body with one write. The body
 * is copied. After this the request and every pointer from it are invalid
 * for the caller. BP_ECLOSED if the client went away (the request is freed
 * all the same) or the response was already sent.
 */
BP_EXTERN int bp_response_send(bp_request_t *req, int status, const char *content_type,
                               const char *body, size_t body_len);

/**
 * Start a streamed response: the body follows in bp_response_write calls
 * (chunked for HTTP/1.1; for HTTP/1.0 the connection's close ends it) and
 * bp_response_finish ends it. Headers added before are sent with the first
 * chunk. BP_EINVAL for a status that has no body; BP_ECLOSED when the client
 * is gone or a response was already started or sent.
 */
BP_EXTERN int bp_response_start(bp_request_t *req, int status, const char *content_type);

/**
 * Send one piece of a streamed body (copied). BP_OK when written; BP_AGAIN
 * when the socket is full: `waiter` is woken (BP_OK, or BP_ECLOSED) once it
 * is written, and nothing else may be written before. BP_ECLOSED when the
 * client is gone.
 */
BP_EXTERN int bp_response_write(bp_request_t *req, const char *data, size_t len, int waiter);

/** End a streamed response. The request is invalid afterwards. */
BP_EXTERN int bp_response_finish(bp_request_t *req);

/**
 * Give up on a response (a streamed one failed half-way): the connection is
 * closed, so the client sees an incomplete body rather than a complete one.
 */
BP_EXTERN int bp_response_abort(bp_request_t *req);

/** Whether the response was sent (or the request abandoned). */
BP_EXTERN int bp_response_sent(const bp_request_t *req);

/** The reason phrase for a status code ("Not Found"). Static. */
BP_EXTERN const char *bp_http_status_text(int status);

/**
 * The server's error body for `status`: {"error": 404, "reason": "Not
 * Found"}, with `reason` (NULL: the status text) escaped for JSON. Every
 * error the server answers by itself has this shape. Writes into buf (NUL
 * terminated); returns the length, or 0 when it does not fit in `size`.
 */
BP_EXTERN size_t bp_http_error_body(int status, const char *reason, char *buf, size_t size);

#endif
