/* A StatsD stand-in for the integration tests: receives UDP datagrams.
 *
 *   udp-capture PORTFILE OUTFILE
 *   udp-capture PORTFILE --discard
 *
 * Binds 127.0.0.1 on a free port and writes "N\n" to PORTFILE. Each datagram
 * received is appended to OUTFILE followed by a line "--" (so tests can count
 * datagrams and read their lines), and flushed at once. With --discard (the
 * benchmarks' sink) datagrams are read, up to 64 per system call, and
 * dropped. Runs until killed. */
#define _GNU_SOURCE /* recvmmsg */
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
  FILE *out = NULL, *pf;
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
  if (strcmp(argv[2], "--discard") != 0 && !(out = fopen(argv[2], "a"))) {
    perror(argv[2]);
    return 1;
  }
  if (!(pf = fopen(argv[1], "w"))) {
    perror(argv[1]);
    return 1;
  }
  fprintf(pf, "%d\n", ntohs(a.sin_port));
  fclose(pf);
  if (strcmp(argv[2], "--discard") == 0) {
    static char bufs[64][2048];
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < 64; i++) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = sizeof bufs[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (;;) (void)recvmmsg(fd, msgs, 64, MSG_WAITFORONE, NULL);
  }
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) continue;
    fwrite(buf, 1, (size_t)n, out);
    fputs("\n--\n", out);
    fflush(out);
  }
}
