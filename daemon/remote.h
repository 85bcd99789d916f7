/* Remote (lazily pulled) layers: from the labels containerd passes on an unpack Prepare to a
 * FUSE mount of the layer.
 *
 * The labels name the image (containerd.io/snapshot/remote/stargz.reference, or the CRI
 * plugin's containerd.io/snapshot/cri.image-ref), the layer (…/stargz.digest or
 * cri.layer-digest) and the TOC digest the publisher signed off
 * (containerd.io/snapshot/stargz/toc.digest).  A blob opener (net/'s registry client, wired
 * in by main.c) gives a range source for the layer blob; the TOC is fetched and verified,
 * and the layer is mounted with its chunk cache under ROOT/cache/<layer digest>/.
 *
 * Everything completes on the loop; mounting itself is the one blocking call. */
#ifndef STARGZD_REMOTE_H
#define STARGZD_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"
#include "daemon/meta.h"
#include "fs/cache_bound.h"
#include "fs/layer.h"
#include "fs/lazyfs.h"

struct sg_fdstore;
struct sg_loop;
struct sg_prom;
struct sg_range_source;
struct sg_remote;

#define SG_LABEL_TARGET "containerd.io/snapshot.ref"
#define SG_LABEL_REMOTE "containerd.io/snapshot/remote"
#define SG_LABEL_REMOTE_VALUE "remote snapshot"
#define SG_LABEL_REF "containerd.io/snapshot/remote/stargz.reference"
#define SG_LABEL_DIGEST "containerd.io/snapshot/remote/stargz.digest"
#define SG_LABEL_LAYERS "containerd.io/snapshot/remote/stargz.layers"
#define SG_LABEL_PREFETCH "containerd.io/snapshot/remote/stargz.prefetch"
#define SG_LABEL_SKIPVERIFY "containerd.io/snapshot/remote/stargz.skipverify"
#define SG_LABEL_TOC_DIGEST "containerd.io/snapshot/stargz/toc.digest"
#define SG_LABEL_CRI_REF "containerd.io/snapshot/cri.image-ref"
#define SG_LABEL_CRI_DIGEST "containerd.io/snapshot/cri.layer-digest"
#define SG_LABEL_CRI_LAYERS "containerd.io/snapshot/cri.image-layers"
#define SG_LABEL_CRI_MANIFEST "containerd.io/snapshot/cri.manifest-digest"

/* Where layer blobs come from.  open() resolves `ref` (an image reference) and `digest` (a
 * layer) to a range source, a continuation in the loop's shape (daemon/core/loop.h): cb(op)
 * runs once from the loop, op->res 0 with *ret_src, or a negative errno with err (may be
 * NULL) saying why; a negative return means nothing started.  net/blob.h's
 * sg_registry_open_blob has this shape. */
struct sg_blob_opener {
	int (*open)(void *ctx, const char *ref, const char *digest,
		    struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
		    sg_op_cb cb);
	/* Optional, the same shape: an open for a blob whose TOC is read next, which may bring
	 * the blob's last `tail` bytes along (0 = the opener's default; net/blob.h's
	 * sg_registry_open_blob_tail); NULL = open. */
	int (*open_for_toc)(void *ctx, const char *ref, const char *digest, size_t tail,
			    struct sg_range_source **ret_src, struct sg_error *err,
			    struct sg_op *op, sg_op_cb cb);
	/* Optional: a source for the blob at once, without opening it (its size unknown), for
	 * the reads that go out beside the open (daemon/early_source.h; net/blob.h's
	 * sg_registry_blob_unsized); NULL = none, a profile's first chunks wait for the TOC. */
	int (*unsized)(void *ctx, const char *ref, const char *digest,
		       struct sg_range_source **ret_src, struct sg_error *err);
	void *ctx;
};

struct sg_remote_config {
	const char *cache_root;       /* ROOT/cache */
	bool prefetch;
	bool background_fetch;
	bool no_passthrough;          /* see sg_lazyfs_options */
	bool allow_skip_verify;       /* honour the skipverify label / missing TOC digests */
	size_t fetch_window;          /* see sg_layer_config.window_bytes; 0 = default */
	bool speculate;               /* see sg_layer_config.speculate */
	bool process_hints;           /* with speculate: daemon/proc_hint.h */
	size_t spec_budget_max;       /* see sg_layer_config.spec_budget_max; 0 = default */
	/* The fetch trace every layer writes to (fs/fetch_trace.h), the caller's; NULL = off. */
	struct sg_fetch_trace *fetch_trace;
	/* Bound of everything under cache_root (fs/cache_bound.h);
	 * 0 = sg_cache_bound_default_max().
	 * Directories of layers not mounted are removed (oldest first) before chunks of
	 * mounted layers are evicted; a mounted layer's directory is never removed. */
	uint64_t cache_max_bytes;
	/* Layers with a chunk larger than this (decompressed) are refused at TOC load, before
	 * any buffer is sized after them (sg_esgz_options.max_chunk_size); 0 = 64 MiB. */
	uint64_t max_chunk_size;
	/* A FUSE request unanswered this long is logged (see sg_lazyfs_options); 0 = 60 s. */
	uint64_t stuck_after_ns;
	/* Without a landmark and without a stargz.prefetch label, prefetch the blob's first
	 * bytes (stargz-snapshotter's prefetch_size); 0 = none. */
	uint64_t prefetch_bytes;
	double attr_timeout, entry_timeout;   /* see sg_lazyfs_options; 0 = default */
	/* Keeps a copy of each mount's /dev/fuse descriptor beyond the process
	 * (daemon/fdstore.h), named "sg.KEY", for mounts given a state_dir; NULL: none. */
	struct sg_fdstore *fdstore;
	/* A handover (sg_remote_shutdown with keep_mounts) lets FUSE requests in flight
	 * finish for this long before leaving them to the next daemon; 0 = 2 s. */
	uint64_t handover_grace_ns;
	/* Learned startup profiles (fs/profile.h): with profile_root (ROOT) set, every layer
	 * records the order in which its chunks are first read into ROOT/profiles
	 * (fs/profile_store.h), and a layer with a stored profile replays it at mount
	 * (sg_layer_replay).  NULL: neither. */
	const char *profile_root;
	uint64_t profile_quiet_ns;    /* see sg_layer_config.profile_quiet_ns; 0 = default */
	/* With profile_root: called (from the loop) the first time a layer of image `ref` is
	 * mounted (also one that another image's mount holds already; the last 64 images are
	 * remembered), so that the owner may fetch that image's profiles into the store
	 * (daemon/profile_pull.h) and then call sg_remote_profiles_stored.  manifest_digest:
	 * the image manifest's digest when the mount's labels give it (the CRI plugin's do),
	 * else NULL.  NULL: none. */
	void (*want_profiles)(void *ctx, const char *ref, const char *manifest_digest);
	void *want_profiles_ctx;
	/* A later mount of the same image calls want_profiles again once the last call is this
	 * old (profiles pushed since are found); 0 = 10 min. */
	uint64_t profile_ask_again_ns;
	/* With speculate: called (from the loop) the first time a layer of image `ref` is
	 * mounted, so that the owner may fetch the image's entry programs from its config
	 * (daemon/image_entry.h) and then call sg_remote_entry_programs.  NULL: none. */
	void (*want_entry)(void *ctx, const char *ref);
	void *want_entry_ctx;
};

struct sg_image_entry;

/* What the labels say about a layer; remote_layer_info() fills it when they suffice. */
struct sg_remote_layer {
	const char *ref;
	const char *digest;
	const char *toc_digest;       /* NULL when the image gave none */
	bool skip_verify;
	uint64_t prefetch_bytes;      /* stargz.prefetch: bytes to prefetch without a landmark */
	const char *layers;           /* stargz.layers / cri.image-layers: this and later layers */
	const char *manifest_digest;  /* cri.manifest-digest: the image manifest's; NULL: not given */
	/* Where the mount keeps what a takeover needs (sg_lazyfs_options.state_dir); with a
	 * fdstore its descriptor is kept there too.  NULL: neither. */
	const char *state_dir;
	/* Rebuild the layer from its cache directory (TOC copy, chunk bitmap) when it was
	 * mounted before, without the registry; the blob is opened on the first read that
	 * needs it (daemon/deferred_source.h).  Falls back to the registry. */
	bool from_disk;
	/* The mount keys (snapshot ids) of the layers under this one in its image, nearest
	 * first: the image uses them too, though another image mounted them (its profiles and
	 * entry programs apply to them).  Keys not mounted are skipped. */
	const int64_t *below;
	size_t n_below;
};

/* The entry programs of image `ref` (daemon/image_entry.h): each command's first candidate
 * path that a ready layer of the image has, top-most layer first, is fetched ahead
 * (sg_layer_speculate_program); a command no ready layer has yet is tried again on each
 * layer of the image that becomes ready later.  Kept for the last few images. */
void sg_remote_entry_programs(struct sg_remote *r, const char *ref, const struct sg_image_entry *e);

/* True when the labels identify a layer that could be mounted lazily. */
bool sg_remote_layer_info(const struct sg_label *labels, size_t n, struct sg_remote_layer *ret);

int sg_remote_new(struct sg_loop *loop, const struct sg_remote_config *config,
		  const struct sg_blob_opener *opener, struct sg_remote **ret);
/* Frees after the loop was drained (a posted eviction may be pending until then). */
void sg_remote_free(struct sg_remote *r);

/* Mounts the layer at mountpoint; cb(userdata, 0 or -errno, message) runs once from the
 * loop.  `key` identifies the mount for sg_remote_unmount (the snapshot id).  Every mount
 * of one layer digest shares one layer (its TOC, chunk state and cache directory): a second
 * mount of a digest in use costs no fetch.  -EBUSY: the digest is in use with another TOC
 * digest or verification setting (a blob has one identity). */
typedef void (*sg_remote_cb)(void *userdata, int res, const char *err);
int sg_remote_mount(struct sg_remote *r, int64_t key, const char *mountpoint,
		    const struct sg_remote_layer *layer, sg_remote_cb cb, void *userdata);
/* As sg_remote_mount, for a mount that outlived the previous daemon: fd is its held
 * /dev/fuse descriptor, taken over (sg_lazyfs_adopt) once the layer is ready.  On 0 the fd
 * is the mount's (closed, and the mountpoint detached, if the takeover fails); on a
 * negative errno it is still the caller's. */
int sg_remote_adopt(struct sg_remote *r, int64_t key, const char *mountpoint,
		    const struct sg_remote_layer *layer, int fd, sg_remote_cb cb, void *userdata);
/* The fdstore name of a mount: "sg.KEY". */
void sg_remote_held_name(int64_t key, char *buf, size_t len);
/* New profiles of image `ref` are in the store: the mounted layers it uses that replay none
 * start replaying theirs, also a layer another image mounted first (one layer, one state). */
void sg_remote_profiles_stored(struct sg_remote *r, const char *ref);
/* An image pull seen before containerd's Prepare (the CRI proxy's PullImage, whose answer
 * comes after every layer was prepared): the image's eStargz layers (those with a TOC
 * digest; `digest` and `toc_digest` from its manifest) start loading now, as a mount's do,
 * and a layer whose TOC is in starts as a mounted one does (its profile's replay, its
 * prefetch, its entry programs), while containerd still resolves the image.  The image's
 * profiles and entry programs are asked for (want_profiles with manifest_digest, want_entry).
 * A Prepare of such a layer then finds it loading or ready, with the same sharing and the
 * same identity check as a second mount (a Prepare naming another TOC digest is refused
 * with -EBUSY, and containerd pulls that layer itself).  Layers in use already are left as
 * they are (and noted as the image's).
 *
 * The hold keeps each content it started until sg_remote_unhold; then a content no mount
 * took closes, or its load is given up.  A load that fails ends quietly (a Prepare would
 * load it again).  0 with *ret, -ECANCELED (shutting down), -ENOMEM.  sg_remote_shutdown
 * lets every hold go; the hold itself is still freed by sg_remote_unhold, which may then run
 * after sg_remote_free. */
struct sg_remote_expected {
	const char *digest;
	const char *toc_digest;      /* NULL: not eStargz, skipped */
};
struct sg_remote_hold;
int sg_remote_hold(struct sg_remote *r, const char *ref, const char *manifest_digest,
		   const struct sg_remote_expected *layers, size_t n, struct sg_remote_hold **ret);
/* pulled: the pull succeeded (layers it loaded that no Prepare took are then worth a log
 * line: containerd had their snapshots, or prepares them with another snapshotter).  NULL
 * is fine. */
void sg_remote_unhold(struct sg_remote_hold *h, bool pulled);
/* Unmounts (if mounted) and releases the layer; cb runs once from the loop. */
void sg_remote_unmount(struct sg_remote *r, int64_t key, sg_remote_cb cb, void *userdata);
bool sg_remote_is_mounted(struct sg_remote *r, int64_t key);
/* Called (from the loop) after a mount that was unmounted from outside stargzd (umount,
 * fusermount -u) has been released; `key` is no longer mounted, and the owner may mount it
 * again.  Until then sg_remote_is_mounted(key) is false, so no dead path is handed out. */
void sg_remote_set_lost_handler(struct sg_remote *r, void (*cb)(void *userdata, int64_t key),
				void *userdata);
/* Writes the metrics of the mounted layers and of the cache (daemon/prom.h):
 * stargz-snapshotter's stargz_fs_* families (operation latencies, counts and bytes per layer
 * digest; fetched, prefetched and blob size per mount) and stargzd_* ones of our own.
 * NULL r writes nothing. */
void sg_remote_metrics(struct sg_remote *r, struct sg_prom *p);

/* One mount, for `stargzd status`. */
struct sg_remote_mount_info {
	const char *digest, *ref, *mountpoint;
	bool mounted;                 /* false: its TOC is still being fetched */
	bool prefetch, background_fetch;   /* as configured */
	uint64_t blob_size;           /* 0 until mounted */
	struct sg_layer_stats layer;  /* zero until mounted */
	struct sg_lazyfs_stats fs;
};
void sg_remote_each_mount(struct sg_remote *r,
			  void (*fn)(void *userdata, const struct sg_remote_mount_info *m),
			  void *userdata);
void sg_remote_cache_stats(struct sg_remote *r, struct sg_cache_bound_stats *ret);
/* Unmounts everything (shutdown); cb once all is released.  keep_mounts (a graceful restart
 * or upgrade): mounts kept by the fdstore are handed over instead (sg_lazyfs_detach): they
 * stay mounted, and the next daemon takes them over. */
void sg_remote_shutdown(struct sg_remote *r, bool keep_mounts, void (*cb)(void *userdata),
			void *userdata);

#endif
