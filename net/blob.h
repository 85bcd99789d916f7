/* Registry blobs as range sources (daemon/core/range_source.h): the blob a layer's chunks are
 * read from, one range request at a time or several in one.
 *
 * Opening resolves a blob to its size: a HEAD through the reference's endpoints (following
 * redirects), or a bytes=0-0 GET when a registry leaves Content-Length out; an endpoint that
 * fails hands over to the next.  Reads go to the endpoint that answered.
 *
 * Range reads: a 206 must carry a Content-Range that covers the request and names the blob's
 * size, and exactly as many body bytes as it announces; anything else is -EIO, so a wrong byte
 * never reaches the caller.  A 200 to a range request (a server that ignores Range) is
 * accepted: the body is the whole blob, so the client skips to the offset, copies the
 * requested bytes and then closes the connection instead of reading the rest.  Several
 * ranges in one request: a multipart/byteranges 206 is split by part; a registry that answers
 * 400/416, the whole blob as 200, or only the first range is remembered (per host, in
 * net/pool.h's sg_host_stats) and the missing ranges are fetched one request each, from then
 * on directly.
 *
 * Opening and reading are continuations in the loop's shape (daemon/core/loop.h).  Errors
 * are negative errno values with a message (daemon/core/error.h).  Nothing here logs.
 */
#ifndef STARGZD_NET_BLOB_H
#define STARGZD_NET_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"

/* ranges in one sg_registry_read_ranges call: as many as a vectored read takes */
#define SG_REGISTRY_RANGES_MAX SG_RANGE_SPANS_MAX

/* Resolves the blob `digest` of the repository named by `ref` (an image reference; its tag or
 * digest is ignored) to a range source.  `registry` is a struct sg_registry (void, so that
 * daemon/remote.h's sg_blob_opener takes this function as it is).  cb(op) runs once from the
 * loop: op->res 0 with *ret_src (free with sg_range_source_free), or a negative errno with
 * err (may be NULL) saying why.  Returns 0, or -EINVAL / -EBUSY / -ECANCELED / -ENOMEM at
 * once (then cb never runs); a malformed reference or digest is reported through cb.  No
 * cancel: sg_registry_shutdown ends an open with -ECANCELED. */
int sg_registry_open_blob(void *registry, const char *ref, const char *digest,
			  struct sg_range_source **ret_src, struct sg_error *err,
			  struct sg_op *op, sg_op_cb cb);

/* The same, for a blob whose end is read first (an eStargz layer: its footer and TOC): one
 * GET for its last `tail` bytes (0: SG_REGISTRY_OPEN_TAIL; at most SG_REGISTRY_OPEN_TAIL_MAX)
 * (Range: bytes=-N, whose Content-Range gives the size) instead of a HEAD, and the source then serves a read inside that tail from memory,
 * once (the tail is dropped when a read took all of it).  A round trip less per layer.  A
 * registry that refuses a suffix range (400, 416, 501) is asked the HEAD way; one that
 * ignores Range gives the size from its 200 (the body is kept when no bigger than the tail). */
#define SG_REGISTRY_OPEN_TAIL ((size_t)512 << 10)
#define SG_REGISTRY_OPEN_TAIL_MAX ((size_t)64 << 20)
int sg_registry_open_blob_tail(void *registry, const char *ref, const char *digest, size_t tail,
			       struct sg_range_source **ret_src, struct sg_error *err,
			       struct sg_op *op, sg_op_cb cb);
/* A source for the blob that is not opened: no request learns its size (base.size is
 * UINT64_MAX, and no Content-Range is checked against it) and its reads go to the first
 * endpoint of its domain that serves pulls, at once.  For reads that must not wait for the
 * blob's open (daemon/early_source.h: a startup profile's first chunks, asked for beside the
 * TOC); a range past the blob's end fails its read, and so does a registry that ignores
 * Range (rather than send the whole blob).  Returns 0 with *ret_src, or a negative errno
 * with err (may be NULL) saying why; nothing is sent until a read. */
int sg_registry_blob_unsized(void *registry, const char *ref, const char *digest,
			     struct sg_range_source **ret_src, struct sg_error *err);
/* Several ranges of a registry blob source in one request when the host allows it.  Each
 * range lands in its own buffer; the op completes once with the total byte count or a
 * negative errno (as sg_range_read), err (may be NULL) saying why.  Ranges must lie inside
 * the blob; at most SG_REGISTRY_RANGES_MAX.  sg_range_cancel(src, op) cancels it like a
 * read.  The source's readv (sg_range_readv) is this call without err.
 *
 * A range is the core's span (daemon/core/range_source.h), under the name net's callers
 * know: one type, so that a span list passes through unchanged. */
#define sg_registry_range sg_range_span
int sg_registry_read_ranges(struct sg_range_source *src, const struct sg_registry_range *ranges,
			    size_t n, struct sg_error *err, struct sg_op *op, sg_op_cb cb);
/* True if src came from sg_registry_open_blob. */
bool sg_registry_is_source(const struct sg_range_source *src);

#endif
