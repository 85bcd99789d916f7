/* Loading hand-written TOCs for tests (header-only): a blob around TOC entries written as
 * JSON text, or the JSON straight into the parser, and checks that a layer is refused with
 * a given code (and a message naming the entry).  Shared by the tests of fs/toc_build.c,
 * fs/toc_parse.c and fs/estargz.c. */
#ifndef STARGZD_TESTS_TOC_HOSTILE_H
#define STARGZD_TESTS_TOC_HOSTILE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/toc_parse.h"
#include "tests/helpers/esgz_build.h"
#include "tests/unit/test.h"

/* A digest no content has: for entries that need one to load. */
#define D0 "sha256:0000000000000000000000000000000000000000000000000000000000000000"

static inline struct sg_gz *gz(void)
{
	static struct sg_gz *g;
	if (!g)
		CHECK_EQ(sg_gz_new(&g), 0);
	return g;
}

static inline int load(struct esgz_b *b, const struct sg_esgz_options *o, struct sg_toc **toc,
		       struct sg_error *err)
{
	return sg_esgz_load_blob(gz(), b->blob.p, b->blob.len, o, toc, err);
}

/* Builds a blob around hand-written TOC entries (one real member of 4 KiB that does not
 * compress, at offset 0, so that the TOC starts a little past 4096) and returns the load
 * result and error code. */
static inline int hostile_opts(const char *entries, const struct sg_esgz_options *o,
			       struct sg_error *err)
{
	struct esgz_b b;
	struct esgz_buf j = { 0 };
	struct sg_toc *toc = NULL;
	uint8_t data[4096];
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(data); i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (uint8_t)(x >> 24);
	}
	esgz_init(&b, 6);
	esgz_tar_put(&b, data, sizeof(data));
	esgz_flush(&b);
	CHECK(b.blob.len > 4096);
	esgz_buf_printf(&j, "{\"version\":1,\"entries\":[%s]}", entries);
	esgz_finish_json(&b, (char *)j.p, j.len, 0, NULL);
	int r = load(&b, o, &toc, err);
	if (r == 0)
		CHECK(toc != NULL);
	sg_toc_free(toc);
	free(j.p);
	esgz_done(&b);
	return r;
}

static inline int hostile(const char *entries, struct sg_error *err)
{
	return hostile_opts(entries, &(const struct sg_esgz_options){ .skip_verify = true }, err);
}

#define CHECK_HOSTILE(entries, want_code) \
	CHECK_HOSTILE_OPTS(entries, (&(const struct sg_esgz_options){ .skip_verify = true }), \
			   want_code)
#define CHECK_HOSTILE_OPTS(entries, opts, want_code) \
	do { \
		struct sg_error e_; \
		int r_ = hostile_opts(entries, opts, &e_); \
		if (r_ >= 0 || e_.code != (want_code)) \
			TEST_FAIL("expected %s, got r=%d code=%s msg=%s", sg_esgz_code_name(want_code), r_, \
				  sg_esgz_code_name(e_.code), e_.msg); \
		CHECK(e_.msg[0] != 0); \
	} while (0)

/* TOC JSON straight into the parser, with the payload ending at toc_offset: for layouts
 * whose members are longer than a test blob can afford to be. */
static inline int parse(const char *entries, uint64_t toc_offset, const struct sg_esgz_options *o,
			struct sg_error *err)
{
	struct esgz_buf j = { 0 };
	struct sg_toc *toc = NULL;

	esgz_buf_printf(&j, "{\"version\":1,\"entries\":[%s]}", entries);
	int r = sg_toc_parse_json(j.p, j.len, toc_offset, o, &toc, err);
	CHECK_EQ(r == 0, toc != NULL);
	sg_toc_free(toc);
	free(j.p);
	return r;
}

#define CHECK_REFUSED(r, err, want_code, name) \
	do { \
		if ((r) >= 0 || (err).code != (want_code) || !strstr((err).msg, "\"" name "\"")) \
			TEST_FAIL("expected %s naming \"%s\", got r=%d code=%s msg=%s", \
				  sg_esgz_code_name(want_code), name, (r), \
				  sg_esgz_code_name((err).code), (err).msg); \
	} while (0)

/* A hand-written layer (see hostile()) refused with want_code, the message naming the
 * entry. */
#define CHECK_HOSTILE_NAMING(entries, want_code, name) \
	do { \
		struct sg_error en_; \
		int rn_ = hostile(entries, &en_); \
		CHECK_REFUSED(rn_, en_, want_code, name); \
	} while (0)

#endif
