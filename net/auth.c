/* Registry authentication, pure parts.  See auth.h. */
#include "net/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/json.h"

/* ---- small helpers ---- */

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
	if (alen != strlen(b))
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token68_char(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("-._~+/", c) != NULL;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- WWW-Authenticate ---- */

/* At `i` starts "token BWS = BWS (token | quoted-string)", i.e. an auth-param rather than a
 * token68 or the next challenge's scheme. */
static bool is_param_start(const char *v, size_t len, size_t i)
{
	size_t s = i;

	while (i < len && is_tchar((unsigned char)v[i]))
		i++;
	if (i == s)
		return false;
	while (i < len && is_ows(v[i]))
		i++;
	if (i >= len || v[i] != '=')
		return false;
	i++;
	while (i < len && is_ows(v[i]))
		i++;
	return i < len && (v[i] == '"' || is_tchar((unsigned char)v[i])) && v[i] != '=';
}

/* Reads a token or quoted-string value at *i into out (if out != NULL). */
static int read_value(const char *v, size_t len, size_t *i, char *out, size_t cap)
{
	size_t o = 0;

	if (*i < len && v[*i] == '"') {
		(*i)++;
		for (;;) {
			if (*i >= len)
				return -EBADMSG;
			char c = v[(*i)++];
			if (c == '"')
				break;
			if (c == '\\') {
				if (*i >= len)
					return -EBADMSG;
				c = v[(*i)++];
			}
			if ((unsigned char)c < ' ' && c != '\t')
				return -EBADMSG;
			if (out) {
				if (o + 1 >= cap)
					return -ENAMETOOLONG;
				out[o++] = c;
			}
		}
	} else {
		size_t s = *i;
		while (*i < len && is_tchar((unsigned char)v[*i]))
			(*i)++;
		if (*i == s)
			return -EBADMSG;
		if (out) {
			if (*i - s + 1 > cap)
				return -ENAMETOOLONG;
			memcpy(out, v + s, *i - s);
			o = *i - s;
		}
	}
	if (out)
		out[o] = '\0';
	return 0;
}

int sg_auth_parse_challenges(const char *v, size_t len, struct sg_auth_challenge *out, size_t max)
{
	size_t i = 0, n = 0;
	int r;

	for (;;) {
		while (i < len && (is_ows(v[i]) || v[i] == ','))
			i++;
		if (i >= len)
			break;
		size_t s = i;
		while (i < len && is_tchar((unsigned char)v[i]))
			i++;
		if (i == s)
			return -EBADMSG;
		if (n >= SG_AUTH_CHALLENGES_MAX)
			return -E2BIG;
		struct sg_auth_challenge *c = n < max ? &out[n] : NULL;
		n++;
		if (c) {
			memset(c, 0, sizeof(*c));
			if (ieq(v + s, i - s, "bearer"))
				c->scheme = SG_AUTH_BEARER;
			else if (ieq(v + s, i - s, "basic"))
				c->scheme = SG_AUTH_BASIC;
			else
				c->scheme = SG_AUTH_OTHER;
		}
		if (i < len && !is_ows(v[i]) && v[i] != ',')
			return -EBADMSG;
		while (i < len && is_ows(v[i]))
			i++;
		if (i >= len || v[i] == ',')
			continue;
		if (!is_param_start(v, len, i)) {
			/* token68 (e.g. "Negotiate abc=="): not used by registries, skip it. */
			size_t t = i;
			while (i < len && is_token68_char((unsigned char)v[i]))
				i++;
			if (i == t)
				return -EBADMSG;
			while (i < len && v[i] == '=')
				i++;
			while (i < len && is_ows(v[i]))
				i++;
			if (i < len && v[i] != ',')
				return -EBADMSG;
			continue;
		}
		for (unsigned np = 0;; np++) {
			if (np >= SG_AUTH_PARAMS_MAX)
				return -E2BIG;
			s = i;
			while (i < len && is_tchar((unsigned char)v[i]))
				i++;
			size_t name_len = i - s;
			while (i < len && is_ows(v[i]))
				i++;
			i++;   /* '=', checked by is_param_start */
			while (i < len && is_ows(v[i]))
				i++;
			char *dst = NULL;
			size_t cap = 0;
			if (c && ieq(v + s, name_len, "realm"))
				dst = c->realm, cap = sizeof(c->realm);
			else if (c && ieq(v + s, name_len, "service"))
				dst = c->service, cap = sizeof(c->service);
			else if (c && ieq(v + s, name_len, "scope"))
				dst = c->scope, cap = sizeof(c->scope);
			else if (c && ieq(v + s, name_len, "error"))
				dst = c->error, cap = sizeof(c->error);
			r = read_value(v, len, &i, dst, cap);
			if (r < 0)
				return r;
			while (i < len && is_ows(v[i]))
				i++;
			if (i >= len)
				break;
			if (v[i] != ',')
				return -EBADMSG;
			while (i < len && (is_ows(v[i]) || v[i] == ','))
				i++;
			if (i >= len || !is_param_start(v, len, i))
				break;   /* the next challenge begins here */
		}
	}
	return (int)(n < max ? n : max);
}

int sg_auth_query_escape(const char *s, size_t len, char *buf, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
				  c == '~';
		if (unreserved) {
			if (o + 1 >= cap)
				return -ENOSPC;
			buf[o++] = (char)c;
		} else {
			if (o + 3 >= cap)
				return -ENOSPC;
			buf[o++] = '%';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	if (o >= cap)
		return -ENOSPC;
	buf[o] = '\0';
	return (int)o;
}

struct out {
	char *buf;
	size_t cap, len;
	int err;
};

static void put(struct out *o, const char *s, size_t len)
{
	if (o->err)
		return;
	if (o->cap - o->len <= len) {
		o->err = -ENOSPC;
		return;
	}
	memcpy(o->buf + o->len, s, len);
	o->len += len;
	o->buf[o->len] = '\0';
}

static void put_escaped(struct out *o, const char *s, size_t len)
{
	if (o->err)
		return;
	int n = sg_auth_query_escape(s, len, o->buf + o->len, o->cap - o->len);
	if (n < 0)
		o->err = n;
	else
		o->len += (size_t)n;
}

/* Whether scope [s, s+len) already occurs in the space-separated list `list`. */
static bool scope_listed(const char *list, const char *s, size_t len)
{
	const char *p = list;

	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == len && memcmp(p, s, len) == 0)
			return true;
		p = e;
	}
	return false;
}

int sg_auth_token_url(const struct sg_auth_challenge *c, const char *extra_scope, char *buf,
		      size_t cap)
{
	struct out o = { .buf = buf, .cap = cap };
	const char *realm = c->realm;
	char sep;

	if (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0)
		return -EINVAL;
	for (const char *p = realm; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#')
			return -EINVAL;
	if (cap == 0)
		return -ENOSPC;
	buf[0] = '\0';
	put(&o, realm, strlen(realm));
	sep = strchr(realm, '?') ? '&' : '?';
	if (c->service[0]) {
		put(&o, &sep, 1);
		put(&o, "service=", 8);
		put_escaped(&o, c->service, strlen(c->service));
		sep = '&';
	}
	/* Each scope is its own query parameter, as docker and containerd send them. */
	for (int pass = 0; pass < 2; pass++) {
		const char *p = pass == 0 ? c->scope : (extra_scope ? extra_scope : "");
		while (*p) {
			while (*p == ' ')
				p++;
			const char *e = p;
			while (*e && *e != ' ')
				e++;
			if (e > p && !(pass == 1 && scope_listed(c->scope, p, (size_t)(e - p)))) {
				put(&o, &sep, 1);
				put(&o, "scope=", 6);
				put_escaped(&o, p, (size_t)(e - p));
				sep = '&';
			}
			p = e;
		}
	}
	if (o.err)
		return o.err;
	return (int)o.len;
}

/* ---- token responses ---- */

static int two(const char *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

int sg_auth_parse_rfc3339(const char *s, size_t len, time_t *ret)
{
	struct tm tm = { 0 };
	size_t i;
	int y = 0, off = 0;

	if (len < 20)
		return -EBADMSG;
	for (i = 0; i < 4; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		y = y * 10 + (s[i] - '0');
	}
	if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return -EBADMSG;
	int mo = two(s + 5), d = two(s + 8), h = two(s + 11), mi = two(s + 14), se = two(s + 17);
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    se < 0 || se > 60)
		return -EBADMSG;
	i = 19;
	if (i < len && s[i] == '.') {
		i++;
		size_t f = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f || i - f > 9)
			return -EBADMSG;
	}
	if (i >= len)
		return -EBADMSG;
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
		off = 0;
	} else if ((s[i] == '+' || s[i] == '-') && i + 6 == len && s[i + 3] == ':') {
		int oh = two(s + i + 1), om = two(s + i + 4);
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -EBADMSG;
		off = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
	} else {
		return -EBADMSG;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 && !(y == 1969))
		return -EBADMSG;
	*ret = t - off;
	return 0;
}

int sg_auth_parse_token(const char *json, size_t len, struct sg_auth_token *ret)
{
	yajl_val root = NULL, v;
	const char *tok;
	int r;

	*ret = (struct sg_auth_token){ 0 };
	r = sg_json_parse(json, len, SG_AUTH_TOKEN_MAX * 2, &root, NULL);
	if (r < 0)
		return r;
	r = -EBADMSG;
	if (!YAJL_IS_OBJECT(root))
		goto out;
	tok = sg_json_string(root, "token");
	if (!tok || !*tok)
		tok = sg_json_string(root, "access_token");
	if (!tok || !*tok)
		goto out;
	if (strlen(tok) > SG_AUTH_TOKEN_MAX) {
		r = -E2BIG;
		goto out;
	}
	/* The token goes into an Authorization header verbatim. */
	for (const char *p = tok; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			goto out;
	ret->expires_in = SG_AUTH_TOKEN_DEFAULT_TTL;
	v = sg_json_member(root, "expires_in");
	if (v) {
		if (!YAJL_IS_INTEGER(v))
			goto out;
		long long e = YAJL_GET_INTEGER(v);
		/* Below the spec's minimum (or nonsense) means the default; cap at a day so
		 * that a bogus value cannot pin a token forever. */
		if (e >= SG_AUTH_TOKEN_DEFAULT_TTL)
			ret->expires_in = e > 86400 ? 86400 : e;
	}
	const char *ia = sg_json_string(root, "issued_at");
	if (ia && sg_auth_parse_rfc3339(ia, strlen(ia), &ret->issued_at) < 0)
		ret->issued_at = 0;   /* informational only; a bad value is not fatal */
	ret->token = strdup(tok);
	r = ret->token ? 0 : -ENOMEM;
out:
	yajl_tree_free(root);
	if (r < 0)
		*ret = (struct sg_auth_token){ 0 };
	return r;
}

void sg_auth_token_done(struct sg_auth_token *t)
{
	free(t->token);
	t->token = NULL;
}

time_t sg_auth_token_expiry(const struct sg_auth_token *t, time_t now)
{
	/* issued_at is deliberately not the base: the registry's clock may be skewed from ours,
	 * and a token that we just received is as fresh as it gets from our point of view. */
	int64_t ttl = t->expires_in > 0 ? t->expires_in : SG_AUTH_TOKEN_DEFAULT_TTL;
	int64_t margin = ttl >= 120 ? 30 : ttl / 4;

	return now + (time_t)(ttl - margin);
}

/* ---- base64 and Basic ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sg_base64_encode(const uint8_t *in, size_t len, char *buf, size_t cap)
{
	size_t need = (len + 2) / 3 * 4, o = 0;

	if (need + 1 > cap || need > INT32_MAX)
		return -ENOSPC;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		buf[o++] = b64[(v >> 18) & 63];
		buf[o++] = b64[(v >> 12) & 63];
		buf[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		buf[o++] = i + 2 < len ? b64[v & 63] : '=';
	}
	buf[o] = '\0';
	return (int)o;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int sg_base64_decode(const char *in, size_t len, uint8_t *buf, size_t cap)
{
	size_t o = 0;

	if (len % 4 != 0 || len / 4 * 3 > INT32_MAX)
		return -EBADMSG;
	for (size_t i = 0; i < len; i += 4) {
		int a = b64val(in[i]), b = b64val(in[i + 1]);
		int c = in[i + 2] == '=' ? -2 : b64val(in[i + 2]);
		int d = in[i + 3] == '=' ? -2 : b64val(in[i + 3]);
		bool last = i + 4 == len;
		if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2) ||
		    ((c == -2 || d == -2) && !last))
			return -EBADMSG;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)(c < 0 ? 0 : c) << 6 |
			     (uint32_t)(d < 0 ? 0 : d);
		size_t n = c == -2 ? 1 : d == -2 ? 2 : 3;
		/* Non-canonical encodings (stray low bits before the padding) are refused. */
		if ((n == 1 && (v & 0xffff)) || (n == 2 && (v & 0xff)))
			return -EBADMSG;
		if (o + n > cap)
			return -ENOSPC;
		buf[o++] = (uint8_t)(v >> 16);
		if (n > 1)
			buf[o++] = (uint8_t)(v >> 8);
		if (n > 2)
			buf[o++] = (uint8_t)v;
	}
	return (int)o;
}

int sg_auth_basic_header(const char *user, const char *pass, char *buf, size_t cap)
{
	size_t ul = strlen(user), pl = strlen(pass);
	uint8_t *tmp;
	int n;

	if (strchr(user, ':'))
		return -EINVAL;
	if (ul + pl > 4096)
		return -E2BIG;
	if (cap < 7)
		return -ENOSPC;
	tmp = malloc(ul + pl + 1);
	if (!tmp)
		return -ENOMEM;
	memcpy(tmp, user, ul);
	tmp[ul] = ':';
	memcpy(tmp + ul + 1, pass, pl);
	memcpy(buf, "Basic ", 6);
	n = sg_base64_encode(tmp, ul + pl + 1, buf + 6, cap - 6);
	free(tmp);
	return n < 0 ? n : n + 6;
}

/* ---- Docker config.json ---- */

struct auth_entry {
	char *host;
	char *username;
	char *password;
	char *identity_token;
	char *auth;        /* base64 "user:pass", decoded at lookup */
};

struct helper_entry {
	char *host;
	char *name;
};

struct sg_docker_config {
	struct auth_entry *auths;
	size_t nauths;
	struct helper_entry *helpers;
	size_t nhelpers;
	char *creds_store;
};

/* "https://index.docker.io/v1/" -> "docker.io"; "http://h:5000/x" -> "h:5000". */
static char *normalize_host(const char *key)
{
	const char *p = key;
	size_t len;

	if (strncmp(p, "https://", 8) == 0)
		p += 8;
	else if (strncmp(p, "http://", 7) == 0)
		p += 7;
	len = strcspn(p, "/");
	if ((len == 15 && memcmp(p, "index.docker.io", 15) == 0) ||
	    (len == 20 && memcmp(p, "registry-1.docker.io", 20) == 0))
		return strdup("docker.io");
	return strndup(p, len);
}

/* A helper name becomes part of a program name (docker-credential-NAME): keep it tame. */
static bool valid_helper_name(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

void sg_docker_config_free(struct sg_docker_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nauths; i++) {
		struct auth_entry *a = &cfg->auths[i];
		free(a->host);
		free(a->username);
		free(a->password);
		free(a->identity_token);
		free(a->auth);
	}
	free(cfg->auths);
	for (size_t i = 0; i < cfg->nhelpers; i++) {
		free(cfg->helpers[i].host);
		free(cfg->helpers[i].name);
	}
	free(cfg->helpers);
	free(cfg->creds_store);
	free(cfg);
}

int sg_docker_config_parse(const char *json, size_t len, struct sg_docker_config **ret,
			   struct sg_error *err)
{
	struct sg_docker_config *cfg = NULL;
	struct sg_error jerr = { 0 };
	yajl_val root = NULL, v;
	const char *e = NULL;
	int r;

	*ret = NULL;
	r = sg_json_parse(json, len, SG_DOCKER_CONFIG_MAX, &root, &jerr);
	if (r < 0) {
		e = jerr.msg[0] ? jerr.msg : NULL;
		goto out;
	}
	r = -EBADMSG;
	if (!YAJL_IS_OBJECT(root)) {
		e = "config is not a JSON object";
		goto out;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		r = -ENOMEM;
		goto out;
	}
	v = sg_json_member(root, "auths");
	if (v) {
		if (!YAJL_IS_OBJECT(v)) {
			e = "\"auths\" is not an object";
			goto out;
		}
		if (v->u.object.len > SG_DOCKER_CONFIG_ENTRIES_MAX) {
			r = -E2BIG;
			e = "too many \"auths\" entries";
			goto out;
		}
		cfg->auths = calloc(v->u.object.len ? v->u.object.len : 1, sizeof(*cfg->auths));
		if (!cfg->auths) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < v->u.object.len; i++) {
			yajl_val ent = v->u.object.values[i];
			struct auth_entry *a = &cfg->auths[cfg->nauths];
			if (!YAJL_IS_OBJECT(ent)) {
				e = "an \"auths\" entry is not an object";
				goto out;
			}
			cfg->nauths++;
			a->host = normalize_host(v->u.object.keys[i]);
			a->auth = dup_or_null(sg_json_string(ent, "auth"));
			a->username = dup_or_null(sg_json_string(ent, "username"));
			a->password = dup_or_null(sg_json_string(ent, "password"));
			a->identity_token = dup_or_null(sg_json_string(ent, "identitytoken"));
			if (!a->host) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	v = sg_json_member(root, "credHelpers");
	if (v) {
		if (!YAJL_IS_OBJECT(v)) {
			e = "\"credHelpers\" is not an object";
			goto out;
		}
		if (v->u.object.len > SG_DOCKER_CONFIG_ENTRIES_MAX) {
			r = -E2BIG;
			e = "too many \"credHelpers\" entries";
			goto out;
		}
		cfg->helpers = calloc(v->u.object.len ? v->u.object.len : 1, sizeof(*cfg->helpers));
		if (!cfg->helpers) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < v->u.object.len; i++) {
			yajl_val name = v->u.object.values[i];
			if (!YAJL_IS_STRING(name) || !valid_helper_name(name->u.string)) {
				e = "invalid credential helper name";
				goto out;
			}
			struct helper_entry *h = &cfg->helpers[cfg->nhelpers++];
			h->host = normalize_host(v->u.object.keys[i]);
			h->name = strdup(name->u.string);
			if (!h->host || !h->name) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	v = sg_json_member(root, "credsStore");
	if (v) {
		if (!YAJL_IS_STRING(v) || (*v->u.string && !valid_helper_name(v->u.string))) {
			e = "invalid \"credsStore\"";
			goto out;
		}
		if (*v->u.string) {
			cfg->creds_store = strdup(v->u.string);
			if (!cfg->creds_store) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	*ret = cfg;
	cfg = NULL;
	r = 0;
out:
	if (r < 0)
		sg_error_set(err, r, "%s", e ? e : (r == -ENOMEM ? "out of memory" : "invalid config"));
	sg_docker_config_free(cfg);
	yajl_tree_free(root);
	return r;
}

void sg_docker_cred_done(struct sg_docker_cred *c)
{
	free(c->username);
	free(c->password);
	free(c->identity_token);
	free(c->helper);
	*c = (struct sg_docker_cred){ 0 };
}

int sg_docker_config_lookup(const struct sg_docker_config *cfg, const char *host,
			    struct sg_docker_cred *ret)
{
	char *key = normalize_host(host);
	int r = -ENOENT;

	*ret = (struct sg_docker_cred){ 0 };
	if (!key)
		return -ENOMEM;
	/* Docker's order: a per-registry helper, then the global store, then the file. */
	for (size_t i = 0; i < cfg->nhelpers; i++) {
		if (strcmp(cfg->helpers[i].host, key) == 0) {
			ret->helper = strdup(cfg->helpers[i].name);
			r = ret->helper ? 0 : -ENOMEM;
			goto out;
		}
	}
	if (cfg->creds_store) {
		ret->helper = strdup(cfg->creds_store);
		r = ret->helper ? 0 : -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cfg->nauths; i++) {
		const struct auth_entry *a = &cfg->auths[i];
		if (strcmp(a->host, key) != 0)
			continue;
		if (a->auth) {
			size_t al = strlen(a->auth);
			uint8_t *dec = malloc(al / 4 * 3 + 1);
			if (!dec) {
				r = -ENOMEM;
				goto out;
			}
			int n = sg_base64_decode(a->auth, al, dec, al / 4 * 3);
			char *colon = n >= 0 ? memchr(dec, ':', (size_t)n) : NULL;
			if (n < 0 || !colon || memchr(dec, '\0', (size_t)n)) {
				free(dec);
				r = -EBADMSG;
				goto out;
			}
			ret->username = strndup((char *)dec, (size_t)(colon - (char *)dec));
			ret->password = strndup(colon + 1, (size_t)n - (size_t)(colon - (char *)dec) - 1);
			free(dec);
		} else if (a->username || a->password) {
			ret->username = strdup(a->username ? a->username : "");
			ret->password = strdup(a->password ? a->password : "");
		}
		if (a->identity_token)
			ret->identity_token = strdup(a->identity_token);
		if (((a->auth || a->username || a->password) && (!ret->username || !ret->password)) ||
		    (a->identity_token && !ret->identity_token)) {
			r = -ENOMEM;
			goto out;
		}
		r = (ret->username || ret->identity_token) ? 0 : -ENOENT;
		goto out;
	}
out:
	free(key);
	if (r < 0)
		sg_docker_cred_done(ret);
	return r;
}

int sg_docker_helper_server(const char *host, char *buf, size_t cap)
{
	char *key = normalize_host(host);
	int n;

	if (!key)
		return -ENOMEM;
	/* docker asks helpers about Docker Hub by its legacy index URL (registry.IndexServer). */
	n = snprintf(buf, cap, "%s", strcmp(key, "docker.io") ? key : "https://index.docker.io/v1/");
	free(key);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}
