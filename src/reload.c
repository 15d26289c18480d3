/* Finding changed source files for `baseplate-serve --reload`. */
#include "baseplate/runtime.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 8
#define MAX_FILES 20000

typedef struct {
  const char *suffix;
  size_t slen;
  double newest;
  char *path;
  size_t pathlen;
  int seen;
} scan_t;

static int skip_dir(const char *name) {
  return name[0] == '.' || strncmp(name, "build", 5) == 0 || strcmp(name, "node_modules") == 0;
}

static void scan(scan_t *s, const char *dir, int depth) {
  DIR *d;
  struct dirent *e;
  char full[4096];
  struct stat st;

  if (depth > MAX_DEPTH || s->seen > MAX_FILES || !(d = opendir(dir))) return;
  while ((e = readdir(d)) && s->seen <= MAX_FILES) {
    size_t n = strlen(e->d_name);
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, e->d_name) >= sizeof full) continue;
    if (lstat(full, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (!skip_dir(e->d_name)) scan(s, full, depth + 1);
    } else if (S_ISREG(st.st_mode) && n >= s->slen &&
               strcmp(e->d_name + n - s->slen, s->suffix) == 0) {
      double m = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9;
      s->seen++;
      if (m > s->newest) {
        s->newest = m;
        snprintf(s->path, s->pathlen, "%s", full);
      }
    }
  }
  closedir(d);
}

int bp_newest_mtime(const char *dir, const char *suffix, double *mtime, char *path,
                    size_t pathlen) {
  scan_t s = {suffix, strlen(suffix), 0, path, pathlen, 0};
  struct stat st;
  if (stat(dir, &st) != 0) return -errno;
  if (pathlen) path[0] = '\0';
  scan(&s, dir, 0);
  *mtime = s.newest;
  return s.seen;
}
