/* The lazy layer filesystem for real: an eStargz blob on disk, the chunk pipeline
 * (fs/layer.c) and a FUSE mount (fs/lazyfs.c) served by the io_uring loop in this process,
 * while a forked child uses the mount with ordinary system calls.  Tests of the layer API
 * without a mount are in test_layer.c. */
#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/layer.h"
#include "fs/lazyfs.h"
#include "daemon/core/range_source.h"
#include "tests/helpers/blob_toc.h"
#include "tests/helpers/esgz_build.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static char dir[256], blob_path[300], mnt[300], cache[300];
static uint8_t big[TEST_BIG_SIZE];
static struct sg_digest toc_digest;

static void cleanup(void)
{
	umount2(mnt, MNT_DETACH);
	test_rm_tree(dir);
}

static void setup_dirs(void)
{
	snprintf(dir, sizeof(dir), "/tmp/stargzd-lazyfs-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(blob_path, sizeof(blob_path), "%s/blob", dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	CHECK_EQ(mkdir(mnt, 0755), 0);
}

static void setup(bool landmark)
{
	setup_dirs();
	test_write_big_blob(blob_path, big, landmark, &toc_digest);
}

struct env {
	struct sg_loop *loop;
	struct sg_layer *layer;
	struct sg_layer_user *user;   /* the test's own reads, beside the mount's */
	struct sg_lazyfs *fs;
	bool closed;
};

/* Loads the blob's TOC synchronously and builds the layer over a file range source. */
static void env_open(struct env *e, const struct sg_layer_config *cfg_in)
{
	struct sg_loop_config lc = { 0 };
	struct sg_layer_config cfg = *cfg_in;
	struct sg_error err;

	cfg.cache_dir = cache;
	CHECK_EQ(sg_loop_new(&lc, &e->loop), 0);
	test_layer_open(e->loop, blob_path, &toc_digest, &cfg, &e->layer, &e->user);
	if (sg_lazyfs_mount(e->loop, e->layer, mnt, NULL, &e->fs, &err) < 0)
		TEST_FAIL("mount: %s", err.msg);
}

static void env_close(struct env *e)
{
	struct test_op unmounted;

	test_op_init(&unmounted);
	CHECK_EQ(sg_lazyfs_unmount(e->fs, &unmounted.op, test_op_cb), 0);
	test_op_wait(e->loop, &unmounted, 10000);
	CHECK_EQ(unmounted.calls, 1);
	sg_lazyfs_free(e->fs);
	test_layer_user_close(e->loop, e->user);
	test_layer_close(e->loop, e->layer);
	CHECK_EQ(sg_loop_drain(e->loop, 2000), 0);
	sg_loop_free(e->loop);
}

/* Runs fn in a child process while this process serves the mount.  Returns its exit code. */
static int run_child(struct env *e, int (*fn)(void))
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(fn());
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	CHECK(pidfd >= 0);
	struct pollfd_done { bool done; } d = { false };
	double end = test_now_ms() + 30000;
	for (;;) {
		int status;
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			close(pidfd);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		if (test_now_ms() > end) {
			kill(pid, SIGKILL);
			TEST_FAIL("child timed out");
		}
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
	}
	(void)d;
}

#define C_CHECK(cond) \
	do { if (!(cond)) { fprintf(stderr, "    child %s:%d: %s (errno %s)\n", __FILE__, __LINE__, #cond, strerror(errno)); fails++; } } while (0)

static int read_all(const char *path, uint8_t *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	size_t n = 0;
	ssize_t r;
	while ((r = read(fd, buf + n, cap - n)) > 0)
		n += (size_t)r;
	close(fd);
	return r < 0 ? -1 : (int)n;
}

static int child_semantics(void)
{
	int fails = 0;
	char p[512], buf[512];
	struct stat st;
	static uint8_t got[sizeof(big) + 10];

	snprintf(p, sizeof(p), "%s/bin/tool", mnt);
	C_CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 04755 && st.st_size == 20);
	C_CHECK(read_all(p, got, sizeof(got)) == 20 && memcmp(got, "#!/bin/sh\necho tool\n", 20) == 0);

	snprintf(p, sizeof(p), "%s/data", mnt);
	C_CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0750 &&
		st.st_uid == 1000 && st.st_gid == 1001);
	snprintf(p, sizeof(p), "%s/data/big.bin", mnt);
	C_CHECK(stat(p, &st) == 0 && st.st_size == (off_t)sizeof(big) && st.st_nlink == 2);
	struct stat hard;
	snprintf(buf, sizeof(buf), "%s/data/hard", mnt);
	C_CHECK(stat(buf, &hard) == 0 && hard.st_ino == st.st_ino && hard.st_nlink == 2);
	C_CHECK(read_all(p, got, sizeof(got)) == (int)sizeof(big) && memcmp(got, big, sizeof(big)) == 0);
	C_CHECK(read_all(buf, got, sizeof(got)) == (int)sizeof(big) && memcmp(got, big, sizeof(big)) == 0);

	/* A read across a chunk boundary at an odd offset. */
	int fd = open(p, O_RDONLY);
	C_CHECK(fd >= 0);
	C_CHECK(pread(fd, got, 5000, 1024 * 1024 - 2500) == 5000 &&
		memcmp(got, big + 1024 * 1024 - 2500, 5000) == 0);
	C_CHECK(pread(fd, got, 100, (off_t)sizeof(big) - 10) == 10);
	C_CHECK(pread(fd, got, 100, (off_t)sizeof(big) + 10) == 0);
	close(fd);
	C_CHECK(open(p, O_RDWR) < 0 && errno == EROFS);

	snprintf(p, sizeof(p), "%s/data/link", mnt);
	C_CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
	ssize_t n = readlink(p, buf, sizeof(buf));
	C_CHECK(n == 7 && memcmp(buf, "big.bin", 7) == 0);
	snprintf(p, sizeof(p), "%s/data/empty", mnt);
	C_CHECK(stat(p, &st) == 0 && st.st_size == 0 && read_all(p, got, sizeof(got)) == 0);

	snprintf(p, sizeof(p), "%s/data/x.txt", mnt);
	n = getxattr(p, "user.color", buf, sizeof(buf));
	C_CHECK(n == 4 && memcmp(buf, "blue", 4) == 0);
	C_CHECK(getxattr(p, "user.none", buf, sizeof(buf)) < 0 && errno == ENODATA);
	n = listxattr(p, buf, sizeof(buf));
	C_CHECK(n == 11 && strcmp(buf, "user.color") == 0);

	snprintf(p, sizeof(p), "%s/dev/null", mnt);
	C_CHECK(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
	snprintf(p, sizeof(p), "%s/dev/pipe", mnt);
	C_CHECK(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode));

	/* Whiteouts and opaque directories, as overlayfs expects of a lower layer. */
	snprintf(p, sizeof(p), "%s/etc/removed", mnt);
	C_CHECK(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
	snprintf(p, sizeof(p), "%s/etc/.wh.removed", mnt);
	C_CHECK(lstat(p, &st) < 0 && errno == ENOENT);
	snprintf(p, sizeof(p), "%s/opq", mnt);
	n = getxattr(p, "trusted.overlay.opaque", buf, sizeof(buf));
	C_CHECK(n == 1 && buf[0] == 'y');
	snprintf(p, sizeof(p), "%s/opq/.wh..wh..opq", mnt);
	C_CHECK(lstat(p, &st) < 0 && errno == ENOENT);

	/* The bookkeeping entries are there as a full pull extracts them: stargz.index.json
	 * with its tar header's attributes (the builder writes 0644, 0:0, mtime 0) holding the
	 * verified TOC JSON, the landmark as a one-byte file. */
	snprintf(p, sizeof(p), "%s/stargz.index.json", mnt);
	C_CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644 &&
		st.st_uid == 0 && st.st_gid == 0 && st.st_mtime == 0 && st.st_nlink == 1 &&
		st.st_size > 20 && st.st_size < (off_t)sizeof(got));
	struct sg_digest jd;
	n = read_all(p, got, sizeof(got));
	sg_sha256(got, n > 0 ? (size_t)n : 0, &jd);
	C_CHECK(n == st.st_size && sg_digest_equal(&jd, &toc_digest));
	fd = open(p, O_RDONLY);
	C_CHECK(fd >= 0 && pread(fd, buf, 10, 1) == 10 && memcmp(buf, got + 1, 10) == 0 &&
		pread(fd, buf, 10, st.st_size) == 0);
	if (fd >= 0)
		close(fd);
	C_CHECK(listxattr(p, buf, sizeof(buf)) == 0);
	snprintf(p, sizeof(p), "%s/.prefetch.landmark", mnt);
	if (lstat(p, &st) == 0)
		C_CHECK(st.st_size == 1 && read_all(p, got, sizeof(got)) == 1 && got[0] == 0x0f);
	snprintf(p, sizeof(p), "%s/implied/deep/file", mnt);
	snprintf(p, sizeof(p), "%s/implied/deep/file", mnt);
	C_CHECK(read_all(p, got, sizeof(got)) == 5 && memcmp(got, "deep\n", 5) == 0);

	/* readdir lists exactly the visible names. */
	snprintf(p, sizeof(p), "%s/data", mnt);
	DIR *d = opendir(p);
	C_CHECK(d != NULL);
	int count = 0, dots = 0;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			dots++;
		else
			count++;
	}
	if (d)
		closedir(d);
	C_CHECK(count == 5 && dots == 2);
	snprintf(p, sizeof(p), "%s/nope", mnt);
	C_CHECK(lstat(p, &st) < 0 && errno == ENOENT);
	return fails;
}

TEST(mount_shows_exact_image_semantics)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { 0 };

	setup(false);
	env_open(&e, &cfg);
	CHECK_EQ(run_child(&e, child_semantics), 0);
	struct sg_layer_stats st;
	sg_layer_stats(e.layer, &st);
	CHECK(st.fetch_requests > 0);
	/* The on-demand window takes the following small files along: the child read 8
	 * regular files, far fewer range requests went out. */
	CHECK(st.fetch_requests <= 5);
	CHECK_EQ(st.verify_failures, 0);
	env_close(&e);
}

static int child_read_big(void)
{
	static uint8_t got[sizeof(big)];
	char p[512];
	snprintf(p, sizeof(p), "%s/data/big.bin", mnt);
	int n = read_all(p, got, sizeof(got));
	if (n != (int)sizeof(big))
		return 1;
	return memcmp(got, big, sizeof(big)) == 0 ? 0 : 2;
}

static int child_read_big_expect_eio(void)
{
	static uint8_t got[sizeof(big)];
	char p[512];
	snprintf(p, sizeof(p), "%s/data/big.bin", mnt);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return 10;
	ssize_t r = pread(fd, got, sizeof(big), 0);
	close(fd);
	/* Either an error, or a short read that stops before the corrupt chunk: never bad bytes. */
	if (r < 0)
		return errno == EIO ? 0 : 11;
	if (memcmp(got, big, (size_t)r) != 0)
		return 12;
	return r < (ssize_t)sizeof(big) ? 0 : 13;
}

TEST(disk_cache_survives_remount_and_is_verified)
{
	struct env e = { 0 };
	/* No window: count exactly big.bin's four chunks. */
	struct sg_layer_config cfg = { .window_bytes = 1 };
	struct sg_layer_stats st;

	setup(false);
	env_open(&e, &cfg);
	CHECK_EQ(run_child(&e, child_read_big), 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_fetched, 4);
	uint64_t fetched = st.fetched_bytes;
	CHECK(fetched > 0);
	/* Let the cache writes land. */
	for (int i = 0; i < 20; i++)
		sg_loop_run_once(e.loop, 10);
	env_close(&e);

	/* The cache file is one plain file with the decompressed bytes at their offsets. */
	char path[700];
	snprintf(path, sizeof(path), "%s/chunks.bitmap", cache);
	CHECK_EQ(access(path, F_OK), 0);

	/* Remount: the same reads come from disk, nothing from the blob. */
	memset(&e, 0, sizeof(e));
	env_open(&e, &cfg);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.chunks_present, 4);
	CHECK_EQ(run_child(&e, child_read_big), 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetched_bytes, 0);
	/* Read back through the daemon, or checked once and then read by the kernel. */
	CHECK_EQ(st.chunks_from_disk + st.chunks_checked, 4);
	env_close(&e);

	/* Corrupt the cached copy: the digest check catches it and the chunk is refetched. */
	DIR *d = opendir(cache);
	struct dirent *de;
	int corrupted = 0;
	while ((de = readdir(d))) {
		struct stat fst;
		snprintf(path, sizeof(path), "%s/%s", cache, de->d_name);
		if (stat(path, &fst) == 0 && S_ISREG(fst.st_mode) && fst.st_size == (off_t)sizeof(big)) {
			int fd = open(path, O_WRONLY);
			CHECK_EQ(pwrite(fd, "XXXX", 4, 2 * 1024 * 1024 + 5), 4);
			close(fd);
			corrupted++;
		}
	}
	closedir(d);
	CHECK_EQ(corrupted, 1);
	memset(&e, 0, sizeof(e));
	env_open(&e, &cfg);
	CHECK_EQ(run_child(&e, child_read_big), 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.verify_failures, 1);
	CHECK_EQ(st.chunks_fetched, 1);
	CHECK_EQ(st.chunks_from_disk, 3);
	env_close(&e);
}

static void drop_page_cache(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "3", 1), 1);
	close(fd);
}

static void settle(struct env *e)
{
	for (int i = 0; i < 30; i++)
		sg_loop_run_once(e->loop, 10);
}

/* While one descriptor (opened when the file was incomplete) stays open, a second open must
 * stay in the same mode: the kernel fails an open that mixes modes on one inode with EIO. */
static int child_mixed_opens(void)
{
	static uint8_t got[sizeof(big)];
	char p[512];
	int fails = 0;
	snprintf(p, sizeof(p), "%s/data/big.bin", mnt);
	int fd1 = open(p, O_RDONLY);
	C_CHECK(fd1 >= 0);
	C_CHECK(pread(fd1, got, sizeof(got), 0) == (ssize_t)sizeof(got));
	C_CHECK(memcmp(got, big, sizeof(big)) == 0);
	usleep(200 * 1000);   /* the cache writes land: the file is complete now */
	int fd2 = open(p, O_RDONLY);
	C_CHECK(fd2 >= 0);
	memset(got, 0, sizeof(got));
	C_CHECK(pread(fd2, got, sizeof(got), 0) == (ssize_t)sizeof(got));
	C_CHECK(memcmp(got, big, sizeof(big)) == 0);
	close(fd1);
	close(fd2);
	return fails;
}

TEST(complete_verified_files_are_passed_through)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { .window_bytes = 1 };
	struct sg_layer_stats st0, st1;
	struct sg_lazyfs_stats fst;

	setup(false);
	env_open(&e, &cfg);
	CHECK_EQ(run_child(&e, child_mixed_opens), 0);
	sg_lazyfs_stats(e.fs, &fst);
	if (!fst.passthrough) {
		env_close(&e);
		SKIP("the kernel offers no FUSE passthrough");
	}
	CHECK_EQ(fst.passthrough_opens, 0);   /* the second open joined the first's mode */
	CHECK_EQ(fst.cached_opens, 2);
	settle(&e);

	/* Now complete and verified: the kernel reads the cache file, the daemon sees nothing
	 * even with the page cache dropped. */
	drop_page_cache();
	sg_layer_stats(e.layer, &st0);
	CHECK_EQ(run_child(&e, child_read_big), 0);
	sg_layer_stats(e.layer, &st1);
	sg_lazyfs_stats(e.fs, &fst);
	CHECK_EQ(fst.passthrough_opens, 1);
	CHECK_EQ(fst.passthrough_error, 0);
	CHECK_EQ(st1.chunks_from_memory + st1.chunks_from_disk + st1.chunks_fetched,
		 st0.chunks_from_memory + st0.chunks_from_disk + st0.chunks_fetched);
	env_close(&e);

	/* After a remount the cache is untrusted: corrupt it; the first open comes to the daemon,
	 * which catches the bad chunk and refetches it; only then is the file passed through. */
	char path[700];
	DIR *d = opendir(cache);
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat fst2;
		snprintf(path, sizeof(path), "%s/%s", cache, de->d_name);
		if (stat(path, &fst2) == 0 && S_ISREG(fst2.st_mode) && fst2.st_size == (off_t)sizeof(big)) {
			int fd = open(path, O_WRONLY);
			CHECK_EQ(pwrite(fd, "XXXX", 4, 1024 * 1024 + 9), 4);
			close(fd);
		}
	}
	closedir(d);
	memset(&e, 0, sizeof(e));
	env_open(&e, &cfg);
	drop_page_cache();
	CHECK_EQ(run_child(&e, child_read_big), 0);
	settle(&e);
	sg_layer_stats(e.layer, &st1);
	CHECK_EQ(st1.verify_failures, 1);
	CHECK_EQ(st1.chunks_fetched, 1);
	drop_page_cache();
	CHECK_EQ(run_child(&e, child_read_big), 0);
	sg_lazyfs_stats(e.fs, &fst);
	CHECK_EQ(fst.passthrough_opens, 1);
	CHECK_EQ(fst.cached_opens, 1);
	env_close(&e);
}

TEST(corrupt_blob_never_serves_a_wrong_byte)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { .window_bytes = 1 };
	struct sg_layer_stats st;

	setup(false);
	test_corrupt_big_chunk(blob_path, &toc_digest, 2);
	env_open(&e, &cfg);
	CHECK_EQ(run_child(&e, child_read_big_expect_eio), 0);
	sg_layer_stats(e.layer, &st);
	CHECK(st.chunks_fetched <= 3);
	env_close(&e);
}

TEST(prefetch_and_background_fetch_make_the_layer_local)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { .prefetch = true, .background_fetch = true,
				       .background_delay_ns = 1000000 };
	struct sg_layer_stats st;

	setup(true);
	env_open(&e, &cfg);
	test_wait_layer_local(e.loop, e.layer, &st);
	CHECK(st.prefetch_done);
	CHECK_EQ(st.chunks_present, st.chunks_total);
	/* Batched: far fewer requests than chunks. */
	CHECK(st.fetch_requests < st.chunks_total);
	/* Everything is now served without touching the blob. */
	uint64_t before = st.fetched_bytes;
	CHECK_EQ(run_child(&e, child_semantics), 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetched_bytes, before);
	env_close(&e);
}

#define MANY_FILES 400   /* more than the layer's table of cache file descriptors */

static void many_content(int i, char *buf, size_t *len)
{
	*len = (size_t)snprintf(buf, 200, "file %d: %0*d\n", i, 20 + i % 100, i * 7919);
}

static int child_read_many(void)
{
	char p[512], want[200], got[256];
	size_t len;
	int fails = 0;
	for (int i = 0; i < MANY_FILES; i++) {
		snprintf(p, sizeof(p), "%s/many/f%03d", mnt, i);
		many_content(i, want, &len);
		int n = read_all(p, (uint8_t *)got, sizeof(got));
		C_CHECK(n == (int)len && memcmp(got, want, len) == 0);
	}
	return fails;
}

/* Background fetch writes hundreds of files' chunks at once, more than the table of open
 * cache files holds.  Every write must land in its own file (a descriptor closed while a
 * write waited in the submission queue used to send it to whichever file reused the number):
 * after a remount every chunk reads back verified, and complete files are passed through. */
TEST(background_writes_land_in_their_own_cache_files)
{
	struct env e = { 0 };
	struct sg_layer_config cfg = { .background_fetch = true, .background_delay_ns = 1000000 };
	struct sg_layer_stats st;
	struct esgz_b b;
	char name[64], data[200];
	size_t len;

	setup_dirs();
	esgz_init(&b, 1);
	esgz_add(&b, "many", '5', 0755, NULL, 0, NULL, 0, NULL);
	for (int i = 0; i < MANY_FILES; i++) {
		snprintf(name, sizeof(name), "many/f%03d", i);
		many_content(i, data, &len);
		esgz_add(&b, name, '0', 0644, data, len, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);

	env_open(&e, &cfg);
	test_wait_layer_local(e.loop, e.layer, &st);
	CHECK_EQ(st.chunks_present, MANY_FILES);
	env_close(&e);

	memset(&e, 0, sizeof(e));
	cfg.background_fetch = false;
	env_open(&e, &cfg);
	CHECK_EQ(run_child(&e, child_read_many), 0);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.verify_failures, 0);
	CHECK_EQ(st.fetched_bytes, 0);
	env_close(&e);
}

TEST_MAIN()
