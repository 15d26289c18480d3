/*
 * Logging: one facility for the C core, C modules and Lua (baseplate.log).
 *
 * Lines go to stdout: one JSON object per line when stdout is not a TTY,
 * "LEVEL    message" when it is. Loggers are named with dots ("baseplate.server");
 * a logger's level is the level set for its longest configured prefix, else
 * the root level (INFO, or DEBUG with --debug).
 */
#ifndef BASEPLATE_LOG_H
#define BASEPLATE_LOG_H

#include "common.h"

/* Levels, numbered as Python's logging numbers them. */
#define BP_LOG_DEBUG 10
#define BP_LOG_INFO 20
#define BP_LOG_WARNING 30
#define BP_LOG_ERROR 40
#define BP_LOG_CRITICAL 50

#define BP_LOG_FORMAT_AUTO 0 /* JSON unless stdout is a TTY */
#define BP_LOG_FORMAT_JSON 1
#define BP_LOG_FORMAT_TEXT 2

/** Whether a message at `level` from `logger` would be written. */
BP_EXTERN int bp_log_enabled(const char *logger, int level);

/** printf-style logging from C. `logger` may be NULL (root). */
BP_EXTERN void bp_log(int level, const char *logger, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Write one record. Every string is (pointer, length) and may contain any
 * bytes (escaped in JSON). `module`/`exc_info` may be NULL. `extra` is NULL
 * or the inside of a JSON object ("\"k\": 1, \"x\": \"y\"") appended as-is.
 * This is the entry point Lua's baseplate.log uses.
 */
BP_EXTERN void bp_log_write(int level, const char *logger, size_t logger_len,
                            const char *msg, size_t msg_len, const char *module,
                            int lineno, const char *exc_info, const char *extra);

/** Set the level of `logger` ("" or NULL for the root). */
BP_EXTERN int bp_log_set_level(const char *logger, int level);

/** The effective level of `logger`. */
BP_EXTERN int bp_log_get_level(const char *logger);

/** BP_LOG_* for "DEBUG", "info", "Warning"… (also "WARN", "CRITICAL"), or BP_EINVAL. */
BP_EXTERN int bp_log_level_from_name(const char *name);

/** "DEBUG", "INFO", … for a level number. */
BP_EXTERN const char *bp_log_level_name(int level);

/** BP_LOG_FORMAT_AUTO, _JSON or _TEXT. */
BP_EXTERN void bp_log_set_format(int format);

/**
 * Keep every line written from now on (baseplate.testing's log capture),
 * as a JSON line whatever the format; `quiet`: keep them instead of
 * writing them. bp_log_capture(0, 0) stops and forgets.
 */
BP_EXTERN void bp_log_capture(int on, int quiet);
/** The lines kept so far (JSON lines, each ending in a newline). */
BP_EXTERN const char *bp_log_captured(size_t *len);
/** Forget the lines kept so far (capturing goes on). */
BP_EXTERN void bp_log_capture_clear(void);

/**
 * A trace ID (decimal string) to stamp on lines written now, or NULL. Without
 * one, lines carry the trace ID of the span whose code runs now
 * (bp_span_enter), if any. The string must stay valid until replaced.
 */
BP_EXTERN void bp_log_set_trace_id(const char *trace_id);

#endif
