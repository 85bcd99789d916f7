/* A range source whose reads complete when the test says so (header-only, static): shared by
 * the tests that need to hold requests in flight (tests/unit/fs/test_layer_prefetch.c,
 * test_layer_profile.c, tests/unit/daemon/test_deferred_source.c).
 *
 * Reads queue in q[] (oldest first) until gate_complete answers one, with the bytes of `blob`
 * or an error; `automatic` answers each at once (from the loop).  A gate made vectored also
 * takes sg_range_readv: one queued request with its spans (q[i].n_spans > 0; offset = the
 * first span's, len = their sum), each span filled from blob.  Destroying a gate with a read
 * still queued aborts: its owner (a layer) must have had every answer first.  With a link
 * meter, a gate tells it what it owes as net/blob.c does: a read's bytes as it is queued,
 * repaid as they "arrive" (gate_arrive) or when it is answered. */
#ifndef STARGZD_TESTS_GATE_SOURCE_H
#define STARGZD_TESTS_GATE_SOURCE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "tests/unit/test.h"

#define GATE_QUEUE 256

struct gate_read {
	struct sg_op *op;
	sg_op_cb cb;
	uint64_t offset;                /* the first span's */
	size_t len;                     /* all spans' */
	size_t owed;                    /* not arrived yet (in the link meter's owed) */
	/* 0: a plain read, into spans[0].buf; else the spans of a vectored one */
	size_t n_spans;
	unsigned flags;                 /* SG_RANGE_* of a vectored read */
	struct sg_range_span spans[SG_RANGE_SPANS_MAX];
};

struct gate {
	struct sg_range_source base;
	const uint8_t *blob;            /* what reads return */
	bool automatic;                 /* complete each read at once (from the loop) */
	struct gate_read q[GATE_QUEUE]; /* pending, oldest first */
	size_t n;
	unsigned issued;                /* requests, plain or vectored */
	unsigned issued_vectored;
	size_t most_spans;              /* of a vectored request */
	uint64_t asked_bytes;           /* every request's, gaps read along included */
	uint64_t pending_bytes;
	bool *destroyed;                /* set when the layer frees it */
	/* A cancel is only noted (counted); the read still waits for gate_complete, as a
	 * registry request whose cancel is on its way does. */
	bool defer_cancel;
	unsigned cancels;
};

static inline void gate_complete(struct gate *g, size_t i, int res)
{
	struct gate_read *r = &g->q[i];
	struct sg_op *op = r->op;
	sg_op_cb cb = r->cb;

	if (res > 0 && r->n_spans == 0)
		memcpy(r->spans[0].buf, g->blob + r->offset, r->len);
	for (size_t s = 0; res > 0 && s < r->n_spans; s++)
		memcpy(r->spans[s].buf, g->blob + r->spans[s].offset, r->spans[s].len);
	g->pending_bytes -= r->len;
	if (g->base.link)
		sg_link_meter_repay(g->base.link, r->owed);
	memmove(&g->q[i], &g->q[i + 1], (g->n - i - 1) * sizeof(g->q[0]));
	g->n--;
	CHECK_EQ(sg_post(g->base.loop, op, res, cb), 0);
}

/* n bytes of q[i] arrived (it is still in flight). */
static inline void gate_arrive(struct gate *g, size_t i, size_t n)
{
	struct gate_read *r = &g->q[i];

	if (n > r->owed)
		n = r->owed;
	r->owed -= n;
	if (g->base.link)
		sg_link_meter_repay(g->base.link, n);
}

/* A read of len bytes goes out: the link owes them. */
static inline void gate_owe(struct gate *g, struct gate_read *r)
{
	r->owed = r->len;
	g->pending_bytes += r->len;
	if (g->base.link)
		sg_link_meter_owe(g->base.link, r->len);
}

static inline struct gate_read *gate_queue(struct gate *g, struct sg_op *op, sg_op_cb cb)
{
	CHECK(g->n < GATE_QUEUE);
	struct gate_read *r = &g->q[g->n++];
	*r = (struct gate_read){ .op = op, .cb = cb };
	g->issued++;
	return r;
}

static inline int gate_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
			    struct sg_op *op, sg_op_cb cb)
{
	struct gate *g = (struct gate *)src;
	struct gate_read *r = gate_queue(g, op, cb);

	r->offset = offset;
	r->len = len;
	r->spans[0].buf = buf;
	g->asked_bytes += len;
	gate_owe(g, r);
	if (g->automatic)
		gate_complete(g, g->n - 1, (int)len);
	return 0;
}

static inline int gate_readv(struct sg_range_source *src, const struct sg_range_span *spans,
			     size_t n, unsigned flags, struct sg_op *op, sg_op_cb cb)
{
	struct gate *g = (struct gate *)src;

	if (n == 1) {
		/* One span comes here only for its flags: a plain read still. */
		int r = gate_read(src, spans[0].offset, spans[0].len, spans[0].buf, op, cb);
		if (r == 0 && !g->automatic)
			g->q[g->n - 1].flags = flags;
		return r;
	}
	struct gate_read *r = gate_queue(g, op, cb);

	r->flags = flags;
	g->issued_vectored++;
	if (n > g->most_spans)
		g->most_spans = n;
	r->offset = spans[0].offset;
	r->n_spans = n;
	memcpy(r->spans, spans, n * sizeof(*spans));
	for (size_t s = 0; s < n; s++)
		r->len += spans[s].len;
	g->asked_bytes += r->len;
	gate_owe(g, r);
	if (g->automatic)
		gate_complete(g, g->n - 1, (int)r->len);
	return 0;
}

static inline int gate_cancel(struct sg_range_source *src, struct sg_op *op)
{
	struct gate *g = (struct gate *)src;

	for (size_t i = 0; i < g->n; i++)
		if (g->q[i].op == op) {
			g->cancels++;
			if (!g->defer_cancel)
				gate_complete(g, i, -ECANCELED);
			return 0;
		}
	return -EALREADY;
}

static inline void gate_destroy(struct sg_range_source *src)
{
	struct gate *g = (struct gate *)src;

	/* The layer frees its source last: nothing may still be in flight in it. */
	if (g->n)
		abort();
	if (g->destroyed)
		*g->destroyed = true;
	free(g);
}

static const struct sg_range_source_ops gate_ops = {
	.read = gate_read,
	.cancel = gate_cancel,
	.destroy = gate_destroy,
};

static const struct sg_range_source_ops gate_vectored_ops = {
	.read = gate_read,
	.readv = gate_readv,
	.cancel = gate_cancel,
	.destroy = gate_destroy,
};

/* The whole of the file at path, for a gate to serve (malloc'd; *ret_len bytes). */
static inline uint8_t *gate_load_blob(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	CHECK(f);
	fseek(f, 0, SEEK_END);
	size_t len = (size_t)ftell(f);
	rewind(f);
	uint8_t *bytes = malloc(len ? len : 1);
	CHECK(bytes && fread(bytes, 1, len, f) == len);
	fclose(f);
	*ret_len = len;
	return bytes;
}

/* A gate over blob (blob_len bytes, kept by the caller) on loop, its reads fed to `link`
 * (NULL: not measured). */
static inline struct gate *gate_new(struct sg_loop *loop, struct sg_link_meter *link,
				    const uint8_t *blob, size_t blob_len, bool vectored)
{
	struct gate *g = calloc(1, sizeof(*g));

	CHECK(g);
	g->base = (struct sg_range_source){ .ops = vectored ? &gate_vectored_ops : &gate_ops,
					    .loop = loop, .size = blob_len, .link = link };
	g->blob = blob;
	return g;
}

#endif
