/* fs/toc.c: the index and its queries.  Small indexes are built through the building calls
 * of fs/toc.h, so every query meets a known layout; a realistic one comes from a generated
 * blob (tests/helpers/esgz_build.h) and is walked the way the FUSE layer walks it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs/big_alloc.h"
#include "fs/tar.h"
#include "fs/toc.h"
#include "tests/helpers/toc_hostile.h"
#include "tests/unit/test.h"

static struct sg_toc *new_toc(uint64_t toc_offset, uint32_t est)
{
	struct sg_toc *t = NULL;

	CHECK_EQ(sg_toc_new(toc_offset, est, &t), 0);
	CHECK(t != NULL);
	return t;
}

/* A node of the given type under dir (no other attributes). */
static uint32_t add(struct sg_toc *t, uint32_t dir, const char *name, int type)
{
	uint32_t id = SG_TOC_NONE;

	CHECK_EQ(sg_toc_add_node(t, dir, name, strlen(name), &id), 0);
	sg_toc_node_mut(t, id)->type = (uint8_t)type;
	return id;
}

static void digest_of(const char *s, struct sg_digest *d)
{
	sg_sha256(s, strlen(s), d);
}

struct lookup_case {
	const char *path;
	uint32_t want;
};

static void check_lookups(const struct sg_toc *t, const struct lookup_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (sg_toc_lookup_path(t, cases[i].path) != cases[i].want)
			TEST_FAIL("lookup of \"%s\": %u, want %u", cases[i].path,
				  sg_toc_lookup_path(t, cases[i].path), cases[i].want);
}

TEST(new_index_is_an_implied_root)
{
	struct sg_toc *t = new_toc(12345, 16);
	const struct sg_toc_node *root = sg_toc_node(t, SG_TOC_ROOT);
	char path[8];

	CHECK_EQ(sg_toc_count(t), 1);
	CHECK_EQ(root->type, SG_TOC_DIR);
	CHECK_EQ(root->flags, SG_TOC_F_IMPLIED);
	CHECK_EQ(root->mode, 0755);
	CHECK_EQ(root->nlink, 2);
	CHECK_EQ(root->parent, SG_TOC_ROOT);   /* the root is its own parent */
	CHECK_EQ(root->first_child, SG_TOC_NONE);
	CHECK_EQ(sg_toc_offset(t), 12345);
	CHECK_EQ(sg_toc_self(t), SG_TOC_NONE);
	CHECK(!sg_toc_verified(t));
	CHECK(!sg_toc_has_prefetch(t, NULL));
	CHECK(!sg_toc_has_no_prefetch_landmark(t));
	CHECK_EQ(sg_toc_path(t, SG_TOC_ROOT, path, sizeof(path)), 0);
	CHECK_STR(path, "");
	const struct lookup_case cases[] = {
		{ "", SG_TOC_ROOT }, { "./", SG_TOC_ROOT }, { "/", SG_TOC_ROOT }, { "x", SG_TOC_NONE },
	};
	check_lookups(t, cases, sizeof(cases) / sizeof(cases[0]));
	sg_toc_free(t);
}

/* The (parent, name) hash: the same name under many parents, names of every length (the
 * hash takes 8 bytes a step), growth past the first sizing and the rebuild at seal. */
TEST(lookups_through_the_hash)
{
	struct sg_toc *t = new_toc(1 << 20, 16);
	enum { NDIRS = 3000 };
	static uint32_t dirs[NDIRS], xs[NDIRS];
	char name[300];

	for (int i = 0; i < NDIRS; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		dirs[i] = add(t, SG_TOC_ROOT, name, SG_TOC_DIR);
		xs[i] = add(t, dirs[i], "x", SG_TOC_REG);
	}
	uint32_t longs[256];
	for (int len = 1; len <= 255; len++) {
		memset(name, 'a' + len % 26, (size_t)len);
		name[len] = 0;
		longs[len] = add(t, dirs[7], name, SG_TOC_FIFO);
	}
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < NDIRS; i++) {
			snprintf(name, sizeof(name), "d%d", i);
			CHECK_EQ(sg_toc_lookup(t, SG_TOC_ROOT, name, strlen(name)), dirs[i]);
			CHECK_EQ(sg_toc_lookup(t, dirs[i], "x", 1), xs[i]);
			CHECK_EQ(sg_toc_lookup(t, dirs[i], "y", 1), SG_TOC_NONE);
		}
		for (int len = 1; len <= 255; len++) {
			memset(name, 'a' + len % 26, (size_t)len);
			CHECK_EQ(sg_toc_lookup(t, dirs[7], name, (size_t)len), longs[len]);
			CHECK_EQ(sg_toc_lookup(t, dirs[8], name, (size_t)len), SG_TOC_NONE);
		}
		/* A name is its bytes up to len, not a C string. */
		CHECK_EQ(sg_toc_lookup(t, SG_TOC_ROOT, "d12xyz", 3), dirs[12]);
		CHECK_EQ(sg_toc_lookup(t, SG_TOC_ROOT, "d1", 1), SG_TOC_NONE);
		/* The root has no name to look up; bad directories find nothing. */
		CHECK_EQ(sg_toc_lookup(t, SG_TOC_ROOT, "", 0), SG_TOC_NONE);
		CHECK_EQ(sg_toc_lookup(t, sg_toc_count(t), "x", 1), SG_TOC_NONE);
		sg_toc_seal(t);   /* the second pass runs on the rebuilt hash */
	}
	CHECK_EQ(sg_toc_count(t), 1 + 2 * NDIRS + 255);
	sg_toc_free(t);
}

TEST(children_come_in_the_order_they_were_added)
{
	struct sg_toc *t = new_toc(100, 16);
	uint32_t a = add(t, SG_TOC_ROOT, "a", SG_TOC_DIR);
	uint32_t b = add(t, SG_TOC_ROOT, "b", SG_TOC_REG);
	uint32_t c = add(t, SG_TOC_ROOT, "c", SG_TOC_REG);
	uint32_t a1 = add(t, a, "1", SG_TOC_REG);
	uint32_t a2 = add(t, a, "2", SG_TOC_REG);
	uint32_t want_root[] = { a, b, c }, want_a[] = { a1, a2 };
	int k = 0;

	sg_toc_seal(t);
	for (uint32_t n = sg_toc_node(t, SG_TOC_ROOT)->first_child; n != SG_TOC_NONE;
	     n = sg_toc_node(t, n)->next_sibling) {
		CHECK(k < 3);
		CHECK_EQ(n, want_root[k++]);
		CHECK_EQ(sg_toc_node(t, n)->parent, SG_TOC_ROOT);
	}
	CHECK_EQ(k, 3);
	k = 0;
	for (uint32_t n = sg_toc_node(t, a)->first_child; n != SG_TOC_NONE;
	     n = sg_toc_node(t, n)->next_sibling) {
		CHECK(k < 2);
		CHECK_EQ(n, want_a[k++]);
	}
	CHECK_EQ(k, 2);
	CHECK_EQ(sg_toc_node(t, b)->first_child, SG_TOC_NONE);
	sg_toc_free(t);
}

TEST(paths_both_ways)
{
	struct sg_toc *t = new_toc(100, 16);
	uint32_t a = add(t, SG_TOC_ROOT, "a", SG_TOC_DIR);
	uint32_t b = add(t, a, "bb", SG_TOC_DIR);
	uint32_t c = add(t, b, "ccc", SG_TOC_REG);
	char path[16];

	sg_toc_seal(t);
	CHECK_EQ(sg_toc_path(t, c, path, sizeof(path)), 8);
	CHECK_STR(path, "a/bb/ccc");
	CHECK_EQ(sg_toc_path(t, c, path, 9), 8);        /* exactly room for it and the NUL */
	CHECK_EQ(sg_toc_path(t, c, path, 8), -ENAMETOOLONG);
	CHECK_EQ(sg_toc_path(t, c, path, 0), -EINVAL);
	CHECK_EQ(sg_toc_path(t, sg_toc_count(t), path, sizeof(path)), -EINVAL);
	CHECK_EQ(sg_toc_path(t, a, path, sizeof(path)), 1);
	CHECK_STR(path, "a");

	const struct lookup_case cases[] = {
		{ "a/bb/ccc", c }, { "./a/bb/ccc", c }, { "/a/bb/ccc", c }, { "a//bb/./ccc/", c },
		{ "a/bb", b }, { "a/bb/cc", SG_TOC_NONE }, { "a/bb/ccc/d", SG_TOC_NONE },
		{ "bb", SG_TOC_NONE },
	};
	check_lookups(t, cases, sizeof(cases) / sizeof(cases[0]));
	sg_toc_free(t);
}

/* Chunks of a file are consecutive; members end where the next begins; a file digest equal
 * to its only chunk's is kept once. */
TEST(chunks_and_file_digests)
{
	struct sg_toc *t = new_toc(1000, 16);
	uint32_t one = add(t, SG_TOC_ROOT, "one", SG_TOC_REG);
	uint32_t two = add(t, SG_TOC_ROOT, "two", SG_TOC_REG);
	uint32_t other = add(t, SG_TOC_ROOT, "other", SG_TOC_REG);
	uint32_t dir = add(t, SG_TOC_ROOT, "dir", SG_TOC_DIR);
	struct sg_digest x, y;
	struct sg_toc_chunk c = { .next_offset = 1000, .has_digest = true };

	digest_of("x", &x);
	digest_of("y", &y);
	/* As the builder does: a member's end is known when the next one starts. */
	c.offset = 10, c.size = 5, c.digest = x;
	CHECK_EQ(sg_toc_add_chunk(t, one, &c), 0);
	CHECK_EQ(sg_toc_end_members(t, 0, 20), 1);
	c.offset = 20, c.size = 4, c.digest = y;
	CHECK_EQ(sg_toc_add_chunk(t, two, &c), 0);
	CHECK_EQ(sg_toc_end_members(t, 1, 30), 2);
	c.offset = 30, c.file_offset = 4, c.size = 4, c.has_digest = false;
	CHECK_EQ(sg_toc_add_chunk(t, two, &c), 0);
	CHECK_EQ(sg_toc_end_members(t, 2, 40), 3);
	c.offset = 40, c.file_offset = 0, c.size = 1, c.digest = y, c.has_digest = true;
	CHECK_EQ(sg_toc_add_chunk(t, other, &c), 0);
	CHECK_EQ(sg_toc_end_members(t, 4, 50), 4);   /* nothing pending: nothing moves */
	const struct sg_toc_chunk *cs = sg_toc_chunks(t, sg_toc_node(t, two));
	CHECK_EQ(sg_toc_node(t, two)->nchunks, 2);
	CHECK_EQ(cs[0].offset, 20);
	CHECK_EQ(cs[0].next_offset, 30);
	CHECK_EQ(cs[1].offset, 30);
	CHECK_EQ(cs[1].next_offset, 40);
	CHECK_EQ(cs[1].file_offset, 4);
	CHECK(!cs[1].has_digest);
	CHECK_EQ(sg_toc_chunks(t, sg_toc_node(t, one))->size, 5);
	CHECK_EQ(sg_toc_chunks(t, sg_toc_node(t, one))->next_offset, 20);
	CHECK(sg_toc_chunks(t, sg_toc_node(t, dir)) == NULL);

	/* Same digest as its only chunk: shared; another one, or several chunks: kept. */
	CHECK(sg_toc_file_digest(t, sg_toc_node(t, one)) == NULL);
	CHECK_EQ(sg_toc_set_file_digest(t, one, &x), 0);
	CHECK(sg_toc_file_digest(t, sg_toc_node(t, one)) ==
	      &sg_toc_chunks(t, sg_toc_node(t, one))->digest);
	CHECK_EQ(sg_toc_set_file_digest(t, other, &x), 0);
	CHECK(sg_digest_equal(sg_toc_file_digest(t, sg_toc_node(t, other)), &x));
	CHECK(sg_toc_file_digest(t, sg_toc_node(t, other)) !=
	      &sg_toc_chunks(t, sg_toc_node(t, other))->digest);
	CHECK_EQ(sg_toc_set_file_digest(t, two, &y), 0);
	CHECK(sg_digest_equal(sg_toc_file_digest(t, sg_toc_node(t, two)), &y));
	CHECK(sg_toc_file_digest(t, sg_toc_node(t, two)) != &cs[0].digest);
	/* Sealing keeps all of it. */
	sg_toc_seal(t);
	CHECK(sg_digest_equal(sg_toc_file_digest(t, sg_toc_node(t, one)), &x));
	CHECK(sg_digest_equal(sg_toc_file_digest(t, sg_toc_node(t, other)), &x));
	CHECK_EQ(sg_toc_chunks(t, sg_toc_node(t, other))->next_offset, 1000);
	sg_toc_free(t);
}

TEST(hardlinks_resolve_to_their_target)
{
	struct sg_toc *t = new_toc(100, 16);
	uint32_t f = add(t, SG_TOC_ROOT, "f", SG_TOC_REG);
	uint32_t h = add(t, SG_TOC_ROOT, "h", SG_TOC_HARDLINK);
	uint32_t bad = add(t, SG_TOC_ROOT, "bad", SG_TOC_HARDLINK);

	sg_toc_node_mut(t, h)->link = f;
	sg_toc_node_mut(t, bad)->link = 999;
	sg_toc_seal(t);
	CHECK(sg_toc_resolve(t, sg_toc_node(t, h)) == sg_toc_node(t, f));
	CHECK(sg_toc_resolve(t, sg_toc_node(t, f)) == sg_toc_node(t, f));
	/* A target out of range is not followed. */
	CHECK(sg_toc_resolve(t, sg_toc_node(t, bad)) == sg_toc_node(t, bad));
	CHECK(sg_toc_resolve(t, NULL) == NULL);
	sg_toc_free(t);
}

static size_t xattr_record(uint8_t *p, const char *name, const void *value, uint32_t vlen)
{
	uint16_t nl = (uint16_t)(strlen(name) + 1);

	memcpy(p, &nl, 2);
	memcpy(p + 2, &vlen, 4);
	memcpy(p + 6, name, nl);
	memcpy(p + 6 + nl, value, vlen);
	return 6 + nl + vlen;
}

TEST(xattrs_and_strings)
{
	struct sg_toc *t = new_toc(100, 16);
	uint32_t a = add(t, SG_TOC_ROOT, "a", SG_TOC_REG);
	uint32_t b = add(t, SG_TOC_ROOT, "b", SG_TOC_REG);
	uint32_t c = add(t, SG_TOC_ROOT, "c", SG_TOC_REG);
	uint8_t rec[128];
	size_t n = xattr_record(rec, "user.one", "1", 1);
	n += xattr_record(rec + n, "security.capability", "\0\1\2", 3);
	const char *xn;
	const void *xv;
	size_t xl;

	CHECK_EQ(sg_toc_set_xattrs(t, a, 2, rec, n), 0);
	n = xattr_record(rec, "user.b", "", 0);
	CHECK_EQ(sg_toc_set_xattrs(t, c, 1, rec, n), 0);
	sg_toc_seal(t);
	CHECK(sg_toc_node(t, a)->xattrs != 0);
	CHECK_EQ(sg_toc_xattr(t, sg_toc_node(t, a), 0, &xn, &xv, &xl), 0);
	CHECK_STR(xn, "user.one");
	CHECK_EQ(xl, 1);
	CHECK_MEM(xv, "1", 1);
	CHECK_EQ(sg_toc_xattr(t, sg_toc_node(t, a), 1, &xn, &xv, &xl), 0);
	CHECK_STR(xn, "security.capability");
	CHECK_EQ(xl, 3);
	CHECK_MEM(xv, "\0\1\2", 3);
	CHECK_EQ(sg_toc_xattr(t, sg_toc_node(t, a), 2, &xn, &xv, &xl), -ENOENT);
	CHECK_EQ(sg_toc_xattr(t, sg_toc_node(t, a), 1, NULL, NULL, NULL), 0);
	CHECK_EQ(sg_toc_xattr(t, sg_toc_node(t, b), 0, &xn, &xv, &xl), -ENOENT);
	CHECK_EQ(sg_toc_xattr(t, sg_toc_node(t, c), 0, &xn, &xv, &xl), 0);
	CHECK_STR(xn, "user.b");
	CHECK_EQ(xl, 0);

	uint32_t off = 1;
	CHECK_EQ(sg_toc_add_str(t, "", 0, &off), 0);
	CHECK_EQ(off, 0);
	CHECK_STR(sg_toc_str(t, 0), "");
	CHECK_EQ(sg_toc_add_str(t, "hello there", 5, &off), 0);
	CHECK_STR(sg_toc_str(t, off), "hello");   /* copied and NUL-terminated */
	CHECK_STR(sg_toc_str(t, sg_toc_node(t, b)->name), "b");
	CHECK_STR(sg_toc_str(t, UINT32_MAX), "");
	sg_toc_free(t);
}

/* stargz.index.json from the TOC member's tar header, and what the loader leaves with it. */
TEST(self_node_json_and_digest)
{
	struct sg_toc *t = new_toc(100, 16);
	uint32_t a = add(t, SG_TOC_ROOT, "a", SG_TOC_REG);
	struct sg_tar_entry h = { .mode = 0100640, .uid = 7, .gid = 8, .mtime_sec = 1700000000,
				  .mtime_nsec = 5, .uname = "u", .gname = "g" };
	struct sg_digest d;

	sg_toc_seal(t);
	uint32_t count = sg_toc_count(t);
	h.uid = -1;
	CHECK_EQ(sg_toc_add_self(t, &h, 10), -EOVERFLOW);
	h.uid = 1ll << 32;
	CHECK_EQ(sg_toc_add_self(t, &h, 10), -EOVERFLOW);
	CHECK_EQ(sg_toc_count(t), count);
	h.uid = 7;
	CHECK_EQ(sg_toc_add_self(t, &h, 42), 0);
	CHECK_EQ(sg_toc_add_self(t, &h, 42), -EEXIST);
	uint32_t self = sg_toc_self(t);
	CHECK_EQ(self, count);
	CHECK_EQ(sg_toc_lookup_path(t, SG_ESGZ_TOC_NAME), self);
	/* As tar -x would create it from h: a regular file of the JSON's size, no chunks. */
	const struct sg_toc_node *n = sg_toc_node(t, self);
	CHECK(n->type == SG_TOC_REG && n->flags == SG_TOC_F_SELF && n->nchunks == 0);
	CHECK(n->size == 42 && n->mode == 0640 && n->uid == 7 && n->gid == 8);
	CHECK(n->mtime_sec == 1700000000 && n->mtime_nsec == 5);
	CHECK(!strcmp(sg_toc_str(t, n->user), "u") && !strcmp(sg_toc_str(t, n->group), "g"));
	CHECK_EQ(sg_toc_node(t, a)->next_sibling, self);   /* the root's last child */

	const void *json;
	size_t len;
	CHECK(!sg_toc_json(t, &json, &len));
	uint8_t *buf = sg_big_realloc(NULL, 0, 64);
	CHECK(buf != NULL);
	memcpy(buf, "hdr{\"entries\":[]}", 17);
	sg_toc_keep_json(t, buf, 64, buf + 3, 14);
	CHECK(sg_toc_json(t, &json, &len));
	CHECK_EQ(len, 14);
	CHECK_MEM(json, "{\"entries\":[]}", 14);
	sg_toc_drop_json(t);
	CHECK(!sg_toc_json(t, &json, &len));
	sg_toc_drop_json(t);   /* twice is fine */

	digest_of("toc", &d);
	sg_toc_set_digest(t, &d, true);
	CHECK(sg_toc_verified(t));
	CHECK(sg_digest_equal(sg_toc_digest(t), &d));
	sg_toc_set_prefetch(t, 4096);
	sg_toc_set_no_prefetch(t);
	uint64_t end = 0;
	CHECK(sg_toc_has_prefetch(t, &end));
	CHECK_EQ(end, 4096);
	CHECK(sg_toc_has_prefetch(t, NULL));
	CHECK(sg_toc_has_no_prefetch_landmark(t));
	sg_toc_free(t);   /* frees a kept JSON too (ASan) */
}

TEST(queries_take_null_and_bad_ids)
{
	const void *json;
	size_t len, idx = 1, names = 1;
	char path[8];

	CHECK_EQ(sg_toc_count(NULL), 0);
	CHECK(sg_toc_node(NULL, 0) == NULL);
	CHECK_STR(sg_toc_str(NULL, 0), "");
	CHECK(sg_toc_chunks(NULL, NULL) == NULL);
	CHECK(sg_toc_file_digest(NULL, NULL) == NULL);
	CHECK_EQ(sg_toc_lookup(NULL, 0, "a", 1), SG_TOC_NONE);
	CHECK_EQ(sg_toc_lookup_path(NULL, "a"), SG_TOC_NONE);
	CHECK_EQ(sg_toc_path(NULL, 0, path, sizeof(path)), -EINVAL);
	CHECK_EQ(sg_toc_xattr(NULL, NULL, 0, NULL, NULL, NULL), -ENOENT);
	CHECK(!sg_toc_has_prefetch(NULL, NULL));
	CHECK(!sg_toc_has_no_prefetch_landmark(NULL));
	CHECK(!sg_toc_verified(NULL));
	CHECK(sg_toc_digest(NULL) == NULL);
	CHECK_EQ(sg_toc_offset(NULL), 0);
	CHECK_EQ(sg_toc_self(NULL), SG_TOC_NONE);
	CHECK(!sg_toc_json(NULL, &json, &len));
	sg_toc_memory(NULL, &idx, &names);
	CHECK_EQ(idx, 0);
	CHECK_EQ(names, 0);
	sg_toc_drop_json(NULL);
	sg_toc_free(NULL);

	struct sg_toc *t = new_toc(100, 16);
	CHECK(sg_toc_node(t, 1) == NULL);
	CHECK_EQ(sg_toc_lookup_path(t, NULL), SG_TOC_NONE);
	sg_toc_free(t);
}

/* The index accounts for its arrays and names, and gives the sizing guess back at seal. */
TEST(memory_accounting)
{
	struct sg_toc *t = new_toc(100, 200000);
	size_t idx0, names0, idx1, names1, idx2, names2;
	char name[48];

	sg_toc_memory(t, &idx0, &names0);
	CHECK(idx0 > 200000 * sizeof(struct sg_toc_node));   /* sized for the guess */
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "file-with-a-long-name-%d", i);
		add(t, SG_TOC_ROOT, name, SG_TOC_REG);
	}
	sg_toc_memory(t, &idx1, &names1);
	CHECK(names1 > names0);
	CHECK(names1 >= 5000 * 23);
	sg_toc_seal(t);
	sg_toc_memory(t, &idx2, &names2);
	CHECK(idx2 < idx1);   /* an array never touched (the chunks here) keeps its mapping */
	CHECK(idx2 >= 5001 * sizeof(struct sg_toc_node));
	CHECK(names2 <= names1);
	CHECK(names2 >= 5000 * 23);
	sg_toc_free(t);
}

/* A generated node_modules layer, walked like the FUSE layer does: every node is found
 * under its own path, every child names its parent, every file's chunks tile it. */
TEST(realistic_layer_walk)
{
	struct esgz_b b;
	struct sg_toc *toc = NULL;
	struct sg_error err;
	char path[4096];

	esgz_init(&b, 1);
	esgz_gen_node_modules(&b, 3000, 11);
	esgz_finish(&b, 0, NULL);
	if (load(&b, &(const struct sg_esgz_options){ .skip_verify = true }, &toc, &err) < 0)
		TEST_FAIL("load: %s", err.msg);
	uint32_t n = sg_toc_count(toc), files = 0;
	CHECK(n > 3000);
	for (uint32_t id = 0; id < n; id++) {
		const struct sg_toc_node *node = sg_toc_node(toc, id);
		CHECK(sg_toc_path(toc, id, path, sizeof(path)) >= 0);
		CHECK_EQ(sg_toc_lookup_path(toc, path), id);
		const char *base = strrchr(path, '/');
		CHECK_STR(sg_toc_str(toc, node->name), base ? base + 1 : path);
		for (uint32_t c = node->first_child; c != SG_TOC_NONE;
		     c = sg_toc_node(toc, c)->next_sibling)
			CHECK_EQ(sg_toc_node(toc, c)->parent, id);
		if (node->type != SG_TOC_REG || (node->flags & SG_TOC_F_SELF))
			continue;
		files++;
		const struct sg_toc_chunk *c = sg_toc_chunks(toc, node);
		uint64_t covered = 0;
		for (uint32_t i = 0; c && i < node->nchunks; i++) {
			CHECK_EQ(c[i].file_offset, covered);
			CHECK(c[i].offset < c[i].next_offset);
			CHECK(c[i].next_offset <= sg_toc_offset(toc));
			covered += c[i].size;
		}
		CHECK_EQ(covered, node->size);
	}
	CHECK_EQ(files, 3000);
	CHECK_EQ(sg_toc_lookup_path(toc, SG_ESGZ_TOC_NAME), sg_toc_self(toc));
	sg_toc_free(toc);
	esgz_done(&b);
}

TEST_MAIN()
