#include "daemon/metrics.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/core/list.h"
#include "daemon/core/loop.h"
#include "daemon/process.h"
#include "daemon/prom.h"

#define MAX_CONNS 16
#define REQUEST_MAX 8192
#define IO_TIMEOUT_NS (10ull * 1000000000u)
#define ACCEPT_RETRY_NS (100ull * 1000000u)

struct mconn {
	struct sg_metrics_server *s;
	struct sg_list link;
	int fd;
	struct sg_op op;           /* the one op in flight: the request's recv, then the send */
	char req[REQUEST_MAX + 1];
	size_t got;
	struct sg_prom out;        /* headers and body */
};

struct sg_metrics_server {
	struct sg_loop *loop;
	int fd;
	char unix_path[PATH_MAX];  /* "" for TCP */
	sg_metrics_collect_fn collect;
	void *userdata;
	struct sg_group group;
	struct sg_op accept_op;
	struct sg_op retry_op;
	struct sg_list conns;
	unsigned nconns;
	bool stopping;
};

static void accept_next(struct sg_metrics_server *s);

static void conn_free(struct mconn *c)
{
	struct sg_metrics_server *s = c->s;

	sg_list_unlink(&c->link);
	s->nconns--;
	close(c->fd);
	sg_prom_done(&c->out);
	free(c);
	/* A connection slot is free again: accept if accepting was paused at the limit. */
	if (!s->stopping && !sg_op_busy(&s->accept_op) && !sg_op_busy(&s->retry_op))
		accept_next(s);
}

static void sent(struct sg_op *op)
{
	conn_free(sg_container_of(op, struct mconn, op));
}

static void respond(struct mconn *c, int code, const char *reason, bool head)
{
	struct sg_prom body;
	char hdr[256];

	sg_prom_init(&body);
	if (code == 200)
		c->s->collect(&body, c->s->userdata);
	if (sg_prom_failed(&body)) {
		sg_prom_done(&body);
		sg_prom_init(&body);
		code = 500;
		reason = "Internal Server Error";
	}
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", code, reason,
			 code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
			 body.len);
	sg_prom_init(&c->out);
	/* The headers, then the body, in one buffer: one send. */
	struct sg_prom *o = &c->out;
	o->buf = malloc((size_t)n + (head ? 0 : body.len) + 1);
	if (o->buf) {
		memcpy(o->buf, hdr, (size_t)n);
		if (!head && body.len)
			memcpy(o->buf + n, body.buf, body.len);
		o->len = (size_t)n + (head ? 0 : body.len);
	}
	sg_prom_done(&body);
	if (!o->buf) {
		conn_free(c);
		return;
	}
	sg_op_set_timeout(&c->op, IO_TIMEOUT_NS);
	if (sg_send(c->s->loop, &c->op, c->fd, o->buf, o->len, MSG_NOSIGNAL, sent) < 0)
		conn_free(c);
}

static void received(struct sg_op *op);

static void handle(struct mconn *c)
{
	char method[16], path[256];

	c->req[c->got] = '\0';
	if (sscanf(c->req, "%15s %255s HTTP/1.", method, path) != 2) {
		respond(c, 400, "Bad Request", false);
		return;
	}
	char *q = strchr(path, '?');
	if (q)
		*q = '\0';
	bool head = strcmp(method, "HEAD") == 0;
	if (strcmp(method, "GET") != 0 && !head)
		respond(c, 405, "Method Not Allowed", false);
	else if (strcmp(path, "/metrics") != 0)
		respond(c, 404, "Not Found", head);
	else
		respond(c, 200, "OK", head);
}

static void received(struct sg_op *op)
{
	struct mconn *c = sg_container_of(op, struct mconn, op);

	if (op->res <= 0 || c->s->stopping) {
		conn_free(c);
		return;
	}
	c->got += (size_t)op->res;
	c->req[c->got] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
		handle(c);
		return;
	}
	if (c->got >= REQUEST_MAX) {
		respond(c, 431, "Request Header Fields Too Large", false);
		return;
	}
	if (sg_recv(c->s->loop, &c->op, c->fd, c->req + c->got, REQUEST_MAX - c->got, 0,
		    received) < 0)
		conn_free(c);
}

static void accept_retry(struct sg_op *op)
{
	struct sg_metrics_server *s = sg_container_of(op, struct sg_metrics_server, retry_op);

	if (op->res == 0 && !s->stopping)
		accept_next(s);
}

static void accepted(struct sg_op *op)
{
	struct sg_metrics_server *s = sg_container_of(op, struct sg_metrics_server, accept_op);
	struct mconn *c;

	if (s->stopping) {
		if (op->res >= 0)
			close(op->res);
		return;
	}
	if (op->res < 0) {
		/* EMFILE and friends: the socket is fine, try again shortly. */
		sg_op_init(&s->retry_op);
		sg_op_set_group(&s->retry_op, &s->group);
		(void)sg_timer_start(s->loop, &s->retry_op, ACCEPT_RETRY_NS, accept_retry);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(op->res);
		accept_next(s);
		return;
	}
	c->s = s;
	c->fd = op->res;
	sg_list_insert_tail(&s->conns, &c->link);
	s->nconns++;
	sg_op_init(&c->op);
	sg_op_set_group(&c->op, &s->group);
	sg_op_set_timeout(&c->op, IO_TIMEOUT_NS);
	if (sg_recv(s->loop, &c->op, c->fd, c->req, REQUEST_MAX, 0, received) < 0)
		conn_free(c);   /* accepts the next one itself */
	else
		accept_next(s);
}

static void accept_next(struct sg_metrics_server *s)
{
	if (s->stopping || s->nconns >= MAX_CONNS)
		return;   /* conn_free resumes */
	sg_op_init(&s->accept_op);
	sg_op_set_group(&s->accept_op, &s->group);
	(void)sg_accept(s->loop, &s->accept_op, s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK,
			accepted);
}

/* "host:port", "[v6]:port" or ":port" to a listening TCP socket. */
static int listen_tcp(const char *address, int *ret_fd, struct sg_error *err)
{
	char host[256];
	const char *port;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
	int fd = -1, r;

	if (address[0] == '[') {
		const char *end = strchr(address, ']');
		if (!end || end[1] != ':' || (size_t)(end - address - 1) >= sizeof(host))
			return sg_error_set(err, -EINVAL, "metrics_address \"%s\": expected "
					    "host:port, [v6]:port or a unix socket path", address);
		memcpy(host, address + 1, (size_t)(end - address - 1));
		host[end - address - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(address, ':');
		if (!colon || (size_t)(colon - address) >= sizeof(host))
			return sg_error_set(err, -EINVAL, "metrics_address \"%s\": expected "
					    "host:port, [v6]:port or a unix socket path", address);
		memcpy(host, address, (size_t)(colon - address));
		host[colon - address] = '\0';
		port = colon + 1;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port))
		return sg_error_set(err, -EINVAL, "metrics_address \"%s\": bad port", address);
	/* Startup, before the loop serves: a blocking name lookup is fine here. */
	r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	if (r != 0)
		return sg_error_set(err, -EINVAL, "metrics_address \"%s\": %s", address,
				    gai_strerror(r));
	r = -EADDRNOTAVAIL;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		int one = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) {
			r = 0;
			break;
		}
		r = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (r < 0)
		return sg_error_set(err, r, "cannot listen on metrics_address %s: %s", address,
				    strerror(-r));
	*ret_fd = fd;
	return 0;
}

int sg_metrics_server_new(struct sg_loop *loop, const char *address, sg_metrics_collect_fn collect,
			  void *userdata, struct sg_metrics_server **ret, struct sg_error *err)
{
	struct sg_metrics_server *s;
	int r;

	if (!address || !*address || !collect)
		return sg_error_set(err, -EINVAL, "metrics_address is empty");
	s = calloc(1, sizeof(*s));
	if (!s)
		return sg_error_set(err, -ENOMEM, "out of memory");
	s->loop = loop;
	s->fd = -1;
	s->collect = collect;
	s->userdata = userdata;
	sg_group_init(&s->group);
	sg_list_init(&s->conns);
	sg_op_init(&s->accept_op);
	sg_op_init(&s->retry_op);
	if (address[0] == '/') {
		r = sg_listen_unix(address, &s->fd, err);
		if (r == 0)
			snprintf(s->unix_path, sizeof(s->unix_path), "%s", address);
	} else {
		r = listen_tcp(address, &s->fd, err);
	}
	if (r < 0) {
		free(s);
		return r;
	}
	accept_next(s);
	*ret = s;
	return 0;
}

void sg_metrics_server_shutdown(struct sg_metrics_server *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	sg_group_cancel(&s->group);
}

bool sg_metrics_server_busy(const struct sg_metrics_server *s)
{
	return s && !sg_group_idle(&s->group);
}

void sg_metrics_server_free(struct sg_metrics_server *s)
{
	struct sg_list *n;

	if (!s)
		return;
	SG_FREE_CHECK(!sg_group_idle(&s->group), "metrics server");
	/* Connections whose op completed are freed by their callback; none is left here, but
	 * a connection never given an op (none exists) would be: be thorough anyway. */
	while ((n = sg_list_pop(&s->conns))) {
		struct mconn *c = sg_container_of(n, struct mconn, link);
		close(c->fd);
		sg_prom_done(&c->out);
		free(c);
	}
	if (s->fd >= 0)
		close(s->fd);
	if (s->unix_path[0])
		unlink(s->unix_path);
	free(s);
}
