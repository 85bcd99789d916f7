/* libFuzzer target: the modules a Python source imports (fs/py_imports.c), which reads a
 * command line's or a container's script (untrusted).  Every name reported must be
 * NUL-terminated at its length, a dotted identifier, and no more than SG_PY_IMPORTS_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/py_imports.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_name(void *ctx, const char *name, size_t len)
{
	unsigned *n = ctx;

	if (len == 0 || len > SG_PY_MODULE_MAX || name[len] != 0 || strlen(name) != len ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != len ||
	    name[0] == '.' || name[len - 1] == '.' || strstr(name, ".."))
		abort();
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: a read past the input is caught. */
	uint8_t *copy = malloc(size ? size : 1);
	unsigned seen = 0;

	memcpy(copy, data, size);
	unsigned n = sg_py_imports(copy, size, on_name, &seen);
	if (n != seen || n > SG_PY_IMPORTS_MAX)
		abort();
	free(copy);
	return 0;
}
