/* A message's server span, whatever the protocol (server/span.h). */
#include "server/span.h"
#include "span_internal.h"

#include "baseplate/config.h"

#include <stdlib.h>
#include <string.h>

const bp__trace_names_t bp__http_trace_names = {
    "X-Trace", "X-Span", "X-Parent", "X-Sampled", "X-Flags", "X-Edge-Request", "traceparent",
    "tracestate", 1,
};

const bp__trace_names_t bp__theader_trace_names = {
    "Trace", "Span", "Parent", "Sampled", "Flags", "Edge-Request", NULL, NULL, 0,
};

/* A header's value as a C string in buf; NULL if absent, and a value that
 * cannot parse if too long (the trace is then not trusted). */
static const char *header_str(bp__carrier_get_fn get, void *carrier, const char *name, char *buf,
                              size_t size) {
  size_t len;
  const char *v = get(carrier, name, &len);
  if (!v) return NULL;
  if (len >= size) return "invalid";
  memcpy(buf, v, len);
  buf[len] = '\0';
  return buf;
}

/* The span keeps the edge context's raw bytes, as Baseplate.py's
 * raw_edge_context: over HTTP they come base64-encoded (Baseplate.py's
 * b64decode: the standard alphabet, with its padding); a value that does
 * not decode is dropped, as if the header were absent. */
static void set_edge(bp_span_t *span, const bp__trace_names_t *names, const char *v, size_t len) {
  unsigned char stack[512], *out = stack;
  size_t n = 0;
  char err[8];
  if (!names->edge_base64) {
    bp_span_set_edge_request(span, v, len);
    return;
  }
  if (len == 0) return;
  if (len / 4 * 3 > sizeof stack && !(out = malloc(len / 4 * 3))) return;
  if (bp_config_parse_base64(v, len, out, out == stack ? sizeof stack : len / 4 * 3, &n, err,
                             sizeof err) == BP_OK &&
      n > 0)
    bp_span_set_edge_request(span, (const char *)out, n);
  if (out != stack) free(out);
}

bp_span_t *bp__server_span_start(bp_baseplate_t *bp, const char *name, int trust,
                                 const bp__trace_names_t *names, bp__carrier_get_fn get,
                                 void *carrier, void (*tagger)(bp_span_t *span, void *ud),
                                 void *ud) {
  bp_trace_info_t ti, w3c, *tip = NULL;
  bp_span_t *span;
  int w3c_ok = 0; /* the W3C trace context belongs to the trace continued */
  if (trust) {
    char t[32], sp[32], pa[32], sa[8], fl[32];
    const char *trace = header_str(get, carrier, names->trace, t, sizeof t);
    const char *spid = header_str(get, carrier, names->span, sp, sizeof sp);
    if (trace && spid &&
        bp_trace_info_from_upstream(&ti, trace, header_str(get, carrier, names->parent, pa, sizeof pa),
                                    spid, header_str(get, carrier, names->sampled, sa, sizeof sa),
                                    header_str(get, carrier, names->flags, fl, sizeof fl), NULL,
                                    0) == BP_OK)
      tip = &ti;
    if (names->traceparent) {
      /* W3C, when Baseplate's own headers are absent or invalid; with
       * them, a traceparent of the same trace (as our own clients send)
       * still brings its trace ID's high half and the tracestate along. */
      size_t len;
      const char *tp = get(carrier, names->traceparent, &len);
      if (tp && bp_trace_info_from_traceparent(&w3c, tp, len) == BP_OK) {
        if (!tip) {
          ti = w3c;
          tip = &ti;
          w3c_ok = 1;
        } else if (w3c.trace_id == ti.trace_id) {
          ti.trace_id_high = w3c.trace_id_high;
          w3c_ok = 1;
        }
      }
    }
  }
  if (!(span = bp_span_new_server(bp, name, tip))) return NULL;
  span->proto = names == &bp__http_trace_names     ? BP__SPAN_PROTO_HTTP
                : names == &bp__theader_trace_names ? BP__SPAN_PROTO_THRIFT
                                                    : 0;
  if (trust) {
    size_t len;
    const char *edge = get(carrier, names->edge, &len);
    if (edge) set_edge(span, names, edge, len);
    if (w3c_ok && names->tracestate) {
      const char *ts = get(carrier, names->tracestate, &len);
      if (ts && len) bp_span_set_tracestate(span, ts, len); /* (an invalid one is dropped) */
    }
  }
  bp_span_start(span);
  /* (after the start: an observer that watches tags hears them there, as
   * Baseplate.py's frameworks tag a span once it started) */
  if (tagger) bp__span_defer_tags(span, tagger, ud);
  return span;
}

int bp__server_span_tags_deferred(const bp_span_t *span) { return span->tagger != NULL; }

void bp__server_span_labels(bp_span_t *span, const char *method, int status,
                            const char *endpoint) {
  span->proto_method = method;
  span->proto_endpoint = endpoint;
  span->proto_status = status;
}

void bp__server_span_finish(bp_span_t *span, const char *error) {
  bp_span_finish(span, error);
  if (span->refs > 1) bp__span_settle_tags(span);
  if (bp_span_current() == span) bp_span_enter(NULL);
  bp_span_unref(span);
}
