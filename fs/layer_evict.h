/* The layer's side of the disk cache bound (fs/cache_bound.h), a part of the layer object
 * (fs/layer_int.h):
 *
 *  - every use of a chunk (memory, disk, fetch) stamps it with the bound's clock;
 *  - asked by the bound, the layer gives up its least recently used chunks: the bit first
 *    (cleared on disk too), then a hole punched over the bytes.  Never a chunk with a job
 *    in flight (a load, fetch or write), nor one of a pinned file: the kernel reads a
 *    passthrough file directly and would read the hole.
 *
 * Without a bound (sg_layer_config.bound NULL) stamps are not kept and nothing is evicted,
 * but a chunk found bad on disk is still dropped the same way. */
#ifndef STARGZD_FS_LAYER_EVICT_H
#define STARGZD_FS_LAYER_EVICT_H

#include <stdint.h>

struct sg_layer;

/* With a bound: allocates the stamps and accounts the chunks present (as used long ago: the
 * first to go unless read).  Nothing to do without one. */
int sg_layer_evict_attach(struct sg_layer *l);
/* Gives the layer's account back to the bound (its directory becomes idle) and frees the
 * stamps. */
void sg_layer_evict_detach(struct sg_layer *l);
/* The chunk was used now. */
void sg_layer_evict_touch(struct sg_layer *l, uint32_t chunk);
/* Forgets a chunk of the disk cache (bits, then a hole over its bytes, taking the blocks it
 * shares with a neighbour only when that neighbour is absent).  Returns the bytes accounted
 * for the chunk when its space was given back, 0 otherwise. */
uint64_t sg_layer_evict_drop(struct sg_layer *l, uint32_t chunk);

#endif
