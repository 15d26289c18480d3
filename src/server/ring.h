/*
 * The server core's io_uring path (internal; docs/architecture.md): one ring
 * per process, watched by the libuv loop through its descriptor. The core
 * (conn.c) arms multishot receives into a ring of provided buffers, sends
 * each answer as one submission, and accepts with (multishot) accept; what
 * was queued is submitted once per loop iteration. Completions come back
 * to the core through the bp__*_ring_* functions below.
 */
#ifndef BP_SERVER_RING_H
#define BP_SERVER_RING_H

#include <stddef.h>

typedef struct bp__conn_s bp__conn_t;
typedef struct bp_server_s bp__server_t;

/* The path new servers take: 1 io_uring (its ring open), 0 epoll. The
 * first call settles `auto` (BASEPLATE_SERVER_IO or bp_server_set_io). */
int bp__ring_use(void);

/* Queue an operation (submitted at the end of this loop iteration). BP_OK
 * or a negative errno (the submission queue could not be flushed). */
int bp__ring_recv(bp__conn_t *c, int fd);
int bp__ring_send(bp__conn_t *c, int fd, const char *buf, size_t len);
int bp__ring_accept(bp__server_t *s, int fd, int multishot);
/* Cancel c's receive, or s's accept: its last completion follows. */
int bp__ring_cancel_recv(bp__conn_t *c);
int bp__ring_cancel_accept(bp__server_t *s);
/* Operations that keep the loop alive (sends, armed accepts, the last
 * completions of closing connections): +1 / -1. */
void bp__ring_hold(int delta);

/* Completions (conn.c). `more`: the multishot operation goes on. A receive
 * hands its bytes in `data` (res > 0), valid during the call only. */
void bp__conn_ring_recv(bp__conn_t *c, int res, const char *data, int more);
void bp__conn_ring_sent(bp__conn_t *c, int res);
void bp__server_ring_accepted(bp__server_t *s, int res, int more);

#endif
