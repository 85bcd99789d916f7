#include "fs/elf_needed.h"

#include <stdbool.h>
#include <string.h>

#define EHDR_SIZE 64u
#define PHDR_SIZE 56u
#define DYN_SIZE 16u
#define PHDRS_MAX 64u        /* program headers looked at */
#define LOADS_MAX 16u
#define DYNS_MAX 4096u       /* dynamic entries looked at */

#define PT_LOAD 1u
#define PT_DYNAMIC 2u
#define DT_NULL 0u
#define DT_NEEDED 1u
#define DT_STRTAB 5u
#define DT_STRSZ 10u

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* [off, off+size) lies within [0, len), without overflow. */
static bool within(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

struct load {
	uint64_t vaddr, offset, filesz;
};

/* The file offset of virtual address v, through the PT_LOAD segments; false if none maps it. */
static bool vaddr_to_offset(const struct load *loads, unsigned n, uint64_t v, uint64_t *ret)
{
	for (unsigned i = 0; i < n; i++)
		if (v >= loads[i].vaddr && v - loads[i].vaddr < loads[i].filesz) {
			uint64_t off = loads[i].offset + (v - loads[i].vaddr);
			if (off < loads[i].offset)
				return false;   /* wrapped */
			*ret = off;
			return true;
		}
	return false;
}

static bool plain_name(const char *s, size_t n)
{
	if (n == 0 || n > SG_ELF_NAME_MAX || memchr(s, '/', n))
		return false;
	return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

unsigned sg_elf_needed(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const char *name, size_t name_len), void *ctx)
{
	struct load loads[LOADS_MAX];
	unsigned n_loads = 0, reported = 0;
	uint64_t dyn_off = 0, dyn_size = 0;
	bool have_dyn = false;

	if (!buf || len < EHDR_SIZE || memcmp(buf, "\x7f" "ELF", 4) != 0 || buf[4] != 2 /* 64 */ ||
	    buf[5] != 1 /* little-endian */)
		return 0;
	uint64_t phoff = le64(buf + 32);
	uint16_t phentsize = le16(buf + 54), phnum = le16(buf + 56);
	if (phentsize < PHDR_SIZE)
		return 0;
	for (unsigned i = 0; i < phnum && i < PHDRS_MAX; i++) {
		uint64_t at = phoff + (uint64_t)i * phentsize;
		if (at < phoff || !within(at, PHDR_SIZE, len))
			break;
		const uint8_t *ph = buf + at;
		uint32_t type = le32(ph);
		if (type == PT_LOAD && n_loads < LOADS_MAX) {
			loads[n_loads].offset = le64(ph + 8);
			loads[n_loads].vaddr = le64(ph + 16);
			loads[n_loads].filesz = le64(ph + 32);
			n_loads++;
		} else if (type == PT_DYNAMIC && !have_dyn) {
			dyn_off = le64(ph + 8);
			dyn_size = le64(ph + 32);
			have_dyn = true;
		}
	}
	if (!have_dyn || dyn_off >= len)
		return 0;
	if (dyn_size > len - dyn_off)
		dyn_size = len - dyn_off;   /* the part within the bytes given */

	/* First pass: where the string table is. */
	uint64_t strtab_v = 0, strsz = UINT64_MAX;
	bool have_strtab = false;
	unsigned n_dyn = (unsigned)(dyn_size / DYN_SIZE < DYNS_MAX ? dyn_size / DYN_SIZE : DYNS_MAX);
	for (unsigned i = 0; i < n_dyn; i++) {
		const uint8_t *d = buf + dyn_off + (uint64_t)i * DYN_SIZE;
		uint64_t tag = le64(d), val = le64(d + 8);
		if (tag == DT_NULL)
			break;
		if (tag == DT_STRTAB) {
			strtab_v = val;
			have_strtab = true;
		} else if (tag == DT_STRSZ) {
			strsz = val;
		}
	}
	uint64_t strtab;
	if (!have_strtab || !vaddr_to_offset(loads, n_loads, strtab_v, &strtab) || strtab >= len)
		return 0;
	uint64_t str_end = strsz < len - strtab ? strtab + strsz : len;

	/* Second pass: the names, each NUL-terminated inside the table and the bytes given. */
	for (unsigned i = 0; i < n_dyn && reported < SG_ELF_NEEDED_MAX; i++) {
		const uint8_t *d = buf + dyn_off + (uint64_t)i * DYN_SIZE;
		uint64_t tag = le64(d), val = le64(d + 8);
		if (tag == DT_NULL)
			break;
		if (tag != DT_NEEDED || val >= str_end - strtab)
			continue;
		const char *name = (const char *)buf + strtab + val;
		const char *nul = memchr(name, 0, str_end - (strtab + val));
		if (!nul || !plain_name(name, (size_t)(nul - name)))
			continue;
		cb(ctx, name, (size_t)(nul - name));
		reported++;
	}
	return reported;
}
