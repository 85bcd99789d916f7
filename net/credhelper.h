/* Docker credential helpers (config.json `credsStore` / `credHelpers`), run off the loop.
 *
 * For a (helper, server) pair the module runs `docker-credential-HELPER get` (found in PATH)
 * with the server on stdin, as docker does, and parses the JSON it prints:
 *     {"ServerURL": "...", "Username": "...", "Secret": "..."}
 * The child is started with posix_spawnp; its stdout is read through poll ops on the loop and
 * it is reaped when its pidfd becomes readable, so nothing blocks the loop.  A helper that has
 * not finished within the timeout is killed with its process group.  Its stderr is the
 * process's own (the daemon's log when detached), so a helper's complaints are kept.  The answer (or the
 * failure) is cached per pair, so a helper runs once for many requests: successes for
 * SG_CREDHELPER_TTL_S, failures for SG_CREDHELPER_FAIL_TTL_S (so that a fixed helper is picked
 * up without a restart, yet a broken one is not run for every request).
 *
 * A failure of any kind (not in PATH, non-zero exit, "credentials not found", bad JSON,
 * timeout) resolves to "no credentials" (-ENOENT) with a message saying why: the caller goes
 * on anonymously.  Username "<token>" means the Secret is an identity (OAuth2 refresh) token,
 * as in docker; it is returned in identity_token and the password stays NULL.
 *
 * Waiting for an answer is a continuation in the loop's shape (daemon/core/loop.h): the
 * caller's op completes once, from the loop.
 *
 * Errors are negative errno values.  Nothing here logs.
 */
#ifndef STARGZD_NET_CREDHELPER_H
#define STARGZD_NET_CREDHELPER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_docker_cred;
struct sg_credhelper;

#define SG_CREDHELPER_TIMEOUT_NS (10ull * 1000000000ull)
#define SG_CREDHELPER_TTL_S 900
#define SG_CREDHELPER_FAIL_TTL_S 30
#define SG_CREDHELPER_OUTPUT_MAX (64 * 1024)   /* more stdout than this is a broken helper */
#define SG_CREDHELPER_ERR_MAX 256

/* timeout_ns 0 = SG_CREDHELPER_TIMEOUT_NS. */
int sg_credhelper_new(struct sg_loop *loop, uint64_t timeout_ns, struct sg_credhelper **ret);
/* Kills running helpers; the memory goes once their ops have completed, so keep running (or
 * drain) the loop.  Ops still waiting complete with -ECANCELED.  NULL is fine. */
void sg_credhelper_free(struct sg_credhelper *ch);

/* The cached answer for (helper, server).  Returns 0 with *ret filled (free with
 * sg_docker_cred_done), -ENOENT when the helper failed or had nothing (err, which may be
 * NULL, says why: "docker-credential-NAME has no credentials for SERVER"), -EAGAIN when no
 * answer is cached (sg_credhelper_wait gets one), -ECANCELED after sg_credhelper_free, or
 * -ENOMEM. */
int sg_credhelper_lookup(struct sg_credhelper *ch, const char *helper, const char *server,
			 struct sg_docker_cred *ret, struct sg_error *err);
/* Waits for the answer for (helper, server), starting the helper unless it runs already:
 * cb(op) runs once from the loop, with op->res 0 when an answer is cached (read it with
 * sg_credhelper_lookup; at once if one is cached already), or -ECANCELED (cancelled, or the
 * module freed).  Returns 0, or -EINVAL, -EBUSY (op in flight), -ECANCELED, -ENOMEM at once. */
int sg_credhelper_wait(struct sg_credhelper *ch, const char *helper, const char *server,
		       struct sg_op *op, sg_op_cb cb);
/* Makes a waiting op complete early with -ECANCELED.  Returns 0, or -EALREADY when op is not
 * waiting (its completion is on its way, or it never waited).  ch may be NULL. */
int sg_credhelper_cancel(struct sg_credhelper *ch, struct sg_op *op);

/* How many helper processes this instance has started (tests, statistics). */
unsigned sg_credhelper_runs(const struct sg_credhelper *ch);

/* ---- pure, exposed for unit tests ---- */

/* Parses a helper's `get` output.  Returns 0 with *ret filled (username + password, or
 * identity_token for "<token>"), -ENOENT when the helper said it has no credentials
 * ("credentials not found in native keychain", or empty Username and Secret), -EBADMSG for
 * anything else, -ENOMEM; err (may be NULL) says why. */
int sg_credhelper_parse(const char *out, size_t len, struct sg_docker_cred *ret,
			struct sg_error *err);

#endif
