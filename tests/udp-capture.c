/* A StatsD stand-in for the integration tests: receives UDP datagrams.
 *
 *   udp-capture PORTFILE OUTFILE
 *
 * Binds 127.0.0.1 on a free port and writes "N\n" to PORTFILE. Each datagram
 * received is appended to OUTFILE followed by a line "--" (so tests can count
 * datagrams and read their lines), and flushed at once. Runs until killed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  static char buf[70000];
  FILE *out, *pf;
  int fd;
  if (argc != 3) {
    fprintf(stderr, "usage: udp-capture PORTFILE OUTFILE\n");
    return 2;
  }
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    perror("udp-capture");
    return 1;
  }
  if (!(out = fopen(argv[2], "a"))) {
    perror(argv[2]);
    return 1;
  }
  if (!(pf = fopen(argv[1], "w"))) {
    perror(argv[1]);
    return 1;
  }
  fprintf(pf, "%d\n", ntohs(a.sin_port));
  fclose(pf);
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) continue;
    fwrite(buf, 1, (size_t)n, out);
    fputs("\n--\n", out);
    fflush(out);
  }
}
