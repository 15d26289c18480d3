/*
 * JSON for response bodies: what lua-cjson's encode() writes with its
 * default settings, without its costs on the request path (a Lua string made
 * and interned for every body, an array check that walks each table twice, a
 * call per byte). Handlers return tables; this turns them into the response
 * body in a buffer the core then copies into the response, in one call.
 *
 * Only what encodes exactly as cjson encodes it is handled here: strings,
 * finite numbers, booleans, cjson.null, and tables that are arrays (keys 1..n,
 * holes no sparser than cjson allows) or objects (string and number keys).
 * Anything else (NaN, infinities, functions, a too-sparse array, deep
 * nesting) makes the encoder give up, and the caller asks cjson, which gives
 * the same output or raises its own error. tests/lua/test-json.lua compares
 * the two on random values.
 */
#include "internal.h"
#include "runtime.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cjson's defaults: encode_sparse_array(false, 2, 10), encode_max_depth(1000)
 * (we give up well before), encode_number_precision(14). */
#define SPARSE_RATIO 2
#define SPARSE_SAFE 10
#define MAX_DEPTH 100

typedef struct {
  char *p;
  size_t len, cap;
} jbuf_t;

static jbuf_t scratch; /* the last body encoded; valid until the next */

static const char *escapes[256]; /* cjson's char2escape */
static char escape_storage[32][8]; /* "\\u00XX" for the control characters */

static void init_escapes(void) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    snprintf(escape_storage[i], sizeof escape_storage[i], "\\u00%c%c", hex[i >> 4], hex[i & 15]);
    escapes[i] = escape_storage[i];
  }
  escapes['\b'] = "\\b";
  escapes['\t'] = "\\t";
  escapes['\n'] = "\\n";
  escapes['\f'] = "\\f";
  escapes['\r'] = "\\r";
  escapes['"'] = "\\\"";
  escapes['\\'] = "\\\\";
  escapes['/'] = "\\/";
  escapes[127] = "\\u007f";
}

static int grow(jbuf_t *b, size_t n) {
  size_t cap;
  char *p;
  cap = b->cap ? b->cap : 256;
  while (cap < b->len + n) cap *= 2;
  if (!(p = realloc(b->p, cap))) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static inline int reserve(jbuf_t *b, size_t n) { return b->len + n <= b->cap ? 0 : grow(b, n); }

static inline int put(jbuf_t *b, const char *s, size_t n) {
  if (reserve(b, n)) return -1;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

static inline int put_char(jbuf_t *b, char c) {
  if (reserve(b, 1)) return -1;
  b->p[b->len++] = c;
  return 0;
}

static int put_string(jbuf_t *b, const char *s, size_t n) {
  char *o;
  if (reserve(b, n * 6 + 2)) return -1; /* every byte may become \u00XX */
  o = b->p + b->len;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    const char *e = escapes[(unsigned char)s[i]];
    if (!e) {
      *o++ = s[i];
    } else {
      while (*e) *o++ = *e++;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->p);
  return 0;
}

/* "%.14g", with '.' whatever the locale; integers without printf. */
static int put_number(jbuf_t *b, double v) {
  char tmp[32];
  int n;
  if (v == floor(v) && fabs(v) < 1e14 && !(v == 0 && signbit(v))) {
    long long i = (long long)v;
    unsigned long long u = i < 0 ? (unsigned long long)(-i) : (unsigned long long)i;
    char *e = tmp + sizeof tmp, *p = e;
    do {
      *--p = (char)('0' + u % 10);
      u /= 10;
    } while (u);
    if (i < 0) *--p = '-';
    return put(b, p, (size_t)(e - p));
  }
  n = snprintf(tmp, sizeof tmp, "%.14g", v);
  if (n <= 0 || n >= (int)sizeof tmp) return -1;
  for (int k = 0; k < n; k++)
    if (tmp[k] == ',') tmp[k] = '.';
  return put(b, tmp, (size_t)n);
}

static int encode(lua_State *L, int idx, jbuf_t *b, int depth);

/* array_length's answers besides a length (not statuses: a length or one of
 * these). */
#define NOT_AN_ARRAY (-1L)
#define NOT_ENCODABLE (-2L)

/* cjson's array test: every key a positive integer, and not too sparse.
 * Returns the length (0: an empty table, which cjson writes as {}),
 * NOT_AN_ARRAY for an object, NOT_ENCODABLE to give up. */
static long array_length(lua_State *L, int idx) {
  long max = 0, items = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) == LUA_TNUMBER) {
      double k = lua_tonumber(L, -2);
      if (k != 0 && floor(k) == k && k >= 1) {
        if (k > 1e9) {
          lua_pop(L, 2);
          return NOT_ENCODABLE;
        }
        if (k > max) max = (long)k;
        items++;
        lua_pop(L, 1);
        continue;
      }
    }
    lua_pop(L, 2);
    return NOT_AN_ARRAY;
  }
  if (max > items * SPARSE_RATIO && max > SPARSE_SAFE) return NOT_ENCODABLE; /* cjson raises */
  return max;
}

/* The pair (key, value) at the top of the stack: key, ':' and value. */
static int encode_pair(lua_State *L, jbuf_t *b, int depth) {
  int kt = lua_type(L, -2);
  if (kt == LUA_TSTRING) {
    size_t kn;
    const char *k = lua_tolstring(L, -2, &kn);
    if (put_string(b, k, kn)) return -1;
  } else if (kt == LUA_TNUMBER) {
    double k = lua_tonumber(L, -2);
    if (!isfinite(k) || put_char(b, '"') || put_number(b, k) || put_char(b, '"')) return -1;
  } else {
    return -1; /* cjson raises */
  }
  return put_char(b, ':') || encode(L, lua_gettop(L), b, depth + 1);
}

static int encode_table(lua_State *L, int idx, jbuf_t *b, int depth) {
  long n;
  if (depth > MAX_DEPTH || !lua_checkstack(L, 4)) return -1;
  lua_pushnil(L);
  if (lua_next(L, idx) == 0) return put(b, "{}", 2); /* cjson: an empty table is an object */
  if (lua_type(L, -2) != LUA_TSTRING) {
    /* Maybe an array: cjson's test walks every key first. (A string key
     * makes an object: the common case needs one walk.) */
    lua_pop(L, 2);
    n = array_length(L, idx);
    if (n == NOT_ENCODABLE) return -1;
    if (n > 0) {
      if (put_char(b, '[')) return -1;
      for (long i = 1; i <= n; i++) {
        if (i > 1 && put_char(b, ',')) return -1;
        lua_rawgeti(L, idx, (int)i);
        if (encode(L, lua_gettop(L), b, depth + 1)) return -1;
        lua_pop(L, 1);
      }
      return put_char(b, ']');
    }
    lua_pushnil(L);
    lua_next(L, idx); /* the first pair again */
  }
  if (put_char(b, '{')) return -1;
  for (;;) {
    if (encode_pair(L, b, depth)) return -1;
    lua_pop(L, 1);
    if (lua_next(L, idx) == 0) break;
    if (put_char(b, ',')) return -1;
  }
  return put_char(b, '}');
}

static int encode(lua_State *L, int idx, jbuf_t *b, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_string(b, s, n);
  }
  case LUA_TNUMBER: {
    double v = lua_tonumber(L, idx);
    return isfinite(v) ? put_number(b, v) : -1;
  }
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? put(b, "true", 4) : put(b, "false", 5);
  case LUA_TNIL:
    return put(b, "null", 4);
  case LUA_TLIGHTUSERDATA:
    return lua_touserdata(L, idx) == NULL ? put(b, "null", 4) : -1; /* cjson.null */
  case LUA_TTABLE:
    return encode_table(L, idx, b, depth);
  default:
    return -1;
  }
}

/* encode(value) -> byte count in the scratch buffer, or nothing: ask cjson. */
static int l_encode(lua_State *L) {
  lua_settop(L, 1);
  scratch.len = 0;
  if (encode(L, 1, &scratch, 1)) return 0;
  lua_pushnumber(L, (lua_Number)scratch.len);
  return 1;
}

/* encode_string(value) -> the JSON as a Lua string, or nothing. */
static int l_encode_string(lua_State *L) {
  lua_settop(L, 1);
  scratch.len = 0;
  if (encode(L, 1, &scratch, 1)) return 0;
  lua_pushlstring(L, scratch.p ? scratch.p : "", scratch.len);
  return 1;
}

const char *bp__json_buffer(void) { return scratch.p ? scratch.p : ""; }

static int luaopen_json_c(lua_State *L) {
  static const luaL_Reg fns[] = {{"encode", l_encode}, {"encode_string", l_encode_string}, {NULL, NULL}};
  if (!escapes['"']) init_escapes();
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}

void bp__json_preload(lua_State *L) { bp__lua_preload(L, "baseplate.json_c", luaopen_json_c); }
