#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
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

int sg_config_load(struct sg_config *cfg, const char *path, char *err, size_t errlen)
{
	char line[PATH_MAX + 256], value[PATH_MAX];
	unsigned lineno = 0;
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
		return r;
	}
	while (fgets(line, sizeof(line), f)) {
		char *key, *val, *eq, *hash;
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			r = -EINVAL;
			goto out;
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
		key = trim(line);
		if (*key == '\0')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: expected key = value", path, lineno);
			r = -EINVAL;
			goto out;
		}
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		bool *flag = NULL;
		if (strcmp(key, "lazy") == 0)
			flag = &cfg->lazy;
		else if (strcmp(key, "prefetch") == 0)
			flag = &cfg->prefetch;
		else if (strcmp(key, "background_fetch") == 0)
			flag = &cfg->background_fetch;
		else if (strcmp(key, "passthrough") == 0)
			flag = &cfg->passthrough;
		else if (strcmp(key, "allow_skip_verify") == 0)
			flag = &cfg->allow_skip_verify;
		else if (strcmp(key, "plain_http_localhost") == 0)
			flag = &cfg->plain_http_localhost;
		if (flag) {
			if (parse_bool(val, flag) < 0) {
				snprintf(err, errlen, "%s:%u: value of %s must be true or false", path,
					 lineno, key);
				r = -EINVAL;
				goto out;
			}
			continue;
		}
		if (strcmp(key, "fetch_window") == 0) {
			char *end;
			cfg->fetch_window = strtoul(val, &end, 10);
			if (*end || end == val || cfg->fetch_window > (64ul << 20)) {
				snprintf(err, errlen, "%s:%u: fetch_window must be a byte count up to 64 MiB",
					 path, lineno);
				r = -EINVAL;
				goto out;
			}
			continue;
		}
		if (strcmp(key, "fetch_timeout") == 0 || strcmp(key, "fetch_attempts") == 0) {
			bool timeout = strcmp(key, "fetch_timeout") == 0;
			char *end;
			unsigned long v = strtoul(val, &end, 10);
			if (*end || end == val || v < 1 || v > (timeout ? 3600u : 20u)) {
				snprintf(err, errlen, "%s:%u: %s must be %s", path, lineno, key,
					 timeout ? "a number of seconds from 1 to 3600" : "a count from 1 to 20");
				r = -EINVAL;
				goto out;
			}
			*(timeout ? &cfg->fetch_timeout_s : &cfg->fetch_attempts) = (unsigned)v;
			continue;
		}
		if (strcmp(key, "max_chunk_size") == 0) {
			char num[64];
			if (parse_string(val, num, sizeof(num)) < 0)
				snprintf(num, sizeof(num), "%s", val);
			if (sg_parse_size(num, &cfg->max_chunk_size) < 0 ||
			    cfg->max_chunk_size < (64u << 10) || cfg->max_chunk_size > (512u << 20)) {
				snprintf(err, errlen, "%s:%u: max_chunk_size must be a byte count from 64K "
					 "to 512M", path, lineno);
				r = -EINVAL;
				goto out;
			}
			continue;
		}
		if (strcmp(key, "cache_max_bytes") == 0) {
			/* "10G" or 10G or a plain byte count. */
			char num[64];
			if (parse_string(val, num, sizeof(num)) < 0)
				snprintf(num, sizeof(num), "%s", val);
			if (sg_parse_size(num, &cfg->cache_max_bytes) < 0) {
				snprintf(err, errlen, "%s:%u: cache_max_bytes must be a byte count such as "
					 "10G, 512M or 1073741824", path, lineno);
				r = -EINVAL;
				goto out;
			}
			continue;
		}
		if (strcmp(key, "insecure_hosts") == 0) {
			r = parse_string_list(val, cfg->insecure_hosts, &cfg->n_insecure_hosts);
			if (r < 0) {
				snprintf(err, errlen, "%s:%u: insecure_hosts must be a list of at most %d "
					 "quoted strings on one line", path, lineno, SG_CONFIG_LIST_MAX);
				r = -EINVAL;
				goto out;
			}
			continue;
		}
		r = parse_string(val, value, sizeof(value));
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: value of %s must be a quoted string", path, lineno,
				 key);
			goto out;
		}
		if (strcmp(key, "hosts_dir") == 0) {
			snprintf(cfg->hosts_dir, sizeof(cfg->hosts_dir), "%s", value);
		} else if (strcmp(key, "docker_config") == 0) {
			snprintf(cfg->docker_config, sizeof(cfg->docker_config), "%s", value);
		} else if (strcmp(key, "root") == 0) {
			snprintf(cfg->root, sizeof(cfg->root), "%s", value);
		} else if (strcmp(key, "address") == 0) {
			snprintf(cfg->address, sizeof(cfg->address), "%s", value);
		} else if (strcmp(key, "log_level") == 0) {
			int level = sg_log_level_from_string(value);
			if (level < 0) {
				snprintf(err, errlen, "%s:%u: unknown log_level \"%s\"", path, lineno, value);
				r = -EINVAL;
				goto out;
			}
			cfg->log_level = (enum sg_log_level)level;
		} else {
			snprintf(err, errlen, "%s:%u: unknown key \"%s\"", path, lineno, key);
			r = -EINVAL;
			goto out;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		snprintf(err, errlen, "%s: read error", path);
	}
out:
	fclose(f);
	return r;
}
