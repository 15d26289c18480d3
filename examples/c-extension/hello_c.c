/*
 * A baseplate application written in C, against the public C API only.
 *
 *   factory = hello_c:make_app      (in examples/c-extension/hello_c.ini)
 *
 * baseplate-serve finds hello_c.so on package.cpath (the current directory
 * first), checks BP_MODULE()'s ABI stamp and calls make_app with the
 * [app:main] section.
 */
#include <baseplate.h>
#include <stdio.h>
#include <string.h>

BP_MODULE();

typedef struct {
  char greeting[128];
} hello_t;

static hello_t hello = {"World"};

/* GET / -> {"Hello": "<greeting>"} */
static int hello_world(bp_request_t *req, void *data) {
  const hello_t *h = data;
  char body[256];
  int n = snprintf(body, sizeof body, "{\"Hello\":\"%s\"}", h->greeting);
  return bp_response_send(req, 200, "application/json", body, (size_t)n);
}

/* GET /echo/{word} -> the word, and the X-Request header when given */
static int echo(bp_request_t *req, void *data) {
  const char *name, *value, *hdr;
  size_t len, hlen;
  char body[512];
  int n;
  if (bp_request_param_at(req, 0, &name, &value, &len) != BP_OK) return BP_ERROR;
  hdr = bp_request_header(req, "X-Request", &hlen);
  n = snprintf(body, sizeof body, "%s=%.*s%s%.*s\n", name, (int)len, value, hdr ? " " : "",
               hdr ? (int)hlen : 0, hdr ? hdr : "");
  bp_response_header(req, "X-Handler", 9, "c", 1);
  return bp_response_send(req, 200, "text/plain", body, (size_t)n);
}

__attribute__((visibility("default"))) int make_app(bp_app_t *app, const bp_section_t *config,
                                                    char *err, size_t errlen) {
  const char *greeting = bp_section_get(config, "greeting");
  int rc;
  if (greeting) {
    if (strlen(greeting) >= sizeof hello.greeting || strpbrk(greeting, "\"\\")) {
      snprintf(err, errlen, "greeting: must be under 128 characters, without quotes");
      return BP_EINVAL;
    }
    strcpy(hello.greeting, greeting);
  }
  bp_log(BP_LOG_INFO, "hello_c", "C application ready, greeting %s", hello.greeting);
  rc = bp_app_add_route(app, "hello_world", "GET", "/", hello_world, &hello, err, errlen);
  if (rc == BP_OK) rc = bp_app_add_route(app, "echo", "GET", "/echo/{word}", echo, NULL, err, errlen);
  return rc;
}
