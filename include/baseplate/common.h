/* Version, export macro and the status vocabulary shared by C and Lua. */
#ifndef BASEPLATE_COMMON_H
#define BASEPLATE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define BP_EXTERN_C extern "C"
#else
#define BP_EXTERN_C extern
#endif
#if defined(BP_BUILDING_SHARED)
#define BP_EXTERN BP_EXTERN_C __attribute__((visibility("default")))
#else
#define BP_EXTERN BP_EXTERN_C
#endif

/**
 * ABI version of the core. Bumped whenever a public struct, signature or
 * constant changes incompatibly. The Lua side (baseplate.core) and C
 * modules (BP_MODULE) check it when they load.
 */
#define BP_ABI_VERSION 4

/*
 * The status vocabulary: 0 for success, negative for failure. As in libuv,
 * a code that means an errno IS that negative errno (BP_ENOMEM == -ENOMEM
 * == UV_ENOMEM on Linux), so a function may return -errno or a libuv status
 * as it is and a caller compares it with these names. The codes that mean no
 * errno sit below errno's range (Linux errnos end at 4095) and below every
 * libuv code (UV_EOF is -4095, UV_EAI_* are -3000..-3014).
 *
 * The numbers are written out so that C modules and the Lua mirror
 * (lua/baseplate/core.lua, checked by tests/lua/test-ffi-decls.lua)
 * agree without errno.h; the errno each one is stands in the comment.
 */
#define BP_OK 0
#define BP_ERROR (-5001)    /* generic failure; a message says more */
#define BP_AGAIN (-5002)    /* not done yet: the caller yields and is woken later */
#define BP_DECLINED (-5003) /* not handled here; try the next thing */
#define BP_ENOMEM (-12)     /* -ENOMEM: out of memory */
#define BP_EINVAL (-22)     /* -EINVAL: invalid argument or value */
#define BP_ENOENT (-2)      /* -ENOENT: no such thing (file, section, key, route) */
#define BP_EIO (-5)         /* -EIO: I/O error; the message says more */
#define BP_ECLOSED (-32)    /* -EPIPE: the peer or object is gone, nothing more goes through */
#define BP_ETOOBIG (-90)    /* -EMSGSIZE: a size limit was exceeded */
#define BP_ETIMEDOUT (-110) /* -ETIMEDOUT: a time limit was exceeded */
#define BP_ECANCELED (-125) /* -ECANCELED: the wait was abandoned (an interrupted shell input) */

/** The core's ABI version (BP_ABI_VERSION when it was built). */
BP_EXTERN int bp_abi_version(void);

/** The core's release version, e.g. "0.1.0". Static string. */
BP_EXTERN const char *bp_version_string(void);

/** A short static description of a status: every BP_* code, any -errno
 * (strerror's text) and libuv's own codes (uv_strerror's). */
BP_EXTERN const char *bp_strerror(int status);

#endif
