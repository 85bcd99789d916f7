/* gRPC server over HTTP/2 on the event loop (see grpc.h).
 *
 * Layers, bottom up:
 *  - a connection (`struct grpc_conn`) owns a socket, one recv op, one send op and a
 *    libnghttp2 server session.  nghttp2 does no I/O: received bytes go in through
 *    nghttp2_session_mem_recv, and nghttp2_session_mem_send output is copied into one
 *    write buffer, so at most one send is in flight per connection and small frames are
 *    coalesced into one syscall;
 *  - a call (`struct sg_grpc_call`) is one HTTP/2 stream: its headers are checked, its DATA
 *    is unframed into exactly one request message, and once the request has ended the
 *    handler runs — from the recv callback, after mem_recv has returned, never from inside
 *    an nghttp2 callback;
 *  - responses are an nghttp2 data provider reading from the call's output queue.  An empty
 *    queue answers NGHTTP2_ERR_DEFERRED, and sg_grpc_send/sg_grpc_finish resume it.
 *
 * Lifetimes.  A call has two owners: the stream (until nghttp2 closes it or the connection
 * dies) and the handler (from dispatch until sg_grpc_finish).  It is freed when both are
 * done, so a handler may finish long after its client left.  A connection is freed only
 * when it is dead and none of its ops is in flight; every op callback of a connection ends
 * with conn_maybe_free(), and nothing else frees one, so a connection never disappears
 * under a callback that is still using it.
 *
 * Memory per connection is bounded: requests by max_streams × max_message and by
 * max_buffer (checked when a message prefix announces its length), responses by max_buffer
 * (sg_grpc_send refuses beyond), output by the write buffer (coalescing stops at
 * SEND_COALESCE) and nghttp2's own flood limits for what the peer makes it queue.
 *
 * This file: the server, its connections and the nghttp2 callbacks.  The call (request
 * reassembly, answers, response queue, sg_grpc_send/finish) is grpc_call.c; the structs
 * both use are in grpc_call.h. */
#include "daemon/grpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "daemon/core/list.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/grpc_call.h"
#include "daemon/grpc_wire.h"
#include "daemon/prom.h"

#define DEFAULT_MAX_MESSAGE      (16u << 20)
#define DEFAULT_MAX_CONNECTIONS  1024u
#define DEFAULT_MAX_STREAMS      256u
#define DEFAULT_MAX_BUFFER       ((size_t)64 << 20)
#define DEFAULT_SHUTDOWN_MS      3000u

#define SEND_COALESCE     65536        /* stop pulling frames from nghttp2 beyond this */
#define HEADER_BYTES_MAX  65536        /* request header list, counted as HPACK does */
#define STREAM_WINDOW     (1u << 20)   /* per-stream receive window we advertise */
#define ACCEPT_RETRY_NS   (100ull * 1000000ull)

static void conn_close(struct grpc_conn *conn);
static void conn_flush(struct grpc_conn *conn);
static void accept_next(struct sg_grpc_server *server);

/* Runs the handlers of the requests completed by the last mem_recv. */
static void conn_dispatch(struct grpc_conn *conn)
{
	struct sg_grpc_server *server = conn->server;
	struct sg_list *n;

	while (!conn->dead && (n = sg_list_pop(&conn->ready))) {
		struct sg_grpc_call *call = sg_container_of(n, struct sg_grpc_call, ready_link);
		uint8_t *msg = call->msg;
		size_t len = call->msg_len;

		/* The message belongs to this stack frame now: the handler may finish (and so
		 * free) the call before it returns. */
		call->msg = NULL;
		call->handler_owned = true;
		call->start_ns = sg_now_ns();
		server->n_handler_calls++;
		call->method->handler(call, msg, len, server->userdata);
		free(msg);
		if (!conn->dead)
			conn->buffered -= len;
	}
}

/* ---- nghttp2 callbacks ---- */

static struct sg_grpc_call *stream_call(struct grpc_conn *conn, int32_t stream_id)
{
	if (conn->dead)
		return NULL;
	return nghttp2_session_get_stream_user_data(conn->session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_conn *conn = user_data;
	struct sg_grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	/* nghttp2 enforces our MAX_CONCURRENT_STREAMS for open streams; this also counts calls
	 * whose client reset them while a handler still runs. */
	if (conn->n_calls >= conn->server->limits.max_streams || conn->server->shutting_down) {
		(void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
						NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	call = calloc(1, sizeof(*call));
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call->server = conn->server;
	call->conn = conn;
	call->stream_id = frame->hd.stream_id;
	call->stream_open = true;
	if (nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call) != 0) {
		free(call);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	sg_list_insert_tail(&conn->calls, &call->link);
	conn->n_calls++;
	return 0;
}

static bool header_is(const uint8_t *name, size_t namelen, const char *want)
{
	size_t wl = strlen(want);
	return namelen == wl && memcmp(name, want, wl) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct grpc_conn *conn = user_data;
	struct sg_grpc_call *call = stream_call(conn, frame->hd.stream_id);
	struct sg_grpc_server *server = conn->server;

	(void)session;
	(void)flags;
	if (!call || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call->header_bytes += namelen + valuelen + 32;
	if (call->header_bytes > HEADER_BYTES_MAX) {
		sg_debug("grpc: stream %" PRId32 ": request headers too large", call->stream_id);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;   /* request trailers: nothing in them matters to us */

	if (header_is(name, namelen, ":method")) {
		call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
	} else if (header_is(name, namelen, ":path")) {
		free(call->path);
		call->path = strndup((const char *)value, valuelen);
		if (!call->path)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		call->method = NULL;
		for (size_t i = 0; i < server->n_methods; i++) {
			const char *p = server->methods[i].path;
			if (strlen(p) == valuelen && memcmp(p, value, valuelen) == 0) {
				call->method = &server->methods[i];
				break;
			}
		}
	} else if (header_is(name, namelen, "content-type")) {
		call->content_type_ok = sg_grpc_content_type_ok((const char *)value, valuelen);
	}
	return 0;
}

static void request_headers_done(struct sg_grpc_call *call)
{
	if (!call->is_post) {
		grpc_call_answer_http(call, "405");
	} else if (!call->content_type_ok) {
		/* The gRPC spec: a content-type that is not application/grpc* gets HTTP 415. */
		grpc_call_answer_http(call, "415");
	} else if (!call->method) {
		grpc_call_answer_fmt(call, SG_GRPC_UNIMPLEMENTED, "unknown method %s",
				call->path ? call->path : "(none)");
	}
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_conn *conn = user_data;
	struct sg_grpc_call *call;

	(void)session;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = stream_call(conn, frame->hd.stream_id);
	if (!call)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		request_headers_done(call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		grpc_call_request_end(call);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *user_data)
{
	struct grpc_conn *conn = user_data;
	struct sg_grpc_call *call = stream_call(conn, stream_id);

	(void)session;
	(void)flags;
	if (call && !call->answered)
		grpc_call_feed(call, data, len);
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	(void)user_data;
	/* Our response is complete but the client is still sending: tell it to stop, as gRPC
	 * servers do, so the stream does not linger (it would count against the limits and
	 * hold up a graceful shutdown). */
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0)
		(void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
						NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct grpc_conn *conn = user_data;
	struct sg_grpc_call *call = stream_call(conn, stream_id);

	(void)session;
	(void)error_code;
	if (call)
		grpc_call_stream_gone(call);
	return 0;
}

/* ---- connections ---- */

static void conn_free(struct grpc_conn *conn)
{
	struct sg_grpc_server *server = conn->server;

	/* recv_op, send_op and flush_op point into conn (and its buffers) until their
	 * callbacks have run. */
	SG_FREE_CHECK(!sg_group_idle(&conn->group), "gRPC session");

	sg_list_unlink(&conn->link);
	server->n_conns--;
	if (conn->fd >= 0)
		close(conn->fd);
	free(conn->wbuf);
	free(conn);
	if (server->accept_paused && !server->shutting_down) {
		server->accept_paused = false;
		accept_next(server);
	}
	grpc_server_check_done(server);
}

/* The end of every op callback of a connection: frees it once dead and idle. */
static void conn_maybe_free(struct grpc_conn *conn)
{
	if (conn->dead && sg_group_idle(&conn->group))
		conn_free(conn);
}

/* Ends all I/O of a connection.  Calls a handler still owns become orphans (closed) and
 * wait for their sg_grpc_finish; the rest are freed.  Never frees the connection itself. */
static void conn_close(struct grpc_conn *conn)
{
	struct sg_grpc_server *server = conn->server;
	struct sg_list *n, *tmp;

	if (conn->dead)
		return;
	conn->dead = true;
	sg_list_for_each_safe(n, tmp, &conn->calls) {
		struct sg_grpc_call *call = sg_container_of(n, struct sg_grpc_call, link);
		call->stream_open = false;
		sg_list_unlink(&call->ready_link);
		if (call->handler_owned) {
			grpc_call_release_request(call);
			conn->buffered -= call->out_len - call->out_off;
			free(call->out);
			call->out = NULL;
			call->out_off = call->out_len = call->out_cap = 0;
			sg_list_unlink(&call->link);
			sg_list_insert_tail(&server->orphans, &call->link);
			call->conn = NULL;
			conn->n_calls--;
		} else {
			grpc_call_free(call);
		}
	}
	/* After the calls: nghttp2_session_del must not reach a call through stream data. */
	nghttp2_session_del(conn->session);
	conn->session = NULL;
	sg_group_cancel(&conn->group);
}

static int wbuf_append(struct grpc_conn *conn, const uint8_t *data, size_t len)
{
	if (conn->wlen + len > conn->wcap) {
		size_t cap = conn->wcap ? conn->wcap : 16384;
		while (cap < conn->wlen + len)
			cap *= 2;
		uint8_t *p = realloc(conn->wbuf, cap);
		if (!p)
			return -ENOMEM;
		conn->wbuf = p;
		conn->wcap = cap;
	}
	memcpy(conn->wbuf + conn->wlen, data, len);
	conn->wlen += len;
	return 0;
}

static void on_send(struct sg_op *op)
{
	struct grpc_conn *conn = sg_container_of(op, struct grpc_conn, send_op);

	if (op->res < 0) {
		if (op->res != -ECANCELED)
			sg_debug("grpc: send: %s", strerror(-op->res));
		conn_close(conn);
	} else {
		conn->wlen = 0;
		if (conn->fatal)
			conn_close(conn);   /* the GOAWAY is out */
		else
			conn_flush(conn);
	}
	conn_maybe_free(conn);
}

/* Pulls frames out of nghttp2 into the write buffer and starts one send. */
static void conn_flush(struct grpc_conn *conn)
{
	if (conn->dead || sg_op_busy(&conn->send_op))
		return;
	while (conn->wlen < SEND_COALESCE) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(conn->session, &data);
		if (n < 0) {
			sg_debug("grpc: nghttp2 send: %s", nghttp2_strerror((int)n));
			conn_close(conn);
			return;
		}
		if (n == 0)
			break;
		if (wbuf_append(conn, data, (size_t)n) < 0) {
			conn_close(conn);
			return;
		}
	}
	if (conn->wlen > 0) {
		int r = sg_send(conn->server->loop, &conn->send_op, conn->fd, conn->wbuf,
				conn->wlen, 0, on_send);
		if (r < 0)
			conn_close(conn);
		return;
	}
	if (conn->fatal ||
	    (!nghttp2_session_want_read(conn->session) && !nghttp2_session_want_write(conn->session)))
		conn_close(conn);
}

static void on_flush(struct sg_op *op)
{
	struct grpc_conn *conn = sg_container_of(op, struct grpc_conn, flush_op);

	conn_flush(conn);
	conn_maybe_free(conn);
}

/* Asks for a flush from the loop: used by entry points that are not op callbacks of this
 * connection, so that they never free anything the caller still uses. */
void grpc_conn_kick(struct grpc_conn *conn)
{
	if (conn->dead || sg_op_busy(&conn->send_op) || sg_op_busy(&conn->flush_op))
		return;
	/* Cannot fail: flush_op is idle (tested above), and posts are accepted while the loop
	 * drains, so a send or finish just before shutdown is still flushed. */
	(void)sg_post(conn->server->loop, &conn->flush_op, 0, on_flush);
}

static void on_recv(struct sg_op *op)
{
	struct grpc_conn *conn = sg_container_of(op, struct grpc_conn, recv_op);
	ssize_t rv;

	if (conn->dead)
		goto out;
	if (op->res <= 0) {
		if (op->res < 0 && op->res != -ECANCELED)
			sg_debug("grpc: recv: %s", strerror(-op->res));
		conn_close(conn);
		goto out;
	}
	if (!conn->fatal) {
		rv = nghttp2_session_mem_recv(conn->session, conn->rbuf, (size_t)op->res);
		if (rv < 0) {
			/* Bad preface, flood, or a callback failure: GOAWAY and close. */
			sg_debug("grpc: connection error: %s", nghttp2_strerror((int)rv));
			(void)nghttp2_session_terminate_session(conn->session,
								NGHTTP2_PROTOCOL_ERROR);
			conn->fatal = true;
		}
		conn_dispatch(conn);
	}
	conn_flush(conn);
	if (!conn->dead && sg_recv(conn->server->loop, &conn->recv_op, conn->fd, conn->rbuf,
				   sizeof(conn->rbuf), 0, on_recv) < 0)
		conn_close(conn);
out:
	conn_maybe_free(conn);
}

static int conn_new(struct sg_grpc_server *server, int fd)
{
	struct grpc_conn *conn;
	const struct sg_grpc_limits *lim = &server->limits;
	int r;

	conn = calloc(1, sizeof(*conn));
	if (!conn) {
		close(fd);
		return -ENOMEM;
	}
	conn->server = server;
	conn->fd = fd;
	sg_group_init(&conn->group);
	sg_op_init(&conn->recv_op);
	sg_op_init(&conn->send_op);
	sg_op_init(&conn->flush_op);
	sg_op_set_group(&conn->recv_op, &conn->group);
	sg_op_set_group(&conn->send_op, &conn->group);
	sg_op_set_group(&conn->flush_op, &conn->group);
	sg_list_init(&conn->calls);
	sg_list_init(&conn->ready);
	sg_list_insert_tail(&server->conns, &conn->link);
	server->n_conns++;

	if (nghttp2_session_server_new2(&conn->session, server->callbacks, conn, server->option)) {
		conn->dead = true;
		conn_free(conn);
		return -ENOMEM;
	}
	nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HEADER_BYTES_MAX },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings,
				    sizeof(settings) / sizeof(settings[0])) != 0) {
		conn_close(conn);
		conn_maybe_free(conn);
		return -ENOMEM;
	}
	r = sg_recv(server->loop, &conn->recv_op, fd, conn->rbuf, sizeof(conn->rbuf), 0, on_recv);
	if (r < 0) {
		conn_close(conn);
		conn_maybe_free(conn);
		return r;
	}
	conn_flush(conn);   /* our SETTINGS: the server preface */
	return 0;
}

/* ---- server ---- */

static void on_done(struct sg_op *op)
{
	struct sg_grpc_server *server = sg_container_of(op, struct sg_grpc_server, done_op);

	if (server->done)
		server->done(server->done_userdata);
}

void grpc_server_check_done(struct sg_grpc_server *server)
{
	if (!server->shutting_down || server->done_posted)
		return;
	if (server->n_conns > 0 || server->n_handler_calls > 0)
		return;
	if (sg_op_busy(&server->accept_op) || sg_op_busy(&server->retry_op))
		return;
	if (sg_op_busy(&server->grace_op)) {
		(void)sg_op_cancel(&server->grace_op);   /* its callback checks again */
		return;
	}
	server->done_posted = true;
	/* done_op is posted once (done_posted) and posts are accepted while the loop drains, so
	 * this cannot fail; the synchronous call only guards that assumption. */
	if (sg_post(server->loop, &server->done_op, 0, on_done) < 0 && server->done)
		server->done(server->done_userdata);
}

static void on_accept(struct sg_op *op);

static void on_accept_retry(struct sg_op *op)
{
	struct sg_grpc_server *server = sg_container_of(op, struct sg_grpc_server, retry_op);

	if (op->res == 0)
		accept_next(server);
	grpc_server_check_done(server);
}

static void accept_next(struct sg_grpc_server *server)
{
	int r;

	if (server->shutting_down || server->listen_fd < 0 || sg_op_busy(&server->accept_op) ||
	    sg_op_busy(&server->retry_op))
		return;
	if (server->n_conns >= server->limits.max_connections) {
		server->accept_paused = true;
		return;
	}
	r = sg_accept(server->loop, &server->accept_op, server->listen_fd, NULL, NULL,
		      SOCK_CLOEXEC | SOCK_NONBLOCK, on_accept);
	if (r < 0 && r != -ECANCELED)
		sg_debug("grpc: accept: %s", strerror(-r));
}

static void on_accept(struct sg_op *op)
{
	struct sg_grpc_server *server = sg_container_of(op, struct sg_grpc_server, accept_op);
	int res = op->res;

	if (res >= 0) {
		if (server->shutting_down)
			close(res);
		else
			(void)conn_new(server, res);
		accept_next(server);
	} else if (res == -ECANCELED) {
		/* shutdown */
	} else if (res == -EINTR || res == -EAGAIN || res == -ECONNABORTED) {
		accept_next(server);
	} else {
		/* Out of fds or memory, or a broken listener: retry later rather than spin. */
		sg_debug("grpc: accept: %s", strerror(-res));
		if (!server->shutting_down)
			(void)sg_timer_start(server->loop, &server->retry_op, ACCEPT_RETRY_NS,
					     on_accept_retry);
	}
	grpc_server_check_done(server);
}

int sg_grpc_server_new(struct sg_loop *loop, int listen_fd, const struct sg_grpc_method *methods,
		       size_t n_methods, const struct sg_grpc_limits *limits, void *userdata,
		       struct sg_grpc_server **ret_server)
{
	struct sg_grpc_server *server;

	if (!loop || !ret_server || (n_methods && !methods))
		return -EINVAL;
	for (size_t i = 0; i < n_methods; i++)
		if (!methods[i].path || !methods[i].handler)
			return -EINVAL;
	server = calloc(1, sizeof(*server));
	if (!server)
		return -ENOMEM;
	server->loop = loop;
	server->listen_fd = listen_fd;
	server->userdata = userdata;
	if (limits)
		server->limits = *limits;
	if (!server->limits.max_message)
		server->limits.max_message = DEFAULT_MAX_MESSAGE;
	if (server->limits.max_message > UINT32_MAX)
		server->limits.max_message = UINT32_MAX;
	if (!server->limits.max_connections)
		server->limits.max_connections = DEFAULT_MAX_CONNECTIONS;
	if (!server->limits.max_streams)
		server->limits.max_streams = DEFAULT_MAX_STREAMS;
	if (!server->limits.max_buffer)
		server->limits.max_buffer = DEFAULT_MAX_BUFFER;
	if (!server->limits.shutdown_timeout_ms)
		server->limits.shutdown_timeout_ms = DEFAULT_SHUTDOWN_MS;
	sg_op_init(&server->accept_op);
	sg_op_init(&server->retry_op);
	sg_op_init(&server->grace_op);
	sg_op_init(&server->done_op);
	sg_list_init(&server->conns);
	sg_list_init(&server->orphans);

	if (n_methods) {
		server->methods = calloc(n_methods, sizeof(*methods));
		server->mstats = calloc(n_methods, sizeof(*server->mstats));
		if (!server->methods || !server->mstats)
			goto fail;
		memcpy(server->methods, methods, n_methods * sizeof(*methods));
		server->n_methods = n_methods;
	}
	if (nghttp2_session_callbacks_new(&server->callbacks) != 0)
		goto fail;
	nghttp2_session_callbacks_set_on_begin_headers_callback(server->callbacks, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(server->callbacks, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(server->callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(server->callbacks,
								  on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(server->callbacks, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(server->callbacks, on_stream_close);
	if (nghttp2_option_new(&server->option) != 0)
		goto fail;
	/* Closed streams are not kept for priority bookkeeping (memory a client could grow). */
	nghttp2_option_set_no_closed_streams(server->option, 1);
	nghttp2_option_set_max_outbound_ack(server->option, 1000);
	nghttp2_option_set_max_settings(server->option, 32);

	accept_next(server);
	*ret_server = server;
	return 0;

fail:
	sg_grpc_server_free(server);
	return -ENOMEM;
}

int sg_grpc_server_adopt(struct sg_grpc_server *server, int fd)
{
	if (!server || fd < 0) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	if (server->shutting_down) {
		close(fd);
		return -ESHUTDOWN;
	}
	if (server->n_conns >= server->limits.max_connections) {
		close(fd);
		return -EMFILE;
	}
	return conn_new(server, fd);
}

unsigned sg_grpc_server_connections(const struct sg_grpc_server *server)
{
	return server->n_conns;
}

unsigned sg_grpc_server_calls(const struct sg_grpc_server *server)
{
	return server->n_handler_calls;
}

static void on_grace(struct sg_op *op)
{
	struct sg_grpc_server *server = sg_container_of(op, struct sg_grpc_server, grace_op);
	struct sg_list *n, *tmp;

	if (op->res == 0) {
		sg_debug("grpc: shutdown timeout: closing %u connection(s)", server->n_conns);
		sg_list_for_each_safe(n, tmp, &server->conns)
			conn_close(sg_container_of(n, struct grpc_conn, link));
	}
	grpc_server_check_done(server);
}

void sg_grpc_server_shutdown(struct sg_grpc_server *server, void (*done)(void *userdata),
			     void *userdata)
{
	struct sg_list *n;

	if (!server || server->shutting_down)
		return;
	server->shutting_down = true;
	server->done = done;
	server->done_userdata = userdata;
	(void)sg_op_cancel(&server->accept_op);
	(void)sg_op_cancel(&server->retry_op);
	for (n = server->conns.next; n != &server->conns; n = n->next) {
		struct grpc_conn *conn = sg_container_of(n, struct grpc_conn, link);
		if (conn->dead)
			continue;
		/* Streams the client opened so far still complete; nghttp2 refuses later ones
		 * and reports want_read/want_write == 0 once the last one closes. */
		(void)nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE,
					    nghttp2_session_get_last_proc_stream_id(conn->session),
					    NGHTTP2_NO_ERROR, NULL, 0);
		grpc_conn_kick(conn);
	}
	if (server->n_conns > 0)
		(void)sg_timer_start(server->loop, &server->grace_op,
				     (uint64_t)server->limits.shutdown_timeout_ms * 1000000u,
				     on_grace);
	grpc_server_check_done(server);
}

void sg_grpc_server_free(struct sg_grpc_server *server)
{
	struct sg_list *n;

	if (!server)
		return;
	/* Its ops point into it: shut down and drain first (the sessions' ops are checked by
	 * conn_free). */
	SG_FREE_CHECK(sg_op_busy(&server->accept_op) || sg_op_busy(&server->retry_op) ||
		      sg_op_busy(&server->grace_op) || sg_op_busy(&server->done_op),
		      "gRPC server");
	/* Neither accepting again nor reporting done from the conn_free calls below. */
	server->shutting_down = true;
	server->done_posted = true;
	while (!sg_list_empty(&server->conns)) {
		struct grpc_conn *conn = sg_container_of(server->conns.next, struct grpc_conn, link);
		conn_close(conn);
		conn_free(conn);
	}
	while ((n = sg_list_pop(&server->orphans)))
		grpc_call_free(sg_container_of(n, struct sg_grpc_call, link));
	if (server->callbacks)
		nghttp2_session_callbacks_del(server->callbacks);
	if (server->option)
		nghttp2_option_del(server->option);
	free(server->methods);
	free(server->mstats);
	free(server);
}

static const char *const status_name[] = {
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
	"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
};

/* "/pkg.Service/Method" into "pkg.Service" and "Method", as gRPC's own Go middleware
 * (go-grpc-prometheus) labels them: grpc_service, grpc_method. */
static const char *method_names(const char *path, char *service, size_t size)
{
	const char *slash = strrchr(path, '/');

	snprintf(service, size, "%.*s", slash && slash > path ? (int)(slash - path - 1) : 0,
		 path + 1);
	return slash ? slash + 1 : path;
}

void sg_grpc_server_metrics(const struct sg_grpc_server *server, struct sg_prom *p)
{
	static const char requests[] = "stargzd_grpc_requests_total";
	static const char duration[] = "stargzd_grpc_request_duration_seconds";
	char service[256];

	sg_prom_family(p, requests, "counter", "gRPC calls answered, by method and status code");
	for (size_t i = 0; server && i < server->n_methods; i++) {
		const char *method = method_names(server->methods[i].path, service, sizeof(service));
		for (unsigned s = 0; s <= SG_GRPC_UNAUTHENTICATED; s++) {
			if (!server->mstats[i].by_status[s])
				continue;
			const char *labels[] = { "grpc_service", service, "grpc_method", method,
						 "grpc_code", status_name[s], NULL };
			sg_prom_sample(p, requests, labels, (double)server->mstats[i].by_status[s]);
		}
	}
	sg_prom_family(p, duration, "histogram",
		       "Time from a gRPC request to its answer, by method");
	for (size_t i = 0; server && i < server->n_methods; i++) {
		if (!server->mstats[i].ms.count)
			continue;
		const char *method = method_names(server->methods[i].path, service, sizeof(service));
		const char *labels[] = { "grpc_service", service, "grpc_method", method, NULL };
		/* Observed in milliseconds; printed in seconds, 1 ms .. 32.768 s. */
		sg_prom_hist(p, duration, labels, &server->mstats[i].ms, SG_HIST_BOUNDS, 0.001);
	}
}
