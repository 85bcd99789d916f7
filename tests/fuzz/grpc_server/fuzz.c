/* libFuzzer target: the whole gRPC server (daemon/grpc.c + libnghttp2) on the real event
 * loop, fed through a socketpair in small slices, as a hostile client would (the systemd
 * fuzz-varlink.c idea).
 *
 * Input layout: byte 0 holds flags —
 *   bits 0-5  slice size: 1 + 8 × value bytes per write (1..505), to cut frames anywhere;
 *   bit 6     prepend a valid client preface and an empty SETTINGS frame, so mutations start
 *             past the connection preface;
 *   bit 7     handlers of /f.F/Hold answer only at the end (async), else at once.
 * The rest is what the client sends.  Between slices the loop runs until quiet and whatever
 * the server wrote is read and dropped.  At the end the held calls are finished (sending
 * where the stream is still open), the client side is closed, the server is shut down and
 * freed, and the loop must have nothing left pending: a leaked op, a hang (bounded
 * iterations) or a sanitizer report is a finding.
 *
 * The loop is created once and kept (an io_uring per input would dominate the run time). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_HELD 64

static struct sg_loop *fz_loop;
static struct sg_grpc_call *fz_held[FZ_MAX_HELD];
static int fz_n_held;
static bool fz_hold_async;
static bool fz_done;

static void fz_echo(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	(void)sg_grpc_send(call, msg, len);
	sg_grpc_finish(call, SG_GRPC_OK, NULL);
}

/* Three messages, then a status taken from the request. */
static void fz_stream(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	for (int i = 0; i < 3; i++)
		(void)sg_grpc_send(call, msg, len);
	sg_grpc_finish(call, len ? (enum sg_grpc_status)(msg[0] % 17) : SG_GRPC_OK,
		       len > 1 ? "stream \"done\" 100%\n" : NULL);
}

/* A status and a message made of the request bytes (anything, to exercise the encoder). */
static void fz_fail(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	char text[300];
	size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;

	(void)ud;
	memcpy(text, msg, n);
	text[n] = '\0';
	sg_grpc_finish(call, len ? (enum sg_grpc_status)(msg[0] % 20) : SG_GRPC_UNKNOWN,
		       n > 1 ? text + 1 : NULL);
}

static void fz_hold(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	if (!fz_hold_async || fz_n_held == FZ_MAX_HELD) {
		fz_echo(call, msg, len, NULL);
		return;
	}
	fz_held[fz_n_held++] = call;
}

static const struct sg_grpc_method fz_methods[] = {
	{ "/f.F/Echo", fz_echo },
	{ "/f.F/Stream", fz_stream },
	{ "/f.F/Fail", fz_fail },
	{ "/f.F/Hold", fz_hold },
};

static void fz_on_done(void *ud)
{
	(void)ud;
	fz_done = true;
}

/* Drops what the server wrote. */
static void fz_drain_peer(int fd)
{
	static uint8_t sink[65536];
	while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

/* Runs the loop until three turns in a row dispatch nothing; bounded. */
static void fz_run_quiet(int peer)
{
	int idle = 0;

	for (int i = 0; i < 100000 && idle < 3; i++) {
		int n = sg_loop_run_once(fz_loop, 0);
		if (n < 0)
			abort();
		if (peer >= 0)
			fz_drain_peer(peer);
		idle = n == 0 ? idle + 1 : 0;
	}
}

static void fz_write_all(int fd, const uint8_t *p, size_t len)
{
	int spins = 0;

	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return;   /* the server closed: the rest goes nowhere */
		/* Socket buffer full: let the server read. */
		if (sg_loop_run_once(fz_loop, 1) < 0)
			abort();
		fz_drain_peer(fd);
		if (++spins > 10000)
			return;   /* the server stopped reading (it may have given up on us) */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
					 "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	struct sg_grpc_limits lim = {
		.max_message = 4096,
		.max_streams = 16,
		.max_buffer = 256 * 1024,
		.shutdown_timeout_ms = 20,
	};
	struct sg_grpc_server *server = NULL;
	int sv[2];

	if (size < 1)
		return 0;
	if (!fz_loop && sg_loop_new(NULL, &fz_loop) < 0)
		abort();
	size_t slice = 1 + (size_t)(data[0] & 0x3f) * 8;
	bool with_preface = data[0] & 0x40;
	fz_hold_async = data[0] & 0x80;
	fz_n_held = 0;
	fz_done = false;
	data++;
	size--;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	if (sg_grpc_server_new(fz_loop, -1, fz_methods, sizeof(fz_methods) / sizeof(fz_methods[0]),
			       &lim, NULL, &server) < 0)
		abort();
	if (sg_grpc_server_adopt(server, sv[0]) < 0)
		abort();

	if (with_preface)
		fz_write_all(sv[1], preface, sizeof(preface) - 1);
	for (size_t off = 0; off < size; off += slice) {
		size_t n = size - off < slice ? size - off : slice;
		fz_write_all(sv[1], data + off, n);
		fz_run_quiet(sv[1]);
	}
	fz_run_quiet(sv[1]);

	/* The owner answers late: streams may be open, reset or gone by now. */
	for (int i = 0; i < fz_n_held; i++) {
		struct sg_grpc_call *call = fz_held[i];
		if (i % 2 == 0) {
			int r = sg_grpc_send(call, (const uint8_t *)"late", 4);
			if (r != 0 && r != -EPIPE && r != -ENOBUFS)
				abort();
			if ((r == -EPIPE) != sg_grpc_call_closed(call))
				abort();
			sg_grpc_finish(call, SG_GRPC_OK, NULL);
		} else {
			sg_grpc_finish(call, SG_GRPC_ABORTED, "late\r\nabort");
		}
	}
	fz_n_held = 0;
	fz_run_quiet(sv[1]);

	close(sv[1]);
	sg_grpc_server_shutdown(server, fz_on_done, NULL);
	for (int i = 0; i < 100000 && !fz_done; i++)
		if (sg_loop_run_once(fz_loop, 1) < 0)
			abort();
	if (!fz_done || sg_grpc_server_connections(server) != 0 || sg_grpc_server_calls(server))
		abort();
	sg_grpc_server_free(server);
	if (sg_loop_pending(fz_loop) != 0)
		abort();
	return 0;
}
