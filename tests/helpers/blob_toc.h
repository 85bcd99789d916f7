/* Loads the TOC of an eStargz blob file synchronously (header-only, for tests): the layer
 * tests build a layer over a file range source and need its index first. */
#ifndef STARGZD_TESTS_BLOB_TOC_H
#define STARGZD_TESTS_BLOB_TOC_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "tests/unit/test.h"

static inline struct sg_toc *test_load_toc_file(const char *path, const struct sg_digest *toc_digest)
{
	struct sg_esgz_options opts = { .toc_digest = toc_digest, .keep_json = true };
	struct sg_error err;
	struct sg_toc *toc;
	struct sg_gz *gz;
	struct stat st;

	CHECK_EQ(stat(path, &st), 0);
	uint8_t *blob = malloc((size_t)st.st_size);
	FILE *f = fopen(path, "r");
	CHECK(blob && f && fread(blob, 1, (size_t)st.st_size, f) == (size_t)st.st_size);
	fclose(f);
	CHECK_EQ(sg_gz_new(&gz), 0);
	if (sg_esgz_load_blob(gz, blob, (size_t)st.st_size, &opts, &toc, &err) < 0)
		TEST_FAIL("load %s: %s", path, err.msg);
	sg_gz_free(gz);
	free(blob);
	return toc;
}

#endif
