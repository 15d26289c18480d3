/*
 * A Kafka cluster for the tests and benchmarks: no Kafka broker is packaged
 * for Debian, so this runs librdkafka's built-in mock cluster
 * (rdkafka_mock.h) — brokers on loopback speaking the Kafka protocol, with
 * consumer groups and committed offsets — and takes commands on stdin:
 *
 *   topic NAME PARTITIONS            create a topic (replication 1)
 *   produce TOPIC COUNT [FIRST]      COUNT JSON messages {"n":FIRST+i} (i from 0),
 *                                    round-robin over the partitions; waits
 *                                    for every delivery, then prints "produced N"
 *   leader TOPIC PARTITION BROKER    move a partition's leader
 *   down BROKER / up BROKER          take a broker down or up
 *   error APIKEY ERRCODE COUNT       the next COUNT requests of APIKEY fail with ERRCODE
 *                                    (any broker; Fetch is 1, OffsetCommit 8)
 *   slow BROKER APIKEY ERRCODE MS COUNT
 *                                    the next COUNT requests of APIKEY to BROKER
 *                                    are answered after MS milliseconds, with
 *                                    ERRCODE (0: no error, only late)
 *   coordinator GROUP BROKER         make BROKER the group's coordinator
 *   sleep SECONDS
 *   quit
 *
 * usage: kafka-mock BROKERS BOOTSTRAP_FILE
 * It writes the brokers' addresses ("127.0.0.1:port,…") to BOOTSTRAP_FILE
 * once they listen (the mock cluster picks its ports), and prints "ok" after
 * each command. It exits at end of input or on SIGTERM.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int delivered, failed;

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  if (m->err) {
    failed++;
    fprintf(stderr, "kafka-mock: delivery failed: %s\n", rd_kafka_err2str(m->err));
  } else {
    delivered++;
  }
}

static int partitions_of(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  int n = 0;
  if (rd_kafka_metadata(rk, 0, t, &md, 5000) == 0) {
    if (md->topic_cnt == 1) n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(t);
  return n;
}

int main(int argc, char **argv) {
  char err[512], line[1024];
  if (argc != 3) {
    fprintf(stderr, "usage: kafka-mock BROKERS BOOTSTRAP_FILE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err);
  rd_kafka_conf_set(conf, "batch.num.messages", "10000", err, sizeof err);
  rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof err);
  rd_kafka_conf_set_dr_msg_cb(conf, dr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "kafka-mock: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, atoi(argv[1]));
  if (!mc) {
    fprintf(stderr, "kafka-mock: could not start the mock cluster\n");
    return 1;
  }
  const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
  rd_kafka_brokers_add(rk, bootstraps);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
  FILE *f = fopen(tmp, "w");
  if (!f) return 1;
  fprintf(f, "%s\n", bootstraps);
  fclose(f);
  rename(tmp, argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);

  while (fgets(line, sizeof line, stdin)) {
    char a[256] = "", b[256] = "";
    long x = 0, y = 0, z = 0, w = 0, v = 0;
    if (sscanf(line, "topic %255s %ld", a, &x) == 2) {
      rd_kafka_mock_topic_create(mc, a, (int)x, 1);
    } else if (sscanf(line, "produce %255s %ld %ld", a, &x, &y) >= 2) {
      int np = partitions_of(rk, a);
      if (np < 1) np = 1;
      delivered = failed = 0;
      for (long i = 0; i < x; i++) {
        int len = snprintf(b, sizeof b, "{\"n\":%ld}", y + i);
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(a), RD_KAFKA_V_PARTITION((int)(i % np)),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_VALUE(b, (size_t)len), RD_KAFKA_V_END) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
          rd_kafka_poll(rk, 10);
        rd_kafka_poll(rk, 0);
      }
      rd_kafka_flush(rk, 30000);
      printf("produced %d failed %d\n", delivered, failed);
      continue;
    } else if (sscanf(line, "leader %255s %ld %ld", a, &x, &y) == 3) {
      rd_kafka_mock_partition_set_leader(mc, a, (int32_t)x, (int32_t)y);
    } else if (sscanf(line, "down %ld", &x) == 1) {
      rd_kafka_mock_broker_set_down(mc, (int32_t)x);
    } else if (sscanf(line, "up %ld", &x) == 1) {
      rd_kafka_mock_broker_set_up(mc, (int32_t)x);
    } else if (sscanf(line, "error %ld %ld %ld", &x, &y, &z) == 3) {
      for (long i = 0; i < z; i++)
        rd_kafka_mock_push_request_errors(mc, (int16_t)x, 1, (rd_kafka_resp_err_t)y);
    } else if (sscanf(line, "slow %ld %ld %ld %ld %ld", &x, &y, &z, &w, &v) == 5) {
      for (long i = 0; i < v; i++)
        rd_kafka_mock_broker_push_request_error_rtts(mc, (int32_t)x, (int16_t)y, 1,
                                                     (rd_kafka_resp_err_t)z, (int)w);
    } else if (sscanf(line, "coordinator %255s %ld", a, &x) == 2) {
      rd_kafka_mock_coordinator_set(mc, "group", a, (int32_t)x);
    } else if (sscanf(line, "sleep %ld", &x) == 1) {
      sleep((unsigned)x);
    } else if (strncmp(line, "quit", 4) == 0) {
      break;
    } else if (line[0] != '\n' && line[0] != '#') {
      printf("unknown command: %s", line);
      continue;
    }
    printf("ok\n");
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
