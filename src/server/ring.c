/*
 * The server core's io_uring path (ring.h, docs/architecture.md).
 *
 * One ring per process. The libuv loop stays the one loop: it polls the
 * ring's descriptor (readable while completions wait) with a uv_poll, and
 * a uv_prepare submits what was queued since, right before the loop
 * sleeps: one io_uring_enter per loop iteration carries every answer
 * written in it. Receives are multishot into a ring of provided buffers
 * (the bytes are copied to the connection's read buffer and the buffer is
 * handed back at once), so a keep-alive connection costs no submission
 * per request at all.
 */
#include "server/ring.h"
#include "server/server.h"
#include "baseplate/log.h"

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 1024
#define CQ_ENTRIES 8192
#define BUF_COUNT 512 /* provided buffers (a power of two) */
#define BUF_SIZE 4096
#define BUF_GROUP 0
#define ROUNDS 16   /* submit-and-reap rounds per wake-up, */
#define BUDGET 512  /* and completions: then libuv's other handles get their turn */

enum { TAG_NONE = 0, TAG_RECV = 1, TAG_SEND = 2, TAG_ACCEPT = 3, TAG_MASK = 7 };

static struct {
  bp__closable_t closable;
  struct io_uring ring;
  uv_poll_t poll;
  uv_prepare_t prepare;
  struct io_uring_buf_ring *br;
  char *bufs;
  int state; /* 0 not opened, 1 open, -1 refused */
  int mode;  /* -1 unset, 0 auto, 1 uring, 2 epoll */
  int holds, ops, exiting, closed_handles;
  char why[160]; /* why io_uring was refused */
} R = {.mode = -1};

static const char *const MODES[] = {"auto", "uring", "epoll"};

/* --- opening, probing ------------------------------------------------------------ */

static int ring_setup(struct io_uring *ring, unsigned entries) {
  struct io_uring_params p;
  int rc;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG;
  p.cq_entries = CQ_ENTRIES;
  rc = io_uring_queue_init_params(entries, ring, &p);
  if (rc == -EINVAL) { /* a kernel older than 6.0: without the task-run hints */
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    rc = io_uring_queue_init_params(entries, ring, &p);
  }
  return rc;
}

static int buf_ring_register(struct io_uring *ring, struct io_uring_buf_ring **brp, unsigned count) {
  struct io_uring_buf_reg reg;
  size_t bytes = count * sizeof(struct io_uring_buf);
  struct io_uring_buf_ring *br;
  int rc;
  br = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (br == MAP_FAILED) return -errno;
  io_uring_buf_ring_init(br);
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)br;
  reg.ring_entries = count;
  reg.bgid = BUF_GROUP;
  if ((rc = io_uring_register_buf_ring(ring, &reg, 0)) != 0) {
    munmap(br, bytes);
    return rc;
  }
  *brp = br;
  return 0;
}

/* Does this kernel (and what runs us: seccomp, containers) give us what the
 * path needs? A multishot receive into a provided buffer on a socket pair
 * answers for all of it: io_uring itself, the opcodes, buffer rings (5.19)
 * and multishot receive (6.0). */
static int probe(char *why, size_t len) {
  struct io_uring ring;
  struct io_uring_buf_ring *br = NULL;
  struct io_uring_probe *pr;
  struct io_uring_sqe *sqe;
  struct io_uring_cqe *cqe;
  char buf[64];
  int sv[2] = {-1, -1}, rc, ok = 0;

  if ((rc = ring_setup(&ring, 8)) != 0) {
    snprintf(why, len, "io_uring_setup: %s", strerror(-rc));
    return rc;
  }
  pr = io_uring_get_probe_ring(&ring);
  if (!pr || !io_uring_opcode_supported(pr, IORING_OP_RECV) ||
      !io_uring_opcode_supported(pr, IORING_OP_SEND) || !io_uring_opcode_supported(pr, IORING_OP_ACCEPT) ||
      !io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL)) {
    snprintf(why, len, "the kernel lacks io_uring's recv, send, accept or cancel");
    rc = -EOPNOTSUPP;
    goto out;
  }
  if ((rc = buf_ring_register(&ring, &br, 8)) != 0) {
    snprintf(why, len, "provided buffer rings: %s", strerror(-rc));
    goto out;
  }
  io_uring_buf_ring_add(br, buf, sizeof buf, 0, io_uring_buf_ring_mask(8), 0);
  io_uring_buf_ring_advance(br, 1);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    rc = -errno;
    snprintf(why, len, "socketpair: %s", strerror(errno));
    goto out;
  }
  sqe = io_uring_get_sqe(&ring);
  io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BUF_GROUP;
  if (write(sv[1], "x", 1) != 1 || io_uring_submit_and_wait(&ring, 1) < 0 ||
      io_uring_peek_cqe(&ring, &cqe) != 0) {
    rc = -EIO;
    snprintf(why, len, "multishot receive: no completion");
    goto out;
  }
  ok = cqe->res == 1 && (cqe->flags & IORING_CQE_F_MORE) && (cqe->flags & IORING_CQE_F_BUFFER);
  if (!ok) {
    rc = cqe->res < 0 ? cqe->res : -EOPNOTSUPP;
    snprintf(why, len, "multishot receive with provided buffers: %s",
             cqe->res < 0 ? strerror(-cqe->res) : "not supported");
  } else rc = 0;
out:
  if (pr) io_uring_free_probe(pr);
  io_uring_queue_exit(&ring); /* (cancels the probe's receive) */
  if (br) munmap(br, 8 * sizeof(struct io_uring_buf));
  if (sv[0] >= 0) close(sv[0]), close(sv[1]);
  return rc;
}

static void ring_dispatch(uv_poll_t *p, int status, int events);
static void ring_prepare(uv_prepare_t *p);
static void ring_shutdown(bp__closable_t *c);

static int ring_open(void) {
  int rc;
  if ((rc = probe(R.why, sizeof R.why)) != 0) return rc;
  if ((rc = ring_setup(&R.ring, RING_ENTRIES)) != 0) {
    snprintf(R.why, sizeof R.why, "io_uring_setup: %s", strerror(-rc));
    return rc;
  }
  /* Each io_uring_enter then finds the ring without a descriptor lookup
   * (5.18; without it, as before). */
  (void)io_uring_register_ring_fd(&R.ring);
  R.bufs = mmap(NULL, (size_t)BUF_COUNT * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (R.bufs == MAP_FAILED || (rc = buf_ring_register(&R.ring, &R.br, BUF_COUNT)) != 0) {
    rc = R.bufs == MAP_FAILED ? -errno : rc;
    if (R.bufs != MAP_FAILED) munmap(R.bufs, (size_t)BUF_COUNT * BUF_SIZE);
    io_uring_queue_exit(&R.ring);
    snprintf(R.why, sizeof R.why, "provided buffers: %s", strerror(-rc));
    return rc;
  }
  for (unsigned i = 0; i < BUF_COUNT; i++)
    io_uring_buf_ring_add(R.br, R.bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                          io_uring_buf_ring_mask(BUF_COUNT), (int)i);
  io_uring_buf_ring_advance(R.br, BUF_COUNT);
  R.closable.magic = BP_CLOSABLE_MAGIC;
  R.closable.close = ring_shutdown;
  uv_poll_init(uv_default_loop(), &R.poll, R.ring.ring_fd);
  R.poll.data = &R.closable;
  uv_poll_start(&R.poll, UV_READABLE, ring_dispatch);
  uv_unref((uv_handle_t *)&R.poll); /* only what is in flight keeps the loop alive */
  uv_prepare_init(uv_default_loop(), &R.prepare);
  R.prepare.data = &R.closable;
  uv_prepare_start(&R.prepare, ring_prepare);
  uv_unref((uv_handle_t *)&R.prepare);
  return 0;
}

static int mode_from_env(void) {
  const char *e = getenv("BASEPLATE_SERVER_IO");
  if (e && *e)
    for (int i = 0; i < 3; i++)
      if (strcmp(e, MODES[i]) == 0) return i;
  return 0;
}

int bp__ring_use(void) {
  if (R.mode < 0) R.mode = mode_from_env();
  if (R.mode == 2 || R.exiting) return 0;
  if (R.state == 0) R.state = ring_open() == 0 ? 1 : -1;
  return R.state == 1;
}

int bp_server_set_io(const char *mode, char *err, size_t errlen) {
  int m = -1;
  char why[160];
  if (err && errlen) err[0] = '\0';
  for (int i = 0; mode && i < 3; i++)
    if (strcmp(mode, MODES[i]) == 0) m = i;
  if (m < 0) {
    snprintf(err, errlen, "expected auto, uring or epoll, got '%s'", mode ? mode : "");
    return BP_EINVAL;
  }
  if (m == 2) {
    R.mode = m;
    return 0;
  }
  if (R.state == 1) { /* already serving through the ring */
    R.mode = m;
    return 1;
  }
  /* A probe only: the ring itself opens with the first server (a master
   * process that forks workers must not share one). */
  if (probe(why, sizeof why) != 0) {
    snprintf(err, errlen, "io_uring is not available: %s", why);
    if (m == 1) return BP_EINVAL;
    R.mode = 2;
    return 0;
  }
  R.mode = m;
  return 1;
}

/* --- queueing ------------------------------------------------------------------------ */

static struct io_uring_sqe *get_sqe(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&R.ring);
  if (!sqe) { /* full: flush what is queued and take a slot then */
    if (io_uring_submit(&R.ring) < 0) return NULL;
    sqe = io_uring_get_sqe(&R.ring);
  }
  return sqe;
}

int bp__ring_recv(bp__conn_t *c, int fd) {
  struct io_uring_sqe *sqe = get_sqe();
  if (!sqe) return BP_ENOMEM;
  io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BUF_GROUP;
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_RECV);
  R.ops++;
  return BP_OK;
}

int bp__ring_send(bp__conn_t *c, int fd, const char *buf, size_t len) {
  struct io_uring_sqe *sqe = get_sqe();
  if (!sqe) return BP_ENOMEM;
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_SEND);
  R.ops++;
  return BP_OK;
}

int bp__ring_accept(bp__server_t *s, int fd, int multishot) {
  struct io_uring_sqe *sqe = get_sqe();
  if (!sqe) return BP_ENOMEM;
  if (multishot) io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  else io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | TAG_ACCEPT);
  R.ops++;
  return BP_OK;
}

static int cancel(uint64_t data) {
  struct io_uring_sqe *sqe = get_sqe();
  if (!sqe) return BP_ENOMEM;
  io_uring_prep_cancel64(sqe, data, 0);
  io_uring_sqe_set_data64(sqe, TAG_NONE);
  return BP_OK;
}

int bp__ring_cancel_recv(bp__conn_t *c) { return cancel((uint64_t)(uintptr_t)c | TAG_RECV); }

int bp__ring_cancel_accept(bp__server_t *s) { return cancel((uint64_t)(uintptr_t)s | TAG_ACCEPT); }

void bp__ring_hold(int delta) {
  int before = R.holds;
  R.holds += delta;
  if (before == 0 && R.holds > 0) uv_ref((uv_handle_t *)&R.poll);
  else if (before > 0 && R.holds == 0) uv_unref((uv_handle_t *)&R.poll);
}

/* --- completions ------------------------------------------------------------------------ */

static void ring_closed(uv_handle_t *h) {
  (void)h;
  if (++R.closed_handles < 2) return;
  io_uring_queue_exit(&R.ring);
  munmap(R.br, BUF_COUNT * sizeof(struct io_uring_buf));
  munmap(R.bufs, (size_t)BUF_COUNT * BUF_SIZE);
  R.state = 0;
}

static void ring_close_now(void) {
  if (uv_is_closing((uv_handle_t *)&R.poll)) return;
  uv_close((uv_handle_t *)&R.poll, ring_closed);
  uv_close((uv_handle_t *)&R.prepare, ring_closed);
}

/* Loop shutdown: the ring goes once the last operation on it has ended
 * (the connections' closes cancel theirs). */
static void ring_shutdown(bp__closable_t *c) {
  (void)c;
  R.exiting = 1;
  if (R.ops == 0) ring_close_now();
}

static unsigned reap(void) {
  struct io_uring_cqe *cqe;
  unsigned head, n = 0, bufs = 0;
  io_uring_for_each_cqe(&R.ring, head, cqe) {
    uint64_t data = io_uring_cqe_get_data64(cqe);
    void *p = (void *)(uintptr_t)(data & ~(uint64_t)TAG_MASK);
    int res = cqe->res, more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    n++;
    switch ((int)(data & TAG_MASK)) {
    case TAG_RECV: {
      const char *b = NULL;
      unsigned bid = 0;
      if (cqe->flags & IORING_CQE_F_BUFFER) {
        bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        b = R.bufs + (size_t)bid * BUF_SIZE;
      }
      if (!more) R.ops--;
      bp__conn_ring_recv(p, res, b, more);
      if (b) { /* copied: the kernel may fill it again */
        io_uring_buf_ring_add(R.br, (void *)b, BUF_SIZE, (unsigned short)bid,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)bufs);
        bufs++;
      }
      break;
    }
    case TAG_SEND:
      R.ops--;
      bp__conn_ring_sent(p, res);
      break;
    case TAG_ACCEPT:
      if (!more) R.ops--;
      bp__server_ring_accepted(p, res, more);
      break;
    default:
      break;
    }
  }
  if (bufs) io_uring_buf_ring_advance(R.br, (int)bufs);
  io_uring_cq_advance(&R.ring, n);
  return n;
}

static void ring_dispatch(uv_poll_t *p, int status, int events) {
  (void)p;
  (void)status;
  (void)events;
  /* Serve what completed, submit the answers (the kernel sends them and
   * posts what else arrived meanwhile), and again while there is work:
   * a busy server does not go around libuv's loop (its epoll_wait and
   * phases) for each small round. Timers and other handles wait that long
   * at most. */
  unsigned served = 0;
  for (int round = 0; round < ROUNDS && served < BUDGET; round++) {
    unsigned n = reap();
    served += n;
    if (io_uring_sq_ready(&R.ring)) io_uring_submit(&R.ring);
    else if (n == 0 || !io_uring_cq_ready(&R.ring)) break;
  }
  if (R.exiting && R.ops == 0) ring_close_now();
}

static void ring_prepare(uv_prepare_t *p) {
  (void)p;
  if (io_uring_sq_ready(&R.ring)) io_uring_submit(&R.ring);
}
