/* The Thrift transports (src/thrift/theader.c): every transport and
 * protocol written and read back, zlib, info headers, and hostile input:
 * truncation, garbage, sizes claimed beyond the limits, bad headers. The
 * bytes python3-thrift writes and reads are checked by
 * tests/integration/test-theader-interop.sh. */
#include "bp-test.h"

#include <baseplate/common.h>
#include <stdint.h>
#include <zlib.h>

#include "thrift/codec.h"
#include "thrift/theader.h"

#define MAXF (1024 * 1024)

/* ping(), seqid 7, as python3-thrift writes it. */
static const char BIN_MSG[] = "\x80\x01\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x07\x00";
#define BIN_LEN (sizeof BIN_MSG - 1)
static const char CPT_MSG[] = "\x82\x21\x07\x04ping\x00";
#define CPT_LEN (sizeof CPT_MSG - 1)

static char err[256];

/* A binary CALL of `name` whose args hold field 1, a string of n bytes of c. */
static size_t big_message(char *out, size_t n, char c) {
  size_t i = 0;
  memcpy(out, "\x80\x01\x00\x01\x00\x00\x00\x03get\x00\x00\x00\x01", 15);
  i = 15;
  out[i++] = 11; /* string */
  out[i++] = 0;
  out[i++] = 1;
  out[i++] = (char)(n >> 24);
  out[i++] = (char)(n >> 16);
  out[i++] = (char)(n >> 8);
  out[i++] = (char)n;
  memset(out + i, c, n);
  i += n;
  out[i++] = 0;
  return i;
}

/* A THeader frame around raw header bytes (padded here) and payload. */
static size_t header_frame(char *out, uint16_t flags, int32_t seqid, const char *hdr,
                           size_t hlen, const char *payload, size_t n) {
  size_t padded = (hlen + 3) & ~(size_t)3, total = 10 + padded + n;
  out[0] = (char)(total >> 24);
  out[1] = (char)(total >> 16);
  out[2] = (char)(total >> 8);
  out[3] = (char)total;
  out[4] = 0x0f;
  out[5] = (char)0xff;
  out[6] = (char)(flags >> 8);
  out[7] = (char)flags;
  out[8] = (char)((uint32_t)seqid >> 24);
  out[9] = (char)((uint32_t)seqid >> 16);
  out[10] = (char)((uint32_t)seqid >> 8);
  out[11] = (char)seqid;
  out[12] = (char)(padded / 4 >> 8);
  out[13] = (char)(padded / 4);
  memcpy(out + 14, hdr, hlen);
  memset(out + 14 + hlen, 0, padded - hlen);
  memcpy(out + 14 + padded, payload, n);
  return 4 + total;
}

static int read_frame(bp__theader_frame_t *f, const char *in, size_t len, size_t *need) {
  return bp__theader_read(f, in, len, MAXF, need, err, sizeof err);
}

/* Writes payload with o, reads it back, checks everything came through. */
static void round_trip(const bp__theader_out_t *o, const char *payload, size_t n) {
  bp__theader_frame_t f;
  size_t bound = bp__theader_write_bound(o, n), w, need, i;
  char *out = malloc(bound + 8);
  int k;
  bp__theader_frame_init(&f);
  w = bp__theader_write(o, payload, n, out, bound);
  CHECK(w > 0 && w <= bound);
  CHECK_INT(bp__theader_write(o, payload, n, out, w - 1), 0); /* does not fit */
  w = bp__theader_write(o, payload, n, out, bound);
  /* Bytes after the frame (the next one's) are not taken. */
  memcpy(out + w, "\x00\x00\x00\x00\x00\x00\x00\x00", 8);
  CHECK_INT(read_frame(&f, out, w + 8, &need), BP_OK);
  CHECK_INT(f.frame_len, w);
  CHECK_INT(f.transport, o->transport);
  CHECK_INT(f.protocol, o->protocol);
  CHECK_INT(f.payload_len, n);
  CHECK(f.payload_len == n && memcmp(f.payload, payload, n) == 0);
  if (o->transport == BP__TT_HEADER) {
    CHECK_INT(f.zlib, o->zlib);
    CHECK_INT(f.seqid, o->seqid);
    CHECK_INT(f.flags, o->flags);
    CHECK_INT(f.nheaders, o->nheaders);
    for (k = 0; k < o->nheaders && k < f.nheaders; k++) {
      CHECK(f.headers[k].key_len == o->headers[k].key_len &&
            memcmp(f.headers[k].key, o->headers[k].key, f.headers[k].key_len) == 0);
      CHECK(f.headers[k].value_len == o->headers[k].value_len &&
            memcmp(f.headers[k].value, o->headers[k].value, f.headers[k].value_len) == 0);
    }
  } else {
    CHECK_INT(f.zlib, 0);
    CHECK_INT(f.nheaders, 0);
  }
  /* Every prefix is BP_AGAIN, with the frame's size once it is known. */
  for (i = 0; i < w; i++) {
    int rc = read_frame(&f, out, i, &need);
    if (rc != BP_AGAIN) {
      fprintf(stderr, "prefix %zu of %zu: %d %s\n", i, w, rc, err);
      CHECK_INT(rc, BP_AGAIN);
      break;
    }
    if (o->transport != BP__TT_UNFRAMED && i >= 4) CHECK_INT(need, w);
    if (o->transport == BP__TT_UNFRAMED) CHECK_INT(need, 0);
  }
  bp__theader_frame_free(&f);
  free(out);
}

static void test_round_trips(void) {
  static const bp__theader_kv_t hdrs[] = {
      {"Trace", 5, "1234", 4}, {"", 0, "", 0}, {"Edge-Request", 12, "\x00\xff\x01", 3}};
  int t, p, z, h;
  for (t = BP__TT_UNFRAMED; t <= BP__TT_HEADER; t++)
    for (p = BP__T_BINARY; p <= BP__T_COMPACT; p++)
      for (z = 0; z <= (t == BP__TT_HEADER); z++)
        for (h = 0; h <= (t == BP__TT_HEADER); h++) {
          bp__theader_out_t o = {t, p, z, -2, 0x1234, h ? hdrs : NULL, h ? 3 : 0};
          if (p == BP__T_BINARY)
            round_trip(&o, BIN_MSG, BIN_LEN);
          else
            round_trip(&o, CPT_MSG, CPT_LEN);
        }
}

static void test_exact_bytes(void) {
  /* A THeader frame as python3-thrift writes it for ping() with the header
   * "k" = "v" (binary, no transform): the header section is 00 00 01 01 01
   * 6b 01 76, padded to 8. */
  static const char want[] = "\x00\x00\x00\x23\x0f\xff\x00\x00\x00\x00\x00\x05\x00\x02"
                             "\x00\x00\x01\x01\x01k\x01v";
  static const bp__theader_kv_t kv[] = {{"k", 1, "v", 1}};
  bp__theader_out_t o = {BP__TT_HEADER, BP__T_BINARY, 0, 5, 0, kv, 1};
  char out[128];
  size_t w = bp__theader_write(&o, BIN_MSG, BIN_LEN, out, sizeof out);
  CHECK_INT(w, 4 + 10 + 8 + BIN_LEN);
  CHECK(memcmp(out, want, sizeof want - 1) == 0);
  CHECK(memcmp(out + 22, BIN_MSG, BIN_LEN) == 0);
  /* Framed compact: the length, then the message. */
  o.transport = BP__TT_FRAMED;
  o.protocol = BP__T_COMPACT;
  w = bp__theader_write(&o, CPT_MSG, CPT_LEN, out, sizeof out);
  CHECK_INT(w, 4 + CPT_LEN);
  CHECK(memcmp(out, "\x00\x00\x00\x09\x82\x21", 6) == 0);
}

static void test_zlib(void) {
  static char msg[300000];
  size_t n = big_message(msg, 250000, 'z');
  bp__theader_out_t o = {BP__TT_HEADER, BP__T_COMPACT, 1, 9, 0, NULL, 0};
  bp__theader_frame_t f;
  char *out = malloc(bp__theader_write_bound(&o, n));
  size_t w = bp__theader_write(&o, msg, n, out, bp__theader_write_bound(&o, n)), need;
  round_trip(&o, msg, n);
  CHECK(w > 0 && w < n / 10); /* it did compress */
  /* The frame's buffer is reused, then given back. */
  bp__theader_frame_init(&f);
  CHECK_INT(read_frame(&f, out, w, &need), BP_OK);
  CHECK_INT(f.payload_len, n);
  CHECK(f.bufcap >= n && f.bufcap <= MAXF + 1);
  CHECK(bp__theader_frame_compact(&f) >= n);
  CHECK(f.buf == NULL && f.bufcap == 0);
  CHECK_INT(read_frame(&f, out, w, &need), BP_OK);
  CHECK(f.payload_len == n && memcmp(f.payload, msg, n) == 0);
  bp__theader_frame_free(&f);
  free(out);
}

static void test_zlib_bounded(void) {
  /* 4 MB of zeros deflate to ~4 KB: inflating stops at max_frame. */
  size_t big = 4 * 1024 * 1024, w, need;
  char *msg = calloc(1, big), *out;
  bp__theader_out_t o = {BP__TT_HEADER, BP__T_BINARY, 1, 0, 0, NULL, 0};
  bp__theader_frame_t f;
  out = malloc(bp__theader_write_bound(&o, big));
  w = bp__theader_write(&o, msg, big, out, bp__theader_write_bound(&o, big));
  CHECK(w > 0 && w < 64 * 1024);
  bp__theader_frame_init(&f);
  CHECK_INT(read_frame(&f, out, w, &need), BP_ETOOBIG);
  CHECK_CONTAINS(err, "inflates beyond");
  CHECK(f.bufcap <= MAXF + 1);
  /* Exactly max_frame bytes inflated is allowed. */
  w = bp__theader_write(&o, msg, MAXF, out, bp__theader_write_bound(&o, big));
  CHECK_INT(read_frame(&f, out, w, &need), BP_OK);
  CHECK_INT(f.payload_len, MAXF);
  bp__theader_frame_free(&f);
  free(out);
  free(msg);
}

static void test_zlib_corrupt(void) {
  char z[64], frame[128];
  uLongf zn = sizeof z;
  size_t w, need;
  bp__theader_frame_t f;
  bp__theader_frame_init(&f);
  CHECK(compress((Bytef *)z, &zn, (const Bytef *)BIN_MSG, BIN_LEN) == Z_OK);
  /* Cut short. */
  w = header_frame(frame, 0, 0, "\x00\x01\x01", 3, z, zn - 3);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "zlib");
  /* Not zlib at all. */
  w = header_frame(frame, 0, 0, "\x00\x01\x01", 3, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "zlib");
  /* Empty. */
  w = header_frame(frame, 0, 0, "\x00\x01\x01", 3, "", 0);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  bp__theader_frame_free(&f);
}

static void test_info_headers(void) {
  char hdr[64], frame[256];
  memset(hdr, 0, sizeof hdr);
  size_t w, need;
  bp__theader_frame_t f;
  bp__theader_frame_init(&f);
  /* Two key-value blocks, then an unknown info type: the rest is skipped. */
  static const char two_blocks[] = "\x02\x00"                  /* compact, no transform */
                                   "\x01\x01\x01" "a" "\x02" "bc" /* a = bc */
                                   "\x01\x02\x00\x00\x01" "d" "\x01" "e" /* "" = "", d = e */
                                   "\x07\x01\x01x\x01y"; /* an unknown type */
  w = header_frame(frame, 0x8000, 42, two_blocks, sizeof two_blocks - 1, CPT_MSG, CPT_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_OK);
  CHECK_INT(f.protocol, BP__T_COMPACT);
  CHECK_INT(f.seqid, 42);
  CHECK_INT(f.flags, 0x8000);
  CHECK_INT(f.nheaders, 3);
  CHECK(f.headers[0].key_len == 1 && f.headers[0].key[0] == 'a' && f.headers[0].value_len == 2 &&
        memcmp(f.headers[0].value, "bc", 2) == 0);
  CHECK(f.headers[1].key_len == 0 && f.headers[1].value_len == 0);
  CHECK(f.headers[2].key_len == 1 && f.headers[2].key[0] == 'd');
  CHECK(f.payload_len == CPT_LEN && memcmp(f.payload, CPT_MSG, CPT_LEN) == 0);

  /* A header section larger than what it holds (extra padding) is fine. */
  memset(hdr, 0, sizeof hdr);
  w = header_frame(frame, 0, 1, hdr, 40, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_OK);
  CHECK_INT(f.nheaders, 0);
  CHECK(f.payload_len == BIN_LEN && memcmp(f.payload, BIN_MSG, BIN_LEN) == 0);

  /* A key running past the header section (into the payload). */
  w = header_frame(frame, 0, 0, "\x00\x00\x01\x01\x05" "ab", 7, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "key exceeds the header");
  /* A value running past it. */
  w = header_frame(frame, 0, 0, "\x00\x00\x01\x01\x01" "a\x09" "b", 8, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "value exceeds the header");
  /* A count of a billion in a few bytes: refused, nothing allocated. */
  w = header_frame(frame, 0, 0, "\x00\x00\x01\x80\x94\xeb\xdc\x03", 8, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "info headers exceed the header");
  /* A varint running off the header's end, and one beyond 32 bits. */
  w = header_frame(frame, 0, 0, "\x00\x00\x01\x81\x81\x81\x81", 7, "", 0);
  memset(frame + 14 + 7, 0x81, 1); /* the padding byte too */
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  w = header_frame(frame, 0, 0, "\x00\x00\x01\xff\xff\xff\xff\x7f", 8, "", 0);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  bp__theader_frame_free(&f);
}

static void test_info_header_limit(void) {
  static bp__theader_kv_t kv[BP__THEADER_MAX_INFO + 1];
  static char keys[BP__THEADER_MAX_INFO + 1][8];
  bp__theader_out_t o = {BP__TT_HEADER, BP__T_BINARY, 0, 0, 0, kv, BP__THEADER_MAX_INFO};
  bp__theader_frame_t f;
  size_t w, need;
  char *out;
  int i;
  for (i = 0; i <= BP__THEADER_MAX_INFO; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    kv[i].key = keys[i];
    kv[i].key_len = strlen(keys[i]);
    kv[i].value = "v";
    kv[i].value_len = 1;
  }
  out = malloc(bp__theader_write_bound(&o, BIN_LEN) + 16);
  bp__theader_frame_init(&f);
  w = bp__theader_write(&o, BIN_MSG, BIN_LEN, out, bp__theader_write_bound(&o, BIN_LEN));
  CHECK(w > 0);
  CHECK_INT(read_frame(&f, out, w, &need), BP_OK);
  CHECK_INT(f.nheaders, BP__THEADER_MAX_INFO);
  CHECK(f.headers[1023].key_len == 5 && memcmp(f.headers[1023].key, "k1023", 5) == 0);
  o.nheaders = BP__THEADER_MAX_INFO + 1;
  free(out);
  out = malloc(bp__theader_write_bound(&o, BIN_LEN));
  w = bp__theader_write(&o, BIN_MSG, BIN_LEN, out, bp__theader_write_bound(&o, BIN_LEN));
  CHECK(w > 0);
  CHECK_INT(read_frame(&f, out, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "more than 1024 info headers");
  bp__theader_frame_free(&f);
  free(out);
}

static void test_header_write_limit(void) {
  /* Info headers beyond the 16-bit header length: not writable. */
  static char big[300000];
  bp__theader_kv_t kv = {"k", 1, big, sizeof big};
  bp__theader_out_t o = {BP__TT_HEADER, BP__T_BINARY, 0, 0, 0, &kv, 1};
  char out[64];
  CHECK_INT(bp__theader_write(&o, BIN_MSG, BIN_LEN, out, sizeof out), 0);
  CHECK_INT(bp__theader_write_bound(&o, BIN_LEN), 0);
}

static void test_transforms(void) {
  char frame[128];
  size_t w, need;
  bp__theader_frame_t f;
  bp__theader_frame_init(&f);
  w = header_frame(frame, 0, 0, "\x00\x01\x02", 3, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "unsupported transform 2");
  w = header_frame(frame, 0, 0, "\x00\x02\x01\x03", 4, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "unsupported transform 3");
  w = header_frame(frame, 0, 0, "\x00\x02\x01\x01", 4, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "twice");
  /* A transform count larger than the header. */
  w = header_frame(frame, 0, 0, "\x00\x7f\x01", 3, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "transforms exceed the header");
  /* Unknown protocol ids: 1 (JSON elsewhere), 3. */
  w = header_frame(frame, 0, 0, "\x01\x00", 2, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  CHECK_CONTAINS(err, "unknown protocol id 1");
  w = header_frame(frame, 0, 0, "\x03\x00", 2, BIN_MSG, BIN_LEN);
  CHECK_INT(read_frame(&f, frame, w, &need), BP_ERROR);
  bp__theader_frame_free(&f);
}

static void test_garbage(void) {
  static const struct {
    const char *s;
    size_t n;
  } bad[] = {
      {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11}, /* a TLS ClientHello */
      {"\x00\x00\x00\x10\x12\x34\x56\x78", 8},             /* a frame of unknown content */
      {"\x00\x00\x00\x10\x80\x02\x00\x01", 8},             /* binary version 2 */
      {"\x00\x00\x00\x10\x82\x22\x00\x01", 8},             /* compact version 2 */
      {"\x80\x02\x00\x01\x00\x00\x00\x00", 8},             /* unframed binary version 2 */
      {"\xff\xff\xff\xff", 4},
  };
  size_t i, need;
  bp__theader_frame_t f;
  bp__theader_frame_init(&f);
  for (i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = read_frame(&f, bad[i].s, bad[i].n, &need);
    if (rc != BP_ERROR) fprintf(stderr, "garbage %zu: %d\n", i, rc);
    CHECK_INT(rc, BP_ERROR);
    CHECK(err[0] != '\0');
  }
  /* Refused from the first bytes, before any frame could be complete. */
  CHECK_INT(read_frame(&f, "GE", 2, &need), BP_ERROR);
  CHECK_INT(read_frame(&f, "\x80\x02", 2, &need), BP_ERROR);
  CHECK_INT(read_frame(&f, "\x00\x00\x00\x10\x12\x34", 6, &need), BP_ERROR);
  CHECK_CONTAINS(err, "unknown transport");
  /* Frames too short for what they claim to be. */
  CHECK_INT(read_frame(&f, "\x00\x00\x00\x00", 4, &need), BP_ERROR);
  CHECK_INT(read_frame(&f, "\x00\x00\x00\x06\x0f\xff\x00\x00\x00\x00", 10, &need), BP_ERROR);
  CHECK_CONTAINS(err, "shorter than its header");
  /* Header length beyond the frame. */
  CHECK_INT(read_frame(&f, "\x00\x00\x00\x0e\x0f\xff\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00",
                       18, &need),
            BP_ERROR);
  CHECK_CONTAINS(err, "exceeds the");
  /* A framed binary frame whose message is bad reads (the message is the
   * codec's business); an unframed one is refused. */
  CHECK_INT(read_frame(&f, "\x00\x00\x00\x04\x80\x01\x00\x09", 8, &need), BP_OK);
  CHECK_INT(read_frame(&f, "\x80\x01\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00", 13, &need),
            BP_ERROR);
  bp__theader_frame_free(&f);
}

static void test_too_big(void) {
  size_t need;
  bp__theader_frame_t f;
  char *msg;
  size_t n;
  bp__theader_frame_init(&f);
  /* Declared sizes: refused once the frame's first two bytes say what it
   * holds (garbage is told apart first, whatever the reads), nothing
   * allocated. */
  CHECK_INT(read_frame(&f, "\x00\x10\x00\x01", 4, &need), BP_AGAIN);
  CHECK_INT(need, 6);
  CHECK_INT(read_frame(&f, "\x00\x10\x00\x01\x80\x01", 6, &need), BP_ETOOBIG);
  CHECK_CONTAINS(err, "exceeds the limit");
  CHECK_INT(read_frame(&f, "\x00\x10\x00\x01\xee\xee", 6, &need), BP_ERROR);
  CHECK_INT(read_frame(&f, "\x3f\xff\xff\xff\x0f\xff", 6, &need), BP_ETOOBIG);
  CHECK(f.buf == NULL && f.headers == NULL);
  /* Beyond THeader's 30 bits: not a frame. */
  CHECK_INT(read_frame(&f, "\x40\x00\x00\x00", 4, &need), BP_ERROR);
  /* Exactly the limit waits for the frame. */
  CHECK_INT(read_frame(&f, "\x00\x10\x00\x00\x0f\xff", 6, &need), BP_AGAIN);
  CHECK_INT(need, 4 + MAXF);
  /* An unframed message claiming a huge string: BP_AGAIN until more than
   * max_frame bytes have come, then BP_ETOOBIG. */
  msg = calloc(1, MAXF + 64);
  big_message(msg, 0, 'x');
  memcpy(msg + 18, "\x7f\xff\xff\x00", 4); /* the string's length */
  CHECK_INT(read_frame(&f, msg, 64, &need), BP_AGAIN);
  CHECK_INT(need, 0);
  CHECK_INT(read_frame(&f, msg, MAXF, &need), BP_AGAIN);
  CHECK_INT(read_frame(&f, msg, MAXF + 1, &need), BP_ETOOBIG);
  /* An unframed message of exactly max_frame bytes reads. */
  n = big_message(msg, MAXF - 23, 'x');
  CHECK_INT(n, MAXF);
  CHECK_INT(read_frame(&f, msg, MAXF + 10, &need), BP_OK);
  CHECK_INT(f.frame_len, MAXF);
  CHECK_INT(f.transport, BP__TT_UNFRAMED);
  free(msg);
  bp__theader_frame_free(&f);
}

static void test_consecutive(void) {
  /* Frames of different transports back to back in one buffer. */
  static const bp__theader_kv_t kv[] = {{"a", 1, "b", 1}};
  bp__theader_out_t outs[] = {{BP__TT_HEADER, BP__T_COMPACT, 1, 1, 0, kv, 1},
                              {BP__TT_UNFRAMED, BP__T_BINARY, 0, 0, 0, NULL, 0},
                              {BP__TT_FRAMED, BP__T_COMPACT, 0, 0, 0, NULL, 0},
                              {BP__TT_HEADER, BP__T_BINARY, 0, 2, 0, NULL, 0}};
  char buf[1024];
  size_t w = 0, pos = 0, need;
  int i, rc;
  bp__theader_frame_t f;
  bp__theader_frame_init(&f);
  for (i = 0; i < 4; i++) {
    const char *m = outs[i].protocol == BP__T_BINARY ? BIN_MSG : CPT_MSG;
    size_t n = outs[i].protocol == BP__T_BINARY ? BIN_LEN : CPT_LEN;
    w += bp__theader_write(&outs[i], m, n, buf + w, sizeof buf - w);
  }
  for (i = 0; i < 4; i++) {
    rc = read_frame(&f, buf + pos, w - pos, &need);
    CHECK_INT(rc, BP_OK);
    if (rc != BP_OK) break;
    CHECK_INT(f.transport, outs[i].transport);
    CHECK_INT(f.protocol, outs[i].protocol);
    CHECK_INT(f.nheaders, outs[i].nheaders);
    pos += f.frame_len;
  }
  CHECK_INT(pos, w);
  bp__theader_frame_free(&f);
}

int main(void) {
  RUN(test_round_trips);
  RUN(test_exact_bytes);
  RUN(test_zlib);
  RUN(test_zlib_bounded);
  RUN(test_zlib_corrupt);
  RUN(test_info_headers);
  RUN(test_info_header_limit);
  RUN(test_header_write_limit);
  RUN(test_transforms);
  RUN(test_garbage);
  RUN(test_too_big);
  RUN(test_consecutive);
  return bp_test_summary();
}
