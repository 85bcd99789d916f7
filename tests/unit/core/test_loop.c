/* Unit tests of the io_uring event loop (daemon/core/loop.c). */
#include "daemon/core/loop.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

static struct sg_loop *new_loop(unsigned entries)
{
	struct sg_loop_config cfg = { .entries = entries };
	struct sg_loop *loop = NULL;
	int r = sg_loop_new(&cfg, &loop);
	if (r < 0)
		TEST_FAIL("sg_loop_new: %s", strerror(-r));
	return loop;
}

/* Runs the loop until `*done` is true, failing the test after timeout_ms. */
static void run_until(struct sg_loop *loop, const bool *done, int timeout_ms)
{
	double end = test_now_ms() + timeout_ms;
	while (!*done) {
		if (test_now_ms() > end)
			TEST_FAIL("loop did not finish within %d ms", timeout_ms);
		int r = sg_loop_run_once(loop, 50);
		if (r < 0)
			TEST_FAIL("sg_loop_run_once: %s", strerror(-r));
	}
}

static void finish(struct sg_loop *loop)
{
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	CHECK_EQ(sg_loop_pending(loop), 0);
	sg_loop_free(loop);
}

/* A completion record: how many times each op's callback ran, and with what. */
struct probe {
	struct sg_op op;
	int calls;
	int32_t res;
	int order;
	double at_ms;
};

static int completion_counter;

static void probe_cb(struct sg_op *op)
{
	struct probe *p = sg_container_of(op, struct probe, op);
	p->calls++;
	p->res = op->res;
	p->order = completion_counter++;
	p->at_ms = test_now_ms();
}

static bool all_called(struct probe *p, int n)
{
	for (int i = 0; i < n; i++)
		if (p[i].calls == 0)
			return false;
	return true;
}

static void run_until_all(struct sg_loop *loop, struct probe *p, int n, int timeout_ms)
{
	double end = test_now_ms() + timeout_ms;
	while (!all_called(p, n)) {
		if (test_now_ms() > end)
			TEST_FAIL("ops did not complete within %d ms", timeout_ms);
		CHECK(sg_loop_run_once(loop, 50) >= 0);
	}
}

TEST(nop_completes_once)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };

	sg_op_init(&p.op);
	CHECK_EQ(sg_nop(loop, &p.op, probe_cb), 0);
	CHECK(sg_op_busy(&p.op));
	CHECK_EQ(sg_nop(loop, &p.op, probe_cb), -EBUSY);
	run_until_all(loop, &p, 1, 1000);
	CHECK_EQ(p.calls, 1);
	CHECK_EQ(p.res, 0);
	CHECK(!sg_op_busy(&p.op));
	/* Nothing else arrives later. */
	sg_loop_run_once(loop, 20);
	CHECK_EQ(p.calls, 1);
	finish(loop);
}

TEST(timers_fire_in_order)
{
	struct sg_loop *loop = new_loop(8);
	/* Deadlines in ms, out of order and with ties: ties fire in start order. */
	static const int ms[] = { 50, 10, 30, 10, 0, 40, 30, 20, 5, 50 };
	enum { N = sizeof(ms) / sizeof(ms[0]) };
	struct probe p[N];
	double start = test_now_ms();

	memset(p, 0, sizeof(p));
	for (int i = 0; i < N; i++) {
		sg_op_init(&p[i].op);
		CHECK_EQ(sg_timer_start(loop, &p[i].op, (uint64_t)ms[i] * 1000000u, probe_cb), 0);
	}
	run_until_all(loop, p, N, 2000);
	for (int i = 0; i < N; i++) {
		CHECK_EQ(p[i].calls, 1);
		CHECK_EQ(p[i].res, 0);
		/* Never early. */
		CHECK(p[i].at_ms - start >= ms[i] - 0.5);
		for (int j = 0; j < N; j++) {
			if (ms[i] < ms[j] || (ms[i] == ms[j] && i < j))
				CHECK(p[i].order < p[j].order);
		}
	}
	finish(loop);
}

TEST(timer_cancel_delivers_one_ecanceled)
{
	struct sg_loop *loop = new_loop(8);
	struct probe a = { 0 }, b = { 0 };

	sg_op_init(&a.op);
	sg_op_init(&b.op);
	CHECK_EQ(sg_timer_start(loop, &a.op, 10ull * 1000000000u, probe_cb), 0);
	CHECK_EQ(sg_timer_start(loop, &b.op, 20ull * 1000000u, probe_cb), 0);
	CHECK_EQ(sg_op_cancel(&a.op), 0);
	CHECK_EQ(sg_op_cancel(&a.op), -EALREADY);   /* already decided */
	CHECK_EQ(a.calls, 0);                       /* never called from inside cancel */
	run_until_all(loop, &b, 1, 1000);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(a.res, -ECANCELED);
	CHECK_EQ(b.res, 0);
	CHECK(a.order < b.order);
	finish(loop);
}

TEST(linked_timeout_cancels_slow_read)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };
	int fds[2];
	char buf[16];

	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	sg_op_init(&p.op);
	sg_op_set_timeout(&p.op, 50ull * 1000000u);
	double t0 = test_now_ms();
	CHECK_EQ(sg_read(loop, &p.op, fds[0], buf, sizeof(buf), (uint64_t)-1, probe_cb), 0);
	run_until_all(loop, &p, 1, 2000);
	double took = p.at_ms - t0;
	CHECK_EQ(p.calls, 1);
	CHECK_EQ(p.res, -ETIMEDOUT);
	CHECK(took >= 45);
	CHECK(took < 1000);
	/* The timeout's own CQE (or a late one) must not produce a second completion. */
	sg_loop_run_once(loop, 30);
	CHECK_EQ(p.calls, 1);
	close(fds[0]);
	close(fds[1]);
	finish(loop);
}

TEST(linked_timeout_does_not_fire_for_fast_op)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };
	int fds[2];
	char buf[4];

	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	CHECK_EQ(write(fds[1], "abcd", 4), 4);
	sg_op_init(&p.op);
	sg_op_set_timeout(&p.op, 200ull * 1000000u);
	CHECK_EQ(sg_read(loop, &p.op, fds[0], buf, 4, (uint64_t)-1, probe_cb), 0);
	run_until_all(loop, &p, 1, 1000);
	CHECK_EQ(p.res, 4);
	CHECK_MEM(buf, "abcd", 4);
	/* Wait past the timeout: no late completion. */
	double end = test_now_ms() + 300;
	while (test_now_ms() < end)
		sg_loop_run_once(loop, 50);
	CHECK_EQ(p.calls, 1);
	close(fds[0]);
	close(fds[1]);
	finish(loop);
}

TEST(cancel_kernel_op_exactly_one_completion)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };
	int fds[2];
	char buf[16];

	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	sg_op_init(&p.op);
	CHECK_EQ(sg_read(loop, &p.op, fds[0], buf, sizeof(buf), (uint64_t)-1, probe_cb), 0);
	sg_loop_run_once(loop, 10);    /* in the kernel now */
	CHECK_EQ(p.calls, 0);
	CHECK_EQ(sg_op_cancel(&p.op), 0);
	CHECK_EQ(sg_op_cancel(&p.op), 0);   /* a second request is harmless */
	CHECK_EQ(p.calls, 0);
	run_until_all(loop, &p, 1, 1000);
	CHECK_EQ(p.res, -ECANCELED);
	/* Data written afterwards is not consumed by a ghost read. */
	CHECK_EQ(write(fds[1], "x", 1), 1);
	sg_loop_run_once(loop, 30);
	CHECK_EQ(p.calls, 1);
	CHECK_EQ(read(fds[0], buf, 1), 1);
	close(fds[0]);
	close(fds[1]);
	finish(loop);
}

TEST(cancel_races_with_completion)
{
	/* Ops that complete in the same instant they are cancelled: each still gets exactly
	 * one callback, with either its result or -ECANCELED. */
	struct sg_loop *loop = new_loop(64);
	enum { N = 200 };
	static struct probe p[N];
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	static char bufs[N][64];

	CHECK(fd >= 0);
	memset(p, 0, sizeof(p));
	for (int i = 0; i < N; i++) {
		sg_op_init(&p[i].op);
		CHECK_EQ(sg_read(loop, &p[i].op, fd, bufs[i], 64, 0, probe_cb), 0);
		if (i % 2)
			(void)sg_op_cancel(&p[i].op);
	}
	sg_loop_run_once(loop, 0);
	for (int i = 0; i < N; i += 3)
		(void)sg_op_cancel(&p[i].op);
	run_until_all(loop, p, N, 2000);
	sg_loop_run_once(loop, 20);
	for (int i = 0; i < N; i++) {
		CHECK_EQ(p[i].calls, 1);
		CHECK(p[i].res == 64 || p[i].res == -ECANCELED);
	}
	close(fd);
	finish(loop);
}

TEST(group_cancel_reaches_every_op)
{
	struct sg_loop *loop = new_loop(16);
	enum { N = 5 };
	struct probe p[N + 1];
	struct sg_group g;
	int fds[2];
	char buf[N][8];

	memset(p, 0, sizeof(p));
	sg_group_init(&g);
	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	for (int i = 0; i < N; i++) {
		sg_op_init(&p[i].op);
		sg_op_set_group(&p[i].op, &g);
	}
	/* A mix of kinds: kernel reads, a poll, a timer, and one posted result. */
	CHECK_EQ(sg_read(loop, &p[0].op, fds[0], buf[0], 8, (uint64_t)-1, probe_cb), 0);
	CHECK_EQ(sg_read(loop, &p[1].op, fds[0], buf[1], 8, (uint64_t)-1, probe_cb), 0);
	CHECK_EQ(sg_poll(loop, &p[2].op, fds[0], POLLIN, probe_cb), 0);
	CHECK_EQ(sg_timer_start(loop, &p[3].op, 60ull * 1000000000u, probe_cb), 0);
	CHECK_EQ(sg_post(loop, &p[4].op, 7, probe_cb), 0);
	/* An op outside the group is untouched. */
	sg_op_init(&p[N].op);
	CHECK_EQ(sg_timer_start(loop, &p[N].op, 100ull * 1000000u, probe_cb), 0);
	CHECK_EQ(g.count, N);
	sg_loop_run_once(loop, 10);
	CHECK_EQ(p[4].calls, 1);    /* the post ran before the cancel */
	CHECK_EQ(p[4].res, 7);
	CHECK_EQ(g.count, N - 1);
	sg_group_cancel(&g);
	run_until_all(loop, p, N, 2000);
	CHECK(sg_group_idle(&g));
	for (int i = 0; i < N - 1; i++) {
		CHECK_EQ(p[i].calls, 1);
		CHECK_EQ(p[i].res, -ECANCELED);
	}
	CHECK_EQ(p[N].calls, 0);
	run_until_all(loop, &p[N], 1, 2000);
	CHECK_EQ(p[N].res, 0);
	close(fds[0]);
	close(fds[1]);
	finish(loop);
}

static int many_done;
static void many_cb(struct sg_op *op)
{
	struct probe *p = sg_container_of(op, struct probe, op);
	p->calls++;
	p->res = op->res;
	many_done++;
}

TEST(ten_thousand_concurrent_ops)
{
	/* 10k reads in flight at once against a small ring: most wait in the overflow queue,
	 * all complete, each once, each with its own data. */
	enum { N = 10000, BS = 16 };
	struct sg_loop *loop = new_loop(256);
	struct probe *p = calloc(N, sizeof(*p));
	char *bufs = calloc(N, BS);
	char path[] = "/tmp/stargzd-test-XXXXXX";
	int fd = mkstemp(path);
	char *content = malloc((size_t)N * BS);

	CHECK(p && bufs && content && fd >= 0);
	unlink(path);
	for (int i = 0; i < N * BS; i++)
		content[i] = (char)(i * 7 + i / 251);
	CHECK_EQ(write(fd, content, (size_t)N * BS), N * BS);
	many_done = 0;
	for (int i = 0; i < N; i++) {
		sg_op_init(&p[i].op);
		CHECK_EQ(sg_read(loop, &p[i].op, fd, bufs + (size_t)i * BS, BS, (uint64_t)i * BS, many_cb),
			 0);
	}
	CHECK_EQ(sg_loop_pending(loop), N);
	double end = test_now_ms() + 20000;
	while (many_done < N) {
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(loop, 100) >= 0);
	}
	for (int i = 0; i < N; i++) {
		CHECK_EQ(p[i].calls, 1);
		CHECK_EQ(p[i].res, BS);
	}
	CHECK_MEM(bufs, content, (size_t)N * BS);
	/* And 10k timers at once. */
	many_done = 0;
	for (int i = 0; i < N; i++) {
		p[i].calls = 0;
		CHECK_EQ(sg_timer_start(loop, &p[i].op, (uint64_t)(i % 97) * 100000u, many_cb), 0);
	}
	while (many_done < N) {
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(loop, 100) >= 0);
	}
	for (int i = 0; i < N; i++)
		CHECK_EQ(p[i].calls, 1);
	close(fd);
	free(content);
	free(bufs);
	free(p);
	finish(loop);
}

/* ---- short transfers ---- */

struct pump {
	struct sg_op op;
	bool done;
	int32_t res;
};

static void pump_cb(struct sg_op *op)
{
	struct pump *p = sg_container_of(op, struct pump, op);
	p->done = true;
	p->res = op->res;
}

TEST(short_reads_and_writes_are_finished)
{
	/* 1 MiB through a 4 KiB pipe: the kernel returns short writes and short reads; the
	 * helpers must finish both transfers by themselves. */
	enum { LEN = 1 << 20 };
	struct sg_loop *loop = new_loop(8);
	struct pump w = { 0 }, r = { 0 };
	char *src = malloc(LEN), *dst = calloc(1, LEN);
	int fds[2];

	CHECK(src && dst);
	for (int i = 0; i < LEN; i++)
		src[i] = (char)(i ^ (i >> 9));
	CHECK_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
	fcntl(fds[1], F_SETPIPE_SZ, 4096);
	sg_op_init(&w.op);
	sg_op_init(&r.op);
	CHECK_EQ(sg_write(loop, &w.op, fds[1], src, LEN, (uint64_t)-1, pump_cb), 0);
	CHECK_EQ(sg_read(loop, &r.op, fds[0], dst, LEN, (uint64_t)-1, pump_cb), 0);
	run_until(loop, &w.done, 5000);
	run_until(loop, &r.done, 5000);
	CHECK_EQ(w.res, LEN);
	CHECK_EQ(r.res, LEN);
	CHECK_MEM(src, dst, LEN);
	CHECK(w.op.done == LEN);

	/* A full read stops early only at EOF, and says how much it got. */
	r = (struct pump){ 0 };
	sg_op_init(&r.op);
	CHECK_EQ(write(fds[1], "tail", 4), 4);
	close(fds[1]);
	CHECK_EQ(sg_read(loop, &r.op, fds[0], dst, 100, (uint64_t)-1, pump_cb), 0);
	run_until(loop, &r.done, 2000);
	CHECK_EQ(r.res, 4);
	CHECK_MEM(dst, "tail", 4);
	close(fds[0]);
	free(src);
	free(dst);
	finish(loop);
}

TEST(short_writev_and_readv_are_finished)
{
	enum { SEG = 3000, NSEG = 64, LEN = SEG * NSEG };
	struct sg_loop *loop = new_loop(8);
	struct pump w = { 0 }, r = { 0 };
	char *src = malloc(LEN), *dst = calloc(1, LEN);
	struct iovec wiov[NSEG], riov[7];
	int sv[2];
	int small = 4096;

	for (int i = 0; i < LEN; i++)
		src[i] = (char)(i * 13);
	for (int i = 0; i < NSEG; i++)
		wiov[i] = (struct iovec){ src + i * SEG, SEG };
	/* Uneven read segments, so the iovec cursor is advanced mid-segment. */
	size_t off = 0;
	for (int i = 0; i < 7; i++) {
		size_t len = i < 6 ? 1 + (size_t)i * 9001 : LEN - off;
		riov[i] = (struct iovec){ dst + off, len };
		off += len;
	}
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sg_op_init(&w.op);
	sg_op_init(&r.op);
	CHECK_EQ(sg_writev(loop, &w.op, sv[0], wiov, NSEG, (uint64_t)-1, pump_cb), 0);
	CHECK_EQ(sg_readv(loop, &r.op, sv[1], riov, 7, (uint64_t)-1, pump_cb), 0);
	run_until(loop, &w.done, 5000);
	run_until(loop, &r.done, 5000);
	CHECK_EQ(w.res, LEN);
	CHECK_EQ(r.res, LEN);
	CHECK_MEM(src, dst, LEN);
	close(sv[0]);
	close(sv[1]);
	free(src);
	free(dst);
	finish(loop);
}

TEST(send_completes_whole_buffer_recv_returns_first_data)
{
	enum { LEN = 512 * 1024 };
	struct sg_loop *loop = new_loop(8);
	struct pump s = { 0 }, rc = { 0 };
	char *src = malloc(LEN), *dst = malloc(LEN);
	int sv[2], small = 4096;
	size_t got = 0;

	for (int i = 0; i < LEN; i++)
		src[i] = (char)(i * 31 + 1);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	sg_op_init(&s.op);
	sg_op_init(&rc.op);
	CHECK_EQ(sg_send(loop, &s.op, sv[0], src, LEN, 0, pump_cb), 0);
	while (got < LEN) {
		rc.done = false;
		CHECK_EQ(sg_recv(loop, &rc.op, sv[1], dst + got, LEN - got, 0, pump_cb), 0);
		run_until(loop, &rc.done, 5000);
		CHECK(rc.res > 0);
		got += (size_t)rc.res;
	}
	run_until(loop, &s.done, 5000);
	CHECK_EQ(s.res, LEN);
	CHECK_MEM(src, dst, LEN);
	/* EOF: recv completes with 0. */
	close(sv[0]);
	rc.done = false;
	CHECK_EQ(sg_recv(loop, &rc.op, sv[1], dst, 16, 0, pump_cb), 0);
	run_until(loop, &rc.done, 2000);
	CHECK_EQ(rc.res, 0);
	close(sv[1]);
	free(src);
	free(dst);
	finish(loop);
}

/* ---- sockets, files ---- */

struct echo {
	struct sg_op accept, conn, srv_recv, srv_send, cli_send, cli_recv;
	int lfd, cfd, sfd;
	char srv_buf[64], cli_buf[64];
	struct sockaddr_in addr;
	bool done;
};

static void echo_srv_sent(struct sg_op *op)
{
	(void)op;
}

static void echo_srv_recv(struct sg_op *op)
{
	struct echo *e = sg_container_of(op, struct echo, srv_recv);
	CHECK(op->res > 0);
	CHECK_EQ(sg_send(op->loop, &e->srv_send, e->sfd, e->srv_buf, (size_t)op->res, 0,
			 echo_srv_sent), 0);
}

static void echo_accepted(struct sg_op *op)
{
	struct echo *e = sg_container_of(op, struct echo, accept);
	CHECK(op->res >= 0);
	e->sfd = op->res;
	CHECK_EQ(sg_recv(op->loop, &e->srv_recv, e->sfd, e->srv_buf, sizeof(e->srv_buf), 0,
			 echo_srv_recv), 0);
}

static void echo_cli_recv(struct sg_op *op)
{
	struct echo *e = sg_container_of(op, struct echo, cli_recv);
	CHECK_EQ(op->res, 5);
	CHECK_MEM(e->cli_buf, "hello", 5);
	e->done = true;
}

static void echo_cli_sent(struct sg_op *op)
{
	CHECK_EQ(op->res, 5);
}

static void echo_connected(struct sg_op *op)
{
	struct echo *e = sg_container_of(op, struct echo, conn);
	CHECK_EQ(op->res, 0);
	CHECK_EQ(sg_send(op->loop, &e->cli_send, e->cfd, "hello", 5, 0, echo_cli_sent), 0);
	CHECK_EQ(sg_recv(op->loop, &e->cli_recv, e->cfd, e->cli_buf, sizeof(e->cli_buf), 0,
			 echo_cli_recv), 0);
}

TEST(tcp_accept_connect_echo)
{
	struct sg_loop *loop = new_loop(16);
	struct echo *e = calloc(1, sizeof(*e));
	socklen_t alen = sizeof(e->addr);

	sg_op_init(&e->accept);
	sg_op_init(&e->conn);
	sg_op_init(&e->srv_recv);
	sg_op_init(&e->srv_send);
	sg_op_init(&e->cli_send);
	sg_op_init(&e->cli_recv);
	e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	e->addr.sin_family = AF_INET;
	e->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK_EQ(bind(e->lfd, (struct sockaddr *)&e->addr, sizeof(e->addr)), 0);
	CHECK_EQ(listen(e->lfd, 8), 0);
	CHECK_EQ(getsockname(e->lfd, (struct sockaddr *)&e->addr, &alen), 0);
	e->cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	CHECK_EQ(sg_accept(loop, &e->accept, e->lfd, NULL, NULL, SOCK_CLOEXEC, echo_accepted), 0);
	CHECK_EQ(sg_connect(loop, &e->conn, e->cfd, (struct sockaddr *)&e->addr, sizeof(e->addr),
			    echo_connected), 0);
	run_until(loop, &e->done, 3000);
	close(e->sfd);
	close(e->cfd);
	close(e->lfd);
	finish(loop);
	free(e);
}

TEST(connect_refused_reports_errno)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	/* A port that was just free: bind, learn it, close. */
	CHECK_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	close(l);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sg_op_init(&p.op);
	CHECK_EQ(sg_connect(loop, &p.op, fd, (struct sockaddr *)&a, sizeof(a), probe_cb), 0);
	run_until_all(loop, &p, 1, 2000);
	CHECK_EQ(p.res, -ECONNREFUSED);
	close(fd);
	finish(loop);
}

struct file_job {
	struct sg_op op;
	struct sg_loop *loop;
	char path[64];
	int fd;
	int step;
	char data[32];
	bool done;
	int32_t results[6];
};

static void file_step(struct sg_op *op)
{
	struct file_job *j = sg_container_of(op, struct file_job, op);
	j->results[j->step] = op->res;
	CHECK(op->res >= 0);
	switch (j->step++) {
	case 0:
		j->fd = op->res;
		CHECK_EQ(sg_write(j->loop, op, j->fd, "0123456789", 10, 0, file_step), 0);
		break;
	case 1:
		CHECK_EQ(sg_fsync(j->loop, op, j->fd, false, file_step), 0);
		break;
	case 2:
		CHECK_EQ(sg_read(j->loop, op, j->fd, j->data, 4, 3, file_step), 0);
		break;
	case 3:
		CHECK_EQ(sg_close(j->loop, op, j->fd, file_step), 0);
		break;
	default:
		j->done = true;
	}
}

TEST(openat_write_fsync_read_close)
{
	struct sg_loop *loop = new_loop(8);
	struct file_job j = { .loop = loop, .fd = -1 };
	char dir[] = "/tmp/stargzd-test-XXXXXX";

	CHECK(mkdtemp(dir));
	snprintf(j.path, sizeof(j.path), "%s/f", dir);
	sg_op_init(&j.op);
	CHECK_EQ(sg_openat(loop, &j.op, AT_FDCWD, j.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
			   file_step), 0);
	run_until(loop, &j.done, 3000);
	CHECK_EQ(j.results[1], 10);
	CHECK_EQ(j.results[3], 4);
	CHECK_MEM(j.data, "3456", 4);
	CHECK_EQ(fcntl(j.fd, F_GETFD), -1);   /* closed by the ring */
	struct stat st;
	CHECK_EQ(stat(j.path, &st), 0);
	CHECK_EQ(st.st_size, 10);
	unlink(j.path);
	rmdir(dir);
	finish(loop);
}

TEST(openat_missing_file_is_enoent)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };

	sg_op_init(&p.op);
	CHECK_EQ(sg_openat(loop, &p.op, AT_FDCWD, "/nonexistent/stargzd", O_RDONLY, 0, probe_cb), 0);
	run_until_all(loop, &p, 1, 2000);
	CHECK_EQ(p.res, -ENOENT);
	finish(loop);
}

TEST(poll_reports_readable)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };
	int fds[2];

	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	sg_op_init(&p.op);
	CHECK_EQ(sg_poll(loop, &p.op, fds[0], POLLIN, probe_cb), 0);
	sg_loop_run_once(loop, 20);
	CHECK_EQ(p.calls, 0);
	CHECK_EQ(write(fds[1], "x", 1), 1);
	run_until_all(loop, &p, 1, 2000);
	CHECK(p.res & POLLIN);
	close(fds[0]);
	close(fds[1]);
	finish(loop);
}

/* A posted completion never runs inside the poster's stack. */
static int post_depth;
static void post_cb(struct sg_op *op)
{
	CHECK_EQ(post_depth, 0);
	struct probe *p = sg_container_of(op, struct probe, op);
	p->calls++;
	p->res = op->res;
}

TEST(post_is_deferred_to_dispatch)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };

	sg_op_init(&p.op);
	post_depth = 1;
	CHECK_EQ(sg_post(loop, &p.op, -EIO, post_cb), 0);
	CHECK_EQ(p.calls, 0);
	post_depth = 0;
	run_until_all(loop, &p, 1, 1000);
	CHECK_EQ(p.res, -EIO);
	finish(loop);
}

/* A callback that resubmits itself forever must not starve other ops. */
struct spinner {
	struct sg_op op;
	int spins;
	bool stop;
};
static void spin_cb(struct sg_op *op)
{
	struct spinner *s = sg_container_of(op, struct spinner, op);
	s->spins++;
	if (!s->stop)
		(void)sg_post(op->loop, op, 0, spin_cb);
}

TEST(self_reposting_callback_does_not_starve_io)
{
	struct sg_loop *loop = new_loop(8);
	struct spinner s = { 0 };
	struct probe p = { 0 };

	sg_op_init(&s.op);
	sg_op_init(&p.op);
	CHECK_EQ(sg_post(loop, &s.op, 0, spin_cb), 0);
	CHECK_EQ(sg_timer_start(loop, &p.op, 20ull * 1000000u, probe_cb), 0);
	run_until_all(loop, &p, 1, 2000);
	CHECK(s.spins > 0);
	/* A post is delivered even during the drain: a spinner must stop by itself. */
	s.stop = true;
	finish(loop);
}

static void on_term(struct sg_loop *loop, int signo, void *userdata)
{
	int *got = userdata;
	*got = signo;
	sg_loop_stop(loop);
}

static void send_term(struct sg_op *op)
{
	(void)op;
	kill(getpid(), SIGTERM);
}

TEST(sigterm_stops_loop_cleanly)
{
	struct sg_loop *loop = new_loop(8);
	struct probe reader = { 0 };
	struct sg_op timer;
	sigset_t set;
	int got = 0, fds[2];
	char buf[8];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	CHECK_EQ(sg_loop_watch_signals(loop, &set, on_term, &got), 0);
	/* An op that would never finish on its own: stop + drain must still complete it. */
	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	sg_op_init(&reader.op);
	CHECK_EQ(sg_read(loop, &reader.op, fds[0], buf, sizeof(buf), (uint64_t)-1, probe_cb), 0);
	sg_op_init(&timer);
	CHECK_EQ(sg_timer_start(loop, &timer, 30ull * 1000000u, send_term), 0);
	double t0 = test_now_ms();
	CHECK_EQ(sg_loop_run(loop), 0);   /* returns because the handler stopped it */
	CHECK(test_now_ms() - t0 < 2000);
	CHECK_EQ(got, SIGTERM);
	CHECK(sg_loop_stopping(loop));
	CHECK_EQ(reader.calls, 0);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	CHECK_EQ(reader.calls, 1);
	CHECK_EQ(reader.res, -ECANCELED);
	CHECK_EQ(sg_loop_pending(loop), 0);
	/* Nothing new starts once the drain began: refused at once, no callback.  A post is
	 * no new work (an answer already owed): accepted, and the next drain delivers it. */
	struct probe late = { 0 };
	sg_op_init(&late.op);
	CHECK_EQ(sg_nop(loop, &late.op, probe_cb), -ECANCELED);
	CHECK_EQ(sg_timer_start(loop, &late.op, 1000, probe_cb), -ECANCELED);
	CHECK_EQ(late.calls, 0);
	CHECK_EQ(sg_post(loop, &late.op, -EPIPE, probe_cb), 0);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	CHECK_EQ(late.calls, 1);
	CHECK_EQ(late.res, -EPIPE);
	sg_loop_free(loop);
	close(fds[0]);
	close(fds[1]);
}

/* The shape of a TLS engine or an exchange at shutdown: the drain cancels its socket read,
 * and that callback owes its own caller an answer, which it posts.  The post must be
 * delivered, not refused: before, the caller's callback was lost for good. */
struct relay {
	struct sg_op io;
	struct probe owed;
	int post_res;
};
static void relay_io_cb(struct sg_op *op)
{
	struct relay *r = sg_container_of(op, struct relay, io);
	r->post_res = sg_post(op->loop, &r->owed.op, op->res, probe_cb);
}

TEST(drain_delivers_completions_owed_by_cancelled_ops)
{
	struct sg_loop *loop = new_loop(8);
	struct relay r = { 0 };
	int fds[2];
	char buf[8];

	CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
	sg_op_init(&r.io);
	sg_op_init(&r.owed.op);
	CHECK_EQ(sg_read(loop, &r.io, fds[0], buf, sizeof(buf), (uint64_t)-1, relay_io_cb), 0);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	CHECK_EQ(r.post_res, 0);
	CHECK_EQ(r.owed.calls, 1);
	CHECK_EQ(r.owed.res, -ECANCELED);
	CHECK_EQ(sg_loop_pending(loop), 0);
	sg_loop_free(loop);
	close(fds[0]);
	close(fds[1]);
}

TEST(sigint_is_delivered_through_the_ring)
{
	struct sg_loop *loop = new_loop(8);
	sigset_t set;
	int got = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	CHECK_EQ(sg_loop_watch_signals(loop, &set, on_term, &got), 0);
	kill(getpid(), SIGINT);   /* blocked: waits in the signalfd, no handler runs in between */
	CHECK_EQ(got, 0);
	CHECK_EQ(sg_loop_run(loop), 0);
	CHECK_EQ(got, SIGINT);
	finish(loop);
}

TEST(bad_arguments_are_refused_without_callback)
{
	struct sg_loop *loop = new_loop(8);
	struct probe p = { 0 };
	char buf[4];

	sg_op_init(&p.op);
	CHECK_EQ(sg_read(loop, &p.op, -1, buf, 4, 0, probe_cb), -EINVAL);
	CHECK_EQ(sg_read(loop, &p.op, 0, NULL, 4, 0, probe_cb), -EINVAL);
	CHECK_EQ(sg_nop(loop, &p.op, NULL), -EINVAL);
	CHECK_EQ(sg_op_cancel(&p.op), -EALREADY);
	CHECK_EQ(sg_loop_pending(loop), 0);
	sg_loop_run_once(loop, 10);
	CHECK_EQ(p.calls, 0);
	finish(loop);
}

TEST_MAIN()
