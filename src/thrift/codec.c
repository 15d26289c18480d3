/*
 * The Thrift codec: Lua values to and from the binary and compact protocols,
 * driven by a schema compiled once from Lua tables (baseplate.thrift.codec's
 * compile(), fed by baseplate.thrift.idl) into the C structures below, kept
 * in a userdata. Encoding writes into one growing buffer; decoding builds
 * Lua tables directly, sized from the schema.
 *
 * Decoding trusts nothing: every length and count is checked against the
 * bytes that remain before anything is allocated for it (a count is bounded
 * by the smallest encoding of its elements), nesting is limited to
 * BP__T_MAX_DEPTH, and bad input gives nil and a message, never an error
 * thrown through the caller. Encoding raises a Lua error naming the struct
 * and field of a value that does not fit the schema.
 *
 * int64 values are LuaJIT cdata, which the Lua C API cannot make or read:
 * two small Lua functions (set_int64_helpers, called once by the Lua side)
 * box and unbox them through a pointer.
 */
#include "codec.h"
#include "../runtime.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TCDATA 10 /* LuaJIT's type number of cdata (not in lua.h) */

enum { REQ_DEFAULT, REQ_REQUIRED, REQ_OPTIONAL };
enum { KIND_STRUCT, KIND_UNION, KIND_EXCEPTION };

typedef struct tc_struct_s tc_struct_t;
typedef struct tc_type_s tc_type_t;

struct tc_type_s {
  uint8_t t;             /* BP__T_* */
  uint8_t binary;        /* BP__T_STRING: declared binary, not string */
  const tc_type_t *elem; /* list/set element, map key */
  const tc_type_t *val;  /* map value */
  const tc_struct_t *st; /* BP__T_STRUCT */
};

typedef struct {
  tc_type_t type;
  int16_t id;
  uint8_t req;
  int name_ref;    /* env[name_ref] is the field name as a Lua string */
  int default_ref; /* env[default_ref] is the default value; 0: none */
  const char *name;
} tc_field_t;

struct tc_struct_s {
  const char *name;
  uint8_t kind;
  int nfields;
  uint8_t checked;    /* a union, or a field required or with a default */
  tc_field_t *fields; /* sorted by id */
};

typedef struct block_s {
  struct block_s *next;
  double data[]; /* aligned for anything the schema holds */
} block_t;

/* The userdata: every allocation of a compiled schema hangs off `blocks`
 * and is freed by __gc. */
typedef struct {
  block_t *blocks;
  tc_struct_t **roots;
  int nroots;
  int nrefs; /* the env table's last integer key */
} tc_codec_t;

#define CODEC_MT "baseplate.thrift_c.codec"

static void *codec_alloc(lua_State *L, tc_codec_t *c, size_t n) {
  block_t *b = calloc(1, sizeof *b + n);
  if (!b) luaL_error(L, "out of memory");
  b->next = c->blocks;
  c->blocks = b;
  return b->data;
}

static int codec_gc(lua_State *L) {
  tc_codec_t *c = luaL_checkudata(L, 1, CODEC_MT);
  while (c->blocks) {
    block_t *b = c->blocks;
    c->blocks = b->next;
    free(b);
  }
  c->roots = NULL;
  c->nroots = 0;
  return 0;
}

/* ---- compile ----------------------------------------------------------- */

typedef struct {
  lua_State *L;
  tc_codec_t *c;
  int env;  /* stack index of the codec's env table */
  int memo; /* stack index of description -> lightuserdata */
} compile_t;

static const tc_struct_t *compile_struct(compile_t *k, int idx, int depth);

static int add_ref(compile_t *k) { /* pops the value into env */
  lua_rawseti(k->L, k->env, ++k->c->nrefs);
  return k->c->nrefs;
}

static const char *field_string(lua_State *L, int idx, const char *key, const char *what) {
  const char *s;
  lua_getfield(L, idx, key);
  s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the string stays alive in the description table */
  if (!s) luaL_error(L, "thrift schema: %s has no %s", what, key);
  return s;
}

/* A copy owned by the codec: descriptions may be collected before it. */
static const char *keep_string(compile_t *k, const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(codec_alloc(k->L, k->c, n), s, n);
}

static void compile_type(compile_t *k, int idx, tc_type_t *ty, int depth, const char *what) {
  lua_State *L = k->L;
  const char *kind;
  if (depth > BP__T_MAX_DEPTH) luaL_error(L, "thrift schema: %s: types nest too deep", what);
  if (!lua_istable(L, idx)) luaL_error(L, "thrift schema: %s: a type must be a table", what);
  kind = field_string(L, idx, "kind", what);
  memset(ty, 0, sizeof *ty);
  if (!strcmp(kind, "bool"))
    ty->t = BP__T_BOOL;
  else if (!strcmp(kind, "byte") || !strcmp(kind, "i8"))
    ty->t = BP__T_BYTE;
  else if (!strcmp(kind, "i16"))
    ty->t = BP__T_I16;
  else if (!strcmp(kind, "i32"))
    ty->t = BP__T_I32;
  else if (!strcmp(kind, "i64"))
    ty->t = BP__T_I64;
  else if (!strcmp(kind, "double"))
    ty->t = BP__T_DOUBLE;
  else if (!strcmp(kind, "string"))
    ty->t = BP__T_STRING;
  else if (!strcmp(kind, "binary"))
    ty->t = BP__T_STRING, ty->binary = 1;
  else if (!strcmp(kind, "list") || !strcmp(kind, "set") || !strcmp(kind, "map")) {
    tc_type_t *sub = codec_alloc(L, k->c, 2 * sizeof *sub);
    int top = lua_gettop(L);
    ty->t = kind[0] == 'l' ? BP__T_LIST : kind[0] == 's' ? BP__T_SET : BP__T_MAP;
    lua_getfield(L, idx, ty->t == BP__T_MAP ? "key" : "elem");
    compile_type(k, top + 1, &sub[0], depth + 1, what);
    ty->elem = &sub[0];
    if (ty->t == BP__T_MAP) {
      lua_getfield(L, idx, "value");
      compile_type(k, top + 2, &sub[1], depth + 1, what);
      ty->val = &sub[1];
    }
    lua_settop(L, top);
  } else if (!strcmp(kind, "struct")) {
    int top = lua_gettop(L);
    ty->t = BP__T_STRUCT;
    lua_getfield(L, idx, "struct");
    ty->st = compile_struct(k, top + 1, depth + 1);
    lua_settop(L, top);
  } else {
    luaL_error(L, "thrift schema: %s: unknown type %s", what, kind);
  }
}

static const tc_struct_t *compile_struct(compile_t *k, int idx, int depth) {
  lua_State *L = k->L;
  tc_struct_t *st;
  const char *kind;
  int top = lua_gettop(L), n;
  if (!lua_istable(L, idx)) luaL_error(L, "thrift schema: a struct description must be a table");
  lua_pushvalue(L, idx);
  lua_rawget(L, k->memo);
  if (lua_touserdata(L, -1)) {
    st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st;
  }
  lua_pop(L, 1);
  luaL_checkstack(L, 8, "thrift schema");
  st = codec_alloc(L, k->c, sizeof *st);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, st);
  lua_rawset(L, k->memo);
  st->name = keep_string(k, field_string(L, idx, "name", "a struct"));
  kind = field_string(L, idx, "kind", st->name);
  st->kind = !strcmp(kind, "union")       ? KIND_UNION
             : !strcmp(kind, "exception") ? KIND_EXCEPTION
                                          : KIND_STRUCT;
  st->checked = st->kind == KIND_UNION;
  lua_getfield(L, idx, "fields");
  if (!lua_istable(L, -1)) luaL_error(L, "thrift schema: %s has no fields table", st->name);
  n = (int)lua_objlen(L, -1);
  st->fields = codec_alloc(L, k->c, (size_t)(n ? n : 1) * sizeof *st->fields);
  st->nfields = n;
  for (int i = 0; i < n; i++) {
    tc_field_t *f = &st->fields[i];
    const char *req;
    int fidx;
    double id;
    lua_rawgeti(L, top + 1, i + 1);
    fidx = lua_gettop(L);
    if (!lua_istable(L, fidx))
      luaL_error(L, "thrift schema: %s: field %d is not a table", st->name, i + 1);
    f->name = keep_string(k, field_string(L, fidx, "name", st->name));
    lua_getfield(L, fidx, "id");
    id = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (id != floor(id) || id < -32768 || id > 32767)
      luaL_error(L, "thrift schema: %s.%s: field id out of range", st->name, f->name);
    f->id = (int16_t)id;
    if (i > 0 && f->id <= st->fields[i - 1].id)
      luaL_error(L, "thrift schema: %s: fields must be sorted by id, without duplicates", st->name);
    lua_getfield(L, fidx, "required");
    req = lua_tostring(L, -1);
    f->req = req && !strcmp(req, "required")   ? REQ_REQUIRED
             : req && !strcmp(req, "optional") ? REQ_OPTIONAL
                                               : REQ_DEFAULT;
    lua_pop(L, 1);
    lua_getfield(L, fidx, "name");
    f->name_ref = add_ref(k);
    lua_getfield(L, fidx, "default");
    if (lua_isnil(L, -1))
      lua_pop(L, 1);
    else
      f->default_ref = add_ref(k);
    lua_getfield(L, fidx, "type");
    compile_type(k, lua_gettop(L), &f->type, depth + 1, st->name);
    if (f->req == REQ_REQUIRED || f->default_ref) st->checked = 1;
    lua_settop(L, top + 1);
  }
  lua_settop(L, top);
  return st;
}

/* compile(descriptions) -> codec: roots numbered as the list. */
static int l_compile(lua_State *L) {
  compile_t k;
  int n;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  n = (int)lua_objlen(L, 1);
  k.L = L;
  k.c = lua_newuserdata(L, sizeof *k.c); /* 2 */
  memset(k.c, 0, sizeof *k.c);
  luaL_getmetatable(L, CODEC_MT);
  lua_setmetatable(L, 2);
  lua_newtable(L); /* 3: env */
  lua_newtable(L); /* 4: memo */
  k.env = 3;
  k.memo = 4;
  k.c->roots = codec_alloc(L, k.c, (size_t)(n ? n : 1) * sizeof *k.c->roots);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    k.c->roots[i] = (tc_struct_t *)compile_struct(&k, 5, 0);
    lua_pop(L, 1);
  }
  k.c->nroots = n;
  lua_pushvalue(L, 3);
  lua_setfenv(L, 2);
  lua_settop(L, 2);
  return 1;
}

/* ---- the encoding buffer ------------------------------------------------ */

typedef struct {
  uint8_t *p;
  size_t len, cap;
} tbuf_t;

static tbuf_t scratch; /* the last encoding; reused */

static int grow(tbuf_t *b, size_t n) {
  size_t cap = b->cap ? b->cap : 256;
  uint8_t *p;
  while (cap < b->len + n) cap *= 2;
  if (!(p = realloc(b->p, cap))) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* ---- encode --------------------------------------------------------------- */

typedef struct {
  lua_State *L;
  tbuf_t *b;
  int proto;
  int env;
  int depth;
  int16_t last_id;           /* compact: the previous field id of the current struct */
  const char *where, *field; /* for messages: innermost struct and field */
  char err[256];
} enc_t;

static int enc_fail(enc_t *e, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(e->err, sizeof e->err, "%s%s%s: ", e->where ? e->where : "thrift",
                   e->field ? "." : "", e->field ? e->field : "");
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof e->err) vsnprintf(e->err + n, sizeof e->err - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

static inline int put(enc_t *e, const void *s, size_t n) {
  tbuf_t *b = e->b;
  if (b->len + n > b->cap && grow(b, n)) return enc_fail(e, "out of memory");
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

static inline int put_byte(enc_t *e, uint8_t v) { return put(e, &v, 1); }

static int put_be(enc_t *e, uint64_t v, int n) {
  uint8_t tmp[8];
  for (int i = n - 1; i >= 0; i--, v >>= 8) tmp[i] = (uint8_t)v;
  return put(e, tmp, (size_t)n);
}

static int put_varint(enc_t *e, uint64_t v) {
  uint8_t tmp[10];
  int n = 0;
  while (v >= 0x80) {
    tmp[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  tmp[n++] = (uint8_t)v;
  return put(e, tmp, (size_t)n);
}

static inline uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

/* Compact type codes of the BP__T_* types (bool: as a container element). */
static const uint8_t to_compact[16] = {
    [BP__T_BOOL] = 1, [BP__T_BYTE] = 3,   [BP__T_I16] = 4,    [BP__T_I32] = 5,
    [BP__T_I64] = 6,  [BP__T_DOUBLE] = 7, [BP__T_STRING] = 8, [BP__T_LIST] = 9,
    [BP__T_SET] = 10, [BP__T_MAP] = 11,   [BP__T_STRUCT] = 12};

static const char *type_name(lua_State *L, int idx) { return luaL_typename(L, idx); }

/* An integer in [lo, hi] from the number at idx (int64 cdata for i64). */
static int get_int(enc_t *e, int idx, int64_t lo, int64_t hi, const char *tname, int64_t *out) {
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER) {
    double v = lua_tonumber(L, idx);
    /* 2^63 is not an int64; -2^63 is. */
    if (v == floor(v) && v >= -9223372036854775808.0 && v < 9223372036854775808.0 &&
        (int64_t)v >= lo && (int64_t)v <= hi) {
      *out = (int64_t)v;
      return 0;
    }
    return enc_fail(e, "%.17g is not an %s", v, tname);
  }
  if (t == TCDATA && hi == INT64_MAX) {
    int ok;
    lua_rawgeti(L, LUA_ENVIRONINDEX, 2); /* unbox */
    lua_pushvalue(L, idx);
    lua_pushnumber(L, (lua_Number)(uintptr_t)out);
    lua_call(L, 2, 1);
    ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ok) return 0;
  }
  return enc_fail(e, "expected an %s, got %s", tname, type_name(L, idx));
}

static int enc_value(enc_t *e, const tc_type_t *ty, int idx);

/* A field header: type t, or in the compact protocol its code ct (for a
 * bool field, the value), as a delta from the previous id when it can. */
static int put_field_header(enc_t *e, int t, uint8_t ct, int16_t id) {
  int delta = id - e->last_id;
  if (e->proto == BP__T_BINARY) return put_byte(e, (uint8_t)t) || put_be(e, (uint16_t)id, 2);
  e->last_id = id;
  if (delta > 0 && delta <= 15) return put_byte(e, (uint8_t)(delta << 4 | ct));
  return put_byte(e, ct) || put_varint(e, zigzag(id));
}

static int enc_struct(enc_t *e, const tc_struct_t *st, int idx) {
  lua_State *L = e->L;
  const char *where = e->where, *field = e->field;
  int16_t last_id = e->last_id;
  if (!lua_istable(L, idx)) {
    if (!e->where) {
      e->where = st->name;
      return enc_fail(e, "expected a table, got %s", type_name(L, idx));
    }
    return enc_fail(e, "expected a table (%s), got %s", st->name, type_name(L, idx));
  }
  if (++e->depth > BP__T_MAX_DEPTH) return enc_fail(e, "nested deeper than %d", BP__T_MAX_DEPTH);
  if (!lua_checkstack(L, 8)) return enc_fail(e, "out of Lua stack");
  e->where = st->name;
  e->field = NULL;
  e->last_id = 0;
  if (st->kind == KIND_UNION) {
    int set = 0;
    for (int i = 0; i < st->nfields; i++) {
      lua_rawgeti(L, e->env, st->fields[i].name_ref);
      lua_rawget(L, idx);
      set += !lua_isnil(L, -1);
      lua_pop(L, 1);
    }
    if (set != 1) return enc_fail(e, "a union needs exactly one field set, not %d", set);
  }
  for (int i = 0; i < st->nfields; i++) {
    const tc_field_t *f = &st->fields[i];
    int v;
    lua_rawgeti(L, e->env, f->name_ref);
    lua_rawget(L, idx);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      if (f->default_ref && f->req != REQ_OPTIONAL) {
        lua_rawgeti(L, e->env, f->default_ref);
      } else if (f->req == REQ_REQUIRED) {
        e->field = f->name;
        return enc_fail(e, "required field is missing");
      } else {
        continue;
      }
    }
    v = lua_gettop(L);
    e->field = f->name;
    if (e->proto == BP__T_COMPACT && f->type.t == BP__T_BOOL) { /* the value is in the header */
      if (lua_type(L, v) != LUA_TBOOLEAN)
        return enc_fail(e, "expected a boolean, got %s", type_name(L, v));
      if (put_field_header(e, BP__T_BOOL, lua_toboolean(L, v) ? 1 : 2, f->id)) return -1;
      lua_pop(L, 1);
      continue;
    }
    if (put_field_header(e, f->type.t, to_compact[f->type.t], f->id)) return -1;
    if (enc_value(e, &f->type, v)) return -1;
    e->field = f->name; /* a nested struct changed it */
    e->where = st->name;
    lua_pop(L, 1);
  }
  if (put_byte(e, BP__T_STOP)) return -1;
  e->depth--;
  e->where = where;
  e->field = field;
  e->last_id = last_id;
  return 0;
}

static int enc_list_header(enc_t *e, uint8_t t, size_t n) {
  if (n > INT32_MAX) return enc_fail(e, "too many elements");
  if (e->proto == BP__T_BINARY) return put_byte(e, t) || put_be(e, (uint32_t)n, 4);
  if (n < 15) return put_byte(e, (uint8_t)(n << 4 | to_compact[t]));
  return put_byte(e, (uint8_t)(0xf0 | to_compact[t])) || put_varint(e, n);
}

static int enc_value(enc_t *e, const tc_type_t *ty, int idx) {
  lua_State *L = e->L;
  int64_t i;
  switch (ty->t) {
    case BP__T_BOOL:
      if (lua_type(L, idx) != LUA_TBOOLEAN)
        return enc_fail(e, "expected a boolean, got %s", type_name(L, idx));
      if (e->proto == BP__T_BINARY) return put_byte(e, lua_toboolean(L, idx) ? 1 : 0);
      return put_byte(e, lua_toboolean(L, idx) ? 1 : 2);
    case BP__T_BYTE:
      if (get_int(e, idx, INT8_MIN, INT8_MAX, "i8 (byte)", &i)) return -1;
      return put_byte(e, (uint8_t)i);
    case BP__T_I16:
      if (get_int(e, idx, INT16_MIN, INT16_MAX, "i16", &i)) return -1;
      return e->proto == BP__T_BINARY ? put_be(e, (uint64_t)i, 2) : put_varint(e, zigzag(i));
    case BP__T_I32:
      if (get_int(e, idx, INT32_MIN, INT32_MAX, "i32", &i)) return -1;
      return e->proto == BP__T_BINARY ? put_be(e, (uint64_t)i, 4) : put_varint(e, zigzag(i));
    case BP__T_I64:
      if (get_int(e, idx, INT64_MIN, INT64_MAX, "i64", &i)) return -1;
      return e->proto == BP__T_BINARY ? put_be(e, (uint64_t)i, 8) : put_varint(e, zigzag(i));
    case BP__T_DOUBLE: {
      double d;
      uint64_t u;
      if (lua_type(L, idx) != LUA_TNUMBER)
        return enc_fail(e, "expected a number, got %s", type_name(L, idx));
      d = lua_tonumber(L, idx);
      memcpy(&u, &d, 8);
      if (e->proto == BP__T_BINARY) return put_be(e, u, 8);
      {
        uint8_t le[8];
        for (int k = 0; k < 8; k++, u >>= 8) le[k] = (uint8_t)u;
        return put(e, le, 8);
      }
    }
    case BP__T_STRING: {
      size_t n;
      const char *s;
      if (lua_type(L, idx) != LUA_TSTRING)
        return enc_fail(e, "expected a string, got %s", type_name(L, idx));
      s = lua_tolstring(L, idx, &n);
      if (n > INT32_MAX) return enc_fail(e, "string too long");
      if (e->proto == BP__T_BINARY ? put_be(e, n, 4) : put_varint(e, n)) return -1;
      return put(e, s, n);
    }
    case BP__T_STRUCT:
      return enc_struct(e, ty->st, idx);
    case BP__T_LIST:
    case BP__T_SET: {
      size_t n;
      int rc = 0;
      if (!lua_istable(L, idx))
        return enc_fail(e, "expected a table (an array), got %s", type_name(L, idx));
      if (++e->depth > BP__T_MAX_DEPTH)
        return enc_fail(e, "nested deeper than %d", BP__T_MAX_DEPTH);
      if (!lua_checkstack(L, 4)) return enc_fail(e, "out of Lua stack");
      n = lua_objlen(L, idx);
      if (enc_list_header(e, ty->elem->t, n)) return -1;
      for (size_t k = 1; k <= n && !rc; k++) {
        lua_rawgeti(L, idx, (int)k);
        if (lua_isnil(L, -1))
          rc = enc_fail(e, "element %d is nil", (int)k);
        else
          rc = enc_value(e, ty->elem, lua_gettop(L));
        lua_pop(L, 1);
      }
      e->depth--;
      return rc;
    }
    case BP__T_MAP: {
      size_t n = 0;
      if (!lua_istable(L, idx)) return enc_fail(e, "expected a table, got %s", type_name(L, idx));
      if (++e->depth > BP__T_MAX_DEPTH)
        return enc_fail(e, "nested deeper than %d", BP__T_MAX_DEPTH);
      if (!lua_checkstack(L, 6)) return enc_fail(e, "out of Lua stack");
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        n++;
        lua_pop(L, 1);
      }
      if (n > INT32_MAX) return enc_fail(e, "too many entries");
      if (e->proto == BP__T_BINARY) {
        if (put_byte(e, ty->elem->t) || put_byte(e, ty->val->t) || put_be(e, n, 4)) return -1;
      } else if (n == 0) {
        if (put_byte(e, 0)) return -1;
      } else if (put_varint(e, n) ||
                 put_byte(e, (uint8_t)(to_compact[ty->elem->t] << 4 | to_compact[ty->val->t]))) {
        return -1;
      }
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        if (enc_value(e, ty->elem, top - 1) || enc_value(e, ty->val, top)) {
          lua_pop(L, 2);
          return -1;
        }
        lua_pop(L, 1);
      }
      e->depth--;
      return 0;
    }
  }
  return enc_fail(e, "unknown type");
}

static tc_codec_t *check_root(lua_State *L, int idx, int root_idx, const tc_struct_t **st) {
  tc_codec_t *c = luaL_checkudata(L, idx, CODEC_MT);
  int i = luaL_checkint(L, root_idx);
  if (i < 1 || i > c->nroots) luaL_argerror(L, root_idx, "no such struct in this codec");
  *st = c->roots[i - 1];
  return c;
}

static int check_proto(lua_State *L, int idx) {
  int p = luaL_checkint(L, idx);
  if (p != BP__T_BINARY && p != BP__T_COMPACT)
    luaL_argerror(L, idx, "protocol must be 0 (binary) or 1 (compact)");
  return p;
}

static void enc_init(enc_t *e, lua_State *L, int codec_idx, int proto) {
  memset(e, 0, sizeof *e);
  e->L = L;
  e->b = &scratch;
  e->proto = proto;
  scratch.len = 0;
  lua_getfenv(L, codec_idx);
  e->env = lua_gettop(L);
}

/* encode(codec, root, value, proto) -> bytes; raises when the value does
 * not fit the schema. */
static int l_encode(lua_State *L) {
  const tc_struct_t *st;
  enc_t e;
  int proto;
  check_root(L, 1, 2, &st);
  proto = check_proto(L, 4);
  lua_settop(L, 4);
  enc_init(&e, L, 1, proto);
  if (enc_struct(&e, st, 3)) {
    lua_pushstring(L, e.err);
    return lua_error(L);
  }
  lua_pushlstring(L, (const char *)scratch.p, scratch.len);
  return 1;
}

static int put_message_header(enc_t *e, const char *name, size_t n, int mtype, int32_t seqid) {
  if (n > INT32_MAX) return enc_fail(e, "method name too long");
  if (e->proto == BP__T_BINARY)
    return put_be(e, 0x80010000u | (uint32_t)mtype, 4) || put_be(e, n, 4) || put(e, name, n) ||
           put_be(e, (uint32_t)seqid, 4);
  return put_byte(e, 0x82) || put_byte(e, (uint8_t)(1 | mtype << 5)) ||
         put_varint(e, (uint32_t)seqid) || put_varint(e, n) || put(e, name, n);
}

size_t bp__thrift_write_app_exception(int proto, const char *name, size_t name_len, int32_t seqid,
                                      int type, const char *message, void *out, size_t cap) {
  tbuf_t b = {NULL, 0, 0};
  enc_t e;
  size_t mlen = message ? strlen(message) : 0, len = 0;
  memset(&e, 0, sizeof e);
  e.b = &b;
  e.proto = proto;
  if (!put_message_header(&e, name, name_len, BP__T_EXCEPTION, seqid) &&
      (!message || (!put_field_header(&e, BP__T_STRING, 8, 1) &&
                    !(proto == BP__T_BINARY ? put_be(&e, mlen, 4) : put_varint(&e, mlen)) &&
                    !put(&e, message, mlen))) &&
      !put_field_header(&e, BP__T_I32, 5, 2) &&
      !(proto == BP__T_BINARY ? put_be(&e, (uint32_t)type, 4) : put_varint(&e, zigzag(type))) &&
      !put_byte(&e, BP__T_STOP)) {
    len = b.len;
    if (len <= cap) memcpy(out, b.p, len);
  }
  free(b.p);
  return len;
}

/* encode_message(name, type, seqid, codec, root, value, proto) -> bytes. */
static int l_encode_message(lua_State *L) {
  size_t n;
  const char *name = luaL_checklstring(L, 1, &n);
  int mtype = luaL_checkint(L, 2);
  lua_Number seq = luaL_checknumber(L, 3);
  const tc_struct_t *st;
  enc_t e;
  int proto;
  check_root(L, 4, 5, &st);
  proto = check_proto(L, 7);
  if (mtype < BP__T_CALL || mtype > BP__T_ONEWAY) luaL_argerror(L, 2, "message type must be 1..4");
  if (seq != floor(seq) || seq < INT32_MIN || seq > INT32_MAX)
    luaL_argerror(L, 3, "seqid must be an i32");
  lua_settop(L, 7);
  enc_init(&e, L, 4, proto);
  if (put_message_header(&e, name, n, mtype, (int32_t)seq) || enc_struct(&e, st, 6)) {
    lua_pushstring(L, e.err);
    return lua_error(L);
  }
  lua_pushlstring(L, (const char *)scratch.p, scratch.len);
  return 1;
}

/* ---- decode --------------------------------------------------------------- */

typedef struct {
  lua_State *L;
  const uint8_t *p, *end;
  int proto;
  int env;
  int depth;
  const char *where;
  int short_input; /* the input ended, or a size exceeded what remains */
  char err[256];
} dec_t;

static int dec_fail(dec_t *d, const char *fmt, ...) {
  va_list ap;
  int n;
  if (d->err[0]) return -1; /* keep the first, innermost message */
  n = snprintf(d->err, sizeof d->err, "%s: ", d->where ? d->where : "thrift");
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof d->err) vsnprintf(d->err + n, sizeof d->err - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

#define NEED(d, n)                                                   \
  do {                                                               \
    if ((size_t)((d)->end - (d)->p) < (size_t)(n))                   \
      return (d)->short_input = 1, dec_fail((d), "truncated input"); \
  } while (0)

static int get_be(dec_t *d, int n, uint64_t *out) {
  uint64_t v = 0;
  NEED(d, n);
  for (int i = 0; i < n; i++) v = v << 8 | d->p[i];
  d->p += n;
  *out = v;
  return 0;
}

static int get_signed(dec_t *d, int n, int64_t *out);

static int get_varint(dec_t *d, int max_bytes, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0, i = 0;; i++, shift += 7) {
    uint8_t b;
    if (i >= max_bytes) return dec_fail(d, "varint too long");
    NEED(d, 1);
    b = *d->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  *out = v;
  return 0;
}

static inline int64_t unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

/* A length or count: never negative, never more than fits in what remains
 * when each element takes at least `min` bytes. */
static int get_size(dec_t *d, size_t min, const char *what, uint32_t *out) {
  uint64_t v = 0;
  if (d->proto == BP__T_BINARY) {
    if (get_be(d, 4, &v)) return -1;
    if ((int32_t)v < 0) return dec_fail(d, "negative %s %d", what, (int32_t)v);
  } else {
    if (get_varint(d, 5, &v)) return -1;
    if (v > INT32_MAX) return dec_fail(d, "%s %llu too large", what, (unsigned long long)v);
  }
  if (min && v > (uint64_t)(d->end - d->p) / min)
    return d->short_input = 1, dec_fail(d, "%s %llu exceeds the %zu bytes left", what,
                                        (unsigned long long)v, (size_t)(d->end - d->p));
  *out = (uint32_t)v;
  return 0;
}

/* The smallest encoding of a value of wire type t. */
static size_t min_size(int proto, int t) {
  static const uint8_t binary[16] = {
      [BP__T_BOOL] = 1, [BP__T_BYTE] = 1,   [BP__T_I16] = 2,    [BP__T_I32] = 4,
      [BP__T_I64] = 8,  [BP__T_DOUBLE] = 8, [BP__T_STRING] = 4, [BP__T_STRUCT] = 1,
      [BP__T_MAP] = 6,  [BP__T_SET] = 5,    [BP__T_LIST] = 5};
  if (proto == BP__T_BINARY) return binary[t & 15] ? binary[t & 15] : 1;
  return t == BP__T_DOUBLE ? 8 : 1;
}

static const int8_t from_compact[16] = {
    [1] = BP__T_BOOL, [2] = BP__T_BOOL, [3] = BP__T_BYTE,   [4] = BP__T_I16,
    [5] = BP__T_I32,  [6] = BP__T_I64,  [7] = BP__T_DOUBLE, [8] = BP__T_STRING,
    [9] = BP__T_LIST, [10] = BP__T_SET, [11] = BP__T_MAP,   [12] = BP__T_STRUCT};

static int valid_type(int t) {
  switch (t) {
    case BP__T_BOOL:
    case BP__T_BYTE:
    case BP__T_DOUBLE:
    case BP__T_I16:
    case BP__T_I32:
    case BP__T_I64:
    case BP__T_STRING:
    case BP__T_STRUCT:
    case BP__T_MAP:
    case BP__T_SET:
    case BP__T_LIST:
      return 1;
  }
  return 0;
}

/* A wire type read from the input (an element or key type), as BP__T_*. */
static int wire_type(dec_t *d, int raw, int *out) {
  int t = d->proto == BP__T_BINARY ? raw : (raw >= 0 && raw < 16 ? from_compact[raw] : 0);
  if (!valid_type(t)) return dec_fail(d, "unknown wire type %d", raw);
  *out = t;
  return 0;
}

static int list_header(dec_t *d, int *et, uint32_t *n) {
  uint64_t v = 0;
  if (d->proto == BP__T_BINARY) {
    NEED(d, 1);
    if (wire_type(d, *d->p++, et)) return -1;
    return get_size(d, min_size(d->proto, *et), "list size", n);
  }
  NEED(d, 1);
  v = *d->p++;
  if (wire_type(d, (int)(v & 15), et)) return -1;
  if ((v >> 4) != 15) {
    *n = (uint32_t)(v >> 4);
    if (*n > (size_t)(d->end - d->p) / min_size(d->proto, *et))
      return d->short_input = 1, dec_fail(d, "list size exceeds the bytes left");
    return 0;
  }
  return get_size(d, min_size(d->proto, *et), "list size", n);
}

static int map_header(dec_t *d, int *kt, int *vt, uint32_t *n) {
  if (d->proto == BP__T_BINARY) {
    NEED(d, 2);
    if (wire_type(d, d->p[0], kt) || wire_type(d, d->p[1], vt)) return -1;
    d->p += 2;
    return get_size(d, min_size(d->proto, *kt) + min_size(d->proto, *vt), "map size", n);
  }
  if (get_size(d, 2, "map size", n)) return -1;
  if (*n == 0) {
    *kt = *vt = 0;
    return 0;
  }
  NEED(d, 1);
  if (wire_type(d, *d->p >> 4, kt) || wire_type(d, *d->p & 15, vt)) return -1;
  d->p++;
  if (*n > (size_t)(d->end - d->p) / (min_size(d->proto, *kt) + min_size(d->proto, *vt)))
    return d->short_input = 1, dec_fail(d, "map size exceeds the bytes left");
  return 0;
}

/* A field header: type (BP__T_*, BP__T_STOP at the end), id, and for a
 * compact bool its value (*boolv: -1 none, 0 or 1). */
static int field_header(dec_t *d, int16_t *last_id, int *t, int16_t *id, int *boolv) {
  uint8_t b;
  *boolv = -1;
  NEED(d, 1);
  b = *d->p++;
  if (d->proto == BP__T_BINARY) {
    uint64_t v = 0;
    if (b == BP__T_STOP) {
      *t = BP__T_STOP;
      return 0;
    }
    if (wire_type(d, b, t) || get_be(d, 2, &v)) return -1;
    *id = (int16_t)v;
    return 0;
  }
  if (b == 0) {
    *t = BP__T_STOP;
    return 0;
  }
  if (wire_type(d, b & 15, t)) return -1;
  if ((b & 15) == 1 || (b & 15) == 2) *boolv = (b & 15) == 1;
  if (b >> 4) {
    *id = (int16_t)(*last_id + (b >> 4));
  } else {
    int64_t z;
    if (get_signed(d, 2, &z)) return -1;
    *id = (int16_t)z;
  }
  *last_id = *id;
  return 0;
}

static int skip(dec_t *d, int t, int boolv);

static int skip_n(dec_t *d, int t, uint32_t n) {
  size_t fixed = 0;
  if (d->proto == BP__T_BINARY) {
    if (t == BP__T_BOOL || t == BP__T_BYTE)
      fixed = 1;
    else if (t == BP__T_I16)
      fixed = 2;
    else if (t == BP__T_I32)
      fixed = 4;
    else if (t == BP__T_I64 || t == BP__T_DOUBLE)
      fixed = 8;
  } else if (t == BP__T_BOOL || t == BP__T_BYTE) {
    fixed = 1;
  } else if (t == BP__T_DOUBLE) {
    fixed = 8;
  }
  if (fixed) {
    NEED(d, (uint64_t)fixed * n);
    d->p += fixed * n;
    return 0;
  }
  for (uint32_t i = 0; i < n; i++)
    if (skip(d, t, -1)) return -1;
  return 0;
}

/* Skip one value of wire type t (a field nobody asked for). */
static int skip(dec_t *d, int t, int boolv) {
  uint64_t v = 0;
  uint32_t n;
  int rc = 0;
  switch (t) {
    case BP__T_BOOL:
      if (boolv >= 0) return 0;
      /* fall through */
    case BP__T_BYTE:
      return skip_n(d, t, 1);
    case BP__T_DOUBLE:
      return skip_n(d, t, 1);
    case BP__T_I16:
    case BP__T_I32:
    case BP__T_I64:
      if (d->proto == BP__T_BINARY) return skip_n(d, t, 1);
      return get_varint(d, 10, &v);
    case BP__T_STRING:
      if (get_size(d, 1, "string length", &n)) return -1;
      d->p += n;
      return 0;
    case BP__T_STRUCT: {
      int16_t last = 0, id;
      int ft, bv;
      if (++d->depth > BP__T_MAX_DEPTH)
        return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
      for (;;) {
        if (field_header(d, &last, &ft, &id, &bv)) return -1;
        if (ft == BP__T_STOP) break;
        if (skip(d, ft, bv)) return -1;
      }
      d->depth--;
      return 0;
    }
    case BP__T_LIST:
    case BP__T_SET: {
      int et;
      if (++d->depth > BP__T_MAX_DEPTH)
        return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
      if (list_header(d, &et, &n)) return -1;
      rc = skip_n(d, et, n);
      d->depth--;
      return rc;
    }
    case BP__T_MAP: {
      int kt, vt;
      if (++d->depth > BP__T_MAX_DEPTH)
        return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
      if (map_header(d, &kt, &vt, &n)) return -1;
      for (uint32_t i = 0; i < n && !rc; i++) rc = skip(d, kt, -1) || skip(d, vt, -1);
      d->depth--;
      return rc;
    }
  }
  return dec_fail(d, "unknown wire type %d", t);
}

static int dec_value(dec_t *d, const tc_type_t *ty);

/* A signed integer of n bytes (2, 4 or 8): big-endian in the binary
 * protocol, a zigzag varint in range in the compact one. */
static int get_signed(dec_t *d, int n, int64_t *out) {
  uint64_t v = 0;
  int64_t z, half;
  if (d->proto == BP__T_BINARY) {
    if (get_be(d, n, &v)) return -1;
    *out = n == 2 ? (int16_t)v : n == 4 ? (int32_t)v : (int64_t)v;
    return 0;
  }
  if (get_varint(d, n == 2 ? 3 : n == 4 ? 5 : 10, &v)) return -1;
  z = unzigzag(v);
  half = n == 8 ? INT64_MAX : (int64_t)1 << (8 * n - 1);
  if (n < 8 && (z < -half || z >= half)) return dec_fail(d, "i%d out of range", 8 * n);
  *out = z;
  return 0;
}

static void push_int64(dec_t *d, int64_t v) {
  lua_State *L = d->L;
  lua_rawgeti(L, LUA_ENVIRONINDEX, 1);          /* box */
  lua_pushnumber(L, (lua_Number)(uintptr_t)&v); /* a number: ffi.cast compiles it */
  lua_call(L, 1, 1);
}

/* A fresh copy of the default at env[ref] (tables are copied, so that a
 * decoded value never shares one with the schema or another value). */
static void push_copy(lua_State *L, int idx, int depth) {
  int t;
  if (!lua_istable(L, idx) || depth > BP__T_MAX_DEPTH || !lua_checkstack(L, 4)) {
    lua_pushvalue(L, idx);
    return;
  }
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  lua_newtable(L);
  t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    push_copy(L, -2, depth + 1);
    lua_rawset(L, t);
    lua_pop(L, 1);
  }
}

static const tc_field_t *find_field(const tc_struct_t *st, int16_t id, int hint) {
  int lo = 0, hi = st->nfields - 1;
  if (hint < st->nfields && st->fields[hint].id == id) return &st->fields[hint];
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (st->fields[mid].id == id) return &st->fields[mid];
    if (st->fields[mid].id < id)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

static int dec_struct(dec_t *d, const tc_struct_t *st) {
  lua_State *L = d->L;
  const char *where = d->where;
  int16_t last = 0, id = 0;
  int tbl, hint = 0, set = 0;
  if (++d->depth > BP__T_MAX_DEPTH) return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
  if (!lua_checkstack(L, 8)) return dec_fail(d, "out of Lua stack");
  d->where = st->name;
  lua_createtable(L, 0, st->nfields);
  tbl = lua_gettop(L);
  for (;;) {
    int t, boolv;
    const tc_field_t *f;
    if (field_header(d, &last, &t, &id, &boolv)) return -1;
    if (t == BP__T_STOP) break;
    f = find_field(st, id, hint);
    if (!f || f->type.t != t) { /* as Apache's generated code: skip it */
      if (skip(d, t, boolv)) return -1;
      continue;
    }
    hint = (int)(f - st->fields) + 1;
    lua_rawgeti(L, d->env, f->name_ref);
    if (boolv >= 0) {
      lua_pushboolean(L, boolv);
    } else if (dec_value(d, &f->type)) {
      return -1;
    }
    d->where = st->name;
    lua_rawset(L, tbl);
  }
  for (int i = 0; st->checked && i < st->nfields; i++) {
    const tc_field_t *f = &st->fields[i];
    lua_rawgeti(L, d->env, f->name_ref);
    lua_rawget(L, tbl);
    if (!lua_isnil(L, -1)) {
      set++;
    } else if (f->req == REQ_REQUIRED) {
      return dec_fail(d, "required field %s is missing", f->name);
    } else if (f->default_ref) {
      /* Apache's generated constructors set defaults; the wire overrides. */
      lua_rawgeti(L, d->env, f->name_ref);
      lua_rawgeti(L, d->env, f->default_ref);
      push_copy(L, -1, 0);
      lua_remove(L, -2);
      lua_rawset(L, tbl);
    }
    lua_pop(L, 1);
  }
  if (st->kind == KIND_UNION && set != 1)
    return dec_fail(d, "a union needs exactly one field set, not %d", set);
  d->where = where;
  d->depth--;
  return 0;
}

static int check_elem(dec_t *d, const tc_type_t *want, int got, uint32_t n) {
  if (n == 0 || want->t == got) return 0;
  return dec_fail(d, "elements of wire type %d where %d was expected", got, want->t);
}

static int dec_value(dec_t *d, const tc_type_t *ty) {
  lua_State *L = d->L;
  uint64_t v = 0;
  int64_t z;
  uint32_t n;
  switch (ty->t) {
    case BP__T_BOOL:
      NEED(d, 1);
      lua_pushboolean(L, d->proto == BP__T_BINARY ? *d->p != 0 : *d->p == 1);
      d->p++;
      return 0;
    case BP__T_BYTE:
      NEED(d, 1);
      lua_pushnumber(L, (int8_t)*d->p++);
      return 0;
    case BP__T_I16:
    case BP__T_I32:
      if (get_signed(d, ty->t == BP__T_I16 ? 2 : 4, &z)) return -1;
      lua_pushnumber(L, (lua_Number)z);
      return 0;
    case BP__T_I64:
      if (get_signed(d, 8, &z)) return -1;
      push_int64(d, z);
      return 0;
    case BP__T_DOUBLE: {
      double x;
      NEED(d, 8);
      v = 0;
      if (d->proto == BP__T_BINARY) {
        for (int i = 0; i < 8; i++) v = v << 8 | d->p[i];
      } else {
        for (int i = 7; i >= 0; i--) v = v << 8 | d->p[i];
      }
      d->p += 8;
      memcpy(&x, &v, 8);
      lua_pushnumber(L, x);
      return 0;
    }
    case BP__T_STRING:
      if (get_size(d, 1, "string length", &n)) return -1;
      lua_pushlstring(L, (const char *)d->p, n);
      d->p += n;
      return 0;
    case BP__T_STRUCT:
      return dec_struct(d, ty->st);
    case BP__T_LIST:
    case BP__T_SET: {
      int et, tbl;
      if (++d->depth > BP__T_MAX_DEPTH)
        return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
      if (!lua_checkstack(L, 4)) return dec_fail(d, "out of Lua stack");
      if (list_header(d, &et, &n) || check_elem(d, ty->elem, et, n)) return -1;
      lua_createtable(L, (int)n, 0);
      tbl = lua_gettop(L);
      for (uint32_t i = 1; i <= n; i++) {
        if (dec_value(d, ty->elem)) return -1;
        lua_rawseti(L, tbl, (int)i);
      }
      d->depth--;
      return 0;
    }
    case BP__T_MAP: {
      int kt, vt, tbl;
      if (++d->depth > BP__T_MAX_DEPTH)
        return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
      if (!lua_checkstack(L, 6)) return dec_fail(d, "out of Lua stack");
      if (map_header(d, &kt, &vt, &n) || check_elem(d, ty->elem, kt, n) ||
          check_elem(d, ty->val, vt, n))
        return -1;
      lua_createtable(L, 0, (int)n);
      tbl = lua_gettop(L);
      for (uint32_t i = 0; i < n; i++) {
        if (dec_value(d, ty->elem)) return -1;
        if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
          return dec_fail(d, "a map key is NaN");
        if (dec_value(d, ty->val)) return -1;
        lua_rawset(L, tbl);
      }
      d->depth--;
      return 0;
    }
  }
  return dec_fail(d, "unknown type");
}

static size_t check_pos(lua_State *L, int idx, size_t len) {
  lua_Number pos = luaL_optnumber(L, idx, 1);
  if (pos != floor(pos) || pos < 1 || pos > (lua_Number)len + 1)
    luaL_argerror(L, idx, "position out of range");
  return (size_t)pos - 1;
}

/* decode(codec, root, bytes, proto[, pos]) -> value, next_pos | nil, err */
static int l_decode(lua_State *L) {
  const tc_struct_t *st;
  dec_t d;
  size_t len, pos;
  const char *s;
  check_root(L, 1, 2, &st);
  s = luaL_checklstring(L, 3, &len);
  memset(&d, 0, sizeof d);
  d.proto = check_proto(L, 4);
  pos = check_pos(L, 5, len);
  lua_settop(L, 5);
  d.L = L;
  d.p = (const uint8_t *)s + pos;
  d.end = (const uint8_t *)s + len;
  lua_getfenv(L, 1);
  d.env = lua_gettop(L);
  if (dec_struct(&d, st)) {
    lua_settop(L, 0);
    lua_pushnil(L);
    lua_pushstring(L, d.err);
    return 2;
  }
  lua_pushnumber(L, (lua_Number)(d.p - (const uint8_t *)s) + 1);
  return 2;
}

/* The envelope at d->p into *m (name pointing into the input). */
static int read_message(dec_t *d, bp__thrift_message_t *m) {
  const uint8_t *start = d->p;
  uint64_t v = 0;
  uint32_t n;
  d->where = "message";
  if (d->proto == BP__T_BINARY) {
    if (get_be(d, 4, &v)) return -1;
    if ((int32_t)v < 0) {
      if ((v & 0xffff0000u) != 0x80010000u) return dec_fail(d, "bad version 0x%08x", (unsigned)v);
      m->type = (int)(v & 0xff);
      if (get_size(d, 1, "name length", &n)) return -1;
      m->name = (const char *)d->p;
      d->p += n;
      if (get_be(d, 4, &v)) return -1;
    } else { /* the old, non-strict header: the name first */
      n = (uint32_t)v;
      if (n > (size_t)(d->end - d->p)) {
        d->short_input = 1;
        return dec_fail(d, "name length %u exceeds the bytes left", n);
      }
      m->name = (const char *)d->p;
      d->p += n;
      if (get_be(d, 1, &v)) return -1;
      m->type = (int)v;
      if (get_be(d, 4, &v)) return -1;
    }
    m->seqid = (int32_t)(uint32_t)v;
  } else {
    if (get_be(d, 2, &v)) return -1;
    if ((v >> 8) != 0x82 || (v & 0x1f) != 1)
      return dec_fail(d, "not a compact protocol message (0x%04x)", (unsigned)v);
    m->type = (int)(v >> 5) & 7;
    if (get_varint(d, 5, &v)) return -1;
    m->seqid = (int32_t)(uint32_t)v;
    if (get_size(d, 1, "name length", &n)) return -1;
    m->name = (const char *)d->p;
    d->p += n;
  }
  m->name_len = n;
  if (m->type < BP__T_CALL || m->type > BP__T_ONEWAY)
    return dec_fail(d, "invalid message type %d", m->type);
  m->body = (size_t)(d->p - start);
  return 0;
}

int bp__thrift_read_message(const void *p, size_t len, int proto, bp__thrift_message_t *m,
                            char *err, size_t errlen) {
  dec_t d;
  memset(&d, 0, sizeof d);
  d.proto = proto;
  d.p = p;
  d.end = d.p + len;
  if (read_message(&d, m) == 0) return BP_OK;
  if (err && errlen) snprintf(err, errlen, "%s", d.err);
  return d.short_input ? BP_AGAIN : BP_ERROR;
}

/* Finding where an unframed message ends, resumably: the body is walked
 * with an explicit stack, one step at a time (a field header and its
 * value, a container's header, an element), and when the input runs out
 * the walk stops before the step it could not finish and resumes there
 * once more bytes came. So a message that arrives in many reads is walked
 * once, not once per read. */
enum { SCAN_STRUCT, SCAN_LIST, SCAN_MAP };

void bp__thrift_scan_init(bp__thrift_scan_t *s) { memset(s, 0, sizeof *s); }

static int scan_push(dec_t *d, bp__thrift_scan_t *s, int kind, int t1, int t2, uint32_t left) {
  bp__thrift_scan_frame_t *f;
  if (s->depth >= BP__T_MAX_DEPTH) return dec_fail(d, "nested deeper than %d", BP__T_MAX_DEPTH);
  f = &s->stack[s->depth++];
  f->kind = (uint8_t)kind;
  f->t1 = (uint8_t)t1;
  f->t2 = (uint8_t)t2;
  f->last_id = 0;
  f->left = left;
  return 0;
}

/* One value of type t: a primitive whole, or a container's header (its
 * frame pushed). Pushes only once everything it reads is there. */
static int scan_value(dec_t *d, bp__thrift_scan_t *s, int t, int boolv) {
  uint32_t n;
  int a, b;
  switch (t) {
    case BP__T_STRUCT:
      return scan_push(d, s, SCAN_STRUCT, 0, 0, 0);
    case BP__T_LIST:
    case BP__T_SET:
      if (list_header(d, &a, &n)) return -1;
      return scan_push(d, s, SCAN_LIST, a, 0, n);
    case BP__T_MAP:
      if (map_header(d, &a, &b, &n)) return -1;
      return scan_push(d, s, SCAN_MAP, a, b, n * 2); /* (n < 2^31) */
  }
  return skip(d, t, boolv);
}

int bp__thrift_message_scan(bp__thrift_scan_t *s, const void *p, size_t len, int proto,
                            bp__thrift_message_t *m, size_t *end, char *err, size_t errlen) {
  const uint8_t *in = p;
  size_t head = len < sizeof s->head ? len : sizeof s->head;
  dec_t d;
  memset(&d, 0, sizeof d);
  d.proto = proto;
  d.end = in + len;
  /* Resume only on the same input, grown; anything else starts over. */
  if (s->started && (s->proto != proto || len < s->pos || head < s->head_len ||
                     memcmp(s->head, in, s->head_len) != 0))
    s->started = 0;
  if (!s->started) {
    d.p = in;
    if (read_message(&d, &s->msg) != 0) goto failed;
    s->name_off = (size_t)((const uint8_t *)s->msg.name - in);
    s->pos = s->msg.body;
    s->proto = proto;
    s->depth = 0;
    if (scan_push(&d, s, SCAN_STRUCT, 0, 0, 0)) goto failed;
    s->started = 1;
  }
  s->head_len = head;
  memcpy(s->head, in, head);
  d.where = "message body";
  d.p = in + s->pos;
  while (s->depth > 0) {
    bp__thrift_scan_frame_t *f = &s->stack[s->depth - 1];
    int rc = 0;
    s->steps++;
    if (f->kind == SCAN_STRUCT) {
      int16_t before = f->last_id, last = f->last_id, id;
      int t, boolv;
      rc = field_header(&d, &last, &t, &id, &boolv);
      if (!rc && t == BP__T_STOP) {
        s->depth--;
      } else if (!rc) {
        f->last_id = last; /* (a value scan_value cannot finish undoes it) */
        rc = scan_value(&d, s, t, boolv);
        if (rc) f->last_id = before;
      }
    } else if (f->left == 0) {
      s->depth--;
    } else {
      int t = f->kind == SCAN_LIST || (f->left & 1) == 0 ? f->t1 : f->t2;
      f->left--;
      rc = scan_value(&d, s, t, -1);
      if (rc) f->left++;
    }
    if (rc) goto failed; /* (the step is undone: the next call starts it at s->pos again) */
    s->pos = (size_t)(d.p - in);
  }
  *m = s->msg;
  m->name = (const char *)in + s->name_off;
  *end = s->pos;
  s->started = 0;
  return BP_OK;
failed:
  if (err && errlen) snprintf(err, errlen, "%s", d.err);
  if (d.short_input) return BP_AGAIN;
  s->started = 0;
  return BP_ERROR;
}

int bp__thrift_message_end(const void *p, size_t len, int proto, bp__thrift_message_t *m,
                           size_t *end, char *err, size_t errlen) {
  bp__thrift_scan_t s;
  bp__thrift_scan_init(&s);
  int rc = bp__thrift_message_scan(&s, p, len, proto, m, end, err, errlen);
  return rc;
}

/* decode_message(bytes, proto[, pos]) -> name, type, seqid, body_pos | nil, err */
static int l_decode_message(lua_State *L) {
  dec_t d;
  size_t len, pos;
  const char *s = luaL_checklstring(L, 1, &len);
  bp__thrift_message_t m;
  memset(&d, 0, sizeof d);
  d.proto = check_proto(L, 2);
  pos = check_pos(L, 3, len);
  d.L = L;
  d.p = (const uint8_t *)s + pos;
  d.end = (const uint8_t *)s + len;
  if (read_message(&d, &m)) {
    lua_pushnil(L);
    lua_pushstring(L, d.err);
    return 2;
  }
  lua_pushlstring(L, m.name, m.name_len);
  lua_pushinteger(L, m.type);
  lua_pushnumber(L, m.seqid);
  lua_pushnumber(L, (lua_Number)(pos + m.body) + 1);
  return 4;
}

/* set_int64_helpers(box, unbox): see the top of the file. */
static int l_set_int64_helpers(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_rawseti(L, LUA_ENVIRONINDEX, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, LUA_ENVIRONINDEX, 2);
  return 0;
}

static int luaopen_thrift_c(lua_State *L) {
  static const luaL_Reg fns[] = {{"compile", l_compile},
                                 {"encode", l_encode},
                                 {"decode", l_decode},
                                 {"encode_message", l_encode_message},
                                 {"decode_message", l_decode_message},
                                 {"set_int64_helpers", l_set_int64_helpers},
                                 {NULL, NULL}};
  if (luaL_newmetatable(L, CODEC_MT)) {
    lua_pushcfunction(L, codec_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  /* The functions' shared environment holds the int64 helpers. */
  lua_newtable(L);
  lua_replace(L, LUA_ENVIRONINDEX);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}

void bp__thrift_codec_preload(lua_State *L) {
  bp__lua_preload(L, "baseplate.thrift_c", luaopen_thrift_c);
}
