/*
 * INI configuration files, read with inih.
 *
 * Semantics follow Python's configparser as Baseplate.py uses it: sections
 * `[app:NAME]`, `[server:NAME]` and others; `[DEFAULT]` is inherited by every
 * section that does not set the key itself; no `%(...)` interpolation;
 * `$VAR` / `${VAR}` in values are replaced from the environment (unknown
 * variables are left as written); keys are lower-cased, dotted keys are kept
 * as written; indented lines continue the previous value (joined with "\n").
 * Duplicate sections or keys, keys outside a section and lines longer than
 * BP_INI_MAX_LINE are errors.
 */
#ifndef BASEPLATE_INI_H
#define BASEPLATE_INI_H

#include "common.h"

/** Longest line accepted (in bytes, excluding the newline). */
#define BP_INI_MAX_LINE 65535

typedef struct bp_ini_s bp_ini_t;
typedef struct bp_section_s bp_section_t;

/**
 * Parse the file at `path`. On success *out owns the result (bp_ini_free).
 * On failure returns BP_ENOENT (missing/unreadable file) or BP_EINVAL (bad
 * syntax) and writes "PATH:LINE: reason" (or "PATH: reason") into err.
 */
BP_EXTERN int bp_ini_load(const char *path, bp_ini_t **out, char *err, size_t errlen);

/** Like bp_ini_load, from memory; `name` stands for the path in messages. */
BP_EXTERN int bp_ini_parse(const char *text, size_t len, const char *name,
                           bp_ini_t **out, char *err, size_t errlen);

/** Free a parsed file and every section and string in it. NULL is fine. */
BP_EXTERN void bp_ini_free(bp_ini_t *ini);

/** The path (or name) the file was loaded from; valid while ini lives. */
BP_EXTERN const char *bp_ini_path(const bp_ini_t *ini);

/** Number of sections, not counting DEFAULT. */
BP_EXTERN int bp_ini_section_count(const bp_ini_t *ini);

/** The i-th section in file order, or NULL when out of range. */
BP_EXTERN const bp_section_t *bp_ini_section_at(const bp_ini_t *ini, int i);

/**
 * The section called `name` (e.g. "app:main"), with DEFAULT merged in, or
 * NULL when there is none. Valid while ini lives.
 */
BP_EXTERN const bp_section_t *bp_ini_section(const bp_ini_t *ini, const char *name);

/** The section's name as written between the brackets. */
BP_EXTERN const char *bp_section_name(const bp_section_t *section);

/** The value of `key`, or NULL when absent. Valid while the ini lives. */
BP_EXTERN const char *bp_section_get(const bp_section_t *section, const char *key);

/** Number of keys (own and inherited from DEFAULT). */
BP_EXTERN int bp_section_count(const bp_section_t *section);

/** Number of the section's own keys (those come first in item order). */
BP_EXTERN int bp_section_own_count(const bp_section_t *section);

/**
 * The i-th key and value (file order, own keys first, then inherited ones).
 * Returns BP_OK, or BP_ENOENT when i is out of range.
 */
BP_EXTERN int bp_section_item(const bp_section_t *section, int i,
                              const char **key, const char **value);

/** The line the key was set on (0 for unknown); for error messages. */
BP_EXTERN int bp_section_line(const bp_section_t *section, const char *key);

/**
 * A section built in memory (not part of any file): what the Lua side hands
 * C code that reads config, such as an observer factory, from an app
 * config table. bp_section_set adds or replaces a key (both copied);
 * bp_section_free frees it (only sections made by bp_section_new).
 */
BP_EXTERN bp_section_t *bp_section_new(const char *name);
BP_EXTERN int bp_section_set(bp_section_t *section, const char *key, const char *value);
BP_EXTERN void bp_section_free(bp_section_t *section);

#endif
