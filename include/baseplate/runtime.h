/*
 * The process runtime: one libuv loop, one LuaJIT state, listeners and the
 * HTTP server. Most of this is driven from Lua (baseplate.runtime,
 * baseplate.server); C modules rarely need more than bp_loop().
 *
 * Waiting from Lua: a function that cannot finish at once takes a `waiter`
 * id from the Lua scheduler and returns BP_AGAIN; the Lua caller yields, and
 * the core wakes the waiter (status and result) from the loop later.
 */
#ifndef BASEPLATE_RUNTIME_H
#define BASEPLATE_RUNTIME_H

#include "common.h"
#include "http.h"

struct uv_loop_s;

/** The process's event loop. Valid from start-up to exit. */
BP_EXTERN struct uv_loop_s *bp_loop(void);

/** Stop the loop after the current iteration (a fatal start-up error). */
BP_EXTERN void bp_loop_stop(void);

/** Loop time in seconds (monotonic, cached per iteration). */
BP_EXTERN double bp_now(void);

/** Wall-clock time: seconds since the epoch, with a fraction (signatures,
 * expiry times). bp_now and bp_time follow the test clock below. */
BP_EXTERN double bp_time(void);

/**
 * The test clock (baseplate.testing): bp_clock_freeze(1) stops bp_now and
 * bp_time where they are, (0) lets them run again; bp_clock_advance moves
 * both on by `seconds` (frozen or not); bp_clock_reset gives back the real
 * clocks. Timers (sleeps, timeouts) keep real time.
 */
BP_EXTERN void bp_clock_freeze(int on);
BP_EXTERN void bp_clock_advance(double seconds);
BP_EXTERN void bp_clock_reset(void);

/** A monotonic clock in seconds with sub-microsecond resolution (timers). */
BP_EXTERN double bp_monotonic(void);

/**
 * Wake `waiter` with BP_OK after `seconds`. Returns BP_AGAIN (the caller
 * yields), or BP_ENOMEM. Timers still pending at shutdown are cancelled.
 */
BP_EXTERN int bp_sleep(double seconds, int waiter);

typedef struct bp_timeout_s bp_timeout_t;

/**
 * A time limit on a wait: wake `waiter` with BP_ETIMEDOUT after `seconds`
 * unless bp_timeout_cancel() comes first. Start it once the operation
 * waited on has returned BP_AGAIN; if the operation wakes the waiter first,
 * cancel the timeout straight away (the timeout's later wake-up would reach
 * an unrelated wait). After the timeout fired (the waiter got
 * BP_ETIMEDOUT from it), it is gone: do not cancel it. NULL on ENOMEM.
 */
BP_EXTERN bp_timeout_t *bp_timeout_start(double seconds, int waiter);

/** Cancel a timeout that has not fired. */
BP_EXTERN void bp_timeout_cancel(bp_timeout_t *t);

/** Let the loop end while `t` is pending (a timer that only matters while
 * something else keeps the loop running, such as a server's requests). */
BP_EXTERN void bp_timeout_unref(bp_timeout_t *t);

/**
 * Wake the Lua coroutine parked on `waiter` with `status` (the value its
 * wait returns). For C code that finishes an operation a coroutine waits on:
 * call it from a loop callback, never from inside a function Lua called
 * through FFI (LuaJIT cannot re-enter the VM there). A waiter nobody waits
 * on any more (it was woken already) is ignored.
 */
BP_EXTERN void bp_wake(int waiter, int status);

/* --- the runtime, for the bundled tools ---------------------------------- */

/**
 * Create the process runtime: the LuaJIT state (package.path and cpath
 * searching the current directory first, then baseplate's modules; and
 * `extra_lua_path`, a "dir/?.lua;" fragment, when not NULL), on the process
 * loop. BP_OK, or an error with the reason in err.
 */
BP_EXTERN int bp_runtime_open(const char *extra_lua_path, char *err, size_t errlen);

/**
 * Run Lua `module`.`fn`(opts) in a coroutine on the loop and run the loop
 * until nothing is left to do. `opts` is NULL or a NULL-terminated array of
 * key, value strings; `argv`/`argc` become opts.args. SIGINT, SIGTERM and
 * SIGUSR2 go to Lua handlers registered with baseplate.runtime; with none,
 * they end the process. Returns the process exit status: 0, the status fn
 * returned, or 1 with the error (one line) in err.
 */
BP_EXTERN int bp_runtime_main(const char *module, const char *fn, const char *const *opts,
                              const char *const *argv, int argc, char *err, size_t errlen);

/** Close every loop handle, the loop and the Lua state. */
BP_EXTERN void bp_runtime_close(void);

/**
 * Call Lua `module`.`fn`(arg) (module as `require` loads it, arg a string)
 * and copy the string it returns, NUL-terminated, into out (outlen bytes).
 * For a loop callback in C that needs an answer from Lua at once (the
 * shell's Tab completion). Call it only from a loop callback, never from
 * inside a function Lua called through FFI: LuaJIT cannot re-enter the VM
 * there. BP_OK; BP_ENOENT when there is no such function or it returned no
 * string; BP_ETOOBIG when the string does not fit (out is empty); BP_ERROR
 * when loading or calling raised (the message in out); BP_EINVAL without a
 * runtime.
 */
BP_EXTERN int bp_runtime_call(const char *module, const char *fn, const char *arg, char *out,
                              size_t outlen);

/** Ask the tool to start again (exec itself) once the loop ends (--reload). */
BP_EXTERN void bp_runtime_request_restart(void);

/** Whether a restart was requested. */
BP_EXTERN int bp_runtime_restart_requested(void);

/**
 * The newest modification time (seconds) of files ending in `suffix` under
 * `dir` (recursively, skipping hidden directories and build output), and
 * that file's path. Returns the number of files seen (0: none), or -errno.
 * Blocking: for development tools, not request paths.
 */
BP_EXTERN int bp_newest_mtime(const char *dir, const char *suffix, double *mtime, char *path,
                              size_t pathlen);

/* --- worker processes ------------------------------------------------------ */

/**
 * Remember the tool's command line (argv stays valid for the process's
 * life): bp_worker_spawn and --reload run it again.
 */
BP_EXTERN void bp_runtime_set_argv(char **argv);

/**
 * Start a worker process: the same command line, run afresh (exec), with
 * BASEPLATE_WORKER=1 in its environment and, when `fd` >= 0, the listening
 * socket `fd` inherited and named by BASEPLATE_WORKER_FD. The worker gets
 * SIGTERM if the parent dies. Returns its PID, or -errno.
 */
BP_EXTERN int bp_worker_spawn(int fd);

/**
 * Wake `waiter` when a child process exits (SIGCHLD) or a worker reports
 * that it is ready. Returns BP_AGAIN, or BP_OK when either happened since
 * the last wait. Reap (bp_worker_reap) and read the ready PIDs
 * (bp_worker_next_ready) until none is left before waiting again.
 */
BP_EXTERN int bp_worker_wait(int waiter);

/**
 * Reap one exited child without blocking: its PID, with *code its exit
 * status (-1 if a signal ended it) and *signum the signal (0 if it exited),
 * or 0 when none has exited.
 */
BP_EXTERN int bp_worker_reap(int *code, int *signum);

/**
 * The PID of a worker that reported itself ready (bp_worker_notify_ready)
 * since the last call, or 0 when there is none.
 */
BP_EXTERN int bp_worker_next_ready(void);

/**
 * In a worker started by bp_worker_spawn: tell the supervisor that this
 * worker serves (once; later calls do nothing). BP_OK, BP_DECLINED when the
 * process is no such worker, or a negative errno.
 */
BP_EXTERN int bp_worker_notify_ready(void);

/** "SIGTERM" for SIGTERM, "signal 70" for a number with no name. Static buffer. */
BP_EXTERN const char *bp_signal_name(int signum);

/** Send `signum` to process `pid`. BP_OK or -errno. */
BP_EXTERN int bp_process_signal(int pid, int signum);

/* --- listeners -------------------------------------------------------------- */

typedef struct bp_listener_s bp_listener_t;

/** bp_listener_open flags. */
#define BP_LISTEN_REUSEPORT 1 /* share the port with other sockets that ask the same */

/**
 * Bind and listen on `endpoint`: "host:port", "[v6]:port" or a UNIX socket
 * path (anything with a '/'). TCP sockets get SO_REUSEADDR; with
 * BP_LISTEN_REUSEPORT also SO_REUSEPORT, so that several sockets (worker
 * processes, or services that ask to share) listen on one port and the
 * kernel spreads connections over them. Without it a port that another
 * socket holds, shared or not, fails with "Address already in use". NULL on
 * failure with the reason in err.
 */
BP_EXTERN bp_listener_t *bp_listener_open(const char *endpoint, int backlog, int flags, char *err,
                                          size_t errlen);

/**
 * Reserve a TCP endpoint without listening, for worker processes that each
 * listen on it with a socket of their own (BP_LISTEN_REUSEPORT). Unless
 * `flags` has BP_LISTEN_REUSEPORT, a port another socket already holds is
 * refused ("Address already in use"), as bp_listener_open refuses it. NULL
 * with a reason in err (also for UNIX socket paths, which cannot be shared
 * so).
 */
BP_EXTERN bp_listener_t *bp_listener_reserve(const char *endpoint, int flags, char *err,
                                             size_t errlen);

/**
 * Adopt an inherited listening socket (Einhorn's EINHORN_FD_<n>): the
 * family and address are read from the socket itself. NULL with a reason in
 * err when `fd` is not a listening stream socket.
 */
BP_EXTERN bp_listener_t *bp_listener_from_fd(int fd, char *err, size_t errlen);

/** The listener's socket descriptor (to hand to worker processes). */
BP_EXTERN int bp_listener_fd(const bp_listener_t *l);

/**
 * Einhorn's manual ACK: connect to the UNIX socket `sock_path` and send
 * {"command": "worker:ack", "pid": PID} and a newline. BP_OK, or an error
 * with the reason in err.
 */
BP_EXTERN int bp_einhorn_ack(const char *sock_path, int pid, char *err, size_t errlen);

/** The address as Baseplate.py logs it: "('127.0.0.1', 9090)" or "/path". */
BP_EXTERN const char *bp_listener_describe(const bp_listener_t *l);

/** Close the socket (if no server took it) and free. NULL is fine. */
BP_EXTERN void bp_listener_free(bp_listener_t *l);

/* --- servers, whatever their protocol ---------------------------------------- */

/**
 * Every server (bp_http_server_t, bp_thrift_server_t) begins with the
 * protocol-neutral core: a pointer to one is a bp_server_t pointer too, and
 * these work on any of them.
 */
typedef struct bp_server_s bp_server_t;

/** Keep serving, but close each connection once its message is answered. */
BP_EXTERN void bp_server_drain(bp_server_t *server);
/**
 * Stop accepting (after taking what waits in the backlog); idle connections
 * close, the others once answered. The server frees itself once the last
 * connection is closed: do not use it afterwards.
 */
BP_EXTERN void bp_server_stop(bp_server_t *server);
/**
 * Graceful shutdown: bp_server_stop, then BP_OK if no connection is left,
 * else BP_AGAIN and `waiter` is woken (bp_wake) with BP_OK when the last
 * one closes.
 */
BP_EXTERN int bp_server_shutdown(bp_server_t *server, int waiter);
/** Open connections. */
BP_EXTERN int bp_server_connections(const bp_server_t *server);
/**
 * Serve a connected stream socket `fd` (non-blocking; the server owns it
 * from now on, and closes it if it cannot take it: BP_ECANCELED when the
 * server is stopping). With a server started without a listener, the only
 * way connections come (baseplate.testing's socket pairs).
 */
BP_EXTERN int bp_server_adopt(bp_server_t *server, int fd);
/** Messages (requests, calls) being handled. */
BP_EXTERN int bp_server_active(const bp_server_t *server);
/**
 * The I/O path of servers started from now on (the `io` key of the server
 * section, docs/serve.md): "auto" (io_uring when the kernel allows it, else
 * epoll), "uring" or "epoll". Until called, BASEPLATE_SERVER_IO's value, or
 * "auto". Returns 1 (io_uring), 0 (epoll: with "auto", why io_uring cannot
 * be had is in err), or BP_EINVAL with the reason in err (an unknown mode,
 * or "uring" where io_uring is refused).
 */
BP_EXTERN int bp_server_set_io(const char *mode, char *err, size_t errlen);

/* --- the HTTP server -------------------------------------------------------- */

typedef struct bp_http_server_s bp_http_server_t;

/** Server limits; bp_http_server_options_init fills the defaults. */
typedef struct {
  size_t max_header_size;     /* request line + headers, bytes (431 beyond) */
  size_t max_body_size;       /* bytes (413 beyond) */
  double header_timeout;      /* s to receive a request's head, or between body reads (408) */
  double keepalive_timeout;   /* s an idle keep-alive connection stays open */
  int max_concurrency;        /* connections served at once; 0: no limit */
  int access_log;             /* log one line per request at DEBUG */
  int shared_socket;          /* other processes accept on it too: take turns */
  int max_header_count;       /* header fields in a request (431 beyond) */
  double body_timeout;        /* s to receive a whole request body, however it trickles (408) */
} bp_http_server_options_t;

BP_EXTERN void bp_http_server_options_init(bp_http_server_options_t *o);

/** sizeof(bp_http_server_options_t): the Lua side checks its declaration. */
BP_EXTERN size_t bp_http_server_options_size(void);

/**
 * Serve `app` on `listener` (the server takes over the socket; free the
 * listener object afterwards as usual). The app must outlive the server.
 * A NULL listener: a server that takes connections only from
 * bp_server_adopt. NULL on failure with a reason in err.
 */
BP_EXTERN bp_http_server_t *bp_http_server_start(bp_app_t *app, bp_listener_t *listener,
                                                 const bp_http_server_options_t *opts,
                                                 char *err, size_t errlen);

/**
 * Start draining: keep accepting and serving, but answer with
 * "Connection: close" so keep-alive clients reconnect (elsewhere).
 */
BP_EXTERN void bp_http_server_drain(bp_http_server_t *server);

/**
 * Stop accepting, close idle connections, and let in-flight requests finish
 * (their connections close after the response); the server frees itself
 * once the last connection is closed.
 */
BP_EXTERN void bp_http_server_stop(bp_http_server_t *server);

/**
 * Graceful shutdown: bp_http_server_stop, then wake `waiter` once every
 * connection is closed. Returns BP_AGAIN, or BP_OK when nothing was open.
 * The server frees itself afterwards: use it no more, except for
 * bp_http_server_abort while the waiter has not been woken.
 */
BP_EXTERN int bp_http_server_shutdown(bp_http_server_t *server, int waiter);


/** Connections currently open and requests currently in a handler. */
BP_EXTERN int bp_http_server_connections(const bp_http_server_t *server);
BP_EXTERN int bp_http_server_active_requests(const bp_http_server_t *server);

#endif
