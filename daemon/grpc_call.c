/* A call of the gRPC server: one HTTP/2 stream (grpc_call.h, grpc.h). */
#include "daemon/grpc_call.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/log.h"

#define STATUS_TEXT_MAX   1024         /* grpc-message text before encoding */

void grpc_call_release_request(struct sg_grpc_call *call)
{
	if (call->msg) {
		if (call->conn)
			call->conn->buffered -= call->msg_len;
		free(call->msg);
		call->msg = NULL;
	}
}

void grpc_call_free(struct sg_grpc_call *call)
{
	struct grpc_conn *conn = call->conn;

	grpc_call_release_request(call);
	if (conn) {
		conn->buffered -= call->out_len - call->out_off;
		conn->n_calls--;
	}
	sg_list_unlink(&call->link);
	sg_list_unlink(&call->ready_link);
	free(call->out);
	free(call->status_text);
	free(call->path);
	free(call);
}

/* The stream side of a call is over (closed by nghttp2, or its connection died). */
void grpc_call_stream_gone(struct sg_grpc_call *call)
{
	call->stream_open = false;
	sg_list_unlink(&call->ready_link);
	if (!call->handler_owned)
		grpc_call_free(call);
}

static void status_trailer_values(struct sg_grpc_call *call, char *code, size_t code_size)
{
	snprintf(code, code_size, "%d", call->status);
}

#define MAKE_NV(n, v, vl) \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE }

static ssize_t call_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
			 uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct sg_grpc_call *call = source->ptr;
	size_t avail = call->out_len - call->out_off;
	size_t n = avail < length ? avail : length;

	(void)user_data;
	if (n > 0) {
		memcpy(buf, call->out + call->out_off, n);
		call->out_off += n;
		call->conn->buffered -= n;
		if (call->out_off == call->out_len)
			call->out_off = call->out_len = 0;
	}
	if (call->out_len > 0)
		return (ssize_t)n;
	if (!call->answered) {
		if (n > 0)
			return (ssize_t)n;
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	/* Everything queued is out and the status is known: end with trailers. */
	char code[16];
	status_trailer_values(call, code, sizeof(code));
	nghttp2_nv nv[2] = {
		MAKE_NV("grpc-status", code, strlen(code)),
		MAKE_NV("grpc-message", call->status_text ? call->status_text : "",
			call->status_text ? strlen(call->status_text) : 0),
	};
	if (nghttp2_submit_trailer(session, stream_id, nv, call->status_text ? 2 : 1) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	return (ssize_t)n;
}

/* Sets the final status of a call and submits what ends the stream: a Trailers-Only
 * response if nothing was sent yet, else the data provider ends with trailers. */
static void call_answer(struct sg_grpc_call *call, enum sg_grpc_status status, const char *text)
{
	struct grpc_conn *conn = call->conn;

	if (call->answered)
		return;
	call->answered = true;
	call->status = (int)status;
	grpc_call_release_request(call);
	if (text && *text) {
		size_t tl = strnlen(text, STATUS_TEXT_MAX);
		call->status_text = malloc(tl * 3 + 1);
		if (call->status_text)
			sg_grpc_percent_encode(text, tl, call->status_text, tl * 3 + 1);
	}
	if (!conn || !call->stream_open)
		return;

	if (call->response_started) {
		if (call->deferred) {
			call->deferred = false;
			(void)nghttp2_session_resume_data(conn->session, call->stream_id);
		}
		return;
	}
	char code[16];
	status_trailer_values(call, code, sizeof(code));
	nghttp2_nv nv[4] = {
		MAKE_NV(":status", "200", 3),
		MAKE_NV("content-type", "application/grpc", 16),
		MAKE_NV("grpc-status", code, strlen(code)),
		MAKE_NV("grpc-message", call->status_text ? call->status_text : "",
			call->status_text ? strlen(call->status_text) : 0),
	};
	if (nghttp2_submit_response(conn->session, call->stream_id, nv, call->status_text ? 4 : 3,
				    NULL) != 0)
		(void)nghttp2_submit_rst_stream(conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
						NGHTTP2_INTERNAL_ERROR);
}

/* A request that is not gRPC at all gets a plain HTTP status. */
void grpc_call_answer_http(struct sg_grpc_call *call, const char *status)
{
	nghttp2_nv nv[1] = { MAKE_NV(":status", status, strlen(status)) };

	call->answered = true;
	grpc_call_release_request(call);
	if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, 1, NULL) != 0)
		(void)nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE,
						call->stream_id, NGHTTP2_INTERNAL_ERROR);
}

void grpc_call_answer_fmt(struct sg_grpc_call *call, enum sg_grpc_status status,
			    const char *fmt, ...)
{
	char text[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sg_debug("grpc: stream %" PRId32 " %s: %s", call->stream_id,
		 call->path ? call->path : "?", text);
	call_answer(call, status, text);
}

/* The client ended its side: the request must hold exactly one whole message. */
void grpc_call_request_end(struct sg_grpc_call *call)
{
	if (call->answered || sg_list_linked(&call->ready_link))
		return;
	if (call->prefix_got > 0 && !call->msg_complete) {
		grpc_call_answer_fmt(call, SG_GRPC_INTERNAL, "request ended inside a message");
		return;
	}
	if (!call->msg_complete) {
		grpc_call_answer_fmt(call, SG_GRPC_UNIMPLEMENTED,
				"unary request without a message (cardinality violation)");
		return;
	}
	if (!call->method) {   /* request_headers_done answered already; never dispatch one */
		grpc_call_answer_fmt(call, SG_GRPC_UNIMPLEMENTED, "no method");
		return;
	}
	sg_list_insert_tail(&call->conn->ready, &call->ready_link);
}

void grpc_call_feed(struct sg_grpc_call *call, const uint8_t *data, size_t len)
{
	struct grpc_conn *conn = call->conn;
	const struct sg_grpc_limits *lim = &call->server->limits;

	while (len > 0 && !call->answered) {
		if (call->msg_complete) {
			grpc_call_answer_fmt(call, SG_GRPC_UNIMPLEMENTED,
					"more than one request message for a unary method "
					"(cardinality violation)");
			return;
		}
		if (call->prefix_got < SG_GRPC_PREFIX_LEN) {
			size_t n = SG_GRPC_PREFIX_LEN - call->prefix_got;
			if (n > len)
				n = len;
			memcpy(call->prefix + call->prefix_got, data, n);
			call->prefix_got = (uint8_t)(call->prefix_got + n);
			data += n;
			len -= n;
			if (call->prefix_got < SG_GRPC_PREFIX_LEN)
				return;

			uint8_t flags = call->prefix[0];
			uint32_t mlen = sg_grpc_prefix_len(call->prefix);
			if (flags & ~SG_GRPC_FLAG_COMPRESSED) {
				grpc_call_answer_fmt(call, SG_GRPC_INTERNAL,
						"malformed message prefix (flags 0x%02x)", flags);
				return;
			}
			if (flags & SG_GRPC_FLAG_COMPRESSED) {
				grpc_call_answer_fmt(call, SG_GRPC_UNIMPLEMENTED,
						"compressed messages are not supported");
				return;
			}
			if (mlen > lim->max_message) {
				grpc_call_answer_fmt(call, SG_GRPC_RESOURCE_EXHAUSTED,
						"received message larger than max (%" PRIu32
						" vs. %zu)", mlen, lim->max_message);
				return;
			}
			if (conn->buffered + mlen > lim->max_buffer) {
				grpc_call_answer_fmt(call, SG_GRPC_RESOURCE_EXHAUSTED,
						"connection buffer limit (%zu bytes) reached",
						lim->max_buffer);
				return;
			}
			call->msg = malloc(mlen ? mlen : 1);
			if (!call->msg) {
				grpc_call_answer_fmt(call, SG_GRPC_RESOURCE_EXHAUSTED,
						"out of memory for a %" PRIu32 "-byte message", mlen);
				return;
			}
			call->msg_len = mlen;
			call->msg_got = 0;
			call->have_msg = true;
			conn->buffered += mlen;
			call->msg_complete = mlen == 0;
			continue;
		}
		size_t n = call->msg_len - call->msg_got;
		if (n > len)
			n = len;
		memcpy(call->msg + call->msg_got, data, n);
		call->msg_got += n;
		data += n;
		len -= n;
		call->msg_complete = call->msg_got == call->msg_len;
	}
}

/* ---- the handler's side (grpc.h) ---- */

int sg_grpc_send(struct sg_grpc_call *call, const uint8_t *msg, size_t len)
{
	struct grpc_conn *conn = call->conn;
	uint8_t prefix[SG_GRPC_PREFIX_LEN];
	size_t need;

	if (!conn || !call->stream_open)
		return -EPIPE;
	if (len > UINT32_MAX)
		return -EMSGSIZE;
	need = SG_GRPC_PREFIX_LEN + len;
	if (conn->buffered + need > conn->server->limits.max_buffer)
		return -ENOBUFS;
	if (call->out_len + need > call->out_cap) {
		/* Compact first: what the data provider already took is dead space. */
		if (call->out_off > 0) {
			memmove(call->out, call->out + call->out_off, call->out_len - call->out_off);
			call->out_len -= call->out_off;
			call->out_off = 0;
		}
		if (call->out_len + need > call->out_cap) {
			size_t cap = call->out_cap ? call->out_cap : 256;
			while (cap < call->out_len + need)
				cap *= 2;
			uint8_t *p = realloc(call->out, cap);
			if (!p)
				return -ENOMEM;
			call->out = p;
			call->out_cap = cap;
		}
	}
	sg_grpc_prefix_encode(prefix, 0, (uint32_t)len);
	memcpy(call->out + call->out_len, prefix, SG_GRPC_PREFIX_LEN);
	if (len)
		memcpy(call->out + call->out_len + SG_GRPC_PREFIX_LEN, msg, len);
	call->out_len += need;
	conn->buffered += need;

	if (!call->response_started) {
		nghttp2_nv nv[2] = {
			MAKE_NV(":status", "200", 3),
			MAKE_NV("content-type", "application/grpc", 16),
		};
		nghttp2_data_provider prd = { .source.ptr = call, .read_callback = call_read };
		int r = nghttp2_submit_response(conn->session, call->stream_id, nv, 2, &prd);
		if (r != 0) {
			call->out_len -= need;
			conn->buffered -= need;
			return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPIPE;
		}
		call->response_started = true;
	} else if (call->deferred) {
		call->deferred = false;
		(void)nghttp2_session_resume_data(conn->session, call->stream_id);
	}
	grpc_conn_kick(conn);
	return 0;
}

void sg_grpc_finish(struct sg_grpc_call *call, enum sg_grpc_status status, const char *message)
{
	struct sg_grpc_server *server;
	struct grpc_conn *conn;

	if (!call)
		return;
	server = call->server;
	conn = call->conn;
	if (call->handler_owned) {
		call->handler_owned = false;
		server->n_handler_calls--;
		if (call->method && server->mstats) {
			struct grpc_method_stats *ms = &server->mstats[call->method - server->methods];
			unsigned s = (unsigned)status <= SG_GRPC_UNAUTHENTICATED ? (unsigned)status :
										    SG_GRPC_UNKNOWN;
			ms->by_status[s]++;
			sg_hist_observe(&ms->ms, (double)(sg_now_ns() - call->start_ns) / 1e6);
		}
	}
	if (!conn || !call->stream_open) {
		grpc_call_free(call);
		grpc_server_check_done(server);
		return;
	}
	if ((unsigned)status > SG_GRPC_UNAUTHENTICATED)
		status = SG_GRPC_UNKNOWN;
	call_answer(call, status, message);
	grpc_conn_kick(conn);
}

bool sg_grpc_call_closed(const struct sg_grpc_call *call)
{
	return !call->conn || !call->stream_open;
}

const char *sg_grpc_call_path(const struct sg_grpc_call *call)
{
	return call->path ? call->path : "";
}
