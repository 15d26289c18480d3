/* The load generator of bench/thrift, and a trivial C server to show its
 * ceiling. Standalone (libc only): the script compiles it with cc -O2.
 *
 *   thrift-load HOST:PORT CONNECTIONS SECONDS
 *   thrift-load --serve PORTFILE
 *
 * Load: CONNECTIONS connections, each sending one THeader call (binary
 * protocol) of `i64 add(1: i64 a, 2: i64 b)` and reading its reply before
 * sending the next, for SECONDS. The call is encoded once per connection;
 * each call patches in its sequence ID (header and message) and b, so that
 * every reply can be checked: a THeader frame, binary protocol, no
 * transforms, a REPLY to `add` with the call's sequence ID, field 0 an i64
 * equal to a + b, nothing after the struct. A reply that is anything else
 * is described on stderr and the exit status is 1. Prints one line:
 *
 *   calls calls_per_second p50_ms p99_ms cpu_percent
 *
 * cpu_percent is this process's user + system time over the wall time of
 * the measurement: below 100 it was waiting for the server.
 *
 * Serve: listens on 127.0.0.1 (a free port, written to PORTFILE) and
 * answers those calls with the sum, one epoll loop, no library: the fastest
 * server there can be for this load generator. Runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 65536

/* The call: frame length, THeader magic, flags, seqid, header length (one
 * 32-bit word: protocol 0 = binary, no transforms, padding), then the
 * binary-protocol message. */
#define CALL_LEN 56
#define OFF_HDR_SEQID 8
#define OFF_MSG_SEQID 29
#define OFF_A 36
#define OFF_B 47

typedef struct {
  int fd;
  int64_t a, b;
  int32_t seqid;
  uint64_t sent_ns;
  unsigned char call[CALL_LEN];
  size_t out_pos;                /* bytes of call written */
  unsigned char in[MAX_FRAME];
  size_t in_len;
} conn_t;

static void put32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static void put64(unsigned char *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v);
}
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get64(const unsigned char *p) {
  return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static void encode_call(unsigned char *p) {
  static const unsigned char tmpl[CALL_LEN] = {
    0, 0, 0, 52,                 /* frame length */
    0x0f, 0xff, 0, 0,            /* magic, flags */
    0, 0, 0, 0,                  /* seqid */
    0, 1,                        /* header: one word */
    0, 0, 0, 0,                  /* binary, no transforms, padding */
    0x80, 0x01, 0x00, 0x01,      /* version 1, CALL */
    0, 0, 0, 3, 'a', 'd', 'd',   /* name */
    0, 0, 0, 0,                  /* seqid */
    10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, /* 1: i64 a */
    10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, /* 2: i64 b */
    0                            /* stop */
  };
  memcpy(p, tmpl, CALL_LEN);
}

/* Reads one varint of a THeader header; -1 if it runs past end. */
static int64_t varint(const unsigned char **p, const unsigned char *end) {
  uint64_t v = 0;
  int shift = 0;
  while (*p < end && shift < 64) {
    unsigned char c = *(*p)++;
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return (int64_t)v;
    shift += 7;
  }
  return -1;
}

/* The payload of a THeader frame (len bytes after the length field):
 * checks the magic, binary protocol and no transforms. NULL and *why on
 * anything else. */
static const unsigned char *theader_payload(const unsigned char *f, size_t len, int32_t *seqid,
                                            size_t *plen, const char **why) {
  const unsigned char *p, *hend, *end = f + len;
  size_t hwords;
  if (len < 10 || f[0] != 0x0f || f[1] != 0xff) { *why = "not a THeader frame"; return NULL; }
  *seqid = (int32_t)get32(f + 4);
  hwords = (size_t)f[8] << 8 | f[9];
  hend = f + 10 + hwords * 4;
  if (hend > end) { *why = "header longer than the frame"; return NULL; }
  p = f + 10;
  if (varint(&p, hend) != 0) { *why = "protocol is not binary"; return NULL; }
  if (varint(&p, hend) != 0) { *why = "transforms"; return NULL; }
  *plen = (size_t)(end - hend);
  return hend;
}

/* Checks a reply frame (after the length field) to connection c's call. */
static const char *check_reply(const conn_t *c, const unsigned char *f, size_t len) {
  const char *why = NULL;
  const unsigned char *p;
  size_t n;
  int32_t hseq;
  if (!(p = theader_payload(f, len, &hseq, &n, &why))) return why;
  if (hseq != c->seqid) return "THeader sequence ID is not the call's";
  if (n >= 4 && get32(p) == 0x80010003u) return "an EXCEPTION message, not a REPLY";
  if (n != 27) return "reply is not 27 bytes (a REPLY to add carrying one i64)";
  if (get32(p) != 0x80010002u) return "not a REPLY message (binary, strict)";
  if (get32(p + 4) != 3 || memcmp(p + 8, "add", 3) != 0) return "method name is not add";
  if ((int32_t)get32(p + 11) != c->seqid) return "message sequence ID is not the call's";
  if (p[15] != 10 || p[16] != 0 || p[17] != 0) return "field 0 is not an i64 (success)";
  if ((int64_t)get64(p + 18) != c->a + c->b) return "wrong result";
  if (p[26] != 0) return "no STOP after the result";
  return NULL;
}

static void hexdump(const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n && i < 128; i++) fprintf(stderr, "%02x", p[i]);
  fprintf(stderr, "%s\n", n > 128 ? "..." : "");
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Sends what is left of c's call; -1 on a broken connection. */
static int send_rest(conn_t *c) {
  while (c->out_pos < CALL_LEN) {
    ssize_t n = send(c->fd, c->call + c->out_pos, CALL_LEN - c->out_pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) return -1;
    c->out_pos += (size_t)n;
  }
  return 0;
}

static int start_call(conn_t *c) {
  c->seqid++;
  c->b++;
  put32(c->call + OFF_HDR_SEQID, (uint32_t)c->seqid);
  put32(c->call + OFF_MSG_SEQID, (uint32_t)c->seqid);
  put64(c->call + OFF_B, (uint64_t)c->b);
  c->out_pos = 0;
  c->sent_ns = now_ns();
  return send_rest(c);
}

static int load(const char *hostport, int nconns, double seconds) {
  struct sockaddr_in addr;
  struct epoll_event ev, events[256];
  char host[64];
  const char *colon = strrchr(hostport, ':');
  conn_t *conns;
  uint32_t *lat = NULL;
  size_t nlat = 0, cap = 1 << 20;
  uint64_t start, deadline, t;
  double cpu0, wall;
  long errors = 0;
  int ep, i, one = 1;

  if (!colon || (size_t)(colon - hostport) >= sizeof host || nconns < 1 || seconds <= 0) {
    fprintf(stderr, "usage: thrift-load HOST:PORT CONNECTIONS SECONDS\n");
    return 2;
  }
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", host); return 2; }

  conns = calloc((size_t)nconns, sizeof *conns);
  lat = malloc(cap * sizeof *lat);
  ep = epoll_create1(0);
  if (!conns || !lat || ep < 0) { perror("thrift-load"); return 1; }
  for (i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
      fprintf(stderr, "thrift-load: connect %s: %s\n", hostport, strerror(errno));
      return 1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    encode_call(c->call);
    c->a = 1000003LL * (i + 1);
    c->b = (int64_t)1 << 40;
    c->seqid = i * 1000000;
    put64(c->call + OFF_A, (uint64_t)c->a);
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }

  cpu0 = cpu_seconds();
  start = now_ns();
  deadline = start + (uint64_t)(seconds * 1e9);
  for (i = 0; i < nconns; i++) {
    if (start_call(&conns[i]) != 0) { fprintf(stderr, "thrift-load: send failed\n"); return 1; }
    if (conns[i].out_pos < CALL_LEN) {
      ev.events = EPOLLIN | EPOLLOUT;
      ev.data.ptr = &conns[i];
      epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
    }
  }
  while ((t = now_ns()) < deadline) {
    int n = epoll_wait(ep, events, 256, (int)((deadline - t) / 1000000) + 1), k;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { perror("epoll_wait"); return 1; }
    for (k = 0; k < n; k++) {
      conn_t *c = events[k].data.ptr;
      if (events[k].events & EPOLLOUT) {
        if (send_rest(c) != 0) { fprintf(stderr, "thrift-load: send failed\n"); return 1; }
        if (c->out_pos == CALL_LEN) {
          ev.events = EPOLLIN;
          ev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
      }
      if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      for (;;) {
        ssize_t got = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        size_t flen;
        const char *why;
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN) break;
        if (got <= 0) {
          fprintf(stderr, "thrift-load: the server closed a connection (%s)\n", got ? strerror(errno) : "EOF");
          return 1;
        }
        c->in_len += (size_t)got;
        if (c->in_len < 4) continue;
        flen = get32(c->in);
        if (flen > MAX_FRAME - 4) { fprintf(stderr, "thrift-load: reply frame of %zu bytes\n", flen); return 1; }
        if (c->in_len < 4 + flen) continue;
        if (c->in_len > 4 + flen) { fprintf(stderr, "thrift-load: bytes after the reply\n"); return 1; }
        t = now_ns();
        if ((why = check_reply(c, c->in + 4, flen)) != NULL) {
          if (errors++ == 0) {
            fprintf(stderr, "thrift-load: bad reply (%s): ", why);
            hexdump(c->in, c->in_len);
          }
        } else {
          if (nlat == cap) {
            cap *= 2;
            if (!(lat = realloc(lat, cap * sizeof *lat))) { perror("thrift-load"); return 1; }
          }
          lat[nlat++] = t - c->sent_ns > UINT32_MAX ? UINT32_MAX : (uint32_t)(t - c->sent_ns);
        }
        c->in_len = 0;
        if (t >= deadline) break;
        if (start_call(c) != 0) { fprintf(stderr, "thrift-load: send failed\n"); return 1; }
        if (c->out_pos < CALL_LEN) {
          ev.events = EPOLLIN | EPOLLOUT;
          ev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        break;
      }
    }
  }
  wall = (now_ns() - start) / 1e9;
  cpu0 = cpu_seconds() - cpu0;
  for (i = 0; i < nconns; i++) close(conns[i].fd);
  if (errors) {
    fprintf(stderr, "thrift-load: %ld bad replies of %zu\n", errors, nlat + (size_t)errors);
    return 1;
  }
  if (nlat == 0) { fprintf(stderr, "thrift-load: no replies\n"); return 1; }
  qsort(lat, nlat, sizeof *lat, cmp_u32);
  printf("%zu %.0f %.3f %.3f %.1f\n", nlat, nlat / wall, lat[nlat / 2] / 1e6,
         lat[(size_t)(nlat * 0.99)] / 1e6, 100 * cpu0 / wall);
  return 0;
}

/* --serve: answers the load generator's calls. */
typedef struct {
  int fd;
  unsigned char in[MAX_FRAME];
  size_t in_len;
} sconn_t;

static int answer(sconn_t *c) {
  while (c->in_len >= 4) {
    size_t flen = get32(c->in), n;
    const unsigned char *p;
    const char *why;
    unsigned char r[45];
    int32_t hseq;
    if (flen > MAX_FRAME - 4) return -1;
    if (c->in_len < 4 + flen) return 0;
    if (!(p = theader_payload(c->in + 4, flen, &hseq, &n, &why)) || n != 38 ||
        get32(p) != 0x80010001u || get32(p + 4) != 3 || memcmp(p + 8, "add", 3) != 0 ||
        p[15] != 10 || p[17] != 1 || p[26] != 10 || p[28] != 2 || p[37] != 0)
      return -1;
    memcpy(r, "\0\0\0\x29\x0f\xff\0\0", 8);
    put32(r + 8, (uint32_t)hseq);
    memcpy(r + 12, "\0\1\0\0\0\0\x80\x01\0\x02\0\0\0\x03" "add", 17);
    memcpy(r + 29, p + 11, 4);
    memcpy(r + 33, "\x0a\0\0", 3);
    put64(r + 36, get64(p + 18) + get64(p + 29));
    r[44] = 0;
    if (send(c->fd, r, sizeof r, MSG_NOSIGNAL) != (ssize_t)sizeof r) return -1;
    memmove(c->in, c->in + 4 + flen, c->in_len - 4 - flen);
    c->in_len -= 4 + flen;
  }
  return 0;
}

static int serve(const char *portfile) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  struct epoll_event ev, events[256];
  int lfd = socket(AF_INET, SOCK_STREAM, 0), ep = epoll_create1(0), one = 1;
  FILE *pf;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &len) != 0 || !(pf = fopen(portfile, "w"))) {
    perror("thrift-load --serve");
    return 1;
  }
  fprintf(pf, "%d\n", ntohs(a.sin_port));
  fclose(pf);
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1), k;
    for (k = 0; k < n; k++) {
      sconn_t *c = events[k].data.ptr;
      ssize_t got;
      if (!c) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = calloc(1, sizeof *c);
        c->fd = fd;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        continue;
      }
      got = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got > 0) c->in_len += (size_t)got;
      if (got <= 0 || answer(c) != 0) {
        close(c->fd);
        free(c);
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--serve") == 0) return serve(argv[2]);
  if (argc != 4) {
    fprintf(stderr, "usage: thrift-load HOST:PORT CONNECTIONS SECONDS | thrift-load --serve PORTFILE\n");
    return 2;
  }
  return load(argv[1], atoi(argv[2]), atof(argv[3]));
}
