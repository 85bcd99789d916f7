/* Learned startup profiles: the recorder, merging, the format and its parser (fs/profile.h),
 * and the store under the root (fs/profile_store.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/profile.h"
#include "daemon/core/loop.h"
#include "fs/profile_store.h"
#include "tests/helpers/layer_fixture.h"
#include "tests/helpers/tmpdir.h"
#include "tests/unit/test.h"

#define SEC 1000000000ull

static struct sg_digest digest_of(const char *s)
{
	struct sg_digest d;
	sg_sha256(s, strlen(s), &d);
	return d;
}

/* "[a,b],[c,d]" of the profile's ranges, or with times, "t,t" of their times. */
static const char *ranges_or_times(const struct sg_profile *p, bool times)
{
	static char buf[1024];
	const struct sg_profile_range *r;
	size_t n = sg_profile_ranges(p, &r), off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off < sizeof(buf) - 32; i++)
		off += times ? (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%u", i ? "," : "",
						r[i].at_ms)
			     : (size_t)snprintf(buf + off, sizeof(buf) - off, "%s[%u,%u]",
						i ? "," : "", r[i].first, r[i].last);
	return buf;
}

static const char *ranges_str(const struct sg_profile *p)
{
	return ranges_or_times(p, false);
}

static const char *times_str(const struct sg_profile *p)
{
	return ranges_or_times(p, true);
}

static struct sg_profile *recorder(const char *toc, uint32_t n, uint64_t quiet_ns,
				   uint32_t max_ranges)
{
	struct sg_digest d = digest_of(toc);
	struct sg_profile_limits lim = { .quiet_ns = quiet_ns, .max_ranges = max_ranges };
	struct sg_profile *p = NULL;
	CHECK_EQ(sg_profile_new(&d, n, &lim, &p), 0);
	return p;
}

TEST(records_first_reads_in_order_merging_neighbours)
{
	struct sg_profile *p = recorder("t", 100, 0, 0);
	uint32_t reads[] = { 10, 11, 12, 11, 3, 4, 13, 99, 10, 5 };

	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		(void)sg_profile_note(p, reads[i], i);
	CHECK_STR(ranges_str(p), "[10,12],[3,4],[13,13],[99,99],[5,5]");
	CHECK_EQ(sg_profile_chunks(p), 8);
	CHECK_EQ(sg_profile_note(p, 12, 20), SG_PROFILE_KNOWN);
	CHECK_EQ(sg_profile_note(p, 100, 20), SG_PROFILE_KNOWN);     /* past the layer */
	CHECK_EQ(sg_profile_note(p, 6, 20), SG_PROFILE_RECORDED);    /* extends [5,5] */
	CHECK_STR(ranges_str(p), "[10,12],[3,4],[13,13],[99,99],[5,6]");
	CHECK(sg_profile_has(p, 6) && !sg_profile_has(p, 7));
	sg_profile_free(p);
}

TEST(recording_ends_when_the_workload_goes_quiet)
{
	struct sg_profile *p = recorder("t", 100, 2 * SEC, 0);

	CHECK(!sg_profile_quiet(p, 100 * SEC));      /* nothing recorded yet: not quiet */
	CHECK_EQ(sg_profile_note(p, 1, 100 * SEC), SG_PROFILE_RECORDED);
	CHECK_EQ(sg_profile_note(p, 1, 101 * SEC), SG_PROFILE_KNOWN);
	CHECK(!sg_profile_quiet(p, 101 * SEC + SEC / 2));
	/* Known chunks do not keep it alive: 2 s after the last new chunk it is over. */
	CHECK(sg_profile_quiet(p, 102 * SEC));
	CHECK_EQ(sg_profile_note(p, 50, 102 * SEC), SG_PROFILE_DONE);
	CHECK(!sg_profile_recording(p));
	sg_profile_rearm(p);
	CHECK_EQ(sg_profile_note(p, 50, 200 * SEC), SG_PROFILE_RECORDED);
	CHECK_STR(ranges_str(p), "[1,1],[50,50]");
	/* A late note ends it too, without the timer. */
	CHECK_EQ(sg_profile_note(p, 60, 203 * SEC), SG_PROFILE_DONE);
	sg_profile_free(p);
}

TEST(the_range_cap_bounds_the_profile)
{
	struct sg_profile *p = recorder("t", 1000, UINT64_MAX, 3);

	CHECK_EQ(sg_profile_note(p, 0, 0), SG_PROFILE_RECORDED);
	CHECK_EQ(sg_profile_note(p, 10, 0), SG_PROFILE_RECORDED);
	CHECK_EQ(sg_profile_note(p, 20, 0), SG_PROFILE_RECORDED);
	CHECK_EQ(sg_profile_note(p, 21, 0), SG_PROFILE_RECORDED);    /* still one range */
	CHECK_EQ(sg_profile_note(p, 30, 0), SG_PROFILE_DONE);
	CHECK(sg_profile_truncated(p));
	CHECK_EQ(sg_profile_note(p, 22, 0), SG_PROFILE_DONE);
	CHECK(!sg_profile_has(p, 30));
	CHECK_STR(ranges_str(p), "[0,0],[10,10],[20,21]");
	sg_profile_free(p);
}

TEST(merge_is_a_union_keeping_first_seen_order)
{
	struct sg_profile *a = recorder("t", 100, 0, 0), *b = recorder("t", 100, 0, 0);
	struct sg_profile *other = recorder("u", 100, 0, 0), *small = recorder("t", 50, 0, 0);
	struct sg_error err = { 0 };

	for (uint32_t c = 20; c < 25; c++)
		(void)sg_profile_note(a, c, 0);
	(void)sg_profile_note(a, 5, 0);
	/* b: a container that read other things first, overlapping a */
	for (uint32_t c = 0; c < 8; c++)
		(void)sg_profile_note(b, c, 0);
	for (uint32_t c = 22; c < 30; c++)
		(void)sg_profile_note(b, c, 0);
	CHECK_EQ(sg_profile_merge(a, b, &err), 0);
	CHECK_STR(ranges_str(a), "[20,24],[5,5],[0,4],[6,7],[25,29]");
	CHECK_EQ(sg_profile_chunks(a), 5 + 1 + 5 + 2 + 5);
	CHECK_EQ(sg_profile_merge(a, other, &err), -EINVAL);
	CHECK(strstr(err.msg, "cannot merge") != NULL);
	CHECK_EQ(sg_profile_merge(a, small, &err), -EINVAL);
	CHECK(strstr(err.msg, "chunk count") != NULL);
	sg_profile_free(a);
	sg_profile_free(b);
	sg_profile_free(other);
	sg_profile_free(small);
}

TEST(format_and_parse_round_trip)
{
	struct sg_profile *p = recorder("t", 1000, 0, 0), *q = NULL;
	struct sg_digest layer = digest_of("blob");
	struct sg_error err = { 0 };
	char *json = NULL, *json2 = NULL;
	size_t len = 0, len2 = 0;

	sg_profile_set_layer(p, &layer);
	for (uint32_t c = 500; c < 600; c++)
		(void)sg_profile_note(p, c, 0);
	(void)sg_profile_note(p, 7, 0);
	(void)sg_profile_note(p, 999, 0);
	CHECK_EQ(sg_profile_format(p, &json, &len), 0);
	CHECK(strstr(json, "\"chunks\":[[500,599],[7,7],[999,999]]") != NULL);
	CHECK(strstr(json, "\"chunkCount\":1000") != NULL);
	CHECK_EQ(sg_profile_parse(json, len, &q, &err), 0);
	CHECK(sg_digest_equal(sg_profile_toc(q), sg_profile_toc(p)));
	CHECK(sg_profile_layer(q) && sg_digest_equal(sg_profile_layer(q), &layer));
	CHECK_EQ(sg_profile_chunk_count(q), 1000);
	CHECK_STR(ranges_str(q), "[500,599],[7,7],[999,999]");
	CHECK(!sg_profile_recording(q));
	CHECK(sg_profile_has(q, 550) && !sg_profile_has(q, 8));
	CHECK_EQ(sg_profile_format(q, &json2, &len2), 0);
	CHECK_EQ(len, len2);
	CHECK_MEM(json, json2, len);
	free(json);
	free(json2);
	sg_profile_free(p);
	sg_profile_free(q);
}

#define MS 1000000ull

TEST(each_range_keeps_when_it_was_first_read_from_the_epoch)
{
	struct sg_profile *p = recorder("t", 100, UINT64_MAX, 0), *q = NULL;
	struct sg_error err = { 0 };
	char *json = NULL;
	size_t len = 0;

	/* Without an epoch, the first note is 0. */
	CHECK_EQ(sg_profile_note(p, 10, 500 * MS), SG_PROFILE_RECORDED);
	CHECK_EQ(sg_profile_note(p, 11, 530 * MS), SG_PROFILE_RECORDED);   /* joins [10,10] */
	CHECK_EQ(sg_profile_note(p, 40, 575 * MS), SG_PROFILE_RECORDED);
	CHECK_STR(ranges_str(p), "[10,11],[40,40]");
	CHECK_STR(times_str(p), "0,75");
	/* The owner's epoch (another layer's first read, earlier): later notes count from it. */
	sg_profile_set_epoch(p, 400 * MS);
	CHECK_EQ(sg_profile_note(p, 3, 700 * MS), SG_PROFILE_RECORDED);
	CHECK_STR(times_str(p), "0,75,300");
	CHECK(sg_profile_has_times(p));
	CHECK_EQ(sg_profile_format(p, &json, &len), 0);
	CHECK(strstr(json, "\"chunks\":[[10,11],[40,40],[3,3]],\"ms\":[0,75,300]") != NULL);
	CHECK_EQ(sg_profile_parse(json, len, &q, &err), 0);
	CHECK(sg_profile_has_times(q));
	CHECK_STR(times_str(q), "0,75,300");
	free(json);
	sg_profile_free(q);
	/* A new workload (rearm) has its own clock again. */
	sg_profile_rearm(p);
	CHECK_EQ(sg_profile_note(p, 60, 9000 * MS), SG_PROFILE_RECORDED);
	CHECK_STR(times_str(p), "0,75,300,0");
	sg_profile_free(p);
}

TEST(another_layers_reads_keep_a_recording_from_going_quiet)
{
	struct sg_profile *p = recorder("t", 100, 2 * SEC, 0);

	CHECK_EQ(sg_profile_note(p, 1, 100 * SEC), SG_PROFILE_RECORDED);
	/* The workload reads other layers for 3 s: this one is not quiet. */
	sg_profile_touch(p, 101 * SEC);
	sg_profile_touch(p, 103 * SEC);
	CHECK(!sg_profile_quiet(p, 104 * SEC));
	CHECK_EQ(sg_profile_note(p, 9, 104 * SEC + SEC / 2), SG_PROFILE_RECORDED);
	/* An old touch moves nothing back. */
	sg_profile_touch(p, 102 * SEC);
	CHECK(!sg_profile_quiet(p, 106 * SEC));
	CHECK(sg_profile_quiet(p, 106 * SEC + SEC / 2));
	/* Once over, a touch does not bring it back. */
	sg_profile_touch(p, 107 * SEC);
	CHECK_EQ(sg_profile_note(p, 3, 107 * SEC), SG_PROFILE_DONE);
	CHECK_STR(ranges_str(p), "[1,1],[9,9]");
	sg_profile_free(p);
}

TEST(times_survive_merge_and_a_profile_without_times_keeps_its_place)
{
	static const char timeless[] =
		"{\"schemaVersion\":1,\"toc\":\"%s\",\"chunkCount\":100,\"chunks\":[[70,71],[3,3]]}";
	struct sg_profile *a = recorder("t", 100, UINT64_MAX, 0), *b = recorder("t", 100, UINT64_MAX, 0);
	struct sg_profile *c = NULL;
	struct sg_digest d = digest_of("t");
	char toc[SG_DIGEST_STRLEN + 1], doc[512];
	struct sg_error err = { 0 };

	(void)sg_profile_note(a, 20, 0);
	(void)sg_profile_note(a, 30, 40 * MS);
	(void)sg_profile_note(b, 30, 0);
	(void)sg_profile_note(b, 50, 10 * MS);
	CHECK_EQ(sg_profile_merge(a, b, &err), 0);
	CHECK_STR(ranges_str(a), "[20,20],[30,30],[50,50]");
	CHECK_STR(times_str(a), "0,40,10");   /* each keeps its own recording's time */
	/* A profile from a producer without times: no times, each range at 0. */
	sg_digest_format(&d, toc);
	snprintf(doc, sizeof(doc), timeless, toc);
	CHECK_EQ(sg_profile_parse(doc, strlen(doc), &c, &err), 0);
	CHECK(!sg_profile_has_times(c));
	CHECK_STR(times_str(c), "0,0");
	char *json = NULL;
	size_t len = 0;
	CHECK_EQ(sg_profile_format(c, &json, &len), 0);
	CHECK(strstr(json, "\"ms\"") == NULL);   /* none invented */
	free(json);
	/* Merged into a timed one, its ranges come after what is there. */
	CHECK_EQ(sg_profile_merge(a, c, &err), 0);
	CHECK_STR(ranges_str(a), "[20,20],[30,30],[50,50],[70,71],[3,3]");
	CHECK_STR(times_str(a), "0,40,10,10,10");
	sg_profile_free(a);
	sg_profile_free(b);
	sg_profile_free(c);
}

TEST(parser_refuses_times_that_do_not_fit_the_ranges)
{
	static const char *const bad[][2] = {
		{ "[[1,2],[5,5]]", "[0]" },          /* fewer times than ranges */
		{ "[[1,2]]", "[0,5]" },              /* more */
		{ "[[1,2]]", "[-1]" },
		{ "[[1,2]]", "[1.5]" },
		{ "[[1,2]]", "[4294967296]" },
		{ "[[1,2]]", "[\"3\"]" },
		{ "[[1,2]]", "[[3]]" },
		{ "[[1,2]]", "7" },
	};
	struct sg_digest d = digest_of("t");
	char toc[SG_DIGEST_STRLEN + 1], doc[512];

	sg_digest_format(&d, toc);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sg_profile *p = NULL;
		struct sg_error err = { 0 };
		snprintf(doc, sizeof(doc),
			 "{\"schemaVersion\":1,\"toc\":\"%s\",\"chunkCount\":10,\"chunks\":%s,"
			 "\"ms\":%s}", toc, bad[i][0], bad[i][1]);
		CHECK_EQ(sg_profile_parse(doc, strlen(doc), &p, &err), -EINVAL);
		CHECK(p == NULL);
		CHECK(err.msg[0] != '\0');
	}
	/* "ms" before "chunks", and given twice */
	struct sg_profile *p = NULL;
	struct sg_error err = { 0 };
	snprintf(doc, sizeof(doc), "{\"ms\":[9,1],\"schemaVersion\":1,\"toc\":\"%s\","
		 "\"chunkCount\":10,\"chunks\":[[4,4],[1,2]]}", toc);
	CHECK_EQ(sg_profile_parse(doc, strlen(doc), &p, &err), 0);
	CHECK_STR(times_str(p), "9,1");
	sg_profile_free(p);
	p = NULL;
	snprintf(doc, sizeof(doc), "{\"ms\":[9],\"ms\":[9],\"schemaVersion\":1,\"toc\":\"%s\","
		 "\"chunkCount\":10,\"chunks\":[[4,4]]}", toc);
	CHECK_EQ(sg_profile_parse(doc, strlen(doc), &p, &err), -EINVAL);
	CHECK(strstr(err.msg, "twice") != NULL);
}

TEST(parser_takes_another_producers_overlaps_first_mention_wins)
{
	static const char doc[] =
		"{\"toc\":\"sha256:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		"\",\"extra\":{\"x\":[1,{\"y\":null}],\"z\":true},\"schemaVersion\":1,"
		"\"chunks\":[[5,9],[7,12],[5,5],[0,1]],\"chunkCount\":20}";
	struct sg_profile *p = NULL;
	struct sg_error err = { 0 };

	CHECK_EQ(sg_profile_parse(doc, strlen(doc), &p, &err), 0);
	CHECK_STR(ranges_str(p), "[5,12],[0,1]");
	CHECK_EQ(sg_profile_chunks(p), 10);
	CHECK(sg_profile_layer(p) == NULL);
	/* A layer with fewer chunks (cannot happen for one TOC, but the replay must not care):
	 * only what names a chunk is kept. */
	CHECK_EQ(sg_profile_fit(p, 8), 3 + 2);
	CHECK_STR(ranges_str(p), "[5,7],[0,1]");
	CHECK_EQ(sg_profile_note(p, 3, 0), SG_PROFILE_DONE);
	sg_profile_free(p);
}

static void check_refused(const char *doc, int want, const char *msg_part)
{
	struct sg_profile *p = NULL;
	struct sg_error err = { 0 };
	int r = sg_profile_parse(doc, strlen(doc), &p, &err);

	if (r != want || !strstr(err.msg, msg_part))
		TEST_FAIL("%s: got %d \"%s\", wanted %d \"%s\"", doc, r, err.msg, want, msg_part);
	CHECK(p == NULL);
}

#define TOC "\"toc\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""

TEST(parser_refusals_say_why)
{
	check_refused("", -EBADMSG, "profile JSON");
	check_refused("[1]", -EINVAL, "unexpected an array");
	check_refused("{\"schemaVersion\":1,\"chunkCount\":5,\"chunks\":[]}", -EINVAL, "no \"toc\"");
	check_refused("{\"schemaVersion\":2," TOC ",\"chunkCount\":5,\"chunks\":[]}", -ENOTSUP,
		      "schemaVersion 2");
	check_refused("{" TOC ",\"chunkCount\":5,\"chunks\":[]}", -EINVAL, "no \"schemaVersion\"");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunks\":[]}", -EINVAL, "no \"chunkCount\"");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5}", -EINVAL, "no \"chunks\"");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[1,5]]}", -EINVAL,
		      "chunk 5 is past chunkCount 5");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[3,1]]}", -EINVAL,
		      "reversed");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[1]]}", -EINVAL,
		      "not [first,last]");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[1,2,3]]}", -EINVAL,
		      "more than two");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[-1,2]]}", -EINVAL,
		      "not an integer");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[1.5,2]]}", -EINVAL,
		      "not an integer");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":0,\"chunks\":[]}", -EINVAL,
		      "\"chunkCount\" 0");
	check_refused("{\"schemaVersion\":1,\"toc\":\"sha256:12\",\"chunkCount\":5,\"chunks\":[]}",
		      -EINVAL, "not a sha256 digest");
	check_refused("{\"schemaVersion\":1," TOC ",\"toc\":7,\"chunkCount\":5,\"chunks\":[]}", -EINVAL,
		      "\"toc\" must not be a number");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[[0,4],[0,4]]}",
		      -EINVAL, "more than chunkCount");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[],\"chunks\":[]}",
		      -EINVAL, "given twice");
	check_refused("{\"schemaVersion\":1,\"profiles\":[]}", -EINVAL, "a bundle");
	check_refused("{\"schemaVersion\":1," TOC ",\"tocTail\":0,\"chunkCount\":5,\"chunks\":[]}",
		      -EINVAL, "\"tocTail\" 0 is not in 1..67108864");
	check_refused("{\"schemaVersion\":1," TOC ",\"tocTail\":67108865,\"chunkCount\":5,"
		      "\"chunks\":[]}", -EINVAL, "\"tocTail\" 67108865 is not in");
	check_refused("{\"schemaVersion\":1," TOC ",\"tocTail\":\"5\",\"chunkCount\":5,"
		      "\"chunks\":[]}", -EINVAL, "\"tocTail\" must not be a string");
}

/* The size of the layer blob's end that holds its TOC: written, read back, kept by a merge
 * that has none, bounded; a profile without one has 0. */
TEST(the_toc_tail_round_trips_merges_and_is_bounded)
{
	struct sg_profile *p = recorder("t", 100, 0, 0), *q = NULL, *m = recorder("t", 100, 0, 0);
	struct sg_error err = { 0 };
	char *json = NULL;
	size_t len = 0;

	(void)sg_profile_note(p, 4, 0);
	CHECK_EQ(sg_profile_toc_tail(p), 0);
	CHECK_EQ(sg_profile_format(p, &json, &len), 0);
	CHECK(strstr(json, "tocTail") == NULL);
	free(json);
	sg_profile_set_toc_tail(p, 83053);
	CHECK_EQ(sg_profile_format(p, &json, &len), 0);
	CHECK(strstr(json, ",\"tocTail\":83053,") != NULL);
	CHECK_EQ(sg_profile_parse(json, len, &q, &err), 0);
	CHECK_EQ(sg_profile_toc_tail(q), 83053);
	free(json);
	/* A merge into a profile without one takes it; one with its own keeps that. */
	(void)sg_profile_note(m, 9, 0);
	CHECK_EQ(sg_profile_merge(m, q, &err), 0);
	CHECK_EQ(sg_profile_toc_tail(m), 83053);
	sg_profile_set_toc_tail(q, 4096);
	CHECK_EQ(sg_profile_merge(m, q, &err), 0);
	CHECK_EQ(sg_profile_toc_tail(m), 83053);
	/* Above the bound it is unknown, not a 64 MiB fetch. */
	sg_profile_set_toc_tail(m, SG_PROFILE_TOC_TAIL_MAX + 1);
	CHECK_EQ(sg_profile_toc_tail(m), 0);
	sg_profile_set_toc_tail(m, SG_PROFILE_TOC_TAIL_MAX);
	CHECK_EQ(sg_profile_toc_tail(m), SG_PROFILE_TOC_TAIL_MAX);
	sg_profile_free(p);
	sg_profile_free(q);
	sg_profile_free(m);
}

/* The blob spans of the first chunks ("head"): written after "ms", read back in their order,
 * kept by a merge into a profile that has one (they belong to its first ranges) and taken by
 * one that has none; bounded on both sides; a bad one refuses the document. */
TEST(the_head_round_trips_merges_and_is_bounded)
{
	static const struct sg_profile_span head[] = { { 39383, 1971338 }, { 1366, 2768 },
						       { 500, 500 }, { 9, 3 } };
	struct sg_profile *p = recorder("t", 100, 0, 0), *q = NULL, *m = recorder("t", 100, 0, 0);
	const struct sg_profile_span *h;
	struct sg_error err = { 0 };
	char *json = NULL;
	size_t len = 0;

	(void)sg_profile_note(p, 4, 0);
	CHECK_EQ(sg_profile_head(p, &h), 0u);
	CHECK_EQ(sg_profile_format(p, &json, &len), 0);
	CHECK(strstr(json, "head") == NULL);
	free(json);
	sg_profile_set_head(p, head, 4);   /* the empty and the reversed span are dropped */
	CHECK_EQ(sg_profile_head(p, &h), 2u);
	CHECK_EQ(sg_profile_format(p, &json, &len), 0);
	CHECK(strstr(json, ",\"head\":[[39383,1971338],[1366,2768]]}") != NULL);
	CHECK_EQ(sg_profile_parse(json, len, &q, &err), 0);
	free(json);
	CHECK_EQ(sg_profile_head(q, &h), 2u);
	CHECK_EQ(h[0].offset, 39383u);
	CHECK_EQ(h[0].end, 1971338u);
	CHECK_EQ(h[1].offset, 1366u);
	/* A merge into a profile without a head takes it; one with its own keeps that. */
	(void)sg_profile_note(m, 9, 0);
	CHECK_EQ(sg_profile_merge(m, q, &err), 0);
	CHECK_EQ(sg_profile_head(m, &h), 2u);
	sg_profile_set_head(q, head + 1, 1);
	CHECK_EQ(sg_profile_merge(m, q, &err), 0);
	CHECK_EQ(sg_profile_head(m, &h), 2u);
	CHECK_EQ(h[0].offset, 39383u);
	/* The setter keeps what fits in SG_PROFILE_HEAD_BYTES and SG_PROFILE_HEAD_MAX. */
	struct sg_profile_span many[SG_PROFILE_HEAD_MAX + 5];
	for (size_t i = 0; i < SG_PROFILE_HEAD_MAX + 5; i++)
		many[i] = (struct sg_profile_span){ i * 1000, i * 1000 + 10 };
	sg_profile_set_head(m, many, SG_PROFILE_HEAD_MAX + 5);
	CHECK_EQ(sg_profile_head(m, &h), (size_t)SG_PROFILE_HEAD_MAX);
	struct sg_profile_span big[2] = { { 0, SG_PROFILE_HEAD_BYTES - 10 }, { 1u << 30, (1u << 30) + 11 } };
	sg_profile_set_head(m, big, 2);
	CHECK_EQ(sg_profile_head(m, &h), 1u);
	sg_profile_free(p);
	sg_profile_free(q);
	sg_profile_free(m);

	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[],"
		      "\"head\":[[5,5]]}", -EINVAL, "head span [5,5) is empty");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[],"
		      "\"head\":[[5]]}", -EINVAL, "not [offset,end]");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[],"
		      "\"head\":[[0,4194305]]}", -E2BIG, "more than 4194304 bytes");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[],"
		      "\"head\":[[-1,2]]}", -EINVAL, "not an integer");
	check_refused("{\"schemaVersion\":1," TOC ",\"chunkCount\":5,\"chunks\":[],"
		      "\"head\":[],\"head\":[]}", -EINVAL, "given twice");
	char doc[8192];
	size_t off = (size_t)snprintf(doc, sizeof(doc), "{\"schemaVersion\":1," TOC
				      ",\"chunkCount\":5,\"chunks\":[],\"head\":[");
	for (unsigned i = 0; i <= SG_PROFILE_HEAD_MAX; i++)
		off += (size_t)snprintf(doc + off, sizeof(doc) - off, "%s[%u,%u]", i ? "," : "",
					i * 10, i * 10 + 1);
	snprintf(doc + off, sizeof(doc) - off, "]}");
	check_refused(doc, -E2BIG, "more than 64 head spans");
}

TEST(parser_bounds_size_and_ranges)
{
	size_t cap = SG_PROFILE_JSON_MAX + 64, off = 0;
	char *big = malloc(cap);
	struct sg_profile *p = NULL;
	struct sg_error err = { 0 };

	CHECK(big != NULL);
	off += (size_t)snprintf(big, cap, "{\"schemaVersion\":1," TOC ",\"chunkCount\":%u,"
				"\"chunks\":[", SG_PROFILE_CHUNKS_MAX);
	for (uint32_t i = 0; i <= SG_PROFILE_RANGES_MAX; i++)
		off += (size_t)snprintf(big + off, cap - off, "%s[%u,%u]", i ? "," : "", 2 * i, 2 * i);
	off += (size_t)snprintf(big + off, cap - off, "]}");
	CHECK(off < SG_PROFILE_JSON_MAX);
	CHECK_EQ(sg_profile_parse(big, off, &p, &err), -E2BIG);
	CHECK(strstr(err.msg, "more than 32768 chunk ranges") != NULL);
	memset(big, ' ', cap);
	CHECK_EQ(sg_profile_parse(big, SG_PROFILE_JSON_MAX + 1, &p, &err), -E2BIG);
	CHECK(strstr(err.msg, "larger than") != NULL);
	free(big);
}

TEST(bundle_round_trip_and_refusals)
{
	struct sg_profile *a = recorder("a", 10, 0, 0), *b = recorder("b", 20, 0, 0);
	struct sg_profile *in[] = { a, b }, **out = NULL;
	struct sg_error err = { 0 };
	char *json = NULL;
	size_t len = 0, n = 0;

	(void)sg_profile_note(a, 3, 0);
	(void)sg_profile_note(b, 19, 0);
	(void)sg_profile_note(b, 0, 0);
	CHECK_EQ(sg_profile_bundle_format(in, 2, &json, &len), 0);
	CHECK(strstr(json, "\"mediaType\":\"" SG_PROFILE_BLOB_TYPE "\"") != NULL);
	CHECK_EQ(sg_profile_bundle_parse(json, len, &out, &n, &err), 0);
	CHECK_EQ(n, 2);
	CHECK(sg_digest_equal(sg_profile_toc(out[0]), sg_profile_toc(a)));
	CHECK_STR(ranges_str(out[1]), "[19,19],[0,0]");
	sg_profile_bundle_free(out, n);
	/* one document is not a bundle, and a bundle is not one document */
	struct sg_profile *one = NULL;
	CHECK_EQ(sg_profile_parse(json, len, &one, &err), -EINVAL);
	free(json);
	CHECK_EQ(sg_profile_format(a, &json, &len), 0);
	CHECK_EQ(sg_profile_bundle_parse(json, len, &out, &n, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a bundle") != NULL);
	free(json);
	/* two profiles of one TOC; a broken entry is named by its position */
	in[1] = a;
	CHECK_EQ(sg_profile_bundle_format(in, 2, &json, &len), 0);
	CHECK_EQ(sg_profile_bundle_parse(json, len, &out, &n, &err), -EINVAL);
	CHECK(strstr(err.msg, "profile 1: a second profile for the same TOC") != NULL);
	free(json);
	static const char broken[] = "{\"schemaVersion\":1,\"profiles\":[{\"schemaVersion\":1,"
		TOC ",\"chunkCount\":2,\"chunks\":[[1,2]]}]}";
	CHECK_EQ(sg_profile_bundle_parse(broken, strlen(broken), &out, &n, &err), -EINVAL);
	CHECK(strstr(err.msg, "profile 0: chunk 2 is past") != NULL);
	static const char wrongtype[] = "{\"schemaVersion\":1,\"mediaType\":\"x\",\"profiles\":[]}";
	CHECK_EQ(sg_profile_bundle_parse(wrongtype, strlen(wrongtype), &out, &n, &err), -EINVAL);
	sg_profile_free(a);
	sg_profile_free(b);
}

TEST(store_saves_loads_merges_lists_removes)
{
	const char *root = test_tmpdir("profile-store");
	struct sg_profile *a = recorder("a", 100, 0, 0), *a2 = recorder("a", 100, 0, 0);
	struct sg_profile *b = recorder("b", 10, 0, 0), *got = NULL;
	struct sg_digest *list = NULL;
	struct sg_error err = { 0 };
	char path[4096];
	size_t n = 0;

	CHECK_EQ(sg_profile_store_list(root, &list, &n, &err), 0);    /* no directory yet */
	CHECK_EQ(n, 0);
	CHECK_EQ(sg_profile_store_load(root, sg_profile_toc(a), &got, &err), -ENOENT);
	(void)sg_profile_note(a, 40, 0);
	(void)sg_profile_note(a, 41, 0);
	(void)sg_profile_note(a2, 1, 0);
	(void)sg_profile_note(a2, 40, 0);
	(void)sg_profile_note(b, 9, 0);
	CHECK_EQ(sg_profile_store_record(root, a, &err), 0);
	CHECK_EQ(sg_profile_store_record(root, a2, &err), 0);     /* merged: a's order first */
	CHECK_EQ(sg_profile_store_save(root, b, &err), 0);
	CHECK_EQ(sg_profile_store_load_for_layer(root, sg_profile_toc(a), 100, &got, &err), 0);
	CHECK_STR(ranges_str(got), "[40,41],[1,1]");
	sg_profile_free(got);
	CHECK_EQ(sg_profile_store_load_for_layer(root, sg_profile_toc(a), 99, &got, &err), -EINVAL);
	CHECK(strstr(err.msg, "100 chunks, its TOC has 99") != NULL);
	CHECK_EQ(sg_profile_store_list(root, &list, &n, &err), 0);
	CHECK_EQ(n, 2);
	free(list);
	/* no temporary file is left behind */
	snprintf(path, sizeof(path), "test $(ls -A %s/profiles | wc -l) -eq 2", root);
	CHECK_EQ(system(path), 0);
	/* a file under the wrong name is refused */
	char pa[4096], pb[4096];
	CHECK_EQ(sg_profile_store_path(root, sg_profile_toc(a), pa, sizeof(pa)), 0);
	CHECK_EQ(sg_profile_store_path(root, sg_profile_toc(b), pb, sizeof(pb)), 0);
	CHECK_EQ(rename(pb, pa), 0);
	CHECK_EQ(sg_profile_store_load(root, sg_profile_toc(a), &got, &err), -EINVAL);
	CHECK(strstr(err.msg, "holds the profile of TOC") != NULL);
	/* ... and a new recording replaces what cannot be used */
	CHECK_EQ(sg_profile_store_record(root, a2, &err), 0);
	CHECK_EQ(sg_profile_store_load(root, sg_profile_toc(a), &got, &err), 0);
	CHECK_STR(ranges_str(got), "[1,1],[40,40]");
	sg_profile_free(got);
	CHECK_EQ(sg_profile_store_remove(root, sg_profile_toc(a), &err), 0);
	CHECK_EQ(sg_profile_store_remove(root, sg_profile_toc(a), &err), -ENOENT);
	CHECK(strstr(err.msg, "no profile for TOC sha256:") != NULL);
	CHECK_EQ(sg_profile_store_list(root, &list, &n, &err), 0);
	CHECK_EQ(n, 0);
	free(list);
	sg_profile_free(a);
	sg_profile_free(a2);
	sg_profile_free(b);
}

/* The index by blob digest: a mount knows the layers after its own only by that, and asks
 * their profiles how much of each blob's end its TOC takes. */
static int tail_by_layer(const char *root, const struct sg_digest *layer, uint64_t *tail,
			 struct sg_error *err)
{
	struct sg_profile *p = NULL;
	int r = sg_profile_store_load_by_layer(root, layer, &p, err);

	if (r < 0)
		return r;
	*tail = sg_profile_toc_tail(p);
	sg_profile_free(p);
	return 0;
}

TEST(the_store_finds_a_profile_by_its_layers_blob_digest)
{
	const char *root = test_tmpdir("profile-tail");
	struct sg_digest la = digest_of("layer a"), lb = digest_of("layer b");
	struct sg_digest lx = digest_of("layer x");
	struct sg_profile *a = recorder("a", 100, 0, 0), *b = recorder("b", 10, 0, 0);
	struct sg_profile *a2 = recorder("a2", 50, 0, 0);
	struct sg_digest *list = NULL;
	struct sg_error err = { 0 };
	char link[4096], pa[4096], cmd[8300];
	uint64_t tail = 0;
	size_t n = 0;

	CHECK_EQ(tail_by_layer(root, &la, &tail, &err), -ENOENT);
	(void)sg_profile_note(a, 1, 0);
	(void)sg_profile_note(b, 1, 0);
	(void)sg_profile_note(a2, 1, 0);
	sg_profile_set_layer(a, &la);
	sg_profile_set_toc_tail(a, 311000);
	CHECK_EQ(sg_profile_store_record(root, a, &err), 0);
	CHECK_EQ(tail_by_layer(root, &la, &tail, &err), 0);
	CHECK_EQ(tail, 311000);
	/* The index is no profile: the list still has one. */
	CHECK_EQ(sg_profile_store_list(root, &list, &n, &err), 0);
	CHECK_EQ(n, 1);
	free(list);
	/* A layer no profile names; a profile that names its layer without a tail. */
	CHECK_EQ(tail_by_layer(root, &lx, &tail, &err), -ENOENT);
	sg_profile_set_layer(b, &lb);
	CHECK_EQ(sg_profile_store_save(root, b, &err), 0);
	CHECK_EQ(tail_by_layer(root, &lb, &tail, &err), 0);
	CHECK_EQ(tail, 0);
	/* An entry made by hand that points at another layer's profile is refused. */
	CHECK_EQ(sg_profile_store_path(root, sg_profile_toc(a), pa, sizeof(pa)), 0);
	snprintf(link, sizeof(link), "%s/profiles/layers/%s.json", root,
		 "0000000000000000000000000000000000000000000000000000000000000000");
	CHECK_EQ(symlink(pa, link), 0);
	struct sg_digest zero = { 0 };
	CHECK_EQ(tail_by_layer(root, &zero, &tail, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a profile of layer sha256:0000") != NULL);
	/* A newer profile for the same blob (another TOC) takes the entry over; removing the
	 * old one leaves it, removing the new one takes it away. */
	sg_profile_set_layer(a2, &la);
	sg_profile_set_toc_tail(a2, 9000);
	CHECK_EQ(sg_profile_store_save(root, a2, &err), 0);
	CHECK_EQ(tail_by_layer(root, &la, &tail, &err), 0);
	CHECK_EQ(tail, 9000);
	CHECK_EQ(sg_profile_store_remove(root, sg_profile_toc(a), &err), 0);
	CHECK_EQ(tail_by_layer(root, &la, &tail, &err), 0);
	CHECK_EQ(tail, 9000);
	CHECK_EQ(sg_profile_store_remove(root, sg_profile_toc(a2), &err), 0);
	CHECK_EQ(tail_by_layer(root, &la, &tail, &err), -ENOENT);
	/* No temporary link is left behind: b's entry and the hand-made one. */
	snprintf(cmd, sizeof(cmd), "test $(ls -A %s/profiles/layers | wc -l) -eq 2", root);
	CHECK_EQ(system(cmd), 0);
	sg_profile_free(a);
	sg_profile_free(b);
	sg_profile_free(a2);
}

/* Saving a recording off the loop: it lands, completes once, takes turns with another of
 * the same TOC (nothing lost), still lands when the loop drains with it in flight or
 * before it starts, and a failure says why. */
TEST(a_record_on_the_helper_thread_lands_takes_turns_and_survives_a_drain)
{
	const char *root = test_tmpdir("profile-async");
	struct sg_profile *a = recorder("a", 100, 0, 0), *b = recorder("a", 100, 0, 0), *got = NULL;
	struct sg_error err = { 0 }, err_b = { 0 };
	struct sg_loop *loop;
	struct test_op ta, tb;
	char path[4096];

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	(void)sg_profile_note(a, 40, 0);
	(void)sg_profile_note(a, 41, 0);
	(void)sg_profile_note(b, 7, 0);
	test_op_init(&ta);
	test_op_init(&tb);
	CHECK_EQ(sg_profile_store_record_async(loop, root, a, &err, &ta.op, test_op_cb), 0);
	CHECK_EQ(sg_profile_store_record_async(loop, root, b, &err_b, &tb.op, test_op_cb), 0);
	CHECK(ta.calls == 0 && tb.calls == 0);   /* never from inside the call */
	test_op_wait(loop, &ta, 5000);
	test_op_wait(loop, &tb, 5000);
	CHECK_EQ(ta.res, 0);
	CHECK_EQ(tb.res, 0);
	test_run_for(loop, 20);
	CHECK_EQ(ta.calls, 1);
	CHECK_EQ(tb.calls, 1);
	CHECK_EQ(sg_profile_store_load(root, sg_profile_toc(a), &got, &err), 0);
	CHECK_EQ(sg_profile_chunks(got), 3);   /* both recordings, whichever went first */
	sg_profile_free(got);
	/* In flight when the loop drains (a shutdown): it still lands, completed once. */
	struct sg_profile *c = recorder("c", 10, 0, 0);
	(void)sg_profile_note(c, 3, 0);
	test_op_init(&ta);
	CHECK_EQ(sg_profile_store_record_async(loop, root, c, &err, &ta.op, test_op_cb), 0);
	CHECK_EQ(sg_loop_drain(loop, 5000), 0);
	CHECK_EQ(ta.calls, 1);
	CHECK_EQ(ta.res, 0);
	CHECK_EQ(sg_profile_store_load(root, sg_profile_toc(c), &got, &err), 0);
	CHECK_STR(ranges_str(got), "[3,3]");
	sg_profile_free(got);
	/* Asked once the loop drains: done before the call returns, no callback. */
	(void)sg_profile_note(c, 5, 0);
	test_op_init(&ta);
	CHECK_EQ(sg_profile_store_record_async(loop, root, c, &err, &ta.op, test_op_cb), 1);
	CHECK_EQ(ta.calls, 0);
	CHECK_EQ(sg_profile_store_load(root, sg_profile_toc(c), &got, &err), 0);
	CHECK_STR(ranges_str(got), "[3,3],[5,5]");
	sg_profile_free(got);
	sg_loop_free(loop);
	/* A root that is a file: the failure comes through the callback, with why. */
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	snprintf(path, sizeof(path), "%s/not-a-dir", root);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fclose(f);
	test_op_init(&ta);
	err = (struct sg_error){ 0 };
	CHECK_EQ(sg_profile_store_record_async(loop, path, a, &err, &ta.op, test_op_cb), 0);
	test_op_wait(loop, &ta, 5000);
	CHECK(ta.res < 0);
	CHECK(strstr(err.msg, "not-a-dir") != NULL);
	CHECK_EQ(sg_loop_drain(loop, 5000), 0);
	sg_loop_free(loop);
	sg_profile_free(a);
	sg_profile_free(b);
	sg_profile_free(c);
}

/* A layer of 100 chunks, chunk c at blob bytes [1000 * c, 1000 * c + 1000), except 10 and 11,
 * two pieces of one gzip member [10000, 12000), and 50, which the layer cannot name. */
static int extent(void *ctx, uint32_t c, uint64_t *off, uint64_t *end)
{
	if (c == 50)
		return -ENOENT;
	if (c == 10 || c == 11) {
		*off = 10000;
		*end = 12000;
		return 0;
	}
	*off = 1000ull * c;
	*end = *off + 1000;
	return 0;
}

static bool cached(void *ctx, uint32_t c)
{
	return c == 42;
}

TEST(replay_plan_cuts_ranges_into_requests)
{
	struct sg_profile *p = recorder("t", 100, 0, 0);
	struct sg_profile_fetch f[16];
	uint64_t bytes = 0;
	size_t n;

	for (uint32_t c = 40; c < 46; c++)        /* 42 cached: two requests */
		(void)sg_profile_note(p, c, 0);
	for (uint32_t c = 8; c < 14; c++)         /* 10, 11 share a member */
		(void)sg_profile_note(p, c, 0);
	for (uint32_t c = 49; c < 52; c++)        /* 50 unknown */
		(void)sg_profile_note(p, c, 0);
	n = sg_profile_plan(p, extent, cached, NULL, 0, 0, f, 16, &bytes);
	CHECK_EQ(n, 5);
	CHECK(f[0].first == 40 && f[0].last == 41 && f[0].offset == 40000 && f[0].end == 42000);
	CHECK(f[1].first == 43 && f[1].last == 45 && f[1].offset == 43000 && f[1].end == 46000);
	CHECK(f[2].first == 8 && f[2].last == 13 && f[2].offset == 8000 && f[2].end == 14000);
	CHECK(f[3].first == 49 && f[3].last == 49);
	CHECK(f[4].first == 51 && f[4].last == 51);
	CHECK_EQ(bytes, 2000 + 3000 + 6000 + 1000 + 1000);
	/* at most 2500 bytes a request */
	n = sg_profile_plan(p, extent, cached, NULL, 2500, 0, f, 16, &bytes);
	CHECK(f[0].first == 40 && f[0].last == 41);
	CHECK(f[1].first == 43 && f[1].last == 44 && f[2].first == 45 && f[2].last == 45);
	CHECK(f[3].first == 8 && f[3].last == 9 && f[3].end == 10000);
	CHECK(f[4].first == 10 && f[4].last == 11 && f[4].offset == 10000 && f[4].end == 12000);
	CHECK(f[5].first == 12 && f[5].last == 13);
	CHECK_EQ(n, 8);
	/* a budget of 4000 bytes: the request that crosses it is the last; and the cap */
	n = sg_profile_plan(p, extent, NULL, NULL, 0, 4000, f, 16, &bytes);
	CHECK_EQ(n, 1);
	CHECK(f[0].first == 40 && f[0].last == 45);
	CHECK_EQ(bytes, 6000);
	CHECK_EQ(sg_profile_plan(p, extent, cached, NULL, 0, 0, f, 2, &bytes), 2);
	CHECK_EQ(bytes, 5000);
	sg_profile_free(p);
}

TEST_MAIN()
