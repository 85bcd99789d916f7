/* A tiny blocking HTTP/1.1 server on threads, for the net/ unit tests that need a peer:
 *
 *  - blob mode (blob != NULL): HEAD and GET of one blob, a single "Range: bytes=a-b" or
 *    "bytes=-N" honoured with a 206, keep-alive, GETs counted, an optional delay before each answer, connection counters;
 *    a request for several ranges gets its first only (a first-range-only server), or with
 *    `multirange` all of them as multipart/byteranges, parts framed as Go's net/http frames
 *    them (docker-registry); multi_gets counts the GETs of several ranges;
 *  - script mode: each request gets the next of `script` (whole responses, sent as they are;
 *    "HTTP/1.1 500 no more" after the last), and its head is kept in heads[] (the first 64),
 *    its body (a request with "Content-Length: N", at most 2 KiB) in bodies[];
 *  - route mode (route != NULL, no script): the response is route(head, route_ctx), for
 *    requests sent in parallel whose order is not fixed; heads and bodies kept alike.
 *
 * Header-only: each test program includes it once.  Threads are detached and live until the
 * program exits. */
#ifndef STARGZD_TESTS_HTTP_SERVER_H
#define STARGZD_TESTS_HTTP_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TEST_SERVER_HEADS 64

struct test_server {
	int port;
	int listen_fd;
	/* blob mode */
	const uint8_t *blob;
	size_t blob_size;
	atomic_int delay_ms;
	int mss;                        /* segments it accepts and sends (TCP_MAXSEG); 0: lo's */
	atomic_int gets, head_reqs;
	bool multirange;
	bool multi_whole;               /* several ranges: 200 and the whole blob */
	atomic_int multi_gets;
	/* script mode */
	const char *const *script;
	size_t nscript;
	/* route mode: a whole response (kept alive by the caller), NULL for a 404 */
	const char *(*route)(const char *head, void *ctx);
	void *route_ctx;
	atomic_int next;
	char heads[TEST_SERVER_HEADS][2048];
	char bodies[TEST_SERVER_HEADS][2048];
	atomic_int nheads;
	/* counters */
	atomic_int conns_open, conns_peak, conns_total;
};

struct test_server_conn {
	struct test_server *s;
	int fd;
};

static inline size_t test_server_answer_blob(struct test_server *s, const char *req, size_t hlen,
					     char *head, size_t cap, size_t *ret_off,
					     size_t *ret_len)
{
	unsigned long long a = 0, b = s->blob_size - 1;
	bool ranged = false, is_head = !strncmp(req, "HEAD ", 5);
	const char *rg = memmem(req, hlen, "Range: bytes=", 13);
	int n;

	unsigned long long suffix;
	if (rg && sscanf(rg + 13, "%llu-%llu", &a, &b) == 2) {
		ranged = true;
	} else if (rg && sscanf(rg + 13, "-%llu", &suffix) == 1 && suffix > 0) {
		/* "bytes=-N": the last N bytes (all of a smaller blob) */
		a = suffix < s->blob_size ? s->blob_size - suffix : 0;
		ranged = true;
	}
	atomic_fetch_add(is_head ? &s->head_reqs : &s->gets, 1);
	if (is_head || !ranged)
		n = snprintf(head, cap, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			     s->blob_size);
	else
		n = snprintf(head, cap,
			     "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %llu-%llu/%zu\r\n"
			     "Content-Length: %llu\r\n\r\n", a, b, s->blob_size, b - a + 1);
	*ret_off = ranged ? a : 0;
	*ret_len = is_head ? 0 : ranged ? b - a + 1 : s->blob_size;
	return (size_t)n;
}

static inline bool test_server_send(int fd, const void *p, size_t len)
{
	while (len) {
		ssize_t r = send(fd, p, len, MSG_NOSIGNAL);
		if (r <= 0)
			return false;
		p = (const char *)p + r;
		len -= (size_t)r;
	}
	return true;
}

#define TEST_SERVER_BOUNDARY "b0undary5eparat0r"
#define TEST_SERVER_CLOSE "\r\n--" TEST_SERVER_BOUNDARY "--\r\n"

/* The head of part i of a multipart/byteranges body (Go's framing: no CRLF before the
 * first boundary). */
static inline size_t test_server_part_head(const struct test_server *s, size_t i,
					   unsigned long long a, unsigned long long b, char *buf,
					   size_t cap)
{
	return (size_t)snprintf(buf, cap, "%s--" TEST_SERVER_BOUNDARY "\r\nContent-Type: "
				"application/octet-stream\r\nContent-Range: bytes %llu-%llu/%zu"
				"\r\n\r\n", i ? "\r\n" : "", a, b, s->blob_size);
}

/* A GET of several ranges, answered as multipart/byteranges when multirange is on
 * (*ret_answered; else the caller answers the first range).  False: the connection is to
 * close. */
static inline bool test_server_answer_multi(struct test_server *s, int fd, const char *req,
					    size_t hlen, bool *ret_answered)
{
	unsigned long long a[64], b[64];
	size_t n = 0, body_len = 0;
	const char *p = memmem(req, hlen, "Range: bytes=", 13);
	char part[256], head[256];
	int k;

	*ret_answered = false;
	if (!p)
		return true;
	for (p += 13; n < 64 && sscanf(p, "%llu-%llu%n", &a[n], &b[n], &k) == 2; p++) {
		p += k;
		n++;
		if (*p != ',')
			break;
	}
	if (n < 2)
		return true;
	atomic_fetch_add(&s->multi_gets, 1);
	if (s->multi_whole) {
		/* A server (a CDN) that answers several ranges with the whole blob: its head,
		 * then the body until the client hangs up. */
		*ret_answered = true;
		atomic_fetch_add(&s->gets, 1);
		k = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			     s->blob_size);
		if (!test_server_send(fd, head, (size_t)k))
			return false;
		(void)test_server_send(fd, s->blob, s->blob_size);
		return false;
	}
	if (!s->multirange)
		return true;   /* a first-range-only server: the single-range answer */
	for (size_t i = 0; i < n; i++)
		body_len += test_server_part_head(s, i, a[i], b[i], part, sizeof(part)) +
			    (size_t)(b[i] - a[i] + 1);
	body_len += strlen(TEST_SERVER_CLOSE);
	k = snprintf(head, sizeof(head), "HTTP/1.1 206 Partial Content\r\nContent-Type: "
		     "multipart/byteranges; boundary=" TEST_SERVER_BOUNDARY "\r\n"
		     "Content-Length: %zu\r\n\r\n", body_len);
	*ret_answered = true;
	atomic_fetch_add(&s->gets, 1);
	if (!test_server_send(fd, head, (size_t)k))
		return false;
	for (size_t i = 0; i < n; i++) {
		size_t pl = test_server_part_head(s, i, a[i], b[i], part, sizeof(part));
		if (!test_server_send(fd, part, pl) ||
		    !test_server_send(fd, s->blob + a[i], (size_t)(b[i] - a[i] + 1)))
			return false;
	}
	return test_server_send(fd, TEST_SERVER_CLOSE, strlen(TEST_SERVER_CLOSE));
}

/* Answers one request; false when the connection is to close. */
static inline bool test_server_answer(struct test_server *s, int fd, const char *req, size_t hlen,
				      size_t blen)
{
	char head[512];
	size_t off, len;

	if (atomic_load(&s->delay_ms))
		usleep((useconds_t)atomic_load(&s->delay_ms) * 1000);
	if (!s->blob) {
		int k = atomic_fetch_add(&s->nheads, 1);
		int i = atomic_fetch_add(&s->next, 1);
		const char *resp = (size_t)i < s->nscript ? s->script[i] :
				   "HTTP/1.1 500 no more\r\nContent-Length: 0\r\n\r\n";
		char rhead[2048];
		if (s->route) {
			snprintf(rhead, sizeof(rhead), "%.*s", (int)hlen, req);
			resp = s->route(rhead, s->route_ctx);
			if (!resp)
				resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
		}
		if (k < TEST_SERVER_HEADS) {
			snprintf(s->heads[k], sizeof(s->heads[k]), "%.*s", (int)hlen, req);
			snprintf(s->bodies[k], sizeof(s->bodies[k]), "%.*s", (int)blen, req + hlen);
		}
		return test_server_send(fd, resp, strlen(resp)) && !strstr(resp, "Connection: close");
	}
	if (!strncmp(req, "GET ", 4)) {
		bool answered;
		bool ok = test_server_answer_multi(s, fd, req, hlen, &answered);
		if (answered)
			return ok;
	}
	size_t hl = test_server_answer_blob(s, req, hlen, head, sizeof(head), &off, &len);
	return test_server_send(fd, head, hl) && test_server_send(fd, s->blob + off, len);
}

/* More of a request into req (cap bytes, *have used); false at the end or when full. */
static inline bool test_server_recv(int fd, char *req, size_t cap, size_t *have)
{
	ssize_t r;

	if (*have == cap)
		return false;
	r = recv(fd, req + *have, cap - *have, 0);
	if (r <= 0)
		return false;
	*have += (size_t)r;
	return true;
}

static inline void *test_server_conn_main(void *arg)
{
	struct test_server_conn *c = arg;
	struct test_server *s = c->s;
	int fd = c->fd;
	char req[8192];
	size_t have = 0;

	free(c);
	int n = atomic_fetch_add(&s->conns_open, 1) + 1;
	int peak = atomic_load(&s->conns_peak);
	while (n > peak && !atomic_compare_exchange_weak(&s->conns_peak, &peak, n))
		;
	for (;;) {
		char *end;
		while (!(end = memmem(req, have, "\r\n\r\n", 4)))
			if (!test_server_recv(fd, req, sizeof(req), &have))
				goto out;
		size_t hlen = (size_t)(end - req) + 4, blen = 0;
		const char *cl = memmem(req, hlen, "\r\nContent-Length: ", 18);
		if (cl)
			blen = strtoul(cl + 18, NULL, 10);
		while (have < hlen + blen)
			if (!test_server_recv(fd, req, sizeof(req), &have))
				goto out;
		if (!test_server_answer(s, fd, req, hlen, blen))
			goto out;
		memmove(req, req + hlen + blen, have - hlen - blen);
		have -= hlen + blen;
	}
out:
	atomic_fetch_sub(&s->conns_open, 1);
	close(fd);
	return NULL;
}

static inline void *test_server_main(void *arg)
{
	struct test_server *s = arg;

	for (;;) {
		int fd = accept(s->listen_fd, NULL, NULL);
		struct test_server_conn *c;
		pthread_t t;
		if (fd < 0)
			return NULL;
		atomic_fetch_add(&s->conns_total, 1);
		c = malloc(sizeof(*c));
		c->s = s;
		c->fd = fd;
		pthread_create(&t, NULL, test_server_conn_main, c);
		pthread_detach(t);
	}
}

/* Listens on 127.0.0.1 and serves s from a thread.  Returns the port, or -1. */
static inline int test_server_start(struct test_server *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pthread_t t;

	if (ls < 0 || (s->mss && setsockopt(ls, IPPROTO_TCP, TCP_MAXSEG, &s->mss, sizeof(s->mss)) < 0) ||
	    bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 64) < 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	s->listen_fd = ls;
	s->port = ntohs(sa.sin_port);
	pthread_create(&t, NULL, test_server_main, s);
	pthread_detach(t);
	return s->port;
}

#endif
