/* The peer of bench/consumers-amqp: a plain rabbitmq-c consumer loop, the
 * least a consumer can do per message (receive it, acknowledge it), and the
 * publisher that fills the queues before each run.
 *
 *   amqp-plain consume PORT QUEUE COUNT PREFETCH   -> "SECONDS" from the first
 *       message to the COUNT-th, each acknowledged on its own
 *   amqp-plain publish PORT QUEUE COUNT BODY       -> fills QUEUE (declared
 *       non-durable) with COUNT messages and waits until the broker holds them */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what) {
  fprintf(stderr, "amqp-plain: %s\n", what);
  exit(1);
}

static void ok(amqp_rpc_reply_t r, const char *what) {
  if (r.reply_type != AMQP_RESPONSE_NORMAL) die(what);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static amqp_connection_state_t open_conn(int port) {
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(c);
  if (!s || amqp_socket_open(s, "127.0.0.1", port) != AMQP_STATUS_OK) die("cannot connect");
  ok(amqp_login(c, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 60, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
  amqp_channel_open(c, 1);
  ok(amqp_get_rpc_reply(c), "channel.open");
  return c;
}

static uint32_t declare(amqp_connection_state_t c, const char *queue) {
  amqp_queue_declare_ok_t *r =
      amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 0, 0, 0, amqp_empty_table);
  ok(amqp_get_rpc_reply(c), "queue.declare");
  return r->message_count;
}

int main(int argc, char **argv) {
  amqp_connection_state_t c;
  long count;
  if (argc != 6) die("usage: consume PORT QUEUE COUNT PREFETCH | publish PORT QUEUE COUNT BODY");
  count = atol(argv[4]);
  c = open_conn(atoi(argv[2]));
  declare(c, argv[3]);
  if (strcmp(argv[1], "publish") == 0) {
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    for (long i = 0; i < count; i++) {
      if (amqp_basic_publish(c, 1, amqp_empty_bytes, amqp_cstring_bytes(argv[3]), 0, 0, &p,
                             amqp_cstring_bytes(argv[5])) != AMQP_STATUS_OK)
        die("publish");
    }
    for (int i = 0; i < 600 && declare(c, argv[3]) < count; i++) {
      struct timespec ts = {0, 100000000};
      nanosleep(&ts, NULL);
    }
  } else {
    double t0 = 0;
    amqp_basic_qos(c, 1, 0, (uint16_t)atoi(argv[5]), 0);
    ok(amqp_get_rpc_reply(c), "basic.qos");
    amqp_basic_consume(c, 1, amqp_cstring_bytes(argv[3]), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    ok(amqp_get_rpc_reply(c), "basic.consume");
    for (long n = 0; n < count; n++) {
      amqp_envelope_t e;
      amqp_maybe_release_buffers(c);
      ok(amqp_consume_message(c, &e, NULL, 0), "consume");
      if (n == 0) t0 = now();
      if (amqp_basic_ack(c, 1, e.delivery_tag, 0) != AMQP_STATUS_OK) die("ack");
      amqp_destroy_envelope(&e);
    }
    printf("%.4f\n", now() - t0);
  }
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
  return 0;
}
