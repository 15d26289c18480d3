/* Message signatures (src/crypto.c) on hostile input: a signature is read
 * and checked against a fixed key and message; a readable one must be
 * exactly what bp_signature_make makes for its expiration when it matches,
 * and re-encoding the decoded bytes must check the same way. */
#include <baseplate.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len) {
  const char *sig = (const char *)data;
  static const char key[] = "fuzz-key", msg[] = "fuzz message";
  char made[BP_SIGNATURE_LEN + 1];
  int version, matches;
  int64_t expiration;
  matches = bp_signature_matches(key, sizeof key - 1, msg, sizeof msg - 1, sig, len);
  if (bp_signature_read(sig, len, &version, &expiration) != BP_OK) {
    if (matches) abort(); /* an unreadable signature never matches */
    return 0;
  }
  if (version != 1 || expiration < 0 || expiration > 0xffffffffLL) abort();
  if (bp_signature_make(key, sizeof key - 1, msg, sizeof msg - 1, expiration, made) != BP_OK) abort();
  /* it matches exactly when it is what we would make (padding aside) */
  if (matches != (len >= BP_SIGNATURE_LEN && memcmp(made, sig, BP_SIGNATURE_LEN) == 0)) abort();
  return 0;
}
