/* A small gRPC client for tests, on libnghttp2's client session over a non-blocking socket.
 * Header-only (everything static inline) so that any test can include it.
 *
 * It drives itself with poll(2): gc_pump() moves bytes once (with a timeout, 0 = just what
 * is ready), gc_wait() pumps until a call is done.  When the server runs in the same process
 * on the event loop, alternate sg_loop_run_once() with gc_pump(conn, 0); when it is another
 * process, gc_wait() alone does.
 *
 *   struct gc_conn *c = gc_connect_unix("/run/x.sock");
 *   struct gc_call call;
 *   gc_call_start(c, &call, "/pkg.Service/Method", req, req_len);
 *   gc_wait(c, &call, 5000);
 *   call.grpc_status, call.grpc_message, gc_call_message(&call, 0, &msg, &len) ...
 *   gc_call_clear(&call); gc_conn_free(c);
 *
 * The call records what a conformance check needs: the HTTP status, content-type, whether
 * the response was Trailers-Only, the raw and decoded grpc-message, the raw DATA bytes, and
 * a stream reset. */
#ifndef STARGZD_TESTS_GRPC_CLIENT_H
#define STARGZD_TESTS_GRPC_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "daemon/grpc_wire.h"

struct gc_conn {
	int fd;
	nghttp2_session *session;
	bool eof;               /* the server closed the connection */
	int error;              /* first socket or session error (negative errno / nghttp2) */
	bool goaway;            /* a GOAWAY arrived */
	uint32_t goaway_error;
	int32_t goaway_last_stream;
	uint8_t *out;           /* bytes from mem_send not yet written */
	size_t out_len, out_off, out_cap;
};

struct gc_call {
	struct gc_conn *conn;
	int32_t stream_id;
	int http_status;                /* 0 until the response headers */
	char content_type[64];
	int grpc_status;                /* -1 until seen */
	char grpc_message_raw[2048];    /* as on the wire */
	char grpc_message[2048];        /* percent-decoded */
	bool has_grpc_message;
	int header_blocks;              /* HEADERS frames received (1 = Trailers-Only) */
	bool trailers_only;             /* grpc-status came in the first HEADERS block */
	uint8_t *body;                  /* raw DATA bytes: prefixed messages */
	size_t body_len, body_cap;
	bool done;                      /* the stream closed */
	uint32_t close_error;           /* its HTTP/2 error code (RST_STREAM), 0 = none */
	/* the request body */
	uint8_t *req;
	size_t req_len, req_off;
	bool req_end;                   /* END_STREAM after the body */
};

static inline uint64_t gc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline bool gc_hdr_is(const uint8_t *n, size_t nl, const char *want)
{
	return nl == strlen(want) && memcmp(n, want, nl) == 0;
}

static inline void gc_copy_str(char *dst, size_t size, const uint8_t *v, size_t vl)
{
	if (vl >= size)
		vl = size - 1;
	memcpy(dst, v, vl);
	dst[vl] = '\0';
}

static inline int gc_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
			       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			       void *ud)
{
	struct gc_call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);

	(void)flags;
	(void)ud;
	if (!call || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (gc_hdr_is(name, namelen, ":status")) {
		char tmp[8];
		gc_copy_str(tmp, sizeof(tmp), value, valuelen);
		call->http_status = atoi(tmp);
	} else if (gc_hdr_is(name, namelen, "content-type")) {
		gc_copy_str(call->content_type, sizeof(call->content_type), value, valuelen);
	} else if (gc_hdr_is(name, namelen, "grpc-status")) {
		char tmp[16];
		gc_copy_str(tmp, sizeof(tmp), value, valuelen);
		call->grpc_status = atoi(tmp);
		if (call->header_blocks == 0)
			call->trailers_only = true;
	} else if (gc_hdr_is(name, namelen, "grpc-message")) {
		call->has_grpc_message = true;
		gc_copy_str(call->grpc_message_raw, sizeof(call->grpc_message_raw), value, valuelen);
		sg_grpc_percent_decode((const char *)value, valuelen, call->grpc_message,
				       sizeof(call->grpc_message));
	}
	return 0;
}

static inline int gc_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct gc_conn *conn = ud;

	if (frame->hd.type == NGHTTP2_GOAWAY) {
		conn->goaway = true;
		conn->goaway_error = frame->goaway.error_code;
		conn->goaway_last_stream = frame->goaway.last_stream_id;
	} else if (frame->hd.type == NGHTTP2_HEADERS) {
		struct gc_call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
		if (call)
			call->header_blocks++;
	}
	return 0;
}

static inline int gc_on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id,
			     const uint8_t *data, size_t len, void *ud)
{
	struct gc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);

	(void)flags;
	(void)ud;
	if (!call)
		return 0;
	if (call->body_len + len > call->body_cap) {
		size_t cap = call->body_cap ? call->body_cap : 4096;
		while (cap < call->body_len + len)
			cap *= 2;
		uint8_t *p = realloc(call->body, cap);
		if (!p)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		call->body = p;
		call->body_cap = cap;
	}
	memcpy(call->body + call->body_len, data, len);
	call->body_len += len;
	return 0;
}

static inline int gc_on_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	struct gc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);

	(void)ud;
	if (call) {
		call->done = true;
		call->close_error = error_code;
	}
	return 0;
}

static inline ssize_t gc_read_req(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
				  uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
	struct gc_call *call = source->ptr;
	size_t n = call->req_len - call->req_off;

	(void)s;
	(void)stream_id;
	(void)ud;
	if (n > length)
		n = length;
	memcpy(buf, call->req + call->req_off, n);
	call->req_off += n;
	if (call->req_off == call->req_len) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		if (!call->req_end)
			*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	return (ssize_t)n;
}

/* Wraps a connected stream socket (made non-blocking here).  NULL on failure. */
static inline struct gc_conn *gc_conn_new(int fd)
{
	nghttp2_session_callbacks *cb;
	struct gc_conn *conn = calloc(1, sizeof(*conn));

	if (!conn)
		return NULL;
	conn->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (nghttp2_session_callbacks_new(&cb) != 0) {
		free(conn);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_header_callback(cb, gc_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, gc_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, gc_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, gc_on_close);
	int r = nghttp2_session_client_new(&conn->session, cb, conn);
	nghttp2_session_callbacks_del(cb);
	if (r != 0) {
		free(conn);
		return NULL;
	}
	nghttp2_settings_entry iv[] = { { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 } };
	nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, 1);
	return conn;
}

/* Connects to a unix socket; NULL on failure (errno set). */
static inline struct gc_conn *gc_connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return NULL;
	}
	struct gc_conn *c = gc_conn_new(fd);
	if (!c)
		close(fd);
	return c;
}

static inline void gc_conn_free(struct gc_conn *conn)
{
	if (!conn)
		return;
	nghttp2_session_del(conn->session);
	if (conn->fd >= 0)
		close(conn->fd);
	free(conn->out);
	free(conn);
}

/* Starts a request with a raw body (no gRPC framing added).  content_type NULL leaves the
 * header out; method NULL means POST.  end_stream false leaves the request open after the
 * body (a client still "sending").  Returns 0 or an nghttp2 error. */
static inline int gc_call_start_raw(struct gc_conn *conn, struct gc_call *call, const char *method,
				    const char *path, const char *content_type, const void *body,
				    size_t len, bool end_stream)
{
	memset(call, 0, sizeof(*call));
	call->conn = conn;
	call->grpc_status = -1;
	call->req_end = end_stream;
	if (len) {
		call->req = malloc(len);
		if (!call->req)
			return NGHTTP2_ERR_NOMEM;
		memcpy(call->req, body, len);
		call->req_len = len;
	}
	nghttp2_nv nv[6];
	size_t n = 0;
#define GC_NV(name, value) \
	nv[n++] = (nghttp2_nv){ (uint8_t *)(name), (uint8_t *)(value), strlen(name), strlen(value), \
				NGHTTP2_NV_FLAG_NONE }
	GC_NV(":method", method ? method : "POST");
	GC_NV(":scheme", "http");
	GC_NV(":authority", "localhost");
	GC_NV(":path", path);
	if (content_type)
		GC_NV("content-type", content_type);
	GC_NV("te", "trailers");
#undef GC_NV
	nghttp2_data_provider prd = { .source.ptr = call, .read_callback = gc_read_req };
	bool provider = len > 0 || !end_stream;
	int32_t id = nghttp2_submit_request(conn->session, NULL, nv, n, provider ? &prd : NULL, call);
	if (id < 0)
		return id;
	call->stream_id = id;
	return 0;
}

/* Starts a gRPC call with one framed request message and END_STREAM. */
static inline int gc_call_start(struct gc_conn *conn, struct gc_call *call, const char *path,
				const void *msg, size_t len)
{
	uint8_t *buf = malloc(SG_GRPC_PREFIX_LEN + len);
	int r;

	if (!buf)
		return NGHTTP2_ERR_NOMEM;
	sg_grpc_prefix_encode(buf, 0, (uint32_t)len);
	if (len)
		memcpy(buf + SG_GRPC_PREFIX_LEN, msg, len);
	r = gc_call_start_raw(conn, call, NULL, path, "application/grpc", buf,
			      SG_GRPC_PREFIX_LEN + len, true);
	free(buf);
	return r;
}

/* Resets a call's stream (client cancel). */
static inline void gc_call_cancel(struct gc_call *call)
{
	nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
				  NGHTTP2_CANCEL);
}

/* Number of whole messages in the response body; with idx < count, points msg and len at that
 * one.  Trailing partial bytes are not counted. */
static inline size_t gc_call_message(const struct gc_call *call, size_t idx, const uint8_t **msg,
				     size_t *len)
{
	size_t off = 0, count = 0;

	while (call->body_len - off >= SG_GRPC_PREFIX_LEN) {
		uint32_t ml = sg_grpc_prefix_len(call->body + off);
		if (call->body_len - off - SG_GRPC_PREFIX_LEN < ml)
			break;
		if (count == idx && msg) {
			*msg = call->body + off + SG_GRPC_PREFIX_LEN;
			*len = ml;
		}
		count++;
		off += SG_GRPC_PREFIX_LEN + ml;
	}
	return count;
}

static inline void gc_call_clear(struct gc_call *call)
{
	if (call->conn && !call->done && call->conn->session)
		nghttp2_session_set_stream_user_data(call->conn->session, call->stream_id, NULL);
	free(call->body);
	free(call->req);
	call->body = call->req = NULL;
}

/* One round of I/O: waits up to timeout_ms for the socket, reads what is there, writes what
 * nghttp2 has.  Returns 0, or a negative value once the connection is unusable (EOF,
 * socket error, session error; see conn->eof / conn->error). */
static inline int gc_pump(struct gc_conn *conn, int timeout_ms)
{
	uint8_t buf[16384];

	if (conn->error)
		return conn->error;
	for (;;) {
		/* Pull everything nghttp2 wants to send into the buffer. */
		for (;;) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(conn->session, &data);
			if (n < 0) {
				conn->error = (int)n;
				return conn->error;
			}
			if (n == 0)
				break;
			if (conn->out_len + (size_t)n > conn->out_cap) {
				size_t cap = conn->out_cap ? conn->out_cap * 2 : 65536;
				while (cap < conn->out_len + (size_t)n)
					cap *= 2;
				uint8_t *p = realloc(conn->out, cap);
				if (!p) {
					conn->error = -ENOMEM;
					return conn->error;
				}
				conn->out = p;
				conn->out_cap = cap;
			}
			memcpy(conn->out + conn->out_len, data, (size_t)n);
			conn->out_len += (size_t)n;
		}
		while (conn->out_off < conn->out_len) {
			ssize_t w = send(conn->fd, conn->out + conn->out_off,
					 conn->out_len - conn->out_off, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				conn->error = -errno;
				return conn->error;
			}
			conn->out_off += (size_t)w;
		}
		if (conn->out_off == conn->out_len)
			conn->out_off = conn->out_len = 0;

		struct pollfd pfd = { .fd = conn->fd, .events = POLLIN };
		if (conn->out_len)
			pfd.events |= POLLOUT;
		int pr = poll(&pfd, 1, timeout_ms);
		if (pr < 0 && errno != EINTR) {
			conn->error = -errno;
			return conn->error;
		}
		if (pr <= 0)
			return 0;
		timeout_ms = 0;
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
			if (pfd.revents & POLLOUT)
				continue;
			return 0;
		}
		ssize_t r = recv(conn->fd, buf, sizeof(buf), 0);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			conn->error = -errno;
			return conn->error;
		}
		if (r == 0) {
			conn->eof = true;
			conn->error = -EPIPE;
			/* Streams still open are over: mark their calls done. */
			nghttp2_session_terminate_session(conn->session, NGHTTP2_NO_ERROR);
			return conn->error;
		}
		ssize_t rv = nghttp2_session_mem_recv(conn->session, buf, (size_t)r);
		if (rv < 0) {
			conn->error = (int)rv;
			return conn->error;
		}
	}
}

/* Pumps until the call is done; false on timeout or a dead connection. */
static inline bool gc_wait(struct gc_conn *conn, struct gc_call *call, int timeout_ms)
{
	uint64_t end = gc_now_ms() + (uint64_t)timeout_ms;

	while (!call->done) {
		if (gc_now_ms() > end)
			return false;
		if (gc_pump(conn, 20) < 0)
			return call->done;
	}
	return true;
}

#endif
