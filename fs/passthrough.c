#define FUSE_USE_VERSION 34
#include "fs/passthrough.h"

#include <errno.h>
#include <fuse_lowlevel.h>
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
	/* Registered by an earlier server of this session (a takeover): how many of its opens
	 * are still around is unknown, so the id and the pin stay until the mount goes. */
	bool adopted;
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
	int journal_fd;               /* backing ids registered and closed; -1 = none */
	unsigned adopted;             /* inodes whose backing id an earlier server registered */
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
			if (s->backing_id > 0 && !s->passthrough_opens && !s->adopted)
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

/* ---- the journal of backing ids ----
 *
 * A file the kernel reads through passthrough names its backing file by an id registered on
 * the connection, not on our process: after a crash the kernel's open files keep reading
 * it, and a new open of that inode must name the same backing file (the kernel refuses
 * another with EBUSY, and a page-cache open with ETXTBSY).  So every registration and
 * every close is appended to a small file (8 bytes a record, one record per inode that
 * enters or leaves passthrough mode, not per open); whoever takes the session over reads
 * which ids are live and answers opens of those inodes with them. */
struct journal_rec {
	uint32_t node;
	int32_t id;                   /* > 0 registered, < 0 the registration -id closed */
};

static void journal_append(struct sg_passthrough *pt, uint32_t node, int32_t id)
{
	struct journal_rec rec = { node, id };

	/* A short write would only lose passthrough for that inode after a takeover. */
	if (pt->journal_fd >= 0)
		(void)!write(pt->journal_fd, &rec, sizeof(rec));
}

static int id_cmp(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return x < y ? -1 : x > y;
}

int sg_passthrough_journal(struct sg_passthrough *pt, int fd, bool adopt)
{
	struct journal_rec *recs = NULL;
	int32_t *closed = NULL;
	size_t n = 0, nclosed = 0;
	struct stat st;
	int r = 0;

	if (adopt && fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(*recs)) {
		n = (size_t)st.st_size / sizeof(*recs);
		recs = malloc(n * sizeof(*recs));
		closed = malloc(n * sizeof(*closed));
		if (!recs || !closed) {
			r = -ENOMEM;
			goto out;
		}
		ssize_t got = pread(fd, recs, n * sizeof(*recs), 0);
		n = got > 0 ? (size_t)got / sizeof(*recs) : 0;
		/* The kernel hands out backing ids cyclically: an id names one registration, so
		 * a registration is live unless its close follows. */
		for (size_t i = 0; i < n; i++)
			if (recs[i].id < 0 && recs[i].id != INT32_MIN)
				closed[nclosed++] = -recs[i].id;
		qsort(closed, nclosed, sizeof(*closed), id_cmp);
	}
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		r = -errno;
		goto out;
	}
	pt->journal_fd = fd;
	fd = -1;
	for (size_t i = 0; i < n; i++) {
		if (recs[i].id <= 0 || bsearch(&recs[i].id, closed, nclosed, sizeof(*closed), id_cmp))
			continue;
		struct open_state *s = open_state_get(pt, recs[i].node);
		if (!s || s->backing_id > 0)
			continue;
		/* Its cache file is read by the kernel directly: never evict it under it. */
		if (sg_layer_pin_file(pt->layer, s->node, true) < 0)
			continue;
		s->backing_id = recs[i].id;
		s->adopted = true;
		pt->adopted++;
		journal_append(pt, s->node, s->backing_id);   /* the compacted journal */
	}
out:
	free(recs);
	free(closed);
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
	if (s->passthrough_opens || s->cached_opens || s->verifying || s->adopted)
		return;
	if (s->backing_id > 0) {
		backing_close(pt, s->backing_id);
		journal_append(pt, s->node, -s->backing_id);
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
		journal_append(pt, s->node, id);
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
	if (!pt->adopted)
		return false;
	const struct open_state *s = open_state_find((struct sg_passthrough *)pt, node);
	return s && s->adopted;
}

void sg_passthrough_set_dropping(struct sg_passthrough *pt)
{
	pt->dropping = true;
}

void sg_passthrough_release(struct sg_passthrough *pt, const struct fuse_file_info *fi)
{
	if (!pt->on)
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
