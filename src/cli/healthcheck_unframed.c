/* baseplate-healthcheck compiles the transports (src/thrift/theader.c) in
 * but not the codec, which needs Lua: the one thing theader.c asks of the
 * codec, the end of an unframed message, is refused here. The tool's
 * request is a THeader frame, which a server answers in kind. */
#include <baseplate/common.h>
#include <stdio.h>

#include "thrift/codec.h"

void bp__thrift_scan_init(bp__thrift_scan_t *s) { (void)s; }

int bp__thrift_message_scan(bp__thrift_scan_t *s, const void *p, size_t len, int proto,
                            bp__thrift_message_t *m, size_t *end, char *err, size_t errlen) {
  (void)s, (void)p, (void)len, (void)proto, (void)m, (void)end;
  if (err && errlen) snprintf(err, errlen, "an unframed reply to a THeader request");
  return BP_ERROR;
}
