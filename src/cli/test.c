/* baseplate-test: busted, run inside the runtime so that specs run on the
 * event loop and may wait (lua/baseplate/test_runner.lua). Every argument
 * is busted's. */
#include <baseplate.h>

#include "run.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  const char *kv[1] = {NULL};
  int code;
  if (argc > 1 && (strcmp(argv[1], "--version") == 0)) {
    printf("baseplate-test %s\n", bp_version_string());
    return 0;
  }
  code = bp_cli_run("baseplate-test", argv, "baseplate.test_runner", "main", kv,
                    (const char *const *)argv + 1, argc - 1);
  bp_runtime_close();
  return code;
}
