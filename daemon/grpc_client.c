/* A unary gRPC client on the loop.  See grpc_client.h. */
#include "daemon/grpc_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "daemon/core/list.h"
#include "daemon/grpc.h"
#include "daemon/grpc_wire.h"

#define RESPONSE_MAX (16u << 20)

struct ccall {
	struct sg_grpc_client *c;
	struct sg_list link;          /* c->waiting, then c->active */
	char path[256];
	uint8_t *req;                 /* prefix + message */
	size_t req_len, req_off;
	uint8_t *resp;                /* DATA as received: prefix + message */
	size_t resp_len;
	struct sg_grpc_reply *ret;
	struct sg_op *op;
	sg_op_cb cb;
	bool have_status;
};

struct sg_grpc_client {
	struct sg_loop *loop;
	struct sockaddr_un addr;
	int fd;
	nghttp2_session *session;
	nghttp2_session_callbacks *callbacks;
	struct sg_group group;
	struct sg_op conn_op, recv_op, send_op;
	uint8_t rbuf[65536];
	uint8_t *wbuf;
	size_t wlen;
	bool connected, closing, shut;
	struct sg_list waiting, active;
};

void sg_grpc_reply_done(struct sg_grpc_reply *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

/* The call's one completion. */
static void call_finish(struct ccall *cc, int res)
{
	struct sg_grpc_client *c = cc->c;

	sg_list_unlink(&cc->link);
	if (res == 0) {
		if (!cc->have_status)
			cc->ret->status = SG_GRPC_UNKNOWN;
		if (cc->resp_len >= SG_GRPC_PREFIX_LEN) {
			uint32_t n = sg_grpc_prefix_len(cc->resp);
			if (n > cc->resp_len - SG_GRPC_PREFIX_LEN || (cc->resp[0] & SG_GRPC_FLAG_COMPRESSED)) {
				res = -EPROTO;
			} else {
				cc->ret->body = malloc(n ? n : 1);
				if (!cc->ret->body)
					res = -ENOMEM;
				else {
					memcpy(cc->ret->body, cc->resp + SG_GRPC_PREFIX_LEN, n);
					cc->ret->body_len = n;
				}
			}
		}
	}
	/* Cannot fail: the caller's op was idle when the call started and is ours until now. */
	(void)sg_post(c->loop, cc->op, res, cc->cb);
	free(cc->req);
	free(cc->resp);
	free(cc);
}

static void fail_all(struct sg_grpc_client *c, struct sg_list *list, int res)
{
	struct sg_list *n;

	while ((n = list->next) != list)
		call_finish(sg_container_of(n, struct ccall, link), res);
}

static void connect_now(struct sg_grpc_client *c);
static void flush(struct sg_grpc_client *c);

/* The connection is over: its calls fail, and it is torn down once no op of it is left. */
static void teardown_maybe_done(struct sg_grpc_client *c)
{
	if (!c->closing || sg_op_busy(&c->recv_op) || sg_op_busy(&c->send_op) ||
	    sg_op_busy(&c->conn_op))
		return;
	nghttp2_session_del(c->session);
	c->session = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->wlen = 0;
	c->closing = false;
	c->connected = false;
	/* Calls made meanwhile get a new connection. */
	if (!c->shut && !sg_list_empty(&c->waiting))
		connect_now(c);
}

static void broken(struct sg_grpc_client *c, int res)
{
	if (c->closing)
		return;
	c->closing = true;
	fail_all(c, &c->active, res);
	if (!c->connected || c->shut)
		fail_all(c, &c->waiting, res);
	if (sg_op_busy(&c->recv_op))
		(void)sg_op_cancel(&c->recv_op);
	if (sg_op_busy(&c->send_op))
		(void)sg_op_cancel(&c->send_op);
	if (sg_op_busy(&c->conn_op))
		(void)sg_op_cancel(&c->conn_op);
	teardown_maybe_done(c);
}

/* ---- nghttp2 ---- */

static ssize_t read_request(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
	struct ccall *cc = source->ptr;
	size_t n = cc->req_len - cc->req_off;

	if (n > len)
		n = len;
	memcpy(buf, cc->req + cc->req_off, n);
	cc->req_off += n;
	if (cc->req_off == cc->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct ccall *cc = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);

	if (!cc || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		char v[16];
		snprintf(v, sizeof(v), "%.*s", (int)(valuelen < 15 ? valuelen : 15), (const char *)value);
		cc->ret->status = atoi(v);
		cc->have_status = true;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		sg_grpc_percent_decode((const char *)value, valuelen, cc->ret->message,
				       sizeof(cc->ret->message));
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
		   size_t len, void *user_data)
{
	struct ccall *cc = nghttp2_session_get_stream_user_data(s, stream_id);

	if (!cc)
		return 0;
	if (cc->resp_len + len > RESPONSE_MAX)
		return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id,
						 NGHTTP2_REFUSED_STREAM) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
	uint8_t *nb = realloc(cc->resp, cc->resp_len + len);
	if (!nb)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	memcpy(nb + cc->resp_len, data, len);
	cc->resp = nb;
	cc->resp_len += len;
	return 0;
}

static int on_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct ccall *cc = nghttp2_session_get_stream_user_data(s, stream_id);

	if (!cc)
		return 0;
	nghttp2_session_set_stream_user_data(s, stream_id, NULL);
	call_finish(cc, error_code == NGHTTP2_NO_ERROR || cc->have_status ? 0 : -ECONNRESET);
	return 0;
}

/* ---- I/O ---- */

static void sent(struct sg_op *op)
{
	struct sg_grpc_client *c = sg_container_of(op, struct sg_grpc_client, send_op);

	if (op->res < 0) {
		broken(c, op->res == -ECANCELED ? -ECANCELED : -ECONNRESET);
		teardown_maybe_done(c);
		return;
	}
	c->wlen = 0;
	if (c->closing) {
		teardown_maybe_done(c);
		return;
	}
	flush(c);
}

static void flush(struct sg_grpc_client *c)
{
	const uint8_t *data;
	ssize_t n;

	if (!c->connected || c->closing || sg_op_busy(&c->send_op))
		return;
	while ((n = nghttp2_session_mem_send(c->session, &data)) > 0) {
		uint8_t *nb = realloc(c->wbuf, c->wlen + (size_t)n);
		if (!nb) {
			broken(c, -ENOMEM);
			return;
		}
		memcpy(nb + c->wlen, data, (size_t)n);
		c->wbuf = nb;
		c->wlen += (size_t)n;
	}
	if (n < 0) {
		broken(c, -EPROTO);
		return;
	}
	if (!c->wlen)
		return;
	sg_op_init(&c->send_op);
	sg_op_set_group(&c->send_op, &c->group);
	if (sg_send(c->loop, &c->send_op, c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL, sent) < 0)
		broken(c, -ECANCELED);
}

static void received(struct sg_op *op)
{
	struct sg_grpc_client *c = sg_container_of(op, struct sg_grpc_client, recv_op);

	if (op->res <= 0 || c->closing) {
		broken(c, op->res == 0 ? -ECONNRESET : op->res);
		teardown_maybe_done(c);
		return;
	}
	if (nghttp2_session_mem_recv(c->session, c->rbuf, (size_t)op->res) < 0) {
		broken(c, -EPROTO);
		teardown_maybe_done(c);
		return;
	}
	flush(c);
	if (c->closing) {
		teardown_maybe_done(c);
		return;
	}
	sg_op_init(&c->recv_op);
	sg_op_set_group(&c->recv_op, &c->group);
	if (sg_recv(c->loop, &c->recv_op, c->fd, c->rbuf, sizeof(c->rbuf), 0, received) < 0)
		broken(c, -ECANCELED);
}

static int submit(struct sg_grpc_client *c, struct ccall *cc)
{
#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }
	const nghttp2_nv nva[] = {
		NV(":method", "POST"), NV(":scheme", "http"), NV(":path", cc->path),
		NV(":authority", "localhost"), NV("content-type", "application/grpc"),
		NV("te", "trailers"),
	};
#undef NV
	nghttp2_data_provider prd = { .source.ptr = cc, .read_callback = read_request };
	int32_t id = nghttp2_submit_request(c->session, NULL, nva, sizeof(nva) / sizeof(nva[0]),
					    &prd, cc);
	if (id < 0)
		return -EIO;
	sg_list_unlink(&cc->link);
	sg_list_insert_tail(&c->active, &cc->link);
	return 0;
}

static void connected(struct sg_op *op)
{
	struct sg_grpc_client *c = sg_container_of(op, struct sg_grpc_client, conn_op);
	struct sg_list *n, *tmp;

	if (op->res < 0 || c->closing || c->shut) {
		broken(c, op->res < 0 ? op->res : -ECANCELED);
		teardown_maybe_done(c);
		return;
	}
	if (nghttp2_session_client_new(&c->session, c->callbacks, c) != 0 ||
	    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, NULL, 0) != 0) {
		broken(c, -ENOMEM);
		teardown_maybe_done(c);
		return;
	}
	c->connected = true;
	sg_list_for_each_safe(n, tmp, &c->waiting) {
		struct ccall *cc = sg_container_of(n, struct ccall, link);
		if (submit(c, cc) < 0)
			call_finish(cc, -EIO);
	}
	sg_op_init(&c->recv_op);
	sg_op_set_group(&c->recv_op, &c->group);
	if (sg_recv(c->loop, &c->recv_op, c->fd, c->rbuf, sizeof(c->rbuf), 0, received) < 0) {
		broken(c, -ECANCELED);
		teardown_maybe_done(c);
		return;
	}
	flush(c);
}

static void connect_now(struct sg_grpc_client *c)
{
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		int e = -errno;
		fail_all(c, &c->waiting, e);
		return;
	}
	sg_op_init(&c->conn_op);
	sg_op_set_group(&c->conn_op, &c->group);
	if (sg_connect(c->loop, &c->conn_op, c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr),
		       connected) < 0) {
		close(c->fd);
		c->fd = -1;
		fail_all(c, &c->waiting, -ECANCELED);
	}
}

/* ---- API ---- */

int sg_grpc_client_new(struct sg_loop *loop, const char *unix_path, struct sg_grpc_client **ret)
{
	struct sg_grpc_client *c;

	if (strlen(unix_path) >= sizeof(c->addr.sun_path))
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->fd = -1;
	c->addr.sun_family = AF_UNIX;
	memcpy(c->addr.sun_path, unix_path, strlen(unix_path) + 1);
	sg_group_init(&c->group);
	sg_list_init(&c->waiting);
	sg_list_init(&c->active);
	sg_op_init(&c->conn_op);
	sg_op_init(&c->recv_op);
	sg_op_init(&c->send_op);
	if (nghttp2_session_callbacks_new(&c->callbacks) != 0) {
		free(c);
		return -ENOMEM;
	}
	nghttp2_session_callbacks_set_on_header_callback(c->callbacks, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->callbacks, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(c->callbacks, on_close);
	*ret = c;
	return 0;
}

int sg_grpc_client_call(struct sg_grpc_client *c, const char *path, const uint8_t *msg,
			size_t len, uint64_t timeout_ns, struct sg_grpc_reply *ret, struct sg_op *op,
			sg_op_cb cb)
{
	struct ccall *cc;

	if (!op || !cb || !ret || strlen(path) >= sizeof(cc->path) || len > RESPONSE_MAX)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (c->shut)
		return -ECANCELED;
	cc = calloc(1, sizeof(*cc));
	if (!cc)
		return -ENOMEM;
	cc->req = malloc(SG_GRPC_PREFIX_LEN + len);
	if (!cc->req) {
		free(cc);
		return -ENOMEM;
	}
	sg_grpc_prefix_encode(cc->req, 0, (uint32_t)len);
	if (len)
		memcpy(cc->req + SG_GRPC_PREFIX_LEN, msg, len);
	cc->req_len = SG_GRPC_PREFIX_LEN + len;
	cc->c = c;
	snprintf(cc->path, sizeof(cc->path), "%s", path);
	*ret = (struct sg_grpc_reply){ 0 };
	cc->ret = ret;
	cc->op = op;
	cc->cb = cb;
	sg_list_insert_tail(&c->waiting, &cc->link);
	if (c->connected && !c->closing) {
		if (submit(c, cc) < 0) {
			sg_list_unlink(&cc->link);
			free(cc->req);
			free(cc);
			return -EIO;
		}
		flush(c);
	} else if (!c->closing && !sg_op_busy(&c->conn_op)) {
		connect_now(c);
	}
	return 0;
}

void sg_grpc_client_shutdown(struct sg_grpc_client *c)
{
	if (!c || c->shut)
		return;
	c->shut = true;
	fail_all(c, &c->waiting, -ECANCELED);
	if (c->connected || sg_op_busy(&c->conn_op))
		broken(c, -ECANCELED);
}

bool sg_grpc_client_busy(const struct sg_grpc_client *c)
{
	return c && !sg_group_idle(&c->group);
}

void sg_grpc_client_free(struct sg_grpc_client *c)
{
	if (!c)
		return;
	SG_FREE_CHECK(!sg_group_idle(&c->group) || !sg_list_empty(&c->active) ||
		      !sg_list_empty(&c->waiting), "gRPC client");
	nghttp2_session_del(c->session);
	if (c->fd >= 0)
		close(c->fd);
	nghttp2_session_callbacks_del(c->callbacks);
	free(c->wbuf);
	free(c);
}
