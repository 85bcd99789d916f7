/* Host pools of the registry client: one pool per (scheme, host, port, TLS profile), each with
 * its keep-alive connections, at most max_conns_per_host of them; what the client learned
 * about a host (how it answers ranges, whether it wants Basic credentials) and its traffic
 * counters live here too.
 *
 * A connection is acquired for one request, which sends and receives on it and releases it:
 * back to the host's idle list (keep-alive), or closed.  Acquiring takes an idle connection,
 * opens a new one (TCP connect through net/conn, then the TLS handshake through net/tls), or
 * waits for one to be released when the host has max_conns_per_host already.  An idle
 * connection has no op in flight, so a server that closed it is noticed on reuse, and one
 * idle for longer than SG_POOL_IDLE_MAX_NS is closed instead of reused (servers drop idle
 * keep-alive connections after 30-120 s).
 *
 * Acquire, send and receive are continuations in the loop's shape (daemon/core/loop.h): the
 * caller's op completes once, from the loop.  Errors are negative errno values; a failed
 * acquire says why in err ("connect: Connection refused", "TLS handshake: certificate not
 * trusted (unknown CA) (BearSSL error 62)").  Nothing here logs.
 */
#ifndef STARGZD_NET_POOL_H
#define STARGZD_NET_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_pool;
struct sg_host;
struct sg_pool_conn;
struct sg_tls_trust;
struct sg_link_meter;

#define SG_POOL_IDLE_MAX_NS (20000ull * 1000000ull)
#define SG_POOL_CONN_BUF 65536            /* bytes one receive delivers at most */

/* How a host answers a request for several ranges (learned by net/blob.c). */
enum sg_multirange {
	SG_MULTIRANGE_UNKNOWN,            /* not tried yet */
	SG_MULTIRANGE_OK,                 /* multipart/byteranges answers seen */
	SG_MULTIRANGE_REFUSED,            /* 400/416 (GCR-like) */
	SG_MULTIRANGE_WHOLE,              /* the whole blob as 200 (ECR-like) */
	SG_MULTIRANGE_FIRST_ONLY,         /* a plain 206 with only (part of) the ranges */
	_SG_MULTIRANGE_MAX,
};
const char *sg_multirange_name(enum sg_multirange m);

/* Why a request was tried again. */
enum sg_retry_cause {
	SG_RETRY_CONNECTION,              /* connect, TLS, reset, truncated answer */
	SG_RETRY_TIMEOUT,                 /* no answer in time, or 408 */
	SG_RETRY_SERVER,                  /* 5xx */
	SG_RETRY_THROTTLED,               /* 429 */
	_SG_RETRY_CAUSE_MAX,
};
/* "connection", "timeout", "server_error", "throttled". */
const char *sg_retry_cause_name(enum sg_retry_cause c);

struct sg_host_stats {
	enum sg_multirange multirange;
	bool ignores_ranges;              /* answered a single range with 200 */
	unsigned conns_opened;
	unsigned conns_max_seen;          /* peak simultaneous connections */
	unsigned requests;                /* requests sent, retries included */
	unsigned retries;
	unsigned retries_by[_SG_RETRY_CAUSE_MAX];
	unsigned reused;                  /* requests sent on a kept-alive connection */
	unsigned failures;                /* requests that failed after their retries */
	char last_error[256];             /* the last one's message, query strings cut out */
	/* The link meter's figures (sg_pool_stats, sg_pool_each_host; 0 = no sample yet). */
	uint64_t link_rtt_ns;
	uint64_t link_bytes_per_s;
};

struct sg_pool_config {
	uint64_t connect_timeout_ns;      /* TCP connect + TLS handshake; 0 = none */
	unsigned max_conns_per_host;      /* 0 = 1 */
	unsigned max_hosts;               /* pools; unused ones are collected beyond it */
	const struct sg_tls_trust *trust; /* for TLS hosts without their own; must outlive */
};

int sg_pool_new(struct sg_loop *loop, const struct sg_pool_config *config, struct sg_pool **ret);
/* Closes the idle connections and ends every waiting acquire with -ECANCELED; from then on
 * an acquire is refused (-ECANCELED) and a released connection is closed.  NULL is fine. */
void sg_pool_shutdown(struct sg_pool *p);
/* True while a connection is not idle (connecting, in use, or closing with an op in flight)
 * or an acquire waits. */
bool sg_pool_busy(const struct sg_pool *p);
/* Shuts down and frees.  Aborts (SG_FREE_CHECK) while busy.  NULL is fine. */
void sg_pool_free(struct sg_pool *p);

/* The pool for (tls, hostname, port, profile), created on first use.  hostname is bare (no
 * brackets); trust NULL means the pool's default; plain HTTP pools have no TLS profile.
 * NULL when there are max_hosts pools in use, or out of memory. */
struct sg_host *sg_pool_host(struct sg_pool *p, bool tls, const char *hostname, uint16_t port,
			     bool skip_verify, const struct sg_tls_trust *trust);
/* A host an endpoint uses is never collected. */
void sg_host_pin(struct sg_host *h);

bool sg_host_tls(const struct sg_host *h);
const char *sg_host_name(const struct sg_host *h);
uint16_t sg_host_port(const struct sg_host *h);
/* "host[:port]", the port only when not the scheme's default: the Host header. */
const char *sg_host_authority(const struct sg_host *h);
/* Same scheme, host name and port. */
bool sg_host_same_origin(const struct sg_host *a, const struct sg_host *b);
/* The host's counters and range behaviour; the caller may update what it learns. */
struct sg_host_stats *sg_host_stats(struct sg_host *h);
/* The link to the host (daemon/core/link_meter.h): fed by the blob reads from it, read by
 * the layers fetching from it.  Lives as long as the host (a pinned host, as long as the
 * pool). */
struct sg_link_meter *sg_host_link(struct sg_host *h);
/* Whether the host answered 401 with a Basic challenge (the exchange then sends Basic
 * credentials up front). */
bool sg_host_wants_basic(const struct sg_host *h);
void sg_host_set_wants_basic(struct sg_host *h);
/* The counters of every pool of `host`, "host:port" as in a URL ("127.0.0.1:5000") or as in
 * the Host header: http and https pools are summed.  Returns 0 or -ENOENT. */
int sg_pool_stats(const struct sg_pool *p, const char *host, struct sg_host_stats *ret);
/* Calls fn once for every host the pool knows ("host:port" as in the Host header, tls), with
 * the counters of all its pools summed. */
void sg_pool_each_host(const struct sg_pool *p,
		       void (*fn)(void *userdata, const char *authority, bool tls,
				  const struct sg_host_stats *st),
		       void *userdata);

/* Gets a ready connection to h.  cb(op) runs once from the loop: op->res 0 with *ret_conn
 * (the caller's until sg_pool_conn_release), or a negative errno with err saying why.
 * Returns 0, or at once -ECANCELED (shut down), -ENOMEM ("out of memory" in err), -EBUSY. */
int sg_host_acquire(struct sg_host *h, struct sg_pool_conn **ret_conn, struct sg_error *err,
		    struct sg_op *op, sg_op_cb cb);
/* Makes an acquire complete early with -ECANCELED (a connection being opened for it is
 * closed).  Returns 0, or -EALREADY when its completion is already on its way. */
int sg_host_acquire_cancel(struct sg_host *h, struct sg_op *op);

/* Sends len bytes (buf stays valid until cb); timeout_ns bounds each network op (0 = none).
 * op->res is len or a negative errno.  Counts a request on the host. */
int sg_pool_conn_send(struct sg_pool_conn *c, const void *buf, size_t len, uint64_t timeout_ns,
		      struct sg_op *op, sg_op_cb cb);
/* Receives up to SG_POOL_CONN_BUF bytes into the connection's buffer (sg_pool_conn_data):
 * op->res is the count, 0 at end of stream, or a negative errno. */
int sg_pool_conn_recv(struct sg_pool_conn *c, uint64_t timeout_ns, struct sg_op *op, sg_op_cb cb);
const uint8_t *sg_pool_conn_data(const struct sg_pool_conn *c);
/* The connection's receive buffer (SO_RCVBUF; the kernel doubles it), which bounds the window
 * it offers the server, so how much of a response may be on the link at once: `bytes`, but
 * never less than SG_POOL_RCVBUF_MIN_MSS of the connection's segments (TCP_MAXSEG), or (0)
 * the kernel's autotuning again, from SG_POOL_RCVBUF_RESTORE.  The window never shrinks below
 * what it offered already: a smaller buffer takes effect as those bytes arrive.  Asking for
 * the buffer the connection has already does nothing. */
#define SG_POOL_RCVBUF_RESTORE (208 << 10)   /* Linux's default rmem_max */
#define SG_POOL_RCVBUF_MIN_MSS 4
void sg_pool_conn_rcvbuf(struct sg_pool_conn *c, unsigned bytes);
/* The connection's socket (tests look at its options). */
int sg_pool_conn_fd(const struct sg_pool_conn *c);
/* Requests sent on the connection so far, the current one included. */
unsigned sg_pool_conn_served(const struct sg_pool_conn *c);
/* Gives the connection back: kept for the next request when `reuse` (and it is in a state
 * to be), else closed.  A send or receive still in flight completes with -ECANCELED. */
void sg_pool_conn_release(struct sg_pool_conn *c, bool reuse);

#endif
