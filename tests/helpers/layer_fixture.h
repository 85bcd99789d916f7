/* Fixtures shared by the layer tests (header-only, static): tests/unit/fs/test_layer.c (the
 * layer API without a mount), test_lazyfs.c (through a FUSE mount) and test_cache_bound.c.
 *
 *  - struct test_op: an op whose callback counts its calls and keeps op->res, to check that
 *    a continuation completes exactly once and with what;
 *  - opening a layer with a user, closing the user, closing and freeing the layer, reading
 *    through the layer, waiting
 *    for background fetch to make the layer local, each running the loop;
 *  - the "big" blob: one entry of every kind plus data/big.bin, 3 MiB + 777 bytes in 1 MiB
 *    chunks, and a way to damage one of its chunks in the blob;
 *  - a scratch directory removed at exit. */
#ifndef STARGZD_TESTS_LAYER_FIXTURE_H
#define STARGZD_TESTS_LAYER_FIXTURE_H

#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "fs/estargz.h"
#include "fs/layer.h"
#include "tests/helpers/blob_toc.h"
#include "tests/helpers/esgz_build.h"
#include "tests/unit/test.h"

#define TEST_BIG_SIZE (3 * 1024 * 1024 + 777)
#define TEST_BIG_CHUNK (1024 * 1024)

struct test_op {
	struct sg_op op;
	int calls;
	int32_t res;
};

static inline void test_op_init(struct test_op *t)
{
	*t = (struct test_op){ .calls = 0 };
	sg_op_init(&t->op);
}

static inline void test_op_cb(struct sg_op *op)
{
	struct test_op *t = sg_container_of(op, struct test_op, op);

	t->calls++;
	t->res = op->res;
}

/* Runs the loop until t's callback ran; fails after ms. */
static inline void test_op_wait(struct sg_loop *loop, struct test_op *t, int ms)
{
	double end = test_now_ms() + ms;

	while (!t->calls) {
		if (test_now_ms() > end)
			TEST_FAIL("no callback after %d ms", ms);
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	}
}

/* A layer over src (the blob file at path's bytes: a gate over them, say), its TOC loaded
 * from that file synchronously, with cfg, and one user of it; not started (a test may give
 * it a profile first). */
static inline void test_layer_new_over(struct sg_loop *loop, struct sg_range_source *src,
				       const char *path, const struct sg_digest *toc_digest,
				       const struct sg_layer_config *cfg,
				       struct sg_layer **ret_layer, struct sg_layer_user **ret_user)
{
	CHECK_EQ(sg_layer_new(loop, src, test_load_toc_file(path, toc_digest), cfg, ret_layer), 0);
	CHECK_EQ(sg_layer_user_new(*ret_layer, ret_user), 0);
}

/* A layer over the blob file at path (its TOC loaded synchronously) with cfg, one user of
 * it, started. */
static inline void test_layer_open(struct sg_loop *loop, const char *path,
				   const struct sg_digest *toc_digest,
				   const struct sg_layer_config *cfg, struct sg_layer **ret_layer,
				   struct sg_layer_user **ret_user)
{
	struct sg_range_source *src;

	CHECK_EQ(sg_range_source_file_open(loop, path, &src), 0);
	test_layer_new_over(loop, src, path, toc_digest, cfg, ret_layer, ret_user);
	sg_layer_start(*ret_layer);
}

/* Runs the loop for ms. */
static inline void test_run_for(struct sg_loop *loop, int ms)
{
	double end = test_now_ms() + ms;
	while (test_now_ms() < end)
		CHECK(sg_loop_run_once(loop, 5) >= 0);
}

/* Reads through the layer and waits; returns the result (byte count or -errno). */
static inline int32_t test_layer_read(struct sg_loop *loop, struct sg_layer_user *u,
				      uint32_t reader, uint32_t node, uint64_t off, void *buf,
				      size_t len)
{
	struct test_op t;

	test_op_init(&t);
	CHECK_EQ(sg_layer_read(u, reader, node, off, len, buf, &t.op, test_op_cb), 0);
	test_op_wait(loop, &t, 10000);
	CHECK_EQ(t.calls, 1);
	return t.res;
}

static inline void test_layer_user_close(struct sg_loop *loop, struct sg_layer_user *u)
{
	struct test_op t;

	test_op_init(&t);
	CHECK_EQ(sg_layer_user_close(u, &t.op, test_op_cb), 0);
	test_op_wait(loop, &t, 10000);
	CHECK_EQ(t.res, 0);
}

/* Closes the layer, waits for the close, and frees it. */
static inline void test_layer_close(struct sg_loop *loop, struct sg_layer *l)
{
	struct test_op t;

	test_op_init(&t);
	CHECK_EQ(sg_layer_close(l, &t.op, test_op_cb), 0);
	test_op_wait(loop, &t, 10000);
	CHECK_EQ(t.res, 0);
	sg_layer_free(l);
}

/* Closes the user and the layer, drains the loop and frees it: a test's layer goes. */
static inline void test_layer_teardown(struct sg_loop *loop, struct sg_layer_user *u,
				       struct sg_layer *l)
{
	test_layer_user_close(loop, u);
	test_layer_close(loop, l);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

/* Pseudo-random bytes from seed: members as large compressed as plain. */
static inline void test_fill_seeded(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* Runs the loop until background fetch has finished and every chunk's cache write has
 * landed (the last batch's writes may still be in flight when it reports done). */
static inline void test_wait_layer_local(struct sg_loop *loop, struct sg_layer *l,
					 struct sg_layer_stats *st)
{
	double end = test_now_ms() + 10000;
	do {
		CHECK(sg_loop_run_once(loop, 20) >= 0);
		sg_layer_stats(l, st);
		if (test_now_ms() > end)
			TEST_FAIL("the layer never became local: background fetch %s, %llu/%llu chunks",
				  st->background_done ? "done" : "running",
				  (unsigned long long)st->chunks_present,
				  (unsigned long long)st->chunks_total);
	} while (!st->background_done || st->chunks_present < st->chunks_total);
}

static inline int test_rm_one(const char *p, const struct stat *st, int t, struct FTW *f)
{
	(void)st;
	(void)f;
	return (t == FTW_DP) ? rmdir(p) : unlink(p);
}

static inline void test_rm_tree(const char *dir)
{
	nftw(dir, test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Finishes the blob (its TOC digest into toc_digest) and writes it to path. */
static inline void test_write_blob(struct esgz_b *b, const char *path, struct sg_digest *toc_digest)
{
	esgz_finish(b, 0, toc_digest);
	FILE *f = fopen(path, "w");
	CHECK(f && fwrite(b->blob.p, 1, b->blob.len, f) == b->blob.len);
	fclose(f);
	esgz_done(b);
}

/* The big blob at path: every kind of entry the FUSE layer must show, and big.bin's bytes
 * (filled in here) in 1 MiB chunks.  With a landmark, a small prioritized file first. */
static inline void test_write_big_blob(const char *path, uint8_t big[TEST_BIG_SIZE],
				       bool prefetch_landmark, struct sg_digest *toc_digest)
{
	struct esgz_b b;

	for (size_t i = 0; i < TEST_BIG_SIZE; i++)
		big[i] = (uint8_t)(i * 131 + (i >> 12));
	esgz_init(&b, 6);
	if (prefetch_landmark) {
		/* Prioritized: a small file, then the landmark. */
		esgz_add(&b, "hot.txt", '0', 0644, "hot data\n", 9, NULL, 0, NULL);
		esgz_add(&b, ".prefetch.landmark", '0', 0644, "\x0f", 1, NULL, 0, NULL);
	}
	esgz_add(&b, "bin", '5', 0755, NULL, 0, NULL, 0, NULL);
	esgz_add(&b, "bin/tool", '0', 04755, "#!/bin/sh\necho tool\n", 20, NULL, 0,
		 ",\"uid\":0,\"gid\":0");
	esgz_add(&b, "data", '5', 0750, NULL, 0, NULL, 0, ",\"uid\":1000,\"gid\":1001");
	esgz_add(&b, "data/big.bin", '0', 0600, big, TEST_BIG_SIZE, NULL, TEST_BIG_CHUNK,
		 ",\"uid\":1000,\"gid\":1001");
	esgz_add(&b, "data/empty", '0', 0644, "", 0, NULL, 0, NULL);
	esgz_add(&b, "data/hard", '1', 0600, NULL, 0, "data/big.bin", 0, NULL);
	esgz_add(&b, "data/link", '2', 0777, NULL, 0, "big.bin", 0, NULL);
	esgz_add(&b, "data/x.txt", '0', 0644, "xattr file\n", 11, NULL, 0,
		 ",\"xattrs\":{\"user.color\":\"Ymx1ZQ==\"}");
	esgz_add(&b, "dev", '5', 0755, NULL, 0, NULL, 0, NULL);
	esgz_add(&b, "dev/null", '3', 0666, NULL, 0, NULL, 0, ",\"devMajor\":1,\"devMinor\":3");
	esgz_add(&b, "dev/pipe", '6', 0600, NULL, 0, NULL, 0, NULL);
	esgz_add(&b, "etc", '5', 0755, NULL, 0, NULL, 0, NULL);
	esgz_add(&b, "etc/.wh.removed", '0', 0644, "", 0, NULL, 0, NULL);
	esgz_add(&b, "opq", '5', 0755, NULL, 0, NULL, 0, NULL);
	esgz_add(&b, "opq/.wh..wh..opq", '0', 0644, "", 0, NULL, 0, NULL);
	esgz_add(&b, "opq/kept", '0', 0644, "kept\n", 5, NULL, 0, NULL);
	esgz_add(&b, "implied/deep/file", '0', 0644, "deep\n", 5, NULL, 0, NULL);
	test_write_blob(&b, path, toc_digest);
}

/* Writes 16 bytes (`put`) in the middle of the compressed member of big.bin's chunk `index`
 * in the blob at path and returns the bytes that were there in `old`. */
static inline void test_poke_big_chunk(const char *path, const struct sg_digest *toc_digest,
				       unsigned index, const uint8_t put[16], uint8_t old[16])
{
	struct sg_toc *toc = test_load_toc_file(path, toc_digest);
	FILE *f = fopen(path, "r+");
	CHECK(f);
	const struct sg_toc_node *n = sg_toc_node(toc, sg_toc_lookup_path(toc, "data/big.bin"));
	const struct sg_toc_chunk *c = &sg_toc_chunks(toc, n)[index];
	uint64_t mid = c->offset + (c->next_offset - c->offset) / 2;
	fseek(f, (long)mid, SEEK_SET);
	CHECK_EQ(fread(old, 1, 16, f), 16u);
	fseek(f, (long)mid, SEEK_SET);
	CHECK_EQ(fwrite(put, 1, 16, f), 16u);
	fclose(f);
	sg_toc_free(toc);
}

/* Flips bytes inside the compressed member of big.bin's chunk `index`: either the deflate
 * stream or the chunk digest must reject it. */
static inline void test_corrupt_big_chunk(const char *path, const struct sg_digest *toc_digest,
					  unsigned index)
{
	uint8_t junk[16], old[16];

	memset(junk, 0x5a, sizeof(junk));
	test_poke_big_chunk(path, toc_digest, index, junk, old);
}

#endif
