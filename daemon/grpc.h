/* gRPC server over HTTP/2 (libnghttp2) on a listening unix socket, driven by the event loop.
 *
 * The server accepts connections, speaks HTTP/2 with prior knowledge (as gRPC clients do),
 * routes each stream by its `:path` to a method of the table, unframes the request message
 * (5-byte gRPC prefix) and calls the method's handler with the raw protobuf bytes.  The
 * handler answers through the call object — at once or later, from any loop callback:
 *
 *   unary:            sg_grpc_send(call, bytes, len); sg_grpc_finish(call, SG_GRPC_OK, NULL);
 *   server streaming: sg_grpc_send() as often as needed, then sg_grpc_finish();
 *   error:            sg_grpc_finish(call, SG_GRPC_NOT_FOUND, "snapshot x does not exist");
 *
 * Exactly one sg_grpc_finish per call; the call object stays valid until then, even when the
 * client has gone away (sends are then dropped, `sg_grpc_call_closed()` says so).  A malformed
 * frame or message ends that stream or connection with an error, never the daemon.
 */
#ifndef STARGZD_GRPC_H
#define STARGZD_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_loop;
struct sg_prom;
struct sg_grpc_server;
struct sg_grpc_call;

/* gRPC status codes (grpc/status.h numbering); containerd maps them back to its errdefs. */
enum sg_grpc_status {
	SG_GRPC_OK = 0,
	SG_GRPC_CANCELLED = 1,
	SG_GRPC_UNKNOWN = 2,
	SG_GRPC_INVALID_ARGUMENT = 3,
	SG_GRPC_DEADLINE_EXCEEDED = 4,
	SG_GRPC_NOT_FOUND = 5,
	SG_GRPC_ALREADY_EXISTS = 6,
	SG_GRPC_PERMISSION_DENIED = 7,
	SG_GRPC_RESOURCE_EXHAUSTED = 8,
	SG_GRPC_FAILED_PRECONDITION = 9,
	SG_GRPC_ABORTED = 10,
	SG_GRPC_OUT_OF_RANGE = 11,
	SG_GRPC_UNIMPLEMENTED = 12,
	SG_GRPC_INTERNAL = 13,
	SG_GRPC_UNAVAILABLE = 14,
	SG_GRPC_DATA_LOSS = 15,
	SG_GRPC_UNAUTHENTICATED = 16,
};

/* msg/len: the request message (without the gRPC prefix); valid only during the call. */
typedef void (*sg_grpc_handler)(struct sg_grpc_call *call, const uint8_t *msg, size_t len,
				void *userdata);

struct sg_grpc_method {
	const char *path;          /* e.g. "/containerd.services.snapshots.v1.Snapshots/Prepare" */
	sg_grpc_handler handler;
};

struct sg_grpc_limits {
	size_t max_message;        /* largest request message accepted; 0 = 16 MiB */
	unsigned max_connections;  /* 0 = 1024; more clients wait in the listen backlog */
	unsigned max_streams;      /* concurrent streams per connection; 0 = 256.  Calls whose
				    * client has reset them but whose handler has not finished
				    * still count, so a client cannot pile up unfinished calls. */
	size_t max_buffer;         /* bytes held per connection: request messages being
				    * received plus response messages not yet sent; 0 = 64 MiB */
	unsigned shutdown_timeout_ms; /* after GOAWAY, how long streams may stay open before
				       * the connection is closed anyway; 0 = 3000 */
};

/* Starts serving on listen_fd (a listening, non-blocking stream socket the caller owns).
 * Requests whose path is not in the table get UNIMPLEMENTED.  The method table is copied;
 * the path strings it points at must outlive the server.  listen_fd may be -1 for a server
 * that only serves connections handed to it with sg_grpc_server_adopt().  `limits` may be
 * NULL (all defaults).  `userdata` is passed to every handler. */
int sg_grpc_server_new(struct sg_loop *loop, int listen_fd, const struct sg_grpc_method *methods,
		       size_t n_methods, const struct sg_grpc_limits *limits, void *userdata,
		       struct sg_grpc_server **ret_server);

/* Serves an already connected stream socket (one end of a socketpair, in tests and fuzzers).
 * Takes ownership of fd, also on failure.  Returns 0, -ESHUTDOWN after shutdown, -EMFILE at
 * max_connections, -ENOMEM. */
int sg_grpc_server_adopt(struct sg_grpc_server *server, int fd);

/* Open connections and calls a handler still owns (for tests and status output). */
unsigned sg_grpc_server_connections(const struct sg_grpc_server *server);
unsigned sg_grpc_server_calls(const struct sg_grpc_server *server);

/* Writes stargzd_grpc_requests_total{grpc_service, grpc_method, grpc_code} and
 * stargzd_grpc_request_duration_seconds{grpc_service, grpc_method} (daemon/prom.h): every
 * call a handler finished, timed from the handler's start.  NULL server: the empty families. */
void sg_grpc_server_metrics(const struct sg_grpc_server *server, struct sg_prom *p);

/* Stops accepting and closes every connection once its calls have finished (GOAWAY first).
 * `done` runs from the loop when nothing of the server is left in flight — every connection
 * closed and every call finished by its owner; then free it.  Handlers may still be called
 * for requests that were already in flight when the GOAWAY went out.  A stream still open
 * after limits.shutdown_timeout_ms has its connection closed (its call, if a handler owns
 * it, becomes closed and still waits for its sg_grpc_finish). */
void sg_grpc_server_shutdown(struct sg_grpc_server *server, void (*done)(void *userdata),
			     void *userdata);
/* Frees the server.  Call it after `done` has run, or after sg_loop_drain() (then whatever
 * was left is released, calls included: no call may be used afterwards).  NULL is fine. */
void sg_grpc_server_free(struct sg_grpc_server *server);

/* Queues one response message (copied).  Returns 0, -EPIPE if the client is gone, -ENOBUFS
 * if the connection already holds limits.max_buffer bytes (a client that does not read; the
 * call should be finished with an error), -EMSGSIZE above 4 GiB, -ENOMEM. */
int sg_grpc_send(struct sg_grpc_call *call, const uint8_t *msg, size_t len);
/* Ends the call with a status and optional message (sent as grpc-status/grpc-message
 * trailers, percent-encoded as gRPC requires; the text is cut at 1024 bytes).  If nothing
 * was sent, this is a Trailers-Only response.  Frees the call. */
void sg_grpc_finish(struct sg_grpc_call *call, enum sg_grpc_status status, const char *message);
/* True once the client reset the stream or the connection died. */
bool sg_grpc_call_closed(const struct sg_grpc_call *call);
/* The request's :path, e.g. for log lines; valid until sg_grpc_finish. */
const char *sg_grpc_call_path(const struct sg_grpc_call *call);

#endif
