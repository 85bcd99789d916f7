/* Strict parser for containerd's hosts.toml.  See hosts_toml.h. */
#include "net/hosts_toml.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- values ---- */

enum val_type { V_STR, V_BOOL, V_ARRAY };

struct val {
	enum val_type type;
	bool b;
	char *s;
	struct val *items;
	size_t n;
};

static void val_done(struct val *v)
{
	if (!v)
		return;
	free(v->s);
	for (size_t i = 0; i < v->n; i++)
		val_done(&v->items[i]);
	free(v->items);
	*v = (struct val){ 0 };
}

/* ---- parser state ---- */

struct parser {
	const char *t;
	size_t len, pos;
	unsigned line;
	struct sg_error *err;
	int rc;
};

/* Messages keep the bound they always had, so that a long key quoted in one reads the same. */
#define MSG_MAX 160

static int perr(struct parser *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(struct parser *p, int rc, const char *fmt, ...)
{
	va_list ap;

	char msg[MSG_MAX];

	if (p->rc)
		return p->rc;   /* keep the first error */
	p->rc = rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sg_error_setc(p->err, rc, (int)p->line, "%s", msg);
}

static int peek(const struct parser *p)
{
	return p->pos < p->len ? (unsigned char)p->t[p->pos] : -1;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && (p->t[p->pos] == ' ' || p->t[p->pos] == '\t'))
		p->pos++;
}

static void skip_comment(struct parser *p)
{
	if (peek(p) == '#')
		while (p->pos < p->len && p->t[p->pos] != '\n')
			p->pos++;
}

/* At a newline (LF or CRLF): consume it.  Returns true if one was there. */
static bool newline(struct parser *p)
{
	if (peek(p) == '\n') {
		p->pos++;
		p->line++;
		return true;
	}
	if (peek(p) == '\r' && p->pos + 1 < p->len && p->t[p->pos + 1] == '\n') {
		p->pos += 2;
		p->line++;
		return true;
	}
	return false;
}

static int end_of_line(struct parser *p)
{
	skip_ws(p);
	skip_comment(p);
	if (p->pos >= p->len || newline(p))
		return 0;
	return perr(p, -EBADMSG, "unexpected '%c' after value", p->t[p->pos]);
}

/* Inside arrays: whitespace, newlines and comments. */
static void skip_blank(struct parser *p)
{
	for (;;) {
		skip_ws(p);
		skip_comment(p);
		if (!newline(p))
			return;
	}
}

static int put_utf8(char *out, size_t *o, uint32_t cp)
{
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
		return -1;
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
	return 0;
}

/* A basic "..." or literal '...' string on one line.  *ret is malloc'd. */
static int parse_string(struct parser *p, char **ret)
{
	char q = p->t[p->pos];
	char *out;
	size_t o = 0;

	if (p->pos + 2 < p->len && p->t[p->pos + 1] == q && p->t[p->pos + 2] == q)
		return perr(p, -EBADMSG, "multi-line strings are not supported");
	p->pos++;
	out = malloc(SG_HOSTS_STRING_MAX + 8);
	if (!out)
		return perr(p, -ENOMEM, "out of memory");
	for (;;) {
		if (p->pos >= p->len || p->t[p->pos] == '\n' || p->t[p->pos] == '\r') {
			free(out);
			return perr(p, -EBADMSG, "unterminated string");
		}
		if (o >= SG_HOSTS_STRING_MAX) {
			free(out);
			return perr(p, -E2BIG, "string longer than %d bytes", SG_HOSTS_STRING_MAX);
		}
		unsigned char c = (unsigned char)p->t[p->pos++];
		if (c == (unsigned char)q)
			break;
		if ((c < ' ' && c != '\t') || c == 0x7f) {
			free(out);
			return perr(p, -EBADMSG, "control character in string");
		}
		if (c != '\\' || q == '\'') {
			out[o++] = (char)c;
			continue;
		}
		if (p->pos >= p->len) {
			free(out);
			return perr(p, -EBADMSG, "unterminated string");
		}
		c = (unsigned char)p->t[p->pos++];
		switch (c) {
		case 'b': out[o++] = '\b'; break;
		case 't': out[o++] = '\t'; break;
		case 'n': out[o++] = '\n'; break;
		case 'f': out[o++] = '\f'; break;
		case 'r': out[o++] = '\r'; break;
		case '"': out[o++] = '"'; break;
		case '\\': out[o++] = '\\'; break;
		case 'u':
		case 'U': {
			unsigned digits = c == 'u' ? 4 : 8;
			uint32_t cp = 0;
			for (unsigned k = 0; k < digits; k++) {
				int ch = peek(p), h;
				if (ch >= '0' && ch <= '9')
					h = ch - '0';
				else if (ch >= 'a' && ch <= 'f')
					h = ch - 'a' + 10;
				else if (ch >= 'A' && ch <= 'F')
					h = ch - 'A' + 10;
				else {
					free(out);
					return perr(p, -EBADMSG, "bad \\%c escape", c);
				}
				cp = cp << 4 | (uint32_t)h;
				p->pos++;
			}
			if (put_utf8(out, &o, cp) < 0) {
				free(out);
				return perr(p, -EBADMSG, "bad unicode escape");
			}
			break;
		}
		default:
			free(out);
			return perr(p, -EBADMSG, "unknown escape \\%c", isprint(c) ? c : '?');
		}
	}
	out[o] = '\0';
	*ret = out;
	return 0;
}

static bool is_bare(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int parse_key(struct parser *p, char **ret)
{
	int c = peek(p);

	if (c == '"' || c == '\'')
		return parse_string(p, ret);
	size_t s = p->pos;
	while (p->pos < p->len && is_bare((unsigned char)p->t[p->pos]))
		p->pos++;
	if (p->pos == s) {
		if (c < 0)
			return perr(p, -EBADMSG, "expected a key");
		return perr(p, -EBADMSG, "expected a key, found '%c'", c);
	}
	*ret = strndup(p->t + s, p->pos - s);
	return *ret ? 0 : perr(p, -ENOMEM, "out of memory");
}

static int parse_value(struct parser *p, struct val *v, unsigned depth)
{
	int c = peek(p);
	int r;

	*v = (struct val){ 0 };
	if (c == '"' || c == '\'') {
		v->type = V_STR;
		return parse_string(p, &v->s);
	}
	if (p->len - p->pos >= 4 && memcmp(p->t + p->pos, "true", 4) == 0 &&
	    !is_bare(p->pos + 4 < p->len ? p->t[p->pos + 4] : ' ')) {
		p->pos += 4;
		v->type = V_BOOL;
		v->b = true;
		return 0;
	}
	if (p->len - p->pos >= 5 && memcmp(p->t + p->pos, "false", 5) == 0 &&
	    !is_bare(p->pos + 5 < p->len ? p->t[p->pos + 5] : ' ')) {
		p->pos += 5;
		v->type = V_BOOL;
		return 0;
	}
	if (c == '[') {
		if (depth >= 2)
			return perr(p, -EBADMSG, "arrays nested too deeply");
		v->type = V_ARRAY;
		v->items = calloc(SG_HOSTS_ARRAY_MAX, sizeof(*v->items));
		if (!v->items)
			return perr(p, -ENOMEM, "out of memory");
		p->pos++;
		for (;;) {
			skip_blank(p);
			if (peek(p) == ']') {
				p->pos++;
				return 0;
			}
			if (peek(p) < 0)
				return perr(p, -EBADMSG, "unterminated array");
			if (v->n >= SG_HOSTS_ARRAY_MAX)
				return perr(p, -E2BIG, "more than %d array items", SG_HOSTS_ARRAY_MAX);
			r = parse_value(p, &v->items[v->n], depth + 1);
			v->n++;   /* counted even on failure so that val_done frees it */
			if (r < 0)
				return r;
			skip_blank(p);
			if (peek(p) == ',') {
				p->pos++;
				continue;
			}
			if (peek(p) == ']') {
				p->pos++;
				return 0;
			}
			if (peek(p) < 0)
				return perr(p, -EBADMSG, "unterminated array");
			return perr(p, -EBADMSG, "expected ',' or ']' in array");
		}
	}
	if (c == '{')
		return perr(p, -EBADMSG, "inline tables are not supported");
	if (c < 0 || c == '\n' || c == '\r' || c == '#')
		return perr(p, -EBADMSG, "missing value");
	if ((c >= '0' && c <= '9') || c == '+' || c == '-')
		return perr(p, -EBADMSG, "numbers and dates are not supported here");
	return perr(p, -EBADMSG, "unsupported value");
}

/* ---- model ---- */

static void entry_done(struct sg_hosts_entry *e)
{
	free(e->scheme);
	free(e->host);
	free(e->path);
	for (size_t i = 0; i < e->nca; i++)
		free(e->ca[i]);
	free(e->ca);
	for (size_t i = 0; i < e->nclients; i++) {
		free(e->clients[i].cert);
		free(e->clients[i].key);
	}
	free(e->clients);
	for (size_t i = 0; i < e->nheaders; i++) {
		free(e->headers[i].name);
		for (size_t k = 0; k < e->headers[i].nvalues; k++)
			free(e->headers[i].values[k]);
		free(e->headers[i].values);
	}
	free(e->headers);
	free(e->dial_timeout);
	*e = (struct sg_hosts_entry){ 0 };
}

void sg_hosts_config_free(struct sg_hosts_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nmirrors; i++)
		entry_done(&cfg->mirrors[i]);
	free(cfg->mirrors);
	entry_done(&cfg->upstream);
	free(cfg);
}

/* Splits "scheme://host[:port][/path]" into the entry, applying containerd's path rule. */
static int set_url(struct parser *p, struct sg_hosts_entry *e, const char *url)
{
	const char *rest = url, *slash;
	size_t hl;

	free(e->scheme);
	free(e->host);
	free(e->path);
	e->scheme = e->host = e->path = NULL;
	if (strncmp(url, "https://", 8) == 0) {
		e->scheme = strdup("https");
		rest = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		e->scheme = strdup("http");
		rest = url + 7;
	} else if (strstr(url, "://")) {
		return perr(p, -EBADMSG, "unsupported URL scheme in \"%s\"", url);
	} else {
		e->scheme = strdup("https");
	}
	slash = strchr(rest, '/');
	hl = slash ? (size_t)(slash - rest) : strlen(rest);
	if (hl == 0)
		return perr(p, -EBADMSG, "no host in \"%s\"", url);
	for (size_t i = 0; i < hl; i++) {
		char c = rest[i];
		if (!is_bare((unsigned char)c) && c != '.' && c != ':' && c != '[' && c != ']')
			return perr(p, -EBADMSG, "invalid host in \"%s\"", url);
	}
	for (const char *q = rest; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == '?' || *q == '#' || *q == 0x7f)
			return perr(p, -EBADMSG, "invalid character in URL \"%s\"", url);
	e->host = strndup(rest, hl);
	/* Path: clean trailing slashes, then append /v2 unless overridden (done after the
	 * table is complete, since override_path may come later: see finish_entry). */
	const char *path = slash ? slash : "";
	size_t pl = strlen(path);
	while (pl > 0 && path[pl - 1] == '/')
		pl--;
	e->path = strndup(path, pl);
	if (!e->scheme || !e->host || !e->path)
		return perr(p, -ENOMEM, "out of memory");
	return 0;
}

static int finish_entry(struct parser *p, struct sg_hosts_entry *e)
{
	size_t pl = strlen(e->path);

	if (pl == 0 || (!e->override_path && (pl < 3 || strcmp(e->path + pl - 3, "/v2") != 0))) {
		char *np = malloc(pl + 4);
		if (!np)
			return perr(p, -ENOMEM, "out of memory");
		memcpy(np, e->path, pl);
		memcpy(np + pl, "/v2", 4);
		free(e->path);
		e->path = np;
	}
	return 0;
}

static char *resolve_path(const char *dir, const char *path)
{
	if (path[0] == '/' || !dir || !*dir)
		return strdup(path);
	char *out;
	if (asprintf(&out, "%s/%s", dir, path) < 0)
		return NULL;
	return out;
}

static int want_string(struct parser *p, const struct val *v, const char *key)
{
	if (v->type != V_STR)
		return perr(p, -EBADMSG, "\"%s\" must be a string", key);
	if (!*v->s)
		return perr(p, -EBADMSG, "\"%s\" must not be empty", key);
	return 0;
}

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_bare((unsigned char)*s) && !strchr("!#$%&'*+.^`|~", *s))
			return false;
	return true;
}

static int header_value_check(struct parser *p, const struct val *v)
{
	if (v->type != V_STR)
		return perr(p, -EBADMSG, "header values must be strings");
	for (const char *q = v->s; *q; q++)
		if (*q == '\r' || *q == '\n')
			return perr(p, -EBADMSG, "line break in a header value");
	return 0;
}

static int set_header(struct parser *p, struct sg_hosts_entry *e, const char *name,
		      struct val *v)
{
	struct sg_hosts_header *h;
	int r;

	if (!header_name_ok(name))
		return perr(p, -EBADMSG, "invalid header name \"%s\"", name);
	if (e->nheaders >= SG_HOSTS_HEADERS_MAX)
		return perr(p, -E2BIG, "more than %d headers", SG_HOSTS_HEADERS_MAX);
	if (!e->headers) {
		e->headers = calloc(SG_HOSTS_HEADERS_MAX, sizeof(*e->headers));
		if (!e->headers)
			return perr(p, -ENOMEM, "out of memory");
	}
	h = &e->headers[e->nheaders];
	size_t n = v->type == V_ARRAY ? v->n : 1;
	if (v->type == V_ARRAY) {
		if (v->n == 0)
			return perr(p, -EBADMSG, "header \"%s\" has no values", name);
		for (size_t i = 0; i < v->n; i++)
			if ((r = header_value_check(p, &v->items[i])) < 0)
				return r;
	} else if ((r = header_value_check(p, v)) < 0) {
		return r;
	}
	h->values = calloc(n, sizeof(char *));
	h->name = strdup(name);
	if (!h->values || !h->name) {
		free(h->values);
		free(h->name);
		*h = (struct sg_hosts_header){ 0 };
		return perr(p, -ENOMEM, "out of memory");
	}
	e->nheaders++;
	for (size_t i = 0; i < n; i++) {
		struct val *it = v->type == V_ARRAY ? &v->items[i] : v;
		h->values[i] = it->s;   /* take ownership */
		it->s = NULL;
		h->nvalues++;
	}
	return 0;
}

/* A key inside the top level (upstream) or a [host."..."] table. */
static int set_key(struct parser *p, struct sg_hosts_entry *e, bool top, const char *dir,
		   const char *key, struct val *v, unsigned *seen)
{
	int r;

	/* Bit per key, to refuse duplicates as TOML does. */
	static const char *const keys[] = { "server", "capabilities", "ca", "client", "skip_verify",
					    "override_path", "dial_timeout" };
	unsigned bit = 0;
	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i]) == 0)
			bit = 1u << i;
	if (!bit || (strcmp(key, "server") == 0 && !top)) {
		if (strcmp(key, "header") == 0)
			return perr(p, -EBADMSG, "\"header\" must be a table: [%sheader]",
				    top ? "" : "host.\"...\".");
		return perr(p, -EBADMSG, "unknown key \"%s\"%s", key,
			    top ? " at top level" : " in [host] table");
	}
	if (*seen & bit)
		return perr(p, -EBADMSG, "duplicate key \"%s\"", key);
	*seen |= bit;

	if (strcmp(key, "server") == 0) {
		if ((r = want_string(p, v, key)) < 0)
			return r;
		return set_url(p, e, v->s);
	}
	if (strcmp(key, "capabilities") == 0) {
		if (v->type != V_ARRAY)
			return perr(p, -EBADMSG, "\"capabilities\" must be an array of strings");
		e->caps = 0;
		for (size_t i = 0; i < v->n; i++) {
			const struct val *it = &v->items[i];
			if (it->type != V_STR)
				return perr(p, -EBADMSG, "\"capabilities\" must be an array of strings");
			if (strcmp(it->s, "pull") == 0)
				e->caps |= SG_HOST_CAP_PULL;
			else if (strcmp(it->s, "resolve") == 0)
				e->caps |= SG_HOST_CAP_RESOLVE;
			else if (strcmp(it->s, "push") == 0)
				e->caps |= SG_HOST_CAP_PUSH;
			else
				return perr(p, -EBADMSG, "unknown capability \"%s\"", it->s);
		}
		return 0;
	}
	if (strcmp(key, "skip_verify") == 0 || strcmp(key, "override_path") == 0) {
		if (v->type != V_BOOL)
			return perr(p, -EBADMSG, "\"%s\" must be true or false", key);
		if (key[0] == 's')
			e->skip_verify = v->b;
		else
			e->override_path = v->b;
		return 0;
	}
	if (strcmp(key, "dial_timeout") == 0) {
		if ((r = want_string(p, v, key)) < 0)
			return r;
		e->dial_timeout = v->s;
		v->s = NULL;
		return 0;
	}
	if (strcmp(key, "ca") == 0) {
		size_t n = v->type == V_ARRAY ? v->n : 1;
		e->ca = calloc(n ? n : 1, sizeof(char *));
		if (!e->ca)
			return perr(p, -ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			const struct val *it = v->type == V_ARRAY ? &v->items[i] : v;
			if ((r = want_string(p, it, key)) < 0)
				return r;
			e->ca[i] = resolve_path(dir, it->s);
			if (!e->ca[i])
				return perr(p, -ENOMEM, "out of memory");
			e->nca++;
		}
		return 0;
	}
	/* client: "cert", ["cert", ...] or [["cert", "key"], ...] */
	size_t n = v->type == V_ARRAY ? v->n : 1;
	e->clients = calloc(n ? n : 1, sizeof(*e->clients));
	if (!e->clients)
		return perr(p, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct val *it = v->type == V_ARRAY ? &v->items[i] : v;
		struct sg_hosts_client *c = &e->clients[e->nclients];
		if (it->type == V_STR) {
			if ((r = want_string(p, it, key)) < 0)
				return r;
			c->cert = resolve_path(dir, it->s);
			if (!c->cert)
				return perr(p, -ENOMEM, "out of memory");
		} else if (it->type == V_ARRAY && it->n == 2 && it->items[0].type == V_STR &&
			   it->items[1].type == V_STR && *it->items[0].s && *it->items[1].s) {
			c->cert = resolve_path(dir, it->items[0].s);
			c->key = resolve_path(dir, it->items[1].s);
			if (!c->cert || !c->key) {
				free(c->cert);
				free(c->key);
				*c = (struct sg_hosts_client){ 0 };
				return perr(p, -ENOMEM, "out of memory");
			}
		} else {
			return perr(p, -EBADMSG,
				    "\"client\" items must be \"cert\" or [\"cert\", \"key\"]");
		}
		e->nclients++;
	}
	return 0;
}

static int default_upstream(struct parser *p, struct sg_hosts_entry *e, const char *ns)
{
	char url[300];

	if (strcmp(ns, "docker.io") == 0)
		snprintf(url, sizeof(url), "https://registry-1.docker.io");
	else
		snprintf(url, sizeof(url), "https://%s", ns);
	e->caps = SG_HOST_CAP_ALL;
	return set_url(p, e, url);
}

static bool valid_ns(const char *ns)
{
	size_t l = ns ? strlen(ns) : 0;

	if (l == 0 || l > 255)
		return false;
	for (size_t i = 0; i < l; i++)
		if (!is_bare((unsigned char)ns[i]) && ns[i] != '.' && ns[i] != ':' && ns[i] != '[' &&
		    ns[i] != ']')
			return false;
	return true;
}

int sg_hosts_default(const char *ns, struct sg_hosts_config **ret)
{
	struct parser p = { .line = 0 };
	struct sg_hosts_config *cfg;
	int r;

	*ret = NULL;
	if (!valid_ns(ns))
		return -EINVAL;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	r = default_upstream(&p, &cfg->upstream, ns);
	if (r == 0)
		r = finish_entry(&p, &cfg->upstream);
	if (r < 0) {
		sg_hosts_config_free(cfg);
		return r;
	}
	*ret = cfg;
	return 0;
}

/* Where key = value lines currently go. */
enum section { SEC_TOP, SEC_TOP_HEADER, SEC_HOST, SEC_HOST_HEADER };

int sg_hosts_toml_parse(const char *text, size_t len, const char *ns, const char *dir,
			struct sg_hosts_config **ret, struct sg_error *err)
{
	struct parser p = { .t = text, .len = len, .line = 1, .err = err };
	struct sg_hosts_config *cfg = NULL;
	struct sg_hosts_entry *cur;
	enum section sec = SEC_TOP;
	unsigned seen_top = 0, seen_host = 0;
	bool top_header_seen = false, host_header_seen = false;
	char *key = NULL;
	struct val v = { 0 };
	char *path[4] = { 0 };
	size_t npath = 0;
	char *host_keys[SG_HOSTS_MAX] = { 0 };   /* [host."KEY"] as written, for duplicates */

	*ret = NULL;
	if (!valid_ns(ns))
		return -EINVAL;
	if (len > SG_HOSTS_TOML_MAX)
		return perr(&p, -E2BIG, "file larger than %d bytes", SG_HOSTS_TOML_MAX);
	if (memchr(text, '\0', len))
		return perr(&p, -EBADMSG, "NUL byte in file");
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	cfg->mirrors = calloc(SG_HOSTS_MAX, sizeof(*cfg->mirrors));
	if (!cfg->mirrors) {
		free(cfg);
		return -ENOMEM;
	}
	if (default_upstream(&p, &cfg->upstream, ns) < 0)
		goto fail;
	cur = &cfg->upstream;

	while (p.pos < p.len) {
		skip_ws(&p);
		skip_comment(&p);
		if (p.pos >= p.len)
			break;
		if (newline(&p))
			continue;
		if (peek(&p) == '[') {
			/* A table header: [a."b".c] */
			p.pos++;
			if (peek(&p) == '[') {
				perr(&p, -EBADMSG, "array tables [[...]] are not supported");
				goto fail;
			}
			for (size_t i = 0; i < npath; i++)
				free(path[i]);
			npath = 0;
			for (;;) {
				skip_ws(&p);
				if (npath >= 4) {
					perr(&p, -EBADMSG, "table name has too many parts");
					goto fail;
				}
				if (parse_key(&p, &path[npath]) < 0)
					goto fail;
				npath++;
				skip_ws(&p);
				if (peek(&p) == '.') {
					p.pos++;
					continue;
				}
				if (peek(&p) == ']') {
					p.pos++;
					break;
				}
				perr(&p, -EBADMSG, "expected '.' or ']' in table name");
				goto fail;
			}
			unsigned hdr_line = p.line;
			if (end_of_line(&p) < 0)
				goto fail;
			/* Errors about the table point at its header line. */
			unsigned next_line = p.line;
			p.line = hdr_line;
			if (npath == 1 && strcmp(path[0], "header") == 0) {
				if (top_header_seen) {
					perr(&p, -EBADMSG, "duplicate table [header]");
					goto fail;
				}
				top_header_seen = true;
				sec = SEC_TOP_HEADER;
				cur = &cfg->upstream;
			} else if (npath >= 2 && npath <= 3 && strcmp(path[0], "host") == 0 &&
				   (npath == 2 || strcmp(path[2], "header") == 0)) {
				/* Find or create the host entry; a header table must follow its own
				 * host table, which keeps the mirror order the file order. */
				struct sg_hosts_entry *found = NULL;
				for (size_t i = 0; i < cfg->nmirrors; i++)
					if (strcmp(host_keys[i], path[1]) == 0)
						found = &cfg->mirrors[i];
				if (npath == 2) {
					if (found) {
						perr(&p, -EBADMSG, "duplicate table [host.\"%s\"]", path[1]);
						goto fail;
					}
					if (cfg->nmirrors >= SG_HOSTS_MAX) {
						perr(&p, -E2BIG, "more than %d hosts", SG_HOSTS_MAX);
						goto fail;
					}
					host_keys[cfg->nmirrors] = strdup(path[1]);
					if (!host_keys[cfg->nmirrors]) {
						perr(&p, -ENOMEM, "out of memory");
						goto fail;
					}
					cur = &cfg->mirrors[cfg->nmirrors++];
					cur->caps = SG_HOST_CAP_ALL;
					if (set_url(&p, cur, path[1]) < 0)
						goto fail;
					sec = SEC_HOST;
					seen_host = 0;
					host_header_seen = false;
				} else {
					if (!found || found != cur) {
						perr(&p, -EBADMSG,
						     "[host.\"%s\".header] must follow [host.\"%s\"]",
						     path[1], path[1]);
						goto fail;
					}
					if (host_header_seen) {
						perr(&p, -EBADMSG, "duplicate table [host.\"%s\".header]",
						     path[1]);
						goto fail;
					}
					host_header_seen = true;
					sec = SEC_HOST_HEADER;
				}
			} else {
				perr(&p, -EBADMSG, "unsupported table [%s%s%s]", path[0],
				     npath > 1 ? "." : "", npath > 1 ? path[1] : "");
				goto fail;
			}
			p.line = next_line;
			continue;
		}
		/* key = value */
		if (parse_key(&p, &key) < 0)
			goto fail;
		skip_ws(&p);
		if (peek(&p) == '.') {
			perr(&p, -EBADMSG, "dotted keys are not supported (use a [table])");
			goto fail;
		}
		if (peek(&p) != '=') {
			perr(&p, -EBADMSG, "expected '=' after \"%s\"", key);
			goto fail;
		}
		p.pos++;
		skip_ws(&p);
		unsigned start_line = p.line;
		if (parse_value(&p, &v, 0) < 0)
			goto fail;
		if (end_of_line(&p) < 0)
			goto fail;
		/* Errors about the assignment point at its first line. */
		unsigned end_line = p.line;
		p.line = start_line;
		int r;
		switch (sec) {
		case SEC_TOP:
			r = set_key(&p, cur, true, dir, key, &v, &seen_top);
			break;
		case SEC_HOST:
			r = set_key(&p, cur, false, dir, key, &v, &seen_host);
			break;
		default: {
			/* Header names are case-insensitive: refuse duplicates across case. */
			r = 0;
			for (size_t i = 0; i < cur->nheaders; i++)
				if (strcasecmp(cur->headers[i].name, key) == 0)
					r = perr(&p, -EBADMSG, "duplicate header \"%s\"", key);
			if (r == 0)
				r = set_header(&p, cur, key, &v);
			break;
		}
		}
		p.line = end_line;
		if (r < 0)
			goto fail;
		val_done(&v);
		free(key);
		key = NULL;
	}
	/* Paths get their "/v2" only now: override_path may follow the URL in any order, and
	 * a mirror's table may be left for a top-level [header] table. */
	for (size_t i = 0; i < cfg->nmirrors; i++)
		if (finish_entry(&p, &cfg->mirrors[i]) < 0)
			goto fail;
	if (finish_entry(&p, &cfg->upstream) < 0)
		goto fail;
	for (size_t i = 0; i < npath; i++)
		free(path[i]);
	for (size_t i = 0; i < SG_HOSTS_MAX; i++)
		free(host_keys[i]);
	*ret = cfg;
	return 0;
fail:
	for (size_t i = 0; i < npath; i++)
		free(path[i]);
	for (size_t i = 0; i < SG_HOSTS_MAX; i++)
		free(host_keys[i]);
	free(key);
	val_done(&v);
	sg_hosts_config_free(cfg);
	return p.rc ? p.rc : -EBADMSG;
}
