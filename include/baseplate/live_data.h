/*
 * The files of live data (docs/live-data.md): what the watcher sidecar
 * does to the file of a node, so that a reader (baseplate.lib.file_watcher)
 * never sees half of one.
 */
#ifndef BASEPLATE_LIVE_DATA_H
#define BASEPLATE_LIVE_DATA_H

#include "common.h"
#include <stddef.h>

/**
 * Replace `path` with `len` bytes of `data` at once: the missing parent
 * directories are made (0755), the bytes go to a new file in the same
 * directory, which gets `mode`, owner `uid` and group `gid` (-1: left as
 * they are), is flushed to disk (fsync) and renamed over `path`; the
 * directory is flushed too. A reader sees the old file or the new one,
 * never a part. BP_OK, or -errno with what failed in err.
 */
BP_EXTERN int bp_live_data_write(const char *path, const void *data, size_t len, int mode, long uid,
                                 long gid, char *err, size_t errlen);

/** Set `path`'s modification time to now (the liveness heartbeat). BP_OK
 * or -errno. */
BP_EXTERN int bp_live_data_touch(const char *path);

/** Remove `path`. BP_OK, or -errno (-ENOENT when it was not there). */
BP_EXTERN int bp_live_data_remove(const char *path);

#endif
