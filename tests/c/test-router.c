/* Route matching (src/app.c): literal and {param} segments, *rest, methods. */
#include <baseplate.h>
#include <string.h>

#include "app.h"
#include "bp-test.h"

static int dummy(bp_request_t *req, void *data) { return BP_OK; }

static char err[256];

static bp_app_t *make(void) {
  bp_app_t *app = bp_app_new();
  CHECK_INT(bp_app_add_route(app, "root", "GET", "/", dummy, NULL, err, sizeof err), BP_OK);
  CHECK_INT(bp_app_add_route(app, "user", "GET", "/users/{id}", dummy, NULL, err, sizeof err), BP_OK);
  CHECK_INT(bp_app_add_route(app, "user_post", "POST", "/users/{id}/posts/{post}", dummy, NULL, err,
                             sizeof err), BP_OK);
  CHECK_INT(bp_app_add_lua_route(app, "files", "*", "/files/*path", 7, err, sizeof err), BP_OK);
  CHECK_INT(bp_app_add_route(app, "create", "PUT", "/users/{id}", dummy, NULL, err, sizeof err), BP_OK);
  return app;
}

static int match(bp_app_t *app, const char *method, const char *path, bp__match_t *m) {
  return bp__app_match(app, method, path, strlen(path), m);
}

static void test_matching(void) {
  bp_app_t *app = make();
  bp__match_t m;
  CHECK_INT(bp_app_route_count(app), 5);
  CHECK_INT(match(app, "GET", "/", &m), 200);
  CHECK_STR(bp__route_name(m.route), "root");
  CHECK_INT(m.nparams, 0);
  CHECK_INT(match(app, "GET", "/users/42", &m), 200);
  CHECK_STR(bp__route_name(m.route), "user");
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "id");
  CHECK_INT(m.params[0].off, 7);
  CHECK_INT(m.params[0].len, 2);
  CHECK_INT(match(app, "POST", "/users/7/posts/99", &m), 200);
  CHECK_STR(bp__route_name(m.route), "user_post");
  CHECK_INT(m.nparams, 2);
  CHECK_STR(m.params[1].name, "post");
  CHECK_INT(match(app, "DELETE", "/files/a/b/c.txt", &m), 200);
  CHECK_STR(bp__route_name(m.route), "files");
  CHECK_INT(bp__route_lua_handler(m.route), 7);
  CHECK_INT(m.params[0].off, 7);
  CHECK_INT(m.params[0].len, 9);
  CHECK_INT(match(app, "GET", "/files/", &m), 200); /* *rest may be empty */
  CHECK_INT(m.params[0].len, 0);
  CHECK_INT(match(app, "HEAD", "/users/1", &m), 200); /* HEAD uses GET routes */
  CHECK_INT(match(app, "PUT", "/users/1", &m), 200);
  CHECK_STR(bp__route_name(m.route), "create");
  bp_app_free(app);
}

static void test_misses(void) {
  bp_app_t *app = make();
  bp__match_t m;
  CHECK_INT(match(app, "GET", "/nope", &m), 404);
  CHECK_INT(match(app, "GET", "/users", &m), 404);
  CHECK_INT(match(app, "GET", "/users/", &m), 404); /* a parameter is never empty */
  CHECK_INT(match(app, "GET", "/users/1/extra", &m), 404);
  CHECK_INT(match(app, "GET", "/users/1/", &m), 404);
  CHECK_INT(match(app, "GET", "/files", &m), 404);
  CHECK_INT(match(app, "DELETE", "/users/1", &m), 405);
  CHECK_STR(m.allow, "GET, HEAD, PUT");
  CHECK_INT(match(app, "POST", "/", &m), 405);
  CHECK_STR(m.allow, "GET, HEAD");
  bp_app_free(app);
}

static void test_bad_patterns(void) {
  bp_app_t *app = bp_app_new();
  CHECK_INT(bp_app_add_route(app, "x", "GET", "nope", dummy, NULL, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "route pattern must start with '/': nope");
  CHECK_INT(bp_app_add_route(app, "x", "GET", "/a/{b", dummy, NULL, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "bad parameter segment in route pattern: /a/{b");
  CHECK_INT(bp_app_add_route(app, "x", "GET", "/a/x{b}", dummy, NULL, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "a parameter must be a whole segment in route pattern: /a/x{b}");
  CHECK_INT(bp_app_add_route(app, "x", "GET", "/*rest/more", dummy, NULL, err, sizeof err), BP_EINVAL);
  CHECK_STR(err, "'*name' must be the last segment of route pattern: /*rest/more");
  CHECK_INT(bp_app_add_route(app, "x", "GET", "/", NULL, NULL, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_app_add_route(app, "", "GET", "/", dummy, NULL, err, sizeof err), BP_EINVAL);
  CHECK_INT(bp_app_route_count(app), 0);
  bp_app_free(app);
  bp_app_free(NULL);
}

int main(void) {
  RUN(test_matching);
  RUN(test_misses);
  RUN(test_bad_patterns);
  return bp_test_summary();
}
