/* Worker processes for `baseplate-serve --workers N`: the parent supervises,
 * each child is a complete server on the inherited listening socket. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2, sigabbrev_np */
#endif
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* The supervisor wakes its waiter when a child exits (SIGCHLD) or a worker
 * reports that it is ready (a PID written to the ready pipe, whose write end
 * every worker inherits as BASEPLATE_READY_FD). */
typedef struct {
  bp__closable_t closable;
  uv_signal_t sig;
  uv_poll_t ready_poll;
  int ready_fd[2];
  int waiter;
  int active;
  int pending; /* an event came while nobody waited */
} bp_child_watch_t;

static bp_child_watch_t watch = {.ready_fd = {-1, -1}};

static void watch_close(bp__closable_t *c) {
  bp_child_watch_t *w = (bp_child_watch_t *)c;
  if (!w->active) return;
  if (!uv_is_closing((uv_handle_t *)&w->sig)) uv_close((uv_handle_t *)&w->sig, NULL);
  if (w->ready_fd[0] >= 0 && !uv_is_closing((uv_handle_t *)&w->ready_poll))
    uv_close((uv_handle_t *)&w->ready_poll, NULL);
  w->active = 0;
}

static void notify(void) {
  int waiter = watch.waiter;
  if (!waiter) {
    watch.pending = 1;
    return;
  }
  watch.waiter = 0;
  bp__vm_wake(waiter, BP_OK);
}

static void on_sigchld(uv_signal_t *h, int signum) { notify(); }

static void on_ready(uv_poll_t *h, int status, int events) { notify(); }

/* Watch SIGCHLD from before the first fork: a child that dies at once must
 * not be missed. */
static void watch_start(void) {
  if (watch.active) return;
  watch.closable.magic = BP_CLOSABLE_MAGIC;
  watch.closable.close = watch_close;
  uv_signal_init(uv_default_loop(), &watch.sig);
  watch.sig.data = &watch;
  uv_signal_start(&watch.sig, on_sigchld, SIGCHLD);
  /* Without the pipe, workers are never seen ready (every exit then counts
   * as a failure at start-up): still better than no supervisor. */
  if (pipe2(watch.ready_fd, O_CLOEXEC | O_NONBLOCK) == 0) {
    uv_poll_init(uv_default_loop(), &watch.ready_poll, watch.ready_fd[0]);
    uv_poll_start(&watch.ready_poll, UV_READABLE, on_ready);
  } else {
    watch.ready_fd[0] = watch.ready_fd[1] = -1;
  }
  watch.active = 1;
}

static char **saved_argv;

void bp_runtime_set_argv(char **argv) { saved_argv = argv; }

int bp_worker_spawn(int fd) {
  pid_t parent = getpid(), pid;
  char num[16];
  if (!saved_argv) return BP_EINVAL;
  watch_start();
  pid = fork();
  if (pid < 0) return -errno;
  if (pid > 0) return (int)pid;
  /* the child: only async-signal-safe calls until exec */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(0); /* the parent is already gone */
  setenv("BASEPLATE_WORKER", "1", 1);
  if (fd >= 0) {
    fcntl(fd, F_SETFD, 0); /* keep the socket across exec */
    snprintf(num, sizeof num, "%d", fd);
    setenv("BASEPLATE_WORKER_FD", num, 1);
  } else {
    unsetenv("BASEPLATE_WORKER_FD");
  }
  if (watch.ready_fd[1] >= 0) {
    fcntl(watch.ready_fd[1], F_SETFD, 0);
    snprintf(num, sizeof num, "%d", watch.ready_fd[1]);
    setenv("BASEPLATE_READY_FD", num, 1);
  } else {
    unsetenv("BASEPLATE_READY_FD");
  }
  execv("/proc/self/exe", saved_argv);
  _exit(127);
}

int bp_worker_wait(int waiter) {
  watch_start();
  if (watch.pending) {
    watch.pending = 0;
    return BP_OK;
  }
  watch.waiter = waiter;
  return BP_AGAIN;
}

int bp_worker_reap(int *code, int *signum) {
  int st;
  pid_t pid = waitpid(-1, &st, WNOHANG);
  if (pid <= 0) return 0;
  *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  *signum = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
  return (int)pid;
}

int bp_worker_next_ready(void) {
  int pid;
  ssize_t n;
  if (watch.ready_fd[0] < 0) return 0;
  /* PIDs are written whole (4 bytes, less than PIPE_BUF: never split) */
  do n = read(watch.ready_fd[0], &pid, sizeof pid);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof pid ? pid : 0;
}

int bp_worker_notify_ready(void) {
  const char *env = getenv("BASEPLATE_READY_FD");
  int fd, pid = (int)getpid(), rc = BP_OK;
  ssize_t n;
  if (!env || !*env) return BP_DECLINED;
  fd = atoi(env);
  unsetenv("BASEPLATE_READY_FD");
  do n = write(fd, &pid, sizeof pid);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof pid) rc = n < 0 ? -errno : BP_EIO;
  close(fd);
  return rc;
}

const char *bp_signal_name(int signum) {
  const char *name = sigabbrev_np(signum);
  static char buf[24];
  if (name) {
    snprintf(buf, sizeof buf, "SIG%s", name);
    return buf;
  }
  snprintf(buf, sizeof buf, "signal %d", signum);
  return buf;
}

int bp_process_signal(int pid, int signum) { return kill((pid_t)pid, signum) == 0 ? BP_OK : -errno; }
