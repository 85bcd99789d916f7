/* A blob range source that starts reading a startup profile's first chunks before the
 * layer's TOC is known.
 *
 * A replay (fs/layer_profile.h) names chunks, which only the TOC places in the blob, so it
 * used to start once the TOC had come: a round trip and the TOC's transfer after the
 * Prepare, with the link idle meanwhile.  A profile also carries the blob spans of its first
 * chunks ("head", fs/profile.h), so the layer's blob can be read there at once, beside the
 * TOC: sg_early_start sends those spans as a few vectored reads through a source for the
 * blob that needs no open (net/blob.h, sg_registry_blob_unsized), as the open of the blob
 * goes out, and keeps what comes.  Once the blob is open, sg_early_attach makes the object a
 * range source wrapping the blob's own: a read is cut into the pieces that were read early,
 * copied from there, and the rest, read from the blob in one request, with one completion.  A
 * read fetching ahead (SG_RANGE_AHEAD: the replay's) waits for early pieces still on their
 * way; any other (a reader's, the TOC's) takes only what has arrived, since the early read it
 * would wait for may be slowed for the readers.
 *
 * Nothing is trusted more for it: a read answered from here gets the very bytes of the same
 * blob at the same offsets that the registry would send it, and the layer verifies them
 * against the TOC's chunk digests as it does every fetched chunk.  A wrong head only wastes
 * what it made us fetch, bounded by max_bytes.  A span whose early read failed is read from
 * the blob instead.
 *
 * Memory: what was read early is freed once every byte of it was handed out, or at
 * sg_early_source_drop (the replay is over: what it did not take will not be asked for
 * soon), and at the latest with the source. */
#ifndef STARGZD_EARLY_SOURCE_H
#define STARGZD_EARLY_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/profile.h"

struct sg_range_source;
struct sg_early;

/* Early reads go out as requests of at most this many bytes (a span larger than that is cut),
 * and SG_EARLY_SPANS spans. */
#define SG_EARLY_REQUEST_MAX ((uint64_t)1 << 20)
#define SG_EARLY_SPANS 16u

/* Starts reading spans through `via` (owned from now on, also on error: a source of the
 * blob, usually unsized), in the order given up to max_bytes, with the read flags `flags`
 * (SG_RANGE_*).  Spans up to join_gap apart are read as one, the bytes between them along,
 * as the layer's replay will ask for them (fs/layer.h, SG_LAYER_REPLAY_GAP), so that its
 * requests fall inside them.  With no span to read, *ret is NULL (via freed).  Returns 0,
 * or -ENOMEM. */
int sg_early_start(struct sg_range_source *via, const struct sg_profile_span *spans, size_t n,
		   uint64_t max_bytes, uint64_t join_gap, unsigned flags, struct sg_early **ret);
/* The blob is open: e becomes the range source returned, which wraps `real` (owned from now
 * on) and is freed as any source (with the reads of its own still in flight, when they end). */
struct sg_range_source *sg_early_attach(struct sg_early *e, struct sg_range_source *real);
/* The open failed, or the layer went before it: e is given up (freed once its reads end). */
void sg_early_abandon(struct sg_early *e);

/* Is src a source sg_early_attach returned? */
bool sg_early_source_is(const struct sg_range_source *src);

struct sg_early_stats {
	uint64_t asked;     /* bytes read early (asked of the blob) */
	uint64_t arrived;   /* of them, arrived */
	uint64_t used;      /* handed out to reads */
	unsigned requests;
};
/* src must be an early source. */
void sg_early_source_stats(const struct sg_range_source *src, struct sg_early_stats *ret);
/* Frees what was read early and not handed out, and what arrives from now on unless a read
 * waits for it.  src must be an early source. */
void sg_early_source_drop(struct sg_range_source *src);

#endif
