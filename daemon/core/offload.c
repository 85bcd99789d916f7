/* Work on a helper thread.  See offload.h. */
#include "daemon/core/offload.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void *offload_thread(void *arg)
{
	struct sg_offload *w = arg;
	uint64_t one = 1;

	w->work(w);
	if (write(w->efd, &one, sizeof(one)) != sizeof(one)) {
		/* an eventfd write of 1 cannot fail short of overflow */
	}
	return NULL;
}

static void offload_done(struct sg_op *op)
{
	struct sg_offload *w = sg_container_of(op, struct sg_offload, op);

	/* Cancelled (the loop drains): the thread may still be at work; wait for it. */
	pthread_join(w->thread, NULL);
	close(w->efd);
	w->efd = -1;
	op->res = op->res < 0 ? -ECANCELED : 0;
	w->done(op);
}

int sg_offload_start(struct sg_loop *loop, struct sg_offload *w,
		     void (*work)(struct sg_offload *w), sg_op_cb done)
{
	int r;

	if (!loop || !w || !work || !done)
		return -EINVAL;
	sg_op_init(&w->op);
	w->work = work;
	w->done = done;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0)
		return -errno;
	r = -pthread_create(&w->thread, NULL, offload_thread, w);
	if (r < 0)
		goto fail;
	r = sg_poll(loop, &w->op, w->efd, POLLIN, offload_done);
	if (r < 0) {
		pthread_join(w->thread, NULL);
		r = -ECANCELED;
		goto fail;
	}
	return 0;
fail:
	close(w->efd);
	w->efd = -1;
	return r;
}
