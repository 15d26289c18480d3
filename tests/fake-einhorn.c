/* A small stand-in for Einhorn's master, for tests/integration/test-einhorn.sh.
 *
 *   fake-einhorn OUTFILE COMMAND [ARGS...]
 *
 * Binds a listening socket on 127.0.0.1 (a free port), listens for the
 * worker's manual ACK on a UNIX socket, and runs COMMAND as its child with
 * EINHORN_MASTER_PID, EINHORN_FD_COUNT, EINHORN_FD_0, EINHORN_FD_FAMILY_0 and
 * EINHORN_SOCK_PATH set, as Einhorn does. OUTFILE receives "port N", then the
 * ACK line ("ack {...}"), then "exit STATUS". SIGTERM/SIGINT are passed to
 * the child. Exits with the child's status. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

int main(int argc, char **argv) {
  struct sockaddr_in in;
  struct sockaddr_un un;
  socklen_t len = sizeof in;
  char buf[64], path[108], line[512];
  FILE *out;
  int s, u, one = 1, st;

  if (argc < 3) {
    fprintf(stderr, "usage: fake-einhorn OUTFILE COMMAND [ARGS...]\n");
    return 2;
  }
  if (!(out = fopen(argv[1], "w"))) return 2;
  setvbuf(out, NULL, _IOLBF, 0);

  s = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&in, 0, sizeof in);
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&in, sizeof in) || listen(s, 128) ||
      getsockname(s, (struct sockaddr *)&in, &len)) {
    perror("fake-einhorn: listen");
    return 2;
  }
  fprintf(out, "port %d\n", ntohs(in.sin_port));

  snprintf(path, sizeof path, "/tmp/fake-einhorn-%d.sock", (int)getpid());
  unlink(path);
  u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, path);
  if (bind(u, (struct sockaddr *)&un, sizeof un) || listen(u, 8)) {
    perror("fake-einhorn: command socket");
    return 2;
  }

  signal(SIGTERM, forward);
  signal(SIGINT, forward);
  child = fork();
  if (child == 0) {
    snprintf(buf, sizeof buf, "%d", (int)getppid());
    setenv("EINHORN_MASTER_PID", buf, 1);
    setenv("EINHORN_FD_COUNT", "1", 1);
    snprintf(buf, sizeof buf, "%d", s);
    setenv("EINHORN_FD_0", buf, 1);
    setenv("EINHORN_FD_FAMILY_0", "AF_INET", 1);
    setenv("EINHORN_SOCK_PATH", path, 1);
    execvp(argv[2], argv + 2);
    perror("fake-einhorn: exec");
    _exit(127);
  }
  close(s);

  struct pollfd p = {u, POLLIN, 0};
  if (poll(&p, 1, 15000) == 1) {
    int c = accept(u, NULL, NULL);
    ssize_t n = c >= 0 ? read(c, line, sizeof line - 1) : -1;
    if (n > 0) {
      line[n] = '\0';
      fprintf(out, "ack %s", line);
    }
    if (c >= 0) close(c);
  } else {
    fprintf(out, "no ack\n");
  }
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
  }
  fprintf(out, "exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
