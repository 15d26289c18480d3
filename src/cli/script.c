/* baseplate-script: run module:function(app_config, args) with the
 * application's configuration loaded. The work is Lua
 * (lua/baseplate/script.lua), run in a coroutine on the loop; this parses
 * the command line, creates the runtime and runs the loop. */
#include <baseplate.h>

#include "args.h"

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--debug", NULL, "enable extra-verbose debug logging", NULL},
      {"--app-name", "NAME", "name of app to load from config_file (default: main)", NULL},
  };
  static const char *pos[] = {"config_file", "entrypoint"};
  bp_cli_t cli = {
      .prog = "baseplate-script",
      .usage =
          "baseplate-script [-h] [--debug] [--app-name NAME]\n"
          "                        config_file entrypoint ...",
      .description =
          "Run a function with app configuration loaded: entrypoint is\n"
          "module:function, called as function(app_config, args) with the\n"
          "arguments that follow it.",
      .opts = opts,
      .nopts = 2,
      .positional_names = pos,
      .npositional = 2,
      .rest = 1,
  };
  const char *kv[16];
  int n = 0, code;
  char err[4096];

  bp_cli_parse(&cli, argc, argv);
  kv[n++] = "config_file";
  kv[n++] = cli.positionals[0];
  kv[n++] = "entrypoint";
  kv[n++] = cli.positionals[1];
  kv[n++] = "app_name";
  kv[n++] = opts[1].value ? opts[1].value : "main";
  if (opts[0].value) kv[n++] = "debug", kv[n++] = "1";
  kv[n] = NULL;

  bp_runtime_set_argv(argv);
  if (bp_runtime_open(NULL, err, sizeof err) != BP_OK) {
    fprintf(stderr, "baseplate-script: %s\n", err);
    return 1;
  }
  code = bp_runtime_main("baseplate.script", "main", kv, cli.positionals + 2, cli.npos_found - 2,
                         err, sizeof err);
  if (code != 0 && err[0]) fprintf(stderr, "baseplate-script: error: %s\n", err);
  bp_runtime_close();
  return code;
}
