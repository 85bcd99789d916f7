/* The inside of net/exchange: what net/exchange.c and net/exchange_auth.c share.  Not for use
 * outside those two files.
 *
 * An exchange waits for at most one thing at a time, always on its own op (x->op, with
 * x->wait saying what it is): a backoff timer, a connection (net/pool.h), a send or receive
 * on it, or a credential helper (net/credentials.h).  Waiting for another request's token
 * fetch is the one wait without an op: the exchange is then on xs->token_waiters.  Every
 * callback of x->op first asks sg_xfer_settle whether the exchange has finished meanwhile;
 * finishing cancels what is pending, and the caller's op is completed once nothing is. */
#ifndef STARGZD_NET_EXCHANGE_INT_H
#define STARGZD_NET_EXCHANGE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/list.h"
#include "net/auth.h"
#include "net/exchange.h"
#include "net/http1.h"

/* Error bodies are kept for the message up to this size. */
#define SG_XFER_EBODY_MAX 1024

struct sg_exchanges {
	struct sg_loop *loop;
	struct sg_exchanges_config cfg;
	struct sg_pool *pool;
	struct sg_credentials *creds;
	struct sg_tokens *tokens;
	struct sg_list live;                  /* every exchange not freed */
	struct sg_list token_waiters;         /* sg_exchange.token_link */
	unsigned nlive;
	bool closing;
	uint64_t rnd;
};

enum wait { W_NONE, W_TIMER, W_ACQUIRE, W_IO, W_TOKEN, W_CRED };
enum act { XA_NONE, XA_REDIRECT, XA_AUTH, XA_RETRY, XA_FAIL };

struct sg_exchange {
	struct sg_list link;                  /* xs->live */
	struct sg_list token_link;            /* xs->token_waiters while W_TOKEN */
	struct sg_exchanges *xs;
	const struct sg_exchange_sink *sink;
	void *sink_data;
	const struct sg_endpoint *ep;         /* registry auth and headers apply; may be NULL */
	char *repo;
	const char *accept;
	char *extra_auth;                     /* explicit Authorization (token requests) */
	bool head_method;
	const char *method;               /* "GET", "HEAD", or the request's */
	uint8_t *body;                    /* a PUT's or POST's, sent after the head */
	size_t body_len;
	const char *content_type;
	bool push_scope;
	bool single_attempt;
	unsigned rcvbuf;                      /* the request's receive buffer */
	struct sg_host *orig_host, *host;
	char *orig_target, *target;
	bool left_origin;                     /* a redirect left orig_host (sticky until a
					       * retry starts over there): see
					       * sg_xauth_may_send */
	struct sg_http1_byte_range ranges[SG_EXCHANGE_RANGES_MAX];
	size_t nranges;
	unsigned attempt, redirects, auth_round, stale;
	char *sent_token;
	bool sent_basic;
	struct sg_pool_conn *c;
	struct sg_error cerr;                 /* why acquiring a connection failed */
	struct sg_op op;                      /* what the exchange waits for: `wait` */
	enum wait wait;
	/* The caller's continuation. */
	struct sg_op *done_op;
	sg_op_cb done_cb;
	struct sg_error *done_err;
	bool finishing, delivered;
	int result;
	/* The response. */
	int status;
	bool interim;
	enum act act;
	int act_res;
	uint64_t act_delay;
	char *location;
	uint64_t bytes_in;
	uint64_t sent_ns;                 /* this attempt's request started out */
	uint64_t discarded;
	bool discard;
	char ebody[SG_XFER_EBODY_MAX];
	size_t ebody_len;
	/* buffered body (manifests, tokens) when the sink has no body hook */
	uint8_t *bbuf;
	size_t blen, bmax;
	char ctype[160];
	char *req;
	int req_len;
	struct sg_auth_challenge chal;
	struct sg_error err;                  /* why it failed (this attempt) */
	struct sg_http1_parser p;
};

/* The message of the exchange, "GET https://host/target: <fmt>", replaced or appended to. */
void sg_xfer_seterr(struct sg_exchange *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sg_xfer_adderr(struct sg_exchange *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The message for a non-2xx status: "401 Unauthorized: CODE: message of the error body". */
void sg_xfer_status_error(struct sg_exchange *x);
/* Starts (or restarts) an attempt. */
void sg_xfer_go(struct sg_exchange *x);
/* Ends the exchange with res; the caller's op completes once nothing is pending. */
void sg_xfer_finish(struct sg_exchange *x, int res);
/* First thing in every callback of x->op: true (and the result delivered) if the exchange
 * finished meanwhile. */
bool sg_xfer_settle(struct sg_exchange *x);
/* Whether plain HTTP may be used for authority. */
bool sg_xfer_plain_ok(const struct sg_exchanges *xs, const char *authority);

#endif
