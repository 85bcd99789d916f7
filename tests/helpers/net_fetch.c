/* Test helper: one HTTP/1.1 GET (or HEAD) over net/conn (+ net/tls) on the event loop, with
 * the body written to stdout and the status to stderr.  Used by tests/integration/net_tls.sh.
 *
 *   net_fetch [--tls] [--ca FILE]... [--system-ca] [--insecure] [--name SERVERNAME]
 *             [--timeout-ms N] [--range A-B] [--head] HOST PORT PATH
 *
 * Exit status: 0 for a complete 2xx response, 1 for an error ("error: ..." on stderr),
 * 2 for a complete non-2xx response, 64 for bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "net/conn.h"
#include "net/http1.h"
#include "net/tls.h"

struct fetch {
	struct sg_loop *loop;
	struct sg_conn conn;
	struct sg_tls *tls;
	struct sg_tls_trust trust;
	struct sg_error tls_err;    /* why the handshake failed */
	struct sg_op op;            /* connect, handshake, send, receive */
	struct sg_http1_parser parser;
	bool use_tls, head, insecure;
	const char *host, *path, *name;
	char range[64];
	uint64_t timeout_ns;
	char req[2048];
	int req_len;
	uint8_t buf[65536];
	int rc;
	bool done;
};

static void finish(struct fetch *f, int rc, const char *what, int err)
{
	if (rc == 1) {
		fprintf(stderr, "error: %s: %s", what, strerror(err < 0 ? -err : err));
		if (f->tls_err.code)
			fprintf(stderr, " (TLS: %s, code %d)", sg_tls_strerror(f->tls_err.code),
				f->tls_err.code);
		if (f->parser.err)
			fprintf(stderr, " (HTTP: %s)", f->parser.err);
		fprintf(stderr, "\n");
	}
	f->rc = rc;
	f->done = true;
}

static void start_read(struct fetch *f);

/* Returns true when the response is complete or failed. */
static bool consume(struct fetch *f, const uint8_t *in, size_t len)
{
	size_t off = 0;

	for (;;) {
		size_t n;
		struct sg_http1_slice body;
		int ev = sg_http1_feed(&f->parser, in + off, len - off, &n, &body);
		off += n;
		if (ev < 0) {
			finish(f, 1, "response", ev);
			return true;
		}
		if (ev == SG_HTTP1_NEED_MORE)
			return false;
		if (ev == SG_HTTP1_HEAD)
			fprintf(stderr, "status %d\n", f->parser.status);
		if (ev == SG_HTTP1_BODY && fwrite(body.data, 1, body.len, stdout) != body.len) {
			finish(f, 1, "stdout", -EIO);
			return true;
		}
		if (ev == SG_HTTP1_DONE) {
			finish(f, f->parser.status / 100 == 2 ? 0 : 2, "", 0);
			return true;
		}
	}
}

static void got_data(struct fetch *f, int res)
{
	if (res < 0) {
		finish(f, 1, "read", res);
		return;
	}
	if (res == 0) {
		int r = sg_http1_finish(&f->parser);
		if (r < 0)
			finish(f, 1, "response", r);
		else
			finish(f, f->parser.status / 100 == 2 ? 0 : 2, "", 0);
		return;
	}
	if (!consume(f, f->buf, (size_t)res))
		start_read(f);
}

static void on_recv(struct sg_op *op)
{
	got_data(sg_container_of(op, struct fetch, op), op->res);
}

static void start_read(struct fetch *f)
{
	int r;

	if (f->use_tls) {
		r = sg_tls_read(f->tls, f->buf, sizeof(f->buf), &f->op, on_recv);
	} else {
		sg_op_set_timeout(&f->op, f->timeout_ns);
		r = sg_recv(f->loop, &f->op, f->conn.fd, f->buf, sizeof(f->buf), 0, on_recv);
	}
	if (r < 0)
		finish(f, 1, "read", r);
}

static void on_send(struct sg_op *op)
{
	struct fetch *f = sg_container_of(op, struct fetch, op);
	if (op->res < 0) {
		finish(f, 1, "write", op->res);
		return;
	}
	start_read(f);
}

static void send_request(struct fetch *f)
{
	int r;

	if (f->use_tls) {
		r = sg_tls_write(f->tls, f->req, (size_t)f->req_len, &f->op, on_send);
	} else {
		sg_op_set_timeout(&f->op, f->timeout_ns);
		r = sg_send(f->loop, &f->op, f->conn.fd, f->req, (size_t)f->req_len, MSG_NOSIGNAL,
			    on_send);
	}
	if (r < 0)
		finish(f, 1, "write", r);
}

static void on_handshake(struct sg_op *op)
{
	struct fetch *f = sg_container_of(op, struct fetch, op);
	if (op->res < 0) {
		finish(f, 1, "TLS handshake", op->res);
		return;
	}
	fprintf(stderr, "handshake ok\n");
	send_request(f);
}

static void on_connected(struct sg_op *op)
{
	struct fetch *f = sg_container_of(op, struct fetch, op);
	int r;

	if (op->res < 0) {
		finish(f, 1, "connect", op->res);
		return;
	}
	if (!f->use_tls) {
		send_request(f);
		return;
	}
	r = sg_tls_new(f->loop, f->conn.fd, &f->trust, &f->tls);
	if (r == 0) {
		if (f->insecure)
			sg_tls_set_insecure(f->tls);
		r = sg_tls_start(f->tls, f->name, f->timeout_ns, &f->tls_err, &f->op, on_handshake);
	}
	if (r < 0)
		finish(f, 1, "TLS start", r);
}

int main(int argc, char **argv)
{
	static struct fetch f;
	const char *cas[16];
	int ncas = 0, i;
	bool system_ca = false;
	unsigned long timeout_ms = 10000;

	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--tls"))
			f.use_tls = true;
		else if (!strcmp(a, "--head"))
			f.head = true;
		else if (!strcmp(a, "--insecure"))
			f.insecure = true;
		else if (!strcmp(a, "--system-ca"))
			system_ca = true;
		else if (!strcmp(a, "--ca") && i + 1 < argc && ncas < 16)
			cas[ncas++] = argv[++i];
		else if (!strcmp(a, "--name") && i + 1 < argc)
			f.name = argv[++i];
		else if (!strcmp(a, "--timeout-ms") && i + 1 < argc)
			timeout_ms = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(a, "--range") && i + 1 < argc)
			snprintf(f.range, sizeof(f.range), "bytes=%s", argv[++i]);
		else {
			fprintf(stderr, "usage: net_fetch [--tls] [--ca FILE] [--system-ca] [--name N] "
					"[--timeout-ms N] [--range A-B] [--head] HOST PORT PATH\n");
			return 64;
		}
	}
	if (argc - i != 3) {
		fprintf(stderr, "usage: net_fetch [options] HOST PORT PATH\n");
		return 64;
	}
	f.host = argv[i];
	unsigned long port = strtoul(argv[i + 1], NULL, 10);
	f.path = argv[i + 2];
	if (!f.name)
		f.name = f.host;
	f.timeout_ns = (uint64_t)timeout_ms * 1000000u;
	if (port == 0 || port > 65535) {
		fprintf(stderr, "bad port\n");
		return 64;
	}

	if (f.use_tls) {
		for (int k = 0; k < ncas; k++) {
			int r = sg_tls_trust_add_file(&f.trust, cas[k]);
			if (r < 0) {
				fprintf(stderr, "error: CA file %s: %s\n", cas[k], strerror(-r));
				return 1;
			}
		}
		if (system_ca) {
			int r = sg_tls_trust_add_file(&f.trust, SG_TLS_SYSTEM_CA_BUNDLE);
			if (r < 0) {
				fprintf(stderr, "error: system CA bundle: %s\n", strerror(-r));
				return 1;
			}
			fprintf(stderr, "system anchors: %d\n", r);
		}
	}

	struct sg_http1_writer w;
	char hostport[300];
	snprintf(hostport, sizeof(hostport), "%s:%lu", f.host, port);
	sg_http1_req_begin(&w, f.req, sizeof(f.req), f.head ? "HEAD" : "GET", f.path, hostport);
	sg_http1_req_header(&w, "User-Agent", "stargzd-net-fetch");
	if (f.range[0])
		sg_http1_req_header(&w, "Range", f.range);
	f.req_len = sg_http1_req_end(&w);
	if (f.req_len < 0) {
		fprintf(stderr, "error: request: %s\n", strerror(-f.req_len));
		return 64;
	}
	sg_http1_parser_init(&f.parser, f.head);

	struct sg_loop_config cfg = { 0 };
	int r = sg_loop_new(&cfg, &f.loop);
	if (r < 0) {
		fprintf(stderr, "error: loop: %s\n", strerror(-r));
		return 1;
	}
	sg_op_init(&f.op);
	sg_conn_init(&f.conn, f.loop);
	r = sg_conn_connect(&f.conn, f.host, (uint16_t)port, f.timeout_ns, &f.op, on_connected);
	if (r < 0) {
		fprintf(stderr, "error: connect: %s\n", strerror(-r));
		return 1;
	}
	while (!f.done) {
		r = sg_loop_run_once(f.loop, 100);
		if (r < 0) {
			fprintf(stderr, "error: loop: %s\n", strerror(-r));
			return 1;
		}
	}
	fflush(stdout);
	/* Tear down in order: cancel the TLS ops, drain, then free. */
	if (f.tls)
		sg_tls_cancel(f.tls);
	sg_conn_cancel(&f.conn);
	(void)sg_loop_drain(f.loop, 2000);
	sg_tls_free(f.tls);
	sg_conn_close(&f.conn);
	sg_loop_free(f.loop);
	sg_tls_trust_done(&f.trust);
	return f.rc;
}
