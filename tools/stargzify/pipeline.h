/* The compression pipeline: gzip members compressed on worker threads, written in order.
 *
 * The caller (the main thread) fills jobs with the uncompressed bytes of consecutive gzip
 * members and submits them; the workers compress each member of a job separately with
 * libdeflate (one call per member, no streaming); the main thread writes finished jobs to
 * out_fd strictly in submission order, hashing what it writes (the blob digest) and
 * recording where each member starts in the output.  The output therefore does not depend
 * on the number of threads.
 *
 * A job is one or more members: small members are batched so that a layer of tiny files
 * does not pay a thread handoff per file.  Members are numbered globally by the caller
 * (first_member of sz_pipeline_open), in order, from 0.
 *
 * Only the main thread calls these functions.  Results are 0 or a negative errno; a failure
 * to compress or write is reported on stderr (util.h) as it happens. */
#ifndef STARGZIFY_PIPELINE_H
#define STARGZIFY_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"

struct sz_pipeline;
struct sz_job;

/* Starts nthreads workers compressing at libdeflate level `level`, writing to out_fd. */
int sz_pipeline_new(unsigned nthreads, int level, int out_fd, struct sz_pipeline **ret);
/* Stops the workers and frees everything (unwritten jobs are dropped).  NULL is a no-op. */
void sz_pipeline_free(struct sz_pipeline *p);

/* Opens the next job, waiting for a free slot (which may write finished jobs out); its
 * members are numbered from first_member.  NULL on a failure: see sz_pipeline_error. */
struct sz_job *sz_pipeline_open(struct sz_pipeline *p, uint64_t first_member);
/* Appends to the job's open member; data NULL appends n zero bytes.  0 or -ENOMEM. */
int sz_job_append(struct sz_job *j, const void *data, size_t n);
/* Ends the job's open member.  1 when the job holds enough input to be submitted now,
 * 0 when it can take more members, -ENOMEM. */
int sz_job_end_member(struct sz_job *j);
/* Hands the job (its members all ended) to the workers and writes what is finished. */
int sz_pipeline_submit(struct sz_pipeline *p, struct sz_job *j);
/* Waits for every submitted job and writes it out. */
int sz_pipeline_flush(struct sz_pipeline *p);
/* After a flush: writes raw bytes (the footer) after the members, and returns the digest of
 * everything written. */
int sz_pipeline_finish(struct sz_pipeline *p, const void *tail, size_t n, struct sg_digest *ret);

/* The last failure to write out a job, 0 if none (why sz_pipeline_open returned NULL). */
int sz_pipeline_error(const struct sz_pipeline *p);
uint64_t sz_pipeline_offset(const struct sz_pipeline *p);   /* bytes written so far */
/* The output offset of every member written so far, indexed by member number. */
const uint64_t *sz_pipeline_member_offsets(const struct sz_pipeline *p);

#endif
