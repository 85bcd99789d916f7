/* Learned startup profiles in the layer (fs/layer_profile.c), through the layer API over an
 * eStargz blob on disk: the recorder (first reads in order, one hand-over when the workload
 * goes quiet, the rest at close, a new user's reads appended), and the replay (chunks
 * fetched before they are read, in recorded order, as kind "profile"; a profile for another
 * TOC or chunk count refused; a reader joining a replayed chunk in flight; two layers; a
 * close with the replay in flight; a replay fetch failing under two waiting readers; two
 * layers replaying over one link, in the order their chunks were read; one clock and one
 * quiet time for the layers a workload reads). */
#include "daemon/core/link_meter.h"
#include "daemon/core/loop.h"
#include <sys/stat.h>

#include "fs/estargz.h"
#include "fs/fetch_trace.h"
#include "fs/layer.h"
#include "fs/layer_int.h"
#include "fs/profile.h"
#include "daemon/early_source.h"
#include "tests/helpers/gate_source.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#define FILE_SIZE (64u << 10)
#define FILES 40

static char dir[256], blob_path[300], cache[300], cache2[300];
static struct sg_digest toc_digest;

static void cleanup(void)
{
	test_rm_tree(dir);
}

/* A blob at path of n files named prefix + their index (zero-padded to `width` digits),
 * `size` random bytes each (seeded seed + index), one chunk each; its TOC digest in *toc. */
static void write_files_blob(const char *path, const char *prefix, int width, int n, size_t size,
			     uint32_t seed, struct sg_digest *toc)
{
	uint8_t *data = malloc(size);
	struct esgz_b b;
	char name[32];

	CHECK(data);
	esgz_init(&b, 1);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%0*d", prefix, width, i);
		test_fill_seeded(data, size, seed + (uint32_t)i);
		esgz_add(&b, name, '0', 0644, data, size, NULL, 0, NULL);
	}
	test_write_blob(&b, path, toc);
	free(data);
}

/* f00..f39, 64 KiB of random bytes each, one chunk each. */
static void setup(void)
{
	if (dir[0])
		return;
	snprintf(dir, sizeof(dir), "/tmp/stargzd-lprof-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(blob_path, sizeof(blob_path), "%s/blob", dir);
	write_files_blob(blob_path, "f", 2, FILES, FILE_SIZE, 100u, &toc_digest);
}

/* A fresh cache directory for each layer: every test starts cold. */
static void fresh_cache(char *buf, size_t len)
{
	static int n;
	snprintf(buf, len, "%s/cache%d", dir, n++);
}

struct recorded {
	int calls;
	uint64_t new_chunks, chunks;
	struct sg_profile_range ranges[64];
	size_t n_ranges;
	struct sg_digest layer;
	bool has_layer;
	uint64_t toc_tail;
	struct sg_profile_span head[SG_PROFILE_HEAD_MAX];
	size_t n_head;
};

/* The blob digest the layers are given to name in their profiles. */
static const struct sg_digest blob_digest = { .bytes = { 0xb1, 0x0b } };

static void on_profile(void *userdata, const struct sg_profile *p, uint64_t new_chunks)
{
	struct recorded *rec = userdata;
	const struct sg_profile_range *r;

	rec->calls++;
	rec->new_chunks = new_chunks;
	rec->chunks = sg_profile_chunks(p);
	rec->n_ranges = sg_profile_ranges(p, &r);
	CHECK(rec->n_ranges <= 64);
	memcpy(rec->ranges, r, rec->n_ranges * sizeof(*r));
	rec->has_layer = sg_profile_layer(p) != NULL;
	if (rec->has_layer)
		rec->layer = *sg_profile_layer(p);
	rec->toc_tail = sg_profile_toc_tail(p);
	const struct sg_profile_span *h;
	rec->n_head = sg_profile_head(p, &h);
	if (rec->n_head)
		memcpy(rec->head, h, rec->n_head * sizeof(*h));
}

struct env {
	struct sg_loop *loop;
	struct sg_layer *layer;
	struct sg_layer_user *user;
	struct recorded rec;
};

/* Exactly the chunks asked for (no window, no speculation, no background fetch). */
static void env_new(struct env *e, bool record, char *cache_dir)
{
	struct sg_layer_config cfg = {
		.cache_dir = cache_dir,
		.window_bytes = 1,
		.on_profile = record ? on_profile : NULL,
		.blob_digest = &blob_digest,
		.userdata = &e->rec,
		.profile_quiet_ns = 100ull * 1000000u,
	};
	struct sg_range_source *src;

	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	CHECK_EQ(sg_range_source_file_open(e->loop, blob_path, &src), 0);
	CHECK_EQ(sg_layer_new(e->loop, src, test_load_toc_file(blob_path, &toc_digest), &cfg,
			      &e->layer), 0);
	CHECK_EQ(sg_layer_user_new(e->layer, &e->user), 0);
}

static void env_close(struct env *e)
{
	test_layer_teardown(e->loop, e->user, e->layer);
}

static uint32_t node(struct env *e, int i)
{
	char name[32];
	snprintf(name, sizeof(name), "f%02d", i);
	int64_t n = sg_toc_lookup_path(sg_layer_toc(e->layer), name);
	CHECK(n >= 0);
	return (uint32_t)n;
}

static uint32_t chunk_of(struct env *e, int i)
{
	return sg_toc_node(sg_layer_toc(e->layer), node(e, i))->first_chunk;
}

/* Reads file i whole and checks its bytes. */
static void read_check(struct env *e, struct sg_layer_user *u, int i)
{
	static uint8_t buf[FILE_SIZE], want[FILE_SIZE];

	test_fill_seeded(want, FILE_SIZE, 100u + (uint32_t)i);
	CHECK_EQ(test_layer_read(e->loop, u, 0, node(e, i), 0, buf, FILE_SIZE), (int32_t)FILE_SIZE);
	CHECK(memcmp(buf, want, FILE_SIZE) == 0);
}

static struct sg_layer_stats stats(struct env *e)
{
	struct sg_layer_stats st;
	sg_layer_stats(e->layer, &st);
	return st;
}

static uint64_t chunk_bytes(struct env *e, int i)
{
	const struct sg_toc_chunk *c = sg_layer_chunk(e->layer, chunk_of(e, i));
	return c->next_offset - c->offset;
}

static bool range_is(const struct recorded *r, size_t k, uint32_t first, uint32_t last)
{
	return k < r->n_ranges && r->ranges[k].first == first && r->ranges[k].last == last;
}

TEST(first_reads_are_recorded_in_order_and_handed_over_once_quiet)
{
	struct env e = { 0 };

	setup();
	fresh_cache(cache, sizeof(cache));
	env_new(&e, true, cache);
	sg_layer_start(e.layer);
	read_check(&e, e.user, 10);
	read_check(&e, e.user, 3);
	read_check(&e, e.user, 4);
	read_check(&e, e.user, 10);   /* known: nothing new */
	CHECK_EQ(e.rec.calls, 0);
	CHECK_EQ(stats(&e).profile_chunks, 3);
	test_run_for(e.loop, 400);    /* quiet: 100 ms; seen within two */
	CHECK_EQ(e.rec.calls, 1);
	CHECK_EQ(e.rec.new_chunks, 3);
	CHECK_EQ(e.rec.chunks, 3);
	CHECK_EQ(e.rec.n_ranges, 2);
	CHECK(range_is(&e.rec, 0, chunk_of(&e, 10), chunk_of(&e, 10)));
	CHECK(range_is(&e.rec, 1, chunk_of(&e, 3), chunk_of(&e, 4)));
	/* It names the blob, and how much of its end the next mount fetches for the TOC. */
	struct stat st;
	CHECK_EQ(stat(blob_path, &st), 0);
	CHECK(e.rec.has_layer && sg_digest_equal(&e.rec.layer, &blob_digest));
	CHECK_EQ(e.rec.toc_tail, (uint64_t)st.st_size - sg_toc_offset(sg_layer_toc(e.layer)));
	CHECK(e.rec.toc_tail > SG_ESGZ_FOOTER_SIZE && e.rec.toc_tail < (uint64_t)st.st_size / 4);
	/* And the blob spans of those chunks, in the order they were read: what the next mount
	 * reads before its TOC comes. */
	CHECK_EQ(e.rec.n_head, 2u);
	CHECK_EQ(e.rec.head[0].offset, sg_layer_chunk(e.layer, chunk_of(&e, 10))->offset);
	CHECK_EQ(e.rec.head[0].end, sg_layer_chunk(e.layer, chunk_of(&e, 10))->next_offset);
	CHECK_EQ(e.rec.head[1].offset, sg_layer_chunk(e.layer, chunk_of(&e, 3))->offset);
	CHECK_EQ(e.rec.head[1].end, sg_layer_chunk(e.layer, chunk_of(&e, 4))->next_offset);
	/* Once quiet, the recording has ended: later reads of this user are not startup. */
	read_check(&e, e.user, 20);
	test_run_for(e.loop, 300);
	CHECK_EQ(e.rec.calls, 1);
	/* A new user (another container) is recorded again, appended; its chunks are handed
	 * over at the close at the latest. */
	struct sg_layer_user *u2;
	CHECK_EQ(sg_layer_user_new(e.layer, &u2), 0);
	read_check(&e, u2, 30);
	read_check(&e, u2, 3);
	test_layer_user_close(e.loop, u2);
	uint32_t c30 = chunk_of(&e, 30);
	env_close(&e);
	CHECK_EQ(e.rec.calls, 2);
	CHECK_EQ(e.rec.new_chunks, 1);
	CHECK_EQ(e.rec.chunks, 4);
	CHECK(range_is(&e.rec, 2, c30, c30));
}

TEST(a_close_before_quiet_hands_over_what_was_recorded)
{
	struct env e = { 0 };

	setup();
	fresh_cache(cache, sizeof(cache));
	env_new(&e, true, cache);
	sg_layer_start(e.layer);
	read_check(&e, e.user, 7);
	env_close(&e);
	CHECK_EQ(e.rec.calls, 1);
	CHECK_EQ(e.rec.chunks, 1);
	/* Without on_profile nothing is recorded. */
	struct env e2 = { 0 };
	fresh_cache(cache, sizeof(cache));
	env_new(&e2, false, cache);
	sg_layer_start(e2.layer);
	read_check(&e2, e2.user, 7);
	CHECK_EQ(stats(&e2).profile_chunks, 0);
	env_close(&e2);
	CHECK_EQ(e2.rec.calls, 0);
}

/* A profile of files `files` (in that order), for the layer e has open. */
static struct sg_profile *profile_of(struct env *e, const int *files, size_t n)
{
	struct sg_profile *p;

	CHECK_EQ(sg_profile_new(&toc_digest, e->layer->n_chunks, NULL, &p), 0);
	for (size_t i = 0; i < n; i++)
		CHECK(sg_profile_note(p, chunk_of(e, files[i]), 1) == SG_PROFILE_RECORDED);
	return p;
}

static void wait_replay(struct env *e)
{
	double end = test_now_ms() + 10000;
	while (!stats(e).replay_done || e->layer->batches_inflight || e->layer->jobs_inflight) {
		if (test_now_ms() > end)
			TEST_FAIL("the replay never ended");
		CHECK(sg_loop_run_once(e->loop, 10) >= 0);
	}
}

TEST(a_replayed_profile_is_fetched_before_it_is_read)
{
	static const int files[] = { 30, 31, 32, 2, 17 };
	struct env e = { 0 };
	struct sg_layer_replay_info info;
	uint64_t want = 0;

	setup();
	fresh_cache(cache, sizeof(cache));
	env_new(&e, false, cache);
	for (size_t i = 0; i < 5; i++)
		want += chunk_bytes(&e, files[i]);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, files, 5), &info, NULL), 0);
	CHECK_EQ(info.chunks, 5);
	CHECK_EQ(info.fetch_chunks, 5);
	CHECK_EQ(info.fetch_bytes, want);
	/* A second profile naming nothing the replay does not is refused (and freed). */
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, files, 2), NULL, NULL), -EALREADY);
	sg_layer_start(e.layer);
	wait_replay(&e);
	struct sg_layer_stats st = stats(&e);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_PROFILE], want);
	CHECK_EQ(st.kind_used_bytes[SG_FETCH_PROFILE], 0);
	CHECK_EQ(st.ondemand_fetches, 0);
	/* Three requests at most: 30..32 are one recorded range, then 2, then 17. */
	CHECK(st.fetch_requests <= 3);
	for (size_t i = 0; i < 5; i++)
		read_check(&e, e.user, files[i]);
	st = stats(&e);
	CHECK_EQ(st.ondemand_fetches, 0);   /* every read was served from the replay */
	CHECK_EQ(st.kind_used_bytes[SG_FETCH_PROFILE], want);
	read_check(&e, e.user, 5);          /* not in the profile: on demand, right bytes */
	CHECK_EQ(stats(&e).ondemand_fetches, 1);
	env_close(&e);
}

/* Another image's workload on the same layer: its profile joins the replay, while the
 * first one's requests are in flight and again after that replay is over.  Each chunk is
 * fetched once, the joining profile's own first; then every read is served without a miss. */
TEST(a_later_profile_joins_the_replay_in_flight_and_after_it_is_over)
{
	static const int first[] = { 30, 31, 32 }, second[] = { 2, 17, 31 }, third[] = { 9, 30 };
	struct env e = { 0 };
	struct sg_layer_replay_info info;
	struct sg_error err = { 0 };
	uint64_t want = 0;

	setup();
	fresh_cache(cache, sizeof(cache));
	env_new(&e, false, cache);
	for (size_t i = 0; i < 3; i++)
		want += chunk_bytes(&e, first[i]);
	want += chunk_bytes(&e, 2) + chunk_bytes(&e, 17) + chunk_bytes(&e, 9);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, first, 3), &info, NULL), 0);
	CHECK_EQ(info.fetch_chunks, 3);
	sg_layer_start(e.layer);   /* 30..32 go out */
	CHECK(e.layer->batches_inflight > 0);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, second, 3), &info, &err), 0);
	CHECK_EQ(info.chunks, 5);        /* the union: 2, 17, 31, then 30 and 32 */
	CHECK_EQ(info.fetch_chunks, 2);  /* 2 and 17: the others are on their way */
	const struct sg_profile_range *r;
	CHECK(sg_profile_ranges(e.layer->replay, &r) >= 1);
	CHECK_EQ(r[0].first, chunk_of(&e, 2));   /* the joining profile's order first */
	CHECK(e.layer->jobs[chunk_of(&e, 2)] && e.layer->jobs[chunk_of(&e, 17)]);   /* sent */
	wait_replay(&e);
	/* Over, and then a third image's: the replay starts again for what is new. */
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, third, 2), &info, NULL), 0);
	CHECK_EQ(info.fetch_chunks, 1);   /* 9 */
	CHECK(e.layer->jobs[chunk_of(&e, 9)] != NULL);
	wait_replay(&e);
	struct sg_layer_stats st = stats(&e);
	CHECK_EQ(st.kind_fetched_bytes[SG_FETCH_PROFILE], want);   /* each chunk once */
	static const int all[] = { 2, 9, 17, 30, 31, 32 };
	for (size_t i = 0; i < 6; i++)
		read_check(&e, e.user, all[i]);
	st = stats(&e);
	CHECK_EQ(st.ondemand_fetches, 0);
	CHECK_EQ(st.kind_used_bytes[SG_FETCH_PROFILE], want);
	/* Nothing new any more: refused, the replay as it was. */
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, second, 3), NULL, NULL), -EALREADY);
	CHECK(stats(&e).replay_done);
	env_close(&e);
}

TEST(a_profile_for_another_layer_is_refused_and_reads_still_work)
{
	static const int files[] = { 1, 2 };
	struct env e = { 0 };
	struct sg_profile *p;
	struct sg_error err = { 0 };
	struct sg_digest other = toc_digest;

	setup();
	fresh_cache(cache, sizeof(cache));
	env_new(&e, false, cache);
	/* Another chunk count. */
	CHECK_EQ(sg_profile_new(&toc_digest, e.layer->n_chunks + 1, NULL, &p), 0);
	CHECK_EQ(sg_layer_replay(e.layer, p, NULL, &err), -EINVAL);
	CHECK(strstr(err.msg, "chunks") != NULL);
	/* Another TOC digest. */
	other.bytes[0] ^= 1;
	CHECK_EQ(sg_profile_new(&other, e.layer->n_chunks, NULL, &p), 0);
	CHECK_EQ(sg_layer_replay(e.layer, p, NULL, &err), -EINVAL);
	CHECK(strstr(err.msg, "TOC") != NULL);
	/* Neither counts as given: the right one still replays. */
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, files, 2), NULL, NULL), 0);
	sg_layer_start(e.layer);
	read_check(&e, e.user, 1);
	read_check(&e, e.user, 9);
	wait_replay(&e);
	env_close(&e);
}

TEST(two_layers_replay_and_a_reader_joins_a_replayed_chunk_in_flight)
{
	static const int files[] = { 20, 21, 22, 23, 24, 25, 26, 27 };
	struct env a = { 0 }, b = { 0 };

	setup();
	fresh_cache(cache, sizeof(cache));
	fresh_cache(cache2, sizeof(cache2));
	env_new(&a, false, cache);
	env_new(&b, true, cache2);
	CHECK_EQ(sg_layer_replay(a.layer, profile_of(&a, files, 8), NULL, NULL), 0);
	CHECK_EQ(sg_layer_replay(b.layer, profile_of(&b, files, 8), NULL, NULL), 0);
	sg_layer_start(a.layer);
	sg_layer_start(b.layer);
	/* At once, while the replay's request is out: the reader waits on its job. */
	CHECK(a.layer->jobs[chunk_of(&a, 20)] != NULL);
	read_check(&a, a.user, 20);
	read_check(&b, b.user, 27);
	wait_replay(&a);
	wait_replay(&b);
	for (size_t i = 0; i < 8; i++) {
		read_check(&a, a.user, files[i]);
		read_check(&b, b.user, files[i]);
	}
	CHECK_EQ(stats(&a).ondemand_fetches, 0);
	CHECK_EQ(stats(&b).ondemand_fetches, 0);
	/* The replayed layer records what its readers read, replayed or not. */
	CHECK_EQ(stats(&b).profile_chunks, 8);
	uint32_t c27 = chunk_of(&b, 27);
	env_close(&a);
	env_close(&b);
	CHECK_EQ(b.rec.calls, 1);
	CHECK_EQ(b.rec.chunks, 8);
	CHECK(range_is(&b.rec, 0, c27, c27));
}

TEST(a_close_with_the_replay_in_flight_cancels_it)
{
	int files[FILES];
	struct env e = { 0 };

	setup();
	for (int i = 0; i < FILES; i++)
		files[i] = FILES - 1 - i;   /* backwards: one request per file */
	fresh_cache(cache, sizeof(cache));
	env_new(&e, true, cache);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, files, FILES), NULL, NULL), 0);
	sg_layer_start(e.layer);
	CHECK(e.layer->batches_inflight > 0);
	env_close(&e);   /* drains; ASan and the free check catch what outlives it */
	CHECK_EQ(e.rec.calls, 0);   /* nothing was read: nothing recorded */
}

/* The same with a second profile joined while the first one's requests are in flight: both
 * profiles' requests are cancelled with the close, and nothing outlives it. */
TEST(a_close_with_a_joined_replay_in_flight_cancels_both)
{
	int first[FILES / 2], second[FILES / 2];
	struct env e = { 0 };
	struct sg_layer_replay_info info;

	setup();
	for (int i = 0; i < FILES / 2; i++) {
		first[i] = FILES / 2 - 1 - i;   /* backwards: one request per file */
		second[i] = FILES - 1 - i;
	}
	fresh_cache(cache, sizeof(cache));
	env_new(&e, true, cache);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, first, FILES / 2), NULL, NULL), 0);
	sg_layer_start(e.layer);
	CHECK(e.layer->batches_inflight > 0);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, second, FILES / 2), &info, NULL), 0);
	CHECK_EQ(info.chunks, (uint64_t)FILES);
	CHECK(info.fetch_chunks > 0);
	env_close(&e);   /* drains; ASan and the free check catch what outlives it */
	CHECK_EQ(e.rec.calls, 0);
}

/* ---- a layer over a source whose reads the test holds, then lets through or fails ---- */

/* The blob's bytes, for the gate to serve (tests/helpers/gate_source.h). */
static uint8_t *blob_bytes(size_t *ret_len)
{
	static uint8_t *bytes;
	static size_t len;

	if (!bytes)
		bytes = gate_load_blob(blob_path, &len);
	*ret_len = len;
	return bytes;
}

/* The held read covering blob offset `off`, or fails. */
static size_t gate_find(const struct gate *g, uint64_t off)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->q[i].n_spans == 0 && g->q[i].offset <= off &&
		    off < g->q[i].offset + g->q[i].len)
			return i;
		for (size_t s = 0; s < g->q[i].n_spans; s++)
			if (g->q[i].spans[s].offset <= off &&
			    off < g->q[i].spans[s].offset + g->q[i].spans[s].len)
				return i;
	}
	TEST_FAIL("no held read at %llu", (unsigned long long)off);
	return 0;
}

/* Lets the held read i through, with the blob's bytes. */
static void gate_pass(struct gate *g, size_t i)
{
	gate_complete(g, i, (int)g->q[i].len);
}

/* A layer over a gate source (reading several spans in one request when `vectored`),
 * replaying `files`, started. */
static struct gate *gate_env_over(struct env *e, const int *files, size_t n, bool vectored)
{
	struct sg_layer_config cfg = { .window_bytes = 1 };
	size_t len;
	const uint8_t *bytes = blob_bytes(&len);

	fresh_cache(cache, sizeof(cache));
	cfg.cache_dir = cache;
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	struct gate *g = gate_new(e->loop, NULL, bytes, len, vectored);
	test_layer_new_over(e->loop, &g->base, blob_path, &toc_digest, &cfg, &e->layer, &e->user);
	CHECK_EQ(sg_layer_replay(e->layer, profile_of(e, files, n), NULL, NULL), 0);
	sg_layer_start(e->layer);
	return g;
}

static struct gate *gate_env(struct env *e, const int *files, size_t n)
{
	return gate_env_over(e, files, n, false);
}

/* A replay from a source that reads several spans in one request joins only chunks closer
 * than SG_LAYER_REPLAY_GAP: the files between those it replays (8 KiB each) are not fetched.
 * From a source that reads one range at a time, one request reads them along (fs/layer.h). */
TEST(a_replay_reads_no_gap_along_from_a_vectored_source)
{
	static char small_path[320];
	static struct sg_digest small_toc;
	static const int files[] = { 0, 2, 4 };
	char name[32];
	size_t len;

	setup();
	snprintf(small_path, sizeof(small_path), "%s/small-blob", dir);
	write_files_blob(small_path, "s", 1, 6, 8192, 500u, &small_toc);
	uint8_t *bytes = gate_load_blob(small_path, &len);
	for (int vectored = 1; vectored >= 0; vectored--) {
		struct env e = { 0 };
		struct sg_layer_config cfg = { .window_bytes = 1 };
		fresh_cache(cache, sizeof(cache));
		cfg.cache_dir = cache;
		CHECK_EQ(sg_loop_new(NULL, &e.loop), 0);
		struct gate *g = gate_new(e.loop, NULL, bytes, len, vectored);
		g->automatic = true;
		test_layer_new_over(e.loop, &g->base, small_path, &small_toc, &cfg, &e.layer, &e.user);
		struct sg_profile *p;
		CHECK_EQ(sg_profile_new(&small_toc, e.layer->n_chunks, NULL, &p), 0);
		uint64_t want = 0, first = UINT64_MAX, end = 0;
		for (size_t i = 0; i < 3; i++) {
			snprintf(name, sizeof(name), "s%d", files[i]);
			int64_t n = sg_toc_lookup_path(sg_layer_toc(e.layer), name);
			CHECK(n >= 0);
			uint32_t c = sg_toc_node(sg_layer_toc(e.layer), (uint32_t)n)->first_chunk;
			const struct sg_toc_chunk *ch = sg_layer_chunk(e.layer, c);
			CHECK(sg_profile_note(p, c, 1) == SG_PROFILE_RECORDED);
			want += ch->next_offset - ch->offset;
			first = ch->offset < first ? ch->offset : first;
			end = ch->next_offset > end ? ch->next_offset : end;
		}
		CHECK(end - first - want > 2 * SG_LAYER_REPLAY_GAP);   /* the gaps between */
		CHECK(end - first < SG_LAYER_BATCH_GAP);
		CHECK_EQ(sg_layer_replay(e.layer, p, NULL, NULL), 0);
		sg_layer_start(e.layer);
		wait_replay(&e);
		CHECK_EQ(stats(&e).kind_fetched_bytes[SG_FETCH_PROFILE], want);
		CHECK_EQ(g->issued, 1u);   /* one request either way */
		if (vectored) {
			CHECK_EQ(g->most_spans, 3u);
			CHECK_EQ(g->asked_bytes, want);        /* no gap fetched */
		} else {
			CHECK_EQ(g->asked_bytes, end - first);   /* the gaps read along */
		}
		env_close(&e);
	}
	free(bytes);
}

/* The layer closes (the daemon stops, the last mount goes) while the replay's requests are
 * still out and a reader waits on one: the reader gets exactly one answer, the requests are
 * cancelled (the gate checks none is left when the layer frees the source), and nothing of
 * the layer outlives the close (ASan). */
TEST(a_close_while_replay_requests_hang_answers_the_waiting_reader_once)
{
	static const int files[] = { 5, 30 };
	static uint8_t b5[FILE_SIZE];
	struct test_op rd;
	struct env e = { 0 };

	setup();
	struct gate *g = gate_env(&e, files, 2);
	CHECK_EQ(g->n, 2);
	test_op_init(&rd);
	CHECK_EQ(sg_layer_read(e.user, 7, node(&e, 5), 0, FILE_SIZE, b5, &rd.op, test_op_cb), 0);
	test_run_for(e.loop, 20);
	CHECK_EQ(rd.calls, 0);
	env_close(&e);   /* user close, layer close, drain, free */
	CHECK_EQ(rd.calls, 1);
	CHECK(rd.res < 0);
}

/* Two readers wait on a chunk the replay is fetching, and that fetch fails: each gets one
 * answer, -EIO (the replay's failure is theirs: they asked for those bytes), the replay goes
 * on with its other requests, nothing is served unverified, and the chunk is fetched anew on
 * demand for the next reader, with the right bytes; the first readers then read it too. */
TEST(a_failed_replay_fetch_answers_both_waiting_readers_once_and_is_fetched_anew)
{
	static const int files[] = { 5, 30 };
	static uint8_t buf[2][FILE_SIZE];
	struct test_op rd[2];
	struct env e = { 0 };

	setup();
	struct gate *g = gate_env(&e, files, 2);
	CHECK_EQ(g->n, 2);   /* f05 and f30 are far apart: two requests */
	uint64_t off5 = sg_layer_chunk(e.layer, chunk_of(&e, 5))->offset;
	uint64_t off30 = sg_layer_chunk(e.layer, chunk_of(&e, 30))->offset;
	/* Two readers (two processes) of f05 join the replay's job: no request of their own. */
	for (int k = 0; k < 2; k++) {
		test_op_init(&rd[k]);
		CHECK_EQ(sg_layer_read(e.user, 11u + (uint32_t)k, node(&e, 5), 0, FILE_SIZE, buf[k],
				       &rd[k].op, test_op_cb), 0);
	}
	test_run_for(e.loop, 20);
	CHECK_EQ(g->n, 2);
	CHECK_EQ(rd[0].calls + rd[1].calls, 0);
	/* f05's request fails: both readers get -EIO, once. */
	gate_complete(g, gate_find(g, off5), -EIO);
	test_op_wait(e.loop, &rd[0], 2000);
	test_op_wait(e.loop, &rd[1], 2000);
	test_run_for(e.loop, 20);
	CHECK_EQ(rd[0].calls, 1);
	CHECK_EQ(rd[1].calls, 1);
	CHECK_EQ(rd[0].res, -EIO);
	CHECK_EQ(rd[1].res, -EIO);
	/* The replay goes on: f30's request completes, and the replay ends. */
	gate_pass(g, gate_find(g, off30));
	g->automatic = true;
	wait_replay(&e);
	CHECK(stats(&e).replay_done);
	/* A third reader: f05 fetched anew, on demand, right bytes. */
	uint64_t before = stats(&e).ondemand_fetches;
	read_check(&e, e.user, 5);
	CHECK_EQ(stats(&e).ondemand_fetches, before + 1);
	/* The first readers read it now too (from memory). */
	static uint8_t want[FILE_SIZE];
	test_fill_seeded(want, FILE_SIZE, 105u);
	for (int k = 0; k < 2; k++) {
		CHECK_EQ(test_layer_read(e.loop, e.user, 11u + (uint32_t)k, node(&e, 5), 0, buf[k],
					 FILE_SIZE), (int32_t)FILE_SIZE);
		CHECK(memcmp(buf[k], want, FILE_SIZE) == 0);
	}
	read_check(&e, e.user, 30);
	CHECK_EQ(stats(&e).ondemand_fetches, before + 1);   /* f30 came from the replay */
	env_close(&e);
}

/* The same from a source that reads several spans in one request (the registry's): the
 * replay asks for f05 and f30 in one request, which fails.  Both readers of f05 get one
 * answer, -EIO; the replay ends (its one request failed); f05 and f30 are each fetched anew on
 * demand with the right bytes, and the first readers then read f05 too. */
TEST(a_failed_vectored_replay_request_answers_both_waiting_readers_once)
{
	static const int files[] = { 5, 30 };
	static uint8_t buf[2][FILE_SIZE];
	struct test_op rd[2];
	struct env e = { 0 };

	setup();
	struct gate *g = gate_env_over(&e, files, 2, true);
	CHECK_EQ(g->n, 1);   /* f05 and f30: two spans of one request */
	CHECK_EQ(g->q[0].n_spans, 2);
	uint64_t off5 = sg_layer_chunk(e.layer, chunk_of(&e, 5))->offset;
	uint64_t off30 = sg_layer_chunk(e.layer, chunk_of(&e, 30))->offset;
	CHECK_EQ(gate_find(g, off5), 0);
	CHECK_EQ(gate_find(g, off30), 0);
	for (int k = 0; k < 2; k++) {
		test_op_init(&rd[k]);
		CHECK_EQ(sg_layer_read(e.user, 11u + (uint32_t)k, node(&e, 5), 0, FILE_SIZE, buf[k],
				       &rd[k].op, test_op_cb), 0);
	}
	test_run_for(e.loop, 20);
	CHECK_EQ(g->n, 1);   /* they joined the replay's request */
	CHECK_EQ(rd[0].calls + rd[1].calls, 0);
	gate_complete(g, 0, -EIO);
	test_op_wait(e.loop, &rd[0], 2000);
	test_op_wait(e.loop, &rd[1], 2000);
	g->automatic = true;
	wait_replay(&e);
	test_run_for(e.loop, 20);
	CHECK_EQ(rd[0].calls, 1);
	CHECK_EQ(rd[1].calls, 1);
	CHECK_EQ(rd[0].res, -EIO);
	CHECK_EQ(rd[1].res, -EIO);
	CHECK(stats(&e).replay_done);
	uint64_t before = stats(&e).ondemand_fetches;
	read_check(&e, e.user, 5);
	read_check(&e, e.user, 30);
	CHECK_EQ(stats(&e).ondemand_fetches, before + 2);   /* neither came from the replay */
	static uint8_t want[FILE_SIZE];
	test_fill_seeded(want, FILE_SIZE, 105u);
	for (int k = 0; k < 2; k++) {
		CHECK_EQ(test_layer_read(e.loop, e.user, 11u + (uint32_t)k, node(&e, 5), 0, buf[k],
					 FILE_SIZE), (int32_t)FILE_SIZE);
		CHECK(memcmp(buf[k], want, FILE_SIZE) == 0);
	}
	CHECK_EQ(stats(&e).ondemand_fetches, before + 2);
	env_close(&e);
}

/* The daemon's early reads (daemon/early_source.h): a layer whose source read the profile's
 * first chunks beside the TOC, that read still on its way when the replay starts (a slow
 * registry: CI's profile_containerd).  The replay's request waits for those bytes and takes
 * them (no request of its own for them), and its owner hears that the replay is over only
 * once that request ended: the daemon then logs what the early read delivered and let go of
 * the rest (it had logged "0 arrived, 0 used", the request still waiting). */
static struct {
	struct sg_range_source *src;
	unsigned calls;
	struct sg_early_stats at_call;
} over;

static void on_over(void *userdata)
{
	(void)userdata;
	over.calls++;
	sg_early_source_stats(over.src, &over.at_call);
}

TEST(a_replay_started_with_the_early_read_on_its_way_takes_it_then_is_over)
{
	static const int files[] = { 5, 6, 30 };
	struct env e = { 0 };
	struct sg_layer_config cfg = { .window_bytes = 1, .on_replay_over = on_over };
	struct sg_link_meter meter;
	struct sg_early *early = NULL;
	size_t len;

	setup();
	const uint8_t *bytes = blob_bytes(&len);
	memset(&over, 0, sizeof(over));
	fresh_cache(cache, sizeof(cache));
	cfg.cache_dir = cache;
	CHECK_EQ(sg_loop_new(NULL, &e.loop), 0);
	sg_link_meter_init(&meter);
	struct gate *via = gate_new(e.loop, &meter, bytes, len, true);
	struct gate *real = gate_new(e.loop, &meter, bytes, len, true);
	real->automatic = true;
	/* The early span: f05 and f06's chunks, as a profile's head names them. */
	struct env probe = { 0 };
	CHECK_EQ(sg_loop_new(NULL, &probe.loop), 0);
	struct gate *pg = gate_new(probe.loop, NULL, bytes, len, false);
	test_layer_new_over(probe.loop, &pg->base, blob_path, &toc_digest, &cfg, &probe.layer,
			    &probe.user);
	uint64_t from = sg_layer_chunk(probe.layer, chunk_of(&probe, 5))->offset;
	uint64_t to = sg_layer_chunk(probe.layer, chunk_of(&probe, 6))->next_offset;
	env_close(&probe);
	struct sg_profile_span head[] = { { from, to } };
	CHECK_EQ(sg_early_start(&via->base, head, 1, 1 << 20, SG_LAYER_REPLAY_GAP, 0, &early), 0);
	CHECK(early != NULL);
	CHECK_EQ(via->n, 1);   /* held: on its way */
	over.src = sg_early_attach(early, &real->base);
	test_layer_new_over(e.loop, over.src, blob_path, &toc_digest, &cfg, &e.layer, &e.user);
	CHECK_EQ(sg_layer_replay(e.layer, profile_of(&e, files, 3), NULL, NULL), 0);
	sg_layer_start(e.layer);
	test_run_for(e.loop, 30);
	/* Everything went out; f05 and f06 wait for the early read, so the replay is not over. */
	CHECK(stats(&e).replay_done);
	CHECK(e.layer->batches_inflight > 0);
	CHECK_EQ(over.calls, 0);
	gate_complete(via, 0, (int)via->q[0].len);
	wait_replay(&e);
	test_run_for(e.loop, 20);
	CHECK_EQ(over.calls, 1);
	CHECK_EQ(over.at_call.arrived, to - from);
	CHECK_EQ(over.at_call.used, to - from);   /* the replay took them */
	CHECK_EQ(real->issued, 1u);               /* f30 only */
	read_check(&e, e.user, 5);
	read_check(&e, e.user, 6);
	read_check(&e, e.user, 30);
	CHECK_EQ(stats(&e).ondemand_fetches, 0);
	CHECK_EQ(over.calls, 1);
	env_close(&e);
}

/* ---- layers sharing a link ---- */

#define MS 1000000ull

/* A profile of e's layer naming files[i], first read at ms[i] (from epoch 0). */
static struct sg_profile *timed_profile(struct env *e, const int *files, const uint32_t *ms,
					size_t n)
{
	struct sg_profile *p;

	CHECK_EQ(sg_profile_new(&toc_digest, e->layer->n_chunks, NULL, &p), 0);
	sg_profile_set_epoch(p, 0);
	for (size_t i = 0; i < n; i++)
		CHECK(sg_profile_note(p, chunk_of(e, files[i]), ms[i] * MS) == SG_PROFILE_RECORDED);
	return p;
}

/* A layer over a gate source on a shared loop and link (not started). */
static struct gate *shared_gate_layer(struct env *e, struct sg_loop *loop,
				      struct sg_link_meter *m, char *cache_dir, bool record)
{
	struct sg_layer_config cfg = {
		.window_bytes = 1,
		.cache_dir = cache_dir,
		.on_profile = record ? on_profile : NULL,
		.userdata = &e->rec,
		.profile_quiet_ns = 300 * MS,
	};
	size_t len;
	const uint8_t *bytes = blob_bytes(&len);

	e->loop = loop;
	struct gate *g = gate_new(loop, m, bytes, len, false);
	CHECK_EQ(sg_layer_new(loop, &g->base, test_load_toc_file(blob_path, &toc_digest), &cfg,
			      &e->layer), 0);
	CHECK_EQ(sg_layer_user_new(e->layer, &e->user), 0);
	return g;
}

/* Two layers A and B over gates on one loop and link m, replaying timed profiles of files
 * fa (read at ta) and fb (read at tb), A started first: A fills the link (the most requests
 * fetching ahead a link takes), B waits. */
struct two {
	struct sg_link_meter m;
	struct sg_loop *loop;
	struct env a, b;
	struct gate *ga, *gb;
};

static void two_replays(struct two *t, const int *fa, const uint32_t *ta, size_t na,
			const int *fb, const uint32_t *tb, size_t nb)
{
	setup();
	sg_link_meter_init(&t->m);
	CHECK_EQ(sg_loop_new(NULL, &t->loop), 0);
	fresh_cache(cache, sizeof(cache));
	fresh_cache(cache2, sizeof(cache2));
	t->ga = shared_gate_layer(&t->a, t->loop, &t->m, cache, false);
	t->gb = shared_gate_layer(&t->b, t->loop, &t->m, cache2, false);
	CHECK_EQ(sg_layer_replay(t->a.layer, timed_profile(&t->a, fa, ta, na), NULL, NULL), 0);
	CHECK_EQ(sg_layer_replay(t->b.layer, timed_profile(&t->b, fb, tb, nb), NULL, NULL), 0);
	sg_layer_start(t->a.layer);
	sg_layer_start(t->b.layer);
	test_run_for(t->loop, 30);
	CHECK_EQ(t->ga->n, SG_LINK_AHEAD_REQUESTS);
	CHECK_EQ(t->gb->n, 0);
}

/* Which layer's gate got the request for file f? */
static bool gate_has(struct env *e, const struct gate *g, int f)
{
	uint64_t off = sg_layer_chunk(e->layer, chunk_of(e, f))->offset;
	for (size_t i = 0; i < g->n; i++)
		if (g->q[i].offset <= off && off < g->q[i].offset + g->q[i].len)
			return true;
	return false;
}

/* Two layers of an image replay over one link (one registry host).  A started first and
 * filled the link (the most requests fetching ahead that a link takes: its window of six
 * chunks, far apart, in blob order); from then on, each time one of A's requests ends, the
 * room goes to the replay whose next chunk the workload read first: B's three, read at 50,
 * 200 and 400 ms, before A's last (f38), read at 600 ms, though it is A's own requests that
 * end.  Every chunk is verified and served, and neither replay is starved. */
TEST(two_replays_on_one_link_go_in_the_order_their_chunks_were_read)
{
	static const int fa[] = { 30, 5, 15, 35, 38, 0 };
	static const uint32_t ta[] = { 0, 100, 300, 500, 600, 700 };
	static const int fb[] = { 20, 10, 25 };
	static const uint32_t tb[] = { 50, 200, 400 };
	static struct two t;

	two_replays(&t, fa, ta, 6, fb, tb, 3);
	struct gate *ga = t.ga, *gb = t.gb;
	struct sg_loop *loop = t.loop;
	struct env *a = &t.a, *b = &t.b;
	/* A alone at first: five of its chunks, one request each (far apart), in blob order. */
	CHECK(!gate_has(a, ga, 38));
	/* A's requests end, one at a time: B's chunks go, then A's last. */
	static const char want[] = "BBBA";
	for (int k = 0; k < 4; k++) {
		unsigned a_before = ga->issued, b_before = gb->issued;
		gate_pass(ga, 0);
		test_run_for(loop, 30);
		CHECK_EQ(ga->issued - a_before + gb->issued - b_before, 1);
		CHECK_EQ(want[k] == 'A' ? ga->issued - a_before : gb->issued - b_before, 1);
	}
	CHECK(gate_has(a, ga, 38));
	CHECK(gate_has(b, gb, 20) && gate_has(b, gb, 10) && gate_has(b, gb, 25));
	ga->automatic = gb->automatic = true;
	while (ga->n)
		gate_pass(ga, 0);
	while (gb->n)
		gate_pass(gb, 0);
	wait_replay(a);
	wait_replay(b);
	for (size_t i = 0; i < 6; i++)
		read_check(a, a->user, fa[i]);
	for (size_t i = 0; i < 3; i++)
		read_check(b, b->user, fb[i]);
	CHECK_EQ(stats(a).ondemand_fetches, 0);
	CHECK_EQ(stats(b).ondemand_fetches, 0);
	CHECK(sg_list_empty(&t.m.replayers));   /* both left the link's list when done */
	test_layer_user_close(loop, a->user);
	test_layer_close(loop, a->layer);
	test_layer_teardown(loop, b->user, b->layer);
}

/* A replay's layer closes while another layer on the link waits for the room it holds: the
 * closing one leaves the link's list (no dangling entry, ASan), and the other's replay
 * goes on and ends. */
TEST(a_layer_closing_mid_replay_leaves_the_link_to_the_other)
{
	static const int fa[] = { 30, 5, 15, 35, 38, 0 };
	static const uint32_t ta[] = { 0, 10, 20, 30, 40, 50 };
	static const int fb[] = { 20, 10 };
	static const uint32_t tb[] = { 100, 200 };
	static struct two t;

	two_replays(&t, fa, ta, 6, fb, tb, 2);
	struct gate *ga = t.ga, *gb = t.gb;
	struct sg_loop *loop = t.loop;
	struct env *a = &t.a, *b = &t.b;
	/* A goes (its requests cancelled: its gate, freed with it, aborts on one still
	 * queued), B takes the link: at once, as A's cancelled requests end and free the room
	 * (sg_layer_room_freed), not on a timer or its own request's end (it had none). */
	bool gone = false;
	ga->destroyed = &gone;
	test_layer_user_close(loop, a->user);
	test_layer_close(loop, a->layer);
	CHECK(gone);
	CHECK(gb->n > 0);
	gb->automatic = true;
	while (gb->n > 0)
		gate_complete(gb, 0, (int)gb->q[0].len);
	wait_replay(b);
	CHECK_EQ(gb->issued, 2);
	read_check(b, b->user, 20);
	read_check(b, b->user, 10);
	CHECK_EQ(stats(b).ondemand_fetches, 0);
	CHECK(sg_list_empty(&t.m.replayers));
	test_layer_teardown(loop, b->user, b->layer);
}

/* The layers a workload reads record on one clock, and none ends its recording while the
 * workload still reads the others: A's second chunk is read 0.5 s after its first (quiet
 * time 0.3 s), B's were read in between.  A's times and B's count from A's first read. */
TEST(layers_read_by_one_workload_record_on_one_clock_until_it_goes_quiet)
{
	struct sg_link_meter m;
	struct sg_loop *loop;
	struct env a = { 0 }, b = { 0 };

	setup();
	sg_link_meter_init(&m);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	fresh_cache(cache, sizeof(cache));
	fresh_cache(cache2, sizeof(cache2));
	struct gate *ga = shared_gate_layer(&a, loop, &m, cache, true);
	struct gate *gb = shared_gate_layer(&b, loop, &m, cache2, true);
	ga->automatic = gb->automatic = true;
	sg_layer_start(a.layer);
	sg_layer_start(b.layer);
	read_check(&a, a.user, 3);
	for (int i = 0; i < 5; i++) {
		test_run_for(loop, 100);
		read_check(&b, b.user, 10 + i);
	}
	read_check(&a, a.user, 7);
	test_run_for(loop, 700);   /* quiet: both hand over */
	CHECK_EQ(a.rec.calls, 1);
	CHECK_EQ(b.rec.calls, 1);
	CHECK_EQ(a.rec.chunks, 2);
	CHECK_EQ(b.rec.chunks, 5);
	CHECK(range_is(&a.rec, 0, chunk_of(&a, 3), chunk_of(&a, 3)));
	CHECK(range_is(&a.rec, 1, chunk_of(&a, 7), chunk_of(&a, 7)));
	/* One clock: A's first read is 0, B's first read came ~100 ms later, A's second after
	 * all of B's. */
	CHECK_EQ(a.rec.ranges[0].at_ms, 0);
	CHECK(b.rec.ranges[0].at_ms >= 90);
	CHECK(a.rec.ranges[1].at_ms >= 500);
	CHECK(a.rec.ranges[1].at_ms > b.rec.ranges[b.rec.n_ranges - 1].at_ms);
	test_layer_user_close(loop, a.user);
	test_layer_close(loop, a.layer);
	test_layer_teardown(loop, b.user, b.layer);
}

/* A replay of chunks larger than what may be asked ahead in flight keeps the link busy:
 * gcc's cc1 is replayed as gzip members of 1.5-2.2 MB, against 1.45 MB on the far link,
 * and each went out alone, a round trip after the one before had ended.  Here 1 MiB chunks
 * against about 0.6 MiB (2 MB/s, 10 ms round trips): the next request goes out while the
 * one before still streams, once the link would deliver what it owes within the pacing
 * horizon, and not before (it would share the link with the one before, and the chunk read
 * first would come late).  Every byte is still verified and served from the replay. */
#define BIG_FILE (1u << 20)
#define BIG_FILES 3

TEST(a_replay_of_chunks_larger_than_the_limit_sends_the_next_as_the_link_drains)
{
	static uint8_t data[BIG_FILE], buf[BIG_FILE];
	struct sg_layer_config cfg = { .window_bytes = 1 };
	struct sg_digest big_toc;
	struct sg_link_meter m;
	struct sg_loop *loop;
	struct sg_layer *layer;
	struct sg_layer_user *user;
	struct sg_profile *p;
	char path[320], name[16];
	uint32_t nodes[BIG_FILES];
	size_t len;

	setup();
	snprintf(path, sizeof(path), "%s/big-chunks", dir);
	write_files_blob(path, "b", 1, BIG_FILES, BIG_FILE, 700u, &big_toc);
	uint8_t *bytes = gate_load_blob(path, &len);
	fresh_cache(cache, sizeof(cache));
	cfg.cache_dir = cache;
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	sg_link_meter_init(&m);
	m.bytes_per_s = 2e6;
	m.bw_samples = 1;
	m.rtt_ns = m.rtt_min_ns = 10 * MS;
	m.rtt_samples = 1;
	struct gate *g = gate_new(loop, &m, bytes, len, false);
	test_layer_new_over(loop, &g->base, path, &big_toc, &cfg, &layer, &user);
	CHECK_EQ(sg_profile_new(&big_toc, layer->n_chunks, NULL, &p), 0);
	for (int i = 0; i < BIG_FILES; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		int64_t n = sg_toc_lookup_path(sg_layer_toc(layer), name);
		CHECK(n >= 0);
		nodes[i] = (uint32_t)n;
		uint32_t c = sg_toc_node(sg_layer_toc(layer), nodes[i])->first_chunk;
		CHECK(sg_layer_chunk(layer, c)->next_offset - sg_layer_chunk(layer, c)->offset >
		      BIG_FILE / 2 + (256u << 10));   /* over the limit with a batch beside it */
		CHECK(sg_profile_note(p, c, 1) == SG_PROFILE_RECORDED);
	}
	CHECK_EQ(sg_layer_replay(layer, p, NULL, NULL), 0);
	sg_layer_start(layer);
	test_run_for(loop, 30);
	CHECK_EQ(g->n, 1);   /* the first chunk alone: over the limit */
	gate_arrive(g, 0, g->q[0].len / 2);
	test_run_for(loop, 30);
	CHECK_EQ(g->n, 1);   /* half of it still owed: 0.26 s of the link */
	gate_arrive(g, 0, g->q[0].owed - (20u << 10));
	test_run_for(loop, 700);   /* paced()'s timer: it drains within the horizon now */
	CHECK_EQ(g->n, 2);   /* the second beside the first, still streaming */
	CHECK_EQ(g->issued, 2);
	gate_complete(g, 0, (int)g->q[0].len);
	test_run_for(loop, 30);
	CHECK_EQ(g->issued, 2);   /* the second is owed whole: the third waits */
	g->automatic = true;
	while (g->n)
		gate_complete(g, 0, (int)g->q[0].len);
	double end = test_now_ms() + 10000;
	struct sg_layer_stats st;
	for (sg_layer_stats(layer, &st); !st.replay_done || layer->batches_inflight;
	     sg_layer_stats(layer, &st)) {
		if (test_now_ms() > end)
			TEST_FAIL("the replay never ended");
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	}
	CHECK_EQ(g->issued, 3);
	for (int i = 0; i < BIG_FILES; i++) {
		test_fill_seeded(data, BIG_FILE, 700u + (uint32_t)i);
		CHECK_EQ(test_layer_read(loop, user, 0, nodes[i], 0, buf, BIG_FILE),
			 (int32_t)BIG_FILE);
		CHECK(memcmp(buf, data, BIG_FILE) == 0);
	}
	sg_layer_stats(layer, &st);
	CHECK_EQ(st.ondemand_fetches, 0);
	test_layer_teardown(loop, user, layer);
	free(bytes);
}

TEST_MAIN()
