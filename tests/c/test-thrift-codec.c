/* The Thrift codec's C entry points for the transports (src/thrift/codec.h):
 * message envelopes read from bytes, and TApplicationException replies
 * written without Lua. The expected bytes are what python3-thrift 0.17
 * writes for the same messages (tests/lua/thrift/interop.py). */
#include <baseplate.h>
#include <stdint.h>
#include <string.h>

#include "bp-test.h"
#include "thrift/codec.h"

/* Hex to bytes; returns the length. */
static size_t unhex(const char *h, uint8_t *out) {
  size_t n = 0;
  for (; h[0] && h[1]; h += 2) {
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (uint8_t)v;
  }
  return n;
}

static const char call_binary[] =
    "8001000100000003676574000000070a000100000100000000000b0002000000017800";
static const char call_compact[] = "822107036765741680808080804018017800";
static const char exc_binary[] =
    "80010003000000046e6f7065000000010b000100000013756e6b6e6f776e206d6574686f64206e6f706508000200"
    "00000100";
static const char exc_compact[] =
    "826101046e6f70651813756e6b6e6f776e206d6574686f64206e6f7065150200";

static void test_read_message(void) {
  uint8_t buf[128];
  bp__thrift_message_t m;
  char err[128];
  size_t n = unhex(call_binary, buf);
  CHECK_INT(bp__thrift_read_message(buf, n, BP__T_BINARY, &m, err, sizeof err), BP_OK);
  CHECK_INT(m.name_len, 3);
  CHECK(memcmp(m.name, "get", 3) == 0);
  CHECK_INT(m.type, BP__T_CALL);
  CHECK_INT(m.seqid, 7);
  CHECK_INT(m.body, 15);
  n = unhex(call_compact, buf);
  CHECK_INT(bp__thrift_read_message(buf, n, BP__T_COMPACT, &m, err, sizeof err), BP_OK);
  CHECK_INT(m.name_len, 3);
  CHECK(memcmp(m.name, "get", 3) == 0);
  CHECK_INT(m.type, BP__T_CALL);
  CHECK_INT(m.seqid, 7);
  CHECK_INT(m.body, 7);
  /* The old binary header: name length, name, type, seqid. */
  memcpy(buf, "\0\0\0\3abc\4\xff\xff\xff\xfe", 12);
  CHECK_INT(bp__thrift_read_message(buf, 12, BP__T_BINARY, &m, err, sizeof err), BP_OK);
  CHECK_INT(m.type, BP__T_ONEWAY);
  CHECK_INT(m.seqid, -2);
  CHECK_INT(m.body, 12);
}

static void test_read_message_short_and_bad(void) {
  uint8_t buf[128];
  bp__thrift_message_t m;
  char err[128];
  size_t n = unhex(call_binary, buf);
  /* Every cut inside the envelope wants more bytes. */
  for (size_t k = 0; k < 15; k++)
    CHECK_INT(bp__thrift_read_message(buf, k, BP__T_BINARY, &m, err, sizeof err), BP_AGAIN);
  n = unhex(call_compact, buf);
  for (size_t k = 0; k < 7; k++)
    CHECK_INT(bp__thrift_read_message(buf, k, BP__T_COMPACT, &m, err, sizeof err), BP_AGAIN);
  (void)n;
  memcpy(buf, "\x80\x02\x00\x01\0\0\0\0\0\0\0\0", 12);
  CHECK_INT(bp__thrift_read_message(buf, 12, BP__T_BINARY, &m, err, sizeof err), BP_ERROR);
  CHECK_STR(err, "message: bad version 0x80020001");
  memcpy(buf, "\x80\x01\x00\x07\0\0\0\0\0\0\0\0", 12);
  CHECK_INT(bp__thrift_read_message(buf, 12, BP__T_BINARY, &m, err, sizeof err), BP_ERROR);
  CHECK_STR(err, "message: invalid message type 7");
  memcpy(buf, "\x80\x01\x00\x01\xff\xff\xff\xff", 8);
  CHECK_INT(bp__thrift_read_message(buf, 8, BP__T_BINARY, &m, NULL, 0), BP_ERROR);
  memcpy(buf, "\x82\x02\x00\x00", 4);
  CHECK_INT(bp__thrift_read_message(buf, 4, BP__T_COMPACT, &m, err, sizeof err), BP_ERROR);
  CHECK_STR(err, "message: not a compact protocol message (0x8202)");
  memcpy(buf, "GET / HTTP/1.1\r\n", 16);
  CHECK_INT(bp__thrift_read_message(buf, 16, BP__T_COMPACT, &m, err, sizeof err), BP_ERROR);
}

static void test_write_app_exception(void) {
  static const char msg[] = "unknown method nope";
  uint8_t want[128], got[128];
  size_t n;
  for (int proto = BP__T_BINARY; proto <= BP__T_COMPACT; proto++) {
    size_t wn = unhex(proto == BP__T_BINARY ? exc_binary : exc_compact, want);
    n = bp__thrift_write_app_exception(proto, "nope", 4, 1, 1, msg, NULL, 0);
    CHECK_INT(n, wn);
    memset(got, 0xaa, sizeof got);
    n = bp__thrift_write_app_exception(proto, "nope", 4, 1, 1, msg, got, sizeof got);
    CHECK_INT(n, wn);
    CHECK(memcmp(got, want, wn) == 0);
    CHECK_INT(got[wn], 0xaa);
    /* Too small: nothing written, the size returned. */
    memset(got, 0xaa, sizeof got);
    CHECK_INT(bp__thrift_write_app_exception(proto, "nope", 4, 1, 1, msg, got, wn - 1), wn);
    CHECK_INT(got[0], 0xaa);
  }
  /* Without a message: the type alone, and it reads back as a message. */
  n = bp__thrift_write_app_exception(BP__T_COMPACT, "x", 1, -9, 6, NULL, got, sizeof got);
  {
    bp__thrift_message_t m;
    CHECK_INT(bp__thrift_read_message(got, n, BP__T_COMPACT, &m, NULL, 0), BP_OK);
    CHECK_INT(m.type, BP__T_EXCEPTION);
    CHECK_INT(m.seqid, -9);
    CHECK_INT(n - m.body, 3); /* 0x25 (field 2 = delta 2, i32), 0x0c (zigzag 6), stop */
    CHECK_INT(got[m.body], 0x25);
    CHECK_INT(got[m.body + 1], 12);
    CHECK_INT(got[m.body + 2], 0);
  }
}

int main(void) {
  RUN(test_read_message);
  RUN(test_read_message_short_and_bad);
  RUN(test_write_app_exception);
  return bp_test_summary();
}
