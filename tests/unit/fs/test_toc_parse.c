/* fs/toc_parse.c: TOC JSON, its grammar and its scalars (numbers, times, digests, base64),
 * and the refusals of malformed JSON with their specific error codes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/estargz.h"
#include "fs/toc.h"
#include "fs/toc_parse.h"
#include "tests/helpers/toc_hostile.h"
#include "tests/unit/test.h"

static const struct sg_esgz_options skip = { .skip_verify = true };

TEST(hostile_numbers)
{
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":9223372036854775808,\"offset\":1}",
		      SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":99999999999999999999999}",
		      SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":18446744073709551615}",
		      SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":4,\"offset\":1,"
		      "\"innerOffset\":18446744073709551614}", SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"uid\":4294967296}", SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"uid\":-1}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"mode\":1.5}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"modtime\":\"yesterday\"}", SG_ESGZ_E_SCHEMA);
}

TEST(hostile_json_and_schema)
{
	CHECK_HOSTILE("{\"name\":\"a\",", SG_ESGZ_E_JSON);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"socket\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"type\":\"dir\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":5,\"type\":\"dir\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"dir\",\"name\":\"b\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":1,\"digest\":\"md5:00\"}",
		      SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":1,\"chunkDigest\":\"sha256:"
		      "zz00000000000000000000000000000000000000000000000000000000000000\"}",
		      SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":{\"user.x\":\"!!!\"}}",
		      SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("[1,2]", SG_ESGZ_E_SCHEMA);
	/* Unknown fields (even nested) are ignored, like the reference. */
	CHECK_EQ(hostile("{\"name\":\"a\",\"type\":\"dir\",\"NumLink\":3,\"x\":{\"y\":[1,{}]}}",
			 &(struct sg_error){ 0 }), 0);

	struct sg_error err;
	struct sg_toc *toc = NULL;
	CHECK_EQ(sg_toc_parse_json("{\"version\":1}", 13, 100, &skip, &toc, &err), -EINVAL);
	CHECK_EQ(err.code, SG_ESGZ_E_SCHEMA);
	CHECK_EQ(sg_toc_parse_json("{\"entries\":{}}", 14, 100, &skip, &toc, &err), -EINVAL);
	CHECK_EQ(err.code, SG_ESGZ_E_SCHEMA);
	CHECK_EQ(sg_toc_parse_json("{\"entries\":[]} x", 16, 100, &skip, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_JSON);
	struct sg_esgz_options lim = { .skip_verify = true, .max_entries = 2 };
	const char *three = "{\"entries\":[{\"name\":\"a\",\"type\":\"dir\"},{\"name\":\"b\",\"type\":\"dir\"},"
			    "{\"name\":\"c\",\"type\":\"dir\"}]}";
	CHECK_EQ(sg_toc_parse_json(three, strlen(three), 100, &lim, &toc, &err), -E2BIG);
	CHECK_EQ(err.code, SG_ESGZ_E_LIMIT);
}

/* The index a JSON "entries" list makes, with the payload ending at 1 MiB. */
static struct sg_toc *parsed(const char *entries)
{
	struct esgz_buf j = { 0 };
	struct sg_toc *toc = NULL;
	struct sg_error err;

	esgz_buf_printf(&j, "{\"version\":1,\"entries\":[%s]}", entries);
	if (sg_toc_parse_json(j.p, j.len, 1u << 20, &skip, &toc, &err) < 0)
		TEST_FAIL("%s: %s", entries, err.msg);
	free(j.p);
	return toc;
}

/* Refused with code, the message equal to msg. */
static void check_refused(const char *entries, int code, const char *msg)
{
	struct sg_error err;
	int r = parse(entries, 1u << 20, &skip, &err);

	if (r >= 0 || err.code != code || strcmp(err.msg, msg) != 0)
		TEST_FAIL("%s: got r=%d code=%s msg=%s", entries, r, sg_esgz_code_name(err.code),
			  err.msg);
}

static const struct sg_toc_node *node(const struct sg_toc *toc, const char *path)
{
	uint32_t id = sg_toc_lookup_path(toc, path);

	if (id == SG_TOC_NONE)
		TEST_FAIL("%s: not found", path);
	return sg_toc_node(toc, id);
}

/* RFC 3339 as Go writes it: zones, fractions, either case of T and Z; a repeated string
 * (the parser keeps the last one) decodes the same. */
TEST(modtimes)
{
	struct sg_toc *toc = parsed(
		"{\"name\":\"z\",\"type\":\"fifo\",\"modtime\":\"2020-01-02T03:04:05Z\"},"
		"{\"name\":\"again\",\"type\":\"fifo\",\"modtime\":\"2020-01-02T03:04:05Z\"},"
		"{\"name\":\"lower\",\"type\":\"fifo\",\"modtime\":\"2020-01-02t03:04:05z\"},"
		"{\"name\":\"east\",\"type\":\"fifo\",\"modtime\":\"2020-01-02T04:34:05+01:30\"},"
		"{\"name\":\"west\",\"type\":\"fifo\",\"modtime\":\"2020-01-01T22:04:05-05:00\"},"
		"{\"name\":\"frac\",\"type\":\"fifo\",\"modtime\":\"2020-01-02T03:04:05.25Z\"},"
		"{\"name\":\"nano\",\"type\":\"fifo\","
		"\"modtime\":\"2020-01-02T03:04:05.1234567891Z\"},"
		"{\"name\":\"old\",\"type\":\"fifo\",\"modtime\":\"1969-12-31T23:59:59Z\"},"
		"{\"name\":\"leap\",\"type\":\"fifo\",\"modtime\":\"2024-02-29T00:00:00Z\"},"
		"{\"name\":\"none\",\"type\":\"fifo\"}");
	const char *same[] = { "z", "again", "lower", "east", "west", "frac", "nano" };

	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		CHECK_EQ(node(toc, same[i])->mtime_sec, 1577934245);
	CHECK_EQ(node(toc, "z")->mtime_nsec, 0);
	CHECK_EQ(node(toc, "frac")->mtime_nsec, 250000000);
	CHECK_EQ(node(toc, "nano")->mtime_nsec, 123456789);   /* digits past 9 dropped */
	CHECK_EQ(node(toc, "old")->mtime_sec, -1);
	CHECK_EQ(node(toc, "leap")->mtime_sec, 1709164800);
	CHECK_EQ(node(toc, "none")->mtime_sec, 0);
	sg_toc_free(toc);

	const char *bad[] = { "2020-13-02T03:04:05Z", "2020-01-02T03:04:05",
			      "2020-01-02T03:04:05.Z", "2020-01-02 03:04:05Z",
			      "2020-01-02T24:04:05Z", "2020-01-02T03:04:05+1:00",
			      "2020-01-02T03:04:05Zjunk" };
	char e[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(e, sizeof(e), "{\"name\":\"a\",\"type\":\"fifo\"},"
			 "{\"name\":\"b\",\"type\":\"fifo\",\"modtime\":\"%s\"}", bad[i]);
		check_refused(e, SG_ESGZ_E_SCHEMA, "bad modtime in entry 2");
	}
}

/* xattr values are Go's base64 of []byte: padded, standard alphabet. */
TEST(xattr_values_in_base64)
{
	struct sg_toc *toc = parsed(
		"{\"name\":\"f\",\"type\":\"fifo\",\"xattrs\":{\"user.two\":\"aGk=\","
		"\"user.one\":\"aA==\",\"user.six\":\"aGVsbG8h\",\"user.none\":\"\","
		"\"user.bin\":\"AP+/\"}}");
	const struct sg_toc_node *f = node(toc, "f");
	static const struct { const char *name, *value; size_t len; } want[] = {
		{ "user.two", "hi", 2 }, { "user.one", "h", 1 }, { "user.six", "hello!", 6 },
		{ "user.none", "", 0 }, { "user.bin", "\x00\xff\xbf", 3 },
	};
	const char *xn;
	const void *xv;
	size_t xl;

	for (unsigned i = 0; i < 5; i++) {
		CHECK_EQ(sg_toc_xattr(toc, f, i, &xn, &xv, &xl), 0);
		CHECK_STR(xn, want[i].name);
		CHECK_EQ(xl, want[i].len);
		CHECK_MEM(xv, want[i].value, xl);
	}
	CHECK_EQ(sg_toc_xattr(toc, f, 5, &xn, &xv, &xl), -ENOENT);
	sg_toc_free(toc);

	const char *bad[] = { "aGk", "a===", "a=Gk", "aG=k", "aGk-", "aGk=aGk=" };
	char e[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(e, sizeof(e),
			 "{\"name\":\"f\",\"type\":\"fifo\",\"xattrs\":{\"user.x\":\"%s\"}}",
			 bad[i]);
		check_refused(e, SG_ESGZ_E_SCHEMA, "xattr \"user.x\" is not valid base64");
	}
	check_refused("{\"name\":\"f\",\"type\":\"fifo\",\"xattrs\":{\"user.x\":1}}",
		      SG_ESGZ_E_SCHEMA, "xattr value is not a string");
	check_refused("{\"name\":\"f\",\"type\":\"fifo\",\"xattrs\":{\"\":\"\"}}",
		      SG_ESGZ_E_SCHEMA, "bad xattr name in entry 1");
}

/* Digests: the fast path takes either case of hex and agrees with sg_digest_parse. */
TEST(digests)
{
	static const char lower[] =
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	static const char upper[] =
		"sha256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
	struct sg_digest want;
	char e[512];

	CHECK_EQ(sg_digest_parse(lower, strlen(lower), &want), 0);
	snprintf(e, sizeof(e), "{\"name\":\"l\",\"type\":\"reg\",\"size\":1,\"offset\":0,"
		 "\"chunkDigest\":\"%s\"},{\"name\":\"u\",\"type\":\"reg\",\"size\":0,"
		 "\"digest\":\"%s\"}", lower, upper);
	struct sg_toc *toc = parsed(e);
	CHECK(sg_digest_equal(&sg_toc_chunks(toc, node(toc, "l"))->digest, &want));
	CHECK(sg_toc_chunks(toc, node(toc, "l"))->has_digest);
	CHECK(sg_digest_equal(sg_toc_file_digest(toc, node(toc, "u")), &want));
	sg_toc_free(toc);

	snprintf(e, sizeof(e), "{\"name\":\"a\",\"type\":\"fifo\"},{\"name\":\"l\","
		 "\"type\":\"reg\",\"size\":0,\"digest\":\"%.70sg\"}", lower);
	check_refused(e, SG_ESGZ_E_SCHEMA, "entry 2 has a bad digest");
	check_refused("{\"name\":\"l\",\"type\":\"reg\",\"size\":0,\"chunkDigest\":\"sha512:00\"}",
		      SG_ESGZ_E_SCHEMA, "entry 1 has a bad chunkDigest");
}

/* The messages count entries from 1, chunk entries included. */
TEST(messages_name_the_entry)
{
	check_refused("{\"name\":\"a\",\"type\":\"fifo\"},"
		      "{\"name\":\"b\",\"type\":\"fifo\",\"uid\":-1}",
		      SG_ESGZ_E_SCHEMA, "negative number in entry 2");
	check_refused("{\"name\":\"f\",\"type\":\"reg\",\"size\":8,\"offset\":0,\"chunkSize\":4},"
		      "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":9,\"chunkOffset\":4},"
		      "{\"name\":\"g\",\"type\":\"fifo\",\"mode\":\"0644\"}",
		      SG_ESGZ_E_SCHEMA, "a numeric field of entry 3 is not a number");
	check_refused("{\"name\":\"a\",\"type\":\"fifo\",\"type\":\"fifo\"}",
		      SG_ESGZ_E_SCHEMA, "a field repeats in entry 1");
	check_refused("{\"name\":\"a\",\"type\":\"socket\"}", SG_ESGZ_E_SCHEMA,
		      "entry 1 has an unknown type");
	check_refused("{\"name\":[\"a\"],\"type\":\"fifo\"}", SG_ESGZ_E_SCHEMA,
		      "unexpected object or array in TOC entry 1");
	/* Nulls are absent fields; unknown keys are skipped, whatever their value. */
	struct sg_toc *toc = parsed("{\"name\":\"a\",\"type\":\"fifo\",\"uid\":null,"
				    "\"x\":[{\"y\":[null,true]}],\"z\":false}");
	CHECK_EQ(node(toc, "a")->uid, 0);
	sg_toc_free(toc);
}

/* The top level: an object with one "entries" array, anything else beside it skipped. */
TEST(top_level)
{
	struct sg_error err;
	struct sg_toc *toc = NULL;
	const char *ok = "{\"version\":1,\"x\":{\"entries\":5},\"entries\":[],\"y\":[1]}";

	CHECK_EQ(sg_toc_parse_json(ok, strlen(ok), 100, &skip, &toc, &err), 0);
	CHECK_EQ(sg_toc_count(toc), 1);   /* the root */
	sg_toc_free(toc);
	const char *null_entries = "{\"entries\":null}";
	CHECK_EQ(sg_toc_parse_json(null_entries, strlen(null_entries), 100, &skip, &toc, &err),
		 -EINVAL);
	CHECK_STR(err.msg, "TOC JSON has no \"entries\" array");
	const char *twice = "{\"entries\":[],\"entries\":[]}";
	CHECK_EQ(sg_toc_parse_json(twice, strlen(twice), 100, &skip, &toc, &err), -EINVAL);
	CHECK_STR(err.msg, "two \"entries\" arrays");
	const char *str = "{\"entries\":\"no\"}";
	CHECK_EQ(sg_toc_parse_json(str, strlen(str), 100, &skip, &toc, &err), -EINVAL);
	CHECK_STR(err.msg, "\"entries\" is not an array");
	CHECK_EQ(sg_toc_parse_json("", 0, 100, &skip, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_JSON);
	CHECK(strncmp(err.msg, "TOC JSON: ", 10) == 0);
	/* Arguments no caller passes: -EINVAL and an empty message. */
	CHECK_EQ(sg_toc_parse_json(NULL, 5, 100, &skip, &toc, &err), -EINVAL);
	CHECK_EQ(err.code, 0);
	CHECK_STR(err.msg, "");
	CHECK_EQ(sg_toc_parse_json(ok, strlen(ok), 100, &skip, NULL, NULL), -EINVAL);
}

TEST_MAIN()
