/* The store of learned startup profiles: ROOT/profiles/<toc-digest-hex>.json, one profile
 * (fs/profile.h) per layer, keyed by the layer's TOC digest.
 *
 * Outside the snapshot and cache directories on purpose: a profile survives daemon restarts,
 * image removal and cache eviction, so the next pull of the image (or any image sharing the
 * layer) starts with it.  Writes are atomic (a temporary file, fsync, rename, fsync of the
 * directory): a crash leaves the old profile or the new one, never half of one.  A file
 * that does not parse, or whose TOC digest is not its name, is refused on load.
 *
 * Blocking file I/O on small files (at most SG_PROFILE_JSON_MAX bytes): loads for a layer's
 * mount and for the CLI; the daemon saves a recording on a helper thread
 * (sg_profile_store_record_async).  Errors are negative errno values with a message
 * (daemon/core/error.h).  Nothing here logs. */
#ifndef STARGZD_FS_PROFILE_STORE_H
#define STARGZD_FS_PROFILE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"
#include "daemon/core/error.h"
#include "daemon/core/loop.h"
#include "fs/profile.h"

#define SG_PROFILE_DIR "profiles"
/* ROOT/profiles/layers/<layer-hex>.json: a symlink to the profile that names that layer
 * blob ("layer"), made by every save; the index sg_profile_store_load_by_layer reads.  A mount
 * knows the layers after its own by blob digest only. */
#define SG_PROFILE_LAYER_DIR "layers"

/* ROOT/profiles/<hex>.json.  Returns 0 or -ENAMETOOLONG. */
int sg_profile_store_path(const char *root, const struct sg_digest *toc, char *buf, size_t cap);

/* The stored profile of toc.  Returns 0 with *ret, -ENOENT when there is none (err says so
 * too), or what sg_profile_parse refuses, and -EINVAL when the file names another TOC. */
int sg_profile_store_load(const char *root, const struct sg_digest *toc,
			  struct sg_profile **ret, struct sg_error *err);
/* Replay input for a layer being mounted: the stored profile of toc, checked against the
 * layer's chunk count (-EINVAL when the profile says another count: it cannot be this
 * layer's); the ranges are in recorded order (sg_profile_ranges).  -ENOENT: no profile. */
int sg_profile_store_load_for_layer(const char *root, const struct sg_digest *toc,
				    uint32_t n_chunks, struct sg_profile **ret,
				    struct sg_error *err);
/* The profile that names layer blob `layer` ("layer"), found through the index: what a
 * mount knows of the layers after its own before their TOCs (its "tocTail": how much of the
 * blob's end to fetch).  Returns 0 with *ret,
 * -ENOENT when none names the layer, -EINVAL when the indexed file names another layer, or
 * what loading it refuses (err says why).  Hints only: a wrong one costs a round trip or
 * some bytes, never a byte served, since the TOC is verified as always. */
int sg_profile_store_load_by_layer(const char *root, const struct sg_digest *layer,
				   struct sg_profile **ret, struct sg_error *err);
/* Writes p as the profile of its TOC, replacing the one stored (and its layer's index
 * entry, best effort). */
int sg_profile_store_save(const char *root, const struct sg_profile *p, struct sg_error *err);
/* A new recording: merged into the stored profile (that one's order first, then the chunks
 * only p has), or stored as it is when there is none (or the stored one cannot be used). */
int sg_profile_store_record(const char *root, const struct sg_profile *p, struct sg_error *err);
/* The same on a helper thread, so that the loop serving FUSE requests never waits for the
 * file's read, write and two fsyncs (at a recording's quiet and at every unmount).  p is
 * formatted at once (the caller keeps it), root copied.  Returns 0, and cb(op) runs exactly
 * once from the loop with op->res 0 or a negative errno, err (may be NULL) saying why.  Else
 * cb never runs: 1 when the loop drains already (the record was done before this returned),
 * or a negative errno (-EINVAL, -EBUSY, -ENOMEM, or the record's own failure then, with err).
 * Records of one process, these and sg_profile_store_record's, take turns.  A loop that
 * starts draining meanwhile (a shutdown) still gets the record done: its completion waits
 * for the thread. */
int sg_profile_store_record_async(struct sg_loop *loop, const char *root,
				  const struct sg_profile *p, struct sg_error *err,
				  struct sg_op *op, sg_op_cb cb);
/* Removes the profile of toc (and its layer's index entry when it points there): 0, or
 * -ENOENT. */
int sg_profile_store_remove(const char *root, const struct sg_digest *toc, struct sg_error *err);
/* The TOC digests that have a profile, sorted: *ret (free it) of *ret_n.  A missing
 * profiles directory is an empty store. */
int sg_profile_store_list(const char *root, struct sg_digest **ret, size_t *ret_n,
			  struct sg_error *err);

#endif
