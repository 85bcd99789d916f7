/* `stargzd profile ...`.  See profile_cmd.h. */
#include "daemon/profile_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/config.h"
#include "daemon/core/digest.h"
#include "daemon/core/loop.h"
#include "daemon/profile_pull.h"
#include "fs/profile.h"
#include "fs/profile_store.h"
#include "net/manifest.h"
#include "net/manifest_fetch.h"
#include "net/referrers.h"
#include "net/registry.h"
#include "net/registry_call.h"

#define INSECURE_MAX 16

static const char profile_usage[] =
	"Usage: stargzd profile ls [--root DIR]\n"
	"       stargzd profile show [--root DIR] [--json] TOC-DIGEST\n"
	"       stargzd profile rm [--root DIR] TOC-DIGEST\n"
	"       stargzd profile push [--root DIR] [REGISTRY OPTIONS] REF\n"
	"       stargzd profile pull [--root DIR] [REGISTRY OPTIONS] REF\n"
	"\n"
	"Learned startup profiles: the order in which a layer's chunks were first read after a\n"
	"mount, kept in ROOT/profiles/<toc-digest-hex>.json (default root " SG_DEFAULT_ROOT ").\n"
	"push publishes the profiles of an image's layers to the image's repository as an OCI\n"
	"artifact whose subject is the image manifest; pull fetches the newest one and stores the\n"
	"profiles of the image's layers.\n"
	"\n"
	"Registry options:\n"
	"  --plain-http         allow plain HTTP to localhost / 127.0.0.1\n"
	"  --insecure HOST      allow plain HTTP to HOST[:PORT] (repeatable)\n"
	"  --platform P         the manifest of an index to use (default linux/amd64)\n";

struct args {
	const char *root;
	bool json;
	bool plain_http;
	const char *insecure[INSECURE_MAX];
	size_t n_insecure;
	const char *platform;
	const char *operand;
};

/* ---- ls, show, rm ---- */

static int parse_toc(const char *s, struct sg_digest *ret)
{
	char buf[SG_DIGEST_STRLEN + 1];

	if (strncmp(s, "sha256:", 7) != 0) {
		snprintf(buf, sizeof(buf), "sha256:%.64s", s);
		s = buf;
	}
	return sg_digest_parse(s, strlen(s), ret);
}

static int cmd_ls(const struct args *a)
{
	struct sg_digest *list = NULL;
	struct sg_error err = { 0 };
	size_t n = 0;

	if (sg_profile_store_list(a->root, &list, &n, &err) < 0) {
		fprintf(stderr, "stargzd profile ls: %s\n", err.msg);
		return 1;
	}
	if (n)
		printf("%-71s  %10s  %8s  %10s\n", "TOC", "CHUNKS", "RANGES", "OF");
	for (size_t i = 0; i < n; i++) {
		char d[SG_DIGEST_STRLEN + 1];
		struct sg_profile *p = NULL;
		const struct sg_profile_range *r;

		sg_digest_format(&list[i], d);
		if (sg_profile_store_load(a->root, &list[i], &p, &err) < 0) {
			printf("%-71s  unusable: %s\n", d, err.msg);
			continue;
		}
		printf("%-71s  %10" PRIu64 "  %8zu  %10" PRIu32 "\n", d, sg_profile_chunks(p),
		       sg_profile_ranges(p, &r), sg_profile_chunk_count(p));
		sg_profile_free(p);
	}
	free(list);
	return 0;
}

static int cmd_show_rm(const struct args *a, bool rm)
{
	const char *verb = rm ? "rm" : "show";
	struct sg_error err = { 0 };
	struct sg_profile *p = NULL;
	struct sg_digest toc;

	if (!a->operand || parse_toc(a->operand, &toc) < 0) {
		fprintf(stderr, "stargzd profile %s: give a TOC digest (sha256:<hex>)\n", verb);
		return 2;
	}
	if (rm) {
		if (sg_profile_store_remove(a->root, &toc, &err) < 0) {
			fprintf(stderr, "stargzd profile rm: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	if (sg_profile_store_load(a->root, &toc, &p, &err) < 0) {
		fprintf(stderr, "stargzd profile show: %s\n", err.msg);
		return 1;
	}
	if (a->json) {
		char *json = NULL;
		if (sg_profile_format(p, &json, NULL) == 0)
			fputs(json, stdout);
		free(json);
	} else {
		char d[SG_DIGEST_STRLEN + 1];
		const struct sg_profile_range *r;
		size_t n = sg_profile_ranges(p, &r);

		sg_digest_format(sg_profile_toc(p), d);
		printf("toc:    %s\n", d);
		if (sg_profile_layer(p)) {
			sg_digest_format(sg_profile_layer(p), d);
			printf("layer:  %s\n", d);
		}
		if (sg_profile_toc_tail(p))
			printf("tocTail: %" PRIu64 " bytes (the blob's end fetched for the TOC)\n",
			       sg_profile_toc_tail(p));
		const struct sg_profile_span *h;
		size_t nh = sg_profile_head(p, &h);
		uint64_t head_bytes = 0;
		for (size_t i = 0; i < nh; i++)
			head_bytes += h[i].end - h[i].offset;
		if (nh)
			printf("head:   %zu blob spans, %" PRIu64 " bytes (where the first chunks lie: "
			       "read beside the TOC)\n", nh, head_bytes);
		printf("chunks: %" PRIu64 " of %" PRIu32 " in %zu ranges, in first-read order\n",
		       sg_profile_chunks(p), sg_profile_chunk_count(p), n);
		for (size_t i = 0; i < n; i++) {
			if (r[i].first == r[i].last)
				printf("  %" PRIu32, r[i].first);
			else
				printf("  %" PRIu32 "-%" PRIu32, r[i].first, r[i].last);
			if (sg_profile_has_times(p))
				printf("  at %" PRIu32 " ms", r[i].at_ms);
			putchar('\n');
		}
	}
	sg_profile_free(p);
	return 0;
}

/* ---- the registry, one step at a time on a private loop ---- */

struct share {
	const struct args *a;
	struct sg_loop *loop;
	struct sg_registry *reg;
	const char *verb;
	struct sg_error err;
	struct sg_registry_manifest *image;
};

struct waiter {
	struct sg_op op;
	bool done;
};

static void on_wait(struct sg_op *op)
{
	sg_container_of(op, struct waiter, op)->done = true;
}

/* Runs the loop until w's op completes; its result. */
static int wait_for(struct share *s, struct waiter *w, int started)
{
	if (started < 0)
		return started;
	while (!w->done) {
		int r = sg_loop_run_once(s->loop, 1000);
		if (r < 0 && r != -EINTR && r != -ETIME)
			return r;
	}
	return w->op.res;
}

static int call(struct share *s, const struct sg_registry_call *c,
		struct sg_registry_response *resp)
{
	struct waiter w = { 0 };

	sg_op_init(&w.op);
	s->err = (struct sg_error){ 0 };
	int r = wait_for(s, &w, sg_registry_call(s->reg, c, resp, &s->err, &w.op, on_wait));
	if (r < 0 && !s->err.msg[0])
		sg_error_set(&s->err, r, "%s", strerror(-r));
	return r;
}

static int fail(struct share *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct share *s, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "stargzd profile %s: ", s->verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* The loop and the registry client, and the image manifest when want_image. */
static int share_open(struct share *s, bool want_image)
{
	struct sg_registry_config rc = {
		.plain_http_localhost = s->a->plain_http,
		.insecure_hosts = s->a->insecure,
		.ninsecure_hosts = s->a->n_insecure,
	};
	struct waiter w = { 0 };
	int r;

	signal(SIGPIPE, SIG_IGN);
	r = sg_loop_new(NULL, &s->loop);
	if (r < 0)
		return fail(s, "cannot create the event loop: %s", strerror(-r));
	r = sg_registry_new(s->loop, &rc, &s->reg, &s->err);
	if (r < 0)
		return fail(s, "%s", s->err.msg);
	if (!want_image)
		return 0;
	sg_op_init(&w.op);
	r = wait_for(s, &w, sg_registry_get_manifest(s->reg, s->a->operand, s->a->platform,
						     &s->image, &s->err, &w.op, on_wait));
	if (r < 0)
		return fail(s, "%s", s->err.msg[0] ? s->err.msg : strerror(-r));
	return 0;
}

static void share_close(struct share *s)
{
	sg_registry_manifest_free(s->image);
	if (s->reg) {
		sg_registry_shutdown(s->reg);
		(void)sg_loop_drain(s->loop, 5000);
		if (!sg_registry_busy(s->reg))
			sg_registry_free(s->reg);
	}
	if (s->loop && sg_loop_pending(s->loop) == 0)
		sg_loop_free(s->loop);
}

/* ---- push ---- */

/* POST an upload, then PUT the bytes with their digest. */
static int upload_blob(struct share *s, const void *data, size_t len, const char *digest)
{
	struct sg_registry_response resp;
	char target[8400];
	int r;

	struct sg_registry_call post = { .ref = s->a->operand, .method = "POST",
					 .path = "blobs/uploads/", .body_max = 64 << 10 };
	r = call(s, &post, &resp);
	sg_registry_response_done(&resp);
	if (r < 0)
		return r;
	if (!resp.location[0])
		return sg_error_set(&s->err, -EBADMSG, "the registry gave no upload Location");
	snprintf(target, sizeof(target), "%s%sdigest=%s", resp.location,
		 strchr(resp.location, '?') ? "&" : "?", digest);
	struct sg_registry_call put = { .ref = s->a->operand, .method = "PUT", .target = target,
					.body = data, .body_len = len,
					.content_type = "application/octet-stream",
					.body_max = 64 << 10 };
	r = call(s, &put, &resp);
	sg_registry_response_done(&resp);
	return r;
}

static int put_manifest(struct share *s, const char *ref_part, const char *media_type,
			const char *json, size_t len, struct sg_registry_response *resp)
{
	char path[256];

	snprintf(path, sizeof(path), "manifests/%s", ref_part);
	struct sg_registry_call put = { .ref = s->a->operand, .method = "PUT", .path = path,
					.body = json, .body_len = len, .content_type = media_type,
					.body_max = 64 << 10 };
	return call(s, &put, resp);
}

static void now_rfc3339(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* Nanoseconds, so that two pushes within a second still order. */
	size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%09ldZ", ts.tv_nsec);
}

/* A bundle up to this size also rides inside the artifact manifest's descriptor of it
 * (net/referrers.h, SG_OCI_DATA_MAX), which then stays small enough to ride inside the
 * referrers tag's: a daemon pulling the profiles at a mount then needs two round trips, not
 * four.  Recorded bundles are a few KiB (python's, gcc's: 1-4 KiB). */
#define EMBED_BLOB_MAX (16u << 10)

/* A registry that refused (400) what a push embedded gets it again without, said so: true
 * when *embed was on and is off now.  what: "the manifest with the blob". */
static bool retry_unembedded(struct share *s, int r, const char **embed, const char *what)
{
	if (r != -EINVAL || !*embed)
		return false;
	fprintf(stderr, "stargzd profile push: the registry refused %s embedded (%s): pushed "
		"without\n", what, s->err.msg);
	*embed = NULL;
	return true;
}

/* The referrers tag: the index there (if any) with the artifact added, its manifest embedded
 * (manifest: the bytes) unless the registry refuses that (400: some validate descriptors
 * strictly), then without. */
static int push_referrers_tag(struct share *s, const struct sg_oci_desc *art,
			      const char *manifest, const char *created, const char *tag)
{
	struct sg_registry_response resp;
	char path[256], *index = NULL;
	size_t len = 0;
	int r;

	snprintf(path, sizeof(path), "manifests/%s", tag);
	struct sg_registry_call get = { .ref = s->a->operand, .path = path,
					.accept = SG_MT_OCI_INDEX,
					.body_max = SG_REFERRERS_INDEX_MAX };
	r = call(s, &get, &resp);
	if (r < 0 && r != -ENOENT)
		return r;
	const char *old = r == 0 ? (const char *)resp.body : NULL;
	size_t old_len = r == 0 ? resp.len : 0;
	const char *embed = art->size <= SG_OCI_DATA_MAX ? manifest : NULL;
	for (;;) {
		r = sg_referrers_index_add(old, old_len, art, embed, SG_PROFILE_ARTIFACT_TYPE,
					   created, &index, &len, &s->err);
		if (r < 0)
			break;
		struct sg_registry_response put;
		r = put_manifest(s, tag, SG_MT_OCI_INDEX, index, len, &put);
		sg_registry_response_done(&put);
		free(index);
		index = NULL;
		if (!retry_unembedded(s, r, &embed, "the referrers tag with the manifest"))
			break;
	}
	sg_registry_response_done(&resp);
	return r;
}

/* The artifact manifest, pushed by its digest (into *art), the bundle embedded when given,
 * unless the registry refuses that (400), then without: the manifest's bytes in *ret. */
static int push_artifact(struct share *s, const struct sg_oci_desc *subject,
			 const struct sg_oci_desc *blob, const char *bundle, const char *created,
			 struct sg_oci_desc *art, char **ret, size_t *ret_len,
			 struct sg_registry_response *resp)
{
	const char *embed = blob->size <= EMBED_BLOB_MAX ? bundle : NULL;
	int r;

	for (;;) {
		if (sg_artifact_manifest_build(SG_PROFILE_ARTIFACT_TYPE, subject, blob, embed,
					       created, ret, ret_len) < 0)
			return sg_error_set(&s->err, -ENOMEM, "out of memory");
		sg_oci_desc_of(art, SG_MT_OCI_MANIFEST, *ret, *ret_len);
		r = put_manifest(s, art->digest, SG_MT_OCI_MANIFEST, *ret, *ret_len, resp);
		if (!retry_unembedded(s, r, &embed, "the manifest with the blob"))
			return r;
		sg_registry_response_done(resp);
		free(*ret);
		*ret = NULL;
	}
}

static int cmd_push(const struct args *a)
{
	struct share s = { .a = a, .verb = "push" };
	struct sg_profile *ps[SG_PROFILE_BUNDLE_MAX];
	struct sg_registry_response resp;
	struct sg_oci_desc subject = { 0 }, blob = { 0 }, art = { 0 };
	char *bundle = NULL, *manifest = NULL, created[64], tag[160];
	size_t n = 0, blen = 0, mlen = 0;
	uint64_t chunks = 0;
	int rc = 1, r;

	if (share_open(&s, true) != 0)
		goto out;
	for (size_t i = 0; i < s.image->manifest->nlayers && n < SG_PROFILE_BUNDLE_MAX; i++) {
		const struct sg_descriptor *l = &s.image->manifest->layers[i];
		struct sg_digest toc, blob_digest;
		struct sg_profile *p = NULL;

		if (!l->toc_digest || sg_digest_parse(l->toc_digest, strlen(l->toc_digest), &toc) < 0)
			continue;
		r = sg_profile_store_load(a->root, &toc, &p, &s.err);
		if (r < 0) {
			if (r != -ENOENT)
				fprintf(stderr, "stargzd profile push: layer %s: %s\n", l->digest,
					s.err.msg);
			continue;
		}
		if (!sg_profile_layer(p) &&
		    sg_digest_parse(l->digest, strlen(l->digest), &blob_digest) == 0)
			sg_profile_set_layer(p, &blob_digest);
		chunks += sg_profile_chunks(p);
		ps[n++] = p;
	}
	if (n == 0) {
		fail(&s, "no profile in %s/%s for a layer of %s", a->root, SG_PROFILE_DIR,
		     s.image->ref);
		goto out;
	}
	if (sg_profile_bundle_format(ps, n, &bundle, &blen) < 0) {
		fail(&s, "out of memory");
		goto out;
	}
	if (blen > SG_PROFILE_JSON_MAX) {
		fail(&s, "the profiles take %zu bytes, more than the %u an artifact may hold", blen,
		     SG_PROFILE_JSON_MAX);
		goto out;
	}
	/* The blobs, the artifact manifest by its digest, then the referrers tag if needed. */
	r = upload_blob(&s, "{}", 2, SG_OCI_EMPTY_DIGEST);
	if (r < 0) {
		fail(&s, "config blob: %s", s.err.msg);
		goto out;
	}
	sg_oci_desc_of(&blob, SG_PROFILE_BLOB_TYPE, bundle, blen);
	r = upload_blob(&s, bundle, blen, blob.digest);
	if (r < 0) {
		fail(&s, "profile blob: %s", s.err.msg);
		goto out;
	}
	snprintf(subject.media_type, sizeof(subject.media_type), "%s", s.image->media_type);
	snprintf(subject.digest, sizeof(subject.digest), "%s", s.image->digest);
	subject.size = s.image->len;
	now_rfc3339(created, sizeof(created));
	r = push_artifact(&s, &subject, &blob, bundle, created, &art, &manifest, &mlen, &resp);
	sg_registry_response_done(&resp);
	if (r < 0) {
		fail(&s, "artifact manifest: %s", s.err.msg);
		goto out;
	}
	if (resp.oci_subject) {
		printf("pushed the profiles of %zu layers (%" PRIu64 " chunks) as %s, "
		       "listed by the registry's referrers API\n", n, chunks, art.digest);
	} else {
		(void)sg_referrers_tag(s.image->digest, tag, sizeof(tag));
		r = push_referrers_tag(&s, &art, manifest, created, tag);
		if (r < 0) {
			fail(&s, "referrers tag %s: %s", tag, s.err.msg);
			goto out;
		}
		printf("pushed the profiles of %zu layers (%" PRIu64 " chunks) as %s, "
		       "listed in the referrers tag %s\n", n, chunks, art.digest, tag);
	}
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		sg_profile_free(ps[i]);
	free(bundle);
	free(manifest);
	share_close(&s);
	return rc;
}

/* ---- pull ---- */

static void print_note(void *userdata, const char *msg)
{
	fprintf(stderr, "stargzd profile pull: %s\n", msg);
}

static int cmd_pull(const struct args *a)
{
	struct share s = { .a = a, .verb = "pull" };
	struct sg_profile_pull_result res;
	struct waiter w = { 0 };
	int rc = 1, r;

	if (share_open(&s, false) != 0)
		goto out;
	struct sg_profile_pull_request req = {
		.loop = s.loop, .registry = s.reg, .ref = a->operand, .platform = a->platform,
		.root = a->root, .on_note = print_note,
	};
	sg_op_init(&w.op);
	r = wait_for(&s, &w, sg_profile_pull(&req, &res, &s.err, &w.op, on_wait));
	if (r < 0) {
		fail(&s, "%s", s.err.msg[0] ? s.err.msg : strerror(-r));
		goto out;
	}
	printf("pulled the profiles of %zu layers from %s (found through the %s, %u round "
	       "trip%s)\n", res.stored, res.artifact, res.found_through, res.round_trips,
	       res.round_trips == 1 ? "" : "s");
	rc = 0;
out:
	share_close(&s);
	return rc;
}

/* ---- arguments ---- */

int sg_profile_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "plain-http", no_argument, NULL, 'P' },
		{ "insecure", required_argument, NULL, 'I' },
		{ "platform", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct args a = { .root = SG_DEFAULT_ROOT };
	const char *verb;
	int c;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(profile_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	verb = argv[1];
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, ":r:jPI:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': a.root = optarg; break;
		case 'j': a.json = true; break;
		case 'P': a.plain_http = true; break;
		case 'p': a.platform = optarg; break;
		case 'I':
			if (a.n_insecure == INSECURE_MAX) {
				fprintf(stderr, "stargzd profile: too many --insecure\n");
				return 2;
			}
			a.insecure[a.n_insecure++] = optarg;
			break;
		case 'h':
			fputs(profile_usage, stdout);
			return 0;
		default:
			fprintf(stderr, "stargzd profile: bad option %s (see --help)\n",
				argv[optind]);
			return 2;
		}
	}
	if (optind < argc - 1)
		a.operand = argv[1 + optind++];
	if (optind < argc - 1) {
		fprintf(stderr, "stargzd profile: unexpected argument \"%s\"\n", argv[1 + optind]);
		return 2;
	}
	if (!strcmp(verb, "ls"))
		return a.operand ? 2 : cmd_ls(&a);
	if (!strcmp(verb, "show"))
		return cmd_show_rm(&a, false);
	if (!strcmp(verb, "rm"))
		return cmd_show_rm(&a, true);
	if (!strcmp(verb, "push") || !strcmp(verb, "pull")) {
		if (!a.operand) {
			fprintf(stderr, "stargzd profile %s: give an image reference\n", verb);
			return 2;
		}
		return verb[1] == 'u' && verb[2] == 's' ? cmd_push(&a) : cmd_pull(&a);
	}
	fprintf(stderr, "stargzd profile: unknown command \"%s\" (see --help)\n", verb);
	return 2;
}
