/*
 * memcached connections (docs/memcache.md): memcached's text protocol on a
 * libuv TCP stream (or UNIX socket) of the process's loop, on the clients'
 * common connection. The loop is never blocked: names are resolved with
 * uv_getaddrinfo, connecting, writing and reading wait for the socket, and
 * the connect and command time limits are loop timers.
 *
 * Commands are queued on the connection (bp_memcache_get, _gat, _store,
 * _delete, _incr, _touch, _flush_all, _stats, _version, _cache_memlimit)
 * and sent together in one write by
 * bp_memcache_send (a pipeline); the server answers each in turn. One
 * connection runs one operation at a time (a connect, then sends); the
 * pooling, spans, serializers and waiting are the Lua side's
 * (baseplate.clients.memcache). Operations follow the core's async
 * convention: the function returns BP_AGAIN and the coroutine waiting as
 * `waiter` is woken exactly once, from the loop, with the operation's
 * status; when a function returns anything else, nobody is woken. An idle
 * connection does not keep the loop alive.
 *
 * The server's replies are read as hostile input: a line longer than 1 KB,
 * a reply that does not answer its command (STORED to a get, a value for a
 * key nobody asked for, more values than keys), a malformed number, or a
 * value larger than the connection's max_item_size (announced, not
 * allocated) is a protocol error that breaks the connection.
 *
 * A connection that lost its server, timed out, read a protocol error or
 * failed to connect is broken: it cannot send again, bp_memcache_error()
 * says why, and the only thing left to do is bp_memcache_close().
 */
#ifndef BASEPLATE_MEMCACHE_H
#define BASEPLATE_MEMCACHE_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

typedef struct bp_memcache_conn_s bp_memcache_conn_t;

/* Storage commands (bp_memcache_store). */
#define BP_MEMCACHE_SET 1
#define BP_MEMCACHE_ADD 2
#define BP_MEMCACHE_REPLACE 3
#define BP_MEMCACHE_APPEND 4
#define BP_MEMCACHE_PREPEND 5
#define BP_MEMCACHE_CAS 6

/* Replies (bp_memcache_reply). */
#define BP_MEMCACHE_STORED 1
#define BP_MEMCACHE_NOT_STORED 2
#define BP_MEMCACHE_EXISTS 3
#define BP_MEMCACHE_NOT_FOUND 4
#define BP_MEMCACHE_DELETED 5
#define BP_MEMCACHE_TOUCHED 6
#define BP_MEMCACHE_OK 7
#define BP_MEMCACHE_END 8          /* a get's reply: its values are bp_memcache_value's */
#define BP_MEMCACHE_NUMBER 9       /* incr/decr: the new value */
#define BP_MEMCACHE_ERROR 10       /* "ERROR": the server did not know the command */
#define BP_MEMCACHE_CLIENT_ERROR 11 /* text: the server's message */
#define BP_MEMCACHE_SERVER_ERROR 12 /* text: the server's message */
#define BP_MEMCACHE_VERSION 13      /* version: text is the server's version */
#define BP_MEMCACHE_NOREPLY 14      /* a command sent with noreply: the server said nothing */

/* A key has 1 to 250 bytes, none of them a space or a control character. */
#define BP_MEMCACHE_MAX_KEY 250
/* memcached's own default item size limit (its -I option). */
#define BP_MEMCACHE_DEFAULT_MAX_ITEM ((size_t)1024 * 1024)

/** One value of a get's reply. */
typedef struct {
  const char *key;
  size_t key_len;
  const char *data; /* data_len bytes (it may hold NULs; not NUL-terminated) */
  size_t data_len;
  uint32_t flags;   /* the client's flags stored with the value */
  uint64_t cas;     /* gets: the value's CAS unique; 0 after get */
  int reply;        /* the index of the get it answers, 0-based */
} bp_memcache_value_t;

/**
 * Start connecting to host:port (`path` NULL), or to the UNIX socket `path`
 * (host NULL). `host` is an IPv4 or IPv6 address ("::1" or "[::1]") or a
 * name, resolved on libuv's thread pool, its addresses tried in turn.
 * connect_timeout (seconds, 0 = none) covers all of it. Values the server
 * announces larger than max_item_size bytes (0: BP_MEMCACHE_DEFAULT_MAX_ITEM)
 * are refused, and so are values larger than that given to
 * bp_memcache_store.
 *
 * On success *out gets the connection at once, owned by the caller (free it
 * with bp_memcache_close()), and BP_AGAIN is returned: `waiter` is woken
 * with BP_OK once connected, with BP_EIO when resolving or connecting failed,
 * or with BP_ETIMEDOUT; after either failure the connection is broken and
 * bp_memcache_error() says why.
 *
 * Errors at once (*out NULL, the reason in err, nobody woken): BP_EINVAL
 * (no host and no path, both, a port outside 1..65535, a path too long, a
 * negative or NaN timeout), BP_ENOMEM.
 */
BP_EXTERN int bp_memcache_connect(const char *host, int port, const char *path,
                                  double connect_timeout, size_t max_item_size, int waiter,
                                  bp_memcache_conn_t **out, char *err, size_t errlen);

/**
 * Whether key[0..len) is a key memcached takes: BP_OK, or BP_EINVAL with
 * the reason in err ("key is empty", "key is 300 bytes, longer than 250",
 * "key has a space or a control character at byte 3").
 */
BP_EXTERN int bp_memcache_check_key(const char *key, size_t len, char *err, size_t errlen);

/*
 * Queueing commands. Each returns BP_OK (the command is formatted into the
 * connection's batch: the caller's buffers are not needed afterwards) or,
 * with the reason in bp_memcache_error(), BP_EINVAL (a bad key, an unknown
 * command, a busy or broken connection), BP_ETOOBIG (a value larger than
 * max_item_size), BP_ENOMEM. A refused command drops the whole batch queued
 * so far (nothing of it is sent).
 */

/** get (or gets when `gets`) of nkeys >= 1 keys in one command. */
BP_EXTERN int bp_memcache_get(bp_memcache_conn_t *c, int gets, int nkeys, const char *const *keys,
                              const size_t *key_lens);

/**
 * gat (or gats when `gats`): get nkeys >= 1 keys and set the expiry of
 * those that have a value to exptime (as bp_memcache_store's), in one
 * command. Its reply and values are a get's.
 */
BP_EXTERN int bp_memcache_gat(bp_memcache_conn_t *c, int gats, long long exptime, int nkeys,
                              const char *const *keys, const size_t *key_lens);

/**
 * Whether the commands queued from now on go with memcached's `noreply`
 * (1) or wait for their reply (0, the default; every send sets it back to
 * 0). It applies to storage commands, delete, incr/decr, touch and
 * flush_all; the others always have a reply. Such a command's reply is
 * BP_MEMCACHE_NOREPLY: whether it was carried out is not known. A send of
 * noreply commands alone ends (its waiter is woken with BP_OK) once its
 * bytes are written.
 *
 * memcached may still answer a noreply command that failed (an error
 * line). The stream stays in step: the first command that waits for a
 * reply after noreply commands on the connection (in the same send or a
 * later one) is preceded by a `version`, and every line before its VERSION
 * is skipped, not taken for a reply; lines that arrive while no reply is
 * owed are dropped, as many as the noreply commands could have brought.
 */
BP_EXTERN void bp_memcache_set_noreply(bp_memcache_conn_t *c, int noreply);

/**
 * A storage command (BP_MEMCACHE_SET…): data[0..len) stored under key with
 * `flags` and `exptime` (0: never expires; seconds, or a Unix time past 30
 * days, as memcached reads it; negative: expired at once); `cas` is used by
 * BP_MEMCACHE_CAS only.
 */
BP_EXTERN int bp_memcache_store(bp_memcache_conn_t *c, int command, const char *key, size_t key_len,
                                uint32_t flags, long long exptime, uint64_t cas, const char *data,
                                size_t len);

/** delete key. */
BP_EXTERN int bp_memcache_delete(bp_memcache_conn_t *c, const char *key, size_t key_len);

/** incr (or decr when `decr`) key by delta. */
BP_EXTERN int bp_memcache_incr(bp_memcache_conn_t *c, int decr, const char *key, size_t key_len,
                               uint64_t delta);

/** touch key: its expiry becomes exptime. */
BP_EXTERN int bp_memcache_touch(bp_memcache_conn_t *c, const char *key, size_t key_len,
                                long long exptime);

/** flush_all, after `delay` seconds (0: now). */
BP_EXTERN int bp_memcache_flush_all(bp_memcache_conn_t *c, long long delay);

/**
 * stats, or "stats <args>" (args[0..len): words of printable ASCII, such
 * as "items", "slabs", "settings" or "reset"; len 0 for none). Its reply is
 * BP_MEMCACHE_END with one value per statistic (key: the name, data: the
 * value as the server wrote it, flags 0), at most max_stats of them (0:
 * 65536); or BP_MEMCACHE_OK for "reset" and others that answer RESET or OK.
 */
BP_EXTERN int bp_memcache_stats(bp_memcache_conn_t *c, const char *args, size_t len,
                                unsigned max_stats);

/** version: its reply is BP_MEMCACHE_VERSION, the version as its text. */
BP_EXTERN int bp_memcache_version(bp_memcache_conn_t *c);

/** cache_memlimit: the server's memory limit becomes `megabytes` (OK). */
BP_EXTERN int bp_memcache_cache_memlimit(bp_memcache_conn_t *c, long long megabytes);

/**
 * Send the queued commands in one write. BP_AGAIN: `waiter` is woken with
 * BP_OK once every command's reply is in (an ERROR, CLIENT_ERROR or
 * SERVER_ERROR is a reply, not a wake status), BP_EIO when the connection
 * was lost or the server broke the protocol (it is then broken),
 * BP_ETIMEDOUT when `timeout` seconds (0 = none) passed first (the
 * connection is then broken: what the server did is unknown), BP_ETOOBIG
 * when the server announced a value larger than max_item_size (broken too),
 * or BP_ENOMEM.
 *
 * At once, nobody woken: BP_EINVAL when nothing is queued, the connection
 * is busy or broken, or the timeout is negative. The previous send's
 * replies and values are gone once this is called.
 */
BP_EXTERN int bp_memcache_send(bp_memcache_conn_t *c, double timeout, int waiter);

/** How many replies the last send collected (all of them after BP_OK). */
BP_EXTERN int bp_memcache_reply_count(const bp_memcache_conn_t *c);

/**
 * Reply i (0-based: the i-th command queued) of the last send: its
 * BP_MEMCACHE_* kind, or 0 when out of range. *number (when not NULL) gets
 * incr/decr's value; *text and *len (when not NULL) an error reply's
 * message or the version (NULL and 0 for others), valid until the next send
 * or the close.
 */
BP_EXTERN int bp_memcache_reply(const bp_memcache_conn_t *c, int i, uint64_t *number,
                                const char **text, size_t *len);

/** How many values the last send's gets brought, all together. */
BP_EXTERN int bp_memcache_value_count(const bp_memcache_conn_t *c);

/**
 * Value i (0-based, in the order they came) of the last send into *out:
 * BP_OK, or BP_EINVAL when out of range. Its pointers are valid until the
 * next send or the close.
 */
BP_EXTERN int bp_memcache_value(const bp_memcache_conn_t *c, int i, bp_memcache_value_t *out);

/**
 * Why the last operation failed or the connection broke ("127.0.0.1:11211:
 * Connection refused", "timed out after 0.2s waiting for 1 of 3 replies",
 * "protocol error: …"); "" when nothing failed.
 */
BP_EXTERN const char *bp_memcache_error(const bp_memcache_conn_t *c);

/**
 * Bytes of buffers the connection holds now (commands, replies, their
 * index). Buffers are kept from one send to the next while small: a send
 * of more than 16 KB hands its bytes to the write, which frees them once
 * written, and a reply buffer larger than 64 KB is given back at the next
 * send (a burst of large values does not stay pinned to pooled
 * connections).
 */
BP_EXTERN size_t bp_memcache_buffered(const bp_memcache_conn_t *c);

/** Whether the connection can no longer send; 1 for NULL. */
BP_EXTERN int bp_memcache_broken(const bp_memcache_conn_t *c);

/** Whether an operation is in flight; 0 for NULL. */
BP_EXTERN int bp_memcache_busy(const bp_memcache_conn_t *c);

/**
 * Close the connection and free it; accepts NULL. Safe at any time: an
 * operation in flight is abandoned and its waiter woken with BP_ECLOSED
 * (later, from the loop), as bp_redis_close.
 */
BP_EXTERN void bp_memcache_close(bp_memcache_conn_t *c);

/**
 * zlib (the format of Python's zlib.compress, which Baseplate.py's memcache
 * serializers use) for the serializers: compress in[0..len) at `level`
 * (1..9), or inflate it (refusing output past max_out bytes: BP_ETOOBIG).
 * The result is in a buffer of the library's, valid until the next call of
 * either; *out and *out_len get it. BP_OK, BP_EINVAL (a bad level; input
 * that is not a zlib stream, with the reason in err), BP_ETOOBIG, BP_ENOMEM.
 */
BP_EXTERN int bp_memcache_zlib_compress(const char *in, size_t len, int level, const char **out,
                                        size_t *out_len, char *err, size_t errlen);
BP_EXTERN int bp_memcache_zlib_inflate(const char *in, size_t len, size_t max_out,
                                       const char **out, size_t *out_len, char *err, size_t errlen);

#endif
