/* daemon/early_source: a profile's first chunks read before the blob is open.  What was read
 * early answers the reads inside it without a request of their own, once it is here; a read
 * partly inside it gets the rest from the blob in one request; a failed early read sends its
 * readers to the blob; a reader's read never waits for early bytes on their way; two readers
 * of one region each get their bytes; a cancelled read completes once; what was not asked for
 * goes at the drop; nothing counts on the link as a reader's fetch; a source freed with early
 * reads in flight (or an early object given up before its open ended) goes once they end. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "daemon/early_source.h"
#include "tests/helpers/gate_source.h"
#include "tests/unit/test.h"

#define BLOB_SIZE 100000

static uint8_t blob[BLOB_SIZE];

struct rd {
	struct sg_op op;
	int calls;
	int32_t res;
	uint8_t buf[4096];
	uint8_t buf2[4096];
};

static void on_read(struct sg_op *op)
{
	struct rd *r = sg_container_of(op, struct rd, op);
	r->calls++;
	r->res = op->res;
}

static void run(struct sg_loop *loop)
{
	for (int i = 0; i < 10; i++)
		CHECK(sg_loop_run_once(loop, 5) >= 0);
}

struct fixture {
	struct sg_loop *loop;
	struct sg_link_meter meter;
	struct gate *via, *real;
	struct sg_early *early;
	struct sg_range_source *src;
};

/* Early spans [1000, 5000) and [20000, 30000) (given in that order), one request of both. */
static void setup(struct fixture *f)
{
	static const struct sg_profile_span spans[] = { { 20000, 30000 }, { 1000, 5000 } };

	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < BLOB_SIZE; i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 9));
	CHECK_EQ(sg_loop_new(NULL, &f->loop), 0);
	sg_link_meter_init(&f->meter);
	f->via = gate_new(f->loop, &f->meter, blob, BLOB_SIZE, true);
	f->real = gate_new(f->loop, &f->meter, blob, BLOB_SIZE, true);
	CHECK_EQ(sg_early_start(&f->via->base, spans, 2, 1 << 20, 0, SG_RANGE_AHEAD, &f->early), 0);
	CHECK(f->early != NULL);
	CHECK_EQ(f->via->issued, 1u);
	CHECK_EQ(f->via->q[0].n_spans, 2u);
	CHECK_EQ(f->via->q[0].spans[0].offset, 1000u);   /* in blob order */
	CHECK_EQ(f->via->q[0].flags, SG_RANGE_AHEAD);
	/* Nothing counts the open as a reader's fetch: a request that yields to one may stall
	 * (daemon/early_source.c). */
	CHECK_EQ(f->meter.reads_inflight, 0u);
	f->src = sg_early_attach(f->early, &f->real->base);
	CHECK_EQ(f->meter.reads_inflight, 0u);
	CHECK(sg_early_source_is(f->src));
	CHECK_EQ(f->src->size, (uint64_t)BLOB_SIZE);
}

static void teardown(struct fixture *f)
{
	sg_range_source_free(f->src);
	run(f->loop);
	sg_loop_free(f->loop);
}

/* A read fetching ahead (a replay's), which may wait for early bytes on their way. */
static void start(struct sg_range_source *src, struct rd *r, uint64_t off, size_t len)
{
	struct sg_range_span s = { off, len, r->buf };

	sg_op_init(&r->op);
	CHECK_EQ(sg_range_readv_flags(src, &s, 1, SG_RANGE_AHEAD, &r->op, on_read), 0);
}

TEST(a_read_inside_what_was_read_early_waits_for_it_and_costs_no_request)
{
	struct fixture f;
	struct rd r = { 0 };
	struct sg_early_stats st;

	setup(&f);
	start(f.src, &r, 1500, 1000);
	run(f.loop);
	CHECK_EQ(r.calls, 0);   /* the early bytes are not here yet */
	CHECK_EQ(f.real->issued, 0u);
	gate_complete(f.via, 0, 14000);
	run(f.loop);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.res, 1000);
	CHECK(memcmp(r.buf, blob + 1500, 1000) == 0);
	CHECK_EQ(f.real->issued, 0u);
	/* Once here, a read is answered at once, still without a request. */
	start(f.src, &r, 25000, 2000);
	run(f.loop);
	CHECK_EQ(r.calls, 2);
	CHECK(memcmp(r.buf, blob + 25000, 2000) == 0);
	CHECK_EQ(f.real->issued, 0u);
	sg_early_source_stats(f.src, &st);
	CHECK_EQ(st.asked, 14000u);
	CHECK_EQ(st.arrived, 14000u);
	CHECK_EQ(st.used, 3000u);
	teardown(&f);
}

TEST(a_read_partly_read_early_gets_only_the_rest_from_the_blob)
{
	struct fixture f;
	struct rd r = { 0 };

	setup(&f);
	f.real->automatic = true;
	/* [4000, 6000): the first half early, the second not; [25000, 25100): early. */
	struct sg_range_span spans[2] = { { 4000, 2000, r.buf }, { 25000, 100, r.buf2 } };
	sg_op_init(&r.op);
	CHECK_EQ(sg_range_readv_flags(f.src, spans, 2, SG_RANGE_AHEAD, &r.op, on_read), 0);
	run(f.loop);
	CHECK_EQ(f.real->issued, 1u);   /* the rest, alone */
	CHECK_EQ(r.calls, 0);           /* the early half still on its way */
	gate_complete(f.via, 0, 14000);
	run(f.loop);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.res, 2100);
	CHECK(memcmp(r.buf, blob + 4000, 2000) == 0);
	CHECK(memcmp(r.buf2, blob + 25000, 100) == 0);
	teardown(&f);
}

TEST(a_failed_early_read_sends_its_readers_to_the_blob_and_each_is_answered_once)
{
	struct fixture f;
	struct rd a = { 0 }, b = { 0 };

	setup(&f);
	f.real->automatic = true;
	start(f.src, &a, 1500, 1000);
	start(f.src, &b, 21000, 3000);
	run(f.loop);
	gate_complete(f.via, 0, -EIO);
	run(f.loop);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(b.calls, 1);
	CHECK_EQ(a.res, 1000);
	CHECK_EQ(b.res, 3000);
	CHECK(memcmp(a.buf, blob + 1500, 1000) == 0);
	CHECK(memcmp(b.buf, blob + 21000, 3000) == 0);
	CHECK_EQ(f.real->issued, 2u);
	teardown(&f);
}

TEST(two_readers_of_one_early_region_each_get_their_bytes)
{
	struct fixture f;
	struct rd a = { 0 }, b = { 0 }, c = { 0 };

	setup(&f);
	f.real->automatic = true;
	start(f.src, &a, 1000, 3000);
	start(f.src, &b, 2000, 3000);   /* overlaps a */
	run(f.loop);
	gate_complete(f.via, 0, 14000);
	run(f.loop);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(b.calls, 1);
	CHECK(memcmp(a.buf, blob + 1000, 3000) == 0);
	CHECK(memcmp(b.buf, blob + 2000, 3000) == 0);
	/* The region was handed out in full (6000 of 4000 bytes, counting the overlap twice)
	 * and is gone: a third read of it goes to the blob, and still gets the right bytes. */
	start(f.src, &c, 1000, 100);
	run(f.loop);
	CHECK_EQ(c.calls, 1);
	CHECK(memcmp(c.buf, blob + 1000, 100) == 0);
	CHECK_EQ(f.real->issued, 1u);
	teardown(&f);
}

TEST(a_cancelled_read_waiting_for_early_bytes_completes_once)
{
	struct fixture f;
	struct rd r = { 0 }, p = { 0 };

	setup(&f);
	start(f.src, &r, 1500, 1000);
	/* And one whose blob part is in flight too. */
	struct sg_range_span spans[1] = { { 4500, 1000, p.buf } };
	sg_op_init(&p.op);
	CHECK_EQ(sg_range_readv_flags(f.src, spans, 1, SG_RANGE_AHEAD, &p.op, on_read), 0);
	run(f.loop);
	CHECK_EQ(f.real->n, 1u);
	CHECK_EQ(sg_range_cancel(f.src, &r.op), 0);
	CHECK_EQ(sg_range_cancel(f.src, &p.op), 0);
	run(f.loop);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.res, -ECANCELED);
	CHECK_EQ(p.calls, 1);
	CHECK_EQ(p.res, -ECANCELED);
	CHECK_EQ(f.real->n, 0u);
	gate_complete(f.via, 0, 14000);
	run(f.loop);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(p.calls, 1);
	teardown(&f);
}

/* A reader's read (flags 0: an on-demand fetch, the TOC's) never waits for an early read on
 * its way, which yields the link to readers: it goes to the blob; once the early bytes are
 * here, it takes them. */
TEST(a_readers_read_does_not_wait_for_early_bytes_on_their_way)
{
	struct fixture f;
	struct rd r = { 0 };

	setup(&f);
	f.real->automatic = true;
	sg_op_init(&r.op);
	CHECK_EQ(sg_range_read(f.src, 4500, 1000, r.buf, &r.op, on_read), 0);
	run(f.loop);
	CHECK_EQ(r.calls, 1);   /* answered with the early read still in flight */
	CHECK_EQ(r.res, 1000);
	CHECK(memcmp(r.buf, blob + 4500, 1000) == 0);
	CHECK_EQ(f.real->issued, 1u);
	gate_complete(f.via, 0, 14000);
	run(f.loop);
	sg_op_init(&r.op);
	CHECK_EQ(sg_range_read(f.src, 1200, 800, r.buf, &r.op, on_read), 0);
	run(f.loop);
	CHECK_EQ(r.calls, 2);
	CHECK(memcmp(r.buf, blob + 1200, 800) == 0);
	CHECK_EQ(f.real->issued, 1u);   /* from the early bytes */
	teardown(&f);
}

TEST(the_drop_lets_go_of_what_was_not_asked_for)
{
	struct fixture f;
	struct rd r = { 0 };
	struct sg_early_stats st;

	setup(&f);
	f.real->automatic = true;
	gate_complete(f.via, 0, 14000);
	run(f.loop);
	sg_early_source_drop(f.src);
	start(f.src, &r, 21000, 1000);
	run(f.loop);
	CHECK_EQ(r.calls, 1);
	CHECK(memcmp(r.buf, blob + 21000, 1000) == 0);
	CHECK_EQ(f.real->issued, 1u);   /* from the blob: the early bytes were let go */
	sg_early_source_stats(f.src, &st);
	CHECK_EQ(st.used, 0u);
	teardown(&f);
}

TEST(a_source_freed_with_early_reads_in_flight_goes_once_they_end)
{
	struct fixture f;

	setup(&f);
	f.via->defer_cancel = true;   /* the cancel is on its way, as a registry's is */
	sg_range_source_free(f.src);
	CHECK_EQ(f.via->cancels, 1u);
	gate_complete(f.via, 0, -ECANCELED);
	run(f.loop);   /* the last end frees it all (ASan: no leak, no use after free) */
	sg_loop_free(f.loop);
}

TEST(an_early_object_given_up_before_its_open_ended_goes_and_never_counted_on_the_link)
{
	static const struct sg_profile_span spans[] = { { 100, 200 } };
	struct sg_loop *loop;
	struct sg_link_meter meter;
	struct sg_early *e = NULL;

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	sg_link_meter_init(&meter);
	struct gate *via = gate_new(loop, &meter, blob, BLOB_SIZE, true);
	CHECK_EQ(sg_early_start(&via->base, spans, 1, 1 << 20, 0, SG_RANGE_AHEAD, &e), 0);
	CHECK_EQ(meter.reads_inflight, 0u);
	sg_early_abandon(e);
	CHECK_EQ(meter.reads_inflight, 0u);
	run(loop);
	sg_loop_free(loop);
}

TEST(spans_are_cut_to_the_budget_in_their_order_joined_and_split_into_requests)
{
	/* The budget takes the first spans given; neighbours up to the gap are joined; nothing
	 * left (an empty span, one past the end) gives no object. */
	static const struct sg_profile_span spans[] = {
		{ 50000, 50100 }, { 10000, 10100 }, { 10150, 10200 }, { 90000, 99000 },
	};
	static const struct sg_profile_span none[] = { { 200000, 300000 }, { 500, 500 } };
	struct sg_loop *loop;
	struct sg_early *e = NULL;

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	struct gate *via = gate_new(loop, NULL, blob, BLOB_SIZE, true);
	CHECK_EQ(sg_early_start(&via->base, spans, 4, 250, 64, SG_RANGE_AHEAD, &e), 0);
	CHECK(e != NULL);
	CHECK_EQ(via->issued, 1u);
	CHECK_EQ(via->q[0].n_spans, 2u);   /* [10000, 10200) joined, [50000, 50100) */
	CHECK_EQ(via->q[0].spans[0].offset, 10000u);
	CHECK_EQ(via->q[0].spans[0].len, 200u);
	CHECK_EQ(via->q[0].spans[1].offset, 50000u);
	CHECK_EQ(via->q[0].len, 300u);   /* 100 + 100 + 50 of the budget, and the gap */
	via->automatic = true;
	gate_complete(via, 0, 300);
	run(loop);
	sg_early_abandon(e);
	run(loop);

	struct gate *via2 = gate_new(loop, NULL, blob, BLOB_SIZE, true);
	CHECK_EQ(sg_early_start(&via2->base, none, 2, 1 << 20, 0, 0, &e), 0);
	CHECK(e == NULL);   /* via2 freed */
	sg_loop_free(loop);
}

TEST_MAIN()
