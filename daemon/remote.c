#include "daemon/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "daemon/core/list.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/deferred_source.h"
#include "daemon/early_source.h"
#include "daemon/fdstore.h"
#include "daemon/image_entry.h"
#include "daemon/proc_hint.h"
#include "daemon/process.h"
#include "daemon/prom.h"
#include "fs/cache_bound.h"
#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/layer.h"
#include "fs/memcache.h"
#include "fs/profile.h"
#include "fs/profile_store.h"
#include "fs/lazyfs.h"
#include "daemon/core/range_source.h"

/* A layer's content, shared by every mount of its digest: the loading of its TOC, then one
 * sg_layer (chunk presence, pins, trust, recency, memory and disk cache) for its one cache
 * directory.  Two mounts of a digest never keep two views of one directory. */
enum content_state { C_LOADING, C_READY, C_CLOSING };

/* A content remembers this many other images that use it below a layer of theirs (the
 * newest; each of those has its own mount of its top layers). */
#define CONTENT_IMAGES 8

struct content {
	struct sg_remote *r;
	struct sg_list link;            /* r->contents */
	enum content_state state;
	char digest[SG_DIGEST_STRLEN + 1];
	struct sg_digest toc_digest;
	bool has_toc_digest, skip_verify;
	bool from_disk;                 /* try the cache directory before the registry */
	uint64_t prefetch_bytes;
	char ref[512];                  /* the image of the first mount: the blob comes from there */
	char *images[CONTENT_IMAGES];   /* other images with this layer under one of theirs */
	size_t n_images;
	struct sg_list waiting;         /* struct rlayer (c_link) not mounted yet */
	unsigned mounts;                /* rlayers mounted on layer */
	/* Image pulls that hold it before containerd's Prepare (sg_remote_hold): loaded and
	 * started as if mounted. */
	unsigned holds;
	bool load_inflight;             /* a callback of the load is still to come */
	struct sg_range_source *src;
	struct sg_esgz_open *open_req;
	struct sg_op toc_op;            /* the TOC's load: its results below */
	struct sg_toc *toc;
	struct sg_error toc_err;
	struct sg_layer *layer;
	struct sg_list wait_link;       /* on a tail_prefetch */
	struct sg_op defer_op;
	struct tail_prefetch *deferred_tp;
	struct sg_op close_op;          /* closing its layer */
	struct sg_op open_op;           /* opening the blob */
	bool opening;                   /* ... in flight (content_open_blob to on_blob_opened) */
	struct sg_error open_err;
	struct sg_range_source *opened;
	bool replaying;                 /* its layer was given a startup profile */
	bool replay_fetches;            /* ... with chunks to fetch (its replay's end is told) */
	size_t toc_tail;                /* a profile's tail hint (layer_hints); 0 = none */
	struct sg_early *early;         /* a profile's first chunks, read beside the open */
	struct sg_range_source *early_src;   /* the layer's source when it is an early one */
	/* For the metrics endpoint. */
	uint64_t created_ns;
	uint64_t blob_size;
	struct sg_hist toc_ms;          /* blob open and TOC load (stargz_toc_get) */
	struct sg_hist mount_ms;        /* sg_remote_mount until mounted, per mount */
};

enum rl_state { RL_WAITING, RL_MOUNTED, RL_CLOSING };

/* One mount: a snapshot's FUSE mount of a content's layer. */
struct rlayer {
	struct sg_remote *r;
	struct sg_list link;            /* r->layers */
	int64_t key;
	enum rl_state state;
	char mountpoint[PATH_MAX];
	struct content *c;
	struct sg_list c_link;          /* c->waiting while RL_WAITING */
	struct sg_lazyfs *fs;
	bool lost;                      /* unmounted from outside */
	bool src_opening;               /* its own blob source is being opened */
	bool gone;                      /* released; freed when that open returns */
	char ref[512];
	char state_dir[PATH_MAX];       /* "" = the mount is neither kept nor taken over */
	int adopt_fd;                   /* a held session to take over at attach; -1 = mount */
	bool held;                      /* its descriptor is in the fdstore */
	bool handed_over;               /* detached, not unmounted: the next daemon serves it */
	sg_remote_cb cb;                /* mount, then unmount completion */
	void *userdata;
	struct sg_op attach_op;         /* joining a content that is ready */
	struct sg_op unmount_op;        /* unmounting its FUSE mount */
	struct sg_op src_op;            /* opening its own blob source */
	struct sg_range_source *src;
	uint64_t start_ns;              /* sg_remote_mount */
};

/* The blob and the tail of a layer that containerd will ask for next: fetched ahead, in
 * parallel, as soon as an earlier layer of the same image arrives, so that each layer's
 * Prepare finds its TOC (usually inside the tail) already here. */
enum tp_state { TP_OPENING, TP_READING, TP_READY, TP_FAILED };
#define MAX_PREFETCHES 64
/* A profile's first chunks read beside a layer's TOC, before the TOC places them
 * (daemon/early_source.h): at most this many bytes a layer.  The rest waits for the TOC, and
 * goes out in the order the replays of the image's layers give it (fs/layer_prefetch.c):
 * alternated runs, 3-5 each, default link, esgz + profile medians against none (2026-12-05,
 * the early reads then yielding to the blob's open; the final form, which does not, checked
 * in 2 runs: python 1.03 s (1.02), imports 1.57 (1.64), gcc 2.37 (2.37)):
 * 1 MiB python 0.98 s (0.99), imports 1.57 (1.64), gcc 2.30 (2.36); 512 KiB 0.94 / 1.58 /
 * 2.33; 2 MiB 1.01 / 1.57 / 2.43; 4 MiB (2 runs) 1.07 / 1.66 / 2.47: the more is read
 * before the TOC, the longer the mount waits for it and the later the chunks read first. */
#define EARLY_BYTES ((uint64_t)1 << 20)
/* Layers fetched ahead (their Prepare still to come) that may hold early reads at once: a
 * layer containerd never asks for keeps its prefetch until the daemon stops, and so what was
 * read early for it, 1 MiB each at most. */
#define EARLY_PREFETCHES_MAX 8u
/* A TOC member fetched ahead is at most this large (compressed). */
#define TP_TOC_MAX ((uint64_t)64 << 20)
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
	uint8_t *tail;            /* the blob's last tail_len bytes */
	size_t tail_len;
	size_t head_len;          /* of them, the TOC's head read after the tail (0: none) */
	size_t tail_hint;         /* a profile's (layer_hints); 0 = the default tail */
	struct sg_early *early;   /* a profile's first chunks, read beside the open */
	bool early_counted;       /* in r->early_prefetches */
	struct sg_op op;
	struct sg_list waiters;   /* struct content, via wait_link */
	uint64_t started_ns;
};

/* An image's entry programs (sg_remote_entry_programs), for the layers that become ready
 * after they came. */
#define ENTRIES_KEPT 16
struct image_entry_state {
	char ref[512];
	bool known;                       /* the answer came */
	struct sg_image_entry e;
	bool done[SG_ENTRY_COMMANDS_MAX];  /* a layer has that command's program */
};

/* Images whose profiles were asked for (want_profiles), the newest last.  Asked again on a
 * mount after PROFILE_ASK_AGAIN_NS (sg_remote_config.profile_ask_again_ns), so that a node
 * that found none, or failed to fetch them, picks up profiles pushed since; the oldest is
 * forgotten beyond PROFILES_ASKED_KEPT, so that a node pulling many images over weeks keeps
 * a bounded list. */
#define PROFILES_ASKED_KEPT 64
#define PROFILE_ASK_AGAIN_NS (600ull * 1000000000u)
struct profile_ask {
	char ref[512];
	uint64_t asked_ns;
};

struct sg_remote {
	struct sg_loop *loop;
	struct sg_remote_config cfg;
	char cache_root[PATH_MAX];
	struct sg_blob_opener opener;
	struct sg_list layers;        /* struct rlayer: the mounts */
	struct sg_list contents;      /* struct content: one per layer digest in use */
	struct sg_list holds;         /* struct sg_remote_hold: image pulls in progress */
	void (*on_lost)(void *userdata, int64_t key);
	void *on_lost_userdata;
	struct sg_list prefetches;    /* struct tail_prefetch */
	unsigned tp_inflight;         /* prefetches with a callback still to come */
	unsigned early_prefetches;    /* prefetches that started early reads (EARLY_PREFETCHES_MAX) */
	bool freed;                   /* sg_remote_free ran; the last callback frees */
	struct sg_gz *gz;
	struct sg_cache_bound *cache; /* the bound shared by every layer's cache directory */
	struct sg_mem_budget *mem;    /* the memory shared by every layer's chunk memory cache */
	void (*shutdown_cb)(void *);
	void *shutdown_userdata;
	unsigned rl_gone;             /* mounts released, waiting for their source's open */
	bool handover;                /* shutting down with keep_mounts */
	bool stopping;                /* sg_remote_shutdown ran: no new holds */
	uint64_t loaded_ahead;        /* contents a hold created (metrics) */
	uint64_t joined_ahead;        /* Prepares that found a held content no mount had */
	char profile_root[PATH_MAX];  /* cfg.profile_root's copy; "" = off */
	struct profile_ask profiles_asked[PROFILES_ASKED_KEPT];
	size_t n_profiles_asked;
	/* images whose entry programs were asked for (want_entry), the newest last */
	struct image_entry_state *entries[ENTRIES_KEPT];
	size_t n_entries;
	struct sg_proc_hints *hints;  /* readers' command lines (NULL: process_hints off) */
};

#define DEFAULT_HANDOVER_GRACE_NS (2ull * 1000000000u)
#define RESTORE_FILE "layer.restore"

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
	*ret = (struct sg_remote_layer){ 0 };   /* state_dir, from_disk: the caller's to set */
	ret->ref = ref;
	ret->digest = digest;
	ret->toc_digest = label(labels, n, SG_LABEL_TOC_DIGEST);
	if (ret->toc_digest && !*ret->toc_digest)
		ret->toc_digest = NULL;
	ret->skip_verify = skip && (strcmp(skip, "true") == 0 || strcmp(skip, "1") == 0);
	ret->layers = label(labels, n, SG_LABEL_LAYERS);
	if (!ret->layers || !*ret->layers)
		ret->layers = label(labels, n, SG_LABEL_CRI_LAYERS);
	ret->manifest_digest = label(labels, n, SG_LABEL_CRI_MANIFEST);
	if (ret->manifest_digest && !*ret->manifest_digest)
		ret->manifest_digest = NULL;
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

static void hint_paths(void *userdata, const char *const *refs, size_t n_refs,
		       const char *const *paths, size_t n_paths);

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
	if (config->profile_root)
		snprintf(r->profile_root, sizeof(r->profile_root), "%s", config->profile_root);
	r->cfg.cache_root = r->cache_root;
	r->opener = *opener;
	sg_list_init(&r->layers);
	sg_list_init(&r->contents);
	sg_list_init(&r->holds);
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
		e = sg_cache_bound_new(loop, r->cache_root, config->cache_max_bytes, &r->cache);
	if (e == 0 && config->process_hints && config->speculate)
		e = sg_proc_hints_new(loop, hint_paths, r, &r->hints);
	if (e < 0) {
		sg_cache_bound_free(r->cache);
		sg_mem_budget_free(r->mem);
		sg_gz_free(r->gz);
		free(r);
		return e;
	}
	struct sg_cache_bound_stats cs;
	sg_cache_bound_stats(r->cache, &cs);
	sg_info("cache %s: %llu MiB in %u directories of layers not mounted; bound %llu MiB",
		r->cache_root, (unsigned long long)(cs.bytes >> 20), cs.idle_dirs,
		(unsigned long long)(cs.max_bytes >> 20));
	*ret = r;
	return 0;
}

static void tp_free(struct tail_prefetch *tp)
{
	if (tp->early_counted)
		tp->r->early_prefetches--;
	sg_early_abandon(tp->early);
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
	SG_FREE_CHECK(!sg_list_empty(&r->layers) || !sg_list_empty(&r->contents) || r->rl_gone ||
		      !sg_list_empty(&r->holds),
		      "remote layers (free before shutdown ended)");
	for (size_t i = 0; i < r->n_entries; i++)
		free(r->entries[i]);
	r->n_entries = 0;
	sg_proc_hints_free(r->hints);   /* reads on their threads end without asking */
	r->hints = NULL;
	r->freed = true;
	if (r->tp_inflight)
		return;   /* the last prefetch callback finishes the job */
	while ((n = sg_list_pop(&r->prefetches)))
		tp_free(sg_container_of(n, struct tail_prefetch, link));
	sg_cache_bound_free(r->cache);
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
	return rl && rl->state == RL_MOUNTED;   /* a lost mount is closing already */
}

void sg_remote_set_lost_handler(struct sg_remote *r, void (*cb)(void *userdata, int64_t key),
				void *userdata)
{
	r->on_lost = cb;
	r->on_lost_userdata = userdata;
}

static void maybe_shutdown_done(struct sg_remote *r)
{
	if (r->shutdown_cb && sg_list_empty(&r->layers) && sg_list_empty(&r->contents) &&
	    !r->rl_gone) {
		void (*cb)(void *) = r->shutdown_cb;
		r->shutdown_cb = NULL;
		cb(r->shutdown_userdata);
	}
}

void sg_remote_held_name(int64_t key, char *buf, size_t len)
{
	snprintf(buf, len, "sg.%" PRId64, key);
}

/* The mount's descriptor leaves the fdstore (unmounted, or a takeover failed); detach:
 * also take the mountpoint away (a held session nobody serves would hang its readers). */
static void release_held(struct rlayer *rl, bool detach)
{
	struct sg_error err = { 0 };
	char name[64];

	if (detach)
		(void)umount2(rl->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
	if (!rl->r->cfg.fdstore || !rl->state_dir[0])
		return;
	sg_remote_held_name(rl->key, name, sizeof(name));
	if (sg_fdstore_remove(rl->r->cfg.fdstore, name, &err) < 0)
		sg_warn("%s", err.msg);
	rl->held = false;
}

static void rl_destroy(struct rlayer *rl)
{
	struct sg_remote *r = rl->r;

	SG_FREE_CHECK(rl->fs || sg_op_busy(&rl->attach_op), "remote layer mount");
	if (rl->adopt_fd >= 0) {
		/* A held session that was never taken over: in a handover it stays held for the
		 * next daemon; otherwise it is ended, or its mount would hang readers forever. */
		close(rl->adopt_fd);
		rl->adopt_fd = -1;
		if (!r->handover)
			release_held(rl, true);
	}
	sg_list_unlink(&rl->c_link);
	sg_list_unlink(&rl->link);
	if (rl->src_opening) {
		/* The open's callback still points at it: it frees it. */
		rl->gone = true;
		r->rl_gone++;
		return;
	}
	free(rl);
	maybe_shutdown_done(r);
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

/* ---- contents ---- */

static struct content *content_find(struct sg_remote *r, const char *digest)
{
	for (struct sg_list *n = r->contents.next; n != &r->contents; n = n->next) {
		struct content *c = sg_container_of(n, struct content, link);
		if (strcmp(c->digest, digest) == 0)
			return c;
	}
	return NULL;
}

/* Removes element i of the n elements of `size` bytes at base (the lists of the newest
 * few below: a repeat moves to the end, the oldest goes when full). */
static void drop_at(void *base, size_t *n, size_t i, size_t size)
{
	char *b = base;

	memmove(b + i * size, b + (i + 1) * size, (*n - i - 1) * size);
	(*n)--;
}

/* Whether image `ref` uses content c: the image of its first mount, of any mount since, or
 * one that has it below a layer of its own (containerd mounts a chain of layers once, for
 * the first image that has it).  A layer shared by two images is one content, and what
 * either image learns about it (its profile, its entry programs) is for that content,
 * whichever image mounted it first. */
static bool content_serves(struct sg_remote *r, const struct content *c, const char *ref)
{
	if (strcmp(c->ref, ref) == 0)
		return true;
	for (size_t i = 0; i < c->n_images; i++)
		if (strcmp(c->images[i], ref) == 0)
			return true;
	for (struct sg_list *n = r->layers.next; n != &r->layers; n = n->next) {
		const struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		if (rl->c == c && strcmp(rl->ref, ref) == 0)
			return true;
	}
	return false;
}

static void content_start_load(struct content *c);

/* Image `ref` has content c below a layer of its own. */
static void content_add_image(struct sg_remote *r, struct content *c, const char *ref)
{
	if (content_serves(r, c, ref))
		return;
	if (c->n_images == CONTENT_IMAGES) {   /* the oldest goes */
		free(c->images[0]);
		drop_at(c->images, &c->n_images, 0, sizeof(c->images[0]));
	}
	char *copy = strdup(ref);
	if (copy)   /* a hint: without it the image's profile skips this layer */
		c->images[c->n_images++] = copy;
}

/* The mounts under `layer` in its image (containerd's parent chain): their contents are used
 * by its image too. */
static void note_layers_below(struct sg_remote *r, const struct sg_remote_layer *layer)
{
	for (size_t i = 0; i < layer->n_below; i++) {
		struct rlayer *below = find(r, layer->below[i]);
		if (below && below->c)
			content_add_image(r, below->c, layer->ref);
	}
}

/* Someone wants the content loaded: a mount waiting for it, or a pull holding it. */
static bool content_wanted(const struct content *c)
{
	return !sg_list_empty(&c->waiting) || c->holds;
}

static void hold_forget(struct content *c);

/* The content is gone: its load given up or its layer freed, nobody waiting for it. */
static void content_destroy(struct content *c)
{
	struct sg_remote *r = c->r;

	SG_FREE_CHECK(c->layer || c->load_inflight || c->mounts || sg_op_busy(&c->defer_op) ||
		      !sg_list_empty(&c->waiting), "layer content");
	hold_forget(c);   /* a failed load of a held content */
	SG_FREE_CHECK(c->holds, "held layer content");
	sg_list_unlink(&c->link);
	sg_list_unlink(&c->wait_link);
	sg_range_source_free(c->src);
	for (size_t i = 0; i < c->n_images; i++)
		free(c->images[i]);
	free(c);
	maybe_shutdown_done(r);
}

static void content_layer_closed(struct sg_op *op)
{
	struct content *c = sg_container_of(op, struct content, close_op);

	sg_layer_free(c->layer);
	c->early_src = NULL;   /* went with the layer */
	c->layer = NULL;
	if (!content_wanted(c)) {
		content_destroy(c);
		return;
	}
	/* Mounts arrived while it was closing (the digests were checked when they joined):
	 * the same content, loaded anew. */
	c->state = C_LOADING;
	c->replaying = c->replay_fetches = false;
	content_start_load(c);
}

/* Nobody uses the ready content's layer any more: it closes (what it started completes
 * first), then content_layer_closed frees the content or loads it anew. */
static void content_close(struct content *c)
{
	c->state = C_CLOSING;
	(void)sg_layer_close(c->layer, &c->close_op, content_layer_closed);   /* idle: ours */
}

/* The content's last user (a mount still loading, a pull's hold) went: a ready layer nobody
 * mounts closes, a load waiting for its TOC is given up (one still opening its blob ends by
 * itself when the open answers: content_blob_opened finds it unwanted). */
static void content_let_go(struct content *c)
{
	if (content_wanted(c))
		return;
	if (c->state == C_READY && c->mounts == 0)
		content_close(c);
	else if (c->state == C_LOADING && c->open_req)
		sg_esgz_open_cancel(c->open_req);
}

/* A mount of the content went: the last one closes the layer, unless a pull holds it. */
static void content_put(struct content *c)
{
	if (--c->mounts > 0 || c->holds)
		return;
	content_close(c);
}

/* The load failed or was given up: every mount that waited for it ends with its error. */
static void content_fail(struct content *c, int res, const char *msg)
{
	struct sg_list *n;

	if (c->holds && sg_list_empty(&c->waiting))   /* nobody else hears of it */
		sg_info("%s (loading it ahead of containerd's Prepare; its Prepare tries again)",
			msg);
	while ((n = sg_list_pop(&c->waiting)))
		mount_finished(sg_container_of(n, struct rlayer, c_link), res, msg);
	content_destroy(c);
}

static void on_bad_chunk(void *userdata, const char *path, uint64_t file_offset, bool from_cache)
{
	struct content *c = userdata;

	if (from_cache)
		sg_warn("layer %s: cached chunk of %s at offset %llu failed verification; fetching it "
			"again", c->digest, path, (unsigned long long)file_offset);
	else
		sg_error("layer %s: chunk of %s at offset %llu failed verification (corrupt or "
			 "tampered blob); reads of it fail with EIO", c->digest, path,
			 (unsigned long long)file_offset);
}

/* ---- Speculation across an image's layers ---- */

/* Is rl a mount of image `ref` whose layer is ready to fetch ahead? */
static bool image_layer_ready(const struct rlayer *rl, const char *ref)
{
	return rl->state == RL_MOUNTED && strcmp(rl->ref, ref) == 0 && rl->c->state == C_READY &&
	       rl->c->layer;
}

/* Asks the layers of image `ref` other than c's, top-most first (containerd prepares a
 * chain from its base up, so later mounts are higher), until one has `path`. */
static void ask_image_layers(struct sg_remote *r, const struct content *c, const char *ref,
			     const char *path)
{
	for (struct sg_list *n = r->layers.prev; n != &r->layers; n = n->prev) {
		struct rlayer *other = sg_container_of(n, struct rlayer, link);
		if (other->c == c || !image_layer_ready(other, ref))
			continue;
		if (sg_layer_speculate_path(other->c->layer, path) == 0)
			return;   /* the top-most copy is the one overlayfs shows */
	}
}

/* An ELF file in use in c's layer needs a file that layer does not have (its program is in
 * an upper layer, its libraries and loader in the base): each image c is mounted for asks
 * its other layers to fetch it ahead (fs/layer.h, on_needed_elsewhere). */
static void on_needed_elsewhere(void *userdata, const char *path)
{
	struct content *c = userdata;
	struct sg_remote *r = c->r;

	for (struct sg_list *n = r->layers.next; n != &r->layers; n = n->next) {
		struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		if (rl->c != c || rl->state != RL_MOUNTED)
			continue;
		bool asked = false;   /* a ref mounted twice (two snapshots of one image): once */
		for (struct sg_list *m = r->layers.next; m != n && !asked; m = m->next) {
			struct rlayer *before = sg_container_of(m, struct rlayer, link);
			asked = before->c == c && before->state == RL_MOUNTED &&
				strcmp(before->ref, rl->ref) == 0;
		}
		if (!asked)
			ask_image_layers(r, c, rl->ref, path);
	}
}

/* What was read of the profile's first chunks before the TOC came is not wanted any more
 * (its replay is over, or there is none): said, and let go. */
static void early_done(struct content *c)
{
	struct sg_early_stats st;

	if (!c->early_src)
		return;
	sg_early_source_stats(c->early_src, &st);
	sg_info("layer %s: %llu bytes of its startup profile were read beside its TOC in %u "
		"request(s), %llu of them arrived, %llu used", c->digest,
		(unsigned long long)st.asked, st.requests, (unsigned long long)st.arrived,
		(unsigned long long)st.used);
	sg_early_source_drop(c->early_src);
	c->early_src = NULL;   /* the layer's source still; nothing more to do with it here */
}

static void on_replay_over(void *userdata)
{
	early_done(userdata);
}

/* A process reads the start of a file of c's layer: what its command line names (a
 * Python program's imports, a compiler's headers) is asked of the images c is mounted for
 * (daemon/proc_hint.h). */
static void on_reader(void *userdata, uint32_t pid)
{
	struct content *c = userdata;
	struct sg_remote *r = c->r;
	const char *refs[4];
	size_t n = 0;

	if (!r->hints || !sg_proc_hints_due(r->hints, pid))
		return;   /* before the walk over the mounts: a tar reads many files' starts */
	for (struct sg_list *l = r->layers.next; l != &r->layers && n < 4; l = l->next) {
		struct rlayer *rl = sg_container_of(l, struct rlayer, link);
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup |= strcmp(refs[i], rl->ref) == 0;
		if (rl->c == c && rl->state == RL_MOUNTED && !dup)
			refs[n++] = rl->ref;
	}
	sg_proc_hints_reader(r->hints, pid, refs, n);
}

static void hint_paths(void *userdata, const char *const *refs, size_t n_refs,
		       const char *const *paths, size_t n_paths)
{
	struct sg_remote *r = userdata;
	bool *found = calloc(n_paths, sizeof(*found));

	if (!found)
		return;
	for (size_t i = 0; i < n_refs; i++) {
		memset(found, 0, n_paths * sizeof(*found));
		/* Top-most first: the copy overlayfs shows is the one a layer finds first. */
		for (struct sg_list *n = r->layers.prev; n != &r->layers; n = n->prev) {
			struct rlayer *rl = sg_container_of(n, struct rlayer, link);
			if (image_layer_ready(rl, refs[i]))
				(void)sg_layer_speculate_paths(rl->c->layer, paths, n_paths, found);
		}
	}
	free(found);
}

static void on_stuck(void *userdata, unsigned opcode, uint64_t unique, uint64_t age_ms)
{
	struct rlayer *rl = userdata;

	sg_warn("layer %s at %s: FUSE request %llu (opcode %u) unanswered for %llu ms",
		rl->c->digest, rl->mountpoint, (unsigned long long)unique, opcode,
		(unsigned long long)age_ms);
}

static void start_unmount(struct rlayer *rl, sg_remote_cb cb, void *userdata);

static void on_fs_lost(void *userdata)
{
	struct rlayer *rl = userdata;

	if (rl->state != RL_MOUNTED)
		return;
	sg_warn("layer %s at %s was unmounted from outside stargzd; releasing it", rl->c->digest,
		rl->mountpoint);
	rl->lost = true;
	start_unmount(rl, NULL, NULL);
}

static void rl_source_opened(struct sg_op *op)
{
	struct rlayer *rl = sg_container_of(op, struct rlayer, src_op);
	struct sg_remote *r = rl->r;
	int res = op->res;
	struct sg_range_source *src = res == 0 ? rl->src : NULL;

	rl->src = NULL;
	rl->src_opening = false;
	if (res == 0 && !rl->gone && rl->fs && sg_lazyfs_user(rl->fs))
		sg_layer_user_set_source(sg_lazyfs_user(rl->fs), src);
	else
		sg_range_source_free(src);
	if (rl->gone) {
		r->rl_gone--;
		free(rl);
		maybe_shutdown_done(r);
	}
}

/* Mounts the content's layer for one waiting mount (on failure the mount finishes with the
 * error). */
static void attach(struct rlayer *rl)
{
	struct sg_remote *r = rl->r;
	struct content *c = rl->c;
	struct sg_error err = { 0 };

	struct sg_lazyfs_options fs_opts = {
		.no_passthrough = r->cfg.no_passthrough,
		.stuck_after_ns = r->cfg.stuck_after_ns,
		.on_stuck = on_stuck,
		.on_lost = on_fs_lost,
		.userdata = rl,
		.attr_timeout = r->cfg.attr_timeout,
		.entry_timeout = r->cfg.entry_timeout,
		.state_dir = rl->state_dir[0] ? rl->state_dir : NULL,
	};
	int res;
	sg_list_unlink(&rl->c_link);
	if (rl->adopt_fd >= 0) {
		int fd = rl->adopt_fd;
		rl->adopt_fd = -1;
		rl->held = true;
		res = sg_lazyfs_adopt(r->loop, c->layer, rl->mountpoint, fd, &fs_opts, &rl->fs, &err);
		if (res < 0)
			release_held(rl, true);   /* the snapshot is mounted afresh later */
	} else {
		res = sg_lazyfs_mount(r->loop, c->layer, rl->mountpoint, &fs_opts, &rl->fs, &err);
		if (res == 0 && r->cfg.fdstore && rl->state_dir[0]) {
			char name[64];
			struct sg_error kerr = { 0 };
			sg_remote_held_name(rl->key, name, sizeof(name));
			if (sg_fdstore_put(r->cfg.fdstore, name, sg_lazyfs_fd(rl->fs), &kerr) < 0)
				sg_warn("%s; the mount at %s will not survive a restart", kerr.msg,
					rl->mountpoint);
			else
				rl->held = true;
		}
	}
	if (res < 0) {
		rl->fs = NULL;
		mount_finished(rl, res, err.msg);
		return;
	}
	c->mounts++;
	rl->state = RL_MOUNTED;
	sg_hist_observe(&c->mount_ms, (double)(sg_now_ns() - rl->start_ns) / 1e6);
	if (strcmp(rl->ref, c->ref) != 0) {
		/* Another image (maybe another registry) with the same layer: its reads go to
		 * its own registry, so that one hanging does not stall the other. */
		rl->src_opening = true;
		if (r->opener.open(r->opener.ctx, rl->ref, c->digest, &rl->src, NULL, &rl->src_op,
				   rl_source_opened) < 0)
			rl->src_opening = false;
	}
	mount_finished(rl, 0, NULL);
}

/* ---- a layer rebuilt from its cache directory ----
 *
 * CACHE/layer.restore records what the TOC JSON copy (stargz.index.json, written from the
 * verified JSON) does not say: the blob's size, where its TOC starts, and the TOC's own tar
 * header.  With them the same index (same node ids: the same inode numbers) is rebuilt
 * without the registry, checked against the TOC digest of the snapshot's labels. */
static void write_restore(struct content *c, const char *cache_dir, uint64_t blob_size,
			  uint64_t toc_offset, const struct sg_esgz_self *self)
{
	char path[PATH_MAX + 100], tmp[PATH_MAX + 120], text[512];
	int n, fd;

	n = snprintf(text, sizeof(text),
		     "stargzd-layer-restore 1\nblob_size %" PRIu64 "\ntoc_offset %" PRIu64
		     "\nself %" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRId64 " %" PRIu32 "\n"
		     "uname %s\ngname %s\n",
		     blob_size, toc_offset, self->mode, self->uid, self->gid, self->mtime_sec,
		     self->mtime_nsec, self->uname, self->gname);
	if (n <= 0 || (size_t)n >= sizeof(text) || strchr(self->uname, '\n') ||
	    strchr(self->gname, '\n') || strchr(self->uname, ' ') || strchr(self->gname, ' '))
		return;   /* cannot be written back faithfully: restarts fetch the TOC */
	snprintf(path, sizeof(path), "%s/" RESTORE_FILE, cache_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* Blocking, once per layer load: a local write of ~150 bytes. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	bool ok = write(fd, text, (size_t)n) == n;
	close(fd);
	if (!ok || rename(tmp, path) < 0) {
		(void)unlink(tmp);
		sg_debug("layer %s: cannot record how to restore it", c->digest);
	} else {
		sg_debug("layer %s: restore record written", c->digest);
	}
}

static int read_restore(const char *cache_dir, uint64_t *ret_size, uint64_t *ret_toc_offset,
			struct sg_esgz_self *self)
{
	char path[PATH_MAX + 100], text[513];
	int fd, version = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/" RESTORE_FILE, cache_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -EBADMSG;
	text[n] = '\0';
	memset(self, 0, sizeof(*self));
	/* uname/gname may be empty: read them line by line. */
	if (sscanf(text, "stargzd-layer-restore %d\nblob_size %" SCNu64 "\ntoc_offset %" SCNu64
		   "\nself %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNd64 " %" SCNu32,
		   &version, ret_size, ret_toc_offset, &self->mode, &self->uid, &self->gid,
		   &self->mtime_sec, &self->mtime_nsec) != 8 || version != 1)
		return -EBADMSG;
	const char *u = strstr(text, "\nuname "), *g = strstr(text, "\ngname ");
	if (!u || !g)
		return -EBADMSG;
	size_t ul = strcspn(u + 7, "\n"), gl = strcspn(g + 7, "\n");
	if (ul >= sizeof(self->uname) || gl >= sizeof(self->gname))
		return -EBADMSG;
	memcpy(self->uname, u + 7, ul);
	memcpy(self->gname, g + 7, gl);
	return 0;
}

static void on_toc(struct sg_op *op);

/* Starts the load from the cache directory: 0 if it did (on_toc follows), else the
 * registry it is. */
static int content_load_from_disk(struct content *c)
{
	struct sg_remote *r = c->r;
	char cache_dir[PATH_MAX + 80], json[PATH_MAX + 120];
	struct sg_esgz_options opts = { 0 };
	struct sg_esgz_self self;
	struct sg_range_source *src = NULL;
	struct sg_toc *toc = NULL;
	struct sg_error err = { 0 };
	uint64_t size, toc_offset;
	int res;

	snprintf(cache_dir, sizeof(cache_dir), "%s/%s", r->cache_root, c->digest + 7);
	snprintf(json, sizeof(json), "%s/%s", cache_dir, SG_ESGZ_TOC_NAME);
	res = read_restore(cache_dir, &size, &toc_offset, &self);
	if (res < 0) {
		/* never mounted here, or by an older stargzd */
		sg_debug("layer %s: no restore record in %s (%s); fetching its TOC", c->digest,
			 cache_dir, strerror(-res));
		return res;
	}
	opts.toc_digest = c->has_toc_digest ? &c->toc_digest : NULL;
	opts.skip_verify = c->skip_verify;
	opts.keep_json = true;
	opts.max_chunk_size = r->cfg.max_chunk_size;
	res = sg_esgz_restore_toc(json, toc_offset, &self, &opts, &toc, &err);
	if (res < 0) {
		sg_warn("layer %s: cannot rebuild it from its cache directory (%s); fetching its TOC",
			c->digest, err.msg);
		return res;
	}
	res = sg_deferred_source_new(r->loop, size, &r->opener, c->ref, c->digest, &src);
	if (res == 0) {
		c->src = src;
		c->toc = toc;
		c->load_inflight = true;
		res = sg_post(r->loop, &c->toc_op, 0, on_toc);
		if (res < 0) {
			c->load_inflight = false;
			c->toc = NULL;
			c->src = NULL;
		}
	}
	if (res < 0) {
		sg_range_source_free(src);
		sg_toc_free(toc);
		return res;
	}
	sg_debug("layer %s: rebuilt from %s", c->digest, cache_dir);
	return 0;
}

/* ---- learned startup profiles ---- */

/* A recording being saved on the store's helper thread: what its log line says, copied (the
 * content may be gone when the save ends). */
struct profile_save {
	struct sg_op op;
	struct sg_error err;
	char digest[SG_DIGEST_STRLEN + 1];
	char path[PATH_MAX + 200];
	uint64_t chunks, new_chunks;
};

static void log_profile_saved(const struct profile_save *s, int res)
{
	if (res < 0)
		sg_warn("layer %s: cannot store its startup profile: %s", s->digest, s->err.msg);
	else
		sg_info("layer %s: recorded its startup profile: %llu chunks read since the mount "
			"(%llu since the last save), merged into %s", s->digest,
			(unsigned long long)s->chunks, (unsigned long long)s->new_chunks, s->path);
}

static void profile_saved(struct sg_op *op)
{
	struct profile_save *s = sg_container_of(op, struct profile_save, op);

	log_profile_saved(s, op->res);
	free(s);
}

/* Off the loop: the store's read, write and two fsyncs would hold up every FUSE request. */
static void on_profile(void *userdata, const struct sg_profile *recorded, uint64_t new_chunks)
{
	struct content *c = userdata;
	struct profile_save *s = calloc(1, sizeof(*s));

	if (!s) {
		sg_warn("layer %s: cannot store its startup profile: out of memory", c->digest);
		return;
	}
	memcpy(s->digest, c->digest, sizeof(s->digest));
	s->chunks = sg_profile_chunks(recorded);
	s->new_chunks = new_chunks;
	if (sg_profile_store_path(c->r->profile_root, sg_profile_toc(recorded), s->path,
				  sizeof(s->path)) < 0)
		snprintf(s->path, sizeof(s->path), "%s/%s", c->r->profile_root, SG_PROFILE_DIR);
	sg_op_init(&s->op);
	int res = sg_profile_store_record_async(c->r->loop, c->r->profile_root, recorded, &s->err,
						&s->op, profile_saved);
	if (res != 0) {
		if (res < 0 && !s->err.msg[0])
			sg_error_set(&s->err, res, "%s", strerror(-res));
		log_profile_saved(s, res);   /* done (the loop drains) or refused: said now */
		free(s);
	}
}

/* The stored profile of the content's layer, replayed.  A missing profile is the common
 * case; one that cannot be used is a hint lost, said once. */
static void content_replay_stored(struct content *c)
{
	struct sg_remote *r = c->r;
	const struct sg_digest *toc = sg_toc_digest(sg_layer_toc(c->layer));
	struct sg_layer_replay_info info;
	struct sg_profile *prof = NULL;
	struct sg_error err = { 0 };
	char path[PATH_MAX + 200];

	if (!r->profile_root[0])
		return;
	if (sg_profile_store_path(r->profile_root, toc, path, sizeof(path)) < 0)
		return;
	int res = sg_profile_store_load(r->profile_root, toc, &prof, &err);
	if (res == -ENOENT)
		return;
	if (res == 0)
		res = sg_layer_replay(c->layer, prof, &info, &err);   /* takes prof */
	if (res == -EALREADY) {   /* the store had nothing new for it */
		sg_debug("layer %s: its replay names every chunk of the stored profile already",
			 c->digest);
		return;
	}
	if (res < 0) {
		/* The store's messages name the file already; the layer's do not. */
		const char *why = err.msg[0] ? err.msg : strerror(-res);
		size_t pl = strlen(path);
		if (strncmp(why, path, pl) == 0 && why[pl] == ':')
			why += pl + 1 + (why[pl + 1] == ' ');
		sg_warn("layer %s: startup profile %s ignored: %s", c->digest, path, why);
		return;
	}
	/* A second image's profile stored (merged into the layer's): it joins the replay. */
	sg_info("layer %s: %s: %llu chunks, %llu of them to fetch (%llu bytes)", c->digest,
		c->replaying ? "its startup profile grew: the replay goes on with the rest"
			     : "replaying its startup profile",
		(unsigned long long)info.chunks, (unsigned long long)info.fetch_chunks,
		(unsigned long long)info.fetch_bytes);
	c->replaying = true;
	c->replay_fetches |= info.fetch_chunks > 0;
}

/* A mount of a layer of `ref`: its profiles may be in its registry.  Asked once per image,
 * and again on a later mount once the last ask is PROFILE_ASK_AGAIN_NS old. */
static void want_profiles(struct sg_remote *r, const char *ref, const char *manifest_digest)
{
	uint64_t now = sg_now_ns(), again = r->cfg.profile_ask_again_ns ?
					       r->cfg.profile_ask_again_ns : PROFILE_ASK_AGAIN_NS;
	struct profile_ask *a = NULL;

	if (!r->cfg.want_profiles || !r->profile_root[0] || strlen(ref) >= sizeof(a->ref))
		return;
	for (size_t i = 0; i < r->n_profiles_asked && !a; i++)
		if (strcmp(r->profiles_asked[i].ref, ref) == 0)
			a = &r->profiles_asked[i];
	if (a && now - a->asked_ns < again)
		return;
	if (a)   /* asked again: it becomes the newest */
		drop_at(r->profiles_asked, &r->n_profiles_asked, (size_t)(a - r->profiles_asked),
			sizeof(*a));
	else if (r->n_profiles_asked == PROFILES_ASKED_KEPT)   /* the oldest goes */
		drop_at(r->profiles_asked, &r->n_profiles_asked, 0, sizeof(*a));
	a = &r->profiles_asked[r->n_profiles_asked++];
	snprintf(a->ref, sizeof(a->ref), "%s", ref);
	a->asked_ns = now;
	r->cfg.want_profiles(r->cfg.want_profiles_ctx, ref, manifest_digest);
}

/* ---- The image's entry programs, fetched ahead ---- */

static struct image_entry_state *entry_find(struct sg_remote *r, const char *ref)
{
	for (size_t i = 0; i < r->n_entries; i++)
		if (strcmp(r->entries[i]->ref, ref) == 0)
			return r->entries[i];
	return NULL;
}

/* The first mount of a layer of `ref`: the owner fetches its config. */
static void want_entry(struct sg_remote *r, const char *ref)
{
	if (!r->cfg.want_entry || !r->cfg.speculate || !ref[0] || entry_find(r, ref))
		return;
	struct image_entry_state *st = calloc(1, sizeof(*st));
	if (!st)
		return;
	snprintf(st->ref, sizeof(st->ref), "%s", ref);
	if (r->n_entries == ENTRIES_KEPT) {   /* the oldest goes */
		free(r->entries[0]);
		drop_at(r->entries, &r->n_entries, 0, sizeof(r->entries[0]));
	}
	r->entries[r->n_entries++] = st;
	r->cfg.want_entry(r->cfg.want_entry_ctx, ref);
}

/* Each command not found yet: its candidates in order, on the ready layers of the image
 * (only `only` when given), top-most first (containerd prepares a chain from its base up). */
static void entry_apply(struct sg_remote *r, struct image_entry_state *st, struct content *only)
{
	for (size_t i = 0; i < st->e.n; i++) {
		unsigned cmd = st->e.p[i].command;
		if (cmd >= SG_ENTRY_COMMANDS_MAX || st->done[cmd])
			continue;
		for (struct sg_list *n = r->contents.prev; n != &r->contents; n = n->prev) {
			struct content *c = sg_container_of(n, struct content, link);
			if ((only && c != only) || c->state != C_READY || !c->layer ||
			    !content_serves(r, c, st->ref))
				continue;
			int res = sg_layer_speculate_program(c->layer, st->e.p[i].path);
			if (res == 0) {
				sg_debug("image %s: its entry program %s is fetched ahead from layer %s",
					 st->ref, st->e.p[i].path, c->digest);
				st->done[cmd] = true;
				break;
			}
		}
	}
}

void sg_remote_entry_programs(struct sg_remote *r, const char *ref, const struct sg_image_entry *e)
{
	struct image_entry_state *st = entry_find(r, ref);

	if (!st || st->known)
		return;   /* forgotten meanwhile, or answered twice */
	st->e = *e;
	st->known = true;
	entry_apply(r, st, NULL);
}

/* Layer c became ready, or a mount of another image joined it: the entry programs of the
 * images using it it may have. */
static void entry_layer_ready(struct sg_remote *r, struct content *c)
{
	for (size_t i = 0; i < r->n_entries; i++)
		if (r->entries[i]->known && content_serves(r, c, r->entries[i]->ref))
			entry_apply(r, r->entries[i], c);
}

static void content_early_late(struct content *c);

void sg_remote_profiles_stored(struct sg_remote *r, const char *ref)
{
	for (struct sg_list *n = r->contents.next; n != &r->contents; n = n->next) {
		struct content *c = sg_container_of(n, struct content, link);
		if (!content_serves(r, c, ref))
			continue;
		if (c->state == C_READY && c->layer)
			content_replay_stored(c);
		else if (c->state == C_LOADING)
			content_early_late(c);
	}
}

static void toc_loaded(struct content *c, int res, struct sg_toc *toc, const struct sg_error *err)
{
	struct sg_remote *r = c->r;
	char cache_dir[PATH_MAX + 80], msg[PATH_MAX + 700];

	c->open_req = NULL;
	c->load_inflight = false;
	if (res < 0 || !content_wanted(c)) {
		snprintf(msg, sizeof(msg), "layer %s: %s", c->digest,
			 res >= 0 ? "cancelled" : err ? err->msg : strerror(-res));
		sg_toc_free(res >= 0 ? toc : NULL);
		content_fail(c, res < 0 ? res : -ECANCELED, msg);
		return;
	}
	/* One cache directory per layer digest: it outlives snapshots and daemon restarts. */
	snprintf(cache_dir, sizeof(cache_dir), "%s/%s", r->cache_root, c->digest + 7);
	struct sg_digest blob_digest;
	bool named = sg_digest_parse(c->digest, strlen(c->digest), &blob_digest) == 0;
	struct sg_layer_config lc = {
		.cache_dir = cache_dir,
		.skip_verify = c->skip_verify,
		.prefetch = r->cfg.prefetch,
		.background_fetch = r->cfg.background_fetch,
		.prefetch_bytes = c->prefetch_bytes,
		.window_bytes = r->cfg.fetch_window,
		.speculate = r->cfg.speculate,
		.spec_budget_max = r->cfg.spec_budget_max,
		.trace = r->cfg.fetch_trace,
		.trace_layer = c->digest,
		.on_profile = r->profile_root[0] ? on_profile : NULL,
		.blob_digest = named ? &blob_digest : NULL,
		.profile_quiet_ns = r->cfg.profile_quiet_ns,
		.on_bad_chunk = on_bad_chunk,
		.userdata = c,
		.on_needed_elsewhere = on_needed_elsewhere,
		.on_reader = on_reader,
		.on_replay_over = on_replay_over,
		.bound = r->cache,
		.mem_budget = r->mem,
	};
	struct sg_range_source *src = c->src;
	c->src = NULL;   /* the layer owns it now */
	c->early_src = sg_early_source_is(src) ? src : NULL;
	uint64_t blob_size = src ? src->size : 0;
	c->blob_size = blob_size;
	uint64_t toc_ns = sg_now_ns() - c->created_ns;
	double toc_ms = (double)toc_ns / 1e6;
	sg_hist_observe(&c->toc_ms, toc_ms);
	sg_debug("layer %s: TOC loaded %.1f ms after the layer was asked for", c->digest, toc_ms);
	sg_fetch_trace_toc(r->cfg.fetch_trace, c->digest, c->created_ns, toc_ns);
	struct sg_esgz_self self;
	bool restorable = !c->from_disk && src && sg_esgz_self_of(toc, &self) == 0;
	uint64_t toc_offset = sg_toc_offset(toc);
	res = sg_layer_new(r->loop, src, toc, &lc, &c->layer);
	if (res < 0) {
		c->layer = NULL;
		snprintf(msg, sizeof(msg), "layer %s: cannot set up its cache in %s: %s", c->digest,
			 cache_dir, strerror(-res));
		content_fail(c, res, msg);
		return;
	}
	c->state = C_READY;
	/* The layer starts (its profile's replay first) before the restore record is written
	 * and the FUSE mount made: their syscalls then overlap the first requests' round trip
	 * instead of delaying it. */
	content_replay_stored(c);
	if (!c->replay_fetches)
		early_done(c);   /* no replay will ask for what was read early */
	sg_layer_start(c->layer);
	entry_layer_ready(r, c);
	if (restorable)
		write_restore(c, cache_dir, blob_size, toc_offset, &self);
	struct sg_list *n;
	while ((n = c->waiting.next) != &c->waiting)
		attach(sg_container_of(n, struct rlayer, c_link));
	if (c->mounts == 0 && !c->holds)
		content_close(c);   /* no mount took it */
}

static void on_toc(struct sg_op *op)
{
	struct content *c = sg_container_of(op, struct content, toc_op);
	struct sg_toc *toc = c->toc;

	c->toc = NULL;
	toc_loaded(c, op->res, toc, &c->toc_err);
}

/* Loads the TOC from an already fetched tail when it lies inside it.  True if it did (and
 * on_toc runs, or ran). */
static bool toc_from_tail(struct content *c, const uint8_t *tail, size_t tail_len)
{
	struct sg_remote *r = c->r;
	struct sg_esgz_options opts = { 0 };
	struct sg_esgz_footer footer;
	struct sg_error err;
	struct sg_toc *toc = NULL;
	uint64_t size = c->src->size, tail_off = size - tail_len;

	if (sg_esgz_parse_footer(tail, tail_len, size, &footer, &err) < 0 || footer.toc_offset < tail_off)
		return false;   /* no footer here, or a TOC larger than the tail: the normal path */
	opts.toc_digest = c->has_toc_digest ? &c->toc_digest : NULL;
	opts.skip_verify = c->skip_verify;
	opts.keep_json = true;   /* stargz.index.json: sg_layer_new stores it */
	opts.max_chunk_size = c->r->cfg.max_chunk_size;
	const uint8_t *member = tail + (footer.toc_offset - tail_off);
	size_t member_len = (size_t)(footer.toc_end - footer.toc_offset);
	c->load_inflight = true;
	/* On a helper thread: a big TOC would hold up every other mount for a few 100 ms. */
	if (sg_esgz_load_toc_member_async(r->loop, member, member_len, &footer, &opts, &c->toc,
					  &c->toc_err, &c->toc_op, on_toc) == 0)
		return true;
	int res = sg_esgz_load_toc_member(r->gz, member, member_len, &footer, &opts, &toc, &err);
	toc_loaded(c, res, toc, res < 0 ? &err : NULL);
	return true;
}

static void content_blob_opened(struct content *c, int res, struct sg_range_source *src,
				const char *err)
{
	struct sg_esgz_options opts = { 0 };
	char msg[512];

	c->load_inflight = false;
	if (res == 0 && c->early) {
		src = sg_early_attach(c->early, src);
		c->early = NULL;
	}
	sg_early_abandon(c->early);   /* the open failed */
	c->early = NULL;
	if (res < 0 || !content_wanted(c)) {
		sg_range_source_free(src);
		snprintf(msg, sizeof(msg), "layer %s: %s", c->digest,
			 res >= 0 ? "cancelled" : err ? err : strerror(-res));
		content_fail(c, res < 0 ? res : -ECANCELED, msg);
		return;
	}
	c->src = src;
	opts.toc_digest = c->has_toc_digest ? &c->toc_digest : NULL;
	opts.skip_verify = c->skip_verify;
	opts.keep_json = true;   /* stargz.index.json: sg_layer_new stores it */
	opts.max_chunk_size = c->r->cfg.max_chunk_size;
	opts.tail_len = c->toc_tail;   /* what the open brought along */
	c->load_inflight = true;
	res = sg_esgz_open(src, &opts, &c->open_req, &c->toc, &c->toc_err, &c->toc_op, on_toc);
	if (res < 0) {
		c->load_inflight = false;
		snprintf(msg, sizeof(msg), "layer %s: cannot read its TOC: %s", c->digest,
			 strerror(-res));
		content_fail(c, res, msg);
	}
}

static void on_blob_opened(struct sg_op *op)
{
	struct content *c = sg_container_of(op, struct content, open_op);
	struct sg_range_source *src = op->res == 0 ? c->opened : NULL;

	c->opening = false;
	c->opened = NULL;
	content_blob_opened(c, op->res, src, op->res < 0 ? c->open_err.msg : NULL);
}

static int open_for_toc(struct sg_remote *r, const char *ref, const char *digest, size_t tail,
			struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
			sg_op_cb cb)
{
	if (r->opener.open_for_toc)
		return r->opener.open_for_toc(r->opener.ctx, ref, digest, tail, ret_src, err, op, cb);
	return r->opener.open(r->opener.ctx, ref, digest, ret_src, err, op, cb);
}

/* What a stored profile of layer blob `digest` tells before its TOC is known
 * (fs/profile_store.h): how much of the blob's end to fetch for the TOC (the TOC and footer
 * and nothing before them, where the default tail, 512 KiB, brings up to half a megabyte of
 * the layer's last files along), and the blob spans of the chunks its workload read first.
 * Only hints: the TOC is verified against its digest as always (a short tail costs a round
 * trip for the rest), and every chunk against the TOC. */
struct layer_hints {
	size_t tail;    /* 0 = no hint */
	struct sg_profile_span head[SG_PROFILE_HEAD_MAX];
	size_t n_head;
};

static void layer_hints(struct sg_remote *r, const char *digest, struct layer_hints *h)
{
	struct sg_error err = { 0 };
	struct sg_profile *p = NULL;
	const struct sg_profile_span *head;
	struct sg_digest d;

	h->tail = h->n_head = 0;
	if (!r->profile_root[0] || sg_digest_parse(digest, strlen(digest), &d) < 0)
		return;
	int res = sg_profile_store_load_by_layer(r->profile_root, &d, &p, &err);
	if (res < 0) {
		if (res != -ENOENT)
			sg_info("layer %s: no hints from its startup profile: %s", digest,
				err.msg[0] ? err.msg : strerror(-res));
		return;
	}
	uint64_t tail = sg_profile_toc_tail(p);
	h->n_head = sg_profile_head(p, &head);
	if (h->n_head)
		memcpy(h->head, head, h->n_head * sizeof(*head));
	sg_profile_free(p);
	if (tail == 0 || tail > TP_TOC_MAX)
		return;
	/* Rounded up: a few KiB more cost nothing, and cover every footer format. */
	tail = (tail + 4095) & ~(uint64_t)4095;
	sg_debug("layer %s: its TOC tail is %llu bytes (startup profile)", digest,
		 (unsigned long long)tail);
	h->tail = (size_t)tail;
}

/* Starts reading the profile's first chunks of blob `digest` beside its open, when the
 * opener can (daemon/early_source.h).  NULL when not. */
static struct sg_early *early_start(struct sg_remote *r, const char *ref, const char *digest,
				    const struct layer_hints *h)
{
	struct sg_range_source *via = NULL;
	struct sg_early *e = NULL;
	struct sg_error err = { 0 };

	if (h->n_head == 0 || !r->opener.unsized)
		return NULL;
	int res = r->opener.unsized(r->opener.ctx, ref, digest, &via, &err);
	if (res == 0)
		res = sg_early_start(via, h->head, h->n_head, EARLY_BYTES, SG_LAYER_REPLAY_GAP, 0,
				     &e);
	if (res < 0) {
		sg_info("layer %s: its startup profile's first chunks wait for its TOC: %s", digest,
			err.msg[0] ? err.msg : strerror(-res));
		return NULL;
	}
	if (e)
		sg_debug("layer %s: its startup profile's first chunks are read beside its TOC",
			 digest);
	return e;
}

/* The layer's profile was stored while its blob opens (the registry's, pulled beside the
 * open: under containerd's CRI plugin in one round trip, about when the open's tail read
 * arrives): its first chunks are read now, beside the TOC, as they are when the profile is
 * there at the mount.  Not once the open answered (the TOC loader has the source), nor when
 * they are read already. */
static void content_early_late(struct content *c)
{
	struct layer_hints h;

	if (!c->opening || c->early)
		return;
	layer_hints(c->r, c->digest, &h);
	c->early = early_start(c->r, c->ref, c->digest, &h);
	if (c->early)
		sg_info("layer %s: its startup profile came while its blob opened: its first "
			"chunks are read beside its TOC", c->digest);
}

/* Fetches the blob's TOC the normal way (no prefetched tail). */
static void content_open_blob(struct content *c)
{
	struct sg_remote *r = c->r;

	c->load_inflight = true;
	c->open_err = (struct sg_error){ 0 };
	struct layer_hints h;
	layer_hints(r, c->digest, &h);
	c->toc_tail = h.tail;
	int res = open_for_toc(r, c->ref, c->digest, c->toc_tail, &c->opened, &c->open_err,
			       &c->open_op, on_blob_opened);
	c->opening = res == 0;
	if (res == 0)   /* after the open, whose request goes first */
		c->early = early_start(r, c->ref, c->digest, &h);
	if (res < 0) {
		c->load_inflight = false;
		content_fail(c, res, "cannot start fetching the layer");
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

/* Hands a prefetched blob to the content waiting for it; one that finds no usable prefetch
 * goes the normal way. */
static void tp_serve(struct tail_prefetch *tp)
{
	struct sg_list *n;

	while ((n = sg_list_pop(&tp->waiters))) {
		struct content *c = sg_container_of(n, struct content, wait_link);
		c->load_inflight = false;
		if (!content_wanted(c)) {
			content_fail(c, -ECANCELED, "cancelled");
			continue;
		}
		if (tp->state == TP_READY && tp->src) {
			struct sg_range_source *src = tp->src;
			tp->src = NULL;
			c->src = src;
			if (toc_from_tail(c, tp->tail, tp->tail_len))
				continue;
			c->src = NULL;
			c->load_inflight = true;
			content_blob_opened(c, 0, src, NULL);   /* TOC beyond the tail: read it */
			continue;
		}
		content_open_blob(c);
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

static void tp_head_read(struct sg_op *op)
{
	struct tail_prefetch *tp = sg_container_of(op, struct tail_prefetch, op);

	tp->state = op->res >= 0 && (size_t)op->res == tp->head_len ? TP_READY : TP_FAILED;
	tp_release(tp);
}

/* A TOC that starts before the tail (a layer of many files): its head is read now too, in
 * parallel with the other layers' tails, rather than at the layer's own Prepare.  The tail
 * becomes the blob from the TOC's start.  False when there is nothing to read (or no
 * memory: the layer's Prepare reads it then). */
static bool tp_read_toc_head(struct tail_prefetch *tp)
{
	struct sg_range_source *src = tp->src;
	struct sg_esgz_footer footer;
	struct sg_error err;
	uint64_t tail_off = src->size - tp->tail_len;

	if (sg_esgz_parse_footer(tp->tail, tp->tail_len, src->size, &footer, &err) < 0 ||
	    footer.toc_offset >= tail_off || src->size - footer.toc_offset > TP_TOC_MAX)
		return false;
	size_t len = (size_t)(src->size - footer.toc_offset);
	size_t head = (size_t)(tail_off - footer.toc_offset);
	uint8_t *buf = malloc(len);
	if (!buf)
		return false;
	memcpy(buf + head, tp->tail, tp->tail_len);
	if (sg_range_read(src, footer.toc_offset, head, buf, &tp->op, tp_head_read) < 0) {
		free(buf);
		return false;
	}
	free(tp->tail);
	tp->tail = buf;
	tp->tail_len = len;
	tp->head_len = head;
	return true;
}

static void tp_read(struct sg_op *op)
{
	struct tail_prefetch *tp = sg_container_of(op, struct tail_prefetch, op);

	tp->state = op->res >= 0 && (size_t)op->res == tp->tail_len ? TP_READY : TP_FAILED;
	if (tp->state == TP_READY && !tp->r->freed && tp_read_toc_head(tp)) {
		tp->state = TP_READING;
		return;
	}
	tp_release(tp);
}

static void tp_opened(struct sg_op *op)
{
	struct tail_prefetch *tp = sg_container_of(op, struct tail_prefetch, op);
	struct sg_range_source *src = op->res == 0 ? tp->src : NULL;

	if (op->res < 0 || tp->r->freed) {
		sg_range_source_free(src);
		tp->src = NULL;
		sg_early_abandon(tp->early);   /* and its open no longer holds the link */
		tp->early = NULL;
		tp->state = TP_FAILED;
		tp_release(tp);
		return;
	}
	if (tp->early) {
		src = tp->src = sg_early_attach(tp->early, src);
		tp->early = NULL;
	}
	tp->state = TP_READING;
	size_t want = tp->tail_hint ? tp->tail_hint : SG_ESGZ_TAIL_READ;
	tp->tail_len = src->size < want ? (size_t)src->size : want;
	tp->tail = malloc(tp->tail_len ? tp->tail_len : 1);
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
			} else if (after && !tp_find(r, digest) && !content_find(r, digest)) {
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
				sg_op_init(&tp->op);
				struct layer_hints h;
				layer_hints(r, digest, &h);
				tp->tail_hint = h.tail;
				if (open_for_toc(r, ref, digest, tp->tail_hint, &tp->src, NULL,
						 &tp->op, tp_opened) < 0) {
					r->tp_inflight--;
					tp_free(tp);
				} else if (r->early_prefetches < EARLY_PREFETCHES_MAX) {
					tp->early = early_start(r, ref, digest, &h);
					tp->early_counted = tp->early != NULL;
					r->early_prefetches += tp->early_counted;
				}
			}
		}
		p = comma ? comma + 1 : NULL;
	}
}

static void serve_deferred(struct sg_op *op)
{
	struct content *c = sg_container_of(op, struct content, defer_op);
	struct tail_prefetch *tp = c->deferred_tp;

	c->deferred_tp = NULL;
	tp_serve(tp);
	tp_free(tp);
}

/* Starts loading a content's TOC: from a blob fetched ahead if there is one, else from the
 * registry.  Every path ends in on_toc or content_fail, from the loop. */
static void content_start_load(struct content *c)
{
	struct sg_remote *r = c->r;
	struct tail_prefetch *tp = tp_find(r, c->digest);

	c->created_ns = sg_now_ns();
	if (c->from_disk && content_load_from_disk(c) == 0)
		return;
	if (!tp) {
		content_open_blob(c);
		return;
	}
	/* Fetched ahead (or being fetched): join it. */
	c->load_inflight = true;
	sg_list_insert_tail(&tp->waiters, &c->wait_link);
	if (tp->state == TP_READY || tp->state == TP_FAILED) {
		sg_list_unlink(&tp->link);
		c->deferred_tp = tp;
		if (sg_post(r->loop, &c->defer_op, 0, serve_deferred) < 0)
			serve_deferred(&c->defer_op);   /* draining */
	}
}

static void attach_cb(struct sg_op *op)
{
	struct rlayer *rl = sg_container_of(op, struct rlayer, attach_op);
	struct content *c = rl->c;

	if (rl->state == RL_CLOSING) {
		mount_finished(rl, -ECANCELED, "unmounted before it was mounted");
		return;
	}
	if (c->state == C_READY) {
		attach(rl);
		return;
	}
	/* The content started closing meanwhile: the mount waits for it to start over. */
}

/* A new mount that will be kept: the fd holder is started now, while the layer's TOC is on
 * its way, not at the mount itself (daemon/fdstore.h). */
static void warm_fdstore(const struct rlayer *rl)
{
	if (rl->adopt_fd < 0 && rl->state_dir[0])
		sg_fdstore_warm(rl->r->cfg.fdstore);
}

/* A content of blob `digest` (normalized), not loading yet; NULL: no memory. */
static struct content *content_new(struct sg_remote *r, const char *digest,
				   const struct sg_digest *toc_digest, bool skip_verify,
				   const char *ref)
{
	struct content *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->r = r;
	c->state = C_LOADING;
	snprintf(c->digest, sizeof(c->digest), "%s", digest);
	c->has_toc_digest = toc_digest != NULL;
	if (toc_digest)
		c->toc_digest = *toc_digest;
	c->skip_verify = skip_verify;
	c->prefetch_bytes = r->cfg.prefetch_bytes;
	snprintf(c->ref, sizeof(c->ref), "%s", ref);
	sg_list_init(&c->waiting);
	sg_op_init(&c->defer_op);
	sg_op_init(&c->toc_op);
	sg_op_init(&c->close_op);
	sg_op_init(&c->open_op);
	sg_list_insert_tail(&r->contents, &c->link);
	return c;
}

static int mount_common(struct sg_remote *r, int64_t key, const char *mountpoint,
			const struct sg_remote_layer *layer, int adopt_fd, sg_remote_cb cb,
			void *userdata)
{
	struct sg_digest d, toc_d;
	char digest[SG_DIGEST_STRLEN + 1];
	struct rlayer *rl;

	if (find(r, key))
		return -EEXIST;
	if (sg_digest_parse(layer->digest, strlen(layer->digest), &d) < 0)
		return -EINVAL;
	sg_digest_format(&d, digest);
	if (layer->toc_digest && sg_digest_parse(layer->toc_digest, strlen(layer->toc_digest), &toc_d) < 0)
		return -EINVAL;
	/* Verification is off only when the operator allowed it and the image asked for it;
	 * a layer without a TOC digest is otherwise refused by the reader. */
	bool skip_verify = r->cfg.allow_skip_verify && (layer->skip_verify || !layer->toc_digest);

	struct content *c = content_find(r, digest);
	if (c && (c->skip_verify != skip_verify || c->has_toc_digest != !!layer->toc_digest ||
		  (c->has_toc_digest && memcmp(&c->toc_digest, &toc_d, sizeof(toc_d)) != 0))) {
		/* One cache directory, one verified TOC: a second identity for the same blob is
		 * either a mistake or an attack, and must not share what the first verified. */
		sg_warn("layer %s is in use with %s; refusing to mount it with %s", digest,
			c->skip_verify ? "verification off" : "another TOC digest",
			skip_verify ? "verification off" : "another TOC digest");
		return -EBUSY;
	}
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return -ENOMEM;
	rl->r = r;
	rl->key = key;
	rl->cb = cb;
	rl->userdata = userdata;
	rl->state = RL_WAITING;
	rl->start_ns = sg_now_ns();
	rl->adopt_fd = -1;
	snprintf(rl->ref, sizeof(rl->ref), "%s", layer->ref);
	if (layer->state_dir)
		snprintf(rl->state_dir, sizeof(rl->state_dir), "%s", layer->state_dir);
	sg_op_init(&rl->attach_op);
	sg_op_init(&rl->unmount_op);
	sg_op_init(&rl->src_op);
	snprintf(rl->mountpoint, sizeof(rl->mountpoint), "%s", mountpoint);
	note_layers_below(r, layer);
	if (!c) {
		c = content_new(r, digest, layer->toc_digest ? &toc_d : NULL, skip_verify, layer->ref);
		if (!c) {
			free(rl);
			return -ENOMEM;
		}
		c->from_disk = layer->from_disk;
		c->prefetch_bytes = layer->prefetch_bytes ? layer->prefetch_bytes :
							    r->cfg.prefetch_bytes;
		rl->c = c;
		sg_list_insert_tail(&c->waiting, &rl->c_link);
		sg_list_insert_tail(&r->layers, &rl->link);
		rl->adopt_fd = adopt_fd;
		if (layer->layers && !layer->from_disk)
			prefetch_following(r, layer->ref, layer->layers, digest);
		want_profiles(r, layer->ref, layer->manifest_digest);
		want_entry(r, layer->ref);
		content_start_load(c);
		warm_fdstore(rl);
		return 0;
	}
	/* Another mount of the same content: share it (loading, ready, or about to be loaded
	 * anew once its closing ends). */
	if (c->holds && c->mounts == 0) {
		r->joined_ahead++;
		sg_info("layer %s: its Prepare finds it %s ahead of it (its pull was seen first)",
			digest, c->state == C_READY ? "loaded" : "loading");
	}
	rl->c = c;
	sg_list_insert_tail(&c->waiting, &rl->c_link);
	sg_list_insert_tail(&r->layers, &rl->link);
	if (layer->layers && !layer->from_disk)
		prefetch_following(r, layer->ref, layer->layers, digest);
	if (c->state == C_READY && sg_post(r->loop, &rl->attach_op, 0, attach_cb) < 0) {
		sg_list_unlink(&rl->c_link);
		sg_list_unlink(&rl->link);
		free(rl);
		return -ECANCELED;
	}
	rl->adopt_fd = adopt_fd;
	warm_fdstore(rl);
	/* Another image using this layer has profiles and entry programs of its own. */
	want_profiles(r, layer->ref, layer->manifest_digest);
	want_entry(r, layer->ref);
	if (c->state == C_READY)
		entry_layer_ready(r, c);
	return 0;
}

/* ---- Image pulls seen before containerd's Prepare ---- */

struct sg_remote_hold {
	struct sg_remote *r;            /* NULL once the remote shut down */
	struct sg_list link;            /* r->holds */
	char ref[512];
	size_t n;
	struct content *c[];            /* NULL: let go (its load failed) */
};

/* The content goes (its load failed): no pull holds it any more. */
static void hold_forget(struct content *c)
{
	struct sg_remote *r = c->r;

	for (struct sg_list *n = r->holds.next; n != &r->holds && c->holds; n = n->next) {
		struct sg_remote_hold *h = sg_container_of(n, struct sg_remote_hold, link);
		for (size_t i = 0; i < h->n; i++)
			if (h->c[i] == c) {
				h->c[i] = NULL;
				c->holds--;
			}
	}
}

/* A pull let the content go: the last holder, without a mount, closes it (or gives its load
 * up), as a mount's content does at its last unmount. */
static void content_unhold(struct content *c)
{
	c->holds--;
	content_let_go(c);
}

/* Lets every content of h go (h off r->holds already); returns how many no mount took. */
static size_t hold_let_go(struct sg_remote_hold *h)
{
	size_t unused = 0;

	for (size_t i = 0; i < h->n; i++) {
		struct content *c = h->c[i];
		if (!c)
			continue;
		unused += c->mounts == 0 && sg_list_empty(&c->waiting);
		content_unhold(c);
	}
	return unused;
}

int sg_remote_hold(struct sg_remote *r, const char *ref, const char *manifest_digest,
		   const struct sg_remote_expected *layers, size_t n, struct sg_remote_hold **ret)
{
	struct sg_remote_hold *h;
	size_t lazy = 0, in_use = 0;

	*ret = NULL;
	if (r->stopping)
		return -ECANCELED;
	h = calloc(1, sizeof(*h) + n * sizeof(h->c[0]));
	if (!h)
		return -ENOMEM;
	h->r = r;
	snprintf(h->ref, sizeof(h->ref), "%s", ref);
	sg_list_insert_tail(&r->holds, &h->link);
	for (size_t i = 0; i < n; i++) {
		struct sg_digest d, toc_d;
		char digest[SG_DIGEST_STRLEN + 1];
		/* A layer without a TOC digest is not eStargz (or not verifiable): containerd
		 * pulls it, or its Prepare decides. */
		if (!layers[i].toc_digest ||
		    sg_digest_parse(layers[i].digest, strlen(layers[i].digest), &d) < 0 ||
		    sg_digest_parse(layers[i].toc_digest, strlen(layers[i].toc_digest), &toc_d) < 0)
			continue;
		lazy++;
		sg_digest_format(&d, digest);
		struct content *c = content_find(r, digest);
		bool listed = false;   /* a manifest may list one blob twice */
		for (size_t j = 0; c && j < h->n; j++)
			listed |= h->c[j] == c;
		if (listed)
			continue;
		if (c) {
			/* In use already (mounted, or another pull's): this image uses it too, and
			 * it stays until this pull's Prepare. */
			if (c->has_toc_digest && memcmp(&c->toc_digest, &toc_d, sizeof(toc_d)) == 0) {
				content_add_image(r, c, ref);
				c->holds++;
				h->c[h->n++] = c;
				in_use++;
			}
			continue;
		}
		c = content_new(r, digest, &toc_d, false, ref);
		if (!c)
			break;
		c->holds++;
		h->c[h->n++] = c;
		r->loaded_ahead++;
		content_start_load(c);
	}
	if (lazy) {
		sg_info("image %s: %zu of its %zu layers load ahead of containerd's Prepare (%zu "
			"in use already)", ref, h->n - in_use, n, in_use);
		want_profiles(r, ref, manifest_digest);
		want_entry(r, ref);
	}
	*ret = h;
	return 0;
}

void sg_remote_unhold(struct sg_remote_hold *h, bool pulled)
{
	if (!h)
		return;
	if (h->r) {
		sg_list_unlink(&h->link);
		size_t unused = hold_let_go(h);
		/* The pull ended and containerd prepared none of them: it had the snapshots (it
		 * does not ask again), or the pull used another snapshotter (a CRI plugin's that is
		 * not stargzd: then this only costs fetches). */
		if (unused && pulled)
			sg_info("image %s: its pull ended with %zu of the layers loaded ahead not "
				"prepared by containerd; they are let go (containerd had their snapshots, "
				"or pulled with another snapshotter: under the CRI proxy, if its CRI "
				"plugin's snapshotter is not stargzd, set [cri_keychain] load_ahead = "
				"\"off\")", h->ref, unused);
	}
	free(h);
}

int sg_remote_mount(struct sg_remote *r, int64_t key, const char *mountpoint,
		    const struct sg_remote_layer *layer, sg_remote_cb cb, void *userdata)
{
	return mount_common(r, key, mountpoint, layer, -1, cb, userdata);
}

int sg_remote_adopt(struct sg_remote *r, int64_t key, const char *mountpoint,
		    const struct sg_remote_layer *layer, int fd, sg_remote_cb cb, void *userdata)
{
	if (fd < 0 || !layer->state_dir)
		return -EINVAL;
	return mount_common(r, key, mountpoint, layer, fd, cb, userdata);
}

static void log_layer_stats(const struct rlayer *rl, const char *when)
{
	struct sg_layer_stats st;
	struct sg_cache_bound_stats cs;
	struct sg_lazyfs_stats fst = { 0 };
	char pt[160], streamed[40];

	sg_layer_stats(rl->c->layer, &st);
	snprintf(streamed, sizeof(streamed), "%llu bytes", (unsigned long long)st.streamed_bytes);
	sg_cache_bound_stats(rl->r->cache, &cs);
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
	sg_info("layer %s at %s %s: FUSE requests %llu, replies %llu, %llu unanswered%s; "
		"fetched %llu bytes in %llu requests%s%s; chunks %llu/%llu local "
		"(%llu from the blob, %llu from disk, %llu from memory, %llu checked for passthrough); "
		"%llu verification failures; "
		"cache %llu bytes, %llu chunks (%llu bytes) evicted, %llu not cached for lack of room%s; "
		"all layers %llu/%llu bytes, %llu directories removed; %s%s",
		rl->c->digest, rl->mountpoint, when, (unsigned long long)fst.requests,
		(unsigned long long)fst.replies, (unsigned long long)fst.unanswered,
		fst.unanswered ? " (answered by the kernel when the session closes)" : "",
		(unsigned long long)st.fetched_bytes,
		(unsigned long long)st.fetch_requests, st.stream_started ? ", streamed " : "",
		st.stream_started ? streamed : "", (unsigned long long)st.chunks_present,
		(unsigned long long)st.chunks_total, (unsigned long long)st.chunks_fetched,
		(unsigned long long)st.chunks_from_disk, (unsigned long long)st.chunks_from_memory,
		(unsigned long long)st.chunks_checked, (unsigned long long)st.verify_failures,
		(unsigned long long)st.cache_bytes,
		(unsigned long long)st.chunks_evicted, (unsigned long long)st.evicted_bytes,
		(unsigned long long)st.cache_writes_skipped,
		st.background_skipped ? "; background fetch skipped (layer larger than the room left)" : "",
		(unsigned long long)cs.bytes, (unsigned long long)cs.max_bytes,
		(unsigned long long)cs.removed_dirs, pt,
		rl->c->mounts > 1 ? "; the layer stays for its other mounts" : "");
}

/* The mount's FUSE side is gone: leave the content (the last mount closes its layer). */
static void unmount_fs_done(struct sg_op *op)
{
	struct rlayer *rl = sg_container_of(op, struct rlayer, unmount_op);
	struct sg_remote *r = rl->r;
	sg_remote_cb cb = rl->cb;
	void *ud = rl->userdata;
	bool lost = rl->lost;
	int64_t key = rl->key;

	sg_lazyfs_free(rl->fs);
	rl->fs = NULL;
	if (rl->held && !rl->handed_over)
		release_held(rl, false);   /* unmounted: nothing to keep */
	content_put(rl->c);
	rl->c = NULL;
	rl_destroy(rl);
	if (cb)
		cb(ud, 0, NULL);
	/* Its snapshot is still there: the owner may mount it again (never a dead path). */
	if (lost && r->on_lost && !r->shutdown_cb)
		r->on_lost(r->on_lost_userdata, key);
}

static void start_unmount(struct rlayer *rl, sg_remote_cb cb, void *userdata)
{
	rl->state = RL_CLOSING;
	rl->cb = cb;
	rl->userdata = userdata;
	log_layer_stats(rl, rl->lost ? "lost" : "unmounted");
	(void)sg_lazyfs_unmount(rl->fs, &rl->unmount_op, unmount_fs_done);   /* idle: ours */
}

void sg_remote_unmount(struct sg_remote *r, int64_t key, sg_remote_cb cb, void *userdata)
{
	struct rlayer *rl = find(r, key);

	if (!rl || rl->state == RL_CLOSING) {
		if (cb)
			cb(userdata, rl ? -EALREADY : -ENOENT, NULL);
		return;
	}
	if (rl->state == RL_WAITING) {
		/* Not mounted yet: the attempt ends now; the content's load, if nobody else waits
		 * for it, ends by itself (it finds no waiter). */
		if (sg_op_busy(&rl->attach_op)) {
			rl->state = RL_CLOSING;   /* its posted attach ends the attempt */
		} else {
			struct content *c = rl->c;
			mount_finished(rl, -ECANCELED, "unmounted before it was mounted");
			content_let_go(c);
		}
		if (cb)
			cb(userdata, 0, NULL);
		return;
	}
	start_unmount(rl, cb, userdata);
}

/* A graceful restart: the mount stays, its session goes to the next daemon. */
static void start_handover(struct rlayer *rl)
{
	struct sg_remote *r = rl->r;

	rl->state = RL_CLOSING;
	rl->handed_over = true;
	rl->cb = NULL;
	log_layer_stats(rl, "handed over");
	(void)sg_lazyfs_detach(rl->fs, r->cfg.handover_grace_ns ? r->cfg.handover_grace_ns
								: DEFAULT_HANDOVER_GRACE_NS,
			       &rl->unmount_op, unmount_fs_done);   /* idle: ours */
}

void sg_remote_shutdown(struct sg_remote *r, bool keep_mounts, void (*cb)(void *userdata),
			void *userdata)
{
	struct sg_list *n, *tmp;

	r->shutdown_cb = cb;
	r->shutdown_userdata = userdata;
	r->handover = keep_mounts;
	r->stopping = true;
	while ((n = sg_list_pop(&r->holds))) {   /* their owners free them later */
		struct sg_remote_hold *h = sg_container_of(n, struct sg_remote_hold, link);
		h->r = NULL;
		(void)hold_let_go(h);
	}
	sg_list_for_each_safe(n, tmp, &r->layers) {
		struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		if (keep_mounts && rl->state == RL_MOUNTED && rl->held)
			start_handover(rl);
		else
			sg_remote_unmount(r, rl->key, NULL, NULL);
	}
	maybe_shutdown_done(r);
}

/* ---- metrics ---- */

/* stargz-snapshotter's operation types (fs/metrics/common): which of our numbers each is. */
enum op_kind { OP_MS, OP_US, OP_COUNT, OP_BYTES };

static const char *const family_name[] = {
	[OP_MS] = "stargz_fs_operation_duration_milliseconds",
	[OP_US] = "stargz_fs_operation_duration_microseconds",
	[OP_COUNT] = "stargz_fs_operation_count",
	[OP_BYTES] = "stargz_fs_bytes_served",
};

/* The histogram of one operation of a content; false if it has none. */
static bool content_hist(const struct content *c, const struct sg_layer_stats *st,
			 const char *op, struct sg_hist *ret)
{
	*ret = (struct sg_hist){ 0 };
	if (strcmp(op, "mount") == 0)
		*ret = c->mount_ms;
	else if (strcmp(op, "stargz_toc_get") == 0)
		*ret = c->toc_ms;
	else if (strcmp(op, "remote_registry_get") == 0)
		*ret = st->fetch_ms;
	else if (strcmp(op, "read_on_demand") == 0)
		*ret = st->read_us;
	else if (strcmp(op, "prefetch_total") == 0 && st->prefetch_ns)
		sg_hist_observe(ret, (double)st->prefetch_ns / 1e6);
	else if (strcmp(op, "background_fetch_total") == 0 && st->background_ns)
		sg_hist_observe(ret, (double)st->background_ns / 1e6);
	return ret->count > 0;
}

static uint64_t content_value(const struct sg_layer_stats *st, const char *op)
{
	if (strcmp(op, "on_demand_read_access_count") == 0)
		return st->reads;
	if (strcmp(op, "on_demand_remote_registry_fetch_count") == 0)
		return st->ondemand_fetches;
	if (strcmp(op, "on_demand_bytes_served") == 0)
		return st->read_bytes;
	if (strcmp(op, "on_demand_bytes_fetched") == 0)
		return st->ondemand_fetched_bytes;
	return 0;
}

static void write_operations(struct sg_remote *r, struct sg_prom *p, enum op_kind kind,
			     const char *help, const char *const *ops)
{
	static const char *const type[] = { "histogram", "histogram", "counter", "gauge" };

	sg_prom_family(p, family_name[kind], type[kind], help);
	for (struct sg_list *n = r->contents.next; n != &r->contents; n = n->next) {
		struct content *c = sg_container_of(n, struct content, link);
		struct sg_layer_stats st;
		struct sg_hist h;

		if (!c->layer)
			continue;
		sg_layer_stats(c->layer, &st);
		for (size_t i = 0; ops[i]; i++) {
			const char *labels[] = { "operation_type", ops[i], "layer", c->digest, NULL };
			if (kind == OP_COUNT || kind == OP_BYTES)
				sg_prom_sample(p, family_name[kind], labels,
					       (double)content_value(&st, ops[i]));
			else if (content_hist(c, &st, ops[i], &h))
				/* stargz-snapshotter's buckets: 1..16384 ms, 1..1024 µs. */
				sg_prom_hist(p, family_name[kind], labels, &h,
					     kind == OP_MS ? 15 : 11, 1);
		}
	}
}

/* Per mount (stargz-snapshotter's layer metrics: digest and mountpoint). */
enum mount_value { MV_FETCHED, MV_PREFETCHED, MV_SIZE, MV_PT_OPENS, MV_DAEMON_OPENS,
		   MV_FUSE_REQUESTS, MV_FUSE_UNANSWERED };

static void write_per_mount(struct sg_remote *r, struct sg_prom *p, const char *name,
			    const char *type, const char *help, enum mount_value what)
{
	sg_prom_family(p, name, type, help);
	for (struct sg_list *n = r->layers.next; n != &r->layers; n = n->next) {
		struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		struct sg_layer_stats st;
		struct sg_lazyfs_stats fst = { 0 };
		double v = 0;

		if (rl->state != RL_MOUNTED || !rl->c->layer || !rl->fs)
			continue;
		sg_layer_stats(rl->c->layer, &st);
		sg_lazyfs_stats(rl->fs, &fst);
		switch (what) {
		case MV_FETCHED: v = (double)st.fetched_bytes; break;
		case MV_PREFETCHED: v = (double)st.prefetched_bytes; break;
		case MV_SIZE: v = (double)rl->c->blob_size; break;
		case MV_PT_OPENS: v = (double)fst.passthrough_opens; break;
		case MV_DAEMON_OPENS: v = (double)fst.cached_opens; break;
		case MV_FUSE_REQUESTS: v = (double)fst.requests; break;
		case MV_FUSE_UNANSWERED: v = (double)fst.unanswered; break;
		}
		const char *labels[] = { "digest", rl->c->digest, "mountpoint", rl->mountpoint, NULL };
		sg_prom_sample(p, name, labels, v);
	}
}

/* Per layer digest, our own. */
enum layer_value { LV_CHUNKS, LV_CHUNKS_PRESENT, LV_CACHE_BYTES, LV_VERIFY_FAILURES,
		   LV_EVICTED, LV_FETCH_REQUESTS, LV_PREFETCH_DONE, LV_BACKGROUND_DONE,
		   LV_SPECULATIVE, LV_SPECULATIVE_USED };

static void write_per_layer(struct sg_remote *r, struct sg_prom *p, const char *name,
			    const char *type, const char *help, enum layer_value what)
{
	sg_prom_family(p, name, type, help);
	for (struct sg_list *n = r->contents.next; n != &r->contents; n = n->next) {
		struct content *c = sg_container_of(n, struct content, link);
		struct sg_layer_stats st;
		double v = 0;

		if (!c->layer)
			continue;
		sg_layer_stats(c->layer, &st);
		switch (what) {
		case LV_CHUNKS: v = (double)st.chunks_total; break;
		case LV_CHUNKS_PRESENT: v = (double)st.chunks_present; break;
		case LV_CACHE_BYTES: v = (double)st.cache_bytes; break;
		case LV_VERIFY_FAILURES: v = (double)st.verify_failures; break;
		case LV_EVICTED: v = (double)st.evicted_bytes; break;
		case LV_FETCH_REQUESTS: v = (double)st.fetch_requests; break;
		case LV_PREFETCH_DONE: v = st.prefetch_done; break;
		case LV_BACKGROUND_DONE: v = st.background_done; break;
		case LV_SPECULATIVE: v = (double)st.speculative_bytes; break;
		case LV_SPECULATIVE_USED: v = (double)st.speculative_used_bytes; break;
		}
		const char *labels[] = { "layer", c->digest, NULL };
		sg_prom_sample(p, name, labels, v);
	}
}

void sg_remote_metrics(struct sg_remote *r, struct sg_prom *p)
{
	static const char *const ms_ops[] = { "mount", "stargz_toc_get", "remote_registry_get",
					      "prefetch_total", "background_fetch_total", NULL };
	static const char *const us_ops[] = { "read_on_demand", NULL };
	static const char *const count_ops[] = { "on_demand_read_access_count",
						 "on_demand_remote_registry_fetch_count", NULL };
	static const char *const bytes_ops[] = { "on_demand_bytes_served", "on_demand_bytes_fetched",
						 NULL };
	struct sg_cache_bound_stats cs;

	if (!r)
		return;
	write_operations(r, p, OP_MS, "Latency in milliseconds of stargz snapshotter operations. "
			 "Broken down by operation type and layer sha.", ms_ops);
	write_operations(r, p, OP_US, "Latency in microseconds of stargz snapshotter operations. "
			 "Broken down by operation type and layer sha.", us_ops);
	write_operations(r, p, OP_COUNT, "The count of stargz snapshotter operations. "
			 "Broken down by operation type and layer sha.", count_ops);
	write_operations(r, p, OP_BYTES, "The number of bytes served per stargz snapshotter "
			 "operations. Broken down by operation type and layer sha.", bytes_ops);
	/* stargz-snapshotter's layer metrics (fs/metrics/layer: "digest" and "mountpoint"),
	 * then ours per mount. */
	static const struct { const char *name, *type, *help; enum mount_value what; } mounts[] = {
		{ "stargz_fs_layer_fetched_size_bytes", "counter", "Total fetched size of the layer",
		  MV_FETCHED },
		{ "stargz_fs_layer_prefetch_size_bytes", "counter",
		  "Total prefetched size of the layer", MV_PREFETCHED },
		{ "stargz_fs_layer_size_bytes", "counter", "Total size of the layer", MV_SIZE },
		{ "stargzd_passthrough_opens_total", "counter",
		  "Opens of a mount served by the kernel from the cache file (FUSE passthrough)",
		  MV_PT_OPENS },
		{ "stargzd_daemon_opens_total", "counter",
		  "Opens of a mount whose reads come to the daemon", MV_DAEMON_OPENS },
		{ "stargzd_fuse_requests_total", "counter",
		  "FUSE requests read from the kernel, per mount", MV_FUSE_REQUESTS },
		{ "stargzd_fuse_unanswered_requests", "gauge",
		  "FUSE requests read and not answered yet, per mount", MV_FUSE_UNANSWERED },
	};
	static const struct { const char *name, *type, *help; enum layer_value what; } layers[] = {
		{ "stargzd_layer_chunks", "gauge", "Chunks in the layer's TOC", LV_CHUNKS },
		{ "stargzd_layer_chunks_cached", "gauge", "Chunks of the layer in the disk cache now",
		  LV_CHUNKS_PRESENT },
		{ "stargzd_layer_cache_bytes", "gauge",
		  "Disk bytes accounted to the layer's cache directory", LV_CACHE_BYTES },
		{ "stargzd_layer_verification_failures_total", "counter",
		  "Chunks whose bytes did not match their digest", LV_VERIFY_FAILURES },
		{ "stargzd_layer_evicted_bytes_total", "counter",
		  "Bytes of the layer's chunks evicted to stay under the cache bound", LV_EVICTED },
		{ "stargzd_layer_fetch_requests_total", "counter",
		  "Range requests for the layer's blob (on demand, prefetch, background)",
		  LV_FETCH_REQUESTS },
		{ "stargzd_layer_prefetch_done", "gauge",
		  "1 once prefetch of the layer is over (or there was none)", LV_PREFETCH_DONE },
		{ "stargzd_layer_background_fetch_done", "gauge",
		  "1 once background fetch made the whole layer local", LV_BACKGROUND_DONE },
		{ "stargzd_layer_speculative_fetched_bytes_total", "counter",
		  "Compressed bytes fetched before a reader asked (prefetch, background, read-ahead)",
		  LV_SPECULATIVE },
		{ "stargzd_layer_speculative_used_bytes_total", "counter",
		  "Of those, bytes a reader asked the daemon for later", LV_SPECULATIVE_USED },
	};
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++)
		write_per_mount(r, p, mounts[i].name, mounts[i].type, mounts[i].help, mounts[i].what);
	for (size_t i = 0; i < sizeof(layers) / sizeof(layers[0]); i++)
		write_per_layer(r, p, layers[i].name, layers[i].type, layers[i].help, layers[i].what);

	sg_cache_bound_stats(r->cache, &cs);
	const struct { const char *name, *type, *help; double v; } cache[] = {
		{ "stargzd_cache_bytes", "gauge",
		  "Bytes allocated under the cache directory (mounted layers and not)",
		  (double)cs.bytes },
		{ "stargzd_cache_max_bytes", "gauge", "The cache bound (cache_max_bytes)",
		  (double)cs.max_bytes },
		{ "stargzd_cache_evicted_chunks_total", "counter",
		  "Chunks of mounted layers evicted to stay under the bound",
		  (double)cs.evicted_chunks },
		{ "stargzd_cache_evicted_bytes_total", "counter",
		  "Bytes freed by evicting chunks of mounted layers", (double)cs.evicted_bytes },
		{ "stargzd_cache_removed_directories_total", "counter",
		  "Cache directories of layers not mounted removed to stay under the bound",
		  (double)cs.removed_dirs },
		{ "stargzd_cache_writes_refused_total", "counter",
		  "Chunk writes refused for lack of room (served from memory, not cached)",
		  (double)cs.refused },
		{ "stargzd_memory_budget_used_bytes", "gauge",
		  "Memory held by verified chunks not read yet, all layers",
		  (double)sg_mem_budget_used(r->mem) },
		{ "stargzd_memory_budget_max_bytes", "gauge", "Bound of that memory",
		  (double)MEM_BUDGET },
		{ "stargzd_layers_loaded_ahead_total", "counter",
		  "Layers a pull seen by the CRI proxy started loading before containerd's Prepare",
		  (double)r->loaded_ahead },
		{ "stargzd_prepares_joined_ahead_total", "counter",
		  "Prepares that found their layer loading or loaded by the pull",
		  (double)r->joined_ahead },
	};
	for (size_t i = 0; i < sizeof(cache) / sizeof(cache[0]); i++) {
		sg_prom_family(p, cache[i].name, cache[i].type, cache[i].help);
		sg_prom_sample(p, cache[i].name, NULL, cache[i].v);
	}
}

void sg_remote_each_mount(struct sg_remote *r,
			  void (*fn)(void *userdata, const struct sg_remote_mount_info *m),
			  void *userdata)
{
	for (struct sg_list *n = r ? r->layers.next : NULL; r && n != &r->layers; n = n->next) {
		const struct rlayer *rl = sg_container_of(n, struct rlayer, link);
		struct sg_remote_mount_info m = {
			.digest = rl->c->digest,
			.ref = rl->ref,
			.mountpoint = rl->mountpoint,
			.mounted = rl->state == RL_MOUNTED && rl->c->layer && rl->fs,
			.prefetch = r->cfg.prefetch,
			.background_fetch = r->cfg.background_fetch,
		};
		if (m.mounted) {
			m.blob_size = rl->c->blob_size;
			sg_layer_stats(rl->c->layer, &m.layer);
			sg_lazyfs_stats(rl->fs, &m.fs);
		}
		fn(userdata, &m);
	}
}

void sg_remote_cache_stats(struct sg_remote *r, struct sg_cache_bound_stats *ret)
{
	*ret = (struct sg_cache_bound_stats){ 0 };
	if (r)
		sg_cache_bound_stats(r->cache, ret);
}
