/* Trust checks for FUSE passthrough, a part of the layer object (fs/layer_int.h).
 *
 * A file handed to the kernel is read without us seeing the bytes, so before that every
 * chunk of its cache file must have been verified during this mount.  After a restart the
 * chunks on disk are untrusted: a check reads them back (two at a time, one file after the
 * other) and compares each with its digest, like any disk load; a bad one is dropped from
 * the cache.  While the kernel holds a cache file (a pin), none of its chunks is evicted. */
#ifndef STARGZD_FS_LAYER_TRUST_H
#define STARGZD_FS_LAYER_TRUST_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/loop.h"

struct sg_layer;
struct sg_layer_user;

/* When every chunk of regular file `node` (hardlinks resolved) is in the disk cache and was
 * verified during this mount, returns a read-only fd of its cache file, which then holds
 * exactly the file's bytes (the caller closes it).  -EAGAIN: the file is complete on disk
 * but not verified during this mount (sg_layer_verify_file).  -ENOENT: chunks are missing
 * (or the file is empty). */
int sg_layer_open_verified(struct sg_layer *layer, uint32_t node);
/* While pinned (a backing file of a passthrough open, counted: one pin per mount that handed
 * it to the kernel), no chunk of the resolved regular file `node` is evicted from the disk
 * cache, so its cache file never changes under the kernel.  -EOVERFLOW: too many pins (the
 * caller then serves the file itself). */
int sg_layer_pin_file(struct sg_layer *layer, uint32_t node, bool pin);
/* Reads back every cached chunk of regular file `node` not verified during this mount and
 * checks it against its digest (a bad one is dropped from the cache).  cb(op) runs once
 * from the loop with op->res 0 when the whole file is now in the cache and verified,
 * -ENOENT when it is not, -ECANCELED when the user or the layer closes first.  op stays the
 * caller's and valid until then.  A negative errno: nothing started, no callback. */
int sg_layer_verify_file(struct sg_layer_user *user, uint32_t node, struct sg_op *op,
			 sg_op_cb cb);

/* For the layer's own files.  Starts the chunk loads of the checks that wait, a few at a
 * time, and answers the checks that are done: after a check's chunk load ended, and at
 * close (then every check is answered -ECANCELED). */
void sg_layer_trust_continue(struct sg_layer *l);
/* The user leaves: its checks are answered -ECANCELED. */
void sg_layer_trust_cancel_user(struct sg_layer_user *u);

#endif
