/* TLS client over a connected socket, driven by the loop: BearSSL's engine does no I/O of its
 * own, and this module maps its four buffer/ack pairs onto loop ops (BearSSL's run_until()
 * pump, re-expressed as a state machine run from completions):
 *
 *   sendrec (records to the network)  -> sg_send of the engine's output, then sendrec_ack
 *   recvrec (records from the network) -> sg_recv into the engine's input, then recvrec_ack
 *   sendapp / recvapp (plaintext)      -> copies to and from the caller's buffers
 *
 * At most one send and one receive are in flight.  The socket is read only when something
 * wants data (the handshake, or a pending sg_tls_read), so an idle pooled connection has no
 * op in flight.  The handshake, a read and a write are continuations in the loop's shape
 * (daemon/core/loop.h): the caller's op completes once, through sg_post, so a callback never
 * runs inside the call that started the operation.
 *
 * Verification: the server's chain is checked against a trust store (system bundle plus any
 * per-registry CA files) with BearSSL's minimal X.509 engine, and the name given to
 * sg_tls_start is both sent as SNI and matched against the certificate.  TLS 1.2 only (that is
 * what BearSSL implements).
 */
#ifndef STARGZD_NET_TLS_H
#define STARGZD_NET_TLS_H

#include <bearssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

#define SG_TLS_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define SG_TLS_TRUST_MAX 4096         /* anchors in one store */
#define SG_TLS_CA_FILE_MAX (4 << 20)  /* bytes per CA file */

/* Trust anchors decoded from PEM files; shared read-only by every connection that uses it. */
struct sg_tls_trust {
	br_x509_trust_anchor *anchors;
	size_t n;
};

/* Loads every CERTIFICATE in the given PEM files (blocking file reads: call at configuration
 * time, not on the loop's hot path).  Appends to an existing store.  Returns the number of
 * anchors added, -ENOENT/-EACCES for a missing file, -EBADMSG for a file with no usable
 * certificate or bad PEM, -EFBIG for anything but a regular file of at most
 * SG_TLS_CA_FILE_MAX bytes, -E2BIG, -ENOMEM. */
int sg_tls_trust_add_file(struct sg_tls_trust *t, const char *path);
/* Same, from memory. */
int sg_tls_trust_add_pem(struct sg_tls_trust *t, const char *pem, size_t len);
void sg_tls_trust_done(struct sg_tls_trust *t);

struct sg_tls;

/* The X.509 "validator" for skip_verify hosts: takes the end-entity certificate's key and
 * checks nothing else (BearSSL's vtable seam, as in its no-anchor sample). */
struct sg_tls_insecure_x509 {
	const br_x509_class *vtable;
	br_x509_decoder_context dc;
	unsigned certs;
};

struct sg_tls {
	struct sg_loop *loop;
	int fd;

	/* Private. */
	br_ssl_client_context cc;
	br_x509_minimal_context xc;
	struct sg_tls_insecure_x509 insecure;
	struct sg_op send_op, recv_op;    /* network side */
	struct sg_op *hs_op, *rd_op, *wr_op; /* the caller's, completed with sg_post */
	sg_op_cb hs_cb, rd_cb, wr_cb;
	struct sg_error *hs_err;
	bool hs_pending, handshaken;
	bool rd_pending, wr_pending;
	bool closed;                  /* engine closed or transport failed */
	bool eof;                     /* peer closed the TCP connection */
	int err;                      /* sticky: 0 or negative errno */
	uint8_t *rd_buf;
	size_t rd_len;
	const uint8_t *wr_buf;
	size_t wr_len, wr_done;
	unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
	/* Bytes received from the socket and not yet handed to the engine: one recv takes
	 * several records at once instead of a header and a body per record. */
	size_t net_off, net_len;
	unsigned char netbuf[65536];
};

/* Allocates a TLS session for a connected fd (not owned: the caller closes it after
 * sg_tls_free).  trust must outlive the session.  Returns 0 or -ENOMEM. */
int sg_tls_new(struct sg_loop *loop, int fd, const struct sg_tls_trust *trust,
	       struct sg_tls **ret);
/* Frees; every op must be idle (sg_tls_busy() false): cancel first with sg_tls_cancel. */
void sg_tls_free(struct sg_tls *t);

/* Starts the handshake with `server_name` for SNI and certificate name matching.  cb(op)
 * runs once with op->res 0 when done, or a negative errno: -ECONNABORTED for a TLS-level
 * failure, a socket error, -ETIMEDOUT if timeout_ns (inactivity, per network op; 0 = none)
 * passes.  On failure err (may be NULL) says why: for a TLS-level failure what BearSSL found,
 * "certificate not trusted (unknown CA) (BearSSL error 62)", with BearSSL's code (BR_ERR_*)
 * in err->code; otherwise the errno's text.  Returns 0, or -EINVAL / -EBUSY at once. */
int sg_tls_start(struct sg_tls *t, const char *server_name, uint64_t timeout_ns,
		 struct sg_error *err, struct sg_op *op, sg_op_cb cb);
/* skip_verify (hosts.toml): accept any server certificate, unknown CA, wrong name or
 * expired.  The session is still encrypted, but an active attacker can read it: only for
 * hosts an administrator configured so.  Call before sg_tls_start. */
void sg_tls_set_insecure(struct sg_tls *t);
/* Reads up to len plaintext bytes: op->res = n > 0, 0 at end of stream, or a negative errno. */
int sg_tls_read(struct sg_tls *t, void *buf, size_t len, struct sg_op *op, sg_op_cb cb);
/* Writes all len bytes (buf must stay valid until cb): op->res = len or a negative errno. */
int sg_tls_write(struct sg_tls *t, const void *buf, size_t len, struct sg_op *op, sg_op_cb cb);
/* Changes the inactivity bound of the network ops (0 = none) from their next submission on:
 * the registry client uses a first-byte bound while waiting for a response and an idle bound
 * while a body streams in, instead of the handshake's connect bound. */
void sg_tls_set_timeout(struct sg_tls *t, uint64_t timeout_ns);
/* Cancels network ops; the pending handshake, read and write complete with -ECANCELED. */
void sg_tls_cancel(struct sg_tls *t);
/* True while a network op is in flight or a caller's op is still to be completed. */
bool sg_tls_busy(const struct sg_tls *t);
/* A short description of a BearSSL error code (BR_ERR_*, e.g. BR_ERR_X509_NOT_TRUSTED = 62)
 * for messages. */
const char *sg_tls_strerror(int br_err);

#endif
