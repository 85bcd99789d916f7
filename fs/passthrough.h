/* FUSE passthrough for a lazyfs mount (fs/lazyfs.h): the kernel reads a regular file straight
 * from its cache file, through its own page cache, and never asks us.
 *
 *  - INIT: libfuse 3.14 cannot ask for passthrough, so the kernel's INIT request is peeked at
 *    (sg_passthrough_peek_init) and, if it offers passthrough, the INIT reply is patched on
 *    its way out (sg_passthrough_patch_reply, from the session's writev hook), as is each
 *    OPEN reply that carries a backing id (fs/fuse_kabi.h).
 *  - OPEN: a file goes to the kernel only when the layer vouches for every byte of its cache
 *    file (fs/layer_trust.h; its chunks are then pinned).  An open that finds the file
 *    complete but not checked since the mount waits for a trust check: answering at once
 *    would keep the inode in the slow mode for as long as that descriptor stays open.
 *  - The kernel refuses (EIO to the opener) to mix a passthrough open with a page-cache open
 *    of one inode, and all passthrough opens of an inode must name the same backing file; so
 *    an inode stays in the mode of its first open until its last release.
 *  - A kernel or filesystem that cannot do passthrough turns it off for the mount: reads
 *    then keep coming to us, which is slower but correct.
 *
 * Single-threaded, on the loop.  Nothing here logs. */
#ifndef STARGZD_FS_PASSTHROUGH_H
#define STARGZD_FS_PASSTHROUGH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct fuse_file_info;
struct fuse_req;                /* fuse_req_t */
struct sg_layer;
struct sg_layer_user;
struct sg_lazyfs_stats;
struct sg_passthrough;

/* wanted: the mount's options allow passthrough.  on_settled is a hook, called from the loop
 * each time a trust check ended and the opens that waited for it were answered. */
int sg_passthrough_new(struct sg_layer *layer, bool wanted, void (*on_settled)(void *userdata),
		       void *userdata, struct sg_passthrough **ret);
/* Forgets every inode's state.  A file still open in passthrough mode keeps its pin: the
 * kernel may go on reading its backing file through a descriptor that outlives a lazy
 * unmount.  Aborts while opens wait for a trust check. */
void sg_passthrough_free(struct sg_passthrough *pt);
/* The session's /dev/fuse descriptor, for registering backing files. */
void sg_passthrough_set_fd(struct sg_passthrough *pt, int fd);

/* A request read from the kernel: notes whether it is an INIT that offers passthrough. */
void sg_passthrough_peek_init(struct sg_passthrough *pt, const uint8_t *buf, size_t n);
/* A reply about to be written: turns passthrough on in the INIT reply, adds the backing id
 * to an OPEN reply. */
void sg_passthrough_patch_reply(struct sg_passthrough *pt, struct iovec *iov, int count);
/* The kernel agreed to passthrough, and it was not turned off since. */
bool sg_passthrough_on(const struct sg_passthrough *pt);

/* Answers the OPEN of regular file `node` (resolved; fi->fh holds it), now or once a trust
 * check by `user` (NULL: none can run) has ended.  Only while sg_passthrough_on. */
void sg_passthrough_open(struct sg_passthrough *pt, struct sg_layer_user *user,
			 struct fuse_req *req, struct fuse_file_info *fi, uint32_t node);
/* The session's journal (at path): every backing id registered and closed and every open
 * and release, per inode, so that a server taking the session over knows how each inode is
 * open (the kernel allows one mode per inode; see passthrough.c).  A new mount starts it
 * empty; a takeover (adopt) first folds what the previous server wrote into open states
 * (live backing ids pinned and reused, open counts that later releases bring down).  The
 * journal is compacted then, and whenever it grows long. */
int sg_passthrough_journal(struct sg_passthrough *pt, const char *path, bool adopt);
/* An earlier server of the session left state for the inode (open it through
 * sg_passthrough_open even when passthrough is off: it may have to name a backing file). */
bool sg_passthrough_adopted(const struct sg_passthrough *pt, uint32_t node);
/* The session is being handed over: opens whose trust check is cancelled get no reply (the
 * kernel resends them to the next server) instead of EINTR. */
void sg_passthrough_set_dropping(struct sg_passthrough *pt);
/* The RELEASE of a file opened through sg_passthrough_open, after its reply was written (a
 * crash in between then leaves the journal's count too high, never too low). */
void sg_passthrough_release(struct sg_passthrough *pt, const struct fuse_file_info *fi);
/* Opens waiting for a trust check (they hold FUSE requests). */
unsigned sg_passthrough_waiting(const struct sg_passthrough *pt);
/* Fills the passthrough fields of the mount's stats. */
void sg_passthrough_stats(const struct sg_passthrough *pt, struct sg_lazyfs_stats *ret);

#endif
