/* The TOC writer (tools/stargzify/toc_writer.c): the exact bytes Go's encoding/json writes.
 * The expected strings of the string encoding were produced by Go 1.19's json.Marshal. */
#include "tools/stargzify/toc_writer.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "fs/estargz.h"
#include "fs/tar.h"

/* Encodes n bytes of s and compares with want (a C string). */
static void check_json(const char *s, size_t n, const char *want)
{
	struct sbuf b = { 0 };

	sz_json_str(&b, s, n);
	sb_put(&b, "", 1);
	CHECK(!b.oom);
	if (strcmp((const char *)b.p, want) != 0)
		TEST_FAIL("json of %zu bytes: got %s, want %s", n, (const char *)b.p, want);
	sb_free(&b);
}

#define JSON(lit, want) check_json(lit, sizeof(lit) - 1, want)

TEST(json_strings_escape_like_go)
{
	JSON("", "\"\"");
	JSON("plain", "\"plain\"");
	JSON("a\"b\\c", "\"a\\\"b\\\\c\"");
	JSON("\n\r\t", "\"\\n\\r\\t\"");
	JSON("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");   /* DEL stays literal */
	JSON("\b\f", "\"\\u0008\\u000c\"");
	JSON("a\0b", "\"a\\u0000b\"");
}

TEST(json_strings_are_html_safe)
{
	JSON("<a href=\"x\">&</a>", "\"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\"");
	JSON("\xe2\x80\xa8x\xe2\x80\xa9", "\"\\u2028x\\u2029\"");
}

TEST(valid_utf8_passes_and_each_invalid_byte_becomes_fffd)
{
	JSON("\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e", "\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\"");
	JSON("\xff", "\"\\ufffd\"");
	JSON("\xc0\x80", "\"\\ufffd\\ufffd\"");              /* overlong */
	JSON("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");     /* surrogate */
	JSON("\xe2\x82", "\"\\ufffd\\ufffd\"");               /* truncated */
	JSON("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");   /* above U+10FFFF */
	JSON("\xf5", "\"\\ufffd\"");
	JSON("\xe2\x82\xac\xe2", "\"\xe2\x82\xac\\ufffd\"");
}

TEST(base64_is_standard_with_padding)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "foobar", "Zm9vYmFy" }, { "\xfb\xff", "+/8=" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sbuf b = { 0 };
		sz_base64(&b, (const uint8_t *)cases[i].in, strlen(cases[i].in));
		sb_put(&b, "", 1);
		CHECK_STR((const char *)b.p, cases[i].out);
		sb_free(&b);
	}
}

TEST(modtime_is_rfc3339_utc_rounded_to_the_second)
{
	char out[40];

	sz_toc_modtime(out, 0, 999999999);   /* Unix() == 0: omitted */
	CHECK_STR(out, "");
	sz_toc_modtime(out, 1, 0);
	CHECK_STR(out, "1970-01-01T00:00:01Z");
	sz_toc_modtime(out, 1577934245, 499999999);
	CHECK_STR(out, "2020-01-02T03:04:05Z");
	sz_toc_modtime(out, 1577934245, 500000000);
	CHECK_STR(out, "2020-01-02T03:04:06Z");
	sz_toc_modtime(out, -1, 0);
	CHECK_STR(out, "1969-12-31T23:59:59Z");
}

TEST(names_are_written_only_when_they_change_for_the_id)
{
	struct sz_id_names m = { 0 };
	char name[32];

	CHECK_STR(sz_name_if_changed(&m, 0, "root"), "root");
	CHECK(sz_name_if_changed(&m, 0, "root") == NULL);
	CHECK_STR(sz_name_if_changed(&m, 1000, "root"), "root");   /* another id */
	CHECK_STR(sz_name_if_changed(&m, 0, "admin"), "admin");
	CHECK(sz_name_if_changed(&m, 0, "admin") == NULL);
	CHECK(sz_name_if_changed(&m, 5, "") == NULL);
	CHECK(sz_name_if_changed(&m, 5, NULL) == NULL);
	/* Past the first table (64 slots): every id keeps its name across the rehashes. */
	static char names[200][16];
	for (int i = 0; i < 200; i++) {
		snprintf(names[i], sizeof(names[i]), "u%d", i);
		CHECK(sz_name_if_changed(&m, 10 + i, names[i]) == names[i]);
	}
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		CHECK(sz_name_if_changed(&m, 10 + i, name) == NULL);
	}
	CHECK(sz_name_if_changed(&m, 0, "admin") == NULL);
	sz_id_names_free(&m);
}

static void digest_of(const char *s, struct sg_digest *d)
{
	sg_sha256(s, strlen(s), d);
}

TEST(toc_json_is_go_marshal_indent)
{
	struct sg_tar_xattr xs[2] = {
		{ .key = "user.z", .value = (uint8_t *)"2", .len = 1 },
		{ .key = "security.capability", .value = (uint8_t *)"\x01\x00", .len = 2 },
	};
	struct sg_tar_entry dir = { .type = '5', .name = "./etc/", .linkname = "", .uname = "root",
				    .gname = "", .mode = 0755, .mtime_sec = 1577934245 };
	struct sg_tar_entry reg = { .type = '0', .name = "etc/<x>", .linkname = "", .uname = "",
				    .gname = "", .mode = 0644, .uid = 1000, .gid = 100,
				    .size = 10, .xattrs = xs, .n_xattrs = 2 };
	struct sg_tar_entry sym = { .type = '2', .name = "etc/l", .linkname = "<x>", .uname = "",
				    .gname = "", .mode = 0777 };
	struct sg_tar_entry chr = { .type = '3', .name = "dev/null", .linkname = "", .uname = "",
				    .gname = "", .mode = 0666, .devmajor = 1, .devminor = 3 };
	struct sz_toc_ent e[5] = {
		{ .te = &dir, .name = dir.name, .type = SZ_TOC_DIR, .uname = "root", .member = -1 },
		{ .te = &reg, .name = reg.name, .type = SZ_TOC_REG, .gname = "staff", .size = 10,
		  .member = 1, .chunk_size = 6, .has_digest = true, .has_chunk_digest = true },
		{ .name = reg.name, .type = SZ_TOC_CHUNK, .member = 2, .chunk_offset = 6,
		  .has_chunk_digest = true },
		{ .te = &sym, .name = sym.name, .type = SZ_TOC_SYMLINK, .member = -1 },
		{ .te = &chr, .name = chr.name, .type = SZ_TOC_CHAR, .member = 0 },
	};
	static const uint64_t member_off[3] = { 0, 100, 2000 };
	digest_of("0123456789", &e[1].digest);
	digest_of("012345", &e[1].chunk_digest);
	digest_of("6789", &e[2].chunk_digest);
	char d_all[SG_DIGEST_STRLEN + 1], d_c1[SG_DIGEST_STRLEN + 1], d_c2[SG_DIGEST_STRLEN + 1];
	sg_digest_format(&e[1].digest, d_all);
	sg_digest_format(&e[1].chunk_digest, d_c1);
	sg_digest_format(&e[2].chunk_digest, d_c2);

	char want[4096];
	snprintf(want, sizeof(want),
		 "{\n\t\"version\": 1,\n\t\"entries\": [\n"
		 "\t\t{\n\t\t\t\"name\": \"./etc/\",\n\t\t\t\"type\": \"dir\",\n"
		 "\t\t\t\"modtime\": \"2020-01-02T03:04:05Z\",\n\t\t\t\"mode\": 493,\n"
		 "\t\t\t\"userName\": \"root\"\n\t\t},\n"
		 "\t\t{\n\t\t\t\"name\": \"etc/\\u003cx\\u003e\",\n\t\t\t\"type\": \"reg\",\n"
		 "\t\t\t\"size\": 10,\n\t\t\t\"mode\": 420,\n\t\t\t\"uid\": 1000,\n\t\t\t\"gid\": 100,\n"
		 "\t\t\t\"groupName\": \"staff\",\n\t\t\t\"offset\": 100,\n"
		 "\t\t\t\"xattrs\": {\n\t\t\t\t\"security.capability\": \"AQA=\",\n"
		 "\t\t\t\t\"user.z\": \"Mg==\"\n\t\t\t},\n"
		 "\t\t\t\"digest\": \"%s\",\n\t\t\t\"chunkSize\": 6,\n\t\t\t\"chunkDigest\": \"%s\"\n\t\t},\n"
		 "\t\t{\n\t\t\t\"name\": \"etc/\\u003cx\\u003e\",\n\t\t\t\"type\": \"chunk\",\n"
		 "\t\t\t\"offset\": 2000,\n\t\t\t\"chunkOffset\": 6,\n\t\t\t\"chunkDigest\": \"%s\"\n\t\t},\n"
		 "\t\t{\n\t\t\t\"name\": \"etc/l\",\n\t\t\t\"type\": \"symlink\",\n"
		 "\t\t\t\"linkName\": \"\\u003cx\\u003e\",\n\t\t\t\"mode\": 511\n\t\t},\n"
		 "\t\t{\n\t\t\t\"name\": \"dev/null\",\n\t\t\t\"type\": \"char\",\n\t\t\t\"mode\": 438,\n"
		 "\t\t\t\"devMajor\": 1,\n\t\t\t\"devMinor\": 3\n\t\t}\n"
		 "\t]\n}", d_all, d_c1, d_c2);

	struct sbuf b = { 0 };
	CHECK_EQ(sz_toc_json(e, 5, member_off, &b), 0);
	sb_put(&b, "", 1);
	CHECK_STR((const char *)b.p, want);
	sb_free(&b);
	/* the caller's xattrs are left in their order */
	CHECK_STR(xs[0].key, "user.z");
}

TEST(an_empty_toc_has_an_empty_entries_array)
{
	struct sbuf b = { 0 };

	CHECK_EQ(sz_toc_json(NULL, 0, NULL, &b), 0);
	sb_put(&b, "", 1);
	CHECK_STR((const char *)b.p, "{\n\t\"version\": 1,\n\t\"entries\": []\n}");
	sb_free(&b);
}

TEST(footer_is_the_51_bytes_go_writes_and_our_reader_finds_the_toc)
{
	static const uint8_t want[SZ_FOOTER_SIZE] = {
		0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff, 26, 0, 'S', 'G', 22, 0,
		'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '1', '2', '3', 'a', 'f',
		'S', 'T', 'A', 'R', 'G', 'Z',
		0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	uint8_t f[SZ_FOOTER_SIZE];
	struct sg_esgz_footer parsed;
	struct sg_error err;

	sz_toc_footer(f, 0x123af);
	CHECK_MEM(f, want, sizeof(want));
	CHECK_EQ(sg_esgz_parse_footer(f, sizeof(f), 0x123af + 1000, &parsed, &err), 0);
	CHECK_EQ(parsed.format, SG_ESGZ_FORMAT_ESTARGZ);
	CHECK_EQ(parsed.toc_offset, 0x123af);
}

TEST_MAIN()
