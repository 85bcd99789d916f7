#include "daemon/core/digest.h"
#include "daemon/core/hex.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <string.h>

_Static_assert(sizeof(struct sg_sha256) >= sizeof(struct sha256_ctx), "sg_sha256 too small");
_Static_assert(_Alignof(struct sg_sha256) >= _Alignof(struct sha256_ctx), "sg_sha256 misaligned");

void sg_sha256_init(struct sg_sha256 *ctx)
{
	sha256_init((struct sha256_ctx *)ctx);
}

void sg_sha256_update(struct sg_sha256 *ctx, const void *data, size_t len)
{
	sha256_update((struct sha256_ctx *)ctx, len, data);
}

void sg_sha256_final(struct sg_sha256 *ctx, struct sg_digest *ret)
{
	sha256_digest((struct sha256_ctx *)ctx, SG_SHA256_LEN, ret->bytes);
}

void sg_sha256(const void *data, size_t len, struct sg_digest *ret)
{
	struct sg_sha256 ctx;

	sg_sha256_init(&ctx);
	sg_sha256_update(&ctx, data, len);
	sg_sha256_final(&ctx, ret);
}

int sg_digest_parse(const char *s, size_t len, struct sg_digest *ret)
{
	const char *colon = memchr(s, ':', len);
	struct sg_digest d;

	if (!colon || colon == s)
		return -EINVAL;
	for (const char *p = s; p < colon; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '+' || *p == '.' ||
		      *p == '_' || *p == '-'))
			return -EINVAL;
	if ((size_t)(colon - s) != 6 || memcmp(s, "sha256", 6) != 0)
		return -EOPNOTSUPP;
	if (len != SG_DIGEST_STRLEN)
		return -EINVAL;
	for (int i = 0; i < SG_SHA256_LEN; i++) {
		int hi = sg_hexval(s[7 + 2 * i]), lo = sg_hexval(s[8 + 2 * i]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		d.bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret = d;
	return 0;
}

void sg_digest_format(const struct sg_digest *d, char out[SG_DIGEST_STRLEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	memcpy(out, "sha256:", 7);
	for (int i = 0; i < SG_SHA256_LEN; i++) {
		out[7 + 2 * i] = hex[d->bytes[i] >> 4];
		out[8 + 2 * i] = hex[d->bytes[i] & 15];
	}
	out[SG_DIGEST_STRLEN] = '\0';
}
