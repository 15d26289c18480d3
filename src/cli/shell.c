/* baseplate-shell: an interactive Lua shell with the application and a
 * context (with a server span) loaded. The REPL itself is Lua
 * (lua/baseplate/shell.lua), run in a coroutine on the loop; this file parses
 * the command line and provides the console the REPL reads lines from.
 *
 * The console never blocks the loop: on a terminal, libedit's callback
 * interface (rl_callback_read_char) is fed by a uv_poll on stdin, so
 * coroutines that wait keep being served while the user types; on a pipe,
 * stdin is read as a libuv stream. Only a regular file (or another kind of
 * stdin that cannot be polled) is read with plain read(), which does not
 * wait for anybody.
 *
 * The console functions are exported by this executable (ENABLE_EXPORTS) for
 * the Lua side's FFI declarations; libbaseplate itself does not link libedit.
 * A coroutine reads a line with runtime.await: bp_shell_read_line returns
 * BP_AGAIN and the loop wakes the waiter (bp_wake) once the line is there. */
#include <baseplate.h>

#include "args.h"
#include "run.h"
#include "shell.h"

#include <editline/readline.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

enum { MODE_CLOSED, MODE_TTY, MODE_PIPE, MODE_FILE };

static struct {
  int mode;
  int waiter;  /* the coroutine waiting for a line; 0: nobody */
  int reading; /* tty: the line handler is installed / pipe: reading */
  int eof;     /* no more input */
  int result;  /* tty: what the line handler got (BP_OK, BP_ECLOSED) */
  int got_result;
  uv_poll_t poll; /* tty: stdin readable -> rl_callback_read_char */
  uv_pipe_t pipe; /* pipe: stdin as a stream */
  uv_signal_t winch;
  char history_file[4096];
  char *line; /* the line handed to Lua (malloc'd, NUL-terminated) */
  size_t line_len;
  char *buf; /* pipe/file: bytes read, not yet a line */
  size_t buf_len, buf_cap;
} con;

/* The line handed to Lua: `len` bytes of `s`. */
static int set_line(const char *s, size_t len) {
  char *l = realloc(con.line, len + 1);
  if (!l) return BP_ENOMEM;
  memcpy(l, s, len);
  l[len] = '\0';
  con.line = l;
  con.line_len = len;
  return BP_OK;
}

/* pipe/file: take one line out of the buffer (or the rest, at EOF).
 * BP_OK, BP_ECLOSED (nothing left), or BP_AGAIN (need more bytes). */
static int take_line(void) {
  char *nl = con.buf_len ? memchr(con.buf, '\n', con.buf_len) : NULL;
  size_t len, used;
  int rc;
  if (nl) {
    len = (size_t)(nl - con.buf);
    used = len + 1;
  } else if (con.eof && con.buf_len > 0) {
    len = used = con.buf_len;
  } else {
    return con.eof ? BP_ECLOSED : BP_AGAIN;
  }
  if (len > 0 && con.buf[len - 1] == '\r') len--;
  rc = set_line(con.buf, len);
  if (rc != BP_OK) return rc;
  memmove(con.buf, con.buf + used, con.buf_len - used);
  con.buf_len -= used;
  return BP_OK;
}

static int grow(size_t want) {
  if (con.buf_cap - con.buf_len >= want) return BP_OK;
  size_t cap = con.buf_cap ? con.buf_cap : 4096;
  while (cap - con.buf_len < want) cap *= 2;
  char *b = realloc(con.buf, cap);
  if (!b) return BP_ENOMEM;
  con.buf = b;
  con.buf_cap = cap;
  return BP_OK;
}

/* --- a terminal: libedit, driven by the loop --------------------------------------- */

static void on_line(char *line) {
  /* Called from inside rl_callback_read_char: only record it; the waiter is
   * woken once libedit has returned. */
  rl_callback_handler_remove();
  con.reading = 0;
  con.got_result = 1;
  if (!line) {
    con.result = BP_ECLOSED;
    con.eof = 1;
    fputc('\n', stdout); /* Ctrl-D leaves the cursor after the prompt */
    fflush(stdout);
    return;
  }
  con.result = set_line(line, strlen(line));
  free(line);
}

static void wake_reader(int status) {
  int w = con.waiter;
  con.waiter = 0;
  if (w) bp_wake(w, status);
}

/* Tab: the names that complete the word before the cursor, from
 * baseplate.shell's complete() (one a line). This runs inside
 * rl_callback_read_char, in a loop callback, where calling into Lua is
 * allowed. '.' and ':' do not end a word, so "context.ca" is completed as a
 * whole (to "context.cache"). */
#define BP_SHELL_WORD_BREAKS " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]}"

static struct {
  char list[65536]; /* what complete() returned */
  const char *next; /* the next candidate in list */
} comp;

static char *next_completion(const char *text, int state) {
  const char *end;
  char *m;
  if (!comp.next || !*comp.next) return NULL;
  end = strchr(comp.next, '\n');
  if (!end) end = comp.next + strlen(comp.next);
  m = strndup(comp.next, (size_t)(end - comp.next));
  comp.next = *end ? end + 1 : end;
  return m;
}

static char **complete(const char *text, int start, int end) {
  rl_attempted_completion_over = 1; /* never file names */
  if (bp_runtime_call("baseplate.shell", "complete", text, comp.list, sizeof comp.list) != BP_OK ||
      !comp.list[0])
    return NULL;
  comp.next = comp.list;
  return rl_completion_matches(text, next_completion);
}

static void on_tty_readable(uv_poll_t *p, int status, int events) {
  if (!con.reading) return;
  rl_callback_read_char();
  if (con.got_result) {
    con.got_result = 0;
    uv_poll_stop(&con.poll);
    wake_reader(con.result);
  }
}

static void on_winch(uv_signal_t *s, int signum) {
  if (con.reading) rl_resize_terminal();
}

/* --- a pipe: a libuv stream ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  if (grow(4096) != BP_OK) {
    b->base = NULL;
    b->len = 0;
    return;
  }
  b->base = con.buf + con.buf_len;
  b->len = con.buf_cap - con.buf_len;
}

static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  int rc;
  if (n == 0) return;
  if (n < 0) {
    /* UV_EOF, or an error reading stdin: either way, the input is over. */
    con.eof = 1;
  } else {
    con.buf_len += (size_t)n;
  }
  rc = take_line();
  if (rc == BP_AGAIN) return;
  uv_read_stop(s);
  con.reading = 0;
  wake_reader(rc);
}

/* --- the console -------------------------------------------------------------------- */

int bp_shell_console_open(const char *history_file) {
  uv_loop_t *loop = bp_loop();
  if (isatty(0)) {
    con.mode = MODE_TTY;
    /* libuv owns the signals (SIGINT goes to the shell's Lua handler). */
    rl_catch_signals = 0;
    rl_readline_name = "baseplate";
    rl_initialize();
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = BP_SHELL_WORD_BREAKS;
    rl_completer_word_break_characters = (char *)BP_SHELL_WORD_BREAKS;
    rl_completion_append_character = '\0';
    using_history();
    stifle_history(1000);
    if (history_file && *history_file) {
      snprintf(con.history_file, sizeof con.history_file, "%s", history_file);
      read_history(con.history_file);
    }
    uv_poll_init(loop, &con.poll, 0);
    uv_signal_init(loop, &con.winch);
    uv_signal_start(&con.winch, on_winch, SIGWINCH);
    uv_unref((uv_handle_t *)&con.winch);
    return 1;
  }
  if (uv_guess_handle(0) == UV_NAMED_PIPE && uv_pipe_init(loop, &con.pipe, 0) == 0) {
    if (uv_pipe_open(&con.pipe, 0) == 0) {
      con.mode = MODE_PIPE;
      return 0;
    }
    uv_close((uv_handle_t *)&con.pipe, NULL);
  }
  con.mode = MODE_FILE;
  return 0;
}

int bp_shell_read_line(const char *prompt, int waiter) {
  int rc;
  switch (con.mode) {
    case MODE_TTY:
      if (con.eof) return BP_ECLOSED;
      con.waiter = waiter;
      con.reading = 1;
      con.got_result = 0;
      rl_callback_handler_install(prompt, on_line);
      uv_poll_start(&con.poll, UV_READABLE, on_tty_readable);
      return BP_AGAIN;
    case MODE_PIPE:
      rc = take_line();
      if (rc != BP_AGAIN) return rc;
      if ((rc = uv_read_start((uv_stream_t *)&con.pipe, on_alloc, on_pipe_read)) != 0) return rc;
      con.waiter = waiter;
      con.reading = 1;
      return BP_AGAIN;
    case MODE_FILE:
      /* A regular file: read() does not wait for anybody. */
      while ((rc = take_line()) == BP_AGAIN) {
        ssize_t n;
        if (grow(4096) != BP_OK) return BP_ENOMEM;
        n = read(0, con.buf + con.buf_len, con.buf_cap - con.buf_len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          con.eof = 1;
        } else {
          con.buf_len += (size_t)n;
        }
      }
      return rc;
    default:
      return BP_ECLOSED;
  }
}

const char *bp_shell_line(size_t *len) {
  if (len) *len = con.line_len;
  return con.line ? con.line : "";
}

void bp_shell_cancel_read(void) {
  con.waiter = 0;
  if (!con.reading) return;
  con.reading = 0;
  if (con.mode == MODE_TTY) {
    uv_poll_stop(&con.poll);
    /* Removing the handler drops what was typed and restores the terminal;
     * the next read starts on a fresh line. */
    rl_callback_handler_remove();
    fputc('\n', stdout);
    fflush(stdout);
  } else if (con.mode == MODE_PIPE) {
    uv_read_stop((uv_stream_t *)&con.pipe);
  }
}

void bp_shell_add_history(const char *line) {
  if (con.mode != MODE_TTY || !line || !*line) return;
  add_history(line);
  if (con.history_file[0]) write_history(con.history_file);
}

void bp_shell_console_close(void) {
  bp_shell_cancel_read();
  if (con.mode == MODE_TTY) {
    rl_callback_handler_remove();
    uv_close((uv_handle_t *)&con.poll, NULL);
    uv_close((uv_handle_t *)&con.winch, NULL);
    clear_history();
  } else if (con.mode == MODE_PIPE) {
    /* libuv made the pipe non-blocking; leave it as it was given. */
    int flags = fcntl(0, F_GETFL);
    if (flags >= 0) fcntl(0, F_SETFL, flags & ~O_NONBLOCK);
    uv_close((uv_handle_t *)&con.pipe, NULL);
  }
  con.mode = MODE_CLOSED;
}

static void free_console(void) {
  free(con.line);
  free(con.buf);
  con.line = con.buf = NULL;
}

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--debug", NULL, "enable extra-verbose debug logging", NULL},
      {"--app-name", "NAME", "name of app to load from config_file (default: main)", NULL},
  };
  static const char *pos[] = {"config_file"};
  bp_cli_t cli = {
      .prog = "baseplate-shell",
      .usage = "baseplate-shell [-h] [--debug] [--app-name NAME] [--version]\n"
               "                       config_file",
      .description = "Open an interactive Lua shell with the application and a context loaded.",
      .opts = opts,
      .nopts = 2,
      .positional_names = pos,
      .npositional = 1,
  };
  const char *kv[16];
  int code;

  bp_cli_parse(&cli, argc, argv);
  kv[bp_cli_app_opts(kv, cli.positionals[0], opts[1].value, opts[0].value)] = NULL;

  code = bp_cli_run(cli.prog, argv, "baseplate.shell", "main", kv, NULL, 0);
  bp_shell_console_close();
  bp_runtime_close();
  free_console();
  return code;
}
