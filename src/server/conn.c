/*
 * The protocol-neutral server core (server.h): accepting, connections and
 * their reads, writes and deadlines, lingering close, memory given back
 * when idle, and the graceful drain and stop. What bytes mean is the
 * protocol's (bp__protocol_t).
 *
 * Two I/O paths under one core: connections are read through the loop's
 * edge-triggered set (bp__edge_t, loop.c) with recv and send, so that under
 * load they are served in the order their input arrived; or through the
 * loop's io_uring (ring.h): multishot receives, one send submission per
 * answer, all submitted once per loop iteration. Chosen per server at its
 * start (bp__ring_use); the protocols see neither.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include "server/server.h"
#include "server/ring.h"
#include "baseplate/log.h"

#include <errno.h>
#include <linux/filter.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

int bp__grow(char **buf, size_t *cap, size_t need) {
  size_t n = *cap ? *cap : 1024;
  char *p;
  if (need <= *cap) return BP_OK;
  while (n < need) n *= 2;
  if (!(p = realloc(*buf, n))) return BP_ENOMEM;
  *buf = p;
  *cap = n;
  return BP_OK;
}

/* --- deadlines ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t) {
  bp__conn_t *c = t->data;
  uint64_t now = uv_now(uv_default_loop());
  if (!c->on_deadline) return;
  if (now < c->deadline) {
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    return;
  }
  c->on_deadline(t);
}

void bp__conn_arm(bp__conn_t *c, uv_timer_cb cb, double seconds) {
  if (seconds <= 0) {
    c->on_deadline = NULL;
    return;
  }
  uint64_t ms = (uint64_t)(seconds * 1000.0 + 0.5);
  c->deadline = uv_now(uv_default_loop()) + ms;
  c->on_deadline = cb;
  /* A later deadline waits for the running timer (on_timer re-arms); an
   * earlier one restarts it. */
  if (!uv_is_active((uv_handle_t *)&c->timer) || uv_timer_get_due_in(&c->timer) > ms)
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

void bp__conn_disarm(bp__conn_t *c) { c->on_deadline = NULL; }

static void on_idle_timeout(uv_timer_t *t) {
  bp__conn_t *c = t->data;
  if (!c->busy && !c->writing) bp__conn_close(c);
}

/* Lingering close (as nginx's): closing a socket with unread input makes
 * the kernel send a reset, and a reset makes the client's kernel drop what
 * it had received but not yet handed to the client, such as the error
 * answer just sent. So: send our FIN after the answer, then read and
 * discard until the client closes too, for LINGER_MS at most, LINGER_IDLE_MS
 * without input, LINGER_BYTES in all. */
#define LINGER_MS 5000
#define LINGER_IDLE_MS 2000
#define LINGER_BYTES (16u << 20)

static void on_linger_timeout(uv_timer_t *t) { bp__conn_close(t->data); }

static void linger_arm(bp__conn_t *c) {
  uint64_t now = uv_now(uv_default_loop());
  uint64_t left = c->linger_until > now ? c->linger_until - now : 1;
  bp__conn_arm(c, on_linger_timeout, (double)(left < LINGER_IDLE_MS ? left : LINGER_IDLE_MS) / 1000.0);
}

/* --- continuing with buffered input on the next iteration ---------------------- */

static uv_idle_t resume_idle;    /* continues parsing pipelined messages */
static bp__conn_t **resume_list; /* connections waiting for it */
static int resume_count, resume_cap, resume_init;

static void resume_cb(uv_idle_t *idle) {
  int n = resume_count;
  bp__conn_t **list = malloc(n * sizeof *list);
  if (!list) return; /* try again next iteration */
  memcpy(list, resume_list, n * sizeof *list);
  resume_count = 0;
  uv_idle_stop(idle);
  for (int i = 0; i < n; i++) {
    if (list[i]) list[i]->server->protocol->on_input(list[i]);
  }
  free(list);
}

/* Continue parsing on the next loop iteration rather than now: the answer
 * may have been sent from inside a Lua FFI call, where re-entering Lua for
 * the next pipelined message is not allowed. */
static void schedule_resume(bp__conn_t *c) {
  if (!resume_init) {
    uv_idle_init(uv_default_loop(), &resume_idle);
    uv_unref((uv_handle_t *)&resume_idle);
    resume_init = 1;
  }
  if (resume_count == resume_cap) {
    int cap = resume_cap ? resume_cap * 2 : 64;
    bp__conn_t **n = realloc(resume_list, cap * sizeof *n);
    if (!n) {
      bp__conn_close(c);
      return;
    }
    resume_list = n;
    resume_cap = cap;
  }
  resume_list[resume_count++] = c;
  uv_idle_start(&resume_idle, resume_cb);
}

static void unschedule_resume(bp__conn_t *c) {
  for (int i = 0; i < resume_count; i++)
    if (resume_list[i] == c) resume_list[i] = NULL;
}

/* --- reading -------------------------------------------------------------------- */

static void on_read(bp__conn_t *c, ssize_t n);
static void ring_op_end(bp__conn_t *c);

/* The ring's receive: multishot, on while we want input. Stopping cancels
 * it (input then waits in the kernel: backpressure); what completed before
 * the cancel took effect is kept in rbuf as if read. */
static void ring_recv_arm(bp__conn_t *c) {
  if (c->recv_armed || c->recv_ended || c->closing) return;
  if (bp__ring_recv(c, c->fd) != BP_OK) { /* (the submission queue would not flush) */
    c->recv_ended = 1;
    if (c->reading) on_read(c, UV_ENOMEM);
    else c->held_status = UV_ENOMEM;
    return;
  }
  c->recv_armed = 1;
  c->recv_cancelled = 0;
  c->ring_ops++;
  c->handles_open++;
}

static void ring_recv_cancel(bp__conn_t *c) {
  if (!c->recv_armed || c->recv_cancelled) return;
  if (bp__ring_cancel_recv(c) == BP_OK) c->recv_cancelled = 1;
}

void bp__conn_stop_reading(bp__conn_t *c) {
  c->reading = 0;
  if (c->uring) ring_recv_cancel(c);
}

void bp__conn_ring_recv(bp__conn_t *c, int res, const char *data, int more) {
  if (!more) c->recv_armed = 0;
  if (!c->closing) {
    if (res > 0) {
      if (c->lingering) {
        on_read(c, res); /* discarded */
      } else if (bp__grow(&c->rbuf, &c->rcap, c->rlen + (size_t)res)) {
        if (c->reading) on_read(c, UV_ENOMEM);
        else c->held_status = UV_ENOMEM;
      } else {
        memcpy(c->rbuf + c->rlen, data, (size_t)res);
        if (c->reading) on_read(c, res);
        else c->rlen += (size_t)res;
      }
    } else if (res != -ECANCELED && res != -ENOBUFS) {
      int st = res == 0 ? UV_EOF : res;
      c->recv_ended = 1;
      if (c->reading) on_read(c, st);
      else if (!c->held_status) c->held_status = st;
    }
  }
  if (!more) {
    /* Ended: cancelled, out of buffers, or the kernel's reasons. Again if
     * input is still wanted. */
    if (c->reading && !c->closing) ring_recv_arm(c);
    ring_op_end(c);
  }
}

/* Read while we want input and some may be waiting. A short read means the
 * socket is drained: the next arrival brings a new event. */
static void conn_read(bp__conn_t *c) {
  while (c->reading && c->readable && !c->closing) {
    ssize_t n;
    size_t room;
    if (bp__grow(&c->rbuf, &c->rcap, c->rlen + 16384)) {
      on_read(c, UV_ENOMEM);
      return;
    }
    room = c->rcap - c->rlen;
    /* recv, not read: a socket call skips the file layer's position lock */
    n = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      c->readable = 0;
      if (errno != EAGAIN && errno != EWOULDBLOCK) on_read(c, -errno);
      return;
    }
    if (n == 0) {
      c->readable = 0;
      on_read(c, UV_EOF);
      return;
    }
    if ((size_t)n < room && !c->hangup) c->readable = 0;
    on_read(c, n);
  }
}

static void on_edge(bp__edge_t *e, int hangup) {
  bp__conn_t *c = (bp__conn_t *)((char *)e - offsetof(bp__conn_t, edge));
  if (hangup) c->hangup = 1;
  c->readable = 1;
  conn_read(c);
}

/* Want input again; read what came meanwhile (no new event comes for it). */
void bp__conn_start_reading(bp__conn_t *c) {
  c->reading = 1;
  if (!c->uring) {
    conn_read(c);
    return;
  }
  if (c->held_status) {
    int st = c->held_status;
    c->held_status = 0;
    on_read(c, st);
    return;
  }
  ring_recv_arm(c);
}

static void on_read(bp__conn_t *c, ssize_t n) {
  if (c->lingering) {
    if (n < 0) {
      bp__conn_stop_reading(c);
      bp__conn_close(c); /* the client has closed (or reset) too */
      return;
    }
    c->rlen = 0;
    c->linger_bytes += (size_t)n;
    if (c->linger_bytes > LINGER_BYTES) bp__conn_close(c);
    else linger_arm(c);
    return;
  }
  if (n < 0) {
    bp__conn_stop_reading(c);
    if (n == UV_EOF) {
      /* A half-close still wants the answers to what it sent. */
      c->read_eof = 1;
      if (!c->busy && !c->writing) c->server->protocol->on_input(c);
      return;
    }
    c->peer_gone = 1;
    if (!c->busy && !c->writing) bp__conn_close(c);
    return;
  }
  if (n == 0) return;
  c->rlen += (size_t)n;
  if (c->busy || c->writing) {
    /* Pipelined bytes while a message is answered: keep them for later, but
     * stop reading once a full message's worth is waiting (backpressure). */
    if (c->rlen > c->server->max_buffered) bp__conn_stop_reading(c);
    return;
  }
  c->server->protocol->on_input(c);
}

void bp__conn_idle(bp__conn_t *c) {
  if (c->peer_gone || c->read_eof || c->server->stopping) {
    bp__conn_close(c);
  } else if (!c->reading) {
    bp__conn_start_reading(c); /* may come back with what it read */
  }
}

/* --- writing -------------------------------------------------------------------- */

static int input_pending(bp__conn_t *c) {
  int n = 0;
  if (c->unread_input || c->rlen > 0) return 1;
  return ioctl(c->fd, FIONREAD, &n) == 0 && n > 0;
}

/* The last answer is out: close, lingering when the client may still be
 * sending. */
static void conn_end(bp__conn_t *c) {
  if (c->read_eof || c->peer_gone || c->fd < 0 || !input_pending(c) ||
      shutdown(c->fd, SHUT_WR) != 0) {
    bp__conn_close(c);
    return;
  }
  c->lingering = 1;
  c->rlen = 0;
  c->linger_until = uv_now(uv_default_loop()) + LINGER_MS;
  linger_arm(c);
  bp__conn_start_reading(c);
}

/* The answer is out: close, or go on with the next message. Reading is
 * still on unless backpressure stopped it; pipelined bytes already buffered
 * are parsed on the next loop iteration (see schedule_resume). */
static void written(bp__conn_t *c) {
  if (!c->keep_alive || c->server->stopping || (c->read_eof && c->rlen == 0)) {
    conn_end(c);
    return;
  }
  bp__conn_arm(c, on_idle_timeout, c->server->keepalive_timeout);
  c->idle_since = uv_now(uv_default_loop());
  if (c->rlen > 0 || !c->reading) schedule_resume(c);
}

void bp__conn_continue(bp__conn_t *c) { written(c); }

static void after_write(uv_write_t *w, int status) {
  bp__conn_t *c = w->data;
  c->writing = 0;
  if (status < 0) {
    bp__conn_close(c);
    return;
  }
  written(c);
}

/* The ring's send of wbuf[wsent..wlen): one submission (queued, sent with
 * the others of this loop iteration); what the socket did not take goes
 * in another. */
static int ring_send(bp__conn_t *c) {
  if (bp__ring_send(c, c->fd, c->wbuf + c->wsent, c->wlen - c->wsent) != BP_OK) return BP_ENOMEM;
  c->writing = 1;
  c->ring_ops++;
  c->handles_open++;
  bp__ring_hold(1);
  return BP_OK;
}

void bp__conn_ring_sent(bp__conn_t *c, int res) {
  int closing = c->closing;
  bp__ring_hold(-1);
  ring_op_end(c); /* (frees c when closing and nothing else is open) */
  if (closing) return;
  if (res < 0) {
    c->writing = 0;
    c->peer_gone = 1;
    bp__conn_close(c);
    return;
  }
  c->wsent += (size_t)res;
  if (c->wsent < c->wlen && res > 0) {
    if (ring_send(c) != BP_OK) {
      c->writing = 0;
      bp__conn_close(c);
    }
    return;
  }
  c->writing = 0;
  written(c);
}

int bp__conn_write(bp__conn_t *c, size_t len) {
  uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)len);
  ssize_t n;
  if (c->uring) {
    c->wlen = len;
    c->wsent = 0;
    if (ring_send(c) != BP_OK) {
      bp__conn_close(c);
      return BP_ECLOSED;
    }
    return BP_OK;
  }
  /* send, not write (as recv in conn_read); libuv's stream has nothing
   * queued (c->writing is clear), so writing around it keeps the order */
  do n = send(c->fd, c->wbuf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n == (ssize_t)len) {
    written(c);
    return BP_OK;
  }
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    bp__conn_close(c);
    return BP_ECLOSED;
  }
  if (n > 0) {
    b.base += n;
    b.len -= (unsigned)n;
  }
  c->writing = 1;
  c->wreq.data = c;
  if (uv_write(&c->wreq, &c->h.stream, &b, 1, after_write) != 0) {
    c->writing = 0;
    bp__conn_close(c);
    return BP_ECLOSED;
  }
  return BP_OK;
}

/* --- where connections live ------------------------------------------------------ */

/* Connections live in slabs of their own, not among their buffers in
 * malloc's heap: there, a connection's struct would sit between the holes
 * its idle buffers leave and pin the pages around it (an idle connection
 * cost 4.5-5.5 KB after a while instead of its 1.7). Packed together, the
 * freed buffers leave whole pages that malloc_trim gives back. A slab is
 * unmapped when its last connection closes (one empty slab is kept).
 * Sanitizer builds use malloc, which sees every use after free. */
#if defined(__SANITIZE_ADDRESS__)
#define CONN_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONN_SLABS 0
#endif
#endif
#ifndef CONN_SLABS
#define CONN_SLABS 1
#endif

#define SLAB_CONNS 64

/* A slot: the slab it belongs to, then the connection (the protocol's
 * struct, conn_size bytes). */
typedef struct conn_slot_s conn_slot_t;
struct conn_slot_s {
  bp__conn_slab_t *slab;
  conn_slot_t *next_free;
  max_align_t conn[]; /* bp__conn_t first */
};

struct bp__conn_slab_s {
  bp__conn_slab_t *prev, *next; /* the server's slabs with a free slot */
  conn_slot_t *free;
  size_t bytes; /* of the mapping */
  int used;
};

#if CONN_SLABS
static size_t slot_size(const bp__server_t *s) {
  size_t n = sizeof(conn_slot_t) + s->protocol->conn_size;
  return (n + _Alignof(max_align_t) - 1) & ~(size_t)(_Alignof(max_align_t) - 1);
}

static conn_slot_t *slot_of(bp__conn_t *c) {
  return (conn_slot_t *)((char *)c - offsetof(conn_slot_t, conn));
}

static void slab_unlink(bp__server_t *s, bp__conn_slab_t *sl) {
  if (sl->prev) sl->prev->next = sl->next;
  else s->slabs = sl->next;
  if (sl->next) sl->next->prev = sl->prev;
  sl->prev = sl->next = NULL;
}

static void slab_link(bp__server_t *s, bp__conn_slab_t *sl) {
  sl->prev = NULL;
  sl->next = s->slabs;
  if (s->slabs) s->slabs->prev = sl;
  s->slabs = sl;
}
#endif

static bp__conn_t *conn_alloc(bp__server_t *s) {
#if CONN_SLABS
  bp__conn_slab_t *sl = s->slabs;
  conn_slot_t *slot;
  if (!sl || !sl->free) {
    size_t each = slot_size(s), head = (sizeof *sl + _Alignof(max_align_t) - 1) &
                                      ~(size_t)(_Alignof(max_align_t) - 1);
    size_t bytes = head + each * SLAB_CONNS;
    sl = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sl == MAP_FAILED) return NULL;
    sl->bytes = bytes;
    for (int i = SLAB_CONNS - 1; i >= 0; i--) {
      slot = (conn_slot_t *)((char *)sl + head + each * (size_t)i);
      slot->slab = sl;
      slot->next_free = sl->free;
      sl->free = slot;
    }
    slab_link(s, sl);
  }
  slot = sl->free;
  sl->free = slot->next_free;
  if (++sl->used == SLAB_CONNS) slab_unlink(s, sl);
  memset(slot->conn, 0, s->protocol->conn_size);
  return (bp__conn_t *)slot->conn;
#else
  return calloc(1, s->protocol->conn_size);
#endif
}

static void conn_free(bp__server_t *s, bp__conn_t *c) {
#if CONN_SLABS
  conn_slot_t *slot = slot_of(c);
  bp__conn_slab_t *sl = slot->slab;
  if (sl->used-- == SLAB_CONNS) slab_link(s, sl); /* it has room again */
  if (sl->used == 0 && (sl->prev || sl->next)) { /* keep one empty slab, not more */
    slab_unlink(s, sl);
    munmap(sl, sl->bytes);
    return;
  }
  slot->next_free = sl->free;
  sl->free = slot;
#else
  (void)s;
  free(c);
#endif
}

static void slabs_free(bp__server_t *s) {
#if CONN_SLABS
  while (s->slabs) {
    bp__conn_slab_t *sl = s->slabs;
    slab_unlink(s, sl);
    munmap(sl, sl->bytes);
  }
#else
  (void)s;
#endif
}

/* --- connection lifecycle ---------------------------------------------------------- */

static void listener_update(bp__server_t *s);

static void server_free(bp__server_t *s) {
  slabs_free(s);
  s->free_fn(s);
}

/* The last of a connection's handles and ring operations has ended. */
static void conn_release(bp__conn_t *c) {
  bp__server_t *s = c->server;
  s->protocol->on_close(c);
  free(c->rbuf);
  free(c->wbuf);
  conn_free(s, c);
  s->nconns--;
  if (!s->stopping) listener_update(s); /* below max_concurrency again */
  if (s->stopping && s->nconns == 0) {
    if (s->closed_waiter) {
      int w = s->closed_waiter;
      s->closed_waiter = 0;
      bp__vm_wake(w, BP_OK);
    }
    if (s->listener_closed) server_free(s);
  }
}

static void conn_closed(uv_handle_t *h) {
  bp__conn_t *c = h->data;
  if (--c->handles_open == 0) conn_release(c);
}

static void ring_op_end(bp__conn_t *c) {
  c->ring_ops--;
  if (c->ring_hold && c->ring_ops == 0) {
    c->ring_hold = 0;
    bp__ring_hold(-1);
  }
  if (--c->handles_open == 0) conn_release(c);
}

void bp__conn_close(bp__conn_t *c) {
  bp__server_t *s = c->server;
  if (c->closing) return;
  if (c->busy) {
    /* The message is still being handled: close once it is answered. */
    c->peer_gone = 1;
    bp__conn_stop_reading(c);
    return;
  }
  if (c->writing) { /* after_write closes it */
    c->keep_alive = 0;
    return;
  }
  c->closing = 1;
  bp__edge_remove(&c->edge);
  if (c->uring) {
    /* The ring's operations end first: the connection is freed after
     * their last completions (the socket, closed below, stays open in the
     * kernel until then). Meanwhile they keep the loop alive. */
    ring_recv_cancel(c);
    if (c->ring_ops > 0) {
      c->ring_hold = 1;
      bp__ring_hold(1);
    }
  }
  c->fd = -1;
  unschedule_resume(c);
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  uv_close(&c->h.handle, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void conn_close_closable(bp__closable_t *cl) {
  bp__conn_t *c = (bp__conn_t *)cl;
  c->busy = 0; /* shutdown: abandon whatever is in flight */
  c->writing = 0;
  bp__conn_close(c);
}

static void remote_name(bp__conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  strcpy(c->remote, "-");
  if (c->server->family == AF_UNIX) return;
  if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof c->remote);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof c->remote);
}

static void conn_free_cb(uv_handle_t *h) {
  bp__conn_t *c = h->data;
  conn_free(c->server, c);
}

/* A connection accepted on the listening socket: register it, let the
 * protocol set up, and start reading (input already there is reported at
 * once). */
static void conn_adopt(bp__server_t *s, int fd) {
  bp__conn_t *c = conn_alloc(s);
  uv_os_fd_t ufd;
  int rc;
  if (!c) {
    close(fd);
    return;
  }
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_close_closable;
  c->server = s;
  c->edge.fd = -1;
  c->fd = fd;
  if (s->family == AF_UNIX) uv_pipe_init(uv_default_loop(), &c->h.pipe, 0);
  else uv_tcp_init(uv_default_loop(), &c->h.tcp);
  c->h.handle.data = c;
  rc = s->family == AF_UNIX ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
  if (rc != 0) {
    close(fd);
    uv_close(&c->h.handle, conn_free_cb);
    return;
  }
  uv_timer_init(uv_default_loop(), &c->timer);
  c->timer.data = c;
  c->handles_open = 2;
  if (s->family != AF_UNIX) uv_tcp_nodelay(&c->h.tcp, 1);
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  if (++s->nconns > s->peak_conns) s->peak_conns = s->nconns;
  remote_name(c);
  c->reading = 1;
  c->idle_since = uv_now(uv_default_loop());
  s->protocol->on_open(c);
  if (c->closing) return;
  if (s->uring) {
    c->uring = 1;
    bp__conn_start_reading(c);
    return;
  }
  if ((rc = uv_fileno(&c->h.handle, &ufd)) != 0 || (rc = bp__edge_add(&c->edge, ufd, on_edge)) != 0) {
    bp_log(BP_LOG_ERROR, "baseplate.server", "cannot watch a new connection: %s", uv_strerror(rc));
    bp__conn_close(c);
  }
}

/* --- accepting ---------------------------------------------------------------------- */

static int at_capacity(const bp__server_t *s) {
  return s->max_concurrency > 0 && s->nconns >= s->max_concurrency;
}

static void on_listener(uv_poll_t *h, int status, int events);
static void accept_failed(bp__server_t *s, int err);
static void listener_unref(bp__server_t *s);

/* The ring's accept: one connection at a time, re-armed after each (the
 * new accept rides the loop iteration's one submission). Not multishot:
 * the kernel reads the descriptor limit when an accept is queued, so a
 * multishot accept would go on past a limit lowered since (prlimit), where
 * accepting must pause; and one at a time no connection is taken past
 * max_concurrency. It holds the server (a listener handle) until its
 * completion. */
static void ring_accept_arm(bp__server_t *s) {
  if (s->accept_armed) return; /* (a cancelled one re-arms at its end) */
  if (bp__ring_accept(s, s->lfd, 0) != BP_OK) {
    accept_failed(s, ENOMEM);
    return;
  }
  s->accept_armed = 1;
  s->accept_cancelled = 0;
  s->listener_handles++;
  bp__ring_hold(1);
}

/* Poll the listening socket when we can take connections; else they wait
 * in the kernel's backlog (max_concurrency reached, accepting paused). */
static void listener_update(bp__server_t *s) {
  int want = !s->stopping && !s->accept_paused && !at_capacity(s);
  if (s->lfd < 0) return; /* (no listener: connections come from bp_server_adopt) */
  if (want == s->polling) return;
  s->polling = want;
  if (s->uring_accept) {
    if (want) ring_accept_arm(s);
    else if (s->accept_armed && !s->accept_cancelled && bp__ring_cancel_accept(s) == BP_OK)
      s->accept_cancelled = 1;
    return;
  }
  if (want) uv_poll_start(&s->lpoll, UV_READABLE, on_listener);
  else uv_poll_stop(&s->lpoll);
}

void bp__server_ring_accepted(bp__server_t *s, int res, int more) {
  if (!more) {
    s->accept_armed = 0;
    s->accept_cancelled = 0;
    bp__ring_hold(-1);
  }
  if (res >= 0) {
    /* Taken even when stopping (as drain_backlog takes the backlog): it is
     * answered once and told the connection closes. */
    conn_adopt(s, res);
  } else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED && res != -EPROTO &&
             res != -EPERM && res != -EAGAIN) {
    accept_failed(s, -res); /* EMFILE, ENFILE, ENOBUFS, ENOMEM: paused, retried */
  }
  if (!s->stopping) listener_update(s);
  if (!more) {
    if (s->polling && !s->stopping && !s->listener_closed) ring_accept_arm(s);
    listener_unref(s);
  }
}

static void on_accept_retry(uv_timer_t *t) {
  bp__server_t *s = t->data;
  s->accept_paused = 0;
  listener_update(s);
}

/* Accepting failed for want of resources (file descriptors, most often).
 * As nginx does, stop accepting for a while: the connections wait in the
 * backlog and are served once descriptors are free again. Logged at most
 * once in 10 seconds, with how often it happened. */
static void accept_failed(bp__server_t *s, int err) {
  uint64_t now = uv_now(uv_default_loop());
  s->accept_errors++;
  s->accept_paused = 1;
  listener_update(s);
  uv_timer_start(&s->accept_retry, on_accept_retry, 100, 0);
  if (s->accept_error_logged && now - s->accept_error_logged < 10000) return;
  {
    struct rlimit rl;
    char limit[32] = "unlimited";
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      snprintf(limit, sizeof limit, "%llu", (unsigned long long)rl.rlim_cur);
    bp_log(BP_LOG_ERROR, "baseplate.server",
           "cannot accept connections: %s (%d open connections, file descriptor limit %s): "
           "new connections wait until some close (accepting paused %d time%s in %s)",
           strerror(err), s->nconns, limit, s->accept_errors, s->accept_errors == 1 ? "" : "s",
           s->accept_error_logged ? "the last 10 seconds" : "a row");
  }
  s->accept_error_logged = now ? now : 1;
  s->accept_errors = 0;
}

/* Take the connections the kernel has completed: as many as are there (up
 * to a bound, so other work gets its turn), or one per wake-up when other
 * processes share the socket (else the first awake takes them all). */
static void accept_ready(bp__server_t *s) {
  for (int n = 0; n < 256 && !s->stopping && !at_capacity(s); n++) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM) continue;
      accept_failed(s, e); /* EMFILE, ENFILE, ENOBUFS, ENOMEM */
      return;
    }
    conn_adopt(s, fd);
    if (s->shared_socket) return;
  }
  listener_update(s);
}

static void on_listener(uv_poll_t *h, int status, int events) {
  bp__server_t *s = h->data;
  if (status < 0) {
    accept_failed(s, -status);
    return;
  }
  accept_ready(s);
}

/* Stopping: take every connection the kernel has completed but we have not
 * accepted, so that closing the listener does not reset them; each is
 * answered once, and told the connection closes. A socket of our own first
 * stops taking new connections (a filter that drops every packet: SYNs go
 * unanswered, clients retry and then find the port closed). A socket shared
 * with other processes is left alone: it stays open in them. */
static void drain_backlog(bp__server_t *s) {
  static struct sock_filter drop[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  struct sock_fprog prog = {1, drop};
  int fd, n = 0;
  if (s->shared_socket || s->lfd < 0) return;
  if (s->family != AF_UNIX) (void)setsockopt(s->lfd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
  while (n++ < 4096 && (fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
    conn_adopt(s, fd);
}

/* --- memory given back -------------------------------------------------------------- */

/* An idle connection keeps only itself: its buffers, sized for what it
 * served, go back to the allocator once it has been idle for a second (not
 * after each message: a busy connection reuses them). */
static size_t conn_compact(bp__conn_t *c) {
  size_t freed = c->rcap + c->wcap + c->server->protocol->on_compact(c);
  free(c->rbuf);
  free(c->wbuf);
  c->rbuf = c->wbuf = NULL;
  c->rcap = c->wcap = 0;
  c->rlen = 0;
  return freed;
}

static void on_sweep(uv_timer_t *t) {
  bp__server_t *s = t->data;
  uint64_t now = uv_now(uv_default_loop());
  size_t freed = 0;
  for (bp__conn_t *c = s->conns; c; c = c->next) {
    if (c->receiving || c->busy || c->writing || c->rlen || c->lingering || c->closing ||
        now - c->idle_since < 1000 || !(c->rbuf || c->wbuf))
      continue;
    freed += conn_compact(c);
  }
  /* Load has fallen (a flood of connections has closed, or their buffers
   * are released): hand free memory back to the system, which glibc does
   * not do by itself for memory in the middle of its heap. */
  if (freed >= (1u << 20) || (s->peak_conns >= 1000 && s->nconns < s->peak_conns / 2)) {
    malloc_trim(0);
    s->peak_conns = s->nconns;
  }
}

/* --- the server ---------------------------------------------------------------------- */

static void listener_unref(bp__server_t *s) {
  if (--s->listener_handles > 0) return;
  if (s->lfd >= 0) close(s->lfd);
  s->lfd = -1;
  s->listener_closed = 1;
  if (s->nconns == 0 && !s->closed_waiter) server_free(s);
}

static void listener_closed(uv_handle_t *h) { listener_unref(h->data); }

static void listener_close(bp__server_t *s) {
  s->polling = 0;
  if (s->lfd >= 0) uv_close((uv_handle_t *)&s->lpoll, listener_closed);
  uv_close((uv_handle_t *)&s->accept_retry, listener_closed);
  uv_close((uv_handle_t *)&s->sweep, listener_closed);
}

void bp__server_drain(bp__server_t *s) { s->draining = 1; }

int bp__server_shutdown(bp__server_t *s, int waiter) {
  bp__server_stop(s);
  if (s->nconns == 0) return BP_OK;
  s->closed_waiter = waiter;
  return BP_AGAIN;
}

void bp__server_stop(bp__server_t *s) {
  bp__conn_t *c, *next;
  if (!s || s->stopping) return;
  s->stopping = 1;
  listener_update(s);
  drain_backlog(s);
  listener_close(s);
  for (c = s->conns; c; c = next) {
    next = c->next;
    /* Idle connections go after a short linger (a message may already be
     * on the wire: it is answered, and the connection closes); one half
     * received, being handled or being written finishes first. */
    if (!c->busy && !c->writing && !c->receiving && c->rlen == 0)
      bp__conn_arm(c, on_idle_timeout, 0.2);
  }
}

static void server_close_closable(bp__closable_t *cl) { bp__server_stop((bp__server_t *)cl); }

int bp__server_start(bp__server_t *s, const bp__protocol_t *protocol, bp_listener_t *l, char *err,
                     size_t errlen) {
  int rc;
  s->closable.magic = BP_CLOSABLE_MAGIC;
  s->closable.close = server_close_closable;
  s->protocol = protocol;
  bp__ignore_sigpipe();
  uv_timer_init(uv_default_loop(), &s->accept_retry);
  s->accept_retry.data = s;
  uv_timer_init(uv_default_loop(), &s->sweep);
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, 1000, 1000);
  uv_unref((uv_handle_t *)&s->sweep);
  s->uring = bp__ring_use();
  if (!l) { /* connections only from bp_server_adopt (tests: baseplate.testing) */
    s->family = AF_UNIX;
    s->lfd = -1;
    s->listener_handles = 2;
    return BP_OK;
  }
  s->family = l->family;
  s->lfd = l->fd;
  l->fd = -1; /* the server owns the socket now */
  rc = uv_poll_init(uv_default_loop(), &s->lpoll, s->lfd);
  s->lpoll.data = s;
  s->listener_handles = rc == 0 ? 3 : 2;
  if (rc == 0 && listen(s->lfd, 511) != 0) rc = -errno;
  if (rc != 0) {
    snprintf(err, errlen, "cannot serve on %s: %s", l->describe, uv_strerror(rc));
    s->stopping = 1;
    if (s->listener_handles == 3) uv_close((uv_handle_t *)&s->lpoll, listener_closed);
    uv_close((uv_handle_t *)&s->accept_retry, listener_closed);
    uv_close((uv_handle_t *)&s->sweep, listener_closed);
    return rc;
  }
  /* Other processes accepting on the socket take turns through its poll
   * (accept_ready); our own socket is accepted from through the ring. */
  s->uring_accept = s->uring && !s->shared_socket;
  listener_update(s);
  return BP_OK;
}

/* --- the public API ------------------------------------------------------------------ */

void bp_server_drain(bp_server_t *s) { bp__server_drain(s); }

void bp_server_stop(bp_server_t *s) {
  if (s) bp__server_stop(s);
}

int bp_server_shutdown(bp_server_t *s, int waiter) {
  int rc = bp__server_shutdown(s, waiter);
  return rc;
}

int bp_server_connections(const bp_server_t *s) { return s->nconns; }

int bp_server_adopt(bp_server_t *s, int fd) {
  if (!s || s->stopping) {
    close(fd);
    return BP_ECANCELED;
  }
  conn_adopt(s, fd);
  return BP_OK;
}

int bp_server_active(const bp_server_t *s) { return s->active; }
