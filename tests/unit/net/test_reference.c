/* Tests for net/reference: parsing, docker.io normalization, validation, paths. */
#include <errno.h>

#include "net/reference.h"
#include "tests/unit/test.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void ok(const char *in, const char *domain, const char *host, const char *repo,
	       const char *tag, const char *digest)
{
	struct sg_ref r;
	struct sg_error e = { 0 };
	int rc = sg_ref_parse(in, &r, &e);
	if (rc != 0)
		TEST_FAIL("\"%s\": %d (%s)", in, rc, e.msg);
	CHECK_STR(r.domain, domain);
	CHECK_STR(r.host, host);
	CHECK_STR(r.repo, repo);
	CHECK_STR(r.tag, tag);
	CHECK_STR(r.digest, digest);
}

static void bad(const char *in, const char *why_substr)
{
	struct sg_ref r;
	struct sg_error e = { 0 };
	int rc = sg_ref_parse(in, &r, &e);
	if (rc != -EINVAL)
		TEST_FAIL("\"%s\" accepted (repo %s)", in, r.repo);
	CHECK(e.msg[0] != '\0');
	if (why_substr && !strstr(e.msg, why_substr))
		TEST_FAIL("\"%s\": error \"%s\" lacks \"%s\"", in, e.msg, why_substr);
}

TEST(docker_hub_normalization)
{
	ok("ubuntu", "docker.io", "registry-1.docker.io", "library/ubuntu", "latest", "");
	ok("ubuntu:22.04", "docker.io", "registry-1.docker.io", "library/ubuntu", "22.04", "");
	ok("docker.io/ubuntu", "docker.io", "registry-1.docker.io", "library/ubuntu", "latest", "");
	ok("index.docker.io/library/ubuntu", "docker.io", "registry-1.docker.io", "library/ubuntu",
	   "latest", "");
	ok("registry-1.docker.io/foo/bar:x", "docker.io", "registry-1.docker.io", "foo/bar", "x", "");
	ok("user/app", "docker.io", "registry-1.docker.io", "user/app", "latest", "");
	ok("a/b/c/d", "docker.io", "registry-1.docker.io", "a/b/c/d", "latest", "");
}

TEST(other_registries)
{
	ok("ghcr.io/stargz-containers/python:3.9-esgz", "ghcr.io", "ghcr.io",
	   "stargz-containers/python", "3.9-esgz", "");
	ok("localhost:5000/a/b", "localhost:5000", "localhost:5000", "a/b", "latest", "");
	ok("localhost/a", "localhost", "localhost", "a", "latest", "");
	ok("127.0.0.1:5000/x:y", "127.0.0.1:5000", "127.0.0.1:5000", "x", "y", "");
	ok("[::1]:5000/x", "[::1]:5000", "[::1]:5000", "x", "latest", "");
	ok("Registry.Example.COM/x", "Registry.Example.COM", "Registry.Example.COM", "x", "latest", "");
	ok("my-registry.local:443/ns/img_name__x.y-z---w:TAG_1.0-rc", "my-registry.local:443",
	   "my-registry.local:443", "ns/img_name__x.y-z---w", "TAG_1.0-rc", "");
}

TEST(digests)
{
	ok("ubuntu@sha256:" D64, "docker.io", "registry-1.docker.io", "library/ubuntu", "",
	   "sha256:" D64);
	ok("ghcr.io/a/b:v1@sha256:" D64, "ghcr.io", "ghcr.io", "a/b", "v1", "sha256:" D64);
	ok("localhost:5000/a@sha512:" D64 D64, "localhost:5000", "localhost:5000", "a", "",
	   "sha512:" D64 D64);
	CHECK_EQ(sg_ref_check_digest("sha256:" D64), 0);
	CHECK_EQ(sg_ref_check_digest("sha256:" D64 "0"), -EINVAL);
	CHECK_EQ(sg_ref_check_digest("sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"), -EINVAL);
	CHECK_EQ(sg_ref_check_digest("md5:0123"), -EINVAL);
	CHECK_EQ(sg_ref_check_digest(NULL), -EINVAL);
}

TEST(invalid)
{
	bad("", "empty");
	bad("Ubuntu", "lower-case");
	bad("docker.io/Library/ubuntu", "lower-case");
	bad("ubuntu:", "tag");
	bad("ubuntu:.x", "tag");
	bad("ubuntu:-x", "tag");
	bad("ubuntu:a b", "tag");
	bad("ubuntu@sha256:abc", "digest");
	bad("ubuntu@", "digest");
	bad("ubuntu@sha256:" D64 "x", "digest");
	bad("a//b", "repository");
	bad("a/", "repository");
	bad("/a", NULL);
	bad("a/-b", "repository");
	bad("a/b-", "repository");
	bad("a/b..c", "repository");
	bad("a/b___c", "repository");
	bad("a/b._c", "repository");
	bad("-a.io/b", "host");
	bad("a-.io/b", "host");
	bad("a..io/b", "host");
	bad("a.io:/b", "host");
	bad("a.io:0/b", "host");
	bad("a.io:65536/b", "host");
	bad("a.io:12x/b", "host");
	bad("[zz::1]/b", "host");
	bad("[]/b", "host");
	bad("a_b.io/c", "host");
	bad(":tag", NULL);
	bad("a.io/", NULL);
	bad("@sha256:" D64, NULL);
}

TEST(lengths)
{
	char s[600];
	/* 255 is the limit for domain/repo. */
	memset(s, 'a', 255 - 8 - 10);
	s[255 - 18] = 0;
	struct sg_ref r;
	struct sg_error e = { 0 };
	CHECK_EQ(sg_ref_parse(s, &r, &e), 0);
	memset(s, 'a', 300);
	s[300] = 0;
	CHECK_EQ(sg_ref_parse(s, &r, &e), -EINVAL);
	memcpy(s, "x:", 2);
	memset(s + 2, 't', 128);
	s[130] = 0;
	CHECK_EQ(sg_ref_parse(s, &r, &e), 0);
	CHECK_EQ(strlen(r.tag), 128);
	memset(s + 2, 't', 129);
	s[131] = 0;
	CHECK_EQ(sg_ref_parse(s, &r, &e), -EINVAL);
	memset(s, 'a', 599);
	s[599] = 0;
	CHECK_EQ(sg_ref_parse(s, &r, &e), -EINVAL);
}

TEST(format_and_paths)
{
	struct sg_ref r;
	char buf[512];

	CHECK_EQ(sg_ref_parse("ubuntu:22.04", &r, NULL), 0);
	CHECK(sg_ref_format(&r, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "docker.io/library/ubuntu:22.04");
	CHECK(sg_ref_manifest_path(&r, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "/v2/library/ubuntu/manifests/22.04");
	CHECK(sg_ref_blob_path(&r, "sha256:" D64, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "/v2/library/ubuntu/blobs/sha256:" D64);
	CHECK_EQ(sg_ref_blob_path(&r, "sha256:x", buf, sizeof(buf)), -EINVAL);
	CHECK_EQ(sg_ref_format(&r, buf, 10), -ENOSPC);

	CHECK_EQ(sg_ref_parse("a.io/x:t@sha256:" D64, &r, NULL), 0);
	CHECK(sg_ref_manifest_path(&r, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "/v2/x/manifests/sha256:" D64);
	CHECK(sg_ref_format(&r, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "a.io/x:t@sha256:" D64);
}

TEST_MAIN()
