/* libFuzzer target: DT_NEEDED names and the end of the data segment from the first bytes of
 * an ELF file (fs/elf_needed.c), which reads a layer's content (untrusted).  Every name
 * reported must lie inside the input, end in a NUL and be a plain file name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/elf_needed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	const uint8_t *buf;
	size_t len;
};

static void on_name(void *ctx, const char *name, size_t len)
{
	const struct input *in = ctx;

	if ((const uint8_t *)name < in->buf || (const uint8_t *)name + len >= in->buf + in->len ||
	    name[len] != 0 || len == 0 || len > SG_ELF_NAME_MAX || memchr(name, '/', len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: a read past the input is caught. */
	uint8_t *copy = malloc(size ? size : 1);
	struct input in = { copy, size };

	memcpy(copy, data, size);
	if (sg_elf_needed(copy, size, on_name, &in) > SG_ELF_NEEDED_MAX)
		abort();
	uint64_t end;
	(void)sg_elf_data_end(copy, size, &end);
	free(copy);
	return 0;
}
