/* Tests for net/registry: the pure helpers (backoff, Retry-After, URLs, plain-HTTP policy,
 * error bodies) and the pool and range-source contract against a small blocking HTTP server
 * on a thread (keep-alive, a bounded pool, exactly one completion per read on destroy). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/registry.h"
#include "tests/unit/test.h"

TEST(backoff)
{
	uint64_t ms = 1000000;
	CHECK_EQ(sg_registry_backoff_ns(0, 100 * ms, 5000 * ms, 1000), 0);
	CHECK_EQ(sg_registry_backoff_ns(1, 100 * ms, 5000 * ms, 1000), 100 * ms);
	CHECK_EQ(sg_registry_backoff_ns(2, 100 * ms, 5000 * ms, 1000), 200 * ms);
	CHECK_EQ(sg_registry_backoff_ns(4, 100 * ms, 5000 * ms, 1000), 800 * ms);
	CHECK_EQ(sg_registry_backoff_ns(40, 100 * ms, 5000 * ms, 1000), 5000 * ms);
	CHECK_EQ(sg_registry_backoff_ns(200, 100 * ms, 5000 * ms, 1000), 5000 * ms);
	CHECK_EQ(sg_registry_backoff_ns(1, 100 * ms, 5000 * ms, 500), 50 * ms);
	/* jitter is clamped to [0.5, 1] */
	CHECK_EQ(sg_registry_backoff_ns(1, 100 * ms, 5000 * ms, 0), 50 * ms);
	CHECK_EQ(sg_registry_backoff_ns(1, 100 * ms, 5000 * ms, 5000), 100 * ms);
}

TEST(retry_after)
{
	uint64_t d = 0;
	CHECK_EQ(sg_registry_retry_after("3", 1, 5000000000ull, &d), 0);
	CHECK_EQ(d, 3000000000ull);
	CHECK_EQ(sg_registry_retry_after("120", 3, 5000000000ull, &d), 0);
	CHECK_EQ(d, 5000000000ull);
	CHECK_EQ(sg_registry_retry_after("99999999999999999999999", 23, 5000000000ull, &d), -EINVAL);
	const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
	CHECK_EQ(sg_registry_retry_after(date, strlen(date), 5000000000ull, &d), -EINVAL);
	CHECK_EQ(sg_registry_retry_after("-1", 2, 5000000000ull, &d), -EINVAL);
	CHECK_EQ(sg_registry_retry_after("", 0, 5000000000ull, &d), -EINVAL);
}

TEST(status_retryable)
{
	CHECK(sg_registry_status_retryable(500));
	CHECK(sg_registry_status_retryable(502));
	CHECK(sg_registry_status_retryable(503));
	CHECK(sg_registry_status_retryable(504));
	CHECK(sg_registry_status_retryable(429));
	CHECK(sg_registry_status_retryable(408));
	CHECK(!sg_registry_status_retryable(501));
	CHECK(!sg_registry_status_retryable(505));
	CHECK(!sg_registry_status_retryable(404));
	CHECK(!sg_registry_status_retryable(401));
	CHECK(!sg_registry_status_retryable(200));
}

static int parse(const char *s, const struct sg_url *base, struct sg_url *u)
{
	return sg_url_parse(s, strlen(s), base, u);
}

TEST(url_parse)
{
	static struct sg_url u, base;
	char a[300];

	CHECK_EQ(parse("https://s3.example.com/bucket/key?X-Amz=1&b=2", NULL, &u), 0);
	CHECK(u.tls);
	CHECK_STR(u.host, "s3.example.com");
	CHECK_EQ(u.port, 443);
	CHECK_STR(u.target, "/bucket/key?X-Amz=1&b=2");
	CHECK_EQ(sg_url_authority(&u, a, sizeof(a)), 14);
	CHECK_STR(a, "s3.example.com");

	CHECK_EQ(parse("http://127.0.0.1:5000", NULL, &u), 0);
	CHECK(!u.tls);
	CHECK_EQ(u.port, 5000);
	CHECK_STR(u.target, "/");
	sg_url_authority(&u, a, sizeof(a));
	CHECK_STR(a, "127.0.0.1:5000");

	CHECK_EQ(parse("http://[::1]:8080/x#frag", NULL, &u), 0);
	CHECK_STR(u.host, "::1");
	CHECK_EQ(u.port, 8080);
	CHECK_STR(u.target, "/x");
	sg_url_authority(&u, a, sizeof(a));
	CHECK_STR(a, "[::1]:8080");

	CHECK_EQ(parse("HTTPS://Host.Example?q=1", NULL, &u), 0);
	CHECK_STR(u.target, "/?q=1");

	/* relative references against a base */
	CHECK_EQ(parse("https://reg.example:5000/v2/a/blobs/sha256:1", NULL, &base), 0);
	CHECK_EQ(parse("/other/path?x", &base, &u), 0);
	CHECK(u.tls);
	CHECK_STR(u.host, "reg.example");
	CHECK_EQ(u.port, 5000);
	CHECK_STR(u.target, "/other/path?x");
	CHECK_EQ(parse("sibling", &base, &u), 0);
	CHECK_STR(u.target, "/v2/a/blobs/sibling");
	CHECK_EQ(parse("//cdn.example/p", &base, &u), 0);
	CHECK(u.tls);
	CHECK_STR(u.host, "cdn.example");
	CHECK_EQ(u.port, 443);

	/* refused */
	CHECK_EQ(parse("ftp://x/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://user:pw@host/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https:///path", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host:0/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host:65536/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host/a b", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://host/a\r\nX: y", NULL, &u), -EINVAL);
	CHECK_EQ(parse("https://ho$t/", NULL, &u), -EINVAL);
	CHECK_EQ(parse("/relative", NULL, &u), -EINVAL);
	CHECK_EQ(parse("javascript:alert(1)", &base, &u), -EINVAL);
	{
		char *big = malloc(SG_URL_TARGET_MAX + 64);
		strcpy(big, "https://h/");
		memset(big + 10, 'a', SG_URL_TARGET_MAX + 10);
		big[SG_URL_TARGET_MAX + 20] = '\0';
		CHECK_EQ(parse(big, NULL, &u), -ENAMETOOLONG);
		free(big);
	}
}

TEST(plain_allowed)
{
	const char *list[] = { "reg.local:5000", "mirror.lan", "[fd00::1]:80" };

	CHECK(sg_registry_plain_allowed(list, 3, false, "reg.local:5000"));
	CHECK(!sg_registry_plain_allowed(list, 3, false, "reg.local:5001"));
	CHECK(!sg_registry_plain_allowed(list, 3, false, "reg.local"));
	CHECK(sg_registry_plain_allowed(list, 3, false, "mirror.lan"));
	CHECK(sg_registry_plain_allowed(list, 3, false, "mirror.lan:8080"));
	CHECK(sg_registry_plain_allowed(list, 3, false, "[fd00::1]:80"));
	CHECK(!sg_registry_plain_allowed(list, 3, false, "localhost:5000"));
	CHECK(sg_registry_plain_allowed(list, 3, true, "localhost:5000"));
	CHECK(sg_registry_plain_allowed(NULL, 0, true, "127.0.0.1:5000"));
	CHECK(sg_registry_plain_allowed(NULL, 0, true, "[::1]:5000"));
	CHECK(!sg_registry_plain_allowed(NULL, 0, true, "127example.com"));
	CHECK(!sg_registry_plain_allowed(NULL, 0, true, "docker.io"));
	CHECK(!sg_registry_plain_allowed(NULL, 0, false, "127.0.0.1:5000"));
	CHECK(!sg_registry_plain_allowed(list, 3, true, NULL));
}

TEST(error_text)
{
	char buf[128];
	const char *j = "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"blob unknown to registry\","
			"\"detail\":\"sha256:00\"}]}";
	CHECK(sg_registry_error_text(j, strlen(j), buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "BLOB_UNKNOWN: blob unknown to registry");
	const char *h = "<html>\r\n<b>Bad\x01 Gateway</b></html>\n";
	CHECK(sg_registry_error_text(h, strlen(h), buf, sizeof(buf)) > 0);
	CHECK(strchr(buf, '\r') == NULL && strchr(buf, '\x01') == NULL);
	CHECK_EQ(sg_registry_error_text("", 0, buf, sizeof(buf)), 0);
	CHECK_EQ(sg_registry_error_text(j, strlen(j), buf, 8), 7);
}

/* ---- a tiny blocking HTTP/1.1 blob server on threads ---- */

#define BLOB_SIZE (1 << 20)
#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000001"

static uint8_t blob[BLOB_SIZE];
static atomic_int conns_open, conns_peak, conns_total, delay_ms;

static void *serve_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[8192];
	size_t have = 0;

	int n = atomic_fetch_add(&conns_open, 1) + 1;
	int peak = atomic_load(&conns_peak);
	while (n > peak && !atomic_compare_exchange_weak(&conns_peak, &peak, n))
		;
	for (;;) {
		char *end;
		ssize_t r;
		while (!(end = memmem(req, have, "\r\n\r\n", 4))) {
			if (have == sizeof(req))
				goto out;
			r = recv(fd, req + have, sizeof(req) - have, 0);
			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		size_t hlen = (size_t)(end - req) + 4;
		char head[512];
		unsigned long long a = 0, b = BLOB_SIZE - 1;
		bool ranged = false, is_head = !strncmp(req, "HEAD ", 5);
		char *rg = memmem(req, hlen, "Range: bytes=", 13);
		if (rg && sscanf(rg + 13, "%llu-%llu", &a, &b) == 2)
			ranged = true;
		if (atomic_load(&delay_ms))
			usleep((useconds_t)atomic_load(&delay_ms) * 1000);
		int hl;
		if (is_head)
			hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
				      BLOB_SIZE);
		else if (ranged)
			hl = snprintf(head, sizeof(head),
				      "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %llu-%llu/%d\r\n"
				      "Content-Length: %llu\r\n\r\n", a, b, BLOB_SIZE, b - a + 1);
		else
			hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
				      BLOB_SIZE);
		if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) != hl)
			goto out;
		if (!is_head) {
			size_t off = ranged ? a : 0, len = ranged ? b - a + 1 : BLOB_SIZE;
			while (len) {
				r = send(fd, blob + off, len, MSG_NOSIGNAL);
				if (r <= 0)
					goto out;
				off += (size_t)r;
				len -= (size_t)r;
			}
		}
		memmove(req, req + hlen, have - hlen);
		have -= hlen;
	}
out:
	atomic_fetch_sub(&conns_open, 1);
	close(fd);
	return NULL;
}

static void *server_main(void *arg)
{
	int ls = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		pthread_t t;
		if (fd < 0)
			return NULL;
		atomic_fetch_add(&conns_total, 1);
		pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int start_server(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	pthread_t t;

	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 9));
	CHECK(ls >= 0);
	CHECK_EQ(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(ls, 64), 0);
	CHECK_EQ(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
	pthread_create(&t, NULL, server_main, (void *)(intptr_t)ls);
	pthread_detach(t);
	return ntohs(sa.sin_port);
}

struct ctx {
	struct sg_loop *loop;
	struct sg_registry *reg;
	struct sg_range_source *src;
	int open_res;
	bool opened;
};

static void on_open(void *ud, int res, struct sg_range_source *src, const char *err)
{
	struct ctx *c = ud;
	c->open_res = res;
	c->src = src;
	c->opened = true;
	if (res < 0 && res != -ECANCELED)
		fprintf(stderr, "open: %s\n", err);
}

static void setup(struct ctx *c, unsigned max_conns)
{
	char ref[64], err[256];
	int port = start_server();
	const char *insecure[] = { "127.0.0.1" };
	struct sg_registry_config cfg = {
		.hosts_dir = "", .docker_config = "", .no_system_ca = true,
		.insecure_hosts = insecure, .ninsecure_hosts = 1,
		.max_conns_per_host = max_conns, .connect_timeout_ns = 5000000000ull,
	};

	memset(c, 0, sizeof(*c));
	CHECK_EQ(sg_loop_new(&(struct sg_loop_config){ 0 }, &c->loop), 0);
	CHECK_EQ(sg_registry_new(c->loop, &cfg, &c->reg, err, sizeof(err)), 0);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/blob:v1", port);
	CHECK_EQ(sg_registry_open_blob(c->reg, ref, DIGEST, on_open, c), 0);
	CHECK(!c->opened);   /* never from inside the call */
	for (int i = 0; i < 200 && !c->opened; i++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK(c->opened);
	CHECK_EQ(c->open_res, 0);
	CHECK(sg_registry_is_source(c->src));
	CHECK_EQ(c->src->size, BLOB_SIZE);
}

static void teardown(struct ctx *c)
{
	sg_range_source_free(c->src);
	sg_registry_shutdown(c->reg);
	CHECK_EQ(sg_loop_drain(c->loop, 5000), 0);
	CHECK(!sg_registry_busy(c->reg));
	sg_registry_free(c->reg);
	sg_loop_free(c->loop);
}

#define NREADS 32
struct rd {
	struct sg_op op;
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
	static struct ctx c;
	static struct rd rd[NREADS];
	int done = 0;

	setup(&c, 3);
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
	struct sg_registry_host_stats st;
	CHECK_EQ(sg_registry_host_stats(c.reg, "no.such.host:1", &st), -ENOENT);
	CHECK(atomic_load(&conns_peak) <= 3);
	CHECK(atomic_load(&conns_total) <= 3);   /* kept alive, never reopened */
	teardown(&c);
}

TEST(destroy_completes_each_read_once)
{
	static struct ctx c;
	static struct rd rd[8];

	setup(&c, 2);
	atomic_store(&delay_ms, 300);
	for (int i = 0; i < 8; i++) {
		sg_op_init(&rd[i].op);
		CHECK_EQ(sg_range_read(c.src, (uint64_t)i * 100, 100, rd[i].buf, &rd[i].op, on_read), 0);
	}
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
	teardown(&c);
}

TEST(registry_free_cancels_open)
{
	static struct ctx c;
	char err[128];
	const char *insecure[] = { "127.0.0.1" };
	struct sg_registry_config cfg = { .hosts_dir = "", .docker_config = "", .no_system_ca = true,
					  .insecure_hosts = insecure, .ninsecure_hosts = 1 };
	int port = start_server();
	char ref[64];

	atomic_store(&delay_ms, 500);
	CHECK_EQ(sg_loop_new(&(struct sg_loop_config){ 0 }, &c.loop), 0);
	CHECK_EQ(sg_registry_new(c.loop, &cfg, &c.reg, err, sizeof(err)), 0);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/blob", port);
	CHECK_EQ(sg_registry_open_blob(c.reg, ref, DIGEST, on_open, &c), 0);
	CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	CHECK(sg_registry_busy(c.reg));
	sg_registry_shutdown(c.reg);
	CHECK(!c.opened);   /* from the loop, not from inside the call */
	for (int i = 0; i < 20 && !c.opened; i++)
		CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	CHECK(c.opened);
	CHECK_EQ(c.open_res, -ECANCELED);
	CHECK_EQ(sg_loop_drain(c.loop, 5000), 0);
	CHECK(!sg_registry_busy(c.reg));
	sg_registry_free(c.reg);
	sg_loop_free(c.loop);
}

/* The contract of every owner of ops: its free refuses (aborts) while work is in flight,
 * instead of leaving the loop a pointer into freed memory.  Before, sg_registry_free with a
 * read in flight returned and the registry lived on by reference counts, so a caller that
 * then freed the loop, or the read's owner, left callbacks pointing at freed memory. */
TEST(registry_free_with_fetch_in_flight_aborts)
{
	static struct ctx c;
	static struct rd rd;

	setup(&c, 1);
	atomic_store(&delay_ms, 500);
	sg_op_init(&rd.op);
	CHECK_EQ(sg_range_read(c.src, 0, 100, rd.buf, &rd.op, on_read), 0);
	CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	CHECK(sg_registry_busy(c.reg));
	CHECK_ABORTS(sg_registry_free(c.reg));
	/* Even after shutdown: the cancelled read has not called back yet. */
	sg_registry_shutdown(c.reg);
	CHECK_ABORTS(sg_registry_free(c.reg));
	CHECK_EQ(sg_loop_drain(c.loop, 5000), 0);
	/* The blob source still points at the registry. */
	CHECK_ABORTS(sg_registry_free(c.reg));
	sg_range_source_free(c.src);
	sg_registry_free(c.reg);
	sg_loop_free(c.loop);
}

/* The order that is right: shut down, drain, destroy the source, free.  Under ASan this is
 * the no-leak, no-use-after-free half of the test above. */
TEST(registry_shutdown_drain_free_with_fetch_in_flight)
{
	static struct ctx c;
	static struct rd rd;

	setup(&c, 1);
	atomic_store(&delay_ms, 500);
	sg_op_init(&rd.op);
	CHECK_EQ(sg_range_read(c.src, 0, 100, rd.buf, &rd.op, on_read), 0);
	CHECK(sg_loop_run_once(c.loop, 20) >= 0);
	sg_registry_shutdown(c.reg);
	CHECK(sg_registry_busy(c.reg));
	CHECK_EQ(sg_loop_drain(c.loop, 5000), 0);
	CHECK_EQ(rd.completions, 1);
	CHECK_EQ(rd.res, -ECANCELED);
	sg_range_source_free(c.src);   /* the source points into the registry: first */
	CHECK(!sg_registry_busy(c.reg));
	sg_registry_free(c.reg);
	sg_loop_free(c.loop);
}

TEST(bad_arguments)
{
	static struct ctx c;
	static struct rd r;
	struct sg_registry_range rr[2] = { { 0, 10, r.buf }, { BLOB_SIZE - 5, 10, r.buf } };

	setup(&c, 2);
	sg_op_init(&r.op);
	CHECK_EQ(sg_registry_read_ranges(c.src, rr, 2, &r.op, on_read), -ERANGE);
	CHECK_EQ(sg_range_read(c.src, BLOB_SIZE, 1, r.buf, &r.op, on_read), -ERANGE);
	CHECK_EQ(sg_registry_read_ranges(c.src, rr, SG_REGISTRY_RANGES_MAX + 1, &r.op, on_read),
		 -EINVAL);
	/* zero-length read completes with 0 from the loop */
	CHECK_EQ(sg_range_read(c.src, 5, 0, NULL, &r.op, on_read), 0);
	CHECK_EQ(r.completions, 0);
	CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	CHECK_EQ(r.completions, 1);
	CHECK_EQ(r.res, 0);
	teardown(&c);
}

TEST_MAIN()
