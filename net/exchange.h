/* One logical request of the registry client: a GET or HEAD (or a PUT or POST with a small
 * body, for pushing) with its retries, redirects and
 * authentication, over connections of net/pool.h.
 *
 *  - retries: connection errors, truncated bodies, 5xx, 408 and 429 are tried again, after an
 *    exponential backoff with jitter (Retry-After honoured up to retry_max_ns), `attempts`
 *    times in all (once for single_attempt); a kept-alive connection that fails before the
 *    first response byte (the server had closed it) is retried at once, uncounted.  A retry
 *    starts again at the first host, since presigned URLs expire.
 *  - redirects: 301/302/303/307/308, at most max_redirects; HTTPS to plain HTTP only where
 *    plain HTTP is allowed.  Once a redirect leaves the origin (scheme, host, port) the
 *    request started at, no Authorization of any kind and no hosts.toml header is sent for
 *    the rest of the attempt, even after a redirect back (as Go's net/http since
 *    CVE-2024-45336); a token request's Basic credentials go to the token realm only.
 *  - authentication (requests for an endpoint): a 401 is answered once per exchange, by the
 *    Bearer token flow (tokens cached per (host, repository) in net/token.h until they
 *    expire, dropped on a 401, one token request shared by every request that needs it) or
 *    by Basic credentials (net/credentials.h; a credential helper is waited for).
 *  - timeouts: the first response byte and each idle stretch of the body are bounded.
 *
 * The response is handed to a sink: its hooks see a 2xx head and the body as it streams, or
 * the body is buffered (up to body_max) when the sink has no body hook.  Error bodies are
 * read (to keep the connection) up to a bound, and their registry error text ends up in the
 * message.
 *
 * An exchange is a continuation in the loop's shape (daemon/core/loop.h): sg_exchange_start
 * completes the caller's op once, with op->res 0 or a negative errno and err saying why
 * ("GET https://host/v2/...: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown").  Errors:
 * -ENOENT (404), -EACCES (401/403 after auth), -EINVAL (400/416), -EOPNOTSUPP (405),
 * -ETIMEDOUT, -ECONNREFUSED, -ECONNABORTED (TLS), -EIO / -EPIPE (short or inconsistent
 * response), -EBADMSG (malformed), -EPERM (plain HTTP not allowed), -ELOOP (too many
 * redirects), -EPROTO (other statuses), -ECANCELED, or what a sink hook returned.  Nothing
 * here logs.
 */
#ifndef STARGZD_NET_EXCHANGE_H
#define STARGZD_NET_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"
#include "net/http1.h"

struct sg_pool;
struct sg_host;
struct sg_endpoint;
struct sg_credentials;
struct sg_exchanges;
struct sg_exchange;

#define SG_EXCHANGE_RANGES_MAX 64

/* What every exchange of one registry client shares.  0 is not a default here: the registry
 * fills its defaults in. */
struct sg_exchanges_config {
	uint64_t first_byte_timeout_ns;   /* request sent -> response head */
	uint64_t idle_timeout_ns;         /* between body reads (and for sending) */
	unsigned attempts;                /* per request, retries included */
	uint64_t retry_base_ns;           /* first backoff, doubling */
	uint64_t retry_max_ns;            /* backoff and Retry-After cap */
	unsigned max_redirects;
	const char *user_agent;
	const char *const *insecure_hosts;/* may use plain HTTP (redirects, token realms) */
	size_t ninsecure_hosts;
	bool plain_http_localhost;
};

/* The strings of config, pool and creds must outlive the object.  Returns 0 or -ENOMEM. */
int sg_exchanges_new(struct sg_loop *loop, const struct sg_exchanges_config *config,
		     struct sg_pool *pool, struct sg_credentials *creds,
		     struct sg_exchanges **ret);
/* Every exchange still running completes with -ECANCELED ("registry client shut down"), from
 * the loop; new ones are refused.  NULL is fine. */
void sg_exchanges_shutdown(struct sg_exchanges *xs);
bool sg_exchanges_closing(const struct sg_exchanges *xs);
/* True while an exchange exists (one not freed, token requests included). */
bool sg_exchanges_busy(const struct sg_exchanges *xs);
/* Aborts (SG_FREE_CHECK) while busy.  NULL is fine. */
void sg_exchanges_free(struct sg_exchanges *xs);

/* The hooks of a response's consumer, called with its data, any number of times (once per
 * attempt, an attempt being cut short by a retry or redirect).  All may be NULL. */
struct sg_exchange_sink {
	void (*reset)(void *data);        /* before each attempt */
	/* A 2xx head: 0 or a negative errno (the exchange fails with it). */
	int (*head)(void *data, struct sg_exchange *x, const struct sg_http1_parser *p);
	/* A body slice: 0, 1 (enough: the rest is not read, the connection is closed) or a
	 * negative errno.  Without it the body is buffered (sg_exchange_body). */
	int (*body)(void *data, struct sg_exchange *x, const uint8_t *d, size_t n);
	/* The body is complete: 0 or a negative errno. */
	int (*done)(void *data, struct sg_exchange *x);
};

struct sg_exchange_request {
	struct sg_host *host;             /* where the request goes first */
	const char *target;               /* path and query */
	const struct sg_endpoint *ep;     /* a registry endpoint: its credentials and hosts.toml
					   * headers apply, 401s are answered; NULL for none */
	const char *repo;                 /* the repository (Bearer token scope) */
	const char *accept;               /* static */
	const char *authorization;        /* sent as is to the first host (a token request's
					   * Basic credentials); NULL for none */
	bool head;                        /* HEAD, not GET */
	/* Another method ("PUT", "POST"; static) with a body (copied; may be empty) of
	 * content_type (static, NULL for none); NULL = GET or HEAD.  A retry or redirect sends
	 * the body again.  push_scope asks a Bearer token for pull and push. */
	const char *method;
	const void *body;
	size_t body_len;
	const char *content_type;
	bool push_scope;
	bool single_attempt;              /* no retries (mirrors: they are caches) */
	unsigned rcvbuf;                  /* the connection's receive buffer for it
					   * (sg_pool_conn_rcvbuf); 0 = autotuned */
	const struct sg_http1_byte_range *ranges;   /* a Range header; at most
						     * SG_EXCHANGE_RANGES_MAX */
	size_t nranges;
	size_t body_max;                  /* the bound of a buffered body */
	const struct sg_exchange_sink *sink;
	void *sink_data;
};

/* Runs the request (its strings are copied): *ret_x is the exchange, for the calls below,
 * from the return on; cb(op) runs once from the loop, op->res 0 or a negative errno with err
 * (may be NULL) saying why.  Returns 0, or at once (nothing started, *ret_x untouched)
 * -EINVAL, -E2BIG (too many ranges), -EBUSY (op in flight), -ECANCELED (shut down) or
 * -ENOMEM. */
int sg_exchange_start(struct sg_exchanges *xs, const struct sg_exchange_request *req,
		      struct sg_exchange **ret_x, struct sg_error *err, struct sg_op *op,
		      sg_op_cb cb);
/* Makes a running exchange complete early with -ECANCELED; no sink hook runs from now on.
 * Returns 0, or -EALREADY when its completion is already on its way. */
int sg_exchange_cancel(struct sg_exchange *x);
/* Frees an exchange whose op has completed; aborts (SG_FREE_CHECK) before.  NULL is fine. */
void sg_exchange_free(struct sg_exchange *x);

/* For sink hooks: sets the exchange's message, "GET https://host/target: <fmt>", and
 * returns res (`return sg_exchange_fail(x, -EIO, "...")`). */
int sg_exchange_fail(struct sg_exchange *x, int res, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* After completion (or in a hook): the last status received (0 if none), the host the
 * response came from (redirects followed), the buffered body and its Content-Type. */
int sg_exchange_status(const struct sg_exchange *x);
/* A new receive buffer for the exchange's connection (sg_pool_conn_rcvbuf; nothing while it
 * has no connection; the next attempt starts from the request's again). */
void sg_exchange_set_rcvbuf(struct sg_exchange *x, unsigned bytes);
struct sg_host *sg_exchange_host(const struct sg_exchange *x);
/* When the current attempt's request was sent (sg_now_ns): a head hook's time to first byte. */
uint64_t sg_exchange_sent_ns(const struct sg_exchange *x);
const uint8_t *sg_exchange_body(const struct sg_exchange *x, size_t *ret_len);
/* The buffered body, now the caller's (free it); NULL if there is none. */
uint8_t *sg_exchange_take_body(struct sg_exchange *x, size_t *ret_len);
const char *sg_exchange_content_type(const struct sg_exchange *x);

/* ---- pure helpers, exposed for unit tests ---- */

/* Backoff before attempt `attempt` (1 = the first retry): base * 2^(attempt-1), capped at max,
 * then scaled by a jitter factor in [0.5, 1.0] given as jitter_permille (500..1000). */
uint64_t sg_exchange_backoff_ns(unsigned attempt, uint64_t base_ns, uint64_t max_ns,
				unsigned jitter_permille);
/* Retry-After: delta-seconds only (an HTTP-date is treated as absent).  Returns 0 with the
 * delay, capped at max_ns, or -EINVAL. */
int sg_exchange_retry_after(const char *value, size_t len, uint64_t max_ns, uint64_t *ret_ns);
/* Statuses worth retrying: 408, 429, 500, 502, 503, 504 (and other 5xx except 501/505). */
bool sg_exchange_status_retryable(int status);
/* The "message" of the first entry of a registry error body ({"errors":[{"code":..,
 * "message":..}]}), as "CODE: message"; falls back to the printable prefix of the body.
 * Writes a C string; returns its length (0 if nothing useful). */
size_t sg_exchange_error_text(const char *body, size_t len, char *buf, size_t cap);

#endif
