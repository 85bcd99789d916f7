/* The compression pipeline (tools/stargzify/pipeline.c): members compressed on threads come
 * out in order, each a gzip member of its own, at the offsets the pipeline reports. */
#include "tools/stargzify/pipeline.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <sys/mman.h>

#include "daemon/core/digest.h"

#define N_MEMBERS 300

/* Member k: len_of(k) bytes of a pattern of k; a few large ones (over the 256 KiB batch). */
static size_t len_of(unsigned k)
{
	return k % 50 == 7 ? (300u << 10) + k : (k * 37) % 3000;
}

static void fill(uint8_t *p, unsigned k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(k * 7 + i / 3);
}

/* Runs N_MEMBERS members through a pipeline of nthreads into a memfd, checks them and
 * returns the output (malloc'd) and its length. */
static uint8_t *run(unsigned nthreads, size_t *ret_len)
{
	static const uint8_t tail[5] = "TAIL!";
	static uint8_t buf[(300u << 10) + N_MEMBERS];
	struct sz_pipeline *p;
	struct sz_job *j = NULL;
	struct sg_digest d, want;
	int fd = memfd_create("pipeline", 0);
	size_t len;

	CHECK(fd >= 0);
	CHECK_EQ(sz_pipeline_new(nthreads, 1, fd, &p), 0);
	for (unsigned k = 0; k < N_MEMBERS; k++) {
		if (!j) {
			j = sz_pipeline_open(p, k);
			CHECK(j != NULL);
		}
		size_t n = len_of(k);
		fill(buf, k, n);
		CHECK_EQ(sz_job_append(j, buf, n / 2), 0);
		CHECK_EQ(sz_job_append(j, NULL, 0), 0);
		CHECK_EQ(sz_job_append(j, buf + n / 2, n - n / 2), 0);
		int full = sz_job_end_member(j);
		CHECK(full == 0 || full == 1);
		if (full || k % 97 == 0) {   /* a job is submitted when full, or earlier */
			CHECK_EQ(sz_pipeline_submit(p, j), 0);
			j = NULL;
		}
	}
	if (j)
		CHECK_EQ(sz_pipeline_submit(p, j), 0);
	CHECK_EQ(sz_pipeline_flush(p), 0);
	uint64_t members_end = sz_pipeline_offset(p);
	CHECK_EQ(sz_pipeline_finish(p, tail, sizeof(tail), &d), 0);
	CHECK_EQ(sz_pipeline_error(p), 0);

	len = (size_t)lseek(fd, 0, SEEK_END);
	CHECK_EQ(len, members_end + sizeof(tail));
	CHECK_EQ(sz_pipeline_offset(p), len);
	uint8_t *out = malloc(len), *plain = malloc(sizeof(buf)), *want_plain = malloc(sizeof(buf));
	CHECK(out && plain && want_plain);
	CHECK_EQ(pread(fd, out, len, 0), (ssize_t)len);
	sg_sha256(out, len, &want);
	CHECK_MEM(&d, &want, sizeof(d));
	CHECK_MEM(out + members_end, tail, sizeof(tail));

	/* Member k is one gzip member at member_off[k] that inflates to its bytes. */
	const uint64_t *off = sz_pipeline_member_offsets(p);
	struct libdeflate_decompressor *dc = libdeflate_alloc_decompressor();
	CHECK_EQ(off[0], 0);
	for (unsigned k = 0; k < N_MEMBERS; k++) {
		uint64_t end = k + 1 < N_MEMBERS ? off[k + 1] : members_end;
		size_t used = 0, got = 0;
		CHECK(off[k] < end);
		CHECK_EQ(libdeflate_gzip_decompress_ex(dc, out + off[k], end - off[k], plain,
						       sizeof(buf), &used, &got),
			 LIBDEFLATE_SUCCESS);
		CHECK_EQ(used, end - off[k]);
		CHECK_EQ(got, len_of(k));
		fill(want_plain, k, got);
		CHECK_MEM(plain, want_plain, got);
	}
	libdeflate_free_decompressor(dc);
	free(plain);
	free(want_plain);
	sz_pipeline_free(p);
	close(fd);
	*ret_len = len;
	return out;
}

TEST(members_come_out_in_order_at_the_reported_offsets)
{
	size_t len;
	free(run(3, &len));
}

TEST(the_output_does_not_depend_on_the_thread_count)
{
	size_t l1, l4;
	uint8_t *a = run(1, &l1), *b = run(4, &l4);

	CHECK_EQ(l1, l4);
	CHECK_MEM(a, b, l1);
	free(a);
	free(b);
}

TEST(write_errors_are_returned)
{
	static uint8_t noise[600u << 10];   /* incompressible: written directly, not batched */
	struct sz_pipeline *p;
	struct sz_job *j;
	int fd = memfd_create("ro", 0), rofd;
	char path[64];
	uint32_t x = 1;

	CHECK(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rofd = open(path, O_RDONLY);   /* every write fails with EBADF */
	CHECK(rofd >= 0);
	CHECK_EQ(sz_pipeline_new(2, 1, rofd, &p), 0);
	j = sz_pipeline_open(p, 0);
	CHECK(j != NULL);
	CHECK_EQ(sz_job_append(j, "hello", 5), 0);
	CHECK_EQ(sz_job_end_member(j), 0);
	CHECK_EQ(sz_pipeline_submit(p, j), 0);   /* small: batched, not written yet */
	CHECK_EQ(sz_pipeline_flush(p), -EBADF);   /* the batch */
	CHECK_EQ(sz_pipeline_error(p), 0);

	for (size_t i = 0; i < sizeof(noise); i++) {
		x = x * 1103515245u + 12345u;
		noise[i] = (uint8_t)(x >> 16);
	}
	j = sz_pipeline_open(p, 1);
	CHECK(j != NULL);
	CHECK_EQ(sz_job_append(j, noise, sizeof(noise)), 0);
	CHECK_EQ(sz_job_end_member(j), 1);   /* over the batch size */
	int r = sz_pipeline_submit(p, j);
	CHECK(r == 0 || r == -EBADF);   /* -EBADF if the worker was already done */
	CHECK_EQ(sz_pipeline_flush(p), -EBADF);
	CHECK_EQ(sz_pipeline_error(p), -EBADF);
	sz_pipeline_free(p);
	sz_pipeline_free(NULL);
	close(rofd);
	close(fd);
}

TEST_MAIN()
