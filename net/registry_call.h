/* One request on an image's repository, for what blob.h and manifest_fetch.h do not cover:
 * pushing (blob uploads, manifest PUTs) and the OCI 1.1 referrers API.
 *
 * The request goes to the reference's upstream endpoint (mirrors are caches: they take no
 * pushes, and a referrers listing must be the registry's own), through net/exchange.h
 * (retries, redirects, Bearer tokens, with the push scope for PUT and POST).  The response
 * is buffered up to body_max; a non-2xx status fails the call with exchange.h's errno
 * (-ENOENT for 404, ...) and message.
 *
 * A continuation in the loop's shape (daemon/core/loop.h).  Nothing here logs. */
#ifndef STARGZD_NET_REGISTRY_CALL_H
#define STARGZD_NET_REGISTRY_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_registry;

struct sg_registry_call {
	const char *ref;            /* an image reference: its repository is the one used */
	const char *method;         /* "GET" (NULL), "HEAD", "PUT" or "POST" */
	/* Either path, under the repository ("blobs/uploads/", "manifests/sha256-<hex>",
	 * "referrers/sha256:<hex>?artifactType=..."), or target, a whole path + query on the
	 * same endpoint (an upload's Location, from a previous response). */
	const char *path;
	const char *target;
	const void *body;           /* PUT and POST */
	size_t body_len;
	const char *content_type;   /* of the body */
	const char *accept;         /* NULL: none */
	size_t body_max;            /* of the response */
};

struct sg_registry_response {
	int status;
	uint8_t *body;              /* the caller's: free it; NULL when empty */
	size_t len;
	char content_type[128];
	/* Location of a 2xx (an upload session), resolved against the endpoint to a path +
	 * query on it; "" when absent.  An upload elsewhere (another host) fails the call. */
	char location[8192];
	char docker_content_digest[7 + 128 + 1];
	bool oci_subject;           /* the OCI-Subject header: the registry indexed the subject */
};

/* Runs the call; *ret is filled when cb(op) runs with op->res 0.  Returns 0, or at once
 * -EINVAL / -EBUSY / -ECANCELED / -ENOMEM (cb never runs); a bad reference and everything
 * else come through cb with err (may be NULL) saying why. */
int sg_registry_call(struct sg_registry *r, const struct sg_registry_call *call,
		     struct sg_registry_response *ret, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb);
/* Frees the body.  NULL is fine. */
void sg_registry_response_done(struct sg_registry_response *resp);

/* The body of a GET by digest is the descriptor's: `size` bytes whose sha256 is `digest`
 * ("sha256:<hex>"; another algorithm never matches).  0, or -EBADMSG with err saying
 * "WHAT DIGEST: N bytes, the descriptor says M" or "WHAT DIGEST: digest mismatch (the bytes
 * are sha256:...)". */
int sg_registry_response_verify(const struct sg_registry_response *resp, const char *what,
				const char *digest, uint64_t size, struct sg_error *err);

#endif
