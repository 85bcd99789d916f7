/* Tests for net/pool against a scripted HTTP server on a thread: a kept-alive connection
 * reused, the per-host bound with waiting and cancelled acquires, a refused connect that says
 * why, a release with a receive in flight, shutdown, and the host table. */
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "daemon/core/loop.h"
#include "net/pool.h"
#include "tests/helpers/http_server.h"
#include "tests/unit/test.h"

static const char *const ok_script[] = {
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
};
static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

struct env {
	struct sg_loop *loop;
	struct sg_pool *pool;
	struct test_server srv;
	struct sg_host *host;
};

struct user {
	struct sg_op op;
	struct sg_pool_conn *c;
	struct sg_error err;
	int res, calls;
};

static void on_user(struct sg_op *op)
{
	struct user *u = sg_container_of(op, struct user, op);
	u->res = op->res;
	u->calls++;
}

static void env_new(struct env *e, unsigned max_conns)
{
	struct sg_pool_config pc = { .connect_timeout_ns = 5000000000ull,
				     .max_conns_per_host = max_conns, .max_hosts = 4 };

	memset(e, 0, sizeof(*e));
	e->srv.script = ok_script;
	e->srv.nscript = 3;
	e->srv.mss = 1448;   /* an Ethernet link's segments, not lo's 64 KiB */
	CHECK(test_server_start(&e->srv) > 0);
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	CHECK_EQ(sg_pool_new(e->loop, &pc, &e->pool), 0);
	e->host = sg_pool_host(e->pool, false, "127.0.0.1", (uint16_t)e->srv.port, false, NULL);
	CHECK(e->host != NULL);
}

static void env_free(struct env *e)
{
	sg_pool_shutdown(e->pool);
	CHECK_EQ(sg_loop_drain(e->loop, 5000), 0);
	CHECK(!sg_pool_busy(e->pool));
	sg_pool_free(e->pool);
	sg_loop_free(e->loop);
}

static void wait_for(struct env *e, struct user *u, int calls)
{
	for (int i = 0; i < 200 && u->calls < calls; i++)
		CHECK(sg_loop_run_once(e->loop, 20) >= 0);
	CHECK_EQ(u->calls, calls);
}

static void user_init(struct user *u)
{
	memset(u, 0, sizeof(*u));
	sg_op_init(&u->op);
}

/* One request and its response on u->c; returns the response's last byte. */
static char exchange(struct env *e, struct user *u)
{
	int calls = u->calls;

	CHECK_EQ(sg_pool_conn_send(u->c, request, strlen(request), 0, &u->op, on_user), 0);
	wait_for(e, u, calls + 1);
	CHECK_EQ(u->res, (int)strlen(request));
	CHECK_EQ(sg_pool_conn_recv(u->c, 0, &u->op, on_user), 0);
	wait_for(e, u, calls + 2);
	CHECK(u->res > 0);
	CHECK(memcmp(sg_pool_conn_data(u->c), "HTTP/1.1 200 OK", 15) == 0);
	return (char)sg_pool_conn_data(u->c)[u->res - 1];
}

TEST(kept_alive_connection_is_reused)
{
	static struct env e;
	static struct user u;
	char host[32];

	env_new(&e, 2);
	user_init(&u);
	CHECK_EQ(sg_host_acquire(e.host, &u.c, &u.err, &u.op, on_user), 0);
	CHECK_EQ(u.calls, 0);   /* from the loop, not from inside the call */
	wait_for(&e, &u, 1);
	CHECK_EQ(u.res, 0);
	struct sg_pool_conn *first = u.c;
	CHECK_EQ(exchange(&e, &u), 'a');
	CHECK_EQ(sg_pool_conn_served(u.c), 1);
	sg_pool_conn_release(u.c, true);
	CHECK(!sg_pool_busy(e.pool));   /* idle connections do not count */
	u.calls = 0;
	CHECK_EQ(sg_host_acquire(e.host, &u.c, &u.err, &u.op, on_user), 0);
	wait_for(&e, &u, 1);
	CHECK(u.c == first);
	CHECK_EQ(exchange(&e, &u), 'b');
	CHECK_EQ(sg_pool_conn_served(u.c), 2);
	sg_pool_conn_release(u.c, true);
	struct sg_host_stats st;
	snprintf(host, sizeof(host), "127.0.0.1:%d", e.srv.port);
	CHECK_EQ(sg_pool_stats(e.pool, host, &st), 0);
	CHECK_EQ(st.conns_opened, 1);
	CHECK_EQ(st.requests, 2);
	CHECK_EQ(st.reused, 1);
	CHECK_EQ(atomic_load(&e.srv.conns_total), 1);
	env_free(&e);
}

/* A connection's receive buffer: fixed at a size (the kernel doubles it, and locks it), then
 * back to autotuning, with the lock cleared; asking for autotuning on a connection that was
 * never fixed changes nothing. */
static int sockopt(struct sg_pool_conn *c, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	CHECK_EQ(getsockopt(sg_pool_conn_fd(c), SOL_SOCKET, name, &v, &len), 0);
	return v;
}

TEST(receive_buffer_fixed_then_autotuned)
{
	static struct env e;
	static struct user u;

	env_new(&e, 1);
	user_init(&u);
	CHECK_EQ(sg_host_acquire(e.host, &u.c, &u.err, &u.op, on_user), 0);
	wait_for(&e, &u, 1);
	CHECK_EQ(u.res, 0);
	int autotuned = sockopt(u.c, SO_RCVBUF);
	sg_pool_conn_rcvbuf(u.c, 0);
	CHECK_EQ(sockopt(u.c, SO_RCVBUF), autotuned);
	CHECK_EQ(sockopt(u.c, SO_BUF_LOCK), 0);

	sg_pool_conn_rcvbuf(u.c, 16384);
	CHECK_EQ(sockopt(u.c, SO_RCVBUF), 2 * 16384);
	CHECK(sockopt(u.c, SO_BUF_LOCK) & 2);   /* SOCK_RCVBUF_LOCK: autotuning is off */
	CHECK_EQ(exchange(&e, &u), 'a');         /* the connection still works */

	sg_pool_conn_rcvbuf(u.c, 0);
	CHECK_EQ(sockopt(u.c, SO_BUF_LOCK), 0);
	CHECK(sockopt(u.c, SO_RCVBUF) > 2 * 16384);
	/* Never below a few segments: a window under one stalls the response. */
	int mss = 0;
	socklen_t ml = sizeof(mss);
	CHECK_EQ(getsockopt(sg_pool_conn_fd(u.c), IPPROTO_TCP, TCP_MAXSEG, &mss, &ml), 0);
	CHECK(mss > 1000 && mss <= 1448);
	sg_pool_conn_rcvbuf(u.c, 1024);
	CHECK_EQ(sockopt(u.c, SO_RCVBUF), 2 * SG_POOL_RCVBUF_MIN_MSS * mss);
	CHECK(sockopt(u.c, SO_BUF_LOCK) & 2);
	CHECK_EQ(exchange(&e, &u), 'b');          /* the script's next answer */
	/* Kept alive with it: the next user finds it as it was left. */
	sg_pool_conn_rcvbuf(u.c, 8192);
	sg_pool_conn_release(u.c, true);
	u.calls = 0;
	CHECK_EQ(sg_host_acquire(e.host, &u.c, &u.err, &u.op, on_user), 0);
	wait_for(&e, &u, 1);
	CHECK_EQ(sockopt(u.c, SO_RCVBUF), 2 * 8192);
	sg_pool_conn_rcvbuf(u.c, 0);
	CHECK_EQ(sockopt(u.c, SO_BUF_LOCK), 0);
	sg_pool_conn_release(u.c, true);
	env_free(&e);
}

TEST(bounded_host_waiters_and_cancel)
{
	static struct env e;
	static struct user a, b, c;

	env_new(&e, 1);
	user_init(&a);
	user_init(&b);
	user_init(&c);
	CHECK_EQ(sg_host_acquire(e.host, &a.c, &a.err, &a.op, on_user), 0);
	wait_for(&e, &a, 1);
	CHECK_EQ(sg_host_acquire(e.host, &b.c, &b.err, &b.op, on_user), 0);
	CHECK_EQ(sg_host_acquire(e.host, &c.c, &c.err, &c.op, on_user), 0);
	for (int i = 0; i < 5; i++)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	CHECK_EQ(b.calls + c.calls, 0);   /* one connection at most */
	CHECK(sg_pool_busy(e.pool));
	CHECK_EQ(sg_host_acquire_cancel(e.host, &c.op), 0);
	CHECK_EQ(sg_host_acquire_cancel(e.host, &c.op), -EALREADY);
	CHECK_EQ(c.calls, 0);
	wait_for(&e, &c, 1);
	CHECK_EQ(c.res, -ECANCELED);
	CHECK(c.c == NULL);
	CHECK_EQ(exchange(&e, &a), 'a');
	sg_pool_conn_release(a.c, true);
	wait_for(&e, &b, 1);
	CHECK_EQ(b.res, 0);
	CHECK(b.c == a.c);   /* the released connection, first in line */
	sg_pool_conn_release(b.c, false);
	CHECK_EQ(c.calls, 1);
	env_free(&e);
}

TEST(refused_connect_says_why)
{
	static struct env e;
	static struct user u;

	env_new(&e, 1);
	struct sg_host *dead = sg_pool_host(e.pool, false, "127.0.0.1", 1, false, NULL);
	CHECK(dead != NULL && dead != e.host);
	user_init(&u);
	CHECK_EQ(sg_host_acquire(dead, &u.c, &u.err, &u.op, on_user), 0);
	wait_for(&e, &u, 1);
	CHECK_EQ(u.res, -ECONNREFUSED);
	CHECK_STR(u.err.msg, "connect: Connection refused");
	CHECK(u.c == NULL);
	env_free(&e);
}

TEST(release_with_receive_in_flight)
{
	static struct env e;
	static struct user u;

	env_new(&e, 1);
	atomic_store(&e.srv.delay_ms, 300);
	user_init(&u);
	CHECK_EQ(sg_host_acquire(e.host, &u.c, &u.err, &u.op, on_user), 0);
	wait_for(&e, &u, 1);
	CHECK_EQ(sg_pool_conn_send(u.c, request, strlen(request), 0, &u.op, on_user), 0);
	wait_for(&e, &u, 2);
	CHECK_EQ(sg_pool_conn_recv(u.c, 0, &u.op, on_user), 0);
	CHECK_EQ(sg_pool_conn_recv(u.c, 0, &u.op, on_user), -EBUSY);
	sg_pool_conn_release(u.c, true);
	wait_for(&e, &u, 3);
	CHECK_EQ(u.res, -ECANCELED);
	for (int i = 0; i < 5; i++)
		CHECK(sg_loop_run_once(e.loop, 10) >= 0);
	CHECK_EQ(u.calls, 3);   /* once */
	struct sg_host_stats *st = sg_host_stats(e.host);
	CHECK_EQ(st->conns_opened, 1);
	env_free(&e);
}

TEST(shutdown_ends_waiters_and_refuses)
{
	static struct env e;
	static struct user a, b;

	env_new(&e, 1);
	user_init(&a);
	user_init(&b);
	CHECK_EQ(sg_host_acquire(e.host, &a.c, &a.err, &a.op, on_user), 0);
	wait_for(&e, &a, 1);
	CHECK_EQ(sg_host_acquire(e.host, &b.c, &b.err, &b.op, on_user), 0);
	sg_pool_shutdown(e.pool);
	wait_for(&e, &b, 1);
	CHECK_EQ(b.res, -ECANCELED);
	CHECK_EQ(sg_host_acquire(e.host, &b.c, &b.err, &b.op, on_user), -ECANCELED);
	CHECK(sg_pool_busy(e.pool));      /* a holds its connection */
	CHECK_ABORTS(sg_pool_free(e.pool));
	sg_pool_conn_release(a.c, true);  /* closed, not kept */
	env_free(&e);
}

TEST(host_table)
{
	static struct env e;
	struct sg_host_stats st;

	env_new(&e, 1);
	CHECK(sg_pool_host(e.pool, false, "127.0.0.1", (uint16_t)e.srv.port, false, NULL) == e.host);
	struct sg_host *tls = sg_pool_host(e.pool, true, "reg.example", 443, false, NULL);
	CHECK(tls != NULL && tls != e.host);
	CHECK_STR(sg_host_authority(tls), "reg.example");
	CHECK_STR(sg_host_name(tls), "reg.example");
	struct sg_host *v6 = sg_pool_host(e.pool, false, "::1", 8080, false, NULL);
	CHECK_STR(sg_host_authority(v6), "[::1]:8080");
	CHECK(!sg_host_same_origin(tls, e.host));
	CHECK(sg_host_same_origin(tls, sg_pool_host(e.pool, true, "REG.example", 443, true, NULL)));
	CHECK(!sg_host_wants_basic(tls));
	sg_host_set_wants_basic(tls);
	CHECK(sg_host_wants_basic(tls));
	/* Four pools at most: unused ones are collected for a new one, pinned ones are not. */
	sg_host_pin(tls);
	sg_host_pin(v6);
	sg_host_pin(e.host);
	CHECK(sg_pool_host(e.pool, false, "a.example", 80, false, NULL) != NULL);
	CHECK(sg_pool_host(e.pool, false, "b.example", 80, false, NULL) != NULL);
	sg_host_pin(sg_pool_host(e.pool, false, "b.example", 80, false, NULL));
	CHECK(sg_pool_host(e.pool, false, "c.example", 80, false, NULL) == NULL);
	CHECK_EQ(sg_pool_stats(e.pool, "reg.example:443", &st), 0);
	CHECK_EQ(sg_pool_stats(e.pool, "a.example:80", &st), -ENOENT);
	CHECK_STR(sg_multirange_name(SG_MULTIRANGE_FIRST_ONLY), "first-range-only");
	CHECK_STR(sg_multirange_name(_SG_MULTIRANGE_MAX), "invalid");
	env_free(&e);
}

TEST_MAIN()
