#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/toml.h"

void sg_config_defaults(struct sg_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->root, sizeof(cfg->root), "%s", SG_DEFAULT_ROOT);
	snprintf(cfg->address, sizeof(cfg->address), "%s", SG_DEFAULT_ADDRESS);
	cfg->log_level = SG_LOG_INFO;
	cfg->lazy = true;
	cfg->prefetch = true;
	cfg->background_fetch = true;
	cfg->passthrough = true;
	cfg->speculate = true;
	cfg->process_hints = true;
	snprintf(cfg->hosts_dir, sizeof(cfg->hosts_dir), "%s", "/etc/containerd/certs.d");
	snprintf(cfg->cri_listen_path, sizeof(cfg->cri_listen_path), "%s", SG_DEFAULT_CRI_LISTEN);
	snprintf(cfg->cri_image_service_path, sizeof(cfg->cri_image_service_path), "%s",
		 SG_DEFAULT_CRI_IMAGE_SERVICE);
}

void sg_config_clear(struct sg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_insecure_hosts; i++)
		free(cfg->insecure_hosts[i]);
	cfg->n_insecure_hosts = 0;
	for (size_t i = 0; i < cfg->n_warnings; i++)
		free(cfg->warnings[i]);
	cfg->n_warnings = 0;
	for (size_t i = 0; i < cfg->n_resolver; i++) {
		free(cfg->resolver_domains[i]);
		free(cfg->resolver_hosts_toml[i]);
	}
	cfg->n_resolver = 0;
}

int sg_parse_size(const char *s, uint64_t *ret)
{
	static const char units[] = "KMGTP";
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		const char *u = strchr(units, toupper((unsigned char)*end));
		if (!u)
			return -EINVAL;
		shift = 10u * (unsigned)(u - units + 1);
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0 || strcmp(end, "ib") == 0 ||
		    strcmp(end, "b") == 0)
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	if (v == 0 || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*ret = (uint64_t)v << shift;
	return 0;
}

/* ---- config.toml ----
 *
 * Our keys, and stargz-snapshotter's (containerd-stargz-grpc's config.toml) where they mean
 * something here.  Its other keys are known by name, so that a config copied from it loads
 * with a warning for each of them; a key known to neither is an error, as a typo in one of
 * ours must not be silently ignored. */

#define SEEN_MAX 256
#define MIRRORS_MAX 64

/* Where key = value lines currently go. */
enum table {
	T_TOP,
	T_BLOB,            /* [blob] */
	T_FUSE,            /* [fuse] */
	T_CRI,             /* [cri_keychain] */
	T_IGNORED,         /* a stargz-snapshotter table with nothing that applies here */
	T_RESOLVER,        /* [resolver], [resolver.host], [resolver.host."X"]: no keys */
	T_MIRROR,          /* [[resolver.host."X".mirrors]] */
	T_MIRROR_HEADER,   /* [resolver.host."X".mirrors.header] */
};

struct mirror {
	char *domain, *host;
	bool insecure;
	char *headers;     /* hosts.toml lines of its [host."...".header] table */
	size_t headers_len;
};

struct cfg_doc {
	struct sg_config *cfg;
	const char *path;
	enum table table;
	char table_name[256];           /* as written, for messages: "blob", "fuse", ... */
	char *seen[SEEN_MAX];           /* "table\nkey" of every key and table set */
	size_t nseen;
	struct mirror mirrors[MIRRORS_MAX];
	size_t nmirrors;
	int warn_rc;                    /* -ENOMEM from a warning that could not be kept */
};

static bool seen_before(struct cfg_doc *d, struct sg_toml *t, const char *table, const char *key,
			int *rc)
{
	char *k;

	*rc = 0;
	if (asprintf(&k, "%s\n%s", table, key) < 0) {
		*rc = sg_toml_fail(t, -ENOMEM, "out of memory");
		return true;
	}
	for (size_t i = 0; i < d->nseen; i++)
		if (strcmp(d->seen[i], k) == 0) {
			free(k);
			return true;
		}
	if (d->nseen >= SEEN_MAX) {
		free(k);
		*rc = sg_toml_fail(t, -E2BIG, "more than %d keys", SEEN_MAX);
		return true;
	}
	d->seen[d->nseen++] = k;
	return false;
}

static void warn(struct cfg_doc *d, struct sg_toml *t, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn(struct cfg_doc *d, struct sg_toml *t, const char *fmt, ...)
{
	struct sg_config *cfg = d->cfg;
	char msg[400], *w;
	va_list ap;

	if (cfg->n_warnings >= SG_CONFIG_WARNINGS_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (asprintf(&w, "%s:%u: %s", d->path, sg_toml_line(t), msg) < 0) {
		d->warn_rc = -ENOMEM;
		return;
	}
	cfg->warnings[cfg->n_warnings++] = w;
}

static int want_bool(struct sg_toml *t, const char *key, const struct sg_toml_value *v, bool *ret)
{
	if (v->type != SG_TOML_BOOL)
		return sg_toml_fail(t, -EINVAL, "value of %s must be true or false", key);
	*ret = v->b;
	return 0;
}

static int want_string(struct sg_toml *t, const char *key, const struct sg_toml_value *v,
		       char *out, size_t size)
{
	if (v->type != SG_TOML_STRING)
		return sg_toml_fail(t, -EINVAL, "value of %s must be a quoted string", key);
	if (strlen(v->s) >= size)
		return sg_toml_fail(t, -ENAMETOOLONG, "value of %s is too long", key);
	memcpy(out, v->s, strlen(v->s) + 1);
	return 0;
}

/* One of n names (a mode): its index, or -EINVAL naming the ones allowed (`allowed`). */
static int want_mode(struct sg_toml *t, const char *key, const struct sg_toml_value *v,
		     const char *const *modes, size_t n, const char *allowed)
{
	char mode[32];
	int r = want_string(t, key, v, mode, sizeof(mode));

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if (strcmp(mode, modes[i]) == 0)
			return (int)i;
	return sg_toml_fail(t, -EINVAL, "%s must be %s, not \"%s\"", key, allowed, mode);
}

/* "auto", "on" or "off" (entry_programs, [cri_keychain] load_ahead). */
static int want_auto_mode(struct sg_toml *t, const char *key, const struct sg_toml_value *v,
			  enum sg_entry_mode *ret)
{
	static const char *const modes[] = { [SG_ENTRY_AUTO] = "auto", [SG_ENTRY_ON] = "on",
					     [SG_ENTRY_OFF] = "off" };
	int r = want_mode(t, key, v, modes, 3, "\"auto\", \"on\" or \"off\"");

	if (r < 0)
		return r;
	*ret = (enum sg_entry_mode)r;
	return 0;
}

static int want_int(struct sg_toml *t, const char *key, const struct sg_toml_value *v,
		    int64_t lo, int64_t hi, int64_t *ret)
{
	if (v->type != SG_TOML_INT || v->i < lo || v->i > hi)
		return sg_toml_fail(t, -EINVAL, "%s must be a number from %lld to %lld", key,
				    (long long)lo, (long long)hi);
	*ret = v->i;
	return 0;
}

/* A byte count: 1073741824, or a string with a suffix ("10G", "512M"). */
static int want_size(struct sg_toml *t, const char *key, const struct sg_toml_value *v,
		     uint64_t lo, uint64_t hi, uint64_t *ret)
{
	uint64_t n = 0;
	int r = -EINVAL;

	if (v->type == SG_TOML_INT && v->i > 0) {
		n = (uint64_t)v->i;
		r = 0;
	} else if (v->type == SG_TOML_STRING) {
		r = sg_parse_size(v->s, &n);
	}
	if (r < 0 || n < lo || n > hi)
		return sg_toml_fail(t, -EINVAL, "%s must be a byte count such as 1073741824, \"512M\" "
				    "or \"10G\"%s", key, lo > 1 || hi < UINT64_MAX ? " (within its range)" : "");
	*ret = n;
	return 0;
}

static bool *bool_key(struct sg_config *cfg, const char *key)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "lazy", offsetof(struct sg_config, lazy) },
		{ "prefetch", offsetof(struct sg_config, prefetch) },
		{ "background_fetch", offsetof(struct sg_config, background_fetch) },
		{ "passthrough", offsetof(struct sg_config, passthrough) },
		{ "allow_skip_verify", offsetof(struct sg_config, allow_skip_verify) },
		{ "plain_http_localhost", offsetof(struct sg_config, plain_http_localhost) },
		{ "speculate", offsetof(struct sg_config, speculate) },
		{ "process_hints", offsetof(struct sg_config, process_hints) },
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i].key) == 0)
			return (bool *)((char *)cfg + keys[i].off);
	return NULL;
}

static char *string_key(struct sg_config *cfg, const char *key, size_t *size)
{
	static const struct {
		const char *key;
		size_t off, size;
	} keys[] = {
		{ "root", offsetof(struct sg_config, root), sizeof(((struct sg_config *)0)->root) },
		{ "address", offsetof(struct sg_config, address), sizeof(((struct sg_config *)0)->address) },
		{ "hosts_dir", offsetof(struct sg_config, hosts_dir),
		  sizeof(((struct sg_config *)0)->hosts_dir) },
		{ "docker_config", offsetof(struct sg_config, docker_config),
		  sizeof(((struct sg_config *)0)->docker_config) },
		{ "metrics_address", offsetof(struct sg_config, metrics_address),
		  sizeof(((struct sg_config *)0)->metrics_address) },
		{ "resolve_hook_address", offsetof(struct sg_config, resolve_hook_address),
		  sizeof(((struct sg_config *)0)->resolve_hook_address) },
		{ "fetch_trace_dir", offsetof(struct sg_config, fetch_trace_dir),
		  sizeof(((struct sg_config *)0)->fetch_trace_dir) },
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i].key) == 0) {
			*size = keys[i].size;
			return (char *)cfg + keys[i].off;
		}
	return NULL;
}

/* stargz-snapshotter's keys with no meaning here, by table ("" = top level), and why. */
static const struct {
	const char *table, *key, *why;
} ignored_keys[] = {
	{ "", "prefetch_timeout_sec", "prefetch runs to its end here, yielding to on-demand reads" },
	{ "", "max_concurrency", "background fetch is bounded by the link's in-flight cap, after on-demand reads" },
	{ "", "prefetch_async_size", "containers never wait for prefetch here" },
	{ "", "http_cache_type", "fetched bytes are verified and cached as decompressed chunks" },
	{ "", "http_cache_chunk_ttl_sec", "the chunk cache is bounded by cache_max_bytes" },
	{ "", "filesystem_cache_type", "the chunk cache is on disk, bounded by cache_max_bytes" },
	{ "", "resolve_result_entry_ttl_sec", NULL },
	{ "", "resolve_result_entry", NULL },
	{ "", "debug", "use log_level = \"debug\"" },
	{ "", "disable_verification", "chunks are always verified; see allow_skip_verify" },
	{ "", "no_prometheus", "metrics are off unless metrics_address is set" },
	{ "", "log_file_access", NULL },
	{ "", "debug_address", NULL },
	{ "", "metadata_store", "the TOC is kept as a compact in-memory index" },
	{ "", "ipfs", NULL },
	{ "", "mount_timeout_sec", NULL },
	{ "", "fuse_metrics_emit_wait_duration_sec", NULL },
	{ "", "direct_io", NULL },
	{ "blob", "valid_interval", NULL },
	{ "blob", "check_always", NULL },
	{ "blob", "chunk_size", "chunks are the image's own (its TOC); see fetch_window" },
	{ "blob", "prefetch_chunk_size", NULL },
	{ "blob", "force_single_range_mode", "each request asks for one range" },
	{ "blob", "min_wait_msec", "retries back off from 200 ms, doubling, up to 5 s" },
	{ "blob", "max_wait_msec", "retries back off from 200 ms, doubling, up to 5 s" },
	{ "blob", "max_span_verification_retries", NULL },
	{ "fuse", "negative_timeout", "entry_timeout applies to negative entries too" },
	{ "fuse", "merge_buffer_size", NULL },
	{ "fuse", "merge_worker_count", NULL },
};

/* Tables of stargz-snapshotter that have nothing that applies here. */
static const char *const ignored_tables[] = {
	"directory_cache", "kubeconfig_keychain", "snapshotter", "fuse_manager",
	"ipfs", "debug", "metadata",
};

static int ignored_key(struct cfg_doc *d, struct sg_toml *t, const char *table, const char *key)
{
	for (size_t i = 0; i < sizeof(ignored_keys) / sizeof(ignored_keys[0]); i++)
		if (strcmp(ignored_keys[i].table, table) == 0 && strcmp(ignored_keys[i].key, key) == 0) {
			warn(d, t, "stargz-snapshotter's %s%s%s has no effect here%s%s", table,
			     *table ? "." : "", key, ignored_keys[i].why ? ": " : "",
			     ignored_keys[i].why ? ignored_keys[i].why : "");
			return 0;
		}
	return sg_toml_fail(t, -EINVAL, "unknown key \"%s%s%s\"", table, *table ? "." : "", key);
}

static int top_key(struct cfg_doc *d, struct sg_toml *t, const char *key, struct sg_toml_value *v)
{
	struct sg_config *cfg = d->cfg;
	bool *flag = bool_key(cfg, key), b = false;
	size_t size;
	char *str = string_key(cfg, key, &size);
	int64_t n = 0;
	int r;

	if (flag)
		return want_bool(t, key, v, flag);
	if (str)
		return want_string(t, key, v, str, size);
	if (strcmp(key, "log_level") == 0) {
		char level[32];
		if ((r = want_string(t, key, v, level, sizeof(level))) < 0)
			return r;
		r = sg_log_level_from_string(level);
		if (r < 0)
			return sg_toml_fail(t, -EINVAL, "unknown log_level \"%s\"", level);
		cfg->log_level = (enum sg_log_level)r;
		return 0;
	}
	if (strcmp(key, "profiles") == 0) {
		static const char *const modes[] = { [SG_PROFILES_LOCAL] = "local",
						     [SG_PROFILES_REGISTRY] = "registry",
						     [SG_PROFILES_OFF] = "off" };
		if ((r = want_mode(t, key, v, modes, 3, "\"off\", \"local\" or \"registry\"")) < 0)
			return r;
		cfg->profiles = (enum sg_profiles_mode)r;
		return 0;
	}
	if (strcmp(key, "entry_programs") == 0)
		return want_auto_mode(t, key, v, &cfg->entry_programs);
	if (strcmp(key, "fetch_timeout") == 0) {
		if ((r = want_int(t, key, v, 1, 3600, &n)) < 0)
			return r;
		cfg->fetch_timeout_s = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "profile_quiet_ms") == 0) {
		if ((r = want_int(t, key, v, 1, 3600 * 1000, &n)) < 0)
			return r;
		cfg->profile_quiet_ms = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "fetch_attempts") == 0) {
		if ((r = want_int(t, key, v, 1, 20, &n)) < 0)
			return r;
		cfg->fetch_attempts = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "fetch_window") == 0) {
		if ((r = want_int(t, key, v, 0, 64 << 20, &n)) < 0)
			return r;
		cfg->fetch_window = (unsigned long)n;
		return 0;
	}
	if (strcmp(key, "max_chunk_size") == 0)
		return want_size(t, key, v, 64u << 10, 512u << 20, &cfg->max_chunk_size);
	if (strcmp(key, "cache_max_bytes") == 0)
		return want_size(t, key, v, 1, UINT64_MAX, &cfg->cache_max_bytes);
	if (strcmp(key, "spec_budget_bytes") == 0)
		return want_size(t, key, v, 256u << 10, 1u << 30, &cfg->spec_budget_bytes);
	if (strcmp(key, "insecure_hosts") == 0) {
		if (v->type != SG_TOML_ARRAY)
			return sg_toml_fail(t, -EINVAL, "insecure_hosts must be a list of quoted strings");
		for (size_t i = 0; i < v->n; i++) {
			if (v->items[i].type != SG_TOML_STRING || !*v->items[i].s)
				return sg_toml_fail(t, -EINVAL, "insecure_hosts must be a list of quoted strings");
			if (cfg->n_insecure_hosts >= SG_CONFIG_LIST_MAX)
				return sg_toml_fail(t, -E2BIG, "more than %d insecure_hosts", SG_CONFIG_LIST_MAX);
			cfg->insecure_hosts[cfg->n_insecure_hosts++] = v->items[i].s;
			v->items[i].s = NULL;   /* taken */
		}
		return 0;
	}
	/* stargz-snapshotter's, mapped. */
	if (strcmp(key, "noprefetch") == 0 || strcmp(key, "no_background_fetch") == 0) {
		if ((r = want_bool(t, key, v, &b)) < 0)
			return r;
		*(key[0] == 'n' && key[2] == 'p' ? &cfg->prefetch : &cfg->background_fetch) = !b;
		return 0;
	}
	if (strcmp(key, "allow_no_verification") == 0)
		return want_bool(t, key, v, &cfg->allow_skip_verify);
	if (strcmp(key, "prefetch_size") == 0) {
		if ((r = want_int(t, key, v, 0, INT64_MAX, &n)) < 0)
			return r;
		cfg->prefetch_size = (uint64_t)n;
		return 0;
	}
	return ignored_key(d, t, "", key);
}

static int blob_key(struct cfg_doc *d, struct sg_toml *t, const char *key,
		    const struct sg_toml_value *v)
{
	int64_t n = 0;
	int r;

	if (strcmp(key, "fetching_timeout_sec") == 0) {
		/* Theirs bounds a whole fetch, ours each wait for the registry (first byte, and
		 * each pause in a body): the nearest meaning, capped to our range. */
		if ((r = want_int(t, key, v, 1, INT64_MAX, &n)) < 0)
			return r;
		d->cfg->fetch_timeout_s = n > 3600 ? 3600 : (unsigned)n;
		return 0;
	}
	if (strcmp(key, "max_retries") == 0) {
		if ((r = want_int(t, key, v, 0, INT64_MAX, &n)) < 0)
			return r;
		d->cfg->fetch_attempts = n >= 19 ? 20 : (unsigned)n + 1;   /* tries = retries + 1 */
		return 0;
	}
	return ignored_key(d, t, "blob", key);
}

static int fuse_key(struct cfg_doc *d, struct sg_toml *t, const char *key,
		    const struct sg_toml_value *v)
{
	int64_t n = 0;
	int r;

	if (strcmp(key, "passthrough") == 0)
		return want_bool(t, key, v, &d->cfg->passthrough);
	if (strcmp(key, "attr_timeout") == 0 || strcmp(key, "entry_timeout") == 0) {
		if ((r = want_int(t, key, v, 0, 86400 * 365, &n)) < 0)
			return r;
		/* 0 is the kernel's "do not cache"; ours means the default: a millisecond is
		 * the smallest we say. */
		*(key[0] == 'a' ? &d->cfg->attr_timeout : &d->cfg->entry_timeout) =
			n ? (double)n : 0.001;
		return 0;
	}
	return ignored_key(d, t, "fuse", key);
}

static struct mirror *mirror_new(struct cfg_doc *d, struct sg_toml *t, const char *domain)
{
	if (d->nmirrors >= MIRRORS_MAX) {
		sg_toml_fail(t, -E2BIG, "more than %d resolver mirrors", MIRRORS_MAX);
		return NULL;
	}
	struct mirror *m = &d->mirrors[d->nmirrors];
	m->domain = strdup(domain);
	if (!m->domain) {
		sg_toml_fail(t, -ENOMEM, "out of memory");
		return NULL;
	}
	d->nmirrors++;
	return m;
}

/* A TOML basic string of s, into f. */
static void toml_quote(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static int mirror_key(struct cfg_doc *d, struct sg_toml *t, const char *key,
		      struct sg_toml_value *v)
{
	struct mirror *m = &d->mirrors[d->nmirrors - 1];

	if (d->table == T_MIRROR_HEADER) {
		/* Kept as hosts.toml lines; net/hosts_toml.c checks names and values. */
		char *line = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&line, &len);
		if (!f)
			return sg_toml_fail(t, -ENOMEM, "out of memory");
		toml_quote(f, key);
		fputs(" = ", f);
		bool ok = v->type == SG_TOML_STRING || v->type == SG_TOML_ARRAY;
		if (v->type == SG_TOML_STRING) {
			toml_quote(f, v->s);
		} else if (v->type == SG_TOML_ARRAY) {
			fputc('[', f);
			for (size_t i = 0; ok && i < v->n; i++) {
				ok = v->items[i].type == SG_TOML_STRING;
				if (i)
					fputs(", ", f);
				if (ok)
					toml_quote(f, v->items[i].s);
			}
			fputc(']', f);
		}
		fputc('\n', f);
		if (fclose(f) != 0 || !ok) {
			free(line);
			return ok ? sg_toml_fail(t, -ENOMEM, "out of memory") :
				    sg_toml_fail(t, -EINVAL, "header values must be strings");
		}
		char *all = realloc(m->headers, m->headers_len + len + 1);
		if (!all) {
			free(line);
			return sg_toml_fail(t, -ENOMEM, "out of memory");
		}
		memcpy(all + m->headers_len, line, len + 1);
		m->headers = all;
		m->headers_len += len;
		free(line);
		return 0;
	}
	if (strcmp(key, "host") == 0) {
		if (v->type != SG_TOML_STRING || !*v->s || strpbrk(v->s, "/\"\\ \t"))
			return sg_toml_fail(t, -EINVAL, "host must be a host name with an optional port");
		free(m->host);
		m->host = v->s;
		v->s = NULL;
		return 0;
	}
	if (strcmp(key, "insecure") == 0)
		return want_bool(t, key, v, &m->insecure);
	if (strcmp(key, "request_timeout_sec") == 0) {
		warn(d, t, "stargz-snapshotter's resolver mirror request_timeout_sec has no effect "
		     "here: see fetch_timeout");
		return 0;
	}
	return sg_toml_fail(t, -EINVAL, "unknown key \"%s\" in a resolver mirror", key);
}

static int on_table(void *userdata, struct sg_toml *t, char *const *path, size_t n, bool array)
{
	struct cfg_doc *d = userdata;
	char name[256] = "";
	int r;

	for (size_t i = 0, o = 0; i < n && o < sizeof(name); i++)
		o += (size_t)snprintf(name + o, sizeof(name) - o, "%s%s", i ? "." : "", path[i]);
	snprintf(d->table_name, sizeof(d->table_name), "%s", name);
	if (array) {
		if (n != 4 || strcmp(path[0], "resolver") != 0 || strcmp(path[1], "host") != 0 ||
		    strcmp(path[3], "mirrors") != 0)
			return sg_toml_fail(t, -EINVAL, "unknown array table [[%s]]", name);
		d->table = T_MIRROR;
		return mirror_new(d, t, path[2]) ? 0 : -ENOMEM;
	}
	bool mirror_header = n == 5 && strcmp(path[0], "resolver") == 0 &&
			     strcmp(path[1], "host") == 0 && strcmp(path[3], "mirrors") == 0 &&
			     strcmp(path[4], "header") == 0;
	/* A mirror's header table belongs to the last [[...mirrors]] entry: each entry may have
	 * one, so the same name comes back. */
	if (!mirror_header && seen_before(d, t, "[", name, &r))
		return r < 0 ? r : sg_toml_fail(t, -EINVAL, "duplicate table [%s]", name);
	if (n == 1 && strcmp(path[0], "blob") == 0) {
		d->table = T_BLOB;
	} else if (n == 1 && strcmp(path[0], "fuse") == 0) {
		d->table = T_FUSE;
	} else if (n == 1 && strcmp(path[0], "cri_keychain") == 0) {
		d->table = T_CRI;
	} else if (n <= 3 && strcmp(path[0], "resolver") == 0 &&
		   (n == 1 || strcmp(path[1], "host") == 0)) {
		d->table = T_RESOLVER;
	} else if (mirror_header) {
		struct mirror *m = d->nmirrors ? &d->mirrors[d->nmirrors - 1] : NULL;
		if (!m || strcmp(m->domain, path[2]) != 0 || d->table != T_MIRROR)
			return sg_toml_fail(t, -EINVAL, "[%s] must follow a [[resolver.host.\"%s\"."
					    "mirrors]] table", name, path[2]);
		d->table = T_MIRROR_HEADER;
	} else {
		for (size_t i = 0; i < sizeof(ignored_tables) / sizeof(ignored_tables[0]); i++)
			if (strcmp(path[0], ignored_tables[i]) == 0) {
				d->table = T_IGNORED;
				return 0;
			}
		return sg_toml_fail(t, -EINVAL, "unknown table [%s]", name);
	}
	return 0;
}

static int on_keyval(void *userdata, struct sg_toml *t, const char *key, struct sg_toml_value *v)
{
	struct cfg_doc *d = userdata;
	int r;

	/* Mirrors are array tables: their keys repeat from one entry to the next. */
	if (d->table != T_MIRROR && d->table != T_MIRROR_HEADER &&
	    seen_before(d, t, d->table == T_TOP ? "" : d->table_name, key, &r))
		return r < 0 ? r : sg_toml_fail(t, -EINVAL, "duplicate key \"%s\"", key);
	switch (d->table) {
	case T_TOP:
		return top_key(d, t, key, v);
	case T_BLOB:
		return blob_key(d, t, key, v);
	case T_FUSE:
		return fuse_key(d, t, key, v);
	case T_CRI:
		if (strcmp(key, "enable_keychain") == 0)
			return want_bool(t, key, v, &d->cfg->cri_keychain);
		if (strcmp(key, "image_service_path") == 0)
			return want_string(t, key, v, d->cfg->cri_image_service_path,
					   sizeof(d->cfg->cri_image_service_path));
		if (strcmp(key, "listen_path") == 0)
			return want_string(t, key, v, d->cfg->cri_listen_path,
					   sizeof(d->cfg->cri_listen_path));
		if (strcmp(key, "load_ahead") == 0)
			return want_auto_mode(t, key, v, &d->cfg->cri_load_ahead);
		return sg_toml_fail(t, -EINVAL, "unknown key \"cri_keychain.%s\"", key);
	case T_IGNORED:
		warn(d, t, "stargz-snapshotter's %s.%s has no effect here", d->table_name, key);
		return 0;
	case T_RESOLVER:
		return sg_toml_fail(t, -EINVAL, "unknown key \"%s\" in [%s]", key, d->table_name);
	default:
		return mirror_key(d, t, key, v);
	}
}

/* stargz-snapshotter's mirrors of a registry as the hosts.toml that says the same (net/
 * hosts_toml.h): each mirror a [host."http(s)://HOST"] for pull and resolve, in order; an
 * entry naming the registry itself with insecure = true is what stargz-snapshotter uses
 * to allow it plain HTTP: here that is insecure_hosts. */
static int resolver_to_hosts(struct cfg_doc *d)
{
	struct sg_config *cfg = d->cfg;

	for (size_t i = 0; i < d->nmirrors; i++) {
		struct mirror *m = &d->mirrors[i];
		if (!m->host)
			return -EINVAL;
		if (strcmp(m->host, m->domain) == 0) {
			if (!m->insecure)
				continue;
			if (cfg->n_insecure_hosts >= SG_CONFIG_LIST_MAX)
				return -E2BIG;
			cfg->insecure_hosts[cfg->n_insecure_hosts] = strdup(m->host);
			if (!cfg->insecure_hosts[cfg->n_insecure_hosts])
				return -ENOMEM;
			cfg->n_insecure_hosts++;
			continue;
		}
		size_t k = 0;
		while (k < cfg->n_resolver && strcmp(cfg->resolver_domains[k], m->domain) != 0)
			k++;
		if (k == cfg->n_resolver) {
			if (k >= SG_CONFIG_LIST_MAX)
				return -E2BIG;
			cfg->resolver_domains[k] = strdup(m->domain);
			cfg->resolver_hosts_toml[k] = strdup("");
			if (!cfg->resolver_domains[k] || !cfg->resolver_hosts_toml[k]) {
				free(cfg->resolver_domains[k]);
				free(cfg->resolver_hosts_toml[k]);
				return -ENOMEM;
			}
			cfg->n_resolver++;
		}
		const char *scheme = m->insecure ? "http" : "https";
		char *text;
		if (asprintf(&text, "%s[host.\"%s://%s\"]\ncapabilities = [\"pull\", \"resolve\"]\n"
			     "%s%s%s%s%s%s", cfg->resolver_hosts_toml[k], scheme, m->host,
			     m->headers ? "[host.\"" : "", m->headers ? scheme : "",
			     m->headers ? "://" : "", m->headers ? m->host : "",
			     m->headers ? "\".header]\n" : "", m->headers ? m->headers : "") < 0)
			return -ENOMEM;
		free(cfg->resolver_hosts_toml[k]);
		cfg->resolver_hosts_toml[k] = text;
	}
	return 0;
}

static const struct sg_toml_options config_toml = {
	.max_len = 256 * 1024,
	.max_string = PATH_MAX,
	.max_array = SG_CONFIG_LIST_MAX,
	.integers = true,
	.array_tables = true,
};

int sg_config_parse(struct sg_config *cfg, const char *text, size_t len, const char *name,
		    struct sg_error *err)
{
	struct cfg_doc d = { .cfg = cfg, .path = name };
	struct sg_toml_handler h = { .table = on_table, .keyval = on_keyval, .userdata = &d };
	int r;

	r = sg_toml_parse(text, len, &config_toml, &h, err);
	if (r < 0 && err) {
		/* "NAME:LINE: message", the line also in err->code. */
		int line = err->code;
		sg_error_prefix(err, "%s:%d", name, line);
		err->code = line;
	}
	if (r == 0 && d.warn_rc < 0)
		r = sg_error_set(err, d.warn_rc, "%s: out of memory", name);
	if (r == 0) {
		r = resolver_to_hosts(&d);
		if (r < 0)
			sg_error_set(err, r, "%s: resolver mirrors: %s%s", name, strerror(-r),
				     r == -EINVAL ? " (a mirror without host)" : "");
	}
	for (size_t i = 0; i < d.nseen; i++)
		free(d.seen[i]);
	for (size_t i = 0; i < d.nmirrors; i++) {
		free(d.mirrors[i].domain);
		free(d.mirrors[i].host);
		free(d.mirrors[i].headers);
	}
	return r;
}

int sg_config_load(struct sg_config *cfg, const char *path, struct sg_error *err)
{
	char *text = NULL, buf[8192];
	size_t len = 0, n;
	FILE *f, *m;
	int r;

	f = fopen(path, "re");
	if (!f)
		return sg_error_set(err, -errno, "cannot open config file %s: %s", path,
				    strerror(errno));
	m = open_memstream(&text, &len);
	/* Read a little past the limit, so that the reader says the file is too large. */
	while (m && len <= config_toml.max_len && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (fwrite(buf, 1, n, m) != n || fflush(m) != 0)
			break;
	r = ferror(f) ? -EIO : 0;
	fclose(f);
	if (!m || fclose(m) != 0) {
		free(text);
		return sg_error_set(err, -ENOMEM, "%s: out of memory", path);
	}
	if (r < 0) {
		free(text);
		return sg_error_set(err, r, "%s: read error", path);
	}
	r = sg_config_parse(cfg, text, len, path, err);
	free(text);
	return r;
}
