#include "daemon/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/filter.h"
#include "daemon/process.h"

/* Paths under the root are built into PATH_MAX buffers; a root of at most half that leaves
 * room for every suffix, so nothing is ever truncated (and the compiler can tell). */
#define ROOT_MAX (PATH_MAX / 2)

struct sg_snapshots {
	char root[ROOT_MAX];
	char snapdir[ROOT_MAX + 16];   /* ROOT/snapshots */
	struct sg_meta *meta;
	bool (*remote_mounted)(void *ctx, int64_t id);
	void *remote_ctx;
	bool (*keep_mounted)(void *ctx, int64_t id);   /* held mounts, at open only */
	void *keep_ctx;
};

static int64_t now_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- directories ---- */

static int rm_rf_status;

static int rm_rf_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = (type == FTW_DP || type == FTW_D) ? rmdir(path) : unlink(path);
	if (r < 0 && errno != ENOENT && rm_rf_status == 0)
		rm_rf_status = -errno;
	return 0;
}

/* Removes a tree without crossing into other filesystems (a mount left inside is an
 * error, never something to delete through). */
static int rm_rf(const char *path)
{
	rm_rf_status = 0;
	if (nftw(path, rm_rf_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
		return -errno;
	return rm_rf_status;
}

/* Disk usage as containerd computes it: each inode once, st_blocks * 512. */
static struct {
	uint64_t *slots;
	size_t cap, n;
	int64_t size;
	int status;
} du;

static bool du_insert(uint64_t key)
{
	if ((du.n + 1) * 2 > du.cap) {
		size_t ncap = du.cap ? du.cap * 2 : 1024;
		uint64_t *ns = calloc(ncap, sizeof(*ns));
		if (!ns) {
			du.status = -ENOMEM;
			return false;
		}
		for (size_t i = 0; i < du.cap; i++) {
			if (!du.slots[i])
				continue;
			size_t j = (du.slots[i] * 0x9e3779b97f4a7c15ull) & (ncap - 1);
			while (ns[j])
				j = (j + 1) & (ncap - 1);
			ns[j] = du.slots[i];
		}
		free(du.slots);
		du.slots = ns;
		du.cap = ncap;
	}
	key++;   /* 0 marks an empty slot */
	size_t j = (key * 0x9e3779b97f4a7c15ull) & (du.cap - 1);
	while (du.slots[j]) {
		if (du.slots[j] == key)
			return false;
		j = (j + 1) & (du.cap - 1);
	}
	du.slots[j] = key;
	du.n++;
	return true;
}

static int du_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_NS || type == FTW_DNR)
		return 0;
	if (du_insert((uint64_t)st->st_ino) && du.status == 0)
		du.size += (int64_t)st->st_blocks * 512;
	return du.status ? 1 : 0;
}

static int disk_usage(const char *path, int64_t *ret_size, int64_t *ret_inodes)
{
	int r;

	memset(&du, 0, sizeof(du));
	r = nftw(path, du_one, 32, FTW_PHYS | FTW_MOUNT);
	if (r < 0)
		r = -errno;
	else
		r = du.status;
	if (r == 0) {
		*ret_size = du.size;
		*ret_inodes = (int64_t)du.n;
	}
	free(du.slots);
	memset(&du, 0, sizeof(du));
	return r;
}

static void snap_path(const struct sg_snapshots *s, int64_t id, const char *sub, char *out,
		      size_t outlen)
{
	snprintf(out, outlen, "%s/%lld%s%s", s->snapdir, (long long)id, sub ? "/" : "", sub ? sub : "");
}

/* Detaches whatever is mounted at path (a lazily mounted layer), if anything.  Never
 * stat()s the path first: if it is one of our own live FUSE mounts, the kernel would ask
 * this very thread to answer the stat, and it would wait forever. */
static void detach_mount(const char *path)
{
	(void)umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
}

/* Removes what a crash can leave under snapshots/: "new-*" directories of a Prepare that
 * never committed, "rm-*" of a Remove that committed but did not finish deleting, and
 * numbered directories whose metadata row does not exist. */
static int repair(struct sg_snapshots *s, bool at_start, struct sg_error *err)
{
	DIR *d = opendir(s->snapdir);
	struct dirent *de;
	int r = 0;

	if (!d)
		return sg_error_set(err, -errno, "cannot open %s: %s", s->snapdir, strerror(errno));
	while ((de = readdir(d))) {
		char path[PATH_MAX], *end;
		bool remove = false;

		if (de->d_name[0] == '.')
			continue;
		if (strncmp(de->d_name, "new-", 4) == 0 || strncmp(de->d_name, "rm-", 3) == 0) {
			remove = true;
		} else {
			long long id = strtoll(de->d_name, &end, 10);
			if (*end != '\0' || id <= 0) {
				remove = true;   /* nothing else belongs here */
			} else {
				int e = sg_meta_id_exists(s->meta, id, err);
				if (e < 0) {
					sg_error_prefix(err, "metadata lookup failed");
					r = e;
					break;
				}
				remove = e == 0;
			}
		}
		/* A FUSE mount left by a daemon that was killed: detach it (its connection is dead;
		 * reads would fail with ENOTCONN).  At start nothing of ours is mounted yet; later
		 * only directories being removed are touched. */
		snprintf(path, sizeof(path), "%s/%s/fs", s->snapdir, de->d_name);
		/* ... unless its session outlived the daemon (a holder keeps it): then it is alive
		 * and the daemon takes it over. */
		bool held = !remove && s->keep_mounted &&
			    s->keep_mounted(s->keep_ctx, strtoll(de->d_name, NULL, 10));
		if ((at_start && !held) || remove)
			detach_mount(path);
		if (!remove)
			continue;
		snprintf(path, sizeof(path), "%s/%s", s->snapdir, de->d_name);
		int e = rm_rf(path);
		if (e < 0 && r == 0)
			r = sg_error_set(err, e, "cannot remove %s: %s", path, strerror(-e));
	}
	closedir(d);
	return r;
}

static int collect_mounting(const struct sg_snap *snap, void *userdata)
{
	int64_t **ids = userdata;
	if (snap->remote != SG_SNAP_REMOTE_MOUNTING)
		return 0;
	size_t n = (size_t)(*ids)[0];
	int64_t *t = realloc(*ids, (n + 2) * sizeof(**ids));
	if (!t)
		return -ENOMEM;
	t[n + 1] = snap->id;
	t[0] = (int64_t)n + 1;
	*ids = t;
	return 0;
}

/* Rows reserved for a remote mount that never completed (the daemon died meanwhile): the
 * pull that asked for them failed or fell back, so they go; repair() then removes their
 * directories. */
static int drop_unfinished_remote(struct sg_snapshots *s, struct sg_error *err)
{
	int64_t *ids = calloc(1, sizeof(*ids));
	struct sg_error merr = { 0 };
	int r;

	if (!ids)
		return -ENOMEM;
	r = sg_meta_foreach(s->meta, collect_mounting, &ids, &merr);
	for (int64_t i = 1; r == 0 && i <= ids[0]; i++) {
		r = sg_meta_delete(s->meta, ids[i], &merr);
		if (r == -ENOENT)
			r = 0;
	}
	free(ids);
	if (r < 0)
		return sg_error_set(err, r, "cannot drop unfinished remote snapshots: %s",
				    merr.msg[0] ? merr.msg : strerror(-r));
	return 0;
}

int sg_snapshots_open(const char *root, struct sg_snapshots **ret, struct sg_error *err)
{
	return sg_snapshots_open_keeping(root, NULL, NULL, ret, err);
}

int sg_snapshots_open_keeping(const char *root, bool (*keep_mounted)(void *ctx, int64_t id),
			      void *ctx, struct sg_snapshots **ret, struct sg_error *err)
{
	struct sg_snapshots *s = calloc(1, sizeof(*s));
	char dbpath[PATH_MAX];
	int r;

	if (!s)
		return -ENOMEM;
	s->keep_mounted = keep_mounted;
	s->keep_ctx = ctx;
	if (strlen(root) >= ROOT_MAX) {
		r = sg_error_set(err, -ENAMETOOLONG, "root path too long (max %d bytes)", ROOT_MAX - 1);
		goto fail;
	}
	snprintf(s->root, sizeof(s->root), "%s", root);
	snprintf(s->snapdir, sizeof(s->snapdir), "%s/snapshots", s->root);
	snprintf(dbpath, sizeof(dbpath), "%s/metadata.db", s->root);
	r = sg_mkdir_p(s->snapdir, 0700);
	if (r < 0) {
		sg_error_set(err, r, "cannot create %s: %s", s->snapdir, strerror(-r));
		goto fail;
	}
	r = sg_meta_open(dbpath, &s->meta, err);
	if (r < 0)
		goto fail;
	r = drop_unfinished_remote(s, err);
	if (r < 0)
		goto fail;
	r = repair(s, true, err);
	if (r < 0)
		goto fail;
	s->keep_mounted = NULL;
	*ret = s;
	return 0;
fail:
	sg_snapshots_close(s);
	return r;
}

void sg_snapshots_close(struct sg_snapshots *s)
{
	if (!s)
		return;
	sg_meta_close(s->meta);
	free(s);
}

/* ---- mounts ---- */

void sg_mounts_clear(struct sg_mounts *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->m[i].type);
		free(m->m[i].source);
		for (size_t j = 0; j < m->m[i].n_options; j++)
			free(m->m[i].options[j]);
		free(m->m[i].options);
	}
	free(m->m);
	m->m = NULL;
	m->n = 0;
}

static int mount_set(struct sg_mounts *ret, const char *type, const char *source,
		     const char *const *options, size_t n_options)
{
	struct sg_mount *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	ret->m = m;
	ret->n = 1;
	m->type = strdup(type);
	m->source = strdup(source);
	m->options = calloc(n_options ? n_options : 1, sizeof(char *));
	if (!m->type || !m->source || !m->options)
		goto nomem;
	for (size_t i = 0; i < n_options; i++) {
		m->options[i] = strdup(options[i]);
		if (!m->options[i])
			goto nomem;
		m->n_options++;
	}
	return 0;
nomem:
	sg_mounts_clear(ret);
	return -ENOMEM;
}

/* The ids of the parent chain, nearest first.  need_mounted: -EAGAIN when a lazily mounted
 * one is not mounted now. */
static int parent_chain(struct sg_snapshots *s, int64_t parent_id, bool need_mounted,
			int64_t **ret_ids, size_t *ret_n)
{
	int64_t *ids = NULL;
	size_t n = 0;

	while (parent_id) {
		struct sg_snap p;
		int r = sg_meta_get_by_id(s->meta, parent_id, &p, NULL);
		if (r < 0) {
			free(ids);
			return r == -ENOENT ? -EIO : r;   /* a dangling parent is corruption */
		}
		if (need_mounted && p.remote != SG_SNAP_LOCAL && s->remote_mounted &&
		    !s->remote_mounted(s->remote_ctx, p.id)) {
			/* Never hand out a lowerdir whose lazy mount is not there: the container
			 * would see an empty layer instead of an error. */
			sg_snap_clear(&p);
			free(ids);
			return -EAGAIN;
		}
		int64_t *t = realloc(ids, (n + 1) * sizeof(*t));
		if (!t) {
			sg_snap_clear(&p);
			free(ids);
			return -ENOMEM;
		}
		ids = t;
		ids[n++] = p.id;
		parent_id = p.parent_id;
		sg_snap_clear(&p);
		if (n > 4096) {   /* a cycle would loop forever */
			free(ids);
			return -ELOOP;
		}
	}
	*ret_ids = ids;
	*ret_n = n;
	return 0;
}

/* containerd's overlay snapshotter rules: bind for no parents ("ro" for a view), read-only
 * bind of the parent for a one-parent view, overlay otherwise (lowerdir nearest first;
 * upperdir+workdir for active snapshots). */
static int build_mounts(struct sg_snapshots *s, const struct sg_snap *snap, struct sg_mounts *ret)
{
	int64_t *chain = NULL;
	size_t n = 0;
	char path[PATH_MAX];
	int r;

	r = parent_chain(s, snap->parent_id, true, &chain, &n);
	if (r < 0)
		return r;
	if (n == 0) {
		const char *opts[] = { snap->kind == SG_SNAP_VIEW ? "ro" : "rw", "rbind" };
		snap_path(s, snap->id, "fs", path, sizeof(path));
		r = mount_set(ret, "bind", path, opts, 2);
		goto out;
	}
	if (snap->kind == SG_SNAP_VIEW && n == 1) {
		const char *opts[] = { "ro", "rbind" };
		snap_path(s, chain[0], "fs", path, sizeof(path));
		r = mount_set(ret, "bind", path, opts, 2);
		goto out;
	}

	size_t cap = n * (strlen(s->snapdir) + 32) + 16;
	char *lower = malloc(cap), work[PATH_MAX + 16], upper[PATH_MAX + 16];
	if (!lower) {
		r = -ENOMEM;
		goto out;
	}
	size_t len = (size_t)snprintf(lower, cap, "lowerdir=");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(lower + len, cap - len, "%s%s/%lld/fs", i ? ":" : "", s->snapdir,
					(long long)chain[i]);
	if (snap->kind == SG_SNAP_ACTIVE) {
		snap_path(s, snap->id, "work", path, sizeof(path));
		snprintf(work, sizeof(work), "workdir=%s", path);
		snap_path(s, snap->id, "fs", path, sizeof(path));
		snprintf(upper, sizeof(upper), "upperdir=%s", path);
		const char *opts[] = { work, upper, lower };
		r = mount_set(ret, "overlay", "overlay", opts, 3);
	} else {
		const char *opts[] = { lower };
		r = mount_set(ret, "overlay", "overlay", opts, 1);
	}
	free(lower);
out:
	free(chain);
	return r;
}

/* ---- operations ---- */

int sg_labels_validate(const struct sg_label *labels, size_t n, struct sg_error *err)
{
	for (size_t i = 0; i < n; i++) {
		size_t kl = strlen(labels[i].key), vl = strlen(labels[i].value);
		if (kl == 0)
			return sg_error_set(err, -EINVAL, "label key must not be empty");
		if (kl + vl > SG_LABEL_MAX)
			return sg_error_set(err, -EINVAL, "label key and value length (%zu bytes) "
					    "exceeds maximum size (%d bytes)", kl + vl, SG_LABEL_MAX);
	}
	return 0;
}

/* After a failed sg_meta_* call that filled err: "WHAT: metadata error: <SQLite's message>". */
static int meta_error(int r, struct sg_error *err, const char *what)
{
	sg_error_prefix(err, "%s: metadata error", what);
	return r;
}

/* Loads the parent named by a Prepare/View: it must exist (a remote snapshot still being
 * mounted does not, as for Stat) and be committed.  No parent name: *ret stays empty. */
static int load_parent(struct sg_snapshots *s, const char *parent, struct sg_snap *ret,
		       const char *what, struct sg_error *err)
{
	int r;

	if (!parent || !*parent)
		return 0;
	r = sg_meta_get(s->meta, parent, ret, err);
	if (r == 0 && ret->remote == SG_SNAP_REMOTE_MOUNTING) {
		sg_snap_clear(ret);
		r = -ENOENT;
	}
	if (r == -ENOENT)
		return sg_error_set(err, -ENOENT, "parent snapshot %s does not exist", parent);
	if (r < 0)
		return meta_error(r, err, what);
	if (ret->kind != SG_SNAP_COMMITTED)
		return sg_error_set(err, -EINVAL, "parent %s is not a committed snapshot", parent);
	return 0;
}

int sg_snapshots_prepare(struct sg_snapshots *s, enum sg_snap_kind kind, const char *key,
			 const char *parent, const struct sg_label *labels, size_t n_labels,
			 struct sg_mounts *ret, struct sg_error *err)
{
	char tmp[PATH_MAX], sub[PATH_MAX + 8], final[PATH_MAX];
	struct sg_snap p = { 0 }, snap = { 0 };
	int64_t id = 0;
	int r;

	if (!key || !*key)
		return sg_error_set(err, -EINVAL, "snapshot key must not be empty");
	if (kind != SG_SNAP_ACTIVE && kind != SG_SNAP_VIEW)
		return sg_error_set(err, -EINVAL, "only active or view snapshots can be created");
	r = sg_labels_validate(labels, n_labels, err);
	if (r < 0)
		return r;

	/* Build the directory aside, then rename it into place inside the transaction. */
	snprintf(tmp, sizeof(tmp), "%s/new-XXXXXX", s->snapdir);
	if (!mkdtemp(tmp))
		return sg_error_set(err, -errno, "cannot create snapshot directory: %s", strerror(errno));
	snprintf(sub, sizeof(sub), "%s/fs", tmp);
	if (mkdir(sub, 0755) < 0) {
		r = sg_error_set(err, -errno, "cannot create %s: %s", sub, strerror(errno));
		goto fail_dir;
	}
	if (kind == SG_SNAP_ACTIVE) {
		snprintf(sub, sizeof(sub), "%s/work", tmp);
		if (mkdir(sub, 0711) < 0) {
			r = sg_error_set(err, -errno, "cannot create %s: %s", sub, strerror(errno));
			goto fail_dir;
		}
	}

	r = sg_meta_begin(s->meta, err);
	if (r < 0) {
		meta_error(r, err, "prepare");
		goto fail_dir;
	}
	r = load_parent(s, parent, &p, "prepare", err);
	if (r < 0)
		goto fail_tx;
	r = sg_meta_insert(s->meta, key, p.id, kind, SG_SNAP_LOCAL, labels, n_labels,
			   now_realtime_ns(), &id, err);
	if (r == -EEXIST) {
		r = sg_error_set(err, -EEXIST, "snapshot %s already exists", key);
		goto fail_tx;
	}
	if (r < 0) {
		meta_error(r, err, "prepare");
		goto fail_tx;
	}
	if (p.id && p.remote == SG_SNAP_LOCAL) {
		/* The new upper dir belongs to whoever owns the parent's root, as in containerd.
		 * (Not for a lazily mounted parent: stat() on our own FUSE mount from the loop
		 * thread would deadlock; image roots are root-owned anyway.) */
		struct stat st;
		snap_path(s, p.id, "fs", sub, sizeof(sub));
		if (stat(sub, &st) == 0) {
			snprintf(sub, sizeof(sub), "%s/fs", tmp);
			(void)!lchown(sub, st.st_uid, st.st_gid);
		}
	}
	snap_path(s, id, NULL, final, sizeof(final));
	/* A directory by that number can only be debris of a crash (ids are never handed out
	 * twice while a row holds them): clear it. */
	(void)rm_rf(final);
	if (rename(tmp, final) < 0) {
		r = sg_error_set(err, -errno, "cannot move snapshot directory into place: %s",
				 strerror(errno));
		goto fail_tx;
	}
	r = sg_meta_commit(s->meta, err);
	if (r < 0) {
		meta_error(r, err, "prepare");
		sg_meta_rollback(s->meta);
		(void)rm_rf(final);
		goto out;
	}
	r = sg_meta_get_by_id(s->meta, id, &snap, err);
	if (r == 0)
		r = build_mounts(s, &snap, ret);
	if (r < 0)
		sg_error_set(err, r, "cannot build mounts for %s: %s", key, strerror(-r));
	goto out;

fail_tx:
	sg_meta_rollback(s->meta);
fail_dir:
	(void)rm_rf(tmp);
out:
	sg_snap_clear(&p);
	sg_snap_clear(&snap);
	return r;
}

int sg_snapshots_mounts(struct sg_snapshots *s, const char *key, struct sg_mounts *ret,
			struct sg_error *err)
{
	struct sg_snap snap;
	int r = sg_meta_get(s->meta, key, &snap, err);

	if (r == -ENOENT)
		return sg_error_set(err, r, "snapshot %s does not exist", key);
	if (r < 0)
		return meta_error(r, err, "mounts");
	if (snap.kind != SG_SNAP_ACTIVE && snap.kind != SG_SNAP_VIEW) {
		r = sg_error_set(err, -EBUSY, "snapshot %s is not active or view", key);
		goto out;
	}
	r = build_mounts(s, &snap, ret);
	if (r < 0)
		sg_error_set(err, r, "cannot build mounts for %s: %s", key, strerror(-r));
out:
	sg_snap_clear(&snap);
	return r;
}

int sg_snapshots_commit(struct sg_snapshots *s, const char *name, const char *key,
			const struct sg_label *labels, size_t n_labels, struct sg_error *err)
{
	struct sg_snap snap;
	char path[PATH_MAX];
	int64_t size = 0, inodes = 0;
	int r;

	if (!name || !*name)
		return sg_error_set(err, -EINVAL, "committed snapshot name must not be empty");
	r = sg_labels_validate(labels, n_labels, err);
	if (r < 0)
		return r;
	r = sg_meta_get(s->meta, key, &snap, err);
	if (r == -ENOENT)
		return sg_error_set(err, r, "snapshot %s does not exist", key);
	if (r < 0)
		return meta_error(r, err, "commit");
	if (snap.kind != SG_SNAP_ACTIVE) {
		r = sg_error_set(err, -EBUSY, "snapshot %s is not active", key);
		goto out;
	}
	/* Usage before the transaction: the walk can be long and needs no lock. */
	snap_path(s, snap.id, "fs", path, sizeof(path));
	r = disk_usage(path, &size, &inodes);
	if (r < 0) {
		sg_error_set(err, r, "cannot compute usage of %s: %s", key, strerror(-r));
		goto out;
	}
	r = sg_meta_begin(s->meta, err);
	if (r == 0)
		r = sg_meta_commit_active(s->meta, snap.id, name, labels, n_labels, size, inodes,
					  now_realtime_ns(), err);
	if (r == 0)
		r = sg_meta_commit(s->meta, err);
	if (r < 0) {
		sg_meta_rollback(s->meta);
		if (r == -EEXIST)
			sg_error_set(err, r, "snapshot %s already exists", name);
		else if (r == -ENOENT)   /* changed kind or vanished since we looked */
			r = sg_error_set(err, -EBUSY, "snapshot %s is not active", key);
		else
			meta_error(r, err, "commit");
	}
out:
	sg_snap_clear(&snap);
	return r;
}

int sg_snapshots_remove(struct sg_snapshots *s, const char *key, struct sg_error *err)
{
	struct sg_snap snap;
	char path[PATH_MAX], trash[PATH_MAX + 32];
	int r;

	r = sg_meta_begin(s->meta, err);
	if (r < 0)
		return meta_error(r, err, "remove");
	r = sg_meta_get(s->meta, key, &snap, err);
	if (r == -ENOENT) {
		sg_meta_rollback(s->meta);
		return sg_error_set(err, r, "snapshot %s does not exist", key);
	}
	if (r < 0) {
		sg_meta_rollback(s->meta);
		return meta_error(r, err, "remove");
	}
	r = sg_meta_has_children(s->meta, snap.id, err);
	if (r > 0) {
		r = sg_error_set(err, -EBUSY, "cannot remove snapshot %s with child", key);
		goto fail_tx;
	}
	if (r == 0)
		r = sg_meta_delete(s->meta, snap.id, err);
	if (r < 0) {
		meta_error(r, err, "remove");
		goto fail_tx;
	}
	/* Metadata first: a crash after the commit leaves an unreferenced directory that the
	 * next start removes; the reverse order could leave metadata without its data. */
	r = sg_meta_commit(s->meta, err);
	if (r < 0) {
		meta_error(r, err, "remove");
		goto fail_tx;
	}
	snap_path(s, snap.id, NULL, path, sizeof(path));
	snprintf(trash, sizeof(trash), "%s/rm-%lld", s->snapdir, (long long)snap.id);
	if (rename(path, trash) == 0) {
		int e = rm_rf(trash);
		if (e < 0)   /* left for Cleanup or the next start; the snapshot is gone anyway */
			sg_error_set(err, 0, "removing %s: %s", trash, strerror(-e));
	}
	sg_snap_clear(&snap);
	return 0;
fail_tx:
	sg_meta_rollback(s->meta);
	sg_snap_clear(&snap);
	return r;
}

int sg_snapshots_remove_check(struct sg_snapshots *s, const char *key, struct sg_error *err)
{
	struct sg_snap snap;
	int r = sg_meta_get(s->meta, key, &snap, err);

	if (r == -ENOENT)
		return sg_error_set(err, r, "snapshot %s does not exist", key);
	if (r < 0)
		return meta_error(r, err, "remove");
	r = sg_meta_has_children(s->meta, snap.id, err);
	sg_snap_clear(&snap);
	if (r > 0)
		return sg_error_set(err, -EBUSY, "cannot remove snapshot %s with child", key);
	return r < 0 ? meta_error(r, err, "remove") : 0;
}

int sg_snapshots_stat(struct sg_snapshots *s, const char *key, struct sg_snap *ret,
		      struct sg_error *err)
{
	int r = sg_meta_get(s->meta, key, ret, err);

	if (r == 0 && ret->remote == SG_SNAP_REMOTE_MOUNTING) {
		sg_snap_clear(ret);
		r = -ENOENT;   /* not there until its mount is */
	}
	if (r == -ENOENT)
		return sg_error_set(err, r, "snapshot %s does not exist", key);
	if (r < 0)
		return meta_error(r, err, "stat");
	return 0;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sg_label *)a)->key, ((const struct sg_label *)b)->key);
}

int sg_snapshots_update(struct sg_snapshots *s, const char *name, const struct sg_label *labels,
			size_t n_labels, const char *const *paths, size_t n_paths,
			struct sg_snap *ret, struct sg_error *err)
{
	struct sg_snap cur;
	struct sg_label *merged = NULL;
	size_t n_merged = 0;
	int r;

	if (!name || !*name)
		return sg_error_set(err, -EINVAL, "snapshot name must not be empty");
	r = sg_labels_validate(labels, n_labels, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_paths; i++)
		if (strcmp(paths[i], "labels") != 0 && strncmp(paths[i], "labels.", 7) != 0)
			return sg_error_set(err, -EINVAL, "cannot update \"%s\" field on snapshot %s",
					    paths[i], name);

	r = sg_meta_begin(s->meta, err);
	if (r < 0)
		return meta_error(r, err, "update");
	r = sg_meta_get(s->meta, name, &cur, err);
	if (r == -ENOENT) {
		sg_meta_rollback(s->meta);
		return sg_error_set(err, r, "snapshot %s does not exist", name);
	}
	if (r < 0) {
		sg_meta_rollback(s->meta);
		return meta_error(r, err, "update");
	}

	/* The result: for "labels" (or no paths) the given set; for "labels.KEY" the current
	 * set with KEY taken from the request (removed when the request lacks it). */
	bool replace_all = n_paths == 0;
	for (size_t i = 0; i < n_paths; i++)
		replace_all |= strcmp(paths[i], "labels") == 0;
	merged = calloc(cur.n_labels + n_labels + 1, sizeof(*merged));
	if (!merged) {
		r = -ENOMEM;
		goto fail_tx;
	}
	if (replace_all) {
		for (size_t i = 0; i < n_labels; i++)
			merged[n_merged++] = labels[i];
	} else {
		for (size_t i = 0; i < cur.n_labels; i++)
			merged[n_merged++] = cur.labels[i];
	}
	for (size_t i = 0; i < n_paths && !replace_all; i++) {
		const char *k = paths[i] + 7;
		const struct sg_label *given = NULL;
		for (size_t j = 0; j < n_labels; j++)
			if (strcmp(labels[j].key, k) == 0)
				given = &labels[j];
		size_t at = n_merged;
		for (size_t j = 0; j < n_merged; j++)
			if (strcmp(merged[j].key, k) == 0)
				at = j;
		if (given) {
			merged[at] = *given;
			if (at == n_merged)
				n_merged++;
		} else if (at < n_merged) {
			merged[at] = merged[--n_merged];
		}
	}
	qsort(merged, n_merged, sizeof(*merged), label_cmp);
	r = sg_meta_set_labels(s->meta, cur.id, merged, n_merged, now_realtime_ns(), err);
	if (r < 0) {
		meta_error(r, err, "update");
		goto fail_tx;
	}
	r = sg_meta_commit(s->meta, err);
	if (r < 0) {
		meta_error(r, err, "update");
		goto fail_tx;
	}
	free(merged);
	sg_snap_clear(&cur);
	r = sg_meta_get(s->meta, name, ret, err);
	return r < 0 ? meta_error(r, err, "update") : 0;
fail_tx:
	sg_meta_rollback(s->meta);
	free(merged);
	sg_snap_clear(&cur);
	return r;
}

static const char *kind_name(enum sg_snap_kind k)
{
	switch (k) {
	case SG_SNAP_ACTIVE: return "active";
	case SG_SNAP_VIEW: return "view";
	case SG_SNAP_COMMITTED: return "committed";
	default: return "unknown";
	}
}

static bool snap_field(const char *const *path, size_t n, const char **value, void *userdata)
{
	const struct sg_snap *snap = userdata;
	static char joined[SG_LABEL_MAX + 1];

	if (n == 0)
		return false;
	if (strcmp(path[0], "name") == 0 && n == 1) {
		*value = snap->name;
		return true;
	}
	if (strcmp(path[0], "parent") == 0 && n == 1) {
		*value = snap->parent ? snap->parent : "";
		return true;
	}
	if (strcmp(path[0], "kind") == 0 && n == 1) {
		*value = kind_name(snap->kind);
		return true;
	}
	if (strcmp(path[0], "labels") == 0 && n >= 2) {
		/* labels.a.b means the key "a.b", as containerd joins the rest of the path. */
		size_t len = 0;
		for (size_t i = 1; i < n; i++) {
			int w = snprintf(joined + len, sizeof(joined) - len, "%s%s", i > 1 ? "." : "", path[i]);
			if (w < 0 || (size_t)w >= sizeof(joined) - len)
				return false;
			len += (size_t)w;
		}
		const char *v = sg_snap_label(snap, joined);
		if (!v)
			return false;
		*value = v;
		return true;
	}
	return false;
}

struct list_ctx {
	struct sg_filter *filter;
	int (*fn)(const struct sg_snap *snap, void *userdata);
	void *userdata;
};

static int list_one(const struct sg_snap *snap, void *userdata)
{
	struct list_ctx *c = userdata;

	if (snap->remote == SG_SNAP_REMOTE_MOUNTING)
		return 0;
	if (!sg_filter_match(c->filter, snap_field, (void *)snap))
		return 0;
	return c->fn(snap, c->userdata);
}

int sg_snapshots_list(struct sg_snapshots *s, const char *const *filters, size_t n_filters,
		      int (*fn)(const struct sg_snap *snap, void *userdata), void *userdata,
		      struct sg_error *err)
{
	struct list_ctx c = { .fn = fn, .userdata = userdata };
	int r;

	r = sg_filter_parse(filters, n_filters, &c.filter, err);
	if (r < 0)
		return r;
	r = sg_meta_foreach(s->meta, list_one, &c, err);
	sg_filter_free(c.filter);
	if (r < 0 && r != -ECANCELED)
		return sg_error_set(err, r, "list: %s", strerror(-r));
	return r;
}

int sg_snapshots_usage(struct sg_snapshots *s, const char *key, int64_t *ret_size,
		       int64_t *ret_inodes, struct sg_error *err)
{
	struct sg_snap snap;
	char path[PATH_MAX];
	int r = sg_meta_get(s->meta, key, &snap, err);

	if (r == -ENOENT)
		return sg_error_set(err, r, "snapshot %s does not exist", key);
	if (r < 0)
		return meta_error(r, err, "usage");
	if (snap.kind == SG_SNAP_ACTIVE) {
		snap_path(s, snap.id, "fs", path, sizeof(path));
		r = disk_usage(path, ret_size, ret_inodes);
		if (r < 0)
			sg_error_set(err, r, "cannot compute usage of %s: %s", key, strerror(-r));
	} else {
		*ret_size = snap.size;
		*ret_inodes = snap.inodes;
	}
	sg_snap_clear(&snap);
	return r;
}

int sg_snapshots_cleanup(struct sg_snapshots *s, struct sg_error *err)
{
	return repair(s, false, err);
}

/* ---- remote snapshots ---- */

void sg_snapshots_set_remote_check(struct sg_snapshots *s, bool (*mounted)(void *ctx, int64_t id),
				   void *ctx)
{
	s->remote_mounted = mounted;
	s->remote_ctx = ctx;
}

int sg_snapshots_ancestors(struct sg_snapshots *s, int64_t id, int64_t **ret_ids, size_t *ret_n)
{
	struct sg_snap snap;
	int r = sg_meta_get_by_id(s->meta, id, &snap, NULL);

	if (r < 0)
		return r;
	r = parent_chain(s, snap.parent_id, false, ret_ids, ret_n);
	sg_snap_clear(&snap);
	return r;
}

void sg_snapshots_path(const struct sg_snapshots *s, int64_t id, char *buf, size_t len)
{
	snap_path(s, id, "fs", buf, len);
}

int sg_snapshots_remote_reserve(struct sg_snapshots *s, const char *target, const char *parent,
				const struct sg_label *labels, size_t n_labels, int64_t *ret_id,
				struct sg_error *err)
{
	struct sg_snap p = { 0 };
	struct sg_label *all = NULL;
	char path[PATH_MAX];
	int64_t id = 0;
	size_t n = 0;
	int r;

	r = sg_labels_validate(labels, n_labels, err);
	if (r < 0)
		return r;
	all = calloc(n_labels + 1, sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (size_t i = 0; i < n_labels; i++)
		if (strcmp(labels[i].key, SG_SNAP_REMOTE_LABEL) != 0)
			all[n++] = labels[i];
	all[n++] = (struct sg_label){ (char *)SG_SNAP_REMOTE_LABEL, (char *)SG_SNAP_REMOTE_LABEL_VALUE };

	r = sg_meta_begin(s->meta, err);
	if (r < 0) {
		meta_error(r, err, "remote prepare");
		goto out;
	}
	r = load_parent(s, parent, &p, "remote prepare", err);
	if (r < 0)
		goto fail_tx;
	r = sg_meta_insert(s->meta, target, p.id, SG_SNAP_COMMITTED, SG_SNAP_REMOTE_MOUNTING, all, n,
			   now_realtime_ns(), &id, err);
	if (r == -EEXIST) {
		r = sg_error_set(err, -EEXIST, "target snapshot %s: already exists", target);
		goto fail_tx;
	}
	if (r < 0) {
		meta_error(r, err, "remote prepare");
		goto fail_tx;
	}
	snap_path(s, id, NULL, path, sizeof(path));
	(void)rm_rf(path);
	snap_path(s, id, "fs", path, sizeof(path));
	if (sg_mkdir_p(path, 0755) < 0) {
		r = sg_error_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
		goto fail_tx;
	}
	r = sg_meta_commit(s->meta, err);
	if (r < 0) {
		meta_error(r, err, "remote prepare");
		goto fail_tx;
	}
	*ret_id = id;
	goto out;
fail_tx:
	sg_meta_rollback(s->meta);
out:
	sg_snap_clear(&p);
	free(all);
	return r;
}

int sg_snapshots_remote_ready(struct sg_snapshots *s, int64_t id, struct sg_error *err)
{
	int r = sg_meta_set_remote(s->meta, id, SG_SNAP_REMOTE, err);
	return r < 0 ? meta_error(r, err, "remote prepare") : 0;
}

int sg_snapshots_remote_abort(struct sg_snapshots *s, int64_t id, struct sg_error *err)
{
	char path[PATH_MAX];
	struct sg_error merr;
	int r = sg_meta_delete(s->meta, id, &merr);

	if (r < 0 && r != -ENOENT) {   /* -ENOENT: nothing to drop, err stays untouched */
		if (err)
			*err = merr;
		return meta_error(r, err, "remote abort");
	}
	snap_path(s, id, "fs", path, sizeof(path));
	detach_mount(path);
	snap_path(s, id, NULL, path, sizeof(path));
	(void)rm_rf(path);
	return 0;
}

struct remote_iter {
	int (*fn)(const struct sg_snap *snap, void *userdata);
	void *userdata;
};

static int remote_one(const struct sg_snap *snap, void *userdata)
{
	struct remote_iter *it = userdata;
	return snap->remote == SG_SNAP_REMOTE ? it->fn(snap, it->userdata) : 0;
}

int sg_snapshots_foreach_remote(struct sg_snapshots *s,
				int (*fn)(const struct sg_snap *snap, void *userdata), void *userdata)
{
	struct remote_iter it = { fn, userdata };
	return sg_meta_foreach(s->meta, remote_one, &it, NULL);
}
