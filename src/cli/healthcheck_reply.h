/* The answer to baseplate-healthcheck's request, judged as Baseplate.py's
 * tool judges it: healthy when it is a 2xx with a JSON body. Kept apart from
 * the tool's networking so that tests/fuzz/fuzz-healthcheck.c can feed it
 * any bytes. Not part of the library. */
#ifndef BASEPLATE_CLI_HEALTHCHECK_REPLY_H
#define BASEPLATE_CLI_HEALTHCHECK_REPLY_H

#include <http_parser.h>
#include <stddef.h>

/* The longest body read; a longer one is unhealthy. */
#define BP_HC_MAX_BODY (64 * 1024)

typedef struct {
  http_parser parser;
  http_parser_settings settings;
  char body[BP_HC_MAX_BODY];
  size_t body_len;
  int body_too_big;
  int complete;
  unsigned status; /* of the final (non-1xx) answer, once complete */
  int done; /* the verdict is in: feed takes nothing more */
} bp__hc_reply_t;

/* Ready r for a new answer. Nothing to free. */
void bp__hc_reply_init(bp__hc_reply_t *r);

/*
 * Feed the next n bytes of the answer; n == 0 means the server closed the
 * connection. Returns 0 while more is needed, 1 once the verdict is in:
 * `err` is then "" for healthy, else the reason (NUL-terminated, cut to
 * errlen). `url` (what was asked) and `endpoint` (where) go into reasons.
 * After the verdict, further calls return 1 and leave err alone.
 */
int bp__hc_reply_feed(bp__hc_reply_t *r, const char *data, size_t n, const char *url,
                      const char *endpoint, char *err, size_t errlen);

/* Whether s[0..len) is one JSON value (RFC 8259), white space around it
 * allowed; nesting deeper than 64 is refused. */
int bp__hc_is_json(const char *s, size_t len);

/* Write a verdict (printf-style) into err (errlen bytes; nothing when 0). */
void bp__hc_say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
