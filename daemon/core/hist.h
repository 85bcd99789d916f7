/* A latency histogram cheap enough to sit in every layer's and every gRPC method's stats:
 * power-of-two buckets (upper bounds 1, 2, 4, ... 2^(SG_HIST_BOUNDS-1) in the unit the owner
 * observes in), a count and a sum.  stargz-snapshotter's buckets are exactly such powers of
 * two (1..16384 ms and 1..1024 µs), so one layout serves both of its histograms: the
 * Prometheus writer (daemon/prom.h) prints the first N bounds of it.  Plain data: copied by
 * value with the stats that hold it, summed with sg_hist_merge. */
#ifndef STARGZD_CORE_HIST_H
#define STARGZD_CORE_HIST_H

#include <stdint.h>

#define SG_HIST_BOUNDS 16

struct sg_hist {
	uint64_t count;
	double sum;
	uint64_t bucket[SG_HIST_BOUNDS + 1];   /* [i]: v <= 2^i and > 2^(i-1); last: larger */
};

static inline void sg_hist_observe(struct sg_hist *h, double v)
{
	unsigned i = 0;
	double bound = 1;

	while (i < SG_HIST_BOUNDS && v > bound) {
		bound *= 2;
		i++;
	}
	h->bucket[i]++;
	h->count++;
	h->sum += v;
}

static inline void sg_hist_merge(struct sg_hist *into, const struct sg_hist *h)
{
	into->count += h->count;
	into->sum += h->sum;
	for (unsigned i = 0; i <= SG_HIST_BOUNDS; i++)
		into->bucket[i] += h->bucket[i];
}

#endif
