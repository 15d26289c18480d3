/* C extension modules: dlopen, ABI check, run the factory. See baseplate/module.h. */
#include "baseplate/module.h"
#include "internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Modules stay loaded for the life of the process: their handlers are
 * referenced by routes until exit. */
static void *open_module(const char *path, char *err, size_t errlen) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) snprintf(err, errlen, "cannot load C module %s: %s", path, dlerror());
  return h;
}

int bp_module_is_baseplate(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  int yes = h && dlsym(h, "bp_module_abi_version") != NULL;
  if (h) dlclose(h);
  return yes;
}

int bp_module_run_factory(const char *path, const char *symbol, bp_app_t *app,
                          const bp_section_t *config, char *err, size_t errlen) {
  void *h = open_module(path, err, errlen);
  const int *abi;
  bp_app_factory_fn fn;
  int rc;

  if (!h) return BP_ENOENT;
  abi = dlsym(h, "bp_module_abi_version");
  if (!abi) {
    snprintf(err, errlen, "%s is not a baseplate module (no BP_MODULE())", path);
    dlclose(h);
    return BP_EINVAL;
  }
  if (*abi != BP_ABI_VERSION) {
    snprintf(err, errlen, "%s was built for baseplate ABI %d, this core has ABI %d; rebuild it",
             path, *abi, BP_ABI_VERSION);
    dlclose(h);
    return BP_EINVAL;
  }
  *(void **)(&fn) = dlsym(h, symbol);
  if (!fn) {
    snprintf(err, errlen, "C module %s has no function '%s'", path, symbol);
    dlclose(h);
    return BP_ENOENT;
  }
  err[0] = '\0';
  rc = fn(app, config, err, errlen);
  if (rc != BP_OK && !err[0]) snprintf(err, errlen, "%s", bp_strerror(rc));
  return rc;
}
