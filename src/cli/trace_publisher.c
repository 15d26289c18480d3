/* baseplate-trace-publisher: the sidecar that drains a tracing observer's
 * POSIX queue (/traces-NAME, one Zipkin span per message, written by
 * services with tracing.queue_name = NAME) and POSTs the spans in batches to
 * a Zipkin-compatible collector, as Baseplate.py's trace publisher does
 * (docs/trace-publisher.md, formats.md "Zipkin spans").
 *
 * A batch is a JSON array of at most max_batch_size bytes, sent when full
 * or one second after its first span, to {zipkin_api_url}/spans with
 * Content-Type: application/json and a post_timeout limit. A failed POST is
 * tried again (retry_limit attempts in all, backing off) unless the
 * collector answered 4xx: the batch is then dropped, as it would be refused
 * again. A sidecar may block, so libcurl's easy interface does the POSTs.
 * SIGINT or SIGTERM: the batch in hand is sent, then the tool exits 0. */
#include "args.h"

#include <baseplate/config.h>
#include <baseplate/ini.h>
#include <baseplate/log.h>
#include <baseplate/mqueue.h>
#include <curl/curl.h>

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOGGER "baseplate.sidecars.trace_publisher"
#define MAX_MESSAGE 102400
#define BATCH_WAIT 1.0 /* seconds from a batch's first span to its POST */

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

typedef struct {
  char *url;
  long post_timeout; /* seconds */
  long max_batch;    /* bytes */
  long retry_limit;  /* attempts */
  char *buf;         /* "[span,span" (the closing bracket added to send) */
  size_t len;
  int nspans;
  double deadline; /* monotonic: when the batch goes */
} publisher_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

/* POST the batch (tried again on failure, but not on a 4xx), then start anew. */
static void flush(publisher_t *p) {
  CURL *curl;
  struct curl_slist *headers;
  long status = 0;
  CURLcode rc = CURLE_OK;
  int attempt;
  double backoff = 0.1;
  if (p->nspans == 0) return;
  p->buf[p->len] = ']';
  curl = curl_easy_init();
  headers = curl_slist_append(NULL, "Content-Type: application/json");
  if (!curl || !headers) {
    bp_log(BP_LOG_ERROR, LOGGER, "out of memory: %d spans dropped", p->nspans);
    goto done;
  }
  curl_easy_setopt(curl, CURLOPT_URL, p->url);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, p->buf);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(p->len + 1));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, p->post_timeout);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
  for (attempt = 1; attempt <= p->retry_limit; attempt++) {
    status = 0;
    rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status >= 200 && status < 300) {
      bp_log(BP_LOG_DEBUG, LOGGER, "Published %d spans (%zu bytes)", p->nspans, p->len + 1);
      goto done;
    }
    if (rc == CURLE_OK && status >= 400 && status < 500) break; /* refused: not retried */
    if (attempt < p->retry_limit && !stopping) {
      struct timespec ts = {(time_t)backoff, (long)((backoff - (double)(time_t)backoff) * 1e9)};
      nanosleep(&ts, NULL);
      if (backoff < 2.0) backoff *= 2;
    } else {
      break;
    }
  }
  if (rc != CURLE_OK)
    bp_log(BP_LOG_ERROR, LOGGER, "Failed to publish %d spans to %s: %s; dropped", p->nspans, p->url,
           curl_easy_strerror(rc));
  else
    bp_log(BP_LOG_ERROR, LOGGER, "Failed to publish %d spans to %s: HTTP %ld%s; dropped", p->nspans,
           p->url, status, status >= 400 && status < 500 ? " (not retried)" : "");
done:
  curl_slist_free_all(headers);
  if (curl) curl_easy_cleanup(curl);
  p->len = 1; /* "[" */
  p->nspans = 0;
}

static void add(publisher_t *p, const char *span, size_t n) {
  if (n == 0 || span[0] != '{' || span[n - 1] != '}') {
    bp_log(BP_LOG_WARNING, LOGGER, "Ignored a message that is not a span (%zu bytes)", n);
    return;
  }
  if (n + 2 > (size_t)p->max_batch) {
    bp_log(BP_LOG_WARNING, LOGGER, "Dropped a span of %zu bytes: larger than max_batch_size", n);
    return;
  }
  /* "[" + spans joined by "," + "]" */
  if (p->nspans > 0 && p->len + 1 + n + 1 > (size_t)p->max_batch) flush(p);
  if (p->nspans > 0) p->buf[p->len++] = ',';
  memcpy(p->buf + p->len, span, n);
  p->len += n;
  if (p->nspans++ == 0) p->deadline = now() + BATCH_WAIT;
  if (p->len + 1 >= (size_t)p->max_batch) flush(p);
}

/* An integer key (default `dflt`) of at least `min`; -1 (said why) for a bad one. */
static long int_key(const bp_section_t *s, const char *key, long dflt, long min) {
  const char *v = bp_section_get(s, key);
  int64_t out;
  char err[256];
  if (!v || !*v) return dflt;
  if (bp_config_parse_integer(v, strlen(v), 10, &out, err, sizeof err) != BP_OK || out < min ||
      out > 1000000000) {
    fprintf(stderr, "baseplate-trace-publisher: error: [%s] %s: expected an integer of at least %ld, got \"%s\"\n",
            bp_section_name(s), key, min, v);
    return -1;
  }
  return (long)out;
}

/* The publisher's settings from the [trace-publisher:NAME] section of
 * `path`: 0, or 1 having said why not. */
static int configure(publisher_t *p, const char *path, const char *queue_name, long *max_queue) {
  char section_name[300], err[512];
  const char *api, *env;
  const bp_section_t *s;
  bp_ini_t *ini;
  int rc = 1;
  if (bp_ini_load(path, &ini, err, sizeof err) != BP_OK) {
    fprintf(stderr, "baseplate-trace-publisher: error: %s\n", err);
    return 1;
  }
  snprintf(section_name, sizeof section_name, "trace-publisher:%s", queue_name);
  if (!(s = bp_ini_section(ini, section_name))) {
    fprintf(stderr, "baseplate-trace-publisher: error: %s: no [%s] section\n", path, section_name);
    goto out;
  }
  api = bp_section_get(s, "zipkin_api_url");
  if ((!api || !*api) && (env = getenv("BASEPLATE_ZIPKIN_API_URL")) && *env) api = env;
  if (!api || !*api) {
    fprintf(stderr, "baseplate-trace-publisher: error: [%s] zipkin_api_url: required\n", section_name);
    goto out;
  }
  if (strncmp(api, "http://", 7) != 0 && strncmp(api, "https://", 8) != 0) {
    fprintf(stderr, "baseplate-trace-publisher: error: [%s] zipkin_api_url: expected an http(s) URL, got \"%s\"\n",
            section_name, api);
    goto out;
  }
  if ((p->post_timeout = int_key(s, "post_timeout", 3, 1)) < 0 ||
      (p->max_batch = int_key(s, "max_batch_size", 500 * 1024, 1024)) < 0 ||
      (p->retry_limit = int_key(s, "retry_limit", 10, 1)) < 0 ||
      (*max_queue = int_key(s, "max_queue_size", 10000, 1)) < 0)
    goto out;
  if (!(p->url = malloc(strlen(api) + sizeof "/spans"))) goto out;
  sprintf(p->url, "%s%s", api, api[strlen(api) - 1] == '/' ? "spans" : "/spans");
  rc = 0;
out:
  bp_ini_free(ini);
  return rc;
}

int main(int argc, char **argv) {
  static bp_cli_opt_t opts[] = {
      {"--queue-name", "QUEUE_NAME", "name of trace queue / publisher config (default: main)", NULL},
      {"--debug", NULL, "enable debug logging", NULL},
      {"--app-name", "NAME", "name of app to load from config_file (default: main)", NULL},
  };
  static const char *pos[] = {"config_file"};
  bp_cli_t cli = {
      .prog = "baseplate-trace-publisher",
      .usage = "baseplate-trace-publisher [-h] [--queue-name QUEUE_NAME] [--debug]\n"
               "                                 [--app-name NAME] [--version]\n"
               "                                 config_file",
      .description = "Publish the spans of a trace queue to a Zipkin-compatible collector.\n\n"
                     "config_file is an INI file with a [trace-publisher:QUEUE_NAME] section.",
      .opts = opts,
      .nopts = 3,
      .positional_names = pos,
      .npositional = 1,
  };
  const char *queue_name;
  char mq_name[300];
  publisher_t p = {0};
  struct mq_attr attr = {0};
  struct sigaction sa;
  mqd_t mq;
  char *msg;
  long max_queue;

  bp_cli_parse(&cli, argc, argv);
  queue_name = opts[0].value ? opts[0].value : "main";
  if (!*queue_name || strchr(queue_name, '/') || strlen(queue_name) > 200)
    bp_cli_fail(&cli, "argument --queue-name: invalid queue name '%s'", queue_name);
  if (opts[1].value) bp_log_set_level(NULL, BP_LOG_DEBUG);
  if (configure(&p, cli.positionals[0], queue_name, &max_queue) != 0) return 1;
  if (!(p.buf = malloc((size_t)p.max_batch + 1)) || !(msg = malloc(MAX_MESSAGE + 1))) {
    free(p.buf);
    free(p.url);
    return 1;
  }
  p.buf[0] = '[';
  p.len = 1;

  snprintf(mq_name, sizeof mq_name, "/traces-%s", queue_name);
  mq = bp_mq_open(mq_name, O_RDONLY, max_queue, MAX_MESSAGE, &attr, NULL);
  if (mq == (mqd_t)-1) {
    fprintf(stderr, "baseplate-trace-publisher: error: cannot open the message queue %s: %s\n",
            mq_name, strerror(errno));
    free(msg);
    free(p.buf);
    free(p.url);
    return 1;
  }
  if (attr.mq_msgsize > MAX_MESSAGE) {
    char *bigger = realloc(msg, (size_t)attr.mq_msgsize + 1);
    if (!bigger) return 1;
    msg = bigger;
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: the wait for a message ends */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  bp_log(BP_LOG_INFO, LOGGER, "Publishing the spans of %s to %s", mq_name, p.url);

  while (!stopping) {
    struct timespec until;
    double wait = p.nspans ? p.deadline - now() : 3600;
    ssize_t n;
    if (p.nspans && wait <= 0) {
      flush(&p);
      continue;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)wait;
    until.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    n = mq_timedreceive(mq, msg, (size_t)attr.mq_msgsize, NULL, &until);
    if (n >= 0) add(&p, msg, (size_t)n);
    else if (errno != ETIMEDOUT && errno != EINTR) {
      bp_log(BP_LOG_ERROR, LOGGER, "Reading %s failed: %s", mq_name, strerror(errno));
      break;
    }
  }
  flush(&p);
  mq_close(mq);
  curl_global_cleanup();
  free(msg);
  free(p.buf);
  free(p.url);
  return stopping ? 0 : 1;
}
