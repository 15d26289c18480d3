/* baseplate-healthcheck's Thrift check: BaseplateServiceV2.is_healthy
 * (formats.md, "Health checks") over THeader in the binary protocol, and
 * the reply judged as Baseplate.py's tool judges it. Kept apart from the
 * tool's networking so that tests/fuzz/fuzz-healthcheck.c can feed it any
 * bytes. Not part of the library. */
#ifndef BASEPLATE_CLI_HEALTHCHECK_THRIFT_H
#define BASEPLATE_CLI_HEALTHCHECK_THRIFT_H

#include <stddef.h>

#include "thrift/theader.h"

/* The largest reply frame read (its payload inflated, if zlib). */
#define BP_HC_THRIFT_MAX (64 * 1024)

typedef struct {
  char buf[BP_HC_THRIFT_MAX + 16];
  size_t len;
  int too_big;
  int done;
  bp__theader_frame_t frame;
} bp__hc_thrift_t;

/* The request: is_healthy(IsHealthyRequest{probe}) in a THeader frame
 * (binary, sequence id 0, as Baseplate.py's client sends it first). Its
 * length, or 0 when cap is too small. */
size_t bp__hc_thrift_request(int probe, char *out, size_t cap);

void bp__hc_thrift_init(bp__hc_thrift_t *r);
void bp__hc_thrift_free(bp__hc_thrift_t *r);

/* As bp__hc_reply_feed (healthcheck_reply.h): feed the next n bytes of the
 * reply, n == 0 when the server closed the connection. 0 while more is
 * needed; 1 once the verdict is in, err "" for healthy, else the reason. */
int bp__hc_thrift_feed(bp__hc_thrift_t *r, const char *data, size_t n, int probe,
                       const char *endpoint, char *err, size_t errlen);

#endif
