/* Manifest and index parsing, platform selection.  See manifest.h. */
#include "net/manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/http1.h"
#include "net/json.h"
#include "net/reference.h"

/* ---- freeing ---- */

static void annotations_free(struct sg_annotation *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].key);
		free(a[i].value);
	}
	free(a);
}

static void descriptor_done(struct sg_descriptor *d)
{
	free(d->media_type);
	annotations_free(d->annotations, d->nannotations);
	for (size_t i = 0; i < d->nurls; i++)
		free(d->urls[i]);
	free(d->urls);
	*d = (struct sg_descriptor){ 0 };
}

void sg_manifest_free(struct sg_manifest *m)
{
	if (!m)
		return;
	descriptor_done(&m->config);
	for (size_t i = 0; i < m->nlayers; i++)
		descriptor_done(&m->layers[i]);
	free(m->layers);
	for (size_t i = 0; i < m->nmanifests; i++)
		descriptor_done(&m->manifests[i]);
	free(m->manifests);
	annotations_free(m->annotations, m->nannotations);
	free(m);
}

/* ---- helpers ---- */

struct ctx {
	const char *err;
	int rc;
};

static int fail(struct ctx *c, int rc, const char *why)
{
	if (!c->rc) {
		c->rc = rc;
		c->err = why;
	}
	return rc;
}

static char *bounded_dup(struct ctx *c, const char *s)
{
	if (strlen(s) > SG_MANIFEST_STRING_MAX) {
		fail(c, -E2BIG, "string too long");
		return NULL;
	}
	char *d = strdup(s);
	if (!d)
		fail(c, -ENOMEM, "out of memory");
	return d;
}

static int parse_annotations(struct ctx *c, yajl_val v, struct sg_annotation **ret, size_t *retn)
{
	if (!v)
		return 0;
	if (!YAJL_IS_OBJECT(v))
		return fail(c, -EBADMSG, "\"annotations\" is not an object");
	if (v->u.object.len > SG_MANIFEST_ANNOTATIONS_MAX)
		return fail(c, -E2BIG, "too many annotations");
	if (v->u.object.len == 0)
		return 0;
	*ret = calloc(v->u.object.len, sizeof(**ret));
	if (!*ret)
		return fail(c, -ENOMEM, "out of memory");
	for (size_t i = 0; i < v->u.object.len; i++) {
		yajl_val val = v->u.object.values[i];
		if (!YAJL_IS_STRING(val))
			return fail(c, -EBADMSG, "annotation value is not a string");
		struct sg_annotation *a = &(*ret)[*retn];
		(*retn)++;
		a->key = bounded_dup(c, v->u.object.keys[i]);
		a->value = bounded_dup(c, val->u.string);
		if (!a->key || !a->value)
			return c->rc;
	}
	return 0;
}

const char *sg_descriptor_annotation(const struct sg_descriptor *d, const char *key)
{
	for (size_t i = 0; i < d->nannotations; i++)
		if (strcmp(d->annotations[i].key, key) == 0)
			return d->annotations[i].value;
	return NULL;
}

static void copy_field(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s);
}

static int parse_descriptor(struct ctx *c, yajl_val v, struct sg_descriptor *d, bool in_index)
{
	const char *mt, *dg;
	yajl_val sz, x;
	int r;

	if (!YAJL_IS_OBJECT(v))
		return fail(c, -EBADMSG, "descriptor is not an object");
	mt = sg_json_string(v, "mediaType");
	if (!mt || !*mt)
		return fail(c, -EBADMSG, "descriptor without mediaType");
	d->media_type = bounded_dup(c, mt);
	if (!d->media_type)
		return c->rc;
	dg = sg_json_string(v, "digest");
	if (!dg || sg_ref_check_digest(dg) < 0)
		return fail(c, -EBADMSG, "descriptor with a missing or invalid digest");
	copy_field(d->digest, sizeof(d->digest), dg);
	sz = sg_json_member(v, "size");
	if (!YAJL_IS_INTEGER(sz) || YAJL_GET_INTEGER(sz) < 0)
		return fail(c, -EBADMSG, "descriptor with a missing or negative size");
	d->size = (uint64_t)YAJL_GET_INTEGER(sz);

	r = parse_annotations(c, sg_json_member(v, "annotations"), &d->annotations, &d->nannotations);
	if (r < 0)
		return r;
	const char *toc = sg_descriptor_annotation(d, SG_ANNOT_TOC_DIGEST);
	if (toc) {
		/* A malformed TOC digest would fail verification later anyway; refuse it here
		 * where the error can say what is wrong. */
		if (sg_ref_check_digest(toc) < 0)
			return fail(c, -EBADMSG, "invalid " SG_ANNOT_TOC_DIGEST " annotation");
		d->toc_digest = toc;
	}
	const char *us = sg_descriptor_annotation(d, SG_ANNOT_UNCOMPRESSED_SIZE);
	if (us && sg_http1_parse_u64(us, strlen(us), &d->uncompressed_size) == 0)
		d->has_uncompressed_size = true;

	x = sg_json_member(v, "urls");
	if (x) {
		if (!YAJL_IS_ARRAY(x))
			return fail(c, -EBADMSG, "\"urls\" is not an array");
		if (x->u.array.len > 16)
			return fail(c, -E2BIG, "too many urls");
		if (x->u.array.len) {
			d->urls = calloc(x->u.array.len, sizeof(char *));
			if (!d->urls)
				return fail(c, -ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < x->u.array.len; i++) {
			yajl_val u = x->u.array.values[i];
			if (!YAJL_IS_STRING(u))
				return fail(c, -EBADMSG, "url is not a string");
			d->urls[d->nurls] = bounded_dup(c, u->u.string);
			if (!d->urls[d->nurls])
				return c->rc;
			d->nurls++;
		}
	}

	x = sg_json_member(v, "platform");
	if (x && in_index) {
		const char *os = sg_json_string(x, "os"), *arch = sg_json_string(x, "architecture");
		const char *variant = sg_json_string(x, "variant");
		if (!YAJL_IS_OBJECT(x) || !os || !arch)
			return fail(c, -EBADMSG, "platform without os or architecture");
		if (strlen(os) >= sizeof(d->platform.os) || strlen(arch) >= sizeof(d->platform.arch) ||
		    (variant && strlen(variant) >= sizeof(d->platform.variant)))
			return fail(c, -EBADMSG, "platform field too long");
		copy_field(d->platform.os, sizeof(d->platform.os), os);
		copy_field(d->platform.arch, sizeof(d->platform.arch), arch);
		copy_field(d->platform.variant, sizeof(d->platform.variant), variant ? variant : "");
		d->has_platform = true;
	}
	return 0;
}

static int parse_descriptor_array(struct ctx *c, yajl_val v, const char *what,
				  struct sg_descriptor **ret, size_t *retn, bool in_index)
{
	if (!YAJL_IS_ARRAY(v))
		return fail(c, -EBADMSG, what);
	if (v->u.array.len > SG_MANIFEST_ENTRIES_MAX)
		return fail(c, -E2BIG, "too many entries");
	if (v->u.array.len == 0)
		return 0;
	*ret = calloc(v->u.array.len, sizeof(**ret));
	if (!*ret)
		return fail(c, -ENOMEM, "out of memory");
	for (size_t i = 0; i < v->u.array.len; i++) {
		(*retn)++;
		int r = parse_descriptor(c, v->u.array.values[i], &(*ret)[i], in_index);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The media type of a Content-Type value: parameters and blanks stripped. */
static void content_media_type(const char *ct, char *buf, size_t cap)
{
	size_t s = 0, e;

	buf[0] = '\0';
	if (!ct)
		return;
	while (ct[s] == ' ' || ct[s] == '\t')
		s++;
	e = s;
	while (ct[e] && ct[e] != ';')
		e++;
	while (e > s && (ct[e - 1] == ' ' || ct[e - 1] == '\t'))
		e--;
	if (e - s < cap) {
		memcpy(buf, ct + s, e - s);
		buf[e - s] = '\0';
		for (size_t i = 0; buf[i]; i++)
			if (buf[i] >= 'A' && buf[i] <= 'Z')
				buf[i] = (char)(buf[i] + 32);
	}
}

static const char *known_type(const char *mt)
{
	static const char *const types[] = { SG_MT_OCI_INDEX, SG_MT_OCI_MANIFEST, SG_MT_DOCKER_LIST,
					     SG_MT_DOCKER_MANIFEST };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(mt, types[i]) == 0)
			return types[i];
	return NULL;
}

static bool is_unsupported_type(const char *mt)
{
	return strncmp(mt, "application/vnd.docker.distribution.manifest.v1", 47) == 0 ||
	       strcmp(mt, "application/vnd.oci.artifact.manifest.v1+json") == 0;
}

int sg_manifest_parse(const char *json, size_t len, const char *content_type,
		      struct sg_manifest **ret, struct sg_error *err)
{
	struct ctx c = { 0 };
	struct sg_error jerr = { 0 };
	struct sg_manifest *m = NULL;
	yajl_val root = NULL, v;
	char ct[128];
	const char *doc_mt, *ct_known, *doc_known, *eff;
	int r;

	*ret = NULL;
	r = sg_json_parse(json, len, SG_MANIFEST_MAX, &root, &jerr);
	if (r < 0) {
		c.rc = r;
		c.err = jerr.msg[0] ? jerr.msg : NULL;
		goto out;
	}
	if (!YAJL_IS_OBJECT(root)) {
		fail(&c, -EBADMSG, "manifest is not a JSON object");
		goto out;
	}
	v = sg_json_member(root, "schemaVersion");
	if (YAJL_IS_INTEGER(v) && YAJL_GET_INTEGER(v) == 1) {
		fail(&c, -ENOTSUP, "Docker schema 1 manifests are not supported");
		goto out;
	}
	if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) != 2) {
		fail(&c, -EBADMSG, "schemaVersion is not 2");
		goto out;
	}

	content_media_type(content_type, ct, sizeof(ct));
	v = sg_json_member(root, "mediaType");
	if (v && !YAJL_IS_STRING(v)) {
		fail(&c, -EBADMSG, "mediaType is not a string");
		goto out;
	}
	doc_mt = v ? v->u.string : "";
	if (is_unsupported_type(doc_mt) || is_unsupported_type(ct)) {
		fail(&c, -ENOTSUP, "unsupported manifest media type");
		goto out;
	}
	ct_known = known_type(ct);
	doc_known = known_type(doc_mt);
	if (*doc_mt && !doc_known) {
		fail(&c, -ENOTSUP, "unknown manifest mediaType");
		goto out;
	}
	/* A generic or empty Content-Type (application/json, text/plain, "") says nothing;
	 * a specific one must agree with the document. */
	if (ct_known && doc_known && ct_known != doc_known) {
		fail(&c, -EBADMSG, "Content-Type and mediaType disagree");
		goto out;
	}
	eff = doc_known ? doc_known : ct_known;
	if (!eff) {
		/* Neither says: OCI allows omitting mediaType; the shape decides. */
		if (sg_json_member(root, "manifests"))
			eff = SG_MT_OCI_INDEX;
		else if (sg_json_member(root, "config") || sg_json_member(root, "layers"))
			eff = SG_MT_OCI_MANIFEST;
		else {
			fail(&c, -EBADMSG, "neither a manifest nor an index");
			goto out;
		}
	}

	m = calloc(1, sizeof(*m));
	if (!m) {
		fail(&c, -ENOMEM, "out of memory");
		goto out;
	}
	m->media_type = eff;
	m->docker = strcmp(eff, SG_MT_DOCKER_MANIFEST) == 0 || strcmp(eff, SG_MT_DOCKER_LIST) == 0;
	m->kind = (strcmp(eff, SG_MT_OCI_INDEX) == 0 || strcmp(eff, SG_MT_DOCKER_LIST) == 0) ?
			  SG_MANIFEST_INDEX :
			  SG_MANIFEST_IMAGE;
	if (parse_annotations(&c, sg_json_member(root, "annotations"), &m->annotations,
			      &m->nannotations) < 0)
		goto out;

	if (m->kind == SG_MANIFEST_INDEX) {
		if (sg_json_member(root, "layers")) {
			fail(&c, -EBADMSG, "an index with layers");
			goto out;
		}
		if (parse_descriptor_array(&c, sg_json_member(root, "manifests"),
					   "\"manifests\" missing or not an array", &m->manifests,
					   &m->nmanifests, true) < 0)
			goto out;
	} else {
		if (sg_json_member(root, "manifests")) {
			fail(&c, -EBADMSG, "a manifest with \"manifests\"");
			goto out;
		}
		if (parse_descriptor(&c, sg_json_member(root, "config"), &m->config, false) < 0) {
			if (c.rc == -EBADMSG && !sg_json_member(root, "config"))
				c.err = "manifest without config";
			goto out;
		}
		if (parse_descriptor_array(&c, sg_json_member(root, "layers"),
					   "\"layers\" missing or not an array", &m->layers,
					   &m->nlayers, false) < 0)
			goto out;
		/* Docker's v2 schema 2 requires its own config type; OCI allows artifacts with
		 * other config types, which carry no image to run. */
		if (m->docker && strcmp(m->config.media_type, SG_MT_DOCKER_CONFIG) != 0) {
			fail(&c, -EBADMSG, "Docker manifest with a non-Docker config type");
			goto out;
		}
		if (!m->docker && strcmp(m->config.media_type, SG_MT_OCI_CONFIG) != 0 &&
		    strcmp(m->config.media_type, SG_MT_DOCKER_CONFIG) != 0) {
			fail(&c, -ENOTSUP, "not a container image (artifact config type)");
			goto out;
		}
	}
	*ret = m;
	m = NULL;
out:
	yajl_tree_free(root);
	sg_manifest_free(m);
	if (c.rc)
		sg_error_set(err, c.rc, "%s", c.err ? c.err : "invalid manifest");
	return c.rc;
}

/* ---- platforms ---- */

static void normalize(struct sg_platform *p)
{
	for (char *s = p->os; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + 32);
	if (!strcmp(p->arch, "x86_64") || !strcmp(p->arch, "x86-64"))
		copy_field(p->arch, sizeof(p->arch), "amd64");
	else if (!strcmp(p->arch, "aarch64"))
		copy_field(p->arch, sizeof(p->arch), "arm64");
	else if (!strcmp(p->arch, "i386") || !strcmp(p->arch, "i686"))
		copy_field(p->arch, sizeof(p->arch), "386");
	else if (!strcmp(p->arch, "armhf")) {
		copy_field(p->arch, sizeof(p->arch), "arm");
		copy_field(p->variant, sizeof(p->variant), "v7");
	} else if (!strcmp(p->arch, "armel")) {
		copy_field(p->arch, sizeof(p->arch), "arm");
		copy_field(p->variant, sizeof(p->variant), "v6");
	}
	/* "8" -> "v8"; then the default variant of each architecture, so that "" and the
	 * default compare equal. */
	if (p->variant[0] >= '0' && p->variant[0] <= '9' && strlen(p->variant) + 1 < sizeof(p->variant)) {
		memmove(p->variant + 1, p->variant, strlen(p->variant) + 1);
		p->variant[0] = 'v';
	}
	if (!p->variant[0]) {
		if (!strcmp(p->arch, "arm64"))
			copy_field(p->variant, sizeof(p->variant), "v8");
		else if (!strcmp(p->arch, "arm"))
			copy_field(p->variant, sizeof(p->variant), "v7");
		else if (!strcmp(p->arch, "amd64"))
			copy_field(p->variant, sizeof(p->variant), "v1");
	}
}

int sg_platform_parse(const char *s, struct sg_platform *ret)
{
	struct sg_platform p = { 0 };
	const char *a, *b;

	if (!s)
		return -EINVAL;
	a = strchr(s, '/');
	if (!a || a == s)
		return -EINVAL;
	b = strchr(a + 1, '/');
	size_t ol = (size_t)(a - s), al = b ? (size_t)(b - a - 1) : strlen(a + 1);
	size_t vl = b ? strlen(b + 1) : 0;
	if (ol >= sizeof(p.os) || al == 0 || al >= sizeof(p.arch) || vl >= sizeof(p.variant) ||
	    (b && vl == 0) || (b && strchr(b + 1, '/')))
		return -EINVAL;
	memcpy(p.os, s, ol);
	memcpy(p.arch, a + 1, al);
	if (b)
		memcpy(p.variant, b + 1, vl);
	for (const char *q = s; *q; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
		      *q == '/' || *q == '_' || *q == '-' || *q == '.'))
			return -EINVAL;
	*ret = p;
	return 0;
}

/* "vN" -> N, else -1. */
static int variant_level(const char *v)
{
	int n = 0;

	if (v[0] != 'v' || !v[1])
		return -1;
	for (const char *q = v + 1; *q; q++) {
		if (*q < '0' || *q > '9' || n > 1000)
			return -1;
		n = n * 10 + (*q - '0');
	}
	return n;
}

/* 0: no match; higher is better. */
static int platform_score(const struct sg_platform *want, const struct sg_platform *have_raw)
{
	struct sg_platform have = *have_raw;

	normalize(&have);
	if (strcmp(want->os, have.os) != 0 || strcmp(want->arch, have.arch) != 0)
		return 0;
	if (strcmp(want->variant, have.variant) == 0)
		return 10000;
	int w = variant_level(want->variant), h = variant_level(have.variant);
	/* A CPU of level w runs code built for any lower level of the same architecture. */
	if (w >= 0 && h >= 0 && h < w)
		return 1000 + h;
	return 0;
}

int sg_manifest_select(const struct sg_manifest *m, const struct sg_platform *want_in,
		       struct sg_error *err)
{
	struct sg_platform want;
	int best = -1, best_score = 0, fallback = -1;

	if (m->kind != SG_MANIFEST_INDEX)
		return sg_error_set(err, -EINVAL, "not an index");
	if (want_in)
		want = *want_in;
	else
		want = (struct sg_platform){ .os = "linux", .arch = "amd64" };
	normalize(&want);
	for (size_t i = 0; i < m->nmanifests; i++) {
		const struct sg_descriptor *d = &m->manifests[i];
		if (!d->has_platform) {
			if (fallback < 0)
				fallback = (int)i;
			continue;
		}
		int s = platform_score(&want, &d->platform);
		if (s > best_score) {
			best_score = s;
			best = (int)i;
		}
	}
	if (best < 0)
		best = fallback;
	if (best < 0)
		return sg_error_set(err, -ENOENT, "no manifest for the requested platform");
	return best;
}

enum sg_layer_compression sg_layer_compression(const char *mt)
{
	static const struct {
		const char *type;
		enum sg_layer_compression c;
	} map[] = {
		{ "application/vnd.oci.image.layer.v1.tar", SG_LAYER_TAR },
		{ "application/vnd.oci.image.layer.v1.tar+gzip", SG_LAYER_GZIP },
		{ "application/vnd.oci.image.layer.v1.tar+zstd", SG_LAYER_ZSTD },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar", SG_LAYER_TAR },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", SG_LAYER_GZIP },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", SG_LAYER_ZSTD },
		{ "application/vnd.docker.image.rootfs.diff.tar.gzip", SG_LAYER_GZIP },
		{ "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", SG_LAYER_GZIP },
		{ "application/vnd.docker.image.rootfs.diff.tar", SG_LAYER_TAR },
	};
	if (!mt)
		return SG_LAYER_UNKNOWN;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(mt, map[i].type) == 0)
			return map[i].c;
	return SG_LAYER_UNKNOWN;
}
