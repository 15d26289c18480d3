/* Private: the memcache client's reply parser (src/clients/memcache.c),
 * apart from the connection so that tests/fuzz/fuzz-memcache.c drives it
 * directly.
 *
 * The reader is given what each command of a batch expects and the bytes
 * received so far (one buffer that only grows during a batch: what was
 * parsed is kept, and replies point into it by offset). Every reply is
 * checked against its command; sizes are bounded before anything waits for
 * them: lines at most BP__MC_MAX_LINE bytes, values at most max_item bytes,
 * at most as many values as the get asked keys.
 *
 * Replies: one per command but SYNC (in the order of the commands), so that
 * reply i answers the i-th command the caller queued; a value's `reply` is
 * that index. */
#ifndef BASEPLATE_CLIENTS_MEMCACHE_READER_H
#define BASEPLATE_CLIENTS_MEMCACHE_READER_H

#include <stddef.h>
#include <stdint.h>

#define BP__MC_MAX_LINE 1024

/* What a command expects. */
enum {
  BP__MC_RETRIEVE = 1, /* get / gets / gat / gats */
  BP__MC_STORE,        /* set, add, replace, append, prepend */
  BP__MC_CAS,
  BP__MC_DELETE,
  BP__MC_ARITH, /* incr / decr */
  BP__MC_TOUCH,
  BP__MC_FLUSH,   /* flush_all, cache_memlimit: OK */
  BP__MC_STATS,   /* STAT lines (values), then END; or RESET / OK */
  BP__MC_VERSION, /* VERSION <text> */
  BP__MC_NOREPLY, /* a command sent with noreply: nothing is read, its reply is BP_MEMCACHE_NOREPLY */
  BP__MC_SYNC     /* "version" sent after noreply commands: every line up to its VERSION is
                   * what those commands may still have said (an error), skipped; no reply */
};
#define BP__MC_NKINDS BP__MC_SYNC

typedef struct {
  unsigned char kind;
  unsigned char gets; /* RETRIEVE: values carry a CAS unique */
  unsigned nkeys;     /* RETRIEVE: at most this many values; STATS: statistics; SYNC: lines skipped */
} bp__mc_expect_t;

typedef struct {
  int kind; /* BP_MEMCACHE_STORED… */
  uint64_t number;
  size_t text_off, text_len; /* an error reply's message */
} bp__mc_reply_t;

typedef struct {
  size_t key_off, key_len, data_off, data_len;
  uint32_t flags;
  uint64_t cas;
  int reply;
} bp__mc_item_t;

typedef struct {
  const bp__mc_expect_t *expect;
  int nexpect;
  int ei;          /* the command whose reply is read next */
  unsigned skipped; /* SYNC: lines skipped so far */
  bp__mc_reply_t *replies;
  int nreplies, rcap;
  bp__mc_item_t *items;
  int nitems, icap;
  unsigned in_reply; /* values of the get (statistics of the stats) being read */
  size_t pos;        /* where parsing goes on */
  size_t need;       /* after BP_AGAIN: the buffer's length before anything more can be parsed */
  size_t max_item;
  char err[200];
} bp__mc_reader_t;

/* Begin a batch of nexpect commands (the array stays the caller's, unchanged
 * until the batch is read); the last batch's replies are dropped. */
void bp__mc_reader_reset(bp__mc_reader_t *r, const bp__mc_expect_t *expect, int nexpect,
                         size_t max_item);

/* Parse buf[r->pos..len): BP_OK once every reply is in (r->pos is then past
 * the last: bytes after it are more than the server owed), BP_AGAIN for
 * more bytes, BP_EIO (the server broke the protocol), BP_ETOOBIG (a value
 * larger than max_item), BP_ENOMEM; r->err says why. `buf` is the same
 * bytes each call, perhaps moved, perhaps longer. */
int bp__mc_parse(bp__mc_reader_t *r, const char *buf, size_t len);

void bp__mc_reader_free(bp__mc_reader_t *r);

#endif
