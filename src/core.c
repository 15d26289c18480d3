/* Version, status strings and small helpers every subsystem uses. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerrordesc_np */
#endif
#include "baseplate/common.h"
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

int bp_abi_version(void) { return BP_ABI_VERSION; }

const char *bp_version_string(void) { return BP_VERSION_STRING; }

/* The numbers common.h writes out are the errnos they name (see there). */
_Static_assert(BP_ENOMEM == -ENOMEM && BP_EINVAL == -EINVAL && BP_ENOENT == -ENOENT &&
                   BP_EIO == -EIO && BP_ECLOSED == -EPIPE && BP_ETOOBIG == -EMSGSIZE &&
                   BP_ETIMEDOUT == -ETIMEDOUT && BP_ECANCELED == -ECANCELED,
               "a BP_E* code differs from the errno it stands for");
_Static_assert(BP_ERROR < UV_EOF && BP_AGAIN < UV_EOF && BP_DECLINED < UV_EOF,
               "our own codes must lie outside errno's and libuv's ranges");

const char *bp_strerror(int status) {
  switch (status) {
    case BP_OK: return "ok";
    case BP_ERROR: return "error";
    case BP_AGAIN: return "operation in progress";
    case BP_DECLINED: return "declined";
    case BP_ENOMEM: return "out of memory";
    case BP_EINVAL: return "invalid argument";
    case BP_ENOENT: return "not found";
    case BP_EIO: return "input/output error";
    case BP_ECLOSED: return "closed";
    case BP_ETOOBIG: return "too large";
    case BP_ETIMEDOUT: return "timed out";
    case BP_ECANCELED: return "interrupted";
  }
  /* libuv's codes that are no errno (UV_EOF, UV_EAI_*) lie in -4095..-3000;
   * uv_strerror names only the ones it knows without allocating. */
  if (status >= UV_EOF && status <= -3000) {
    switch (status) {
#define BP__UV_CASE(name, _) case UV_##name:
      UV_ERRNO_MAP(BP__UV_CASE)
#undef BP__UV_CASE
      return uv_strerror(status);
    }
  }
  /* strerror's text for an errno it knows; its "Unknown error N" is built
   * in a buffer the next call frees, and this returns static strings only. */
  if (status < 0 && status > -4096) {
    const char *s = strerrordesc_np(-status);
    if (s) return s;
  }
  return "unknown status";
}

void bp__ignore_sigpipe(void) {
  static int done;
  struct sigaction sa;
  if (done) return;
  done = 1;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

int bp__read_file(const char *path, char **out, size_t *len, size_t max) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  char *buf;
  size_t n;
  int e;

  *out = NULL;
  if (!f) return -errno;
  if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
    e = S_ISDIR(st.st_mode) ? EISDIR : errno;
    fclose(f);
    return -e;
  }
  if ((size_t)st.st_size > max) {
    fclose(f);
    return BP_ETOOBIG;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    fclose(f);
    return BP_ENOMEM;
  }
  errno = 0;
  n = fread(buf, 1, (size_t)st.st_size, f);
  if (ferror(f)) {
    e = errno ? errno : EIO;
    free(buf);
    fclose(f);
    return -e;
  }
  fclose(f);
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return BP_OK;
}
