/* One request with its retries, redirects and authentication.  See exchange.h; how an
 * exchange waits is told in exchange_int.h, and its authentication (credentials sent, 401s
 * answered, token requests) is in exchange_auth.c. */
#include "net/exchange.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "daemon/core/list.h"
#include "net/auth.h"
#include "net/credentials.h"
#include "net/endpoints.h"
#include "net/exchange_auth.h"
#include "net/exchange_int.h"
#include "net/json.h"
#include "net/pool.h"
#include "net/reference.h"
#include "net/token.h"
#include "net/url.h"

/* Error bodies are read (to keep the connection) up to this size, then the connection is
 * closed instead. */
#define DISCARD_MAX 65536
#define REQ_MAX (64 * 1024)

static void xfer_send(struct sg_exchange *x);
static void xfer_attempt_failed(struct sg_exchange *x, int res, bool retryable);
static void xfer_do_redirect(struct sg_exchange *x);

/* ---- pure helpers ---- */

uint64_t sg_exchange_backoff_ns(unsigned attempt, uint64_t base_ns, uint64_t max_ns,
				unsigned jitter_permille)
{
	uint64_t d = base_ns;

	if (attempt == 0)
		return 0;
	for (unsigned i = 1; i < attempt && d < max_ns; i++)
		d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
	if (d > max_ns)
		d = max_ns;
	if (jitter_permille < 500)
		jitter_permille = 500;
	if (jitter_permille > 1000)
		jitter_permille = 1000;
	return d / 1000 * jitter_permille;
}

int sg_exchange_retry_after(const char *value, size_t len, uint64_t max_ns, uint64_t *ret_ns)
{
	uint64_t secs;

	if (!value || sg_http1_parse_u64(value, len, &secs) < 0)
		return -EINVAL;
	if (secs > max_ns / 1000000000ull)
		*ret_ns = max_ns;
	else
		*ret_ns = secs * 1000000000ull;
	return 0;
}

bool sg_exchange_status_retryable(int status)
{
	if (status == 408 || status == 429)
		return true;
	return status >= 500 && status <= 599 && status != 501 && status != 505;
}

size_t sg_exchange_error_text(const char *body, size_t len, char *buf, size_t cap)
{
	yajl_val root = NULL, errs, e;
	size_t n = 0;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	if (!body || len == 0)
		return 0;
	if (sg_json_parse(body, len, 1 << 16, &root, NULL) == 0) {
		errs = sg_json_member(root, "errors");
		if (errs && YAJL_IS_ARRAY(errs) && errs->u.array.len > 0 &&
		    YAJL_IS_OBJECT((e = errs->u.array.values[0]))) {
			const char *code = sg_json_string(e, "code");
			const char *msg = sg_json_string(e, "message");
			int k = snprintf(buf, cap, "%s%s%s", code ? code : "", code && msg ? ": " : "",
					 msg ? msg : "");
			yajl_tree_free(root);
			if (k < 0)
				return 0;
			return (size_t)k < cap ? (size_t)k : cap - 1;
		}
		yajl_tree_free(root);
	}
	/* Not the registry error format: the printable prefix of the body. */
	for (size_t i = 0; i < len && n + 1 < cap && n < 200; i++) {
		unsigned char ch = (unsigned char)body[i];
		buf[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
	}
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	return n;
}

static uint64_t xs_rand(struct sg_exchanges *xs)
{
	/* xorshift64: jitter only, no security value. */
	uint64_t v = xs->rnd;
	v ^= v << 13;
	v ^= v >> 7;
	v ^= v << 17;
	xs->rnd = v;
	return v;
}

bool sg_xfer_plain_ok(const struct sg_exchanges *xs, const char *authority)
{
	return sg_url_plain_allowed(xs->cfg.insecure_hosts, xs->cfg.ninsecure_hosts,
				    xs->cfg.plain_http_localhost, authority);
}

static void xfer_vseterr(struct sg_exchange *x, const char *fmt, va_list ap)
{
	char msg[SG_ERROR_MSG_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	sg_error_set(&x->err, 0, "%s %s://%s%.200s: %s", x->method,
		     sg_host_tls(x->host) ? "https" : "http", sg_host_authority(x->host), x->target,
		     msg);
}

void sg_xfer_seterr(struct sg_exchange *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xfer_vseterr(x, fmt, ap);
	va_end(ap);
}

void sg_xfer_adderr(struct sg_exchange *x, const char *fmt, ...)
{
	size_t l = strlen(x->err.msg);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->err.msg + l, sizeof(x->err.msg) - l, fmt, ap);
	va_end(ap);
}

int sg_exchange_fail(struct sg_exchange *x, int res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xfer_vseterr(x, fmt, ap);
	va_end(ap);
	return res;
}

/* ---- finishing ---- */

static void xfer_release_conn(struct sg_exchange *x, bool reuse)
{
	if (!x->c)
		return;
	sg_pool_conn_release(x->c, reuse);
	x->c = NULL;
}

/* Counts a failed request against its registry host, for `stargzd status`.  The message may
 * name a redirect target: a presigned URL's query string is a credential, so it is cut. */
static void note_failure(struct sg_host_stats *st, const char *msg)
{
	size_t o = 0;

	st->failures++;
	for (const char *s = msg; *s && o + 1 < sizeof(st->last_error); s++) {
		if (*s == '?') {
			while (s[1] && s[1] != ' ' && !(s[1] == ':' && s[2] == ' '))
				s++;
			continue;
		}
		st->last_error[o++] = *s;
	}
	st->last_error[o] = '\0';
}

/* Completes the caller's op.  Nothing is pending on x->op. */
static void xfer_deliver(struct sg_exchange *x)
{
	x->delivered = true;
	if (x->result < 0)
		sg_error_set(x->done_err, x->result, "%s", x->err.msg);
	if (x->result < 0 && x->result != -ECANCELED)
		note_failure(sg_host_stats(x->orig_host), x->err.msg);
	/* Cannot fail: the caller's op was idle when the exchange started and is ours until
	 * this post, and posts are accepted while the loop drains. */
	(void)sg_post(x->xs->loop, x->done_op, x->result, x->done_cb);
}

/* The final result: delivered once whatever x->op waits for has been cancelled. */
void sg_xfer_finish(struct sg_exchange *x, int res)
{
	if (x->finishing)
		return;
	x->finishing = true;
	x->result = res;
	if (res < 0 && !x->err.msg[0])
		sg_xfer_seterr(x, "%s", strerror(-res));
	/* A send or receive in flight completes with -ECANCELED now. */
	xfer_release_conn(x, false);
	switch (x->wait) {
	case W_NONE:
		xfer_deliver(x);
		break;
	case W_TOKEN:
		sg_list_unlink(&x->token_link);
		x->wait = W_NONE;
		xfer_deliver(x);
		break;
	case W_TIMER:
		(void)sg_op_cancel(&x->op);
		break;
	case W_ACQUIRE:
		(void)sg_host_acquire_cancel(x->host, &x->op);
		break;
	case W_CRED:
		(void)sg_credentials_cancel(x->xs->creds, &x->op);
		break;
	case W_IO:
		break;
	}
}

/* First thing in every callback of x->op: if the exchange finished meanwhile, deliver its
 * result (and give back a connection that arrived after all).  True if it did. */
bool sg_xfer_settle(struct sg_exchange *x)
{
	x->wait = W_NONE;
	if (!x->finishing)
		return false;
	xfer_release_conn(x, false);
	xfer_deliver(x);
	return true;
}

/* ---- attempts and retries ---- */

static void on_backoff(struct sg_op *op)
{
	struct sg_exchange *x = sg_container_of(op, struct sg_exchange, op);

	if (sg_xfer_settle(x))
		return;
	sg_xfer_go(x);
}

static bool xfer_may_retry(struct sg_exchange *x)
{
	unsigned max = x->single_attempt ? 1 : x->xs->cfg.attempts;
	return x->attempt + 1 < max && !x->xs->closing;
}

static void xfer_retry_after(struct sg_exchange *x, uint64_t delay, enum sg_retry_cause cause)
{
	int r;

	x->attempt++;
	sg_host_stats(x->host)->retries++;
	sg_host_stats(x->host)->retries_by[cause]++;
	/* Start over at the registry: a redirect target (a presigned URL) may have expired. */
	x->host = x->orig_host;
	free(x->target);
	x->target = strdup(x->orig_target);
	x->left_origin = false;
	x->redirects = 0;
	if (!x->target) {
		sg_xfer_finish(x, -ENOMEM);
		return;
	}
	/* Refused while the loop drains: the exchange then finishes with that error. */
	r = sg_timer_start(x->xs->loop, &x->op, delay, on_backoff);
	if (r < 0) {
		sg_xfer_finish(x, r);
		return;
	}
	x->wait = W_TIMER;
}

static uint64_t xfer_backoff(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;

	return sg_exchange_backoff_ns(x->attempt + 1, xs->cfg.retry_base_ns, xs->cfg.retry_max_ns,
				      500 + (unsigned)(xs_rand(xs) % 501));
}

static void xfer_attempt_failed(struct sg_exchange *x, int res, bool retryable)
{
	xfer_release_conn(x, false);
	if (x->finishing)
		return;
	if (retryable && xfer_may_retry(x)) {
		xfer_retry_after(x, xfer_backoff(x),
				 res == -ETIMEDOUT ? SG_RETRY_TIMEOUT : SG_RETRY_CONNECTION);
		return;
	}
	if (x->attempt > 0 && retryable)
		sg_xfer_adderr(x, " (after %u attempts)", x->attempt + 1);
	sg_xfer_finish(x, res);
}

/* ---- sending and reading ---- */

/* The body after the head, in the same buffer: one send. */
static int append_body(struct sg_exchange *x)
{
	char *nb = realloc(x->req, (size_t)x->req_len + x->body_len);

	if (!nb)
		return -ENOMEM;
	x->req = nb;
	memcpy(x->req + x->req_len, x->body, x->body_len);
	x->req_len += (int)x->body_len;
	return 0;
}

static int build_request(struct sg_exchange *x)
{
	size_t cap = 4096;

	for (;;) {
		struct sg_http1_writer w;
		char *nb = realloc(x->req, cap);
		if (!nb)
			return -ENOMEM;
		x->req = nb;
		sg_http1_req_begin(&w, x->req, cap, x->method, x->target,
				   sg_host_authority(x->host));
		sg_http1_req_header(&w, "User-Agent", x->xs->cfg.user_agent);
		if (x->accept)
			sg_http1_req_header(&w, "Accept", x->accept);
		if (x->nranges)
			sg_http1_req_ranges(&w, x->ranges, x->nranges);
		if (x->body) {
			char clen[24];
			snprintf(clen, sizeof(clen), "%zu", x->body_len);
			if (x->content_type)
				sg_http1_req_header(&w, "Content-Type", x->content_type);
			sg_http1_req_header(&w, "Content-Length", clen);
		}
		sg_xauth_add_headers(x, &w);
		x->req_len = sg_http1_req_end(&w);
		if (x->req_len >= 0 && x->body)
			return append_body(x);
		if (x->req_len != -ENOSPC || cap >= REQ_MAX)
			return x->req_len < 0 ? x->req_len : 0;
		cap *= 2;
	}
}

/* A send or receive failed. */
static void conn_io_error(struct sg_exchange *x, int res, const char *what)
{
	bool stale = sg_pool_conn_served(x->c) > 1 && x->bytes_in == 0 && x->stale < 2 &&
		     (res == -EPIPE || res == -ECONNRESET);

	if (stale) {
		/* A kept-alive connection the server had already closed: not the request's
		 * fault, so try again at once on a fresh one. */
		x->stale++;
		xfer_release_conn(x, false);
		sg_xfer_go(x);
		return;
	}
	if (res == -ETIMEDOUT)
		sg_xfer_seterr(x, "%s: timed out %s", what,
			       x->bytes_in ? "while the body was streaming (idle timeout)"
					   : "waiting for the response (first-byte timeout)");
	else
		sg_xfer_seterr(x, "%s: %s", what, strerror(-res));
	xfer_release_conn(x, false);
	xfer_attempt_failed(x, res, res != -ECANCELED);
}

static void on_received(struct sg_op *op);

static void xfer_read(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	uint64_t t = x->bytes_in ? xs->cfg.idle_timeout_ns : xs->cfg.first_byte_timeout_ns;
	int r = sg_pool_conn_recv(x->c, t, &x->op, on_received);

	if (r < 0) {
		conn_io_error(x, r, "receive");
		return;
	}
	x->wait = W_IO;
}

static void on_sent(struct sg_op *op)
{
	struct sg_exchange *x = sg_container_of(op, struct sg_exchange, op);

	if (sg_xfer_settle(x))
		return;
	if (op->res < 0) {
		conn_io_error(x, op->res, "send");
		return;
	}
	xfer_read(x);
}

static void xfer_send(struct sg_exchange *x)
{
	int r = build_request(x);

	if (r < 0) {
		sg_xfer_seterr(x, "cannot build the request: %s", strerror(-r));
		sg_xfer_finish(x, r);
		return;
	}
	sg_http1_parser_init(&x->p, x->head_method);
	x->bytes_in = 0;
	x->sent_ns = sg_now_ns();
	r = sg_pool_conn_send(x->c, x->req, (size_t)x->req_len, x->xs->cfg.idle_timeout_ns, &x->op,
			      on_sent);
	if (r < 0) {
		sg_xfer_seterr(x, "send: %s", strerror(-r));
		xfer_attempt_failed(x, r, false);
		return;
	}
	x->wait = W_IO;
}

static void on_acquired(struct sg_op *op)
{
	struct sg_exchange *x = sg_container_of(op, struct sg_exchange, op);
	int res = op->res;

	if (sg_xfer_settle(x))
		return;
	if (res < 0) {
		sg_xfer_seterr(x, "%s", x->cerr.msg[0] ? x->cerr.msg : strerror(-res));
		xfer_attempt_failed(x, res, res != -ECONNABORTED && res != -ENOENT &&
						    res != -EINVAL && res != -ECANCELED);
		return;
	}
	/* Every request sets it: a kept-alive connection may come with the last one's. */
	sg_pool_conn_rcvbuf(x->c, x->rcvbuf);
	xfer_send(x);
}

/* ---- deciding ---- */

/* After a non-2xx head: decide what happens once its body is read (or the connection closed). */
static void xfer_plan(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	const struct sg_http1_parser *p = &x->p;
	int st = p->status;
	const char *v;
	size_t vlen;

	x->act = XA_FAIL;
	x->act_res = -EPROTO;
	if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
		v = sg_http1_header(p, "location", &vlen);
		if (v && vlen > 0) {
			free(x->location);
			x->location = strndup(v, vlen);
			x->act = x->location ? XA_REDIRECT : XA_FAIL;
			x->act_res = -ENOMEM;
			return;
		}
		x->act_res = -EBADMSG;
		return;
	}
	/* A 401 is answered only where the answer may be sent. */
	if (st == 401 && x->ep && !x->extra_auth && sg_xauth_may_send(x)) {
		if (sg_xauth_pick_challenge(x))
			x->act = XA_AUTH;
		else
			x->act_res = -EACCES;
		return;
	}
	if (sg_exchange_status_retryable(st)) {
		uint64_t d = xfer_backoff(x);
		v = sg_http1_header(p, "retry-after", &vlen);
		if (v) {
			uint64_t ra;
			if (sg_exchange_retry_after(v, vlen, xs->cfg.retry_max_ns, &ra) == 0 && ra > d)
				d = ra;
		}
		x->act = XA_RETRY;
		x->act_delay = d;
		x->act_res = -EPROTO;
		return;
	}
	switch (st) {
	case 404:
		x->act_res = -ENOENT;
		break;
	case 401:
	case 403:
		x->act_res = -EACCES;
		break;
	case 400:
	case 416:
		x->act_res = -EINVAL;
		break;
	case 405:
		x->act_res = -EOPNOTSUPP;
		break;
	default:
		x->act_res = -EPROTO;
	}
}

void sg_xfer_status_error(struct sg_exchange *x)
{
	char detail[300];
	size_t rlen = 0;
	const char *reason = x->p.reason_len ? sg_http1_reason(&x->p, &rlen) : NULL;

	sg_exchange_error_text(x->ebody, x->ebody_len, detail, sizeof(detail));
	sg_xfer_seterr(x, "%d %.*s%s%s", x->status, reason ? (int)rlen : 0, reason ? reason : "",
		    detail[0] ? ": " : "", detail);
}

/* Runs the planned action after a non-2xx response. */
static void xfer_act(struct sg_exchange *x)
{
	switch (x->act) {
	case XA_REDIRECT:
		xfer_do_redirect(x);
		return;
	case XA_AUTH:
		sg_xauth_answer(x);
		return;
	case XA_RETRY:
		sg_xfer_status_error(x);
		if (xfer_may_retry(x)) {
			xfer_retry_after(x, x->act_delay,
					 x->status == 429 ? SG_RETRY_THROTTLED :
					 x->status == 408 ? SG_RETRY_TIMEOUT : SG_RETRY_SERVER);
			return;
		}
		if (x->attempt > 0)
			sg_xfer_adderr(x, " (after %u attempts)", x->attempt + 1);
		sg_xfer_finish(x, x->act_res);
		return;
	case XA_FAIL:
	default:
		sg_xfer_status_error(x);
		if (x->status == 401 && x->act_res == -EACCES && x->ep && !x->chal.scheme)
			sg_xfer_adderr(x, " (no usable WWW-Authenticate challenge)");
		sg_xfer_finish(x, x->act_res);
		return;
	}
}

static int xfer_head(struct sg_exchange *x)
{
	const struct sg_http1_parser *p = &x->p;

	x->status = p->status;
	if (p->status >= 100 && p->status < 200) {
		x->interim = true;
		return 0;
	}
	if (p->status >= 200 && p->status < 300) {
		x->act = XA_NONE;
		if (!x->sink->body) {
			size_t vlen;
			const char *ct = sg_http1_header(p, "content-type", &vlen);
			snprintf(x->ctype, sizeof(x->ctype), "%.*s", ct ? (int)vlen : 0, ct ? ct : "");
			if (p->framing == SG_HTTP1_BODY_LENGTH && p->content_length > x->bmax) {
				sg_xfer_seterr(x, "response too large (%llu bytes, limit %zu)",
					    (unsigned long long)p->content_length, x->bmax);
				return -E2BIG;
			}
		}
		return x->sink->head ? x->sink->head(x->sink_data, x, p) : 0;
	}
	xfer_plan(x);
	x->discard = true;
	x->discarded = 0;
	x->ebody_len = 0;
	return 0;
}

/* Copies a body slice to the buffered sink. */
static int buffer_body(struct sg_exchange *x, const uint8_t *d, size_t n)
{
	if (x->blen + n > x->bmax) {
		sg_xfer_seterr(x, "response larger than %zu bytes", x->bmax);
		return -E2BIG;
	}
	if (!x->bbuf) {
		x->bbuf = malloc(x->bmax + 1);
		if (!x->bbuf)
			return -ENOMEM;
	}
	memcpy(x->bbuf + x->blen, d, n);
	x->blen += n;
	x->bbuf[x->blen] = 0;
	return 0;
}

/* The whole response is in (or enough of it): success or the planned action. */
static void xfer_response_done(struct sg_exchange *x, bool reuse)
{
	int r;

	xfer_release_conn(x, reuse);
	if (x->act != XA_NONE) {
		xfer_act(x);
		return;
	}
	if (x->sink->done) {
		r = x->sink->done(x->sink_data, x);
		if (r < 0) {
			if (!x->err.msg[0])
				sg_xfer_seterr(x, "%s", strerror(-r));
			sg_xfer_finish(x, r);
			return;
		}
	}
	sg_xfer_finish(x, 0);
}

/* A sink hook failed. */
static void xfer_sink_failed(struct sg_exchange *x, int r)
{
	if (!x->err.msg[0])
		sg_xfer_seterr(x, "%s", strerror(-r));
	sg_xfer_finish(x, r);
}

/* A body slice of a non-2xx response: kept for the message, up to a bound.  True when the
 * rest is not worth reading. */
static bool discard_body(struct sg_exchange *x, const struct sg_http1_slice *body)
{
	size_t k = SG_XFER_EBODY_MAX - x->ebody_len;

	if (k > body->len)
		k = body->len;
	memcpy(x->ebody + x->ebody_len, body->data, k);
	x->ebody_len += k;
	x->discarded += body->len;
	return x->discarded > DISCARD_MAX;
}

/* The connection closed: the end of a read-until-close body, or a truncation. */
static void on_eof(struct sg_exchange *x)
{
	int r = sg_http1_finish(&x->p);

	if (r == SG_HTTP1_DONE && !x->interim) {
		xfer_response_done(x, false);
		return;
	}
	conn_io_error(x, x->bytes_in ? -EPIPE : -ECONNRESET,
		      x->bytes_in ? "connection closed before the response was complete"
				  : "connection closed without a response");
}

static void on_received(struct sg_op *op)
{
	struct sg_exchange *x = sg_container_of(op, struct sg_exchange, op);
	const uint8_t *data;
	size_t off = 0, len;

	if (sg_xfer_settle(x))
		return;
	if (op->res < 0) {
		conn_io_error(x, op->res, "receive");
		return;
	}
	if (op->res == 0) {
		on_eof(x);
		return;
	}
	data = sg_pool_conn_data(x->c);
	len = (size_t)op->res;
	x->bytes_in += len;
	for (;;) {
		size_t n;
		struct sg_http1_slice body;
		int ev = sg_http1_feed(&x->p, data + off, len - off, &n, &body);
		int r;

		off += n;
		if (ev < 0) {
			sg_xfer_seterr(x, "malformed response: %s", x->p.err ? x->p.err : strerror(-ev));
			xfer_release_conn(x, false);
			/* EOF inside a message is a truncation (worth retrying); the rest is a
			 * broken server, and asking again would not help. */
			xfer_attempt_failed(x, ev, ev == -EPIPE);
			return;
		}
		switch (ev) {
		case SG_HTTP1_NEED_MORE:
			xfer_read(x);
			return;
		case SG_HTTP1_HEAD:
			r = xfer_head(x);
			if (r < 0) {
				xfer_sink_failed(x, r);
				return;
			}
			if (x->discard && x->p.framing == SG_HTTP1_BODY_EOF) {
				xfer_response_done(x, false);
				return;
			}
			break;
		case SG_HTTP1_BODY:
			if (x->interim)
				break;
			if (x->discard) {
				if (discard_body(x, &body)) {
					xfer_response_done(x, false);
					return;
				}
				break;
			}
			r = x->sink->body ? x->sink->body(x->sink_data, x, body.data, body.len)
					  : buffer_body(x, body.data, body.len);
			if (r < 0) {
				xfer_sink_failed(x, r);
				return;
			}
			if (r == 1) {
				/* The sink has what it needs (a range out of a whole-blob 200):
				 * the rest is not worth reading, so drop the connection. */
				xfer_response_done(x, false);
				return;
			}
			break;
		case SG_HTTP1_DONE:
			if (x->interim) {
				x->interim = false;
				sg_http1_parser_init(&x->p, x->head_method);
				break;
			}
			/* We never pipeline, so bytes after the response mean a confused server. */
			xfer_response_done(x, x->p.keep_alive && off == len);
			return;
		}
	}
}

/* Starts (or restarts) an attempt. */
void sg_xfer_go(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	int r;

	if (x->finishing)
		return;
	if (xs->closing) {
		sg_xfer_finish(x, -ECANCELED);
		return;
	}
	x->act = XA_NONE;
	x->discard = false;
	x->interim = false;
	x->status = 0;
	x->err = (struct sg_error){ 0 };
	x->blen = 0;
	if (x->sink->reset)
		x->sink->reset(x->sink_data);
	if (sg_xauth_wait_token(x))
		return;
	x->cerr = (struct sg_error){ 0 };
	r = sg_host_acquire(x->host, &x->c, &x->cerr, &x->op, on_acquired);
	if (r < 0) {
		sg_xfer_seterr(x, "%s", x->cerr.msg[0] ? x->cerr.msg : strerror(-r));
		sg_xfer_finish(x, r);
		return;
	}
	x->wait = W_ACQUIRE;
}

/* ---- redirects ---- */

static void xfer_do_redirect(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	struct sg_url base = { .tls = sg_host_tls(x->host), .port = sg_host_port(x->host) }, u;
	char auth[SG_URL_HOST_MAX + 8];
	struct sg_host *h;
	int r;

	if (++x->redirects > xs->cfg.max_redirects) {
		sg_xfer_seterr(x, "too many redirects (more than %u)", xs->cfg.max_redirects);
		sg_xfer_finish(x, -ELOOP);
		return;
	}
	snprintf(base.host, sizeof(base.host), "%s", sg_host_name(x->host));
	snprintf(base.target, sizeof(base.target), "%s", x->target);
	r = sg_url_parse(x->location, strlen(x->location), &base, &u);
	if (r < 0) {
		sg_xfer_seterr(x, "bad redirect Location \"%.200s\"", x->location);
		sg_xfer_finish(x, -EBADMSG);
		return;
	}
	sg_url_authority(&u, auth, sizeof(auth));
	if (!u.tls && sg_host_tls(x->host) && !sg_xfer_plain_ok(xs, auth)) {
		sg_xfer_seterr(x, "redirect from HTTPS to plain HTTP (%s) refused", auth);
		sg_xfer_finish(x, -EPERM);
		return;
	}
	/* The registry's TLS profile (CA, skip_verify) belongs to the registry; elsewhere the
	 * default trust applies. */
	if (u.tls == sg_host_tls(x->host) && u.port == sg_host_port(x->host) &&
	    !strcasecmp(u.host, sg_host_name(x->host)))
		h = x->host;
	else
		h = sg_pool_host(xs->pool, u.tls, u.host, u.port, false, NULL);
	if (!h) {
		sg_xfer_seterr(x, "redirect: too many hosts");
		sg_xfer_finish(x, -ENOMEM);
		return;
	}
	if (!sg_host_same_origin(h, x->orig_host))
		x->left_origin = true;
	free(x->target);
	x->target = strdup(u.target);
	if (!x->target) {
		sg_xfer_finish(x, -ENOMEM);
		return;
	}
	x->host = h;
	sg_xfer_go(x);
}

/* ---- exchanges ---- */

/* The request's strings copied into a new exchange, or NULL (out of memory). */
static struct sg_exchange *xfer_new(struct sg_exchanges *xs, const struct sg_exchange_request *req)
{
	struct sg_exchange *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->orig_target = strdup(req->target);
	x->target = strdup(req->target);
	x->repo = req->repo ? strdup(req->repo) : NULL;
	x->extra_auth = req->authorization ? strdup(req->authorization) : NULL;
	/* A PUT or POST always has a body (maybe empty), so that Content-Length is sent. */
	x->body = req->method ? malloc(req->body_len ? req->body_len : 1) : NULL;
	if (!x->orig_target || !x->target || (req->repo && !x->repo) ||
	    (req->authorization && !x->extra_auth) || (req->method && !x->body)) {
		free(x->orig_target);
		free(x->target);
		free(x->repo);
		free(x->extra_auth);
		free(x->body);
		free(x);
		return NULL;
	}
	if (req->body_len && x->body)
		memcpy(x->body, req->body, req->body_len);
	x->body_len = x->body ? req->body_len : 0;
	x->xs = xs;
	x->sink = req->sink;
	x->sink_data = req->sink_data;
	x->ep = req->ep;
	x->accept = req->accept;
	x->head_method = req->head && !req->method;
	x->method = req->method ? req->method : req->head ? "HEAD" : "GET";
	x->content_type = req->content_type;
	x->push_scope = req->push_scope;
	x->single_attempt = req->single_attempt;
	x->rcvbuf = req->rcvbuf;
	x->orig_host = x->host = req->host;
	if (req->nranges)
		memcpy(x->ranges, req->ranges, req->nranges * sizeof(*req->ranges));
	x->nranges = req->nranges;
	x->bmax = req->body_max;
	sg_op_init(&x->op);
	return x;
}

int sg_exchange_start(struct sg_exchanges *xs, const struct sg_exchange_request *req,
		      struct sg_exchange **ret_x, struct sg_error *err, struct sg_op *op,
		      sg_op_cb cb)
{
	struct sg_exchange *x;

	if (!req->host || !req->target || !req->sink || (req->nranges && !req->ranges) ||
	    !ret_x || !op || !cb)
		return -EINVAL;
	if (req->nranges > SG_EXCHANGE_RANGES_MAX)
		return -E2BIG;
	if (sg_op_busy(op))
		return -EBUSY;
	if (xs->closing)
		return -ECANCELED;
	x = xfer_new(xs, req);
	if (!x)
		return -ENOMEM;
	sg_list_insert_tail(&xs->live, &x->link);
	xs->nlive++;
	x->done_op = op;
	x->done_cb = cb;
	x->done_err = err;
	*ret_x = x;
	sg_xfer_go(x);
	return 0;
}

int sg_exchange_cancel(struct sg_exchange *x)
{
	if (x->finishing)
		return -EALREADY;
	sg_xfer_finish(x, -ECANCELED);
	return 0;
}

void sg_exchange_free(struct sg_exchange *x)
{
	if (!x)
		return;
	/* Its op, or the caller's still to be completed, points into x. */
	SG_FREE_CHECK(!x->delivered || sg_op_busy(&x->op) || x->c, "registry exchange");
	sg_list_unlink(&x->link);
	x->xs->nlive--;
	free(x->orig_target);
	free(x->target);
	free(x->repo);
	free(x->extra_auth);
	free(x->sent_token);
	free(x->location);
	free(x->bbuf);
	free(x->req);
	free(x->body);
	free(x);
}

int sg_exchange_status(const struct sg_exchange *x)
{
	return x->status;
}

struct sg_host *sg_exchange_host(const struct sg_exchange *x)
{
	return x->host;
}

uint64_t sg_exchange_sent_ns(const struct sg_exchange *x)
{
	return x->sent_ns;
}

const uint8_t *sg_exchange_body(const struct sg_exchange *x, size_t *ret_len)
{
	*ret_len = x->blen;
	return x->bbuf ? x->bbuf : (const uint8_t *)"";
}

uint8_t *sg_exchange_take_body(struct sg_exchange *x, size_t *ret_len)
{
	uint8_t *b = x->bbuf;

	*ret_len = x->blen;
	x->bbuf = NULL;
	return b;
}

const char *sg_exchange_content_type(const struct sg_exchange *x)
{
	return x->ctype;
}

/* ---- the shared state ---- */

int sg_exchanges_new(struct sg_loop *loop, const struct sg_exchanges_config *config,
		     struct sg_pool *pool, struct sg_credentials *creds,
		     struct sg_exchanges **ret)
{
	struct sg_exchanges *xs = calloc(1, sizeof(*xs));
	int r;

	*ret = NULL;
	if (!xs)
		return -ENOMEM;
	r = sg_tokens_new(0, &xs->tokens);
	if (r < 0) {
		free(xs);
		return r;
	}
	xs->loop = loop;
	xs->cfg = *config;
	xs->pool = pool;
	xs->creds = creds;
	sg_list_init(&xs->live);
	sg_list_init(&xs->token_waiters);
	xs->rnd = sg_now_ns() | 1;
	*ret = xs;
	return 0;
}

void sg_exchanges_shutdown(struct sg_exchanges *xs)
{
	struct sg_list *pos, *tmp;

	if (!xs || xs->closing)
		return;
	xs->closing = true;
	sg_list_for_each_safe(pos, tmp, &xs->live) {
		struct sg_exchange *x = sg_container_of(pos, struct sg_exchange, link);
		if (!x->finishing) {
			sg_xfer_seterr(x, "registry client shut down");
			sg_xfer_finish(x, -ECANCELED);
		}
	}
}

bool sg_exchanges_closing(const struct sg_exchanges *xs)
{
	return xs->closing;
}

bool sg_exchanges_busy(const struct sg_exchanges *xs)
{
	return xs && xs->nlive > 0;
}

void sg_exchanges_free(struct sg_exchanges *xs)
{
	if (!xs)
		return;
	SG_FREE_CHECK(sg_exchanges_busy(xs), "registry exchanges (one is alive)");
	sg_tokens_free(xs->tokens);
	free(xs);
}

void sg_exchange_set_rcvbuf(struct sg_exchange *x, unsigned bytes)
{
	if (x->c)
		sg_pool_conn_rcvbuf(x->c, bytes);
}
