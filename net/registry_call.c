/* One request on a repository.  See registry_call.h. */
#include "net/registry_call.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "net/endpoints.h"
#include "net/exchange.h"
#include "net/http1.h"
#include "net/pool.h"
#include "net/reference.h"
#include "net/registry_int.h"
#include "net/url.h"

struct rcall {
	struct sg_registry *reg;
	const struct sg_endpoint *ep;
	struct sg_registry_response *ret;
	struct sg_error *err;
	struct sg_op *op;
	sg_op_cb cb;
	struct sg_exchange *x;
	struct sg_op xop;
	struct sg_error xerr;
	int head_res;                     /* a refusal of the head hook */
};

static void rcall_finish(struct rcall *c, int res)
{
	struct sg_loop *loop = sg_registry_loop(c->reg);
	struct sg_op *op = c->op;
	sg_op_cb cb = c->cb;

	if (res < 0)
		sg_error_set(c->err, res, "%s", c->xerr.msg);
	sg_registry_release(c->reg);
	free(c);
	(void)sg_post(loop, op, res, cb);
}

/* A 2xx head: the headers a push needs, while the parser still holds them. */
static int rcall_head(void *data, struct sg_exchange *x, const struct sg_http1_parser *p)
{
	struct rcall *c = data;
	struct sg_registry_response *resp = c->ret;
	size_t len;
	const char *v;

	resp->status = p->status;
	resp->oci_subject = sg_http1_header(p, "oci-subject", &len) != NULL;
	v = sg_http1_header(p, "docker-content-digest", &len);
	snprintf(resp->docker_content_digest, sizeof(resp->docker_content_digest), "%.*s",
		 v ? (int)len : 0, v ? v : "");
	v = sg_http1_header(p, "content-type", &len);
	snprintf(resp->content_type, sizeof(resp->content_type), "%.*s", v ? (int)len : 0,
		 v ? v : "");
	resp->location[0] = '\0';
	v = sg_http1_header(p, "location", &len);
	if (v && len) {
		struct sg_url base = { 0 }, u;
		struct sg_host *h = sg_exchange_host(x);
		char hostport[SG_URL_HOST_MAX + 8];

		base.tls = sg_host_tls(h);
		snprintf(hostport, sizeof(hostport), "%s", sg_host_authority(h));
		if (sg_url_split_authority(hostport, base.tls, base.host, sizeof(base.host),
					   &base.port) < 0 ||
		    sg_url_parse(v, len, &base, &u) < 0)
			return sg_exchange_fail(x, -EBADMSG, "bad Location \"%.200s\"", v);
		/* An upload session on another host would need its own pool and credentials
		 * handling; registries answer with their own host. */
		if (strcmp(u.host, base.host) != 0 || u.port != base.port || u.tls != base.tls)
			return sg_exchange_fail(x, -ENOTSUP, "Location on another host: %.200s", v);
		snprintf(resp->location, sizeof(resp->location), "%s", u.target);
	}
	return 0;
}

static const struct sg_exchange_sink rcall_sink = { .head = rcall_head };

static void on_done(struct sg_op *op)
{
	struct rcall *c = sg_container_of(op, struct rcall, xop);
	struct sg_exchange *x = c->x;

	c->x = NULL;
	if (op->res == 0) {
		c->ret->status = sg_exchange_status(x);
		c->ret->body = sg_exchange_take_body(x, &c->ret->len);
	}
	sg_exchange_free(x);
	rcall_finish(c, op->res);
}

static int rcall_start(struct rcall *c, const struct sg_registry_call *call)
{
	const struct sg_endpoint_set *eps;
	struct sg_ref ref;
	char v2[SG_URL_TARGET_MAX], target[SG_URL_TARGET_MAX];
	int r;

	r = sg_ref_parse(call->ref, &ref, &c->xerr);
	if (r < 0)
		return r;
	r = sg_endpoints_get(sg_registry_endpoints(c->reg), ref.domain, &eps, &c->xerr);
	if (r < 0)
		return r;
	c->ep = &eps->eps[eps->n - 1];     /* the upstream: always last */
	if (call->target) {
		snprintf(target, sizeof(target), "%s", call->target);
	} else if ((size_t)snprintf(v2, sizeof(v2), "/v2/%s/%s", ref.repo, call->path) >=
			   sizeof(v2) ||
		   sg_endpoint_target(c->ep, eps->ns, v2, target, sizeof(target)) < 0) {
		return sg_error_set(&c->xerr, -ENAMETOOLONG, "%s: request path too long",
				    call->ref);
	}
	bool push = call->method && (!strcmp(call->method, "PUT") || !strcmp(call->method, "POST"));
	struct sg_exchange_request req = {
		.host = c->ep->host,
		.target = target,
		.ep = c->ep,
		.repo = ref.repo,
		.accept = call->accept,
		.head = call->method && !strcmp(call->method, "HEAD"),
		.method = push ? call->method : NULL,
		.body = call->body,
		.body_len = call->body_len,
		.content_type = call->content_type,
		.push_scope = push,
		.body_max = call->body_max,
		.sink = &rcall_sink,
		.sink_data = c,
	};
	r = sg_exchange_start(sg_registry_exchanges(c->reg), &req, &c->x, &c->xerr, &c->xop,
			      on_done);
	if (r < 0)
		return sg_error_set(&c->xerr, r, "%s: %s", call->ref,
				    r == -ECANCELED ? "registry client shut down" : strerror(-r));
	return 0;
}

int sg_registry_call(struct sg_registry *reg, const struct sg_registry_call *call,
		     struct sg_registry_response *ret, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb)
{
	struct rcall *c;
	int r;

	if (!reg || !call || !call->ref || (!call->path == !call->target) || !ret || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (sg_registry_closing(reg))
		return -ECANCELED;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*ret = (struct sg_registry_response){ 0 };
	c->reg = reg;
	sg_registry_hold(reg);
	c->ret = ret;
	c->err = err;
	c->op = op;
	c->cb = cb;
	sg_op_init(&c->xop);
	r = rcall_start(c, call);
	if (r < 0)
		rcall_finish(c, r);
	return 0;
}

void sg_registry_response_done(struct sg_registry_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

int sg_registry_response_verify(const struct sg_registry_response *resp, const char *what,
				const char *digest, uint64_t size, struct sg_error *err)
{
	char got[SG_DIGEST_STRLEN + 1];
	struct sg_digest d;

	if (resp->len != size)
		return sg_error_set(err, -EBADMSG, "%s %s: %zu bytes, the descriptor says %" PRIu64,
				    what, digest, resp->len, size);
	sg_sha256(resp->body, resp->len, &d);
	sg_digest_format(&d, got);
	if (strcmp(got, digest) != 0)
		return sg_error_set(err, -EBADMSG, "%s %s: digest mismatch (the bytes are %s)", what,
				    digest, got);
	return 0;
}
