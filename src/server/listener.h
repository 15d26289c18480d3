/* Listening sockets, whatever protocol is served on them (internal to the
 * server core: the public API is in include/baseplate/runtime.h). */
#ifndef BP_SERVER_LISTENER_H
#define BP_SERVER_LISTENER_H

#include "baseplate/runtime.h"

struct bp_listener_s {
  int fd;     /* -1 once a server has taken it */
  int family; /* AF_INET, AF_INET6 or AF_UNIX */
  char describe[160];
};

#endif
