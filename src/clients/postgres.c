/* PostgreSQL connections: libpq's asynchronous API driven by the libuv loop
 * (include/baseplate/postgres.h, docs/postgres.md).
 *
 * A connection owns a timer (connect and statement limits, and wakes that
 * must come from the loop) and at most one poll handle on libpq's socket.
 * Each poll handle is allocated on its own: while connecting, libpq may
 * close its socket and open another one (the next address, an SSL retry),
 * possibly with the same descriptor number, so every connect step gets a
 * fresh handle. The connection is reference counted — its owner, the timer,
 * each poll handle and a name resolution in flight hold a reference — and is
 * freed when the last one goes. */
#include "baseplate/postgres.h"
#include "clients/watch.h"
#include "baseplate/log.h"
#include "clients/conn.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_NEW, ST_RESOLVING, ST_CONNECTING, ST_IDLE, ST_SENDING, ST_READING, ST_BROKEN };

/* Addresses of one name tried in turn (libpq's host/hostaddr lists). */
#define MAX_ADDRS 8

struct bp_pg_conn_s {
  bp__closable_t closable; /* first: every handle's data points at the connection */
  PGconn *pg;
  uv_timer_t timer;
  bp__watch_t *poll; /* watching PQsocket(pg), or NULL */
  uv_getaddrinfo_t *gai; /* a resolution in flight, or NULL */
  PGresult *result;      /* the last statement's, until taken */
  int refs;
  int state;
  int busy; /* the waiter is owed a wake */
  int waiter;
  int pending; /* a status the timer wakes with at once (BP_AGAIN: none) */
  int owner_gone;
  int loop_gone;
  double timeout; /* the running operation's limit (for messages) */
  /* connection parameters, kept from bp_pg_connect until libpq has them */
  char **keys, **vals;
  int nparams, cap;
  char *resolve; /* the host name to resolve (one of vals), or NULL */
  char where[160];
  char err[512];
};

static const char *LOGGER = "baseplate.clients.postgres";

/* --- errors --------------------------------------------------------------------- */

/* Store a message as one line: libpq's run over several ("…failed: Connection
 * refused\n\tIs the server running…"). */
static void set_err_text(bp_pg_conn_t *c, const char *msg) {
  size_t n = 0;
  int space = 0;
  for (const char *p = msg; *p && n + 1 < sizeof c->err; p++) {
    if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
      space = n > 0;
      continue;
    }
    if (space && n + 2 < sizeof c->err) c->err[n++] = ' ';
    space = 0;
    c->err[n++] = *p;
  }
  c->err[n] = '\0';
}

static void set_err(bp_pg_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(bp_pg_conn_t *c, const char *fmt, ...) {
  char buf[sizeof c->err];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  set_err_text(c, buf);
}

/* libpq's reason, or a fallback when it has none. */
static void set_err_pq(bp_pg_conn_t *c, const char *fallback) {
  const char *m = c->pg ? PQerrorMessage(c->pg) : "";
  set_err_text(c, m && *m ? m : fallback);
}

static void copy_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

/* --- lifetime ---------------------------------------------------------------------- */

static void free_params(bp_pg_conn_t *c) {
  for (int i = 0; i < c->nparams; i++) {
    /* a password from bp_pg_connect_as lingers in no freed block */
    if (strcmp(c->keys[i], "password") == 0) explicit_bzero(c->vals[i], strlen(c->vals[i]));
    free(c->keys[i]);
    free(c->vals[i]);
  }
  free(c->keys);
  free(c->vals);
  c->keys = c->vals = NULL;
  c->nparams = c->cap = 0;
  c->resolve = NULL;
}

static void unref(bp_pg_conn_t *c) {
  if (--c->refs > 0) return;
  if (c->pg) PQfinish(c->pg);
  PQclear(c->result);
  free_params(c);
  free(c);
}

static void poll_closed(bp__watch_t *w) { unref(w->owner); }

static void timer_closed(uv_handle_t *h) { unref(h->data); }

static void unwatch(bp_pg_conn_t *c) {
  if (!c->poll) return;
  bp__watch_close(c->poll);
  c->poll = NULL;
}

static void on_poll(bp__watch_t *p, int status, int events);

/* Watch libpq's socket for `events`; `fresh` replaces the handle (while
 * connecting the socket may have been replaced by one with the same number).
 * A handle keeps the loop alive only while an operation is in flight. */
static int watch(bp_pg_conn_t *c, int events, int fresh) {
  int fd = c->pg ? PQsocket(c->pg) : -1;
  int rc;
  if (fd < 0) return UV_EBADF;
  if (fresh) unwatch(c);
  if (!c->poll) {
    if (!(c->poll = bp__watch_new(fd, c, c, on_poll, poll_closed, &rc))) return rc;
    c->refs++;
  }
  if ((rc = bp__watch_set(c->poll, events)) != 0) return rc;
  bp__watch_keep_loop(c->poll, c->busy);
  return 0;
}

/* The connection cannot be used again (the reason is in c->err already). */
static void conn_break(bp_pg_conn_t *c) {
  c->state = ST_BROKEN;
  unwatch(c); /* before PQfinish closes the descriptor */
  if (c->gai) uv_cancel((uv_req_t *)c->gai);
  if (c->pg) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  PQclear(c->result);
  c->result = NULL;
}

/* End the operation in flight: wake its waiter with `status`. Only from
 * loop callbacks; c must not be touched after the wake. */
static void finish(bp_pg_conn_t *c, int status) {
  int waiter = c->waiter, was_busy = c->busy;
  uv_timer_stop(&c->timer);
  c->pending = BP_AGAIN;
  c->busy = 0;
  if (c->state != ST_BROKEN) {
    int rc;
    c->state = ST_IDLE;
    /* Idle, the socket is still read: a server going away breaks the
     * connection before anyone tries to use it. */
    if ((rc = watch(c, UV_READABLE, 0)) != 0) {
      set_err(c, "cannot watch the connection's socket: %s", uv_strerror(rc));
      conn_break(c);
    }
  }
  if (was_busy) bp__vm_wake(waiter, status);
}

static void fail(bp_pg_conn_t *c, int status) {
  conn_break(c);
  finish(c, status);
}

static void on_timer(uv_timer_t *t) {
  bp_pg_conn_t *c = t->data;
  if (c->owner_gone) {
    /* Closed while busy: the promised wake, then the timer goes. */
    int waiter = c->waiter, was_busy = c->busy;
    c->busy = 0;
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    if (was_busy) bp__vm_wake(waiter, BP_ECLOSED);
    return;
  }
  if (c->pending != BP_AGAIN) {
    finish(c, c->pending);
    return;
  }
  switch (c->state) {
    case ST_RESOLVING:
    case ST_CONNECTING:
      set_err(c, "%s: connect timed out after %gs", c->where, c->timeout);
      fail(c, BP_ETIMEDOUT);
      break;
    case ST_SENDING:
    case ST_READING:
      set_err(c, "%s: timed out after %gs waiting for the result", c->where, c->timeout);
      fail(c, BP_ETIMEDOUT);
      break;
    default:
      break;
  }
}

/* Wake from the loop with `status` as soon as it runs (for failures found
 * inside a call Lua made). */
static void defer(bp_pg_conn_t *c, int status) {
  c->pending = status;
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

static uint64_t to_ms(double seconds) { return (uint64_t)ceil(seconds * 1000.0); }

/* bp__loop_shutdown: close the handles, wake nobody; the owner frees later. */
static void conn_shutdown(bp__closable_t *self) {
  bp_pg_conn_t *c = (bp_pg_conn_t *)self;
  if (c->loop_gone) return;
  c->loop_gone = 1;
  c->busy = 0;
  if (c->state != ST_BROKEN) set_err(c, "%s: the event loop was shut down", c->where);
  conn_break(c);
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, timer_closed);
}

/* --- notices ------------------------------------------------------------------------ */

static void on_notice(void *arg, const char *message) {
  size_t n = strlen(message);
  while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == ' ')) n--;
  bp_log(BP_LOG_DEBUG, LOGGER, "server notice: %.*s", (int)n, message);
}

static void drain_notifies(bp_pg_conn_t *c) {
  PGnotify *n;
  while ((n = PQnotifies(c->pg)) != NULL) PQfreemem(n);
}

/* --- connecting -------------------------------------------------------------------- */

static int add_param(bp_pg_conn_t *c, const char *key, const char *val) {
  if (c->nparams + 1 >= c->cap) {
    int cap = c->cap ? c->cap * 2 : 48;
    char **k = realloc(c->keys, (size_t)cap * sizeof *k);
    if (!k) return BP_ENOMEM;
    c->keys = k;
    char **v = realloc(c->vals, (size_t)cap * sizeof *v);
    if (!v) return BP_ENOMEM;
    c->vals = v;
    c->cap = cap;
  }
  c->keys[c->nparams] = strdup(key);
  c->vals[c->nparams] = strdup(val);
  if (!c->keys[c->nparams] || !c->vals[c->nparams]) {
    free(c->keys[c->nparams]);
    free(c->vals[c->nparams]);
    return BP_ENOMEM;
  }
  c->nparams++;
  c->keys[c->nparams] = c->vals[c->nparams] = NULL;
  return BP_OK;
}

/* Set (or replace) one parameter. */
static int set_param(bp_pg_conn_t *c, const char *key, const char *val) {
  for (int i = 0; i < c->nparams; i++) {
    if (strcmp(c->keys[i], key) == 0) {
      char *v = strdup(val);
      if (!v) return BP_ENOMEM;
      if (c->resolve == c->vals[i]) c->resolve = v;
      free(c->vals[i]);
      c->vals[i] = v;
      return BP_OK;
    }
  }
  return add_param(c, key, val);
}

static const char *get_param(const bp_pg_conn_t *c, const char *key) {
  for (int i = 0; i < c->nparams; i++)
    if (strcmp(c->keys[i], key) == 0) return c->vals[i];
  return NULL;
}

static int is_address(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A host that libpq would look up with getaddrinfo (blocking). */
static int is_name(const char *host) {
  return *host && host[0] != '/' && host[0] != '@' && !is_address(host);
}

/* Parse conninfo into c->keys/vals, add our own settings, and find a host
 * name that must be resolved first. */
static int build_params(bp_pg_conn_t *c, const char *conninfo, double statement_timeout, char *err,
                        size_t errlen) {
  char *msg = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
  const char *host, *hostaddr, *port, *options;
  char buf[64];
  int rc = BP_OK;
  if (!opts) {
    set_err_text(c, msg ? msg : "out of memory");
    if (err && errlen) snprintf(err, errlen, "invalid connection string: %.400s", c->err);
    rc = msg ? BP_EINVAL : BP_ENOMEM;
    PQfreemem(msg);
    return rc;
  }
  for (PQconninfoOption *o = opts; o->keyword && rc == BP_OK; o++)
    if (o->val && *o->val) rc = add_param(c, o->keyword, o->val);
  PQconninfoFree(opts);
  if (rc != BP_OK) goto nomem;

  /* libpq falls back on these environment variables; they count too. */
  host = get_param(c, "host");
  if (!host && (host = getenv("PGHOST")) != NULL && *host &&
      (rc = set_param(c, "host", host)) != BP_OK)
    goto nomem;
  hostaddr = get_param(c, "hostaddr");
  if (!hostaddr && (hostaddr = getenv("PGHOSTADDR")) != NULL && !*hostaddr) hostaddr = NULL;
  host = get_param(c, "host");
  port = get_param(c, "port");
  if (!port) port = getenv("PGPORT");
  snprintf(c->where, sizeof c->where, "%s:%s", host ? host : (hostaddr ? hostaddr : "localhost"),
           port && *port ? port : "5432");

  if (host && !hostaddr) {
    if (strchr(host, ',')) {
      char *copy = strdup(host), *save = NULL;
      if (!copy) goto nomem;
      for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        if (is_name(h)) {
          snprintf(buf, sizeof buf, "%s", h);
          free(copy);
          char line[256];
          snprintf(line, sizeof line,
                   "several hosts must be addresses or socket directories, not names (%s)", buf);
          copy_err(err, errlen, line);
          return BP_EINVAL;
        }
      }
      free(copy);
    } else if (is_name(host)) {
      for (int i = 0; i < c->nparams; i++)
        if (strcmp(c->keys[i], "host") == 0) c->resolve = c->vals[i];
    }
  }

  if (statement_timeout > 0) {
    char *joined;
    size_t n;
    snprintf(buf, sizeof buf, "-c statement_timeout=%llums",
             (unsigned long long)to_ms(statement_timeout));
    options = get_param(c, "options");
    n = (options ? strlen(options) + 1 : 0) + strlen(buf) + 1;
    if (!(joined = malloc(n))) goto nomem;
    snprintf(joined, n, "%s%s%s", options ? options : "", options ? " " : "", buf);
    rc = set_param(c, "options", joined);
    free(joined);
    if (rc != BP_OK) goto nomem;
  }
  if (!get_param(c, "fallback_application_name") &&
      set_param(c, "fallback_application_name", "baseplate"))
    goto nomem;
  return BP_OK;
nomem:
  copy_err(err, errlen, "out of memory");
  return BP_ENOMEM;
}

/* Hand the parameters to libpq and take the first step. BP_AGAIN, or a
 * failure status (the connection is then broken). */
static int start_pq(bp_pg_conn_t *c) {
  int rc;
  /* expand_dbname 0: the parameters come from PQconninfoParse already (a
   * URL's dbname is plain by now), and "hostaddr" must stay ours. */
  c->pg = PQconnectStartParams((const char *const *)c->keys, (const char *const *)c->vals, 0);
  free_params(c);
  if (!c->pg) {
    set_err(c, "%s: out of memory", c->where);
    conn_break(c);
    return BP_ENOMEM;
  }
  PQsetNoticeProcessor(c->pg, on_notice, NULL);
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    set_err_pq(c, "connection failed");
    conn_break(c);
    return BP_EIO;
  }
  c->state = ST_CONNECTING;
  /* libpq: before the first PQconnectPoll, behave as if it said WRITING. */
  if ((rc = watch(c, UV_WRITABLE, 1)) != 0) {
    set_err(c, "%s: cannot watch the socket: %s", c->where, uv_strerror(rc));
    conn_break(c);
    return BP_EIO;
  }
  return BP_AGAIN;
}

static void connect_step(bp_pg_conn_t *c) {
  int rc = 0;
  switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
      if (PQsetnonblocking(c->pg, 1) != 0) {
        set_err_pq(c, "cannot set non-blocking mode");
        fail(c, BP_EIO);
        return;
      }
      c->state = ST_IDLE;
      finish(c, BP_OK);
      return;
    case PGRES_POLLING_READING:
      rc = watch(c, UV_READABLE, 1);
      break;
    case PGRES_POLLING_WRITING:
      rc = watch(c, UV_WRITABLE, 1);
      break;
    default:
      set_err_pq(c, "connection failed");
      fail(c, BP_EIO);
      return;
  }
  if (rc != 0) {
    set_err(c, "%s: cannot watch the socket: %s", c->where, uv_strerror(rc));
    fail(c, BP_EIO);
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  bp_pg_conn_t *c = req->data;
  char hosts[MAX_ADDRS * 256], addrs[MAX_ADDRS * 48];
  size_t hn = 0, an = 0;
  int n = 0, rc;
  free(req);
  c->gai = NULL;
  if (c->state != ST_RESOLVING || c->owner_gone || c->loop_gone) {
    uv_freeaddrinfo(res);
    unref(c);
    return;
  }
  unref(c); /* the owner still holds it */
  if (status < 0) {
    set_err(c, "%s: cannot resolve the host name: %s", c->where, uv_strerror(status));
    fail(c, BP_EIO);
    return;
  }
  hosts[0] = addrs[0] = '\0';
  for (struct addrinfo *ai = res; ai && n < MAX_ADDRS; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    if (ai->ai_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    else if (ai->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    else
      continue;
    /* libpq checks the host name (TLS, Kerberos) and connects to the address. */
    hn += (size_t)snprintf(hosts + hn, sizeof hosts - hn, "%s%s", n ? "," : "", c->resolve);
    an += (size_t)snprintf(addrs + an, sizeof addrs - an, "%s%s", n ? "," : "", ip);
    if (hn >= sizeof hosts || an >= sizeof addrs) break;
    n++;
  }
  uv_freeaddrinfo(res);
  if (n == 0) {
    set_err(c, "%s: the host name has no IPv4 or IPv6 address", c->where);
    fail(c, BP_EIO);
    return;
  }
  if (set_param(c, "host", hosts) != BP_OK || set_param(c, "hostaddr", addrs) != BP_OK) {
    set_err(c, "%s: out of memory", c->where);
    fail(c, BP_ENOMEM);
    return;
  }
  if ((rc = start_pq(c)) != BP_AGAIN) finish(c, rc);
}

int bp_pg_connect(const char *conninfo, double connect_timeout, double statement_timeout,
                  int waiter, bp_pg_conn_t **out, char *err, size_t errlen) {
  bp_pg_connect_opts_t o;
  memset(&o, 0, sizeof o);
  o.conninfo = conninfo;
  o.connect_timeout = connect_timeout;
  o.statement_timeout = statement_timeout;
  return bp_pg_connect_as(&o, waiter, out, err, errlen);
}

int bp_pg_connect_as(const bp_pg_connect_opts_t *o, int waiter, bp_pg_conn_t **out, char *err,
                     size_t errlen) {
  bp_pg_conn_t *c;
  int rc;
  const char *conninfo = o ? o->conninfo : NULL;
  double connect_timeout = o ? o->connect_timeout : 0, statement_timeout = o ? o->statement_timeout : 0;
  if (out) *out = NULL;
  if (!conninfo || !out) {
    copy_err(err, errlen, "no connection string");
    return BP_EINVAL;
  }
  if (isnan(connect_timeout) || connect_timeout < 0 || isnan(statement_timeout) ||
      statement_timeout < 0) {
    copy_err(err, errlen, "timeouts must be non-negative numbers of seconds");
    return BP_EINVAL;
  }
  if (!(c = calloc(1, sizeof *c))) {
    copy_err(err, errlen, "out of memory");
    return BP_ENOMEM;
  }
  c->closable.magic = BP_CLOSABLE_MAGIC;
  c->closable.close = conn_shutdown;
  c->pending = BP_AGAIN;
  c->refs = 1;
  if ((rc = build_params(c, conninfo, statement_timeout, err, errlen)) != BP_OK) {
    unref(c);
    return rc;
  }
  /* Credentials given apart from the connection string (a credential
   * secret's) take the place of the string's. */
  if ((o->user && set_param(c, "user", o->user) != BP_OK) ||
      (o->password && set_param(c, "password", o->password) != BP_OK)) {
    copy_err(err, errlen, "out of memory");
    unref(c);
    return BP_ENOMEM;
  }
  /* From here on, failures reach the waiter through the loop. */
  uv_timer_init(bp_loop(), &c->timer);
  c->timer.data = c;
  c->refs++;
  c->busy = 1;
  c->waiter = waiter;
  c->timeout = connect_timeout;
  if (c->resolve) {
    struct addrinfo hints;
    uv_getaddrinfo_t *req = malloc(sizeof *req);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = req ? uv_getaddrinfo(bp_loop(), req, on_resolved, c->resolve, NULL, &hints) : UV_ENOMEM;
    if (rc != 0) {
      free(req);
      set_err(c, "%s: cannot resolve the host name: %s", c->where, uv_strerror(rc));
      conn_break(c);
      defer(c, BP_EIO);
    } else {
      req->data = c;
      c->gai = req;
      c->refs++;
      c->state = ST_RESOLVING;
    }
  } else if ((rc = start_pq(c)) != BP_AGAIN) {
    defer(c, rc);
  }
  if (connect_timeout > 0 && c->pending == BP_AGAIN)
    bp__client_timer_start(&c->timer, on_timer, to_ms(connect_timeout));
  *out = c;
  return BP_AGAIN;
}

/* --- statements --------------------------------------------------------------------- */

static int is_error_result(const PGresult *r) {
  ExecStatusType s = PQresultStatus(r);
  return s == PGRES_FATAL_ERROR || s == PGRES_NONFATAL_ERROR || s == PGRES_BAD_RESPONSE;
}

/* Keep one result: the first error, else the last result. */
static void keep_result(bp_pg_conn_t *c, PGresult *r) {
  if (c->result && is_error_result(c->result)) {
    PQclear(r);
    return;
  }
  PQclear(c->result);
  c->result = r;
}

/* Read what arrived; finish once libpq has no more results. */
static void read_results(bp_pg_conn_t *c) {
  if (!PQconsumeInput(c->pg)) {
    set_err_pq(c, "lost the connection");
    fail(c, BP_EIO);
    return;
  }
  drain_notifies(c);
  while (!PQisBusy(c->pg)) {
    PGresult *r = PQgetResult(c->pg);
    ExecStatusType s;
    if (!r) {
      finish(c, BP_OK);
      return;
    }
    s = PQresultStatus(r);
    if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
      PQclear(r);
      set_err(c, "%s: COPY is not supported by this client", c->where);
      fail(c, BP_EIO);
      return;
    }
    keep_result(c, r);
  }
}

static void io_step(bp_pg_conn_t *c, int events) {
  if (c->state == ST_SENDING) {
    int f, rc;
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
      set_err_pq(c, "lost the connection");
      fail(c, BP_EIO);
      return;
    }
    if ((f = PQflush(c->pg)) < 0) {
      set_err_pq(c, "sending failed");
      fail(c, BP_EIO);
      return;
    }
    if (f > 0) return; /* still waiting to write */
    c->state = ST_READING;
    if ((rc = watch(c, UV_READABLE, 0)) != 0) {
      set_err(c, "%s: cannot watch the socket: %s", c->where, uv_strerror(rc));
      fail(c, BP_EIO);
      return;
    }
  }
  read_results(c);
}

/* Idle: the server may have said goodbye (a restart, an idle timeout). */
static void idle_read(bp_pg_conn_t *c) {
  if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
    set_err_pq(c, "the server closed the connection");
    bp_log(BP_LOG_DEBUG, LOGGER, "idle connection to %s lost: %s", c->where, c->err);
    conn_break(c);
    return;
  }
  drain_notifies(c);
}

static void on_poll(bp__watch_t *p, int status, int events) {
  bp_pg_conn_t *c = p->owner;
  if (p != c->poll) return;
  if (status < 0) {
    /* libuv reports POLLERR (a refused connect, a reset) as UV_EBADF and
     * stops the handle: libpq finds the socket's error and says it better. */
    if (c->state == ST_CONNECTING) {
      connect_step(c); /* watches a fresh handle if libpq goes on */
      return;
    }
    if (c->pg && !PQconsumeInput(c->pg))
      set_err_pq(c, "lost the connection");
    else
      set_err(c, "%s: socket error: %s", c->where, uv_strerror(status));
    if (c->busy)
      fail(c, BP_EIO);
    else
      conn_break(c);
    return;
  }
  switch (c->state) {
    case ST_CONNECTING:
      connect_step(c);
      break;
    case ST_SENDING:
    case ST_READING:
      io_step(c, events);
      break;
    case ST_IDLE:
      idle_read(c);
      break;
    default:
      break;
  }
}

enum { SEND_QUERY, SEND_PREPARE, SEND_PREPARED };

static int send_op(bp_pg_conn_t *c, int kind, const char *name, const char *sql, int nparams,
                   const char *const *values, double timeout, int waiter) {
  int ok, f, rc;
  if (!c) return BP_EINVAL;
  if (c->busy) {
    set_err(c, "%s: busy: an operation is in flight", c->where);
    return BP_EINVAL;
  }
  if (c->state != ST_IDLE || !c->pg) return BP_EINVAL; /* broken: c->err says why */
  if ((kind != SEND_PREPARED && !sql) || (kind != SEND_QUERY && !name)) {
    set_err(c, "no statement");
    return BP_EINVAL;
  }
  if (nparams < 0 || nparams > BP_PG_MAX_PARAMS || (nparams > 0 && !values)) {
    set_err(c, "invalid parameters (%d)", nparams);
    return BP_EINVAL;
  }
  if (isnan(timeout) || timeout < 0) {
    set_err(c, "invalid timeout");
    return BP_EINVAL;
  }
  PQclear(c->result);
  c->result = NULL;
  c->err[0] = '\0';
  if (kind == SEND_QUERY)
    ok = PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0);
  else if (kind == SEND_PREPARE)
    ok = PQsendPrepare(c->pg, name, sql, 0, NULL);
  else
    ok = PQsendQueryPrepared(c->pg, name, nparams, values, NULL, NULL, 0);
  if (!ok) {
    set_err_pq(c, "sending failed");
    if (PQstatus(c->pg) == CONNECTION_BAD) {
      conn_break(c);
      return BP_EIO;
    }
    return BP_EINVAL;
  }
  c->busy = 1;
  c->waiter = waiter;
  c->timeout = timeout;
  if ((f = PQflush(c->pg)) < 0) {
    set_err_pq(c, "sending failed");
    c->busy = 0;
    conn_break(c);
    return BP_EIO;
  }
  c->state = f ? ST_SENDING : ST_READING;
  if ((rc = watch(c, f ? UV_READABLE | UV_WRITABLE : UV_READABLE, 0)) != 0) {
    set_err(c, "%s: cannot watch the socket: %s", c->where, uv_strerror(rc));
    c->busy = 0;
    conn_break(c);
    return BP_EIO;
  }
  if (timeout > 0) bp__client_timer_start(&c->timer, on_timer, to_ms(timeout));
  return BP_AGAIN;
}

int bp_pg_query(bp_pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                double timeout, int waiter) {
  return send_op(c, SEND_QUERY, NULL, sql, nparams, values, timeout, waiter);
}

int bp_pg_prepare(bp_pg_conn_t *c, const char *name, const char *sql, double timeout, int waiter) {
  return send_op(c, SEND_PREPARE, name, sql, 0, NULL, timeout, waiter);
}

int bp_pg_query_prepared(bp_pg_conn_t *c, const char *name, int nparams, const char *const *values,
                         double timeout, int waiter) {
  return send_op(c, SEND_PREPARED, name, NULL, nparams, values, timeout, waiter);
}

bp_pg_result_t *bp_pg_take_result(bp_pg_conn_t *c) {
  PGresult *r;
  if (!c || c->busy) return NULL;
  r = c->result;
  c->result = NULL;
  return (bp_pg_result_t *)r;
}

const char *bp_pg_error(const bp_pg_conn_t *c) { return c ? c->err : ""; }

int bp_pg_broken(const bp_pg_conn_t *c) { return !c || c->state == ST_BROKEN; }

int bp_pg_busy(const bp_pg_conn_t *c) { return c ? c->busy : 0; }

void bp_pg_close(bp_pg_conn_t *c) {
  if (!c || c->owner_gone) return;
  c->owner_gone = 1;
  if (!c->loop_gone) {
    if (c->state != ST_BROKEN) set_err(c, "closed");
    conn_break(c);
    if (c->busy)
      defer(c, BP_ECLOSED); /* on_timer wakes, then closes the timer */
    else
      uv_close((uv_handle_t *)&c->timer, timer_closed);
  }
  unref(c);
}

/* --- results ------------------------------------------------------------------------ */

#define PGR(r) ((const PGresult *)(r))

void bp_pg_result_free(bp_pg_result_t *r) { PQclear((PGresult *)r); }

int bp_pg_result_ok(const bp_pg_result_t *r) {
  if (!r) return 0;
  switch (PQresultStatus(PGR(r))) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_SINGLE_TUPLE:
    case PGRES_EMPTY_QUERY:
      return 1;
    default:
      return 0;
  }
}

const char *bp_pg_result_error(const bp_pg_result_t *r) {
  const char *m;
  if (!r || bp_pg_result_ok(r)) return "";
  if ((m = PQresultErrorField(PGR(r), PG_DIAG_MESSAGE_PRIMARY)) != NULL) return m;
  m = PQresultErrorMessage(PGR(r));
  return m && *m ? m : "unknown error";
}

const char *bp_pg_result_sqlstate(const bp_pg_result_t *r) {
  const char *s = r ? PQresultErrorField(PGR(r), PG_DIAG_SQLSTATE) : NULL;
  return s ? s : "";
}

const char *bp_pg_result_error_field(const bp_pg_result_t *r, int field) {
  return r ? PQresultErrorField(PGR(r), field) : NULL;
}

int bp_pg_result_rows(const bp_pg_result_t *r) { return r ? PQntuples(PGR(r)) : 0; }

int bp_pg_result_cols(const bp_pg_result_t *r) { return r ? PQnfields(PGR(r)) : 0; }

const char *bp_pg_result_col_name(const bp_pg_result_t *r, int col) {
  return r && col >= 0 && col < PQnfields(PGR(r)) ? PQfname(PGR(r), col) : NULL;
}

unsigned int bp_pg_result_col_type(const bp_pg_result_t *r, int col) {
  return r && col >= 0 && col < PQnfields(PGR(r)) ? (unsigned int)PQftype(PGR(r), col) : 0;
}

const char *bp_pg_result_value(const bp_pg_result_t *r, int row, int col, size_t *len) {
  if (len) *len = 0;
  if (!r || row < 0 || col < 0 || row >= PQntuples(PGR(r)) || col >= PQnfields(PGR(r)) ||
      PQgetisnull(PGR(r), row, col))
    return NULL;
  if (len) *len = (size_t)PQgetlength(PGR(r), row, col);
  return PQgetvalue(PGR(r), row, col);
}

long long bp_pg_result_affected(const bp_pg_result_t *r) {
  const char *s;
  if (!r) return 0;
  s = PQcmdTuples((PGresult *)r);
  return s && *s ? strtoll(s, NULL, 10) : 0;
}
