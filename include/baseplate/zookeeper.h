/*
 * A ZooKeeper client on the process's loop (docs/live-data.md), over the
 * single-threaded C library of ZooKeeper (libzookeeper_st): its socket is
 * watched on the loop and its timer is a loop timer, so its callbacks run
 * on the loop's thread and nothing blocks (docs/architecture.md says why
 * this library rather than the threaded one).
 *
 * One handle is one client: it connects to one of `hosts` and keeps a
 * session, reconnecting after a connection loss for as long as it takes,
 * and making a new session when the old one expired (its credentials
 * added again). What happens to the session and the watches set by
 * bp_zk_call come out as events, in order (bp_zk_next_event).
 *
 * Operations follow the core's async convention: bp_zk_call returns an
 * operation and BP_AGAIN, and wakes `waiter` once from the loop with
 * BP_OK (the operation's outcome is bp_zk_result's), or with BP_ECLOSED
 * when the handle closed first.
 */
#ifndef BASEPLATE_ZOOKEEPER_H
#define BASEPLATE_ZOOKEEPER_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

typedef struct bp_zk_s bp_zk_t;
typedef struct bp_zk_op_s bp_zk_op_t;

/** Events (bp_zk_event). The first four are the session's; the others are
 * a watch's, with the node's path. */
#define BP_ZK_CONNECTED 1    /* connected (again); `session` says whether the session is new */
#define BP_ZK_DISCONNECTED 2 /* the connection was lost; reconnecting */
#define BP_ZK_EXPIRED 3      /* the session expired (its watches are gone); making a new one */
#define BP_ZK_AUTH_FAILED 4  /* the server refused the credentials; trying again later */
#define BP_ZK_CREATED 5      /* a watched node was created */
#define BP_ZK_DELETED 6      /* a watched node was deleted */
#define BP_ZK_CHANGED 7      /* a watched node's data changed */
#define BP_ZK_CHILD 8        /* a watched node's children changed */
#define BP_ZK_RESYNC 9       /* events were lost (the queue was full): read everything again */

/** Operations (bp_zk_call). */
#define BP_ZK_GET 1    /* data and stat; arg: 1 to watch the node */
#define BP_ZK_EXISTS 2 /* stat only; arg: 1 to watch the node (also when it does not exist) */
#define BP_ZK_SET 3    /* set data; arg: the expected version, -1 for any */
#define BP_ZK_CREATE 4 /* create with data; arg: 0 open ACL, 1 only the creator's identities */
#define BP_ZK_DELETE 5 /* arg: the expected version, -1 for any */

/** What an operation found (bp_zk_result). */
typedef struct bp_zk_stat_s {
  int64_t czxid;
  int64_t mzxid;
  int64_t ctime; /* milliseconds since the epoch */
  int64_t mtime;
  int32_t version;
  int32_t data_length;
  int64_t ephemeral_owner;
} bp_zk_stat_t;

/**
 * A client for `hosts` ("host:port,host:port[/chroot]"; spaces around the
 * commas, IPv6 addresses in brackets), sessions of `timeout` seconds,
 * `read_only` 1 to accept read-only servers. It starts connecting at once
 * (names are looked up first, on libuv's thread pool, and again before
 * each new session). NULL with the reason in err.
 */
BP_EXTERN bp_zk_t *bp_zk_new(const char *hosts, double timeout, int read_only, char *err,
                             size_t errlen);

/** Add credentials (`scheme` such as "digest", `cred` such as
 * "user:password"): sent now and on every new session. The credentials are
 * never logged. BP_OK, BP_ENOMEM, or BP_EINVAL. */
BP_EXTERN int bp_zk_add_auth(bp_zk_t *zk, const char *scheme, const char *cred, size_t len);

/** 1 while connected (reads are served), else 0. */
BP_EXTERN int bp_zk_connected(bp_zk_t *zk);

/** The session's ID (0 before the first connection). */
BP_EXTERN int64_t bp_zk_session_id(bp_zk_t *zk);

/** BP_OK when an event is waiting (bp_zk_event takes it), else BP_AGAIN and
 * `waiter` is woken with BP_OK once one is (BP_ECLOSED when the handle
 * closes). One waiter at a time: a second one gets BP_EINVAL. */
BP_EXTERN int bp_zk_next_event(bp_zk_t *zk, int waiter);

/** Take the oldest event: BP_OK with its type (BP_ZK_*), path (NUL
 * terminated, valid until the next bp_zk_event; "" for a session event) and,
 * for BP_ZK_CONNECTED, `session` 1 when the session is new; BP_ENOENT when
 * there is none. */
BP_EXTERN int bp_zk_event(bp_zk_t *zk, int *type, const char **path, int *session);

/**
 * Start operation `kind` (BP_ZK_*) on `path` with `data` (`len` bytes; SET
 * and CREATE) and `arg` (see the kinds). Returns the operation and sets *rc
 * to BP_AGAIN: `waiter` is woken once it is done. NULL with *rc BP_EINVAL
 * (a bad path or kind: bp_zk_error says which), BP_ENOMEM or BP_ECLOSED.
 */
BP_EXTERN bp_zk_op_t *bp_zk_call(bp_zk_t *zk, int kind, const char *path, const char *data,
                                 size_t len, int arg, int waiter, int *rc);

/** An operation's outcome: ZooKeeper's code (0 ZOK, -101 ZNONODE, -110
 * ZNODEEXISTS, -103 ZBADVERSION, -102 ZNOAUTH, -4 ZCONNECTIONLOSS…; see
 * bp_zk_strerror), with the data (GET; NULL for a node without data) and
 * the stat (GET, EXISTS, SET) when it succeeded. Valid until
 * bp_zk_op_free. */
BP_EXTERN int bp_zk_result(bp_zk_op_t *op, const char **data, size_t *len, bp_zk_stat_t *stat);

/** Free an operation; one still in flight is freed when it ends. */
BP_EXTERN void bp_zk_op_free(bp_zk_op_t *op);

/** ZooKeeper's name for code `zrc` ("no node", "bad version"…). */
BP_EXTERN const char *bp_zk_strerror(int zrc);

/** Why the last bp_zk_call of this handle failed. */
BP_EXTERN const char *bp_zk_error(bp_zk_t *zk);

/** Close the session and the handle: operations in flight and the event
 * waiter are woken with BP_ECLOSED from the loop; the memory goes once they
 * are. */
BP_EXTERN void bp_zk_close(bp_zk_t *zk);

#endif
