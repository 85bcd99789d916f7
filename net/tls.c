/* BearSSL client engine pumped by the loop.  See tls.h. */
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/small_file.h"

/* ---- trust anchors ---- */

struct bytes {
	unsigned char *p;
	size_t len, cap;
	bool oom;
};

static void bytes_append(void *ctx, const void *data, size_t len)
{
	struct bytes *b = ctx;

	if (b->oom)
		return;
	if (b->cap - b->len < len) {
		size_t ncap = b->cap ? b->cap * 2 : 1024;
		while (ncap - b->len < len)
			ncap *= 2;
		unsigned char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void *memdup(const void *p, size_t len)
{
	void *d = malloc(len ? len : 1);
	if (d && len)
		memcpy(d, p, len);
	return d;
}

static void anchor_done(br_x509_trust_anchor *ta)
{
	free(ta->dn.data);
	if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
		free(ta->pkey.key.rsa.n);
		free(ta->pkey.key.rsa.e);
	} else if (ta->pkey.key_type == BR_KEYTYPE_EC) {
		free(ta->pkey.key.ec.q);
	}
}

/* DER certificate -> trust anchor (its subject DN and public key). */
static int der_to_anchor(const unsigned char *der, size_t len, br_x509_trust_anchor *ta)
{
	br_x509_decoder_context dc;
	struct bytes dn = { 0 };
	br_x509_pkey *pk;

	memset(ta, 0, sizeof(*ta));
	br_x509_decoder_init(&dc, bytes_append, &dn);
	br_x509_decoder_push(&dc, der, len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk || dn.oom) {
		free(dn.p);
		return dn.oom ? -ENOMEM : -EBADMSG;
	}
	ta->dn.data = dn.p;
	ta->dn.len = dn.len;
	/* Every certificate a user lists is a trust anchor, CA or not (a self-signed registry
	 * certificate is typically not marked CA). */
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	ta->pkey.key_type = pk->key_type;
	switch (pk->key_type) {
	case BR_KEYTYPE_RSA:
		ta->pkey.key.rsa.n = memdup(pk->key.rsa.n, pk->key.rsa.nlen);
		ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
		ta->pkey.key.rsa.e = memdup(pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.elen = pk->key.rsa.elen;
		if (!ta->pkey.key.rsa.n || !ta->pkey.key.rsa.e)
			goto oom;
		break;
	case BR_KEYTYPE_EC:
		ta->pkey.key.ec.curve = pk->key.ec.curve;
		ta->pkey.key.ec.q = memdup(pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.qlen = pk->key.ec.qlen;
		if (!ta->pkey.key.ec.q)
			goto oom;
		break;
	default:
		free(dn.p);
		ta->dn.data = NULL;
		return -EBADMSG;
	}
	return 0;
oom:
	anchor_done(ta);
	memset(ta, 0, sizeof(*ta));
	return -ENOMEM;
}

int sg_tls_trust_add_pem(struct sg_tls_trust *t, const char *pem, size_t len)
{
	br_pem_decoder_context pc;
	struct bytes der = { 0 };
	bool in_cert = false;
	int added = 0, r = 0;

	br_pem_decoder_init(&pc);
	while (len > 0) {
		size_t n = br_pem_decoder_push(&pc, pem, len);
		pem += n;
		len -= n;
		switch (br_pem_decoder_event(&pc)) {
		case BR_PEM_BEGIN_OBJ: {
			const char *name = br_pem_decoder_name(&pc);
			in_cert = strcmp(name, "CERTIFICATE") == 0 ||
				  strcmp(name, "X509 CERTIFICATE") == 0 ||
				  strcmp(name, "TRUSTED CERTIFICATE") == 0;
			der.len = 0;
			br_pem_decoder_setdest(&pc, in_cert ? bytes_append : NULL,
					       in_cert ? &der : NULL);
			break;
		}
		case BR_PEM_END_OBJ:
			if (!in_cert)
				break;
			in_cert = false;
			if (der.oom) {
				r = -ENOMEM;
				goto out;
			}
			if (t->n >= SG_TLS_TRUST_MAX) {
				r = -E2BIG;
				goto out;
			}
			if (t->n % 64 == 0) {
				br_x509_trust_anchor *na =
					realloc(t->anchors, (t->n + 64) * sizeof(*na));
				if (!na) {
					r = -ENOMEM;
					goto out;
				}
				t->anchors = na;
			}
			r = der_to_anchor(der.p, der.len, &t->anchors[t->n]);
			if (r == -ENOMEM)
				goto out;
			/* A certificate BearSSL cannot use (an unsupported key type) is skipped
			 * rather than failing the whole bundle. */
			if (r == 0) {
				t->n++;
				added++;
			}
			r = 0;
			break;
		case BR_PEM_ERROR:
			r = -EBADMSG;
			goto out;
		default:
			break;
		}
	}
	if (added == 0)
		r = -EBADMSG;
out:
	free(der.p);
	return r < 0 ? r : added;
}

int sg_tls_trust_add_file(struct sg_tls_trust *t, const char *path)
{
	char *buf;
	size_t len;
	int r = sg_small_file_read(path, SG_TLS_CA_FILE_MAX, &buf, &len);

	if (r < 0)
		return r;
	r = sg_tls_trust_add_pem(t, buf, len);
	free(buf);
	return r;
}

void sg_tls_trust_done(struct sg_tls_trust *t)
{
	for (size_t i = 0; i < t->n; i++)
		anchor_done(&t->anchors[i]);
	free(t->anchors);
	t->anchors = NULL;
	t->n = 0;
}

/* ---- skip_verify ---- */

static void insecure_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct sg_tls_insecure_x509 *x = (struct sg_tls_insecure_x509 *)(void *)ctx;
	x->certs = 0;
}

static void insecure_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct sg_tls_insecure_x509 *x = (struct sg_tls_insecure_x509 *)(void *)ctx;
	/* Only the first certificate (the server's own) matters. */
	if (x->certs++ == 0)
		br_x509_decoder_init(&x->dc, NULL, NULL);
}

static void insecure_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct sg_tls_insecure_x509 *x = (struct sg_tls_insecure_x509 *)(void *)ctx;
	if (x->certs == 1)
		br_x509_decoder_push(&x->dc, buf, len);
}

static void insecure_end_cert(const br_x509_class **ctx)
{
}

static unsigned insecure_end_chain(const br_x509_class **ctx)
{
	struct sg_tls_insecure_x509 *x = (struct sg_tls_insecure_x509 *)(void *)ctx;
	if (x->certs == 0)
		return BR_ERR_X509_EMPTY_CHAIN;
	return br_x509_decoder_get_pkey(&x->dc) ? 0 : BR_ERR_X509_UNSUPPORTED;
}

static const br_x509_pkey *insecure_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	struct sg_tls_insecure_x509 *x = (struct sg_tls_insecure_x509 *)(void *)ctx;
	if (usages)
		*usages = BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN;
	return br_x509_decoder_get_pkey(&x->dc);
}

static const br_x509_class insecure_vtable = {
	sizeof(struct sg_tls_insecure_x509),
	insecure_start_chain,
	insecure_start_cert,
	insecure_append,
	insecure_end_cert,
	insecure_end_chain,
	insecure_get_pkey,
};

void sg_tls_set_insecure(struct sg_tls *t)
{
	t->insecure.vtable = &insecure_vtable;
	br_ssl_engine_set_x509(&t->cc.eng, &t->insecure.vtable);
}

/* ---- the session ---- */

int sg_tls_new(struct sg_loop *loop, int fd, const struct sg_tls_trust *trust,
	       struct sg_tls **ret)
{
	struct sg_tls *t;

	*ret = NULL;
	if (fd < 0 || !trust)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->fd = fd;
	sg_op_init(&t->send_op);
	sg_op_init(&t->recv_op);
	/* "full" profile: every cipher suite and algorithm BearSSL has; the server picks. */
	br_ssl_client_init_full(&t->cc, &t->xc, trust->anchors, trust->n);
	/* With AES-NI and PCLMUL, AES-GCM is several times faster than ChaCha20 here; servers
	 * (Go's among them) take a client that lists ChaCha20 first as one without AES hardware
	 * and answer with ChaCha20.  So list AES-GCM first when the CPU has it. */
	if (br_aes_x86ni_ctr_get_vtable() && br_ghash_pclmul_get()) {
		static const uint16_t aes_first[] = {
			BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
			BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
			BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
			BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
			BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
			BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
			BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			BR_TLS_RSA_WITH_AES_128_GCM_SHA256,
			BR_TLS_RSA_WITH_AES_256_GCM_SHA384,
			BR_TLS_RSA_WITH_AES_128_CBC_SHA256,
			BR_TLS_RSA_WITH_AES_256_CBC_SHA256,
			BR_TLS_RSA_WITH_AES_128_CBC_SHA,
			BR_TLS_RSA_WITH_AES_256_CBC_SHA,
		};
		br_ssl_engine_set_suites(&t->cc.eng, aes_first, sizeof(aes_first) / sizeof(aes_first[0]));
	}
	br_ssl_engine_set_buffer(&t->cc.eng, t->iobuf, sizeof(t->iobuf), 1);
	*ret = t;
	return 0;
}

bool sg_tls_busy(const struct sg_tls *t)
{
	return sg_op_busy(&t->send_op) || sg_op_busy(&t->recv_op) || t->hs_pending ||
	       t->rd_pending || t->wr_pending;
}

void sg_tls_free(struct sg_tls *t)
{
	if (!t)
		return;
	/* The kernel may still write into iobuf while an op is in flight: never free then. */
	SG_FREE_CHECK(sg_tls_busy(t), "TLS connection");
	free(t);
}

const char *sg_tls_strerror(int e)
{
	switch (e) {
	case BR_ERR_OK: return "no error";
	case BR_ERR_X509_NOT_TRUSTED: return "certificate not trusted (unknown CA)";
	case BR_ERR_X509_BAD_SERVER_NAME: return "certificate does not match the server name";
	case BR_ERR_X509_EXPIRED: return "certificate expired or not yet valid";
	case BR_ERR_X509_BAD_SIGNATURE: return "bad certificate signature";
	case BR_ERR_X509_UNSUPPORTED: return "unsupported certificate";
	case BR_ERR_BAD_VERSION: return "unsupported TLS version (BearSSL speaks TLS 1.2)";
	case BR_ERR_BAD_CIPHER_SUITE: return "no common cipher suite";
	case BR_ERR_UNSUPPORTED_VERSION: return "unsupported TLS version (BearSSL speaks TLS 1.2)";
	case BR_ERR_BAD_MAC: return "bad record MAC";
	case BR_ERR_IO: return "transport error";
	default:
		if (e >= BR_ERR_RECV_FATAL_ALERT && e < BR_ERR_RECV_FATAL_ALERT + 256)
			return "the server sent a fatal alert";
		if (e >= BR_ERR_SEND_FATAL_ALERT && e < BR_ERR_SEND_FATAL_ALERT + 256)
			return "handshake failed (alert sent)";
		if (e >= 32 && e < 64)
			return "certificate validation failed";
		return "TLS protocol error";
	}
}

static void pump(struct sg_tls *t);

/* Every answer to a caller goes through here.  It cannot be lost: sg_post fails only for an
 * op in flight (and is accepted during a drain), and each caller op is idle whenever its
 * *_pending flag is set, since sg_tls_start/read/write set the flag only on an idle op and
 * every path clears the flag before the one post of that op. */
static void deliver(struct sg_tls *t, struct sg_op *op, int32_t res, sg_op_cb cb)
{
	(void)sg_post(t->loop, op, res, cb);
}

/* The handshake's answer; a failure says why in the caller's err: what BearSSL found (its
 * code in err->code) when the engine failed, else the errno's text. */
static void deliver_handshake(struct sg_tls *t, int res)
{
	int br = br_ssl_engine_last_error(&t->cc.eng);

	t->hs_pending = false;
	if (res == -ECONNABORTED && br)
		sg_error_setc(t->hs_err, res, br, "%s (BearSSL error %d)", sg_tls_strerror(br), br);
	else if (res < 0)
		sg_error_setc(t->hs_err, res, br, "%s", strerror(-res));
	deliver(t, t->hs_op, res, t->hs_cb);
}

/* Delivers `res` to every pending caller operation. */
static void complete_all(struct sg_tls *t, int res)
{
	if (t->hs_pending)
		deliver_handshake(t, res < 0 ? res : -ECONNRESET);
	if (t->rd_pending) {
		t->rd_pending = false;
		deliver(t, t->rd_op, res, t->rd_cb);
	}
	if (t->wr_pending) {
		t->wr_pending = false;
		deliver(t, t->wr_op, res < 0 ? res : -EPIPE, t->wr_cb);
	}
}

static void fail(struct sg_tls *t, int err)
{
	if (!t->err)
		t->err = err;
	t->closed = true;
	complete_all(t, t->err);
}

static void on_send(struct sg_op *op)
{
	struct sg_tls *t = sg_container_of(op, struct sg_tls, send_op);

	if (op->res < 0) {
		fail(t, op->res);
		return;
	}
	br_ssl_engine_sendrec_ack(&t->cc.eng, (size_t)op->res);
	pump(t);
}

static void on_recv(struct sg_op *op)
{
	struct sg_tls *t = sg_container_of(op, struct sg_tls, recv_op);

	if (op->res < 0) {
		fail(t, op->res);
		return;
	}
	if (op->res == 0) {
		/* TCP EOF.  Before the handshake that is a reset; after it, an HTTP client
		 * detects a truncated body by its framing, so report a plain end of stream. */
		t->eof = true;
		t->closed = true;
		if (!t->handshaken)
			t->err = -ECONNRESET;
		complete_all(t, t->err);
		return;
	}
	t->net_off = 0;
	t->net_len = (size_t)op->res;
	pump(t);
}

static void pump(struct sg_tls *t)
{
	br_ssl_engine_context *eng = &t->cc.eng;

	for (;;) {
		unsigned st;
		bool progress = false;

		if (t->closed)
			return;
		st = br_ssl_engine_current_state(eng);
		if (st & BR_SSL_CLOSED) {
			int e = br_ssl_engine_last_error(eng);
			t->closed = true;
			/* A clean close_notify is an end of stream; anything else an error. */
			if (e != BR_ERR_OK && !t->err)
				t->err = -ECONNABORTED;
			complete_all(t, t->err);
			return;
		}
		if ((st & BR_SSL_SENDREC) && !sg_op_busy(&t->send_op)) {
			size_t len;
			unsigned char *buf = br_ssl_engine_sendrec_buf(eng, &len);
			int r = sg_send(t->loop, &t->send_op, t->fd, buf, len, MSG_NOSIGNAL, on_send);
			if (r < 0) {
				fail(t, r);
				return;
			}
		}
		if (!t->handshaken && (st & (BR_SSL_SENDAPP | BR_SSL_RECVAPP))) {
			t->handshaken = true;
			if (t->hs_pending)
				deliver_handshake(t, 0);
		}
		if (t->rd_pending && (st & BR_SSL_RECVAPP)) {
			size_t len;
			unsigned char *buf = br_ssl_engine_recvapp_buf(eng, &len);
			size_t n = len < t->rd_len ? len : t->rd_len;
			memcpy(t->rd_buf, buf, n);
			br_ssl_engine_recvapp_ack(eng, n);
			t->rd_pending = false;
			deliver(t, t->rd_op, (int32_t)n, t->rd_cb);
			progress = true;
		}
		if (t->wr_pending && (st & BR_SSL_SENDAPP)) {
			size_t len;
			unsigned char *buf = br_ssl_engine_sendapp_buf(eng, &len);
			size_t n = t->wr_len - t->wr_done;
			if (n > len)
				n = len;
			memcpy(buf, t->wr_buf + t->wr_done, n);
			br_ssl_engine_sendapp_ack(eng, n);
			t->wr_done += n;
			if (t->wr_done == t->wr_len) {
				/* Push the last partial record out now rather than waiting for
				 * more data that a request/response protocol will not send. */
				br_ssl_engine_flush(eng, 0);
				t->wr_pending = false;
				deliver(t, t->wr_op, (int32_t)t->wr_len, t->wr_cb);
			}
			progress = true;
		}
		/* Feed the engine from what was already received. */
		if ((st & BR_SSL_RECVREC) && t->net_off < t->net_len) {
			size_t len;
			unsigned char *buf = br_ssl_engine_recvrec_buf(eng, &len);
			size_t n = t->net_len - t->net_off;
			if (n > len)
				n = len;
			memcpy(buf, t->netbuf + t->net_off, n);
			t->net_off += n;
			br_ssl_engine_recvrec_ack(eng, n);
			continue;
		}
		/* Read from the network only when someone needs the data. */
		if ((st & BR_SSL_RECVREC) && !sg_op_busy(&t->recv_op) && !t->eof &&
		    t->net_off == t->net_len && (!t->handshaken || t->rd_pending || t->wr_pending)) {
			int r = sg_recv(t->loop, &t->recv_op, t->fd, t->netbuf, sizeof(t->netbuf), 0,
					on_recv);
			if (r < 0) {
				fail(t, r);
				return;
			}
		}
		if (!progress)
			return;
	}
}

int sg_tls_start(struct sg_tls *t, const char *server_name, uint64_t timeout_ns,
		 struct sg_error *err, struct sg_op *op, sg_op_cb cb)
{
	if (!op || !cb || !server_name || !*server_name)
		return -EINVAL;
	if (t->hs_pending || t->handshaken || sg_op_busy(op))
		return -EBUSY;
	if (!br_ssl_client_reset(&t->cc, server_name, 0))
		return -EINVAL;
	sg_op_set_timeout(&t->send_op, timeout_ns);
	sg_op_set_timeout(&t->recv_op, timeout_ns);
	t->hs_op = op;
	t->hs_cb = cb;
	t->hs_err = err;
	t->hs_pending = true;
	pump(t);
	return 0;
}

int sg_tls_read(struct sg_tls *t, void *buf, size_t len, struct sg_op *op, sg_op_cb cb)
{
	if (!op || !cb || !buf || len == 0 || len > INT32_MAX)
		return -EINVAL;
	if (t->rd_pending || sg_op_busy(op))
		return -EBUSY;
	if (!t->handshaken && !t->closed)
		return -ENOTCONN;
	t->rd_op = op;
	t->rd_cb = cb;
	t->rd_buf = buf;
	t->rd_len = len;
	t->rd_pending = true;
	if (t->closed) {
		/* Data already decrypted is still delivered after a close_notify. */
		unsigned st = br_ssl_engine_current_state(&t->cc.eng);
		if (!(st & BR_SSL_RECVAPP)) {
			complete_all(t, t->err);
			return 0;
		}
		size_t avail;
		unsigned char *p = br_ssl_engine_recvapp_buf(&t->cc.eng, &avail);
		size_t n = avail < len ? avail : len;
		memcpy(buf, p, n);
		br_ssl_engine_recvapp_ack(&t->cc.eng, n);
		t->rd_pending = false;
		return sg_post(t->loop, op, (int32_t)n, cb);
	}
	pump(t);
	return 0;
}

int sg_tls_write(struct sg_tls *t, const void *buf, size_t len, struct sg_op *op, sg_op_cb cb)
{
	if (!op || !cb || !buf || len == 0 || len > INT32_MAX)
		return -EINVAL;
	if (t->wr_pending || sg_op_busy(op))
		return -EBUSY;
	if (!t->handshaken)
		return -ENOTCONN;
	t->wr_op = op;
	t->wr_cb = cb;
	t->wr_buf = buf;
	t->wr_len = len;
	t->wr_done = 0;
	t->wr_pending = true;
	if (t->closed) {
		complete_all(t, t->err);
		return 0;
	}
	pump(t);
	return 0;
}

void sg_tls_set_timeout(struct sg_tls *t, uint64_t timeout_ns)
{
	sg_op_set_timeout(&t->send_op, timeout_ns);
	sg_op_set_timeout(&t->recv_op, timeout_ns);
}

void sg_tls_cancel(struct sg_tls *t)
{
	if (!t->err)
		t->err = -ECANCELED;
	t->closed = true;
	if (sg_op_busy(&t->send_op))
		(void)sg_op_cancel(&t->send_op);
	if (sg_op_busy(&t->recv_op))
		(void)sg_op_cancel(&t->recv_op);
	complete_all(t, t->err);
}
