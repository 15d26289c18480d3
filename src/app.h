/* Private: route matching, used by the HTTP server. */
#ifndef BASEPLATE_APP_H
#define BASEPLATE_APP_H

#include "baseplate/http.h"
#include "baseplate/span.h"

#define BP_MAX_PARAMS 16

typedef struct bp_route_s bp_route_t;

typedef struct {
  const char *name;  /* NUL-terminated, owned by the route */
  size_t off, len;   /* into the path */
} bp__param_t;

typedef struct {
  const bp_route_t *route;
  int nparams;
  bp__param_t params[BP_MAX_PARAMS];
  char allow[128]; /* for 405: methods of the routes whose pattern matched */
} bp__match_t;

/* 200 when a route matched (m->route set), 404 when no pattern matched, 405
 * when patterns matched but not for this method (m->allow lists methods). */
int bp__app_match(const bp_app_t *app, const char *method, const char *path, size_t len,
                  bp__match_t *m);

const char *bp__route_name(const bp_route_t *r);
const char *bp__route_pattern(const bp_route_t *r);
bp_handler_fn bp__route_handler(const bp_route_t *r, void **data);
int bp__route_lua_handler(const bp_route_t *r); /* -1 for C routes */

/* The Baseplate set by bp_app_set_baseplate (NULL: no spans). */
bp_baseplate_t *bp__app_baseplate(const bp_app_t *app, int *trust);

#endif
