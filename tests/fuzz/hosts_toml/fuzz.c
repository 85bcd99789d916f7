/* libFuzzer target: the hosts.toml parser.  On success the result is walked (so that every
 * field is read under ASan) and checked: every mirror has a scheme, host and a path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/hosts_toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct sg_hosts_entry *e)
{
	if (!e->scheme || !e->host || !e->path || !*e->host || e->path[0] != '/')
		abort();
	if ((e->caps & ~(unsigned)SG_HOST_CAP_ALL) != 0)
		abort();
	for (size_t i = 0; i < e->nca; i++)
		if (!e->ca[i] || !*e->ca[i])
			abort();
	for (size_t i = 0; i < e->nclients; i++)
		if (!e->clients[i].cert)
			abort();
	for (size_t i = 0; i < e->nheaders; i++) {
		if (!e->headers[i].name || e->headers[i].nvalues == 0)
			abort();
		for (size_t k = 0; k < e->headers[i].nvalues; k++)
			if (strpbrk(e->headers[i].values[k], "\r\n"))
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_hosts_config *cfg = NULL;
	struct sg_error err = { 0 };
	/* Copy to an exact-size buffer: the parser gets a length, not a C string. */
	char *copy = malloc(size ? size : 1);

	memcpy(copy, data, size);
	int r = sg_hosts_toml_parse(copy, size, "docker.io", (size & 1) ? "/etc/x" : NULL, &cfg, &err);
	if (r == 0) {
		walk(&cfg->upstream);
		for (size_t i = 0; i < cfg->nmirrors; i++)
			walk(&cfg->mirrors[i]);
		sg_hosts_config_free(cfg);
	} else if (cfg != NULL || err.msg[0] == '\0') {
		abort();
	}
	free(copy);
	return 0;
}
