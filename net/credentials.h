/* Credentials for registry hosts: the docker config's own (its "auths"), or the answer of the
 * credential helper it names for the host (credsStore / credHelpers, run by net/credhelper).
 *
 * Looking up never blocks: a helper that has not answered yet is -EAGAIN, and
 * sg_credentials_wait asks it, a continuation in the loop's shape (daemon/core/loop.h).
 * Its answer is cached by net/credhelper, so one run serves many requests.  Errors are
 * negative errno values.  Nothing here logs.
 */
#ifndef STARGZD_NET_CREDENTIALS_H
#define STARGZD_NET_CREDENTIALS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_credentials;
struct sg_docker_config;
struct sg_docker_cred;

/* Takes `docker` (may be NULL: no credentials at all; freed with the object, also on
 * failure).  helper_timeout_ns 0 = net/credhelper's default.  Returns 0 or -ENOMEM. */
int sg_credentials_new(struct sg_loop *loop, struct sg_docker_config *docker,
		       uint64_t helper_timeout_ns, struct sg_credentials **ret);
/* Kills running helpers (ops still waiting complete with -ECANCELED); from then on a helper's
 * credentials are -ECANCELED.  The docker config's own still answer.  NULL is fine. */
void sg_credentials_shutdown(struct sg_credentials *c);
/* Shuts down if need be and frees.  NULL is fine. */
void sg_credentials_free(struct sg_credentials *c);

/* Credentials handed over at run time for a host (kubelet's, from a CRI PullImage): they take
 * precedence over the docker config's for that host, and replace what was given before.  At
 * most 64 hosts (the oldest goes).  Returns 0 or -ENOMEM. */
int sg_credentials_give(struct sg_credentials *c, const char *host, const char *username,
			const char *password);

/* Credentials for a registry host ("ghcr.io", "127.0.0.1:5000").  Returns 0 with *ret (free
 * with sg_docker_cred_done), -ENOENT (nothing configured, or the helper had none: then err,
 * which may be NULL, says why), -EAGAIN (the helper has not answered: sg_credentials_wait),
 * or another negative errno. */
int sg_credentials_lookup(struct sg_credentials *c, const char *host, struct sg_docker_cred *ret,
			  struct sg_error *err);
/* Asks the host's credential helper: cb(op) runs once from the loop when it has answered
 * (op->res 0; sg_credentials_lookup then has the answer), or with -ECANCELED.  Returns 0,
 * or at once -ENOENT (no helper to ask) or another negative errno. */
int sg_credentials_wait(struct sg_credentials *c, const char *host, struct sg_op *op,
			sg_op_cb cb);
/* Makes a waiting op complete early with -ECANCELED.  Returns 0 or -EALREADY. */
int sg_credentials_cancel(struct sg_credentials *c, struct sg_op *op);

/* "Basic base64(user:password)" for the host when sg_credentials_lookup has a user name and
 * a password.  Returns the length, -ENOENT (none; err may say why), -EAGAIN, -ENOSPC... */
int sg_credentials_basic(struct sg_credentials *c, const char *host, char *buf, size_t cap,
			 struct sg_error *err);

#endif
