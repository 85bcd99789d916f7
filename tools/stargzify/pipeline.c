/* The compression pipeline (pipeline.h). */
#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tools/stargzify/pipeline.h"
#include "tools/stargzify/sbuf.h"
#include "tools/stargzify/util.h"

#define WBUF_SIZE (1u << 20)
#define JOB_BATCH (256u << 10)  /* members are batched into jobs of at least this much input */

/* A job is one or more consecutive gzip members; workers compress each member of a job
 * separately, the main thread writes jobs in order.  The jobs form a ring of 2 * nthreads + 1
 * slots, numbered by seq: a slot is reused once its previous job is written. */

enum job_state { JOB_FREE, JOB_FILLING, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct sz_job {
	struct sbuf in;
	uint8_t *out;
	size_t out_len, out_cap;
	size_t *mem_in_end;     /* end of each member in `in` */
	size_t *mem_out_end;    /* end of each member in `out` (set by the worker) */
	size_t n_mem, cap_mem;
	uint64_t first_member;  /* global number of the job's first member */
	uint64_t seq;
	enum job_state state;
	bool failed;
};

struct sz_pipeline {
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	struct sz_job *jobs;
	unsigned njobs, nthreads;
	pthread_t *threads;
	int level;
	bool stop;
	uint64_t next_seq;      /* next job number to open */
	uint64_t next_take;     /* next job a worker takes */
	uint64_t next_write;    /* next job written to the output */
	/* output */
	struct sbuf wbuf;       /* small members are batched into fewer write()s */
	int out_fd;
	uint64_t out_off;
	struct sg_sha256 blob_hash;
	uint64_t *member_off;   /* compressed offset of each member */
	size_t member_cap;
	int err;
};

static void *worker_main(void *arg)
{
	struct sz_pipeline *p = arg;
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(p->level);

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct sz_job *j = &p->jobs[p->next_take % p->njobs];
		while (!p->stop && !(j->state == JOB_QUEUED && j->seq == p->next_take)) {
			pthread_cond_wait(&p->cv_work, &p->mu);
			j = &p->jobs[p->next_take % p->njobs];
		}
		if (p->stop)
			break;
		p->next_take++;
		j->state = JOB_RUNNING;
		pthread_cond_broadcast(&p->cv_work);
		pthread_mutex_unlock(&p->mu);

		bool failed = !c;
		if (c) {
			size_t bound = 0, start = 0;
			for (size_t k = 0; k < j->n_mem; k++) {
				bound += libdeflate_gzip_compress_bound(c, j->mem_in_end[k] - start);
				start = j->mem_in_end[k];
			}
			if (bound > j->out_cap) {
				uint8_t *o = realloc(j->out, bound);
				if (o) {
					j->out = o;
					j->out_cap = bound;
				}
			}
			failed = bound > j->out_cap;
			j->out_len = 0;
			start = 0;
			for (size_t k = 0; k < j->n_mem && !failed; k++) {
				size_t n = libdeflate_gzip_compress(c, j->in.p + start, j->mem_in_end[k] - start,
								    j->out + j->out_len, j->out_cap - j->out_len);
				failed = n == 0;
				j->out_len += n;
				j->mem_out_end[k] = j->out_len;
				start = j->mem_in_end[k];
			}
		}

		pthread_mutex_lock(&p->mu);
		j->failed = failed;
		j->state = JOB_DONE;
		pthread_cond_broadcast(&p->cv_done);
	}
	pthread_mutex_unlock(&p->mu);
	libdeflate_free_compressor(c);
	return NULL;
}

/* Writes finished jobs in order; with wait, blocks until every job before `until` is written.
 * Called with the lock held. */
static int pipeline_drain(struct sz_pipeline *p, uint64_t until, bool wait)
{
	while (p->next_write < p->next_seq && (p->next_write < until || !wait)) {
		struct sz_job *j = &p->jobs[p->next_write % p->njobs];
		if (j->state != JOB_DONE || j->seq != p->next_write) {
			if (!wait || j->state == JOB_FILLING)
				return 0;
			pthread_cond_wait(&p->cv_done, &p->mu);
			continue;
		}
		if (j->failed) {
			sz_errorf("compression failed (out of memory?)");
			p->err = -ENOMEM;
			return p->err;
		}
		if (j->first_member + j->n_mem > p->member_cap) {
			size_t ncap = p->member_cap ? p->member_cap : 1024;
			while (ncap < j->first_member + j->n_mem)
				ncap *= 2;
			uint64_t *m = realloc(p->member_off, ncap * sizeof(*m));
			if (!m)
				return p->err = -ENOMEM;
			p->member_off = m;
			p->member_cap = ncap;
		}
		for (size_t k = 0; k < j->n_mem; k++)
			p->member_off[j->first_member + k] = p->out_off + (k ? j->mem_out_end[k - 1] : 0);
		pthread_mutex_unlock(&p->mu);
		int r = 0;
		sg_sha256_update(&p->blob_hash, j->out, j->out_len);
		bool direct = j->out_len >= WBUF_SIZE / 2;
		if (p->wbuf.len && (direct || p->wbuf.len + j->out_len > WBUF_SIZE)) {
			r = sz_write_all(p->out_fd, p->wbuf.p, p->wbuf.len);
			p->wbuf.len = 0;
		}
		if (r == 0 && direct)
			r = sz_write_all(p->out_fd, j->out, j->out_len);
		else if (r == 0)
			sb_put(&p->wbuf, j->out, j->out_len);
		if (p->wbuf.oom)
			r = -ENOMEM;
		pthread_mutex_lock(&p->mu);
		if (r < 0) {
			sz_errorf("writing the output: %s", strerror(-r));
			return p->err = r;
		}
		p->out_off += j->out_len;
		j->state = JOB_FREE;
		j->in.len = 0;
		p->next_write++;
	}
	return 0;
}

void sz_pipeline_free(struct sz_pipeline *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	if (p->jobs) {
		for (unsigned i = 0; i < p->njobs; i++) {
			sb_free(&p->jobs[i].in);
			free(p->jobs[i].out);
			free(p->jobs[i].mem_in_end);
			free(p->jobs[i].mem_out_end);
		}
	}
	free(p->jobs);
	free(p->threads);
	free(p->member_off);
	sb_free(&p->wbuf);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv_work);
	pthread_cond_destroy(&p->cv_done);
	free(p);
}

int sz_pipeline_new(unsigned nthreads, int level, int out_fd, struct sz_pipeline **ret)
{
	struct sz_pipeline *p = calloc(1, sizeof(*p));

	*ret = NULL;
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv_work, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	p->nthreads = nthreads;
	p->njobs = nthreads * 2 + 1;
	p->level = level;
	p->out_fd = out_fd;
	sg_sha256_init(&p->blob_hash);
	p->jobs = calloc(p->njobs, sizeof(*p->jobs));
	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (!p->jobs || !p->threads) {
		p->nthreads = 0;
		sz_pipeline_free(p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		int r = pthread_create(&p->threads[i], NULL, worker_main, p);
		if (r) {
			p->nthreads = i;
			sz_pipeline_free(p);
			return -r;
		}
	}
	*ret = p;
	return 0;
}

/* Opens the next job: waits for its slot to be written out. */
struct sz_job *sz_pipeline_open(struct sz_pipeline *p, uint64_t first_member)
{
	struct sz_job *j;

	pthread_mutex_lock(&p->mu);
	j = &p->jobs[p->next_seq % p->njobs];
	if (j->state != JOB_FREE && pipeline_drain(p, p->next_seq - p->njobs + 1, true) < 0) {
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	j->state = JOB_FILLING;
	j->seq = p->next_seq++;
	j->in.len = 0;
	j->n_mem = 0;
	j->first_member = first_member;
	pthread_mutex_unlock(&p->mu);
	return j;
}

int sz_job_append(struct sz_job *j, const void *data, size_t n)
{
	if (data)
		sb_put(&j->in, data, n);
	else
		sb_zero(&j->in, n);
	return j->in.oom ? -ENOMEM : 0;
}

int sz_job_end_member(struct sz_job *j)
{
	if (j->n_mem == j->cap_mem) {
		size_t ncap = j->cap_mem ? j->cap_mem * 2 : 64;
		size_t *a = realloc(j->mem_in_end, ncap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		j->mem_in_end = a;
		a = realloc(j->mem_out_end, ncap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		j->mem_out_end = a;
		j->cap_mem = ncap;
	}
	j->mem_in_end[j->n_mem++] = j->in.len;
	return j->in.len >= JOB_BATCH;
}

int sz_pipeline_submit(struct sz_pipeline *p, struct sz_job *j)
{
	int r;
	if (j->in.oom)
		return -ENOMEM;
	pthread_mutex_lock(&p->mu);
	j->state = JOB_QUEUED;
	pthread_cond_broadcast(&p->cv_work);
	r = pipeline_drain(p, 0, false);
	pthread_mutex_unlock(&p->mu);
	return r;
}

int sz_pipeline_flush(struct sz_pipeline *p)
{
	int r;
	pthread_mutex_lock(&p->mu);
	r = pipeline_drain(p, p->next_seq, true);
	pthread_mutex_unlock(&p->mu);
	if (r == 0 && p->wbuf.len) {
		r = sz_write_all(p->out_fd, p->wbuf.p, p->wbuf.len);
		if (r < 0)
			sz_errorf("writing the output: %s", strerror(-r));
		p->wbuf.len = 0;
	}
	return r;
}

int sz_pipeline_finish(struct sz_pipeline *p, const void *tail, size_t n, struct sg_digest *ret)
{
	int r = sz_write_all(p->out_fd, tail, n);

	if (r < 0) {
		sz_errorf("writing the output: %s", strerror(-r));
		return r;
	}
	sg_sha256_update(&p->blob_hash, tail, n);
	sg_sha256_final(&p->blob_hash, ret);
	p->out_off += n;
	return 0;
}

int sz_pipeline_error(const struct sz_pipeline *p)
{
	return p->err;
}

uint64_t sz_pipeline_offset(const struct sz_pipeline *p)
{
	return p->out_off;
}

const uint64_t *sz_pipeline_member_offsets(const struct sz_pipeline *p)
{
	return p->member_off;
}
