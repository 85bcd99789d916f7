/* TCP connections on the event loop: name resolution, connect with a timeout, then the fd is
 * the caller's (plain HTTP uses sg_send/sg_recv on it; TLS wraps it with net/tls.h).
 *
 * Name resolution.  getaddrinfo() blocks (DNS over the network, /etc/hosts, NSS modules), and
 * the loop must never block.  The choice made here: each non-numeric lookup runs getaddrinfo
 * on a short-lived detached helper thread, which reports back through a pipe that the loop
 * reads with an ordinary sg_read, so the answer arrives as a normal completion and the loop
 * thread never waits.  Why not the alternatives: glibc's getaddrinfo_a() also uses threads
 * internally but reports through signals or its own threads, which fit the ring worse; a
 * hand-written DNS client would skip /etc/hosts and NSS, which users rely on for registries;
 * resolving only at configuration time breaks on DNS changes (registries behind CDNs rotate
 * addresses).  Numeric addresses skip the thread.  Lookups are rare (one per new connection,
 * and the registry layer pools connections), so a thread per lookup is cheap enough; a
 * timeout abandons the lookup without waiting for the thread, which then cleans up alone.
 *
 * Connecting tries each resolved address in order (IPv6 and IPv4 as getaddrinfo sorts them,
 * RFC 6724), each attempt bounded by the timeout, and reports the first success or the last
 * error.  The connect is a continuation in the loop's shape (daemon/core/loop.h): the caller's
 * op completes once, from the loop's dispatch, never from inside sg_conn_connect.
 */
#ifndef STARGZD_NET_CONN_H
#define STARGZD_NET_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "daemon/core/loop.h"

struct sg_conn;
struct sg_resolve;
struct addrinfo;

struct sg_conn {
	struct sg_loop *loop;
	int fd;                       /* the connected socket after success, else -1 */

	/* Private. */
	struct sg_op op;              /* resolve wait, connect attempts */
	struct sg_op *done_op;        /* the caller's, completed with sg_post */
	sg_op_cb done_cb;
	uint64_t timeout_ns;
	struct sg_resolve *res;
	struct addrinfo *ai, *ai_cur;
	int last_err;
	uint8_t resolve_byte;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[256];
	char port[8];
};

void sg_conn_init(struct sg_conn *c, struct sg_loop *loop);
/* Resolves host and connects.  timeout_ns bounds the lookup and each connect attempt (0 = no
 * bound).  Returns 0, and cb(op) runs once with op->res 0 and c->fd connected, or a negative
 * errno (-ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -ENOENT for an unknown name,
 * -ECANCELED); or returns a negative errno at once (then cb never runs). */
int sg_conn_connect(struct sg_conn *c, const char *host, uint16_t port, uint64_t timeout_ns,
		    struct sg_op *op, sg_op_cb cb);
/* Aborts a connect in progress; its op still completes, with -ECANCELED. */
void sg_conn_cancel(struct sg_conn *c);
/* True while a connect is in progress (the conn must not be freed). */
bool sg_conn_busy(const struct sg_conn *c);
/* Closes the socket (synchronously: close(2) of a socket does not block without SO_LINGER)
 * and frees resolution state.  The caller's own ops on c->fd must have completed. */
void sg_conn_close(struct sg_conn *c);

#endif
