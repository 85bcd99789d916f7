/* Background fetch and streaming (fs/layer_prefetch.c) against a gated range source: the
 * test decides when each range request completes, and the source's link meter is fed
 * synthetic samples, so that the in-flight cap is known.  Background fetch keeps several
 * requests in flight within the cap and finishes the layer; it sends nothing new while an
 * on-demand fetch is in flight; closing layers with batches in flight frees nothing before
 * they are answered (two layers on one meter, two users each, two readers); a layer read
 * file after file in blob order streams; a fast link streams the layer; replays of learned
 * profiles on one link leave connections to on-demand reads, and read short gaps along; a
 * replay's far-apart chunks go out as one request of several spans from a vectored source
 * (a byte damaged in one span fails that chunk only; a close with it in flight answers
 * every reader once), and as one request a span from a source that is not; background
 * fetch takes runs of missing chunks apart in one request too; prefetches pace by what the
 * link owes, two layers on one link together, and one closes while it waits to send. */
#include "daemon/core/digest.h"
#include "daemon/core/link_meter.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "fs/layer.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"
#include "fs/layer_prefetch.h"
#include "fs/profile.h"
#include "tests/helpers/blob_toc.h"
#include "tests/helpers/esgz_build.h"
#include "tests/helpers/gate_source.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NFILES 40
#define FILE_SIZE (128u << 10)
#define CHUNK (64u << 10)
#define MS 1000000ull

static char dir[256], blob_path[300];
static uint8_t content[NFILES * FILE_SIZE];
static struct sg_digest toc_digest;
static uint8_t *blob;
static size_t blob_len;

static void cleanup(void)
{
	test_rm_tree(dir);
}

/* The test's directory (removed at exit) and blob_path in it. */
static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/stargzd-prefetch-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(blob_path, sizeof(blob_path), "%s/blob", dir);
}

static void setup(void)
{
	make_dir();
	CHECK_EQ(esgz_write_random_files(blob_path, content, NFILES, FILE_SIZE, CHUNK, &toc_digest,
					 NULL), 0);
	blob = gate_load_blob(blob_path, &blob_len);
}

/* A meter that has seen a link of `rate` bytes/s and `rtt`. */
static void meter_of(struct sg_link_meter *m, double rate, uint64_t rtt)
{
	uint64_t t = 1000 * MS;

	sg_link_meter_init(m);
	sg_link_meter_first_byte(m, t - rtt, t);
	sg_link_meter_begin(m, t, t);
	for (int i = 0; i < 64; i++) {
		t += (uint64_t)(65536.0 * 1e9 / rate);
		sg_link_meter_bytes(m, 65536, t);
	}
	sg_link_meter_end(m, t);
}

struct env {
	struct sg_loop *loop;
	struct sg_layer *layer;
	struct sg_layer_user *user;
	struct gate *gate;
	char cache[320];
};

/* A layer over a gate (vectored: it takes sg_range_readv), started. */
static void env_open_gate(struct env *e, struct sg_loop *loop, struct sg_link_meter *m,
			  struct sg_layer_config cfg, int index, bool vectored)
{
	e->loop = loop;
	snprintf(e->cache, sizeof(e->cache), "%s/cache-%d", dir, index);
	cfg.cache_dir = e->cache;
	e->gate = gate_new(loop, m, blob, blob_len, vectored);
	test_layer_new_over(loop, &e->gate->base, blob_path, &toc_digest, &cfg, &e->layer, &e->user);
	sg_layer_start(e->layer);
}

static void env_open(struct env *e, struct sg_loop *loop, struct sg_link_meter *m,
		     struct sg_layer_config cfg, int index)
{
	env_open_gate(e, loop, m, cfg, index, false);
}

/* Closes the user and the layer, then the loop. */
static void env_close(struct env *e)
{
	test_layer_teardown(e->loop, e->user, e->layer);
}

static uint32_t file_node(struct env *e, int f)
{
	char name[16];

	snprintf(name, sizeof(name), "f%d", f);
	return sg_toc_lookup_path(sg_layer_toc(e->layer), name);
}

static uint64_t file_blob_offset(struct env *e, int f)
{
	const struct sg_toc *toc = sg_layer_toc(e->layer);
	return sg_toc_chunks(toc, sg_toc_node(toc, file_node(e, f)))[0].offset;
}

/* Reads file f whole as `reader` and checks its bytes; the read's result. */
static int32_t read_file(struct env *e, uint32_t reader, int f)
{
	static uint8_t buf[FILE_SIZE];
	int32_t r = test_layer_read(e->loop, e->user, reader, file_node(e, f), 0, buf, FILE_SIZE);

	if (r == (int32_t)FILE_SIZE)
		CHECK_MEM(buf, content + (size_t)f * FILE_SIZE, FILE_SIZE);
	return r;
}

/* Runs the loop until the gate has a pending read or ms passed. */
static void wait_pending(struct env *e, int ms)
{
	double end = test_now_ms() + ms;
	while (e->gate->n == 0 && test_now_ms() < end)
		CHECK(sg_loop_run_once(e->loop, 2) >= 0);
}

static const struct sg_layer_config background = {
	.background_fetch = true, .background_delay_ns = 1 * MS, .window_bytes = 1,
};

TEST(background_keeps_several_requests_within_the_cap_and_finishes)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	size_t most = 0;
	uint64_t peak = 0;

	setup();
	meter_of(&m, 10e6, 1 * MS);   /* cap: 1.5 MB */
	size_t cap = sg_link_meter_inflight_cap(&m);
	CHECK(cap > 1400000 && cap < 1600000);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, background, 0);
	double end = test_now_ms() + 10000;
	do {
		wait_pending(&e, 200);
		for (int k = 0; k < 5; k++)   /* let it send all it wants to */
			CHECK(sg_loop_run_once(loop, 1) >= 0);
		if (e.gate->n > most)
			most = e.gate->n;
		if (e.gate->pending_bytes > peak)
			peak = e.gate->pending_bytes;
		if (e.gate->n)
			gate_complete(e.gate, 0, (int)e.gate->q[0].len);
		sg_layer_stats(e.layer, &st);
		CHECK(test_now_ms() < end);
	} while (!st.background_done);
	CHECK(most >= 2);
	CHECK(peak <= cap);
	CHECK(!st.stream_started);
	test_wait_layer_local(loop, e.layer, &st);
	for (int f = 0; f < NFILES; f += 13)
		CHECK_EQ(read_file(&e, 0, f), (int32_t)FILE_SIZE);
	env_close(&e);
}

/* A reader (7) misses in the last file: its request goes out at once, whatever is in
 * flight.  Returns where it is in the gate's queue. */
static size_t miss_last_file(struct env *e, struct test_op *t, uint8_t *buf, size_t len)
{
	uint64_t od = file_blob_offset(e, NFILES - 1);
	size_t odi = e->gate->n;

	test_op_init(t);
	CHECK_EQ(sg_layer_read(e->user, 7, file_node(e, NFILES - 1), 0, len, buf, &t->op,
			       test_op_cb), 0);
	test_run_for(e->loop, 10);
	for (size_t i = 0; i < e->gate->n; i++)
		if (e->gate->q[i].offset == od)
			odi = i;
	CHECK(odi < e->gate->n);
	return odi;
}

/* Over a link of rate and rtt (the second streams the layer), speculation sends nothing new
 * while an on-demand fetch is in flight, then finishes the layer. */
static void check_yields_to_ondemand(double rate, uint64_t rtt, bool streams)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	static uint8_t buf[4096];
	struct test_op t;

	setup();
	meter_of(&m, rate, rtt);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, background, 0);
	wait_pending(&e, 1000);
	test_run_for(loop, 20);
	CHECK(e.gate->n >= 2);
	/* A reader misses in the last file, which background fetch has not reached. */
	uint64_t od = file_blob_offset(&e, NFILES - 1);
	miss_last_file(&e, &t, buf, sizeof(buf));
	unsigned issued = e.gate->issued;
	/* The background batches complete one by one: none is replaced while the on-demand
	 * one is in flight. */
	while (e.gate->n > 1) {
		size_t i = e.gate->q[0].offset == od ? 1 : 0;
		gate_complete(e.gate, i, (int)e.gate->q[i].len);
		test_run_for(loop, 10);
		CHECK_EQ(e.gate->issued, issued);
	}
	CHECK_EQ(e.gate->q[0].offset, od);
	CHECK_EQ(t.calls, 0);
	gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	test_op_wait(loop, &t, 1000);
	CHECK_EQ(t.res, (int32_t)sizeof(buf));
	CHECK_MEM(buf, content + (size_t)(NFILES - 1) * FILE_SIZE, sizeof(buf));
	/* Then it goes on (after its gap of two round trips) and finishes. */
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	test_wait_layer_local(loop, e.layer, &st);
	CHECK(e.gate->issued > issued);
	CHECK_EQ(st.stream_started, streams);
	env_close(&e);
}

TEST(background_sends_nothing_while_an_ondemand_fetch_is_in_flight)
{
	check_yields_to_ondemand(10e6, 1 * MS, false);
}

TEST(a_fast_links_stream_sends_nothing_while_an_ondemand_fetch_is_in_flight)
{
	check_yields_to_ondemand(10e6, 100 * MS, true);   /* 5 MB: 0.5 s, 5 round trips */
}

/* What a layer asks its source for says whose it is: requests fetching ahead carry
 * SG_RANGE_AHEAD (a registry source lets them yield the link), a reader's none; and the
 * link counts the readers' fetches in flight, for the ones fetching ahead to yield to. */
TEST(requests_fetching_ahead_are_flagged_and_readers_fetches_counted_on_the_link)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	static uint8_t buf[4096];
	struct test_op t;

	setup();
	meter_of(&m, 10e6, 1 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open_gate(&e, loop, &m, background, 0, true);
	wait_pending(&e, 1000);
	CHECK(e.gate->n >= 1);
	for (size_t i = 0; i < e.gate->n; i++)
		CHECK_EQ(e.gate->q[i].flags, SG_RANGE_AHEAD);   /* background fetch */
	CHECK_EQ(m.reads_inflight, 0u);
	size_t odi = miss_last_file(&e, &t, buf, sizeof(buf));
	CHECK_EQ(e.gate->q[odi].flags, 0u);   /* the reader's own */
	CHECK_EQ(m.reads_inflight, 1u);
	gate_complete(e.gate, odi, (int)e.gate->q[odi].len);
	test_op_wait(loop, &t, 1000);
	CHECK_EQ(t.res, (int32_t)sizeof(buf));
	CHECK_EQ(m.reads_inflight, 0u);
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	test_wait_layer_local(loop, e.layer, &st);
	CHECK_EQ(m.reads_inflight, 0u);
	env_close(&e);
}

/* A reader served from what was fetched ahead (here the prefetch) is a workload busy
 * reading, as with a miss: background fetch, due 200 ms after the mount, waits for it to go
 * quiet (a second), then goes. */
TEST(background_waits_for_readers_served_from_what_was_fetched_ahead)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	struct sg_layer_config cfg = background;
	static uint8_t buf[4096];

	setup();
	meter_of(&m, 10e6, 1 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	cfg.background_delay_ns = 200 * MS;
	cfg.prefetch = true;
	cfg.prefetch_bytes = FILE_SIZE;   /* f0 */
	env_open(&e, loop, &m, cfg, 0);
	wait_pending(&e, 1000);
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	e.gate->automatic = true;
	test_run_for(loop, 20);
	sg_layer_stats(e.layer, &st);
	CHECK(st.prefetch_done);
	unsigned issued = e.gate->issued;
	CHECK_EQ(test_layer_read(loop, e.user, 0, file_node(&e, 0), 0, buf, sizeof(buf)),
		 (int32_t)sizeof(buf));
	CHECK_EQ(e.gate->issued, issued);   /* served from the prefetch */
	sg_layer_stats(e.layer, &st);
	CHECK(st.kind_used_bytes[SG_FETCH_PREFETCH] > 0);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_BACKGROUND], 0);
	test_run_for(loop, 500);   /* past the delay, within the quiet gap */
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_BACKGROUND], 0);
	CHECK_EQ(e.gate->issued, issued);
	test_run_for(loop, 800);
	CHECK(e.gate->issued > issued);
	test_wait_layer_local(loop, e.layer, &st);
	CHECK(st.kind_fetched_bytes[SG_FETCH_BACKGROUND] > 0);
	env_close(&e);
}

/* Two layers fetching from one host (one meter), two users each, a reader on each user; the
 * layers close with background batches and on-demand fetches in flight: the close asks the
 * source to cancel every one (a registry that stopped answering must not hold an unmount for
 * its timeouts), and still nothing is freed, and no close completes, before the source has
 * answered them. */
TEST(close_with_batches_in_flight_frees_nothing_early)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e[2] = { 0 };
	struct sg_layer_user *second[2];
	static uint8_t bufs[2][2][4096];
	struct test_op reads[2][2], uclose[2][2], lclose[2];
	bool destroyed[2] = { false, false };

	setup();
	meter_of(&m, 10e6, 1 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	for (int i = 0; i < 2; i++) {
		env_open(&e[i], loop, &m, background, i);
		e[i].gate->destroyed = &destroyed[i];
		CHECK_EQ(sg_layer_user_new(e[i].layer, &second[i]), 0);
	}
	wait_pending(&e[0], 1000);   /* the link's cap: the second layer may get none */
	test_run_for(loop, 10);
	for (int i = 0; i < 2; i++)
		for (int u = 0; u < 2; u++) {
			test_op_init(&reads[i][u]);
			CHECK_EQ(sg_layer_read(u ? second[i] : e[i].user, 100 + u,
					       file_node(&e[i], NFILES - 1 - u), 0, 4096, bufs[i][u],
					       &reads[i][u].op, test_op_cb), 0);
		}
	test_run_for(loop, 10);
	/* Each layer's two on-demand fetches, and background batches of one of them: the
	 * link's cap is shared, so the first layer's batches leave the second none. */
	CHECK(e[0].gate->n + e[1].gate->n >= 5);
	for (int i = 0; i < 2; i++) {
		CHECK(e[i].gate->n >= 2);
		for (int u = 0; u < 2; u++) {
			test_op_init(&uclose[i][u]);
			CHECK_EQ(sg_layer_user_close(u ? second[i] : e[i].user, &uclose[i][u].op,
						     test_op_cb), 0);
		}
	}
	test_run_for(loop, 20);
	for (int i = 0; i < 2; i++)
		for (int u = 0; u < 2; u++) {
			CHECK_EQ(reads[i][u].calls, 1);
			CHECK_EQ(reads[i][u].res, -ECANCELED);
			CHECK_EQ(uclose[i][u].calls, 1);
		}
	for (int i = 0; i < 2; i++) {
		e[i].gate->defer_cancel = true;
		e[i].gate->cancels = 0;
		test_op_init(&lclose[i]);
		CHECK_EQ(sg_layer_close(e[i].layer, &lclose[i].op, test_op_cb), 0);
	}
	test_run_for(loop, 50);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(lclose[i].calls, 0);   /* its batches are still out */
		CHECK(e[i].gate->n > 0);
		CHECK_EQ(e[i].gate->cancels, (unsigned)e[i].gate->n);   /* each asked to end */
		CHECK(!destroyed[i]);
	}
	/* The first layer's fetches answer with data, the second's fail. */
	while (e[0].gate->n)
		gate_complete(e[0].gate, 0, (int)e[0].gate->q[0].len);
	test_op_wait(loop, &lclose[0], 1000);
	CHECK_EQ(lclose[1].calls, 0);
	while (e[1].gate->n)
		gate_complete(e[1].gate, 0, -EIO);
	test_op_wait(loop, &lclose[1], 1000);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(lclose[i].res, 0);
		sg_layer_free(e[i].layer);
		CHECK(destroyed[i]);
	}
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

/* tar -c: files read whole, one after the other in blob order.  After two dozen files the
 * rest of the layer streams, within the cap plus a round trip's worth; the reads still get
 * the right bytes, and most of them find their data on its way. */
TEST(a_layer_read_file_after_file_streams)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	static uint8_t buf[FILE_SIZE];
	struct sg_layer_config cfg = { .window_bytes = 1 };   /* no background fetch */
	uint64_t peak = 0;

	setup();
	meter_of(&m, 10e6, 1 * MS);
	uint64_t limit = sg_link_meter_inflight_cap(&m) + 10000;   /* + 1 ms of 10 MB/s */
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, cfg, 0);
	for (int f = 0; f < NFILES; f++) {
		struct test_op t;
		test_op_init(&t);
		CHECK_EQ(sg_layer_read(e.user, 1, file_node(&e, f), 0, FILE_SIZE, buf, &t.op,
				       test_op_cb), 0);
		while (!t.calls) {
			CHECK(sg_loop_run_once(loop, 2) >= 0);
			uint64_t spec = 0;
			for (size_t i = 0; i < e.gate->n; i++)
				if (e.gate->q[i].offset != file_blob_offset(&e, f))
					spec += e.gate->q[i].len;
			if (spec > peak)
				peak = spec;
			if (e.gate->n)
				gate_complete(e.gate, 0, (int)e.gate->q[0].len);
		}
		CHECK_EQ(t.res, (int32_t)FILE_SIZE);
		CHECK_MEM(buf, content + (size_t)f * FILE_SIZE, FILE_SIZE);
	}
	sg_layer_stats(e.layer, &st);
	CHECK(st.stream_started);
	CHECK(st.streamed_bytes > 0);
	/* Two misses per file (each of its two chunks) until the stream starts at the 24th,
	 * none after: the stream stays ahead of the reader.  Without it, 80. */
	CHECK(st.ondemand_fetches <= 48);
	CHECK(peak <= limit);
	env_close(&e);
}

/* Random reads do not stream the layer. */
TEST(scattered_reads_do_not_stream)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	static uint8_t buf[4096];
	struct sg_layer_config cfg = { .window_bytes = 1 };

	setup();
	meter_of(&m, 10e6, 1 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, cfg, 0);
	e.gate->automatic = true;
	for (int k = 0; k < NFILES; k++) {
		int f = (k * 17) % NFILES;   /* a permutation, jumping back and forth */
		CHECK_EQ(test_layer_read(loop, e.user, 1, file_node(&e, f), 0, buf, sizeof(buf)),
			 (int32_t)sizeof(buf));
	}
	sg_layer_stats(e.layer, &st);
	CHECK(!st.stream_started);
	env_close(&e);
}

/* An optimized layer's workload reads its prioritized files, which the prefetch fetched, in
 * blob order: that is the optimization at work, not a reader reading the whole layer, and
 * streaming the rest then took the link and the loop while the workload still ran (imports,
 * optimized: 9 MB streamed, none of it read).  Thirty files in order, every one of them
 * prefetched: no stream (the old rule started one at the 24th). */
TEST(reading_prefetched_files_in_order_does_not_stream_the_layer)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env probe = { 0 }, e = { 0 };
	struct sg_layer_stats st;

	setup();
	meter_of(&m, 10e6, 1 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&probe, loop, &m, (struct sg_layer_config){ .window_bytes = 1 }, 0);
	uint64_t first30 = file_blob_offset(&probe, 30);
	env_close(&probe);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, (struct sg_layer_config){ .window_bytes = 1, .prefetch = true,
							  .prefetch_bytes = first30 }, 1);
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	double end = test_now_ms() + 10000;
	do {
		CHECK(sg_loop_run_once(loop, 20) >= 0);
		sg_layer_stats(e.layer, &st);
		CHECK(test_now_ms() < end);
	} while (!st.prefetch_done);
	for (int f = 0; f < 30; f++)
		CHECK_EQ(read_file(&e, 1, f), (int32_t)FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);   /* all of them prefetched */
	CHECK(!st.stream_started);
	env_close(&e);
}

/* A link that carries the whole layer in a few round trips: background fetch streams it. */
TEST(a_fast_link_streams_the_layer)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;

	setup();
	meter_of(&m, 100e6, 200 * MS);   /* 5 MB in 50 ms, a round trip of 200 ms */
	CHECK(sg_link_meter_fast(&m, blob_len));
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	struct sg_layer_config cfg = background;
	env_open(&e, loop, &m, cfg, 0);
	e.gate->automatic = true;
	test_wait_layer_local(loop, e.layer, &st);
	CHECK(st.stream_started);
	CHECK(st.streamed_bytes > 0);
	env_close(&e);
}

/* A profile of files `files` (their chunks, in that order) for e's layer. */
static struct sg_profile *profile_of_files(struct env *e, const int *files, size_t n)
{
	const struct sg_toc *toc = sg_layer_toc(e->layer);
	struct sg_profile *p;

	CHECK_EQ(sg_profile_new(&toc_digest, e->layer->n_chunks, NULL, &p), 0);
	for (size_t i = 0; i < n; i++) {
		const struct sg_toc_node *node = sg_toc_node(toc, file_node(e, files[i]));
		for (uint32_t c = 0; c < node->nchunks; c++)
			CHECK(sg_profile_note(p, node->first_chunk + c, 1) == SG_PROFILE_RECORDED);
	}
	return p;
}

static void run_a_little(struct sg_loop *loop)
{
	for (int k = 0; k < 10; k++)
		CHECK(sg_loop_run_once(loop, 1) >= 0);
}

TEST(replays_on_one_link_leave_connections_to_on_demand_reads)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env a = { 0 }, b = { 0 };
	int third[(NFILES + 2) / 3];
	const int n_third = (NFILES + 2) / 3;
	static uint8_t buf[FILE_SIZE];
	struct test_op rd;
	struct sg_layer_stats st;

	setup();
	/* Every third file: two files apart, more than the link makes worth reading along
	 * (half a round trip: 250 KB), so a request each. */
	for (int i = 0; i < n_third; i++)
		third[i] = NFILES - 1 - 3 * i;
	meter_of(&m, 12.5e6, 40 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&a, loop, &m, (struct sg_layer_config){ .window_bytes = 1 }, 10);
	env_open(&b, loop, &m, (struct sg_layer_config){ .window_bytes = 1 }, 11);
	CHECK_EQ(sg_layer_replay(a.layer, profile_of_files(&a, third, (size_t)n_third), NULL, NULL), 0);
	CHECK_EQ(sg_layer_replay(b.layer, profile_of_files(&b, third, (size_t)n_third), NULL, NULL), 0);
	run_a_little(loop);
	/* Both replays together fill what the link allows, and no more. */
	CHECK_EQ(a.gate->n + b.gate->n, SG_LINK_AHEAD_REQUESTS);
	CHECK_EQ(m.ahead_requests, SG_LINK_AHEAD_REQUESTS);
	/* Each running replay counts as a reader of the link: background fetch and streams
	 * on it wait for them. */
	CHECK_EQ(m.ondemand_inflight, 2);
	/* A read of a file no profile names goes out at once beside them. */
	test_op_init(&rd);
	size_t before = a.gate->n;
	CHECK_EQ(sg_layer_read(a.user, 0, file_node(&a, 1), 0, FILE_SIZE, buf, &rd.op, test_op_cb), 0);
	run_a_little(loop);
	CHECK(a.gate->n > before);   /* its chunks' requests */
	CHECK_EQ(m.ahead_requests, SG_LINK_AHEAD_REQUESTS);
	/* Answered one by one: never more replay requests than the link allows. */
	a.gate->automatic = b.gate->automatic = true;
	while (a.gate->n)
		gate_complete(a.gate, 0, (int)a.gate->q[0].len);
	while (b.gate->n)
		gate_complete(b.gate, 0, (int)b.gate->q[0].len);
	test_op_wait(loop, &rd, 5000);
	CHECK_EQ(rd.res, (int32_t)FILE_SIZE);
	CHECK_MEM(buf, content + FILE_SIZE, FILE_SIZE);
	double end = test_now_ms() + 5000;
	do {
		run_a_little(loop);
		sg_layer_stats(b.layer, &st);
		if (test_now_ms() > end)
			TEST_FAIL("replay: done %d, batches %u, replaying %d, range %zu, requests %u, gates %zu %zu",
				  st.replay_done, b.layer->batches_inflight, b.layer->replaying,
				  b.layer->replay_range, m.ahead_requests, a.gate->n, b.gate->n);
	} while (!st.replay_done || b.layer->batches_inflight);
	CHECK_EQ(st.replay_chunks, (uint64_t)n_third * (FILE_SIZE / CHUNK));
	sg_layer_stats(a.layer, &st);
	CHECK(st.replay_done);
	CHECK_EQ(m.ondemand_inflight, 0);   /* both replays over, the read answered */
	sg_layer_stats(b.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	for (int i = 0; i < n_third; i += 3) {
		CHECK_EQ(test_layer_read(loop, b.user, 0, file_node(&b, third[i]), 0, buf, FILE_SIZE),
			 (int32_t)FILE_SIZE);
		CHECK_MEM(buf, content + (size_t)third[i] * FILE_SIZE, FILE_SIZE);
	}
	sg_layer_stats(b.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	test_layer_user_close(loop, a.user);
	test_layer_close(loop, a.layer);
	env_close(&b);
}

TEST(a_replay_window_goes_in_blob_order_and_merges_neighbours)
{
	static const int files[] = { 11, 30, 10 };   /* recorded out of blob order */
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	static uint8_t buf[FILE_SIZE];

	setup();
	meter_of(&m, 12.5e6, 40 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, (struct sg_layer_config){ .window_bytes = 1 }, 12);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of_files(&e, files, 3), NULL, NULL), 0);
	run_a_little(loop);
	/* One window, in blob order: f10 and f11 in one request (the tar header between
	 * them read along), f30 apart. */
	CHECK_EQ(e.gate->n, 2);
	CHECK_EQ(e.gate->q[0].offset, file_blob_offset(&e, 10));
	CHECK(e.gate->q[0].offset + e.gate->q[0].len > file_blob_offset(&e, 11) + FILE_SIZE / 2);
	CHECK(e.gate->q[0].offset + e.gate->q[0].len <= file_blob_offset(&e, 12));
	CHECK_EQ(e.gate->q[1].offset, file_blob_offset(&e, 30));
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	run_a_little(loop);
	struct sg_layer_stats st;
	sg_layer_stats(e.layer, &st);
	CHECK(st.replay_done);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_PROFILE], st.replay_bytes);
	CHECK_EQ(test_layer_read(loop, e.user, 0, file_node(&e, 11), 0, buf, FILE_SIZE),
		 (int32_t)FILE_SIZE);
	CHECK_MEM(buf, content + 11 * (size_t)FILE_SIZE, FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	/* f12, not in the profile and a gap too far from f11: not fetched along. */
	CHECK_EQ(test_layer_read(loop, e.user, 0, file_node(&e, 12), 0, buf, FILE_SIZE),
		 (int32_t)FILE_SIZE);
	CHECK_MEM(buf, content + 12 * (size_t)FILE_SIZE, FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK(st.ondemand_fetches >= 1);
	env_close(&e);
}

/* Files far apart in the blob (two or more files between them: each gap above
 * SG_LAYER_BATCH_GAP), recorded out of blob order; 4 x 128 KiB fit one replay request
 * on a 100 Mbit/s link (a third of its 1.9 MB cap). */
static const int far_files[] = { 17, 2, 30, 9 };
static const int far_sorted[] = { 2, 9, 17, 30 };
#define N_FAR 4

/* A layer replaying far_files over a gate on a 100 Mbit/s, 40 ms link; not yet run. */
static void open_far_replay(struct env *e, struct sg_link_meter *m, int index, bool vectored)
{
	struct sg_loop *loop;

	if (!blob)
		setup();
	meter_of(m, 12.5e6, 40 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open_gate(e, loop, m, (struct sg_layer_config){ .window_bytes = 1 }, index, vectored);
	CHECK_EQ(sg_layer_replay(e->layer, profile_of_files(e, far_files, N_FAR), NULL, NULL), 0);
}

static void wait_replay_done(struct env *e)
{
	struct sg_layer_stats st;
	double end = test_now_ms() + 5000;

	do {
		run_a_little(e->loop);
		sg_layer_stats(e->layer, &st);
		if (test_now_ms() > end)
			TEST_FAIL("the replay never ended: done %d, batches %u, jobs %u, gate %zu",
				  st.replay_done, e->layer->batches_inflight,
				  e->layer->jobs_inflight, e->gate->n);
	} while (!st.replay_done || e->layer->batches_inflight);
}

TEST(a_replay_of_far_apart_chunks_is_one_request_of_several_spans)
{
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;

	open_far_replay(&e, &m, 20, true);
	run_a_little(e.loop);
	/* One request, a span per file in blob order, the gaps between them left out. */
	CHECK_EQ(e.gate->n, 1);
	CHECK_EQ(e.gate->issued_vectored, 1);
	CHECK_EQ(e.gate->q[0].n_spans, N_FAR);
	uint64_t len = 0;
	for (size_t i = 0; i < N_FAR; i++) {
		const struct sg_range_span *sp = &e.gate->q[0].spans[i];
		CHECK_EQ(sp->offset, file_blob_offset(&e, far_sorted[i]));
		CHECK(sp->offset + sp->len <= file_blob_offset(&e, far_sorted[i] + 1));
		CHECK(sp->offset + sp->len > file_blob_offset(&e, far_sorted[i]) + FILE_SIZE);
		len += sp->len;
	}
	CHECK_EQ(e.gate->q[0].len, len);
	e.gate->automatic = true;
	gate_complete(e.gate, 0, (int)len);
	wait_replay_done(&e);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetch_requests, 1);
	CHECK_EQ(st.fetched_bytes, len);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_PROFILE], st.replay_bytes);
	CHECK_EQ(st.chunks_fetched, N_FAR * (FILE_SIZE / CHUNK));
	CHECK_EQ(st.verify_failures, 0);
	for (size_t i = 0; i < N_FAR; i++)
		CHECK_EQ(read_file(&e, 0, far_files[i]), (int32_t)FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);   /* every byte came from the one request */
	/* A file in a gap was not fetched along: it comes on demand, right. */
	CHECK_EQ(read_file(&e, 0, 5), (int32_t)FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK(st.ondemand_fetches >= 1);
	env_close(&e);
}

/* What a process's command line names (sg_layer_speculate_paths: small files all over the
 * blob) goes out gathered, a request of a span per file, each file's first chunk only, the
 * first named first: a request holds at most 256 KiB (its files are served when all of it
 * has arrived), so the first three named (64 KiB each) go in one, in blob order, the fourth
 * in the next.  A path the layer lacks or a higher layer has (found already) is not
 * fetched, and the files are then read without a miss. */
TEST(a_command_lines_files_go_out_gathered_in_one_request)
{
	static const char *const paths[] = { "f17", "f2", "no/such/file", "f30", "f9", "f5" };
	bool found[6] = { [5] = true };   /* f5: a higher layer has it */
	struct sg_link_meter m;
	struct sg_loop *loop;
	struct env e = { 0 };
	struct sg_layer_stats st;

	if (!blob)
		setup();
	meter_of(&m, 12.5e6, 40 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open_gate(&e, loop, &m, (struct sg_layer_config){ .window_bytes = 1, .speculate = true },
		      30, true);
	run_a_little(e.loop);
	CHECK_EQ(e.gate->n, 0);
	CHECK_EQ(sg_layer_speculate_paths(e.layer, paths, 6, found), 4);
	CHECK(found[0] && found[1] && !found[2] && found[3] && found[4] && found[5]);
	run_a_little(e.loop);
	CHECK(e.gate->n >= 1);
	static const int first_three[] = { 2, 17, 30 };   /* f17, f2, f30 named, in blob order */
	CHECK_EQ(e.gate->q[0].n_spans, 3);
	for (size_t i = 0; i < 3; i++) {
		const struct sg_range_span *sp = &e.gate->q[0].spans[i];
		CHECK_EQ(sp->offset, file_blob_offset(&e, first_three[i]));
		CHECK(sp->len < FILE_SIZE);   /* the first chunk */
	}
	e.gate->automatic = true;
	gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	run_a_little(e.loop);
	while (e.gate->n > 0) {
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
		run_a_little(e.loop);
	}
	CHECK(sg_layer_fetch_needed(e.layer, sg_toc_node(sg_layer_toc(e.layer),
							 file_node(&e, 5))->first_chunk));
	/* Asked again: here already, nothing more. */
	memset(found, 0, sizeof(found));
	CHECK_EQ(sg_layer_speculate_paths(e.layer, paths, 5, found), 4);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetch_requests, 2);
	static uint8_t buf[CHUNK];
	for (size_t i = 0; i < N_FAR; i++) {
		CHECK_EQ(test_layer_read(e.loop, e.user, 0, file_node(&e, far_files[i]), 0, buf, CHUNK),
			 (int32_t)CHUNK);
		CHECK_MEM(buf, content + (size_t)far_files[i] * FILE_SIZE, CHUNK);
	}
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	env_close(&e);
}

/* A byte damaged in the second span: that file's chunk fails its digest and is neither
 * served nor cached; the other spans' chunks of the same request are. */
TEST(a_damaged_byte_in_one_span_fails_that_chunk_only)
{
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	open_far_replay(&e, &m, 21, true);
	uint8_t *bad = malloc(blob_len);
	CHECK(bad);
	memcpy(bad, blob, blob_len);
	uint64_t at = file_blob_offset(&e, far_sorted[1]) + CHUNK / 2;   /* f9's first chunk */
	bad[at] ^= 0x40;
	e.gate->blob = bad;
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	wait_replay_done(&e);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetch_requests, 1);
	CHECK_EQ(e.gate->issued_vectored, 1);
	CHECK_EQ(st.verify_failures, 1);
	CHECK_EQ(st.chunks_fetched, N_FAR * (FILE_SIZE / CHUNK) - 1);
	uint32_t first9 = sg_toc_node(sg_layer_toc(e.layer), file_node(&e, 9))->first_chunk;
	CHECK(sg_layer_fetch_needed(e.layer, first9));        /* not cached */
	CHECK(!sg_layer_fetch_needed(e.layer, first9 + 1));   /* its neighbour in the span is */
	for (size_t i = 0; i < N_FAR; i++)
		if (far_files[i] != 9)
			CHECK_EQ(read_file(&e, 0, far_files[i]), (int32_t)FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	/* Read: fetched again on demand, damaged again, refused: EIO, never the bytes. */
	CHECK_EQ(read_file(&e, 0, 9), -EIO);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.verify_failures, 2);
	/* The source mended: the same file reads right (another reader: no failure hold). */
	e.gate->blob = blob;
	CHECK_EQ(read_file(&e, 1, 9), (int32_t)FILE_SIZE);
	env_close(&e);
	free(bad);
}

/* A source that reads one range at a time: the replay sends a request a span, as before,
 * and a batch of several spans is refused before anything starts. */
TEST(a_source_without_readv_gets_one_request_a_span)
{
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;

	open_far_replay(&e, &m, 22, false);
	const struct sg_toc *toc = sg_layer_toc(e.layer);
	uint32_t two[2] = { sg_toc_node(toc, file_node(&e, 5))->first_chunk,
			    sg_toc_node(toc, file_node(&e, 35))->first_chunk };
	CHECK_EQ(sg_layer_fetch_batch(e.layer, &e.gate->base, two, 2, SG_FETCH_PROFILE),
		 -EOPNOTSUPP);
	CHECK(sg_layer_fetch_needed(e.layer, two[0]) && sg_layer_fetch_needed(e.layer, two[1]));
	run_a_little(e.loop);
	CHECK_EQ(e.gate->n, N_FAR);   /* within the link's SG_LINK_AHEAD_REQUESTS */
	for (size_t i = 0; i < e.gate->n; i++) {
		CHECK_EQ(e.gate->q[i].n_spans, 0);
		CHECK_EQ(e.gate->q[i].offset, file_blob_offset(&e, far_sorted[i]));
	}
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	wait_replay_done(&e);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.fetch_requests, N_FAR);
	CHECK_EQ(e.gate->issued_vectored, 0);
	for (size_t i = 0; i < N_FAR; i++)
		CHECK_EQ(read_file(&e, 0, far_files[i]), (int32_t)FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	env_close(&e);
}

/* A multi-span request in flight with a reader waiting on a chunk of its third span: the
 * request cancelled, the reader is answered once (EIO); then the layer closes with another
 * one in flight and readers waiting: nothing completes or is freed before the source
 * answers, then every reader and the close exactly once. */
TEST(cancel_and_close_with_a_multi_span_batch_in_flight_answer_once)
{
	struct sg_link_meter m;
	struct env e = { 0 };
	static uint8_t buf[4][4096];
	struct test_op rd[4], uclose, lclose;
	bool destroyed = false;

	open_far_replay(&e, &m, 23, true);
	e.gate->destroyed = &destroyed;
	run_a_little(e.loop);
	CHECK_EQ(e.gate->n, 1);
	CHECK_EQ(e.gate->q[0].n_spans, N_FAR);
	test_op_init(&rd[0]);
	CHECK_EQ(sg_layer_read(e.user, 7, file_node(&e, 17), 0, 4096, buf[0], &rd[0].op,
			       test_op_cb), 0);
	run_a_little(e.loop);
	CHECK_EQ(e.gate->n, 1);     /* the reader joined the replay's chunk */
	CHECK_EQ(rd[0].calls, 0);
	CHECK_EQ(sg_range_cancel(&e.gate->base, e.gate->q[0].op), 0);
	test_op_wait(e.loop, &rd[0], 1000);
	run_a_little(e.loop);
	CHECK_EQ(rd[0].calls, 1);
	CHECK_EQ(rd[0].res, -EIO);
	CHECK_EQ(e.layer->batches_inflight, 0);
	/* The replay is over (a failed request ends it); readers now fetch on demand. */
	wait_replay_done(&e);
	e.gate->automatic = true;
	CHECK_EQ(read_file(&e, 1, 17), (int32_t)FILE_SIZE);
	env_close(&e);
	CHECK(destroyed);

	/* Again, closing this time. */
	struct env f = { 0 };
	destroyed = false;
	open_far_replay(&f, &m, 24, true);
	f.gate->destroyed = &destroyed;
	run_a_little(f.loop);
	CHECK_EQ(f.gate->n, 1);
	CHECK_EQ(f.gate->q[0].n_spans, N_FAR);
	for (int i = 0; i < 3; i++) {
		test_op_init(&rd[i]);
		CHECK_EQ(sg_layer_read(f.user, 10 + (uint32_t)i, file_node(&f, far_sorted[i + 1]), 0,
				       4096, buf[i], &rd[i].op, test_op_cb), 0);
	}
	run_a_little(f.loop);
	CHECK_EQ(f.gate->n, 1);
	test_op_init(&uclose);
	CHECK_EQ(sg_layer_user_close(f.user, &uclose.op, test_op_cb), 0);
	test_run_for(f.loop, 20);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(rd[i].calls, 1);
		CHECK_EQ(rd[i].res, -ECANCELED);
	}
	CHECK_EQ(uclose.calls, 1);
	test_op_init(&lclose);
	f.gate->defer_cancel = true;   /* the close asks; the request answers when it answers */
	f.gate->cancels = 0;
	CHECK_EQ(sg_layer_close(f.layer, &lclose.op, test_op_cb), 0);
	test_run_for(f.loop, 50);
	CHECK_EQ(f.gate->cancels, 1u);
	CHECK_EQ(lclose.calls, 0);   /* its request is still out */
	CHECK(!destroyed);
	gate_complete(f.gate, 0, (int)f.gate->q[0].len);
	test_op_wait(f.loop, &lclose, 1000);
	test_run_for(f.loop, 20);
	CHECK_EQ(lclose.calls, 1);
	CHECK_EQ(lclose.res, 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(rd[i].calls, 1);
	sg_layer_free(f.layer);
	CHECK(destroyed);
	CHECK_EQ(sg_loop_drain(f.loop, 2000), 0);
	sg_loop_free(f.loop);
}

/* Background fetch from a vectored source, every third file read (cached) before it starts:
 * the runs of missing files around them go out as spans of one request each, no cached
 * byte is fetched again, and the layer ends up local with the right bytes. */
TEST(background_takes_runs_apart_in_one_request)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_stats st;
	struct sg_layer_config cfg = background;

	if (!blob)
		setup();
	meter_of(&m, 10e6, 1 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	cfg.background_delay_ns = 300 * MS;
	env_open_gate(&e, loop, &m, cfg, 25, true);
	e.gate->automatic = true;
	for (int f = 0; f < NFILES; f += 3)
		CHECK_EQ(read_file(&e, 0, f), (int32_t)FILE_SIZE);
	sg_layer_stats(e.layer, &st);
	uint64_t ondemand = st.fetched_bytes;
	CHECK(!st.background_running);
	test_wait_layer_local(loop, e.layer, &st);
	CHECK(e.gate->most_spans > 1);
	CHECK(st.kind_fetched_bytes[SG_FETCH_BACKGROUND] > 0);
	CHECK(st.fetched_bytes - ondemand < blob_len - (NFILES / 3) * (uint64_t)FILE_SIZE);
	for (int f = 0; f < NFILES; f++)
		CHECK_EQ(read_file(&e, 0, f), (int32_t)FILE_SIZE);
	env_close(&e);
}

/* A prefetch on a measured link (1 MB/s, 10 ms: it delivers 25 kB in 1.5 lowest round trips
 * plus the pace time) sends its next request only when what the link owes drains that far,
 * so that the prioritized files arrive in their order instead of sharing the link: one
 * request in flight holds the next back however long (unpaced, it kept two of 4 MiB out
 * at once); once all but 15 kB of it arrived, the next goes out beside its tail.  Requests
 * carry a batch each (the link's cap is 256 KiB here), not 4 MiB.  The rest follows as the
 * answers come; every file is served, and the link owes nothing after. */
/* Answers every request of e's gate from now on, waits until the prefetch is done and the
 * layer local, and reads every `step`-th file back. */
static void prefetch_to_the_end(struct env *e, int step)
{
	struct sg_layer_stats st;

	e->gate->automatic = true;
	while (e->gate->n)
		gate_complete(e->gate, 0, (int)e->gate->q[0].len);
	double end = test_now_ms() + 10000;
	do {
		CHECK(sg_loop_run_once(e->loop, 20) >= 0);
		sg_layer_stats(e->layer, &st);
		CHECK(test_now_ms() < end);
	} while (!st.prefetch_done || st.chunks_present < st.chunks_total);
	for (int f = 0; f < NFILES; f += step)
		CHECK_EQ(read_file(e, 0, f), (int32_t)FILE_SIZE);
}

TEST(a_prefetch_on_a_measured_link_paces_its_requests_so_they_arrive_in_order)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_config cfg = { .prefetch = true, .prefetch_bytes = 1 << 30,
				       .window_bytes = 1 };

	setup();
	meter_of(&m, 1e6, 10 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, cfg, 0);
	test_run_for(loop, 150);
	CHECK_EQ(e.gate->n, 1);
	CHECK(e.gate->q[0].len <= ((size_t)256 << 10) + CHUNK);
	CHECK_EQ(m.owed, e.gate->q[0].len);
	gate_arrive(e.gate, 0, e.gate->q[0].len - 15000);
	test_run_for(loop, 60);
	CHECK_EQ(e.gate->n, 2);   /* beside the first one's last 15 kB */
	CHECK(e.gate->q[1].offset > e.gate->q[0].offset);
	test_run_for(loop, 100);
	CHECK_EQ(e.gate->n, 2);
	prefetch_to_the_end(&e, 7);
	CHECK(e.gate->issued > 8);
	CHECK_EQ(m.owed, 0);
	env_close(&e);
}

/* Two layers prefetching over one link pace together: the second sends nothing while the
 * first's request owes the link more than the horizon; closed while it waits on the pacing
 * timer, it closes at once (the timer cancelled, nothing sent after), and the first goes on
 * to the end. */
TEST(two_prefetches_on_one_link_pace_together_and_one_closes_while_it_waits)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env a = { 0 }, b = { 0 };
	struct sg_layer_config cfg = { .prefetch = true, .prefetch_bytes = 1 << 30,
				       .window_bytes = 1 };

	setup();
	meter_of(&m, 1e6, 10 * MS);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&a, loop, &m, cfg, 20);
	env_open(&b, loop, &m, cfg, 21);
	test_run_for(loop, 150);
	/* One request on the link: the first layer's (started first); the other waits. */
	CHECK_EQ(a.gate->n, 1);
	CHECK_EQ(b.gate->n, 0);
	CHECK_EQ(m.owed, a.gate->q[0].len);
	CHECK(b.layer->prefetching);
	/* The waiting layer closes: no request of it in flight, its pacing timer pending.  Its
	 * gate goes with it, and aborts if a read of it is still queued then. */
	CHECK_EQ(b.gate->issued, 0);
	test_layer_user_close(loop, b.user);
	test_layer_close(loop, b.layer);
	/* The first goes on to the end, every file right. */
	prefetch_to_the_end(&a, 5);
	CHECK_EQ(m.owed, 0);
	env_close(&a);
}

/* The room a request frees on a link is anybody's: layer B, waiting for room with requests of
 * its own in flight, sends its next one as soon as layer A's request ends, not when its own
 * does (python + profile: the base layer's replay ended, the python layer's next request
 * waited 90 ms for its own first one, the link idle).  A prefetches a few batches and has
 * nothing more; B fetches in the background and holds the rest of the link's requests. */
TEST(a_request_ending_on_one_layer_lets_another_waiting_for_room_send_at_once)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env a = { 0 }, b = { 0 };
	struct sg_layer_config pre = { .prefetch = true, .prefetch_bytes = 2 * (256u << 10),
				       .window_bytes = 1, .max_batch_bytes = 256u << 10 };
	struct sg_layer_config bg = background;

	bg.max_batch_bytes = 256u << 10;
	setup();
	meter_of(&m, 100e6, 1 * MS);   /* cap: 15 MB: only the link's requests limit them */
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&a, loop, &m, pre, 30);
	test_run_for(loop, 10);
	/* All of A's prefetch is out: fewer requests than the link takes. */
	size_t na = a.gate->n;
	CHECK(na >= 1 && na < SG_LINK_AHEAD_REQUESTS);
	env_open(&b, loop, &m, bg, 31);
	test_run_for(loop, 20);
	CHECK_EQ(b.gate->n, SG_LINK_AHEAD_REQUESTS - na);
	CHECK_EQ(m.ahead_requests, SG_LINK_AHEAD_REQUESTS);
	unsigned issued = b.gate->issued;
	/* A's first request ends: A has nothing more to send, B sends at once. */
	gate_complete(a.gate, 0, (int)a.gate->q[0].len);
	CHECK(sg_loop_run_once(loop, 0) >= 0);
	CHECK(sg_loop_run_once(loop, 0) >= 0);
	CHECK_EQ(b.gate->issued, issued + 1);
	/* Both go on to the end, every byte right. */
	a.gate->automatic = b.gate->automatic = true;
	while (a.gate->n)
		gate_complete(a.gate, 0, (int)a.gate->q[0].len);
	while (b.gate->n)
		gate_complete(b.gate, 0, (int)b.gate->q[0].len);
	struct sg_layer_stats st;
	test_wait_layer_local(loop, b.layer, &st);
	for (int f = 0; f < NFILES; f += 7)
		CHECK_EQ(read_file(&b, 0, f), (int32_t)FILE_SIZE);
	test_layer_user_close(loop, a.user);
	test_layer_close(loop, a.layer);
	env_close(&b);
}

/* A large program's stream (sg_layer_prefetch_file) has a chunk in flight, and two users of
 * the layer (two mounts, two containers) read it: both join that request, none is sent for
 * them, and each is answered once with the right bytes.  Then another file's stream request
 * fails under two waiting readers: each is answered once, -EIO (as for a replay's failed
 * request: they asked for those bytes), and the next read fetches the chunk anew, on
 * demand, the right bytes. */
/* A program of three chunks, the first two larger than the link's in-flight cap (1.5 MB on
 * this meter), the last small: a reader of its first chunk (on demand) brings the rest as
 * precise picks.  The second chunk's batch, larger than the cap, counts as half of it, so
 * the third goes out beside it instead of after it; each is answered with its bytes. */
#define BIG_CHUNK ((size_t)1600 << 10)
TEST(a_precise_batch_larger_than_the_cap_leaves_room_for_the_next_pick)
{
	struct sg_loop *loop;
	struct sg_link_meter m;
	struct env e = { 0 };
	struct sg_layer_config cfg = { .window_bytes = 1, .speculate = true };
	struct esgz_b b;
	size_t len = 2 * BIG_CHUNK + (64u << 10);
	uint8_t *prog = malloc(len);
	static uint8_t buf[4096];
	struct test_op t;

	CHECK(prog);
	make_dir();
	test_fill_seeded(prog, len, 4242);
	esgz_init(&b, 1);
	esgz_add(&b, "bin/prog", '0', 0755, prog, len, NULL, BIG_CHUNK, NULL);
	test_write_blob(&b, blob_path, &toc_digest);
	blob = gate_load_blob(blob_path, &blob_len);

	meter_of(&m, 10e6, 1 * MS);
	CHECK(sg_link_meter_inflight_cap(&m) < BIG_CHUNK);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, &m, cfg, 40);
	uint32_t node = sg_toc_lookup_path(sg_layer_toc(e.layer), "bin/prog");
	test_op_init(&t);
	CHECK_EQ(sg_layer_read(e.user, 0, node, 0, sizeof(buf), buf, &t.op, test_op_cb), 0);
	test_run_for(loop, 50);
	/* the first chunk (on demand), the second and the third, all on their way, and the first
	 * chunk's first bytes peeked at (sg_layer_spec_peek; random bytes: nothing follows) */
	struct sg_layer_stats st;
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.peek_requests, 1);
	CHECK_EQ(e.gate->n, 4);
	e.gate->automatic = true;
	while (e.gate->n)
		gate_complete(e.gate, 0, (int)e.gate->q[0].len);
	test_op_wait(loop, &t, 5000);
	CHECK_EQ(t.res, (int32_t)sizeof(buf));
	CHECK_MEM(buf, prog, sizeof(buf));
	test_run_for(loop, 50);
	CHECK_EQ(test_layer_read(loop, e.user, 0, node, len - sizeof(buf), buf, sizeof(buf)),
		 (int32_t)sizeof(buf));
	CHECK_MEM(buf, prog + len - sizeof(buf), sizeof(buf));
	sg_layer_stats(e.layer, &st);
	CHECK_EQ(st.ondemand_fetches, 1);   /* the rest came as picks */
	env_close(&e);
	free(prog);
}

TEST(two_readers_of_a_chunk_a_programs_stream_has_in_flight_are_each_answered_once)
{
	struct sg_loop *loop;
	struct env e = { 0 };
	struct sg_layer_user *u2;
	struct sg_layer_config cfg = { .window_bytes = 1 };
	struct test_op r1, r2;
	static uint8_t b1[CHUNK], b2[CHUNK];

	setup();
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	env_open(&e, loop, NULL, cfg, 30);
	CHECK_EQ(sg_layer_user_new(e.layer, &u2), 0);
	const struct sg_toc *toc = sg_layer_toc(e.layer);
	uint32_t first = sg_toc_node(toc, file_node(&e, 7))->first_chunk;
	sg_layer_prefetch_file(e.layer, first, first + 2);   /* f7: 2 chunks */
	sg_layer_prefetch_continue(e.layer);
	wait_pending(&e, 1000);
	CHECK(e.gate->n >= 1);
	CHECK_EQ(e.gate->q[0].offset, file_blob_offset(&e, 7));
	unsigned issued = e.gate->issued;
	/* f7's second chunk, in the stream's request, read by both users. */
	test_op_init(&r1);
	test_op_init(&r2);
	CHECK_EQ(sg_layer_read(e.user, 0, file_node(&e, 7), CHUNK, CHUNK, b1, &r1.op, test_op_cb), 0);
	CHECK_EQ(sg_layer_read(u2, 0, file_node(&e, 7), CHUNK, CHUNK, b2, &r2.op, test_op_cb), 0);
	test_run_for(loop, 20);
	CHECK_EQ(e.gate->issued, issued);   /* joined, nothing sent for them */
	CHECK_EQ(r1.calls + r2.calls, 0);
	size_t f7 = 0;
	while (e.gate->q[f7].offset != file_blob_offset(&e, 7))
		f7++;
	gate_complete(e.gate, f7, (int)e.gate->q[f7].len);
	test_op_wait(loop, &r1, 5000);
	test_op_wait(loop, &r2, 5000);
	test_run_for(loop, 20);
	CHECK_EQ(r1.calls, 1);
	CHECK_EQ(r2.calls, 1);
	CHECK_EQ(r1.res, (int32_t)CHUNK);
	CHECK_EQ(r2.res, (int32_t)CHUNK);
	CHECK(memcmp(b1, content + 7 * FILE_SIZE + CHUNK, CHUNK) == 0);
	CHECK(memcmp(b2, content + 7 * FILE_SIZE + CHUNK, CHUNK) == 0);
	/* f9's stream request: both read its first chunk, then it fails. */
	test_run_for(loop, 20);
	CHECK_EQ(e.gate->n, 0);
	uint32_t first9 = sg_toc_node(toc, file_node(&e, 9))->first_chunk;
	sg_layer_prefetch_file(e.layer, first9, first9 + 2);
	sg_layer_prefetch_continue(e.layer);
	wait_pending(&e, 1000);
	CHECK_EQ(e.gate->n, 1);
	CHECK_EQ(e.gate->q[0].offset, file_blob_offset(&e, 9));
	test_op_init(&r1);
	test_op_init(&r2);
	CHECK_EQ(sg_layer_read(e.user, 11, file_node(&e, 9), 0, CHUNK, b1, &r1.op, test_op_cb), 0);
	CHECK_EQ(sg_layer_read(u2, 12, file_node(&e, 9), 0, CHUNK, b2, &r2.op, test_op_cb), 0);
	test_run_for(loop, 20);
	issued = e.gate->issued;
	gate_complete(e.gate, 0, -EIO);
	test_op_wait(loop, &r1, 5000);
	test_op_wait(loop, &r2, 5000);
	test_run_for(loop, 20);
	CHECK_EQ(r1.calls, 1);
	CHECK_EQ(r2.calls, 1);
	CHECK_EQ(r1.res, -EIO);
	CHECK_EQ(r2.res, -EIO);
	CHECK_EQ(e.gate->issued, issued);   /* nothing sent behind their backs */
	e.gate->automatic = true;
	CHECK_EQ(test_layer_read(loop, u2, 13, file_node(&e, 9), 0, b2, CHUNK), (int32_t)CHUNK);
	CHECK(memcmp(b2, content + 9 * FILE_SIZE, CHUNK) == 0);
	CHECK_EQ(e.gate->issued, issued + 1);   /* fetched anew, once */
	/* The first readers read it now too, from memory. */
	CHECK_EQ(test_layer_read(loop, e.user, 11, file_node(&e, 9), 0, b1, CHUNK), (int32_t)CHUNK);
	CHECK(memcmp(b1, content + 9 * FILE_SIZE, CHUNK) == 0);
	CHECK_EQ(test_layer_read(loop, u2, 12, file_node(&e, 9), 0, b1, CHUNK), (int32_t)CHUNK);
	CHECK(memcmp(b1, content + 9 * FILE_SIZE, CHUNK) == 0);
	CHECK_EQ(e.gate->issued, issued + 1);
	test_layer_user_close(loop, u2);
	env_close(&e);
}

TEST_MAIN()
