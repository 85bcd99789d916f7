/* The TOC index (see toc.h): packed arrays, the string and xattr arenas, the hash of
 * (parent, name), the queries, and the few writes the builder and the loader make. */
#include "fs/toc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/big_alloc.h"
#include "fs/tar.h"

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

/* Appends a NUL-terminated string; offsets are 32-bit, so the arena stops at 4 GiB. */
int sg_toc_add_str(struct sg_toc *t, const char *s, size_t len, uint32_t *ret)
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
_Static_assert(SG_TOC_MAX_NODES == SLOT_ID_MASK - 1, "a slot holds every node id + 1");

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

/* ---- building ---- */

int sg_toc_new(uint64_t toc_offset, uint32_t est_nodes, struct sg_toc **ret_toc)
{
	struct sg_toc *t = calloc(1, sizeof(*t));

	if (!t || grow_big_bytes((void **)&t->strs, &t->strs_cap, 1) < 0)
		goto fail;
	t->strs[0] = 0;
	t->strs_len = 1;
	t->toc_offset = toc_offset;
	t->self = SG_TOC_NONE;
	/* The root first, then the estimate: capacity that is never touched costs no memory,
	 * and sg_toc_seal returns the slack. */
	if (grow_big((void **)&t->nodes, &t->nodes_cap, 1, sizeof(*t->nodes)) < 0 ||
	    hash_reserve(t, 1) < 0)
		goto fail;
	if (grow_big((void **)&t->nodes, &t->nodes_cap, est_nodes, sizeof(*t->nodes)) < 0 ||
	    grow_big((void **)&t->chunks, &t->chunks_cap, est_nodes, sizeof(*t->chunks)) < 0 ||
	    hash_reserve(t, est_nodes) < 0)
		goto fail;
	t->nodes[0] = (struct sg_toc_node){
		.type = SG_TOC_DIR, .flags = SG_TOC_F_IMPLIED, .mode = 0755, .nlink = 2,
		.first_child = SG_TOC_NONE, .next_sibling = SG_TOC_NONE, .link = SG_TOC_NONE,
		.first_chunk = SG_TOC_NONE, .digest = SG_TOC_NONE,
	};
	t->nnodes = 1;
	*ret_toc = t;
	return 0;
fail:
	sg_toc_free(t);
	return -ENOMEM;
}

int sg_toc_add_node(struct sg_toc *t, uint32_t dir, const char *name, size_t len,
		    uint32_t *ret_id)
{
	uint32_t id = t->nnodes, name_off;
	int r;

	if (id >= SG_TOC_MAX_NODES)
		return -E2BIG;
	r = grow_big((void **)&t->nodes, &t->nodes_cap, id + 1, sizeof(*t->nodes));
	if (r == 0)
		r = hash_reserve(t, id + 1);
	if (r == 0)
		r = sg_toc_add_str(t, name, len, &name_off);
	if (r < 0)
		return r;
	struct sg_toc_node *n = &t->nodes[id];
	*n = (struct sg_toc_node){
		.parent = dir, .first_child = SG_TOC_NONE, .next_sibling = SG_TOC_NONE,
		.name = name_off, .name_len = (uint16_t)len, .link = SG_TOC_NONE,
		.first_chunk = SG_TOC_NONE, .digest = SG_TOC_NONE, .nlink = 1,
	};
	t->nnodes++;
	hash_put(t, id);
	/* Prepended here, put back in order once by sg_toc_seal. */
	n->next_sibling = t->nodes[dir].first_child;
	t->nodes[dir].first_child = id;
	*ret_id = id;
	return 0;
}

struct sg_toc_node *sg_toc_node_mut(struct sg_toc *t, uint32_t id)
{
	return &t->nodes[id];
}

int sg_toc_add_chunk(struct sg_toc *t, uint32_t file, const struct sg_toc_chunk *c)
{
	int r = grow_big((void **)&t->chunks, &t->chunks_cap, t->nchunks + 1, sizeof(*t->chunks));
	if (r < 0)
		return r;
	struct sg_toc_node *f = &t->nodes[file];
	if (f->first_chunk == SG_TOC_NONE)
		f->first_chunk = t->nchunks;
	f->nchunks++;
	t->chunks[t->nchunks++] = *c;
	return 0;
}

uint32_t sg_toc_end_members(struct sg_toc *t, uint32_t from, uint64_t next_offset)
{
	for (uint32_t i = from; i < t->nchunks; i++)
		t->chunks[i].next_offset = next_offset;
	return t->nchunks;
}

int sg_toc_set_file_digest(struct sg_toc *t, uint32_t id, const struct sg_digest *d)
{
	struct sg_toc_node *f = &t->nodes[id];

	if (f->nchunks == 1 && t->chunks[f->first_chunk].has_digest &&
	    sg_digest_equal(&t->chunks[f->first_chunk].digest, d)) {
		f->digest = DIGEST_IS_CHUNK0;
		return 0;
	}
	int r = grow_big((void **)&t->digests, &t->digests_cap, t->ndigests + 1,
			 sizeof(*t->digests));
	if (r < 0)
		return r;
	t->digests[t->ndigests] = *d;
	f->digest = t->ndigests++;
	return 0;
}

int sg_toc_set_xattrs(struct sg_toc *t, uint32_t id, uint32_t count, const void *records,
		      size_t len)
{
	size_t need = 4 + len;

	if (t->xattrs_len == 0)
		need++;   /* offset 0 stays "none" */
	if (t->xattrs_len + need > UINT32_MAX)
		return -E2BIG;
	int r = grow_big_bytes((void **)&t->xattrs, &t->xattrs_cap, t->xattrs_len + need);
	if (r < 0)
		return r;
	if (t->xattrs_len == 0)
		t->xattrs[t->xattrs_len++] = 0;
	t->nodes[id].xattrs = (uint32_t)t->xattrs_len;
	memcpy(t->xattrs + t->xattrs_len, &count, 4);
	memcpy(t->xattrs + t->xattrs_len + 4, records, len);
	t->xattrs_len += 4 + len;
	return 0;
}

void sg_toc_set_prefetch(struct sg_toc *t, uint64_t prefetch_end)
{
	t->has_prefetch = true;
	t->prefetch_end = prefetch_end;
}

void sg_toc_set_no_prefetch(struct sg_toc *t)
{
	t->has_no_prefetch = true;
}

void sg_toc_prefetch_name(const struct sg_toc *t, uint32_t dir, const char *name, size_t len)
{
	uint32_t h = name_hash(dir, name, len);
	__builtin_prefetch(&t->hash[h & t->hash_mask]);
}

/* Children were prepended; restore the order they came in. */
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

void sg_toc_seal(struct sg_toc *t)
{
	reverse_children(t);
	trim(t);
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

uint32_t sg_toc_chunk_at(const struct sg_toc *t, const struct sg_toc_node *n, uint64_t offset)
{
	const struct sg_toc_chunk *chunks = sg_toc_chunks(t, n);
	uint32_t lo = 0, hi = n->nchunks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (chunks[mid].file_offset + chunks[mid].size <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
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

void sg_toc_keep_json(struct sg_toc *t, uint8_t *buf, size_t cap, const uint8_t *json, size_t len)
{
	sg_toc_drop_json(t);
	t->json_buf = buf;
	t->json_cap = cap;
	t->json = json;
	t->json_len = len;
}

int sg_toc_add_self(struct sg_toc *t, const struct sg_tar_entry *h, size_t json_len)
{
	uint32_t id = t->nnodes, name, user = 0, group = 0;
	size_t strs_len = t->strs_len;
	int r;

	if (t->self != SG_TOC_NONE)
		return -EEXIST;
	if (h->uid < 0 || h->uid > UINT32_MAX || h->gid < 0 || h->gid > UINT32_MAX)
		return -EOVERFLOW;
	if (id >= SG_TOC_MAX_NODES)
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
		r = sg_toc_add_str(t, SG_ESGZ_TOC_NAME, strlen(SG_ESGZ_TOC_NAME), &name);
	if (r == 0 && h->uname)
		r = sg_toc_add_str(t, h->uname, strlen(h->uname), &user);
	if (r == 0 && h->gname)
		r = sg_toc_add_str(t, h->gname, strlen(h->gname), &group);
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
