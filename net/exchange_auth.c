/* The authentication of an exchange: the credentials it sends, the answer to a 401, and the
 * token requests it makes.  See exchange_auth.h. */
#include "net/exchange_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/auth.h"
#include "net/credentials.h"
#include "net/endpoints.h"
#include "net/exchange_int.h"
#include "net/pool.h"
#include "net/reference.h"
#include "net/token.h"
#include "net/url.h"

/* A token request, made for the requests that need (host, repo)'s token. */
struct token_fetch {
	struct sg_exchanges *xs;
	struct sg_exchange *x;
	struct sg_op op;
	struct sg_error err;
	char host[SG_URL_HOST_MAX + 8];
	char repo[SG_REF_NAME_MAX + 1];
};

static void xfer_auth_answer(struct sg_exchange *x);

/* ---- credentials sent ---- */

/* The one decision whether this request may carry credentials: every Authorization header (a
 * cached Bearer token, Basic from the docker config or a credential helper, a token request's
 * Basic in extra_auth) and the hosts.toml headers (which may hold credentials of their own).
 * They are meant for the host the exchange started on (orig_host, the endpoint's host or the
 * token realm's), so they go only there.  Once a redirect has left that origin nothing is sent
 * for the rest of the attempt, even if a later redirect comes back: a host that was never
 * given the credentials must not be able to have them sent to a URL of its choosing on the
 * origin (Go's net/http strips them the same way since CVE-2024-45336).  A retry starts over
 * at the origin with them.  The host comparisons repeat what left_origin records, so a change
 * of x->host that forgets to set it still sends nothing off-origin. */
bool sg_xauth_may_send(const struct sg_exchange *x)
{
	if (x->left_origin || !sg_host_same_origin(x->host, x->orig_host))
		return false;
	return !x->ep || sg_host_same_origin(x->host, x->ep->host);
}

/* Headers meant for the origin only (see sg_xauth_may_send). */
void sg_xauth_add_headers(struct sg_exchange *x, struct sg_http1_writer *w)
{
	struct sg_exchanges *xs = x->xs;
	const char *authority;

	free(x->sent_token);
	x->sent_token = NULL;
	x->sent_basic = false;
	if (!sg_xauth_may_send(x))
		return;
	if (x->ep && x->ep->entry) {
		const struct sg_hosts_entry *e = x->ep->entry;
		for (size_t i = 0; i < e->nheaders; i++)
			for (size_t k = 0; k < e->headers[i].nvalues; k++)
				sg_http1_req_header(w, e->headers[i].name, e->headers[i].values[k]);
	}
	if (x->extra_auth) {
		sg_http1_req_header(w, "Authorization", x->extra_auth);
		return;
	}
	if (!x->ep)
		return;
	authority = sg_host_authority(x->ep->host);
	if (x->repo) {
		struct sg_token *t = sg_tokens_entry(xs->tokens, authority, x->repo, false);
		time_t expiry;
		const char *value = t ? sg_token_value(t, &expiry) : NULL;
		if (value) {
			if (time(NULL) < expiry) {
				sg_http1_req_header(w, "Authorization", value);
				x->sent_token = strdup(value);
				return;
			}
			sg_token_drop(t);
		}
	}
	if (sg_host_wants_basic(x->ep->host)) {
		char hdr[1024];
		/* A helper's answer that expired is not waited for here: the 401 that follows
		 * asks the helper again (sg_xauth_answer). */
		if (sg_credentials_basic(xs->creds, authority, hdr, sizeof(hdr), NULL) > 0) {
			sg_http1_req_header(w, "Authorization", hdr);
			x->sent_basic = true;
		}
	}
}

/* Requests that would meet a token request in flight wait for it instead of collecting a
 * 401 of their own. */
bool sg_xauth_wait_token(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	struct sg_token *t;

	if (!x->ep || !x->repo || x->extra_auth || !sg_xauth_may_send(x))
		return false;
	t = sg_tokens_entry(xs->tokens, sg_host_authority(x->ep->host), x->repo, false);
	if (!t || !sg_token_fetching(t) || sg_token_value(t, NULL))
		return false;
	sg_list_insert_tail(&xs->token_waiters, &x->token_link);
	x->wait = W_TOKEN;
	return true;
}

/* ---- 401s ---- */

/* A 401's challenges: the Bearer one if any, else a Basic one.  True if one is usable. */
bool sg_xauth_pick_challenge(struct sg_exchange *x)
{
	struct sg_auth_challenge ch[SG_AUTH_CHALLENGES_MAX];
	const char *v;
	size_t vlen;
	int best = -1;

	for (unsigned i = 0; (v = sg_http1_header_nth(&x->p, "www-authenticate", i, &vlen)); i++) {
		int n = sg_auth_parse_challenges(v, vlen, ch, SG_AUTH_CHALLENGES_MAX);
		for (int k = 0; k < n; k++) {
			if (ch[k].scheme == SG_AUTH_BEARER) {
				x->chal = ch[k];
				best = SG_AUTH_BEARER;
			} else if (ch[k].scheme == SG_AUTH_BASIC && best < 0) {
				x->chal = ch[k];
				best = SG_AUTH_BASIC;
			}
		}
		if (best == SG_AUTH_BEARER)
			break;
	}
	return best >= 0;
}

/* ---- token requests ---- */

/* Wakes the requests waiting for (host, repo)'s token request: they go (res 0), or fail. */
static void token_wake(struct sg_exchanges *xs, const char *host, const char *repo, int res,
		       const char *err)
{
	struct sg_list woken, *pos, *tmp;

	sg_list_init(&woken);
	sg_list_for_each_safe(pos, tmp, &xs->token_waiters) {
		struct sg_exchange *w = sg_container_of(pos, struct sg_exchange, token_link);
		if (!strcmp(sg_host_authority(w->ep->host), host) && !strcmp(w->repo, repo)) {
			sg_list_unlink(&w->token_link);
			sg_list_insert_tail(&woken, &w->token_link);
		}
	}
	while (!sg_list_empty(&woken)) {
		struct sg_exchange *w = sg_container_of(sg_list_pop(&woken), struct sg_exchange,
							token_link);
		w->wait = W_NONE;
		if (res < 0) {
			sg_xfer_seterr(w, "%s", err);
			sg_xfer_finish(w, res);
		} else {
			sg_xfer_go(w);
		}
	}
}

/* The token request's answer, stored for (host, repo).  Returns 0 or a negative errno with
 * the message in err. */
static int token_store(struct token_fetch *tf, struct sg_token *t, int res,
		       struct sg_error *err)
{
	struct sg_auth_token tok = { 0 };
	const uint8_t *body;
	time_t expiry;
	size_t len;
	int r;

	if (res < 0) {
		return sg_error_set(err, res == -ECANCELED ? res : -EACCES,
				    "token request failed: %s", tf->err.msg);
	}
	body = sg_exchange_body(tf->x, &len);
	r = sg_auth_parse_token((const char *)body, len, &tok);
	if (r < 0)
		return sg_error_set(err, -EACCES, "token response from %s is not usable: %s",
				    sg_host_authority(sg_exchange_host(tf->x)), strerror(-r));
	expiry = sg_auth_token_expiry(&tok, time(NULL));
	/* A token already expired by the clock's account is still good for the requests that
	 * waited for it: they go out now. */
	if (expiry <= time(NULL))
		expiry = time(NULL) + 1;
	r = t ? sg_token_set(t, tok.token, expiry) : -ENOMEM;
	sg_auth_token_done(&tok);
	if (r < 0)
		return sg_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static void on_token_fetched(struct sg_op *op)
{
	struct token_fetch *tf = sg_container_of(op, struct token_fetch, op);
	struct sg_exchanges *xs = tf->xs;
	struct sg_token *t = sg_tokens_entry(xs->tokens, tf->host, tf->repo, false);
	struct sg_error err = { 0 };
	int res;

	if (t)
		sg_token_set_fetching(t, false);
	res = token_store(tf, t, op->res, &err);
	token_wake(xs, tf->host, tf->repo, res, err.msg);
	sg_exchange_free(tf->x);
	free(tf);
}

static const struct sg_exchange_sink token_sink = { 0 };

/* Starts the token request for t on behalf of x (x waits for it already). */
static int token_fetch(struct sg_token *t, struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	const char *authority = sg_host_authority(x->ep->host);
	char scope[SG_REF_NAME_MAX + 32], hdr[1024];
	struct sg_exchange_request req = {
		.accept = "application/json",
		.body_max = SG_AUTH_TOKEN_MAX + 4096,
		.sink = &token_sink,
	};
	struct token_fetch *tf;
	char *url;
	struct sg_url u;
	char auth[SG_URL_HOST_MAX + 8];
	int r;

	url = malloc(SG_URL_TARGET_MAX);
	if (!url)
		return -ENOMEM;
	snprintf(scope, sizeof(scope), "repository:%s:%s", x->repo,
		 x->push_scope ? "pull,push" : "pull");
	r = sg_auth_token_url(&x->chal, scope, url, SG_URL_TARGET_MAX);
	if (r >= 0)
		r = sg_url_parse(url, (size_t)r, NULL, &u);
	free(url);
	if (r < 0) {
		sg_xfer_seterr(x, "unusable token realm \"%.200s\"", x->chal.realm);
		return -EACCES;
	}
	sg_url_authority(&u, auth, sizeof(auth));
	if (!u.tls && sg_host_tls(x->ep->host) && !sg_xfer_plain_ok(xs, auth)) {
		sg_xfer_seterr(x, "token realm %s is plain HTTP; refused for an HTTPS registry", auth);
		return -EPERM;
	}
	req.host = sg_pool_host(xs->pool, u.tls, u.host, u.port, false, NULL);
	if (!req.host)
		return -ENOMEM;
	req.target = u.target;
	/* sg_xauth_answer had the helper (if any) answer before calling us. */
	if (sg_credentials_basic(xs->creds, authority, hdr, sizeof(hdr), NULL) > 0)
		req.authorization = hdr;
	tf = calloc(1, sizeof(*tf));
	if (!tf)
		return -ENOMEM;
	tf->xs = xs;
	sg_op_init(&tf->op);
	snprintf(tf->host, sizeof(tf->host), "%s", authority);
	snprintf(tf->repo, sizeof(tf->repo), "%s", x->repo);
	r = sg_exchange_start(xs, &req, &tf->x, &tf->err, &tf->op, on_token_fetched);
	if (r < 0) {
		free(tf);
		return r;
	}
	sg_token_set_fetching(t, true);
	return 0;
}

/* ---- answering ---- */

static void on_cred_ready(struct sg_op *op)
{
	struct sg_exchange *x = sg_container_of(op, struct sg_exchange, op);

	if (sg_xfer_settle(x))
		return;
	xfer_auth_answer(x);
}

void sg_xauth_answer(struct sg_exchange *x)
{
	const char *authority = sg_host_authority(x->ep->host);
	struct sg_docker_cred cred;
	int r;

	if (++x->auth_round > 2) {
		sg_xfer_status_error(x);
		sg_xfer_adderr(x, " (authentication failed)");
		sg_xfer_finish(x, -EACCES);
		return;
	}
	/* A credential helper runs as a child process: wait for its answer (cached for the
	 * next requests) before answering the challenge. */
	r = sg_credentials_lookup(x->xs->creds, authority, &cred, NULL);
	sg_docker_cred_done(&cred);
	if (r == -EAGAIN && sg_credentials_wait(x->xs->creds, authority, &x->op, on_cred_ready) == 0) {
		x->wait = W_CRED;
		return;
	}
	xfer_auth_answer(x);
}

/* A Bearer challenge: the cached token if another request refreshed it meanwhile, else wait
 * for the token request (started here unless one is in flight). */
static void xfer_auth_bearer(struct sg_exchange *x)
{
	struct sg_exchanges *xs = x->xs;
	const char *authority = sg_host_authority(x->ep->host);
	struct sg_token *t = sg_tokens_entry(xs->tokens, authority, x->repo, true);
	const char *value;
	time_t expiry;
	int r;

	if (!t) {
		sg_xfer_finish(x, -ENOMEM);
		return;
	}
	value = sg_token_value(t, &expiry);
	if (value && x->sent_token && !strcmp(value, x->sent_token)) {
		sg_token_drop(t);
		value = NULL;
	}
	if (value && time(NULL) < expiry) {
		sg_xfer_go(x);     /* another request refreshed it meanwhile */
		return;
	}
	sg_list_insert_tail(&xs->token_waiters, &x->token_link);
	x->wait = W_TOKEN;
	if (sg_token_fetching(t))
		return;
	r = token_fetch(t, x);
	if (r < 0) {
		struct sg_error err = { 0 };
		char repo[SG_REF_NAME_MAX + 1];
		sg_error_set(&err, r, "%s", x->err.msg[0] ? x->err.msg : strerror(-r));
		snprintf(repo, sizeof(repo), "%s", x->repo);
		token_wake(xs, authority, repo, r, err.msg);
	}
}

/* A Basic challenge: the credentials, if there are any and they were not refused already. */
static void xfer_auth_basic(struct sg_exchange *x)
{
	struct sg_host *h = x->ep->host;
	struct sg_docker_cred cred;
	struct sg_error herr = { 0 };
	bool have = sg_credentials_lookup(x->xs->creds, sg_host_authority(h), &cred, &herr) == 0;
	bool usable = have && cred.username && cred.password;
	bool idtoken = have && cred.identity_token;

	sg_docker_cred_done(&cred);
	sg_xfer_status_error(x);
	if (!usable) {
		if (herr.msg[0])
			sg_xfer_adderr(x, " (no credentials for %s: %s)", sg_host_authority(h), herr.msg);
		else if (idtoken)
			sg_xfer_adderr(x, " (the credentials for %s are an identity token, which is "
				       "not supported)", sg_host_authority(h));
		else
			sg_xfer_adderr(x, " (no credentials for %s in the docker config)",
				       sg_host_authority(h));
		sg_xfer_finish(x, -EACCES);
		return;
	}
	if (x->sent_basic) {
		sg_xfer_adderr(x, " (credentials for %s rejected)", sg_host_authority(h));
		sg_xfer_finish(x, -EACCES);
		return;
	}
	sg_host_set_wants_basic(h);
	sg_xfer_go(x);
}

/* Answers a 401 once the credentials (if any) are known. */
static void xfer_auth_answer(struct sg_exchange *x)
{
	if (x->finishing)
		return;
	if (x->chal.scheme == SG_AUTH_BEARER && x->repo) {
		xfer_auth_bearer(x);
		return;
	}
	if (x->chal.scheme == SG_AUTH_BASIC) {
		xfer_auth_basic(x);
		return;
	}
	sg_xfer_status_error(x);
	sg_xfer_finish(x, -EACCES);
}
