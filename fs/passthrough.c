#define FUSE_USE_VERSION 34
#include "fs/passthrough.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "fs/fuse_kabi.h"
#include "fs/layer_trust.h"
#include "fs/lazyfs.h"

/* fi->fh of a file opened in passthrough mode carries this bit beside the node id. */
#define FH_PASSTHROUGH (1ull << 63)
#define OPEN_BUCKETS 256

/* How an inode is open right now (see the header: one mode per inode). */
struct open_state {
	struct open_state *next;
	uint32_t node;
	uint32_t cached_opens, passthrough_opens;
	int32_t backing_id;
	struct sg_passthrough *pt;
	bool verifying;               /* a trust check runs; opens wait for it */
	struct sg_op verify_op;       /* the trust check's */
	struct deferred_open *waiting;
};

/* An OPEN answered once the file's cache has been checked. */
struct deferred_open {
	struct deferred_open *next;
	fuse_req_t req;
	struct fuse_file_info fi;
};

struct sg_passthrough {
	struct sg_layer *layer;
	int fd;                       /* the session's; -1 before the mount */
	/* wanted by the options, offered by the kernel at INIT, then on */
	bool wanted, offered, on;
	uint64_t init_unique;
	int32_t reply_backing_id;     /* set around fuse_reply_open for the writev hook */
	struct open_state *opens[OPEN_BUCKETS];
	unsigned waiting;             /* deferred opens */
	void (*on_settled)(void *userdata);
	void *userdata;
	bool dropping;                /* cancelled opens get no reply (sg_passthrough_set_dropping) */
	int journal_fd;               /* how inodes are open (the journal below); -1 = none */
	char journal_path[PATH_MAX];
	unsigned journal_records;
	unsigned adopted;             /* inodes whose state an earlier server left */
	bool agreed;                  /* stats: the kernel agreed at INIT */
	int error;                    /* stats: errno of the last failed backing registration */
	uint64_t passthrough_opens, cached_opens;
};

int sg_passthrough_new(struct sg_layer *layer, bool wanted, void (*on_settled)(void *userdata),
		       void *userdata, struct sg_passthrough **ret)
{
	struct sg_passthrough *pt = calloc(1, sizeof(*pt));

	if (!pt)
		return -ENOMEM;
	pt->layer = layer;
	pt->fd = -1;
	pt->journal_fd = -1;
	pt->wanted = wanted;
	pt->on_settled = on_settled;
	pt->userdata = userdata;
	*ret = pt;
	return 0;
}

void sg_passthrough_set_fd(struct sg_passthrough *pt, int fd)
{
	pt->fd = fd;
}

void sg_passthrough_free(struct sg_passthrough *pt)
{
	if (!pt)
		return;
	SG_FREE_CHECK(pt->waiting, "FUSE passthrough (opens waiting)");
	for (unsigned b = 0; b < OPEN_BUCKETS; b++)
		while (pt->opens[b]) {
			struct open_state *s = pt->opens[b];
			pt->opens[b] = s->next;
			if (s->backing_id > 0 && !s->passthrough_opens)
				(void)sg_layer_pin_file(pt->layer, s->node, false);
			free(s);
		}
	if (pt->journal_fd >= 0)
		close(pt->journal_fd);
	free(pt);
}

/* ---- INIT and the replies ---- */

void sg_passthrough_peek_init(struct sg_passthrough *pt, const uint8_t *buf, size_t n)
{
	struct k_in_header h;
	struct k_init_in in;

	if (pt->on || pt->offered)
		return;
	if (n < sizeof(h) + sizeof(in) - sizeof(in.unused))
		return;
	memcpy(&h, buf, sizeof(h));
	if (h.opcode != K_FUSE_INIT)
		return;
	memset(&in, 0, sizeof(in));
	memcpy(&in, buf + sizeof(h), n - sizeof(h) < sizeof(in) ? n - sizeof(h) : sizeof(in));
	pt->init_unique = h.unique;
	pt->offered = pt->wanted && (in.flags & K_FUSE_INIT_EXT) &&
		      (in.flags2 & K_FUSE_PASSTHROUGH_HI);
}

void sg_passthrough_patch_reply(struct sg_passthrough *pt, struct iovec *iov, int count)
{
	if (count < 2 || iov[0].iov_len != sizeof(struct k_out_header))
		return;
	const struct k_out_header *h = iov[0].iov_base;
	if (pt->reply_backing_id > 0 && h->error == 0 &&
	    iov[1].iov_len == sizeof(struct k_open_out)) {
		struct k_open_out *o = iov[1].iov_base;
		o->open_flags |= K_FOPEN_PASSTHROUGH;
		o->backing_id = pt->reply_backing_id;
	} else if (pt->offered && h->unique == pt->init_unique && h->error == 0 &&
		   iov[1].iov_len >= offsetof(struct k_init_out, max_stack_depth) + 4) {
		struct k_init_out *o = iov[1].iov_base;
		/* Stack depth 1: cache files live on a plain filesystem, and overlayfs can still
		 * stack on this mount (the kernel's limit is 2). */
		o->flags |= K_FUSE_INIT_EXT;
		o->flags2 |= K_FUSE_PASSTHROUGH_HI;
		o->max_stack_depth = 1;
		pt->offered = false;
		pt->on = true;
		pt->agreed = true;
	}
}

bool sg_passthrough_on(const struct sg_passthrough *pt)
{
	return pt->on;
}

/* ---- opens ---- */

static struct open_state *open_state_find(struct sg_passthrough *pt, uint32_t node)
{
	for (struct open_state *s = pt->opens[node % OPEN_BUCKETS]; s; s = s->next)
		if (s->node == node)
			return s;
	return NULL;
}

static struct open_state *open_state_get(struct sg_passthrough *pt, uint32_t node)
{
	struct open_state *s = open_state_find(pt, node);

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->node = node;
	s->pt = pt;
	sg_op_init(&s->verify_op);
	s->next = pt->opens[node % OPEN_BUCKETS];
	pt->opens[node % OPEN_BUCKETS] = s;
	return s;
}

static struct open_state *open_state_get(struct sg_passthrough *pt, uint32_t node);

/* ---- the journal: how each inode is open, for whoever takes the session over ----
 *
 * The kernel keeps one mode per inode while it is open: a file it reads through passthrough
 * names its backing file by an id registered on the connection (not on our process), a new
 * open of that inode must name the same backing file (another gets EBUSY), and a page-cache
 * open of an inode in passthrough mode gets ETXTBSY, and the reverse.  After a crash the
 * kernel's open files live on, so the next server must know, per inode, the live backing id
 * and how many opens of each mode are out.  Every registration, backing close, open reply
 * and release is appended to a small file (16 bytes a record): an open before its reply is
 * written, a release after its reply (sg_passthrough_release), so that a crash in between
 * leaves a count too high, never too low (an inode then stays in its mode a little longer).
 * Takeover folds the records into open states; the file is compacted then and whenever it
 * outgrows JOURNAL_COMPACT records. */
enum journal_kind {
	J_BACKING = 1,                /* id registered */
	J_UNBACK,                     /* id closed */
	J_CACHED_OPEN,
	J_CACHED_CLOSE,
	J_PT_OPEN,
	J_PT_CLOSE,
};
struct journal_rec {
	uint32_t node;
	uint32_t kind;
	int32_t id;
	uint32_t seq;                 /* the record's place, for a stable sort at takeover */
};
#define JOURNAL_COMPACT 65536u

static int journal_write_state(struct sg_passthrough *pt, int fd);

static void journal_append(struct sg_passthrough *pt, uint32_t node, enum journal_kind kind,
			   int32_t id)
{
	struct journal_rec rec = { node, kind, id, 0 };

	if (pt->journal_fd < 0)
		return;
	/* A short write only makes a takeover more conservative or lose passthrough for an
	 * inode; nothing is answered wrong because of it. */
	(void)!write(pt->journal_fd, &rec, sizeof(rec));
	if (++pt->journal_records < JOURNAL_COMPACT)
		return;
	/* Blocking, once per 64k records: the live state into a new file, renamed over. */
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", pt->journal_path);
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (journal_write_state(pt, fd) < 0 || rename(tmp, pt->journal_path) < 0) {
		close(fd);
		(void)unlink(tmp);
		return;
	}
	close(pt->journal_fd);
	pt->journal_fd = fd;
}

/* The live state as records: what a fold of the whole history would give. */
static int journal_write_state(struct sg_passthrough *pt, int fd)
{
	unsigned n = 0;

	for (unsigned b = 0; b < OPEN_BUCKETS; b++)
		for (struct open_state *s = pt->opens[b]; s; s = s->next) {
			struct journal_rec rec = { s->node, J_BACKING, s->backing_id, 0 };
			if (s->backing_id > 0 && write(fd, &rec, sizeof(rec)) != sizeof(rec))
				return -EIO;
			rec = (struct journal_rec){ s->node, J_CACHED_OPEN, 0, 0 };
			for (uint32_t i = 0; i < s->cached_opens; i++)
				if (write(fd, &rec, sizeof(rec)) != sizeof(rec))
					return -EIO;
			rec.kind = J_PT_OPEN;
			for (uint32_t i = 0; i < s->passthrough_opens; i++)
				if (write(fd, &rec, sizeof(rec)) != sizeof(rec))
					return -EIO;
			n += 1 + s->cached_opens + s->passthrough_opens;
		}
	pt->journal_records = n;
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct journal_rec *x = a, *y = b;
	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One inode's records, in the order written, into its open state. */
static void fold(struct sg_passthrough *pt, const struct journal_rec *r, size_t n)
{
	int32_t backing = 0;
	int64_t cached = 0, passthrough = 0;

	for (size_t i = 0; i < n; i++) {
		switch (r[i].kind) {
		case J_BACKING: backing = r[i].id; break;
		case J_UNBACK: if (backing == r[i].id) backing = 0; break;
		case J_CACHED_OPEN: cached++; break;
		case J_CACHED_CLOSE: cached -= cached > 0; break;
		case J_PT_OPEN: passthrough++; break;
		case J_PT_CLOSE: passthrough -= passthrough > 0; break;
		default: break;
		}
	}
	if (backing <= 0 && cached == 0 && passthrough == 0)
		return;
	struct open_state *s = open_state_get(pt, r[0].node);
	if (!s)
		return;
	/* Its cache file is read by the kernel directly: never evict it under it. */
	if (backing > 0 && sg_layer_pin_file(pt->layer, s->node, true) == 0)
		s->backing_id = backing;
	s->cached_opens = (uint32_t)(cached > UINT32_MAX ? UINT32_MAX : cached);
	s->passthrough_opens = (uint32_t)(passthrough > UINT32_MAX ? UINT32_MAX : passthrough);
	pt->adopted++;
}

int sg_passthrough_journal(struct sg_passthrough *pt, const char *path, bool adopt)
{
	struct journal_rec *recs = NULL;
	size_t n = 0;
	struct stat st;
	int fd, r = 0;

	snprintf(pt->journal_path, sizeof(pt->journal_path), "%s", path);
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (adopt && fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(*recs)) {
		n = (size_t)st.st_size / sizeof(*recs);
		recs = malloc(n * sizeof(*recs));
		if (!recs) {
			r = -ENOMEM;
			goto out;
		}
		ssize_t got = pread(fd, recs, n * sizeof(*recs), 0);
		n = got > 0 ? (size_t)got / sizeof(*recs) : 0;
		for (size_t i = 0; i < n; i++)
			recs[i].seq = (uint32_t)i;
		qsort(recs, n, sizeof(*recs), rec_cmp);
		for (size_t i = 0, j; i < n; i = j) {
			for (j = i; j < n && recs[j].node == recs[i].node; j++)
				;
			fold(pt, recs + i, j - i);
		}
	}
	/* Start over with just the live state. */
	if (ftruncate(fd, 0) < 0 || journal_write_state(pt, fd) < 0) {
		r = -EIO;
		goto out;
	}
	pt->journal_fd = fd;
	fd = -1;
out:
	free(recs);
	if (fd >= 0)
		close(fd);
	return r;
}

static void backing_close(struct sg_passthrough *pt, int32_t id)
{
	uint32_t arg = (uint32_t)id;

	/* The kernel's open files keep their own reference to the backing file. */
	if (pt->fd >= 0)
		(void)ioctl(pt->fd, K_FUSE_DEV_IOC_BACKING_CLOSE, &arg);
}

/* Forgets the inode's state (and its backing id) once nothing uses it. */
static void open_state_release_if_idle(struct sg_passthrough *pt, struct open_state *s)
{
	if (s->passthrough_opens || s->cached_opens || s->verifying)
		return;
	if (s->backing_id > 0) {
		backing_close(pt, s->backing_id);
		journal_append(pt, s->node, J_UNBACK, s->backing_id);
		sg_layer_pin_file(pt->layer, s->node, false);
	}
	for (struct open_state **p = &pt->opens[s->node % OPEN_BUCKETS]; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	free(s);
}

/* One open fewer. */
static void open_state_put(struct sg_passthrough *pt, struct open_state *s, bool passthrough)
{
	if (passthrough && s->passthrough_opens > 0)
		s->passthrough_opens--;
	else if (!passthrough && s->cached_opens > 0)
		s->cached_opens--;
	journal_append(pt, s->node, passthrough ? J_PT_CLOSE : J_CACHED_CLOSE, 0);
	open_state_release_if_idle(pt, s);
}

/* Registers the file's cache file as its backing file if the layer vouches for every byte
 * of it. */
static int try_backing(struct sg_passthrough *pt, struct open_state *s)
{
	int fd = sg_layer_open_verified(pt->layer, s->node);

	if (fd < 0)
		return fd;
	struct k_backing_map map = { .fd = fd };
	int id = ioctl(pt->fd, K_FUSE_DEV_IOC_BACKING_OPEN, &map);
	int e = errno;
	close(fd);
	if (id > 0 && sg_layer_pin_file(pt->layer, s->node, true) < 0) {
		backing_close(pt, id);
		return -EOVERFLOW;
	}
	if (id > 0) {
		s->backing_id = id;
		journal_append(pt, s->node, J_BACKING, id);
		return 0;
	}
	pt->error = id < 0 ? e : EPROTO;
	if (id == 0 || e == EPERM || e == ELOOP || e == ENOTTY || e == EINVAL || e == EOPNOTSUPP)
		pt->on = false;
	return -pt->error;
}

/* Answers an OPEN in the inode's current mode: passthrough when it has a backing file. */
static void reply_open(struct sg_passthrough *pt, struct open_state *s, fuse_req_t req,
		       struct fuse_file_info *fi)
{
	if (s->backing_id > 0) {
		s->passthrough_opens++;
		pt->passthrough_opens++;
		journal_append(pt, s->node, J_PT_OPEN, 0);   /* before the reply: see the journal */
		fi->fh |= FH_PASSTHROUGH;
		fi->keep_cache = 0;
		pt->reply_backing_id = s->backing_id;
		int r = fuse_reply_open(req, fi);
		pt->reply_backing_id = 0;
		if (r < 0)   /* the opener is gone: no release will come */
			open_state_put(pt, s, true);
		return;
	}
	s->cached_opens++;
	pt->cached_opens++;
	journal_append(pt, s->node, J_CACHED_OPEN, 0);
	if (fuse_reply_open(req, fi) < 0)
		open_state_put(pt, s, false);
}

/* The trust check of a file that was complete in the cache has ended: the opens that waited
 * for it go to the kernel (passthrough) or, if the check failed, through us. */
static void verified(struct sg_op *op)
{
	struct open_state *s = sg_container_of(op, struct open_state, verify_op);
	struct sg_passthrough *pt = s->pt;
	struct deferred_open *d;
	int res = op->res;

	if (res == 0 && pt->on && !s->cached_opens && !s->passthrough_opens)
		(void)try_backing(pt, s);
	/* s->verifying stays set until the replies are out: a failed reply must not free s. */
	while ((d = s->waiting)) {
		s->waiting = d->next;
		if (res == -ECANCELED && pt->dropping)
			fuse_reply_none(d->req);   /* resent to the next server of the session */
		else if (res == -ECANCELED)
			fuse_reply_err(d->req, EINTR);
		else
			reply_open(pt, s, d->req, &d->fi);
		free(d);
		pt->waiting--;
	}
	s->verifying = false;
	open_state_release_if_idle(pt, s);
	if (pt->on_settled)
		pt->on_settled(pt->userdata);
}

void sg_passthrough_open(struct sg_passthrough *pt, struct sg_layer_user *user,
			 struct fuse_req *req, struct fuse_file_info *fi, uint32_t node)
{
	struct open_state *s = open_state_get(pt, node);

	if (!s) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!s->verifying && s->cached_opens == 0 && s->passthrough_opens == 0 &&
	    s->backing_id <= 0 && try_backing(pt, s) == -EAGAIN &&
	    user && sg_layer_verify_file(user, node, &s->verify_op, verified) == 0)
		s->verifying = true;   /* complete in the cache, not checked since the mount */
	if (s->verifying) {
		/* The check reads the file once (~0.1 s per 100 MB). */
		struct deferred_open *d = malloc(sizeof(*d));
		if (!d) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		d->req = req;
		d->fi = *fi;
		d->next = s->waiting;
		s->waiting = d;
		pt->waiting++;
		return;
	}
	reply_open(pt, s, req, fi);
}

bool sg_passthrough_adopted(const struct sg_passthrough *pt, uint32_t node)
{
	return pt->adopted && open_state_find((struct sg_passthrough *)pt, node);
}

void sg_passthrough_set_dropping(struct sg_passthrough *pt)
{
	pt->dropping = true;
}

void sg_passthrough_release(struct sg_passthrough *pt, const struct fuse_file_info *fi)
{
	if (!pt->on && !pt->adopted)
		return;
	struct open_state *s = open_state_find(pt, (uint32_t)fi->fh);
	if (s)
		open_state_put(pt, s, (fi->fh & FH_PASSTHROUGH) != 0);
}

unsigned sg_passthrough_waiting(const struct sg_passthrough *pt)
{
	return pt->waiting;
}

void sg_passthrough_stats(const struct sg_passthrough *pt, struct sg_lazyfs_stats *ret)
{
	ret->passthrough = pt->agreed;
	ret->passthrough_error = pt->error;
	ret->passthrough_opens = pt->passthrough_opens;
	ret->cached_opens = pt->cached_opens;
}
