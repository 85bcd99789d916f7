/* The unary gRPC client (daemon/grpc_client.c) against our own server (daemon/grpc.c) on the
 * same loop, and the PullImageRequest reader of the CRI proxy (daemon/cri_proxy.c). */
#include "daemon/grpc_client.h"
#include "daemon/cri_proxy.h"
#include "daemon/grpc.h"
#include "daemon/process.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <unistd.h>

#include "tests/helpers/tmpdir.h"

static struct sg_grpc_call *held;

static void h_echo(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	CHECK_EQ(sg_grpc_send(call, msg, len), 0);
	sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

static void h_fail(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	sg_grpc_finish(call, SG_GRPC_NOT_FOUND, "no such image: 100% gone");
}

static void h_hold(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	held = call;
}

static const struct sg_grpc_method methods[] = {
	{ "/t.T/Echo", h_echo },
	{ "/t.T/Fail", h_fail },
	{ "/t.T/Hold", h_hold },
};

struct done {
	struct sg_op op;
	int calls;
	int res;
};

static void done_cb(struct sg_op *op)
{
	struct done *d = sg_container_of(op, struct done, op);
	d->calls++;
	d->res = op->res;
}

static void run_until_done(struct sg_loop *loop, struct done *d)
{
	for (int i = 0; i < 500 && !d->calls; i++)
		sg_loop_run_once(loop, 10);
}

TEST(unary_calls_errors_and_shutdown)
{
	const char *dir = test_tmpdir("test_grpc_client");
	char path[200];
	struct sg_loop *loop;
	struct sg_grpc_server *server;
	struct sg_grpc_client *client;
	struct sg_grpc_reply reply;
	struct done d = { 0 };
	int fd;

	snprintf(path, sizeof(path), "%.100s/s.sock", dir);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_grpc_client_new(loop, path, &client), 0);

	/* Nobody listens yet: the call fails, once. */
	sg_op_init(&d.op);
	CHECK_EQ(sg_grpc_client_call(client, "/t.T/Echo", (const uint8_t *)"x", 1, 0, &reply, &d.op,
				     done_cb), 0);
	CHECK_EQ(d.calls, 0);   /* never from inside the call */
	run_until_done(loop, &d);
	CHECK_EQ(d.calls, 1);
	CHECK(d.res == -ENOENT || d.res == -ECONNREFUSED);

	CHECK_EQ(sg_listen_unix(path, &fd, NULL), 0);
	CHECK_EQ(sg_grpc_server_new(loop, fd, methods, 3, NULL, NULL, &server), 0);

	/* A round trip: the message comes back, status OK. */
	d = (struct done){ 0 };
	sg_op_init(&d.op);
	CHECK_EQ(sg_grpc_client_call(client, "/t.T/Echo", (const uint8_t *)"hello", 5, 0, &reply,
				     &d.op, done_cb), 0);
	run_until_done(loop, &d);
	CHECK_EQ(d.res, 0);
	CHECK_EQ(reply.status, 0);
	CHECK_EQ(reply.body_len, 5);
	CHECK_MEM(reply.body, "hello", 5);
	sg_grpc_reply_done(&reply);

	/* A gRPC error is an answer (res 0) with its status and decoded message. */
	d = (struct done){ 0 };
	sg_op_init(&d.op);
	CHECK_EQ(sg_grpc_client_call(client, "/t.T/Fail", NULL, 0, 0, &reply, &d.op, done_cb), 0);
	run_until_done(loop, &d);
	CHECK_EQ(d.res, 0);
	CHECK_EQ(reply.status, SG_GRPC_NOT_FOUND);
	CHECK_STR(reply.message, "no such image: 100% gone");
	CHECK(reply.body == NULL);

	/* An unknown method: the server's UNIMPLEMENTED. */
	d = (struct done){ 0 };
	sg_op_init(&d.op);
	CHECK_EQ(sg_grpc_client_call(client, "/t.T/Nope", NULL, 0, 0, &reply, &d.op, done_cb), 0);
	run_until_done(loop, &d);
	CHECK_EQ(d.res, 0);
	CHECK_EQ(reply.status, SG_GRPC_UNIMPLEMENTED);

	/* Shutdown with a call the server holds: it completes -ECANCELED, once. */
	d = (struct done){ 0 };
	sg_op_init(&d.op);
	CHECK_EQ(sg_grpc_client_call(client, "/t.T/Hold", NULL, 0, 0, &reply, &d.op, done_cb), 0);
	for (int i = 0; i < 200 && !held; i++)
		sg_loop_run_once(loop, 10);
	CHECK(held != NULL);
	CHECK(sg_grpc_client_busy(client));
	CHECK_ABORTS(sg_grpc_client_free(client));
	sg_grpc_client_shutdown(client);
	run_until_done(loop, &d);
	CHECK_EQ(d.calls, 1);
	CHECK_EQ(d.res, -ECANCELED);
	for (int i = 0; i < 200 && sg_grpc_client_busy(client); i++)
		sg_loop_run_once(loop, 10);
	CHECK(!sg_grpc_client_busy(client));
	CHECK_EQ(sg_grpc_client_call(client, "/t.T/Echo", NULL, 0, 0, &reply, &d.op, done_cb),
		 -ECANCELED);
	sg_grpc_client_free(client);
	sg_grpc_finish(held, SG_GRPC_OK, NULL);
	for (int i = 0; i < 20; i++)
		sg_loop_run_once(loop, 5);
	CHECK_EQ(d.calls, 1);
	sg_grpc_server_shutdown(server, NULL, NULL);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_grpc_server_free(server);
	close(fd);
	sg_loop_free(loop);
}

TEST(pull_request_credentials_are_read)
{
	/* PullImageRequest{image: {image: "r:5000/a:v1"}, auth: {username: "u", password: "p",
	 * server_address: "r:5000"}}, with a varint field (annotations are maps, but a number
	 * anywhere must be skipped) in between. */
	static const uint8_t msg[] = {
		0x0a, 0x0d, 0x0a, 0x0b, 'r', ':', '5', '0', '0', '0', '/', 'a', ':', 'v', '1',
		0x18, 0x96, 0x01,
		0x12, 0x0e, 0x0a, 0x01, 'u', 0x12, 0x01, 'p', 0x22, 0x06, 'r', ':', '5', '0', '0', '0',
	};
	struct sg_cri_pull p;

	CHECK_EQ(sg_cri_parse_pull(msg, sizeof(msg), &p), 0);
	CHECK_STR(p.image, "r:5000/a:v1");
	CHECK_STR(p.username, "u");
	CHECK_STR(p.password, "p");
	CHECK_STR(p.server_address, "r:5000");
	/* Every prefix but the whole is cut inside a field: refused, never read past the end. */
	for (size_t n = 1; n < sizeof(msg); n++)
		if (n != 15 && n != 18)
			CHECK_EQ(sg_cri_parse_pull(msg, n, &p), -EBADMSG);
	static const uint8_t nul[] = { 0x0a, 0x03, 0x0a, 0x01, 0x00 };
	CHECK_EQ(sg_cri_parse_pull(nul, sizeof(nul), &p), -EBADMSG);   /* a NUL in a string */
}

/* A client's PullImageRequest reads back as the proxy reads one (a reference long enough
 * for two-byte lengths); too small a buffer is -ENOSPC.  The response's image_ref is read;
 * one without it is -ENOENT, a cut one -EBADMSG. */
TEST(a_built_pull_request_reads_back_and_the_reply_gives_its_image_ref)
{
	char image[300];
	uint8_t buf[400];
	struct sg_cri_pull p;

	memset(image, 'a', sizeof(image) - 1);
	image[sizeof(image) - 1] = '\0';
	memcpy(image, "r:5000/", 7);
	int n = sg_cri_build_pull(image, buf, sizeof(buf));
	CHECK(n > (int)strlen(image));
	CHECK_EQ(sg_cri_parse_pull(buf, (size_t)n, &p), 0);
	CHECK_STR(p.image, image);
	CHECK_STR(p.username, "");
	CHECK_EQ(sg_cri_build_pull(image, buf, 100), -ENOSPC);

	static const uint8_t reply[] = { 0x0a, 0x05, 's', 'h', 'a', ':', '1' };
	char ref[64];
	CHECK_EQ(sg_cri_parse_pull_reply(reply, sizeof(reply), ref, sizeof(ref)), 0);
	CHECK_STR(ref, "sha:1");
	CHECK_EQ(sg_cri_parse_pull_reply(reply, 0, ref, sizeof(ref)), -ENOENT);
	CHECK_EQ(sg_cri_parse_pull_reply(reply, sizeof(reply) - 1, ref, sizeof(ref)), -EBADMSG);
}

TEST_MAIN()
