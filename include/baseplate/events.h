/*
 * What the event publisher (baseplate-event-publisher, docs/event-publisher.md)
 * needs from C: gzip. The batches and their signature (bp_hmac_sha256_hex,
 * crypto.h) are made in Lua.
 */
#ifndef BASEPLATE_EVENTS_H
#define BASEPLATE_EVENTS_H

#include "common.h"
#include <stddef.h>

/**
 * Compress `len` bytes at `in` as one gzip member (RFC 1952, zlib's default
 * level): BP_OK with *out and *out_len (a buffer the library owns, valid
 * until the next call; one thread), BP_ENOMEM, or BP_EINVAL for input too
 * large for zlib (4 GiB).
 */
BP_EXTERN int bp_gzip(const void *in, size_t len, const char **out, size_t *out_len);

#endif
