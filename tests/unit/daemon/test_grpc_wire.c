/* Tests of the pure gRPC wire helpers (daemon/grpc_wire.c). */
#include "daemon/grpc_wire.h"
#include "tests/unit/test.h"

#include <errno.h>

TEST(prefix_roundtrip)
{
	uint8_t p[SG_GRPC_PREFIX_LEN];

	sg_grpc_prefix_encode(p, 0, 0x01020304);
	CHECK_MEM(p, "\x00\x01\x02\x03\x04", 5);
	CHECK_EQ(sg_grpc_prefix_len(p), 0x01020304);
	sg_grpc_prefix_encode(p, SG_GRPC_FLAG_COMPRESSED, UINT32_MAX);
	CHECK_EQ(p[0], 1);
	CHECK_EQ(sg_grpc_prefix_len(p), UINT32_MAX);
}

TEST(percent_encode)
{
	char out[64];
	const char *in = "a b%c\n\xc3\xa9~\x7f";

	CHECK_EQ(sg_grpc_percent_encode(in, strlen(in), out, sizeof(out)), 20);
	CHECK_STR(out, "a b%25c%0A%C3%A9~%7F");
	/* Plain printable text is unchanged. */
	sg_grpc_percent_encode("Not Found: x", 12, out, sizeof(out));
	CHECK_STR(out, "Not Found: x");
	/* Truncation never splits an escape. */
	CHECK_EQ(sg_grpc_percent_encode("ab\n", 3, out, 5), 2);
	CHECK_STR(out, "ab");
	CHECK_EQ(sg_grpc_percent_encode("ab\n", 3, out, 6), 5);
	CHECK_STR(out, "ab%0A");
	CHECK_EQ(sg_grpc_percent_encode("x", 1, out, 1), 0);
	CHECK_STR(out, "");
	/* NUL bytes inside the given length are encoded too. */
	CHECK_EQ(sg_grpc_percent_encode("a\0b", 3, out, sizeof(out)), 5);
	CHECK_STR(out, "a%00b");
}

TEST(percent_decode)
{
	char out[64];

	sg_grpc_percent_decode("a%20b%0a%C3%A9", 14, out, sizeof(out));
	CHECK_STR(out, "a b\n\xc3\xa9");
	/* Invalid escapes stay as they are (the spec asks clients to be lenient). */
	sg_grpc_percent_decode("100%", 4, out, sizeof(out));
	CHECK_STR(out, "100%");
	sg_grpc_percent_decode("%zz%4", 5, out, sizeof(out));
	CHECK_STR(out, "%zz%4");
	CHECK_EQ(sg_grpc_percent_decode("abcdef", 6, out, 4), 3);
	CHECK_STR(out, "abc");
}

TEST(content_type)
{
	CHECK(sg_grpc_content_type_ok("application/grpc", 16));
	CHECK(sg_grpc_content_type_ok("application/grpc+proto", 22));
	CHECK(sg_grpc_content_type_ok("Application/GRPC;charset=x", 26));
	CHECK(!sg_grpc_content_type_ok("application/grpcx", 17));
	CHECK(!sg_grpc_content_type_ok("application/json", 16));
	CHECK(!sg_grpc_content_type_ok("application/grp", 15));
	CHECK(!sg_grpc_content_type_ok("", 0));
}

TEST(timeout)
{
	uint64_t ns = 0;

	CHECK_EQ(sg_grpc_parse_timeout("100m", 4, &ns), 0);
	CHECK_EQ(ns, 100000000u);
	CHECK_EQ(sg_grpc_parse_timeout("5S", 2, &ns), 0);
	CHECK_EQ(ns, 5000000000u);
	CHECK_EQ(sg_grpc_parse_timeout("1H", 2, &ns), 0);
	CHECK_EQ(ns, 3600000000000u);
	CHECK_EQ(sg_grpc_parse_timeout("7n", 2, &ns), 0);
	CHECK_EQ(ns, 7);
	CHECK_EQ(sg_grpc_parse_timeout("99999999H", 9, &ns), 0);
	CHECK(ns == UINT64_MAX);
	CHECK_EQ(sg_grpc_parse_timeout("123456789S", 10, &ns), -EINVAL);  /* 9 digits */
	CHECK_EQ(sg_grpc_parse_timeout("S", 1, &ns), -EINVAL);
	CHECK_EQ(sg_grpc_parse_timeout("10x", 3, &ns), -EINVAL);
	CHECK_EQ(sg_grpc_parse_timeout("1 S", 3, &ns), -EINVAL);
}

TEST_MAIN()
