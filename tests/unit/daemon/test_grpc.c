/* Tests of the gRPC server (daemon/grpc.c, grpc_call.c) through a real HTTP/2 client:
 * libnghttp2's client session (tests/helpers/grpc_client.h) over unix sockets, pumped in the
 * same process as the server's event loop, so a test can look at server-side state between
 * steps. */
#include "daemon/grpc.h"
#include "daemon/core/loop.h"
#include "tests/helpers/grpc_client.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>

/* ---- handlers ---- */

#define MAX_HELD 64

static struct {
	struct sg_loop *loop;
	int handled;                         /* handler invocations */
	struct sg_grpc_call *held[MAX_HELD]; /* calls of /t.T/Hold, not finished yet */
	int n_held, max_held;
	int flood_sent, flood_err;
	double later_done_ms;
} T;

static void h_echo(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	T.handled++;
	CHECK_EQ(sg_grpc_send(call, msg, len), 0);
	sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

/* "count,size": count messages of size bytes, message i filled with (uint8_t)i. */
static void h_stream(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	char req[64];
	unsigned count = 0, size = 0;

	(void)ud;
	T.handled++;
	snprintf(req, sizeof(req), "%.*s", (int)len, (const char *)msg);
	CHECK(sscanf(req, "%u,%u", &count, &size) == 2);
	uint8_t *buf = malloc(size ? size : 1);
	for (unsigned i = 0; i < count; i++) {
		memset(buf, (int)(i & 0xff), size);
		CHECK_EQ(sg_grpc_send(call, buf, size), 0);
	}
	free(buf);
	sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

/* "code:text" */
static void h_fail(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	char req[512];

	(void)ud;
	T.handled++;
	snprintf(req, sizeof(req), "%.*s", (int)len, (const char *)msg);
	char *colon = strchr(req, ':');
	CHECK(colon);
	*colon = '\0';
	sg_grpc_finish(call, (enum sg_grpc_status)atoi(req), colon + 1);
}

static void h_fail_after(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	(void)msg;
	(void)len;
	T.handled++;
	CHECK_EQ(sg_grpc_send(call, (const uint8_t *)"partial", 7), 0);
	sg_grpc_finish(call, SG_GRPC_INTERNAL, "boom after data");
}

static void h_hold(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	(void)msg;
	(void)len;
	T.handled++;
	CHECK(T.n_held < MAX_HELD);
	T.held[T.n_held++] = call;
	int live = 0;
	for (int i = 0; i < T.n_held; i++)
		live += T.held[i] != NULL;
	if (live > T.max_held)
		T.max_held = live;
}

static int held_live(void)
{
	int n = 0;
	for (int i = 0; i < T.n_held; i++)
		n += T.held[i] != NULL;
	return n;
}

/* Finishes held call i: "held" and OK, or just the status. */
static void release_held(int i, enum sg_grpc_status st, const char *text)
{
	struct sg_grpc_call *call = T.held[i];
	T.held[i] = NULL;
	if (!sg_grpc_call_closed(call) && st == SG_GRPC_OK)
		CHECK_EQ(sg_grpc_send(call, (const uint8_t *)"held", 4), 0);
	sg_grpc_finish(call, st, text);
}


/* Echo after a delay: first byte of the request = milliseconds. */
struct delayed {
	struct sg_op timer;
	struct sg_grpc_call *call;
	size_t len;
	uint8_t msg[];
};

static void on_delay(struct sg_op *op)
{
	struct delayed *d = sg_container_of(op, struct delayed, timer);
	if (sg_grpc_send(d->call, d->msg, d->len) == 0)
		sg_grpc_finish(d->call, SG_GRPC_OK, NULL);
	else
		sg_grpc_finish(d->call, SG_GRPC_CANCELLED, "client gone");
	T.later_done_ms = test_now_ms();
	free(d);
}

static void h_delay(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	T.handled++;
	CHECK(len >= 1);
	struct delayed *d = calloc(1, sizeof(*d) + len);
	CHECK(d);
	sg_op_init(&d->timer);
	d->call = call;
	d->len = len;
	memcpy(d->msg, msg, len);
	CHECK_EQ(sg_timer_start(T.loop, &d->timer, (uint64_t)msg[0] * 1000000u, on_delay), 0);
}

/* Sends 16 KiB messages until the server refuses. */
static void h_flood(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	static uint8_t chunk[16384];
	int r;

	(void)ud;
	(void)msg;
	(void)len;
	T.handled++;
	while ((r = sg_grpc_send(call, chunk, sizeof(chunk))) == 0)
		T.flood_sent++;
	T.flood_err = r;
	sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "flood stopped");
}

static const struct sg_grpc_method methods[] = {
	{ "/t.T/Echo", h_echo },
	{ "/t.T/Stream", h_stream },
	{ "/t.T/Fail", h_fail },
	{ "/t.T/FailAfter", h_fail_after },
	{ "/t.T/Hold", h_hold },
	{ "/t.T/Delay", h_delay },
	{ "/t.T/Flood", h_flood },
};

/* ---- environment: loop + server on a unix socket + clients ---- */

#define MAX_CLIENTS 16

struct env {
	struct sg_loop *loop;
	struct sg_grpc_server *server;
	int listen_fd;
	char dir[64];
	char sock[128];
	struct gc_conn *clients[MAX_CLIENTS];
	int n_clients;
	bool done;
};

static void env_init(struct env *e, const struct sg_grpc_limits *limits)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(e, 0, sizeof(*e));
	memset(&T, 0, sizeof(T));
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	T.loop = e->loop;
	snprintf(e->dir, sizeof(e->dir), "/tmp/sg-grpc-XXXXXX");
	CHECK(mkdtemp(e->dir));
	snprintf(e->sock, sizeof(e->sock), "%s/s.sock", e->dir);
	e->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(e->listen_fd >= 0);
	strcpy(sa.sun_path, e->sock);
	CHECK_EQ(bind(e->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(e->listen_fd, 128), 0);
	CHECK_EQ(sg_grpc_server_new(e->loop, e->listen_fd, methods,
				    sizeof(methods) / sizeof(methods[0]), limits, e, &e->server),
		 0);
}

static struct gc_conn *env_client(struct env *e)
{
	CHECK(e->n_clients < MAX_CLIENTS);
	struct gc_conn *c = gc_connect_unix(e->sock);
	CHECK(c);
	e->clients[e->n_clients++] = c;
	return c;
}

static void env_drop_client(struct env *e, struct gc_conn *c)
{
	for (int i = 0; i < e->n_clients; i++)
		if (e->clients[i] == c)
			e->clients[i] = NULL;
	gc_conn_free(c);
}

static void env_pump(struct env *e)
{
	CHECK(sg_loop_run_once(e->loop, 1) >= 0);
	for (int i = 0; i < e->n_clients; i++)
		if (e->clients[i])
			(void)gc_pump(e->clients[i], 0);
}

#define RUN_UNTIL(e, cond, ms) \
	do { \
		double end_ = test_now_ms() + (ms); \
		while (!(cond)) { \
			if (test_now_ms() > end_) \
				TEST_FAIL("timed out waiting for %s", #cond); \
			env_pump(e); \
		} \
	} while (0)

static void env_run_for(struct env *e, int ms)
{
	double end = test_now_ms() + ms;
	while (test_now_ms() < end)
		env_pump(e);
}

static void on_server_done(void *ud)
{
	struct env *e = ud;
	e->done = true;
}

/* Shuts down (finishing any held call), checks that everything is released. */
static void env_finish(struct env *e)
{
	for (int i = 0; i < T.n_held; i++)
		if (T.held[i])
			release_held(i, SG_GRPC_UNAVAILABLE, "test over");
	if (!e->done) {
		sg_grpc_server_shutdown(e->server, on_server_done, e);
		RUN_UNTIL(e, e->done, 5000);
	}
	CHECK_EQ(sg_grpc_server_connections(e->server), 0);
	CHECK_EQ(sg_grpc_server_calls(e->server), 0);
	sg_grpc_server_free(e->server);
	CHECK_EQ(sg_loop_drain(e->loop, 2000), 0);
	CHECK_EQ(sg_loop_pending(e->loop), 0);
	sg_loop_free(e->loop);
	for (int i = 0; i < e->n_clients; i++)
		gc_conn_free(e->clients[i]);
	close(e->listen_fd);
	unlink(e->sock);
	rmdir(e->dir);
}

static void call_sync(struct env *e, struct gc_conn *c, struct gc_call *call, const char *path,
		      const void *msg, size_t len)
{
	CHECK_EQ(gc_call_start(c, call, path, msg, len), 0);
	RUN_UNTIL(e, call->done, 5000);
}

static void check_message(const struct gc_call *call, size_t idx, const void *want, size_t len)
{
	const uint8_t *m;
	size_t l;
	CHECK(gc_call_message(call, idx, &m, &l) > idx);
	CHECK_EQ(l, len);
	CHECK_MEM(m, want, len);
}

/* ---- tests ---- */

TEST(unary_echo)
{
	struct env e;
	struct gc_call call;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	call_sync(&e, c, &call, "/t.T/Echo", "hello", 5);
	CHECK_EQ(call.http_status, 200);
	CHECK_STR(call.content_type, "application/grpc");
	CHECK_EQ(call.grpc_status, 0);
	CHECK(!call.trailers_only);
	CHECK_EQ(call.header_blocks, 2);
	CHECK(!call.has_grpc_message);
	CHECK_EQ(call.close_error, 0);
	CHECK_EQ(gc_call_message(&call, 0, NULL, NULL), 1);
	check_message(&call, 0, "hello", 5);
	gc_call_clear(&call);

	/* An empty message is a message. */
	call_sync(&e, c, &call, "/t.T/Echo", "", 0);
	CHECK_EQ(call.grpc_status, 0);
	CHECK_EQ(gc_call_message(&call, 0, NULL, NULL), 1);
	check_message(&call, 0, "", 0);
	gc_call_clear(&call);

	/* application/grpc+proto is gRPC too. */
	uint8_t req[8] = { 0, 0, 0, 0, 3, 'a', 'b', 'c' };
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc+proto", req, 8,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, 0);
	check_message(&call, 0, "abc", 3);
	gc_call_clear(&call);
	CHECK_EQ(T.handled, 3);
	env_finish(&e);
}

TEST(server_streaming)
{
	struct env e;
	struct gc_call call;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	call_sync(&e, c, &call, "/t.T/Stream", "5,10", 4);
	CHECK_EQ(call.grpc_status, 0);
	CHECK_EQ(gc_call_message(&call, 0, NULL, NULL), 5);
	for (size_t i = 0; i < 5; i++) {
		uint8_t want[10];
		memset(want, (int)i, sizeof(want));
		check_message(&call, i, want, sizeof(want));
	}
	gc_call_clear(&call);

	/* No results: OK in a Trailers-Only response. */
	call_sync(&e, c, &call, "/t.T/Stream", "0,10", 4);
	CHECK_EQ(call.grpc_status, 0);
	CHECK(call.trailers_only);
	CHECK_EQ(call.body_len, 0);
	gc_call_clear(&call);
	env_finish(&e);
}

/* Responses far larger than the client's flow-control window: the data provider defers and
 * resumes many times. */
TEST(large_responses_flow_control)
{
	struct env e;
	struct gc_call a, b;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	CHECK_EQ(gc_call_start(c, &a, "/t.T/Stream", "1,3145728", 9), 0);
	CHECK_EQ(gc_call_start(c, &b, "/t.T/Stream", "300,65536", 9), 0);
	RUN_UNTIL(&e, a.done && b.done, 20000);
	CHECK_EQ(a.grpc_status, 0);
	CHECK_EQ(b.grpc_status, 0);
	CHECK_EQ(gc_call_message(&a, 0, NULL, NULL), 1);
	CHECK_EQ(a.body_len, 5 + 3145728);
	CHECK_EQ(gc_call_message(&b, 0, NULL, NULL), 300);
	const uint8_t *m = NULL;
	size_t l = 0;
	CHECK_EQ(gc_call_message(&b, 299, &m, &l), 300);
	CHECK_EQ(l, 65536);
	CHECK_EQ(m[0], 299 & 0xff);
	CHECK_EQ(m[65535], 299 & 0xff);
	gc_call_clear(&a);
	gc_call_clear(&b);
	env_finish(&e);
}

/* The handler answers 50 ms later from a timer; another call on the same connection is
 * served meanwhile. */
TEST(async_finish)
{
	struct env e;
	struct gc_call slow, fast;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	uint8_t req[4] = { 50, 'x', 'y', 'z' };
	double t0 = test_now_ms();
	CHECK_EQ(gc_call_start(c, &slow, "/t.T/Delay", req, sizeof(req)), 0);
	CHECK_EQ(gc_call_start(c, &fast, "/t.T/Echo", "quick", 5), 0);
	RUN_UNTIL(&e, fast.done, 5000);
	CHECK(!slow.done);
	RUN_UNTIL(&e, slow.done, 5000);
	CHECK(test_now_ms() - t0 >= 50);
	CHECK_EQ(slow.grpc_status, 0);
	check_message(&slow, 0, req, sizeof(req));
	check_message(&fast, 0, "quick", 5);
	gc_call_clear(&slow);
	gc_call_clear(&fast);
	env_finish(&e);
}

TEST(error_status_and_percent_encoding)
{
	struct env e;
	struct gc_call call;
	const char *text = "snapshot \"a b\" 100% gone\n\xc3\xa9\x01~";
	char req[256];

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	snprintf(req, sizeof(req), "5:%s", text);
	call_sync(&e, c, &call, "/t.T/Fail", req, strlen(req));
	CHECK_EQ(call.http_status, 200);
	CHECK_STR(call.content_type, "application/grpc");
	CHECK_EQ(call.grpc_status, SG_GRPC_NOT_FOUND);
	CHECK(call.trailers_only);
	CHECK_EQ(call.header_blocks, 1);
	CHECK_EQ(call.body_len, 0);
	CHECK_STR(call.grpc_message_raw, "snapshot \"a b\" 100%25 gone%0A%C3%A9%01~");
	CHECK_STR(call.grpc_message, text);
	gc_call_clear(&call);

	static const int codes[] = { 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		snprintf(req, sizeof(req), "%d:code %d", codes[i], codes[i]);
		call_sync(&e, c, &call, "/t.T/Fail", req, strlen(req));
		CHECK_EQ(call.grpc_status, codes[i]);
		char want[32];
		snprintf(want, sizeof(want), "code %d", codes[i]);
		CHECK_STR(call.grpc_message, want);
		gc_call_clear(&call);
	}

	/* No text: no grpc-message at all. */
	call_sync(&e, c, &call, "/t.T/Fail", "9:", 2);
	CHECK_EQ(call.grpc_status, 9);
	CHECK(!call.has_grpc_message);
	gc_call_clear(&call);

	/* An error after a message: real trailers after the DATA. */
	call_sync(&e, c, &call, "/t.T/FailAfter", "", 0);
	CHECK_EQ(call.grpc_status, SG_GRPC_INTERNAL);
	CHECK(!call.trailers_only);
	CHECK_EQ(call.header_blocks, 2);
	CHECK_STR(call.grpc_message, "boom after data");
	check_message(&call, 0, "partial", 7);
	gc_call_clear(&call);
	env_finish(&e);
}

TEST(unknown_method)
{
	struct env e;
	struct gc_call call;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	call_sync(&e, c, &call, "/t.T/Nope", "x", 1);
	CHECK_EQ(call.http_status, 200);
	CHECK_EQ(call.grpc_status, SG_GRPC_UNIMPLEMENTED);
	CHECK(call.trailers_only);
	CHECK_STR(call.grpc_message, "unknown method /t.T/Nope");
	gc_call_clear(&call);
	CHECK_EQ(T.handled, 0);
	/* The connection is still good. */
	call_sync(&e, c, &call, "/t.T/Echo", "ok", 2);
	CHECK_EQ(call.grpc_status, 0);
	gc_call_clear(&call);
	env_finish(&e);
}

TEST(oversized_message)
{
	struct env e;
	struct gc_call call;
	struct sg_grpc_limits lim = { .max_message = 1024 };
	static uint8_t big[200000];

	env_init(&e, &lim);
	struct gc_conn *c = env_client(&e);
	call_sync(&e, c, &call, "/t.T/Echo", big, 1024);
	CHECK_EQ(call.grpc_status, 0);
	gc_call_clear(&call);
	call_sync(&e, c, &call, "/t.T/Echo", big, 1025);
	CHECK_EQ(call.grpc_status, SG_GRPC_RESOURCE_EXHAUSTED);
	CHECK_STR(call.grpc_message, "received message larger than max (1025 vs. 1024)");
	gc_call_clear(&call);
	/* Rejected on the prefix, before the body: the client is told to stop sending. */
	call_sync(&e, c, &call, "/t.T/Echo", big, sizeof(big));
	CHECK_EQ(call.grpc_status, SG_GRPC_RESOURCE_EXHAUSTED);
	gc_call_clear(&call);
	CHECK_EQ(T.handled, 1);
	call_sync(&e, c, &call, "/t.T/Echo", "still", 5);
	CHECK_EQ(call.grpc_status, 0);
	gc_call_clear(&call);
	env_finish(&e);
}

/* Stream-level errors: each ends its stream with a status, the connection lives on. */
TEST(malformed_requests)
{
	struct env e;
	struct gc_call call;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);

	/* Unknown flag bits in the prefix. */
	uint8_t bad_flags[8] = { 0x80, 0, 0, 0, 3, 'a', 'b', 'c' };
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc", bad_flags, 8,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, SG_GRPC_INTERNAL);
	CHECK_STR(call.grpc_message, "malformed message prefix (flags 0x80)");
	gc_call_clear(&call);

	/* Compressed flag: we never negotiate compression. */
	uint8_t compressed[8] = { 1, 0, 0, 0, 3, 'a', 'b', 'c' };
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc", compressed, 8,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, SG_GRPC_UNIMPLEMENTED);
	CHECK_STR(call.grpc_message, "compressed messages are not supported");
	gc_call_clear(&call);

	/* Truncated: the prefix announces 10 bytes, 3 come, then END_STREAM. */
	uint8_t trunc[8] = { 0, 0, 0, 0, 10, 'a', 'b', 'c' };
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc", trunc, 8,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, SG_GRPC_INTERNAL);
	CHECK_STR(call.grpc_message, "request ended inside a message");
	gc_call_clear(&call);

	/* A partial prefix. */
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc", trunc, 3,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, SG_GRPC_INTERNAL);
	gc_call_clear(&call);

	/* No message at all (cardinality). */
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc", NULL, 0,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, SG_GRPC_UNIMPLEMENTED);
	CHECK(strstr(call.grpc_message, "without a message"));
	gc_call_clear(&call);

	/* Two messages for a unary method (cardinality). */
	uint8_t two[12] = { 0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 1, 'b' };
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpc", two, 12, true),
		 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.grpc_status, SG_GRPC_UNIMPLEMENTED);
	CHECK(strstr(call.grpc_message, "more than one request message"));
	gc_call_clear(&call);

	/* Not gRPC: HTTP 415, and 405 for a GET. */
	uint8_t one[6] = { 0, 0, 0, 0, 1, 'a' };
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "text/plain", one, 6, true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.http_status, 415);
	CHECK_EQ(call.grpc_status, -1);
	gc_call_clear(&call);
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", NULL, one, 6, true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.http_status, 415);
	gc_call_clear(&call);
	CHECK_EQ(gc_call_start_raw(c, &call, "GET", "/t.T/Echo", "application/grpc", NULL, 0, true),
		 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.http_status, 405);
	gc_call_clear(&call);
	/* "application/grpcfoo" is not gRPC. */
	CHECK_EQ(gc_call_start_raw(c, &call, NULL, "/t.T/Echo", "application/grpcfoo", one, 6,
				   true), 0);
	RUN_UNTIL(&e, call.done, 5000);
	CHECK_EQ(call.http_status, 415);
	gc_call_clear(&call);

	CHECK_EQ(T.handled, 0);
	CHECK(!c->error);
	call_sync(&e, c, &call, "/t.T/Echo", "alive", 5);
	CHECK_EQ(call.grpc_status, 0);
	gc_call_clear(&call);
	env_finish(&e);
}

/* Reads raw bytes from fd until EOF or timeout; returns what was read. */
static size_t read_until_eof(struct env *e, int fd, uint8_t *buf, size_t size, bool *eof)
{
	size_t got = 0;
	double end = test_now_ms() + 5000;

	*eof = false;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (test_now_ms() < end) {
		env_pump(e);
		ssize_t r = recv(fd, buf + got, size - got, 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET)) {
			*eof = true;
			break;
		}
		if (r > 0)
			got += (size_t)r;
		if (got == size)
			break;
	}
	return got;
}

/* Walks HTTP/2 frames in buf; true if one of type `type` is there. */
static bool has_frame(const uint8_t *buf, size_t len, uint8_t type, uint32_t *ret_goaway_error)
{
	size_t off = 0;
	while (len - off >= 9) {
		uint32_t flen = (uint32_t)buf[off] << 16 | (uint32_t)buf[off + 1] << 8 | buf[off + 2];
		if (buf[off + 3] == type) {
			if (ret_goaway_error && type == 7 && flen >= 8 && len - off >= 9 + 8)
				*ret_goaway_error = (uint32_t)buf[off + 13] << 24 |
						    (uint32_t)buf[off + 14] << 16 |
						    (uint32_t)buf[off + 15] << 8 | buf[off + 16];
			return true;
		}
		off += 9 + flen;
	}
	return false;
}

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	strcpy(sa.sun_path, path);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Connection-level errors: GOAWAY and close, and the server keeps serving others. */
TEST(malformed_connections)
{
	struct env e;
	struct gc_call call;
	static uint8_t buf[65536];
	bool eof;
	size_t n;

	env_init(&e, NULL);
	struct gc_conn *good = env_client(&e);
	call_sync(&e, good, &call, "/t.T/Echo", "a", 1);
	gc_call_clear(&call);

	/* HTTP/1.1 instead of the preface. */
	int fd = raw_connect(e.sock);
	const char *h1 = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK(write(fd, h1, strlen(h1)) == (ssize_t)strlen(h1));
	n = read_until_eof(&e, fd, buf, sizeof(buf), &eof);
	CHECK(eof);
	close(fd);

	/* A valid preface, then DATA on stream 0: connection PROTOCOL_ERROR. */
	fd = raw_connect(e.sock);
	static const uint8_t bad[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				     "\x00\x00\x00\x04\x00\x00\x00\x00\x00"   /* SETTINGS */
				     "\x00\x00\x01\x00\x00\x00\x00\x00\x00X"; /* DATA, stream 0 */
	CHECK(write(fd, bad, sizeof(bad) - 1) == (ssize_t)(sizeof(bad) - 1));
	n = read_until_eof(&e, fd, buf, sizeof(buf), &eof);
	CHECK(eof);
	uint32_t err = 0;
	CHECK(has_frame(buf, n, 7, &err));
	CHECK_EQ(err, NGHTTP2_PROTOCOL_ERROR);
	close(fd);

	/* A client that just goes away after half a frame. */
	fd = raw_connect(e.sock);
	CHECK(write(fd, bad, 30) == 30);
	env_run_for(&e, 20);
	close(fd);

	RUN_UNTIL(&e, sg_grpc_server_connections(e.server) == 1, 5000);
	call_sync(&e, good, &call, "/t.T/Echo", "b", 1);
	CHECK_EQ(call.grpc_status, 0);
	gc_call_clear(&call);
	env_finish(&e);
}

/* 100 calls in flight at once over 5 connections, finishing in scrambled order. */
TEST(many_concurrent_streams)
{
	enum { NCONN = 5, PER = 20 };
	struct env e;
	static struct gc_call calls[NCONN][PER];
	char req[NCONN][PER][32];

	env_init(&e, NULL);
	struct gc_conn *c[NCONN];
	for (int i = 0; i < NCONN; i++)
		c[i] = env_client(&e);
	for (int i = 0; i < NCONN; i++)
		for (int j = 0; j < PER; j++) {
			int len = snprintf(req[i][j], sizeof(req[i][j]), "%cconn %d stream %d",
					   (char)(100 + (i * 7 + j * 13) % 40), i, j);
			CHECK_EQ(gc_call_start(c[i], &calls[i][j], "/t.T/Delay", req[i][j],
					       (size_t)len), 0);
		}
	RUN_UNTIL(&e, T.handled == NCONN * PER, 10000);
	/* All 100 are in their handlers together. */
	CHECK_EQ(sg_grpc_server_calls(e.server), NCONN * PER);
	CHECK_EQ(sg_grpc_server_connections(e.server), NCONN);
	for (int i = 0; i < NCONN; i++)
		for (int j = 0; j < PER; j++) {
			RUN_UNTIL(&e, calls[i][j].done, 10000);
			CHECK_EQ(calls[i][j].grpc_status, 0);
			check_message(&calls[i][j], 0, req[i][j], strlen(req[i][j]));
			gc_call_clear(&calls[i][j]);
		}
	env_finish(&e);
}

/* max_streams: the client queues what the server's SETTINGS do not allow; all complete. */
TEST(max_streams_limit)
{
	struct env e;
	struct sg_grpc_limits lim = { .max_streams = 4 };
	struct gc_call calls[10];

	env_init(&e, &lim);
	struct gc_conn *c = env_client(&e);
	/* Let the client see the server's SETTINGS first. */
	struct gc_call first;
	call_sync(&e, c, &first, "/t.T/Echo", "x", 1);
	gc_call_clear(&first);
	T.handled = 0;
	for (int i = 0; i < 10; i++)
		CHECK_EQ(gc_call_start(c, &calls[i], "/t.T/Hold", "h", 1), 0);
	RUN_UNTIL(&e, T.n_held == 4, 5000);
	env_run_for(&e, 50);
	CHECK_EQ(T.n_held, 4);
	for (int k = 0; k < 10; k++) {
		RUN_UNTIL(&e, held_live() > 0, 5000);
		for (int i = 0; i < T.n_held; i++)
			if (T.held[i]) {
				release_held(i, SG_GRPC_OK, NULL);
				break;
			}
	}
	for (int i = 0; i < 10; i++) {
		RUN_UNTIL(&e, calls[i].done, 5000);
		CHECK_EQ(calls[i].grpc_status, 0);
		gc_call_clear(&calls[i]);
	}
	CHECK_EQ(T.max_held, 4);
	env_finish(&e);
}

/* max_connections: the third client waits in the backlog until one closes. */
TEST(max_connections_limit)
{
	struct env e;
	struct sg_grpc_limits lim = { .max_connections = 2 };
	struct gc_call calls[3];

	env_init(&e, &lim);
	struct gc_conn *c[3];
	for (int i = 0; i < 3; i++) {
		c[i] = env_client(&e);
		CHECK_EQ(gc_call_start(c[i], &calls[i], "/t.T/Hold", "h", 1), 0);
	}
	RUN_UNTIL(&e, T.n_held == 2, 5000);
	env_run_for(&e, 100);
	CHECK_EQ(T.n_held, 2);
	CHECK_EQ(sg_grpc_server_connections(e.server), 2);
	/* Client 0 leaves; its held call becomes closed, the third is accepted. */
	gc_call_clear(&calls[0]);
	env_drop_client(&e, c[0]);
	RUN_UNTIL(&e, T.n_held == 3, 5000);
	gc_call_clear(&calls[1]);
	gc_call_clear(&calls[2]);
	env_finish(&e);
}

TEST(client_disconnects_mid_call)
{
	struct env e;
	struct gc_call call;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	CHECK_EQ(gc_call_start(c, &call, "/t.T/Hold", "h", 1), 0);
	RUN_UNTIL(&e, T.n_held == 1, 5000);
	struct sg_grpc_call *held = T.held[0];
	CHECK(!sg_grpc_call_closed(held));
	CHECK_STR(sg_grpc_call_path(held), "/t.T/Hold");
	gc_call_clear(&call);
	env_drop_client(&e, c);
	RUN_UNTIL(&e, sg_grpc_call_closed(held), 5000);
	RUN_UNTIL(&e, sg_grpc_server_connections(e.server) == 0, 5000);
	/* The call is still valid: sends are refused, finish is harmless. */
	CHECK_EQ(sg_grpc_send(held, (const uint8_t *)"late", 4), -EPIPE);
	CHECK_EQ(sg_grpc_server_calls(e.server), 1);
	T.held[0] = NULL;
	sg_grpc_finish(held, SG_GRPC_OK, NULL);
	CHECK_EQ(sg_grpc_server_calls(e.server), 0);

	/* A handler timer outliving its client. */
	c = env_client(&e);
	uint8_t req[2] = { 30, 'x' };
	CHECK_EQ(gc_call_start(c, &call, "/t.T/Delay", req, 2), 0);
	RUN_UNTIL(&e, T.handled == 2, 5000);
	gc_call_clear(&call);
	env_drop_client(&e, c);
	RUN_UNTIL(&e, T.later_done_ms > 0, 5000);
	CHECK_EQ(sg_grpc_server_calls(e.server), 0);
	env_finish(&e);
}

/* The client resets one stream (cancel); the call is closed, the connection goes on. */
TEST(client_cancels_stream)
{
	struct env e;
	struct gc_call held_call, call;

	env_init(&e, NULL);
	struct gc_conn *c = env_client(&e);
	CHECK_EQ(gc_call_start(c, &held_call, "/t.T/Hold", "h", 1), 0);
	RUN_UNTIL(&e, T.n_held == 1, 5000);
	gc_call_cancel(&held_call);
	RUN_UNTIL(&e, sg_grpc_call_closed(T.held[0]), 5000);
	CHECK_EQ(sg_grpc_send(T.held[0], (const uint8_t *)"x", 1), -EPIPE);
	call_sync(&e, c, &call, "/t.T/Echo", "next", 4);
	CHECK_EQ(call.grpc_status, 0);
	gc_call_clear(&call);
	release_held(0, SG_GRPC_OK, NULL);
	CHECK_EQ(sg_grpc_server_connections(e.server), 1);
	gc_call_clear(&held_call);
	env_finish(&e);
}

/* A client that does not read: sg_grpc_send stops at max_buffer with -ENOBUFS. */
TEST(send_buffer_limit)
{
	struct env e;
	struct gc_call call;
	struct sg_grpc_limits lim = { .max_buffer = 256 * 1024 };

	env_init(&e, &lim);
	struct gc_conn *c = env_client(&e);
	call_sync(&e, c, &call, "/t.T/Flood", "", 0);
	CHECK_EQ(T.flood_err, -ENOBUFS);
	CHECK(T.flood_sent >= 10 && T.flood_sent <= 16);
	CHECK_EQ(call.grpc_status, SG_GRPC_RESOURCE_EXHAUSTED);
	CHECK_EQ(gc_call_message(&call, 0, NULL, NULL), (size_t)T.flood_sent);
	gc_call_clear(&call);
	env_finish(&e);
}

TEST(shutdown_with_call_in_flight)
{
	struct env e;
	struct gc_call held_call;

	env_init(&e, NULL);
	struct gc_conn *busy = env_client(&e);
	struct gc_conn *idle = env_client(&e);
	struct gc_call warm;
	call_sync(&e, idle, &warm, "/t.T/Echo", "w", 1);
	gc_call_clear(&warm);
	CHECK_EQ(gc_call_start(busy, &held_call, "/t.T/Hold", "h", 1), 0);
	RUN_UNTIL(&e, T.n_held == 1, 5000);

	sg_grpc_server_shutdown(e.server, on_server_done, &e);
	RUN_UNTIL(&e, busy->goaway && idle->goaway, 5000);
	CHECK_EQ(busy->goaway_error, NGHTTP2_NO_ERROR);
	CHECK_EQ(busy->goaway_last_stream, held_call.stream_id);
	/* The idle connection closes at once; the busy one waits for its call. */
	RUN_UNTIL(&e, idle->eof, 5000);
	env_run_for(&e, 100);
	CHECK(!e.done);
	CHECK(!held_call.done);
	CHECK_EQ(sg_grpc_server_connections(e.server), 1);

	release_held(0, SG_GRPC_OK, NULL);
	RUN_UNTIL(&e, held_call.done, 5000);
	CHECK_EQ(held_call.grpc_status, 0);
	check_message(&held_call, 0, "held", 4);
	RUN_UNTIL(&e, e.done, 5000);
	CHECK_EQ(sg_grpc_server_connections(e.server), 0);
	gc_call_clear(&held_call);
	env_finish(&e);
}

/* A stream that never ends its request does not hold shutdown forever; a handler-owned
 * call whose connection was cut still has to be finished before `done`. */
TEST(shutdown_timeout)
{
	struct env e;
	struct sg_grpc_limits lim = { .shutdown_timeout_ms = 200 };
	struct gc_call open_call, held_call;

	env_init(&e, &lim);
	struct gc_conn *c = env_client(&e);
	uint8_t part[6] = { 0, 0, 0, 0, 1, 'a' };
	CHECK_EQ(gc_call_start_raw(c, &open_call, NULL, "/t.T/Echo", "application/grpc", part, 6,
				   false), 0);
	CHECK_EQ(gc_call_start(c, &held_call, "/t.T/Hold", "h", 1), 0);
	RUN_UNTIL(&e, T.n_held == 1, 5000);
	double t0 = test_now_ms();
	sg_grpc_server_shutdown(e.server, on_server_done, &e);
	RUN_UNTIL(&e, sg_grpc_server_connections(e.server) == 0, 5000);
	CHECK(test_now_ms() - t0 >= 190);
	CHECK(sg_grpc_call_closed(T.held[0]));
	env_run_for(&e, 20);
	CHECK(!e.done);
	release_held(0, SG_GRPC_OK, NULL);
	RUN_UNTIL(&e, e.done, 5000);
	gc_call_clear(&open_call);
	gc_call_clear(&held_call);
	env_finish(&e);
}

/* sg_grpc_server_adopt serves a socketpair end; shutdown with nothing open is immediate. */
TEST(adopt_and_idle_shutdown)
{
	struct env e;
	struct gc_call call;
	int sv[2];

	env_init(&e, NULL);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	CHECK_EQ(sg_grpc_server_adopt(e.server, sv[0]), 0);
	struct gc_conn *c = gc_conn_new(sv[1]);
	CHECK(c);
	e.clients[e.n_clients++] = c;
	call_sync(&e, c, &call, "/t.T/Echo", "pair", 4);
	CHECK_EQ(call.grpc_status, 0);
	check_message(&call, 0, "pair", 4);
	gc_call_clear(&call);
	env_drop_client(&e, c);
	RUN_UNTIL(&e, sg_grpc_server_connections(e.server) == 0, 5000);
	sg_grpc_server_shutdown(e.server, on_server_done, &e);
	RUN_UNTIL(&e, e.done, 1000);
	CHECK_EQ(sg_grpc_server_adopt(e.server, dup(1)), -ESHUTDOWN);
	env_finish(&e);
}

/* The server's free with its accept still in flight aborts: the accept op points into it.
 * Shutdown and its done callback come first (as env_finish does). */
TEST(server_free_with_accept_in_flight_aborts)
{
	struct env e;

	env_init(&e, NULL);
	CHECK_ABORTS(sg_grpc_server_free(e.server));
	env_finish(&e);
}

TEST_MAIN()
