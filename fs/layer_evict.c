#include "fs/layer_evict.h"

#include <errno.h>
#include <stdlib.h>

#include "fs/cache_bound.h"
#include "fs/layer_int.h"

#define EVICT_MAX 64u

void sg_layer_evict_touch(struct sg_layer *l, uint32_t c)
{
	if (l->stamp)
		l->stamp[c] = sg_cache_bound_tick(l->cfg.bound);
}

/* No data of the chunk on disk, and none on its way there. */
static bool chunk_absent(const struct sg_layer *l, uint32_t c)
{
	return !sg_diskcache_present(l->disk, c) && !l->jobs[c];
}

static bool file_pinned(const struct sg_layer *l, uint32_t node)
{
	return l->pins[node] > 0;
}

/* Not a chunk of a file the kernel reads directly (passthrough): it would read the hole. */
static bool chunk_evictable(const struct sg_layer *l, uint32_t c)
{
	return sg_diskcache_present(l->disk, c) && !l->jobs[c] &&
	       !file_pinned(l, l->chunk_file[c]);
}

/* The bit first (cleared on disk too, so that a crash leaves at worst data without its
 * bit), then the hole. */
uint64_t sg_layer_evict_drop(struct sg_layer *l, uint32_t c)
{
	const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
	const struct sg_toc_node *file = sg_toc_node(l->toc, l->chunk_file[c]);
	uint64_t b = l->block, start = ch->file_offset, end = ch->file_offset + ch->size;

	sg_diskcache_clear(l->disk, c);
	if (ch->size == 0)
		return 0;
	if (start % b && (c == file->first_chunk || chunk_absent(l, c - 1)))
		start -= start % b;
	if (end % b && (c + 1 == file->first_chunk + file->nchunks || chunk_absent(l, c + 1)))
		end += b - end % b;
	if (sg_diskcache_punch(l->disk, l->chunk_file[c], start, end - start) < 0)
		return 0;   /* the data stays, and stays accounted */
	return l->cfg.bound ? sg_cache_bound_extent(l->cfg.bound, ch->file_offset, ch->size) : 0;
}

static bool bound_oldest(void *ctx, uint32_t *ret_stamp)
{
	struct sg_layer *l = ctx;
	uint32_t best = UINT32_MAX;
	bool any = false;

	for (uint32_t c = sg_diskcache_next_present(l->disk, 0); c < l->n_chunks;
	     c = sg_diskcache_next_present(l->disk, c + 1))
		if (chunk_evictable(l, c) && l->stamp[c] <= best) {
			best = l->stamp[c];
			any = true;
		}
	*ret_stamp = best;
	return any;
}

static void heap_sift_down(const uint32_t *stamp, uint32_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t big = i, a = 2 * i + 1, b = a + 1;
		if (a < n && stamp[h[a]] > stamp[h[big]])
			big = a;
		if (b < n && stamp[h[b]] > stamp[h[big]])
			big = b;
		if (big == i)
			return;
		uint32_t t = h[i];
		h[i] = h[big];
		h[big] = t;
		i = big;
	}
}

/* The least recently used chunks at or before max_stamp, found in one pass with a max-heap
 * of the max_chunks oldest, then evicted oldest first. */
static uint64_t bound_evict(void *ctx, uint32_t max_stamp, uint64_t want, unsigned max_chunks,
			    unsigned *ret_chunks)
{
	struct sg_layer *l = ctx;
	uint32_t h[EVICT_MAX];
	size_t n = 0, cap = max_chunks < EVICT_MAX ? max_chunks : EVICT_MAX;
	uint64_t freed = 0;

	*ret_chunks = 0;
	for (uint32_t c = sg_diskcache_next_present(l->disk, 0); c < l->n_chunks && cap;
	     c = sg_diskcache_next_present(l->disk, c + 1)) {
		if (!chunk_evictable(l, c) || l->stamp[c] > max_stamp)
			continue;
		if (n < cap) {
			/* sift up */
			size_t i = n++;
			h[i] = c;
			while (i > 0 && l->stamp[h[(i - 1) / 2]] < l->stamp[h[i]]) {
				uint32_t t = h[i];
				h[i] = h[(i - 1) / 2];
				h[(i - 1) / 2] = t;
				i = (i - 1) / 2;
			}
		} else if (l->stamp[c] < l->stamp[h[0]]) {
			h[0] = c;
			heap_sift_down(l->stamp, h, n, 0);
		}
	}
	/* Pop the heap: the newest first, so the array ends up oldest first. */
	for (size_t k = n; k > 1; k--) {
		uint32_t t = h[0];
		h[0] = h[k - 1];
		h[k - 1] = t;
		heap_sift_down(l->stamp, h, k - 1, 0);
	}
	for (size_t i = 0; i < n && freed < want; i++) {
		uint64_t b = sg_layer_evict_drop(l, h[i]);
		if (!b)
			continue;
		freed += b;
		(*ret_chunks)++;
		l->stats.chunks_evicted++;
		l->stats.evicted_bytes += b;
	}
	return freed;
}

static void bound_rescale(void *ctx)
{
	struct sg_layer *l = ctx;

	for (uint32_t c = 0; c < l->n_chunks; c++)
		l->stamp[c] >>= 1;
}

int sg_layer_evict_attach(struct sg_layer *l)
{
	struct sg_cache_bound *bound = l->cfg.bound;
	uint64_t present = 0;

	l->block = bound ? sg_cache_bound_block_size(bound) : 4096u;
	if (!bound)
		return 0;
	l->stamp = calloc(l->n_chunks + 1, sizeof(*l->stamp));
	if (!l->stamp)
		return -ENOMEM;
	/* Chunks found on disk count as used long ago: the first to go unless read. */
	for (uint32_t c = sg_diskcache_next_present(l->disk, 0); c < l->n_chunks;
	     c = sg_diskcache_next_present(l->disk, c + 1)) {
		const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
		present += sg_cache_bound_extent(bound, ch->file_offset, ch->size);
	}
	struct sg_cache_bound_client client = {
		.oldest = bound_oldest, .evict = bound_evict, .rescale = bound_rescale, .ctx = l,
	};
	return sg_cache_bound_attach(bound, l->cache_dir, present, &client, &l->bound_ent);
}

void sg_layer_evict_detach(struct sg_layer *l)
{
	sg_cache_bound_detach(l->bound_ent);
	l->bound_ent = NULL;
	free(l->stamp);
	l->stamp = NULL;
}
