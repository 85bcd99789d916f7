/* Work on a helper thread, completed on the loop: for the few jobs that would hold up every
 * FUSE request if the loop did them (a large TOC's parse, a profile's fsyncs).
 *
 * The owner embeds a struct sg_offload in its job, sets nothing in it, and calls
 * sg_offload_start with the work and its completion.  work(w) runs once on a new thread and
 * must touch nothing but its own job (no loop, no logging, no shared state without a lock).
 * Then done(&w->op) runs exactly once from the loop, after the thread was joined, with
 * op->res 0, or -ECANCELED when the loop drained meanwhile (the work still ran to its end:
 * a drain waits for it).  The job stays the owner's; it must outlive done. */
#ifndef STARGZD_CORE_OFFLOAD_H
#define STARGZD_CORE_OFFLOAD_H

#include <pthread.h>

#include "daemon/core/loop.h"

struct sg_offload {
	struct sg_op op;                       /* done's */
	int efd;                               /* the thread's "finished", polled by the loop */
	pthread_t thread;
	void (*work)(struct sg_offload *w);
	sg_op_cb done;
};

/* Returns 0 (done will run), or a negative errno and done never runs: nothing ran when the
 * thread or its eventfd could not be made; when the loop refuses the poll (it drains
 * already), the work ran to its end, on the thread, before this returned (-ECANCELED). */
int sg_offload_start(struct sg_loop *loop, struct sg_offload *w,
		     void (*work)(struct sg_offload *w), sg_op_cb done);

#endif
