/* Image manifests and indexes: OCI (application/vnd.oci.image.*) and Docker v2 schema 2
 * (application/vnd.docker.distribution.manifest.*), with platform selection.
 *
 * The parser is pure: the caller fetched the bytes (and verified their digest when the
 * reference named one).  Media type comes from the document's "mediaType" and the response's
 * Content-Type; either may be missing (OCI makes mediaType optional, and some registries send
 * an empty or generic Content-Type), in which case the shape decides.  Docker schema 1 and OCI
 * artifact manifests are refused with -ENOTSUP.
 *
 * Errors: -EBADMSG (malformed), -ENOTSUP, -E2BIG (over a bound), -ENOMEM; err (may be NULL)
 * says why (daemon/core/error.h).
 */
#ifndef STARGZD_NET_MANIFEST_H
#define STARGZD_NET_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"

#define SG_MT_OCI_INDEX     "application/vnd.oci.image.index.v1+json"
#define SG_MT_OCI_MANIFEST  "application/vnd.oci.image.manifest.v1+json"
#define SG_MT_OCI_CONFIG    "application/vnd.oci.image.config.v1+json"
#define SG_MT_DOCKER_LIST   "application/vnd.docker.distribution.manifest.list.v2+json"
#define SG_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define SG_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

/* The Accept header value for manifest requests: every type we can parse, indexes first. */
#define SG_MANIFEST_ACCEPT \
	SG_MT_OCI_INDEX ", " SG_MT_DOCKER_LIST ", " SG_MT_OCI_MANIFEST ", " SG_MT_DOCKER_MANIFEST

/* The annotation eStargz puts on each layer descriptor (and containerd forwards as a label). */
#define SG_ANNOT_TOC_DIGEST "containerd.io/snapshot/stargz/toc.digest"
#define SG_ANNOT_UNCOMPRESSED_SIZE "io.containers.estargz.uncompressed-size"

#define SG_MANIFEST_MAX        (4 << 20)   /* distribution's limit for manifests */
#define SG_MANIFEST_ENTRIES_MAX 1024       /* layers, or manifests in an index */
#define SG_MANIFEST_ANNOTATIONS_MAX 64     /* per descriptor */
#define SG_MANIFEST_STRING_MAX 4096

enum sg_manifest_kind {
	SG_MANIFEST_IMAGE,
	SG_MANIFEST_INDEX,
};

enum sg_layer_compression {
	SG_LAYER_UNKNOWN,
	SG_LAYER_TAR,
	SG_LAYER_GZIP,
	SG_LAYER_ZSTD,
};

struct sg_platform {
	char os[32];
	char arch[32];
	char variant[16];
};

struct sg_annotation {
	char *key;
	char *value;
};

struct sg_descriptor {
	char *media_type;
	char digest[7 + 128 + 1];
	uint64_t size;
	struct sg_annotation *annotations;
	size_t nannotations;
	char **urls;
	size_t nurls;
	const char *toc_digest;       /* the eStargz TOC digest annotation (validated), or NULL */
	uint64_t uncompressed_size;   /* from the annotation; valid if has_uncompressed_size */
	bool has_uncompressed_size;
	bool has_platform;            /* index entries */
	struct sg_platform platform;
};

struct sg_manifest {
	enum sg_manifest_kind kind;
	const char *media_type;       /* effective type: one of the SG_MT_* constants */
	bool docker;                  /* Docker v2 family rather than OCI */
	struct sg_descriptor config;  /* images */
	struct sg_descriptor *layers; /* images */
	size_t nlayers;
	struct sg_descriptor *manifests; /* indexes */
	size_t nmanifests;
	struct sg_annotation *annotations;
	size_t nannotations;
};

/* content_type: the response's Content-Type (may be NULL or empty; parameters are ignored). */
int sg_manifest_parse(const char *json, size_t len, const char *content_type,
		      struct sg_manifest **ret, struct sg_error *err);
void sg_manifest_free(struct sg_manifest *m);

/* "linux/amd64", "linux/arm64/v8", "linux/arm/v7".  Architecture aliases (x86_64, aarch64,
 * armhf, i386) are normalized.  0 or -EINVAL. */
int sg_platform_parse(const char *s, struct sg_platform *ret);
/* Picks the best manifest of an index for `want` (NULL = linux/amd64): same OS and
 * architecture, then the highest compatible variant (arm/v7 runs v7, v6, v5; amd64/v3 runs
 * v3, v2, v1), then index order.  Entries without a platform are a last resort.  Returns the
 * entry's position, -ENOENT or -EINVAL if m is not an index (err says which). */
int sg_manifest_select(const struct sg_manifest *m, const struct sg_platform *want,
		       struct sg_error *err);

enum sg_layer_compression sg_layer_compression(const char *media_type);
/* Annotation lookup on a descriptor; NULL if absent. */
const char *sg_descriptor_annotation(const struct sg_descriptor *d, const char *key);

#endif
