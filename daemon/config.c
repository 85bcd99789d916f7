#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	snprintf(cfg->hosts_dir, sizeof(cfg->hosts_dir), "%s", "/etc/containerd/certs.d");
}

void sg_config_clear(struct sg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_insecure_hosts; i++)
		free(cfg->insecure_hosts[i]);
	cfg->n_insecure_hosts = 0;
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

static int parse_bool(const char *v, bool *ret)
{
	if (strcmp(v, "true") == 0)
		*ret = true;
	else if (strcmp(v, "false") == 0)
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/* ["a", "b"] on one line into cfg's list. */
static int parse_string_list(char *v, char **list, size_t *n)
{
	char item[PATH_MAX];

	if (*v++ != '[')
		return -EINVAL;
	for (;;) {
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == ']')
			break;
		if (*v != '"')
			return -EINVAL;
		char *end = v + 1;
		while (*end && *end != '"')
			end++;
		if (*end != '"' || (size_t)(end - v - 1) >= sizeof(item))
			return -EINVAL;
		if (*n == SG_CONFIG_LIST_MAX)
			return -E2BIG;
		memcpy(item, v + 1, (size_t)(end - v - 1));
		item[end - v - 1] = '\0';
		list[*n] = strdup(item);
		if (!list[*n])
			return -ENOMEM;
		(*n)++;
		v = end + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == ',') {
			v++;
			continue;
		}
		if (*v != ']')
			return -EINVAL;
	}
	v++;
	while (*v == ' ' || *v == '\t')
		v++;
	return *v ? -EINVAL : 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Parses a TOML basic string "..." with \" \\ \n \t escapes into out. */
static int parse_string(const char *v, char *out, size_t outlen)
{
	size_t n = 0;

	if (*v++ != '"')
		return -EINVAL;
	for (; *v && *v != '"'; v++) {
		char c = *v;
		if (c == '\\') {
			switch (*++v) {
			case '"': c = '"'; break;
			case '\\': c = '\\'; break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			default: return -EINVAL;
			}
		}
		if (n + 1 >= outlen)
			return -ENAMETOOLONG;
		out[n++] = c;
	}
	if (*v != '"' || *trim((char *)v + 1) != '\0')
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/* Where a config error is: the message starts "PATH:LINE: ", the code is the line. */
struct where {
	const char *path;
	unsigned lineno;
};

#define CONFIG_ERROR(err, r, w, fmt, ...) \
	sg_error_setc(err, r, (int)(w)->lineno, "%s:%u: " fmt, (w)->path, (w)->lineno, __VA_ARGS__)

/* The true/false keys. */
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
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i].key) == 0)
			return (bool *)((char *)cfg + keys[i].off);
	return NULL;
}

/* A byte count, quoted or not ("10G" or 10G). */
static int size_value(const char *val, uint64_t *ret)
{
	char num[64];

	if (parse_string(val, num, sizeof(num)) < 0)
		snprintf(num, sizeof(num), "%s", val);
	return sg_parse_size(num, ret);
}

/* The keys whose value is not a plain quoted string. 1 if key is not one of them. */
static int apply_value(struct sg_config *cfg, const char *key, char *val,
		       const struct where *w, struct sg_error *err)
{
	bool *flag = bool_key(cfg, key);
	char *end;

	if (flag) {
		if (parse_bool(val, flag) < 0)
			return CONFIG_ERROR(err, -EINVAL, w, "value of %s must be true or false", key);
		return 0;
	}
	if (strcmp(key, "fetch_window") == 0) {
		cfg->fetch_window = strtoul(val, &end, 10);
		if (*end || end == val || cfg->fetch_window > (64ul << 20))
			return CONFIG_ERROR(err, -EINVAL, w, "%s",
					    "fetch_window must be a byte count up to 64 MiB");
		return 0;
	}
	if (strcmp(key, "fetch_timeout") == 0 || strcmp(key, "fetch_attempts") == 0) {
		bool timeout = strcmp(key, "fetch_timeout") == 0;
		unsigned long v = strtoul(val, &end, 10);
		if (*end || end == val || v < 1 || v > (timeout ? 3600u : 20u))
			return CONFIG_ERROR(err, -EINVAL, w, "%s must be %s", key,
					    timeout ? "a number of seconds from 1 to 3600" :
						      "a count from 1 to 20");
		*(timeout ? &cfg->fetch_timeout_s : &cfg->fetch_attempts) = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "max_chunk_size") == 0) {
		if (size_value(val, &cfg->max_chunk_size) < 0 ||
		    cfg->max_chunk_size < (64u << 10) || cfg->max_chunk_size > (512u << 20))
			return CONFIG_ERROR(err, -EINVAL, w, "%s",
					    "max_chunk_size must be a byte count from 64K to 512M");
		return 0;
	}
	if (strcmp(key, "cache_max_bytes") == 0) {
		if (size_value(val, &cfg->cache_max_bytes) < 0)
			return CONFIG_ERROR(err, -EINVAL, w, "%s", "cache_max_bytes must be a byte "
					    "count such as 10G, 512M or 1073741824");
		return 0;
	}
	if (strcmp(key, "insecure_hosts") == 0) {
		if (parse_string_list(val, cfg->insecure_hosts, &cfg->n_insecure_hosts) < 0)
			return CONFIG_ERROR(err, -EINVAL, w, "insecure_hosts must be a list of at most "
					    "%d quoted strings on one line", SG_CONFIG_LIST_MAX);
		return 0;
	}
	return 1;
}

/* The keys whose value is a quoted string. */
static int apply_string(struct sg_config *cfg, const char *key, const char *value,
			const struct where *w, struct sg_error *err)
{
	if (strcmp(key, "hosts_dir") == 0) {
		snprintf(cfg->hosts_dir, sizeof(cfg->hosts_dir), "%s", value);
	} else if (strcmp(key, "docker_config") == 0) {
		snprintf(cfg->docker_config, sizeof(cfg->docker_config), "%s", value);
	} else if (strcmp(key, "root") == 0) {
		snprintf(cfg->root, sizeof(cfg->root), "%s", value);
	} else if (strcmp(key, "metrics_address") == 0) {
		snprintf(cfg->metrics_address, sizeof(cfg->metrics_address), "%s", value);
	} else if (strcmp(key, "address") == 0) {
		snprintf(cfg->address, sizeof(cfg->address), "%s", value);
	} else if (strcmp(key, "log_level") == 0) {
		int level = sg_log_level_from_string(value);
		if (level < 0)
			return CONFIG_ERROR(err, -EINVAL, w, "unknown log_level \"%s\"", value);
		cfg->log_level = (enum sg_log_level)level;
	} else {
		return CONFIG_ERROR(err, -EINVAL, w, "unknown key \"%s\"", key);
	}
	return 0;
}

/* One line without its comment: blank, or key = value. */
static int apply_line(struct sg_config *cfg, char *line, const struct where *w,
		      struct sg_error *err)
{
	char value[PATH_MAX], *key = trim(line), *val, *eq;
	int r;

	if (*key == '\0')
		return 0;
	eq = strchr(key, '=');
	if (!eq)
		return CONFIG_ERROR(err, -EINVAL, w, "%s", "expected key = value");
	*eq = '\0';
	key = trim(key);
	val = trim(eq + 1);
	r = apply_value(cfg, key, val, w, err);
	if (r <= 0)
		return r;
	r = parse_string(val, value, sizeof(value));
	if (r < 0)
		return CONFIG_ERROR(err, r, w, "value of %s must be a quoted string", key);
	return apply_string(cfg, key, value, w, err);
}

int sg_config_load(struct sg_config *cfg, const char *path, struct sg_error *err)
{
	char line[PATH_MAX + 256];
	struct where w = { .path = path };
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f)
		return sg_error_set(err, -errno, "cannot open config file %s: %s", path,
				    strerror(errno));
	while (r == 0 && fgets(line, sizeof(line), f)) {
		char *hash;
		w.lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			r = CONFIG_ERROR(err, -EINVAL, &w, "%s", "line too long");
			break;
		}
		/* A '#' outside a quoted string starts a comment. */
		bool quoted = false;
		for (hash = line; *hash; hash++) {
			if (*hash == '\\' && quoted && hash[1])
				hash++;
			else if (*hash == '"')
				quoted = !quoted;
			else if (*hash == '#' && !quoted)
				break;
		}
		*hash = '\0';
		r = apply_line(cfg, line, &w, err);
	}
	if (r == 0 && ferror(f))
		r = sg_error_set(err, -EIO, "%s: read error", path);
	fclose(f);
	return r;
}
