/* fs/estargz.c: footers, the TOC member and its verification, loading a blob (in memory,
 * on a helper thread, through a range source), and chunks.  What the TOC's entries mean is
 * tested with fs/toc_build.c, the JSON with fs/toc_parse.c.  Blobs are built in-process
 * with tests/helpers/esgz_build.h. */
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "fs/estargz.h"
#include "fs/gz.h"
#include "tests/helpers/esgz_build.h"
#include "tests/helpers/toc_hostile.h"
#include "tests/unit/test.h"

static const struct sg_esgz_options skip = { .skip_verify = true };

/* ---- footers ---- */

TEST(footer_estargz_and_legacy)
{
	for (int legacy = 0; legacy < 2; legacy++) {
		struct esgz_b b;
		struct sg_esgz_footer f;
		struct sg_error err;

		esgz_init(&b, 6);
		esgz_add(&b, "a", '0', 0644, "hello", 5, NULL, 0, NULL);
		esgz_flush(&b);
		size_t toc_off = b.blob.len;
		esgz_finish(&b, legacy, NULL);
		size_t fs = legacy ? 47 : 51;
		CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - fs, fs, b.blob.len, &f, &err), 0);
		CHECK_EQ(f.format, legacy ? SG_ESGZ_FORMAT_LEGACY : SG_ESGZ_FORMAT_ESTARGZ);
		CHECK_EQ(f.toc_offset, toc_off);
		CHECK_EQ(f.toc_end, b.blob.len - fs);
		/* The footer is a valid empty gzip member. */
		size_t used, out;
		CHECK_EQ(sg_gz_member(gz(), b.blob.p + b.blob.len - fs, fs, NULL, 0, &used, &out), 0);
		CHECK_EQ(used, fs);
		CHECK_EQ(out, 0);
		/* And the whole blob loads, in either format. */
		struct sg_toc *toc;
		CHECK_EQ(load(&b, &skip, &toc, &err), 0);
		CHECK(sg_toc_lookup_path(toc, "a") != SG_TOC_NONE);
		sg_toc_free(toc);
		esgz_done(&b);
	}
}

TEST(footer_unsupported_and_garbage)
{
	struct sg_esgz_footer f;
	struct sg_error err;
	uint8_t buf[128];

	memset(buf, 0, sizeof(buf));
	memcpy(buf + 120, "GnUlInUx", 8);
	CHECK_EQ(sg_esgz_parse_footer(buf, sizeof(buf), 1000, &f, &err), -EOPNOTSUPP);
	CHECK_EQ(err.code, SG_ESGZ_E_UNSUPPORTED);
	CHECK(strstr(err.msg, "zstd:chunked"));

	memset(buf, 0, sizeof(buf));
	memcpy(buf + 90, "STARGZEXTERNALTOC", 17);
	CHECK_EQ(sg_esgz_parse_footer(buf, sizeof(buf), 1000, &f, &err), -EOPNOTSUPP);
	CHECK_EQ(err.code, SG_ESGZ_E_UNSUPPORTED);

	memset(buf, 'z', sizeof(buf));
	CHECK_EQ(sg_esgz_parse_footer(buf, sizeof(buf), 1000, &f, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_FOOTER);
	CHECK_EQ(sg_esgz_parse_footer(buf, 10, 10, &f, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_FOOTER);
}

TEST(footer_toc_offset_outside_blob)
{
	struct esgz_b b;
	struct sg_esgz_footer f;
	struct sg_error err;

	esgz_init(&b, 6);
	esgz_finish(&b, 0, NULL);
	uint8_t *ft = b.blob.p + b.blob.len - 51;
	memcpy(ft + 16, "00000000ffffffff", 16);
	CHECK_EQ(sg_esgz_parse_footer(ft, 51, b.blob.len, &f, &err), -ERANGE);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_OFFSET);
	memcpy(ft + 16, "zz000000ffffffff", 16);
	CHECK_EQ(sg_esgz_parse_footer(ft, 51, b.blob.len, &f, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_FOOTER);
	esgz_done(&b);
}

/* ---- chunks ---- */

TEST(chunks_extract_and_verify)
{
	struct esgz_b b;
	struct sg_toc *toc;
	struct sg_error err;
	struct sg_digest d;
	size_t len = 10000;
	uint8_t *data = malloc(len), *out = malloc(len);

	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 7 + i / 100);
	esgz_init(&b, 6);
	esgz_add(&b, "big", '0', 0644, data, len, NULL, 3000, NULL);
	esgz_add(&b, "after", '0', 0644, "x", 1, NULL, 0, NULL);
	esgz_finish(&b, 0, &d);
	struct sg_esgz_options o = { .toc_digest = &d };
	CHECK_EQ(load(&b, &o, &toc, &err), 0);

	const struct sg_toc_node *n = sg_toc_node(toc, sg_toc_lookup_path(toc, "big"));
	CHECK_EQ(n->nchunks, 4);
	const struct sg_toc_chunk *c = sg_toc_chunks(toc, n);
	uint64_t expect_off = 0;
	for (uint32_t i = 0; i < n->nchunks; i++) {
		CHECK_EQ(c[i].file_offset, expect_off);
		CHECK_EQ(c[i].size, i < 3 ? 3000 : 1000);
		CHECK(c[i].has_digest);
		CHECK(c[i].next_offset > c[i].offset);
		if (i + 1 < n->nchunks)
			CHECK_EQ(c[i].next_offset, c[i + 1].offset);
		CHECK_EQ(sg_esgz_extract_chunk(gz(), &c[i], b.blob.p + c[i].offset,
					       c[i].next_offset - c[i].offset, false,
					       out + c[i].file_offset, &err), 0);
		expect_off += c[i].size;
	}
	CHECK_MEM(out, data, len);
	/* A file of several chunks keeps its own whole-file digest. */
	struct sg_digest whole;
	sg_sha256(data, len, &whole);
	CHECK(sg_digest_equal(sg_toc_file_digest(toc, n), &whole));

	/* Direct verification API. */
	CHECK_EQ(sg_esgz_verify_chunk(&c[1], data + 3000, 3000, &err), 0);
	data[3001] ^= 1;
	CHECK_EQ(sg_esgz_verify_chunk(&c[1], data + 3000, 3000, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_CHUNK_DIGEST);
	CHECK_EQ(sg_esgz_verify_chunk(&c[1], data + 3000, 2999, &err), -EBADMSG);

	/* A tampered member: recompress different bytes of the same size in its place. */
	struct libdeflate_compressor *cz = libdeflate_alloc_compressor(6);
	uint8_t bad[8192];
	size_t bn = libdeflate_gzip_compress(cz, data + 3000, 3000, bad, sizeof(bad));
	CHECK(bn > 0);
	CHECK_EQ(sg_esgz_extract_chunk(gz(), &c[1], bad, bn, false, out, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_CHUNK_DIGEST);
	CHECK_EQ(sg_esgz_extract_chunk(gz(), &c[1], bad, bn, true, out, &err), 0);
	/* Garbage instead of gzip. */
	memset(bad, 0x55, 64);
	CHECK_EQ(sg_esgz_extract_chunk(gz(), &c[1], bad, 64, false, out, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_CHUNK_GZIP);
	libdeflate_free_compressor(cz);

	/* The file after the chunked one: its member starts where the last chunk's ends. */
	const struct sg_toc_node *a = sg_toc_node(toc, sg_toc_lookup_path(toc, "after"));
	CHECK_EQ(c[3].next_offset, sg_toc_chunks(toc, a)->offset);
	CHECK_EQ(sg_toc_chunks(toc, a)->next_offset, sg_toc_offset(toc));
	sg_toc_free(toc);
	esgz_done(&b);
	free(data);
	free(out);
}

TEST(inner_offset_shared_member)
{
	/* Two small files in one gzip member (min-chunk-size style). */
	struct esgz_b b;
	struct sg_toc *toc;
	struct sg_error err;
	char out[16];
	uint8_t h[512];
	char e[1024], d1[80], d2[80];
	struct sg_digest x;

	esgz_init(&b, 6);
	esgz_tar_header(h, "f1", '0', 5, 0644, NULL);
	esgz_tar_put(&b, h, 512);
	esgz_flush(&b);
	size_t off = b.blob.len;
	esgz_tar_put(&b, "first", 5);
	esgz_tar_pad(&b);
	esgz_tar_header(h, "f2", '0', 6, 0644, NULL);
	esgz_tar_put(&b, h, 512);
	esgz_tar_put(&b, "second", 6);
	esgz_tar_pad(&b);
	sg_sha256("first", 5, &x);
	sg_digest_format(&x, d1);
	sg_sha256("second", 6, &x);
	sg_digest_format(&x, d2);
	snprintf(e, sizeof(e),
		 "{\"name\":\"f1\",\"type\":\"reg\",\"size\":5,\"offset\":%zu,\"chunkDigest\":\"%s\"},"
		 "{\"name\":\"f2\",\"type\":\"reg\",\"size\":6,\"offset\":%zu,\"innerOffset\":1024,"
		 "\"chunkDigest\":\"%s\"}", off, d1, off, d2);
	esgz_toc_raw(&b, "%s", e);
	esgz_finish(&b, 0, &x);
	struct sg_esgz_options o = { .toc_digest = &x };
	CHECK_EQ(load(&b, &o, &toc, &err), 0);
	const struct sg_toc_chunk *c1 = sg_toc_chunks(toc, sg_toc_node(toc, sg_toc_lookup_path(toc, "f1")));
	const struct sg_toc_chunk *c2 = sg_toc_chunks(toc, sg_toc_node(toc, sg_toc_lookup_path(toc, "f2")));
	CHECK_EQ(c1->offset, off);
	CHECK_EQ(c2->offset, off);
	CHECK_EQ(c1->inner_offset, 0);
	CHECK_EQ(c2->inner_offset, 1024);
	CHECK_EQ(c1->next_offset, sg_toc_offset(toc));
	CHECK_EQ(sg_esgz_extract_chunk(gz(), c1, b.blob.p + off, c1->next_offset - off, false, out, &err), 0);
	CHECK_MEM(out, "first", 5);
	CHECK_EQ(sg_esgz_extract_chunk(gz(), c2, b.blob.p + off, c2->next_offset - off, false, out, &err), 0);
	CHECK_MEM(out, "second", 6);
	sg_toc_free(toc);
	esgz_done(&b);
}

/* A restart rebuilds the index from the JSON copy a layer keeps on disk: the same nodes
 * under the same ids (inode numbers), stargz.index.json with its tar header's attributes,
 * and nothing from a copy that does not match the TOC digest. */
TEST(restore_toc_from_its_json_copy)
{
	struct esgz_b b;
	struct sg_toc *toc, *again = NULL;
	struct sg_error err;
	struct sg_digest d;
	struct sg_esgz_self self;
	char path[] = "/tmp/test-restore-XXXXXX";

	esgz_init(&b, 6);
	esgz_add(&b, "dir/", '5', 0755, NULL, 0, NULL, 0, NULL);
	esgz_add(&b, "dir/a", '0', 0644, "hello", 5, NULL, 0, NULL);
	esgz_add(&b, "b", '0', 0600, "world!", 6, NULL, 0, NULL);
	esgz_add(&b, "dir/link", '2', 0777, NULL, 0, "a", 0, NULL);
	esgz_finish(&b, 0, &d);
	struct sg_esgz_options o = { .toc_digest = &d, .keep_json = true };
	if (load(&b, &o, &toc, &err) < 0)
		TEST_FAIL("load: %s", err.msg);
	CHECK_EQ(sg_esgz_self_of(toc, &self), 0);
	const void *json;
	size_t json_len;
	CHECK(sg_toc_json(toc, &json, &json_len));
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, json, json_len), (ssize_t)json_len);
	close(fd);

	CHECK_EQ(sg_esgz_restore_toc(path, sg_toc_offset(toc), &self, &o, &again, &err), 0);
	CHECK_EQ(sg_toc_count(again), sg_toc_count(toc));
	CHECK_EQ(sg_toc_self(again), sg_toc_self(toc));
	for (uint32_t id = 0; id < sg_toc_count(toc); id++) {
		const struct sg_toc_node *x = sg_toc_node(toc, id), *y = sg_toc_node(again, id);
		CHECK_EQ(x->type, y->type);
		CHECK_EQ(x->size, y->size);
		CHECK_EQ(x->mode, y->mode);
		CHECK_EQ(x->uid, y->uid);
		CHECK_EQ(x->parent, y->parent);
		CHECK_EQ(x->mtime_sec, y->mtime_sec);
		CHECK_EQ(x->name_len, y->name_len);
		CHECK(memcmp(sg_toc_str(toc, x->name), sg_toc_str(again, y->name), x->name_len) == 0);
	}
	CHECK_EQ(sg_toc_lookup_path(again, "dir/a"), sg_toc_lookup_path(toc, "dir/a"));
	const void *json2;
	size_t json2_len;
	CHECK(sg_toc_json(again, &json2, &json2_len));
	CHECK_EQ(json2_len, json_len);
	CHECK(memcmp(json, json2, json_len) == 0);
	sg_toc_free(again);

	/* One byte changed on disk: refused, nothing returned. */
	fd = open(path, O_WRONLY);
	CHECK_EQ(pwrite(fd, " ", 1, (off_t)json_len - 2), 1);
	close(fd);
	again = NULL;
	CHECK_EQ(sg_esgz_restore_toc(path, sg_toc_offset(toc), &self, &o, &again, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_DIGEST);
	CHECK(again == NULL);
	/* Without a digest to check against, never. */
	struct sg_esgz_options none = { .keep_json = true };
	CHECK_EQ(sg_esgz_restore_toc(path, sg_toc_offset(toc), &self, &none, &again, &err), -EINVAL);
	unlink(path);
	sg_toc_free(toc);
	esgz_done(&b);
}

/* stargz.index.json as tar -x creates it: attributes from the TOC member's tar header,
 * with a PAX extended header's records overriding the ustar fields; its content is the
 * verified JSON, kept when asked.  An entry the TOC lists under that name is shadowed. */
TEST(toc_entry_from_its_tar_header)
{
	struct esgz_b b;
	struct sg_toc *toc;
	struct sg_error err;
	struct sg_digest d;
	uint8_t hdrs[1536] = { 0 };
	char pax[512];

	int pl = 0;
	const char *recs[] = { "mtime=1700000000.25", "uid=4000", "gid=5000", "uname=tocuser",
			       "gname=tocgroup" };
	for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
		/* "LEN KEY=VALUE\n" where LEN counts itself (two digits here) */
		int l = (int)strlen(recs[i]) + 4;
		pl += snprintf(pax + pl, sizeof(pax) - (size_t)pl, "%d %s\n", l, recs[i]);
	}
	esgz_tar_header(hdrs, "PaxHeaders/stargz.index.json", 'x', (uint64_t)pl, 0644, NULL);
	memcpy(hdrs + 512, pax, (size_t)pl);

	esgz_init(&b, 6);
	esgz_add(&b, "a", '0', 0644, "x", 1, NULL, 0, NULL);
	esgz_add(&b, "stargz.index.json", '0', 0644, "old", 3, NULL, 0, NULL);
	/* The ustar header itself says 0640 and uid 0; the JSON size is known at finish. */
	struct esgz_buf j = { 0 };
	esgz_buf_printf(&j, "{\"version\":1,\"entries\":[%s]}", (char *)b.toc.p);
	esgz_tar_header(hdrs + 1024, "stargz.index.json", '0', j.len, 0640, NULL);
	b.toc_hdr = hdrs;
	b.toc_hdr_len = sizeof(hdrs);
	esgz_finish_json(&b, (const char *)j.p, j.len, 0, &d);
	struct sg_esgz_options o = { .toc_digest = &d, .keep_json = true };
	if (load(&b, &o, &toc, &err) < 0)
		TEST_FAIL("load: %s", err.msg);

	uint32_t self = sg_toc_lookup_path(toc, "stargz.index.json");
	CHECK_EQ(self, sg_toc_self(toc));
	const struct sg_toc_node *n = sg_toc_node(toc, self);
	CHECK_EQ(n->type, SG_TOC_REG);
	CHECK_EQ(n->size, j.len);
	CHECK_EQ(n->mode, 0640);
	CHECK_EQ(n->uid, 4000);
	CHECK_EQ(n->gid, 5000);
	CHECK_EQ(n->mtime_sec, 1700000000);
	CHECK_EQ(n->mtime_nsec, 250000000);
	CHECK_STR(sg_toc_str(toc, n->user), "tocuser");
	CHECK_STR(sg_toc_str(toc, n->group), "tocgroup");
	/* One node of that name: the listed entry is shadowed by the TOC's own. */
	uint32_t count = 0;
	for (uint32_t c = sg_toc_node(toc, 0)->first_child; c != SG_TOC_NONE;
	     c = sg_toc_node(toc, c)->next_sibling)
		count++;
	CHECK_EQ(count, 2);

	const void *json;
	size_t json_len;
	CHECK(sg_toc_json(toc, &json, &json_len));
	CHECK_EQ(json_len, j.len);
	CHECK(memcmp(json, j.p, j.len) == 0);
	sg_toc_drop_json(toc);
	CHECK(!sg_toc_json(toc, &json, &json_len));
	sg_toc_free(toc);

	/* A digest mismatch keeps nothing. */
	d.bytes[0] ^= 1;
	toc = NULL;
	CHECK_EQ(load(&b, &o, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_DIGEST);
	CHECK(toc == NULL);
	free(j.p);
	esgz_done(&b);
}

/* ---- verification ---- */

TEST(toc_digest_required_and_checked)
{
	struct esgz_b b;
	struct sg_toc *toc = NULL;
	struct sg_error err;
	struct sg_digest d;

	esgz_init(&b, 6);
	esgz_add(&b, "a", '0', 0644, "hello", 5, NULL, 0, NULL);
	esgz_finish(&b, 0, &d);
	CHECK_EQ(load(&b, NULL, &toc, &err), -EPERM);
	CHECK_EQ(err.code, SG_ESGZ_E_NO_TOC_DIGEST);
	struct sg_esgz_options none = { 0 };
	CHECK_EQ(load(&b, &none, &toc, &err), -EPERM);
	CHECK_EQ(err.code, SG_ESGZ_E_NO_TOC_DIGEST);

	struct sg_digest wrong = d;
	wrong.bytes[0] ^= 1;
	struct sg_esgz_options o = { .toc_digest = &wrong };
	CHECK_EQ(load(&b, &o, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_DIGEST);
	CHECK(strstr(err.msg, "mismatch"));
	CHECK(toc == NULL);

	o.toc_digest = &d;
	CHECK_EQ(load(&b, &o, &toc, &err), 0);
	sg_toc_free(toc);
	CHECK_EQ(load(&b, &skip, &toc, &err), 0);
	sg_toc_free(toc);
	esgz_done(&b);
}

/* ---- the ratio bound and the TOC member ---- */

/* Issue 11, defect 4: the bound refuses lies, never real gzip.  The most compressible
 * input at every libdeflate level still fits, by a margin, and extracts. */
TEST(ratio_bound_holds_for_real_gzip)
{
	size_t len = 8u << 20;
	uint8_t *zero = calloc(1, len), *out = malloc(len);
	static const int levels[] = { 1, 6, 12 };

	CHECK(zero && out);
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		struct esgz_b b;
		struct sg_toc *toc;
		struct sg_error err;
		struct sg_digest d;

		esgz_init(&b, levels[i]);
		esgz_add(&b, "zeros", '0', 0644, zero, len, NULL, 0, NULL);
		esgz_finish(&b, 0, &d);
		struct sg_esgz_options o = { .toc_digest = &d };
		if (load(&b, &o, &toc, &err) < 0)
			TEST_FAIL("level %d: %s", levels[i], err.msg);
		const struct sg_toc_chunk *c = sg_toc_chunks(toc, sg_toc_node(toc, sg_toc_lookup_path(toc, "zeros")));
		uint64_t span = c->next_offset - c->offset;
		CHECK(c->size <= sg_gz_max_output(span));
		CHECK(c->size > sg_gz_max_output(span) / 2);   /* the bound is not loose either */
		CHECK_EQ(sg_esgz_extract_chunk(gz(), c, b.blob.p + c->offset, span, false, out, &err), 0);
		CHECK_MEM(out, zero, len);
		sg_toc_free(toc);
		esgz_done(&b);
	}
	free(zero);
	free(out);
}

/* extract_chunk keeps its own guard for chunks that did not come from a TOC, and
 * allocates nothing for them. */
TEST(extract_chunk_ratio_guard)
{
	struct sg_error err;
	struct sg_toc_chunk c = { .offset = 0, .next_offset = 40, .size = 1032 * 22 + 1 };
	uint8_t member[40] = { 0x1f, 0x8b, 8 }, out[1];

	CHECK_EQ(sg_esgz_extract_chunk(gz(), &c, member, sizeof(member), true, out, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_CHUNK_RATIO);
}

TEST(hostile_toc_member)
{
	struct esgz_b b;
	struct sg_toc *toc = NULL;
	struct sg_error err;

	/* TOC larger than the configured limit. */
	esgz_init(&b, 6);
	for (int i = 0; i < 200; i++) {
		char name[32];
		snprintf(name, sizeof(name), "dir-%d/", i);
		esgz_add(&b, name, '5', 0755, NULL, 0, NULL, 0, NULL);
	}
	esgz_finish(&b, 0, NULL);
	struct sg_esgz_options o = { .skip_verify = true, .max_toc_size = 1000 };
	CHECK_EQ(load(&b, &o, &toc, &err), -EFBIG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_TOO_LARGE);
	esgz_done(&b);

	/* A gzip bomb: 64 MiB of zeros as the "TOC" against a 1 MiB limit; refused before
	 * anything near 64 MiB is allocated (ISIZE says so). */
	esgz_init(&b, 9);
	size_t bomb = 64u << 20;
	char *zeros = calloc(1, bomb);
	esgz_finish_json(&b, zeros, bomb, 0, NULL);
	free(zeros);
	o.max_toc_size = 1u << 20;
	CHECK_EQ(load(&b, &o, &toc, &err), -EFBIG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_TOO_LARGE);
	/* Lying ISIZE (claims small): the output bound still stops it. */
	struct sg_esgz_footer f;
	CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err), 0);
	uint8_t *isize = b.blob.p + f.toc_end - 4;
	isize[0] = 100, isize[1] = isize[2] = isize[3] = 0;
	CHECK_EQ(load(&b, &o, &toc, &err), -EFBIG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_TOO_LARGE);
	esgz_done(&b);

	/* Corrupt gzip. */
	esgz_init(&b, 6);
	esgz_add(&b, "a", '5', 0755, NULL, 0, NULL, 0, NULL);
	esgz_finish(&b, 0, NULL);
	CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err), 0);
	b.blob.p[f.toc_offset + 12] ^= 0xff;
	CHECK_EQ(load(&b, &skip, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_GZIP);
	esgz_done(&b);

	/* A member that is not a stargz.index.json tar entry. */
	esgz_init(&b, 6);
	uint8_t h[512];
	esgz_tar_header(h, "other.json", '0', 2, 0644, NULL);
	esgz_tar_put(&b, h, 512);
	esgz_tar_put(&b, "{}", 2);
	esgz_tar_pad(&b);
	esgz_flush(&b);
	size_t len = b.blob.len;
	esgz_finish(&b, 0, NULL);
	/* Point the footer at our fake member. */
	char hex[17];
	snprintf(hex, sizeof(hex), "%016zx", (size_t)0);
	memcpy(b.blob.p + b.blob.len - 51 + 16, hex, 16);
	(void)len;
	CHECK_EQ(load(&b, &skip, &toc, &err), -EBADMSG);
	/* [0, toc_end) is two members: refused as gzip, not as tar. */
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_GZIP);
	esgz_done(&b);

	esgz_init(&b, 6);
	esgz_tar_header(h, "other.json", '0', 2, 0644, NULL);
	esgz_tar_put(&b, h, 512);
	esgz_tar_put(&b, "{}", 2);
	esgz_tar_pad(&b);
	esgz_flush(&b);
	/* Append a footer by hand pointing at offset 0. */
	struct esgz_b tmp;
	esgz_init(&tmp, 6);
	esgz_finish_json(&tmp, "", 0, 0, NULL);
	uint8_t ft[51];
	memcpy(ft, tmp.blob.p + tmp.blob.len - 51, 51);
	memcpy(ft + 16, hex, 16);
	esgz_buf_put(&b.blob, ft, 51);
	esgz_done(&tmp);
	CHECK_EQ(load(&b, &skip, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_TAR);
	esgz_done(&b);
}

/* ---- asynchronous open through a file range source ---- */

struct open_result {
	struct sg_op op;
	int done, res;
	struct sg_toc *toc;
	struct sg_error err;
};

static void on_open(struct sg_op *op)
{
	struct open_result *r = sg_container_of(op, struct open_result, op);
	r->done++;
	r->res = op->res;
}

/* Opens the blob of src into *res (reset first). */
static int start_open(struct sg_range_source *src, const struct sg_esgz_options *o,
		      struct open_result *res, struct sg_esgz_open **ret_req)
{
	*res = (struct open_result){ 0 };
	sg_op_init(&res->op);
	return sg_esgz_open(src, o, ret_req, &res->toc, &res->err, &res->op, on_open);
}

/* A loop and a range source over the blob, written to an unlinked temporary file. */
static struct sg_loop *blob_source(const struct esgz_b *b, struct sg_range_source **src)
{
	struct sg_loop *loop;
	char path[] = "/tmp/test-estargz-XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, b->blob.p, b->blob.len), (ssize_t)b->blob.len);
	unlink(path);
	int r = sg_loop_new(NULL, &loop);
	if (r < 0)
		SKIP("no io_uring: %s", strerror(-r));
	CHECK_EQ(sg_range_source_file_new(loop, fd, src), 0);
	close(fd);
	CHECK_EQ((*src)->size, b->blob.len);
	return loop;
}

/* A one-file layer ("hello" holding "world"), its TOC digest, and a loop and a range
 * source over it. */
static struct sg_loop *hello_source(struct esgz_b *b, struct sg_digest *d,
				    struct sg_range_source **src)
{
	esgz_init(b, 6);
	esgz_add(b, "hello", '0', 0644, "world", 5, NULL, 0, NULL);
	esgz_finish(b, 0, d);
	return blob_source(b, src);
}

static int open_async(struct esgz_b *b, const struct sg_esgz_options *o, struct open_result *res)
{
	struct sg_range_source *src;
	struct sg_loop *loop = blob_source(b, &src);

	CHECK_EQ(start_open(src, o, res, NULL), 0);
	while (!res->done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	CHECK_EQ(res->done, 1);
	sg_range_source_free(src);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
	return res->res;
}

TEST(async_open_small_and_large_toc)
{
	struct esgz_b b;
	struct open_result res;
	struct sg_digest d;

	esgz_init(&b, 6);
	esgz_add(&b, "hello", '0', 0644, "world", 5, NULL, 0, NULL);
	esgz_finish(&b, 0, &d);
	struct sg_esgz_options o = { .toc_digest = &d };
	CHECK_EQ(open_async(&b, &o, &res), 0);
	CHECK(res.toc);
	CHECK(sg_toc_lookup_path(res.toc, "hello") != SG_TOC_NONE);
	sg_toc_free(res.toc);
	/* Refusals arrive through the callback too. */
	CHECK_EQ(open_async(&b, NULL, &res), -EPERM);
	CHECK_EQ(res.err.code, SG_ESGZ_E_NO_TOC_DIGEST);
	esgz_done(&b);

	/* A TOC bigger than the speculative tail read: needs the second read. */
	esgz_init(&b, 1);
	esgz_gen_node_modules(&b, 12000, 7);
	esgz_finish(&b, 0, &d);
	struct sg_esgz_footer f;
	struct sg_error err;
	CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err), 0);
	CHECK(f.toc_end - f.toc_offset > SG_ESGZ_TAIL_READ);
	CHECK_EQ(open_async(&b, &o, &res), 0);
	CHECK(sg_toc_lookup_path(res.toc, "node_modules/pkg-00119/lib/file-099.js") != SG_TOC_NONE);
	CHECK(sg_toc_verified(res.toc));
	sg_toc_free(res.toc);
	/* Large enough for the hash to run beside the parser: a mismatch still wins. */
	struct sg_digest wrong = d;
	wrong.bytes[31] ^= 0x80;
	struct sg_esgz_options ow = { .toc_digest = &wrong };
	struct sg_toc *toc = NULL;
	CHECK_EQ(load(&b, &ow, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_TOC_DIGEST);
	CHECK(toc == NULL);

	/* Not an eStargz blob. */
	memset(b.blob.p + b.blob.len - 100, 0, 100);
	CHECK_EQ(open_async(&b, &o, &res), -EBADMSG);
	CHECK_EQ(res.err.code, SG_ESGZ_E_FOOTER);
	esgz_done(&b);
}

struct ticker {
	struct sg_loop *loop;
	struct sg_op op;
	double last_ms, max_gap_ms;
	bool stop;
};

static void tick(struct sg_op *op)
{
	struct ticker *t = sg_container_of(op, struct ticker, op);
	double now = test_now_ms();

	if (now - t->last_ms > t->max_gap_ms)
		t->max_gap_ms = now - t->last_ms;
	t->last_ms = now;
	if (!t->stop && op->res != -ECANCELED)
		CHECK_EQ(sg_timer_start(t->loop, &t->op, 1000000, tick), 0);
}

/* A big TOC is parsed off the loop: a 1 ms timer keeps ticking meanwhile (on the loop thread
 * the parse of these 60,000 entries holds everything up for ~100 ms or more). */
TEST(async_open_keeps_the_loop_responsive)
{
	struct esgz_b b;
	struct sg_digest d;
	struct sg_loop *loop;
	struct sg_range_source *src;
	struct open_result res;
	struct ticker t = { 0 };

	esgz_init(&b, 1);
	esgz_gen_node_modules(&b, 60000, 3);
	esgz_finish(&b, 0, &d);
	loop = blob_source(&b, &src);
	t.loop = loop;
	t.last_ms = test_now_ms();
	sg_op_init(&t.op);
	CHECK_EQ(sg_timer_start(loop, &t.op, 1000000, tick), 0);
	struct sg_esgz_options o = { .toc_digest = &d };
	double t0 = test_now_ms();
	CHECK_EQ(start_open(src, &o, &res, NULL), 0);
	while (!res.done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	double took = test_now_ms() - t0;
	t.stop = true;
	CHECK_EQ(res.res, 0);
	CHECK(sg_toc_count(res.toc) > 60000);
	fprintf(stderr, "    open took %.0f ms; longest gap between 1 ms ticks %.1f ms\n", took,
		t.max_gap_ms);
	CHECK(t.max_gap_ms < took / 3);   /* parsed on the loop, the gap is the whole open */
	sg_toc_free(res.toc);

	/* Draining while a parse runs: the callback comes once, nothing leaks (ASan). */
	CHECK_EQ(start_open(src, &o, &res, NULL), 0);
	for (int i = 0; i < 200 && !res.done; i++)
		CHECK(sg_loop_run_once(loop, 1) >= 0);   /* until the tail is read, at most */
	CHECK_EQ(sg_loop_drain(loop, 5000), 0);
	sg_range_source_free(src);   /* after its reads called back, as for any owner */
	CHECK_EQ(res.done, 1);
	if (res.res == 0)
		sg_toc_free(res.toc);
	sg_loop_free(loop);
	esgz_done(&b);
}

/* A cancel while the loader thread parses: one callback, -ECANCELED, the TOC it built is
 * freed, nothing leaks or is touched after its free (ASan). */
TEST(async_open_cancel_while_the_thread_parses)
{
	struct esgz_b b;
	struct sg_digest d;
	struct sg_loop *loop;
	struct sg_range_source *src;
	struct sg_esgz_open *req = NULL;
	struct open_result res;

	esgz_init(&b, 1);
	esgz_gen_node_modules(&b, 6000, 3);
	esgz_finish(&b, 0, &d);
	loop = blob_source(&b, &src);
	struct sg_esgz_options o = { .toc_digest = &d };
	CHECK_EQ(start_open(src, &o, &res, &req), 0);
	/* The first callback is the tail read's, which starts the thread: cancel right then. */
	int n = 0;
	while (n == 0) {
		n = sg_loop_run_once(loop, 1000);
		CHECK(n >= 0);
	}
	CHECK_EQ(res.done, 0);
	sg_esgz_open_cancel(req);
	sg_esgz_open_cancel(req);   /* twice is harmless */
	while (!res.done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	CHECK_EQ(res.done, 1);
	CHECK_EQ(res.res, -ECANCELED);
	CHECK(res.toc == NULL);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	CHECK_EQ(res.done, 1);
	sg_range_source_free(src);
	sg_loop_free(loop);
	esgz_done(&b);
}

static void never_called(struct sg_op *op)
{
	abort();
}

TEST(async_open_cancel)
{
	struct esgz_b b;
	struct sg_digest d;
	struct sg_loop *loop;
	struct sg_range_source *src;
	struct sg_esgz_open *req = NULL;
	struct open_result res;

	loop = hello_source(&b, &d, &src);
	struct sg_esgz_options o = { .toc_digest = &d };
	CHECK_EQ(start_open(src, &o, &res, &req), 0);
	CHECK(req != NULL);
	sg_esgz_open_cancel(req);
	while (!res.done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	CHECK_EQ(res.done, 1);
	CHECK_EQ(res.res, -ECANCELED);
	CHECK_EQ(res.err.code, SG_ESGZ_E_CANCELED);
	CHECK(res.toc == NULL);
	/* Reads outside the blob are refused up front. */
	uint8_t buf[8];
	struct sg_op op;
	sg_op_init(&op);
	CHECK_EQ(sg_range_read(src, b.blob.len - 4, 8, buf, &op, never_called), -ERANGE);
	sg_range_source_free(src);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
	esgz_done(&b);
}

/* The continuation contract (daemon/core/loop.h): an op still in flight elsewhere is
 * refused with no callback; the handle stays valid, and a cancel harmless, until the
 * callback has returned, even when it comes from inside that callback. */
struct cancel_in_cb {
	struct open_result res;
	struct sg_esgz_open *req;
};

static void cancel_from_callback(struct sg_op *op)
{
	struct cancel_in_cb *x = sg_container_of(op, struct cancel_in_cb, res.op);

	on_open(op);
	sg_esgz_open_cancel(x->req);   /* too late: no effect, no use after free (ASan) */
}

static void timer_done(struct sg_op *op)
{
	CHECK_EQ(op->res, -ECANCELED);
}

TEST(async_open_op_contract)
{
	struct esgz_b b;
	struct sg_digest d;
	struct sg_loop *loop;
	struct sg_range_source *src;
	struct cancel_in_cb x = { 0 };
	struct sg_toc *toc = NULL;
	struct sg_error err;
	struct sg_op busy;

	loop = hello_source(&b, &d, &src);
	struct sg_esgz_options o = { .toc_digest = &d };

	sg_op_init(&busy);
	CHECK_EQ(sg_timer_start(loop, &busy, 60ull * 1000000000u, timer_done), 0);
	CHECK_EQ(sg_esgz_open(src, &o, NULL, &toc, &err, &busy, never_called), -EBUSY);
	struct sg_esgz_footer f;
	CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err), 0);
	CHECK_EQ(sg_esgz_load_toc_member_async(loop, b.blob.p + f.toc_offset,
					       (size_t)(f.toc_end - f.toc_offset), &f, &o, &toc,
					       &err, &busy, never_called), -EBUSY);
	CHECK_EQ(sg_esgz_open(src, &o, NULL, NULL, &err, &x.res.op, never_called), -EINVAL);
	CHECK_EQ(sg_op_cancel(&busy), 0);

	sg_op_init(&x.res.op);
	CHECK_EQ(sg_esgz_open(src, &o, &x.req, &x.res.toc, &x.res.err, &x.res.op,
			      cancel_from_callback), 0);
	while (!x.res.done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	CHECK_EQ(x.res.res, 0);
	CHECK(sg_toc_lookup_path(x.res.toc, "hello") != SG_TOC_NONE);
	sg_toc_free(x.res.toc);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	CHECK_EQ(x.res.done, 1);
	CHECK(toc == NULL);
	sg_range_source_free(src);
	sg_loop_free(loop);
	esgz_done(&b);
}

/* The helper-thread load on its own: results through ret_toc and err, op->res the errno. */
struct parsed {
	struct sg_op op;
	int done;
	struct sg_toc *toc;
	struct sg_error err;
};

static void on_parsed(struct sg_op *op)
{
	sg_container_of(op, struct parsed, op)->done++;
}

TEST(async_load_toc_member)
{
	struct esgz_b b;
	struct sg_digest d, wrong;
	struct sg_loop *loop;
	struct sg_esgz_footer f;
	struct sg_error err;
	struct parsed p = { 0 };

	esgz_init(&b, 6);
	esgz_add(&b, "a/b", '0', 0644, "x", 1, NULL, 0, NULL);
	esgz_finish(&b, 0, &d);
	int r = sg_loop_new(NULL, &loop);
	if (r < 0)
		SKIP("no io_uring: %s", strerror(-r));
	CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err), 0);
	const uint8_t *member = b.blob.p + f.toc_offset;
	size_t len = (size_t)(f.toc_end - f.toc_offset);
	struct sg_esgz_options o = { .toc_digest = &d };

	sg_op_init(&p.op);
	CHECK_EQ(sg_esgz_load_toc_member_async(loop, member, len, &f, &o, &p.toc, &p.err, &p.op,
					       on_parsed), 0);
	while (!p.done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	CHECK_EQ(p.op.res, 0);
	CHECK(sg_toc_lookup_path(p.toc, "a/b") != SG_TOC_NONE);
	CHECK(sg_toc_verified(p.toc));
	sg_toc_free(p.toc);

	/* A refusal: no TOC, the same error as the synchronous load. */
	wrong = d;
	wrong.bytes[0] ^= 1;
	o.toc_digest = &wrong;
	p = (struct parsed){ 0 };
	sg_op_init(&p.op);
	CHECK_EQ(sg_esgz_load_toc_member_async(loop, member, len, &f, &o, &p.toc, &p.err, &p.op,
					       on_parsed), 0);
	while (!p.done)
		CHECK(sg_loop_run_once(loop, 1000) >= 0);
	CHECK_EQ(p.op.res, -EBADMSG);
	CHECK(p.toc == NULL);
	CHECK_EQ(p.err.code, SG_ESGZ_E_TOC_DIGEST);
	CHECK(strstr(p.err.msg, "TOC digest mismatch: want ") == p.err.msg);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
	esgz_done(&b);
}

/* daemon/core/error.h: err is filled on failure and left alone on success. */
TEST(error_left_alone_on_success)
{
	struct esgz_b b;
	struct sg_esgz_footer f;
	struct sg_toc *toc = NULL;
	struct sg_error err = { .code = 12345, .msg = "earlier" };

	esgz_init(&b, 6);
	esgz_add(&b, "a", '0', 0644, "x", 1, NULL, 0, NULL);
	esgz_finish(&b, 0, NULL);
	CHECK_EQ(sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err), 0);
	CHECK_EQ(load(&b, &skip, &toc, &err), 0);
	const struct sg_toc_node *a = sg_toc_node(toc, sg_toc_lookup_path(toc, "a"));
	const struct sg_toc_chunk *c = sg_toc_chunks(toc, a);
	char out[1];
	CHECK_EQ(sg_esgz_extract_chunk(gz(), c, b.blob.p + c->offset, c->next_offset - c->offset,
				       false, out, &err), 0);
	CHECK_EQ(err.code, 12345);
	CHECK_STR(err.msg, "earlier");
	/* A failure overwrites both; NULL is fine. */
	CHECK_EQ(sg_esgz_verify_chunk(c, "y", 1, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_CHUNK_DIGEST);
	char want[80];
	snprintf(want, sizeof(want), "chunk at %llu does not match its chunkDigest",
		 (unsigned long long)c->offset);
	CHECK_STR(err.msg, want);
	CHECK_EQ(sg_esgz_verify_chunk(c, "y", 1, NULL), -EBADMSG);
	sg_toc_free(toc);
	esgz_done(&b);
}

TEST_MAIN()
