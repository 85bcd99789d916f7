/* OCI artifacts and referrers indexes (net/referrers.h): the artifact manifest a push writes
 * and the checks a pull makes of one, the choice of the newest artifact, the fallback tag's
 * index. */
#include <errno.h>
#include <string.h>

#include "net/referrers.h"
#include "tests/unit/test.h"

#define T "application/vnd.stargzd.profile.v1+json"
#define M "application/vnd.oci.image.manifest.v1+json"
#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
		 c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static const struct sg_oci_desc subject = { M, D("a"), 1234 };
static const struct sg_oci_desc blob = { T, D("b"), 300 };

TEST(artifact_manifest_round_trip)
{
	struct sg_oci_desc got;
	struct sg_error err = { 0 };
	char *json = NULL;
	size_t len = 0;

	CHECK_EQ(sg_artifact_manifest_build(T, &subject, &blob, "2026-01-01T00:00:00Z", &json, &len), 0);
	CHECK(strstr(json, "\"artifactType\":\"" T "\""));
	CHECK(strstr(json, "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\""
		      SG_OCI_EMPTY_DIGEST "\",\"size\":2}"));
	CHECK(strstr(json, "\"subject\":{\"mediaType\":\"" M "\",\"digest\":\"" D("a") "\",\"size\":1234}"));
	CHECK_EQ(sg_artifact_manifest_check(json, len, T, D("a"), T, 1 << 20, &got, &err), 0);
	CHECK_STR(got.digest, D("b"));
	CHECK_EQ(got.size, 300);
	/* another subject, another type, a blob too large */
	CHECK_EQ(sg_artifact_manifest_check(json, len, T, D("c"), T, 1 << 20, &got, &err), -EINVAL);
	CHECK(strstr(err.msg, "subject is not"));
	CHECK_EQ(sg_artifact_manifest_check(json, len, "x/y", D("a"), T, 1 << 20, &got, &err), -EINVAL);
	CHECK(strstr(err.msg, "artifact type"));
	CHECK_EQ(sg_artifact_manifest_check(json, len, T, D("a"), T, 299, &got, &err), -E2BIG);
	CHECK(strstr(err.msg, "blob of 300 bytes is larger than 299"));
	CHECK_EQ(sg_artifact_manifest_check("{", 1, T, D("a"), T, 1, &got, &err), -EBADMSG);
	free(json);
}

TEST(index_add_and_pick_newest)
{
	struct sg_oci_desc a1 = { M, D("1"), 10 }, a2 = { M, D("2"), 20 }, other = { M, D("3"), 30 };
	struct sg_oci_desc got;
	struct sg_error err = { 0 };
	char *i1 = NULL, *i2 = NULL, *i3 = NULL, *i4 = NULL;
	size_t l1, l2, l3, l4;

	CHECK_EQ(sg_referrers_pick("{\"manifests\":[]}", 16, T, &got, &err), -ENOENT);
	CHECK_EQ(sg_referrers_index_add(NULL, 0, &a2, T, "2026-01-02T00:00:00Z", &i1, &l1, &err), 0);
	CHECK_EQ(sg_referrers_index_add(i1, l1, &other, "application/x-sbom", "2027-01-01T00:00:00Z",
					&i2, &l2, &err), 0);
	/* an older one listed later: the newest by its annotation still wins */
	CHECK_EQ(sg_referrers_index_add(i2, l2, &a1, T, "2026-01-01T00:00:00Z", &i3, &l3, &err), 0);
	CHECK_EQ(sg_referrers_pick(i3, l3, T, &got, &err), 0);
	CHECK_STR(got.digest, D("2"));
	CHECK_EQ(sg_referrers_pick(i3, l3, "application/x-sbom", &got, &err), 0);
	CHECK_STR(got.digest, D("3"));
	/* the same manifest again replaces its entry (moved last) */
	CHECK_EQ(sg_referrers_index_add(i3, l3, &a2, T, "2026-01-02T00:00:00Z", &i4, &l4, &err), 0);
	CHECK(strstr(strstr(i4, D("2")) + 1, D("2")) == NULL);
	CHECK(strstr(i4, D("1")) < strstr(i4, D("2")));
	free(i1);
	CHECK_EQ(sg_referrers_index_add("[]", 2, &a1, T, NULL, &i1, &l1, &err), -EBADMSG);
	free(i2);
	free(i3);
	free(i4);
}

TEST(fallback_tag)
{
	char tag[160];

	CHECK_EQ(sg_referrers_tag(D("a"), tag, sizeof(tag)), 0);
	CHECK(strncmp(tag, "sha256-", 7) == 0 && strcmp(tag + 7, D("a") + 7) == 0);
	CHECK_EQ(sg_referrers_tag("sha256:12", tag, sizeof(tag)), -EINVAL);
}

TEST_MAIN()
