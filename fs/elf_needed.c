#include "fs/elf_needed.h"

#include <stdbool.h>
#include <string.h>

#define EHDR_SIZE 64u
#define PHDR_SIZE 56u
#define DYN_SIZE 16u
#define PHDRS_MAX 64u        /* program headers looked at */
#define LOADS_MAX 16u
#define DYNS_MAX 4096u       /* dynamic entries looked at */
/* Bytes of the first segment scanned for library names when the dynamic section is beyond
 * the bytes given: all of an eStargz chunk (4 MiB by default) and more.  .dynstr follows
 * .dynsym, which grows with the symbols a program exports: gcc's cc1 (33 MB) has its
 * library names 893 KiB in, past the 512 KiB scanned before, and its six libraries were
 * six misses one after the other (0.4 s).  Scanning is a memchr per string: 4 MiB of
 * symbol names take about a millisecond. */
#define SCAN_MAX (8u << 20)

#define PT_LOAD 1u
#define PF_W 2u
#define PT_DYNAMIC 2u
#define PT_INTERP 3u
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
	bool writable;
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

/* What the program headers say: the PT_LOAD segments, PT_DYNAMIC and PT_INTERP. */
struct elf_view {
	struct load loads[LOADS_MAX];
	unsigned n_loads;
	uint64_t dyn_off, dyn_size, interp_off, interp_size;
	bool have_dyn, have_interp;
};

static bool read_phdrs(const uint8_t *buf, size_t len, struct elf_view *v)
{
	memset(v, 0, sizeof(*v));
	if (!buf || len < EHDR_SIZE || memcmp(buf, "\x7f" "ELF", 4) != 0 || buf[4] != 2 /* 64 */ ||
	    buf[5] != 1 /* little-endian */)
		return false;
	uint64_t phoff = le64(buf + 32);
	uint16_t phentsize = le16(buf + 54), phnum = le16(buf + 56);
	if (phentsize < PHDR_SIZE)
		return false;
	for (unsigned i = 0; i < phnum && i < PHDRS_MAX; i++) {
		uint64_t at = phoff + (uint64_t)i * phentsize;
		if (at < phoff || !within(at, PHDR_SIZE, len))
			break;
		const uint8_t *ph = buf + at;
		uint32_t type = le32(ph);
		if (type == PT_LOAD && v->n_loads < LOADS_MAX) {
			v->loads[v->n_loads].offset = le64(ph + 8);
			v->loads[v->n_loads].vaddr = le64(ph + 16);
			v->loads[v->n_loads].filesz = le64(ph + 32);
			v->loads[v->n_loads].writable = (le32(ph + 4) & PF_W) != 0;
			v->n_loads++;
		} else if (type == PT_DYNAMIC && !v->have_dyn) {
			v->dyn_off = le64(ph + 8);
			v->dyn_size = le64(ph + 32);
			v->have_dyn = true;
		} else if (type == PT_INTERP && !v->have_interp) {
			v->interp_off = le64(ph + 8);
			v->interp_size = le64(ph + 32);
			v->have_interp = true;
		}
	}
	return true;
}

bool sg_elf_data_end(const uint8_t *buf, size_t len, uint64_t *ret_offset)
{
	struct elf_view v;
	bool found = false;
	uint64_t end = 0;

	if (!read_phdrs(buf, len, &v))
		return false;
	for (unsigned i = 0; i < v.n_loads; i++) {
		const struct load *ld = &v.loads[i];
		if (!ld->writable || ld->filesz == 0 || ld->offset + ld->filesz < ld->offset)
			continue;   /* nothing from the file, or wrapping around */
		if (ld->offset + ld->filesz > end) {
			end = ld->offset + ld->filesz;
			found = true;
		}
	}
	if (found)
		*ret_offset = end - 1;
	return found;
}

bool sg_elf_interp(const uint8_t *buf, size_t len, const char **ret_path, size_t *ret_len)
{
	struct elf_view v;

	if (!read_phdrs(buf, len, &v) || !v.have_interp || v.interp_size < 2 ||
	    v.interp_size > SG_ELF_PATH_MAX + 1 || !within(v.interp_off, v.interp_size, len))
		return false;
	const char *path = (const char *)buf + v.interp_off;
	const char *nul = memchr(path, 0, v.interp_size);
	if (!nul || nul == path || path[0] != '/')
		return false;
	*ret_path = path;
	*ret_len = (size_t)(nul - path);
	return true;
}

/* A name shaped like a library's file name: lib*.so or ld-*.so, maybe followed by a
 * version (".6", ".1.2.13"), in the characters such names use. */
static bool soname_like(const char *s, size_t n)
{
	if (n < 6 || n > SG_ELF_NAME_MAX || (memcmp(s, "lib", 3) != 0 && memcmp(s, "ld-", 3) != 0))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.' || c == '+'))
			return false;
	}
	/* The last ".so" and, after it, only dots and digits. */
	for (size_t i = n - 3; i > 3; i--) {
		if (memcmp(s + i, ".so", 3) != 0)
			continue;
		for (size_t j = i + 3; j < n; j++)
			if (!(s[j] == '.' || (s[j] >= '0' && s[j] <= '9')))
				return false;
		return i + 3 == n || (s[i + 3] == '.' && i + 4 < n);
	}
	return false;
}

/* The dynamic section lies beyond the bytes given (a large program's sits in its data
 * segment, past the first chunk), but its string table is in the first segment: the
 * NUL-separated strings there that look like library names.  Besides DT_NEEDED, .dynstr
 * names the same libraries for symbol versions, and a library its own SONAME (already in
 * use, so nothing to fetch); symbol and version names do not end in ".so*". */
static unsigned scan_names(const uint8_t *buf, size_t len, const struct elf_view *v,
			   void (*cb)(void *ctx, const char *name, size_t name_len), void *ctx)
{
	uint64_t end = 0;
	unsigned reported = 0;
	const char *seen[SG_ELF_NEEDED_MAX];

	for (unsigned i = 0; i < v->n_loads; i++)
		if (v->loads[i].offset == 0)
			end = v->loads[i].filesz;
	if (end > len)
		end = len;
	if (end > SCAN_MAX)
		end = SCAN_MAX;
	for (uint64_t at = EHDR_SIZE; at < end && reported < SG_ELF_NEEDED_MAX;) {
		const char *s = (const char *)buf + at;
		const char *nul = memchr(s, 0, end - at);
		if (!nul)
			break;
		size_t n = (size_t)(nul - s);
		at += n + 1;
		if (s[-1] != 0 || !soname_like(s, n))
			continue;
		bool dup = false;
		for (unsigned i = 0; i < reported && !dup; i++)
			dup = strcmp(seen[i], s) == 0;
		if (dup)
			continue;
		seen[reported++] = s;
		cb(ctx, s, n);
	}
	return reported;
}

unsigned sg_elf_needed(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const char *name, size_t name_len), void *ctx)
{
	struct elf_view v;
	unsigned reported = 0;

	if (!read_phdrs(buf, len, &v) || !v.have_dyn)
		return 0;
	if (v.dyn_off >= len)
		return scan_names(buf, len, &v, cb, ctx);
	uint64_t dyn_off = v.dyn_off, dyn_size = v.dyn_size;
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
	if (!have_strtab || !vaddr_to_offset(v.loads, v.n_loads, strtab_v, &strtab) || strtab >= len)
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
