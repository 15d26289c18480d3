/* Redis connections (include/baseplate/redis.h, docs/redis.md): commands in
 * RESP written on a libuv TCP stream, replies parsed by hiredis's reader.
 *
 * The connection itself (name lookup, connect, the timer that bounds
 * whatever is in flight, writes, waking the waiter once, reference counting
 * and close, and TLS for rediss://) is the clients' common one,
 * src/clients/conn.c; this file is the protocol on it: commands written,
 * replies read, and what a timeout was waiting for. */
#include "baseplate/redis.h"
#include "clients/conn.h"
#include "internal.h"

#include <hiredis/hiredis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* hiredis's reply types are ours. */
_Static_assert(REDIS_REPLY_STRING == BP_REDIS_STRING && REDIS_REPLY_ARRAY == BP_REDIS_ARRAY &&
                   REDIS_REPLY_INTEGER == BP_REDIS_INTEGER && REDIS_REPLY_NIL == BP_REDIS_NIL &&
                   REDIS_REPLY_STATUS == BP_REDIS_STATUS && REDIS_REPLY_ERROR == BP_REDIS_ERROR,
               "reply types");

struct bp_redis_conn_s {
  bp__cconn_t base; /* first */
  redisReader *reader;
  redisReply **replies;
  int nreplies, expected, cap;
  size_t reply_elements;  /* array elements announced so far by the reply being read */
  int too_many;           /* the reply announced more than MAX_REPLY_ELEMENTS */
  char *out;              /* formatting buffer, reused */
  size_t outcap;
};

static void conn_free(bp__cconn_t *base) {
  bp_redis_conn_t *c = (bp_redis_conn_t *)base;
  int i;
  for (i = 0; i < c->nreplies; i++) freeReplyObject(c->replies[i]);
  free(c->replies);
  if (c->reader) redisReaderFree(c->reader);
  free(c->out);
  free(c);
}

#define set_err(c, ...) bp__cconn_set_err(&(c)->base, __VA_ARGS__)
#define break_conn(c) bp__cconn_break(&(c)->base)
#define finish(c, status) bp__cconn_finish(&(c)->base, status)

/* --- reading replies ------------------------------------------------------ */

static char read_buf[64 * 1024]; /* one loop thread: every read is consumed at once */

static void on_alloc(bp__cconn_t *base, uv_buf_t *buf) {
  (void)base;
  buf->base = read_buf;
  buf->len = sizeof read_buf;
}

static int keep_reply(bp_redis_conn_t *c, redisReply *r) {
  if (c->nreplies == c->cap) {
    int cap = c->cap ? c->cap * 2 : 4;
    redisReply **n = realloc(c->replies, (size_t)cap * sizeof *n);
    if (!n) return BP_ENOMEM;
    c->replies = n;
    c->cap = cap;
  }
  c->replies[c->nreplies++] = r;
  return BP_OK;
}

static void feed(bp_redis_conn_t *c, const char *data, size_t len);

static void on_read(bp__cconn_t *base, ssize_t nread, const uv_buf_t *buf) {
  bp_redis_conn_t *c = (bp_redis_conn_t *)base;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      set_err(c, "%s: Server closed the connection", c->base.where);
    else
      set_err(c, "%s: %s", c->base.where, uv_strerror((int)nread));
    break_conn(c);
    finish(c, BP_EIO);
    return;
  }
  feed(c, buf->base, (size_t)nread);
}

/* hiredis allocates an array's element pointers as soon as its header
 * arrives: unbounded, "*2000000000\r\n" (14 bytes from a broken server)
 * would cost 16 GB. One reply may announce this many elements in all (its
 * nested arrays included); a reply announcing more is a protocol error. */
#define MAX_REPLY_ELEMENTS ((size_t)1 << 24)

static redisReplyObjectFunctions reply_functions;
static void *(*default_create_array)(const redisReadTask *task, int elements);
static bp_redis_conn_t *feeding; /* the connection whose input hiredis reads now */

static void *create_array(const redisReadTask *task, int elements) {
  bp_redis_conn_t *c = feeding;
  if (c && (elements < 0 || (size_t)elements > MAX_REPLY_ELEMENTS - c->reply_elements)) {
    c->too_many = 1;
    return NULL;
  }
  if (c) c->reply_elements += (size_t)elements;
  return default_create_array(task, elements);
}

/* A reader whose arrays are bounded as above. NULL on ENOMEM. */
static redisReader *reader_new(void) {
  redisReader *r = redisReaderCreate();
  if (!r) return NULL;
  if (!default_create_array) {
    reply_functions = *r->fn;
    default_create_array = reply_functions.createArray;
    reply_functions.createArray = create_array;
  }
  r->fn = &reply_functions;
  return r;
}

/* Parse what came from the server; the last expected reply wakes the
 * waiter. */
static void feed(bp_redis_conn_t *c, const char *data, size_t len) {
  void *reply;
  int rc;
  if (redisReaderFeed(c->reader, data, len) != REDIS_OK) goto protocol;
  for (;;) {
    feeding = c;
    rc = redisReaderGetReply(c->reader, &reply);
    feeding = NULL;
    if (rc != REDIS_OK) goto protocol;
    if (!reply) return;
    c->reply_elements = 0;
    if (!c->base.busy) {
      /* A reply nobody asked for: the stream is out of step. */
      freeReplyObject(reply);
      set_err(c, "%s: unexpected reply from the server", c->base.where);
      break_conn(c);
      return;
    }
    if (keep_reply(c, reply) != BP_OK) {
      freeReplyObject(reply);
      set_err(c, "out of memory");
      break_conn(c);
      finish(c, BP_ENOMEM);
      return;
    }
    if (c->nreplies == c->expected) {
      finish(c, BP_OK);
      return;
    }
  }
protocol:
  if (c->too_many)
    set_err(c, "%s: protocol error: a reply with more than %zu array elements, or a negative count",
            c->base.where, MAX_REPLY_ELEMENTS);
  else
    set_err(c, "%s: protocol error: %s", c->base.where, c->reader->errstr);
  break_conn(c);
  finish(c, BP_EIO);
}

/* --- connecting ----------------------------------------------------------- */

static void on_timeout(bp__cconn_t *base) {
  bp_redis_conn_t *c = (bp_redis_conn_t *)base;
  set_err(c, "%s: timed out after %gs waiting for %d of %d replies", c->base.where, c->base.timeout,
          c->expected - c->nreplies, c->expected);
}

static const bp__cconn_proto_t redis_proto = {
    .on_alloc = on_alloc,
    .on_read = on_read,
    .on_timeout = on_timeout,
    .on_free = conn_free,
};

int bp_redis_connect(const char *host, int port, double connect_timeout, int waiter,
                     bp_redis_conn_t **out, char *err, size_t errlen) {
  return bp_redis_connect_tls(host, port, connect_timeout, NULL, waiter, out, err, errlen);
}

int bp_redis_connect_tls(const char *host, int port, double connect_timeout,
                         const bp_redis_tls_t *tls, int waiter, bp_redis_conn_t **out, char *err,
                         size_t errlen) {
  struct ssl_ctx_st *tls_ctx = NULL;
  bp_redis_conn_t *c;
  size_t hl;

  *out = NULL;
  bp__ignore_sigpipe();
  if (!host || !*host || port < 1 || port > 65535 || !(connect_timeout >= 0)) {
    snprintf(err, errlen, "redis: invalid address or timeout (host %s, port %d)", host ? host : "(null)",
             port);
    return BP_EINVAL;
  }
  if (bp__cconn_parse_host("redis", &host, &hl, err, errlen) != BP_OK) return BP_EINVAL;
  if (tls && !(tls_ctx = bp__tls_client_context("redis", tls->ca_file, tls->verify, err, errlen)))
    return BP_EINVAL;
  c = calloc(1, sizeof *c);
  if (!c || !(c->reader = reader_new())) {
    free(c);
    snprintf(err, errlen, "redis: out of memory");
    return BP_ENOMEM;
  }
  bp__cconn_init(&c->base, &redis_proto, host, hl, port, NULL);
  if (tls_ctx) bp__cconn_use_tls(&c->base, tls_ctx);
  snprintf(c->base.where, sizeof c->base.where, "%s:%d", c->base.host, port);
  *out = c;
  bp__cconn_connect(&c->base, connect_timeout, waiter);
  return BP_AGAIN;
}

/* --- sending -------------------------------------------------------------- */

/* Commands whose replies do not come once per command. */
static const char *refused_command(const char *name, size_t len, const char *next, size_t nextlen) {
  static const char *const refused[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
                                        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC"};
  size_t i;
  for (i = 0; i < BP_ARRAY_SIZE(refused); i++)
    if (strlen(refused[i]) == len && strncasecmp(name, refused[i], len) == 0) return refused[i];
  if (len == 6 && strncasecmp(name, "CLIENT", 6) == 0 && nextlen == 5 && next &&
      strncasecmp(next, "REPLY", 5) == 0)
    return "CLIENT REPLY";
  return NULL;
}

static size_t digits(size_t n) {
  size_t d = 1;
  while (n >= 10) n /= 10, d++;
  return d;
}

static char *put_header(char *p, char kind, size_t n) {
  char tmp[24];
  size_t i = 0;
  *p++ = kind;
  do tmp[i++] = (char)('0' + n % 10); while ((n /= 10) > 0);
  while (i > 0) *p++ = tmp[--i];
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

/* Writing failed (uv error `rc`): the connection breaks, and the waiter
 * learns it from the loop. */
static int send_failed(bp_redis_conn_t *c, int rc) {
  if (c->base.state != BP__CCONN_BROKEN) {
    set_err(c, "%s: %s", c->base.where, uv_strerror(rc));
    break_conn(c);
  }
  bp__cconn_finish_later(&c->base, BP_EIO);
  return BP_AGAIN;
}

int bp_redis_send(bp_redis_conn_t *c, int ncmds, const int *argcs, const char *const *argv,
                  const size_t *argvlen, double timeout, int waiter) {
  size_t total = 0, k = 0;
  int i, j, rc;
  char *p;

  if (!c || c->base.busy || c->base.state != BP__CCONN_READY || c->base.user_closed) {
    if (c && c->base.busy) set_err(c, "busy: an operation is in flight");
    return BP_EINVAL;
  }
  if (ncmds < 1 || !argcs || !argv || !argvlen || !(timeout >= 0)) {
    set_err(c, "invalid arguments");
    return BP_EINVAL;
  }
  for (i = 0; i < ncmds; i++) {
    const char *refused;
    if (argcs[i] < 1) {
      set_err(c, "command %d has no name", i + 1);
      return BP_EINVAL;
    }
    refused = refused_command(argv[k], argvlen[k], argcs[i] > 1 ? argv[k + 1] : NULL,
                              argcs[i] > 1 ? argvlen[k + 1] : 0);
    if (refused) {
      set_err(c, "%s is not supported: its replies do not come one per command", refused);
      return BP_EINVAL;
    }
    total += 1 + digits((size_t)argcs[i]) + 2;
    for (j = 0; j < argcs[i]; j++, k++) {
      if (!argv[k] && argvlen[k]) {
        set_err(c, "argument %zu is NULL", k + 1);
        return BP_EINVAL;
      }
      total += 1 + digits(argvlen[k]) + 2 + argvlen[k] + 2;
    }
  }
  if (total > c->outcap) {
    char *n = malloc(total);
    if (!n) {
      set_err(c, "out of memory");
      return BP_ENOMEM;
    }
    free(c->out);
    c->out = n;
    c->outcap = total;
  }
  p = c->out;
  for (i = 0, k = 0; i < ncmds; i++) {
    p = put_header(p, '*', (size_t)argcs[i]);
    for (j = 0; j < argcs[i]; j++, k++) {
      p = put_header(p, '$', argvlen[k]);
      if (argvlen[k]) memcpy(p, argv[k], argvlen[k]);
      p += argvlen[k];
      *p++ = '\r';
      *p++ = '\n';
    }
  }

  for (i = 0; i < c->nreplies; i++) freeReplyObject(c->replies[i]);
  c->nreplies = 0;
  c->expected = ncmds;
  c->base.err[0] = '\0';

  bp__cconn_begin(&c->base, timeout, waiter);
  rc = bp__cconn_write(&c->base, c->out, total, 0); /* (encrypted on a TLS connection) */
  if (rc < 0) return send_failed(c, rc);
  return BP_AGAIN;
}

/* --- replies and state ------------------------------------------------------ */

int bp_redis_reply_count(const bp_redis_conn_t *c) { return c ? c->nreplies : 0; }

const bp_redis_reply_t *bp_redis_reply(const bp_redis_conn_t *c, int i) {
  if (!c || i < 0 || i >= c->nreplies) return NULL;
  return (const bp_redis_reply_t *)c->replies[i];
}

int bp_redis_reply_type(const bp_redis_reply_t *r) { return r ? ((const redisReply *)r)->type : 0; }

long long bp_redis_reply_integer(const bp_redis_reply_t *r) {
  const redisReply *x = (const redisReply *)r;
  return x && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
}

const char *bp_redis_reply_string(const bp_redis_reply_t *r, size_t *len) {
  const redisReply *x = (const redisReply *)r;
  if (!x || (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS &&
             x->type != REDIS_REPLY_ERROR)) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = x->len;
  return x->str;
}

size_t bp_redis_reply_elements(const bp_redis_reply_t *r) {
  const redisReply *x = (const redisReply *)r;
  return x && x->type == REDIS_REPLY_ARRAY ? x->elements : 0;
}

const bp_redis_reply_t *bp_redis_reply_element(const bp_redis_reply_t *r, size_t i) {
  const redisReply *x = (const redisReply *)r;
  if (!x || x->type != REDIS_REPLY_ARRAY || i >= x->elements) return NULL;
  return (const bp_redis_reply_t *)x->element[i];
}

const char *bp_redis_error(const bp_redis_conn_t *c) { return c ? c->base.err : "closed"; }

int bp_redis_broken(const bp_redis_conn_t *c) { return !c || bp__cconn_broken(&c->base); }

int bp_redis_busy(const bp_redis_conn_t *c) { return c ? c->base.busy : 0; }

void bp_redis_close(bp_redis_conn_t *c) {
  if (c) bp__cconn_close(&c->base);
}

/* --- Redis Cluster's key slots ------------------------------------------------- */

static uint16_t crc16_xmodem(const unsigned char *p, size_t len) {
  uint16_t crc = 0;
  size_t i;
  int b;
  for (i = 0; i < len; i++) {
    crc ^= (uint16_t)(p[i] << 8);
    for (b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

int bp_redis_keyslot(const char *key, size_t len) {
  const char *open = memchr(key, '{', len), *close;
  if (open) {
    size_t rest = len - (size_t)(open - key) - 1;
    close = memchr(open + 1, '}', rest);
    if (close && close > open + 1) {
      key = open + 1;
      len = (size_t)(close - open - 1);
    }
  }
  return crc16_xmodem((const unsigned char *)key, len) & 16383;
}
