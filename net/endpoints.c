/* Endpoints from containerd's hosts.toml.  See endpoints.h. */
#include "net/endpoints.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/list.h"
#include "net/auth.h"
#include "net/pool.h"
#include "daemon/core/small_file.h"
#include "net/tls.h"
#include "net/url.h"

#define HOSTS_TOML_FILE_MAX (1 << 20)

/* One domain's endpoints, or why it has none. */
struct domain {
	struct sg_list link;                  /* e->domains */
	struct sg_endpoint_set set;
	struct sg_hosts_config *cfg;
	struct sg_tls_trust trusts[SG_HOSTS_MAX + 1];
	int err;                              /* hosts.toml unusable: every request fails */
	struct sg_error why;
};

/* Domain messages keep the bound they always had. */
#define DOMAIN_MSG_MAX 255

struct sg_endpoints {
	struct sg_pool *pool;
	struct sg_endpoints_config cfg;
	struct sg_list domains;
	unsigned n;
};

int sg_endpoints_new(struct sg_pool *pool, const struct sg_endpoints_config *config,
		     struct sg_endpoints **ret)
{
	struct sg_endpoints *e = calloc(1, sizeof(*e));

	*ret = NULL;
	if (!e)
		return -ENOMEM;
	e->pool = pool;
	e->cfg = *config;
	sg_list_init(&e->domains);
	*ret = e;
	return 0;
}

static void domain_free(struct domain *d)
{
	for (size_t i = 0; i <= SG_HOSTS_MAX; i++)
		sg_tls_trust_done(&d->trusts[i]);
	sg_hosts_config_free(d->cfg);
	free(d);
}

void sg_endpoints_free(struct sg_endpoints *e)
{
	if (!e)
		return;
	while (!sg_list_empty(&e->domains))
		domain_free(sg_container_of(sg_list_pop(&e->domains), struct domain, link));
	free(e);
}

/* The trust store of an entry with its own CA files: the system bundle (unless configured
 * away) and the files.  NULL for the default store. */
static int entry_trust(struct sg_endpoints *e, struct domain *d, const struct sg_hosts_entry *he,
		       struct sg_tls_trust **ret)
{
	struct sg_tls_trust *trust = &d->trusts[d->set.n];
	int r;

	*ret = NULL;
	if (!he->nca)
		return 0;
	if (!e->cfg.no_system_ca)
		(void)sg_tls_trust_add_file(trust, SG_TLS_SYSTEM_CA_BUNDLE);
	for (size_t i = 0; i < he->nca; i++) {
		r = sg_tls_trust_add_file(trust, he->ca[i]);
		if (r < 0) {
			sg_error_set(&d->why, 0, "hosts.toml: CA file %s: %s", he->ca[i],
			     strerror(-r));
			return r;
		}
	}
	*ret = trust;
	return 0;
}

static int endpoint_add(struct sg_endpoints *e, struct domain *d, const struct sg_hosts_entry *he,
			bool mirror)
{
	struct sg_endpoint *ep = &d->set.eps[d->set.n];
	struct sg_tls_trust *trust = NULL;
	bool tls = !strcmp(he->scheme, "https");
	char hostname[SG_URL_HOST_MAX];
	uint16_t port;
	int r;

	/* The upstream of a host the configuration allows plain HTTP for is spoken to in plain
	 * HTTP ("insecure" means exactly that here). */
	if (!mirror && tls &&
	    sg_url_plain_allowed(e->cfg.insecure_hosts, e->cfg.ninsecure_hosts,
				 e->cfg.plain_http_localhost, he->host))
		tls = false;
	r = sg_url_split_authority(he->host, tls, hostname, sizeof(hostname), &port);
	if (r < 0) {
		sg_error_set(&d->why, 0, "hosts.toml: bad host \"%s\"", he->host);
		return r;
	}
	if (tls) {
		r = entry_trust(e, d, he, &trust);
		if (r < 0)
			return r;
	}
	ep->host = sg_pool_host(e->pool, tls, hostname, port, he->skip_verify, trust);
	if (!ep->host) {
		sg_error_set(&d->why, 0, "too many registry hosts");
		return -ENOMEM;
	}
	sg_host_pin(ep->host);
	snprintf(ep->prefix, sizeof(ep->prefix), "%s", he->path ? he->path : "/v2");
	ep->mirror = mirror;
	ep->caps = he->caps;
	ep->entry = he;
	d->set.n++;
	return 0;
}

/* Reads certs.d/<domain>/hosts.toml into d->cfg, or the default upstream without one.
 * Returns 0, or a negative errno with d->why saying why. */
static int domain_config(struct sg_endpoints *e, struct domain *d, const char *domain)
{
	char *text = NULL, path[4096] = "", dir[4096] = "";
	size_t len = 0;
	int r = -ENOENT;

	if (e->cfg.hosts_dir && e->cfg.hosts_dir[0]) {
		snprintf(dir, sizeof(dir), "%s/%s", e->cfg.hosts_dir, domain);
		snprintf(path, sizeof(path), "%s/%s/hosts.toml", e->cfg.hosts_dir, domain);
		r = sg_small_file_read(path, HOSTS_TOML_FILE_MAX, &text, &len);
		if (r < 0 && r != -ENOENT && r != -ENOTDIR) {
			sg_error_set(&d->why, 0, "%s: %s", path, strerror(-r));
			return r;
		}
	}
	if (r == 0) {
		struct sg_error herr = { 0 };
		r = sg_hosts_toml_parse(text, len, domain, dir, &d->cfg, &herr);
		free(text);
		if (r < 0)
			sg_error_set(&d->why, 0, "%s:%u: %s", path, (unsigned)herr.code,
			     herr.msg[0] ? herr.msg : strerror(-r));
		return r;
	}
	for (size_t i = 0; i < e->cfg.nresolver; i++) {
		if (strcmp(e->cfg.resolver_domains[i], domain) != 0)
			continue;
		struct sg_error herr = { 0 };
		const char *rtext = e->cfg.resolver_hosts_toml[i];
		r = sg_hosts_toml_parse(rtext, strlen(rtext), domain, NULL, &d->cfg, &herr);
		if (r < 0)
			sg_error_set(&d->why, 0, "resolver mirrors of %s (config): %s", domain,
				     herr.msg[0] ? herr.msg : strerror(-r));
		return r;
	}
	r = sg_hosts_default(domain, &d->cfg);
	if (r < 0)
		sg_error_set(&d->why, 0, "registry %s: %s", domain, strerror(-r));
	return r;
}

/* The domain's entry, set up on first use; NULL beyond SG_ENDPOINTS_DOMAINS_MAX or out of
 * memory. */
static struct domain *domain_get(struct sg_endpoints *e, const char *domain)
{
	struct sg_list *pos;
	struct domain *d;
	int r;

	for (pos = e->domains.next; pos != &e->domains; pos = pos->next) {
		d = sg_container_of(pos, struct domain, link);
		if (!strcmp(d->set.ns, domain))
			return d;
	}
	if (e->n >= SG_ENDPOINTS_DOMAINS_MAX)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	snprintf(d->set.ns, sizeof(d->set.ns), "%s", domain);
	sg_list_insert_tail(&e->domains, &d->link);
	e->n++;

	r = domain_config(e, d, domain);
	for (size_t i = 0; r == 0 && i < d->cfg->nmirrors; i++)
		r = endpoint_add(e, d, &d->cfg->mirrors[i], true);
	if (r == 0)
		r = endpoint_add(e, d, &d->cfg->upstream, false);
	if (r < 0)
		d->err = r;
	return d;
}

int sg_endpoints_get(struct sg_endpoints *e, const char *domain,
		     const struct sg_endpoint_set **ret, struct sg_error *err)
{
	struct domain *d = domain_get(e, domain);

	if (!d)
		return sg_error_set(err, -ENOMEM, "too many registries");
	if (d->err)
		return sg_error_set(err, d->err, "%.*s", DOMAIN_MSG_MAX, d->why.msg);
	*ret = &d->set;
	return 0;
}

bool sg_endpoint_usable(const struct sg_endpoint *ep, unsigned cap)
{
	return !ep->mirror || (ep->caps & cap);
}

int sg_endpoint_target(const struct sg_endpoint *ep, const char *ns, const char *v2path,
		       char *buf, size_t cap)
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
