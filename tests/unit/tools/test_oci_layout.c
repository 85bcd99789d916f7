/* OCI image layout mode (tools/stargzify/oci_layout.c): an image layout of two manifests that
 * share a layer, converted; the new config, manifests and index checked with yajl. */
#include "tools/stargzify/oci_layout.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <yajl/yajl_tree.h>

#include "daemon/core/digest.h"
#include "daemon/process.h"
#include "tests/helpers/esgz_build.h"
#include "tests/helpers/tmpdir.h"
#include "tools/stargzify/convert.h"

static const char *dir;

static void write_path(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Stores data as a blob of SRC; returns its digest (static, one of 4 rotating buffers). */
static const char *put(const void *data, size_t len)
{
	static char ds[4][SG_DIGEST_STRLEN + 1];
	static int k;
	char *d = ds[k++ % 4], path[512];
	struct sg_digest dg;

	sg_sha256(data, len, &dg);
	sg_digest_format(&dg, d);
	snprintf(path, sizeof(path), "%s/src/blobs/sha256/%s", dir, d + 7);
	write_path(path, data, len);
	return d;
}

static char *slurp(const char *path, size_t *ret_len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	char *p = malloc((size_t)st.st_size + 1);
	CHECK_EQ(read(fd, p, (size_t)st.st_size), st.st_size);
	p[st.st_size] = 0;
	close(fd);
	if (ret_len)
		*ret_len = (size_t)st.st_size;
	return p;
}

static yajl_val load_json(const char *path)
{
	char *s = slurp(path, NULL), err[128];
	yajl_val v = yajl_tree_parse(s, err, sizeof(err));
	if (!v)
		TEST_FAIL("%s: %s", path, err);
	free(s);
	return v;
}

static const char *str_at(yajl_val v, const char **path)
{
	yajl_val s = yajl_tree_get(v, path, yajl_t_string);
	return s ? YAJL_GET_STRING(s) : NULL;
}

static void make_layout(void)
{
	static uint8_t tar[4096];
	char path[512], cfg[512], man[1024], index[1024];

	dir = test_tmpdir("test_oci_layout");
	snprintf(path, sizeof(path), "%s/src/blobs/sha256", dir);
	CHECK_EQ(sg_mkdir_p(path, 0755), 0);
	esgz_tar_header(tar, "hello", '0', 5, 0644, NULL);
	memcpy(tar + 512, "hello", 5);
	const char *layer = put(tar, sizeof(tar));
	snprintf(cfg, sizeof(cfg), "{\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"layers\","
		 "\"diff_ids\":[\"x\"]},\"config\":{\"Cmd\":[\"/bin/sh\"]}}");
	const char *cfgd = put(cfg, strlen(cfg));
	int n = 0;
	for (int i = 0; i < 2; i++) {   /* two manifests, the same layer */
		snprintf(man, sizeof(man), "{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\"},"
			 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
			 "\"digest\":\"%s\",\"annotations\":{\"a\":\"%d\"}}],"
			 "\"annotations\":{\"m\":\"%d\"}}", cfgd, layer, i, i);
		const char *md = put(man, strlen(man));
		n += snprintf(index + n, sizeof(index) - (size_t)n, "%s{\"mediaType\":\"application/vnd."
			      "oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":1,"
			      "\"annotations\":{\"ref\":\"v%d\"}}", i ? "," : "", md, i);
	}
	char idx[1200];
	snprintf(idx, sizeof(idx), "{\"schemaVersion\":2,\"manifests\":[%s]}", index);
	snprintf(path, sizeof(path), "%s/src/index.json", dir);
	write_path(path, idx, strlen(idx));
}

TEST(every_manifest_is_rewritten_and_a_shared_layer_converts_once)
{
	struct sz_options opt = { .chunk_size = SZ_DEFAULT_CHUNK_SIZE, .level = 1, .threads = 1,
				  .json = true };
	char src[512], dst[512], out[512], path[600];

	make_layout();
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	snprintf(out, sizeof(out), "%s/stdout", dir);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	int ret = sz_convert_oci(&opt, src, dst);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	CHECK_EQ(ret, 0);

	/* stdout: one line a manifest, then one a converted layer */
	char *lines = slurp(out, NULL);
	int n_man = 0, n_layer = 0;
	for (char *l = strtok(lines, "\n"); l; l = strtok(NULL, "\n")) {
		n_man += strncmp(l, "{\"manifest\":", 12) == 0;
		n_layer += strncmp(l, "{\"layer\":", 9) == 0;
	}
	CHECK_EQ(n_man, 2);
	CHECK_EQ(n_layer, 1);
	free(lines);

	snprintf(path, sizeof(path), "%s/oci-layout", dst);
	char *layout = slurp(path, NULL);
	CHECK_STR(layout, "{\"imageLayoutVersion\":\"1.0.0\"}");
	free(layout);
	snprintf(path, sizeof(path), "%s/index.json", dst);
	yajl_val index = load_json(path);
	yajl_val mans = yajl_tree_get(index, (const char *[]){ "manifests", NULL }, yajl_t_array);
	CHECK(mans && mans->u.array.len == 2);
	for (size_t i = 0; i < 2; i++) {
		yajl_val m = mans->u.array.values[i];
		char want_ref[8];
		snprintf(want_ref, sizeof(want_ref), "v%zu", i);
		CHECK_STR(str_at(m, (const char *[]){ "annotations", "ref", NULL }), want_ref);
		CHECK_STR(str_at(m, (const char *[]){ "mediaType", NULL }),
			  "application/vnd.oci.image.manifest.v1+json");
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dst,
			 str_at(m, (const char *[]){ "digest", NULL }) + 7);
		yajl_val man = load_json(path);
		yajl_val l0 = yajl_tree_get(man, (const char *[]){ "layers", NULL }, yajl_t_array);
		CHECK(l0 && l0->u.array.len == 1);
		l0 = l0->u.array.values[0];
		CHECK_STR(str_at(l0, (const char *[]){ "mediaType", NULL }),
			  "application/vnd.oci.image.layer.v1.tar+gzip");
		CHECK_STR(str_at(l0, (const char *[]){ "annotations", "a", NULL }), want_ref + 1);
		CHECK(str_at(l0, (const char *[]){ "annotations", SZ_ANN_TOC_DIGEST, NULL }) != NULL);
		CHECK(str_at(l0, (const char *[]){ "annotations", SZ_ANN_UNCOMPRESSED_SIZE, NULL }));
		CHECK_STR(str_at(man, (const char *[]){ "annotations", "m", NULL }), want_ref + 1);

		/* the config: diff_ids = the sha256 of the converted layer, gunzipped */
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dst,
			 str_at(man, (const char *[]){ "config", "digest", NULL }) + 7);
		yajl_val cfg = load_json(path);
		yajl_val ids = yajl_tree_get(cfg, (const char *[]){ "rootfs", "diff_ids", NULL },
					     yajl_t_array);
		CHECK(ids && ids->u.array.len == 1);
		const char *id = YAJL_GET_STRING(ids->u.array.values[0]);
		struct sg_digest parsed;
		CHECK(id && sg_digest_parse(id, strlen(id), &parsed) == 0);
		CHECK_STR(str_at(cfg, (const char *[]){ "architecture", NULL }), "amd64");
		CHECK(yajl_tree_get(cfg, (const char *[]){ "config", "Cmd", NULL }, yajl_t_array));
		size_t blen;
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dst,
			 str_at(l0, (const char *[]){ "digest", NULL }) + 7);
		char *blob = slurp(path, &blen);
		struct sg_digest d;
		char ds[SG_DIGEST_STRLEN + 1];
		sg_sha256(blob, blen, &d);
		sg_digest_format(&d, ds);
		CHECK_STR(ds, str_at(l0, (const char *[]){ "digest", NULL }));
		free(blob);
		yajl_tree_free(cfg);
		yajl_tree_free(man);
	}
	yajl_tree_free(index);
}

TEST(a_blob_that_does_not_match_its_digest_is_refused)
{
	struct sz_options opt = { .chunk_size = SZ_DEFAULT_CHUNK_SIZE, .level = 1, .threads = 1 };
	char src[512], dst[512], path[600];

	make_layout();
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	snprintf(path, sizeof(path), "%s/index.json", src);
	yajl_val index = load_json(path);
	yajl_val mans = yajl_tree_get(index, (const char *[]){ "manifests", NULL }, yajl_t_array);
	const char *md = str_at(mans->u.array.values[0], (const char *[]){ "digest", NULL });
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", src, md + 7);
	write_path(path, "{}", 2);
	CHECK_EQ(sz_convert_oci(&opt, src, dst), -EINVAL);
	yajl_tree_free(index);
}

TEST_MAIN()
