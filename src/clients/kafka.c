/* Kafka consumers and producers over librdkafka (include/baseplate/kafka.h). */
#define _GNU_SOURCE
#include "baseplate/kafka.h"
#include "baseplate/log.h"
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define LOGGER "baseplate.kafka"

typedef struct rebalance_s {
  struct rebalance_s *next;
  int kind;
  rd_kafka_topic_partition_list_t *parts;
} rebalance_t;

typedef struct {
  int waiter;
  int status;
  char reason[256];
} report_t;

struct bp_kafka_s {
  bp__closable_t closable; /* first: the poll handle's data */
  rd_kafka_t *rk;
  rd_kafka_queue_t *q; /* the consumer queue, or the producer's main queue */
  rd_kafka_queue_t *cq; /* a consumer's commit results, served on the loop */
  int producer;
  int pipefd[2];
  uv_poll_t *poll; /* NULL once closed */
  int waiter;      /* bp_kafka_wait's, or 0 */
  int ready;       /* the pipe fired with nobody waiting */
  int loop_gone;
  int serving; /* waking delivery reports: a free waits until done */
  int freed;
  int commits;
  rd_kafka_topic_partition_list_t *held; /* next offsets whose commits were refused */
  rebalance_t *rebalances, **rebalances_tail;
  report_t *reports; /* delivery reports collected while serving */
  int nreports, creports;
  char error[256];
};

/* --- helpers ------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Properties whose values are secrets: never quoted in an error. */
static int secret_property(const char *name) {
  return strstr(name, "password") || strstr(name, "secret") || strstr(name, "ssl.key") ||
         strstr(name, "sasl.oauthbearer.config") || strstr(name, "ssl_key") ||
         strstr(name, "keystore");
}

static int level_of(int syslog_level) {
  if (syslog_level <= 3) return BP_LOG_ERROR;
  if (syslog_level == 4) return BP_LOG_WARNING;
  if (syslog_level <= 6) return BP_LOG_INFO;
  return BP_LOG_DEBUG;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  bp_log(level_of(level), LOGGER, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  int fatal = err == RD_KAFKA_RESP_ERR__FATAL;
  bp_log(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || fatal ? BP_LOG_ERROR : BP_LOG_WARNING,
         LOGGER, "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
         reason);
}

static int refusal(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
         err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION || err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID;
}

static void add_report(bp_kafka_t *k, int waiter, int status, const char *reason);

/* A commit's result: refused ones (the group rebalances) are remembered, so
 * that the next assignment starts those partitions where their handling
 * ended; the waiter of bp_kafka_commit learns the status. */
static void commit_result(bp_kafka_t *k, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *offsets, int waiter) {
  int status = BP_OK;
  if (k->commits > 0) k->commits--;
  if (refusal(err)) status = BP_ECANCELED;
  for (int i = 0; offsets && i < offsets->cnt; i++) {
    rd_kafka_topic_partition_t *e = &offsets->elems[i];
    rd_kafka_resp_err_t pe = e->err ? e->err : err;
    if (refusal(pe)) {
      status = BP_ECANCELED;
      if (!k->held) k->held = rd_kafka_topic_partition_list_new(4);
      if (k->held) {
        rd_kafka_topic_partition_t *h =
            rd_kafka_topic_partition_list_find(k->held, e->topic, e->partition);
        if (!h) h = rd_kafka_topic_partition_list_add(k->held, e->topic, e->partition);
        if (h && h->offset < e->offset) h->offset = e->offset;
      }
    } else if (pe && pe != RD_KAFKA_RESP_ERR__NO_OFFSET) {
      status = BP_EIO;
    }
    if (pe && pe != RD_KAFKA_RESP_ERR__NO_OFFSET)
      bp_log(refusal(pe) ? BP_LOG_INFO : BP_LOG_WARNING, LOGGER,
             "committing %s [%d] offset %lld failed: %s", e->topic, (int)e->partition,
             (long long)e->offset, rd_kafka_err2str(pe));
  }
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET && status == BP_OK) status = BP_EIO;
  if (waiter > 0) add_report(k, waiter, status, err ? rd_kafka_err2str(err) : "");
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  commit_result(opaque, err, offsets, 0);
}

static bp_kafka_t *commit_queue_owner; /* (set while serving k->cq: one loop thread) */

static void commit_queue_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  if (commit_queue_owner) commit_result(commit_queue_owner, err, offsets, (int)(intptr_t)opaque);
}

static int cooperative(rd_kafka_t *rk) {
  const char *p = rd_kafka_rebalance_protocol(rk);
  return p && strcmp(p, "COOPERATIVE") == 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  bp_kafka_t *k = opaque;
  int kind = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS   ? BP_KAFKA_ASSIGN
             : err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS ? BP_KAFKA_REVOKE
                                                           : 0;
  if (kind == BP_KAFKA_ASSIGN) {
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = 0;
    rd_kafka_topic_partition_list_t *again = NULL;
    /* Partitions ours again whose last commits were refused while the group
     * rebalanced: read on from where their handling ended, and commit that. */
    for (int i = 0; k->held && i < parts->cnt; i++) {
      rd_kafka_topic_partition_t *h =
          rd_kafka_topic_partition_list_find(k->held, parts->elems[i].topic, parts->elems[i].partition);
      if (!h) continue;
      parts->elems[i].offset = h->offset;
      if (!again) again = rd_kafka_topic_partition_list_new(4);
      if (again) rd_kafka_topic_partition_list_add(again, h->topic, h->partition)->offset = h->offset;
    }
    if (k->held) rd_kafka_topic_partition_list_destroy(k->held);
    k->held = NULL;
    if (cooperative(rk))
      e = rd_kafka_incremental_assign(rk, parts);
    else
      re = rd_kafka_assign(rk, parts);
    if (e) {
      bp_log(BP_LOG_ERROR, LOGGER, "assigning partitions failed: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    } else if (re) {
      bp_log(BP_LOG_ERROR, LOGGER, "assigning partitions failed: %s", rd_kafka_err2str(re));
    }
    if (again) {
      if (!e && !re && rd_kafka_commit(rk, again, 1) == 0) k->commits++;
      rd_kafka_topic_partition_list_destroy(again);
    }
  } else if (kind == 0) {
    bp_log(BP_LOG_ERROR, LOGGER, "rebalance failed: %s", rd_kafka_err2str(err));
    if (cooperative(rk))
      rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
      rd_kafka_assign(rk, NULL);
    return;
  }
  rebalance_t *r = calloc(1, sizeof *r);
  if (r) r->parts = rd_kafka_topic_partition_list_copy(parts);
  if (!r || !r->parts) {
    /* (out of memory: give the partitions up at once rather than lose track) */
    free(r);
    if (kind == BP_KAFKA_REVOKE) rd_kafka_assign(rk, NULL);
    return;
  }
  r->kind = kind;
  *k->rebalances_tail = r;
  k->rebalances_tail = &r->next;
  bp_log(BP_LOG_INFO, LOGGER, "%s %d partition(s)",
         kind == BP_KAFKA_ASSIGN ? "assigned" : "revoking", parts->cnt);
}

static void add_report(bp_kafka_t *k, int waiter, int status, const char *reason) {
  if (k->nreports == k->creports) {
    int c = k->creports ? k->creports * 2 : 64;
    report_t *r = realloc(k->reports, (size_t)c * sizeof *r);
    if (!r) return; /* (its waiter's time limit ends the wait) */
    k->reports = r;
    k->creports = c;
  }
  report_t *r = &k->reports[k->nreports++];
  r->waiter = waiter;
  r->status = status;
  snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  bp_kafka_t *k = opaque;
  int waiter = (int)(intptr_t)m->_private;
  if (waiter <= 0) return;
  add_report(k, waiter, m->err ? BP_EIO : BP_OK, m->err ? rd_kafka_err2str(m->err) : "");
}

/* --- the pipe on the loop ------------------------------------------------------------ */

static void drain_pipe(bp_kafka_t *k) {
  char buf[64];
  while (read(k->pipefd[0], buf, sizeof buf) > 0) {
  }
}

static void wake_waiter(bp_kafka_t *k, int status) {
  int w = k->waiter;
  k->waiter = 0;
  if (w) bp_wake(w, status);
}

/* Wake the waiters of the reports collected while serving (a coroutine
 * may free the handle meanwhile: the free waits until this is done). */
static int wake_reports(bp_kafka_t *k) {
  int n = k->nreports;
  if (!n) return 0;
  report_t *r = malloc((size_t)n * sizeof *r);
  if (!r) return 0;
  memcpy(r, k->reports, (size_t)n * sizeof *r);
  k->nreports = 0;
  k->serving = 1;
  for (int i = 0; i < n; i++) {
    snprintf(k->error, sizeof k->error, "%s", r[i].reason);
    bp_wake(r[i].waiter, r[i].status);
  }
  k->serving = 0;
  free(r);
  if (k->freed) {
    bp_kafka_free(k);
    return 1;
  }
  return 0;
}

static void on_readable(uv_poll_t *p, int status, int events) {
  bp_kafka_t *k = p->data;
  drain_pipe(k);
  if (k->producer) {
    rd_kafka_poll(k->rk, 0);
    wake_reports(k);
    return;
  }
  commit_queue_owner = k;
  while (rd_kafka_queue_poll_callback(k->cq, 0) > 0) {
  }
  commit_queue_owner = NULL;
  if (wake_reports(k)) return;
  if (k->waiter)
    wake_waiter(k, BP_OK);
  else
    k->ready = 1;
}

static void poll_closed(uv_handle_t *h) { free(h); }

static void stop_watch(bp_kafka_t *k) {
  if (!k->poll) return;
  if (!k->loop_gone) uv_close((uv_handle_t *)k->poll, poll_closed);
  k->poll = NULL;
}

static void kafka_shutdown(bp__closable_t *self) {
  bp_kafka_t *k = (bp_kafka_t *)self;
  if (k->poll) uv_close((uv_handle_t *)k->poll, poll_closed);
  k->poll = NULL;
  k->loop_gone = 1;
  k->waiter = 0;
}

/* --- creating ------------------------------------------------------------------------- */

static rd_kafka_conf_t *make_conf(const char *const *conf, char *err, size_t errlen) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char e[512];
  if (!c) {
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  for (int i = 0; conf && conf[i]; i += 2) {
    if (!conf[i + 1]) {
      set_err(err, errlen, "%s: no value", conf[i]);
      rd_kafka_conf_destroy(c);
      return NULL;
    }
    if (rd_kafka_conf_set(c, conf[i], conf[i + 1], e, sizeof e) != RD_KAFKA_CONF_OK) {
      if (secret_property(conf[i]))
        set_err(err, errlen, "%s: invalid value", conf[i]);
      else
        set_err(err, errlen, "%s", e);
      rd_kafka_conf_destroy(c);
      return NULL;
    }
  }
  /* Logs wait on the queue (rd_kafka_set_log_queue) and are written on the
   * loop's thread: without it librdkafka calls log_cb from its own threads. */
  if (rd_kafka_conf_set(c, "log.queue", "true", e, sizeof e) != RD_KAFKA_CONF_OK) {
    set_err(err, errlen, "%s", e);
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  rd_kafka_conf_set_log_cb(c, log_cb);
  rd_kafka_conf_set_error_cb(c, error_cb);
  return c;
}

static bp_kafka_t *finish_new(bp_kafka_t *k, rd_kafka_conf_t *c, rd_kafka_type_t type, char *err,
                              size_t errlen) {
  char e[512];
  rd_kafka_conf_set_opaque(c, k);
  k->rk = rd_kafka_new(type, c, e, sizeof e);
  if (!k->rk) {
    set_err(err, errlen, "%s", e);
    rd_kafka_conf_destroy(c);
    free(k);
    return NULL;
  }
  /* Logs come through the queue too, served on the loop's thread. */
  rd_kafka_set_log_queue(k->rk, NULL);
  if (type == RD_KAFKA_CONSUMER) {
    rd_kafka_poll_set_consumer(k->rk);
    k->q = rd_kafka_queue_get_consumer(k->rk);
    k->cq = rd_kafka_queue_new(k->rk);
  } else {
    k->q = rd_kafka_queue_get_main(k->rk);
  }
  int rc;
  if (pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    set_err(err, errlen, "pipe: %s", strerror(errno));
    goto fail;
  }
  k->poll = malloc(sizeof *k->poll);
  if (!k->poll) {
    set_err(err, errlen, "out of memory");
    goto fail;
  }
  if ((rc = uv_poll_init(bp_loop(), k->poll, k->pipefd[0])) != 0) {
    free(k->poll);
    k->poll = NULL;
    set_err(err, errlen, "watching the queue: %s", uv_strerror(rc));
    goto fail;
  }
  k->poll->data = k;
  k->closable.magic = BP_CLOSABLE_MAGIC;
  k->closable.close = kafka_shutdown;
  uv_poll_start(k->poll, UV_READABLE, on_readable);
  /* (a consumer or producer alone does not keep the process running) */
  uv_unref((uv_handle_t *)k->poll);
  rd_kafka_queue_io_event_enable(k->q, k->pipefd[1], "1", 1);
  if (k->cq) rd_kafka_queue_io_event_enable(k->cq, k->pipefd[1], "1", 1);
  return k;
fail:
  if (k->cq) rd_kafka_queue_destroy(k->cq);
  if (k->q) rd_kafka_queue_destroy(k->q);
  rd_kafka_destroy(k->rk);
  if (k->pipefd[0] >= 0) close(k->pipefd[0]);
  if (k->pipefd[1] >= 0) close(k->pipefd[1]);
  free(k);
  return NULL;
}

static bp_kafka_t *alloc_handle(void) {
  bp_kafka_t *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->pipefd[0] = k->pipefd[1] = -1;
  k->rebalances_tail = &k->rebalances;
  return k;
}

bp_kafka_t *bp_kafka_consumer_new(const char *const *conf, int manual_commit, char *err,
                                  size_t errlen) {
  char e[512];
  rd_kafka_conf_t *c = make_conf(conf, err, errlen);
  if (!c) return NULL;
  if (manual_commit &&
      (rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof e) != RD_KAFKA_CONF_OK ||
       rd_kafka_conf_set(c, "enable.auto.offset.store", "false", e, sizeof e) !=
           RD_KAFKA_CONF_OK)) {
    set_err(err, errlen, "%s", e);
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  bp_kafka_t *k = alloc_handle();
  if (!k) {
    set_err(err, errlen, "out of memory");
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
  rd_kafka_conf_set_offset_commit_cb(c, commit_cb);
  return finish_new(k, c, RD_KAFKA_CONSUMER, err, errlen);
}

bp_kafka_t *bp_kafka_producer_new(const char *const *conf, char *err, size_t errlen) {
  rd_kafka_conf_t *c = make_conf(conf, err, errlen);
  if (!c) return NULL;
  bp_kafka_t *k = alloc_handle();
  if (!k) {
    set_err(err, errlen, "out of memory");
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  k->producer = 1;
  rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
  return finish_new(k, c, RD_KAFKA_PRODUCER, err, errlen);
}

/* --- consuming ---------------------------------------------------------------------- */

int bp_kafka_subscribe(bp_kafka_t *k, const char *const *topics, int n, char *err,
                       size_t errlen) {
  if (!k || k->producer || n < 1) {
    set_err(err, errlen, "no topics to subscribe to");
    return BP_EINVAL;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  if (!l) return BP_ENOMEM;
  for (int i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    set_err(err, errlen, "subscribing: %s", rd_kafka_err2str(e));
    return BP_EINVAL;
  }
  return BP_OK;
}

int bp_kafka_consume(bp_kafka_t *k, bp_kafka_message_t *out, int max) {
  enum { CHUNK = 256 };
  rd_kafka_message_t *ms[CHUNK];
  int n = 0;
  if (!k || k->producer) return BP_EINVAL;
  if (k->loop_gone) return BP_ECLOSED;
  while (n < max) {
    int want = max - n < CHUNK ? max - n : CHUNK;
    ssize_t got = rd_kafka_consume_batch_queue(k->q, 0, ms, (size_t)want);
    if (got <= 0) break;
    for (ssize_t i = 0; i < got; i++) {
      rd_kafka_message_t *m = ms[i];
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          bp_log(BP_LOG_ERROR, LOGGER, "consuming: %s%s%s", rd_kafka_message_errstr(m),
                 m->rkt ? " on " : "", m->rkt ? rd_kafka_topic_name(m->rkt) : "");
        rd_kafka_message_destroy(m);
        continue;
      }
      bp_kafka_message_t *o = &out[n++];
      rd_kafka_headers_t *h = NULL;
      o->topic = rd_kafka_topic_name(m->rkt);
      o->partition = m->partition;
      o->offset = m->offset;
      o->payload = m->payload;
      o->len = m->len;
      o->key = m->key;
      o->key_len = m->key_len;
      o->timestamp = rd_kafka_message_timestamp(m, NULL);
      o->err = 0;
      o->nheaders = rd_kafka_message_headers(m, &h) == 0 && h ? (int)rd_kafka_header_cnt(h) : 0;
      o->rkm = m;
    }
    /* a rebalance stops the batch: what follows belongs to the new assignment */
    if (got < want || k->rebalances) break;
  }
  return n;
}

void bp_kafka_release(bp_kafka_message_t *msgs, int n) {
  for (int i = 0; i < n; i++) {
    if (msgs[i].rkm) rd_kafka_message_destroy(msgs[i].rkm);
    msgs[i].rkm = NULL;
  }
}

int bp_kafka_header(const bp_kafka_message_t *m, int idx, const char **name, const char **value,
                    size_t *len) {
  rd_kafka_headers_t *h = NULL;
  const void *v = NULL;
  if (!m || !m->rkm || idx < 0 || idx >= m->nheaders) return BP_ENOENT;
  if (rd_kafka_message_headers(m->rkm, &h) != 0 || !h) return BP_ENOENT;
  if (rd_kafka_header_get_all(h, (size_t)idx, name, &v, len) != 0) return BP_ENOENT;
  *value = v;
  return BP_OK;
}

int bp_kafka_wait(bp_kafka_t *k, int waiter) {
  if (!k || k->waiter) return BP_EINVAL;
  if (k->loop_gone || !k->poll) return BP_ECLOSED;
  if (k->ready || rd_kafka_queue_length(k->q) > 0) {
    k->ready = 0;
    return BP_OK;
  }
  k->waiter = waiter;
  return BP_AGAIN;
}

void bp_kafka_unwait(bp_kafka_t *k) {
  if (k) k->waiter = 0;
}

int bp_kafka_rebalance_pending(bp_kafka_t *k, int *count) {
  rebalance_t *r = k ? k->rebalances : NULL;
  *count = r ? r->parts->cnt : 0;
  return r ? r->kind : 0;
}

int bp_kafka_rebalance_partition(bp_kafka_t *k, int idx, const char **topic,
                                 int32_t *partition) {
  rebalance_t *r = k ? k->rebalances : NULL;
  if (!r || idx < 0 || idx >= r->parts->cnt) return BP_ENOENT;
  *topic = r->parts->elems[idx].topic;
  *partition = r->parts->elems[idx].partition;
  return BP_OK;
}

int bp_kafka_rebalance_done(bp_kafka_t *k) {
  rebalance_t *r = k ? k->rebalances : NULL;
  if (!r) return BP_ENOENT;
  int rc = BP_OK;
  if (r->kind == BP_KAFKA_REVOKE) {
    if (cooperative(k->rk)) {
      rd_kafka_error_t *e = rd_kafka_incremental_unassign(k->rk, r->parts);
      if (e) {
        bp_log(BP_LOG_ERROR, LOGGER, "unassigning: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rc = BP_ERROR;
      }
    } else {
      rd_kafka_resp_err_t e = rd_kafka_assign(k->rk, NULL);
      if (e) {
        bp_log(BP_LOG_ERROR, LOGGER, "unassigning: %s", rd_kafka_err2str(e));
        rc = BP_ERROR;
      }
    }
  }
  k->rebalances = r->next;
  if (!k->rebalances) k->rebalances_tail = &k->rebalances;
  rd_kafka_topic_partition_list_destroy(r->parts);
  free(r);
  return rc;
}

int bp_kafka_commit(bp_kafka_t *k, const char *topic, int32_t partition, int64_t next_offset,
                    int waiter) {
  if (!k || k->producer || !topic || next_offset < 0) return BP_EINVAL;
  if (waiter > 0 && (k->loop_gone || !k->poll || !k->cq)) return BP_ECLOSED;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  if (!l) return BP_ENOMEM;
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
  rd_kafka_resp_err_t e;
  if (waiter > 0)
    e = rd_kafka_commit_queue(k->rk, l, k->cq, commit_queue_cb, (void *)(intptr_t)waiter);
  else
    e = rd_kafka_commit(k->rk, l, 1);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    bp_log(BP_LOG_WARNING, LOGGER, "committing %s [%d]: %s", topic, (int)partition,
           rd_kafka_err2str(e));
    return BP_EINVAL;
  }
  k->commits++;
  return waiter > 0 ? BP_AGAIN : BP_OK;
}

int bp_kafka_commits_pending(bp_kafka_t *k) { return k ? k->commits : 0; }


int bp_kafka_consumer_close(bp_kafka_t *k) {
  if (!k || k->producer) return BP_EINVAL;
  /* Paused first: the messages already fetched are dropped rather than
   * handed out while the close is served (with enable.auto.offset.store,
   * handing one out would store its offset, and closing would commit it
   * unhandled). */
  rd_kafka_topic_partition_list_t *a = NULL;
  if (rd_kafka_assignment(k->rk, &a) == 0 && a) {
    if (a->cnt > 0) rd_kafka_pause_partitions(k->rk, a);
    rd_kafka_topic_partition_list_destroy(a);
  }
  rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->rk, k->q);
  if (e) {
    bp_log(BP_LOG_ERROR, LOGGER, "closing the consumer: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return BP_ERROR;
  }
  return BP_OK;
}

int bp_kafka_closed(bp_kafka_t *k) { return k && !k->producer ? rd_kafka_consumer_closed(k->rk) : 1; }

/* --- producing ------------------------------------------------------------------------ */

int bp_kafka_produce(bp_kafka_t *k, const char *topic, int32_t partition, const char *value,
                     size_t len, const char *key, size_t key_len, const char *const *headers,
                     int nheaders, int waiter, char *err, size_t errlen) {
  if (!k || !k->producer || !topic || !*topic || nheaders < 0) {
    set_err(err, errlen, "produce: needs a producer and a topic");
    return BP_EINVAL;
  }
  if (k->loop_gone) {
    set_err(err, errlen, "produce: the event loop was shut down");
    return BP_ECLOSED;
  }
  rd_kafka_headers_t *h = NULL;
  if (nheaders > 0) {
    h = rd_kafka_headers_new((size_t)nheaders);
    if (!h) return BP_ENOMEM;
    for (int i = 0; i < nheaders; i++)
      rd_kafka_header_add(h, headers[2 * i], -1, headers[2 * i + 1],
                          headers[2 * i + 1] ? (ssize_t)strlen(headers[2 * i + 1]) : 0);
  }
  rd_kafka_resp_err_t e = rd_kafka_producev(
      k->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void *)value, len),
      RD_KAFKA_V_KEY(key, key ? key_len : 0), RD_KAFKA_V_OPAQUE((void *)(intptr_t)waiter),
      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
  if (e) {
    if (h) rd_kafka_headers_destroy(h);
    set_err(err, errlen, "produce: %s", rd_kafka_err2str(e));
    return e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? BP_ENOMEM : BP_EINVAL;
  }
  return BP_AGAIN;
}

const char *bp_kafka_error(bp_kafka_t *k) { return k ? k->error : ""; }

/* --- closing ---------------------------------------------------------------------------- */

typedef struct {
  uv_work_t work;
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;
  int flags;
} destroy_t;

static void destroy_rk(rd_kafka_t *rk, rd_kafka_queue_t *q, int flags) {
  if (q) rd_kafka_queue_destroy(q);
  rd_kafka_destroy_flags(rk, flags);
}

static void destroy_work(uv_work_t *w) {
  destroy_t *d = (destroy_t *)w;
  destroy_rk(d->rk, d->q, d->flags);
}

static void destroy_done(uv_work_t *w, int status) { free(w); }

void bp_kafka_free(bp_kafka_t *k) {
  if (!k) return;
  if (k->serving) {
    k->freed = 1;
    return;
  }
  if (k->waiter) wake_waiter(k, BP_ECLOSED);
  rd_kafka_queue_io_event_enable(k->q, -1, NULL, 0);
  if (k->cq) {
    rd_kafka_queue_io_event_enable(k->cq, -1, NULL, 0);
    rd_kafka_queue_destroy(k->cq);
    k->cq = NULL;
  }
  if (k->held) rd_kafka_topic_partition_list_destroy(k->held);
  stop_watch(k);
  close(k->pipefd[0]);
  close(k->pipefd[1]);
  while (k->rebalances) {
    rebalance_t *r = k->rebalances;
    k->rebalances = r->next;
    rd_kafka_topic_partition_list_destroy(r->parts);
    free(r);
  }
  int flags = 0;
  if (k->producer)
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  else if (!rd_kafka_consumer_closed(k->rk))
    flags = RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
  destroy_t *d = k->loop_gone ? NULL : calloc(1, sizeof *d);
  if (d) {
    d->rk = k->rk;
    d->q = k->q;
    d->flags = flags;
    if (uv_queue_work(bp_loop(), &d->work, destroy_work, destroy_done) != 0) {
      free(d);
      d = NULL;
    }
  }
  if (!d) destroy_rk(k->rk, k->q, flags);
  free(k->reports);
  free(k);
}
