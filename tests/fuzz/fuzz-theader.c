/* The Thrift transports (src/thrift/theader.c): the first input byte picks
 * max_frame (256 bytes to 8 MB), the rest is read as a stream of frames.
 * Every frame read must lie within the input, hold no more than max_frame
 * bytes, be BP_AGAIN when cut one byte short, and read back the same when
 * written again as it came; nothing may allocate beyond max_frame. */
#include <baseplate/common.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "thrift/theader.h"

#define ASSERT(c)  \
  do {             \
    if (!(c)) abort(); \
  } while (0)

static void same(const bp__theader_frame_t *a, const bp__theader_frame_t *b) {
  int i;
  ASSERT(a->transport == b->transport && a->protocol == b->protocol);
  ASSERT(a->payload_len == b->payload_len && memcmp(a->payload, b->payload, a->payload_len) == 0);
  if (a->transport != BP__TT_HEADER) return;
  ASSERT(a->zlib == b->zlib && a->seqid == b->seqid && a->flags == b->flags);
  ASSERT(a->nheaders == b->nheaders);
  for (i = 0; i < a->nheaders; i++) {
    ASSERT(a->headers[i].key_len == b->headers[i].key_len);
    ASSERT(memcmp(a->headers[i].key, b->headers[i].key, a->headers[i].key_len) == 0);
    ASSERT(a->headers[i].value_len == b->headers[i].value_len);
    ASSERT(memcmp(a->headers[i].value, b->headers[i].value, a->headers[i].value_len) == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bp__theader_frame_t f, g, h;
  size_t max_frame, pos = 0, need;
  const char *in;
  char err[256];
  int frames = 0;
  if (size < 1) return 0;
  max_frame = (size_t)256 << (data[0] % 16);
  in = (const char *)data + 1;
  size--;
  bp__theader_frame_init(&f);
  bp__theader_frame_init(&g);
  bp__theader_frame_init(&h);
  while (pos < size && frames++ < 64) {
    int rc = bp__theader_read(&f, in + pos, size - pos, max_frame, &need, err, sizeof err);
    ASSERT(f.bufcap <= max_frame + 1 && f.hcap <= BP__THEADER_MAX_INFO);
    if (rc == BP_AGAIN) {
      ASSERT(need == 0 || need > size - pos);
      break;
    }
    if (rc != BP_OK) {
      ASSERT(rc == BP_ERROR || rc == BP_ETOOBIG);
      ASSERT(err[0] != '\0');
      break;
    }
    ASSERT(f.frame_len > 0 && f.frame_len <= size - pos && f.payload_len <= max_frame);
    ASSERT(f.nheaders <= BP__THEADER_MAX_INFO);
    /* One byte short is not a frame yet. */
    bp__theader_frame_reset(&h);
    ASSERT(bp__theader_read(&h, in + pos, f.frame_len - 1, max_frame, &need, err, sizeof err) ==
           BP_AGAIN);
    /* Read as it arrives, in pieces, with one frame kept across them (an
     * unframed message's walk resumes): the same frame in the end. */
    {
      bp__theader_frame_t st;
      size_t k, step = f.frame_len / 16 + 1;
      int r2 = BP_AGAIN;
      bp__theader_frame_init(&st);
      for (k = step; k < f.frame_len && r2 == BP_AGAIN; k += step)
        r2 = bp__theader_read(&st, in + pos, k, max_frame, &need, err, sizeof err);
      ASSERT(r2 == BP_AGAIN);
      r2 = bp__theader_read(&st, in + pos, size - pos, max_frame, &need, err, sizeof err);
      ASSERT(r2 == BP_OK && st.frame_len == f.frame_len);
      same(&f, &st);
      bp__theader_frame_free(&st);
    }
    {
      bp__theader_out_t o = {f.transport, f.protocol, f.zlib, f.seqid,
                             f.flags,     f.headers,  f.nheaders};
      size_t bound = bp__theader_write_bound(&o, f.payload_len), w;
      char *out;
      ASSERT(bound > 0);
      out = malloc(bound);
      w = bp__theader_write(&o, f.payload, f.payload_len, out, bound);
      ASSERT(w > 0 && w <= bound);
      /* Written without zlib, a frame is as long as its payload allows. */
      if (!f.zlib && f.transport != BP__TT_HEADER) ASSERT(w == f.frame_len);
      rc = bp__theader_read(&g, out, w, max_frame, &need, err, sizeof err);
      ASSERT(rc == BP_OK && g.frame_len == w);
      same(&f, &g);
      free(out);
    }
    pos += f.frame_len;
    if (frames % 8 == 0) bp__theader_frame_compact(&f);
  }
  bp__theader_frame_free(&f);
  bp__theader_frame_free(&g);
  bp__theader_frame_free(&h);
  return 0;
}
