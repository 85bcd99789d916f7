/* Tests for net/registry: configuration errors with their reason, and the lifecycle contract
 * against a scripted HTTP server on a thread (shutdown ends what runs, free refuses while
 * anything points at the registry). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "net/blob.h"
#include "net/registry.h"
#include "tests/helpers/registry_env.h"
#include "tests/unit/test.h"

#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000001"

static const char *const script[] = {
	"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
	"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/1000\r\nContent-Length: 100\r\n\r\n"
	"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
	"890123456789",
};

static void start(struct registry_env *c)
{
	memset(c, 0, sizeof(*c));
	c->srv.script = script;
	c->srv.nscript = 2;
	registry_env_start(c, 8, 0);
}

static void open_blob(struct registry_env *c)
{
	start(c);
	CHECK_EQ(registry_env_open(c, DIGEST), 0);
	CHECK_EQ(c->src->size, 1000);
}

struct rd {
	struct sg_op op;
	uint8_t buf[100];
	int res;
	int completions;
};

static void on_read(struct sg_op *op)
{
	struct rd *r = sg_container_of(op, struct rd, op);
	r->res = op->res;
	r->completions++;
}

static int new_with(struct sg_registry_config *cfg, struct sg_error *err)
{
	struct sg_loop *loop;
	struct sg_registry *reg = NULL;

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	int r = sg_registry_new(loop, cfg, &reg, err);
	CHECK(r < 0 || reg != NULL);
	sg_registry_free(reg);
	sg_loop_free(loop);
	return r;
}

TEST(new_reports_configuration_errors)
{
	char path[] = "/tmp/registry-test-XXXXXX";
	struct sg_error err = { 0 };
	char want[256];
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "{\"auths\": [", 11), 11);
	close(fd);
	struct sg_registry_config cfg = { .hosts_dir = "", .docker_config = path, .no_system_ca = true };
	CHECK_EQ(new_with(&cfg, &err), -EBADMSG);
	snprintf(want, sizeof(want), "%s: malformed JSON", path);
	CHECK_STR(err.msg, want);
	unlink(path);
	err = (struct sg_error){ 0 };
	CHECK_EQ(new_with(&cfg, &err), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	CHECK_STR(err.msg, want);
	/* Only a file named explicitly must exist. */
	cfg.docker_config = "";
	const char *cas[] = { "/nonexistent/ca.pem" };
	cfg.ca_files = cas;
	cfg.nca_files = 1;
	CHECK_EQ(new_with(&cfg, &err), -ENOENT);
	CHECK_STR(err.msg, "CA file /nonexistent/ca.pem: No such file or directory");
	CHECK_EQ(new_with(&cfg, NULL), -ENOENT);
	cfg.nca_files = 0;
	err = (struct sg_error){ 0 };
	CHECK_EQ(new_with(&cfg, &err), 0);
	CHECK_STR(err.msg, "");
}

TEST(shutdown_cancels_open)
{
	static struct registry_env c;

	start(&c);
	atomic_store(&c.srv.delay_ms, 500);
	registry_env_open_start(&c, DIGEST);
	CHECK(sg_loop_run_once(c.loop, 50) >= 0);
	CHECK(sg_registry_busy(c.reg));
	sg_registry_shutdown(c.reg);
	CHECK(!c.opened);   /* from the loop, not from inside the call */
	for (int i = 0; i < 20 && !c.opened; i++)
		CHECK(sg_loop_run_once(c.loop, 10) >= 0);
	CHECK(c.opened);
	CHECK_EQ(c.open_res, -ECANCELED);
	CHECK(c.src == NULL);
	CHECK(strstr(c.err.msg, ": registry client shut down"));
	CHECK_EQ(sg_loop_drain(c.loop, 5000), 0);
	CHECK(!sg_registry_busy(c.reg));
	sg_registry_free(c.reg);
	sg_loop_free(c.loop);
}

/* The contract of every owner of ops: its free refuses (aborts) while work is in flight,
 * instead of leaving the loop a pointer into freed memory. */
TEST(free_with_fetch_in_flight_aborts)
{
	static struct registry_env c;
	static struct rd rd;

	open_blob(&c);
	atomic_store(&c.srv.delay_ms, 500);
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
TEST(shutdown_drain_free_with_fetch_in_flight)
{
	static struct registry_env c;
	static struct rd rd;

	open_blob(&c);
	atomic_store(&c.srv.delay_ms, 500);
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
	/* New requests are refused at once. */
	CHECK_EQ(sg_registry_open_blob(c.reg, "127.0.0.1:1/x", DIGEST, &c.src, NULL, &c.op,
				       registry_env_on_open), -ECANCELED);
	sg_registry_free(c.reg);
	sg_loop_free(c.loop);
}

TEST_MAIN()
