/* The TOC builder (see toc_build.h): what each TOC entry means, checked, into the index.
 *
 * Entries arrive in TOC order.  The builder remembers what the next ones depend on: the
 * regular file whose "chunk" entries may follow, the member the last data was in (members
 * never go backwards, pieces of one member never overlap), and the last directory it
 * resolved, which is usually the next entry's parent too. */
#include "fs/toc_build.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fs/gz.h"

struct sg_toc_builder {
	struct sg_toc *t;
	struct sg_esgz_options opts;   /* limits filled in */
	uint64_t toc_offset;
	struct sg_error *err;     /* the current call's */
	int rc;                   /* first error (negative errno) */
	uint32_t nentries;

	struct sg_toc_text norm, norm2;  /* normalized paths */
	struct sg_toc_text cache_dir;    /* last parent dir path and its node */
	uint32_t cache_id;
	bool cache_valid;

	/* The regular file whose chunks are being read. */
	uint32_t file;            /* SG_TOC_NONE when none */
	uint64_t file_next;       /* next expected chunkOffset */
	bool file_has_digest;
	struct sg_digest file_digest;

	/* Member ordering: chunks [pending, count) still need next_offset. */
	uint64_t last_offset, last_inner_end;
	uint32_t pending;
};

int sg_toc_text_reserve(struct sg_toc_text *b, size_t need)
{
	if (need <= b->cap)
		return 0;
	size_t ncap = b->cap ? b->cap * 2 : 4096;
	while (ncap < need)
		ncap *= 2;
	void *np = realloc(b->p, ncap);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = ncap;
	return 0;
}

int sg_toc_text_set(struct sg_toc_text *b, const void *s, size_t len)
{
	int r = sg_toc_text_reserve(b, len + 1);
	if (r < 0)
		return r;
	memcpy(b->p, s, len);
	b->p[len] = 0;
	b->len = len;
	return 0;
}

/* The checks return 1 (go on) or 0 (refused: p->rc and the caller's err say why), like the
 * parser's yajl callbacks.  The first failure names the cause; one after it would pass only
 * its errno up. */
#define FAIL(p, code, errnum, ...) \
	((p)->rc = (p)->rc < 0 ? -(errnum) \
			       : sg_error_setc((p)->err, -(errnum), (code), __VA_ARGS__), 0)

static int nomem(struct sg_toc_builder *p)
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
static int normalize(struct sg_toc_builder *p, const char *s, size_t len, struct sg_toc_text *out,
		     const char *what)
{
	char pb[96];
	size_t i = 0;

	if (sg_toc_text_reserve(out, len + 1) < 0)
		return nomem(p);
	out->len = 0;
	if (len > SG_TOC_PATH_MAX)
		return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s is longer than %d bytes", what,
			    SG_TOC_PATH_MAX);
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
		if (cl > SG_TOC_NAME_MAX)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "%s \"%s\" has a component longer than %d bytes",
				    what, printable(s, len, pb), SG_TOC_NAME_MAX);
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

static int new_node(struct sg_toc_builder *p, uint32_t parent, const char *name, size_t len,
		    uint32_t *ret_id)
{
	uint32_t id = sg_toc_count(p->t);

	/* Implied directories count too: deep paths can create many per entry. */
	if (id >= SG_TOC_MAX_NODES || id >= p->opts.max_entries + 4096u)
		return FAIL(p, SG_ESGZ_E_LIMIT, E2BIG, "TOC index has more than %u nodes",
			    id < SG_TOC_MAX_NODES ? p->opts.max_entries + 4096u : SG_TOC_MAX_NODES);
	if (sg_toc_add_node(p->t, parent, name, len, ret_id) < 0)
		return nomem(p);
	return 1;
}

static int implied_dir(struct sg_toc_builder *p, uint32_t parent, const char *name, size_t len,
		       uint32_t *ret_id)
{
	if (!new_node(p, parent, name, len, ret_id))
		return 0;
	struct sg_toc_node *n = sg_toc_node_mut(p->t, *ret_id);
	n->type = SG_TOC_DIR;
	n->flags = SG_TOC_F_IMPLIED;
	n->mode = 0755;
	n->nlink = 2;
	sg_toc_node_mut(p->t, parent)->nlink++;
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
static int resolve_dir(struct sg_toc_builder *p, const char *path, size_t len, uint32_t *ret_id)
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
		} else if (sg_toc_node(p->t, next)->type != SG_TOC_DIR) {
			return FAIL(p, SG_ESGZ_E_NOT_DIR, ENOTDIR,
				    "parent \"%s\" of an entry is not a directory",
				    printable(path, j, pb));
		}
		cur = next;
		i = j + 1;
	}
	if (sg_toc_text_set(&p->cache_dir, path, len) < 0)
		return nomem(p);
	p->cache_id = cur;
	p->cache_valid = true;
	*ret_id = cur;
	return 1;
}

/* Orders a member that starts at `offset`: members never go backwards, and pieces sharing
 * one member (innerOffset) never overlap.  Settles next_offset of earlier chunks. */
static int place_member(struct sg_toc_builder *p, uint64_t offset, uint64_t inner, uint64_t size,
			const char *name)
{
	char pb[96];

	if (offset >= p->toc_offset)
		return FAIL(p, SG_ESGZ_E_CHUNK_RANGE, ERANGE,
			    "data of \"%s\" at offset %llu is outside the payload (TOC at %llu)",
			    printable(name, strlen(name), pb), (unsigned long long)offset,
			    (unsigned long long)p->toc_offset);
	if (inner > UINT64_MAX - size)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "innerOffset of \"%s\" overflows",
			    printable(name, strlen(name), pb));
	if (offset < p->last_offset)
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "data of \"%s\" at offset %llu goes back before offset %llu",
			    printable(name, strlen(name), pb), (unsigned long long)offset,
			    (unsigned long long)p->last_offset);
	if (offset > p->last_offset) {
		p->pending = sg_toc_end_members(p->t, p->pending, offset);
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

static int add_chunk(struct sg_toc_builder *p, const struct sg_toc_entry *e, const char *name)
{
	const struct sg_toc_node *f = sg_toc_node(p->t, p->file);
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
	if (size > p->opts.max_chunk_size || e->inner > p->opts.max_chunk_size - size)
		return FAIL(p, SG_ESGZ_E_CHUNK_SIZE, EFBIG,
			    "chunk of \"%s\" at %llu: %llu bytes at innerOffset %llu, over the "
			    "%llu-byte chunk limit",
			    printable(name, strlen(name), pb), (unsigned long long)e->chunk_off,
			    (unsigned long long)size, (unsigned long long)e->inner,
			    (unsigned long long)p->opts.max_chunk_size);
	if (!(e->present & (1u << SG_TOC_FIELD_CHUNKDIGEST)) && !p->opts.skip_verify &&
	    !(e->chunk_off == 0 && size == f->size && p->file_has_digest))
		return FAIL(p, SG_ESGZ_E_NO_CHUNK_DIGEST, EBADMSG,
			    "chunk of \"%s\" at %llu has no chunkDigest to verify against",
			    printable(name, strlen(name), pb), (unsigned long long)e->chunk_off);
	if (!place_member(p, e->offset, e->inner, size, name))
		return 0;
	struct sg_toc_chunk c = {
		.offset = e->offset, .next_offset = p->toc_offset, .file_offset = e->chunk_off,
		.size = size, .inner_offset = e->inner,
	};
	if (e->present & (1u << SG_TOC_FIELD_CHUNKDIGEST)) {
		c.digest = e->chunk_digest;
		c.has_digest = true;
	} else if (p->file_has_digest) {
		/* A whole-file chunk: the file digest is the chunk digest. */
		c.digest = p->file_digest;
		c.has_digest = true;
	}
	if (sg_toc_add_chunk(p->t, p->file, &c) < 0)
		return nomem(p);
	p->file_next += size;
	return 1;
}

/* A regular file is complete when the next non-chunk entry (or the end) arrives. */
static int finish_file(struct sg_toc_builder *p)
{
	struct sg_toc *t = p->t;

	if (p->file == SG_TOC_NONE)
		return 1;
	const struct sg_toc_node *f = sg_toc_node(t, p->file);
	uint32_t id = p->file;
	p->file = SG_TOC_NONE;
	if (p->file_next != f->size) {
		char path[SG_TOC_PATH_MAX + 1];
		if (sg_toc_path(t, id, path, sizeof(path)) < 0)
			strcpy(path, "?");
		char pb[96];
		return FAIL(p, SG_ESGZ_E_CHUNK_OVERLAP, EINVAL,
			    "chunks of \"%s\" cover %llu of its %llu bytes",
			    printable(path, strlen(path), pb), (unsigned long long)p->file_next,
			    (unsigned long long)f->size);
	}
	if (p->file_has_digest && sg_toc_set_file_digest(t, id, &p->file_digest) < 0)
		return nomem(p);
	return 1;
}

/* Once every member's end is known (the next member, or the TOC): each chunk's member must
 * be able to hold it.  Tiling alone lets a file of 2^62 bytes rest on one 16-byte member;
 * such a layer would mount and fail only when read, after we had sized buffers by it. */
static int check_members(struct sg_toc_builder *p)
{
	const struct sg_toc *t = p->t;
	uint64_t max_member = 2 * p->opts.max_chunk_size;

	for (uint32_t id = 1; id < sg_toc_count(t); id++) {
		const struct sg_toc_node *n = sg_toc_node(t, id);

		if (n->type != SG_TOC_REG || n->first_chunk == SG_TOC_NONE)
			continue;
		for (uint32_t i = 0; i < n->nchunks; i++) {
			const struct sg_toc_chunk *c = &sg_toc_chunks(t, n)[i];
			uint64_t span = c->next_offset - c->offset;
			/* place_member ordered the members and bounded inner + size. */
			uint64_t need = c->inner_offset + c->size;
			char path[SG_TOC_PATH_MAX + 1], pb[96];

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
					    (unsigned long long)p->opts.max_chunk_size);
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

static int fill_attrs(struct sg_toc_builder *p, uint32_t id, const struct sg_toc_entry *e)
{
	struct sg_toc *t = p->t;
	const struct sg_toc_node *prev = id > 0 ? sg_toc_node(t, id - 1) : NULL;
	struct sg_toc_node *n;
	uint32_t user = 0, group = 0;

	if (e->uid > UINT32_MAX || e->gid > UINT32_MAX || e->dev_major > UINT32_MAX ||
	    e->dev_minor > UINT32_MAX)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW,
			    "uid, gid or device number of entry %u does not fit 32 bits", p->nentries);
	/* Owner names repeat: reuse the previous entry's copy when equal. */
	if (e->user.len) {
		if (prev && prev->user && strcmp(sg_toc_str(t, prev->user), e->user.p) == 0)
			user = prev->user;
		else if (sg_toc_add_str(t, e->user.p, e->user.len, &user) < 0)
			return nomem(p);
	}
	if (e->group.len) {
		if (prev && prev->group && strcmp(sg_toc_str(t, prev->group), e->group.p) == 0)
			group = prev->group;
		else if (sg_toc_add_str(t, e->group.p, e->group.len, &group) < 0)
			return nomem(p);
	}
	n = sg_toc_node_mut(t, id);
	n->user = user;
	n->group = group;
	n->mode = (uint32_t)(e->mode & 07777);
	n->uid = (uint32_t)e->uid;
	n->gid = (uint32_t)e->gid;
	n->mtime_sec = e->mtime_sec;
	n->mtime_nsec = e->mtime_nsec;
	n->dev_major = (uint32_t)e->dev_major;
	n->dev_minor = (uint32_t)e->dev_minor;
	if (e->nxattrs && sg_toc_set_xattrs(t, id, e->nxattrs, e->xattrs.p, e->xattrs.len) < 0)
		return nomem(p);
	return 1;
}

/* A hardlink's target: an earlier entry, not a directory or whiteout; a link to a link
 * names the first one's target. */
static int link_hardlink(struct sg_toc_builder *p, uint32_t id, const struct sg_toc_entry *e,
			 const char *path, size_t plen)
{
	struct sg_toc *t = p->t;
	uint32_t target;
	char pb[96], pb2[96];

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
	if (sg_toc_node(t, target)->type == SG_TOC_HARDLINK)
		target = sg_toc_node(t, target)->link;
	if (sg_toc_node(t, target)->type == SG_TOC_DIR ||
	    (sg_toc_node(t, target)->flags & SG_TOC_F_WHITEOUT))
		return FAIL(p, SG_ESGZ_E_HARDLINK, EPERM,
			    "hardlink \"%s\": target \"%s\" is a directory or whiteout",
			    printable(path, plen, pb), printable(p->norm2.p, p->norm2.len, pb2));
	sg_toc_node_mut(t, id)->link = target;
	sg_toc_node_mut(t, target)->nlink++;
	return 1;
}

/* What the entry's type makes of its new node id (in directory parent, at path). */
static int set_type(struct sg_toc_builder *p, uint32_t id, uint32_t parent,
		    const struct sg_toc_entry *e, const char *path, size_t plen)
{
	struct sg_toc *t = p->t;
	struct sg_toc_node *n = sg_toc_node_mut(t, id);
	char pb[96];

	switch (e->type) {
	case SG_TOC_ENTRY_DIR:
		n->type = SG_TOC_DIR;
		n->nlink = 2;
		sg_toc_node_mut(t, parent)->nlink++;
		/* The new dir is the most likely parent of what follows. */
		if (sg_toc_text_set(&p->cache_dir, path, plen) < 0)
			return nomem(p);
		p->cache_id = id;
		p->cache_valid = true;
		return 1;
	case SG_TOC_ENTRY_REG:
		n->type = SG_TOC_REG;
		n->size = e->size;
		if (e->size > 0) {
			p->file = id;
			p->file_next = 0;
			p->file_has_digest = !!(e->present & (1u << SG_TOC_FIELD_DIGEST));
			p->file_digest = e->digest;
			return add_chunk(p, e, path);
		}
		if ((e->present & (1u << SG_TOC_FIELD_DIGEST)) &&
		    sg_toc_set_file_digest(t, id, &e->digest) < 0)
			return nomem(p);
		return 1;
	case SG_TOC_ENTRY_SYMLINK: {
		uint32_t off;
		n->type = SG_TOC_SYMLINK;
		if (!e->link.len)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "symlink \"%s\" has no linkName",
				    printable(path, plen, pb));
		if (e->link.len > SG_TOC_PATH_MAX)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "symlink target of \"%s\" is too long",
				    printable(path, plen, pb));
		if (sg_toc_add_str(t, e->link.p, e->link.len, &off) < 0)
			return nomem(p);
		n->link = off;
		n->size = e->link.len;
		return 1;
	}
	case SG_TOC_ENTRY_HARDLINK:
		n->type = SG_TOC_HARDLINK;
		return link_hardlink(p, id, e, path, plen);
	case SG_TOC_ENTRY_CHAR:
		n->type = SG_TOC_CHAR;
		return 1;
	case SG_TOC_ENTRY_BLOCK:
		n->type = SG_TOC_BLOCK;
		return 1;
	case SG_TOC_ENTRY_FIFO:
		n->type = SG_TOC_FIFO;
		return 1;
	default:
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "entry \"%s\" has an unknown type",
			    printable(path, plen, pb));
	}
}

/* The bookkeeping entries at the root: the landmarks are ordinary files of the tar (a
 * full pull has them) and mark where the prioritized files end.  True when the entry is
 * stargz.index.json, which is not added (*ret says how that went). */
static bool root_entry(struct sg_toc_builder *p, const struct sg_toc_entry *e,
		       const char *base, size_t blen, const char *path, int *ret)
{
	if (blen == 18 && memcmp(base, ".prefetch.landmark", 18) == 0)
		sg_toc_set_prefetch(p->t, e->offset);
	if (blen == 21 && memcmp(base, ".no.prefetch.landmark", 21) == 0)
		sg_toc_set_no_prefetch(p->t);
	if (blen != 17 || memcmp(base, SG_ESGZ_TOC_NAME, 17) != 0)
		return false;
	/* The TOC's own tar entry comes last in the blob and wins in a full pull: the loader
	 * adds it from its tar header (sg_toc_add_self).  An entry the TOC lists under that
	 * name is shadowed; its data still orders the members. */
	*ret = 1;
	if (e->type == SG_TOC_ENTRY_REG && e->size > 0 &&
	    !place_member(p, e->offset, e->inner, e->size, path))
		*ret = 0;
	return true;
}

static int commit_entry(struct sg_toc_builder *p, const struct sg_toc_entry *e)
{
	struct sg_toc *t = p->t;
	char pb[96];
	int r;

	if (++p->nentries > p->opts.max_entries)
		return FAIL(p, SG_ESGZ_E_LIMIT, E2BIG, "TOC has more than %u entries",
			    p->opts.max_entries);
	if (!(e->present & (1u << SG_TOC_FIELD_TYPE)))
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "TOC entry %u has no type", p->nentries);
	if (e->type == SG_TOC_ENTRY_CHUNK) {
		/* Like the reference, a chunk belongs to the entry before it. */
		if (p->file == SG_TOC_NONE)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL,
				    "chunk entry %u does not follow a regular file", p->nentries);
		char path[SG_TOC_PATH_MAX + 1];
		if (sg_toc_path(t, p->file, path, sizeof(path)) < 0)
			strcpy(path, "?");
		return add_chunk(p, e, path);
	}
	if (!finish_file(p))
		return 0;
	if (!(e->present & (1u << SG_TOC_FIELD_NAME)))
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
		if (e->type != SG_TOC_ENTRY_DIR)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "the root entry is not a directory");
		if (!(sg_toc_node(t, SG_TOC_ROOT)->flags & SG_TOC_F_IMPLIED))
			return FAIL(p, SG_ESGZ_E_DUPLICATE, EEXIST, "duplicate root directory entry");
		sg_toc_node_mut(t, SG_TOC_ROOT)->flags &= (uint8_t)~SG_TOC_F_IMPLIED;
		return fill_attrs(p, SG_TOC_ROOT, e);
	}
	const char *slash = memrchr(path, '/', plen);
	size_t dlen = slash ? (size_t)(slash - path) : 0;
	const char *base = slash ? slash + 1 : path;
	size_t blen = plen - (slash ? dlen + 1 : 0);
	uint32_t parent, id;

	if (!resolve_dir(p, path, dlen, &parent))
		return 0;
	if (parent == SG_TOC_ROOT && root_entry(p, e, base, blen, path, &r))
		return r;
	uint8_t flags = 0;
	if (blen >= 4 && memcmp(base, ".wh.", 4) == 0) {
		if (blen == 12 && memcmp(base, ".wh..wh..opq", 12) == 0) {
			sg_toc_node_mut(t, parent)->flags |= SG_TOC_F_OPAQUE;
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
		struct sg_toc_node *old = sg_toc_node_mut(t, id);
		if (e->type == SG_TOC_ENTRY_DIR && (old->flags & SG_TOC_F_IMPLIED) && !flags) {
			old->flags &= (uint8_t)~SG_TOC_F_IMPLIED;
			return fill_attrs(p, id, e);
		}
		return FAIL(p, SG_ESGZ_E_DUPLICATE, EEXIST, "duplicate entry \"%s\"",
			    printable(path, plen, pb));
	}
	if (!new_node(p, parent, base, blen, &id))
		return 0;
	sg_toc_node_mut(t, id)->flags = flags;
	if (!fill_attrs(p, id, e))
		return 0;
	return set_type(p, id, parent, e, path, plen);
}

/* The duplicate check at the end of an entry misses the cache on the hash table almost
 * every time.  The name arrives first, a dozen fields before the entry is committed, so
 * when its directory is the cached one the slot can be fetched in the meantime. */
void sg_toc_builder_hint(struct sg_toc_builder *p, const char *s, size_t len)
{
	while (len && s[len - 1] == '/')
		len--;
	const char *slash = memrchr(s, '/', len);
	size_t dlen = slash ? (size_t)(slash - s) : 0;

	if (!p->cache_valid || p->cache_dir.len != dlen || memcmp(p->cache_dir.p, s, dlen) != 0)
		return;
	const char *base = slash ? slash + 1 : s;
	sg_toc_prefetch_name(p->t, p->cache_id, base, len - (size_t)(base - s));
}

int sg_toc_builder_new(uint64_t toc_offset, uint32_t est_entries,
		       const struct sg_esgz_options *opts, struct sg_toc_builder **ret_b,
		       struct sg_error *err)
{
	struct sg_toc_builder *p = calloc(1, sizeof(*p));

	if (!p)
		goto nomem;
	if (opts)
		p->opts = *opts;
	if (!p->opts.max_entries)
		p->opts.max_entries = SG_ESGZ_DEFAULT_MAX_ENTRIES;
	if (p->opts.max_entries > SG_TOC_MAX_NODES - 4096u)
		p->opts.max_entries = SG_TOC_MAX_NODES - 4096u;
	if (!p->opts.max_chunk_size)
		p->opts.max_chunk_size = SG_ESGZ_DEFAULT_MAX_CHUNK;
	if (p->opts.max_chunk_size > SG_ESGZ_MAX_CHUNK_CEILING)
		p->opts.max_chunk_size = SG_ESGZ_MAX_CHUNK_CEILING;
	p->toc_offset = toc_offset;
	p->file = SG_TOC_NONE;
	if (est_entries > p->opts.max_entries)
		est_entries = p->opts.max_entries;
	if (sg_toc_new(toc_offset, est_entries, &p->t) < 0)
		goto nomem;
	*ret_b = p;
	return 0;
nomem:
	sg_toc_builder_free(p);
	return sg_error_setc(err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
}

int sg_toc_builder_add(struct sg_toc_builder *p, const struct sg_toc_entry *e,
		       struct sg_error *err)
{
	if (p->rc < 0)
		return p->rc;
	p->err = err;
	return commit_entry(p, e) ? 0 : p->rc;
}

int sg_toc_builder_finish(struct sg_toc_builder *p, struct sg_toc **ret_toc,
			  struct sg_error *err)
{
	if (p->rc < 0)
		return p->rc;
	p->err = err;
	if (!finish_file(p) || !check_members(p))
		return p->rc;
	sg_toc_seal(p->t);
	*ret_toc = p->t;
	p->t = NULL;
	return 0;
}

void sg_toc_builder_free(struct sg_toc_builder *p)
{
	if (!p)
		return;
	sg_toc_free(p->t);
	free(p->norm.p);
	free(p->norm2.p);
	free(p->cache_dir.p);
	free(p);
}
