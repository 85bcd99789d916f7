/* daemon/deferred_source: the blob opened on the first read, here for vectored reads: one
 * queued before the open goes to the opened blob (one completion, the right bytes), one
 * after goes straight to it; a queued one is cancelled once; a blob that reads one range at
 * a time fails a queued vectored read once with -EOPNOTSUPP. */
#include <errno.h>
#include <stdlib.h>

#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "daemon/deferred_source.h"
#include "tests/helpers/gate_source.h"
#include "tests/unit/test.h"

#define BLOB_SIZE 100000

static uint8_t blob[BLOB_SIZE];

/* The opener: counts opens, and answers from the loop with a gate over blob. */
struct opener {
	struct sg_loop *loop;
	bool vectored;
	int opens;
};

static int fake_open(void *ctx, const char *ref, const char *digest,
		     struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb)
{
	struct opener *o = ctx;
	struct gate *g = gate_new(o->loop, NULL, blob, BLOB_SIZE, o->vectored);

	g->automatic = true;
	o->opens++;
	*ret_src = &g->base;
	return sg_post(o->loop, op, 0, cb);
}

struct rd {
	struct sg_op op;
	int calls;
	int32_t res;
	uint8_t a[100], b[200];
};

static void on_read(struct sg_op *op)
{
	struct rd *r = sg_container_of(op, struct rd, op);
	r->calls++;
	r->res = op->res;
}

static struct sg_range_source *deferred(struct opener *o, bool vectored)
{
	struct sg_blob_opener op = { .open = fake_open, .ctx = o };
	struct sg_range_source *src;

	for (size_t i = 0; i < BLOB_SIZE; i++)
		blob[i] = (uint8_t)(i * 13 + (i >> 8));
	CHECK_EQ(sg_loop_new(NULL, &o->loop), 0);
	o->vectored = vectored;
	CHECK_EQ(sg_deferred_source_new(o->loop, BLOB_SIZE, &op, "r/x:1", "sha256:ab", &src), 0);
	CHECK(sg_range_source_vectored(src));   /* before the open it cannot know */
	return src;
}

static void start_readv(struct sg_range_source *src, struct rd *r)
{
	struct sg_range_span spans[2] = { { 10, sizeof(r->a), r->a },
					  { 70000, sizeof(r->b), r->b } };

	sg_op_init(&r->op);
	CHECK_EQ(sg_range_readv(src, spans, 2, &r->op, on_read), 0);
	CHECK_EQ(r->calls, 0);
}

static void run(struct sg_loop *loop)
{
	for (int i = 0; i < 10; i++)
		CHECK(sg_loop_run_once(loop, 5) >= 0);
}

static void finish(struct opener *o, struct sg_range_source *src)
{
	sg_range_source_free(src);
	CHECK_EQ(sg_loop_drain(o->loop, 2000), 0);
	sg_loop_free(o->loop);
}

TEST(a_readv_before_and_after_the_open_reads_the_blob)
{
	struct opener o = { 0 };
	struct sg_range_source *src = deferred(&o, true);
	static struct rd r1, r2;

	start_readv(src, &r1);   /* opens the blob */
	run(o.loop);
	CHECK_EQ(o.opens, 1);
	CHECK_EQ(r1.calls, 1);
	CHECK_EQ(r1.res, (int32_t)(sizeof(r1.a) + sizeof(r1.b)));
	CHECK_MEM(r1.a, blob + 10, sizeof(r1.a));
	CHECK_MEM(r1.b, blob + 70000, sizeof(r1.b));
	start_readv(src, &r2);   /* open already */
	run(o.loop);
	CHECK_EQ(o.opens, 1);
	CHECK_EQ(r2.calls, 1);
	CHECK_MEM(r2.b, blob + 70000, sizeof(r2.b));
	finish(&o, src);
}

TEST(a_queued_readv_is_cancelled_once)
{
	struct opener o = { 0 };
	struct sg_range_source *src = deferred(&o, true);
	static struct rd r;

	start_readv(src, &r);
	CHECK_EQ(sg_range_cancel(src, &r.op), 0);
	run(o.loop);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.res, -ECANCELED);
	finish(&o, src);
}

TEST(a_blob_without_readv_fails_a_queued_readv_once)
{
	struct opener o = { 0 };
	struct sg_range_source *src = deferred(&o, false);
	static struct rd r;

	start_readv(src, &r);
	run(o.loop);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.res, -EOPNOTSUPP);
	/* Once open, the answer comes at once: the caller reads one range at a time. */
	sg_op_init(&r.op);
	struct sg_range_span spans[2] = { { 0, 1, r.a }, { 500, 1, r.b } };
	CHECK_EQ(sg_range_readv(src, spans, 2, &r.op, on_read), -EOPNOTSUPP);
	finish(&o, src);
}

TEST_MAIN()
