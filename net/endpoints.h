/* Endpoints of a registry domain: the mirrors of certs.d/<domain>/hosts.toml (in file order)
 * and then the upstream, each with its host pool (net/pool.h), API prefix, capabilities and
 * hosts.toml headers.
 *
 * hosts.toml and its CA files are read once per domain, on first use (small local files: the
 * one blocking read besides configuration); a domain without one has just the default
 * upstream.  A hosts.toml that cannot be used is remembered too: every request for that
 * domain fails with the same message ("certs.d/x/hosts.toml:3: unknown key ...").
 *
 * The upstream of a host that plain HTTP is allowed for (insecure_hosts, or local and
 * plain_http_localhost) is spoken to in plain HTTP; mirrors use the scheme written in
 * hosts.toml (an explicit administrator choice, as in containerd).  Errors are negative errno
 * values.  Nothing here logs.
 */
#ifndef STARGZD_NET_ENDPOINTS_H
#define STARGZD_NET_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/error.h"
#include "net/hosts_toml.h"
#include "net/reference.h"

struct sg_pool;
struct sg_host;
struct sg_endpoints;

struct sg_endpoint {
	struct sg_host *host;
	char prefix[512];                     /* API prefix, "/v2" */
	bool mirror;
	unsigned caps;                        /* SG_HOST_CAP_* */
	const struct sg_hosts_entry *entry;   /* its hosts.toml entry (headers) */
};

/* Mirrors in file order, then the upstream (always last, always there). */
struct sg_endpoint_set {
	char ns[SG_REF_NAME_MAX + 1];         /* the domain, "docker.io" */
	struct sg_endpoint eps[SG_HOSTS_MAX + 1];
	size_t n;
};

#define SG_ENDPOINTS_DOMAINS_MAX 64

struct sg_endpoints_config {
	const char *hosts_dir;                /* certs.d; NULL or "" = none */
	bool no_system_ca;                    /* the trust store of a hosts.toml ca list gets
					       * no system bundle (tests) */
	const char *const *insecure_hosts;    /* "host[:port]" that may use plain HTTP */
	size_t ninsecure_hosts;
	bool plain_http_localhost;
	/* hosts.toml text for a domain without a file in hosts_dir: resolver_hosts_toml[i] for
	 * resolver_domains[i] (see sg_registry_config). */
	const char *const *resolver_domains;
	const char *const *resolver_hosts_toml;
	size_t nresolver;
};

/* The strings of config must outlive the object; pool too.  Returns 0 or -ENOMEM. */
int sg_endpoints_new(struct sg_pool *pool, const struct sg_endpoints_config *config,
		     struct sg_endpoints **ret);
void sg_endpoints_free(struct sg_endpoints *e);

/* The endpoints of `domain` ("docker.io", "localhost:5000"), valid until sg_endpoints_free.
 * Returns 0, or a negative errno with err saying why (a hosts.toml that cannot be used, or
 * -ENOMEM "too many registries" beyond SG_ENDPOINTS_DOMAINS_MAX). */
int sg_endpoints_get(struct sg_endpoints *e, const char *domain,
		     const struct sg_endpoint_set **ret, struct sg_error *err);

/* Whether the endpoint serves a request that needs `cap`; the upstream always does. */
bool sg_endpoint_usable(const struct sg_endpoint *ep, unsigned cap);
/* The request target on the endpoint: its prefix + the part of a "/v2..." path after "/v2";
 * a mirror is also told which registry is meant ("?ns=docker.io", as containerd does).
 * Returns 0, -EINVAL (not a /v2 path) or -ENAMETOOLONG. */
int sg_endpoint_target(const struct sg_endpoint *ep, const char *ns, const char *v2path,
		       char *buf, size_t cap);

#endif
