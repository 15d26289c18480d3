/* A ZooKeeper client on the loop (include/baseplate/zookeeper.h), over the
 * single-threaded libzookeeper_st.
 *
 * The library asks, through zookeeper_interest, for a descriptor, the
 * events it wants on it and how long it may wait; zookeeper_process does
 * the I/O and calls the completions and the watcher. Both run here only
 * from loop callbacks (the socket's poll and the timer), so the library's
 * callbacks run on the loop's thread. They never wake Lua directly (Lua
 * could close the handle under the library): what they finish goes on a
 * list that a zero timer (the "kick") delivers on the next loop iteration.
 *
 * The descriptor is the library's: it closes it on a connection loss and
 * may get the same number back for the next socket, which an epoll
 * registration would not notice. The loop therefore watches a duplicate
 * of it (ours to close), replaced whenever the library's descriptor is
 * another socket (compared by device and inode after each call into the
 * library).
 */
#include "baseplate/zookeeper.h"

#include "baseplate/log.h"
#include "clients/conn.h"
#include "clients/watch.h"
#include "clients/zookeeper_hosts.h"
#include "internal.h"
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zookeeper/zookeeper.h>

#define LOGGER "baseplate.lib.live_data.zookeeper"
#define MAX_EVENTS 4096      /* queued events; beyond, one BP_ZK_RESYNC replaces them */
#define MAX_PATH_LEN 4096    /* a node's path */
#define AUTH_RETRY_MS 1000   /* a new session after the credentials were refused */
#define RETRY_MIN_MS 50      /* between connection attempts: from this, doubling… */
#define RETRY_MAX_MS 1000    /* …up to this */

enum { OP_INFLIGHT, OP_DONE, OP_WOKEN };

struct bp_zk_op_s {
  bp_zk_t *zk;
  bp_zk_op_t *next, *prev; /* in flight, or done and waiting to be woken */
  int kind;
  int waiter;
  int state;
  int abandoned; /* freed by Lua while in flight */
  int zrc;
  int status; /* the wake's */
  char *data;
  size_t len;
  bp_zk_stat_t stat;
};

typedef struct {
  char *scheme, *cred;
  size_t len;
} auth_t;

typedef struct {
  int type, session;
  char *path;
} event_t;

struct bp_zk_s {
  bp__closable_t closable; /* first: every handle's data points here */
  zhandle_t *zh;
  char *hosts;
  int timeout_ms;
  int read_only;
  auth_t *auths;
  int nauths;
  int64_t session_id;
  int connected;
  int renew;          /* the session is gone (expired, refused): make a new handle */
  uint64_t renew_at;  /* (uv_now) not before */
  bp__watch_t *watch; /* a duplicate of the library's descriptor */
  dev_t dev;
  ino_t ino;
  uv_timer_t timer; /* the library's timeout */
  uv_timer_t kick;  /* delivers the wakes */
  bp_zk_op_t inflight; /* list heads (circular) */
  bp_zk_op_t done;
  event_t *events; /* a ring */
  size_t ev_head, ev_count, ev_cap;
  char *cur_path;
  int waiter;          /* waiting for an event */
  int has_waiter;
  int waiter_status;   /* to wake it with; BP_AGAIN: not yet */
  uint64_t retry_ms; /* the pause before the next connection attempt */
  int pausing;
  /* Names in zookeeper.hosts are looked up here, on libuv's thread pool
   * (uv_getaddrinfo), at start and for every new session; the library gets
   * the addresses, which it "resolves" without a lookup. */
  char *lib_hosts;   /* what the library gets: addresses, the chroot */
  int has_names;     /* some host is a name */
  int resolving;     /* lookups in flight */
  int resolve_again; /* the timer starts the lookups again */
  char **addrs;      /* the lookups' results ("address:port", the library's form) */
  struct lookup_s *lookups; /* in flight */
  size_t naddrs;
  int refs;
  int closing, loop_gone;
  char err[256];
};

/* --- helpers ----------------------------------------------------------------------- */

static void set_err(bp_zk_t *zk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(bp_zk_t *zk, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(zk->err, sizeof zk->err, fmt, ap);
  va_end(ap);
}

static void list_init(bp_zk_op_t *head) { head->next = head->prev = head; }
static void list_remove(bp_zk_op_t *op) {
  op->prev->next = op->next;
  op->next->prev = op->prev;
  op->next = op->prev = op;
}
static void list_push(bp_zk_op_t *head, bp_zk_op_t *op) {
  op->prev = head->prev;
  op->next = head;
  head->prev->next = op;
  head->prev = op;
}

static void unref(bp_zk_t *zk) {
  if (--zk->refs > 0) return;
  for (int i = 0; i < zk->nauths; i++) {
    if (zk->auths[i].cred) explicit_bzero(zk->auths[i].cred, zk->auths[i].len);
    free(zk->auths[i].scheme);
    free(zk->auths[i].cred);
  }
  free(zk->auths);
  for (size_t i = 0; i < zk->ev_count; i++) free(zk->events[(zk->ev_head + i) % zk->ev_cap].path);
  free(zk->events);
  free(zk->cur_path);
  for (size_t i = 0; i < zk->naddrs; i++) free(zk->addrs[i]);
  free(zk->addrs);
  free(zk->lib_hosts);
  free(zk->hosts);
  free(zk);
}

static void handle_closed(uv_handle_t *h) { unref(h->data); }

static void on_kick(uv_timer_t *t);

static void kick(bp_zk_t *zk) {
  if (zk->loop_gone || uv_is_closing((uv_handle_t *)&zk->kick)) return;
  if (!uv_is_active((uv_handle_t *)&zk->kick)) uv_timer_start(&zk->kick, on_kick, 0, 0);
}

/* The library's timer keeps the loop alive while an operation is in
 * flight, as the other clients do; waiting for events does not (the
 * watcher sidecar keeps itself alive with its heartbeat). */
static void keep_loop(bp_zk_t *zk) {
  if (zk->loop_gone || uv_is_closing((uv_handle_t *)&zk->timer)) return;
  if (zk->inflight.next != &zk->inflight)
    uv_ref((uv_handle_t *)&zk->timer);
  else
    uv_unref((uv_handle_t *)&zk->timer);
}

/* --- zookeeper.hosts ---------------------------------------------------------------- */

static int is_space(char c) { return c == ' ' || c == '\t'; }

int bp__zk_check_hosts(const char *hosts, size_t len, char *out, size_t outlen, char *err, size_t errlen) {
  size_t i = 0, o = 0, nservers = 0;
  const char *bad = NULL;
#define PUT(c) do { if (o + 1 >= outlen) { bad = "too long"; goto fail; } out[o++] = (c); } while (0)
  if (len > BP_ZK_MAX_HOSTS) {
    bad = "too long";
    goto fail;
  }
  for (;;) {
    size_t start, end, colon;
    unsigned long port = 0;
    while (i < len && is_space(hosts[i])) i++;
    start = i;
    if (i < len && hosts[i] == '[') { /* [IPv6]:port */
      while (i < len && hosts[i] != ']') {
        char c = hosts[i];
        if (i > start && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.')) {
          bad = "a bad IPv6 address";
          goto fail;
        }
        i++;
      }
      if (i == len || i == start + 1) {
        bad = "a bad IPv6 address";
        goto fail;
      }
      i++;
    } else {
      while (i < len && hosts[i] != ':' && hosts[i] != ',' && hosts[i] != '/' && !is_space(hosts[i])) {
        unsigned char c = (unsigned char)hosts[i];
        if (c < 0x21 || c > 0x7e) {
          bad = "a control or non-ASCII character";
          goto fail;
        }
        i++;
      }
      if (i == start) {
        bad = "an empty host";
        goto fail;
      }
    }
    colon = i;
    if (i == len || hosts[i] != ':') {
      bad = "a host without :port";
      goto fail;
    }
    i++;
    end = i;
    while (i < len && hosts[i] >= '0' && hosts[i] <= '9' && i - end < 6) port = port * 10 + (unsigned long)(hosts[i++] - '0');
    if (i == end || port == 0 || port > 65535) {
      bad = "a port that is not 1-65535";
      goto fail;
    }
    for (size_t k = start; k < colon; k++) PUT(hosts[k]);
    PUT(':');
    for (size_t k = end; k < i; k++) PUT(hosts[k]);
    nservers++;
    while (i < len && is_space(hosts[i])) i++;
    if (i < len && hosts[i] == ',') {
      PUT(',');
      i++;
      continue;
    }
    break;
  }
  if (i < len && hosts[i] == '/') { /* the chroot: /a/b, no empty part */
    size_t start = i;
    while (i < len && !is_space(hosts[i])) {
      unsigned char c = (unsigned char)hosts[i];
      if (c < 0x21 || c == 0x7f || (c == '/' && i + 1 < len && hosts[i + 1] == '/')) {
        bad = "a bad chroot";
        goto fail;
      }
      i++;
    }
    if (i - start > 1 && hosts[i - 1] == '/') {
      bad = "a bad chroot (ending with /)";
      goto fail;
    }
    if (i - start > 1)
      for (size_t k = start; k < i; k++) PUT(hosts[k]);
    while (i < len && is_space(hosts[i])) i++;
  }
  if (i != len) {
    bad = "unexpected text after the hosts";
    goto fail;
  }
  out[o] = 0;
  (void)nservers;
  return BP_OK;
fail:
  snprintf(err, errlen, "zookeeper.hosts: %s (expected host:port[,host:port…][/chroot])", bad);
  if (outlen) out[0] = 0;
  return BP_EINVAL;
#undef PUT
}

/* --- the library's log ------------------------------------------------------------- */

/* Its lines carry their level in the text ("…:ZOO_ERROR@…"). Connection
 * failures are warnings (they are retried); nothing it logs holds the
 * credentials. */
static bp_zk_t *in_library; /* the client whose call into the library is running */

static void on_log(const char *message) {
  int level = BP_LOG_DEBUG;
  if (strstr(message, "ZOO_ERROR@") || strstr(message, "ZOO_WARN@")) level = BP_LOG_WARNING;
  else if (strstr(message, "ZOO_INFO@")) level = BP_LOG_INFO;
  /* While disconnected, each failed attempt would say so again: the
   * client's own "lost the connection" said it once. */
  if (level == BP_LOG_WARNING && in_library && !in_library->connected && in_library->session_id != 0)
    level = BP_LOG_DEBUG;
  const char *at = strstr(message, "@");
  bp_log(level, LOGGER, "%s", at ? at + 1 : message);
}

/* --- events ------------------------------------------------------------------------ */

static void push_event(bp_zk_t *zk, int type, const char *path, int session) {
  event_t *e;
  char *copy;
  if (zk->ev_count == zk->ev_cap) {
    if (zk->ev_cap < MAX_EVENTS) {
      size_t cap = zk->ev_cap ? zk->ev_cap * 2 : 16;
      event_t *ring = malloc(cap * sizeof *ring);
      if (ring) {
        for (size_t i = 0; i < zk->ev_count; i++) ring[i] = zk->events[(zk->ev_head + i) % zk->ev_cap];
        free(zk->events);
        zk->events = ring;
        zk->ev_cap = cap;
        zk->ev_head = 0;
      }
    }
    if (zk->ev_count == zk->ev_cap) { /* full: everything is read again instead */
      for (size_t i = 0; i < zk->ev_count; i++) free(zk->events[(zk->ev_head + i) % zk->ev_cap].path);
      zk->ev_count = 0;
      zk->ev_head = 0;
      if (zk->ev_cap == 0) return; /* (no memory at all: the next event tries again) */
      type = BP_ZK_RESYNC;
      path = "";
      session = 0;
    }
  }
  if (!(copy = strdup(path ? path : ""))) {
    type = BP_ZK_RESYNC;
    copy = NULL;
  }
  e = &zk->events[(zk->ev_head + zk->ev_count) % zk->ev_cap];
  e->type = type;
  e->path = copy;
  e->session = session;
  zk->ev_count++;
  if (zk->has_waiter) {
    zk->waiter_status = BP_OK;
    kick(zk);
  }
}

static void on_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  bp_zk_t *zk = ctx;
  if (zh != zk->zh || zk->closing) return; /* (a handle being replaced) */
  if (type == ZOO_SESSION_EVENT) {
    if (state == ZOO_CONNECTED_STATE || state == ZOO_READONLY_STATE) {
      const clientid_t *id = zoo_client_id(zh);
      int fresh = id->client_id != zk->session_id;
      zk->session_id = id->client_id;
      zk->connected = 1;
      zk->retry_ms = 0;
      bp_log(BP_LOG_INFO, LOGGER, "connected to ZooKeeper (%s session 0x%llx%s)", fresh ? "new" : "same",
             (unsigned long long)id->client_id, state == ZOO_READONLY_STATE ? ", read-only server" : "");
      push_event(zk, BP_ZK_CONNECTED, "", fresh);
    } else if (state == ZOO_EXPIRED_SESSION_STATE) {
      zk->connected = 0;
      zk->renew = 1;
      zk->renew_at = 0;
      bp_log(BP_LOG_WARNING, LOGGER, "ZooKeeper session 0x%llx expired; starting a new one",
             (unsigned long long)zk->session_id);
      push_event(zk, BP_ZK_EXPIRED, "", 0);
    } else if (state == ZOO_AUTH_FAILED_STATE) {
      zk->connected = 0;
      zk->renew = 1;
      zk->renew_at = uv_now(uv_default_loop()) + AUTH_RETRY_MS;
      bp_log(BP_LOG_ERROR, LOGGER, "ZooKeeper refused the credentials; trying again in %ds",
             AUTH_RETRY_MS / 1000);
      push_event(zk, BP_ZK_AUTH_FAILED, "", 0);
    } else if (zk->connected) {
      zk->connected = 0;
      bp_log(BP_LOG_WARNING, LOGGER, "lost the connection to ZooKeeper; reconnecting");
      push_event(zk, BP_ZK_DISCONNECTED, "", 0);
    }
    return;
  }
  if (type == ZOO_CREATED_EVENT) push_event(zk, BP_ZK_CREATED, path, 0);
  else if (type == ZOO_DELETED_EVENT) push_event(zk, BP_ZK_DELETED, path, 0);
  else if (type == ZOO_CHANGED_EVENT) push_event(zk, BP_ZK_CHANGED, path, 0);
  else if (type == ZOO_CHILD_EVENT) push_event(zk, BP_ZK_CHILD, path, 0);
  else push_event(zk, BP_ZK_RESYNC, "", 0); /* (a watch removed by the server) */
}

/* --- driving the library ----------------------------------------------------------- */

static void drop_watch(bp_zk_t *zk) {
  if (!zk->watch) return;
  bp__watch_close(zk->watch);
  zk->watch = NULL;
}

static void watch_closed(bp__watch_t *w) {
  bp_zk_t *zk = w->owner;
  close(w->fd); /* (our duplicate) */
  unref(zk);
}

static void on_poll(bp__watch_t *w, int status, int events);
static void on_timer(uv_timer_t *t);
static void rearm(bp_zk_t *zk);

/* Watch the library's descriptor `fd` for `interest`. */
static int watch_fd(bp_zk_t *zk, int fd, int interest) {
  struct stat st;
  int rc, events = 0;
  if (fstat(fd, &st) != 0) return -errno;
  if (zk->watch && (st.st_dev != zk->dev || st.st_ino != zk->ino)) drop_watch(zk);
  if (!zk->watch) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return -errno;
    if (!(zk->watch = bp__watch_new(dup, zk, zk, on_poll, watch_closed, &rc))) {
      close(dup);
      return rc;
    }
    zk->refs++;
    zk->dev = st.st_dev;
    zk->ino = st.st_ino;
    bp__watch_keep_loop(zk->watch, 0);
  }
  if (interest & ZOOKEEPER_READ) events |= UV_READABLE;
  if (interest & ZOOKEEPER_WRITE) events |= UV_WRITABLE;
  return bp__watch_set(zk->watch, events);
}

static zhandle_t *open_handle(bp_zk_t *zk) {
  zhandle_t *zh = zookeeper_init2(zk->lib_hosts, on_watch, zk->timeout_ms, NULL, zk,
                                  zk->read_only ? ZOO_READONLY : 0, on_log);
  if (!zh) return NULL;
  /* (the library's own lookups, of addresses here, only after a loss) */
  zoo_set_servers_resolution_delay(zh, -1);
  for (int i = 0; i < zk->nauths; i++)
    zoo_add_auth(zh, zk->auths[i].scheme, zk->auths[i].cred, (int)zk->auths[i].len, NULL, NULL);
  return zh;
}

/* --- names ------------------------------------------------------------------------- */

typedef struct lookup_s {
  uv_getaddrinfo_t req;
  bp_zk_t *zk;
  struct lookup_s *next, **prevp; /* zk->lookups */
  char name[256];
} lookup_t;

/* Closing: the lookups in flight end at once (UV_EAI_CANCELED) if they
 * have not started on the thread pool; else when they return. */
static void cancel_lookups(bp_zk_t *zk) {
  for (lookup_t *l = zk->lookups; l; l = l->next) uv_cancel((uv_req_t *)&l->req);
}

static int is_address(const char *host, size_t n) {
  char buf[64];
  unsigned char bin[16];
  if (n > 0 && host[0] == '[') return 1; /* (checked: an IPv6 address) */
  if (n >= sizeof buf) return 0;
  memcpy(buf, host, n);
  buf[n] = 0;
  return inet_pton(AF_INET, buf, bin) == 1;
}

/* Calls fn(zk, host, hostlen, port, portlen) for each server of zk->hosts
 * (checked and normalised: "h:p,h:p/chroot"); returns where the chroot
 * starts (or the end). */
static const char *each_server(bp_zk_t *zk, void (*fn)(bp_zk_t *, const char *, size_t, const char *, size_t)) {
  const char *p = zk->hosts;
  for (;;) {
    const char *start = p, *colon, *end;
    if (*p == '[') p = strchr(p, ']') + 1;
    while (*p && *p != ':') p++;
    colon = p;
    end = colon + 1;
    while (*end >= '0' && *end <= '9') end++;
    if (fn) fn(zk, start, (size_t)(colon - start), colon + 1, (size_t)(end - colon - 1));
    if (*end != ',') return end;
    p = end + 1;
  }
}

static void add_addr(bp_zk_t *zk, const char *s) {
  char **a = realloc(zk->addrs, (zk->naddrs + 1) * sizeof *a);
  if (!a) return;
  zk->addrs = a;
  if ((a[zk->naddrs] = strdup(s))) zk->naddrs++;
}

/* A server given as an address: as the library writes it (IPv6 without
 * its brackets: the library splits at the last colon). */
static void add_numeric(bp_zk_t *zk, const char *host, size_t n, const char *port, size_t pn) {
  char buf[128];
  if (!is_address(host, n)) return;
  if (host[0] == '[') host++, n -= 2;
  if (n + pn + 2 > sizeof buf) return;
  snprintf(buf, sizeof buf, "%.*s:%.*s", (int)n, host, (int)pn, port);
  add_addr(zk, buf);
}

static void clear_addrs(bp_zk_t *zk) {
  for (size_t i = 0; i < zk->naddrs; i++) free(zk->addrs[i]);
  zk->naddrs = 0;
}

static void start_lookups(bp_zk_t *zk);

/* Every lookup came back: the library gets the addresses. */
static void lookups_done(bp_zk_t *zk) {
  const char *chroot = each_server(zk, NULL);
  size_t len = strlen(chroot) + 1;
  char *lib, *q;
  for (size_t i = 0; i < zk->naddrs; i++) len += strlen(zk->addrs[i]) + 1;
  if (zk->naddrs == 0 || !(lib = malloc(len))) {
    bp_log(BP_LOG_ERROR, LOGGER, "no address for the ZooKeeper servers %s; looking them up again in %ds",
           zk->hosts, AUTH_RETRY_MS / 1000);
    zk->resolve_again = 1;
    bp__client_timer_start(&zk->timer, on_timer, AUTH_RETRY_MS);
    return;
  }
  q = lib;
  for (size_t i = 0; i < zk->naddrs; i++) q += sprintf(q, "%s%s", i ? "," : "", zk->addrs[i]);
  strcpy(q, chroot);
  free(zk->lib_hosts);
  zk->lib_hosts = lib;
  if (!(zk->zh = open_handle(zk))) {
    bp_log(BP_LOG_ERROR, LOGGER, "cannot start a ZooKeeper session with %s; trying again", lib);
    zk->resolve_again = 1;
    bp__client_timer_start(&zk->timer, on_timer, AUTH_RETRY_MS);
    return;
  }
  rearm(zk);
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lookup_t *l = (lookup_t *)req;
  bp_zk_t *zk = l->zk;
  *l->prevp = l->next;
  if (l->next) l->next->prevp = l->prevp;
  zk->resolving--;
  if (!zk->closing && !zk->loop_gone) {
    if (status != 0) {
      if (status != UV_EAI_CANCELED)
        bp_log(BP_LOG_WARNING, LOGGER, "cannot look up the ZooKeeper server %s: %s", l->name, uv_strerror(status));
    } else {
      for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 8];
        int port;
        if (ai->ai_family == AF_INET) {
          struct sockaddr_in *sin = (struct sockaddr_in *)ai->ai_addr;
          uv_ip4_name(sin, ip, sizeof ip);
          port = ntohs(sin->sin_port);
        } else if (ai->ai_family == AF_INET6) {
          struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ai->ai_addr;
          uv_ip6_name(sin6, ip, sizeof ip);
          port = ntohs(sin6->sin6_port);
        } else {
          continue;
        }
        snprintf(buf, sizeof buf, "%s:%d", ip, port);
        add_addr(zk, buf);
      }
    }
    if (zk->resolving == 0) lookups_done(zk);
  }
  free(l);
  uv_freeaddrinfo(res);
  unref(zk);
}

static void lookup_one(bp_zk_t *zk, const char *host, size_t n, const char *port, size_t pn) {
  struct addrinfo hints;
  char service[8];
  lookup_t *l;
  int rc;
  if (is_address(host, n)) return;
  if (n >= sizeof l->name || pn >= sizeof service || !(l = calloc(1, sizeof *l))) {
    bp_log(BP_LOG_ERROR, LOGGER, "cannot look up %.*s", (int)(n < 200 ? n : 200), host);
    return;
  }
  memcpy(l->name, host, n);
  l->name[n] = 0;
  memcpy(service, port, pn);
  service[pn] = 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  l->zk = zk;
  if ((rc = uv_getaddrinfo(uv_default_loop(), &l->req, on_lookup, l->name, service, &hints)) != 0) {
    bp_log(BP_LOG_ERROR, LOGGER, "cannot look up %s: %s", l->name, uv_strerror(rc));
    free(l);
    return;
  }
  l->next = zk->lookups;
  l->prevp = &zk->lookups;
  if (l->next) l->next->prevp = &l->next;
  zk->lookups = l;
  zk->resolving++;
  zk->refs++;
}

/* Look the names up (the addresses given as such are kept as they are);
 * the session starts once every lookup came back. */
static void start_lookups(bp_zk_t *zk) {
  zk->resolve_again = 0;
  clear_addrs(zk);
  each_server(zk, add_numeric);
  each_server(zk, lookup_one);
  if (zk->resolving == 0) lookups_done(zk); /* (every lookup failed to start) */
}

/* A new session after the old one expired or was refused. */
static void renew(bp_zk_t *zk) {
  zhandle_t *old = zk->zh;
  drop_watch(zk);
  zk->zh = NULL;
  if (old) zookeeper_close(old); /* (fails what was in flight: ZSESSIONEXPIRED / ZCLOSING) */
  zk->renew = 0;
  zk->connected = 0;
  if (zk->has_names) { /* (the names may point elsewhere now) */
    start_lookups(zk);
    return;
  }
  if (!(zk->zh = open_handle(zk))) {
    bp_log(BP_LOG_ERROR, LOGGER, "cannot start a ZooKeeper session: %s; trying again", strerror(errno));
    zk->renew = 1;
    zk->renew_at = uv_now(uv_default_loop()) + AUTH_RETRY_MS;
  }
}

static void rearm(bp_zk_t *zk) {
  int fd = -1, interest = 0, rc;
  struct timeval tv = {0, 0};
  uint64_t ms;
  if (zk->closing || zk->loop_gone) return;
  if (zk->pausing || zk->resolving || zk->resolve_again) {
    keep_loop(zk);
    return;
  }
  if (zk->renew) {
    uint64_t now = uv_now(uv_default_loop());
    if (now < zk->renew_at) {
      drop_watch(zk);
      bp__client_timer_start(&zk->timer, on_timer, zk->renew_at - now);
      return;
    }
    renew(zk);
    if (zk->renew) {
      bp__client_timer_start(&zk->timer, on_timer, AUTH_RETRY_MS);
      return;
    }
    if (!zk->zh) return; /* (looking names up) */
  }
  if (!zk->zh) return;
  in_library = zk;
  rc = zookeeper_interest(zk->zh, &fd, &interest, &tv);
  in_library = NULL;
  if (rc == ZINVALIDSTATE) { /* (expired or refused: the watcher said which) */
    zk->renew = 1;
    bp__client_timer_start(&zk->timer, on_timer, 0);
    return;
  }
  if (fd >= 0) {
    if ((rc = watch_fd(zk, fd, interest)) != 0) {
      bp_log(BP_LOG_ERROR, LOGGER, "cannot watch ZooKeeper's socket: %s", uv_strerror(rc));
      drop_watch(zk);
    }
  } else {
    drop_watch(zk);
  }
  ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  if (fd < 0 && ms < 10) ms = 10; /* (never a busy loop) */
  bp__client_timer_start(&zk->timer, on_timer, ms);
  keep_loop(zk);
}

/* A connection attempt failed: the library would start the next one at
 * once (the next server, or the same again); a pause that doubles, up to a
 * second, keeps an outage from spinning. */
static void pause_attempts(bp_zk_t *zk) {
  zk->retry_ms = zk->retry_ms ? zk->retry_ms * 2 : RETRY_MIN_MS;
  if (zk->retry_ms > RETRY_MAX_MS) zk->retry_ms = RETRY_MAX_MS;
  zk->pausing = 1;
  drop_watch(zk);
  bp__client_timer_start(&zk->timer, on_timer, zk->retry_ms);
  keep_loop(zk);
}

static void process(bp_zk_t *zk, int events) {
  if (zk->zh && !zk->renew) {
    int ev = 0, rc;
    if (events & UV_READABLE) ev |= ZOOKEEPER_READ;
    if (events & UV_WRITABLE) ev |= ZOOKEEPER_WRITE;
    in_library = zk;
    rc = zookeeper_process(zk->zh, ev);
    in_library = NULL;
    if (rc != ZOK && rc != ZNOTHING && !zk->connected && !zk->renew && !zk->closing && !zk->loop_gone) {
      pause_attempts(zk);
      return;
    }
  }
  rearm(zk);
}

static void on_poll(bp__watch_t *w, int status, int events) {
  bp_zk_t *zk = w->owner;
  if (w != zk->watch) return;
  /* An error on the socket: the library finds it when it reads. */
  process(zk, status < 0 ? UV_READABLE : events);
}

static void on_timer(uv_timer_t *t) {
  bp_zk_t *zk = t->data;
  if (zk->resolve_again) {
    start_lookups(zk);
    return;
  }
  if (zk->pausing) {
    zk->pausing = 0;
    rearm(zk);
    return;
  }
  process(zk, 0);
}

/* The kick: wake what finished (done operations, the event waiter). */
static void on_kick(uv_timer_t *t) {
  bp_zk_t *zk = t->data;
  zk->refs++;
  while (zk->done.next != &zk->done) {
    bp_zk_op_t *op = zk->done.next;
    list_remove(op);
    op->state = OP_WOKEN;
    bp__vm_wake(op->waiter, op->status); /* (Lua reads and frees it) */
  }
  if (zk->has_waiter && zk->waiter_status != BP_AGAIN) {
    int waiter = zk->waiter, status = zk->waiter_status;
    zk->has_waiter = 0;
    zk->waiter_status = BP_AGAIN;
    bp__vm_wake(waiter, status);
  }
  keep_loop(zk);
  if (zk->closing && !zk->loop_gone && zk->done.next == &zk->done && !zk->has_waiter) {
    if (!uv_is_closing((uv_handle_t *)&zk->timer)) uv_close((uv_handle_t *)&zk->timer, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&zk->kick)) uv_close((uv_handle_t *)&zk->kick, handle_closed);
  }
  unref(zk);
}

/* --- completions ------------------------------------------------------------------- */

static void copy_stat(bp_zk_op_t *op, const struct Stat *st) {
  if (!st) return;
  op->stat.czxid = st->czxid;
  op->stat.mzxid = st->mzxid;
  op->stat.ctime = st->ctime;
  op->stat.mtime = st->mtime;
  op->stat.version = st->version;
  op->stat.data_length = st->dataLength;
  op->stat.ephemeral_owner = st->ephemeralOwner;
}

static void complete(bp_zk_op_t *op, int zrc) {
  bp_zk_t *zk = op->zk;
  list_remove(op);
  op->zrc = zrc;
  if (op->abandoned) {
    free(op->data);
    free(op);
    return;
  }
  op->state = OP_DONE;
  op->status = zk->closing && zrc == ZCLOSING ? BP_ECLOSED : BP_OK;
  if (zk->loop_gone) { /* (the loop is gone: its waiter never resumes to free it) */
    free(op->data);
    free(op);
    return;
  }
  list_push(&zk->done, op);
  kick(zk);
}

static void on_data(int rc, const char *value, int value_len, const struct Stat *stat, const void *data) {
  bp_zk_op_t *op = (bp_zk_op_t *)data;
  if (rc == ZOK && !op->abandoned) {
    copy_stat(op, stat);
    if (value && value_len >= 0) {
      if (!(op->data = malloc(value_len > 0 ? (size_t)value_len : 1))) {
        rc = ZSYSTEMERROR;
      } else {
        memcpy(op->data, value, (size_t)value_len);
        op->len = (size_t)value_len;
      }
    }
  }
  complete(op, rc);
}

static void on_stat(int rc, const struct Stat *stat, const void *data) {
  bp_zk_op_t *op = (bp_zk_op_t *)data;
  if (rc == ZOK) copy_stat(op, stat);
  complete(op, rc);
}

static void on_string(int rc, const char *value, const void *data) {
  (void)value;
  complete((bp_zk_op_t *)data, rc);
}

static void on_void(int rc, const void *data) { complete((bp_zk_op_t *)data, rc); }

/* --- the API ----------------------------------------------------------------------- */

static void zk_shutdown(bp__closable_t *self);

static void note_name(bp_zk_t *zk, const char *host, size_t n, const char *port, size_t pn) {
  (void)port, (void)pn;
  if (!is_address(host, n)) zk->has_names = 1;
}

bp_zk_t *bp_zk_new(const char *hosts, double timeout, int read_only, char *err, size_t errlen) {
  bp_zk_t *zk;
  uv_loop_t *loop = uv_default_loop();
  char norm[BP_ZK_MAX_HOSTS + 1];
  if (!hosts || bp__zk_check_hosts(hosts, strlen(hosts), norm, sizeof norm, err, errlen) != BP_OK) {
    if (!hosts) snprintf(err, errlen, "zookeeper.hosts: missing");
    return NULL;
  }
  if (!(timeout > 0) || timeout > 3600) {
    snprintf(err, errlen, "zookeeper.timeout: expected above 0 and at most an hour, got %g", timeout);
    return NULL;
  }
  if (!(zk = calloc(1, sizeof *zk)) || !(zk->hosts = strdup(norm))) {
    free(zk);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  zk->closable.magic = BP_CLOSABLE_MAGIC;
  zk->closable.close = zk_shutdown;
  zk->timeout_ms = (int)(timeout * 1000);
  zk->read_only = read_only;
  zk->waiter_status = BP_AGAIN;
  list_init(&zk->inflight);
  list_init(&zk->done);
  zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
  uv_timer_init(loop, &zk->timer);
  uv_timer_init(loop, &zk->kick);
  zk->timer.data = zk->kick.data = zk;
  uv_unref((uv_handle_t *)&zk->timer);
  zk->refs = 3; /* the owner, the timer, the kick */
  bp__ignore_sigpipe();
  each_server(zk, note_name);
  if (zk->has_names) { /* the session starts once the names are looked up */
    start_lookups(zk);
    return zk;
  }
  each_server(zk, add_numeric);
  {
    const char *chroot = each_server(zk, NULL);
    size_t len = strlen(chroot) + 1;
    char *q;
    for (size_t i = 0; i < zk->naddrs; i++) len += strlen(zk->addrs[i]) + 1;
    if ((zk->lib_hosts = q = malloc(len))) {
      for (size_t i = 0; i < zk->naddrs; i++) q += sprintf(q, "%s%s", i ? "," : "", zk->addrs[i]);
      strcpy(q, chroot);
    }
  }
  if (!zk->lib_hosts || !(zk->zh = open_handle(zk))) {
    snprintf(err, errlen, "zookeeper.hosts: ZooKeeper's library refused \"%.200s\"", hosts);
    zk->closing = 1;
    uv_close((uv_handle_t *)&zk->timer, handle_closed);
    uv_close((uv_handle_t *)&zk->kick, handle_closed);
    unref(zk);
    return NULL;
  }
  rearm(zk);
  return zk;
}

int bp_zk_add_auth(bp_zk_t *zk, const char *scheme, const char *cred, size_t len) {
  auth_t *a;
  if (!scheme || !*scheme || !cred || len > 65536 || zk->closing) return BP_EINVAL;
  if (!(a = realloc(zk->auths, (size_t)(zk->nauths + 1) * sizeof *a))) return BP_ENOMEM;
  zk->auths = a;
  a = &zk->auths[zk->nauths];
  a->scheme = strdup(scheme);
  a->cred = malloc(len + 1);
  a->len = len;
  if (!a->scheme || !a->cred) {
    free(a->scheme);
    free(a->cred);
    return BP_ENOMEM;
  }
  memcpy(a->cred, cred, len);
  a->cred[len] = 0;
  zk->nauths++;
  if (zk->zh && !zk->renew) {
    zoo_add_auth(zk->zh, a->scheme, a->cred, (int)len, NULL, NULL);
    rearm(zk);
  }
  return BP_OK;
}

int bp_zk_connected(bp_zk_t *zk) { return zk->connected; }

int64_t bp_zk_session_id(bp_zk_t *zk) { return zk->session_id; }

int bp_zk_next_event(bp_zk_t *zk, int waiter) {
  if (zk->ev_count > 0) return BP_OK;
  if (zk->closing || zk->loop_gone) return BP_ECLOSED;
  if (zk->has_waiter) return BP_EINVAL;
  zk->has_waiter = 1;
  zk->waiter = waiter;
  zk->waiter_status = BP_AGAIN;
  keep_loop(zk);
  return BP_AGAIN;
}

int bp_zk_event(bp_zk_t *zk, int *type, const char **path, int *session) {
  event_t *e;
  if (zk->ev_count == 0) return BP_ENOENT;
  e = &zk->events[zk->ev_head];
  zk->ev_head = (zk->ev_head + 1) % zk->ev_cap;
  zk->ev_count--;
  free(zk->cur_path);
  zk->cur_path = e->path;
  *type = e->type;
  *path = e->path ? e->path : "";
  *session = e->session;
  return BP_OK;
}

static int check_path(bp_zk_t *zk, const char *path) {
  size_t n = path ? strlen(path) : 0;
  if (n == 0 || path[0] != '/' || n > MAX_PATH_LEN || (n > 1 && path[n - 1] == '/') || strstr(path, "//")) {
    set_err(zk, "invalid node path \"%.200s\" (expected /a/b)", path ? path : "");
    return 0;
  }
  return 1;
}

bp_zk_op_t *bp_zk_call(bp_zk_t *zk, int kind, const char *path, const char *data, size_t len, int arg,
                       int waiter, int *rc) {
  bp_zk_op_t *op;
  int zrc;
  if (zk->closing || zk->loop_gone) {
    set_err(zk, "the ZooKeeper client is closed");
    *rc = BP_ECLOSED;
    return NULL;
  }
  if (!check_path(zk, path)) {
    *rc = BP_EINVAL;
    return NULL;
  }
  if ((kind == BP_ZK_SET || kind == BP_ZK_CREATE) && len > 0x7fffffff) {
    set_err(zk, "data too large (%zu bytes)", len);
    *rc = BP_EINVAL;
    return NULL;
  }
  if (!(op = calloc(1, sizeof *op))) {
    *rc = BP_ENOMEM;
    return NULL;
  }
  op->zk = zk;
  op->kind = kind;
  op->waiter = waiter;
  op->state = OP_INFLIGHT;
  list_push(&zk->inflight, op);
  if (zk->renew || !zk->zh) {
    zrc = ZINVALIDSTATE; /* (between sessions) */
  } else {
    switch (kind) {
      case BP_ZK_GET: zrc = zoo_aget(zk->zh, path, arg != 0, on_data, op); break;
      case BP_ZK_EXISTS: zrc = zoo_aexists(zk->zh, path, arg != 0, on_stat, op); break;
      case BP_ZK_SET: zrc = zoo_aset(zk->zh, path, data, (int)len, arg, on_stat, op); break;
      case BP_ZK_CREATE:
        zrc = zoo_acreate(zk->zh, path, data, (int)len, arg ? &ZOO_CREATOR_ALL_ACL : &ZOO_OPEN_ACL_UNSAFE, 0,
                          on_string, op);
        break;
      case BP_ZK_DELETE: zrc = zoo_adelete(zk->zh, path, arg, on_void, op); break;
      default:
        list_remove(op);
        free(op);
        set_err(zk, "unknown operation %d", kind);
        *rc = BP_EINVAL;
        return NULL;
    }
  }
  if (zrc != ZOK) { /* refused at once: the answer still comes from the loop */
    list_remove(op);
    op->zrc = zrc;
    op->state = OP_DONE;
    op->status = BP_OK;
    list_push(&zk->done, op);
    kick(zk);
  } else {
    rearm(zk); /* (the request may wait for the socket to be writable) */
  }
  *rc = BP_AGAIN;
  return op;
}

int bp_zk_result(bp_zk_op_t *op, const char **data, size_t *len, bp_zk_stat_t *stat) {
  *data = op->data;
  *len = op->len;
  *stat = op->stat;
  return op->zrc;
}

void bp_zk_op_free(bp_zk_op_t *op) {
  if (!op) return;
  if (op->state == OP_INFLIGHT) {
    op->abandoned = 1;
    return;
  }
  if (op->state == OP_DONE) list_remove(op); /* (never woken) */
  free(op->data);
  free(op);
}

const char *bp_zk_strerror(int zrc) { return zerror(zrc); }

const char *bp_zk_error(bp_zk_t *zk) { return zk->err; }

/* Close the library's handle: what is in flight completes (ZCLOSING). */
static void teardown(bp_zk_t *zk) {
  zhandle_t *zh = zk->zh;
  cancel_lookups(zk);
  drop_watch(zk);
  zk->zh = NULL;
  zk->connected = 0;
  if (zh) zookeeper_close(zh);
  while (zk->inflight.next != &zk->inflight) complete(zk->inflight.next, ZCLOSING);
}

void bp_zk_close(bp_zk_t *zk) {
  if (!zk) return;
  if (zk->closing) return;
  zk->closing = 1;
  if (!zk->loop_gone) {
    uv_timer_stop(&zk->timer);
    teardown(zk);
    if (zk->has_waiter) zk->waiter_status = BP_ECLOSED;
    /* The kick wakes what is left, then closes the timers. */
    uv_timer_start(&zk->kick, on_kick, 0, 0);
  }
  unref(zk); /* the owner's */
}

/* bp__loop_shutdown: close everything, wake nobody; the owner frees later. */
static void zk_shutdown(bp__closable_t *self) {
  bp_zk_t *zk = (bp_zk_t *)self;
  if (zk->loop_gone) return;
  zk->loop_gone = 1;
  zk->has_waiter = 0;
  teardown(zk);
  while (zk->done.next != &zk->done) { /* (never woken now: nobody frees them later) */
    bp_zk_op_t *op = zk->done.next;
    list_remove(op);
    free(op->data);
    free(op);
  }
  if (!uv_is_closing((uv_handle_t *)&zk->timer)) uv_close((uv_handle_t *)&zk->timer, handle_closed);
  if (!uv_is_closing((uv_handle_t *)&zk->kick)) uv_close((uv_handle_t *)&zk->kick, handle_closed);
}
