/* Remote layers (daemon/remote.c) for real: an eStargz blob on disk served through a blob
 * opener, FUSE mounts served by the loop in this process, a forked child using them.
 *
 * One layer digest mounted twice (two images sharing a layer) shares one layer state: an
 * eviction caused through one mount never punches a file the other handed to the kernel;
 * a mount that fails after its TOC loaded frees a layer that never started work; two mounts
 * waiting on one failed load both get its error; a later layer's TOC, larger than the tail,
 * is fetched whole while the first layer mounts; a second image mounting a layer another
 * image mounted first has its profiles and entry programs asked for and used on it. */
#include "daemon/core/loop.h"
#include "daemon/image_entry.h"
#include "daemon/remote.h"
#include "daemon/core/range_source.h"
#include "fs/estargz.h"
#include "fs/profile.h"
#include "fs/profile_store.h"
#include "tests/helpers/esgz_build.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NFILES 8
#define FILE_SIZE (1024 * 1024)
#define CHUNK (256 * 1024)

static char dir[256], blob_path[300], root[300], mnt[2][300];
static uint8_t content[NFILES][FILE_SIZE];
static char toc_digest[SG_DIGEST_STRLEN + 1], layer_digest[SG_DIGEST_STRLEN + 1];

static int rm_one(const char *p, const struct stat *st, int t, struct FTW *f)
{
	(void)st; (void)f;
	return (t == FTW_DP) ? rmdir(p) : unlink(p);
}

static void cleanup(void)
{
	for (int i = 0; i < 2; i++)
		umount2(mnt[i], MNT_DETACH);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Eight incompressible files of 1 MiB in 256 KiB chunks. */
static void setup(void)
{
	struct sg_digest d;

	snprintf(dir, sizeof(dir), "/tmp/stargzd-remote-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(blob_path, sizeof(blob_path), "%s/blob", dir);
	snprintf(root, sizeof(root), "%s/cache", dir);
	for (int i = 0; i < 2; i++) {
		snprintf(mnt[i], sizeof(mnt[i]), "%s/mnt%d", dir, i);
		CHECK_EQ(mkdir(mnt[i], 0755), 0);
	}
	struct sg_digest td;
	CHECK_EQ(esgz_write_random_files(blob_path, &content[0][0], NFILES, FILE_SIZE, CHUNK, &td,
					 &d), 0);
	sg_digest_format(&td, toc_digest);
	sg_digest_format(&d, layer_digest);
}

/* The blob opener: the file, delivered from the loop like a registry's answer. */
static unsigned opens;

static int file_open(void *ctx, const char *ref, const char *digest,
		     struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb)
{
	struct sg_loop *loop = ctx;
	(void)ref;
	(void)digest;
	opens++;
	int r = sg_range_source_file_open(loop, blob_path, ret_src);
	if (r < 0)
		sg_error_set(err, r, "cannot open");
	return sg_post(loop, op, r, cb);
}

struct env {
	struct sg_loop *loop;
	struct sg_remote *remote;
};

static void env_open_prefetch(struct env *e, uint64_t cache_max, bool prefetch)
{
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	struct sg_remote_config cfg = { .cache_root = root, .cache_max_bytes = cache_max,
					.prefetch = prefetch, .background_fetch = prefetch };
	struct sg_blob_opener opener = { .open = file_open, .ctx = e->loop };
	CHECK_EQ(sg_remote_new(e->loop, &cfg, &opener, &e->remote), 0);
}

static void on_shutdown(void *ud)
{
	*(bool *)ud = true;
}

static void env_close(struct env *e)
{
	bool done = false;
	sg_remote_shutdown(e->remote, false, on_shutdown, &done);
	double end = test_now_ms() + 10000;
	while (!done && test_now_ms() < end)
		CHECK(sg_loop_run_once(e->loop, 50) >= 0);
	CHECK(done);
	CHECK_EQ(sg_loop_drain(e->loop, 2000), 0);
	sg_remote_free(e->remote);
	sg_loop_free(e->loop);
}

static void env_open(struct env *e, uint64_t cache_max)
{
	env_open_prefetch(e, cache_max, false);
}

struct mount_res {
	bool done;
	int res;
	char err[512];
};

static void on_mounted(void *ud, int res, const char *err)
{
	struct mount_res *m = ud;
	CHECK(!m->done);   /* exactly once */
	m->done = true;
	m->res = res;
	snprintf(m->err, sizeof(m->err), "%s", err ? err : "");
}

static void mount_layer(struct env *e, int64_t key, const char *where, const char *toc,
			struct mount_res *m, uint64_t prefetch)
{
	struct sg_remote_layer l = {
		.ref = "test/image:1", .digest = layer_digest, .toc_digest = toc,
		.prefetch_bytes = prefetch,
	};
	CHECK_EQ(sg_remote_mount(e->remote, key, where, &l, on_mounted, m), 0);
}

static void wait_mounted(struct env *e, struct mount_res *m, int n)
{
	double end = test_now_ms() + 10000;
	for (;;) {
		int done = 0;
		for (int i = 0; i < n; i++)
			done += m[i].done;
		if (done == n)
			return;
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(e->loop, 20) >= 0);
	}
}

static int read_fd(int fd, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	while ((r = pread(fd, buf + n, cap - n, (off_t)n)) > 0)
		n += (size_t)r;
	return r < 0 ? -1 : (int)n;
}

static int read_path(const char *path, uint8_t *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	int n = read_fd(fd, buf, cap);
	close(fd);
	return n;
}

/* Serves the loop until child `pid` exits; it must exit 0 within ms. */
static void serve_until_child_exits(struct env *e, pid_t pid, double ms)
{
	double end = test_now_ms() + ms;

	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			CHECK(WIFEXITED(status));
			CHECK_EQ(WEXITSTATUS(status), 0);
			return;
		}
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
	}
}

static int check_bytes(const char *what, const uint8_t *got, int n, int f)
{
	if (n != FILE_SIZE || memcmp(got, content[f], FILE_SIZE) != 0) {
		size_t at = 0;
		while (n == FILE_SIZE && at < FILE_SIZE && got[at] == content[f][at])
			at++;
		fprintf(stderr, "    child: %s: %d bytes, first difference at %zu\n", what, n, at);
		return 1;
	}
	return 0;
}

static int drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		return -1;
	int r = write(fd, "3", 1) == 1 ? 0 : -1;
	close(fd);
	return r;
}

static int sync_to_parent[2], sync_to_child[2];

/* Mount A reads f0 twice (the second open is passed through to its cache file) and keeps it
 * open; then (once the parent mounted B: a mount that finds f0 in the cache, as a second
 * image sharing the layer would) B reads the other files through a cache bound that holds
 * three of them, which evicts; with the page cache dropped, f0 read through A (the old
 * descriptor and a new open) must still be f0. */
static int child_evict_through_other_mount(void)
{
	static uint8_t buf[FILE_SIZE];
	char path[400], c = 1;
	int fails = 0;

	snprintf(path, sizeof(path), "%s/f0", mnt[0]);
	fails += check_bytes("A f0 first read", buf, read_path(path, buf, sizeof(buf)), 0);
	usleep(200 * 1000);   /* its cache writes land, so the next open is passed through */
	int keep = open(path, O_RDONLY);
	if (keep < 0)
		return 1;
	fails += check_bytes("A f0 second read", buf, read_fd(keep, buf, sizeof(buf)), 0);
	if (write(sync_to_parent[1], &c, 1) != 1 || read(sync_to_child[0], &c, 1) != 1)
		return 1;
	for (int f = 1; f < NFILES; f++) {
		char p[400];
		snprintf(p, sizeof(p), "%s/f%d", mnt[1], f);
		fails += check_bytes("B read", buf, read_path(p, buf, sizeof(buf)), f);
	}
	usleep(200 * 1000);
	if (drop_caches() < 0)
		return 1;
	fails += check_bytes("A f0 through the old descriptor", buf, read_fd(keep, buf, sizeof(buf)), 0);
	fails += check_bytes("A f0 opened anew", buf, read_path(path, buf, sizeof(buf)), 0);
	close(keep);
	return fails;
}

TEST(two_mounts_of_one_layer_share_its_state)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	char c = 0;

	setup();
	CHECK_EQ(pipe2(sync_to_parent, O_CLOEXEC | O_NONBLOCK), 0);
	CHECK_EQ(pipe2(sync_to_child, O_CLOEXEC), 0);
	env_open(&e, 3 * FILE_SIZE + 512 * 1024);
	mount_layer(&e, 1, mnt[0], toc_digest, &m[0], 0);
	wait_mounted(&e, m, 1);
	CHECK_EQ(m[0].res, 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_evict_through_other_mount());
	/* Serve A until the child has f0 open in passthrough mode, then mount B. */
	double end = test_now_ms() + 20000;
	while (read(sync_to_parent[0], &c, 1) != 1) {
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	}
	for (int i = 0; i < 20; i++)   /* the bitmap writes land: B finds f0 in the cache */
		CHECK(sg_loop_run_once(e.loop, 5) >= 0);
	mount_layer(&e, 2, mnt[1], toc_digest, &m[1], 0);
	wait_mounted(&e, m, 2);
	CHECK_EQ(m[1].res, 0);
	CHECK_EQ(opens, 1);   /* the second mount joined the first: one blob, one TOC fetch */
	CHECK_EQ(write(sync_to_child[1], &c, 1), 1);
	end = test_now_ms() + 30000;
	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			CHECK(WIFEXITED(status));
			CHECK_EQ(WEXITSTATUS(status), 0);
			break;
		}
		if (test_now_ms() > end) {
			kill(pid, SIGKILL);
			TEST_FAIL("child timed out");
		}
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	}
	env_close(&e);
}

/* The FUSE mount fails after the TOC loaded (no such mountpoint), with prefetch asked for:
 * the layer started fetching before the mount (so that its first requests overlap the mount's
 * syscalls), so it must be closed, not freed, or ops would point into freed memory (ASan:
 * heap-use-after-free when they complete), and the remote must end with nothing left. */
TEST(failed_mount_closes_a_layer_that_started_fetching)
{
	struct env e;
	struct mount_res m = { 0 };
	char nowhere[400];

	setup();
	env_open_prefetch(&e, 0, true);
	snprintf(nowhere, sizeof(nowhere), "%s/does-not-exist", dir);
	mount_layer(&e, 1, nowhere, toc_digest, &m, 4 * FILE_SIZE);
	wait_mounted(&e, &m, 1);
	CHECK(m.res < 0);
	/* Anything the layer had started would complete now. */
	double end = test_now_ms() + 300;
	while (test_now_ms() < end)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	CHECK(!sg_remote_is_mounted(e.remote, 1));
	env_close(&e);
}

/* An opener that holds the open of image held_ref's blob source until the test delivers it
 * (sg_post(held_op, 0, held_cb)); other images' opens go to held_others. */
static struct sg_op *held_op;
static sg_op_cb held_cb;
static struct sg_range_source **held_src;   /* where the held open put its source */
static const char *held_ref = "test/b:1";
static int (*held_others)(void *ctx, const char *ref, const char *digest,
			  struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
			  sg_op_cb cb) = file_open;

static int holding_open(void *ctx, const char *ref, const char *digest,
			struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
			sg_op_cb cb)
{
	struct sg_loop *loop = ctx;

	if (strcmp(ref, held_ref) != 0)
		return held_others(ctx, ref, digest, ret_src, err, op, cb);
	CHECK(!held_op);
	CHECK_EQ(sg_range_source_file_open(loop, blob_path, ret_src), 0);
	held_op = op;
	held_cb = cb;
	held_src = ret_src;
	return 0;
}

static void on_unmounted(void *ud, int res, const char *err)
{
	(void)err;
	CHECK_EQ(res, 0);
	*(int *)ud += 1;
}

/* A forked reader: file f<i> under `under`, checked against its content (0: right). */
static int child_read_file(const char *under, int i, const char *what)
{
	static uint8_t buf[FILE_SIZE];
	char path[400];

	snprintf(path, sizeof(path), "%s/f%d", under, i);
	return check_bytes(what, buf, read_path(path, buf, sizeof(buf)), i);
}

/* Image B mounts a layer image A mounted, and its own source's open is still on its way
 * when B's mount ends: the open's answer, delivered in the same turn of the loop as the
 * unmount, finds B's layer user closed (it is freed before its close completes) and frees
 * the source instead of handing it over (ASan: heap-use-after-free before the fix).  A's
 * mount goes on serving the right bytes, and nothing leaks. */
TEST(a_mount_of_another_image_ending_while_its_source_opens)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	int unmounted = 0;

	setup();
	CHECK_EQ(sg_loop_new(NULL, &e.loop), 0);
	struct sg_remote_config cfg = { .cache_root = root };
	struct sg_blob_opener opener = { .open = holding_open, .ctx = e.loop };
	CHECK_EQ(sg_remote_new(e.loop, &cfg, &opener, &e.remote), 0);
	struct sg_remote_layer a = { .ref = "test/a:1", .digest = layer_digest,
				     .toc_digest = toc_digest };
	struct sg_remote_layer b = a;
	b.ref = "test/b:1";
	CHECK_EQ(sg_remote_mount(e.remote, 1, mnt[0], &a, on_mounted, &m[0]), 0);
	wait_mounted(&e, m, 1);
	CHECK_EQ(m[0].res, 0);
	held_op = NULL;
	CHECK_EQ(sg_remote_mount(e.remote, 2, mnt[1], &b, on_mounted, &m[1]), 0);
	wait_mounted(&e, m, 2);
	CHECK_EQ(m[1].res, 0);
	CHECK(held_op);   /* B asked for its own source */

	/* The answer is queued first, then B's mount ends; the loop runs both in that order. */
	CHECK_EQ(sg_post(e.loop, held_op, 0, held_cb), 0);
	sg_remote_unmount(e.remote, 2, on_unmounted, &unmounted);
	double end = test_now_ms() + 5000;
	while (!unmounted && test_now_ms() < end)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	CHECK_EQ(unmounted, 1);
	CHECK(sg_remote_is_mounted(e.remote, 1));
	CHECK(!sg_remote_is_mounted(e.remote, 2));

	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_read_file(mnt[0], 0, "A f0"));
	serve_until_child_exits(&e, pid, 20000);
	env_close(&e);
}

/* Two mounts wait for one load that fails (a TOC digest the blob does not have): both get
 * the error, once each, and nothing is left behind. */
TEST(two_waiters_on_one_failed_load_both_fail)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	char wrong[SG_DIGEST_STRLEN + 1];

	setup();
	snprintf(wrong, sizeof(wrong), "%s", toc_digest);
	wrong[SG_DIGEST_STRLEN - 1] = wrong[SG_DIGEST_STRLEN - 1] == '0' ? '1' : '0';
	env_open(&e, 0);
	mount_layer(&e, 1, mnt[0], wrong, &m[0], 0);
	mount_layer(&e, 2, mnt[1], wrong, &m[1], 0);
	wait_mounted(&e, m, 2);
	CHECK(m[0].res < 0);
	CHECK(m[1].res < 0);
	CHECK(strstr(m[1].err, "digest") != NULL);
	CHECK(!sg_remote_is_mounted(e.remote, 1));
	CHECK(!sg_remote_is_mounted(e.remote, 2));
	/* And a mount with the right digest then works: the failed content is gone. */
	struct mount_res ok = { 0 };
	mount_layer(&e, 3, mnt[0], toc_digest, &ok, 0);
	wait_mounted(&e, &ok, 1);
	CHECK_EQ(ok.res, 0);
	env_close(&e);
}

/* A second identity for a digest in use is refused at once. */
TEST(another_toc_digest_for_a_mounted_layer_is_refused)
{
	struct env e;
	struct mount_res m = { 0 };
	char wrong[SG_DIGEST_STRLEN + 1];

	setup();
	snprintf(wrong, sizeof(wrong), "%s", toc_digest);
	wrong[SG_DIGEST_STRLEN - 1] = wrong[SG_DIGEST_STRLEN - 1] == '0' ? '1' : '0';
	env_open(&e, 0);
	mount_layer(&e, 1, mnt[0], toc_digest, &m, 0);
	wait_mounted(&e, &m, 1);
	CHECK_EQ(m.res, 0);
	struct sg_remote_layer l = { .ref = "test/image:2", .digest = layer_digest, .toc_digest = wrong };
	struct mount_res m2 = { 0 };
	CHECK_EQ(sg_remote_mount(e.remote, 2, mnt[1], &l, on_mounted, &m2), -EBUSY);
	env_close(&e);
}

/* A mount of a layer whose last mount is going: it arrives while the layer closes (from the
 * unmount's own callback, between the close's start and its end), waits for the close, and
 * gets the same content loaded anew; its reads are right. */
struct remount {
	struct env *e;
	struct mount_res m;
	bool unmounted;
};

static void unmounted_then_mount(void *ud, int res, const char *err)
{
	struct remount *rm = ud;

	(void)err;
	CHECK_EQ(res, 0);
	rm->unmounted = true;
	mount_layer(rm->e, 2, mnt[1], toc_digest, &rm->m, 0);
}

TEST(mount_arriving_while_the_layer_closes_loads_it_anew)
{
	struct env e;
	struct mount_res m = { 0 };
	struct remount rm = { .e = &e };

	setup();
	env_open(&e, 0);
	mount_layer(&e, 1, mnt[0], toc_digest, &m, 0);
	wait_mounted(&e, &m, 1);
	CHECK_EQ(m.res, 0);
	sg_remote_unmount(e.remote, 1, unmounted_then_mount, &rm);
	double end = test_now_ms() + 10000;
	while (!rm.m.done && test_now_ms() < end)
		CHECK(sg_loop_run_once(e.loop, 20) >= 0);
	CHECK(rm.unmounted);
	CHECK(rm.m.done);
	CHECK_EQ(rm.m.res, 0);
	CHECK_EQ(opens, 2);   /* the layer was closed, so its TOC was fetched again */
	CHECK(sg_remote_is_mounted(e.remote, 2));
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_read_file(mnt[1], 3, "f3 through the remount"));
	serve_until_child_exits(&e, pid, 30000);
	env_close(&e);
}

/* ---- a later layer's TOC fetched ahead ---- */

static unsigned counted_reads;   /* through every counting source */
static uint64_t counted_read_bytes;

/* A range source that records the reads it passes to a file source. */
struct counting_src {
	struct sg_range_source base;
	struct sg_range_source *inner;
	unsigned reads;
	uint64_t off[16], len[16];
};

static int counting_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
			 struct sg_op *op, sg_op_cb cb)
{
	struct counting_src *c = (struct counting_src *)src;
	counted_reads++;
	counted_read_bytes += len;
	if (c->reads < 16) {
		c->off[c->reads] = offset;
		c->len[c->reads] = len;
	}
	c->reads++;
	return sg_range_read(c->inner, offset, len, buf, op, cb);
}

static int counting_cancel(struct sg_range_source *src, struct sg_op *op)
{
	return sg_range_cancel(((struct counting_src *)src)->inner, op);
}

static struct counting_src *counted[2];   /* the last source opened for each layer */

static void counting_destroy(struct sg_range_source *src)
{
	struct counting_src *c = (struct counting_src *)src;
	for (int i = 0; i < 2; i++)
		if (counted[i] == c)
			counted[i] = NULL;
	sg_range_source_free(c->inner);
	free(c);
}

static const struct sg_range_source_ops counting_ops = {
	.read = counting_read, .cancel = counting_cancel, .destroy = counting_destroy,
};

static char big_path[300], big_digest[SG_DIGEST_STRLEN + 1], big_toc[SG_DIGEST_STRLEN + 1];

static int counting_open(void *ctx, const char *ref, const char *digest,
			 struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
			 sg_op_cb cb)
{
	struct sg_loop *loop = ctx;
	int which = strcmp(digest, big_digest) == 0;
	struct counting_src *c = calloc(1, sizeof(*c));
	(void)ref;
	CHECK(c);
	opens++;
	int r = sg_range_source_file_open(loop, which ? big_path : blob_path, &c->inner);
	if (r < 0) {
		free(c);
		sg_error_set(err, r, "cannot open");
		return sg_post(loop, op, r, cb);
	}
	c->base = (struct sg_range_source){ .ops = &counting_ops, .loop = loop,
					    .size = c->inner->size };
	counted[which] = c;
	*ret_src = &c->base;
	return sg_post(loop, op, 0, cb);
}

static size_t tail_asked[2];   /* the tail each layer's open_for_toc was asked for */
static unsigned big_reads;      /* reads of the big layer's blob until it mounted */
static uint64_t big_first_read;
static uint64_t small_first_len;  /* the first layer's first read: the TOC loader's tail */

static int counting_open_tail(void *ctx, const char *ref, const char *digest, size_t tail,
			      struct sg_range_source **ret_src, struct sg_error *err,
			      struct sg_op *op, sg_op_cb cb)
{
	tail_asked[strcmp(digest, big_digest) == 0] = tail;
	return counting_open(ctx, ref, digest, ret_src, err, op, cb);
}

/* Sources for blobs not opened (the opener's `unsized`): reads of each layer's, counted. */
static unsigned unsized_reads[2];
static uint64_t unsized_first_off[2];
static bool with_unsized;

static int unsized_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
			struct sg_op *op, sg_op_cb cb)
{
	struct counting_src *c = (struct counting_src *)src;
	int which = c->off[15] != 0;   /* set at creation: 1 for the big layer */
	if (unsized_reads[which]++ == 0)
		unsized_first_off[which] = offset;
	return sg_range_read(c->inner, offset, len, buf, op, cb);
}

static void unsized_destroy(struct sg_range_source *src)
{
	struct counting_src *c = (struct counting_src *)src;
	sg_range_source_free(c->inner);
	free(c);
}

static const struct sg_range_source_ops unsized_ops = {
	.read = unsized_read, .cancel = counting_cancel, .destroy = unsized_destroy,
};

static int counting_unsized(void *ctx, const char *ref, const char *digest,
			    struct sg_range_source **ret_src, struct sg_error *err)
{
	struct sg_loop *loop = ctx;
	int which = strcmp(digest, big_digest) == 0;
	struct counting_src *c = calloc(1, sizeof(*c));
	(void)ref;
	CHECK(c);
	int r = sg_range_source_file_open(loop, which ? big_path : blob_path, &c->inner);
	if (r < 0) {
		free(c);
		return sg_error_set(err, r, "cannot open");
	}
	c->off[15] = (uint64_t)which;
	c->base = (struct sg_range_source){ .ops = &unsized_ops, .loop = loop,
					    .size = UINT64_MAX };
	*ret_src = &c->base;
	return 0;
}

/* A remote over the counting opener (open_for_toc: counting_open_tail when `hinted`; unsized
 * when with_unsized) and cfg, on a loop of its own. */
static void image_open(struct env *e, const struct sg_remote_config *cfg, bool hinted)
{
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	struct sg_blob_opener opener = { .open = counting_open,
					 .open_for_toc = hinted ? counting_open_tail : NULL,
					 .unsized = with_unsized ? counting_unsized : NULL,
					 .ctx = e->loop };
	CHECK_EQ(sg_remote_new(e->loop, cfg, &opener, &e->remote), 0);
}

/* Mounts layer `which` of the image [small, big] (`layers`) at mnt[which], key which + 1,
 * and waits: it mounts. */
static void image_mount(struct env *e, int which, const char *layers, struct mount_res *m)
{
	struct sg_remote_layer l = { .ref = "test/image:1",
				     .digest = which ? big_digest : layer_digest,
				     .toc_digest = which ? big_toc : toc_digest, .layers = layers };

	CHECK_EQ(sg_remote_mount(e->remote, which + 1, mnt[which], &l, on_mounted, &m[which]), 0);
	wait_mounted(e, m, which + 1);
	CHECK_EQ(m[which].res, 0);
}

/* The blob of a layer whose TOC is larger than the default tail read (big_path, its digests
 * in big_digest and big_toc), once per process; its footer and size. */
static void big_toc_blob(struct sg_esgz_footer *footer, uint64_t *ret_size)
{
	static struct sg_esgz_footer saved;
	static uint64_t saved_size;
	struct esgz_b b;
	struct sg_digest d, td;
	struct sg_error err;

	if (!saved_size) {
		snprintf(big_path, sizeof(big_path), "%s/big-toc.blob", dir);
		esgz_init(&b, 6);
		esgz_gen_node_modules(&b, 30000, 7);
		esgz_finish(&b, 0, &td);
		sg_sha256(b.blob.p, b.blob.len, &d);
		FILE *f = fopen(big_path, "w");
		CHECK(f && fwrite(b.blob.p, 1, b.blob.len, f) == b.blob.len);
		fclose(f);
		saved_size = b.blob.len;
		CHECK_EQ(sg_esgz_parse_footer(b.blob.p + saved_size - SG_ESGZ_TAIL_READ,
					      SG_ESGZ_TAIL_READ, saved_size, &saved, &err), 0);
		/* the TOC starts before the tail */
		CHECK(saved.toc_offset < saved_size - SG_ESGZ_TAIL_READ);
		esgz_done(&b);
		sg_digest_format(&d, big_digest);
		sg_digest_format(&td, big_toc);
	}
	*footer = saved;
	*ret_size = saved_size;
}

/* Image [small layer, layer with a TOC larger than the tail read]: mounting the first fetches
 * the second's tail and then the rest of its TOC, in parallel; its own mount then reads
 * nothing more to load it. */
TEST(a_later_layers_big_toc_is_fetched_ahead)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	char layers[2 * SG_DIGEST_STRLEN + 2];
	struct sg_esgz_footer footer;
	uint64_t size;

	setup();
	big_toc_blob(&footer, &size);
	snprintf(layers, sizeof(layers), "%s,%s", layer_digest, big_digest);

	struct sg_remote_config cfg = { .cache_root = root };
	image_open(&e, &cfg, false);
	image_mount(&e, 0, layers, m);
	double end = test_now_ms() + 5000;
	while (!(counted[1] && counted[1]->reads >= 2) && test_now_ms() < end)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	for (int i = 0; i < 10; i++)   /* nothing more comes */
		CHECK(sg_loop_run_once(e.loop, 5) >= 0);
	CHECK(counted[1]);
	CHECK_EQ(counted[1]->reads, 2u);
	CHECK_EQ(counted[1]->off[0], size - SG_ESGZ_TAIL_READ);   /* the tail */
	CHECK_EQ(counted[1]->off[1], footer.toc_offset);           /* then the TOC's head */
	CHECK_EQ(counted[1]->len[1], size - SG_ESGZ_TAIL_READ - footer.toc_offset);
	image_mount(&e, 1, layers, m);
	CHECK_EQ(counted[1]->reads, 2u);   /* loaded from what was fetched ahead */
	CHECK_EQ(opens, 2);
	env_close(&e);
}

/* ---- a profile's TOC tail ---- */

/* A stored profile that names layer `layer` with TOC tail `tail`. */
static void store_tail(const char *proot, const char *layer, const char *toc, uint64_t tail)
{
	struct sg_digest ld, td;
	struct sg_profile *p;
	struct sg_error err = { 0 };

	CHECK_EQ(sg_digest_parse(layer, strlen(layer), &ld), 0);
	CHECK_EQ(sg_digest_parse(toc, strlen(toc), &td), 0);
	CHECK_EQ(sg_profile_new(&td, 1, NULL, &p), 0);
	sg_profile_set_layer(p, &ld);
	sg_profile_set_toc_tail(p, tail);
	CHECK_EQ(sg_profile_store_save(proot, p, &err), 0);
	sg_profile_free(p);
}

/* Mounts [small, big] with the profiles under proot and a cache root of its own, then the
 * big layer; both mount. */
static void mount_both_with_profiles(const char *proot, const char *croot)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	char layers[2 * SG_DIGEST_STRLEN + 2];

	snprintf(layers, sizeof(layers), "%s,%s", layer_digest, big_digest);
	tail_asked[0] = tail_asked[1] = 1;   /* "not asked" */
	struct sg_remote_config cfg = { .cache_root = croot, .profile_root = proot };
	image_open(&e, &cfg, true);
	image_mount(&e, 0, layers, m);
	double end = test_now_ms() + 5000;
	while (tail_asked[1] == 1 && test_now_ms() < end)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	for (int i = 0; i < 20; i++)   /* the tail, and the head if any, arrive */
		CHECK(sg_loop_run_once(e.loop, 5) >= 0);
	image_mount(&e, 1, layers, m);
	CHECK(counted[1]);
	big_reads = counted[1]->reads;
	big_first_read = counted[1]->off[0];
	CHECK(counted[0]);
	small_first_len = counted[0]->len[0];
	env_close(&e);
}

/* A profile says how much of each blob's end holds its TOC: the first layer's open and the
 * layer fetched ahead ask for that (rounded up to 4 KiB) instead of 512 KiB, and the big
 * TOC comes in one read, not a tail and a head.  A hint too short costs the head's read,
 * nothing else; no profile, the default. */
TEST(a_profiles_toc_tail_sizes_each_layers_first_read)
{
	struct sg_esgz_footer footer;
	uint64_t size;
	char proot[400], croot[400];
	struct stat st;

	setup();
	big_toc_blob(&footer, &size);
	CHECK_EQ(stat(blob_path, &st), 0);
	uint64_t big_tail = size - footer.toc_offset;
	uint64_t big_hint = (big_tail + 4095) & ~(uint64_t)4095;

	/* Exact tails for both layers. */
	snprintf(proot, sizeof(proot), "%s/proot1", dir);
	snprintf(croot, sizeof(croot), "%s/croot1", dir);
	store_tail(proot, big_digest, big_toc, big_tail);
	store_tail(proot, layer_digest, toc_digest, 3000);
	mount_both_with_profiles(proot, croot);
	CHECK_EQ(tail_asked[0], 4096u);
	CHECK_EQ(small_first_len, 4096u);            /* the loader reads what the open brought */
	CHECK_EQ(tail_asked[1], big_hint);
	CHECK_EQ(big_reads, 1u);                     /* the TOC in one read */
	CHECK_EQ(big_first_read, size - big_hint);

	/* A short hint for the big layer: 4 KiB asked, then the TOC's head; it mounts. */
	snprintf(proot, sizeof(proot), "%s/proot2", dir);
	snprintf(croot, sizeof(croot), "%s/croot2", dir);
	store_tail(proot, big_digest, big_toc, 100);
	mount_both_with_profiles(proot, croot);
	CHECK_EQ(tail_asked[0], 0u);   /* no profile for the first: the default */
	CHECK_EQ(small_first_len, (uint64_t)st.st_size < SG_ESGZ_TAIL_READ ? (uint64_t)st.st_size
									      : SG_ESGZ_TAIL_READ);
	CHECK_EQ(tail_asked[1], 4096u);
	CHECK_EQ(big_reads, 2u);       /* the tail, then the TOC's head */
	CHECK_EQ(big_first_read, size - 4096);
}

/* A profile's head: each layer, the first at its own open and the one fetched ahead at the
 * first's, reads it through a source that needs no open, beside its TOC; both mount. */
TEST(a_profiles_head_is_read_beside_each_layers_toc)
{
	struct sg_esgz_footer footer;
	uint64_t size;
	char proot[400], croot[400];
	struct sg_digest ld, td;
	struct sg_profile *p;
	struct sg_error err = { 0 };
	static const struct sg_profile_span head_small = { 100, 900 }, head_big = { 5000, 9000 };

	setup();
	big_toc_blob(&footer, &size);
	snprintf(proot, sizeof(proot), "%s/proot-head", dir);
	snprintf(croot, sizeof(croot), "%s/croot-head", dir);
	for (int which = 0; which < 2; which++) {
		const char *layer = which ? big_digest : layer_digest;
		const char *toc = which ? big_toc : toc_digest;
		CHECK_EQ(sg_digest_parse(layer, strlen(layer), &ld), 0);
		CHECK_EQ(sg_digest_parse(toc, strlen(toc), &td), 0);
		CHECK_EQ(sg_profile_new(&td, 1, NULL, &p), 0);
		sg_profile_set_layer(p, &ld);
		sg_profile_set_head(p, which ? &head_big : &head_small, 1);
		CHECK_EQ(sg_profile_store_save(proot, p, &err), 0);
		sg_profile_free(p);
		unsized_reads[which] = 0;
	}
	with_unsized = true;
	mount_both_with_profiles(proot, croot);
	with_unsized = false;
	CHECK_EQ(unsized_reads[0], 1u);
	CHECK_EQ(unsized_first_off[0], 100u);
	CHECK_EQ(unsized_reads[1], 1u);
	CHECK_EQ(unsized_first_off[1], 5000u);
}

/* ---- An image's entry programs (sg_remote_entry_programs) ---- */

static unsigned entries_wanted;
static char entry_ref[128];

static void want_entry(void *ctx, const char *ref)
{
	(void)ctx;
	entries_wanted++;
	snprintf(entry_ref, sizeof(entry_ref), "%s", ref);
}

/* Finishes b into blob_path, its digests in toc_digest and layer_digest. */
static void write_blob(struct esgz_b *b)
{
	struct sg_digest td, d;

	esgz_finish(b, 0, &td);
	sg_sha256(b->blob.p, b->blob.len, &d);
	FILE *f = fopen(blob_path, "w");
	CHECK(f && fwrite(b->blob.p, 1, b->blob.len, f) == b->blob.len);
	fclose(f);
	esgz_done(b);
	sg_digest_format(&td, toc_digest);
	sg_digest_format(&d, layer_digest);
}

/* The layer of an image whose command is usr/bin/app (executable, 1 MiB in 256 KiB chunks),
 * beside usr/bin/data (not executable) and usr/bin/other. */
static void entry_blob(void)
{
	struct esgz_b b;

	setup();
	esgz_init(&b, 1);
	esgz_add(&b, "usr/bin/app", '0', 0755, content[0], FILE_SIZE, NULL, CHUNK, NULL);
	esgz_add(&b, "usr/bin/data", '0', 0644, content[1], FILE_SIZE, NULL, CHUNK, NULL);
	esgz_add(&b, "usr/bin/other", '0', 0755, content[2], FILE_SIZE, NULL, CHUNK, NULL);
	write_blob(&b);
}

static uint64_t counted_bytes(void)
{
	uint64_t n = 0;
	for (unsigned i = 0; counted[0] && i < counted[0]->reads && i < 16; i++)
		n += counted[0]->len[i];
	return n;
}

static void run_for(struct env *e, double ms)
{
	double end = test_now_ms() + ms;
	while (test_now_ms() < end)
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
}

static int child_read_app(void)
{
	char path[400];
	static uint8_t buf[FILE_SIZE];

	snprintf(path, sizeof(path), "%s/usr/bin/app", mnt[0]);
	return read_path(path, buf, sizeof(buf)) == FILE_SIZE &&
	       memcmp(buf, content[0], FILE_SIZE) == 0 ? 0 : 1;
}

/* The first mount of an image's layer asks for its entry programs once; when they come, the
 * first candidate of each command that a ready layer of the image has as an executable
 * file is fetched whole (1 MiB: at most 8 MiB) before anything reads it, and the read then
 * fetches nothing; a candidate that is not executable, one no layer has, and the entry
 * programs of an image nobody asked about fetch nothing. */
TEST(an_images_entry_program_is_fetched_before_it_is_read)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	struct sg_image_entry ent = { .n = 4 };

	entry_blob();
	struct sg_remote_config cfg = { .cache_root = root, .speculate = true,
					.want_entry = want_entry };
	image_open(&e, &cfg, false);
	image_mount(&e, 0, NULL, m);
	CHECK_EQ(entries_wanted, 1);
	CHECK_STR(entry_ref, "test/image:1");
	mount_layer(&e, 2, mnt[1], toc_digest, &m[1], 0);   /* a second mount: not asked again */
	wait_mounted(&e, m, 2);
	CHECK_EQ(entries_wanted, 1);
	run_for(&e, 200);
	unsigned reads = counted[0]->reads;
	uint64_t bytes = counted_bytes();

	/* another image: ignored */
	snprintf(ent.p[0].path, sizeof(ent.p[0].path), "/usr/bin/app");
	ent.n = 1;
	sg_remote_entry_programs(e.remote, "test/other:1", &ent);
	run_for(&e, 200);
	CHECK_EQ(counted[0]->reads, reads);

	ent.n = 4;
	snprintf(ent.p[0].path, sizeof(ent.p[0].path), "/usr/local/bin/app");   /* no such file */
	snprintf(ent.p[1].path, sizeof(ent.p[1].path), "/usr/bin/data");        /* not a program */
	snprintf(ent.p[2].path, sizeof(ent.p[2].path), "/usr/bin/app");
	snprintf(ent.p[3].path, sizeof(ent.p[3].path), "/usr/bin/other");        /* app was found */
	sg_remote_entry_programs(e.remote, "test/image:1", &ent);
	run_for(&e, 500);
	CHECK(counted[0]->reads > reads);
	CHECK(counted_bytes() - bytes >= FILE_SIZE);
	CHECK(counted_bytes() - bytes < 2 * FILE_SIZE);   /* not data's nor other's */
	reads = counted[0]->reads;

	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_read_app());
	serve_until_child_exits(&e, pid, 20000);
	CHECK_EQ(counted[0]->reads, reads);   /* all of it was there */
	env_close(&e);
}

/* ---- One layer, two images: what the second image learns is the layer's too ---- */

static unsigned profiles_wanted;
static char profiles_ref[128], profiles_manifest[80];

static void want_profiles(void *ctx, const char *ref, const char *manifest_digest)
{
	(void)ctx;
	profiles_wanted++;
	snprintf(profiles_ref, sizeof(profiles_ref), "%s", ref);
	snprintf(profiles_manifest, sizeof(profiles_manifest), "%s",
		 manifest_digest ? manifest_digest : "");
}

/* Mounts layer_digest as a layer of image `ref` at `where`, key `key`; waits: it mounts. */
static void mount_for(struct env *e, int64_t key, const char *where, const char *ref)
{
	struct mount_res m = { 0 };
	struct sg_remote_layer l = { .ref = ref, .digest = layer_digest,
				     .toc_digest = toc_digest };

	CHECK_EQ(sg_remote_mount(e->remote, key, where, &l, on_mounted, &m), 0);
	wait_mounted(e, &m, 1);
	CHECK_EQ(m.res, 0);
}

/* layer_digest's stats, through the first of its mounts sg_remote_each_mount shows. */
static void first_stats(void *ud, const struct sg_remote_mount_info *m)
{
	struct sg_layer_stats *ret = ud;
	if (m->mounted && !ret->chunks_total && strcmp(m->digest, layer_digest) == 0)
		*ret = m->layer;
}

static struct sg_layer_stats layer_stats(struct env *e)
{
	struct sg_layer_stats st = { 0 };
	sg_remote_each_mount(e->remote, first_stats, &st);
	CHECK(st.chunks_total > 0);
	return st;
}

/* Stores a profile of layer_digest (mounted first, replaying nothing): its first 4 chunks. */
/* A profile of layer_digest's chunks first..first+n-1 merged into the store at proot (what
 * a recording or a profile pull does). */
static void store_chunks(struct env *e, const char *proot, uint32_t first, uint32_t n)
{
	struct sg_digest td, ld;
	struct sg_profile *p;
	struct sg_error err = { 0 };
	struct sg_layer_stats st = layer_stats(e);

	CHECK(st.chunks_total >= first + n);
	CHECK_EQ(sg_digest_parse(toc_digest, strlen(toc_digest), &td), 0);
	CHECK_EQ(sg_digest_parse(layer_digest, strlen(layer_digest), &ld), 0);
	CHECK_EQ(sg_profile_new(&td, (uint32_t)st.chunks_total, NULL, &p), 0);
	sg_profile_set_layer(p, &ld);
	for (uint32_t c = first; c < first + n; c++)
		CHECK(sg_profile_note(p, c, 1) == SG_PROFILE_RECORDED);
	CHECK_EQ(sg_profile_store_record(proot, p, &err), 0);
	sg_profile_free(p);
}

static void store_first_chunks(struct env *e, const char *proot)
{
	CHECK_EQ(layer_stats(e).replay_chunks, 0u);
	store_chunks(e, proot, 0, 4);
}

/* Image ref's profiles are stored: layer_digest replays them (its 4 chunks, fetched as kind
 * profile), or, when !replays, nothing happens. */
static void expect_replay(struct env *e, const char *ref, bool replays)
{
	struct sg_layer_stats st;

	sg_remote_profiles_stored(e->remote, ref);
	if (!replays) {
		run_for(e, 100);
		st = layer_stats(e);
		CHECK_EQ(st.replay_chunks, 0u);
		CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_PROFILE], 0u);
		return;
	}
	double end = test_now_ms() + 5000;
	while (!(st = layer_stats(e)).replay_done && test_now_ms() < end)
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
	CHECK(st.replay_done);
	CHECK_EQ(st.replay_chunks, 4u);
	run_for(e, 100);
	st = layer_stats(e);
	CHECK(st.kind_fetched_bytes[SG_FETCH_PROFILE] >= 4u * CHUNK);   /* incompressible */
}

/* Image A mounts a layer, then image B (another image on the same base layer) mounts it
 * too: B's profiles are asked for (a second mount of B is not asked again), and once they
 * are stored (what B's profile pull does) the layer, which A mounted first and which
 * replays nothing yet, replays them.  Another image's profiles stored change nothing. */
TEST(a_layer_another_image_mounted_first_replays_the_second_images_profile)
{
	struct env e;
	char proot[400], third[400];

	setup();
	snprintf(proot, sizeof(proot), "%s/proot-shared", dir);
	snprintf(third, sizeof(third), "%s/mnt-third", dir);
	CHECK_EQ(mkdir(third, 0755), 0);
	profiles_wanted = 0;
	struct sg_remote_config cfg = { .cache_root = root, .profile_root = proot,
					.want_profiles = want_profiles };
	image_open(&e, &cfg, false);
	mount_for(&e, 1, mnt[0], "test/a:1");
	CHECK_EQ(profiles_wanted, 1u);
	CHECK_STR(profiles_ref, "test/a:1");
	mount_for(&e, 2, mnt[1], "test/b:1");
	CHECK_EQ(profiles_wanted, 2u);
	CHECK_STR(profiles_ref, "test/b:1");
	mount_for(&e, 3, third, "test/b:1");   /* B again: not asked again */
	CHECK_EQ(profiles_wanted, 2u);

	store_first_chunks(&e, proot);
	expect_replay(&e, "test/other:1", false);   /* uses no mounted layer */
	expect_replay(&e, "test/b:1", true);
	env_close(&e);
}

/* A mount labelled by containerd's CRI plugin (no stargz.* labels): the image manifest's
 * digest it gives goes with the ask for the image's profiles (the pull then saves a round
 * trip); a mount without it asks without. */
TEST(the_cri_plugins_manifest_digest_goes_with_the_profile_ask)
{
	struct env e;
	struct mount_res m = { 0 };
	char proot[400], ldig[80], tdig[80];
	const char *man = "sha256:4444444444444444444444444444444444444444444444444444444444444444";

	setup();
	snprintf(proot, sizeof(proot), "%s/proot-cri", dir);
	profiles_wanted = 0;
	struct sg_remote_config cfg = { .cache_root = root, .profile_root = proot,
					.want_profiles = want_profiles };
	image_open(&e, &cfg, false);
	snprintf(ldig, sizeof(ldig), "%s", layer_digest);
	snprintf(tdig, sizeof(tdig), "%s", toc_digest);
	struct sg_label labels[] = {
		{ SG_LABEL_TARGET, "sha256:5555" },
		{ SG_LABEL_CRI_REF, "test/cri:1" },
		{ SG_LABEL_CRI_DIGEST, ldig },
		{ SG_LABEL_CRI_LAYERS, ldig },
		{ SG_LABEL_CRI_MANIFEST, (char *)man },
		{ SG_LABEL_TOC_DIGEST, tdig },
	};
	struct sg_remote_layer l;
	CHECK(sg_remote_layer_info(labels, sizeof(labels) / sizeof(labels[0]), &l));
	CHECK_STR(l.manifest_digest, man);
	CHECK_EQ(sg_remote_mount(e.remote, 1, mnt[0], &l, on_mounted, &m), 0);
	wait_mounted(&e, &m, 1);
	CHECK_EQ(profiles_wanted, 1u);
	CHECK_STR(profiles_ref, "test/cri:1");
	CHECK_STR(profiles_manifest, man);
	mount_for(&e, 2, mnt[1], "test/plain:1");
	CHECK_EQ(profiles_wanted, 2u);
	CHECK_STR(profiles_manifest, "");
	env_close(&e);
}

/* The layer's profile is stored while its blob opens (a registry's, pulled beside the
 * open): its head is read at once, beside the TOC, before the open answers (stored again
 * meanwhile: not read twice).  Then the open answers: the layer mounts; or, when
 * open_fails, the mount fails, once, and the early reads are let go (ASan: nothing leaks). */
static void late_head(bool open_fails)
{
	struct env e;
	struct mount_res m[1] = { 0 };
	char proot[400];
	struct sg_digest ld, td;
	struct sg_profile *p;
	struct sg_error err = { 0 };
	static const struct sg_profile_span head = { 100, 900 };

	setup();
	snprintf(proot, sizeof(proot), "%s/proot-late", dir);
	CHECK_EQ(sg_loop_new(NULL, &e.loop), 0);
	struct sg_remote_config cfg = { .cache_root = root, .profile_root = proot,
					.want_profiles = want_profiles };
	/* the open of test/late:1 held; counted sources that need no open (the early reads') */
	struct sg_blob_opener opener = { .open = holding_open, .unsized = counting_unsized,
					 .ctx = e.loop };
	held_ref = "test/late:1";
	held_others = counting_open;
	CHECK_EQ(sg_remote_new(e.loop, &cfg, &opener, &e.remote), 0);
	held_op = NULL;
	unsized_reads[0] = 0;
	struct sg_remote_layer l = { .ref = "test/late:1", .digest = layer_digest,
				     .toc_digest = toc_digest };
	CHECK_EQ(sg_remote_mount(e.remote, 1, mnt[0], &l, on_mounted, &m[0]), 0);
	run_for(&e, 50);
	CHECK(held_op);                       /* the open is on its way */
	CHECK_EQ(unsized_reads[0], 0u);       /* no profile yet: nothing read early */

	CHECK_EQ(sg_digest_parse(layer_digest, strlen(layer_digest), &ld), 0);
	CHECK_EQ(sg_digest_parse(toc_digest, strlen(toc_digest), &td), 0);
	CHECK_EQ(sg_profile_new(&td, 1, NULL, &p), 0);
	sg_profile_set_layer(p, &ld);
	sg_profile_set_head(p, &head, 1);
	CHECK_EQ(sg_profile_store_save(proot, p, &err), 0);
	sg_profile_free(p);
	sg_remote_profiles_stored(e.remote, "test/late:1");
	sg_remote_profiles_stored(e.remote, "test/late:1");
	run_for(&e, 50);
	CHECK_EQ(unsized_reads[0], 1u);       /* the head, while the open is still held */
	CHECK_EQ(unsized_first_off[0], 100u);

	if (open_fails) {   /* a failed open hands over no source */
		sg_range_source_free(*held_src);
		*held_src = NULL;
	}
	CHECK_EQ(sg_post(e.loop, held_op, open_fails ? -EIO : 0, held_cb), 0);
	wait_mounted(&e, m, 1);
	run_for(&e, 50);   /* on_mounted checks it is answered once */
	if (open_fails)
		CHECK(m[0].res < 0);
	else
		CHECK_EQ(m[0].res, 0);
	CHECK_EQ(unsized_reads[0], 1u);
	env_close(&e);
	held_ref = "test/b:1";
	held_others = file_open;
}

TEST(a_profile_stored_while_the_blob_opens_has_its_head_read_beside_the_toc)
{
	late_head(false);
}

TEST(a_profile_stored_while_the_blob_opens_then_the_open_fails)
{
	late_head(true);
}

/* The layer replays image A's profile; image B mounts it and B's profile, with chunks A's
 * has not, is stored (merged: what B's profile pull does): B's chunks join the replay and
 * are fetched as kind profile too, A's not again.  Stored again with nothing new: nothing
 * more is fetched. */
TEST(a_second_images_profile_joins_the_replay_of_the_first)
{
	struct env e;
	char proot[400];
	struct sg_layer_stats st;

	setup();
	snprintf(proot, sizeof(proot), "%s/proot-join", dir);
	struct sg_remote_config cfg = { .cache_root = root, .profile_root = proot,
					.want_profiles = want_profiles };
	image_open(&e, &cfg, false);
	mount_for(&e, 1, mnt[0], "test/a:1");
	store_first_chunks(&e, proot);
	expect_replay(&e, "test/a:1", true);
	uint64_t a_bytes = layer_stats(&e).kind_fetched_bytes[SG_FETCH_PROFILE];
	mount_for(&e, 2, mnt[1], "test/b:1");
	store_chunks(&e, proot, 2, 6);   /* 2..7: 4..7 are new */
	sg_remote_profiles_stored(e.remote, "test/b:1");
	double end = test_now_ms() + 5000;
	while ((st = layer_stats(&e)).kind_fetched_bytes[SG_FETCH_PROFILE] < a_bytes + 4u * CHUNK &&
	       test_now_ms() < end)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	run_for(&e, 100);
	st = layer_stats(&e);
	CHECK_EQ(st.replay_chunks, 4u);   /* 4..7: what was left to fetch when B's joined */
	CHECK(st.kind_fetched_bytes[SG_FETCH_PROFILE] >= a_bytes + 4u * CHUNK);
	CHECK(st.kind_fetched_bytes[SG_FETCH_PROFILE] < a_bytes + 5u * CHUNK);   /* 0..3 once */
	uint64_t both = st.kind_fetched_bytes[SG_FETCH_PROFILE];
	sg_remote_profiles_stored(e.remote, "test/b:1");
	run_for(&e, 100);
	CHECK_EQ(layer_stats(&e).kind_fetched_bytes[SG_FETCH_PROFILE], both);
	env_close(&e);
}

/* Image B's top layer has the layer image A mounted below it (containerd mounts a chain of
 * layers once: B's Prepare names A's snapshot as its parent, and the layer is never mounted
 * for B): B's profiles, once stored, are replayed on it too.  Image C's top layer, mounted
 * without that chain, changes nothing. */
TEST(a_layer_below_another_images_top_layer_replays_that_images_profile)
{
	struct env e;
	struct mount_res m[3] = { 0 };
	struct sg_esgz_footer footer;
	uint64_t size;
	char proot[400], third[400];

	setup();
	big_toc_blob(&footer, &size);
	snprintf(proot, sizeof(proot), "%s/proot-below", dir);
	snprintf(third, sizeof(third), "%s/mnt-third", dir);
	CHECK_EQ(mkdir(third, 0755), 0);
	struct sg_remote_config cfg = { .cache_root = root, .profile_root = proot };
	image_open(&e, &cfg, false);
	mount_for(&e, 1, mnt[0], "test/a:1");
	struct sg_remote_layer top = { .ref = "test/c:1", .digest = big_digest,
				       .toc_digest = big_toc };
	CHECK_EQ(sg_remote_mount(e.remote, 2, mnt[1], &top, on_mounted, &m[1]), 0);
	static const int64_t below[] = { 1, 77 };   /* 77: not mounted, skipped */
	top.ref = "test/b:1";
	top.below = below;
	top.n_below = 2;
	CHECK_EQ(sg_remote_mount(e.remote, 3, third, &top, on_mounted, &m[2]), 0);
	wait_mounted(&e, &m[1], 2);
	CHECK_EQ(m[1].res, 0);
	CHECK_EQ(m[2].res, 0);

	store_first_chunks(&e, proot);
	expect_replay(&e, "test/c:1", false);
	expect_replay(&e, "test/b:1", true);
	env_close(&e);
}

/* The images asked about are remembered for profile_ask_again_ns: a mount of one asked
 * within that time asks nothing, one after it asks again (profiles pushed since are found);
 * and only the last 64 images are remembered, the oldest forgotten first. */
TEST(an_images_profiles_are_asked_for_again_after_a_while_and_the_list_is_bounded)
{
	struct env e;
	char proot[400], where[400], ref[64];
	int64_t key = 1;

	setup();
	snprintf(proot, sizeof(proot), "%s/proot-again", dir);
	profiles_wanted = 0;
	struct sg_remote_config cfg = { .cache_root = root, .profile_root = proot,
					.want_profiles = want_profiles,
					.profile_ask_again_ns = 1000ull * 1000000u };
#define MOUNT_AS(r) do { \
		snprintf(where, sizeof(where), "%s/mnt-again-%lld", dir, (long long)key); \
		CHECK_EQ(mkdir(where, 0755), 0); \
		mount_for(&e, key++, where, (r)); \
	} while (0)
	image_open(&e, &cfg, false);
	MOUNT_AS("test/a:1");
	CHECK_EQ(profiles_wanted, 1u);
	MOUNT_AS("test/a:1");            /* within the time: not asked */
	CHECK_EQ(profiles_wanted, 1u);
	run_for(&e, 1050);
	MOUNT_AS("test/a:1");            /* after it: asked again */
	CHECK_EQ(profiles_wanted, 2u);
	CHECK_STR(profiles_ref, "test/a:1");
	env_close(&e);

	/* The default time (10 min), and 65 images: the oldest is forgotten, the newest not. */
	cfg.profile_ask_again_ns = 0;
	profiles_wanted = 0;
	image_open(&e, &cfg, false);
	MOUNT_AS("test/a:1");
	for (int i = 0; i < 64; i++) {
		snprintf(ref, sizeof(ref), "test/n%d:1", i);
		MOUNT_AS(ref);
	}
	CHECK_EQ(profiles_wanted, 65u);
	MOUNT_AS("test/n63:1");
	MOUNT_AS("test/n1:1");
	CHECK_EQ(profiles_wanted, 65u);
	MOUNT_AS("test/a:1");            /* forgotten: asked again */
	CHECK_EQ(profiles_wanted, 66u);
	CHECK_STR(profiles_ref, "test/a:1");
	MOUNT_AS("test/n0:1");           /* forgotten to make room for test/a:1 */
	CHECK_EQ(profiles_wanted, 67u);
	MOUNT_AS("test/n2:1");           /* still remembered */
	CHECK_EQ(profiles_wanted, 67u);
#undef MOUNT_AS
	env_close(&e);
}

/* The same for entry programs: image B's mount of a layer image A mounted first asks for B's
 * config, and B's entry program, in that layer, is fetched ahead. */
TEST(a_layer_another_image_mounted_first_fetches_the_second_images_entry_program)
{
	struct env e;
	struct sg_image_entry ent = { .n = 1 };

	entry_blob();
	entries_wanted = 0;
	struct sg_remote_config cfg = { .cache_root = root, .speculate = true,
					.want_entry = want_entry };
	image_open(&e, &cfg, false);
	mount_for(&e, 1, mnt[0], "test/a:1");
	CHECK_EQ(entries_wanted, 1u);
	mount_for(&e, 2, mnt[1], "test/b:1");
	CHECK_EQ(entries_wanted, 2u);
	CHECK_STR(entry_ref, "test/b:1");
	run_for(&e, 200);
	/* Through A's source or B's own (a mount of another image reads from its registry). */
	unsigned reads = counted_reads;
	uint64_t bytes = counted_read_bytes;

	snprintf(ent.p[0].path, sizeof(ent.p[0].path), "/usr/bin/app");
	sg_remote_entry_programs(e.remote, "test/b:1", &ent);
	run_for(&e, 500);
	CHECK(counted_reads > reads);
	CHECK(counted_read_bytes - bytes >= FILE_SIZE);
	env_close(&e);
}

/* ---- A compiler's command line (daemon/proc_hint.h) ---- */

/* A layer with usr/include/stdio.h (which includes <bits/types.h>), the multiarch
 * bits/types.h, a header nothing includes, and usr/share/readme (what the "compiler" reads
 * first), in that blob order; readme alone in its directory and last, so that its miss
 * brings no neighbours. */
static void hint_blob(void)
{
	static const struct { const char *path, *text; } files[] = {
		{ "usr/include/other/unrelated.h", "/* nothing */\n" },
		{ "usr/include/x86_64-linux-gnu/bits/types.h", "/* no includes */\n" },
		{ "usr/include/stdio.h", "#include <bits/types.h>\n" },
		{ "usr/share/readme", "read me\n" },
	};
	struct esgz_b b;

	setup();
	esgz_init(&b, 1);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		esgz_add(&b, files[i].path, '0', 0644, (const uint8_t *)files[i].text,
			 strlen(files[i].text), NULL, 0, NULL);
	write_blob(&b);
}

/* dash copied as x86_64-linux-gnu-gcc-12 (its /proc/PID/exe names a compiler), run with a
 * source on its command line: its -c command reads the first bytes of a file of the mount
 * itself (the daemon learns its pid from the FUSE read), then waits. */
static int child_compiler(int which)
{
	char gcc[400], src[400], cmd[600];

	snprintf(gcc, sizeof(gcc), "%s/x86_64-linux-gnu-gcc-12", dir);
	snprintf(src, sizeof(src), "%s/h.c", dir);
	snprintf(cmd, sizeof(cmd), "read x < %s/usr/share/readme; sleep 1", mnt[which]);
	char *const argv[] = { "gcc", "-c", cmd, "-o", "/dev/null", src, NULL };
	execv(gcc, argv);
	return 127;
}

static int child_read_headers(void)
{
	static const char *const headers[] = { "usr/include/stdio.h",
					       "usr/include/x86_64-linux-gnu/bits/types.h" };
	char path[400];
	uint8_t buf[256];

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", mnt[0], headers[i]);
		if (read_path(path, buf, sizeof(buf)) <= 0)
			return 1;
	}
	return 0;
}

/* Runs the compiler, then reads its source's header and what that includes; the reads of
 * the blob the headers' reads caused.  With two_mounts, the layer is mounted twice (two
 * snapshots of one image): the compiler reads through the second, the headers are read
 * through the first. */
static unsigned compile_then_read_headers(bool hints, bool two_mounts)
{
	struct env e;
	struct mount_res m[2] = { 0 };
	char path[400];

	hint_blob();
	snprintf(path, sizeof(path), "cp /bin/dash %s/x86_64-linux-gnu-gcc-12", dir);
	CHECK_EQ(system(path), 0);
	snprintf(path, sizeof(path), "%s/h.c", dir);
	FILE *f = fopen(path, "w");
	CHECK(f && fputs("#include <stdio.h>\nint main(void) { return 0; }\n", f) >= 0);
	fclose(f);
	struct sg_remote_config cfg = { .cache_root = root, .speculate = true,
					.process_hints = hints };
	image_open(&e, &cfg, false);
	image_mount(&e, 0, NULL, m);
	if (two_mounts) {
		struct sg_remote_layer l = { .ref = "test/image:1", .digest = layer_digest,
					     .toc_digest = toc_digest };
		CHECK_EQ(sg_remote_mount(e.remote, 2, mnt[1], &l, on_mounted, &m[1]), 0);
		wait_mounted(&e, m, 2);
		CHECK_EQ(m[1].res, 0);
	}
	run_for(&e, 200);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_compiler(two_mounts ? 1 : 0));
	serve_until_child_exits(&e, pid, 20000);
	run_for(&e, 200);
	unsigned before = counted_reads;   /* through either mount's source */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_read_headers());
	serve_until_child_exits(&e, pid, 20000);
	unsigned reads = counted_reads - before;
	env_close(&e);
	cleanup();
	return reads;
}

/* A compiler's source names <stdio.h>: with process hints the daemon reads the source as the
 * compiler sees it, fetches stdio.h and, as it arrives, what it includes, before the
 * compiler reads them (reading them then fetches nothing); without, they are misses. */
TEST(a_compilers_source_headers_are_fetched_before_it_reads_them)
{
	CHECK_EQ(compile_then_read_headers(true, false), 0u);
	CHECK(compile_then_read_headers(false, false) >= 1u);
}

/* Two mounts of one layer: the compiler reads through one, the headers are read through the
 * other.  The hint is the content's (both mounts serve one layer): the headers arrive once,
 * before the reads through the other mount, which then fetch nothing. */
TEST(a_compilers_headers_are_fetched_once_for_two_mounts_of_its_layer)
{
	CHECK_EQ(compile_then_read_headers(true, true), 0u);
	CHECK(compile_then_read_headers(false, true) >= 1u);
}

/* ---- An image pull's layers, held before containerd's Prepare (sg_remote_hold) ---- */

static const char *hold_ref = "reg.test/app:1";
static const char *hold_manifest =
	"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/* Prefetch and background fetch on, reads counted, profiles asked for recorded. */
static void hold_env(struct env *e)
{
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	struct sg_remote_config cfg = { .cache_root = root, .prefetch = true,
					.background_fetch = true, .profile_root = dir,
					.want_profiles = want_profiles };
	struct sg_blob_opener opener = { .open = counting_open, .ctx = e->loop };
	CHECK_EQ(sg_remote_new(e->loop, &cfg, &opener, &e->remote), 0);
	opens = counted_reads = 0;
	counted_read_bytes = 0;
	profiles_wanted = 0;
}

/* Holds layer_digest with TOC digest `toc` for hold_ref, beside a layer that is not eStargz
 * (no TOC digest: skipped, never opened). */
static struct sg_remote_hold *hold_layer(struct env *e, const char *toc)
{
	struct sg_remote_expected layers[] = {
		{ .digest = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" },
		{ .digest = layer_digest, .toc_digest = toc },
	};
	struct sg_remote_hold *h = NULL;
	CHECK_EQ(sg_remote_hold(e->remote, hold_ref, hold_manifest, layers, 2, &h), 0);
	CHECK(h != NULL);
	return h;
}

static uint64_t cached_bytes(struct env *e)
{
	struct sg_cache_bound_stats st;
	sg_remote_cache_stats(e->remote, &st);
	return st.bytes;
}

/* The layer is fetched whole (background fetch) before any mount; false on timeout. */
static bool wait_cached(struct env *e, uint64_t bytes)
{
	double end = test_now_ms() + 10000;
	while (cached_bytes(e) < bytes) {
		if (test_now_ms() > end)
			return false;
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
	}
	return true;
}

/* A pull holds the layer: its TOC is loaded and its files fetched with no mount yet, and the
 * image's profiles are asked for with the manifest's digest.  The Prepare's mount then joins
 * it: no second open, no read of the blob, and the bytes are right.  Letting the hold go
 * leaves the mount as it is. */
TEST(a_held_layer_is_fetched_before_its_mount_which_joins_it)
{
	struct env e;

	setup();
	hold_env(&e);
	struct sg_remote_hold *h = hold_layer(&e, toc_digest);
	CHECK_EQ(profiles_wanted, 1u);
	CHECK_STR(profiles_ref, hold_ref);
	CHECK_STR(profiles_manifest, hold_manifest);
	CHECK(wait_cached(&e, (uint64_t)NFILES * FILE_SIZE));
	CHECK_EQ(opens, 1u);
	unsigned reads = counted_reads;
	mount_for(&e, 1, mnt[0], hold_ref);
	CHECK_EQ(opens, 1u);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_read_file(mnt[0], 3, "held f3") || child_read_file(mnt[0], 7, "held f7"));
	serve_until_child_exits(&e, pid, 20000);
	CHECK_EQ(counted_reads, reads);   /* everything came before the mount */
	sg_remote_unhold(h, true);
	run_for(&e, 50);
	CHECK(sg_remote_is_mounted(e.remote, 1));
	env_close(&e);
	cleanup();
}

/* A hold let go while its blob still opens gives the load up; one let go after the layer
 * loaded closes it: the shutdown that follows finds no content left (it would wait for it
 * forever otherwise).  A mount after either loads the layer anew. */
TEST(a_hold_let_go_with_no_mount_closes_its_layer)
{
	struct env e;
	struct mount_res m = { 0 };
	int unmounted = 0;

	setup();
	hold_env(&e);
	sg_remote_unhold(hold_layer(&e, toc_digest), true);   /* before the open answers */
	run_for(&e, 100);
	CHECK_EQ(opens, 1u);
	struct sg_remote_hold *h = hold_layer(&e, toc_digest);
	CHECK_EQ(opens, 2u);   /* the first content went */
	CHECK(wait_cached(&e, FILE_SIZE));
	sg_remote_unhold(h, true);
	run_for(&e, 200);
	mount_layer(&e, 1, mnt[0], toc_digest, &m, 0);
	wait_mounted(&e, &m, 1);
	CHECK_EQ(m.res, 0);
	CHECK_EQ(opens, 3u);
	sg_remote_unmount(e.remote, 1, on_unmounted, &unmounted);
	run_for(&e, 200);
	CHECK_EQ(unmounted, 1);
	env_close(&e);
	cleanup();
}

/* Two pulls hold a layer whose TOC does not match the manifest's TOC digest: its load fails
 * once, quietly (no mount waits), and both holds forget it; a mount with the right digest
 * loads it anew.  A mount naming another TOC digest than a held layer's is refused. */
TEST(two_holds_of_a_layer_whose_load_fails_both_let_it_go)
{
	struct env e;
	char wrong[SG_DIGEST_STRLEN + 1];

	setup();
	hold_env(&e);
	snprintf(wrong, sizeof(wrong), "sha256:%064d", 7);
	struct sg_remote_hold *h1 = hold_layer(&e, wrong);
	struct sg_remote_hold *h2 = hold_layer(&e, wrong);
	CHECK_EQ(opens, 1u);   /* the second joined the first */
	run_for(&e, 300);
	mount_for(&e, 1, mnt[0], hold_ref);
	CHECK_EQ(opens, 2u);
	sg_remote_unhold(h2, true);
	sg_remote_unhold(h1, true);
	struct sg_remote_hold *h3 = hold_layer(&e, toc_digest);
	struct mount_res m = { 0 };
	struct sg_remote_layer other = { .ref = hold_ref, .digest = layer_digest,
					 .toc_digest = wrong };
	CHECK_EQ(sg_remote_mount(e.remote, 2, mnt[1], &other, on_mounted, &m), -EBUSY);
	sg_remote_unhold(h3, true);
	env_close(&e);
	cleanup();
}

/* The daemon stops while two pulls hold a layer that is still loading: the shutdown lets
 * the holds go and ends; the pulls' answers come after the remote is freed, and letting
 * their holds go then touches nothing freed (ASan). */
TEST(a_shutdown_with_two_holds_in_flight)
{
	struct env e;

	setup();
	hold_env(&e);
	struct sg_remote_hold *h1 = hold_layer(&e, toc_digest);
	struct sg_remote_hold *h2 = hold_layer(&e, toc_digest);
	env_close(&e);
	sg_remote_unhold(h2, false);
	sg_remote_unhold(h1, false);
	sg_remote_unhold(NULL, true);
	cleanup();
}

TEST_MAIN()
