/* Registry blobs as range sources.  See blob.h.
 *
 * A read is a job; a job is one request for all its ranges (when the host takes several at
 * once) or one request per range, each an exchange (net/exchange.h) whose sink copies the
 * body into the caller's buffers.  A job that ends early (cancelled, failed, its source
 * destroyed) cancels the requests still running and leaves them behind: each frees itself
 * when its exchange completes, and no sink hook runs after the cancel, so no byte lands in a
 * caller's buffer once the job has answered. */
#include "net/blob.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/list.h"
#include "net/endpoints.h"
#include "net/exchange.h"
#include "net/http1_ranges.h"
#include "net/pool.h"
#include "net/reference.h"
#include "net/registry_int.h"
#include "net/url.h"

_Static_assert(SG_REGISTRY_RANGES_MAX <= SG_EXCHANGE_RANGES_MAX, "one request takes all ranges");

struct job;

struct blob {
	struct sg_range_source base;          /* first: the vtable pointer leads */
	struct sg_registry *reg;
	const struct sg_endpoint_set *eps;
	size_t ep;                            /* the endpoint that answered the HEAD */
	char repo[SG_REF_NAME_MAX + 1];
	char digest[SG_REF_DIGEST_MAX + 1];
	char v2path[SG_REF_NAME_MAX * 2 + 64];
	struct sg_list jobs;
	/* opening */
	struct sg_range_source **open_ret;    /* the caller's continuation */
	struct sg_error *open_err;
	struct sg_op *open_op;
	sg_op_cb open_cb;
	struct sg_exchange *ox;               /* the HEAD (or bytes=0-0 probe) in flight */
	struct sg_op ox_op;
	struct sg_error ox_err;
	bool probe;
	bool size_known;
	bool unsized;                         /* sg_registry_blob_unsized: size never known */
	/* Opened with its tail (sg_registry_open_blob_tail): the open is a suffix GET whose
	 * Content-Range gives the size, and the tail it brings serves the first read of it
	 * (the TOC loader's) from memory, instead of a HEAD and then that read: a round trip
	 * less on every lazy pull. */
	size_t tail_max;                      /* 0: open by HEAD */
	bool tail_asked;                      /* the request in flight is the suffix GET */
	bool tail_skip;                       /* a 200 too big to keep: its body is not read */
	uint8_t *tail;
	size_t tail_len, tail_pos;
	uint64_t tail_off;
	bool tail_metering;
	char err[SG_ERROR_MSG_MAX];           /* why the last endpoint failed */
};

/* One request of a job, covering some of its ranges. */
struct preq {
	struct job *j;                        /* NULL once the job has gone without it */
	struct sg_exchange *x;                /* NULL once completed */
	struct sg_op op;                      /* the exchange's completion */
	struct sg_error err;
	size_t idx[SG_REGISTRY_RANGES_MAX];
	size_t n;
	bool multipart, whole;
	uint64_t pos, end;
	struct sg_multipart mp;
	struct sg_link_meter *meter;          /* the blob host's link */
	bool metering;                        /* a body streams: the meter's begin is owed an end */
	uint64_t asked;                       /* bytes of its ranges */
	uint64_t owed;                        /* of those, not arrived yet (in the meter's owed) */
};

struct job {
	struct sg_list link;                  /* blob->jobs */
	struct blob *b;
	struct sg_op *op;                     /* the caller's continuation */
	sg_op_cb cb;
	struct sg_error *err;
	bool ahead;                           /* SG_RANGE_AHEAD: it yields the link to reads */
	bool spec;                            /* SG_RANGE_SPEC */
	struct sg_registry_range r[SG_REGISTRY_RANGES_MAX];
	uint64_t filled[SG_REGISTRY_RANGES_MAX];
	size_t n;
	struct preq *pr[SG_REGISTRY_RANGES_MAX + 1];   /* NULL: left behind */
	size_t npr;
	unsigned pending;
	int res;
};

static const struct sg_range_source_ops blob_ops;

bool sg_registry_is_source(const struct sg_range_source *src)
{
	return src && src->ops == &blob_ops;
}

static struct sg_host *blob_host(struct blob *b)
{
	return b->eps->eps[b->ep].host;
}

/* A request for the blob to the endpoint that answered for it (b->ep). */
static struct sg_exchange_request blob_request(struct blob *b, const char *target,
					       const struct sg_exchange_sink *sink)
{
	const struct sg_endpoint *ep = &b->eps->eps[b->ep];

	return (struct sg_exchange_request){
		.host = ep->host,
		.target = target,
		.ep = ep,
		.repo = b->repo,
		.sink = sink,
	};
}

/* ---- jobs ---- */

/* Cancels a request still running; it frees itself when its exchange completes. */
static void preq_leave(struct preq *pr)
{
	pr->j = NULL;
	(void)sg_exchange_cancel(pr->x);
}

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->npr; i++) {
		if (!j->pr[i])
			continue;
		if (j->pr[i]->x)
			preq_leave(j->pr[i]);
		else
			free(j->pr[i]);
	}
	sg_list_unlink(&j->link);
	free(j);
}

static void job_complete(struct job *j, int res)
{
	struct sg_loop *loop = j->b->base.loop;
	struct sg_op *op = j->op;
	sg_op_cb cb = j->cb;

	job_free(j);
	/* Cannot be lost: the caller's op was idle when the read was accepted and is the job's
	 * until this post (the caller must not resubmit it meanwhile), and posts are accepted
	 * while the loop drains. */
	(void)sg_post(loop, op, res, cb);
}

/* Copies a slice at blob offset `off` into every range of the request it overlaps. */
static void preq_copy(struct preq *pr, uint64_t off, const uint8_t *d, size_t n)
{
	struct job *j = pr->j;

	for (size_t k = 0; k < pr->n; k++) {
		size_t i = pr->idx[k];
		uint64_t ro = j->r[i].offset, re = ro + j->r[i].len;
		uint64_t s = off > ro ? off : ro, e = off + n < re ? off + n : re;
		if (s >= e)
			continue;
		memcpy((uint8_t *)j->r[i].buf + (s - ro), d + (s - off), e - s);
		/* Coverage counts only contiguous progress from the range start, so bytes
		 * arriving out of order are never taken for a complete range. */
		if (s <= ro + j->filled[i] && e - ro > j->filled[i])
			j->filled[i] = e - ro;
	}
}

static bool preq_complete(const struct preq *pr)
{
	for (size_t k = 0; k < pr->n; k++)
		if (pr->j->filled[pr->idx[k]] < pr->j->r[pr->idx[k]].len)
			return false;
	return true;
}

/* What the link owes the request: all its bytes as it goes out (or again when it is
 * retried), fewer as its body arrives, none once it ended. */
static void preq_owe_all(struct preq *pr)
{
	sg_link_meter_owe(pr->meter, pr->asked - pr->owed);
	pr->owed = pr->asked;
}

static void preq_repay(struct preq *pr, uint64_t n)
{
	if (n > pr->owed)
		n = pr->owed;
	sg_link_meter_repay(pr->meter, n);
	pr->owed -= n;
}

/* The body stopped streaming (done, failed, cancelled, or retried). */
static void preq_meter_end(struct preq *pr)
{
	if (pr->metering) {
		sg_link_meter_end(pr->meter, sg_now_ns());
		pr->metering = false;
	}
}

static void preq_reset(void *data)
{
	struct preq *pr = data;

	preq_meter_end(pr);
	preq_owe_all(pr);   /* the retry asks for every byte again */
	for (size_t k = 0; k < pr->n; k++)
		pr->j->filled[pr->idx[k]] = 0;
	pr->multipart = pr->whole = false;
	pr->pos = pr->end = 0;
}

/* Internal: the response was good but left some ranges out (first-range-only servers), or
 * is not worth reading for them (the whole blob to a multi-range request). */
#define PREQ_INCOMPLETE (-EAGAIN)

/* A 200 to a range request: the server ignored Range, this is the whole blob. */
static int preq_head_whole(struct preq *pr, struct sg_exchange *x, const struct sg_http1_parser *p)
{
	struct blob *b = pr->j->b;

	if (b->unsized)
		return sg_exchange_fail(x, -EIO, "200 to a range request of a blob not opened "
					"(the registry ignores Range): not read");
	if (p->framing == SG_HTTP1_BODY_LENGTH && p->content_length != b->base.size)
		return sg_exchange_fail(x, -EIO, "200 with %llu bytes for a blob of %llu",
					(unsigned long long)p->content_length,
					(unsigned long long)b->base.size);
	if (pr->n > 1) {
		/* Far-apart ranges (a replay's) would mean reading the blob up to the last of
		 * them, maybe tens of MB: the connection is dropped and each range asked alone,
		 * as from now on for this host. */
		sg_host_stats(blob_host(b))->multirange = SG_MULTIRANGE_WHOLE;
		return PREQ_INCOMPLETE;
	}
	pr->whole = true;
	pr->pos = 0;
	pr->end = 0;
	for (size_t k = 0; k < pr->n; k++) {
		const struct sg_registry_range *r = &pr->j->r[pr->idx[k]];
		if (r->offset + r->len > pr->end)
			pr->end = r->offset + r->len;
	}
	sg_host_stats(blob_host(b))->ignores_ranges = true;
	return 0;
}

/* A 206 whose body length is announced must carry exactly its Content-Range's bytes. */
static int check_206_length(struct sg_exchange *x, const struct sg_http1_parser *p,
			    const struct sg_http1_range *cr)
{
	if (p->framing == SG_HTTP1_BODY_LENGTH && p->content_length != cr->last - cr->first + 1)
		return sg_exchange_fail(x, -EIO, "206 body of %llu bytes for Content-Range %llu-%llu",
					(unsigned long long)p->content_length,
					(unsigned long long)cr->first, (unsigned long long)cr->last);
	return 0;
}

/* A single-part 206: its Content-Range must name the blob and match the body. */
static int preq_head_single(struct preq *pr, struct sg_exchange *x, const struct sg_http1_parser *p)
{
	struct blob *b = pr->j->b;
	struct sg_http1_range cr;
	const char *v;
	size_t vlen;

	v = sg_http1_header(p, "content-range", &vlen);
	if (!v || sg_http1_parse_content_range(v, vlen, &cr) < 0 || cr.unsatisfied)
		return sg_exchange_fail(x, -EIO, "206 without a usable Content-Range");
	if (cr.total != SG_HTTP1_RANGE_UNKNOWN && !b->unsized && cr.total != b->base.size)
		return sg_exchange_fail(x, -EIO,
					"Content-Range says the blob has %llu bytes, HEAD said %llu",
					(unsigned long long)cr.total,
					(unsigned long long)b->base.size);
	int r = check_206_length(x, p, &cr);
	if (r < 0)
		return r;
	pr->pos = cr.first;
	pr->end = cr.last + 1;
	return 0;
}

static int preq_head(void *data, struct sg_exchange *x, const struct sg_http1_parser *p)
{
	struct preq *pr = data;
	const char *v;
	size_t vlen;
	uint64_t now = sg_now_ns();

	/* What a miss costs (the round trip and the server's time), and from here on what the
	 * link delivers. */
	sg_link_meter_first_byte(pr->meter, sg_exchange_sent_ns(x), now);
	if (!pr->metering) {
		sg_link_meter_begin(pr->meter, sg_exchange_sent_ns(x), now);
		pr->metering = true;
	}
	if (p->status == 200)
		return preq_head_whole(pr, x, p);
	if (p->status != 206)
		return sg_exchange_fail(x, -EIO, "unexpected status %d for a range request",
					p->status);
	v = sg_http1_header(p, "content-type", &vlen);
	if (v) {
		char boundary[SG_MULTIPART_BOUNDARY_MAX + 1];
		int bl = sg_multipart_boundary(v, vlen, boundary, sizeof(boundary));
		if (bl > 0) {
			if (sg_multipart_init(&pr->mp, boundary, (size_t)bl) < 0)
				return sg_exchange_fail(x, -EIO, "bad multipart boundary");
			pr->multipart = true;
			return 0;
		}
		if (bl == -EBADMSG)
			return sg_exchange_fail(x, -EIO,
						"malformed multipart/byteranges Content-Type");
	}
	return preq_head_single(pr, x, p);
}

static int preq_body_multipart(struct preq *pr, struct sg_exchange *x, const uint8_t *d,
			       size_t n)
{
	struct blob *b = pr->j->b;
	size_t off = 0;

	while (off < n) {
		size_t used;
		struct sg_http1_slice s;
		int ev = sg_multipart_feed(&pr->mp, d + off, n - off, &used, &s);
		off += used;
		if (ev < 0)
			return sg_exchange_fail(x, -EIO, "malformed multipart/byteranges body: %s",
						pr->mp.err ? pr->mp.err : strerror(-ev));
		if (ev == SG_MULTIPART_PART && pr->mp.range.total != SG_HTTP1_RANGE_UNKNOWN &&
		    !b->unsized && pr->mp.range.total != b->base.size)
			return sg_exchange_fail(x, -EIO,
						"multipart part names a blob of %llu bytes, not %llu",
						(unsigned long long)pr->mp.range.total,
						(unsigned long long)b->base.size);
		if (ev == SG_MULTIPART_DATA)
			preq_copy(pr, pr->mp.data_offset, s.data, s.len);
		if (ev == SG_MULTIPART_NEED_MORE || ev == SG_MULTIPART_DONE)
			break;
	}
	return 0;
}

/* Requests fetching ahead of readers (SG_RANGE_AHEAD) share the link with the readers' own
 * fetches, and the link serves whoever has the most bytes queued: with the kernel's
 * autotuning, their windows grew to 0.3-1.8 MB each (bench, default link), and an on-demand
 * read of gcc's cc1 got a fifth of the link, 1.5 MB in 0.57 s beside 3 MB of speculation.
 * So they offer the server smaller windows: SG_BLOB_AHEAD_RCVBUF each, which SG_LINK_AHEAD_
 * REQUESTS of them still fill the link with on the links measured (the default link holds
 * 0.5 MB in a round trip), and only SG_BLOB_YIELD_RCVBUF while a reader's fetch is in
 * flight on the link: what they had been offered still comes, then a trickle, and the
 * reader's bytes have the link.  A request starts with the first (a reader's fetch in
 * flight then is usually over before its first byte comes back).  On a link that holds more
 * in a round trip than SG_BLOB_AHEAD_BDP_MAX, the first bound would slow them (each window
 * is about the buffer asked for): there they keep autotuning, yielding still.  The default
 * link's meter says 0.5-0.65 MB; with the first bound off there, gcc took 0.3 s longer.
 * On links with large segments (lo, jumbo frames) the trickle is larger: net/pool.c keeps a
 * buffer of a few segments, since a window below one stalls the response. */
#define SG_BLOB_AHEAD_RCVBUF (128u << 10)
#define SG_BLOB_YIELD_RCVBUF (4u << 10)
#define SG_BLOB_AHEAD_BDP_MAX ((uint64_t)2 * SG_LINK_AHEAD_REQUESTS * SG_BLOB_AHEAD_RCVBUF)

static unsigned ahead_rcvbuf(const struct sg_link_meter *m, bool yield)
{
	if (yield && m->reads_inflight > 0)
		return SG_BLOB_YIELD_RCVBUF;
	if (sg_link_meter_bdp(m) > SG_BLOB_AHEAD_BDP_MAX)
		return 0;
	return SG_BLOB_AHEAD_RCVBUF;
}

static int preq_body(void *data, struct sg_exchange *x, const uint8_t *d, size_t n)
{
	struct preq *pr = data;

	sg_link_meter_bytes(pr->meter, n, sg_now_ns());
	preq_repay(pr, n);
	if (pr->j && pr->j->ahead) {
		pr->meter->ahead_bytes_in += n;
		if (pr->j->spec)
			pr->meter->spec_bytes_in += n;
		sg_exchange_set_rcvbuf(x, ahead_rcvbuf(pr->meter, true));
	}
	if (pr->multipart)
		return preq_body_multipart(pr, x, d, n);
	if (pr->pos + n > pr->end && !pr->whole)
		return sg_exchange_fail(x, -EIO, "206 body longer than its Content-Range");
	preq_copy(pr, pr->pos, d, n);
	pr->pos += n;
	if (pr->whole && pr->pos >= pr->end)
		return 1;
	return 0;
}


static int preq_done(void *data, struct sg_exchange *x)
{
	struct preq *pr = data;
	struct sg_host_stats *st = sg_host_stats(blob_host(pr->j->b));

	if (pr->multipart && sg_multipart_finish(&pr->mp) != SG_MULTIPART_DONE)
		return sg_exchange_fail(x, -EIO, "multipart/byteranges body ended early");
	if (pr->whole && pr->pos < pr->end)
		return sg_exchange_fail(x, -EIO, "200 body ended at %llu, before %llu",
					(unsigned long long)pr->pos, (unsigned long long)pr->end);
	if (!pr->multipart && !pr->whole && pr->pos != pr->end)
		return sg_exchange_fail(x, -EIO, "206 body ended at %llu, Content-Range said %llu",
					(unsigned long long)pr->pos, (unsigned long long)pr->end);
	if (!preq_complete(pr)) {
		if (pr->n > 1)
			return PREQ_INCOMPLETE;
		return sg_exchange_fail(x, -EIO, "the response does not cover the requested range");
	}
	if (pr->n > 1 && pr->multipart && st->multirange == SG_MULTIRANGE_UNKNOWN)
		st->multirange = SG_MULTIRANGE_OK;
	return 0;
}

static const struct sg_exchange_sink preq_sink = {
	.reset = preq_reset,
	.head = preq_head,
	.body = preq_body,
	.done = preq_done,
};

static void on_preq_done(struct sg_op *op);

/* Starts one request for the given ranges of j.  Returns 0 or a negative errno. */
static int job_spawn(struct job *j, const size_t *idx, size_t n)
{
	struct blob *b = j->b;
	const struct sg_endpoint *ep = &b->eps->eps[b->ep];
	struct sg_http1_byte_range ranges[SG_REGISTRY_RANGES_MAX];
	char target[SG_URL_TARGET_MAX];
	struct sg_exchange_request req = blob_request(b, target, &preq_sink);
	struct preq *pr;
	int r;

	if (j->npr >= SG_REGISTRY_RANGES_MAX + 1)
		return -E2BIG;
	r = sg_endpoint_target(ep, b->eps->ns, b->v2path, target, sizeof(target));
	if (r < 0)
		return r;
	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++) {
		const struct sg_registry_range *rr = &j->r[idx[k]];
		ranges[k].first = rr->offset;
		ranges[k].last = rr->offset + rr->len - 1;
		pr->asked += rr->len;
	}
	pr->j = j;
	pr->meter = sg_host_link(blob_host(b));
	memcpy(pr->idx, idx, n * sizeof(*idx));
	pr->n = n;
	sg_op_init(&pr->op);
	req.ranges = ranges;
	req.nranges = n;
	req.sink_data = pr;
	req.rcvbuf = j->ahead ? ahead_rcvbuf(pr->meter, false) : 0;
	r = sg_exchange_start(sg_registry_exchanges(b->reg), &req, &pr->x, &pr->err, &pr->op,
			      on_preq_done);
	if (r < 0) {
		free(pr);
		return r;
	}
	preq_owe_all(pr);
	j->pr[j->npr++] = pr;
	j->pending++;
	return 0;
}

/* Fetches each still incomplete range of pr on its own. */
static int job_split(struct job *j, struct preq *pr)
{
	for (size_t k = 0; k < pr->n; k++) {
		size_t i = pr->idx[k];
		if (j->filled[i] >= j->r[i].len)
			continue;
		j->filled[i] = 0;
		int r = job_spawn(j, &i, 1);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The job failed: the first error is the job's, the other requests are not needed any
 * more. */
static void job_fail(struct job *j, struct preq *pr, int res)
{
	if (j->res != 0)
		return;
	/* A truncated or inconsistent body is an I/O error for the reader. */
	j->res = (res == -EPIPE || res == -EBADMSG) ? -EIO : res;
	sg_error_set(j->err, j->res, "%s", pr->err.msg[0] ? pr->err.msg : strerror(-res));
	for (size_t i = 0; i < j->npr; i++) {
		if (j->pr[i] && j->pr[i] != pr && j->pr[i]->x) {
			preq_leave(j->pr[i]);
			j->pr[i] = NULL;
			j->pending--;
		}
	}
}

static void on_preq_done(struct sg_op *op)
{
	struct preq *pr = sg_container_of(op, struct preq, op);
	struct job *j = pr->j;
	int res = op->res, status = sg_exchange_status(pr->x);
	struct sg_host_stats *st;

	sg_exchange_free(pr->x);
	pr->x = NULL;
	preq_meter_end(pr);
	preq_repay(pr, pr->owed);
	if (!j) {
		free(pr);   /* left behind by its job */
		return;
	}
	st = sg_host_stats(blob_host(j->b));
	j->pending--;
	if (res == PREQ_INCOMPLETE) {
		if (st->multirange != SG_MULTIRANGE_WHOLE)
			st->multirange = SG_MULTIRANGE_FIRST_ONLY;
		res = job_split(j, pr);
	} else if (res < 0 && pr->n > 1 && (status == 400 || status == 416)) {
		st->multirange = SG_MULTIRANGE_REFUSED;
		res = job_split(j, pr);
	}
	if (res < 0)
		job_fail(j, pr, res);
	if (j->pending == 0) {
		int total = 0;
		if (j->res == 0)
			for (size_t i = 0; i < j->n; i++)
				total += (int)j->r[i].len;
		job_complete(j, j->res ? j->res : total);
	}
}

/* Checks the ranges of a read.  Returns the number of bytes in all, or a negative errno. */
static int64_t check_ranges(const struct blob *b, const struct sg_registry_range *ranges, size_t n)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		if (ranges[i].len && !ranges[i].buf)
			return -EINVAL;
		if (ranges[i].offset > b->base.size || ranges[i].len > b->base.size - ranges[i].offset)
			return -ERANGE;
		total += ranges[i].len;
		if (total > INT32_MAX)
			return -EINVAL;
	}
	return (int64_t)total;
}

/* Sends a job's requests: all ranges in one, unless the host is known not to take that. */
static int job_start(struct job *j, const size_t *idx, size_t m)
{
	enum sg_multirange mr = sg_host_stats(blob_host(j->b))->multirange;
	int r = 0;

	if (m == 1 || mr == SG_MULTIRANGE_UNKNOWN || mr == SG_MULTIRANGE_OK)
		return job_spawn(j, idx, m);
	for (size_t k = 0; k < m && r == 0; k++)
		r = job_spawn(j, &idx[k], 1);
	return r;
}

static int blob_read_ranges(struct blob *b, const struct sg_registry_range *ranges, size_t n,
			    struct sg_error *err, unsigned flags, struct sg_op *op, sg_op_cb cb)
{
	struct job *j;
	size_t idx[SG_REGISTRY_RANGES_MAX], m = 0;
	int64_t total;
	int r;

	if (!op || !cb || (n && !ranges) || n > SG_REGISTRY_RANGES_MAX)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (sg_registry_closing(b->reg))
		return -ECANCELED;
	total = check_ranges(b, ranges, n);
	if (total < 0)
		return (int)total;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->b = b;
	j->op = op;
	j->cb = cb;
	j->err = err;
	j->ahead = (flags & (SG_RANGE_AHEAD | SG_RANGE_SPEC)) != 0;
	j->spec = (flags & SG_RANGE_SPEC) != 0;
	for (size_t i = 0; i < n; i++) {
		if (!ranges[i].len)
			continue;
		j->r[j->n] = ranges[i];
		idx[m++] = j->n++;
	}
	sg_list_insert_tail(&b->jobs, &j->link);
	if (m == 0) {
		job_complete(j, 0);
		return 0;
	}
	r = job_start(j, idx, m);
	if (r < 0) {
		if (j->pending == 0) {
			/* Nothing is in flight: refuse synchronously, no callback. */
			sg_list_unlink(&j->link);
			free(j);
			return r;
		}
		/* Some requests are out: let them finish and report the error then. */
		j->res = r;
	}
	return 0;
}

static void tail_drop(struct blob *b)
{
	free(b->tail);
	b->tail = NULL;
	b->tail_len = b->tail_pos = 0;
}

/* A read inside the tail the open brought: from memory.  The tail goes once a read took all
 * of it (the TOC loader reads exactly that); a layer's chunk reads lie before it. */
static bool blob_read_tail(struct blob *b, uint64_t offset, size_t len, void *buf,
			   struct sg_op *op, sg_op_cb cb, int *ret)
{
	if (!b->tail || offset < b->tail_off || offset - b->tail_off > b->tail_len ||
	    len > b->tail_len - (offset - b->tail_off))
		return false;
	if (sg_op_busy(op)) {
		*ret = -EBUSY;
		return true;
	}
	memcpy(buf, b->tail + (offset - b->tail_off), len);
	if (offset == b->tail_off && len == b->tail_len)
		tail_drop(b);
	*ret = sg_post(b->base.loop, op, (int)len, cb);
	return true;
}

/* One range: from the tail the open brought if it lies there, else from the registry. */
static int blob_read_one(struct blob *b, uint64_t offset, size_t len, void *buf, unsigned flags,
			 struct sg_op *op, sg_op_cb cb)
{
	struct sg_registry_range r = { .offset = offset, .len = len, .buf = buf };
	int ret;

	if (op && cb && (buf || !len) && blob_read_tail(b, offset, len, buf, op, cb, &ret))
		return ret;
	return blob_read_ranges(b, &r, 1, NULL, flags, op, cb);
}

static int blob_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
		     struct sg_op *op, sg_op_cb cb)
{
	return blob_read_one((struct blob *)src, offset, len, buf, 0, op, cb);
}

int sg_registry_read_ranges(struct sg_range_source *src, const struct sg_registry_range *ranges,
			    size_t n, struct sg_error *err, struct sg_op *op, sg_op_cb cb)
{
	if (!sg_registry_is_source(src))
		return -EINVAL;
	return blob_read_ranges((struct blob *)src, ranges, n, err, 0, op, cb);
}

static int blob_readv(struct sg_range_source *src, const struct sg_range_span *spans, size_t n,
		      unsigned flags, struct sg_op *op, sg_op_cb cb)
{
	struct blob *b = (struct blob *)src;

	/* One span comes here for its flags: read as one range, so the tail still serves it. */
	if (n == 1)
		return blob_read_one(b, spans[0].offset, spans[0].len, spans[0].buf, flags, op, cb);
	return blob_read_ranges(b, spans, n, NULL, flags, op, cb);
}

static int blob_cancel(struct sg_range_source *src, struct sg_op *op)
{
	struct blob *b = (struct blob *)src;
	struct sg_list *pos, *tmp;

	sg_list_for_each_safe(pos, tmp, &b->jobs) {
		struct job *j = sg_container_of(pos, struct job, link);
		if (j->op == op) {
			job_complete(j, -ECANCELED);
			return 0;
		}
	}
	return -EALREADY;
}

static void blob_free(struct blob *b)
{
	struct sg_registry *reg = b->reg;

	SG_FREE_CHECK(!sg_list_empty(&b->jobs) || b->ox || sg_op_busy(&b->ox_op),
		      "registry blob source");
	free(b->tail);
	free(b);
	sg_registry_release(reg);
}

static void blob_destroy(struct sg_range_source *src)
{
	struct blob *b = (struct blob *)src;

	/* Every read still in flight completes once, with -ECANCELED; the requests are
	 * detached at once, so no byte lands in a caller's buffer after this returns. */
	while (!sg_list_empty(&b->jobs))
		job_complete(sg_container_of(b->jobs.next, struct job, link), -ECANCELED);
	blob_free(b);
}

static const struct sg_range_source_ops blob_ops = {
	.read = blob_read,
	.readv = blob_readv,
	.cancel = blob_cancel,
	.destroy = blob_destroy,
};

/* ---- opening: HEAD for the size ---- */

static void open_next(struct blob *b);

/* The open's answer: the source, or (the blob freed) why not. */
static void open_finish(struct blob *b, int res, const char *msg)
{
	struct sg_loop *loop = b->base.loop;
	struct sg_op *op = b->open_op;
	sg_op_cb cb = b->open_cb;

	if (res == 0) {
		b->base.link = sg_host_link(blob_host(b));
		*b->open_ret = &b->base;
	} else {
		sg_error_set(b->open_err, res, "%s", msg ? msg : "");
		blob_free(b);
	}
	/* Cannot fail: the caller's op was idle when the open was accepted and is ours until
	 * this post, and posts are accepted while the loop drains. */
	(void)sg_post(loop, op, res, cb);
}

static void open_meter_end(struct blob *b)
{
	if (b->tail_metering) {
		sg_link_meter_end(sg_host_link(blob_host(b)), sg_now_ns());
		b->tail_metering = false;
	}
}

static void open_reset(void *data)
{
	struct blob *b = data;

	open_meter_end(b);
	tail_drop(b);
	b->tail_skip = false;
	b->size_known = false;
}

/* The answer to the suffix GET: a 206 for the blob's last bytes (or all of a smaller blob),
 * or a 200 from a server that ignores Range, whose body is kept only when it is no bigger
 * than the tail asked for (else it is not read: the loader's tail read fetches it then). */
static int open_head_tail(struct blob *b, struct sg_exchange *x, const struct sg_http1_parser *p)
{
	struct sg_link_meter *m = sg_host_link(blob_host(b));
	uint64_t first = 0, len;
	const char *v;
	size_t vlen;

	if (p->status == 206) {
		struct sg_http1_range cr;
		v = sg_http1_header(p, "content-range", &vlen);
		if (!v || sg_http1_parse_content_range(v, vlen, &cr) < 0 || cr.unsatisfied ||
		    cr.total == SG_HTTP1_RANGE_UNKNOWN || cr.last + 1 != cr.total)
			return sg_exchange_fail(x, -EIO,
						"206 to a suffix range without a Content-Range that "
						"ends the blob and names its size");
		first = cr.first;
		len = cr.last - cr.first + 1;
		b->base.size = cr.total;
		if (len > b->tail_max)
			return sg_exchange_fail(x, -EIO, "%llu bytes for a suffix range of %zu",
						(unsigned long long)len, b->tail_max);
		int r = check_206_length(x, p, &cr);
		if (r < 0)
			return r;
	} else if (p->status == 200 && p->framing == SG_HTTP1_BODY_LENGTH) {
		b->base.size = len = p->content_length;
		sg_host_stats(blob_host(b))->ignores_ranges = true;
		if (len > b->tail_max) {
			b->tail_skip = true;   /* the size is all this answer gives */
			b->size_known = true;
			return 0;
		}
	} else {
		return sg_exchange_fail(x, -EIO, "unexpected status %d for a suffix range",
					p->status);
	}
	b->size_known = true;
	free(b->tail);
	b->tail = malloc(len ? (size_t)len : 1);
	if (!b->tail)
		return sg_exchange_fail(x, -ENOMEM, "out of memory");
	b->tail_len = (size_t)len;
	b->tail_pos = 0;
	b->tail_off = first;
	/* Its bytes measure the link as a range read's do; its time to first byte does not: it
	 * is the first request on a new connection, whose setup (TCP, TLS) it includes, and a
	 * round trip taken for twice the link's would make streaming whole layers look cheap. */
	sg_link_meter_begin(m, sg_exchange_sent_ns(x), sg_now_ns());
	b->tail_metering = true;
	return 0;
}

static int open_head(void *data, struct sg_exchange *x, const struct sg_http1_parser *p)
{
	struct blob *b = data;
	const char *v;
	size_t vlen;

	v = sg_http1_header(p, "docker-content-digest", &vlen);
	if (v && (vlen != strlen(b->digest) || strncmp(v, b->digest, vlen) != 0))
		return sg_exchange_fail(x, -EBADMSG, "registry says the blob is %.*s",
					(int)(vlen < 200 ? vlen : 200), v);
	if (b->tail_asked)
		return open_head_tail(b, x, p);
	if (!b->probe) {
		/* HEAD */
		if (sg_http1_header(p, "content-length", &vlen)) {
			b->base.size = p->content_length;
			b->size_known = true;
		}
		return 0;
	}
	/* bytes=0-0 */
	if (p->status == 206) {
		struct sg_http1_range cr;
		v = sg_http1_header(p, "content-range", &vlen);
		if (v && sg_http1_parse_content_range(v, vlen, &cr) == 0 &&
		    cr.total != SG_HTTP1_RANGE_UNKNOWN) {
			b->base.size = cr.total;
			b->size_known = true;
		}
	} else if (p->status == 200 && p->framing == SG_HTTP1_BODY_LENGTH) {
		b->base.size = p->content_length;
		b->size_known = true;
	}
	return 0;
}

static int open_body(void *data, struct sg_exchange *x, const uint8_t *d, size_t n)
{
	struct blob *b = data;

	if (!b->tail_asked || b->tail_skip)
		return 1;   /* the size is known from the head; the bytes are not needed */
	sg_link_meter_bytes(sg_host_link(blob_host(b)), n, sg_now_ns());
	if (n > b->tail_len - b->tail_pos)
		return sg_exchange_fail(x, -EIO, "body longer than the tail it announced");
	memcpy(b->tail + b->tail_pos, d, n);
	b->tail_pos += n;
	return 0;
}

static int open_done(void *data, struct sg_exchange *x)
{
	struct blob *b = data;

	/* A HEAD without Content-Length is followed by the probe (on_opened). */
	if (b->probe && !b->size_known)
		return sg_exchange_fail(x, -EBADMSG, "the registry reports no blob size");
	open_meter_end(b);
	if (b->tail && b->tail_pos != b->tail_len)
		return sg_exchange_fail(x, -EIO, "tail body ended at %zu of %zu bytes",
					b->tail_pos, b->tail_len);
	return 0;
}

static const struct sg_exchange_sink open_sink = {
	.reset = open_reset,
	.head = open_head,
	.body = open_body,
	.done = open_done,
};

static void on_opened(struct sg_op *op);

static int open_start(struct blob *b, bool probe)
{
	const struct sg_endpoint *ep = &b->eps->eps[b->ep];
	static const struct sg_http1_byte_range first_byte = { 0, 0 };
	struct sg_http1_byte_range suffix = { SG_HTTP1_SUFFIX, b->tail_max };
	char target[SG_URL_TARGET_MAX];
	struct sg_exchange_request req = blob_request(b, target, &open_sink);
	int r;

	r = sg_endpoint_target(ep, b->eps->ns, b->v2path, target, sizeof(target));
	if (r < 0)
		return r;
	b->tail_asked = !probe && b->tail_max > 0;
	req.head = !probe && !b->tail_asked;
	req.single_attempt = ep->mirror;
	req.ranges = probe ? &first_byte : b->tail_asked ? &suffix : NULL;
	req.nranges = probe || b->tail_asked ? 1 : 0;
	req.sink_data = b;
	b->probe = probe;
	b->ox_err = (struct sg_error){ 0 };
	return sg_exchange_start(sg_registry_exchanges(b->reg), &req, &b->ox, &b->ox_err,
				 &b->ox_op, on_opened);
}

static void on_opened(struct sg_op *op)
{
	struct blob *b = sg_container_of(op, struct blob, ox_op);
	int res = op->res, status = sg_exchange_status(b->ox);

	sg_exchange_free(b->ox);
	b->ox = NULL;
	open_meter_end(b);
	if (res < 0 && b->tail_asked) {
		tail_drop(b);
		if (status == 400 || status == 416 || status == 501 || status == 200) {
			/* A registry that refuses a suffix range, or answers it with a body of no
			 * announced length: the HEAD way, for this blob. */
			b->tail_max = 0;
			res = open_start(b, false);
			if (res == 0)
				return;
		}
	}
	if (res == 0 && !b->size_known && !b->probe) {
		/* No Content-Length on the HEAD (some registries): ask for one byte. */
		res = open_start(b, true);
		if (res == 0)
			return;
	}
	if (res == 0) {
		open_finish(b, 0, NULL);
		return;
	}
	snprintf(b->err, sizeof(b->err), "%s", b->ox_err.msg);
	if (res != -ECANCELED && b->ep + 1 < b->eps->n) {
		b->ep++;
		open_next(b);
		return;
	}
	open_finish(b, res, b->err);
}

/* Moves b->ep to the first endpoint from it on that serves pulls; false when none does. */
static bool skip_to_pull_endpoint(struct blob *b)
{
	while (b->ep < b->eps->n && !sg_endpoint_usable(&b->eps->eps[b->ep], SG_HOST_CAP_PULL))
		b->ep++;
	return b->ep < b->eps->n;
}

static void open_next(struct blob *b)
{
	int r;

	if (!skip_to_pull_endpoint(b)) {
		open_finish(b, -ENOENT, "no endpoint");
		return;
	}
	b->size_known = false;
	r = open_start(b, false);
	if (r < 0)
		open_finish(b, r, strerror(-r));
}

/* Where the blob is: its repository, digest and the endpoints of its domain.  Returns 0, or
 * a negative errno with the message in err. */
static int blob_locate(struct blob *b, const char *ref, const char *digest, struct sg_error *err)
{
	struct sg_error perr = { 0 };
	struct sg_ref rf;
	int r;

	r = sg_ref_parse(ref, &rf, &perr);
	if (r < 0)
		return sg_error_set(err, r, "bad image reference \"%.200s\": %s", ref, perr.msg);
	if (sg_ref_check_digest(digest) < 0 ||
	    sg_ref_blob_path(&rf, digest, b->v2path, sizeof(b->v2path)) < 0)
		return sg_error_set(err, -EINVAL, "bad blob digest \"%.200s\"", digest);
	snprintf(b->repo, sizeof(b->repo), "%s", rf.repo);
	snprintf(b->digest, sizeof(b->digest), "%s", digest);
	return sg_endpoints_get(sg_registry_endpoints(b->reg), rf.domain, &b->eps, err);
}

static int open_blob(struct sg_registry *reg, const char *ref, const char *digest, size_t tail_max,
		     struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb);

int sg_registry_open_blob(void *registry, const char *ref, const char *digest,
			  struct sg_range_source **ret_src, struct sg_error *err,
			  struct sg_op *op, sg_op_cb cb)
{
	return open_blob(registry, ref, digest, 0, ret_src, err, op, cb);
}

int sg_registry_open_blob_tail(void *registry, const char *ref, const char *digest, size_t tail,
			       struct sg_range_source **ret_src, struct sg_error *err,
			       struct sg_op *op, sg_op_cb cb)
{
	if (tail == 0)
		tail = SG_REGISTRY_OPEN_TAIL;
	if (tail > SG_REGISTRY_OPEN_TAIL_MAX)
		tail = SG_REGISTRY_OPEN_TAIL_MAX;
	return open_blob(registry, ref, digest, tail, ret_src, err, op, cb);
}

/* A blob of reg, not located yet (freed with blob_free); NULL when out of memory. */
static struct blob *blob_alloc(struct sg_registry *reg)
{
	struct blob *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->base = (struct sg_range_source){ .ops = &blob_ops, .loop = sg_registry_loop(reg) };
	b->reg = reg;
	sg_registry_hold(reg);
	sg_list_init(&b->jobs);
	sg_op_init(&b->ox_op);
	return b;
}

int sg_registry_blob_unsized(void *registry, const char *ref, const char *digest,
			     struct sg_range_source **ret_src, struct sg_error *err)
{
	struct sg_registry *reg = registry;
	struct blob *b;
	int r;

	if (!reg || !ref || !digest || !ret_src)
		return sg_error_set(err, -EINVAL, "no registry, reference or digest");
	if (sg_registry_closing(reg))
		return sg_error_set(err, -ECANCELED, "the registry client is shutting down");
	b = blob_alloc(reg);
	if (!b)
		return sg_error_set(err, -ENOMEM, "out of memory");
	b->base.size = UINT64_MAX;
	b->unsized = true;
	r = blob_locate(b, ref, digest, err);
	if (r == 0 && !skip_to_pull_endpoint(b))
		r = sg_error_set(err, -ENOENT, "no endpoint serves pulls of %.200s", ref);
	if (r < 0) {
		blob_free(b);
		return r;
	}
	b->base.link = sg_host_link(blob_host(b));
	*ret_src = &b->base;
	return 0;
}

static int open_blob(struct sg_registry *reg, const char *ref, const char *digest, size_t tail_max,
		     struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb)
{
	struct sg_error lerr = { 0 };
	struct blob *b;
	int r;

	if (!reg || !ref || !digest || !ret_src || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (sg_registry_closing(reg))
		return -ECANCELED;
	b = blob_alloc(reg);
	if (!b)
		return -ENOMEM;
	b->open_ret = ret_src;
	b->open_err = err;
	b->open_op = op;
	b->open_cb = cb;
	b->tail_max = tail_max;
	r = blob_locate(b, ref, digest, &lerr);
	if (r < 0) {
		open_finish(b, r, lerr.msg);
		return 0;
	}
	b->ep = 0;
	open_next(b);
	return 0;
}
