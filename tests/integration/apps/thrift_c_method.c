/*
 * Thrift methods written in C for thriftapp.lua (`c_method = PATH` in its
 * [app:main]): add(1: i64 a, 2: i64 b), decoded and answered by hand in
 * the binary protocol (compact calls get INVALID_PROTOCOL), and note(),
 * oneway, finished by the runtime when it returns.
 */
#include <baseplate.h>
#include <stdint.h>
#include <string.h>

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

static unsigned char *put_be(unsigned char *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--) p[n - 1 - i] = (unsigned char)(v >> (8 * i));
  return p + n;
}

__attribute__((visibility("default"))) int add_c(bp_thrift_call_t *call, void *data) {
  size_t len, off, name_len;
  const unsigned char *m = (const unsigned char *)bp_thrift_call_message(call, &len, &off);
  const char *name = bp_thrift_call_method(call, &name_len);
  int64_t a = 0, b = 0;
  unsigned char out[256], *p = out;
  (void)data;
  if (bp_thrift_call_protocol(call) != 0) return bp_thrift_call_fail(call, 9, "add_c speaks binary only");
  while (off < len && m[off] != 0) { /* field: type, id, value */
    if (off + 3 > len) return BP_EINVAL;
    int type = m[off], id = (int)be(m + off + 1, 2);
    off += 3;
    if (type != 10 || off + 8 > len) return BP_EINVAL; /* i64 only (else: INTERNAL_ERROR) */
    if (id == 1) a = (int64_t)be(m + off, 8);
    if (id == 2) b = (int64_t)be(m + off, 8);
    off += 8;
  }
  if (name_len > 64) return BP_EINVAL;
  p = put_be(p, 0x80010002u, 4); /* REPLY */
  p = put_be(p, name_len, 4);
  memcpy(p, name, name_len);
  p += name_len;
  p = put_be(p, (uint32_t)bp_thrift_call_seqid(call), 4);
  *p++ = 10; /* field 0 (success), i64 */
  p = put_be(p, 0, 2);
  p = put_be(p, (uint64_t)(a + b + 1000), 8); /* (+1000: this one is C's) */
  *p++ = 0;
  return bp_thrift_call_reply(call, (const char *)out, (size_t)(p - out));
}

static int notes;

__attribute__((visibility("default"))) int note_c(bp_thrift_call_t *call, void *data) {
  (void)call;
  (void)data;
  notes++;
  return BP_OK; /* oneway: the runtime finishes it */
}

__attribute__((visibility("default"))) int fail_c(bp_thrift_call_t *call, void *data) {
  (void)call;
  (void)data;
  return BP_EIO;
}
