/* Tests for net/blob: opening a registry blob and reading ranges of it against a small HTTP
 * server on a thread (keep-alive, a bounded pool, exactly one completion per read on destroy,
 * an inconsistent answer refused with its reason, opening errors, the link meter fed by the
 * reads; the open that brings the blob's tail in one suffix GET, and its fallbacks; vectored
 * reads: one multipart/byteranges request, or one request a range from a server that answers
 * the first range only, and cancelled once). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "daemon/core/link_meter.h"
#include "net/blob.h"
#include "net/pool.h"
#include "net/registry.h"
#include "tests/helpers/registry_env.h"
#include "tests/unit/test.h"

#define BLOB_SIZE (1 << 20)
#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000001"

static uint8_t blob[BLOB_SIZE];

/* The blob server, or the script, and the registry. */
static void start_blob_mss(struct registry_env *c, unsigned max_conns, int mss)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 9));
	c->srv.blob = blob;
	c->srv.blob_size = BLOB_SIZE;
	c->srv.mss = mss;
	registry_env_start(c, max_conns, 1);
	CHECK_EQ(registry_env_open(c, DIGEST), 0);
	CHECK(sg_registry_is_source(c->src));
	CHECK_EQ(c->src->size, BLOB_SIZE);
}

static void start_blob(struct registry_env *c, unsigned max_conns)
{
	start_blob_mss(c, max_conns, 0);
}

static void start_script(struct registry_env *c, const char *const *script, size_t n)
{
	memset(c, 0, sizeof(*c));
	c->srv.script = script;
	c->srv.nscript = n;
	registry_env_start(c, 2, 1);
}

#define NREADS 32
struct rd {
	struct sg_op op;
	struct sg_error err;
	uint8_t buf[8192];
	int res;
	int completions;
	uint64_t off;
};

static void on_read(struct sg_op *op)
{
	struct rd *r = sg_container_of(op, struct rd, op);
	r->res = op->res;
	r->completions++;
}

TEST(pool_bounded_keepalive)
{
	static struct registry_env c;
	static struct rd rd[NREADS];
	int done = 0;

	start_blob(&c, 3);
	for (int i = 0; i < NREADS; i++) {
		sg_op_init(&rd[i].op);
		rd[i].off = (uint64_t)i * 30011 % (BLOB_SIZE - sizeof(rd[i].buf));
		CHECK_EQ(sg_range_read(c.src, rd[i].off, sizeof(rd[i].buf), rd[i].buf, &rd[i].op,
				       on_read), 0);
	}
	for (int it = 0; it < 400 && done < NREADS; it++) {
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
		done = 0;
		for (int i = 0; i < NREADS; i++)
			done += rd[i].completions;
	}
	CHECK_EQ(done, NREADS);
	for (int i = 0; i < NREADS; i++) {
		CHECK_EQ(rd[i].completions, 1);
		CHECK_EQ(rd[i].res, (int)sizeof(rd[i].buf));
		CHECK_MEM(rd[i].buf, blob + rd[i].off, sizeof(rd[i].buf));
	}
	struct sg_host_stats st;
	char host[32];
	snprintf(host, sizeof(host), "127.0.0.1:%d", c.srv.port);
	CHECK_EQ(sg_registry_host_stats(c.reg, host, &st), 0);
	CHECK_EQ(st.requests, NREADS + 1);   /* the HEAD, then one request per read */
	CHECK(st.reused >= NREADS + 1 - 3);
	CHECK_EQ(sg_registry_host_stats(c.reg, "no.such.host:1", &st), -ENOENT);
	CHECK(atomic_load(&c.srv.conns_peak) <= 3);
	CHECK(atomic_load(&c.srv.conns_total) <= 3);   /* kept alive, never reopened */
	registry_env_stop(&c);
}

/* Range reads feed the host's link meter, which the source exposes: a round trip per read,
 * and the throughput of a large one. */
TEST(reads_feed_the_link_meter)
{
	static struct registry_env c;
	static struct rd small;
	static uint8_t whole[BLOB_SIZE];

	start_blob(&c, 2);
	struct sg_link_meter *m = c.src->link;
	CHECK(m);
	CHECK_EQ(m->rtt_samples, 0u);   /* the HEAD is no range request */
	sg_op_init(&small.op);
	CHECK_EQ(sg_range_read(c.src, 100, sizeof(small.buf), small.buf, &small.op, on_read), 0);
	CHECK_EQ(m->owed, sizeof(small.buf));   /* asked of the link, not arrived */
	for (int it = 0; it < 200 && !small.completions; it++)
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	CHECK_EQ(small.res, (int)sizeof(small.buf));
	CHECK_EQ(m->owed, 0);
	CHECK_EQ(m->rtt_samples, 1u);
	CHECK(sg_link_meter_rtt_ns(m) > 0 && sg_link_meter_rtt_ns(m) < 5000000000ull);
	CHECK_EQ(m->bw_samples, 0u);    /* 8 KiB say nothing about the link */
	CHECK_EQ(m->active, 0u);
	/* The whole blob: enough for a throughput sample. */
	static struct rd big;
	sg_op_init(&big.op);
	CHECK_EQ(sg_range_read(c.src, 0, BLOB_SIZE, whole, &big.op, on_read), 0);
	CHECK_EQ(m->owed, (uint64_t)BLOB_SIZE);
	/* Repaid as the body arrives, not all at the end. */
	uint64_t owed_midway = 0;
	for (int it = 0; it < 200 && !big.completions; it++) {
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
		if (!big.completions && m->owed > 0 && m->owed < BLOB_SIZE)
			owed_midway = m->owed;
	}
	CHECK(owed_midway > 0);
	CHECK_EQ(m->owed, 0);
	CHECK_EQ(big.res, BLOB_SIZE);
	CHECK_MEM(whole, blob, BLOB_SIZE);
	CHECK_EQ(m->rtt_samples, 2u);
	CHECK(m->bw_samples >= 1u);
	CHECK(sg_link_meter_bytes_per_s(m) > 0);
	CHECK_EQ(m->active, 0u);        /* every begin had its end */
	registry_env_stop(&c);
}

/* The client sockets connected to the test server (its port is their peer's): their receive
 * buffers, as the kernel has them (SO_RCVBUF, twice what was asked), and their locks. */
static int client_sockets(const struct registry_env *c, int *bufs, int *locks, int *mss, int max)
{
	int n = 0;

	for (int fd = 0; fd < 1024 && n < max; fd++) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0 || peer.sin_family != AF_INET ||
		    ntohs(peer.sin_port) != c->srv.port)
			continue;
		socklen_t vl = sizeof(int);
		CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufs[n], &vl), 0);
		vl = sizeof(int);
		CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_BUF_LOCK, &locks[n], &vl), 0);
		vl = sizeof(int);
		if (mss)
			CHECK_EQ(getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss[n], &vl), 0);
		n++;
	}
	return n;
}

static int client_rcvbufs(const struct registry_env *c, int *bufs, int *locks, int max)
{
	return client_sockets(c, bufs, locks, NULL, max);
}

static void read_flags(struct registry_env *c, struct rd *r, uint8_t *buf, size_t len,
		       unsigned flags)
{
	struct sg_range_span span = { .offset = 4096, .len = len, .buf = buf };

	*r = (struct rd){ 0 };
	sg_op_init(&r->op);
	CHECK_EQ(sg_range_readv_flags(c->src, &span, 1, flags, &r->op, on_read), 0);
	for (int it = 0; it < 200 && !r->completions; it++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK_EQ(r->res, (int)len);
	CHECK_MEM(buf, blob + 4096, len);
}

/* A read fetching ahead (SG_RANGE_AHEAD) while a reader's own fetch is in flight on the link
 * offers the server a small window (the connection's receive buffer, fixed); without one, at
 * most a moderate one; a reader's read then gets the kernel's autotuning back.  The bytes it
 * received are counted on the link.  Segments of an Ethernet link's size (lo's are 64 KiB). */
TEST(reads_fetching_ahead_yield_the_window_to_readers)
{
	static struct registry_env c;
	static struct rd r;
	static uint8_t buf[256 << 10];
	int bufs[4], locks[4];

	start_blob_mss(&c, 1, 1448);   /* one connection: every read takes it in turn */
	struct sg_link_meter *m = c.src->link;
	sg_link_meter_reads(m, +1);   /* a reader's fetch on the link (fs/ counts them) */
	read_flags(&c, &r, buf, sizeof(buf), SG_RANGE_AHEAD);
	CHECK_EQ(m->ahead_bytes_in, sizeof(buf));
	CHECK_EQ(client_rcvbufs(&c, bufs, locks, 4), 1);
	CHECK(bufs[0] <= 16 << 10);   /* a trickle */
	CHECK(locks[0] & 2);          /* SOCK_RCVBUF_LOCK */

	CHECK_EQ(m->spec_bytes_in, 0);

	sg_link_meter_reads(m, -1);
	read_flags(&c, &r, buf, sizeof(buf), SG_RANGE_AHEAD | SG_RANGE_SPEC);
	CHECK_EQ(m->ahead_bytes_in, 2 * sizeof(buf));
	CHECK_EQ(m->spec_bytes_in, sizeof(buf));
	CHECK_EQ(client_rcvbufs(&c, bufs, locks, 4), 1);
	CHECK(bufs[0] > 16 << 10);    /* the link's share of fetching ahead, or autotuned */

	read_flags(&c, &r, buf, sizeof(buf), 0);   /* a reader's */
	CHECK_EQ(m->ahead_bytes_in, 2 * sizeof(buf));   /* not fetched ahead */
	CHECK_EQ(client_rcvbufs(&c, bufs, locks, 4), 1);
	CHECK_EQ(locks[0], 0);        /* autotuned again */
	CHECK(bufs[0] > 16 << 10);
	registry_env_stop(&c);
}

/* Yielding never offers less than a few of the connection's segments: in less than one, the
 * server sends nothing and waits for zero-window probes, backing off (this read of 256 KiB
 * over lo, 64 KiB segments, took 0.62 s in the trickle's buffer, and a reader joining its
 * batch waited as long). */
TEST(a_yielding_window_holds_whole_segments_however_large)
{
	static struct registry_env c;
	static struct rd r;
	static uint8_t buf[256 << 10];
	int bufs[4], locks[4], mss[4];

	start_blob(&c, 1);
	struct sg_link_meter *m = c.src->link;
	sg_link_meter_reads(m, +1);
	read_flags(&c, &r, buf, sizeof(buf), SG_RANGE_AHEAD);
	CHECK_EQ(client_sockets(&c, bufs, locks, mss, 4), 1);
	CHECK(mss[0] > 16 << 10);     /* lo's, as the test needs */
	CHECK(locks[0] & 2);          /* still a fixed buffer */
	CHECK(bufs[0] >= 2 * SG_POOL_RCVBUF_MIN_MSS * mss[0]);
	sg_link_meter_reads(m, -1);
	registry_env_stop(&c);
}

TEST(destroy_completes_each_read_once)
{
	static struct registry_env c;
	static struct rd rd[8];

	start_blob(&c, 2);
	atomic_store(&c.srv.delay_ms, 300);
	for (int i = 0; i < 8; i++) {
		sg_op_init(&rd[i].op);
		CHECK_EQ(sg_range_read(c.src, (uint64_t)i * 100, 100, rd[i].buf, &rd[i].op, on_read), 0);
	}
	struct sg_link_meter *m = c.src->link;
	CHECK_EQ(m->owed, 800);
	/* A read cancelled by op, then every other one by destroying the source. */
	CHECK_EQ(sg_range_cancel(c.src, &rd[0].op), 0);
	CHECK_EQ(rd[0].completions, 0);   /* from the loop, not from inside cancel */
	CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	CHECK_EQ(rd[0].completions, 1);
	CHECK_EQ(rd[0].res, -ECANCELED);
	CHECK_EQ(sg_range_cancel(c.src, &rd[0].op), -EALREADY);
	sg_range_source_free(c.src);
	c.src = NULL;
	for (int i = 0; i < 20; i++)
		CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(rd[i].completions, 1);
		CHECK_EQ(rd[i].res, -ECANCELED);
	}
	/* The requests left behind still end, and the registry is idle again: the link owes
	 * nothing for them. */
	atomic_store(&c.srv.delay_ms, 0);
	for (int i = 0; i < 100 && m->owed; i++)
		CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	CHECK_EQ(m->owed, 0);
	registry_env_stop(&c);
}

/* Far-apart spans, out of order, the blob's end among them. */
#define NSPANS 5
static const struct {
	uint64_t off;
	size_t len;
} span_at[NSPANS] = { { 0, 1000 }, { 100000, 5000 }, { 500000, 1 }, { BLOB_SIZE - 300, 300 },
		      { 300000, 8192 } };

/* A vectored read of span_at into rd's buffers, waited for; returns its result. */
static int readv_spans(struct registry_env *c, struct rd *rd, struct sg_op *op, int *completions)
{
	struct sg_range_span spans[NSPANS];

	for (int i = 0; i < NSPANS; i++)
		spans[i] = (struct sg_range_span){ span_at[i].off, span_at[i].len, rd[i].buf };
	CHECK(sg_range_source_vectored(c->src));
	CHECK_EQ(sg_range_readv(c->src, spans, NSPANS, op, on_read), 0);
	struct rd *r = sg_container_of(op, struct rd, op);
	for (int it = 0; it < 200 && !r->completions; it++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	*completions = r->completions;
	for (int i = 0; i < NSPANS; i++)
		CHECK_MEM(rd[i].buf, blob + span_at[i].off, span_at[i].len);
	return r->res;
}

static size_t spans_total(void)
{
	size_t total = 0;
	for (int i = 0; i < NSPANS; i++)
		total += span_at[i].len;
	return total;
}

/* A registry that answers multipart/byteranges (docker-registry does, through Go's
 * net/http) takes every span in one request. */
TEST(readv_sends_several_ranges_in_one_request)
{
	static struct registry_env c;
	static struct rd rd[NSPANS], r;
	int completions;

	start_blob(&c, 2);
	c.srv.multirange = true;
	int opened = atomic_load(&c.srv.gets);   /* the open's GET of the tail */
	sg_op_init(&r.op);
	CHECK_EQ(readv_spans(&c, rd, &r.op, &completions), (int)spans_total());
	CHECK_EQ(completions, 1);
	CHECK_EQ(atomic_load(&c.srv.gets) - opened, 1);
	CHECK_EQ(atomic_load(&c.srv.multi_gets), 1);
	/* One span is a plain read. */
	struct sg_range_span one = { 12345, 100, rd[0].buf };
	sg_op_init(&r.op);
	r.completions = 0;
	CHECK_EQ(sg_range_readv(c.src, &one, 1, &r.op, on_read), 0);
	for (int it = 0; it < 200 && !r.completions; it++)
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	CHECK_EQ(r.res, 100);
	CHECK_MEM(rd[0].buf, blob + 12345, 100);
	CHECK_EQ(atomic_load(&c.srv.multi_gets), 1);
	registry_env_stop(&c);
}

/* A registry that answers only the first range: the rest are fetched one request each, the
 * bytes still right, and from then on the host gets no multi-range request. */
TEST(readv_falls_back_to_one_request_a_range)
{
	static struct registry_env c;
	static struct rd rd[NSPANS], r;
	int completions;

	start_blob(&c, 8);
	int opened = atomic_load(&c.srv.gets);   /* the open's GET of the tail */
	sg_op_init(&r.op);
	CHECK_EQ(readv_spans(&c, rd, &r.op, &completions), (int)spans_total());
	CHECK_EQ(completions, 1);
	CHECK_EQ(atomic_load(&c.srv.multi_gets), 1);
	/* the first range came with the first */
	CHECK_EQ(atomic_load(&c.srv.gets) - opened, NSPANS);
	memset(rd, 0, sizeof(rd));
	sg_op_init(&r.op);
	r.completions = 0;
	CHECK_EQ(readv_spans(&c, rd, &r.op, &completions), (int)spans_total());
	CHECK_EQ(completions, 1);
	CHECK_EQ(atomic_load(&c.srv.multi_gets), 1);  /* remembered */
	CHECK_EQ(atomic_load(&c.srv.gets) - opened, 2 * NSPANS);
	CHECK_EQ(c.src->link->owed, 0);   /* each split request repaid what it asked */
	registry_env_stop(&c);
}

/* A server that answers several ranges with 200 and the whole blob (some CDNs): the body is
 * not read up to the last range (it could be tens of MB); each range is asked alone, the
 * bytes are right, and the host gets no multi-range request any more. */
TEST(readv_to_a_server_answering_the_whole_blob_asks_each_range_alone)
{
	static struct registry_env c;
	static struct rd rd[NSPANS], r;
	int completions;

	start_blob(&c, 8);
	c.srv.multi_whole = true;
	int opened = atomic_load(&c.srv.gets);
	sg_op_init(&r.op);
	CHECK_EQ(readv_spans(&c, rd, &r.op, &completions), (int)spans_total());
	CHECK_EQ(completions, 1);
	CHECK_EQ(atomic_load(&c.srv.multi_gets), 1);
	CHECK_EQ(atomic_load(&c.srv.gets) - opened, 1 + NSPANS);
	CHECK_EQ(c.src->link->owed, 0);   /* the whole blob's body, left unread, is owed no more */
	struct sg_host_stats st;
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", c.srv.port);
	CHECK_EQ(sg_registry_host_stats(c.reg, host, &st), 0);
	CHECK_EQ(st.multirange, SG_MULTIRANGE_WHOLE);
	memset(rd, 0, sizeof(rd));
	sg_op_init(&r.op);
	r.completions = 0;
	CHECK_EQ(readv_spans(&c, rd, &r.op, &completions), (int)spans_total());
	CHECK_EQ(atomic_load(&c.srv.multi_gets), 1);   /* remembered */
	registry_env_stop(&c);
}

/* Cancelled by its op: one completion, -ECANCELED, nothing written after it. */
TEST(readv_cancel_completes_once)
{
	static struct registry_env c;
	static struct rd rd[2], r;
	struct sg_range_span spans[2] = { { 0, 100, rd[0].buf }, { 200000, 100, rd[1].buf } };

	start_blob(&c, 2);
	c.srv.multirange = true;
	atomic_store(&c.srv.delay_ms, 300);
	sg_op_init(&r.op);
	CHECK_EQ(sg_range_readv(c.src, spans, 2, &r.op, on_read), 0);
	CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	CHECK_EQ(sg_range_cancel(c.src, &r.op), 0);
	CHECK_EQ(r.completions, 0);
	for (int i = 0; i < 50; i++)
		CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	CHECK_EQ(r.completions, 1);
	CHECK_EQ(r.res, -ECANCELED);
	CHECK_EQ(c.src->link->owed, 0);
	static const uint8_t zero[100];
	CHECK_MEM(rd[0].buf, zero, 100);
	CHECK_MEM(rd[1].buf, zero, 100);
	atomic_store(&c.srv.delay_ms, 0);
	registry_env_stop(&c);
}

TEST(bad_arguments)
{
	static struct registry_env c;
	static struct rd r;
	struct sg_registry_range rr[2] = { { 0, 10, r.buf }, { BLOB_SIZE - 5, 10, r.buf } };

	start_blob(&c, 2);
	sg_op_init(&r.op);
	CHECK_EQ(sg_registry_read_ranges(c.src, rr, 2, NULL, &r.op, on_read), -ERANGE);
	CHECK_EQ(sg_range_read(c.src, BLOB_SIZE, 1, r.buf, &r.op, on_read), -ERANGE);
	CHECK_EQ(sg_registry_read_ranges(c.src, rr, SG_REGISTRY_RANGES_MAX + 1, NULL, &r.op,
					 on_read), -EINVAL);
	/* The core's checks of a vectored read, before the source sees it. */
	CHECK_EQ(sg_range_readv(c.src, rr, 2, &r.op, on_read), -ERANGE);
	CHECK_EQ(sg_range_readv(c.src, rr, 0, &r.op, on_read), -EINVAL);
	CHECK_EQ(sg_range_readv(c.src, rr, SG_RANGE_SPANS_MAX + 1, &r.op, on_read), -EINVAL);
	/* zero-length read completes with 0 from the loop */
	CHECK_EQ(sg_range_read(c.src, 5, 0, NULL, &r.op, on_read), 0);
	CHECK_EQ(r.completions, 0);
	CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	CHECK_EQ(r.completions, 1);
	CHECK_EQ(r.res, 0);
	registry_env_stop(&c);
}

/* A 206 that says it covers another range than the one asked for: -EIO, and the read's
 * err says why, with the request it came from. */
TEST(inconsistent_answer_is_eio_with_reason)
{
	static struct registry_env c;
	static struct rd r;
	static const char *const script[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
		"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/999\r\n"
		"Content-Length: 10\r\n\r\n0123456789",
	};

	start_script(&c, script, 2);
	CHECK_EQ(registry_env_open(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, 1000);
	const char *head = "HEAD /v2/test/blob/blobs/" DIGEST " HTTP/1.1\r\n";
	CHECK(strncmp(c.srv.heads[0], head, strlen(head)) == 0);
	sg_op_init(&r.op);
	struct sg_registry_range rr = { 0, 10, r.buf };
	CHECK_EQ(sg_registry_read_ranges(c.src, &rr, 1, &r.err, &r.op, on_read), 0);
	for (int i = 0; i < 100 && !r.completions; i++)
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	CHECK_EQ(r.completions, 1);
	CHECK_EQ(r.res, -EIO);
	CHECK_EQ(r.err.code, 0);
	CHECK(strstr(r.err.msg, "GET http://127.0.0.1:") == r.err.msg);
	CHECK(strstr(r.err.msg, ": Content-Range says the blob has 999 bytes, HEAD said 1000"));
	CHECK(strstr(c.srv.heads[1], "\r\nRange: bytes=0-9\r\n"));
	CHECK_EQ(c.src->link->owed, 0);   /* a failed request owes nothing either */
	registry_env_stop(&c);
}

TEST(open_errors_come_from_the_loop)
{
	static struct registry_env c;
	static const char *const script[] = {
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
	};

	start_script(&c, script, 1);
	/* A bad digest: refused through the callback, not by the call. */
	CHECK_EQ(registry_env_open(&c, "sha256:xyz"), -EINVAL);
	CHECK_STR(c.err.msg, "bad blob digest \"sha256:xyz\"");
	CHECK(c.src == NULL);
	CHECK_EQ(registry_env_open(&c, DIGEST), -ENOENT);
	CHECK(strstr(c.err.msg, "HEAD http://127.0.0.1:") == c.err.msg);
	CHECK(strstr(c.err.msg, "/blobs/" DIGEST ": 404 Not Found"));
	CHECK(c.src == NULL);
	registry_env_stop(&c);
}

/* Opens the blob with its last `tail` bytes (0: the default) and waits; returns the open's
 * result. */
static int open_tail_of(struct registry_env *c, const char *digest, size_t tail)
{
	char ref[64];

	c->opened = false;
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/blob:v1", c->srv.port);
	CHECK_EQ(sg_registry_open_blob_tail(c->reg, ref, digest, tail, &c->src, &c->err, &c->op,
					    registry_env_on_open), 0);
	CHECK(!c->opened);
	for (int i = 0; i < 200 && !c->opened; i++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK(c->opened);
	return c->open_res;
}

static int open_tail(struct registry_env *c, const char *digest)
{
	return open_tail_of(c, digest, 0);
}

static void read_wait(struct registry_env *c, struct rd *r, uint64_t off, size_t len)
{
	r->completions = 0;
	r->res = 0;
	sg_op_init(&r->op);
	CHECK_EQ(sg_range_read(c->src, off, len, r->buf, &r->op, on_read), 0);
	CHECK_EQ(r->completions, 0);   /* never from inside the call */
	for (int i = 0; i < 200 && !r->completions; i++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK_EQ(r->completions, 1);
}

TEST(open_with_tail_is_one_suffix_get_and_serves_the_tail_once)
{
	static struct registry_env c;
	static struct rd r;
	static uint8_t whole[SG_REGISTRY_OPEN_TAIL];

	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 9));
	c.srv.blob = blob;
	c.srv.blob_size = BLOB_SIZE;
	registry_env_start(&c, 2, 1);
	CHECK_EQ(open_tail(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, BLOB_SIZE);
	CHECK_EQ(atomic_load(&c.srv.head_reqs), 0);   /* no HEAD: the size came with the tail */
	CHECK_EQ(atomic_load(&c.srv.gets), 1);
	/* Reads inside the tail: from memory, right bytes, no request. */
	uint64_t tail_off = BLOB_SIZE - SG_REGISTRY_OPEN_TAIL;
	read_wait(&c, &r, BLOB_SIZE - 51, 51);
	CHECK_EQ(r.res, 51);
	CHECK(memcmp(r.buf, blob + BLOB_SIZE - 51, 51) == 0);
	CHECK_EQ(atomic_load(&c.srv.gets), 1);
	/* The TOC loader's read of all of it: from memory, and then the tail is dropped. */
	sg_op_init(&r.op);
	r.completions = 0;
	CHECK_EQ(sg_range_read(c.src, tail_off, SG_REGISTRY_OPEN_TAIL, whole, &r.op, on_read), 0);
	for (int i = 0; i < 200 && !r.completions; i++)
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	CHECK_EQ(r.completions, 1);
	CHECK_EQ(r.res, (int)SG_REGISTRY_OPEN_TAIL);
	CHECK(memcmp(whole, blob + tail_off, SG_REGISTRY_OPEN_TAIL) == 0);
	CHECK_EQ(atomic_load(&c.srv.gets), 1);
	/* Later reads, of the tail too, go to the registry. */
	read_wait(&c, &r, BLOB_SIZE - 51, 51);
	CHECK_EQ(r.res, 51);
	CHECK(memcmp(r.buf, blob + BLOB_SIZE - 51, 51) == 0);
	CHECK_EQ(atomic_load(&c.srv.gets), 2);
	/* A read before the tail: the registry. */
	read_wait(&c, &r, 1000, 4096);
	CHECK_EQ(r.res, 4096);
	CHECK(memcmp(r.buf, blob + 1000, 4096) == 0);
	CHECK_EQ(atomic_load(&c.srv.gets), 3);
	registry_env_stop(&c);
}

TEST(open_with_a_tail_of_the_callers_size_brings_that_much)
{
	static struct registry_env c;
	static const char *const script[] = {
		"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 99999904-99999999/100000000"
		"\r\nContent-Length: 96\r\n\r\n"
		"0123456789abcdef0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef0123456789abcdef",
		"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
	};
	static struct registry_env big;
	static struct rd r;

	/* A TOC tail a profile recorded (96 bytes here): asked for exactly, and its bytes
	 * serve the loader's read of them. */
	start_script(&c, script, 1);
	CHECK_EQ(open_tail_of(&c, DIGEST, 96), 0);
	CHECK_EQ(c.src->size, 100000000);
	CHECK(strstr(c.srv.heads[0], "\r\nRange: bytes=-96\r\n"));
	read_wait(&c, &r, 100000000 - 96, 96);
	CHECK_EQ(r.res, 96);
	CHECK(memcmp(r.buf, script[0] + strlen(script[0]) - 96, 96) == 0);
	registry_env_stop(&c);
	/* Above SG_REGISTRY_OPEN_TAIL_MAX: asked for the most. */
	start_script(&big, script + 1, 2);
	CHECK_EQ(open_tail_of(&big, DIGEST, (size_t)1 << 30), 0);
	CHECK(strstr(big.srv.heads[0], "\r\nRange: bytes=-67108864\r\n"));
	registry_env_stop(&big);
}

TEST(open_with_tail_of_a_small_blob_gets_all_of_it)
{
	static struct registry_env c;
	static struct rd r;

	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < 5000; i++)
		blob[i] = (uint8_t)(i * 13);
	c.srv.blob = blob;
	c.srv.blob_size = 5000;
	registry_env_start(&c, 2, 1);
	CHECK_EQ(open_tail(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, 5000);
	read_wait(&c, &r, 0, 5000 < sizeof(r.buf) ? 5000 : sizeof(r.buf));
	CHECK_EQ(r.res, 5000);
	CHECK(memcmp(r.buf, blob, 5000) == 0);
	CHECK_EQ(atomic_load(&c.srv.gets), 1);
	CHECK_EQ(atomic_load(&c.srv.head_reqs), 0);
	registry_env_stop(&c);
}

TEST(open_with_tail_falls_back_to_head_when_refused)
{
	static struct registry_env c;
	static const char *const script[] = {
		"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
	};

	start_script(&c, script, 2);
	CHECK_EQ(open_tail(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, 1000);
	CHECK(strstr(c.srv.heads[0], "GET /v2/test/blob/blobs/" DIGEST " HTTP/1.1\r\n") ==
	      c.srv.heads[0]);
	CHECK(strstr(c.srv.heads[0], "\r\nRange: bytes=-524288\r\n"));
	CHECK(strstr(c.srv.heads[1], "HEAD /v2/test/blob/blobs/" DIGEST " HTTP/1.1\r\n") ==
	      c.srv.heads[1]);
	registry_env_stop(&c);
}

TEST(open_with_tail_falls_back_to_head_after_a_200_of_unknown_length)
{
	static struct registry_env c;
	static const char *const script[] = {
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
	};

	start_script(&c, script, 2);
	CHECK_EQ(open_tail(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, 4);
	CHECK(strstr(c.srv.heads[1], "HEAD /v2/test/blob/blobs/" DIGEST " HTTP/1.1\r\n") ==
	      c.srv.heads[1]);
	registry_env_stop(&c);
}

TEST(open_with_tail_refuses_an_answer_that_is_not_the_tail)
{
	static struct registry_env c;
	/* A 206 that does not end the blob: the size and the tail cannot be trusted. */
	static const char *const script[] = {
		"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/1000\r\n"
		"Content-Length: 10\r\n\r\n0123456789",
	};

	start_script(&c, script, 1);
	CHECK_EQ(open_tail(&c, DIGEST), -EIO);
	CHECK(strstr(c.err.msg, "206 to a suffix range without a Content-Range that ends the blob"));
	CHECK(c.src == NULL);
	registry_env_stop(&c);
}

TEST(open_with_tail_from_a_server_ignoring_range)
{
	static struct registry_env c;
	static struct rd r;
	/* 200 with all of a small blob: it is the tail.  A big one: only its size is taken. */
	static const char *const script[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcdefghij",
	};

	start_script(&c, script, 1);
	CHECK_EQ(open_tail(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, 10);
	read_wait(&c, &r, 0, 10);
	CHECK_EQ(r.res, 10);
	CHECK(memcmp(r.buf, "abcdefghij", 10) == 0);
	CHECK_EQ(atomic_load(&c.srv.nheads), 1);
	registry_env_stop(&c);
}

TEST(open_with_tail_takes_only_the_size_of_a_big_200)
{
	static struct registry_env c;
	static struct rd r;
	/* The body is not read (the connection is closed after its first bytes); the tail read
	 * that follows goes to the registry. */
	static const char *const script[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 600000\r\n\r\nxxxx",
		"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 599990-599999/600000\r\n"
		"Content-Length: 10\r\n\r\n0123456789",
	};

	start_script(&c, script, 2);
	CHECK_EQ(open_tail(&c, DIGEST), 0);
	CHECK_EQ(c.src->size, 600000);
	read_wait(&c, &r, 599990, 10);
	CHECK_EQ(r.res, 10);
	CHECK(memcmp(r.buf, "0123456789", 10) == 0);
	CHECK(strstr(c.srv.heads[1], "\r\nRange: bytes=599990-599999\r\n"));
	registry_env_stop(&c);
}

/* A source for the blob without an open: no request until a read, then one GET of the
 * ranges (no HEAD, no suffix GET); ranges come back right; a server that ignores Range fails
 * the read rather than send the whole blob. */
TEST(an_unsized_source_reads_ranges_with_no_open)
{
	static struct registry_env c;
	static struct rd rd[2], r;
	char ref[64];
	int completions = 0;

	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 9));
	c.srv.blob = blob;
	c.srv.blob_size = BLOB_SIZE;
	c.srv.multirange = true;
	registry_env_start(&c, 2, 1);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/blob:v1", c.srv.port);
	CHECK_EQ(sg_registry_blob_unsized(c.reg, ref, DIGEST, &c.src, &c.err), 0);
	CHECK(sg_registry_is_source(c.src));
	CHECK_EQ(c.src->size, UINT64_MAX);
	CHECK(c.src->link != NULL);
	CHECK_EQ(atomic_load(&c.srv.gets) + atomic_load(&c.srv.head_reqs), 0);
	struct sg_range_span spans[2] = { { 1000, 500, rd[0].buf }, { 700000, 300, rd[1].buf } };
	sg_op_init(&r.op);
	CHECK_EQ(sg_range_readv_flags(c.src, spans, 2, SG_RANGE_AHEAD, &r.op, on_read), 0);
	for (int i = 0; i < 200 && !r.completions; i++)
		CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	completions = r.completions;
	CHECK_EQ(completions, 1);
	CHECK_EQ(r.res, 800);
	CHECK_MEM(rd[0].buf, blob + 1000, 500);
	CHECK_MEM(rd[1].buf, blob + 700000, 300);
	CHECK_EQ(atomic_load(&c.srv.gets), 1);
	CHECK_EQ(atomic_load(&c.srv.head_reqs), 0);
	read_wait(&c, &r, 5, 10);
	CHECK_EQ(r.res, 10);
	CHECK_MEM(r.buf, blob + 5, 10);
	registry_env_stop(&c);

	/* A server that answers a range with 200 and the whole blob. */
	static const char *const script[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcdefghij",
	};
	start_script(&c, script, 1);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/blob:v1", c.srv.port);
	CHECK_EQ(sg_registry_blob_unsized(c.reg, ref, DIGEST, &c.src, &c.err), 0);
	read_wait(&c, &r, 2, 3);
	CHECK_EQ(r.res, -EIO);
	registry_env_stop(&c);
}

TEST_MAIN()
