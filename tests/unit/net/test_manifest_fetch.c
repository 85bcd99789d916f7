/* Tests for net/manifest_fetch against a scripted registry on a thread: an image manifest by
 * tag, an index resolved to the platform's manifest, a digest that does not match, and bad
 * references reported from the loop. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "net/manifest.h"
#include "net/manifest_fetch.h"
#include "tests/helpers/registry_env.h"
#include "tests/unit/test.h"

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char image[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	"\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
	"\"digest\":\"sha256:" H64 "\",\"size\":2},"
	"\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
	"\"digest\":\"sha256:" H64 "\",\"size\":3}]}";

static char image_digest[SG_DIGEST_STRLEN + 1], index_digest[SG_DIGEST_STRLEN + 1];
static char index_json[1024];
static char image_resp[2048], index_resp[2048];
static const char *script[2];

static void digest_of(const char *s, char *out)
{
	struct sg_digest d;
	sg_sha256((const uint8_t *)s, strlen(s), &d);
	sg_digest_format(&d, out);
}

static void make_responses(void)
{
	digest_of(image, image_digest);
	snprintf(image_resp, sizeof(image_resp), "HTTP/1.1 200 OK\r\nContent-Type: "
		 "application/vnd.oci.image.manifest.v1+json\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(image), image);
	snprintf(index_json, sizeof(index_json),
		 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
		 "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		 "\"digest\":\"sha256:" H64 "\",\"size\":9,"
		 "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
		 "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		 "\"digest\":\"%s\",\"size\":%zu,"
		 "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}",
		 image_digest, strlen(image));
	digest_of(index_json, index_digest);
	snprintf(index_resp, sizeof(index_resp), "HTTP/1.1 200 OK\r\nContent-Type: "
		 "application/vnd.oci.image.index.v1+json\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(index_json), index_json);
}

struct fetch {
	struct sg_op op;
	struct sg_error err;
	struct sg_registry_manifest *m;
	int res, calls;
};

static void on_fetched(struct sg_op *op)
{
	struct fetch *f = sg_container_of(op, struct fetch, op);
	f->res = op->res;
	f->calls++;
}

static void start(struct registry_env *c, const char *first, const char *second)
{
	make_responses();
	memset(c, 0, sizeof(*c));
	script[0] = first;
	script[1] = second;
	c->srv.script = script;
	c->srv.nscript = second ? 2 : 1;
	registry_env_start(c, 2, 1);
}

/* Fetches "127.0.0.1:PORT/test/img<suffix>"; returns the result. */
static int get(struct registry_env *c, struct fetch *f, const char *suffix, const char *platform)
{
	char ref[256];

	memset(f, 0, sizeof(*f));
	sg_op_init(&f->op);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/img%s", c->srv.port, suffix);
	CHECK_EQ(sg_registry_get_manifest(c->reg, ref, platform, &f->m, &f->err, &f->op,
					  on_fetched), 0);
	CHECK_EQ(f->calls, 0);
	for (int i = 0; i < 100 && !f->calls; i++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK_EQ(f->calls, 1);
	return f->res;
}

TEST(image_manifest_by_tag)
{
	static struct registry_env c;
	static struct fetch f;
	char want[64];

	start(&c, image_resp, NULL);
	CHECK_EQ(get(&c, &f, ":v1", NULL), 0);
	snprintf(want, sizeof(want), "127.0.0.1:%d/test/img:v1", c.srv.port);
	CHECK_STR(f.m->ref, want);
	CHECK_STR(f.m->digest, image_digest);
	CHECK(f.m->index_digest == NULL);
	CHECK_STR(f.m->media_type, SG_MT_OCI_MANIFEST);
	CHECK_EQ(f.m->len, strlen(image));
	CHECK_MEM(f.m->data, image, strlen(image));
	CHECK_EQ(f.m->manifest->nlayers, 1);
	CHECK(strstr(c.srv.heads[0], "GET /v2/test/img/manifests/v1 HTTP/1.1\r\n") == c.srv.heads[0]);
	CHECK(strstr(c.srv.heads[0], "\r\nAccept: " SG_MT_OCI_INDEX ", "));
	/* The result outlives nothing but itself: the registry is idle. */
	CHECK(!sg_registry_busy(c.reg));
	sg_registry_manifest_free(f.m);
	registry_env_stop(&c);
}

TEST(index_resolved_for_the_platform)
{
	static struct registry_env c;
	static struct fetch f;
	char want[256];

	start(&c, index_resp, image_resp);
	CHECK_EQ(get(&c, &f, ":v1", "linux/amd64"), 0);
	CHECK_STR(f.m->index_digest, index_digest);
	CHECK_STR(f.m->digest, image_digest);
	CHECK_MEM(f.m->data, image, strlen(image));
	snprintf(want, sizeof(want), "GET /v2/test/img/manifests/%s HTTP/1.1\r\n", image_digest);
	CHECK(strstr(c.srv.heads[1], want) == c.srv.heads[1]);
	sg_registry_manifest_free(f.m);
	registry_env_stop(&c);
}

TEST(digest_mismatch_is_refused)
{
	static struct registry_env c;
	static struct fetch f;
	char want[512];

	start(&c, image_resp, NULL);
	CHECK_EQ(get(&c, &f, "@sha256:" H64, NULL), -EBADMSG);
	CHECK(f.m == NULL);
	snprintf(want, sizeof(want), "127.0.0.1:%d/test/img@sha256:" H64 ": manifest digest "
		 "mismatch: wanted sha256:" H64 ", got %s", c.srv.port, image_digest);
	CHECK_STR(f.err.msg, want);
	registry_env_stop(&c);
}

TEST(bad_reference_and_platform_from_the_loop)
{
	static struct registry_env c;
	static struct fetch f;

	start(&c, image_resp, NULL);
	CHECK_EQ(get(&c, &f, ":v1 with spaces", NULL), -EINVAL);
	CHECK(strncmp(f.err.msg, "bad image reference \"", 21) == 0);
	CHECK_EQ(get(&c, &f, ":v1", "plan9"), -EINVAL);
	CHECK_STR(f.err.msg, "bad platform \"plan9\"");
	CHECK_EQ(atomic_load(&c.srv.nheads), 0);
	registry_env_stop(&c);
}

TEST_MAIN()
