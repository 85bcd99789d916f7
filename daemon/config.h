/* Daemon configuration: built-in defaults, then the config file, then command-line flags. */
#ifndef STARGZD_CONFIG_H
#define STARGZD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/log.h"

#define SG_DEFAULT_ROOT "/var/lib/stargzd"
#define SG_DEFAULT_ADDRESS "/run/stargzd/stargzd.sock"
#define SG_DEFAULT_CONFIG "/etc/stargzd/config.toml"

struct sg_config {
	char root[PATH_MAX];
	char address[PATH_MAX];
	enum sg_log_level log_level;
	bool foreground;
};

void sg_config_defaults(struct sg_config *cfg);

/* Reads a config file: `key = value` lines, `#` comments.  Keys: root, address (strings),
 * log_level (string).  Unknown keys, bad syntax or bad values fail with a message in err
 * naming the file and line.  Returns 0, -ENOENT if the file does not exist, or another
 * negative errno. */
int sg_config_load(struct sg_config *cfg, const char *path, char *err, size_t errlen);

#endif
