/* The memory cache of verified chunks and the shared memory budget (fs/memcache.c): least
 * recently used first out, a chunk read whole leaves, a held chunk outlives its eviction,
 * two layers' caches under one budget, and the charge of fetches in flight. */
#include "fs/memcache.h"
#include "tests/unit/test.h"

#include <errno.h>

#define KiB 1024u

/* A chunk of `size` bytes filled with `fill`, put into the cache. */
static struct sg_mem_chunk *put(struct sg_memcache *mc, uint32_t chunk, size_t size, int fill)
{
	struct sg_mem_chunk *e = sg_mem_chunk_new(mc, chunk, size);

	CHECK(e != NULL);
	memset(e->data, fill, size);
	sg_memcache_insert(mc, e);
	CHECK(sg_memcache_get(mc, chunk) == e);
	return e;
}

TEST(least_recently_used_goes_first)
{
	struct sg_memcache *mc;

	CHECK_EQ(sg_memcache_new(8, 3 * KiB, NULL, &mc), 0);
	put(mc, 0, KiB, 'a');
	put(mc, 1, KiB, 'b');
	put(mc, 2, KiB, 'c');
	sg_memcache_touch(mc, sg_memcache_get(mc, 0));   /* 1 is the oldest now */
	struct sg_mem_chunk *d = put(mc, 3, KiB, 'd');
	CHECK(sg_memcache_get(mc, 1) == NULL);
	CHECK(sg_memcache_get(mc, 0) != NULL);
	CHECK(sg_memcache_get(mc, 2) != NULL);
	CHECK_EQ(d->data[KiB - 1], 'd');
	/* A chunk larger than what is left pushes out as many as it needs. */
	put(mc, 4, 2 * KiB, 'e');
	CHECK(sg_memcache_get(mc, 2) == NULL && sg_memcache_get(mc, 0) == NULL);
	CHECK(sg_memcache_get(mc, 3) != NULL);
	sg_memcache_free(mc);
}

TEST(a_chunk_read_whole_leaves)
{
	struct sg_memcache *mc;

	CHECK_EQ(sg_memcache_new(4, 64 * KiB, NULL, &mc), 0);
	struct sg_mem_chunk *e = put(mc, 2, 4 * KiB, 'x');
	sg_memcache_served(e, 3 * KiB);
	CHECK(sg_memcache_get(mc, 2) == e);
	sg_memcache_served(e, KiB);   /* the page cache has it all now */
	CHECK(sg_memcache_get(mc, 2) == NULL);
	sg_memcache_free(mc);
}

/* A cache write holds its chunk: evicted or read whole meanwhile, the chunk leaves the cache
 * but its bytes stay until the write releases them (ASan sees the use after free if not). */
TEST(a_held_chunk_outlives_its_eviction)
{
	struct sg_memcache *mc;

	CHECK_EQ(sg_memcache_new(4, 2 * KiB, NULL, &mc), 0);
	struct sg_mem_chunk *held = put(mc, 0, KiB, 'h');
	sg_mem_chunk_hold(held);
	put(mc, 1, KiB, '1');
	put(mc, 2, KiB, '2');   /* wants room: 0 is held, so 1 goes */
	CHECK(sg_memcache_get(mc, 0) == held);
	CHECK(sg_memcache_get(mc, 1) == NULL);
	sg_memcache_served(held, KiB);
	CHECK(sg_memcache_get(mc, 0) == NULL);
	CHECK_EQ(held->data[0], 'h');
	sg_mem_chunk_release(held);   /* frees it */
	/* A chunk that never entered the cache (its layer closing) goes with its last release. */
	struct sg_mem_chunk *lone = sg_mem_chunk_new(mc, 3, KiB);
	CHECK(lone != NULL);
	sg_mem_chunk_hold(lone);
	sg_mem_chunk_release(lone);
	sg_memcache_free(mc);
}

TEST(layers_share_one_budget)
{
	struct sg_mem_budget *b;
	struct sg_memcache *m1, *m2;

	CHECK_EQ(sg_mem_budget_new(3 * KiB, &b), 0);
	CHECK_EQ(sg_memcache_new(4, 64 * KiB, b, &m1), 0);
	CHECK_EQ(sg_memcache_new(4, 64 * KiB, b, &m2), 0);
	put(m1, 0, KiB, 'a');
	put(m2, 0, KiB, 'b');
	put(m1, 1, KiB, 'c');
	CHECK_EQ(sg_mem_budget_used(b), 3 * KiB);
	sg_memcache_touch(m1, sg_memcache_get(m1, 0));
	put(m2, 1, KiB, 'd');   /* over the budget: the oldest of either layer, m2's 0, goes */
	CHECK(sg_memcache_get(m2, 0) == NULL);
	CHECK(sg_memcache_get(m1, 0) != NULL && sg_memcache_get(m1, 1) != NULL);
	CHECK_EQ(sg_mem_budget_used(b), 3 * KiB);
	sg_memcache_free(m1);
	CHECK_EQ(sg_mem_budget_used(b), KiB);
	sg_memcache_free(m2);
	CHECK_EQ(sg_mem_budget_used(b), 0);
	sg_mem_budget_free(b);
}

/* Fetches in flight count against the budget: a speculative one waits (-EAGAIN) while
 * another is in flight and the total would cross it; an on-demand one never waits, and
 * makes the caches give way. */
TEST(fetches_in_flight_are_charged)
{
	struct sg_mem_budget *b;
	struct sg_memcache *mc, *nobudget;
	size_t c1 = 1, c2 = 1, c3 = 1;

	CHECK_EQ(sg_memcache_new(4, 64 * KiB, NULL, &nobudget), 0);
	CHECK_EQ(sg_memcache_charge(nobudget, 100 * KiB, true, &c1), 0);
	CHECK_EQ(c1, 0);   /* nothing to charge */
	sg_memcache_free(nobudget);

	CHECK_EQ(sg_mem_budget_new(4 * KiB, &b), 0);
	CHECK_EQ(sg_memcache_new(4, 64 * KiB, b, &mc), 0);
	put(mc, 0, KiB, 'a');
	put(mc, 1, KiB, 'b');
	CHECK_EQ(sg_memcache_charge(mc, 2 * KiB, true, &c1), 0);   /* fits */
	CHECK_EQ(c1, 2 * KiB);
	CHECK_EQ(sg_mem_budget_used(b), 4 * KiB);
	/* The next speculative one makes room by evicting, and then it fits. */
	CHECK_EQ(sg_memcache_charge(mc, KiB, true, &c2), 0);
	CHECK(sg_memcache_get(mc, 0) == NULL);
	CHECK_EQ(sg_mem_budget_used(b), 4 * KiB);
	/* Nothing left to evict: a speculative fetch waits, an on-demand one goes. */
	CHECK_EQ(sg_memcache_charge(mc, 2 * KiB, true, &c3), -EAGAIN);
	CHECK_EQ(c3, 0);
	CHECK_EQ(sg_memcache_charge(mc, 2 * KiB, false, &c3), 0);
	CHECK(sg_memcache_get(mc, 1) == NULL);
	CHECK_EQ(sg_mem_budget_used(b), 5 * KiB);
	sg_memcache_uncharge(mc, c1);
	sg_memcache_uncharge(mc, c2);
	sg_memcache_uncharge(mc, c3);
	CHECK_EQ(sg_mem_budget_used(b), 0);
	sg_memcache_free(mc);
	sg_mem_budget_free(b);
}

TEST_MAIN()
