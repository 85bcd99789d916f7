/* SHA-256 (Nettle) and OCI digest strings. */
#include "daemon/core/digest.h"
#include "tests/unit/test.h"

#include <errno.h>

TEST(sha256_known_vectors)
{
	struct sg_digest d;
	char s[SG_DIGEST_STRLEN + 1];

	sg_sha256("", 0, &d);
	sg_digest_format(&d, s);
	CHECK_STR(s, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sg_sha256("abc", 3, &d);
	sg_digest_format(&d, s);
	CHECK_STR(s, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(sha256_incremental_equals_oneshot)
{
	static char buf[100000];
	struct sg_digest a, b;
	struct sg_sha256 ctx;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 2654435761u >> 13);
	sg_sha256(buf, sizeof(buf), &a);
	sg_sha256_init(&ctx);
	for (size_t off = 0; off < sizeof(buf); off += 777)
		sg_sha256_update(&ctx, buf + off, off + 777 > sizeof(buf) ? sizeof(buf) - off : 777);
	sg_sha256_final(&ctx, &b);
	CHECK(sg_digest_equal(&a, &b));
	b.bytes[31] ^= 1;
	CHECK(!sg_digest_equal(&a, &b));
}

TEST(digest_parse)
{
	const char *good = "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
	struct sg_digest d, abc;
	char s[SG_DIGEST_STRLEN + 1];

	CHECK_EQ(sg_digest_parse(good, strlen(good), &d), 0);
	sg_sha256("abc", 3, &abc);
	CHECK(sg_digest_equal(&d, &abc));
	sg_digest_format(&d, s);
	CHECK_EQ(sg_digest_parse(s, strlen(s), &d), 0);
	CHECK_EQ(sg_digest_parse("sha512:abcd", 11, &d), -EOPNOTSUPP);
	CHECK_EQ(sg_digest_parse("sha256:abcd", 11, &d), -EINVAL);
	CHECK_EQ(sg_digest_parse("sha256", 6, &d), -EINVAL);
	CHECK_EQ(sg_digest_parse(":abc", 4, &d), -EINVAL);
	CHECK_EQ(sg_digest_parse("SHA256:x", 8, &d), -EINVAL);
	char bad[SG_DIGEST_STRLEN + 1];
	memcpy(bad, s, sizeof(bad));
	bad[40] = 'g';
	CHECK_EQ(sg_digest_parse(bad, SG_DIGEST_STRLEN, &d), -EINVAL);
	/* Length is explicit: trailing bytes are not ignored. */
	CHECK_EQ(sg_digest_parse(s, SG_DIGEST_STRLEN - 1, &d), -EINVAL);
}

TEST_MAIN()
