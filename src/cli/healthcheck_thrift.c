/* baseplate-healthcheck's Thrift check (healthcheck_thrift.h). The request
 * and the reply are encoded by hand in the binary protocol: the tool runs
 * no Lua and has no schema. The reply is judged as Baseplate.py's tool
 * (its generated BaseplateServiceV2 client) judges it: success true is
 * healthy; false, a declared Error, a TApplicationException or no result
 * at all is not. */
#include "healthcheck_thrift.h"

#include <baseplate/common.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "thrift/codec.h"
#include "healthcheck_reply.h"

#define MAX_DEPTH 32


size_t bp__hc_thrift_request(int probe, char *out, size_t cap) {
  char msg[64];
  size_t n = 0;
  bp__theader_out_t o = {BP__TT_HEADER, BP__T_BINARY, 0, 0, 0, NULL, 0};
  memcpy(msg, "\x80\x01\x00\x01\x00\x00\x00\x0ais_healthy\x00\x00\x00\x00", 22);
  n = 22;
  memcpy(msg + n, "\x0c\x00\x01" "\x08\x00\x01", 6); /* 1: request { 1: probe (i32) */
  n += 6;
  msg[n++] = (char)((uint32_t)probe >> 24);
  msg[n++] = (char)((uint32_t)probe >> 16);
  msg[n++] = (char)((uint32_t)probe >> 8);
  msg[n++] = (char)probe;
  msg[n++] = 0; /* the end of IsHealthyRequest */
  msg[n++] = 0; /* the end of the arguments */
  if (cap < bp__theader_write_bound(&o, n)) return 0;
  return bp__theader_write(&o, msg, n, out, cap);
}

void bp__hc_thrift_init(bp__hc_thrift_t *r) {
  r->len = 0;
  r->too_big = 0;
  r->done = 0;
  bp__theader_frame_init(&r->frame);
}

void bp__hc_thrift_free(bp__hc_thrift_t *r) { bp__theader_frame_free(&r->frame); }

/* --- a binary protocol reader, bounded by its input -------------------------- */

typedef struct {
  const unsigned char *p, *end;
} rd_t;

static int get(rd_t *r, size_t n, const unsigned char **out) {
  if ((size_t)(r->end - r->p) < n) return -1;
  *out = r->p;
  r->p += n;
  return 0;
}

static int get_i32(rd_t *r, int32_t *v) {
  const unsigned char *b;
  if (get(r, 4, &b)) return -1;
  *v = (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
  return 0;
}

static int get_string(rd_t *r, const unsigned char **s, size_t *len) {
  int32_t n;
  if (get_i32(r, &n) || n < 0) return -1;
  *len = (size_t)n;
  return get(r, (size_t)n, s);
}

/* A field header: its type (BP__T_STOP at the end) and id. */
static int field(rd_t *r, int *type, int *id) {
  const unsigned char *b;
  if (get(r, 1, &b)) return -1;
  *type = b[0];
  if (*type == BP__T_STOP) return 0;
  if (get(r, 2, &b)) return -1;
  *id = (int16_t)(b[0] << 8 | b[1]);
  return 0;
}

static int skip(rd_t *r, int type, int depth) {
  const unsigned char *b;
  size_t len;
  int32_t n, i;
  if (depth > MAX_DEPTH) return -1;
  switch (type) {
    case BP__T_BOOL:
    case BP__T_BYTE:
      return get(r, 1, &b);
    case BP__T_I16:
      return get(r, 2, &b);
    case BP__T_I32:
      return get(r, 4, &b);
    case BP__T_I64:
    case BP__T_DOUBLE:
      return get(r, 8, &b);
    case BP__T_STRING:
      return get_string(r, &b, &len);
    case BP__T_STRUCT:
      for (;;) {
        int ft, fid;
        if (field(r, &ft, &fid)) return -1;
        if (ft == BP__T_STOP) return 0;
        if (skip(r, ft, depth + 1)) return -1;
      }
    case BP__T_MAP:
      if (get(r, 2, &b) || get_i32(r, &n) || n < 0) return -1;
      {
        int kt = b[0], vt = b[1];
        for (i = 0; i < n; i++)
          if (skip(r, kt, depth + 1) || skip(r, vt, depth + 1)) return -1;
      }
      return 0;
    case BP__T_SET:
    case BP__T_LIST:
      if (get(r, 1, &b) || get_i32(r, &n) || n < 0) return -1;
      {
        int et = b[0];
        for (i = 0; i < n; i++)
          if (skip(r, et, depth + 1)) return -1;
      }
      return 0;
  }
  return -1;
}

/* s[0..n) for a message: printable, at most 200 bytes. */
static void printable(char *out, size_t size, const unsigned char *s, size_t n) {
  size_t i, o = 0;
  for (i = 0; i < n && o + 4 < size && i < 200; i++)
    out[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
  if (i < n && o + 3 < size) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

static const char *app_error_name(int32_t t) {
  static const char *const names[] = {
      "Default (unknown) TApplicationException", "Unknown method", "Invalid message type",
      "Wrong method name", "Bad sequence ID", "Missing result", "Internal error",
      "Protocol error", "Invalid transform", "Invalid protocol", "Unsupported client type"};
  return t >= 0 && t <= 10 ? names[t] : names[0];
}

/* The message in payload: "" for healthy, else the reason. */
static void judge(const char *payload, size_t len, int probe, const char *endpoint, char *err,
                  size_t errlen) {
  rd_t r = {(const unsigned char *)payload, (const unsigned char *)payload + len};
  const unsigned char *name, *s;
  size_t name_len, slen;
  int32_t version, seqid, code = 0, atype = 0;
  int type, id, mtype, have_success = 0, success = 0, have_error = 0, have_code = 0;
  char msg[256] = "";

  if (len >= 1 && (unsigned char)payload[0] == 0x82) {
    bp__hc_say(err, errlen, "%s answered in the compact protocol; the request was binary", endpoint);
    return;
  }
  if (get_i32(&r, &version) || ((uint32_t)version & 0xffff0000u) != 0x80010000u ||
      get_string(&r, &name, &name_len) || get_i32(&r, &seqid)) {
    bp__hc_say(err, errlen, "invalid Thrift reply from %s: not a binary protocol message", endpoint);
    return;
  }
  (void)seqid;
  mtype = version & 0xff;
  if (mtype == BP__T_EXCEPTION) {
    /* TApplicationException { 1: string message, 2: i32 type } */
    for (;;) {
      if (field(&r, &type, &id)) goto bad;
      if (type == BP__T_STOP) break;
      if (id == 1 && type == BP__T_STRING) {
        if (get_string(&r, &s, &slen)) goto bad;
        printable(msg, sizeof msg, s, slen);
      } else if (id == 2 && type == BP__T_I32) {
        if (get_i32(&r, &atype)) goto bad;
      } else if (skip(&r, type, 0)) {
        goto bad;
      }
    }
    bp__hc_say(err, errlen, "TApplicationException (%s)%s%s", app_error_name(atype), msg[0] ? ": " : "",
        msg);
    return;
  }
  if (mtype != BP__T_REPLY) {
    bp__hc_say(err, errlen, "invalid Thrift reply from %s: message type %d", endpoint, mtype);
    return;
  }
  /* is_healthy's result: 0: bool success, 1: Error error. */
  for (;;) {
    if (field(&r, &type, &id)) goto bad;
    if (type == BP__T_STOP) break;
    if (id == 0 && type == BP__T_BOOL) {
      if (get(&r, 1, &s)) goto bad;
      have_success = 1;
      success = s[0] != 0;
    } else if (id == 1 && type == BP__T_STRUCT) {
      /* Error { 1: i32 code, 2: string message, ... } */
      have_error = 1;
      for (;;) {
        int et, eid;
        if (field(&r, &et, &eid)) goto bad;
        if (et == BP__T_STOP) break;
        if (eid == 1 && et == BP__T_I32) {
          if (get_i32(&r, &code)) goto bad;
          have_code = 1;
        } else if (eid == 2 && et == BP__T_STRING) {
          if (get_string(&r, &s, &slen)) goto bad;
          printable(msg, sizeof msg, s, slen);
        } else if (skip(&r, et, 1)) {
          goto bad;
        }
      }
    } else if (skip(&r, type, 0)) {
      goto bad;
    }
  }
  if (have_success) {
    if (success)
      bp__hc_say(err, errlen, "%s", "");
    else
      bp__hc_say(err, errlen, "service indicated unhealthiness in probe %d", probe);
  } else if (have_error) {
    char codes[32] = "";
    if (have_code) snprintf(codes, sizeof codes, "code=%d", (int)code);
    bp__hc_say(err, errlen, "is_healthy raised Error(%s%s%s%s%s)", codes, have_code && msg[0] ? ", " : "",
        msg[0] ? "message='" : "", msg, msg[0] ? "'" : "");
  } else {
    bp__hc_say(err, errlen, "is_healthy failed: unknown result");
  }
  return;
bad:
  bp__hc_say(err, errlen, "invalid Thrift reply from %s: the %s is cut short or malformed", endpoint,
      mtype == BP__T_EXCEPTION ? "exception" : "result");
}

int bp__hc_thrift_feed(bp__hc_thrift_t *r, const char *data, size_t n, int probe,
                       const char *endpoint, char *err, size_t errlen) {
  char why[256];
  size_t need, take;
  int rc;
  if (r->done) return 1;
  if (n == 0) {
    r->done = 1;
    if (r->len == 0)
      bp__hc_say(err, errlen, "%s closed the connection without answering", endpoint);
    else
      bp__hc_say(err, errlen, "%s closed the connection before the end of the reply", endpoint);
    return 1;
  }
  take = sizeof r->buf - r->len;
  if (take > n) take = n;
  memcpy(r->buf + r->len, data, take);
  r->len += take;
  rc = bp__theader_read(&r->frame, r->buf, r->len, BP_HC_THRIFT_MAX, &need, why, sizeof why);
  if (rc == BP_AGAIN && r->len < sizeof r->buf) return 0;
  r->done = 1;
  if (rc == BP_OK)
    judge(r->frame.payload, r->frame.payload_len, probe, endpoint, err, errlen);
  else if (rc == BP_ETOOBIG || rc == BP_AGAIN)
    bp__hc_say(err, errlen, "the reply from %s is over %d bytes", endpoint, BP_HC_THRIFT_MAX);
  else
    bp__hc_say(err, errlen, "invalid Thrift reply from %s: %s", endpoint, why);
  return 1;
}
