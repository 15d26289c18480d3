/* zookeeper.hosts as the ZooKeeper client checks and normalises it before
 * ZooKeeper's library sees it (src/clients/zookeeper.c). */
#include "baseplate/common.h"
#include "bp-test.h"
#include "clients/zookeeper_hosts.h"

#include <string.h>

static char out[BP_ZK_MAX_HOSTS + 1], err[256];

static const char *ok(const char *in) {
  err[0] = 0;
  CHECK_INT(bp__zk_check_hosts(in, strlen(in), out, sizeof out, err, sizeof err), BP_OK);
  CHECK_STR(err, "");
  return out;
}

static const char *bad(const char *in) {
  err[0] = 0;
  CHECK_INT(bp__zk_check_hosts(in, strlen(in), out, sizeof out, err, sizeof err), BP_EINVAL);
  return err;
}

static void test_accepted(void) {
  CHECK_STR(ok("zk01:2181"), "zk01:2181");
  CHECK_STR(ok("zk01:2181,zk02:2181"), "zk01:2181,zk02:2181");
  CHECK_STR(ok("zk01:2181, zk02:2181"), "zk01:2181,zk02:2181"); /* (the reference's documentation writes it so) */
  CHECK_STR(ok("  zk01:2181 ,\tzk02:2181  "), "zk01:2181,zk02:2181");
  CHECK_STR(ok("zk01:2181,zk02:2181/some/root"), "zk01:2181,zk02:2181/some/root");
  CHECK_STR(ok("zk01:2181/"), "zk01:2181"); /* (a chroot of / is none) */
  CHECK_STR(ok("127.0.0.1:1,[::1]:65535"), "127.0.0.1:1,[::1]:65535");
  CHECK_STR(ok("[fe80::1:2]:2181/x"), "[fe80::1:2]:2181/x");
}

static void test_refused(void) {
  CHECK_CONTAINS(bad(""), "an empty host");
  CHECK_CONTAINS(bad("zk01"), "without :port");
  CHECK_CONTAINS(bad("zk01:"), "1-65535");
  CHECK_CONTAINS(bad("zk01:0"), "1-65535");
  CHECK_CONTAINS(bad("zk01:65536"), "1-65535");
  CHECK_CONTAINS(bad("zk01:99999"), "1-65535"); /* (the library would take it as 34463) */
  CHECK_CONTAINS(bad("zk01:2181x"), "unexpected text");
  CHECK_CONTAINS(bad("zk01:2181,"), "an empty host");
  CHECK_CONTAINS(bad("a:1,,b:2"), "an empty host");
  CHECK_CONTAINS(bad("zk 01:2181"), "without :port");
  CHECK_CONTAINS(bad("zk\x01:2181"), "control");
  CHECK_CONTAINS(bad("zk01:2181/a//b"), "chroot");
  CHECK_CONTAINS(bad("zk01:2181/a/"), "chroot");
  CHECK_CONTAINS(bad("[::1:2181"), "IPv6");
  CHECK_CONTAINS(bad("[]:2181"), "IPv6");
  CHECK_CONTAINS(bad("[::g]:2181"), "IPv6");
  CHECK_CONTAINS(bad("x"), "zookeeper.hosts: ");
  CHECK_CONTAINS(bad("x"), "(expected host:port[,host:port");
}

static void test_limits(void) {
  static char big[BP_ZK_MAX_HOSTS + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK_CONTAINS(bad(big), "too long");
  /* A value without a terminator is read only up to its length. */
  CHECK_INT(bp__zk_check_hosts("zk:1XXXX", 4, out, sizeof out, err, sizeof err), BP_OK);
  CHECK_STR(out, "zk:1");
  /* An output buffer too small is an error, never an overrun. */
  CHECK_INT(bp__zk_check_hosts("zk01:2181", 9, out, 5, err, sizeof err), BP_EINVAL);
  CHECK_CONTAINS(err, "too long");
}

int main(void) {
  RUN(test_accepted);
  RUN(test_refused);
  RUN(test_limits);
  return bp_test_summary();
}
