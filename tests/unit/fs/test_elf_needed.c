/* DT_NEEDED names from the first bytes of an ELF file (fs/elf_needed.h), over bytes a layer
 * gives us, so hostile: a built file and a real one give their names; names with a '/' or
 * "..", tables beyond the bytes given, every truncation and many random corruptions give
 * nothing out of bounds (run it under ASan: tests/run.sh asan). */
#include "fs/elf_needed.h"
#include "tests/helpers/elf_build.h"
#include "tests/unit/test.h"

#include <stdbool.h>
#include <stdio.h>

struct seen {
	const uint8_t *buf;
	size_t len;
	unsigned n;
	char names[SG_ELF_NEEDED_MAX][SG_ELF_NAME_MAX + 1];
};

static void on_name(void *ctx, const char *name, size_t len)
{
	struct seen *s = ctx;

	/* Inside the bytes given, NUL right after, a plain file name. */
	CHECK((const uint8_t *)name >= s->buf && (const uint8_t *)name + len < s->buf + s->len);
	CHECK(name[len] == 0);
	CHECK(len > 0 && len <= SG_ELF_NAME_MAX && !memchr(name, '/', len));
	CHECK(s->n < SG_ELF_NEEDED_MAX);
	memcpy(s->names[s->n], name, len);
	s->names[s->n][len] = 0;
	s->n++;
}

static unsigned names(const uint8_t *buf, size_t len, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	s->buf = buf;
	s->len = len;
	unsigned n = sg_elf_needed(buf, len, on_name, s);
	CHECK_EQ(n, s->n);
	return n;
}

static uint8_t elf[8192];
static struct seen seen;

TEST(a_built_file_gives_its_plain_names)
{
	const char *const needed[] = { "libfoo.so.1", "../evil.so", "dir/x.so", "..", "libbar.so" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 5, 0);

	CHECK(size > 0);
	CHECK_EQ(names(elf, size, &seen), 2u);
	CHECK_STR(seen.names[0], "libfoo.so.1");
	CHECK_STR(seen.names[1], "libbar.so");
	/* Not an ELF64 little-endian file: nothing. */
	elf[4] = 1;
	CHECK_EQ(names(elf, size, &seen), 0u);
	elf[4] = 2;
	elf[5] = 2;
	CHECK_EQ(names(elf, size, &seen), 0u);
	CHECK_EQ(sg_elf_needed(NULL, 100, on_name, &seen), 0u);
}

TEST(a_real_binary_needs_libc)
{
	static uint8_t buf[1 << 20];
	FILE *f = fopen("/bin/ls", "rb");
	if (!f)
		SKIP("no /bin/ls");
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (len < 64 || memcmp(buf, "\x7f" "ELF", 4) != 0 || buf[4] != 2 || buf[5] != 1)
		SKIP("/bin/ls is no ELF64 LE file");
	CHECK(names(buf, len, &seen) >= 1);
	bool libc = false;
	for (unsigned i = 0; i < seen.n; i++)
		libc |= strncmp(seen.names[i], "libc.so", 7) == 0;
	CHECK(libc);
}

TEST(every_truncation_stays_in_bounds)
{
	const char *const needed[] = { "libfoo.so.1", "libbar.so" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 2, 0);

	for (size_t len = 0; len <= size; len++) {
		/* A copy of exactly len bytes: ASan catches a read past them. */
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, elf, len);
		unsigned n = names(cut, len, &seen);
		uint64_t end;
		(void)sg_elf_data_end(cut, len, &end);
		CHECK(n <= 2);
		if (len == size)
			CHECK_EQ(n, 2u);
		free(cut);
	}
}

TEST(random_corruption_stays_in_bounds)
{
	const char *const needed[] = { "libfoo.so.1", "libbar.so", "libc.so.6" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 3, 512);
	uint32_t seed = 12345;
	uint8_t *copy = malloc(size);

	for (int round = 0; round < 200000; round++) {
		memcpy(copy, elf, size);
		int flips = 1 + round % 8;
		for (int i = 0; i < flips; i++) {
			seed = seed * 1103515245u + 12345u;
			/* Mostly in the headers and tables, where offsets and sizes live. */
			size_t at = (seed >> 8) % (round % 4 ? 300 : size);
			seed = seed * 1103515245u + 12345u;
			copy[at] = (round % 3) ? (uint8_t)(seed >> 16) : (uint8_t)(copy[at] ^ 0x80);
		}
		seed = seed * 1103515245u + 12345u;
		size_t len = round % 5 ? size : (seed >> 8) % (size + 1);
		names(copy, len, &seen);
		uint64_t end;
		(void)sg_elf_data_end(copy, len, &end);
	}
	free(copy);
}

TEST(tables_beyond_the_bytes_given_give_nothing)
{
	const char *const needed[] = { "libfoo.so.1" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 1, 0);

	/* The string table's address moved far beyond the file. */
	uint8_t copy[4096];
	memcpy(copy, elf, size);
	for (size_t d = 64 + 112; d + 16 <= size; d += 16)
		if (copy[d] == 5)   /* DT_STRTAB */
			test_elf_put(copy + d + 8, TEST_ELF_VADDR + 1000000, 8);
	CHECK_EQ(names(copy, size, &seen), 0u);
	/* A dynamic section that starts past the end: the names come from the strings of the
	 * first segment (the scan), here the one name. */
	memcpy(copy, elf, size);
	test_elf_put(copy + 64 + 56 + 8, size + 10, 8);
	CHECK_EQ(names(copy, size, &seen), 1u);
	CHECK_STR(seen.names[0], "libfoo.so.1");
	/* ... and nothing without a segment at offset 0 to scan. */
	test_elf_put(copy + 64 + 8, 4096, 8);   /* PT_LOAD p_offset */
	CHECK_EQ(names(copy, size, &seen), 0u);
	/* Offsets that wrap around. */
	memcpy(copy, elf, size);
	test_elf_put(copy + 32, UINT64_MAX - 8, 8);   /* e_phoff */
	CHECK_EQ(names(copy, size, &seen), 0u);
	memcpy(copy, elf, size);
	test_elf_put(copy + 64 + 8, UINT64_MAX - 100, 8);   /* PT_LOAD p_offset */
	CHECK_EQ(names(copy, size, &seen), 0u);
}

/* A large program keeps its dynamic section in its data segment, beyond its first chunk:
 * the library names come from the first segment's strings, each once, and only those
 * shaped like a library's file name. */
TEST(a_dynamic_section_beyond_the_bytes_given_is_replaced_by_the_strings_before_it)
{
	const char *const needed[] = { "libm.so.6", "ld-linux-x86-64.so.2", "libpython3.11.so.1.0",
				       "libc.so.6", "libm.so.6", "GLIBC_2.2.5", "libc_start_main",
				       "libx.so.", "lib.so", "libfoo.sox", "libz.so.1" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 11, 0);

	CHECK(size > 0);
	test_elf_put(elf + 64 + 56 + 8, 1u << 20, 8);   /* PT_DYNAMIC far beyond */
	CHECK_EQ(names(elf, size, &seen), 5u);
	CHECK_STR(seen.names[0], "libm.so.6");
	CHECK_STR(seen.names[1], "ld-linux-x86-64.so.2");
	CHECK_STR(seen.names[2], "libpython3.11.so.1.0");
	CHECK_STR(seen.names[3], "libc.so.6");
	CHECK_STR(seen.names[4], "libz.so.1");
	/* Every truncation of it stays in bounds. */
	for (size_t len = 0; len <= size; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, elf, len);
		CHECK(names(cut, len, &seen) <= 5u);
		free(cut);
	}
}

/* cc1 keeps its library names 893 KiB into its first segment, after a large .dynsym: a scan
 * of the first 512 KiB found none, and each library was a miss of its own. */
TEST(library_names_deep_in_a_large_first_segment_are_found)
{
	const char *const needed[] = { "libisl.so.23", "libmpc.so.3", "libzstd.so.1" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 3, 0), at = 914796;
	static uint8_t big[4u << 20];

	CHECK(size > 0);
	memset(big, 0, sizeof(big));
	memcpy(big, elf, size);
	test_elf_put(big + 64 + 32, sizeof(big), 8);        /* PT_LOAD p_filesz: all of it */
	test_elf_put(big + 64 + 56 + 8, 32u << 20, 8);     /* PT_DYNAMIC in the data segment */
	/* The strings moved deep into the segment; what was left of them near the start is
	 * wiped, so only the deep copy can be found. */
	size_t str = 64 + 2 * 56 + 6 * 16;
	memcpy(big + at, elf + str, size - str);
	memset(big + str, 0, size - str);
	CHECK_EQ(names(big, sizeof(big), &seen), 3u);
	CHECK_STR(seen.names[0], "libisl.so.23");
	CHECK_STR(seen.names[2], "libzstd.so.1");
	/* The first chunk of such a file may be shorter than the strings' place: nothing. */
	CHECK_EQ(names(big, at, &seen), 0u);
}

/* Where the data segment ends: the writable PT_LOAD that ends furthest in, its last byte. */
TEST(the_data_segment_ends_where_the_writable_load_that_ends_last_ends)
{
	const char *const needed[] = { "libfoo.so.1" };
	size_t size = test_elf_build(elf, sizeof(elf), needed, 1, 4096);
	uint64_t end = 0;

	CHECK(size > 0);
	/* The builder's one PT_LOAD is read-only: no data segment. */
	CHECK(!sg_elf_data_end(elf, size, &end));
	/* Writable, covering the whole file. */
	test_elf_put(elf + 64 + 4, 6, 4);   /* PF_R | PF_W */
	CHECK(sg_elf_data_end(elf, size, &end));
	CHECK_EQ(end, size - 1);
	/* A second, writable PT_LOAD further in (the PT_DYNAMIC slot made one): it wins. */
	test_elf_put(elf + 64 + 56, 1, 4);
	test_elf_put(elf + 64 + 56 + 4, 6, 4);
	test_elf_put(elf + 64 + 56 + 8, 30u << 20, 8);   /* p_offset: beyond the bytes given */
	test_elf_put(elf + 64 + 56 + 32, 1000, 8);       /* p_filesz */
	CHECK(sg_elf_data_end(elf, size, &end));
	CHECK_EQ(end, (30u << 20) + 999);
	/* Nothing from the file (bss only), or an end that wraps around: not counted. */
	test_elf_put(elf + 64 + 56 + 32, 0, 8);
	CHECK(sg_elf_data_end(elf, size, &end));
	CHECK_EQ(end, size - 1);
	test_elf_put(elf + 64 + 56 + 8, UINT64_MAX - 10, 8);
	test_elf_put(elf + 64 + 56 + 32, 100, 8);
	CHECK(sg_elf_data_end(elf, size, &end));
	CHECK_EQ(end, size - 1);
	/* Headers cut off, or no ELF: false. */
	CHECK(!sg_elf_data_end(elf, 40, &end));
	elf[0] = 0;
	CHECK(!sg_elf_data_end(elf, size, &end));
}

/* PT_INTERP: an absolute path, NUL-terminated inside the bytes given. */
static size_t with_interp(const char *interp, size_t size)
{
	const char *const needed[] = { "libc.so.6" };
	return test_elf_build_interp(elf, sizeof(elf), needed, 1, interp, size);
}

TEST(the_interpreter_is_an_absolute_path_within_the_bytes_given)
{
	const char *path;
	size_t len;
	size_t size = with_interp("/lib64/ld-linux-x86-64.so.2", 1024);

	CHECK(sg_elf_interp(elf, size, &path, &len));
	CHECK_EQ(len, strlen("/lib64/ld-linux-x86-64.so.2"));
	CHECK_STR(path, "/lib64/ld-linux-x86-64.so.2");
	/* Cut anywhere before its NUL: none (the path is the file's last bytes). */
	size = with_interp("/lib64/ld-linux-x86-64.so.2", 0);
	for (size_t cut = 0; cut < size; cut++)
		CHECK(!sg_elf_interp(elf, cut, &path, &len));
	CHECK_EQ(names(elf, size, &seen), 1u);   /* and its DT_NEEDED, as before */
	size = with_interp("lib64/relative.so", 1024);
	CHECK(!sg_elf_interp(elf, size, &path, &len));
	size = test_elf_build(elf, sizeof(elf), NULL, 0, 1024);
	CHECK(!sg_elf_interp(elf, size, &path, &len));
	CHECK(!sg_elf_interp(NULL, 100, &path, &len));
}

TEST(a_real_program_names_its_interpreter)
{
	static uint8_t buf[1 << 20];
	const char *path;
	size_t len;
	FILE *f = fopen("/bin/ls", "rb");
	if (!f)
		SKIP("no /bin/ls");
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (n < 64 || memcmp(buf, "\x7f" "ELF", 4) != 0 || buf[4] != 2 || buf[5] != 1)
		SKIP("/bin/ls is no ELF64 LE file");
	CHECK(sg_elf_interp(buf, n, &path, &len));
	CHECK(len > 1 && path[0] == '/' && strstr(path, "ld"));
}

TEST_MAIN()
