/*
 * Configuration values: the parsing primitives behind baseplate.lib.config.
 *
 * Each function parses one raw configuration value, given as a (pointer,
 * length) pair that need not be NUL-terminated, the way Baseplate.py's
 * baseplate.lib.config parses it. Surrounding white space (space, \t, \n,
 * \v, \f, \r) is ignored; an empty or all-blank value is an error ("no value
 * specified"), since whether a value may be left out is the caller's call.
 *
 * Every function returns BP_OK and fills its out-parameter, or returns
 * BP_EINVAL, leaves the out-parameter alone and writes a human-readable
 * reason into `err` (at most `errlen` bytes, always NUL-terminated; `err`
 * may be NULL or `errlen` 0 to skip it). The reason never names the key:
 * callers report "{key}: {reason}". No function allocates memory the caller
 * must free, keeps a pointer it was given or keeps any state between calls.
 *
 * The declarations are plain enough for LuaJIT's FFI; lua/baseplate/lib/
 * config.lua declares them verbatim.
 */
#ifndef BASEPLATE_CONFIG_H
#define BASEPLATE_CONFIG_H

#include "common.h"

/* Address families of a parsed endpoint (bp_endpoint_t.family), and the
 * sizes of its fixed buffers, both including the terminating NUL. */
enum {
  BP_AF_INET = 1,  /* host:port, host being a name or an IPv4 address */
  BP_AF_INET6 = 2, /* [v6addr]:port */
  BP_AF_UNIX = 3,  /* a path to a UNIX domain socket */
  BP_ENDPOINT_HOST_SIZE = 256,
  BP_ENDPOINT_PATH_SIZE = 108 /* sizeof(struct sockaddr_un.sun_path) on Linux */
};

/**
 * A parsed endpoint. For BP_AF_INET/BP_AF_INET6, `host` (without brackets)
 * and `port` are set and `path` is empty; for BP_AF_UNIX, `path` is set,
 * `host` is empty and `port` is 0. Strings are NUL-terminated.
 */
typedef struct bp_endpoint_s {
  int family;
  int port;
  char host[BP_ENDPOINT_HOST_SIZE];
  char path[BP_ENDPOINT_PATH_SIZE];
} bp_endpoint_t;

/**
 * An integer in `base` (2..36, or 0 to read the base from a 0x/0o/0b
 * prefix as Python's int(text, 0) does; base 16, 8 and 2 also allow their
 * prefix). A sign and single underscores between digits are allowed, as in
 * Python. Non-whole numbers ("1.5"), junk and values outside int64_t are
 * errors (BP_EINVAL), as is a base outside 0 and 2..36.
 */
BP_EXTERN int bp_config_parse_integer(const char *text, size_t len, int base, int64_t *out,
                                      char *err, size_t errlen);

/**
 * A floating-point number as Python's float() reads it: decimal digits with
 * an optional fraction and exponent ("1e3", "-2.5", "1_000.5"), or "inf",
 * "infinity", "nan" in any case, with an optional sign. Hexadecimal and
 * anything else is an error (BP_EINVAL). Values too large become +-inf, as
 * in Python. The decimal point is '.' whatever the C locale says.
 */
BP_EXTERN int bp_config_parse_float(const char *text, size_t len, double *out, char *err,
                                    size_t errlen);

/**
 * "true" or "false" in any case; *out becomes 1 or 0. Anything else
 * ("yes", "1", "on") is an error (BP_EINVAL).
 */
BP_EXTERN int bp_config_parse_boolean(const char *text, size_t len, int *out, char *err,
                                      size_t errlen);

/* Flags of bp_config_parse_timespan. */
enum {
  BP_CONFIG_TIMESPAN_INFINITE = 1, /* the word "infinite" gives HUGE_VAL */
  BP_CONFIG_TIMESPAN_NEGATIVE = 2  /* a negative count is allowed (Baseplate.py's Timespan) */
};

/**
 * A span of time: exactly two white-space separated tokens, a whole count
 * and a unit (millisecond, second, minute, hour or day, in any case, with
 * any number of trailing "s": "seconds", as Baseplate.py depluralizes).
 * *out is the span in seconds, e.g. 0.03 for "30 milliseconds". `flags`:
 * with BP_CONFIG_TIMESPAN_INFINITE the single word "infinite" (any case) is
 * accepted too and gives HUGE_VAL (+infinity); with
 * BP_CONFIG_TIMESPAN_NEGATIVE a negative count gives a negative span
 * (without it, a negative count is an error). Errors (BP_EINVAL): another
 * number of tokens, a count that is not a whole number ("3.2 hours"), a
 * refused negative count, an unknown unit ("2 weeks").
 */
BP_EXTERN int bp_config_parse_timespan(const char *text, size_t len, int flags, double *out,
                                       char *err, size_t errlen);

/**
 * A percentage: a number (as bp_config_parse_float reads it) followed by
 * '%', from 0% to 100% inclusive. *out is the fraction, e.g. 0.372 for
 * "37.2%". A missing '%', a bad number or a value out of range is an error
 * (BP_EINVAL).
 */
BP_EXTERN int bp_config_parse_percent(const char *text, size_t len, double *out, char *err,
                                      size_t errlen);

/**
 * An endpoint to connect to (or listen on). Text containing '/' is the path
 * of a UNIX domain socket (BP_AF_UNIX; at most BP_ENDPOINT_PATH_SIZE - 1
 * bytes). Otherwise it is "host:port" (BP_AF_INET) or "[v6addr]:port"
 * (BP_AF_INET6; the address must be a valid IPv6 address) with a port from
 * 0 to 65535 written as Python's int() reads it (white space around it, a
 * "+" sign and underscores between digits are allowed). The host of
 * "host:port" may be empty (":80": every interface when listening, this
 * host when connecting, as Python's sockets take ""). No port, an
 * over-long host, white space in the host, an unbracketed IPv6 address or a
 * bad port is an error (BP_EINVAL). `out` is filled completely on success.
 */
BP_EXTERN int bp_config_parse_endpoint(const char *text, size_t len, bp_endpoint_t *out, char *err,
                                       size_t errlen);

/**
 * Base64 (standard alphabet, '=' padding required as Python's b64decode
 * requires it). White space anywhere is ignored (values may span INI
 * continuation lines); any other character outside the alphabet, or wrong
 * padding, is an error (BP_EINVAL).
 *
 * The decoded bytes go to `out`, which holds `cap` bytes; *outlen is set to
 * the decoded length. When `cap` is too small (for instance out = NULL,
 * cap = 0 to ask for the size), returns BP_ETOOBIG with *outlen set to the
 * size needed and nothing written to `out`. The decoded length is never
 * more than len / 4 * 3.
 */
BP_EXTERN int bp_config_parse_base64(const char *text, size_t len, unsigned char *out, size_t cap,
                                     size_t *outlen, char *err, size_t errlen);

/**
 * A UNIX user: a decimal user id (taken as it is, without a lookup; a "+"
 * sign and underscores between digits allowed, as Python's int()) or a
 * user name, looked up with getpwnam_r. *uid is the user id. An unknown
 * name or a failed lookup is an error (BP_EINVAL) that names the user.
 */
BP_EXTERN int bp_config_parse_unix_user(const char *text, size_t len, uint32_t *uid, char *err,
                                        size_t errlen);

/**
 * A UNIX group: a decimal group id or a group name, looked up with
 * getgrnam_r. *gid is the group id. Errors as bp_config_parse_unix_user.
 */
BP_EXTERN int bp_config_parse_unix_group(const char *text, size_t len, uint32_t *gid, char *err,
                                         size_t errlen);

#endif
