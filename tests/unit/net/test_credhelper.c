/* Tests for net/credhelper: the parse of a helper's answer, docker's server key, and real
 * helper runs (shell scripts in a temporary PATH directory) driven by the loop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "net/auth.h"
#include "net/credhelper.h"
#include "tests/unit/test.h"

static int parse(const char *s, struct sg_docker_cred *c)
{
	struct sg_error e = { 0 };
	return sg_credhelper_parse(s, strlen(s), c, &e);
}

TEST(parse_answers)
{
	struct sg_docker_cred c;

	CHECK_EQ(parse("{\"ServerURL\":\"h:5000\",\"Username\":\"alice\",\"Secret\":\"s3:c\"}\n", &c),
		 0);
	CHECK_STR(c.username, "alice");
	CHECK_STR(c.password, "s3:c");
	CHECK(c.identity_token == NULL);
	sg_docker_cred_done(&c);
	/* Extra members are ignored; ServerURL is not required. */
	CHECK_EQ(parse("{\"Secret\":\"p\",\"Username\":\"u\",\"x\":[1]}", &c), 0);
	CHECK_STR(c.username, "u");
	sg_docker_cred_done(&c);
	/* "<token>": the Secret is an identity token, as in docker. */
	CHECK_EQ(parse("{\"Username\":\"<token>\",\"Secret\":\"refresh\"}", &c), 0);
	CHECK(c.username == NULL && c.password == NULL);
	CHECK_STR(c.identity_token, "refresh");
	sg_docker_cred_done(&c);
}

TEST(parse_not_found_and_malformed)
{
	struct sg_docker_cred c;
	struct sg_error e = { 0 };
	const char *bad[] = {
		"", "not json", "[]", "\"x\"", "{\"Username\":\"u\"}", "{\"Secret\":\"s\"}",
		"{\"Username\":1,\"Secret\":\"s\"}", "{\"Username\":\"u\",\"Secret\":null}",
		"{\"Username\":\"u\",\"Secret\":\"s\"",
	};
	static const char nul[] = "{\"Username\":\"u\0\",\"Secret\":\"s\"}";

	CHECK_EQ(parse("credentials not found in native keychain\n", &c), -ENOENT);
	CHECK_EQ(parse("{\"ServerURL\":\"\",\"Username\":\"\",\"Secret\":\"\"}", &c), -ENOENT);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = (struct sg_error){ 0 };
		CHECK_EQ(sg_credhelper_parse(bad[i], strlen(bad[i]), &c, &e), -EBADMSG);
		CHECK(e.msg[0] != '\0');
		CHECK(c.username == NULL && c.password == NULL && c.identity_token == NULL);
	}
	CHECK_EQ(sg_credhelper_parse(nul, sizeof(nul) - 1, &c, &e), -EBADMSG);
}

TEST(server_key)
{
	char b[64];

	CHECK_EQ(sg_docker_helper_server("docker.io", b, sizeof(b)), 27);
	CHECK_STR(b, "https://index.docker.io/v1/");
	CHECK(sg_docker_helper_server("registry-1.docker.io", b, sizeof(b)) > 0);
	CHECK_STR(b, "https://index.docker.io/v1/");
	CHECK(sg_docker_helper_server("index.docker.io", b, sizeof(b)) > 0);
	CHECK_STR(b, "https://index.docker.io/v1/");
	CHECK(sg_docker_helper_server("127.0.0.1:5000", b, sizeof(b)) > 0);
	CHECK_STR(b, "127.0.0.1:5000");
	CHECK_EQ(sg_docker_helper_server("ghcr.io", b, 4), -ENOSPC);
}

/* ---- real runs ---- */

static char dir[] = "/tmp/credhelper-test.XXXXXX";

static void write_helper(const char *name, const char *body)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/docker-credential-%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		TEST_FAIL("fopen %s", path);
	fprintf(f, "#!/bin/sh\nserver=$(cat)\necho run >>%s/runs-%s\n%s\n", dir, name, body);
	fclose(f);
	chmod(path, 0755);
}

static void setup(void)
{
	char path[4096];

	if (!mkdtemp(dir))
		TEST_FAIL("mkdtemp");
	snprintf(path, sizeof(path), "%s:%s", dir, getenv("PATH") ? getenv("PATH") : "/bin");
	setenv("PATH", path, 1);
	write_helper("ok", "printf '{\"ServerURL\":\"%s\",\"Username\":\"u-%s\",\"Secret\":\"pw\"}' "
			   "\"$server\" \"$server\"");
	write_helper("nf", "echo 'credentials not found in native keychain'; exit 1");
	write_helper("hang", "exec sleep 30");
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

struct waiter {
	struct sg_op op;
	int called;
	int res;
};

static void waiter_init(struct waiter *w)
{
	*w = (struct waiter){ 0 };
	sg_op_init(&w->op);
}

static void on_ready(struct sg_op *op)
{
	struct waiter *w = sg_container_of(op, struct waiter, op);
	w->called++;
	w->res = op->res;
}

static void run_until(struct sg_loop *loop, const int *flag, int ms)
{
	uint64_t end = sg_now_ns() + (uint64_t)ms * 1000000u;
	while (!*flag && sg_now_ns() < end)
		(void)sg_loop_run_once(loop, 50);
}

TEST(run_cached_and_shared)
{
	struct sg_loop *loop;
	struct sg_credhelper *ch;
	struct waiter a, b;
	struct sg_docker_cred c;
	struct sg_error err = { 0 };

	setup();
	waiter_init(&a);
	waiter_init(&b);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_credhelper_new(loop, 0, &ch), 0);
	/* A lookup starts nothing. */
	CHECK_EQ(sg_credhelper_lookup(ch, "ok", "h:1", &c, &err), -EAGAIN);
	CHECK_EQ(sg_credhelper_runs(ch), 0);
	/* Two waiters, one run; the callbacks come from the loop, not from the wait. */
	CHECK_EQ(sg_credhelper_wait(ch, "ok", "h:1", &a.op, on_ready), 0);
	CHECK_EQ(sg_credhelper_wait(ch, "ok", "h:1", &b.op, on_ready), 0);
	CHECK_EQ(a.called + b.called, 0);
	run_until(loop, &b.called, 5000);
	CHECK_EQ(a.called, 1);
	CHECK_EQ(b.called, 1);
	CHECK_EQ(a.res, 0);
	CHECK_EQ(sg_credhelper_runs(ch), 1);
	CHECK_EQ(sg_credhelper_lookup(ch, "ok", "h:1", &c, &err), 0);
	CHECK_STR(c.username, "u-h:1");
	CHECK_STR(c.password, "pw");
	CHECK_STR(c.helper, "ok");
	CHECK_STR(err.msg, "");
	sg_docker_cred_done(&c);
	/* Waiting for an answer that is cached completes from the loop, without a run. */
	waiter_init(&a);
	CHECK_EQ(sg_credhelper_wait(ch, "ok", "h:1", &a.op, on_ready), 0);
	CHECK_EQ(a.called, 0);
	run_until(loop, &a.called, 1000);
	CHECK_EQ(a.called, 1);
	CHECK_EQ(a.res, 0);
	CHECK_EQ(sg_credhelper_runs(ch), 1);

	/* "not found": resolved, no credentials, a reason. */
	waiter_init(&a);
	CHECK_EQ(sg_credhelper_wait(ch, "nf", "h:1", &a.op, on_ready), 0);
	run_until(loop, &a.called, 5000);
	CHECK_EQ(a.res, 0);
	CHECK_EQ(sg_credhelper_lookup(ch, "nf", "h:1", &c, &err), -ENOENT);
	CHECK(c.username == NULL);
	CHECK(strstr(err.msg, "docker-credential-nf has no credentials for h:1") != NULL);
	sg_docker_cred_done(&c);

	/* Not in PATH: answered at once (still from the loop). */
	waiter_init(&a);
	CHECK_EQ(sg_credhelper_wait(ch, "absent", "h:1", &a.op, on_ready), 0);
	CHECK_EQ(a.called, 0);
	run_until(loop, &a.called, 1000);
	CHECK_EQ(a.called, 1);
	err = (struct sg_error){ 0 };
	CHECK_EQ(sg_credhelper_lookup(ch, "absent", "h:1", &c, &err), -ENOENT);
	CHECK(c.username == NULL);
	CHECK(strstr(err.msg, "cannot run docker-credential-absent") != NULL);
	sg_docker_cred_done(&c);

	sg_credhelper_free(ch);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
	teardown();
}

TEST(run_timeout_cancel_and_free_while_running)
{
	struct sg_loop *loop;
	struct sg_credhelper *ch;
	struct waiter a, b, d;
	struct sg_docker_cred c;
	struct sg_error err = { 0 };
	uint64_t t0;

	setup();
	waiter_init(&a);
	waiter_init(&b);
	waiter_init(&d);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_credhelper_new(loop, 300 * 1000000ull, &ch), 0);
	t0 = sg_now_ns();
	CHECK_EQ(sg_credhelper_wait(ch, "hang", "h:1", &a.op, on_ready), 0);
	run_until(loop, &a.called, 5000);
	CHECK_EQ(a.called, 1);
	CHECK(sg_now_ns() - t0 < 3000 * 1000000ull);
	CHECK_EQ(sg_credhelper_lookup(ch, "hang", "h:1", &c, &err), -ENOENT);
	CHECK(c.username == NULL);
	CHECK(strstr(err.msg, "timed out after 300 ms") != NULL);
	sg_docker_cred_done(&c);

	/* A cancelled wait completes once, with -ECANCELED, from the loop. */
	CHECK_EQ(sg_credhelper_wait(ch, "hang", "h:2", &d.op, on_ready), 0);
	CHECK_EQ(sg_credhelper_cancel(ch, &d.op), 0);
	CHECK_EQ(sg_credhelper_cancel(ch, &d.op), -EALREADY);
	CHECK_EQ(d.called, 0);
	run_until(loop, &d.called, 1000);
	CHECK_EQ(d.called, 1);
	CHECK_EQ(d.res, -ECANCELED);

	/* Freed while a helper runs: the waiter gets -ECANCELED once, the child is killed and
	 * reaped. */
	CHECK_EQ(sg_credhelper_wait(ch, "hang", "h:2", &b.op, on_ready), 0);
	(void)sg_loop_run_once(loop, 100);
	sg_credhelper_free(ch);
	for (int i = 0; i < 40 && sg_loop_pending(loop); i++)
		(void)sg_loop_run_once(loop, 50);
	CHECK_EQ(sg_loop_pending(loop), 0);
	CHECK_EQ(b.called, 1);
	CHECK_EQ(b.res, -ECANCELED);
	CHECK_EQ(d.called, 1);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
	teardown();
}

TEST_MAIN()
