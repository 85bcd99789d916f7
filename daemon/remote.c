#include "daemon/remote.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "daemon/core/list.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/process.h"
#include "fs/estargz.h"
#include "fs/layer.h"
#include "fs/lazyfs.h"
#include "fs/range_source.h"

enum rl_state { RL_OPENING, RL_LOADING_TOC, RL_MOUNTED, RL_CLOSING };

struct rlayer {
	struct sg_remote *r;
	struct sg_list link;
	int64_t key;
	enum rl_state state;
	bool cancelled;
	char mountpoint[PATH_MAX];
	char digest[SG_DIGEST_STRLEN + 1];
	struct sg_digest toc_digest;
	bool has_toc_digest, skip_verify;
	struct sg_range_source *src;
	struct sg_esgz_open *open_req;
	struct sg_layer *layer;
	struct sg_lazyfs *fs;
	sg_remote_cb cb;        /* mount, then unmount completion */
	void *userdata;
};

struct sg_remote {
	struct sg_loop *loop;
	struct sg_remote_config cfg;
	char cache_root[PATH_MAX];
	struct sg_blob_opener opener;
	struct sg_list layers;
	void (*shutdown_cb)(void *);
	void *shutdown_userdata;
	unsigned closing;
};

static const char *label(const struct sg_label *labels, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(labels[i].key, key) == 0)
			return labels[i].value;
	return NULL;
}

bool sg_remote_layer_info(const struct sg_label *labels, size_t n, struct sg_remote_layer *ret)
{
	const char *ref = label(labels, n, SG_LABEL_REF);
	const char *digest = label(labels, n, SG_LABEL_DIGEST);
	const char *skip = label(labels, n, SG_LABEL_SKIPVERIFY);

	if (!ref || !*ref)
		ref = label(labels, n, SG_LABEL_CRI_REF);
	if (!digest || !*digest)
		digest = label(labels, n, SG_LABEL_CRI_DIGEST);
	if (!ref || !*ref || !digest || !*digest || !label(labels, n, SG_LABEL_TARGET))
		return false;
	ret->ref = ref;
	ret->digest = digest;
	ret->toc_digest = label(labels, n, SG_LABEL_TOC_DIGEST);
	if (ret->toc_digest && !*ret->toc_digest)
		ret->toc_digest = NULL;
	ret->skip_verify = skip && (strcmp(skip, "true") == 0 || strcmp(skip, "1") == 0);
	return true;
}

int sg_remote_new(struct sg_loop *loop, const struct sg_remote_config *config,
		  const struct sg_blob_opener *opener, struct sg_remote **ret)
{
	struct sg_remote *r = calloc(1, sizeof(*r));
	int e;

	if (!r)
		return -ENOMEM;
	r->loop = loop;
	r->cfg = *config;
	snprintf(r->cache_root, sizeof(r->cache_root), "%s", config->cache_root);
	r->cfg.cache_root = r->cache_root;
	r->opener = *opener;
	sg_list_init(&r->layers);
	e = sg_mkdir_p(r->cache_root, 0700);
	if (e < 0) {
		free(r);
		return e;
	}
	*ret = r;
	return 0;
}

void sg_remote_free(struct sg_remote *r)
{
	free(r);
}

static struct rlayer *find(struct sg_remote *r, int64_t key)
{
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &r->layers) {
		struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		if (rl->key == key)
			return rl;
	}
	return NULL;
}

bool sg_remote_is_mounted(struct sg_remote *r, int64_t key)
{
	struct rlayer *rl = find(r, key);
	return rl && rl->state == RL_MOUNTED;
}

static void rl_destroy(struct rlayer *rl)
{
	struct sg_remote *r = rl->r;

	sg_list_unlink(&rl->link);
	sg_range_source_free(rl->src);
	free(rl);
	if (r->shutdown_cb && sg_list_empty(&r->layers)) {
		void (*cb)(void *) = r->shutdown_cb;
		r->shutdown_cb = NULL;
		cb(r->shutdown_userdata);
	}
}

/* The mount attempt ended (successfully or not). */
static void mount_finished(struct rlayer *rl, int res, const char *err)
{
	sg_remote_cb cb = rl->cb;
	void *ud = rl->userdata;

	rl->cb = NULL;
	if (res < 0)
		rl_destroy(rl);
	if (cb)
		cb(ud, res, err);
}

static void on_toc(void *userdata, int res, struct sg_toc *toc, const struct sg_esgz_error *err)
{
	struct rlayer *rl = userdata;
	struct sg_remote *r = rl->r;
	char cache_dir[PATH_MAX + 80], msg[PATH_MAX + 700];

	rl->open_req = NULL;
	if (res < 0 || rl->cancelled) {
		snprintf(msg, sizeof(msg), "layer %s: %s", rl->digest,
			 rl->cancelled ? "cancelled" : err ? err->msg : strerror(-res));
		sg_toc_free(rl->cancelled ? toc : NULL);
		mount_finished(rl, res < 0 ? res : -ECANCELED, msg);
		return;
	}
	/* One cache directory per layer digest: it outlives snapshots and daemon restarts. */
	snprintf(cache_dir, sizeof(cache_dir), "%s/%s", r->cache_root, rl->digest + 7);
	struct sg_layer_config lc = {
		.cache_dir = cache_dir,
		.skip_verify = rl->skip_verify,
		.prefetch = r->cfg.prefetch,
		.background_fetch = r->cfg.background_fetch,
	};
	struct sg_range_source *src = rl->src;
	rl->src = NULL;   /* the layer owns it now */
	res = sg_layer_new(r->loop, src, toc, &lc, &rl->layer);
	if (res < 0) {
		snprintf(msg, sizeof(msg), "layer %s: cannot set up its cache in %s: %s", rl->digest,
			 cache_dir, strerror(-res));
		mount_finished(rl, res, msg);
		return;
	}
	res = sg_lazyfs_mount(r->loop, rl->layer, rl->mountpoint, &rl->fs, msg, sizeof(msg));
	if (res < 0) {
		sg_layer_free(rl->layer);   /* nothing in flight yet but prefetch: close below */
		rl->layer = NULL;
		mount_finished(rl, res, msg);
		return;
	}
	rl->state = RL_MOUNTED;
	mount_finished(rl, 0, NULL);
}

static void on_blob_opened(void *userdata, int res, struct sg_range_source *src, const char *err)
{
	struct rlayer *rl = userdata;
	struct sg_esgz_options opts = { 0 };
	struct sg_esgz_error eerr;
	char msg[512];

	if (res < 0 || rl->cancelled) {
		sg_range_source_free(src);
		snprintf(msg, sizeof(msg), "layer %s: %s", rl->digest,
			 rl->cancelled ? "cancelled" : err ? err : strerror(-res));
		mount_finished(rl, res < 0 ? res : -ECANCELED, msg);
		return;
	}
	rl->src = src;
	rl->state = RL_LOADING_TOC;
	opts.toc_digest = rl->has_toc_digest ? &rl->toc_digest : NULL;
	opts.skip_verify = rl->skip_verify;
	res = sg_esgz_open(src, &opts, on_toc, rl, &rl->open_req);
	if (res < 0) {
		memset(&eerr, 0, sizeof(eerr));
		snprintf(msg, sizeof(msg), "layer %s: cannot read its TOC: %s", rl->digest,
			 strerror(-res));
		mount_finished(rl, res, msg);
	}
}

int sg_remote_mount(struct sg_remote *r, int64_t key, const char *mountpoint,
		    const struct sg_remote_layer *layer, sg_remote_cb cb, void *userdata)
{
	struct sg_digest d;
	struct rlayer *rl;
	int res;

	if (find(r, key))
		return -EEXIST;
	if (sg_digest_parse(layer->digest, strlen(layer->digest), &d) < 0)
		return -EINVAL;
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return -ENOMEM;
	rl->r = r;
	rl->key = key;
	rl->cb = cb;
	rl->userdata = userdata;
	snprintf(rl->mountpoint, sizeof(rl->mountpoint), "%s", mountpoint);
	sg_digest_format(&d, rl->digest);
	if (layer->toc_digest) {
		if (sg_digest_parse(layer->toc_digest, strlen(layer->toc_digest), &rl->toc_digest) < 0) {
			free(rl);
			return -EINVAL;
		}
		rl->has_toc_digest = true;
	}
	/* Verification is off only when the operator allowed it and the image asked for it;
	 * a layer without a TOC digest is otherwise refused by the reader. */
	rl->skip_verify = r->cfg.allow_skip_verify && (layer->skip_verify || !layer->toc_digest);
	sg_list_insert_tail(&r->layers, &rl->link);
	res = r->opener.open(r->opener.ctx, layer->ref, rl->digest, on_blob_opened, rl);
	if (res < 0) {
		sg_list_unlink(&rl->link);
		free(rl);
	}
	return res;
}

static void unmount_layer_closed(void *userdata)
{
	struct rlayer *rl = userdata;
	sg_remote_cb cb = rl->cb;
	void *ud = rl->userdata;

	sg_layer_free(rl->layer);
	rl->layer = NULL;
	rl_destroy(rl);
	if (cb)
		cb(ud, 0, NULL);
}

static void unmount_fs_done(void *userdata)
{
	struct rlayer *rl = userdata;

	sg_lazyfs_free(rl->fs);
	rl->fs = NULL;
	sg_layer_close(rl->layer, unmount_layer_closed, rl);
}

void sg_remote_unmount(struct sg_remote *r, int64_t key, sg_remote_cb cb, void *userdata)
{
	struct rlayer *rl = find(r, key);

	if (!rl || rl->state == RL_CLOSING) {
		if (cb)
			cb(userdata, rl ? -EALREADY : -ENOENT, NULL);
		return;
	}
	if (rl->state != RL_MOUNTED) {
		/* Still opening: let the attempt end by itself, then report. */
		rl->cancelled = true;
		if (rl->open_req)
			sg_esgz_open_cancel(rl->open_req);
		if (cb)
			cb(userdata, 0, NULL);
		return;
	}
	rl->state = RL_CLOSING;
	rl->cb = cb;
	rl->userdata = userdata;
	sg_lazyfs_unmount(rl->fs, unmount_fs_done, rl);
}

void sg_remote_shutdown(struct sg_remote *r, void (*cb)(void *userdata), void *userdata)
{
	struct sg_list *n, *tmp;

	r->shutdown_cb = cb;
	r->shutdown_userdata = userdata;
	if (sg_list_empty(&r->layers)) {
		r->shutdown_cb = NULL;
		cb(userdata);
		return;
	}
	sg_list_for_each_safe(n, tmp, &r->layers) {
		struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		sg_remote_unmount(r, rl->key, NULL, NULL);
	}
}
