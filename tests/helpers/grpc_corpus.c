/* Writes the seed corpus of tests/fuzz/grpc_server: what a real HTTP/2 client (libnghttp2's
 * client session, through tests/helpers/grpc_client.h) sends for typical conversations, each
 * prefixed with the fuzz target's flag byte.
 *
 *   grpc_corpus tests/fuzz/grpc_server/corpus
 *
 * The seeds are checked in; rerun this after changing the target's input layout. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/helpers/grpc_client.h"

static const char *outdir;

/* A client on one end of a socketpair; `collect` reads what it wrote from the other end. */
struct seed {
	int peer;
	struct gc_conn *c;
	uint8_t buf[1 << 20];
	size_t len;
};

static int seed_open(struct seed *s)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	s->peer = sv[1];
	s->len = 0;
	s->c = gc_conn_new(sv[0]);
	return s->c ? 0 : -ENOMEM;
}

static void seed_collect(struct seed *s)
{
	(void)gc_pump(s->c, 0);
	fcntl(s->peer, F_SETFL, O_NONBLOCK);
	for (;;) {
		ssize_t r = recv(s->peer, s->buf + s->len, sizeof(s->buf) - s->len, 0);
		if (r <= 0)
			break;
		s->len += (size_t)r;
	}
}

static void seed_raw(struct seed *s, const void *p, size_t len)
{
	memcpy(s->buf + s->len, p, len);
	s->len += len;
}

static struct gc_call call[12];

static int seed_write(struct seed *s, const char *name, uint8_t flags)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (!f)
		return -errno;
	fputc(flags, f);
	fwrite(s->buf, 1, s->len, f);
	fclose(f);
	gc_conn_free(s->c);
	close(s->peer);
	for (size_t i = 0; i < sizeof(call) / sizeof(call[0]); i++) {
		free(call[i].req);
		free(call[i].body);
		memset(&call[i], 0, sizeof(call[i]));
	}
	return 0;
}

/* flags: slice size code in bits 0-5, bit 7 = hold async. */
#define SLICE(n) ((uint8_t)(((n) - 1) / 8))

int main(int argc, char **argv)
{
	struct seed *s = calloc(1, sizeof(*s));
	int r = 0;

	if (argc != 2 || !s) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);

	/* One unary call, in 1-byte slices and in one piece. */
	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Echo", "hello", 5);
	seed_collect(s);
	r |= seed_write(s, "unary_echo", SLICE(1));
	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Echo", "hello", 5);
	seed_collect(s);
	r |= seed_write(s, "unary_echo_whole", SLICE(505));

	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Stream", "\x05xyz", 4);
	seed_collect(s);
	r |= seed_write(s, "stream", SLICE(17));

	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Fail", "\x05no such snapshot \xc3\xa9%", 21);
	gc_call_start(s->c, &call[1], "/f.F/Nope", "x", 1);
	seed_collect(s);
	r |= seed_write(s, "fail_and_unknown", SLICE(9));

	/* Held calls, one reset by the client before the answer. */
	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Hold", "a", 1);
	gc_call_start(s->c, &call[1], "/f.F/Hold", "b", 1);
	seed_collect(s);
	gc_call_cancel(&call[1]);
	seed_collect(s);
	r |= seed_write(s, "hold_and_reset", 0x80 | SLICE(33));

	/* Ten concurrent streams. */
	seed_open(s);
	for (int i = 0; i < 10; i++)
		gc_call_start(s->c, &call[i], i % 2 ? "/f.F/Hold" : "/f.F/Echo", "0123456789", 10);
	seed_collect(s);
	r |= seed_write(s, "ten_streams", 0x80 | SLICE(65));

	/* Malformed gRPC bodies. */
	seed_open(s);
	gc_call_start_raw(s->c, &call[0], NULL, "/f.F/Echo", "application/grpc",
			  "\x01\x00\x00\x00\x01z", 6, true);
	gc_call_start_raw(s->c, &call[1], NULL, "/f.F/Echo", "application/grpc",
			  "\x00\x00\x01\x00\x00", 5, true);
	gc_call_start_raw(s->c, &call[2], NULL, "/f.F/Echo", "application/grpc",
			  "\x00\x00\x00\x00\x01" "a\x00\x00\x00\x00\x01" "b", 12, true);
	gc_call_start_raw(s->c, &call[3], NULL, "/f.F/Echo", "text/plain", "\x00\x00\x00\x00\x00",
			  5, true);
	gc_call_start_raw(s->c, &call[4], "GET", "/f.F/Echo", "application/grpc", NULL, 0, true);
	gc_call_start_raw(s->c, &call[5], NULL, "/f.F/Echo", "application/grpc",
			  "\x00\x00\x00\x00\x09" "ab", 7, true);
	gc_call_start_raw(s->c, &call[6], NULL, "/f.F/Echo", "application/grpc",
			  "\x00\x00\x00\x00\x01" "a", 6, false);
	seed_collect(s);
	r |= seed_write(s, "malformed_bodies", SLICE(41));

	/* A larger request than max_message (4096 in the target). */
	static uint8_t big[5000];
	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Echo", big, sizeof(big));
	seed_collect(s);
	r |= seed_write(s, "oversized", SLICE(505));

	/* Connection-level frames by hand after a call: PING, WINDOW_UPDATE, SETTINGS, GOAWAY. */
	seed_open(s);
	gc_call_start(s->c, &call[0], "/f.F/Echo", "p", 1);
	seed_collect(s);
	seed_raw(s, "\x00\x00\x08\x06\x00\x00\x00\x00\x00" "12345678", 17);          /* PING */
	seed_raw(s, "\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00", 13);      /* WINDOW_UPDATE */
	seed_raw(s, "\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x10", 15); /* SETTINGS */
	seed_raw(s, "\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00", 17);
	r |= seed_write(s, "control_frames", SLICE(25));

	/* Raw frames after the auto preface (flag bit 6): HEADERS for stream 1 with a literal
	 * :method POST etc. would need HPACK; an empty HEADERS block and a stray DATA do not. */
	seed_open(s);
	s->len = 0;
	seed_raw(s, "\x00\x00\x00\x01\x05\x00\x00\x00\x01", 9);                        /* HEADERS, ES|EH */
	seed_raw(s, "\x00\x00\x03\x00\x01\x00\x00\x00\x03" "abc", 12);                /* DATA, idle stream */
	r |= seed_write(s, "auto_preface_raw", 0x40 | SLICE(1));

	/* Not HTTP/2 at all. */
	seed_open(s);
	s->len = 0;
	seed_raw(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	r |= seed_write(s, "http1", SLICE(505));

	free(s);
	if (r) {
		fprintf(stderr, "grpc_corpus: cannot write to %s\n", outdir);
		return 1;
	}
	return 0;
}
