#include "daemon/deferred_source.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/list.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"

/* A read that waits for the blob to be opened: one span, or n_spans of a vectored read. */
struct waiting_read {
	struct sg_list link;
	uint64_t offset;
	size_t len;
	void *buf;
	struct sg_op *op;
	sg_op_cb cb;
	size_t n_spans;                 /* 0: a plain read */
	unsigned flags;                 /* a vectored read's */
	struct sg_range_span spans[];
};

struct deferred {
	struct sg_range_source base;
	struct sg_blob_opener opener;
	char ref[512];
	char digest[96];
	struct sg_range_source *real;   /* once opened */
	struct sg_list waiting;         /* struct waiting_read */
	bool opening;
	bool gone;                      /* destroyed while opening: the open's callback frees */
	struct sg_op open_op;
	struct sg_range_source *opened;
	struct sg_error open_err;
};

static void fail_waiting(struct deferred *d, int res)
{
	struct sg_list *n;

	while ((n = sg_list_pop(&d->waiting))) {
		struct waiting_read *w = sg_container_of(n, struct waiting_read, link);
		/* Cannot fail but while draining, when the op is cancelled anyway. */
		(void)sg_post(d->base.loop, w->op, res, w->cb);
		free(w);
	}
}

static void on_opened(struct sg_op *op)
{
	struct deferred *d = sg_container_of(op, struct deferred, open_op);
	struct sg_range_source *src = op->res == 0 ? d->opened : NULL;
	struct sg_list *n;

	d->opened = NULL;
	d->opening = false;
	if (d->gone) {
		sg_range_source_free(src);
		free(d);
		return;
	}
	if (src && src->size != d->base.size) {
		sg_warn("layer %s: the registry's blob has %llu bytes, %llu were recorded; not "
			"reading it", d->digest, (unsigned long long)src->size,
			(unsigned long long)d->base.size);
		sg_range_source_free(src);
		src = NULL;
	}
	if (!src) {
		sg_warn("layer %s: cannot reach its blob (%s); reads of uncached data fail until "
			"it can", d->digest, d->open_err.msg[0] ? d->open_err.msg : strerror(-op->res));
		fail_waiting(d, -EIO);
		return;
	}
	d->real = src;
	d->base.link = src->link;   /* the registry host's link, now that there is one */
	while ((n = sg_list_pop(&d->waiting))) {
		struct waiting_read *w = sg_container_of(n, struct waiting_read, link);
		int r = w->n_spans ? sg_range_readv_flags(d->real, w->spans, w->n_spans, w->flags,
							  w->op, w->cb)
				   : sg_range_read(d->real, w->offset, w->len, w->buf, w->op, w->cb);
		if (r < 0)
			(void)sg_post(d->base.loop, w->op, r, w->cb);
		free(w);
	}
}

/* Queues w until the blob is open, starting the open if none is under way. */
static int wait_for_open(struct deferred *d, struct waiting_read *w)
{
	if (!d->opening) {
		d->open_err = (struct sg_error){ 0 };
		sg_op_init(&d->open_op);
		int r = d->opener.open(d->opener.ctx, d->ref, d->digest, &d->opened, &d->open_err,
				       &d->open_op, on_opened);
		if (r < 0) {
			free(w);
			return r;
		}
		d->opening = true;
	}
	sg_list_insert_tail(&d->waiting, &w->link);
	return 0;
}

static int deferred_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
			 struct sg_op *op, sg_op_cb cb)
{
	struct deferred *d = (struct deferred *)src;

	if (d->real)
		return sg_range_read(d->real, offset, len, buf, op, cb);
	struct waiting_read *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct waiting_read){ .offset = offset, .len = len, .buf = buf, .op = op, .cb = cb };
	return wait_for_open(d, w);
}

/* Vectored, since the blob it opens is (a registry's): before the open it cannot know, so a
 * blob that is not fails the read once open (-EOPNOTSUPP, as sg_range_readv would). */
static int deferred_readv(struct sg_range_source *src, const struct sg_range_span *spans,
			  size_t n, unsigned flags, struct sg_op *op, sg_op_cb cb)
{
	struct deferred *d = (struct deferred *)src;

	if (d->real)
		return sg_range_readv_flags(d->real, spans, n, flags, op, cb);
	struct waiting_read *w = calloc(1, sizeof(*w) + n * sizeof(w->spans[0]));
	if (!w)
		return -ENOMEM;
	w->op = op;
	w->cb = cb;
	w->n_spans = n;
	w->flags = flags;
	memcpy(w->spans, spans, n * sizeof(*spans));
	return wait_for_open(d, w);
}

static int deferred_cancel(struct sg_range_source *src, struct sg_op *op)
{
	struct deferred *d = (struct deferred *)src;
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &d->waiting) {
		struct waiting_read *w = sg_container_of(n, struct waiting_read, link);
		if (w->op != op)
			continue;
		sg_list_unlink(&w->link);
		(void)sg_post(d->base.loop, w->op, -ECANCELED, w->cb);
		free(w);
		return 0;
	}
	return d->real ? sg_range_cancel(d->real, op) : -ENOENT;
}

static void deferred_destroy(struct sg_range_source *src)
{
	struct deferred *d = (struct deferred *)src;

	/* Its owner (a layer) has no read in flight when it frees its source. */
	SG_FREE_CHECK(!sg_list_empty(&d->waiting), "deferred blob source");
	sg_range_source_free(d->real);
	d->real = NULL;
	if (d->opening) {
		d->gone = true;   /* on_opened frees it */
		return;
	}
	free(d);
}

static const struct sg_range_source_ops deferred_ops = {
	.read = deferred_read,
	.readv = deferred_readv,
	.cancel = deferred_cancel,
	.destroy = deferred_destroy,
};

int sg_deferred_source_new(struct sg_loop *loop, uint64_t size, const struct sg_blob_opener *opener,
			   const char *ref, const char *digest, struct sg_range_source **ret)
{
	struct deferred *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->base.ops = &deferred_ops;
	d->base.loop = loop;
	d->base.size = size;
	d->opener = *opener;
	snprintf(d->ref, sizeof(d->ref), "%s", ref);
	snprintf(d->digest, sizeof(d->digest), "%s", digest);
	sg_list_init(&d->waiting);
	sg_op_init(&d->open_op);
	*ret = &d->base;
	return 0;
}
