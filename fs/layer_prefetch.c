#include "fs/layer_prefetch.h"

#include <errno.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/range_source.h"
#include "fs/cache_bound.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"
#include "fs/layer_profile.h"
#include "fs/layer_spec.h"

#define BACKGROUND_RETRY_NS (50ull * 1000000u)
#define ROOM_RETRY_NS (10ull * 1000000u)
/* Background fetch on a link above this rate waits until FAST_LINK_DELAY_NS after the mount
 * (unless its delay was configured): see background_continue. */
#define FAST_LINK_BYTES_PER_S 25e6
#define FAST_LINK_DELAY_NS (2000ull * 1000000u)
/* After an on-demand fetch ended, background fetch waits this many round trips, and at least
 * BACKGROUND_QUIET_NS, before its next request: the loader, then the interpreter, open file
 * after file, and each miss of such a chain should find the link empty.  Measured (make
 * bench-quick, python esgz): with 2 RTTs alone, background batches sent between misses
 * delayed the chain (2.95 s against 2.18 s for the reference, 30 MB fetched). */
#define BACKGROUND_GAP_RTTS 2
#define BACKGROUND_QUIET_NS (1000ull * 1000000u)
/* Files read one after the other, forward in blob order, before the layer counts as read in
 * full; a forward step up to STREAM_FORWARD_SLACK (a large file's chunks not read yet, files
 * skipped) still counts. */
#define STREAM_AFTER_FILES 24
#define STREAM_FORWARD_SLACK ((uint64_t)16 << 20)

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
	l->miss_file = UINT32_MAX;
}

static const struct sg_link_meter *link_of(const struct sg_layer *l)
{
	return l->src ? l->src->link : NULL;
}

/* Compressed bytes of the chunks that still need a fetch, and (with a bound) the cache
 * bytes they would take. */
static uint64_t rest_of_layer(struct sg_layer *l, uint64_t *ret_cache_bytes)
{
	uint64_t blob = 0, cache = 0;

	for (uint32_t c = 0; c < l->n_chunks; c++)
		if (sg_layer_fetch_needed(l, c)) {
			const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
			blob += ch->next_offset - ch->offset;
			if (l->cfg.bound)
				cache += sg_cache_bound_extent(l->cfg.bound, ch->file_offset, ch->size);
		}
	*ret_cache_bytes = cache;
	return blob;
}

/* Would fetching the rest of the layer in the background fit under the watermark?  Asked
 * with the rest's size when background fetch starts; afterwards (rest 0) it stops when the
 * cache reaches the watermark, so that a small cache is not churned by data nobody asked
 * for. */
static bool background_fits(struct sg_layer *l, uint64_t rest_cache_bytes)
{
	return !l->cfg.bound || sg_cache_bound_room(l->cfg.bound, rest_cache_bytes);
}

/* Collects the next batch of missing chunks from *cursor on (blob order), stopping at
 * `limit` (blob offset) and at max_batch_bytes.  Returns how many it started (0 = done). */
static int next_batch(struct sg_layer *l, uint32_t *cursor, uint64_t limit, size_t max_bytes,
		      enum sg_fetch_kind kind)
{
	/* Runs of missing chunks apart (the chunks between them cached): one request still. */
	struct sg_layer_batch b = { .max_spans = sg_layer_batch_spans(l) };

	while (*cursor < l->n_chunks) {
		uint32_t c = *cursor;
		if (sg_layer_chunk(l, c)->next_offset > limit) {
			*cursor = l->n_chunks;
			break;
		}
		if (!sg_layer_fetch_needed(l, c)) {
			(*cursor)++;
			continue;
		}
		if (!sg_layer_batch_add(l, &b, c, max_bytes))
			break;
		(*cursor)++;
	}
	if (b.n == 0)
		return 0;
	int r = sg_layer_fetch_batch(l, l->src, b.list, b.n, kind);
	if (r == -EAGAIN)
		*cursor = b.list[0];   /* not started: the same chunks next time */
	return r < 0 ? r : (int)b.n;
}

static void background_tick(struct sg_op *op)
{
	struct sg_layer *l = sg_container_of(op, struct sg_layer, background_timer);
	if (op->res == -ECANCELED) {
		sg_layer_maybe_close_done(l);   /* the timer was the last thing a close waited for */
		return;
	}
	/* The timer also serves retries (memory, room on the link): background fetch starts
	 * only once its delay is over. */
	if (l->started && sg_now_ns() - l->start_ns >= l->cfg.background_delay_ns)
		l->background_started = true;
	sg_layer_spec_continue(l);
	sg_layer_prefetch_continue(l);
}

static void background_retry_in(struct sg_layer *l, uint64_t ns)
{
	if (!sg_op_busy(&l->background_timer))
		(void)sg_timer_start(l->loop, &l->background_timer, ns, background_tick);
}

static void background_retry(struct sg_layer *l)
{
	background_retry_in(l, BACKGROUND_RETRY_NS);
}

void sg_layer_wait_for_room(struct sg_layer *l)
{
	struct sg_link_meter *m = l->src ? l->src->link : NULL;

	if (m && !l->closing && !sg_list_linked(&l->room_node))
		sg_list_insert_tail(&m->room_waiters, &l->room_node);
	if (l->ahead_batches == 0)
		background_retry_in(l, ROOM_RETRY_NS);
}

void sg_layer_room_freed(struct sg_link_meter *m)
{
	struct sg_list woken, *n;

	if (!m)
		return;
	/* Each looks once: one that finds no room yet waits again, on the meter's list. */
	sg_list_init(&woken);
	sg_list_move_all(&woken, &m->room_waiters);
	while ((n = sg_list_pop(&woken)) != NULL) {
		struct sg_layer *x = sg_container_of(n, struct sg_layer, room_node);
		if (x->closing)
			continue;
		sg_layer_spec_continue(x);
		sg_layer_prefetch_continue(x);
	}
}

/* Must a prefetch, which fetches ahead in the order its files are read, wait for the link
 * to drain, so that the next request's bytes come after the ones asked before them instead
 * of sharing the link with them (SG_LINK_PACE_NS)?  A timer looks again when it should have
 * drained.  With nothing fetched ahead in flight on the link it never waits: something must
 * make progress, whatever the meter says. */
static bool paced(struct sg_layer *l)
{
	uint64_t wait_ns;

	if (sg_layer_ahead_inflight(l) == 0 || !sg_link_meter_paced(link_of(l), &wait_ns))
		return false;
	background_retry_in(l, wait_ns);
	return true;
}

/* Must speculation wait for on-demand fetches?  While one is in flight (its end calls us
 * again), and for the quiet gap after one ended (a timer looks again). */
static bool yield_to_ondemand(struct sg_layer *l)
{
	uint64_t now = sg_now_ns(), gap = BACKGROUND_GAP_RTTS * sg_link_meter_rtt_ns(link_of(l));

	if (gap < BACKGROUND_QUIET_NS)
		gap = BACKGROUND_QUIET_NS;
	uint64_t wait_ns;

	if (l->ondemand_inflight > 0)
		return true;
	if (l->last_ondemand_ns && now - l->last_ondemand_ns < gap) {
		background_retry_in(l, gap - (now - l->last_ondemand_ns));
		return true;
	}
	/* Another layer's reader on the same link: it shares the bandwidth, so the same
	 * rule holds.  Its end does not call this layer back: a timer looks again. */
	if (sg_link_meter_ondemand_busy(link_of(l), gap, now, &wait_ns)) {
		background_retry_in(l, wait_ns ? wait_ns : BACKGROUND_RETRY_NS);
		return true;
	}
	return false;
}

static void stream_start(struct sg_layer *l, uint32_t from, bool reader_driven)
{
	l->streaming = true;
	l->stream_for_reader = reader_driven;
	l->stream_wrapped = from == 0;
	l->stream_cursor = l->stream_origin = from;
	l->stats.stream_started = true;
}

/* Bytes in flight that keep the link busy while each new request waits for its first byte:
 * the cap plus what the link carries in a round trip; *ret_batch the bytes per request. */
static size_t pipe_limit(const struct sg_layer *l, size_t *ret_batch)
{
	const struct sg_link_meter *m = link_of(l);
	size_t cap = sg_link_meter_inflight_cap(m);

	*ret_batch = sg_layer_ahead_batch_bytes(l, cap);
	return cap + (size_t)(sg_link_meter_bytes_per_s(m) * (double)sg_link_meter_rtt_ns(m) / 1e9);
}

/* Streams the rest of the layer, filling the pipe (pipe_limit). */
static void stream_continue(struct sg_layer *l)
{
	size_t batch, limit = pipe_limit(l, &batch);

	/* A reader that wants the whole layer waits on the stream itself: it goes on while that
	 * reader's misses are fetched.  Streaming because the link is fast is speculation: it
	 * yields like background fetch. */
	if (!l->stream_for_reader && yield_to_ondemand(l))
		return;
	while (sg_layer_ahead_fits(l, limit, batch)) {
		int r = next_batch(l, &l->stream_cursor, UINT64_MAX, batch, SG_FETCH_STREAM);
		if (r == -EAGAIN) {
			background_retry(l);   /* memory is short: look again shortly */
			return;
		}
		if (r > 0)
			continue;
		if (r == 0 && !l->stream_wrapped) {
			l->stream_wrapped = true;   /* what lies before where the stream began */
			l->stream_cursor = 0;
			continue;
		}
		/* Done, or failing: background fetch (if on) picks up what is left. */
		l->streaming = false;
		return;
	}
	/* No room on the link: our own next batch end looks again, or a timer. */
	sg_layer_wait_for_room(l);
}

void sg_layer_prefetch_saw_read(struct sg_layer *l, uint32_t chunk)
{
	const struct sg_toc_chunk *c = sg_layer_chunk(l, chunk);
	uint32_t file = l->chunk_file[chunk];

	if (l->streaming) {
		/* The reader missed ahead of the stream: the stream goes on from there. */
		if (chunk > l->stream_cursor && !l->stream_wrapped && sg_layer_fetch_needed(l, chunk))
			l->stream_cursor = chunk;
		return;
	}
	/* A layer replaying a profile is read in the profile's order while the replay makes
	 * it local: that is no reader reading it all, and streaming it would take the link. */
	if (l->replaying)
		return;
	/* Nor is reading an optimized layer's prioritized files, which its prefetch fetched:
	 * they lie in the order the workload reads them, so they are read forward by design.
	 * Counted, they started a stream of the rest while the workload still ran (imports,
	 * optimized: 6.4 MB over the link that nobody read, sharing it and the loop). */
	if (l->fetch_kind[chunk] == 1 + SG_FETCH_PREFETCH)
		return;
	bool forward = c->offset >= l->miss_offset &&
		       c->offset - l->miss_offset <= STREAM_FORWARD_SLACK;
	l->miss_offset = c->offset;
	if (file == l->miss_file)
		return;
	l->miss_file = file;
	l->forward_files = forward ? l->forward_files + 1 : 0;
	if (l->forward_files >= STREAM_AFTER_FILES && !l->closing && !l->stats.stream_started) {
		stream_start(l, chunk, true);
		stream_continue(l);
	}
}

static void background_continue(struct sg_layer *l)
{
	const struct sg_link_meter *m = link_of(l);
	uint64_t now = sg_now_ns();

	if (!l->background_started) {
		if (!sg_op_busy(&l->background_timer))
			(void)sg_timer_start(l->loop, &l->background_timer, l->cfg.background_delay_ns,
					     background_tick);
		return;
	}
	if (yield_to_ondemand(l))
		return;
	if (!l->background_start_ns && l->background_delay_default &&
	    sg_link_meter_bytes_per_s(m) > FAST_LINK_BYTES_PER_S &&
	    now - l->start_ns < FAST_LINK_DELAY_NS) {
		/* A link faster than the loop comfortably decompresses and verifies: its batches
		 * would take the loop's time while the container is created and starts (near
		 * link, 100 ms: python 2.20 s against the reference's 0.80, its first read
		 * waiting 0.5 s behind 55 MB of stream).  The link can make up for a later
		 * start; a slow one cannot, so it starts at once. */
		background_retry_in(l, FAST_LINK_DELAY_NS - (now - l->start_ns));
		return;
	}
	if (!l->background_start_ns) {
		uint64_t rest_cache = 0, rest = rest_of_layer(l, &rest_cache);
		if (!background_fits(l, rest_cache)) {
			l->backgrounding = false;
			l->stats.background_skipped = true;
			return;
		}
		l->background_start_ns = now;
		if (sg_link_meter_fast(m, rest) && !l->stats.stream_started) {
			/* The link carries the rest in fewer round trips than a cold start chases
			 * misses: stream it. */
			stream_start(l, 0, false);
			stream_continue(l);
			return;
		}
	} else if (!background_fits(l, 0)) {
		l->backgrounding = false;
		l->stats.background_skipped = true;
		return;
	}
	size_t cap = sg_link_meter_inflight_cap(m), batch = sg_layer_ahead_batch_bytes(l, cap);
	while (sg_layer_ahead_fits(l, cap, batch)) {
		int r = next_batch(l, &l->background_cursor, UINT64_MAX, batch, SG_FETCH_BACKGROUND);
		if (r == -EAGAIN) {
			background_retry(l);
			return;
		}
		if (r > 0)
			continue;
		if (r < 0) {
			l->backgrounding = false;
		} else if (l->ahead_inflight == 0) {
			/* Nothing left to ask for, and the last answers are in. */
			l->backgrounding = false;
			l->stats.background_done = true;
			l->stats.background_ns = now - l->background_start_ns;
		}
		return;
	}
	/* No room on the link: our own next batch end looks again, or a timer. */
	sg_layer_wait_for_room(l);
}

void sg_layer_prefetch_file(struct sg_layer *l, uint32_t first, uint32_t end)
{
	if (l->closing || first >= end || end > l->n_chunks)
		return;
	l->file_streaming = true;
	l->file_cursor = first;
	l->file_end = sg_layer_chunk(l, end - 1)->next_offset;
}

/* May a request fetching ahead in order (a replay's, a prefetch's, a large program's) go
 * out: while the bytes asked ahead in flight fit `limit`, or when the link would deliver
 * what it still owes within the pacing horizon (paced(): the request's first byte then comes
 * as the last of the others do), whatever was asked.  A chunk larger than the limit kept
 * every other request back until it ended: gcc's cc1 is replayed as gzip members of
 * 1.5-2.2 MB, against a limit of 1.45 MB on the far link, and each went out alone a round
 * trip after the one before had ended, the link idle meanwhile (0.1 s a chunk: gcc + profile
 * 8.4 s, 1.15x the limit + warm re-run; 7.6 s since).  One that must wait for the link to
 * drain looks again on paced()'s timer.  On a link not measured yet the limit alone holds. */
static bool may_send_in_order(struct sg_layer *x, size_t limit, size_t batch)
{
	if (sg_layer_ahead_fits(x, limit, batch))
		return true;
	if (sg_layer_ahead_requests(x) >= SG_LINK_AHEAD_REQUESTS)
		return false;   /* connections stay free for on-demand reads */
	if (sg_link_meter_bdp(link_of(x)) == 0)
		return false;   /* not measured yet: no horizon to pace by */
	return !paced(x);
}

/* Fetches the missing chunks from *cursor up to blob offset `end` ahead of readers, in
 * order, each request sent as the link drains (paced): a prefetch's prioritized files, a
 * large program's chunks.  False once everything was asked for, or asking fails (the rest
 * is read on demand); true while there is more to ask for (a batch end or a timer looks
 * again). */
static bool fetch_in_order(struct sg_layer *l, uint32_t *cursor, uint64_t end,
			   enum sg_fetch_kind kind)
{
	size_t batch, limit = pipe_limit(l, &batch) + sg_link_meter_inflight_cap(link_of(l));

	while (!paced(l)) {
		if (!may_send_in_order(l, limit, batch)) {
			/* Our next batch end looks again, or a timer (the room may be another
			 * layer's). */
			sg_layer_wait_for_room(l);
			return true;
		}
		int r = next_batch(l, cursor, end, batch, kind);
		if (r == -EAGAIN) {
			background_retry(l);   /* memory is short: look again shortly */
			return true;
		}
		if (r <= 0)
			return false;
	}
	return true;
}

/* The replay that goes next on l's link: the one whose next chunks the recorded workload
 * read first (ties: the one with the fewest bytes in flight); l itself on a link that is not
 * shared (no meter).  NULL when no replay on the link has requests to send. */
static struct sg_layer *first_due(struct sg_layer *l)
{
	const struct sg_link_meter *m = link_of(l);
	struct sg_layer *best = NULL;
	uint64_t best_due = 0;

	if (!m || !sg_list_linked(&l->replay_node))
		return l->replaying ? l : NULL;
	for (const struct sg_list *n = m->replayers.next; n != &m->replayers; n = n->next) {
		struct sg_layer *x = sg_container_of(n, struct sg_layer, replay_node);
		if (!x->replaying || x->closing)
			continue;
		uint64_t due = sg_layer_replay_due(x);
		if (!best || due < best_due ||
		    (due == best_due && x->ahead_inflight < best->ahead_inflight)) {
			best = x;
			best_due = due;
		}
	}
	return best;
}

/* Nothing more of the replay goes out.  Its owner hears of it once its requests in flight
 * ended too: they may still be waiting for bytes the owner read early for them (the early
 * source keeps what a waiting read needs, but its counts of what arrived and was used are
 * only final then: CI's profile_containerd logged "0 arrived, 0 used" for a request that
 * then delivered them). */
static void replay_over(struct sg_layer *l)
{
	l->replaying = false;
	l->stats.replay_done = true;
	sg_layer_replay_hold_link(l, false);
	l->replay_over_due = true;
	sg_layer_replay_batch_ended(l);
}

void sg_layer_replay_batch_ended(struct sg_layer *l)
{
	if (!l->replay_over_due || l->replay_batches > 0 || l->closing)
		return;
	l->replay_over_due = false;
	if (l->cfg.on_replay_over)
		l->cfg.on_replay_over(l->cfg.userdata);
}

/* Replays learned startup profiles (fs/layer_profile.h): a profile names what the workload
 * is about to read, so the requests fill the link as a stream does, and one cap more (the
 * readers' misses are mostly for chunks already on their way), without yielding to
 * on-demand fetches (those go out at once beside them, on connections kept for them).
 *
 * The layers of an image replay at once, over one link.  Each used to fill it alone, and
 * the one whose request ended first took the room again: on the far link the python layer's
 * replay waited 0.9 s behind the base layer's, and the interpreter's first chunk, read
 * first, went out on demand; on the default link the base layer's libraries never went out
 * at all.  So the link goes to the replay whose next chunks the workload read first, by the
 * times the profiles recorded (one clock per link: fs/layer_profile.c), whichever layer's
 * request ended. */
static void replay_continue(struct sg_layer *l)
{
	const struct sg_link_meter *m = link_of(l);
	size_t batch, limit = pipe_limit(l, &batch) + sg_link_meter_inflight_cap(m);
	struct sg_layer *x;

	sg_layer_replay_hold_link(l, true);
	while ((x = first_due(l)) != NULL && may_send_in_order(x, limit, batch)) {
		int r = sg_layer_replay_next(x, batch, limit);
		if (r == -EAGAIN) {
			background_retry(x);   /* memory is short: look again shortly */
			return;
		}
		if (r > 0)
			continue;
		/* Done, or the source failed: the chunks left are fetched when read. */
		replay_over(x);
		if (x != l)
			background_retry_in(x, ROOM_RETRY_NS);   /* its prefetch and background go on */
	}
	if (!x)
		return;
	/* No room on the link: a replay's next batch end looks again, or a timer (for a layer
	 * with none in flight, which waits for another's). */
	if (!m || !sg_list_linked(&l->replay_node)) {
		sg_layer_wait_for_room(l);
		return;
	}
	for (const struct sg_list *n = m->replayers.next; n != &m->replayers; n = n->next)
		sg_layer_wait_for_room(sg_container_of(n, struct sg_layer, replay_node));
}

void sg_layer_prefetch_continue(struct sg_layer *l)
{
	if (l->closing)
		return;
	if (l->replaying) {
		replay_continue(l);
		if (l->replaying)
			return;
	}
	if (l->prefetching) {
		/* Prefetch: the prioritized files are wanted now, in their order.  Requests of a
		 * batch each, not 4 MiB (a request serves its chunks when it ends, and two sent
		 * together share the link: the interpreter's first chunk waited 0.59 s behind
		 * two of 3.5 and 4.2 MB on the default link), filling the pipe, paced so that
		 * they arrive in order (every layer's, on a shared link). */
		if (!fetch_in_order(l, &l->prefetch_cursor, l->prefetch_end, SG_FETCH_PREFETCH) &&
		    l->batches_inflight == 0) {
			l->prefetching = false;
			l->stats.prefetch_done = true;
			l->stats.prefetch_ns = sg_now_ns() - l->start_ns;
		}
		if (l->prefetching)
			return;
	}
	if (l->file_streaming) {
		/* A large program in use (sg_layer_prefetch_file): gcc's cc1, 33 MB, paged its text
		 * in as it ran, seven misses of a round trip one after the other, 1.5 s. */
		l->file_streaming = fetch_in_order(l, &l->file_cursor, l->file_end, SG_FETCH_SPEC);
		if (l->file_streaming)
			return;
	}
	if (l->streaming) {
		stream_continue(l);
		if (l->streaming)
			return;
	}
	if (l->backgrounding)
		background_continue(l);
}
