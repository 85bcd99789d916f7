/* URLs and authorities as the registry client meets them: redirect Locations, token realms,
 * hosts.toml hosts and the insecure-hosts list.
 *
 * Only http and https URLs are accepted, without userinfo; a relative reference ("/path",
 * "path", "//host/path") is resolved against a base.  An authority is "host[:port]" or
 * "[v6][:port]", as in a Host header.  Pure: no allocation, no I/O.  Errors are negative
 * errno values.
 */
#ifndef STARGZD_NET_URL_H
#define STARGZD_NET_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_URL_HOST_MAX 262
#define SG_URL_TARGET_MAX 8192

struct sg_url {
	bool tls;                         /* https */
	char host[SG_URL_HOST_MAX];       /* as written, with [ ] for IPv6, no port */
	uint16_t port;
	bool explicit_port;
	char target[SG_URL_TARGET_MAX];   /* path + query, never empty ("/") */
};

/* Parses s (len bytes); relative references are resolved against base (which must be
 * absolute; NULL refuses them).  Returns 0, -EINVAL (not http(s), malformed, userinfo,
 * fragment-only) or -ENAMETOOLONG. */
int sg_url_parse(const char *s, size_t len, const struct sg_url *base, struct sg_url *ret);
/* "host" or "host:port" when the port is not the scheme's default (the Host header form).
 * Returns its length or -ENOSPC. */
int sg_url_authority(const struct sg_url *u, char *buf, size_t cap);
/* Splits an authority into a bare host (no brackets) and a port, the scheme's default when
 * none is written.  Returns 0, -EINVAL or -ENAMETOOLONG. */
int sg_url_split_authority(const char *authority, bool tls, char *host, size_t cap,
			   uint16_t *ret_port);

/* Whether plain HTTP may be used for `authority`: listed in insecure (exactly, or by host
 * name when the entry has no port), or local (localhost, 127.x, ::1) and localhost_ok. */
bool sg_url_plain_allowed(const char *const *insecure, size_t n, bool localhost_ok,
			  const char *authority);

#endif
