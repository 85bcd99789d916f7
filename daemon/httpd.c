#include "daemon/httpd.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/list.h"
#include "daemon/core/loop.h"
#include "daemon/process.h"

#define MAX_CONNS 16
#define REQUEST_MAX 8192
#define IO_TIMEOUT_NS (10ull * 1000000000u)
#define ACCEPT_RETRY_NS (100ull * 1000000u)

struct mconn {
	struct sg_httpd *s;
	struct sg_list link;
	int fd;
	struct sg_op op;           /* the one op in flight: the request's recv, then the send */
	char req[REQUEST_MAX + 1];
	size_t got;
	char *out;                 /* headers and body */
	size_t out_len;
	uint64_t started_ns;       /* the request must be complete 10 s after the accept */
};

struct sg_httpd {
	struct sg_loop *loop;
	int fd;
	char unix_path[PATH_MAX];  /* "" for TCP */
	const struct sg_httpd_route *routes;
	size_t nroutes;
	void *userdata;
	struct sg_group group;
	struct sg_op accept_op;
	struct sg_op retry_op;
	struct sg_list conns;
	unsigned nconns;
	bool stopping;
};

static void accept_next(struct sg_httpd *s);

static void conn_free(struct mconn *c)
{
	struct sg_httpd *s = c->s;

	sg_list_unlink(&c->link);
	s->nconns--;
	close(c->fd);
	free(c->out);
	free(c);
	/* A connection slot is free again: accept if accepting was paused at the limit. */
	if (!s->stopping && !sg_op_busy(&s->accept_op) && !sg_op_busy(&s->retry_op))
		accept_next(s);
}

static void sent(struct sg_op *op)
{
	conn_free(sg_container_of(op, struct mconn, op));
}

/* The reason phrase of a status this server sends (one a route returns that is not listed
 * goes out as "Status"). */
static const char *reason_of(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	default: return "Status";
	}
}

static void respond(struct mconn *c, int code, bool head,
		    const struct sg_httpd_route *route, const char *path, const char *query)
{
	const struct sg_httpd_req req = { .head = head, .path = path, .query = query };
	char *body = NULL;
	size_t body_len = 0;
	FILE *f;

	if (route) {
		f = open_memstream(&body, &body_len);
		if (f) {
			int r = route->fn(f, &req, c->s->userdata);
			if (fclose(f) != 0 || r < 0) {
				free(body);
				body = NULL;
			} else if (r >= 100 && r <= 599) {
				code = r;
			}
		}
		if (!body) {
			code = 500;
			body_len = 0;
		}
	}
	f = open_memstream(&c->out, &c->out_len);
	if (f) {
		fprintf(f, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			"Connection: close\r\n\r\n", code, reason_of(code),
			code == 200 && route ? route->content_type : "text/plain", body_len);
		if (!head && body_len)
			fwrite(body, 1, body_len, f);
		if (fclose(f) != 0) {
			free(c->out);
			c->out = NULL;
		}
	}
	free(body);
	if (!c->out) {
		conn_free(c);
		return;
	}
	sg_op_set_timeout(&c->op, IO_TIMEOUT_NS);
	if (sg_send(c->s->loop, &c->op, c->fd, c->out, c->out_len, MSG_NOSIGNAL, sent) < 0)
		conn_free(c);
}

static void received(struct sg_op *op);

static void handle(struct mconn *c)
{
	char method[16], path[1024];

	c->req[c->got] = '\0';
	if (sscanf(c->req, "%15s %1023s HTTP/1.", method, path) != 2) {
		respond(c, 400, false, NULL, NULL, NULL);
		return;
	}
	char *q = strchr(path, '?');
	if (q)
		*q++ = '\0';
	bool head = strcmp(method, "HEAD") == 0;
	const struct sg_httpd_route *route = NULL;
	for (size_t i = 0; i < c->s->nroutes && !route; i++) {
		const struct sg_httpd_route *rt = &c->s->routes[i];
		if (rt->prefix ? strncmp(path, rt->path, strlen(rt->path)) == 0
			       : strcmp(path, rt->path) == 0)
			route = rt;
	}
	if ((strcmp(method, "GET") != 0 && !head) || (head && route && route->acts))
		respond(c, 405, false, NULL, NULL, NULL);
	else if (!route)
		respond(c, 404, head, NULL, NULL, NULL);
	else
		respond(c, 200, head, route, path, q ? q : "");
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
	/* A client that trickles its request holds a connection slot: the idle timeout alone
	 * would let 16 of them shut the endpoint out for good. */
	if (sg_now_ns() - c->started_ns > IO_TIMEOUT_NS) {
		conn_free(c);
		return;
	}
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
		handle(c);
		return;
	}
	if (c->got >= REQUEST_MAX) {
		respond(c, 431, false, NULL, NULL, NULL);
		return;
	}
	if (sg_recv(c->s->loop, &c->op, c->fd, c->req + c->got, REQUEST_MAX - c->got, 0,
		    received) < 0)
		conn_free(c);
}

static void accept_retry(struct sg_op *op)
{
	struct sg_httpd *s = sg_container_of(op, struct sg_httpd, retry_op);

	if (op->res == 0 && !s->stopping)
		accept_next(s);
}

static void accepted(struct sg_op *op)
{
	struct sg_httpd *s = sg_container_of(op, struct sg_httpd, accept_op);
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
	c->started_ns = sg_now_ns();
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

static void accept_next(struct sg_httpd *s)
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
			return sg_error_set(err, -EINVAL, "address \"%s\": expected "
					    "host:port, [v6]:port or a unix socket path", address);
		memcpy(host, address + 1, (size_t)(end - address - 1));
		host[end - address - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(address, ':');
		if (!colon || (size_t)(colon - address) >= sizeof(host))
			return sg_error_set(err, -EINVAL, "address \"%s\": expected "
					    "host:port, [v6]:port or a unix socket path", address);
		memcpy(host, address, (size_t)(colon - address));
		host[colon - address] = '\0';
		port = colon + 1;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port))
		return sg_error_set(err, -EINVAL, "address \"%s\": bad port", address);
	/* Startup, before the loop serves: a blocking name lookup is fine here. */
	r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	if (r != 0)
		return sg_error_set(err, -EINVAL, "address \"%s\": %s", address, gai_strerror(r));
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
		return sg_error_set(err, r, "cannot listen on %s: %s", address, strerror(-r));
	*ret_fd = fd;
	return 0;
}

int sg_httpd_new(struct sg_loop *loop, const char *address, mode_t mode,
		 const struct sg_httpd_route *routes, size_t nroutes, void *userdata,
		 struct sg_httpd **ret, struct sg_error *err)
{
	struct sg_httpd *s;
	int r;

	if (!address || !*address)
		return sg_error_set(err, -EINVAL, "empty address");
	s = calloc(1, sizeof(*s));
	if (!s)
		return sg_error_set(err, -ENOMEM, "out of memory");
	s->loop = loop;
	s->fd = -1;
	s->routes = routes;
	s->nroutes = nroutes;
	s->userdata = userdata;
	sg_group_init(&s->group);
	sg_list_init(&s->conns);
	sg_op_init(&s->accept_op);
	sg_op_init(&s->retry_op);
	if (address[0] == '/') {
		r = sg_listen_unix(address, &s->fd, err);
		if (r == 0) {
			snprintf(s->unix_path, sizeof(s->unix_path), "%s", address);
			/* Narrower than the 0660 it was bound with, never wider. */
			if (chmod(address, mode & 0660) < 0) {
				r = sg_error_set(err, -errno, "chmod %s: %s", address, strerror(errno));
				close(s->fd);
				unlink(address);
			}
		}
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

void sg_httpd_shutdown(struct sg_httpd *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	sg_group_cancel(&s->group);
}

bool sg_httpd_busy(const struct sg_httpd *s)
{
	return s && !sg_group_idle(&s->group);
}

void sg_httpd_free(struct sg_httpd *s)
{
	struct sg_list *n;

	if (!s)
		return;
	SG_FREE_CHECK(!sg_group_idle(&s->group), "http endpoint");
	/* Connections whose op completed are freed by their callback; none is left here, but
	 * a connection never given an op (none exists) would be: be thorough anyway. */
	while ((n = sg_list_pop(&s->conns))) {
		struct mconn *c = sg_container_of(n, struct mconn, link);
		close(c->fd);
		free(c->out);
		free(c);
	}
	if (s->fd >= 0)
		close(s->fd);
	if (s->unix_path[0])
		unlink(s->unix_path);
	free(s);
}
