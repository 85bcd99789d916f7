/* Persistent snapshot metadata in SQLite (ROOT/metadata.db).
 *
 * One row per snapshot (id, name, parent, kind, times, usage) and one per label.  Callers
 * wrap every state-changing RPC in sg_meta_begin/commit so that it is one transaction.
 * The database runs in WAL mode with synchronous=NORMAL: a crash of the process (kill -9)
 * never loses or tears a committed transaction; a power cut may lose the newest ones but
 * never corrupts the file.  These synchronous writes are the one accepted blocking call
 * on the event loop (a commit costs well under a millisecond in WAL mode).
 *
 * Strings in a `struct sg_snap` are owned by it; sg_snap_clear() frees them.
 *
 * Errors are negative errno values; err (daemon/core/error.h, may be NULL) gets SQLite's
 * message for the statement that failed ("database is locked"), or says which row was
 * missing for -ENOENT.  Callers add their context in front. */
#ifndef STARGZD_META_H
#define STARGZD_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"

struct sg_meta;

enum sg_snap_kind {
	SG_SNAP_UNKNOWN = 0,
	SG_SNAP_VIEW = 1,
	SG_SNAP_ACTIVE = 2,
	SG_SNAP_COMMITTED = 3,
};

/* Whether a snapshot's data is a lazily mounted remote layer. */
enum sg_snap_remote {
	SG_SNAP_LOCAL = 0,
	SG_SNAP_REMOTE = 1,          /* committed, its fs/ is a FUSE mount of the layer */
	SG_SNAP_REMOTE_MOUNTING = 2, /* reserved while the mount is being set up; a crash
				      * leaves such rows behind, and the next start drops them */
};

struct sg_label {
	char *key;
	char *value;
};

struct sg_snap {
	int64_t id;
	char *name;
	int64_t parent_id;        /* 0 = none */
	char *parent;             /* parent's name, or NULL */
	enum sg_snap_kind kind;
	int64_t created_ns;       /* CLOCK_REALTIME, nanoseconds */
	int64_t updated_ns;
	int64_t size;             /* usage, recorded at commit */
	int64_t inodes;
	enum sg_snap_remote remote;
	struct sg_label *labels;  /* sorted by key */
	size_t n_labels;
};

void sg_snap_clear(struct sg_snap *s);
const char *sg_snap_label(const struct sg_snap *s, const char *key);

/* err: "cannot open PATH: ...", "cannot set up PATH: ..." or "cannot prepare statement: ...". */
int sg_meta_open(const char *path, struct sg_meta **ret_meta, struct sg_error *err);
void sg_meta_close(struct sg_meta *meta);

int sg_meta_begin(struct sg_meta *meta, struct sg_error *err);
int sg_meta_commit(struct sg_meta *meta, struct sg_error *err);
void sg_meta_rollback(struct sg_meta *meta);

/* Lookups fill *ret (with labels and parent name); -ENOENT if there is no such snapshot. */
int sg_meta_get(struct sg_meta *meta, const char *name, struct sg_snap *ret,
		struct sg_error *err);
int sg_meta_get_by_id(struct sg_meta *meta, int64_t id, struct sg_snap *ret,
		      struct sg_error *err);

/* Inserts a snapshot; -EEXIST if the name is taken.  Returns the new id in *ret_id. */
int sg_meta_insert(struct sg_meta *meta, const char *name, int64_t parent_id,
		   enum sg_snap_kind kind, enum sg_snap_remote remote, const struct sg_label *labels,
		   size_t n_labels, int64_t now_ns, int64_t *ret_id, struct sg_error *err);
int sg_meta_set_remote(struct sg_meta *meta, int64_t id, enum sg_snap_remote remote,
		       struct sg_error *err);
/* Turns an active snapshot into a committed one named `name` with exactly these labels
 * (containerd does not inherit the active snapshot's labels); -EEXIST if name is taken. */
int sg_meta_commit_active(struct sg_meta *meta, int64_t id, const char *name,
			  const struct sg_label *labels, size_t n_labels, int64_t size,
			  int64_t inodes, int64_t now_ns, struct sg_error *err);
int sg_meta_delete(struct sg_meta *meta, int64_t id, struct sg_error *err);
/* 1 if some snapshot has `id` as parent, 0 if none, or a negative errno. */
int sg_meta_has_children(struct sg_meta *meta, int64_t id, struct sg_error *err);
/* Replaces all labels. */
int sg_meta_set_labels(struct sg_meta *meta, int64_t id, const struct sg_label *labels,
		       size_t n_labels, int64_t updated_ns, struct sg_error *err);

/* Calls fn for every snapshot in id order; stops early (and returns that value, err left
 * alone) when fn returns non-zero.  The snapshot passed to fn is cleared after fn returns. */
int sg_meta_foreach(struct sg_meta *meta, int (*fn)(const struct sg_snap *s, void *userdata),
		    void *userdata, struct sg_error *err);

/* Whether a snapshot with this id exists (for cleaning up directories). */
int sg_meta_id_exists(struct sg_meta *meta, int64_t id, struct sg_error *err);

#endif
