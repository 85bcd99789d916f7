#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

void sg_config_defaults(struct sg_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->root, sizeof(cfg->root), "%s", SG_DEFAULT_ROOT);
	snprintf(cfg->address, sizeof(cfg->address), "%s", SG_DEFAULT_ADDRESS);
	cfg->log_level = SG_LOG_INFO;
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
		r = parse_string(val, value, sizeof(value));
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: value of %s must be a quoted string", path, lineno,
				 key);
			goto out;
		}
		if (strcmp(key, "root") == 0) {
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
