#include "fs/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/list.h"
#include "daemon/core/loop.h"
#include "fs/cache_bound.h"
#include "fs/estargz.h"
#include "fs/gz.h"
#include "daemon/core/range_source.h"

#define DEFAULT_MEM_CACHE (32u << 20)
#define DEFAULT_BATCH (4u << 20)
#define DEFAULT_READAHEAD 4u
#define DEFAULT_WINDOW (256u << 10)
#define BACKGROUND_BATCH (1u << 20)
#define BACKGROUND_QUIET_NS (1000ull * 1000000u)   /* no on-demand fetch for this long */
#define FD_SLOTS 128
#define MAX_BATCH_GAP (64u << 10)    /* tar headers between members are small */
#define BACKGROUND_RETRY_NS (50ull * 1000000u)
#define DEFAULT_BACKGROUND_DELAY_NS (5ull * 1000000000u)
#define VERIFY_PARALLEL 2     /* chunks read back at once by a trust check */
/* After the fetch of a chunk failed (the source gave up after its retries, or the bytes did
 * not verify), the readers that waited for it get EIO at once for this long when they ask
 * for that chunk again: the kernel retries a failed readahead page by page, in the reading
 * process, and each retry would otherwise wait out the whole retry budget again.  Only those
 * readers: another process (a new container, a user trying again once the registry is back)
 * gets a fetch of its own. */
#define FAILED_HOLD_NS (300ull * 1000000u)
#define FAILED_RING 16

/* A verified, decompressed chunk held in memory.  refs > 0 while a cache write uses it. */
struct mem_entry {
	uint32_t chunk;
	unsigned refs;
	size_t size;
	size_t served;             /* bytes copied to readers so far */
	struct sg_layer *layer;
	struct sg_list lru;        /* the layer's; lru.next == NULL: not in the cache */
	struct sg_list glru;       /* the shared budget's, when there is one */
	uint8_t data[];
};

struct read_part;
/* A cache file descriptor held by an op: a slot of the table, or (table full of busy
 * slots) a descriptor of its own, closed when released. */
struct fd_ref {
	int fd;                    /* -1: none held */
	int slot;                  /* -1: own descriptor */
};


/* One chunk being produced: from the disk cache or as part of a fetch batch. */
struct chunk_job {
	struct sg_layer *layer;
	uint32_t chunk;
	uint32_t file;             /* resolved node owning the chunk */
	struct sg_list waiters;    /* struct read_part */
	struct sg_op op;           /* disk read, then cache write */
	struct sg_op bitmap_op;
	struct mem_entry *entry;   /* result, held while written to disk */
	uint8_t *loadbuf;          /* disk load target */
	struct fd_ref fdr;         /* cache file of the disk read or cache write */
	uint64_t reserved;         /* cache bytes accounted for the write in flight */
	bool from_disk;
	bool ondemand;
	bool verify_only;          /* a passthrough check: no reader asked for the bytes */
};

struct fetch_batch {
	struct sg_layer *layer;
	struct sg_op op;
	uint64_t offset;
	size_t len;
	size_t charged;            /* bytes counted in the budget's inflight */
	uint8_t *buf;
	struct chunk_job **jobs;
	size_t n;
	bool background;
};

struct read_part {
	struct sg_list link;       /* on a job's waiters while it waits (sg_list_linked) */
	struct layer_read *r;
	uint32_t chunk;
};

struct layer_read {
	struct sg_layer *layer;
	struct sg_layer_user *user;
	struct sg_list user_link;  /* on user->reads until the callback ran */
	sg_layer_read_cb cb;
	void *userdata;
	uint8_t *buf;
	uint32_t reader;           /* the reading process, for the failure hold */
	uint32_t file;
	uint64_t offset;
	size_t len;
	unsigned pending;
	int error;
	struct sg_op done_op;
	size_t n_parts;
	struct read_part parts[];
};

/* One user of the layer (a FUSE mount of it): the reads and trust checks it started, so that
 * it can leave while other users keep the layer. */
struct sg_layer_user {
	struct sg_layer *layer;
	/* Where this user's on-demand fetches go (its own image's registry), NULL = the
	 * layer's.  Owned by the layer (user_srcs): a fetch it started may still be serving
	 * other users' waiters after the user left. */
	struct sg_range_source *src;
	struct sg_list link;           /* on layer->users */
	struct sg_list reads;          /* struct layer_read, callbacks still owed */
	unsigned verifies;             /* trust checks, callbacks still owed */
	bool closing;
	void (*done)(void *);
	void *done_userdata;
	struct sg_op done_op;
};

struct fd_slot {
	uint32_t node;
	int fd;
	bool used;
	unsigned busy;             /* ops using fd: it is not closed before they end */
};


struct sg_layer {
	struct sg_loop *loop;
	struct sg_range_source *src;
	struct sg_toc *toc;
	struct sg_gz *gz;
	struct sg_layer_config cfg;
	char cache_dir[4096];
	struct sg_group group;

	uint32_t n_chunks;
	uint32_t *chunk_file;          /* chunk -> node owning it */
	struct chunk_job **jobs;       /* chunk -> job in flight */
	struct mem_entry **mem;        /* chunk -> memory cache entry */
	uint8_t *present;              /* bitmap: chunk is in the disk cache */
	/* bitmap: the chunk's bytes in the disk cache were verified during this mount (we
	 * wrote them after checking them, or read them back and checked them).  Only files
	 * whose chunks are all trusted are handed to the kernel for passthrough. */
	uint8_t *trusted;
	/* By node: how many users handed the file's cache file to the kernel (passthrough);
	 * such a file is never evicted and its chunks stay trusted. */
	uint16_t *pins;
	struct sg_list users;          /* struct sg_layer_user */
	struct sg_range_source **user_srcs;   /* users' own sources, freed with the layer */
	size_t n_user_srcs;
	unsigned n_users;
	bool started;
	struct sg_list verify_reqs;    /* struct verify_req: files waiting for a trust check */
	uint32_t verify_chunk;         /* next chunk of the file at the head */
	unsigned verify_inflight;      /* its chunks being read back */
	unsigned verify_pending;       /* callbacks not delivered yet */
	int bitmap_fd;
	struct sg_list mem_lru;        /* most recent at the tail */
	size_t mem_bytes;

	/* The size bound (NULL = none): this layer's account and a use stamp per chunk. */
	struct sg_cache_bound_layer *cache_ent;
	uint32_t *stamp;
	uint32_t block;                /* filesystem block size of the cache */

	struct fd_slot fds[FD_SLOTS];
	unsigned fd_clock;
	int toc_json_fd;               /* stargz.index.json's content, -1 = none */

	unsigned ondemand_inflight;
	uint64_t last_ondemand_ns;      /* when an on-demand fetch last started or ended */
	/* Recent fetch failures, by chunk and by reader that saw them. */
	struct { uint32_t chunk, reader; uint64_t ns; } failed[FAILED_RING];
	unsigned failed_next;
	unsigned reads_inflight;
	unsigned batches_inflight;
	unsigned jobs_inflight;
	uint32_t prefetch_cursor, background_cursor;
	uint64_t prefetch_end;
	bool prefetching, backgrounding, background_started;
	struct sg_op background_timer;

	bool closing;
	void (*close_done)(void *);
	void *close_userdata;
	struct sg_op close_op;

	struct sg_layer_stats stats;
};

static void maybe_continue_background(struct sg_layer *l);

/* An op's result is an int32_t; sizes are size_t.  Comparing through a cast of the size
 * would take a truncated size for complete. */
static bool res_is(int32_t res, size_t want)
{
	return res >= 0 && (size_t)res == want;
}

static void report_bad_chunk(struct sg_layer *l, uint32_t chunk, uint64_t file_offset,
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
static void maybe_close_done(struct sg_layer *l);
static uint64_t drop_chunk(struct sg_layer *l, uint32_t c);
static bool chunk_needs_fetch(const struct sg_layer *l, uint32_t c);
static int fetch_chunk(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk,
		       bool ondemand, struct sg_list *waiters);

/* ---- memory cache ---- */

struct sg_mem_budget {
	size_t max_bytes, used;
	/* Fetch buffers and the chunks they will become, from the start of a range request
	 * until its chunks are verified: speculative fetches (prefetch, background) wait while
	 * this would push the total over max_bytes; on-demand ones are counted and make the
	 * memory cache give way, but never wait (a reader is blocked on them). */
	size_t inflight;
	struct sg_list lru;        /* struct mem_entry via glru, most recent at the tail */
};

int sg_mem_budget_new(size_t max_bytes, struct sg_mem_budget **ret)
{
	struct sg_mem_budget *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->max_bytes = max_bytes;
	sg_list_init(&b->lru);
	*ret = b;
	return 0;
}

void sg_mem_budget_free(struct sg_mem_budget *b)
{
	free(b);   /* every layer using it is freed first */
}

size_t sg_mem_budget_used(const struct sg_mem_budget *b)
{
	return b->used + b->inflight;
}

static void mem_touch(struct sg_layer *l, struct mem_entry *e)
{
	sg_list_unlink(&e->lru);
	sg_list_insert_tail(&l->mem_lru, &e->lru);
	if (l->cfg.mem_budget) {
		sg_list_unlink(&e->glru);
		sg_list_insert_tail(&l->cfg.mem_budget->lru, &e->glru);
	}
}

/* Takes an entry out of its layer's cache (and the budget); frees it unless a job holds it
 * (then mem_unref does). */
static void mem_forget(struct mem_entry *e)
{
	struct sg_layer *l = e->layer;

	sg_list_unlink(&e->lru);
	e->lru.next = e->lru.prev = NULL;
	if (l->cfg.mem_budget) {
		sg_list_unlink(&e->glru);
		l->cfg.mem_budget->used -= e->size;
	}
	l->mem[e->chunk] = NULL;
	l->mem_bytes -= e->size;
	if (e->refs == 0)
		free(e);
}

static void mem_evict(struct sg_layer *l, size_t want)
{
	struct sg_mem_budget *b = l->cfg.mem_budget;
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &l->mem_lru) {
		if (l->mem_bytes + want <= l->cfg.mem_cache_bytes)
			break;
		struct mem_entry *e = sg_container_of(n, struct mem_entry, lru);
		if (!e->refs)
			mem_forget(e);
	}
	if (!b)
		return;
	/* Then the daemon-wide budget: the least recently used chunk of any layer goes. */
	sg_list_for_each_safe(n, tmp, &b->lru) {
		if (sg_mem_budget_used(b) + want <= b->max_bytes)
			break;
		struct mem_entry *e = sg_container_of(n, struct mem_entry, glru);
		if (!e->refs)
			mem_forget(e);
	}
}

static struct mem_entry *mem_new(struct sg_layer *l, uint32_t chunk, size_t size)
{
	struct mem_entry *e = malloc(sizeof(*e) + size);

	if (!e)
		return NULL;
	e->chunk = chunk;
	e->refs = 0;
	e->size = size;
	e->served = 0;
	e->layer = l;
	e->lru.next = e->lru.prev = NULL;
	e->glru.next = e->glru.prev = NULL;
	return e;
}

static void mem_insert(struct sg_layer *l, struct mem_entry *e)
{
	mem_evict(l, e->size);
	l->mem[e->chunk] = e;
	l->mem_bytes += e->size;
	sg_list_insert_tail(&l->mem_lru, &e->lru);
	if (l->cfg.mem_budget) {
		sg_list_insert_tail(&l->cfg.mem_budget->lru, &e->glru);
		l->cfg.mem_budget->used += e->size;
	}
}

/* Once every byte of a chunk went to readers, the kernel's page cache holds them (open files
 * keep it): a second copy here would only cost memory.  Read again after the page cache
 * dropped them, they come back from the disk cache. */
static void mem_served(struct mem_entry *e, size_t bytes)
{
	e->served += bytes;
	if (e->served < e->size || !e->lru.next)
		return;
	mem_forget(e);   /* freed now, or by the job holding it (mem_unref) */
}

static void mem_unref(struct sg_layer *l, struct mem_entry *e)
{
	if (--e->refs == 0 && !e->lru.next) {
		free(e);   /* never made it into the cache (closing), or dropped meanwhile */
		return;
	}
	/* An entry held by its cache write could not be evicted when the budget last needed
	 * room: now it can. */
	if (e->refs == 0 && l->cfg.mem_budget &&
	    sg_mem_budget_used(l->cfg.mem_budget) > l->cfg.mem_budget->max_bytes)
		mem_evict(l, 0);
}

/* ---- cache files ---- */

static bool present_get(const struct sg_layer *l, uint32_t c)
{
	return l->present[c >> 3] & (1u << (c & 7));
}

static bool trusted_get(const struct sg_layer *l, uint32_t c)
{
	return l->trusted[c >> 3] & (1u << (c & 7));
}

static void trusted_set(struct sg_layer *l, uint32_t c, bool on)
{
	if (on)
		l->trusted[c >> 3] |= (uint8_t)(1u << (c & 7));
	else
		l->trusted[c >> 3] &= (uint8_t)~(1u << (c & 7));
}

static void verify_continue(struct sg_layer *l);

static void touch(struct sg_layer *l, uint32_t c)
{
	if (l->stamp)
		l->stamp[c] = sg_cache_bound_tick(l->cfg.bound);
}

/* The cache file of a regular file, opened on first use and held in ref until fd_put.
 * Opening is a local metadata call done synchronously on the loop (one per file and
 * FD_SLOTS files at a time).  A descriptor is never closed while an op uses it: an op
 * waiting in the submission queue resolves its fd only when the kernel issues it (a closed
 * number may by then name another cache file), and a short transfer is resumed with the
 * same fd. */
static int fd_get(struct sg_layer *l, uint32_t node, struct fd_ref *ref)
{
	char path[4200];
	unsigned i;

	for (i = 0; i < FD_SLOTS; i++)
		if (l->fds[i].used && l->fds[i].node == node) {
			l->fds[i].busy++;
			*ref = (struct fd_ref){ .fd = l->fds[i].fd, .slot = (int)i };
			return 0;
		}
	snprintf(path, sizeof(path), "%s/%u", l->cache_dir, node);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* Clock replacement among the slots no op uses. */
	for (unsigned tries = 0; tries < FD_SLOTS; tries++) {
		i = l->fd_clock++ % FD_SLOTS;
		if (l->fds[i].used && l->fds[i].busy)
			continue;
		if (l->fds[i].used)
			close(l->fds[i].fd);
		l->fds[i] = (struct fd_slot){ .node = node, .fd = fd, .used = true, .busy = 1 };
		*ref = (struct fd_ref){ .fd = fd, .slot = (int)i };
		return 0;
	}
	*ref = (struct fd_ref){ .fd = fd, .slot = -1 };
	return 0;
}

static void fd_put(struct sg_layer *l, struct fd_ref *ref)
{
	if (ref->fd < 0)
		return;
	if (ref->slot >= 0)
		l->fds[ref->slot].busy--;
	else
		close(ref->fd);
	ref->fd = -1;
}

/* ---- reads ---- */

static void user_maybe_done(struct sg_layer_user *u);

static void read_done_cb(struct sg_op *op)
{
	struct layer_read *r = sg_container_of(op, struct layer_read, done_op);
	struct sg_layer *l = r->layer;
	struct sg_layer_user *u = r->user;
	ssize_t res = r->error ? r->error : (ssize_t)r->len;

	l->reads_inflight--;
	sg_list_unlink(&r->user_link);
	r->cb(r->userdata, op->res == -ECANCELED ? -ECANCELED : res);
	free(r);
	maybe_close_done(l);
	user_maybe_done(u);   /* last: its callback may end the layer */
}

static void read_finish(struct layer_read *r)
{
	if (sg_post(r->layer->loop, &r->done_op, 0, read_done_cb) < 0)
		read_done_cb(&r->done_op);   /* draining: the loop refuses new ops */
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

static const struct sg_toc_chunk *chunk_at(const struct sg_layer *l, uint32_t c)
{
	const struct sg_toc_node *n = sg_toc_node(l->toc, l->chunk_file[c]);
	return &sg_toc_chunks(l->toc, n)[c - n->first_chunk];
}

static size_t part_complete(struct read_part *p, const uint8_t *data, int error)
{
	struct layer_read *r = p->r;
	size_t copied = 0;

	if (error && !r->error)
		r->error = error;
	else if (!error)
		copied = part_fill(p, chunk_at(r->layer, p->chunk), data);
	if (--r->pending == 0)
		read_finish(r);
	return copied;
}

/* ---- jobs ---- */

static void job_free(struct chunk_job *j)
{
	struct sg_layer *l = j->layer;

	if (l->jobs[j->chunk] == j)
		l->jobs[j->chunk] = NULL;
	if (j->entry)
		mem_unref(l, j->entry);
	fd_put(l, &j->fdr);
	free(j->loadbuf);
	free(j);
	l->jobs_inflight--;
	maybe_close_done(l);
}

static void job_wake(struct chunk_job *j, int error)
{
	struct sg_list *n;

	while ((n = sg_list_pop(&j->waiters))) {
		struct read_part *p = sg_container_of(n, struct read_part, link);
		size_t copied = part_complete(p, j->entry ? j->entry->data : NULL, error);
		if (j->entry)
			mem_served(j->entry, copied);
	}
}

static void bitmap_written(struct sg_op *op)
{
	struct chunk_job *j = sg_container_of(op, struct chunk_job, bitmap_op);
	job_free(j);
}

static void cache_written(struct sg_op *op)
{
	struct chunk_job *j = sg_container_of(op, struct chunk_job, op);
	struct sg_layer *l = j->layer;
	uint32_t c = j->chunk;

	if (!res_is(op->res, j->entry->size) && l->cache_ent)
		sg_cache_bound_release(l->cache_ent, j->reserved);   /* not (all) written */
	/* Written while closing: the bytes stay accounted (data without its bit) until the
	 * layer is detached and its directory counted as a whole. */
	if (res_is(op->res, j->entry->size) && !l->closing) {
		if (!present_get(l, c)) {
			l->present[c >> 3] |= (uint8_t)(1u << (c & 7));
			l->stats.chunks_present++;
		} else if (l->cache_ent) {
			sg_cache_bound_release(l->cache_ent, j->reserved);   /* counted already */
		}
		trusted_set(l, c, true);   /* these are the bytes we verified before writing */
		/* Data before bit: the bitmap byte is written only after the data landed.  Writes
		 * of one byte may complete out of order; a lost bit means a refetch, and a stale
		 * one is caught by the digest check on load. */
		sg_op_set_group(&j->bitmap_op, &l->group);
		if (l->bitmap_fd >= 0 &&
		    sg_write(l->loop, &j->bitmap_op, l->bitmap_fd, &l->present[c >> 3], 1, c >> 3,
			     bitmap_written) == 0)
			return;
	}
	job_free(j);
}

/* A chunk's verified bytes are ready: serve the waiters, keep them in memory, and write
 * them to the disk cache if they did not come from there. */
static void job_ready(struct chunk_job *j, struct mem_entry *e)
{
	struct sg_layer *l = j->layer;

	j->entry = e;
	e->refs++;
	touch(l, j->chunk);
	if (!l->closing)
		mem_insert(l, e);
	job_wake(j, 0);
	if (j->from_disk || l->closing) {
		job_free(j);
		return;
	}
	const struct sg_toc_chunk *c = chunk_at(l, j->chunk);
	if (l->cache_ent) {
		/* Before cache_fd: making room may open (and recycle) cache file slots. */
		uint64_t bytes = sg_cache_bound_extent(l->cfg.bound, c->file_offset, c->size);
		if (sg_cache_bound_reserve(l->cache_ent, bytes) < 0) {
			l->stats.cache_writes_skipped++;   /* served, not cached */
			job_free(j);
			return;
		}
		j->reserved = bytes;
	}
	if (fd_get(l, j->file, &j->fdr) < 0) {
		if (l->cache_ent)
			sg_cache_bound_release(l->cache_ent, j->reserved);
		job_free(j);
		return;
	}
	sg_op_set_group(&j->op, &l->group);
	if (sg_write(l->loop, &j->op, j->fdr.fd, e->data, e->size, c->file_offset,
		     cache_written) < 0) {
		if (l->cache_ent)
			sg_cache_bound_release(l->cache_ent, j->reserved);
		job_free(j);
	}
}

/* A reader joins a chunk's job.  While the job produces the bytes the reader waits with the
 * others; once the job has them (it is only writing them to the disk cache now) its waiters
 * were woken already and will not be again, so the reader is served at once. */
static void job_join(struct chunk_job *j, struct read_part *p)
{
	if (j->entry) {
		mem_served(j->entry, part_complete(p, j->entry->data, 0));
		return;
	}
	sg_list_insert_tail(&j->waiters, &p->link);
}

static void job_fail(struct chunk_job *j, int error)
{
	job_wake(j, error);
	job_free(j);
}

static struct chunk_job *job_new(struct sg_layer *l, uint32_t chunk, bool ondemand)
{
	struct chunk_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->layer = l;
	j->chunk = chunk;
	j->file = l->chunk_file[chunk];
	j->ondemand = ondemand;
	sg_list_init(&j->waiters);
	j->fdr = (struct fd_ref){ .fd = -1, .slot = -1 };
	sg_op_init(&j->op);
	sg_op_init(&j->bitmap_op);
	l->jobs[chunk] = j;
	l->jobs_inflight++;
	return j;
}

static void disk_loaded(struct sg_op *op)
{
	struct chunk_job *j = sg_container_of(op, struct chunk_job, op);
	struct sg_layer *l = j->layer;
	const struct sg_toc_chunk *c = chunk_at(l, j->chunk);
	struct sg_esgz_error err;

	if (!res_is(op->res, c->size) || l->closing) {
		/* Short (a hole, a truncated file) or failed: forget the bit and fetch instead. */
		goto refetch;
	}
	if (!l->cfg.skip_verify || c->has_digest) {
		if (sg_esgz_verify_chunk(c, j->loadbuf, c->size, &err) < 0) {
			report_bad_chunk(l, j->chunk, c->file_offset, true);
			goto refetch;
		}
	}
	trusted_set(l, j->chunk, true);
	if (j->verify_only)
		l->stats.chunks_checked++;
	if (j->verify_only && sg_list_empty(&j->waiters)) {
		l->verify_inflight--;
		job_free(j);
		verify_continue(l);
		return;
	}
	if (j->verify_only) {
		j->verify_only = false;   /* a reader joined: serve it like any disk load */
		l->verify_inflight--;
		verify_continue(l);
	}
	struct mem_entry *e = mem_new(l, j->chunk, c->size);
	if (!e) {
		job_fail(j, -ENOMEM);
		return;
	}
	memcpy(e->data, j->loadbuf, c->size);
	free(j->loadbuf);
	j->loadbuf = NULL;
	l->stats.chunks_from_disk++;
	job_ready(j, e);
	return;

refetch:
	/* What is there is not the chunk: a hole, or bytes to throw away. */
	if (present_get(l, j->chunk)) {
		uint64_t freed = drop_chunk(l, j->chunk);
		if (l->cache_ent)
			sg_cache_bound_release(l->cache_ent, freed);
	}
	trusted_set(l, j->chunk, false);
	if (j->verify_only) {
		/* The file is not complete after all; nobody waits for the bytes. */
		l->verify_inflight--;
		if (l->closing || sg_list_empty(&j->waiters)) {
			job_free(j);
			verify_continue(l);
			return;
		}
		verify_continue(l);
	}
	if (l->closing) {
		job_fail(j, -ECANCELED);
		return;
	}
	/* Hand the waiters to a fresh fetch of the same chunk. */
	{
		struct sg_list waiters = { 0 };
		sg_list_init(&waiters);
		struct sg_list *n;
		while ((n = sg_list_pop(&j->waiters)))
			sg_list_insert_tail(&waiters, n);
		bool ondemand = j->ondemand;
		uint32_t chunk = j->chunk;
		job_free(j);
		int r = fetch_chunk(l, l->src, chunk, ondemand, &waiters);
		if (r < 0)
			while ((n = sg_list_pop(&waiters)))
				part_complete(sg_container_of(n, struct read_part, link), NULL, -EIO);
	}
}

static int start_disk_load(struct sg_layer *l, struct chunk_job *j)
{
	const struct sg_toc_chunk *c = chunk_at(l, j->chunk);
	int r = fd_get(l, j->file, &j->fdr);

	if (r < 0)
		return r;
	j->from_disk = true;
	j->loadbuf = malloc(c->size ? c->size : 1);
	if (!j->loadbuf)
		return -ENOMEM;
	sg_op_set_group(&j->op, &l->group);
	return sg_read(l->loop, &j->op, j->fdr.fd, j->loadbuf, c->size, c->file_offset, disk_loaded);
}

/* ---- size bound: eviction ---- */

/* No data of the chunk on disk, and none on its way there. */
static bool chunk_absent(const struct sg_layer *l, uint32_t c)
{
	return !present_get(l, c) && !l->jobs[c];
}

static bool file_pinned(const struct sg_layer *l, uint32_t node)
{
	return l->pins[node] > 0;
}

/* Not a chunk of a file the kernel reads directly (passthrough): it would read the hole. */
static bool chunk_evictable(const struct sg_layer *l, uint32_t c)
{
	return present_get(l, c) && !l->jobs[c] && !file_pinned(l, l->chunk_file[c]);
}

/* Forgets a chunk of the disk cache: the bit first (cleared on disk too, so that a crash
 * leaves at worst data without its bit), then a hole punched over its bytes, taking the
 * blocks it shares with a neighbour only when that neighbour is absent.  The punch is a
 * short synchronous metadata call (extent tree update, tens of microseconds); an
 * eviction batch makes at most a few dozen.  Returns the bytes accounted for the chunk
 * when its space was given back, 0 otherwise. */
static uint64_t drop_chunk(struct sg_layer *l, uint32_t c)
{
	const struct sg_toc_chunk *ch = chunk_at(l, c);
	const struct sg_toc_node *file = sg_toc_node(l->toc, l->chunk_file[c]);
	uint64_t b = l->block, start = ch->file_offset, end = ch->file_offset + ch->size;

	l->present[c >> 3] &= (uint8_t)~(1u << (c & 7));
	trusted_set(l, c, false);
	l->stats.chunks_present--;
	if (l->bitmap_fd >= 0 && pwrite(l->bitmap_fd, &l->present[c >> 3], 1, c >> 3) != 1) {
		/* The bit stays set on disk: the check on load finds a hole and refetches. */
	}
	if (ch->size == 0)
		return 0;
	if (start % b && (c == file->first_chunk || chunk_absent(l, c - 1)))
		start -= start % b;
	if (end % b && (c + 1 == file->first_chunk + file->nchunks || chunk_absent(l, c + 1)))
		end += b - end % b;
	struct fd_ref fdr;
	if (fd_get(l, l->chunk_file[c], &fdr) < 0)
		return 0;
	int punched = fallocate(fdr.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)start,
				(off_t)(end - start));
	fd_put(l, &fdr);
	if (punched < 0)
		return 0;   /* the data stays, and stays accounted */
	return l->cfg.bound ? sg_cache_bound_extent(l->cfg.bound, ch->file_offset, ch->size) : 0;
}

static bool cache_oldest(void *ctx, uint32_t *ret_stamp)
{
	struct sg_layer *l = ctx;
	uint32_t best = UINT32_MAX;
	bool any = false;

	for (uint32_t c = 0; c < l->n_chunks; c++) {
		if (!l->present[c >> 3]) {
			c |= 7;   /* a whole byte of the bitmap is empty */
			continue;
		}
		if (chunk_evictable(l, c) && l->stamp[c] <= best) {
			best = l->stamp[c];
			any = true;
		}
	}
	*ret_stamp = best;
	return any;
}

#define EVICT_MAX 64u

static void heap_sift_down(const uint32_t *stamp, uint32_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t big = i, a = 2 * i + 1, b = a + 1;
		if (a < n && stamp[h[a]] > stamp[h[big]])
			big = a;
		if (b < n && stamp[h[b]] > stamp[h[big]])
			big = b;
		if (big == i)
			return;
		uint32_t t = h[i];
		h[i] = h[big];
		h[big] = t;
		i = big;
	}
}

/* The least recently used chunks at or before max_stamp, found in one pass with a max-heap
 * of the max_chunks oldest, then evicted oldest first. */
static uint64_t cache_evict(void *ctx, uint32_t max_stamp, uint64_t want, unsigned max_chunks,
			    unsigned *ret_chunks)
{
	struct sg_layer *l = ctx;
	uint32_t h[EVICT_MAX];
	size_t n = 0, cap = max_chunks < EVICT_MAX ? max_chunks : EVICT_MAX;
	uint64_t freed = 0;

	*ret_chunks = 0;
	for (uint32_t c = 0; c < l->n_chunks && cap; c++) {
		if (!l->present[c >> 3]) {
			c |= 7;
			continue;
		}
		if (!chunk_evictable(l, c) || l->stamp[c] > max_stamp)
			continue;
		if (n < cap) {
			/* sift up */
			size_t i = n++;
			h[i] = c;
			while (i > 0 && l->stamp[h[(i - 1) / 2]] < l->stamp[h[i]]) {
				uint32_t t = h[i];
				h[i] = h[(i - 1) / 2];
				h[(i - 1) / 2] = t;
				i = (i - 1) / 2;
			}
		} else if (l->stamp[c] < l->stamp[h[0]]) {
			h[0] = c;
			heap_sift_down(l->stamp, h, n, 0);
		}
	}
	/* Pop the heap: the newest first, so the array ends up oldest first. */
	for (size_t k = n; k > 1; k--) {
		uint32_t t = h[0];
		h[0] = h[k - 1];
		h[k - 1] = t;
		heap_sift_down(l->stamp, h, k - 1, 0);
	}
	for (size_t i = 0; i < n && freed < want; i++) {
		uint64_t b = drop_chunk(l, h[i]);
		if (!b)
			continue;
		freed += b;
		(*ret_chunks)++;
		l->stats.chunks_evicted++;
		l->stats.evicted_bytes += b;
	}
	return freed;
}

static void cache_rescale(void *ctx)
{
	struct sg_layer *l = ctx;

	for (uint32_t c = 0; c < l->n_chunks; c++)
		l->stamp[c] >>= 1;
}

/* Would fetching the rest of the layer in the background fit under the watermark?  Asked
 * once when background fetch starts; afterwards it stops when the cache reaches the
 * watermark, so that a small cache is not churned by data nobody asked for. */
static bool background_fits(struct sg_layer *l, bool first)
{
	uint64_t rest = 0;

	if (!l->cfg.bound)
		return true;
	if (first)
		for (uint32_t c = 0; c < l->n_chunks; c++)
			if (chunk_needs_fetch(l, c)) {
				const struct sg_toc_chunk *ch = chunk_at(l, c);
				rest += sg_cache_bound_extent(l->cfg.bound, ch->file_offset, ch->size);
			}
	return sg_cache_bound_room(l->cfg.bound, rest);
}

/* ---- fetch batches ---- */

static void batch_free(struct fetch_batch *b)
{
	struct sg_layer *l = b->layer;

	l->batches_inflight--;
	if (l->cfg.mem_budget)
		l->cfg.mem_budget->inflight -= b->charged;
	free(b->buf);
	free(b->jobs);
	free(b);
}

static int failure_slot(const struct sg_layer *l, uint32_t chunk, uint32_t reader)
{
	for (unsigned i = 0; i < FAILED_RING; i++)
		if (l->failed[i].ns && l->failed[i].chunk == chunk && l->failed[i].reader == reader)
			return (int)i;
	return -1;
}

static bool failure_held(const struct sg_layer *l, uint32_t chunk, uint32_t reader)
{
	int i = failure_slot(l, chunk, reader);
	return i >= 0 && sg_now_ns() - l->failed[i].ns < FAILED_HOLD_NS;
}

/* Remembers the failure of j's chunk for each reader waiting on it (before they are woken). */
static void note_failed(struct sg_layer *l, const struct chunk_job *j)
{
	for (const struct sg_list *n = j->waiters.next; n != &j->waiters; n = n->next) {
		uint32_t reader = sg_container_of(n, struct read_part, link)->r->reader;
		int i = failure_slot(l, j->chunk, reader);
		if (i < 0) {
			i = (int)l->failed_next;
			l->failed_next = (l->failed_next + 1) % FAILED_RING;
		}
		l->failed[i].chunk = j->chunk;
		l->failed[i].reader = reader;
		l->failed[i].ns = sg_now_ns();
	}
}

static void batch_fetched(struct sg_op *op)
{
	struct fetch_batch *b = sg_container_of(op, struct fetch_batch, op);
	struct sg_layer *l = b->layer;

	for (size_t i = 0; i < b->n; i++) {
		struct chunk_job *j = b->jobs[i];
		const struct sg_toc_chunk *c = chunk_at(l, j->chunk);
		struct sg_esgz_error err;

		if (j->ondemand) {
			l->ondemand_inflight--;
			l->last_ondemand_ns = sg_now_ns();
		}
		if (!res_is(op->res, b->len) || l->closing) {
			if (!l->closing && op->res != -ECANCELED)
				note_failed(l, j);
			job_fail(j, l->closing ? -ECANCELED : -EIO);
			continue;
		}
		struct mem_entry *e = mem_new(l, j->chunk, c->size);
		if (!e) {
			job_fail(j, -ENOMEM);
			continue;
		}
		int r = sg_esgz_extract_chunk(l->gz, c, b->buf + (c->offset - b->offset),
					      c->next_offset - c->offset,
					      l->cfg.skip_verify && !c->has_digest, e->data, &err);
		if (r < 0) {
			/* A member that does not decompress, or bytes that do not match: either
			 * way the blob is not what the TOC describes.  Held like a failed fetch:
			 * the kernel's page-by-page retry must not fetch it again each time. */
			if (err.code != SG_ESGZ_E_NOMEM && err.code != SG_ESGZ_E_CANCELED) {
				report_bad_chunk(l, j->chunk, c->file_offset, false);
				note_failed(l, j);
			}
			free(e);
			job_fail(j, -EIO);
			continue;
		}
		l->stats.chunks_fetched++;
		job_ready(j, e);
	}
	if (op->res > 0)
		l->stats.fetched_bytes += (uint64_t)op->res;
	batch_free(b);
	/* After an on-demand batch too: background fetch that found the link busy waits for
	 * the last batch in flight, whichever it was, to look again. */
	maybe_continue_background(l);
	maybe_close_done(l);
}

/* Starts one range request for the given chunks (already sorted by blob offset, all
 * without jobs).  Returns the number of chunks taken, or a negative errno. */
static int batch_start(struct sg_layer *l, struct sg_range_source *src, const uint32_t *chunks,
		       size_t n, bool ondemand,
		       bool background)
{
	struct fetch_batch *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	b->layer = l;
	b->background = background;
	b->offset = chunk_at(l, chunks[0])->offset;
	uint64_t end = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sg_toc_chunk *c = chunk_at(l, chunks[i]);
		if (c->next_offset > end)
			end = c->next_offset;
	}
	b->len = (size_t)(end - b->offset);
	struct sg_mem_budget *mb = l->cfg.mem_budget;
	if (mb) {
		size_t need = b->len;
		for (size_t i = 0; i < n; i++)
			need += (size_t)chunk_at(l, chunks[i])->size;
		mem_evict(l, need);
		if (background && mb->inflight > 0 && sg_mem_budget_used(mb) + need > mb->max_bytes) {
			free(b);
			return -EAGAIN;   /* speculative: later, when memory is back */
		}
		mb->inflight += need;
		b->charged = need;
	}
	b->buf = malloc(b->len ? b->len : 1);
	b->jobs = calloc(n, sizeof(*b->jobs));
	if (!b->buf || !b->jobs) {
		if (mb)
			mb->inflight -= b->charged;
		free(b->buf);
		free(b->jobs);
		free(b);
		return -ENOMEM;
	}
	l->batches_inflight++;
	for (size_t i = 0; i < n; i++) {
		struct chunk_job *j = job_new(l, chunks[i], ondemand);
		if (!j) {
			r = -ENOMEM;
			goto fail;
		}
		b->jobs[b->n++] = j;
		if (ondemand) {
			l->ondemand_inflight++;
			l->last_ondemand_ns = sg_now_ns();
		}
	}
	sg_op_init(&b->op);
	sg_op_set_group(&b->op, &l->group);
	r = sg_range_read(src, b->offset, b->len, b->buf, &b->op, batch_fetched);
	if (r < 0)
		goto fail;
	l->stats.fetch_requests++;
	return (int)n;
fail:
	for (size_t i = 0; i < b->n; i++) {
		if (ondemand)
			l->ondemand_inflight--;
		job_fail(b->jobs[i], r);
	}
	batch_free(b);
	return r;
}

static bool chunk_needs_fetch(const struct sg_layer *l, uint32_t c)
{
	return !l->jobs[c] && !l->mem[c] && !present_get(l, c);
}

/* Was the chunk before this one (of the same file) read already?  Then the file is being
 * read sequentially and the next chunks are worth fetching with this one. */
static bool sequential(const struct sg_layer *l, uint32_t c)
{
	const struct sg_toc_node *file = sg_toc_node(l->toc, l->chunk_file[c]);
	return c > file->first_chunk && (l->mem[c - 1] || l->jobs[c - 1] || present_get(l, c - 1));
}

/* Fetches `chunk` in one range request together with what is cheap to take along: the next
 * chunks of the same file when it is read sequentially (read-ahead), and the members of the
 * following small files up to window_bytes further in the blob.  On a link with a 40 ms
 * round trip, 256 KiB more costs ~20 ms at 100 Mbit/s, while a later miss costs a round
 * trip; neighbouring files in a layer are read together (a package, a module directory).
 * Waiters move onto the chunk's job. */
static int fetch_chunk(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk,
		       bool ondemand, struct sg_list *waiters)
{
	uint32_t list[64];
	size_t n = 0;
	uint32_t file = l->chunk_file[chunk];
	const struct sg_toc_chunk *c0 = chunk_at(l, chunk);
	uint64_t start = c0->offset, end = c0->next_offset, prev = c0->offset;
	uint64_t window_end = c0->next_offset + (ondemand ? l->cfg.window_bytes : 0);
	unsigned same_file = 0;
	bool seq = sequential(l, chunk);
	int r;

	list[n++] = chunk;
	for (uint32_t c = chunk + 1; c < l->n_chunks && n < 64; c++) {
		const struct sg_toc_chunk *c1 = chunk_at(l, c);
		bool mine = l->chunk_file[c] == file;
		if (!chunk_needs_fetch(l, c) || c1->offset < prev || c1->offset > end + MAX_BATCH_GAP ||
		    c1->next_offset - start > l->cfg.max_batch_bytes)
			break;
		if (mine ? (!seq || same_file >= l->cfg.readahead_chunks) : c1->next_offset > window_end)
			break;
		same_file += mine;
		list[n++] = c;
		prev = c1->offset;
		if (c1->next_offset > end)
			end = c1->next_offset;
	}
	r = batch_start(l, src, list, n, ondemand, false);
	if (r < 0)
		return r;
	struct sg_list *node;
	while ((node = sg_list_pop(waiters)))
		sg_list_insert_tail(&l->jobs[chunk]->waiters, node);
	return 0;
}

/* ---- stargz.index.json ---- */

/* Its bytes are the TOC JSON, verified against the TOC digest when the TOC was loaded.
 * sg_layer_new writes them from that verified copy to CACHE/stargz.index.json at every open
 * (a plain file holding the decompressed bytes, like the other cache files) and keeps the
 * descriptor of the file it wrote: a copy left by an earlier mount is never trusted.  The
 * write is synchronous on the loop, like the TOC parse that just produced the bytes (a few
 * ms for a TOC of 10 MB into the page cache). */
static int store_toc_json(struct sg_layer *l)
{
	char path[4200], tmp[4220];
	const void *json;
	size_t len, done = 0;
	int fd, r = 0;

	if (!sg_toc_json(l->toc, &json, &len))
		return 0;   /* not kept by the loader: reads of the file fail with EIO */
	snprintf(path, sizeof(path), "%s/%s", l->cache_dir, SG_ESGZ_TOC_NAME);
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)json + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlink(tmp);
		close(fd);
		return r;
	}
	l->toc_json_fd = fd;
	sg_toc_drop_json(l->toc);
	return 0;
}

static void toc_json_read_done(struct sg_op *op)
{
	struct layer_read *r = sg_container_of(op, struct layer_read, done_op);

	/* The file was written whole at open: anything short is damage, not the end. */
	if (op->res != -ECANCELED && !res_is(op->res, r->len))
		r->error = -EIO;
	read_done_cb(op);
}

/* r: a read of `len` bytes (clamped to the file) with no chunk parts. */
static void read_toc_json(struct sg_layer *l, struct layer_read *r)
{
	if (r->len > (1u << 30))
		r->len = 1u << 30;   /* one op's result; FUSE reads are at most 1 MiB */
	if (r->len > 0 && l->toc_json_fd < 0)
		r->error = -EIO;
	if (r->len > 0 && !r->error) {
		sg_op_set_group(&r->done_op, &l->group);
		if (sg_read(l->loop, &r->done_op, l->toc_json_fd, r->buf, r->len, r->offset,
			    toc_json_read_done) == 0)
			return;
		r->error = -EIO;
	}
	read_finish(r);
}

/* ---- public read ---- */

int sg_layer_read(struct sg_layer_user *u, uint32_t reader, uint32_t node, uint64_t offset,
		  size_t len, void *buf, sg_layer_read_cb cb, void *userdata)
{
	struct sg_layer *l = u->layer;
	const struct sg_toc_node *n;
	const struct sg_toc_chunk *chunks;
	struct layer_read *r;
	uint32_t first = 0, count = 0;

	if (l->closing || u->closing)
		return -ECANCELED;
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	n = sg_toc_resolve(l->toc, sg_toc_node(l->toc, node));
	if (n->type != SG_TOC_REG)
		return -EISDIR;
	node = (uint32_t)(n - sg_toc_node(l->toc, 0));
	if (offset >= n->size)
		len = 0;
	else if (len > n->size - offset)
		len = (size_t)(n->size - offset);
	chunks = sg_toc_chunks(l->toc, n);
	if (len > 0) {
		/* Chunks are sorted by file offset: find the first and last overlapping. */
		uint32_t lo = 0, hi = n->nchunks;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (chunks[mid].file_offset + chunks[mid].size <= offset)
				lo = mid + 1;
			else
				hi = mid;
		}
		first = lo;
		while (first + count < n->nchunks && chunks[first + count].file_offset < offset + len)
			count++;
	}
	r = calloc(1, sizeof(*r) + count * sizeof(r->parts[0]));
	if (!r)
		return -ENOMEM;
	r->layer = l;
	r->user = u;
	sg_list_insert_tail(&u->reads, &r->user_link);
	r->cb = cb;
	r->userdata = userdata;
	r->buf = buf;
	r->reader = reader;
	r->file = node;
	r->offset = offset;
	r->len = len;
	r->n_parts = count;
	r->pending = count + 1;   /* +1 until every part is placed */
	sg_op_init(&r->done_op);
	l->reads_inflight++;
	if (n->flags & SG_TOC_F_SELF) {
		read_toc_json(l, r);
		return 0;
	}

	for (uint32_t i = 0; i < count; i++) {
		uint32_t c = n->first_chunk + first + i;
		struct read_part *p = &r->parts[i];
		p->r = r;
		p->chunk = c;
		touch(l, c);
		if (l->mem[c]) {
			mem_touch(l, l->mem[c]);
			l->stats.chunks_from_memory++;
			struct mem_entry *e = l->mem[c];
			mem_served(e, part_complete(p, e->data, 0));
			continue;
		}
		if (l->jobs[c]) {
			job_join(l->jobs[c], p);
			continue;
		}
		if (present_get(l, c)) {
			struct chunk_job *j = job_new(l, c, true);
			int e = j ? start_disk_load(l, j) : -ENOMEM;
			if (e == 0) {
				sg_list_insert_tail(&j->waiters, &p->link);
				continue;
			}
			if (j)
				job_free(j);
		}
		if (failure_held(l, c, reader)) {
			part_complete(p, NULL, -EIO);
			continue;
		}
		struct sg_list w;
		sg_list_init(&w);
		sg_list_insert_tail(&w, &p->link);
		if (fetch_chunk(l, u->src ? u->src : l->src, c, true, &w) < 0) {
			sg_list_unlink(&p->link);
			part_complete(p, NULL, -EIO);
		}
	}
	if (--r->pending == 0)
		read_finish(r);
	return 0;
}

/* ---- trust checks for passthrough ----
 *
 * A file handed to the kernel is read without us seeing the bytes, so before that every
 * chunk of its cache file must have been verified during this mount.  After a restart the
 * chunks on disk are untrusted: the check reads them back (VERIFY_PARALLEL at a time, one
 * file after the other) and compares each with its digest, like any disk load. */

struct verify_req {
	struct sg_layer *layer;
	struct sg_layer_user *user;
	struct sg_list link;
	struct sg_op op;
	uint32_t node;
	int result;
	void (*cb)(void *userdata, int res);
	void *userdata;
};

static void verify_delivered(struct sg_op *op)
{
	struct verify_req *v = sg_container_of(op, struct verify_req, op);
	struct sg_layer *l = v->layer;

	struct sg_layer_user *u = v->user;

	l->verify_pending--;
	u->verifies--;
	v->cb(v->userdata, v->result);
	free(v);
	maybe_close_done(l);
	user_maybe_done(u);   /* last: its callback may end the layer */
}

static void verify_deliver(struct sg_layer *l, struct verify_req *v, int result)
{
	v->result = result;
	if (sg_post(l->loop, &v->op, 0, verify_delivered) < 0)
		verify_delivered(&v->op);   /* draining */
}

static bool file_complete(const struct sg_layer *l, const struct sg_toc_node *n, bool *trusted)
{
	*trusted = true;
	for (uint32_t i = 0; i < n->nchunks; i++) {
		uint32_t c = n->first_chunk + i;
		if (!present_get(l, c) || l->jobs[c])
			return false;   /* missing, or still being written */
		if (!trusted_get(l, c))
			*trusted = false;
	}
	return true;
}

static void verify_continue(struct sg_layer *l)
{
	while (!sg_list_empty(&l->verify_reqs) && l->verify_inflight < VERIFY_PARALLEL) {
		struct verify_req *v = sg_container_of(l->verify_reqs.next, struct verify_req, link);
		const struct sg_toc_node *n = sg_toc_node(l->toc, v->node);
		uint32_t end = n->first_chunk + n->nchunks;
		bool trusted;
		if (l->closing) {
			sg_list_unlink(&v->link);
			verify_deliver(l, v, -ECANCELED);
			continue;
		}
		if (l->verify_chunk < n->first_chunk)
			l->verify_chunk = n->first_chunk;
		if (l->verify_chunk >= end) {
			if (l->verify_inflight > 0)
				return;   /* the file's last checks are still reading */
			sg_list_unlink(&v->link);
			l->verify_chunk = 0;
			verify_deliver(l, v, file_complete(l, n, &trusted) && trusted ? 0 : -ENOENT);
			continue;
		}
		uint32_t c = l->verify_chunk++;
		if (!present_get(l, c) || trusted_get(l, c) || l->jobs[c])
			continue;   /* nothing to check, or a load in flight checks it anyway */
		struct chunk_job *j = job_new(l, c, false);
		if (!j)
			return;
		j->verify_only = true;
		l->verify_inflight++;
		if (start_disk_load(l, j) < 0) {
			l->verify_inflight--;
			job_free(j);
		}
	}
}

int sg_layer_open_verified(struct sg_layer *l, uint32_t node)
{
	char path[4200];
	bool trusted;

	if (l->closing)
		return -ECANCELED;
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	const struct sg_toc_node *n = sg_toc_resolve(l->toc, sg_toc_node(l->toc, node));
	if (n->type != SG_TOC_REG || n->size == 0 || n->nchunks == 0)
		return -ENOENT;
	node = (uint32_t)(n - sg_toc_node(l->toc, 0));
	if (!file_complete(l, n, &trusted))
		return -ENOENT;
	if (!trusted)
		return -EAGAIN;
	snprintf(path, sizeof(path), "%s/%u", l->cache_dir, node);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != n->size) {
		/* A cache file that is not exactly the file would serve wrong bytes at its end. */
		close(fd);
		return -ENOENT;
	}
	return fd;
}

int sg_layer_pin_file(struct sg_layer *l, uint32_t node, bool pin)
{
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	if (pin) {
		if (l->pins[node] == UINT16_MAX)
			return -EOVERFLOW;   /* the caller serves the file itself instead */
		l->pins[node]++;
	} else if (l->pins[node] > 0) {
		l->pins[node]--;
	}
	return 0;
}

int sg_layer_verify_file(struct sg_layer_user *u, uint32_t node,
			 void (*cb)(void *userdata, int res), void *userdata)
{
	struct sg_layer *l = u->layer;

	if (l->closing || u->closing)
		return -ECANCELED;
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	const struct sg_toc_node *n = sg_toc_resolve(l->toc, sg_toc_node(l->toc, node));
	if (n->type != SG_TOC_REG)
		return -ENOENT;
	struct verify_req *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->layer = l;
	v->user = u;
	u->verifies++;
	v->node = (uint32_t)(n - sg_toc_node(l->toc, 0));
	v->cb = cb;
	v->userdata = userdata;
	sg_op_init(&v->op);
	l->verify_pending++;
	sg_list_insert_tail(&l->verify_reqs, &v->link);
	verify_continue(l);
	return 0;
}

/* ---- prefetch and background fetch ---- */

/* Collects the next batch of missing chunks from *cursor on (blob order), stopping at
 * `limit` (blob offset) and at max_batch_bytes.  Returns how many it started (0 = done). */
static int next_batch(struct sg_layer *l, uint32_t *cursor, uint64_t limit, size_t max_bytes,
		      bool background)
{
	uint32_t list[256];
	size_t n = 0;
	uint64_t start = 0, end = 0;

	while (*cursor < l->n_chunks && n < 256) {
		uint32_t c = *cursor;
		const struct sg_toc_chunk *ch = chunk_at(l, c);
		if (ch->next_offset > limit) {
			*cursor = l->n_chunks;
			break;
		}
		if (!chunk_needs_fetch(l, c)) {
			(*cursor)++;
			continue;
		}
		if (n > 0 && (ch->offset < start || ch->offset > end + MAX_BATCH_GAP ||
			      ch->next_offset - start > max_bytes))
			break;
		if (n == 0)
			start = ch->offset;
		list[n++] = c;
		if (ch->next_offset > end)
			end = ch->next_offset;
		(*cursor)++;
	}
	if (n == 0)
		return 0;
	int r = batch_start(l, l->src, list, n, false, background);
	if (r == -EAGAIN)
		*cursor = list[0];   /* not started: the same chunks next time */
	return r < 0 ? r : (int)n;
}

static void background_tick(struct sg_op *op)
{
	struct sg_layer *l = sg_container_of(op, struct sg_layer, background_timer);
	if (op->res == -ECANCELED) {
		maybe_close_done(l);   /* the timer was the last thing a close waited for */
		return;
	}
	l->background_started = true;
	maybe_continue_background(l);
}

static void background_retry(struct sg_layer *l)
{
	if (!sg_op_busy(&l->background_timer))
		(void)sg_timer_start(l->loop, &l->background_timer, BACKGROUND_RETRY_NS,
				     background_tick);
}

static void maybe_continue_background(struct sg_layer *l)
{
	if (l->closing)
		return;
	if (l->prefetching) {
		/* Prefetch: several requests back to back, the prioritized files are wanted now. */
		while (l->batches_inflight < 2) {
			int r = next_batch(l, &l->prefetch_cursor, l->prefetch_end,
					   l->cfg.max_batch_bytes, true);
			if (r == -EAGAIN) {
				background_retry(l);   /* memory is short: look again shortly */
				return;
			}
			if (r <= 0) {
				if (l->batches_inflight == 0) {
					l->prefetching = false;
					l->stats.prefetch_done = true;
				}
				break;
			}
		}
		if (l->prefetching)
			return;
	}
	if (!l->backgrounding || l->batches_inflight > 0)
		return;
	if (!l->background_started) {
		if (!sg_op_busy(&l->background_timer))
			(void)sg_timer_start(l->loop, &l->background_timer, l->cfg.background_delay_ns,
					     background_tick);
		return;
	}
	if (l->ondemand_inflight > 0 || sg_now_ns() - l->last_ondemand_ns < BACKGROUND_QUIET_NS) {
		/* Yield to on-demand reads, and leave the link to a workload that is busy
		 * reading: look again shortly. */
		if (!sg_op_busy(&l->background_timer))
			(void)sg_timer_start(l->loop, &l->background_timer, BACKGROUND_RETRY_NS,
					     background_tick);
		return;
	}
	if (!background_fits(l, l->background_cursor == 0)) {
		l->backgrounding = false;
		l->stats.background_skipped = true;
		return;
	}
	int r = next_batch(l, &l->background_cursor, UINT64_MAX, BACKGROUND_BATCH, true);
	if (r == -EAGAIN) {
		background_retry(l);
		return;
	}
	if (r <= 0) {
		l->backgrounding = false;
		l->stats.background_done = r == 0;
	}
}

/* ---- lifecycle ---- */

static int load_bitmap(struct sg_layer *l)
{
	char path[4200];
	size_t bytes = (l->n_chunks + 7) / 8;
	struct stat st;

	snprintf(path, sizeof(path), "%s/chunks.bitmap", l->cache_dir);
	l->bitmap_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (l->bitmap_fd < 0)
		return -errno;
	if (fstat(l->bitmap_fd, &st) == 0 && (size_t)st.st_size == bytes) {
		if (pread(l->bitmap_fd, l->present, bytes, 0) != (ssize_t)bytes)
			memset(l->present, 0, bytes);
	} else if (ftruncate(l->bitmap_fd, 0) < 0 || ftruncate(l->bitmap_fd, (off_t)bytes) < 0) {
		return -errno;   /* a bitmap of another size belongs to another TOC: start over */
	}
	for (uint32_t c = 0; c < l->n_chunks; c++)
		if (present_get(l, c))
			l->stats.chunks_present++;
	return 0;
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
	l->bitmap_fd = -1;
	l->toc_json_fd = -1;
	if (!l->cfg.mem_cache_bytes)
		l->cfg.mem_cache_bytes = DEFAULT_MEM_CACHE;
	if (!l->cfg.max_batch_bytes)
		l->cfg.max_batch_bytes = DEFAULT_BATCH;
	if (!l->cfg.readahead_chunks)
		l->cfg.readahead_chunks = DEFAULT_READAHEAD;
	if (!l->cfg.window_bytes)
		l->cfg.window_bytes = DEFAULT_WINDOW;
	if (!l->cfg.background_delay_ns)
		l->cfg.background_delay_ns = DEFAULT_BACKGROUND_DELAY_NS;
	snprintf(l->cache_dir, sizeof(l->cache_dir), "%s", config->cache_dir);
	l->cfg.cache_dir = l->cache_dir;
	sg_group_init(&l->group);
	sg_list_init(&l->mem_lru);
	sg_list_init(&l->verify_reqs);
	sg_list_init(&l->users);
	sg_op_init(&l->background_timer);
	sg_op_set_group(&l->background_timer, &l->group);
	sg_op_init(&l->close_op);

	r = sg_gz_new(&l->gz);
	if (r < 0)
		goto fail;
	if (mkdir(l->cache_dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}

	/* Chunk index -> owning file. */
	uint32_t count = sg_toc_count(toc);
	for (uint32_t i = 0; i < count; i++) {
		const struct sg_toc_node *n = sg_toc_node(toc, i);
		if (n->type == SG_TOC_REG && n->nchunks > 0 && n->first_chunk + n->nchunks > l->n_chunks)
			l->n_chunks = n->first_chunk + n->nchunks;
	}
	l->chunk_file = calloc(l->n_chunks + 1, sizeof(*l->chunk_file));
	l->jobs = calloc(l->n_chunks + 1, sizeof(*l->jobs));
	l->mem = calloc(l->n_chunks + 1, sizeof(*l->mem));
	l->present = calloc((l->n_chunks + 7) / 8 + 1, 1);
	l->trusted = calloc((l->n_chunks + 7) / 8 + 1, 1);
	l->pins = calloc(count + 1, sizeof(*l->pins));
	if (config->bound)
		l->stamp = calloc(l->n_chunks + 1, sizeof(*l->stamp));
	if (!l->chunk_file || !l->jobs || !l->mem || !l->present || !l->trusted || !l->pins ||
	    (config->bound && !l->stamp)) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < count; i++) {
		const struct sg_toc_node *n = sg_toc_node(toc, i);
		if (n->type == SG_TOC_REG)
			for (uint32_t c = 0; c < n->nchunks; c++)
				l->chunk_file[n->first_chunk + c] = i;
	}
	l->stats.chunks_total = l->n_chunks;
	r = load_bitmap(l);
	if (r == 0)
		r = store_toc_json(l);
	if (r < 0)
		goto fail;
	l->block = config->bound ? sg_cache_bound_block_size(config->bound) : 4096u;
	if (config->bound) {
		/* Chunks found on disk count as used long ago: the first to go unless read. */
		uint64_t present = 0;
		for (uint32_t c = 0; c < l->n_chunks; c++)
			if (present_get(l, c)) {
				const struct sg_toc_chunk *ch = chunk_at(l, c);
				present += sg_cache_bound_extent(config->bound, ch->file_offset, ch->size);
			}
		struct sg_cache_bound_client client = {
			.oldest = cache_oldest, .evict = cache_evict, .rescale = cache_rescale, .ctx = l,
		};
		r = sg_cache_bound_attach(config->bound, l->cache_dir, present, &client, &l->cache_ent);
		if (r < 0)
			goto fail;
	}

	if (config->prefetch && sg_toc_has_prefetch(toc, &l->prefetch_end) && l->prefetch_end > 0)
		l->prefetching = true;
	else if (config->prefetch && config->prefetch_bytes && !sg_toc_has_no_prefetch_landmark(toc)) {
		/* No landmark: the image was not optimized; take the first prefetch_bytes of the
		 * blob, as the reference does with its stargz.prefetch label. */
		l->prefetch_end = config->prefetch_bytes;
		l->prefetching = true;
	}
	else
		l->stats.prefetch_done = true;
	l->backgrounding = config->background_fetch;
	*ret_layer = l;
	return 0;
fail:
	sg_layer_free(l);
	return r;
}

void sg_layer_start(struct sg_layer *l)
{
	if (l->started || l->closing)
		return;
	l->started = true;
	maybe_continue_background(l);
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
	sg_op_init(&u->done_op);
	sg_list_insert_tail(&l->users, &u->link);
	l->n_users++;
	*ret = u;
	return 0;
}

static void user_done_cb(struct sg_op *op)
{
	struct sg_layer_user *u = sg_container_of(op, struct sg_layer_user, done_op);
	struct sg_layer *l = u->layer;
	void (*done)(void *) = u->done;
	void *ud = u->done_userdata;

	sg_list_unlink(&u->link);
	l->n_users--;
	free(u);
	done(ud);
}

static void user_maybe_done(struct sg_layer_user *u)
{
	if (!u->closing || !sg_list_empty(&u->reads) || u->verifies || sg_op_busy(&u->done_op))
		return;
	if (sg_post(u->layer->loop, &u->done_op, 0, user_done_cb) < 0)
		user_done_cb(&u->done_op);   /* draining: nothing else will run it */
}

/* Takes a read off the chunks it waits for: its callback follows with -ECANCELED. */
static void read_cancel(struct layer_read *r)
{
	if (r->error == -ECANCELED)
		return;   /* already on its way */
	r->error = -ECANCELED;
	if (sg_op_busy(&r->done_op)) {
		/* stargz.index.json's read in flight, or the callback already posted */
		(void)sg_op_cancel(&r->done_op);
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

void sg_layer_user_close(struct sg_layer_user *u, void (*done)(void *userdata), void *userdata)
{
	struct sg_layer *l = u->layer;
	struct sg_list *n, *tmp;

	u->closing = true;
	u->done = done;
	u->done_userdata = userdata;
	sg_list_for_each_safe(n, tmp, &u->reads)
		read_cancel(sg_container_of(n, struct layer_read, user_link));
	sg_list_for_each_safe(n, tmp, &l->verify_reqs) {
		struct verify_req *v = sg_container_of(n, struct verify_req, link);
		if (v->user != u)
			continue;
		if (n == l->verify_reqs.next)
			l->verify_chunk = 0;   /* the head: the next request starts afresh */
		sg_list_unlink(&v->link);
		verify_deliver(l, v, -ECANCELED);
	}
	verify_continue(l);
	user_maybe_done(u);
}

static void close_done_cb(struct sg_op *op)
{
	struct sg_layer *l = sg_container_of(op, struct sg_layer, close_op);
	void (*done)(void *) = l->close_done;

	l->close_done = NULL;   /* once */
	if (done)
		done(l->close_userdata);
}

static void maybe_close_done(struct sg_layer *l)
{
	if (!l->closing || l->jobs_inflight || l->batches_inflight || l->reads_inflight ||
	    l->verify_pending || !sg_group_idle(&l->group) || sg_op_busy(&l->close_op))
		return;
	if (!l->close_done)
		return;
	if (sg_post(l->loop, &l->close_op, 0, close_done_cb) < 0)
		close_done_cb(&l->close_op);
}

void sg_layer_close(struct sg_layer *l, void (*done)(void *userdata), void *userdata)
{
	/* Users go first: their callbacks point into objects that are about to go. */
	SG_FREE_CHECK(l->n_users > 0, "layer (closed with users)");
	l->closing = true;
	l->prefetching = l->backgrounding = false;
	l->close_done = done;
	l->close_userdata = userdata;
	sg_group_cancel(&l->group);
	verify_continue(l);   /* answers the waiting trust checks with -ECANCELED */
	maybe_close_done(l);
}

void sg_layer_free(struct sg_layer *l)
{
	struct sg_list *n;

	if (!l)
		return;
	SG_FREE_CHECK(l->n_users || l->jobs_inflight || l->batches_inflight || l->reads_inflight ||
		      l->verify_pending || !sg_group_idle(&l->group) || sg_op_busy(&l->close_op),
		      "layer");
	while ((n = l->mem_lru.next) != &l->mem_lru) {
		struct mem_entry *e = sg_container_of(n, struct mem_entry, lru);
		e->refs = 0;   /* no job is left */
		mem_forget(e);
	}
	for (unsigned i = 0; i < FD_SLOTS; i++)
		if (l->fds[i].used)
			close(l->fds[i].fd);
	if (l->bitmap_fd >= 0) {
		/* The last bits' own writes may have been cancelled by the close: the bitmap in
		 * memory only has bits whose data landed, so it is the one to keep.  (A short
		 * synchronous write at unmount, n_chunks / 8 bytes.) */
		size_t bytes = (l->n_chunks + 7) / 8;
		if (bytes && pwrite(l->bitmap_fd, l->present, bytes, 0) != (ssize_t)bytes) {
			/* a bit lost is a refetch, never a wrong byte */
		}
		close(l->bitmap_fd);
	}
	if (l->toc_json_fd >= 0)
		close(l->toc_json_fd);
	sg_cache_bound_detach(l->cache_ent);
	free(l->stamp);
	free(l->chunk_file);
	free(l->jobs);
	free(l->mem);
	free(l->present);
	free(l->trusted);
	free(l->pins);
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
	ret->cache_bytes = l->cache_ent ? sg_cache_bound_layer_bytes(l->cache_ent) : 0;
}
