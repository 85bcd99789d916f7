#include "fs/layer_profile.h"

#include <errno.h>
#include <stdlib.h>

#include "daemon/core/error.h"
#include "daemon/core/link_meter.h"
#include "daemon/core/range_source.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"
#include "fs/layer_prefetch.h"
#include "fs/profile.h"

#define DEFAULT_REPLAY_BUDGET ((uint64_t)256 << 20)

/* ---- the recorder ---- */

int sg_layer_profile_init(struct sg_layer *l)
{
	struct sg_profile_limits limits = { .quiet_ns = l->cfg.profile_quiet_ns };

	sg_op_init(&l->prof_timer);
	sg_op_set_group(&l->prof_timer, &l->group);
	if (!l->cfg.on_profile || l->n_chunks == 0 || l->n_chunks > SG_PROFILE_CHUNKS_MAX)
		return 0;
	int r = sg_profile_new(sg_toc_digest(l->toc), l->n_chunks, &limits, &l->prof_rec);
	if (r < 0)
		return r == -EINVAL ? 0 : r;   /* a layer that cannot have a profile records nothing */
	/* What the next mount of this blob fetches first: its TOC to the end, and no more. */
	if (l->cfg.blob_digest)
		sg_profile_set_layer(l->prof_rec, l->cfg.blob_digest);
	uint64_t toc_offset = sg_toc_offset(l->toc);
	if (l->src && l->src->size > toc_offset)
		sg_profile_set_toc_tail(l->prof_rec, l->src->size - toc_offset);
	return 0;
}

/* The recording's first chunks as blob spans (sg_profile_set_head): a range of chunks is
 * one span of the blob (their gzip members follow each other), and a range that starts where
 * the last one ended extends it. */
static void set_head(struct sg_layer *l)
{
	struct sg_profile_span head[SG_PROFILE_HEAD_MAX];
	const struct sg_profile_range *ranges;
	size_t n = sg_profile_ranges(l->prof_rec, &ranges), k = 0;
	uint64_t bytes = 0;

	for (size_t i = 0; i < n; i++) {
		if (ranges[i].last >= l->n_chunks)
			break;
		uint64_t off = sg_layer_chunk(l, ranges[i].first)->offset;
		uint64_t end = sg_layer_chunk(l, ranges[i].last)->next_offset;
		if (end <= off)
			continue;
		if (end - off > SG_PROFILE_HEAD_BYTES - bytes)
			break;
		bytes += end - off;
		if (k > 0 && head[k - 1].end == off) {
			head[k - 1].end = end;
			continue;
		}
		if (k == SG_PROFILE_HEAD_MAX)
			break;
		head[k++] = (struct sg_profile_span){ off, end };
	}
	sg_profile_set_head(l->prof_rec, head, k);
}

/* Hands what was recorded to the owner, if anything came since the last time. */
static void hand_over(struct sg_layer *l)
{
	uint64_t have = sg_profile_chunks(l->prof_rec);

	l->stats.profile_chunks = have;
	if (have <= l->prof_handed)
		return;
	uint64_t fresh = have - l->prof_handed;
	l->prof_handed = have;
	set_head(l);
	l->cfg.on_profile(l->cfg.userdata, l->prof_rec, fresh);
}

static uint64_t quiet_ns(const struct sg_layer *l)
{
	return l->cfg.profile_quiet_ns ? l->cfg.profile_quiet_ns : SG_PROFILE_QUIET_NS;
}

static struct sg_link_meter *link_of(const struct sg_layer *l)
{
	return l->src ? l->src->link : NULL;
}

/* A container reads several layers, and a layer may wait seconds between its misses while
 * the others are read (far link, cold: libbz2 in the base layer 5 s after the libc, the
 * interpreter's modules read meanwhile).  The workload, not the layer, going quiet ends a
 * recording; and every layer on a link counts its times from the same epoch, so that a
 * replay can tell which layer's chunks were read first. */
static void follow_workload(struct sg_layer *l, uint64_t now)
{
	struct sg_link_meter *m = link_of(l);

	if (!m)
		return;
	sg_profile_touch(l->prof_rec, m->burst_last_ns);
	sg_profile_set_epoch(l->prof_rec, sg_link_meter_burst_epoch(m, now, quiet_ns(l)));
}

static void profile_tick(struct sg_op *op)
{
	struct sg_layer *l = sg_container_of(op, struct sg_layer, prof_timer);

	if (op->res == -ECANCELED) {
		sg_layer_maybe_close_done(l);   /* the timer may be the last thing a close waits for */
		return;
	}
	if (l->closing)
		return;
	follow_workload(l, sg_now_ns());
	if (sg_profile_quiet(l->prof_rec, sg_now_ns())) {
		hand_over(l);
		return;   /* a new user takes notes again (sg_layer_profile_new_user) */
	}
	/* Chunks came since: look again a quiet time later (the end is seen within two). */
	(void)sg_timer_start(l->loop, &l->prof_timer, quiet_ns(l), profile_tick);
}

void sg_layer_profile_note(struct sg_layer *l, uint32_t c)
{
	struct sg_link_meter *m = link_of(l);
	uint64_t now = sg_now_ns();

	if (!l->prof_rec || l->closing)
		return;
	follow_workload(l, now);
	if (sg_profile_note(l->prof_rec, c, now) != SG_PROFILE_RECORDED)
		return;
	if (m)
		sg_link_meter_burst_note(m, now, quiet_ns(l));
	l->stats.profile_chunks++;
	if (!sg_op_busy(&l->prof_timer))
		(void)sg_timer_start(l->loop, &l->prof_timer, quiet_ns(l), profile_tick);
}

void sg_layer_profile_new_user(struct sg_layer *l)
{
	if (l->prof_rec && !sg_profile_recording(l->prof_rec))
		sg_profile_rearm(l->prof_rec);
}

void sg_layer_profile_close(struct sg_layer *l)
{
	if (l->prof_rec)
		hand_over(l);
	l->replaying = false;
	sg_layer_replay_hold_link(l, false);
}

void sg_layer_replay_hold_link(struct sg_layer *l, bool hold)
{
	struct sg_link_meter *m = link_of(l);
	uint64_t now = sg_now_ns();

	if (hold == l->replay_holds_link)
		return;
	l->replay_holds_link = hold;
	if (!hold)
		l->last_ondemand_ns = now;   /* this layer's background waits the quiet gap too */
	if (!m)
		return;
	sg_link_meter_ondemand(m, hold ? +1 : -1, now);
	if (hold)
		sg_list_insert_tail(&m->replayers, &l->replay_node);
	else
		sg_list_unlink(&l->replay_node);
}

void sg_layer_profile_free(struct sg_layer *l)
{
	sg_list_unlink(&l->replay_node);   /* sg_layer_profile_close did; the meter outlives us */
	sg_profile_free(l->prof_rec);
	sg_profile_free(l->replay);
	free(l->replay_window);
	l->prof_rec = l->replay = NULL;
	l->replay_window = NULL;
}

/* ---- replay ---- */

/* Chunks of prof that the replay in progress does not name. */
static uint64_t chunks_not_replayed(const struct sg_layer *l, const struct sg_profile *prof)
{
	const struct sg_profile_range *ranges;
	size_t n = sg_profile_ranges(prof, &ranges);
	uint64_t fresh = 0;

	for (size_t i = 0; i < n; i++)
		for (uint32_t c = ranges[i].first; c <= ranges[i].last; c++)
			fresh += !sg_profile_has(l->replay, c);
	return fresh;
}

int sg_layer_replay(struct sg_layer *l, struct sg_profile *prof, struct sg_layer_replay_info *ret,
		    struct sg_error *err)
{
	const struct sg_profile_range *ranges;
	struct sg_layer_replay_info info = { 0 };
	int r = 0;

	if (l->closing) {
		r = sg_error_set(err, -ECANCELED, "the layer is closing");
		goto fail;
	}
	if (!sg_digest_equal(sg_profile_toc(prof), sg_toc_digest(l->toc))) {
		r = sg_error_set(err, -EINVAL, "recorded for another TOC");
		goto fail;
	}
	if (sg_profile_chunk_count(prof) != l->n_chunks) {
		r = sg_error_set(err, -EINVAL, "recorded for %u chunks, the layer has %u",
				 sg_profile_chunk_count(prof), l->n_chunks);
		goto fail;
	}
	bool joining = l->replay != NULL;
	if (joining) {
		/* A later profile (another image's workload on this layer) joins the replay:
		 * the union, its own order first, since its workload is the one starting; what
		 * the replay fetched already is passed over.  The budget is what is left. */
		if (chunks_not_replayed(l, prof) == 0) {
			r = sg_error_set(err, -EALREADY, "every chunk of it is replayed already");
			goto fail;
		}
		r = sg_profile_merge(prof, l->replay, err);
		if (r < 0)
			goto fail;
	}
	uint64_t budget = joining ? l->replay_left
		: l->cfg.replay_budget_bytes ? l->cfg.replay_budget_bytes : DEFAULT_REPLAY_BUDGET;
	size_t n = sg_profile_ranges(prof, &ranges);
	for (size_t i = 0; i < n; i++)
		for (uint32_t c = ranges[i].first; c <= ranges[i].last; c++) {
			const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
			info.chunks++;
			if (!sg_layer_fetch_needed(l, c) || info.fetch_bytes >= budget)
				continue;
			info.fetch_chunks++;
			info.fetch_bytes += ch->next_offset - ch->offset;
		}
	if (!l->replay_window) {
		l->replay_window = malloc(SG_LAYER_REPLAY_WINDOW * sizeof(*l->replay_window));
		if (!l->replay_window) {
			r = -ENOMEM;
			goto fail;
		}
	}
	/* The window's chunks not sent yet come again from the new cursor if still needed;
	 * requests in flight name chunks, not the profile. */
	sg_profile_free(l->replay);
	l->replay = prof;
	l->replay_range = 0;
	l->replay_chunk = n ? ranges[0].first : 0;
	l->replay_window_n = l->replay_window_at = 0;
	l->replay_left = budget;
	l->replaying = l->replaying || info.fetch_chunks > 0;
	l->stats.replay_chunks = info.fetch_chunks;
	l->stats.replay_bytes = info.fetch_bytes;
	l->stats.replay_done = !l->replaying;
	if (ret)
		*ret = info;
	if (l->replaying && l->started)
		sg_layer_prefetch_continue(l);
	return 0;
fail:
	sg_profile_free(prof);
	return r;
}

static int cmp_slot(const void *a, const void *b)
{
	uint32_t x = ((const struct sg_replay_slot *)a)->chunk;
	uint32_t y = ((const struct sg_replay_slot *)b)->chunk;
	return x < y ? -1 : x > y;
}

/* Takes the next window from the cursor: chunks that need a fetch, in recorded order, up to
 * window_bytes and the budget, then sorted into blob order (chunk order is blob order). */
static void next_window(struct sg_layer *l, size_t window_bytes)
{
	const struct sg_profile_range *ranges;
	size_t n_ranges = sg_profile_ranges(l->replay, &ranges);
	uint64_t bytes = 0;
	size_t n = 0;

	while (l->replay_range < n_ranges && n < SG_LAYER_REPLAY_WINDOW &&
	       bytes < window_bytes && bytes < l->replay_left) {
		const struct sg_profile_range *rg = &ranges[l->replay_range];
		uint32_t c = l->replay_chunk;
		if (c > rg->last) {
			if (++l->replay_range < n_ranges)
				l->replay_chunk = ranges[l->replay_range].first;
			continue;
		}
		l->replay_chunk++;
		if (!sg_layer_fetch_needed(l, c))
			continue;
		const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
		l->replay_window[n++] = (struct sg_replay_slot){ c, rg->at_ms };
		bytes += ch->next_offset - ch->offset;
	}
	qsort(l->replay_window, n, sizeof(l->replay_window[0]), cmp_slot);
	l->replay_window_n = n;
	l->replay_window_at = 0;
}

uint64_t sg_layer_replay_due(const struct sg_layer *l)
{
	const struct sg_profile_range *ranges;

	if (!l->replay)
		return UINT64_MAX;
	if (l->replay_window_at < l->replay_window_n) {
		/* In blob order: the chunk read first may be anywhere in what is left of it. */
		uint32_t due = UINT32_MAX;
		for (size_t i = l->replay_window_at; i < l->replay_window_n; i++)
			if (l->replay_window[i].at_ms < due)
				due = l->replay_window[i].at_ms;
		return due;
	}
	size_t n = sg_profile_ranges(l->replay, &ranges), i = l->replay_range;
	if (i < n && l->replay_chunk > ranges[i].last)
		i++;
	return i < n && l->replay_left > 0 ? ranges[i].at_ms : UINT64_MAX;
}

int sg_layer_replay_next(struct sg_layer *l, size_t max_bytes, size_t window_bytes)
{
	/* A profile's chunks are scattered over the blob: one request carries far-apart runs
	 * of them when the source reads several ranges at once (a registry: one round trip
	 * instead of one a run), the gaps between them not fetched.  The window goes out in
	 * blob order: starting each request at the chunk read first and going on from there
	 * packed them worse (gcc: 38 requests instead of 30, total 2.51 s against 2.42). */
	struct sg_layer_batch b = { .max_spans = sg_layer_batch_spans(l),
				    .gap = sg_layer_batch_gap(l->src, SG_FETCH_PROFILE) };
	size_t start = 0;

	if (!l->replay || !l->replay_window)
		return 0;
	while (b.n == 0) {
		if (l->replay_window_at == l->replay_window_n) {
			if (l->replay_left == 0)
				return 0;   /* the budget is spent */
			next_window(l, window_bytes);
			if (l->replay_window_n == 0)
				return 0;   /* every range done */
		}
		/* Chunks fetched meanwhile are passed over; the batch is complete when the next
		 * one does not fit (the first always does). */
		start = l->replay_window_at;
		for (; l->replay_window_at < l->replay_window_n; l->replay_window_at++) {
			uint32_t c = l->replay_window[l->replay_window_at].chunk;
			if (sg_layer_fetch_needed(l, c) && !sg_layer_batch_add(l, &b, c, max_bytes))
				break;
		}
	}
	int r = sg_layer_fetch_batch(l, l->src, b.list, b.n, SG_FETCH_PROFILE);
	if (r < 0) {
		if (r == -EAGAIN)
			l->replay_window_at = start;   /* not started: the same chunks next time */
		return r;
	}
	l->replay_left = b.bytes >= l->replay_left ? 0 : l->replay_left - b.bytes;
	return r;
}
