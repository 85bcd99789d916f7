/* The fetch trace: an opt-in log of what the layers waited for and fetched, one JSON object
 * a line, for the bench's miss timeline (tools/bench).  The format is a contract with the
 * bench; see README.md ("Fetch trace").
 *
 * One trace per process, written to DIR/trace-PID.jsonl (appended).  Lines are buffered
 * and written when the buffer fills, at sg_fetch_trace_flush (a layer closes) and at
 * sg_fetch_trace_close (the daemon exits).  `t` is milliseconds since the trace was opened
 * (the daemon's start), on CLOCK_MONOTONIC (sg_now_ns); the first line, "start", gives that
 * origin on the wall clock ("epoch", seconds).
 *
 * Every call takes a NULL trace and does nothing: callers keep one pointer and test it only
 * to skip work that would feed the call (a path lookup).  A write that fails turns the trace
 * off for good (the daemon goes on; sg_fetch_trace_failed says so). */
#ifndef STARGZD_FS_FETCH_TRACE_H
#define STARGZD_FS_FETCH_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a chunk was fetched.  On demand: a reader waited for the batch's first chunk; the
 * chunks taken along with it (read-ahead, the fetch window) count as on demand too. */
enum sg_fetch_kind {
	SG_FETCH_ONDEMAND,
	SG_FETCH_SPEC,          /* speculation by locality (fs/layer_spec.h) */
	SG_FETCH_PREFETCH,      /* the prioritized region, or the blob's first bytes */
	SG_FETCH_BACKGROUND,    /* the rest of the layer, when the link is idle */
	SG_FETCH_STREAM,        /* the whole layer streamed in order */
	SG_FETCH_PROFILE,       /* a learned startup profile replayed (fs/profile.h) */
	SG_FETCH_KINDS,
};

/* "ondemand", "spec", "prefetch", "background", "stream", "profile"; "?" out of range. */
const char *sg_fetch_kind_name(enum sg_fetch_kind kind);

struct sg_fetch_trace;

/* Opens (creates, appends to) DIR/trace-PID.jsonl; the clock starts now.  A negative errno
 * when dir is not there or not writable. */
int sg_fetch_trace_open(const char *dir, struct sg_fetch_trace **ret_trace);
/* Writes what is buffered and closes.  NULL is fine. */
void sg_fetch_trace_close(struct sg_fetch_trace *t);
void sg_fetch_trace_flush(struct sg_fetch_trace *t);
/* The file's path (for messages); "" for NULL. */
const char *sg_fetch_trace_path(const struct sg_fetch_trace *t);
bool sg_fetch_trace_failed(const struct sg_fetch_trace *t);

/* A read that had to wait, logged when it was answered: started at start_ns, waited
 * wait_ns; net: on a network fetch (else only on the disk cache). */
void sg_fetch_trace_read(struct sg_fetch_trace *t, const char *layer, const char *path,
			 uint64_t off, uint64_t len, uint64_t start_ns, uint64_t wait_ns, bool net);
/* One range request at its completion: `len` bytes of the blob in `spans` ranges (one:
 * [off, off+len); several, of a vectored read: off is the first's, len the sum), `chunks`
 * chunks, started at start_ns, took took_ns; ok: every byte arrived; beside: the bytes of
 * requests fetching ahead that arrived on the same link meanwhile, and of those the
 * speculative ones' (an on-demand fetch's; -1 = not counted, and not written). */
void sg_fetch_trace_fetch(struct sg_fetch_trace *t, const char *layer, enum sg_fetch_kind kind,
			  uint64_t off, uint64_t len, unsigned chunks, unsigned spans,
			  uint64_t start_ns, uint64_t took_ns, bool ok, int64_t beside,
			  int64_t beside_spec);
/* A layer's TOC loaded: the layer was asked for (its Prepare, or an earlier layer's when it
 * was fetched ahead) at asked_ns, and took took_ns to be ready to mount. */
void sg_fetch_trace_toc(struct sg_fetch_trace *t, const char *layer, uint64_t asked_ns,
		       uint64_t took_ns);
/* A layer's summary at its close: compressed bytes fetched per kind, and of those the
 * bytes of chunks a reader read (or opened through passthrough). */
void sg_fetch_trace_layer(struct sg_fetch_trace *t, const char *layer,
			  const uint64_t fetched[SG_FETCH_KINDS], const uint64_t used[SG_FETCH_KINDS]);

#endif
