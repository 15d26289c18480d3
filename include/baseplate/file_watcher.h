/*
 * A file watched on the loop (baseplate.lib.file_watcher; docs/lib-file-watcher.md):
 * the file's directory is watched (inotify through libuv), so that a file
 * replaced by a rename, as the secrets fetcher writes it, is seen as well as
 * one written in place; a timer checks the file's identity (device, inode,
 * size, mtime) now and then too, in case an event was missed or the
 * directory did not exist yet. When the identity changed, the file is read
 * again off the loop (libuv's file system requests) and its bytes are kept
 * here until the next read; the caller, who parses, learns of a new read by
 * the generation number. Nothing here blocks the loop but
 * bp_file_watch_read_now, meant for start-up.
 */
#ifndef BASEPLATE_FILE_WATCHER_H
#define BASEPLATE_FILE_WATCHER_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

typedef struct bp_file_watch_s bp_file_watch_t;

/** Watch the file at `path` (NUL-terminated; copied), reading at most
 * `max_size` bytes of it (a larger file is BP_ETOOBIG), checking its
 * identity every `interval` seconds as well as on the directory's events.
 * The first read is left to the caller (bp_file_watch_read_now) or to the
 * first check, which comes at once on the loop. BP_OK with the watch in
 * *out (closed with bp_file_watch_close), BP_EINVAL for an empty path or a
 * bad interval, BP_ENOMEM. A directory that does not exist yet is no error:
 * the timer tries to watch it again. */
BP_EXTERN int bp_file_watch_open(const char *path, size_t max_size, double interval,
                                 bp_file_watch_t **out);

/** Read the file now, blocking (start-up only, as the reference's
 * constructor does): the same outcome as a check that saw a change. Returns
 * the read's status (see bp_file_watch_content). */
BP_EXTERN int bp_file_watch_read_now(bp_file_watch_t *w);

/** A number that grows each time a check finished with something new for
 * the caller: new bytes, or a failure (the file vanished, cannot be read,
 * is too big) after a good read or another failure. Cheap: no system
 * call. */
BP_EXTERN uint64_t bp_file_watch_generation(const bp_file_watch_t *w);

/** The last read's outcome: BP_OK with the bytes in *data, *len (owned by
 * the watch, valid until the next call into it or the loop runs) and the
 * file's mtime (seconds since the epoch) in *mtime; else BP_ENOENT (no file),
 * BP_ETOOBIG (larger than max_size), BP_AGAIN (not read yet) or another
 * negative errno, and *data NULL. */
BP_EXTERN int bp_file_watch_content(bp_file_watch_t *w, const char **data, size_t *len,
                                    double *mtime);

/** Let go of the bytes of the last read (the caller has its own copy). The
 * outcome stays as it was. */
BP_EXTERN void bp_file_watch_release(bp_file_watch_t *w);

/** Stop watching; the memory goes once libuv lets go of the handles and any
 * read in flight finished. Accepts NULL. */
BP_EXTERN void bp_file_watch_close(bp_file_watch_t *w);

#endif
