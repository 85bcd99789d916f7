/* fs/tar.c: the tar parser stargzify is built on.  Archives are assembled block by block here
 * so every edge case is explicit. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tar.h"
#include "tests/unit/test.h"

struct tarb {
	uint8_t buf[1 << 16];
	size_t len;
};

static void octal(uint8_t *dst, size_t width, uint64_t v)
{
	dst[width - 1] = 0;
	for (size_t i = width - 1; i-- > 0;) {
		dst[i] = (uint8_t)('0' + (v & 7));
		v >>= 3;
	}
}

static void fix_checksum(uint8_t *h)
{
	unsigned sum = 0;
	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	octal(h + 148, 7, sum);
	h[155] = ' ';
}

/* Appends a header block; magic: "ustar" (ustar/PAX), "gnu", or "v7". Returns the header. */
static uint8_t *hdr(struct tarb *t, const char *name, char type, uint64_t size, const char *magic)
{
	uint8_t *h = t->buf + t->len;
	memset(h, 0, 512);
	memcpy(h, name, strlen(name) > 100 ? 100 : strlen(name));
	octal(h + 100, 8, 0644);
	octal(h + 108, 8, 1000);
	octal(h + 116, 8, 100);
	octal(h + 124, 12, size);
	octal(h + 136, 12, 1700000000);
	h[156] = (uint8_t)type;
	if (strcmp(magic, "ustar") == 0)
		memcpy(h + 257, "ustar\0" "00", 8);
	else if (strcmp(magic, "gnu") == 0)
		memcpy(h + 257, "ustar  \0", 8);
	if (strcmp(magic, "v7") != 0) {
		memcpy(h + 265, "user", 4);
		memcpy(h + 297, "group", 5);
	}
	fix_checksum(h);
	t->len += 512;
	return h;
}

/* Appends a payload of n bytes: dn bytes from d, then zeros, padded to the block size. */
static void data_n(struct tarb *t, const void *d, size_t dn, size_t n)
{
	memset(t->buf + t->len, 0, (n + 511) / 512 * 512);
	memcpy(t->buf + t->len, d, dn < n ? dn : n);
	t->len += (n + 511) / 512 * 512;
}

static void data(struct tarb *t, const void *d, size_t n)
{
	data_n(t, d, n, n);
}

static void eof(struct tarb *t)
{
	memset(t->buf + t->len, 0, 1024);
	t->len += 1024;
}

static void pax(struct tarb *t, char type, const char *records, size_t n)
{
	hdr(t, "PaxHeader", type, n, "ustar");
	data(t, records, n);
}

static int parse_one(struct tarb *t, struct sg_tar_reader *r, struct sg_tar_entry *e)
{
	sg_tar_reader_init(r, t->buf, t->len);
	return sg_tar_next(r, e);
}

TEST(ustar_basic)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;

	hdr(&t, "etc/hostname", '0', 4, "ustar");
	data(&t, "box\n", 4);
	hdr(&t, "etc/", '5', 0, "ustar");
	eof(&t);
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_STR(e.name, "etc/hostname");
	CHECK_EQ(e.type, '0');
	CHECK_EQ(e.size, 4);
	CHECK_EQ(e.mode, 0644);
	CHECK_EQ(e.uid, 1000);
	CHECK_EQ(e.gid, 100);
	CHECK_STR(e.uname, "user");
	CHECK_STR(e.gname, "group");
	CHECK_EQ(e.mtime_sec, 1700000000);
	CHECK_EQ(e.hdr_off, 0);
	CHECK_EQ(e.data_off, 512);
	CHECK_EQ(e.end_off, 1024);
	CHECK_MEM(t.buf + e.data_off, "box\n", 4);
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 1);
	CHECK_STR(e.name, "etc/");
	CHECK_EQ(e.type, '5');
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 0);
	CHECK_EQ(sg_tar_next(&r, &e), 0);
}

TEST(ustar_prefix_and_v7)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	uint8_t *h = hdr(&t, "name", '0', 0, "ustar");

	memcpy(h + 345, "some/prefix", 11);
	fix_checksum(h);
	h = hdr(&t, "v7file", '\0', 0, "v7");
	memcpy(h + 345, "ignored", 7);   /* v7 has no prefix */
	fix_checksum(h);
	hdr(&t, "v7dir/", '\0', 0, "v7");
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_STR(e.name, "some/prefix/name");
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 1);
	CHECK_STR(e.name, "v7file");
	CHECK_EQ(e.type, '0');   /* '\0' is a regular file ... */
	CHECK_STR(e.uname, "");
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 1);
	CHECK_EQ(e.type, '5');   /* ... or a directory when the name ends in '/' */
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 0);   /* the end of the buffer without zero blocks */
}

TEST(gnu_long_names)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	char longname[300], longlink[250];

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	memset(longlink, 'l', sizeof(longlink) - 1);
	longlink[sizeof(longlink) - 1] = 0;
	hdr(&t, "././@LongLink", 'L', sizeof(longname), "gnu");
	data(&t, longname, sizeof(longname));
	hdr(&t, "././@LongLink", 'K', sizeof(longlink), "gnu");
	data(&t, longlink, sizeof(longlink));
	hdr(&t, "truncated-name", '2', 0, "gnu");
	eof(&t);
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_STR(e.name, longname);
	CHECK_STR(e.linkname, longlink);
	CHECK_EQ(e.type, '2');
	CHECK_EQ(e.hdr_off, 0);
	CHECK_EQ(e.data_off, 512 + 512 + 512 + 512 + 512);
	sg_tar_entry_done(&e);
}

TEST(base256_numbers)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	uint8_t *h = hdr(&t, "big", '0', 0, "gnu");

	memset(h + 108, 0, 8);
	h[108] = 0x80;
	h[113] = 0x01;   /* uid = 0x010000 << 8 ... */
	h[114] = 0x00;
	h[115] = 0x00;
	memset(h + 136, 0xff, 12);   /* mtime = -1 */
	fix_checksum(h);
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_EQ(e.uid, 0x10000);
	CHECK_EQ(e.mtime_sec, -1);
	sg_tar_entry_done(&e);
}

TEST(pax_records)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	static const char rec[] =
		"27 path=pax/long/path/name\n"
		"19 linkpath=target\n"
		"12 uid=5000\n"
		"14 gid=600000\n"
		"15 uname=ünï\n"
		"13 gname=grp\n"
		"30 mtime=1700000000.999999999\n"
		"25 SCHILY.xattr.user.a=1\n"
		"25 SCHILY.xattr.user.a=2\n"
		"29 SCHILY.xattr.user.bin=\x01\x00\x02\n"
		"24 SCHILY.xattr.user.e=\n"
		"17 comment=hello\n"
		"11 size=10\n";

	pax(&t, 'x', rec, sizeof(rec) - 1);
	hdr(&t, "short", '0', 3, "ustar");   /* PAX size wins */
	data(&t, "0123456789", 10);
	eof(&t);
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_STR(e.name, "pax/long/path/name");
	CHECK_STR(e.linkname, "target");
	CHECK_EQ(e.uid, 5000);
	CHECK_EQ(e.gid, 600000);
	CHECK_STR(e.uname, "ünï");
	CHECK_STR(e.gname, "grp");
	CHECK_EQ(e.mtime_sec, 1700000000);
	CHECK_EQ(e.mtime_nsec, 999999999);
	CHECK_EQ(e.size, 10);
	CHECK_EQ(e.n_xattrs, 3);
	CHECK_STR(e.xattrs[0].key, "user.a");
	CHECK_EQ(e.xattrs[0].len, 1);
	CHECK_MEM(e.xattrs[0].value, "2", 1);   /* a repeated key: the last record wins */
	CHECK_STR(e.xattrs[1].key, "user.bin");
	CHECK_EQ(e.xattrs[1].len, 3);
	CHECK_MEM(e.xattrs[1].value, "\x01\x00\x02", 3);
	CHECK_EQ(e.xattrs[2].len, 0);
	CHECK_EQ(e.hdr_off, 0);
	CHECK_EQ(e.end_off, e.data_off + 512);
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 0);
}

TEST(pax_negative_mtime)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	static const char rec[] = "15 mtime=-1.25\n";

	pax(&t, 'x', rec, sizeof(rec) - 1);
	hdr(&t, "f", '0', 0, "ustar");
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_EQ(e.mtime_sec, -2);   /* -1.25 s = -2 s + 0.75 s */
	CHECK_EQ(e.mtime_nsec, 750000000);
	sg_tar_entry_done(&e);
}

TEST(header_only_types_have_no_payload)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;

	hdr(&t, "hardlink", '1', 4096, "ustar");   /* some writers put the target's size here */
	hdr(&t, "next", '0', 0, "ustar");
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_EQ(e.size, 0);
	CHECK_EQ(e.end_off, 512);
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 1);
	CHECK_STR(e.name, "next");
	sg_tar_entry_done(&e);
}

TEST(devices)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	uint8_t *h = hdr(&t, "dev/sda", '4', 0, "ustar");

	octal(h + 329, 8, 8);
	octal(h + 337, 8, 1);
	fix_checksum(h);
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_EQ(e.type, '4');
	CHECK_EQ(e.devmajor, 8);
	CHECK_EQ(e.devminor, 1);
	sg_tar_entry_done(&e);
}

static void expect_error(struct tarb *t, int err, const char *msg)
{
	struct sg_tar_reader r;
	struct sg_tar_entry e;
	int ret;

	sg_tar_reader_init(&r, t->buf, t->len);
	while ((ret = sg_tar_next(&r, &e)) == 1)
		sg_tar_entry_done(&e);
	if (ret != err || !strstr(r.err, msg))
		TEST_FAIL("want %d \"%s\", got %d \"%s\"", err, msg, ret, r.err);
}

TEST(errors)
{
	static struct tarb t;
	uint8_t *h;

	/* truncated header */
	memset(&t, 0, sizeof(t));
	hdr(&t, "f", '0', 0, "ustar");
	t.len = 300;
	expect_error(&t, -EBADMSG, "truncated header");
	/* truncated payload, naming the entry */
	memset(&t, 0, sizeof(t));
	hdr(&t, "usr/bin/x", '0', 5000, "ustar");
	data_n(&t, "abc", 3, 3);
	expect_error(&t, -EBADMSG, "\"usr/bin/x\"");
	/* bad checksum */
	memset(&t, 0, sizeof(t));
	h = hdr(&t, "f", '0', 0, "ustar");
	h[0] = 'g';
	expect_error(&t, -EBADMSG, "checksum");
	/* bad octal */
	memset(&t, 0, sizeof(t));
	h = hdr(&t, "f", '0', 0, "ustar");
	memcpy(h + 100, "09x", 3);
	fix_checksum(h);
	expect_error(&t, -EBADMSG, "numeric");
	/* a zero block, then a header */
	memset(&t, 0, sizeof(t));
	t.len = 512;
	hdr(&t, "f", '0', 0, "ustar");
	expect_error(&t, -EBADMSG, "zero block followed");
	/* malformed PAX record */
	memset(&t, 0, sizeof(t));
	pax(&t, 'x', "99 path=x\n", 10);
	hdr(&t, "f", '0', 0, "ustar");
	expect_error(&t, -EBADMSG, "malformed PAX");
	/* PAX value that is not a number */
	memset(&t, 0, sizeof(t));
	pax(&t, 'x', "11 uid=abc\n", 11);
	hdr(&t, "f", '0', 0, "ustar");
	expect_error(&t, -EBADMSG, "uid");
	/* an extended header at the end */
	memset(&t, 0, sizeof(t));
	pax(&t, 'x', "9 path=x\n", 9);
	expect_error(&t, -EBADMSG, "after an extended header");
	memset(&t, 0, sizeof(t));
	pax(&t, 'x', "9 path=x\n", 9);
	eof(&t);
	expect_error(&t, -EBADMSG, "after an extended header");
	/* oversized extended header */
	memset(&t, 0, sizeof(t));
	hdr(&t, "././@LongLink", 'L', 2u << 20, "gnu");
	expect_error(&t, -EBADMSG, "too large");
	/* sparse files and other unsupported types */
	memset(&t, 0, sizeof(t));
	hdr(&t, "sparse", 'S', 0, "gnu");
	expect_error(&t, -ENOTSUP, "sparse");
	memset(&t, 0, sizeof(t));
	pax(&t, 'x', "22 GNU.sparse.major=1\n", 22);
	hdr(&t, "f", '0', 0, "ustar");
	expect_error(&t, -ENOTSUP, "sparse");
	memset(&t, 0, sizeof(t));
	hdr(&t, "vol", 'V', 0, "gnu");
	expect_error(&t, -ENOTSUP, "type 'V'");
	memset(&t, 0, sizeof(t));
	hdr(&t, "c", '7', 0, "ustar");
	expect_error(&t, -ENOTSUP, "contiguous");
	/* negative size */
	memset(&t, 0, sizeof(t));
	h = hdr(&t, "f", '0', 0, "gnu");
	memset(h + 124, 0xff, 12);
	fix_checksum(h);
	expect_error(&t, -EBADMSG, "size");
}

TEST(global_header_is_reported)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;

	pax(&t, 'g', "17 comment=hello\n", 17);
	hdr(&t, "f", '0', 0, "ustar");
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_EQ(e.type, 'g');
	CHECK_EQ(e.end_off, 1024);
	sg_tar_entry_done(&e);
	CHECK_EQ(sg_tar_next(&r, &e), 1);
	CHECK_STR(e.name, "f");
	CHECK_EQ(e.hdr_off, 1024);
	sg_tar_entry_done(&e);
}

TEST(clean_name)
{
	static const char *cases[][2] = {
		{ "./", "" }, { "/", "" }, { ".", "" }, { "", "" }, { "a", "a" }, { "./a/b/", "a/b" },
		{ "a//b", "a/b" }, { "/a/./b/../c", "a/c" }, { "../../x", "x" }, { "a/..", "" },
		{ "a/b/../../../c/", "c" }, { "..foo/.bar", "..foo/.bar" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = sg_tar_clean_name(cases[i][0]);
		CHECK_STR(c, cases[i][1]);
		free(c);
	}
}

TEST(reg_header_round_trip)
{
	static struct tarb t;
	struct sg_tar_reader r;
	struct sg_tar_entry e;

	CHECK_EQ(sg_tar_make_reg_header(t.buf, "stargz.index.json", 1234), 0);
	t.len = 512;
	data_n(&t, "", 0, 1234);
	/* the exact bytes Go's archive/tar writes for {Name, Typeflag: '0', Size} */
	CHECK_MEM(t.buf + 100, "0000000\0" "0000000\0" "0000000\0" "00000002322\0" "00000000000\0", 44);
	CHECK_MEM(t.buf + 257, "ustar\0" "00", 8);
	CHECK_EQ(parse_one(&t, &r, &e), 1);
	CHECK_STR(e.name, "stargz.index.json");
	CHECK_EQ(e.size, 1234);
	CHECK_EQ(e.mode, 0);
	sg_tar_entry_done(&e);
	char name[102];
	memset(name, 'x', 101);
	name[101] = 0;
	CHECK_EQ(sg_tar_make_reg_header(t.buf, name, 1), -ENAMETOOLONG);
}

TEST(mutations_do_not_crash)
{
	static struct tarb base, t;
	static const char rec[] = "27 path=pax/long/path/name\n" "25 SCHILY.xattr.user.a=1\n";
	uint32_t x = 12345;

	pax(&base, 'x', rec, sizeof(rec) - 1);
	hdr(&base, "f", '0', 700, "ustar");
	data_n(&base, "payload", 7, 700);
	hdr(&base, "././@LongLink", 'L', 200, "gnu");
	data_n(&base, "averylongname", 13, 200);
	hdr(&base, "d/", '5', 0, "gnu");
	eof(&base);
	for (int iter = 0; iter < 20000; iter++) {
		struct sg_tar_reader r;
		struct sg_tar_entry e;
		t = base;
		for (int k = 0; k < 4; k++) {
			x = x * 1103515245 + 12345;
			size_t pos = (x >> 8) % t.len;
			x = x * 1103515245 + 12345;
			t.buf[pos] = (uint8_t)(x >> 16);
		}
		x = x * 1103515245 + 12345;
		if ((x >> 20) % 4 == 0)
			t.len = (x >> 4) % t.len;
		/* re-checksum half of the time so the mutation reaches the field parsers */
		if (iter % 2)
			for (size_t b = 0; b + 512 <= t.len; b += 512)
				fix_checksum(t.buf + b);
		sg_tar_reader_init(&r, t.buf, t.len);
		int n = 0, ret;
		while ((ret = sg_tar_next(&r, &e)) == 1) {
			CHECK(e.end_off <= t.len + 511);
			CHECK(e.data_off + e.size <= t.len);
			sg_tar_entry_done(&e);
			CHECK(++n < 100);
		}
		CHECK(ret == 0 || (ret < 0 && r.err[0]));
	}
}

TEST_MAIN()
