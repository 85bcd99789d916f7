#include "fs/layer_fetch.h"

#include <errno.h>
#include <stdlib.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/range_source.h"
#include "fs/layer_int.h"
#include "fs/layer_prefetch.h"
#include "fs/layer_spec.h"

/* A chunk of a batch: its job, and where its bytes start in the batch's buffer. */
struct batch_chunk {
	struct chunk_job *job;
	size_t at;
};

struct fetch_batch {
	struct sg_list in_layer;   /* layer->batches */
	struct sg_layer *layer;
	struct sg_range_source *src;
	struct sg_op op;
	/* The ranges of the request, in blob order, their bytes one after the other in buf:
	 * one (a plain read), or several of one vectored read (the gaps between them not
	 * fetched). */
	struct sg_range_span spans[SG_LAYER_BATCH_SPANS];
	unsigned n_spans;
	size_t len;                /* bytes in all spans */
	size_t charged;            /* bytes counted in the budget's inflight */
	uint8_t *buf;
	struct batch_chunk *chunks;
	size_t n;
	enum sg_fetch_kind kind;   /* what the bytes count as in the stats */
	/* The link the request uses (its source's; NULL = not measured): it counts on-demand
	 * requests and bytes fetched ahead across every layer on that link. */
	struct sg_link_meter *link;
	uint64_t start_ns;
	/* An on-demand request's: the link's ahead_bytes_in and spec_bytes_in at its start. */
	uint64_t beside_mark, beside_spec_mark;
};

static void batch_free(struct fetch_batch *b)
{
	struct sg_layer *l = b->layer;

	sg_list_unlink(&b->in_layer);
	l->batches_inflight--;
	if (b->kind == SG_FETCH_PROFILE)
		l->replay_batches--;
	if (b->kind != SG_FETCH_ONDEMAND) {
		l->ahead_inflight -= b->len;
		l->ahead_batches--;
	}
	if (b->link && b->kind == SG_FETCH_ONDEMAND) {
		sg_link_meter_ondemand(b->link, -1, sg_now_ns());
		sg_link_meter_reads(b->link, -1);
	} else if (b->link)
		sg_link_meter_ahead(b->link, -1, b->len);
	sg_memcache_uncharge(l->mem, b->charged);
	free(b->buf);
	free(b->chunks);
	free(b);
}

static int failure_slot(const struct sg_layer *l, uint32_t chunk, uint32_t reader)
{
	for (unsigned i = 0; i < SG_LAYER_FAILED_RING; i++)
		if (l->failed[i].ns && l->failed[i].chunk == chunk && l->failed[i].reader == reader)
			return (int)i;
	return -1;
}

bool sg_layer_fetch_held(const struct sg_layer *l, uint32_t chunk, uint32_t reader)
{
	int i = failure_slot(l, chunk, reader);
	return i >= 0 && sg_now_ns() - l->failed[i].ns < SG_LAYER_FAILED_HOLD_NS;
}

/* Remembers the failure of j's chunk for each reader waiting on it (before they are woken). */
static void note_failed(struct sg_layer *l, const struct chunk_job *j)
{
	for (const struct sg_list *n = j->waiters.next; n != &j->waiters; n = n->next) {
		uint32_t reader = sg_container_of(n, struct read_part, link)->r->reader;
		int i = failure_slot(l, j->chunk, reader);
		if (i < 0) {
			i = (int)l->failed_next;
			l->failed_next = (l->failed_next + 1) % SG_LAYER_FAILED_RING;
		}
		l->failed[i].chunk = j->chunk;
		l->failed[i].reader = reader;
		l->failed[i].ns = sg_now_ns();
	}
}

/* The account of a chunk that arrived verified: fetched for `kind`; used at once if a
 * reader waits for it (true), else when one asks (sg_layer_note_used). */
static bool note_arrived(struct sg_layer *l, const struct chunk_job *j, enum sg_fetch_kind kind)
{
	const struct sg_toc_chunk *c = sg_layer_chunk(l, j->chunk);
	uint64_t bytes = c->next_offset - c->offset;

	l->stats.kind_fetched_bytes[kind] += bytes;
	if (sg_list_empty(&j->waiters)) {
		/* Nobody waits for it: speculation, prefetch, background fetch, or taken along
		 * with an on-demand fetch (read-ahead, the window). */
		l->fetch_kind[j->chunk] = (uint8_t)(1 + kind);
		return false;
	}
	l->fetch_kind[j->chunk] = 0;
	l->stats.kind_used_bytes[kind] += bytes;
	l->stats.demanded_bytes += bytes;
	if (kind == SG_FETCH_SPEC) {
		sg_layer_spec_paid(l, j->chunk, bytes);   /* a reader came while it was on its way */
		sg_layer_spec_hint_used(l, j->chunk);
	}
	return true;
}

/* The bytes fetched ahead (of them, speculative) that arrived on an on-demand request's link
 * while it was in flight; -1 for any other request. */
static int64_t beside(const struct fetch_batch *b, bool spec)
{
	if (!b->link || b->kind != SG_FETCH_ONDEMAND)
		return -1;
	return spec ? (int64_t)(b->link->spec_bytes_in - b->beside_spec_mark)
		    : (int64_t)(b->link->ahead_bytes_in - b->beside_mark);
}

static void batch_fetched(struct sg_op *op)
{
	struct fetch_batch *b = sg_container_of(op, struct fetch_batch, op);
	struct sg_layer *l = b->layer;

	for (size_t i = 0; i < b->n; i++) {
		struct chunk_job *j = b->chunks[i].job;
		const struct sg_toc_chunk *c = sg_layer_chunk(l, j->chunk);
		struct sg_error err;

		if (j->ondemand) {
			l->ondemand_inflight--;
			l->last_ondemand_ns = sg_now_ns();
		}
		if (!sg_layer_res_is(op->res, b->len) || l->closing) {
			if (!l->closing && op->res != -ECANCELED)
				note_failed(l, j);
			sg_layer_job_fail(j, l->closing ? -ECANCELED : -EIO);
			continue;
		}
		struct sg_mem_chunk *e = sg_mem_chunk_new(l->mem, j->chunk, c->size);
		if (!e) {
			sg_layer_job_fail(j, -ENOMEM);
			continue;
		}
		int r = sg_esgz_extract_chunk(l->gz, c, b->buf + b->chunks[i].at,
					      c->next_offset - c->offset,
					      l->cfg.skip_verify && !c->has_digest, e->data, &err);
		if (r < 0) {
			/* A member that does not decompress, or bytes that do not match: either
			 * way the blob is not what the TOC describes.  Held like a failed fetch:
			 * the kernel's page-by-page retry must not fetch it again each time. */
			if (err.code != SG_ESGZ_E_NOMEM && err.code != SG_ESGZ_E_CANCELED) {
				sg_layer_report_bad_chunk(l, j->chunk, c->file_offset, false);
				note_failed(l, j);
			}
			sg_mem_chunk_free(e);
			sg_layer_job_fail(j, -EIO);
			continue;
		}
		l->stats.chunks_fetched++;
		/* A file being read, or followed (a program about to run, a library it needs, a
		 * header about to be included): what it needs next (only those: other
		 * speculated programs would speculate their libraries in turn). */
		bool in_use = note_arrived(l, j, b->kind);
		bool follow = sg_layer_spec_follow_arrived(l, j->chunk);
		if ((in_use || follow) && c->file_offset == 0)
			sg_layer_spec_contents(l, j->chunk, e->data, c->size);
		sg_layer_job_ready(j, e);
	}
	if (op->res > 0) {
		l->stats.fetched_bytes += (uint64_t)op->res;
		if (b->kind == SG_FETCH_ONDEMAND)
			l->stats.ondemand_fetched_bytes += (uint64_t)op->res;
		else if (b->kind == SG_FETCH_PREFETCH)
			l->stats.prefetched_bytes += (uint64_t)op->res;
		else if (b->kind == SG_FETCH_STREAM)
			l->stats.streamed_bytes += (uint64_t)op->res;
	}
	uint64_t took = sg_now_ns() - b->start_ns;
	if (op->res != -ECANCELED)
		sg_hist_observe(&l->stats.fetch_ms, (double)took / 1e6);
	if (l->cfg.trace)
		sg_fetch_trace_fetch(l->cfg.trace, l->trace_layer, b->kind, b->spans[0].offset,
				     b->len, b->n, b->n_spans, b->start_ns, took,
				     sg_layer_res_is(op->res, b->len), beside(b, false), beside(b, true));
	struct sg_link_meter *link = b->link;
	bool replayed = b->kind == SG_FETCH_PROFILE;
	batch_free(b);
	if (replayed)
		sg_layer_replay_batch_ended(l);
	sg_layer_spec_continue(l);
	/* After an on-demand batch too: background fetch that found the link busy waits for
	 * the last batch in flight, whichever it was, to look again. */
	sg_layer_prefetch_continue(l);
	sg_layer_room_freed(link);   /* and the other layers on the link that wait for room */
	sg_layer_maybe_close_done(l);
}

/* Lays the chunks out in spans (sg_layer_span_joins across `gap`: the batch's own rule), and
 * each chunk at its place in the buffer that holds the spans one after the other.  The spans'
 * buffers are set once the buffer is there.  Returns the number of spans, or -E2BIG. */
static int batch_layout(struct sg_layer *l, struct fetch_batch *b, const uint32_t *chunks,
			size_t n, uint64_t gap)
{
	struct sg_range_span *sp = NULL;
	size_t at = 0;   /* where the current span starts in the buffer */

	b->n_spans = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sg_toc_chunk *c = sg_layer_chunk(l, chunks[i]);
		if (!sp || c->offset < sp->offset || !sg_layer_span_joins(sp->offset + sp->len,
									   c->offset, gap)) {
			if (b->n_spans == SG_LAYER_BATCH_SPANS)
				return -E2BIG;
			if (sp)
				at += sp->len;
			sp = &b->spans[b->n_spans++];
			*sp = (struct sg_range_span){ .offset = c->offset };
		}
		if (c->next_offset > sp->offset + sp->len)
			sp->len = (size_t)(c->next_offset - sp->offset);
		b->chunks[i].at = at + (size_t)(c->offset - sp->offset);
	}
	b->len = at + (sp ? sp->len : 0);
	return (int)b->n_spans;
}

int sg_layer_fetch_batch(struct sg_layer *l, struct sg_range_source *src,
			 const uint32_t *chunks, size_t n, enum sg_fetch_kind kind)
{
	struct fetch_batch *b = calloc(1, sizeof(*b));
	bool ondemand = kind == SG_FETCH_ONDEMAND;
	size_t need = 0;
	int r;

	if (!b)
		return -ENOMEM;
	b->layer = l;
	b->kind = kind;
	b->chunks = calloc(n, sizeof(*b->chunks));
	if (!b->chunks) {
		r = -ENOMEM;
		goto unstarted;
	}
	r = batch_layout(l, b, chunks, n, sg_layer_batch_gap(src, kind));
	if (r > 1 && !sg_range_source_vectored(src))
		r = -EOPNOTSUPP;   /* the caller packs one span a batch for such a source */
	if (r < 0)
		goto unstarted;
	for (size_t i = 0; i < n; i++)
		need += (size_t)sg_layer_chunk(l, chunks[i])->size;
	need += b->len;
	r = sg_memcache_charge(l->mem, need, !ondemand, &b->charged);
	if (r < 0)
		goto unstarted;
	b->buf = malloc(b->len ? b->len : 1);
	if (!b->buf) {
		sg_memcache_uncharge(l->mem, b->charged);
		r = -ENOMEM;
		goto unstarted;
	}
	for (size_t s = 0, at = 0; s < b->n_spans; at += b->spans[s++].len)
		b->spans[s].buf = b->buf + at;
	l->batches_inflight++;
	if (kind == SG_FETCH_PROFILE)
		l->replay_batches++;
	sg_list_insert_tail(&l->batches, &b->in_layer);
	b->src = src;
	if (kind != SG_FETCH_ONDEMAND) {
		l->ahead_inflight += b->len;
		l->ahead_batches++;
	}
	b->link = src->link;
	if (b->link && ondemand) {
		sg_link_meter_ondemand(b->link, +1, sg_now_ns());
		sg_link_meter_reads(b->link, +1);
	} else if (b->link)
		sg_link_meter_ahead(b->link, +1, b->len);
	for (size_t i = 0; i < n; i++) {
		struct chunk_job *j = sg_layer_job_new(l, chunks[i], ondemand);
		if (!j) {
			r = -ENOMEM;
			goto fail;
		}
		b->chunks[b->n++].job = j;
		if (ondemand) {
			l->ondemand_inflight++;
			l->last_ondemand_ns = sg_now_ns();
		}
	}
	sg_op_init(&b->op);
	sg_op_set_group(&b->op, &l->group);
	b->start_ns = sg_now_ns();
	b->beside_mark = b->link ? b->link->ahead_bytes_in : 0;
	b->beside_spec_mark = b->link ? b->link->spec_bytes_in : 0;
	r = sg_range_readv_flags(src, b->spans, b->n_spans,
				 ondemand ? 0 : kind == SG_FETCH_SPEC ? SG_RANGE_AHEAD | SG_RANGE_SPEC :
									SG_RANGE_AHEAD,
				 &b->op, batch_fetched);
	if (r < 0)
		goto fail;
	l->stats.fetch_requests++;
	if (ondemand)
		l->stats.ondemand_fetches++;
	for (size_t i = 0; i < n; i++)
		sg_layer_spec_peek(l, src, chunks[i], ondemand);
	return (int)n;
fail:
	for (size_t i = 0; i < b->n; i++) {
		if (ondemand)
			l->ondemand_inflight--;
		sg_layer_job_fail(b->chunks[i].job, r);
	}
	batch_free(b);
	return r;
unstarted:
	/* Nothing counted, no job made. */
	free(b->chunks);
	free(b);
	return r;
}

void sg_layer_fetch_cancel_all(struct sg_layer *l)
{
	/* A source's cancel never completes the op from inside the call (the loop's contract),
	 * so the list does not change under us. */
	for (struct sg_list *n = l->batches.next; n != &l->batches; n = n->next) {
		struct fetch_batch *b = sg_container_of(n, struct fetch_batch, in_layer);
		(void)sg_range_cancel(b->src, &b->op);
	}
}

bool sg_layer_fetch_needed(const struct sg_layer *l, uint32_t c)
{
	return !l->jobs[c] && !sg_memcache_get(l->mem, c) && !sg_diskcache_present(l->disk, c);
}

/* Was the chunk before this one (of the same file) read already?  Then the file is being
 * read sequentially and the next chunks are worth fetching with this one. */
static bool sequential(const struct sg_layer *l, uint32_t c)
{
	const struct sg_toc_node *file = sg_toc_node(l->toc, l->chunk_file[c]);
	return c > file->first_chunk && (sg_memcache_get(l->mem, c - 1) || l->jobs[c - 1] ||
					 sg_diskcache_present(l->disk, c - 1));
}

/* What is cheap to take along: the next chunks of the same file when it is read
 * sequentially (read-ahead), and the members of the following small files up to
 * window_bytes further in the blob.  On a link with a 40 ms round trip, 256 KiB more costs
 * ~20 ms at 100 Mbit/s, while a later miss costs a round trip; neighbouring files in a layer
 * are read together (a package, a module directory). */
int sg_layer_fetch_chunk(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk,
			 bool ondemand, struct sg_list *waiters)
{
	uint32_t list[64];
	size_t n = 0;
	uint32_t file = l->chunk_file[chunk];
	const struct sg_toc_chunk *c0 = sg_layer_chunk(l, chunk);
	uint64_t start = c0->offset, end = c0->next_offset, prev = c0->offset;
	uint64_t window_end = c0->next_offset + (ondemand ? l->cfg.window_bytes : 0);
	unsigned same_file = 0;
	bool seq = sequential(l, chunk);
	int r;

	list[n++] = chunk;
	for (uint32_t c = chunk + 1; c < l->n_chunks && n < 64; c++) {
		const struct sg_toc_chunk *c1 = sg_layer_chunk(l, c);
		bool mine = l->chunk_file[c] == file;
		if (!sg_layer_fetch_needed(l, c) || c1->offset < prev ||
		    !sg_layer_span_joins(end, c1->offset, SG_LAYER_BATCH_GAP) ||
		    c1->next_offset - start > l->cfg.max_batch_bytes)
			break;
		if (mine ? (!seq || same_file >= l->cfg.readahead_chunks) : c1->next_offset > window_end)
			break;
		same_file += mine;
		list[n++] = c;
		prev = c1->offset;
		if (c1->next_offset > end)
			end = c1->next_offset;
	}
	/* Readers wait for it (even when a disk load they joined turned into this fetch). */
	r = sg_layer_fetch_batch(l, src, list, n, SG_FETCH_ONDEMAND);
	if (r < 0)
		return r;
	struct sg_list *node;
	while ((node = sg_list_pop(waiters)))
		sg_list_insert_tail(&l->jobs[chunk]->waiters, node);
	/* A miss that starts a file (not its sequential read): its neighbours are likely next. */
	if (ondemand && !seq)
		sg_layer_spec_miss(l, src, chunk);
	return 0;
}
