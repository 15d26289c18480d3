/* baseplate-shell's console: exported by the baseplate-shell executable for
 * lua/baseplate/shell.lua (libbaseplate does not link libedit). Never
 * installed. */
#ifndef BASEPLATE_CLI_SHELL_H
#define BASEPLATE_CLI_SHELL_H

#include <stddef.h>

#define BP_SHELL_API __attribute__((visibility("default")))

/* Get stdin ready for reading lines: line editing and `history_file` (NULL:
 * none) when it is a terminal. 1 for a terminal, 0 otherwise. */
BP_SHELL_API int bp_shell_console_open(const char *history_file);

/* Read one line (the prompt is shown on a terminal only): BP_OK when a line
 * is ready now, BP_ECLOSED at the end of input, or BP_AGAIN and `waiter` is
 * woken with one of those later; another negative status on failure. */
BP_SHELL_API int bp_shell_read_line(const char *prompt, int waiter);

/* The line read last (without its newline) and its length; valid until the
 * next read. */
BP_SHELL_API const char *bp_shell_line(size_t *len);

/* Abandon the read in progress (Ctrl-C): what was typed is dropped and the
 * waiter is not woken (the caller wakes it). */
BP_SHELL_API void bp_shell_cancel_read(void);

/* Add a line to the history and the history file. */
BP_SHELL_API void bp_shell_add_history(const char *line);

/* Restore the terminal, stop reading stdin. */
BP_SHELL_API void bp_shell_console_close(void);

#endif
