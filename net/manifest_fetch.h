/* Fetching an image's manifest from a registry: by tag or digest (a digest is verified against
 * the bytes), through the reference's endpoints (mirrors with the resolve capability for a
 * tag, pull for a digest, then the upstream), and, when the answer is an index, the image
 * manifest for the wanted platform.  The parsing is net/manifest.h's.
 *
 * A continuation in the loop's shape (daemon/core/loop.h).  Errors are negative errno values
 * with a message (daemon/core/error.h): -ENOENT (unknown, or no endpoint), -EACCES, -EBADMSG
 * (malformed, digest mismatch, an index in an index), -ENOTSUP (a digest algorithm we cannot
 * verify), -ECANCELED, and what net/exchange.h reports.  Nothing here logs.
 */
#ifndef STARGZD_NET_MANIFEST_FETCH_H
#define STARGZD_NET_MANIFEST_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_registry;
struct sg_manifest;

struct sg_registry_manifest {
	const char *ref;                  /* the normalized reference */
	const char *digest;               /* of the image manifest ("sha256:...") */
	const char *index_digest;         /* of the index it was selected from, or NULL */
	const char *media_type;           /* effective type of the image manifest */
	const uint8_t *data;              /* the image manifest bytes as served */
	size_t len;
	const struct sg_manifest *manifest;
};

/* Fetches the manifest of `ref`, for `platform` ("os/arch[/variant]", NULL = linux/amd64)
 * when it is an index.  cb(op) runs once from the loop: op->res 0 with *ret_manifest (free
 * with sg_registry_manifest_free), or a negative errno with err (may be NULL) saying why.
 * Returns 0, or -EINVAL / -EBUSY / -ECANCELED / -ENOMEM at once (then cb never runs); a
 * malformed reference or platform is reported through cb. */
int sg_registry_get_manifest(struct sg_registry *r, const char *ref, const char *platform,
			     struct sg_registry_manifest **ret_manifest, struct sg_error *err,
			     struct sg_op *op, sg_op_cb cb);
/* NULL is fine. */
void sg_registry_manifest_free(struct sg_registry_manifest *m);

#endif
