/* The Thrift codec (src/thrift/codec.c): values described by a schema
 * compiled from Lua tables, encoded and decoded in the binary and compact
 * protocols. Private to the core. */
#ifndef BASEPLATE_THRIFT_CODEC_H
#define BASEPLATE_THRIFT_CODEC_H

#include <lua.h>

/* Wire types, as the binary protocol numbers them; the compact protocol's
 * own numbers are mapped to these when read. */
enum {
  BP__T_STOP = 0,
  BP__T_BOOL = 2,
  BP__T_BYTE = 3,
  BP__T_DOUBLE = 4,
  BP__T_I16 = 6,
  BP__T_I32 = 8,
  BP__T_I64 = 10,
  BP__T_STRING = 11,
  BP__T_STRUCT = 12,
  BP__T_MAP = 13,
  BP__T_SET = 14,
  BP__T_LIST = 15
};

/* Message types of the envelope. */
enum { BP__T_CALL = 1, BP__T_REPLY = 2, BP__T_EXCEPTION = 3, BP__T_ONEWAY = 4 };

/* Protocols. */
enum { BP__T_BINARY = 0, BP__T_COMPACT = 1 };

/* How deep structs and containers may nest in what is decoded or encoded. */
#define BP__T_MAX_DEPTH 64

/* Makes require("baseplate.thrift_c") available in L. */
void bp__thrift_codec_preload(lua_State *L);

#endif
