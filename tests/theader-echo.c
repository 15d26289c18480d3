/* Reads Thrift frames (any transport src/thrift/theader.c knows) from
 * stdin, describes each on stderr and writes it back to stdout re-encoded
 * as it came (transport, protocol, zlib, seqid, flags, info headers), for
 * tests/integration/test-theader-interop.sh:
 *
 *   theader-echo [--max-frame N] [--zlib] [--add-header KEY=VALUE]... < frames > frames
 *
 * --zlib and --add-header change what THeader frames are written with.
 * A description line:
 *   frame transport=2 protocol=1 zlib=1 seqid=-3 flags=1 len=57 payload=HEX headers=KHEX:VHEX,...
 * On a frame it cannot read: "error STATUS MESSAGE" on stderr, exit 1;
 * input ending inside a frame: "truncated need=N", exit 1. */
#include <baseplate/common.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thrift/theader.h"

static void hex(FILE *out, const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) fprintf(out, "%02x", (unsigned char)p[i]);
}

int main(int argc, char **argv) {
  size_t max_frame = 16384000, len = 0, cap = 1 << 16, pos = 0, need;
  char *in = malloc(cap), err[256];
  bp__theader_kv_t extra[16];
  int nextra = 0, zlib = 0, i, rc, status = 0;
  bp__theader_frame_t f;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--max-frame") == 0 && i + 1 < argc) {
      max_frame = strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--zlib") == 0) {
      zlib = 1;
    } else if (strcmp(argv[i], "--add-header") == 0 && i + 1 < argc && nextra < 16) {
      char *kv = argv[++i], *eq = strchr(kv, '=');
      if (!eq) return 2;
      extra[nextra].key = kv;
      extra[nextra].key_len = (size_t)(eq - kv);
      extra[nextra].value = eq + 1;
      extra[nextra].value_len = strlen(eq + 1);
      nextra++;
    } else {
      fprintf(stderr, "usage: theader-echo [--max-frame N] [--zlib] [--add-header K=V]...\n");
      return 2;
    }
  }
  for (;;) {
    size_t n;
    if (len == cap) in = realloc(in, cap *= 2);
    n = fread(in + len, 1, cap - len, stdin);
    if (n == 0) break;
    len += n;
  }

  bp__theader_frame_init(&f);
  while (pos < len) {
    bp__theader_out_t o;
    bp__theader_kv_t *hdrs;
    size_t bound, w;
    char *out;
    rc = bp__theader_read(&f, in + pos, len - pos, max_frame, &need, err, sizeof err);
    if (rc == BP_AGAIN) {
      fprintf(stderr, "truncated need=%zu\n", need);
      status = 1;
      break;
    }
    if (rc != BP_OK) {
      fprintf(stderr, "error %s %s\n", bp_strerror(rc), err);
      status = 1;
      break;
    }
    fprintf(stderr, "frame transport=%d protocol=%d zlib=%d seqid=%d flags=%u len=%zu payload=",
            f.transport, f.protocol, f.zlib, (int)f.seqid, (unsigned)f.flags, f.frame_len);
    hex(stderr, f.payload, f.payload_len);
    fprintf(stderr, " headers=");
    for (i = 0; i < f.nheaders; i++) {
      if (i) fputc(',', stderr);
      hex(stderr, f.headers[i].key, f.headers[i].key_len);
      fputc(':', stderr);
      hex(stderr, f.headers[i].value, f.headers[i].value_len);
    }
    fputc('\n', stderr);

    hdrs = malloc(sizeof *hdrs * (size_t)(f.nheaders + nextra + 1));
    if (f.nheaders) memcpy(hdrs, f.headers, sizeof *hdrs * (size_t)f.nheaders);
    if (nextra) memcpy(hdrs + f.nheaders, extra, sizeof *hdrs * (size_t)nextra);
    o.transport = f.transport;
    o.protocol = f.protocol;
    o.zlib = f.zlib || zlib;
    o.seqid = f.seqid;
    o.flags = f.flags;
    o.headers = hdrs;
    o.nheaders = f.nheaders + nextra;
    bound = bp__theader_write_bound(&o, f.payload_len);
    out = malloc(bound ? bound : 1);
    w = bp__theader_write(&o, f.payload, f.payload_len, out, bound);
    if (w > 0) fwrite(out, 1, w, stdout);
    free(out);
    free(hdrs);
    if (w == 0) {
      fprintf(stderr, "error writing the frame\n");
      status = 1;
      break;
    }
    pos += f.frame_len;
  }
  bp__theader_frame_free(&f);
  free(in);
  return status;
}
