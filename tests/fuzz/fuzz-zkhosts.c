/* zookeeper.hosts (src/clients/zookeeper.c, bp__zk_check_hosts): checked
 * and normalised before ZooKeeper's library sees it. The input is the
 * value. Either BP_OK with a normalised string no longer than the input,
 * without spaces, which the check accepts again unchanged, or BP_EINVAL
 * with a reason; never a crash or a read past the value. */
#include <baseplate.h>

#include "clients/zookeeper_hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-zkhosts: %s\n", what);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char out[BP_ZK_MAX_HOSTS + 1], again[BP_ZK_MAX_HOSTS + 1], err[256];
  char *copy = malloc(size ? size : 1); /* (no terminator: ASan sees any overread) */
  int rc;
  memcpy(copy, data, size);
  memset(err, 0, sizeof err);
  rc = bp__zk_check_hosts(copy, size, out, sizeof out, err, sizeof err);
  check(rc == BP_OK || rc == BP_EINVAL, "unexpected status");
  if (rc == BP_OK) {
    size_t n = strlen(out);
    check(n <= size, "longer than the input");
    check(n > 0, "an empty result");
    check(strchr(out, ' ') == NULL && strchr(out, '\t') == NULL, "spaces left");
    rc = bp__zk_check_hosts(out, n, again, sizeof again, err, sizeof err);
    check(rc == BP_OK, "the result is refused");
    check(strcmp(out, again) == 0, "the result changes when checked again");
  } else {
    check(memchr(err, 0, sizeof err) != NULL && err[0] != 0, "an error without a reason");
  }
  free(copy);
  return 0;
}
