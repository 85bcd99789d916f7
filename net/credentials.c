/* Registry credentials from the docker config and its credential helpers.  See
 * credentials.h. */
#include "net/credentials.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/auth.h"
#include "net/credhelper.h"
#include "net/url.h"

#define GIVEN_MAX 64

/* Credentials handed over at run time (kubelet's, through the CRI proxy), by host. */
struct given {
	char *host, *username, *password;
};

struct sg_credentials {
	struct sg_docker_config *docker;
	struct sg_credhelper *helpers;        /* NULL once shut down */
	struct given given[GIVEN_MAX];
	size_t ngiven;
};

static void given_done(struct given *g)
{
	/* Scrubbed before free: a password should not linger in freed heap. */
	if (g->password)
		explicit_bzero(g->password, strlen(g->password));
	free(g->host);
	free(g->username);
	free(g->password);
	*g = (struct given){ 0 };
}

int sg_credentials_give(struct sg_credentials *c, const char *host, const char *username,
			const char *password)
{
	size_t i = 0;

	while (i < c->ngiven && strcasecmp(c->given[i].host, host) != 0)
		i++;
	if (i == GIVEN_MAX) {
		/* The oldest goes: the newest pull is the one that must work. */
		given_done(&c->given[0]);
		memmove(&c->given[0], &c->given[1], (GIVEN_MAX - 1) * sizeof(c->given[0]));
		c->given[GIVEN_MAX - 1] = (struct given){ 0 };
		i = GIVEN_MAX - 1;
		c->ngiven--;
	}
	struct given g = { strdup(host), strdup(username), strdup(password) };
	if (!g.host || !g.username || !g.password) {
		given_done(&g);
		return -ENOMEM;
	}
	if (i < c->ngiven)
		given_done(&c->given[i]);
	else
		c->ngiven++;
	c->given[i] = g;
	return 0;
}

int sg_credentials_new(struct sg_loop *loop, struct sg_docker_config *docker,
		       uint64_t helper_timeout_ns, struct sg_credentials **ret)
{
	struct sg_credentials *c = calloc(1, sizeof(*c));
	int r;

	*ret = NULL;
	if (!c) {
		sg_docker_config_free(docker);
		return -ENOMEM;
	}
	c->docker = docker;
	r = sg_credhelper_new(loop, helper_timeout_ns, &c->helpers);
	if (r < 0) {
		sg_credentials_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

void sg_credentials_shutdown(struct sg_credentials *c)
{
	if (!c)
		return;
	/* The helper cache frees itself once the ops of its runs have completed (it owns
	 * them, not us). */
	sg_credhelper_free(c->helpers);
	c->helpers = NULL;
}

void sg_credentials_free(struct sg_credentials *c)
{
	if (!c)
		return;
	sg_credentials_shutdown(c);
	sg_docker_config_free(c->docker);
	for (size_t i = 0; i < c->ngiven; i++)
		given_done(&c->given[i]);
	free(c);
}

/* Where a host's credentials come from: the docker config's own (0 with *ret, no helper), a
 * credential helper (0 with ret->helper and the server name to ask it about), nowhere
 * (-ENOENT), or another negative errno. */
static int source(struct sg_credentials *c, const char *host, struct sg_docker_cred *ret,
		  char *server, size_t cap)
{
	int r;

	*ret = (struct sg_docker_cred){ 0 };
	for (size_t i = 0; i < c->ngiven; i++) {
		if (strcasecmp(c->given[i].host, host) != 0)
			continue;
		ret->username = strdup(c->given[i].username);
		ret->password = strdup(c->given[i].password);
		if (!ret->username || !ret->password) {
			sg_docker_cred_done(ret);
			return -ENOMEM;
		}
		return 0;
	}
	if (!c->docker)
		return -ENOENT;
	r = sg_docker_config_lookup(c->docker, host, ret);
	if (r < 0 || !ret->helper)
		return r;
	r = c->helpers ? sg_docker_helper_server(host, server, cap) : -ECANCELED;
	if (r < 0)
		sg_docker_cred_done(ret);
	return r < 0 ? r : 0;
}

int sg_credentials_lookup(struct sg_credentials *c, const char *host, struct sg_docker_cred *ret,
			  struct sg_error *err)
{
	struct sg_docker_cred src;
	char server[SG_URL_HOST_MAX + 32];
	int r = source(c, host, &src, server, sizeof(server));

	if (r < 0 || !src.helper) {
		*ret = src;
		return r;
	}
	r = sg_credhelper_lookup(c->helpers, src.helper, server, ret, err);
	sg_docker_cred_done(&src);
	return r;
}

int sg_credentials_wait(struct sg_credentials *c, const char *host, struct sg_op *op,
			sg_op_cb cb)
{
	struct sg_docker_cred src;
	char server[SG_URL_HOST_MAX + 32];
	int r = source(c, host, &src, server, sizeof(server));

	if (r == 0)
		r = src.helper ? sg_credhelper_wait(c->helpers, src.helper, server, op, cb) : -ENOENT;
	sg_docker_cred_done(&src);
	return r;
}

int sg_credentials_cancel(struct sg_credentials *c, struct sg_op *op)
{
	return sg_credhelper_cancel(c->helpers, op);
}

int sg_credentials_basic(struct sg_credentials *c, const char *host, char *buf, size_t cap,
			 struct sg_error *err)
{
	struct sg_docker_cred cred;
	int r = sg_credentials_lookup(c, host, &cred, err);

	if (r == 0)
		r = cred.username && cred.password ?
			    sg_auth_basic_header(cred.username, cred.password, buf, cap) :
			    -ENOENT;
	sg_docker_cred_done(&cred);
	return r;
}
