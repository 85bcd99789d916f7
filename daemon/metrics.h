/* The metrics endpoint: Prometheus scrapes GET /metrics over HTTP/1.x on a TCP address
 * ("127.0.0.1:9104", "[::1]:9104", ":9104" for every address) or a unix socket path
 * ("/run/stargzd/metrics.sock", created 0660 like the main socket).
 *
 * Everything runs on the loop: accept, the request read (10 s to arrive, 8 KiB at most),
 * the answer's send (10 s of no progress at most) are ring ops; the body is written by the
 * owner's collect function, synchronously, from what the daemon already counts (no I/O), so
 * a scrape costs the loop one pass over the mounted layers.  At most 16 connections are
 * served at once; one request per connection (Connection: close).  Only GET and HEAD of
 * /metrics are answered (200); other paths 404, other methods 405.  Nothing here logs. */
#ifndef STARGZD_METRICS_H
#define STARGZD_METRICS_H

#include <stdbool.h>

#include "daemon/core/error.h"

struct sg_loop;
struct sg_prom;
struct sg_metrics_server;

typedef void (*sg_metrics_collect_fn)(struct sg_prom *out, void *userdata);

/* Binds the address and starts accepting.  -errno with a message in err: a bad address
 * (-EINVAL), one in use (-EADDRINUSE), ... */
int sg_metrics_server_new(struct sg_loop *loop, const char *address, sg_metrics_collect_fn collect,
			  void *userdata, struct sg_metrics_server **ret, struct sg_error *err);
/* Stops accepting and cancels every connection; their completions follow from the loop.
 * Then sg_metrics_server_busy() turns false, and the server may be freed. */
void sg_metrics_server_shutdown(struct sg_metrics_server *s);
bool sg_metrics_server_busy(const struct sg_metrics_server *s);
/* Closes the socket (and removes a unix socket file).  NULL is fine; a busy server aborts. */
void sg_metrics_server_free(struct sg_metrics_server *s);

#endif
