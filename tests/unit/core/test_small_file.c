/* Tests for daemon/core/small_file: whole reads, NUL-terminated, of regular files within a bound. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/small_file.h"
#include "tests/unit/test.h"

TEST(reads_regular_files_within_the_bound)
{
	char path[] = "/tmp/small-file-test-XXXXXX";
	char *text = NULL;
	size_t len = 0;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "abc\0def", 7), 7);
	close(fd);
	CHECK_EQ(sg_small_file_read(path, 7, &text, &len), 0);
	CHECK_EQ(len, 7);
	CHECK_MEM(text, "abc\0def", 7);
	CHECK_EQ(text[7], '\0');
	free(text);
	text = NULL;
	CHECK_EQ(sg_small_file_read(path, 6, &text, &len), -EFBIG);
	CHECK(text == NULL);
	CHECK_EQ(sg_small_file_read("/tmp", 1 << 20, &text, &len), -EFBIG);
	unlink(path);
	CHECK_EQ(sg_small_file_read(path, 7, &text, &len), -ENOENT);
	CHECK_EQ(sg_small_file_read("/etc/passwd/x", 7, &text, &len), -ENOTDIR);
}

TEST_MAIN()
