/*
 * The process's LuaJIT state.
 *
 * The core owns one lua_State. Lua code calls the core through FFI; the core
 * calls into Lua at exactly two places, both from loop callbacks (never from
 * inside an FFI call): a message for a Lua handler (runtime.on_message) and
 * the wake-up of a coroutine waiting on the core (runtime.on_wake). All
 * coroutine scheduling lives in lua/baseplate/runtime.lua.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include "runtime.h"
#include "internal.h"
#include "baseplate/log.h"
#include "thrift/codec.h"

#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>
#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lua_State *L;
static int ref_runtime = LUA_NOREF;
static int ref_on_message = LUA_NOREF;
static int ref_on_wake = LUA_NOREF;

lua_State *bp__vm_state(void) { return L; }

/* Where the Lua modules and C modules are. A binary of the build tree uses
 * the in-tree Lua modules and the build's module directory. An installed one
 * finds them relative to where it is, so that an installed prefix can be
 * moved: first from the executable's directory (the tools), then from the
 * directory of libbaseplate itself (any other program linked with it), and
 * last at the absolute paths it was installed to. A candidate counts when
 * it holds baseplate/runtime.lua. */
static int dir_of(const char *path, char *out, size_t cap) {
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  if (!slash || n >= cap) return -1;
  memcpy(out, path, n);
  out[n] = '\0';
  return 0;
}

static int exe_dir(char *out, size_t cap) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  return dir_of(exe, out, cap);
}

static int lib_dir(char *out, size_t cap) {
  Dl_info info;
  if (!dladdr((void *)bp__vm_open, &info) || !info.dli_fname) return -1;
  return dir_of(info.dli_fname, out, cap);
}

static int has_runtime(const char *luadir) {
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/baseplate/runtime.lua", luadir);
  return access(probe, R_OK) == 0;
}

typedef struct {
  char lua[PATH_MAX];
  char mod[PATH_MAX];
} module_dirs_t;

/* base + "/" + rel, for both directories; 0 when the Lua modules are there. */
static int try_base(module_dirs_t *d, const char *base, const char *lua_rel, const char *lib_rel) {
  if ((size_t)snprintf(d->lua, sizeof d->lua, "%s/%s", base, lua_rel) >= sizeof d->lua ||
      (size_t)snprintf(d->mod, sizeof d->mod, "%s/%s/baseplate", base, lib_rel) >= sizeof d->mod)
    return -1;
  return has_runtime(d->lua) ? 0 : -1;
}

static void find_module_dirs(module_dirs_t *d) {
  char base[PATH_MAX];
#ifdef BP_BUILD_BIN_DIR
  if ((exe_dir(base, sizeof base) == 0 && strcmp(base, BP_BUILD_BIN_DIR) == 0) ||
      (lib_dir(base, sizeof base) == 0 && strcmp(base, BP_BUILD_LIB_DIR) == 0)) {
    snprintf(d->lua, sizeof d->lua, "%s", BP_LUA_SRC_DIR);
    snprintf(d->mod, sizeof d->mod, "%s", BP_BUILD_LIB_DIR);
    return;
  }
#endif
  if (exe_dir(base, sizeof base) == 0 &&
      try_base(d, base, BP_LUA_FROM_BINDIR, BP_LIB_FROM_BINDIR) == 0)
    return;
  if (lib_dir(base, sizeof base) == 0 && try_base(d, base, BP_LUA_FROM_LIBDIR, ".") == 0) return;
  snprintf(d->lua, sizeof d->lua, "%s", BP_LUA_INSTALL_DIR);
  snprintf(d->mod, sizeof d->mod, "%s", BP_LIBDIR_INSTALL);
}

void bp__lua_preload(lua_State *state, const char *name, lua_CFunction open) {
  lua_getglobal(state, "package");
  lua_getfield(state, -1, "preload");
  lua_pushcfunction(state, open);
  lua_setfield(state, -2, name);
  lua_pop(state, 2);
}

static void set_paths(const bp__vm_options_t *opts) {
  module_dirs_t dirs;
  const char *extra = opts && opts->extra_path ? opts->extra_path : "";
  find_module_dirs(&dirs);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "./?.lua;./?/init.lua;%s%s/?.lua;%s/?/init.lua;%s", extra, dirs.lua, dirs.lua,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "cpath");
  lua_pushfstring(L, "./?.so;%s/?.so;%s", dirs.mod, lua_tostring(L, -1));
  lua_setfield(L, -3, "cpath");
  lua_pop(L, 2);
}

static int ref_field(int table, const char *name, int *ref, char *err, size_t errlen) {
  lua_getfield(L, table, name);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    snprintf(err, errlen, "baseplate.runtime has no function %s", name);
    return BP_ERROR;
  }
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return BP_OK;
}

int bp__vm_open(const bp__vm_options_t *opts, char *err, size_t errlen) {
  if (!(L = luaL_newstate())) {
    snprintf(err, errlen, "cannot create the Lua state: out of memory");
    return BP_ENOMEM;
  }
  luaL_openlibs(L);
  bp__json_preload(L);
  bp__thrift_codec_preload(L);
  set_paths(opts);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "baseplate.runtime");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    snprintf(err, errlen, "cannot load baseplate.runtime: %s", lua_tostring(L, -1));
    bp__vm_close();
    return BP_ERROR;
  }
  if (!lua_istable(L, -1) || ref_field(-1, "on_message", &ref_on_message, err, errlen) ||
      ref_field(-1, "on_wake", &ref_on_wake, err, errlen)) {
    if (!err[0]) snprintf(err, errlen, "baseplate.runtime did not return a table");
    bp__vm_close();
    return BP_ERROR;
  }
  ref_runtime = luaL_ref(L, LUA_REGISTRYINDEX);
  return BP_OK;
}

void bp__vm_close(void) {
  if (!L) return;
  lua_close(L);
  L = NULL;
  ref_runtime = ref_on_message = ref_on_wake = LUA_NOREF;
}

/* A failure inside the runtime's own entry points is a bug in baseplate, not
 * in the application: log it and go on. */
static void call_entry(int nargs) {
  if (lua_pcall(L, nargs, 0, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    bp_log(BP_LOG_CRITICAL, "baseplate.runtime", "internal error: %s", msg ? msg : "?");
    lua_pop(L, 1);
  }
}

int bp__vm_start_main(const char *module, const char *fn) {
  /* stack: options */
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_runtime);
  lua_getfield(L, -1, "start_main");
  lua_remove(L, -2);
  lua_pushstring(L, module);
  lua_pushstring(L, fn);
  lua_pushvalue(L, -4);
  lua_remove(L, -5);
  call_entry(3);
  return BP_OK;
}

int bp__vm_main_result(char *err, size_t errlen, int *exit_code) {
  int failed;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_runtime);
  lua_getfield(L, -1, "main_result");
  lua_remove(L, -2);
  if (lua_pcall(L, 0, 3, 0) != 0) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    *exit_code = 1;
    return 1;
  }
  failed = !lua_toboolean(L, -3);
  if (failed) snprintf(err, errlen, "%s", lua_isstring(L, -2) ? lua_tostring(L, -2) : "error");
  *exit_code = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : failed;
  lua_pop(L, 3);
  return failed;
}

void bp__vm_dispatch(int protocol, void *msg, int handler) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_on_message);
  lua_pushinteger(L, protocol);
  /* The address as a number: the JIT compiles ffi.cast from a number to a
   * pointer, not from a light userdata (the message's code would stay
   * interpreted). User-space addresses fit a double's 53 bits. */
  lua_pushnumber(L, (lua_Number)(uintptr_t)msg);
  lua_pushinteger(L, handler);
  call_entry(3);
}

void bp__vm_wake(int waiter, int status) {
  if (!L) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_on_wake);
  lua_pushinteger(L, waiter);
  lua_pushinteger(L, status);
  call_entry(2);
}

void bp_wake(int waiter, int status) { bp__vm_wake(waiter, status); }

/* --- the runtime entry points for the bundled tools ----------------------------- */

static int ref_on_signal = LUA_NOREF;
static uv_signal_t signals[4]; /* SIGINT, SIGTERM, SIGUSR2, SIGUSR1 */
static int nsignals, sigint_seen;

static void on_signal(uv_signal_t *h, int signum) {
  int handled = 0, repeatable = 0;
  if (signum == SIGINT && sigint_seen) {
    /* A second Ctrl-C: the user wants out now. */
    bp_log(BP_LOG_WARNING, "baseplate.server", "second SIGINT: exiting immediately");
    _exit(1);
  }
  if (L && ref_on_signal != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref_on_signal);
    lua_pushinteger(L, signum);
    lua_pushstring(L, signum == SIGINT    ? "SIGINT"
                      : signum == SIGTERM ? "SIGTERM"
                      : signum == SIGUSR1 ? "SIGUSR1"
                      : signum == SIGUSR2 ? "SIGUSR2"
                                          : "signal");
    /* Lua answers (handled, repeatable): an interactive tool (the shell)
     * takes every Ctrl-C as "stop what you are doing", not "exit". */
    if (lua_pcall(L, 2, 2, 0) == 0) {
      handled = lua_toboolean(L, -2);
      repeatable = lua_toboolean(L, -1);
      lua_pop(L, 2);
    } else {
      bp_log(BP_LOG_CRITICAL, "baseplate.runtime", "internal error: %s", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  if (signum == SIGINT && !repeatable) sigint_seen = 1;
  if (!handled) {
    signal(signum, SIG_DFL);
    raise(signum);
  }
}

int bp_runtime_open(const char *extra_lua_path, char *err, size_t errlen) {
  bp__vm_options_t o = {extra_lua_path};
  int rc = bp__vm_open(&o, err, errlen);
  if (rc != BP_OK) return rc;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_runtime);
  rc = ref_field(-1, "on_signal", &ref_on_signal, err, errlen);
  lua_pop(L, 1);
  if (rc != BP_OK) {
    bp__vm_close();
    return rc;
  }
  static const int sigs[] = {SIGINT, SIGTERM, SIGUSR2, SIGUSR1};
  sigset_t set;
  sigemptyset(&set);
  bp__ignore_sigpipe();
  for (size_t i = 0; i < BP_ARRAY_SIZE(sigs); i++) {
    uv_signal_init(uv_default_loop(), &signals[i]);
    uv_signal_start(&signals[i], on_signal, sigs[i]);
    uv_unref((uv_handle_t *)&signals[i]); /* signals alone keep nothing alive */
    nsignals++;
    sigaddset(&set, sigs[i]);
  }
  /* A process started with these signals blocked (a restart after
   * bp_runtime_close blocked them, or a parent's mask: both survive exec)
   * would never see them. Unblocked once handled: one that is pending now
   * is delivered to the handler, not to the default action. */
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  return BP_OK;
}

int bp_runtime_main(const char *module, const char *fn, const char *const *opts,
                    const char *const *argv, int argc, char *err, size_t errlen) {
  int code;
  lua_newtable(L);
  for (int i = 0; opts && opts[i] && opts[i + 1]; i += 2) {
    lua_pushstring(L, opts[i + 1]);
    lua_setfield(L, -2, opts[i]);
  }
  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "args");
  bp__vm_start_main(module, fn);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  err[0] = '\0';
  bp__vm_main_result(err, errlen, &code);
  return code;
}

int bp_runtime_call(const char *module, const char *fn, const char *arg, char *out, size_t outlen) {
  const char *s;
  size_t n;
  if (!L || !module || !fn || !out || outlen == 0) return BP_EINVAL;
  out[0] = '\0';
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (lua_pcall(L, 1, 1, 0) != 0) goto raised;
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return BP_ENOENT;
  }
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return BP_ENOENT;
  }
  lua_pushstring(L, arg ? arg : "");
  if (lua_pcall(L, 1, 1, 0) != 0) goto raised;
  s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (!s || n >= outlen) {
    lua_pop(L, 1);
    return s ? BP_ETOOBIG : BP_ENOENT;
  }
  memcpy(out, s, n + 1);
  lua_pop(L, 1);
  return BP_OK;
raised:
  s = lua_tostring(L, -1);
  snprintf(out, outlen, "%s", s ? s : "(error object is not a string)");
  lua_pop(L, 1);
  return BP_ERROR;
}

static int restart_requested;

void bp_runtime_request_restart(void) { restart_requested = 1; }

int bp_runtime_restart_requested(void) { return restart_requested; }

void bp_runtime_close(void) {
  /* The process is ending: a late signal must not change its exit status.
   * Block rather than ignore: closing the signal handles makes libuv restore
   * the default dispositions. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, NULL);
  if (L) bp__observe_flush();
  bp__loop_shutdown();
  bp__vm_close();
  ref_on_signal = LUA_NOREF;
  bp__log_reset();
}
