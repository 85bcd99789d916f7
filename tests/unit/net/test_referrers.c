/* OCI artifacts and referrers indexes (net/referrers.h): the artifact manifest a push writes
 * and the checks a pull makes of one, the choice of the newest artifact, the fallback tag's
 * index. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
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

	CHECK_EQ(sg_artifact_manifest_build(T, &subject, &blob, NULL, "2026-01-01T00:00:00Z", &json,
					    &len), 0);
	CHECK(strstr(json, "\"artifactType\":\"" T "\""));
	CHECK(strstr(json, "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\""
		      SG_OCI_EMPTY_DIGEST "\",\"size\":2}"));
	CHECK(strstr(json, "\"subject\":{\"mediaType\":\"" M "\",\"digest\":\"" D("a") "\",\"size\":1234}"));
	struct sg_oci_data data = { .rejected = true };
	CHECK_EQ(sg_artifact_manifest_check(json, len, T, D("a"), T, 1 << 20, &got, &data, &err), 0);
	CHECK_STR(got.digest, D("b"));
	CHECK(!data.bytes && !data.rejected);   /* nothing embedded */
	CHECK_EQ(got.size, 300);
	/* another subject, another type, a blob too large */
	CHECK_EQ(sg_artifact_manifest_check(json, len, T, D("c"), T, 1 << 20, &got, NULL, &err), -EINVAL);
	CHECK(strstr(err.msg, "subject is not"));
	CHECK_EQ(sg_artifact_manifest_check(json, len, "x/y", D("a"), T, 1 << 20, &got, NULL, &err), -EINVAL);
	CHECK(strstr(err.msg, "artifact type"));
	CHECK_EQ(sg_artifact_manifest_check(json, len, T, D("a"), T, 299, &got, NULL, &err), -E2BIG);
	CHECK(strstr(err.msg, "blob of 300 bytes is larger than 299"));
	CHECK_EQ(sg_artifact_manifest_check("{", 1, T, D("a"), T, 1, &got, NULL, &err), -EBADMSG);
	free(json);
}

TEST(index_add_and_pick_newest)
{
	struct sg_oci_desc a1 = { M, D("1"), 10 }, a2 = { M, D("2"), 20 }, other = { M, D("3"), 30 };
	struct sg_oci_desc got;
	struct sg_error err = { 0 };
	char *i1 = NULL, *i2 = NULL, *i3 = NULL, *i4 = NULL;
	size_t l1, l2, l3, l4;

	CHECK_EQ(sg_referrers_pick("{\"manifests\":[]}", 16, T, &got, NULL, &err), -ENOENT);
	CHECK_EQ(sg_referrers_index_add(NULL, 0, &a2, NULL, T, "2026-01-02T00:00:00Z", &i1, &l1, &err), 0);
	CHECK_EQ(sg_referrers_index_add(i1, l1, &other, NULL, "application/x-sbom", "2027-01-01T00:00:00Z",
					&i2, &l2, &err), 0);
	/* an older one listed later: the newest by its annotation still wins */
	CHECK_EQ(sg_referrers_index_add(i2, l2, &a1, NULL, T, "2026-01-01T00:00:00Z", &i3, &l3, &err), 0);
	CHECK_EQ(sg_referrers_pick(i3, l3, T, &got, NULL, &err), 0);
	CHECK_STR(got.digest, D("2"));
	CHECK_EQ(sg_referrers_pick(i3, l3, "application/x-sbom", &got, NULL, &err), 0);
	CHECK_STR(got.digest, D("3"));
	/* the same manifest again replaces its entry (moved last) */
	CHECK_EQ(sg_referrers_index_add(i3, l3, &a2, NULL, T, "2026-01-02T00:00:00Z", &i4, &l4, &err), 0);
	CHECK(strstr(strstr(i4, D("2")) + 1, D("2")) == NULL);
	CHECK(strstr(i4, D("1")) < strstr(i4, D("2")));
	free(i1);
	CHECK_EQ(sg_referrers_index_add("[]", 2, &a1, NULL, T, NULL, &i1, &l1, &err), -EBADMSG);
	free(i2);
	free(i3);
	free(i4);
}

/* The descriptor of these bytes, as a writer makes one. */
static struct sg_oci_desc desc_of(const char *mt, const void *bytes, size_t len)
{
	struct sg_oci_desc d;

	sg_oci_desc_of(&d, mt, bytes, len);
	return d;
}

/* The index embeds the artifact manifest, which embeds the blob: a reader gets both from the
 * index alone, each verified against its descriptor. */
TEST(embedded_content_round_trip)
{
	static const char bundle[] = "{\"schemaVersion\":1,\"profiles\":[]}";
	struct sg_oci_desc b = desc_of(T, bundle, strlen(bundle)), got, gotb;
	struct sg_oci_data md = { 0 }, bd = { 0 };
	struct sg_error err = { 0 };
	char *man = NULL, *idx = NULL;
	size_t mlen = 0, ilen = 0;

	CHECK_EQ(sg_artifact_manifest_build(T, &subject, &b, bundle, NULL, &man, &mlen), 0);
	CHECK(strstr(man, "\"data\":\""));
	struct sg_oci_desc art = desc_of(M, man, mlen);
	CHECK_EQ(sg_referrers_index_add(NULL, 0, &art, man, T, "2026-01-01T00:00:00Z", &idx, &ilen,
					&err), 0);
	CHECK_EQ(sg_referrers_pick(idx, ilen, T, &got, &md, &err), 0);
	CHECK_STR(got.digest, art.digest);
	CHECK(md.bytes && !md.rejected);
	CHECK(md.bytes && memcmp(md.bytes, man, mlen) == 0);
	CHECK_EQ(sg_artifact_manifest_check((const char *)md.bytes, (size_t)got.size, T, D("a"), T,
					    1 << 20, &gotb, &bd, &err), 0);
	CHECK(bd.bytes && !bd.rejected && memcmp(bd.bytes, bundle, strlen(bundle)) == 0);
	CHECK_EQ(gotb.size, strlen(bundle));
	sg_oci_data_free(&md);
	sg_oci_data_free(&bd);
	CHECK(!md.bytes && !bd.bytes);
	free(man);
	free(idx);
}

/* Embedded bytes that are not the descriptor's content are not used: rejected, so the reader
 * fetches by digest.  Wrong bytes, a wrong size, bad base64, a non-string, too large. */
TEST(embedded_content_that_does_not_match_is_rejected)
{
	static const char *const bad[] = {
		"\"data\":\"aGVsbG8=\"",     /* "hello": the right size, the wrong digest */
		"\"data\":\"aGVsbA==\"",     /* "hell": too short */
		"\"data\":\"aGVsbG8\"",      /* no padding */
		"\"data\":\"*GVsbG8=\"",     /* not base64 */
		"\"data\":5",
	};
	struct sg_oci_desc d = desc_of(M, "world", 5), got;
	struct sg_error err = { 0 };
	char json[1024];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sg_oci_data data = { 0 };
		snprintf(json, sizeof(json),
			 "{\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":5,"
			 "\"artifactType\":\"%s\",%s}]}", M, d.digest, T, bad[i]);
		CHECK_EQ(sg_referrers_pick(json, strlen(json), T, &got, &data, &err), 0);
		CHECK(data.rejected && !data.bytes);
	}
	/* the right bytes are taken */
	struct sg_oci_data data = { 0 };
	snprintf(json, sizeof(json),
		 "{\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":5,"
		 "\"artifactType\":\"%s\",\"data\":\"d29ybGQ=\"}]}", M, d.digest, T);
	CHECK_EQ(sg_referrers_pick(json, strlen(json), T, &got, &data, &err), 0);
	CHECK(data.bytes && !data.rejected && memcmp(data.bytes, "world", 5) == 0);
	sg_oci_data_free(&data);
	/* larger than SG_OCI_DATA_MAX: not even decoded, and not written */
	size_t big = SG_OCI_DATA_MAX + 1;
	char *bytes = calloc(1, big), *man = NULL;
	size_t mlen = 0;
	CHECK(bytes != NULL);
	struct sg_oci_desc bd = desc_of(T, bytes, big);
	CHECK_EQ(sg_artifact_manifest_build(T, &subject, &bd, bytes, NULL, &man, &mlen), 0);
	CHECK(strstr(man, "\"data\"") == NULL);
	free(man);
	free(bytes);
}

/* A new push's entry embeds its manifest; the older entries of the type lose theirs (the
 * index stays small), another tool's keep everything. */
TEST(index_add_keeps_only_the_newest_embedding)
{
	struct sg_oci_desc a1 = desc_of(M, "one", 3), a2 = desc_of(M, "two", 3);
	struct sg_oci_desc other = desc_of(M, "sbom", 4), got;
	struct sg_oci_data data = { 0 };
	struct sg_error err = { 0 };
	char *i1 = NULL, *i2 = NULL, *i3 = NULL;
	size_t l1, l2, l3;

	CHECK_EQ(sg_referrers_index_add(NULL, 0, &other, "sbom", "application/x-sbom", NULL, &i1,
					&l1, &err), 0);
	CHECK_EQ(sg_referrers_index_add(i1, l1, &a1, "one", T, "2026-01-01T00:00:00Z", &i2, &l2,
					&err), 0);
	CHECK(strstr(i2, "\"data\":\"b25l\""));   /* "one" */
	CHECK_EQ(sg_referrers_index_add(i2, l2, &a2, "two", T, "2026-01-02T00:00:00Z", &i3, &l3,
					&err), 0);
	CHECK(strstr(i3, "\"data\":\"b25l\"") == NULL);
	CHECK(strstr(i3, "\"data\":\"dHdv\""));   /* "two" */
	CHECK(strstr(i3, "\"data\":\"c2JvbQ==\""));   /* "sbom": not ours, kept */
	CHECK_EQ(sg_referrers_pick(i3, l3, T, &got, &data, &err), 0);
	CHECK_STR(got.digest, a2.digest);
	CHECK(data.bytes && memcmp(data.bytes, "two", 3) == 0);
	sg_oci_data_free(&data);
	free(i1);
	free(i2);
	free(i3);
}

/* Malformed JSON whose text says "memory" is malformed, with a message, not an allocation
 * failure without one (yajl's message echoes the input; the manifest fuzzer found it). */
TEST(malformed_json_that_says_memory_is_malformed)
{
	static const char in[] = "{\"scmaVermemory[]}";
	struct sg_oci_desc got;
	struct sg_error err = { 0 };

	CHECK_EQ(sg_referrers_pick(in, strlen(in), T, &got, NULL, &err), -EBADMSG);
	CHECK_STR(err.msg, "malformed JSON");
}

TEST(fallback_tag)
{
	char tag[160];

	CHECK_EQ(sg_referrers_tag(D("a"), tag, sizeof(tag)), 0);
	CHECK(strncmp(tag, "sha256-", 7) == 0 && strcmp(tag + 7, D("a") + 7) == 0);
	CHECK_EQ(sg_referrers_tag("sha256:12", tag, sizeof(tag)), -EINVAL);
}

TEST_MAIN()
