/* Loading an image's lazy layers while containerd still resolves it.  See pull_ahead.h. */
#include "daemon/pull_ahead.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/log.h"
#include "daemon/remote.h"
#include "net/manifest.h"
#include "net/manifest_fetch.h"
#include "net/reference.h"

struct pull {
	struct sg_remote *remote;
	char image[512];
	struct sg_op op;                 /* the manifest's fetch */
	struct sg_registry_manifest *m;
	struct sg_error err;
	bool fetching;                   /* op in flight */
	bool ended;                      /* sg_pull_ahead_end ran */
	struct sg_remote_hold *hold;
};

static void hold_layers(struct pull *p)
{
	const struct sg_manifest *m = p->m->manifest;
	struct sg_remote_expected *layers = calloc(m->nlayers ? m->nlayers : 1, sizeof(*layers));

	if (!layers)
		return;
	for (size_t i = 0; i < m->nlayers; i++) {
		layers[i].digest = m->layers[i].digest;
		layers[i].toc_digest = m->layers[i].toc_digest;
	}
	int r = sg_remote_hold(p->remote, p->image, p->m->digest, layers, m->nlayers, &p->hold);
	if (r < 0 && r != -ECANCELED)
		sg_info("image %s: not loaded ahead of containerd's Prepare: %s", p->image,
			strerror(-r));
	free(layers);
}

static void on_manifest(struct sg_op *op)
{
	struct pull *p = sg_container_of(op, struct pull, op);

	p->fetching = false;
	/* Said also when the pull ended first (containerd's answer to a refused pull may come
	 * before ours): containerd's own error says what is wrong with the image, this what
	 * the daemon saw. */
	if (op->res < 0 && op->res != -ECANCELED)
		sg_info("image %s: not loaded ahead of containerd's Prepare: its manifest: %s",
			p->image, p->err.msg[0] ? p->err.msg : strerror(-op->res));
	else if (op->res == 0 && !p->ended)
		hold_layers(p);
	sg_registry_manifest_free(p->m);
	p->m = NULL;
	if (p->ended)
		free(p);
}

void *sg_pull_ahead_start(const struct sg_pull_ahead_ctx *ctx, const char *image)
{
	struct sg_ref ref;
	struct pull *p;

	if (!ctx->registry || !ctx->remote || sg_ref_parse(image, &ref, NULL) < 0 ||
	    strlen(image) >= sizeof(p->image))
		return NULL;
	if (ctx->skip_docker_hub && strcmp(ref.domain, SG_DOCKER_HUB_DOMAIN) == 0) {
		sg_debug("image %s: not loaded ahead of containerd (Docker Hub; [cri_keychain] "
			 "load_ahead = \"on\" would)", image);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->remote = ctx->remote;
	memcpy(p->image, image, strlen(image) + 1);
	sg_op_init(&p->op);
	int r = sg_registry_get_manifest(ctx->registry, image, NULL, &p->m, &p->err,
					 &p->op, on_manifest);
	if (r < 0) {
		free(p);
		return NULL;
	}
	p->fetching = true;
	return p;
}

void sg_pull_ahead_end(void *token, bool pulled)
{
	struct pull *p = token;

	if (!p)
		return;
	sg_remote_unhold(p->hold, pulled);
	p->hold = NULL;
	p->ended = true;
	if (!p->fetching)
		free(p);
}
