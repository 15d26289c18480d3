/* memcached connections (include/baseplate/memcache.h, docs/memcache.md):
 * the text protocol, commands queued and written in one batch, replies read
 * by a parser that trusts nothing the server says (memcache_reader.h).
 *
 * The connection itself (name lookup, connect, the timer that bounds
 * whatever is in flight, writes, waking the waiter once, reference counting
 * and close) is the clients' common one, src/clients/conn.c; this file is
 * the protocol on it. Also here: the zlib calls of the Lua serializers. */
#include "baseplate/memcache.h"
#include "clients/conn.h"
#include "clients/memcache_reader.h"
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* --- the reply parser ---------------------------------------------------------- */

void bp__mc_reader_reset(bp__mc_reader_t *r, const bp__mc_expect_t *expect, int nexpect,
                         size_t max_item) {
  r->expect = expect;
  r->nexpect = nexpect;
  r->ei = 0;
  r->skipped = 0;
  r->nreplies = 0;
  r->nitems = 0;
  r->in_reply = 0;
  r->pos = 0;
  r->need = 0;
  r->max_item = max_item;
  r->err[0] = '\0';
}

void bp__mc_reader_free(bp__mc_reader_t *r) {
  free(r->replies);
  free(r->items);
  r->replies = NULL;
  r->items = NULL;
  r->rcap = r->icap = 0;
}

/* A line's start, quoted safely for a message. */
static void quote_line(char *out, size_t outlen, const char *p, size_t n) {
  size_t o = 0, i;
  for (i = 0; i < n && o + 5 < outlen; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
  }
  if (i < n && o + 4 <= outlen) memcpy(out + o, "...", 3), o += 3;
  out[o < outlen ? o : outlen - 1] = '\0';
}

static int proto_err(bp__mc_reader_t *r, const char *what, const char *line, size_t n) {
  char q[64];
  quote_line(q, sizeof q, line, n);
  snprintf(r->err, sizeof r->err, "protocol error: %s (\"%s\") in reply %d of %d", what, q,
           r->ei + 1, r->nexpect);
  return BP_EIO;
}

/* A decimal number of 1 to 20 digits, at most `max`. */
static int parse_u64(const char *p, size_t n, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  if (n == 0 || n > 20) return 0;
  for (i = 0; i < n; i++) {
    unsigned d = (unsigned)(p[i] - '0');
    if (d > 9) return 0;
    if (v > (max - d) / 10) return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}

static int line_is(const char *p, size_t n, const char *word) {
  size_t w = strlen(word);
  return n == w && memcmp(p, word, w) == 0;
}

static int add_reply(bp__mc_reader_t *r, int kind, uint64_t number, size_t text_off,
                     size_t text_len) {
  if (r->nreplies == r->rcap) {
    int cap = r->rcap ? r->rcap * 2 : 8;
    bp__mc_reply_t *n = realloc(r->replies, (size_t)cap * sizeof *n);
    if (!n) {
      snprintf(r->err, sizeof r->err, "out of memory");
      return BP_ENOMEM;
    }
    r->replies = n;
    r->rcap = cap;
  }
  r->replies[r->nreplies].kind = kind;
  r->replies[r->nreplies].number = number;
  r->replies[r->nreplies].text_off = text_off;
  r->replies[r->nreplies].text_len = text_len;
  r->nreplies++;
  r->ei++;
  r->in_reply = 0;
  return BP_OK;
}

static int add_item(bp__mc_reader_t *r, size_t key_off, size_t key_len, size_t data_off,
                    size_t data_len, uint32_t flags, uint64_t cas) {
  bp__mc_item_t *it;
  if (r->nitems == r->icap) {
    int cap = r->icap ? r->icap * 2 : 8;
    bp__mc_item_t *m = realloc(r->items, (size_t)cap * sizeof *m);
    if (!m) {
      snprintf(r->err, sizeof r->err, "out of memory");
      return BP_ENOMEM;
    }
    r->items = m;
    r->icap = cap;
  }
  it = &r->items[r->nitems++];
  it->key_off = key_off;
  it->key_len = key_len;
  it->data_off = data_off;
  it->data_len = data_len;
  it->flags = flags;
  it->cas = cas;
  it->reply = r->nreplies;
  r->in_reply++;
  return BP_OK;
}

/* "VALUE <key> <flags> <bytes>[ <cas>]" at line[0..n), the line's end at
 * buf[eol] (its \r): BP_OK (consumed, *next after the data), BP_AGAIN. */
static int parse_value(bp__mc_reader_t *r, const char *buf, size_t len, size_t start, size_t n,
                       const bp__mc_expect_t *e, size_t *next) {
  const char *line = buf + start, *tok[5];
  size_t toklen[5], i = 6, ntok = 0, data_off, key_off;
  uint64_t flags, bytes, cas = 0;
  int rc;

  while (i <= n && ntok < 5) { /* single spaces between tokens, none at either end */
    size_t j = i;
    while (j < n && line[j] != ' ') j++;
    if (j == i) return proto_err(r, "malformed VALUE line", line, n);
    tok[ntok] = line + i;
    toklen[ntok++] = j - i;
    i = j + 1;
  }
  if (i <= n || ntok != (e->gets ? 4u : 3u))
    return proto_err(r, e->gets ? "a VALUE line without its CAS unique, or with more"
                                : "a VALUE line with too many or too few fields",
                     line, n);
  if (toklen[0] > BP_MEMCACHE_MAX_KEY) return proto_err(r, "a key longer than 250 bytes", line, n);
  for (i = 0; i < toklen[0]; i++)
    if ((unsigned char)tok[0][i] < 0x20 || tok[0][i] == 0x7f)
      return proto_err(r, "a key with a control character", line, n);
  if (!parse_u64(tok[1], toklen[1], UINT32_MAX, &flags))
    return proto_err(r, "malformed flags", line, n);
  if (!parse_u64(tok[2], toklen[2], UINT64_MAX, &bytes))
    return proto_err(r, "malformed value length", line, n);
  if (e->gets && !parse_u64(tok[3], toklen[3], UINT64_MAX, &cas))
    return proto_err(r, "malformed CAS unique", line, n);
  if (bytes > r->max_item) {
    char q[64];
    quote_line(q, sizeof q, tok[0], toklen[0]);
    snprintf(r->err, sizeof r->err,
             "the value of \"%s\" is %" PRIu64 " bytes, more than max_item_size (%zu)", q, bytes,
             r->max_item);
    return BP_ETOOBIG;
  }
  if (r->in_reply >= e->nkeys) return proto_err(r, "more values than keys asked for", line, n);
  data_off = start + n + 2;
  if (len - data_off < bytes + 2) {
    r->need = data_off + (size_t)bytes + 2;
    return BP_AGAIN;
  }
  if (buf[data_off + bytes] != '\r' || buf[data_off + bytes + 1] != '\n')
    return proto_err(r, "a value not followed by \\r\\n where its length ends", line, n);
  key_off = (size_t)(tok[0] - buf);
  rc = add_item(r, key_off, toklen[0], data_off, (size_t)bytes, (uint32_t)flags, cas);
  if (rc != BP_OK) return rc;
  *next = data_off + (size_t)bytes + 2;
  return BP_OK;
}

/* "STAT <name> <value>" at line[0..n) (the value may have spaces, or be
 * empty): a value of the stats reply. */
static int parse_stat(bp__mc_reader_t *r, const char *buf, size_t start, size_t n,
                      const bp__mc_expect_t *e) {
  const char *line = buf + start;
  size_t i = 5, name_len;
  while (i < n && line[i] != ' ') i++;
  name_len = i - 5;
  if (name_len == 0 || name_len > BP_MEMCACHE_MAX_KEY)
    return proto_err(r, "a STAT line without a name, or with one longer than 250 bytes", line, n);
  if (r->in_reply >= e->nkeys) return proto_err(r, "more statistics than max_stats", line, n);
  if (i < n) i++; /* the value after one space */
  return add_item(r, start + 5, name_len, start + i, n - i, 0, 0);
}

int bp__mc_parse(bp__mc_reader_t *r, const char *buf, size_t len) {
  while (r->ei < r->nexpect) {
    const bp__mc_expect_t *e = &r->expect[r->ei];
    size_t start, avail, scan, n, next;
    const char *line, *nl;
    int kind = 0, rc;
    uint64_t number = 0;

    if (e->kind == BP__MC_NOREPLY) { /* the server owes nothing */
      rc = add_reply(r, BP_MEMCACHE_NOREPLY, 0, 0, 0);
      if (rc != BP_OK) return rc;
      continue;
    }
    start = r->pos;
    avail = len - start;
    scan = avail < BP__MC_MAX_LINE + 2 ? avail : BP__MC_MAX_LINE + 2;
    line = buf + start;
    nl = avail ? memchr(line, '\n', scan) : NULL;
    if (!nl) {
      if (avail >= BP__MC_MAX_LINE + 2)
        return proto_err(r, "a line longer than 1024 bytes", line, 40);
      r->need = len + 1;
      return BP_AGAIN;
    }
    n = (size_t)(nl - line);
    next = start + n + 1;

    if (e->kind == BP__MC_SYNC) {
      /* What noreply commands said (a piece of a line, too, when its start
       * came while nothing was owed and was dropped), then our VERSION. */
      if (n > 8 && memcmp(line, "VERSION ", 8) == 0 && line[n - 1] == '\r') {
        r->ei++;
        r->skipped = 0;
      } else if (++r->skipped > e->nkeys) {
        return proto_err(r, "more lines than the noreply commands before could bring", line, n);
      }
      r->pos = next;
      continue;
    }
    if (n == 0 || line[n - 1] != '\r') return proto_err(r, "a line not ended by \\r\\n", line, n);
    n--;

    if (n > 6 && memcmp(line, "VALUE ", 6) == 0) {
      if (e->kind != BP__MC_RETRIEVE) return proto_err(r, "a value in reply to a command that is not a get", line, n);
      rc = parse_value(r, buf, len, start, n, e, &next);
      if (rc != BP_OK) return rc;
      r->pos = next;
      continue;
    }
    if (e->kind == BP__MC_STATS && n > 5 && memcmp(line, "STAT ", 5) == 0) {
      rc = parse_stat(r, buf, start, n, e);
      if (rc != BP_OK) return rc;
      r->pos = next;
      continue;
    }
    if (line_is(line, n, "ERROR")) {
      kind = BP_MEMCACHE_ERROR;
    } else if (n >= 12 && memcmp(line, "CLIENT_ERROR", 12) == 0 && (n == 12 || line[12] == ' ')) {
      kind = BP_MEMCACHE_CLIENT_ERROR;
    } else if (n >= 12 && memcmp(line, "SERVER_ERROR", 12) == 0 && (n == 12 || line[12] == ' ')) {
      kind = BP_MEMCACHE_SERVER_ERROR;
    }
    if (kind) {
      size_t off = n > 12 && kind != BP_MEMCACHE_ERROR ? 13 : n;
      rc = add_reply(r, kind, 0, start + off, n - off);
      if (rc != BP_OK) return rc;
      r->pos = next;
      continue;
    }
    switch (e->kind) {
    case BP__MC_RETRIEVE:
      if (line_is(line, n, "END")) kind = BP_MEMCACHE_END;
      break;
    case BP__MC_STORE:
    case BP__MC_CAS:
      if (line_is(line, n, "STORED"))
        kind = BP_MEMCACHE_STORED;
      else if (line_is(line, n, "NOT_STORED"))
        kind = BP_MEMCACHE_NOT_STORED;
      else if (e->kind == BP__MC_CAS && line_is(line, n, "EXISTS"))
        kind = BP_MEMCACHE_EXISTS;
      else if (e->kind == BP__MC_CAS && line_is(line, n, "NOT_FOUND"))
        kind = BP_MEMCACHE_NOT_FOUND;
      break;
    case BP__MC_DELETE:
      if (line_is(line, n, "DELETED"))
        kind = BP_MEMCACHE_DELETED;
      else if (line_is(line, n, "NOT_FOUND"))
        kind = BP_MEMCACHE_NOT_FOUND;
      break;
    case BP__MC_ARITH:
      if (line_is(line, n, "NOT_FOUND")) {
        kind = BP_MEMCACHE_NOT_FOUND;
      } else {
        size_t d = n;
        while (d > 0 && line[d - 1] == ' ') d--; /* old servers pad a decr's result */
        if (parse_u64(line, d, UINT64_MAX, &number)) kind = BP_MEMCACHE_NUMBER;
      }
      break;
    case BP__MC_TOUCH:
      if (line_is(line, n, "TOUCHED"))
        kind = BP_MEMCACHE_TOUCHED;
      else if (line_is(line, n, "NOT_FOUND"))
        kind = BP_MEMCACHE_NOT_FOUND;
      break;
    case BP__MC_FLUSH:
      if (line_is(line, n, "OK")) kind = BP_MEMCACHE_OK;
      break;
    case BP__MC_STATS:
      if (line_is(line, n, "END"))
        kind = BP_MEMCACHE_END;
      else if (r->in_reply == 0 && (line_is(line, n, "RESET") || line_is(line, n, "OK")))
        kind = BP_MEMCACHE_OK;
      break;
    case BP__MC_VERSION:
      if (n > 8 && memcmp(line, "VERSION ", 8) == 0) {
        rc = add_reply(r, BP_MEMCACHE_VERSION, 0, start + 8, n - 8);
        if (rc != BP_OK) return rc;
        r->pos = next;
        continue;
      }
      break;
    }
    if (!kind) return proto_err(r, "a reply that does not answer the command", line, n);
    rc = add_reply(r, kind, number, 0, 0);
    if (rc != BP_OK) return rc;
    r->pos = next;
  }
  return BP_OK;
}

/* --- the connection ------------------------------------------------------------ */

struct bp_memcache_conn_s {
  bp__cconn_t base; /* first */
  bp__mc_reader_t reader;
  bp__mc_expect_t *expect; /* the batch being queued, then sent */
  int nexpect, ecap;
  int nwant; /* commands of the batch that have a reply to wait for */
  int sent;  /* the batch was sent: the next command begins another */
  int noreply; /* commands queued now go with noreply */
  unsigned stray;   /* noreply commands sent since the last sync: the lines the server may still send */
  unsigned q_stray; /* the same, with the batch being queued */
  size_t stray_bytes; /* how many bytes nobody waits for may still be dropped */
  char *out; /* the batch's bytes */
  size_t outlen, outcap;
  char *in; /* the replies of the send */
  size_t inlen, incap;
  size_t max_item;
};

/* Buffers kept from one send to the next up to these sizes. */
#define OUT_KEEP (16 * 1024)
#define IN_KEEP (64 * 1024)

#define set_err(c, ...) bp__cconn_set_err(&(c)->base, __VA_ARGS__)
#define break_conn(c) bp__cconn_break(&(c)->base)
#define finish(c, status) bp__cconn_finish(&(c)->base, status)

static void conn_free(bp__cconn_t *base) {
  bp_memcache_conn_t *c = (bp_memcache_conn_t *)base;
  bp__mc_reader_free(&c->reader);
  free(c->expect);
  free(c->out);
  free(c->in);
  free(c);
}

/* Grow the reply buffer to hold at least `want` bytes. */
static int reserve_in(bp_memcache_conn_t *c, size_t want) {
  size_t cap;
  char *n;
  if (want <= c->incap) return BP_OK;
  cap = c->incap ? c->incap : 16 * 1024;
  while (cap < want) cap *= 2;
  if (!(n = realloc(c->in, cap))) return BP_ENOMEM;
  c->in = n;
  c->incap = cap;
  return BP_OK;
}

static char idle_buf[1024]; /* what comes while no reply is owed is dropped or an error */

/* Whether the send in flight still waits for replies. */
static int owed(const bp_memcache_conn_t *c) {
  return c->base.busy && c->reader.ei < c->reader.nexpect;
}

static void on_alloc(bp__cconn_t *base, uv_buf_t *buf) {
  bp_memcache_conn_t *c = (bp_memcache_conn_t *)base;
  size_t want;
  if (!owed(c)) {
    /* The last send's values stay where they are until the next send. */
    *buf = uv_buf_init(idle_buf, sizeof idle_buf);
    return;
  }
  want = c->inlen + 16 * 1024;
  if (c->reader.need > want) want = c->reader.need;
  if (reserve_in(c, want) != BP_OK) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(c->in + c->inlen, (unsigned)(c->incap - c->inlen > UINT32_MAX ? UINT32_MAX : c->incap - c->inlen));
}

/* n bytes nobody waits for: what noreply commands may have said (dropped;
 * the next command that waits skips the rest of their lines), or the
 * stream is out of step. */
static int drop_stray(bp_memcache_conn_t *c, size_t n) {
  if (c->stray == 0 || n > c->stray_bytes) return 0;
  c->stray_bytes -= n;
  return 1;
}

static void on_read(bp__cconn_t *base, ssize_t nread, const uv_buf_t *buf) {
  bp_memcache_conn_t *c = (bp_memcache_conn_t *)base;
  int rc;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      set_err(c, "%s: Server closed the connection", c->base.where);
    else if (nread == UV_ENOBUFS)
      set_err(c, "%s: out of memory", c->base.where);
    else
      set_err(c, "%s: %s", c->base.where, uv_strerror((int)nread));
    break_conn(c);
    finish(c, nread == UV_ENOBUFS ? BP_ENOMEM : BP_EIO);
    return;
  }
  if (!owed(c)) {
    if (drop_stray(c, (size_t)nread)) return;
    set_err(c, "%s: unexpected data from the server", c->base.where);
    break_conn(c);
    finish(c, BP_EIO); /* (a send of noreply commands whose write goes on) */
    return;
  }
  c->inlen += (size_t)nread;
  rc = bp__mc_parse(&c->reader, c->in, c->inlen);
  if (rc == BP_AGAIN) return;
  if (rc == BP_OK) {
    if (c->reader.pos != c->inlen && !drop_stray(c, c->inlen - c->reader.pos)) {
      /* More than the server owed: the stream is out of step. The replies
       * stand; the connection goes. */
      set_err(c, "%s: unexpected data from the server after the last reply", c->base.where);
      break_conn(c);
    }
    finish(c, BP_OK);
    return;
  }
  set_err(c, "%s: %s", c->base.where, c->reader.err);
  break_conn(c);
  finish(c, rc);
}

static void on_timeout(bp__cconn_t *base) {
  bp_memcache_conn_t *c = (bp_memcache_conn_t *)base;
  if (c->nwant == 0)
    set_err(c, "%s: timed out after %gs writing %d commands", c->base.where, c->base.timeout,
            c->reader.nreplies);
  else
    set_err(c, "%s: timed out after %gs waiting for %d of %d replies", c->base.where, c->base.timeout,
            c->reader.nexpect - c->reader.ei, c->reader.nexpect);
}

static const bp__cconn_proto_t memcache_proto = {
    .on_connect = NULL,
    .on_alloc = on_alloc,
    .on_read = on_read,
    .on_timeout = on_timeout,
    .on_free = conn_free,
};

int bp_memcache_connect(const char *host, int port, const char *path, double connect_timeout,
                        size_t max_item_size, int waiter, bp_memcache_conn_t **out, char *err,
                        size_t errlen) {
  bp_memcache_conn_t *c;
  size_t hl = 0;

  *out = NULL;
  bp__ignore_sigpipe();
  if ((!host || !*host) == (!path || !*path) || !(connect_timeout >= 0)) {
    snprintf(err, errlen, "memcache: a host or a UNIX socket path is needed (one), and a timeout >= 0");
    return BP_EINVAL;
  }
  if (path && *path) {
    if (strlen(path) >= sizeof ((bp__cconn_t *)0)->path) {
      snprintf(err, errlen, "memcache: UNIX socket path too long: %s", path);
      return BP_EINVAL;
    }
  } else {
    if (port < 1 || port > 65535) {
      snprintf(err, errlen, "memcache: invalid port %d", port);
      return BP_EINVAL;
    }
    if (bp__cconn_parse_host("memcache", &host, &hl, err, errlen) != BP_OK) return BP_EINVAL;
  }
  if (!(c = calloc(1, sizeof *c))) {
    snprintf(err, errlen, "memcache: out of memory");
    return BP_ENOMEM;
  }
  c->max_item = max_item_size ? max_item_size : BP_MEMCACHE_DEFAULT_MAX_ITEM;
  if (path && *path) {
    bp__cconn_init(&c->base, &memcache_proto, NULL, 0, 0, path);
    snprintf(c->base.where, sizeof c->base.where, "%s", path);
  } else {
    bp__cconn_init(&c->base, &memcache_proto, host, hl, port, NULL);
    snprintf(c->base.where, sizeof c->base.where, "%s:%d", c->base.host, port);
  }
  *out = c;
  bp__cconn_connect(&c->base, connect_timeout, waiter);
  return BP_AGAIN;
}

/* --- queueing commands --------------------------------------------------------- */

int bp_memcache_check_key(const char *key, size_t len, char *err, size_t errlen) {
  size_t i;
  if (!key || len == 0) {
    snprintf(err, errlen, "key is empty");
    return BP_EINVAL;
  }
  if (len > BP_MEMCACHE_MAX_KEY) {
    snprintf(err, errlen, "key is %zu bytes, longer than %d", len, BP_MEMCACHE_MAX_KEY);
    return BP_EINVAL;
  }
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)key[i];
    if (ch <= 0x20 || ch == 0x7f) {
      snprintf(err, errlen, "key has a space or a control character at byte %zu", i + 1);
      return BP_EINVAL;
    }
  }
  return BP_OK;
}

/* Whether the connection can take a command now (err says why not). */
static int can_queue(bp_memcache_conn_t *c) {
  if (!c) return 0;
  if (c->base.busy) {
    set_err(c, "busy: an operation is in flight");
    return 0;
  }
  if (c->base.state != BP__CCONN_READY || c->base.user_closed) {
    if (!c->base.err[0]) set_err(c, "the connection is %s", c->base.user_closed ? "closed" : "not ready");
    return 0;
  }
  return 1;
}

static int grow_expect(bp_memcache_conn_t *c, int more) {
  if (c->nexpect + more > c->ecap) {
    int cap = c->ecap ? c->ecap * 2 : 8;
    bp__mc_expect_t *n;
    while (cap < c->nexpect + more) cap *= 2;
    if (!(n = realloc(c->expect, (size_t)cap * sizeof *n))) return BP_ENOMEM;
    c->expect = n;
    c->ecap = cap;
  }
  return BP_OK;
}

static void expect(bp_memcache_conn_t *c, int kind, int gets, unsigned nkeys) {
  bp__mc_expect_t *e = &c->expect[c->nexpect++];
  e->kind = (unsigned char)kind;
  e->gets = (unsigned char)gets;
  e->nkeys = nkeys;
  if (kind != BP__MC_NOREPLY) c->nwant++;
}

static const char sync_cmd[] = "version\r\n";

/* Room for a command of at most `len` bytes (a new batch when the last was
 * sent); a command that waits for its reply after noreply commands is
 * preceded by a sync (memcache.h: bp_memcache_set_noreply). The caller
 * checked the connection (can_queue) and the arguments. */
static int begin_cmd(bp_memcache_conn_t *c, size_t len, int wants_reply) {
  size_t need;
  int sync;
  if (c->sent || c->nexpect == 0) {
    c->sent = 0;
    c->outlen = 0;
    c->nexpect = 0;
    c->nwant = 0;
    c->q_stray = c->stray;
  }
  sync = wants_reply && c->q_stray > 0;
  need = len + (sync ? sizeof sync_cmd - 1 : 0);
  if (grow_expect(c, 2) != BP_OK) goto nomem;
  if (need > c->outcap - c->outlen) {
    size_t cap = c->outcap ? c->outcap : 1024;
    char *n;
    while (cap - c->outlen < need) cap *= 2;
    if (!(n = realloc(c->out, cap))) goto nomem;
    c->out = n;
    c->outcap = cap;
  }
  if (sync) {
    memcpy(c->out + c->outlen, sync_cmd, sizeof sync_cmd - 1);
    c->outlen += sizeof sync_cmd - 1;
    /* every line a noreply command could say, and a piece of one dropped */
    expect(c, BP__MC_SYNC, 0, c->q_stray + 1);
    c->q_stray = 0;
  }
  return BP_OK;
nomem:
  set_err(c, "out of memory");
  return BP_ENOMEM;
}

static int key_ok(bp_memcache_conn_t *c, const char *key, size_t len) {
  char why[96];
  if (bp_memcache_check_key(key, len, why, sizeof why) == BP_OK) return 1;
  set_err(c, "%s", why);
  return 0;
}

/* The command just queued went with noreply, or waits for `kind`. */
static void expect_reply(bp_memcache_conn_t *c, int kind, int noreply) {
  if (noreply) {
    expect(c, BP__MC_NOREPLY, 0, 0);
    if (c->q_stray < 1u << 30) c->q_stray++;
  } else {
    expect(c, kind, 0, 0);
  }
}

/* get, gets, gat, gats: "<verb>[ <exptime>] <key>*". */
static int do_retrieve(bp_memcache_conn_t *c, const char *verb, int gets, const char *exptime,
                       int nkeys, const char *const *keys, const size_t *key_lens) {
  size_t vlen = strlen(verb), elen = exptime ? strlen(exptime) : 0, len, i;
  char *p;
  int rc;
  if (!can_queue(c)) return BP_EINVAL;
  if (nkeys < 1 || !keys || !key_lens) {
    set_err(c, "a %s needs at least one key", verb);
    return BP_EINVAL;
  }
  len = vlen + (elen ? 1 + elen : 0) + 2;
  for (i = 0; i < (size_t)nkeys; i++) {
    if (!key_ok(c, keys[i], key_lens[i])) return BP_EINVAL;
    len += 1 + key_lens[i];
  }
  if ((rc = begin_cmd(c, len, 1)) != BP_OK) return rc;
  p = c->out + c->outlen;
  memcpy(p, verb, vlen);
  p += vlen;
  if (elen) {
    *p++ = ' ';
    memcpy(p, exptime, elen);
    p += elen;
  }
  for (i = 0; i < (size_t)nkeys; i++) {
    *p++ = ' ';
    memcpy(p, keys[i], key_lens[i]);
    p += key_lens[i];
  }
  *p++ = '\r';
  *p++ = '\n';
  c->outlen = (size_t)(p - c->out);
  expect(c, BP__MC_RETRIEVE, gets, (unsigned)nkeys);
  return BP_OK;
}

static int do_store(bp_memcache_conn_t *c, int command, const char *key, size_t key_len,
                    uint32_t flags, long long exptime, uint64_t cas, const char *data,
                    size_t len) {
  static const char *const names[] = {NULL, "set", "add", "replace", "append", "prepend", "cas"};
  char head[BP_MEMCACHE_MAX_KEY + 128];
  const char *nr = c && c->noreply ? " noreply" : "";
  int n, rc;
  if (!can_queue(c)) return BP_EINVAL;
  if (command < BP_MEMCACHE_SET || command > BP_MEMCACHE_CAS || (!data && len)) {
    set_err(c, "invalid storage command %d", command);
    return BP_EINVAL;
  }
  if (!key_ok(c, key, key_len)) return BP_EINVAL;
  if (len > c->max_item) {
    set_err(c, "a value of %zu bytes is larger than max_item_size (%zu)", len, c->max_item);
    return BP_ETOOBIG;
  }
  if (command == BP_MEMCACHE_CAS)
    n = snprintf(head, sizeof head, "cas %.*s %" PRIu32 " %lld %zu %" PRIu64 "%s\r\n", (int)key_len,
                 key, flags, exptime, len, cas, nr);
  else
    n = snprintf(head, sizeof head, "%s %.*s %" PRIu32 " %lld %zu%s\r\n", names[command],
                 (int)key_len, key, flags, exptime, len, nr);
  if ((rc = begin_cmd(c, (size_t)n + len + 2, !c->noreply)) != BP_OK) return rc;
  memcpy(c->out + c->outlen, head, (size_t)n);
  if (len) memcpy(c->out + c->outlen + n, data, len);
  memcpy(c->out + c->outlen + n + len, "\r\n", 2);
  c->outlen += (size_t)n + len + 2;
  expect_reply(c, command == BP_MEMCACHE_CAS ? BP__MC_CAS : BP__MC_STORE, c->noreply);
  return BP_OK;
}

/* A one-line command: "<verb>[ <key>]<rest>[ noreply]". */
static int simple(bp_memcache_conn_t *c, int kind, const char *verb, const char *key,
                  size_t key_len, const char *rest, int noreply) {
  char line[BP_MEMCACHE_MAX_KEY + 96];
  int n, rc;
  if (!can_queue(c)) return BP_EINVAL;
  if (key && !key_ok(c, key, key_len)) return BP_EINVAL;
  if (key)
    n = snprintf(line, sizeof line, "%s %.*s%s%s\r\n", verb, (int)key_len, key, rest,
                 noreply ? " noreply" : "");
  else
    n = snprintf(line, sizeof line, "%s%s%s\r\n", verb, rest, noreply ? " noreply" : "");
  if ((rc = begin_cmd(c, (size_t)n, !noreply)) != BP_OK) return rc;
  memcpy(c->out + c->outlen, line, (size_t)n);
  c->outlen += (size_t)n;
  expect_reply(c, kind, noreply);
  return BP_OK;
}

static int do_delete(bp_memcache_conn_t *c, const char *key, size_t key_len) {
  if (c && !key) return key_ok(c, NULL, 0), BP_EINVAL;
  return simple(c, BP__MC_DELETE, "delete", key, key_len, "", c && c->noreply);
}

static int do_incr(bp_memcache_conn_t *c, int decr, const char *key, size_t key_len,
                   uint64_t delta) {
  char rest[32];
  if (c && !key) return key_ok(c, NULL, 0), BP_EINVAL;
  snprintf(rest, sizeof rest, " %" PRIu64, delta);
  return simple(c, BP__MC_ARITH, decr ? "decr" : "incr", key, key_len, rest, c && c->noreply);
}

static int do_touch(bp_memcache_conn_t *c, const char *key, size_t key_len, long long exptime) {
  char rest[32];
  if (c && !key) return key_ok(c, NULL, 0), BP_EINVAL;
  snprintf(rest, sizeof rest, " %lld", exptime);
  return simple(c, BP__MC_TOUCH, "touch", key, key_len, rest, c && c->noreply);
}

static int do_flush_all(bp_memcache_conn_t *c, long long delay) {
  char rest[32];
  if (delay < 0) {
    if (c) set_err(c, "a negative delay");
    return BP_EINVAL;
  }
  if (delay > 0)
    snprintf(rest, sizeof rest, " %lld", delay);
  else
    rest[0] = '\0';
  return simple(c, BP__MC_FLUSH, "flush_all", NULL, 0, rest, c && c->noreply);
}

static int do_stats(bp_memcache_conn_t *c, const char *args, size_t len, unsigned max_stats) {
  char rest[96];
  size_t i;
  int rc;
  if (!c) return BP_EINVAL;
  if ((!args && len) || len > sizeof rest - 2) {
    set_err(c, "stats: arguments of %zu bytes, more than %zu", len, sizeof rest - 2);
    return BP_EINVAL;
  }
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)args[i];
    if (ch < 0x20 || ch >= 0x7f || (ch == ' ' && (i == 0 || i + 1 == len || args[i - 1] == ' '))) {
      set_err(c, "stats: arguments are words of printable ASCII, one space apart");
      return BP_EINVAL;
    }
  }
  if (len) {
    rest[0] = ' ';
    memcpy(rest + 1, args, len);
  }
  rest[len ? len + 1 : 0] = '\0';
  if ((rc = simple(c, BP__MC_STATS, "stats", NULL, 0, rest, 0)) != BP_OK) return rc;
  c->expect[c->nexpect - 1].nkeys = max_stats ? max_stats : 65536;
  return BP_OK;
}

static int do_memlimit(bp_memcache_conn_t *c, long long megabytes) {
  char rest[32];
  if (megabytes < 0) {
    if (c) set_err(c, "a negative memory limit");
    return BP_EINVAL;
  }
  snprintf(rest, sizeof rest, " %lld", megabytes);
  return simple(c, BP__MC_FLUSH, "cache_memlimit", NULL, 0, rest, 0);
}

/* A refused command drops the batch queued so far (never half a batch
 * sent later). */
static int queued(bp_memcache_conn_t *c, int rc) {
  if (rc != BP_OK && c && !c->base.busy) {
    c->outlen = 0;
    c->nexpect = 0;
    c->nwant = 0;
    c->sent = 0;
  }
  return rc;
}

int bp_memcache_get(bp_memcache_conn_t *c, int gets, int nkeys, const char *const *keys,
                    const size_t *key_lens) {
  return queued(c, do_retrieve(c, gets ? "gets" : "get", gets, NULL, nkeys, keys, key_lens));
}

int bp_memcache_gat(bp_memcache_conn_t *c, int gats, long long exptime, int nkeys,
                    const char *const *keys, const size_t *key_lens) {
  char e[24];
  snprintf(e, sizeof e, "%lld", exptime);
  return queued(c, do_retrieve(c, gats ? "gats" : "gat", gats, e, nkeys, keys, key_lens));
}

void bp_memcache_set_noreply(bp_memcache_conn_t *c, int noreply) {
  if (c) c->noreply = noreply != 0;
}

int bp_memcache_store(bp_memcache_conn_t *c, int command, const char *key, size_t key_len,
                      uint32_t flags, long long exptime, uint64_t cas, const char *data,
                      size_t len) {
  return queued(c, do_store(c, command, key, key_len, flags, exptime, cas, data, len));
}

int bp_memcache_delete(bp_memcache_conn_t *c, const char *key, size_t key_len) {
  return queued(c, do_delete(c, key, key_len));
}

int bp_memcache_incr(bp_memcache_conn_t *c, int decr, const char *key, size_t key_len,
                     uint64_t delta) {
  return queued(c, do_incr(c, decr, key, key_len, delta));
}

int bp_memcache_touch(bp_memcache_conn_t *c, const char *key, size_t key_len, long long exptime) {
  return queued(c, do_touch(c, key, key_len, exptime));
}

int bp_memcache_flush_all(bp_memcache_conn_t *c, long long delay) {
  return queued(c, do_flush_all(c, delay));
}

int bp_memcache_stats(bp_memcache_conn_t *c, const char *args, size_t len, unsigned max_stats) {
  return queued(c, do_stats(c, args, len, max_stats));
}

int bp_memcache_version(bp_memcache_conn_t *c) {
  return queued(c, simple(c, BP__MC_VERSION, "version", NULL, 0, "", 0));
}

int bp_memcache_cache_memlimit(bp_memcache_conn_t *c, long long megabytes) {
  return queued(c, do_memlimit(c, megabytes));
}

/* --- sending ------------------------------------------------------------------- */

/* What the last send's replies took is given back when large: an idle
 * pooled connection keeps small buffers only. */
static void trim(bp_memcache_conn_t *c) {
  bp__mc_reader_t *r = &c->reader;
  if (c->incap > IN_KEEP) {
    free(c->in);
    c->in = NULL;
    c->incap = 0;
  }
  if (r->icap > 256) {
    free(r->items);
    r->items = NULL;
    r->icap = 0;
  }
  if (r->rcap > 256) {
    free(r->replies);
    r->replies = NULL;
    r->rcap = 0;
  }
}

int bp_memcache_send(bp_memcache_conn_t *c, double timeout, int waiter) {
  int rc, big;
  if (!c || c->base.busy || c->base.state != BP__CCONN_READY || c->base.user_closed) {
    if (c && c->base.busy) set_err(c, "busy: an operation is in flight");
    return BP_EINVAL;
  }
  if (c->sent || c->nexpect == 0 || !(timeout >= 0)) {
    set_err(c, c->sent || c->nexpect == 0 ? "nothing to send" : "invalid timeout");
    return BP_EINVAL;
  }
  c->sent = 1;
  c->noreply = 0;
  trim(c);
  c->inlen = 0;
  bp__mc_reader_reset(&c->reader, c->expect, c->nexpect, c->max_item);
  c->stray = c->q_stray;
  c->stray_bytes = (size_t)c->stray * (BP__MC_MAX_LINE + 2);
  c->base.err[0] = '\0';
  bp__cconn_begin(&c->base, timeout, waiter);
  /* noreply commands alone: done once written, their replies known now */
  c->base.done_when_written = c->nwant == 0;
  if (c->nwant == 0) bp__mc_parse(&c->reader, "", 0);
  /* A large batch's buffer goes to the write, which frees it once written. */
  big = c->outlen > OUT_KEEP;
  rc = bp__cconn_write(&c->base, c->out, c->outlen, big);
  if (big) {
    c->out = NULL;
    c->outcap = c->outlen = 0;
  }
  if (rc < 0) {
    if (c->base.state != BP__CCONN_BROKEN) {
      set_err(c, "%s: %s", c->base.where, uv_strerror(rc));
      break_conn(c);
    }
    bp__cconn_finish_later(&c->base, BP_EIO);
  }
  return BP_AGAIN;
}

/* --- replies and state --------------------------------------------------------- */

int bp_memcache_reply_count(const bp_memcache_conn_t *c) {
  return c && c->sent ? c->reader.nreplies : 0;
}

int bp_memcache_reply(const bp_memcache_conn_t *c, int i, uint64_t *number, const char **text,
                      size_t *len) {
  const bp__mc_reply_t *r;
  if (number) *number = 0;
  if (text) *text = NULL;
  if (len) *len = 0;
  if (!c || i < 0 || i >= bp_memcache_reply_count(c)) return 0;
  r = &c->reader.replies[i];
  if (number) *number = r->number;
  if (r->kind == BP_MEMCACHE_CLIENT_ERROR || r->kind == BP_MEMCACHE_SERVER_ERROR ||
      r->kind == BP_MEMCACHE_VERSION) {
    if (text) *text = c->in + r->text_off;
    if (len) *len = r->text_len;
  }
  return r->kind;
}

int bp_memcache_value_count(const bp_memcache_conn_t *c) {
  return c && c->sent ? c->reader.nitems : 0;
}

int bp_memcache_value(const bp_memcache_conn_t *c, int i, bp_memcache_value_t *out) {
  const bp__mc_item_t *it;
  if (!c || !out || i < 0 || i >= bp_memcache_value_count(c)) return BP_EINVAL;
  it = &c->reader.items[i];
  out->key = c->in + it->key_off;
  out->key_len = it->key_len;
  out->data = c->in + it->data_off;
  out->data_len = it->data_len;
  out->flags = it->flags;
  out->cas = it->cas;
  out->reply = it->reply;
  return BP_OK;
}

const char *bp_memcache_error(const bp_memcache_conn_t *c) { return c ? c->base.err : "closed"; }

int bp_memcache_broken(const bp_memcache_conn_t *c) { return !c || bp__cconn_broken(&c->base); }

int bp_memcache_busy(const bp_memcache_conn_t *c) { return c ? c->base.busy : 0; }

size_t bp_memcache_buffered(const bp_memcache_conn_t *c) {
  if (!c) return 0;
  return c->outcap + c->incap + (size_t)c->ecap * sizeof *c->expect +
         (size_t)c->reader.rcap * sizeof *c->reader.replies +
         (size_t)c->reader.icap * sizeof *c->reader.items;
}

void bp_memcache_close(bp_memcache_conn_t *c) {
  if (c) bp__cconn_close(&c->base);
}

/* --- zlib for the serializers -------------------------------------------------- */

static char *zbuf; /* one loop thread: the result of the last call */
static size_t zcap;

static int zreserve(size_t want) {
  char *n;
  if (want <= zcap) return BP_OK;
  if (!(n = realloc(zbuf, want))) return BP_ENOMEM;
  zbuf = n;
  zcap = want;
  return BP_OK;
}

int bp_memcache_zlib_compress(const char *in, size_t len, int level, const char **out,
                              size_t *out_len, char *err, size_t errlen) {
  uLongf n;
  int zrc;
  if (level < 1 || level > 9 || (!in && len) || len > (size_t)UINT32_MAX) {
    snprintf(err, errlen, "zlib: invalid level %d or input", level);
    return BP_EINVAL;
  }
  n = compressBound((uLong)len);
  if (zreserve(n) != BP_OK) {
    snprintf(err, errlen, "zlib: out of memory");
    return BP_ENOMEM;
  }
  zrc = compress2((Bytef *)zbuf, &n, (const Bytef *)(in ? in : ""), (uLong)len, level);
  if (zrc != Z_OK) {
    snprintf(err, errlen, "zlib: compress failed (%d)", zrc);
    return zrc == Z_MEM_ERROR ? BP_ENOMEM : BP_EINVAL;
  }
  *out = zbuf;
  *out_len = n;
  return BP_OK;
}

int bp_memcache_zlib_inflate(const char *in, size_t len, size_t max_out, const char **out,
                             size_t *out_len, char *err, size_t errlen) {
  z_stream z;
  size_t cap = len * 4 + 64, have = 0;
  int zrc;
  if ((!in && len) || len > (size_t)UINT32_MAX) {
    snprintf(err, errlen, "zlib: invalid input");
    return BP_EINVAL;
  }
  if (cap > max_out + 1) cap = max_out + 1;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK || zreserve(cap) != BP_OK) {
    inflateEnd(&z);
    snprintf(err, errlen, "zlib: out of memory");
    return BP_ENOMEM;
  }
  z.next_in = (Bytef *)(in ? in : "");
  z.avail_in = (uInt)len;
  for (;;) {
    z.next_out = (Bytef *)zbuf + have;
    z.avail_out = (uInt)(zcap - have > UINT32_MAX ? UINT32_MAX : zcap - have);
    zrc = inflate(&z, Z_NO_FLUSH);
    have = z.total_out;
    if (zrc == Z_STREAM_END) break;
    if (have > max_out) break;
    if (zrc == Z_BUF_ERROR && z.avail_in == 0 && z.avail_out > 0) {
      zrc = Z_DATA_ERROR; /* the stream ends early */
      z.msg = (char *)"truncated stream";
    }
    if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
      snprintf(err, errlen, "zlib: not a zlib stream: %s", z.msg ? z.msg : "invalid data");
      inflateEnd(&z);
      return zrc == Z_MEM_ERROR ? BP_ENOMEM : BP_EINVAL;
    }
    if (z.avail_out == 0) {
      size_t want = zcap * 2 > max_out + 1 ? max_out + 1 : zcap * 2;
      if (want <= zcap) want = zcap + 1;
      if (zreserve(want) != BP_OK) {
        inflateEnd(&z);
        snprintf(err, errlen, "zlib: out of memory");
        return BP_ENOMEM;
      }
    }
  }
  inflateEnd(&z);
  if (have > max_out) {
    snprintf(err, errlen, "zlib: the value inflates beyond %zu bytes", max_out);
    return BP_ETOOBIG;
  }
  if (z.avail_in != 0) {
    snprintf(err, errlen, "zlib: not a zlib stream: data after its end");
    return BP_EINVAL;
  }
  *out = zbuf;
  *out_len = have;
  return BP_OK;
}
