/* baseplate-event-publisher: the sidecar that sends the events of a POSIX
 * queue (/events-QUEUE_NAME, written by baseplate.lib.events) to the event
 * collector, as Baseplate.py's baseplate.sidecars.event_publisher
 * (docs/event-publisher.md). The work is Lua
 * (lua/baseplate/sidecars/event_publisher.lua), run in a coroutine on the
 * loop with the project's HTTP client; this parses the command line. */
#include <baseplate.h>

#include "args.h"
#include "run.h"

#include <string.h>

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--queue-name", "QUEUE_NAME", "name of event queue / publisher config (default: main)", NULL},
      {"--debug", NULL, "enable debug logging", NULL},
      {"--app-name", "NAME", "accepted for Baseplate.py's command lines; unused", NULL},
  };
  static const char *pos[] = {"config_file"};
  bp_cli_t cli = {
      .prog = "baseplate-event-publisher",
      .usage = "baseplate-event-publisher [-h] [--queue-name QUEUE_NAME] [--debug]\n"
               "                                 [--app-name NAME] [--version]\n"
               "                                 config_file",
      .description = "Publish the events of an event queue to the event collector.\n\n"
                     "config_file is an INI file with an [event-publisher:QUEUE_NAME] section.",
      .opts = opts,
      .nopts = 3,
      .positional_names = pos,
      .npositional = 1,
  };
  const char *kv[12];
  const char *queue_name;
  int n = 0, code;

  bp_cli_parse(&cli, argc, argv);
  queue_name = opts[0].value ? opts[0].value : "main";
  if (!*queue_name || strchr(queue_name, '/') || strlen(queue_name) > 200)
    bp_cli_fail(&cli, "argument --queue-name: invalid queue name '%s'", queue_name);
  kv[n++] = "config_file";
  kv[n++] = cli.positionals[0];
  kv[n++] = "queue_name";
  kv[n++] = queue_name;
  if (opts[1].value) kv[n++] = "debug", kv[n++] = "1";
  kv[n] = NULL;
  code = bp_cli_run(cli.prog, argv, "baseplate.sidecars.event_publisher", "main", kv, NULL, 0);
  bp_runtime_close();
  return code;
}
