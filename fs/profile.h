/* Learned startup profiles: the order in which a layer's chunks are first read after a mount,
 * as ranges of chunk indices, keyed by the layer's TOC digest (issue #14).
 *
 * A chunk index is the layer's global chunk numbering (fs/layer.c): chunk i is the i-th
 * chunk entry in TOC order, node->first_chunk + c.  A profile names nothing else (no paths,
 * no offsets), so it is small, and it can only match the layer whose TOC it was recorded
 * on: same TOC digest, same chunks.
 *
 * One object is both the recorder and the parsed form:
 *  - recording: sg_profile_new, then sg_profile_note for every chunk a reader needs, with
 *    the time; the first read of a chunk is kept (a bitmap dedupes), consecutive chunks
 *    merge into one range.  Recording stops by itself when the workload goes quiet (no new
 *    chunk for quiet_ns after the last one) or when the range cap is reached.  A second
 *    recording of the same layer (another container, another mount) merges into the
 *    stored one with sg_profile_merge: a union that keeps the first-seen order;
 *  - replay: sg_profile_ranges gives the ranges in recorded order, each chunk once, every
 *    index below the chunk count (sg_profile_fit drops what a layer does not have);
 *    sg_profile_plan turns them into range requests of a bounded size within a byte budget;
 *  - times: each range keeps when its first chunk was first read, in ms since the epoch of
 *    the recording (sg_profile_set_epoch; by default the session's first note).  The owner
 *    gives every layer fetched over one link the same epoch, so a replay can order several
 *    layers' chunks by when the workload needed them (fs/layer_prefetch.c);
 *  - the format (README "Startup profiles"): one JSON document per layer,
 *      {"schemaVersion":1,"toc":"sha256:..","layer":"sha256:..","tocTail":N,
 *       "chunkCount":N,"chunks":[[first,last],...],"ms":[t,...],"head":[[offset,end],...]}
 *    where "ms" is optional (a profile without it has no times: every range at 0) and, when
 *    given, has one entry per range of "chunks"; "layer" and "tocTail" (the blob's bytes
 *    from the TOC's start to its end: what a mount fetches first) are optional too, and so
 *    is "head" (sg_profile_set_head: the blob spans of the first chunks, [offset,end));
 *    and the bundle that an artifact carries, {"schemaVersion":1,"profiles":[doc,...]}.
 *    The parser is a yajl state machine with no DOM, bounded (SG_PROFILE_JSON_MAX bytes,
 *    SG_PROFILE_RANGES_MAX ranges, SG_PROFILE_BUNDLE_MAX layers) and fuzzed
 *    (tests/fuzz/profile).  Ranges given by another producer may overlap or repeat: the
 *    first mention of a chunk wins, later ones are dropped.
 *
 * Pure: no I/O, no clock, nothing logs.  Errors are negative errno values with a message
 * (daemon/core/error.h).  The store on disk is fs/profile_store.h. */
#ifndef STARGZD_FS_PROFILE_H
#define STARGZD_FS_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"
#include "daemon/core/error.h"

/* Media types of the artifact (README "Startup profiles"). */
#define SG_PROFILE_ARTIFACT_TYPE "application/vnd.stargzd.profile.v1+json"
#define SG_PROFILE_BLOB_TYPE     "application/vnd.stargzd.profile.v1+json"

#define SG_PROFILE_SCHEMA_VERSION 1
#define SG_PROFILE_JSON_MAX      (1u << 20)    /* a document or bundle; refused above */
#define SG_PROFILE_RANGES_MAX    32768u        /* per layer: 24 bytes of JSON at most each */
#define SG_PROFILE_BUNDLE_MAX    128u          /* layers in one bundle */
#define SG_PROFILE_CHUNKS_MAX    (1u << 26)    /* chunk count of a layer (an 8 MiB bitmap) */
#define SG_PROFILE_TOC_TAIL_MAX  ((uint64_t)64 << 20)  /* "tocTail" above: refused */
/* "head": the blob's bytes of the first chunks in recorded order, at most this many spans
 * and bytes (a longer one is refused; a recorder stops there). */
#define SG_PROFILE_HEAD_MAX      64u
#define SG_PROFILE_HEAD_BYTES    ((uint64_t)4 << 20)
#define SG_PROFILE_QUIET_NS      (5ull * 1000000000ull)   /* default quiet time */

struct sg_profile_range {
	uint32_t first, last;   /* inclusive */
	uint32_t at_ms;         /* first read of `first`, ms since the recording's epoch (0 when
				 * the profile has no times) */
};

/* A span of the layer blob: bytes [offset, end). */
struct sg_profile_span {
	uint64_t offset, end;
};

struct sg_profile_limits {
	uint64_t quiet_ns;      /* recording ends this long after the last new chunk; 0 =
				 * SG_PROFILE_QUIET_NS, UINT64_MAX = never */
	uint32_t max_ranges;    /* 0 = SG_PROFILE_RANGES_MAX (the most a profile may hold) */
};

struct sg_profile;

/* A new, empty recorder for the layer whose TOC digest is toc and which has n_chunks chunks
 * (1..SG_PROFILE_CHUNKS_MAX).  limits may be NULL.  Returns 0, -EINVAL or -ENOMEM. */
int sg_profile_new(const struct sg_digest *toc, uint32_t n_chunks,
		   const struct sg_profile_limits *limits, struct sg_profile **ret);
/* NULL is fine. */
void sg_profile_free(struct sg_profile *p);

/* The blob digest of the layer (informational: the profile is keyed by the TOC). */
void sg_profile_set_layer(struct sg_profile *p, const struct sg_digest *layer);

enum sg_profile_note_result {
	SG_PROFILE_RECORDED = 1,  /* a chunk read for the first time: recorded */
	SG_PROFILE_KNOWN = 0,     /* already in the profile (or out of range): nothing to do */
	SG_PROFILE_DONE = -1,     /* recording has ended (quiet, or the range cap) */
};
/* A reader needed chunk `chunk` at now_ns (any monotonic clock, the caller's).  A note after
 * quiet_ns without a new chunk ends the recording first (and returns SG_PROFILE_DONE). */
enum sg_profile_note_result sg_profile_note(struct sg_profile *p, uint32_t chunk,
					    uint64_t now_ns);
/* Times of the chunks noted from now on are counted from epoch_ns (the same clock as
 * now_ns); until it is set, from the first note after sg_profile_new or a rearm. */
void sg_profile_set_epoch(struct sg_profile *p, uint64_t epoch_ns);
/* The workload was still busy at now_ns, reading chunks of other layers: the quiet time
 * counts from there at the earliest.  Nothing happens when the recording has ended. */
void sg_profile_touch(struct sg_profile *p, uint64_t now_ns);
/* For the caller's timer: true once the workload went quiet at now_ns (something was
 * recorded and nothing new for quiet_ns), or the cap was reached; ends the recording.  The
 * caller then saves (fs/profile_store.h) and frees or sg_profile_rearm()s. */
bool sg_profile_quiet(struct sg_profile *p, uint64_t now_ns);
/* True while notes are taken. */
bool sg_profile_recording(const struct sg_profile *p);
/* Takes notes again (a new workload on the same mount): new chunks are appended after the
 * ones recorded, unless the cap was reached. */
void sg_profile_rearm(struct sg_profile *p);

/* Appends to dst, in src's order, the chunks of src that dst does not have (the union,
 * first-seen order kept: dst's first, each with its own time).  Same TOC digest and chunk count, or -EINVAL with a
 * message; the cap bounds dst (what does not fit is dropped, sg_profile_truncated says so). */
int sg_profile_merge(struct sg_profile *dst, const struct sg_profile *src, struct sg_error *err);

/* Drops every range past n_chunks, the chunk count of the layer about to use the profile
 * (an entry that names no chunk is ignored).  Returns the chunks kept. */
uint64_t sg_profile_fit(struct sg_profile *p, uint32_t n_chunks);

/* ---- replay ---- */

/* One range request of a replay: chunks [first, last] (consecutive in TOC order, so one span
 * of the blob) at blob bytes [offset, end). */
struct sg_profile_fetch {
	uint32_t first, last;
	uint64_t offset, end;
};
/* The blob bytes of a chunk's gzip member: [*ret_offset, *ret_end); 0, or a negative errno
 * for a chunk the layer cannot name (then skipped).  For fs/layer.c: the chunk
 * sg_toc_chunks(toc, node)[c - node->first_chunk] of node l->chunk_file[c], its offset and
 * next_offset. */
typedef int (*sg_profile_extent_fn)(void *ctx, uint32_t chunk, uint64_t *ret_offset,
				    uint64_t *ret_end);
/* The profile as range requests, in recorded order: each range cut into requests of at most
 * max_request_bytes (0 = no limit; a single larger chunk is a request of its own), stopping
 * once budget_bytes (0 = no limit) have been planned (the request that crosses it is kept).
 * Chunks for which has_chunk (may be NULL) returns true (cached, in flight) are left out and
 * split a request.  Writes at most cap requests to out; returns how many, and the bytes
 * planned in *ret_bytes (may be NULL). */
size_t sg_profile_plan(const struct sg_profile *p, sg_profile_extent_fn extent,
		       bool (*has_chunk)(void *ctx, uint32_t chunk), void *ctx,
		       uint64_t max_request_bytes, uint64_t budget_bytes,
		       struct sg_profile_fetch *out, size_t cap, uint64_t *ret_bytes);

/* The layer blob's size minus its TOC's offset: how much of the blob's end holds the TOC
 * and footer, so that the next mount fetches that much and no more (the default guess is
 * 512 KiB).  0 = unknown; a value above SG_PROFILE_TOC_TAIL_MAX is taken as unknown. */
void sg_profile_set_toc_tail(struct sg_profile *p, uint64_t toc_tail);
/* The blob spans of the profile's first chunks, in recorded order ("head"): what a mount may
 * fetch before its TOC is known (daemon/early_source.h), since the ranges name chunks that
 * only the TOC places.  A hint like the rest: whatever is fetched with it is verified
 * against the TOC's chunk digests before it is used.  At most SG_PROFILE_HEAD_MAX spans and
 * SG_PROFILE_HEAD_BYTES bytes are kept (the rest dropped); an empty span or one with end <
 * offset is dropped. */
void sg_profile_set_head(struct sg_profile *p, const struct sg_profile_span *spans, size_t n);
/* The head's spans (may be 0). */
size_t sg_profile_head(const struct sg_profile *p, const struct sg_profile_span **ret);
/* ---- queries ---- */
const struct sg_digest *sg_profile_toc(const struct sg_profile *p);
/* NULL when unknown. */
const struct sg_digest *sg_profile_layer(const struct sg_profile *p);
uint32_t sg_profile_chunk_count(const struct sg_profile *p);
/* 0 when unknown. */
uint64_t sg_profile_toc_tail(const struct sg_profile *p);
/* The ranges in recorded order; each chunk appears once. */
size_t sg_profile_ranges(const struct sg_profile *p, const struct sg_profile_range **ret);
/* The ranges carry recorded times (a profile parsed without "ms" has none). */
bool sg_profile_has_times(const struct sg_profile *p);
/* Chunks in the profile (sum of the ranges). */
uint64_t sg_profile_chunks(const struct sg_profile *p);
/* Chunks were dropped because the range cap was reached. */
bool sg_profile_truncated(const struct sg_profile *p);
/* chunk is in the profile. */
bool sg_profile_has(const struct sg_profile *p, uint32_t chunk);

/* ---- the format ---- */

/* The profile as one JSON document (malloc'ed, NUL-terminated; *ret_len without the NUL).
 * Returns 0 or -ENOMEM. */
int sg_profile_format(const struct sg_profile *p, char **ret, size_t *ret_len);
/* One document (not a bundle).  Returns 0 with *ret, or -E2BIG (above SG_PROFILE_JSON_MAX,
 * too many ranges), -EBADMSG (not JSON), -EINVAL (schema: a missing or wrong field, an
 * index at or past chunkCount, first > last), -ENOTSUP (another schemaVersion), -ENOMEM;
 * err says why. */
int sg_profile_parse(const void *json, size_t len, struct sg_profile **ret, struct sg_error *err);

/* The bundle of an artifact: {"schemaVersion":1,"profiles":[...]}. */
int sg_profile_bundle_format(struct sg_profile *const *ps, size_t n, char **ret, size_t *ret_len);
/* Returns 0 with *ret (an array of *ret_n profiles; free with sg_profile_bundle_free), or the
 * errors of sg_profile_parse; a bundle of two profiles for one TOC digest is -EINVAL. */
int sg_profile_bundle_parse(const void *json, size_t len, struct sg_profile ***ret,
			    size_t *ret_n, struct sg_error *err);
void sg_profile_bundle_free(struct sg_profile **ps, size_t n);

#endif
