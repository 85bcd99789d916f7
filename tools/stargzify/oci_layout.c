/* OCI image layout mode (oci_layout.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "daemon/core/digest.h"
#include "net/json.h"
#include "tools/stargzify/convert.h"
#include "tools/stargzify/input.h"
#include "tools/stargzify/oci_layout.h"
#include "tools/stargzify/sbuf.h"
#include "tools/stargzify/util.h"

#define MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

static int read_file(const char *path, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct sbuf b = { 0 };
	char tmp[65536];

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			sb_free(&b);
			return e;
		}
		if (n == 0)
			break;
		sb_put(&b, tmp, (size_t)n);
	}
	close(fd);
	sb_put(&b, "", 1);
	if (b.oom) {
		sb_free(&b);
		return -ENOMEM;
	}
	*ret = (char *)b.p;
	*ret_len = b.len - 1;
	return 0;
}

static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

struct oci {
	const struct sz_options *opt;
	const char *src, *dst;
	/* converted layers: source digest -> result (a layer shared by manifests converts once) */
	struct {
		char src[SG_DIGEST_STRLEN + 1];
		struct sz_result res;
	} *layers;
	size_t n_layers;
};

static int blob_path(char *out, size_t n, const char *dir, const char *digest)
{
	if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != SG_DIGEST_STRLEN ||
	    strspn(digest + 7, "0123456789abcdef") != 64)
		return -EINVAL;
	if ((size_t)snprintf(out, n, "%s/blobs/sha256/%s", dir, digest + 7) >= n)
		return -ENAMETOOLONG;
	return 0;
}

/* Writes data as a blob into DST; returns its digest. */
static int put_blob(struct oci *o, const void *data, size_t len, char digest[SG_DIGEST_STRLEN + 1])
{
	struct sg_digest d;
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	int fd, ret;

	sg_sha256(data, len, &d);
	sg_digest_format(&d, digest);
	blob_path(path, sizeof(path), o->dst, digest);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	ret = sz_write_all(fd, data, len);
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0)
		unlink(tmp);
	return ret;
}

/* Re-emits a parsed JSON value through yajl_gen. */
static void gen_value(yajl_gen g, yajl_val v)
{
	switch (v->type) {
	case yajl_t_string:
		yajl_gen_string(g, (const unsigned char *)v->u.string, strlen(v->u.string));
		break;
	case yajl_t_number:
		yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
		break;
	case yajl_t_object:
		yajl_gen_map_open(g);
		for (size_t i = 0; i < v->u.object.len; i++) {
			yajl_gen_string(g, (const unsigned char *)v->u.object.keys[i],
					strlen(v->u.object.keys[i]));
			gen_value(g, v->u.object.values[i]);
		}
		yajl_gen_map_close(g);
		break;
	case yajl_t_array:
		yajl_gen_array_open(g);
		for (size_t i = 0; i < v->u.array.len; i++)
			gen_value(g, v->u.array.values[i]);
		yajl_gen_array_close(g);
		break;
	case yajl_t_true:
		yajl_gen_bool(g, 1);
		break;
	case yajl_t_false:
		yajl_gen_bool(g, 0);
		break;
	default:
		yajl_gen_null(g);
		break;
	}
}

static void gen_str(yajl_gen g, const char *s)
{
	yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* The "annotations" object of src, if it has one, as a member of the object being generated. */
static void gen_annotations(yajl_gen g, yajl_val src)
{
	yajl_val ann = sg_json_member(src, "annotations");

	if (YAJL_IS_OBJECT(ann)) {
		gen_str(g, "annotations");
		gen_value(g, ann);
	}
}

static yajl_val load_json_blob(struct oci *o, const char *digest, const char *what)
{
	char path[PATH_MAX], err[256], *data = NULL;
	size_t len;
	yajl_val v;
	int ret = blob_path(path, sizeof(path), o->src, digest);

	if (ret < 0) {
		sz_errorf("%s: bad %s digest \"%s\"", o->src, what, digest);
		return NULL;
	}
	ret = read_file(path, &data, &len);
	if (ret < 0) {
		sz_errorf("%s: cannot read %s %s: %s", o->src, what, digest, strerror(-ret));
		return NULL;
	}
	struct sg_digest got;
	char gots[SG_DIGEST_STRLEN + 1];
	sg_sha256(data, len, &got);
	sg_digest_format(&got, gots);
	if (strcmp(gots, digest) != 0) {
		sz_errorf("%s: %s blob %s has digest %s", o->src, what, digest, gots);
		free(data);
		return NULL;
	}
	v = yajl_tree_parse(data, err, sizeof(err));
	free(data);
	if (!v)
		sz_errorf("%s: %s %s is not valid JSON: %s", o->src, what, digest, err);
	return v;
}

static int finish_gen(struct oci *o, yajl_gen g, char digest[SG_DIGEST_STRLEN + 1], size_t *size)
{
	const unsigned char *buf;
	size_t len;
	int ret;

	if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
		return -EINVAL;
	ret = put_blob(o, buf, len, digest);
	*size = len;
	return ret;
}

static int convert_layer(struct oci *o, const char *digest, const char *media_type, size_t *ret_idx)
{
	char src[PATH_MAX], dst[PATH_MAX], tmp[PATH_MAX];
	struct sz_input in;
	struct sz_result res;
	int fd, ret;

	for (size_t i = 0; i < o->n_layers; i++) {
		if (strcmp(o->layers[i].src, digest) == 0) {
			*ret_idx = i;
			return 0;
		}
	}
	if (strstr(media_type, "zstd")) {
		sz_errorf("layer %s: zstd layers (%s) are not supported", digest, media_type);
		return -ENOTSUP;
	}
	if (!strstr(media_type, "tar")) {
		sz_errorf("layer %s: unsupported media type %s", digest, media_type);
		return -ENOTSUP;
	}
	if (blob_path(src, sizeof(src), o->src, digest) < 0) {
		sz_errorf("bad layer digest \"%s\"", digest);
		return -EINVAL;
	}
	ret = sz_input_open(src, &in);
	if (ret < 0)
		return ret;
	snprintf(tmp, sizeof(tmp), "%s/blobs/sha256/layer.tmp.XXXXXX", o->dst);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		sz_errorf("cannot create %s: %s", tmp, strerror(errno));
		sz_input_done(&in);
		return ret;
	}
	fchmod(fd, 0644);
	if (!o->opt->json)
		fprintf(stderr, "%s: converting layer %s (%zu bytes uncompressed)\n", SZ_PROG, digest, in.len);
	ret = sz_convert(o->opt, &in, digest, fd, &res);
	sz_input_done(&in);
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0) {
		char d[SG_DIGEST_STRLEN + 1];
		sg_digest_format(&res.blob, d);
		blob_path(dst, sizeof(dst), o->dst, d);
		if (rename(tmp, dst) < 0)
			ret = -errno;
	}
	if (ret < 0) {
		unlink(tmp);
		return ret;
	}
	void *nl = realloc(o->layers, (o->n_layers + 1) * sizeof(*o->layers));
	if (!nl)
		return -ENOMEM;
	o->layers = nl;
	snprintf(o->layers[o->n_layers].src, sizeof(o->layers[0].src), "%s", digest);
	o->layers[o->n_layers].res = res;
	*ret_idx = o->n_layers++;
	return 0;
}

/* The new config: everything kept except rootfs.diff_ids, which become the diffIDs of the
 * converted layers.  Writes it as a blob; returns its digest and size. */
static int write_config(struct oci *o, const char *man_digest, yajl_val cfg, const size_t *idx,
			size_t n_layers, char cfg_digest[SG_DIGEST_STRLEN + 1], size_t *cfg_size)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	bool have_rootfs = false;
	int ret;

	if (!g)
		return -ENOMEM;
	yajl_gen_map_open(g);
	for (size_t i = 0; i < cfg->u.object.len; i++) {
		const char *k = cfg->u.object.keys[i];
		yajl_val v = cfg->u.object.values[i];
		gen_str(g, k);
		if (strcmp(k, "rootfs") != 0) {
			gen_value(g, v);
			continue;
		}
		have_rootfs = true;
		yajl_gen_map_open(g);
		gen_str(g, "type");
		gen_str(g, "layers");
		gen_str(g, "diff_ids");
		yajl_gen_array_open(g);
		for (size_t j = 0; j < n_layers; j++) {
			char d[SG_DIGEST_STRLEN + 1];
			sg_digest_format(&o->layers[idx[j]].res.diff_id, d);
			gen_str(g, d);
		}
		yajl_gen_array_close(g);
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
	if (!have_rootfs) {
		sz_errorf("config of manifest %s has no rootfs", man_digest);
		ret = -EINVAL;
	} else {
		ret = finish_gen(o, g, cfg_digest, cfg_size);
	}
	yajl_gen_free(g);
	return ret;
}

/* One layer descriptor of the new manifest: the eStargz blob, the source layer's
 * annotations and ours. */
static void gen_layer(yajl_gen g, yajl_val src_layer, const struct sz_result *r)
{
	yajl_val ann = sg_json_member(src_layer, "annotations");
	char d[SG_DIGEST_STRLEN + 1], num[32];

	yajl_gen_map_open(g);
	gen_str(g, "mediaType");
	gen_str(g, MT_OCI_LAYER_GZIP);
	gen_str(g, "digest");
	sg_digest_format(&r->blob, d);
	gen_str(g, d);
	gen_str(g, "size");
	yajl_gen_integer(g, (long long)r->blob_size);
	gen_str(g, "annotations");
	yajl_gen_map_open(g);
	if (YAJL_IS_OBJECT(ann)) {
		for (size_t k = 0; k < ann->u.object.len; k++) {
			const char *key = ann->u.object.keys[k];
			if (strcmp(key, SZ_ANN_TOC_DIGEST) == 0 || strcmp(key, SZ_ANN_UNCOMPRESSED_SIZE) == 0)
				continue;
			gen_str(g, key);
			gen_value(g, ann->u.object.values[k]);
		}
	}
	gen_str(g, SZ_ANN_TOC_DIGEST);
	sg_digest_format(&r->toc, d);
	gen_str(g, d);
	gen_str(g, SZ_ANN_UNCOMPRESSED_SIZE);
	snprintf(num, sizeof(num), "%" PRIu64, r->uncompressed_size);
	gen_str(g, num);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
}

/* The new manifest (OCI media type, the manifest's own annotations kept), written as a blob. */
static int write_manifest(struct oci *o, yajl_val man, yajl_val layers, const size_t *idx,
			  const char *cfg_digest, size_t cfg_size,
			  char new_digest[SG_DIGEST_STRLEN + 1], size_t *new_size)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	int ret;

	if (!g)
		return -ENOMEM;
	yajl_gen_map_open(g);
	gen_str(g, "schemaVersion");
	yajl_gen_integer(g, 2);
	gen_str(g, "mediaType");
	gen_str(g, MT_OCI_MANIFEST);
	gen_str(g, "config");
	yajl_gen_map_open(g);
	gen_str(g, "mediaType");
	gen_str(g, "application/vnd.oci.image.config.v1+json");
	gen_str(g, "digest");
	gen_str(g, cfg_digest);
	gen_str(g, "size");
	yajl_gen_integer(g, (long long)cfg_size);
	yajl_gen_map_close(g);
	gen_str(g, "layers");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < layers->u.array.len; i++)
		gen_layer(g, layers->u.array.values[i], &o->layers[idx[i]].res);
	yajl_gen_array_close(g);
	gen_annotations(g, man);
	yajl_gen_map_close(g);
	ret = finish_gen(o, g, new_digest, new_size);
	yajl_gen_free(g);
	return ret;
}

/* Converts one image manifest; writes the new config and manifest, returns the manifest's
 * digest and size. */
static int convert_manifest(struct oci *o, const char *digest,
			    char new_digest[SG_DIGEST_STRLEN + 1], size_t *new_size)
{
	yajl_val man = load_json_blob(o, digest, "manifest"), cfg = NULL;
	yajl_val layers, config;
	size_t *idx = NULL;   /* o->layers index of each layer (o->layers moves as it grows) */
	size_t n_layers = 0;
	char cfg_digest[SG_DIGEST_STRLEN + 1];
	size_t cfg_size;
	int ret = -EINVAL;

	if (!man)
		return -EINVAL;
	layers = sg_json_member(man, "layers");
	config = sg_json_member(man, "config");
	if (!YAJL_IS_ARRAY(layers) || !YAJL_IS_STRING(sg_json_member(config, "digest"))) {
		sz_errorf("manifest %s has no layers or config", digest);
		goto out;
	}
	n_layers = layers->u.array.len;
	idx = calloc(n_layers ? n_layers : 1, sizeof(*idx));
	if (!idx) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n_layers; i++) {
		yajl_val l = layers->u.array.values[i];
		const char *ld = sg_json_string(l, "digest");
		const char *mt = sg_json_string(l, "mediaType");
		if (!ld || !mt) {
			sz_errorf("manifest %s: layer %zu has no digest or mediaType", digest, i);
			goto out;
		}
		ret = convert_layer(o, ld, mt, &idx[i]);
		if (ret < 0)
			goto out;
	}
	cfg = load_json_blob(o, sg_json_string(config, "digest"), "config");
	if (!cfg || !YAJL_IS_OBJECT(cfg)) {
		ret = -EINVAL;
		goto out;
	}
	ret = write_config(o, digest, cfg, idx, n_layers, cfg_digest, &cfg_size);
	if (ret == 0)
		ret = write_manifest(o, man, layers, idx, cfg_digest, cfg_size, new_digest, new_size);
out:
	free(idx);
	yajl_tree_free(cfg);
	yajl_tree_free(man);
	return ret;
}

/* Converts the manifest of one index.json entry (number i) and adds its new descriptor
 * (the entry's other fields kept) to g. */
static int convert_index_entry(struct oci *o, yajl_gen g, yajl_val m, size_t i)
{
	const char *md = sg_json_string(m, "digest");
	const char *mt = sg_json_string(m, "mediaType");
	char nd[SG_DIGEST_STRLEN + 1];
	size_t nsize = 0;
	int ret;

	if (!md || !mt) {
		sz_errorf("%s/index.json: manifest %zu has no digest or mediaType", o->src, i);
		return -EINVAL;
	}
	if (strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0) {
		sz_errorf("%s: nested image indexes (multi-platform images) are not supported yet; "
		       "copy one platform with skopeo first", md);
		return -ENOTSUP;
	}
	if (strcmp(mt, MT_OCI_MANIFEST) != 0 && strcmp(mt, MT_DOCKER_MANIFEST) != 0) {
		sz_errorf("%s: unsupported manifest media type %s", md, mt);
		return -ENOTSUP;
	}
	ret = convert_manifest(o, md, nd, &nsize);
	if (ret < 0)
		return ret;
	yajl_gen_map_open(g);
	for (size_t k = 0; k < m->u.object.len; k++) {
		const char *key = m->u.object.keys[k];
		if (strcmp(key, "digest") == 0 || strcmp(key, "size") == 0 || strcmp(key, "mediaType") == 0)
			continue;
		gen_str(g, key);
		gen_value(g, m->u.object.values[k]);
	}
	gen_str(g, "mediaType");
	gen_str(g, MT_OCI_MANIFEST);
	gen_str(g, "digest");
	gen_str(g, nd);
	gen_str(g, "size");
	yajl_gen_integer(g, (long long)nsize);
	yajl_gen_map_close(g);
	if (o->opt->json)
		printf("{\"manifest\":\"%s\",\"converted\":\"%s\"}\n", md, nd);
	else
		printf("manifest %s -> %s\n", md, nd);
	return 0;
}

/* Writes a small file of the layout (index.json, oci-layout). */
static int write_layout_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || sz_write_all(fd, buf, len) < 0) {
		int ret = -errno;
		sz_errorf("cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	close(fd);
	return 0;
}

int sz_convert_oci(const struct sz_options *opt, const char *src, const char *dst)
{
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	struct oci o = { .opt = opt, .src = src, .dst = dst };
	char path[PATH_MAX], *data = NULL, err[256];
	const unsigned char *buf;
	size_t len;
	yajl_val index = NULL, manifests;
	yajl_gen g = NULL;
	int ret;

	snprintf(path, sizeof(path), "%s/index.json", src);
	ret = read_file(path, &data, &len);
	if (ret < 0) {
		sz_errorf("cannot read %s: %s", path, strerror(-ret));
		return ret;
	}
	index = yajl_tree_parse(data, err, sizeof(err));
	free(data);
	if (!index) {
		sz_errorf("%s: invalid JSON: %s", path, err);
		return -EINVAL;
	}
	manifests = sg_json_member(index, "manifests");
	if (!YAJL_IS_ARRAY(manifests)) {
		sz_errorf("%s: no manifests array", path);
		ret = -EINVAL;
		goto out;
	}
	snprintf(path, sizeof(path), "%s/blobs/sha256", dst);
	ret = mkdir_p(path);
	if (ret < 0) {
		sz_errorf("cannot create %s: %s", path, strerror(-ret));
		goto out;
	}
	g = yajl_gen_alloc(NULL);
	if (!g) {
		ret = -ENOMEM;
		goto out;
	}
	yajl_gen_map_open(g);
	gen_str(g, "schemaVersion");
	yajl_gen_integer(g, 2);
	gen_str(g, "manifests");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < manifests->u.array.len; i++) {
		ret = convert_index_entry(&o, g, manifests->u.array.values[i], i);
		if (ret < 0)
			goto out;
	}
	yajl_gen_array_close(g);
	gen_annotations(g, index);
	yajl_gen_map_close(g);
	yajl_gen_get_buf(g, &buf, &len);
	snprintf(path, sizeof(path), "%s/index.json", dst);
	ret = write_layout_file(path, buf, len);
	if (ret < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/oci-layout", dst);
	ret = write_layout_file(path, layout, sizeof(layout) - 1);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < o.n_layers; i++) {
		char b[SG_DIGEST_STRLEN + 1], t[SG_DIGEST_STRLEN + 1];
		sg_digest_format(&o.layers[i].res.blob, b);
		sg_digest_format(&o.layers[i].res.toc, t);
		if (opt->json)
			printf("{\"layer\":\"%s\",\"converted\":\"%s\",\"tocDigest\":\"%s\"}\n", o.layers[i].src, b, t);
		else
			printf("layer %s -> %s toc %s\n", o.layers[i].src, b, t);
	}
	ret = 0;
out:
	if (g)
		yajl_gen_free(g);
	yajl_tree_free(index);
	free(o.layers);
	return ret;
}
