/* The files of live data (include/baseplate/live_data.h). */
#define _GNU_SOURCE /* mkostemp */
#include "baseplate/live_data.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* mkdir -p of the directory part of `path` (in place: `path` is a copy). */
static int make_parents(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
      int e = errno;
      *p = '/';
      return -e;
    }
    *p = '/';
  }
  return 0;
}

static int fail(int rc, const char *what, const char *path, char *err, size_t errlen) {
  snprintf(err, errlen, "%s %s: %s", what, path, strerror(-rc));
  return rc;
}

int bp_live_data_write(const char *path, const void *data, size_t len, int mode, long uid, long gid,
                       char *err, size_t errlen) {
  size_t n = path ? strlen(path) : 0;
  char *copy, *dir, *tmp;
  const char *p = data;
  int fd, rc = 0;
  if (n == 0 || n > 4096 || path[n - 1] == '/' || mode < 0 || mode > 07777) {
    snprintf(err, errlen, "invalid destination \"%.200s\" or mode %o", path ? path : "", (unsigned)mode);
    return -EINVAL;
  }
  if (!(copy = strdup(path)) || !(tmp = malloc(n + 16))) {
    free(copy);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  if ((rc = make_parents(copy)) != 0) {
    fail(rc, "cannot make the directory of", path, err, errlen);
    goto out;
  }
  snprintf(tmp, n + 16, "%s.tmpXXXXXX", path);
  if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
    rc = fail(-errno, "cannot create a file next to", path, err, errlen);
    goto out;
  }
  if ((uid >= 0 || gid >= 0) && fchown(fd, (uid_t)uid, (gid_t)gid) != 0) {
    rc = fail(-errno, "cannot set the owner of", path, err, errlen);
  } else if (fchmod(fd, (mode_t)mode) != 0) {
    rc = fail(-errno, "cannot set the mode of", path, err, errlen);
  }
  while (rc == 0 && len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      rc = fail(-errno, "cannot write", tmp, err, errlen);
      break;
    }
    p += w;
    len -= (size_t)w;
  }
  if (rc == 0 && fsync(fd) != 0) rc = fail(-errno, "cannot flush", tmp, err, errlen);
  if (close(fd) != 0 && rc == 0) rc = fail(-errno, "cannot close", tmp, err, errlen);
  if (rc == 0 && rename(tmp, path) != 0) rc = fail(-errno, "cannot rename the new file to", path, err, errlen);
  if (rc != 0) {
    unlink(tmp);
    goto out;
  }
  /* The rename itself survives a crash once the directory is flushed. */
  strcpy(copy, path);
  dir = dirname(copy);
  if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
    fsync(fd);
    close(fd);
  }
out:
  free(copy);
  free(tmp);
  return rc;
}

int bp_live_data_touch(const char *path) { return utimes(path, NULL) == 0 ? 0 : -errno; }

int bp_live_data_remove(const char *path) { return unlink(path) == 0 ? 0 : -errno; }
