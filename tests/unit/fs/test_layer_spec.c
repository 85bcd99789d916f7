/* Speculation by locality (fs/layer_spec.c) and the per-kind fetch account, through the
 * layer API over an eStargz blob on disk: which chunks a miss picks (the files after it in
 * its directory, then in the blob, up to the budget), how the budget grows and shrinks, the
 * cap on speculative bytes in flight (an on-demand miss still goes out at once), the bytes
 * fetched and used per kind (once per chunk, whoever reads it, a passthrough open
 * included), a close with speculative batches in flight, the libraries an ELF file needs,
 * and the trace a layer writes. */
#include "daemon/core/loop.h"
#include "fs/fetch_trace.h"
#include "fs/layer.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"
#include "fs/layer_spec.h"
#include "fs/layer_trust.h"
#include "fs/profile.h"
#include "tests/helpers/elf_build.h"
#include "tests/helpers/gate_source.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#include <fcntl.h>

#define PKG_FILE (64u << 10)
#define OTHER_FILE (256u << 10)
#define OTHER_COUNT 40
#define FAR_COUNT 16

static char dir[256], blob_path[300], cache[300];
static struct sg_digest toc_digest;

static void cleanup(void)
{
	test_rm_tree(dir);
}

/* A scratch directory for the blob and the cache, and a blob builder. */
static void start_blob(struct esgz_b *b)
{
	snprintf(dir, sizeof(dir), "/tmp/stargzd-spec-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(blob_path, sizeof(blob_path), "%s/blob", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	esgz_init(b, 1);
}

/* pkg/{a..h}.py, pkg/sub/x.py, pkg/z.py (after the subdirectory), other/o00..o39, then
 * far/dNN/f, one file a directory, NN = 00..FAR_COUNT-1. */
static void setup(void)
{
	static uint8_t data[OTHER_FILE];
	struct esgz_b b;
	char name[64];

	start_blob(&b);
	esgz_add(&b, "pkg", '5', 0755, NULL, 0, NULL, 0, NULL);
	for (char c = 'a'; c <= 'h'; c++) {
		snprintf(name, sizeof(name), "pkg/%c.py", c);
		test_fill_seeded(data, PKG_FILE, (uint32_t)c);
		esgz_add(&b, name, '0', 0644, data, PKG_FILE, NULL, 0, NULL);
	}
	esgz_add(&b, "pkg/sub", '5', 0755, NULL, 0, NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 1000);
	esgz_add(&b, "pkg/sub/x.py", '0', 0644, data, PKG_FILE, NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 1001);
	esgz_add(&b, "pkg/z.py", '0', 0644, data, PKG_FILE, NULL, 0, NULL);
	esgz_add(&b, "other", '5', 0755, NULL, 0, NULL, 0, NULL);
	for (int i = 0; i < OTHER_COUNT; i++) {
		snprintf(name, sizeof(name), "other/o%02d", i);
		test_fill_seeded(data, OTHER_FILE, 2000u + (uint32_t)i);
		esgz_add(&b, name, '0', 0644, data, OTHER_FILE, NULL, 0, NULL);
	}
	for (int i = 0; i < FAR_COUNT; i++) {
		snprintf(name, sizeof(name), "far/d%02d/f", i);
		test_fill_seeded(data, OTHER_FILE, 5000u + (uint32_t)i);
		esgz_add(&b, name, '0', 0644, data, OTHER_FILE, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);
}

struct env {
	struct sg_loop *loop;
	struct sg_layer *layer;
	struct sg_layer_user *user;
};

/* Exactly the chunks asked for on demand (no window), speculation on. */
static const struct sg_layer_config spec_cfg = { .window_bytes = 1, .speculate = true };

static void env_open(struct env *e, const struct sg_layer_config *cfg_in)
{
	struct sg_layer_config cfg = *cfg_in;

	cfg.cache_dir = cache;
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	test_layer_open(e->loop, blob_path, &toc_digest, &cfg, &e->layer, &e->user);
}

static void env_close(struct env *e)
{
	test_layer_teardown(e->loop, e->user, e->layer);
	memset(e, 0, sizeof(*e));
}

static uint32_t node(struct env *e, const char *path)
{
	int64_t n = sg_toc_lookup_path(sg_layer_toc(e->layer), path);
	CHECK(n >= 0);
	return (uint32_t)n;
}

/* Compressed bytes of the file's chunks. */
static uint64_t file_bytes(struct env *e, const char *path)
{
	const struct sg_toc *toc = sg_layer_toc(e->layer);
	const struct sg_toc_node *n = sg_toc_node(toc, node(e, path));
	const struct sg_toc_chunk *c = sg_toc_chunks(toc, n);
	uint64_t sum = 0;

	for (uint32_t i = 0; i < n->nchunks; i++)
		sum += c[i].next_offset - c[i].offset;
	return sum;
}

static uint64_t first_chunk_bytes(struct env *e, const char *path)
{
	const struct sg_toc *toc = sg_layer_toc(e->layer);
	const struct sg_toc_chunk *c = sg_toc_chunks(toc, sg_toc_node(toc, node(e, path)));
	return c[0].next_offset - c[0].offset;
}

static struct sg_layer_stats stats(struct env *e)
{
	struct sg_layer_stats st;
	sg_layer_stats(e->layer, &st);
	return st;
}

static int32_t read_file(struct env *e, const char *path, size_t len)
{
	static uint8_t buf[OTHER_FILE];
	return test_layer_read(e->loop, e->user, 0, node(e, path), 0, buf, len);
}

/* Is the file there without a miss?  Reads it and checks that no on-demand range request
 * went out (the read may start speculation of its own). */
static bool local(struct env *e, const char *path)
{
	uint64_t before = stats(e).ondemand_fetches;
	CHECK(read_file(e, path, 100) == 100);
	return stats(e).ondemand_fetches == before;
}

/* Runs the loop until no batch is in flight and the queue is empty. */
static void settle(struct env *e)
{
	double end = test_now_ms() + 10000;
	while (e->layer->batches_inflight || e->layer->spec_n || e->layer->jobs_inflight) {
		if (test_now_ms() > end)
			TEST_FAIL("speculation never settled");
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
	}
}

static void check_derived(struct env *e)
{
	struct sg_layer_stats st = stats(e);
	uint64_t f = 0, u = 0;
	for (int k = 0; k < SG_FETCH_KINDS; k++) {
		f += st.kind_fetched_bytes[k];
		u += st.kind_used_bytes[k];
		CHECK(st.kind_used_bytes[k] <= st.kind_fetched_bytes[k]);
	}
	CHECK_EQ(st.speculative_bytes, f - st.demanded_bytes);
	CHECK_EQ(st.speculative_used_bytes, u - st.demanded_bytes);
}

TEST(a_miss_takes_its_directory_then_the_files_after_it_in_the_blob)
{
	struct env e = { 0 };

	setup();
	env_open(&e, &spec_cfg);
	CHECK_EQ(stats(&e).spec_budget_bytes, SG_SPEC_BUDGET_START);
	CHECK_EQ(read_file(&e, "pkg/c.py", 100), 100);
	settle(&e);
	struct sg_layer_stats st = stats(&e);
	/* Siblings after c: d..h, z (the subdirectory is no file); before it: a, b; then in
	 * the blob sub/x.py, o00; o01 and the rest do not fit in what is left of the budget
	 * (1 MiB). */
	uint64_t want = 0;
	const char *const picked[] = { "pkg/d.py", "pkg/e.py", "pkg/f.py", "pkg/g.py", "pkg/h.py",
				       "pkg/z.py", "pkg/a.py", "pkg/b.py", "pkg/sub/x.py",
				       "other/o00" };
	for (size_t i = 0; i < sizeof(picked) / sizeof(picked[0]); i++)
		want += file_bytes(&e, picked[i]);
	CHECK(want <= SG_SPEC_BUDGET_START &&
	      want + file_bytes(&e, "other/o01") > SG_SPEC_BUDGET_START);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_SPEC], want);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_ONDEMAND], file_bytes(&e, "pkg/c.py"));
	CHECK_EQ(st.kind_used_bytes[SG_FETCH_ONDEMAND], file_bytes(&e, "pkg/c.py"));
	CHECK_EQ(st.kind_used_bytes[SG_FETCH_SPEC], 0);
	CHECK_EQ(st.ahead_inflight_bytes, 0);
	check_derived(&e);
	CHECK(local(&e, "pkg/h.py"));
	CHECK(local(&e, "pkg/a.py"));
	CHECK(local(&e, "pkg/sub/x.py"));
	CHECK(local(&e, "other/o00"));
	CHECK(!local(&e, "other/o01"));
	env_close(&e);
}

TEST(the_budget_grows_with_bytes_read_and_shrinks_with_misses)
{
	struct env e = { 0 };
	char name[32];

	setup();
	env_open(&e, &spec_cfg);
	CHECK_EQ(read_file(&e, "pkg/a.py", 100), 100);
	settle(&e);
	/* Reading what was speculated: each byte adds one to the budget. */
	uint64_t used = 0;
	for (char c = 'b'; c <= 'h'; c++) {
		snprintf(name, sizeof(name), "pkg/%c.py", c);
		CHECK(local(&e, name));
		used += file_bytes(&e, name);
	}
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC], used);
	CHECK_EQ(stats(&e).spec_budget_bytes, SG_SPEC_BUDGET_START + used);
	/* Reading it again counts nothing more. */
	CHECK(local(&e, "pkg/b.py"));
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC], used);
	check_derived(&e);
	/* Misses in new files that speculation did not reach (alone in their directories,
	 * read backwards through the blob): an eighth off each time, down to the floor. */
	uint64_t budget = stats(&e).spec_budget_bytes;
	for (int i = FAR_COUNT - 1; i >= 0; i--) {
		if (i == 0)
			e.layer->spec_budget = budget = SG_SPEC_BUDGET_MIN + 1000;
		snprintf(name, sizeof(name), "far/d%02d/f", i);
		CHECK(!local(&e, name));
		budget -= budget / 8;
		if (budget < SG_SPEC_BUDGET_MIN)
			budget = SG_SPEC_BUDGET_MIN;
		CHECK_EQ(stats(&e).spec_budget_bytes, budget);
		settle(&e);
	}
	CHECK_EQ(stats(&e).spec_budget_bytes, SG_SPEC_BUDGET_MIN);
	env_close(&e);
}

/* The hit rate of the neighbours of misses (bytes read ÷ fetched, judged from 1 MiB fetched
 * on): under a quarter, a miss takes only its directory and halves the budget; under a
 * sixteenth, no neighbours at all; a precise pick still goes, and its bytes read do not
 * count.  The account is set by hand here. */
TEST(speculation_that_is_not_read_backs_off_but_precise_picks_stay)
{
	struct env e = { 0 };

	setup();
	env_open(&e, &spec_cfg);
	e.layer->spec_budget = 4u << 20;
	e.layer->spec_nb_fetched = 4u << 20;
	e.layer->spec_nb_used = 512u << 10;   /* an eighth */
	CHECK(!local(&e, "pkg/a.py"));
	settle(&e);
	uint64_t want = file_bytes(&e, "pkg/z.py");
	for (char c = 'b'; c <= 'h'; c++) {
		char name[16];
		snprintf(name, sizeof(name), "pkg/%c.py", c);
		want += file_bytes(&e, name);
	}
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], want);
	CHECK_EQ(e.layer->spec_nb_fetched, (4u << 20) + want);
	CHECK_EQ(stats(&e).spec_budget_bytes, 4u << 20);   /* the first miss takes nothing off */
	/* After it in the blob: not taken.  Its miss, in a new file, halves the budget. */
	CHECK(!local(&e, "pkg/sub/x.py"));
	CHECK_EQ(stats(&e).spec_budget_bytes, 2u << 20);
	/* Under a sixteenth: a miss takes nothing, and halves the budget again. */
	e.layer->spec_nb_used = 0;
	uint64_t before = stats(&e).kind_fetched_bytes[SG_FETCH_SPEC];
	CHECK(!local(&e, "other/o10"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], before);
	CHECK_EQ(stats(&e).spec_budget_bytes, 1u << 20);
	/* A precise pick still goes. */
	CHECK_EQ(sg_layer_speculate_path(e.layer, "/other/o11"), 0);
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC],
		 before + first_chunk_bytes(&e, "other/o11"));
	CHECK(local(&e, "other/o11"));
	CHECK_EQ(e.layer->spec_nb_used, 0);
	/* Neighbours queued while the rate was good are dropped once it falls: of far/d01..15
	 * (3.75 MiB after far/d00 in the blob) only what was in flight comes. */
	struct test_op t;
	static uint8_t buf[100];
	e.layer->spec_budget = 8u << 20;
	e.layer->spec_nb_fetched = e.layer->spec_nb_used = 64u << 20;
	before = stats(&e).kind_fetched_bytes[SG_FETCH_SPEC];
	test_op_init(&t);
	CHECK_EQ(sg_layer_read(e.user, 0, node(&e, "far/d00/f"), 0, 100, buf, &t.op, test_op_cb), 0);
	CHECK(e.layer->spec_n > 0);
	e.layer->spec_nb_used = 0;
	test_op_wait(e.loop, &t, 5000);
	settle(&e);
	CHECK(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC] - before <=
	      SG_LAYER_AHEAD_CAP + file_bytes(&e, "far/d01/f"));
	CHECK(!local(&e, "far/d15/f"));
	e.layer->spec_budget = 1u << 20;
	/* A neighbour read: counted, and the budget grows by as much. */
	CHECK(local(&e, "pkg/b.py"));
	CHECK_EQ(e.layer->spec_nb_used, file_bytes(&e, "pkg/b.py"));
	CHECK_EQ(stats(&e).spec_budget_bytes, (1u << 20) + file_bytes(&e, "pkg/b.py"));
	env_close(&e);
}

/* A second miss in a directory missed lately speculates its files even while the rate says
 * no (a compiler's headers, after its programs' neighbours went unread), within the budget,
 * and only its directory; a miss in a directory not seen lately still takes nothing. */
TEST(a_second_miss_in_one_directory_takes_its_files_whatever_the_rate)
{
	struct env e = { 0 };

	setup();
	env_open(&e, &spec_cfg);
	e.layer->spec_budget = 2u << 20;
	e.layer->spec_nb_fetched = 4u << 20;
	e.layer->spec_nb_used = 0;   /* under a sixteenth: no neighbours */
	CHECK(!local(&e, "other/o10"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	CHECK(!local(&e, "far/d03/f"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	/* other/ again: its files after o20, within the budget halved twice (512 KiB). */
	CHECK(!local(&e, "other/o20"));
	settle(&e);
	uint64_t spec = stats(&e).kind_fetched_bytes[SG_FETCH_SPEC];
	CHECK_EQ(stats(&e).spec_budget_bytes, 512u << 10);
	CHECK(spec >= file_bytes(&e, "other/o21"));
	CHECK(spec <= 512u << 10);
	CHECK_EQ(e.layer->spec_hot_left, 0);
	CHECK(local(&e, "other/o21"));
	/* Not the files after the directory in the blob. */
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], spec);
	CHECK(!local(&e, "far/d00/f"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], spec);
	check_derived(&e);
	env_close(&e);
}

/* A program's neighbours are other programs, rarely run with it (python3.11's in /usr/bin:
 * 1 MB, none read; gcc's: the neighbours that drove the hit rate down): a miss in an
 * executable file takes none, a miss in a data file of the same directory does. */
TEST(a_miss_in_an_executable_takes_no_neighbours)
{
	static uint8_t data[PKG_FILE];
	struct esgz_b b;
	struct env e = { 0 };

	start_blob(&b);
	esgz_add(&b, "tools", '5', 0755, NULL, 0, NULL, 0, NULL);
	const char *const names[] = { "tools/a", "tools/b", "tools/c", "tools/d" };
	const unsigned modes[] = { 0755, 0755, 0644, 0644 };
	for (int i = 0; i < 4; i++) {
		test_fill_seeded(data, PKG_FILE, 9000u + (uint32_t)i);
		memcpy(data, "#!/bin/sh\n", 10);   /* not an ELF file: no precise picks */
		esgz_add(&b, names[i], '0', modes[i], data, PKG_FILE, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);
	env_open(&e, &spec_cfg);
	CHECK(!local(&e, "tools/a"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	CHECK(!local(&e, "tools/b"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	/* A data file: its neighbours after it, then before it (the programs too). */
	CHECK(!local(&e, "tools/c"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], file_bytes(&e, "tools/d"));
	check_derived(&e);
	env_close(&e);
}

TEST(speculative_bytes_in_flight_stay_under_the_cap_and_misses_go_out_at_once)
{
	struct env e = { 0 };
	struct test_op t1, t2;
	static uint8_t b1[100], b2[100];

	setup();
	env_open(&e, &(struct sg_layer_config){ .window_bytes = 1, .speculate = true,
						 .spec_budget_max = 8u << 20 });
	e.layer->spec_budget = 8u << 20;   /* as if it had paid for a while */
	e.layer->spec_nb_fetched = e.layer->spec_nb_used = 64u << 20;
	test_op_init(&t1);
	CHECK_EQ(sg_layer_read(e.user, 0, node(&e, "other/o00"), 0, 100, b1, &t1.op, test_op_cb), 0);
	struct sg_layer_stats st = stats(&e);
	uint64_t one_file = file_bytes(&e, "other/o01");
	CHECK(st.ahead_inflight_bytes > 0);
	CHECK(st.ahead_inflight_bytes <= SG_LAYER_AHEAD_CAP + one_file);
	CHECK(e.layer->spec_n > 0);   /* the rest waits here, not in front of readers */
	/* A miss elsewhere while the cap is full: its range request starts within the call. */
	uint64_t requests = st.fetch_requests;
	test_op_init(&t2);
	CHECK_EQ(sg_layer_read(e.user, 0, node(&e, "pkg/a.py"), 0, 100, b2, &t2.op, test_op_cb), 0);
	CHECK_EQ(stats(&e).ondemand_fetches, 2u);
	CHECK(stats(&e).fetch_requests >= requests + 1);
	/* While it all runs, never more than the cap (and a member) in flight. */
	double end = test_now_ms() + 10000;
	while (t1.calls == 0 || t2.calls == 0 || e.layer->batches_inflight || e.layer->spec_n) {
		CHECK(stats(&e).ahead_inflight_bytes <= SG_LAYER_AHEAD_CAP + one_file);
		CHECK(e.layer->ahead_batches <= SG_LAYER_AHEAD_BATCHES);
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(e.loop, 5) >= 0);
	}
	CHECK_EQ(t1.res, 100);
	CHECK_EQ(t2.res, 100);
	/* The budget of the first miss was spent (o01 on), less what the second miss's own
	 * shrinking took off for its speculation. */
	CHECK(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC] >= (4u << 20));
	env_close(&e);
}

TEST(used_counts_once_per_chunk_for_two_readers_and_for_a_passthrough_open)
{
	struct env e = { 0 };
	struct test_op t1, t2;
	static uint8_t b1[100], b2[100];

	setup();
	env_open(&e, &spec_cfg);
	/* Two readers of one missing chunk: one fetch, used once, demanded once. */
	test_op_init(&t1);
	test_op_init(&t2);
	CHECK_EQ(sg_layer_read(e.user, 1, node(&e, "pkg/a.py"), 0, 100, b1, &t1.op, test_op_cb), 0);
	CHECK_EQ(sg_layer_read(e.user, 2, node(&e, "pkg/a.py"), 50, 50, b2, &t2.op, test_op_cb), 0);
	test_op_wait(e.loop, &t1, 5000);
	test_op_wait(e.loop, &t2, 5000);
	CHECK_EQ(stats(&e).ondemand_fetches, 1u);
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_ONDEMAND], file_bytes(&e, "pkg/a.py"));
	CHECK_EQ(stats(&e).demanded_bytes, file_bytes(&e, "pkg/a.py"));
	settle(&e);
	/* Two readers of one speculated chunk: used once. */
	test_op_init(&t1);
	test_op_init(&t2);
	CHECK_EQ(sg_layer_read(e.user, 1, node(&e, "pkg/b.py"), 0, 100, b1, &t1.op, test_op_cb), 0);
	CHECK_EQ(sg_layer_read(e.user, 2, node(&e, "pkg/b.py"), 0, 100, b2, &t2.op, test_op_cb), 0);
	test_op_wait(e.loop, &t1, 5000);
	test_op_wait(e.loop, &t2, 5000);
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC], file_bytes(&e, "pkg/b.py"));
	/* A passthrough open of a speculated file is a use: the kernel reads it from now on. */
	test_run_for(e.loop, 100);   /* the cache writes land */
	int fd = sg_layer_open_verified(e.layer, node(&e, "pkg/c.py"));
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC],
		 file_bytes(&e, "pkg/b.py") + file_bytes(&e, "pkg/c.py"));
	fd = sg_layer_open_verified(e.layer, node(&e, "pkg/c.py"));
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC],
		 file_bytes(&e, "pkg/b.py") + file_bytes(&e, "pkg/c.py"));
	check_derived(&e);
	/* Speculation off: a miss fetches what it fetched before, nothing more. */
	env_close(&e);
	test_rm_tree(cache);
	env_open(&e, &(struct sg_layer_config){ .window_bytes = 1 });
	CHECK_EQ(read_file(&e, "pkg/a.py", 100), 100);
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	CHECK(!local(&e, "pkg/b.py"));
	env_close(&e);
}

TEST(a_close_with_speculation_in_flight_waits_for_it)
{
	struct env e = { 0 };
	struct test_op t;
	static uint8_t buf[100];

	setup();
	env_open(&e, &spec_cfg);
	e.layer->spec_budget = 8u << 20;
	test_op_init(&t);
	CHECK_EQ(sg_layer_read(e.user, 0, node(&e, "other/o00"), 0, 100, buf, &t.op, test_op_cb), 0);
	CHECK(stats(&e).ahead_inflight_bytes > 0);
	/* The user leaves (its read cancelled), then the layer closes: the batches in flight
	 * complete first (the free check would abort otherwise) and the queue starts nothing. */
	test_layer_user_close(e.loop, e.user);
	CHECK_EQ(t.calls, 1);
	struct test_op c;
	test_op_init(&c);
	CHECK_EQ(sg_layer_close(e.layer, &c.op, test_op_cb), 0);
	test_op_wait(e.loop, &c, 10000);
	CHECK_EQ(e.layer->batches_inflight, 0u);
	CHECK_EQ(e.layer->ahead_inflight, 0u);
	sg_layer_free(e.layer);
	CHECK_EQ(sg_loop_drain(e.loop, 2000), 0);
	sg_loop_free(e.loop);
}

/* The lines a layer writes: reads that waited, each range request, and its summary. */
TEST(a_layer_writes_its_trace)
{
	struct env e = { 0 };
	struct sg_fetch_trace *trace;
	char line[8192], path[512];

	setup();
	CHECK_EQ(sg_fetch_trace_open(dir, &trace), 0);
	snprintf(path, sizeof(path), "%s", sg_fetch_trace_path(trace));
	env_open(&e, &(struct sg_layer_config){ .window_bytes = 1, .speculate = true,
						 .trace = trace, .trace_layer = "sha256:feed" });
	CHECK_EQ(read_file(&e, "pkg/a.py", 100), 100);
	settle(&e);
	CHECK(local(&e, "pkg/b.py"));   /* from memory: no line */
	struct sg_layer_stats st = stats(&e);
	char fetched[256], used[256];
	snprintf(fetched, sizeof(fetched), ",\"fetched\":{\"ondemand\":%llu,\"spec\":%llu,"
		 "\"prefetch\":0,\"background\":0,\"stream\":0,\"profile\":0},",
		 (unsigned long long)st.kind_fetched_bytes[SG_FETCH_ONDEMAND],
		 (unsigned long long)st.kind_fetched_bytes[SG_FETCH_SPEC]);
	snprintf(used, sizeof(used), ",\"used\":{\"ondemand\":%llu,\"spec\":%llu,"
		 "\"prefetch\":0,\"background\":0,\"stream\":0,\"profile\":0}}\n",
		 (unsigned long long)file_bytes(&e, "pkg/a.py"),
		 (unsigned long long)file_bytes(&e, "pkg/b.py"));
	CHECK(st.kind_fetched_bytes[SG_FETCH_SPEC] > 0);
	env_close(&e);
	sg_fetch_trace_close(trace);

	FILE *f = fopen(path, "r");
	int reads = 0, ondemand = 0, spec = 0, layers = 0;
	CHECK(f);
	CHECK(fgets(line, sizeof(line), f));
	CHECK(strstr(line, "\"ev\":\"start\""));   /* the clock's origin, first */
	while (fgets(line, sizeof(line), f)) {
		CHECK(strstr(line, "\"layer\":\"sha256:feed\""));
		if (strstr(line, "\"ev\":\"read\"")) {
			CHECK(strstr(line, "\"path\":\"pkg/a.py\",\"off\":0,\"len\":100,"));
			CHECK(strstr(line, "\"net\":true}"));
			reads++;
		}
		if (strstr(line, "\"ev\":\"fetch\"") && strstr(line, "\"kind\":\"ondemand\""))
			ondemand++;
		if (strstr(line, "\"ev\":\"fetch\"") && strstr(line, "\"kind\":\"spec\""))
			spec++;
		if (strstr(line, "\"ev\":\"layer\"")) {
			if (!strstr(line, fetched) || !strstr(line, used))
				TEST_FAIL("summary %s, want %s and %s", line, fetched, used);
			layers++;
		}
	}
	fclose(f);
	CHECK_EQ(reads, 1);
	CHECK_EQ(ondemand, 1);
	CHECK(spec >= 1);
	CHECK_EQ(layers, 1);
}

/* A base layer: the files every container start reads (the user and group files, /bin/sh,
 * the C.UTF-8 LC_CTYPE, the converters' cache, /etc/localtime through its symlink), and
 * one nobody names; then bin/big, an ELF program of three 64 KiB chunks, and bin/huge, one
 * of 12 MiB (three 4 MiB chunks, each larger than any speculation budget). */
static void setup_base(void)
{
	static uint8_t data[PKG_FILE];
	static const char *const starts[] = {
		"etc/passwd", "etc/group", "bin/dash", "usr/lib/locale/C.utf8/LC_CTYPE",
		"usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
		"usr/share/zoneinfo/Etc/UTC", "etc/unnamed",
	};
	struct esgz_b b;

	start_blob(&b);
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		test_fill_seeded(data, PKG_FILE, 8000u + (uint32_t)i);
		esgz_add(&b, starts[i], '0', 0644, data, 3000, NULL, 0, NULL);
	}
	esgz_add(&b, "bin/sh", '2', 0777, NULL, 0, "dash", 0, NULL);
	esgz_add(&b, "etc/localtime", '2', 0777, NULL, 0, "/usr/share/zoneinfo/Etc/UTC", 0, NULL);
	static uint8_t big[3 * PKG_FILE];
	size_t n = test_elf_build(big, sizeof(big), NULL, 0, sizeof(big));
	CHECK_EQ(n, sizeof(big));
	test_fill_seeded(big + 4096, sizeof(big) - 4096, 8100);
	esgz_add(&b, "bin/big", '0', 0755, big, sizeof(big), NULL, PKG_FILE, NULL);
	size_t huge_len = (size_t)12 << 20;
	uint8_t *huge = malloc(huge_len);
	CHECK(huge);
	CHECK_EQ(test_elf_build(huge, huge_len, NULL, 0, huge_len), huge_len);
	test_fill_seeded(huge + 4096, huge_len - 4096, 8200);   /* chunks that differ */
	esgz_add(&b, "bin/huge", '0', 0755, huge, huge_len, NULL, (size_t)4 << 20, NULL);
	free(huge);
	test_write_blob(&b, blob_path, &toc_digest);
}

/* Is chunk i of the file local (no fetch needed)? */
static bool chunk_local(struct env *e, const char *path, uint32_t i)
{
	const struct sg_toc_node *n = sg_toc_node(sg_layer_toc(e->layer), node(e, path));
	CHECK(i < n->nchunks);
	return !sg_layer_fetch_needed(e->layer, n->first_chunk + i);
}

TEST(a_base_layer_fetches_what_every_container_start_reads_before_it_is_read)
{
	static const char *const starts[] = {   /* bin/sh and etc/localtime resolved */
		"etc/passwd", "etc/group", "bin/dash", "usr/lib/locale/C.utf8/LC_CTYPE",
		"usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", "usr/share/zoneinfo/Etc/UTC",
	};
	struct env e = { 0 };

	setup_base();
	env_open(&e, &spec_cfg);   /* sg_layer_start */
	settle(&e);
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		CHECK(local(&e, starts[i]));
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC],
		 stats(&e).kind_fetched_bytes[SG_FETCH_SPEC]);
	CHECK(!local(&e, "etc/unnamed"));
	env_close(&e);
}

/* What a base layer's start fetches, in a Debian base's blob order: the group file, the
 * loader's cache and the user file together at the start, the shell a little after them,
 * libc far away.  Queued in the order of their lists (the loader's cache, libc, the user
 * file, the group file, the shell), they go out as two requests: libc, and the rest
 * gathered into one, wherever they stand in the queue. */
TEST(the_start_picks_near_each_other_go_out_as_one_request)
{
	static uint8_t data[4 * PKG_FILE];
	static const char *const near[] = { "etc/group", "etc/ld.so.cache", "etc/passwd",
					    "bin/dash" };
	struct esgz_b b;
	struct env e = { 0 };

	start_blob(&b);
	for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
		test_fill_seeded(data, PKG_FILE, 8300u + (uint32_t)i);
		esgz_add(&b, near[i], '0', 0644, data, 3000, NULL, 0, NULL);
	}
	esgz_add(&b, "bin/sh", '2', 0777, NULL, 0, "dash", 0, NULL);
	test_fill_seeded(data, sizeof(data), 8310);
	esgz_add(&b, "usr/share/filler", '0', 0644, data, sizeof(data), NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 8311);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libc.so.6", '0', 0755, data, 3000, NULL, 0, NULL);
	test_write_blob(&b, blob_path, &toc_digest);

	env_open(&e, &spec_cfg);   /* sg_layer_start */
	settle(&e);
	CHECK_EQ(stats(&e).fetch_requests, 2);
	for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++)
		CHECK(local(&e, near[i]));
	CHECK(local(&e, "usr/lib/x86_64-linux-gnu/libc.so.6"));
	CHECK_EQ(stats(&e).fetch_requests, 2);
	CHECK(!local(&e, "usr/share/filler"));
	env_close(&e);
}

/* A layer that prefetches (an optimized image's prioritized files; here the blob's first
 * bytes) knows what its workload reads at start: only what runc reads before the process
 * starts, the user and group files, is fetched beside it. */
TEST(a_prefetching_layer_fetches_only_the_user_and_group_files_at_start)
{
	struct sg_layer_config cfg = spec_cfg;
	struct env e = { 0 };

	cfg.prefetch = true;
	cfg.prefetch_bytes = 1;
	setup_base();
	env_open(&e, &cfg);
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC],
		 file_bytes(&e, "etc/passwd") + file_bytes(&e, "etc/group"));
	CHECK(local(&e, "etc/passwd"));
	CHECK(local(&e, "etc/group"));
	env_close(&e);
}

/* A reader asks for the first chunk of a program (0755) that is not here: the rest of it
 * is on its way before that chunk arrives (the kernel touches the data segment, at its end,
 * as soon as it maps it); not for a program too large to be fetched whole. */
TEST(a_program_being_read_brings_the_rest_of_itself_before_its_first_chunk_arrives)
{
	struct env e = { 0 };
	struct test_op t;
	static uint8_t buf[100];

	setup_base();
	env_open(&e, &spec_cfg);
	settle(&e);
	const struct sg_toc_node *n = sg_toc_node(sg_layer_toc(e.layer), node(&e, "bin/big"));
	CHECK_EQ(n->nchunks, 3u);
	test_op_init(&t);
	CHECK_EQ(sg_layer_read(e.user, 0, node(&e, "bin/big"), 0, sizeof(buf), buf, &t.op,
			       test_op_cb), 0);
	/* Nothing has arrived (no loop turn yet), and chunks 1 and 2 are asked for. */
	CHECK_EQ(t.calls, 0);
	CHECK(e.layer->jobs[n->first_chunk] != NULL);
	CHECK(e.layer->jobs[n->first_chunk + 1] != NULL);
	CHECK(e.layer->jobs[n->first_chunk + 2] != NULL);
	test_op_wait(e.loop, &t, 10000);
	CHECK_EQ(t.res, (int32_t)sizeof(buf));
	settle(&e);
	CHECK(chunk_local(&e, "bin/big", 1) && chunk_local(&e, "bin/big", 2));
	const struct sg_toc_node *h = sg_toc_node(sg_layer_toc(e.layer), node(&e, "bin/huge"));
	test_op_init(&t);
	CHECK_EQ(sg_layer_read(e.user, 0, node(&e, "bin/huge"), 0, sizeof(buf), buf, &t.op,
			       test_op_cb), 0);
	CHECK(e.layer->jobs[h->first_chunk] != NULL);
	CHECK(e.layer->jobs[h->first_chunk + 1] == NULL);
	test_op_wait(e.loop, &t, 10000);
	CHECK_EQ(t.res, (int32_t)sizeof(buf));
	settle(&e);
	env_close(&e);
}

TEST(an_elf_file_in_use_brings_the_rest_of_itself_and_a_large_one_streams)
{
	struct env e = { 0 };

	setup_base();
	env_open(&e, &spec_cfg);
	settle(&e);
	CHECK(!chunk_local(&e, "bin/big", 1) && !chunk_local(&e, "bin/big", 2));
	CHECK_EQ(read_file(&e, "bin/big", 100), 100);   /* the loader reads its header */
	settle(&e);
	CHECK(chunk_local(&e, "bin/big", 1) && chunk_local(&e, "bin/big", 2));
	/* Past 8 MiB the rest streams behind the first chunk, as speculation, one request
	 * after the other (the precise queue does not take it). */
	uint64_t spec = stats(&e).kind_fetched_bytes[SG_FETCH_SPEC];
	CHECK(!chunk_local(&e, "bin/huge", 1) && !chunk_local(&e, "bin/huge", 2));
	CHECK_EQ(read_file(&e, "bin/huge", 100), 100);
	CHECK(e.layer->file_streaming);
	CHECK_EQ(e.layer->spec_n, 0);
	settle(&e);
	CHECK(!e.layer->file_streaming);
	for (uint32_t i = 0; i < 3; i++)
		CHECK(chunk_local(&e, "bin/huge", i));
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC],
		 spec + file_bytes(&e, "bin/huge") - first_chunk_bytes(&e, "bin/huge"));
	uint64_t ondemand = stats(&e).ondemand_fetches;
	static uint8_t buf[100];
	CHECK_EQ(test_layer_read(e.loop, e.user, 0, node(&e, "bin/huge"), (8u << 20) + 5, buf,
				 sizeof(buf)), 100);
	CHECK_EQ(stats(&e).ondemand_fetches, ondemand);
	check_derived(&e);
	env_close(&e);
	/* A close while the stream has requests in flight waits for them (ASan: nothing
	 * freed under them). */
	test_rm_tree(cache);
	env_open(&e, &spec_cfg);
	settle(&e);
	CHECK_EQ(read_file(&e, "bin/huge", 100), 100);
	CHECK(e.layer->file_streaming && e.layer->batches_inflight > 0);
	env_close(&e);
}

/* bin/prog needs libfoo.so.1 (a symlink to libfoo.so.1.2 in usr/lib/x86_64-linux-gnu),
 * which needs libbar.so (in usr/lib); between them in the blob, fillers that use up the
 * budget of the miss, and after them a library nobody needs. */
static void setup_elf(void)
{
	static uint8_t data[340u << 10];
	const char *const prog_needs[] = { "libfoo.so.1" }, *const foo_needs[] = { "libbar.so" };
	struct esgz_b b;
	char name[64];

	start_blob(&b);
	size_t n = test_elf_build(data, sizeof(data), prog_needs, 1, 2000);
	esgz_add(&b, "bin/prog", '0', 0755, data, n, NULL, 0, NULL);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "filler/f%d", i);
		test_fill_seeded(data, sizeof(data), 3000u + (uint32_t)i);
		esgz_add(&b, name, '0', 0644, data, sizeof(data), NULL, 0, NULL);
	}
	test_fill_seeded(data, PKG_FILE, 4000);
	n = test_elf_build(data, PKG_FILE, foo_needs, 1, 0);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2", '0', 0755, data, PKG_FILE, NULL, 0,
		 NULL);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1", '2', 0777, NULL, 0, "libfoo.so.1.2",
		 0, NULL);
	test_fill_seeded(data, PKG_FILE, 4001);
	esgz_add(&b, "usr/lib/libbar.so", '0', 0755, data, PKG_FILE, NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 4002);
	esgz_add(&b, "usr/lib/libunused.so", '0', 0755, data, PKG_FILE, NULL, 0, NULL);
	test_write_blob(&b, blob_path, &toc_digest);
}

/* The kernel clears the tail of a program's data segment as it maps it, before the loader
 * runs: the chunk where that segment ends goes first, ahead of the rest of the file. */
TEST(the_chunk_where_a_programs_data_segment_ends_goes_first)
{
	struct env e = { 0 };
	static uint8_t head[3 * PKG_FILE];

	setup_base();
	env_open(&e, &spec_cfg);
	settle(&e);
	const struct sg_toc_node *n = sg_toc_node(sg_layer_toc(e.layer), node(&e, "bin/big"));
	CHECK_EQ(n->nchunks, 3u);
	/* bin/big's header, its one PT_LOAD made writable: its data ends in its last chunk. */
	CHECK_EQ(test_elf_build(head, sizeof(head), NULL, 0, sizeof(head)), sizeof(head));
	test_elf_put(head + 64 + 4, 6, 4);   /* PF_R | PF_W */
	CHECK_EQ(e.layer->spec_n, 0);
	sg_layer_spec_contents(e.layer, n->first_chunk, head, PKG_FILE);
	CHECK(e.layer->spec_n >= 2);
	CHECK_EQ(e.layer->spec_queue[0].first, n->first_chunk + 2);
	CHECK_EQ(e.layer->spec_queue[0].end, n->first_chunk + 3);
	CHECK_EQ(e.layer->spec_queue[1].first, n->first_chunk + 1);
	CHECK_EQ(e.layer->spec_queue[1].end, n->first_chunk + 2);
	sg_layer_spec_continue(e.layer);
	settle(&e);
	CHECK(chunk_local(&e, "bin/big", 1) && chunk_local(&e, "bin/big", 2));
	env_close(&e);
}

TEST(an_elf_file_in_use_brings_the_libraries_it_needs)
{
	struct env e = { 0 };

	setup_elf();
	env_open(&e, &spec_cfg);
	CHECK_EQ(read_file(&e, "bin/prog", 100), 100);
	settle(&e);
	/* A program's miss takes no neighbours (the fillers after it stay); libfoo came
	 * through DT_NEEDED, followed: libbar, which libfoo needs, came as libfoo arrived,
	 * before the loader opened libfoo. */
	uint64_t want = file_bytes(&e, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2") +
			file_bytes(&e, "usr/lib/libbar.so");
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], want);
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "filler/f%d", i);
		CHECK(!chunk_local(&e, name, 0));
	}
	CHECK(local(&e, "usr/lib/libbar.so"));
	/* Reading them fetches nothing more; what nothing needs stays remote. */
	CHECK(local(&e, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2"));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], want);
	CHECK(!local(&e, "usr/lib/libunused.so"));
	check_derived(&e);
	env_close(&e);
	/* Speculation off: none of it. */
	test_rm_tree(cache);
	env_open(&e, &(struct sg_layer_config){ .window_bytes = 1 });
	CHECK_EQ(read_file(&e, "bin/prog", 100), 100);
	settle(&e);
	CHECK(!local(&e, "usr/lib/libbar.so"));
	env_close(&e);
}

/* usr/local/bin/python3.12 and /prog (ELF programs needing nothing), the python library's
 * start files beside them, and other modules. */
static void setup_python(void)
{
	static uint8_t data[PKG_FILE];
	static const char *const mods[] = {
		"usr/local/lib/python3.12/asyncio/__pycache__/base_events.cpython-312.pyc",
		"usr/local/lib/python3.12/encodings/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/encodings/__pycache__/aliases.cpython-312.pyc",
		"usr/local/lib/python3.12/encodings/__pycache__/cp1252.cpython-312.pyc",
		"usr/local/lib/python3.12/encodings/__pycache__/utf_8.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/sitecustomize.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/zipfile.cpython-312.pyc",
	};
	struct esgz_b b;

	start_blob(&b);
	size_t n = test_elf_build(data, sizeof(data), NULL, 0, 2000);
	esgz_add(&b, "usr/local/bin/prog", '0', 0755, data, n, NULL, 0, NULL);
	esgz_add(&b, "usr/local/bin/python3.12", '0', 0755, data, n, NULL, 0, NULL);
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		test_fill_seeded(data, PKG_FILE, 7000u + (uint32_t)i);
		esgz_add(&b, mods[i], '0', 0644, data, 3000, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);
}

/* python3.N starting (N >= 11) reads its codecs package and sitecustomize from its library
 * beside its bin/, one miss after the other: they come with the program, and what a miss in
 * the codecs package would bring along (its directory, the blob after it) too; a module
 * before them elsewhere does not, and another program takes none of them. */
TEST(python_starting_brings_the_files_its_start_reads)
{
	static const char *const start[] = {
		"usr/local/lib/python3.12/encodings/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/encodings/__pycache__/aliases.cpython-312.pyc",
		"usr/local/lib/python3.12/encodings/__pycache__/utf_8.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/sitecustomize.cpython-312.pyc",
	};
	struct env e = { 0 };
	uint64_t want = 0;

	setup_python();
	env_open(&e, &spec_cfg);
	CHECK_EQ(read_file(&e, "usr/local/bin/prog", 100), 100);
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	CHECK_EQ(read_file(&e, "usr/local/bin/python3.12", 100), 100);
	settle(&e);
	for (size_t i = 0; i < 4; i++)
		want += file_bytes(&e, start[i]);
	want += file_bytes(&e, "usr/local/lib/python3.12/encodings/__pycache__/cp1252.cpython-312.pyc");
	want += file_bytes(&e, "usr/local/lib/python3.12/__pycache__/zipfile.cpython-312.pyc");
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], want);
	for (size_t i = 0; i < 4; i++)
		CHECK(local(&e, start[i]));
	CHECK(local(&e, "usr/local/lib/python3.12/encodings/__pycache__/cp1252.cpython-312.pyc"));
	CHECK(!local(&e, "usr/local/lib/python3.12/asyncio/__pycache__/base_events.cpython-312.pyc"));
	check_derived(&e);
	env_close(&e);
}

/* A layer that replayed a startup profile knows what its workload reads: once the replay
 * has sent its last request, python starting (read as the profile recorded) takes none of
 * the files python's start reads by rule, which the recorded start had not read (on the
 * bench, 1.1 MB of them went out after the replay, none read).  A program the profile does
 * not name is handled as without one. */
TEST(a_layer_that_replayed_its_profile_takes_no_guesses_after_the_replay)
{
	static const char *const py = "usr/local/bin/python3.12";
	static const char *const init =
		"usr/local/lib/python3.12/encodings/__pycache__/__init__.cpython-312.pyc";
	struct env e = { 0 };
	struct sg_profile *p;

	setup_python();
	env_open(&e, &spec_cfg);
	const struct sg_toc *toc = sg_layer_toc(e.layer);
	CHECK_EQ(sg_profile_new(&toc_digest, e.layer->n_chunks, NULL, &p), 0);
	CHECK(sg_profile_note(p, sg_toc_node(toc, node(&e, py))->first_chunk, 1) ==
	      SG_PROFILE_RECORDED);
	CHECK(sg_profile_note(p, sg_toc_node(toc, node(&e, init))->first_chunk, 2) ==
	      SG_PROFILE_RECORDED);
	CHECK_EQ(sg_layer_replay(e.layer, p, NULL, NULL), 0);
	settle(&e);
	CHECK(!e.layer->replaying);   /* over: every request sent and answered */
	uint64_t before = stats(&e).kind_fetched_bytes[SG_FETCH_SPEC];
	CHECK(local(&e, py));
	CHECK(local(&e, init));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], before);
	CHECK(!local(&e, "usr/local/lib/python3.12/encodings/__pycache__/aliases.cpython-312.pyc"));
	env_close(&e);

	/* A profile that does not name python3.12 (another workload's on this layer): python
	 * starting is handled as without a profile, its start's files fetched ahead. */
	setup_python();
	env_open(&e, &spec_cfg);
	toc = sg_layer_toc(e.layer);
	CHECK_EQ(sg_profile_new(&toc_digest, e.layer->n_chunks, NULL, &p), 0);
	CHECK(sg_profile_note(p, sg_toc_node(toc, node(&e, init))->first_chunk, 1) ==
	      SG_PROFILE_RECORDED);
	CHECK_EQ(sg_layer_replay(e.layer, p, NULL, NULL), 0);
	settle(&e);
	CHECK_EQ(read_file(&e, py, 100), 100);
	settle(&e);
	CHECK(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC] > 0);
	CHECK(local(&e, "usr/local/lib/python3.12/encodings/__pycache__/aliases.cpython-312.pyc"));
	env_close(&e);
}

/* A program whose first chunk is large (600 KB of random bytes after its ELF tables: its
 * compressed chunk too) needing libfoo.so.1; libfoo itself, small. */
#define PEEK_PROG ((size_t)600 << 10)
static void setup_peek(void)
{
	static uint8_t data[PEEK_PROG];
	const char *const needs[] = { "libfoo.so.1" };
	struct esgz_b b;

	start_blob(&b);
	test_fill_seeded(data, sizeof(data), 5150);
	size_t tables = test_elf_build(data, sizeof(data), needs, 1, 0);
	test_fill_seeded(data + tables, sizeof(data) - tables, 5151);
	esgz_add(&b, "bin/big-prog", '0', 0755, data, sizeof(data), NULL, 0, NULL);
	size_t n = test_elf_build(data, sizeof(data), NULL, 0, 2000);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1", '0', 0644, data, n, NULL, 0, NULL);
	test_write_blob(&b, blob_path, &toc_digest);
}

static uint8_t *gate_bytes;   /* what the gate serves: the blob's, freed after the layer */

/* A layer over a gate (the test answers each read), started. */
static struct gate *gate_env_open(struct env *e, const struct sg_layer_config *cfg_in)
{
	struct sg_layer_config cfg = *cfg_in;
	size_t len;
	uint8_t *bytes = gate_load_blob(blob_path, &len);

	free(gate_bytes);
	gate_bytes = bytes;
	cfg.cache_dir = cache;
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	struct gate *g = gate_new(e->loop, NULL, bytes, len, false);
	test_layer_new_over(e->loop, &g->base, blob_path, &toc_digest, &cfg, &e->layer, &e->user);
	sg_layer_start(e->layer);
	return g;
}

/* A fresh blob and cache, a layer over a gate with cfg, and a reader of bin/big-prog's first
 * bytes, its requests left pending. */
static struct gate *read_big_prog(struct env *e, const struct sg_layer_config *cfg,
				  struct test_op *t, uint8_t *buf, size_t len)
{
	setup_peek();
	struct gate *g = gate_env_open(e, cfg);
	test_op_init(t);
	CHECK_EQ(sg_layer_read(e->user, 0, node(e, "bin/big-prog"), 0, len, buf, &t->op,
			       test_op_cb), 0);
	test_run_for(e->loop, 20);
	return g;
}

static bool gate_asked(struct env *e, const struct gate *g, const char *path)
{
	uint64_t off = sg_layer_chunk(e->layer, sg_toc_node(sg_layer_toc(e->layer),
							    node(e, path))->first_chunk)->offset;
	for (size_t i = 0; i < g->n; i++)
		if (g->q[i].offset <= off && off < g->q[i].offset + g->q[i].len)
			return true;
	return false;
}

/* A large program's libraries are asked for while its first chunk is still on its way: its
 * first 64 KiB are read in a request of their own, and what they name (unverified: only to
 * choose what to fetch) is picked as the chunk's contents would be.  Every byte served is
 * the verified chunk's.  With speculation off, no peek; closed with a peek in flight, the
 * layer waits for it and frees everything (ASan). */
TEST(a_large_programs_libraries_are_asked_for_while_its_first_chunk_is_on_its_way)
{
	static uint8_t buf[4096], want[PEEK_PROG];
	struct env e = { 0 };
	struct test_op t;

	setup_peek();
	struct gate *g = gate_env_open(&e, &spec_cfg);
	uint32_t prog = node(&e, "bin/big-prog");
	const struct sg_toc_chunk *c0 =
		sg_layer_chunk(e.layer, sg_toc_node(sg_layer_toc(e.layer), prog)->first_chunk);
	CHECK(c0->next_offset - c0->offset >= (256u << 10));
	test_op_init(&t);
	CHECK_EQ(sg_layer_read(e.user, 0, prog, 0, sizeof(buf), buf, &t.op, test_op_cb), 0);
	test_run_for(e.loop, 20);
	/* The chunk and its first 64 KiB: two requests. */
	CHECK_EQ(g->n, 2u);
	CHECK_EQ(stats(&e).peek_requests, 1u);
	size_t peek = g->q[0].len == (64u << 10) ? 0 : 1;
	CHECK_EQ(g->q[peek].offset, c0->offset);
	CHECK(!gate_asked(&e, g, "usr/lib/x86_64-linux-gnu/libfoo.so.1"));
	gate_complete(g, peek, (int)g->q[peek].len);
	test_run_for(e.loop, 20);
	/* The library is asked for; the program's chunk is still on its way, its reader waits. */
	CHECK(gate_asked(&e, g, "usr/lib/x86_64-linux-gnu/libfoo.so.1"));
	CHECK_EQ(t.calls, 0);
	g->automatic = true;
	while (g->n)
		gate_complete(g, 0, (int)g->q[0].len);
	test_op_wait(e.loop, &t, 2000);
	CHECK_EQ(t.res, (int32_t)sizeof(buf));
	test_fill_seeded(want, sizeof(want), 5150);
	size_t tables = test_elf_build(want, sizeof(want), (const char *const[]){ "libfoo.so.1" }, 1, 0);
	test_fill_seeded(want + tables, sizeof(want) - tables, 5151);
	CHECK_MEM(buf, want, sizeof(buf));
	settle(&e);
	CHECK(local(&e, "usr/lib/x86_64-linux-gnu/libfoo.so.1"));
	CHECK_EQ(stats(&e).peek_requests, 1u);   /* once per chunk */
	env_close(&e);

	/* Speculation off (a fresh cache): the chunk alone. */
	struct sg_layer_config off = spec_cfg;
	off.speculate = false;
	g = read_big_prog(&e, &off, &t, buf, sizeof(buf));
	CHECK_EQ(g->n, 1u);
	g->automatic = true;
	gate_complete(g, 0, (int)g->q[0].len);
	test_op_wait(e.loop, &t, 2000);
	env_close(&e);

	/* The chunk's fetch fails while its peek is still out, with two readers waiting on it:
	 * each is answered once (-EIO); the peek that ends after picks nothing (its chunk is no
	 * longer on its way), and the next read fetches the chunk anew, verified. */
	g = read_big_prog(&e, &spec_cfg, &t, buf, sizeof(buf));
	CHECK_EQ(g->n, 2u);
	struct sg_layer_user *u2;
	struct test_op t2;
	static uint8_t buf2[4096];
	CHECK_EQ(sg_layer_user_new(e.layer, &u2), 0);
	test_op_init(&t2);
	CHECK_EQ(sg_layer_read(u2, 1, node(&e, "bin/big-prog"), 0, sizeof(buf2), buf2, &t2.op,
			       test_op_cb), 0);
	test_run_for(e.loop, 10);
	size_t chunk_req = g->q[0].len == (64u << 10) ? 1 : 0;
	gate_complete(g, chunk_req, -EIO);
	test_op_wait(e.loop, &t, 2000);
	test_op_wait(e.loop, &t2, 2000);
	CHECK_EQ(t.res, -EIO);
	CHECK_EQ(t2.res, -EIO);
	CHECK_EQ(g->n, 1u);   /* the peek */
	gate_complete(g, 0, (int)g->q[0].len);
	test_run_for(e.loop, 20);
	CHECK_EQ(g->n, 0u);   /* nothing picked from it */
	CHECK_EQ(t.calls, 1);
	CHECK_EQ(t2.calls, 1);
	g->automatic = true;   /* reader 2: the failure is held only for the readers that saw it */
	CHECK_EQ(test_layer_read(e.loop, u2, 2, node(&e, "bin/big-prog"), 0, buf2, sizeof(buf2)),
		 (int32_t)sizeof(buf2));
	CHECK_MEM(buf2, want, sizeof(buf2));
	test_layer_user_close(e.loop, u2);
	env_close(&e);

	/* Closed with the peek (and the chunk) in flight: the reader is answered once, the
	 * layer's close waits for both and frees them. */
	g = read_big_prog(&e, &spec_cfg, &t, buf, sizeof(buf));
	CHECK_EQ(g->n, 2u);
	env_close(&e);
	CHECK_EQ(t.calls, 1);
	free(gate_bytes);
	gate_bytes = NULL;
}

/* Debian's gcc layout: the driver usr/bin/x86_64-linux-gnu-gcc-12 (and gcc-12 -> it), the
 * compiler proper cc1 (needing libmpc.so.3), the assembler (needing libbfd.so), collect2 and
 * ld.bfd, the headers every compile against glibc reads and the link's inputs; another
 * program, another header and another library nobody needs. */
#define GCC_DIR "usr/lib/gcc/x86_64-linux-gnu/12/"
static void setup_gcc(void)
{
	static uint8_t data[PKG_FILE];
	static const char *const cc1_needs[] = { "libmpc.so.3" }, *const as_needs[] = { "libbfd.so" };
	static const char *const plain[] = {
		"usr/include/stdc-predef.h", "usr/include/features.h", "usr/include/unrelated.h",
		GCC_DIR "liblto_plugin.so", GCC_DIR "libgcc.a", "usr/lib/x86_64-linux-gnu/crti.o",
		"usr/lib/x86_64-linux-gnu/libmpc.so.3", "usr/lib/x86_64-linux-gnu/libbfd.so",
		"usr/lib/x86_64-linux-gnu/libunused.so",
	};
	struct esgz_b b;
	size_t n;

	start_blob(&b);
	n = test_elf_build(data, sizeof(data), NULL, 0, 2000);
	esgz_add(&b, "usr/bin/other-prog", '0', 0755, data, n, NULL, 0, NULL);
	esgz_add(&b, "usr/bin/x86_64-linux-gnu-gcc-12", '0', 0755, data, n, NULL, 0, NULL);
	esgz_add(&b, "usr/bin/gcc-12", '2', 0777, NULL, 0, "x86_64-linux-gnu-gcc-12", 0, NULL);
	esgz_add(&b, GCC_DIR "collect2", '0', 0755, data, n, NULL, 0, NULL);
	esgz_add(&b, "usr/bin/x86_64-linux-gnu-ld.bfd", '0', 0755, data, n, NULL, 0, NULL);
	n = test_elf_build(data, sizeof(data), cc1_needs, 1, 3000);
	esgz_add(&b, GCC_DIR "cc1", '0', 0755, data, n, NULL, 0, NULL);
	n = test_elf_build(data, sizeof(data), as_needs, 1, 2500);
	esgz_add(&b, "usr/bin/x86_64-linux-gnu-as", '0', 0755, data, n, NULL, 0, NULL);
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		test_fill_seeded(data, PKG_FILE, 8000u + (uint32_t)i);
		esgz_add(&b, plain[i], '0', 0644, data, 3000, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);
}

/* A gcc driver in use brings the compiler proper, as a program about to run: when its first
 * chunk arrives (before anybody runs it), its library and what the compiler proper brings,
 * the assembler (with its library), collect2, the linker, the headers every compile reads
 * and the link's inputs.  Another program takes none of it, and nothing brings what the
 * toolchain does not name. */
TEST(a_gcc_driver_brings_the_passes_it_runs_next)
{
	static const char *const toolchain[] = {
		GCC_DIR "cc1", "usr/lib/x86_64-linux-gnu/libmpc.so.3",
		"usr/include/stdc-predef.h", "usr/include/features.h",
		"usr/bin/x86_64-linux-gnu-as", "usr/lib/x86_64-linux-gnu/libbfd.so",
		GCC_DIR "collect2", "usr/bin/x86_64-linux-gnu-ld.bfd", GCC_DIR "liblto_plugin.so",
		GCC_DIR "libgcc.a", "usr/lib/x86_64-linux-gnu/crti.o",
	};
	struct env e = { 0 };
	uint64_t want = 0;

	setup_gcc();
	env_open(&e, &spec_cfg);
	CHECK_EQ(read_file(&e, "usr/bin/other-prog", 100), 100);
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], 0);
	CHECK_EQ(read_file(&e, "usr/bin/x86_64-linux-gnu-gcc-12", 100), 100);
	settle(&e);
	for (size_t i = 0; i < sizeof(toolchain) / sizeof(toolchain[0]); i++)
		want += file_bytes(&e, toolchain[i]);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], want);
	/* (each probe reads the file: cc1 first, as the driver would) */
	for (size_t i = 0; i < sizeof(toolchain) / sizeof(toolchain[0]); i++)
		CHECK(local(&e, toolchain[i]));
	settle(&e);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], want);
	CHECK_EQ(stats(&e).kind_used_bytes[SG_FETCH_SPEC], want);
	CHECK(!local(&e, "usr/lib/x86_64-linux-gnu/libunused.so"));
	CHECK(!local(&e, "usr/include/unrelated.h"));
	check_derived(&e);
	env_close(&e);

	/* Speculation off: none of it. */
	test_rm_tree(cache);
	env_open(&e, &(struct sg_layer_config){ .window_bytes = 1 });
	CHECK_EQ(read_file(&e, "usr/bin/x86_64-linux-gnu-gcc-12", 100), 100);
	settle(&e);
	CHECK(!local(&e, GCC_DIR "cc1"));
	env_close(&e);
}

/* C headers, in blob order: a multiarch bits/ directory (one header nothing includes, a
 * chain of includes), /usr/local/include's limits.h (which #include_next skips), then
 * /usr/include (stdio.h last of the headers; limits.h, which #include_next finds, too large
 * to come as a neighbour), then a text file after them that names a header but is none. */
#define MA "usr/include/x86_64-linux-gnu/"
#define HEADER_BIG (SG_SPEC_BUDGET_START + (256u << 10))
static void setup_headers(void)
{
	static const struct { const char *path, *text; } files[] = {
		{ MA "bits/unrelated.h", "#include <bits/nothing.h>\n" },
		{ MA "bits/libc-header-start.h", "#include <features.h>\n" },
		{ MA "bits/types.h", "#include <bits/typesizes.h>\n#  include <bits/time64.h>\n" },
		{ MA "bits/typesizes.h", "/* no includes */\n" },
		{ MA "bits/time64.h", "#include_next <limits.h>\n" },
		{ "usr/local/include/limits.h", "/* not the one #include_next finds */\n" },
		{ "usr/include/features.h", "/* no includes */\n" },
		{ "usr/include/local.h", "/* no includes */\n" },
		{ "usr/include/limits.h", "/* no includes */\n" },
		{ "usr/include/stdio.h", "#include <bits/libc-header-start.h>\n#include \"local.h\"\n"
					 "#include <bits/types.h>\n#include MACRO_NAME\n" },
		{ "usr/share/doc/notes.txt", "#include <bits/unrelated.h>\n" },
	};
	static char text[HEADER_BIG + 4096];
	struct esgz_b b;

	start_blob(&b);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		/* Padded with a comment, as real headers are: chunks of their own. */
		int n = snprintf(text, sizeof(text), "%s/*%03zu%*s", files[i].text, i, 2000, "");
		CHECK(n > 0 && (size_t)n < sizeof(text));
		if (strcmp(files[i].path, "usr/include/limits.h") == 0) {
			/* Larger than a miss's budget: never taken as stdio.h's neighbour. */
			test_fill_seeded((uint8_t *)text + n, HEADER_BIG, 9100);
			n += HEADER_BIG;
		}
		n += snprintf(text + n, sizeof(text) - (size_t)n, "*/\n");
		esgz_add(&b, files[i].path, '0', 0644, (const uint8_t *)text, (size_t)n, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);
}

/* A compiler reads header after header, each a miss of its own: a header read brings the
 * ones it includes, looked up as GCC would ("local.h" beside it; <bits/...> in the multiarch
 * directory; #include_next past the directory it was found in), and they bring theirs as
 * they arrive, two levels down before anybody read them.  A header nothing includes, the
 * one #include_next skips and a text file's "directive" stay remote. */
TEST(a_header_read_brings_what_it_includes_and_they_bring_theirs)
{
	static const char *const chain[] = {
		MA "bits/libc-header-start.h", MA "bits/types.h", MA "bits/typesizes.h",
		MA "bits/time64.h", "usr/include/features.h", "usr/include/local.h",
		"usr/include/limits.h",
	};
	struct env e = { 0 };

	setup_headers();
	env_open(&e, &spec_cfg);
	CHECK_EQ(read_file(&e, "usr/include/stdio.h", 100), 100);
	settle(&e);
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
		CHECK(chunk_local(&e, chain[i], 0));
	CHECK(!chunk_local(&e, "usr/local/include/limits.h", 0));
	CHECK(!chunk_local(&e, MA "bits/unrelated.h", 0));
	/* The text file came as a neighbour of the miss; read, it names nothing that counts. */
	CHECK(local(&e, "usr/share/doc/notes.txt"));
	settle(&e);
	CHECK(!chunk_local(&e, MA "bits/unrelated.h", 0));
	/* Reading the chain fetches nothing more. */
	uint64_t fetches = stats(&e).ondemand_fetches, spec = stats(&e).kind_fetched_bytes[SG_FETCH_SPEC];
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
		CHECK(local(&e, chain[i]));
	settle(&e);
	CHECK_EQ(stats(&e).ondemand_fetches, fetches);
	CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_SPEC], spec);
	check_derived(&e);
	env_close(&e);

	/* Speculation off: none of it. */
	test_rm_tree(cache);
	env_open(&e, &(struct sg_layer_config){ .window_bytes = 1 });
	CHECK_EQ(read_file(&e, "usr/include/stdio.h", 100), 100);
	settle(&e);
	CHECK(!chunk_local(&e, MA "bits/types.h", 0));
	env_close(&e);
}

/* A python library: the interpreter, modules of its top level (the core ones and others),
 * two packages the core needs, another package, and an unrelated directory. */
static void setup_python_lib(void)
{
	static uint8_t data[PKG_FILE];
	static const char *const mods[] = {   /* in blob order: the miss's package last */
		"usr/local/lib/python3.12/__pycache__/enum.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/keyword.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/textwrap.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/zipfile.cpython-312.pyc",
		"usr/local/lib/python3.12/collections/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/re/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/re/__pycache__/_parser.cpython-312.pyc",
		"usr/local/lib/python3.12/json/__pycache__/decoder.cpython-312.pyc",
		"usr/local/lib/python3.12/asyncio/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/asyncio/__pycache__/base_events.cpython-312.pyc",
	};
	struct esgz_b b;

	start_blob(&b);
	test_fill_seeded(data, PKG_FILE, 8999);
	esgz_add(&b, "usr/local/share/doc/unrelated.txt", '0', 0644, data, 3000, NULL, 0, NULL);
	size_t n = test_elf_build(data, sizeof(data), NULL, 0, 2000);
	esgz_add(&b, "usr/local/bin/python3.12", '0', 0755, data, n, NULL, 0, NULL);
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		test_fill_seeded(data, PKG_FILE, 9000u + (uint32_t)i);
		esgz_add(&b, mods[i], '0', 0644, data, 3000, NULL, 0, NULL);
	}
	test_write_blob(&b, blob_path, &toc_digest);
}

/* python starting imports none of its library's top level (a plain print); an application's
 * first import that misses in the library (asyncio, last in the blob: its neighbours bring
 * nothing else) brings the core modules (collections, re, enum, keyword...) and then the
 * library's other top-level modules, before they are imported; not the modules of another
 * package (json), nor what lies outside the library. */
TEST(an_applications_first_import_brings_pythons_core_and_top_level_modules)
{
	static const char *const brought[] = {
		"usr/local/lib/python3.12/collections/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/re/__pycache__/__init__.cpython-312.pyc",
		"usr/local/lib/python3.12/re/__pycache__/_parser.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/enum.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/keyword.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/textwrap.cpython-312.pyc",
		"usr/local/lib/python3.12/__pycache__/zipfile.cpython-312.pyc",
	};
	struct env e = { 0 };

	setup_python_lib();
	env_open(&e, &spec_cfg);
	CHECK_EQ(read_file(&e, "usr/local/bin/python3.12", 100), 100);
	settle(&e);
	for (size_t i = 0; i < sizeof(brought) / sizeof(brought[0]); i++)
		CHECK(!chunk_local(&e, brought[i], 0));
	CHECK_EQ(read_file(&e, "usr/local/lib/python3.12/asyncio/__pycache__/__init__.cpython-312.pyc",
			   100), 100);
	settle(&e);
	for (size_t i = 0; i < sizeof(brought) / sizeof(brought[0]); i++)
		CHECK(chunk_local(&e, brought[i], 0));
	CHECK(!chunk_local(&e, "usr/local/lib/python3.12/json/__pycache__/decoder.cpython-312.pyc", 0));
	CHECK(!chunk_local(&e, "usr/local/share/doc/unrelated.txt", 0));
	check_derived(&e);
	env_close(&e);
}

/* ---- Across an image's layers ---- */

/* Layer A (a program's, upper): bin/prog, whose interpreter is /lib64/ld-linux-x86-64.so.2
 * and which needs libfoo.so.1 and libown.so; usr/lib/libown.so and etc/ld.so.cache.
 * Layer B (the base): lib64 -> usr/lib64, usr/lib64/ld-linux-x86-64.so.2 ->
 * /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, lib -> usr/lib, the loader and
 * libfoo.so.1 -> libfoo.so.1.2 in usr/lib/x86_64-linux-gnu, its own etc/ld.so.cache (A's
 * hides it), and a library nobody needs. */
static char blob_b[300], cache_b[300];
static struct sg_digest toc_digest_b;

static void setup_two_layers(void)
{
	static uint8_t data[PKG_FILE];
	const char *const prog_needs[] = { "libfoo.so.1", "libown.so" };
	struct esgz_b b;

	start_blob(&b);
	snprintf(blob_b, sizeof(blob_b), "%s/blob-b", dir);
	snprintf(cache_b, sizeof(cache_b), "%s/cache-b", dir);
	size_t n = test_elf_build_interp(data, sizeof(data), prog_needs, 2,
					 "/lib64/ld-linux-x86-64.so.2", 2000);
	esgz_add(&b, "bin/prog", '0', 0755, data, n, NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 6000);
	esgz_add(&b, "etc/ld.so.cache", '0', 0644, data, 4000, NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 6001);
	esgz_add(&b, "usr/lib/libown.so", '0', 0755, data, PKG_FILE, NULL, 0, NULL);
	test_write_blob(&b, blob_path, &toc_digest);

	esgz_init(&b, 1);
	esgz_add(&b, "lib64", '2', 0777, NULL, 0, "usr/lib64", 0, NULL);
	esgz_add(&b, "lib", '2', 0777, NULL, 0, "usr/lib", 0, NULL);
	test_fill_seeded(data, PKG_FILE, 7000);
	esgz_add(&b, "etc/ld.so.cache", '0', 0644, data, 4000, NULL, 0, NULL);
	esgz_add(&b, "usr/lib64/ld-linux-x86-64.so.2", '2', 0777, NULL, 0,
		 "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 0, NULL);
	test_fill_seeded(data, PKG_FILE, 7001);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", '0', 0755, data, PKG_FILE,
		 NULL, 0, NULL);
	test_fill_seeded(data, PKG_FILE, 7002);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2", '0', 0755, data, PKG_FILE, NULL, 0,
		 NULL);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1", '2', 0777, NULL, 0, "libfoo.so.1.2",
		 0, NULL);
	test_fill_seeded(data, PKG_FILE, 7003);
	esgz_add(&b, "usr/lib/x86_64-linux-gnu/libunused.so", '0', 0755, data, PKG_FILE, NULL, 0,
		 NULL);
	test_write_blob(&b, blob_b, &toc_digest_b);
}

/* What the daemon does (daemon/remote.c): asks the image's other layer, while it is open. */
struct elsewhere {
	struct sg_layer *other;
	unsigned n;
	char paths[8][128];
	int res[8];
};

static void on_elsewhere(void *userdata, const char *path)
{
	struct elsewhere *w = userdata;

	CHECK(w->n < 8);
	snprintf(w->paths[w->n], sizeof(w->paths[0]), "%s", path);
	w->res[w->n] = w->other ? sg_layer_speculate_path(w->other, path) : -ECANCELED;
	w->n++;
}

/* A over blob A with the callback, B over blob B, on one loop. */
static void open_two(struct env *a, struct env *b, struct elsewhere *w)
{
	struct sg_layer_config cfg = spec_cfg;

	memset(w, 0, sizeof(*w));
	cfg.on_needed_elsewhere = on_elsewhere;
	cfg.userdata = w;
	env_open(a, &cfg);
	b->loop = a->loop;
	cfg = spec_cfg;
	cfg.cache_dir = cache_b;
	test_layer_open(b->loop, blob_b, &toc_digest_b, &cfg, &b->layer, &b->user);
	w->other = b->layer;
}

static void close_one(struct env *e)
{
	test_layer_user_close(e->loop, e->user);
	test_layer_close(e->loop, e->layer);
	e->layer = NULL;
	e->user = NULL;
}

static void settle_two(struct env *a, struct env *b)
{
	if (a->layer)
		settle(a);
	if (b->layer)
		settle(b);
	if (a->layer)
		settle(a);
}

TEST(a_program_in_one_layer_brings_its_loader_and_libraries_from_another)
{
	struct env a = { 0 }, b = { 0 };
	struct elsewhere w;

	setup_two_layers();
	open_two(&a, &b, &w);
	/* At start, each layer fetches the entry points it has: B the loader and its
	 * ld.so.cache, A its own ld.so.cache. */
	settle_two(&a, &b);
	uint64_t b_start = first_chunk_bytes(&b, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") +
			   first_chunk_bytes(&b, "etc/ld.so.cache");
	CHECK_EQ(stats(&b).kind_fetched_bytes[SG_FETCH_SPEC], b_start);
	CHECK_EQ(stats(&a).kind_fetched_bytes[SG_FETCH_SPEC], first_chunk_bytes(&a, "etc/ld.so.cache"));
	CHECK_EQ(read_file(&a, "bin/prog", 100), 100);
	settle_two(&a, &b);
	/* A has libown.so and etc/ld.so.cache; the loader and libfoo are asked of B, by the
	 * path the program names and by library name. */
	CHECK_EQ(w.n, 2u);
	CHECK_STR(w.paths[0], "/lib64/ld-linux-x86-64.so.2");
	CHECK_EQ(w.res[0], 0);
	CHECK_STR(w.paths[1], "libfoo.so.1");
	CHECK_EQ(w.res[1], 0);
	CHECK_EQ(stats(&a).kind_fetched_bytes[SG_FETCH_SPEC],
		 first_chunk_bytes(&a, "usr/lib/libown.so") +
		 first_chunk_bytes(&a, "etc/ld.so.cache"));
	CHECK_EQ(stats(&b).kind_fetched_bytes[SG_FETCH_SPEC],
		 b_start + first_chunk_bytes(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2"));
	CHECK(local(&b, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
	CHECK(local(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2"));
	CHECK(local(&a, "usr/lib/libown.so"));
	CHECK(!local(&b, "usr/lib/x86_64-linux-gnu/libunused.so"));
	check_derived(&b);
	/* What B has, here already or not at all. */
	uint64_t before = stats(&b).kind_fetched_bytes[SG_FETCH_SPEC];
	CHECK_EQ(sg_layer_speculate_path(b.layer, "/usr/lib/x86_64-linux-gnu/libfoo.so.1"), 0);
	CHECK_EQ(sg_layer_speculate_path(b.layer, "libfoo.so.1"), 0);
	CHECK_EQ(sg_layer_speculate_path(b.layer, "libnothere.so.1"), -ENOENT);
	CHECK_EQ(sg_layer_speculate_path(b.layer, "/lib64/nothere"), -ENOENT);
	CHECK_EQ(sg_layer_speculate_path(b.layer, "/usr/lib64"), -ENOENT);   /* a directory */
	settle(&b);
	CHECK_EQ(stats(&b).kind_fetched_bytes[SG_FETCH_SPEC], before);
	close_one(&b);
	env_close(&a);
	/* Speculation off in B: it takes nothing. */
	test_rm_tree(cache);
	test_rm_tree(cache_b);
	CHECK_EQ(sg_loop_new(NULL, &b.loop), 0);
	test_layer_open(b.loop, blob_b, &toc_digest_b,
			&(struct sg_layer_config){ .cache_dir = cache_b, .window_bytes = 1 },
			&b.layer, &b.user);
	CHECK_EQ(sg_layer_speculate_path(b.layer, "libfoo.so.1"), -ECANCELED);
	env_close(&b);
}

/* Once the entry points are in, starts reading bin/prog in A and runs the loop until B's
 * speculation for it (libfoo) is in flight. */
static void start_prog_until_b_fetches(struct env *a, struct env *b, struct test_op *t)
{
	static uint8_t buf[100];

	settle_two(a, b);
	test_op_init(t);
	CHECK_EQ(sg_layer_read(a->user, 0, node(a, "bin/prog"), 0, 100, buf, &t->op, test_op_cb), 0);
	double end = test_now_ms() + 10000;
	while (b->layer->batches_inflight == 0) {
		if (test_now_ms() > end)
			TEST_FAIL("B never fetched");
		CHECK(sg_loop_run_once(a->loop, 1) >= 0);
	}
}

TEST(either_layer_closes_with_the_other_ones_speculation_in_flight)
{
	struct env a = { 0 }, b = { 0 };
	struct elsewhere w;
	struct test_op t;

	setup_two_layers();
	/* A (which asked) closes while B fetches for it: B finishes on its own. */
	open_two(&a, &b, &w);
	start_prog_until_b_fetches(&a, &b, &t);
	test_op_wait(a.loop, &t, 5000);
	w.other = NULL;
	close_one(&a);
	settle(&b);
	CHECK(local(&b, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2"));
	close_one(&b);
	CHECK_EQ(sg_loop_drain(a.loop, 2000), 0);
	sg_loop_free(a.loop);

	/* B closes with its speculation in flight (the close waits for it), then A goes on
	 * alone: what it needs elsewhere finds nobody. */
	test_rm_tree(cache);
	test_rm_tree(cache_b);
	open_two(&a, &b, &w);
	start_prog_until_b_fetches(&a, &b, &t);
	w.other = NULL;   /* as the daemon does once the content is closing */
	test_layer_user_close(b.loop, b.user);
	struct test_op c;
	test_op_init(&c);
	CHECK_EQ(sg_layer_close(b.layer, &c.op, test_op_cb), 0);
	CHECK_EQ(sg_layer_speculate_path(b.layer, "libfoo.so.1"), -ECANCELED);
	test_op_wait(b.loop, &c, 10000);
	CHECK_EQ(b.layer->batches_inflight, 0u);
	CHECK_EQ(b.layer->ahead_inflight, 0u);
	sg_layer_free(b.layer);
	b.layer = NULL;
	test_op_wait(a.loop, &t, 5000);
	CHECK_EQ(t.res, 100);
	settle(&a);
	CHECK(local(&a, "usr/lib/libown.so"));
	env_close(&a);
}

TEST_MAIN()
