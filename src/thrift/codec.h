/* The Thrift codec (src/thrift/codec.c): values described by a schema
 * compiled from Lua tables, encoded and decoded in the binary and compact
 * protocols. Private to the core. */
#ifndef BASEPLATE_THRIFT_CODEC_H
#define BASEPLATE_THRIFT_CODEC_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

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

/* A message envelope. */
typedef struct {
  const char *name; /* into the input; not NUL-terminated */
  size_t name_len;
  int type; /* BP__T_CALL ... BP__T_ONEWAY */
  int32_t seqid;
  size_t body; /* where the body starts, from the start of the input */
} bp__thrift_message_t;

/* Reads the envelope at the start of p (len bytes) in protocol `proto`
 * (BP__T_BINARY: strict or the old header without a version;
 * BP__T_COMPACT). BP_OK and *m; BP_AGAIN when the input ends too soon (more
 * bytes could complete it); BP_ERROR when it cannot be a message. err (may
 * be NULL) gets the reason either way. */
int bp__thrift_read_message(const void *p, size_t len, int proto, bp__thrift_message_t *m,
                            char *err, size_t errlen);

/* Where an unframed message ends, found resumably (bp__thrift_message_scan). */
typedef struct {
  uint8_t kind, t1, t2; /* a struct, list or map being walked; element or key, value types */
  int16_t last_id;      /* a struct's last field id (the compact protocol's deltas) */
  uint32_t left;        /* elements (a map's keys and values) left */
} bp__thrift_scan_frame_t;

typedef struct {
  int started, proto;
  size_t pos;      /* how far the walk got, from the start of the input */
  size_t name_off; /* the envelope's name, from the start of the input */
  bp__thrift_message_t msg;
  uint8_t head[16]; /* the input's first bytes: a different input starts over */
  size_t head_len;
  int depth;
  unsigned long steps; /* steps taken, in all (never reset: the walk's cost, for tests) */
  bp__thrift_scan_frame_t stack[BP__T_MAX_DEPTH];
} bp__thrift_scan_t;

void bp__thrift_scan_init(bp__thrift_scan_t *s);
/* As bp__thrift_message_end, but when it returns BP_AGAIN the walk is kept
 * in *s and the next call, with the same input grown by more bytes,
 * resumes where it stopped: a message arriving in many pieces costs one
 * walk in all (a container's header waits until its elements' smallest
 * encodings are all in, then they are walked at once). A different input
 * starts over. The walk is over after BP_OK and BP_ERROR. */
int bp__thrift_message_scan(bp__thrift_scan_t *s, const void *p, size_t len, int proto,
                            bp__thrift_message_t *m, size_t *end, char *err, size_t errlen);

/* As bp__thrift_read_message, and finds where the message ends (its body
 * skipped, bounded by len and BP__T_MAX_DEPTH): *end, from the start of
 * the input. For transports that do not frame their messages. */
int bp__thrift_message_end(const void *p, size_t len, int proto, bp__thrift_message_t *m,
                           size_t *end, char *err, size_t errlen);

/* Writes a whole EXCEPTION message carrying a TApplicationException (type,
 * message) in reply to `name`/`seqid`, into out (cap bytes). Returns the
 * length of the message; it is written only when it fits (call with cap 0
 * to learn the size, as snprintf). 0 when out of memory. */
size_t bp__thrift_write_app_exception(int proto, const char *name, size_t name_len, int32_t seqid,
                                      int type, const char *message, void *out, size_t cap);

/* Makes require("baseplate.thrift_c") available in L. */
void bp__thrift_codec_preload(lua_State *L);

#endif
