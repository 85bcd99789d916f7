/* The TOC JSON parser and the compact index it builds (see estargz.h).
 *
 * yajl drives a small state machine; each entry's fields are collected into a scratch
 * record and committed to the index when its object closes, so the JSON never exists as a
 * tree.  The index is a few packed arrays: nodes, chunks, file digests, a string arena and
 * an open-addressing hash of (parent, name) -> node. */
#include "fs/estargz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "fs/gz.h"
#include "fs/big_alloc.h"
#include "fs/tar.h"

#define NAME_MAX_LEN 255
#define PATH_MAX_LEN 4096
/* node.digest: the file digest equals that of its only chunk (no copy kept). */
#define DIGEST_IS_CHUNK0 (UINT32_MAX - 1)

struct sg_toc {
	struct sg_toc_node *nodes;
	uint32_t nnodes, nodes_cap;
	struct sg_toc_chunk *chunks;
	uint32_t nchunks, chunks_cap;
	struct sg_digest *digests;
	uint32_t ndigests, digests_cap;
	char *strs;               /* offset 0 is "" */
	size_t strs_len, strs_cap;
	uint8_t *xattrs;          /* offset 0 means "none" */
	size_t xattrs_len, xattrs_cap;
	uint32_t *hash;           /* node id + 1, 0 = empty */
	uint32_t hash_mask;

	uint64_t toc_offset;
	uint64_t prefetch_end;
	bool has_prefetch, has_no_prefetch, verified;
	struct sg_digest toc_digest;
	uint32_t self;            /* the stargz.index.json node, SG_TOC_NONE = none */
	uint8_t *json_buf;        /* kept TOC member (sg_big mapping), NULL = none */
	size_t json_cap;
	const uint8_t *json;      /* the JSON inside json_buf */
	size_t json_len;
};

/* ---- errors ---- */

static const char *const code_names[_SG_ESGZ_CODE_MAX] = {
	[SG_ESGZ_OK] = "ok",
	[SG_ESGZ_E_IO] = "io",
	[SG_ESGZ_E_FOOTER] = "footer",
	[SG_ESGZ_E_UNSUPPORTED] = "unsupported",
	[SG_ESGZ_E_TOC_OFFSET] = "toc-offset",
	[SG_ESGZ_E_TOC_GZIP] = "toc-gzip",
	[SG_ESGZ_E_TOC_TOO_LARGE] = "toc-too-large",
	[SG_ESGZ_E_TOC_TAR] = "toc-tar",
	[SG_ESGZ_E_TOC_DIGEST] = "toc-digest",
	[SG_ESGZ_E_NO_TOC_DIGEST] = "no-toc-digest",
	[SG_ESGZ_E_JSON] = "json",
	[SG_ESGZ_E_SCHEMA] = "schema",
	[SG_ESGZ_E_NAME] = "name",
	[SG_ESGZ_E_DUPLICATE] = "duplicate",
	[SG_ESGZ_E_NOT_DIR] = "not-dir",
	[SG_ESGZ_E_HARDLINK] = "hardlink",
	[SG_ESGZ_E_CHUNK_RANGE] = "chunk-range",
	[SG_ESGZ_E_CHUNK_OVERLAP] = "chunk-overlap",
	[SG_ESGZ_E_OVERFLOW] = "overflow",
	[SG_ESGZ_E_NO_CHUNK_DIGEST] = "no-chunk-digest",
	[SG_ESGZ_E_LIMIT] = "limit",
	[SG_ESGZ_E_NOMEM] = "nomem",
	[SG_ESGZ_E_CHUNK_GZIP] = "chunk-gzip",
	[SG_ESGZ_E_CHUNK_DIGEST] = "chunk-digest",
	[SG_ESGZ_E_CANCELED] = "canceled",
	[SG_ESGZ_E_CHUNK_SIZE] = "chunk-size",
	[SG_ESGZ_E_CHUNK_RATIO] = "chunk-ratio",
};

const char *sg_esgz_code_name(int code)
{
	if (code < 0 || code >= _SG_ESGZ_CODE_MAX || !code_names[code])
		return "unknown";
	return code_names[code];
}

/* Shared with estargz.c through this declaration (not in the public header). */
int sg_esgz_fail(struct sg_esgz_error *err, int code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int sg_esgz_fail(struct sg_esgz_error *err, int code, int errnum, const char *fmt, ...)
{
	if (err && err->code == SG_ESGZ_OK) {
		va_list ap;

		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -errnum;
}

/* ---- growable arrays ---- */

/* The index's own arrays live in sg_big mappings (see fs/big_alloc.h). */
static int grow_big(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint64_t ncap = *cap ? (uint64_t)*cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	if (ncap > UINT32_MAX - 2)
		ncap = UINT32_MAX - 2;
	if (ncap < need)
		return -E2BIG;
	void *np = sg_big_realloc(*p, (size_t)*cap * elem, (size_t)ncap * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = (uint32_t)ncap;
	return 0;
}

static int grow_big_bytes(void **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 4096;
	while (ncap < need)
		ncap *= 2;
	void *np = sg_big_realloc(*p, *cap, ncap);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

static int grow_bytes(void **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 4096;
	while (ncap < need)
		ncap *= 2;
	void *np = realloc(*p, ncap);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

/* Appends a NUL-terminated string; offsets are 32-bit, so the arena stops at 4 GiB. */
static int toc_add_str(struct sg_toc *t, const char *s, size_t len, uint32_t *ret)
{
	if (len == 0) {
		*ret = 0;
		return 0;
	}
	if (t->strs_len + len + 1 > UINT32_MAX)
		return -E2BIG;
	int r = grow_big_bytes((void **)&t->strs, &t->strs_cap, t->strs_len + len + 1);
	if (r < 0)
		return r;
	memcpy(t->strs + t->strs_len, s, len);
	t->strs[t->strs_len + len] = 0;
	*ret = (uint32_t)t->strs_len;
	t->strs_len += len + 1;
	return 0;
}

/* ---- hash of (parent, name) ---- */

/* Eight bytes per step (a byte-wise FNV was a visible cost at 100k names); the final
 * multiply-xorshift spreads every input bit over the 32 bits used for slot and tag. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 32;
	return x;
}

static inline uint32_t name_hash(uint32_t parent, const char *s, size_t len)
{
	uint64_t h = ((uint64_t)parent + 1) * 0x9e3779b97f4a7c15ull ^ len;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	if (i < len) {
		uint64_t w = 0;
		memcpy(&w, s + i, len - i);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
	}
	return (uint32_t)mix64(h);
}

static inline bool node_is(const struct sg_toc *t, const struct sg_toc_node *n, uint32_t parent,
			   const char *s, size_t len)
{
	return n->parent == parent && n->name_len == len && memcmp(t->strs + n->name, s, len) == 0;
}

/* A slot holds node id + 1 in its low 24 bits and 8 bits of the hash above them, so a probe
 * that meets another name usually rejects it without touching that node: lookups are the
 * index build's main cache misses. */
#define SLOT_ID_BITS 24
#define SLOT_ID_MASK ((1u << SLOT_ID_BITS) - 1)
#define MAX_NODES (SLOT_ID_MASK - 1)

static inline uint32_t slot_of(uint32_t id, uint32_t h)
{
	return (id + 1) | (h >> SLOT_ID_BITS << SLOT_ID_BITS);
}

static void hash_put(struct sg_toc *t, uint32_t id)
{
	const struct sg_toc_node *n = &t->nodes[id];
	uint32_t h = name_hash(n->parent, t->strs + n->name, n->name_len);
	uint32_t i = h & t->hash_mask;

	while (t->hash[i])
		i = (i + 1) & t->hash_mask;
	t->hash[i] = slot_of(id, h);
}

static int hash_reserve(struct sg_toc *t, uint32_t count)
{
	uint64_t want = t->hash ? (uint64_t)t->hash_mask + 1 : 1024;

	if (t->hash && (uint64_t)count * 2 <= want)
		return 0;
	while ((uint64_t)count * 2 > want)
		want *= 2;
	if (want > ((uint64_t)1 << 31))
		return -E2BIG;
	uint32_t *nh = sg_big_realloc(NULL, 0, (size_t)want * sizeof(*nh));
	if (!nh)
		return -ENOMEM;
	if (t->hash)
		sg_big_free(t->hash, ((size_t)t->hash_mask + 1) * sizeof(*t->hash));
	t->hash = nh;
	t->hash_mask = (uint32_t)want - 1;
	for (uint32_t id = 1; id < t->nnodes; id++)   /* the root is never looked up by name */
		hash_put(t, id);
	return 0;
}

uint32_t sg_toc_lookup(const struct sg_toc *t, uint32_t dir, const char *name, size_t len)
{
	if (!t || !t->hash || dir >= t->nnodes)
		return SG_TOC_NONE;
	uint32_t h = name_hash(dir, name, len), tag = h >> SLOT_ID_BITS << SLOT_ID_BITS;
	uint32_t i = h & t->hash_mask;
	for (uint32_t v; (v = t->hash[i]); i = (i + 1) & t->hash_mask) {
		if ((v & ~SLOT_ID_MASK) != tag)
			continue;
		uint32_t id = (v & SLOT_ID_MASK) - 1;
		if (node_is(t, &t->nodes[id], dir, name, len))
			return id;
	}
	return SG_TOC_NONE;
}

uint32_t sg_toc_lookup_path(const struct sg_toc *t, const char *path)
{
	uint32_t cur = SG_TOC_ROOT;
	const char *p = path;

	if (!t || !path)
		return SG_TOC_NONE;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len && !(len == 1 && p[0] == '.')) {
			cur = sg_toc_lookup(t, cur, p, len);
			if (cur == SG_TOC_NONE)
				return SG_TOC_NONE;
		}
		p += len;
		if (*p == '/')
			p++;
	}
	return cur;
}

/* ---- the parser ---- */

enum field {
	F_NONE, F_NAME, F_TYPE, F_SIZE, F_MODTIME, F_LINKNAME, F_MODE, F_UID, F_GID, F_USERNAME,
	F_GROUPNAME, F_OFFSET, F_INNEROFFSET, F_DEVMAJOR, F_DEVMINOR, F_XATTRS, F_DIGEST,
	F_CHUNKOFFSET, F_CHUNKSIZE, F_CHUNKDIGEST,
};

enum entry_type { T_NONE, T_DIR, T_REG, T_SYMLINK, T_HARDLINK, T_CHAR, T_BLOCK, T_FIFO, T_CHUNK };

enum state {
	S_START, S_TOP, S_TOP_VAL, S_ENTRIES, S_ENTRY, S_ENTRY_VAL, S_XATTRS, S_XATTR_VAL, S_DONE,
};

struct sbuf {
	char *p;
	size_t len, cap;
};

static int sbuf_set(struct sbuf *b, const void *s, size_t len)
{
	int r = grow_bytes((void **)&b->p, &b->cap, len + 1);
	if (r < 0)
		return r;
	memcpy(b->p, s, len);
	b->p[len] = 0;
	b->len = len;
	return 0;
}

struct raw_entry {
	uint32_t present;         /* 1 << enum field */
	int type;
	uint64_t size, offset, inner, chunk_off, chunk_size, mode, uid, gid, dev_major, dev_minor;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	struct sg_digest digest, chunk_digest;
	struct sbuf name, link, user, group;
	struct sbuf xattrs;       /* records as in the index, without the count */
	uint32_t nxattrs;
};

struct parser {
	struct sg_toc *t;
	const struct sg_esgz_options *opts;
	struct sg_esgz_error *err;
	int rc;                   /* first error (negative errno) */

	enum state state;
	enum field field;         /* the key whose value comes next */
	unsigned skip;            /* depth inside an ignored value */
	bool seen_entries;
	uint32_t nentries;
	struct raw_entry e;
	struct sbuf xattr_name;

	struct sbuf norm, norm2;  /* normalized paths */
	struct sbuf cache_dir;    /* last parent dir path and its node */
	uint32_t cache_id;
	bool cache_valid;

	/* The regular file whose chunks are being read. */
	uint32_t file;            /* SG_TOC_NONE when none */
	uint64_t file_next;       /* next expected chunkOffset */
	bool file_has_digest;
	struct sg_digest file_digest;

	/* Member ordering: chunks [pending, nchunks) still need next_offset. */
	uint64_t last_offset, last_inner_end;
	uint32_t pending;

	/* Layers repeat modification times a lot; the last one parsed is kept. */
	char last_time[40];
	size_t last_time_len;
	int64_t last_sec;
	uint32_t last_nsec;
};

#define FAIL(p, code, errnum, ...) \
	((p)->rc = sg_esgz_fail((p)->err, (code), (errnum), __VA_ARGS__), 0)

static int nomem(struct parser *p)
{
	return FAIL(p, SG_ESGZ_E_NOMEM, ENOMEM, "out of memory building the TOC index");
}

/* Entry names are untrusted bytes: print them bounded and without control characters. */
static const char *printable(const char *s, size_t len, char buf[96])
{
	size_t n = 0;
	for (size_t i = 0; i < len && n < 90; i++)
		buf[n++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (len > 90)
		buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
	buf[n] = 0;
	return buf;
}

/* "dir/./x//y/" -> "dir/x/y"; absolute paths, ".." and overlong names are refused. */
static int normalize(struct parser *p, const char *s, size_t len, struct sbuf *out,
		     const char *what)
{
	char pb[96];
	size_t i = 0;

	if (grow_bytes((void **)&out->p, &out->cap, len + 1) < 0)
		return nomem(p);
	out->len = 0;
	if (len > PATH_MAX_LEN)
		return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s is longer than %d bytes", what, PATH_MAX_LEN);
	if (len && s[0] == '/')
		return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s \"%s\" is an absolute path", what,
			    printable(s, len, pb));
	while (i < len) {
		size_t j = i;
		while (j < len && s[j] != '/')
			j++;
		size_t cl = j - i;
		if (memchr(s + i, 0, cl))
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s contains a NUL byte", what);
		if (cl == 2 && s[i] == '.' && s[i + 1] == '.')
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s \"%s\" contains \"..\"", what,
				    printable(s, len, pb));
		if (cl > NAME_MAX_LEN)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s \"%s\" has a component longer than %d bytes",
				    what, printable(s, len, pb), NAME_MAX_LEN);
		if (cl && !(cl == 1 && s[i] == '.')) {
			if (out->len)
				out->p[out->len++] = '/';
			memcpy(out->p + out->len, s + i, cl);
			out->len += cl;
		}
		i = j + 1;
	}
	out->p[out->len] = 0;
	return 1;
}

static int new_node(struct parser *p, uint32_t parent, const char *name, size_t len,
		    uint32_t *ret_id)
{
	struct sg_toc *t = p->t;
	struct sg_toc_node *n;
	uint32_t id = t->nnodes, name_off;

	/* Implied directories count too: deep paths can create many per entry. */
	if (id >= MAX_NODES || id >= p->opts->max_entries + 4096u)
		return FAIL(p, SG_ESGZ_E_LIMIT, E2BIG, "TOC index has more than %u nodes",
			    id < MAX_NODES ? p->opts->max_entries + 4096u : MAX_NODES);
	if (grow_big((void **)&t->nodes, &t->nodes_cap, id + 1, sizeof(*t->nodes)) < 0 ||
	    hash_reserve(t, id + 1) < 0 || toc_add_str(t, name, len, &name_off) < 0)
		return nomem(p);
	n = &t->nodes[id];
	*n = (struct sg_toc_node){
		.parent = parent, .first_child = SG_TOC_NONE, .next_sibling = SG_TOC_NONE,
		.name = name_off, .name_len = (uint16_t)len, .link = SG_TOC_NONE,
		.first_chunk = SG_TOC_NONE, .digest = SG_TOC_NONE, .nlink = 1,
	};
	t->nnodes++;
	hash_put(t, id);
	/* Prepended here, put back in TOC order once at the end. */
	n->next_sibling = t->nodes[parent].first_child;
	t->nodes[parent].first_child = id;
	*ret_id = id;
	return 1;
}

static int implied_dir(struct parser *p, uint32_t parent, const char *name, size_t len,
		       uint32_t *ret_id)
{
	if (!new_node(p, parent, name, len, ret_id))
		return 0;
	struct sg_toc_node *n = &p->t->nodes[*ret_id];
	n->type = SG_TOC_DIR;
	n->flags = SG_TOC_F_IMPLIED;
	n->mode = 0755;
	n->nlink = 2;
	p->t->nodes[parent].nlink++;
	return 1;
}

/* A normalized path ("a/b/c") to its node, SG_TOC_NONE when missing. */
static uint32_t lookup_norm(const struct sg_toc *t, const char *path, size_t len)
{
	uint32_t cur = SG_TOC_ROOT;
	size_t i = 0;

	while (i < len && cur != SG_TOC_NONE) {
		size_t j = i;
		while (j < len && path[j] != '/')
			j++;
		cur = sg_toc_lookup(t, cur, path + i, j - i);
		i = j + 1;
	}
	return cur;
}

/* The directory at path[0..len), creating missing ones like the reference does. */
static int resolve_dir(struct parser *p, const char *path, size_t len, uint32_t *ret_id)
{
	uint32_t cur = SG_TOC_ROOT;
	size_t i = 0;
	char pb[96];

	if (p->cache_valid && p->cache_dir.len == len &&
	    memcmp(p->cache_dir.p, path, len) == 0) {
		*ret_id = p->cache_id;
		return 1;
	}
	while (i < len) {
		size_t j = i;
		while (j < len && path[j] != '/')
			j++;
		uint32_t next = sg_toc_lookup(p->t, cur, path + i, j - i);
		if (next == SG_TOC_NONE) {
			if (!implied_dir(p, cur, path + i, j - i, &next))
				return 0;
		} else if (p->t->nodes[next].type != SG_TOC_DIR) {
			return FAIL(p, SG_ESGZ_E_NOT_DIR, ENOTDIR,
				    "parent \"%s\" of an entry is not a directory",
				    printable(path, j, pb));
		}
		cur = next;
		i = j + 1;
	}
	if (sbuf_set(&p->cache_dir, path, len) < 0)
		return nomem(p);
	p->cache_id = cur;
	p->cache_valid = true;
	*ret_id = cur;
	return 1;
}

/* Orders a member that starts at `offset`: members never go backwards, and pieces sharing
 * one member (innerOffset) never overlap.  Settles next_offset of earlier chunks. */
static int place_member(struct parser *p, uint64_t offset, uint64_t inner, uint64_t size,
			const char *name)
{
	struct sg_toc *t = p->t;
	char pb[96];

	if (offset >= t->toc_offset)
		return FAIL(p, SG_ESGZ_E_CHUNK_RANGE, ERANGE,
			    "data of \"%s\" at offset %llu is outside the payload (TOC at %llu)",
			    printable(name, strlen(name), pb), (unsigned long long)offset,
			    (unsigned long long)t->toc_offset);
	if (inner > UINT64_MAX - size)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "innerOffset of \"%s\" overflows",
			    printable(name, strlen(name), pb));
	if (offset < p->last_offset)
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "data of \"%s\" at offset %llu goes back before offset %llu",
			    printable(name, strlen(name), pb), (unsigned long long)offset,
			    (unsigned long long)p->last_offset);
	if (offset > p->last_offset) {
		for (uint32_t i = p->pending; i < t->nchunks; i++)
			t->chunks[i].next_offset = offset;
		p->pending = t->nchunks;
		p->last_offset = offset;
		p->last_inner_end = 0;
	} else if (inner < p->last_inner_end) {
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "data of \"%s\" overlaps earlier data in the member at offset %llu",
			    printable(name, strlen(name), pb), (unsigned long long)offset);
	}
	p->last_inner_end = inner + size;
	return 1;
}

static int add_chunk(struct parser *p, const struct raw_entry *e, const char *name)
{
	struct sg_toc *t = p->t;
	struct sg_toc_node *f = &t->nodes[p->file];
	uint64_t size;
	char pb[96];

	if (e->chunk_off != p->file_next)
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "chunk of \"%s\" at %llu, expected %llu", printable(name, strlen(name), pb),
			    (unsigned long long)e->chunk_off, (unsigned long long)p->file_next);
	if (e->chunk_off >= f->size)
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "chunk of \"%s\" at %llu is past the file size %llu",
			    printable(name, strlen(name), pb), (unsigned long long)e->chunk_off,
			    (unsigned long long)f->size);
	size = e->chunk_size ? e->chunk_size : f->size - e->chunk_off;
	if (size > f->size - e->chunk_off)
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "chunk of \"%s\" at %llu with size %llu runs past the file size %llu",
			    printable(name, strlen(name), pb), (unsigned long long)e->chunk_off,
			    (unsigned long long)size, (unsigned long long)f->size);
	/* Whoever reads this chunk inflates its member up to innerOffset + size and holds
	 * the chunk, before a byte of it can be verified: that is what the limit bounds. */
	if (size > p->opts->max_chunk_size || e->inner > p->opts->max_chunk_size - size)
		return FAIL(p, SG_ESGZ_E_CHUNK_SIZE, EFBIG,
			    "chunk of \"%s\" at %llu: %llu bytes at innerOffset %llu, over the "
			    "%llu-byte chunk limit",
			    printable(name, strlen(name), pb), (unsigned long long)e->chunk_off,
			    (unsigned long long)size, (unsigned long long)e->inner,
			    (unsigned long long)p->opts->max_chunk_size);
	if (!(e->present & (1u << F_CHUNKDIGEST)) && !p->opts->skip_verify &&
	    !(e->chunk_off == 0 && size == f->size && p->file_has_digest))
		return FAIL(p, SG_ESGZ_E_NO_CHUNK_DIGEST, EBADMSG,
			    "chunk of \"%s\" at %llu has no chunkDigest to verify against",
			    printable(name, strlen(name), pb), (unsigned long long)e->chunk_off);
	if (!place_member(p, e->offset, e->inner, size, name))
		return 0;
	if (grow_big((void **)&t->chunks, &t->chunks_cap, t->nchunks + 1, sizeof(*t->chunks)) < 0)
		return nomem(p);
	f = &t->nodes[p->file];
	if (f->first_chunk == SG_TOC_NONE)
		f->first_chunk = t->nchunks;
	f->nchunks++;
	struct sg_toc_chunk *c = &t->chunks[t->nchunks++];
	*c = (struct sg_toc_chunk){
		.offset = e->offset, .next_offset = t->toc_offset, .file_offset = e->chunk_off,
		.size = size, .inner_offset = e->inner,
	};
	if (e->present & (1u << F_CHUNKDIGEST)) {
		c->digest = e->chunk_digest;
		c->has_digest = true;
	} else if (p->file_has_digest) {
		/* A whole-file chunk: the file digest is the chunk digest. */
		c->digest = p->file_digest;
		c->has_digest = true;
	}
	p->file_next += size;
	return 1;
}

/* A regular file is complete when the next non-chunk entry (or the end) arrives. */
static int finish_file(struct parser *p)
{
	struct sg_toc *t = p->t;

	if (p->file == SG_TOC_NONE)
		return 1;
	struct sg_toc_node *f = &t->nodes[p->file];
	uint32_t id = p->file;
	p->file = SG_TOC_NONE;
	if (p->file_next != f->size) {
		char path[PATH_MAX_LEN + 1];
		if (sg_toc_path(t, id, path, sizeof(path)) < 0)
			strcpy(path, "?");
		char pb[96];
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "chunks of \"%s\" cover %llu of its %llu bytes",
			    printable(path, strlen(path), pb), (unsigned long long)p->file_next,
			    (unsigned long long)f->size);
	}
	if (p->file_has_digest) {
		if (f->nchunks == 1 && t->chunks[f->first_chunk].has_digest &&
		    sg_digest_equal(&t->chunks[f->first_chunk].digest, &p->file_digest)) {
			f->digest = DIGEST_IS_CHUNK0;
		} else {
			if (grow_big((void **)&t->digests, &t->digests_cap, t->ndigests + 1,
				 sizeof(*t->digests)) < 0)
				return nomem(p);
			t->digests[t->ndigests] = p->file_digest;
			f->digest = t->ndigests++;
		}
	}
	return 1;
}

/* Once every member's end is known (the next member, or the TOC): each chunk's member must
 * be able to hold it.  Tiling alone lets a file of 2^62 bytes rest on one 16-byte member;
 * such a layer would mount and fail only when read, after we had sized buffers by it. */
static int check_members(struct parser *p)
{
	const struct sg_toc *t = p->t;
	uint64_t max_member = 2 * p->opts->max_chunk_size;

	for (uint32_t id = 1; id < t->nnodes; id++) {
		const struct sg_toc_node *n = &t->nodes[id];

		if (n->type != SG_TOC_REG || n->first_chunk == SG_TOC_NONE)
			continue;
		for (uint32_t i = 0; i < n->nchunks; i++) {
			const struct sg_toc_chunk *c = &t->chunks[n->first_chunk + i];
			uint64_t span = c->next_offset - c->offset;
			/* place_member ordered the members and bounded inner + size. */
			uint64_t need = c->inner_offset + c->size;
			char path[PATH_MAX_LEN + 1], pb[96];

			if (span <= max_member && need <= sg_gz_max_output(span))
				continue;
			if (sg_toc_path(t, id, path, sizeof(path)) < 0)
				strcpy(path, "?");
			/* The member holds the chunk (at most max_chunk_size, which deflate stores
			 * in less than 1.001x) and then only the tar headers of the entries that
			 * follow: the other max_chunk_size is room for those. */
			if (span > max_member)
				return FAIL(p, SG_ESGZ_E_CHUNK_SIZE, EFBIG,
					    "chunk of \"%s\" at %llu: its member at %llu is %llu bytes "
					    "long, over twice the %llu-byte chunk limit",
					    printable(path, strlen(path), pb),
					    (unsigned long long)c->file_offset,
					    (unsigned long long)c->offset, (unsigned long long)span,
					    (unsigned long long)p->opts->max_chunk_size);
			return FAIL(p, SG_ESGZ_E_CHUNK_RATIO, EFBIG,
				    "chunk of \"%s\" at %llu needs %llu decompressed bytes from "
				    "the %llu-byte member at %llu, which can hold at most %llu",
				    printable(path, strlen(path), pb), (unsigned long long)c->file_offset,
				    (unsigned long long)need, (unsigned long long)span,
				    (unsigned long long)c->offset,
				    (unsigned long long)sg_gz_max_output(span));
		}
	}
	return 1;
}

static int fill_attrs(struct parser *p, uint32_t id, const struct raw_entry *e)
{
	struct sg_toc *t = p->t;
	struct sg_toc_node *n = &t->nodes[id];
	uint32_t user = 0, group = 0;

	if (e->uid > UINT32_MAX || e->gid > UINT32_MAX || e->dev_major > UINT32_MAX ||
	    e->dev_minor > UINT32_MAX)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW,
			    "uid, gid or device number of entry %u does not fit 32 bits", p->nentries);
	/* Owner names repeat: reuse the previous entry's copy when equal. */
	if (e->user.len) {
		if (id > 0 && n[-1].user && strcmp(t->strs + n[-1].user, e->user.p) == 0)
			user = n[-1].user;
		else if (toc_add_str(t, e->user.p, e->user.len, &user) < 0)
			return nomem(p);
	}
	if (e->group.len) {
		n = &t->nodes[id];
		if (id > 0 && n[-1].group && strcmp(t->strs + n[-1].group, e->group.p) == 0)
			group = n[-1].group;
		else if (toc_add_str(t, e->group.p, e->group.len, &group) < 0)
			return nomem(p);
	}
	n = &t->nodes[id];
	n->user = user;
	n->group = group;
	n->mode = (uint32_t)(e->mode & 07777);
	n->uid = (uint32_t)e->uid;
	n->gid = (uint32_t)e->gid;
	n->mtime_sec = e->mtime_sec;
	n->mtime_nsec = e->mtime_nsec;
	n->dev_major = (uint32_t)e->dev_major;
	n->dev_minor = (uint32_t)e->dev_minor;
	if (e->nxattrs) {
		size_t need = 4 + e->xattrs.len;
		if (t->xattrs_len == 0)
			need++;   /* offset 0 stays "none" */
		if (t->xattrs_len + need > UINT32_MAX ||
		    grow_big_bytes((void **)&t->xattrs, &t->xattrs_cap, t->xattrs_len + need) < 0)
			return nomem(p);
		if (t->xattrs_len == 0)
			t->xattrs[t->xattrs_len++] = 0;
		n->xattrs = (uint32_t)t->xattrs_len;
		memcpy(t->xattrs + t->xattrs_len, &e->nxattrs, 4);
		memcpy(t->xattrs + t->xattrs_len + 4, e->xattrs.p, e->xattrs.len);
		t->xattrs_len += 4 + e->xattrs.len;
	}
	return 1;
}

static int commit_entry(struct parser *p)
{
	struct raw_entry *e = &p->e;
	struct sg_toc *t = p->t;
	char pb[96];

	if (++p->nentries > p->opts->max_entries)
		return FAIL(p, SG_ESGZ_E_LIMIT, E2BIG, "TOC has more than %u entries",
			    p->opts->max_entries);
	if (!(e->present & (1u << F_TYPE)))
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "TOC entry %u has no type", p->nentries);
	if (e->type == T_CHUNK) {
		/* Like the reference, a chunk belongs to the entry before it. */
		if (p->file == SG_TOC_NONE)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL,
				    "chunk entry %u does not follow a regular file", p->nentries);
		char path[PATH_MAX_LEN + 1];
		if (sg_toc_path(t, p->file, path, sizeof(path)) < 0)
			strcpy(path, "?");
		return add_chunk(p, e, path);
	}
	if (!finish_file(p))
		return 0;
	if (!(e->present & (1u << F_NAME)))
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "TOC entry %u has no name", p->nentries);
	if (!normalize(p, e->name.p, e->name.len, &p->norm, "entry name"))
		return 0;
	if (e->size > INT64_MAX || e->offset > INT64_MAX || e->chunk_off > INT64_MAX ||
	    e->chunk_size > INT64_MAX || e->inner > INT64_MAX)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "a size or offset of \"%s\" overflows",
			    printable(e->name.p, e->name.len, pb));

	const char *path = p->norm.p;
	size_t plen = p->norm.len;
	if (plen == 0) {
		/* "./": the root directory's own attributes. */
		if (e->type != T_DIR)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "the root entry is not a directory");
		if (!(t->nodes[0].flags & SG_TOC_F_IMPLIED))
			return FAIL(p, SG_ESGZ_E_DUPLICATE, EEXIST, "duplicate root directory entry");
		t->nodes[0].flags &= (uint8_t)~SG_TOC_F_IMPLIED;
		return fill_attrs(p, 0, e);
	}
	const char *slash = memrchr(path, '/', plen);
	size_t dlen = slash ? (size_t)(slash - path) : 0;
	const char *base = slash ? slash + 1 : path;
	size_t blen = plen - (slash ? dlen + 1 : 0);
	uint32_t parent, id;

	if (!resolve_dir(p, path, dlen, &parent))
		return 0;
	if (parent == SG_TOC_ROOT) {
		/* The landmarks are ordinary files of the tar (a full pull has them), and mark
		 * where the prioritized files end. */
		if (blen == 18 && memcmp(base, ".prefetch.landmark", 18) == 0) {
			t->has_prefetch = true;
			t->prefetch_end = e->offset;
		}
		if (blen == 21 && memcmp(base, ".no.prefetch.landmark", 21) == 0)
			t->has_no_prefetch = true;
		if (blen == 17 && memcmp(base, SG_ESGZ_TOC_NAME, 17) == 0) {
			/* The TOC's own tar entry comes last in the blob and wins in a full pull:
			 * the loader adds it from its tar header (sg_toc_add_self).  An entry the
			 * TOC lists under that name is shadowed; its data still orders the members. */
			if (e->type == T_REG && e->size > 0 &&
			    !place_member(p, e->offset, e->inner, e->size, path))
				return 0;
			return 1;
		}
	}
	uint8_t flags = 0;
	if (blen >= 4 && memcmp(base, ".wh.", 4) == 0) {
		if (blen == 12 && memcmp(base, ".wh..wh..opq", 12) == 0) {
			t->nodes[parent].flags |= SG_TOC_F_OPAQUE;
			return 1;
		}
		if (blen == 4)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "whiteout \"%s\" names nothing",
				    printable(path, plen, pb));
		flags = SG_TOC_F_WHITEOUT;
		base += 4;
		blen -= 4;
	}
	id = sg_toc_lookup(t, parent, base, blen);
	if (id != SG_TOC_NONE) {
		if (e->type == T_DIR && (t->nodes[id].flags & SG_TOC_F_IMPLIED) && !flags) {
			t->nodes[id].flags &= (uint8_t)~SG_TOC_F_IMPLIED;
			return fill_attrs(p, id, e);
		}
		return FAIL(p, SG_ESGZ_E_DUPLICATE, EEXIST, "duplicate entry \"%s\"",
			    printable(path, plen, pb));
	}
	if (!new_node(p, parent, base, blen, &id))
		return 0;
	t->nodes[id].flags = flags;
	if (!fill_attrs(p, id, e))
		return 0;
	struct sg_toc_node *n = &t->nodes[id];
	switch (e->type) {
	case T_DIR:
		n->type = SG_TOC_DIR;
		n->nlink = 2;
		t->nodes[parent].nlink++;
		/* The new dir is the most likely parent of what follows. */
		if (sbuf_set(&p->cache_dir, path, plen) < 0)
			return nomem(p);
		p->cache_id = id;
		p->cache_valid = true;
		break;
	case T_REG:
		n->type = SG_TOC_REG;
		n->size = e->size;
		if (e->size > 0) {
			p->file = id;
			p->file_next = 0;
			p->file_has_digest = !!(e->present & (1u << F_DIGEST));
			p->file_digest = e->digest;
			if (!add_chunk(p, e, path))
				return 0;
		} else if (e->present & (1u << F_DIGEST)) {
			if (grow_big((void **)&t->digests, &t->digests_cap, t->ndigests + 1,
				 sizeof(*t->digests)) < 0)
				return nomem(p);
			t->digests[t->ndigests] = e->digest;
			t->nodes[id].digest = t->ndigests++;
		}
		break;
	case T_SYMLINK: {
		uint32_t off;
		n->type = SG_TOC_SYMLINK;
		if (!e->link.len)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "symlink \"%s\" has no linkName",
				    printable(path, plen, pb));
		if (e->link.len > PATH_MAX_LEN)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "symlink target of \"%s\" is too long",
				    printable(path, plen, pb));
		if (toc_add_str(t, e->link.p, e->link.len, &off) < 0)
			return nomem(p);
		t->nodes[id].link = off;
		t->nodes[id].size = e->link.len;
		break;
	}
	case T_HARDLINK: {
		uint32_t target;
		char pb2[96];
		n->type = SG_TOC_HARDLINK;
		if (!normalize(p, e->link.p, e->link.len, &p->norm2, "hardlink target"))
			return 0;
		if (p->norm2.len == 0)
			return FAIL(p, SG_ESGZ_E_HARDLINK, EINVAL, "hardlink \"%s\" has no target",
				    printable(path, plen, pb));
		target = lookup_norm(t, p->norm2.p, p->norm2.len);
		if (target == SG_TOC_NONE || target == id)
			return FAIL(p, SG_ESGZ_E_HARDLINK, ENOENT,
				    "hardlink \"%s\": target \"%s\" not found",
				    printable(path, plen, pb), printable(p->norm2.p, p->norm2.len, pb2));
		if (t->nodes[target].type == SG_TOC_HARDLINK)
			target = t->nodes[target].link;
		if (t->nodes[target].type == SG_TOC_DIR ||
		    (t->nodes[target].flags & SG_TOC_F_WHITEOUT))
			return FAIL(p, SG_ESGZ_E_HARDLINK, EPERM,
				    "hardlink \"%s\": target \"%s\" is a directory or whiteout",
				    printable(path, plen, pb), printable(p->norm2.p, p->norm2.len, pb2));
		t->nodes[id].link = target;
		t->nodes[target].nlink++;
		break;
	}
	case T_CHAR:
		n->type = SG_TOC_CHAR;
		break;
	case T_BLOCK:
		n->type = SG_TOC_BLOCK;
		break;
	case T_FIFO:
		n->type = SG_TOC_FIFO;
		break;
	default:
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "entry \"%s\" has an unknown type",
			    printable(path, plen, pb));
	}
	return 1;
}

/* The duplicate check at the end of an entry misses the cache on the hash table almost
 * every time.  The name arrives first, a dozen fields before the entry is committed, so
 * when its directory is the cached one the slot can be fetched in the meantime. */
static void prefetch_slot(struct parser *p, const char *s, size_t len)
{
	while (len && s[len - 1] == '/')
		len--;
	const char *slash = memrchr(s, '/', len);
	size_t dlen = slash ? (size_t)(slash - s) : 0;

	if (!p->cache_valid || p->cache_dir.len != dlen || memcmp(p->cache_dir.p, s, dlen) != 0)
		return;
	const char *base = slash ? slash + 1 : s;
	uint32_t h = name_hash(p->cache_id, base, len - (size_t)(base - s));
	__builtin_prefetch(&p->t->hash[h & p->t->hash_mask]);
}

/* ---- scalar decoding ---- */

static int parse_u64(struct parser *p, const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		goto bad;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			goto bad;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "number in entry %u overflows",
				    p->nentries + 1);
		v = v * 10 + d;
	}
	*ret = v;
	return 1;
bad:
	if (len > 0 && s[0] == '-')
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "negative number in entry %u",
			    p->nentries + 1);
	if (len > 20 && strspn(s, "0123456789") == len)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "number in entry %u overflows",
			    p->nentries + 1);
	return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "number in entry %u is not an integer",
		    p->nentries + 1);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *ret)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*ret = v;
	return true;
}

/* RFC 3339 as Go writes it: 2006-01-02T15:04:05[.frac](Z|+07:00). */
static int parse_time(struct parser *p, const char *s, size_t len)
{
	unsigned y, mo, d, h, mi, se, nsec = 0, scale = 100000000;
	size_t i = 19;

	if (len == p->last_time_len && memcmp(s, p->last_time, len) == 0) {
		p->e.mtime_sec = p->last_sec;
		p->e.mtime_nsec = p->last_nsec;
		return 1;
	}

	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) ||
	    !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) ||
	    !digits(s + 17, 2, &se) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || se > 60)
		goto bad;
	if (s[i] == '.') {
		i++;
		size_t start = i;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (scale) {
				nsec += (unsigned)(s[i] - '0') * scale;
				scale /= 10;
			}
			i++;
		}
		if (i == start)
			goto bad;
	}
	int64_t off = 0;
	if (i < len && (s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
		off = 0;
	} else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
		unsigned oh, om;
		if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			goto bad;
		off = (int64_t)(oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
	} else {
		goto bad;
	}
	p->e.mtime_sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
	p->e.mtime_nsec = nsec;
	if (len <= sizeof(p->last_time)) {
		memcpy(p->last_time, s, len);
		p->last_time_len = len;
		p->last_sec = p->e.mtime_sec;
		p->last_nsec = nsec;
	}
	return 1;
bad:
	return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "bad modtime in entry %u", p->nentries + 1);
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Standard base64 with padding (Go's encoding of []byte), appended to out. */
static int base64_append(struct sbuf *out, const char *s, size_t len)
{
	if (len % 4)
		return -EINVAL;
	if (grow_bytes((void **)&out->p, &out->cap, out->len + len / 4 * 3 + 1) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else {
				if (pad)
					return -EINVAL;
				v[k] = b64val((unsigned char)s[i + k]);
				if (v[k] < 0)
					return -EINVAL;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		out->p[out->len++] = (char)(w >> 16);
		if (pad < 2)
			out->p[out->len++] = (char)(w >> 8);
		if (pad < 1)
			out->p[out->len++] = (char)w;
	}
	return 0;
}

/* ---- yajl callbacks ---- */

static enum field field_of(const unsigned char *k, size_t len)
{
#define K(s, f) if (len == sizeof(s) - 1 && memcmp(k, s, len) == 0) return f
	switch (len) {
	case 3: K("uid", F_UID); K("gid", F_GID); break;
	case 4: K("name", F_NAME); K("type", F_TYPE); K("size", F_SIZE); K("mode", F_MODE); break;
	case 6: K("offset", F_OFFSET); K("digest", F_DIGEST); K("xattrs", F_XATTRS); break;
	case 7: K("modtime", F_MODTIME); break;
	case 8: K("linkName", F_LINKNAME); K("userName", F_USERNAME); K("devMajor", F_DEVMAJOR);
		K("devMinor", F_DEVMINOR); break;
	case 9: K("groupName", F_GROUPNAME); K("chunkSize", F_CHUNKSIZE); break;
	case 11: K("innerOffset", F_INNEROFFSET); K("chunkOffset", F_CHUNKOFFSET);
		K("chunkDigest", F_CHUNKDIGEST); break;
	}
#undef K
	return F_NONE;
}

static int entry_type_of(const unsigned char *s, size_t len)
{
#define K(str, v) if (len == sizeof(str) - 1 && memcmp(s, str, len) == 0) return v
	K("reg", T_REG); K("dir", T_DIR); K("chunk", T_CHUNK); K("symlink", T_SYMLINK);
	K("hardlink", T_HARDLINK); K("char", T_CHAR); K("block", T_BLOCK); K("fifo", T_FIFO);
#undef K
	return T_NONE;
}

static int value_scalar(struct parser *p, int kind, const char *s, size_t len);

/* "sha256:<64 hex>" -> bytes.  A table-driven twin of sg_digest_parse: two digests per
 * entry made the generic one a visible share of the TOC load. */
static int8_t hex_table[256];

static void hex_table_init(void)
{
	if (hex_table['1'] == 1)
		return;
	memset(hex_table, -1, sizeof(hex_table));
	for (int i = 0; i < 10; i++)
		hex_table['0' + i] = (int8_t)i;
	for (int i = 0; i < 6; i++) {
		hex_table['a' + i] = (int8_t)(10 + i);
		hex_table['A' + i] = (int8_t)(10 + i);
	}
}

static int digest_parse_fast(const char *s, size_t len, struct sg_digest *ret)
{
	if (len != 7 + 64 || memcmp(s, "sha256:", 7) != 0)
		return sg_digest_parse(s, len, ret);   /* its error codes */
	const unsigned char *h = (const unsigned char *)s + 7;
	int bad = 0;
	for (int i = 0; i < 32; i++) {
		int hi = hex_table[h[2 * i]], lo = hex_table[h[2 * i + 1]];
		bad |= hi | lo;
		ret->bytes[i] = (uint8_t)((hi & 15) << 4 | (lo & 15));
	}
	return bad < 0 ? -EINVAL : 0;
}

/* A value for a key we ignore, or a container where a scalar is expected. */
static int unexpected_container(struct parser *p)
{
	if (p->state == S_TOP_VAL && p->field == F_XATTRS)
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "\"entries\" is not an array");
	if (p->state == S_TOP_VAL || (p->state == S_ENTRY_VAL && p->field == F_NONE)) {
		p->skip = 1;
		return 1;
	}
	return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "unexpected object or array in TOC entry %u",
		    p->nentries + 1);
}

static int cb_start_map(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		p->skip++;
		return 1;
	}
	switch (p->state) {
	case S_START:
		p->state = S_TOP;
		return 1;
	case S_ENTRIES: {
		struct raw_entry *e = &p->e;
		e->present = 0;
		e->type = T_NONE;
		e->size = e->offset = e->inner = e->chunk_off = e->chunk_size = 0;
		e->mode = e->uid = e->gid = e->dev_major = e->dev_minor = 0;
		e->mtime_sec = 0;
		e->mtime_nsec = 0;
		e->name.len = e->link.len = e->user.len = e->group.len = e->xattrs.len = 0;
		e->nxattrs = 0;
		if (e->user.p)
			e->user.p[0] = 0;
		if (e->group.p)
			e->group.p[0] = 0;
		if (e->link.p)
			e->link.p[0] = 0;
		p->state = S_ENTRY;
		return 1;
	}
	case S_ENTRY_VAL:
		if (p->field == F_XATTRS) {
			p->e.present |= 1u << F_XATTRS;
			p->state = S_XATTRS;
			return 1;
		}
		return unexpected_container(p);
	default:
		return unexpected_container(p);
	}
}

static int cb_end_map(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		if (--p->skip == 0)
			p->state = p->state == S_TOP_VAL ? S_TOP : S_ENTRY;
		return 1;
	}
	switch (p->state) {
	case S_TOP:
		p->state = S_DONE;
		return 1;
	case S_ENTRY:
		p->state = S_ENTRIES;
		return commit_entry(p);
	case S_XATTRS:
		p->state = S_ENTRY;
		return 1;
	default:
		return FAIL(p, SG_ESGZ_E_JSON, EBADMSG, "unbalanced JSON");
	}
}

static int cb_start_array(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		p->skip++;
		return 1;
	}
	if (p->state == S_TOP_VAL && p->field == F_XATTRS /* "entries" */) {
		if (p->seen_entries)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "two \"entries\" arrays");
		p->seen_entries = true;
		p->state = S_ENTRIES;
		return 1;
	}
	return unexpected_container(p);
}

static int cb_end_array(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		if (--p->skip == 0)
			p->state = p->state == S_TOP_VAL ? S_TOP : S_ENTRY;
		return 1;
	}
	if (p->state == S_ENTRIES) {
		p->state = S_TOP;
		return 1;
	}
	return FAIL(p, SG_ESGZ_E_JSON, EBADMSG, "unbalanced JSON");
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
	struct parser *p = ctx;

	if (p->skip)
		return 1;
	switch (p->state) {
	case S_TOP:
		/* F_XATTRS stands for "entries" at the top level; anything else is skipped. */
		p->field = (len == 7 && memcmp(k, "entries", 7) == 0) ? F_XATTRS : F_NONE;
		p->state = S_TOP_VAL;
		return 1;
	case S_ENTRY:
		p->field = field_of(k, len);
		p->state = S_ENTRY_VAL;
		return 1;
	case S_XATTRS:
		if (len == 0 || len > NAME_MAX_LEN || memchr(k, 0, len))
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "bad xattr name in entry %u",
				    p->nentries + 1);
		if (sbuf_set(&p->xattr_name, k, len) < 0)
			return nomem(p);
		p->state = S_XATTR_VAL;
		return 1;
	default:
		return FAIL(p, SG_ESGZ_E_JSON, EBADMSG, "unexpected key");
	}
}

enum { V_STRING, V_NUMBER, V_OTHER, V_NULL };

static int value_scalar(struct parser *p, int kind, const char *s, size_t len)
{
	struct raw_entry *e = &p->e;
	uint64_t *num = NULL;
	struct sbuf *str = NULL;

	if (p->skip)
		return 1;
	switch (p->state) {
	case S_TOP_VAL:
		if (p->field == F_XATTRS && kind != V_NULL)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "\"entries\" is not an array");
		p->state = S_TOP;
		return 1;
	case S_XATTR_VAL: {
		p->state = S_XATTRS;
		if (kind != V_STRING)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "xattr value is not a string");
		size_t at = e->xattrs.len;
		uint16_t nl = (uint16_t)(p->xattr_name.len + 1);
		uint32_t vl;
		if (grow_bytes((void **)&e->xattrs.p, &e->xattrs.cap, at + 6 + nl + 1) < 0)
			return nomem(p);
		memcpy(e->xattrs.p + at + 6, p->xattr_name.p, nl);
		e->xattrs.len = at + 6 + nl;
		int r = base64_append(&e->xattrs, s, len);
		if (r == -ENOMEM)
			return nomem(p);
		if (r < 0)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "xattr \"%s\" is not valid base64",
				    p->xattr_name.p);
		vl = (uint32_t)(e->xattrs.len - at - 6 - nl);
		memcpy(e->xattrs.p + at, &nl, 2);
		memcpy(e->xattrs.p + at + 2, &vl, 4);
		if (++e->nxattrs > 4096 || e->xattrs.len > (1u << 20))
			return FAIL(p, SG_ESGZ_E_LIMIT, E2BIG, "too many xattrs in entry %u",
				    p->nentries + 1);
		return 1;
	}
	case S_ENTRY_VAL:
		break;
	default:
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "TOC is not an object with \"entries\"");
	}
	p->state = S_ENTRY;
	if (kind == V_NULL || p->field == F_NONE)
		return 1;
	if (e->present & (1u << p->field))
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "a field repeats in entry %u",
			    p->nentries + 1);
	e->present |= 1u << p->field;
	switch (p->field) {
	case F_SIZE: num = &e->size; break;
	case F_MODE: num = &e->mode; break;
	case F_UID: num = &e->uid; break;
	case F_GID: num = &e->gid; break;
	case F_OFFSET: num = &e->offset; break;
	case F_INNEROFFSET: num = &e->inner; break;
	case F_DEVMAJOR: num = &e->dev_major; break;
	case F_DEVMINOR: num = &e->dev_minor; break;
	case F_CHUNKOFFSET: num = &e->chunk_off; break;
	case F_CHUNKSIZE: num = &e->chunk_size; break;
	case F_NAME: str = &e->name; break;
	case F_LINKNAME: str = &e->link; break;
	case F_USERNAME: str = &e->user; break;
	case F_GROUPNAME: str = &e->group; break;
	default: break;
	}
	if (num) {
		if (kind != V_NUMBER)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "a numeric field of entry %u is not a number",
				    p->nentries + 1);
		return parse_u64(p, s, len, num);
	}
	if (kind != V_STRING)
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "a string field of entry %u is not a string",
			    p->nentries + 1);
	if (str) {
		if (len > PATH_MAX_LEN)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "a name in entry %u is longer than %d bytes",
				    p->nentries + 1, PATH_MAX_LEN);
		if (memchr(s, 0, len))
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "a name in entry %u contains a NUL byte",
				    p->nentries + 1);
		if (sbuf_set(str, s, len) < 0)
			return nomem(p);
		if (str == &e->name)
			prefetch_slot(p, s, len);
		return 1;
	}
	switch (p->field) {
	case F_TYPE:
		e->type = entry_type_of((const unsigned char *)s, len);
		if (e->type == T_NONE)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "entry %u has an unknown type",
				    p->nentries + 1);
		return 1;
	case F_MODTIME:
		return parse_time(p, s, len);
	case F_DIGEST:
	case F_CHUNKDIGEST: {
		int r = digest_parse_fast(s, len, p->field == F_DIGEST ? &e->digest : &e->chunk_digest);
		if (r < 0)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "entry %u has a bad %s",
				    p->nentries + 1, p->field == F_DIGEST ? "digest" : "chunkDigest");
		return 1;
	}
	default:
		return 1;
	}
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
	return value_scalar(ctx, V_STRING, (const char *)s, len);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
	return value_scalar(ctx, V_NUMBER, s, len);
}

static int cb_bool(void *ctx, int b)
{
	return value_scalar(ctx, V_OTHER, "", 0);
}

static int cb_null(void *ctx)
{
	return value_scalar(ctx, V_NULL, "", 0);
}

static const yajl_callbacks callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_bool,
	.yajl_number = cb_number,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end_map,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end_array,
};

/* ---- finishing ---- */

/* Children were prepended; restore TOC order. */
static void reverse_children(struct sg_toc *t)
{
	for (uint32_t d = 0; d < t->nnodes; d++) {
		if (t->nodes[d].type != SG_TOC_DIR)
			continue;
		uint32_t prev = SG_TOC_NONE, cur = t->nodes[d].first_child;
		while (cur != SG_TOC_NONE) {
			uint32_t next = t->nodes[cur].next_sibling;
			t->nodes[cur].next_sibling = prev;
			prev = cur;
			cur = next;
		}
		t->nodes[d].first_child = prev;
	}
}

static void shrink(void **p, size_t cap_bytes, size_t len_bytes)
{
	if (!*p || !len_bytes || len_bytes >= cap_bytes)
		return;
	void *np = sg_big_realloc(*p, cap_bytes, len_bytes);
	if (np)
		*p = np;
}

/* Give back the doubling slack: the index is immutable from here on. */
static void trim(struct sg_toc *t)
{
	/* The hash was sized from a guess; rebuild it at 2-4x the nodes if it is larger. */
	uint64_t ideal = 1024;
	while (ideal < (uint64_t)t->nnodes * 2)
		ideal *= 2;
	if (t->hash && (uint64_t)t->hash_mask + 1 > ideal) {
		uint32_t *nh = sg_big_realloc(NULL, 0, (size_t)ideal * sizeof(*nh));
		if (nh) {
			sg_big_free(t->hash, ((size_t)t->hash_mask + 1) * sizeof(*t->hash));
			t->hash = nh;
			t->hash_mask = (uint32_t)ideal - 1;
			for (uint32_t id = 1; id < t->nnodes; id++)
				hash_put(t, id);
		}
	}
	shrink((void **)&t->nodes, (size_t)t->nodes_cap * sizeof(*t->nodes),
	       (size_t)t->nnodes * sizeof(*t->nodes));
	if (t->nnodes)
		t->nodes_cap = t->nnodes;
	if (t->nchunks) {
		shrink((void **)&t->chunks, (size_t)t->chunks_cap * sizeof(*t->chunks),
		       (size_t)t->nchunks * sizeof(*t->chunks));
		t->chunks_cap = t->nchunks;
	}
	if (t->ndigests) {
		shrink((void **)&t->digests, (size_t)t->digests_cap * sizeof(*t->digests),
		       (size_t)t->ndigests * sizeof(*t->digests));
		t->digests_cap = t->ndigests;
	}
	if (t->strs_len) {
		shrink((void **)&t->strs, t->strs_cap, t->strs_len);
		t->strs_cap = t->strs_len;
	}
	if (t->xattrs_len) {
		shrink((void **)&t->xattrs, t->xattrs_cap, t->xattrs_len);
		t->xattrs_cap = t->xattrs_len;
	}
}

static void raw_free(struct raw_entry *e)
{
	free(e->name.p);
	free(e->link.p);
	free(e->user.p);
	free(e->group.p);
	free(e->xattrs.p);
}

int sg_toc_parse_json(const void *json, size_t len, uint64_t toc_offset,
		      const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
		      struct sg_esgz_error *reterr)
{
	struct sg_esgz_options o = opts ? *opts : (struct sg_esgz_options){ 0 };
	struct parser p = { .opts = &o, .err = reterr, .file = SG_TOC_NONE };
	struct sg_toc *t = NULL;
	yajl_handle h = NULL;
	int r;

	if (reterr)
		*reterr = (struct sg_esgz_error){ 0 };
	if (!ret_toc || (!json && len))
		return -EINVAL;
	if (!o.max_entries)
		o.max_entries = SG_ESGZ_DEFAULT_MAX_ENTRIES;
	if (o.max_entries > MAX_NODES - 4096u)
		o.max_entries = MAX_NODES - 4096u;
	if (!o.max_chunk_size)
		o.max_chunk_size = SG_ESGZ_DEFAULT_MAX_CHUNK;
	if (o.max_chunk_size > SG_ESGZ_MAX_CHUNK_CEILING)
		o.max_chunk_size = SG_ESGZ_MAX_CHUNK_CEILING;
	hex_table_init();
	t = calloc(1, sizeof(*t));
	if (!t || grow_big_bytes((void **)&t->strs, &t->strs_cap, 1) < 0) {
		r = sg_esgz_fail(reterr, SG_ESGZ_E_NOMEM, ENOMEM, "out of memory");
		goto fail;
	}
	t->strs[0] = 0;
	t->strs_len = 1;
	t->toc_offset = toc_offset;
	t->self = SG_TOC_NONE;
	p.t = t;
	/* The root: implied until "./" says otherwise. */
	if (grow_big((void **)&t->nodes, &t->nodes_cap, 1, sizeof(*t->nodes)) < 0 ||
	    hash_reserve(t, 1) < 0) {
		r = sg_esgz_fail(reterr, SG_ESGZ_E_NOMEM, ENOMEM, "out of memory");
		goto fail;
	}
	/* Size the arrays once from the JSON length (an entry takes about 250-400 bytes of
	 * JSON): one mapping each, so no regrowth, no rehash, and huge pages from the start.
	 * Capacity that is never touched costs no memory, and trim() returns the slack. */
	uint64_t est = len / 320 + 16;
	if (est > o.max_entries)
		est = o.max_entries;
	if (grow_big((void **)&t->nodes, &t->nodes_cap, (uint32_t)est, sizeof(*t->nodes)) < 0 ||
	    grow_big((void **)&t->chunks, &t->chunks_cap, (uint32_t)est, sizeof(*t->chunks)) < 0 ||
	    hash_reserve(t, (uint32_t)est) < 0) {
		r = sg_esgz_fail(reterr, SG_ESGZ_E_NOMEM, ENOMEM, "out of memory");
		goto fail;
	}
	t->nodes[0] = (struct sg_toc_node){
		.type = SG_TOC_DIR, .flags = SG_TOC_F_IMPLIED, .mode = 0755, .nlink = 2,
		.first_child = SG_TOC_NONE, .next_sibling = SG_TOC_NONE, .link = SG_TOC_NONE,
		.first_chunk = SG_TOC_NONE, .digest = SG_TOC_NONE,
	};
	t->nnodes = 1;

	h = yajl_alloc(&callbacks, NULL, &p);
	if (!h) {
		r = sg_esgz_fail(reterr, SG_ESGZ_E_NOMEM, ENOMEM, "out of memory");
		goto fail;
	}
	/* Names are bytes to us (tar names need not be UTF-8); skip validation. */
	yajl_config(h, yajl_dont_validate_strings, 1);
	yajl_status st = yajl_parse(h, json, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st != yajl_status_ok) {
		if (p.rc < 0) {
			r = p.rc;
		} else {
			unsigned char *msg = yajl_get_error(h, 0, json, len);
			r = sg_esgz_fail(reterr, SG_ESGZ_E_JSON, EBADMSG, "TOC JSON: %s",
					 msg ? (const char *)msg : "parse error");
			if (msg)
				yajl_free_error(h, msg);
		}
		goto fail;
	}
	if (p.state != S_DONE || !p.seen_entries) {
		r = sg_esgz_fail(reterr, SG_ESGZ_E_SCHEMA, EINVAL,
				 "TOC JSON has no \"entries\" array");
		goto fail;
	}
	if (!finish_file(&p) || !check_members(&p)) {
		r = p.rc;
		goto fail;
	}
	reverse_children(t);
	trim(t);
	yajl_free(h);
	raw_free(&p.e);
	free(p.xattr_name.p);
	free(p.norm.p);
	free(p.norm2.p);
	free(p.cache_dir.p);
	*ret_toc = t;
	return 0;
fail:
	if (h)
		yajl_free(h);
	raw_free(&p.e);
	free(p.xattr_name.p);
	free(p.norm.p);
	free(p.norm2.p);
	free(p.cache_dir.p);
	sg_toc_free(t);
	return r < 0 ? r : -EINVAL;
}

void sg_toc_free(struct sg_toc *t)
{
	if (!t)
		return;
	sg_big_free(t->nodes, (size_t)t->nodes_cap * sizeof(*t->nodes));
	sg_big_free(t->chunks, (size_t)t->chunks_cap * sizeof(*t->chunks));
	sg_big_free(t->digests, (size_t)t->digests_cap * sizeof(*t->digests));
	sg_big_free(t->strs, t->strs_cap);
	sg_big_free(t->xattrs, t->xattrs_cap);
	if (t->hash)
		sg_big_free(t->hash, ((size_t)t->hash_mask + 1) * sizeof(*t->hash));
	sg_toc_drop_json(t);
	free(t);
}

/* ---- queries ---- */

uint32_t sg_toc_count(const struct sg_toc *t)
{
	return t ? t->nnodes : 0;
}

const struct sg_toc_node *sg_toc_node(const struct sg_toc *t, uint32_t id)
{
	return t && id < t->nnodes ? &t->nodes[id] : NULL;
}

const char *sg_toc_str(const struct sg_toc *t, uint32_t off)
{
	return t && off < t->strs_len ? t->strs + off : "";
}

const struct sg_toc_chunk *sg_toc_chunks(const struct sg_toc *t, const struct sg_toc_node *n)
{
	if (!t || !n || n->first_chunk == SG_TOC_NONE)
		return NULL;
	return &t->chunks[n->first_chunk];
}

const struct sg_digest *sg_toc_file_digest(const struct sg_toc *t, const struct sg_toc_node *n)
{
	if (!t || !n || n->digest == SG_TOC_NONE)
		return NULL;
	if (n->digest == DIGEST_IS_CHUNK0)
		return &t->chunks[n->first_chunk].digest;
	return &t->digests[n->digest];
}

const struct sg_toc_node *sg_toc_resolve(const struct sg_toc *t, const struct sg_toc_node *n)
{
	if (t && n && n->type == SG_TOC_HARDLINK && n->link < t->nnodes)
		return &t->nodes[n->link];
	return n;
}

int sg_toc_path(const struct sg_toc *t, uint32_t id, char *buf, size_t size)
{
	size_t len = 0;

	if (!t || id >= t->nnodes || size == 0)
		return -EINVAL;
	/* Measure first, then fill from the end. */
	for (uint32_t cur = id; cur != SG_TOC_ROOT; cur = t->nodes[cur].parent)
		len += t->nodes[cur].name_len + (t->nodes[cur].parent != SG_TOC_ROOT);
	if (len + 1 > size)
		return -ENAMETOOLONG;
	buf[len] = 0;
	size_t at = len;
	for (uint32_t cur = id; cur != SG_TOC_ROOT; cur = t->nodes[cur].parent) {
		const struct sg_toc_node *n = &t->nodes[cur];
		at -= n->name_len;
		memcpy(buf + at, t->strs + n->name, n->name_len);
		if (n->parent != SG_TOC_ROOT)
			buf[--at] = '/';
	}
	return (int)len;
}

int sg_toc_xattr(const struct sg_toc *t, const struct sg_toc_node *n, unsigned idx,
		 const char **ret_name, const void **ret_value, size_t *ret_value_len)
{
	uint32_t count;
	size_t at;

	if (!t || !n || !n->xattrs)
		return -ENOENT;
	at = n->xattrs;
	memcpy(&count, t->xattrs + at, 4);
	at += 4;
	if (idx >= count)
		return -ENOENT;
	for (unsigned i = 0;; i++) {
		uint16_t nl;
		uint32_t vl;
		memcpy(&nl, t->xattrs + at, 2);
		memcpy(&vl, t->xattrs + at + 2, 4);
		if (i == idx) {
			if (ret_name)
				*ret_name = (const char *)t->xattrs + at + 6;
			if (ret_value)
				*ret_value = t->xattrs + at + 6 + nl;
			if (ret_value_len)
				*ret_value_len = vl;
			return 0;
		}
		at += 6 + (size_t)nl + vl;
	}
}

bool sg_toc_has_prefetch(const struct sg_toc *t, uint64_t *ret_prefetch_end)
{
	if (!t || !t->has_prefetch)
		return false;
	if (ret_prefetch_end)
		*ret_prefetch_end = t->prefetch_end;
	return true;
}

bool sg_toc_has_no_prefetch_landmark(const struct sg_toc *t)
{
	return t && t->has_no_prefetch;
}

bool sg_toc_verified(const struct sg_toc *t)
{
	return t && t->verified;
}

const struct sg_digest *sg_toc_digest(const struct sg_toc *t)
{
	return t ? &t->toc_digest : NULL;
}

uint64_t sg_toc_offset(const struct sg_toc *t)
{
	return t ? t->toc_offset : 0;
}

void sg_toc_memory(const struct sg_toc *t, size_t *ret_index_bytes, size_t *ret_name_bytes)
{
	size_t idx = 0;

	if (t)
		idx = sizeof(*t) + sg_big_size((size_t)t->nodes_cap * sizeof(*t->nodes)) +
		      sg_big_size((size_t)t->chunks_cap * sizeof(*t->chunks)) +
		      sg_big_size((size_t)t->digests_cap * sizeof(*t->digests)) +
		      sg_big_size(t->xattrs_cap) +
		      (t->hash ? sg_big_size(((size_t)t->hash_mask + 1) * sizeof(*t->hash)) : 0);
	if (ret_index_bytes)
		*ret_index_bytes = idx;
	if (ret_name_bytes)
		*ret_name_bytes = t ? sg_big_size(t->strs_cap) : 0;
}

/* For estargz.c: record the verification outcome. */
void sg_toc_set_digest(struct sg_toc *t, const struct sg_digest *d, bool verified);
void sg_toc_set_digest(struct sg_toc *t, const struct sg_digest *d, bool verified)
{
	t->toc_digest = *d;
	t->verified = verified;
}

uint32_t sg_toc_self(const struct sg_toc *t)
{
	return t ? t->self : SG_TOC_NONE;
}

bool sg_toc_json(const struct sg_toc *t, const void **ret_json, size_t *ret_len)
{
	if (!t || !t->json_buf)
		return false;
	*ret_json = t->json;
	*ret_len = t->json_len;
	return true;
}

void sg_toc_drop_json(struct sg_toc *t)
{
	if (!t || !t->json_buf)
		return;
	sg_big_free(t->json_buf, t->json_cap);
	t->json_buf = NULL;
	t->json = NULL;
	t->json_len = 0;
}

/* For estargz.c: the verified TOC member (an sg_big mapping of cap bytes holding the JSON at
 * json), owned by the index from here on. */
void sg_toc_keep_json(struct sg_toc *t, uint8_t *buf, size_t cap, const uint8_t *json, size_t len);
void sg_toc_keep_json(struct sg_toc *t, uint8_t *buf, size_t cap, const uint8_t *json, size_t len)
{
	sg_toc_drop_json(t);
	t->json_buf = buf;
	t->json_cap = cap;
	t->json = json;
	t->json_len = len;
}

/* For estargz.c: adds stargz.index.json at the root as tar -x would create it from the TOC's
 * own tar header h (the TOC lists no entry for itself): a regular file of json_len bytes
 * without chunks, flagged SG_TOC_F_SELF.  Appended as the root's last child (it is the
 * blob's last entry).  0 or a negative errno; the index is unchanged on failure. */
int sg_toc_add_self(struct sg_toc *t, const struct sg_tar_entry *h, size_t json_len);
int sg_toc_add_self(struct sg_toc *t, const struct sg_tar_entry *h, size_t json_len)
{
	uint32_t id = t->nnodes, name, user = 0, group = 0;
	size_t strs_len = t->strs_len;
	int r;

	if (t->self != SG_TOC_NONE)
		return -EEXIST;
	if (h->uid < 0 || h->uid > UINT32_MAX || h->gid < 0 || h->gid > UINT32_MAX)
		return -EOVERFLOW;
	if (id >= MAX_NODES)
		return -E2BIG;
	if (t->nodes_cap < id + 1) {
		/* One node past the trimmed array: grow by exactly one. */
		void *np = sg_big_realloc(t->nodes, (size_t)t->nodes_cap * sizeof(*t->nodes),
					  (size_t)(id + 1) * sizeof(*t->nodes));
		if (!np)
			return -ENOMEM;
		t->nodes = np;
		t->nodes_cap = id + 1;
	}
	r = hash_reserve(t, id + 1);
	if (r == 0)
		r = toc_add_str(t, SG_ESGZ_TOC_NAME, strlen(SG_ESGZ_TOC_NAME), &name);
	if (r == 0 && h->uname)
		r = toc_add_str(t, h->uname, strlen(h->uname), &user);
	if (r == 0 && h->gname)
		r = toc_add_str(t, h->gname, strlen(h->gname), &group);
	if (r < 0) {
		t->strs_len = strs_len;
		return r;
	}
	shrink((void **)&t->strs, t->strs_cap, t->strs_len);   /* as trim() left it */
	t->strs_cap = t->strs_len;
	t->nodes[id] = (struct sg_toc_node){
		.size = json_len, .mtime_sec = h->mtime_sec,
		.mtime_nsec = h->mtime_nsec > 0 ? (uint32_t)h->mtime_nsec : 0,
		.mode = (uint32_t)(h->mode & 07777), .uid = (uint32_t)h->uid, .gid = (uint32_t)h->gid,
		.parent = SG_TOC_ROOT, .first_child = SG_TOC_NONE, .next_sibling = SG_TOC_NONE,
		.name = name, .name_len = (uint16_t)strlen(SG_ESGZ_TOC_NAME), .link = SG_TOC_NONE,
		.nlink = 1, .first_chunk = SG_TOC_NONE, .user = user, .group = group,
		.digest = SG_TOC_NONE, .type = SG_TOC_REG, .flags = SG_TOC_F_SELF,
	};
	t->nnodes++;
	hash_put(t, id);
	uint32_t *link = &t->nodes[SG_TOC_ROOT].first_child;
	while (*link != SG_TOC_NONE)
		link = &t->nodes[*link].next_sibling;
	*link = id;
	t->self = id;
	return 0;
}
