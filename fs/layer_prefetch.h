/* Prefetch and background fetch, a part of the layer object (fs/layer_int.h): they fill the
 * disk cache so that the layer becomes fully local.
 *
 *  - Prefetch: the prioritized region before `.prefetch.landmark` (or, in an image without
 *    landmarks, the blob's first prefetch_bytes), two range requests back to back from the
 *    start: those files are wanted now.
 *  - Background fetch: the rest of the layer, one batch at a time, starting
 *    background_delay_ns after the mount and after prefetch, yielding to on-demand reads
 *    and to a workload busy reading, and only while the rest of the layer fits under the
 *    cache bound's watermark.
 *
 * Both are speculative: a batch that finds the memory budget full waits and looks again. */
#ifndef STARGZD_FS_LAYER_PREFETCH_H
#define STARGZD_FS_LAYER_PREFETCH_H

struct sg_layer;

/* Decides, at sg_layer_new, what prefetch and background fetch will do. */
void sg_layer_prefetch_init(struct sg_layer *l);
/* Starts the next batches if there is work and room for them: at sg_layer_start and
 * whenever a fetch batch ended. */
void sg_layer_prefetch_continue(struct sg_layer *l);

#endif
