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

/* --- a message to walk: every container, nesting, compact bools and both
 * forms of compact field ids -------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t n;
  int proto;
  int16_t last[8];
  int depth;
} w_t;

static void w_byte(w_t *w, unsigned v) { w->p[w->n++] = (uint8_t)v; }
static void w_be(w_t *w, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--) w_byte(w, (unsigned)(v >> (8 * i)) & 0xff);
}
static void w_varint(w_t *w, uint64_t v) {
  while (v >= 0x80) w_byte(w, (unsigned)(v & 0x7f) | 0x80), v >>= 7;
  w_byte(w, (unsigned)v);
}
static const uint8_t compact_of[16] = {[BP__T_BOOL] = 1, [BP__T_BYTE] = 3, [BP__T_I16] = 4,
                                       [BP__T_I32] = 5,  [BP__T_I64] = 6,  [BP__T_DOUBLE] = 7,
                                       [BP__T_STRING] = 8, [BP__T_LIST] = 9, [BP__T_SET] = 10,
                                       [BP__T_MAP] = 11, [BP__T_STRUCT] = 12};
/* a field header; for a compact bool, its value in the header */
static void w_field(w_t *w, int t, int16_t id, int boolv) {
  if (w->proto == BP__T_BINARY) {
    w_byte(w, (unsigned)t);
    w_be(w, (uint16_t)id, 2);
    if (t == BP__T_BOOL) w_byte(w, (unsigned)boolv);
    return;
  }
  unsigned ct = t == BP__T_BOOL ? (boolv ? 1u : 2u) : compact_of[t];
  int16_t delta = (int16_t)(id - w->last[w->depth]);
  if (delta > 0 && delta <= 15) {
    w_byte(w, (unsigned)delta << 4 | ct);
  } else {
    w_byte(w, ct);
    w_varint(w, ((uint64_t)(int64_t)id << 1) ^ (uint64_t)((int64_t)id >> 63));
  }
  w->last[w->depth] = id;
}
static void w_i32(w_t *w, int32_t v) {
  if (w->proto == BP__T_BINARY) w_be(w, (uint32_t)v, 4);
  else w_varint(w, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}
static void w_size(w_t *w, uint32_t n) {
  if (w->proto == BP__T_BINARY) w_be(w, n, 4);
  else w_varint(w, n);
}
static void w_list(w_t *w, int et, uint32_t n) {
  if (w->proto == BP__T_BINARY) {
    w_byte(w, (unsigned)et);
    w_be(w, n, 4);
  } else if (n < 15) {
    w_byte(w, n << 4 | compact_of[et]);
  } else {
    w_byte(w, 0xf0 | compact_of[et]);
    w_varint(w, n);
  }
}
static void w_stop(w_t *w) { w_byte(w, 0); }

/* call "walk" (seqid 9) with: 1: a struct {1: i32, 20: list<i32> of 300,
 * 21: bool true, 3: struct {} }, 2: map<string, list<bool>>, 300: bool
 * false, 4: set<string> of 20. */
static size_t build_walk(uint8_t *buf, int proto) {
  w_t w = {buf, 0, proto, {0}, 0};
  if (proto == BP__T_BINARY) {
    w_be(&w, 0x80010001u, 4);
    w_be(&w, 4, 4);
    memcpy(buf + w.n, "walk", 4), w.n += 4;
    w_be(&w, 9, 4);
  } else {
    w_byte(&w, 0x82);
    w_byte(&w, 0x21);
    w_varint(&w, 9);
    w_varint(&w, 4);
    memcpy(buf + w.n, "walk", 4), w.n += 4;
  }
  w_field(&w, BP__T_STRUCT, 1, 0);
  w.last[++w.depth] = 0;
  w_field(&w, BP__T_I32, 1, 0);
  w_i32(&w, -5);
  w_field(&w, BP__T_LIST, 20, 0);
  w_list(&w, BP__T_I32, 300);
  for (int i = 0; i < 300; i++) w_i32(&w, i * 1000);
  w_field(&w, BP__T_BOOL, 21, 1);
  w_field(&w, BP__T_STRUCT, 3, 0);
  w.last[++w.depth] = 0;
  w_stop(&w);
  w.depth--;
  w_stop(&w);
  w.depth--;
  w_field(&w, BP__T_MAP, 2, 0);
  if (proto == BP__T_BINARY) {
    w_byte(&w, BP__T_STRING), w_byte(&w, BP__T_LIST), w_size(&w, 3);
  } else {
    w_size(&w, 3), w_byte(&w, compact_of[BP__T_STRING] << 4 | compact_of[BP__T_LIST]);
  }
  for (int k = 0; k < 3; k++) {
    w_size(&w, 1);
    w_byte(&w, 'a' + k);
    w_list(&w, BP__T_BOOL, 2);
    w_byte(&w, 1);                              /* true, in both */
    w_byte(&w, proto == BP__T_BINARY ? 0 : 2); /* false: 0, or compact's 2 */
  }
  w_field(&w, BP__T_BOOL, 300, 0);
  w_field(&w, BP__T_SET, 4, 0);
  w_list(&w, BP__T_STRING, 20);
  for (int i = 0; i < 20; i++) w_size(&w, 3), memcpy(buf + w.n, "xyz", 3), w.n += 3;
  w_stop(&w);
  return w.n;
}

static void test_message_scan(void) {
  static uint8_t buf[8192];
  for (int proto = BP__T_BINARY; proto <= BP__T_COMPACT; proto++) {
    size_t n = build_walk(buf, proto), end = 0, got_end = 0;
    bp__thrift_message_t m;
    bp__thrift_scan_t s;
    char err[160];
    int rc, again = 0, ok = 0, resumed = 0;
    /* the whole message at once */
    CHECK_INT(bp__thrift_message_end(buf, n, proto, &m, &end, err, sizeof err), BP_OK);
    CHECK_INT((long)end, (long)n);
    CHECK_INT((int)m.name_len, 4);
    CHECK_INT(m.seqid, 9);
    /* with a byte of the next message after it */
    CHECK_INT(bp__thrift_message_end(buf, n + 1, proto, &m, &end, err, sizeof err), BP_OK);
    CHECK_INT((long)end, (long)n);
    /* every prefix is short: BP_AGAIN */
    for (size_t k = 0; k < n; k++) again += bp__thrift_message_end(buf, k, proto, &m, &end, NULL, 0) == BP_AGAIN;
    CHECK_INT(again, (int)n);
    /* streamed a byte at a time through one walk: it resumes, so that the
     * steps of all the calls together are about those of one whole walk
     * (one more per call that stopped short), and ends where it did */
    bp__thrift_scan_init(&s);
    CHECK_INT(bp__thrift_message_scan(&s, buf, n, proto, &m, &got_end, err, sizeof err), BP_OK);
    unsigned long whole = s.steps;
    bp__thrift_scan_init(&s);
    for (size_t k = 1; k <= n; k++) {
      size_t before = s.pos;
      rc = bp__thrift_message_scan(&s, buf, k, proto, &m, &got_end, err, sizeof err);
      if (rc == BP_OK) {
        ok = 1;
        CHECK_INT((long)k, (long)n);
        break;
      }
      CHECK_INT(rc, BP_AGAIN);
      if (s.started && s.pos > before && before > 0) resumed++;
    }
    CHECK_INT(ok, 1);
    CHECK_INT((long)got_end, (long)n);
    CHECK(resumed > 5);
    CHECK(s.steps <= whole + n);
    CHECK(whole > 300);
    CHECK(memcmp(m.name, "walk", 4) == 0);
    /* a walk left halfway, then another input: it starts over */
    bp__thrift_scan_init(&s);
    CHECK_INT(bp__thrift_message_scan(&s, buf, n / 2, proto, &m, &got_end, NULL, 0), BP_AGAIN);
    {
      static uint8_t other[8192];
      size_t n2 = build_walk(other, proto);
      other[14] ^= 0xff; /* (the name, or the seqid: the first bytes differ) */
      other[8] ^= 0x01;
      memcpy(other, buf, 4);
      rc = bp__thrift_message_scan(&s, other, n2, proto, &m, &got_end, NULL, 0);
      CHECK(rc == BP_OK || rc == BP_ERROR);
    }
    /* nested deeper than the limit: an error, not a crash, streamed or not */
    {
      static uint8_t deep[4096];
      w_t w = {deep, 0, proto, {0}, 0};
      size_t k = build_walk(deep, proto);
      w.n = k - 1; /* drop the last stop: a field of lists, 100 deep */
      w_field(&w, BP__T_LIST, 5, 0);
      for (int i = 0; i < 100; i++) w_list(&w, BP__T_LIST, 1);
      w_list(&w, BP__T_I32, 0);
      w_stop(&w);
      CHECK_INT(bp__thrift_message_end(deep, w.n, proto, &m, &end, err, sizeof err), BP_ERROR);
      CHECK(strstr(err, "nested deeper than 64") != NULL);
    }
  }
}

int main(void) {
  RUN(test_read_message);
  RUN(test_message_scan);
  RUN(test_read_message_short_and_bad);
  RUN(test_write_app_exception);
  return bp_test_summary();
}
