/* gzip for the event publisher (include/baseplate/events.h). */
#include "baseplate/events.h"

#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

static char *gzbuf;
static size_t gzcap;

int bp_gzip(const void *in, size_t len, const char **out, size_t *out_len) {
  z_stream z = {0};
  size_t bound;
  int zrc;
  if (len > (size_t)UINT32_MAX) return BP_EINVAL;
  /* windowBits 15 + 16: a gzip header and trailer around the deflate data */
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return BP_ENOMEM;
  bound = deflateBound(&z, (uLong)len);
  if (bound > (size_t)UINT32_MAX) {
    deflateEnd(&z);
    return BP_EINVAL;
  }
  if (bound > gzcap) {
    char *n = realloc(gzbuf, bound);
    if (!n) {
      deflateEnd(&z);
      return BP_ENOMEM;
    }
    gzbuf = n;
    gzcap = bound;
  }
  z.next_in = (Bytef *)(in ? in : "");
  z.avail_in = (uInt)len;
  z.next_out = (Bytef *)gzbuf;
  z.avail_out = (uInt)gzcap;
  zrc = deflate(&z, Z_FINISH);
  *out_len = z.total_out;
  deflateEnd(&z);
  if (zrc != Z_STREAM_END) return BP_ENOMEM;
  *out = gzbuf;
  return BP_OK;
}
