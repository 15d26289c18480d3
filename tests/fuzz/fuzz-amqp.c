/* What the AMQP connection makes of the broker's frames (src/clients/amqp.c:
 * rabbitmq-c's frame decoder, then our handling of methods, content headers
 * and bodies into deliveries, their properties and headers as text, and
 * the trace context read from those headers). The input is the byte stream
 * a broker would send on a consuming channel. Whatever it holds: no crash,
 * no allocation beyond the frame limit, deliveries well formed, everything
 * freed. */
#include <baseplate.h>
#include <baseplate/amqp.h>
#include <baseplate/span.h>

#include <amqp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bp_amqp_conn_t *bp__amqp_fuzz_conn(void);
void bp__amqp_fuzz_free(bp_amqp_conn_t *c);
void bp__amqp_on_frame(bp_amqp_conn_t *c, const amqp_frame_t *f);

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-amqp: %s\n", what);
    abort();
  }
}

static char *copy(const char *p, size_t n) {
  char *s = malloc(n + 1);
  check(s != NULL, "out of memory");
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* The consumer's reading of trace headers, in C: X-Trace and friends. */
static void trace_of(const bp_amqp_delivery_t *d) {
  char *vals[5] = {0};
  static const char *const names[5] = {"x-trace", "x-parent", "x-span", "x-sampled", "x-flags"};
  char err[256];
  bp_trace_info_t ti;
  for (int i = 0; i < bp_amqp_delivery_nheaders(d); i++) {
    const char *key;
    size_t klen, vlen;
    const char *v = bp_amqp_delivery_header(d, i, &key, &klen, &vlen);
    check(v != NULL && key != NULL, "a header without key or value");
    check(v[vlen] == '\0' && key[klen] == '\0', "a header not NUL-terminated");
    for (int k = 0; k < 5; k++) {
      if (klen == strlen(names[k]) && strncasecmp(key, names[k], klen) == 0) {
        free(vals[k]);
        vals[k] = copy(v, vlen);
      }
    }
  }
  if (vals[0] && vals[2]) bp_trace_info_from_upstream(&ti, vals[0], vals[1], vals[2], vals[3], vals[4], err, sizeof err);
  for (int k = 0; k < 5; k++) free(vals[k]);
}

static void take_all(bp_amqp_conn_t *c) {
  bp_amqp_delivery_t *d;
  while (bp_amqp_queued(c) > 0 && bp_amqp_next(c, 0, &d) == BP_OK) {
    size_t len;
    const char *body = bp_amqp_delivery_field(d, BP_AMQP_BODY, &len);
    check(body != NULL && body[len] == '\0', "a delivery without its body");
    for (int w = 0; w < 7; w++) {
      const char *f = bp_amqp_delivery_field(d, w, &len);
      check(!f || f[len] == '\0', "a field not NUL-terminated");
    }
    check(bp_amqp_delivery_field(d, 7, &len) == NULL && len == 0, "a field past the end");
    check(bp_amqp_delivery_header(d, bp_amqp_delivery_nheaders(d), NULL, NULL, NULL) == NULL,
          "a header past the end");
    (void)bp_amqp_delivery_tag(d);
    (void)bp_amqp_delivery_redelivered(d);
    trace_of(d);
    bp_amqp_delivery_free(d);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  amqp_connection_state_t st = amqp_new_connection();
  bp_amqp_conn_t *c = bp__amqp_fuzz_conn();
  amqp_bytes_t in;
  check(st != NULL && c != NULL, "out of memory");
  in.bytes = (void *)(uintptr_t)data;
  in.len = size;
  while (in.len > 0 && !bp_amqp_broken(c)) {
    amqp_frame_t f;
    int rc = amqp_handle_input(st, in, &f);
    if (rc <= 0) break;
    in.bytes = (char *)in.bytes + rc;
    in.len -= (size_t)rc;
    if (f.frame_type != 0) {
      bp__amqp_on_frame(c, &f);
      take_all(c);
    }
    amqp_maybe_release_buffers(st);
  }
  take_all(c);
  bp__amqp_fuzz_free(c);
  amqp_destroy_connection(st);
  return 0;
}
