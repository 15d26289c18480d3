/* The JSON encoder of response bodies (src/json.c), against lua-cjson: the
 * input is a little program that builds a Lua value (strings, numbers,
 * booleans, nil, cjson.null, arrays with holes, objects with string and
 * number keys, nesting); whenever the core's encoder writes something, it
 * must be byte for byte what cjson.encode writes. Declining is always
 * allowed (cjson then decides). */
#include "runtime.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;
static int ref_compare;

typedef struct {
  const unsigned char *p, *end;
} input_t;

static int next_byte(input_t *in) { return in->p < in->end ? *in->p++ : -1; }

static void push_string(input_t *in) {
  int n = next_byte(in);
  size_t len = n < 0 ? 0 : (size_t)(n % 40);
  if (len > (size_t)(in->end - in->p)) len = (size_t)(in->end - in->p);
  lua_pushlstring(L, (const char *)in->p, len);
  in->p += len;
}

static void push_number(input_t *in) {
  int kind = next_byte(in);
  if (kind < 0) {
    lua_pushnumber(L, 0);
  } else if (kind % 4 < 2) { /* small integers, the common case */
    lua_pushnumber(L, (signed char)(next_byte(in) & 0xff) * (kind % 4 == 0 ? 1 : 1000003));
  } else if (kind % 4 == 2 && in->end - in->p >= 8) { /* any double: NaN, inf, -0, subnormal */
    double d;
    memcpy(&d, in->p, 8);
    in->p += 8;
    lua_pushnumber(L, d);
  } else { /* a fraction */
    lua_pushnumber(L, (double)(next_byte(in) & 0xff) / ((next_byte(in) & 0xff) + 1));
  }
}

/* Push one value built from the input. */
static void push_value(input_t *in, int depth) {
  int op = next_byte(in);
  if (op < 0 || depth > 120) {
    lua_pushnil(L);
    return;
  }
  switch (op % 9) {
  case 0:
    push_string(in);
    break;
  case 1:
    push_number(in);
    break;
  case 2:
    lua_pushboolean(L, op & 0x10);
    break;
  case 3:
    lua_pushnil(L);
    break;
  case 4:
    lua_pushlightuserdata(L, (op & 0x10) ? (void *)in : NULL); /* cjson.null, or not */
    break;
  case 5: { /* an array, maybe with holes (nil values) */
    int n = (next_byte(in) & 0xff) % 16;
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
      push_value(in, depth + 1);
      lua_rawseti(L, -2, i);
    }
    break;
  }
  case 6: { /* an object: string or number keys */
    int n = (next_byte(in) & 0xff) % 16;
    lua_createtable(L, 0, n);
    for (int i = 0; i < n && in->p < in->end; i++) {
      int k = next_byte(in);
      if (k & 1) push_string(in);
      else push_number(in);
      if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1)) {
        lua_pop(L, 1); /* a NaN key: Lua refuses it */
        continue;
      }
      push_value(in, depth + 1);
      lua_rawset(L, -3);
    }
    break;
  }
  case 7: { /* sparse integer keys */
    int n = (next_byte(in) & 0xff) % 8;
    lua_createtable(L, 0, n);
    for (int i = 0; i < n && in->p < in->end; i++) {
      int k = next_byte(in) & 0xff;
      push_value(in, depth + 1);
      lua_rawseti(L, -2, k);
    }
    break;
  }
  case 8: /* values cjson refuses: a function */
    if (op & 0x10) lua_pushvalue(L, LUA_GLOBALSINDEX);
    else lua_pushcfunction(L, luaopen_base);
    break;
  }
}

static const char compare_lua[] =
    "local json_c = require('baseplate.json_c')\n"
    "local cjson = require('cjson')\n"
    /* cjson's buffer lives in Lua's heap, which LeakSanitizer does not scan:
     * one that outlives the call would look leaked. */
    "cjson.encode_keep_buffer(false)\n"
    "return function(v)\n"
    "  local ours = json_c.encode_string(v)\n"
    "  if ours == nil then return true end\n"
    "  local n = json_c.encode(v)\n"
    "  local ok, theirs = pcall(cjson.encode, v)\n"
    "  if not ok then return false, 'cjson refuses what the core wrote: ' .. ours .. ' (' .. tostring(theirs) .. ')' end\n"
    "  if theirs ~= ours then return false, 'core: ' .. ours .. '\\ncjson: ' .. theirs end\n"
    "  if n ~= #ours then return false, 'encode and encode_string disagree' end\n"
    "  return true\n"
    "end\n";

static void close_state(void) {
  lua_close(L);
  L = NULL;
}

static void init(void) {
  L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "fuzz-json: cannot create a Lua state\n");
    abort();
  }
  luaL_openlibs(L);
  bp__json_preload(L);
  if (luaL_loadstring(L, compare_lua) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "fuzz-json: %s (is lua-cjson installed?)\n", lua_tostring(L, -1));
    abort();
  }
  ref_compare = luaL_ref(L, LUA_REGISTRYINDEX);
  atexit(close_state);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  input_t in = {data, data + size};
  static unsigned runs;
  if (!L) init();
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_compare);
  push_value(&in, 0);
  if (lua_pcall(L, 1, 2, 0) != 0) {
    fprintf(stderr, "fuzz-json: %s\n", lua_tostring(L, -1));
    abort();
  }
  if (!lua_toboolean(L, 1)) {
    fprintf(stderr, "fuzz-json: %s\n", lua_tostring(L, 2));
    abort();
  }
  lua_settop(L, 0);
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
