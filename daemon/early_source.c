#include "daemon/early_source.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/list.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"

enum req_state { REQ_INFLIGHT, REQ_DONE, REQ_FAILED };

/* One early read of the blob: up to SG_EARLY_SPANS regions. */
struct early_req {
	struct sg_early *e;
	struct sg_op op;
	enum req_state state;
	size_t n_spans;
	uint64_t bytes;
	struct sg_range_span spans[SG_EARLY_SPANS];
};

/* One span read early, into buf; regions are sorted by offset and do not overlap. */
struct region {
	uint64_t offset;
	size_t len;
	uint8_t *buf;        /* NULL once freed (handed out in full, dropped, or failed) */
	size_t handed;       /* bytes of it handed out */
	struct early_req *req;
};

/* A read through the source: its pieces that lie in what was read early are copied from
 * there (once it is here), the rest is read from the blob (one vectored read at a time). */
enum piece_state { P_EARLY, P_BLOB, P_SENT, P_DONE };

struct piece {
	uint64_t offset;
	size_t len;
	uint8_t *buf;                   /* in the caller's buffer */
	enum piece_state state;
};

struct xread {
	struct sg_list link;            /* e->reads */
	struct sg_early *e;
	struct sg_op *op;               /* the caller's */
	sg_op_cb cb;
	unsigned flags;
	size_t total;
	int res;                        /* the first error; 0 */
	bool fwd_busy;                  /* fwd_op is the blob's */
	struct sg_op fwd_op;
	struct sg_range_span fwd[SG_RANGE_SPANS_MAX];
	size_t n_pieces;
	struct piece pieces[];
};

struct sg_early {
	struct sg_range_source base;
	struct sg_range_source *via;     /* where the early reads go */
	struct sg_range_source *real;    /* the blob, opened (NULL until attached) */
	struct early_req *reqs;
	size_t n_reqs;
	struct region *regions;
	size_t n_regions;
	unsigned inflight;
	struct sg_list reads;            /* struct xread */
	bool dropped;
	bool gone;           /* destroyed with reads of its own in flight: the last frees */
	struct sg_early_stats stats;
};

static const struct sg_range_source_ops early_ops;

static void region_free(struct region *g)
{
	free(g->buf);
	g->buf = NULL;
}

/* The first region that ends after offset (binary search), or n_regions. */
static size_t region_after(const struct sg_early *e, uint64_t offset)
{
	size_t lo = 0, hi = e->n_regions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e->regions[mid].offset + e->regions[mid].len <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Can a read take the region: its bytes are here, or on their way and the read may wait for
 * them.  A reader's read (and the TOC's) never waits for an early read: it takes what has
 * arrived and reads the rest itself, as a reader's fetch.  Early reads once yielded the link
 * to readers (net/blob.c), and a reader waiting on one waited behind its own yield (before
 * net/pool.c's window floor, on loopback, for a zero-window probe's back-off: a remount's TOC
 * read, whose range the early read's last chunk reached, waited more than 10 s). */
static bool usable(const struct region *g, bool may_wait)
{
	return g->buf && (g->req->state == REQ_DONE || (may_wait && g->req->state == REQ_INFLIGHT));
}

/* The region a read may take holding byte `at`, or NULL. */
static struct region *region_at(struct sg_early *e, uint64_t at, bool may_wait)
{
	size_t i = region_after(e, at);

	if (i < e->n_regions && e->regions[i].offset <= at && usable(&e->regions[i], may_wait))
		return &e->regions[i];
	return NULL;
}

/* Where the next region a read may take after `at` starts (UINT64_MAX: none). */
static uint64_t next_usable(const struct sg_early *e, uint64_t at, bool may_wait)
{
	for (size_t i = region_after(e, at); i < e->n_regions; i++)
		if (usable(&e->regions[i], may_wait))
			return e->regions[i].offset;
	return UINT64_MAX;
}

/* Cuts [offset, offset + len) into pieces at the regions' edges: ones that a usable region
 * holds (P_EARLY) and ones it does not (P_BLOB).  Writes them to out when not NULL; returns
 * how many. */
static size_t cut(struct sg_early *e, uint64_t offset, size_t len, uint8_t *buf, bool may_wait,
		  struct piece *out)
{
	uint64_t at = offset, end = offset + len;
	size_t k = 0;

	while (at < end) {
		struct region *g = region_at(e, at, may_wait);
		uint64_t stop = g ? g->offset + g->len : next_usable(e, at, may_wait);
		if (stop > end)
			stop = end;
		if (out)
			out[k] = (struct piece){ at, (size_t)(stop - at), buf + (at - offset),
						 g ? P_EARLY : P_BLOB };
		k++;
		at = stop;
	}
	return k;
}

/* Copies an early piece out of its region, if it is here: a region handed out in full is
 * freed.  One that is gone (failed, dropped) leaves the piece to the blob. */
static void piece_from_region(struct sg_early *e, struct piece *pc)
{
	struct region *g = region_at(e, pc->offset, true);

	if (!g || g->offset + g->len < pc->offset + pc->len) {
		pc->state = P_BLOB;
		return;
	}
	if (g->req->state != REQ_DONE)
		return;   /* on its way */
	memcpy(pc->buf, g->buf + (pc->offset - g->offset), pc->len);
	g->handed += pc->len;
	e->stats.used += pc->len;
	if (g->handed >= g->len)
		region_free(g);
	pc->state = P_DONE;
}

static void xread_fwd_done(struct sg_op *op);

/* Moves a read on: copies what arrived, sends what the blob must give, and answers it once
 * nothing is missing (one completion, with the bytes of all its spans or its first error). */
static void xread_step(struct xread *x)
{
	struct sg_early *e = x->e;
	bool waiting = false;
	size_t n_fwd = 0;

	for (size_t i = 0; i < x->n_pieces; i++) {
		struct piece *pc = &x->pieces[i];
		if (pc->state == P_EARLY && x->res == 0)
			piece_from_region(e, pc);
		if (pc->state == P_EARLY && x->res < 0)
			pc->state = P_DONE;   /* failed or cancelled: nothing more is wanted */
		if (pc->state == P_EARLY)
			waiting = true;
		if (pc->state == P_BLOB && x->res < 0)
			pc->state = P_DONE;
	}
	if (x->fwd_busy)
		return;
	for (size_t i = 0; i < x->n_pieces && n_fwd < SG_RANGE_SPANS_MAX; i++) {
		struct piece *pc = &x->pieces[i];
		if (pc->state != P_BLOB)
			continue;
		x->fwd[n_fwd++] = (struct sg_range_span){ pc->offset, pc->len, pc->buf };
		pc->state = P_SENT;
	}
	if (n_fwd > 0) {
		sg_op_init(&x->fwd_op);
		int r = sg_range_readv_flags(e->real, x->fwd, n_fwd, x->flags, &x->fwd_op,
					     xread_fwd_done);
		if (r == 0) {
			x->fwd_busy = true;
			return;
		}
		x->res = r;
		for (size_t i = 0; i < x->n_pieces; i++)
			if (x->pieces[i].state != P_DONE)
				x->pieces[i].state = P_DONE;
		waiting = false;
	}
	if (waiting)
		return;
	sg_list_unlink(&x->link);
	/* Cannot fail but while draining, when the op is cancelled anyway. */
	(void)sg_post(e->base.loop, x->op, x->res < 0 ? x->res : (int)x->total, x->cb);
	free(x);
}

static void xread_fwd_done(struct sg_op *op)
{
	struct xread *x = sg_container_of(op, struct xread, fwd_op);
	size_t asked = 0;

	x->fwd_busy = false;
	for (size_t i = 0; i < x->n_pieces; i++)
		if (x->pieces[i].state == P_SENT) {
			asked += x->pieces[i].len;
			x->pieces[i].state = P_DONE;
		}
	if (x->res == 0 && op->res < 0)
		x->res = op->res;
	else if (x->res == 0 && (size_t)op->res != asked)
		x->res = -EIO;   /* the blob is shorter than its size said */
	xread_step(x);
}

static void steps(struct sg_early *e)
{
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &e->reads)
		xread_step(sg_container_of(n, struct xread, link));
}

static void free_all(struct sg_early *e)
{
	for (size_t i = 0; i < e->n_regions; i++)
		region_free(&e->regions[i]);
	sg_range_source_free(e->via);
	sg_range_source_free(e->real);
	free(e->regions);
	free(e->reqs);
	free(e);
}

static void drop_done(struct sg_early *e)
{
	for (size_t i = 0; i < e->n_regions; i++)
		if (e->regions[i].req->state != REQ_INFLIGHT)
			region_free(&e->regions[i]);
}

static void req_done(struct sg_op *op)
{
	struct early_req *q = sg_container_of(op, struct early_req, op);
	struct sg_early *e = q->e;

	e->inflight--;
	q->state = op->res >= 0 && (uint64_t)op->res == q->bytes ? REQ_DONE : REQ_FAILED;
	if (q->state == REQ_DONE)
		e->stats.arrived += q->bytes;
	if (e->gone) {
		if (e->inflight == 0)
			free_all(e);
		return;
	}
	if (q->state == REQ_FAILED) {
		sg_debug("an early read of %zu span(s), %llu bytes, failed (%s); those bytes are "
			 "read from the blob", q->n_spans, (unsigned long long)q->bytes,
			 op->res < 0 ? strerror((int)-op->res) : "short");
		for (size_t i = 0; i < e->n_regions; i++)
			if (e->regions[i].req == q)
				region_free(&e->regions[i]);
	}
	steps(e);
	if (e->dropped)
		drop_done(e);
}

static int early_readv(struct sg_range_source *src, const struct sg_range_span *spans, size_t n,
		       unsigned flags, struct sg_op *op, sg_op_cb cb)
{
	struct sg_early *e = (struct sg_early *)src;
	size_t n_pieces = 0, early = 0, total = 0;
	bool may_wait = (flags & SG_RANGE_AHEAD) != 0;

	for (size_t i = 0; i < n; i++)
		n_pieces += cut(e, spans[i].offset, spans[i].len, NULL, may_wait, NULL);
	struct xread *x = malloc(sizeof(*x) + n_pieces * sizeof(x->pieces[0]));
	if (!x)
		return -ENOMEM;
	x->n_pieces = 0;
	for (size_t i = 0; i < n; i++) {
		x->n_pieces += cut(e, spans[i].offset, spans[i].len, spans[i].buf, may_wait,
				   &x->pieces[x->n_pieces]);
		total += spans[i].len;
	}
	for (size_t i = 0; i < x->n_pieces; i++)
		early += x->pieces[i].state == P_EARLY;
	if (early == 0) {
		/* Nothing of it was read early (the common case once the replay is over). */
		free(x);
		return sg_range_readv_flags(e->real, spans, n, flags, op, cb);
	}
	x->e = e;
	x->op = op;
	x->cb = cb;
	x->flags = flags;
	x->total = total;
	x->res = 0;
	x->fwd_busy = false;
	sg_op_init(&x->fwd_op);
	sg_list_insert_tail(&e->reads, &x->link);
	xread_step(x);   /* answers (posted) or sends or waits: accepted either way */
	return 0;
}

static int early_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
		      struct sg_op *op, sg_op_cb cb)
{
	struct sg_range_span s = { offset, len, buf };

	return early_readv(src, &s, 1, 0, op, cb);
}

static int early_cancel(struct sg_range_source *src, struct sg_op *op)
{
	struct sg_early *e = (struct sg_early *)src;
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &e->reads) {
		struct xread *x = sg_container_of(n, struct xread, link);
		if (x->op != op)
			continue;
		if (x->res == 0)
			x->res = -ECANCELED;
		if (x->fwd_busy)
			(void)sg_range_cancel(e->real, &x->fwd_op);   /* its end answers */
		else
			xread_step(x);
		return 0;
	}
	return sg_range_cancel(e->real, op);
}

/* Frees e now, or (its reads cancelled) when the last of them ended. */
static void give_up(struct sg_early *e)
{
	if (e->inflight == 0) {
		free_all(e);
		return;
	}
	e->gone = true;
	for (size_t i = 0; i < e->n_reqs; i++)
		if (e->reqs[i].state == REQ_INFLIGHT)
			(void)sg_range_cancel(e->via, &e->reqs[i].op);
}

static void early_destroy(struct sg_range_source *src)
{
	struct sg_early *e = (struct sg_early *)src;

	/* Its owner (a layer) has no read in flight when it frees its source. */
	SG_FREE_CHECK(!sg_list_empty(&e->reads), "early blob source");
	give_up(e);
}

void sg_early_abandon(struct sg_early *e)
{
	if (e)
		give_up(e);
}

struct sg_range_source *sg_early_attach(struct sg_early *e, struct sg_range_source *real)
{
	e->real = real;
	e->base.size = real->size;
	e->base.link = real->link;
	e->base.loop = real->loop;
	return &e->base;
}

static const struct sg_range_source_ops early_ops = {
	.read = early_read,
	.readv = early_readv,
	.cancel = early_cancel,
	.destroy = early_destroy,
};

bool sg_early_source_is(const struct sg_range_source *src)
{
	return src && src->ops == &early_ops;
}

void sg_early_source_stats(const struct sg_range_source *src, struct sg_early_stats *ret)
{
	*ret = ((const struct sg_early *)src)->stats;
}

void sg_early_source_drop(struct sg_range_source *src)
{
	struct sg_early *e = (struct sg_early *)src;

	e->dropped = true;
	drop_done(e);
}

static int cmp_span(const void *a, const void *b)
{
	uint64_t x = ((const struct sg_profile_span *)a)->offset;
	uint64_t y = ((const struct sg_profile_span *)b)->offset;
	return x < y ? -1 : x > y;
}

/* The spans to read: cut to the blob and to max_bytes in the order given, then in blob order
 * with those up to join_gap apart joined.  Returns how many are left in out (room for n). */
static size_t plan_spans(const struct sg_range_source *via, const struct sg_profile_span *spans,
			 size_t n, uint64_t max_bytes, uint64_t join_gap,
			 struct sg_profile_span *out)
{
	uint64_t bytes = 0;
	size_t k = 0;

	for (size_t i = 0; i < n && bytes < max_bytes; i++) {
		struct sg_profile_span s = spans[i];
		if (s.end > via->size)
			s.end = via->size;
		if (s.end <= s.offset)
			continue;
		if (s.end - s.offset > max_bytes - bytes)
			s.end = s.offset + (max_bytes - bytes);
		bytes += s.end - s.offset;
		out[k++] = s;
	}
	qsort(out, k, sizeof(*out), cmp_span);
	size_t m = 0;
	for (size_t i = 0; i < k; i++) {
		if (m > 0 && out[i].offset <= out[m - 1].end + join_gap) {
			if (out[i].end > out[m - 1].end)
				out[m - 1].end = out[i].end;
			continue;
		}
		out[m++] = out[i];
	}
	return m;
}

/* Cuts the planned spans into requests of at most SG_EARLY_REQUEST_MAX bytes and spans_max
 * spans, one region per span of a request.  Counts them into *ret_reqs and *ret_regions;
 * with e, also fills e's requests and regions (room for the counts) and allocates the regions'
 * buffers (false when out of memory). */
static bool lay_out(const struct sg_profile_span *s, size_t n, size_t spans_max,
		    struct sg_early *e, size_t *ret_reqs, size_t *ret_regions)
{
	size_t reqs = 0, regions = 0, in_req = 0;
	uint64_t room = 0;

	for (size_t i = 0; i < n; i++)
		for (uint64_t at = s[i].offset; at < s[i].end;) {
			if (reqs == 0 || in_req == spans_max || room == 0) {
				reqs++;
				in_req = 0;
				room = SG_EARLY_REQUEST_MAX;
			}
			uint64_t len = s[i].end - at < room ? s[i].end - at : room;
			if (e) {
				struct early_req *q = &e->reqs[reqs - 1];
				struct region *g = &e->regions[regions];
				q->e = e;
				*g = (struct region){ .offset = at, .len = (size_t)len, .req = q };
				e->n_reqs = reqs;
				e->n_regions = regions + 1;
				if (!(g->buf = malloc((size_t)len)))
					return false;
				q->spans[q->n_spans++] = (struct sg_range_span){ at, (size_t)len,
										 g->buf };
				q->bytes += len;
			}
			regions++;
			in_req++;
			room -= len;
			at += len;
		}
	*ret_reqs = reqs;
	*ret_regions = regions;
	return true;
}

int sg_early_start(struct sg_range_source *via, const struct sg_profile_span *spans, size_t n,
		   uint64_t max_bytes, uint64_t join_gap, unsigned flags, struct sg_early **ret)
{
	struct sg_profile_span *plan = n ? malloc(n * sizeof(*plan)) : NULL;
	struct sg_early *e = NULL;
	size_t spans_max = sg_range_source_vectored(via) ? SG_EARLY_SPANS : 1;

	*ret = NULL;
	if (n && !plan)
		goto nomem;
	size_t m = plan_spans(via, spans, n, max_bytes, join_gap, plan);
	if (m == 0) {
		free(plan);
		sg_range_source_free(via);
		return 0;
	}
	size_t n_reqs, n_regions;
	(void)lay_out(plan, m, spans_max, NULL, &n_reqs, &n_regions);
	e = calloc(1, sizeof(*e));
	if (!e)
		goto nomem;
	e->via = via;   /* free_all frees it from here on */
	if (!(e->reqs = calloc(n_reqs, sizeof(*e->reqs))) ||
	    !(e->regions = calloc(n_regions, sizeof(*e->regions))) ||
	    !lay_out(plan, m, spans_max, e, &n_reqs, &n_regions))
		goto nomem;
	e->base.ops = &early_ops;
	e->base.loop = via->loop;
	e->base.link = via->link;
	sg_list_init(&e->reads);
	free(plan);
	plan = NULL;
	for (size_t i = 0; i < e->n_reqs; i++) {
		struct early_req *r = &e->reqs[i];
		sg_op_init(&r->op);
		int res = sg_range_readv_flags(via, r->spans, r->n_spans, flags, &r->op, req_done);
		if (res < 0) {
			r->state = REQ_FAILED;   /* its spans are read from the blob when asked */
			continue;
		}
		r->state = REQ_INFLIGHT;
		e->inflight++;
		e->stats.requests++;
		e->stats.asked += r->bytes;
	}
	for (size_t i = 0; i < e->n_regions; i++)
		if (e->regions[i].req->state == REQ_FAILED)
			region_free(&e->regions[i]);
	*ret = e;
	return 0;
nomem:
	free(plan);
	if (e)
		free_all(e);
	else
		sg_range_source_free(via);
	return -ENOMEM;
}
