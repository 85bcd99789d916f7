/* Fetching chunks from the blob, a part of the layer object (fs/layer_int.h).
 *
 * A fetch batch is one range request for a run of chunks sorted by blob offset: its bytes
 * are split into the chunks' gzip members, each decompressed and verified against its
 * digest, and handed to the chunk's job (sg_layer_job_ready), or the job fails with EIO.
 * From a vectored source (daemon/core/range_source.h) one request may carry several runs
 * far apart, its spans (up to SG_LAYER_BATCH_SPANS), the gaps between them not fetched:
 * every chunk is verified the same, wherever its span.
 * Its buffer and the chunks it will become are charged to the memory budget until then.
 *
 * A chunk whose fetch failed is held (SG_LAYER_FAILED_HOLD_NS) for the readers that waited
 * for it: they get EIO at once when they ask again, others get a fetch of their own. */
#ifndef STARGZD_FS_LAYER_FETCH_H
#define STARGZD_FS_LAYER_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/fetch_trace.h"

struct sg_layer;
struct sg_list;
struct sg_range_source;

/* Neither in memory, nor on disk, nor on its way. */
bool sg_layer_fetch_needed(const struct sg_layer *l, uint32_t chunk);
/* A fetch of `chunk` failed for `reader` a moment ago: answer it EIO without fetching. */
bool sg_layer_fetch_held(const struct sg_layer *l, uint32_t chunk, uint32_t reader);
/* Fetches `chunk` (it needs a fetch) from src in one range request together with what is
 * cheap to take along, and moves `waiters` (struct read_part) onto its job.  An on-demand
 * miss that starts a file also starts speculation (fs/layer_spec.h), after its own fetch.  0, or a
 * negative errno and the waiters stay where they are. */
int sg_layer_fetch_chunk(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk,
			 bool ondemand, struct sg_list *waiters);
/* Starts one range request for the given chunks (sorted by blob offset, all needing a
 * fetch), fetched for `kind`: the stats and the trace count their bytes as that kind, and
 * every kind but on demand waits for room in the memory budget.  Chunks more than
 * sg_layer_batch_gap(src, kind) apart go in spans of their own (sg_layer_span_joins), which
 * only a vectored source takes.  Returns the number of chunks taken, or a negative errno,
 * nothing started: -EAGAIN when a batch fetched ahead of readers finds no memory in the budget,
 * -EOPNOTSUPP for several spans from a source that reads one range at a time, -E2BIG for
 * more than SG_LAYER_BATCH_SPANS. */
int sg_layer_fetch_batch(struct sg_layer *l, struct sg_range_source *src,
			 const uint32_t *chunks, size_t n, enum sg_fetch_kind kind);
/* The layer closes: every range request in flight is asked to end early (each still
 * completes once, with -ECANCELED), so that a registry that stopped answering does not hold
 * the close (an unmount, containerd's Remove) for its timeouts. */
void sg_layer_fetch_cancel_all(struct sg_layer *l);

#endif
