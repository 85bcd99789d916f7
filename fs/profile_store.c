/* The profile store.  See profile_store.h. */
#include "fs/profile_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/core/offload.h"
#include "daemon/core/small_file.h"

#define HEX_OFF 7    /* "sha256:" */

int sg_profile_store_path(const char *root, const struct sg_digest *toc, char *buf, size_t cap)
{
	char d[SG_DIGEST_STRLEN + 1];

	sg_digest_format(toc, d);
	if ((size_t)snprintf(buf, cap, "%s/%s/%s.json", root, SG_PROFILE_DIR, d + HEX_OFF) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* The whole file, at most SG_PROFILE_JSON_MAX bytes (a larger one, or not a regular file:
 * -EFBIG). */
static int read_bounded(const char *path, char **ret, size_t *ret_len, struct sg_error *err)
{
	int r = sg_small_file_read(path, SG_PROFILE_JSON_MAX, ret, ret_len);

	if (r == -EFBIG)
		return sg_error_set(err, r, "%s: not a regular file of at most %u bytes", path,
				    SG_PROFILE_JSON_MAX);
	if (r < 0)
		return sg_error_set(err, r, "%s: %s", path, strerror(-r));
	return 0;
}

/* The profile in file `path`: read (bounded) and parsed; errors name the file. */
static int load_file(const char *path, struct sg_profile **ret, struct sg_error *err)
{
	char *json = NULL;
	size_t len = 0;
	int r = read_bounded(path, &json, &len, err);

	if (r < 0)
		return r;
	r = sg_profile_parse(json, len, ret, err);
	free(json);
	if (r < 0)
		sg_error_prefix(err, "%s", path);
	return r;
}

int sg_profile_store_load(const char *root, const struct sg_digest *toc,
			  struct sg_profile **ret, struct sg_error *err)
{
	char path[PATH_MAX], d[SG_DIGEST_STRLEN + 1];
	struct sg_profile *p = NULL;
	int r;

	if (sg_profile_store_path(root, toc, path, sizeof(path)) < 0)
		return sg_error_set(err, -ENAMETOOLONG, "root path too long");
	r = load_file(path, &p, err);
	if (r < 0)
		return r;
	if (!sg_digest_equal(sg_profile_toc(p), toc)) {
		sg_digest_format(sg_profile_toc(p), d);
		sg_profile_free(p);
		return sg_error_set(err, -EINVAL, "%s: holds the profile of TOC %s", path, d);
	}
	*ret = p;
	return 0;
}

int sg_profile_store_load_for_layer(const char *root, const struct sg_digest *toc,
				    uint32_t n_chunks, struct sg_profile **ret,
				    struct sg_error *err)
{
	struct sg_profile *p = NULL;
	int r = sg_profile_store_load(root, toc, &p, err);

	if (r < 0)
		return r;
	if (sg_profile_chunk_count(p) != n_chunks) {
		r = sg_error_set(err, -EINVAL,
				 "profile says the layer has %u chunks, its TOC has %u",
				 sg_profile_chunk_count(p), n_chunks);
		sg_profile_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* ROOT/profiles/layers/<layer hex>.json: the index by blob digest. */
static int layer_link_path(const char *root, const struct sg_digest *layer, char *buf, size_t cap)
{
	char d[SG_DIGEST_STRLEN + 1];

	sg_digest_format(layer, d);
	if ((size_t)snprintf(buf, cap, "%s/%s/%s/%s.json", root, SG_PROFILE_DIR,
			     SG_PROFILE_LAYER_DIR, d + HEX_OFF) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* The index entry of p's layer, pointing at p's file: a symlink made aside and renamed over
 * the old one.  Best effort: without it the next mount of the layer fetches the default
 * tail, nothing worse, so a failure here does not fail the save.  Not synced: a crash
 * loses at most a hint. */
static void link_layer(const char *root, const struct sg_profile *p)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX + 32], target[SG_DIGEST_STRLEN + 16];
	char d[SG_DIGEST_STRLEN + 1];

	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s/%s", root, SG_PROFILE_DIR,
			     SG_PROFILE_LAYER_DIR) >= sizeof(dir) ||
	    layer_link_path(root, sg_profile_layer(p), path, sizeof(path)) < 0)
		return;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return;
	sg_digest_format(sg_profile_toc(p), d);
	snprintf(target, sizeof(target), "../%s.json", d + HEX_OFF);
	static unsigned seq;   /* two threads may link at once (a record, a pull) */
	snprintf(tmp, sizeof(tmp), "%s.%ld.%u", path, (long)getpid(),
		 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
	(void)unlink(tmp);
	if (symlink(target, tmp) < 0)
		return;
	if (rename(tmp, path) < 0)
		(void)unlink(tmp);
}

int sg_profile_store_load_by_layer(const char *root, const struct sg_digest *layer,
				   struct sg_profile **ret, struct sg_error *err)
{
	char path[PATH_MAX], d[SG_DIGEST_STRLEN + 1];
	struct sg_profile *p = NULL;
	int r;

	if (layer_link_path(root, layer, path, sizeof(path)) < 0)
		return sg_error_set(err, -ENAMETOOLONG, "root path too long");
	r = load_file(path, &p, err);
	if (r < 0)
		return r;
	/* A link left by hand, or by a profile that changed layers, must not size another
	 * blob's fetch. */
	if (!sg_profile_layer(p) || !sg_digest_equal(sg_profile_layer(p), layer)) {
		sg_profile_free(p);
		sg_digest_format(layer, d);
		return sg_error_set(err, -EINVAL, "%s: not a profile of layer %s", path, d);
	}
	*ret = p;
	return 0;
}

int sg_profile_store_save(const char *root, const struct sg_profile *p, struct sg_error *err)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX + 8];
	char *json = NULL;
	size_t len = 0;
	int fd, r;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", root, SG_PROFILE_DIR) >= sizeof(dir) ||
	    sg_profile_store_path(root, sg_profile_toc(p), path, sizeof(path)) < 0)
		return sg_error_set(err, -ENAMETOOLONG, "root path too long");
	/* The root too: a fresh node pulls profiles before the daemon ever ran. */
	if ((mkdir(root, 0700) < 0 && errno != EEXIST) || (mkdir(dir, 0700) < 0 && errno != EEXIST))
		return sg_error_set(err, -errno, "cannot create %s: %s", dir, strerror(errno));
	r = sg_profile_format(p, &json, &len);
	if (r < 0)
		return sg_error_set(err, r, "out of memory");
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = sg_error_set(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	r = write_all(fd, json, len);
	if (r == 0 && fchmod(fd, 0644) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlink(tmp);
		sg_error_set(err, r, "cannot write %s: %s", path, strerror(-r));
		goto out;
	}
	/* The rename is durable once the directory is. */
	r = fsync_dir(dir);
	if (r < 0)
		sg_error_set(err, r, "cannot sync %s: %s", dir, strerror(-r));
	else if (sg_profile_layer(p))
		link_layer(root, p);
out:
	free(json);
	return r;
}

/* One record at a time in this process, whichever thread: two of one TOC digest would each
 * read, merge and write the file, and the later write would drop the other's chunks. */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

static int record_locked(const char *root, const struct sg_profile *p, struct sg_error *err);

int sg_profile_store_record(const char *root, const struct sg_profile *p, struct sg_error *err)
{
	pthread_mutex_lock(&record_lock);
	int r = record_locked(root, p, err);
	pthread_mutex_unlock(&record_lock);
	return r;
}

static int record_locked(const char *root, const struct sg_profile *p, struct sg_error *err)
{
	struct sg_profile *stored = NULL;
	int r;

	r = sg_profile_store_load(root, sg_profile_toc(p), &stored, NULL);
	if (r < 0 || sg_profile_merge(stored, p, NULL) < 0) {
		/* None, or one that cannot be used (corrupt, another chunk count): the new
		 * recording replaces it. */
		sg_profile_free(stored);
		return sg_profile_store_save(root, p, err);
	}
	r = sg_profile_store_save(root, stored, err);
	sg_profile_free(stored);
	return r;
}

int sg_profile_store_remove(const char *root, const struct sg_digest *toc, struct sg_error *err)
{
	char path[PATH_MAX], d[SG_DIGEST_STRLEN + 1];

	struct sg_profile *p = NULL;

	if (sg_profile_store_path(root, toc, path, sizeof(path)) < 0)
		return sg_error_set(err, -ENAMETOOLONG, "root path too long");
	/* Its layer's index entry goes too, when it still points here. */
	if (sg_profile_store_load(root, toc, &p, NULL) == 0 && sg_profile_layer(p)) {
		char link[PATH_MAX], target[PATH_MAX];
		ssize_t n;
		sg_digest_format(toc, d);
		if (layer_link_path(root, sg_profile_layer(p), link, sizeof(link)) == 0 &&
		    (n = readlink(link, target, sizeof(target) - 1)) > 0) {
			target[n] = 0;
			const char *base = strrchr(target, '/');
			base = base ? base + 1 : target;
			if (strncmp(base, d + HEX_OFF, 64) == 0 && strcmp(base + 64, ".json") == 0)
				(void)unlink(link);
		}
	}
	sg_profile_free(p);
	if (unlink(path) < 0) {
		sg_digest_format(toc, d);
		if (errno == ENOENT)
			return sg_error_set(err, -ENOENT, "no profile for TOC %s", d);
		return sg_error_set(err, -errno, "cannot remove %s: %s", path, strerror(errno));
	}
	return 0;
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sg_digest));
}

int sg_profile_store_list(const char *root, struct sg_digest **ret, size_t *ret_n,
			  struct sg_error *err)
{
	char dir[PATH_MAX], name[HEX_OFF + 65];
	struct sg_digest *out = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", root, SG_PROFILE_DIR) >= sizeof(dir))
		return sg_error_set(err, -ENAMETOOLONG, "root path too long");
	d = opendir(dir);
	if (!d) {
		if (errno != ENOENT)
			return sg_error_set(err, -errno, "%s: %s", dir, strerror(errno));
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		struct sg_digest dg;

		/* <64 hex>.json only: temporary files and strays are not profiles. */
		if (len != 64 + 5 || strcmp(e->d_name + 64, ".json") != 0)
			continue;
		snprintf(name, sizeof(name), "sha256:%.64s", e->d_name);
		if (sg_digest_parse(name, strlen(name), &dg) < 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct sg_digest *nout = realloc(out, ncap * sizeof(*out));
			if (!nout) {
				closedir(d);
				free(out);
				return sg_error_set(err, -ENOMEM, "out of memory");
			}
			out = nout;
			cap = ncap;
		}
		out[n++] = dg;
	}
	closedir(d);
	if (n)
		qsort(out, n, sizeof(*out), cmp_digest);
	*ret = out;
	*ret_n = n;
	return 0;
}

/* ---- recording on a helper thread ---- */

struct async_record {
	char *root;
	char *json;              /* the profile, formatted on the loop, parsed on the thread */
	size_t len;
	struct sg_error err;
	int res;
	struct sg_offload work;
	struct sg_loop *loop;
	struct sg_error *ret_err;   /* the caller's result and continuation */
	struct sg_op *done_op;
	sg_op_cb done_cb;
};

/* On the helper thread: touches nothing but its job (the record takes its lock). */
static void record_work(struct sg_offload *w)
{
	struct async_record *a = sg_container_of(w, struct async_record, work);
	struct sg_profile *p = NULL;

	a->res = sg_profile_parse(a->json, a->len, &p, &a->err);
	if (a->res == 0)
		a->res = sg_profile_store_record(a->root, p, &a->err);
	sg_profile_free(p);
}

static void async_record_free(struct async_record *a)
{
	free(a->json);
	free(a->root);
	free(a);
}

/* Drained or not, the record ran to its end (a shutdown still saves): say what it did. */
static void record_done(struct sg_op *op)
{
	struct async_record *a = sg_container_of(op, struct async_record, work.op);

	if (a->res < 0 && a->ret_err)
		*a->ret_err = a->err;
	/* The caller's op was idle when handed over and is ours until now: a post that fails
	 * would lose this completion for good, so it is a crash here rather than a hang. */
	if (sg_post(a->loop, a->done_op, a->res, a->done_cb) < 0)
		abort();
	async_record_free(a);
}

int sg_profile_store_record_async(struct sg_loop *loop, const char *root,
				  const struct sg_profile *p, struct sg_error *err,
				  struct sg_op *op, sg_op_cb cb)
{
	struct async_record *a;
	int r;

	if (!loop || !root || !p || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->loop = loop;
	a->ret_err = err;
	a->done_op = op;
	a->done_cb = cb;
	a->root = strdup(root);
	r = a->root ? sg_profile_format(p, &a->json, &a->len) : -ENOMEM;
	if (r == 0)
		r = sg_offload_start(loop, &a->work, record_work, record_done);
	if (r == -ECANCELED) {
		/* The loop refuses (it drains): the record ran on the thread all the same. */
		r = a->res < 0 ? a->res : 1;
		if (a->res < 0 && err)
			*err = a->err;
	}
	if (r != 0)
		async_record_free(a);
	return r;
}
