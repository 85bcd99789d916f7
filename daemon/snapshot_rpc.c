#include "daemon/snapshot_rpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/services/snapshots/v1/snapshots.pb-c.h"
#include "daemon/core/log.h"
#include "daemon/grpc.h"
#include "daemon/snapshot.h"

#define SERVICE "/containerd.services.snapshots.v1.Snapshots/"
/* containerd's own server streams List in batches of this many. */
#define LIST_BATCH 100

typedef Containerd__Services__Snapshots__V1__Info PbInfo;
typedef Containerd__Types__Mount PbMount;

static enum sg_grpc_status status_from_errno(int r)
{
	switch (r) {
	case -ENOENT: return SG_GRPC_NOT_FOUND;
	case -EEXIST: return SG_GRPC_ALREADY_EXISTS;
	case -EINVAL: return SG_GRPC_INVALID_ARGUMENT;
	case -EBUSY: return SG_GRPC_FAILED_PRECONDITION;
	case -EOPNOTSUPP: return SG_GRPC_UNIMPLEMENTED;
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
	char err[512];
	int r = sg_snapshots_prepare(s, kind, key, parent, labels, n_labels, &mounts, err, sizeof(err));

	if (r < 0)
		finish_error(call, method, r, err);
	else
		reply_mounts(call, &mounts);
	sg_mounts_clear(&mounts);
}

static void handle_prepare(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__PrepareSnapshotRequest,
		       containerd__services__snapshots__v1__prepare_snapshot_request, msg, len, call);
	struct sg_label *labels;

	if (!req)
		return;
	LABELS_FROM(req, labels);
	if (!labels)
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		prepare_or_view(call, ud, "prepare", SG_SNAP_ACTIVE, req->key, req->parent, labels,
				req->n_labels);
	free(labels);
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
		prepare_or_view(call, ud, "view", SG_SNAP_VIEW, req->key, req->parent, labels,
				req->n_labels);
	free(labels);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_mounts(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__MountsRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__MountsRequest,
		       containerd__services__snapshots__v1__mounts_request, msg, len, call);
	struct sg_mounts mounts = { 0 };
	char err[512];

	if (!req)
		return;
	int r = sg_snapshots_mounts(ud, req->key, &mounts, err, sizeof(err));
	if (r < 0)
		finish_error(call, "mounts", r, err);
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
	char err[512];

	if (!req)
		return;
	LABELS_FROM(req, labels);
	if (!labels) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		int r = sg_snapshots_commit(ud, req->name, req->key, labels, req->n_labels, err,
					    sizeof(err));
		if (r < 0)
			finish_error(call, "commit", r, err);
		else
			reply_empty(call);
	}
	free(labels);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_remove(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__RemoveSnapshotRequest,
		       containerd__services__snapshots__v1__remove_snapshot_request, msg, len, call);
	char err[512] = "";

	if (!req)
		return;
	int r = sg_snapshots_remove(ud, req->key, err, sizeof(err));
	if (r < 0) {
		finish_error(call, "remove", r, err);
	} else {
		if (*err)
			sg_warn("remove %s: %s", req->key, err);
		reply_empty(call);
	}
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
	char err[512];

	if (!req)
		return;
	int r = sg_snapshots_stat(ud, req->key, &snap, err, sizeof(err));
	if (r < 0)
		finish_error(call, "stat", r, err);
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
	char err[512];

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
	int r = sg_snapshots_update(ud, req->info->name, labels, req->info->n_labels, paths, n_paths,
				    &snap, err, sizeof(err));
	if (r < 0)
		finish_error(call, "update", r, err);
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
	char err[512];

	if (!req)
		return;
	b = calloc(1, sizeof(*b));
	if (!b) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	b->call = call;
	int r = sg_snapshots_list(ud, (const char *const *)req->filters, req->n_filters, list_collect,
				  b, err, sizeof(err));
	if (r == 0)
		r = flush_batch(b);
	else
		flush_batch(b);   /* frees what was collected */
	if (r == -EPIPE)
		sg_grpc_finish(call, SG_GRPC_CANCELLED, "client went away");
	else if (r < 0)
		finish_error(call, "list", r, r == -EINVAL ? err : strerror(-r));
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
	char err[512];

	if (!req)
		return;
	int r = sg_snapshots_usage(ud, req->key, &resp.size, &resp.inodes, err, sizeof(err));
	if (r < 0)
		finish_error(call, "usage", r, err);
	else
		reply(call, &resp.base);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void handle_cleanup(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Containerd__Services__Snapshots__V1__CleanupRequest *req =
		UNPACK(Containerd__Services__Snapshots__V1__CleanupRequest,
		       containerd__services__snapshots__v1__cleanup_request, msg, len, call);
	char err[512];

	if (!req)
		return;
	int r = sg_snapshots_cleanup(ud, err, sizeof(err));
	if (r < 0)
		finish_error(call, "cleanup", r, err);
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
