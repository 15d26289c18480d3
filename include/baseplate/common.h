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
#define BP_ABI_VERSION 1

/* The status vocabulary. Mirrored once in Lua, in lua/baseplate/core.lua. */
#define BP_OK 0
#define BP_ERROR (-1)     /* generic failure; a message says more */
#define BP_AGAIN (-2)     /* not done yet: the caller yields and is woken later */
#define BP_DECLINED (-3)  /* not handled here; try the next thing */
#define BP_ENOMEM (-4)    /* out of memory */
#define BP_EINVAL (-5)    /* invalid argument or value */
#define BP_ENOENT (-6)    /* no such thing (file, section, key, route) */
#define BP_EIO (-7)       /* I/O error; errno-style detail in the message */
#define BP_ECLOSED (-8)   /* the peer or object is gone */
#define BP_ETOOBIG (-9)   /* a size limit was exceeded */
#define BP_ETIMEDOUT (-10) /* a time limit was exceeded */
#define BP_ECANCELED (-11) /* the wait was abandoned (an interrupted shell input) */

/** The core's ABI version (BP_ABI_VERSION when it was built). */
BP_EXTERN int bp_abi_version(void);

/** The core's release version, e.g. "0.1.0". Static string. */
BP_EXTERN const char *bp_version_string(void);

/** A short static description of a BP_E* status (or of -errno). */
BP_EXTERN const char *bp_strerror(int status);

#endif
