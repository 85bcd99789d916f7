/* Tests for net/manifest: OCI and Docker manifests, indexes, platform selection. */
#include <errno.h>

#include "net/manifest.h"
#include "tests/unit/test.h"

#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
	c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static const char oci_manifest[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	"\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
	"\"digest\":\"" D("c") "\",\"size\":1234},"
	"\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
	"\"digest\":\"" D("1") "\",\"size\":5000000,\"annotations\":{"
	"\"containerd.io/snapshot/stargz/toc.digest\":\"" D("a") "\","
	"\"io.containers.estargz.uncompressed-size\":\"12345678\",\"other\":\"x\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
	"\"digest\":\"" D("2") "\",\"size\":0,\"urls\":[\"https://x/y\"]}],"
	"\"annotations\":{\"org.opencontainers.image.created\":\"2024\"}}";

static struct sg_manifest *parse_ok(const char *j, const char *ct)
{
	struct sg_manifest *m = NULL;
	struct sg_error e = { 0 };
	int r = sg_manifest_parse(j, strlen(j), ct, &m, &e);
	if (r != 0)
		TEST_FAIL("parse: %d (%s)", r, e.msg);
	return m;
}

static void parse_bad(const char *j, const char *ct, int want, const char *why)
{
	struct sg_manifest *m = (void *)1;
	struct sg_error e = { 0 };
	int r = sg_manifest_parse(j, strlen(j), ct, &m, &e);
	if (r != want)
		TEST_FAIL("got %d (%s), want %d for %s", r, e.msg, want, j);
	CHECK(m == NULL);
	CHECK(e.msg[0] != '\0');
	if (why && !strstr(e.msg, why))
		TEST_FAIL("error \"%s\" lacks \"%s\"", e.msg, why);
}

TEST(oci_image)
{
	struct sg_manifest *m = parse_ok(oci_manifest, "application/vnd.oci.image.manifest.v1+json");
	CHECK_EQ(m->kind, SG_MANIFEST_IMAGE);
	CHECK(!m->docker);
	CHECK_STR(m->media_type, SG_MT_OCI_MANIFEST);
	CHECK_STR(m->config.digest, D("c"));
	CHECK_EQ(m->config.size, 1234);
	CHECK_EQ(m->nlayers, 2);
	CHECK_STR(m->layers[0].digest, D("1"));
	CHECK_EQ(m->layers[0].size, 5000000);
	CHECK_STR(m->layers[0].toc_digest, D("a"));
	CHECK(m->layers[0].has_uncompressed_size);
	CHECK_EQ(m->layers[0].uncompressed_size, 12345678);
	CHECK_STR(sg_descriptor_annotation(&m->layers[0], "other"), "x");
	CHECK(sg_descriptor_annotation(&m->layers[0], "nope") == NULL);
	CHECK_EQ(sg_layer_compression(m->layers[0].media_type), SG_LAYER_GZIP);
	CHECK_EQ(sg_layer_compression(m->layers[1].media_type), SG_LAYER_ZSTD);
	CHECK(m->layers[1].toc_digest == NULL);
	CHECK_EQ(m->layers[1].nurls, 1);
	CHECK_EQ(m->nannotations, 1);
	sg_manifest_free(m);

	/* Content-Type with parameters, upper case, or generic/empty: all fine. */
	const char *cts[] = { "application/vnd.oci.image.manifest.v1+JSON; charset=utf-8",
			      "application/json", "", NULL, "text/plain" };
	for (size_t i = 0; i < sizeof(cts) / sizeof(cts[0]); i++)
		sg_manifest_free(parse_ok(oci_manifest, cts[i]));
	sg_manifest_free(NULL);
}

TEST(docker_image_and_shape_detection)
{
	const char *j = "{\"schemaVersion\":2,"
			"\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
			"\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
			"\"size\":7023,\"digest\":\"" D("b") "\"},"
			"\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
			"\"size\":32654,\"digest\":\"" D("e") "\"}]}";
	struct sg_manifest *m = parse_ok(j, SG_MT_DOCKER_MANIFEST);
	CHECK(m->docker);
	CHECK_EQ(m->kind, SG_MANIFEST_IMAGE);
	CHECK_EQ(sg_layer_compression(m->layers[0].media_type), SG_LAYER_GZIP);
	sg_manifest_free(m);

	/* OCI without mediaType: the Content-Type decides, or else the shape. */
	const char *nomt = "{\"schemaVersion\":2,"
			   "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
			   "\"size\":1,\"digest\":\"" D("b") "\"},\"layers\":[]}";
	m = parse_ok(nomt, "");
	CHECK_STR(m->media_type, SG_MT_OCI_MANIFEST);
	CHECK_EQ(m->nlayers, 0);
	sg_manifest_free(m);
	m = parse_ok(nomt, SG_MT_OCI_MANIFEST);
	sg_manifest_free(m);
	const char *idx = "{\"schemaVersion\":2,\"manifests\":[]}";
	m = parse_ok(idx, NULL);
	CHECK_EQ(m->kind, SG_MANIFEST_INDEX);
	CHECK_EQ(m->nmanifests, 0);
	sg_manifest_free(m);
}

static const char index_json[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
	"\"manifests\":["
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("1") "\","
	"\"size\":1,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("2") "\","
	"\"size\":2,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("3") "\","
	"\"size\":3,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("4") "\","
	"\"size\":4,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":\"v3\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("5") "\","
	"\"size\":5,\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
	"\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("6") "\","
	"\"size\":6,\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\","
	"\"os.version\":\"10.0.17763.1\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D("7") "\","
	"\"size\":7,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}}"
	"]}";

static int select_for(const struct sg_manifest *m, const char *plat)
{
	struct sg_platform p;
	struct sg_error e = { 0 };
	if (!plat)
		return sg_manifest_select(m, NULL, &e);
	CHECK_EQ(sg_platform_parse(plat, &p), 0);
	return sg_manifest_select(m, &p, &e);
}

TEST(index_platform_selection)
{
	struct sg_manifest *m = parse_ok(index_json, NULL);
	CHECK_EQ(m->kind, SG_MANIFEST_INDEX);
	CHECK_EQ(m->nmanifests, 7);
	CHECK(m->manifests[0].has_platform);
	CHECK_STR(m->manifests[0].platform.variant, "v6");

	CHECK_EQ(select_for(m, NULL), 1);                 /* linux/amd64 default */
	CHECK_EQ(select_for(m, "linux/amd64"), 1);
	CHECK_EQ(select_for(m, "linux/x86_64"), 1);
	CHECK_EQ(select_for(m, "linux/amd64/v3"), 3);     /* exact variant beats v1 */
	CHECK_EQ(select_for(m, "linux/amd64/v4"), 3);     /* highest compatible */
	CHECK_EQ(select_for(m, "linux/amd64/v2"), 1);
	CHECK_EQ(select_for(m, "linux/arm64"), 2);        /* "" == v8 */
	CHECK_EQ(select_for(m, "linux/aarch64/8"), 2);
	CHECK_EQ(select_for(m, "linux/arm"), 6);          /* "" == v7 */
	CHECK_EQ(select_for(m, "linux/arm/v6"), 0);
	CHECK_EQ(select_for(m, "linux/armel"), 0);
	CHECK_EQ(select_for(m, "linux/arm/v8"), 6);       /* v8 CPU runs v7 */
	CHECK_EQ(select_for(m, "linux/arm/v5"), -ENOENT);
	CHECK_EQ(select_for(m, "windows/amd64"), 5);
	CHECK_EQ(select_for(m, "linux/s390x"), -ENOENT);
	CHECK_EQ(select_for(m, "Linux/AMD64"), -ENOENT);  /* arch is case-sensitive */
	sg_manifest_free(m);

	m = parse_ok(oci_manifest, NULL);
	CHECK_EQ(select_for(m, NULL), -EINVAL);
	sg_manifest_free(m);
}

TEST(index_without_platforms)
{
	const char *j = "{\"schemaVersion\":2,\"mediaType\":\"" SG_MT_DOCKER_LIST "\",\"manifests\":["
			"{\"mediaType\":\"" SG_MT_DOCKER_MANIFEST "\",\"digest\":\"" D("1") "\",\"size\":1},"
			"{\"mediaType\":\"" SG_MT_DOCKER_MANIFEST "\",\"digest\":\"" D("2") "\",\"size\":1,"
			"\"platform\":{\"architecture\":\"ppc64le\",\"os\":\"linux\"}}]}";
	struct sg_manifest *m = parse_ok(j, SG_MT_DOCKER_LIST);
	CHECK(m->docker);
	CHECK_EQ(select_for(m, NULL), 0);
	CHECK_EQ(select_for(m, "linux/ppc64le"), 1);
	sg_manifest_free(m);
}

TEST(platform_parse)
{
	struct sg_platform p;
	CHECK_EQ(sg_platform_parse("linux/arm64/v8", &p), 0);
	CHECK_STR(p.os, "linux");
	CHECK_STR(p.arch, "arm64");
	CHECK_STR(p.variant, "v8");
	const char *bad[] = { "", "linux", "/amd64", "linux/", "linux/arm/", "linux/arm/v7/x",
			      "linux/am d64", "linux/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sg_platform_parse(bad[i], &p) != -EINVAL)
			TEST_FAIL("accepted \"%s\"", bad[i]);
	CHECK_EQ(sg_platform_parse(NULL, &p), -EINVAL);
}

TEST(malformed)
{
	parse_bad("", NULL, -EBADMSG, "JSON");
	parse_bad("[]", NULL, -EBADMSG, "object");
	parse_bad("{\"schemaVersion\":1,\"fsLayers\":[]}", NULL, -ENOTSUP, "schema 1");
	parse_bad("{\"schemaVersion\":2,\"mediaType\":"
		  "\"application/vnd.docker.distribution.manifest.v1+prettyjws\"}", NULL, -ENOTSUP,
		  NULL);
	parse_bad("{\"schemaVersion\":2,\"manifests\":[]}",
		  "application/vnd.docker.distribution.manifest.v1+prettyjws", -ENOTSUP, NULL);
	parse_bad("{\"schemaVersion\":3,\"manifests\":[]}", NULL, -EBADMSG, "schemaVersion");
	parse_bad("{\"manifests\":[]}", NULL, -EBADMSG, "schemaVersion");
	parse_bad("{\"schemaVersion\":2}", NULL, -EBADMSG, "neither");
	parse_bad("{\"schemaVersion\":2,\"mediaType\":\"x/y\",\"manifests\":[]}", NULL, -ENOTSUP,
		  "unknown");
	parse_bad("{\"schemaVersion\":2,\"mediaType\":5}", NULL, -EBADMSG, "mediaType");
	parse_bad(oci_manifest, SG_MT_DOCKER_MANIFEST, -EBADMSG, "disagree");
	parse_bad("{\"schemaVersion\":2,\"manifests\":{}}", NULL, -EBADMSG, "manifests");
	parse_bad("{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}", SG_MT_OCI_INDEX, -EBADMSG,
		  "layers");
	parse_bad("{\"schemaVersion\":2,\"layers\":[]}", NULL, -EBADMSG, "config");
	parse_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" SG_MT_OCI_CONFIG "\","
		  "\"digest\":\"" D("1") "\",\"size\":1}}", NULL, -EBADMSG, "layers");
	/* Descriptor errors. */
	const char *pre = "{\"schemaVersion\":2,\"manifests\":[";
	const char *bad_desc[] = {
		"1",
		"{\"digest\":\"" D("1") "\",\"size\":1}",
		"{\"mediaType\":\"a\",\"size\":1}",
		"{\"mediaType\":\"a\",\"digest\":\"sha256:abc\",\"size\":1}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\"}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":-1}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1.5}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":\"1\"}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1,\"annotations\":[]}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1,\"annotations\":{\"k\":1}}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1,\"annotations\":"
		"{\"containerd.io/snapshot/stargz/toc.digest\":\"sha256:nothex\"}}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1,\"platform\":{\"os\":\"linux\"}}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1,\"urls\":\"x\"}",
		"{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1,\"urls\":[1]}",
	};
	for (size_t i = 0; i < sizeof(bad_desc) / sizeof(bad_desc[0]); i++) {
		char buf[1024];
		snprintf(buf, sizeof(buf), "%s%s]}", pre, bad_desc[i]);
		parse_bad(buf, NULL, -EBADMSG, NULL);
	}
	/* Artifact configs and Docker manifests with OCI config. */
	parse_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.cncf.helm.config.v1+json\","
		  "\"digest\":\"" D("1") "\",\"size\":1},\"layers\":[]}", NULL, -ENOTSUP, "artifact");
	parse_bad("{\"schemaVersion\":2,\"mediaType\":\"" SG_MT_DOCKER_MANIFEST "\","
		  "\"config\":{\"mediaType\":\"" SG_MT_OCI_CONFIG "\","
		  "\"digest\":\"" D("1") "\",\"size\":1},\"layers\":[]}", NULL, -EBADMSG, "config");
}

TEST(limits)
{
	static char buf[SG_MANIFEST_MAX + 100];
	struct sg_manifest *m;
	struct sg_error e = { 0 };

	/* Too many layers. */
	size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"schemaVersion\":2,\"manifests\":[");
	for (int i = 0; i <= SG_MANIFEST_ENTRIES_MAX; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      "%s{\"mediaType\":\"a\",\"digest\":\"" D("1") "\",\"size\":1}",
				      i ? "," : "");
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "]}");
	CHECK_EQ(sg_manifest_parse(buf, n, NULL, &m, &e), -E2BIG);
	/* Too large, too deep. */
	memset(buf, ' ', SG_MANIFEST_MAX + 1);
	CHECK_EQ(sg_manifest_parse(buf, SG_MANIFEST_MAX + 1, NULL, &m, &e), -E2BIG);
	memset(buf, '[', 1000);
	CHECK_EQ(sg_manifest_parse(buf, 1000, NULL, &m, &e), -E2BIG);
	CHECK(strstr(e.msg, "deep") != NULL);
	/* Strings with NUL bytes are refused before yajl. */
	CHECK_EQ(sg_manifest_parse("{\"a\":\"\0\"}", 9, NULL, &m, &e), -EBADMSG);
}

TEST(all_prefixes)
{
	/* Every truncation of a valid document fails cleanly (leaks show under ASan). */
	size_t len = strlen(index_json);
	for (size_t k = 0; k < len; k++) {
		struct sg_manifest *m = NULL;
		struct sg_error e = { 0 };
		int r = sg_manifest_parse(index_json, k, NULL, &m, &e);
		CHECK(r < 0);
		CHECK(m == NULL);
	}
}

TEST_MAIN()
