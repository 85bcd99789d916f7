/* SHA-256 digests in the OCI form "sha256:<64 lowercase hex>".  Hashing goes through Nettle,
 * which uses the CPU's SHA extensions: every served byte is hashed, so this is a hot path. */
#ifndef STARGZD_CORE_DIGEST_H
#define STARGZD_CORE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_SHA256_LEN 32
#define SG_DIGEST_STRLEN (7 + 64)   /* "sha256:" + hex, without the NUL */

struct sg_digest {
	uint8_t bytes[SG_SHA256_LEN];
};

/* Incremental hashing; the context is the caller's (no allocation). */
struct sg_sha256 {
	uint64_t opaque[16];   /* large enough for Nettle's sha256_ctx (checked in digest.c) */
};

void sg_sha256_init(struct sg_sha256 *ctx);
void sg_sha256_update(struct sg_sha256 *ctx, const void *data, size_t len);
void sg_sha256_final(struct sg_sha256 *ctx, struct sg_digest *ret);

void sg_sha256(const void *data, size_t len, struct sg_digest *ret);

/* Parses "sha256:<hex>" (hex in lower or upper case).  -EINVAL for anything else,
 * -EOPNOTSUPP for a well-formed digest of another algorithm ("sha512:..."). */
int sg_digest_parse(const char *s, size_t len, struct sg_digest *ret);
/* Writes "sha256:<hex>" and a NUL into out, which has room for SG_DIGEST_STRLEN + 1. */
void sg_digest_format(const struct sg_digest *d, char out[SG_DIGEST_STRLEN + 1]);

static inline bool sg_digest_equal(const struct sg_digest *a, const struct sg_digest *b)
{
	uint8_t diff = 0;
	for (int i = 0; i < SG_SHA256_LEN; i++)
		diff |= a->bytes[i] ^ b->bytes[i];
	return diff == 0;
}

#endif
