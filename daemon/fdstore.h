/* Where the daemon keeps its /dev/fuse session descriptors so that they outlive it: a
 * crash, a graceful restart or an upgrade then leaves every lazy mount alive (the kernel
 * queues its requests) for the next daemon to take over (fs/lazyfs.h, sg_lazyfs_adopt).
 *
 * Two keepers, chosen at start:
 *  - systemd's file descriptor store, when the daemon runs under systemd ($NOTIFY_SOCKET
 *    set): descriptors are stored with sd_notify "FDSTORE=1" and a name each, removed with
 *    "FDSTOREREMOVE=1", and come back at the next start of the service as
 *    $LISTEN_FDS/$LISTEN_FDNAMES.  The protocol is spoken here directly (a datagram to
 *    $NOTIFY_SOCKET with SCM_RIGHTS): no libsystemd.  The unit needs
 *    FileDescriptorStoreMax= (stargzd.service).
 *  - otherwise the fd holder (daemon/fdholder.h), a tiny process that outlives the daemon,
 *    started when the first lazy mount begins (sg_fdstore_warm) or at the first put.
 * STARGZD_FDSTORE=systemd|holder|none overrides the choice ("none": mounts end with the
 * daemon, as before takeover existed).
 *
 * All calls are blocking and short (a local socket round trip to a process that does
 * nothing else, or one datagram); they happen at start, at a mount and at an unmount. */
#ifndef STARGZD_FDSTORE_H
#define STARGZD_FDSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/error.h"
#include "daemon/fdholder.h"

enum sg_fdstore_kind {
	SG_FDSTORE_NONE,
	SG_FDSTORE_HOLDER,
	SG_FDSTORE_SYSTEMD,
};

struct sg_held_fd {
	char name[SG_FDHOLDER_NAME_MAX + 1];
	int fd;
};

struct sg_fdstore;

/* Chooses the keeper and takes back what it holds: *ret_held (n entries, the caller's to
 * close and free; NULL when none).  A holder that does not run holds nothing. */
int sg_fdstore_open(const char *root, struct sg_fdstore **ret, struct sg_held_fd **ret_held,
		    size_t *ret_n, struct sg_error *err);
enum sg_fdstore_kind sg_fdstore_kind(const struct sg_fdstore *st);
const char *sg_fdstore_kind_name(enum sg_fdstore_kind kind);
/* A mount is on its way: starts the holder if it does not run, without waiting for it, so
 * that the mount's sg_fdstore_put finds it up.  Started at the first put instead, the holder
 * (a fork, an exec, its socket) cost the first lazy mount of an image 24 ms, which containerd
 * waited for before preparing the next layer. */
void sg_fdstore_warm(struct sg_fdstore *st);
/* Keeps a copy of fd under name (replacing one of that name); starts the holder if needed. */
int sg_fdstore_put(struct sg_fdstore *st, const char *name, int fd, struct sg_error *err);
/* Forgets name (its session was unmounted). */
int sg_fdstore_remove(struct sg_fdstore *st, const char *name, struct sg_error *err);
/* Under systemd: READY=1 (the daemon serves), STOPPING=1; no-ops otherwise. */
void sg_fdstore_notify(struct sg_fdstore *st, const char *state);
void sg_fdstore_free(struct sg_fdstore *st);

#endif
