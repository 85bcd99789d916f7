/* The event loop: one io_uring ring that carries every operation of the process.
 *
 * Every asynchronous step is a `struct sg_op` embedded in the object that owns its buffers.
 * Submitting an op hands it to the kernel (or to the loop's timer heap or overflow queue);
 * exactly one completion follows, delivered by calling `op->cb(op)` with `op->res` set to the
 * result: bytes transferred, a new fd, a poll mask, 0, or a negative errno.  Callbacks run only
 * from the loop's dispatch phase, never from inside a submit or cancel call, so a caller may
 * submit, cancel and free freely inside a callback without re-entrancy surprises.
 *
 * Rules for owners:
 *  - an op's memory (and the buffers it points at) must stay valid from submit until its
 *    callback has run; `sg_op_busy()` tells whether that is still pending;
 *  - an op may be resubmitted from its own callback;
 *  - to tear an owner down, cancel its ops (one by one or through an `sg_group`) and free it
 *    when the group is idle.
 *
 * Helpers finish short transfers themselves: `sg_read` keeps reading until `len` bytes or EOF,
 * `sg_write`/`sg_writev`/`sg_send` until everything is written or an error occurs.  Socket
 * receives (`sg_recv`) complete on the first data, as a stream reader wants.
 *
 * Timeouts: `sg_op_set_timeout()` attaches a linked timeout to an op.  It bounds every kernel
 * submission of that op, i.e. it is an inactivity timeout for helpers that resubmit to finish a
 * short transfer.  An op that times out completes with -ETIMEDOUT; one cancelled by
 * `sg_op_cancel` completes with -ECANCELED.  Standalone timers come from `sg_timer_start`
 * and complete with 0 when they fire.
 *
 * Errors are negative errno values throughout.  Nothing here logs.
 *
 * Continuations at module boundaries: one shape, this loop's own.  Every asynchronous call
 * from one module into another looks like
 *
 *     int sg_thing_do(struct sg_thing *t, <inputs>, <ret_* outputs>, struct sg_error *err,
 *                     struct sg_op *op, sg_op_cb cb);
 *
 *  - 0: the work is under way, and cb(op) runs exactly once, from the loop (never from
 *    inside the call), with op->res = a byte count or 0, or a negative errno;
 *  - a negative errno: nothing was started and no callback follows;
 *  - other results (a source, a TOC, a manifest) go through ret_* pointers and the reason of a
 *    failure through err (daemon/core/error.h); like op, they stay the caller's and valid
 *    until the callback;
 *  - the caller embeds op in the object the work belongs to and gets back to that object with
 *    sg_container_of; a module completes an op that is not a kernel operation with sg_post;
 *  - to abandon the work, the module offers a cancel that makes the op complete early with
 *    -ECANCELED (still exactly once).
 * Hooks that fire any number of times (a gRPC method, a lost mount, a stuck request) are not
 * continuations: they are registered once as a function and a void *userdata.
 */
#ifndef STARGZD_CORE_LOOP_H
#define STARGZD_CORE_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <linux/time_types.h>

#include "daemon/core/list.h"

struct sg_loop;
struct sg_op;
struct sg_group;
struct io_uring_sqe;

typedef void (*sg_op_cb)(struct sg_op *op);
/* For SG_OP_RAW ops: fill in the SQE (opcode, fd, buffers); the loop sets user_data and flags. */
typedef void (*sg_op_prep_fn)(struct io_uring_sqe *sqe, struct sg_op *op);

enum sg_op_kind {
	SG_OP_NONE,
	SG_OP_NOP,
	SG_OP_READ,
	SG_OP_WRITE,
	SG_OP_READV,
	SG_OP_WRITEV,
	SG_OP_RECV,
	SG_OP_SEND,
	SG_OP_ACCEPT,
	SG_OP_CONNECT,
	SG_OP_FSYNC,
	SG_OP_OPENAT,
	SG_OP_CLOSE,
	SG_OP_POLL,
	SG_OP_RAW,
	SG_OP_TIMER,
	SG_OP_POST,
	_SG_OP_KIND_MAX,
};

enum sg_op_state {
	SG_OPS_IDLE,    /* not submitted, or completed and dispatched */
	SG_OPS_QUEUED,  /* waiting for a free SQE */
	SG_OPS_KERNEL,  /* an SQE for it is in the ring */
	SG_OPS_TIMER,   /* in the timer heap */
	SG_OPS_READY,   /* completed, waiting to be dispatched */
};

struct sg_op {
	sg_op_cb cb;
	int32_t res;             /* the result, valid in the callback */
	uint32_t cqe_flags;      /* flags of the last CQE */
	void *data;              /* free for the owner */

	/* Private to the loop from here on. */
	struct sg_loop *loop;
	struct sg_list link;     /* on the loop's kernel, queued or ready list */
	struct sg_group *group;
	struct sg_list group_link;
	uint64_t timeout_ns;     /* linked timeout per submission; 0 = none */
	uint64_t deadline_ns;    /* timers: CLOCK_MONOTONIC expiry */
	uint64_t seq;            /* timers: tie-breaker, so equal deadlines fire in start order */
	uint32_t heap_index;
	uint8_t kind;
	uint8_t state;
	uint8_t flags;
	int fd;
	uint64_t offset;         /* file offset; (uint64_t)-1 = current position */
	size_t done;             /* bytes transferred so far by a resubmitting helper */
	union {
		struct { void *buf; size_t len; int msg_flags; } rw;
		struct { struct iovec *iov; int iovcnt; } vec;
		struct { const struct sockaddr *addr; socklen_t addrlen; } connect;
		struct { struct sockaddr *addr; socklen_t *addrlen; int flags; } accept;
		struct { const char *path; int flags; mode_t mode; } open;
		struct { unsigned mask; } poll;
		struct { sg_op_prep_fn prep; } raw;
		struct { unsigned fsync_flags; } fsync;
	} u;
	struct __kernel_timespec ts;  /* linked timeout, read by the kernel at submit */
};

/* A set of ops that belong to one owner (a connection, a mount, a fetch).  Ops join the group
 * when submitted and leave it when their callback has run. */
struct sg_group {
	struct sg_list ops;
	unsigned count;
};

struct sg_loop_config {
	unsigned entries;        /* SQ size; 0 = default (1024) */
};

/* ---- the loop ---- */

int sg_loop_new(const struct sg_loop_config *config, struct sg_loop **ret_loop);
/* Frees the ring.  Ops still in flight must have been drained first (sg_loop_drain). */
void sg_loop_free(struct sg_loop *loop);

/* Runs until sg_loop_stop().  Returns 0, or a negative errno if the ring itself failed. */
int sg_loop_run(struct sg_loop *loop);
/* Runs one iteration: submit, wait up to timeout_ms (-1 = until something happens), dispatch.
 * Returns the number of callbacks dispatched, or a negative errno. */
int sg_loop_run_once(struct sg_loop *loop, int timeout_ms);
/* Asks sg_loop_run to return after the current iteration. */
void sg_loop_stop(struct sg_loop *loop);
bool sg_loop_stopping(const struct sg_loop *loop);
/* Cancels every op still pending (the signal watcher included) and runs the loop until all
 * have completed, delivering their callbacks.  From then on every submit helper refuses with
 * -ECANCELED (and no callback), except sg_post: a post delivers a result that is already
 * owed, so it is still accepted and dispatched before the drain returns (see sg_post).
 * Returns 0, or -ETIMEDOUT after timeout_ms. */
int sg_loop_drain(struct sg_loop *loop, int timeout_ms);
/* Ops submitted and not yet dispatched. */
unsigned sg_loop_pending(const struct sg_loop *loop);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t sg_now_ns(void);

/* Blocks the signals in `set` for the process and delivers them through a signalfd read on the
 * ring; `handler` runs from the loop for each one.  Typical use: SIGTERM and SIGINT with a
 * handler that calls sg_loop_stop(). */
typedef void (*sg_signal_handler)(struct sg_loop *loop, int signo, void *userdata);
int sg_loop_watch_signals(struct sg_loop *loop, const sigset_t *set, sg_signal_handler handler,
			  void *userdata);

/* ---- ops ---- */

static inline void sg_op_init(struct sg_op *op)
{
	*op = (struct sg_op){ .fd = -1 };
}

static inline bool sg_op_busy(const struct sg_op *op)
{
	return op->state != SG_OPS_IDLE;
}

/* Bounds each kernel submission of the op's next submit; 0 clears.  Not for timers. */
static inline void sg_op_set_timeout(struct sg_op *op, uint64_t timeout_ns)
{
	op->timeout_ns = timeout_ns;
}

/* Requests cancellation.  The op still completes exactly once: with -ECANCELED, or with its
 * natural result if that was already decided.  Returns 0, or -EALREADY if the op is not
 * pending (idle, or already completed and waiting for dispatch). */
int sg_op_cancel(struct sg_op *op);

/* Joins an op to a group before submitting it; it leaves by itself after its callback. */
void sg_group_init(struct sg_group *group);
void sg_op_set_group(struct sg_op *op, struct sg_group *group);
static inline bool sg_group_idle(const struct sg_group *group)
{
	return group->count == 0;
}
/* Cancels every op of the group; each still gets its one completion. */
void sg_group_cancel(struct sg_group *group);

/* For the *_free of every owner of ops: freeing an object while the kernel or the loop still
 * holds one of its ops (or will call back into it) is a use-after-free in waiting, so it is
 * a crash here, with the owner's name, instead of a corruption later.  `busy` is the owner's
 * own test (its group not idle, callbacks owed). */
#define SG_FREE_CHECK(busy, what) \
	do { \
		if (busy) \
			sg_abort_busy_free(what, __FILE__, __LINE__); \
	} while (0)
__attribute__((noreturn)) void sg_abort_busy_free(const char *what, const char *file, int line);

/* Submit helpers.  Each returns 0 when the op is on its way (its callback will run) or a
 * negative errno when nothing was submitted (then no callback runs): -EBUSY if the op is
 * still in flight, -EINVAL for bad arguments, -ECANCELED once the loop is draining. */
int sg_nop(struct sg_loop *loop, struct sg_op *op, sg_op_cb cb);
/* offset (uint64_t)-1 reads at the file position (pipes, sockets). */
int sg_read(struct sg_loop *loop, struct sg_op *op, int fd, void *buf, size_t len,
	    uint64_t offset, sg_op_cb cb);
/* Like sg_read, but completes after the first successful read (a short read is fine). */
int sg_read_some(struct sg_loop *loop, struct sg_op *op, int fd, void *buf, size_t len,
		 uint64_t offset, sg_op_cb cb);
int sg_write(struct sg_loop *loop, struct sg_op *op, int fd, const void *buf, size_t len,
	     uint64_t offset, sg_op_cb cb);
/* The iovec array is the caller's and is advanced in place to finish short transfers. */
int sg_readv(struct sg_loop *loop, struct sg_op *op, int fd, struct iovec *iov, int iovcnt,
	     uint64_t offset, sg_op_cb cb);
int sg_writev(struct sg_loop *loop, struct sg_op *op, int fd, struct iovec *iov, int iovcnt,
	      uint64_t offset, sg_op_cb cb);
int sg_recv(struct sg_loop *loop, struct sg_op *op, int fd, void *buf, size_t len, int flags,
	    sg_op_cb cb);
int sg_send(struct sg_loop *loop, struct sg_op *op, int fd, const void *buf, size_t len,
	    int flags, sg_op_cb cb);
/* res is the new fd (opened with `flags`, e.g. SOCK_CLOEXEC|SOCK_NONBLOCK). addr may be NULL. */
int sg_accept(struct sg_loop *loop, struct sg_op *op, int fd, struct sockaddr *addr,
	      socklen_t *addrlen, int flags, sg_op_cb cb);
/* addr must stay valid until the callback. */
int sg_connect(struct sg_loop *loop, struct sg_op *op, int fd, const struct sockaddr *addr,
	       socklen_t addrlen, sg_op_cb cb);
/* datasync: true for fdatasync semantics. */
int sg_fsync(struct sg_loop *loop, struct sg_op *op, int fd, bool datasync, sg_op_cb cb);
/* res is the new fd.  path must stay valid until the callback. */
int sg_openat(struct sg_loop *loop, struct sg_op *op, int dirfd, const char *path, int flags,
	      mode_t mode, sg_op_cb cb);
int sg_close(struct sg_loop *loop, struct sg_op *op, int fd, sg_op_cb cb);
/* One-shot poll; res is the returned event mask (POLLIN, ...). */
int sg_poll(struct sg_loop *loop, struct sg_op *op, int fd, unsigned mask, sg_op_cb cb);
/* Any other io_uring operation: prep fills the SQE.  No short-transfer handling. */
int sg_raw(struct sg_loop *loop, struct sg_op *op, sg_op_prep_fn prep, sg_op_cb cb);

/* A standalone timer: completes with 0 after timeout_ns (or -ECANCELED).  Timers fire in
 * deadline order; equal deadlines fire in the order they were started. */
int sg_timer_start(struct sg_loop *loop, struct sg_op *op, uint64_t timeout_ns, sg_op_cb cb);

/* Completes op with `res` on the next dispatch, without touching the kernel: for answers that
 * are known at once but must not be delivered from inside the caller's stack.  Accepted
 * during sg_loop_drain too (the drain dispatches it), so it fails only with -EINVAL or with
 * -EBUSY for an op still in flight: an owner that posts an idle op of its own cannot lose
 * the completion, at shutdown or ever. */
int sg_post(struct sg_loop *loop, struct sg_op *op, int32_t res, sg_op_cb cb);

#endif
