/* libFuzzer target: containerd's snapshot API as served by stargzd — the real gRPC server,
 * the real snapshot service and a real snapshot store (SQLite + directories in a scratch
 * root) on the real event loop — fed arbitrary request messages by a gRPC client over a
 * socketpair.
 *
 * Input: records of [method byte][body length, 2 bytes LE][body].  Each record becomes one
 * unary (or List) call with that body as the protobuf message, so protobuf-c decoding,
 * argument checks, label limits, filters and store state transitions all see fuzzed data, in
 * sequences that build on each other (Prepare, then Commit of that key, ...).  Every call must
 * come back with a status; a hang, a leak or a sanitizer report is a finding.  The store is
 * rebuilt every few hundred inputs so the scratch root stays small. */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/grpc.h"
#include "daemon/snapshot.h"
#include "daemon/snapshot_rpc.h"
#include "tests/helpers/grpc_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sg_loop *fz_loop;
static struct sg_snapshots *fz_store;
static struct sg_snapshot_service *fz_svc;
static char fz_root[64];
static unsigned fz_inputs;
static bool fz_done;

static int rm_one(const char *p, const struct stat *st, int t, struct FTW *f)
{
	(void)st;
	(void)f;
	return t == FTW_DP ? rmdir(p) : unlink(p);
}

static void fz_reset_store(void)
{
	if (fz_svc)
		sg_snapshot_service_free(fz_svc);
	if (fz_store)
		sg_snapshots_close(fz_store);
	if (fz_root[0])
		nftw(fz_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	snprintf(fz_root, sizeof(fz_root), "/tmp/stargzd-fuzz-snap-XXXXXX");
	if (!mkdtemp(fz_root))
		abort();
	if (sg_snapshots_open(fz_root, &fz_store, NULL) < 0)
		abort();
	if (sg_snapshot_service_new(fz_loop, fz_store, NULL, &fz_svc) < 0)
		abort();
}

/* At exit (the end of a libFuzzer run, or of each input the replay driver runs in its own
 * child), the scratch root goes too, instead of piling up in /tmp. */
__attribute__((destructor)) static void fz_remove_root(void)
{
	if (fz_root[0])
		nftw(fz_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void fz_on_done(void *ud)
{
	(void)ud;
	fz_done = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_grpc_limits lim = { .max_message = 65536, .shutdown_timeout_ms = 20 };
	struct sg_grpc_server *server = NULL;
	struct gc_conn *conn;
	int sv[2];

	if (!fz_loop && sg_loop_new(NULL, &fz_loop) < 0)
		abort();
	if (!fz_store || ++fz_inputs % 500 == 0)
		fz_reset_store();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	if (sg_grpc_server_new(fz_loop, -1, sg_snapshot_methods, sg_snapshot_methods_count, &lim,
			       fz_svc, &server) < 0 ||
	    sg_grpc_server_adopt(server, sv[0]) < 0)
		abort();
	conn = gc_conn_new(sv[1]);
	if (!conn)
		abort();

	for (size_t off = 0; off + 3 <= size;) {
		size_t m = data[off] % sg_snapshot_methods_count;
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
		off += 3;
		if (len > size - off)
			len = size - off;
		struct gc_call call;
		memset(&call, 0, sizeof(call));
		if (gc_call_start(conn, &call, sg_snapshot_methods[m].path, data + off, len) < 0)
			abort();
		off += len;
		int spins = 0;
		while (!call.done && spins++ < 20000) {
			if (gc_pump(conn, 0) < 0)
				break;
			if (sg_loop_run_once(fz_loop, 0) < 0)
				abort();
		}
		if (!call.done)
			abort();   /* every call must be answered */
		gc_call_clear(&call);
	}

	gc_conn_free(conn);   /* closes sv[1] */
	sg_grpc_server_shutdown(server, fz_on_done, NULL);
	fz_done = false;
	for (int i = 0; i < 100000 && !fz_done; i++)
		if (sg_loop_run_once(fz_loop, 1) < 0)
			abort();
	if (!fz_done || sg_loop_pending(fz_loop) != 0)
		abort();
	sg_grpc_server_free(server);
	return 0;
}
