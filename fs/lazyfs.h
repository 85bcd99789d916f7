/* A lazily fetched layer as a read-only FUSE filesystem, served by the event loop.
 *
 * libfuse3's low-level API parses and answers requests; the session fd is polled by an
 * io_uring op on the loop, read without blocking, and each request buffer is handed to
 * fuse_session_process_buf.  Requests that need remote data keep their fuse_req_t and are
 * answered when sg_layer_read completes.  Replies are written by libfuse with writev on
 * /dev/fuse, which never blocks; mounting and unmounting are the documented blocking calls.
 *
 * The tree is the layer's TOC: inode = TOC node id + 1 (the root is 1), hardlinks share
 * their target's inode, whiteouts appear as 0:0 character devices and opaque directories
 * carry trusted.overlay.opaque=y (and user.overlay.opaque=y), as overlayfs expects of a
 * lower layer.  The eStargz bookkeeping entries (stargz.index.json, the landmarks) are there
 * as a full pull extracts them.  The layer is immutable, so attributes and entries are
 * cached by the kernel for a long time and open files keep their page cache.
 *
 * Every request read is tracked until its reply is written (fs/fuse_watchdog.h); files the
 * layer vouches for are handed to the kernel (fs/passthrough.h). */
#ifndef STARGZD_FS_LAZYFS_H
#define STARGZD_FS_LAZYFS_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_loop;
struct sg_layer;
struct sg_lazyfs;

struct sg_lazyfs_options {
	/* Never hand files to the kernel (FUSE passthrough); every read then comes to us. */
	bool no_passthrough;
	/* A request unanswered for this long is reported once through on_stuck: it is either
	 * waiting on a fetch that outlives its budget or a lost reply (a bug).  0 = 60 s. */
	uint64_t stuck_after_ns;
	void (*on_stuck)(void *userdata, unsigned opcode, uint64_t unique, uint64_t age_ms);
	/* The kernel ended the mount without sg_lazyfs_unmount (fusermount -u, umount, a
	 * connection abort).  Called once, from the loop; the owner then calls
	 * sg_lazyfs_unmount (which finds nothing left to detach) and frees. */
	void (*on_lost)(void *userdata);
	void *userdata;
	/* How long the kernel may cache attributes and names (also "no such name") in seconds;
	 * 0 = a day: a layer never changes, so the longest is right unless an operator wants
	 * less kernel memory held by it. */
	double attr_timeout, entry_timeout;
	/* A directory where the session keeps what a takeover needs (its INIT request and the
	 * journal of passthrough backing ids, fs/passthrough.h); NULL = not kept, the session
	 * can then not be taken over.  Copied. */
	const char *state_dir;
};

struct sg_lazyfs_stats {
	/* Every request the kernel waits for gets exactly one reply: requests read, replies
	 * written, and those read but not answered yet (forgets and interrupts have none). */
	uint64_t requests, replies, unanswered;
	uint64_t stuck;               /* reported through on_stuck */
	bool lost;                    /* ended from outside (on_lost) */
	bool passthrough;             /* the kernel agreed to passthrough at INIT */
	int passthrough_error;        /* errno of the last failed backing registration */
	uint64_t passthrough_opens;   /* opens served by the kernel from the cache file */
	uint64_t cached_opens;        /* opens whose reads come to us */
};

/* Mounts `layer` (not owned; this mount becomes one of its users) at mountpoint and starts
 * serving; opts may be NULL (defaults).  -errno with a message in err on failure. */
int sg_lazyfs_mount(struct sg_loop *loop, struct sg_layer *layer, const char *mountpoint,
		    const struct sg_lazyfs_options *opts, struct sg_lazyfs **ret,
		    struct sg_error *err);
/* Takes over a session whose server went away (a crash, a restart, an upgrade): fd is its
 * /dev/fuse descriptor, kept alive meanwhile by someone else (owned from here on, closed on
 * failure too), mounted at mountpoint; state_dir in opts names what that server kept.
 * libfuse is put in the state the session's INIT left, the kernel is asked to resend the
 * requests the previous server read but did not answer (FUSE_NOTIFY_RESEND, Linux 6.9),
 * and serving starts.  Inodes are TOC ids and file handles carry nothing but the node, so
 * handles opened before keep working; how each inode is open (passthrough with which backing
 * file, or through the page cache, and how many times) comes back from the session's
 * journal (fs/passthrough.h), so new opens keep the mode the kernel holds the inode in and
 * passthrough stays on for the others.
 * Unmounting it later detaches the mountpoint with umount2. */
int sg_lazyfs_adopt(struct sg_loop *loop, struct sg_layer *layer, const char *mountpoint,
		    int fd, const struct sg_lazyfs_options *opts, struct sg_lazyfs **ret,
		    struct sg_error *err);
/* The session's /dev/fuse descriptor (to hand a copy to whoever keeps it across restarts). */
int sg_lazyfs_fd(const struct sg_lazyfs *fs);
void sg_lazyfs_stats(const struct sg_lazyfs *fs, struct sg_lazyfs_stats *ret);
/* The mount's user of its layer (fs/layer.h), e.g. to give it its own blob source; NULL
 * once the mount is ending (sg_lazyfs_unmount or _detach closed it). */
struct sg_layer_user *sg_lazyfs_user(struct sg_lazyfs *fs);
/* Detaches the mount and stops serving: requests waiting for the layer are answered (EINTR)
 * as their reads are cancelled; cb(op) runs from the loop (op->res 0) once none is in
 * flight, then sg_lazyfs_free() releases it (freeing earlier aborts).  The layer must stay
 * alive until then; other users of the layer are not disturbed.  -EBUSY: op is in flight,
 * -EALREADY: unmounted before (nothing done either way). */
int sg_lazyfs_unmount(struct sg_lazyfs *fs, struct sg_op *op, sg_op_cb cb);
/* Hands the session over instead of ending it (a graceful restart): stops reading requests,
 * lets those in flight finish for up to grace_ns, then cancels the rest without answering
 * them (the next server gets them again through FUSE_NOTIFY_RESEND), and leaves the mount
 * in place.  cb(op) as for sg_lazyfs_unmount; sg_lazyfs_free then closes only our copy of
 * the descriptor.  Same errors as sg_lazyfs_unmount. */
int sg_lazyfs_detach(struct sg_lazyfs *fs, uint64_t grace_ns, struct sg_op *op, sg_op_cb cb);
void sg_lazyfs_free(struct sg_lazyfs *fs);

#endif
