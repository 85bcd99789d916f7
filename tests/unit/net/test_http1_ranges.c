/* Tests for net/http1_ranges: Content-Range and multipart/byteranges. */
#include <errno.h>
#include <stdlib.h>

#include "net/http1_ranges.h"
#include "tests/unit/test.h"

/* ---- Content-Range ---- */

TEST(content_range)
{
	struct sg_http1_range r;
	const char *s;

	s = "bytes 0-499/1234";
	CHECK_EQ(sg_http1_parse_content_range(s, strlen(s), &r), 0);
	CHECK(r.first == 0 && r.last == 499 && r.total == 1234 && !r.unsatisfied);
	s = "bytes 42-42/*";
	CHECK_EQ(sg_http1_parse_content_range(s, strlen(s), &r), 0);
	CHECK(r.first == 42 && r.last == 42 && r.total == SG_HTTP1_RANGE_UNKNOWN);
	s = "bytes */1234";
	CHECK_EQ(sg_http1_parse_content_range(s, strlen(s), &r), 0);
	CHECK(r.unsatisfied && r.total == 1234);
	s = "Bytes  0-0/1";
	CHECK_EQ(sg_http1_parse_content_range(s, strlen(s), &r), 0);
	const char *bad[] = {
		"bytes 5-4/10", "bytes 0-10/10", "bytes */*", "bytes 0-1", "bytes -1-2/3",
		"bytes 0-/3", "bytes a-b/c", "items 0-1/2", "bytes0-1/2", "bytes 0-1/2x",
		"bytes 0-1/18446744073709551615", "bytes 0-1/99999999999999999999", "",
		"bytes 0 -1/2", "bytes 1-2/ 3",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sg_http1_parse_content_range(bad[i], strlen(bad[i]), &r) != -EBADMSG)
			TEST_FAIL("accepted \"%s\"", bad[i]);
}

/* ---- multipart/byteranges ---- */

TEST(multipart_boundary)
{
	char b[80];
	const char *ct = "multipart/byteranges; boundary=3d6b6a416f9b5";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), 13);
	CHECK_STR(b, "3d6b6a416f9b5");
	ct = "Multipart/ByteRanges;charset=x;BOUNDARY=\"a b\\\"c\"";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), 5);
	CHECK_STR(b, "a b\"c");
	ct = "application/octet-stream";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), -ENOENT);
	ct = "multipart/byteranges";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), -ENOENT);
	ct = "multipart/byteranges; boundary=";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	ct = "multipart/byteranges; boundary=\"unterminated";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	ct = "multipart/byteranges; boundary=\"\"";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	ct = "multipart/byteranges; boundary=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	ct = "multipart/byteranges; boundary=abc";
	CHECK_EQ(sg_multipart_boundary(ct, strlen(ct), b, 3), -EBADMSG);
}

struct mp_result {
	int rc;
	unsigned parts;
	uint64_t firsts[8];
	size_t lens[8];
	char data[8][64];
};

static void mp_parse(const char *boundary, const char *body, size_t len, size_t step,
		     struct mp_result *res)
{
	static struct sg_multipart m;
	size_t start = 0;

	memset(res, 0, sizeof(*res));
	CHECK_EQ(sg_multipart_init(&m, boundary, strlen(boundary)), 0);
	while (start < len || len == 0) {
		size_t plen = len - start < step ? len - start : step, off = 0;
		for (;;) {
			size_t n;
			struct sg_http1_slice d;
			int ev = sg_multipart_feed(&m, (const uint8_t *)body + start + off, plen - off,
						   &n, &d);
			off += n;
			if (ev < 0) {
				res->rc = ev;
				return;
			}
			if (ev == SG_MULTIPART_NEED_MORE)
				break;
			if (ev == SG_MULTIPART_DONE) {
				res->rc = ev;
				return;
			}
			if (ev == SG_MULTIPART_PART) {
				CHECK(res->parts < 8);
				res->firsts[res->parts++] = m.range.first;
			}
			if (ev == SG_MULTIPART_DATA) {
				unsigned k = res->parts - 1;
				CHECK_EQ(m.data_offset, res->firsts[k] + res->lens[k]);
				CHECK(res->lens[k] + d.len < 64);
				memcpy(res->data[k] + res->lens[k], d.data, d.len);
				res->lens[k] += d.len;
			}
		}
		start += plen;
		if (len == 0)
			break;
	}
	res->rc = sg_multipart_finish(&m);
}

TEST(multipart_parts)
{
	static struct mp_result r;
	const char *body = "\r\n--THIS_STRING_SEPARATES\r\n"
			   "Content-Type: application/octet-stream\r\n"
			   "Content-Range: bytes 0-4/1000\r\n"
			   "\r\n"
			   "he\r\n-\r\n"
			   "--THIS_STRING_SEPARATES  \r\n"
			   "content-range:bytes 500-509/1000\r\n"
			   "\r\n"
			   "--THIS_STR"
			   "\r\n--THIS_STRING_SEPARATES--\r\n"
			   "epilogue is ignored";
	size_t len = strlen(body);
	for (size_t step = 1; step <= len; step++) {
		mp_parse("THIS_STRING_SEPARATES", body, len, step, &r);
		if (r.rc != SG_MULTIPART_DONE)
			TEST_FAIL("step %zu: rc %d", step, r.rc);
		CHECK_EQ(r.parts, 2);
		CHECK_EQ(r.firsts[0], 0);
		CHECK_EQ(r.lens[0], 5);
		CHECK_MEM(r.data[0], "he\r\n-", 5);
		CHECK_EQ(r.firsts[1], 500);
		CHECK_EQ(r.lens[1], 10);
		CHECK_MEM(r.data[1], "--THIS_STR", 10);
	}
}

TEST(multipart_errors)
{
	static struct mp_result r;
	const char *bad[] = {
		/* missing Content-Range */
		"--b\r\nContent-Type: x\r\n\r\nabc\r\n--b--\r\n",
		/* data longer than the range says */
		"--b\r\nContent-Range: bytes 0-1/10\r\n\r\nabc\r\n--b--\r\n",
		/* no delimiter at all */
		"just some bytes\r\n",
		/* closing delimiter without parts */
		"--b--\r\n",
		/* malformed range */
		"--b\r\nContent-Range: bytes 3-1/10\r\n\r\n",
		/* unsatisfied range */
		"--b\r\nContent-Range: bytes */10\r\n\r\n",
		/* two ranges in one part */
		"--b\r\nContent-Range: bytes 0-0/10\r\nContent-Range: bytes 1-1/10\r\n\r\nx\r\n--b--\r\n",
		/* header without a colon */
		"--b\r\nnonsense\r\n\r\n",
		/* truncated inside data */
		"--b\r\nContent-Range: bytes 0-9/10\r\n\r\nabc",
		/* truncated before the closing delimiter */
		"--b\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (size_t step = 1; step < 8; step++) {
			mp_parse("b", bad[i], strlen(bad[i]), step, &r);
			if (r.rc >= 0)
				TEST_FAIL("case %zu step %zu: rc %d", i, step, r.rc);
		}
	}
	static char big[4096];
	memset(big, 'x', sizeof(big) - 1);
	mp_parse("b", big, strlen(big), 100, &r);
	CHECK_EQ(r.rc, -EMSGSIZE);
	static struct sg_multipart m;
	CHECK_EQ(sg_multipart_init(&m, "", 0), -EINVAL);
}

TEST(multipart_from_http)
{
	/* The whole pipeline: a chunked 206 whose body is multipart. */
	static struct sg_http1_parser p;
	static struct sg_multipart m;
	const char *resp = "HTTP/1.1 206 Partial Content\r\n"
			   "Content-Type: multipart/byteranges; boundary=XyZ\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n"
			   "10\r\n--XyZ\r\nContent-R\r\n"
			   "26\r\nange: bytes 10-12/20\r\n\r\nABC\r\n--XyZ--\r\n\r\n0\r\n\r\n";
	size_t off = 0, len = strlen(resp), n, got = 0;
	struct sg_http1_slice b;
	char data[8];
	bool done = false;
	sg_http1_parser_init(&p, false);
	for (;;) {
		int ev = sg_http1_feed(&p, (const uint8_t *)resp + off, len - off, &n, &b);
		off += n;
		CHECK(ev >= 0);
		if (ev == SG_HTTP1_HEAD) {
			char bnd[80];
			size_t vl;
			const char *v = sg_http1_header(&p, "content-type", &vl);
			int bl = sg_multipart_boundary(v, vl, bnd, sizeof(bnd));
			CHECK_EQ(bl, 3);
			CHECK_EQ(sg_multipart_init(&m, bnd, (size_t)bl), 0);
		}
		if (ev == SG_HTTP1_BODY) {
			size_t o = 0;
			while (o < b.len || !done) {
				size_t k;
				struct sg_http1_slice d;
				int mev = sg_multipart_feed(&m, b.data + o, b.len - o, &k, &d);
				o += k;
				CHECK(mev >= 0);
				if (mev == SG_MULTIPART_NEED_MORE)
					break;
				if (mev == SG_MULTIPART_DONE) {
					done = true;
					break;
				}
				if (mev == SG_MULTIPART_DATA) {
					memcpy(data + got, d.data, d.len);
					got += d.len;
				}
			}
		}
		if (ev == SG_HTTP1_DONE)
			break;
		CHECK(ev != SG_HTTP1_NEED_MORE);
	}
	CHECK(done);
	CHECK_EQ(got, 3);
	CHECK_MEM(data, "ABC", 3);
	CHECK_EQ(sg_multipart_finish(&m), SG_MULTIPART_DONE);
}

TEST_MAIN()
