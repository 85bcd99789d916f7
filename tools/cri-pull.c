/* cri-pull: pulls an image the way kubelet does, through containerd's CRI plugin
 * (runtime.v1.ImageService/PullImage over containerd's socket), for the benchmark's CRI mode
 * (tools/bench/run.sh, BENCH_PULL=cri) and for debugging.
 *
 *   cri-pull [--timeout-ms N] CONTAINERD-SOCKET REF
 *
 * The CRI plugin pulls with its configured snapshotter and passes the snapshotter the CRI
 * labels (containerd.io/snapshot/cri.image-ref, .layer-digest, .image-layers and
 * .manifest-digest).  A compiled client, so that the pull's time is containerd's and the
 * snapshotter's, not an interpreter's start (Debian's python3 with its gRPC module takes
 * 0.12-0.16 s to start, against 0.02-0.03 s without it).
 *
 * Prints "image_ref <ref>" (the image id the CRI plugin answers) on success.  Exit status: 0
 * success, 1 failure ("cri-pull: ..." on stderr, with the gRPC status), 64 bad usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/loop.h"
#include "daemon/cri_proxy.h"
#include "daemon/grpc_client.h"

#define PULL_PATH "/runtime.v1.ImageService/PullImage"

struct call {
	struct sg_op op;
	struct sg_grpc_reply reply;
	bool done;
};

static void on_reply(struct sg_op *op)
{
	struct call *c = sg_container_of(op, struct call, op);
	c->done = true;
}

static int usage(void)
{
	fprintf(stderr, "usage: cri-pull [--timeout-ms N] CONTAINERD-SOCKET REF\n");
	return 64;
}

int main(int argc, char **argv)
{
	unsigned long timeout_ms = 300000;
	int i = 1, rc = 1, r;

	if (argc > 2 && strcmp(argv[1], "--timeout-ms") == 0) {
		char *end;
		timeout_ms = strtoul(argv[2], &end, 10);
		if (*end || timeout_ms == 0)
			return usage();
		i = 3;
	}
	if (argc - i != 2)
		return usage();
	const char *sock = argv[i], *ref = argv[i + 1];

	uint8_t msg[620];
	int msg_len = sg_cri_build_pull(ref, msg, sizeof(msg));
	if (msg_len < 0) {
		fprintf(stderr, "cri-pull: reference too long\n");
		return 64;
	}

	struct sg_loop *loop = NULL;
	struct sg_grpc_client *client = NULL;
	struct call c = { 0 };
	r = sg_loop_new(&(struct sg_loop_config){ 0 }, &loop);
	if (r < 0) {
		fprintf(stderr, "cri-pull: event loop: %s\n", strerror(-r));
		return 1;
	}
	r = sg_grpc_client_new(loop, sock, &client);
	if (r < 0) {
		fprintf(stderr, "cri-pull: %s: %s\n", sock, strerror(-r));
		goto out;
	}
	sg_op_init(&c.op);
	r = sg_grpc_client_call(client, PULL_PATH, msg, (size_t)msg_len,
				(uint64_t)timeout_ms * 1000000u, &c.reply, &c.op, on_reply);
	if (r < 0) {
		fprintf(stderr, "cri-pull: %s: %s\n", PULL_PATH, strerror(-r));
		goto out;
	}
	while (!c.done)
		if (sg_loop_run_once(loop, 1000) < 0)
			break;
	if (!c.done) {
		fprintf(stderr, "cri-pull: the event loop failed\n");
	} else if (c.op.res < 0) {
		fprintf(stderr, "cri-pull: %s: no answer: %s\n", sock, strerror(-c.op.res));
	} else if (c.reply.status != 0) {
		fprintf(stderr, "cri-pull: PullImage %s: gRPC status %d: %s\n", ref, c.reply.status,
			c.reply.message);
	} else {
		char id[512];
		if (sg_cri_parse_pull_reply(c.reply.body, c.reply.body_len, id, sizeof(id)) == 0) {
			printf("image_ref %s\n", id);
			rc = 0;
		} else {
			fprintf(stderr, "cri-pull: PullImage %s: an answer without image_ref\n", ref);
		}
	}
out:
	sg_grpc_reply_done(&c.reply);
	if (client) {
		sg_grpc_client_shutdown(client);
		(void)sg_loop_drain(loop, 5000);
		sg_grpc_client_free(client);
	}
	sg_loop_free(loop);
	return rc;
}
