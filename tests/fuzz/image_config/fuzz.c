/* libFuzzer target: the image config parser of daemon/image_entry.h (bytes from a registry,
 * verified by digest but written by whoever built the image).  On success every path is
 * absolute, NUL-terminated and bounded, commands are counted within their bound; a refusal
 * says why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/image_entry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sg_image_entry e;
	struct sg_error err = { 0 };
	char *copy = malloc(size ? size : 1);

	memcpy(copy, data, size);
	int r = sg_image_entry_parse(copy, size, &e, &err);
	if (r == 0) {
		if (e.n > SG_ENTRY_PATHS_MAX)
			abort();
		for (size_t i = 0; i < e.n; i++) {
			if (e.p[i].path[0] != '/' || e.p[i].command >= SG_ENTRY_COMMANDS_MAX ||
			    strnlen(e.p[i].path, SG_ENTRY_PATH_MAX) == SG_ENTRY_PATH_MAX)
				abort();
			if (i > 0 && e.p[i].command < e.p[i - 1].command)
				abort();
		}
	} else if (r != -ENOMEM && err.msg[0] == '\0') {
		abort();
	}
	free(copy);
	return 0;
}
