/* Conversion of one layer (tools/stargzify/convert.c): a small tar in memory converted into
 * a memfd, then checked as bytes (the blob is the input's entries, byte for byte, in gzip
 * members, then the TOC and the footer) and through the daemon's own reader. */
#include "tools/stargzify/convert.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <sys/mman.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/tar.h"
#include "tests/helpers/esgz_build.h"
#include "tools/stargzify/input.h"
#include "tools/stargzify/toc_writer.h"

struct tarb {
	uint8_t buf[64 << 10];
	size_t len;
	size_t kept[16][2];   /* [start, end) of each entry the output must hold, in input order */
	int n_kept;
};

static void add(struct tarb *t, const char *name, char type, const char *linkname,
		const void *data, size_t n, int kept)
{
	size_t start = t->len, padded = (n + 511) / 512 * 512;

	esgz_tar_header(t->buf + t->len, name, type, n, type == '5' ? 0755 : 0644, linkname);
	t->len += 512;
	memset(t->buf + t->len, 0, padded);
	if (n)
		memcpy(t->buf + t->len, data, n);
	t->len += padded;
	if (kept) {
		t->kept[t->n_kept][0] = start;
		t->kept[t->n_kept++][1] = t->len;
	}
}

static void build_layer(struct tarb *t)
{
	static char big[300], a1[50], a2[100];

	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	memset(a1, '1', sizeof(a1));
	memset(a2, '2', sizeof(a2));
	add(t, "dir/", '5', NULL, NULL, 0, 1);
	add(t, "dir/a", '0', NULL, a1, sizeof(a1), 0);   /* replaced by the later dir/a */
	add(t, "dir/big", '0', NULL, big, sizeof(big), 1);
	add(t, "stargz.index.json", '0', NULL, "{}", 2, 0);   /* bookkeeping: dropped */
	add(t, "dir/empty", '0', NULL, NULL, 0, 1);
	add(t, "./dir/a", '0', NULL, a2, sizeof(a2), 1);
	add(t, ".no.prefetch.landmark", '0', NULL, "\x0f", 1, 0);
	add(t, "dir/hl", '1', "dir/a", NULL, 0, 1);
	t->len += 1024;   /* end of archive */
}

struct blob {
	uint8_t *p;
	size_t len;
	struct sz_result res;
};

static int convert(const struct tarb *t, unsigned threads, const char *prio, struct blob *b)
{
	struct sz_options opt = { .chunk_size = 128, .level = 1, .threads = threads,
				  .prioritize_file = prio, .progress = 0 };
	struct sz_input in;
	int fd = memfd_create("blob", 0), ret;

	CHECK(fd >= 0);
	sz_input_from_memory(&in, t->buf, t->len);
	ret = sz_convert(&opt, &in, "test.tar", fd, &b->res);
	b->len = (size_t)lseek(fd, 0, SEEK_END);
	b->p = malloc(b->len + 1);
	CHECK(b->p != NULL);
	CHECK_EQ(pread(fd, b->p, b->len, 0), (ssize_t)b->len);
	close(fd);
	return ret;
}

/* The whole blob gunzipped (every member), malloc'd. */
static uint8_t *gunzip_all(const struct blob *b, size_t *ret_len)
{
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t cap = 1 << 20, len = 0, off = 0;
	uint8_t *out = malloc(cap);

	while (off < b->len) {
		size_t used = 0, got = 0;
		CHECK_EQ(libdeflate_gzip_decompress_ex(d, b->p + off, b->len - off, out + len,
						       cap - len, &used, &got),
			 LIBDEFLATE_SUCCESS);
		off += used;
		len += got;
	}
	libdeflate_free_decompressor(d);
	*ret_len = len;
	return out;
}

static struct sg_toc *load(const struct blob *b)
{
	struct sg_gz *gz;
	struct sg_toc *toc = NULL;
	struct sg_error err;
	struct sg_esgz_options o = { .toc_digest = &b->res.toc, .keep_json = true };

	CHECK_EQ(sg_gz_new(&gz), 0);
	if (sg_esgz_load_blob(gz, b->p, b->len, &o, &toc, &err) < 0)
		TEST_FAIL("load: %s", err.msg);
	sg_gz_free(gz);
	return toc;
}

TEST(the_blob_holds_the_input_entries_byte_for_byte_then_the_toc)
{
	struct tarb t;
	struct blob b;
	struct sg_digest d;
	size_t ulen, pos = 0;
	uint8_t hdr[512];

	build_layer(&t);
	CHECK_EQ(convert(&t, 2, NULL, &b), 0);
	CHECK_EQ(b.res.blob_size, b.len);
	sg_sha256(b.p, b.len, &d);
	CHECK_MEM(&d, &b.res.blob, sizeof(d));

	uint8_t *u = gunzip_all(&b, &ulen);
	CHECK_EQ(ulen, b.res.uncompressed_size);
	sg_sha256(u, ulen, &d);
	CHECK_MEM(&d, &b.res.diff_id, sizeof(d));
	/* the landmark, as Go's tar writer makes it */
	CHECK_EQ(sg_tar_make_reg_header(hdr, ".no.prefetch.landmark", 1), 0);
	CHECK_MEM(u, hdr, 512);
	CHECK_EQ(u[512], 0x0f);
	pos = 1024;
	for (int i = 0; i < t.n_kept; i++) {
		size_t n = t.kept[i][1] - t.kept[i][0];
		CHECK_MEM(u + pos, t.buf + t.kept[i][0], n);
		pos += n;
	}
	/* the TOC entry, its JSON, padding and the end-of-archive blocks */
	const void *json;
	size_t json_len;
	struct sg_toc *toc = load(&b);
	CHECK(sg_toc_json(toc, &json, &json_len));
	CHECK_EQ(sg_tar_make_reg_header(hdr, SZ_TOC_NAME, json_len), 0);
	CHECK_MEM(u + pos, hdr, 512);
	CHECK_MEM(u + pos + 512, json, json_len);
	CHECK_EQ(ulen, pos + 512 + (json_len + 511) / 512 * 512 + 1024);
	sg_sha256(json, json_len, &d);
	CHECK_MEM(&d, &b.res.toc, sizeof(d));

	/* the footer points at the TOC member */
	uint8_t footer[SZ_FOOTER_SIZE];
	sz_toc_footer(footer, b.res.toc_offset);
	CHECK_MEM(b.p + b.len - SZ_FOOTER_SIZE, footer, SZ_FOOTER_SIZE);
	sg_toc_free(toc);
	free(u);
	free(b.p);
}

TEST(the_toc_describes_the_layer_as_the_reference_does)
{
	struct tarb t;
	struct blob b;

	build_layer(&t);
	CHECK_EQ(convert(&t, 2, NULL, &b), 0);
	/* landmark, dir/, dir/big + 2 chunks, dir/empty, dir/a, dir/hl */
	CHECK_EQ(b.res.n_entries, 8);
	struct sg_toc *toc = load(&b);
	CHECK(sg_toc_has_no_prefetch_landmark(toc));
	const struct sg_toc_node *a = sg_toc_node(toc, sg_toc_lookup_path(toc, "dir/a"));
	CHECK_EQ(a->size, 100);   /* the later entry of the name */
	const struct sg_toc_node *big = sg_toc_node(toc, sg_toc_lookup_path(toc, "dir/big"));
	CHECK_EQ(big->nchunks, 3);
	const struct sg_toc_chunk *c = sg_toc_chunks(toc, big);
	for (int i = 0; i < 3; i++) {   /* each chunk is a gzip member of its own */
		CHECK_EQ(c[i].file_offset, 128 * i);
		CHECK_EQ(c[i].inner_offset, 0);
		CHECK(i == 0 || c[i].offset > c[i - 1].offset);
	}
	CHECK(sg_toc_lookup_path(toc, "stargz.index.json") == sg_toc_self(toc));

	/* The first entries, byte for byte: the landmark has no metadata but its payload (in a
	 * member of its own, after the member of its header) and digests. */
	const struct sg_toc_node *lm = sg_toc_node(toc, sg_toc_lookup_path(toc, ".no.prefetch.landmark"));
	const void *json;
	size_t json_len;
	char want[512], dg[SG_DIGEST_STRLEN + 1];
	struct sg_digest d;
	sg_sha256("\x0f", 1, &d);
	sg_digest_format(&d, dg);
	CHECK_EQ(lm->nchunks, 1);
	snprintf(want, sizeof(want), "{\n\t\"version\": 1,\n\t\"entries\": [\n\t\t{\n"
		 "\t\t\t\"name\": \".no.prefetch.landmark\",\n\t\t\t\"type\": \"reg\",\n"
		 "\t\t\t\"size\": 1,\n\t\t\t\"offset\": %" PRIu64 ",\n\t\t\t\"digest\": \"%s\",\n"
		 "\t\t\t\"chunkDigest\": \"%s\"\n\t\t},\n\t\t{\n\t\t\t\"name\": \"dir/\",\n"
		 "\t\t\t\"type\": \"dir\",\n\t\t\t\"mode\": 493\n\t\t},\n",
		 sg_toc_chunks(toc, lm)[0].offset, dg, dg);
	CHECK(sg_toc_chunks(toc, lm)[0].offset > 0);
	CHECK(sg_toc_json(toc, &json, &json_len));
	CHECK(json_len > strlen(want));
	CHECK_MEM(json, want, strlen(want));
	sg_toc_free(toc);
	free(b.p);
}

TEST(prioritized_files_come_first_then_the_prefetch_landmark)
{
	char path[] = "/tmp/test_convert.XXXXXX";
	int fd = mkstemp(path);
	struct tarb t;
	struct blob b;
	size_t ulen;
	uint8_t hdr[512];
	uint64_t end;

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "# comment\n  ./dir/big\t\n\nnot/there\n", 34), 34);
	close(fd);
	build_layer(&t);
	CHECK_EQ(convert(&t, 1, path, &b), 0);
	unlink(path);
	uint8_t *u = gunzip_all(&b, &ulen);
	/* dir/ (its parent) and dir/big, then the landmark, then the rest in input order */
	size_t dir_len = t.kept[0][1] - t.kept[0][0], big_len = t.kept[1][1] - t.kept[1][0];
	CHECK_MEM(u, t.buf + t.kept[0][0], dir_len);
	CHECK_MEM(u + dir_len, t.buf + t.kept[1][0], big_len);
	CHECK_EQ(sg_tar_make_reg_header(hdr, ".prefetch.landmark", 1), 0);
	CHECK_MEM(u + dir_len + big_len, hdr, 512);
	CHECK_MEM(u + dir_len + big_len + 1024, t.buf + t.kept[2][0], t.kept[2][1] - t.kept[2][0]);
	struct sg_toc *toc = load(&b);
	CHECK(sg_toc_has_prefetch(toc, &end));
	CHECK(end > 0 && end < b.res.toc_offset);
	sg_toc_free(toc);
	free(u);
	free(b.p);
}

TEST(the_blob_does_not_depend_on_the_thread_count)
{
	struct tarb t;
	struct blob b1, b3;

	build_layer(&t);
	CHECK_EQ(convert(&t, 1, NULL, &b1), 0);
	CHECK_EQ(convert(&t, 3, NULL, &b3), 0);
	CHECK_EQ(b1.len, b3.len);
	CHECK_MEM(b1.p, b3.p, b1.len);
	free(b1.p);
	free(b3.p);
}

TEST(an_empty_input_is_a_layer_with_only_the_landmark)
{
	struct tarb t;
	struct blob b;

	memset(&t, 0, sizeof(t));
	CHECK_EQ(convert(&t, 1, NULL, &b), 0);
	CHECK_EQ(b.res.n_entries, 1);
	sg_toc_free(load(&b));
	free(b.p);
}

TEST(damaged_and_unsupported_tars_are_refused)
{
	struct tarb t;
	struct blob b;

	build_layer(&t);
	t.len = 700;   /* cut inside dir/a's payload */
	CHECK_EQ(convert(&t, 1, NULL, &b), -EBADMSG);
	free(b.p);
	memset(&t, 0, sizeof(t));
	add(&t, "pax_global_header", 'g', NULL, "20 mtime=1234567890\n", 20, 0);
	t.len += 1024;
	CHECK_EQ(convert(&t, 1, NULL, &b), -ENOTSUP);
	free(b.p);
}

TEST_MAIN()
