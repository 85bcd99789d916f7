/* A startup profile as a priority list.  See profile_paths.h. */
#include "tools/stargzify/profile_paths.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/profile.h"
#include "fs/toc.h"
#include "tools/stargzify/util.h"

bool sz_is_profile(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? NULL : fopen(path, "r");
	int ch = EOF;

	if (!f)
		return false;
	while ((ch = fgetc(f)) == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
		;
	fclose(f);
	return ch == '{';
}

void sz_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; i < n && paths; i++)
		free(paths[i]);
	free(paths);
}

/* The whole file in memory (mapped read-only); *ret_len may be 0. */
static int map_file(const char *path, void **ret, size_t *ret_len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *p;

	if (fd < 0 || fstat(fd, &st) < 0) {
		int r = -errno;
		sz_errorf("%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	*ret_len = (size_t)st.st_size;
	p = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (p == MAP_FAILED) {
		sz_errorf("%s: mmap: %s", path, strerror(errno));
		return -errno;
	}
	*ret = p;
	return 0;
}

/* chunk index -> the regular file node holding it (TOC order, as fs/layer.c numbers them). */
static uint32_t *chunk_owners(const struct sg_toc *toc, uint32_t n_chunks)
{
	uint32_t *owner = malloc((size_t)n_chunks * sizeof(*owner) + 1);

	if (!owner)
		return NULL;
	for (uint32_t i = 0; i < n_chunks; i++)
		owner[i] = SG_TOC_NONE;
	for (uint32_t id = 0; id < sg_toc_count(toc); id++) {
		const struct sg_toc_node *n = sg_toc_node(toc, id);
		if (n->type != SG_TOC_REG || n->nchunks == 0)
			continue;
		for (uint32_t c = 0; c < n->nchunks && n->first_chunk + c < n_chunks; c++)
			owner[n->first_chunk + c] = id;
	}
	return owner;
}

static uint32_t toc_chunk_count(const struct sg_toc *toc)
{
	uint32_t n = 0;

	for (uint32_t id = 0; id < sg_toc_count(toc); id++) {
		const struct sg_toc_node *node = sg_toc_node(toc, id);
		if (node->type == SG_TOC_REG && node->nchunks &&
		    node->first_chunk + node->nchunks > n)
			n = node->first_chunk + node->nchunks;
	}
	return n;
}

int sz_profile_paths(const char *profile_path, const char *esgz_path, char ***ret,
		     size_t *ret_n)
{
	struct sg_profile *p = NULL;
	struct sg_toc *toc = NULL;
	struct sg_gz *gz = NULL;
	struct sg_error err = { 0 };
	void *json = NULL, *blob = NULL;
	size_t json_len = 0, blob_len = 0, n = 0;
	uint32_t *owner = NULL, n_chunks;
	uint8_t *emitted = NULL;
	char **paths = NULL;
	int r;

	if (!esgz_path) {
		sz_errorf("%s is a startup profile: it names chunks of the eStargz layer it was "
			  "recorded on; give that layer with --prioritize-from BLOB", profile_path);
		return -EINVAL;
	}
	r = map_file(profile_path, &json, &json_len);
	if (r < 0)
		return r;
	r = sg_profile_parse(json, json_len, &p, &err);
	if (r < 0) {
		sz_errorf("%s: %s", profile_path, err.msg);
		goto out;
	}
	r = map_file(esgz_path, &blob, &blob_len);
	if (r < 0)
		goto out;
	r = sg_gz_new(&gz);
	if (r < 0)
		goto out;
	/* The loader checks the TOC against the profile's key: another layer cannot match. */
	struct sg_esgz_options o = { .toc_digest = sg_profile_toc(p) };
	r = sg_esgz_load_blob(gz, blob, blob_len, &o, &toc, &err);
	if (r < 0) {
		sz_errorf("%s: %s (is it the layer the profile was recorded on?)", esgz_path, err.msg);
		goto out;
	}
	n_chunks = toc_chunk_count(toc);
	(void)sg_profile_fit(p, n_chunks);
	owner = chunk_owners(toc, n_chunks);
	emitted = calloc(sg_toc_count(toc) + 1, 1);
	paths = calloc(sg_toc_count(toc) + 1, sizeof(*paths));
	if (!owner || !emitted || !paths) {
		r = -ENOMEM;
		sz_errorf("out of memory");
		goto out;
	}
	const struct sg_profile_range *rg;
	size_t nr = sg_profile_ranges(p, &rg);
	for (size_t i = 0; i < nr; i++) {
		for (uint64_t c = rg[i].first; c <= rg[i].last; c++) {
			uint32_t id = owner[c];
			char path[4096];
			if (id == SG_TOC_NONE || emitted[id])
				continue;
			emitted[id] = 1;
			if (sg_toc_path(toc, id, path, sizeof(path)) < 0)
				continue;
			paths[n] = strdup(path);
			if (!paths[n]) {
				r = -ENOMEM;
				sz_errorf("out of memory");
				goto out;
			}
			n++;
		}
	}
	*ret = paths;
	*ret_n = n;
	paths = NULL;
	r = 0;
out:
	sz_paths_free(paths, n);
	free(owner);
	free(emitted);
	sg_toc_free(toc);
	sg_gz_free(gz);
	sg_profile_free(p);
	if (json)
		munmap(json, json_len);
	if (blob)
		munmap(blob, blob_len);
	return r;
}
