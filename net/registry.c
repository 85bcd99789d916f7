/* The registry client object: its configuration and parts.  See registry.h; the requests are
 * in blob.c and manifest_fetch.c. */
#include "net/registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/auth.h"
#include "net/credentials.h"
#include "net/endpoints.h"
#include "net/exchange.h"
#include "net/pool.h"
#include "net/registry_int.h"
#include "daemon/core/small_file.h"
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
#define DOCKER_CONFIG_FILE_MAX (1 << 20)

struct sg_registry {
	struct sg_loop *loop;
	struct sg_registry_config cfg;        /* defaults filled in; no pointers kept */
	char **insecure;
	size_t ninsecure;
	char **res_domains, **res_toml;   /* sg_registry_config.resolver_*, copied */
	size_t nresolver;
	char user_agent[128];
	char *hosts_dir;
	struct sg_tls_trust trust;
	struct sg_pool *pool;
	struct sg_credentials *creds;
	struct sg_endpoints *endpoints;
	struct sg_exchanges *exchanges;
	unsigned holds;                       /* blob sources and manifest fetches */
	bool closing;
};

static void reg_free(struct sg_registry *reg)
{
	sg_exchanges_free(reg->exchanges);
	sg_credentials_free(reg->creds);
	sg_endpoints_free(reg->endpoints);
	sg_pool_free(reg->pool);
	for (size_t i = 0; i < reg->ninsecure; i++)
		free(reg->insecure[i]);
	free(reg->insecure);
	for (size_t i = 0; i < reg->nresolver; i++) {
		free(reg->res_domains[i]);
		free(reg->res_toml[i]);
	}
	free(reg->res_domains);
	free(reg->res_toml);
	free(reg->hosts_dir);
	sg_tls_trust_done(&reg->trust);
	free(reg);
}

/* The configuration with its defaults filled in, and none of the caller's pointers. */
static void set_config(struct sg_registry *reg, const struct sg_registry_config *config)
{
	struct sg_registry_config *c = &reg->cfg;

	*c = *config;
	if (!c->connect_timeout_ns)
		c->connect_timeout_ns = DEF_CONNECT_NS;
	if (!c->first_byte_timeout_ns)
		c->first_byte_timeout_ns = DEF_FIRST_BYTE_NS;
	if (!c->idle_timeout_ns)
		c->idle_timeout_ns = DEF_IDLE_NS;
	if (!c->attempts)
		c->attempts = DEF_ATTEMPTS;
	if (c->attempts > 20)
		c->attempts = 20;
	if (!c->retry_base_ns)
		c->retry_base_ns = DEF_RETRY_BASE_NS;
	if (!c->retry_max_ns)
		c->retry_max_ns = DEF_RETRY_MAX_NS;
	if (!c->max_conns_per_host)
		c->max_conns_per_host = DEF_MAX_CONNS;
	if (!c->max_redirects)
		c->max_redirects = DEF_MAX_REDIRECTS;
	snprintf(reg->user_agent, sizeof(reg->user_agent), "%s",
	     config->user_agent ? config->user_agent : "stargzd/" STARGZD_VERSION);
	c->user_agent = NULL;
	c->insecure_hosts = NULL;
	c->resolver_domains = c->resolver_hosts_toml = NULL;
	c->hosts_dir = NULL;
	c->docker_config = NULL;
	/* The CA files are read below, into the default trust store. */
	c->ca_files = NULL;
	c->nca_files = 0;
}

static int copy_strings(struct sg_registry *reg, const struct sg_registry_config *config)
{
	reg->hosts_dir = strdup(config->hosts_dir ? config->hosts_dir : SG_REGISTRY_HOSTS_DIR);
	if (!reg->hosts_dir)
		return -ENOMEM;
	if (config->nresolver) {
		reg->res_domains = calloc(config->nresolver, sizeof(char *));
		reg->res_toml = calloc(config->nresolver, sizeof(char *));
		if (!reg->res_domains || !reg->res_toml)
			return -ENOMEM;
		reg->nresolver = config->nresolver;
		for (size_t i = 0; i < config->nresolver; i++) {
			reg->res_domains[i] = strdup(config->resolver_domains[i]);
			reg->res_toml[i] = strdup(config->resolver_hosts_toml[i]);
			if (!reg->res_domains[i] || !reg->res_toml[i])
				return -ENOMEM;
		}
	}
	if (!config->ninsecure_hosts)
		return 0;
	reg->insecure = calloc(config->ninsecure_hosts, sizeof(char *));
	if (!reg->insecure)
		return -ENOMEM;
	for (size_t i = 0; i < config->ninsecure_hosts; i++) {
		if (!config->insecure_hosts[i])
			continue;
		reg->insecure[reg->ninsecure] = strdup(config->insecure_hosts[i]);
		if (!reg->insecure[reg->ninsecure])
			return -ENOMEM;
		reg->ninsecure++;
	}
	return 0;
}

/* The trust store of every TLS host without CA files of its own in hosts.toml. */
static int load_trust(struct sg_registry *reg, const struct sg_registry_config *config,
		      struct sg_error *err)
{
	int r;

	if (!config->no_system_ca) {
		r = sg_tls_trust_add_file(&reg->trust, SG_TLS_SYSTEM_CA_BUNDLE);
		/* A system without CA certificates can still talk to hosts with their own CAs. */
		if (r < 0 && r != -ENOENT)
			return sg_error_set(err, r, "%s: %s", SG_TLS_SYSTEM_CA_BUNDLE, strerror(-r));
	}
	for (size_t i = 0; i < config->nca_files; i++) {
		r = sg_tls_trust_add_file(&reg->trust, config->ca_files[i]);
		if (r < 0)
			return sg_error_set(err, r, "CA file %s: %s", config->ca_files[i],
					    strerror(-r));
	}
	return 0;
}

/* The docker config, if there is one (NULL otherwise).  Only a file named explicitly must
 * exist. */
static int load_docker_config(const struct sg_registry_config *config,
			      struct sg_docker_config **ret, struct sg_error *err)
{
	char pathbuf[4096], *text = NULL;
	const char *dc = config->docker_config;
	size_t len = 0;
	int r;

	*ret = NULL;
	if (!dc) {
		const char *d = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
		if (d && *d)
			snprintf(pathbuf, sizeof(pathbuf), "%s/config.json", d);
		else if (home && *home)
			snprintf(pathbuf, sizeof(pathbuf), "%s/.docker/config.json", home);
		else
			pathbuf[0] = '\0';
		dc = pathbuf;
	}
	if (!dc[0])
		return 0;
	r = sg_small_file_read(dc, DOCKER_CONFIG_FILE_MAX, &text, &len);
	if (r == 0) {
		struct sg_error perr = { 0 };
		r = sg_docker_config_parse(text, len, ret, &perr);
		free(text);
		if (r < 0)
			return sg_error_set(err, r, "%s: %s", dc,
					    perr.msg[0] ? perr.msg : strerror(-r));
		return 0;
	}
	if (r != -ENOENT || config->docker_config)
		return sg_error_set(err, r, "%s: %s", dc, strerror(-r));
	return 0;
}

/* Pools, credentials, endpoints and exchanges, on the configuration read. */
static int make_parts(struct sg_registry *reg, struct sg_docker_config *docker)
{
	const char *const *insecure = (const char *const *)reg->insecure;
	struct sg_pool_config pc = {
		.connect_timeout_ns = reg->cfg.connect_timeout_ns,
		.max_conns_per_host = reg->cfg.max_conns_per_host,
		.max_hosts = SG_REGISTRY_HOSTS_MAX,
		.trust = &reg->trust,
	};
	struct sg_endpoints_config ec = {
		.hosts_dir = reg->hosts_dir,
		.no_system_ca = reg->cfg.no_system_ca,
		.insecure_hosts = insecure,
		.ninsecure_hosts = reg->ninsecure,
		.plain_http_localhost = reg->cfg.plain_http_localhost,
		.resolver_domains = (const char *const *)reg->res_domains,
		.resolver_hosts_toml = (const char *const *)reg->res_toml,
		.nresolver = reg->nresolver,
	};
	struct sg_exchanges_config xc = {
		.first_byte_timeout_ns = reg->cfg.first_byte_timeout_ns,
		.idle_timeout_ns = reg->cfg.idle_timeout_ns,
		.attempts = reg->cfg.attempts,
		.retry_base_ns = reg->cfg.retry_base_ns,
		.retry_max_ns = reg->cfg.retry_max_ns,
		.max_redirects = reg->cfg.max_redirects,
		.user_agent = reg->user_agent,
		.insecure_hosts = insecure,
		.ninsecure_hosts = reg->ninsecure,
		.plain_http_localhost = reg->cfg.plain_http_localhost,
	};
	int r;

	r = sg_credentials_new(reg->loop, docker, reg->cfg.cred_helper_timeout_ns, &reg->creds);
	if (r == 0)
		r = sg_pool_new(reg->loop, &pc, &reg->pool);
	if (r == 0)
		r = sg_endpoints_new(reg->pool, &ec, &reg->endpoints);
	if (r == 0)
		r = sg_exchanges_new(reg->loop, &xc, reg->pool, reg->creds, &reg->exchanges);
	return r;
}

int sg_registry_new(struct sg_loop *loop, const struct sg_registry_config *config,
		    struct sg_registry **ret, struct sg_error *err)
{
	struct sg_registry_config def = { 0 };
	struct sg_docker_config *docker = NULL;
	struct sg_error e = { 0 };
	struct sg_registry *reg;
	int r;

	if (!loop || !ret)
		return -EINVAL;
	*ret = NULL;
	if (!config)
		config = &def;
	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return sg_error_set(err, -ENOMEM, "out of memory");
	reg->loop = loop;
	set_config(reg, config);
	r = copy_strings(reg, config);
	if (r == 0)
		r = load_trust(reg, config, &e);
	if (r == 0)
		r = load_docker_config(config, &docker, &e);
	if (r == 0)
		r = make_parts(reg, docker);   /* takes docker */
	if (r < 0) {
		sg_error_set(err, r, "%s", r == -ENOMEM && !e.msg[0] ? "out of memory" : e.msg);
		reg_free(reg);
		return r;
	}
	*ret = reg;
	return 0;
}

void sg_registry_shutdown(struct sg_registry *reg)
{
	if (!reg || reg->closing)
		return;
	reg->closing = true;
	sg_exchanges_shutdown(reg->exchanges);
	sg_pool_shutdown(reg->pool);
	/* Helpers still running are killed now; the credential cache frees itself once their
	 * ops have completed (it owns them, not us). */
	sg_credentials_shutdown(reg->creds);
}

bool sg_registry_busy(const struct sg_registry *reg)
{
	return reg && (reg->holds > 0 || sg_exchanges_busy(reg->exchanges) ||
		       sg_pool_busy(reg->pool));
}

void sg_registry_free(struct sg_registry *reg)
{
	if (!reg)
		return;
	/* An exchange, a connection closing, a blob source or a manifest fetch still points at
	 * reg: freeing now would be a use-after-free later (sg_registry_shutdown, then run or
	 * drain the loop, and destroy the blob sources first). */
	SG_FREE_CHECK(sg_registry_busy(reg), "registry client");
	reg->closing = true;
	reg_free(reg);
}

int sg_registry_host_stats(const struct sg_registry *reg, const char *host,
			   struct sg_host_stats *ret)
{
	return sg_pool_stats(reg->pool, host, ret);
}

int sg_registry_give_credentials(struct sg_registry *reg, const char *host, const char *username,
				 const char *password)
{
	if (!reg->creds || reg->closing)
		return -ECANCELED;
	return sg_credentials_give(reg->creds, host, username, password);
}

void sg_registry_each_host(const struct sg_registry *reg,
			   void (*fn)(void *userdata, const char *authority, bool tls,
				      const struct sg_host_stats *st),
			   void *userdata)
{
	if (reg)
		sg_pool_each_host(reg->pool, fn, userdata);
}

/* ---- for blob.c and manifest_fetch.c ---- */

struct sg_loop *sg_registry_loop(const struct sg_registry *reg)
{
	return reg->loop;
}

struct sg_endpoints *sg_registry_endpoints(struct sg_registry *reg)
{
	return reg->endpoints;
}

struct sg_exchanges *sg_registry_exchanges(struct sg_registry *reg)
{
	return reg->exchanges;
}

bool sg_registry_closing(const struct sg_registry *reg)
{
	return reg->closing;
}

void sg_registry_hold(struct sg_registry *reg)
{
	reg->holds++;
}

void sg_registry_release(struct sg_registry *reg)
{
	reg->holds--;
}
