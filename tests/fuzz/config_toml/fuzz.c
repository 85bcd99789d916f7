/* libFuzzer target: config.toml, through the shared TOML reader with integers and array
 * tables on (daemon/core/toml.c) and the daemon's key mapping (daemon/config.c, which also
 * writes hosts.toml text for stargz-snapshotter's resolver mirrors).  On success every
 * mirror text must itself be a hosts.toml the hosts.toml reader takes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "net/hosts_toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };
	/* Copy to an exact-size buffer: the reader gets a length, not a C string. */
	char *copy = malloc(size ? size : 1);

	memcpy(copy, data, size);
	sg_config_defaults(&cfg);
	int r = sg_config_parse(&cfg, copy, size, "fuzz.toml", &err);
	if (r < 0 && !err.msg[0])
		abort();   /* every failure says why */
	for (size_t i = 0; r == 0 && i < cfg.n_resolver; i++) {
		struct sg_hosts_config *h = NULL;
		const char *t = cfg.resolver_hosts_toml[i];
		if (sg_hosts_toml_parse(t, strlen(t), cfg.resolver_domains[i], NULL, &h, &err) == 0)
			sg_hosts_config_free(h);
	}
	sg_config_clear(&cfg);
	free(copy);
	return 0;
}
