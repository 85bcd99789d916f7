/* stargz-fetch: the registry client from the command line (debugging, tests).
 *
 *   stargz-fetch [options] REF                 the image manifest (resolved for the platform)
 *   stargz-fetch [options] REF LAYER-DIGEST    the blob, verified against its digest
 *   stargz-fetch [options] --range A-B [--range C-D ...] REF LAYER-DIGEST
 *                                              those bytes (inclusive offsets), in order;
 *                                              several ranges go out as one multi-range read
 *
 * Options:
 *   --insecure            plain HTTP for REF's registry and for localhost addresses
 *   --insecure-host H     plain HTTP for H ("host[:port]"); repeatable
 *   --hosts-dir DIR       containerd certs.d directory (default /etc/containerd/certs.d)
 *   --docker-config FILE  credentials (default $DOCKER_CONFIG/config.json, ~/.docker/config.json);
 *                         its credsStore/credHelpers run docker-credential-NAME from PATH
 *   --helper-timeout-ms N a credential helper is killed after N ms (default 10000)
 *   --ca FILE             extra trusted CA certificates (PEM); repeatable
 *   --no-system-ca        do not trust the system CA bundle
 *   --platform OS/ARCH    for image indexes (default linux/amd64)
 *   --timeout-ms N        connect, first-byte and idle timeouts (default 10000/30000/30000)
 *   --attempts N          tries per request, retries included (default 4)
 *   --retry-base-ms N     first backoff (default 200)
 *   --max-conns N         connections per host (default 8)
 *   --chunk BYTES         whole-blob download: bytes per range read (default 4 MiB)
 *   --parallel N          whole-blob download: reads in flight (default 4)
 *   --repeat N            do the range read N times (per-host quirks are remembered)
 *   --size                print the blob size instead of its bytes
 *   --verbose             per-host statistics on stderr at the end
 *
 * Exit status: 0 success, 1 failure ("stargz-fetch: ..." on stderr), 64 bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "daemon/core/loop.h"
#include "net/blob.h"
#include "net/manifest.h"
#include "net/manifest_fetch.h"
#include "net/pool.h"
#include "net/reference.h"
#include "net/registry.h"

#define MAX_LIST 16
#define MAX_PARALLEL 64

struct slot {
	struct sg_op op;
	struct sg_error err;
	uint8_t *buf;
	uint64_t offset;
	size_t len;
	bool busy, ready;
};

struct app {
	struct sg_loop *loop;
	struct sg_registry *reg;
	struct sg_range_source *src;
	const char *ref, *digest, *platform;
	bool done, size_only;
	int rc;
	/* ranges */
	struct sg_registry_range ranges[SG_REGISTRY_RANGES_MAX];
	size_t nranges;
	unsigned repeat;
	struct sg_op op;                   /* the open or manifest fetch, then range reads */
	struct sg_error err;
	struct sg_registry_manifest *manifest;
	/* whole blob */
	uint64_t chunk;
	unsigned parallel;
	struct slot slots[MAX_PARALLEL];
	uint64_t next_issue, next_write;   /* chunk indexes */
	struct sg_sha256 sha;
};

static void fail(struct app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct app *a, const char *fmt, ...)
{
	va_list ap;

	if (a->done)
		return;
	fprintf(stderr, "stargz-fetch: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	a->rc = 1;
	a->done = true;
}

static int write_all(const void *p, size_t n)
{
	return fwrite(p, 1, n, stdout) == n ? 0 : -EIO;
}

static void on_manifest(struct sg_op *op)
{
	struct app *a = sg_container_of(op, struct app, op);
	const struct sg_registry_manifest *m = a->manifest;

	if (op->res < 0) {
		fail(a, "%s", a->err.msg[0] ? a->err.msg : strerror(-op->res));
		return;
	}
	if (write_all(m->data, m->len) < 0) {
		fail(a, "stdout: write error");
		return;
	}
	fprintf(stderr, "manifest %s (%s)%s%s\n", m->digest, m->media_type,
		m->index_digest ? " from index " : "", m->index_digest ? m->index_digest : "");
	a->done = true;
}

/* ---- ranges ---- */

static void start_ranges(struct app *a);

static void on_ranges(struct sg_op *op)
{
	struct app *a = sg_container_of(op, struct app, op);

	if (op->res < 0) {
		const char *why = a->err.msg;
		fail(a, "range read: %s%s%s", strerror(-op->res), why[0] ? ": " : "", why);
		return;
	}
	if (a->repeat > 1) {
		a->repeat--;
		start_ranges(a);
		return;
	}
	for (size_t i = 0; i < a->nranges; i++) {
		if (write_all(a->ranges[i].buf, a->ranges[i].len) < 0) {
			fail(a, "stdout: write error");
			return;
		}
	}
	a->done = true;
}

static void start_ranges(struct app *a)
{
	int r;

	a->err = (struct sg_error){ 0 };
	r = sg_registry_read_ranges(a->src, a->ranges, a->nranges, &a->err, &a->op, on_ranges);
	if (r < 0)
		fail(a, "range read: %s", strerror(-r));
}

/* ---- the whole blob, in order, with reads in parallel ---- */

static void pump_blob(struct app *a);

static void on_chunk(struct sg_op *op)
{
	struct slot *s = sg_container_of(op, struct slot, op);
	struct app *a = op->data;

	s->busy = false;
	if (a->done)
		return;
	if (op->res < 0 || (size_t)op->res != s->len) {
		const char *why = s->err.msg;
		fail(a, "read at %" PRIu64 ": %s%s%s", s->offset,
		     strerror(op->res < 0 ? -op->res : EIO), why[0] ? ": " : "", why);
		return;
	}
	s->ready = true;
	pump_blob(a);
}

static void pump_blob(struct app *a)
{
	uint64_t nchunks = (a->src->size + a->chunk - 1) / a->chunk;

	/* Chunk k lives in slot k % parallel; chunks are written strictly in order. */
	while (a->next_write < nchunks && a->slots[a->next_write % a->parallel].ready) {
		struct slot *s = &a->slots[a->next_write % a->parallel];
		sg_sha256_update(&a->sha, s->buf, s->len);
		if (write_all(s->buf, s->len) < 0) {
			fail(a, "stdout: write error");
			return;
		}
		s->ready = false;
		a->next_write++;
	}
	while (a->next_issue < nchunks && a->next_issue < a->next_write + a->parallel) {
		struct slot *s = &a->slots[a->next_issue % a->parallel];
		int r;
		s->offset = a->next_issue * a->chunk;
		s->len = (size_t)(a->src->size - s->offset < a->chunk ? a->src->size - s->offset
								      : a->chunk);
		s->op.data = a;
		s->err = (struct sg_error){ 0 };
		r = sg_registry_read_ranges(a->src,
					    &(struct sg_registry_range){ s->offset, s->len, s->buf },
					    1, &s->err, &s->op, on_chunk);
		if (r < 0) {
			fail(a, "read: %s", strerror(-r));
			return;
		}
		s->busy = true;
		a->next_issue++;
	}
	if (a->next_write == nchunks) {
		struct sg_digest d;
		char hex[SG_DIGEST_STRLEN + 1];
		sg_sha256_final(&a->sha, &d);
		sg_digest_format(&d, hex);
		if (!strncmp(a->digest, "sha256:", 7) && strcmp(hex, a->digest) != 0) {
			fail(a, "blob digest mismatch: got %s", hex);
			return;
		}
		a->done = true;
	}
}

static void on_blob(struct sg_op *op)
{
	struct app *a = sg_container_of(op, struct app, op);
	struct sg_range_source *src = a->src;

	if (op->res < 0) {
		fail(a, "%s", a->err.msg[0] ? a->err.msg : strerror(-op->res));
		return;
	}
	if (a->size_only) {
		printf("%" PRIu64 "\n", src->size);
		a->done = true;
		return;
	}
	if (a->nranges) {
		for (size_t i = 0; i < a->nranges; i++) {
			struct sg_registry_range *r = &a->ranges[i];
			if (r->offset >= src->size || r->len > src->size - r->offset) {
				fail(a, "range %" PRIu64 "-%" PRIu64 " is outside the blob (%" PRIu64
					" bytes)", r->offset, r->offset + r->len - 1, src->size);
				return;
			}
			r->buf = malloc(r->len ? r->len : 1);
			if (!r->buf) {
				fail(a, "out of memory");
				return;
			}
		}
		start_ranges(a);
		return;
	}
	sg_sha256_init(&a->sha);
	for (unsigned i = 0; i < a->parallel; i++) {
		sg_op_init(&a->slots[i].op);
		a->slots[i].buf = malloc(a->chunk);
		if (!a->slots[i].buf) {
			fail(a, "out of memory");
			return;
		}
	}
	pump_blob(a);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: stargz-fetch [--insecure] [--insecure-host H] [--hosts-dir DIR]\n"
		"                    [--docker-config FILE] [--helper-timeout-ms N]\n"
		"                    [--ca FILE] [--no-system-ca]\n"
		"                    [--platform OS/ARCH] [--timeout-ms N] [--attempts N]\n"
		"                    [--retry-base-ms N] [--max-conns N] [--chunk BYTES]\n"
		"                    [--parallel N] [--range A-B]... [--repeat N] [--size]\n"
		"                    [--verbose] REF [LAYER-DIGEST]\n");
	return 64;
}

static int parse_range(const char *s, struct sg_registry_range *r)
{
	char *end;
	unsigned long long a, b;

	errno = 0;
	a = strtoull(s, &end, 10);
	if (errno || end == s || *end != '-')
		return -EINVAL;
	s = end + 1;
	b = strtoull(s, &end, 10);
	if (errno || end == s || *end || b < a || b - a >= (64ull << 20))
		return -EINVAL;
	r->offset = a;
	r->len = (size_t)(b - a + 1);
	return 0;
}

/* The options that configure the registry client, beside those of struct app. */
struct cli {
	struct sg_registry_config cfg;
	const char *insecure[MAX_LIST + 1], *cas[MAX_LIST];
	size_t ninsecure, ncas;
	bool insecure_ref, verbose;
};

/* The index of the first operand, or minus the exit status for a bad command line. */
static int parse_options(int argc, char **argv, struct app *a, struct cli *c)
{
	int i;

	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(o, "--")) {
			i++;
			break;
		}
		if (!strcmp(o, "--insecure")) {
			c->insecure_ref = true;
		} else if (!strcmp(o, "--no-system-ca")) {
			c->cfg.no_system_ca = true;
		} else if (!strcmp(o, "--size")) {
			a->size_only = true;
		} else if (!strcmp(o, "--verbose")) {
			c->verbose = true;
		} else if (!v) {
			return -usage();
		} else if (!strcmp(o, "--insecure-host") && c->ninsecure < MAX_LIST) {
			c->insecure[c->ninsecure++] = v, i++;
		} else if (!strcmp(o, "--ca") && c->ncas < MAX_LIST) {
			c->cas[c->ncas++] = v, i++;
		} else if (!strcmp(o, "--hosts-dir")) {
			c->cfg.hosts_dir = v, i++;
		} else if (!strcmp(o, "--docker-config")) {
			c->cfg.docker_config = v, i++;
		} else if (!strcmp(o, "--helper-timeout-ms")) {
			c->cfg.cred_helper_timeout_ns = strtoull(v, NULL, 10) * 1000000ull, i++;
		} else if (!strcmp(o, "--platform")) {
			a->platform = v, i++;
		} else if (!strcmp(o, "--timeout-ms")) {
			uint64_t t = strtoull(v, NULL, 10) * 1000000ull;
			c->cfg.connect_timeout_ns = c->cfg.first_byte_timeout_ns = c->cfg.idle_timeout_ns = t;
			i++;
		} else if (!strcmp(o, "--attempts")) {
			c->cfg.attempts = (unsigned)strtoul(v, NULL, 10), i++;
		} else if (!strcmp(o, "--retry-base-ms")) {
			c->cfg.retry_base_ns = strtoull(v, NULL, 10) * 1000000ull, i++;
		} else if (!strcmp(o, "--max-conns")) {
			c->cfg.max_conns_per_host = (unsigned)strtoul(v, NULL, 10), i++;
		} else if (!strcmp(o, "--chunk")) {
			a->chunk = strtoull(v, NULL, 10), i++;
			if (a->chunk == 0 || a->chunk > (256u << 20))
				return -usage();
		} else if (!strcmp(o, "--parallel")) {
			a->parallel = (unsigned)strtoul(v, NULL, 10), i++;
			if (a->parallel == 0 || a->parallel > MAX_PARALLEL)
				return -usage();
		} else if (!strcmp(o, "--repeat")) {
			a->repeat = (unsigned)strtoul(v, NULL, 10), i++;
			if (a->repeat == 0)
				a->repeat = 1;
		} else if (!strcmp(o, "--range") && a->nranges < SG_REGISTRY_RANGES_MAX) {
			if (parse_range(v, &a->ranges[a->nranges]) < 0) {
				fprintf(stderr, "stargz-fetch: bad range \"%s\" (want A-B, inclusive)\n", v);
				return -64;
			}
			a->nranges++, i++;
		} else {
			return -usage();
		}
	}
	return i;
}

static void print_stats(struct app *a)
{
	struct sg_ref pr;
	struct sg_host_stats st;

	if (sg_ref_parse(a->ref, &pr, NULL) == 0 &&
	    sg_registry_host_stats(a->reg, pr.host, &st) == 0)
		fprintf(stderr,
			"stats %s: requests=%u retries=%u reused=%u conns=%u max_conns=%u "
			"multirange=%s ignores_ranges=%d\n",
			pr.host, st.requests, st.retries, st.reused, st.conns_opened,
			st.conns_max_seen, sg_multirange_name(st.multirange), st.ignores_ranges);
}

int main(int argc, char **argv)
{
	static struct app a;
	static struct cli c;
	char host_of_ref[SG_REF_NAME_MAX + 1] = "";
	struct sg_error err = { 0 };
	int i, r;

	a.repeat = 1;
	a.chunk = 4 << 20;
	a.parallel = 4;
	i = parse_options(argc, argv, &a, &c);
	if (i < 0)
		return -i;
	if (argc - i < 1 || argc - i > 2)
		return usage();
	a.ref = argv[i];
	a.digest = argc - i == 2 ? argv[i + 1] : NULL;
	if ((a.nranges || a.size_only) && !a.digest)
		return usage();

	if (c.insecure_ref) {
		struct sg_ref pr;
		if (sg_ref_parse(a.ref, &pr, NULL) == 0) {
			snprintf(host_of_ref, sizeof(host_of_ref), "%s", pr.host);
			c.insecure[c.ninsecure++] = host_of_ref;
		}
		c.cfg.plain_http_localhost = true;
	}
	c.cfg.insecure_hosts = c.insecure;
	c.cfg.ninsecure_hosts = c.ninsecure;
	c.cfg.ca_files = c.cas;
	c.cfg.nca_files = c.ncas;

	r = sg_loop_new(&(struct sg_loop_config){ 0 }, &a.loop);
	if (r < 0) {
		fprintf(stderr, "stargz-fetch: event loop: %s\n", strerror(-r));
		return 1;
	}
	r = sg_registry_new(a.loop, &c.cfg, &a.reg, &err);
	if (r < 0) {
		fprintf(stderr, "stargz-fetch: %s\n", err.msg[0] ? err.msg : strerror(-r));
		sg_loop_free(a.loop);
		return 1;
	}
	sg_op_init(&a.op);
	if (a.digest)
		r = sg_registry_open_blob(a.reg, a.ref, a.digest, &a.src, &a.err, &a.op, on_blob);
	else
		r = sg_registry_get_manifest(a.reg, a.ref, a.platform, &a.manifest, &a.err, &a.op,
					     on_manifest);
	if (r < 0)
		fail(&a, "%s", strerror(-r));
	while (!a.done) {
		r = sg_loop_run_once(a.loop, 200);
		if (r < 0) {
			fail(&a, "event loop: %s", strerror(-r));
			break;
		}
	}
	if (fflush(stdout) != 0 && a.rc == 0)
		fail(&a, "stdout: write error");
	if (c.verbose)
		print_stats(&a);
	/* Tear down: reads still in flight complete with -ECANCELED, then the loop drains. */
	sg_range_source_free(a.src);
	sg_registry_manifest_free(a.manifest);
	sg_registry_shutdown(a.reg);
	if (sg_loop_drain(a.loop, 5000) == 0) {
		sg_registry_free(a.reg);
		sg_loop_free(a.loop);
	}
	for (size_t k = 0; k < a.nranges; k++)
		free(a.ranges[k].buf);
	for (unsigned k = 0; k < MAX_PARALLEL; k++)
		free(a.slots[k].buf);
	return a.rc;
}
