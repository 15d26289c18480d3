/* Worker processes for `baseplate-serve --workers N`: the parent supervises,
 * each child is a complete server on the inherited listening socket. */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  bp__closable_t closable;
  uv_signal_t sig;
  int waiter;
  int active;
  int pending; /* a SIGCHLD came while nobody waited */
} bp_child_watch_t;

static bp_child_watch_t watch;

static void watch_close(bp__closable_t *c) {
  bp_child_watch_t *w = (bp_child_watch_t *)c;
  if (w->active && !uv_is_closing((uv_handle_t *)&w->sig)) uv_close((uv_handle_t *)&w->sig, NULL);
  w->active = 0;
}

static void on_sigchld(uv_signal_t *h, int signum) {
  int waiter = watch.waiter;
  if (!waiter) {
    watch.pending = 1;
    return;
  }
  watch.waiter = 0;
  bp__vm_wake(waiter, BP_OK);
}

/* Watch SIGCHLD from before the first fork: a child that dies at once must
 * not be missed. */
static void watch_start(void) {
  if (watch.active) return;
  watch.closable.magic = BP_CLOSABLE_MAGIC;
  watch.closable.close = watch_close;
  uv_signal_init(uv_default_loop(), &watch.sig);
  watch.sig.data = &watch;
  uv_signal_start(&watch.sig, on_sigchld, SIGCHLD);
  watch.active = 1;
}

static char **saved_argv;

void bp_runtime_set_argv(char **argv) { saved_argv = argv; }

int bp_worker_spawn(int fd) {
  pid_t parent = getpid(), pid;
  char num[16];
  if (!saved_argv) return -EINVAL;
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

int bp_worker_reap(int *status) {
  int st;
  pid_t pid = waitpid(-1, &st, WNOHANG);
  if (pid <= 0) return 0;
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
  return (int)pid;
}

int bp_process_signal(int pid, int signum) { return kill((pid_t)pid, signum) == 0 ? BP_OK : -errno; }
