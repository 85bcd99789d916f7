/* The registry client: manifests and blobs over HTTP/1.1 (+ TLS), on the event loop.
 *
 * Layers, bottom up, all in registry.c:
 *  - hosts: one connection pool per (scheme, host:port, TLS profile) with keep-alive and at
 *    most max_conns_per_host connections; requests queue when the pool is full.  An idle
 *    connection has no op in flight, so a server that closed it is noticed on reuse: a reused
 *    connection that fails before the first response byte is retried at once, uncounted.
 *  - exchanges: one logical request with retries (connection errors, truncated bodies, 5xx,
 *    408, 429; exponential backoff with jitter, Retry-After honoured up to retry_max_ns;
 *    bounded by `attempts`), redirects (301/302/303/307/308, at most max_redirects; once a
 *    redirect leaves the origin (scheme, host, port) the request started at, no Authorization
 *    of any kind and no hosts.toml header is sent for the rest of the attempt, even after a
 *    redirect back: this holds for manifest, blob and token requests alike (a token request's
 *    Basic credentials go to the token realm only); a retry starts again at the registry,
 *    since presigned URLs expire), and auth (401 → Bearer token flow or Basic, once per
 *    exchange; tokens cached per (host, repository) until their expiry and dropped on a 401;
 *    concurrent 401s share one token request).  Timeouts: connect (+ TLS handshake), first
 *    response byte, idle body.
 *  - endpoints: for a reference's domain, the mirrors of certs.d/<domain>/hosts.toml (in file
 *    order, those with the needed capability) and then the upstream.  A mirror that fails in
 *    any way hands over to the next endpoint; mirrors get a single attempt per request
 *    (they are caches, the upstream is authoritative).  hosts.toml and its CA files are read
 *    once per domain, on first use (small local files; the one blocking read besides
 *    configuration).
 *
 * Plain HTTP is used only for hosts named in insecure_hosts, for localhost/127.0.0.1/::1 when
 * plain_http_localhost is set, and for hosts.toml entries written with an http:// URL (an
 * explicit administrator choice, as in containerd).  A redirect or token realm may use plain
 * HTTP only under the same rules, or when the request it came from was plain HTTP already.
 *
 * Range reads (the range source of sg_registry_open_blob, and sg_registry_read_ranges for
 * several ranges in one request): a 206 must carry a Content-Range that covers the request and
 * names the blob's size, and exactly as many body bytes as it announces; anything else is
 * -EIO, so a wrong byte never reaches the caller.  A 200 to a range request (a server that
 * ignores Range) is accepted: the body is the whole blob, so the client skips to the offset,
 * copies the requested bytes and then closes the connection instead of reading the rest.
 * Several ranges in one request: a multipart/byteranges 206 is split by part; a registry that
 * answers 400/416, the whole blob as 200, or only the first range is remembered (per
 * registry host) and the missing ranges are fetched one request each, from then on directly.
 *
 * Errors are negative errno values with a message: -ENOENT (404, unknown name), -EACCES
 * (401/403 after auth), -ETIMEDOUT, -ECONNREFUSED, -ECONNABORTED (TLS failure, e.g. an
 * unknown CA or a wrong name), -EIO (short or inconsistent response), -EBADMSG (malformed
 * response or manifest, digest mismatch), -EPERM (plain HTTP not allowed), -ELOOP (too many
 * redirects), -EPROTO (other HTTP status), -ECANCELED.  Nothing here logs.
 *
 * Credentials: the docker config's auths, or its credsStore / credHelpers helpers, which are
 * asked (net/credhelper.c, a child process, never blocking the loop) when a registry first
 * answers 401; their answer is cached, so one helper run serves many requests.
 *
 * Completions always run from the loop's dispatch, never inside the call that started them.
 */
#ifndef STARGZD_NET_REGISTRY_H
#define STARGZD_NET_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"
#include "daemon/core/range_source.h"

struct sg_registry;
struct sg_manifest;

#define SG_REGISTRY_HOSTS_DIR "/etc/containerd/certs.d"
#define SG_REGISTRY_RANGES_MAX 64          /* ranges in one sg_registry_read_ranges call */
#define SG_REGISTRY_HOSTS_MAX 64           /* connection pools (registries, mirrors, CDNs) */
#define SG_REGISTRY_ERR_MAX 512            /* error messages are truncated to this */

struct sg_registry_config {
	const char *hosts_dir;            /* certs.d; NULL = SG_REGISTRY_HOSTS_DIR, "" = none */
	const char *docker_config;        /* NULL = $DOCKER_CONFIG/config.json or
					   * ~/.docker/config.json if present; "" = none */
	const char *const *insecure_hosts;/* "host[:port]" that may use plain HTTP */
	size_t ninsecure_hosts;
	bool plain_http_localhost;        /* localhost, 127.0.0.1 and ::1 may use plain HTTP */
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
 * loop's hot path.  On error *reterr (if given) says why, e.g. a malformed config.json. */
int sg_registry_new(struct sg_loop *loop, const struct sg_registry_config *config,
		    struct sg_registry **ret, char *reterr, size_t errcap);
/* Cancels every request in flight (their callbacks run with -ECANCELED from the loop),
 * closes idle connections, kills credential helpers; new requests are refused with
 * -ECANCELED.  Then run (or drain) the loop until sg_registry_busy() is false and destroy
 * the blob sources, and only then sg_registry_free.  NULL is fine. */
void sg_registry_shutdown(struct sg_registry *r);
/* True while an exchange, a connection with an op in flight, a blob source or a manifest
 * fetch is alive (each points at the registry). */
bool sg_registry_busy(const struct sg_registry *r);
/* Frees the registry.  Aborts (SG_FREE_CHECK) while sg_registry_busy(): a request in
 * flight would call back into freed memory.  Idle pooled connections are closed here.
 * NULL is fine. */
void sg_registry_free(struct sg_registry *r);

/* ---- blobs ---- */

/* Same shape as daemon/remote.h's sg_blob_open_cb / sg_blob_opener.open, so main.c can plug
 * sg_registry_open_blob in directly: .open = sg_registry_open_blob, .ctx = registry. */
typedef void (*sg_registry_blob_cb)(void *userdata, int res, struct sg_range_source *src,
				    const char *err);

/* Resolves the blob `digest` of the repository named by `ref` (an image reference; its tag or
 * digest is ignored) to a range source: HEAD through the endpoints (following redirects) for
 * the size, or a bytes=0-0 GET when a registry leaves Content-Length out.  cb runs once from
 * the loop: res 0 with a source (free with sg_range_source_free), or a negative errno and a
 * message.  Returns 0, or -EINVAL / -ENOMEM at once (then cb never runs); a malformed
 * reference or digest is reported through cb. */
int sg_registry_open_blob(void *registry, const char *ref, const char *digest,
			  sg_registry_blob_cb cb, void *userdata);

/* Several ranges of a registry blob source in one request when the host allows it.  Each
 * range lands in its own buffer; the op completes once with the total byte count or a
 * negative errno (as sg_range_read).  Ranges must lie inside the blob; at most
 * SG_REGISTRY_RANGES_MAX.  sg_range_cancel(src, op) cancels it like a read. */
struct sg_registry_range {
	uint64_t offset;
	size_t len;
	void *buf;
};
int sg_registry_read_ranges(struct sg_range_source *src, const struct sg_registry_range *ranges,
			    size_t n, struct sg_op *op, sg_op_cb cb);
/* True if src came from sg_registry_open_blob. */
bool sg_registry_is_source(const struct sg_range_source *src);
/* Why the last failed read of this source failed (static until the next failure), or "". */
const char *sg_registry_source_error(const struct sg_range_source *src);

/* ---- manifests ---- */

struct sg_registry_manifest {
	const char *ref;                  /* the normalized reference */
	const char *digest;               /* of the image manifest ("sha256:...") */
	const char *index_digest;         /* of the index it was selected from, or NULL */
	const char *media_type;           /* effective type of the image manifest */
	const uint8_t *data;              /* the image manifest bytes as served */
	size_t len;
	const struct sg_manifest *manifest;
};
/* Valid only during the callback. */
typedef void (*sg_registry_manifest_cb)(void *userdata, int res,
					const struct sg_registry_manifest *m, const char *err);

/* Fetches the manifest of `ref` (by tag or digest; a digest is verified against the bytes),
 * and if it is an index, the image manifest for `platform` ("os/arch[/variant]", NULL =
 * linux/amd64).  Returns 0 or -EINVAL/-ENOMEM at once; otherwise cb runs once. */
int sg_registry_get_manifest(struct sg_registry *r, const char *ref, const char *platform,
			     sg_registry_manifest_cb cb, void *userdata);

/* ---- introspection (tests, the CLI's --verbose) ---- */

enum sg_registry_multirange {
	SG_MULTIRANGE_UNKNOWN,            /* not tried yet */
	SG_MULTIRANGE_OK,                 /* multipart/byteranges answers seen */
	SG_MULTIRANGE_REFUSED,            /* 400/416 (GCR-like) */
	SG_MULTIRANGE_WHOLE,              /* the whole blob as 200 (ECR-like) */
	SG_MULTIRANGE_FIRST_ONLY,         /* a plain 206 with only (part of) the ranges */
	_SG_MULTIRANGE_MAX,
};
const char *sg_registry_multirange_name(enum sg_registry_multirange m);

struct sg_registry_host_stats {
	enum sg_registry_multirange multirange;
	bool ignores_ranges;              /* answered a single range with 200 */
	unsigned conns_opened;
	unsigned conns_max_seen;          /* peak simultaneous connections */
	unsigned requests;                /* requests sent, retries included */
	unsigned retries;
	unsigned reused;                  /* requests sent on a kept-alive connection */
};
/* `host` is "host:port" as in the URL ("127.0.0.1:5000"); http and https pools are summed.
 * Returns 0 or -ENOENT. */
int sg_registry_host_stats(const struct sg_registry *r, const char *host,
			   struct sg_registry_host_stats *ret);

/* ---- pure helpers, exposed for unit tests ---- */

/* Backoff before attempt `attempt` (1 = the first retry): base * 2^(attempt-1), capped at max,
 * then scaled by a jitter factor in [0.5, 1.0] given as jitter_permille (500..1000). */
uint64_t sg_registry_backoff_ns(unsigned attempt, uint64_t base_ns, uint64_t max_ns,
				unsigned jitter_permille);
/* Retry-After: delta-seconds only (an HTTP-date is treated as absent).  Returns 0 with the
 * delay, capped at max_ns, or -EINVAL. */
int sg_registry_retry_after(const char *value, size_t len, uint64_t max_ns, uint64_t *ret_ns);
/* Statuses worth retrying: 408, 429, 500, 502, 503, 504 (and other 5xx except 501/505). */
bool sg_registry_status_retryable(int status);

/* URLs the client follows (redirect Locations, token realms).  Relative references
 * ("/path", "path") are resolved against base (which must be absolute). */
#define SG_URL_HOST_MAX 262
#define SG_URL_TARGET_MAX 8192
struct sg_url {
	bool tls;                         /* https */
	char host[SG_URL_HOST_MAX];       /* as written, with [ ] for IPv6, no port */
	uint16_t port;
	bool explicit_port;
	char target[SG_URL_TARGET_MAX];   /* path + query, never empty ("/") */
};
/* Returns 0, -EINVAL (not http(s), malformed, userinfo, fragment-only) or -ENAMETOOLONG. */
int sg_url_parse(const char *s, size_t len, const struct sg_url *base, struct sg_url *ret);
/* "host" or "host:port" when the port is not the scheme's default (the Host header form). */
int sg_url_authority(const struct sg_url *u, char *buf, size_t cap);

/* Whether plain HTTP may be used for `authority` ("host[:port]"): listed (exactly, or by host
 * name when the entry has no port), or local and plain_http_localhost. */
bool sg_registry_plain_allowed(const char *const *insecure, size_t n, bool localhost_ok,
			       const char *authority);

/* The "message" of the first entry of a registry error body ({"errors":[{"code":..,
 * "message":..}]}), as "CODE: message"; falls back to the printable prefix of the body.
 * Writes a C string; returns its length (0 if nothing useful). */
size_t sg_registry_error_text(const char *body, size_t len, char *buf, size_t cap);

#endif
