#include "fs/layer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/list.h"
#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"
#include "fs/cache_bound.h"
#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/layer_evict.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"
#include "fs/layer_prefetch.h"
#include "fs/layer_profile.h"
#include "fs/layer_spec.h"
#include "fs/layer_trust.h"

#define DEFAULT_MEM_CACHE (32u << 20)
#define DEFAULT_BATCH (4u << 20)
#define DEFAULT_READAHEAD 4u
#define DEFAULT_WINDOW (256u << 10)
#define DEFAULT_BACKGROUND_DELAY_NS (100ull * 1000000u)

void sg_layer_report_bad_chunk(struct sg_layer *l, uint32_t chunk, uint64_t file_offset,
			       bool from_cache)
{
	char path[4096];

	l->stats.verify_failures++;
	if (!l->cfg.on_bad_chunk)
		return;
	if (sg_toc_path(l->toc, l->chunk_file[chunk], path, sizeof(path)) < 0)
		snprintf(path, sizeof(path), "(node %u)", l->chunk_file[chunk]);
	l->cfg.on_bad_chunk(l->cfg.userdata, path, file_offset, from_cache);
}

void sg_layer_note_used(struct sg_layer *l, uint32_t c)
{
	sg_layer_prefetch_saw_read(l, c);
	sg_layer_profile_note(l, c);
	if (!l->fetch_kind[c])
		return;
	/* Fetched before anybody asked, and asked for now: fetching ahead that paid, and a
	 * workload busy reading.  Background fetch waits for it to go quiet as after a miss:
	 * once speculation served runc's read of /etc/group (no miss any more), the base
	 * layer's background fetch started 100 ms after the mount and python3.11's first chunk
	 * waited 350 ms behind it (python, unoptimized). */
	uint64_t now = sg_now_ns();
	l->last_ondemand_ns = now;
	if (l->src && l->src->link)
		sg_link_meter_reader(l->src->link, now);
	const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
	enum sg_fetch_kind kind = (enum sg_fetch_kind)(l->fetch_kind[c] - 1);
	l->fetch_kind[c] = 0;
	l->stats.kind_used_bytes[kind] += ch->next_offset - ch->offset;
	if (kind == SG_FETCH_SPEC) {
		sg_layer_spec_paid(l, c, ch->next_offset - ch->offset);
		sg_layer_spec_hint_used(l, c);
	}
	/* A file fetched ahead that is now in use: if it is an ELF file, the libraries it
	 * needs (fs/layer_spec.h), read from the bytes in memory. */
	struct sg_mem_chunk *e = ch->file_offset == 0 ? sg_memcache_get(l->mem, c) : NULL;
	if (e) {
		sg_layer_spec_contents(l, c, e->data, e->size);
		sg_layer_spec_continue(l);
		if (l->file_streaming)
			sg_layer_prefetch_continue(l);   /* a large program: the rest streams */
	}
}

/* A read that waited for a job is in the trace, with the file's path. */
static void trace_read(struct sg_layer *l, const struct layer_read *r, int32_t res)
{
	char path[4096];

	if (res == -ECANCELED)
		return;
	if (sg_toc_path(l->toc, r->file, path, sizeof(path)) < 0)
		snprintf(path, sizeof(path), "(node %u)", r->file);
	uint64_t now = sg_now_ns();
	sg_fetch_trace_read(l->cfg.trace, l->trace_layer, path, r->offset, r->len, r->start_ns,
			    now - r->start_ns, r->net);
}

/* ---- reads ---- */

/* Every part is placed: the result goes to the caller's op and the read ends here. */
static void read_finish(struct layer_read *r)
{
	struct sg_layer *l = r->layer;
	struct sg_layer_user *u = r->user;
	int32_t res = r->error ? r->error : (int32_t)r->len;

	l->reads_inflight--;
	if (l->cfg.trace && r->waited)
		trace_read(l, r, res);
	if (res >= 0) {
		l->stats.reads++;
		l->stats.read_bytes += (uint64_t)res;
		sg_hist_observe(&l->stats.read_us, (double)(sg_now_ns() - r->start_ns) / 1e3);
	}
	sg_list_unlink(&r->user_link);
	/* Cannot fail: the op was idle at sg_layer_read, and the caller leaves it to us. */
	(void)sg_post(l->loop, r->op, res, r->cb);
	free(r);
	sg_layer_maybe_close_done(l);
	sg_layer_user_maybe_done(u);   /* last: it may free the user */
}

/* Copies the part of chunk data that the read wants; returns its size. */
static size_t part_fill(struct read_part *p, const struct sg_toc_chunk *c, const uint8_t *data)
{
	struct layer_read *r = p->r;
	uint64_t lo = r->offset > c->file_offset ? r->offset : c->file_offset;
	uint64_t hi_r = r->offset + r->len, hi_c = c->file_offset + c->size;
	uint64_t hi = hi_r < hi_c ? hi_r : hi_c;

	if (hi <= lo)
		return 0;
	memcpy(r->buf + (lo - r->offset), data + (lo - c->file_offset), hi - lo);
	return (size_t)(hi - lo);
}

static size_t part_complete(struct read_part *p, const uint8_t *data, int error)
{
	struct layer_read *r = p->r;
	size_t copied = 0;

	if (error && !r->error)
		r->error = error;
	else if (!error)
		copied = part_fill(p, sg_layer_chunk(r->layer, p->chunk), data);
	if (--r->pending == 0)
		read_finish(r);
	return copied;
}

/* ---- jobs ---- */

void sg_layer_job_free(struct chunk_job *j)
{
	struct sg_layer *l = j->layer;

	if (l->jobs[j->chunk] == j)
		l->jobs[j->chunk] = NULL;
	if (j->entry)
		sg_mem_chunk_release(j->entry);
	sg_diskcache_fd_put(l->disk, &j->fdr);
	free(j->loadbuf);
	free(j);
	l->jobs_inflight--;
	sg_layer_maybe_close_done(l);
}

static void job_wake(struct chunk_job *j, int error)
{
	struct sg_list *n;

	while ((n = sg_list_pop(&j->waiters))) {
		struct read_part *p = sg_container_of(n, struct read_part, link);
		size_t copied = part_complete(p, j->entry ? j->entry->data : NULL, error);
		if (j->entry)
			sg_memcache_served(j->entry, copied);
	}
}

static void bitmap_written(struct sg_op *op)
{
	struct chunk_job *j = sg_container_of(op, struct chunk_job, bitmap_op);
	sg_layer_job_free(j);
}

static void cache_written(struct sg_op *op)
{
	struct chunk_job *j = sg_container_of(op, struct chunk_job, op);
	struct sg_layer *l = j->layer;
	uint32_t c = j->chunk;

	if (!sg_layer_res_is(op->res, j->entry->size) && l->bound_ent)
		sg_cache_bound_release(l->bound_ent, j->reserved);   /* not (all) written */
	/* Written while closing: the bytes stay accounted (data without its bit) until the
	 * layer is detached and its directory counted as a whole. */
	if (sg_layer_res_is(op->res, j->entry->size) && !l->closing) {
		if (!sg_diskcache_present(l->disk, c))
			sg_diskcache_set_present(l->disk, c);
		else if (l->bound_ent)
			sg_cache_bound_release(l->bound_ent, j->reserved);   /* counted already */
		/* these are the bytes we verified before writing */
		sg_diskcache_set_trusted(l->disk, c, true);
		/* Data before bit: the bitmap byte is written only after the data landed. */
		sg_op_set_group(&j->bitmap_op, &l->group);
		if (sg_diskcache_write_bit(l->disk, c, &j->bitmap_op, bitmap_written) == 0)
			return;
	}
	sg_layer_job_free(j);
}

void sg_layer_job_ready(struct chunk_job *j, struct sg_mem_chunk *e)
{
	struct sg_layer *l = j->layer;

	j->entry = e;
	sg_mem_chunk_hold(e);
	sg_layer_evict_touch(l, j->chunk);
	if (!l->closing)
		sg_memcache_insert(l->mem, e);
	job_wake(j, 0);
	if (j->from_disk || l->closing) {
		sg_layer_job_free(j);
		return;
	}
	const struct sg_toc_chunk *c = sg_layer_chunk(l, j->chunk);
	if (l->bound_ent) {
		/* Before cache_fd: making room may open (and recycle) cache file slots. */
		uint64_t bytes = sg_cache_bound_extent(l->cfg.bound, c->file_offset, c->size);
		if (sg_cache_bound_reserve(l->bound_ent, bytes) < 0) {
			l->stats.cache_writes_skipped++;   /* served, not cached */
			sg_layer_job_free(j);
			return;
		}
		j->reserved = bytes;
	}
	if (sg_diskcache_fd_get(l->disk, j->file, &j->fdr) < 0) {
		if (l->bound_ent)
			sg_cache_bound_release(l->bound_ent, j->reserved);
		sg_layer_job_free(j);
		return;
	}
	sg_op_set_group(&j->op, &l->group);
	if (sg_write(l->loop, &j->op, j->fdr.fd, e->data, e->size, c->file_offset,
		     cache_written) < 0) {
		if (l->bound_ent)
			sg_cache_bound_release(l->bound_ent, j->reserved);
		sg_layer_job_free(j);
	}
}

/* A reader joins a chunk's job.  While the job produces the bytes the reader waits with the
 * others; once the job has them (it is only writing them to the disk cache now) its waiters
 * were woken already and will not be again, so the reader is served at once. */
static void job_join(struct chunk_job *j, struct read_part *p)
{
	if (j->entry) {
		sg_memcache_served(j->entry, part_complete(p, j->entry->data, 0));
		return;
	}
	sg_list_insert_tail(&j->waiters, &p->link);
}

void sg_layer_job_fail(struct chunk_job *j, int error)
{
	job_wake(j, error);
	sg_layer_job_free(j);
}

struct chunk_job *sg_layer_job_new(struct sg_layer *l, uint32_t chunk, bool ondemand)
{
	struct chunk_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->layer = l;
	j->chunk = chunk;
	j->file = l->chunk_file[chunk];
	j->ondemand = ondemand;
	sg_list_init(&j->waiters);
	j->fdr = SG_DISKCACHE_FD_NONE;
	sg_op_init(&j->op);
	sg_op_init(&j->bitmap_op);
	l->jobs[chunk] = j;
	l->jobs_inflight++;
	return j;
}

/* What is on disk is not the chunk (a hole, or bytes to throw away): forget it, and hand
 * the waiters to a fresh fetch of the same chunk. */
static void disk_refetch(struct chunk_job *j)
{
	struct sg_layer *l = j->layer;

	if (sg_diskcache_present(l->disk, j->chunk)) {
		uint64_t freed = sg_layer_evict_drop(l, j->chunk);
		if (l->bound_ent)
			sg_cache_bound_release(l->bound_ent, freed);
	}
	sg_diskcache_set_trusted(l->disk, j->chunk, false);
	if (j->verify_only) {
		/* The file is not complete after all; nobody waits for the bytes. */
		l->verify_inflight--;
		if (l->closing || sg_list_empty(&j->waiters)) {
			sg_layer_job_free(j);
			sg_layer_trust_continue(l);
			return;
		}
		sg_layer_trust_continue(l);
	}
	if (l->closing) {
		sg_layer_job_fail(j, -ECANCELED);
		return;
	}
	struct sg_list waiters = { 0 };
	sg_list_init(&waiters);
	struct sg_list *n;
	while ((n = sg_list_pop(&j->waiters)))
		sg_list_insert_tail(&waiters, n);
	bool ondemand = j->ondemand;
	uint32_t chunk = j->chunk;
	sg_layer_job_free(j);
	int r = sg_layer_fetch_chunk(l, l->src, chunk, ondemand, &waiters);
	if (r < 0)
		while ((n = sg_list_pop(&waiters)))
			part_complete(sg_container_of(n, struct read_part, link), NULL, -EIO);
}

static void disk_loaded(struct sg_op *op)
{
	struct chunk_job *j = sg_container_of(op, struct chunk_job, op);
	struct sg_layer *l = j->layer;
	const struct sg_toc_chunk *c = sg_layer_chunk(l, j->chunk);
	struct sg_error err;

	if (!sg_layer_res_is(op->res, c->size) || l->closing) {
		/* Short (a hole, a truncated file) or failed: forget the bit and fetch instead. */
		disk_refetch(j);
		return;
	}
	if (!l->cfg.skip_verify || c->has_digest) {
		if (sg_esgz_verify_chunk(c, j->loadbuf, c->size, &err) < 0) {
			sg_layer_report_bad_chunk(l, j->chunk, c->file_offset, true);
			disk_refetch(j);
			return;
		}
	}
	sg_diskcache_set_trusted(l->disk, j->chunk, true);
	if (j->verify_only)
		l->stats.chunks_checked++;
	if (j->verify_only && sg_list_empty(&j->waiters)) {
		l->verify_inflight--;
		sg_layer_job_free(j);
		sg_layer_trust_continue(l);
		return;
	}
	if (j->verify_only) {
		j->verify_only = false;   /* a reader joined: serve it like any disk load */
		l->verify_inflight--;
		sg_layer_trust_continue(l);
	}
	struct sg_mem_chunk *e = sg_mem_chunk_new(l->mem, j->chunk, c->size);
	if (!e) {
		sg_layer_job_fail(j, -ENOMEM);
		return;
	}
	memcpy(e->data, j->loadbuf, c->size);
	free(j->loadbuf);
	j->loadbuf = NULL;
	l->stats.chunks_from_disk++;
	sg_layer_job_ready(j, e);
}

int sg_layer_job_load(struct sg_layer *l, struct chunk_job *j)
{
	const struct sg_toc_chunk *c = sg_layer_chunk(l, j->chunk);
	int r = sg_diskcache_fd_get(l->disk, j->file, &j->fdr);

	if (r < 0)
		return r;
	j->from_disk = true;
	j->loadbuf = malloc(c->size ? c->size : 1);
	if (!j->loadbuf)
		return -ENOMEM;
	sg_op_set_group(&j->op, &l->group);
	return sg_read(l->loop, &j->op, j->fdr.fd, j->loadbuf, c->size, c->file_offset, disk_loaded);
}

/* ---- stargz.index.json ----
 *
 * Its bytes are the TOC JSON, verified against the TOC digest when the TOC was loaded.
 * sg_layer_new writes them from that verified copy to the disk cache at every open and
 * reads are served from the file it wrote. */

static void toc_json_read_done(struct sg_op *op)
{
	struct layer_read *r = sg_container_of(op, struct layer_read, io_op);

	if (op->res == -ECANCELED)
		r->error = -ECANCELED;
	else if (!sg_layer_res_is(op->res, r->len))
		r->error = -EIO;   /* written whole at open: anything short is damage, not the end */
	read_finish(r);
}

/* r: a read of `len` bytes (clamped to the file) with no chunk parts. */
static void read_toc_json(struct sg_layer *l, struct layer_read *r)
{
	int fd = sg_diskcache_toc_json_fd(l->disk);

	if (r->len > (1u << 30))
		r->len = 1u << 30;   /* one op's result; FUSE reads are at most 1 MiB */
	if (r->len > 0 && fd < 0)
		r->error = -EIO;
	if (r->len > 0 && !r->error) {
		sg_op_set_group(&r->io_op, &l->group);
		if (sg_read(l->loop, &r->io_op, fd, r->buf, r->len, r->offset,
			    toc_json_read_done) == 0)
			return;
		r->error = -EIO;
	}
	read_finish(r);
}

/* ---- public read ---- */

/* Serves part p (chunk c) from memory, from the job producing it, from the disk cache, or
 * from a fetch of its own. */
static void read_part_start(struct sg_layer_user *u, struct read_part *p, uint32_t c)
{
	struct sg_layer *l = u->layer;
	struct sg_mem_chunk *e = sg_memcache_get(l->mem, c);

	sg_layer_evict_touch(l, c);
	sg_layer_note_used(l, c);
	if (e) {
		sg_memcache_touch(l->mem, e);
		l->stats.chunks_from_memory++;
		sg_memcache_served(e, part_complete(p, e->data, 0));
		return;
	}
	sg_layer_spec_program(l, c);   /* a program's first chunk: the rest of it too */
	if (l->jobs[c]) {
		p->r->waited = true;
		p->r->net |= !l->jobs[c]->from_disk;
		job_join(l->jobs[c], p);
		return;
	}
	if (sg_diskcache_present(l->disk, c)) {
		struct chunk_job *j = sg_layer_job_new(l, c, true);
		int r = j ? sg_layer_job_load(l, j) : -ENOMEM;
		if (r == 0) {
			p->r->waited = true;
			sg_list_insert_tail(&j->waiters, &p->link);
			return;
		}
		if (j)
			sg_layer_job_free(j);
	}
	if (sg_layer_fetch_held(l, c, p->r->reader)) {
		part_complete(p, NULL, -EIO);
		return;
	}
	struct sg_list w;
	p->r->waited = p->r->net = true;
	sg_list_init(&w);
	sg_list_insert_tail(&w, &p->link);
	if (sg_layer_fetch_chunk(l, u->src ? u->src : l->src, c, true, &w) < 0) {
		sg_list_unlink(&p->link);
		part_complete(p, NULL, -EIO);
	}
}

int sg_layer_read(struct sg_layer_user *u, uint32_t reader, uint32_t node, uint64_t offset,
		  size_t len, void *buf, struct sg_op *op, sg_op_cb cb)
{
	struct sg_layer *l = u->layer;
	const struct sg_toc_node *n;
	const struct sg_toc_chunk *chunks;
	struct layer_read *r;
	uint32_t first = 0, count = 0;
	int e = sg_layer_op_check(op, cb);

	if (e < 0)
		return e;
	if (l->closing || u->closing)
		return -ECANCELED;
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	n = sg_toc_resolve(l->toc, sg_toc_node(l->toc, node));
	if (n->type != SG_TOC_REG)
		return -EISDIR;
	if (offset == 0 && reader && l->cfg.on_reader && l->cfg.speculate)
		l->cfg.on_reader(l->cfg.userdata, reader);
	node = (uint32_t)(n - sg_toc_node(l->toc, 0));
	if (offset >= n->size)
		len = 0;
	else if (len > n->size - offset)
		len = (size_t)(n->size - offset);
	if (len > INT32_MAX)
		return -EINVAL;
	chunks = sg_toc_chunks(l->toc, n);
	if (len > 0) {
		/* The first chunk overlapping, then the ones after it that do too. */
		first = sg_toc_chunk_at(l->toc, n, offset);
		while (first + count < n->nchunks && chunks[first + count].file_offset < offset + len)
			count++;
	}
	r = calloc(1, sizeof(*r) + count * sizeof(r->parts[0]));
	if (!r)
		return -ENOMEM;
	r->layer = l;
	r->user = u;
	sg_list_insert_tail(&u->reads, &r->user_link);
	r->op = op;
	r->cb = cb;
	r->buf = buf;
	r->reader = reader;
	r->file = node;
	r->offset = offset;
	r->len = len;
	r->start_ns = sg_now_ns();
	r->n_parts = count;
	r->pending = count + 1;   /* +1 until every part is placed */
	sg_op_init(&r->io_op);
	l->reads_inflight++;
	if (n->flags & SG_TOC_F_SELF) {
		read_toc_json(l, r);
		return 0;
	}
	for (uint32_t i = 0; i < count; i++) {
		struct read_part *p = &r->parts[i];
		p->r = r;
		p->chunk = n->first_chunk + first + i;
		read_part_start(u, p, p->chunk);
	}
	if (--r->pending == 0)
		read_finish(r);
	return 0;
}

/* ---- lifecycle ---- */

/* Chunk index -> owning file. */
static int map_chunks(struct sg_layer *l)
{
	uint32_t count = sg_toc_count(l->toc);

	for (uint32_t i = 0; i < count; i++) {
		const struct sg_toc_node *n = sg_toc_node(l->toc, i);
		if (n->type == SG_TOC_REG && n->nchunks > 0 && n->first_chunk + n->nchunks > l->n_chunks)
			l->n_chunks = n->first_chunk + n->nchunks;
	}
	l->chunk_file = calloc(l->n_chunks + 1, sizeof(*l->chunk_file));
	l->jobs = calloc(l->n_chunks + 1, sizeof(*l->jobs));
	l->fetch_kind = calloc(l->n_chunks + 1, 1);
	l->spec_queued = calloc(l->n_chunks + 1, 1);
	l->pins = calloc(count + 1, sizeof(*l->pins));
	if (!l->chunk_file || !l->jobs || !l->fetch_kind || !l->spec_queued || !l->pins)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		const struct sg_toc_node *n = sg_toc_node(l->toc, i);
		if (n->type == SG_TOC_REG)
			for (uint32_t c = 0; c < n->nchunks; c++)
				l->chunk_file[n->first_chunk + c] = i;
	}
	l->stats.chunks_total = l->n_chunks;
	return 0;
}

/* stargz.index.json, from the copy the loader kept (sg_esgz_options.keep_json; without it
 * reads of the file fail with EIO), which is released once written. */
static int store_toc_json(struct sg_layer *l)
{
	const void *json;
	size_t len;

	if (!sg_toc_json(l->toc, &json, &len))
		return 0;
	int r = sg_diskcache_store_toc_json(l->disk, json, len);
	if (r == 0)
		sg_toc_drop_json(l->toc);
	return r;
}

int sg_layer_new(struct sg_loop *loop, struct sg_range_source *src, struct sg_toc *toc,
		 const struct sg_layer_config *config, struct sg_layer **ret_layer)
{
	struct sg_layer *l;
	int r;

	if (!config || !config->cache_dir) {
		sg_range_source_free(src);
		sg_toc_free(toc);
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		sg_range_source_free(src);
		sg_toc_free(toc);
		return -ENOMEM;
	}
	l->loop = loop;
	l->src = src;
	l->toc = toc;
	l->cfg = *config;
	if (!l->cfg.mem_cache_bytes)
		l->cfg.mem_cache_bytes = DEFAULT_MEM_CACHE;
	if (!l->cfg.max_batch_bytes)
		l->cfg.max_batch_bytes = DEFAULT_BATCH;
	if (!l->cfg.readahead_chunks)
		l->cfg.readahead_chunks = DEFAULT_READAHEAD;
	if (!l->cfg.window_bytes)
		l->cfg.window_bytes = DEFAULT_WINDOW;
	if (!l->cfg.background_delay_ns) {
		l->cfg.background_delay_ns = DEFAULT_BACKGROUND_DELAY_NS;
		l->background_delay_default = true;
	}
	snprintf(l->cache_dir, sizeof(l->cache_dir), "%s", config->cache_dir);
	l->cfg.cache_dir = l->cache_dir;
	snprintf(l->trace_layer, sizeof(l->trace_layer), "%s",
		 config->trace_layer ? config->trace_layer : "");
	l->cfg.trace_layer = l->trace_layer;
	sg_group_init(&l->group);
	sg_list_init(&l->batches);
	sg_list_init(&l->spec_peeks);
	sg_list_init(&l->verify_reqs);
	sg_list_init(&l->users);
	sg_op_init(&l->background_timer);
	sg_op_set_group(&l->background_timer, &l->group);

	r = sg_gz_new(&l->gz);
	if (r == 0)
		r = map_chunks(l);
	if (r == 0)
		r = sg_memcache_new(l->n_chunks, l->cfg.mem_cache_bytes, l->cfg.mem_budget, &l->mem);
	if (r == 0)
		r = sg_diskcache_open(loop, l->cache_dir, l->n_chunks, &l->disk);
	if (r == 0)
		r = store_toc_json(l);
	if (r == 0)
		r = sg_layer_evict_attach(l);
	if (r == 0)
		r = sg_layer_profile_init(l);
	l->cfg.blob_digest = NULL;   /* the caller's, read by the recorder's setup only */
	if (r < 0) {
		sg_layer_free(l);
		return r;
	}
	sg_layer_prefetch_init(l);
	sg_layer_spec_init(l);
	*ret_layer = l;
	return 0;
}

void sg_layer_start(struct sg_layer *l)
{
	if (l->started || l->closing)
		return;
	l->started = true;
	l->start_ns = sg_now_ns();
	sg_layer_prefetch_continue(l);
	sg_layer_spec_start(l);
}

/* ---- users ---- */

int sg_layer_user_new(struct sg_layer *l, struct sg_layer_user **ret)
{
	struct sg_layer_user *u;

	if (l->closing)
		return -ECANCELED;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->layer = l;
	sg_list_init(&u->reads);
	sg_list_insert_tail(&l->users, &u->link);
	l->n_users++;
	sg_layer_profile_new_user(l);
	*ret = u;
	return 0;
}

/* The close is posted after every result the user was owed (the loop runs posts in order). */
void sg_layer_user_maybe_done(struct sg_layer_user *u)
{
	struct sg_layer *l = u->layer;

	if (!u->close_cb || !sg_list_empty(&u->reads) || u->verifies)
		return;
	sg_list_unlink(&u->link);
	l->n_users--;
	/* Cannot fail: the op was idle at sg_layer_user_close, and the caller leaves it to us. */
	(void)sg_post(l->loop, u->close_op, 0, u->close_cb);
	free(u);
}

/* Takes a read off the chunks it waits for: its callback follows with -ECANCELED. */
static void read_cancel(struct layer_read *r)
{
	if (r->error == -ECANCELED)
		return;   /* already on its way */
	r->error = -ECANCELED;
	if (sg_op_busy(&r->io_op)) {
		(void)sg_op_cancel(&r->io_op);   /* stargz.index.json's read in flight */
		return;
	}
	unsigned waiting = 0;
	for (size_t i = 0; i < r->n_parts; i++)
		if (sg_list_linked(&r->parts[i].link)) {
			sg_list_unlink(&r->parts[i].link);
			waiting++;
		}
	if (waiting && (r->pending -= waiting) == 0)
		read_finish(r);
}

void sg_layer_user_set_source(struct sg_layer_user *u, struct sg_range_source *src)
{
	struct sg_layer *l = u->layer;
	struct sg_range_source **t;

	/* One per user; a leaving user fetches nothing; without room to keep it the user
	 * goes on with the layer's source. */
	if (u->src || u->closing ||
	    !(t = realloc(l->user_srcs, (l->n_user_srcs + 1) * sizeof(*t)))) {
		sg_range_source_free(src);
		return;
	}
	l->user_srcs = t;
	t[l->n_user_srcs++] = src;
	u->src = src;
}

int sg_layer_user_close(struct sg_layer_user *u, struct sg_op *op, sg_op_cb cb)
{
	struct sg_list *n, *tmp;
	int r = sg_layer_op_check(op, cb);

	if (r < 0)
		return r;
	if (u->closing)
		return -EALREADY;
	u->closing = true;
	sg_list_for_each_safe(n, tmp, &u->reads)
		read_cancel(sg_container_of(n, struct layer_read, user_link));
	sg_layer_trust_cancel_user(u);
	/* Only now: the results posted above must not free the user under our feet. */
	u->close_op = op;
	u->close_cb = cb;
	sg_layer_user_maybe_done(u);
	return 0;
}

/* ---- close ---- */

void sg_layer_maybe_close_done(struct sg_layer *l)
{
	sg_op_cb cb = l->close_cb;

	if (!cb || l->jobs_inflight || l->batches_inflight || l->reads_inflight ||
	    !sg_list_empty(&l->spec_peeks) || l->verify_pending || !sg_group_idle(&l->group))
		return;
	l->close_cb = NULL;   /* once */
	if (l->cfg.trace) {
		sg_fetch_trace_layer(l->cfg.trace, l->trace_layer, l->stats.kind_fetched_bytes,
				     l->stats.kind_used_bytes);
		sg_fetch_trace_flush(l->cfg.trace);
	}
	/* Cannot fail: the op was idle at sg_layer_close, and the caller leaves it to us. */
	(void)sg_post(l->loop, l->close_op, 0, cb);
}

int sg_layer_close(struct sg_layer *l, struct sg_op *op, sg_op_cb cb)
{
	int r;

	/* Users go first: their callbacks point into objects that are about to go. */
	SG_FREE_CHECK(l->n_users > 0, "layer (closed with users)");
	r = sg_layer_op_check(op, cb);
	if (r < 0)
		return r;
	if (l->closing)
		return -EALREADY;
	sg_layer_profile_close(l);   /* before `closing`: the owner stores what was recorded */
	sg_list_unlink(&l->room_node);
	l->closing = true;
	l->prefetching = l->backgrounding = false;
	l->close_op = op;
	l->close_cb = cb;
	sg_group_cancel(&l->group);
	sg_layer_fetch_cancel_all(l);
	sg_layer_spec_cancel_peeks(l);
	sg_layer_trust_continue(l);   /* answers the waiting trust checks with -ECANCELED */
	sg_layer_maybe_close_done(l);
	return 0;
}

void sg_layer_free(struct sg_layer *l)
{
	if (!l)
		return;
	SG_FREE_CHECK(l->n_users || l->jobs_inflight || l->batches_inflight || l->reads_inflight ||
		      !sg_list_empty(&l->spec_peeks) || l->verify_pending ||
		      !sg_group_idle(&l->group), "layer");
	sg_memcache_free(l->mem);
	sg_diskcache_free(l->disk);
	sg_layer_evict_detach(l);
	free(l->chunk_file);
	free(l->jobs);
	free(l->fetch_kind);
	free(l->spec_queued);
	free(l->pins);
	sg_layer_profile_free(l);
	sg_list_unlink(&l->room_node);   /* sg_layer_close did; the meter outlives us */
	sg_gz_free(l->gz);
	for (size_t i = 0; i < l->n_user_srcs; i++)
		sg_range_source_free(l->user_srcs[i]);
	free(l->user_srcs);
	sg_range_source_free(l->src);
	sg_toc_free(l->toc);
	free(l);
}

const struct sg_toc *sg_layer_toc(const struct sg_layer *l)
{
	return l->toc;
}

void sg_layer_stats(const struct sg_layer *l, struct sg_layer_stats *ret)
{
	*ret = l->stats;
	ret->background_running = l->backgrounding && l->background_started;
	ret->chunks_present = l->disk ? sg_diskcache_present_count(l->disk) : 0;
	ret->cache_bytes = l->bound_ent ? sg_cache_bound_layer_bytes(l->bound_ent) : 0;
	uint64_t fetched = 0, used = 0;
	for (int k = 0; k < SG_FETCH_KINDS; k++) {
		fetched += l->stats.kind_fetched_bytes[k];
		used += l->stats.kind_used_bytes[k];
	}
	ret->speculative_bytes = fetched - l->stats.demanded_bytes;
	ret->speculative_used_bytes = used - l->stats.demanded_bytes;
	ret->spec_budget_bytes = l->spec_budget;
	ret->ahead_inflight_bytes = l->ahead_inflight;
}
