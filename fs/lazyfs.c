#define FUSE_USE_VERSION 34
#include "fs/lazyfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"
#include "fs/estargz.h"
#include "fs/fuse_kabi.h"
#include "fs/fuse_watchdog.h"
#include "fs/layer.h"
#include "fs/passthrough.h"

#define N_READS 1
#define MAX_WRITE (1u << 20)
#define BUF_SIZE (MAX_WRITE + 4096)
/* The layer never changes: let the kernel keep what it learned for a day. */
#define TIMEOUT 86400.0
#define DEFAULT_STUCK_NS (60ull * 1000000000u)
/* The unique of the INIT replayed into libfuse on a takeover: never one the kernel uses
 * (its uniques are below 2^63 and even, resent ones have bit 63 set). */
#define REPLAY_UNIQUE ((1ull << 62) | 1u)
#define INIT_FILE "fuse.init"
#define JOURNAL_FILE "fuse.backing"

struct fuse_reader {
	struct sg_lazyfs *fs;
	struct sg_op op;
	uint8_t *buf;
};

struct sg_lazyfs {
	struct sg_loop *loop;
	struct sg_layer *layer;
	struct sg_layer_user *user;   /* our reads and trust checks; NULL once closed */
	struct sg_lazyfs_options opts;
	struct sg_fuse_watchdog *watchdog;   /* the requests we owe a reply */
	struct sg_passthrough *pt;    /* files the kernel reads from their cache file */
	const struct sg_toc *toc;
	struct fuse_session *se;
	int fd;
	struct sg_group group;
	struct fuse_reader readers[N_READS];
	unsigned reads_pending;       /* FUSE reads waiting for the layer */
	struct sg_lazyfs_stats stats; /* lost; the rest comes from the watchdog and pt */

	bool stopping;
	bool mounted;
	bool unmounting;              /* sg_lazyfs_unmount or _detach ran (else a stop is a lost mount) */
	/* Takeover and handover (sg_lazyfs_adopt, sg_lazyfs_detach). */
	char state_dir[PATH_MAX];     /* where the session's state is kept; "" = nowhere */
	char mountpoint[PATH_MAX];
	bool adopted;                 /* taken over: libfuse did not mount it, we unmount it */
	bool need_init;               /* adopted, and libfuse has not seen an INIT yet */
	uint8_t *init_req;            /* the kernel's INIT as the first server read it */
	size_t init_len;
	bool replaying;               /* the replayed INIT's reply is being swallowed */
	bool detaching;               /* cancelled requests are left to the next server */
	bool user_closing;
	struct sg_op grace_op;        /* detach: how long in-flight requests may take */
	struct sg_op lost_op;
	struct sg_op user_close_op;   /* closing our user of the layer */
	struct sg_op *done_op;        /* sg_lazyfs_unmount's, posted once nothing is left */
	sg_op_cb done_cb;
};

static void maybe_done(struct sg_lazyfs *fs);
static void close_user(struct sg_lazyfs *fs);

/* ---- attributes ---- */

static bool node_of(struct sg_lazyfs *fs, fuse_ino_t ino, uint32_t *ret)
{
	if (ino == 0 || ino > sg_toc_count(fs->toc))
		return false;
	*ret = (uint32_t)(ino - 1);
	return true;
}

static void fill_stat(struct sg_lazyfs *fs, uint32_t id, struct stat *st)
{
	const struct sg_toc_node *n = sg_toc_resolve(fs->toc, sg_toc_node(fs->toc, id));
	uint32_t rid = (uint32_t)(n - sg_toc_node(fs->toc, 0));

	memset(st, 0, sizeof(*st));
	st->st_ino = rid + 1;
	st->st_nlink = n->nlink ? n->nlink : 1;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_mtim.tv_sec = n->mtime_sec;
	st->st_mtim.tv_nsec = n->mtime_nsec;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
	st->st_blksize = 4096;
	if (n->flags & SG_TOC_F_WHITEOUT) {
		/* overlayfs whiteout: a 0:0 character device owned by root */
		st->st_mode = S_IFCHR;
		st->st_uid = st->st_gid = 0;
		st->st_rdev = makedev(0, 0);
		return;
	}
	st->st_mode = n->mode & 07777;
	switch (n->type) {
	case SG_TOC_DIR:
		st->st_mode |= S_IFDIR;
		st->st_size = 4096;
		break;
	case SG_TOC_REG:
		st->st_mode |= S_IFREG;
		st->st_size = (off_t)n->size;
		st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
		break;
	case SG_TOC_SYMLINK:
		st->st_mode |= S_IFLNK;
		st->st_size = (off_t)strlen(sg_toc_str(fs->toc, n->link));
		break;
	case SG_TOC_CHAR:
		st->st_mode |= S_IFCHR;
		st->st_rdev = makedev(n->dev_major, n->dev_minor);
		break;
	case SG_TOC_BLOCK:
		st->st_mode |= S_IFBLK;
		st->st_rdev = makedev(n->dev_major, n->dev_minor);
		break;
	case SG_TOC_FIFO:
		st->st_mode |= S_IFIFO;
		break;
	default:
		st->st_mode |= S_IFREG;
		break;
	}
}

static void fill_entry(struct sg_lazyfs *fs, uint32_t id, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	fill_stat(fs, id, &e->attr);
	e->ino = e->attr.st_ino;
	e->attr_timeout = fs->opts.attr_timeout;
	e->entry_timeout = fs->opts.entry_timeout;
}

/* ---- operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
				  FUSE_CAP_WRITEBACK_CACHE);
	/* max_write also sets max_pages, i.e. how large a read request may be. */
	conn->max_write = MAX_WRITE;
	conn->max_readahead = MAX_WRITE;
	conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	uint32_t dir, id;

	if (!node_of(fs, parent, &dir)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (sg_toc_node(fs->toc, dir)->type != SG_TOC_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	id = sg_toc_lookup(fs->toc, dir, name, strlen(name));
	if (id == SG_TOC_NONE) {
		/* A negative entry the kernel may cache as long as a positive one. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->opts.entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(fs, id, &e);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	/* Nodes live as long as the mount: nothing to count. */
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	struct stat st;
	uint32_t id;

	(void)fi;
	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_stat(fs, id, &st);
	fuse_reply_attr(req, &st, fs->opts.attr_timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	uint32_t id;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	const struct sg_toc_node *n = sg_toc_node(fs->toc, id);
	if (n->type != SG_TOC_SYMLINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_readlink(req, sg_toc_str(fs->toc, n->link));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	uint32_t id;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (sg_toc_node(fs->toc, id)->type != SG_TOC_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->fh = 0;   /* readdir cursor: (offset << 32) | next child */
	fi->keep_cache = 1;
	fi->cache_readdir = 1;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	uint32_t id, child;
	size_t used = 0;
	char *buf;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	const struct sg_toc_node *dir = sg_toc_node(fs->toc, id);
	/* Offsets: 1 = ".", 2 = "..", 2 + k = k-th child.  The cursor in fh avoids rescanning a
	 * large directory from its first child at every call. */
	off_t pos = off;
	if (pos >= 2 && fi->fh >> 32 == (uint64_t)pos) {
		child = (uint32_t)fi->fh;
	} else {
		child = dir->first_child;
		for (off_t k = 2; k < pos && child != SG_TOC_NONE; k++)
			child = sg_toc_node(fs->toc, child)->next_sibling;
	}
	for (;;) {
		const char *name;
		char namebuf[256];
		uint32_t eid;
		if (pos == 0) {
			name = ".";
			eid = id;
		} else if (pos == 1) {
			name = "..";
			eid = dir->parent;
		} else {
			if (child == SG_TOC_NONE)
				break;
			const struct sg_toc_node *c = sg_toc_node(fs->toc, child);
			size_t len = c->name_len < sizeof(namebuf) - 1 ? c->name_len : sizeof(namebuf) - 1;
			memcpy(namebuf, sg_toc_str(fs->toc, c->name), len);
			namebuf[len] = '\0';
			name = namebuf;
			eid = child;
		}
		size_t n;
		if (plus) {
			struct fuse_entry_param e;
			fill_entry(fs, eid, &e);
			n = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, pos + 1);
		} else {
			struct stat st;
			fill_stat(fs, eid, &st);
			n = fuse_add_direntry(req, buf + used, size - used, name, &st, pos + 1);
		}
		if (n > size - used)
			break;
		used += n;
		if (pos >= 2)
			child = sg_toc_node(fs->toc, child)->next_sibling;
		pos++;
	}
	fi->fh = ((uint64_t)pos << 32) | child;
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* libfuse writes every reply through here (fuse_session_custom_io): the place to add what
 * libfuse 3.14 cannot say — passthrough at INIT, and an OPEN reply's backing id. */
static ssize_t session_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct sg_lazyfs *fs = userdata;

	if (count >= 1 && iov[0].iov_len == sizeof(struct k_out_header)) {
		const struct k_out_header *h = iov[0].iov_base;
		if (fs->replaying && h->unique == REPLAY_UNIQUE) {
			/* libfuse's answer to the replayed INIT: the kernel had its answer from
			 * the first server.  Only our own state learns from it. */
			sg_passthrough_patch_reply(fs->pt, iov, count);
			ssize_t total = 0;
			for (int i = 0; i < count; i++)
				total += (ssize_t)iov[i].iov_len;
			return total;
		}
		if (h->unique)   /* unique 0: a notification, not a reply */
			sg_fuse_watchdog_reply(fs->watchdog, h->unique);
	}
	sg_passthrough_patch_reply(fs->pt, iov, count);
	return writev(fd, iov, count);
}

static ssize_t session_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

void sg_lazyfs_stats(const struct sg_lazyfs *fs, struct sg_lazyfs_stats *ret)
{
	struct sg_fuse_watchdog_stats ws;

	*ret = fs->stats;
	sg_fuse_watchdog_stats(fs->watchdog, &ws);
	ret->requests = ws.requests;
	ret->replies = ws.replies;
	ret->unanswered = ws.unanswered;
	ret->stuck = ws.stuck;
	sg_passthrough_stats(fs->pt, ret);
}

struct sg_layer_user *sg_lazyfs_user(struct sg_lazyfs *fs)
{
	/* A closing user may be freed before its close completes (fs/layer.h). */
	return fs->user_closing ? NULL : fs->user;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	uint32_t id;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	const struct sg_toc_node *n = sg_toc_resolve(fs->toc, sg_toc_node(fs->toc, id));
	if (n->type == SG_TOC_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	uint32_t rid = (uint32_t)(n - sg_toc_node(fs->toc, 0));
	fi->keep_cache = 1;
	fi->fh = rid;
	if ((!sg_passthrough_on(fs->pt) && !sg_passthrough_adopted(fs->pt, rid)) ||
	    n->type != SG_TOC_REG) {
		fuse_reply_open(req, fi);
		return;
	}
	sg_passthrough_open(fs->pt, fs->user, req, fi, rid);
}

struct pending_read {
	struct sg_lazyfs *fs;
	fuse_req_t req;
	struct sg_op op;
	char buf[];
};

static void read_done(struct sg_op *op)
{
	struct pending_read *p = sg_container_of(op, struct pending_read, op);
	struct sg_lazyfs *fs = p->fs;
	int32_t res = op->res;

	if (res == -ECANCELED && fs->detaching)
		fuse_reply_none(p->req);   /* the kernel resends it to the next server */
	else if (res < 0)
		fuse_reply_err(p->req, res == -ECANCELED ? EINTR : (int)-res);
	else
		fuse_reply_buf(p->req, p->buf, (size_t)res);
	free(p);
	fs->reads_pending--;
	maybe_done(fs);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	struct pending_read *p;
	uint32_t id;
	int r;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	(void)fi;
	p = malloc(sizeof(*p) + size);
	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->fs = fs;
	p->req = req;
	sg_op_init(&p->op);
	fs->reads_pending++;
	r = fs->user ? sg_layer_read(fs->user, (uint32_t)fuse_req_ctx(req)->pid, id, (uint64_t)off,
					   size, p->buf, &p->op, read_done)
		     : -ECANCELED;
	if (r < 0) {
		fs->reads_pending--;
		free(p);
		fuse_reply_err(req, -r);
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);

	(void)ino;
	/* Reply first: the journal must never count an open as gone that the kernel still
	 * holds (fs/passthrough.h). */
	fuse_reply_err(req, 0);
	sg_passthrough_release(fs->pt, fi);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	struct statvfs st;
	uint64_t bytes = 0;

	(void)ino;
	for (uint32_t i = 0; i < sg_toc_count(fs->toc); i++) {
		const struct sg_toc_node *n = sg_toc_node(fs->toc, i);
		if (n->type == SG_TOC_REG)
			bytes += n->size;
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_blocks = (bytes + 4095) / 4096;
	st.f_files = sg_toc_count(fs->toc);
	st.f_namemax = 255;
	fuse_reply_statfs(req, &st);
}

/* The xattrs a node shows: its own from the TOC, plus the overlay opaque mark.  Both
 * trusted.overlay.opaque (overlayfs as root) and user.overlay.opaque (overlayfs with
 * userxattr, rootless) answer getxattr; only the trusted one is listed, so the tree looks
 * exactly like a full pull's, where the applier sets the trusted one. */
static const char *const opaque_names[] = { "trusted.overlay.opaque", "user.overlay.opaque" };

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	const void *value = NULL;
	size_t len = 0;
	uint32_t id;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	const struct sg_toc_node *n = sg_toc_resolve(fs->toc, sg_toc_node(fs->toc, id));
	bool found = false;
	if (n->flags & SG_TOC_F_OPAQUE)
		for (size_t i = 0; i < 2 && !found; i++)
			if (strcmp(name, opaque_names[i]) == 0) {
				value = "y";
				len = 1;
				found = true;
			}
	for (unsigned i = 0; !found; i++) {
		const char *xn;
		if (sg_toc_xattr(fs->toc, n, i, &xn, &value, &len) < 0)
			break;
		found = strcmp(xn, name) == 0;
	}
	if (!found)
		fuse_reply_err(req, ENODATA);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	char *buf = NULL;
	size_t used = 0, cap = 0;
	uint32_t id;

	if (!node_of(fs, ino, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	const struct sg_toc_node *n = sg_toc_resolve(fs->toc, sg_toc_node(fs->toc, id));
	for (int pass = 0; pass < 2; pass++) {
		/* pass 0 measures, pass 1 copies */
		used = 0;
		if (n->flags & SG_TOC_F_OPAQUE) {
			size_t l = strlen(opaque_names[0]) + 1;
			if (pass)
				memcpy(buf + used, opaque_names[0], l);
			used += l;
		}
		for (unsigned i = 0;; i++) {
			const char *xn;
			const void *v;
			size_t vl;
			if (sg_toc_xattr(fs->toc, n, i, &xn, &v, &vl) < 0)
				break;
			size_t l = strlen(xn) + 1;
			if (pass)
				memcpy(buf + used, xn, l);
			used += l;
		}
		if (pass == 0) {
			if (size == 0) {
				fuse_reply_xattr(req, used);
				return;
			}
			if (size < used) {
				fuse_reply_err(req, ERANGE);
				return;
			}
			cap = used;
			buf = malloc(cap ? cap : 1);
			if (!buf) {
				fuse_reply_err(req, ENOMEM);
				return;
			}
		}
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct sg_lazyfs *fs = fuse_req_userdata(req);
	uint32_t id;

	if (!node_of(fs, ino, &id))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

static const struct fuse_lowlevel_ops lazyfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.access = op_access,
};

/* ---- the session on the loop ----
 *
 * The session fd is watched with a poll op on the ring and read without blocking when it
 * is readable.  (A read op on /dev/fuse would park a kernel worker thread in a blocking
 * read that only an aborted connection wakes, so unmounting could not cancel it.)  Each
 * wake-up drains up to READS_PER_WAKE requests. */

#define READS_PER_WAKE 32

static void on_fuse_readable(struct sg_op *op);

/* The mount stops serving: no more reads of /dev/fuse, no more watchdog rounds. */
static void stop(struct sg_lazyfs *fs)
{
	fs->stopping = true;
	if (fs->watchdog)
		sg_fuse_watchdog_stop(fs->watchdog);
}

static void arm_reader(struct fuse_reader *rd)
{
	struct sg_lazyfs *fs = rd->fs;

	if (fs->stopping)
		return;
	sg_op_set_group(&rd->op, &fs->group);
	if (sg_poll(fs->loop, &rd->op, fs->fd, POLLIN, on_fuse_readable) < 0)
		stop(fs);
}

static void lost_cb(struct sg_op *op)
{
	struct sg_lazyfs *fs = sg_container_of(op, struct sg_lazyfs, lost_op);

	if (op->res == 0 && !fs->unmounting && fs->opts.on_lost)
		fs->opts.on_lost(fs->opts.userdata);
	maybe_done(fs);
}

/* The kernel ended the session (fusermount -u, umount, an abort) without us unmounting: tell
 * the owner, from a posted op so that it may unmount and free at once. */
static void maybe_report_lost(struct sg_lazyfs *fs)
{
	if (!fs->stopping || fs->unmounting || fs->stats.lost)
		return;
	fs->stats.lost = true;
	sg_op_set_group(&fs->lost_op, &fs->group);
	(void)sg_post(fs->loop, &fs->lost_op, 0, lost_cb);   /* draining: we are going anyway */
}

/* ---- the session's state, for whoever takes it over ----
 *
 * The kernel sends INIT once per session.  A server that takes the session over must put
 * libfuse in the state that INIT left (protocol minor, flags), so the INIT request is kept
 * in STATE_DIR/fuse.init, written before it is answered: if the first server died before
 * answering, the kernel resends the INIT itself and the file is simply replaced. */
static void save_init(struct sg_lazyfs *fs, const uint8_t *buf, size_t n)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 24];
	int fd;

	if (!fs->state_dir[0])
		return;
	snprintf(path, sizeof(path), "%s/" INIT_FILE, fs->state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* Blocking, once per mount: a local write of ~100 bytes. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	bool ok = write(fd, buf, n) == (ssize_t)n;
	close(fd);
	if (!ok || rename(tmp, path) < 0)
		(void)unlink(tmp);
}

static int load_init(struct sg_lazyfs *fs)
{
	char path[PATH_MAX + 16];
	struct k_in_header h;
	uint8_t buf[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/" INIT_FILE, fs->state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < (ssize_t)(sizeof(h) + 8))
		return -EBADMSG;
	memcpy(&h, buf, sizeof(h));
	if (h.opcode != K_FUSE_INIT || h.len != (uint32_t)n)
		return -EBADMSG;
	fs->init_req = malloc((size_t)n);
	if (!fs->init_req)
		return -ENOMEM;
	memcpy(fs->init_req, buf, (size_t)n);
	fs->init_len = (size_t)n;
	return 0;
}

/* Feeds libfuse the session's INIT again, with a unique of our own, and swallows its
 * answer (session_writev): from then on it serves the session as if it had seen it. */
static void replay_init(struct sg_lazyfs *fs)
{
	struct k_in_header h;
	uint8_t *b = malloc(fs->init_len);

	fs->need_init = false;
	if (!b)
		return;   /* libfuse then answers EIO until an INIT comes: visible, not silent */
	memcpy(b, fs->init_req, fs->init_len);
	memcpy(&h, b, sizeof(h));
	h.unique = REPLAY_UNIQUE;
	memcpy(b, &h, sizeof(h));
	struct fuse_buf fbuf = { .size = fs->init_len, .mem = b, .fd = -1 };
	/* Passthrough is on again if the kernel offered it and we want it: the first server
	 * asked for it under the same rule (a kernel that did not agree refuses the first
	 * backing file, which turns it off). */
	sg_passthrough_peek_init(fs->pt, b, fs->init_len);
	fs->replaying = true;
	fuse_session_process_buf(fs->se, &fbuf);
	fs->replaying = false;
	free(b);
}

static int open_journal(struct sg_lazyfs *fs, bool adopt)
{
	char path[PATH_MAX + 16];

	if (!fs->state_dir[0])
		return 0;
	snprintf(path, sizeof(path), "%s/" JOURNAL_FILE, fs->state_dir);
	return sg_passthrough_journal(fs->pt, path, adopt);
}

static void process(struct sg_lazyfs *fs, uint8_t *buf, size_t n)
{
	uint32_t opcode = 0;

	if (n >= sizeof(struct k_in_header))
		memcpy(&opcode, buf + offsetof(struct k_in_header, opcode), sizeof(opcode));
	if (opcode == K_FUSE_INIT) {
		/* A fresh session, or one whose first server died before answering its INIT
		 * (the kernel resent it): libfuse answers this one. */
		fs->need_init = false;
		save_init(fs, buf, n);
	} else if (fs->need_init && fs->init_req) {
		replay_init(fs);
	}
	sg_fuse_watchdog_request(fs->watchdog, buf, n);
	sg_passthrough_peek_init(fs->pt, buf, n);
	struct fuse_buf fbuf = { .size = n, .mem = buf, .fd = -1 };
	fuse_session_process_buf(fs->se, &fbuf);
}

static void on_fuse_readable(struct sg_op *op)
{
	struct fuse_reader *rd = sg_container_of(op, struct fuse_reader, op);
	struct sg_lazyfs *fs = rd->fs;

	if (op->res < 0 || fs->stopping) {
		if (op->res != -ECANCELED)
			stop(fs);
		maybe_report_lost(fs);
		maybe_done(fs);
		return;
	}
	for (int i = 0; i < READS_PER_WAKE && !fs->stopping; i++) {
		ssize_t n = read(fs->fd, rd->buf, BUF_SIZE);
		if (n > 0) {
			process(fs, rd->buf, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EINTR || errno == ENOENT))
			continue;   /* the request was interrupted before we read it */
		if (n < 0 && errno == EAGAIN)
			break;
		stop(fs);   /* ENODEV: unmounted or aborted */
	}
	arm_reader(rd);
	maybe_report_lost(fs);
	maybe_done(fs);
}

/* The opens that waited for a trust check were answered. */
static void passthrough_settled(void *userdata)
{
	maybe_done(userdata);
}

static const struct fuse_custom_io session_io = { .writev = session_writev, .read = session_read };

/* What a mount and a takeover share, up to the session (not connected to a device yet). */
static int lazyfs_new(struct sg_loop *loop, struct sg_layer *layer, const char *mountpoint,
		      const struct sg_lazyfs_options *opts, struct sg_lazyfs **ret,
		      struct sg_error *err)
{
	char *argv[] = { (char *)"stargzd", (char *)"-o",
			 (char *)"ro,allow_other,fsname=stargz,subtype=stargz", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct sg_lazyfs *fs = calloc(1, sizeof(*fs));
	int r;

	if (!fs)
		return sg_error_set(err, -ENOMEM, "out of memory for the FUSE mount");
	fs->loop = loop;
	fs->layer = layer;
	fs->toc = sg_layer_toc(layer);
	fs->fd = -1;
	if (opts)
		fs->opts = *opts;
	if (!fs->opts.stuck_after_ns)
		fs->opts.stuck_after_ns = DEFAULT_STUCK_NS;
	if (fs->opts.attr_timeout <= 0)
		fs->opts.attr_timeout = TIMEOUT;
	if (fs->opts.entry_timeout <= 0)
		fs->opts.entry_timeout = TIMEOUT;
	if (fs->opts.state_dir)
		snprintf(fs->state_dir, sizeof(fs->state_dir), "%s", fs->opts.state_dir);
	fs->opts.state_dir = NULL;   /* the copy above is the one used */
	snprintf(fs->mountpoint, sizeof(fs->mountpoint), "%s", mountpoint);
	sg_group_init(&fs->group);
	sg_op_init(&fs->user_close_op);
	sg_op_init(&fs->lost_op);
	sg_op_init(&fs->grace_op);
	struct sg_fuse_watchdog_config wc = {
		.stuck_after_ns = fs->opts.stuck_after_ns,
		.on_stuck = fs->opts.on_stuck,
		.userdata = fs->opts.userdata,
	};
	r = sg_fuse_watchdog_new(loop, &fs->group, &wc, &fs->watchdog);
	if (r == 0)
		r = sg_passthrough_new(layer, !fs->opts.no_passthrough, passthrough_settled, fs,
				       &fs->pt);
	if (r < 0) {
		sg_error_set(err, r, "out of memory for the FUSE mount");
		goto fail;
	}
	for (int i = 0; i < N_READS; i++) {
		fs->readers[i].fs = fs;
		sg_op_init(&fs->readers[i].op);
		fs->readers[i].buf = malloc(BUF_SIZE);
		if (!fs->readers[i].buf) {
			r = sg_error_set(err, -ENOMEM, "out of memory for the FUSE mount");
			goto fail;
		}
	}
	fs->se = fuse_session_new(&args, &lazyfs_ops, sizeof(lazyfs_ops), fs);
	fuse_opt_free_args(&args);
	if (!fs->se) {
		r = sg_error_set(err, -EIO, "cannot create FUSE session");
		goto fail;
	}
	*ret = fs;
	return 0;
fail:
	sg_lazyfs_free(fs);
	return r;
}

/* The session is connected to fs->fd: make it ours and start serving. */
static int lazyfs_serve(struct sg_lazyfs *fs, struct sg_error *err)
{
	int r;

	if (fcntl(fs->fd, F_SETFL, fcntl(fs->fd, F_GETFL) | O_NONBLOCK) < 0)
		return sg_error_set(err, -errno, "cannot make the FUSE fd non-blocking: %s",
				    strerror(errno));
	r = sg_layer_user_new(fs->layer, &fs->user);
	if (r < 0)
		return sg_error_set(err, r, "cannot use the layer: %s", strerror(-r));
	/* The last step: from here on the mount serves, and only an unmount ends it. */
	arm_reader(&fs->readers[0]);
	return 0;
}

int sg_lazyfs_mount(struct sg_loop *loop, struct sg_layer *layer, const char *mountpoint,
		    const struct sg_lazyfs_options *opts, struct sg_lazyfs **ret,
		    struct sg_error *err)
{
	struct sg_lazyfs *fs;
	int r;

	r = lazyfs_new(loop, layer, mountpoint, opts, &fs, err);
	if (r < 0)
		return r;
	/* Blocking: mount(2) of a FUSE filesystem (documented exception). */
	if (fuse_session_mount(fs->se, mountpoint) != 0) {
		r = sg_error_set(err, -EIO, "cannot mount FUSE filesystem at %s", mountpoint);
		goto fail;
	}
	fs->mounted = true;
	fs->fd = fuse_session_fd(fs->se);
	sg_passthrough_set_fd(fs->pt, fs->fd);
	/* Same fd: only the reply path changes (see session_writev). */
	if (fuse_session_custom_io(fs->se, &session_io, fs->fd) != 0) {
		r = sg_error_set(err, -EIO, "cannot hook the FUSE session's replies");
		goto fail;
	}
	r = open_journal(fs, false);
	if (r < 0) {
		sg_error_set(err, r, "cannot create the session's journal in %s: %s", fs->state_dir,
			     strerror(-r));
		goto fail;
	}
	r = lazyfs_serve(fs, err);
	if (r < 0)
		goto fail;
	*ret = fs;
	return 0;
fail:
	sg_lazyfs_free(fs);
	return r;
}

int sg_lazyfs_adopt(struct sg_loop *loop, struct sg_layer *layer, const char *mountpoint,
		    int fd, const struct sg_lazyfs_options *opts, struct sg_lazyfs **ret,
		    struct sg_error *err)
{
	struct sg_lazyfs *fs;
	int r;

	r = lazyfs_new(loop, layer, mountpoint, opts, &fs, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	/* The session owns the fd from here on (fuse_session_destroy closes it). */
	if (fuse_session_custom_io(fs->se, &session_io, fd) != 0) {
		close(fd);
		r = sg_error_set(err, -EIO, "cannot attach a FUSE session to the held descriptor");
		goto fail;
	}
	fs->fd = fd;
	fs->adopted = true;
	fs->mounted = true;
	fs->need_init = true;
	sg_passthrough_set_fd(fs->pt, fs->fd);
	if (!fs->state_dir[0] || load_init(fs) < 0)
		fs->init_req = NULL;   /* no INIT answered yet: the kernel's (resent) comes first */
	r = open_journal(fs, true);
	if (r < 0) {
		sg_error_set(err, r, "cannot read the session's journal in %s: %s", fs->state_dir,
			     strerror(-r));
		goto fail;
	}
	/* Requests the previous server read and never answered go back into the queue (with
	 * FUSE_UNIQUE_RESEND in their unique) and are read below like any other.  A kernel
	 * before 6.9 refuses the notification: those requests then wait forever, so say so. */
	struct k_out_header n = { .len = sizeof(n), .error = K_FUSE_NOTIFY_RESEND, .unique = 0 };
	if (write(fs->fd, &n, sizeof(n)) != (ssize_t)sizeof(n)) {
		r = sg_error_set(err, -errno, "the kernel refused FUSE_NOTIFY_RESEND (needs Linux "
				 "6.9 or later): %s", strerror(errno));
		goto fail;
	}
	r = lazyfs_serve(fs, err);
	if (r < 0)
		goto fail;
	*ret = fs;
	return 0;
fail:
	fs->mounted = false;   /* never unmount what we were only handed */
	sg_lazyfs_free(fs);
	return r;
}

int sg_lazyfs_fd(const struct sg_lazyfs *fs)
{
	return fs->fd;
}

static void maybe_done(struct sg_lazyfs *fs)
{
	sg_op_cb cb = fs->done_cb;

	if (fs->detaching && fs->user && !fs->user_closing && !fs->reads_pending &&
	    !sg_passthrough_waiting(fs->pt)) {
		/* Every request in flight was answered within the grace: leave now. */
		if (sg_op_busy(&fs->grace_op))
			(void)sg_op_cancel(&fs->grace_op);
		else
			close_user(fs);
		return;
	}
	if (!fs->stopping || !cb || fs->user || fs->reads_pending ||
	    sg_passthrough_waiting(fs->pt) || !sg_group_idle(&fs->group) ||
	    sg_op_busy(&fs->grace_op))
		return;
	fs->done_cb = NULL;   /* once */
	/* Cannot fail: the op was idle at sg_lazyfs_unmount, and the caller leaves it to us. */
	(void)sg_post(fs->loop, fs->done_op, 0, cb);
}

static void user_closed(struct sg_op *op)
{
	struct sg_lazyfs *fs = sg_container_of(op, struct sg_lazyfs, user_close_op);

	fs->user = NULL;
	maybe_done(fs);
}

static void close_user(struct sg_lazyfs *fs)
{
	if (!fs->user || fs->user_closing)
		return;
	fs->user_closing = true;
	/* Cannot fail: our user closes once, with our own idle op. */
	if (sg_layer_user_close(fs->user, &fs->user_close_op, user_closed) < 0)
		fs->user = NULL;
}

/* What unmount and detach share: the checks, then no more serving; cb(op) once done. */
static int begin_end(struct sg_lazyfs *fs, struct sg_op *op, sg_op_cb cb)
{
	if (!op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (fs->unmounting)
		return -EALREADY;
	stop(fs);
	fs->unmounting = true;
	fs->done_op = op;
	fs->done_cb = cb;
	return 0;
}

int sg_lazyfs_unmount(struct sg_lazyfs *fs, struct sg_op *op, sg_op_cb cb)
{
	int r = begin_end(fs, op, cb);

	if (r < 0)
		return r;
	if (fs->mounted) {
		/* Blocking: umount2(MNT_DETACH) (documented exception).  Readers blocked in the
		 * kernel are answered below (their layer reads complete with -ECANCELED, which
		 * replies EINTR); requests the kernel still sends get ENODEV.  A session taken
		 * over was not mounted by libfuse: detach it ourselves. */
		if (fs->adopted)
			(void)umount2(fs->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
		else
			fuse_session_unmount(fs->se);
		fs->mounted = false;
	}
	sg_group_cancel(&fs->group);
	close_user(fs);
	maybe_done(fs);
	return 0;
}

/* The grace for requests in flight is over: what is left is cancelled and left unanswered,
 * so that the kernel resends it to the next server. */
static void grace_over(struct sg_op *op)
{
	struct sg_lazyfs *fs = sg_container_of(op, struct sg_lazyfs, grace_op);

	close_user(fs);
	maybe_done(fs);
}

int sg_lazyfs_detach(struct sg_lazyfs *fs, uint64_t grace_ns, struct sg_op *op, sg_op_cb cb)
{
	int r = begin_end(fs, op, cb);

	if (r < 0)
		return r;
	fs->detaching = true;
	fs->mounted = false;   /* the mount stays; the fd holder keeps its connection */
	sg_passthrough_set_dropping(fs->pt);
	sg_group_cancel(&fs->group);   /* no more reads of /dev/fuse */
	if (!fs->reads_pending && !sg_passthrough_waiting(fs->pt))
		close_user(fs);
	else if (sg_timer_start(fs->loop, &fs->grace_op, grace_ns, grace_over) < 0)
		close_user(fs);
	maybe_done(fs);
	return 0;
}

void sg_lazyfs_free(struct sg_lazyfs *fs)
{
	if (!fs)
		return;
	SG_FREE_CHECK(fs->user || fs->reads_pending || (fs->pt && sg_passthrough_waiting(fs->pt)) ||
		      !sg_group_idle(&fs->group) || sg_op_busy(&fs->user_close_op) ||
		      sg_op_busy(&fs->grace_op), "FUSE mount");
	/* Closing the session fd ends the connection (unless a holder keeps a copy): a request
	 * still unanswered here (a lost reply, counted in stats.unanswered) fails in the kernel
	 * instead of hanging its reader forever. */
	sg_fuse_watchdog_free(fs->watchdog);
	if (fs->se) {
		if (fs->mounted && !fs->adopted)
			fuse_session_unmount(fs->se);
		else if (fs->mounted)
			(void)umount2(fs->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
		fuse_session_destroy(fs->se);
	}
	for (int i = 0; i < N_READS; i++)
		free(fs->readers[i].buf);
	sg_passthrough_free(fs->pt);
	free(fs->init_req);
	free(fs);
}
