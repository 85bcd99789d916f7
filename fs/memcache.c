#include "fs/memcache.h"

#include <errno.h>
#include <stdlib.h>

struct sg_mem_budget {
	size_t max_bytes, used;
	/* Fetch buffers and the chunks they will become, from the start of a range request
	 * until its chunks are verified (sg_memcache_charge). */
	size_t inflight;
	struct sg_list lru;        /* struct sg_mem_chunk via glru, most recent at the tail */
};

struct sg_memcache {
	struct sg_mem_budget *budget;   /* NULL: none */
	size_t max_bytes;
	size_t bytes;
	struct sg_list lru;             /* most recent at the tail */
	struct sg_mem_chunk **by_chunk; /* chunk -> cached entry */
};

int sg_mem_budget_new(size_t max_bytes, struct sg_mem_budget **ret)
{
	struct sg_mem_budget *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->max_bytes = max_bytes;
	sg_list_init(&b->lru);
	*ret = b;
	return 0;
}

void sg_mem_budget_free(struct sg_mem_budget *b)
{
	free(b);   /* every layer using it is freed first */
}

size_t sg_mem_budget_used(const struct sg_mem_budget *b)
{
	return b->used + b->inflight;
}

int sg_memcache_new(uint32_t n_chunks, size_t max_bytes, struct sg_mem_budget *budget,
		    struct sg_memcache **ret)
{
	struct sg_memcache *mc = calloc(1, sizeof(*mc));

	if (!mc)
		return -ENOMEM;
	mc->by_chunk = calloc((size_t)n_chunks + 1, sizeof(*mc->by_chunk));
	if (!mc->by_chunk) {
		free(mc);
		return -ENOMEM;
	}
	mc->budget = budget;
	mc->max_bytes = max_bytes;
	sg_list_init(&mc->lru);
	*ret = mc;
	return 0;
}

/* Takes an entry out of its layer's cache (and the budget); frees it unless a job holds it
 * (then sg_mem_chunk_release does). */
static void forget(struct sg_mem_chunk *e)
{
	struct sg_memcache *mc = e->mc;

	sg_list_unlink(&e->lru);
	e->lru.next = e->lru.prev = NULL;
	if (mc->budget) {
		sg_list_unlink(&e->glru);
		mc->budget->used -= e->size;
	}
	mc->by_chunk[e->chunk] = NULL;
	mc->bytes -= e->size;
	if (e->refs == 0)
		free(e);
}

void sg_memcache_free(struct sg_memcache *mc)
{
	struct sg_list *n;

	if (!mc)
		return;
	while ((n = mc->lru.next) != &mc->lru) {
		struct sg_mem_chunk *e = sg_container_of(n, struct sg_mem_chunk, lru);
		e->refs = 0;   /* no job is left */
		forget(e);
	}
	free(mc->by_chunk);
	free(mc);
}

struct sg_mem_chunk *sg_memcache_get(const struct sg_memcache *mc, uint32_t chunk)
{
	return mc->by_chunk[chunk];
}

void sg_memcache_touch(struct sg_memcache *mc, struct sg_mem_chunk *e)
{
	sg_list_unlink(&e->lru);
	sg_list_insert_tail(&mc->lru, &e->lru);
	if (mc->budget) {
		sg_list_unlink(&e->glru);
		sg_list_insert_tail(&mc->budget->lru, &e->glru);
	}
}

static void evict(struct sg_memcache *mc, size_t want)
{
	struct sg_mem_budget *b = mc->budget;
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &mc->lru) {
		if (mc->bytes + want <= mc->max_bytes)
			break;
		struct sg_mem_chunk *e = sg_container_of(n, struct sg_mem_chunk, lru);
		if (!e->refs)
			forget(e);
	}
	if (!b)
		return;
	/* Then the daemon-wide budget: the least recently used chunk of any layer goes. */
	sg_list_for_each_safe(n, tmp, &b->lru) {
		if (sg_mem_budget_used(b) + want <= b->max_bytes)
			break;
		struct sg_mem_chunk *e = sg_container_of(n, struct sg_mem_chunk, glru);
		if (!e->refs)
			forget(e);
	}
}

struct sg_mem_chunk *sg_mem_chunk_new(struct sg_memcache *mc, uint32_t chunk, size_t size)
{
	struct sg_mem_chunk *e = malloc(sizeof(*e) + size);

	if (!e)
		return NULL;
	e->chunk = chunk;
	e->refs = 0;
	e->size = size;
	e->served = 0;
	e->mc = mc;
	e->lru.next = e->lru.prev = NULL;
	e->glru.next = e->glru.prev = NULL;
	return e;
}

void sg_mem_chunk_free(struct sg_mem_chunk *e)
{
	free(e);
}

void sg_memcache_insert(struct sg_memcache *mc, struct sg_mem_chunk *e)
{
	evict(mc, e->size);
	mc->by_chunk[e->chunk] = e;
	mc->bytes += e->size;
	sg_list_insert_tail(&mc->lru, &e->lru);
	if (mc->budget) {
		sg_list_insert_tail(&mc->budget->lru, &e->glru);
		mc->budget->used += e->size;
	}
}

/* Read again after the page cache dropped them, the bytes come back from the disk cache. */
void sg_memcache_served(struct sg_mem_chunk *e, size_t bytes)
{
	e->served += bytes;
	if (e->served < e->size || !e->lru.next)
		return;
	forget(e);   /* freed now, or by the job holding it (sg_mem_chunk_release) */
}

void sg_mem_chunk_hold(struct sg_mem_chunk *e)
{
	e->refs++;
}

void sg_mem_chunk_release(struct sg_mem_chunk *e)
{
	struct sg_memcache *mc = e->mc;

	if (--e->refs == 0 && !e->lru.next) {
		free(e);   /* never made it into the cache (closing), or dropped meanwhile */
		return;
	}
	/* An entry held by its cache write could not be evicted when the budget last needed
	 * room: now it can. */
	if (e->refs == 0 && mc->budget && sg_mem_budget_used(mc->budget) > mc->budget->max_bytes)
		evict(mc, 0);
}

int sg_memcache_charge(struct sg_memcache *mc, size_t bytes, bool speculative,
		       size_t *ret_charged)
{
	struct sg_mem_budget *b = mc->budget;

	*ret_charged = 0;
	if (!b)
		return 0;
	evict(mc, bytes);
	if (speculative && b->inflight > 0 && sg_mem_budget_used(b) + bytes > b->max_bytes)
		return -EAGAIN;   /* later, when memory is back */
	b->inflight += bytes;
	*ret_charged = bytes;
	return 0;
}

void sg_memcache_uncharge(struct sg_memcache *mc, size_t charged)
{
	if (mc->budget)
		mc->budget->inflight -= charged;
}
