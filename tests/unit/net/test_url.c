/* Tests for net/url: parsing and resolving URLs, authorities, the plain-HTTP policy. */
#include <errno.h>
#include <stdlib.h>

#include "net/url.h"
#include "tests/unit/test.h"

static int parse(const char *s, const struct sg_url *base, struct sg_url *u)
{
	return sg_url_parse(s, strlen(s), base, u);
}

TEST(url_parse)
{
	static struct sg_url u, base;
	char a[300];

	CHECK_EQ(parse("https://s3.example.com/bucket/key?X-Amz=1&b=2", NULL, &u), 0);
	CHECK(u.tls);
	CHECK_STR(u.host, "s3.example.com");
	CHECK_EQ(u.port, 443);
	CHECK_STR(u.target, "/bucket/key?X-Amz=1&b=2");
	CHECK_EQ(sg_url_authority(&u, a, sizeof(a)), 14);
	CHECK_STR(a, "s3.example.com");

	CHECK_EQ(parse("http://127.0.0.1:5000", NULL, &u), 0);
	CHECK(!u.tls);
	CHECK_EQ(u.port, 5000);
	CHECK_STR(u.target, "/");
	sg_url_authority(&u, a, sizeof(a));
	CHECK_STR(a, "127.0.0.1:5000");

	CHECK_EQ(parse("http://[::1]:8080/x#frag", NULL, &u), 0);
	CHECK_STR(u.host, "::1");
	CHECK_EQ(u.port, 8080);
	CHECK_STR(u.target, "/x");
	sg_url_authority(&u, a, sizeof(a));
	CHECK_STR(a, "[::1]:8080");

	CHECK_EQ(parse("HTTPS://Host.Example?q=1", NULL, &u), 0);
	CHECK_STR(u.target, "/?q=1");

	/* relative references against a base */
	CHECK_EQ(parse("https://reg.example:5000/v2/a/blobs/sha256:1", NULL, &base), 0);
	CHECK_EQ(parse("/other/path?x", &base, &u), 0);
	CHECK(u.tls);
	CHECK_STR(u.host, "reg.example");
	CHECK_EQ(u.port, 5000);
	CHECK_STR(u.target, "/other/path?x");
	CHECK_EQ(parse("sibling", &base, &u), 0);
	CHECK_STR(u.target, "/v2/a/blobs/sibling");
	CHECK_EQ(parse("//cdn.example/p", &base, &u), 0);
	CHECK(u.tls);
	CHECK_STR(u.host, "cdn.example");
	CHECK_EQ(u.port, 443);

	/* refused */
	CHECK_EQ(parse("ftp://x/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://user:pw@host/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https:///path", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host:0/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host:65536/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host/a b", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host/a\r\nX: y", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://ho$t/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("/relative", NULL, &u), -EINVAL);
	CHECK_EQ(parse("javascript:alert(1)", &base, &u), -EINVAL);
	{
		char *big = malloc(SG_URL_TARGET_MAX + 64);
		strcpy(big, "https://h/");
		memset(big + 10, 'a', SG_URL_TARGET_MAX + 10);
		big[SG_URL_TARGET_MAX + 20] = '\0';
		CHECK_EQ(parse(big, NULL, &u), -ENAMETOOLONG);
		free(big);
	}
}

TEST(plain_allowed)
{
	const char *list[] = { "reg.local:5000", "mirror.lan", "[fd00::1]:80" };

	CHECK(sg_url_plain_allowed(list, 3, false, "reg.local:5000"));
	CHECK(!sg_url_plain_allowed(list, 3, false, "reg.local:5001"));
	CHECK(!sg_url_plain_allowed(list, 3, false, "reg.local"));
	CHECK(sg_url_plain_allowed(list, 3, false, "mirror.lan"));
	CHECK(sg_url_plain_allowed(list, 3, false, "mirror.lan:8080"));
	CHECK(sg_url_plain_allowed(list, 3, false, "[fd00::1]:80"));
	CHECK(!sg_url_plain_allowed(list, 3, false, "localhost:5000"));
	CHECK(sg_url_plain_allowed(list, 3, true, "localhost:5000"));
	CHECK(sg_url_plain_allowed(NULL, 0, true, "127.0.0.1:5000"));
	CHECK(sg_url_plain_allowed(NULL, 0, true, "[::1]:5000"));
	CHECK(!sg_url_plain_allowed(NULL, 0, true, "127example.com"));
	CHECK(!sg_url_plain_allowed(NULL, 0, true, "docker.io"));
	CHECK(!sg_url_plain_allowed(NULL, 0, false, "127.0.0.1:5000"));
	CHECK(!sg_url_plain_allowed(list, 3, true, NULL));
}

TEST(split_authority)
{
	char h[SG_URL_HOST_MAX];
	uint16_t port = 0;

	CHECK_EQ(sg_url_split_authority("reg.example:5000", true, h, sizeof(h), &port), 0);
	CHECK_STR(h, "reg.example");
	CHECK_EQ(port, 5000);
	CHECK_EQ(sg_url_split_authority("reg.example", true, h, sizeof(h), &port), 0);
	CHECK_EQ(port, 443);
	CHECK_EQ(sg_url_split_authority("reg.example", false, h, sizeof(h), &port), 0);
	CHECK_EQ(port, 80);
	CHECK_EQ(sg_url_split_authority("[fd00::1]:8080", false, h, sizeof(h), &port), 0);
	CHECK_STR(h, "fd00::1");
	CHECK_EQ(port, 8080);
	CHECK_EQ(sg_url_split_authority("reg.example", true, h, 4, &port), -ENAMETOOLONG);
	CHECK_EQ(sg_url_split_authority("user@reg.example", true, h, sizeof(h), &port), -EINVAL);
}

TEST_MAIN()
