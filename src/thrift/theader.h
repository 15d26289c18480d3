/* Thrift transports (src/thrift/theader.c): THeader (framed, with info
 * headers and the zlib transform, binary or compact inside) and, for peers
 * that do not speak it, framed binary/compact and unframed binary/compact,
 * recognised from a message's first bytes as Apache Thrift's THeader
 * transport recognises them. Private to the core: the Thrift server and
 * client stand on it. */
#ifndef BASEPLATE_THRIFT_THEADER_H
#define BASEPLATE_THRIFT_THEADER_H

#include <stddef.h>
#include <stdint.h>

/* Transports. */
enum { BP__TT_UNFRAMED = 0, BP__TT_FRAMED = 1, BP__TT_HEADER = 2 };

/* Limits on what a THeader frame's header may hold. */
#define BP__THEADER_MAX_INFO 1024 /* info headers (key-value pairs) */

/* An info header. Key and value point into the input or into the frame's
 * own buffer; neither is NUL-terminated. */
typedef struct {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} bp__theader_kv_t;

/* One frame read. The storage (buf, headers) is the frame's own and is
 * reused from one read to the next: whatever a read returned is valid until
 * the next read on the same frame, or bp__theader_frame_free. */
typedef struct {
  int transport;       /* BP__TT_* */
  int protocol;        /* BP__T_BINARY or BP__T_COMPACT (src/thrift/codec.h) */
  int zlib;            /* the payload came zlib-transformed */
  int32_t seqid;       /* THeader's own sequence id (0 for the other transports) */
  uint16_t flags;      /* THeader's flags */
  const char *payload; /* the Thrift message, transforms undone */
  size_t payload_len;
  size_t frame_len;           /* bytes of input the frame took */
  bp__theader_kv_t *headers;  /* the info headers, in order */
  int nheaders;
  /* private */
  char *buf;
  size_t bufcap;
  int hcap;
  void *scan; /* an unframed message's walk, kept across BP_AGAIN */
} bp__theader_frame_t;

void bp__theader_frame_init(bp__theader_frame_t *f);
void bp__theader_frame_free(bp__theader_frame_t *f);
/* Forget an unframed message's walk left by BP_AGAIN: the next read is of
 * another input (not needed after BP_OK or an error). */
void bp__theader_frame_reset(bp__theader_frame_t *f);
/* Give back the frame's storage between messages; the bytes freed. */
size_t bp__theader_frame_compact(bp__theader_frame_t *f);

/* Read the frame at the start of in[0..len). BP_OK and *f; BP_AGAIN when
 * the input ends too soon (*need: the total bytes the frame needs when
 * known, else 0); BP_ETOOBIG when a frame (its declared size, or its
 * payload once inflated) is larger than max_frame; BP_ERROR when it is not
 * a frame of any transport (garbage, an unknown protocol or transform, a
 * malformed header). err gets the reason. Never allocates more than
 * max_frame plus a small constant, whatever sizes the input declares. An
 * unframed message's end is found by walking it (bp__thrift_message_scan):
 * after BP_AGAIN, the next call must be with the same input grown (or
 * follow bp__theader_frame_reset), and resumes the walk, so a large
 * unframed message costs one walk however many reads it takes. */
int bp__theader_read(bp__theader_frame_t *f, const char *in, size_t len, size_t max_frame,
                     size_t *need, char *err, size_t errlen);

/* How to write a frame: a reply goes back as its request came. */
typedef struct {
  int transport; /* BP__TT_* */
  int protocol;  /* BP__T_BINARY or BP__T_COMPACT */
  int zlib;      /* THeader only: zlib-transform the payload */
  int32_t seqid; /* THeader only */
  uint16_t flags;
  const bp__theader_kv_t *headers; /* THeader only: info headers to send */
  int nheaders;
} bp__theader_out_t;

/* The most bytes bp__theader_write may need for a payload of n bytes. */
size_t bp__theader_write_bound(const bp__theader_out_t *o, size_t n);

/* Write payload (a whole Thrift message in o->protocol) as one frame into
 * out (cap bytes, at least bp__theader_write_bound). Returns the frame's
 * length, or 0 when it does not fit or zlib fails. */
size_t bp__theader_write(const bp__theader_out_t *o, const char *payload, size_t n, char *out,
                         size_t cap);

#endif
