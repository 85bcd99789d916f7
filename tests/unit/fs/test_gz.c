/* fs/gz.c: gzip members, their bounds, and the most a member can inflate to. */
#include <errno.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "fs/gz.h"
#include "tests/unit/test.h"

static struct sg_gz *gz(void)
{
	static struct sg_gz *g;
	if (!g)
		CHECK_EQ(sg_gz_new(&g), 0);
	return g;
}

TEST(gz_max_output)
{
	CHECK_EQ(sg_gz_max_output(0), 0);
	CHECK_EQ(sg_gz_max_output(18), 0);
	CHECK_EQ(sg_gz_max_output(19), 1032);
	CHECK_EQ(sg_gz_max_output(1018), 1032000);
	CHECK_EQ(sg_gz_max_output(UINT64_MAX), UINT64_MAX);
}

TEST(gz_bounds)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
	uint8_t in[1000], comp[2000], out[1000], *buf;
	size_t used, n, len;

	memset(in, 'a', sizeof(in));
	size_t cn = libdeflate_gzip_compress(c, in, sizeof(in), comp, sizeof(comp));
	CHECK(cn > 0);
	/* Two concatenated members: the first reports its own length. */
	memcpy(comp + cn, comp, cn);
	CHECK_EQ(sg_gz_member(gz(), comp, 2 * cn, out, sizeof(out), &used, &n), 0);
	CHECK_EQ(used, cn);
	CHECK_EQ(n, 1000);
	CHECK_EQ(sg_gz_member(gz(), comp, cn, out, 999, &used, &n), -ENOBUFS);
	CHECK_EQ(sg_gz_member_alloc(gz(), comp, cn, 1000, 0, &buf, &len), 0);
	CHECK_EQ(len, 1000);
	CHECK_MEM(buf, in, 1000);
	free(buf);
	CHECK_EQ(sg_gz_member_alloc(gz(), comp, cn, 999, 0, &buf, &len), -EFBIG);
	/* Ratio limit: 1000 bytes from ~20 is more than 10:1. */
	CHECK_EQ(sg_gz_member_alloc(gz(), comp, cn, 1 << 20, 10, &buf, &len), -EFBIG);
	/* Trailing data after the member. */
	CHECK_EQ(sg_gz_member_alloc(gz(), comp, 2 * cn, 1 << 20, 0, &buf, &len), -EBADMSG);
	CHECK_EQ(sg_gz_member(gz(), "garbage garbage garbage", 23, out, sizeof(out), &used, &n),
		 -EBADMSG);
	libdeflate_free_compressor(c);
}

/* A member's first bytes decompress to the data's first bytes, as far as they go (libdeflate
 * cannot stop before the member's end; zlib can): from a third of the member, a good part of
 * the data and nothing but the data; the whole member, all of it; the output bounded by its
 * room; a cut inside the header, nothing; not gzip, -EBADMSG. */
TEST(gz_inflate_prefix_goes_as_far_as_the_bytes_go)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
	static uint8_t in[200000], comp[250000], out[200000];
	size_t n;
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(in); i++) {   /* text-like: compressible, not trivially */
		x = x * 1103515245u + 12345u;
		in[i] = (uint8_t)('a' + (x >> 16) % 8);
	}
	size_t cn = libdeflate_gzip_compress(c, in, sizeof(in), comp, sizeof(comp));
	CHECK(cn > 3000);
	CHECK_EQ(sg_gz_inflate_prefix(comp, cn / 3, out, sizeof(out), &n), 0);
	CHECK(n > sizeof(in) / 5 && n < sizeof(in));
	CHECK_MEM(out, in, n);
	CHECK_EQ(sg_gz_inflate_prefix(comp, cn, out, sizeof(out), &n), 0);
	CHECK_EQ(n, sizeof(in));
	CHECK_MEM(out, in, n);
	CHECK_EQ(sg_gz_inflate_prefix(comp, cn, out, 4096, &n), 0);
	CHECK_EQ(n, 4096);
	CHECK_MEM(out, in, n);
	CHECK_EQ(sg_gz_inflate_prefix(comp, 5, out, sizeof(out), &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(sg_gz_inflate_prefix("garbage garbage garbage", 23, out, sizeof(out), &n), -EBADMSG);
	CHECK_EQ(n, 0);
	libdeflate_free_compressor(c);
}

TEST_MAIN()
