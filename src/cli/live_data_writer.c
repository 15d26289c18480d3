/* baseplate-live-data-writer: write a file's contents to a ZooKeeper node,
 * as Baseplate.py's baseplate.lib.live_data.writer (docs/live-data.md). The
 * work is Lua (lua/baseplate/lib/live_data/writer.lua) on the loop; this
 * parses the command line. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--debug", NULL, "enable debug logging", NULL},
      {"--dry-run", NULL, "show the difference, write nothing", NULL},
      {"--yes", NULL, "write without asking for confirmation", NULL},
      {"--create", NULL, "create the node when it does not exist", NULL},
  };
  static const char *pos[] = {"config_file", "source", "dest"};
  bp_cli_t cli = {
      .prog = "baseplate-live-data-writer",
      .usage = "baseplate-live-data-writer [-h] [--debug] [--dry-run] [--yes] [--create]\n"
               "                                  [--version] config_file source dest",
      .description = "Write a file's contents to a node in ZooKeeper.\n\n"
                     "config_file is an INI file with a [live-data] section; source is the\n"
                     "file to upload (- for stdin), dest the path in ZooKeeper.",
      .opts = opts,
      .nopts = 4,
      .positional_names = pos,
      .npositional = 3,
  };
  const char *kv[20];
  int n = 0, code;

  bp_cli_parse(&cli, argc, argv);
  kv[n++] = "config_file";
  kv[n++] = cli.positionals[0];
  kv[n++] = "source";
  kv[n++] = cli.positionals[1];
  kv[n++] = "dest";
  kv[n++] = cli.positionals[2];
  if (opts[0].value) kv[n++] = "debug", kv[n++] = "1";
  if (opts[1].value) kv[n++] = "dry_run", kv[n++] = "1";
  if (opts[2].value) kv[n++] = "yes", kv[n++] = "1";
  if (opts[3].value) kv[n++] = "create", kv[n++] = "1";
  kv[n] = NULL;
  code = bp_cli_run(cli.prog, argv, "baseplate.lib.live_data.writer", "main", kv, NULL, 0);
  bp_runtime_close();
  return code;
}
