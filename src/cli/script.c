/* baseplate-script: run module:function(app_config, args) with the
 * application's configuration loaded. The work is Lua
 * (lua/baseplate/script.lua), run in a coroutine on the loop; this parses
 * the command line, creates the runtime and runs the loop. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--debug", NULL, "enable extra-verbose debug logging", NULL},
      {"--app-name", "NAME", "name of app to load from config_file (default: main)", NULL},
  };
  static const char *pos[] = {"config_file", "entrypoint"};
  bp_cli_t cli = {
      .prog = "baseplate-script",
      .usage =
          "baseplate-script [-h] [--debug] [--app-name NAME] [--version]\n"
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
  int n, code;

  bp_cli_parse(&cli, argc, argv);
  n = bp_cli_app_opts(kv, cli.positionals[0], opts[1].value, opts[0].value);
  kv[n++] = "entrypoint";
  kv[n++] = cli.positionals[1];
  kv[n] = NULL;

  code = bp_cli_run(cli.prog, argv, "baseplate.script", "main", kv, cli.positionals + 2,
                    cli.npos_found - 2);
  bp_runtime_close();
  return code;
}
