/* A small argparse look-alike shared by the bundled tools (header-only: each
 * tool is one translation unit). Errors print the usage and
 * "PROG: error: …" on stderr and exit 2, as Python's argparse does. Every
 * tool has -h/--help and --version ("PROG VERSION" on stdout, exit 0, as
 * argparse's action="version"); its usage text lists [--version] after its
 * own options. */
#ifndef BP_CLI_ARGS_H
#define BP_CLI_ARGS_H

#include <baseplate/common.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;  /* "--app-name" */
  const char *metavar; /* NULL: a flag */
  const char *help;
  const char *value; /* result: the value, or "1" for a flag given */
} bp_cli_opt_t;

typedef struct {
  const char *prog;
  const char *usage; /* the text after "usage: " */
  const char *description;
  bp_cli_opt_t *opts;
  int nopts;
  const char **positional_names;
  int npositional; /* required positionals */
  int rest;        /* 1: extra positionals after the required ones are kept, and
                      everything after them is the program's (options too);
                      2: extra positionals kept, options recognised anywhere */
  const char **positionals;
  int npos_found;
} bp_cli_t;

static void bp_cli_usage(const bp_cli_t *c, FILE *f) { fprintf(f, "usage: %s\n", c->usage); }

static void bp_cli_fail(const bp_cli_t *c, const char *fmt, const char *arg) {
  bp_cli_usage(c, stderr);
  fprintf(stderr, "%s: error: ", c->prog);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(2);
}

static void bp_cli_help(const bp_cli_t *c) {
  bp_cli_usage(c, stdout);
  printf("\n%s\n\npositional arguments:\n", c->description);
  for (int i = 0; i < c->npositional + (c->rest == 2); i++) printf("  %s\n", c->positional_names[i]);
  printf("\noptions:\n  -h, --help            show this help message and exit\n");
  for (int i = 0; i < c->nopts; i++) {
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", c->opts[i].name, c->opts[i].metavar ? " " : "",
             c->opts[i].metavar ? c->opts[i].metavar : "");
    printf("  %-21s %s\n", left, c->opts[i].help);
  }
  printf("  %-21s %s\n", "--version", "show program's version number and exit");
  exit(0);
}

static void bp_cli_parse(bp_cli_t *c, int argc, char **argv) {
  static const char *pos[256];
  int only_positional = 0;
  c->positionals = pos;
  c->npos_found = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_positional && c->rest == 1 && c->npos_found >= c->npositional) {
      /* after the required positionals, everything belongs to the program */
    } else if (!only_positional && strcmp(a, "--") == 0) {
      only_positional = 1;
      continue;
    } else if (!only_positional && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
      bp_cli_help(c);
    } else if (!only_positional && strcmp(a, "--version") == 0) {
      printf("%s %s\n", c->prog, bp_version_string());
      exit(0);
    } else if (!only_positional && a[0] == '-' && a[1] != '\0') {
      const char *eq = strchr(a, '=');
      size_t n = eq ? (size_t)(eq - a) : strlen(a);
      int found = -1;
      for (int j = 0; j < c->nopts; j++)
        if (strlen(c->opts[j].name) == n && strncmp(c->opts[j].name, a, n) == 0) found = j;
      if (found < 0) bp_cli_fail(c, "unrecognized arguments: %s", a);
      bp_cli_opt_t *o = &c->opts[found];
      if (!o->metavar) {
        if (eq) bp_cli_fail(c, "argument %s: ignored explicit argument", o->name);
        o->value = "1";
      } else if (eq) {
        o->value = eq + 1;
      } else if (i + 1 < argc) {
        o->value = argv[++i];
      } else {
        static char msg[128];
        snprintf(msg, sizeof msg, "argument %s: expected one argument", o->name);
        bp_cli_fail(c, "%s", msg);
      }
      continue;
    }
    if (c->npos_found >= (int)(sizeof pos / sizeof pos[0])) bp_cli_fail(c, "too many arguments%s", "");
    if (!c->rest && c->npos_found >= c->npositional) bp_cli_fail(c, "unrecognized arguments: %s", a);
    pos[c->npos_found++] = a;
  }
  if (c->npositional > 0 && c->npos_found < c->npositional) {
    static char missing[256];
    missing[0] = '\0';
    for (int i = c->npos_found; i < c->npositional; i++) {
      if (missing[0]) strncat(missing, ", ", sizeof missing - strlen(missing) - 1);
      strncat(missing, c->positional_names[i], sizeof missing - strlen(missing) - 1);
    }
    bp_cli_fail(c, "the following arguments are required: %s", missing);
  }
}

#endif
