/* The converter's input (tools/stargzify/input.c): plain tars mapped, gzip inflated (every
 * member), stdin copied, and bad input refused. */
#include "tools/stargzify/input.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <libdeflate.h>

#include "tests/helpers/tmpdir.h"

/* A temp dir for the test's files; TMPDIR too, for the temp files of inflated and piped
 * input. */
static void setup(void)
{
	setenv("TMPDIR", test_tmpdir("test_input"), 1);
}

/* Appends one gzip member of data to out (at *len); returns the new length. */
static size_t gzip_member(uint8_t *out, size_t len, size_t cap, const void *data, size_t n)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
	size_t m = libdeflate_gzip_compress(c, data, n, out + len, cap - len);
	CHECK(m > 0);
	libdeflate_free_compressor(c);
	return len + m;
}

static uint8_t *pattern(size_t n)
{
	uint8_t *p = malloc(n);
	CHECK(p != NULL);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i % 251);
	return p;
}

TEST(a_plain_file_is_mapped_as_it_is)
{
	struct sz_input in;
	uint8_t *data = pattern(100000);

	setup();
	CHECK_EQ(sz_input_open(test_tmpfile("a.tar", data, 100000), &in), 0);
	CHECK_EQ(in.len, 100000);
	CHECK_MEM(in.buf, data, 100000);
	CHECK(in.droppable);
	CHECK(!in.was_gzip);
	sz_input_done(&in);
	CHECK(in.buf == NULL && in.map == NULL);
	sz_input_done(&in);
	CHECK_EQ(sz_input_open(test_tmpfile("empty.tar", "", 0), &in), 0);
	CHECK_EQ(in.len, 0);
	sz_input_done(&in);
	free(data);
}

TEST(every_gzip_member_is_inflated_and_zero_padding_after_them_is_ignored)
{
	/* The first member (8 MiB) is larger than the first guess, the last member's size plus
	 * twice the compressed length: the temp file grows. */
	size_t n1 = 8u << 20, n2 = 3000, cap = (1u << 20), len = 0;
	uint8_t *data = pattern(n1 + n2), *gz = malloc(cap);
	struct sz_input in;

	setup();
	len = gzip_member(gz, len, cap, data, n1);
	len = gzip_member(gz, len, cap, data + n1, n2);
	memset(gz + len, 0, 100);
	CHECK_EQ(sz_input_open(test_tmpfile("a.tar.gz", gz, len + 100), &in), 0);
	CHECK_EQ(in.len, n1 + n2);
	CHECK_MEM(in.buf, data, n1 + n2);
	CHECK(in.was_gzip);
	CHECK(in.droppable);
	CHECK_EQ(in.compressed_len, len + 100);
	sz_input_done(&in);
	free(data);
	free(gz);
}

TEST(damaged_gzip_zstd_and_missing_files_are_refused)
{
	uint8_t gz[4096], *data = pattern(1000);
	size_t len = gzip_member(gz, 0, sizeof(gz), data, 1000);
	struct sz_input in;

	setup();
	memcpy(gz + len, "junk", 4);
	CHECK_EQ(sz_input_open(test_tmpfile("garbage.tar.gz", gz, len + 4), &in), -EBADMSG);
	CHECK_EQ(sz_input_open(test_tmpfile("trunc.tar.gz", gz, len - 5), &in), -EBADMSG);
	CHECK_EQ(sz_input_open(test_tmpfile("z.tar.zst", "\x28\xb5\x2f\xfd....", 8), &in), -ENOTSUP);
	CHECK_EQ(sz_input_open("/nonexistent/x.tar", &in), -ENOENT);
	free(data);
}

TEST(stdin_from_a_pipe_is_copied_and_mapped)
{
	uint8_t *data = pattern(40000);
	struct sz_input in;
	int p[2];

	setup();
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(write(p[1], data, 40000), 40000);   /* fits in the pipe buffer */
	close(p[1]);
	CHECK(dup2(p[0], STDIN_FILENO) == STDIN_FILENO);
	close(p[0]);
	CHECK_EQ(sz_input_open("-", &in), 0);
	CHECK_EQ(in.len, 40000);
	CHECK_MEM(in.buf, data, 40000);
	CHECK(in.droppable);
	sz_input_done(&in);
	free(data);
}

TEST(a_buffer_in_memory_is_used_in_place)
{
	static const char tar[1024];
	struct sz_input in;

	sz_input_from_memory(&in, tar, sizeof(tar));
	CHECK(in.buf == (const uint8_t *)tar);
	CHECK_EQ(in.len, sizeof(tar));
	CHECK(!in.droppable && in.map == NULL);
	sz_input_done(&in);
}

TEST_MAIN()
