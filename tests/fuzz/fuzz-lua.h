/* For fuzz targets of parsers written in Lua (fuzz-secrets, fuzz-inventory):
 * a Lua state that finds baseplate's modules in the source tree, and
 * coverage of the Lua code. libFuzzer instruments C, not Lua, so a line
 * hook feeds it edges between Lua lines (source, previous line, line)
 * through its extra counters. */
#ifndef BP_FUZZ_LUA_H
#define BP_FUZZ_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef BP_LUA_SOURCE_DIR
#error "BP_LUA_SOURCE_DIR must name the lua/ directory of the source tree"
#endif

#define FUZZ_LUA_EDGES 65536
__attribute__((section("__libfuzzer_extra_counters"))) static unsigned char fuzz_lua_edges[FUZZ_LUA_EDGES];
static unsigned fuzz_lua_prev;

static void fuzz_lua_on_line(lua_State *L, lua_Debug *ar) {
  unsigned h;
  if (!lua_getinfo(L, "S", ar)) return;
  h = (unsigned)(((uintptr_t)ar->source >> 4) * 2654435761u) ^ (unsigned)ar->currentline * 40503u;
  fuzz_lua_edges[(h ^ (fuzz_lua_prev >> 1)) % FUZZ_LUA_EDGES]++;
  fuzz_lua_prev = h;
}

static lua_State *fuzz_lua_state;

static void fuzz_lua_close(void) {
  lua_close(fuzz_lua_state);
  fuzz_lua_state = NULL;
}

/* A state whose package.path starts with the source tree's lua/, with the
 * function that `chunk` returns kept in the registry (its reference is
 * returned). Aborts with `name`'s message when the chunk fails. */
static int fuzz_lua_init(const char *name, const char *chunk) {
  lua_State *L = fuzz_lua_state = luaL_newstate();
  int ref;
  if (!L) {
    fprintf(stderr, "%s: cannot create a Lua state\n", name);
    abort();
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, BP_LUA_SOURCE_DIR "/?.lua;");
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  if (luaL_loadstring(L, chunk) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "%s: %s (is lua-cjson installed?)\n", name, lua_tostring(L, -1));
    abort();
  }
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, fuzz_lua_on_line, LUA_MASKLINE, 0);
  atexit(fuzz_lua_close);
  return ref;
}

/* Call the function `ref` with the input as a string: it returns true, or
 * false and a message, which aborts. */
static void fuzz_lua_run(const char *name, int ref, const unsigned char *data, size_t size) {
  static unsigned runs;
  lua_State *L = fuzz_lua_state;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 2, 0) != 0) {
    fprintf(stderr, "%s: %s\n", name, lua_tostring(L, -1));
    abort();
  }
  if (!lua_toboolean(L, 1)) {
    fprintf(stderr, "%s: %s\n", name, lua_tostring(L, 2));
    abort();
  }
  lua_settop(L, 0);
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
}

#endif
