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
#include "fs/cache.h"
#include "fs/estargz.h"
#include "fs/gz.h"
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
	uint64_t prefetch_bytes;
	struct sg_range_source *src;
	struct sg_esgz_open *open_req;
	struct sg_layer *layer;
	struct sg_lazyfs *fs;
	sg_remote_cb cb;        /* mount, then unmount completion */
	void *userdata;
	struct sg_list wait_link;   /* on a tail_prefetch */
	char ref[512];
	struct sg_op defer_op;
	struct tail_prefetch *deferred_tp;
};

/* The blob and the tail of a layer that containerd will ask for next: fetched ahead, in
 * parallel, as soon as an earlier layer of the same image arrives, so that each layer's
 * Prepare finds its TOC (usually inside the tail) already here. */
enum tp_state { TP_OPENING, TP_READING, TP_READY, TP_FAILED };
#define MAX_PREFETCHES 64
/* Memory for verified chunks not read yet (read-ahead, prefetch), shared by all layers: each
 * layer may hold up to 32 MiB, the daemon up to this.  Two busy layers (a build's base and
 * toolchain) get what 32 MiB each gave them; idle layers lose theirs first. */
#define MEM_BUDGET (64u << 20)

struct tail_prefetch {
	struct sg_remote *r;
	struct sg_list link;
	char digest[SG_DIGEST_STRLEN + 1];
	enum tp_state state;
	struct sg_range_source *src;
	uint8_t *tail;
	size_t tail_len;
	struct sg_op op;
	struct sg_list waiters;   /* struct rlayer, via wait_link */
	uint64_t started_ns;
};

struct sg_remote {
	struct sg_loop *loop;
	struct sg_remote_config cfg;
	char cache_root[PATH_MAX];
	struct sg_blob_opener opener;
	struct sg_list layers;
	struct sg_list prefetches;    /* struct tail_prefetch */
	unsigned tp_inflight;         /* prefetches with a callback still to come */
	bool freed;                   /* sg_remote_free ran; the last callback frees */
	struct sg_gz *gz;
	struct sg_cache *cache;       /* the bound shared by every layer's cache directory */
	struct sg_mem_budget *mem;    /* the memory shared by every layer's chunk memory cache */
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
	ret->layers = label(labels, n, SG_LABEL_LAYERS);
	if (!ret->layers || !*ret->layers)
		ret->layers = label(labels, n, SG_LABEL_CRI_LAYERS);
	const char *pf = label(labels, n, SG_LABEL_PREFETCH);
	ret->prefetch_bytes = 0;
	if (pf && *pf) {
		char *end;
		unsigned long long v = strtoull(pf, &end, 10);
		if (*end == '\0' && v <= (1ull << 32))
			ret->prefetch_bytes = v;
	}
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
	sg_list_init(&r->prefetches);
	e = sg_gz_new(&r->gz);
	if (e < 0) {
		free(r);
		return e;
	}
	e = sg_mkdir_p(r->cache_root, 0700);
	if (e == 0)
		e = sg_mem_budget_new(MEM_BUDGET, &r->mem);
	if (e == 0)
		e = sg_cache_new(loop, r->cache_root, config->cache_max_bytes, &r->cache);
	if (e < 0) {
		sg_mem_budget_free(r->mem);
		sg_gz_free(r->gz);
		free(r);
		return e;
	}
	struct sg_cache_stats cs;
	sg_cache_stats(r->cache, &cs);
	sg_info("cache %s: %llu MiB in %u directories of layers not mounted; bound %llu MiB",
		r->cache_root, (unsigned long long)(cs.bytes >> 20), cs.idle_dirs,
		(unsigned long long)(cs.max_bytes >> 20));
	*ret = r;
	return 0;
}

static void tp_free(struct tail_prefetch *tp)
{
	if (tp->link.next)
		sg_list_unlink(&tp->link);
	sg_range_source_free(tp->src);
	free(tp->tail);
	free(tp);
}

void sg_remote_free(struct sg_remote *r)
{
	struct sg_list *n;

	if (!r)
		return;
	r->freed = true;
	if (r->tp_inflight)
		return;   /* the last prefetch callback finishes the job */
	while ((n = sg_list_pop(&r->prefetches)))
		tp_free(sg_container_of(n, struct tail_prefetch, link));
	sg_cache_free(r->cache);
	sg_mem_budget_free(r->mem);
	sg_gz_free(r->gz);
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

static void on_bad_chunk(void *userdata, const char *path, uint64_t file_offset, bool from_cache)
{
	struct rlayer *rl = userdata;

	if (from_cache)
		sg_warn("layer %s: cached chunk of %s at offset %llu failed verification; fetching it "
			"again", rl->digest, path, (unsigned long long)file_offset);
	else
		sg_error("layer %s: chunk of %s at offset %llu failed verification (corrupt or "
			 "tampered blob); reads of it fail with EIO", rl->digest, path,
			 (unsigned long long)file_offset);
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
		.prefetch_bytes = rl->prefetch_bytes,
		.window_bytes = r->cfg.fetch_window,
		.on_bad_chunk = on_bad_chunk,
		.userdata = rl,
		.cache = r->cache,
		.mem_budget = r->mem,
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
	struct sg_lazyfs_options fs_opts = { .no_passthrough = r->cfg.no_passthrough };
	res = sg_lazyfs_mount(r->loop, rl->layer, rl->mountpoint, &fs_opts, &rl->fs, msg, sizeof(msg));
	if (res < 0) {
		sg_layer_free(rl->layer);   /* nothing in flight yet but prefetch: close below */
		rl->layer = NULL;
		mount_finished(rl, res, msg);
		return;
	}
	rl->state = RL_MOUNTED;
	mount_finished(rl, 0, NULL);
}

static void on_toc(void *userdata, int res, struct sg_toc *toc, const struct sg_esgz_error *err);

/* Loads the TOC from an already fetched tail when it lies inside it.  True if it did (and
 * on_toc ran). */
static bool toc_from_tail(struct rlayer *rl, const uint8_t *tail, size_t tail_len)
{
	struct sg_remote *r = rl->r;
	struct sg_esgz_options opts = { 0 };
	struct sg_esgz_footer footer;
	struct sg_esgz_error err;
	struct sg_toc *toc = NULL;
	uint64_t size = rl->src->size, tail_off = size - tail_len;

	if (sg_esgz_parse_footer(tail, tail_len, size, &footer, &err) < 0 || footer.toc_offset < tail_off)
		return false;   /* no footer here, or a TOC larger than the tail: the normal path */
	opts.toc_digest = rl->has_toc_digest ? &rl->toc_digest : NULL;
	opts.skip_verify = rl->skip_verify;
	opts.keep_json = true;   /* stargz.index.json: sg_layer_new stores it */
	const uint8_t *member = tail + (footer.toc_offset - tail_off);
	size_t member_len = (size_t)(footer.toc_end - footer.toc_offset);
	rl->state = RL_LOADING_TOC;
	/* On a helper thread: a big TOC would hold up every other mount for a few 100 ms. */
	if (sg_esgz_load_toc_member_async(r->loop, member, member_len, &footer, &opts, on_toc,
					  rl) == 0)
		return true;
	int res = sg_esgz_load_toc_member(r->gz, member, member_len, &footer, &opts, &toc, &err);
	on_toc(rl, res, toc, res < 0 ? &err : NULL);
	return true;
}

static void on_blob_opened(void *userdata, int res, struct sg_range_source *src, const char *err)
{
	struct rlayer *rl = userdata;
	struct sg_esgz_options opts = { 0 };
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
	opts.keep_json = true;   /* stargz.index.json: sg_layer_new stores it */
	res = sg_esgz_open(src, &opts, on_toc, rl, &rl->open_req);
	if (res < 0) {
		snprintf(msg, sizeof(msg), "layer %s: cannot read its TOC: %s", rl->digest,
			 strerror(-res));
		mount_finished(rl, res, msg);
	}
}

static struct tail_prefetch *tp_find(struct sg_remote *r, const char *digest)
{
	for (struct sg_list *n = r->prefetches.next; n != &r->prefetches; n = n->next) {
		struct tail_prefetch *tp = sg_container_of(n, struct tail_prefetch, link);
		if (strcmp(tp->digest, digest) == 0)
			return tp;
	}
	return NULL;
}

/* Hands a prefetched blob to the layers waiting for it; a layer that finds no usable
 * prefetch goes the normal way. */
static void tp_serve(struct tail_prefetch *tp)
{
	struct sg_remote *r = tp->r;
	struct sg_list *n;

	while ((n = sg_list_pop(&tp->waiters))) {
		struct rlayer *rl = sg_container_of(n, struct rlayer, wait_link);
		if (rl->cancelled) {
			mount_finished(rl, -ECANCELED, "cancelled");
			continue;
		}
		if (tp->state == TP_READY && tp->src) {
			struct sg_range_source *src = tp->src;
			tp->src = NULL;
			rl->src = src;
			if (toc_from_tail(rl, tp->tail, tp->tail_len))
				continue;
			rl->src = NULL;
			on_blob_opened(rl, 0, src, NULL);   /* TOC beyond the tail: read it */
			continue;
		}
		int res = r->opener.open(r->opener.ctx, rl->ref, rl->digest, on_blob_opened, rl);
		if (res < 0)
			mount_finished(rl, res, "cannot start fetching the layer");
	}
}

static void tp_release(struct tail_prefetch *tp)
{
	struct sg_remote *r = tp->r;

	r->tp_inflight--;
	if (r->freed) {
		tp_free(tp);
		if (r->tp_inflight == 0)
			sg_remote_free(r);
		return;
	}
	tp->state = tp->state == TP_READING ? TP_FAILED : tp->state;
	if (!sg_list_empty(&tp->waiters)) {
		tp_serve(tp);
		tp_free(tp);
	}
	/* else kept until the layer's Prepare comes (bounded by MAX_PREFETCHES) */
}

static void tp_read(struct sg_op *op)
{
	struct tail_prefetch *tp = sg_container_of(op, struct tail_prefetch, op);

	tp->state = op->res == (int32_t)tp->tail_len ? TP_READY : TP_FAILED;
	tp_release(tp);
}

static void tp_opened(void *userdata, int res, struct sg_range_source *src, const char *err)
{
	struct tail_prefetch *tp = userdata;

	(void)err;
	if (res < 0 || tp->r->freed) {
		sg_range_source_free(src);
		tp->state = TP_FAILED;
		tp_release(tp);
		return;
	}
	tp->src = src;
	tp->state = TP_READING;
	tp->tail_len = src->size < SG_ESGZ_TAIL_READ ? (size_t)src->size : SG_ESGZ_TAIL_READ;
	tp->tail = malloc(tp->tail_len ? tp->tail_len : 1);
	sg_op_init(&tp->op);
	if (!tp->tail ||
	    sg_range_read(src, src->size - tp->tail_len, tp->tail_len, tp->tail, &tp->op, tp_read) < 0) {
		tp->state = TP_FAILED;
		tp_release(tp);
	}
}

/* Starts fetching ahead the blobs of the layers listed after `self` in `layers`. */
static void prefetch_following(struct sg_remote *r, const char *ref, const char *layers,
			       const char *self)
{
	const char *p = layers;
	bool after = false;

	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char digest[SG_DIGEST_STRLEN + 1];
		struct sg_digest d;
		if (len == SG_DIGEST_STRLEN && sg_digest_parse(p, len, &d) == 0) {
			sg_digest_format(&d, digest);
			if (strcmp(digest, self) == 0) {
				after = true;
			} else if (after && !tp_find(r, digest)) {
				unsigned count = 0;
				for (struct sg_list *n = r->prefetches.next; n != &r->prefetches; n = n->next)
					count++;
				if (count >= MAX_PREFETCHES)
					break;
				struct tail_prefetch *tp = calloc(1, sizeof(*tp));
				if (!tp)
					break;
				tp->r = r;
				memcpy(tp->digest, digest, sizeof(digest));
				tp->state = TP_OPENING;
				sg_list_init(&tp->waiters);
				sg_list_insert_tail(&r->prefetches, &tp->link);
				r->tp_inflight++;
				if (r->opener.open(r->opener.ctx, ref, digest, tp_opened, tp) < 0) {
					r->tp_inflight--;
					tp_free(tp);
				}
			}
		}
		p = comma ? comma + 1 : NULL;
	}
}

static void serve_deferred(struct sg_op *op)
{
	struct rlayer *rl = sg_container_of(op, struct rlayer, defer_op);
	struct tail_prefetch *tp = rl->deferred_tp;

	rl->deferred_tp = NULL;
	tp_serve(tp);
	tp_free(tp);
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
	rl->prefetch_bytes = layer->prefetch_bytes;
	snprintf(rl->ref, sizeof(rl->ref), "%s", layer->ref);
	sg_list_insert_tail(&r->layers, &rl->link);
	if (layer->layers)
		prefetch_following(r, layer->ref, layer->layers, rl->digest);
	struct tail_prefetch *tp = tp_find(r, rl->digest);
	if (tp) {
		/* Fetched ahead (or being fetched): join it.  Served from a posted op so that cb
		 * never runs inside this call. */
		sg_list_insert_tail(&tp->waiters, &rl->wait_link);
		if (tp->state == TP_READY || tp->state == TP_FAILED) {
			sg_list_unlink(&tp->link);
			sg_op_init(&rl->defer_op);
			rl->deferred_tp = tp;
			if (sg_post(r->loop, &rl->defer_op, 0, serve_deferred) < 0) {
				sg_list_unlink(&rl->wait_link);
				sg_list_unlink(&rl->link);
				tp_free(tp);
				free(rl);
				return -ECANCELED;
			}
		}
		return 0;
	}
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

static void log_layer_stats(const struct rlayer *rl, const char *when)
{
	struct sg_layer_stats st;
	struct sg_cache_stats cs;

	struct sg_lazyfs_stats fst = { 0 };
	char pt[160];

	sg_layer_stats(rl->layer, &st);
	sg_cache_stats(rl->r->cache, &cs);
	if (rl->fs)
		sg_lazyfs_stats(rl->fs, &fst);
	if (!fst.passthrough)
		snprintf(pt, sizeof(pt), "passthrough off");
	else
		snprintf(pt, sizeof(pt), "opens: %llu passthrough, %llu through the daemon%s%s",
			 (unsigned long long)fst.passthrough_opens,
			 (unsigned long long)fst.cached_opens,
			 fst.passthrough_error ? "; last backing error: " : "",
			 fst.passthrough_error ? strerror(fst.passthrough_error) : "");
	sg_info("layer %s %s: fetched %llu bytes in %llu requests; chunks %llu/%llu local "
		"(%llu from the blob, %llu from disk, %llu from memory, %llu checked for passthrough); "
		"%llu verification failures; "
		"cache %llu bytes, %llu chunks (%llu bytes) evicted, %llu not cached for lack of room%s; "
		"all layers %llu/%llu bytes, %llu directories removed; %s",
		rl->digest, when, (unsigned long long)st.fetched_bytes,
		(unsigned long long)st.fetch_requests, (unsigned long long)st.chunks_present,
		(unsigned long long)st.chunks_total, (unsigned long long)st.chunks_fetched,
		(unsigned long long)st.chunks_from_disk, (unsigned long long)st.chunks_from_memory,
		(unsigned long long)st.chunks_checked, (unsigned long long)st.verify_failures,
		(unsigned long long)st.cache_bytes,
		(unsigned long long)st.chunks_evicted, (unsigned long long)st.evicted_bytes,
		(unsigned long long)st.cache_writes_skipped,
		st.background_skipped ? "; background fetch skipped (layer larger than the room left)" : "",
		(unsigned long long)cs.bytes, (unsigned long long)cs.max_bytes,
		(unsigned long long)cs.removed_dirs, pt);
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
	log_layer_stats(rl, "unmounted");
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
