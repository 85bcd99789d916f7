/* The disk cache's size bound (fs/cache_bound.c) with real layers (fs/layer.c) over an
 * eStargz blob on disk: the bound holds while a larger layer is read, bytes stay right, the
 * least recently used chunks go first, directories of layers not mounted go before any
 * mounted chunk, a restart reuses what is left, an evicted chunk is fetched and verified
 * again, and background fetch does not churn a small cache. */
#include "daemon/core/loop.h"
#include "fs/cache_bound.h"
#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/layer.h"
#include "fs/layer_trust.h"
#include "daemon/core/range_source.h"
#include "tests/helpers/blob_toc.h"
#include "tests/helpers/esgz_build.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NFILES 8
#define FILE_SIZE (1024 * 1024)
#define CHUNK (256 * 1024)
#define MiB (1024ull * 1024)
/* What the walk of a layer directory finds besides chunks: the directory and the bitmap. */
#define SLACK (64 * 1024)

static char dir[256], blob_path[300], root[300], layer_dir[400];
static uint8_t content[NFILES][FILE_SIZE];
static struct sg_digest toc_digest;
static uint64_t foreign_bytes;   /* not ours under the root: neither counted nor removed */

static void cleanup(void)
{
	test_rm_tree(dir);
}

/* Eight files of 1 MiB in 256 KiB chunks, incompressible. */
static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/stargzd-cache-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(blob_path, sizeof(blob_path), "%s/blob", dir);
	snprintf(root, sizeof(root), "%s/cache", dir);
	snprintf(layer_dir, sizeof(layer_dir), "%s/%064x", root, 0x1a7e5);
	CHECK_EQ(esgz_write_random_files(blob_path, &content[0][0], NFILES, FILE_SIZE, CHUNK,
					 &toc_digest, NULL), 0);
}

struct env {
	struct sg_loop *loop;
	struct sg_cache_bound *bound;
	struct sg_layer *layer;
	struct sg_layer_user *user;
};

static void env_open(struct env *e, uint64_t max, const struct sg_layer_config *cfg_in)
{
	struct sg_layer_config cfg = cfg_in ? *cfg_in : (struct sg_layer_config){ 0 };

	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	CHECK_EQ(sg_cache_bound_new(e->loop, root, max, &e->bound), 0);
	cfg.cache_dir = layer_dir;
	cfg.bound = e->bound;
	if (!cfg.window_bytes)
		cfg.window_bytes = 1;   /* exactly the chunks asked for */
	test_layer_open(e->loop, blob_path, &toc_digest, &cfg, &e->layer, &e->user);
}

static void env_close(struct env *e)
{
	test_layer_user_close(e->loop, e->user);
	test_layer_close(e->loop, e->layer);
	CHECK_EQ(sg_loop_drain(e->loop, 2000), 0);
	sg_cache_bound_free(e->bound);
	sg_loop_free(e->loop);
	memset(e, 0, sizeof(*e));
}

static uint32_t node_of(struct env *e, int f)
{
	char name[32];
	snprintf(name, sizeof(name), "f%d", f);
	int64_t n = sg_toc_lookup_path(sg_layer_toc(e->layer), name);
	CHECK(n >= 0);
	return (uint32_t)n;
}

static uint64_t du(const char *path);

/* Reads file f in 128 KiB pieces; checks the bytes and, after each piece, the bound. */
static void read_file(struct env *e, int f)
{
	static uint8_t buf[128 * 1024];
	struct sg_cache_bound_stats cs;

	for (size_t off = 0; off < FILE_SIZE; off += sizeof(buf)) {
		CHECK_EQ(test_layer_read(e->loop, e->user, 0, node_of(e, f), off, buf, sizeof(buf)),
			 sizeof(buf));
		CHECK_MEM(buf, content[f] + off, sizeof(buf));
		sg_cache_bound_stats(e->bound, &cs);
		CHECK(cs.bytes <= cs.max_bytes);
	}
	/* Let the cache writes land, then measure the disk. */
	test_run_for(e->loop, 20);
	sg_cache_bound_stats(e->bound, &cs);
	CHECK(cs.bytes <= cs.max_bytes);
	uint64_t used = du(root) - foreign_bytes;
	if (used > cs.max_bytes + SLACK)
		TEST_FAIL("disk usage %llu > bound %llu + slack", (unsigned long long)used,
			  (unsigned long long)cs.max_bytes);
}

static uint64_t du_total;
static int du_one(const char *p, const struct stat *st, int t, struct FTW *f)
{
	(void)p; (void)t; (void)f;
	du_total += (uint64_t)st->st_blocks * 512u;
	return 0;
}

/* Allocated bytes under path, as `du -s -B1` counts them. */
static uint64_t du(const char *path)
{
	du_total = 0;
	nftw(path, du_one, 16, FTW_PHYS);
	return du_total;
}

/* Allocated bytes of file f's cache file. */
static uint64_t file_blocks(struct env *e, int f)
{
	char p[600];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%u", layer_dir, node_of(e, f));
	if (stat(p, &st) < 0)
		return 0;
	return (uint64_t)st.st_blocks * 512u;
}

/* The whole layer (8 MiB) through a 3 MiB bound. */
static void read_all_through_3mib(struct env *e, struct sg_layer_stats *st)
{
	setup();
	env_open(e, 3 * MiB, NULL);
	for (int f = 0; f < NFILES; f++)
		read_file(e, f);
	sg_layer_stats(e->layer, st);
}

TEST(bound_holds_while_a_larger_layer_is_read)
{
	struct env e = { 0 };
	struct sg_layer_stats st;
	struct sg_cache_bound_stats cs;

	read_all_through_3mib(&e, &st);
	sg_cache_bound_stats(e.bound, &cs);
	CHECK_EQ(st.chunks_fetched, NFILES * FILE_SIZE / CHUNK);
	CHECK(st.chunks_evicted >= 16);
	CHECK_EQ(st.chunks_evicted, cs.evicted_chunks);
	CHECK_EQ(st.cache_writes_skipped, 0);
	CHECK_EQ(st.verify_failures, 0);
	CHECK(st.cache_bytes <= 3 * MiB);
	/* The last file read is what is left. */
	CHECK_EQ(file_blocks(&e, NFILES - 1), FILE_SIZE);
	CHECK_EQ(file_blocks(&e, 0), 0);
	env_close(&e);
}

TEST(least_recently_used_chunks_go_first)
{
	struct env e = { 0 };
	struct sg_cache_bound_stats cs;

	setup();
	env_open(&e, 1024 * MiB, NULL);
	read_file(&e, 0);   /* A */
	read_file(&e, 1);   /* B */
	read_file(&e, 2);   /* C */
	read_file(&e, 0);   /* A again (from memory): now the most recent */
	CHECK_EQ(file_blocks(&e, 0), FILE_SIZE);
	CHECK_EQ(file_blocks(&e, 1), FILE_SIZE);
	CHECK_EQ(file_blocks(&e, 2), FILE_SIZE);

	/* A bound whose watermark is ~900 KiB below what is there: four chunks must go. */
	for (int step = 1; step <= 2; step++) {
		sg_cache_bound_stats(e.bound, &cs);
		uint64_t target = cs.bytes - 900 * 1024;
		sg_cache_bound_set_max(e.bound, (target / SG_CACHE_BOUND_WATERMARK_PCT + 1) * 100);
		test_run_for(e.loop, 50);
		if (step == 1) {
			CHECK_EQ(file_blocks(&e, 1), 0);          /* B, the oldest */
			CHECK_EQ(file_blocks(&e, 2), FILE_SIZE);
		} else {
			CHECK_EQ(file_blocks(&e, 2), 0);          /* then C */
		}
		CHECK_EQ(file_blocks(&e, 0), FILE_SIZE);          /* A stays */
	}
	struct sg_layer_stats st;
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_evicted, 8);
	CHECK_EQ(st.chunks_present, 4);
	env_close(&e);
}

/* A file the kernel reads directly (a passthrough open pins it) keeps its chunks: the kernel
 * would read a punched hole as zeros.  Unpinned, it is evicted like any other. */
TEST(pinned_files_are_never_evicted)
{
	struct env e = { 0 };

	setup();
	env_open(&e, 1024 * MiB, NULL);
	read_file(&e, 0);
	read_file(&e, 1);
	sg_layer_pin_file(e.layer, node_of(&e, 0), true);   /* A: the older one */
	sg_cache_bound_set_max(e.bound, 64 * 1024);
	for (double end = test_now_ms() + 3000; file_blocks(&e, 1) != 0 && test_now_ms() < end;)
		test_run_for(e.loop, 20);
	CHECK_EQ(file_blocks(&e, 0), FILE_SIZE);
	CHECK_EQ(file_blocks(&e, 1), 0);
	int fd = sg_layer_open_verified(e.layer, node_of(&e, 0));
	CHECK(fd >= 0);   /* still complete and trusted */
	close(fd);
	sg_layer_pin_file(e.layer, node_of(&e, 0), false);
	sg_cache_bound_set_max(e.bound, 64 * 1024 + 4096);   /* another eviction pass */
	for (double end = test_now_ms() + 3000; file_blocks(&e, 0) != 0 && test_now_ms() < end;)
		test_run_for(e.loop, 20);
	CHECK_EQ(file_blocks(&e, 0), 0);
	CHECK_EQ(sg_layer_open_verified(e.layer, node_of(&e, 0)), -ENOENT);
	env_close(&e);
}

TEST(evicted_chunk_is_fetched_and_verified_again)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { .mem_cache_bytes = 1 };   /* no memory cache to hide it */
	struct sg_layer_stats st;

	setup();
	env_open(&e, 1024 * MiB, &cfg);
	read_file(&e, 0);
	sg_cache_bound_set_max(e.bound, 64 * 1024);
	/* The eviction runs from the loop in batches: on a busy machine it takes a while. */
	for (double end = test_now_ms() + 3000; file_blocks(&e, 0) != 0 && test_now_ms() < end;)
		test_run_for(e.loop, 20);
	CHECK_EQ(file_blocks(&e, 0), 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_present, 0);
	/* Bytes in the hole that are not the chunk must never be served. */
	char p[600];
	snprintf(p, sizeof(p), "%s/%u", layer_dir, node_of(&e, 0));
	int fd = open(p, O_WRONLY);
	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, "garbage", 7, 1000), 7);
	close(fd);
	sg_cache_bound_set_max(e.bound, 1024 * MiB);
	read_file(&e, 1);   /* flush the memory cache */
	sg_layer_stats(e.layer, &st);
	uint64_t fetched = st.chunks_fetched;
	read_file(&e, 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_fetched, fetched + 4);
	CHECK_EQ(st.chunks_from_disk, 0);
	CHECK_EQ(st.verify_failures, 0);
	env_close(&e);

	/* After a restart, the refetched file comes from disk, verified. */
	env_open(&e, 1024 * MiB, &cfg);
	read_file(&e, 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_from_disk, 4);
	CHECK_EQ(st.fetched_bytes, 0);
	env_close(&e);
}

TEST(restart_reuses_what_is_left)
{
	struct env e = { 0 };
	struct sg_layer_stats st;
	struct sg_cache_bound_stats cs;

	read_all_through_3mib(&e, &st);
	uint64_t present = st.chunks_present;
	CHECK(present >= 4 && present < 12);
	env_close(&e);

	/* Unmounted: the directory is accounted by the walk at start. */
	CHECK_EQ(sg_loop_new(NULL, &e.loop), 0);
	CHECK_EQ(sg_cache_bound_new(e.loop, root, 3 * MiB, &e.bound), 0);
	sg_cache_bound_stats(e.bound, &cs);
	CHECK_EQ(cs.idle_dirs, 1);
	CHECK(cs.bytes >= present * CHUNK && cs.bytes <= present * CHUNK + SLACK);
	sg_cache_bound_free(e.bound);
	sg_loop_free(e.loop);
	memset(&e, 0, sizeof(e));

	env_open(&e, 3 * MiB, NULL);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_present, present);
	sg_cache_bound_stats(e.bound, &cs);
	CHECK_EQ(cs.idle_dirs, 0);
	CHECK_EQ(cs.layers, 1);
	read_file(&e, NFILES - 1);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetched_bytes, 0);
	CHECK_EQ(st.chunks_from_disk, 4);
	env_close(&e);
}

static void make_idle_dir(const char *name, time_t mtime)
{
	char p[600];
	static uint8_t junk[FILE_SIZE];

	memset(junk, 0x77, sizeof(junk));
	snprintf(p, sizeof(p), "%s/%s", root, name);
	CHECK_EQ(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/%s/17", root, name);
	FILE *f = fopen(p, "w");
	CHECK(f && fwrite(junk, 1, sizeof(junk), f) == sizeof(junk));
	fclose(f);
	snprintf(p, sizeof(p), "%s/%s", root, name);
	struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };
	CHECK_EQ(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static bool exists(const char *name)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", root, name);
	return access(p, F_OK) == 0;
}

TEST(directories_of_unmounted_layers_go_first_oldest_first)
{
	struct env e = { 0 };
	struct sg_layer_stats st;
	struct sg_cache_bound_stats cs;
	char older[65], newer[65];

	setup();
	CHECK_EQ(mkdir(root, 0700), 0);
	memset(older, 'a', 64);
	memset(newer, 'b', 64);
	older[64] = newer[64] = '\0';
	make_idle_dir(newer, 2000000000);
	make_idle_dir(older, 1000000000);
	make_idle_dir("not-a-layer", 1);   /* never ours to remove */
	char foreign[600];
	snprintf(foreign, sizeof(foreign), "%s/not-a-layer", root);
	foreign_bytes = du(foreign);

	env_open(&e, 3 * MiB + 512 * 1024, NULL);
	sg_cache_bound_stats(e.bound, &cs);
	CHECK_EQ(cs.idle_dirs, 2);
	CHECK(cs.idle_bytes >= 2 * MiB);
	read_file(&e, 0);
	CHECK(exists(older) && exists(newer));
	read_file(&e, 1);   /* crosses the bound: the older directory goes */
	CHECK(!exists(older));
	CHECK(exists(newer));
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_evicted, 0);
	read_file(&e, 2);   /* then the newer one, still before any chunk of ours */
	CHECK(!exists(newer));
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_evicted, 0);
	read_file(&e, 3);   /* now the mounted layer's oldest chunks */
	sg_layer_stats(e.layer, &st);
	CHECK(st.chunks_evicted > 0);
	CHECK_EQ(file_blocks(&e, 3), FILE_SIZE);
	sg_cache_bound_stats(e.bound, &cs);
	CHECK_EQ(cs.removed_dirs, 2);
	CHECK(exists("not-a-layer"));
	DIR *d = opendir(root);
	struct dirent *de;
	while ((de = readdir(d)))
		CHECK(strncmp(de->d_name, ".trash-", 7) != 0);
	closedir(d);
	env_close(&e);
}

static void wait_background(struct env *e, struct sg_layer_stats *st)
{
	double end = test_now_ms() + 10000;
	do {
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
		sg_layer_stats(e->layer, st);
		CHECK(test_now_ms() < end);
	} while (!st->background_skipped && (!st->background_done || st->chunks_present < st->chunks_total));
}

TEST(background_fetch_respects_the_bound)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { .background_fetch = true, .background_delay_ns = 1000000 };
	struct sg_layer_stats st;

	setup();
	/* The layer (8 MiB) does not fit a 6 MiB bound: nothing is fetched behind our back. */
	env_open(&e, 6 * MiB, &cfg);
	wait_background(&e, &st);
	CHECK(st.background_skipped);
	CHECK_EQ(st.chunks_fetched, 0);
	env_close(&e);

	/* It fits 16 MiB: fetched whole. */
	env_open(&e, 16 * MiB, &cfg);
	wait_background(&e, &st);
	CHECK(st.background_done);
	CHECK_EQ(st.chunks_present, st.chunks_total);
	env_close(&e);
}

TEST(reads_work_when_nothing_fits)
{
	struct env e = { 0 };
	struct sg_layer_stats st;

	setup();
	env_open(&e, 64 * 1024, NULL);   /* smaller than one chunk */
	for (int f = 0; f < 3; f++)
		read_file(&e, f);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.cache_writes_skipped, 12);
	CHECK_EQ(st.chunks_present, 0);
	env_close(&e);
}

/* An sg_cache_bound over a root holding one directory of a layer not mounted (64 KiB of data). */
static void make_one_idle_dir(void)
{
	char p[600];
	static uint8_t junk[64 * 1024];

	setup();
	CHECK_EQ(mkdir(root, 0700), 0);
	CHECK_EQ(mkdir(layer_dir, 0700), 0);
	snprintf(p, sizeof(p), "%s/0", layer_dir);
	FILE *fp = fopen(p, "w");
	CHECK(fp);
	memset(junk, 0x5a, sizeof(junk));
	CHECK_EQ(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
	fclose(fp);
}

/* Constructors start no work: over its bound already, sg_cache_bound_new posts no eviction (a
 * caller that fails next can free it at once); the first set_max/attach/reserve evicts.
 * The free of a cache with its eviction still posted aborts instead of leaving the loop a
 * pointer into freed memory. */
TEST(new_starts_no_work_and_free_refuses_a_posted_eviction)
{
	struct sg_loop *loop;
	struct sg_cache_bound *c;
	struct sg_cache_bound_stats cs;

	make_one_idle_dir();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_cache_bound_new(loop, root, 4096, &c), 0);
	sg_cache_bound_stats(c, &cs);
	CHECK(cs.bytes > cs.max_bytes);
	CHECK_EQ(sg_loop_pending(loop), 0);
	sg_cache_bound_set_max(c, 4096);   /* now it evicts, from the loop */
	CHECK_EQ(sg_loop_pending(loop), 1);
	CHECK_ABORTS(sg_cache_bound_free(c));
	for (int i = 0; i < 100 && sg_loop_pending(loop) > 0; i++)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	sg_cache_bound_stats(c, &cs);
	CHECK_EQ(cs.idle_dirs, 0);
	CHECK_EQ(access(layer_dir, F_OK), -1);
	sg_cache_bound_free(c);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
}

/* One sg_cache_bound per directory, across processes too: a second one (`stargzd mount` beside
 * the daemon) is refused with -EBUSY and learns the holder's pid; the lock file is neither
 * counted nor evicted; the directory is free again once the first is freed. */
TEST(one_cache_per_directory)
{
	struct sg_loop *loop;
	struct sg_cache_bound *c, *c2 = NULL;
	struct sg_cache_bound_stats cs;
	char lock[400];
	int st;

	make_one_idle_dir();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_cache_bound_new(loop, root, 0, &c), 0);
	CHECK_EQ(sg_cache_bound_new(loop, root, 0, &c2), -EBUSY);
	CHECK(c2 == NULL);
	CHECK_EQ(sg_cache_bound_lock_owner(root), getpid());
	/* Another process is refused the same way. */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct sg_cache_bound *c3 = NULL;
		_exit(sg_cache_bound_new(NULL, root, 0, &c3) == -EBUSY ? 0 : 1);
	}
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* Evicting everything leaves the lock file alone, and it is not accounted. */
	snprintf(lock, sizeof(lock), "%s/" SG_CACHE_BOUND_LOCK_NAME, root);
	sg_cache_bound_set_max(c, 4096);
	for (int i = 0; i < 100 && sg_loop_pending(loop) > 0; i++)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	sg_cache_bound_stats(c, &cs);
	CHECK_EQ(cs.bytes, 0);
	CHECK_EQ(access(lock, F_OK), 0);
	sg_cache_bound_free(c);
	CHECK_EQ(sg_cache_bound_new(loop, root, 0, &c2), 0);
	sg_cache_bound_free(c2);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
}

TEST_MAIN()
