/* A gRPC client for unary calls to a local server (containerd's socket, for the CRI proxy),
 * over HTTP/2 with libnghttp2's client session, driven by the event loop.
 *
 * One connection, opened on the first call and again after it broke; calls made meanwhile
 * wait for it.  A call is a continuation in the loop's shape (daemon/core/loop.h): cb(op)
 * runs once from the loop, op->res 0 once the server answered (the gRPC status, message and
 * response message are in *ret, even for a status other than OK), or a negative errno when
 * no answer came (-ECONNREFUSED, -ECONNRESET, -ETIMEDOUT after timeout_ns, -ECANCELED).
 * Nothing here logs. */
#ifndef STARGZD_GRPC_CLIENT_H
#define STARGZD_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"

struct sg_grpc_client;

struct sg_grpc_reply {
	int status;                /* grpc-status; 2 (UNKNOWN) if the server sent none */
	char message[512];         /* grpc-message, decoded */
	uint8_t *body;             /* the response message without its prefix (malloc'd) */
	size_t body_len;
};

void sg_grpc_reply_done(struct sg_grpc_reply *r);

/* unix_path must outlive the client. */
int sg_grpc_client_new(struct sg_loop *loop, const char *unix_path, struct sg_grpc_client **ret);
/* Sends one request message (copied) to `path` ("/pkg.Service/Method"); see above.  timeout_ns
 * 0 = none.  -EBUSY if op is in flight, -ECANCELED after shutdown, -ENOMEM. */
int sg_grpc_client_call(struct sg_grpc_client *c, const char *path, const uint8_t *msg,
			size_t len, uint64_t timeout_ns, struct sg_grpc_reply *ret, struct sg_op *op,
			sg_op_cb cb);
/* Every call still owed completes with -ECANCELED (from the loop); the connection closes.
 * Then sg_grpc_client_busy() turns false. */
void sg_grpc_client_shutdown(struct sg_grpc_client *c);
bool sg_grpc_client_busy(const struct sg_grpc_client *c);
void sg_grpc_client_free(struct sg_grpc_client *c);

#endif
