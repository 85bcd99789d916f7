/* Image references: `[host[:port]/]repo[:tag][@sha256:hex]`, validated against the grammar of
 * the distribution project (reference/regexp.go) and normalized the way docker and containerd
 * do it:
 *
 *   ubuntu                      -> docker.io / library/ubuntu : latest
 *   user/app:1                  -> docker.io / user/app : 1
 *   docker.io/ubuntu            -> docker.io / library/ubuntu : latest
 *   localhost:5000/a/b@sha256:… -> localhost:5000 / a/b @ sha256:…
 *
 * The first path component is a host if it contains '.' or ':' or is "localhost" (or has
 * upper-case letters, which a repository may not), otherwise the reference is on Docker Hub.
 * `domain` keeps the name users and certs.d/ directories use ("docker.io"); `host` is where to
 * connect ("registry-1.docker.io" for Docker Hub, otherwise the domain itself).
 *
 * Pure, no allocation.  Errors are -EINVAL, with the reason in err (daemon/core/error.h;
 * NULL allowed).
 */
#ifndef STARGZD_NET_REFERENCE_H
#define STARGZD_NET_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/error.h"

#define SG_REF_NAME_MAX    255   /* domain + "/" + path, as in distribution */
#define SG_REF_TAG_MAX     128
#define SG_REF_DIGEST_MAX  (7 + 128)   /* "sha512:" + 128 hex */

#define SG_DOCKER_HUB_DOMAIN "docker.io"
#define SG_DOCKER_HUB_HOST   "registry-1.docker.io"

struct sg_ref {
	char domain[SG_REF_NAME_MAX + 1];   /* "docker.io", "ghcr.io", "localhost:5000" */
	char host[SG_REF_NAME_MAX + 1];     /* where to connect, with ":port" if given */
	char repo[SG_REF_NAME_MAX + 1];     /* "library/ubuntu" */
	char tag[SG_REF_TAG_MAX + 1];       /* "" when only a digest was given */
	char digest[SG_REF_DIGEST_MAX + 1]; /* "" or "sha256:<64 hex>" */
};

/* Parses and normalizes.  A reference with neither tag nor digest gets tag "latest".  With
 * both, the digest is authoritative and the tag is kept only for display. */
int sg_ref_parse(const char *s, struct sg_ref *ret, struct sg_error *err);

/* Validates a digest string "algo:hex": sha256 (64 hex) and sha512 (128 hex), lower-case.
 * Returns 0 or -EINVAL. */
int sg_ref_check_digest(const char *digest);

/* The familiar full form "domain/repo[:tag][@digest]".  Returns the length or -ENOSPC. */
int sg_ref_format(const struct sg_ref *ref, char *buf, size_t cap);

/* "/v2/<repo>/manifests/<tag-or-digest>" (digest preferred). Returns length or -ENOSPC. */
int sg_ref_manifest_path(const struct sg_ref *ref, char *buf, size_t cap);
/* "/v2/<repo>/blobs/<digest>".  Returns length, -EINVAL for a bad digest, or -ENOSPC. */
int sg_ref_blob_path(const struct sg_ref *ref, const char *digest, char *buf, size_t cap);

#endif
