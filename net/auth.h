/* Registry authentication, the pure parts: WWW-Authenticate challenges, the token endpoint
 * URL, token responses, Basic credentials and the Docker config file.
 *
 * Nothing here performs I/O: the caller fetches the token URL, reads config.json, and runs
 * credential helpers (off the loop).  Errors are negative errno values: -EBADMSG for malformed
 * input, -E2BIG/-ENAMETOOLONG when a bound is exceeded, -ENOSPC for a too-small output
 * buffer, -ENOMEM, -ENOENT for "no such entry".
 */
#ifndef STARGZD_NET_AUTH_H
#define STARGZD_NET_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "daemon/core/error.h"

/* ---- WWW-Authenticate (RFC 7235 challenges) ---- */

enum sg_auth_scheme {
	SG_AUTH_OTHER,
	SG_AUTH_BASIC,
	SG_AUTH_BEARER,
};

#define SG_AUTH_REALM_MAX   1024
#define SG_AUTH_SERVICE_MAX 256
#define SG_AUTH_SCOPE_MAX   1024
#define SG_AUTH_CHALLENGES_MAX 8
#define SG_AUTH_PARAMS_MAX  16      /* per challenge; more is malformed or hostile */

struct sg_auth_challenge {
	enum sg_auth_scheme scheme;
	char realm[SG_AUTH_REALM_MAX];
	char service[SG_AUTH_SERVICE_MAX];
	char scope[SG_AUTH_SCOPE_MAX];   /* space-separated scopes, as the registry sent them */
	char error[64];                  /* Bearer error="insufficient_scope" etc. */
};

/* Parses one header value holding one or more challenges.  Unknown schemes are kept as
 * SG_AUTH_OTHER; unknown parameters are skipped.  Returns the number of challenges stored
 * (at most max), or -EBADMSG / -ENAMETOOLONG. */
int sg_auth_parse_challenges(const char *value, size_t len, struct sg_auth_challenge *out,
			     size_t max);

/* The token request URL: realm + "?service=...&scope=...&scope=..." with query escaping;
 * scopes are the challenge's space-separated list plus `extra_scope` (may be NULL), each
 * once.  A realm that already has a query gets "&".  Only http(s) realms are accepted.
 * Returns the length, -EINVAL or -ENOSPC. */
int sg_auth_token_url(const struct sg_auth_challenge *c, const char *extra_scope, char *buf,
		      size_t cap);

/* Percent-encodes everything but RFC 3986 unreserved characters.  Returns length or -ENOSPC. */
int sg_auth_query_escape(const char *s, size_t len, char *buf, size_t cap);

/* ---- token responses ---- */

#define SG_AUTH_TOKEN_MAX (64 * 1024)
/* The distribution token spec: tokens without expires_in last 60 s, and shorter values are
 * raised to that minimum. */
#define SG_AUTH_TOKEN_DEFAULT_TTL 60

struct sg_auth_token {
	char *token;            /* malloc'd; "token", or "access_token" for OAuth2 servers */
	int64_t expires_in;     /* seconds */
	time_t issued_at;       /* from the response, or 0 when absent */
};

/* Parses the JSON body of a token endpoint response.  Returns 0, -EBADMSG, -E2BIG, -ENOMEM. */
int sg_auth_parse_token(const char *json, size_t len, struct sg_auth_token *ret);
void sg_auth_token_done(struct sg_auth_token *t);
/* When the token stops being usable, from `now` (the time the response arrived) unless the
 * response said when it was issued; minus a safety margin so that a request is not sent with
 * a token that expires in flight. */
time_t sg_auth_token_expiry(const struct sg_auth_token *t, time_t now);

/* RFC 3339 "2024-01-02T03:04:05[.frac](Z|+hh:mm)" to a time_t.  0 or -EBADMSG. */
int sg_auth_parse_rfc3339(const char *s, size_t len, time_t *ret);

/* ---- Basic ---- */

/* Writes "Basic base64(user:pass)".  A ':' in the user name is refused (-EINVAL): it cannot
 * be represented.  Returns the length or -ENOSPC. */
int sg_auth_basic_header(const char *user, const char *pass, char *buf, size_t cap);
int sg_base64_encode(const uint8_t *in, size_t len, char *buf, size_t cap);
/* Strict standard base64 with padding (docker's auth field); returns the decoded length,
 * -EBADMSG or -ENOSPC. */
int sg_base64_decode(const char *in, size_t len, uint8_t *buf, size_t cap);

/* ---- Docker config.json ---- */

#define SG_DOCKER_CONFIG_MAX (1 << 20)
#define SG_DOCKER_CONFIG_ENTRIES_MAX 256

struct sg_docker_cred {
	char *username;        /* malloc'd, or NULL */
	char *password;
	char *identity_token;  /* "identitytoken": an OAuth2 refresh token */
	char *helper;          /* credential helper name (credHelpers entry or credsStore) */
};

struct sg_docker_config;

/* Parses config.json.  Entries whose key is a URL ("https://index.docker.io/v1/") are keyed
 * by their host.  Returns 0, -EBADMSG, -E2BIG or -ENOMEM, with the reason in err (may be
 * NULL; daemon/core/error.h). */
int sg_docker_config_parse(const char *json, size_t len, struct sg_docker_config **ret,
			   struct sg_error *err);
void sg_docker_config_free(struct sg_docker_config *cfg);

/* Looks up credentials for a registry host ("docker.io", "ghcr.io", "localhost:5000").
 * Docker Hub's aliases (docker.io, index.docker.io, registry-1.docker.io) are one registry.
 * Precedence, as in docker (configfile.GetCredentialsStore): credHelpers[host], then
 * credsStore (the helper, not the file, holds the secrets then), and only without either an
 * auths entry with inline credentials.  Returns 0 with *ret filled (free with sg_docker_cred_done; only
 * `helper` is set when a helper holds the credentials: net/credhelper runs it), or -ENOENT
 * for anonymous access, or -ENOMEM / -EBADMSG (bad base64 in "auth"). */
int sg_docker_config_lookup(const struct sg_docker_config *cfg, const char *host,
			    struct sg_docker_cred *ret);
void sg_docker_cred_done(struct sg_docker_cred *c);

/* The server name a credential helper is asked about for a registry host: docker's key,
 * "https://index.docker.io/v1/" for Docker Hub (under any of its aliases), else the host as
 * written ("127.0.0.1:5000").  Returns the length, -ENOSPC or -ENOMEM. */
int sg_docker_helper_server(const char *host, char *buf, size_t cap);

#endif
