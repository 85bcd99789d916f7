/* One layer's disk cache directory (fs/diskcache.c): bits that survive a reopen (written by
 * their op, cleared at once, the whole bitmap at free), a bitmap of another size starting
 * over, trust that does not survive, holes punched, the table of cache file descriptors
 * when more files are busy than it has slots, and stargz.index.json. */
#include "daemon/core/loop.h"
#include "fs/diskcache.h"
#include "fs/estargz.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

static char dir[256], cache[300];

static void cleanup(void)
{
	test_rm_tree(dir);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/stargzd-diskcache-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(cache, sizeof(cache), "%s/layer", dir);
}

static void run_until_idle(struct sg_loop *loop)
{
	for (int i = 0; i < 100 && sg_loop_pending(loop) > 0; i++)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	CHECK_EQ(sg_loop_pending(loop), 0);
}

TEST(bits_survive_a_reopen_and_trust_does_not)
{
	struct sg_loop *loop;
	struct sg_diskcache *dc;
	struct test_op t;

	setup();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_diskcache_open(loop, cache, 20, &dc), 0);   /* creates the directory */
	CHECK_EQ(sg_diskcache_present_count(dc), 0);
	CHECK_EQ(sg_diskcache_next_present(dc, 0), 20);
	sg_diskcache_set_present(dc, 3);
	sg_diskcache_set_present(dc, 3);   /* counted once */
	sg_diskcache_set_present(dc, 17);
	sg_diskcache_set_trusted(dc, 3, true);
	CHECK(sg_diskcache_present(dc, 3) && sg_diskcache_trusted(dc, 3));
	CHECK(!sg_diskcache_trusted(dc, 17));
	CHECK_EQ(sg_diskcache_present_count(dc), 2);
	CHECK_EQ(sg_diskcache_next_present(dc, 0), 3);
	CHECK_EQ(sg_diskcache_next_present(dc, 4), 17);
	CHECK_EQ(sg_diskcache_next_present(dc, 18), 20);
	test_op_init(&t);
	CHECK_EQ(sg_diskcache_write_bit(dc, 17, &t.op, test_op_cb), 0);
	test_op_wait(loop, &t, 1000);
	CHECK_EQ(t.res, 1);
	/* Cleared at once on disk too, and its trust with it. */
	sg_diskcache_clear(dc, 3);
	CHECK(!sg_diskcache_present(dc, 3) && !sg_diskcache_trusted(dc, 3));
	CHECK_EQ(sg_diskcache_present_count(dc), 1);
	/* What the file says now, before free writes the bitmap whole. */
	struct sg_diskcache *peek;
	CHECK_EQ(sg_diskcache_open(loop, cache, 20, &peek), 0);
	CHECK(!sg_diskcache_present(peek, 3) && sg_diskcache_present(peek, 17));
	CHECK(!sg_diskcache_trusted(peek, 17));   /* trust is this mount's */
	sg_diskcache_free(peek);
	sg_diskcache_set_present(dc, 9);   /* no op wrote it: free does */
	sg_diskcache_free(dc);
	CHECK_EQ(sg_diskcache_open(loop, cache, 20, &dc), 0);
	CHECK_EQ(sg_diskcache_present_count(dc), 2);
	CHECK(sg_diskcache_present(dc, 9) && sg_diskcache_present(dc, 17));
	sg_diskcache_free(dc);
	/* Another TOC (another bitmap size): the bitmap starts over. */
	CHECK_EQ(sg_diskcache_open(loop, cache, 40, &dc), 0);
	CHECK_EQ(sg_diskcache_present_count(dc), 0);
	sg_diskcache_free(dc);
	run_until_idle(loop);
	sg_loop_free(loop);
}

TEST(a_hole_gives_the_blocks_back)
{
	struct sg_loop *loop;
	struct sg_diskcache *dc;
	struct sg_diskcache_fd fdr;
	static uint8_t data[256 * 1024];
	struct stat st;

	setup();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_diskcache_open(loop, cache, 4, &dc), 0);
	memset(data, 0x3c, sizeof(data));
	CHECK_EQ(sg_diskcache_fd_get(dc, 7, &fdr), 0);
	CHECK_EQ(pwrite(fdr.fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
	CHECK_EQ(fsync(fdr.fd), 0);
	sg_diskcache_fd_put(dc, &fdr);
	CHECK_EQ(fdr.fd, -1);
	int fd = sg_diskcache_open_file(dc, 7);
	CHECK(fd >= 0);
	CHECK_EQ(fstat(fd, &st), 0);
	uint64_t before = (uint64_t)st.st_blocks * 512;
	CHECK(before >= sizeof(data));
	CHECK_EQ(sg_diskcache_punch(dc, 7, 0, 128 * 1024), 0);
	CHECK_EQ(fstat(fd, &st), 0);
	CHECK_EQ(st.st_size, (off_t)sizeof(data));   /* the size stays */
	CHECK((uint64_t)st.st_blocks * 512 <= before - 128 * 1024);
	uint8_t got[16];
	CHECK_EQ(pread(fd, got, sizeof(got), 4096), (ssize_t)sizeof(got));
	for (size_t i = 0; i < sizeof(got); i++)
		CHECK_EQ(got[i], 0);
	CHECK_EQ(pread(fd, got, sizeof(got), 200 * 1024), (ssize_t)sizeof(got));
	CHECK_EQ(got[0], 0x3c);
	close(fd);
	CHECK_EQ(sg_diskcache_open_file(dc, 8), -ENOENT);   /* read-only: never created */
	sg_diskcache_free(dc);
	sg_loop_free(loop);
}

/* More files busy at once than the table has slots: each op still gets its own file's
 * descriptor (a slot, or one of its own), and no busy descriptor is closed under it. */
TEST(more_busy_files_than_slots)
{
	struct sg_loop *loop;
	struct sg_diskcache *dc;
	static struct sg_diskcache_fd held[300];
	unsigned own = 0;

	setup();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_diskcache_open(loop, cache, 4, &dc), 0);
	for (uint32_t node = 0; node < 300; node++) {
		CHECK_EQ(sg_diskcache_fd_get(dc, node, &held[node]), 0);
		own += held[node].slot < 0;
		char tag[16];
		int n = snprintf(tag, sizeof(tag), "node %u", node);
		CHECK_EQ(pwrite(held[node].fd, tag, (size_t)n, 0), n);
	}
	CHECK(own > 0);
	/* A second user of a file in a slot shares it. */
	struct sg_diskcache_fd again;
	CHECK_EQ(sg_diskcache_fd_get(dc, 0, &again), 0);
	CHECK(held[0].slot >= 0 && again.slot == held[0].slot && again.fd == held[0].fd);
	sg_diskcache_fd_put(dc, &again);
	for (uint32_t node = 0; node < 300; node++) {
		char want[16], got[16] = { 0 };
		int n = snprintf(want, sizeof(want), "node %u", node);
		CHECK_EQ(pread(held[node].fd, got, sizeof(got), 0), n);
		CHECK_MEM(got, want, (size_t)n);
		sg_diskcache_fd_put(dc, &held[node]);
	}
	sg_diskcache_free(dc);
	sg_loop_free(loop);
}

TEST(stargz_index_json_is_written_whole)
{
	struct sg_loop *loop;
	struct sg_diskcache *dc;
	static const char json[] = "{\"version\":1,\"entries\":[]}";
	char path[400], got[64] = { 0 };

	setup();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_diskcache_open(loop, cache, 0, &dc), 0);
	CHECK_EQ(sg_diskcache_toc_json_fd(dc), -1);
	/* A copy left by an earlier mount is replaced, never trusted. */
	snprintf(path, sizeof(path), "%s/%s", cache, SG_ESGZ_TOC_NAME);
	FILE *f = fopen(path, "w");
	CHECK(f && fputs("stale", f) >= 0);
	fclose(f);
	CHECK_EQ(sg_diskcache_store_toc_json(dc, json, strlen(json)), 0);
	int fd = sg_diskcache_toc_json_fd(dc);
	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, got, sizeof(got), 0), (ssize_t)strlen(json));
	CHECK_STR(got, json);
	memset(got, 0, sizeof(got));
	f = fopen(path, "r");
	CHECK(f && fread(got, 1, sizeof(got), f) == strlen(json));
	fclose(f);
	CHECK_STR(got, json);
	sg_diskcache_free(dc);
	sg_loop_free(loop);
}

TEST_MAIN()
