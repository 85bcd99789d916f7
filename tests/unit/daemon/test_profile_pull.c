/* Tests for daemon/profile_pull: an image's startup profiles pulled from a routed test registry
 * (the lookups go out together, so their order is not fixed).  What `stargzd profile push`
 * writes (the manifest in the tag's entry, the blob in the manifest) comes in two round trips;
 * the API's answer wins over the tag's; a shutdown with both lookups in flight ends the pull
 * once.  The real registry and the API proxy: tests/integration/profile_share.sh. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "daemon/profile_pull.h"
#include "fs/profile.h"
#include "fs/profile_store.h"
#include "net/manifest.h"
#include "net/reference.h"
#include "net/referrers.h"
#include "tests/helpers/registry_env.h"
#include "tests/unit/test.h"

#define TOC "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define LAYER "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define T SG_PROFILE_ARTIFACT_TYPE

/* The registry's answers, built once per test. */
static struct {
	char image[2048], image_resp[4096];
	struct sg_oci_desc image_desc;
	char index[1024], index_resp[2048];   /* an index of the image for linux/amd64 */
	struct sg_oci_desc index_desc;
	char image_by_digest[256], index_by_digest[256];
	char *tag_resp, *api_resp, *art_resp, *blob_resp;
	char tag_path[256], api_path[256], art_path[256], blob_path[256];
} reg;

static char *http_ok(const char *ctype, const char *body, size_t len)
{
	char *out = NULL;

	CHECK(asprintf(&out, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%.*s",
		       ctype, len, (int)len, body) > 0);
	return out;
}

/* The descriptor of these bytes, as a writer makes one. */
static struct sg_oci_desc desc_of(const char *mt, const void *bytes, size_t len)
{
	struct sg_oci_desc d;

	sg_oci_desc_of(&d, mt, bytes, len);
	return d;
}

static const char *route(const char *head, void *ctx)
{
	char line[512];

	(void)ctx;
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(head, "\r"), head);
	if (strstr(line, "GET /v2/test/img/manifests/v1 ") || strstr(line, reg.image_by_digest))
		return reg.image_resp;
	if (strstr(line, reg.index_by_digest))
		return reg.index_resp;
	if (reg.api_resp && strstr(line, reg.api_path))
		return reg.api_resp;
	if (reg.tag_resp && strstr(line, reg.tag_path))
		return reg.tag_resp;
	if (reg.art_resp && strstr(line, reg.art_path))
		return reg.art_resp;
	if (reg.blob_resp && strstr(line, reg.blob_path))
		return reg.blob_resp;
	return NULL;
}

/* An artifact for the image whose bundle holds a profile of `chunks` chunks for TOC: its
 * manifest's bytes in *ret_man (the blob embedded when `embed_blob`), its blob in
 * *ret_blob. */
static struct sg_oci_desc make_artifact(unsigned chunks, bool embed_blob, const char *created,
					char **ret_man, char **ret_blob)
{
	char *bundle = NULL, *man = NULL;
	size_t mlen = 0;

	CHECK(asprintf(&bundle, "{\"schemaVersion\":1,\"mediaType\":\"%s\",\"profiles\":[{\"schemaVersion\":1,"
		       "\"toc\":\"%s\",\"chunkCount\":100,\"chunks\":[[0,%u]]}]}", T, TOC,
		       chunks - 1) > 0);
	struct sg_oci_desc b = desc_of(SG_PROFILE_BLOB_TYPE, bundle, strlen(bundle));
	CHECK_EQ(sg_artifact_manifest_build(T, &reg.image_desc, &b, embed_blob ? bundle : NULL,
					    created, &man, &mlen), 0);
	*ret_man = man;
	*ret_blob = bundle;
	return desc_of(SG_MT_OCI_MANIFEST, man, mlen);
}

static void setup(void)
{
	free(reg.tag_resp);
	free(reg.api_resp);
	free(reg.art_resp);
	free(reg.blob_resp);
	memset(&reg, 0, sizeof(reg));
	snprintf(reg.image, sizeof(reg.image),
		 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
		 "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":2},"
		 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
		 "\"digest\":\"%s\",\"size\":1000,\"annotations\":{\"%s\":\"%s\"}}]}",
		 SG_MT_OCI_MANIFEST, SG_OCI_EMPTY_DIGEST, LAYER, SG_ANNOT_TOC_DIGEST, TOC);
	reg.image_desc = desc_of(SG_MT_OCI_MANIFEST, reg.image, strlen(reg.image));
	snprintf(reg.image_resp, sizeof(reg.image_resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nDocker-Content-Digest: %s\r\n"
		 "Content-Length: %zu\r\n\r\n%s", SG_MT_OCI_MANIFEST, reg.image_desc.digest,
		 strlen(reg.image), reg.image);
	snprintf(reg.image_by_digest, sizeof(reg.image_by_digest), "GET /v2/test/img/manifests/%s ",
		 reg.image_desc.digest);
	snprintf(reg.index, sizeof(reg.index),
		 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
		 "\"digest\":\"%s\",\"size\":%llu,\"platform\":{\"architecture\":\"amd64\","
		 "\"os\":\"linux\"}}]}", SG_MT_OCI_INDEX, SG_MT_OCI_MANIFEST, reg.image_desc.digest,
		 (unsigned long long)reg.image_desc.size);
	reg.index_desc = desc_of(SG_MT_OCI_INDEX, reg.index, strlen(reg.index));
	snprintf(reg.index_resp, sizeof(reg.index_resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nDocker-Content-Digest: %s\r\n"
		 "Content-Length: %zu\r\n\r\n%s", SG_MT_OCI_INDEX, reg.index_desc.digest,
		 strlen(reg.index), reg.index);
	snprintf(reg.index_by_digest, sizeof(reg.index_by_digest), "GET /v2/test/img/manifests/%s ",
		 reg.index_desc.digest);
	snprintf(reg.api_path, sizeof(reg.api_path), "GET /v2/test/img/referrers/%s?",
		 reg.image_desc.digest);
	char tag[160];
	CHECK_EQ(sg_referrers_tag(reg.image_desc.digest, tag, sizeof(tag)), 0);
	snprintf(reg.tag_path, sizeof(reg.tag_path), "GET /v2/test/img/manifests/%s ", tag);
}

static char *index_of(const struct sg_oci_desc *art, const char *man, const char *created)
{
	char *idx = NULL, *resp;
	size_t len = 0;
	struct sg_error err = { 0 };

	CHECK_EQ(sg_referrers_index_add(NULL, 0, art, man, T, created, &idx, &len, &err), 0);
	resp = http_ok(SG_MT_OCI_INDEX, idx, len);
	free(idx);
	return resp;
}

/* The referrers tag as `profile push` writes it: one artifact of `chunks` chunks, its
 * manifest embedded in the tag's entry and its blob in the manifest. */
static struct sg_oci_desc tag_lists_a_push(unsigned chunks, char **ret_man, char **ret_blob)
{
	struct sg_oci_desc art = make_artifact(chunks, true, "2026-12-06T00:00:00Z", ret_man,
					       ret_blob);
	reg.tag_resp = index_of(&art, *ret_man, "2026-12-06T00:00:00Z");
	return art;
}

struct pull {
	struct sg_op op;
	struct sg_error err;
	struct sg_profile_pull_result res;
	int rc, calls;
};

static void on_pulled(struct sg_op *op)
{
	struct pull *p = sg_container_of(op, struct pull, op);
	p->rc = op->res;
	p->calls++;
}

static char root[64];

/* The pull of test/img:v1, given the manifest's digest when manifest_digest. */
static void start_with(struct registry_env *c, struct pull *p, const char *manifest_digest)
{
	char ref[128];

	memset(c, 0, sizeof(*c));
	c->srv.route = route;
	registry_env_start(c, 4, 1);
	memset(p, 0, sizeof(*p));
	sg_op_init(&p->op);
	snprintf(root, sizeof(root), "/tmp/sg-profile-pull-XXXXXX");
	CHECK(mkdtemp(root) != NULL);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/img:v1", c->srv.port);
	struct sg_profile_pull_request req = { .loop = c->loop, .registry = c->reg, .ref = ref,
					       .root = root, .manifest_digest = manifest_digest };
	CHECK_EQ(sg_profile_pull(&req, &p->res, &p->err, &p->op, on_pulled), 0);
}

static void start(struct registry_env *c, struct pull *p)
{
	start_with(c, p, NULL);
}

static int run(struct registry_env *c, struct pull *p)
{
	for (int i = 0; i < 200 && !p->calls; i++)
		CHECK(sg_loop_run_once(c->loop, 20) >= 0);
	CHECK_EQ(p->calls, 1);
	return p->rc;
}

/* The chunks of the stored profile for TOC (0: none). */
static uint64_t stored_chunks(void)
{
	struct sg_profile *prof = NULL;
	struct sg_error err = { 0 };
	struct sg_digest toc;
	uint64_t n = 0;

	CHECK_EQ(sg_digest_parse(TOC, strlen(TOC), &toc), 0);
	if (sg_profile_store_load(root, &toc, &prof, &err) == 0) {
		n = sg_profile_chunks(prof);
		sg_profile_free(prof);
	}
	return n;
}

static void stop(struct registry_env *c)
{
	char cmd[128];

	registry_env_stop(c);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK_EQ(system(cmd), 0);
}

/* Count the requests whose request line has `what`. */
static int requests_with(struct registry_env *c, const char *what)
{
	int n = 0, total = atomic_load(&c->srv.nheads);

	for (int i = 0; i < total && i < TEST_SERVER_HEADS; i++) {
		size_t l = strcspn(c->srv.heads[i], "\r");
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)l, c->srv.heads[i]);
		n += strstr(line, what) != NULL;
	}
	return n;
}

/* A registry without the referrers API (404), the tag as `profile push` writes it: the
 * image manifest, then the two lookups, and nothing more. */
TEST(what_a_push_writes_comes_in_two_round_trips)
{
	static struct registry_env c;
	static struct pull p;
	char *man, *blob;

	setup();
	struct sg_oci_desc art = tag_lists_a_push(7, &man, &blob);
	start(&c, &p);
	CHECK_EQ(run(&c, &p), 0);
	CHECK_EQ(p.res.stored, 1);
	CHECK_STR(p.res.found_through, "referrers tag");
	CHECK_STR(p.res.artifact, art.digest);
	CHECK_EQ(p.res.round_trips, 2);
	CHECK_EQ(atomic_load(&c.srv.nheads), 3);   /* manifest, API (404), tag */
	CHECK_EQ(requests_with(&c, "/referrers/"), 1);
	CHECK_EQ(stored_chunks(), 7);
	stop(&c);
	free(man);
	free(blob);
}

/* Nothing embedded (another tool's artifact): the manifest and the blob are fetched. */
TEST(an_artifact_with_nothing_embedded_is_fetched_in_four)
{
	static struct registry_env c;
	static struct pull p;
	char *man, *blob;

	setup();
	struct sg_oci_desc art = make_artifact(5, false, "2026-12-06T00:00:00Z", &man, &blob);
	reg.tag_resp = index_of(&art, NULL, "2026-12-06T00:00:00Z");
	reg.art_resp = http_ok(SG_MT_OCI_MANIFEST, man, strlen(man));
	snprintf(reg.art_path, sizeof(reg.art_path), "GET /v2/test/img/manifests/%s ", art.digest);
	struct sg_oci_desc b = desc_of(SG_PROFILE_BLOB_TYPE, blob, strlen(blob));
	reg.blob_resp = http_ok("application/octet-stream", blob, strlen(blob));
	snprintf(reg.blob_path, sizeof(reg.blob_path), "GET /v2/test/img/blobs/%s ", b.digest);
	start(&c, &p);
	CHECK_EQ(run(&c, &p), 0);
	CHECK_EQ(p.res.round_trips, 4);
	CHECK_EQ(requests_with(&c, "/blobs/"), 1);
	CHECK_EQ(stored_chunks(), 5);
	stop(&c);
	free(man);
	free(blob);
}

/* The API lists a newer artifact, the tag an older one: the API's is taken (3 round trips:
 * its manifest is fetched, the blob in it). */
TEST(the_apis_answer_wins_over_the_tags)
{
	static struct registry_env c;
	static struct pull p;
	char *man_old, *blob_old, *man_new, *blob_new;

	setup();
	struct sg_oci_desc old = make_artifact(3, true, "2026-12-01T00:00:00Z", &man_old, &blob_old);
	struct sg_oci_desc new = make_artifact(9, true, "2026-12-06T00:00:00Z", &man_new, &blob_new);
	reg.tag_resp = index_of(&old, man_old, "2026-12-01T00:00:00Z");
	reg.api_resp = index_of(&new, NULL, "2026-12-06T00:00:00Z");   /* a registry's: no data */
	reg.art_resp = http_ok(SG_MT_OCI_MANIFEST, man_new, strlen(man_new));
	snprintf(reg.art_path, sizeof(reg.art_path), "GET /v2/test/img/manifests/%s ", new.digest);
	start(&c, &p);
	CHECK_EQ(run(&c, &p), 0);
	CHECK_STR(p.res.found_through, "referrers API");
	CHECK_STR(p.res.artifact, new.digest);
	CHECK_EQ(p.res.round_trips, 3);
	CHECK_EQ(requests_with(&c, "/blobs/"), 0);
	CHECK_EQ(stored_chunks(), 9);
	stop(&c);
	free(man_old);
	free(blob_old);
	free(man_new);
	free(blob_new);
}

/* Neither lookup finds one: -ENOENT with the reason, nothing stored. */
TEST(no_artifact_is_enoent)
{
	static struct registry_env c;
	static struct pull p;

	setup();
	start(&c, &p);
	CHECK_EQ(run(&c, &p), -ENOENT);
	CHECK(strstr(p.err.msg, "no profile artifact refers to"));
	CHECK_EQ(stored_chunks(), 0);
	stop(&c);
}

/* The manifest's digest known (containerd's CRI plugin gives it): the manifest, fetched by
 * it, and both lookups go out together, one round trip in all; the tag is not resolved. */
TEST(a_known_manifest_digest_sends_the_manifest_beside_the_lookups)
{
	static struct registry_env c;
	static struct pull p;
	char *man, *blob;

	setup();
	(void)tag_lists_a_push(7, &man, &blob);
	start_with(&c, &p, reg.image_desc.digest);
	CHECK_EQ(run(&c, &p), 0);
	CHECK_EQ(p.res.stored, 1);
	CHECK_STR(p.res.found_through, "referrers tag");
	CHECK_EQ(p.res.round_trips, 1);
	CHECK_EQ(atomic_load(&c.srv.nheads), 3);   /* manifest by digest, API (404), tag */
	CHECK_EQ(requests_with(&c, "/manifests/v1 "), 0);
	CHECK_EQ(requests_with(&c, reg.image_by_digest), 1);
	CHECK_EQ(stored_chunks(), 7);
	stop(&c);
	free(man);
	free(blob);
}

/* The digest given is an index's: an artifact refers to the platform's manifest, so the
 * lookups are asked again about that one (a round trip more), and the profile is found. */
TEST(an_index_digest_asks_again_about_the_platforms_manifest)
{
	static struct registry_env c;
	static struct pull p;
	char *man, *blob;

	setup();
	(void)tag_lists_a_push(6, &man, &blob);
	start_with(&c, &p, reg.index_desc.digest);
	CHECK_EQ(run(&c, &p), 0);
	CHECK_EQ(p.res.round_trips, 2);
	/* the index and its manifest, two lookups about each */
	CHECK_EQ(atomic_load(&c.srv.nheads), 6);
	CHECK_EQ(requests_with(&c, "/referrers/"), 2);
	CHECK_EQ(stored_chunks(), 6);
	stop(&c);
	free(man);
	free(blob);
}

/* A digest the registry does not have: the pull ends once, with the manifest's error, after
 * the lookups sent with it have answered; nothing stored. */
TEST(a_manifest_digest_the_registry_lacks_ends_the_pull_with_its_error)
{
	static struct registry_env c;
	static struct pull p;

	setup();
	start_with(&c, &p, "sha256:3333333333333333333333333333333333333333333333333333333333333333");
	CHECK_EQ(run(&c, &p), -ENOENT);
	CHECK(strstr(p.err.msg, "image manifest sha256:3333"));
	CHECK_EQ(atomic_load(&c.srv.nheads), 3);
	CHECK_EQ(stored_chunks(), 0);
	for (int i = 0; i < 5; i++)
		CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	CHECK_EQ(p.calls, 1);
	stop(&c);
}

/* A shutdown with the lookups in flight (their answers held back; with the manifest's fetch
 * when its digest was given): the pull ends once, cancelled, nothing stored, the registry
 * idle after it (and, under ASan, nothing leaked). */
static void shutdown_in_flight(const char *manifest_digest)
{
	static struct registry_env c;
	static struct pull p;
	char *man, *blob;

	setup();
	(void)tag_lists_a_push(7, &man, &blob);
	if (!manifest_digest) {
		start(&c, &p);
		for (int i = 0; i < 100 && atomic_load(&c.srv.nheads) < 1; i++)
			CHECK(sg_loop_run_once(c.loop, 20) >= 0);
		atomic_store(&c.srv.delay_ms, 3000);
	} else {
		start_with(&c, &p, manifest_digest);   /* nothing is sent before the loop runs */
		atomic_store(&c.srv.delay_ms, 3000);
	}
	for (int i = 0; i < 100 && atomic_load(&c.srv.conns_total) < 2; i++)
		CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	for (int i = 0; i < 10; i++)
		CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	CHECK(atomic_load(&c.srv.conns_total) >= 2);   /* the second lookup on its own connection */
	CHECK_EQ(p.calls, 0);
	sg_registry_shutdown(c.reg);
	CHECK_EQ(sg_loop_drain(c.loop, 5000), 0);
	CHECK_EQ(p.calls, 1);
	CHECK_EQ(p.rc, -ECANCELED);
	CHECK_EQ(stored_chunks(), 0);
	CHECK(!sg_registry_busy(c.reg));
	sg_registry_free(c.reg);
	sg_loop_free(c.loop);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK_EQ(system(cmd), 0);
	free(man);
	free(blob);
}

TEST(a_shutdown_with_both_lookups_in_flight_ends_the_pull_once)
{
	shutdown_in_flight(NULL);
}

TEST(a_shutdown_with_the_manifest_and_both_lookups_in_flight_ends_the_pull_once)
{
	setup();
	char digest[SG_REF_DIGEST_MAX + 1];
	snprintf(digest, sizeof(digest), "%s", reg.image_desc.digest);
	shutdown_in_flight(digest);
}

TEST_MAIN()
