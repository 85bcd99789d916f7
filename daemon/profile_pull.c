/* Pulling startup profiles.  See profile_pull.h.
 *
 * One object walks the steps; each step is one registry request (the lookup: two at once,
 * three with the image manifest when its digest is known) whose completion (on_step,
 * on_lookup, on_image_beside) checks the answer and starts the next.  The pull ends
 * (pull_finish) only with no request of its own in flight. */
#include "daemon/profile_pull.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "fs/profile.h"
#include "fs/profile_store.h"
#include "net/manifest.h"
#include "net/manifest_fetch.h"
#include "net/reference.h"
#include "net/referrers.h"
#include "net/registry_call.h"

enum step {
	STEP_IMAGE,        /* the image manifest; then the two lookups (on_lookup) */
	STEP_ARTIFACT,     /* the artifact manifest */
	STEP_BLOB,         /* the bundle */
};

/* GET referrers/<digest> and GET manifests/sha256-<hex>, sent together: a registry without
 * the referrers API (Debian's docker-registry) would otherwise cost a round trip for its 404
 * before the tag is asked, and one with it costs only a small 404 more. */
struct lookup {
	struct pull *p;
	char path[512];
	struct sg_registry_response resp;
	struct sg_op op;
	struct sg_error err;
	int res;
};

struct pull {
	struct sg_profile_pull_request req;
	char *ref, *platform, *root;
	enum step step;
	struct sg_registry_manifest *image;
	char subject[SG_REF_DIGEST_MAX + 1];   /* the digest the lookups asked about */
	struct lookup api, tag;
	unsigned inflight;            /* the lookups, and the manifest when image_beside */
	/* The manifest was fetched by the digest given, beside the lookups (on_image_beside):
	 * its answer, in image_res, is checked when all three are in. */
	bool image_beside;
	int image_res;
	struct sg_registry_response resp;
	struct sg_oci_desc art, blob;
	struct sg_oci_data art_data, blob_data;   /* what the index / the manifest embed */
	char path[512];
	struct sg_op iop;
	struct sg_error ierr;
	/* the caller's continuation */
	struct sg_profile_pull_result *ret;
	struct sg_error *err;
	struct sg_op *op;
	sg_op_cb cb;
};

static void pull_free(struct pull *p)
{
	sg_registry_manifest_free(p->image);
	sg_registry_response_done(&p->resp);
	sg_registry_response_done(&p->api.resp);
	sg_registry_response_done(&p->tag.resp);
	sg_oci_data_free(&p->art_data);
	sg_oci_data_free(&p->blob_data);
	free(p->ref);
	free(p->platform);
	free(p->root);
	free(p);
}

/* Ends the pull: res with the message in p->ierr (or the one given).  Nothing of the pull may
 * be in flight. */
static void pull_finish(struct pull *p, int res)
{
	struct sg_loop *loop = p->req.loop;
	struct sg_op *op = p->op;
	sg_op_cb cb = p->cb;

	if (res < 0)
		sg_error_set(p->err, res, "%s", p->ierr.msg[0] ? p->ierr.msg : strerror(-res));
	pull_free(p);
	(void)sg_post(loop, op, res, cb);
}

static void on_step(struct sg_op *op);

static void pull_get(struct pull *p, enum step step, const char *accept, size_t max)
{
	struct sg_registry_call c = { .ref = p->ref, .path = p->path, .accept = accept,
				      .body_max = max };
	int r;

	p->step = step;
	p->ret->round_trips++;
	sg_registry_response_done(&p->resp);
	p->ierr = (struct sg_error){ 0 };
	r = sg_registry_call(p->req.registry, &c, &p->resp, &p->ierr, &p->iop, on_step);
	if (r < 0)
		pull_finish(p, r);
}

static void on_lookup(struct sg_op *op);

static void lookup_start(struct pull *p, struct lookup *l)
{
	struct sg_registry_call c = { .ref = p->ref, .path = l->path, .accept = SG_MT_OCI_INDEX,
				      .body_max = SG_REFERRERS_INDEX_MAX };

	l->p = p;
	sg_op_init(&l->op);
	sg_registry_response_done(&l->resp);   /* asked again: an index's digest was given */
	l->err = (struct sg_error){ 0 };
	l->res = sg_registry_call(p->req.registry, &c, &l->resp, &l->err, &l->op, on_lookup);
	if (l->res < 0)
		sg_error_set(&l->err, l->res, "%s", strerror(-l->res));
	else
		p->inflight++;
}

static void lookups_done(struct pull *p);

static void on_lookup(struct sg_op *op)
{
	struct lookup *l = sg_container_of(op, struct lookup, op);
	struct pull *p = l->p;

	l->res = op->res;
	if (--p->inflight == 0)
		lookups_done(p);
}

/* Both lookups about `subject`, sent together. */
static void lookups_start(struct pull *p, const char *subject)
{
	snprintf(p->subject, sizeof(p->subject), "%s", subject);
	snprintf(p->api.path, sizeof(p->api.path), "referrers/%s?artifactType=%s", subject,
		 "application%2Fvnd.stargzd.profile.v1%2Bjson");
	snprintf(p->tag.path, sizeof(p->tag.path), "manifests/");
	(void)sg_referrers_tag(subject, p->tag.path + strlen(p->tag.path),
			       sizeof(p->tag.path) - strlen(p->tag.path));
	lookup_start(p, &p->api);
	lookup_start(p, &p->tag);
}

/* The answer of a GET by digest: its bytes are those of the digest, and of the size. */
static int check_bytes(struct pull *p, const char *what, const struct sg_oci_desc *d)
{
	return sg_registry_response_verify(&p->resp, what, d->digest, d->size, &p->ierr);
}

/* The image's layer with this TOC digest. */
static bool is_layer(const struct pull *p, const struct sg_digest *toc)
{
	char d[SG_DIGEST_STRLEN + 1];

	sg_digest_format(toc, d);
	for (size_t i = 0; i < p->image->manifest->nlayers; i++) {
		const char *t = p->image->manifest->layers[i].toc_digest;
		if (t && strcmp(t, d) == 0)
			return true;
	}
	return false;
}

static void note(struct pull *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct pull *p, const char *fmt, ...)
{
	char msg[SG_ERROR_MSG_MAX];
	va_list ap;

	if (!p->req.on_note)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->req.on_note(p->req.userdata, msg);
}

/* The bundle: parsed, and the profiles of the image's layers stored. */
static int store_bundle(struct pull *p, const uint8_t *body, size_t len)
{
	struct sg_profile **ps = NULL;
	size_t n = 0;
	int r;

	r = sg_profile_bundle_parse(body, len, &ps, &n, &p->ierr);
	if (r < 0) {
		sg_error_prefix(&p->ierr, "artifact %s", p->art.digest);
		return r;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		char d[SG_DIGEST_STRLEN + 1];

		/* Keyed by TOC digest: a profile for a layer the image does not have is not
		 * stored, whatever it claims. */
		if (!is_layer(p, sg_profile_toc(ps[i]))) {
			sg_digest_format(sg_profile_toc(ps[i]), d);
			note(p, "profile for TOC %s names no layer of %s: ignored", d, p->image->ref);
			p->ret->ignored++;
			continue;
		}
		r = sg_profile_store_record(p->root, ps[i], &p->ierr);
		if (r == 0)
			p->ret->stored++;
	}
	sg_profile_bundle_free(ps, n);
	if (r == 0 && p->ret->stored == 0)
		r = sg_error_set(&p->ierr, -ENOENT, "artifact %s holds no profile for a layer of %s",
				 p->art.digest, p->image->ref);
	return r;
}

/* The artifact manifest, fetched and verified or embedded in the index: its blob next,
 * unless it embeds that too. */
static void have_manifest(struct pull *p, const uint8_t *json, size_t len)
{
	int r = sg_artifact_manifest_check((const char *)json, len, SG_PROFILE_ARTIFACT_TYPE,
					   p->image->digest, SG_PROFILE_BLOB_TYPE,
					   SG_PROFILE_JSON_MAX, &p->blob, &p->blob_data, &p->ierr);
	if (r < 0) {
		sg_error_prefix(&p->ierr, "artifact %s", p->art.digest);
		pull_finish(p, r);
		return;
	}
	if (p->blob_data.rejected)
		note(p, "artifact %s embeds a blob that is not %s: fetched instead", p->art.digest,
		     p->blob.digest);
	if (p->blob_data.bytes) {
		pull_finish(p, store_bundle(p, p->blob_data.bytes, (size_t)p->blob.size));
		return;
	}
	snprintf(p->path, sizeof(p->path), "blobs/%s", p->blob.digest);
	pull_get(p, STEP_BLOB, NULL, SG_PROFILE_JSON_MAX);
}

/* Both lookups answered: the API's artifact if it lists one of ours (a registry with the API
 * lists there what was pushed to it), else the tag's. */
static void lookups_done(struct pull *p)
{
	struct lookup *found = NULL, *ls[2] = { &p->api, &p->tag };

	if (p->image_beside) {
		if (p->image_res < 0) {
			sg_error_prefix(&p->ierr, "image manifest %s", p->subject);
			pull_finish(p, p->image_res);
			return;
		}
		if (strcmp(p->image->digest, p->subject) != 0) {
			/* The digest was an index's: an artifact refers to the platform's
			 * manifest, which the lookups did not ask about. */
			note(p, "%s is an index: asking about its manifest %s", p->subject,
			     p->image->digest);
			p->image_beside = false;
			p->ret->round_trips++;
			lookups_start(p, p->image->digest);
			if (p->inflight == 0)
				lookups_done(p);
			return;
		}
	}
	for (size_t i = 0; i < 2 && !found; i++) {
		struct lookup *l = ls[i];
		if (l->res == 0)
			l->res = sg_referrers_pick((const char *)l->resp.body, l->resp.len,
						   SG_PROFILE_ARTIFACT_TYPE, &p->art, &p->art_data,
						   &l->err);
		if (l->res == 0)
			found = l;
	}
	if (!found) {
		int r = p->tag.res;
		if (r == -ENOENT)
			sg_error_set(&p->ierr, r, "no profile artifact refers to %s", p->subject);
		else
			p->ierr = p->tag.err;
		pull_finish(p, r);
		return;
	}
	p->ret->found_through = found == &p->api ? "referrers API" : "referrers tag";
	snprintf(p->ret->artifact, sizeof(p->ret->artifact), "%s", p->art.digest);
	if (p->art_data.rejected)
		note(p, "the %s embeds a manifest that is not %s: fetched instead",
		     p->ret->found_through, p->art.digest);
	if (p->art_data.bytes) {
		have_manifest(p, p->art_data.bytes, (size_t)p->art.size);
		return;
	}
	snprintf(p->path, sizeof(p->path), "manifests/%s", p->art.digest);
	pull_get(p, STEP_ARTIFACT, SG_MT_OCI_MANIFEST, SG_MANIFEST_MAX);
}

/* The manifest fetched by digest answered; the lookups may still be out. */
static void on_image_beside(struct sg_op *op)
{
	struct pull *p = sg_container_of(op, struct pull, iop);

	p->image_res = op->res;
	if (--p->inflight == 0)
		lookups_done(p);
}

/* The manifest's digest when known: the one given, else REF's own ("repo@sha256:..."); REF
 * with it in *by_digest ("domain/repo[:tag]@digest").  False: unknown, or not a digest we
 * can verify. */
static bool known_digest(const char *ref, const char *given, struct sg_ref *by_digest)
{
	if (sg_ref_parse(ref, by_digest, NULL) < 0)
		return false;
	if (given && *given)
		snprintf(by_digest->digest, sizeof(by_digest->digest), "%s", given);
	return by_digest->digest[0] && sg_ref_check_digest(by_digest->digest) == 0 &&
	       strncmp(by_digest->digest, "sha256:", 7) == 0;
}

static void on_step(struct sg_op *op)
{
	struct pull *p = sg_container_of(op, struct pull, iop);
	int r = op->res;

	switch (p->step) {
	case STEP_IMAGE:
		if (r < 0)
			break;
		p->ret->round_trips++;
		lookups_start(p, p->image->digest);
		if (p->inflight == 0)
			lookups_done(p);
		return;
	case STEP_ARTIFACT:
		if (r == 0)
			r = check_bytes(p, "manifest", &p->art);
		if (r < 0) {
			sg_error_prefix(&p->ierr, "artifact %s", p->art.digest);
			break;
		}
		have_manifest(p, p->resp.body, p->resp.len);
		return;
	case STEP_BLOB:
		if (r == 0)
			r = check_bytes(p, "blob", &p->blob);
		if (r == 0)
			r = store_bundle(p, p->resp.body, p->resp.len);
		break;
	}
	pull_finish(p, r);
}

int sg_profile_pull(const struct sg_profile_pull_request *req,
		    struct sg_profile_pull_result *ret, struct sg_error *err, struct sg_op *op,
		    sg_op_cb cb)
{
	struct pull *p;
	int r;

	if (!req || !req->loop || !req->registry || !req->ref || !req->root || !ret || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->req = *req;
	p->ref = strdup(req->ref);
	p->platform = req->platform ? strdup(req->platform) : NULL;
	p->root = strdup(req->root);
	if (!p->ref || !p->root || (req->platform && !p->platform)) {
		pull_free(p);
		return -ENOMEM;
	}
	*ret = (struct sg_profile_pull_result){ .found_through = "", .round_trips = 1 };
	p->ret = ret;
	p->err = err;
	p->op = op;
	p->cb = cb;
	sg_op_init(&p->iop);
	struct sg_ref known;
	char by_digest[SG_REF_NAME_MAX + SG_REF_TAG_MAX + SG_REF_DIGEST_MAX + 4];
	if (known_digest(p->ref, req->manifest_digest, &known) &&
	    sg_ref_format(&known, by_digest, sizeof(by_digest)) > 0) {
		p->image_beside = true;
		r = sg_registry_get_manifest(req->registry, by_digest, p->platform, &p->image,
					     &p->ierr, &p->iop, on_image_beside);
		if (r < 0) {
			pull_free(p);
			return r;
		}
		p->inflight = 1;
		lookups_start(p, known.digest);
		return 0;
	}
	p->step = STEP_IMAGE;
	r = sg_registry_get_manifest(req->registry, p->ref, p->platform, &p->image, &p->ierr,
				     &p->iop, on_step);
	if (r < 0) {
		pull_free(p);
		return r;
	}
	return 0;
}
