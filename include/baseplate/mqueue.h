/*
 * POSIX message queues as Baseplate.py opens them (the trace queue, later
 * baseplate.lib.message_queue): created if missing with the asked sizes,
 * and, when those are above this system's limits (/proc/sys/fs/mqueue:
 * an unprivileged process, a container), as large as the limits allow.
 */
#ifndef BASEPLATE_MQUEUE_H
#define BASEPLATE_MQUEUE_H

#include "common.h"
#include <mqueue.h>

/**
 * mq_open(name, oflag | O_CREAT | O_CLOEXEC, 0644) for `max_messages` of at
 * most `max_message_size` bytes, shrunk to the system's limits if needed.
 * Returns the descriptor, or (mqd_t)-1 with errno set; *attr (may be NULL)
 * gets the queue's real sizes, *shrunk (may be NULL) whether they are
 * below the ones asked for.
 */
BP_EXTERN mqd_t bp_mq_open(const char *name, int oflag, long max_messages, long max_message_size,
                           struct mq_attr *attr, int *shrunk);

#endif
