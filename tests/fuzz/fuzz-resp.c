/* The Redis client's reading of replies (src/clients/redis.c: hiredis's
 * reader, then our keeping and handing out of the replies), end to end: a
 * stand-in server on a loopback port of the same loop answers the client's
 * pipeline with the input's bytes and closes. Whatever it sends, the send
 * ends (never a hang), the replies handed out are well formed, and
 * everything is freed. The first byte is the number of commands sent. */
#include <baseplate.h>

#include "runtime.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-resp: %s\n", what);
    abort();
  }
}

/* --- the stand-in server ------------------------------------------------------ */

static uv_tcp_t listener;
static int port;

typedef struct {
  uv_tcp_t tcp;
  uv_write_t write;
  char buf[256];
  int answered;
} peer_t;

static const unsigned char *answer;
static size_t answer_len;
static int peers_open;

static void peer_closed(uv_handle_t *h) {
  free(h->data);
  peers_open--;
}

static void peer_close(peer_t *p) {
  if (!uv_is_closing((uv_handle_t *)&p->tcp)) uv_close((uv_handle_t *)&p->tcp, peer_closed);
}

static void peer_written(uv_write_t *w, int status) { peer_close(w->data); }

static void peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  peer_t *p = h->data;
  *buf = uv_buf_init(p->buf, sizeof p->buf);
}

/* The first bytes of the commands: answer with the input, then close. */
static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  peer_t *p = s->data;
  if (n == 0) return;
  if (n < 0) {
    peer_close(p);
    return;
  }
  if (p->answered) return;
  p->answered = 1;
  uv_read_stop(s);
  uv_buf_t b = uv_buf_init((char *)answer, (unsigned)answer_len);
  p->write.data = p;
  if (uv_write(&p->write, s, &b, 1, peer_written) != 0) peer_close(p);
}

static void on_connection(uv_stream_t *l, int status) {
  peer_t *p;
  check(status == 0, "accept failed");
  p = calloc(1, sizeof *p);
  uv_tcp_init(bp_loop(), &p->tcp);
  p->tcp.data = p;
  peers_open++;
  check(uv_accept(l, (uv_stream_t *)&p->tcp) == 0, "accept failed");
  uv_read_start((uv_stream_t *)&p->tcp, peer_alloc, peer_read);
}

static void init(void) {
  struct sockaddr_in addr;
  signal(SIGPIPE, SIG_IGN); /* as bp_runtime_open */
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(bp_loop(), &listener);
  check(uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0) == 0, "bind failed");
  check(uv_listen((uv_stream_t *)&listener, 64, on_connection) == 0, "listen failed");
  uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
  port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_unref((uv_handle_t *)&listener); /* the loop runs while a connection is open */
}

/* --- the client --------------------------------------------------------------- */

static void check_reply(const bp_redis_reply_t *r, int depth) {
  size_t len = 12345;
  const char *s;
  check(r != NULL, "a NULL reply");
  check(depth < 64, "replies nested too deep");
  switch (bp_redis_reply_type(r)) {
  case BP_REDIS_STRING:
  case BP_REDIS_STATUS:
  case BP_REDIS_ERROR:
    s = bp_redis_reply_string(r, &len);
    check(s != NULL && s[len] == '\0', "a string reply not NUL-terminated after its length");
    check(bp_redis_reply_elements(r) == 0, "a string with elements");
    break;
  case BP_REDIS_INTEGER:
    (void)bp_redis_reply_integer(r);
    check(bp_redis_reply_string(r, &len) == NULL && len == 0, "an integer with a string");
    break;
  case BP_REDIS_NIL:
    check(bp_redis_reply_string(r, &len) == NULL && bp_redis_reply_elements(r) == 0,
          "a nil with contents");
    break;
  case BP_REDIS_ARRAY: {
    size_t n = bp_redis_reply_elements(r);
    for (size_t i = 0; i < n; i++) check_reply(bp_redis_reply_element(r, i), depth + 1);
    check(bp_redis_reply_element(r, n) == NULL, "an element past the end");
    break;
  }
  default:
    check(0, "a reply of unknown type");
  }
}

static void run_loop_while_busy(bp_redis_conn_t *c) {
  while (bp_redis_busy(c)) uv_run(bp_loop(), UV_RUN_ONCE);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const char *argv[] = {"GET", "k", "GET", "k", "GET", "k", "GET", "k", "GET", "k"};
  static const size_t argvlen[] = {3, 1, 3, 1, 3, 1, 3, 1, 3, 1};
  static const int argcs[] = {2, 2, 2, 2, 2};
  bp_redis_conn_t *c = NULL;
  char err[256];
  int ncmds, rc, n;

  if (size < 1) return 0;
  if (!port) init();
  ncmds = 1 + data[0] % 5;
  answer = data + 1;
  answer_len = size - 1;

  rc = bp_redis_connect("127.0.0.1", port, 5.0, 1, &c, err, sizeof err);
  check(rc == BP_AGAIN && c, "cannot connect to the stand-in server");
  run_loop_while_busy(c);
  check(!bp_redis_broken(c), "the connection failed");

  rc = bp_redis_send(c, ncmds, argcs, argv, argvlen, 10.0, 2);
  check(rc == BP_AGAIN, "send refused");
  run_loop_while_busy(c);
  /* The server always closes: waiting for the time limit is a hang. */
  check(strstr(bp_redis_error(c), "timed out") == NULL, "the send waited for the time limit");

  n = bp_redis_reply_count(c);
  check(n >= 0 && n <= ncmds, "more replies than commands");
  check(bp_redis_broken(c) || n == ncmds, "a working connection with missing replies");
  for (int i = 0; i < n; i++) check_reply(bp_redis_reply(c, i), 0);
  check(bp_redis_reply(c, n) == NULL && bp_redis_reply(c, -1) == NULL, "a reply out of range");

  bp_redis_close(c);
  /* Until the client's memory and the stand-in's connection are gone. */
  uv_run(bp_loop(), UV_RUN_DEFAULT);
  check(peers_open == 0, "the stand-in's connection is still open");
  return 0;
}
