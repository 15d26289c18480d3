/* baseplate-healthcheck's reading of the answer (src/cli/healthcheck_reply.c
 * for HTTP, src/cli/healthcheck_thrift.c for Thrift): any bytes from the
 * server give a verdict, never a crash, and the verdict does not depend on
 * how the bytes were split into reads. The first byte picks the split (its
 * low 5 bits) and the protocol (bit 7 set: Thrift; bits 5-6: the probe). */
#include "cli/healthcheck_reply.h"
#include "cli/healthcheck_thrift.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bp__hc_reply_t whole, pieces;
static bp__hc_thrift_t twhole, tpieces;
static int thrift, probe;

static const char url[] = "http://127.0.0.1:9090/health?type=1";
static const char endpoint[] = "127.0.0.1:9090";

static int feed(void *r, const char *buf, size_t n, char *verdict, size_t len) {
  if (thrift) return bp__hc_thrift_feed(r, buf, n, probe, endpoint, verdict, len);
  return bp__hc_reply_feed(r, buf, n, url, endpoint, verdict, len);
}

/* Feed data in reads of `step` bytes (0: all at once), then the close. */
static void run(void *r, const unsigned char *data, size_t size, size_t step, char *verdict,
                size_t len) {
  size_t off = 0;
  if (thrift)
    bp__hc_thrift_init(r);
  else
    bp__hc_reply_init(r);
  memset(verdict, 0x55, len);
  while (off < size) {
    size_t n = step && step < size - off ? step : size - off;
    /* Each read in a buffer of its own: ASan sees any read past it. */
    char *buf = malloc(n);
    int done;
    memcpy(buf, data + off, n);
    done = feed(r, buf, n, verdict, len);
    free(buf);
    off += n;
    if (done) goto out;
  }
  if (!feed(r, NULL, 0, verdict, len)) {
    fprintf(stderr, "fuzz-healthcheck: no verdict after the close\n");
    abort();
  }
out:
  if (thrift) bp__hc_thrift_free(r);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char a[1024], b[1024];
  size_t step;
  if (size < 1) return 0;
  step = 1 + data[0] % 32;
  thrift = data[0] >> 7;
  probe = 1 + (data[0] >> 5 & 3) % 3;
  run(thrift ? (void *)&twhole : (void *)&whole, data + 1, size - 1, 0, a, sizeof a);
  run(thrift ? (void *)&tpieces : (void *)&pieces, data + 1, size - 1, step, b, sizeof b);
  if (!memchr(a, '\0', sizeof a) || !memchr(b, '\0', sizeof b)) {
    fprintf(stderr, "fuzz-healthcheck: a verdict not terminated\n");
    abort();
  }
  if (strcmp(a, b) != 0) {
    fprintf(stderr, "fuzz-healthcheck: the verdict depends on the reads\n  at once: %s\n  by %zu: %s\n",
            a, step, b);
    abort();
  }
  /* And the JSON check on its own, on the raw bytes. */
  (void)bp__hc_is_json((const char *)data + 1, size - 1);
  return 0;
}
