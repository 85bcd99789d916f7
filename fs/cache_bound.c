#include "fs/cache_bound.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/list.h"
#include "daemon/core/loop.h"

#define TRASH_PREFIX ".trash-"
#define EVICT_CHUNKS 64u          /* chunks punched per batch */
#define UNLINK_BATCH 256u         /* files removed per batch */
#define SYNC_BATCHES 4u           /* batches sg_cache_bound_reserve may run itself */
#define CLOCK_RESCALE 0xf0000000u

/* A layer directory nobody has mounted: from an earlier run, or a layer unmounted since. */
struct idle_dir {
	struct sg_list link;          /* sorted by mtime, oldest first */
	char name[80];                /* under the root; TRASH_PREFIX once being removed */
	uint64_t bytes;
	uint64_t mtime_ns;
	DIR *d;                       /* while being emptied */
	bool stuck;                   /* could not be removed: counted, not retried */
};

struct sg_cache_bound_layer {
	struct sg_cache_bound *c;
	struct sg_list link;
	char name[80];                /* "" when the directory is not a child of the root */
	uint64_t bytes;
	struct sg_cache_bound_client client;
};

struct sg_cache_bound {
	struct sg_loop *loop;
	char root[PATH_MAX];
	int root_fd;
	int lock_fd;                  /* SG_CACHE_BOUND_LOCK_NAME, flock'ed while we live */
	uint32_t block;
	uint64_t max, bytes, idle_bytes;
	uint32_t clock;
	struct sg_list idle;          /* struct idle_dir */
	struct sg_list layers;        /* struct sg_cache_bound_layer */
	struct sg_op evict_op;
	struct sg_cache_bound_stats stats;
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool is_layer_name(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 64;
}

/* Allocated bytes of a flat directory: its files and itself. */
static uint64_t dir_usage(int dirfd, const char *name)
{
	struct stat st;
	uint64_t total = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			total += (uint64_t)st.st_blocks * 512u;   /* "." is the directory itself */
	closedir(d);
	return total;
}

static void idle_insert(struct sg_cache_bound *c, struct idle_dir *e)
{
	struct sg_list *n;

	for (n = c->idle.next; n != &c->idle; n = n->next)
		if (sg_container_of(n, struct idle_dir, link)->mtime_ns > e->mtime_ns)
			break;
	/* before n */
	e->link.next = n;
	e->link.prev = n->prev;
	n->prev->next = &e->link;
	n->prev = &e->link;
	c->idle_bytes += e->bytes;
}

static void idle_drop(struct sg_cache_bound *c, struct idle_dir *e)
{
	sg_list_unlink(&e->link);
	c->idle_bytes -= e->bytes;
	c->bytes -= e->bytes;
	if (e->d)
		closedir(e->d);
	free(e);
}

static int idle_add(struct sg_cache_bound *c, const char *name, uint64_t bytes, uint64_t mtime_ns)
{
	struct idle_dir *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->bytes = bytes;
	e->mtime_ns = mtime_ns;
	c->bytes += bytes;
	idle_insert(c, e);
	return 0;
}

uint64_t sg_cache_bound_default_max(const char *root)
{
	struct statvfs sv;
	uint64_t max = SG_CACHE_BOUND_DEFAULT_MAX;

	if (statvfs(root, &sv) == 0) {
		uint64_t half = (uint64_t)sv.f_blocks * sv.f_frsize / 2;
		if (half > 0 && half < max)
			max = half;
	}
	return max;
}

static int scan_root(struct sg_cache_bound *c)
{
	int fd = dup(c->root_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	struct stat st;

	if (!d) {
		int e = -errno;
		if (fd >= 0)
			close(fd);
		return e;
	}
	while ((de = readdir(d))) {
		bool trash = strncmp(de->d_name, TRASH_PREFIX, strlen(TRASH_PREFIX)) == 0;
		if (!trash && !is_layer_name(de->d_name))
			continue;
		if (fstatat(c->root_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		/* Half-removed directories go first. */
		uint64_t mtime = trash ? 0 : (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
		if (idle_add(c, de->d_name, dir_usage(c->root_fd, de->d_name), mtime) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	return 0;
}

static void schedule_evict(struct sg_cache_bound *c);

/* One sg_cache_bound per directory, across processes: a second one (`stargzd mount` beside the
 * daemon on its root) would evict, punch and remove what the first one serves, and its
 * accounting would be wrong.  The lock file is neither a layer name nor .trash-*, so the
 * walk, the accounting and the eviction never see it.  The pid is only a hint for the
 * message of the one refused. */
static int take_lock(struct sg_cache_bound *c)
{
	char pid[24];
	int n;

	c->lock_fd = openat(c->root_fd, SG_CACHE_BOUND_LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC,
			    0600);
	if (c->lock_fd < 0)
		return -errno;
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(c->lock_fd, 0) < 0)
		return -errno;
	if (pwrite(c->lock_fd, pid, (size_t)n, 0) != n)
		return -EIO;
	return 0;
}

long sg_cache_bound_lock_owner(const char *root)
{
	char path[PATH_MAX], buf[24];
	ssize_t n;
	long pid;
	int fd;

	if (snprintf(path, sizeof(path), "%s/" SG_CACHE_BOUND_LOCK_NAME, root) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ENODATA;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 ? pid : -ENODATA;
}

int sg_cache_bound_new(struct sg_loop *loop, const char *root, uint64_t max_bytes,
		 struct sg_cache_bound **ret)
{
	struct sg_cache_bound *c = calloc(1, sizeof(*c));
	struct statvfs sv;
	int r;

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	snprintf(c->root, sizeof(c->root), "%s", root);
	sg_list_init(&c->idle);
	sg_list_init(&c->layers);
	sg_op_init(&c->evict_op);
	c->root_fd = c->lock_fd = -1;
	if (mkdir(root, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	c->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->root_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = take_lock(c);
	if (r < 0)
		goto fail;
	c->block = fstatvfs(c->root_fd, &sv) == 0 && sv.f_frsize >= 512 && sv.f_frsize <= (1u << 20)
		   ? (uint32_t)sv.f_frsize : 4096u;
	c->max = max_bytes ? max_bytes : sg_cache_bound_default_max(root);
	r = scan_root(c);
	if (r < 0)
		goto fail;
	/* No eviction starts here, even over the bound: a constructor starts no work, so a
	 * caller that fails after this can free the cache at once.  The first attach, reserve
	 * or sg_cache_bound_set_max evicts. */
	*ret = c;
	return 0;
fail:
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	if (c->root_fd >= 0)
		close(c->root_fd);
	free(c);
	return r;
}

void sg_cache_bound_free(struct sg_cache_bound *c)
{
	struct sg_list *n;

	if (!c)
		return;
	/* evict_op points into c until its callback has run. */
	SG_FREE_CHECK(sg_op_busy(&c->evict_op), "cache (an eviction is posted)");
	while ((n = sg_list_pop(&c->idle))) {
		struct idle_dir *e = sg_container_of(n, struct idle_dir, link);
		if (e->d)
			closedir(e->d);
		free(e);
	}
	while ((n = sg_list_pop(&c->layers)))
		sg_container_of(n, struct sg_cache_bound_layer, link)->c = NULL;
	close(c->root_fd);
	close(c->lock_fd);   /* releases the directory to the next process */
	free(c);
}

void sg_cache_bound_set_max(struct sg_cache_bound *c, uint64_t max_bytes)
{
	c->max = max_bytes ? max_bytes : sg_cache_bound_default_max(c->root);
	if (c->bytes > c->max)
		schedule_evict(c);
}

void sg_cache_bound_stats(const struct sg_cache_bound *c, struct sg_cache_bound_stats *ret)
{
	*ret = c->stats;
	ret->max_bytes = c->max;
	ret->bytes = c->bytes;
	ret->idle_bytes = c->idle_bytes;
	ret->layers = ret->idle_dirs = 0;
	for (const struct sg_list *n = c->layers.next; n != &c->layers; n = n->next)
		ret->layers++;
	for (const struct sg_list *n = c->idle.next; n != &c->idle; n = n->next)
		ret->idle_dirs++;
}

uint32_t sg_cache_bound_block_size(const struct sg_cache_bound *c)
{
	return c->block;
}

uint64_t sg_cache_bound_extent(const struct sg_cache_bound *c, uint64_t offset, uint64_t len)
{
	uint64_t b = c->block;

	if (len == 0)
		return 0;
	return ((offset + len + b - 1) / b - offset / b) * b;
}

static uint64_t watermark(const struct sg_cache_bound *c)
{
	return c->max / 100u * SG_CACHE_BOUND_WATERMARK_PCT;
}

/* ---- eviction ---- */

/* Removes up to UNLINK_BATCH files of the oldest idle directory.  Returns the bytes freed,
 * or 0 when it made no progress. */
static uint64_t idle_step(struct sg_cache_bound *c, struct idle_dir *e)
{
	uint64_t freed = 0;
	char trash[sizeof(e->name)];

	if (!e->d) {
		if (strncmp(e->name, TRASH_PREFIX, strlen(TRASH_PREFIX)) != 0) {
			/* Out of the way at once: a layer mounted from now on starts afresh. */
			snprintf(trash, sizeof(trash), TRASH_PREFIX "%.64s", e->name);
			if (renameat(c->root_fd, e->name, c->root_fd, trash) < 0) {
				if (errno == ENOENT)
					goto gone;
				e->stuck = true;
				return 1;   /* try the next one */
			}
			snprintf(e->name, sizeof(e->name), "%s", trash);
		}
		int fd = openat(c->root_fd, e->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		e->d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!e->d) {
			if (fd >= 0)
				close(fd);
			if (errno == ENOENT)
				goto gone;
			e->stuck = true;
			return 1;
		}
	}
	int dfd = dirfd(e->d);
	struct dirent *de;
	struct stat st;
	for (unsigned i = 0; i < UNLINK_BATCH; i++) {
		de = readdir(e->d);
		if (!de)
			break;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		uint64_t b = fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
			     ? (uint64_t)st.st_blocks * 512u : 0;
		if (unlinkat(dfd, de->d_name, 0) < 0)
			continue;
		b = b < e->bytes ? b : e->bytes;
		e->bytes -= b;
		c->idle_bytes -= b;
		c->bytes -= b;
		freed += b;
	}
	c->stats.removed_dir_bytes += freed;
	if (de)
		return freed ? freed : 1;   /* more to come */
	closedir(e->d);
	e->d = NULL;
	if (unlinkat(c->root_fd, e->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
		e->stuck = true;
		return freed ? freed : 1;
	}
gone:
	freed += e->bytes;
	c->stats.removed_dirs++;
	c->stats.removed_dir_bytes += e->bytes;
	idle_drop(c, e);
	return freed ? freed : 1;
}

/* One batch: an idle directory's files, or the least recently used chunks.  Returns the
 * bytes freed; 0 when nothing more can be evicted. */
static uint64_t evict_batch(struct sg_cache_bound *c, uint64_t goal)
{
	struct sg_list *n;

	for (n = c->idle.next; n != &c->idle; n = n->next) {
		struct idle_dir *e = sg_container_of(n, struct idle_dir, link);
		if (!e->stuck)
			return idle_step(c, e);
	}
	struct sg_cache_bound_layer *best = NULL;
	uint32_t best_stamp = UINT32_MAX, second = UINT32_MAX, s;
	for (n = c->layers.next; n != &c->layers; n = n->next) {
		struct sg_cache_bound_layer *cl =
			sg_container_of(n, struct sg_cache_bound_layer, link);
		if (!cl->client.oldest || !cl->client.oldest(cl->client.ctx, &s))
			continue;
		if (!best || s < best_stamp) {
			second = best ? best_stamp : second;
			best = cl;
			best_stamp = s;
		} else if (s < second) {
			second = s;
		}
	}
	if (!best)
		return 0;
	unsigned chunks = 0;
	uint64_t want = c->bytes > goal ? c->bytes - goal : 0;
	uint64_t freed = best->client.evict(best->client.ctx, second, want, EVICT_CHUNKS, &chunks);
	freed = freed < best->bytes ? freed : best->bytes;
	best->bytes -= freed;
	c->bytes -= freed;
	c->stats.evicted_chunks += chunks;
	c->stats.evicted_bytes += freed;
	return freed;
}

static void evict_cb(struct sg_op *op)
{
	struct sg_cache_bound *c = sg_container_of(op, struct sg_cache_bound, evict_op);

	/* Background work: not worth delaying a shutdown for (posts are still delivered while
	 * the loop drains, so stop here rather than evict batch after batch). */
	if (op->res == -ECANCELED || sg_loop_stopping(c->loop))
		return;
	if (c->bytes > watermark(c) && evict_batch(c, watermark(c)) > 0)
		schedule_evict(c);
}

/* The rest of an eviction runs from the loop, one batch per iteration.  The post cannot be
 * refused (evict_op is idle, and posts are accepted while the loop drains); if it were, the
 * next reserve would simply evict again. */
static void schedule_evict(struct sg_cache_bound *c)
{
	if (!sg_op_busy(&c->evict_op))
		(void)sg_post(c->loop, &c->evict_op, 0, evict_cb);
}

int sg_cache_bound_reserve(struct sg_cache_bound_layer *cl, uint64_t bytes)
{
	struct sg_cache_bound *c = cl->c;

	if (!c)
		return -ENOSPC;
	if (bytes > watermark(c)) {
		c->stats.refused++;   /* could never fit: evicting for it would only churn */
		return -ENOSPC;
	}
	if (c->bytes + bytes > c->max) {
		uint64_t goal = watermark(c);
		if (goal + bytes > c->max)
			goal = c->max - bytes;
		for (unsigned i = 0; i < SYNC_BATCHES && c->bytes + bytes > c->max; i++)
			if (evict_batch(c, goal) == 0)
				break;
		if (c->bytes > watermark(c))
			schedule_evict(c);
		if (c->bytes + bytes > c->max) {
			c->stats.refused++;
			return -ENOSPC;
		}
	}
	cl->bytes += bytes;
	c->bytes += bytes;
	return 0;
}

void sg_cache_bound_release(struct sg_cache_bound_layer *cl, uint64_t bytes)
{
	if (bytes > cl->bytes)
		bytes = cl->bytes;
	cl->bytes -= bytes;
	if (cl->c)
		cl->c->bytes -= bytes;
}

uint64_t sg_cache_bound_layer_bytes(const struct sg_cache_bound_layer *cl)
{
	return cl->bytes;
}

bool sg_cache_bound_room(const struct sg_cache_bound *c, uint64_t bytes)
{
	return c->bytes - c->idle_bytes + bytes <= watermark(c);
}

uint32_t sg_cache_bound_tick(struct sg_cache_bound *c)
{
	if (c->clock >= CLOCK_RESCALE) {
		for (struct sg_list *n = c->layers.next; n != &c->layers; n = n->next) {
			struct sg_cache_bound_layer *cl =
				sg_container_of(n, struct sg_cache_bound_layer, link);
			if (cl->client.rescale)
				cl->client.rescale(cl->client.ctx);
		}
		c->clock >>= 1;
	}
	return ++c->clock;
}

/* ---- layers ---- */

/* The name of `dir` under the root, or "" if it is not a direct child. */
static void child_name(const struct sg_cache_bound *c, const char *dir, char *out, size_t outlen)
{
	size_t n = strlen(c->root);

	out[0] = '\0';
	while (n > 1 && c->root[n - 1] == '/')
		n--;
	if (strncmp(dir, c->root, n) != 0 || dir[n] != '/' || strchr(dir + n + 1, '/'))
		return;
	snprintf(out, outlen, "%s", dir + n + 1);
}

int sg_cache_bound_attach(struct sg_cache_bound *c, const char *dir, uint64_t present_bytes,
		    const struct sg_cache_bound_client *client, struct sg_cache_bound_layer **ret)
{
	struct sg_cache_bound_layer *cl = calloc(1, sizeof(*cl));
	struct sg_list *n, *tmp;

	if (!cl)
		return -ENOMEM;
	cl->c = c;
	cl->client = *client;
	child_name(c, dir, cl->name, sizeof(cl->name));
	if (cl->name[0]) {
		sg_list_for_each_safe(n, tmp, &c->idle) {
			struct idle_dir *e = sg_container_of(n, struct idle_dir, link);
			if (strcmp(e->name, cl->name) == 0)
				idle_drop(c, e);   /* counted again below, from a fresh walk */
		}
	}
	/* What is there beyond the chunks the bitmap lists (the bitmap, the directory, data a
	 * crash left without its bit) stays counted until the layer is detached. */
	uint64_t usage = dir_usage(AT_FDCWD, dir);
	cl->bytes = (usage > present_bytes ? usage - present_bytes : 0) + present_bytes;
	c->bytes += cl->bytes;
	sg_list_insert_tail(&c->layers, &cl->link);
	if (c->bytes > c->max)
		schedule_evict(c);
	*ret = cl;
	return 0;
}

void sg_cache_bound_detach(struct sg_cache_bound_layer *cl)
{
	struct sg_cache_bound *c;
	bool shared = false;

	if (!cl)
		return;
	c = cl->c;
	if (c) {
		sg_list_unlink(&cl->link);
		c->bytes -= cl->bytes;
		for (struct sg_list *n = c->layers.next; n != &c->layers; n = n->next) {
			const struct sg_cache_bound_layer *o =
				sg_container_of(n, struct sg_cache_bound_layer, link);
			shared |= strcmp(o->name, cl->name) == 0;
		}
		if (cl->name[0] && !shared) {
			/* Last used now: the oldest directories go first. */
			(void)utimensat(c->root_fd, cl->name, NULL, 0);
			(void)idle_add(c, cl->name, cl->bytes, realtime_ns());
		}
	}
	free(cl);
}
