/* containerd's registry host configuration, /etc/containerd/certs.d/<namespace>/hosts.toml,
 * parsed strictly: the subset of TOML that format uses, and nothing else.
 *
 *   server = "https://registry-1.docker.io"     # the upstream (optional)
 *   capabilities = ["pull", "resolve", "push"]  # top-level keys configure the upstream
 *
 *   [host."https://mirror.example.com"]         # mirrors, tried in file order
 *     capabilities = ["pull", "resolve"]
 *     ca = "/etc/certs/mirror.pem"              # or an array of paths
 *     client = [["/c.pem", "/k.pem"]]           # or "/c.pem", or ["/c.pem", ...]
 *     skip_verify = true
 *     override_path = true                      # the URL path is the full API prefix
 *     [host."https://mirror.example.com".header]
 *       x-custom = "a"
 *       x-multi = ["b", "c"]
 *
 * Supported TOML: comments, bare/quoted keys, basic and literal strings (no multi-line
 * strings), booleans, arrays (also nested, multi-line, trailing comma), the tables above.
 * Anything else (integers, dates, inline tables, dotted keys on the left of '=', array tables,
 * unknown keys or tables, duplicate keys) is an error with a line number: a file that would
 * configure something we silently ignore is worse than one that fails loudly.
 *
 * Semantics follow containerd (remotes/docker/config/hosts.go): a host key without a scheme
 * means https; unless override_path is set, "/v2" is appended to the URL path (unless it
 * already ends with it); relative CA and client paths are relative to the file's directory;
 * capabilities default to pull+resolve+push.  Without `server` the upstream is
 * https://<namespace> (https://registry-1.docker.io for docker.io).
 */
#ifndef STARGZD_NET_HOSTS_TOML_H
#define STARGZD_NET_HOSTS_TOML_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/error.h"

#define SG_HOSTS_TOML_MAX      (64 * 1024)
#define SG_HOSTS_MAX           32      /* [host."..."] tables */
#define SG_HOSTS_ARRAY_MAX     32      /* items in one array */
#define SG_HOSTS_HEADERS_MAX   32      /* header names per host */
#define SG_HOSTS_STRING_MAX    4096

enum {
	SG_HOST_CAP_PULL = 1 << 0,
	SG_HOST_CAP_RESOLVE = 1 << 1,
	SG_HOST_CAP_PUSH = 1 << 2,
	SG_HOST_CAP_ALL = 7,
};

struct sg_hosts_header {
	char *name;
	char **values;
	size_t nvalues;
};

struct sg_hosts_client {
	char *cert;
	char *key;    /* NULL: the key is in the cert file */
};

struct sg_hosts_entry {
	char *scheme;     /* "https" or "http" */
	char *host;       /* "mirror.example.com:5000" */
	char *path;       /* API prefix, e.g. "/v2" or "/mirror/v2" */
	unsigned caps;
	bool skip_verify;
	bool override_path;
	char **ca;
	size_t nca;
	struct sg_hosts_client *clients;
	size_t nclients;
	struct sg_hosts_header *headers;
	size_t nheaders;
	char *dial_timeout;   /* as written ("5s"); NULL if unset */
};

struct sg_hosts_config {
	struct sg_hosts_entry *mirrors;   /* in file order */
	size_t nmirrors;
	struct sg_hosts_entry upstream;
};

/* Parses `text` for registry namespace `ns` ("docker.io", "localhost:5000").  `dir` (may be
 * NULL) is the directory relative paths are resolved against.  Returns 0, -EBADMSG or -E2BIG
 * (err, which may be NULL, says why; err->code is the 1-based line the error is about, 0 if
 * it is about no line), -EINVAL (bad ns) or -ENOMEM (those two without a message). */
int sg_hosts_toml_parse(const char *text, size_t len, const char *ns, const char *dir,
			struct sg_hosts_config **ret, struct sg_error *err);
/* The configuration used when there is no hosts.toml: just the default upstream. */
int sg_hosts_default(const char *ns, struct sg_hosts_config **ret);
void sg_hosts_config_free(struct sg_hosts_config *cfg);

#endif
