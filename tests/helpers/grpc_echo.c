/* A small gRPC test server on daemon/grpc.c, for clients other than our own (the Python
 * grpcio integration test).  Messages are raw bytes; no protobuf.
 *
 *   grpc_echo SOCKET_PATH [MAX_MESSAGE_BYTES]
 *
 * Methods (service test.Echo):
 *   Unary    echoes the request message;
 *   Stream   request "count,size": count messages of size bytes, message i filled with i&255;
 *   Fail     request "code:text": finishes with that status and message, no response message;
 *   Sleep    request "ms": answers the same bytes after ms milliseconds (from a timer).
 * SIGTERM/SIGINT shut the server down gracefully (calls in flight complete) and exit 0.
 * Prints "ready" on stdout once it listens. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/grpc.h"

static struct sg_loop *loop;

static void h_unary(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	if (sg_grpc_send(call, msg, len) < 0)
		sg_grpc_finish(call, SG_GRPC_INTERNAL, "send failed");
	else
		sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

static void h_stream(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	char req[64];
	unsigned count, size;

	(void)ud;
	snprintf(req, sizeof(req), "%.*s", (int)(len < 63 ? len : 63), (const char *)msg);
	if (sscanf(req, "%u,%u", &count, &size) != 2 || size > (64u << 20)) {
		sg_grpc_finish(call, SG_GRPC_INVALID_ARGUMENT, "want \"count,size\"");
		return;
	}
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (unsigned i = 0; i < count; i++) {
		memset(buf, (int)(i & 0xff), size);
		int r = sg_grpc_send(call, buf, size);
		if (r < 0) {
			free(buf);
			sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, strerror(-r));
			return;
		}
	}
	free(buf);
	sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

static void h_fail(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	char *req = strndup((const char *)msg, len);
	char *colon = req ? strchr(req, ':') : NULL;

	(void)ud;
	if (!colon) {
		sg_grpc_finish(call, SG_GRPC_INVALID_ARGUMENT, "want \"code:text\"");
	} else {
		*colon = '\0';
		sg_grpc_finish(call, (enum sg_grpc_status)atoi(req), colon + 1);
	}
	free(req);
}

struct sleeper {
	struct sg_op timer;
	struct sg_grpc_call *call;
	size_t len;
	uint8_t msg[];
};

static void on_wake(struct sg_op *op)
{
	struct sleeper *s = sg_container_of(op, struct sleeper, timer);

	if (sg_grpc_call_closed(s->call))
		sg_grpc_finish(s->call, SG_GRPC_CANCELLED, NULL);
	else if (sg_grpc_send(s->call, s->msg, s->len) < 0)
		sg_grpc_finish(s->call, SG_GRPC_INTERNAL, "send failed");
	else
		sg_grpc_finish(s->call, SG_GRPC_OK, NULL);
	free(s);
}

static void h_sleep(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	char req[32];
	struct sleeper *s = calloc(1, sizeof(*s) + len);

	(void)ud;
	if (!s) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	snprintf(req, sizeof(req), "%.*s", (int)(len < 31 ? len : 31), (const char *)msg);
	sg_op_init(&s->timer);
	s->call = call;
	s->len = len;
	memcpy(s->msg, msg, len);
	if (sg_timer_start(loop, &s->timer, strtoull(req, NULL, 10) * 1000000ull, on_wake) < 0) {
		free(s);
		sg_grpc_finish(call, SG_GRPC_UNAVAILABLE, "shutting down");
	}
}

static const struct sg_grpc_method methods[] = {
	{ "/test.Echo/Unary", h_unary },
	{ "/test.Echo/Stream", h_stream },
	{ "/test.Echo/Fail", h_fail },
	{ "/test.Echo/Sleep", h_sleep },
};

static struct sg_grpc_server *server;

static void on_done(void *ud)
{
	(void)ud;
	sg_loop_stop(loop);
}

static void on_signal(struct sg_loop *l, int signo, void *ud)
{
	(void)l;
	(void)signo;
	(void)ud;
	sg_grpc_server_shutdown(server, on_done, NULL);
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sg_grpc_limits lim = { 0 };
	sigset_t set;
	int fd, r;

	if (argc < 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: %s SOCKET_PATH [MAX_MESSAGE_BYTES]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		lim.max_message = strtoull(argv[2], NULL, 10);
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		perror("grpc_echo: listen");
		return 1;
	}
	r = sg_loop_new(NULL, &loop);
	if (r < 0) {
		fprintf(stderr, "grpc_echo: loop: %s\n", strerror(-r));
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	r = sg_loop_watch_signals(loop, &set, on_signal, NULL);
	if (r == 0)
		r = sg_grpc_server_new(loop, fd, methods, sizeof(methods) / sizeof(methods[0]), &lim,
				       NULL, &server);
	if (r < 0) {
		fprintf(stderr, "grpc_echo: %s\n", strerror(-r));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	r = sg_loop_run(loop);
	sg_grpc_server_free(server);
	(void)sg_loop_drain(loop, 2000);
	sg_loop_free(loop);
	close(fd);
	unlink(argv[1]);
	return r < 0 ? 1 : 0;
}
