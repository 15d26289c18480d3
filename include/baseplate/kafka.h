/*
 * Kafka consumers and producers (docs/consumers.md, docs/kafka.md) over
 * librdkafka, on the process's loop.
 *
 * librdkafka runs its own threads (one per broker and a few more); they
 * never call into baseplate's Lua. Everything they hand to the application
 * — messages, rebalances, commit results, delivery reports, logs and
 * errors — goes through one librdkafka queue per handle, and that queue
 * writes a byte to a pipe when it stops being empty
 * (rd_kafka_queue_io_event_enable). The read end of the pipe is watched on
 * the loop; the callbacks below run on the loop's thread, from inside the
 * bp_kafka_* calls that serve the queue, so nothing ever blocks the loop.
 *
 * Waiting follows the core's async convention: a function returns BP_AGAIN
 * and wakes its `waiter` once, from the loop.
 */
#ifndef BASEPLATE_KAFKA_H
#define BASEPLATE_KAFKA_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

typedef struct bp_kafka_s bp_kafka_t;

/** One consumed message, as bp_kafka_consume fills it. The pointers stay
 * valid until bp_kafka_release() of the same batch. */
typedef struct bp_kafka_message_s {
  const char *topic;
  const char *payload; /* NULL for a null value */
  const char *key;     /* NULL for a null key */
  size_t len;
  size_t key_len;
  int64_t offset;
  int64_t timestamp; /* milliseconds since the epoch, -1 when unknown */
  int32_t partition;
  int err;      /* 0, or librdkafka's error code: then payload is its text */
  int nheaders; /* how many headers (bp_kafka_header) */
  void *rkm;    /* librdkafka's message (internal) */
} bp_kafka_message_t;

/** Rebalance events (bp_kafka_rebalance_pending). */
#define BP_KAFKA_ASSIGN 1
#define BP_KAFKA_REVOKE 2

/**
 * A consumer in a group: `conf` is a NULL-terminated array of librdkafka
 * property names and values (bootstrap.servers, group.id, security.protocol,
 * sasl.*, ssl.*…), set in order. `manual_commit` 1: offsets are committed
 * only by bp_kafka_commit (enable.auto.commit and enable.auto.offset.store
 * off); 0: librdkafka commits what was consumed in the background.
 * NULL with the reason in err (a value of a secret property is never
 * quoted).
 */
BP_EXTERN bp_kafka_t *bp_kafka_consumer_new(const char *const *conf, int manual_commit, char *err,
                                            size_t errlen);

/** Subscribe to `n` topics. BP_OK, or BP_EINVAL with the reason in err. */
BP_EXTERN int bp_kafka_subscribe(bp_kafka_t *k, const char *const *topics, int n, char *err,
                                 size_t errlen);

/**
 * Take up to `max` messages without waiting (0 when none is there), and
 * serve what else came: rebalances (see bp_kafka_rebalance_pending), commit
 * results, logs, errors. Error events (a partition's end, a broker's
 * error) are logged, not returned. Release the batch with bp_kafka_release.
 * A negative status when the handle is closed.
 */
BP_EXTERN int bp_kafka_consume(bp_kafka_t *k, bp_kafka_message_t *out, int max);

/** Free the `n` messages of a batch. */
BP_EXTERN void bp_kafka_release(bp_kafka_message_t *msgs, int n);

/** Header `idx` (0 ≤ idx < nheaders) of a message: its name, value (NULL
 * for a null value) and length. BP_OK, or BP_ENOENT. */
BP_EXTERN int bp_kafka_header(const bp_kafka_message_t *m, int idx, const char **name,
                              const char **value, size_t *len);

/**
 * Wait until the handle's queue has something to serve: BP_AGAIN, then
 * `waiter` is woken with BP_OK (or BP_ECLOSED when the handle is closed);
 * BP_OK at once when something is already there. One waiter at a time.
 */
BP_EXTERN int bp_kafka_wait(bp_kafka_t *k, int waiter);

/** Forget the waiter of bp_kafka_wait (a wait that timed out). */
BP_EXTERN void bp_kafka_unwait(bp_kafka_t *k);

/**
 * The rebalance the last bp_kafka_consume brought, not yet acknowledged:
 * BP_KAFKA_ASSIGN (already applied: the consumer reads those partitions),
 * BP_KAFKA_REVOKE (still owned until bp_kafka_rebalance_done: finish or
 * abandon their work, commit, then call it), or 0. *count gets the number
 * of partitions.
 */
BP_EXTERN int bp_kafka_rebalance_pending(bp_kafka_t *k, int *count);

/** Partition `idx` of the pending rebalance. BP_OK or BP_ENOENT. */
BP_EXTERN int bp_kafka_rebalance_partition(bp_kafka_t *k, int idx, const char **topic,
                                           int32_t *partition);

/** Acknowledge the pending rebalance (a revoke: give the partitions up). */
BP_EXTERN int bp_kafka_rebalance_done(bp_kafka_t *k);

/**
 * Commit `next_offset` (the offset of the next message to read: the handled
 * one's + 1) for a partition. `waiter` 0: without waiting (BP_OK; a failure
 * is logged). Else BP_AGAIN, and `waiter` is woken from the loop with BP_OK
 * once the group coordinator stored it, BP_ECANCELED when it refused it
 * because the group is rebalancing (the offset is kept: should the next
 * assignment give the partition back, reading resumes there and it is
 * committed again), or BP_EIO. librdkafka sends commits before it gives up
 * partitions in a rebalance or a close. At once: BP_EINVAL, BP_ECLOSED.
 */
BP_EXTERN int bp_kafka_commit(bp_kafka_t *k, const char *topic, int32_t partition,
                              int64_t next_offset, int waiter);

/** Commits sent and not yet answered. */
BP_EXTERN int bp_kafka_commits_pending(bp_kafka_t *k);


/**
 * Start leaving the group (rd_kafka_consumer_close_queue): the assigned
 * partitions are paused first (what was fetched is dropped, not handed out
 * by bp_kafka_consume, so no offset of it is stored); the revoke comes as a
 * rebalance through bp_kafka_consume as usual; keep serving until
 * bp_kafka_closed. BP_OK, or BP_ERROR.
 */
BP_EXTERN int bp_kafka_consumer_close(bp_kafka_t *k);

/** Whether the consumer has left its group (1) or not yet (0). */
BP_EXTERN int bp_kafka_closed(bp_kafka_t *k);

/**
 * A producer: `conf` as for bp_kafka_consumer_new (bootstrap.servers,
 * message.timeout.ms, acks…). NULL with the reason in err.
 */
BP_EXTERN bp_kafka_t *bp_kafka_producer_new(const char *const *conf, char *err, size_t errlen);

/**
 * Produce one message (partition -1: the partitioner chooses; key NULL:
 * none; `nheaders` name/value pairs in `headers`). BP_AGAIN: `waiter` is
 * woken with BP_OK once the broker acknowledged it, or BP_EIO when it was
 * not delivered (bp_kafka_error says why: message.timeout.ms passed, the
 * topic does not exist…). At once: BP_EINVAL, BP_ENOMEM (the local queue is
 * full), with the reason in err.
 */
BP_EXTERN int bp_kafka_produce(bp_kafka_t *k, const char *topic, int32_t partition,
                               const char *value, size_t len, const char *key, size_t key_len,
                               const char *const *headers, int nheaders, int waiter, char *err,
                               size_t errlen);

/** The reason of the last failed delivery report (a producer), or "". */
BP_EXTERN const char *bp_kafka_error(bp_kafka_t *k);

/**
 * Close and free: the watch stops, librdkafka's handle is destroyed on
 * libuv's thread pool (its threads are joined there, never on the loop);
 * a waiter still waiting is woken with BP_ECLOSED. NULL is ignored.
 */
BP_EXTERN void bp_kafka_free(bp_kafka_t *k);

#endif
