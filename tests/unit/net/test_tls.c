/* Tests for net/tls without a real server (tests/integration/net_tls.sh has those): a peer
 * that answers the ClientHello in plain HTTP fails the handshake once, from the loop, with
 * BearSSL's reason in err; reads and writes before the handshake are refused; trust stores
 * refuse what is not PEM; BearSSL codes read as text. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "net/tls.h"
#include "tests/unit/test.h"

struct hs {
	struct sg_op op;
	struct sg_error err;
	int res, calls;
};

static void on_handshake(struct sg_op *op)
{
	struct hs *h = sg_container_of(op, struct hs, op);
	h->res = op->res;
	h->calls++;
}

TEST(handshake_with_a_plain_http_peer_fails_with_a_reason)
{
	static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	struct sg_tls_trust trust = { 0 };
	struct sg_loop *loop;
	struct sg_tls *t;
	struct hs h = { 0 };
	char buf[16];
	int sv[2];

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(write(sv[1], http, strlen(http)), (ssize_t)strlen(http));
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_tls_new(loop, sv[0], &trust, &t), 0);
	sg_op_init(&h.op);
	CHECK_EQ(sg_tls_read(t, buf, sizeof(buf), &h.op, on_handshake), -ENOTCONN);
	CHECK_EQ(sg_tls_write(t, "x", 1, &h.op, on_handshake), -ENOTCONN);
	CHECK_EQ(sg_tls_start(t, "", 0, &h.err, &h.op, on_handshake), -EINVAL);
	CHECK_EQ(sg_tls_start(t, "localhost", 2000000000ull, &h.err, &h.op, on_handshake), 0);
	CHECK_EQ(sg_tls_start(t, "localhost", 0, &h.err, &h.op, on_handshake), -EBUSY);
	CHECK_EQ(h.calls, 0);
	for (int i = 0; i < 100 && !h.calls; i++)
		CHECK(sg_loop_run_once(loop, 20) >= 0);
	CHECK_EQ(h.calls, 1);
	CHECK_EQ(h.res, -ECONNABORTED);
	CHECK(h.err.code != 0);
	CHECK(strstr(h.err.msg, sg_tls_strerror(h.err.code)) == h.err.msg);
	CHECK(strstr(h.err.msg, " (BearSSL error ") != NULL);
	for (int i = 0; i < 5; i++)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	CHECK_EQ(h.calls, 1);   /* once */
	sg_tls_cancel(t);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	CHECK(!sg_tls_busy(t));
	sg_tls_free(t);
	close(sv[0]);
	close(sv[1]);
	sg_loop_free(loop);
}

TEST(cancel_completes_the_handshake_once)
{
	struct sg_tls_trust trust = { 0 };
	struct sg_loop *loop;
	struct sg_tls *t;
	struct hs h = { 0 };
	int sv[2];

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_tls_new(loop, sv[0], &trust, &t), 0);
	sg_op_init(&h.op);
	CHECK_EQ(sg_tls_start(t, "localhost", 0, &h.err, &h.op, on_handshake), 0);
	CHECK(sg_loop_run_once(loop, 10) >= 0);
	CHECK(sg_tls_busy(t));
	CHECK_ABORTS(sg_tls_free(t));
	sg_tls_cancel(t);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	CHECK_EQ(h.calls, 1);
	CHECK_EQ(h.res, -ECANCELED);
	CHECK_STR(h.err.msg, strerror(ECANCELED));
	sg_tls_free(t);
	close(sv[0]);
	close(sv[1]);
	sg_loop_free(loop);
}

TEST(trust_and_error_texts)
{
	struct sg_tls_trust trust = { 0 };
	static const char junk[] =
		"-----BEGIN CERTIFICATE-----\nnot base64 !\n-----END CERTIFICATE-----\n";

	CHECK_EQ(sg_tls_trust_add_pem(&trust, "no pem here", 11), -EBADMSG);
	CHECK_EQ(sg_tls_trust_add_pem(&trust, junk, strlen(junk)), -EBADMSG);
	CHECK_EQ(trust.n, 0);
	CHECK_EQ(sg_tls_trust_add_file(&trust, "/nonexistent/ca.pem"), -ENOENT);
	sg_tls_trust_done(&trust);
	CHECK_STR(sg_tls_strerror(BR_ERR_X509_NOT_TRUSTED), "certificate not trusted (unknown CA)");
	CHECK_STR(sg_tls_strerror(BR_ERR_X509_BAD_SERVER_NAME),
		  "certificate does not match the server name");
	CHECK_STR(sg_tls_strerror(BR_ERR_RECV_FATAL_ALERT + 40), "the server sent a fatal alert");
}

TEST_MAIN()
