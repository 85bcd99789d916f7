/* The fetch trace (fs/fetch_trace.h): events written, then the file read back line by line
 * with a JSON parser, each field checked against the contract with the bench (README.md,
 * "Fetch trace"); a NULL trace does nothing; names that need escaping stay valid JSON; a
 * buffer's worth of lines is written as it fills. */
#include "daemon/core/loop.h"
#include "fs/fetch_trace.h"
#include "net/json.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static char dir[256];

static void cleanup(void)
{
	test_rm_tree(dir);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/stargzd-trace-XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
}

/* The trace file's lines, parsed; returns how many. */
static size_t read_lines(const char *path, yajl_val *lines, size_t max)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;

	CHECK(f);
	while ((len = getline(&line, &cap, f)) > 0) {
		CHECK(line[len - 1] == '\n');   /* whole lines only */
		CHECK(n < max);
		struct sg_error err;
		if (sg_json_parse(line, (size_t)len - 1, 1u << 20, &lines[n], &err) < 0)
			TEST_FAIL("line %zu is not JSON (%s): %s", n + 1, err.msg, line);
		CHECK(YAJL_IS_OBJECT(lines[n]));
		n++;
	}
	free(line);
	fclose(f);
	return n;
}

static double num(yajl_val obj, const char *key)
{
	yajl_val v = sg_json_member(obj, key);
	if (!v || !YAJL_IS_NUMBER(v))
		TEST_FAIL("no number \"%s\"", key);
	return YAJL_GET_DOUBLE(v);
}

static bool boolean(yajl_val obj, const char *key)
{
	yajl_val v = sg_json_member(obj, key);
	if (!v || !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)))
		TEST_FAIL("no boolean \"%s\"", key);
	return YAJL_IS_TRUE(v);
}

static void free_lines(yajl_val *lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		yajl_tree_free(lines[i]);
}

TEST(events_read_back_with_every_field)
{
	struct sg_fetch_trace *t;
	char path[512];
	yajl_val lines[8];

	setup();
	struct timespec wall0, wall1;
	clock_gettime(CLOCK_REALTIME, &wall0);
	CHECK_EQ(sg_fetch_trace_open(dir, &t), 0);
	clock_gettime(CLOCK_REALTIME, &wall1);
	snprintf(path, sizeof(path), "%s/trace-%ld.jsonl", dir, (long)getpid());
	CHECK_STR(sg_fetch_trace_path(t), path);
	uint64_t t0 = sg_now_ns();
	sg_fetch_trace_read(t, "sha256:abc", "usr/lib/x.so", 0, 131072, t0 + 12500000, 41200000,
			    true);
	sg_fetch_trace_read(t, "sha256:abc", "etc/ld.so.cache", 4096, 100, t0 + 20000000, 300000,
			    false);
	sg_fetch_trace_fetch(t, "sha256:abc", SG_FETCH_SPEC, 123, 4567, 3, 2, t0 + 10100000,
			     45000000, true, -1, -1);
	sg_fetch_trace_fetch(t, "sha256:abc", SG_FETCH_ONDEMAND, 0, 10, 1, 1, t0, 1000000, false,
			     65536, 4096);
	uint64_t fetched[SG_FETCH_KINDS] = { 100, 200, 300, 400, 500 };
	uint64_t used[SG_FETCH_KINDS] = { 100, 50, 0, 4, 0 };
	sg_fetch_trace_layer(t, "sha256:abc", fetched, used);
	sg_fetch_trace_toc(t, "sha256:abc", t0 + 5000000, 150000000);
	/* Buffered until a flush: nothing in the file yet. */
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_size, 0);
	sg_fetch_trace_close(t);

	yajl_val all[8];
	size_t n = read_lines(path, all, 8);
	CHECK_EQ(n, 7u);
	/* start: the clock's origin on the wall clock, first */
	CHECK_STR(sg_json_string(all[0], "ev"), "start");
	CHECK_EQ(num(all[0], "t"), 0);
	double epoch = num(all[0], "epoch");
	CHECK(epoch >= (double)wall0.tv_sec + wall0.tv_nsec / 1e9 - 1e-6);
	CHECK(epoch <= (double)wall1.tv_sec + wall1.tv_nsec / 1e9 + 1e-6);
	/* toc: t is when the layer was asked for, ms until it could mount */
	CHECK_STR(sg_json_string(all[6], "ev"), "toc");
	CHECK_STR(sg_json_string(all[6], "layer"), "sha256:abc");
	CHECK(num(all[6], "t") >= 4.9 && num(all[6], "t") < 6.0);
	CHECK(num(all[6], "ms") > 149.99 && num(all[6], "ms") < 150.01);
	for (size_t i = 0; i < 5; i++)
		lines[i] = all[i + 1];
	/* read, net */
	CHECK_STR(sg_json_string(lines[0], "ev"), "read");
	CHECK_STR(sg_json_string(lines[0], "layer"), "sha256:abc");
	CHECK_STR(sg_json_string(lines[0], "path"), "usr/lib/x.so");
	CHECK(num(lines[0], "t") >= 12.4 && num(lines[0], "t") < 13.5);
	CHECK_EQ(num(lines[0], "off"), 0);
	CHECK_EQ(num(lines[0], "len"), 131072);
	CHECK(num(lines[0], "wait_ms") > 41.19 && num(lines[0], "wait_ms") < 41.21);
	CHECK(boolean(lines[0], "net"));
	/* read, disk only */
	CHECK_STR(sg_json_string(lines[1], "path"), "etc/ld.so.cache");
	CHECK_EQ(num(lines[1], "off"), 4096);
	CHECK(!boolean(lines[1], "net"));
	/* fetch: t is its start */
	CHECK_STR(sg_json_string(lines[2], "ev"), "fetch");
	CHECK_STR(sg_json_string(lines[2], "kind"), "spec");
	CHECK(num(lines[2], "t") >= 10.0 && num(lines[2], "t") < 11.0);
	CHECK_EQ(num(lines[2], "off"), 123);
	CHECK_EQ(num(lines[2], "len"), 4567);
	CHECK_EQ(num(lines[2], "chunks"), 3);
	CHECK_EQ(num(lines[2], "spans"), 2);   /* a vectored read: len is its spans' sum */
	CHECK(num(lines[2], "ms") > 44.99 && num(lines[2], "ms") < 45.01);
	CHECK(boolean(lines[2], "ok"));
	CHECK(!sg_json_member(lines[2], "beside"));   /* none given: not written */
	CHECK(!sg_json_member(lines[2], "beside_spec"));
	CHECK_STR(sg_json_string(lines[3], "kind"), "ondemand");
	CHECK(!boolean(lines[3], "ok"));
	CHECK_EQ(num(lines[3], "beside"), 65536);   /* bytes fetched ahead that arrived meanwhile */
	CHECK_EQ(num(lines[3], "beside_spec"), 4096);   /* of them, speculation's */
	/* layer summary: every kind, in both maps */
	CHECK_STR(sg_json_string(lines[4], "ev"), "layer");
	yajl_val f = sg_json_member(lines[4], "fetched"), u = sg_json_member(lines[4], "used");
	CHECK(f && YAJL_IS_OBJECT(f) && u && YAJL_IS_OBJECT(u));
	CHECK_EQ(f->u.object.len, (size_t)SG_FETCH_KINDS);
	for (int k = 0; k < SG_FETCH_KINDS; k++) {
		CHECK_EQ(num(f, sg_fetch_kind_name((enum sg_fetch_kind)k)), fetched[k]);
		CHECK_EQ(num(u, sg_fetch_kind_name((enum sg_fetch_kind)k)), used[k]);
	}
	CHECK_STR(sg_fetch_kind_name(SG_FETCH_PREFETCH), "prefetch");
	CHECK_STR(sg_fetch_kind_name(SG_FETCH_BACKGROUND), "background");
	CHECK_STR(sg_fetch_kind_name(SG_FETCH_STREAM), "stream");
	CHECK_STR(sg_fetch_kind_name(SG_FETCH_KINDS), "?");
	free_lines(all, n);
}

TEST(null_trace_does_nothing_and_a_missing_dir_fails)
{
	struct sg_fetch_trace *t = NULL;
	uint64_t z[SG_FETCH_KINDS] = { 0 };

	sg_fetch_trace_read(NULL, "l", "p", 0, 1, 0, 0, true);
	sg_fetch_trace_fetch(NULL, "l", SG_FETCH_ONDEMAND, 0, 1, 1, 1, 0, 0, true, -1, -1);
	sg_fetch_trace_layer(NULL, "l", z, z);
	sg_fetch_trace_toc(NULL, "l", 0, 0);
	sg_fetch_trace_flush(NULL);
	sg_fetch_trace_close(NULL);
	CHECK_STR(sg_fetch_trace_path(NULL), "");
	CHECK(!sg_fetch_trace_failed(NULL));
	CHECK_EQ(sg_fetch_trace_open("/nonexistent/stargzd-trace", &t), -ENOENT);
	CHECK(t == NULL);
}

TEST(names_that_need_escaping_stay_json)
{
	struct sg_fetch_trace *t;
	yajl_val lines[3];
	char name[5000];

	setup();
	CHECK_EQ(sg_fetch_trace_open(dir, &t), 0);
	/* Quotes, backslashes, control bytes, and the longest path a TOC gives, all escaped. */
	sg_fetch_trace_read(t, "sha256:\"x\"", "a\"b\\c\n\x01\x7f/d", 0, 1, sg_now_ns(), 0, true);
	memset(name, '\x02', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	sg_fetch_trace_read(t, "l", name, 0, 1, sg_now_ns(), 0, true);
	char path[512];
	snprintf(path, sizeof(path), "%s", sg_fetch_trace_path(t));
	sg_fetch_trace_close(t);
	size_t n = read_lines(path, lines, 3);
	CHECK_EQ(n, 3u);   /* the start line, then the two reads */
	CHECK_STR(sg_json_string(lines[1], "layer"), "sha256:\"x\"");
	CHECK_STR(sg_json_string(lines[1], "path"), "a\"b\\c\n\x01\x7f/d");
	CHECK_EQ(strlen(sg_json_string(lines[2], "path")), 4096u);   /* cut at a path's limit */
	free_lines(lines, n);
}

TEST(lines_go_out_as_the_buffer_fills)
{
	struct sg_fetch_trace *t;
	struct stat st;

	setup();
	CHECK_EQ(sg_fetch_trace_open(dir, &t), 0);
	for (int i = 0; i < 5000; i++)
		sg_fetch_trace_fetch(t, "sha256:abc", SG_FETCH_BACKGROUND, (uint64_t)i << 20, 1u << 20,
				     8, 1, sg_now_ns(), 1000000, true, -1, -1);
	CHECK_EQ(stat(sg_fetch_trace_path(t), &st), 0);
	CHECK(st.st_size > 0);   /* written already, before any flush */
	char path[512];
	snprintf(path, sizeof(path), "%s", sg_fetch_trace_path(t));
	sg_fetch_trace_close(t);
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;
	CHECK(f);
	while (fgets(line, sizeof(line), f)) {
		CHECK(strchr(line, '\n'));   /* none cut in two */
		n++;
	}
	fclose(f);
	CHECK_EQ(n, 5001);   /* the start line and 5000 fetches */
}

TEST_MAIN()
