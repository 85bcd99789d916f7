/* OCI artifacts and referrers indexes.  See referrers.h. */
#include "net/referrers.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "daemon/core/digest.h"
#include "net/auth.h"
#include "net/json.h"
#include "net/manifest.h"
#include "net/reference.h"

static void gen_str(yajl_gen g, const char *s)
{
	yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_kv(yajl_gen g, const char *k, const char *v)
{
	gen_str(g, k);
	gen_str(g, v);
}

/* "annotations":{"org.opencontainers.image.created":..} when created is given. */
static void gen_created(yajl_gen g, const char *created)
{
	if (!created)
		return;
	gen_str(g, "annotations");
	yajl_gen_map_open(g);
	gen_kv(g, SG_ANNOT_CREATED, created);
	yajl_gen_map_close(g);
}

/* "data":"<base64>" of d->size bytes, when there are bytes to embed.  Embedding only saves a
 * request, so without the memory for it the descriptor goes without. */
static void gen_data(yajl_gen g, const struct sg_oci_desc *d, const void *bytes)
{
	if (!bytes || d->size > SG_OCI_DATA_MAX)
		return;
	size_t cap = ((size_t)d->size + 2) / 3 * 4 + 1;
	char *b64 = malloc(cap);
	if (!b64)
		return;
	int n = sg_base64_encode(bytes, (size_t)d->size, b64, cap);
	if (n >= 0) {
		gen_str(g, "data");
		yajl_gen_string(g, (const unsigned char *)b64, (size_t)n);
	}
	free(b64);
}

/* {"mediaType":..,"digest":..,"size":..[,"data":..][,"artifactType":..]
 *  [,"annotations":{created}]} */
static void gen_desc(yajl_gen g, const struct sg_oci_desc *d, const void *data,
		     const char *artifact_type, const char *created)
{
	yajl_gen_map_open(g);
	gen_kv(g, "mediaType", d->media_type);
	gen_kv(g, "digest", d->digest);
	gen_str(g, "size");
	yajl_gen_integer(g, (long long)d->size);
	gen_data(g, d, data);
	if (artifact_type)
		gen_kv(g, "artifactType", artifact_type);
	gen_created(g, created);
	yajl_gen_map_close(g);
}

/* A JSON value again, as parsed (depth bounded by sg_json_parse), without the member named
 * `drop` when it is an object (NULL: all of it). */
static void gen_value(yajl_gen g, yajl_val v, const char *drop)
{
	if (YAJL_IS_STRING(v)) {
		gen_str(g, v->u.string);
	} else if (YAJL_IS_NUMBER(v)) {
		yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
	} else if (YAJL_IS_OBJECT(v)) {
		yajl_gen_map_open(g);
		for (size_t i = 0; i < v->u.object.len; i++) {
			if (drop && strcmp(v->u.object.keys[i], drop) == 0)
				continue;
			gen_str(g, v->u.object.keys[i]);
			gen_value(g, v->u.object.values[i], NULL);
		}
		yajl_gen_map_close(g);
	} else if (YAJL_IS_ARRAY(v)) {
		yajl_gen_array_open(g);
		for (size_t i = 0; i < v->u.array.len; i++)
			gen_value(g, v->u.array.values[i], NULL);
		yajl_gen_array_close(g);
	} else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
		yajl_gen_bool(g, YAJL_IS_TRUE(v));
	} else {
		yajl_gen_null(g);
	}
}

/* The generator's text, copied out; the generator freed. */
static int gen_take(yajl_gen g, char **ret, size_t *ret_len)
{
	const unsigned char *buf;
	size_t len;
	int r = -ENOMEM;

	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
		char *out = malloc(len + 1);
		if (out) {
			memcpy(out, buf, len);
			out[len] = '\0';
			*ret = out;
			if (ret_len)
				*ret_len = len;
			r = 0;
		}
	}
	yajl_gen_free(g);
	return r;
}

int sg_artifact_manifest_build(const char *artifact_type, const struct sg_oci_desc *subject,
			       const struct sg_oci_desc *blob, const void *blob_bytes,
			       const char *created, char **ret, size_t *ret_len)
{
	static const struct sg_oci_desc empty = { SG_MT_OCI_EMPTY, SG_OCI_EMPTY_DIGEST, 2 };
	yajl_gen g = yajl_gen_alloc(NULL);

	if (!g)
		return -ENOMEM;
	yajl_gen_map_open(g);
	gen_str(g, "schemaVersion");
	yajl_gen_integer(g, 2);
	gen_kv(g, "mediaType", SG_MT_OCI_MANIFEST);
	gen_kv(g, "artifactType", artifact_type);
	gen_str(g, "config");
	gen_desc(g, &empty, NULL, NULL, NULL);
	gen_str(g, "layers");
	yajl_gen_array_open(g);
	gen_desc(g, blob, blob_bytes, NULL, NULL);
	yajl_gen_array_close(g);
	gen_str(g, "subject");
	gen_desc(g, subject, NULL, NULL, NULL);
	gen_created(g, created);
	yajl_gen_map_close(g);
	return gen_take(g, ret, ret_len);
}

/* A descriptor's fields; -EBADMSG when one is missing or malformed. */
static int read_desc(yajl_val v, struct sg_oci_desc *ret)
{
	const char *mt = sg_json_string(v, "mediaType"), *dg = sg_json_string(v, "digest");
	yajl_val size = sg_json_member(v, "size");

	if (!mt || !dg || !YAJL_IS_INTEGER(size) || YAJL_GET_INTEGER(size) < 0 ||
	    sg_ref_check_digest(dg) < 0 || strlen(mt) >= sizeof(ret->media_type))
		return -EBADMSG;
	snprintf(ret->media_type, sizeof(ret->media_type), "%s", mt);
	snprintf(ret->digest, sizeof(ret->digest), "%s", dg);
	ret->size = (uint64_t)YAJL_GET_INTEGER(size);
	return 0;
}

void sg_oci_desc_of(struct sg_oci_desc *ret, const char *media_type, const void *bytes,
		    size_t len)
{
	struct sg_digest d;

	snprintf(ret->media_type, sizeof(ret->media_type), "%s", media_type);
	sg_sha256(bytes, len, &d);
	sg_digest_format(&d, ret->digest);
	ret->size = len;
}

void sg_oci_data_free(struct sg_oci_data *d)
{
	free(d->bytes);
	*d = (struct sg_oci_data){ 0 };
}

/* What v, the descriptor d, embeds: kept when it decodes to d's size and digest. */
static void read_data(yajl_val v, const struct sg_oci_desc *d, struct sg_oci_data *ret)
{
	yajl_val data = sg_json_member(v, "data");
	struct sg_oci_desc got;
	uint8_t *buf;

	*ret = (struct sg_oci_data){ 0 };
	if (!data)
		return;
	ret->rejected = true;
	if (!YAJL_IS_STRING(data) || d->size > SG_OCI_DATA_MAX)
		return;
	buf = malloc(d->size ? (size_t)d->size : 1);
	if (!buf) {
		ret->rejected = false;   /* not its fault: fetched as if absent */
		return;
	}
	int n = sg_base64_decode(data->u.string, strlen(data->u.string), buf, (size_t)d->size);
	if (n >= 0 && (uint64_t)n == d->size) {
		sg_oci_desc_of(&got, d->media_type, buf, (size_t)n);
		if (strcmp(got.digest, d->digest) == 0) {
			ret->bytes = buf;
			ret->rejected = false;
			return;
		}
	}
	free(buf);
}

int sg_artifact_manifest_check(const char *json, size_t len, const char *artifact_type,
			       const char *subject_digest, const char *blob_type, uint64_t blob_max,
			       struct sg_oci_desc *ret_blob, struct sg_oci_data *ret_data,
			       struct sg_error *err)
{
	struct sg_oci_desc subject, blob, config;
	yajl_val root = NULL, layers;
	const char *at;
	int r;

	r = sg_json_parse(json, len, SG_MANIFEST_MAX, &root, err);
	if (r < 0)
		return r;
	at = sg_json_string(root, "artifactType");
	if (!at && read_desc(sg_json_member(root, "config"), &config) == 0)
		at = config.media_type;     /* the artifactType of OCI 1.1's first drafts */
	if (!at || strcmp(at, artifact_type) != 0) {
		r = sg_error_set(err, -EINVAL, "artifact type %.100s, not %s", at ? at : "(none)",
				 artifact_type);
		goto out;
	}
	if (read_desc(sg_json_member(root, "subject"), &subject) < 0 ||
	    strcmp(subject.digest, subject_digest) != 0) {
		r = sg_error_set(err, -EINVAL, "the artifact's subject is not %s", subject_digest);
		goto out;
	}
	layers = sg_json_member(root, "layers");
	if (!YAJL_IS_ARRAY(layers) || layers->u.array.len != 1 ||
	    read_desc(layers->u.array.values[0], &blob) < 0) {
		r = sg_error_set(err, -EBADMSG, "the artifact does not have exactly one blob");
		goto out;
	}
	if (strcmp(blob.media_type, blob_type) != 0) {
		r = sg_error_set(err, -EINVAL, "the artifact's blob is %.100s, not %s",
				 blob.media_type, blob_type);
		goto out;
	}
	if (blob.size > blob_max) {
		r = sg_error_set(err, -E2BIG, "the artifact's blob of %llu bytes is larger than %llu",
				 (unsigned long long)blob.size, (unsigned long long)blob_max);
		goto out;
	}
	*ret_blob = blob;
	if (ret_data)
		read_data(layers->u.array.values[0], &blob, ret_data);
	r = 0;
out:
	yajl_tree_free(root);
	return r;
}

int sg_referrers_pick(const char *json, size_t len, const char *artifact_type,
		      struct sg_oci_desc *ret, struct sg_oci_data *ret_data, struct sg_error *err)
{
	yajl_val root = NULL, ms, best = NULL;
	const char *best_created = NULL;
	bool found = false;
	int r;

	r = sg_json_parse(json, len, SG_REFERRERS_INDEX_MAX, &root, err);
	if (r < 0)
		return r;
	ms = sg_json_member(root, "manifests");
	if (!YAJL_IS_ARRAY(ms)) {
		yajl_tree_free(root);
		return sg_error_set(err, -EBADMSG, "the referrers index has no manifests");
	}
	for (size_t i = 0; i < ms->u.array.len; i++) {
		yajl_val m = ms->u.array.values[i];
		const char *at = sg_json_string(m, "artifactType");
		const char *created = sg_json_string(sg_json_member(m, "annotations"),
						     SG_ANNOT_CREATED);
		struct sg_oci_desc d;

		if (!at || strcmp(at, artifact_type) != 0 || read_desc(m, &d) < 0)
			continue;
		/* RFC 3339 in UTC ("...Z", as we write it) compares as text. */
		if (found && best_created && (!created || strcmp(created, best_created) < 0))
			continue;
		*ret = d;
		best = m;
		best_created = created;
		found = true;
	}
	if (found && ret_data)
		read_data(best, ret, ret_data);
	yajl_tree_free(root);
	if (!found)
		return sg_error_set(err, -ENOENT, "no artifact of type %s", artifact_type);
	return 0;
}

int sg_referrers_index_add(const char *old, size_t old_len, const struct sg_oci_desc *manifest,
			   const void *manifest_bytes, const char *artifact_type,
			   const char *created, char **ret, size_t *ret_len, struct sg_error *err)
{
	yajl_val root = NULL, ms = NULL;
	yajl_gen g;
	int r;

	if (old) {
		r = sg_json_parse(old, old_len, SG_REFERRERS_INDEX_MAX, &root, err);
		if (r < 0)
			return r;
		ms = sg_json_member(root, "manifests");
		if (!YAJL_IS_ARRAY(ms)) {
			yajl_tree_free(root);
			return sg_error_set(err, -EBADMSG, "the referrers tag is not an index");
		}
	}
	g = yajl_gen_alloc(NULL);
	if (!g) {
		yajl_tree_free(root);
		return sg_error_set(err, -ENOMEM, "out of memory");
	}
	yajl_gen_map_open(g);
	gen_str(g, "schemaVersion");
	yajl_gen_integer(g, 2);
	gen_kv(g, "mediaType", SG_MT_OCI_INDEX);
	gen_str(g, "manifests");
	yajl_gen_array_open(g);
	for (size_t i = 0; ms && i < ms->u.array.len; i++) {
		yajl_val m = ms->u.array.values[i];
		const char *dg = sg_json_string(m, "digest"), *at = sg_json_string(m, "artifactType");
		if (dg && strcmp(dg, manifest->digest) == 0)
			continue;
		/* Another tool's entries stay as they are. */
		gen_value(g, m, at && strcmp(at, artifact_type) == 0 ? "data" : NULL);
	}
	gen_desc(g, manifest, manifest_bytes, artifact_type, created);
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	yajl_tree_free(root);
	r = gen_take(g, ret, ret_len);
	if (r < 0)
		return sg_error_set(err, r, "out of memory");
	return 0;
}

int sg_referrers_tag(const char *subject_digest, char *buf, size_t cap)
{
	const char *colon = strchr(subject_digest, ':');

	if (!colon || sg_ref_check_digest(subject_digest) < 0 ||
	    (size_t)snprintf(buf, cap, "%.*s-%s", (int)(colon - subject_digest), subject_digest,
			     colon + 1) >= cap)
		return -EINVAL;
	return 0;
}
