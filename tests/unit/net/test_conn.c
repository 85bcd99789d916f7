/* Tests for net/conn on the real loop: numeric and resolved connects, refusal, cancellation,
 * argument checks.  TLS is covered by tests/integration/net_tls.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "daemon/core/loop.h"
#include "net/conn.h"
#include "tests/unit/test.h"

struct result {
	struct sg_op op;
	struct sg_conn *c;
	bool done;
	int res;
	int fd;
};

static void result_init(struct result *r, struct sg_conn *c)
{
	*r = (struct result){ .c = c };
	sg_op_init(&r->op);
}

static void on_conn(struct sg_op *op)
{
	struct result *r = sg_container_of(op, struct result, op);
	CHECK(!r->done);   /* exactly once */
	r->done = true;
	r->res = op->res;
	r->fd = r->c->fd;
}

static struct sg_loop *new_loop(void)
{
	struct sg_loop_config cfg = { 0 };
	struct sg_loop *loop = NULL;
	int r = sg_loop_new(&cfg, &loop);
	if (r < 0)
		TEST_FAIL("sg_loop_new: %s", strerror(-r));
	return loop;
}

static void run_until(struct sg_loop *loop, const bool *done, int timeout_ms)
{
	double end = test_now_ms() + timeout_ms;
	while (!*done) {
		if (test_now_ms() > end)
			TEST_FAIL("not done within %d ms", timeout_ms);
		CHECK(sg_loop_run_once(loop, 50) >= 0);
	}
}

/* A listening socket on 127.0.0.1 (or ::1); returns its port. */
static int listener(int family, uint16_t *port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
	*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
					  ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

static void connect_ok(const char *host, int family)
{
	struct sg_loop *loop = new_loop();
	struct sg_conn c;
	struct result r = { 0 };
	uint16_t port;
	int lfd = listener(family, &port);
	if (lfd < 0)
		SKIP("no %s loopback: %s", family == AF_INET ? "IPv4" : "IPv6", strerror(-lfd));

	sg_conn_init(&c, loop);
	result_init(&r, &c);
	CHECK_EQ(sg_conn_connect(&c, host, port, 2000000000u, &r.op, on_conn), 0);
	CHECK(!r.done);   /* never synchronously */
	CHECK(sg_conn_busy(&c));
	run_until(loop, &r.done, 5000);
	CHECK_EQ(r.res, 0);
	CHECK(r.fd >= 0);
	/* The connection is real: the listener can accept it and bytes flow. */
	int afd = accept(lfd, NULL, NULL);
	CHECK(afd >= 0);
	CHECK_EQ(write(c.fd, "x", 1), 1);
	char b;
	CHECK_EQ(read(afd, &b, 1), 1);
	CHECK_EQ(b, 'x');
	close(afd);
	sg_conn_close(&c);
	CHECK_EQ(c.fd, -1);
	close(lfd);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

TEST(connect_numeric_ipv4)
{
	connect_ok("127.0.0.1", AF_INET);
}

TEST(connect_numeric_ipv6_brackets)
{
	connect_ok("[::1]", AF_INET6);
}

TEST(connect_resolved_name)
{
	/* "localhost" goes through the resolver thread. */
	connect_ok("localhost", AF_INET);
}

TEST(connect_refused)
{
	struct sg_loop *loop = new_loop();
	struct sg_conn c;
	struct result r = { 0 };
	uint16_t port;
	int lfd = listener(AF_INET, &port);
	CHECK(lfd >= 0);
	close(lfd);   /* nothing listens there now */

	sg_conn_init(&c, loop);
	result_init(&r, &c);
	CHECK_EQ(sg_conn_connect(&c, "127.0.0.1", port, 0, &r.op, on_conn), 0);
	run_until(loop, &r.done, 5000);
	CHECK_EQ(r.res, -ECONNREFUSED);
	CHECK_EQ(c.fd, -1);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

TEST(cancel_and_reuse)
{
	struct sg_loop *loop = new_loop();
	struct sg_conn c;
	struct result r = { 0 };
	uint16_t port;
	int lfd = listener(AF_INET, &port);
	CHECK(lfd >= 0);

	sg_conn_init(&c, loop);
	result_init(&r, &c);
	CHECK_EQ(sg_conn_connect(&c, "localhost", port, 0, &r.op, on_conn), 0);
	CHECK_EQ(sg_conn_connect(&c, "localhost", port, 0, &r.op, on_conn), -EBUSY);
	sg_conn_cancel(&c);
	run_until(loop, &r.done, 5000);
	/* Either the cancel won, or the lookup had already finished and the connect raced it. */
	CHECK(r.res == -ECANCELED || r.res == 0);
	sg_conn_close(&c);
	/* The conn is reusable afterwards. */
	result_init(&r, &c);
	CHECK_EQ(sg_conn_connect(&c, "127.0.0.1", port, 0, &r.op, on_conn), 0);
	run_until(loop, &r.done, 5000);
	CHECK_EQ(r.res, 0);
	sg_conn_close(&c);
	close(lfd);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

/* sg_conn_close is the conn's free: with a lookup or connect in flight on its op it aborts
 * (before, it closed the fd and freed the addresses under the in-flight connect). */
TEST(close_with_connect_in_flight_aborts)
{
	struct sg_loop *loop = new_loop();
	struct sg_conn c;
	struct result r = { 0 };
	uint16_t port;
	int lfd = listener(AF_INET, &port);
	CHECK(lfd >= 0);

	sg_conn_init(&c, loop);
	result_init(&r, &c);
	CHECK_EQ(sg_conn_connect(&c, "127.0.0.1", port, 0, &r.op, on_conn), 0);
	CHECK(sg_conn_busy(&c));
	CHECK_ABORTS(sg_conn_close(&c));
	run_until(loop, &r.done, 5000);
	CHECK_EQ(r.res, 0);
	sg_conn_close(&c);
	close(lfd);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

TEST(bad_arguments)
{
	struct sg_loop *loop = new_loop();
	struct sg_conn c;
	struct result r;
	char longname[300];

	sg_conn_init(&c, loop);
	result_init(&r, &c);
	CHECK_EQ(sg_conn_connect(&c, "127.0.0.1", 0, 0, &r.op, on_conn), -EINVAL);
	CHECK_EQ(sg_conn_connect(&c, NULL, 80, 0, &r.op, on_conn), -EINVAL);
	CHECK_EQ(sg_conn_connect(&c, "", 80, 0, &r.op, on_conn), -EINVAL);
	CHECK_EQ(sg_conn_connect(&c, "127.0.0.1", 80, 0, &r.op, NULL), -EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CHECK_EQ(sg_conn_connect(&c, longname, 80, 0, &r.op, on_conn), -EINVAL);
	CHECK(!sg_conn_busy(&c));
	sg_loop_free(loop);
}

TEST_MAIN()
