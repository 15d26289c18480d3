/*
 * A socket that a library owns (libpq's, libcurl's; librdkafka's later),
 * watched on the loop: the glue every such client stands on. The library
 * says which events it wants; the watch calls back with what came, and
 * closes without touching the descriptor (the library closes it). Internal
 * to the library.
 */
#ifndef BP_CLIENTS_WATCH_H
#define BP_CLIENTS_WATCH_H

#include <uv.h>

typedef struct bp__watch_s bp__watch_t;

/* What came: status < 0 for a socket error (libuv reports POLLERR as
 * UV_EBADF and stops watching), else `events` (UV_READABLE, UV_WRITABLE). */
typedef void (*bp__watch_cb)(bp__watch_t *w, int status, int events);

struct bp__watch_s {
  uv_poll_t poll; /* first */
  int fd;
  int events; /* watched now */
  bp__watch_cb cb;
  void (*closed)(bp__watch_t *w); /* once closed, before the watch is freed */
  void *owner;
};

/* Watch `fd` (nothing yet: bp__watch_set says what). `handle_data` is the
 * libuv handle's data (what loop shutdown finds: the owner's closable);
 * `owner` is the caller's. NULL with a libuv error in *rc. */
bp__watch_t *bp__watch_new(int fd, void *handle_data, void *owner, bp__watch_cb cb,
                           void (*closed)(bp__watch_t *w), int *rc);
/* Watch for `events` (0: nothing for now); nothing is done when they are
 * the same. 0 or a libuv error. */
int bp__watch_set(bp__watch_t *w, int events);
/* Whether the watch keeps the loop alive (while an operation is in flight). */
void bp__watch_keep_loop(bp__watch_t *w, int keep);
/* Stop; `closed` runs once libuv lets go, then the watch is freed. */
void bp__watch_close(bp__watch_t *w);

#endif
