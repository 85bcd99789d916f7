#include "fs/layer_prefetch.h"

#include <errno.h>

#include "fs/cache_bound.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"

#define BACKGROUND_BATCH (1u << 20)
#define BACKGROUND_QUIET_NS (1000ull * 1000000u)   /* no on-demand fetch for this long */
#define BACKGROUND_RETRY_NS (50ull * 1000000u)

void sg_layer_prefetch_init(struct sg_layer *l)
{
	const struct sg_layer_config *config = &l->cfg;

	if (config->prefetch && sg_toc_has_prefetch(l->toc, &l->prefetch_end) && l->prefetch_end > 0)
		l->prefetching = true;
	else if (config->prefetch && config->prefetch_bytes &&
		 !sg_toc_has_no_prefetch_landmark(l->toc)) {
		/* No landmark: the image was not optimized; take the first prefetch_bytes of the
		 * blob, as the reference does with its stargz.prefetch label. */
		l->prefetch_end = config->prefetch_bytes;
		l->prefetching = true;
	}
	else
		l->stats.prefetch_done = true;
	l->backgrounding = config->background_fetch;
}

/* Would fetching the rest of the layer in the background fit under the watermark?  Asked
 * once when background fetch starts; afterwards it stops when the cache reaches the
 * watermark, so that a small cache is not churned by data nobody asked for. */
static bool background_fits(struct sg_layer *l, bool first)
{
	uint64_t rest = 0;

	if (!l->cfg.bound)
		return true;
	if (first)
		for (uint32_t c = 0; c < l->n_chunks; c++)
			if (sg_layer_fetch_needed(l, c)) {
				const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
				rest += sg_cache_bound_extent(l->cfg.bound, ch->file_offset, ch->size);
			}
	return sg_cache_bound_room(l->cfg.bound, rest);
}

/* Collects the next batch of missing chunks from *cursor on (blob order), stopping at
 * `limit` (blob offset) and at max_batch_bytes.  Returns how many it started (0 = done). */
static int next_batch(struct sg_layer *l, uint32_t *cursor, uint64_t limit, size_t max_bytes,
		      enum sg_fetch_kind kind)
{
	uint32_t list[256];
	size_t n = 0;
	uint64_t start = 0, end = 0;

	while (*cursor < l->n_chunks && n < 256) {
		uint32_t c = *cursor;
		const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
		if (ch->next_offset > limit) {
			*cursor = l->n_chunks;
			break;
		}
		if (!sg_layer_fetch_needed(l, c)) {
			(*cursor)++;
			continue;
		}
		if (n > 0 && (ch->offset < start || ch->offset > end + SG_LAYER_MAX_BATCH_GAP ||
			      ch->next_offset - start > max_bytes))
			break;
		if (n == 0)
			start = ch->offset;
		list[n++] = c;
		if (ch->next_offset > end)
			end = ch->next_offset;
		(*cursor)++;
	}
	if (n == 0)
		return 0;
	int r = sg_layer_fetch_batch(l, l->src, list, n, kind);
	if (r == -EAGAIN)
		*cursor = list[0];   /* not started: the same chunks next time */
	return r < 0 ? r : (int)n;
}

static void background_tick(struct sg_op *op)
{
	struct sg_layer *l = sg_container_of(op, struct sg_layer, background_timer);
	if (op->res == -ECANCELED) {
		sg_layer_maybe_close_done(l);   /* the timer was the last thing a close waited for */
		return;
	}
	l->background_started = true;
	sg_layer_prefetch_continue(l);
}

static void background_retry(struct sg_layer *l)
{
	if (!sg_op_busy(&l->background_timer))
		(void)sg_timer_start(l->loop, &l->background_timer, BACKGROUND_RETRY_NS,
				     background_tick);
}

void sg_layer_prefetch_continue(struct sg_layer *l)
{
	if (l->closing)
		return;
	if (l->prefetching) {
		/* Prefetch: several requests back to back, the prioritized files are wanted now. */
		while (l->batches_inflight < 2) {
			int r = next_batch(l, &l->prefetch_cursor, l->prefetch_end,
					   l->cfg.max_batch_bytes, SG_FETCH_PREFETCH);
			if (r == -EAGAIN) {
				background_retry(l);   /* memory is short: look again shortly */
				return;
			}
			if (r <= 0) {
				if (l->batches_inflight == 0) {
					l->prefetching = false;
					l->stats.prefetch_done = true;
					l->stats.prefetch_ns = sg_now_ns() - l->start_ns;
				}
				break;
			}
		}
		if (l->prefetching)
			return;
	}
	if (!l->backgrounding || l->batches_inflight > 0)
		return;
	if (!l->background_started) {
		if (!sg_op_busy(&l->background_timer))
			(void)sg_timer_start(l->loop, &l->background_timer, l->cfg.background_delay_ns,
					     background_tick);
		return;
	}
	if (l->ondemand_inflight > 0 || sg_now_ns() - l->last_ondemand_ns < BACKGROUND_QUIET_NS) {
		/* Yield to on-demand reads, and leave the link to a workload that is busy
		 * reading: look again shortly. */
		background_retry(l);
		return;
	}
	if (!background_fits(l, l->background_cursor == 0)) {
		l->backgrounding = false;
		l->stats.background_skipped = true;
		return;
	}
	if (!l->background_start_ns)
		l->background_start_ns = sg_now_ns();
	int r = next_batch(l, &l->background_cursor, UINT64_MAX, BACKGROUND_BATCH,
			   SG_FETCH_BACKGROUND);
	if (r == -EAGAIN) {
		background_retry(l);
		return;
	}
	if (r <= 0) {
		l->backgrounding = false;
		l->stats.background_done = r == 0;
		if (r == 0)
			l->stats.background_ns = sg_now_ns() - l->background_start_ns;
	}
}
