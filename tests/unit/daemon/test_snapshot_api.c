/* containerd's snapshot API through a real gRPC client (nghttp2) against the real server,
 * service and store on the event loop: every method, the error codes containerd maps back
 * to its errdefs, List streaming in batches, several clients at once, malformed requests. */
#include "containerd/services/snapshots/v1/snapshots.pb-c.h"
#include "daemon/core/loop.h"
#include "daemon/grpc.h"
#include "daemon/snapshot.h"
#include "daemon/snapshot_rpc.h"
#include "tests/helpers/grpc_client.h"
#include "tests/unit/test.h"

#include <ftw.h>

#define SVC "/containerd.services.snapshots.v1.Snapshots/"

typedef Containerd__Services__Snapshots__V1__PrepareSnapshotRequest Prepare;
typedef Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry PrepareLabel;

static struct sg_loop *loop;
static struct sg_snapshots *store;
static struct sg_snapshot_service *svc;
static struct sg_grpc_server *server;
static char root[64];

static int rm_one(const char *p, const struct stat *st, int t, struct FTW *f)
{
	(void)st;
	(void)f;
	return t == FTW_DP ? rmdir(p) : unlink(p);
}

static void cleanup(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	struct sg_error err = { 0 };

	snprintf(root, sizeof(root), "/tmp/stargzd-api-XXXXXX");
	CHECK(mkdtemp(root));
	atexit(cleanup);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	if (sg_snapshots_open(root, &store, &err) < 0)
		TEST_FAIL("open: %s", err.msg);
	CHECK_EQ(sg_snapshot_service_new(loop, store, NULL, &svc), 0);
	CHECK_EQ(sg_grpc_server_new(loop, -1, sg_snapshot_methods, sg_snapshot_methods_count, NULL, svc,
				    &server), 0);
}

static struct gc_conn *client(void)
{
	int sv[2];

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	CHECK_EQ(sg_grpc_server_adopt(server, sv[0]), 0);
	struct gc_conn *c = gc_conn_new(sv[1]);
	CHECK(c);
	return c;
}

/* Runs calls to completion, pumping the client(s) and the server loop. */
static void pump_until(struct gc_conn **conns, size_t nconn, struct gc_call **calls, size_t ncall)
{
	double end = test_now_ms() + 10000;
	for (;;) {
		bool all = true;
		for (size_t i = 0; i < ncall; i++)
			all &= calls[i]->done;
		if (all)
			return;
		if (test_now_ms() > end)
			TEST_FAIL("calls did not complete: status %d http %d stream %d err %d",
				  calls[0]->grpc_status, calls[0]->http_status, calls[0]->stream_id,
				  conns[0]->error);
		for (size_t i = 0; i < nconn; i++)
			CHECK(gc_pump(conns[i], 0) >= 0);
		CHECK(sg_loop_run_once(loop, 1) >= 0);
	}
}

/* One call; returns its grpc-status, leaves the response in *call. */
static int rpc(struct gc_conn *c, struct gc_call *call, const char *method, const ProtobufCMessage *msg)
{
	uint8_t buf[65536];
	size_t len = msg ? protobuf_c_message_pack(msg, buf) : 0;
	char path[128];

	snprintf(path, sizeof(path), SVC "%s", method);
	memset(call, 0, sizeof(*call));
	CHECK_EQ(gc_call_start(c, call, path, buf, len), 0);
	struct gc_call *calls[] = { call };
	pump_until(&c, 1, calls, 1);
	return call->grpc_status;
}

static int prepare(struct gc_conn *c, const char *key, const char *parent, bool view,
		   const char *label_key, const char *label_value, struct gc_call *out)
{
	Prepare req = CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
	PrepareLabel l = CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT;
	PrepareLabel *lp[] = { &l };
	struct gc_call tmp;

	req.snapshotter = (char *)"stargz";
	req.key = (char *)key;
	req.parent = (char *)(parent ? parent : "");
	if (label_key) {
		l.key = (char *)label_key;
		l.value = (char *)label_value;
		req.n_labels = 1;
		req.labels = lp;
	}
	/* View's request has the same fields and numbers: the same bytes work for both. */
	int st = rpc(c, out ? out : &tmp, view ? "View" : "Prepare", &req.base);
	if (!out)
		gc_call_clear(&tmp);
	return st;
}

static int keyed(struct gc_conn *c, const char *method, const char *key, struct gc_call *out)
{
	/* Mounts, Remove, Stat, Usage: {1 snapshotter, 2 key}. */
	Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
	struct gc_call tmp;

	req.snapshotter = (char *)"stargz";
	req.key = (char *)key;
	int st = rpc(c, out ? out : &tmp, method, &req.base);
	if (!out)
		gc_call_clear(&tmp);
	return st;
}

static int commit(struct gc_conn *c, const char *name, const char *key)
{
	Containerd__Services__Snapshots__V1__CommitSnapshotRequest req =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
	struct gc_call call;

	req.snapshotter = (char *)"stargz";
	req.name = (char *)name;
	req.key = (char *)key;
	int st = rpc(c, &call, "Commit", &req.base);
	gc_call_clear(&call);
	return st;
}

static size_t list(struct gc_conn *c, const char *filter, int *status, size_t *messages)
{
	Containerd__Services__Snapshots__V1__ListSnapshotsRequest req =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	char *f[] = { (char *)filter };
	struct gc_call call;
	size_t total = 0;

	req.snapshotter = (char *)"stargz";
	if (filter) {
		req.n_filters = 1;
		req.filters = f;
	}
	*status = rpc(c, &call, "List", &req.base);
	const uint8_t *m;
	size_t len, i, n = gc_call_message(&call, 0, &m, &len);
	for (i = 0; i < n && gc_call_message(&call, i, &m, &len); i++) {
		Containerd__Services__Snapshots__V1__ListSnapshotsResponse *r =
			containerd__services__snapshots__v1__list_snapshots_response__unpack(NULL, len, m);
		CHECK(r);
		total += r->n_info;
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	if (messages)
		*messages = i;
	gc_call_clear(&call);
	return total;
}

TEST(every_method_and_error_code)
{
	struct gc_call call;
	const uint8_t *m;
	size_t len;
	int st;

	setup();
	struct gc_conn *c = client();

	/* Prepare: a bind mount for a parentless active snapshot. */
	CHECK_EQ(prepare(c, "ns/1/a", NULL, false, "k", "v", &call), SG_GRPC_OK);
	CHECK(gc_call_message(&call, 0, &m, &len));
	Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *pr =
		containerd__services__snapshots__v1__prepare_snapshot_response__unpack(NULL, len, m);
	CHECK(pr && pr->n_mounts == 1);
	CHECK_STR(pr->mounts[0]->type, "bind");
	CHECK_STR(pr->mounts[0]->options[0], "rw");
	protobuf_c_message_free_unpacked(&pr->base, NULL);
	gc_call_clear(&call);

	CHECK_EQ(prepare(c, "ns/1/a", NULL, false, NULL, NULL, NULL), SG_GRPC_ALREADY_EXISTS);
	CHECK_EQ(prepare(c, "ns/2/b", "missing", false, NULL, NULL, NULL), SG_GRPC_NOT_FOUND);
	CHECK_EQ(prepare(c, "ns/2/b", "ns/1/a", false, NULL, NULL, NULL), SG_GRPC_INVALID_ARGUMENT);
	CHECK_EQ(prepare(c, "", NULL, false, NULL, NULL, NULL), SG_GRPC_INVALID_ARGUMENT);

	/* Commit, and the errors around it. */
	CHECK_EQ(commit(c, "c", "ns/1/a"), SG_GRPC_OK);
	CHECK_EQ(commit(c, "c2", "ns/1/a"), SG_GRPC_NOT_FOUND);        /* the key is gone */
	CHECK_EQ(commit(c, "d", "c"), SG_GRPC_FAILED_PRECONDITION);     /* not active */
	CHECK_EQ(prepare(c, "ns/3/x", NULL, false, NULL, NULL, NULL), SG_GRPC_OK);
	CHECK_EQ(commit(c, "c", "ns/3/x"), SG_GRPC_ALREADY_EXISTS);

	/* View of one layer: a read-only bind of it.  Mounts agrees; committed has none. */
	CHECK_EQ(prepare(c, "ns/4/view", "c", true, NULL, NULL, NULL), SG_GRPC_OK);
	CHECK_EQ(keyed(c, "Mounts", "ns/4/view", &call), SG_GRPC_OK);
	CHECK(gc_call_message(&call, 0, &m, &len));
	Containerd__Services__Snapshots__V1__MountsResponse *mr =
		containerd__services__snapshots__v1__mounts_response__unpack(NULL, len, m);
	CHECK(mr && mr->n_mounts == 1);
	CHECK_STR(mr->mounts[0]->type, "bind");
	CHECK_STR(mr->mounts[0]->options[0], "ro");
	protobuf_c_message_free_unpacked(&mr->base, NULL);
	gc_call_clear(&call);
	CHECK_EQ(keyed(c, "Mounts", "c", NULL), SG_GRPC_FAILED_PRECONDITION);
	CHECK_EQ(keyed(c, "Mounts", "nope", NULL), SG_GRPC_NOT_FOUND);

	/* Stat: kind, parent, labels (Commit does not inherit the active snapshot's labels). */
	CHECK_EQ(keyed(c, "Stat", "c", &call), SG_GRPC_OK);
	CHECK(gc_call_message(&call, 0, &m, &len));
	Containerd__Services__Snapshots__V1__StatSnapshotResponse *sr =
		containerd__services__snapshots__v1__stat_snapshot_response__unpack(NULL, len, m);
	CHECK(sr && sr->info);
	CHECK_STR(sr->info->name, "c");
	CHECK_EQ(sr->info->kind, CONTAINERD__SERVICES__SNAPSHOTS__V1__KIND__COMMITTED);
	CHECK_EQ(sr->info->n_labels, 0);
	CHECK(sr->info->created_at && sr->info->created_at->seconds > 1700000000);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	gc_call_clear(&call);
	CHECK_EQ(keyed(c, "Stat", "nope", NULL), SG_GRPC_NOT_FOUND);

	/* Update with a labels.KEY field mask; an immutable field is refused. */
	{
		Containerd__Services__Snapshots__V1__UpdateSnapshotRequest req =
			CONTAINERD__SERVICES__SNAPSHOTS__V1__UPDATE_SNAPSHOT_REQUEST__INIT;
		Containerd__Services__Snapshots__V1__Info info = CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__INIT;
		Containerd__Services__Snapshots__V1__Info__LabelsEntry le =
			CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__LABELS_ENTRY__INIT;
		Containerd__Services__Snapshots__V1__Info__LabelsEntry *lp[] = { &le };
		Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
		char *paths[] = { (char *)"labels.containerd.io/gc.root" };
		char big[4097];
		le.key = (char *)"containerd.io/gc.root";
		le.value = (char *)"2026";
		info.name = (char *)"c";
		info.n_labels = 1;
		info.labels = lp;
		mask.n_paths = 1;
		mask.paths = paths;
		req.info = &info;
		req.update_mask = &mask;
		CHECK_EQ(rpc(c, &call, "Update", &req.base), SG_GRPC_OK);
		CHECK(gc_call_message(&call, 0, &m, &len));
		Containerd__Services__Snapshots__V1__UpdateSnapshotResponse *ur =
			containerd__services__snapshots__v1__update_snapshot_response__unpack(NULL, len, m);
		CHECK(ur && ur->info && ur->info->n_labels == 1);
		CHECK_STR(ur->info->labels[0]->value, "2026");
		protobuf_c_message_free_unpacked(&ur->base, NULL);
		gc_call_clear(&call);
		paths[0] = (char *)"parent";
		CHECK_EQ(rpc(c, &call, "Update", &req.base), SG_GRPC_INVALID_ARGUMENT);
		gc_call_clear(&call);
		/* A label over containerd's 4096-byte limit. */
		paths[0] = (char *)"labels";
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		le.value = big;
		CHECK_EQ(rpc(c, &call, "Update", &req.base), SG_GRPC_INVALID_ARGUMENT);
		gc_call_clear(&call);
		info.name = (char *)"nope";
		le.value = (char *)"1";
		CHECK_EQ(rpc(c, &call, "Update", &req.base), SG_GRPC_NOT_FOUND);
		gc_call_clear(&call);
	}

	/* List with containerd's filters. */
	CHECK_EQ(list(c, NULL, &st, NULL), 3);
	CHECK_EQ(st, SG_GRPC_OK);
	CHECK_EQ(list(c, "kind==committed", &st, NULL), 1);
	CHECK_EQ(list(c, "labels.\"containerd.io/gc.root\"==2026,parent==\"\"", &st, NULL), 1);
	CHECK_EQ(list(c, "parent==c", &st, NULL), 1);
	list(c, "name=c", &st, NULL);
	CHECK_EQ(st, SG_GRPC_INVALID_ARGUMENT);

	/* Usage. */
	CHECK_EQ(keyed(c, "Usage", "c", &call), SG_GRPC_OK);
	CHECK(gc_call_message(&call, 0, &m, &len));
	Containerd__Services__Snapshots__V1__UsageResponse *ur =
		containerd__services__snapshots__v1__usage_response__unpack(NULL, len, m);
	CHECK(ur && ur->inodes >= 1);
	protobuf_c_message_free_unpacked(&ur->base, NULL);
	gc_call_clear(&call);
	CHECK_EQ(keyed(c, "Usage", "nope", NULL), SG_GRPC_NOT_FOUND);

	/* Remove: refused with a child, then in order; Cleanup. */
	CHECK_EQ(keyed(c, "Remove", "c", NULL), SG_GRPC_FAILED_PRECONDITION);
	CHECK_EQ(keyed(c, "Remove", "ns/4/view", NULL), SG_GRPC_OK);
	CHECK_EQ(keyed(c, "Remove", "c", NULL), SG_GRPC_OK);
	CHECK_EQ(keyed(c, "Remove", "c", NULL), SG_GRPC_NOT_FOUND);
	CHECK_EQ(rpc(c, &call, "Cleanup", NULL), SG_GRPC_OK);
	gc_call_clear(&call);

	/* Malformed request bodies and unknown methods. */
	memset(&call, 0, sizeof(call));
	CHECK_EQ(gc_call_start(c, &call, SVC "Stat", "\xff\xff\xff\xff\x0f", 5), 0);
	struct gc_call *calls[] = { &call };
	pump_until(&c, 1, calls, 1);
	CHECK_EQ(call.grpc_status, SG_GRPC_INVALID_ARGUMENT);
	gc_call_clear(&call);
	CHECK_EQ(rpc(c, &call, "Frobnicate", NULL), SG_GRPC_UNIMPLEMENTED);
	gc_call_clear(&call);
	gc_conn_free(c);
}

TEST(list_streams_in_batches)
{
	char key[32];
	size_t messages = 0;
	int st;

	setup();
	struct gc_conn *c = client();
	for (int i = 0; i < 250; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		CHECK_EQ(prepare(c, key, NULL, false, "containerd.io/snapshot.ref", key, NULL), SG_GRPC_OK);
	}
	CHECK_EQ(list(c, NULL, &st, &messages), 250);
	CHECK_EQ(st, SG_GRPC_OK);
	CHECK_EQ(messages, 3);   /* 100 + 100 + 50, as containerd's own server batches */
	CHECK_EQ(list(c, "labels.\"containerd.io/snapshot.ref\"~=\"k1[0-9]9\"", &st, NULL), 10);
	gc_conn_free(c);
}

TEST(concurrent_clients)
{
	enum { CLIENTS = 5, PER = 20 };
	struct gc_conn *conns[CLIENTS];
	static struct gc_call calls[CLIENTS * PER];
	struct gc_call *pcalls[CLIENTS * PER];
	static uint8_t bufs[CLIENTS * PER][256];
	Prepare req = CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
	char key[32];
	int st;

	setup();
	for (int i = 0; i < CLIENTS; i++)
		conns[i] = client();
	/* Everyone prepares at once, many streams per connection. */
	for (int i = 0; i < CLIENTS * PER; i++) {
		snprintf(key, sizeof(key), "c%d-%d", i % CLIENTS, i);
		req.key = key;
		size_t len = protobuf_c_message_pack(&req.base, bufs[i]);
		memset(&calls[i], 0, sizeof(calls[i]));
		CHECK_EQ(gc_call_start(conns[i % CLIENTS], &calls[i], SVC "Prepare", bufs[i], len), 0);
		pcalls[i] = &calls[i];
	}
	pump_until(conns, CLIENTS, pcalls, CLIENTS * PER);
	for (int i = 0; i < CLIENTS * PER; i++) {
		CHECK_EQ(calls[i].grpc_status, SG_GRPC_OK);
		gc_call_clear(&calls[i]);
	}
	/* Then commit half and remove the other half, interleaved across clients. */
	for (int i = 0; i < CLIENTS * PER; i++) {
		snprintf(key, sizeof(key), "c%d-%d", i % CLIENTS, i);
		if (i % 2 == 0) {
			char name[40];
			snprintf(name, sizeof(name), "committed-%d", i);
			CHECK_EQ(commit(conns[(i + 1) % CLIENTS], name, key), SG_GRPC_OK);
		} else {
			CHECK_EQ(keyed(conns[(i + 2) % CLIENTS], "Remove", key, NULL), SG_GRPC_OK);
		}
	}
	CHECK_EQ(list(conns[0], "kind==committed", &st, NULL), CLIENTS * PER / 2);
	CHECK_EQ(list(conns[1], "kind==active", &st, NULL), 0);
	for (int i = 0; i < CLIENTS; i++)
		gc_conn_free(conns[i]);
}

TEST_MAIN()
