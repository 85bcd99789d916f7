/* Host pools and their connections.  See pool.h. */
#include "net/pool.h"

#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <string.h>
#include <strings.h>

#include "daemon/core/link_meter.h"
#include "daemon/core/list.h"
#include "net/conn.h"
#include "net/tls.h"
#include "net/url.h"

/* Whoever a connection is being opened for, or an acquire waiting for a connection slot. */
struct acquire {
	struct sg_list link;                  /* h->waiters while waiting */
	struct sg_pool_conn **ret;
	struct sg_error *err;
	struct sg_op *op;
	sg_op_cb cb;
};

struct sg_host {
	struct sg_list link;                  /* p->hosts */
	struct sg_pool *pool;
	bool tls, skip_verify;
	const struct sg_tls_trust *trust;
	char hostname[SG_URL_HOST_MAX];       /* for resolution, SNI and name checks */
	uint16_t port;
	char authority[SG_URL_HOST_MAX + 8];  /* the Host header */
	struct sg_list idle;                  /* sg_pool_conn.link */
	struct sg_list connecting;            /* sg_pool_conn.link */
	struct sg_list waiters;               /* struct acquire.link */
	unsigned nconns;
	unsigned pins;                        /* endpoints using it: never collected */
	bool basic;                           /* answered 401 with a Basic challenge */
	struct sg_host_stats st;
	struct sg_link_meter meter;           /* the link to it, shared by its blobs */
};

struct sg_pool_conn {
	struct sg_list link;                  /* h->idle or h->connecting; else unlinked */
	struct sg_host *h;
	struct sg_conn tcp;
	struct sg_tls *tls;
	struct sg_error tls_err;              /* why the handshake failed */
	struct sg_op op;                      /* connect, handshake, send, receive */
	struct acquire acq;                   /* while connecting: who it is for */
	bool connecting;
	struct sg_op *user_op;                /* a send or receive in flight: the caller's */
	sg_op_cb user_cb;
	bool ready, closing;
	bool idle;                            /* on h->idle */
	uint64_t idle_since;
	unsigned served;
	unsigned rcvbuf;                      /* SO_RCVBUF asked (sg_pool_conn_rcvbuf); 0: autotuned */
	uint8_t buf[SG_POOL_CONN_BUF];
};

struct sg_pool {
	struct sg_loop *loop;
	struct sg_pool_config cfg;
	struct sg_list hosts;
	unsigned nhosts;
	unsigned nconns;                      /* every connection, idle ones included */
	unsigned nidle;
	unsigned nwaiters;
	bool closing;
};

static void host_kick(struct sg_host *h);

const char *sg_multirange_name(enum sg_multirange m)
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

/* ---- connections ---- */

static bool conn_busy(const struct sg_pool_conn *c)
{
	return sg_conn_busy(&c->tcp) || sg_op_busy(&c->op) || (c->tls && sg_tls_busy(c->tls));
}

static void conn_maybe_free(struct sg_pool_conn *c)
{
	struct sg_host *h = c->h;
	struct sg_pool *p = h->pool;

	if (conn_busy(c))
		return;   /* freed by the callback of its last op */
	sg_tls_free(c->tls);
	sg_conn_close(&c->tcp);
	sg_list_unlink(&c->link);
	h->nconns--;
	p->nconns--;
	free(c);
	if (!sg_list_empty(&h->waiters) && !p->closing)
		host_kick(h);
}

/* Takes the connection off the list it is on (idle or connecting). */
static void conn_unlink(struct sg_pool_conn *c)
{
	if (c->idle)
		c->h->pool->nidle--;
	c->idle = false;
	c->connecting = false;
	sg_list_unlink(&c->link);
}

/* Closes a connection; it is freed once its ops have completed.  Nobody waits on it: an
 * acquirer or a user has been answered or has left before. */
static void conn_destroy(struct sg_pool_conn *c)
{
	conn_unlink(c);
	c->closing = true;
	if (c->tls)
		sg_tls_cancel(c->tls);
	if (sg_op_busy(&c->op))
		(void)sg_op_cancel(&c->op);
	if (sg_conn_busy(&c->tcp))
		sg_conn_cancel(&c->tcp);
	conn_maybe_free(c);
}

/* Answers whoever the connection was being opened for: ready (res 0) or failed. */
static void conn_answer(struct sg_pool_conn *c, int res)
{
	struct acquire a = c->acq;

	conn_unlink(c);
	if (res == 0)
		*a.ret = c;
	/* Cannot fail: the acquirer's op was idle when the acquire was accepted and is ours
	 * until this post, and posts are accepted while the loop drains. */
	(void)sg_post(c->h->pool->loop, a.op, res, a.cb);
}

static void conn_failed(struct sg_pool_conn *c, int res, const char *what, const char *why)
{
	if (why && why[0])
		sg_error_set(c->acq.err, res, "%s: %s", what, why);
	else if (res == -ENOENT)
		sg_error_set(c->acq.err, res, "%s: unknown host name", what);
	else
		sg_error_set(c->acq.err, res, "%s: %s", what, strerror(-res));
	conn_answer(c, res);
	conn_destroy(c);
}

static void on_handshake(struct sg_op *op)
{
	struct sg_pool_conn *c = sg_container_of(op, struct sg_pool_conn, op);

	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (op->res < 0) {
		conn_failed(c, op->res, "TLS handshake", c->tls_err.msg);
		return;
	}
	c->ready = true;
	conn_answer(c, 0);
}

static void on_connected(struct sg_op *op)
{
	struct sg_pool_conn *c = sg_container_of(op, struct sg_pool_conn, op);
	struct sg_host *h = c->h;
	struct sg_pool *p = h->pool;
	int r;

	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (op->res < 0) {
		conn_failed(c, op->res, "connect", NULL);
		return;
	}
	if (!h->tls) {
		c->ready = true;
		conn_answer(c, 0);
		return;
	}
	r = sg_tls_new(p->loop, c->tcp.fd, h->trust, &c->tls);
	if (r == 0) {
		if (h->skip_verify)
			sg_tls_set_insecure(c->tls);
		r = sg_tls_start(c->tls, h->hostname, p->cfg.connect_timeout_ns, &c->tls_err,
				 &c->op, on_handshake);
	}
	if (r < 0)
		conn_failed(c, r, "TLS start", NULL);
}

/* Opens a new connection for a.  Returns 0 (a is answered from the loop) or -ENOMEM. */
static int conn_open(struct sg_host *h, const struct acquire *a)
{
	struct sg_pool *p = h->pool;
	struct sg_pool_conn *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return sg_error_set(a->err, -ENOMEM, "out of memory");
	c->h = h;
	sg_op_init(&c->op);
	sg_conn_init(&c->tcp, p->loop);
	h->nconns++;
	p->nconns++;
	h->st.conns_opened++;
	if (h->nconns > h->st.conns_max_seen)
		h->st.conns_max_seen = h->nconns;
	c->acq = *a;
	c->connecting = true;
	sg_list_insert_tail(&h->connecting, &c->link);
	r = sg_conn_connect(&c->tcp, h->hostname, h->port, p->cfg.connect_timeout_ns, &c->op,
			    on_connected);
	if (r < 0)
		conn_failed(c, r, "connect", NULL);   /* reported from the loop all the same */
	return 0;
}

/* Serves an acquire with an idle connection or a new one.  Returns 0 (answered from the
 * loop), -EAGAIN (the host is at its limit: wait) or -ENOMEM. */
static int host_serve(struct sg_host *h, const struct acquire *a)
{
	struct sg_pool *p = h->pool;
	uint64_t now = sg_now_ns();

	while (!sg_list_empty(&h->idle)) {
		struct sg_pool_conn *c = sg_container_of(h->idle.next, struct sg_pool_conn, link);
		conn_unlink(c);
		if (now - c->idle_since > SG_POOL_IDLE_MAX_NS) {
			conn_destroy(c);
			continue;
		}
		*a->ret = c;
		/* Cannot fail, as in conn_answer. */
		(void)sg_post(p->loop, a->op, 0, a->cb);
		return 0;
	}
	if (h->nconns < p->cfg.max_conns_per_host)
		return conn_open(h, a);
	return -EAGAIN;
}

/* A connection slot or an idle connection became available. */
static void host_kick(struct sg_host *h)
{
	struct sg_pool *p = h->pool;
	unsigned guard = 0;

	while (!sg_list_empty(&h->waiters) && guard++ < 1024) {
		struct acquire *a;
		if (sg_list_empty(&h->idle) && h->nconns >= p->cfg.max_conns_per_host)
			return;
		a = sg_container_of(sg_list_pop(&h->waiters), struct acquire, link);
		p->nwaiters--;
		int r = host_serve(h, a);
		if (r == -EAGAIN) {
			/* A nested kick took the slot: first in line again. */
			sg_list_insert_tail(h->waiters.next, &a->link);
			p->nwaiters++;
			return;
		}
		if (r < 0)   /* out of memory, said in a->err */
			(void)sg_post(p->loop, a->op, r, a->cb);
		free(a);
	}
}

int sg_host_acquire(struct sg_host *h, struct sg_pool_conn **ret_conn, struct sg_error *err,
		    struct sg_op *op, sg_op_cb cb)
{
	struct sg_pool *p = h->pool;
	struct acquire a = { .ret = ret_conn, .err = err, .op = op, .cb = cb }, *w;
	int r;

	if (!ret_conn || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (p->closing)
		return -ECANCELED;
	r = host_serve(h, &a);
	if (r != -EAGAIN)
		return r;
	w = malloc(sizeof(*w));
	if (!w)
		return sg_error_set(err, -ENOMEM, "out of memory");
	*w = a;
	sg_list_insert_tail(&h->waiters, &w->link);
	p->nwaiters++;
	return 0;
}

int sg_host_acquire_cancel(struct sg_host *h, struct sg_op *op)
{
	struct sg_pool *p = h->pool;
	struct sg_list *pos, *tmp;

	sg_list_for_each_safe(pos, tmp, &h->waiters) {
		struct acquire *a = sg_container_of(pos, struct acquire, link);
		if (a->op != op)
			continue;
		sg_list_unlink(&a->link);
		p->nwaiters--;
		(void)sg_post(p->loop, a->op, -ECANCELED, a->cb);
		free(a);
		return 0;
	}
	sg_list_for_each_safe(pos, tmp, &h->connecting) {
		struct sg_pool_conn *c = sg_container_of(pos, struct sg_pool_conn, link);
		if (c->acq.op != op)
			continue;
		conn_answer(c, -ECANCELED);
		conn_destroy(c);
		return 0;
	}
	return -EALREADY;
}

/* The send or receive in flight is over: the caller hears of it. */
static void on_io(struct sg_op *op)
{
	struct sg_pool_conn *c = sg_container_of(op, struct sg_pool_conn, op);
	struct sg_op *user = c->user_op;

	if (c->closing) {
		conn_maybe_free(c);   /* the caller was answered when it released us */
		return;
	}
	c->user_op = NULL;
	/* Cannot fail: the caller's op was idle when the send or receive was accepted. */
	(void)sg_post(c->h->pool->loop, user, op->res, c->user_cb);
}

int sg_pool_conn_send(struct sg_pool_conn *c, const void *buf, size_t len, uint64_t timeout_ns,
		      struct sg_op *op, sg_op_cb cb)
{
	struct sg_host *h = c->h;
	int r;

	if (!op || !cb)
		return -EINVAL;
	if (sg_op_busy(op) || c->user_op)
		return -EBUSY;
	h->st.requests++;
	if (c->served)
		h->st.reused++;
	c->served++;
	if (c->tls) {
		sg_tls_set_timeout(c->tls, timeout_ns);
		r = sg_tls_write(c->tls, buf, len, &c->op, on_io);
	} else {
		sg_op_set_timeout(&c->op, timeout_ns);
		r = sg_send(h->pool->loop, &c->op, c->tcp.fd, buf, len, MSG_NOSIGNAL, on_io);
	}
	if (r == 0) {
		c->user_op = op;
		c->user_cb = cb;
	}
	return r;
}

int sg_pool_conn_recv(struct sg_pool_conn *c, uint64_t timeout_ns, struct sg_op *op, sg_op_cb cb)
{
	int r;

	if (!op || !cb)
		return -EINVAL;
	if (sg_op_busy(op) || c->user_op)
		return -EBUSY;
	if (c->tls) {
		sg_tls_set_timeout(c->tls, timeout_ns);
		r = sg_tls_read(c->tls, c->buf, sizeof(c->buf), &c->op, on_io);
	} else {
		sg_op_set_timeout(&c->op, timeout_ns);
		r = sg_recv(c->h->pool->loop, &c->op, c->tcp.fd, c->buf, sizeof(c->buf), 0, on_io);
	}
	if (r == 0) {
		c->user_op = op;
		c->user_cb = cb;
	}
	return r;
}

const uint8_t *sg_pool_conn_data(const struct sg_pool_conn *c)
{
	return c->buf;
}

unsigned sg_pool_conn_served(const struct sg_pool_conn *c)
{
	return c->served;
}

void sg_pool_conn_release(struct sg_pool_conn *c, bool reuse)
{
	struct sg_host *h = c->h;
	struct sg_pool *p = h->pool;

	if (c->user_op) {
		/* Cannot fail, as in on_io. */
		(void)sg_post(p->loop, c->user_op, -ECANCELED, c->user_cb);
		c->user_op = NULL;
		reuse = false;
	}
	if (!reuse || p->closing || !c->ready || conn_busy(c)) {
		conn_destroy(c);
		return;
	}
	c->idle_since = sg_now_ns();
	sg_list_insert_tail(&h->idle, &c->link);
	c->idle = true;
	p->nidle++;
	if (!sg_list_empty(&h->waiters))
		host_kick(h);
}

/* ---- hosts ---- */

/* Frees pools nothing uses (redirect targets come and go) until there is room for one. */
static void collect_hosts(struct sg_pool *p)
{
	struct sg_list *pos, *tmp;

	sg_list_for_each_safe(pos, tmp, &p->hosts) {
		struct sg_host *h = sg_container_of(pos, struct sg_host, link);
		if (h->pins || !sg_list_empty(&h->waiters))
			continue;
		while (!sg_list_empty(&h->idle))
			conn_destroy(sg_container_of(h->idle.next, struct sg_pool_conn, link));
		if (h->nconns)
			continue;
		sg_list_unlink(&h->link);
		p->nhosts--;
		free(h);
		if (p->nhosts < p->cfg.max_hosts)
			break;
	}
}

struct sg_host *sg_pool_host(struct sg_pool *p, bool tls, const char *hostname, uint16_t port,
			     bool skip_verify, const struct sg_tls_trust *trust)
{
	struct sg_list *pos;
	struct sg_host *h;
	struct sg_url u = { .tls = tls, .port = port };

	if (!trust)
		trust = p->cfg.trust;
	if (!tls) {
		skip_verify = false;
		trust = NULL;
	}
	for (pos = p->hosts.next; pos != &p->hosts; pos = pos->next) {
		h = sg_container_of(pos, struct sg_host, link);
		if (h->tls == tls && h->port == port && h->skip_verify == skip_verify &&
		    h->trust == trust && !strcasecmp(h->hostname, hostname))
			return h;
	}
	if (p->nhosts >= p->cfg.max_hosts) {
		collect_hosts(p);
		if (p->nhosts >= p->cfg.max_hosts)
			return NULL;
	}
	if (strlen(hostname) >= sizeof(h->hostname))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->pool = p;
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
	sg_list_init(&h->connecting);
	sg_list_init(&h->waiters);
	sg_link_meter_init(&h->meter);
	sg_list_insert_tail(&p->hosts, &h->link);
	p->nhosts++;
	return h;
}

void sg_host_pin(struct sg_host *h)
{
	h->pins++;
}

bool sg_host_tls(const struct sg_host *h)
{
	return h->tls;
}

const char *sg_host_name(const struct sg_host *h)
{
	return h->hostname;
}

uint16_t sg_host_port(const struct sg_host *h)
{
	return h->port;
}

const char *sg_host_authority(const struct sg_host *h)
{
	return h->authority;
}

/* Stricter than Go's net/http, which forwards Authorization to the same host name on any port
 * or scheme and to its subdomains: a registry's storage or CDN host is not one we would hand
 * credentials to, and two ports of one address can be two unrelated services. */
bool sg_host_same_origin(const struct sg_host *a, const struct sg_host *b)
{
	return a->tls == b->tls && a->port == b->port && !strcasecmp(a->hostname, b->hostname);
}

const char *sg_retry_cause_name(enum sg_retry_cause c)
{
	static const char *const names[] = { "connection", "timeout", "server_error", "throttled" };
	return (unsigned)c < _SG_RETRY_CAUSE_MAX ? names[c] : "?";
}

struct sg_host_stats *sg_host_stats(struct sg_host *h)
{
	return &h->st;
}

struct sg_link_meter *sg_host_link(struct sg_host *h)
{
	return &h->meter;
}

bool sg_host_wants_basic(const struct sg_host *h)
{
	return h->basic;
}

void sg_host_set_wants_basic(struct sg_host *h)
{
	h->basic = true;
}

/* The meter's figures into st, from the pool with samples. */
static void link_figures(const struct sg_host *h, struct sg_host_stats *st)
{
	if (h->meter.rtt_samples && !st->link_rtt_ns)
		st->link_rtt_ns = sg_link_meter_rtt_ns(&h->meter);
	if (h->meter.bw_samples && !st->link_bytes_per_s)
		st->link_bytes_per_s = (uint64_t)sg_link_meter_bytes_per_s(&h->meter);
}

int sg_pool_stats(const struct sg_pool *p, const char *host, struct sg_host_stats *ret)
{
	const struct sg_list *pos;
	bool found = false;

	memset(ret, 0, sizeof(*ret));
	for (pos = p->hosts.next; pos != &p->hosts; pos = pos->next) {
		const struct sg_host *h = sg_container_of(pos, struct sg_host, link);
		char a1[SG_URL_HOST_MAX + 8];
		bool v6 = strchr(h->hostname, ':') != NULL;
		snprintf(a1, sizeof(a1), v6 ? "[%s]:%u" : "%s:%u", h->hostname, (unsigned)h->port);
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
		for (unsigned c = 0; c < _SG_RETRY_CAUSE_MAX; c++)
			ret->retries_by[c] += h->st.retries_by[c];
		ret->reused += h->st.reused;
		ret->failures += h->st.failures;
		if (h->st.last_error[0])
			memcpy(ret->last_error, h->st.last_error, sizeof(ret->last_error));
		link_figures(h, ret);
	}
	return found ? 0 : -ENOENT;
}

void sg_pool_each_host(const struct sg_pool *p,
		       void (*fn)(void *userdata, const char *authority, bool tls,
				  const struct sg_host_stats *st),
		       void *userdata)
{
	for (const struct sg_list *pos = p->hosts.next; pos != &p->hosts; pos = pos->next) {
		const struct sg_host *h = sg_container_of(pos, struct sg_host, link);
		bool first = true;
		/* One host may have several pools (own CAs or skip_verify from hosts.toml):
		 * reported once, summed, under its first pool. */
		for (const struct sg_list *q = p->hosts.next; q != pos; q = q->next) {
			const struct sg_host *o = sg_container_of(q, struct sg_host, link);
			if (o->tls == h->tls && !strcasecmp(o->authority, h->authority))
				first = false;
		}
		if (!first)
			continue;
		struct sg_host_stats sum = h->st;
		link_figures(h, &sum);
		for (const struct sg_list *q = pos->next; q != &p->hosts; q = q->next) {
			const struct sg_host *o = sg_container_of(q, struct sg_host, link);
			if (o->tls != h->tls || strcasecmp(o->authority, h->authority))
				continue;
			sum.requests += o->st.requests;
			sum.retries += o->st.retries;
			for (unsigned c = 0; c < _SG_RETRY_CAUSE_MAX; c++)
				sum.retries_by[c] += o->st.retries_by[c];
			sum.failures += o->st.failures;
			if (o->st.last_error[0])
				memcpy(sum.last_error, o->st.last_error, sizeof(sum.last_error));
			link_figures(o, &sum);
		}
		fn(userdata, h->authority, h->tls, &sum);
	}
}

/* ---- the pool ---- */

int sg_pool_new(struct sg_loop *loop, const struct sg_pool_config *config, struct sg_pool **ret)
{
	struct sg_pool *p = calloc(1, sizeof(*p));

	*ret = NULL;
	if (!p)
		return -ENOMEM;
	p->loop = loop;
	p->cfg = *config;
	if (!p->cfg.max_conns_per_host)
		p->cfg.max_conns_per_host = 1;
	sg_list_init(&p->hosts);
	*ret = p;
	return 0;
}

void sg_pool_shutdown(struct sg_pool *p)
{
	struct sg_list *pos;

	if (!p)
		return;
	p->closing = true;
	for (pos = p->hosts.next; pos != &p->hosts; pos = pos->next) {
		struct sg_host *h = sg_container_of(pos, struct sg_host, link);
		while (!sg_list_empty(&h->idle))
			conn_destroy(sg_container_of(h->idle.next, struct sg_pool_conn, link));
		while (!sg_list_empty(&h->waiters)) {
			struct acquire *a = sg_container_of(sg_list_pop(&h->waiters),
							    struct acquire, link);
			p->nwaiters--;
			(void)sg_post(p->loop, a->op, -ECANCELED, a->cb);
			free(a);
		}
	}
}

bool sg_pool_busy(const struct sg_pool *p)
{
	return p && (p->nconns > p->nidle || p->nwaiters > 0);
}

void sg_pool_free(struct sg_pool *p)
{
	if (!p)
		return;
	/* A connection with an op in flight would call back into freed memory. */
	SG_FREE_CHECK(sg_pool_busy(p), "registry connection pool");
	sg_pool_shutdown(p);
	while (!sg_list_empty(&p->hosts))
		free(sg_container_of(sg_list_pop(&p->hosts), struct sg_host, link));
	free(p);
}

void sg_pool_conn_rcvbuf(struct sg_pool_conn *c, unsigned bytes)
{
	int v = bytes > INT_MAX ? INT_MAX : (int)bytes;

	if (bytes == c->rcvbuf)
		return;   /* as it is: asked for again on every slice of a body (net/blob.c) */
	if (bytes) {
		/* A window below a segment stalls the response, not slows it: the server sends
		 * no segment into it and waits for zero-window probes, backing off (256 KiB
		 * over loopback, MSS 64 KiB, took 0.62 s in a 4 KiB buffer; the same on jumbo
		 * frames).  So never less than SG_POOL_RCVBUF_MIN_MSS segments: with two, the
		 * window after a segment could stay below one and unannounced (the receiver
		 * announces a window only once it has doubled), and 12 of 30 such reads still
		 * stalled 0.2 s; with three or four, none of 100. */
		int mss = 0;
		socklen_t ml = sizeof(mss);
		if (getsockopt(c->tcp.fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &ml) == 0 && mss > 0 &&
		    v < SG_POOL_RCVBUF_MIN_MSS * mss)
			v = SG_POOL_RCVBUF_MIN_MSS * mss;
		/* Best effort, as the window it bounds: a failure leaves the kernel's. */
		if (setsockopt(c->tcp.fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) == 0)
			c->rcvbuf = bytes;
		return;
	}
	/* Back to autotuning, from a buffer that carries a window at once (a fixed one stays
	 * fixed until SO_BUF_LOCK clears the lock, Linux 5.14; before, it stays at this). */
	v = SG_POOL_RCVBUF_RESTORE;
	(void)setsockopt(c->tcp.fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	v = 0;
	(void)setsockopt(c->tcp.fd, SOL_SOCKET, SO_BUF_LOCK, &v, sizeof(v));
	c->rcvbuf = 0;
}

int sg_pool_conn_fd(const struct sg_pool_conn *c)
{
	return c->tcp.fd;
}
