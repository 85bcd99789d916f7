/* Tests for net/exchange: the pure helpers (backoff, Retry-After, retryable statuses, registry
 * error bodies), and exchanges against a scripted HTTP server: retries, the message after the
 * last attempt, credentials that stay on their origin, the Bearer token flow, cancel and
 * shutdown. */
#include <errno.h>
#include <stdlib.h>

#include "net/credentials.h"
#include "net/endpoints.h"
#include "net/exchange.h"
#include "net/pool.h"
#include "tests/helpers/http_server.h"
#include "tests/unit/test.h"

TEST(backoff)
{
	uint64_t ms = 1000000;
	CHECK_EQ(sg_exchange_backoff_ns(0, 100 * ms, 5000 * ms, 1000), 0);
	CHECK_EQ(sg_exchange_backoff_ns(1, 100 * ms, 5000 * ms, 1000), 100 * ms);
	CHECK_EQ(sg_exchange_backoff_ns(2, 100 * ms, 5000 * ms, 1000), 200 * ms);
	CHECK_EQ(sg_exchange_backoff_ns(4, 100 * ms, 5000 * ms, 1000), 800 * ms);
	CHECK_EQ(sg_exchange_backoff_ns(40, 100 * ms, 5000 * ms, 1000), 5000 * ms);
	CHECK_EQ(sg_exchange_backoff_ns(200, 100 * ms, 5000 * ms, 1000), 5000 * ms);
	CHECK_EQ(sg_exchange_backoff_ns(1, 100 * ms, 5000 * ms, 500), 50 * ms);
	/* jitter is clamped to [0.5, 1] */
	CHECK_EQ(sg_exchange_backoff_ns(1, 100 * ms, 5000 * ms, 0), 50 * ms);
	CHECK_EQ(sg_exchange_backoff_ns(1, 100 * ms, 5000 * ms, 5000), 100 * ms);
}

TEST(retry_after)
{
	uint64_t d = 0;
	CHECK_EQ(sg_exchange_retry_after("3", 1, 5000000000ull, &d), 0);
	CHECK_EQ(d, 3000000000ull);
	CHECK_EQ(sg_exchange_retry_after("120", 3, 5000000000ull, &d), 0);
	CHECK_EQ(d, 5000000000ull);
	CHECK_EQ(sg_exchange_retry_after("99999999999999999999999", 23, 5000000000ull, &d), -EINVAL);
	const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
	CHECK_EQ(sg_exchange_retry_after(date, strlen(date), 5000000000ull, &d), -EINVAL);
	CHECK_EQ(sg_exchange_retry_after("-1", 2, 5000000000ull, &d), -EINVAL);
	CHECK_EQ(sg_exchange_retry_after("", 0, 5000000000ull, &d), -EINVAL);
}

TEST(status_retryable)
{
	CHECK(sg_exchange_status_retryable(500));
	CHECK(sg_exchange_status_retryable(502));
	CHECK(sg_exchange_status_retryable(503));
	CHECK(sg_exchange_status_retryable(504));
	CHECK(sg_exchange_status_retryable(429));
	CHECK(sg_exchange_status_retryable(408));
	CHECK(!sg_exchange_status_retryable(501));
	CHECK(!sg_exchange_status_retryable(505));
	CHECK(!sg_exchange_status_retryable(404));
	CHECK(!sg_exchange_status_retryable(401));
	CHECK(!sg_exchange_status_retryable(200));
}

TEST(error_text)
{
	char buf[128];
	const char *j = "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"blob unknown to registry\","
			"\"detail\":\"sha256:00\"}]}";
	CHECK(sg_exchange_error_text(j, strlen(j), buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "BLOB_UNKNOWN: blob unknown to registry");
	const char *h = "<html>\r\n<b>Bad\x01 Gateway</b></html>\n";
	CHECK(sg_exchange_error_text(h, strlen(h), buf, sizeof(buf)) > 0);
	CHECK(strchr(buf, '\r') == NULL && strchr(buf, '\x01') == NULL);
	CHECK_EQ(sg_exchange_error_text("", 0, buf, sizeof(buf)), 0);
	CHECK_EQ(sg_exchange_error_text(j, strlen(j), buf, 8), 7);
}

/* ---- exchanges against a scripted server ---- */

struct env {
	struct sg_loop *loop;
	struct sg_pool *pool;
	struct sg_credentials *creds;
	struct sg_exchanges *xs;
	struct test_server srv;
	struct sg_host *host;
	struct sg_exchange *x;
	struct sg_op op;
	struct sg_error err;
	int res;
	int completions;
};

static void on_done(struct sg_op *op)
{
	struct env *e = sg_container_of(op, struct env, op);
	e->res = op->res;
	e->completions++;
}

static void env_start(struct env *e, const char *const *script, size_t n, unsigned attempts)
{
	static const char *const insecure[] = { "127.0.0.1" };
	struct sg_pool_config pc = { .connect_timeout_ns = 5000000000ull, .max_conns_per_host = 2,
				     .max_hosts = 8 };
	struct sg_exchanges_config xc = {
		.first_byte_timeout_ns = 5000000000ull, .idle_timeout_ns = 5000000000ull,
		.attempts = attempts, .retry_base_ns = 1000000, .retry_max_ns = 5000000000ull,
		.max_redirects = 5, .user_agent = "test-agent",
		.insecure_hosts = insecure, .ninsecure_hosts = 1,
	};

	memset(e, 0, sizeof(*e));
	e->srv.script = script;
	e->srv.nscript = n;
	CHECK(test_server_start(&e->srv) > 0);
	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	CHECK_EQ(sg_pool_new(e->loop, &pc, &e->pool), 0);
	CHECK_EQ(sg_credentials_new(e->loop, NULL, 0, &e->creds), 0);
	CHECK_EQ(sg_exchanges_new(e->loop, &xc, e->pool, e->creds, &e->xs), 0);
	e->host = sg_pool_host(e->pool, false, "127.0.0.1", (uint16_t)e->srv.port, false, NULL);
	CHECK(e->host != NULL);
	sg_op_init(&e->op);
}

static const struct sg_exchange_sink buffered = { 0 };

static void env_run(struct env *e, struct sg_exchange_request *req)
{
	if (!req->host)
		req->host = e->host;
	if (!req->sink)
		req->sink = &buffered;
	CHECK_EQ(sg_exchange_start(e->xs, req, &e->x, &e->err, &e->op, on_done), 0);
	CHECK_EQ(e->completions, 0);
	for (int i = 0; i < 200 && !e->completions; i++)
		CHECK(sg_loop_run_once(e->loop, 50) >= 0);
	CHECK_EQ(e->completions, 1);
}

static void env_stop(struct env *e)
{
	sg_exchange_free(e->x);
	sg_exchanges_shutdown(e->xs);
	sg_pool_shutdown(e->pool);
	CHECK_EQ(sg_loop_drain(e->loop, 5000), 0);
	CHECK(!sg_exchanges_busy(e->xs));
	CHECK(!sg_pool_busy(e->pool));
	sg_exchanges_free(e->xs);
	sg_credentials_free(e->creds);
	sg_pool_free(e->pool);
	sg_loop_free(e->loop);
}

TEST(retry_then_buffered_body)
{
	static struct env e;
	static const char *const script[] = {
		"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
		"HTTP/1.1 200 OK\r\nContent-Type: text/x-test\r\nContent-Length: 5\r\n\r\nhello",
	};
	struct sg_exchange_request req = { .target = "/v2/x", .accept = "text/*",
					   .body_max = 64 };
	size_t len;

	env_start(&e, script, 2, 3);
	env_run(&e, &req);
	CHECK_EQ(e.res, 0);
	CHECK_EQ(sg_exchange_status(e.x), 200);
	CHECK_STR(sg_exchange_content_type(e.x), "text/x-test");
	CHECK_MEM(sg_exchange_body(e.x, &len), "hello", 5);
	CHECK_EQ(len, 5);
	CHECK_EQ(sg_host_stats(e.host)->retries, 1);
	CHECK_EQ(sg_host_stats(e.host)->requests, 2);
	CHECK(strstr(e.srv.heads[1], "GET /v2/x HTTP/1.1\r\n") == e.srv.heads[1]);
	CHECK(strstr(e.srv.heads[1], "\r\nUser-Agent: test-agent\r\n"));
	CHECK(strstr(e.srv.heads[1], "\r\nAccept: text/*\r\n"));
	env_stop(&e);
}

TEST(failure_says_why_after_the_attempts)
{
	static struct env e;
	static const char *const script[] = {
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 53\r\n\r\n"
		"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"later\"}]}",
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 53\r\n\r\n"
		"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"later\"}]}",
	};
	struct sg_exchange_request req = { .target = "/v2/y", .body_max = 64 };
	char want[128];

	env_start(&e, script, 2, 2);
	env_run(&e, &req);
	CHECK_EQ(e.res, -EPROTO);
	snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/v2/y: 500 Internal Server Error: "
		 "UNAVAILABLE: later (after 2 attempts)", e.srv.port);
	CHECK_STR(e.err.msg, want);
	env_stop(&e);
}

TEST(redirect_elsewhere_drops_authorization)
{
	static struct env e;
	static struct test_server other;
	static const char *const other_script[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	};
	static char redirect[256];
	static const char *script[] = { redirect };
	struct sg_exchange_request req = { .target = "/token?a=1", .authorization = "Basic dTpw",
					   .body_max = 64 };
	size_t len;

	other.script = other_script;
	other.nscript = 1;
	CHECK(test_server_start(&other) > 0);
	/* "localhost" is another host than 127.0.0.1 for the origin rule. */
	snprintf(redirect, sizeof(redirect), "HTTP/1.1 302 Found\r\nLocation: "
		 "http://localhost:%d/elsewhere\r\nContent-Length: 0\r\n\r\n", other.port);
	env_start(&e, script, 1, 1);
	env_run(&e, &req);
	CHECK_EQ(e.res, 0);
	CHECK_MEM(sg_exchange_body(e.x, &len), "ok", 2);
	CHECK(strstr(e.srv.heads[0], "\r\nAuthorization: Basic dTpw\r\n"));
	CHECK(strstr(other.heads[0], "GET /elsewhere HTTP/1.1\r\n") == other.heads[0]);
	CHECK(!strstr(other.heads[0], "Authorization"));
	env_stop(&e);
}

/* The request answered by a Bearer challenge, then (once the token "abc" is fetched from the
 * same server) by `answer`. */
static void bearer_run(struct env *e, const char *answer, struct sg_exchange_request *req,
		       struct sg_endpoint *ep)
{
	static char challenge[256];
	static const char *script[3];

	script[0] = challenge;
	script[1] = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"token\":\"abc\"}";
	script[2] = answer;
	env_start(e, script, 3, 1);
	snprintf(challenge, sizeof(challenge), "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: "
		 "Bearer realm=\"http://127.0.0.1:%d/token\",service=\"reg\"\r\n"
		 "Content-Length: 0\r\n\r\n", e->srv.port);
	ep->host = e->host;
	env_run(e, req);
	CHECK_EQ(e->res, 0);
}

TEST(bearer_token_flow)
{
	static struct env e;
	struct sg_endpoint ep = { .prefix = "/v2", .caps = SG_HOST_CAP_ALL };
	struct sg_exchange_request req = { .target = "/v2/test/img/manifests/v1", .ep = &ep,
					   .repo = "test/img", .body_max = 64 };

	bearer_run(&e, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndata", &req, &ep);
	CHECK(!strstr(e.srv.heads[0], "Authorization"));
	CHECK(strstr(e.srv.heads[1], "GET /token?service=reg&scope=repository%3Atest%2Fimg%3Apull ")
	      == e.srv.heads[1]);
	CHECK(strstr(e.srv.heads[2], "\r\nAuthorization: Bearer abc\r\n"));
	env_stop(&e);
}

/* A PUT with a body (pushes): the method, Content-Type and Content-Length, the body after
 * the head, sent again after the 401; the token asked for pull and push. */
TEST(put_with_body_and_push_scope)
{
	static struct env e;
	struct sg_endpoint ep = { .prefix = "/v2", .caps = SG_HOST_CAP_ALL };
	struct sg_exchange_request req = { .target = "/v2/test/img/manifests/v1", .ep = &ep,
					   .repo = "test/img", .body_max = 64, .method = "PUT",
					   .body = "{\"a\":1}", .body_len = 7,
					   .content_type = "application/json", .push_scope = true };

	bearer_run(&e, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", &req, &ep);
	CHECK_EQ(sg_exchange_status(e.x), 201);
	CHECK(strstr(e.srv.heads[0], "PUT /v2/test/img/manifests/v1 ") == e.srv.heads[0]);
	CHECK(strstr(e.srv.heads[0], "\r\nContent-Type: application/json\r\n"));
	CHECK(strstr(e.srv.heads[0], "\r\nContent-Length: 7\r\n"));
	CHECK_STR(e.srv.bodies[0], "{\"a\":1}");
	CHECK(strstr(e.srv.heads[1], "GET /token?service=reg&scope=repository%3Atest%2Fimg%3Apull%2Cpush ")
	      == e.srv.heads[1]);
	CHECK(strstr(e.srv.heads[2], "PUT /v2/test/img/manifests/v1 ") == e.srv.heads[2]);
	CHECK(strstr(e.srv.heads[2], "\r\nAuthorization: Bearer abc\r\n"));
	CHECK_STR(e.srv.bodies[2], "{\"a\":1}");
	env_stop(&e);
}

TEST(cancel_during_backoff_completes_once)
{
	static struct env e;
	static const char *const script[] = {
		"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n",
	};
	struct sg_exchange_request req = { .target = "/v2/z", .sink = &buffered, .body_max = 8 };

	env_start(&e, script, 1, 3);
	req.host = e.host;
	CHECK_EQ(sg_exchange_start(e.xs, &req, &e.x, &e.err, &e.op, on_done), 0);
	for (int i = 0; i < 100 && atomic_load(&e.srv.nheads) < 1; i++)
		CHECK(sg_loop_run_once(e.loop, 20) >= 0);
	for (int i = 0; i < 5; i++)
		CHECK(sg_loop_run_once(e.loop, 20) >= 0);
	CHECK_EQ(e.completions, 0);   /* waiting out the Retry-After */
	CHECK_EQ(sg_exchange_cancel(e.x), 0);
	CHECK_EQ(sg_exchange_cancel(e.x), -EALREADY);
	CHECK_EQ(e.completions, 0);
	for (int i = 0; i < 10 && !e.completions; i++)
		CHECK(sg_loop_run_once(e.loop, 20) >= 0);
	CHECK_EQ(e.completions, 1);
	CHECK_EQ(e.res, -ECANCELED);
	CHECK_ABORTS(sg_exchanges_free(e.xs));   /* e.x is not freed yet */
	env_stop(&e);
	CHECK_EQ(e.completions, 1);
}

TEST(shutdown_ends_a_running_exchange)
{
	static struct env e;
	struct sg_exchange_request req = { .target = "/v2/slow", .sink = &buffered, .body_max = 8 };

	env_start(&e, NULL, 0, 1);
	atomic_store(&e.srv.delay_ms, 2000);
	req.host = e.host;
	CHECK_EQ(sg_exchange_start(e.xs, &req, &e.x, &e.err, &e.op, on_done), 0);
	for (int i = 0; i < 5; i++)
		CHECK(sg_loop_run_once(e.loop, 20) >= 0);
	sg_exchanges_shutdown(e.xs);
	for (int i = 0; i < 10 && !e.completions; i++)
		CHECK(sg_loop_run_once(e.loop, 20) >= 0);
	CHECK_EQ(e.res, -ECANCELED);
	CHECK(strstr(e.err.msg, ": registry client shut down"));
	struct sg_exchange *x2 = NULL;
	struct sg_op op2;
	sg_op_init(&op2);
	CHECK_EQ(sg_exchange_start(e.xs, &req, &x2, NULL, &op2, on_done), -ECANCELED);
	CHECK(x2 == NULL);
	env_stop(&e);
}

TEST_MAIN()
