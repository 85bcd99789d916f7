/* A registry client on its own loop, talking plain HTTP to a tests/helpers/http_server.h
 * server on 127.0.0.1, and the open of one blob there: shared by the unit tests of net/blob
 * and net/registry.  Header-only: each test program includes it once. */
#ifndef STARGZD_TESTS_REGISTRY_ENV_H
#define STARGZD_TESTS_REGISTRY_ENV_H

#include <stdio.h>
#include <string.h>

#include "net/blob.h"
#include "net/registry.h"
#include "tests/helpers/http_server.h"
#include "tests/unit/test.h"

struct registry_env {
	struct sg_loop *loop;
	struct sg_registry *reg;
	struct test_server srv;
	struct sg_op op;                  /* the open */
	struct sg_error err;
	struct sg_range_source *src;
	int open_res;
	bool opened;
};

static inline void registry_env_on_open(struct sg_op *op)
{
	struct registry_env *c = sg_container_of(op, struct registry_env, op);
	CHECK(!c->opened);
	c->open_res = op->res;
	c->opened = true;
}

/* The server (c->srv filled in by the caller: blob or script) and the registry. */
static inline void registry_env_start(struct registry_env *c, unsigned max_conns,
				      unsigned attempts)
{
	const char *insecure[] = { "127.0.0.1" };
	struct sg_registry_config cfg = {
		.hosts_dir = "", .docker_config = "", .no_system_ca = true,
		.insecure_hosts = insecure, .ninsecure_hosts = 1,
		.max_conns_per_host = max_conns, .connect_timeout_ns = 5000000000ull,
		.attempts = attempts,
	};

	CHECK(test_server_start(&c->srv) > 0);
	CHECK_EQ(sg_loop_new(&(struct sg_loop_config){ 0 }, &c->loop), 0);
	CHECK_EQ(sg_registry_new(c->loop, &cfg, &c->reg, &c->err), 0);
	CHECK_STR(c->err.msg, "");
	sg_op_init(&c->op);
}

/* Starts opening the blob `digest` of the server's test/blob repository. */
static inline void registry_env_open_start(struct registry_env *c, const char *digest)
{
	char ref[64];

	c->opened = false;
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/blob:v1", c->srv.port);
	CHECK_EQ(sg_registry_open_blob(c->reg, ref, digest, &c->src, &c->err, &c->op,
				       registry_env_on_open), 0);
	CHECK(!c->opened);   /* never from inside the call */
}

/* Opens it and waits; returns the open's result. */
static inline int registry_env_open(struct registry_env *c, const char *digest)
{
	registry_env_open_start(c, digest);
	for (int i = 0; i < 200 && !c->opened; i++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK(c->opened);
	return c->open_res;
}

/* The right order: the source, shutdown, drain, free. */
static inline void registry_env_stop(struct registry_env *c)
{
	sg_range_source_free(c->src);
	sg_registry_shutdown(c->reg);
	CHECK_EQ(sg_loop_drain(c->loop, 5000), 0);
	CHECK(!sg_registry_busy(c->reg));
	sg_registry_free(c->reg);
	sg_loop_free(c->loop);
}

#endif
