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

/* Hand a request to the Lua handler `handler` (a new coroutine). */
void bp__vm_dispatch_request(bp_request_t *req, int handler);

/* Resume the coroutine waiting as `waiter`. Never called from inside an FFI
 * call: only from loop callbacks. */
void bp__vm_wake(int waiter, int status);

#endif
