/* The answer to baseplate-healthcheck's request. See healthcheck_reply.h. */
#include "healthcheck_reply.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* --- a strict JSON syntax check (Baseplate.py calls response.json()) ------- */

typedef struct {
  const char *p, *end;
} json_t;

static void json_ws(json_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int json_lit(json_t *j, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return 0;
  j->p += n;
  return 1;
}

static int json_string(json_t *j) {
  if (j->p >= j->end || *j->p != '"') return 0;
  for (j->p++; j->p < j->end; j->p++) {
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') {
      j->p++;
      return 1;
    }
    if (c < 0x20) return 0;
    if (c == '\\') {
      if (++j->p >= j->end) return 0;
      if (*j->p == 'u') {
        for (int i = 0; i < 4; i++)
          if (++j->p >= j->end || !isxdigit((unsigned char)*j->p)) return 0;
      } else if (!strchr("\"\\/bfnrt", *j->p)) {
        return 0;
      }
    }
  }
  return 0;
}

static int json_digits(json_t *j) {
  const char *s = j->p;
  while (j->p < j->end && isdigit((unsigned char)*j->p)) j->p++;
  return j->p > s;
}

static int json_number(json_t *j) {
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p < j->end && *j->p == '0') {
    j->p++;
  } else if (!json_digits(j)) {
    return 0;
  }
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (!json_digits(j)) return 0;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (!json_digits(j)) return 0;
  }
  return 1;
}

static int json_value(json_t *j, int depth) {
  if (depth > 64) return 0;
  json_ws(j);
  if (j->p >= j->end) return 0;
  switch (*j->p) {
    case '{':
    case '[': {
      char close = *j->p == '{' ? '}' : ']';
      int object = close == '}';
      j->p++;
      json_ws(j);
      if (j->p < j->end && *j->p == close) {
        j->p++;
        return 1;
      }
      for (;;) {
        if (object) {
          json_ws(j);
          if (!json_string(j)) return 0;
          json_ws(j);
          if (j->p >= j->end || *j->p++ != ':') return 0;
        }
        if (!json_value(j, depth + 1)) return 0;
        json_ws(j);
        if (j->p >= j->end) return 0;
        if (*j->p == close) {
          j->p++;
          return 1;
        }
        if (*j->p++ != ',') return 0;
      }
    }
    case '"':
      return json_string(j);
    case 't':
      return json_lit(j, "true");
    case 'f':
      return json_lit(j, "false");
    case 'n':
      return json_lit(j, "null");
    default:
      return json_number(j);
  }
}

int bp__hc_is_json(const char *s, size_t len) {
  json_t j = {s, s + len};
  if (!json_value(&j, 0)) return 0;
  json_ws(&j);
  return j.p == j.end;
}

/* --- the answer ----------------------------------------------------------------- */

static int on_body(http_parser *p, const char *at, size_t len) {
  bp__hc_reply_t *r = p->data;
  if (r->body_len + len > BP_HC_MAX_BODY) {
    r->body_too_big = 1;
    len = BP_HC_MAX_BODY - r->body_len;
  }
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  bp__hc_reply_t *r = p->data;
  if (p->status_code >= 100 && p->status_code <= 199 && p->status_code != 101) {
    /* An interim answer (100 Continue, 103 Early Hints): the real one follows. */
    r->body_len = 0;
    r->body_too_big = 0;
    return 0;
  }
  r->complete = 1;
  r->status = p->status_code;
  /* The verdict is on this answer: whatever follows it in the same read
   * (or a later one) is not parsed over it. */
  http_parser_pause(p, 1);
  return 0;
}

void bp__hc_reply_init(bp__hc_reply_t *r) {
  http_parser_init(&r->parser, HTTP_RESPONSE);
  r->parser.data = r;
  http_parser_settings_init(&r->settings);
  r->settings.on_body = on_body;
  r->settings.on_message_complete = on_message_complete;
  r->body_len = 0;
  r->body_too_big = 0;
  r->complete = 0;
  r->status = 0;
  r->done = 0;
}

/* A body for an error message: one line, at most 200 bytes. */
static const char *body_excerpt(const bp__hc_reply_t *r, char *out, size_t size) {
  size_t n = 0;
  for (size_t i = 0; i < r->body_len && n < 200 && n + 4 < size; i++) {
    char c = r->body[i];
    out[n++] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  while (n > 0 && out[n - 1] == ' ') n--;
  snprintf(out + n, size - n, "%s", r->body_len > 200 ? "..." : "");
  return out;
}

/* The verdict: "" for healthy, else the reason. */
void bp__hc_say(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!errlen) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void judge(const bp__hc_reply_t *r, const char *url, char *err, size_t errlen) {
  unsigned status = r->status;
  char excerpt[256];
  if (status < 200 || status > 299) {
    const char *reason = http_status_str((enum http_status)status);
    bp__hc_say(err, errlen, "%u %s from %s%s%s", status, reason ? reason : "", url,
        r->body_len ? ": " : "", body_excerpt(r, excerpt, sizeof excerpt));
  } else if (r->body_too_big) {
    bp__hc_say(err, errlen, "%u response from %s has a body over %d bytes", status, url, BP_HC_MAX_BODY);
  } else if (!bp__hc_is_json(r->body, r->body_len)) {
    bp__hc_say(err, errlen, "%u response from %s is not JSON: %s", status, url,
        r->body_len ? body_excerpt(r, excerpt, sizeof excerpt) : "(empty body)");
  } else {
    bp__hc_say(err, errlen, "%s", "");
  }
}

int bp__hc_reply_feed(bp__hc_reply_t *r, const char *data, size_t n, const char *url,
                      const char *endpoint, char *err, size_t errlen) {
  size_t done;
  if (r->done) return 1;
  if (n == 0) {
    r->done = 1;
    http_parser_execute(&r->parser, &r->settings, NULL, 0); /* the end of the body */
    if (r->complete) {
      judge(r, url, err, errlen);
    } else if (r->parser.http_errno == HPE_OK && r->parser.status_code == 0 && r->body_len == 0) {
      bp__hc_say(err, errlen, "%s closed the connection without answering", endpoint);
    } else {
      bp__hc_say(err, errlen, "%s closed the connection before the end of the response", endpoint);
    }
    return 1;
  }
  done = http_parser_execute(&r->parser, &r->settings, data, n);
  if (r->complete) {
    r->done = 1;
    judge(r, url, err, errlen);
  } else if (r->parser.http_errno != HPE_OK || done != n) {
    r->done = 1;
    bp__hc_say(err, errlen, "invalid HTTP response from %s: %s", endpoint,
        http_errno_description((enum http_errno)r->parser.http_errno));
  }
  return r->done;
}
