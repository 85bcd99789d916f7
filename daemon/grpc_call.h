/* A call of the gRPC server (daemon/grpc.h) and the layout its two files share.
 *
 * The server is one module in two files: grpc.c runs the server, its connections and the
 * nghttp2 callbacks; grpc_call.c is one call (one HTTP/2 stream): the request message
 * reassembled from DATA, the answers that end the stream, the response queue and its data
 * provider, and the handler's side of grpc.h (sg_grpc_send, sg_grpc_finish).  This header
 * is private to those two files: the structs below are the server's, nobody else's.
 *
 * The lifetime rules are in grpc.c's opening comment. */
#ifndef STARGZD_GRPC_CALL_H
#define STARGZD_GRPC_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "daemon/core/hist.h"
#include "daemon/core/list.h"
#include "daemon/core/loop.h"
#include "daemon/grpc.h"
#include "daemon/grpc_wire.h"

#define RECV_BUF_SIZE     16384

struct grpc_conn;

struct sg_grpc_call {
	struct sg_grpc_server *server;
	struct grpc_conn *conn;          /* NULL once the connection is gone */
	struct sg_list link;             /* conn->calls, or server->orphans */
	struct sg_list ready_link;       /* conn->ready: request complete, handler not yet run */
	int32_t stream_id;
	const struct sg_grpc_method *method;
	uint64_t start_ns;               /* handler dispatch, for the method's stats */
	char *path;

	/* request headers */
	size_t header_bytes;
	bool is_post;
	bool content_type_ok;

	/* request message reassembly */
	uint8_t prefix[SG_GRPC_PREFIX_LEN];
	uint8_t prefix_got;
	bool have_msg;                   /* prefix complete, msg allocated */
	bool msg_complete;
	uint32_t msg_len;
	size_t msg_got;
	uint8_t *msg;

	/* response */
	uint8_t *out;                    /* queued bytes (prefixes + messages) */
	size_t out_off, out_len, out_cap;
	int status;
	char *status_text;               /* percent-encoded, or NULL */

	bool stream_open;                /* nghttp2 still has the stream */
	bool handler_owned;              /* dispatched, sg_grpc_finish not yet called */
	bool answered;                   /* the response's end is decided (status set) */
	bool response_started;           /* response HEADERS with a data provider submitted */
	bool deferred;                   /* the data provider returned NGHTTP2_ERR_DEFERRED */
};

/* What each method answered (by gRPC status) and how long its handlers took. */
struct grpc_method_stats {
	uint64_t by_status[SG_GRPC_UNAUTHENTICATED + 1];
	struct sg_hist ms;
};

struct grpc_conn {
	struct sg_grpc_server *server;
	struct sg_list link;             /* server->conns */
	int fd;
	nghttp2_session *session;
	struct sg_group group;
	struct sg_op recv_op;
	struct sg_op send_op;
	struct sg_op flush_op;           /* posted by sg_grpc_send/finish to flush from the loop */
	struct sg_list calls;            /* every call of this connection */
	struct sg_list ready;
	unsigned n_calls;
	size_t buffered;
	bool dead;
	bool fatal;                      /* protocol error: flush the GOAWAY, then close */
	uint8_t *wbuf;
	size_t wlen, wcap;
	uint8_t rbuf[RECV_BUF_SIZE];
};

struct sg_grpc_server {
	struct sg_loop *loop;
	int listen_fd;
	struct sg_grpc_method *methods;
	size_t n_methods;
	struct grpc_method_stats *mstats; /* per method, for sg_grpc_server_metrics */
	struct sg_grpc_limits limits;
	void *userdata;
	nghttp2_session_callbacks *callbacks;
	nghttp2_option *option;

	struct sg_op accept_op;
	struct sg_op retry_op;           /* accept backoff after EMFILE and friends */
	struct sg_op grace_op;           /* shutdown deadline */
	struct sg_op done_op;
	struct sg_list conns;
	unsigned n_conns;
	struct sg_list orphans;          /* handler-owned calls whose connection is gone */
	unsigned n_handler_calls;
	bool accept_paused;              /* at max_connections: resumed when one closes */
	bool shutting_down;
	bool done_posted;
	void (*done)(void *userdata);
	void *done_userdata;
};

/* ---- grpc_call.c: the call, for the connection that carries it ---- */

/* Frees the request message (and gives its bytes back to the connection's budget). */
void grpc_call_release_request(struct sg_grpc_call *call);
void grpc_call_free(struct sg_grpc_call *call);
/* The stream side of a call is over (closed by nghttp2, or its connection died). */
void grpc_call_stream_gone(struct sg_grpc_call *call);
/* A request that is not gRPC at all gets a plain HTTP status. */
void grpc_call_answer_http(struct sg_grpc_call *call, const char *status);
/* Ends the call with a status and a formatted message (also logged at debug level). */
void grpc_call_answer_fmt(struct sg_grpc_call *call, enum sg_grpc_status status,
			  const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* DATA of the request stream: unframes the one request message, within the limits. */
void grpc_call_feed(struct sg_grpc_call *call, const uint8_t *data, size_t len);
/* The client ended its side: the request must hold exactly one whole message; then the
 * call goes on conn->ready for dispatch. */
void grpc_call_request_end(struct sg_grpc_call *call);

/* ---- grpc.c: what a call needs from its connection and server ---- */

/* Asks for a flush from the loop (never frees anything the caller still uses). */
void grpc_conn_kick(struct grpc_conn *conn);
/* Reports the end of a shutdown once nothing is left. */
void grpc_server_check_done(struct sg_grpc_server *server);

#endif
