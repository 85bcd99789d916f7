/* One layer's disk cache: a directory (ROOT/cache/<layer>/) that holds
 *
 *  - a cache file per regular file, named by its TOC node id: a plain file with the file's
 *    decompressed bytes at their own offsets, holes where chunks are missing;
 *  - chunks.bitmap, one bit per chunk: its bytes are in the cache file.  A bit is written
 *    only after its chunk's data landed, so a crash leaves at worst data without its bit
 *    (a refetch); a stale bit is caught by the digest check of every load;
 *  - stargz.index.json, the TOC's own JSON, written whole at every open.
 *
 * In memory it also keeps, per chunk, whether the bytes on disk were verified during this
 * mount ("trusted": written after their check, or read back and checked), which is what
 * passthrough needs, and a table of open cache file descriptors.
 *
 * The caller decides what the bits mean for the chunks (which to write, drop, trust); this
 * module keeps them and the files consistent.  Everything runs on the loop: opening a cache
 * file, punching a hole and writing a cleared bit are short synchronous metadata calls, a
 * set bit is written by an op.  Nothing here logs. */
#ifndef STARGZD_FS_DISKCACHE_H
#define STARGZD_FS_DISKCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"

struct sg_diskcache;

/* A cache file descriptor held by an op: a slot of the table, or (table full of busy slots)
 * a descriptor of its own, closed when put back. */
struct sg_diskcache_fd {
	int fd;                    /* -1: none held */
	int slot;                  /* -1: own descriptor */
};
#define SG_DISKCACHE_FD_NONE ((struct sg_diskcache_fd){ .fd = -1, .slot = -1 })

/* Creates `dir` if missing and loads its bitmap for n_chunks chunks (a bitmap of another
 * size belongs to another TOC: it starts over empty).  Every chunk starts untrusted. */
int sg_diskcache_open(struct sg_loop *loop, const char *dir, uint32_t n_chunks,
		      struct sg_diskcache **ret);
/* Writes the bitmap in memory whole (the last bits' own writes may have been cancelled)
 * and closes every descriptor.  No op may use the cache any more. */
void sg_diskcache_free(struct sg_diskcache *dc);

/* The cache file of regular file `node`, opened on first use and held in ref until
 * sg_diskcache_fd_put.  A descriptor is never closed while an op uses it. */
int sg_diskcache_fd_get(struct sg_diskcache *dc, uint32_t node, struct sg_diskcache_fd *ref);
void sg_diskcache_fd_put(struct sg_diskcache *dc, struct sg_diskcache_fd *ref);
/* A new read-only descriptor of node's cache file (for the kernel), or a negative errno. */
int sg_diskcache_open_file(const struct sg_diskcache *dc, uint32_t node);

bool sg_diskcache_present(const struct sg_diskcache *dc, uint32_t chunk);
/* The first present chunk at or after `chunk`, or n_chunks. */
uint32_t sg_diskcache_next_present(const struct sg_diskcache *dc, uint32_t chunk);
uint32_t sg_diskcache_present_count(const struct sg_diskcache *dc);
/* The chunk's data landed: sets its bit in memory.  sg_diskcache_write_bit then writes the
 * bitmap byte holding it: 0 and cb(op) follows (op->res 1 when written), or a negative errno
 * (-EBADF: no bitmap file) and nothing was submitted. */
void sg_diskcache_set_present(struct sg_diskcache *dc, uint32_t chunk);
int sg_diskcache_write_bit(struct sg_diskcache *dc, uint32_t chunk, struct sg_op *op,
			   sg_op_cb cb);
/* Forgets a chunk: its bits are cleared, on disk too (synchronously, before any hole is
 * punched over its bytes). */
void sg_diskcache_clear(struct sg_diskcache *dc, uint32_t chunk);
/* Gives back the blocks of [offset, offset+len) of node's cache file (the size stays). */
int sg_diskcache_punch(struct sg_diskcache *dc, uint32_t node, uint64_t offset, uint64_t len);

bool sg_diskcache_trusted(const struct sg_diskcache *dc, uint32_t chunk);
void sg_diskcache_set_trusted(struct sg_diskcache *dc, uint32_t chunk, bool on);

/* Writes stargz.index.json from `json` (the TOC's JSON, verified against the TOC digest)
 * and keeps the descriptor of the file written: a copy left by an earlier mount is never
 * trusted. */
int sg_diskcache_store_toc_json(struct sg_diskcache *dc, const void *json, size_t len);
/* Its descriptor, or -1 when it was not stored. */
int sg_diskcache_toc_json_fd(const struct sg_diskcache *dc);

#endif
