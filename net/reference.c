/* Image reference parsing.  See reference.h.  The grammar (distribution reference/regexp.go):
 *
 *   reference       := name [ ":" tag ] [ "@" digest ]
 *   name            := [domain '/'] remote-name
 *   domain          := host [':' port-number]
 *   host            := domain-name | IPv4address | '[' IPv6address ']'
 *   domain-name     := domain-component ['.' domain-component]*
 *   domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
 *   remote-name     := path-component ['/' path-component]*
 *   path-component  := alnum [separator alnum]*     alnum := [a-z0-9]+
 *   separator       := [_.] | '__' | '-'+
 *   tag             := [\w][\w.-]{0,127}
 */
#include "net/reference.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex_lower(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* One path component [s, e). */
static bool valid_path_component(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return false;
	while (i < len) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		/* A separator: "_", ".", "__" or a run of "-", always between alnums. */
		if (s[i] == '-') {
			while (i < len && s[i] == '-')
				i++;
		} else if (s[i] == '_') {
			i++;
			if (i < len && s[i] == '_')
				i++;
		} else if (s[i] == '.') {
			i++;
		} else {
			return false;
		}
		if (i >= len || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool valid_path(const char *s, size_t len)
{
	size_t st = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '/') {
			if (!valid_path_component(s + st, i - st))
				return false;
			st = i + 1;
		}
	}
	return true;
}

static bool valid_domain_component(const char *s, size_t len)
{
	if (len == 0 || len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool valid_domain(const char *s, size_t len)
{
	size_t host_end = len;

	if (len == 0)
		return false;
	if (s[0] == '[') {
		/* IPv6 literal: hex digits, ':' and '.' (for an embedded IPv4) inside brackets. */
		const char *rb = memchr(s, ']', len);
		if (!rb || rb == s + 1)
			return false;
		for (const char *q = s + 1; q < rb; q++)
			if (!is_hex_lower(*q) && !(*q >= 'A' && *q <= 'F') && *q != ':' && *q != '.')
				return false;
		host_end = (size_t)(rb - s) + 1;
	} else {
		const char *colon = memchr(s, ':', len);
		if (colon)
			host_end = (size_t)(colon - s);
		size_t st = 0;
		for (size_t i = 0; i <= host_end; i++) {
			if (i == host_end || s[i] == '.') {
				if (!valid_domain_component(s + st, i - st))
					return false;
				st = i + 1;
			}
		}
	}
	if (host_end == len)
		return true;
	if (s[host_end] != ':' || host_end + 1 == len || len - host_end - 1 > 5)
		return false;
	unsigned port = 0;
	for (size_t i = host_end + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		port = port * 10 + (unsigned)(s[i] - '0');
	}
	return port > 0 && port <= 65535;
}

static bool valid_tag(const char *s, size_t len)
{
	if (len == 0 || len > SG_REF_TAG_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool word = is_alnum(c) || c == '_';
		if (!word && (i == 0 || (c != '.' && c != '-')))
			return false;
	}
	return true;
}

static int check_digest_n(const char *s, size_t len)
{
	size_t hexlen;

	if (len > 7 && memcmp(s, "sha256:", 7) == 0)
		hexlen = 64, s += 7, len -= 7;
	else if (len > 7 && memcmp(s, "sha512:", 7) == 0)
		hexlen = 128, s += 7, len -= 7;
	else
		return -EINVAL;
	if (len != hexlen)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!is_hex_lower(s[i]))
			return -EINVAL;
	return 0;
}

int sg_ref_check_digest(const char *digest)
{
	return digest ? check_digest_n(digest, strlen(digest)) : -EINVAL;
}

static bool looks_like_domain(const char *s, size_t len)
{
	if (len == 9 && memcmp(s, "localhost", 9) == 0)
		return true;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '.' || s[i] == ':' || s[i] == '[' || (s[i] >= 'A' && s[i] <= 'Z'))
			return true;
	return false;
}

int sg_ref_parse(const char *s, struct sg_ref *ret, struct sg_error *err)
{
	struct sg_ref r = { 0 };
	size_t len, name_len, dom_len = 0, path_off;
	const char *at, *tag = NULL;
	size_t tag_len = 0;

	if (!s || !*s)
		return sg_error_set(err, -EINVAL, "empty reference");
	len = strlen(s);
	if (len > SG_REF_NAME_MAX + 1 + SG_REF_TAG_MAX + 1 + SG_REF_DIGEST_MAX)
		return sg_error_set(err, -EINVAL, "reference too long");

	at = memchr(s, '@', len);
	name_len = at ? (size_t)(at - s) : len;
	if (at) {
		size_t dl = len - name_len - 1;
		if (check_digest_n(at + 1, dl) < 0)
			return sg_error_set(err, -EINVAL,
					    "invalid digest (want sha256:<64 lower-case hex>)");
		memcpy(r.digest, at + 1, dl);
	}
	/* A tag is after a ':' that follows the last '/'; a ':' before it belongs to a port.
	 * So "localhost:5000" alone is repository "localhost" with tag "5000", as in docker. */
	{
		const char *colon = NULL;
		for (const char *q = s; q < s + name_len; q++) {
			if (*q == '/')
				colon = NULL;
			else if (*q == ':')
				colon = q;
		}
		if (colon) {
			tag = colon + 1;
			tag_len = (size_t)(s + name_len - tag);
			name_len = (size_t)(colon - s);
			if (!valid_tag(tag, tag_len))
				return sg_error_set(err, -EINVAL, "invalid tag");
		}
	}
	if (name_len == 0)
		return sg_error_set(err, -EINVAL, "empty repository name");

	const char *slash = memchr(s, '/', name_len);
	if (slash && looks_like_domain(s, (size_t)(slash - s))) {
		dom_len = (size_t)(slash - s);
		if (!valid_domain(s, dom_len))
			return sg_error_set(err, -EINVAL, "invalid registry host");
		path_off = dom_len + 1;
	} else {
		path_off = 0;
	}
	size_t path_len = name_len - path_off;
	if (!valid_path(s + path_off, path_len)) {
		/* Give the most useful hint for the common mistake. */
		for (size_t i = path_off; i < name_len; i++)
			if (s[i] >= 'A' && s[i] <= 'Z')
				return sg_error_set(err, -EINVAL, "repository name must be lower-case");
		return sg_error_set(err, -EINVAL, "invalid repository name");
	}

	if (dom_len == 0 || (dom_len == 9 && memcmp(s, "docker.io", 9) == 0) ||
	    (dom_len == 15 && memcmp(s, "index.docker.io", 15) == 0) ||
	    (dom_len == 20 && memcmp(s, "registry-1.docker.io", 20) == 0)) {
		strcpy(r.domain, SG_DOCKER_HUB_DOMAIN);
		strcpy(r.host, SG_DOCKER_HUB_HOST);
		/* Official images live under library/. */
		if (!memchr(s + path_off, '/', path_len)) {
			if (8 + path_len > SG_REF_NAME_MAX - 10)
				return sg_error_set(err, -EINVAL, "repository name too long");
			memcpy(r.repo, "library/", 8);
			memcpy(r.repo + 8, s + path_off, path_len);
		} else {
			memcpy(r.repo, s + path_off, path_len);
		}
	} else {
		memcpy(r.domain, s, dom_len);
		memcpy(r.host, s, dom_len);
		memcpy(r.repo, s + path_off, path_len);
	}
	if (strlen(r.domain) + 1 + strlen(r.repo) > SG_REF_NAME_MAX)
		return sg_error_set(err, -EINVAL, "repository name too long");
	if (tag)
		memcpy(r.tag, tag, tag_len);
	else if (!at)
		strcpy(r.tag, "latest");
	*ret = r;
	return 0;
}

int sg_ref_format(const struct sg_ref *ref, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s%s%s%s%s", ref->domain, ref->repo, ref->tag[0] ? ":" : "",
			 ref->tag, ref->digest[0] ? "@" : "", ref->digest);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int sg_ref_manifest_path(const struct sg_ref *ref, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "/v2/%s/manifests/%s", ref->repo,
			 ref->digest[0] ? ref->digest : ref->tag);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int sg_ref_blob_path(const struct sg_ref *ref, const char *digest, char *buf, size_t cap)
{
	if (sg_ref_check_digest(digest) < 0)
		return -EINVAL;
	int n = snprintf(buf, cap, "/v2/%s/blobs/%s", ref->repo, digest);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}
