/*
 * POSIX message queues as Baseplate.py opens them (the trace queue,
 * baseplate.lib.message_queue, the event queues): created if missing with
 * the asked sizes, and, when those are above this system's limits
 * (/proc/sys/fs/mqueue: an unprivileged process, a container), either as
 * large as the limits allow or refused with an error naming the limit.
 *
 * bp_mq_t is a queue whose waits are done on the loop: send and receive
 * never block; when the queue is full or empty the caller waits for it with
 * bp_mq_wait (a coroutine yields) or, outside the loop's coroutines,
 * bp_mq_wait_blocking (poll(2) with a time limit).
 */
#ifndef BASEPLATE_MQUEUE_H
#define BASEPLATE_MQUEUE_H

#include "common.h"
#include <mqueue.h>
#include <stddef.h>

/**
 * mq_open(name, oflag | O_CREAT | O_CLOEXEC, 0644) for `max_messages` of at
 * most `max_message_size` bytes, shrunk to the system's limits if needed.
 * Returns the descriptor, or (mqd_t)-1 with errno set; *attr (may be NULL)
 * gets the queue's real sizes, *shrunk (may be NULL) whether they are
 * below the ones asked for.
 */
BP_EXTERN mqd_t bp_mq_open(const char *name, int oflag, long max_messages, long max_message_size,
                           struct mq_attr *attr, int *shrunk);

typedef struct bp_mq_s bp_mq_t;

/**
 * Open the queue `name` (an initial slash, then 1 to 254 characters, none
 * a slash) for reading and writing, creating it (mode 0644) with room for
 * `max_messages` of at most `max_message_size` bytes if it does not exist;
 * an existing queue keeps its own sizes (bp_mq_max_messages says them).
 * When the sizes are above the system's limits: with `fallback`, the queue
 * is made as large as the limits allow; without, BP_EINVAL and a message
 * naming the limit and its /proc/sys/fs/mqueue file. Other failures:
 * -errno and a message in err. On BP_OK *out is the queue; the caller
 * frees it with bp_mq_close.
 */
BP_EXTERN int bp_mq_new(const char *name, long max_messages, long max_message_size, int fallback,
                        bp_mq_t **out, char *err, size_t errlen);

/** The queue's real capacity (messages) and message size limit (bytes). */
BP_EXTERN long bp_mq_max_messages(const bp_mq_t *q);
BP_EXTERN long bp_mq_max_message_size(const bp_mq_t *q);

/** Whether the queue was made smaller than asked (bp_mq_new's fallback). */
BP_EXTERN int bp_mq_shrunk(const bp_mq_t *q);

/**
 * Put a message without waiting: BP_OK, BP_AGAIN when the queue is full,
 * BP_ETOOBIG when `len` is above the queue's message size, else -errno.
 */
BP_EXTERN int bp_mq_send(bp_mq_t *q, const void *msg, size_t len);

/**
 * Take a message without waiting: BP_OK with *msg and *len (a buffer the
 * queue owns, valid until the next bp_mq_receive or bp_mq_close), BP_AGAIN
 * when the queue is empty, else -errno.
 */
BP_EXTERN int bp_mq_receive(bp_mq_t *q, const char **msg, size_t *len);

/**
 * Wait on the loop until the queue may be written (`writable`) or read:
 * BP_AGAIN, and `waiter` is woken with BP_OK (try again: another process
 * may have been first), with BP_ECANCELED when the queue is closed
 * meanwhile, or with a libuv error. Several waiters may wait at once.
 * Other statuses: the wait did not start (no wake-up).
 */
BP_EXTERN int bp_mq_wait(bp_mq_t *q, int writable, int waiter);

/** Forget `waiter` (its wait ended otherwise: a timeout). */
BP_EXTERN void bp_mq_forget(bp_mq_t *q, int waiter);

/**
 * Wait without the loop (poll(2); for code outside the loop's coroutines)
 * until the queue may be written (`writable`) or read: BP_OK, BP_ETIMEDOUT
 * after `timeout` seconds (negative: no limit), or -errno.
 */
BP_EXTERN int bp_mq_wait_blocking(bp_mq_t *q, int writable, double timeout);

/** mq_unlink(name): BP_OK or -errno. The queue goes once its last user closes it. */
BP_EXTERN int bp_mq_unlink(const char *name);

/**
 * Close the queue (NULL: nothing). Waiters still waiting are woken with
 * BP_ECANCELED from the loop; the memory is freed once the loop lets go.
 */
BP_EXTERN void bp_mq_close(bp_mq_t *q);

#endif
