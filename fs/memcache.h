/* The memory cache of one layer's verified chunks, and the memory budget that the memory
 * caches of several layers share.
 *
 * A chunk enters once its bytes matched its digest and stays, least recently used first to
 * go, while the layer's cache holds at most max_bytes and (with a budget) the total of every
 * layer's cache plus the fetches in flight stays under the budget's max_bytes.  A chunk also
 * leaves once every byte of it was handed to readers: the kernel's page cache holds them then
 * (open files keep it), and a second copy here would only cost memory.
 *
 * A chunk held (sg_mem_chunk_hold: its cache write is in flight) is never freed under its
 * holder: it may leave the cache, and is freed by the last release.
 *
 * Fetch buffers are charged to the budget from the start of a range request until its
 * chunks are verified (sg_memcache_charge): speculative fetches (prefetch, background) wait
 * while they would push the total over the budget; on-demand ones are counted and make the
 * caches give way, but never wait (a reader is blocked on them).
 *
 * Single-threaded: everything runs on the loop.  Nothing here logs. */
#ifndef STARGZD_FS_MEMCACHE_H
#define STARGZD_FS_MEMCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/list.h"

struct sg_memcache;

/* Memory shared by the memory caches of several layers (a daemon's): beside each layer's
 * own max_bytes, the total stays under max_bytes by dropping the least recently used
 * chunk of any layer.  Free it after every layer using it. */
struct sg_mem_budget;
int sg_mem_budget_new(size_t max_bytes, struct sg_mem_budget **ret);
void sg_mem_budget_free(struct sg_mem_budget *budget);
/* Bytes of cached chunks plus fetches in flight, over every layer. */
size_t sg_mem_budget_used(const struct sg_mem_budget *budget);

/* A verified, decompressed chunk held in memory. */
struct sg_mem_chunk {
	uint32_t chunk;
	size_t size;

	/* The cache's own from here on. */
	unsigned refs;             /* holds: a cache write uses the bytes */
	size_t served;             /* bytes copied to readers so far */
	struct sg_memcache *mc;
	struct sg_list lru;        /* the layer's; lru.next == NULL: not in the cache */
	struct sg_list glru;       /* the shared budget's, when there is one */
	uint8_t data[];
};

/* A cache for chunks 0 .. n_chunks-1 of one layer.  budget may be NULL. */
int sg_memcache_new(uint32_t n_chunks, size_t max_bytes, struct sg_mem_budget *budget,
		    struct sg_memcache **ret);
/* Frees every chunk still cached; none may be held any more. */
void sg_memcache_free(struct sg_memcache *mc);

/* The cached chunk, or NULL. */
struct sg_mem_chunk *sg_memcache_get(const struct sg_memcache *mc, uint32_t chunk);
/* Marks a cached chunk the most recently used. */
void sg_memcache_touch(struct sg_memcache *mc, struct sg_mem_chunk *e);

/* A chunk of `size` bytes to fill (NULL without memory), in no cache yet. */
struct sg_mem_chunk *sg_mem_chunk_new(struct sg_memcache *mc, uint32_t chunk, size_t size);
/* Frees a chunk that never entered the cache and is not held. */
void sg_mem_chunk_free(struct sg_mem_chunk *e);
/* Puts a new chunk into the cache, making room first. */
void sg_memcache_insert(struct sg_memcache *mc, struct sg_mem_chunk *e);
/* `bytes` of the chunk went to a reader: once all of them did, it leaves the cache. */
void sg_memcache_served(struct sg_mem_chunk *e, size_t bytes);
void sg_mem_chunk_hold(struct sg_mem_chunk *e);
/* The last release of a chunk no longer cached frees it. */
void sg_mem_chunk_release(struct sg_mem_chunk *e);

/* Charges `bytes` of a fetch to the budget, making room first.  -EAGAIN (nothing charged)
 * when a speculative fetch would cross the budget while others are in flight: try later.
 * The bytes charged (0 without a budget) go to *ret_charged, to give back with
 * sg_memcache_uncharge once the fetch's chunks are verified. */
int sg_memcache_charge(struct sg_memcache *mc, size_t bytes, bool speculative,
		       size_t *ret_charged);
void sg_memcache_uncharge(struct sg_memcache *mc, size_t charged);

#endif
