/* The registry client: manifests and blobs over HTTP/1.1 (+ TLS), on the event loop.
 *
 * The object ties the parts together, bottom up:
 *  - net/pool.h: one connection pool per (scheme, host:port, TLS profile) with keep-alive and
 *    at most max_conns_per_host connections;
 *  - net/exchange.h: one logical request with its retries, redirects (credentials never
 *    leave the origin), authentication (Bearer tokens, Basic, credential helpers) and
 *    timeouts;
 *  - net/endpoints.h: for a reference's domain, the mirrors of certs.d/<domain>/hosts.toml
 *    (those with the needed capability) and then the upstream.  A mirror that fails in any
 *    way hands over to the next endpoint; mirrors get a single attempt per request (they
 *    are caches, the upstream is authoritative);
 *  - the requests: blob range sources (net/blob.h) and manifests (net/manifest_fetch.h).
 *
 * Plain HTTP is used only for hosts named in insecure_hosts, for localhost/127.0.0.1/::1 when
 * plain_http_localhost is set, and for hosts.toml entries written with an http:// URL (an
 * explicit administrator choice, as in containerd).  A redirect or token realm may use plain
 * HTTP only under the same rules, or when the request it came from was plain HTTP already.
 *
 * Credentials: the docker config's auths, or its credsStore / credHelpers helpers, which are
 * asked (net/credhelper.c, a child process, never blocking the loop) when a registry first
 * answers 401; their answer is cached, so one helper run serves many requests.
 *
 * Errors are negative errno values with a message (daemon/core/error.h).  Nothing here logs.
 * Completions always run from the loop's dispatch, never inside the call that started them.
 */
#ifndef STARGZD_NET_REGISTRY_H
#define STARGZD_NET_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_registry;
struct sg_host_stats;

#define SG_REGISTRY_HOSTS_DIR "/etc/containerd/certs.d"
#define SG_REGISTRY_HOSTS_MAX 64           /* connection pools (registries, mirrors, CDNs) */

struct sg_registry_config {
	const char *hosts_dir;            /* certs.d; NULL = SG_REGISTRY_HOSTS_DIR, "" = none */
	const char *docker_config;        /* NULL = $DOCKER_CONFIG/config.json or
					   * ~/.docker/config.json if present; "" = none */
	const char *const *insecure_hosts;/* "host[:port]" that may use plain HTTP */
	size_t ninsecure_hosts;
	bool plain_http_localhost;        /* localhost, 127.0.0.1 and ::1 may use plain HTTP */
	/* hosts.toml text for a domain that has no file in hosts_dir (the daemon's config writes
	 * it from stargz-snapshotter's resolver mirrors): resolver_hosts_toml[i] for
	 * resolver_domains[i]. */
	const char *const *resolver_domains;
	const char *const *resolver_hosts_toml;
	size_t nresolver;
	const char *const *ca_files;      /* extra trust anchors for every TLS host */
	size_t nca_files;
	bool no_system_ca;                /* do not load SG_TLS_SYSTEM_CA_BUNDLE (tests) */
	const char *user_agent;           /* NULL = "stargzd/VERSION" */
	/* 0 means the default for each of these. */
	uint64_t connect_timeout_ns;      /* TCP connect + TLS handshake; default 10 s */
	uint64_t first_byte_timeout_ns;   /* request sent -> response head; default 30 s */
	uint64_t idle_timeout_ns;         /* between body reads; default 30 s */
	unsigned attempts;                /* per request, retries included; default 4 */
	uint64_t retry_base_ns;           /* first backoff; default 200 ms, doubling */
	uint64_t retry_max_ns;            /* backoff and Retry-After cap; default 5 s */
	unsigned max_conns_per_host;      /* default 8 */
	unsigned max_redirects;           /* default 5 */
	uint64_t cred_helper_timeout_ns;  /* a docker-credential-* run; default 10 s */
};

/* Reads the configuration files (docker config.json, CA files): call at start-up, not on the
 * loop's hot path.  On error err (may be NULL) says why, e.g. a malformed config.json. */
int sg_registry_new(struct sg_loop *loop, const struct sg_registry_config *config,
		    struct sg_registry **ret, struct sg_error *err);
/* Cancels every request in flight (their ops complete with -ECANCELED from the loop),
 * closes idle connections, kills credential helpers; new requests are refused with
 * -ECANCELED.  Then run (or drain) the loop until sg_registry_busy() is false and destroy
 * the blob sources, and only then sg_registry_free.  NULL is fine. */
void sg_registry_shutdown(struct sg_registry *r);
/* True while a request, a connection with an op in flight or a blob source is alive (each
 * points at the registry). */
bool sg_registry_busy(const struct sg_registry *r);
/* Frees the registry.  Aborts (SG_FREE_CHECK) while sg_registry_busy(): a request in
 * flight would call back into freed memory.  Idle pooled connections are closed here.
 * NULL is fine. */
void sg_registry_free(struct sg_registry *r);

/* The counters of `host`, "host:port" as in the URL ("127.0.0.1:5000"); http and https pools
 * are summed (net/pool.h).  Returns 0 or -ENOENT. */
int sg_registry_host_stats(const struct sg_registry *r, const char *host,
			   struct sg_host_stats *ret);
/* Credentials for a registry host ("ghcr.io", "127.0.0.1:5000") handed over at run time
 * (net/credentials.h sg_credentials_give).  Returns 0, -ENOMEM or -ECANCELED (shut down). */
int sg_registry_give_credentials(struct sg_registry *r, const char *host, const char *username,
				 const char *password);
/* Calls fn for every registry host in use ("host:port", tls, its counters). */
void sg_registry_each_host(const struct sg_registry *r,
			   void (*fn)(void *userdata, const char *authority, bool tls,
				      const struct sg_host_stats *st),
			   void *userdata);

#endif
