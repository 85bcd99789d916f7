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

TEST_MAIN()
