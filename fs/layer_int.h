/* The layer's own state, shared by the files that make up the layer object (fs/layer.h):
 *
 *   fs/layer.c           the object and its lifecycle, chunk jobs, reads, users
 *   fs/layer_fetch.c     range requests for runs of chunks, and the failure hold
 *   fs/layer_prefetch.c  prefetch and background fetch
 *   fs/layer_trust.c     trust checks and pins for FUSE passthrough
 *   fs/layer_evict.c     the layer's side of the disk cache bound: use stamps, eviction
 *   fs/layer_spec.c      speculation by locality, with a budget
 *   fs/layer_profile.c   learned startup profiles: the recorder, and the replay's cursor
 *
 * over two modules of their own, fs/memcache.h and fs/diskcache.h.
 *
 * A chunk is produced by at most one job at a time (l->jobs[chunk]): a disk load, or one
 * chunk of a fetch batch.  Readers wait on the job's list (struct read_part); once the job
 * has verified bytes it wakes them, puts the bytes into the memory cache and, unless they
 * came from there, writes them to the disk cache.
 *
 * Private to those files: nothing outside fs/layer*.c includes this. */
#ifndef STARGZD_FS_LAYER_INT_H
#define STARGZD_FS_LAYER_INT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/list.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "fs/diskcache.h"
#include "fs/estargz.h"
#include "fs/layer.h"
#include "fs/memcache.h"

/* After the fetch of a chunk failed (the source gave up after its retries, or the bytes did
 * not verify), the readers that waited for it get EIO at once for this long when they ask
 * for that chunk again: the kernel retries a failed readahead page by page, in the reading
 * process, and each retry would otherwise wait out the whole retry budget again.  Only those
 * readers: another process (a new container, a user trying again once the registry is back)
 * gets a fetch of its own. */
#define SG_LAYER_FAILED_HOLD_NS (300ull * 1000000u)
#define SG_LAYER_FAILED_RING 16
/* Speculative bytes in flight at most (sg_layer_ahead_room): what 100 Mbit/s carries in
 * ~150 ms, so that an on-demand fetch started behind them waits about one chunk transfer at
 * most for the link. */
#define SG_LAYER_AHEAD_CAP (2u << 20)
/* Speculative range requests in flight at most: each holds one of the registry's
 * connections (8 per host, net/registry.c), and on-demand fetches must find one free. */
#define SG_LAYER_AHEAD_BATCHES 3u
/* Chunks in a window of a replay (layer_profile.c) at most. */
#define SG_LAYER_REPLAY_WINDOW 4096u
/* Runs of chunks waiting for speculation (layer_spec.c). */
#define SG_LAYER_SPEC_QUEUE 256
/* Directories of recent misses remembered (layer_spec.c). */
#define SG_LAYER_SPEC_DIRS 4
/* Precise speculation (what an ELF file in use needs) in flight at most, in requests: a
 * program's loader and its usual libraries (ld-linux, libm, libz, libc for python3) at
 * once, leaving the registry's connections (8 a host) room for on-demand fetches beside
 * the 3 fetching ahead. */
#define SG_LAYER_PRECISE_BATCHES 4u

/* One chunk being produced: from the disk cache or as part of a fetch batch. */
struct chunk_job {
	struct sg_layer *layer;
	uint32_t chunk;
	uint32_t file;             /* resolved node owning the chunk */
	struct sg_list waiters;    /* struct read_part */
	struct sg_op op;           /* disk read, then cache write */
	struct sg_op bitmap_op;
	struct sg_mem_chunk *entry;   /* result, held while written to disk */
	uint8_t *loadbuf;          /* disk load target */
	struct sg_diskcache_fd fdr;   /* cache file of the disk read or cache write */
	uint64_t reserved;         /* cache bytes accounted for the write in flight */
	bool from_disk;
	bool ondemand;
	bool verify_only;          /* a passthrough check: no reader asked for the bytes */
};

struct read_part {
	struct sg_list link;       /* on a job's waiters while it waits (sg_list_linked) */
	struct layer_read *r;
	uint32_t chunk;
};

struct layer_read {
	struct sg_layer *layer;
	struct sg_layer_user *user;
	struct sg_list user_link;  /* on user->reads until its result is posted */
	struct sg_op *op;          /* the caller's, posted with the result */
	sg_op_cb cb;
	uint8_t *buf;
	uint32_t reader;           /* the reading process, for the failure hold */
	uint32_t file;
	uint64_t offset;
	size_t len;
	uint64_t start_ns;         /* for stats.read_us */
	bool waited, net;          /* on a job (for the trace); net: a fetch, not the disk */
	unsigned pending;
	int error;
	struct sg_op io_op;        /* stargz.index.json's read */
	size_t n_parts;
	struct read_part parts[];
};

/* One user of the layer (a FUSE mount of it): the reads and trust checks it started, so that
 * it can leave while other users keep the layer. */
struct sg_layer_user {
	struct sg_layer *layer;
	/* Where this user's on-demand fetches go (its own image's registry), NULL = the
	 * layer's.  Owned by the layer (user_srcs): a fetch it started may still be serving
	 * other users' waiters after the user left. */
	struct sg_range_source *src;
	struct sg_list link;           /* on layer->users */
	struct sg_list reads;          /* struct layer_read, results still owed */
	unsigned verifies;             /* trust checks, results still owed */
	bool closing;
	struct sg_op *close_op;        /* sg_layer_user_close's, posted once none is owed */
	sg_op_cb close_cb;
};

struct sg_layer {
	struct sg_loop *loop;
	struct sg_range_source *src;
	struct sg_toc *toc;
	struct sg_gz *gz;
	struct sg_layer_config cfg;
	char cache_dir[4096];
	struct sg_group group;

	uint32_t n_chunks;
	uint32_t *chunk_file;          /* chunk -> node owning it */
	struct chunk_job **jobs;       /* chunk -> job in flight */
	/* chunk -> 1 + the enum sg_fetch_kind it was fetched for, while no reader has read it
	 * since; 0 otherwise (never fetched, or counted as used already). */
	uint8_t *fetch_kind;
	struct sg_memcache *mem;
	struct sg_diskcache *disk;
	struct sg_list users;          /* struct sg_layer_user */
	struct sg_range_source **user_srcs;   /* users' own sources, freed with the layer */
	size_t n_user_srcs;
	unsigned n_users;
	bool started;
	unsigned reads_inflight;
	unsigned jobs_inflight;

	/* Trust checks (layer_trust.c).  By node: how many users handed the file's cache file
	 * to the kernel (passthrough); such a file is never evicted and its chunks stay
	 * trusted. */
	uint16_t *pins;
	struct sg_list verify_reqs;    /* struct verify_req: files waiting for a trust check */
	uint32_t verify_chunk;         /* next chunk of the file at the head */
	unsigned verify_inflight;      /* its chunks being read back */
	unsigned verify_pending;       /* callbacks not delivered yet */

	/* The size bound (layer_evict.c; NULL = none): this layer's account and a use stamp
	 * per chunk. */
	struct sg_cache_bound_layer *bound_ent;
	uint32_t *stamp;
	uint32_t block;                /* filesystem block size of the cache */

	/* Fetches (layer_fetch.c). */
	struct sg_list batches;         /* struct fetch_batch in flight */
	unsigned batches_inflight;
	unsigned ondemand_inflight;
	uint64_t last_ondemand_ns;      /* when an on-demand fetch last started or ended */
	/* Recent fetch failures, by chunk and by reader that saw them. */
	struct { uint32_t chunk, reader; uint64_t ns; } failed[SG_LAYER_FAILED_RING];
	unsigned failed_next;

	/* Prefetch and background fetch (layer_prefetch.c). */
	uint32_t prefetch_cursor, background_cursor;
	uint64_t prefetch_end;
	bool prefetching, backgrounding, background_started;
	/* A large program in use read through (sg_layer_prefetch_file): its chunks from
	 * file_cursor on, up to blob offset file_end. */
	bool file_streaming;
	uint32_t file_cursor;
	uint64_t file_end;
	bool background_delay_default; /* cfg.background_delay_ns was not given */
	uint64_t start_ns;             /* sg_layer_start: prefetch's clock */
	uint64_t background_start_ns;  /* background fetch's first batch */
	struct sg_op background_timer;
	/* Streaming the rest of the layer: from stream_origin to the end, then from the start. */
	bool streaming, stream_wrapped;
	bool stream_for_reader;        /* a reader wants it all (else: the link is fast) */
	uint32_t stream_cursor, stream_origin;
	/* Full-read detection: on-demand misses moving forward in blob order, file after file. */
	uint32_t miss_file;
	uint64_t miss_offset;
	unsigned forward_files;

	/* Speculation by locality (layer_spec.c). */
	size_t spec_budget;            /* bytes to speculate on the next miss */
	/* Compressed bytes of the batches no reader waits for (speculation, prefetch,
	 * background, stream) in flight, and how many: bounded by the link's in-flight cap
	 * (daemon/core/link_meter.h), so that an on-demand fetch waits one chunk transfer at
	 * most behind them. */
	size_t ahead_inflight;
	unsigned ahead_batches;
	uint32_t spec_last_file;       /* the file of the last miss that speculated */
	struct sg_range_source *spec_src;   /* the last miss's source */
	uint8_t *spec_queued;          /* chunk -> flags: in spec_queue, fetched as a neighbour */
	struct { uint32_t first, end; } spec_queue[SG_LAYER_SPEC_QUEUE];
	unsigned spec_n;
	char trace_layer[128];         /* cfg.trace_layer's copy */

	/* Learned startup profiles (layer_profile.c).  The recording (NULL: off), the chunks of
	 * it handed to the owner, and its quiet timer; the replay (NULL: none) and its cursor:
	 * range replay_range of sg_profile_ranges, from chunk replay_chunk; the window of
	 * chunks taken from there, in blob order, replay_window[replay_window_at..n), each with
	 * the time the recorded workload first read it. */
	struct sg_profile *prof_rec;
	uint64_t prof_handed;
	struct sg_op prof_timer;
	struct sg_profile *replay;
	size_t replay_range;
	uint32_t replay_chunk;
	struct sg_replay_slot { uint32_t chunk, at_ms; } *replay_window;
	size_t replay_window_n, replay_window_at;
	uint64_t replay_left;          /* budget bytes not spent */
	bool replaying;                /* requests of the replay still to go out */
	unsigned replay_batches;       /* the replay's requests in flight */
	bool replay_over_due;          /* all went out: on_replay_over once they ended */
	bool replay_holds_link;        /* counted as a reader on the link meter meanwhile, and on
					* its list of replayers (replay_node) */
	struct sg_list replay_node;
	struct sg_list room_node;      /* on the link's room_waiters (sg_layer_wait_for_room) */

	bool closing;
	struct sg_op *close_op;        /* sg_layer_close's, posted once nothing is in flight */
	sg_op_cb close_cb;

	struct sg_layer_stats stats;

	/* ---- Speculation: precise picks, across layers (layer_spec.c) ---- */
	unsigned spec_precise_n;       /* runs at the head of spec_queue that are precise */
	struct { uint32_t chunk; size_t bytes; } spec_precise[SG_LAYER_PRECISE_BATCHES];
	/* Bytes of neighbours of misses fetched, and of those read: the hit rate that backs
	 * neighbour speculation off. */
	uint64_t spec_nb_fetched, spec_nb_used;
	/* The directories of the last misses in new files (SG_LAYER_SPEC_DIRS, a ring), and the
	 * bytes a miss in one of them may still speculate while the hit rate says no. */
	uint32_t spec_dirs[SG_LAYER_SPEC_DIRS];
	unsigned spec_dirs_next;
	size_t spec_hot_left;
	bool spec_python_core;         /* python's core modules were picked (python_core) */
	/* The GCC seen in use here (toolchain_start): its headers' search path (spec_header).
	 * prefix[0] == 0 while none was. */
	struct { char prefix[64], triplet[64], version[16]; } spec_gcc;
	uint64_t spec_header_bytes;    /* picked for what headers include (SPEC_HEADERS_MAX) */
	struct sg_list spec_peeks;     /* struct spec_peek in flight (sg_layer_spec_peek) */
};

/* An op's result is an int32_t; sizes are size_t.  Comparing through a cast of the size
 * would take a truncated size for complete. */
static inline bool sg_layer_res_is(int32_t res, size_t want)
{
	return res >= 0 && (size_t)res == want;
}

static inline const struct sg_toc_chunk *sg_layer_chunk(const struct sg_layer *l, uint32_t c)
{
	const struct sg_toc_node *n = sg_toc_node(l->toc, l->chunk_file[c]);
	return &sg_toc_chunks(l->toc, n)[c - n->first_chunk];
}

/* The entry check of a continuation (daemon/core/loop.h): an op and a callback, and the op
 * not in flight, since the result will be posted to it.  0 or a negative errno. */
static inline int sg_layer_op_check(const struct sg_op *op, sg_op_cb cb)
{
	if (!op || !cb)
		return -EINVAL;
	return sg_op_busy(op) ? -EBUSY : 0;
}

/* Bytes fetched ahead of readers in flight on this layer's link: every layer's on it (the
 * cap is the link's), or this layer's own when the link is not measured. */
static inline size_t sg_layer_ahead_inflight(const struct sg_layer *l)
{
	const struct sg_link_meter *m = l->src ? l->src->link : NULL;

	return m && m->ahead_inflight > l->ahead_inflight ? m->ahead_inflight : l->ahead_inflight;
}

/* Requests fetching ahead in flight on this layer's link (every layer's), or this layer's
 * own when the link is not measured: at most SG_LINK_AHEAD_REQUESTS. */
static inline unsigned sg_layer_ahead_requests(const struct sg_layer *l)
{
	const struct sg_link_meter *m = l->src ? l->src->link : NULL;

	return m && m->ahead_requests > l->ahead_batches ? m->ahead_requests : l->ahead_batches;
}

/* How many more speculative bytes may start now: the link's in-flight cap (what it carries
 * in ~150 ms; SG_LAYER_AHEAD_CAP before it was measured) less every fetched-ahead byte in
 * flight (speculation, prefetch, background, stream); 0 while as many requests fetching
 * ahead as connections allow are out. */
static inline size_t sg_layer_ahead_room(const struct sg_layer *l)
{
	const struct sg_link_meter *m = l->src ? l->src->link : NULL;
	size_t cap = m ? sg_link_meter_inflight_cap(m) : SG_LAYER_AHEAD_CAP;
	size_t inflight = sg_layer_ahead_inflight(l);

	if (l->ahead_batches >= SG_LAYER_AHEAD_BATCHES ||
	    sg_layer_ahead_requests(l) >= SG_LINK_AHEAD_REQUESTS)
		return 0;
	return inflight < cap ? cap - inflight : 0;
}

/* Bytes per request fetched ahead (speculation, background, stream, replay): a third of the
 * link's cap, so that several are in flight and a new one goes out while the others still
 * stream; at least 256 KiB (a request costs a round trip), at most max_batch_bytes. */
static inline size_t sg_layer_ahead_batch_bytes(const struct sg_layer *l, size_t cap)
{
	size_t b = cap / 3;

	if (b < ((size_t)256 << 10))
		b = (size_t)256 << 10;
	return b > l->cfg.max_batch_bytes ? l->cfg.max_batch_bytes : b;
}

/* Room for one more request of up to `batch` bytes fetched ahead under `limit`?  One is
 * always allowed, so that a limit smaller than a batch still makes progress. */
static inline bool sg_layer_ahead_fits(const struct sg_layer *l, size_t limit, size_t batch)
{
	size_t inflight = sg_layer_ahead_inflight(l);

	if (sg_layer_ahead_requests(l) >= SG_LINK_AHEAD_REQUESTS)
		return false;   /* connections stay free for on-demand reads */
	return inflight == 0 || inflight + batch <= limit;
}

/* Spans in one fetch batch at most: far-apart runs of chunks in one vectored request. */
#define SG_LAYER_BATCH_SPANS 16u

/* Does a chunk at `offset` continue the span ending at span_end (the gap, at most `gap`,
 * read along), or start a span of its own? */
static inline bool sg_layer_span_joins(uint64_t span_end, uint64_t offset, uint64_t gap)
{
	return offset <= span_end + gap;
}

/* The gap a batch of `kind` from src reads along (fs/layer.h): a replay's is small when src
 * reads several spans in one request. */
static inline uint64_t sg_layer_batch_gap(const struct sg_range_source *src,
					  enum sg_fetch_kind kind)
{
	return kind == SG_FETCH_PROFILE && sg_range_source_vectored(src) ? SG_LAYER_REPLAY_GAP
									 : SG_LAYER_BATCH_GAP;
}

/* A range request being put together: chunks in blob order, in spans [start, end) of the
 * blob, each a run of chunks with the gaps up to `gap` between them read along (0: SG_LAYER_
 * BATCH_GAP; sg_layer_batch_gap gives the one sg_layer_fetch_batch lays it out with).  Up to
 * max_spans spans (0 counts as 1: one contiguous range, for a source that is not vectored),
 * the gaps between spans not fetched; `bytes` in all spans. */
struct sg_layer_batch {
	uint32_t list[256];
	size_t n;
	unsigned max_spans;
	uint64_t gap;
	unsigned n_spans;
	struct { uint64_t start, end; } span[SG_LAYER_BATCH_SPANS];
	uint64_t bytes;
};

/* Spans a batch from the layer's own source may have: several when it reads them in one
 * request (sg_range_source_vectored), else one. */
static inline unsigned sg_layer_batch_spans(const struct sg_layer *l)
{
	return sg_range_source_vectored(l->src) ? SG_LAYER_BATCH_SPANS : 1;
}

/* Adds chunk c to the batch, unless that would take it backwards, past max_bytes fetched,
 * past the list, or across a gap above the batch's with max_spans spans
 * already: then false, and the batch is complete.  The first chunk always goes in. */
static inline bool sg_layer_batch_add(const struct sg_layer *l, struct sg_layer_batch *b,
				      uint32_t c, size_t max_bytes)
{
	const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
	unsigned max_spans = b->max_spans ? b->max_spans : 1;

	if (max_spans > SG_LAYER_BATCH_SPANS)
		max_spans = SG_LAYER_BATCH_SPANS;
	if (b->n == 0) {
		b->n_spans = 1;
		b->span[0].start = ch->offset;
		b->span[0].end = ch->next_offset;
		b->bytes = ch->next_offset - ch->offset;
		b->list[b->n++] = c;
		return true;
	}
	unsigned last = b->n_spans - 1;
	bool joins = sg_layer_span_joins(b->span[last].end, ch->offset,
					 b->gap ? b->gap : SG_LAYER_BATCH_GAP);
	uint64_t more = joins ? (ch->next_offset > b->span[last].end
					 ? ch->next_offset - b->span[last].end : 0)
			      : ch->next_offset - ch->offset;
	if (b->n == sizeof(b->list) / sizeof(b->list[0]) || ch->offset < b->span[last].start ||
	    (!joins && b->n_spans >= max_spans) || b->bytes + more > max_bytes)
		return false;
	if (!joins) {
		last = b->n_spans++;
		b->span[last].start = ch->offset;
		b->span[last].end = ch->offset;
	}
	if (ch->next_offset > b->span[last].end)
		b->span[last].end = ch->next_offset;
	b->bytes += more;
	b->list[b->n++] = c;
	return true;
}

/* ---- in fs/layer.c ---- */

/* A job for `chunk` (none may be in flight), registered in l->jobs; NULL without memory. */
struct chunk_job *sg_layer_job_new(struct sg_layer *l, uint32_t chunk, bool ondemand);
void sg_layer_job_free(struct chunk_job *j);
/* Wakes the waiters with `error`, then frees the job. */
void sg_layer_job_fail(struct chunk_job *j, int error);
/* The chunk's verified bytes are in e: serve the waiters, cache them in memory, and write
 * them to the disk cache unless they came from there. */
void sg_layer_job_ready(struct chunk_job *j, struct sg_mem_chunk *e);
/* Starts reading the job's chunk back from the disk cache (and verifying it). */
int sg_layer_job_load(struct sg_layer *l, struct chunk_job *j);
/* Counts a chunk that did not match its digest and tells the owner (on_bad_chunk). */
void sg_layer_report_bad_chunk(struct sg_layer *l, uint32_t chunk, uint64_t file_offset,
			       bool from_cache);
/* A reader wants chunk c (a read, or an open handed to the kernel): counts it as used for
 * the kind it was fetched for, once per fetch (stats.kind_used_bytes). */
void sg_layer_note_used(struct sg_layer *l, uint32_t c);
/* Completes sg_layer_close once nothing is left in flight. */
void sg_layer_maybe_close_done(struct sg_layer *l);
/* Completes sg_layer_user_close (and frees the user) once it is owed no result. */
void sg_layer_user_maybe_done(struct sg_layer_user *u);

#endif
