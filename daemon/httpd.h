/* A small HTTP/1.x endpoint on the loop, for the metrics endpoint (Prometheus scrapes GET
 * /metrics on metrics_address) and the control socket (`stargzd status` asks GET /status on
 * ROOT/stargzd-control.sock).  The address is a TCP "host:port" ("127.0.0.1:9104",
 * "[::1]:9104", ":9104" for every address) or a unix socket path (created with `mode`).
 *
 * Everything runs on the loop: accept, the request read (10 s to arrive, 8 KiB at most) and
 * the answer's send (10 s of no progress at most) are ring ops; the body is written by the
 * route's function, synchronously, from what the daemon already holds in memory (no I/O),
 * so an answer costs the loop one pass over the mounted layers.  At most 16 connections at
 * once; one request per connection (Connection: close).  GET and HEAD of a route's path
 * are answered by its function (HEAD not for a route that acts: 405), other paths 404,
 * other methods 405.  Nothing here logs. */
#ifndef STARGZD_HTTPD_H
#define STARGZD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "daemon/core/error.h"

struct sg_loop;
struct sg_httpd;

/* What a route's function is asked. */
struct sg_httpd_req {
	bool head;                     /* a HEAD (the body is not sent), else a GET */
	const char *path;              /* without the query */
	const char *query;             /* what followed '?' in the target; "" without one */
};

struct sg_httpd_route {
	const char *path;              /* "/metrics"; with `prefix`, "/v2/" */
	const char *content_type;
	/* Writes the body.  Returns 0 (200 OK), another HTTP status (100-599, its body sent as
	 * text/plain), or a negative errno (500, no body). */
	int (*fn)(FILE *out, const struct sg_httpd_req *req, void *userdata);
	/* The route does something (`stargzd pull-ahead`'s): GET only, a HEAD is answered 405
	 * without calling fn. */
	bool acts;
	/* Every path that starts with `path` is the route's. */
	bool prefix;
};

/* Binds the address and starts accepting.  routes (and the strings they point at) must
 * outlive the server.  -errno with a message in err: a bad address (-EINVAL), one in use
 * (-EADDRINUSE), ... */
int sg_httpd_new(struct sg_loop *loop, const char *address, mode_t mode,
		 const struct sg_httpd_route *routes, size_t nroutes, void *userdata,
		 struct sg_httpd **ret, struct sg_error *err);
/* Stops accepting and cancels every connection; their completions follow from the loop.
 * Then sg_httpd_busy() turns false, and the server may be freed. */
void sg_httpd_shutdown(struct sg_httpd *s);
bool sg_httpd_busy(const struct sg_httpd *s);
/* Closes the socket (and removes a unix socket file).  NULL is fine; a busy server aborts. */
void sg_httpd_free(struct sg_httpd *s);

#endif
