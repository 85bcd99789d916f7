/* OCI 1.1 artifacts attached to an image, as pure JSON functions (no I/O): the artifact
 * manifest with a `subject`, the referrers index (the answer of GET /v2/<name>/referrers/
 * <digest>, or the fallback tag `sha256-<hex>` for registries without that API), and the
 * choice of the newest artifact of a type.
 *
 * Descriptors are what the OCI image spec calls them: media type, digest, size.  Errors are
 * negative errno values with a message (daemon/core/error.h): -EBADMSG (malformed), -EINVAL
 * (not what was asked for), -ENOENT (no such artifact), -E2BIG, -ENOMEM.  Nothing here
 * logs. */
#ifndef STARGZD_NET_REFERRERS_H
#define STARGZD_NET_REFERRERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"

#define SG_MT_OCI_EMPTY      "application/vnd.oci.empty.v1+json"
#define SG_OCI_EMPTY_DIGEST  "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#define SG_ANNOT_CREATED     "org.opencontainers.image.created"
#define SG_REFERRERS_INDEX_MAX (4u << 20)   /* the manifest bound */

struct sg_oci_desc {
	char media_type[256];
	char digest[7 + 128 + 1];
	uint64_t size;
};

/* *ret: the descriptor of these bytes (sha256). */
void sg_oci_desc_of(struct sg_oci_desc *ret, const char *media_type, const void *bytes,
		    size_t len);

/* Small content carried inside its own descriptor (OCI 1.1's `data`: the bytes in base64), so
 * that a reader needs no request for it: a pull of a profile artifact whose referrers tag
 * embeds the artifact manifest, which embeds the blob, is two round trips (the image
 * manifest, the tag) instead of four.  A writer embeds content of at most SG_OCI_DATA_MAX
 * bytes; a reader decodes no more, and trusts none of it: the bytes are used only when they
 * are the descriptor's size and digest, and are otherwise fetched by digest as if absent. */
#define SG_OCI_DATA_MAX (64u << 10)
struct sg_oci_data {
	uint8_t *bytes;     /* malloc'ed, desc->size bytes, verified; NULL: none to use */
	bool rejected;      /* a `data` was there but not the descriptor's content (or too large) */
};
void sg_oci_data_free(struct sg_oci_data *d);

/* The artifact manifest: an image manifest with artifactType, subject, the empty config and
 * one layer, blob, annotated with its creation time (RFC 3339, UTC; may be NULL).  With
 * blob_bytes (blob->size of them, at most SG_OCI_DATA_MAX) the layer's descriptor embeds
 * them.  *ret is malloc'ed. */
int sg_artifact_manifest_build(const char *artifact_type, const struct sg_oci_desc *subject,
			       const struct sg_oci_desc *blob, const void *blob_bytes,
			       const char *created, char **ret, size_t *ret_len);
/* Checks an artifact manifest fetched for subject: its artifactType (or config media type)
 * is artifact_type, its subject is subject_digest, and its one layer is of blob_type and at
 * most blob_max bytes.  Returns 0 with *ret_blob, and in *ret_data (when not NULL) the blob
 * as the manifest embeds it. */
int sg_artifact_manifest_check(const char *json, size_t len, const char *artifact_type,
			       const char *subject_digest, const char *blob_type, uint64_t blob_max,
			       struct sg_oci_desc *ret_blob, struct sg_oci_data *ret_data,
			       struct sg_error *err);

/* Picks, from a referrers index, the newest manifest of artifact_type: the greatest
 * org.opencontainers.image.created annotation, the later entry on a tie or when absent.
 * Returns 0 with *ret, and in *ret_data (when not NULL) the manifest as the index embeds it;
 * -ENOENT when there is none. */
int sg_referrers_pick(const char *json, size_t len, const char *artifact_type,
		      struct sg_oci_desc *ret, struct sg_oci_data *ret_data, struct sg_error *err);
/* The fallback tag's index with manifest added (an image index; the entries of old, an
 * existing index or NULL, kept, except one with the same digest), embedding manifest_bytes
 * when given (manifest->size of them, at most SG_OCI_DATA_MAX).  The older entries of
 * artifact_type lose what they embed: only the newest is read, and the index stays small
 * however often it is pushed to.  *ret is malloc'ed. */
int sg_referrers_index_add(const char *old, size_t old_len, const struct sg_oci_desc *manifest,
			   const void *manifest_bytes, const char *artifact_type,
			   const char *created, char **ret, size_t *ret_len, struct sg_error *err);
/* "sha256-<hex>": the fallback tag of a subject digest.  0 or -EINVAL. */
int sg_referrers_tag(const char *subject_digest, char *buf, size_t cap);

#endif
