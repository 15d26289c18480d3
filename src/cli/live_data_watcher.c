/* baseplate-live-data-watcher: the sidecar that keeps local files in step
 * with ZooKeeper nodes, as Baseplate.py's baseplate.sidecars.live_data_watcher
 * (docs/live-data.md). The work is Lua
 * (lua/baseplate/sidecars/live_data_watcher.lua) on the loop, over the
 * ZooKeeper client (src/clients/zookeeper.c); this parses the command line. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--debug", NULL, "enable debug logging", NULL},
  };
  static const char *pos[] = {"config_file"};
  bp_cli_t cli = {
      .prog = "baseplate-live-data-watcher",
      .usage = "baseplate-live-data-watcher [-h] [--debug] [--version] config_file",
      .description = "Watch nodes in ZooKeeper and sync their contents to disk on change.\n\n"
                     "config_file is an INI file with a [live-data] section.",
      .opts = opts,
      .nopts = 1,
      .positional_names = pos,
      .npositional = 1,
  };
  const char *kv[6];
  int n = 0, code;

  bp_cli_parse(&cli, argc, argv);
  kv[n++] = "config_file";
  kv[n++] = cli.positionals[0];
  if (opts[0].value) kv[n++] = "debug", kv[n++] = "1";
  kv[n] = NULL;
  code = bp_cli_run(cli.prog, argv, "baseplate.sidecars.live_data_watcher", "main", kv, NULL, 0);
  bp_runtime_close();
  return code;
}
