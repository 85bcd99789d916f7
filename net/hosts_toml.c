/* Strict parser for containerd's hosts.toml.  See hosts_toml.h. */
#include "net/hosts_toml.h"

#include "daemon/core/toml.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_bare(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
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
static int set_url(struct sg_toml *p, struct sg_hosts_entry *e, const char *url)
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
		return sg_toml_fail(p, -EBADMSG, "unsupported URL scheme in \"%s\"", url);
	} else {
		e->scheme = strdup("https");
	}
	slash = strchr(rest, '/');
	hl = slash ? (size_t)(slash - rest) : strlen(rest);
	if (hl == 0)
		return sg_toml_fail(p, -EBADMSG, "no host in \"%s\"", url);
	for (size_t i = 0; i < hl; i++) {
		char c = rest[i];
		if (!is_bare((unsigned char)c) && c != '.' && c != ':' && c != '[' && c != ']')
			return sg_toml_fail(p, -EBADMSG, "invalid host in \"%s\"", url);
	}
	for (const char *q = rest; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == '?' || *q == '#' || *q == 0x7f)
			return sg_toml_fail(p, -EBADMSG, "invalid character in URL \"%s\"", url);
	e->host = strndup(rest, hl);
	/* Path: clean trailing slashes, then append /v2 unless overridden (done after the
	 * table is complete, since override_path may come later: see finish_entry). */
	const char *path = slash ? slash : "";
	size_t pl = strlen(path);
	while (pl > 0 && path[pl - 1] == '/')
		pl--;
	e->path = strndup(path, pl);
	if (!e->scheme || !e->host || !e->path)
		return sg_toml_fail(p, -ENOMEM, "out of memory");
	return 0;
}

static int finish_entry(struct sg_toml *p, struct sg_hosts_entry *e)
{
	size_t pl = strlen(e->path);

	if (pl == 0 || (!e->override_path && (pl < 3 || strcmp(e->path + pl - 3, "/v2") != 0))) {
		char *np = malloc(pl + 4);
		if (!np)
			return sg_toml_fail(p, -ENOMEM, "out of memory");
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

static int want_string(struct sg_toml *p, const struct sg_toml_value *v, const char *key)
{
	if (v->type != SG_TOML_STRING)
		return sg_toml_fail(p, -EBADMSG, "\"%s\" must be a string", key);
	if (!*v->s)
		return sg_toml_fail(p, -EBADMSG, "\"%s\" must not be empty", key);
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

static int header_value_check(struct sg_toml *p, const struct sg_toml_value *v)
{
	if (v->type != SG_TOML_STRING)
		return sg_toml_fail(p, -EBADMSG, "header values must be strings");
	for (const char *q = v->s; *q; q++)
		if (*q == '\r' || *q == '\n')
			return sg_toml_fail(p, -EBADMSG, "line break in a header value");
	return 0;
}

static int set_header(struct sg_toml *p, struct sg_hosts_entry *e, const char *name,
		      struct sg_toml_value *v)
{
	struct sg_hosts_header *h;
	int r;

	if (!header_name_ok(name))
		return sg_toml_fail(p, -EBADMSG, "invalid header name \"%s\"", name);
	if (e->nheaders >= SG_HOSTS_HEADERS_MAX)
		return sg_toml_fail(p, -E2BIG, "more than %d headers", SG_HOSTS_HEADERS_MAX);
	if (!e->headers) {
		e->headers = calloc(SG_HOSTS_HEADERS_MAX, sizeof(*e->headers));
		if (!e->headers)
			return sg_toml_fail(p, -ENOMEM, "out of memory");
	}
	h = &e->headers[e->nheaders];
	size_t n = v->type == SG_TOML_ARRAY ? v->n : 1;
	if (v->type == SG_TOML_ARRAY) {
		if (v->n == 0)
			return sg_toml_fail(p, -EBADMSG, "header \"%s\" has no values", name);
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
		return sg_toml_fail(p, -ENOMEM, "out of memory");
	}
	e->nheaders++;
	for (size_t i = 0; i < n; i++) {
		struct sg_toml_value *it = v->type == SG_TOML_ARRAY ? &v->items[i] : v;
		h->values[i] = it->s;   /* take ownership */
		it->s = NULL;
		h->nvalues++;
	}
	return 0;
}

/* A key inside the top level (upstream) or a [host."..."] table. */
static int set_key(struct sg_toml *p, struct sg_hosts_entry *e, bool top, const char *dir,
		   const char *key, struct sg_toml_value *v, unsigned *seen)
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
			return sg_toml_fail(p, -EBADMSG, "\"header\" must be a table: [%sheader]",
				    top ? "" : "host.\"...\".");
		return sg_toml_fail(p, -EBADMSG, "unknown key \"%s\"%s", key,
			    top ? " at top level" : " in [host] table");
	}
	if (*seen & bit)
		return sg_toml_fail(p, -EBADMSG, "duplicate key \"%s\"", key);
	*seen |= bit;

	if (strcmp(key, "server") == 0) {
		if ((r = want_string(p, v, key)) < 0)
			return r;
		return set_url(p, e, v->s);
	}
	if (strcmp(key, "capabilities") == 0) {
		if (v->type != SG_TOML_ARRAY)
			return sg_toml_fail(p, -EBADMSG, "\"capabilities\" must be an array of strings");
		e->caps = 0;
		for (size_t i = 0; i < v->n; i++) {
			const struct sg_toml_value *it = &v->items[i];
			if (it->type != SG_TOML_STRING)
				return sg_toml_fail(p, -EBADMSG, "\"capabilities\" must be an array of strings");
			if (strcmp(it->s, "pull") == 0)
				e->caps |= SG_HOST_CAP_PULL;
			else if (strcmp(it->s, "resolve") == 0)
				e->caps |= SG_HOST_CAP_RESOLVE;
			else if (strcmp(it->s, "push") == 0)
				e->caps |= SG_HOST_CAP_PUSH;
			else
				return sg_toml_fail(p, -EBADMSG, "unknown capability \"%s\"", it->s);
		}
		return 0;
	}
	if (strcmp(key, "skip_verify") == 0 || strcmp(key, "override_path") == 0) {
		if (v->type != SG_TOML_BOOL)
			return sg_toml_fail(p, -EBADMSG, "\"%s\" must be true or false", key);
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
		size_t n = v->type == SG_TOML_ARRAY ? v->n : 1;
		e->ca = calloc(n ? n : 1, sizeof(char *));
		if (!e->ca)
			return sg_toml_fail(p, -ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			const struct sg_toml_value *it = v->type == SG_TOML_ARRAY ? &v->items[i] : v;
			if ((r = want_string(p, it, key)) < 0)
				return r;
			e->ca[i] = resolve_path(dir, it->s);
			if (!e->ca[i])
				return sg_toml_fail(p, -ENOMEM, "out of memory");
			e->nca++;
		}
		return 0;
	}
	/* client: "cert", ["cert", ...] or [["cert", "key"], ...] */
	size_t n = v->type == SG_TOML_ARRAY ? v->n : 1;
	e->clients = calloc(n ? n : 1, sizeof(*e->clients));
	if (!e->clients)
		return sg_toml_fail(p, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct sg_toml_value *it = v->type == SG_TOML_ARRAY ? &v->items[i] : v;
		struct sg_hosts_client *c = &e->clients[e->nclients];
		if (it->type == SG_TOML_STRING) {
			if ((r = want_string(p, it, key)) < 0)
				return r;
			c->cert = resolve_path(dir, it->s);
			if (!c->cert)
				return sg_toml_fail(p, -ENOMEM, "out of memory");
		} else if (it->type == SG_TOML_ARRAY && it->n == 2 && it->items[0].type == SG_TOML_STRING &&
			   it->items[1].type == SG_TOML_STRING && *it->items[0].s && *it->items[1].s) {
			c->cert = resolve_path(dir, it->items[0].s);
			c->key = resolve_path(dir, it->items[1].s);
			if (!c->cert || !c->key) {
				free(c->cert);
				free(c->key);
				*c = (struct sg_hosts_client){ 0 };
				return sg_toml_fail(p, -ENOMEM, "out of memory");
			}
		} else {
			return sg_toml_fail(p, -EBADMSG,
				    "\"client\" items must be \"cert\" or [\"cert\", \"key\"]");
		}
		e->nclients++;
	}
	return 0;
}

static int default_upstream(struct sg_toml *p, struct sg_hosts_entry *e, const char *ns)
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
	struct sg_hosts_config *cfg;
	int r;

	*ret = NULL;
	if (!valid_ns(ns))
		return -EINVAL;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	r = default_upstream(NULL, &cfg->upstream, ns);
	if (r == 0)
		r = finish_entry(NULL, &cfg->upstream);
	if (r < 0) {
		sg_hosts_config_free(cfg);
		return r;
	}
	*ret = cfg;
	return 0;
}

/* Where key = value lines currently go. */
enum section { SEC_TOP, SEC_TOP_HEADER, SEC_HOST, SEC_HOST_HEADER };

struct hosts_doc {
	struct sg_hosts_config *cfg;
	const char *dir;
	struct sg_hosts_entry *cur;
	enum section sec;
	unsigned seen_top, seen_host;
	bool top_header_seen, host_header_seen;
	char *host_keys[SG_HOSTS_MAX];   /* [host."KEY"] as written, for duplicates */
};

static int on_table(void *userdata, struct sg_toml *p, char *const *path, size_t npath, bool array)
{
	struct hosts_doc *d = userdata;
	struct sg_hosts_config *cfg = d->cfg;

	if (npath == 1 && strcmp(path[0], "header") == 0) {
		if (d->top_header_seen)
			return sg_toml_fail(p, -EBADMSG, "duplicate table [header]");
		d->top_header_seen = true;
		d->sec = SEC_TOP_HEADER;
		d->cur = &cfg->upstream;
		return 0;
	}
	if (!(npath >= 2 && npath <= 3 && strcmp(path[0], "host") == 0 &&
	      (npath == 2 || strcmp(path[2], "header") == 0)))
		return sg_toml_fail(p, -EBADMSG, "unsupported table [%s%s%s]", path[0],
				    npath > 1 ? "." : "", npath > 1 ? path[1] : "");
	/* Find or create the host entry; a header table must follow its own host table, which
	 * keeps the mirror order the file order. */
	struct sg_hosts_entry *found = NULL;
	for (size_t i = 0; i < cfg->nmirrors; i++)
		if (strcmp(d->host_keys[i], path[1]) == 0)
			found = &cfg->mirrors[i];
	if (npath == 3) {
		if (!found || found != d->cur)
			return sg_toml_fail(p, -EBADMSG, "[host.\"%s\".header] must follow [host.\"%s\"]",
					    path[1], path[1]);
		if (d->host_header_seen)
			return sg_toml_fail(p, -EBADMSG, "duplicate table [host.\"%s\".header]", path[1]);
		d->host_header_seen = true;
		d->sec = SEC_HOST_HEADER;
		return 0;
	}
	if (found)
		return sg_toml_fail(p, -EBADMSG, "duplicate table [host.\"%s\"]", path[1]);
	if (cfg->nmirrors >= SG_HOSTS_MAX)
		return sg_toml_fail(p, -E2BIG, "more than %d hosts", SG_HOSTS_MAX);
	d->host_keys[cfg->nmirrors] = strdup(path[1]);
	if (!d->host_keys[cfg->nmirrors])
		return sg_toml_fail(p, -ENOMEM, "out of memory");
	d->cur = &cfg->mirrors[cfg->nmirrors++];
	d->cur->caps = SG_HOST_CAP_ALL;
	d->sec = SEC_HOST;
	d->seen_host = 0;
	d->host_header_seen = false;
	return set_url(p, d->cur, path[1]);
}

static int on_keyval(void *userdata, struct sg_toml *p, const char *key, struct sg_toml_value *v)
{
	struct hosts_doc *d = userdata;
	struct sg_hosts_entry *cur = d->cur;

	switch (d->sec) {
	case SEC_TOP:
		return set_key(p, cur, true, d->dir, key, v, &d->seen_top);
	case SEC_HOST:
		return set_key(p, cur, false, d->dir, key, v, &d->seen_host);
	default:
		/* Header names are case-insensitive: refuse duplicates across case. */
		for (size_t i = 0; i < cur->nheaders; i++)
			if (strcasecmp(cur->headers[i].name, key) == 0)
				return sg_toml_fail(p, -EBADMSG, "duplicate header \"%s\"", key);
		return set_header(p, cur, key, v);
	}
}

int sg_hosts_toml_parse(const char *text, size_t len, const char *ns, const char *dir,
			struct sg_hosts_config **ret, struct sg_error *err)
{
	static const struct sg_toml_options opts = {
		.max_len = SG_HOSTS_TOML_MAX,
		.max_string = SG_HOSTS_STRING_MAX,
		.max_array = SG_HOSTS_ARRAY_MAX,
	};
	struct hosts_doc d = { .dir = dir };
	struct sg_toml_handler h = { .table = on_table, .keyval = on_keyval, .userdata = &d };
	int r;

	*ret = NULL;
	if (!valid_ns(ns))
		return -EINVAL;
	d.cfg = calloc(1, sizeof(*d.cfg));
	if (!d.cfg)
		return -ENOMEM;
	d.cfg->mirrors = calloc(SG_HOSTS_MAX, sizeof(*d.cfg->mirrors));
	r = d.cfg->mirrors ? default_upstream(NULL, &d.cfg->upstream, ns) : -ENOMEM;
	d.cur = &d.cfg->upstream;
	if (r == 0)
		r = sg_toml_parse(text, len, &opts, &h, err);
	/* Paths get their "/v2" only now: override_path may follow the URL in any order, and
	 * a mirror's table may be left for a top-level [header] table. */
	for (size_t i = 0; r == 0 && i < d.cfg->nmirrors; i++)
		r = finish_entry(NULL, &d.cfg->mirrors[i]);
	if (r == 0)
		r = finish_entry(NULL, &d.cfg->upstream);
	for (size_t i = 0; i < SG_HOSTS_MAX; i++)
		free(d.host_keys[i]);
	if (r < 0) {
		sg_hosts_config_free(d.cfg);
		return r;
	}
	*ret = d.cfg;
	return 0;
}
