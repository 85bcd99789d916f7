/* The disk cache's size bound, shared by every layer of the process.
 *
 * The cache root (ROOT/cache) holds one directory per layer digest.  An sg_cache_bound accounts
 * the disk space used under it and keeps it under `max_bytes`:
 *
 *  - Unit: allocated bytes, not apparent sizes.  Directories found at start (layers of
 *    earlier runs, removed snapshots) are walked once and counted by st_blocks; a mounted
 *    layer counts what its walk found beyond its bitmap (debris, the bitmap itself) plus,
 *    per chunk present, the filesystem blocks its byte range touches (a block shared by two
 *    chunks is counted twice, so the count errs high).
 *  - Recency: a logical clock (sg_cache_bound_tick), one uint32 stamp per chunk kept by the
 *    layer and set on every use (memory, disk, fetch).  When the clock nears 2^32 every
 *    stamp is halved, which keeps their order.
 *  - Eviction: when a write would cross max_bytes, space is freed down to the watermark
 *    (90 % of max_bytes): first whole directories of layers not mounted, oldest mtime first
 *    (renamed to .trash-* at once, then unlinked a batch of files at a time), then the least
 *    recently used chunks over all mounted layers (the layer punches holes and clears bits).
 *    A few batches run inside sg_cache_bound_reserve; the rest continues from posted loop ops.
 *  - Only names that look like a layer digest (64 hex digits) or .trash-* are ever removed.
 *
 * Single-threaded: call everything from the loop.  Nothing here logs. */
#ifndef STARGZD_FS_CACHE_BOUND_H
#define STARGZD_FS_CACHE_BOUND_H

#include <stdbool.h>
#include <stdint.h>

struct sg_loop;
struct sg_cache_bound;
struct sg_cache_bound_layer;

/* The default bound: 20 GiB, but at most half of the filesystem holding `root`. */
#define SG_CACHE_BOUND_DEFAULT_MAX (20ull << 30)
/* Eviction stops, and background fetch does not go, beyond this share of the bound. */
#define SG_CACHE_BOUND_WATERMARK_PCT 90u

/* What a mounted layer offers to the eviction. */
struct sg_cache_bound_client {
	/* The oldest stamp among chunks it could evict now; false if none. */
	bool (*oldest)(void *ctx, uint32_t *ret_stamp);
	/* Evicts chunks stamped at or before max_stamp, oldest first, until `want` bytes (as
	 * accounted) are freed or max_chunks were evicted.  Returns the bytes freed; the cache
	 * subtracts them from the layer's account. */
	uint64_t (*evict)(void *ctx, uint32_t max_stamp, uint64_t want, unsigned max_chunks,
			  unsigned *ret_chunks);
	/* Halves every stamp (the clock wrapped). */
	void (*rescale)(void *ctx);
	void *ctx;
};

struct sg_cache_bound_stats {
	uint64_t max_bytes;
	uint64_t bytes;              /* accounted now, mounted and not */
	uint64_t idle_bytes;         /* of directories of layers not mounted */
	unsigned layers, idle_dirs;
	uint64_t evicted_chunks, evicted_bytes;
	uint64_t removed_dirs, removed_dir_bytes;
	uint64_t refused;            /* writes refused: no room even after eviction */
};

/* The lock file in the root: flock'ed (exclusive) by the sg_cache_bound using the directory, and
 * holding its pid. */
#define SG_CACHE_BOUND_LOCK_NAME ".lock"

/* Walks `root` (created if missing) and accounts the layer directories found there.
 * max_bytes 0 = sg_cache_bound_default_max(root).  Takes ROOT/.lock for the cache's lifetime:
 * -EBUSY when another sg_cache_bound (another process) uses the directory, see
 * sg_cache_bound_lock_owner.  Starts no work: an over-full cache is evicted from the first
 * attach, reserve or set_max. */
int sg_cache_bound_new(struct sg_loop *loop, const char *root, uint64_t max_bytes,
		 struct sg_cache_bound **ret);
/* Aborts (SG_FREE_CHECK) while an eviction is posted: drain the loop first.  Layers still
 * attached are detached from it. */
void sg_cache_bound_free(struct sg_cache_bound *c);
/* The pid recorded in ROOT/.lock (the process that holds, or last held, the directory), or
 * a negative errno. */
long sg_cache_bound_lock_owner(const char *root);
uint64_t sg_cache_bound_default_max(const char *root);
/* Changes the bound; evicts (from the loop) if the cache is now over it. */
void sg_cache_bound_set_max(struct sg_cache_bound *c, uint64_t max_bytes);
void sg_cache_bound_stats(const struct sg_cache_bound *c, struct sg_cache_bound_stats *ret);
/* Filesystem block size used for the accounting. */
uint32_t sg_cache_bound_block_size(const struct sg_cache_bound *c);
/* Allocated bytes of a byte range: the blocks it touches. */
uint64_t sg_cache_bound_extent(const struct sg_cache_bound *c, uint64_t offset, uint64_t len);

/* A mounted layer starts using directory `dir` (a child of the root; its bitmap already
 * loaded): the directory stops being idle, its usage is walked, and `present_bytes` (the
 * extents of the chunks its bitmap lists) is accounted.  Never evicts synchronously. */
int sg_cache_bound_attach(struct sg_cache_bound *c, const char *dir, uint64_t present_bytes,
		    const struct sg_cache_bound_client *client, struct sg_cache_bound_layer **ret);
/* The layer is gone: its directory becomes idle (mtime set to now) with its bytes. */
void sg_cache_bound_detach(struct sg_cache_bound_layer *cl);
/* Accounts `bytes` about to be written.  Evicts (a few batches, never more) when that
 * would cross the bound; -ENOSPC if there is still no room: then do not cache. */
int sg_cache_bound_reserve(struct sg_cache_bound_layer *cl, uint64_t bytes);
/* Gives back bytes reserved but not written, or no longer on disk. */
void sg_cache_bound_release(struct sg_cache_bound_layer *cl, uint64_t bytes);
uint64_t sg_cache_bound_layer_bytes(const struct sg_cache_bound_layer *cl);
/* True when `bytes` more fit under the watermark without evicting mounted layers' chunks
 * (idle directories count as free): the test for background fetch. */
bool sg_cache_bound_room(const struct sg_cache_bound *c, uint64_t bytes);
/* The next stamp of the recency clock. */
uint32_t sg_cache_bound_tick(struct sg_cache_bound *c);

#endif
