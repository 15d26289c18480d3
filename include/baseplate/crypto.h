/*
 * Message signatures as Baseplate.py makes them (baseplate.lib.crypto,
 * ../shared/reference/formats.md "Message signatures"; docs/lib-crypto.md):
 * a 7-byte header (version 1, two zero bytes, the expiration as a
 * little-endian uint32) and the HMAC-SHA256 of header + message keyed with
 * the secret, URL-safe base64 without padding: 52 characters.
 */
#ifndef BASEPLATE_CRYPTO_H
#define BASEPLATE_CRYPTO_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

#define BP_SIGNATURE_LEN 52

/** Sign `msg` with `key`, valid until `expiration` (seconds since the epoch):
 * BP_SIGNATURE_LEN characters and a NUL into out. BP_EINVAL for an
 * expiration outside uint32, BP_ERROR if OpenSSL fails. */
BP_EXTERN int bp_signature_make(const void *key, size_t keylen, const void *msg, size_t msglen,
                                int64_t expiration, char out[BP_SIGNATURE_LEN + 1]);

/** Read a signature: BP_OK with its version and expiration, or BP_EINVAL
 * when it is unreadable (not URL-safe base64 of 39 bytes, version not 1). */
BP_EXTERN int bp_signature_read(const char *sig, size_t len, int *version, int64_t *expiration);

/** Whether `sig` (readable) is `msg` signed with `key`: 1 or 0, the digest
 * compared in constant time. */
BP_EXTERN int bp_signature_matches(const void *key, size_t keylen, const void *msg, size_t msglen,
                                   const char *sig, size_t len);

#define BP_HMAC_SHA256_HEX_LEN 64

/** The HMAC-SHA256 of `msg` keyed with `key`, as 64 lowercase hex digits
 * and a NUL into out (the event publisher's X-Signature mac). BP_EINVAL
 * for a key too long for OpenSSL, BP_ERROR if OpenSSL fails. */
BP_EXTERN int bp_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen,
                                 char out[BP_HMAC_SHA256_HEX_LEN + 1]);

#endif
