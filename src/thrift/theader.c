/*
 * Thrift transports: THeader, framed and unframed, read from the first
 * bytes of a message as Apache Thrift's THeaderTransport tells them apart
 * (lib/py/src/transport/THeaderTransport.py is the clearest statement):
 *
 *   80 01 .. ..                 unframed binary (a strict binary message)
 *   82 (v & 0x1f == 1)          unframed compact
 *   LL LL LL LL 80 01 .. ..     framed binary (4-byte big-endian length)
 *   LL LL LL LL 82 ..           framed compact
 *   LL LL LL LL 0F FF ff ff     THeader: magic, flags (16 bits), then
 *     ss ss ss ss               sequence id (32 bits)
 *     hh hh                     header length in 4-byte words
 *     header:                   varint protocol id (0 binary, 2 compact),
 *                               varint transform count, varint ids (1 zlib),
 *                               info blocks (varint type; 1 = key-value:
 *                               varint count, varint-prefixed strings),
 *                               zero padding to the 4-byte boundary
 *     payload                   the message, transformed, to the frame's end
 *
 * The input is hostile: every length, count and varint is checked against
 * the bytes there are before anything is done with it, a frame's declared
 * size against max_frame before anything waits for it, and inflating zlib
 * grows its buffer as output appears, never beyond max_frame (+1 byte to
 * tell "exactly max_frame" from "more").
 */
#include "theader.h"
#include "codec.h"

#include <baseplate/common.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HEADER_MAGIC 0x0FFF
#define HARD_MAX_FRAME 0x3FFFFFFFu /* THeader's 30-bit length */
#define PROTO_ID_BINARY 0
#define PROTO_ID_COMPACT 2
#define TRANSFORM_ZLIB 1
#define INFO_KEY_VALUE 1
#define THEADER_FIXED 10 /* magic, flags, seqid, header length */
#define INFLATE_FIRST (64 * 1024)

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int status, const char *fmt, ...) {
  va_list ap;
  if (err && errlen) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return status;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put32(char *p, uint32_t v) {
  p[0] = (char)(v >> 24);
  p[1] = (char)(v >> 16);
  p[2] = (char)(v >> 8);
  p[3] = (char)v;
}

static void put16(char *p, uint16_t v) {
  p[0] = (char)(v >> 8);
  p[1] = (char)v;
}

static int is_binary(const unsigned char *p) { return p[0] == 0x80 && p[1] == 0x01; }

static int is_compact(const unsigned char *p) { return p[0] == 0x82 && (p[1] & 0x1f) == 1; }

/* An unsigned varint of at most 32 bits at *p, before end. 0, or -1 when
 * it is cut short by end or longer than 32 bits. */
static int get_varint(const unsigned char **p, const unsigned char *end, uint32_t *v) {
  uint32_t r = 0;
  int shift;
  for (shift = 0; shift < 35; shift += 7) {
    unsigned char b;
    if (*p >= end) return -1;
    b = *(*p)++;
    if (shift == 28 && (b & 0x70)) return -1; /* beyond 32 bits */
    r |= (uint32_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

static size_t put_varint(char *p, uint32_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (char)((v & 0x7f) | 0x80);
    v >>= 7;
  }
  p[n++] = (char)v;
  return n;
}

static size_t varint_len(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

void bp__theader_frame_init(bp__theader_frame_t *f) { memset(f, 0, sizeof *f); }

void bp__theader_frame_free(bp__theader_frame_t *f) {
  free(f->buf);
  free(f->headers);
  free(f->scan);
  memset(f, 0, sizeof *f);
}

void bp__theader_frame_reset(bp__theader_frame_t *f) {
  if (f->scan) bp__thrift_scan_init(f->scan);
}

size_t bp__theader_frame_compact(bp__theader_frame_t *f) {
  size_t freed = f->bufcap + (size_t)f->hcap * sizeof *f->headers;
  free(f->buf);
  free(f->headers);
  free(f->scan);
  f->scan = NULL;
  f->buf = NULL;
  f->bufcap = 0;
  f->headers = NULL;
  f->hcap = 0;
  f->nheaders = 0;
  f->payload = NULL;
  f->payload_len = 0;
  return freed;
}

static int add_header(bp__theader_frame_t *f, const unsigned char *k, size_t klen,
                      const unsigned char *v, size_t vlen) {
  bp__theader_kv_t *kv;
  if (f->nheaders == f->hcap) {
    int cap = f->hcap ? f->hcap * 2 : 8;
    bp__theader_kv_t *h;
    if (cap > BP__THEADER_MAX_INFO) cap = BP__THEADER_MAX_INFO;
    h = realloc(f->headers, (size_t)cap * sizeof *h);
    if (!h) return -1;
    f->headers = h;
    f->hcap = cap;
  }
  kv = &f->headers[f->nheaders++];
  kv->key = (const char *)k;
  kv->key_len = klen;
  kv->value = (const char *)v;
  kv->value_len = vlen;
  return 0;
}

/* Inflates in[0..n) (a zlib stream) into f->buf, growing it as output
 * appears, at most to max_frame bytes. */
static int inflate_payload(bp__theader_frame_t *f, const unsigned char *in, size_t n,
                           size_t max_frame, char *err, size_t errlen) {
  z_stream z;
  size_t out = 0;
  int rc;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) return fail(err, errlen, BP_ENOMEM, "zlib: inflateInit failed");
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)(n > UINT32_MAX ? UINT32_MAX : n);
  for (;;) {
    if (out == f->bufcap) {
      /* One byte beyond max_frame tells a payload of exactly max_frame
       * bytes from a larger one. */
      size_t limit = max_frame + 1, cap = f->bufcap ? f->bufcap * 2 : INFLATE_FIRST;
      char *b;
      if (f->bufcap >= limit) {
        inflateEnd(&z);
        return fail(err, errlen, BP_ETOOBIG, "zlib payload inflates beyond %zu bytes", max_frame);
      }
      if (cap > limit) cap = limit;
      b = realloc(f->buf, cap);
      if (!b) {
        inflateEnd(&z);
        return fail(err, errlen, BP_ENOMEM, "out of memory inflating a zlib payload");
      }
      f->buf = b;
      f->bufcap = cap;
    }
    z.next_out = (Bytef *)f->buf + out;
    z.avail_out = (uInt)(f->bufcap - out > UINT32_MAX ? UINT32_MAX : f->bufcap - out);
    rc = inflate(&z, Z_NO_FLUSH);
    out = (size_t)((char *)z.next_out - f->buf);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && z.avail_out != 0) {
      inflateEnd(&z);
      return fail(err, errlen, BP_ERROR, "zlib payload: the stream is cut short");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const char *msg = rc == Z_NEED_DICT ? "needs a preset dictionary" : z.msg ? z.msg : "error";
      inflateEnd(&z);
      if (rc == Z_MEM_ERROR) return fail(err, errlen, BP_ENOMEM, "zlib: out of memory");
      return fail(err, errlen, BP_ERROR, "zlib payload: %s", msg);
    }
  }
  inflateEnd(&z);
  if (out > max_frame)
    return fail(err, errlen, BP_ETOOBIG, "zlib payload inflates beyond %zu bytes", max_frame);
  f->payload = f->buf;
  f->payload_len = out;
  return BP_OK;
}

/* The THeader frame p[0..size) (after the length word; its magic checked). */
static int read_header_frame(bp__theader_frame_t *f, const unsigned char *p, size_t size,
                             size_t max_frame, char *err, size_t errlen) {
  const unsigned char *h, *hend, *end = p + size;
  uint32_t proto, ntrans, i;
  size_t hlen;
  int zlib = 0;

  if (size < THEADER_FIXED)
    return fail(err, errlen, BP_ERROR, "THeader frame of %zu bytes is shorter than its header",
                size);
  f->flags = get16(p + 2);
  f->seqid = (int32_t)get32(p + 4);
  hlen = (size_t)get16(p + 8) * 4;
  h = p + THEADER_FIXED;
  if (hlen > size - THEADER_FIXED)
    return fail(err, errlen, BP_ERROR, "THeader header of %zu bytes exceeds the %zu-byte frame",
                hlen, size);
  hend = h + hlen;

  if (get_varint(&h, hend, &proto))
    return fail(err, errlen, BP_ERROR, "THeader header: bad protocol id");
  if (proto == PROTO_ID_BINARY)
    f->protocol = BP__T_BINARY;
  else if (proto == PROTO_ID_COMPACT)
    f->protocol = BP__T_COMPACT;
  else
    return fail(err, errlen, BP_ERROR, "THeader: unknown protocol id %u", (unsigned)proto);

  if (get_varint(&h, hend, &ntrans))
    return fail(err, errlen, BP_ERROR, "THeader header: bad transform count");
  if (ntrans > (size_t)(hend - h))
    return fail(err, errlen, BP_ERROR, "THeader header: %u transforms exceed the header",
                (unsigned)ntrans);
  for (i = 0; i < ntrans; i++) {
    uint32_t id;
    if (get_varint(&h, hend, &id))
      return fail(err, errlen, BP_ERROR, "THeader header: bad transform id");
    if (id != TRANSFORM_ZLIB)
      return fail(err, errlen, BP_ERROR, "THeader: unsupported transform %u (only zlib, 1)",
                  (unsigned)id);
    if (zlib)
      return fail(err, errlen, BP_ERROR, "THeader: the zlib transform applied twice");
    zlib = 1;
  }

  /* Info blocks until the header ends, its padding (type 0) or a type we
   * do not know (skipped with the rest of the header, as Apache's
   * transports do). */
  while (h < hend) {
    uint32_t type, count, k;
    if (get_varint(&h, hend, &type))
      return fail(err, errlen, BP_ERROR, "THeader header: bad info block type");
    if (type != INFO_KEY_VALUE) break;
    if (get_varint(&h, hend, &count))
      return fail(err, errlen, BP_ERROR, "THeader header: bad info header count");
    /* Each pair takes at least two bytes (two empty strings). */
    if (count > (size_t)(hend - h) / 2)
      return fail(err, errlen, BP_ERROR, "THeader header: %u info headers exceed the header",
                  (unsigned)count);
    if (count > (uint32_t)(BP__THEADER_MAX_INFO - f->nheaders))
      return fail(err, errlen, BP_ERROR, "THeader: more than %d info headers",
                  BP__THEADER_MAX_INFO);
    for (k = 0; k < count; k++) {
      const unsigned char *key, *val;
      uint32_t klen, vlen;
      if (get_varint(&h, hend, &klen) || klen > (size_t)(hend - h))
        return fail(err, errlen, BP_ERROR, "THeader header: info header key exceeds the header");
      key = h;
      h += klen;
      if (get_varint(&h, hend, &vlen) || vlen > (size_t)(hend - h))
        return fail(err, errlen, BP_ERROR,
                    "THeader header: info header value exceeds the header");
      val = h;
      h += vlen;
      if (add_header(f, key, klen, val, vlen))
        return fail(err, errlen, BP_ENOMEM, "out of memory reading info headers");
    }
  }

  f->transport = BP__TT_HEADER;
  f->zlib = zlib;
  if (zlib) return inflate_payload(f, hend, (size_t)(end - hend), max_frame, err, errlen);
  f->payload = (const char *)hend;
  f->payload_len = (size_t)(end - hend);
  return BP_OK;
}

int bp__theader_read(bp__theader_frame_t *f, const char *in, size_t len, size_t max_frame,
                     size_t *need, char *err, size_t errlen) {
  const unsigned char *p = (const unsigned char *)in;
  size_t size;
  int rc;

  f->transport = BP__TT_UNFRAMED;
  f->protocol = BP__T_BINARY;
  f->zlib = 0;
  f->seqid = 0;
  f->flags = 0;
  f->payload = NULL;
  f->payload_len = 0;
  f->frame_len = 0;
  f->nheaders = 0;
  *need = 0;
  if (err && errlen) err[0] = '\0';

  /* Refuse what cannot start any transport (a frame's length starts 00-3f)
   * from its first bytes, with the same words however many have come. */
  if (len >= 1 && p[0] > 0x3f && p[0] != 0x80 && p[0] != 0x82)
    return fail(err, errlen, BP_ERROR, "not a Thrift message or frame (starts %02x)", p[0]);
  if (len >= 2 && p[0] > 0x3f && !is_binary(p) && !is_compact(p))
    return fail(err, errlen, BP_ERROR, "not a Thrift message or frame (starts %02x %02x)", p[0], p[1]);
  if (len < 4) return fail(err, errlen, BP_AGAIN, "truncated frame");

  if (is_binary(p) || is_compact(p)) {
    bp__thrift_message_t m;
    size_t end = 0, n = len < max_frame ? len : max_frame;
    int proto = is_binary(p) ? BP__T_BINARY : BP__T_COMPACT;
    if (!f->scan) {
      if (!(f->scan = malloc(sizeof(bp__thrift_scan_t)))) return fail(err, errlen, BP_ENOMEM, "out of memory");
      bp__thrift_scan_init(f->scan);
    }
    rc = bp__thrift_message_scan(f->scan, p, n, proto, &m, &end, err, errlen);
    if (rc == BP_AGAIN && len > max_frame)
      return fail(err, errlen, BP_ETOOBIG, "unframed message larger than %zu bytes", max_frame);
    if (rc != BP_OK) return rc;
    f->protocol = proto;
    f->payload = in;
    f->payload_len = end;
    f->frame_len = end;
    return BP_OK;
  }

  size = get32(p);
  /* (a length beyond THeader's 30 bits starts 40-ff: refused above) */
  if (size < 2)
    return fail(err, errlen, BP_ERROR, "frame of %zu bytes is too short for a message", size);
  /* What the frame holds is known from its first bytes: refuse garbage
   * without waiting for all of it, and judge the content before the size
   * (so that the verdict does not depend on how the bytes arrived). */
  if (len < 6) {
    *need = size > max_frame ? 6 : 4 + size;
    return fail(err, errlen, BP_AGAIN, "truncated frame (%zu bytes)", len);
  }
  {
    const unsigned char *q = p + 4;
    if (!(get16(q) == HEADER_MAGIC || is_binary(q) || is_compact(q)))
      return fail(err, errlen, BP_ERROR,
                  "unknown transport: frame content starts %02x %02x (not THeader, binary or "
                  "compact)",
                  q[0], q[1]);
  }
  if (size > max_frame)
    return fail(err, errlen, BP_ETOOBIG, "frame of %zu bytes exceeds the limit of %zu", size,
                max_frame);
  if (len - 4 < size) {
    *need = 4 + size;
    return fail(err, errlen, BP_AGAIN, "truncated frame (%zu of %zu bytes)", len, 4 + size);
  }

  p += 4;
  if (get16(p) == HEADER_MAGIC) {
    rc = read_header_frame(f, p, size, max_frame, err, errlen);
    if (rc != BP_OK) {
      f->nheaders = 0;
      return rc;
    }
  } else {
    f->transport = BP__TT_FRAMED;
    f->protocol = is_binary(p) ? BP__T_BINARY : BP__T_COMPACT;
    f->payload = (const char *)p;
    f->payload_len = size;
  }
  f->frame_len = 4 + size;
  return BP_OK;
}

/* The header section of a THeader frame (with its padding), or 0 when the
 * header cannot be written (more than 0xffff words). */
static size_t header_len(const bp__theader_out_t *o) {
  size_t n = 2 + (o->zlib ? 1 : 0); /* protocol id, transform count (each < 0x80) */
  int i;
  if (o->nheaders > 0) {
    n += 1 + varint_len((uint32_t)o->nheaders);
    for (i = 0; i < o->nheaders; i++) {
      const bp__theader_kv_t *kv = &o->headers[i];
      if (kv->key_len > UINT32_MAX || kv->value_len > UINT32_MAX) return 0;
      n += varint_len((uint32_t)kv->key_len) + kv->key_len;
      n += varint_len((uint32_t)kv->value_len) + kv->value_len;
      if (n > (size_t)0xffff * 4) return 0;
    }
  }
  n = (n + 3) & ~(size_t)3;
  return n > (size_t)0xffff * 4 ? 0 : n;
}

size_t bp__theader_write_bound(const bp__theader_out_t *o, size_t n) {
  size_t h;
  switch (o->transport) {
  case BP__TT_UNFRAMED:
    return n;
  case BP__TT_FRAMED:
    return 4 + n;
  default:
    h = header_len(o);
    if (o->nheaders > 0 && h == 0) return 0;
    return 4 + THEADER_FIXED + h + (o->zlib ? (size_t)compressBound((uLong)n) : n);
  }
}

size_t bp__theader_write(const bp__theader_out_t *o, const char *payload, size_t n, char *out,
                         size_t cap) {
  size_t h, body, i, w;
  int k;
  if (o->protocol != BP__T_BINARY && o->protocol != BP__T_COMPACT) return 0;
  if (o->transport == BP__TT_UNFRAMED) {
    if (n > cap) return 0;
    memcpy(out, payload, n);
    return n;
  }
  if (o->transport == BP__TT_FRAMED) {
    if (n > HARD_MAX_FRAME || 4 + n > cap) return 0;
    put32(out, (uint32_t)n);
    memcpy(out + 4, payload, n);
    return 4 + n;
  }
  if (o->transport != BP__TT_HEADER || o->nheaders < 0 || (o->nheaders > 0 && !o->headers))
    return 0;
  h = header_len(o);
  if (h == 0 || cap < 4 + THEADER_FIXED + h) return 0;
  body = 4 + THEADER_FIXED + h;

  /* The header section, then its zero padding. */
  i = 4 + THEADER_FIXED;
  out[i++] = (char)(o->protocol == BP__T_COMPACT ? PROTO_ID_COMPACT : PROTO_ID_BINARY);
  out[i++] = (char)(o->zlib ? 1 : 0);
  if (o->zlib) out[i++] = TRANSFORM_ZLIB;
  if (o->nheaders > 0) {
    out[i++] = INFO_KEY_VALUE;
    i += put_varint(out + i, (uint32_t)o->nheaders);
    for (k = 0; k < o->nheaders; k++) {
      const bp__theader_kv_t *kv = &o->headers[k];
      i += put_varint(out + i, (uint32_t)kv->key_len);
      memcpy(out + i, kv->key, kv->key_len);
      i += kv->key_len;
      i += put_varint(out + i, (uint32_t)kv->value_len);
      memcpy(out + i, kv->value, kv->value_len);
      i += kv->value_len;
    }
  }
  memset(out + i, 0, body - i);

  if (o->zlib) {
    uLongf zn = (uLongf)(cap - body);
    if (compress2((Bytef *)out + body, &zn, (const Bytef *)payload, (uLong)n,
                                   Z_DEFAULT_COMPRESSION) != Z_OK)
      return 0;
    w = body + zn;
  } else {
    if (cap - body < n) return 0;
    memcpy(out + body, payload, n);
    w = body + n;
  }
  if (w - 4 > HARD_MAX_FRAME) return 0;
  put32(out, (uint32_t)(w - 4));
  put16(out + 4, HEADER_MAGIC);
  put16(out + 6, o->flags);
  put32(out + 8, (uint32_t)o->seqid);
  put16(out + 12, (uint16_t)(h / 4));
  return w;
}
