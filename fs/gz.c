#include "fs/gz.h"

#include <errno.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* 10-byte header + CRC32 + ISIZE: nothing shorter can be a member. */
#define GZ_MIN_MEMBER SG_GZ_MEMBER_OVERHEAD

struct sg_gz {
	struct libdeflate_decompressor *d;
};

int sg_gz_new(struct sg_gz **ret_gz)
{
	struct sg_gz *gz = calloc(1, sizeof(*gz));

	if (!gz)
		return -ENOMEM;
	gz->d = libdeflate_alloc_decompressor();
	if (!gz->d) {
		free(gz);
		return -ENOMEM;
	}
	*ret_gz = gz;
	return 0;
}

void sg_gz_free(struct sg_gz *gz)
{
	if (!gz)
		return;
	libdeflate_free_decompressor(gz->d);
	free(gz);
}

static int result_to_errno(enum libdeflate_result r)
{
	switch (r) {
	case LIBDEFLATE_SUCCESS:
		return 0;
	case LIBDEFLATE_INSUFFICIENT_SPACE:
		return -ENOBUFS;
	case LIBDEFLATE_SHORT_OUTPUT:   /* only without actual_out_nbytes; not used here */
	case LIBDEFLATE_BAD_DATA:
	default:
		return -EBADMSG;
	}
}

int sg_gz_member(struct sg_gz *gz, const void *in, size_t in_len, void *out, size_t out_cap,
		 size_t *ret_in_used, size_t *ret_out_len)
{
	size_t in_used = 0, out_len = 0;
	uint8_t dummy;
	int r;

	if (!gz || (!in && in_len))
		return -EINVAL;
	if (in_len < GZ_MIN_MEMBER)
		return -EBADMSG;
	/* libdeflate wants a valid pointer even for an empty output. */
	if (!out) {
		if (out_cap)
			return -EINVAL;
		out = &dummy;
	}
	r = result_to_errno(libdeflate_gzip_decompress_ex(gz->d, in, in_len, out, out_cap,
							  &in_used, &out_len));
	if (r < 0)
		return r;
	if (ret_in_used)
		*ret_in_used = in_used;
	if (ret_out_len)
		*ret_out_len = out_len;
	return 0;
}

int64_t sg_gz_isize(const void *in, size_t in_len)
{
	const uint8_t *p = in;

	if (!in || in_len < GZ_MIN_MEMBER)
		return -EBADMSG;
	p += in_len - 4;
	return (int64_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			 (uint32_t)p[3] << 24);
}

int sg_gz_member_alloc(struct sg_gz *gz, const void *in, size_t in_len, size_t max_out,
		       unsigned max_ratio, uint8_t **ret_out, size_t *ret_out_len)
{
	uint8_t *buf = NULL;
	size_t cap, limit, in_used = 0, out_len = 0;
	int64_t isize;
	int r;

	if (!gz || !ret_out || !ret_out_len)
		return -EINVAL;
	isize = sg_gz_isize(in, in_len);
	if (isize < 0)
		return (int)isize;
	if (max_ratio == 0 || max_ratio > SG_GZ_MAX_DEFLATE_RATIO)
		max_ratio = SG_GZ_MAX_DEFLATE_RATIO;
	/* The ratio bound: a member cannot honestly produce more than this, so a larger
	 * claim is a lie and we never allocate for it. */
	limit = max_out;
	if (in_len <= SIZE_MAX / max_ratio && in_len * max_ratio < limit)
		limit = in_len * max_ratio;
	if (limit > SIZE_MAX - 1)
		limit = SIZE_MAX - 1;
	if ((uint64_t)isize > limit)
		return -EFBIG;
	/* ISIZE is the size modulo 2^32, so a member larger than 4 GiB may claim less;
	 * retry with the full limit only then (the guess was wrong, the data was not). */
	cap = (size_t)isize;
	for (;;) {
		uint8_t *nbuf = realloc(buf, cap + 1);

		if (!nbuf) {
			r = -ENOMEM;
			goto fail;
		}
		buf = nbuf;
		r = sg_gz_member(gz, in, in_len, buf, cap, &in_used, &out_len);
		if (r != -ENOBUFS)
			break;
		if (cap >= limit || limit - cap < ((size_t)1 << 32)) {
			r = -EFBIG;
			goto fail;
		}
		cap = limit;
	}
	if (r < 0)
		goto fail;
	/* Exactly one member, and it must be what ISIZE said (mod 2^32): trailing bytes
	 * would be data nobody checked. */
	if (in_used != in_len || (uint32_t)out_len != (uint32_t)isize) {
		r = -EBADMSG;
		goto fail;
	}
	buf[out_len] = 0;
	*ret_out = buf;
	*ret_out_len = out_len;
	return 0;
fail:
	free(buf);
	return r;
}

int sg_gz_inflate_prefix(const void *in, size_t in_len, void *out, size_t out_cap,
			 size_t *ret_out_len)
{
	z_stream z;
	int r;

	*ret_out_len = 0;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)   /* 16: a gzip header, not zlib's */
		return -ENOMEM;
	/* uInt counts: a prefix and its output are far below 4 GiB (callers bound both). */
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = in_len > UINT32_MAX ? UINT32_MAX : (uInt)in_len;
	z.next_out = out;
	z.avail_out = out_cap > UINT32_MAX ? UINT32_MAX : (uInt)out_cap;
	r = inflate(&z, Z_SYNC_FLUSH);
	*ret_out_len = (size_t)(z.next_out - (Bytef *)out);
	inflateEnd(&z);
	/* Z_BUF_ERROR: the input (or the room) ran out, which is the point of a prefix. */
	if (r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR)
		return 0;
	if (r == Z_MEM_ERROR)
		return -ENOMEM;
	return *ret_out_len > 0 ? 0 : -EBADMSG;
}
