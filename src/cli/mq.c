/* baseplate-mq: create, read or write a POSIX message queue from the
 * command line, as Baseplate.py's `python -m baseplate.lib.message_queue`
 * (docs/lib-message-queue.md). The work is Lua
 * (lua/baseplate/lib/message_queue.lua, tool_main), run in a coroutine on
 * the loop; this parses the command line. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--max-messages", "MAX_MESSAGES",
       "if creating the queue, what to set the maximum queue length to (default: 10)", NULL},
      {"--max-message-size", "MAX_MESSAGE_SIZE",
       "if creating the queue, what to set the maximum message size to (default: 8096)", NULL},
      {"--create", NULL, "create the named queue if it doesn't exist and exit", NULL},
      {"--read", NULL, "read, log, and discard messages from the named queue", NULL},
      {"--write", NULL, "read messages from stdin and write them to the named queue", NULL},
  };
  static const char *pos[] = {"queue_name"};
  bp_cli_t cli = {
      .prog = "baseplate-mq",
      .usage = "baseplate-mq [-h] [--max-messages MAX_MESSAGES]\n"
               "                    [--max-message-size MAX_MESSAGE_SIZE]\n"
               "                    (--create | --read | --write) [--version]\n"
               "                    queue_name",
      .description = "Create a POSIX message queue, print the messages it receives (one a\n"
                     "line), or write the lines of stdin to it (one message each).",
      .opts = opts,
      .nopts = 5,
      .positional_names = pos,
      .npositional = 1,
      .rest = 0,
  };
  const char *kv[16];
  const char *mode = NULL;
  int n = 0, code, modes = 0;

  bp_cli_parse(&cli, argc, argv);
  for (int i = 2; i < 5; i++)
    if (opts[i].value) {
      if (modes++) bp_cli_fail(&cli, "argument %s: not allowed with another mode", opts[i].name);
      mode = opts[i].name + 2;
    }
  if (!mode) bp_cli_fail(&cli, "%s", "one of the arguments --create --read --write is required");
  kv[n++] = "queue_name";
  kv[n++] = cli.positionals[0];
  kv[n++] = "mode";
  kv[n++] = mode;
  if (opts[0].value) kv[n++] = "max_messages", kv[n++] = opts[0].value;
  if (opts[1].value) kv[n++] = "max_message_size", kv[n++] = opts[1].value;
  kv[n] = NULL;
  code = bp_cli_run(cli.prog, argv, "baseplate.lib.message_queue", "tool_main", kv, NULL, 0);
  bp_runtime_close();
  return code;
}
