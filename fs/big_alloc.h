/* Large buffers for the TOC index and the decompressed TOC: anonymous mappings with
 * transparent huge pages.
 *
 * Why not malloc: on these VMs the first touch of a 4 KiB page costs several microseconds,
 * so filling 40 MB of fresh malloc'd memory took ~120 ms, which alone was most of the TOC
 * load budget; with MADV_HUGEPAGE the same fill takes ~4 ms.  Growing by mremap also never
 * copies.  Sizes are rounded up to pages; callers keep the size they asked for and pass it
 * back on realloc/free.  Memory comes back zeroed. */
#ifndef STARGZD_FS_BIG_ALLOC_H
#define STARGZD_FS_BIG_ALLOC_H

#include <stddef.h>

/* p NULL allocates; returns NULL on failure (p is then untouched). */
void *sg_big_realloc(void *p, size_t old_size, size_t new_size);
void sg_big_free(void *p, size_t size);
/* Bytes actually mapped for a request of `size`. */
size_t sg_big_size(size_t size);

#endif
