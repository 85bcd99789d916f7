/* gzip members through libdeflate.
 *
 * libdeflate has no streaming: it wants a whole gzip member in memory and an output buffer
 * large enough for all of it.  That suits eStargz, where every chunk and the TOC are separate
 * members of known compressed extent.  The output bound doubles as the gzip-bomb guard: a
 * member never writes more than the caller's capacity, and sg_gz_member_alloc() never
 * allocates more than min(max_out, in_len * max_ratio) before looking at the data.
 *
 * One sg_gz per thread (the libdeflate decompressor is not thread-safe); the daemon keeps one
 * per loop.  Errors are negative errno:
 *   -EBADMSG  not a gzip member, corrupt deflate data or a CRC mismatch
 *   -ENOBUFS  the member decompresses to more than the output capacity
 *   -EFBIG    the member claims (ISIZE) or needs more than max_out / the ratio limit
 *   -ENOMEM   allocation failure */
#ifndef STARGZD_FS_GZ_H
#define STARGZD_FS_GZ_H

#include <stddef.h>
#include <stdint.h>

struct sg_gz;

/* Deflate cannot expand more than 1032:1; a larger ratio limit checks nothing. */
#define SG_GZ_MAX_DEFLATE_RATIO 1032u
/* A gzip member's bytes outside the deflate stream: at least the 10-byte header and the
 * 8-byte trailer (CRC32, ISIZE). */
#define SG_GZ_MEMBER_OVERHEAD 18u

/* The most bytes that in_len bytes of gzip (one or more members) can decompress to.
 *
 * Deflate codes at most 258 bytes (a match of length code 285, no extra bits) with one
 * length/literal symbol and one distance symbol.  Neither code can be shorter than 1 bit:
 * the length/literal alphabet must also hold end-of-block (256), so it has two symbols at
 * least, and RFC 1951 (3.2.7) codes a lone distance symbol with one bit.  So every 2 bits
 * give at most 258 bytes: 1032 bytes per deflate byte, and less in practice (block headers,
 * the literal a stream must start with).  Stored blocks give less than 1 byte per byte.
 * Each member spends SG_GZ_MEMBER_OVERHEAD bytes outside deflate, so one member is the
 * worst case:  max = 1032 * (in_len - 18), 0 when no member fits.  Saturates at
 * UINT64_MAX. */
static inline uint64_t sg_gz_max_output(uint64_t in_len)
{
	if (in_len <= SG_GZ_MEMBER_OVERHEAD)
		return 0;
	in_len -= SG_GZ_MEMBER_OVERHEAD;
	if (in_len > UINT64_MAX / SG_GZ_MAX_DEFLATE_RATIO)
		return UINT64_MAX;
	return in_len * SG_GZ_MAX_DEFLATE_RATIO;
}

int sg_gz_new(struct sg_gz **ret_gz);
void sg_gz_free(struct sg_gz *gz);

/* Decompresses the first gzip member of in[0..in_len) into out[0..out_cap).  On success
 * *ret_in_used is the compressed size of that member (so concatenated members can be
 * walked) and *ret_out_len the bytes written.  Either pointer may be NULL. */
int sg_gz_member(struct sg_gz *gz, const void *in, size_t in_len, void *out, size_t out_cap,
		 size_t *ret_in_used, size_t *ret_out_len);

/* Like sg_gz_member, but allocates the output: in[0..in_len) must be exactly one member
 * (its last 4 bytes are ISIZE, the size modulo 2^32, used as the allocation hint).  The
 * output may not exceed max_out bytes nor in_len * max_ratio (0 = SG_GZ_MAX_DEFLATE_RATIO).
 * On success *ret_out is a malloc'd buffer of *ret_out_len bytes (plus one NUL byte after
 * it, handy for text); the caller frees it. */
int sg_gz_member_alloc(struct sg_gz *gz, const void *in, size_t in_len, size_t max_out,
		       unsigned max_ratio, uint8_t **ret_out, size_t *ret_out_len);

/* The ISIZE field of a complete member (the last 4 bytes), or -EBADMSG if in_len is too
 * short to be a gzip member (18 bytes). */
int64_t sg_gz_isize(const void *in, size_t in_len);

/* What the first bytes of a gzip member decompress to, as far as they go: in[0..in_len) is
 * the start of a member (not all of it), out gets at most out_cap bytes, *ret_out_len how
 * many.  Through zlib, which (unlike libdeflate) stops anywhere.  Nothing is verified (the
 * CRC is at the member's end): for hints only, never for bytes that are served.  0 (maybe
 * with no byte, when in_len ends inside the header), -EBADMSG when the data is not gzip or
 * breaks before any byte came out, -ENOMEM. */
int sg_gz_inflate_prefix(const void *in, size_t in_len, void *out, size_t out_cap,
			 size_t *ret_out_len);

#endif
