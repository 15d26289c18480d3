/* The file watcher's core (src/file_watcher.c) on a real directory: the
 * first check, a file renamed over the watched one (seen through the
 * directory's events: the timer is set to an hour), a write in place, a
 * vanished file, one too big, a read done now, a close while a check is in
 * flight, and loop shutdown; every handle and buffer freed (ASan). */
#include "bp-test.h"
#include "runtime.h"

#include <baseplate/file_watcher.h>
#include <stdint.h>
#include <uv.h>

static char dir[256], path[300];

static void write_file(const char *p, const char *text) {
  FILE *f = fopen(p, "wb");
  fputs(text, f);
  fclose(f);
}

/* As the secrets fetcher writes: a temporary file renamed over the old. */
static void replace(const char *text) {
  char tmp[320];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  write_file(tmp, text);
  rename(tmp, path);
}

static void tick(uv_timer_t *t) { (void)t; }

/* Run the loop until the watch's generation passes `gen` (a referenced
 * timer keeps the loop polling: the watch's own handles do not). */
static int wait_gen(bp_file_watch_t *w, uint64_t gen, double seconds) {
  uv_timer_t t;
  uint64_t deadline = uv_hrtime() + (uint64_t)(seconds * 1e9);
  uv_timer_init(bp_loop(), &t);
  uv_timer_start(&t, tick, 5, 5);
  while (bp_file_watch_generation(w) <= gen && uv_hrtime() < deadline) uv_run(bp_loop(), UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(bp_loop(), UV_RUN_NOWAIT);
  return bp_file_watch_generation(w) > gen;
}

static int content_is(bp_file_watch_t *w, const char *want) {
  const char *data;
  size_t len;
  double mtime;
  if (bp_file_watch_content(w, &data, &len, &mtime) != BP_OK) return 0;
  return len == strlen(want) && memcmp(data, want, len) == 0 && mtime > 1e9;
}

static void test_open_errors(void) {
  bp_file_watch_t *w = (bp_file_watch_t *)1;
  CHECK_INT(bp_file_watch_open("", 100, 1, &w), BP_EINVAL);
  CHECK(w == NULL);
  CHECK_INT(bp_file_watch_open("/tmp/", 100, 1, &w), BP_EINVAL);
  CHECK_INT(bp_file_watch_open(path, 100, 0, &w), BP_EINVAL);
  CHECK_INT(bp_file_watch_open(path, 100, -1, &w), BP_EINVAL);
  bp_file_watch_close(NULL);
}

static void test_changes(void) {
  bp_file_watch_t *w;
  const char *data;
  size_t len;
  double mtime;
  uint64_t gen;
  replace("one");
  CHECK_INT(bp_file_watch_open(path, 100, 3600, &w), BP_OK);
  CHECK_INT(bp_file_watch_content(w, &data, &len, &mtime), BP_AGAIN);
  CHECK(data == NULL);
  CHECK_INT(bp_file_watch_generation(w), 0);
  CHECK(wait_gen(w, 0, 5)); /* the first check runs at once */
  CHECK(content_is(w, "one"));
  bp_file_watch_release(w);

  gen = bp_file_watch_generation(w);
  replace("two!");
  CHECK(wait_gen(w, gen, 5));
  CHECK(content_is(w, "two!"));

  gen = bp_file_watch_generation(w);
  write_file(path, "three, in place");
  CHECK(wait_gen(w, gen, 5));
  /* a write in place may be seen half done: the last event has the whole */
  for (int i = 0; i < 10 && !content_is(w, "three, in place"); i++) wait_gen(w, bp_file_watch_generation(w), 0.2);
  CHECK(content_is(w, "three, in place"));

  gen = bp_file_watch_generation(w);
  unlink(path);
  CHECK(wait_gen(w, gen, 5));
  CHECK_INT(bp_file_watch_content(w, &data, &len, &mtime), BP_ENOENT);

  gen = bp_file_watch_generation(w);
  replace("0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
          "0123456789 0123456789 too big");
  CHECK(wait_gen(w, gen, 5));
  CHECK_INT(bp_file_watch_content(w, &data, &len, &mtime), BP_ETOOBIG);

  replace("now");
  CHECK_INT(bp_file_watch_read_now(w), BP_OK);
  CHECK(content_is(w, "now"));
  gen = bp_file_watch_generation(w);
  CHECK_INT(bp_file_watch_read_now(w), BP_OK); /* the same file: nothing new */
  CHECK_INT(bp_file_watch_generation(w), gen);
  bp_file_watch_close(w);
  uv_run(bp_loop(), UV_RUN_DEFAULT); /* the close callbacks */
}

static void test_close_in_flight(void) {
  for (int i = 0; i < 20; i++) {
    bp_file_watch_t *w;
    replace("x");
    CHECK_INT(bp_file_watch_open(path, 100, 0.001, &w), BP_OK);
    for (int k = 0; k < i % 4; k++) uv_run(bp_loop(), UV_RUN_NOWAIT);
    bp_file_watch_close(w);
  }
  uv_run(bp_loop(), UV_RUN_DEFAULT); /* requests in flight finish, then everything is freed */
}

static void test_loop_shutdown(void) {
  bp_file_watch_t *w;
  replace("y");
  CHECK_INT(bp_file_watch_open(path, 100, 1, &w), BP_OK);
  uv_run(bp_loop(), UV_RUN_NOWAIT);
  bp__loop_shutdown();
  bp_file_watch_close(w); /* after the loop is gone: frees */
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/bp-fw-c-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  snprintf(path, sizeof path, "%s/watched", dir);
  RUN(test_open_errors);
  RUN(test_changes);
  RUN(test_close_in_flight);
  RUN(test_loop_shutdown);
  unlink(path);
  rmdir(dir);
  return bp_test_summary();
}
