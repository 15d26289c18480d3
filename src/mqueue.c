/* POSIX message queues within the system's limits, and waits for them on
 * the loop (include/baseplate/mqueue.h). */
#include "baseplate/mqueue.h"
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX_PATH "/proc/sys/fs/mqueue/msg_max"
#define MSGSIZE_MAX_PATH "/proc/sys/fs/mqueue/msgsize_max"

static long read_limit(const char *path, long dflt) {
  FILE *f = fopen(path, "r");
  long v = dflt;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1 || v < 1) v = dflt;
    fclose(f);
  }
  return v;
}

/* The one way queues are opened: mq_open with the asked sizes and, when the
 * kernel refuses them (EINVAL: above /proc/sys/fs/mqueue's limits), either
 * shrunk to the limits (`fallback`) or refused with the limit named in err. */
static mqd_t open_sized(const char *name, int oflag, long max_messages, long max_message_size,
                        int fallback, struct mq_attr *attr, int *shrunk, char *err, size_t errlen) {
  struct mq_attr a = {.mq_maxmsg = max_messages, .mq_msgsize = max_message_size};
  mqd_t mq = mq_open(name, oflag | O_CREAT | O_CLOEXEC, 0644, &a);
  if (mq == (mqd_t)-1 && errno == EINVAL) {
    long maxmsg = read_limit(MSG_MAX_PATH, max_messages);
    long msgsize = read_limit(MSGSIZE_MAX_PATH, max_message_size);
    if (!fallback) {
      if (err && max_messages > maxmsg)
        snprintf(err, errlen,
                 "%s: max_messages %ld is above this system's limit of %ld (fs.mqueue.msg_max: raise "
                 "it in " MSG_MAX_PATH " as root)",
                 name, max_messages, maxmsg);
      else if (err && max_message_size > msgsize)
        snprintf(err, errlen,
                 "%s: max_message_size %ld is above this system's limit of %ld "
                 "(fs.mqueue.msgsize_max: raise it in " MSGSIZE_MAX_PATH " as root)",
                 name, max_message_size, msgsize);
      else if (err)
        snprintf(err, errlen, "%s: invalid queue name or sizes (%ld messages of %ld bytes)", name,
                 max_messages, max_message_size);
      errno = EINVAL;
      return (mqd_t)-1;
    }
    a.mq_maxmsg = maxmsg < max_messages ? maxmsg : max_messages;
    a.mq_msgsize = msgsize < max_message_size ? msgsize : max_message_size;
    mq = mq_open(name, oflag | O_CREAT | O_CLOEXEC, 0644, &a);
  }
  if (mq == (mqd_t)-1) {
    int e = errno;
    if (err && e == EMFILE)
      snprintf(err, errlen, "%s: %s (the per-user limit on queue memory, RLIMIT_MSGQUEUE, or on open descriptors)",
               name, strerror(e));
    else if (err && e == ENOSPC)
      snprintf(err, errlen, "%s: %s (the system's number of queues: /proc/sys/fs/mqueue/queues_max)",
               name, strerror(e));
    else if (err)
      snprintf(err, errlen, "%s: %s", name, strerror(e));
    errno = e;
    return mq;
  }
  if (mq_getattr(mq, &a) != 0) {
    a.mq_maxmsg = max_messages;
    a.mq_msgsize = max_message_size;
  }
  if (attr) *attr = a;
  if (shrunk) *shrunk = a.mq_maxmsg < max_messages || a.mq_msgsize < max_message_size;
  return mq;
}

mqd_t bp_mq_open(const char *name, int oflag, long max_messages, long max_message_size,
                 struct mq_attr *attr, int *shrunk) {
  return open_sized(name, oflag, max_messages, max_message_size, 1, attr, shrunk, NULL, 0);
}

/* --- queues waited for on the loop ----------------------------------------------- */

enum { POLL_NONE, POLL_OPEN, POLL_CLOSING, POLL_CLOSED };

typedef struct {
  int *ids;
  size_t n, cap;
} waiters_t;

struct bp_mq_s {
  bp__closable_t closable; /* the poll handle's data: loop shutdown closes it */
  uv_poll_t poll;
  int poll_state;
  int events; /* watched now */
  mqd_t mq;
  long maxmsg, msgsize;
  int shrunk;
  int user_closed; /* bp_mq_close was called: free once the poll handle is closed */
  char *buf;       /* msgsize bytes: what bp_mq_receive returns */
  waiters_t readers, writers;
};

static int name_ok(const char *name) {
  size_t n;
  if (!name || name[0] != '/') return 0;
  n = strlen(name);
  return n >= 2 && n <= 255 && !strchr(name + 1, '/');
}

int bp_mq_new(const char *name, long max_messages, long max_message_size, int fallback,
              bp_mq_t **out, char *err, size_t errlen) {
  struct mq_attr a;
  bp_mq_t *q;
  if (err && errlen) err[0] = '\0';
  *out = NULL;
  if (!name_ok(name)) {
    snprintf(err, errlen,
             "invalid queue name %s: expected an initial slash and 1 to 254 more characters, none a slash",
             name ? name : "(null)");
    return BP_EINVAL;
  }
  if (max_messages < 1 || max_message_size < 1) {
    snprintf(err, errlen, "%s: max_messages and max_message_size must be at least 1", name);
    return BP_EINVAL;
  }
  if (!(q = calloc(1, sizeof *q))) {
    snprintf(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  q->mq = open_sized(name, O_RDWR | O_NONBLOCK, max_messages, max_message_size, fallback, &a,
                     &q->shrunk, err, errlen);
  if (q->mq == (mqd_t)-1) {
    int e = errno;
    free(q);
    return -e;
  }
  q->maxmsg = a.mq_maxmsg;
  q->msgsize = a.mq_msgsize;
  if (!(q->buf = malloc((size_t)q->msgsize))) {
    mq_close(q->mq);
    free(q);
    snprintf(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  *out = q;
  return BP_OK;
}

long bp_mq_max_messages(const bp_mq_t *q) { return q->maxmsg; }
long bp_mq_max_message_size(const bp_mq_t *q) { return q->msgsize; }
int bp_mq_shrunk(const bp_mq_t *q) { return q->shrunk; }

int bp_mq_send(bp_mq_t *q, const void *msg, size_t len) {
  if (q->user_closed) return BP_ECLOSED;
  if (len > (size_t)q->msgsize) return BP_ETOOBIG;
  for (;;) {
    if (mq_send(q->mq, len ? msg : "", len, 0) == 0) return BP_OK;
    if (errno == EAGAIN) return BP_AGAIN;
    if (errno != EINTR) return -errno;
  }
}

int bp_mq_receive(bp_mq_t *q, const char **msg, size_t *len) {
  ssize_t n;
  if (q->user_closed) return BP_ECLOSED;
  for (;;) {
    n = mq_receive(q->mq, q->buf, (size_t)q->msgsize, NULL);
    if (n >= 0) {
      *msg = q->buf;
      *len = (size_t)n;
      return BP_OK;
    }
    if (errno == EAGAIN) return BP_AGAIN;
    if (errno != EINTR) return -errno;
  }
}

static int waiters_add(waiters_t *w, int id) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 4;
    int *ids = realloc(w->ids, cap * sizeof *ids);
    if (!ids) return BP_ENOMEM;
    w->ids = ids;
    w->cap = cap;
  }
  w->ids[w->n++] = id;
  return BP_OK;
}

static void waiters_remove(waiters_t *w, int id) {
  for (size_t i = 0; i < w->n; i++)
    if (w->ids[i] == id) {
      w->ids[i] = w->ids[--w->n];
      return;
    }
}

/* Wake every waiter of `w` with `status`. Waking runs Lua, which may wait
 * again at once: the list is taken out first. */
static void waiters_wake(waiters_t *w, int status) {
  waiters_t taken = *w;
  memset(w, 0, sizeof *w);
  for (size_t i = 0; i < taken.n; i++) bp__vm_wake(taken.ids[i], status);
  free(taken.ids);
}

static int want_events(const bp_mq_t *q) {
  return (q->readers.n ? UV_READABLE : 0) | (q->writers.n ? UV_WRITABLE : 0);
}

static void on_poll(uv_poll_t *p, int status, int events);

static int update_poll(bp_mq_t *q) {
  int want = want_events(q), rc = 0;
  if (q->poll_state != POLL_OPEN || want == q->events) return 0;
  rc = want ? uv_poll_start(&q->poll, want, on_poll) : uv_poll_stop(&q->poll);
  if (rc == 0) q->events = want;
  return rc;
}

static void on_poll(uv_poll_t *p, int status, int events) {
  bp_mq_t *q = (bp_mq_t *)((char *)p - offsetof(bp_mq_t, poll));
  if (status < 0) {
    q->events = 0; /* (libuv stopped watching) */
    waiters_wake(&q->readers, status);
    waiters_wake(&q->writers, status);
    return;
  }
  if (events & UV_READABLE) waiters_wake(&q->readers, BP_OK);
  if (events & UV_WRITABLE) waiters_wake(&q->writers, BP_OK);
  (void)update_poll(q);
}

static void poll_closed(uv_handle_t *h) {
  bp_mq_t *q = (bp_mq_t *)((char *)h - offsetof(bp_mq_t, poll));
  q->poll_state = POLL_CLOSED;
  if (!q->user_closed) return; /* (loop shutdown: the owner frees it later) */
  waiters_wake(&q->readers, BP_ECANCELED);
  waiters_wake(&q->writers, BP_ECANCELED);
  mq_close(q->mq);
  free(q->readers.ids);
  free(q->writers.ids);
  free(q->buf);
  free(q);
}

static void mq_shutdown(bp__closable_t *c) {
  bp_mq_t *q = (bp_mq_t *)c;
  if (q->poll_state == POLL_OPEN) {
    q->poll_state = POLL_CLOSING;
    uv_close((uv_handle_t *)&q->poll, poll_closed);
  }
}

int bp_mq_wait(bp_mq_t *q, int writable, int waiter) {
  int rc;
  if (q->user_closed) return BP_ECLOSED;
  if (q->poll_state == POLL_NONE) {
    if ((rc = uv_poll_init(uv_default_loop(), &q->poll, (int)q->mq)) != 0) return rc;
    q->closable.magic = BP_CLOSABLE_MAGIC;
    q->closable.close = mq_shutdown;
    q->poll.data = &q->closable;
    q->poll_state = POLL_OPEN;
  }
  if (q->poll_state != POLL_OPEN) return BP_ECLOSED;
  if ((rc = waiters_add(writable ? &q->writers : &q->readers, waiter)) != BP_OK) return rc;
  if ((rc = update_poll(q)) != 0) {
    waiters_remove(writable ? &q->writers : &q->readers, waiter);
    return rc;
  }
  return BP_AGAIN;
}

void bp_mq_forget(bp_mq_t *q, int waiter) {
  waiters_remove(&q->readers, waiter);
  waiters_remove(&q->writers, waiter);
  (void)update_poll(q);
}

int bp_mq_wait_blocking(bp_mq_t *q, int writable, double timeout) {
  struct pollfd pfd = {.fd = (int)q->mq, .events = writable ? POLLOUT : POLLIN};
  double deadline = timeout >= 0 ? bp_monotonic() + timeout : 0;
  if (q->user_closed) return BP_ECLOSED;
  for (;;) {
    int ms = -1, n;
    if (timeout >= 0) {
      double left = deadline - bp_monotonic();
      ms = left <= 0 ? 0 : (left > 2e9 / 1000 ? 2000000000 : (int)ceil(left * 1000));
    }
    n = poll(&pfd, 1, ms);
    if (n > 0) return BP_OK;
    if (n == 0) {
      if (timeout >= 0 && bp_monotonic() >= deadline) return BP_ETIMEDOUT;
      continue;
    }
    if (errno != EINTR) return -errno;
  }
}

int bp_mq_unlink(const char *name) {
  if (!name_ok(name)) return BP_EINVAL;
  return mq_unlink(name) == 0 ? BP_OK : -errno;
}

void bp_mq_close(bp_mq_t *q) {
  if (!q || q->user_closed) return;
  q->user_closed = 1;
  if (q->poll_state == POLL_OPEN) {
    q->poll_state = POLL_CLOSING;
    uv_close((uv_handle_t *)&q->poll, poll_closed);
    return;
  }
  if (q->poll_state == POLL_CLOSING) return; /* poll_closed frees it */
  mq_close(q->mq);
  free(q->readers.ids);
  free(q->writers.ids);
  free(q->buf);
  free(q);
}
