/*
 * Listening sockets, whatever protocol is served on them: bound here
 * ("host:port", "[v6]:port", a UNIX path), reserved for worker processes,
 * or inherited (Einhorn, a supervisor), and Einhorn's manual ACK.
 */
#include "server/listener.h"
#include "baseplate/config.h"
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* "('127.0.0.1', 9090)" as Baseplate.py logs an address, or the UNIX path. */
static void describe_sockaddr(const struct sockaddr_storage *ss, char *desc, size_t desclen) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port;
  if (ss->ss_family == AF_UNIX) {
    snprintf(desc, desclen, "%s", ((const struct sockaddr_un *)ss)->sun_path);
    return;
  }
  if (ss->ss_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
  } else {
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  }
  snprintf(desc, desclen, "('%s', %d)", ip, port);
}

/* Turn an endpoint (bp_config_parse_endpoint's forms) into a socket address.
 * Host names are resolved here, once, at start-up. */
static int parse_endpoint(const char *ep, struct sockaddr_storage *ss, socklen_t *len,
                          char *desc, size_t desclen, char *err, size_t errlen) {
  bp_endpoint_t e;
  struct addrinfo hints, *res = NULL;
  char port[16], reason[256];
  int rc;

  memset(ss, 0, sizeof *ss);
  if (bp_config_parse_endpoint(ep, strlen(ep), &e, reason, sizeof reason) != BP_OK) {
    snprintf(err, errlen, "%s: %s", ep, reason);
    return BP_EINVAL;
  }
  if (e.family == BP_AF_UNIX) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, e.path, sizeof un->sun_path);
    *len = sizeof *un;
    snprintf(desc, desclen, "%s", e.path);
    return BP_OK;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = e.family == BP_AF_INET6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(port, sizeof port, "%d", e.port);
  /* "*:80" and ":80" (Baseplate.py's "" host) listen on every IPv4 interface. */
  if (strcmp(e.host, "*") == 0 || e.host[0] == '\0') strcpy(e.host, "0.0.0.0");
  if ((rc = getaddrinfo(e.host, port, &hints, &res)) != 0) {
    snprintf(err, errlen, "%s: cannot resolve '%s': %s", ep, e.host, gai_strerror(rc));
    return BP_EINVAL;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  describe_sockaddr(ss, desc, desclen);
  return BP_OK;
}

static bp_listener_t *listener_new(const char *endpoint, int do_listen, int backlog, int reuseport,
                                   char *err, size_t errlen);

bp_listener_t *bp_listener_open(const char *endpoint, int backlog, int flags, char *err,
                                size_t errlen) {
  return listener_new(endpoint, 1, backlog, flags & BP_LISTEN_REUSEPORT, err, errlen);
}

bp_listener_t *bp_listener_reserve(const char *endpoint, int flags, char *err, size_t errlen) {
  bp_listener_t *probe;
  if (strchr(endpoint, '/')) {
    snprintf(err, errlen, "%s: a UNIX socket cannot be reserved for workers", endpoint);
    return NULL;
  }
  /* The port must be free before our own workers share it: a bind without
   * SO_REUSEPORT fails if any socket holds it, shared or not. */
  if (!(flags & BP_LISTEN_REUSEPORT)) {
    if (!(probe = listener_new(endpoint, 0, 0, 0, err, errlen))) return NULL;
    bp_listener_free(probe);
  }
  return listener_new(endpoint, 0, 0, 1, err, errlen);
}

static bp_listener_t *listener_new(const char *endpoint, int do_listen, int backlog, int reuseport,
                                   char *err, size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t len;
  bp_listener_t *l = calloc(1, sizeof *l);
  int one = 1;

  if (!l) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (parse_endpoint(endpoint, &ss, &len, l->describe, sizeof l->describe, err, errlen)) {
    free(l);
    return NULL;
  }
  l->family = ss.ss_family;
  l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->fd < 0) {
    snprintf(err, errlen, "%s: socket: %s", endpoint, strerror(errno));
    free(l);
    return NULL;
  }
  if (ss.ss_family != AF_UNIX) {
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  } else {
    /* A socket file left by a previous run that nobody accepts on any more
     * would make bind fail: remove it (never a live one, nor a non-socket). */
    struct sockaddr_un *un = (struct sockaddr_un *)&ss;
    struct stat st;
    if (stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe >= 0 && connect(probe, (struct sockaddr *)un, len) != 0 && errno == ECONNREFUSED)
        unlink(un->sun_path);
      if (probe >= 0) close(probe);
    }
  }
  if (bind(l->fd, (struct sockaddr *)&ss, len) != 0 ||
      (do_listen && listen(l->fd, backlog > 0 ? backlog : 511) != 0)) {
    snprintf(err, errlen, "%s: cannot listen: %s", endpoint, strerror(errno));
    close(l->fd);
    free(l);
    return NULL;
  }
  return l;
}

bp_listener_t *bp_listener_from_fd(int fd, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int type = 0, listening = 0;
  socklen_t olen = sizeof type;
  bp_listener_t *l;

  if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    snprintf(err, errlen, "fd %d: not a socket: %s", fd, strerror(errno));
    return NULL;
  }
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen);
  olen = sizeof listening;
  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen);
  if (type != SOCK_STREAM || !listening) {
    snprintf(err, errlen, "fd %d: not a listening stream socket", fd);
    return NULL;
  }
  if (!(l = calloc(1, sizeof *l))) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  l->fd = fd;
  l->family = ss.ss_family;
  describe_sockaddr(&ss, l->describe, sizeof l->describe);
  return l;
}

int bp_einhorn_ack(const char *sock_path, int pid, char *err, size_t errlen) {
  struct sockaddr_un un;
  char msg[96];
  int fd, n;
  if (strlen(sock_path) >= sizeof un.sun_path) {
    snprintf(err, errlen, "EINHORN_SOCK_PATH too long");
    return BP_EINVAL;
  }
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, sock_path);
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
      connect(fd, (struct sockaddr *)&un, sizeof un) != 0) {
    int e = errno;
    snprintf(err, errlen, "cannot reach the Einhorn master at %s: %s", sock_path, strerror(e));
    if (fd >= 0) close(fd);
    return -e; /* (the status vocabulary: an errno is its negative) */
  }
  n = snprintf(msg, sizeof msg, "{\"command\": \"worker:ack\", \"pid\": %d}\n", pid);
  ssize_t w = write(fd, msg, (size_t)n);
  if (w != n) {
    int e = w < 0 ? errno : EIO; /* (a short write: no errno) */
    snprintf(err, errlen, "cannot send the ACK to %s: %s", sock_path, strerror(e));
    close(fd);
    return -e;
  }
  close(fd);
  return BP_OK;
}

const char *bp_listener_describe(const bp_listener_t *l) { return l->describe; }

int bp_listener_fd(const bp_listener_t *l) { return l->fd; }

void bp_listener_free(bp_listener_t *l) {
  if (!l) return;
  if (l->fd >= 0) close(l->fd);
  free(l);
}

