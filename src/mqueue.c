/* POSIX message queues within the system's limits (include/baseplate/mqueue.h). */
#include "baseplate/mqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

static long read_limit(const char *path, long dflt) {
  FILE *f = fopen(path, "r");
  long v = dflt;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1 || v < 1) v = dflt;
    fclose(f);
  }
  return v;
}

mqd_t bp_mq_open(const char *name, int oflag, long max_messages, long max_message_size,
                 struct mq_attr *attr, int *shrunk) {
  struct mq_attr a = {.mq_maxmsg = max_messages, .mq_msgsize = max_message_size};
  mqd_t mq = mq_open(name, oflag | O_CREAT | O_CLOEXEC, 0644, &a);
  if (mq == (mqd_t)-1 && errno == EINVAL) {
    long maxmsg = read_limit("/proc/sys/fs/mqueue/msg_max", max_messages);
    long msgsize = read_limit("/proc/sys/fs/mqueue/msgsize_max", max_message_size);
    a.mq_maxmsg = maxmsg < max_messages ? maxmsg : max_messages;
    a.mq_msgsize = msgsize < max_message_size ? msgsize : max_message_size;
    mq = mq_open(name, oflag | O_CREAT | O_CLOEXEC, 0644, &a);
  }
  if (mq == (mqd_t)-1) return mq;
  if (mq_getattr(mq, &a) != 0) {
    a.mq_maxmsg = max_messages;
    a.mq_msgsize = max_message_size;
  }
  if (attr) *attr = a;
  if (shrunk) *shrunk = a.mq_maxmsg < max_messages || a.mq_msgsize < max_message_size;
  return mq;
}
