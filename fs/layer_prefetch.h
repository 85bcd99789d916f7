/* Prefetch, background fetch and streaming, a part of the layer object (fs/layer_int.h): they
 * fill the disk cache so that the layer becomes fully local, without delaying on-demand reads.
 *
 *  - Prefetch: the prioritized region before `.prefetch.landmark` (or, in an image without
 *    landmarks, the blob's first prefetch_bytes), two range requests back to back from the
 *    start: those files are wanted now.
 *  - Background fetch: the rest of the layer, starting background_delay_ns after the mount
 *    (and after prefetch), as several range requests in flight up to the link's in-flight
 *    cap (daemon/core/link_meter.h: what the link carries in ~150 ms, so that an on-demand
 *    request never waits behind more than that).  No new request while an on-demand fetch
 *    is in flight, nor for 1 s (or two round trips if longer) after one ended (a chain of
 *    dependent misses comes back quickly), and only while the rest of the layer fits under the cache bound's
 *    watermark.
 *  - Streaming: when the layer is being read in full (reads moving forward in blob order,
 *    file after file: tar -c, cp -r; files already local count too) or, with background fetch on, when the link
 *    carries the rest of the layer in fewer round trips than a cold start chases misses,
 *    the rest streams in big parallel ranges from the reader's position (then from the
 *    start), up to the cap plus a round trip's worth, so that the pipe stays full.  For a
 *    reader that reads it all, it keeps going while that reader's on-demand fetches run
 *    (sent at once, outside the cap: they jump the queue), and a reader that gets ahead of
 *    the stream moves it along; on a fast link it yields to on-demand fetches like
 *    background fetch.
 *  - A large program in use (fs/layer_spec.h): its other chunks, in order, paced so that the
 *    link owes no more than it carries in one and a half round trips, before background
 *    fetch and streaming.
 *
 * All of them are speculative: a batch that finds the memory budget full waits and looks
 * again. */
#ifndef STARGZD_FS_LAYER_PREFETCH_H
#define STARGZD_FS_LAYER_PREFETCH_H

#include <stdint.h>

struct sg_layer;
struct sg_link_meter;

/* Decides, at sg_layer_new, what prefetch and background fetch will do. */
void sg_layer_prefetch_init(struct sg_layer *l);
/* Starts the next batches if there is work and room for them: at sg_layer_start and
 * whenever a fetch batch ended. */
void sg_layer_prefetch_continue(struct sg_layer *l);
/* A request of the replay ended (after batch_free): the owner is told the replay is over
 * once the last one went out and ended (fs/layer.h, on_replay_over). */
void sg_layer_replay_batch_ended(struct sg_layer *l);
/* The link's room for fetching ahead is taken (by this layer or another on the link): the
 * layer waits on the link meter's list, and the next request to end on the link, whichever
 * layer's, lets it look again (sg_layer_room_freed); with no batch of its own in flight, a
 * short timer looks again too (speculation, replay, stream, background fetch). */
void sg_layer_wait_for_room(struct sg_layer *l);
/* A request fetching ahead on link m ended: the layers waiting for room on it look again. */
void sg_layer_room_freed(struct sg_link_meter *m);
/* A large program is in use (fs/layer_spec.h): its chunks [first, end) (one file's, in blob
 * order) go out back to back, paced like the prefetch (the link owes at most what it
 * carries in one and a half round trips), after a replay's and the prioritized files'
 * requests and before background fetch.  One file at a time: a newer one takes over. */
void sg_layer_prefetch_file(struct sg_layer *l, uint32_t first, uint32_t end);
/* A reader asked for `chunk` (a read, or an open handed to the kernel): full-read
 * detection, and the stream's position. */
void sg_layer_prefetch_saw_read(struct sg_layer *l, uint32_t chunk);

#endif
