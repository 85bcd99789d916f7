/* The registry client.  See registry.h for the behaviour; this file is organised bottom-up:
 * pure helpers, host pools and connections, exchanges (retry/redirect/auth), tokens,
 * endpoints (hosts.toml), blob sources and range jobs, manifests. */
#include "net/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "daemon/core/list.h"
#include "net/auth.h"
#include "net/credhelper.h"
#include "net/conn.h"
#include "net/hosts_toml.h"
#include "net/http1.h"
#include "net/http1_ranges.h"
#include "net/json.h"
#include "net/manifest.h"
#include "net/reference.h"
#include "net/tls.h"

#ifndef STARGZD_VERSION
#define STARGZD_VERSION "dev"
#endif

#define MS (1000000ull)
#define DEF_CONNECT_NS (10000 * MS)
#define DEF_FIRST_BYTE_NS (30000 * MS)
#define DEF_IDLE_NS (30000 * MS)
#define DEF_ATTEMPTS 4
#define DEF_RETRY_BASE_NS (200 * MS)
#define DEF_RETRY_MAX_NS (5000 * MS)
#define DEF_MAX_CONNS 8
#define DEF_MAX_REDIRECTS 5
/* A pooled connection idle for longer is closed instead of reused: servers drop idle
 * keep-alive connections after 30-120 s, and a request on a dead one costs a round trip. */
#define CONN_IDLE_MAX_NS (20000 * MS)
#define CONN_BUF 65536
/* Error bodies are read (to keep the connection) up to this size, then the connection is
 * closed instead. */
#define DISCARD_MAX 65536
#define EBODY_MAX 1024
#define TOKENS_MAX 256
#define NSCONF_MAX 64
#define REQ_MAX (64 * 1024)
#define FILE_MAX (1 << 20)

/* ------------------------------------------------------------------------------------------ */
/* Pure helpers */

/* snprintf for messages, where truncation is fine (and GCC's truncation analysis is not). */
static void sfmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sfmt(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

uint64_t sg_registry_backoff_ns(unsigned attempt, uint64_t base_ns, uint64_t max_ns,
				unsigned jitter_permille)
{
	uint64_t d = base_ns;

	if (attempt == 0)
		return 0;
	for (unsigned i = 1; i < attempt && d < max_ns; i++)
		d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
	if (d > max_ns)
		d = max_ns;
	if (jitter_permille < 500)
		jitter_permille = 500;
	if (jitter_permille > 1000)
		jitter_permille = 1000;
	return d / 1000 * jitter_permille;
}

int sg_registry_retry_after(const char *value, size_t len, uint64_t max_ns, uint64_t *ret_ns)
{
	uint64_t secs;

	if (!value || sg_http1_parse_u64(value, len, &secs) < 0)
		return -EINVAL;
	if (secs > max_ns / 1000000000ull)
		*ret_ns = max_ns;
	else
		*ret_ns = secs * 1000000000ull;
	return 0;
}

bool sg_registry_status_retryable(int status)
{
	if (status == 408 || status == 429)
		return true;
	return status >= 500 && status <= 599 && status != 501 && status != 505;
}

const char *sg_registry_multirange_name(enum sg_registry_multirange m)
{
	static const char *const names[_SG_MULTIRANGE_MAX] = {
		[SG_MULTIRANGE_UNKNOWN] = "unknown",
		[SG_MULTIRANGE_OK] = "ok",
		[SG_MULTIRANGE_REFUSED] = "refused",
		[SG_MULTIRANGE_WHOLE] = "whole-blob",
		[SG_MULTIRANGE_FIRST_ONLY] = "first-range-only",
	};
	return (unsigned)m < _SG_MULTIRANGE_MAX ? names[m] : "invalid";
}

static bool bad_url_char(char ch)
{
	return (unsigned char)ch <= 0x20 || ch == 0x7f;
}

int sg_url_parse(const char *s, size_t len, const struct sg_url *base, struct sg_url *ret)
{
	struct sg_url u = { 0 };
	size_t i = 0, hs, he, n;

	if (!s)
		return -EINVAL;
	for (size_t k = 0; k < len; k++)
		if (bad_url_char(s[k]))
			return -EINVAL;
	if (len >= 7 && !strncasecmp(s, "http://", 7)) {
		u.tls = false;
		i = 7;
	} else if (len >= 8 && !strncasecmp(s, "https://", 8)) {
		u.tls = true;
		i = 8;
	} else if (len >= 2 && s[0] == '/' && s[1] == '/') {
		if (!base)
			return -EINVAL;
		u.tls = base->tls;
		i = 2;
	} else {
		/* A relative reference: path-absolute or relative to the base's directory. */
		if (!base || len == 0 || s[0] == '#' || memchr(s, ':', strcspn(s, "/?")) != NULL)
			return -EINVAL;
		u = *base;
		if (s[0] == '/') {
			if (len >= sizeof(u.target))
				return -ENAMETOOLONG;
			memcpy(u.target, s, len);
			u.target[len] = '\0';
		} else {
			const char *q = strchr(base->target, '?');
			size_t blen = q ? (size_t)(q - base->target) : strlen(base->target);
			while (blen > 0 && base->target[blen - 1] != '/')
				blen--;
			if (blen + len >= sizeof(u.target))
				return -ENAMETOOLONG;
			memmove(u.target + blen, s, len);
			u.target[blen + len] = '\0';
		}
		*ret = u;
		return 0;
	}
	/* authority */
	hs = i;
	while (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	he = i;
	if (he == hs || memchr(s + hs, '@', he - hs))
		return -EINVAL;
	{
		const char *a = s + hs;
		size_t alen = he - hs, hlen;
		const char *colon = NULL;
		if (a[0] == '[') {
			const char *rb = memchr(a, ']', alen);
			if (!rb || rb == a + 1)
				return -EINVAL;
			hlen = (size_t)(rb - a) - 1;
			if (hlen >= sizeof(u.host))
				return -ENAMETOOLONG;
			memcpy(u.host, a + 1, hlen);
			u.host[hlen] = '\0';
			if ((size_t)(rb - a) + 1 < alen) {
				if (rb[1] != ':')
					return -EINVAL;
				colon = rb + 1;
			}
		} else {
			colon = memchr(a, ':', alen);
			hlen = colon ? (size_t)(colon - a) : alen;
			if (hlen == 0)
				return -EINVAL;
			if (hlen >= sizeof(u.host))
				return -ENAMETOOLONG;
			memcpy(u.host, a, hlen);
			u.host[hlen] = '\0';
			for (size_t k = 0; k < hlen; k++) {
				char ch = u.host[k];
				if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
					return -EINVAL;
			}
		}
		u.port = u.tls ? 443 : 80;
		if (colon) {
			uint64_t p;
			size_t plen = (size_t)(a + alen - colon) - 1;
			if (plen == 0) {
				/* "host:" means the default port. */
			} else if (sg_http1_parse_u64(colon + 1, plen, &p) < 0 || p == 0 || p > 65535) {
				return -EINVAL;
			} else {
				u.port = (uint16_t)p;
				u.explicit_port = true;
			}
		}
	}
	/* path + query, without a fragment */
	n = len - i;
	{
		const char *frag = memchr(s + i, '#', n);
		if (frag)
			n = (size_t)(frag - (s + i));
	}
	if (n == 0 || s[i] != '/') {
		if (n + 1 >= sizeof(u.target))
			return -ENAMETOOLONG;
		u.target[0] = '/';
		memcpy(u.target + 1, s + i, n);
		u.target[n + 1] = '\0';
	} else {
		if (n >= sizeof(u.target))
			return -ENAMETOOLONG;
		memcpy(u.target, s + i, n);
		u.target[n] = '\0';
	}
	*ret = u;
	return 0;
}

int sg_url_authority(const struct sg_url *u, char *buf, size_t cap)
{
	bool v6 = strchr(u->host, ':') != NULL;
	bool def = u->port == (u->tls ? 443 : 80);
	int n;

	if (def)
		n = snprintf(buf, cap, v6 ? "[%s]" : "%s", u->host);
	else
		n = snprintf(buf, cap, v6 ? "[%s]:%u" : "%s:%u", u->host, (unsigned)u->port);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

/* Splits "host[:port]" / "[v6][:port]" into a bare host and a port. */
static int split_authority(const char *auth, bool tls, char *host, size_t cap, uint16_t *port)
{
	struct sg_url u;
	char tmp[SG_URL_HOST_MAX + 16];
	int r;

	if (snprintf(tmp, sizeof(tmp), "%s://%s/", tls ? "https" : "http", auth) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	r = sg_url_parse(tmp, strlen(tmp), NULL, &u);
	if (r < 0)
		return r;
	if (strlen(u.host) >= cap)
		return -ENAMETOOLONG;
	strcpy(host, u.host);
	*port = u.port;
	return 0;
}

static bool is_local_host(const char *host)
{
	return !strcasecmp(host, "localhost") || !strcmp(host, "::1") ||
	       !strncmp(host, "127.", 4);
}

bool sg_registry_plain_allowed(const char *const *insecure, size_t n, bool localhost_ok,
			       const char *authority)
{
	char host[SG_URL_HOST_MAX];
	uint16_t port;

	if (!authority || split_authority(authority, false, host, sizeof(host), &port) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ih[SG_URL_HOST_MAX];
		uint16_t ip;
		if (!insecure[i])
			continue;
		if (!strcasecmp(insecure[i], authority))
			return true;
		/* An entry without a port covers every port of that host. */
		if (!strchr(insecure[i], ':') || (insecure[i][0] == '[' && !strstr(insecure[i], "]:"))) {
			if (split_authority(insecure[i], false, ih, sizeof(ih), &ip) == 0 &&
			    !strcasecmp(ih, host))
				return true;
		}
	}
	return localhost_ok && is_local_host(host);
}

size_t sg_registry_error_text(const char *body, size_t len, char *buf, size_t cap)
{
	yajl_val root = NULL, errs, e;
	size_t n = 0;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	if (!body || len == 0)
		return 0;
	if (sg_json_parse(body, len, 1 << 16, &root, NULL) == 0) {
		errs = sg_json_member(root, "errors");
		if (errs && YAJL_IS_ARRAY(errs) && errs->u.array.len > 0 &&
		    YAJL_IS_OBJECT((e = errs->u.array.values[0]))) {
			const char *code = sg_json_string(e, "code");
			const char *msg = sg_json_string(e, "message");
			int k = snprintf(buf, cap, "%s%s%s", code ? code : "", code && msg ? ": " : "",
					 msg ? msg : "");
			yajl_tree_free(root);
			if (k < 0)
				return 0;
			return (size_t)k < cap ? (size_t)k : cap - 1;
		}
		yajl_tree_free(root);
	}
	/* Not the registry error format: the printable prefix of the body. */
	for (size_t i = 0; i < len && n + 1 < cap && n < 200; i++) {
		unsigned char ch = (unsigned char)body[i];
		buf[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
	}
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Types */

struct xfer;
struct rconn;

struct host {
	struct sg_list link;                  /* reg->hosts */
	struct sg_registry *reg;
	bool tls, skip_verify;
	const struct sg_tls_trust *trust;
	char hostname[SG_URL_HOST_MAX];       /* for resolution, SNI and name checks */
	uint16_t port;
	char authority[SG_URL_HOST_MAX + 8];  /* the Host header */
	struct sg_list idle;                  /* rconn.link */
	struct sg_list waiters;               /* xfer.wait_link */
	unsigned nconns;
	unsigned pins;                        /* endpoints using it: never collected */
	bool basic;                           /* answered 401 with a Basic challenge */
	struct sg_registry_host_stats st;
};

struct rconn {
	struct sg_list link;                  /* host->idle while idle */
	struct host *h;
	struct sg_conn tcp;
	struct sg_tls *tls;
	struct sg_error tls_err;              /* why the handshake failed */
	struct sg_op op;                      /* connect, handshake, send, receive */
	struct xfer *x;                       /* the exchange using it */
	bool ready, closing, counted;
	uint64_t idle_since;
	unsigned served;
	uint8_t buf[CONN_BUF];
};

struct endpoint {
	struct host *host;
	char prefix[512];                     /* API prefix, "/v2" */
	bool mirror;
	unsigned caps;
	const struct sg_hosts_entry *entry;   /* headers; NULL for none */
};

struct nsconf {
	struct sg_list link;
	char ns[SG_REF_NAME_MAX + 1];
	struct sg_hosts_config *cfg;
	struct endpoint eps[SG_HOSTS_MAX + 1];
	size_t neps;
	struct sg_tls_trust trusts[SG_HOSTS_MAX + 1];
	int err;                              /* hosts.toml unusable: every request fails */
	char errmsg[256];
};

struct token {
	struct sg_list link;
	char key[SG_URL_HOST_MAX + SG_REF_NAME_MAX + 4];
	char *value;                          /* "Bearer ..." or NULL */
	time_t expiry;
	struct xfer *fetch;
	struct sg_list waiters;               /* xfer.wait_link */
	struct sg_auth_challenge chal;
};

struct sg_registry {
	struct sg_loop *loop;
	struct sg_registry_config cfg;        /* defaults filled in; strings below */
	char **insecure;
	size_t ninsecure;
	char user_agent[128];
	char *hosts_dir;
	struct sg_tls_trust trust;
	struct sg_docker_config *docker;
	struct sg_credhelper *creds;          /* credsStore/credHelpers answers; NULL once closing */
	struct sg_list hosts, nsconfs, tokens, xfers;
	unsigned nhosts, nns, ntokens;
	unsigned refs;
	bool closing;
	uint64_t rnd;
};

enum xact { XA_NONE, XA_REDIRECT, XA_AUTH, XA_RETRY, XA_FAIL };

struct xfer_ops {
	void (*reset)(struct xfer *x);                          /* before each attempt */
	int (*head)(struct xfer *x);                            /* 2xx head: 0 or -errno */
	int (*body)(struct xfer *x, const uint8_t *d, size_t n);/* 0, 1 = have enough, -errno */
	int (*done)(struct xfer *x);                            /* body complete: 0 or -errno */
	void (*complete)(struct xfer *x, int res);              /* once; x->err says why */
};

struct xfer {
	struct sg_list link;                  /* reg->xfers */
	struct sg_list wait_link;             /* host waiters or token waiters */
	struct sg_registry *reg;
	const struct xfer_ops *ops;
	void *owner;
	struct endpoint *ep;                  /* registry auth and headers apply; may be NULL */
	char *repo;
	const char *accept;
	char *extra_auth;                     /* explicit Authorization (token requests) */
	bool head_method;
	bool single_attempt;
	struct host *orig_host, *host;
	char *orig_target, *target;
	bool left_origin;                     /* a redirect left orig_host (sticky until a
					       * retry starts over there): see
					       * xfer_may_send_credentials */
	struct sg_http1_byte_range ranges[SG_REGISTRY_RANGES_MAX];
	size_t nranges;
	unsigned attempt, redirects, auth_round, stale;
	char *sent_token;
	bool sent_basic;
	struct rconn *c;
	struct sg_op op;                      /* backoff timer or credential wait, then the
					       * completion post */
	bool cred_waiting;                    /* op waits for a credential helper */
	bool finishing, aborted, in_token_wait;
	int status;
	bool interim;
	enum xact act;
	int act_res;
	uint64_t act_delay;
	char *location;
	uint64_t bytes_in;
	uint64_t discarded;
	bool discard;
	char ebody[EBODY_MAX];
	size_t ebody_len;
	/* buffered body (manifests, tokens) when ops->body is NULL */
	uint8_t *bbuf;
	size_t blen, bmax;
	char ctype[160];
	char *req;
	int req_len;
	struct sg_auth_challenge chal;
	char err[SG_REGISTRY_ERR_MAX];
	struct sg_http1_parser p;
};

static void reg_unref(struct sg_registry *reg);
static void host_acquire(struct host *h, struct xfer *x);
static void host_kick(struct host *h);
static void xfer_send(struct xfer *x);
static void xfer_go(struct xfer *x);
static void xfer_finish(struct xfer *x, int res);
static void xfer_attempt_failed(struct xfer *x, int res, bool retryable);
static void xfer_cancel_wait(struct xfer *x);
static void conn_read(struct rconn *c);
static void conn_destroy(struct rconn *c);

static void xfer_seterr(struct xfer *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void xfer_seterr(struct xfer *x, const char *fmt, ...)
{
	char msg[SG_REGISTRY_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sfmt(x->err, sizeof(x->err), "%s %s://%s%.200s: %s", x->head_method ? "HEAD" : "GET",
		 x->host->tls ? "https" : "http", x->host->authority, x->target, msg);
}

static uint64_t reg_rand(struct sg_registry *reg)
{
	/* xorshift64: jitter only, no security value. */
	uint64_t v = reg->rnd;
	v ^= v << 13;
	v ^= v >> 7;
	v ^= v << 17;
	reg->rnd = v;
	return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Hosts and connections */

static struct host *host_get(struct sg_registry *reg, bool tls, const char *hostname,
			     uint16_t port, bool skip_verify, const struct sg_tls_trust *trust)
{
	struct sg_list *pos, *tmp;
	struct host *h;
	struct sg_url u = { .tls = tls, .port = port };

	if (!trust)
		trust = &reg->trust;
	if (!tls) {
		skip_verify = false;
		trust = NULL;
	}
	sg_list_for_each_safe(pos, tmp, &reg->hosts) {
		h = sg_container_of(pos, struct host, link);
		if (h->tls == tls && h->port == port && h->skip_verify == skip_verify &&
		    h->trust == trust && !strcasecmp(h->hostname, hostname))
			return h;
	}
	if (reg->nhosts >= SG_REGISTRY_HOSTS_MAX) {
		/* Collect pools that are unused (redirect targets come and go). */
		sg_list_for_each_safe(pos, tmp, &reg->hosts) {
			h = sg_container_of(pos, struct host, link);
			if (h->pins || !sg_list_empty(&h->waiters))
				continue;
			while (!sg_list_empty(&h->idle))
				conn_destroy(sg_container_of(h->idle.next, struct rconn, link));
			if (h->nconns)
				continue;
			sg_list_unlink(&h->link);
			reg->nhosts--;
			free(h);
			if (reg->nhosts < SG_REGISTRY_HOSTS_MAX)
				break;
		}
		if (reg->nhosts >= SG_REGISTRY_HOSTS_MAX)
			return NULL;
	}
	if (strlen(hostname) >= sizeof(h->hostname))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->reg = reg;
	h->tls = tls;
	h->skip_verify = skip_verify;
	h->trust = trust;
	h->port = port;
	strcpy(h->hostname, hostname);
	strcpy(u.host, hostname);
	if (sg_url_authority(&u, h->authority, sizeof(h->authority)) < 0) {
		free(h);
		return NULL;
	}
	sg_list_init(&h->idle);
	sg_list_init(&h->waiters);
	sg_list_insert_tail(&reg->hosts, &h->link);
	reg->nhosts++;
	return h;
}

static bool conn_busy(struct rconn *c)
{
	return sg_conn_busy(&c->tcp) || sg_op_busy(&c->op) || (c->tls && sg_tls_busy(c->tls));
}

static void conn_maybe_free(struct rconn *c)
{
	struct host *h = c->h;
	struct sg_registry *reg = h->reg;

	if (conn_busy(c))
		return;   /* freed by the callback of its last op */
	sg_tls_free(c->tls);
	sg_conn_close(&c->tcp);
	sg_list_unlink(&c->link);
	h->nconns--;
	free(c);
	if (!sg_list_empty(&h->waiters) && !reg->closing)
		host_kick(h);
	reg_unref(reg);
}

/* Closes a connection; it is freed once its ops have completed. */
static void conn_destroy(struct rconn *c)
{
	sg_list_unlink(&c->link);
	if (c->x) {
		c->x->c = NULL;
		c->x = NULL;
	}
	c->closing = true;
	if (c->tls)
		sg_tls_cancel(c->tls);
	if (sg_op_busy(&c->op))
		(void)sg_op_cancel(&c->op);
	if (sg_conn_busy(&c->tcp))
		sg_conn_cancel(&c->tcp);
	conn_maybe_free(c);
}

/* The exchange gives its connection back: reuse it, or close it. */
static void xfer_release_conn(struct xfer *x, bool reuse)
{
	struct rconn *c = x->c;
	struct host *h;

	if (!c)
		return;
	h = c->h;
	x->c = NULL;
	c->x = NULL;
	if (!reuse || h->reg->closing || !c->ready || conn_busy(c)) {
		conn_destroy(c);
		return;
	}
	c->idle_since = sg_now_ns();
	sg_list_insert_tail(&h->idle, &c->link);
	if (!sg_list_empty(&h->waiters))
		host_kick(h);
}

static void on_conn_failed(struct rconn *c, int res, const char *what, const char *why)
{
	struct xfer *x = c->x;
	bool retry = res != -ECONNABORTED && res != -ENOENT && res != -EINVAL && res != -ECANCELED;

	if (x) {
		if (why && why[0])
			xfer_seterr(x, "%s: %s", what, why);
		else if (res == -ENOENT)
			xfer_seterr(x, "%s: unknown host name", what);
		else
			xfer_seterr(x, "%s: %s", what, strerror(-res));
		x->c = NULL;
		c->x = NULL;
		conn_destroy(c);
		xfer_attempt_failed(x, res, retry);
		return;
	}
	conn_destroy(c);
}

static void on_handshake(struct sg_op *op)
{
	struct rconn *c = sg_container_of(op, struct rconn, op);
	int res = op->res;

	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (res < 0) {
		on_conn_failed(c, res, "TLS handshake", c->tls_err.msg);
		return;
	}
	c->ready = true;
	if (c->x)
		xfer_send(c->x);
	else
		conn_destroy(c);
}

static void on_connected(struct sg_op *op)
{
	struct rconn *c = sg_container_of(op, struct rconn, op);
	struct sg_registry *reg = c->h->reg;
	int res = op->res;
	int r;

	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (res < 0) {
		on_conn_failed(c, res, "connect", NULL);
		return;
	}
	if (!c->h->tls) {
		c->ready = true;
		if (c->x)
			xfer_send(c->x);
		else
			conn_destroy(c);
		return;
	}
	r = sg_tls_new(reg->loop, c->tcp.fd, c->h->trust, &c->tls);
	if (r == 0) {
		if (c->h->skip_verify)
			sg_tls_set_insecure(c->tls);
		r = sg_tls_start(c->tls, c->h->hostname, reg->cfg.connect_timeout_ns, &c->tls_err,
				 &c->op, on_handshake);
	}
	if (r < 0)
		on_conn_failed(c, r, "TLS start", NULL);
}

/* Opens a new connection for x. */
static void conn_new(struct host *h, struct xfer *x)
{
	struct sg_registry *reg = h->reg;
	struct rconn *c = calloc(1, sizeof(*c));
	int r;

	if (!c) {
		xfer_seterr(x, "out of memory");
		xfer_finish(x, -ENOMEM);
		return;
	}
	c->h = h;
	sg_op_init(&c->op);
	sg_conn_init(&c->tcp, reg->loop);
	h->nconns++;
	reg->refs++;
	h->st.conns_opened++;
	if (h->nconns > h->st.conns_max_seen)
		h->st.conns_max_seen = h->nconns;
	c->x = x;
	x->c = c;
	r = sg_conn_connect(&c->tcp, h->hostname, h->port, reg->cfg.connect_timeout_ns, &c->op,
			    on_connected);
	if (r < 0)
		on_conn_failed(c, r, "connect", NULL);
}

static void conn_attach(struct rconn *c, struct xfer *x)
{
	c->x = x;
	x->c = c;
	if (c->ready)
		xfer_send(x);
}

static void host_acquire(struct host *h, struct xfer *x)
{
	uint64_t now = sg_now_ns();

	while (!sg_list_empty(&h->idle)) {
		struct rconn *c = sg_container_of(sg_list_pop(&h->idle), struct rconn, link);
		if (now - c->idle_since > CONN_IDLE_MAX_NS) {
			conn_destroy(c);
			continue;
		}
		conn_attach(c, x);
		return;
	}
	if (h->nconns < h->reg->cfg.max_conns_per_host) {
		conn_new(h, x);
		return;
	}
	sg_list_insert_tail(&h->waiters, &x->wait_link);
}

/* A connection slot or an idle connection became available. */
static void host_kick(struct host *h)
{
	unsigned guard = 0;

	while (!sg_list_empty(&h->waiters) && guard++ < 1024) {
		struct xfer *x;
		if (sg_list_empty(&h->idle) && h->nconns >= h->reg->cfg.max_conns_per_host)
			return;
		x = sg_container_of(sg_list_pop(&h->waiters), struct xfer, wait_link);
		host_acquire(h, x);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Exchanges: sending, reading, deciding */

static struct xfer *xfer_new(struct sg_registry *reg, const struct xfer_ops *ops, void *owner,
			     struct host *h, const char *target)
{
	struct xfer *x;

	if (reg->closing)
		return NULL;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->orig_target = strdup(target);
	x->target = strdup(target);
	if (!x->orig_target || !x->target) {
		free(x->orig_target);
		free(x->target);
		free(x);
		return NULL;
	}
	x->reg = reg;
	x->ops = ops;
	x->owner = owner;
	x->orig_host = x->host = h;
	sg_op_init(&x->op);
	sg_list_insert_tail(&reg->xfers, &x->link);
	reg->refs++;
	return x;
}

static void xfer_free(struct xfer *x)
{
	struct sg_registry *reg = x->reg;

	/* Its op (the backoff timer, a credential wait or the completion post) points into x. */
	SG_FREE_CHECK(sg_op_busy(&x->op) || x->cred_waiting || x->c, "registry exchange");
	sg_list_unlink(&x->link);
	sg_list_unlink(&x->wait_link);
	free(x->orig_target);
	free(x->target);
	free(x->repo);
	free(x->extra_auth);
	free(x->sent_token);
	free(x->location);
	free(x->bbuf);
	free(x->req);
	free(x);
	reg_unref(reg);
}

static void on_xfer_posted(struct sg_op *op)
{
	struct xfer *x = sg_container_of(op, struct xfer, op);

	if (!x->aborted && x->ops && x->ops->complete)
		x->ops->complete(x, op->res);
	xfer_free(x);
}

/* The final result: delivered to the owner from the loop. */
static void xfer_finish(struct xfer *x, int res)
{
	if (x->finishing)
		return;
	x->finishing = true;
	xfer_release_conn(x, false);
	sg_list_unlink(&x->wait_link);
	if (res < 0 && !x->err[0])
		xfer_seterr(x, "%s", strerror(-res));
	if (sg_op_busy(&x->op) || x->cred_waiting) {
		/* The backoff timer or a credential wait: its callback sees `finishing` and
		 * completes. */
		x->act_res = res;
		xfer_cancel_wait(x);
		return;
	}
	/* Cannot fail: x->op is idle (tested above) and posts are accepted while the loop
	 * drains; the fallback only keeps x from leaking should that ever change. */
	if (sg_post(x->reg->loop, &x->op, res, on_xfer_posted) < 0)
		xfer_free(x);
}

/* The owner no longer wants the exchange: no completion, no more sink calls. */
static void xfer_abort(struct xfer *x)
{
	if (!x)
		return;
	x->aborted = true;
	x->finishing = true;
	xfer_release_conn(x, false);
	sg_list_unlink(&x->wait_link);
	if (sg_op_busy(&x->op) || x->cred_waiting) {
		xfer_cancel_wait(x);
		return;
	}
	xfer_free(x);
}

/* The callback of x->op's wait (backoff or credentials) when the exchange has ended
 * meanwhile: free it, or deliver its result.  True if it did. */
static bool xfer_settle(struct xfer *x)
{
	if (x->aborted) {
		xfer_free(x);
		return true;
	}
	if (x->finishing) {
		/* Cannot fail: x->op is idle in its own callback, and posts are accepted while
		 * the loop drains. */
		if (sg_post(x->reg->loop, &x->op, x->act_res, on_xfer_posted) < 0)
			xfer_free(x);
		return true;
	}
	return false;
}

static void on_backoff(struct sg_op *op)
{
	struct xfer *x = sg_container_of(op, struct xfer, op);

	if (xfer_settle(x))
		return;
	xfer_go(x);
}

static bool xfer_may_retry(struct xfer *x)
{
	unsigned max = x->single_attempt ? 1 : x->reg->cfg.attempts;
	return x->attempt + 1 < max && !x->reg->closing;
}

static void xfer_retry_after(struct xfer *x, uint64_t delay)
{
	int r;

	x->attempt++;
	x->host->st.retries++;
	/* Start over at the registry: a redirect target (a presigned URL) may have expired. */
	x->host = x->orig_host;
	free(x->target);
	x->target = strdup(x->orig_target);
	x->left_origin = false;
	x->redirects = 0;
	if (!x->target) {
		xfer_finish(x, -ENOMEM);
		return;
	}
	/* Refused while the loop drains: the exchange then finishes with that error. */
	r = sg_timer_start(x->reg->loop, &x->op, delay, on_backoff);
	if (r < 0)
		xfer_finish(x, r);
}

static void xfer_attempt_failed(struct xfer *x, int res, bool retryable)
{
	xfer_release_conn(x, false);
	if (x->finishing)
		return;
	if (retryable && xfer_may_retry(x)) {
		uint64_t d = sg_registry_backoff_ns(x->attempt + 1, x->reg->cfg.retry_base_ns,
						    x->reg->cfg.retry_max_ns,
						    500 + (unsigned)(reg_rand(x->reg) % 501));
		xfer_retry_after(x, d);
		return;
	}
	if (x->attempt > 0 && retryable) {
		size_t l = strlen(x->err);
		sfmt(x->err + l, sizeof(x->err) - l, " (after %u attempts)", x->attempt + 1);
	}
	xfer_finish(x, res);
}

static struct token *token_find(struct sg_registry *reg, const char *host, const char *repo,
				bool create);

/* Where a registry host's credentials come from: the docker config's own (0 with *ret, no
 * helper), or a credential helper (0 with ret->helper and the server name to ask it about),
 * or nowhere (-ENOENT), or another negative errno. */
static int cred_source(struct sg_registry *reg, const char *authority, struct sg_docker_cred *ret,
		       char *server, size_t cap)
{
	int r;

	*ret = (struct sg_docker_cred){ 0 };
	if (!reg->docker)
		return -ENOENT;
	r = sg_docker_config_lookup(reg->docker, authority, ret);
	if (r < 0 || !ret->helper)
		return r;
	r = reg->creds ? sg_docker_helper_server(authority, server, cap) : -ECANCELED;
	if (r < 0)
		sg_docker_cred_done(ret);
	return r < 0 ? r : 0;
}

/* Credentials for a registry host: the docker config's own, or the cached answer of the
 * host's credential helper.  Returns 0, -ENOENT (nothing configured, or the helper had none:
 * then err says why), -EAGAIN (the helper has not answered: reg_cred_wait), or another
 * negative errno. */
static int reg_cred(struct sg_registry *reg, const char *authority, struct sg_docker_cred *ret,
		    struct sg_error *err)
{
	struct sg_docker_cred c;
	char server[SG_URL_HOST_MAX + 32];
	int r = cred_source(reg, authority, &c, server, sizeof(server));

	if (r < 0 || !c.helper) {
		*ret = c;
		return r;
	}
	r = sg_credhelper_lookup(reg->creds, c.helper, server, ret, err);
	sg_docker_cred_done(&c);
	return r;
}

/* Asks the host's credential helper: cb(op) runs once it has answered (reg_cred then has
 * the answer).  Returns 0, -ENOENT (no helper to ask) or another negative errno. */
static int reg_cred_wait(struct sg_registry *reg, const char *authority, struct sg_op *op,
			 sg_op_cb cb)
{
	struct sg_docker_cred c;
	char server[SG_URL_HOST_MAX + 32];
	int r = cred_source(reg, authority, &c, server, sizeof(server));

	if (r == 0)
		r = c.helper ? sg_credhelper_wait(reg->creds, c.helper, server, op, cb) : -ENOENT;
	sg_docker_cred_done(&c);
	return r;
}

/* Stops what x->op waits for (backoff or credentials); its callback comes with -ECANCELED
 * (or its result, if that was on its way). */
static void xfer_cancel_wait(struct xfer *x)
{
	if (x->cred_waiting)
		(void)sg_credhelper_cancel(x->reg->creds, &x->op);
	else
		(void)sg_op_cancel(&x->op);
}

/* Whether two pools are one origin: scheme, host name and port.  Stricter than Go's net/http,
 * which forwards Authorization to the same host name on any port or scheme and to its
 * subdomains: a registry's storage or CDN host is not one we would hand credentials to, and
 * two ports of one address can be two unrelated services. */
static bool host_same_origin(const struct host *a, const struct host *b)
{
	return a->tls == b->tls && a->port == b->port && !strcasecmp(a->hostname, b->hostname);
}

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
static bool xfer_may_send_credentials(const struct xfer *x)
{
	if (x->left_origin || !host_same_origin(x->host, x->orig_host))
		return false;
	return !x->ep || host_same_origin(x->host, x->ep->host);
}

/* Headers meant for the origin only (see xfer_may_send_credentials). */
static void add_credentials(struct xfer *x, struct sg_http1_writer *w)
{
	struct sg_registry *reg = x->reg;
	struct host *h;

	free(x->sent_token);
	x->sent_token = NULL;
	x->sent_basic = false;
	if (!xfer_may_send_credentials(x))
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
	h = x->ep->host;
	if (x->repo) {
		struct token *t = token_find(reg, h->authority, x->repo, false);
		if (t && t->value) {
			if (time(NULL) < t->expiry) {
				sg_http1_req_header(w, "Authorization", t->value);
				x->sent_token = strdup(t->value);
				return;
			}
			free(t->value);
			t->value = NULL;
		}
	}
	if (h->basic) {
		struct sg_docker_cred cred;
		/* A helper's answer that expired is not waited for here: the 401 that follows
		 * asks the helper again (xfer_do_auth). */
		if (reg_cred(reg, h->authority, &cred, NULL) == 0 && cred.username &&
		    cred.password) {
			char hdr[1024];
			if (sg_auth_basic_header(cred.username, cred.password, hdr, sizeof(hdr)) > 0) {
				sg_http1_req_header(w, "Authorization", hdr);
				x->sent_basic = true;
			}
		}
		sg_docker_cred_done(&cred);
	}
}

static int build_request(struct xfer *x)
{
	size_t cap = 4096;

	for (;;) {
		struct sg_http1_writer w;
		char *nb = realloc(x->req, cap);
		if (!nb)
			return -ENOMEM;
		x->req = nb;
		sg_http1_req_begin(&w, x->req, cap, x->head_method ? "HEAD" : "GET", x->target,
				   x->host->authority);
		sg_http1_req_header(&w, "User-Agent", x->reg->user_agent);
		if (x->accept)
			sg_http1_req_header(&w, "Accept", x->accept);
		if (x->nranges)
			sg_http1_req_ranges(&w, x->ranges, x->nranges);
		add_credentials(x, &w);
		x->req_len = sg_http1_req_end(&w);
		if (x->req_len != -ENOSPC || cap >= REQ_MAX)
			return x->req_len < 0 ? x->req_len : 0;
		cap *= 2;
	}
}

static void on_sent(struct sg_op *op);

static void xfer_send(struct xfer *x)
{
	struct rconn *c = x->c;
	struct sg_registry *reg = x->reg;
	int r;

	r = build_request(x);
	if (r < 0) {
		xfer_seterr(x, "cannot build the request: %s", strerror(-r));
		xfer_finish(x, r);
		return;
	}
	sg_http1_parser_init(&x->p, x->head_method);
	x->bytes_in = 0;
	x->host->st.requests++;
	if (c->served)
		x->host->st.reused++;
	c->served++;
	if (c->tls) {
		sg_tls_set_timeout(c->tls, reg->cfg.idle_timeout_ns);
		r = sg_tls_write(c->tls, x->req, (size_t)x->req_len, &c->op, on_sent);
	} else {
		sg_op_set_timeout(&c->op, reg->cfg.idle_timeout_ns);
		r = sg_send(reg->loop, &c->op, c->tcp.fd, x->req, (size_t)x->req_len, MSG_NOSIGNAL,
			    on_sent);
	}
	if (r < 0) {
		xfer_seterr(x, "send: %s", strerror(-r));
		xfer_attempt_failed(x, r, false);
	}
}

static void conn_io_error(struct rconn *c, int res, const char *what)
{
	struct xfer *x = c->x;
	bool stale = c->served > 1 && x->bytes_in == 0 && x->stale < 2 &&
		     (res == -EPIPE || res == -ECONNRESET);

	if (stale) {
		/* A kept-alive connection the server had already closed: not the request's
		 * fault, so try again at once on a fresh one. */
		x->stale++;
		x->c = NULL;
		c->x = NULL;
		conn_destroy(c);
		xfer_go(x);
		return;
	}
	if (res == -ETIMEDOUT)
		xfer_seterr(x, "%s: timed out %s", what,
			    x->bytes_in ? "while the body was streaming (idle timeout)"
					: "waiting for the response (first-byte timeout)");
	else
		xfer_seterr(x, "%s: %s", what, strerror(-res));
	x->c = NULL;
	c->x = NULL;
	conn_destroy(c);
	xfer_attempt_failed(x, res, res != -ECANCELED);
}

static void on_sent(struct sg_op *op)
{
	struct rconn *c = sg_container_of(op, struct rconn, op);
	int res = op->res;

	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (!c->x) {
		conn_destroy(c);
		return;
	}
	if (res < 0) {
		conn_io_error(c, res, "send");
		return;
	}
	conn_read(c);
}

static void on_received(struct sg_op *op);

static void conn_read(struct rconn *c)
{
	struct sg_registry *reg = c->h->reg;
	uint64_t t = c->x && c->x->bytes_in ? reg->cfg.idle_timeout_ns : reg->cfg.first_byte_timeout_ns;
	int r;

	if (c->tls) {
		sg_tls_set_timeout(c->tls, t);
		r = sg_tls_read(c->tls, c->buf, sizeof(c->buf), &c->op, on_received);
	} else {
		sg_op_set_timeout(&c->op, t);
		r = sg_recv(reg->loop, &c->op, c->tcp.fd, c->buf, sizeof(c->buf), 0, on_received);
	}
	if (r < 0)
		conn_io_error(c, r, "receive");
}

/* After a non-2xx head: decide what happens once its body is read (or the connection closed). */
static void xfer_plan(struct xfer *x)
{
	struct sg_registry *reg = x->reg;
	const struct sg_http1_parser *p = &x->p;
	int st = p->status;
	const char *v;
	size_t vlen;

	x->act = XA_FAIL;
	x->act_res = -EPROTO;
	if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
		v = sg_http1_header(p, "location", &vlen);
		if (v && vlen > 0) {
			free(x->location);
			x->location = strndup(v, vlen);
			x->act = x->location ? XA_REDIRECT : XA_FAIL;
			x->act_res = -ENOMEM;
			return;
		}
		x->act_res = -EBADMSG;
		return;
	}
	/* A 401 is answered only where the answer may be sent. */
	if (st == 401 && x->ep && !x->extra_auth && xfer_may_send_credentials(x)) {
		struct sg_auth_challenge ch[SG_AUTH_CHALLENGES_MAX];
		int best = -1;
		for (unsigned i = 0; (v = sg_http1_header_nth(p, "www-authenticate", i, &vlen)); i++) {
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
		if (best >= 0) {
			x->act = XA_AUTH;
			return;
		}
		x->act_res = -EACCES;
		return;
	}
	if (sg_registry_status_retryable(st)) {
		uint64_t d = sg_registry_backoff_ns(x->attempt + 1, reg->cfg.retry_base_ns,
						    reg->cfg.retry_max_ns,
						    500 + (unsigned)(reg_rand(reg) % 501));
		v = sg_http1_header(p, "retry-after", &vlen);
		if (v) {
			uint64_t ra;
			if (sg_registry_retry_after(v, vlen, reg->cfg.retry_max_ns, &ra) == 0 && ra > d)
				d = ra;
		}
		x->act = XA_RETRY;
		x->act_delay = d;
		x->act_res = -EPROTO;
		return;
	}
	switch (st) {
	case 404:
		x->act_res = -ENOENT;
		break;
	case 401:
	case 403:
		x->act_res = -EACCES;
		break;
	case 400:
	case 416:
		x->act_res = -EINVAL;
		break;
	case 405:
		x->act_res = -EOPNOTSUPP;
		break;
	default:
		x->act_res = -EPROTO;
	}
}

static void xfer_do_auth(struct xfer *x);
static void xfer_do_redirect(struct xfer *x);

static void status_error(struct xfer *x, int res)
{
	char detail[300];
	size_t rlen = 0;
	const char *reason = x->p.reason_len ? sg_http1_reason(&x->p, &rlen) : NULL;

	sg_registry_error_text(x->ebody, x->ebody_len, detail, sizeof(detail));
	xfer_seterr(x, "%d %.*s%s%s", x->status, reason ? (int)rlen : 0, reason ? reason : "",
		    detail[0] ? ": " : "", detail);
	(void)res;
}

/* Runs the planned action after a non-2xx response. */
static void xfer_act(struct xfer *x)
{
	switch (x->act) {
	case XA_REDIRECT:
		xfer_do_redirect(x);
		return;
	case XA_AUTH:
		xfer_do_auth(x);
		return;
	case XA_RETRY:
		status_error(x, x->act_res);
		if (xfer_may_retry(x)) {
			xfer_retry_after(x, x->act_delay);
			return;
		}
		if (x->attempt > 0) {
			size_t l = strlen(x->err);
			sfmt(x->err + l, sizeof(x->err) - l, " (after %u attempts)", x->attempt + 1);
		}
		xfer_finish(x, x->act_res);
		return;
	case XA_FAIL:
	default:
		status_error(x, x->act_res);
		if (x->status == 401 && x->act_res == -EACCES && x->ep && !x->chal.scheme)
			sfmt(x->err + strlen(x->err), sizeof(x->err) - strlen(x->err),
				 " (no usable WWW-Authenticate challenge)");
		xfer_finish(x, x->act_res);
		return;
	}
}

static int xfer_head(struct xfer *x)
{
	const struct sg_http1_parser *p = &x->p;
	int r;

	x->status = p->status;
	if (p->status >= 100 && p->status < 200) {
		x->interim = true;
		return 0;
	}
	if (p->status >= 200 && p->status < 300) {
		x->act = XA_NONE;
		if (!x->ops->body) {
			size_t vlen;
			const char *ct = sg_http1_header(p, "content-type", &vlen);
			sfmt(x->ctype, sizeof(x->ctype), "%.*s", ct ? (int)vlen : 0, ct ? ct : "");
			if (p->framing == SG_HTTP1_BODY_LENGTH && p->content_length > x->bmax) {
				xfer_seterr(x, "response too large (%llu bytes, limit %zu)",
					    (unsigned long long)p->content_length, x->bmax);
				return -E2BIG;
			}
		}
		if (x->ops->head) {
			r = x->ops->head(x);
			if (r < 0)
				return r;
		}
		return 0;
	}
	xfer_plan(x);
	x->discard = true;
	x->discarded = 0;
	x->ebody_len = 0;
	return 0;
}

/* Copies a body slice to the buffered sink. */
static int buffer_body(struct xfer *x, const uint8_t *d, size_t n)
{
	if (x->blen + n > x->bmax) {
		xfer_seterr(x, "response larger than %zu bytes", x->bmax);
		return -E2BIG;
	}
	if (!x->bbuf) {
		x->bbuf = malloc(x->bmax + 1);
		if (!x->bbuf)
			return -ENOMEM;
	}
	memcpy(x->bbuf + x->blen, d, n);
	x->blen += n;
	x->bbuf[x->blen] = 0;
	return 0;
}

/* The whole response is in (or enough of it): success or the planned action. */
static void xfer_response_done(struct xfer *x, bool reuse)
{
	int r;

	xfer_release_conn(x, reuse);
	if (x->act != XA_NONE) {
		xfer_act(x);
		return;
	}
	if (x->ops->done) {
		r = x->ops->done(x);
		if (r < 0) {
			if (!x->err[0])
				xfer_seterr(x, "%s", strerror(-r));
			xfer_finish(x, r);
			return;
		}
	}
	xfer_finish(x, 0);
}

static void on_received(struct sg_op *op)
{
	struct rconn *c = sg_container_of(op, struct rconn, op);
	struct xfer *x = c->x;
	int res = op->res;
	size_t off = 0, len;

	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (!x) {
		conn_destroy(c);
		return;
	}
	if (res < 0) {
		conn_io_error(c, res, "receive");
		return;
	}
	if (res == 0) {
		int r = sg_http1_finish(&x->p);
		if (r == SG_HTTP1_DONE && !x->interim) {
			xfer_response_done(x, false);
			return;
		}
		conn_io_error(c, x->bytes_in ? -EPIPE : -ECONNRESET,
			      x->bytes_in ? "connection closed before the response was complete"
					  : "connection closed without a response");
		return;
	}
	len = (size_t)res;
	x->bytes_in += len;
	for (;;) {
		size_t n;
		struct sg_http1_slice body;
		int ev = sg_http1_feed(&x->p, c->buf + off, len - off, &n, &body);
		int r;

		off += n;
		if (ev < 0) {
			xfer_seterr(x, "malformed response: %s", x->p.err ? x->p.err : strerror(-ev));
			x->c = NULL;
			c->x = NULL;
			conn_destroy(c);
			/* EOF inside a message is a truncation (worth retrying); the rest is a
			 * broken server, and asking again would not help. */
			xfer_attempt_failed(x, ev, ev == -EPIPE);
			return;
		}
		switch (ev) {
		case SG_HTTP1_NEED_MORE:
			conn_read(c);
			return;
		case SG_HTTP1_HEAD:
			r = xfer_head(x);
			if (r < 0) {
				if (!x->err[0])
					xfer_seterr(x, "%s", strerror(-r));
				xfer_finish(x, r);
				return;
			}
			if (x->discard && x->p.framing == SG_HTTP1_BODY_EOF) {
				xfer_response_done(x, false);
				return;
			}
			break;
		case SG_HTTP1_BODY:
			if (x->interim)
				break;
			if (x->discard) {
				size_t k = EBODY_MAX - x->ebody_len;
				if (k > body.len)
					k = body.len;
				memcpy(x->ebody + x->ebody_len, body.data, k);
				x->ebody_len += k;
				x->discarded += body.len;
				if (x->discarded > DISCARD_MAX) {
					xfer_response_done(x, false);
					return;
				}
				break;
			}
			r = x->ops->body ? x->ops->body(x, body.data, body.len)
					 : buffer_body(x, body.data, body.len);
			if (r < 0) {
				if (!x->err[0])
					xfer_seterr(x, "%s", strerror(-r));
				xfer_finish(x, r);
				return;
			}
			if (r == 1) {
				/* The sink has what it needs (a range out of a whole-blob 200):
				 * the rest is not worth reading, so drop the connection. */
				xfer_response_done(x, false);
				return;
			}
			break;
		case SG_HTTP1_DONE:
			if (x->interim) {
				x->interim = false;
				sg_http1_parser_init(&x->p, x->head_method);
				break;
			}
			/* We never pipeline, so bytes after the response mean a confused server. */
			xfer_response_done(x, x->p.keep_alive && off == len);
			return;
		}
	}
}

/* Starts (or restarts) an attempt. */
static void xfer_go(struct xfer *x)
{
	if (x->finishing)
		return;
	if (x->reg->closing) {
		xfer_finish(x, -ECANCELED);
		return;
	}
	x->act = XA_NONE;
	x->discard = false;
	x->interim = false;
	x->status = 0;
	x->err[0] = '\0';
	x->blen = 0;
	if (x->ops->reset)
		x->ops->reset(x);
	/* Requests that would meet a token request in flight wait for it instead of collecting
	 * a 401 of their own. */
	if (x->ep && x->repo && !x->extra_auth && xfer_may_send_credentials(x)) {
		struct token *t = token_find(x->reg, x->ep->host->authority, x->repo, false);
		if (t && t->fetch && !t->value) {
			sg_list_insert_tail(&t->waiters, &x->wait_link);
			return;
		}
	}
	host_acquire(x->host, x);
}

static bool plain_ok(struct sg_registry *reg, const char *authority)
{
	return sg_registry_plain_allowed((const char *const *)reg->insecure, reg->ninsecure,
					 reg->cfg.plain_http_localhost, authority);
}

static void xfer_do_redirect(struct xfer *x)
{
	struct sg_registry *reg = x->reg;
	struct sg_url base = { .tls = x->host->tls, .port = x->host->port }, u;
	char auth[SG_URL_HOST_MAX + 8];
	struct host *h;
	int r;

	if (++x->redirects > reg->cfg.max_redirects) {
		xfer_seterr(x, "too many redirects (more than %u)", reg->cfg.max_redirects);
		xfer_finish(x, -ELOOP);
		return;
	}
	sfmt(base.host, sizeof(base.host), "%s", x->host->hostname);
	sfmt(base.target, sizeof(base.target), "%s", x->target);
	r = sg_url_parse(x->location, strlen(x->location), &base, &u);
	if (r < 0) {
		xfer_seterr(x, "bad redirect Location \"%.200s\"", x->location);
		xfer_finish(x, -EBADMSG);
		return;
	}
	sg_url_authority(&u, auth, sizeof(auth));
	if (!u.tls && x->host->tls && !plain_ok(reg, auth)) {
		xfer_seterr(x, "redirect from HTTPS to plain HTTP (%s) refused", auth);
		xfer_finish(x, -EPERM);
		return;
	}
	/* The registry's TLS profile (CA, skip_verify) belongs to the registry; elsewhere the
	 * default trust applies. */
	if (u.tls == x->host->tls && u.port == x->host->port &&
	    !strcasecmp(u.host, x->host->hostname))
		h = x->host;
	else
		h = host_get(reg, u.tls, u.host, u.port, false, NULL);
	if (!h) {
		xfer_seterr(x, "redirect: too many hosts");
		xfer_finish(x, -ENOMEM);
		return;
	}
	if (!host_same_origin(h, x->orig_host))
		x->left_origin = true;
	free(x->target);
	x->target = strdup(u.target);
	if (!x->target) {
		xfer_finish(x, -ENOMEM);
		return;
	}
	x->host = h;
	xfer_go(x);
}

/* ------------------------------------------------------------------------------------------ */
/* Tokens */

static struct token *token_find(struct sg_registry *reg, const char *host, const char *repo,
				bool create)
{
	char key[sizeof(((struct token *)0)->key)];
	struct sg_list *pos, *tmp;
	struct token *t;

	if (snprintf(key, sizeof(key), "%s %s", host, repo) >= (int)sizeof(key))
		return NULL;
	sg_list_for_each_safe(pos, tmp, &reg->tokens) {
		t = sg_container_of(pos, struct token, link);
		if (!strcmp(t->key, key))
			return t;
	}
	if (!create)
		return NULL;
	if (reg->ntokens >= TOKENS_MAX) {
		/* Drop the oldest entry that nobody waits on. */
		sg_list_for_each_safe(pos, tmp, &reg->tokens) {
			t = sg_container_of(pos, struct token, link);
			if (!t->fetch && sg_list_empty(&t->waiters)) {
				sg_list_unlink(&t->link);
				free(t->value);
				free(t);
				reg->ntokens--;
				break;
			}
		}
		if (reg->ntokens >= TOKENS_MAX)
			return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	strcpy(t->key, key);
	sg_list_init(&t->waiters);
	sg_list_insert_tail(&reg->tokens, &t->link);
	reg->ntokens++;
	return t;
}

static void token_wake(struct token *t, int res, const char *err)
{
	while (!sg_list_empty(&t->waiters)) {
		struct xfer *w = sg_container_of(sg_list_pop(&t->waiters), struct xfer, wait_link);
		if (res < 0) {
			xfer_seterr(w, "%s", err);
			xfer_finish(w, res);
		} else {
			xfer_go(w);
		}
	}
}

static void token_complete(struct xfer *tx, int res)
{
	struct token *t = tx->owner;
	struct sg_auth_token tok = { 0 };
	char err[SG_REGISTRY_ERR_MAX];
	int r;

	t->fetch = NULL;
	if (res < 0) {
		sfmt(err, sizeof(err), "token request failed: %s", tx->err);
		token_wake(t, res == -ECANCELED ? res : -EACCES, err);
		return;
	}
	r = sg_auth_parse_token((const char *)tx->bbuf, tx->blen, &tok);
	if (r < 0) {
		sfmt(err, sizeof(err), "token response from %s is not usable: %s",
			 tx->host->authority, strerror(-r));
		token_wake(t, -EACCES, err);
		return;
	}
	free(t->value);
	t->value = malloc(strlen(tok.token) + 8);
	if (!t->value) {
		sg_auth_token_done(&tok);
		token_wake(t, -ENOMEM, "out of memory");
		return;
	}
	sprintf(t->value, "Bearer %s", tok.token);
	t->expiry = sg_auth_token_expiry(&tok, time(NULL));
	/* A token already expired by the clock's account is still good for the requests that
	 * waited for it: they go out now. */
	if (t->expiry <= time(NULL))
		t->expiry = time(NULL) + 1;
	sg_auth_token_done(&tok);
	token_wake(t, 0, NULL);
}

static const struct xfer_ops token_ops = {
	.complete = token_complete,
};

/* Starts the token request for t on behalf of x (x joins the waiters first). */
static int token_fetch(struct token *t, struct xfer *x)
{
	struct sg_registry *reg = x->reg;
	char scope[SG_REF_NAME_MAX + 32];
	char *url;
	struct sg_url u;
	char auth[SG_URL_HOST_MAX + 8];
	struct host *h;
	struct xfer *tx;
	int r;

	url = malloc(SG_URL_TARGET_MAX);
	if (!url)
		return -ENOMEM;
	sfmt(scope, sizeof(scope), "repository:%s:pull", x->repo);
	r = sg_auth_token_url(&x->chal, scope, url, SG_URL_TARGET_MAX);
	if (r < 0) {
		xfer_seterr(x, "unusable token realm \"%.200s\"", x->chal.realm);
		free(url);
		return -EACCES;
	}
	r = sg_url_parse(url, (size_t)r, NULL, &u);
	free(url);
	if (r < 0) {
		xfer_seterr(x, "unusable token realm \"%.200s\"", x->chal.realm);
		return -EACCES;
	}
	sg_url_authority(&u, auth, sizeof(auth));
	if (!u.tls && x->ep->host->tls && !plain_ok(reg, auth)) {
		xfer_seterr(x, "token realm %s is plain HTTP; refused for an HTTPS registry", auth);
		return -EPERM;
	}
	h = host_get(reg, u.tls, u.host, u.port, false, NULL);
	if (!h)
		return -ENOMEM;
	tx = xfer_new(reg, &token_ops, t, h, u.target);
	if (!tx)
		return -ENOMEM;
	tx->bmax = SG_AUTH_TOKEN_MAX + 4096;
	tx->accept = "application/json";
	{
		/* xfer_do_auth had the helper (if any) answer before calling us. */
		struct sg_docker_cred cred;
		if (reg_cred(reg, x->ep->host->authority, &cred, NULL) == 0) {
			char hdr[1024];
			if (cred.username && cred.password &&
			    sg_auth_basic_header(cred.username, cred.password, hdr, sizeof(hdr)) > 0)
				tx->extra_auth = strdup(hdr);
		}
		sg_docker_cred_done(&cred);
	}
	t->chal = x->chal;
	t->fetch = tx;
	xfer_go(tx);
	return 0;
}

static void xfer_auth_answer(struct xfer *x);

static void on_cred_ready(struct sg_op *op)
{
	struct xfer *x = sg_container_of(op, struct xfer, op);

	x->cred_waiting = false;
	if (xfer_settle(x))
		return;
	xfer_auth_answer(x);
}

static void xfer_do_auth(struct xfer *x)
{
	struct sg_docker_cred cred;
	int r;

	if (++x->auth_round > 2) {
		status_error(x, -EACCES);
		sfmt(x->err + strlen(x->err), sizeof(x->err) - strlen(x->err),
			 " (authentication failed)");
		xfer_finish(x, -EACCES);
		return;
	}
	/* A credential helper runs as a child process: wait for its answer (cached for the
	 * next requests) before answering the challenge. */
	r = reg_cred(x->reg, x->ep->host->authority, &cred, NULL);
	sg_docker_cred_done(&cred);
	if (r == -EAGAIN &&
	    reg_cred_wait(x->reg, x->ep->host->authority, &x->op, on_cred_ready) == 0) {
		x->cred_waiting = true;
		return;
	}
	xfer_auth_answer(x);
}

/* Answers a 401 once the credentials (if any) are known. */
static void xfer_auth_answer(struct xfer *x)
{
	struct sg_registry *reg = x->reg;
	struct host *h = x->ep->host;
	int r;

	if (x->finishing)
		return;
	if (x->chal.scheme == SG_AUTH_BEARER && x->repo) {
		struct token *t = token_find(reg, h->authority, x->repo, true);
		if (!t) {
			xfer_finish(x, -ENOMEM);
			return;
		}
		if (t->value && x->sent_token && !strcmp(t->value, x->sent_token)) {
			free(t->value);
			t->value = NULL;
		}
		if (t->value && time(NULL) < t->expiry) {
			xfer_go(x);     /* another request refreshed it meanwhile */
			return;
		}
		sg_list_insert_tail(&t->waiters, &x->wait_link);
		if (!t->fetch) {
			r = token_fetch(t, x);
			if (r < 0) {
				char err[SG_REGISTRY_ERR_MAX];
				sfmt(err, sizeof(err), "%s", x->err[0] ? x->err : strerror(-r));
				token_wake(t, r, err);
			}
		}
		return;
	}
	if (x->chal.scheme == SG_AUTH_BASIC) {
		struct sg_docker_cred cred;
		struct sg_error herr = { 0 };
		bool have = reg_cred(reg, h->authority, &cred, &herr) == 0;
		bool usable = have && cred.username && cred.password;
		bool idtoken = have && cred.identity_token;
		sg_docker_cred_done(&cred);
		status_error(x, -EACCES);
		if (!usable) {
			size_t l = strlen(x->err);
			if (herr.msg[0])
				sfmt(x->err + l, sizeof(x->err) - l, " (no credentials for %s: %s)",
				     h->authority, herr.msg);
			else if (idtoken)
				sfmt(x->err + l, sizeof(x->err) - l, " (the credentials for %s are an "
				     "identity token, which is not supported)", h->authority);
			else
				sfmt(x->err + l, sizeof(x->err) - l,
				     " (no credentials for %s in the docker config)", h->authority);
			xfer_finish(x, -EACCES);
			return;
		}
		if (x->sent_basic) {
			sfmt(x->err + strlen(x->err), sizeof(x->err) - strlen(x->err),
				 " (credentials for %s rejected)", h->authority);
			xfer_finish(x, -EACCES);
			return;
		}
		h->basic = true;
		xfer_go(x);
		return;
	}
	status_error(x, -EACCES);
	xfer_finish(x, -EACCES);
}

/* ------------------------------------------------------------------------------------------ */
/* Endpoints: hosts.toml */

static int read_small_file(const char *path, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	*ret = buf;
	*ret_len = got;
	return 0;
}

static int ep_setup(struct sg_registry *reg, struct nsconf *ns, const struct sg_hosts_entry *e,
		    bool mirror)
{
	struct endpoint *ep = &ns->eps[ns->neps];
	struct sg_tls_trust *trust = NULL;
	bool tls = !strcmp(e->scheme, "https");
	char hostname[SG_URL_HOST_MAX];
	uint16_t port;
	int r;

	/* The upstream of a host the configuration allows plain HTTP for is spoken to in plain
	 * HTTP ("insecure" means exactly that here). */
	if (!mirror && tls && plain_ok(reg, e->host))
		tls = false;
	r = split_authority(e->host, tls, hostname, sizeof(hostname), &port);
	if (r < 0) {
		sfmt(ns->errmsg, sizeof(ns->errmsg), "hosts.toml: bad host \"%s\"", e->host);
		return r;
	}
	if (tls && e->nca) {
		trust = &ns->trusts[ns->neps];
		if (!reg->cfg.no_system_ca)
			(void)sg_tls_trust_add_file(trust, SG_TLS_SYSTEM_CA_BUNDLE);
		for (size_t i = 0; i < reg->cfg.nca_files; i++)
			(void)sg_tls_trust_add_file(trust, reg->cfg.ca_files[i]);
		for (size_t i = 0; i < e->nca; i++) {
			r = sg_tls_trust_add_file(trust, e->ca[i]);
			if (r < 0) {
				sfmt(ns->errmsg, sizeof(ns->errmsg), "hosts.toml: CA file %s: %s",
					 e->ca[i], strerror(-r));
				return r;
			}
		}
	}
	ep->host = host_get(reg, tls, hostname, port, e->skip_verify, trust);
	if (!ep->host) {
		sfmt(ns->errmsg, sizeof(ns->errmsg), "too many registry hosts");
		return -ENOMEM;
	}
	ep->host->pins++;
	sfmt(ep->prefix, sizeof(ep->prefix), "%s", e->path ? e->path : "/v2");
	ep->mirror = mirror;
	ep->caps = e->caps;
	ep->entry = e;
	ns->neps++;
	return 0;
}

static struct nsconf *ns_get(struct sg_registry *reg, const char *domain)
{
	struct sg_list *pos, *tmp;
	struct nsconf *ns;
	char *text = NULL, path[4096] = "", dir[4096] = "";
	size_t len = 0;
	int r;

	sg_list_for_each_safe(pos, tmp, &reg->nsconfs) {
		ns = sg_container_of(pos, struct nsconf, link);
		if (!strcmp(ns->ns, domain))
			return ns;
	}
	if (reg->nns >= NSCONF_MAX)
		return NULL;
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return NULL;
	sfmt(ns->ns, sizeof(ns->ns), "%s", domain);
	sg_list_insert_tail(&reg->nsconfs, &ns->link);
	reg->nns++;

	r = -ENOENT;
	if (reg->hosts_dir && reg->hosts_dir[0]) {
		sfmt(dir, sizeof(dir), "%s/%s", reg->hosts_dir, domain);
		sfmt(path, sizeof(path), "%s/hosts.toml", dir);
		r = read_small_file(path, &text, &len);
		if (r < 0 && r != -ENOENT && r != -ENOTDIR) {
			sfmt(ns->errmsg, sizeof(ns->errmsg), "%s: %s", path, strerror(-r));
			ns->err = r;
			return ns;
		}
	}
	if (r == 0) {
		struct sg_error herr = { 0 };
		r = sg_hosts_toml_parse(text, len, domain, dir, &ns->cfg, &herr);
		free(text);
		if (r < 0) {
			sfmt(ns->errmsg, sizeof(ns->errmsg), "%s:%u: %s", path, (unsigned)herr.code,
				 herr.msg[0] ? herr.msg : strerror(-r));
			ns->err = r;
			return ns;
		}
	} else {
		r = sg_hosts_default(domain, &ns->cfg);
		if (r < 0) {
			sfmt(ns->errmsg, sizeof(ns->errmsg), "registry %s: %s", domain, strerror(-r));
			ns->err = r;
			return ns;
		}
	}
	for (size_t i = 0; i < ns->cfg->nmirrors && r == 0; i++)
		r = ep_setup(reg, ns, &ns->cfg->mirrors[i], true);
	if (r == 0)
		r = ep_setup(reg, ns, &ns->cfg->upstream, false);
	if (r < 0)
		ns->err = r;
	return ns;
}

static void ns_free(struct nsconf *ns)
{
	for (size_t i = 0; i <= SG_HOSTS_MAX; i++)
		sg_tls_trust_done(&ns->trusts[i]);
	sg_hosts_config_free(ns->cfg);
	free(ns);
}

/* Whether endpoint i serves a request needing `cap`; the upstream always does. */
static bool ep_usable(const struct nsconf *ns, size_t i, unsigned cap)
{
	return !ns->eps[i].mirror || (ns->eps[i].caps & cap);
}

/* The request target on an endpoint: its prefix + the part of a /v2 path after "/v2". */
static int ep_target(const struct endpoint *ep, const char *ns, const char *v2path, char *buf,
		     size_t cap)
{
	int n;

	if (strncmp(v2path, "/v2", 3) != 0)
		return -EINVAL;
	n = snprintf(buf, cap, "%s%s", ep->prefix, v2path + 3);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	if (ep->mirror) {
		/* containerd tells mirrors which registry is meant (Spegel, Dragonfly, ...). */
		char esc[SG_REF_NAME_MAX * 3 + 1];
		int e = sg_auth_query_escape(ns, strlen(ns), esc, sizeof(esc));
		if (e < 0)
			return e;
		n += snprintf(buf + n, cap - (size_t)n, "?ns=%s", esc);
		if ((size_t)n >= cap)
			return -ENAMETOOLONG;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Registry */

static void reg_really_free(struct sg_registry *reg)
{
	SG_FREE_CHECK(!sg_list_empty(&reg->xfers), "registry client (an exchange is alive)");
	while (!sg_list_empty(&reg->tokens)) {
		struct token *t = sg_container_of(sg_list_pop(&reg->tokens), struct token, link);
		free(t->value);
		free(t);
	}
	while (!sg_list_empty(&reg->nsconfs))
		ns_free(sg_container_of(sg_list_pop(&reg->nsconfs), struct nsconf, link));
	while (!sg_list_empty(&reg->hosts))
		free(sg_container_of(sg_list_pop(&reg->hosts), struct host, link));
	for (size_t i = 0; i < reg->ninsecure; i++)
		free(reg->insecure[i]);
	free(reg->insecure);
	free(reg->hosts_dir);
	sg_tls_trust_done(&reg->trust);
	sg_credhelper_free(reg->creds);
	sg_docker_config_free(reg->docker);
	free(reg);
}

static void reg_unref(struct sg_registry *reg)
{
	if (--reg->refs == 0)
		reg_really_free(reg);
}

int sg_registry_new(struct sg_loop *loop, const struct sg_registry_config *config,
		    struct sg_registry **ret, char *reterr, size_t errcap)
{
	struct sg_registry_config def = { 0 };
	struct sg_registry *reg;
	char pathbuf[4096];
	const char *dc;
	int r;

	if (!loop || !ret)
		return -EINVAL;
	*ret = NULL;
	if (!config)
		config = &def;
	if (reterr && errcap)
		reterr[0] = '\0';
	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	reg->loop = loop;
	reg->refs = 1;
	reg->cfg = *config;
	sg_list_init(&reg->hosts);
	sg_list_init(&reg->nsconfs);
	sg_list_init(&reg->tokens);
	sg_list_init(&reg->xfers);
	reg->rnd = sg_now_ns() | 1;
	if (!reg->cfg.connect_timeout_ns)
		reg->cfg.connect_timeout_ns = DEF_CONNECT_NS;
	if (!reg->cfg.first_byte_timeout_ns)
		reg->cfg.first_byte_timeout_ns = DEF_FIRST_BYTE_NS;
	if (!reg->cfg.idle_timeout_ns)
		reg->cfg.idle_timeout_ns = DEF_IDLE_NS;
	if (!reg->cfg.attempts)
		reg->cfg.attempts = DEF_ATTEMPTS;
	if (reg->cfg.attempts > 20)
		reg->cfg.attempts = 20;
	if (!reg->cfg.retry_base_ns)
		reg->cfg.retry_base_ns = DEF_RETRY_BASE_NS;
	if (!reg->cfg.retry_max_ns)
		reg->cfg.retry_max_ns = DEF_RETRY_MAX_NS;
	if (!reg->cfg.max_conns_per_host)
		reg->cfg.max_conns_per_host = DEF_MAX_CONNS;
	if (!reg->cfg.max_redirects)
		reg->cfg.max_redirects = DEF_MAX_REDIRECTS;
	sfmt(reg->user_agent, sizeof(reg->user_agent), "%s",
		 config->user_agent ? config->user_agent : "stargzd/" STARGZD_VERSION);
	/* Pointers into the caller's configuration are not kept. */
	reg->cfg.user_agent = NULL;
	reg->cfg.insecure_hosts = NULL;
	reg->cfg.hosts_dir = NULL;
	reg->cfg.docker_config = NULL;

	r = -ENOMEM;
	reg->hosts_dir = strdup(config->hosts_dir ? config->hosts_dir : SG_REGISTRY_HOSTS_DIR);
	if (!reg->hosts_dir)
		goto fail;
	if (config->ninsecure_hosts) {
		reg->insecure = calloc(config->ninsecure_hosts, sizeof(char *));
		if (!reg->insecure)
			goto fail;
		for (size_t i = 0; i < config->ninsecure_hosts; i++) {
			if (!config->insecure_hosts[i])
				continue;
			reg->insecure[reg->ninsecure] = strdup(config->insecure_hosts[i]);
			if (!reg->insecure[reg->ninsecure])
				goto fail;
			reg->ninsecure++;
		}
	}
	if (!config->no_system_ca) {
		r = sg_tls_trust_add_file(&reg->trust, SG_TLS_SYSTEM_CA_BUNDLE);
		/* A system without CA certificates can still talk to hosts with their own CAs. */
		if (r < 0 && r != -ENOENT) {
			sfmt(reterr, errcap, "%s: %s", SG_TLS_SYSTEM_CA_BUNDLE, strerror(-r));
			goto fail;
		}
	}
	for (size_t i = 0; i < config->nca_files; i++) {
		r = sg_tls_trust_add_file(&reg->trust, config->ca_files[i]);
		if (r < 0) {
			sfmt(reterr, errcap, "CA file %s: %s", config->ca_files[i], strerror(-r));
			goto fail;
		}
	}
	/* ca_files stay referenced for per-mirror trust stores: copy is not needed since the
	 * stores are built from the files at first use; keep none of the caller's pointers. */
	reg->cfg.ca_files = NULL;
	reg->cfg.nca_files = 0;

	dc = config->docker_config;
	if (!dc) {
		const char *d = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
		if (d && *d)
			sfmt(pathbuf, sizeof(pathbuf), "%s/config.json", d);
		else if (home && *home)
			sfmt(pathbuf, sizeof(pathbuf), "%s/.docker/config.json", home);
		else
			pathbuf[0] = '\0';
		dc = pathbuf;
	}
	if (dc[0]) {
		char *text = NULL;
		size_t len = 0;
		struct sg_error perr = { 0 };
		r = read_small_file(dc, &text, &len);
		if (r == 0) {
			r = sg_docker_config_parse(text, len, &reg->docker, &perr);
			free(text);
			if (r < 0) {
				sfmt(reterr, errcap, "%s: %s", dc, perr.msg[0] ? perr.msg : strerror(-r));
				goto fail;
			}
		} else if (r != -ENOENT || config->docker_config) {
			sfmt(reterr, errcap, "%s: %s", dc, strerror(-r));
			goto fail;
		}
	}
	r = sg_credhelper_new(loop, config->cred_helper_timeout_ns, &reg->creds);
	if (r < 0)
		goto fail;
	*ret = reg;
	return 0;
fail:
	if (r == -ENOMEM && reterr && errcap && !reterr[0])
		sfmt(reterr, errcap, "out of memory");
	reg_really_free(reg);
	return r;
}

void sg_registry_shutdown(struct sg_registry *reg)
{
	struct sg_list *pos, *tmp;

	if (!reg || reg->closing)
		return;
	reg->closing = true;
	sg_list_for_each_safe(pos, tmp, &reg->xfers) {
		struct xfer *x = sg_container_of(pos, struct xfer, link);
		if (!x->finishing) {
			xfer_seterr(x, "registry client shut down");
			xfer_finish(x, -ECANCELED);
		}
	}
	sg_list_for_each_safe(pos, tmp, &reg->hosts) {
		struct host *h = sg_container_of(pos, struct host, link);
		while (!sg_list_empty(&h->idle))
			conn_destroy(sg_container_of(h->idle.next, struct rconn, link));
	}
	/* Helpers still running are killed now; the credential cache frees itself once their
	 * ops have completed (it owns them, not us). */
	sg_credhelper_free(reg->creds);
	reg->creds = NULL;
}

/* Everything but the caller's own reference and the idle pooled connections (no op in
 * flight; sg_registry_free closes them) keeps the registry alive. */
static unsigned reg_live_refs(const struct sg_registry *reg)
{
	unsigned idle = 0;

	for (const struct sg_list *p = reg->hosts.next; p != &reg->hosts; p = p->next) {
		const struct host *h = sg_container_of(p, struct host, link);
		for (const struct sg_list *c = h->idle.next; c != &h->idle; c = c->next)
			idle++;
	}
	return reg->refs - 1 - idle;
}

bool sg_registry_busy(const struct sg_registry *reg)
{
	return reg && reg_live_refs(reg) > 0;
}

void sg_registry_free(struct sg_registry *reg)
{
	if (!reg)
		return;
	/* An exchange, a connection closing, a blob source or a manifest fetch still points at
	 * reg: freeing now would be a use-after-free later (sg_registry_shutdown, then run or
	 * drain the loop, and destroy the blob sources first). */
	SG_FREE_CHECK(reg_live_refs(reg) > 0, "registry client");
	reg->closing = true;
	for (struct sg_list *p = reg->hosts.next; p != &reg->hosts; p = p->next) {
		struct host *h = sg_container_of(p, struct host, link);
		while (!sg_list_empty(&h->idle))
			conn_destroy(sg_container_of(h->idle.next, struct rconn, link));
	}
	sg_credhelper_free(reg->creds);
	reg->creds = NULL;
	reg_unref(reg);
}

int sg_registry_host_stats(const struct sg_registry *reg, const char *host,
			   struct sg_registry_host_stats *ret)
{
	const struct sg_list *pos;
	bool found = false;

	memset(ret, 0, sizeof(*ret));
	for (pos = reg->hosts.next; pos != &reg->hosts; pos = pos->next) {
		const struct host *h = sg_container_of(pos, struct host, link);
		char a1[SG_URL_HOST_MAX + 8];
		bool v6 = strchr(h->hostname, ':') != NULL;
		sfmt(a1, sizeof(a1), v6 ? "[%s]:%u" : "%s:%u", h->hostname, (unsigned)h->port);
		if (strcasecmp(a1, host) && strcasecmp(h->authority, host))
			continue;
		found = true;
		if (h->st.multirange != SG_MULTIRANGE_UNKNOWN)
			ret->multirange = h->st.multirange;
		ret->ignores_ranges |= h->st.ignores_ranges;
		ret->conns_opened += h->st.conns_opened;
		if (h->st.conns_max_seen > ret->conns_max_seen)
			ret->conns_max_seen = h->st.conns_max_seen;
		ret->requests += h->st.requests;
		ret->retries += h->st.retries;
		ret->reused += h->st.reused;
	}
	return found ? 0 : -ENOENT;
}

/* ------------------------------------------------------------------------------------------ */
/* Blob sources */

struct job;

struct blob {
	struct sg_range_source base;          /* first: the vtable pointer leads */
	struct sg_registry *reg;
	struct nsconf *ns;
	size_t ep;                            /* the endpoint that answered the HEAD */
	char repo[SG_REF_NAME_MAX + 1];
	char digest[SG_REF_DIGEST_MAX + 1];
	char v2path[SG_REF_NAME_MAX * 2 + 64];
	struct sg_list jobs;
	char err[SG_REGISTRY_ERR_MAX];
	/* opening */
	sg_registry_blob_cb open_cb;
	void *open_ud;
	struct sg_op open_op;
	bool size_known;
	bool opened;
	int open_res;
	char open_err[SG_REGISTRY_ERR_MAX];
};

/* One request of a job, covering some of its ranges. */
struct preq {
	struct job *j;
	struct xfer *x;
	size_t idx[SG_REGISTRY_RANGES_MAX];
	size_t n;
	bool multipart, whole, done;
	uint64_t pos, end;
	struct sg_multipart mp;
};

struct job {
	struct sg_list link;                  /* blob->jobs */
	struct blob *b;
	struct sg_op *op;
	sg_op_cb cb;
	struct sg_registry_range r[SG_REGISTRY_RANGES_MAX];
	uint64_t filled[SG_REGISTRY_RANGES_MAX];
	size_t n;
	struct preq *pr[SG_REGISTRY_RANGES_MAX + 1];
	size_t npr;
	unsigned pending;
	int res;
};

static const struct sg_range_source_ops blob_ops;

bool sg_registry_is_source(const struct sg_range_source *src)
{
	return src && src->ops == &blob_ops;
}

const char *sg_registry_source_error(const struct sg_range_source *src)
{
	if (!sg_registry_is_source(src))
		return "";
	return ((const struct blob *)src)->err;
}

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->npr; i++) {
		if (j->pr[i]) {
			xfer_abort(j->pr[i]->x);
			free(j->pr[i]);
		}
	}
	sg_list_unlink(&j->link);
	free(j);
}

static void job_complete(struct job *j, int res)
{
	struct sg_loop *loop = j->b->base.loop;
	struct sg_op *op = j->op;
	sg_op_cb cb = j->cb;

	job_free(j);
	/* Cannot be lost: the caller's op was idle when the read was accepted and is the job's
	 * until this post (the caller must not resubmit it meanwhile), and posts are accepted
	 * while the loop drains. */
	(void)sg_post(loop, op, res, cb);
}

/* Copies a slice at blob offset `off` into every range of the request it overlaps. */
static void preq_copy(struct preq *pr, uint64_t off, const uint8_t *d, size_t n)
{
	struct job *j = pr->j;

	for (size_t k = 0; k < pr->n; k++) {
		size_t i = pr->idx[k];
		uint64_t ro = j->r[i].offset, re = ro + j->r[i].len;
		uint64_t s = off > ro ? off : ro, e = off + n < re ? off + n : re;
		if (s >= e)
			continue;
		memcpy((uint8_t *)j->r[i].buf + (s - ro), d + (s - off), e - s);
		/* Coverage counts only contiguous progress from the range start, so bytes
		 * arriving out of order are never taken for a complete range. */
		if (s <= ro + j->filled[i] && e - ro > j->filled[i])
			j->filled[i] = e - ro;
	}
}

static bool preq_complete(const struct preq *pr)
{
	for (size_t k = 0; k < pr->n; k++)
		if (pr->j->filled[pr->idx[k]] < pr->j->r[pr->idx[k]].len)
			return false;
	return true;
}

static void preq_reset(struct xfer *x)
{
	struct preq *pr = x->owner;

	for (size_t k = 0; k < pr->n; k++)
		pr->j->filled[pr->idx[k]] = 0;
	pr->multipart = pr->whole = false;
	pr->pos = pr->end = 0;
}

static struct host *blob_host(struct blob *b)
{
	return b->ns->eps[b->ep].host;
}

static int preq_head(struct xfer *x)
{
	struct preq *pr = x->owner;
	struct blob *b = pr->j->b;
	const struct sg_http1_parser *p = &x->p;
	const char *v;
	size_t vlen;

	if (p->status == 200) {
		/* The server ignored Range: this is the whole blob. */
		if (p->framing == SG_HTTP1_BODY_LENGTH && p->content_length != b->base.size) {
			xfer_seterr(x, "200 with %llu bytes for a blob of %llu",
				    (unsigned long long)p->content_length,
				    (unsigned long long)b->base.size);
			return -EIO;
		}
		pr->whole = true;
		pr->pos = 0;
		pr->end = 0;
		for (size_t k = 0; k < pr->n; k++) {
			const struct sg_registry_range *r = &pr->j->r[pr->idx[k]];
			if (r->offset + r->len > pr->end)
				pr->end = r->offset + r->len;
		}
		if (pr->n > 1)
			blob_host(b)->st.multirange = SG_MULTIRANGE_WHOLE;
		else
			blob_host(b)->st.ignores_ranges = true;
		return 0;
	}
	if (p->status != 206) {
		xfer_seterr(x, "unexpected status %d for a range request", p->status);
		return -EIO;
	}
	v = sg_http1_header(p, "content-type", &vlen);
	if (v) {
		char boundary[SG_MULTIPART_BOUNDARY_MAX + 1];
		int bl = sg_multipart_boundary(v, vlen, boundary, sizeof(boundary));
		if (bl > 0) {
			if (sg_multipart_init(&pr->mp, boundary, (size_t)bl) < 0) {
				xfer_seterr(x, "bad multipart boundary");
				return -EIO;
			}
			pr->multipart = true;
			return 0;
		}
		if (bl == -EBADMSG) {
			xfer_seterr(x, "malformed multipart/byteranges Content-Type");
			return -EIO;
		}
	}
	{
		struct sg_http1_range cr;
		v = sg_http1_header(p, "content-range", &vlen);
		if (!v || sg_http1_parse_content_range(v, vlen, &cr) < 0 || cr.unsatisfied) {
			xfer_seterr(x, "206 without a usable Content-Range");
			return -EIO;
		}
		if (cr.total != SG_HTTP1_RANGE_UNKNOWN && cr.total != b->base.size) {
			xfer_seterr(x, "Content-Range says the blob has %llu bytes, HEAD said %llu",
				    (unsigned long long)cr.total, (unsigned long long)b->base.size);
			return -EIO;
		}
		if (p->framing == SG_HTTP1_BODY_LENGTH && p->content_length != cr.last - cr.first + 1) {
			xfer_seterr(x, "206 body of %llu bytes for Content-Range %llu-%llu",
				    (unsigned long long)p->content_length,
				    (unsigned long long)cr.first, (unsigned long long)cr.last);
			return -EIO;
		}
		pr->pos = cr.first;
		pr->end = cr.last + 1;
	}
	return 0;
}

static int preq_body(struct xfer *x, const uint8_t *d, size_t n)
{
	struct preq *pr = x->owner;
	struct blob *b = pr->j->b;

	if (pr->multipart) {
		size_t off = 0;
		while (off < n) {
			size_t used;
			struct sg_http1_slice s;
			int ev = sg_multipart_feed(&pr->mp, d + off, n - off, &used, &s);
			off += used;
			if (ev < 0) {
				xfer_seterr(x, "malformed multipart/byteranges body: %s",
					    pr->mp.err ? pr->mp.err : strerror(-ev));
				return -EIO;
			}
			if (ev == SG_MULTIPART_PART && pr->mp.range.total != SG_HTTP1_RANGE_UNKNOWN &&
			    pr->mp.range.total != b->base.size) {
				xfer_seterr(x, "multipart part names a blob of %llu bytes, not %llu",
					    (unsigned long long)pr->mp.range.total,
					    (unsigned long long)b->base.size);
				return -EIO;
			}
			if (ev == SG_MULTIPART_DATA)
				preq_copy(pr, pr->mp.data_offset, s.data, s.len);
			if (ev == SG_MULTIPART_NEED_MORE || ev == SG_MULTIPART_DONE)
				break;
		}
		return 0;
	}
	if (pr->pos + n > pr->end && !pr->whole) {
		xfer_seterr(x, "206 body longer than its Content-Range");
		return -EIO;
	}
	preq_copy(pr, pr->pos, d, n);
	pr->pos += n;
	if (pr->whole && pr->pos >= pr->end)
		return 1;
	return 0;
}

/* Internal: the response was good but left some ranges out (first-range-only servers). */
#define PREQ_INCOMPLETE (-EAGAIN)

static int preq_done(struct xfer *x)
{
	struct preq *pr = x->owner;

	if (pr->multipart && sg_multipart_finish(&pr->mp) != SG_MULTIPART_DONE) {
		xfer_seterr(x, "multipart/byteranges body ended early");
		return -EIO;
	}
	if (pr->whole && pr->pos < pr->end) {
		xfer_seterr(x, "200 body ended at %llu, before %llu", (unsigned long long)pr->pos,
			    (unsigned long long)pr->end);
		return -EIO;
	}
	if (!pr->multipart && !pr->whole && pr->pos != pr->end) {
		xfer_seterr(x, "206 body ended at %llu, Content-Range said %llu",
			    (unsigned long long)pr->pos, (unsigned long long)pr->end);
		return -EIO;
	}
	if (!preq_complete(pr)) {
		if (pr->n > 1)
			return PREQ_INCOMPLETE;
		xfer_seterr(x, "the response does not cover the requested range");
		return -EIO;
	}
	if (pr->n > 1 && pr->multipart &&
	    blob_host(pr->j->b)->st.multirange == SG_MULTIRANGE_UNKNOWN)
		blob_host(pr->j->b)->st.multirange = SG_MULTIRANGE_OK;
	return 0;
}

static void preq_complete_cb(struct xfer *x, int res);

static const struct xfer_ops preq_ops = {
	.reset = preq_reset,
	.head = preq_head,
	.body = preq_body,
	.done = preq_done,
	.complete = preq_complete_cb,
};

/* Starts one request for the given ranges of j.  Returns 0 or a negative errno. */
static int job_spawn(struct job *j, const size_t *idx, size_t n)
{
	struct blob *b = j->b;
	struct endpoint *ep = &b->ns->eps[b->ep];
	char target[SG_URL_TARGET_MAX];
	struct preq *pr;
	int r;

	if (j->npr >= SG_REGISTRY_RANGES_MAX + 1)
		return -E2BIG;
	r = ep_target(ep, b->ns->ns, b->v2path, target, sizeof(target));
	if (r < 0)
		return r;
	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	pr->j = j;
	memcpy(pr->idx, idx, n * sizeof(*idx));
	pr->n = n;
	pr->x = xfer_new(b->reg, &preq_ops, pr, ep->host, target);
	if (!pr->x) {
		free(pr);
		return b->reg->closing ? -ECANCELED : -ENOMEM;
	}
	pr->x->ep = ep;
	pr->x->repo = strdup(b->repo);
	pr->x->single_attempt = false;
	for (size_t k = 0; k < n; k++) {
		const struct sg_registry_range *rr = &j->r[idx[k]];
		pr->x->ranges[k].first = rr->offset;
		pr->x->ranges[k].last = rr->offset + rr->len - 1;
	}
	pr->x->nranges = n;
	j->pr[j->npr++] = pr;
	j->pending++;
	xfer_go(pr->x);
	return 0;
}

/* Fetches each still incomplete range of pr on its own. */
static int job_split(struct job *j, struct preq *pr)
{
	for (size_t k = 0; k < pr->n; k++) {
		size_t i = pr->idx[k];
		if (j->filled[i] >= j->r[i].len)
			continue;
		j->filled[i] = 0;
		int r = job_spawn(j, &i, 1);
		if (r < 0)
			return r;
	}
	return 0;
}

static void preq_complete_cb(struct xfer *x, int res)
{
	struct preq *pr = x->owner;
	struct job *j = pr->j;
	struct host *h = blob_host(j->b);

	pr->x = NULL;     /* freed by the caller of this callback */
	pr->done = true;
	j->pending--;
	if (res == PREQ_INCOMPLETE) {
		h->st.multirange = SG_MULTIRANGE_FIRST_ONLY;
		res = job_split(j, pr);
	} else if (res < 0 && pr->n > 1 && (x->status == 400 || x->status == 416)) {
		h->st.multirange = SG_MULTIRANGE_REFUSED;
		res = job_split(j, pr);
	}
	if (res < 0 && j->res == 0) {
		/* A truncated or inconsistent body is an I/O error for the reader. */
		j->res = (res == -EPIPE || res == -EBADMSG) ? -EIO : res;
		sfmt(j->b->err, sizeof(j->b->err), "%s", x->err[0] ? x->err : strerror(-res));
		/* The other requests of the job are not needed any more. */
		for (size_t i = 0; i < j->npr; i++) {
			if (j->pr[i] && j->pr[i] != pr && !j->pr[i]->done) {
				xfer_abort(j->pr[i]->x);
				j->pr[i]->x = NULL;
				j->pr[i]->done = true;
				j->pending--;
			}
		}
	}
	if (j->pending == 0) {
		int total = 0;
		if (j->res == 0)
			for (size_t i = 0; i < j->n; i++)
				total += (int)j->r[i].len;
		job_complete(j, j->res ? j->res : total);
	}
}

static int blob_read_ranges(struct blob *b, const struct sg_registry_range *ranges, size_t n,
			    struct sg_op *op, sg_op_cb cb)
{
	struct job *j;
	size_t idx[SG_REGISTRY_RANGES_MAX], total = 0, m = 0;
	int r;

	if (!op || !cb || (n && !ranges) || n > SG_REGISTRY_RANGES_MAX)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (b->reg->closing)
		return -ECANCELED;
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].len && !ranges[i].buf)
			return -EINVAL;
		if (ranges[i].offset > b->base.size || ranges[i].len > b->base.size - ranges[i].offset)
			return -ERANGE;
		total += ranges[i].len;
		if (total > INT32_MAX)
			return -EINVAL;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->b = b;
	j->op = op;
	j->cb = cb;
	for (size_t i = 0; i < n; i++) {
		if (!ranges[i].len)
			continue;
		j->r[j->n] = ranges[i];
		idx[m] = j->n;
		j->n++;
		m++;
	}
	sg_list_insert_tail(&b->jobs, &j->link);
	if (m == 0) {
		job_complete(j, 0);
		return 0;
	}
	{
		enum sg_registry_multirange mr = blob_host(b)->st.multirange;
		if (m == 1 || mr == SG_MULTIRANGE_UNKNOWN || mr == SG_MULTIRANGE_OK) {
			r = job_spawn(j, idx, m);
		} else {
			r = 0;
			for (size_t k = 0; k < m && r == 0; k++)
				r = job_spawn(j, &idx[k], 1);
		}
	}
	if (r < 0) {
		if (j->pending == 0) {
			/* Nothing is in flight: refuse synchronously, no callback. */
			sg_list_unlink(&j->link);
			for (size_t i = 0; i < j->npr; i++)
				free(j->pr[i]);
			free(j);
			return r;
		}
		/* Some requests are out: let them finish and report the error then. */
		j->res = r;
	}
	return 0;
}

static int blob_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
		     struct sg_op *op, sg_op_cb cb)
{
	struct sg_registry_range r = { .offset = offset, .len = len, .buf = buf };

	return blob_read_ranges((struct blob *)src, &r, 1, op, cb);
}

int sg_registry_read_ranges(struct sg_range_source *src, const struct sg_registry_range *ranges,
			    size_t n, struct sg_op *op, sg_op_cb cb)
{
	if (!sg_registry_is_source(src))
		return -EINVAL;
	return blob_read_ranges((struct blob *)src, ranges, n, op, cb);
}

static int blob_cancel(struct sg_range_source *src, struct sg_op *op)
{
	struct blob *b = (struct blob *)src;
	struct sg_list *pos, *tmp;

	sg_list_for_each_safe(pos, tmp, &b->jobs) {
		struct job *j = sg_container_of(pos, struct job, link);
		if (j->op == op) {
			job_complete(j, -ECANCELED);
			return 0;
		}
	}
	return -EALREADY;
}

static void blob_free(struct blob *b)
{
	struct sg_registry *reg = b->reg;

	SG_FREE_CHECK(!sg_list_empty(&b->jobs) || sg_op_busy(&b->open_op), "registry blob source");
	free(b);
	reg_unref(reg);
}

static void blob_destroy(struct sg_range_source *src)
{
	struct blob *b = (struct blob *)src;

	/* Every read still in flight completes once, with -ECANCELED; the requests are
	 * detached at once, so no byte lands in a caller's buffer after this returns. */
	while (!sg_list_empty(&b->jobs))
		job_complete(sg_container_of(b->jobs.next, struct job, link), -ECANCELED);
	blob_free(b);
}

static const struct sg_range_source_ops blob_ops = {
	.read = blob_read,
	.cancel = blob_cancel,
	.destroy = blob_destroy,
};

/* ---- opening: HEAD for the size ---- */

static void open_next(struct blob *b);

static void on_open_posted(struct sg_op *op)
{
	struct blob *b = sg_container_of(op, struct blob, open_op);

	if (b->open_res < 0) {
		sg_registry_blob_cb cb = b->open_cb;
		void *ud = b->open_ud;
		char err[SG_REGISTRY_ERR_MAX];
		int res = b->open_res;
		sfmt(err, sizeof(err), "%s", b->open_err);
		blob_free(b);
		cb(ud, res, NULL, err);
		return;
	}
	b->opened = true;
	b->open_cb(b->open_ud, 0, &b->base, NULL);
}

static void open_finish(struct blob *b, int res, const char *err)
{
	b->open_res = res;
	sfmt(b->open_err, sizeof(b->open_err), "%s", err ? err : "");
	/* Cannot fail: open_op is posted once per blob (the opening ends here), and posts are
	 * accepted while the loop drains. */
	if (sg_post(b->reg->loop, &b->open_op, res, on_open_posted) < 0)
		blob_free(b);
}

static int open_head(struct xfer *x)
{
	struct blob *b = x->owner;
	const struct sg_http1_parser *p = &x->p;
	const char *v;
	size_t vlen;

	v = sg_http1_header(p, "docker-content-digest", &vlen);
	if (v && (vlen != strlen(b->digest) || strncmp(v, b->digest, vlen) != 0)) {
		xfer_seterr(x, "registry says the blob is %.*s", (int)(vlen < 200 ? vlen : 200), v);
		return -EBADMSG;
	}
	if (x->nranges == 0) {
		/* HEAD */
		if (sg_http1_header(p, "content-length", &vlen)) {
			b->base.size = p->content_length;
			b->size_known = true;
		}
		return 0;
	}
	/* bytes=0-0 */
	if (p->status == 206) {
		struct sg_http1_range cr;
		v = sg_http1_header(p, "content-range", &vlen);
		if (v && sg_http1_parse_content_range(v, vlen, &cr) == 0 &&
		    cr.total != SG_HTTP1_RANGE_UNKNOWN) {
			b->base.size = cr.total;
			b->size_known = true;
		}
	} else if (p->status == 200 && p->framing == SG_HTTP1_BODY_LENGTH) {
		b->base.size = p->content_length;
		b->size_known = true;
	}
	return 0;
}

static int open_body(struct xfer *x, const uint8_t *d, size_t n)
{
	return 1;   /* the size is known from the head; the byte itself is not needed */
}

static void open_complete(struct xfer *x, int res);

static const struct xfer_ops open_ops = {
	.head = open_head,
	.body = open_body,
	.complete = open_complete,
};

static int open_start(struct blob *b, bool probe)
{
	struct endpoint *ep = &b->ns->eps[b->ep];
	char target[SG_URL_TARGET_MAX];
	struct xfer *x;
	int r;

	r = ep_target(ep, b->ns->ns, b->v2path, target, sizeof(target));
	if (r < 0)
		return r;
	x = xfer_new(b->reg, &open_ops, b, ep->host, target);
	if (!x)
		return b->reg->closing ? -ECANCELED : -ENOMEM;
	x->ep = ep;
	x->repo = strdup(b->repo);
	x->single_attempt = ep->mirror;
	if (probe) {
		x->ranges[0] = (struct sg_http1_byte_range){ 0, 0 };
		x->nranges = 1;
	} else {
		x->head_method = true;
	}
	xfer_go(x);
	return 0;
}

static void open_complete(struct xfer *x, int res)
{
	struct blob *b = x->owner;

	if (res == 0 && !b->size_known) {
		if (x->nranges == 0) {
			/* No Content-Length on the HEAD (some registries): ask for one byte. */
			res = open_start(b, true);
			if (res == 0)
				return;
		} else {
			xfer_seterr(x, "the registry reports no blob size");
			res = -EBADMSG;
		}
	}
	if (res == 0) {
		open_finish(b, 0, NULL);
		return;
	}
	sfmt(b->err, sizeof(b->err), "%s", x->err);
	if (res != -ECANCELED && b->ep + 1 < b->ns->neps) {
		b->ep++;
		open_next(b);
		return;
	}
	open_finish(b, res, b->err);
}

static void open_next(struct blob *b)
{
	int r;

	while (b->ep < b->ns->neps && !ep_usable(b->ns, b->ep, SG_HOST_CAP_PULL))
		b->ep++;
	if (b->ep >= b->ns->neps) {
		open_finish(b, -ENOENT, "no endpoint");
		return;
	}
	b->size_known = false;
	r = open_start(b, false);
	if (r < 0)
		open_finish(b, r, strerror(-r));
}

int sg_registry_open_blob(void *registry, const char *ref, const char *digest,
			  sg_registry_blob_cb cb, void *userdata)
{
	struct sg_registry *reg = registry;
	struct sg_ref rf;
	struct sg_error perr = { 0 };
	struct blob *b;
	int r;

	if (!reg || !ref || !digest || !cb)
		return -EINVAL;
	if (reg->closing)
		return -ECANCELED;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->base = (struct sg_range_source){ .ops = &blob_ops, .loop = reg->loop };
	b->reg = reg;
	reg->refs++;
	sg_list_init(&b->jobs);
	sg_op_init(&b->open_op);
	b->open_cb = cb;
	b->open_ud = userdata;
	r = sg_ref_parse(ref, &rf, &perr);
	if (r < 0) {
		char m[SG_REGISTRY_ERR_MAX];
		sfmt(m, sizeof(m), "bad image reference \"%.200s\": %s", ref, perr.msg);
		open_finish(b, r, m);
		return 0;
	}
	if (sg_ref_check_digest(digest) < 0 ||
	    sg_ref_blob_path(&rf, digest, b->v2path, sizeof(b->v2path)) < 0) {
		char m[SG_REGISTRY_ERR_MAX];
		sfmt(m, sizeof(m), "bad blob digest \"%.200s\"", digest);
		open_finish(b, -EINVAL, m);
		return 0;
	}
	sfmt(b->repo, sizeof(b->repo), "%s", rf.repo);
	sfmt(b->digest, sizeof(b->digest), "%s", digest);
	b->ns = ns_get(reg, rf.domain);
	if (!b->ns) {
		open_finish(b, -ENOMEM, "too many registries");
		return 0;
	}
	if (b->ns->err) {
		open_finish(b, b->ns->err, b->ns->errmsg);
		return 0;
	}
	b->ep = 0;
	open_next(b);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Manifests */

struct mget {
	struct sg_registry *reg;
	struct nsconf *ns;
	struct sg_ref ref;
	char refstr[SG_REF_NAME_MAX * 2 + 8];
	struct sg_platform plat;
	size_t ep;
	bool by_digest;
	char want[SG_REF_DIGEST_MAX + 1];
	char index_digest[SG_REF_DIGEST_MAX + 1];
	char digest[SG_REF_DIGEST_MAX + 1];
	struct sg_manifest *m;
	uint8_t *data;
	size_t len;
	sg_registry_manifest_cb cb;
	void *ud;
	struct sg_op op;
	int res;
	char err[SG_REGISTRY_ERR_MAX];
};

static void mget_free(struct mget *g)
{
	struct sg_registry *reg = g->reg;

	SG_FREE_CHECK(sg_op_busy(&g->op), "manifest fetch");
	sg_manifest_free(g->m);
	free(g->data);
	free(g);
	reg_unref(reg);
}

static void on_mget_posted(struct sg_op *op)
{
	struct mget *g = sg_container_of(op, struct mget, op);

	if (g->res < 0) {
		g->cb(g->ud, g->res, NULL, g->err);
	} else {
		struct sg_registry_manifest out = {
			.ref = g->refstr,
			.digest = g->digest,
			.index_digest = g->index_digest[0] ? g->index_digest : NULL,
			.media_type = g->m->media_type,
			.data = g->data,
			.len = g->len,
			.manifest = g->m,
		};
		g->cb(g->ud, 0, &out, NULL);
	}
	mget_free(g);
}

static void mget_finish(struct mget *g, int res, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void mget_finish(struct mget *g, int res, const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(g->err, sizeof(g->err), fmt, ap);
		va_end(ap);
	}
	g->res = res;
	/* Cannot fail: g->op is posted once (the fetch ends here), and posts are accepted while
	 * the loop drains. */
	if (sg_post(g->reg->loop, &g->op, res, on_mget_posted) < 0)
		mget_free(g);
}

static void mget_next(struct mget *g);

static void mget_complete(struct xfer *x, int res)
{
	struct mget *g = x->owner;
	struct sg_digest d;
	struct sg_error perr = { 0 };
	struct sg_manifest *m = NULL;
	int r;

	if (res < 0) {
		sfmt(g->err, sizeof(g->err), "%s", x->err);
		if (res != -ECANCELED && g->ep + 1 < g->ns->neps) {
			g->ep++;
			mget_next(g);
			return;
		}
		mget_finish(g, res, NULL);
		return;
	}
	sg_sha256(x->bbuf ? x->bbuf : (const uint8_t *)"", x->blen, &d);
	sg_digest_format(&d, g->digest);
	if (g->want[0] && strcmp(g->want, g->digest) != 0) {
		if (!strncmp(g->want, "sha256:", 7)) {
			mget_finish(g, -EBADMSG, "%s: manifest digest mismatch: wanted %s, got %s",
				    g->refstr, g->want, g->digest);
			return;
		}
		mget_finish(g, -ENOTSUP, "%s: cannot verify digest %s", g->refstr, g->want);
		return;
	}
	r = sg_manifest_parse((const char *)(x->bbuf ? x->bbuf : (uint8_t *)""), x->blen, x->ctype,
			      &m, &perr);
	if (r < 0) {
		mget_finish(g, r, "%s: manifest %s: %s", g->refstr, g->digest,
			    perr.msg[0] ? perr.msg : strerror(-r));
		return;
	}
	if (m->kind == SG_MANIFEST_INDEX) {
		if (g->index_digest[0]) {
			sg_manifest_free(m);
			mget_finish(g, -EBADMSG, "%s: an index points at another index", g->refstr);
			return;
		}
		r = sg_manifest_select(m, &g->plat, &perr);
		if (r < 0) {
			sg_manifest_free(m);
			mget_finish(g, r, "%s: %s (platform %s/%s%s%s)", g->refstr,
				    perr.msg[0] ? perr.msg : strerror(-r), g->plat.os, g->plat.arch,
				    g->plat.variant[0] ? "/" : "", g->plat.variant);
			return;
		}
		sfmt(g->index_digest, sizeof(g->index_digest), "%s", g->digest);
		sfmt(g->want, sizeof(g->want), "%s", m->manifests[r].digest);
		sg_manifest_free(m);
		g->by_digest = true;
		mget_next(g);   /* same endpoint first */
		return;
	}
	g->m = m;
	g->data = x->bbuf;
	g->len = x->blen;
	x->bbuf = NULL;
	mget_finish(g, 0, NULL);
}

static const struct xfer_ops mget_ops = {
	.complete = mget_complete,
};

static void mget_next(struct mget *g)
{
	unsigned cap = g->by_digest ? SG_HOST_CAP_PULL : SG_HOST_CAP_RESOLVE;
	char v2[SG_REF_NAME_MAX * 2 + 64], target[SG_URL_TARGET_MAX];
	struct sg_ref r = g->ref;
	struct endpoint *ep;
	struct xfer *x;

	while (g->ep < g->ns->neps && !ep_usable(g->ns, g->ep, cap))
		g->ep++;
	if (g->ep >= g->ns->neps) {
		mget_finish(g, -ENOENT, "%s: no endpoint can resolve it", g->refstr);
		return;
	}
	ep = &g->ns->eps[g->ep];
	if (g->want[0])
		sfmt(r.digest, sizeof(r.digest), "%s", g->want);
	if (sg_ref_manifest_path(&r, v2, sizeof(v2)) < 0 ||
	    ep_target(ep, g->ns->ns, v2, target, sizeof(target)) < 0) {
		mget_finish(g, -ENAMETOOLONG, "%s: reference too long", g->refstr);
		return;
	}
	x = xfer_new(g->reg, &mget_ops, g, ep->host, target);
	if (!x) {
		mget_finish(g, g->reg->closing ? -ECANCELED : -ENOMEM, "%s: %s", g->refstr,
			    g->reg->closing ? "registry client shut down" : "out of memory");
		return;
	}
	x->ep = ep;
	x->repo = strdup(g->ref.repo);
	x->accept = SG_MANIFEST_ACCEPT;
	x->bmax = SG_MANIFEST_MAX;
	x->single_attempt = ep->mirror;
	xfer_go(x);
}

int sg_registry_get_manifest(struct sg_registry *reg, const char *ref, const char *platform,
			     sg_registry_manifest_cb cb, void *userdata)
{
	struct mget *g;
	struct sg_error perr = { 0 };
	int r;

	if (!reg || !ref || !cb)
		return -EINVAL;
	if (reg->closing)
		return -ECANCELED;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->reg = reg;
	reg->refs++;
	g->cb = cb;
	g->ud = userdata;
	sg_op_init(&g->op);
	r = sg_ref_parse(ref, &g->ref, &perr);
	if (r < 0) {
		mget_finish(g, r, "bad image reference \"%.200s\": %s", ref, perr.msg);
		return 0;
	}
	sg_ref_format(&g->ref, g->refstr, sizeof(g->refstr));
	if (sg_platform_parse(platform ? platform : "linux/amd64", &g->plat) < 0) {
		mget_finish(g, -EINVAL, "bad platform \"%.100s\"", platform);
		return 0;
	}
	if (g->ref.digest[0]) {
		sfmt(g->want, sizeof(g->want), "%s", g->ref.digest);
		g->by_digest = true;
	}
	g->ns = ns_get(reg, g->ref.domain);
	if (!g->ns) {
		mget_finish(g, -ENOMEM, "too many registries");
		return 0;
	}
	if (g->ns->err) {
		mget_finish(g, g->ns->err, "%s", g->ns->errmsg);
		return 0;
	}
	mget_next(g);
	return 0;
}
