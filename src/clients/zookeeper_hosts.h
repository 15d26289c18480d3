/* zookeeper.hosts, checked before ZooKeeper's library sees it (which takes
 * a port of 99999 as 34463 and, with spaces after the commas, looks up
 * names that begin with a space). Internal; its fuzz target is
 * tests/fuzz/fuzz-zkhosts.c. */
#ifndef BP_CLIENTS_ZOOKEEPER_HOSTS_H
#define BP_CLIENTS_ZOOKEEPER_HOSTS_H

#include <stddef.h>

#define BP_ZK_MAX_HOSTS 8192 /* bytes of zookeeper.hosts */

/* `hosts` (`len` bytes, no terminator needed): host:port pairs separated
 * by commas (spaces around them allowed), a host a name, an IPv4 address
 * or a bracketed IPv6 one, a port 1-65535, then optionally a chroot /a/b.
 * BP_OK with the same without spaces in `out` (NUL terminated; a chroot of
 * "/" dropped), or BP_EINVAL with the reason in err. */
int bp__zk_check_hosts(const char *hosts, size_t len, char *out, size_t outlen, char *err, size_t errlen);

#endif
