/* INI files: configparser semantics on top of inih, and the error messages. */
#include <baseplate.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp-test.h"

static char err[512];

static bp_ini_t *parse(const char *text) {
  bp_ini_t *ini = NULL;
  err[0] = '\0';
  if (bp_ini_parse(text, strlen(text), "test.ini", &ini, err, sizeof err) != BP_OK) return NULL;
  return ini;
}

static void test_sections_and_default(void) {
  bp_ini_t *ini = parse(
      "[DEFAULT]\nshared = 1\nover = default\n\n"
      "[app:main]\nfactory = helloworld:make_app\nover = app\nnoodles.blah = one, two\n"
      "MixedCase = kept value\n\n[server:main]\nfactory = baseplate.server.http\n");
  CHECK(ini != NULL);
  if (!ini) return;
  CHECK_INT(bp_ini_section_count(ini), 2);
  CHECK_STR(bp_section_name(bp_ini_section_at(ini, 0)), "app:main");
  const bp_section_t *app = bp_ini_section(ini, "app:main");
  CHECK(app != NULL);
  CHECK_STR(bp_section_get(app, "factory"), "helloworld:make_app");
  CHECK_STR(bp_section_get(app, "shared"), "1");
  CHECK_STR(bp_section_get(app, "over"), "app");
  CHECK_STR(bp_section_get(app, "noodles.blah"), "one, two");
  CHECK_STR(bp_section_get(app, "mixedcase"), "kept value"); /* keys lower-cased */
  CHECK(bp_section_get(app, "missing") == NULL);
  CHECK_INT(bp_section_own_count(app), 4);
  CHECK_INT(bp_section_count(app), 5);
  CHECK_INT(bp_section_line(app, "over"), 7);
  const bp_section_t *srv = bp_ini_section(ini, "server:main");
  CHECK_STR(bp_section_get(srv, "over"), "default");
  CHECK(bp_ini_section(ini, "DEFAULT") == NULL);
  CHECK(bp_ini_section(ini, "app:other") == NULL);
  bp_ini_free(ini);
}

static void test_empty_section_exists(void) {
  bp_ini_t *ini = parse("[empty]\n[app:main]\nfactory = x:y\n");
  CHECK(ini && bp_ini_section(ini, "empty") != NULL);
  bp_ini_free(ini);
}

static void test_env_expansion(void) {
  setenv("BP_INI_TEST_VAR", "expanded", 1);
  unsetenv("BP_INI_TEST_UNSET");
  bp_ini_t *ini = parse(
      "[a]\nx = $BP_INI_TEST_VAR\ny = ${BP_INI_TEST_VAR}/path\nz = $BP_INI_TEST_UNSET and "
      "${BP_INI_TEST_UNSET}\nw = cost $5 and $ alone\nv = %(x)s\n");
  CHECK(ini != NULL);
  if (!ini) return;
  const bp_section_t *s = bp_ini_section(ini, "a");
  CHECK_STR(bp_section_get(s, "x"), "expanded");
  CHECK_STR(bp_section_get(s, "y"), "expanded/path");
  CHECK_STR(bp_section_get(s, "z"), "$BP_INI_TEST_UNSET and ${BP_INI_TEST_UNSET}");
  CHECK_STR(bp_section_get(s, "w"), "cost $5 and $ alone");
  CHECK_STR(bp_section_get(s, "v"), "%(x)s"); /* no interpolation */
  bp_ini_free(ini);
}

static void test_continuation_and_comments(void) {
  bp_ini_t *ini = parse(
      "; a comment\n# another\n[a]\nlist = one,\n  two,\n  three\nafter = 1\nempty =\n"
      "colon: separated\n");
  CHECK(ini != NULL);
  if (!ini) return;
  const bp_section_t *s = bp_ini_section(ini, "a");
  CHECK_STR(bp_section_get(s, "list"), "one,\ntwo,\nthree");
  CHECK_STR(bp_section_get(s, "after"), "1");
  CHECK_STR(bp_section_get(s, "empty"), "");
  CHECK_STR(bp_section_get(s, "colon"), "separated");
  bp_ini_free(ini);
}

static void test_long_lines(void) {
  /* inih's own buffer is 200 bytes: longer values must arrive whole. */
  char text[8192], value[5001];
  for (int i = 0; i < 5000; i++) value[i] = (char)('a' + i % 26);
  value[5000] = '\0';
  /* with spaces and comment characters around chunk boundaries too */
  memcpy(value + 189, " ; # ", 5);
  memcpy(value + 380, "   ", 3);
  snprintf(text, sizeof text, "[a]\nlong = %s\nnext = ok\n", value);
  bp_ini_t *ini = parse(text);
  CHECK(ini != NULL);
  if (!ini) return;
  const bp_section_t *s = bp_ini_section(ini, "a");
  CHECK_STR(bp_section_get(s, "long"), value);
  CHECK_STR(bp_section_get(s, "next"), "ok");
  bp_ini_free(ini);
}

static void test_errors(void) {
  CHECK(parse("[a]\nx = 1\nx = 2\n") == NULL);
  CHECK_STR(err, "test.ini:3: key 'x' already set in this section (line 2)");
  CHECK(parse("[a]\nx = 1\n[a]\ny = 2\n") == NULL);
  CHECK_STR(err, "test.ini:3: section 'a' already exists (line 1)");
  CHECK(parse("x = 1\n[a]\n") == NULL);
  CHECK_STR(err, "test.ini:1: key 'x' outside of any section");
  CHECK(parse("[a]\nx = 1\nnot a key value line\n") == NULL);
  CHECK_STR(err, "test.ini:3: syntax error (expected '[section]', 'key = value' or a comment)");
  CHECK(parse("[a\nx = 1\n") == NULL);
  CHECK_STR(err, "test.ini:1: section header without a closing ']'");
  {
    bp_ini_t *ini = NULL;
    const char nul[] = "[a]\nx = 1\0y\n";
    CHECK_INT(bp_ini_parse(nul, sizeof nul - 1, "test.ini", &ini, err, sizeof err), BP_EINVAL);
    CHECK_STR(err, "test.ini:2: NUL byte in line");
  }
  {
    size_t n = 70000;
    char *big = malloc(n + 16);
    memcpy(big, "[a]\nx = ", 8);
    memset(big + 8, 'b', n);
    strcpy(big + 8 + n, "\n");
    CHECK(parse(big) == NULL);
    CHECK_STR(err, "test.ini:2: line longer than 65535 bytes");
    free(big);
  }
}

/* Windows editors may start a file with a UTF-8 byte order mark. */
static void test_byte_order_mark(void) {
  bp_ini_t *ini = parse("\xef\xbb\xbf[app:main]\nfactory = x:y\n");
  CHECK(ini != NULL);
  if (!ini) return;
  CHECK_STR(bp_section_get(bp_ini_section(ini, "app:main"), "factory"), "x:y");
  CHECK_INT(bp_section_line(bp_ini_section(ini, "app:main"), "factory"), 2);
  bp_ini_free(ini);
}

static void test_load_file(void) {
  bp_ini_t *ini = NULL;
  CHECK_INT(bp_ini_load("/nonexistent/x.ini", &ini, err, sizeof err), BP_ENOENT);
  CHECK_STR(err, "/nonexistent/x.ini: cannot read config file: No such file or directory");
  CHECK_INT(bp_ini_load("/", &ini, err, sizeof err), BP_ENOENT);
  CHECK_STR(err, "/: cannot read config file: Is a directory");
  char path[] = "/tmp/bp-ini-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char *text = "[app:main]\r\nfactory = a:b\r\n";
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  CHECK_INT(bp_ini_load(path, &ini, err, sizeof err), BP_OK);
  CHECK_STR(bp_ini_path(ini), path);
  CHECK_STR(bp_section_get(bp_ini_section(ini, "app:main"), "factory"), "a:b"); /* CRLF */
  bp_ini_free(ini);
  unlink(path);
  bp_ini_free(NULL);
}

int main(void) {
  RUN(test_sections_and_default);
  RUN(test_empty_section_exists);
  RUN(test_env_expansion);
  RUN(test_continuation_and_comments);
  RUN(test_long_lines);
  RUN(test_errors);
  RUN(test_byte_order_mark);
  RUN(test_load_file);
  return bp_test_summary();
}
