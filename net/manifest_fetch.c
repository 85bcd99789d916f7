/* Fetching manifests.  See manifest_fetch.h.
 *
 * The fetch object becomes the result: on success it lets go of the registry and is handed
 * to the caller as its struct sg_registry_manifest (the first member). */
#include "net/manifest_fetch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "net/endpoints.h"
#include "net/exchange.h"
#include "net/manifest.h"
#include "net/reference.h"
#include "net/registry_int.h"
#include "net/url.h"

struct mget {
	struct sg_registry_manifest pub;      /* first: the result */
	struct sg_registry *reg;              /* held until the fetch ends */
	const struct sg_endpoint_set *eps;
	struct sg_ref ref;
	char refstr[SG_REF_NAME_MAX * 2 + 8];
	struct sg_platform plat;
	size_t ep;
	bool by_digest;
	char want[SG_REF_DIGEST_MAX + 1];
	char index_digest[SG_REF_DIGEST_MAX + 1];
	char digest[SG_REF_DIGEST_MAX + 1];
	struct sg_manifest *m;
	uint8_t *data;
	size_t len;
	/* the caller's continuation */
	struct sg_registry_manifest **ret;
	struct sg_error *err;
	struct sg_op *op;
	sg_op_cb cb;
	/* the request in flight */
	struct sg_exchange *x;
	struct sg_op xop;
	struct sg_error xerr;
	struct sg_error why;                  /* why it failed (so far) */
};

static void mget_free(struct mget *g)
{
	SG_FREE_CHECK(g->x || sg_op_busy(&g->xop), "manifest fetch");
	if (g->reg)
		sg_registry_release(g->reg);
	sg_manifest_free(g->m);
	free(g->data);
	free(g);
}

void sg_registry_manifest_free(struct sg_registry_manifest *m)
{
	if (m)
		mget_free(sg_container_of(m, struct mget, pub));
}

/* The fetch ends: the result (the registry let go), or the error (g freed).  fmt NULL keeps
 * the message there is. */
static void mget_finish(struct mget *g, int res, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void mget_finish(struct mget *g, int res, const char *fmt, ...)
{
	struct sg_loop *loop = sg_registry_loop(g->reg);
	struct sg_op *op = g->op;
	sg_op_cb cb = g->cb;

	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(g->why.msg, sizeof(g->why.msg), fmt, ap);
		va_end(ap);
	}
	if (res < 0) {
		sg_error_set(g->err, res, "%s", g->why.msg);
		mget_free(g);
	} else {
		g->pub = (struct sg_registry_manifest){
			.ref = g->refstr,
			.digest = g->digest,
			.index_digest = g->index_digest[0] ? g->index_digest : NULL,
			.media_type = g->m->media_type,
			.data = g->data,
			.len = g->len,
			.manifest = g->m,
		};
		sg_registry_release(g->reg);
		g->reg = NULL;
		*g->ret = &g->pub;
	}
	/* Cannot fail: the caller's op was idle when the fetch was accepted and is ours until
	 * this post, and posts are accepted while the loop drains. */
	(void)sg_post(loop, op, res, cb);
}

static void mget_next(struct mget *g);

/* An index: on to the image manifest for the platform (same endpoint first). */
static void mget_index(struct mget *g, struct sg_manifest *m)
{
	struct sg_error perr = { 0 };
	int r;

	if (g->index_digest[0]) {
		sg_manifest_free(m);
		mget_finish(g, -EBADMSG, "%s: an index points at another index", g->refstr);
		return;
	}
	r = sg_manifest_select(m, &g->plat, &perr);
	if (r < 0) {
		sg_manifest_free(m);
		mget_finish(g, r, "%s: %s (platform %s/%s%s%s)", g->refstr,
			    perr.msg[0] ? perr.msg : strerror(-r), g->plat.os, g->plat.arch,
			    g->plat.variant[0] ? "/" : "", g->plat.variant);
		return;
	}
	snprintf(g->index_digest, sizeof(g->index_digest), "%s", g->digest);
	snprintf(g->want, sizeof(g->want), "%s", m->manifests[r].digest);
	sg_manifest_free(m);
	g->by_digest = true;
	mget_next(g);
}

/* A manifest arrived: verified against the digest asked for, parsed, and either the answer
 * or an index to select from. */
static void mget_got(struct mget *g, struct sg_exchange *x)
{
	struct sg_error perr = { 0 };
	struct sg_manifest *m = NULL;
	struct sg_digest d;
	size_t len;
	const uint8_t *body = sg_exchange_body(x, &len);
	int r;

	sg_sha256(body, len, &d);
	sg_digest_format(&d, g->digest);
	if (g->want[0] && strcmp(g->want, g->digest) != 0) {
		if (!strncmp(g->want, "sha256:", 7)) {
			mget_finish(g, -EBADMSG, "%s: manifest digest mismatch: wanted %s, got %s",
				    g->refstr, g->want, g->digest);
			return;
		}
		mget_finish(g, -ENOTSUP, "%s: cannot verify digest %s", g->refstr, g->want);
		return;
	}
	r = sg_manifest_parse((const char *)body, len, sg_exchange_content_type(x), &m, &perr);
	if (r < 0) {
		mget_finish(g, r, "%s: manifest %s: %s", g->refstr, g->digest,
			    perr.msg[0] ? perr.msg : strerror(-r));
		return;
	}
	if (m->kind == SG_MANIFEST_INDEX) {
		mget_index(g, m);
		return;
	}
	g->m = m;
	g->data = sg_exchange_take_body(x, &g->len);
	mget_finish(g, 0, NULL);
}

static void on_fetched(struct sg_op *op)
{
	struct mget *g = sg_container_of(op, struct mget, xop);
	struct sg_exchange *x = g->x;

	g->x = NULL;
	if (op->res < 0) {
		g->why = g->xerr;
		sg_exchange_free(x);
		if (op->res != -ECANCELED && g->ep + 1 < g->eps->n) {
			g->ep++;
			mget_next(g);
			return;
		}
		mget_finish(g, op->res, NULL);
		return;
	}
	mget_got(g, x);
	sg_exchange_free(x);
}

static const struct sg_exchange_sink mget_sink = { 0 };

static void mget_next(struct mget *g)
{
	unsigned cap = g->by_digest ? SG_HOST_CAP_PULL : SG_HOST_CAP_RESOLVE;
	char v2[SG_REF_NAME_MAX * 2 + 64], target[SG_URL_TARGET_MAX];
	struct sg_ref r = g->ref;
	const struct sg_endpoint *ep;
	struct sg_exchange_request req = {
		.target = target,
		.repo = g->ref.repo,
		.accept = SG_MANIFEST_ACCEPT,
		.body_max = SG_MANIFEST_MAX,
		.sink = &mget_sink,
	};
	int res;

	while (g->ep < g->eps->n && !sg_endpoint_usable(&g->eps->eps[g->ep], cap))
		g->ep++;
	if (g->ep >= g->eps->n) {
		mget_finish(g, -ENOENT, "%s: no endpoint can resolve it", g->refstr);
		return;
	}
	ep = &g->eps->eps[g->ep];
	if (g->want[0])
		snprintf(r.digest, sizeof(r.digest), "%s", g->want);
	if (sg_ref_manifest_path(&r, v2, sizeof(v2)) < 0 ||
	    sg_endpoint_target(ep, g->eps->ns, v2, target, sizeof(target)) < 0) {
		mget_finish(g, -ENAMETOOLONG, "%s: reference too long", g->refstr);
		return;
	}
	req.host = ep->host;
	req.ep = ep;
	req.single_attempt = ep->mirror;
	g->xerr = (struct sg_error){ 0 };
	res = sg_exchange_start(sg_registry_exchanges(g->reg), &req, &g->x, &g->xerr, &g->xop,
				on_fetched);
	if (res < 0) {
		res = sg_registry_closing(g->reg) ? -ECANCELED : -ENOMEM;
		mget_finish(g, res, "%s: %s", g->refstr,
			    res == -ECANCELED ? "registry client shut down" : "out of memory");
	}
}

/* The reference, the platform and the endpoints.  Returns 0, or a negative errno with the
 * message in g->why. */
static int mget_prepare(struct mget *g, const char *ref, const char *platform)
{
	struct sg_error perr = { 0 };
	int r;

	r = sg_ref_parse(ref, &g->ref, &perr);
	if (r < 0) {
		return sg_error_set(&g->why, r, "bad image reference \"%.200s\": %s", ref,
				    perr.msg);
	}
	sg_ref_format(&g->ref, g->refstr, sizeof(g->refstr));
	if (sg_platform_parse(platform ? platform : "linux/amd64", &g->plat) < 0) {
		return sg_error_set(&g->why, -EINVAL, "bad platform \"%.100s\"", platform);
	}
	if (g->ref.digest[0]) {
		snprintf(g->want, sizeof(g->want), "%s", g->ref.digest);
		g->by_digest = true;
	}
	return sg_endpoints_get(sg_registry_endpoints(g->reg), g->ref.domain, &g->eps, &g->why);
}

int sg_registry_get_manifest(struct sg_registry *reg, const char *ref, const char *platform,
			     struct sg_registry_manifest **ret_manifest, struct sg_error *err,
			     struct sg_op *op, sg_op_cb cb)
{
	struct mget *g;
	int r;

	if (!reg || !ref || !ret_manifest || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (sg_registry_closing(reg))
		return -ECANCELED;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->reg = reg;
	sg_registry_hold(reg);
	g->ret = ret_manifest;
	g->err = err;
	g->op = op;
	g->cb = cb;
	sg_op_init(&g->xop);
	r = mget_prepare(g, ref, platform);
	if (r < 0) {
		mget_finish(g, r, NULL);
		return 0;
	}
	mget_next(g);
	return 0;
}
