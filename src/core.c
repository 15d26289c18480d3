/* Version, status strings and small helpers every subsystem uses. */
#include "baseplate/common.h"
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int bp_abi_version(void) { return BP_ABI_VERSION; }

const char *bp_version_string(void) { return BP_VERSION_STRING; }

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
  if (status < 0) return strerror(-status);
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

  *out = NULL;
  if (!f) return BP_EIO;
  if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) errno = EISDIR;
    fclose(f);
    return BP_EIO;
  }
  if ((size_t)st.st_size > max) {
    fclose(f);
    return BP_ETOOBIG;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    fclose(f);
    errno = ENOMEM;
    return BP_EIO;
  }
  n = fread(buf, 1, (size_t)st.st_size, f);
  if (ferror(f)) {
    int e = errno;
    free(buf);
    fclose(f);
    errno = e;
    return BP_EIO;
  }
  fclose(f);
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return BP_OK;
}
