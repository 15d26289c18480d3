/*
 * The protocol-neutral server core: a listening socket accepted from, the
 * connections on it (reads and sends, through the edge-triggered epoll set
 * or the loop's io_uring: ring.h; deadlines, lingering close, idle
 * buffers given back), the limits (max_concurrency, running
 * out of descriptors) and the graceful drain and stop. A protocol (HTTP/1,
 * later THeader) plugs in through one small table of callbacks, as h2o's
 * connection callbacks do: it parses what the core has read, answers by
 * filling the connection's write buffer, and keeps its own state in a
 * connection struct that embeds bp__conn_t as its first member.
 *
 * Internal to the library: the public servers are bp_http_server_* in
 * include/baseplate/runtime.h.
 */
#ifndef BP_SERVER_SERVER_H
#define BP_SERVER_SERVER_H

#include "runtime.h"
#include "internal.h"
#include "server/listener.h"

#include <stdint.h>
#include <sys/types.h>

typedef struct bp__conn_s bp__conn_t;
typedef struct bp_server_s bp__server_t; /* bp_server_t in the public API */
typedef struct bp__conn_slab_s bp__conn_slab_t;

typedef struct {
  const char *name;  /* "http", for log lines */
  size_t conn_size;  /* the protocol's connection struct, bp__conn_t first */
  /* A connection was accepted: set up the protocol's state (and its first
   * read deadline). */
  void (*on_open)(bp__conn_t *c);
  /* Parse what is buffered (c->rbuf, c->rlen): called when input came while
   * no message was being handled, when one has been answered and input
   * waits (on the next loop iteration: an answer may be sent from inside a
   * Lua FFI call, where Lua cannot be entered again), and at the end of
   * the input (c->read_eof, c->rlen may be 0). It consumes what it parsed
   * and, with nothing left to parse, calls bp__conn_idle. */
  void (*on_input)(bp__conn_t *c);
  /* The connection is closed: free the protocol's state (abandon a
   * message in flight). The core frees rbuf, wbuf and the struct. */
  void (*on_close)(bp__conn_t *c);
  /* Idle for a second: free the protocol's buffers; the bytes freed. */
  size_t (*on_compact)(bp__conn_t *c);
} bp__protocol_t;

struct bp__conn_s {
  bp__closable_t closable;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } h;
  bp__server_t *server;
  bp__edge_t edge; /* input readiness */
  bp__conn_t *prev, *next;
  uv_timer_t timer;        /* the current deadline's */
  uint64_t deadline;       /* loop time (ms) the current deadline expires at */
  uv_timer_cb on_deadline; /* what to do then; NULL: no deadline */
  int handles_open;        /* the stream and the timer: freed when both closed */
  char *rbuf;              /* bytes read, not yet parsed */
  size_t rlen, rcap;
  char *wbuf; /* the answer being written */
  size_t wcap;
  uv_write_t wreq;
  int busy;      /* a message is being handled: input waits, closing waits */
  int receiving; /* part of a message has arrived */
  int writing;
  int reading;  /* we want input (else it waits in the kernel: backpressure) */
  int readable; /* input may be waiting: no short read or EAGAIN since the last event */
  int hangup;   /* the peer closed or the socket failed: read until EOF or the error */
  int closing;
  int peer_gone;    /* read error: nobody to answer */
  int read_eof;     /* the client finished sending: answer what came, then close */
  int keep_alive;   /* the protocol's verdict for after the current answer */
  int unread_input; /* a message was refused before all of it was read */
  int lingering;    /* answered and half-closed: reading and discarding until the client closes */
  uint64_t linger_until; /* loop time (ms) lingering ends at the latest */
  size_t linger_bytes;   /* discarded so far */
  uint64_t idle_since;   /* loop time (ms) the connection last went idle */
  char remote[64];       /* the peer's address ("-" on a UNIX socket) */
  int fd;                /* the socket (-1 once closing) */
  /* the io_uring path (ring.h): */
  int uring;            /* served through the ring, not the edge-triggered set */
  int recv_armed;       /* a multishot receive is on */
  int recv_cancelled;   /* and its cancel is queued */
  int recv_ended;       /* it reported the end of input or an error: no more */
  int held_status;      /* that end, come while not reading: for when reading resumes */
  int ring_ops;         /* operations whose last completion has not come */
  int ring_hold;        /* closing with ring_ops: keeps the loop alive */
  size_t wlen, wsent;   /* the answer being sent, and how much went */
};

struct bp_server_s {
  bp__closable_t closable;
  const bp__protocol_t *protocol;
  /* The listening socket is polled and accepted from here (not uv_listen):
   * running out of file descriptors must pause accepting, not make libuv
   * close the waiting connections unseen. */
  int lfd;
  int family;
  uv_poll_t lpoll;
  uv_timer_t accept_retry; /* accepting paused after EMFILE and the like */
  uv_timer_t sweep;        /* once a second: idle connections give their buffers back */
  int listener_handles;    /* lpoll, accept_retry and sweep not closed yet */
  int listener_closed;
  int polling, accept_paused;
  int uring;           /* connections served through the ring (ring.h) */
  int uring_accept;    /* accepting through the ring (not shared with other processes) */
  int accept_armed;    /* an accept is on the ring */
  int accept_cancelled;
  int accept_errors;            /* failed accepts not logged yet */
  uint64_t accept_error_logged; /* loop time of the last such log line */
  int peak_conns;               /* the most connections since memory was last trimmed */
  /* limits */
  int max_concurrency;      /* connections at once; 0: no limit */
  int shared_socket;        /* other processes accept on it too: take turns */
  double keepalive_timeout; /* s an idle connection stays open; 0: forever */
  size_t max_buffered;      /* input kept while a message is handled (backpressure) */
  bp__conn_t *conns;        /* doubly linked */
  bp__conn_slab_t *slabs;   /* where connections live, those with a free slot first */
  int nconns, active;       /* connections, messages being handled */
  int stopping, draining;
  int closed_waiter; /* Lua waiter to wake when the last connection closes */
  void (*free_fn)(bp__server_t *s); /* frees the protocol's server struct */
};

/* Serve `protocol` on listener `l` (the server takes its socket). `s` is the
 * protocol's server struct (bp__server_t first), zeroed, with the limits
 * above set; freed with s->free_fn once stopped and every connection is
 * closed. BP_OK, or an error with a reason in err (s is then freed). */
int bp__server_start(bp__server_t *s, const bp__protocol_t *protocol, bp_listener_t *l, char *err,
                     size_t errlen);
/* Keep serving, but close connections after each answer. */
void bp__server_drain(bp__server_t *s);
/* Stop accepting (after taking what waits in the backlog); idle
 * connections close after a short linger, the others once answered. */
void bp__server_stop(bp__server_t *s);
/* bp__server_stop, then BP_OK if no connection is left, else BP_AGAIN and
 * `waiter` is woken when the last one closes. */
int bp__server_shutdown(bp__server_t *s, int waiter);

/* Grow *buf (capacity *cap) to hold `need` bytes, doubling from 1 KB. */
int bp__grow(char **buf, size_t *cap, size_t need);

/* Deadlines are lazy: arming moves a deadline, the timer is only started
 * when not running, and when it fires early it is re-armed for the rest,
 * so that the per-message path does no timer-heap work. seconds <= 0: none. */
void bp__conn_arm(bp__conn_t *c, uv_timer_cb cb, double seconds);
void bp__conn_disarm(bp__conn_t *c);
void bp__conn_start_reading(bp__conn_t *c);
void bp__conn_stop_reading(bp__conn_t *c);
/* Send c->wbuf[0..len): at once if the socket takes it, else through
 * libuv's queued write (c->writing); on the io_uring path, one send
 * submission (c->writing until it completes; wbuf must stay as it is until
 * then). When all is out, the connection goes idle (keep-alive) or ends
 * (lingering close when input is unread).
 * BP_OK, or BP_ECLOSED (the connection is closing). */
int bp__conn_write(bp__conn_t *c, size_t len);
/* A message was handled and nothing goes back (a oneway call): go on as
 * after a write (the next message, or the close). */
void bp__conn_continue(bp__conn_t *c);
/* Nothing buffered to parse: read more, or close at the end of input or
 * when the server stops. */
void bp__conn_idle(bp__conn_t *c);
/* Close (once the message being handled is answered, or its write done). */
void bp__conn_close(bp__conn_t *c);

#endif
