/* URLs and authorities of the registry client.  See url.h. */
#include "net/url.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net/http1.h"

static bool bad_url_char(char ch)
{
	return (unsigned char)ch <= 0x20 || ch == 0x7f;
}

int sg_url_parse(const char *s, size_t len, const struct sg_url *base, struct sg_url *ret)
{
	struct sg_url u = { 0 };
	size_t i = 0, hs, he, n;

	if (!s)
		return -EINVAL;
	for (size_t k = 0; k < len; k++)
		if (bad_url_char(s[k]))
			return -EINVAL;
	if (len >= 7 && !strncasecmp(s, "http://", 7)) {
		u.tls = false;
		i = 7;
	} else if (len >= 8 && !strncasecmp(s, "https://", 8)) {
		u.tls = true;
		i = 8;
	} else if (len >= 2 && s[0] == '/' && s[1] == '/') {
		if (!base)
			return -EINVAL;
		u.tls = base->tls;
		i = 2;
	} else {
		/* A relative reference: path-absolute or relative to the base's directory. */
		if (!base || len == 0 || s[0] == '#' || memchr(s, ':', strcspn(s, "/?")) != NULL)
			return -EINVAL;
		u = *base;
		if (s[0] == '/') {
			if (len >= sizeof(u.target))
				return -ENAMETOOLONG;
			memcpy(u.target, s, len);
			u.target[len] = '\0';
		} else {
			const char *q = strchr(base->target, '?');
			size_t blen = q ? (size_t)(q - base->target) : strlen(base->target);
			while (blen > 0 && base->target[blen - 1] != '/')
				blen--;
			if (blen + len >= sizeof(u.target))
				return -ENAMETOOLONG;
			memmove(u.target + blen, s, len);
			u.target[blen + len] = '\0';
		}
		*ret = u;
		return 0;
	}
	/* authority */
	hs = i;
	while (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	he = i;
	if (he == hs || memchr(s + hs, '@', he - hs))
		return -EINVAL;
	{
		const char *a = s + hs;
		size_t alen = he - hs, hlen;
		const char *colon = NULL;
		if (a[0] == '[') {
			const char *rb = memchr(a, ']', alen);
			if (!rb || rb == a + 1)
				return -EINVAL;
			hlen = (size_t)(rb - a) - 1;
			if (hlen >= sizeof(u.host))
				return -ENAMETOOLONG;
			memcpy(u.host, a + 1, hlen);
			u.host[hlen] = '\0';
			if ((size_t)(rb - a) + 1 < alen) {
				if (rb[1] != ':')
					return -EINVAL;
				colon = rb + 1;
			}
		} else {
			colon = memchr(a, ':', alen);
			hlen = colon ? (size_t)(colon - a) : alen;
			if (hlen == 0)
				return -EINVAL;
			if (hlen >= sizeof(u.host))
				return -ENAMETOOLONG;
			memcpy(u.host, a, hlen);
			u.host[hlen] = '\0';
			for (size_t k = 0; k < hlen; k++) {
				char ch = u.host[k];
				if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
					return -EINVAL;
			}
		}
		u.port = u.tls ? 443 : 80;
		if (colon) {
			uint64_t p;
			size_t plen = (size_t)(a + alen - colon) - 1;
			if (plen == 0) {
				/* "host:" means the default port. */
			} else if (sg_http1_parse_u64(colon + 1, plen, &p) < 0 || p == 0 || p > 65535) {
				return -EINVAL;
			} else {
				u.port = (uint16_t)p;
				u.explicit_port = true;
			}
		}
	}
	/* path + query, without a fragment */
	n = len - i;
	{
		const char *frag = memchr(s + i, '#', n);
		if (frag)
			n = (size_t)(frag - (s + i));
	}
	if (n == 0 || s[i] != '/') {
		if (n + 1 >= sizeof(u.target))
			return -ENAMETOOLONG;
		u.target[0] = '/';
		memcpy(u.target + 1, s + i, n);
		u.target[n + 1] = '\0';
	} else {
		if (n >= sizeof(u.target))
			return -ENAMETOOLONG;
		memcpy(u.target, s + i, n);
		u.target[n] = '\0';
	}
	*ret = u;
	return 0;
}

int sg_url_authority(const struct sg_url *u, char *buf, size_t cap)
{
	bool v6 = strchr(u->host, ':') != NULL;
	bool def = u->port == (u->tls ? 443 : 80);
	int n;

	if (def)
		n = snprintf(buf, cap, v6 ? "[%s]" : "%s", u->host);
	else
		n = snprintf(buf, cap, v6 ? "[%s]:%u" : "%s:%u", u->host, (unsigned)u->port);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int sg_url_split_authority(const char *auth, bool tls, char *host, size_t cap,
			   uint16_t *ret_port)
{
	struct sg_url u;
	char tmp[SG_URL_HOST_MAX + 16];
	int r;

	if (snprintf(tmp, sizeof(tmp), "%s://%s/", tls ? "https" : "http", auth) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	r = sg_url_parse(tmp, strlen(tmp), NULL, &u);
	if (r < 0)
		return r;
	if (strlen(u.host) >= cap)
		return -ENAMETOOLONG;
	strcpy(host, u.host);
	*ret_port = u.port;
	return 0;
}

static bool is_local_host(const char *host)
{
	return !strcasecmp(host, "localhost") || !strcmp(host, "::1") ||
	       !strncmp(host, "127.", 4);
}

bool sg_url_plain_allowed(const char *const *insecure, size_t n, bool localhost_ok,
			  const char *authority)
{
	char host[SG_URL_HOST_MAX];
	uint16_t port;

	if (!authority || sg_url_split_authority(authority, false, host, sizeof(host), &port) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ih[SG_URL_HOST_MAX];
		uint16_t ip;
		if (!insecure[i])
			continue;
		if (!strcasecmp(insecure[i], authority))
			return true;
		/* An entry without a port covers every port of that host. */
		if (!strchr(insecure[i], ':') || (insecure[i][0] == '[' && !strstr(insecure[i], "]:"))) {
			if (sg_url_split_authority(insecure[i], false, ih, sizeof(ih), &ip) == 0 &&
			    !strcasecmp(ih, host))
				return true;
		}
	}
	return localhost_ok && is_local_host(host);
}
