/* Tests for net/http1: request writer, response parser, header value helpers. */
#include <errno.h>
#include <stdlib.h>

#include "net/http1.h"
#include "net/http1_ranges.h"
#include "tests/unit/test.h"

/* Result of parsing one whole response. */
struct result {
	int rc;                 /* SG_HTTP1_DONE or a negative errno */
	int status;
	bool keep_alive;
	enum sg_http1_framing framing;
	size_t consumed;        /* input bytes that belonged to the response */
	size_t body_len;
	char body[65536];
	char err[128];
};

/* Feeds `msg` split at the given cut points; cuts[] ascending, ncuts entries.  Pieces are
 * copied into a separate heap buffer each time so that ASan catches reads past a piece. */
static void parse_cuts(const char *msg, size_t len, const size_t *cuts, size_t ncuts, bool head,
		       bool eof_at_end, struct result *res)
{
	static struct sg_http1_parser p;
	size_t start = 0;

	memset(res, 0, sizeof(*res));
	sg_http1_parser_init(&p, head);
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t plen = end - start, off = 0;
		uint8_t *piece = malloc(plen ? plen : 1);
		memcpy(piece, msg + start, plen);
		for (;;) {
			size_t n = 99999;
			struct sg_http1_slice body;
			int ev = sg_http1_feed(&p, piece + off, plen - off, &n, &body);
			CHECK(n <= plen - off);
			off += n;
			if (ev < 0) {
				res->rc = ev;
				res->consumed = start + off;
				snprintf(res->err, sizeof(res->err), "%s", p.err ? p.err : "?");
				free(piece);
				return;
			}
			if (ev == SG_HTTP1_NEED_MORE) {
				CHECK_EQ(off, plen);
				break;
			}
			if (ev == SG_HTTP1_HEAD) {
				res->status = p.status;
				res->keep_alive = p.keep_alive;
				res->framing = p.framing;
			}
			if (ev == SG_HTTP1_BODY) {
				CHECK(body.len > 0);
				CHECK(res->body_len + body.len <= sizeof(res->body));
				memcpy(res->body + res->body_len, body.data, body.len);
				res->body_len += body.len;
			}
			if (ev == SG_HTTP1_DONE) {
				res->rc = SG_HTTP1_DONE;
				res->consumed = start + off;
				free(piece);
				return;
			}
		}
		free(piece);
		start = end;
	}
	res->consumed = len;
	res->rc = eof_at_end ? sg_http1_finish(&p) : SG_HTTP1_NEED_MORE;
	if (res->rc < 0)
		snprintf(res->err, sizeof(res->err), "%s", p.err ? p.err : "?");
}

static void parse_whole(const char *msg, bool head, bool eof, struct result *res)
{
	parse_cuts(msg, strlen(msg), NULL, 0, head, eof, res);
}

static bool same(const struct result *a, const struct result *b)
{
	return a->rc == b->rc && a->status == b->status && a->keep_alive == b->keep_alive &&
	       a->framing == b->framing && a->body_len == b->body_len &&
	       memcmp(a->body, b->body, a->body_len) == 0 &&
	       (a->rc < 0 || a->consumed == b->consumed);
}

/* Every split into two pieces, every split into three pieces (for short messages), and one
 * byte at a time must give the same result as the whole message at once. */
static void check_all_splits(const char *msg, bool head, bool eof)
{
	static struct result whole, part;
	size_t len = strlen(msg);

	parse_whole(msg, head, eof, &whole);
	for (size_t k = 0; k <= len; k++) {
		parse_cuts(msg, len, &k, 1, head, eof, &part);
		if (!same(&whole, &part))
			TEST_FAIL("split at %zu differs (rc %d vs %d)", k, part.rc, whole.rc);
	}
	if (len <= 400) {
		for (size_t a = 1; a < len; a++)
			for (size_t b = a; b < len; b += 3) {
				size_t cuts[2] = { a, b };
				parse_cuts(msg, len, cuts, 2, head, eof, &part);
				if (!same(&whole, &part))
					TEST_FAIL("split at %zu,%zu differs", a, b);
			}
	}
	size_t *cuts = malloc(len * sizeof(*cuts));
	for (size_t k = 0; k < len; k++)
		cuts[k] = k + 1 < len ? k + 1 : len;
	parse_cuts(msg, len, cuts, len ? len - 1 : 0, head, eof, &part);
	free(cuts);
	CHECK(same(&whole, &part));
}

/* ---- request writer ---- */

TEST(request_basic)
{
	char buf[512];
	struct sg_http1_writer w;

	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/v2/library/ubuntu/manifests/latest",
			   "registry-1.docker.io");
	sg_http1_req_header(&w, "Accept", "application/vnd.oci.image.index.v1+json");
	sg_http1_req_header(&w, "Authorization", "Bearer abc");
	int n = sg_http1_req_end(&w);
	const char *want = "GET /v2/library/ubuntu/manifests/latest HTTP/1.1\r\n"
			   "Host: registry-1.docker.io\r\n"
			   "Accept: application/vnd.oci.image.index.v1+json\r\n"
			   "Authorization: Bearer abc\r\n\r\n";
	CHECK_EQ(n, strlen(want));
	CHECK_MEM(buf, want, strlen(want));
}

TEST(request_ranges)
{
	char buf[256];
	struct sg_http1_writer w;
	struct sg_http1_byte_range r[3] = { { 0, 99 }, { 200, 200 }, { 1000, 18446744073709551614u } };

	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/b", "h");
	sg_http1_req_ranges(&w, r, 3);
	int n = sg_http1_req_end(&w);
	CHECK(n > 0);
	buf[n] = 0;
	CHECK(strstr(buf, "Range: bytes=0-99,200-200,1000-18446744073709551614\r\n") != NULL);

	struct sg_http1_byte_range bad = { 5, 4 };
	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/b", "h");
	sg_http1_req_ranges(&w, &bad, 1);
	CHECK_EQ(sg_http1_req_end(&w), -EINVAL);
}

TEST(request_injection_refused)
{
	char buf[256];
	struct sg_http1_writer w;

	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/x", "h");
	sg_http1_req_header(&w, "X", "a\r\nEvil: 1");
	CHECK_EQ(sg_http1_req_end(&w), -EINVAL);
	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/x y", "h");
	CHECK_EQ(sg_http1_req_end(&w), -EINVAL);
	sg_http1_req_begin(&w, buf, sizeof(buf), "GE T", "/x", "h");
	CHECK_EQ(sg_http1_req_end(&w), -EINVAL);
	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/x", "h");
	sg_http1_req_header(&w, "Bad Name", "v");
	CHECK_EQ(sg_http1_req_end(&w), -EINVAL);
	sg_http1_req_begin(&w, buf, sizeof(buf), "GET", "/x", "h\nX: y");
	CHECK_EQ(sg_http1_req_end(&w), -EINVAL);
}

TEST(request_too_small)
{
	char buf[64];
	struct sg_http1_writer w;

	for (size_t cap = 0; cap < 40; cap++) {
		sg_http1_req_begin(&w, buf, cap, "GET", "/abc", "example.com");
		sg_http1_req_header(&w, "A", "b");
		int n = sg_http1_req_end(&w);
		/* "GET /abc HTTP/1.1\r\nHost: example.com\r\nA: b\r\n\r\n" is 46 bytes. */
		CHECK_EQ(n, -ENOSPC);
		CHECK(w.len <= cap);
	}
	sg_http1_req_begin(&w, buf, 46, "GET", "/abc", "example.com");
	sg_http1_req_header(&w, "A", "b");
	CHECK_EQ(sg_http1_req_end(&w), 46);
}

/* ---- response parser ---- */

TEST(response_content_length)
{
	static struct result r;
	const char *m = "HTTP/1.1 200 OK\r\n"
			"Content-Type: application/octet-stream\r\n"
			"Content-Length: 11\r\n"
			"Docker-Content-Digest: sha256:abc\r\n"
			"\r\n"
			"hello world";
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.status, 200);
	CHECK(r.keep_alive);
	CHECK_EQ(r.framing, SG_HTTP1_BODY_LENGTH);
	CHECK_EQ(r.body_len, 11);
	CHECK_MEM(r.body, "hello world", 11);
	CHECK_EQ(r.consumed, strlen(m));
	check_all_splits(m, false, false);
}

TEST(response_header_lookup)
{
	static struct sg_http1_parser p;
	const char *m = "HTTP/1.1 401 Unauthorized\r\n"
			"www-authenticate:   Bearer realm=\"https://auth\"  \r\n"
			"X-Multi: a\r\n"
			"Content-Length: 0\r\n"
			"x-multi: b\r\n"
			"Empty:\r\n"
			"\r\n";
	size_t n, len;
	struct sg_http1_slice b;

	sg_http1_parser_init(&p, false);
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m, strlen(m), &n, &b), SG_HTTP1_HEAD);
	CHECK_EQ(n, strlen(m));
	CHECK_EQ(p.status, 401);
	const char *v = sg_http1_header(&p, "WWW-Authenticate", &len);
	CHECK(v && len == strlen("Bearer realm=\"https://auth\""));
	CHECK_MEM(v, "Bearer realm=\"https://auth\"", len);
	v = sg_http1_header_nth(&p, "x-multi", 1, &len);
	CHECK(v && len == 1 && v[0] == 'b');
	CHECK(sg_http1_header_nth(&p, "x-multi", 2, &len) == NULL);
	v = sg_http1_header(&p, "empty", &len);
	CHECK(v && len == 0);
	CHECK(sg_http1_header(&p, "missing", &len) == NULL);
	CHECK_EQ(sg_http1_header_count(&p), 5);
	const char *r = sg_http1_reason(&p, &len);
	CHECK(len == 12 && memcmp(r, "Unauthorized", 12) == 0);
	char buf[8];
	CHECK_EQ(sg_http1_header_copy(&p, "x-multi", buf, sizeof(buf)), 1);
	CHECK_STR(buf, "a");
	CHECK_EQ(sg_http1_header_copy(&p, "www-authenticate", buf, sizeof(buf)), -ENOSPC);
	CHECK_EQ(sg_http1_header_copy(&p, "nope", buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(sg_http1_feed(&p, NULL, 0, &n, &b), SG_HTTP1_DONE);
	CHECK_EQ(n, 0);
}

TEST(response_chunked)
{
	static struct result r;
	const char *m = "HTTP/1.1 200 OK\r\n"
			"Transfer-Encoding: chunked\r\n"
			"\r\n"
			"5\r\nhello\r\n"
			"1;ext=\"x\"\r\n \r\n"
			"A  \r\n0123456789\r\n"
			"0\r\n"
			"X-Trailer: yes\r\n"
			"\r\n";
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.framing, SG_HTTP1_BODY_CHUNKED);
	CHECK_EQ(r.body_len, 16);
	CHECK_MEM(r.body, "hello 0123456789", 16);
	CHECK_EQ(r.consumed, strlen(m));
	CHECK(r.keep_alive);
	check_all_splits(m, false, false);
}

TEST(response_chunked_bare_lf_and_uppercase_hex)
{
	static struct result r;
	const char *m = "HTTP/1.1 200 OK\n"
			"transfer-encoding: gzip, CHUNKED\n"
			"\n"
			"1F\nabcdefghijklmnopqrstuvwxyz01234\n"
			"0\n\n";
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.body_len, 31);
	check_all_splits(m, false, false);
}

TEST(response_chunked_errors)
{
	static struct result r;
	const char *bad[] = {
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\rX",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\x01",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		parse_whole(bad[i], false, true, &r);
		if (r.rc != -EBADMSG)
			TEST_FAIL("case %zu: rc %d", i, r.rc);
		check_all_splits(bad[i], false, true);
	}
	/* Overflowing sizes. */
	parse_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
		    false, true, &r);
	CHECK_EQ(r.rc, -ERANGE);
	parse_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nab",
		    false, true, &r);
	CHECK_EQ(r.rc, -EPIPE);
	/* Leading zeros are fine. */
	parse_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "00000000000000000000003\r\nabc\r\n0\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.body_len, 3);
}

TEST(response_chunked_limits)
{
	static struct result r;
	static char m[20000];
	int n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
	memset(m + n, 'e', SG_HTTP1_CHUNK_LINE_MAX + 10);
	m[n + SG_HTTP1_CHUNK_LINE_MAX + 10] = 0;
	parse_whole(m, false, true, &r);
	CHECK_EQ(r.rc, -EMSGSIZE);

	n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
	for (int i = 0; i < 1300; i++)   /* 18 KB of trailers > SG_HTTP1_HEAD_MAX */
		n += snprintf(m + n, sizeof(m) - (size_t)n, "X-T: 1234567\r\n");
	parse_whole(m, false, true, &r);
	CHECK_EQ(r.rc, -EMSGSIZE);
}

TEST(response_truncated)
{
	static struct result r;
	parse_whole("HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nabc", false, true, &r);
	CHECK_EQ(r.rc, -EPIPE);
	CHECK_EQ(r.body_len, 3);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Len", false, true, &r);
	CHECK_EQ(r.rc, -EPIPE);
	parse_whole("", false, true, &r);
	CHECK_EQ(r.rc, -EPIPE);
	parse_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", false, true, &r);
	CHECK_EQ(r.rc, -EPIPE);
	parse_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n", false, true,
		    &r);
	CHECK_EQ(r.rc, -EPIPE);
}

TEST(response_until_eof)
{
	static struct result r;
	const char *m = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body\r\n\r\nmore";
	parse_whole(m, false, true, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.framing, SG_HTTP1_BODY_EOF);
	CHECK(!r.keep_alive);
	CHECK_EQ(r.body_len, strlen("some body\r\n\r\nmore"));
	check_all_splits(m, false, true);
	/* A coding other than chunked last: read until close. */
	parse_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz", false, true, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.framing, SG_HTTP1_BODY_EOF);
	CHECK_EQ(r.body_len, 3);
}

TEST(response_bodyless)
{
	static struct result r;
	/* HEAD: Content-Length describes the GET body, none follows; the next response's
	 * bytes must be left alone. */
	const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\n";
	parse_whole(m, true, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.framing, SG_HTTP1_BODY_NONE);
	CHECK_EQ(r.consumed, strlen("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"));
	check_all_splits(m, true, false);

	static struct sg_http1_parser p;
	size_t n;
	struct sg_http1_slice b;
	sg_http1_parser_init(&p, true);
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m, strlen(m), &n, &b), SG_HTTP1_HEAD);
	CHECK_EQ(p.content_length, 1234);

	const char *m204 = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
	parse_whole(m204, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.body_len, 0);
	const char *m304 = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
	parse_whole(m304, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	const char *m0 = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
	parse_whole(m0, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK(r.keep_alive);
}

TEST(response_interim_1xx)
{
	static struct result r;
	const char *m = "HTTP/1.1 100 Continue\r\n\r\n"
			"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.status, 200);
	CHECK_EQ(r.body_len, 2);
	check_all_splits(m, false, false);
	parse_whole("HTTP/1.1 101 Switching Protocols\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, -EBADMSG);
}

TEST(response_connection_semantics)
{
	static struct result r;
	parse_whole("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n",
		    false, false, &r);
	CHECK(!r.keep_alive);
	parse_whole("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, &r);
	CHECK(!r.keep_alive);
	parse_whole("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false,
		    false, &r);
	CHECK(r.keep_alive);
	parse_whole("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", false,
		    false, &r);
	CHECK(r.keep_alive);
	/* TE and CL together: chunked wins and the connection is not reused. */
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "2\r\nab\r\n0\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.body_len, 2);
	CHECK(!r.keep_alive);
}

TEST(response_content_length_rules)
{
	static struct result r;
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc", false,
		    false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", false,
		    false, &r);
	CHECK_EQ(r.rc, -EBADMSG);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, -EBADMSG);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 3 3\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, -EBADMSG);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, -EBADMSG);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false, false,
		    &r);
	CHECK_EQ(r.rc, -ERANGE);
	parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nab", false,
		    true, &r);
	CHECK_EQ(r.rc, -EPIPE);
	CHECK_EQ(r.body_len, 2);
}

TEST(response_malformed_heads)
{
	static struct result r;
	const char *bad[] = {
		"garbage\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 099 X\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n",
		"HTTP/1.1 200 O\x01K\r\n\r\n",
		"HTTP/1.1 200 OK\r\n continuation first\r\n\r\n",
		"\r\n\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: \0b\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Case 17 has a NUL: pass its full length. */
		size_t len = strlen(bad[i]) + (i == 17 ? 6 : 0);
		parse_cuts(bad[i], len, NULL, 0, false, true, &r);
		if (r.rc != -EBADMSG)
			TEST_FAIL("case %zu: rc %d (%s)", i, r.rc, r.err);
		CHECK(r.err[0]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (i != 17)
			check_all_splits(bad[i], false, true);
}

TEST(response_lenient_heads)
{
	static struct result r;
	static struct sg_http1_parser p;
	size_t n, len;
	struct sg_http1_slice b;

	/* No reason phrase at all, leading CRLF, bare LF line endings. */
	parse_whole("\r\nHTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.status, 200);
	parse_whole("HTTP/1.1 404 \nContent-Length: 0\n\n", false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.status, 404);
	/* obs-fold is replaced by spaces. */
	const char *m = "HTTP/1.1 200 OK\r\nX-Fold: a\r\n  b\r\n\tc\r\nX-Empty:\r\n d\r\n\r\n";
	sg_http1_parser_init(&p, false);
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m, strlen(m), &n, &b), SG_HTTP1_HEAD);
	const char *v = sg_http1_header(&p, "x-fold", &len);
	CHECK(v && len == 10);
	CHECK_MEM(v, "a    b   c", 10);
	v = sg_http1_header(&p, "x-empty", &len);
	CHECK(v && len == 1 && v[0] == 'd');
	check_all_splits(m, false, true);
}

TEST(response_limits)
{
	static struct result r;
	static char m[70000];
	int n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i <= SG_HTTP1_HEADERS_MAX; i++)
		n += snprintf(m + n, sizeof(m) - (size_t)n, "X-%d: v\r\n", i);
	snprintf(m + n, sizeof(m) - (size_t)n, "\r\n");
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, -E2BIG);

	n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\nX-Big: ");
	memset(m + n, 'a', 20000);
	strcpy(m + n + 20000, "\r\n\r\n");
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, -EMSGSIZE);
	/* A huge head without any LF is refused as soon as the limit is crossed. */
	memset(m, 'H', 40000);
	m[40000] = 0;
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, -EMSGSIZE);
	CHECK(r.consumed <= SG_HTTP1_HEAD_MAX);

	/* Exactly at the limit passes; one byte more fails. */
	static struct sg_http1_parser p;
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	size_t used;
	struct sg_http1_slice b;
	sg_http1_parser_init(&p, false);
	sg_http1_parser_set_head_max(&p, strlen(ok));
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)ok, strlen(ok), &used, &b), SG_HTTP1_HEAD);
	sg_http1_parser_init(&p, false);
	sg_http1_parser_set_head_max(&p, strlen(ok) - 1);
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)ok, strlen(ok), &used, &b), -EMSGSIZE);
}

TEST(response_pipelined_reuse)
{
	/* Two responses back to back on a kept-alive connection, parsed with one parser that
	 * is re-initialized after the first. */
	static struct sg_http1_parser p;
	const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
			"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-6/10\r\n"
			"Content-Length: 2\r\n\r\nxy";
	size_t off = 0, n, len = strlen(m);
	struct sg_http1_slice b;
	int ev;

	sg_http1_parser_init(&p, false);
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m, len, &n, &b), SG_HTTP1_HEAD);
	off += n;
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m + off, len - off, &n, &b), SG_HTTP1_BODY);
	off += n;
	CHECK(b.len == 3 && memcmp(b.data, "abc", 3) == 0);
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m + off, len - off, &n, &b), SG_HTTP1_DONE);
	CHECK_EQ(n, 0);
	/* Done parsers consume nothing. */
	CHECK_EQ(sg_http1_feed(&p, (const uint8_t *)m + off, len - off, &n, &b), SG_HTTP1_DONE);
	CHECK_EQ(n, 0);
	sg_http1_parser_init(&p, false);
	ev = sg_http1_feed(&p, (const uint8_t *)m + off, len - off, &n, &b);
	CHECK_EQ(ev, SG_HTTP1_HEAD);
	CHECK_EQ(p.status, 206);
	size_t vlen;
	const char *v = sg_http1_header(&p, "content-range", &vlen);
	struct sg_http1_range rg;
	CHECK_EQ(sg_http1_parse_content_range(v, vlen, &rg), 0);
	CHECK_EQ(rg.first, 5);
	CHECK_EQ(rg.last, 6);
	CHECK_EQ(rg.total, 10);
}

TEST(response_binary_body_large)
{
	/* A 64 KiB binary body (all byte values, including CR/LF/NUL) through chunked framing. */
	static char m[200000];
	static struct result r;
	int n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	size_t total = 0;
	unsigned seed = 1;
	while (total < 60000) {
		size_t cl = 1 + (seed = seed * 1103515245 + 12345) % 5000;
		n += snprintf(m + n, sizeof(m) - (size_t)n, "%zx\r\n", cl);
		for (size_t k = 0; k < cl; k++)
			m[n++] = (char)(1 + (total + k) % 255);   /* no NUL: m is a C string */
		memcpy(m + n, "\r\n", 2);
		n += 2;
		total += cl;
	}
	n += snprintf(m + n, sizeof(m) - (size_t)n, "0\r\n\r\n");
	parse_whole(m, false, false, &r);
	CHECK_EQ(r.rc, SG_HTTP1_DONE);
	CHECK_EQ(r.body_len, total);
	for (size_t k = 0; k < total; k++)
		if ((unsigned char)r.body[k] != (unsigned char)(1 + k % 255))
			TEST_FAIL("body byte %zu", k);
	/* Splits at every boundary of the first 3000 bytes are covered by the generic helper
	 * on smaller messages; here check a few hundred random splits. */
	for (int t = 0; t < 300; t++) {
		static struct result part;
		size_t cuts[3];
		seed = seed * 1103515245 + 12345;
		cuts[0] = seed % (size_t)n;
		cuts[1] = cuts[0] + (seed >> 8) % ((size_t)n - cuts[0]);
		cuts[2] = cuts[1] + (seed >> 4) % ((size_t)n - cuts[1]);
		parse_cuts(m, (size_t)n, cuts, 3, false, false, &part);
		CHECK(same(&r, &part));
	}
}

/* ---- helpers ---- */

TEST(list_tokens)
{
	const char *v = " keep-alive ,Upgrade;q=1 , close";
	CHECK(sg_http1_list_has_token(v, strlen(v), "close"));
	CHECK(sg_http1_list_has_token(v, strlen(v), "UPGRADE"));
	CHECK(sg_http1_list_has_token(v, strlen(v), "keep-alive"));
	CHECK(!sg_http1_list_has_token(v, strlen(v), "clos"));
	CHECK(!sg_http1_list_has_token("", 0, "close"));
	CHECK(!sg_http1_list_has_token(",,,", 3, "close"));
}

TEST(name_eq_and_tchar)
{
	CHECK(sg_http1_name_eq("Content-Range", 13, "content-range"));
	CHECK(sg_http1_name_eq("BOUNDARY=x", 8, "boundary"));
	CHECK(!sg_http1_name_eq("content-rang", 12, "content-range"));
	CHECK(!sg_http1_name_eq("content-ranges", 14, "content-range"));
	CHECK(sg_http1_name_eq("", 0, ""));
	CHECK(sg_http1_is_tchar('a') && sg_http1_is_tchar('~') && sg_http1_is_tchar('7'));
	CHECK(!sg_http1_is_tchar(' ') && !sg_http1_is_tchar('"') && !sg_http1_is_tchar(';'));
	CHECK(!sg_http1_is_tchar('\0') && !sg_http1_is_tchar(0x80));
}

TEST(parse_u64)
{
	uint64_t v;
	CHECK_EQ(sg_http1_parse_u64("18446744073709551615", 20, &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_EQ(sg_http1_parse_u64("18446744073709551616", 20, &v), -ERANGE);
	CHECK_EQ(sg_http1_parse_u64("", 0, &v), -EBADMSG);
	CHECK_EQ(sg_http1_parse_u64("+1", 2, &v), -EBADMSG);
}

TEST_MAIN()
