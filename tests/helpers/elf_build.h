/* A minimal dynamic ELF64 little-endian file, for tests (header-only, static): the ELF
 * header, a PT_LOAD mapping the whole file at 0x400000, a PT_DYNAMIC with one DT_NEEDED per
 * name, DT_STRTAB, DT_STRSZ and DT_NULL, the string table, optionally a PT_INTERP naming a
 * path written after the string table, then filler up to `size`. */
#ifndef STARGZD_TESTS_ELF_BUILD_H
#define STARGZD_TESTS_ELF_BUILD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TEST_ELF_VADDR 0x400000u

static inline void test_elf_put(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes the file into buf (cap bytes, zeroed first); returns its size: max(size, what the
 * tables need).  interp: NULL for none. */
static inline size_t test_elf_build_interp(uint8_t *buf, size_t cap, const char *const *needed,
					   size_t n, const char *interp, size_t size)
{
	size_t ph = 64, nph = interp ? 3 : 2, dyn = ph + nph * 56, ndyn = n + 3;
	size_t str = dyn + ndyn * 16, strsz = 1;

	for (size_t i = 0; i < n; i++)
		strsz += strlen(needed[i]) + 1;
	size_t interp_at = str + strsz, end = interp_at + (interp ? strlen(interp) + 1 : 0);
	if (size < end)
		size = end;
	if (size > cap)
		return 0;
	memset(buf, 0, size);
	memcpy(buf, "\x7f" "ELF", 4);
	buf[4] = 2;   /* ELFCLASS64 */
	buf[5] = 1;   /* little-endian */
	buf[6] = 1;
	test_elf_put(buf + 16, 3, 2);      /* ET_DYN */
	test_elf_put(buf + 18, 62, 2);     /* x86-64 */
	test_elf_put(buf + 32, ph, 8);     /* e_phoff */
	test_elf_put(buf + 52, 64, 2);     /* e_ehsize */
	test_elf_put(buf + 54, 56, 2);     /* e_phentsize */
	test_elf_put(buf + 56, nph, 2);    /* e_phnum */
	/* PT_LOAD: the whole file */
	test_elf_put(buf + ph, 1, 4);
	test_elf_put(buf + ph + 8, 0, 8);
	test_elf_put(buf + ph + 16, TEST_ELF_VADDR, 8);
	test_elf_put(buf + ph + 32, size, 8);
	/* PT_DYNAMIC */
	test_elf_put(buf + ph + 56, 2, 4);
	test_elf_put(buf + ph + 56 + 8, dyn, 8);
	test_elf_put(buf + ph + 56 + 16, TEST_ELF_VADDR + dyn, 8);
	test_elf_put(buf + ph + 56 + 32, ndyn * 16, 8);
	if (interp) {
		test_elf_put(buf + ph + 112, 3, 4);   /* PT_INTERP */
		test_elf_put(buf + ph + 112 + 8, interp_at, 8);
		test_elf_put(buf + ph + 112 + 16, TEST_ELF_VADDR + interp_at, 8);
		test_elf_put(buf + ph + 112 + 32, strlen(interp) + 1, 8);
		memcpy(buf + interp_at, interp, strlen(interp) + 1);
	}
	/* the dynamic entries and the string table (its first byte the empty name) */
	size_t s = 1, d = dyn;
	for (size_t i = 0; i < n; i++, d += 16) {
		test_elf_put(buf + d, 1, 8);   /* DT_NEEDED */
		test_elf_put(buf + d + 8, s, 8);
		memcpy(buf + str + s, needed[i], strlen(needed[i]) + 1);
		s += strlen(needed[i]) + 1;
	}
	test_elf_put(buf + d, 5, 8);   /* DT_STRTAB */
	test_elf_put(buf + d + 8, TEST_ELF_VADDR + str, 8);
	test_elf_put(buf + d + 16, 10, 8);   /* DT_STRSZ */
	test_elf_put(buf + d + 24, strsz, 8);
	/* DT_NULL: zeroes */
	return size;
}

static inline size_t test_elf_build(uint8_t *buf, size_t cap, const char *const *needed,
				    size_t n, size_t size)
{
	return test_elf_build_interp(buf, cap, needed, n, NULL, size);
}

#endif
