/* A range source: "read N bytes at offset" of one blob, completing on the loop.
 *
 * The seam between fs/ and net/, so it lives in the core both may include: the same TOC and
 * chunk code (fs/) runs on a local file (below) and on a registry blob (net/registry.h);
 * daemon/ hands one to the other, and fs/ and net/ never include each other.  The object
 * starts with its ops pointer, in the BearSSL manner.
 *
 * Contract of read: on 0 the op is on its way and `cb` runs exactly once from the loop with
 * op->res = bytes read or a negative errno; fewer than len means the blob is shorter than
 * its size said, which callers treat as -EIO.  On a negative errno
 * nothing was submitted and no callback runs.  buf and op stay the caller's and must remain
 * valid until the callback.  cancel asks an in-flight read to finish early with
 * -ECANCELED (it still completes once).
 *
 * readv (optional, NULL = not offered) reads several spans of the blob in one go: a registry
 * sends them in one request (multipart/byteranges), so far-apart ranges cost one round trip
 * instead of one each.  The same contract as read, for the whole: one completion, op->res =
 * the bytes of all spans or a negative errno (never a partial count that looks whole), each
 * span's bytes in its own buffer, cancel through the same op.  Its flags (SG_RANGE_*) say
 * what the read is for; a source may ignore them. */
#ifndef STARGZD_CORE_RANGE_SOURCE_H
#define STARGZD_CORE_RANGE_SOURCE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"

struct sg_range_source;

/* Spans in one sg_range_readv at most (a registry takes them in one request). */
#define SG_RANGE_SPANS_MAX 64

/* The read fetches ahead of readers (speculation, prefetch, replay, background): a registry
 * source lets it yield the link to the readers' own fetches (net/blob.c). */
#define SG_RANGE_AHEAD 1u
/* ... and is speculation (fs/layer_spec.h), counted apart on the link. */
#define SG_RANGE_SPEC 2u

/* One span of a vectored read: [offset, offset + len) of the blob into buf. */
struct sg_range_span {
	uint64_t offset;
	size_t len;
	void *buf;
};

struct sg_range_source_ops {
	int (*read)(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
		    struct sg_op *op, sg_op_cb cb);
	int (*readv)(struct sg_range_source *src, const struct sg_range_span *spans, size_t n,
		     unsigned flags, struct sg_op *op, sg_op_cb cb);
	int (*cancel)(struct sg_range_source *src, struct sg_op *op);
	void (*destroy)(struct sg_range_source *src);
};

struct sg_link_meter;

struct sg_range_source {
	const struct sg_range_source_ops *ops;
	struct sg_loop *loop;     /* where completions run */
	uint64_t size;            /* blob size in bytes */
	/* What the way to the blob carries (daemon/core/link_meter.h), owned by whoever owns
	 * the link (a registry host) and fed by the source's reads; NULL = not measured (a
	 * local file). */
	struct sg_link_meter *link;
};

static inline int sg_range_read(struct sg_range_source *src, uint64_t offset, size_t len,
				void *buf, struct sg_op *op, sg_op_cb cb)
{
	if (!src || !op || !cb || (len && !buf))
		return -EINVAL;
	if (offset > src->size || len > src->size - offset)
		return -ERANGE;
	return src->ops->read(src, offset, len, buf, op, cb);
}

/* Does src read several spans in one request?  Else a caller asks for them one by one. */
static inline bool sg_range_source_vectored(const struct sg_range_source *src)
{
	return src && src->ops->readv;
}

/* Reads n spans (each inside the blob, 1 <= n <= SG_RANGE_SPANS_MAX, all of them at most
 * INT32_MAX bytes): one span is a plain read; several need a source that is vectored, else
 * -EOPNOTSUPP and nothing starts (the caller reads them one by one).  flags: SG_RANGE_*; a
 * source that is vectored gets them for one span too. */
static inline int sg_range_readv_flags(struct sg_range_source *src,
				       const struct sg_range_span *spans, size_t n, unsigned flags,
				       struct sg_op *op, sg_op_cb cb)
{
	uint64_t total = 0;

	if (!src || !op || !cb || !spans || n == 0 || n > SG_RANGE_SPANS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (spans[i].len && !spans[i].buf)
			return -EINVAL;
		if (spans[i].offset > src->size || spans[i].len > src->size - spans[i].offset)
			return -ERANGE;
		total += spans[i].len;
	}
	if (total > INT32_MAX)
		return -EINVAL;   /* op->res could not carry it */
	if (n == 1 && (flags == 0 || !src->ops->readv))
		return src->ops->read(src, spans[0].offset, spans[0].len, spans[0].buf, op, cb);
	if (!src->ops->readv)
		return -EOPNOTSUPP;
	return src->ops->readv(src, spans, n, flags, op, cb);
}

static inline int sg_range_readv(struct sg_range_source *src, const struct sg_range_span *spans,
				 size_t n, struct sg_op *op, sg_op_cb cb)
{
	return sg_range_readv_flags(src, spans, n, 0, op, cb);
}

static inline int sg_range_cancel(struct sg_range_source *src, struct sg_op *op)
{
	return src->ops->cancel(src, op);
}

static inline void sg_range_source_free(struct sg_range_source *src)
{
	if (src)
		src->ops->destroy(src);
}

/* A local file (a downloaded blob, a test fixture).  The fd is duplicated: the caller keeps
 * its own.  Reads go through sg_read on the loop.  Not vectored: a range costs no round trip
 * here, so its callers read spans one by one. */
int sg_range_source_file_new(struct sg_loop *loop, int fd, struct sg_range_source **ret_src);
int sg_range_source_file_open(struct sg_loop *loop, const char *path,
			      struct sg_range_source **ret_src);

#endif
