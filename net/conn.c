/* TCP connect on the loop with off-loop name resolution.  See conn.h. */
#include "net/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Shared by the loop side and the helper thread; freed by whichever drops the last ref. */
struct sg_resolve {
	atomic_int refs;
	int pipe_rd, pipe_wr;
	char host[256];
	char port[8];
	struct addrinfo *result;
	int gai_err;
};

static void resolve_unref(struct sg_resolve *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	if (r->result)
		freeaddrinfo(r->result);
	if (r->pipe_rd >= 0)
		close(r->pipe_rd);
	if (r->pipe_wr >= 0)
		close(r->pipe_wr);
	free(r);
}

static void *resolve_thread(void *arg)
{
	struct sg_resolve *r = arg;
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV,
	};
	char one = 1;

	r->gai_err = getaddrinfo(r->host, r->port, &hints, &r->result);
	/* The pipe has room for this byte; if the loop side gave up, nobody reads it. */
	(void)!write(r->pipe_wr, &one, 1);
	resolve_unref(r);
	return NULL;
}

static int gai_to_errno(int e)
{
	switch (e) {
	case 0:
		return 0;
	case EAI_NONAME:
	case EAI_NODATA:
	case EAI_ADDRFAMILY:
		return -ENOENT;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	default:
		return -EHOSTUNREACH;
	}
}

void sg_conn_init(struct sg_conn *c, struct sg_loop *loop)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->fd = -1;
	sg_op_init(&c->op);
}

bool sg_conn_busy(const struct sg_conn *c)
{
	return sg_op_busy(&c->op);
}

static void finish(struct sg_conn *c, int res)
{
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = c->ai_cur = NULL;
	}
	if (res < 0 && c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	/* Cannot fail: the caller's op was idle when the connect was accepted and is ours
	 * until this post, and posts are accepted while the loop drains. */
	(void)sg_post(c->loop, c->done_op, res, c->done_cb);
}

static void try_next(struct sg_conn *c);

static void on_connect(struct sg_op *op)
{
	struct sg_conn *c = sg_container_of(op, struct sg_conn, op);

	if (op->res == 0) {
		finish(c, 0);
		return;
	}
	c->last_err = op->res;
	close(c->fd);
	c->fd = -1;
	if (op->res == -ECANCELED) {
		finish(c, -ECANCELED);
		return;
	}
	c->ai_cur = c->ai_cur->ai_next;
	try_next(c);
}

/* Runs from a completion (never from sg_conn_connect itself). */
static void try_next(struct sg_conn *c)
{
	for (; c->ai_cur; c->ai_cur = c->ai_cur->ai_next) {
		struct addrinfo *a = c->ai_cur;
		if (a->ai_addrlen > sizeof(c->addr))
			continue;
		/* A blocking socket: io_uring completes connect/send/recv asynchronously either
		 * way, and a blocking socket never hands back -EAGAIN to retry. */
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			c->last_err = -errno;
			continue;
		}
		int one = 1;
		/* Requests are small and latency-bound: do not wait for Nagle. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		memcpy(&c->addr, a->ai_addr, a->ai_addrlen);
		c->addrlen = a->ai_addrlen;
		c->fd = fd;
		sg_op_set_timeout(&c->op, c->timeout_ns);
		int r = sg_connect(c->loop, &c->op, fd, (struct sockaddr *)&c->addr, c->addrlen,
				   on_connect);
		if (r == 0)
			return;
		close(fd);
		c->fd = -1;
		c->last_err = r;
	}
	finish(c, c->last_err ? c->last_err : -EHOSTUNREACH);
}

static void on_resolved(struct sg_op *op)
{
	struct sg_conn *c = sg_container_of(op, struct sg_conn, op);
	struct sg_resolve *r = c->res;
	int res = op->res;

	c->res = NULL;
	if (res == 1) {
		res = gai_to_errno(r->gai_err);
		if (res == 0) {
			c->ai = c->ai_cur = r->result;
			r->result = NULL;
		}
	} else if (res >= 0) {
		res = -EIO;
	}
	resolve_unref(r);
	if (res < 0) {
		finish(c, res);
		return;
	}
	try_next(c);
}

/* Numeric addresses resolved without a thread arrive here on the next dispatch. */
static void on_posted(struct sg_op *op)
{
	struct sg_conn *c = sg_container_of(op, struct sg_conn, op);

	if (op->res < 0) {
		finish(c, op->res);
		return;
	}
	try_next(c);
}

int sg_conn_connect(struct sg_conn *c, const char *host, uint16_t port, uint64_t timeout_ns,
		    struct sg_op *op, sg_op_cb cb)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	struct sg_resolve *r;
	pthread_t th;
	pthread_attr_t attr;
	int pfd[2], e;
	size_t hl;

	if (!host || !op || !cb || port == 0)
		return -EINVAL;
	if (sg_op_busy(&c->op) || sg_op_busy(op) || c->fd >= 0)
		return -EBUSY;
	hl = strlen(host);
	if (hl == 0 || hl >= sizeof(c->host))
		return -EINVAL;
	/* "[::1]" as written in URLs. */
	if (host[0] == '[' && host[hl - 1] == ']') {
		memcpy(c->host, host + 1, hl - 2);
		c->host[hl - 2] = '\0';
	} else {
		memcpy(c->host, host, hl + 1);
	}
	snprintf(c->port, sizeof(c->port), "%u", port);
	c->done_op = op;
	c->done_cb = cb;
	c->timeout_ns = timeout_ns;
	c->last_err = 0;

	if (getaddrinfo(c->host, c->port, &hints, &c->ai) == 0) {
		c->ai_cur = c->ai;
		sg_op_set_timeout(&c->op, 0);
		e = sg_post(c->loop, &c->op, 0, on_posted);
		if (e < 0) {
			freeaddrinfo(c->ai);
			c->ai = c->ai_cur = NULL;
		}
		return e;
	}
	c->ai = NULL;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		e = -errno;
		free(r);
		return e;
	}
	r->pipe_rd = pfd[0];
	r->pipe_wr = pfd[1];
	memcpy(r->host, c->host, sizeof(r->host));
	memcpy(r->port, c->port, sizeof(r->port));
	atomic_init(&r->refs, 2);

	sg_op_set_timeout(&c->op, timeout_ns);
	e = sg_read(c->loop, &c->op, r->pipe_rd, &c->resolve_byte, 1, (uint64_t)-1, on_resolved);
	if (e < 0) {
		atomic_store(&r->refs, 1);
		resolve_unref(r);
		return e;
	}
	c->res = r;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* getaddrinfo with NSS modules wants more than a minimal stack; 256 KiB is ample. */
	pthread_attr_setstacksize(&attr, 256 * 1024);
	e = pthread_create(&th, &attr, resolve_thread, r);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		/* The read is in flight: make it complete (with EOF) by closing the write end;
		 * on_resolved then reports the failure and drops the loop's ref. */
		atomic_fetch_sub(&r->refs, 1);
		r->gai_err = EAI_SYSTEM;
		close(r->pipe_wr);
		r->pipe_wr = -1;
	}
	return 0;
}

void sg_conn_cancel(struct sg_conn *c)
{
	if (sg_op_busy(&c->op))
		(void)sg_op_cancel(&c->op);
}

void sg_conn_close(struct sg_conn *c)
{
	/* A connect attempt or the resolver's pipe read is still in flight on c->op. */
	SG_FREE_CHECK(sg_conn_busy(c), "TCP connection");
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = c->ai_cur = NULL;
	}
}
