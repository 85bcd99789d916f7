/* Tests for net/endpoints: the default upstream, plain HTTP for an insecure upstream, mirrors
 * from a hosts.toml (capabilities, ?ns=, headers), and an unusable hosts.toml remembered with
 * its file and line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "daemon/core/loop.h"
#include "net/endpoints.h"
#include "net/pool.h"
#include "tests/unit/test.h"

static char dir[] = "/tmp/endpoints-test.XXXXXX";

static void write_hosts(const char *domain, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, domain);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/hosts.toml", dir, domain);
	f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
}

struct env {
	struct sg_loop *loop;
	struct sg_pool *pool;
	struct sg_endpoints *eps;
};

static void env_new(struct env *e, const char *hosts_dir)
{
	static const char *const insecure[] = { "plain.example:5000" };
	struct sg_pool_config pc = { .max_conns_per_host = 1, .max_hosts = 64 };
	struct sg_endpoints_config ec = { .hosts_dir = hosts_dir, .no_system_ca = true,
					  .insecure_hosts = insecure, .ninsecure_hosts = 1 };

	CHECK_EQ(sg_loop_new(NULL, &e->loop), 0);
	CHECK_EQ(sg_pool_new(e->loop, &pc, &e->pool), 0);
	CHECK_EQ(sg_endpoints_new(e->pool, &ec, &e->eps), 0);
}

static void env_free(struct env *e)
{
	sg_endpoints_free(e->eps);
	sg_pool_free(e->pool);
	sg_loop_free(e->loop);
}

TEST(default_upstream)
{
	struct env e;
	const struct sg_endpoint_set *set;
	char target[256];

	env_new(&e, "");
	CHECK_EQ(sg_endpoints_get(e.eps, "docker.io", &set, NULL), 0);
	CHECK_STR(set->ns, "docker.io");
	CHECK_EQ(set->n, 1);
	const struct sg_endpoint *up = &set->eps[0];
	CHECK(!up->mirror);
	CHECK(sg_host_tls(up->host));
	CHECK_STR(sg_host_authority(up->host), "registry-1.docker.io");
	CHECK_EQ(sg_host_port(up->host), 443);
	CHECK(sg_endpoint_usable(up, SG_HOST_CAP_RESOLVE));
	CHECK_EQ(sg_endpoint_target(up, set->ns, "/v2/library/x/manifests/1", target,
				    sizeof(target)), 0);
	CHECK_STR(target, "/v2/library/x/manifests/1");
	CHECK_EQ(sg_endpoint_target(up, set->ns, "/v3/x", target, sizeof(target)), -EINVAL);
	CHECK_EQ(sg_endpoint_target(up, set->ns, "/v2/x", target, 4), -ENAMETOOLONG);
	/* Asked again: the same set. */
	const struct sg_endpoint_set *again;
	CHECK_EQ(sg_endpoints_get(e.eps, "docker.io", &again, NULL), 0);
	CHECK(again == set);
	/* An upstream plain HTTP is allowed for is spoken to in plain HTTP. */
	CHECK_EQ(sg_endpoints_get(e.eps, "plain.example:5000", &set, NULL), 0);
	CHECK(!sg_host_tls(set->eps[0].host));
	CHECK_STR(sg_host_authority(set->eps[0].host), "plain.example:5000");
	env_free(&e);
}

TEST(mirrors_from_hosts_toml)
{
	struct env e;
	const struct sg_endpoint_set *set;
	struct sg_error err = { 0 };
	char target[256], want[512];

	CHECK(mkdtemp(dir) != NULL);
	write_hosts("reg.example", "server = \"https://reg.example\"\n"
				   "[host.\"http://127.0.0.1:5001\"]\n"
				   "  capabilities = [\"pull\"]\n"
				   "  [host.\"http://127.0.0.1:5001\".header]\n"
				   "    x-test = \"m\"\n");
	write_hosts("broken.example", "server = \"https://broken.example\"\n\n  bogus = true\n");
	env_new(&e, dir);
	CHECK_EQ(sg_endpoints_get(e.eps, "reg.example", &set, &err), 0);
	CHECK_EQ(set->n, 2);
	const struct sg_endpoint *m = &set->eps[0], *up = &set->eps[1];
	CHECK(m->mirror);
	CHECK(!sg_host_tls(m->host));
	CHECK_STR(sg_host_authority(m->host), "127.0.0.1:5001");
	CHECK(sg_endpoint_usable(m, SG_HOST_CAP_PULL));
	CHECK(!sg_endpoint_usable(m, SG_HOST_CAP_RESOLVE));
	CHECK_EQ(m->entry->nheaders, 1);
	CHECK_EQ(sg_endpoint_target(m, set->ns, "/v2/a/blobs/sha256:1", target, sizeof(target)), 0);
	CHECK_STR(target, "/v2/a/blobs/sha256:1?ns=reg.example");
	CHECK(!up->mirror);
	CHECK(sg_host_tls(up->host));
	CHECK(sg_endpoint_usable(up, SG_HOST_CAP_RESOLVE));
	/* An unusable file: every request for the domain fails the same way. */
	snprintf(want, sizeof(want), "%s/broken.example/hosts.toml:3: unknown key \"bogus\"", dir);
	for (int i = 0; i < 2; i++) {
		err = (struct sg_error){ 0 };
		CHECK_EQ(sg_endpoints_get(e.eps, "broken.example", &set, &err), -EBADMSG);
		if (strncmp(err.msg, want, strlen(want)) != 0)
			TEST_FAIL("got \"%s\"", err.msg);
	}
	env_free(&e);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_EQ(system(cmd), 0);
}

TEST(too_many_domains)
{
	struct env e;
	const struct sg_endpoint_set *set;
	struct sg_error err = { 0 };
	char domain[64];

	env_new(&e, "");
	for (int i = 0; i < SG_ENDPOINTS_DOMAINS_MAX; i++) {
		snprintf(domain, sizeof(domain), "r%d.example", i);
		CHECK_EQ(sg_endpoints_get(e.eps, domain, &set, NULL), 0);
	}
	CHECK_EQ(sg_endpoints_get(e.eps, "one-more.example", &set, &err), -ENOMEM);
	CHECK_STR(err.msg, "too many registries");
	CHECK_EQ(sg_endpoints_get(e.eps, "r0.example", &set, NULL), 0);
	env_free(&e);
}

TEST_MAIN()
