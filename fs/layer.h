/* A lazily fetched eStargz layer: its index (TOC), its blob (a range source), and the chunk
 * pipeline that turns "bytes [off, off+len) of file N" into verified data.
 *
 * Reading a file maps the range to chunks.  Each chunk comes from, in order: the memory
 * cache of recently used chunks (fs/memcache.h); the disk cache (fs/diskcache.h:
 * ROOT/cache/<layer>/, one plain file per regular file holding its decompressed bytes at
 * their own offsets, plus a bitmap of the chunks present), re-verified against the chunk
 * digest on every load; or the blob, with one range request for the wanted chunk and the
 * following missing chunks of the same file (read-ahead), decompressed, verified, then
 * written to the disk cache.  Concurrent readers of one chunk share one load.  No byte
 * reaches a reader before its chunk digest matched (unless the layer was opened with
 * verification explicitly off).
 *
 * stargz.index.json (the TOC's own node, no chunks) is served from CACHE/stargz.index.json,
 * written at sg_layer_new from the verified JSON the loader kept (sg_esgz_options.keep_json;
 * without it, reads of that file fail with -EIO).
 *
 * Prefetch (the prioritized region before `.prefetch.landmark`), background fetch (the rest
 * of the layer, several requests within the link's in-flight cap, yielding to on-demand
 * reads) and streaming (a layer read in full, or a fast link) fill the disk cache so that
 * the layer becomes fully local (fs/layer_prefetch.h).  What FUSE passthrough needs of a layer (trust
 * checks, pins) is in fs/layer_trust.h.
 *
 * Everything runs on the loop; callbacks never run from inside a call.  Asynchronous calls
 * take the loop's continuation shape (daemon/core/loop.h).  The object is made of several
 * files that share fs/layer_int.h. */
#ifndef STARGZD_FS_LAYER_H
#define STARGZD_FS_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/hist.h"
#include "daemon/core/loop.h"
#include "fs/fetch_trace.h"

struct sg_loop;
struct sg_cache_bound;
struct sg_toc;
struct sg_range_source;
struct sg_layer;

struct sg_mem_budget;          /* fs/memcache.h */
struct sg_profile;             /* fs/profile.h */

/* Chunks this close in the blob share one span of a request, the bytes between them read
 * along (tar headers between members are small): cheaper than a span or a round trip more,
 * and the neighbours read along are often read next.  A replay from a source that reads
 * several spans in one request joins only across SG_LAYER_REPLAY_GAP: it knows the chunks
 * the workload reads, and the bytes between them were 1.25 MB of imports' 11.3 over the link
 * (a span costs a part header of about 100 bytes, not a round trip).  Who fetches a layer's
 * replay ahead of it (daemon/early_source.h) joins its spans alike, so that the layer's
 * requests fall inside them. */
#define SG_LAYER_BATCH_GAP (64u << 10)
#define SG_LAYER_REPLAY_GAP (4u << 10)
struct sg_error;               /* daemon/core/error.h */

struct sg_layer_config {
	const char *cache_dir;        /* created if missing; required */
	bool skip_verify;             /* chunks without digests are served (explicit opt-out) */
	bool prefetch;                /* fetch the prioritized region at start */
	bool background_fetch;        /* then fetch everything else */
	size_t mem_cache_bytes;       /* 0 = 32 MiB; a chunk leaves once all of it was read */
	/* Shared with other layers' memory caches (fs/memcache.h); NULL: none. */
	struct sg_mem_budget *mem_budget;
	size_t max_batch_bytes;       /* compressed bytes per range request; 0 = 4 MiB */
	unsigned readahead_chunks;    /* extra chunks of a file read sequentially; 0 = 4 */
	size_t window_bytes;          /* blob bytes of following files taken along with an
				       * on-demand fetch; 0 = 256 KiB */
	uint64_t prefetch_bytes;      /* without a landmark, prefetch the blob's first bytes */
	/* Background fetch starts this long after the mount (and after prefetch); 0 = 100 ms,
	 * and 2 s on a link above 25 MB/s, whose batches would take the loop's time while the
	 * container starts (fs/layer_prefetch.c).  It yields to on-demand reads and its bytes
	 * in flight are bounded by the link's cap (fs/layer_prefetch.h). */
	uint64_t background_delay_ns;
	/* Called (from the loop) for each chunk whose bytes did not match its digest: fs/ does
	 * not log, its owner does.  path is the file's path in the layer. */
	void (*on_bad_chunk)(void *userdata, const char *path, uint64_t file_offset, bool from_cache);
	void *userdata;
	/* The process's disk-cache bound (fs/cache_bound.h), shared with other layers;
	 * cache_dir must then be a child of its root.  NULL = unbounded.  With a bound, every
	 * chunk use is stamped, writes that find no room are skipped (the read is served from
	 * memory), the least recently used chunks may be evicted (holes punched, bits cleared;
	 * never a chunk with a load, fetch or write in flight), and background fetch only runs
	 * while the rest of the layer fits under the watermark. */
	struct sg_cache_bound *bound;
	/* Speculation by locality: on an on-demand miss in a file, fetch the files after it in
	 * its directory and in the blob, up to a budget that grows while those bytes get read
	 * and shrinks while they do not (fs/layer_spec.h).  Off unless set. */
	bool speculate;
	size_t spec_budget_max;       /* the budget's upper bound; 0 = 16 MiB */
	/* The fetch trace (fs/fetch_trace.h), shared with other layers; NULL = off.
	 * trace_layer names the layer in it (its digest; copied). */
	struct sg_fetch_trace *trace;
	const char *trace_layer;
	/* The blob's digest, which a recorded profile names with its TOC tail (fs/profile.h):
	 * read by sg_layer_new only; NULL = not named. */
	const struct sg_digest *blob_digest;
	/* Learned startup profiles (fs/profile.h).  With on_profile set, the layer records the
	 * order in which its chunks are first read, by any user: from sg_layer_start, and again
	 * from each new user on, until the workload goes quiet (profile_quiet_ns without a new
	 * chunk; 0 = 5 s).  It hands the recording (all of it; new_chunks of it not handed
	 * before) to on_profile then, and at sg_layer_close if chunks came since; the owner
	 * stores it (fs/profile_store.h).  From the loop, or from inside sg_layer_close. */
	void (*on_profile)(void *userdata, const struct sg_profile *recorded, uint64_t new_chunks);
	uint64_t profile_quiet_ns;
	uint64_t replay_budget_bytes; /* sg_layer_replay's bound per layer; 0 = 256 MiB */
	/* The replay of a profile has asked for its last chunk (or given up: the budget, a
	 * failed fetch) and those requests have ended: the owner may let go of what it fetched
	 * for it in advance (daemon/early_source.h).  From the loop, at most once per
	 * sg_layer_replay that had chunks to fetch (not once the layer is closing).  NULL:
	 * nobody is told. */
	void (*on_replay_over)(void *userdata);

	/* ---- Speculation across an image's layers (fs/layer_spec.h) ---- */
	/* An ELF file in use here needs a file this layer does not have: its interpreter,
	 * /etc/ld.so.cache, or a library.  Called from the loop with its path (absolute) or,
	 * for a library, its plain file name, so that the owner asks the image's other layers
	 * (sg_layer_speculate_path).  userdata is the one above.  NULL: this layer only. */
	void (*on_needed_elsewhere)(void *userdata, const char *path);
	/* Process `pid` reads the start of a file here (sg_layer_read's reader, never 0): the
	 * owner may look at what it runs (daemon/proc_hint.h) and ask for what it will read
	 * next.  Called from the loop before the read starts.  NULL: nobody looks. */
	void (*on_reader)(void *userdata, uint32_t pid);
};

struct sg_layer_stats {
	uint64_t fetched_bytes;       /* compressed bytes read from the blob */
	uint64_t fetch_requests;
	uint64_t peek_requests;       /* a large program's first bytes read ahead of its chunk */
	uint64_t chunks_fetched;
	uint64_t chunks_from_disk;
	uint64_t chunks_from_memory;
	uint64_t chunks_checked;      /* read back from disk and verified for passthrough */
	uint64_t chunks_present;      /* in the disk cache now */
	uint64_t chunks_total;
	uint64_t verify_failures;
	uint64_t cache_bytes;         /* disk bytes accounted to this layer (fs/cache_bound.h) */
	uint64_t chunks_evicted;      /* from the disk cache, to stay under the bound */
	uint64_t evicted_bytes;
	uint64_t cache_writes_skipped;/* no room: served from memory without caching */
	bool prefetch_done;
	bool background_done;
	bool background_skipped;      /* the rest of the layer did not fit the cache bound */
	bool background_running;      /* started (after its delay) and not over */
	/* What the metrics endpoint shows (stargz-snapshotter's operation types, see
	 * daemon/remote.c).  On demand = for a reader, as opposed to prefetch and background. */
	uint64_t reads;               /* sg_layer_read answered with data (read_on_demand) */
	uint64_t read_bytes;          /* bytes those reads returned (on_demand_bytes_served) */
	uint64_t ondemand_fetches;    /* range requests for a reader */
	uint64_t ondemand_fetched_bytes;
	uint64_t prefetched_bytes;    /* compressed bytes fetched by prefetch */
	uint64_t streamed_bytes;      /* compressed bytes fetched by streaming the layer */
	bool stream_started;          /* the layer streamed: read in full, or the link is fast */
	uint64_t prefetch_ns;         /* from sg_layer_start until prefetch was done; 0 before */
	uint64_t background_ns;       /* from its first batch until background fetch was done */
	/* Compressed bytes of chunks fetched with no reader waiting (prefetch, background,
	 * read-ahead and the fetch window), and of those a reader later asked for: a read
	 * through the daemon, or an open the kernel then serves itself (passthrough). */
	uint64_t speculative_bytes, speculative_used_bytes;
	/* The same account by why chunks were fetched (fs/fetch_trace.h's kinds): compressed
	 * bytes of the chunks fetched, and of those the bytes of chunks a reader read or
	 * opened (once per chunk fetch, whenever it came).  demanded_bytes: chunks that had a
	 * reader waiting when they arrived.  The speculative_* above are derived from these:
	 * fetched - demanded, used - demanded. */
	uint64_t kind_fetched_bytes[SG_FETCH_KINDS];
	uint64_t kind_used_bytes[SG_FETCH_KINDS];
	uint64_t demanded_bytes;
	uint64_t spec_budget_bytes;   /* speculation's budget per miss now */
	uint64_t ahead_inflight_bytes;/* speculative bytes in flight now */
	/* Learned startup profiles: chunks recorded (this mount's session and before); the
	 * replay's chunks and compressed bytes left to fetch when it began. */
	uint64_t profile_chunks;
	uint64_t replay_chunks, replay_bytes;
	bool replay_done;             /* every request of the replay went out */
	struct sg_hist read_us;       /* each sg_layer_read until its answer, microseconds */
	struct sg_hist fetch_ms;      /* each range request until its answer, milliseconds */
};

/* Takes ownership of src and toc (also on failure).  Starts no work: a layer that fails to
 * be mounted can be freed at once.  One layer serves every mount of its digest (they share
 * the cache directory, so they must share what is known about it). */
int sg_layer_new(struct sg_loop *loop, struct sg_range_source *src, struct sg_toc *toc,
		 const struct sg_layer_config *config, struct sg_layer **ret_layer);
/* Starts prefetch and background fetch (as configured); reads work without it. */
void sg_layer_start(struct sg_layer *layer);
/* Cancels everything in flight; cb(op) runs from the loop (op->res 0) once nothing
 * references the layer, then sg_layer_free() releases it.  Every user must have been closed
 * first: closing a layer with users, or freeing one with work in flight, aborts the
 * process.  -EBUSY: op is in flight, -EALREADY: closed before (nothing done either way). */
int sg_layer_close(struct sg_layer *layer, struct sg_op *op, sg_op_cb cb);
void sg_layer_free(struct sg_layer *layer);

/* What sg_layer_replay will fetch: of the profile's chunks, those not local yet. */
struct sg_layer_replay_info {
	uint64_t chunks;              /* in the profile */
	uint64_t fetch_chunks;        /* to fetch (not local, within the budget) */
	uint64_t fetch_bytes;         /* their compressed bytes */
};
/* Replays a learned startup profile (fs/profile.h): the chunks it names that are not local
 * are fetched in its order, as range requests of the kind "profile" that merge the chunks
 * of a recorded range (and, from a source that reads several ranges at once, carry runs
 * far apart as the spans of one request), several in flight up to the link's cap plus
 * what it carries in a round trip.  They go out before prefetch and background fetch; on-demand fetches go out
 * at once beside them, and a chunk a reader fetched first is skipped.  Up to
 * replay_budget_bytes.  A profile is a hint: nothing it says can make a read fail or serve
 * other bytes.  Before or after sg_layer_start (it begins with the start).  A profile given
 * to a layer that replays one already (another image's workload on a shared layer) joins
 * that replay: the union is replayed, the new profile's order first, the chunks fetched
 * meanwhile passed over, within what is left of the budget; *ret then counts the union.
 * Takes ownership of prof (also on failure).  0 with *ret (may be NULL) filled, or -EINVAL
 * (another TOC digest or chunk count: not this layer's; err says so), -EALREADY (the replay
 * names every chunk of it already), -ECANCELED (closing). */
int sg_layer_replay(struct sg_layer *layer, struct sg_profile *prof,
		    struct sg_layer_replay_info *ret, struct sg_error *err);

/* A user of the layer: one mount of it.  Reads and trust checks belong to a user, so that
 * one mount can leave (its pending reads complete with -ECANCELED) while the others keep
 * the layer, its memory and disk cache, its fetches and its pins. */
struct sg_layer_user;
int sg_layer_user_new(struct sg_layer *layer, struct sg_layer_user **ret);
/* Cancels the user's reads and trust checks (each callback still runs once, with
 * -ECANCELED unless its result was already decided); once none is owed the user is freed
 * (possibly before this returns: do not touch it again) and cb(op) runs from the loop
 * (op->res 0), after theirs.  Pins are the caller's to drop (sg_layer_pin_file).  -EBUSY:
 * op is in flight, -EALREADY: closing already (nothing done either way). */
int sg_layer_user_close(struct sg_layer_user *user, struct sg_op *op, sg_op_cb cb);
/* The user's own way to the blob (its image's registry; the layer's source is that of the
 * first mount): its on-demand fetches go there, so that one registry hanging does not
 * stall another image's reads.  Takes ownership of src. */
void sg_layer_user_set_source(struct sg_layer_user *user, struct sg_range_source *src);

const struct sg_toc *sg_layer_toc(const struct sg_layer *layer);
void sg_layer_stats(const struct sg_layer *layer, struct sg_layer_stats *ret);

/* Reads bytes [offset, offset+len) of regular file `node` (a TOC node id; hardlinks are
 * resolved) into buf; len is at most INT32_MAX (the count is an op's result).  cb(op) runs
 * once from the loop with op->res the byte count (short only at the end of the file) or a
 * negative errno: -EIO when the data cannot be fetched or fails verification, -ECANCELED
 * when the user or the layer closes first.  buf and op must stay valid until then.
 * `reader` names the reading process (its pid, 0 when unknown): a reader that just saw a
 * chunk fail gets EIO at once for a short while when it asks again, while other readers get
 * a fetch of their own.  A negative errno: nothing started, no callback. */
int sg_layer_read(struct sg_layer_user *user, uint32_t reader, uint32_t node, uint64_t offset,
		  size_t len, void *buf, struct sg_op *op, sg_op_cb cb);

/* ---- Speculation across an image's layers ---- */
/* Another layer's ELF file needs `path` (on_needed_elsewhere's): if this layer has it, its
 * first chunk is fetched ahead (kind spec, within this layer's speculation budget and the
 * link's room for bytes fetched ahead) unless it is here or on its way already.  A path
 * with a '/' is resolved from the layer's root, a plain name in the library directories;
 * symlinks are followed inside this layer's TOC.  0: the layer has the file; -ENOENT: it
 * does not; -ECANCELED: speculation is off or the layer is closing. */
int sg_layer_speculate_path(struct sg_layer *layer, const char *path);
/* What a process's command line names (daemon/proc_hint.h: the headers a compiler's
 * sources include): the first chunk of each of paths[i]
 * (from the root) this layer has as a regular file, unless found[i] is set already (a
 * higher layer has it); found[i] is set for those.  All go to the queue together, in the
 * order named, followed, as precise picks that go out gathered: a request of up to 16
 * spans and 256 KiB takes the first named, wherever they are in the blob.  Returns how many this layer has,
 * or -ECANCELED: speculation is off, the layer closes or replays a profile. */
int sg_layer_speculate_paths(struct sg_layer *layer, const char *const *paths, size_t n,
			     bool *found);
/* The image's entry program at `path` (daemon/image_entry.h: named by the image config,
 * before the container starts), if this layer has it as an executable regular file
 * (symlinks inside the layer followed): fetched ahead as a program about to run — its first
 * chunk at the front of the queue whatever its size, the rest if it is at most 8 MiB, and
 * its libraries picked when that chunk arrives (sg_layer_spec_contents), here or, through
 * on_needed_elsewhere, in the image's other layers.  Nothing for a layer that replays a
 * profile (it recorded the start) or brings the file anyway.  0: the layer has it;
 * -ENOENT: it does not (try the next candidate or layer); -ECANCELED: speculation is off
 * or the layer is closing. */
int sg_layer_speculate_program(struct sg_layer *layer, const char *path);

#endif
