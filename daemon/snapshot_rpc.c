#include "daemon/snapshot_rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "containerd/services/snapshots/v1/snapshots.pb-c.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/fdstore.h"
#include "daemon/grpc.h"
#include "daemon/remote.h"
#include "daemon/snapshot.h"

#define SERVICE "/containerd.services.snapshots.v1.Snapshots/"
/* containerd's own server streams List in batches of this many. */
#define LIST_BATCH 100

/* How often mounts of remote snapshots that failed at start are tried again. */
#define RESTORE_RETRY_NS (30ull * 1000000000u)

typedef Containerd__Services__Snapshots__V1__PrepareSnapshotRequest PbPrepare;
typedef Containerd__Services__Snapshots__V1__Info PbInfo;

/* A remote mount in progress for one target; later Prepares of the same target wait on it. */
struct pending_mount {
	struct sg_snapshot_service *svc;
	struct sg_list link;
	int64_t id;
	char *target;
	struct sg_list waiters;   /* struct prepare_waiter */
};

struct prepare_waiter {
	struct sg_list link;
	struct sg_grpc_call *call;
	PbPrepare *req;           /* kept until answered: the fallback needs key, parent, labels */
};

struct sg_snapshot_service {
	struct sg_loop *loop;
	struct sg_snapshots *snapshots;
	struct sg_remote *remote;
	struct sg_list pending;       /* struct pending_mount */
	struct sg_op restore_timer;
	unsigned restoring;
	bool stopping;
	bool keep_mounts;             /* the shutdown is a handover */
	/* Sessions a previous daemon left held, not taken over yet (sg_snapshot_service_take_over). */
	struct sg_held_fd *held;
	size_t n_held;
	struct sg_fdstore *fdstore;
	unsigned adopting;            /* takeovers not finished */
	unsigned adopted, adopt_failed;
	uint64_t start_ns;
	void (*shutdown_done)(void *);
	void *shutdown_ud;
};
typedef Containerd__Types__Mount PbMount;

/* ROOT/snapshots/<id>/fs -> ROOT/snapshots/<id>: where a mount keeps its session state. */
static void state_dir_of(const char *mountpoint, char *buf, size_t len)
{
	snprintf(buf, len, "%s", mountpoint);
	char *slash = strrchr(buf, '/');
	if (slash && slash != buf)
		*slash = '\0';
}

static enum sg_grpc_status status_from_errno(int r)
{
	switch (r) {
	case -ENOENT: return SG_GRPC_NOT_FOUND;
	case -EEXIST: return SG_GRPC_ALREADY_EXISTS;
	case -EINVAL: return SG_GRPC_INVALID_ARGUMENT;
	case -EBUSY: return SG_GRPC_FAILED_PRECONDITION;
	case -EOPNOTSUPP: return SG_GRPC_UNIMPLEMENTED;
	case -EAGAIN: return SG_GRPC_UNAVAILABLE;
	case -ENOMEM: return SG_GRPC_RESOURCE_EXHAUSTED;
	default: return SG_GRPC_INTERNAL;
	}
}

static void finish_error(struct sg_grpc_call *call, const char *method, int r, const char *err)
{
	enum sg_grpc_status st = status_from_errno(r);

	if (st == SG_GRPC_INTERNAL)
		sg_error("%s: %s", method, err);
	else
		sg_debug("%s: %s", method, err);
	sg_grpc_finish(call, st, err);
}

/* Packs any protobuf-c message and sends it as the call's reply. */
static int send_message(struct sg_grpc_call *call, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t stackbuf[4096], *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	int r;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	r = sg_grpc_send(call, buf, len);
	if (buf != stackbuf)
		free(buf);
	return r;
}

static void reply(struct sg_grpc_call *call, const ProtobufCMessage *msg)
{
	int r = send_message(call, msg);
	if (r < 0 && r != -EPIPE)
		sg_grpc_finish(call, SG_GRPC_INTERNAL, "cannot send reply");
	else
		sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

static void reply_empty(struct sg_grpc_call *call)
{
	Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
	reply(call, &empty.base);
}

/* The generated map-entry types differ per message but all are { base, key, value }. */
#define LABELS_FROM(msg, out) \
	do { \
		(out) = calloc((msg)->n_labels + 1, sizeof(struct sg_label)); \
		for (size_t i_ = 0; (out) && i_ < (msg)->n_labels; i_++) { \
			(out)[i_].key = (msg)->labels[i_]->key; \
			(out)[i_].value = (msg)->labels[i_]->value; \
		} \
	} while (0)

/* ---- mounts ---- */

struct pb_mounts {
	PbMount *m;
	PbMount **ptrs;
	size_t n;
};

static int mounts_to_pb(const struct sg_mounts *in, struct pb_mounts *out)
{
	out->n = in->n;
	out->m = calloc(in->n + 1, sizeof(*out->m));
	out->ptrs = calloc(in->n + 1, sizeof(*out->ptrs));
	if (!out->m || !out->ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < in->n; i++) {
		PbMount init = CONTAINERD__TYPES__MOUNT__INIT;
		out->m[i] = init;
		out->m[i].type = in->m[i].type;
		out->m[i].source = in->m[i].source;
		out->m[i].target = (char *)"";
		out->m[i].n_options = in->m[i].n_options;
		out->m[i].options = in->m[i].options;
		out->ptrs[i] = &out->m[i];
	}
	return 0;
}

static void pb_mounts_clear(struct pb_mounts *m)
{
	free(m->m);
	free(m->ptrs);
}

/* All three mount replies (Prepare, View, Mounts) have the same shape. */
static void reply_mounts(struct sg_grpc_call *call, const struct sg_mounts *mounts)
{
	Containerd__Services__Snapshots__V1__MountsResponse resp =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_RESPONSE__INIT;
	struct pb_mounts pb = { 0 };

	if (mounts_to_pb(mounts, &pb) < 0) {
		pb_mounts_clear(&pb);
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	resp.n_mounts = pb.n;
	resp.mounts = pb.ptrs;
	reply(call, &resp.base);
	pb_mounts_clear(&pb);
}

/* ---- info ---- */

struct pb_info {
	PbInfo info;
	Google__Protobuf__Timestamp created, updated;
	Containerd__Services__Snapshots__V1__Info__LabelsEntry *entries;
	Containerd__Services__Snapshots__V1__Info__LabelsEntry **ptrs;
};

static void ts_from_ns(Google__Protobuf__Timestamp *ts, int64_t ns)
{
	Google__Protobuf__Timestamp init = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	*ts = init;
	ts->seconds = ns / 1000000000;
	ts->nanos = (int32_t)(ns % 1000000000);
}

/* Points into snap: valid while snap is. */
static int info_to_pb(const struct sg_snap *snap, struct pb_info *out)
{
	PbInfo init = CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__INIT;

	memset(out, 0, sizeof(*out));
	out->info = init;
	out->info.name = snap->name;
	out->info.parent = snap->parent ? snap->parent : (char *)"";
	out->info.kind = (Containerd__Services__Snapshots__V1__Kind)snap->kind;
	ts_from_ns(&out->created, snap->created_ns);
	ts_from_ns(&out->updated, snap->updated_ns);
	out->info.created_at = &out->created;
	out->info.updated_at = &out->updated;
	out->entries = calloc(snap->n_labels + 1, sizeof(*out->entries));
	out->ptrs = calloc(snap->n_labels + 1, sizeof(*out->ptrs));
	if (!out->entries || !out->ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < snap->n_labels; i++) {
		Containerd__Services__Snapshots__V1__Info__LabelsEntry e =
			CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__LABELS_ENTRY__INIT;
		e.key = snap->labels[i].key;
		e.value = snap->labels[i].value;
		out->entries[i] = e;
		out->ptrs[i] = &out->entries[i];
	}
	out->info.n_labels = snap->n_labels;
	out->info.labels = out->ptrs;
	return 0;
}

static void pb_info_clear(struct pb_info *p)
{
	free(p->entries);
	free(p->ptrs);
}

/* ---- handlers ---- */

#define UNPACK(type, lower, msg, len, call) \
	({ \
		type *m_ = lower##__unpack(NULL, (len), (msg)); \
		if (!m_) \
			sg_grpc_finish((call), SG_GRPC_INVALID_ARGUMENT, "malformed request message"); \
		m_; \
	})

static void prepare_or_view(struct sg_grpc_call *call, struct sg_snapshots *s, const char *method,
			    enum sg_snap_kind kind, const char *key, const char *parent,
			    const struct sg_label *labels, size_t n_labels)
{
	struct sg_mounts mounts = { 0 };
	struct sg_error err = { 0 };
	int r = sg_snapshots_prepare(s, kind, key, parent, labels, n_labels, &mounts, &err);

	if (r < 0)
		finish_error(call, method, r, err.msg);
	else
		reply_mounts(call, &mounts);
	sg_mounts_clear(&mounts);
}

static void plain_prepare(struct sg_snapshot_service *svc, struct sg_grpc_call *call,
			  const PbPrepare *req)
{
	struct sg_label *labels;

	LABELS_FROM(req, labels);
	if (!labels)
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		prepare_or_view(call, svc->snapshots, "prepare", SG_SNAP_ACTIVE, req->key, req->parent,
				labels, req->n_labels);
	free(labels);
}

static void waiter_done(struct prepare_waiter *w)
{
	protobuf_c_message_free_unpacked(&w->req->base, NULL);
	free(w);
}

static void already_exists(struct sg_grpc_call *call, const char *target)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "target snapshot \"%s\": already exists", target);
	sg_grpc_finish(call, SG_GRPC_ALREADY_EXISTS, msg);
}

static void on_remote_mounted(void *userdata, int res, const char *err)
{
	struct pending_mount *pm = userdata;
	struct sg_snapshot_service *svc = pm->svc;
	struct sg_error e = { 0 };
	struct sg_list *n;

	sg_list_unlink(&pm->link);
	if (res == 0 && sg_snapshots_remote_ready(svc->snapshots, pm->id, &e) < 0) {
		sg_error("remote snapshot %s: %s", pm->target, e.msg);
		res = -EIO;
	}
	if (res == 0) {
		sg_info("layer %s mounted lazily", pm->target);
	} else {
		/* Anything that prevents a lazy mount falls back to a normal pull: containerd
		 * gets an active snapshot to unpack the layer into. */
		sg_warn("cannot mount %s lazily (%s); falling back to a normal pull", pm->target,
			err ? err : strerror(-res));
		if (sg_snapshots_remote_abort(svc->snapshots, pm->id, &e) < 0)
			sg_error("remote snapshot %s: %s", pm->target, e.msg);
	}
	while ((n = sg_list_pop(&pm->waiters))) {
		struct prepare_waiter *w = sg_container_of(n, struct prepare_waiter, link);
		if (res == 0)
			already_exists(w->call, pm->target);
		else
			plain_prepare(svc, w->call, w->req);
		waiter_done(w);
	}
	free(pm->target);
	free(pm);
}

/* The mount keys of the layers under snapshot id (its parent chain) for info: its image uses
 * them too, whoever mounted them (a hint: without it the image's profiles and entry
 * programs skip them).  Returns what the caller frees once the mount call returned. */
static int64_t *layers_below(struct sg_snapshot_service *svc, int64_t id,
			     struct sg_remote_layer *info)
{
	int64_t *below = NULL;
	size_t n = 0;

	if (sg_snapshots_ancestors(svc->snapshots, id, &below, &n) < 0)
		return NULL;
	info->below = below;
	info->n_below = n;
	return below;
}

/* The remote path of Prepare.  Returns false when the request is not for a remote layer
 * (or cannot take this path), so the caller does a plain prepare. */
static bool remote_prepare(struct sg_snapshot_service *svc, struct sg_grpc_call *call, PbPrepare *req)
{
	struct sg_remote_layer info;
	struct sg_label *labels;
	struct prepare_waiter *w;
	struct pending_mount *pm;
	struct sg_snap existing;
	const char *target;
	struct sg_error err = { 0 };
	int64_t id;
	struct sg_list *n;
	int r;

	if (!svc->remote || svc->stopping)
		return false;
	LABELS_FROM(req, labels);
	if (!labels)
		return false;
	if (!sg_remote_layer_info(labels, req->n_labels, &info)) {
		free(labels);
		return false;
	}
	target = NULL;
	for (size_t i = 0; i < req->n_labels; i++)
		if (strcmp(labels[i].key, SG_LABEL_TARGET) == 0)
			target = labels[i].value;
	sg_debug("prepare %s: remote layer %s", req->key, target ? target : "(no target)");
	/* Already there (an earlier pull of an image sharing the layer). */
	if (sg_snapshots_stat(svc->snapshots, target, &existing, &err) == 0) {
		bool remote = existing.remote == SG_SNAP_REMOTE;
		sg_snap_clear(&existing);
		free(labels);
		if (!remote)
			return false;   /* a local snapshot by that name: let the plain path decide */
		already_exists(call, target);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		return true;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		free(labels);
		return false;
	}
	w->call = call;
	w->req = req;
	/* Being mounted for another Prepare: wait for the same outcome. */
	for (n = svc->pending.next; n != &svc->pending; n = n->next) {
		pm = sg_container_of(n, struct pending_mount, link);
		if (strcmp(pm->target, target) == 0) {
			sg_list_insert_tail(&pm->waiters, &w->link);
			free(labels);
			return true;
		}
	}
	r = sg_snapshots_remote_reserve(svc->snapshots, target, req->parent, labels, req->n_labels,
					&id, &err);
	free(labels);
	if (r < 0) {
		free(w);
		if (r == -EEXIST)
			return false;
		finish_error(call, "prepare", r, err.msg);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		return true;
	}
	pm = calloc(1, sizeof(*pm));
	if (pm)
		pm->target = strdup(target);
	if (!pm || !pm->target) {
		if (pm)
			free(pm);
		free(w);
		(void)sg_snapshots_remote_abort(svc->snapshots, id, &err);
		return false;
	}
	pm->svc = svc;
	pm->id = id;
	sg_list_init(&pm->waiters);
	sg_list_insert_tail(&pm->waiters, &w->link);
	sg_list_insert_tail(&svc->pending, &pm->link);
	char mountpoint[4200], state_dir[4200];
	sg_snapshots_path(svc->snapshots, id, mountpoint, sizeof(mountpoint));
	state_dir_of(mountpoint, state_dir, sizeof(state_dir));
	info.state_dir = state_dir;
	int64_t *below = layers_below(svc, id, &info);
	r = sg_remote_mount(svc->remote, id, mountpoint, &info, on_remote_mounted, pm);
	free(below);
	if (r < 0)
		on_remote_mounted(pm, r, "cannot start fetching the layer");
	return true;
}

static void handle_prepare(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	struct sg_snapshot_service *svc = ud;
	PbPrepare *req = UNPACK(PbPrepare,
				containerd__services__snapshots__v1__prepare_snapshot_request, msg,
				len, call);

	if (!req)
		return;
	if (remote_prepare(svc, call, req))
		return;   /* answered, or will be; owns req */
	plain_prepare(svc, call, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_view(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__ViewSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__ViewSnapshotRequest,
		       containerd__services__snapshots__v1__view_snapshot_request, msg, len, call);
	struct sg_label *labels;

	if (!req)
		return;
	LABELS_FROM(req, labels);
	if (!labels)
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		prepare_or_view(call, ((struct sg_snapshot_service *)ud)->snapshots, "view",
				SG_SNAP_VIEW, req->key, req->parent, labels, req->n_labels);
	free(labels);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_mounts(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__MountsRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__MountsRequest,
		       containerd__services__snapshots__v1__mounts_request, msg, len, call);
	struct sg_mounts mounts = { 0 };
	struct sg_error err = { 0 };

	if (!req)
		return;
	int r = sg_snapshots_mounts(((struct sg_snapshot_service *)ud)->snapshots, req->key, &mounts, &err);
	if (r < 0)
		finish_error(call, "mounts", r, err.msg);
	else
		reply_mounts(call, &mounts);
	sg_mounts_clear(&mounts);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_commit(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__CommitSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__CommitSnapshotRequest,
		       containerd__services__snapshots__v1__commit_snapshot_request, msg, len, call);
	struct sg_label *labels;
	struct sg_error err = { 0 };

	if (!req)
		return;
	LABELS_FROM(req, labels);
	if (!labels) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		int r = sg_snapshots_commit(((struct sg_snapshot_service *)ud)->snapshots, req->name, req->key, labels, req->n_labels, &err);
		if (r < 0)
			finish_error(call, "commit", r, err.msg);
		else
			reply_empty(call);
	}
	free(labels);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

struct remove_ctx {
	struct sg_snapshot_service *svc;
	struct sg_grpc_call *call;
	char *key;
};

static void finish_remove(struct sg_snapshot_service *svc, struct sg_grpc_call *call,
			  const char *key)
{
	struct sg_error err = { 0 };
	int r = sg_snapshots_remove(svc->snapshots, key, &err);

	sg_debug("remove %s: %s", key, r < 0 ? err.msg : "ok");
	if (r < 0) {
		finish_error(call, "remove", r, err.msg);
		return;
	}
	if (err.msg[0])
		sg_warn("remove %s: %s", key, err.msg);
	reply_empty(call);
}

static void on_remote_unmounted(void *userdata, int res, const char *err)
{
	struct remove_ctx *c = userdata;

	(void)res;
	(void)err;
	finish_remove(c->svc, c->call, c->key);
	free(c->key);
	free(c);
}

static void handle_remove(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	struct sg_snapshot_service *svc = ud;
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__RemoveSnapshotRequest,
		       containerd__services__snapshots__v1__remove_snapshot_request, msg, len, call);
	struct sg_snap snap;
	struct sg_error err = { 0 };

	if (!req)
		return;
	sg_debug("remove %s requested", req->key);
	/* A lazily mounted layer is unmounted first (children make Remove fail anyway, and an
	 * overlay still using it would keep it busy: check before unmounting).  One still being
	 * mounted again after a restart is cancelled the same way: left alone, its mount would
	 * go on after the row and directory are gone (containerd's GC removes snapshots while
	 * a restarted daemon restores them) and fail on the missing mountpoint. */
	if (svc->remote && sg_snapshots_stat(svc->snapshots, req->key, &snap, &err) == 0) {
		bool remote = snap.remote == SG_SNAP_REMOTE;
		int64_t id = snap.id;
		sg_snap_clear(&snap);
		struct remove_ctx *c = remote ? calloc(1, sizeof(*c)) : NULL;
		if (c && (c->key = strdup(req->key))) {
			c->svc = svc;
			c->call = call;
			/* Refuse early if it has children: unmounting first would break them. */
			if (sg_snapshots_remove_check(svc->snapshots, req->key, NULL) < 0) {
				finish_remove(svc, call, req->key);
				free(c->key);
				free(c);
			} else {
				sg_remote_unmount(svc->remote, id, on_remote_unmounted, c);
			}
			protobuf_c_message_free_unpacked(&req->base, NULL);
			return;
		}
		free(c);
	}
	finish_remove(svc, call, req->key);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void reply_info(struct sg_grpc_call *call, const struct sg_snap *snap, bool update)
{
	Containerd__Services__Snapshots__V1__StatSnapshotResponse stat =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_RESPONSE__INIT;
	Containerd__Services__Snapshots__V1__UpdateSnapshotResponse upd =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__UPDATE_SNAPSHOT_RESPONSE__INIT;
	struct pb_info pb;

	if (info_to_pb(snap, &pb) < 0) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (update) {
		upd.info = &pb.info;
		reply(call, &upd.base);
	} else {
		stat.info = &pb.info;
		reply(call, &stat.base);
	}
	pb_info_clear(&pb);
}

static void handle_stat(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__StatSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__StatSnapshotRequest,
		       containerd__services__snapshots__v1__stat_snapshot_request, msg, len, call);
	struct sg_snap snap = { 0 };
	struct sg_error err = { 0 };

	if (!req)
		return;
	int r = sg_snapshots_stat(((struct sg_snapshot_service *)ud)->snapshots, req->key, &snap, &err);
	if (r < 0)
		finish_error(call, "stat", r, err.msg);
	else
		reply_info(call, &snap, false);
	sg_snap_clear(&snap);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_update(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__UpdateSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__UpdateSnapshotRequest,
		       containerd__services__snapshots__v1__update_snapshot_request, msg, len, call);
	struct sg_snap snap = { 0 };
	struct sg_label *labels = NULL;
	struct sg_error err = { 0 };

	if (!req)
		return;
	if (!req->info) {
		sg_grpc_finish(call, SG_GRPC_INVALID_ARGUMENT, "update needs the snapshot info");
		goto out;
	}
	LABELS_FROM(req->info, labels);
	if (!labels) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	size_t n_paths = req->update_mask ? req->update_mask->n_paths : 0;
	const char *const *paths = req->update_mask ? (const char *const *)req->update_mask->paths : NULL;
	int r = sg_snapshots_update(((struct sg_snapshot_service *)ud)->snapshots, req->info->name, labels, req->info->n_labels, paths, n_paths,
				    &snap, &err);
	if (r < 0)
		finish_error(call, "update", r, err.msg);
	else
		reply_info(call, &snap, true);
out:
	free(labels);
	sg_snap_clear(&snap);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

struct list_batch {
	struct sg_grpc_call *call;
	struct pb_info pb[LIST_BATCH];
	struct sg_snap snaps[LIST_BATCH];
	size_t n;
	int error;
};

static int flush_batch(struct list_batch *b)
{
	Containerd__Services__Snapshots__V1__ListSnapshotsResponse resp =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
	PbInfo *ptrs[LIST_BATCH];
	int r = 0;

	if (b->n == 0)
		return 0;
	for (size_t i = 0; i < b->n && r == 0; i++) {
		r = info_to_pb(&b->snaps[i], &b->pb[i]);
		ptrs[i] = &b->pb[i].info;
	}
	if (r == 0) {
		resp.n_info = b->n;
		resp.info = ptrs;
		r = send_message(b->call, &resp.base);
	}
	for (size_t i = 0; i < b->n; i++) {
		pb_info_clear(&b->pb[i]);
		sg_snap_clear(&b->snaps[i]);
	}
	b->n = 0;
	return r;
}

static int list_collect(const struct sg_snap *snap, void *userdata)
{
	struct list_batch *b = userdata;
	struct sg_snap *copy = &b->snaps[b->n];

	/* Move-by-copy: sg_meta_foreach clears its own snap after we return, so take deep
	 * copies of the strings we keep. */
	memset(copy, 0, sizeof(*copy));
	copy->id = snap->id;
	copy->kind = snap->kind;
	copy->parent_id = snap->parent_id;
	copy->created_ns = snap->created_ns;
	copy->updated_ns = snap->updated_ns;
	copy->name = strdup(snap->name);
	copy->parent = snap->parent ? strdup(snap->parent) : NULL;
	copy->labels = calloc(snap->n_labels + 1, sizeof(*copy->labels));
	b->n++;
	if (!copy->name || !copy->labels || (snap->parent && !copy->parent))
		return -ENOMEM;
	for (size_t i = 0; i < snap->n_labels; i++) {
		copy->labels[i].key = strdup(snap->labels[i].key);
		copy->labels[i].value = strdup(snap->labels[i].value);
		copy->n_labels++;
		if (!copy->labels[i].key || !copy->labels[i].value)
			return -ENOMEM;
	}
	if (b->n == LIST_BATCH)
		return flush_batch(b);
	return 0;
}

static void handle_list(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__ListSnapshotsRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__ListSnapshotsRequest,
		       containerd__services__snapshots__v1__list_snapshots_request, msg, len, call);
	struct list_batch *b;
	struct sg_error err = { 0 };

	if (!req)
		return;
	b = calloc(1, sizeof(*b));
	if (!b) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	b->call = call;
	int r = sg_snapshots_list(((struct sg_snapshot_service *)ud)->snapshots, (const char *const *)req->filters, req->n_filters, list_collect,
				  b, &err);
	if (r == 0)
		r = flush_batch(b);
	else
		flush_batch(b);   /* frees what was collected */
	if (r == -EPIPE)
		sg_grpc_finish(call, SG_GRPC_CANCELLED, "client went away");
	else if (r < 0)
		finish_error(call, "list", r, r == -EINVAL ? err.msg : strerror(-r));
	else
		sg_grpc_finish(call, SG_GRPC_OK, NULL);
	free(b);
out:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_usage(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__UsageRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__UsageRequest,
		       containerd__services__snapshots__v1__usage_request, msg, len, call);
	Containerd__Services__Snapshots__V1__UsageResponse resp =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__USAGE_RESPONSE__INIT;
	struct sg_error err = { 0 };

	if (!req)
		return;
	int r = sg_snapshots_usage(((struct sg_snapshot_service *)ud)->snapshots, req->key, &resp.size, &resp.inodes, &err);
	if (r < 0)
		finish_error(call, "usage", r, err.msg);
	else
		reply(call, &resp.base);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_cleanup(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__CleanupRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__CleanupRequest,
		       containerd__services__snapshots__v1__cleanup_request, msg, len, call);
	struct sg_error err = { 0 };

	if (!req)
		return;
	int r = sg_snapshots_cleanup(((struct sg_snapshot_service *)ud)->snapshots, &err);
	if (r < 0)
		finish_error(call, "cleanup", r, err.msg);
	else
		reply_empty(call);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

const struct sg_grpc_method sg_snapshot_methods[] = {
	{ SERVICE "Prepare", handle_prepare },
	{ SERVICE "View", handle_view },
	{ SERVICE "Mounts", handle_mounts },
	{ SERVICE "Commit", handle_commit },
	{ SERVICE "Remove", handle_remove },
	{ SERVICE "Stat", handle_stat },
	{ SERVICE "Update", handle_update },
	{ SERVICE "List", handle_list },
	{ SERVICE "Usage", handle_usage },
	{ SERVICE "Cleanup", handle_cleanup },
};
const size_t sg_snapshot_methods_count = sizeof(sg_snapshot_methods) / sizeof(sg_snapshot_methods[0]);

/* ---- service lifecycle ---- */

static bool remote_mounted(void *ctx, int64_t id)
{
	return sg_remote_is_mounted(ctx, id);
}

/* A layer was unmounted from outside and released: mount it again at once, so that the next
 * Mounts finds it (meanwhile Mounts refuses it: never a dead path). */
static void on_remote_lost(void *userdata, int64_t id)
{
	struct sg_snapshot_service *svc = userdata;

	sg_info("remote snapshot %lld: mounting it again", (long long)id);
	sg_snapshot_service_restore(svc);
}

int sg_snapshot_service_new(struct sg_loop *loop, struct sg_snapshots *snapshots,
			    struct sg_remote *remote, struct sg_snapshot_service **ret)
{
	struct sg_snapshot_service *svc = calloc(1, sizeof(*svc));

	if (!svc)
		return -ENOMEM;
	svc->loop = loop;
	svc->snapshots = snapshots;
	svc->remote = remote;
	sg_list_init(&svc->pending);
	sg_op_init(&svc->restore_timer);
	if (remote) {
		sg_snapshots_set_remote_check(snapshots, remote_mounted, remote);
		sg_remote_set_lost_handler(remote, on_remote_lost, svc);
	}
	*ret = svc;
	return 0;
}

void sg_snapshot_service_free(struct sg_snapshot_service *svc)
{
	if (!svc)
		return;
	/* The retry timer, lazy mounts waiting for their layer and restores all call back
	 * into svc: sg_snapshot_service_shutdown and its done callback come first. */
	SG_FREE_CHECK(sg_op_busy(&svc->restore_timer) || !sg_list_empty(&svc->pending) ||
		      svc->restoring > 0, "snapshot service");
	for (size_t i = 0; i < svc->n_held; i++)
		close(svc->held[i].fd);   /* never restored: still held by the fdstore */
	free(svc->held);
	free(svc);
}

struct restore_one {
	struct sg_snapshot_service *svc;
	char *name;
	bool adopt;
};

static void on_restored(void *userdata, int res, const char *err)
{
	struct restore_one *ro = userdata;
	struct sg_snapshot_service *svc = ro->svc;

	svc->restoring--;
	if (ro->adopt) {
		svc->adopting--;
		if (res == 0)
			svc->adopted++;
		else
			svc->adopt_failed++;
		if (svc->adopting == 0)
			sg_info("took over %u held mount(s) in %.1f ms since start (%u failed and are "
				"mounted afresh)", svc->adopted,
				(double)(sg_now_ns() - svc->start_ns) / 1e6, svc->adopt_failed);
	}
	if (res == 0 && ro->adopt)
		sg_info("remote snapshot %s taken over: its mount never went away", ro->name);
	else if (res == 0)
		sg_info("remote snapshot %s mounted again", ro->name);
	else if (res == -ECANCELED)
		sg_info("remote snapshot %s: mounting it again was cancelled (removed, or stopping)",
			ro->name);
	else
		sg_warn("remote snapshot %s cannot be mounted now (%s); containers cannot use it "
			"until it is (retrying every %llu s)", ro->name, err ? err : strerror(-res),
			(unsigned long long)(RESTORE_RETRY_NS / 1000000000u));
	free(ro->name);
	free(ro);
	if (svc->stopping && svc->restoring == 0 && svc->shutdown_done)
		sg_remote_shutdown(svc->remote, svc->keep_mounts, svc->shutdown_done,
				   svc->shutdown_ud);
}

/* The held descriptor of snapshot id, removed from the list (-1 if none). */
static int take_held(struct sg_snapshot_service *svc, int64_t id)
{
	char name[64];

	sg_remote_held_name(id, name, sizeof(name));
	for (size_t i = 0; i < svc->n_held; i++) {
		if (strcmp(svc->held[i].name, name) != 0)
			continue;
		int fd = svc->held[i].fd;
		svc->held[i] = svc->held[--svc->n_held];
		return fd;
	}
	return -1;
}

/* A held session nobody will serve: end it (detach its mountpoint) and forget it. */
static void discard_held(struct sg_snapshot_service *svc, int64_t id, const char *mountpoint)
{
	struct sg_error err = { 0 };
	char name[64];

	sg_remote_held_name(id, name, sizeof(name));
	(void)umount2(mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
	if (sg_fdstore_remove(svc->fdstore, name, &err) < 0)
		sg_warn("%s", err.msg);
}

void sg_snapshot_service_take_over(struct sg_snapshot_service *svc, struct sg_fdstore *st,
				   struct sg_held_fd *held, size_t n, uint64_t start_ns)
{
	svc->fdstore = st;
	svc->held = held;
	svc->n_held = n;
	svc->start_ns = start_ns;
}

static int restore_snapshot(const struct sg_snap *snap, void *userdata)
{
	struct sg_snapshot_service *svc = userdata;
	struct sg_remote_layer info;
	char mountpoint[4200], state_dir[4200];

	if (sg_remote_is_mounted(svc->remote, snap->id))
		return 0;
	if (!sg_remote_layer_info(snap->labels, snap->n_labels, &info)) {
		sg_error("remote snapshot %s lacks the labels naming its layer", snap->name);
		return 0;
	}
	struct restore_one *ro = calloc(1, sizeof(*ro));
	if (!ro || !(ro->name = strdup(snap->name))) {
		free(ro);
		return 0;
	}
	ro->svc = svc;
	sg_snapshots_path(svc->snapshots, snap->id, mountpoint, sizeof(mountpoint));
	state_dir_of(mountpoint, state_dir, sizeof(state_dir));
	info.state_dir = state_dir;
	info.from_disk = true;   /* mounted here before: no registry needed */
	int64_t *below = layers_below(svc, snap->id, &info);
	int fd = take_held(svc, snap->id);
	int r;
	svc->restoring++;
	if (fd >= 0) {
		ro->adopt = true;
		svc->adopting++;
		r = sg_remote_adopt(svc->remote, snap->id, mountpoint, &info, fd, on_restored, ro);
		if (r < 0) {
			svc->adopting--;
			close(fd);
			discard_held(svc, snap->id, mountpoint);
		}
	} else {
		r = sg_remote_mount(svc->remote, snap->id, mountpoint, &info, on_restored, ro);
	}
	free(below);
	if (r < 0) {
		svc->restoring--;
		free(ro->name);
		free(ro);
	}
	return 0;
}

static void restore_tick(struct sg_op *op)
{
	struct sg_snapshot_service *svc = sg_container_of(op, struct sg_snapshot_service, restore_timer);

	if (op->res == -ECANCELED || svc->stopping)
		return;
	sg_snapshot_service_restore(svc);
}

void sg_snapshot_service_restore(struct sg_snapshot_service *svc)
{
	if (!svc->remote || svc->stopping)
		return;
	(void)sg_snapshots_foreach_remote(svc->snapshots, restore_snapshot, svc);
	/* Held sessions of snapshots that are gone (removed while no daemon ran, or whose
	 * mount never completed): nobody will serve them. */
	for (size_t i = 0; i < svc->n_held; i++) {
		char mountpoint[4200];
		char *end;
		long long id = strncmp(svc->held[i].name, "sg.", 3) == 0
				       ? strtoll(svc->held[i].name + 3, &end, 10) : 0;
		close(svc->held[i].fd);
		if (id <= 0 || *end) {
			struct sg_error err = { 0 };
			(void)sg_fdstore_remove(svc->fdstore, svc->held[i].name, &err);
			continue;
		}
		sg_snapshots_path(svc->snapshots, id, mountpoint, sizeof(mountpoint));
		sg_info("held FUSE session %s belongs to no remote snapshot; ending it",
			svc->held[i].name);
		discard_held(svc, id, mountpoint);
	}
	free(svc->held);
	svc->held = NULL;
	svc->n_held = 0;
	if (svc->adopting == 0 && svc->start_ns) {
		svc->start_ns = 0;
		sg_debug("no held mount to take over");
	}
	/* Refused only while the loop drains: then there is no later retry to schedule. */
	if (!sg_op_busy(&svc->restore_timer))
		(void)sg_timer_start(svc->loop, &svc->restore_timer, RESTORE_RETRY_NS, restore_tick);
}

void sg_snapshot_service_shutdown(struct sg_snapshot_service *svc, bool keep_mounts,
				  void (*done)(void *), void *ud)
{
	svc->stopping = true;
	svc->keep_mounts = keep_mounts;
	(void)sg_op_cancel(&svc->restore_timer);
	if (!svc->remote) {
		done(ud);
		return;
	}
	svc->shutdown_done = done;
	svc->shutdown_ud = ud;
	if (svc->restoring == 0)
		sg_remote_shutdown(svc->remote, keep_mounts, done, ud);
}
