/*
 * The Thrift server: THeader (binary or compact inside, zlib, info headers)
 * and, for clients that do not speak it, framed and unframed binary and
 * compact, on the protocol-neutral server core. One call at a time per
 * connection; the reply goes back in the call's own transport and
 * protocol. The methods are Lua's (baseplate.server.thrift); a call's
 * arguments and result are encoded by the Thrift codec.
 */
#ifndef BASEPLATE_THRIFT_H
#define BASEPLATE_THRIFT_H

#include "baseplate/common.h"
#include "baseplate/span.h"
#include "baseplate/runtime.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bp_thrift_server_s bp_thrift_server_t;
typedef struct bp_thrift_call_s bp_thrift_call_t;

/** Server limits; bp_thrift_server_options_init fills the defaults. */
typedef struct {
  size_t max_frame_size;  /* bytes of one message (inflated too); beyond: the connection closes */
  double message_timeout; /* s for a message's bytes to arrive once the first came */
  double idle_timeout;    /* s a connection may wait between messages; 0: no limit */
  int max_concurrency;    /* connections served at once; 0: no limit */
  int shared_socket;      /* other processes accept on it too: take turns */
} bp_thrift_server_options_t;

BP_EXTERN void bp_thrift_server_options_init(bp_thrift_server_options_t *o);
/** sizeof(bp_thrift_server_options_t): the Lua side checks its declaration. */
BP_EXTERN size_t bp_thrift_server_options_size(void);

/**
 * Serve Thrift on `listener`: each call goes to Lua handler `handler` (an
 * id of baseplate.server.thrift's), in a server span of `bp` (NULL: no
 * spans) named after the method, the child of the caller's span when
 * `trust_trace_headers` and the THeader headers carry a valid trace. `bp`
 * must outlive the server. NULL with a reason in err.
 */
BP_EXTERN bp_thrift_server_t *bp_thrift_server_start(bp_baseplate_t *bp, int trust_trace_headers,
                                                     int handler, bp_listener_t *listener,
                                                     const bp_thrift_server_options_t *opts,
                                                     char *err, size_t errlen);

/* --- a call ------------------------------------------------------------------ */

/** The method's name (NUL-terminated; len may be NULL). */
BP_EXTERN const char *bp_thrift_call_method(const bp_thrift_call_t *call, size_t *len);
/** 1: a call that wants a reply; 4: oneway (nothing goes back). */
BP_EXTERN int bp_thrift_call_type(const bp_thrift_call_t *call);
BP_EXTERN int32_t bp_thrift_call_seqid(const bp_thrift_call_t *call);
/** 0: binary, 1: compact. */
BP_EXTERN int bp_thrift_call_protocol(const bp_thrift_call_t *call);
/** 0: unframed, 1: framed, 2: THeader. */
BP_EXTERN int bp_thrift_call_transport(const bp_thrift_call_t *call);
/** The whole message (envelope and arguments); *body_off: where the arguments start. */
BP_EXTERN const char *bp_thrift_call_message(const bp_thrift_call_t *call, size_t *len,
                                             size_t *body_off);
/** The THeader info header `name` (any case), or NULL. */
BP_EXTERN const char *bp_thrift_call_header(const bp_thrift_call_t *call, const char *name,
                                            size_t *len);
BP_EXTERN int bp_thrift_call_header_count(const bp_thrift_call_t *call);
BP_EXTERN void bp_thrift_call_header_at(const bp_thrift_call_t *call, int i, const char **name,
                                        size_t *name_len, const char **value, size_t *value_len);
/** The caller's address ("-" on a UNIX socket). */
BP_EXTERN const char *bp_thrift_call_remote_addr(const bp_thrift_call_t *call);
/** The call's server span, or NULL without a Baseplate. */
BP_EXTERN bp_span_t *bp_thrift_call_span(const bp_thrift_call_t *call);
/** The error class the span finishes with (NULL: success). */
BP_EXTERN void bp_thrift_call_set_error(bp_thrift_call_t *call, const char *error_class);
/** The failed call's error code (a baseplate.thrift `Error`'s `code`, 0: none),
 * for Prometheus' `thrift_baseplate_status_code` and `thrift_baseplate_status`. */
BP_EXTERN void bp_thrift_call_set_error_code(bp_thrift_call_t *call, int code);

/**
 * Answer: `msg` is a whole Thrift message (REPLY, or EXCEPTION) in the
 * call's protocol; it goes back in the call's transport. The call is over
 * (do not use it afterwards). BP_OK, BP_ECLOSED (the client is gone),
 * BP_ENOMEM, or BP_EINVAL (a oneway call, or answered already).
 */
BP_EXTERN int bp_thrift_call_reply(bp_thrift_call_t *call, const char *msg, size_t len);
/**
 * Answer with a TApplicationException of `type` (1 UNKNOWN_METHOD, 6
 * INTERNAL_ERROR, 7 PROTOCOL_ERROR…) and `message`; as bp_thrift_call_reply.
 */
BP_EXTERN int bp_thrift_call_fail(bp_thrift_call_t *call, int type, const char *message);
/** A oneway call is over (nothing goes back); as bp_thrift_call_reply. */
BP_EXTERN int bp_thrift_call_finish(bp_thrift_call_t *call);
/** Whether the call was answered (or finished) already. */
BP_EXTERN int bp_thrift_call_answered(const bp_thrift_call_t *call);

/**
 * A method written in C (attached to a processor with Lua's
 * thrift.c_method(fn, data)): read the call (bp_thrift_call_message: the
 * arguments are the C code's to decode) and answer it once, at once or
 * later from a loop callback. BP_OK or BP_AGAIN (answered later); another
 * status answers a call not answered yet with INTERNAL_ERROR.
 */
typedef int (*bp_thrift_method_fn)(bp_thrift_call_t *call, void *data);

#endif
