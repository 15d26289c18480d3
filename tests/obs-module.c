/*
 * A C extension module for the observer tests (tests/lua/test-observer-bus.lua,
 * tests/integration/test-observers.sh), against the public C API only:
 * an observer factory added to the registry, and C routes whose spans the
 * Lua observers must see.
 */
#include <baseplate.h>
#include <stdio.h>
#include <string.h>

BP_MODULE();

#define EXPORT __attribute__((visibility("default")))

typedef struct {
  char label[64];
  int spans;
} counter_t;

static counter_t counters[8];
static int ncounters, released;

static void count_span(void *ud, bp_span_t *span) {
  counter_t *c = ud;
  (void)span;
  c->spans++;
}

static void count_release(void *ud) {
  (void)ud;
  released++;
}

/* countobs.label = NAME: count the server spans; countobs.enabled = false:
 * leave it off; a label "bad" is refused. */
static int countobs_create(void *ud, bp_baseplate_t *bp, const bp_section_t *config, char *err,
                           size_t errlen) {
  const char *label = bp_section_get(config, "countobs.label");
  const char *enabled = bp_section_get(config, "countobs.enabled");
  bp_observer_t vt = {.on_server_span_created = count_span, .release = count_release};
  counter_t *c;
  (void)ud;
  if (enabled && strcmp(enabled, "false") == 0) return BP_DECLINED;
  if (!label || strcmp(label, "bad") == 0 || strlen(label) >= sizeof c->label) {
    snprintf(err, errlen, "countobs.label: must be set, shorter than 64 bytes and not \"bad\"");
    return BP_EINVAL;
  }
  if (ncounters == 8) return BP_ETOOBIG;
  c = &counters[ncounters++];
  snprintf(c->label, sizeof c->label, "%s", label);
  c->spans = 0;
  return bp_baseplate_register(bp, &vt, c);
}

EXPORT int obs_module_register(void) {
  bp_observer_factory_t f = {.name = "countobs", .prefix = "countobs.", .create = countobs_create};
  return bp_observer_factory_register(&f);
}

/* The spans the observer labelled `label` counted (-1: no such observer). */
EXPORT int obs_module_spans(const char *label) {
  for (int i = ncounters - 1; i >= 0; i--)
    if (strcmp(counters[i].label, label) == 0) return counters[i].spans;
  return -1;
}

EXPORT int obs_module_released(void) { return released; }

static int c_ok(bp_request_t *req, void *data) {
  (void)data;
  return bp_response_send(req, 200, "text/plain", "ok\n", 3);
}

static int c_unavailable(bp_request_t *req, void *data) {
  (void)data;
  return bp_response_send(req, 503, "text/plain", "later\n", 6);
}

/* C routes on a Lua app: GET /c/ok (200) and GET /c/unavailable (503). */
EXPORT int obs_module_add_routes(bp_app_t *app) {
  char err[256];
  int rc = bp_app_add_route(app, "c_ok", "GET", "/c/ok", c_ok, NULL, err, sizeof err);
  if (rc == BP_OK)
    rc = bp_app_add_route(app, "c_unavailable", "GET", "/c/unavailable", c_unavailable, NULL, err,
                          sizeof err);
  return rc;
}
