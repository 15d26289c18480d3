/* The memcache client's reply parser (src/clients/memcache_reader.h) on
 * hostile bytes. The first two bytes pick the batch (up to 8 commands of
 * every kind: gets with 1 to 4 keys, stats with as many statistics at
 * most, version, noreply commands and the sync after them) and the size
 * limit; the rest is the
 * server's answer. It is parsed whole, then again in pieces (as reads
 * bring it): both must agree on everything, BP_AGAIN must ask for more
 * than it has, and every reply and value must lie inside the input. */
#include <baseplate.h>

#include "clients/memcache_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-memcache: %s\n", what);
    abort();
  }
}

static int parse_in_pieces(bp__mc_reader_t *r, const unsigned char *data, size_t len,
                           unsigned seed) {
  size_t have = 0;
  int rc;
  /* Nothing yet (what noreply commands owe, nothing, is known at once). */
  rc = bp__mc_parse(r, "", 0);
  while (rc == BP_AGAIN && have < len) {
    size_t step = 1 + (seed = seed * 1103515245u + 12345u) % 97;
    have = have + step > len ? len : have + step;
    /* A copy of exactly what came so far: reading past it is caught. */
    char *buf = malloc(have ? have : 1);
    memcpy(buf, data, have);
    rc = bp__mc_parse(r, buf, have);
    if (rc == BP_AGAIN) check(r->need > have, "BP_AGAIN without asking for more bytes");
    free(buf);
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  bp__mc_expect_t expect[8];
  bp__mc_reader_t whole, pieces;
  int n, i, rc1, rc2, nreplied = 0;
  size_t max_item;

  if (size < 2) return 0;
  n = 1 + data[0] % 8;
  for (i = 0; i < n; i++) {
    unsigned k = (data[0] / 8 + (unsigned)i * 7 + data[1]) % BP__MC_NKINDS;
    expect[i].kind = (unsigned char)(k + 1);
    expect[i].gets = (unsigned char)((data[1] >> i) & 1);
    expect[i].nkeys = 1 + (unsigned)((data[1] + i) % 4);
    if (expect[i].kind != BP__MC_SYNC) nreplied++;
  }
  max_item = (data[1] & 0x80) ? 16 : BP_MEMCACHE_DEFAULT_MAX_ITEM;
  data += 2;
  size -= 2;

  memset(&whole, 0, sizeof whole);
  memset(&pieces, 0, sizeof pieces);
  bp__mc_reader_reset(&whole, expect, n, max_item);
  bp__mc_reader_reset(&pieces, expect, n, max_item);

  {
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    rc1 = bp__mc_parse(&whole, buf, size);
    free(buf);
  }
  rc2 = parse_in_pieces(&pieces, data, size, (unsigned)size);

  check(rc1 == BP_OK || rc1 == BP_AGAIN || rc1 == BP_EIO || rc1 == BP_ETOOBIG, "an unknown status");
  check(rc1 == rc2, "whole and in pieces disagree on the status");
  check(whole.nreplies == pieces.nreplies && whole.nitems == pieces.nitems, "whole and in pieces disagree");
  check(whole.nreplies <= nreplied, "more replies than commands");
  check(whole.ei <= n && whole.ei == pieces.ei, "read past the commands, or whole and in pieces disagree");
  if (rc1 == BP_OK) check(whole.nreplies == nreplied && whole.pos <= size, "BP_OK before every reply");
  for (i = 0; i < whole.nreplies; i++) {
    const bp__mc_reply_t *a = &whole.replies[i], *b = &pieces.replies[i];
    check(a->kind >= BP_MEMCACHE_STORED && a->kind <= BP_MEMCACHE_NOREPLY, "a reply of no kind");
    check(a->kind == b->kind && a->number == b->number && a->text_off == b->text_off &&
              a->text_len == b->text_len,
          "a reply differs");
    check(a->text_off + a->text_len <= size, "a reply's text outside the input");
  }
  for (i = 0; i < whole.nitems; i++) {
    const bp__mc_item_t *a = &whole.items[i], *b = &pieces.items[i];
    check(memcmp(a, b, sizeof *a) == 0, "a value differs");
    check(a->key_len >= 1 && a->key_len <= BP_MEMCACHE_MAX_KEY, "a key of a bad length");
    check(a->key_off + a->key_len <= size && a->data_off + a->data_len <= size,
          "a value outside the input");
    check(a->data_len <= max_item || a->data_len < BP__MC_MAX_LINE, "a value larger than the limit");
    check(a->reply >= 0 && a->reply < nreplied, "a value for a reply that is not there");
    {
      /* the command the value's reply answers (syncs have no reply) */
      int j, r = -1;
      for (j = 0; j < n; j++)
        if (expect[j].kind != BP__MC_SYNC && ++r == a->reply) break;
      check(j < n && (expect[j].kind == BP__MC_RETRIEVE || expect[j].kind == BP__MC_STATS),
            "a value for a command that is not a get or stats");
      check(expect[j].kind != BP__MC_STATS || a->data_off >= a->key_off + a->key_len,
            "a statistic's value before its name");
    }
  }
  bp__mc_reader_free(&whole);
  bp__mc_reader_free(&pieces);
  return 0;
}
