/* libFuzzer target: the #include names of a header (fs/c_includes.c), which reads a layer's
 * content (untrusted).  Every name reported must be NUL-terminated at its length, hold no
 * newline and no ".." component, and no more than SG_C_INCLUDES_MAX are reported. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/c_includes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_include(void *ctx, const struct sg_c_include *inc)
{
	unsigned *n = ctx;

	if (inc->len == 0 || inc->len > SG_C_INCLUDE_NAME_MAX || inc->name[inc->len] != 0 ||
	    strlen(inc->name) != inc->len || strchr(inc->name, '\n') ||
	    strcmp(inc->name, "..") == 0 || strncmp(inc->name, "../", 3) == 0 ||
	    strstr(inc->name, "/../"))
		abort();
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: a read past the input is caught. */
	uint8_t *copy = malloc(size ? size : 1);
	unsigned seen = 0;

	memcpy(copy, data, size);
	unsigned n = sg_c_includes(copy, size, on_include, &seen);
	if (n != seen || n > SG_C_INCLUDES_MAX)
		abort();
	free(copy);
	return 0;
}
