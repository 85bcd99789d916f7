/* A temp directory for a test (header-only): made under /tmp, removed with everything in it
 * when the test's process exits (tests run in forked children, so each gets its own). */
#ifndef STARGZD_TESTS_TMPDIR_H
#define STARGZD_TESTS_TMPDIR_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/unit/test.h"

static char test_tmpdir_path[128];

static inline int test_tmpdir_rm_one(const char *path, const struct stat *st, int flag,
				     struct FTW *ftw)
{
	return remove(path);
}

static inline void test_tmpdir_cleanup(void)
{
	nftw(test_tmpdir_path, test_tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes /tmp/NAME.XXXXXX and returns its path (one per process). */
static inline const char *test_tmpdir(const char *name)
{
	snprintf(test_tmpdir_path, sizeof(test_tmpdir_path), "/tmp/%s.XXXXXX", name);
	CHECK(mkdtemp(test_tmpdir_path) != NULL);
	atexit(test_tmpdir_cleanup);
	return test_tmpdir_path;
}

/* Writes a file of len bytes under the temp dir; returns its path (static, overwritten by the
 * next call). */
static inline const char *test_tmpfile(const char *name, const void *data, size_t len)
{
	static char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", test_tmpdir_path, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

#endif
