/*
 * A file watched on the loop (include/baseplate/file_watcher.h).
 *
 * One check at a time runs as a chain of libuv file system requests on the
 * thread pool: stat the path; when its identity (device, inode, size, mtime)
 * differs from the bytes held, open, fstat, read to the end, close. The
 * directory's inotify events and a repeating timer start checks; an event
 * during a check makes one more check follow it, so that the last write is
 * always seen. The bytes read are kept until the next good read; the caller
 * parses them when the generation number says they are new.
 */
#include "baseplate/file_watcher.h"
#include "internal.h"
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  uint64_t dev, ino, size;
  int64_t mtime_sec, mtime_nsec;
  int known;
} ident_t;

struct bp_file_watch_s {
  bp__closable_t closable; /* first: bp__loop_shutdown() finds it through handle.data */
  uv_fs_event_t event;
  uv_timer_t timer;
  uv_fs_t req;
  char *path, *dir, *base;
  size_t max_size;
  int refs;         /* Lua's, each open handle's, a request in flight */
  int event_on;     /* the directory is watched */
  int checking;     /* a chain of requests is running */
  int again;        /* another check after this one */
  int stopping;     /* closed by its owner or by loop shutdown */
  int user_closed;
  int fd;           /* the file being read, or -1 */
  ident_t held;     /* of the bytes held (known = 0: none) */
  ident_t reading;  /* of the file being read */
  char *data;       /* the last good read, or NULL once released */
  size_t len;
  double mtime;
  int status;       /* of the last check that had something to say */
  uint64_t gen;
  char *rbuf;       /* a read in progress */
  size_t rlen, rcap;
};

static void unref(bp_file_watch_t *w) {
  if (--w->refs > 0) return;
  free(w->data);
  free(w->rbuf);
  free(w->path);
  free(w->dir);
  free(w);
}

static void handle_closed(uv_handle_t *h) { unref(h->data); }

static void stop_handles(bp_file_watch_t *w) {
  w->stopping = 1;
  if (!uv_is_closing((uv_handle_t *)&w->timer)) uv_close((uv_handle_t *)&w->timer, handle_closed);
  if (!uv_is_closing((uv_handle_t *)&w->event)) uv_close((uv_handle_t *)&w->event, handle_closed);
}

static void watch_shutdown(bp__closable_t *c) { stop_handles((bp_file_watch_t *)c); }

static void ident_of(ident_t *id, const uv_stat_t *st) {
  id->dev = st->st_dev;
  id->ino = st->st_ino;
  id->size = st->st_size;
  id->mtime_sec = st->st_mtim.tv_sec;
  id->mtime_nsec = st->st_mtim.tv_nsec;
  id->known = 1;
}

static int ident_eq(const ident_t *a, const ident_t *b) {
  return a->known && b->known && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec;
}

/* A failure to report: new only when it differs from the last outcome. */
static void set_failure(bp_file_watch_t *w, int status) {
  w->held.known = 0; /* whatever comes back at the path is read again */
  if (w->status != status) {
    w->status = status;
    free(w->data);
    w->data = NULL;
    w->len = 0;
    w->gen++;
  }
}

/* New bytes (taken over) of the file whose identity is `id`. */
static void set_content(bp_file_watch_t *w, char *buf, size_t len, const ident_t *id) {
  free(w->data);
  w->data = buf;
  w->len = len;
  w->held = *id;
  w->mtime = (double)id->mtime_sec + (double)id->mtime_nsec / 1e9;
  w->status = BP_OK;
  w->gen++;
}

/* Make room for at least one more byte than rlen, within max_size + 1 (the
 * extra byte tells a file larger than max_size). */
static int grow(bp_file_watch_t *w) {
  size_t cap;
  char *p;
  if (w->rlen < w->rcap) return BP_OK;
  if (w->rcap > w->max_size) return BP_ETOOBIG;
  cap = w->rcap ? w->rcap * 2 : 4096;
  if (cap > w->max_size + 1) cap = w->max_size + 1;
  if (!(p = realloc(w->rbuf, cap))) return BP_ENOMEM;
  w->rbuf = p;
  w->rcap = cap;
  return BP_OK;
}

/* --- the check, off the loop ------------------------------------------------------ */

static void check(bp_file_watch_t *w);
static void on_stat(uv_fs_t *req);
static void on_open(uv_fs_t *req);
static void on_fstat(uv_fs_t *req);
static void on_read(uv_fs_t *req);
static void on_close(uv_fs_t *req);

static void check_done(bp_file_watch_t *w) {
  w->checking = 0;
  if (!w->stopping && w->again) {
    w->again = 0;
    check(w);
  }
  unref(w); /* the request's */
}

static void check(bp_file_watch_t *w) {
  if (w->stopping) return;
  if (w->checking) {
    w->again = 1;
    return;
  }
  w->checking = 1;
  w->refs++;
  if (uv_fs_stat(bp_loop(), &w->req, w->path, on_stat) != 0) {
    w->checking = 0;
    w->refs--;
  }
}

/* End the chain: close the file if one is open. */
static void finish(bp_file_watch_t *w, int failure) {
  if (failure) set_failure(w, failure);
  free(w->rbuf);
  w->rbuf = NULL;
  w->rlen = w->rcap = 0;
  if (w->fd >= 0) {
    int fd = w->fd;
    w->fd = -1;
    if (!w->stopping && uv_fs_close(bp_loop(), &w->req, fd, on_close) == 0) return;
    close(fd); /* a regular file: closing it does not wait */
  }
  check_done(w);
}

static void on_close(uv_fs_t *req) {
  bp_file_watch_t *w = req->data;
  uv_fs_req_cleanup(req);
  check_done(w);
}

static void on_stat(uv_fs_t *req) {
  bp_file_watch_t *w = req->data;
  ident_t now = {0};
  ssize_t rc = req->result;
  if (rc == 0) ident_of(&now, &req->statbuf);
  uv_fs_req_cleanup(req);
  if (w->stopping) return finish(w, 0);
  if (rc < 0) return finish(w, (int)rc);
  if (ident_eq(&now, &w->held)) return finish(w, 0);
  if (uv_fs_open(bp_loop(), &w->req, w->path, O_RDONLY | O_CLOEXEC, 0, on_open) != 0)
    finish(w, BP_EIO);
}

static void on_open(uv_fs_t *req) {
  bp_file_watch_t *w = req->data;
  ssize_t rc = req->result;
  uv_fs_req_cleanup(req);
  if (rc >= 0) w->fd = (int)rc;
  if (w->stopping) return finish(w, 0);
  if (rc < 0) return finish(w, (int)rc);
  if (uv_fs_fstat(bp_loop(), &w->req, w->fd, on_fstat) != 0) finish(w, BP_EIO);
}

static void read_more(bp_file_watch_t *w) {
  int rc = grow(w);
  uv_buf_t b;
  if (rc != BP_OK) return finish(w, rc);
  b = uv_buf_init(w->rbuf + w->rlen, (unsigned)(w->rcap - w->rlen));
  if (uv_fs_read(bp_loop(), &w->req, w->fd, &b, 1, (int64_t)w->rlen, on_read) != 0) finish(w, BP_EIO);
}

static void on_fstat(uv_fs_t *req) {
  bp_file_watch_t *w = req->data;
  ssize_t rc = req->result;
  if (rc == 0) ident_of(&w->reading, &req->statbuf);
  uv_fs_req_cleanup(req);
  if (w->stopping) return finish(w, 0);
  if (rc < 0) return finish(w, (int)rc);
  if (!S_ISREG(req->statbuf.st_mode)) return finish(w, BP_EINVAL);
  if (w->reading.size > w->max_size) return finish(w, BP_ETOOBIG);
  read_more(w);
}

static void on_read(uv_fs_t *req) {
  bp_file_watch_t *w = req->data;
  ssize_t rc = req->result;
  uv_fs_req_cleanup(req);
  if (w->stopping) return finish(w, 0);
  if (rc < 0) return finish(w, (int)rc);
  if (rc == 0) { /* the end */
    set_content(w, w->rbuf, w->rlen, &w->reading);
    w->rbuf = NULL;
    w->rlen = w->rcap = 0;
    return finish(w, 0);
  }
  w->rlen += (size_t)rc;
  if (w->rlen > w->max_size) return finish(w, BP_ETOOBIG);
  read_more(w);
}

/* --- events and the timer ------------------------------------------------------- */

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  bp_file_watch_t *w = h->data;
  (void)events;
  if (status < 0) { /* the directory went away: the timer watches it again */
    uv_fs_event_stop(h);
    w->event_on = 0;
    check(w);
    return;
  }
  if (!filename || strcmp(filename, w->base) == 0) check(w);
}

static void start_event(bp_file_watch_t *w) {
  if (w->event_on || w->stopping) return;
  if (uv_fs_event_start(&w->event, on_event, w->dir, 0) == 0) {
    w->event_on = 1;
    uv_unref((uv_handle_t *)&w->event);
  }
}

static void on_timer(uv_timer_t *t) {
  bp_file_watch_t *w = t->data;
  start_event(w);
  check(w);
}

/* --- the API --------------------------------------------------------------------- */

int bp_file_watch_open(const char *path, size_t max_size, double interval, bp_file_watch_t **out) {
  bp_file_watch_t *w;
  const char *slash;
  uint64_t ms;
  *out = NULL;
  if (!path || !*path || !(interval > 0) || interval > 86400.0 * 365) return BP_EINVAL;
  if (!(w = calloc(1, sizeof *w))) return BP_ENOMEM;
  slash = strrchr(path, '/');
  if (!slash || slash[1] == '\0') { /* a path ending in a slash names a directory */
    if (slash) {
      free(w);
      return BP_EINVAL;
    }
  }
  w->path = strdup(path);
  if (!slash)
    w->dir = strdup(".");
  else if (slash == path)
    w->dir = strdup("/");
  else
    w->dir = strndup(path, (size_t)(slash - path));
  if (!w->path || !w->dir) {
    free(w->path);
    free(w->dir);
    free(w);
    return BP_ENOMEM;
  }
  w->base = w->path + (slash ? (size_t)(slash - path) + 1 : 0);
  w->closable.magic = BP_CLOSABLE_MAGIC;
  w->closable.close = watch_shutdown;
  w->max_size = max_size;
  w->fd = -1;
  w->status = BP_AGAIN;
  w->refs = 3; /* the owner's, the timer's, the event's */
  w->req.data = w;
  uv_timer_init(bp_loop(), &w->timer);
  w->timer.data = w;
  uv_fs_event_init(bp_loop(), &w->event);
  w->event.data = w;
  start_event(w);
  ms = (uint64_t)(interval * 1000.0 + 0.5);
  if (ms == 0) ms = 1;
  uv_timer_start(&w->timer, on_timer, 0, ms); /* the first check at once */
  uv_unref((uv_handle_t *)&w->timer);
  *out = w;
  return BP_OK;
}

int bp_file_watch_read_now(bp_file_watch_t *w) {
  struct stat st;
  ident_t id;
  char *buf = NULL, *p;
  size_t len = 0, cap = 0;
  int fd, rc = BP_OK;
  /* A check in flight may have seen an older file: one more follows it. Its
   * state (rbuf, reading) is left alone. */
  if (w->checking) w->again = 1;
  fd = open(w->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    set_failure(w, -errno);
    return w->status;
  }
  if (fstat(fd, &st) != 0) {
    rc = -errno;
  } else if (!S_ISREG(st.st_mode)) {
    rc = BP_EINVAL;
  } else if ((uint64_t)st.st_size > w->max_size) {
    rc = BP_ETOOBIG;
  } else {
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = (uint64_t)st.st_size;
    id.mtime_sec = st.st_mtim.tv_sec;
    id.mtime_nsec = st.st_mtim.tv_nsec;
    id.known = 1;
    for (;;) {
      ssize_t n;
      if (len == cap) { /* room for one byte more than max_size: tells a file that grew */
        if (cap > w->max_size) {
          rc = BP_ETOOBIG;
          break;
        }
        cap = cap ? cap * 2 : (size_t)st.st_size + 1;
        if (cap > w->max_size + 1) cap = w->max_size + 1;
        if (!(p = realloc(buf, cap))) {
          rc = BP_ENOMEM;
          break;
        }
        buf = p;
      }
      n = pread(fd, buf + len, cap - len, (off_t)len);
      if (n < 0) {
        if (errno == EINTR) continue;
        rc = -errno;
        break;
      }
      if (n == 0) {
        if (!ident_eq(&id, &w->held) || w->status != BP_OK) {
          set_content(w, buf, len, &id);
          buf = NULL;
        }
        break;
      }
      len += (size_t)n;
      if (len > w->max_size) {
        rc = BP_ETOOBIG;
        break;
      }
    }
  }
  free(buf);
  close(fd);
  if (rc != BP_OK) set_failure(w, rc);
  return w->status;
}

uint64_t bp_file_watch_generation(const bp_file_watch_t *w) { return w->gen; }

int bp_file_watch_content(bp_file_watch_t *w, const char **data, size_t *len, double *mtime) {
  *data = NULL;
  *len = 0;
  *mtime = 0;
  if (w->status != BP_OK) return w->status;
  *data = w->data ? w->data : "";
  *len = w->len;
  *mtime = w->mtime;
  return BP_OK;
}

void bp_file_watch_release(bp_file_watch_t *w) {
  free(w->data);
  w->data = NULL;
  w->len = 0;
}

void bp_file_watch_close(bp_file_watch_t *w) {
  if (!w || w->user_closed) return;
  w->user_closed = 1;
  stop_handles(w);
  unref(w);
}
