/* baseplate-serve: run an application with one of the servers. The start-up
 * sequence itself is Lua (lua/baseplate/server/init.lua); this parses the
 * command line, creates the runtime and runs the loop. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--debug", NULL, "enable extra-verbose debug logging", NULL},
      {"--reload", NULL, "restart the server when Lua files in the working directory change", NULL},
      {"--app-name", "NAME", "name of app to load from config_file (default: main)", NULL},
      {"--server-name", "NAME", "name of server to load from config_file (default: main)", NULL},
      {"--bind", "ENDPOINT", "endpoint to bind to (default: 127.0.0.1:9090)", NULL},
      {"--workers", "N", "number of worker processes (default: [server] workers, or 1)", NULL},
  };
  static const char *pos[] = {"config_file"};
  bp_cli_t cli = {
      .prog = "baseplate-serve",
      .usage = "baseplate-serve [-h] [--debug] [--reload] [--app-name NAME]\n"
               "                      [--server-name NAME] [--bind ENDPOINT]\n"
               "                      [--workers N] [--version] config_file",
      .description = "Run a service.",
      .opts = opts,
      .nopts = 6,
      .positional_names = pos,
      .npositional = 1,
  };
  const char *kv[16];
  int n, code;

  bp_cli_parse(&cli, argc, argv);
  n = bp_cli_app_opts(kv, cli.positionals[0], opts[2].value, opts[0].value);
  kv[n++] = "server_name";
  kv[n++] = opts[3].value ? opts[3].value : "main";
  if (opts[4].value) kv[n++] = "bind", kv[n++] = opts[4].value;
  if (opts[5].value) kv[n++] = "workers", kv[n++] = opts[5].value;
  if (opts[1].value) kv[n++] = "reload", kv[n++] = "1";
  kv[n] = NULL;

  code = bp_cli_run(cli.prog, argv, "baseplate.server", "serve", kv, NULL, 0);
  bp_runtime_close();
  if (bp_runtime_restart_requested()) {
    /* --reload: start again with the same command line (same PID). */
    fflush(NULL);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "baseplate-serve: error: cannot restart: %s\n", strerror(errno));
    return 1;
  }
  return code;
}
