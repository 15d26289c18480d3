/* Applications and their routes. See include/baseplate/http.h. */
#include "app.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEG_LITERAL, SEG_PARAM, SEG_REST };

typedef struct {
  int kind;
  char *text; /* literal text, or parameter name */
  size_t len;
} bp_segment_t;

struct bp_route_s {
  char *name;
  char *method; /* NULL: any */
  char *pattern;
  bp_segment_t *segs;
  int nsegs;
  bp_handler_fn fn;
  void *data;
  int lua_handler;
};

struct bp_app_s {
  bp_route_t *routes;
  int count, cap;
  bp_baseplate_t *baseplate; /* borrowed: spans for every routed request */
  int trust_headers;
};

void bp_app_set_baseplate(bp_app_t *app, bp_baseplate_t *bp, int trust_trace_headers) {
  app->baseplate = bp;
  app->trust_headers = trust_trace_headers;
}

bp_baseplate_t *bp__app_baseplate(const bp_app_t *app, int *trust) {
  if (trust) *trust = app->trust_headers;
  return app->baseplate;
}

bp_app_t *bp_app_new(void) { return calloc(1, sizeof(bp_app_t)); }

static void route_free(bp_route_t *r) {
  for (int i = 0; i < r->nsegs; i++) free(r->segs[i].text);
  free(r->segs);
  free(r->name);
  free(r->method);
  free(r->pattern);
}

void bp_app_free(bp_app_t *app) {
  if (!app) return;
  for (int i = 0; i < app->count; i++) route_free(&app->routes[i]);
  free(app->routes);
  free(app);
}

int bp_app_route_count(const bp_app_t *app) { return app->count; }

static int compile(bp_route_t *r, const char *pattern, char *err, size_t errlen) {
  const char *p = pattern;
  int nparams = 0;

  if (*p != '/') {
    snprintf(err, errlen, "route pattern must start with '/': %s", pattern);
    return BP_EINVAL;
  }
  while (*p == '/') {
    const char *s = ++p, *e = strchr(s, '/');
    bp_segment_t seg;
    if (!e) e = s + strlen(s);
    p = e;
    if (e == s && *e == '\0') break; /* trailing slash, or the root "/" */
    memset(&seg, 0, sizeof seg);
    if (*s == '{') {
      if (e[-1] != '}' || e - s < 3) {
        snprintf(err, errlen, "bad parameter segment in route pattern: %s", pattern);
        return BP_EINVAL;
      }
      seg.kind = SEG_PARAM;
      s++;
      e--;
    } else if (*s == '*') {
      if (*p != '\0' || e - s < 2) {
        snprintf(err, errlen, "'*name' must be the last segment of route pattern: %s", pattern);
        return BP_EINVAL;
      }
      seg.kind = SEG_REST;
      s++;
    } else if (memchr(s, '{', e - s) || memchr(s, '}', e - s)) {
      snprintf(err, errlen, "a parameter must be a whole segment in route pattern: %s", pattern);
      return BP_EINVAL;
    }
    if (seg.kind != SEG_LITERAL && ++nparams > BP_MAX_PARAMS) {
      snprintf(err, errlen, "more than %d parameters in route pattern: %s", BP_MAX_PARAMS, pattern);
      return BP_EINVAL;
    }
    seg.len = e - s;
    if (!(seg.text = strndup(s, seg.len))) return BP_ENOMEM;
    bp_segment_t *n = realloc(r->segs, (r->nsegs + 1) * sizeof *n);
    if (!n) {
      free(seg.text);
      return BP_ENOMEM;
    }
    r->segs = n;
    r->segs[r->nsegs++] = seg;
  }
  return BP_OK;
}

static int add_route(bp_app_t *app, const char *name, const char *method, const char *pattern,
                     bp_handler_fn fn, void *data, int lua_handler, char *err, size_t errlen) {
  bp_route_t r;
  int rc;

  if (!name || !*name || !pattern) {
    snprintf(err, errlen, "a route needs a name and a pattern");
    return BP_EINVAL;
  }
  memset(&r, 0, sizeof r);
  r.fn = fn;
  r.data = data;
  r.lua_handler = lua_handler;
  if (!(r.name = strdup(name)) || !(r.pattern = strdup(pattern)) ||
      (method && strcmp(method, "*") != 0 && !(r.method = strdup(method)))) {
    route_free(&r);
    return BP_ENOMEM;
  }
  if ((rc = compile(&r, pattern, err, errlen)) != BP_OK) {
    route_free(&r);
    return rc;
  }
  if (app->count == app->cap) {
    int cap = app->cap ? app->cap * 2 : 8;
    bp_route_t *n = realloc(app->routes, cap * sizeof *n);
    if (!n) {
      route_free(&r);
      return BP_ENOMEM;
    }
    app->routes = n;
    app->cap = cap;
  }
  app->routes[app->count++] = r;
  return BP_OK;
}

int bp_app_add_route(bp_app_t *app, const char *name, const char *method, const char *pattern,
                     bp_handler_fn fn, void *data, char *err, size_t errlen) {
  if (!fn) {
    snprintf(err, errlen, "route %s: no handler", name ? name : "?");
    return BP_EINVAL;
  }
  return add_route(app, name, method, pattern, fn, data, -1, err, errlen);
}

int bp_app_add_lua_route(bp_app_t *app, const char *name, const char *method,
                         const char *pattern, int lua_handler, char *err, size_t errlen) {
  return add_route(app, name, method, pattern, NULL, NULL, lua_handler, err, errlen);
}

static int match_pattern(const bp_route_t *r, const char *path, size_t len, bp__match_t *m) {
  size_t pos = 0;
  int np = 0;

  for (int i = 0; i < r->nsegs; i++) {
    const bp_segment_t *seg = &r->segs[i];
    size_t start, end;
    if (pos >= len || path[pos] != '/') return 0;
    start = pos + 1;
    if (seg->kind == SEG_REST) {
      m->params[np].name = seg->text;
      m->params[np].off = start;
      m->params[np].len = len - start;
      m->nparams = ++np;
      return 1;
    }
    end = start;
    while (end < len && path[end] != '/') end++;
    if (seg->kind == SEG_LITERAL) {
      if (end - start != seg->len || memcmp(path + start, seg->text, seg->len) != 0) return 0;
    } else {
      if (end == start) return 0; /* a parameter matches a non-empty segment */
      m->params[np].name = seg->text;
      m->params[np].off = start;
      m->params[np].len = end - start;
      np++;
    }
    pos = end;
  }
  /* All segments matched: the path must end here (a bare "/" for the root). */
  if (!(pos == len || (r->nsegs == 0 && len == 1 && path[0] == '/'))) return 0;
  m->nparams = np;
  return 1;
}

static int method_ok(const bp_route_t *r, const char *method) {
  if (!r->method) return 1;
  if (strcmp(r->method, method) == 0) return 1;
  return strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
}

int bp__app_match(const bp_app_t *app, const char *method, const char *path, size_t len,
                  bp__match_t *m) {
  int found_path = 0;
  size_t alen = 0;

  m->route = NULL;
  m->nparams = 0;
  m->allow[0] = '\0';
  for (int i = 0; i < app->count; i++) {
    const bp_route_t *r = &app->routes[i];
    if (!match_pattern(r, path, len, m)) continue;
    if (method_ok(r, method)) {
      m->route = r;
      return 200;
    }
    found_path = 1;
    size_t ml = strlen(r->method);
    if (!strstr(m->allow, r->method) && alen + ml + 3 < sizeof m->allow) {
      if (alen) memcpy(m->allow + alen, ", ", 2), alen += 2;
      memcpy(m->allow + alen, r->method, ml + 1);
      alen += ml;
      if (strcmp(r->method, "GET") == 0 && alen + 7 < sizeof m->allow)
        memcpy(m->allow + alen, ", HEAD", 7), alen += 6;
    }
  }
  m->nparams = 0;
  return found_path ? 405 : 404;
}

const char *bp_app_find_route(const bp_app_t *app, const char *method, const char *path) {
  bp__match_t m;
  if (bp__app_match(app, method, path, strlen(path), &m) != 200) return NULL;
  return m.route->name;
}

const char *bp__route_name(const bp_route_t *r) { return r->name; }
const char *bp__route_pattern(const bp_route_t *r) { return r->pattern; }

bp_handler_fn bp__route_handler(const bp_route_t *r, void **data) {
  *data = r->data;
  return r->fn;
}

int bp__route_lua_handler(const bp_route_t *r) { return r->lua_handler; }
