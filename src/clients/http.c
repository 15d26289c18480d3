/* HTTP client calls: libcurl's multi interface driven by the libuv loop
 * (include/baseplate/http_client.h, docs/http-client.md).
 *
 * One CURLM serves the process. libcurl owns its sockets and its timer and
 * says what it wants through two callbacks: CURLMOPT_SOCKETFUNCTION (watch
 * this socket for these events: a uv_poll per socket, through src/clients/watch.c) and
 * CURLMOPT_TIMERFUNCTION (call me back in this many milliseconds: one loop
 * timer). Both call curl_multi_socket_action from the loop; afterwards the
 * finished transfers are read with curl_multi_info_read and their waiters
 * woken one by one, outside any libcurl callback (a woken coroutine may
 * start another call or free one at once).
 *
 * Every loop handle here points at the one closable (the multi's), so the
 * loop's shutdown closes everything at once: the calls in flight are
 * abandoned (nobody is woken), libcurl's connections closed, the handles
 * closed. A call's memory is its owner's (Lua's), freed by
 * bp_http_call_free whenever that comes, before or after the shutdown.
 *
 * A call freed while in flight is taken out of the multi at once and its
 * waiter woken with BP_ECLOSED from the loop (the deferred list and its
 * zero timer), as are failures found inside bp_http_call_start. Easy
 * handles are kept for reuse (reset) up to a small number. */
#include "baseplate/http_client.h"
#include "baseplate/log.h"
#include "clients/conn.h"
#include "clients/watch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_MAX_SIZE ((size_t)64 << 20)
#define MAX_HEADER_BYTES ((size_t)256 << 10)
#define SPARE_EASY 32
#define DEFAULT_WINDOW ((size_t)256 << 10)

enum { CALL_NEW, CALL_RUNNING, CALL_DONE };

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

struct bp_http_call_s {
  CURL *easy;
  bp_http_filter_t *filter;
  struct curl_slist *headers, *resolve;
  char *method;
  char *body;
  size_t body_len;
  int has_body;
  size_t max_size;
  buf_t resp_headers, resp_body;
  /* Streaming (bp_http_call_stream): resp_body holds what came since the
   * last take, at most `window` bytes (beyond, the transfer is paused);
   * `taken` is what the last take handed out. */
  int stream, paused, in_ready;
  int final_status; /* once CALL_DONE */
  size_t window, streamed;
  buf_t taken;
  int state;
  int busy; /* the waiter is owed a wake */
  int waiter;
  int owner_gone;
  int in_deferred; /* in M.deferred: on_defer wakes (and releases when owner_gone) */
  int deferred_status;
  int http_status, http_version;
  int failure;
  int toobig, refused;
  bp_http_call_t *prev, *next;      /* in flight (M.calls) */
  bp_http_call_t *next_deferred;    /* waiting in M.deferred */
  bp_http_call_t *next_ready;       /* in M.ready: a chunk came */
  char address[64];                 /* connected to, or refused */
  char curl_err[CURL_ERROR_SIZE];
  char err[CURL_ERROR_SIZE + 256];
};

/* A socket libcurl opened, watched on the loop (src/clients/watch.c). The
 * watch lives as long as the socket (until libcurl closes it, through
 * CURLOPT_CLOSESOCKETFUNCTION), not only while a transfer uses it: libcurl
 * says CURL_POLL_REMOVE when a transfer ends and asks for the same socket
 * again with the next call on the kept-alive connection, and dropping and
 * re-adding it to epoll around every call cost two epoll_ctl calls each. */
typedef struct sock_s {
  bp__watch_t *watch;
  curl_socket_t fd;
  int active; /* libcurl watches it (between its first ask and CURL_POLL_REMOVE) */
  int ours;   /* a connection's socket, opened by on_open_socket: closed through
               * on_close_socket, so it may stay watched while idle. Others
               * (the threaded resolver's socketpair) are closed by libcurl
               * directly: their watch goes at CURL_POLL_REMOVE, as it must
               * before the descriptor can be reused. */
  struct sock_s *prev, *next;
} sock_t;

static struct {
  bp__closable_t closable; /* every handle's data */
  CURLM *multi;
  uv_timer_t timer;       /* libcurl's */
  uv_timer_t defer_timer; /* wakes owed from the loop */
  int state;              /* 0: not set up, 1: running, 2: closing (handles not yet closed) */
  int handles_open;
  int inflight;
  long max_connections;
  bp_http_call_t *calls;
  bp_http_call_t *deferred, *deferred_tail;
  bp_http_call_t *ready; /* streamed calls a chunk came for (woken after libcurl ran) */
  sock_t *socks;
  sock_t **byfd; /* socks by descriptor */
  int nbyfd;
  unsigned char *opened; /* by descriptor: opened by on_open_socket, not yet closed */
  int nopened;
  CURL *spare[SPARE_EASY];
  int nspare;
} M;

static const char *LOGGER = "baseplate.clients.http";

/* --- the address filter ------------------------------------------------------------- */

typedef struct {
  int family; /* AF_INET or AF_INET6 */
  int prefix;
  unsigned char addr[16];
} net_t;

typedef struct {
  net_t *v;
  int n, cap;
} nets_t;

typedef struct {
  int *v;
  int n, cap;
} ports_t;

struct bp_http_filter_s {
  int refs;
  int mode;
  int allow_ipv6;
  nets_t allow, deny;
  ports_t allow_ports, deny_ports;
};

bp_http_filter_t *bp_http_filter_new(int mode, int allow_ipv6) {
  bp_http_filter_t *f;
  if (mode != BP_HTTP_FILTER_EXTERNAL && mode != BP_HTTP_FILTER_INTERNAL) return NULL;
  if (!(f = calloc(1, sizeof *f))) return NULL;
  f->refs = 1;
  f->mode = mode;
  f->allow_ipv6 = allow_ipv6 != 0;
  return f;
}

void bp_http_filter_free(bp_http_filter_t *f) {
  if (!f || --f->refs > 0) return;
  free(f->allow.v);
  free(f->deny.v);
  free(f->allow_ports.v);
  free(f->deny_ports.v);
  free(f);
}

static void copy_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void copy_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!err || !errlen) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Mask addr[0..16) down to its first `prefix` bits. */
static void mask(unsigned char *addr, int len, int prefix) {
  for (int i = 0; i < len; i++) {
    int bits = prefix - i * 8;
    if (bits >= 8) continue;
    addr[i] &= bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
  }
}

int bp_http_filter_add(bp_http_filter_t *f, int list, const char *cidr, char *err, size_t errlen) {
  char text[INET6_ADDRSTRLEN + 8];
  const char *slash;
  net_t net;
  nets_t *nets;
  char *end;
  long prefix;
  if (!f || (list != BP_HTTP_ALLOW && list != BP_HTTP_DENY) || !cidr) {
    copy_err(err, errlen, "invalid arguments");
    return BP_EINVAL;
  }
  slash = strchr(cidr, '/');
  if ((slash ? (size_t)(slash - cidr) : strlen(cidr)) >= INET6_ADDRSTRLEN) goto bad;
  snprintf(text, sizeof text, "%.*s", slash ? (int)(slash - cidr) : (int)strlen(cidr), cidr);
  memset(&net, 0, sizeof net);
  if (inet_pton(AF_INET, text, net.addr) == 1)
    net.family = AF_INET;
  else if (inet_pton(AF_INET6, text, net.addr) == 1)
    net.family = AF_INET6;
  else
    goto bad;
  net.prefix = net.family == AF_INET ? 32 : 128;
  if (slash) {
    prefix = strtol(slash + 1, &end, 10);
    if (!slash[1] || *end || prefix < 0 || prefix > net.prefix) goto bad;
    /* As Python's ip_network: host bits set is an error. */
    unsigned char masked[16];
    memcpy(masked, net.addr, sizeof masked);
    mask(masked, net.family == AF_INET ? 4 : 16, (int)prefix);
    if (memcmp(masked, net.addr, sizeof masked) != 0) {
      copy_err(err, errlen, "%s has host bits set", cidr);
      return BP_EINVAL;
    }
    net.prefix = (int)prefix;
  }
  nets = list == BP_HTTP_ALLOW ? &f->allow : &f->deny;
  if (nets->n == nets->cap) {
    int cap = nets->cap ? nets->cap * 2 : 8;
    net_t *v = realloc(nets->v, (size_t)cap * sizeof *v);
    if (!v) {
      copy_err(err, errlen, "out of memory");
      return BP_ENOMEM;
    }
    nets->v = v;
    nets->cap = cap;
  }
  nets->v[nets->n++] = net;
  return BP_OK;
bad:
  copy_err(err, errlen, "not an IP address or network: %.100s", cidr);
  return BP_EINVAL;
}

int bp_http_filter_add_port(bp_http_filter_t *f, int list, int port) {
  ports_t *p;
  if (!f || (list != BP_HTTP_ALLOW && list != BP_HTTP_DENY) || port < 1 || port > 65535)
    return BP_EINVAL;
  p = list == BP_HTTP_ALLOW ? &f->allow_ports : &f->deny_ports;
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 8;
    int *v = realloc(p->v, (size_t)cap * sizeof *v);
    if (!v) return BP_ENOMEM;
    p->v = v;
    p->cap = cap;
  }
  p->v[p->n++] = port;
  return BP_OK;
}

static int in_net(const net_t *net, int family, const unsigned char *addr) {
  int full, rest;
  if (net->family != family) return 0;
  full = net->prefix / 8;
  rest = net->prefix % 8;
  if (memcmp(net->addr, addr, (size_t)full) != 0) return 0;
  if (rest && (net->addr[full] ^ addr[full]) & (0xff << (8 - rest))) return 0;
  return 1;
}

static int in_nets(const nets_t *nets, int family, const unsigned char *addr) {
  for (int i = 0; i < nets->n; i++)
    if (in_net(&nets->v[i], family, addr)) return 1;
  return 0;
}

static int in_ports(const ports_t *p, int port) {
  for (int i = 0; i < p->n; i++)
    if (p->v[i] == port) return 1;
  return 0;
}

/* Special ranges. `local`: counts as an internal address (an internal
 * filter lets it through); the others are neither public nor internal. */
typedef struct {
  unsigned char addr[16];
  int prefix;
  const char *what;
  int local;
} range_t;

static const range_t V4[] = {
    {{0}, 8, "a \"this network\" address (0.0.0.0/8)", 0},
    {{10}, 8, "a private address (10.0.0.0/8)", 1},
    {{100, 64}, 10, "a carrier-grade NAT address (100.64.0.0/10)", 1},
    {{127}, 8, "a loopback address", 1},
    {{169, 254}, 16, "a link-local address (169.254.0.0/16)", 1},
    {{172, 16}, 12, "a private address (172.16.0.0/12)", 1},
    {{192, 0, 0}, 24, "a reserved address (192.0.0.0/24)", 0},
    {{192, 0, 2}, 24, "a documentation address (192.0.2.0/24)", 0},
    {{192, 88, 99}, 24, "a 6to4 relay address (192.88.99.0/24)", 0},
    {{192, 168}, 16, "a private address (192.168.0.0/16)", 1},
    {{198, 18}, 15, "a benchmarking address (198.18.0.0/15)", 0},
    {{198, 51, 100}, 24, "a documentation address (198.51.100.0/24)", 0},
    {{203, 0, 113}, 24, "a documentation address (203.0.113.0/24)", 0},
    {{224}, 4, "a multicast address", 0},
    {{240}, 4, "a reserved address (240.0.0.0/4)", 0},
};

static const range_t V6[] = {
    {{0}, 128, "the unspecified address", 0},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "the loopback address", 1},
    {{0x01}, 64, "a discard address (100::/64)", 0},
    {{0x20, 0x01, 0, 0}, 32, "a Teredo address (2001::/32)", 0},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "a documentation address (2001:db8::/32)", 0},
    {{0x20, 0x01, 0}, 23, "a reserved address (2001::/23)", 0},
    {{0x20, 0x02}, 16, "a 6to4 address (2002::/16)", 0},
    {{0xfc}, 7, "a unique local address (fc00::/7)", 1},
    {{0xfe, 0x80}, 10, "a link-local address (fe80::/10)", 1},
    {{0xfe, 0xc0}, 10, "a site-local address (fec0::/10)", 1},
    {{0xff}, 8, "a multicast address", 0},
};

static const unsigned char MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const unsigned char NAT64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
static const unsigned char NAT64_LOCAL[6] = {0, 0x64, 0xff, 0x9b, 0, 1};

static const range_t *find_range(const range_t *t, size_t n, int family, const unsigned char *a) {
  for (size_t i = 0; i < n; i++) {
    net_t net = {family, t[i].prefix, {0}};
    memcpy(net.addr, t[i].addr, sizeof net.addr);
    if (in_net(&net, family, a)) return &t[i];
  }
  return NULL;
}

/* Classify an address: NULL for a public one, else what it is (written
 * into why) and whether it is internal. */
static const char *classify(int family, const unsigned char *a, int *local, char *why,
                            size_t whylen) {
  const range_t *r;
  *local = 0;
  if (family == AF_INET) {
    if ((r = find_range(V4, sizeof V4 / sizeof V4[0], AF_INET, a)) == NULL) return NULL;
    *local = r->local;
    snprintf(why, whylen, "%s", r->what);
    return why;
  }
  if (memcmp(a, MAPPED, 12) == 0 || memcmp(a, NAT64, 12) == 0) {
    /* Both reach the IPv4 address inside: judge that one. */
    char v4[INET_ADDRSTRLEN], inner[120];
    const char *kind = a[1] == 0x64 ? "a NAT64 address" : "an IPv4-mapped address";
    inet_ntop(AF_INET, a + 12, v4, sizeof v4);
    if (!classify(AF_INET, a + 12, local, inner, sizeof inner)) return NULL;
    snprintf(why, whylen, "%s of %s, %s", kind, v4, inner);
    return why;
  }
  if (memcmp(a, NAT64_LOCAL, 6) == 0) {
    snprintf(why, whylen, "a local-use NAT64 address (64:ff9b:1::/48)");
    return why;
  }
  if ((r = find_range(V6, sizeof V6 / sizeof V6[0], AF_INET6, a)) != NULL) {
    *local = r->local;
    snprintf(why, whylen, "%s", r->what);
    return why;
  }
  if ((a[0] & 0xe0) != 0x20) { /* outside 2000::/3, the global unicast space */
    snprintf(why, whylen, "a reserved address (outside 2000::/3)");
    return why;
  }
  return NULL;
}

/* Judge a binary address: BP_OK, or BP_DECLINED with why. */
static int judge(const bp_http_filter_t *f, int family, const unsigned char *a, int port, char *why,
                 size_t whylen) {
  char text[INET6_ADDRSTRLEN], what[200];
  int local;
  inet_ntop(family, a, text, sizeof text);
  if (family != AF_INET && family != AF_INET6) {
    snprintf(why, whylen, "only IPv4 and IPv6 addresses are allowed");
    return BP_DECLINED;
  }
  if (f->mode == BP_HTTP_FILTER_INTERNAL) {
    if (classify(family, a, &local, what, sizeof what) && local) return BP_OK;
    snprintf(why, whylen, "%s is not an internal address (an internal client talks to internal services only)",
             text);
    return BP_DECLINED;
  }
  if (in_ports(&f->deny_ports, port) || (f->allow_ports.n && !in_ports(&f->allow_ports, port))) {
    snprintf(why, whylen, "port %d is not allowed", port);
    return BP_DECLINED;
  }
  if (in_nets(&f->allow, family, a)) return BP_OK;
  if (in_nets(&f->deny, family, a)) {
    snprintf(why, whylen, "%s is denied by the configuration", text);
    return BP_DECLINED;
  }
  if (family == AF_INET6 && !f->allow_ipv6) {
    snprintf(why, whylen, "%s is an IPv6 address, and IPv6 is not allowed", text);
    return BP_DECLINED;
  }
  if (classify(family, a, &local, what, sizeof what)) {
    snprintf(why, whylen, "%s is %s", text, what);
    return BP_DECLINED;
  }
  return BP_OK;
}

int bp_http_filter_check(const bp_http_filter_t *f, const char *ip, int port, char *why,
                         size_t whylen) {
  unsigned char a[16];
  int family, rc;
  char buf[512];
  if (!f || !ip) return BP_EINVAL;
  memset(a, 0, sizeof a);
  if (inet_pton(AF_INET, ip, a) == 1)
    family = AF_INET;
  else if (inet_pton(AF_INET6, ip, a) == 1)
    family = AF_INET6;
  else {
    copy_err(why, whylen, "not an IP address: %.100s", ip);
    return BP_EINVAL;
  }
  rc = judge(f, family, a, port, buf, sizeof buf);
  if (rc != BP_OK) copy_err(why, whylen, "%s", buf);
  return rc;
}

/* --- buffers ------------------------------------------------------------------------ */

static int buf_add(buf_t *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *d;
    while (cap < b->len + n + 1) cap *= 2;
    if (!(d = realloc(b->data, cap))) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

/* --- the multi and the loop --------------------------------------------------------- */

static void set_refs(void) {
  int keep = M.inflight > 0;
  for (sock_t *k = M.socks; k; k = k->next) {
    if (keep)
      bp__watch_keep_loop(k->watch, 1);
    else
      bp__watch_keep_loop(k->watch, 0);
  }
  if (keep)
    uv_ref((uv_handle_t *)&M.timer);
  else
    uv_unref((uv_handle_t *)&M.timer);
}

static void handle_gone(void) {
  if (--M.handles_open == 0 && M.state == 2) M.state = 0; /* may be set up again */
}

static void sock_closed(bp__watch_t *w) {
  free(w->owner);
  handle_gone();
}

static sock_t *sock_of(curl_socket_t fd) {
  return fd >= 0 && fd < M.nbyfd ? M.byfd[fd] : NULL;
}

static int is_ours(curl_socket_t fd) { return fd >= 0 && fd < M.nopened && M.opened[fd]; }

/* Note (or forget) that libcurl opened `fd` through on_open_socket. */
static int mark_opened(curl_socket_t fd, int on) {
  if (fd < 0) return -1;
  if (fd >= M.nopened) {
    int n = M.nopened ? M.nopened : 64;
    unsigned char *v;
    if (!on) return 0;
    while (n <= fd) n *= 2;
    if (!(v = realloc(M.opened, (size_t)n))) return -1;
    memset(v + M.nopened, 0, (size_t)(n - M.nopened));
    M.opened = v;
    M.nopened = n;
  }
  M.opened[fd] = (unsigned char)on;
  return 0;
}

static void sock_close(sock_t *k) {
  if (k->fd >= 0 && k->fd < M.nbyfd && M.byfd[k->fd] == k) M.byfd[k->fd] = NULL;
  if (k->prev)
    k->prev->next = k->next;
  else
    M.socks = k->next;
  if (k->next) k->next->prev = k->prev;
  bp__watch_close(k->watch);
}

static void read_done(void);
static int version_of(CURL *e);
static void unready(bp_http_call_t *c);

static void on_poll(bp__watch_t *w, int status, int events) {
  sock_t *k = w->owner;
  int flags = 0, running;
  if (!k->active) {
    /* An idle kept-alive connection got readable (the server closed it, or
     * sent something unasked): stop watching; libcurl finds out when it
     * next looks at the connection. */
    bp__watch_set(w, 0);
    return;
  }
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  curl_multi_socket_action(M.multi, k->fd, flags, &running);
  read_done();
}

static void on_timer(uv_timer_t *t) {
  int running;
  curl_multi_socket_action(M.multi, CURL_SOCKET_TIMEOUT, 0, &running);
  read_done();
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  sock_t *k = socketp ? socketp : sock_of(s);
  int events = 0, rc;
  if (what == CURL_POLL_REMOVE) {
    /* Kept, and kept watched for reading (no epoll_ctl): the connection
     * may be reused by the next call. Closed in on_close_socket. */
    if (k && !k->ours) {
      sock_close(k);
    } else if (k) {
      k->active = 0;
      if (k->watch->events & UV_WRITABLE) bp__watch_set(k->watch, UV_READABLE);
    }
    return 0;
  }
  if (!k) {
    if (s >= M.nbyfd) {
      int n = M.nbyfd ? M.nbyfd : 64;
      sock_t **v;
      while (n <= s) n *= 2;
      if (!(v = realloc(M.byfd, (size_t)n * sizeof *v))) return -1;
      memset(v + M.nbyfd, 0, (size_t)(n - M.nbyfd) * sizeof *v);
      M.byfd = v;
      M.nbyfd = n;
    }
    if (!(k = calloc(1, sizeof *k))) return -1;
    if (!(k->watch = bp__watch_new((int)s, &M.closable, k, on_poll, sock_closed, &rc))) {
      free(k);
      bp_log(BP_LOG_WARNING, LOGGER, "cannot watch a socket: %s", uv_strerror(rc));
      return -1;
    }
    M.handles_open++;
    k->fd = s;
    k->next = M.socks;
    if (M.socks) M.socks->prev = k;
    M.socks = k;
    M.byfd[s] = k;
    k->ours = is_ours(s);
    if (M.inflight == 0) bp__watch_keep_loop(k->watch, 0);
  }
  if (!socketp) curl_multi_assign(M.multi, s, k);
  k->active = 1;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  if ((rc = bp__watch_set(k->watch, events)) != 0) {
    bp_log(BP_LOG_WARNING, LOGGER, "cannot watch a socket: %s", uv_strerror(rc));
    return -1;
  }
  return 0;
}

static int on_timer_set(CURLM *m, long ms, void *userp) {
  if (ms < 0)
    uv_timer_stop(&M.timer);
  else
    bp__client_timer_start(&M.timer, on_timer, (uint64_t)ms);
  return 0;
}

static void call_release(bp_http_call_t *c);

/* Wake what is owed (and free what its owner let go of). */
static void on_defer(uv_timer_t *t) {
  while (M.deferred) {
    bp_http_call_t *c = M.deferred;
    int waiter = c->waiter, was_busy = c->busy, status = c->deferred_status;
    M.deferred = c->next_deferred;
    if (!M.deferred) M.deferred_tail = NULL;
    c->next_deferred = NULL;
    c->in_deferred = 0;
    c->busy = 0;
    if (c->owner_gone) call_release(c);
    if (was_busy) bp__vm_wake(waiter, status);
  }
}

static void defer(bp_http_call_t *c, int status) {
  c->deferred_status = status;
  c->next_deferred = NULL;
  c->in_deferred = 1;
  if (M.deferred_tail)
    M.deferred_tail->next_deferred = c;
  else
    M.deferred = c;
  M.deferred_tail = c;
  uv_timer_start(&M.defer_timer, on_defer, 0, 0);
}

static void timer_closed(uv_handle_t *h) { handle_gone(); }

static void unlink_call(bp_http_call_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (M.calls == c)
    M.calls = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  if (--M.inflight == 0) set_refs();
}

/* bp__loop_shutdown: abandon the calls (nobody is woken), close libcurl's
 * connections and every handle. The owners free their calls later. */
static void multi_shutdown(bp__closable_t *self) {
  if (M.state != 1) return;
  M.state = 2;
  while (M.calls) {
    bp_http_call_t *c = M.calls;
    curl_multi_remove_handle(M.multi, c->easy);
    unlink_call(c);
    unready(c);
    c->state = CALL_DONE;
    c->final_status = BP_ECLOSED;
    c->busy = 0;
    c->failure = BP_HTTP_FAIL_OTHER;
    snprintf(c->err, sizeof c->err, "the event loop was shut down");
  }
  while (M.deferred) {
    bp_http_call_t *c = M.deferred;
    M.deferred = c->next_deferred;
    c->next_deferred = NULL;
    c->in_deferred = 0;
    c->busy = 0;
    if (c->owner_gone) call_release(c);
  }
  M.deferred_tail = NULL;
  for (int i = 0; i < M.nspare; i++) curl_easy_cleanup(M.spare[i]);
  M.nspare = 0;
  curl_multi_cleanup(M.multi);
  M.multi = NULL;
  while (M.socks) sock_close(M.socks);
  free(M.byfd);
  M.byfd = NULL;
  M.nbyfd = 0;
  free(M.opened);
  M.opened = NULL;
  M.nopened = 0;
  uv_close((uv_handle_t *)&M.timer, timer_closed);
  uv_close((uv_handle_t *)&M.defer_timer, timer_closed);
}

static int multi_init(void) {
  static int global_done;
  if (M.state == 1) return BP_OK;
  if (M.state == 2) return BP_ECLOSED; /* the loop is shutting down */
  if (!global_done) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return BP_ERROR;
    global_done = 1;
  }
  if (!(M.multi = curl_multi_init())) return BP_ENOMEM;
  curl_multi_setopt(M.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(M.multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
  curl_multi_setopt(M.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  if (M.max_connections > 0) curl_multi_setopt(M.multi, CURLMOPT_MAXCONNECTS, M.max_connections);
  M.closable.magic = BP_CLOSABLE_MAGIC;
  M.closable.close = multi_shutdown;
  uv_timer_init(bp_loop(), &M.timer);
  uv_timer_init(bp_loop(), &M.defer_timer);
  M.timer.data = M.defer_timer.data = &M.closable;
  uv_unref((uv_handle_t *)&M.timer);
  M.handles_open = 2;
  M.state = 1;
  return BP_OK;
}

void bp_http_set_max_connections(int n) {
  M.max_connections = n > 0 ? n : 0;
  if (M.multi && n > 0) curl_multi_setopt(M.multi, CURLMOPT_MAXCONNECTS, (long)n);
}

int bp_http_calls_in_flight(void) { return M.inflight; }

/* --- finishing ---------------------------------------------------------------------- */

static int version_of(CURL *e) {
  long version = 0;
  curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
  return version == CURL_HTTP_VERSION_1_0   ? 10
         : version == CURL_HTTP_VERSION_1_1 ? 11
         : version == CURL_HTTP_VERSION_2_0 ? 20
         : version == CURL_HTTP_VERSION_3   ? 30
                                            : 0;
}

static void complete(bp_http_call_t *c, CURLcode res, int *status) {
  long code = 0;
  char *ip = NULL;
  long port = 0;
  c->state = CALL_DONE;
  curl_easy_getinfo(c->easy, CURLINFO_PRIMARY_IP, &ip);
  curl_easy_getinfo(c->easy, CURLINFO_PRIMARY_PORT, &port);
  if (!c->refused && ip && *ip)
    snprintf(c->address, sizeof c->address, strchr(ip, ':') ? "[%s]:%ld" : "%s:%ld", ip, port);
  if (res == CURLE_OK) {
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    c->http_status = (int)code;
    c->http_version = version_of(c->easy);
    *status = BP_OK;
    return;
  }
  const char *detail = c->curl_err[0] ? c->curl_err : curl_easy_strerror(res);
  if (c->toobig || res == CURLE_FILESIZE_EXCEEDED) {
    c->failure = BP_HTTP_FAIL_TOOBIG;
    snprintf(c->err, sizeof c->err, "the response is larger than %zu bytes", c->max_size);
    *status = BP_ETOOBIG;
  } else if (c->refused && (res == CURLE_COULDNT_CONNECT || res == CURLE_ABORTED_BY_CALLBACK)) {
    c->failure = BP_HTTP_FAIL_REFUSED;
    *status = BP_EIO; /* c->err was written by the filter */
  } else if (res == CURLE_OPERATION_TIMEDOUT) {
    c->failure = BP_HTTP_FAIL_TIMEOUT;
    snprintf(c->err, sizeof c->err, "%s", detail);
    *status = BP_ETIMEDOUT;
  } else if (res == CURLE_COULDNT_RESOLVE_HOST || res == CURLE_COULDNT_CONNECT) {
    c->failure = BP_HTTP_FAIL_CONNECT;
    snprintf(c->err, sizeof c->err, "%s", detail);
    *status = BP_EIO;
  } else {
    c->failure = BP_HTTP_FAIL_OTHER;
    snprintf(c->err, sizeof c->err, "%s", detail);
    *status = BP_EIO;
  }
}

/* Out of M.ready (finished, freed or shut down). */
static void unready(bp_http_call_t *c) {
  if (!c->in_ready) return;
  for (bp_http_call_t **p = &M.ready; *p; p = &(*p)->next_ready)
    if (*p == c) {
      *p = c->next_ready;
      break;
    }
  c->next_ready = NULL;
  c->in_ready = 0;
}

/* After libcurl ran: wake the waiter of each finished call, one at a time
 * (outside libcurl's callbacks: the coroutine may start or free calls). */
static void read_done(void) {
  CURLMsg *msg;
  int left;
  /* Streamed calls a chunk came for: their waiters first (a finished
   * call's last chunk is taken after its final wake, below). */
  while (M.ready) {
    bp_http_call_t *c = M.ready;
    M.ready = c->next_ready;
    c->next_ready = NULL;
    c->in_ready = 0;
    if (c->busy && c->state == CALL_RUNNING && c->resp_body.len > 0) {
      c->busy = 0;
      bp__vm_wake(c->waiter, BP_HTTP_CHUNK);
    }
  }
  while (M.multi && (msg = curl_multi_info_read(M.multi, &left)) != NULL) {
    bp_http_call_t *c = NULL;
    CURLcode res;
    int status, waiter;
    if (msg->msg != CURLMSG_DONE) continue;
    res = msg->data.result;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
    curl_multi_remove_handle(M.multi, msg->easy_handle);
    if (!c) continue;
    unlink_call(c);
    unready(c);
    complete(c, res, &status);
    c->final_status = status;
    waiter = c->waiter;
    if (c->busy) {
      c->busy = 0;
      bp__vm_wake(waiter, status);
    }
  }
}

/* --- libcurl's callbacks for one call ----------------------------------------------- */

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  bp_http_call_t *c = ud;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    c->resp_headers.len = 0; /* a new response (after a 1xx) */
    if (c->resp_headers.data) c->resp_headers.data[0] = '\0';
    return n;
  }
  if (n <= 2 && (n == 0 || p[0] == '\r' || p[0] == '\n')) {
    /* The end of a response's headers: its status is known (a streamed
     * body's chunks come with it). */
    long code = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    c->http_status = (int)code;
    c->http_version = version_of(c->easy);
    return n;
  }
  if (c->resp_headers.len + n > MAX_HEADER_BYTES || buf_add(&c->resp_headers, p, n) != 0) {
    c->toobig = 1;
    return 0;
  }
  return n;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  bp_http_call_t *c = ud;
  if (c->stream) {
    /* Held back (paused) while the window is full: libcurl keeps this
     * piece and stops reading until bp_http_call_take makes room. */
    if (c->resp_body.len > 0 && c->resp_body.len + n > c->window) {
      c->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    if ((c->max_size && c->streamed + n > c->max_size) || buf_add(&c->resp_body, p, n) != 0) {
      c->toobig = 1;
      return 0;
    }
    c->streamed += n;
    if (!c->in_ready) {
      c->in_ready = 1;
      c->next_ready = M.ready;
      M.ready = c;
    }
    return n;
  }
  if (c->resp_body.len + n > c->max_size || buf_add(&c->resp_body, p, n) != 0) {
    c->toobig = 1;
    return 0;
  }
  return n;
}

static void refuse(bp_http_call_t *c, int family, const void *a, int port, const char *why) {
  char ip[INET6_ADDRSTRLEN];
  inet_ntop(family, a, ip, sizeof ip);
  c->refused = 1;
  snprintf(c->address, sizeof c->address, family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
  snprintf(c->err, sizeof c->err, "refused to connect to %s: %s", c->address, why);
}

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *sa) {
  bp_http_call_t *c = ud;
  curl_socket_t fd;
  if (c->filter && purpose == CURLSOCKTYPE_IPCXN) {
    char why[300];
    const void *a = NULL;
    int port = 0;
    unsigned char v[16] = {0};
    if (sa->family == AF_INET) {
      const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa->addr;
      a = &s4->sin_addr;
      port = ntohs(s4->sin_port);
      memcpy(v, a, 4);
    } else if (sa->family == AF_INET6) {
      const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa->addr;
      a = &s6->sin6_addr;
      port = ntohs(s6->sin6_port);
      memcpy(v, a, 16);
    }
    if (!a) {
      c->refused = 1;
      snprintf(c->err, sizeof c->err, "refused to connect: not an IPv4 or IPv6 address");
      return CURL_SOCKET_BAD;
    }
    if (judge(c->filter, sa->family, v, port, why, sizeof why) != BP_OK) {
      refuse(c, sa->family, v, port, why);
      return CURL_SOCKET_BAD;
    }
  }
  fd = socket(sa->family, sa->socktype | SOCK_CLOEXEC, sa->protocol);
  if (fd >= 0 && mark_opened(fd, 1) != 0) {
    close(fd);
    return CURL_SOCKET_BAD;
  }
  return fd;
}

/* libcurl closes a socket: its watch goes first (out of epoll at once). */
static int on_close_socket(void *ud, curl_socket_t fd) {
  sock_t *k = sock_of(fd);
  if (k) sock_close(k);
  mark_opened(fd, 0);
  return close(fd);
}

/* Before each request, on a new or a reused connection: the address it is
 * connected to is judged again (a connection opened for another client's
 * call may be in libcurl's cache). */
static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port) {
  bp_http_call_t *c = ud;
  unsigned char a[16] = {0};
  char why[300];
  int family = AF_INET;
  if (!c->filter) return CURL_PREREQFUNC_OK;
  if (inet_pton(AF_INET, ip, a) != 1) {
    family = AF_INET6;
    if (inet_pton(AF_INET6, ip, a) != 1) {
      c->refused = 1;
      snprintf(c->err, sizeof c->err, "refused to send: unknown peer address %.64s", ip);
      return CURL_PREREQFUNC_ABORT;
    }
  }
  if (judge(c->filter, family, a, port, why, sizeof why) != BP_OK) {
    refuse(c, family, a, port, why);
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

/* --- calls -------------------------------------------------------------------------- */

static uint64_t to_ms(double seconds) { return (uint64_t)ceil(seconds * 1000.0); }

static int valid_method(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n > 32) return 0;
  for (const char *p = m; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '-' || *p == '_'))
      return 0;
  return 1;
}

static int check_url(const char *url, char *err, size_t errlen) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  CURLUcode uc;
  int rc = BP_OK;
  if (!u) {
    copy_err(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  if ((uc = curl_url_set(u, CURLUPART_URL, url, 0)) != CURLUE_OK) {
    copy_err(err, errlen, "invalid URL %.200s: %s", url, curl_url_strerror(uc));
    rc = BP_EINVAL;
  } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
    copy_err(err, errlen, "invalid URL %.200s: only http:// and https:// are supported", url);
    rc = BP_EINVAL;
  } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
    copy_err(err, errlen, "invalid URL %.200s: no host", url);
    rc = BP_EINVAL;
  }
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  return rc;
}

/* The URLs found good lately: a service calls the same few again and again,
 * and parsing one (curl_url) costs a dozen allocations. */
#define GOOD_URLS 8
#define GOOD_URL_MAX 256
static char good_urls[GOOD_URLS][GOOD_URL_MAX];
static int good_next;

static int check_url_cached(const char *url, char *err, size_t errlen) {
  size_t n = strlen(url);
  int rc;
  if (n < GOOD_URL_MAX)
    for (int i = 0; i < GOOD_URLS; i++)
      if (good_urls[i][0] == url[0] && strcmp(good_urls[i], url) == 0) return BP_OK;
  if ((rc = check_url(url, err, errlen)) != BP_OK || n >= GOOD_URL_MAX) return rc;
  memcpy(good_urls[good_next], url, n + 1);
  good_next = (good_next + 1) % GOOD_URLS;
  return BP_OK;
}

int bp_http_call_new(const char *method, const char *url, const bp_http_options_t *opts,
                     bp_http_call_t **out, char *err, size_t errlen) {
  bp_http_call_t *c;
  CURL *e;
  int rc;
  if (out) *out = NULL;
  if (!method || !url || !opts || !out) {
    copy_err(err, errlen, "invalid arguments");
    return BP_EINVAL;
  }
  if (!valid_method(method)) {
    copy_err(err, errlen, "invalid method %.40s", method);
    return BP_EINVAL;
  }
  if (isnan(opts->timeout) || opts->timeout < 0 || isnan(opts->connect_timeout) ||
      opts->connect_timeout < 0) {
    copy_err(err, errlen, "timeouts must be non-negative numbers of seconds");
    return BP_EINVAL;
  }
  if ((rc = multi_init()) != BP_OK) {
    copy_err(err, errlen, "%s", rc == BP_ECLOSED ? "the event loop was shut down" : "cannot set up libcurl");
    return rc;
  }
  if ((rc = check_url_cached(url, err, errlen)) != BP_OK) return rc;
  if (!(c = calloc(1, sizeof *c)) || !(c->method = strdup(method))) {
    free(c);
    copy_err(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  e = M.nspare ? M.spare[--M.nspare] : curl_easy_init();
  if (!e) {
    free(c->method);
    free(c);
    copy_err(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  c->easy = e;
  c->max_size = opts->max_size ? opts->max_size : DEFAULT_MAX_SIZE;
  if (opts->filter) {
    c->filter = (bp_http_filter_t *)opts->filter;
    c->filter->refs++;
  }
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never the environment's */
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_PRIVATE, c);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, c);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  if (opts->connect_timeout > 0)
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)to_ms(opts->connect_timeout));
  if (opts->timeout > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)to_ms(opts->timeout));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts->verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts->verify ? 2L : 0L);
  if (opts->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, opts->ca_file);
  c->headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
  if (!c->headers) {
    bp_http_call_free(c);
    copy_err(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  *out = c;
  return BP_OK;
}

int bp_http_call_header(bp_http_call_t *c, const char *line) {
  struct curl_slist *l;
  if (!c || !line || c->state != CALL_NEW || strpbrk(line, "\r\n") || !strchr(line, ':'))
    return BP_EINVAL;
  if (!(l = curl_slist_append(c->headers, line))) return BP_ENOMEM;
  c->headers = l;
  return BP_OK;
}

int bp_http_call_body(bp_http_call_t *c, const char *body, size_t len) {
  char *copy;
  if (!c || (!body && len) || c->state != CALL_NEW) return BP_EINVAL;
  if (!(copy = malloc(len ? len : 1))) return BP_ENOMEM;
  if (len) memcpy(copy, body, len);
  free(c->body);
  c->body = copy;
  c->body_len = len;
  c->has_body = 1;
  return BP_OK;
}

int bp_http_call_resolve(bp_http_call_t *c, const char *entry) {
  struct curl_slist *l;
  if (!c || !entry || c->state != CALL_NEW) return BP_EINVAL;
  if (!(l = curl_slist_append(c->resolve, entry))) return BP_ENOMEM;
  c->resolve = l;
  return BP_OK;
}

int bp_http_call_start(bp_http_call_t *c, int waiter) {
  CURL *e;
  CURLMcode mc;
  if (!c || c->state != CALL_NEW) return BP_EINVAL;
  e = c->easy;
  c->state = CALL_RUNNING;
  c->busy = 1;
  c->waiter = waiter;
  if (strcmp(c->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(c->method, "GET") == 0 && !c->has_body) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    if (strcmp(c->method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    if (c->has_body || strcmp(c->method, "POST") == 0) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body ? c->body : "");
    }
  }
  /* A buffered body announced larger than the limit fails before any of
   * it is read (the limit is checked as it comes too: the length may be
   * absent, or of the compressed body). */
  if (!c->stream) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_size);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
  if (c->resolve) curl_easy_setopt(e, CURLOPT_RESOLVE, c->resolve);
  if (M.state != 1) {
    snprintf(c->err, sizeof c->err, "the event loop was shut down");
    c->failure = BP_HTTP_FAIL_OTHER;
    c->state = CALL_DONE;
    c->final_status = BP_ECLOSED;
    c->busy = 0;
    return BP_ECLOSED;
  }
  if ((mc = curl_multi_add_handle(M.multi, e)) != CURLM_OK) {
    snprintf(c->err, sizeof c->err, "%s", curl_multi_strerror(mc));
    c->failure = BP_HTTP_FAIL_OTHER;
    c->state = CALL_DONE;
    c->final_status = BP_EIO;
    defer(c, BP_EIO);
    return BP_AGAIN;
  }
  c->next = M.calls;
  if (M.calls) M.calls->prev = c;
  M.calls = c;
  if (M.inflight++ == 0) set_refs();
  return BP_AGAIN;
}

int bp_http_call_stream(bp_http_call_t *c, size_t window, size_t max_size) {
  if (!c || c->state != CALL_NEW) return BP_EINVAL;
  c->stream = 1;
  c->window = window ? window : DEFAULT_WINDOW;
  c->max_size = max_size; /* 0: no limit */
  return BP_OK;
}

const char *bp_http_call_take(bp_http_call_t *c, size_t *len) {
  buf_t t;
  if (!c || !c->stream) {
    if (len) *len = 0;
    return "";
  }
  /* Hand out what came and keep the other buffer for what comes next: the
   * text stays valid until the next take, whatever libcurl writes. */
  t = c->taken;
  c->taken = c->resp_body;
  c->resp_body = t;
  c->resp_body.len = 0;
  if (len) *len = c->taken.len;
  if (c->paused && c->state == CALL_RUNNING && M.state == 1) {
    /* Room again: libcurl writes what it held back (perhaps at once, into
     * resp_body) and reads on. */
    c->paused = 0;
    curl_easy_pause(c->easy, CURLPAUSE_CONT);
  }
  return c->taken.data ? c->taken.data : "";
}

int bp_http_call_next(bp_http_call_t *c, int waiter) {
  if (!c || !c->stream || c->state == CALL_NEW || c->busy || c->in_deferred) return BP_EINVAL;
  if (c->resp_body.len > 0) return BP_HTTP_CHUNK;
  if (c->state == CALL_DONE) return c->final_status;
  c->busy = 1;
  c->waiter = waiter;
  return BP_AGAIN;
}

int bp_http_call_status(const bp_http_call_t *c) { return c ? c->http_status : 0; }

int bp_http_call_version(const bp_http_call_t *c) { return c ? c->http_version : 0; }

const char *bp_http_call_headers(const bp_http_call_t *c, size_t *len) {
  if (len) *len = c ? c->resp_headers.len : 0;
  return c && c->resp_headers.data ? c->resp_headers.data : "";
}

const char *bp_http_call_response_body(const bp_http_call_t *c, size_t *len) {
  if (len) *len = c ? c->resp_body.len : 0;
  return c && c->resp_body.data ? c->resp_body.data : "";
}

const char *bp_http_call_error(const bp_http_call_t *c) { return c ? c->err : ""; }

int bp_http_call_failure(const bp_http_call_t *c) { return c ? c->failure : 0; }

const char *bp_http_call_address(const bp_http_call_t *c) { return c ? c->address : ""; }

/* The memory goes (the easy handle back to the spares, reset). */
static void call_release(bp_http_call_t *c) {
  if (c->easy) {
    if (M.state == 1 && M.nspare < SPARE_EASY) {
      curl_easy_reset(c->easy);
      M.spare[M.nspare++] = c->easy;
    } else {
      curl_easy_cleanup(c->easy);
    }
  }
  curl_slist_free_all(c->headers);
  curl_slist_free_all(c->resolve);
  bp_http_filter_free(c->filter);
  free(c->method);
  free(c->body);
  free(c->resp_headers.data);
  free(c->resp_body.data);
  free(c->taken.data);
  free(c);
}

void bp_http_call_free(bp_http_call_t *c) {
  if (!c || c->owner_gone) return;
  c->owner_gone = 1;
  if (c->in_deferred) return; /* on_defer wakes, then releases */
  if (c->state == CALL_RUNNING && M.state == 1) {
    curl_multi_remove_handle(M.multi, c->easy);
    unlink_call(c);
    unready(c);
    c->state = CALL_DONE;
    snprintf(c->err, sizeof c->err, "the call was abandoned");
    defer(c, BP_ECLOSED);
    return;
  }
  call_release(c);
}
