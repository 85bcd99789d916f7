/* A blob range source that reaches the registry only when a read needs it.
 *
 * A layer taken over after a restart is rebuilt from disk (its TOC copy and chunk bitmap),
 * so it can serve cached data with the registry unreachable; its blob is opened (resolve,
 * authenticate, learn the size) on the first read that misses the cache.  If that open
 * fails, the reads waiting for it fail with -EIO (after the registry client's own
 * timeouts and attempts) and the next read tries again: the layer recovers by itself once
 * the registry is back.  A blob whose size is not the one recorded at the first mount is
 * refused (-EIO): it is not the same blob.  It offers vectored reads (sg_range_readv), since
 * the blob it opens is a registry's: one waiting for the open goes to the blob once open,
 * and fails with -EOPNOTSUPP then if that blob reads one range at a time. */
#ifndef STARGZD_DEFERRED_SOURCE_H
#define STARGZD_DEFERRED_SOURCE_H

#include <stdint.h>

#include "daemon/remote.h"

struct sg_loop;
struct sg_range_source;

/* size: the blob's, as recorded; ref and digest are copied.  Nothing starts until a read. */
int sg_deferred_source_new(struct sg_loop *loop, uint64_t size, const struct sg_blob_opener *opener,
			   const char *ref, const char *digest, struct sg_range_source **ret);

#endif
