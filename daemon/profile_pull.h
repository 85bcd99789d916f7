/* Pulling an image's startup profiles from its registry (README "Startup profiles"), on the
 * loop: what `stargzd profile pull REF` runs, and what the daemon runs with
 * `profiles = "registry"` the first time it mounts a layer of an image, with its own registry
 * client (so with the credentials it pulls with).
 *
 * The steps: the image manifest (REF resolved, an index to the platform's manifest); then,
 * sent together, GET /v2/<name>/referrers/<digest>?artifactType=... and the referrers tag
 * sha256-<hex> (which a push to a registry without that API writes), the API's answer
 * preferred; the newest artifact of type SG_PROFILE_ARTIFACT_TYPE; its manifest (digest
 * verified, subject and blob type checked, the blob at most SG_PROFILE_JSON_MAX bytes by its
 * descriptor); the blob (size and sha256 verified); the bundle parsed (fs/profile.h); each
 * profile whose TOC digest is a layer of the image merged into ROOT/profiles
 * (fs/profile_store.h: a short blocking write, as the daemon's other small state files), any
 * other refused through on_note.  The manifest and the blob are not asked for when the index
 * and the manifest embed them (net/referrers.h, struct sg_oci_data: verified the same way), as
 * `stargzd profile push` writes them: two round trips on a registry without the API, three
 * with it.  When the caller knows the image manifest's digest (containerd's CRI plugin passes
 * it to snapshotters as containerd.io/snapshot/cri.manifest-digest), the manifest is fetched
 * by that digest beside the two lookups, which saves the first round trip: one in all for
 * what a push writes.  A profile is a hint: any failure here only means no profile.
 *
 * A continuation in the loop's shape (daemon/core/loop.h).  Nothing here logs: notes (one
 * line each, such as "profile for TOC sha256:.. names no layer of REF: ignored") go to
 * on_note, the error to err. */
#ifndef STARGZD_PROFILE_PULL_H
#define STARGZD_PROFILE_PULL_H

#include <stddef.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_registry;

struct sg_profile_pull_request {
	struct sg_loop *loop;         /* the registry's */
	struct sg_registry *registry;
	const char *ref;              /* the image reference (copied) */
	const char *platform;         /* NULL = linux/amd64 (copied) */
	/* The image manifest's digest, when known ("sha256:<hex>"; copied), as is REF's own
	 * when it has one: the lookups go out with the manifest's fetch by digest.  An index's
	 * digest costs a round trip more (the lookups are asked again for the platform's
	 * manifest).  NULL, and REF without a digest: REF is resolved first. */
	const char *manifest_digest;
	const char *root;             /* the store's root (copied) */
	void (*on_note)(void *userdata, const char *msg);   /* may be NULL */
	void *userdata;
};

struct sg_profile_pull_result {
	size_t stored;                /* profiles merged into the store */
	size_t ignored;               /* profiles for TOCs that are no layer of the image */
	char artifact[7 + 128 + 1];   /* the artifact manifest's digest */
	const char *found_through;    /* "referrers API" or "referrers tag" (static) */
	/* steps one after another: the image manifest (with the lookups when its digest was
	 * given), the lookups, and the artifact manifest and the blob when not embedded (1 to 4) */
	unsigned round_trips;
};

/* cb(op) runs once from the loop: op->res 0 with *ret filled (at least one profile stored),
 * or a negative errno with err saying why: -ENOENT (no artifact, or none of its profiles is
 * for a layer of the image), -EBADMSG (digest or size mismatch, malformed), -E2BIG (blob
 * above the bound), -EINVAL, or what the registry reported.  Returns 0, or -EINVAL /
 * -EBUSY / -ENOMEM / -ECANCELED at once (cb never runs).  No cancel: sg_registry_shutdown ends it with
 * -ECANCELED. */
int sg_profile_pull(const struct sg_profile_pull_request *req,
		    struct sg_profile_pull_result *ret, struct sg_error *err, struct sg_op *op,
		    sg_op_cb cb);

#endif
