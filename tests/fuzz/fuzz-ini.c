/* INI files (src/ini.c): any bytes parse or give an error, never a crash,
 * and what parsed can be walked and looked up. */
#include <baseplate.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz-ini: %s\n", what);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  bp_ini_t *ini = NULL;
  char err[512];
  int rc;

  err[0] = '\0';
  rc = bp_ini_parse((const char *)data, size, "fuzz.ini", &ini, err, sizeof err);
  if (rc != BP_OK) {
    check(ini == NULL, "a failed parse returned a file");
    check(rc == BP_EINVAL || rc == BP_ENOMEM, "unexpected error code");
    check(err[0] != '\0' && strlen(err) < sizeof err, "an error without a reason");
    return 0;
  }
  check(ini != NULL, "no file after a successful parse");
  for (int i = 0, n = bp_ini_section_count(ini); i < n; i++) {
    const bp_section_t *s = bp_ini_section_at(ini, i);
    const char *name = bp_section_name(s);
    int own = bp_section_own_count(s), count = bp_section_count(s);
    check(s && name, "a section without a name");
    check(own >= 0 && own <= count, "own keys outnumber all keys");
    check(bp_ini_section(ini, name) != NULL, "a section cannot be found by its name");
    for (int k = 0; k < count; k++) {
      const char *key, *value;
      check(bp_section_item(s, k, &key, &value) == BP_OK, "an item in range is missing");
      /* The first item with a key is the one a lookup finds. */
      const char *got = bp_section_get(bp_ini_section(ini, name), key);
      check(got != NULL, "a key cannot be found");
      (void)bp_section_line(s, key);
      (void)strlen(value);
    }
    check(bp_section_item(s, count, NULL, NULL) == BP_ENOENT, "an item past the end");
  }
  check(bp_ini_section_at(ini, bp_ini_section_count(ini)) == NULL, "a section past the end");
  bp_ini_free(ini);
  return 0;
}
