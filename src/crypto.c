/*
 * Message signatures (include/baseplate/crypto.h): OpenSSL's HMAC-SHA256,
 * its constant-time comparison, and URL-safe base64 of exactly 39 bytes.
 */
#include "baseplate/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>

#define HEADER_LEN 7
#define DIGEST_LEN 32
#define RAW_LEN (HEADER_LEN + DIGEST_LEN) /* 39 bytes: 52 characters, no padding */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void encode(const unsigned char in[RAW_LEN], char out[BP_SIGNATURE_LEN + 1]) {
  size_t i, o = 0;
  for (i = 0; i + 3 <= RAW_LEN; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64url[v >> 18 & 63];
    out[o++] = b64url[v >> 12 & 63];
    out[o++] = b64url[v >> 6 & 63];
    out[o++] = b64url[v & 63];
  }
  out[o] = '\0'; /* (39 is a multiple of 3) */
}

static int value_of(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* The 39 bytes of a signature; trailing '=' padding is accepted, as
 * Python's urlsafe_b64decode does. */
static int decode(const char *s, size_t len, unsigned char out[RAW_LEN]) {
  size_t i, o = 0;
  while (len > BP_SIGNATURE_LEN && s[len - 1] == '=') len--;
  if (len != BP_SIGNATURE_LEN) return BP_EINVAL;
  for (i = 0; i < len; i += 4) {
    int a = value_of(s[i]), b = value_of(s[i + 1]), c = value_of(s[i + 2]), d = value_of(s[i + 3]);
    uint32_t v;
    if (a < 0 || b < 0 || c < 0 || d < 0) return BP_EINVAL;
    v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    out[o++] = (unsigned char)(v >> 16);
    out[o++] = (unsigned char)(v >> 8);
    out[o++] = (unsigned char)v;
  }
  return BP_OK;
}

static int mac(const void *key, size_t keylen, const unsigned char *header, size_t headerlen,
               const void *msg, size_t msglen, unsigned char digest[DIGEST_LEN]) {
  static EVP_MAC *hmac; /* fetched once */
  char sha256[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0),
                         OSSL_PARAM_construct_end()};
  static const unsigned char none[1];
  EVP_MAC_CTX *ctx;
  size_t n = 0;
  int ok;
  if (!hmac && !(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL))) return BP_ERROR;
  if (!(ctx = EVP_MAC_CTX_new(hmac))) return BP_ERROR;
  ok = EVP_MAC_init(ctx, keylen ? key : none, keylen, params) &&
       (headerlen == 0 || EVP_MAC_update(ctx, header, headerlen)) && EVP_MAC_update(ctx, msg, msglen) &&
       EVP_MAC_final(ctx, digest, &n, DIGEST_LEN) && n == DIGEST_LEN;
  EVP_MAC_CTX_free(ctx);
  return ok ? BP_OK : BP_ERROR;
}

int bp_signature_make(const void *key, size_t keylen, const void *msg, size_t msglen,
                      int64_t expiration, char out[BP_SIGNATURE_LEN + 1]) {
  unsigned char raw[RAW_LEN];
  uint32_t e;
  if (expiration < 0 || expiration > (int64_t)UINT32_MAX || keylen > INT32_MAX) return BP_EINVAL;
  e = (uint32_t)expiration;
  raw[0] = 1;
  raw[1] = raw[2] = 0;
  raw[3] = (unsigned char)e;
  raw[4] = (unsigned char)(e >> 8);
  raw[5] = (unsigned char)(e >> 16);
  raw[6] = (unsigned char)(e >> 24);
  if (mac(key, keylen, raw, HEADER_LEN, msg, msglen, raw + HEADER_LEN) != BP_OK) return BP_ERROR;
  encode(raw, out);
  return BP_OK;
}

int bp_signature_read(const char *sig, size_t len, int *version, int64_t *expiration) {
  unsigned char raw[RAW_LEN];
  if (decode(sig, len, raw) != BP_OK || raw[0] != 1) return BP_EINVAL;
  *version = raw[0];
  *expiration = (int64_t)((uint32_t)raw[3] | (uint32_t)raw[4] << 8 | (uint32_t)raw[5] << 16 |
                          (uint32_t)raw[6] << 24);
  return BP_OK;
}

int bp_signature_matches(const void *key, size_t keylen, const void *msg, size_t msglen,
                         const char *sig, size_t len) {
  unsigned char raw[RAW_LEN], digest[DIGEST_LEN];
  if (keylen > INT32_MAX || decode(sig, len, raw) != BP_OK) return 0;
  if (mac(key, keylen, raw, HEADER_LEN, msg, msglen, digest) != BP_OK) return 0;
  return CRYPTO_memcmp(digest, raw + HEADER_LEN, DIGEST_LEN) == 0;
}

int bp_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen,
                       char out[BP_HMAC_SHA256_HEX_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char digest[DIGEST_LEN];
  if (keylen > INT32_MAX) return BP_EINVAL;
  if (mac(key, keylen, NULL, 0, msg ? msg : "", msglen, digest) != BP_OK) return BP_ERROR;
  for (int i = 0; i < DIGEST_LEN; i++) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  out[2 * DIGEST_LEN] = '\0';
  return BP_OK;
}
