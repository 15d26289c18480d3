/* The Thrift decoder (src/thrift/codec.c), both protocols, on a schema with
 * every type: the first input byte picks the protocol and whether a message
 * envelope comes first; the rest is decoded. Whatever decodes must encode
 * again, decode again, and encode to as many bytes (map order may differ,
 * sizes may not). A bad input must give nil and a message. */
#include "thrift/codec.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

static lua_State *L;
static int ref_check;

static const char check_lua[] =
    "local c = require('baseplate.thrift_c')\n"
    "local ffi = require('ffi')\n"
    "local i64p = ffi.typeof('int64_t *')\n"
    "c.set_int64_helpers(function(p) return ffi.cast(i64p, p)[0] end,\n"
    "  function(v, p) if ffi.istype('int64_t', v) then ffi.cast(i64p, p)[0] = v return true end "
    "return false end)\n"
    "local function b(k) return { kind = k } end\n"
    "local point = { name = 'Point', kind = 'struct', fields = {\n"
    "  { id = 1, name = 'x', required = 'required', type = b('i32') },\n"
    "  { id = 2, name = 'y', type = b('i32') } } }\n"
    "local value = { name = 'Value', kind = 'union' }\n"
    "value.fields = { { id = 1, name = 'i', type = b('i64') }, { id = 2, name = 's', type = "
    "b('string') },\n"
    "  { id = 3, name = 'l', type = { kind = 'list', elem = { kind = 'struct', struct = value } } "
    "} }\n"
    "local all = { name = 'All', kind = 'struct', fields = {\n"
    "  { id = -1, name = 'neg', type = b('bool') },\n"
    "  { id = 1, name = 'bo', type = b('bool') }, { id = 2, name = 'by', type = b('byte') },\n"
    "  { id = 3, name = 'i16', type = b('i16') }, { id = 4, name = 'i32', type = b('i32') },\n"
    "  { id = 5, name = 'i64', type = b('i64') }, { id = 6, name = 'd', type = b('double') },\n"
    "  { id = 7, name = 's', type = b('string') }, { id = 8, name = 'bin', type = b('binary') },\n"
    "  { id = 9, name = 'l', type = { kind = 'list', elem = b('i32') } },\n"
    "  { id = 10, name = 'set', type = { kind = 'set', elem = b('string') } },\n"
    "  { id = 11, name = 'm', type = { kind = 'map', key = b('i64'), value = { kind = 'list', elem "
    "= b('bool') } } },\n"
    "  { id = 12, name = 'p', type = { kind = 'struct', struct = point } },\n"
    "  { id = 13, name = 'v', type = { kind = 'struct', struct = value } },\n"
    "  { id = 14, name = 'deep', type = { kind = 'list', elem = { kind = 'map', key = "
    "b('string'),\n"
    "      value = { kind = 'set', elem = { kind = 'struct', struct = point } } } } },\n"
    "  { id = 15, name = 'dm', type = { kind = 'map', key = b('double'), value = b('byte') } },\n"
    "  { id = 16, name = 'def', type = b('i32'), default = 5 },\n"
    "  { id = 200, name = 'far', type = b('i16') } } }\n"
    "local codec = c.compile({ all })\n"
    "return function(s, proto, message)\n"
    "  local pos = 1\n"
    "  if message then\n"
    "    local name, mtype, seqid, p = c.decode_message(s, proto, 1)\n"
    "    if not name then assert(type(mtype) == 'string') return end\n"
    "    pos = p\n"
    "  end\n"
    "  local v, err = c.decode(codec, 1, s, proto, pos)\n"
    "  if v == nil then assert(type(err) == 'string' and #err > 0) return end\n"
    "  local b1 = c.encode(codec, 1, v, proto)\n"
    "  local v2, err2 = c.decode(codec, 1, b1, proto, 1)\n"
    "  if v2 == nil then error('cannot decode what was encoded: ' .. err2) end\n"
    "  local b2 = c.encode(codec, 1, v2, proto)\n"
    "  if #b1 ~= #b2 then error('re-encoding changed the size') end\n"
    "  if message then c.encode_message('m', 1, 0, codec, 1, v, proto) end\n"
    "end\n";

static void close_state(void) {
  lua_close(L);
  L = NULL;
}

static void init(void) {
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  bp__thrift_codec_preload(L);
  if (luaL_loadstring(L, check_lua) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "fuzz-thrift-codec: %s\n", lua_tostring(L, -1));
    abort();
  }
  ref_check = luaL_ref(L, LUA_REGISTRYINDEX);
  atexit(close_state);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static unsigned runs;
  if (!L) init();
  if (size < 1) return 0;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_check);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushinteger(L, data[0] & 1 ? BP__T_COMPACT : BP__T_BINARY);
  lua_pushboolean(L, data[0] & 2);
  if (lua_pcall(L, 3, 0, 0) != 0) {
    fprintf(stderr, "fuzz-thrift-codec: %s\n", lua_tostring(L, -1));
    abort();
  }
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
