/* The resolve hook's request parsing (daemon/ahead_cmd.h, sg_ahead_hook_image): what
 * containerd's resolver sends a host of hosts.toml, and what must start nothing. */
#include "daemon/ahead_cmd.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <string.h>

static int parse(const char *path, const char *query, char *image)
{
	return sg_ahead_hook_image(path, query, image, 512);
}

TEST(containerd_resolving_a_tag_or_a_digest_names_the_image)
{
	char image[512];

	/* As containerd 1.6 sends it (measured): the registry percent-encoded in ns. */
	CHECK_EQ(parse("/v2/bench-python/manifests/esgz", "ns=127.0.0.1%3A5001", image), 0);
	CHECK_STR(image, "127.0.0.1:5001/bench-python:esgz");
	CHECK_EQ(parse("/v2/library/python/manifests/3.11-slim", "ns=docker.io", image), 0);
	CHECK_STR(image, "docker.io/library/python:3.11-slim");
	CHECK_EQ(parse("/v2/a/b/c/manifests/sha256:"
		       "90403bf8b08b6350b6c59ece0981e169b1b04afadbb906fffcf98cc335a8a103",
		       "ns=ghcr.io", image), 0);
	CHECK_STR(image, "ghcr.io/a/b/c@sha256:"
		  "90403bf8b08b6350b6c59ece0981e169b1b04afadbb906fffcf98cc335a8a103");
	/* A repository with a component named "manifests": the last one splits. */
	CHECK_EQ(parse("/v2/x/manifests/y/manifests/v1", "ns=h:5000", image), 0);
	CHECK_STR(image, "h:5000/x/manifests/y:v1");
	/* Another parameter beside ns. */
	CHECK_EQ(parse("/v2/r/manifests/t", "a=1&ns=%5B%3A%3A1%5D%3A5000&b=2", image), 0);
	CHECK_STR(image, "[::1]:5000/r:t");
}

TEST(anything_else_names_no_image)
{
	char image[512];

	CHECK_EQ(parse("/v2/r/manifests/t", "", image), -ENOENT);   /* no ns */
	CHECK_EQ(parse("/v2/r/manifests/t", "nsx=h", image), -ENOENT);
	CHECK_EQ(parse("/v2/r/blobs/sha256:00", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/manifests/t", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v3/r/manifests/t", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/r/manifests/", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/R/manifests/t", "ns=h", image), -EINVAL);   /* uppercase name */
	CHECK_EQ(parse("/v2//r/manifests/t", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/r//s/manifests/t", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/r%2Fs/manifests/t", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/r/manifests/-t", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/r/manifests/t%20u", "ns=h", image), -EINVAL);
	CHECK_EQ(parse("/v2/r/manifests/t", "ns=h%2Fx", image), -EINVAL);   /* a '/' in ns */
	CHECK_EQ(parse("/v2/r/manifests/t", "ns=h%40x", image), -EINVAL);   /* '@' */
	CHECK_EQ(parse("/v2/r/manifests/t", "ns=", image), -EINVAL);
	CHECK_EQ(parse("/v2/r/manifests/t", "ns=h%00", image), -EINVAL);
	char tag[140];
	memset(tag, 'a', sizeof(tag) - 1);
	tag[sizeof(tag) - 1] = '\0';
	char path[200];
	snprintf(path, sizeof(path), "/v2/r/manifests/%s", tag);
	CHECK_EQ(parse(path, "ns=h", image), -EINVAL);   /* a tag of more than 128 */
	/* Too long for the caller's buffer. */
	CHECK_EQ(sg_ahead_hook_image("/v2/rrrrrrrr/manifests/t", "ns=h", image, 8), -ENAMETOOLONG);
}

TEST_MAIN()
