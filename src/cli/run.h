/* What baseplate-serve, -script and -shell share around the runtime
 * (header-only: each tool is one translation unit). */
#ifndef BP_CLI_RUN_H
#define BP_CLI_RUN_H

#include <baseplate.h>
#include <stdio.h>

/* The options every tool hands its Lua main: config_file, app_name (default
 * "main") and, when given, debug. Returns how many strings it wrote to kv. */
static inline int bp_cli_app_opts(const char **kv, const char *config_file, const char *app_name,
                                  const char *debug) {
  int n = 0;
  kv[n++] = "config_file";
  kv[n++] = config_file;
  kv[n++] = "app_name";
  kv[n++] = app_name ? app_name : "main";
  if (debug) kv[n++] = "debug", kv[n++] = "1";
  return n;
}

/* Open the runtime and run Lua module.fn(opts) on the loop, with `rest` as
 * opts.args; failures go to stderr as "PROG: …". Returns the exit status.
 * The caller closes the runtime (bp_runtime_close) either way. */
static inline int bp_cli_run(const char *prog, char **argv, const char *module, const char *fn,
                             const char *const *kv, const char *const *rest, int nrest) {
  char err[4096];
  int code;
  bp_runtime_set_argv(argv);
  if (bp_runtime_open(NULL, err, sizeof err) != BP_OK) {
    fprintf(stderr, "%s: %s\n", prog, err);
    return 1;
  }
  code = bp_runtime_main(module, fn, kv, rest, nrest, err, sizeof err);
  if (code != 0 && err[0]) fprintf(stderr, "%s: error: %s\n", prog, err);
  return code;
}

#endif
