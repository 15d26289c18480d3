/*
 * C extension modules.
 *
 * A C module is a shared object found on package.cpath like a Lua C module
 * (e.g. ./hello_c.so, or the installed module directory from
 * `pkg-config --variable=moduledir baseplate`). Its INI file names it as any
 * factory: `factory = hello_c:make_app`. The module contains BP_MODULE() once
 * and exports the factory:
 *
 *     #include <baseplate.h>
 *     BP_MODULE();
 *     int make_app(bp_app_t *app, const bp_section_t *config, char *err, size_t errlen) {
 *       return bp_app_add_route(app, "hello", "GET", "/", hello, NULL, err, errlen);
 *     }
 *
 * The factory fills `app` with routes from `config` (the [app:…] section, DEFAULT
 * merged) and returns BP_OK, or an error status with a reason in err.
 */
#ifndef BASEPLATE_MODULE_H
#define BASEPLATE_MODULE_H

#include "common.h"
#include "http.h"
#include "ini.h"

/** The signature of a C application factory. */
typedef int (*bp_app_factory_fn)(bp_app_t *app, const bp_section_t *config, char *err,
                                 size_t errlen);

/** Marks a shared object as a baseplate module built against this ABI. */
#define BP_MODULE() \
  __attribute__((visibility("default"))) const int bp_module_abi_version = BP_ABI_VERSION

/**
 * Load the module at `path` (once; later calls reuse it) and run its factory
 * `symbol` on `app` and `config`. Errors: BP_ENOENT (cannot open, or no such
 * symbol), BP_EINVAL (not a baseplate module, or ABI mismatch), or the
 * factory's own status; err says which.
 */
BP_EXTERN int bp_module_run_factory(const char *path, const char *symbol, bp_app_t *app,
                                    const bp_section_t *config, char *err, size_t errlen);

/** Whether the shared object at `path` is a baseplate module (1) or not (0). */
BP_EXTERN int bp_module_is_baseplate(const char *path);

#endif
