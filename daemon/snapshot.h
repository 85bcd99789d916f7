/* Snapshot semantics, identical to containerd's overlayfs snapshotter: active, view and
 * committed snapshots in parent chains under ROOT/snapshots/<id>/{fs,work}, with metadata in
 * SQLite (daemon/meta.h).  Synchronous: each call is one SQLite transaction plus the
 * directory work it needs, ordered so that a crash at any point leaves metadata and disk
 * consistent or repairable at the next start (sg_snapshots_open removes what no metadata
 * references).
 *
 * Errors are negative errno values with a message in err (daemon/core/error.h; NULL allowed):
 *   -ENOENT    not found                  -> gRPC NotFound
 *   -EEXIST    name taken                 -> AlreadyExists
 *   -EINVAL    bad argument               -> InvalidArgument
 *   -EBUSY     wrong kind / has children  -> FailedPrecondition
 *   others                                -> Internal
 */
#ifndef STARGZD_SNAPSHOT_H
#define STARGZD_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/meta.h"

#define SG_LABEL_MAX 4096   /* containerd's limit on one label's key + value */

struct sg_snapshots;

struct sg_mount {
	char *type;
	char *source;
	char **options;
	size_t n_options;
};

struct sg_mounts {
	struct sg_mount *m;
	size_t n;
};

void sg_mounts_clear(struct sg_mounts *m);

/* Opens (creating if needed) ROOT/metadata.db and ROOT/snapshots, and repairs what a crash
 * may have left: half-created and half-removed directories. */
int sg_snapshots_open(const char *root, struct sg_snapshots **ret, struct sg_error *err);
/* The same, leaving alone the FUSE mounts of the snapshots keep_mounted() names (their
 * sessions outlived the previous daemon and are taken over); others are detached. */
int sg_snapshots_open_keeping(const char *root, bool (*keep_mounted)(void *ctx, int64_t id),
			      void *ctx, struct sg_snapshots **ret, struct sg_error *err);
void sg_snapshots_close(struct sg_snapshots *s);

int sg_snapshots_prepare(struct sg_snapshots *s, enum sg_snap_kind kind, const char *key,
			 const char *parent, const struct sg_label *labels, size_t n_labels,
			 struct sg_mounts *ret, struct sg_error *err);
int sg_snapshots_mounts(struct sg_snapshots *s, const char *key, struct sg_mounts *ret,
			struct sg_error *err);
int sg_snapshots_commit(struct sg_snapshots *s, const char *name, const char *key,
			const struct sg_label *labels, size_t n_labels, struct sg_error *err);
/* On success err is left alone unless the directory could not be deleted (it is left for
 * Cleanup or the next start): then it holds that warning. */
int sg_snapshots_remove(struct sg_snapshots *s, const char *key, struct sg_error *err);
/* What Remove would refuse (missing, has children), without changing anything. */
int sg_snapshots_remove_check(struct sg_snapshots *s, const char *key, struct sg_error *err);
int sg_snapshots_stat(struct sg_snapshots *s, const char *key, struct sg_snap *ret,
		      struct sg_error *err);
/* paths: "labels" or "labels.KEY" (none = all mutable fields, i.e. labels). */
int sg_snapshots_update(struct sg_snapshots *s, const char *name, const struct sg_label *labels,
			size_t n_labels, const char *const *paths, size_t n_paths,
			struct sg_snap *ret, struct sg_error *err);
/* Calls fn for each snapshot matching the filters (containerd syntax, OR-ed). */
int sg_snapshots_list(struct sg_snapshots *s, const char *const *filters, size_t n_filters,
		      int (*fn)(const struct sg_snap *snap, void *userdata), void *userdata,
		      struct sg_error *err);
int sg_snapshots_usage(struct sg_snapshots *s, const char *key, int64_t *ret_size,
		       int64_t *ret_inodes, struct sg_error *err);
/* Removes directories under ROOT/snapshots that no snapshot references. */
int sg_snapshots_cleanup(struct sg_snapshots *s, struct sg_error *err);

/* ---- remote (lazily mounted) snapshots ----
 * A remote Prepare reserves a committed snapshot under the target name (hidden from Stat
 * and List while SG_SNAP_REMOTE_MOUNTING), mounts the layer at its fs/ directory, then marks
 * it ready — or aborts, removing row and directory.  Labels get SG_SNAP_REMOTE_LABEL. */
#define SG_SNAP_REMOTE_LABEL "containerd.io/snapshot/remote"
#define SG_SNAP_REMOTE_LABEL_VALUE "remote snapshot"

/* Lets build_mounts refuse (-EAGAIN) a chain whose remote layer is not mounted now. */
void sg_snapshots_set_remote_check(struct sg_snapshots *s, bool (*mounted)(void *ctx, int64_t id),
				   void *ctx);
/* The ids of snapshot id's parent chain, nearest first (*ret_ids to free; NULL when none):
 * 0, -ENOENT (no such id), -EIO (a dangling parent), -ELOOP or -ENOMEM. */
int sg_snapshots_ancestors(struct sg_snapshots *s, int64_t id, int64_t **ret_ids, size_t *ret_n);
/* ROOT/snapshots/<id>/fs */
void sg_snapshots_path(const struct sg_snapshots *s, int64_t id, char *buf, size_t len);
int sg_snapshots_remote_reserve(struct sg_snapshots *s, const char *target, const char *parent,
				const struct sg_label *labels, size_t n_labels, int64_t *ret_id,
				struct sg_error *err);
int sg_snapshots_remote_ready(struct sg_snapshots *s, int64_t id, struct sg_error *err);
int sg_snapshots_remote_abort(struct sg_snapshots *s, int64_t id, struct sg_error *err);
/* Every ready remote snapshot (to mount again after a restart). */
int sg_snapshots_foreach_remote(struct sg_snapshots *s,
				int (*fn)(const struct sg_snap *snap, void *userdata), void *userdata);

/* Checks labels against containerd's limits: -EINVAL with a message. */
int sg_labels_validate(const struct sg_label *labels, size_t n, struct sg_error *err);

#endif
