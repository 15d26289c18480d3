/* Private: the process runtime shared by the CLIs (serve, script, shell). */
#ifndef BASEPLATE_RUNTIME_INTERNAL_H
#define BASEPLATE_RUNTIME_INTERNAL_H

#include "baseplate/runtime.h"
#include <lua.h>
#include <uv.h>

/* Anything that owns loop handles and must be closed at shutdown embeds this
 * first and points each handle's data at itself, so that bp__loop_shutdown()
 * can close it with its own close function. */
#define BP_CLOSABLE_MAGIC 0x42504c43u
typedef struct bp__closable_s {
  unsigned magic;
  void (*close)(struct bp__closable_s *self);
} bp__closable_t;

/* Close every handle (owners through their close function), run the loop
 * until all close callbacks ran, and close the loop. */
void bp__loop_shutdown(void);

/* Edge-triggered readiness for sockets whose reads the owner does itself (the
 * HTTP server's connections). libuv polls level-triggered: under saturation a
 * socket that missed one poll goes to the end of the next, behind every socket
 * served in the previous one, and its request waits two rounds. An
 * edge-triggered epoll set, nested in the loop, reports sockets in the order
 * their data arrived (nginx's fairness). Linux only, like the rest of the
 * server. After an event the owner reads until a short read or EAGAIN, as no
 * other event comes for data already there; `hangup` says the peer closed or
 * the socket failed, so that a short read is no proof of the end: read on
 * until EOF or the error. */
typedef struct bp__edge_s bp__edge_t;
struct bp__edge_s {
  void (*cb)(bp__edge_t *e, int hangup);
  int fd; /* -1: not watched */
};
/* Watch `fd` for input and hang-up. BP_OK or a negative errno. */
int bp__edge_add(bp__edge_t *e, int fd, void (*cb)(bp__edge_t *e, int hangup));
/* Stop watching (before the fd closes): no event reaches `e` afterwards,
 * including one already fetched in the batch being dispatched. */
void bp__edge_remove(bp__edge_t *e);

/* package.preload[name] = open: require(name) then opens a module built
 * into the core. */
void bp__lua_preload(lua_State *L, const char *name, lua_CFunction open);

/* JSON for response bodies (src/json.c): makes require("baseplate.json_c")
 * available in L; bp__json_buffer() is the body its encode() last wrote
 * (exported for baseplate.http's FFI, not part of the C API). */
void bp__json_preload(lua_State *L);
BP_EXTERN const char *bp__json_buffer(void);

/* The Lua state. */
typedef struct {
  const char *extra_path; /* prepended to package.path after "./" (tests), or NULL */
} bp__vm_options_t;

/* Create the Lua state, set package paths and load baseplate.runtime.
 * BP_OK or BP_ERROR with the reason in err. */
int bp__vm_open(const bp__vm_options_t *opts, char *err, size_t errlen);
lua_State *bp__vm_state(void);
void bp__vm_close(void);

/* Run `module`.`fn`(options table at the top of the stack) as the process's
 * main coroutine (pops the table). Returns once it finished or yielded. */
int bp__vm_start_main(const char *module, const char *fn);

/* After the loop ended: 0 when main succeeded, else 1 with the message in err
 * (and the exit code the Lua side asked for, when it did). */
int bp__vm_main_result(char *err, size_t errlen, int *exit_code);

/* The protocols whose messages Lua handles (runtime.lua's PROTOCOL_*). */
enum { BP__PROTOCOL_HTTP = 1, BP__PROTOCOL_THRIFT = 2, BP__PROTOCOL_OBSERVE = 3 };
/* (BP__PROTOCOL_OBSERVE: span events queued for the Lua observers, src/observer_lua.c) */

/* Deliver the span events still queued for Lua observers (process end). */
void bp__observe_flush(void);
/* A message of `protocol` for Lua handler `handler`: runtime.on_message
 * runs the job that protocol registered (runtime.set_job) in a worker
 * coroutine. */
void bp__vm_dispatch(int protocol, void *msg, int handler);

/* Resume the coroutine waiting as `waiter`. Never called from inside an FFI
 * call: only from loop callbacks. */
void bp__vm_wake(int waiter, int status);

#endif
