/* baseplate-lint: luacheck's checks plus W9000 (SQL built by formatting
 * strings). The work is Lua (lua/baseplate/lint.lua), on luacheck's own
 * parser; this parses the command line and runs it. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--no-luacheck", NULL, "only the W9000 check, not luacheck's own", NULL},
  };
  static const char *pos[] = {"path ..."};
  bp_cli_t cli = {
      .prog = "baseplate-lint",
      .usage = "baseplate-lint [-h] [--no-luacheck] [--version] [path ...]",
      .description =
          "Check Lua files (a directory: every *.lua file under it; default .)\n"
          "with luacheck, configured by .luacheckrc, and for SQL built by\n"
          "formatting strings (W9000 no-database-query-string-format).",
      .opts = opts,
      .nopts = 1,
      .positional_names = pos,
      .npositional = 0,
      .rest = 2,
  };
  const char *kv[4];
  int n = 0, code;

  bp_cli_parse(&cli, argc, argv);
  if (opts[0].value) kv[n++] = "no_luacheck", kv[n++] = "1";
  kv[n] = NULL;
  code = bp_cli_run(cli.prog, argv, "baseplate.lint", "main", kv, cli.positionals, cli.npos_found);
  bp_runtime_close();
  return code;
}
