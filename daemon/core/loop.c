/* The io_uring event loop.  See loop.h for the contract.
 *
 * Phases of one iteration (sg_loop_run_once):
 *   1. flush: ops waiting for an SQE (the overflow queue) and pending cancel requests get SQEs;
 *   2. wait: submit and wait for a CQE, or until the earliest timer, or not at all when
 *      callbacks are already due;
 *   3. reap: every CQE is matched to its op; helpers that must finish a short transfer
 *      resubmit at once, finished ops move to the ready list — no callback runs here;
 *   4. expire timers into the ready list;
 *   5. dispatch: callbacks of the ops that were ready when dispatch began, in order.
 *
 * user_data is always a `struct sg_op *`.  The CQEs of linked timeouts and of cancel
 * requests carry the op pointer with a tag in the low bits; they only report on their
 * op's fate (which its own CQE also tells) and are dropped without dereferencing the op.
 */
#include "daemon/core/loop.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ENTRIES 1024u
#define TAG_MASK 7u
#define TAG_LINK_TIMEOUT 1u
#define TAG_CANCEL 2u

/* op->flags */
enum {
	OPF_FULL = 1u << 0,          /* keep going until the whole transfer is done */
	OPF_CANCEL_REQ = 1u << 1,    /* cancellation requested */
	OPF_CANCEL_SENT = 1u << 2,   /* an ASYNC_CANCEL SQE is in the ring */
};

_Static_assert(_Alignof(struct sg_op) > TAG_MASK, "op pointers need free low bits for tags");

struct sg_loop {
	struct io_uring ring;
	bool ring_ready;
	bool stopping;
	bool draining;
	unsigned pending;            /* submitted and not yet dispatched */
	unsigned cancels_unsent;     /* ops with CANCEL_REQ but no SQE for the cancel yet */
	struct sg_list kernel;       /* ops with an SQE in flight */
	struct sg_list queued;       /* ops waiting for an SQE */
	struct sg_list ready;        /* completed ops waiting for dispatch */
	struct sg_op **heap;         /* timers, a binary min-heap on (deadline, seq) */
	uint32_t heap_len, heap_cap;
	uint64_t timer_seq;

	int signal_fd;
	sg_signal_handler signal_handler;
	void *signal_userdata;
	struct sg_op signal_op;
	struct signalfd_siginfo siginfo;
};

uint64_t sg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- timer heap ---- */

static bool timer_before(const struct sg_op *a, const struct sg_op *b)
{
	if (a->deadline_ns != b->deadline_ns)
		return a->deadline_ns < b->deadline_ns;
	return a->seq < b->seq;
}

static void heap_set(struct sg_loop *loop, uint32_t i, struct sg_op *op)
{
	loop->heap[i] = op;
	op->heap_index = i;
}

static void heap_sift_up(struct sg_loop *loop, uint32_t i)
{
	struct sg_op *op = loop->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!timer_before(op, loop->heap[parent]))
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, op);
}

static void heap_sift_down(struct sg_loop *loop, uint32_t i)
{
	struct sg_op *op = loop->heap[i];

	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= loop->heap_len)
			break;
		if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!timer_before(loop->heap[child], op))
			break;
		heap_set(loop, i, loop->heap[child]);
		i = child;
	}
	heap_set(loop, i, op);
}

/* The caller has made room (sg_timer_start grows the array before the op is committed). */
static void heap_push(struct sg_loop *loop, struct sg_op *op)
{
	loop->heap[loop->heap_len] = op;
	op->heap_index = loop->heap_len++;
	heap_sift_up(loop, op->heap_index);
}

static void heap_remove(struct sg_loop *loop, struct sg_op *op)
{
	uint32_t i = op->heap_index;
	struct sg_op *last = loop->heap[--loop->heap_len];

	if (i == loop->heap_len)
		return;
	heap_set(loop, i, last);
	heap_sift_up(loop, i);
	heap_sift_down(loop, last->heap_index);
}

/* ---- op state transitions ---- */

static void op_make_ready(struct sg_loop *loop, struct sg_op *op, int32_t res)
{
	op->res = res;
	op->state = SG_OPS_READY;
	sg_list_insert_tail(&loop->ready, &op->link);
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	return total;
}

/* Drops `n` transferred bytes from the front of the op's iovec array. */
static void iov_advance(struct sg_op *op, size_t n)
{
	while (op->u.vec.iovcnt > 0 && n >= op->u.vec.iov->iov_len) {
		n -= op->u.vec.iov->iov_len;
		op->u.vec.iov++;
		op->u.vec.iovcnt--;
	}
	if (op->u.vec.iovcnt > 0) {
		op->u.vec.iov->iov_base = (char *)op->u.vec.iov->iov_base + n;
		op->u.vec.iov->iov_len -= n;
	}
}

static void op_prep(struct io_uring_sqe *sqe, struct sg_op *op)
{
	char *buf;
	size_t left;

	switch ((enum sg_op_kind)op->kind) {
	case SG_OP_NOP:
		io_uring_prep_nop(sqe);
		break;
	case SG_OP_READ:
		buf = (char *)op->u.rw.buf + op->done;
		left = op->u.rw.len - op->done;
		io_uring_prep_read(sqe, op->fd, buf, (unsigned)(left > 0x7ffff000u ? 0x7ffff000u : left),
				   op->offset);
		break;
	case SG_OP_WRITE:
		buf = (char *)op->u.rw.buf + op->done;
		left = op->u.rw.len - op->done;
		io_uring_prep_write(sqe, op->fd, buf, (unsigned)(left > 0x7ffff000u ? 0x7ffff000u : left),
				    op->offset);
		break;
	case SG_OP_READV:
		io_uring_prep_readv(sqe, op->fd, op->u.vec.iov, (unsigned)op->u.vec.iovcnt, op->offset);
		break;
	case SG_OP_WRITEV:
		io_uring_prep_writev(sqe, op->fd, op->u.vec.iov, (unsigned)op->u.vec.iovcnt, op->offset);
		break;
	case SG_OP_RECV:
		io_uring_prep_recv(sqe, op->fd, op->u.rw.buf, op->u.rw.len, op->u.rw.msg_flags);
		break;
	case SG_OP_SEND:
		buf = (char *)op->u.rw.buf + op->done;
		io_uring_prep_send(sqe, op->fd, buf, op->u.rw.len - op->done,
				   op->u.rw.msg_flags | MSG_NOSIGNAL);
		break;
	case SG_OP_ACCEPT:
		io_uring_prep_accept(sqe, op->fd, op->u.accept.addr, op->u.accept.addrlen,
				     op->u.accept.flags);
		break;
	case SG_OP_CONNECT:
		io_uring_prep_connect(sqe, op->fd, op->u.connect.addr, op->u.connect.addrlen);
		break;
	case SG_OP_FSYNC:
		io_uring_prep_fsync(sqe, op->fd, op->u.fsync.fsync_flags);
		break;
	case SG_OP_OPENAT:
		io_uring_prep_openat(sqe, op->fd, op->u.open.path, op->u.open.flags, op->u.open.mode);
		break;
	case SG_OP_CLOSE:
		io_uring_prep_close(sqe, op->fd);
		break;
	case SG_OP_POLL:
		io_uring_prep_poll_add(sqe, op->fd, op->u.poll.mask);
		break;
	case SG_OP_RAW:
		op->u.raw.prep(sqe, op);
		break;
	case SG_OP_NONE:
	case SG_OP_TIMER:
	case SG_OP_POST:
	case _SG_OP_KIND_MAX:
		io_uring_prep_nop(sqe);   /* unreachable: these never reach the kernel */
		break;
	}
}

/* Takes SQEs for op (and its linked timeout).  False if the ring has no room even after
 * submitting what is already prepared. */
static bool op_try_sqe(struct sg_loop *loop, struct sg_op *op)
{
	unsigned need = op->timeout_ns ? 2 : 1;
	struct io_uring_sqe *sqe;

	if (io_uring_sq_space_left(&loop->ring) < need) {
		(void)io_uring_submit(&loop->ring);
		if (io_uring_sq_space_left(&loop->ring) < need)
			return false;
	}
	sqe = io_uring_get_sqe(&loop->ring);
	op_prep(sqe, op);
	io_uring_sqe_set_data(sqe, op);
	if (op->timeout_ns) {
		sqe->flags |= IOSQE_IO_LINK;
		op->ts.tv_sec = (long long)(op->timeout_ns / 1000000000u);
		op->ts.tv_nsec = (long long)(op->timeout_ns % 1000000000u);
		sqe = io_uring_get_sqe(&loop->ring);
		io_uring_prep_link_timeout(sqe, &op->ts, 0);
		io_uring_sqe_set_data64(sqe, (uintptr_t)op | TAG_LINK_TIMEOUT);
	}
	op->state = SG_OPS_KERNEL;
	sg_list_insert_tail(&loop->kernel, &op->link);
	return true;
}

/* Puts op into the ring, or into the overflow queue when the ring is full.  FIFO order is
 * kept: nothing jumps the queue. */
static void op_arm(struct sg_loop *loop, struct sg_op *op)
{
	if (sg_list_empty(&loop->queued) && op_try_sqe(loop, op))
		return;
	op->state = SG_OPS_QUEUED;
	sg_list_insert_tail(&loop->queued, &op->link);
}

static bool send_cancel(struct sg_loop *loop, struct sg_op *op)
{
	struct io_uring_sqe *sqe;

	if (io_uring_sq_space_left(&loop->ring) < 1) {
		(void)io_uring_submit(&loop->ring);
		if (io_uring_sq_space_left(&loop->ring) < 1)
			return false;
	}
	sqe = io_uring_get_sqe(&loop->ring);
	io_uring_prep_cancel64(sqe, (uintptr_t)op, 0);
	io_uring_sqe_set_data64(sqe, (uintptr_t)op | TAG_CANCEL);
	op->flags |= OPF_CANCEL_SENT;
	/* Submit now.  Left in the SQ, the request could outlive the op's natural completion
	 * and, when the owner resubmits the same op before the next submit, cancel the new
	 * incarnation (cancellation matches by user_data, i.e. by op address). */
	(void)io_uring_submit(&loop->ring);
	return true;
}

static void flush_queued(struct sg_loop *loop)
{
	struct sg_list *n, *tmp;

	while (!sg_list_empty(&loop->queued)) {
		struct sg_op *op = sg_container_of(loop->queued.next, struct sg_op, link);
		sg_list_unlink(&op->link);
		if (!op_try_sqe(loop, op)) {
			/* Put it back at the head: order is preserved. */
			op->state = SG_OPS_QUEUED;
			op->link.next = loop->queued.next;
			op->link.prev = &loop->queued;
			loop->queued.next->prev = &op->link;
			loop->queued.next = &op->link;
			break;
		}
	}
	if (loop->cancels_unsent == 0)
		return;
	sg_list_for_each_safe(n, tmp, &loop->kernel) {
		struct sg_op *op = sg_container_of(n, struct sg_op, link);
		if ((op->flags & (OPF_CANCEL_REQ | OPF_CANCEL_SENT)) == OPF_CANCEL_REQ) {
			if (!send_cancel(loop, op))
				return;
			loop->cancels_unsent--;
		}
	}
}

/* Bookkeeping common to every way of starting an op: from here on the op is pending and
 * owes exactly one callback. */
static void op_begin(struct sg_loop *loop, struct sg_op *op, enum sg_op_kind kind, sg_op_cb cb)
{
	op->loop = loop;
	op->cb = cb;
	op->kind = (uint8_t)kind;
	op->done = 0;
	op->res = 0;
	op->cqe_flags = 0;
	loop->pending++;
	if (op->group) {
		sg_list_insert_tail(&op->group->ops, &op->group_link);
		op->group->count++;
	}
}

/* Common entry of every helper that goes to the kernel.  `flags` is OPF_FULL or 0. */
static int op_submit(struct sg_loop *loop, struct sg_op *op, enum sg_op_kind kind, unsigned flags,
		     sg_op_cb cb)
{
	op->flags = (uint8_t)flags;
	op_begin(loop, op, kind, cb);
	op_arm(loop, op);
	return 0;
}

/* Argument checks shared by the helpers; they run before an op is touched. */
static int op_check(struct sg_loop *loop, struct sg_op *op, sg_op_cb cb)
{
	if (!loop || !op || !cb)
		return -EINVAL;
	if (op->state != SG_OPS_IDLE)
		return -EBUSY;
	/* Nothing new starts while the loop shuts down, so a drain always ends even when a
	 * callback tries to resubmit without looking at its -ECANCELED. */
	if (loop->draining)
		return -ECANCELED;
	return 0;
}

/* A CQE for op arrived.  Decides whether the op is finished or continues. */
static void op_kernel_done(struct sg_loop *loop, struct sg_op *op, int32_t res, uint32_t cqe_flags)
{
	bool cancelled = op->flags & OPF_CANCEL_REQ;
	size_t want;

	sg_list_unlink(&op->link);
	if ((op->flags & (OPF_CANCEL_REQ | OPF_CANCEL_SENT)) == OPF_CANCEL_REQ)
		loop->cancels_unsent--;
	op->flags &= (uint8_t)~OPF_CANCEL_SENT;
	op->cqe_flags = cqe_flags;

	if (res == -ECANCELED && !cancelled && op->timeout_ns)
		res = -ETIMEDOUT;

	switch ((enum sg_op_kind)op->kind) {
	case SG_OP_READ:
	case SG_OP_WRITE:
	case SG_OP_SEND:
		want = op->u.rw.len;
		goto transfer;
	case SG_OP_READV:
	case SG_OP_WRITEV:
		want = op->done + iov_total(op->u.vec.iov, op->u.vec.iovcnt);
		goto transfer;
	default:
		op_make_ready(loop, op, res);
		return;
	}

transfer:
	if (res == -EINTR || res == -EAGAIN) {
		if (cancelled)
			goto finish_cancelled;
		op_arm(loop, op);
		return;
	}
	if (res < 0) {
		op_make_ready(loop, op, res);
		return;
	}
	if (res == 0) {
		/* EOF for reads; a write that makes no progress would spin forever. */
		bool is_read = op->kind == SG_OP_READ || op->kind == SG_OP_READV;
		op_make_ready(loop, op, is_read ? (int32_t)op->done : -EIO);
		return;
	}
	op->done += (size_t)res;
	if (op->kind == SG_OP_READV || op->kind == SG_OP_WRITEV)
		iov_advance(op, (size_t)res);
	if (op->offset != (uint64_t)-1)
		op->offset += (uint64_t)res;
	if (op->done >= want || !(op->flags & OPF_FULL)) {
		op_make_ready(loop, op, op->done > INT32_MAX ? INT32_MAX : (int32_t)op->done);
		return;
	}
	if (cancelled)
		goto finish_cancelled;
	op_arm(loop, op);
	return;

finish_cancelled:
	op_make_ready(loop, op, -ECANCELED);
}

static void reap(struct sg_loop *loop)
{
	struct io_uring_cqe *cqe;
	unsigned head, count = 0;

	io_uring_for_each_cqe(&loop->ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		count++;
		if (ud & TAG_MASK)
			continue;   /* a linked timeout's or a cancel request's own CQE */
		op_kernel_done(loop, (struct sg_op *)(uintptr_t)ud, cqe->res, cqe->flags);
	}
	io_uring_cq_advance(&loop->ring, count);
}

static void expire_timers(struct sg_loop *loop)
{
	uint64_t now;

	if (loop->heap_len == 0)
		return;
	now = sg_now_ns();
	while (loop->heap_len > 0 && loop->heap[0]->deadline_ns <= now) {
		struct sg_op *op = loop->heap[0];
		heap_remove(loop, op);
		op_make_ready(loop, op, 0);
	}
}

static unsigned dispatch(struct sg_loop *loop)
{
	struct sg_list batch;
	unsigned n = 0;

	if (sg_list_empty(&loop->ready))
		return 0;
	/* Take only what is ready now: ops posted by these callbacks wait for the next
	 * iteration, so a callback that re-posts itself cannot starve the ring. */
	sg_list_init(&batch);
	sg_list_move_all(&batch, &loop->ready);

	struct sg_list *node;
	while ((node = sg_list_pop(&batch))) {
		struct sg_op *op = sg_container_of(node, struct sg_op, link);
		op->state = SG_OPS_IDLE;
		op->flags &= OPF_FULL;
		if (op->group) {
			sg_list_unlink(&op->group_link);
			op->group->count--;
		}
		loop->pending--;
		n++;
		op->cb(op);
	}
	return n;
}

int sg_loop_run_once(struct sg_loop *loop, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts, *tsp = NULL;
	uint64_t wait_ns = UINT64_MAX;
	int r;

	flush_queued(loop);
	expire_timers(loop);

	if (!sg_list_empty(&loop->ready)) {
		wait_ns = 0;
	} else {
		if (timeout_ms >= 0)
			wait_ns = (uint64_t)timeout_ms * 1000000u;
		if (loop->heap_len > 0) {
			uint64_t now = sg_now_ns(), dl = loop->heap[0]->deadline_ns;
			uint64_t t = dl > now ? dl - now : 0;
			if (t < wait_ns)
				wait_ns = t;
		}
	}

	if (wait_ns == 0) {
		r = io_uring_submit(&loop->ring);
	} else {
		if (wait_ns != UINT64_MAX) {
			ts.tv_sec = (long long)(wait_ns / 1000000000u);
			ts.tv_nsec = (long long)(wait_ns % 1000000000u);
			tsp = &ts;
		}
		r = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, tsp, NULL);
	}
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
		return r;

	reap(loop);
	expire_timers(loop);
	return (int)dispatch(loop);
}

int sg_loop_run(struct sg_loop *loop)
{
	while (!loop->stopping) {
		int r = sg_loop_run_once(loop, -1);
		if (r < 0)
			return r;
	}
	return 0;
}

void sg_loop_stop(struct sg_loop *loop)
{
	loop->stopping = true;
}

bool sg_loop_stopping(const struct sg_loop *loop)
{
	return loop->stopping;
}

unsigned sg_loop_pending(const struct sg_loop *loop)
{
	return loop->pending;
}

int sg_loop_drain(struct sg_loop *loop, int timeout_ms)
{
	uint64_t deadline = sg_now_ns() + (uint64_t)timeout_ms * 1000000u;
	struct sg_list *n, *tmp;

	loop->draining = true;
	sg_list_for_each_safe(n, tmp, &loop->queued)
		sg_op_cancel(sg_container_of(n, struct sg_op, link));
	sg_list_for_each_safe(n, tmp, &loop->kernel)
		sg_op_cancel(sg_container_of(n, struct sg_op, link));
	while (loop->heap_len > 0)
		sg_op_cancel(loop->heap[0]);

	while (loop->pending > 0) {
		uint64_t now = sg_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		int r = sg_loop_run_once(loop, (int)((deadline - now) / 1000000u) + 1);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- setup ---- */

int sg_loop_new(const struct sg_loop_config *config, struct sg_loop **ret_loop)
{
	struct io_uring_params params = { 0 };
	unsigned entries = config && config->entries ? config->entries : DEFAULT_ENTRIES;
	struct sg_loop *loop;
	int r;

	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->signal_fd = -1;
	sg_list_init(&loop->kernel);
	sg_list_init(&loop->queued);
	sg_list_init(&loop->ready);
	sg_op_init(&loop->signal_op);

	/* A CQ four times the SQ: completions of many in-flight ops can pile up between reaps.
	 * The kernel keeps overflowed CQEs anyway (IORING_FEAT_NODROP), this only avoids the
	 * slow path. */
	params.flags = IORING_SETUP_CQSIZE;
	params.cq_entries = entries * 4;
	r = io_uring_queue_init_params(entries, &loop->ring, &params);
	if (r < 0)
		goto fail;
	loop->ring_ready = true;
	if (!(params.features & IORING_FEAT_EXT_ARG) || !(params.features & IORING_FEAT_NODROP)) {
		r = -EOPNOTSUPP;   /* kernel older than 5.11 */
		goto fail;
	}
	*ret_loop = loop;
	return 0;
fail:
	sg_loop_free(loop);
	return r;
}

void sg_loop_free(struct sg_loop *loop)
{
	if (!loop)
		return;
	if (loop->ring_ready)
		io_uring_queue_exit(&loop->ring);
	if (loop->signal_fd >= 0)
		close(loop->signal_fd);
	free(loop->heap);
	free(loop);
}

/* ---- signals ---- */

static void on_signal(struct sg_op *op)
{
	struct sg_loop *loop = op->data;

	if (op->res == (int32_t)sizeof(loop->siginfo) && loop->signal_handler)
		loop->signal_handler(loop, (int)loop->siginfo.ssi_signo, loop->signal_userdata);
	if (loop->draining || op->res == -ECANCELED || op->res == -EBADF)
		return;
	(void)sg_read_some(loop, &loop->signal_op, loop->signal_fd, &loop->siginfo,
			   sizeof(loop->siginfo), (uint64_t)-1, on_signal);
}

int sg_loop_watch_signals(struct sg_loop *loop, const sigset_t *set, sg_signal_handler handler,
			  void *userdata)
{
	int fd;

	if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
		return -errno;
	fd = signalfd(loop->signal_fd, set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	loop->signal_fd = fd;
	loop->signal_handler = handler;
	loop->signal_userdata = userdata;
	if (sg_op_busy(&loop->signal_op))
		return 0;   /* already watching; signalfd() updated the mask in place */
	loop->signal_op.data = loop;
	return sg_read_some(loop, &loop->signal_op, fd, &loop->siginfo, sizeof(loop->siginfo),
			    (uint64_t)-1, on_signal);
}

/* ---- public op API ---- */

int sg_op_cancel(struct sg_op *op)
{
	struct sg_loop *loop = op->loop;

	switch ((enum sg_op_state)op->state) {
	case SG_OPS_IDLE:
	case SG_OPS_READY:
		return -EALREADY;
	case SG_OPS_QUEUED:
		sg_list_unlink(&op->link);
		op_make_ready(loop, op, -ECANCELED);
		return 0;
	case SG_OPS_TIMER:
		heap_remove(loop, op);
		op_make_ready(loop, op, -ECANCELED);
		return 0;
	case SG_OPS_KERNEL:
		if (op->flags & OPF_CANCEL_REQ)
			return 0;
		op->flags |= OPF_CANCEL_REQ;
		if (!send_cancel(loop, op))
			loop->cancels_unsent++;   /* flush_queued sends it when the ring has room */
		return 0;
	}
	return -EINVAL;
}

void sg_group_init(struct sg_group *group)
{
	sg_list_init(&group->ops);
	group->count = 0;
}

void sg_op_set_group(struct sg_op *op, struct sg_group *group)
{
	op->group = group;
}

void sg_abort_busy_free(const char *what, const char *file, int line)
{
	fprintf(stderr, "stargzd: %s:%d: %s freed with work in flight\n", file, line, what);
	abort();
}

void sg_group_cancel(struct sg_group *group)
{
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &group->ops)
		(void)sg_op_cancel(sg_container_of(n, struct sg_op, group_link));
}

int sg_nop(struct sg_loop *loop, struct sg_op *op, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	return op_submit(loop, op, SG_OP_NOP, 0, cb);
}

static int rw_submit(struct sg_loop *loop, struct sg_op *op, enum sg_op_kind kind, int fd,
		     void *buf, size_t len, uint64_t offset, int msg_flags, unsigned flags,
		     sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0 || (!buf && len))
		return -EINVAL;
	op->fd = fd;
	op->u.rw.buf = buf;
	op->u.rw.len = len;
	op->u.rw.msg_flags = msg_flags;
	op->offset = offset;
	return op_submit(loop, op, kind, flags, cb);
}

int sg_read(struct sg_loop *loop, struct sg_op *op, int fd, void *buf, size_t len,
	    uint64_t offset, sg_op_cb cb)
{
	return rw_submit(loop, op, SG_OP_READ, fd, buf, len, offset, 0, OPF_FULL, cb);
}

int sg_read_some(struct sg_loop *loop, struct sg_op *op, int fd, void *buf, size_t len,
		 uint64_t offset, sg_op_cb cb)
{
	return rw_submit(loop, op, SG_OP_READ, fd, buf, len, offset, 0, 0, cb);
}

int sg_write(struct sg_loop *loop, struct sg_op *op, int fd, const void *buf, size_t len,
	     uint64_t offset, sg_op_cb cb)
{
	return rw_submit(loop, op, SG_OP_WRITE, fd, (void *)buf, len, offset, 0, OPF_FULL, cb);
}

int sg_recv(struct sg_loop *loop, struct sg_op *op, int fd, void *buf, size_t len, int flags,
	    sg_op_cb cb)
{
	return rw_submit(loop, op, SG_OP_RECV, fd, buf, len, (uint64_t)-1, flags, 0, cb);
}

int sg_send(struct sg_loop *loop, struct sg_op *op, int fd, const void *buf, size_t len,
	    int flags, sg_op_cb cb)
{
	return rw_submit(loop, op, SG_OP_SEND, fd, (void *)buf, len, (uint64_t)-1, flags, OPF_FULL,
			 cb);
}

static int vec_submit(struct sg_loop *loop, struct sg_op *op, enum sg_op_kind kind, int fd,
		      struct iovec *iov, int iovcnt, uint64_t offset, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0 || iovcnt < 0 || (!iov && iovcnt) || iovcnt > IOV_MAX)
		return -EINVAL;
	op->fd = fd;
	op->u.vec.iov = iov;
	op->u.vec.iovcnt = iovcnt;
	op->offset = offset;
	return op_submit(loop, op, kind, OPF_FULL, cb);
}

int sg_readv(struct sg_loop *loop, struct sg_op *op, int fd, struct iovec *iov, int iovcnt,
	     uint64_t offset, sg_op_cb cb)
{
	return vec_submit(loop, op, SG_OP_READV, fd, iov, iovcnt, offset, cb);
}

int sg_writev(struct sg_loop *loop, struct sg_op *op, int fd, struct iovec *iov, int iovcnt,
	      uint64_t offset, sg_op_cb cb)
{
	return vec_submit(loop, op, SG_OP_WRITEV, fd, iov, iovcnt, offset, cb);
}

int sg_accept(struct sg_loop *loop, struct sg_op *op, int fd, struct sockaddr *addr,
	      socklen_t *addrlen, int flags, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0)
		return -EINVAL;
	op->fd = fd;
	op->u.accept.addr = addr;
	op->u.accept.addrlen = addrlen;
	op->u.accept.flags = flags;
	return op_submit(loop, op, SG_OP_ACCEPT, 0, cb);
}

int sg_connect(struct sg_loop *loop, struct sg_op *op, int fd, const struct sockaddr *addr,
	       socklen_t addrlen, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0 || !addr)
		return -EINVAL;
	op->fd = fd;
	op->u.connect.addr = addr;
	op->u.connect.addrlen = addrlen;
	return op_submit(loop, op, SG_OP_CONNECT, 0, cb);
}

int sg_fsync(struct sg_loop *loop, struct sg_op *op, int fd, bool datasync, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0)
		return -EINVAL;
	op->fd = fd;
	op->u.fsync.fsync_flags = datasync ? IORING_FSYNC_DATASYNC : 0;
	return op_submit(loop, op, SG_OP_FSYNC, 0, cb);
}

int sg_openat(struct sg_loop *loop, struct sg_op *op, int dirfd, const char *path, int flags,
	      mode_t mode, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (!path)
		return -EINVAL;
	op->fd = dirfd;
	op->u.open.path = path;
	op->u.open.flags = flags;
	op->u.open.mode = mode;
	return op_submit(loop, op, SG_OP_OPENAT, 0, cb);
}

int sg_close(struct sg_loop *loop, struct sg_op *op, int fd, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0)
		return -EINVAL;
	op->fd = fd;
	return op_submit(loop, op, SG_OP_CLOSE, 0, cb);
}

int sg_poll(struct sg_loop *loop, struct sg_op *op, int fd, unsigned mask, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (fd < 0)
		return -EINVAL;
	op->fd = fd;
	op->u.poll.mask = mask;
	return op_submit(loop, op, SG_OP_POLL, 0, cb);
}

int sg_raw(struct sg_loop *loop, struct sg_op *op, sg_op_prep_fn prep, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	if (!prep)
		return -EINVAL;
	op->u.raw.prep = prep;
	return op_submit(loop, op, SG_OP_RAW, 0, cb);
}

int sg_timer_start(struct sg_loop *loop, struct sg_op *op, uint64_t timeout_ns, sg_op_cb cb)
{
	int r = op_check(loop, op, cb);
	if (r < 0)
		return r;
	/* Make room first: once op_begin has run the op owes a callback, so nothing may fail. */
	if (loop->heap_len == loop->heap_cap) {
		uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct sg_op **h = realloc(loop->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		loop->heap = h;
		loop->heap_cap = cap;
	}
	op->flags = 0;
	op_begin(loop, op, SG_OP_TIMER, cb);
	op->deadline_ns = sg_now_ns() + timeout_ns;
	op->seq = loop->timer_seq++;
	op->state = SG_OPS_TIMER;
	heap_push(loop, op);
	return 0;
}

int sg_post(struct sg_loop *loop, struct sg_op *op, int32_t res, sg_op_cb cb)
{
	/* Not op_check: a post is accepted while the loop drains.  It starts no work, it
	 * delivers an answer some owner still owes (a TLS read failed by the drain's cancel,
	 * an exchange's final result), and refusing it would lose that callback for good.  It
	 * makes no new state reachable either: a post made an instant before the drain began
	 * is dispatched by the drain just the same.  A callback that re-posts itself forever
	 * keeps the drain busy until its deadline, as any spinning owner would. */
	if (!loop || !op || !cb)
		return -EINVAL;
	if (op->state != SG_OPS_IDLE)
		return -EBUSY;
	op->flags = 0;
	op_begin(loop, op, SG_OP_POST, cb);
	op_make_ready(loop, op, res);
	return 0;
}
