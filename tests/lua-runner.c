/* bp-lua-test FILE: run a Lua test file inside the baseplate runtime (the same
 * Lua state, package paths and event loop as baseplate-serve), in a coroutine,
 * so tests can sleep and use clients. Exit 0 when the file ran without error. */
#include <baseplate.h>
#include <stdio.h>

int main(int argc, char **argv) {
  char err[8192];
  int code;
  if (argc < 2) {
    fprintf(stderr, "usage: bp-lua-test FILE [ARGS...]\n");
    return 2;
  }
  if (bp_runtime_open(BP_TESTS_LUA_DIR "/?.lua;", err, sizeof err) != BP_OK) {
    fprintf(stderr, "bp-lua-test: %s\n", err);
    return 1;
  }
  code = bp_runtime_main("runner", "run", NULL, (const char *const *)argv + 1, argc - 1, err,
                         sizeof err);
  if (code != 0) fprintf(stderr, "bp-lua-test: %s\n", err[0] ? err : "failed");
  bp_runtime_close();
  return code;
}
