/* Tests for net/credentials: the docker config's own credentials, a credential helper's
 * (waited for through the loop), Basic headers, and what shutting down leaves. */
#include <errno.h>
#include <string.h>

#include "daemon/core/loop.h"
#include "net/auth.h"
#include "net/credentials.h"
#include "tests/unit/test.h"

/* "u:p" is dTpw in base64. */
static const char config[] =
	"{\"auths\":{\"inline.example\":{\"auth\":\"dTpw\"}},"
	"\"credHelpers\":{\"helped.example\":\"stargzd-test-absent\"}}";

struct waiter {
	struct sg_op op;
	int res, calls;
};

static void on_answer(struct sg_op *op)
{
	struct waiter *w = sg_container_of(op, struct waiter, op);
	w->res = op->res;
	w->calls++;
}

static struct sg_credentials *make(struct sg_loop *loop)
{
	struct sg_docker_config *dc;
	struct sg_credentials *c;

	CHECK_EQ(sg_docker_config_parse(config, strlen(config), &dc, NULL), 0);
	CHECK_EQ(sg_credentials_new(loop, dc, 0, &c), 0);
	return c;
}

TEST(docker_config_credentials)
{
	struct sg_loop *loop;
	struct sg_docker_cred cred;
	struct sg_error err = { 0 };
	char hdr[64];

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	struct sg_credentials *c = make(loop);
	CHECK_EQ(sg_credentials_lookup(c, "inline.example", &cred, &err), 0);
	CHECK_STR(cred.username, "u");
	CHECK_STR(cred.password, "p");
	sg_docker_cred_done(&cred);
	CHECK_EQ(sg_credentials_basic(c, "inline.example", hdr, sizeof(hdr), NULL), 10);
	CHECK_STR(hdr, "Basic dTpw");
	CHECK_EQ(sg_credentials_lookup(c, "other.example", &cred, &err), -ENOENT);
	CHECK(cred.username == NULL);
	CHECK_STR(err.msg, "");
	CHECK_EQ(sg_credentials_basic(c, "other.example", hdr, sizeof(hdr), NULL), -ENOENT);
	/* Nothing to wait for without a helper. */
	struct waiter w = { 0 };
	sg_op_init(&w.op);
	CHECK_EQ(sg_credentials_wait(c, "inline.example", &w.op, on_answer), -ENOENT);
	sg_credentials_free(c);
	/* No docker config at all. */
	CHECK_EQ(sg_credentials_new(loop, NULL, 0, &c), 0);
	CHECK_EQ(sg_credentials_lookup(c, "inline.example", &cred, NULL), -ENOENT);
	sg_credentials_free(c);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
}

TEST(helper_answers_through_the_loop)
{
	struct sg_loop *loop;
	struct sg_docker_cred cred;
	struct sg_error err = { 0 };
	struct waiter w = { 0 };
	char hdr[64];

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	struct sg_credentials *c = make(loop);
	CHECK_EQ(sg_credentials_lookup(c, "helped.example", &cred, &err), -EAGAIN);
	sg_op_init(&w.op);
	CHECK_EQ(sg_credentials_wait(c, "helped.example", &w.op, on_answer), 0);
	CHECK_EQ(w.calls, 0);
	for (int i = 0; i < 50 && !w.calls; i++)
		CHECK(sg_loop_run_once(loop, 20) >= 0);
	CHECK_EQ(w.calls, 1);
	CHECK_EQ(w.res, 0);
	/* A helper not in PATH is an answer: no credentials, and why. */
	CHECK_EQ(sg_credentials_lookup(c, "helped.example", &cred, &err), -ENOENT);
	CHECK(strstr(err.msg, "docker-credential-stargzd-test-absent") != NULL);
	CHECK_EQ(sg_credentials_basic(c, "helped.example", hdr, sizeof(hdr), NULL), -ENOENT);
	/* Shut down: the helpers' answers are gone, the docker config's stay. */
	sg_credentials_shutdown(c);
	CHECK_EQ(sg_credentials_lookup(c, "helped.example", &cred, NULL), -ECANCELED);
	CHECK_EQ(sg_credentials_lookup(c, "inline.example", &cred, NULL), 0);
	sg_docker_cred_done(&cred);
	CHECK_EQ(sg_credentials_wait(c, "helped.example", &w.op, on_answer), -ECANCELED);
	sg_credentials_free(c);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
}

TEST_MAIN()
