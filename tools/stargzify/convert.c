/* Conversion of one layer (convert.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fs/tar.h"
#include "tools/stargzify/convert.h"
#include "tools/stargzify/input.h"
#include "tools/stargzify/pipeline.h"
#include "tools/stargzify/toc_writer.h"
#include "tools/stargzify/util.h"

#define PREFETCH_LANDMARK ".prefetch.landmark"
#define NO_PREFETCH_LANDMARK ".no.prefetch.landmark"
#define LANDMARK_BYTE 0x0f
#define PROGRESS_MIN_BYTES (64ull << 20)

struct item {
	struct sg_tar_entry e;
	char *clean;
	bool live;              /* false: dropped (duplicate, landmark, TOC) */
	bool moved;             /* emitted among the prioritized files */
	bool visiting;
};

/* open-addressing map: string -> item index */
struct name_map {
	uint32_t *slots;         /* index + 1, 0 = empty */
	size_t mask;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

struct conv {
	const struct sz_options *opt;
	struct sz_input *in;
	struct item *items;
	size_t n_items, cap_items;
	struct name_map map;
	size_t *order;          /* emission order (item indices); SIZE_MAX = the landmark */
	size_t n_order;
	struct sz_toc_ent *toc;
	size_t n_toc, cap_toc;
	struct sz_pipeline *pipe;
	struct sz_job *cur;     /* open job, or NULL */
	struct sg_sha256 diff_hash;
	uint64_t uncompressed;
	struct sz_id_names unames, gnames;
	/* progress */
	bool progress;
	uint64_t processed;
	double t0, last_progress;
	uint64_t dropped_upto;
	const char *input_label;
	size_t n_prio;          /* paths in the prioritize list (found or not) */
	bool in_order;          /* emitting in input order: pages behind can go */
	bool member_open;
	uint64_t cur_member;    /* number of the open member */
	uint64_t next_member;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int map_build(struct conv *c)
{
	size_t cap = 16;
	while (cap < c->n_items * 2 + 2)
		cap *= 2;
	c->map.slots = calloc(cap, sizeof(*c->map.slots));
	if (!c->map.slots)
		return -ENOMEM;
	c->map.mask = cap - 1;
	return 0;
}

/* Returns the slot for name. */
static uint32_t *map_slot(struct conv *c, const char *clean)
{
	size_t s = (size_t)hash_str(clean) & c->map.mask;
	while (c->map.slots[s] && strcmp(c->items[c->map.slots[s] - 1].clean, clean) != 0)
		s = (s + 1) & c->map.mask;
	return &c->map.slots[s];
}

static bool is_global_comment_only(const struct sz_input *in, const struct sg_tar_entry *e)
{
	/* A PAX global header that only carries a comment (git archive writes the commit id). */
	const char *p = (const char *)in->buf + e->data_off, *end = (const char *)in->buf + e->end_off;
	while (p < end && *p) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		long n = strtol(p, NULL, 10);
		if (!sp || n <= 0 || n > end - p)
			return false;
		if ((size_t)(end - (sp + 1)) < 8 || memcmp(sp + 1, "comment=", 8) != 0)
			return false;
		p += n;
	}
	return true;
}

static void drop_input(struct conv *c, uint64_t pos);

/* Parses the whole tar: items in input order, duplicates and bookkeeping entries dropped. */
static int scan_input(struct conv *c)
{
	struct sg_tar_reader r;
	int ret;

	sg_tar_reader_init(&r, c->in->buf, c->in->len);
	for (;;) {
		struct sg_tar_entry e;
		ret = sg_tar_next(&r, &e);
		if (ret == 0)
			break;
		if (ret < 0) {
			sz_errorf("%s: %s", c->input_label, r.err);
			return ret;
		}
		drop_input(c, e.hdr_off);   /* keep the scan's footprint small too */
		if (e.type == 'g') {
			if (is_global_comment_only(c->in, &e)) {
				sz_errorf("warning: %s: dropping a PAX global header (comment only)", c->input_label);
				sg_tar_entry_done(&e);
				continue;
			}
			sz_errorf("%s: tar entry %u \"%s\": PAX global headers are not supported "
			       "(the reference converter refuses them too)", c->input_label, e.index, e.name);
			sg_tar_entry_done(&e);
			return -ENOTSUP;
		}
		if (c->n_items == c->cap_items) {
			size_t ncap = c->cap_items ? c->cap_items * 2 : 1024;
			struct item *ni = realloc(c->items, ncap * sizeof(*ni));
			if (!ni) {
				sg_tar_entry_done(&e);
				return -ENOMEM;
			}
			c->items = ni;
			c->cap_items = ncap;
		}
		struct item *it = &c->items[c->n_items];
		memset(it, 0, sizeof(*it));
		it->e = e;
		it->clean = sg_tar_clean_name(e.name);
		if (!it->clean) {
			sg_tar_entry_done(&e);
			return -ENOMEM;
		}
		it->live = strcmp(it->clean, SZ_TOC_NAME) != 0 && strcmp(it->clean, PREFETCH_LANDMARK) != 0 &&
			   strcmp(it->clean, NO_PREFETCH_LANDMARK) != 0;
		c->n_items++;
	}
	ret = map_build(c);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < c->n_items; i++) {
		if (!c->items[i].live)
			continue;
		uint32_t *slot = map_slot(c, c->items[i].clean);
		if (*slot)
			c->items[*slot - 1].live = false;   /* a later entry of the same name replaces it */
		*slot = (uint32_t)(i + 1);
	}
	return 0;
}

static ssize_t lookup(struct conv *c, const char *clean)
{
	uint32_t *slot = map_slot(c, clean);
	return *slot ? (ssize_t)*slot - 1 : -1;
}

/* The reference's moveRec: moves name, after its parent directories and its hardlink target,
 * to the prioritized part.  Unlike the reference, a missing parent directory or link target
 * does not make the file count as missing. */
static int move_rec(struct conv *c, const char *name, unsigned depth)
{
	char *clean = sg_tar_clean_name(name);
	ssize_t idx;
	int ret = 0;

	if (!clean)
		return -ENOMEM;
	if (depth > 256) {
		ret = -ELOOP;
		goto out;
	}
	idx = lookup(c, clean);
	if (!*clean) {
		if (idx >= 0 && !c->items[idx].moved) {
			c->items[idx].moved = true;
			c->order[c->n_order++] = (size_t)idx;
		}
		goto out;
	}
	if (idx < 0) {
		ret = -ENOENT;
		goto out;
	}
	struct item *it = &c->items[idx];
	if (it->moved || it->visiting)
		goto out;
	it->visiting = true;
	char *slash = strrchr(clean, '/');
	if (slash) {
		*slash = 0;
		ret = move_rec(c, clean, depth + 1);
		*slash = '/';
	} else {
		ret = move_rec(c, "", depth + 1);
	}
	if (ret == 0 || ret == -ENOENT) {
		ret = 0;
		if (it->e.type == '1') {
			ret = move_rec(c, it->e.linkname, depth + 1);
			if (ret == -ENOENT)
				ret = 0;
		}
	}
	it->visiting = false;
	if (ret == 0 && !it->moved) {
		it->moved = true;
		c->order[c->n_order++] = (size_t)idx;
	}
out:
	free(clean);
	return ret;
}

/* One path of the priority list moved to the front (a missing one is only a warning). */
static int prioritize(struct conv *c, const char *path)
{
	int ret = move_rec(c, path, 0);

	if (ret == -ENOENT) {
		sz_errorf("warning: prioritized file %s is not in the layer", path);
		return 0;
	}
	if (ret < 0)
		sz_errorf("prioritizing %s: %s", path, strerror(-ret));
	return ret;
}

static int build_order(struct conv *c)
{
	size_t n_prio = 0;
	int ret = 0;

	c->order = malloc((c->n_items + 1) * sizeof(*c->order));
	if (!c->order)
		return -ENOMEM;
	if (c->opt->prioritize_file) {
		FILE *f = strcmp(c->opt->prioritize_file, "-") == 0 ? stdin : fopen(c->opt->prioritize_file, "r");
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		if (!f) {
			ret = -errno;
			sz_errorf("cannot open %s: %s", c->opt->prioritize_file, strerror(errno));
			return ret;
		}
		while ((n = getline(&line, &cap, f)) >= 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
					 line[n - 1] == '\t'))
				line[--n] = 0;
			char *s = line;
			while (*s == ' ' || *s == '\t')
				s++;
			if (!*s || *s == '#')
				continue;
			n_prio++;
			ret = prioritize(c, s);
			if (ret < 0)
				break;
		}
		free(line);
		if (f != stdin)
			fclose(f);
		if (ret < 0)
			return ret;
	}
	for (size_t i = 0; i < c->opt->n_prioritize_paths; i++) {
		n_prio++;
		ret = prioritize(c, c->opt->prioritize_paths[i]);
		if (ret < 0)
			return ret;
	}
	/* The landmark: after the prioritized files, or first when no list was given. */
	c->order[c->n_order++] = SIZE_MAX;
	c->n_prio = n_prio;
	for (size_t i = 0; i < c->n_items; i++)
		if (c->items[i].live && !c->items[i].moved)
			c->order[c->n_order++] = i;
	return 0;
}

static struct sz_toc_ent *toc_add(struct conv *c)
{
	if (c->n_toc == c->cap_toc) {
		size_t ncap = c->cap_toc ? c->cap_toc * 2 : 1024;
		struct sz_toc_ent *t = realloc(c->toc, ncap * sizeof(*t));
		if (!t)
			return NULL;
		c->toc = t;
		c->cap_toc = ncap;
	}
	struct sz_toc_ent *t = &c->toc[c->n_toc++];
	memset(t, 0, sizeof(*t));
	t->member = -1;
	return t;
}

/* Appends uncompressed bytes to the open member (opening one if needed). */
static int emit(struct conv *c, const void *data, size_t n, bool zero)
{
	int ret;

	if (!c->cur) {
		c->cur = sz_pipeline_open(c->pipe, c->next_member);
		if (!c->cur)
			return sz_pipeline_error(c->pipe) ? sz_pipeline_error(c->pipe) : -EIO;
	}
	if (!c->member_open) {
		c->member_open = true;
		c->cur_member = c->next_member++;
	}
	ret = sz_job_append(c->cur, zero ? NULL : data, n);
	if (zero) {
		static const uint8_t zeros[SG_TAR_BLOCK];
		for (size_t k = 0; k < n; k += sizeof(zeros))
			sg_sha256_update(&c->diff_hash, zeros, n - k < sizeof(zeros) ? n - k : sizeof(zeros));
	} else {
		sg_sha256_update(&c->diff_hash, data, n);
	}
	c->uncompressed += n;
	return ret;
}

/* Hands the open job to the workers. */
static int close_job(struct conv *c)
{
	int r = 0;
	if (c->cur) {
		r = sz_pipeline_submit(c->pipe, c->cur);
		c->cur = NULL;
	}
	return r;
}

/* Ends the open gzip member; the job goes to the workers once it holds enough input. */
static int close_member(struct conv *c)
{
	int r;

	if (!c->member_open)
		return 0;
	c->member_open = false;
	r = sz_job_end_member(c->cur);
	return r > 0 ? close_job(c) : r;
}

static void progress(struct conv *c, bool final)
{
	if (!c->progress)
		return;
	double t = now_s();
	if (!final && t - c->last_progress < 0.25)
		return;
	c->last_progress = t;
	double mib = (double)c->processed / (1 << 20), total = (double)c->in->len / (1 << 20);
	double rate = t > c->t0 ? mib / (t - c->t0) : 0;
	fprintf(stderr, "\r%s: %.0f / %.0f MiB (%.0f%%), %.1f MiB/s%s", SZ_PROG, mib, total,
		total > 0 ? 100.0 * mib / total : 100.0, rate, final ? "\n" : "  ");
}

/* Drops the input pages below pos from our address space (they stay in the page cache). */
static void drop_input(struct conv *c, uint64_t pos)
{
	if (!c->in->droppable || pos < c->dropped_upto + (8u << 20))
		return;
	uint64_t end = pos & ~(uint64_t)4095;
	if (end > c->dropped_upto) {
		madvise((uint8_t *)c->in->map + c->dropped_upto, end - c->dropped_upto, MADV_DONTNEED);
		c->dropped_upto = end;
	}
}

static int emit_payload(struct conv *c, struct sz_toc_ent *first, const char *name,
			const uint8_t *data, uint64_t size)
{
	struct sg_sha256 whole;
	uint64_t written = 0;
	struct sz_toc_ent *t = first;
	size_t first_idx = (size_t)(first - c->toc);
	int ret;

	/* A file of one chunk has the chunk's digest: hash it once. */
	bool single = size <= c->opt->chunk_size;
	sg_sha256_init(&whole);
	while (written < size) {
		uint64_t n = c->opt->chunk_size, remain = size - written;
		struct sg_sha256 ch;

		ret = close_member(c);
		if (ret < 0)
			return ret;
		if (c->in_order && data >= c->in->buf && data < c->in->buf + c->in->len)
			drop_input(c, (uint64_t)(data - c->in->buf) + written);
		if (remain < n)
			n = remain;
		else
			t->chunk_size = n;
		t->chunk_offset = written;
		ret = emit(c, data + written, (size_t)n, false);
		if (ret < 0)
			return ret;
		t->member = (int64_t)c->cur_member;
		sg_sha256_init(&ch);
		sg_sha256_update(&ch, data + written, (size_t)n);
		sg_sha256_final(&ch, &t->chunk_digest);
		t->has_chunk_digest = true;
		if (!single)
			sg_sha256_update(&whole, data + written, (size_t)n);
		written += n;
		c->processed += n;
		progress(c, false);
		if (written < size) {
			t = toc_add(c);
			if (!t)
				return -ENOMEM;
			first = &c->toc[first_idx];   /* toc_add may move the array */
			t->name = name;
			t->type = SZ_TOC_CHUNK;
		}
	}
	if (size % SG_TAR_BLOCK) {
		ret = emit(c, NULL, SG_TAR_BLOCK - size % SG_TAR_BLOCK, true);
		if (ret < 0)
			return ret;
	}
	if (single)
		c->toc[first_idx].digest = c->toc[first_idx].chunk_digest;
	else
		sg_sha256_final(&whole, &c->toc[first_idx].digest);
	c->toc[first_idx].has_digest = true;
	return 0;
}

static int emit_landmark(struct conv *c, const char *name)
{
	uint8_t hdr[SG_TAR_BLOCK];
	static const uint8_t payload[1] = { LANDMARK_BYTE };
	struct sz_toc_ent *t;
	int ret;

	sg_tar_make_reg_header(hdr, name, 1);
	ret = emit(c, hdr, sizeof(hdr), false);
	if (ret < 0)
		return ret;
	t = toc_add(c);
	if (!t)
		return -ENOMEM;
	t->name = name;
	t->type = SZ_TOC_REG;
	t->size = 1;
	return emit_payload(c, t, name, payload, 1);
}

static int emit_item(struct conv *c, struct item *it)
{
	const struct sg_tar_entry *e = &it->e;
	struct sz_toc_ent *t;
	int ret;

	ret = emit(c, c->in->buf + e->hdr_off, (size_t)(e->data_off - e->hdr_off), false);
	if (ret < 0)
		return ret;
	c->processed += e->data_off - e->hdr_off;
	t = toc_add(c);
	if (!t)
		return -ENOMEM;
	t->te = e;
	t->name = e->name;
	t->uname = sz_name_if_changed(&c->unames, e->uid, e->uname);
	t->gname = sz_name_if_changed(&c->gnames, e->gid, e->gname);
	switch (e->type) {
	case '0': t->type = SZ_TOC_REG; break;
	case '1': t->type = SZ_TOC_HARDLINK; break;
	case '2': t->type = SZ_TOC_SYMLINK; break;
	case '3': t->type = SZ_TOC_CHAR; break;
	case '4': t->type = SZ_TOC_BLOCK; break;
	case '5': t->type = SZ_TOC_DIR; break;
	case '6': t->type = SZ_TOC_FIFO; break;
	default:
		sz_errorf("tar entry \"%s\": unexpected type", e->name);
		return -EINVAL;
	}
	if (t->type == SZ_TOC_REG) {
		t->size = e->size;
		if (e->size == 0) {
			sg_sha256(NULL, 0, &t->digest);   /* the reference records sha256("") */
			t->has_digest = true;
		} else {
			ret = emit_payload(c, t, e->name, c->in->buf + e->data_off, e->size);
			if (ret < 0)
				return ret;
		}
	}
	progress(c, false);
	return 0;
}

static void conv_free(struct conv *c)
{
	for (size_t i = 0; i < c->n_items; i++) {
		sg_tar_entry_done(&c->items[i].e);
		free(c->items[i].clean);
	}
	free(c->items);
	free(c->map.slots);
	free(c->order);
	free(c->toc);
	sz_id_names_free(&c->unames);
	sz_id_names_free(&c->gnames);
}

/* The end of the blob: the TOC in its own member (the tar's last entry and the
 * end-of-archive marker), then the footer. */
static int finish_blob(struct conv *c, struct sz_result *res)
{
	uint64_t toc_off = sz_pipeline_offset(c->pipe);
	struct sbuf toc = { 0 };
	uint8_t hdr[SG_TAR_BLOCK], footer[SZ_FOOTER_SIZE];
	size_t pad;
	int ret;

	ret = sz_toc_json(c->toc, c->n_toc, sz_pipeline_member_offsets(c->pipe), &toc);
	if (ret < 0) {
		sz_errorf("out of memory building the TOC");
		goto out;
	}
	sg_sha256(toc.p, toc.len, &res->toc);
	pad = (SG_TAR_BLOCK - toc.len % SG_TAR_BLOCK) % SG_TAR_BLOCK;
	sg_tar_make_reg_header(hdr, SZ_TOC_NAME, toc.len);
	if ((ret = emit(c, hdr, sizeof(hdr), false)) < 0 ||
	    (ret = emit(c, toc.p, toc.len, false)) < 0 ||
	    (ret = emit(c, NULL, pad, true)) < 0 ||
	    (ret = emit(c, NULL, 2 * SG_TAR_BLOCK, true)) < 0 ||
	    (ret = close_member(c)) < 0 || (ret = close_job(c)) < 0 ||
	    (ret = sz_pipeline_flush(c->pipe)) < 0)
		goto out;
	sz_toc_footer(footer, toc_off);
	ret = sz_pipeline_finish(c->pipe, footer, sizeof(footer), &res->blob);
	if (ret < 0)
		goto out;
	res->blob_size = sz_pipeline_offset(c->pipe);
	res->toc_offset = toc_off;
out:
	sb_free(&toc);
	return ret;
}

int sz_convert(const struct sz_options *opt, struct sz_input *in, const char *label, int out_fd,
	       struct sz_result *res)
{
	struct conv c;
	int ret;

	memset(&c, 0, sizeof(c));
	c.opt = opt;
	c.in = in;
	c.input_label = label;
	sg_sha256_init(&c.diff_hash);
	c.progress = opt->progress > 0 || (opt->progress < 0 && isatty(STDERR_FILENO) &&
					   in->len >= PROGRESS_MIN_BYTES);
	c.t0 = now_s();

	ret = sz_pipeline_new(opt->threads, opt->level, out_fd, &c.pipe);
	if (ret < 0) {
		sz_errorf("cannot start worker threads: %s", strerror(-ret));
		goto out;
	}
	ret = scan_input(&c);
	if (ret < 0)
		goto out;
	ret = build_order(&c);
	if (ret < 0)
		goto out;
	/* The scan faulted in pages all over the input (fault-around maps 64 KiB per header):
	 * unmap them, the emission pass reads sequentially and drops what it has passed. */
	if (in->droppable && in->map_len)
		madvise(in->map, in->map_len, MADV_DONTNEED);
	c.dropped_upto = 0;
	for (size_t i = 0; i < c.n_order; i++) {
		if (c.order[i] == SIZE_MAX) {
			ret = emit_landmark(&c, c.n_prio ? PREFETCH_LANDMARK : NO_PREFETCH_LANDMARK);
			c.in_order = true;   /* from here on, input order */
		} else {
			struct item *it = &c.items[c.order[i]];
			if (c.in_order)
				drop_input(&c, it->e.hdr_off);
			ret = emit_item(&c, it);
		}
		if (ret < 0) {
			if (ret == -ENOMEM)
				sz_errorf("out of memory");
			goto out;
		}
	}
	ret = close_member(&c);
	if (ret == 0)
		ret = close_job(&c);
	if (ret == 0)
		ret = sz_pipeline_flush(c.pipe);
	if (ret == 0)
		ret = finish_blob(&c, res);
	if (ret < 0)
		goto out;
	sg_sha256_final(&c.diff_hash, &res->diff_id);
	res->uncompressed_size = c.uncompressed;
	res->n_entries = c.n_toc;
	c.processed = in->len;
	progress(&c, true);
out:
	sz_pipeline_free(c.pipe);
	conv_free(&c);
	return ret;
}
