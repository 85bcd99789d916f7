/* The headers a C source names (fs/c_includes.h), over bytes a layer gives us, so hostile:
 * real glibc headers give the names the preprocessor would open; directives with macros,
 * unclosed operands, ".." components and lines cut off at the end give nothing; every
 * truncation stays in bounds (run it under ASan: tests/run.sh asan). */
#include "fs/c_includes.h"
#include "tests/unit/test.h"

#include <stdio.h>
#include <stdlib.h>

struct seen {
	unsigned n;
	char names[SG_C_INCLUDES_MAX][SG_C_INCLUDE_NAME_MAX + 3];   /* "<name>" or "\"name\"" */
	bool next[SG_C_INCLUDES_MAX];
};

static void on_include(void *ctx, const struct sg_c_include *inc)
{
	struct seen *s = ctx;

	CHECK(s->n < SG_C_INCLUDES_MAX);
	CHECK(inc->len > 0 && inc->len <= SG_C_INCLUDE_NAME_MAX && inc->name[inc->len] == 0);
	CHECK(strlen(inc->name) == inc->len && !strchr(inc->name, '\n'));
	snprintf(s->names[s->n], sizeof(s->names[0]), inc->quoted ? "\"%s\"" : "<%s>", inc->name);
	s->next[s->n] = inc->next;
	s->n++;
}

static unsigned scan(const char *text, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	unsigned n = sg_c_includes((const uint8_t *)text, strlen(text), on_include, s);
	CHECK_EQ(n, s->n);
	return n;
}

static struct seen seen;

TEST(directives_give_their_names_in_file_order)
{
	const char *text =
		"/* a header */\n"
		"#ifndef X_H\n"
		"#include <features.h>\n"
		"  #  include\t\"local.h\"  /* a comment */\n"
		"#include_next <limits.h>\n"
		"#include <bits/types/FILE.h>\n"
		"#if 0\n"
		"# include <only-in-if-0.h>\n"
		"#endif\n";

	CHECK_EQ(scan(text, &seen), 5u);
	CHECK_STR(seen.names[0], "<features.h>");
	CHECK_STR(seen.names[1], "\"local.h\"");
	CHECK_STR(seen.names[2], "<limits.h>");
	CHECK(seen.next[2] && !seen.next[0] && !seen.next[1]);
	CHECK_STR(seen.names[3], "<bits/types/FILE.h>");
	/* No preprocessing: a directive under #if 0 is reported too (a small header at worst). */
	CHECK_STR(seen.names[4], "<only-in-if-0.h>");
}

TEST(what_names_no_literal_file_gives_nothing)
{
	const char *text =
		"#include MACRO_HEADER\n"
		"#include <unclosed.h\n"
		"#include \"unclosed.h\n"
		"#include <>\n"
		"#include <../escape.h>\n"
		"#include <a/../b.h>\n"
		"#include <sub/..>\n"
		"#includes <x.h>\n"
		"#define include <y.h>\n"
		"int include = 1; /* #include <z.h> not at a line's start */\n"
		"#include <dots..ok.h>\n"
		"#include <cut-off.h>";   /* no newline: cut off at the buffer's end */

	CHECK_EQ(scan(text, &seen), 1u);
	CHECK_STR(seen.names[0], "<dots..ok.h>");
}

TEST(at_most_the_limit_is_reported)
{
	static char text[SG_C_INCLUDES_MAX * 2 * 32];
	size_t at = 0;

	for (unsigned i = 0; i < SG_C_INCLUDES_MAX * 2; i++)
		at += (size_t)snprintf(text + at, sizeof(text) - at, "#include <h%u.h>\n", i);
	CHECK_EQ(scan(text, &seen), SG_C_INCLUDES_MAX);
	CHECK_STR(seen.names[SG_C_INCLUDES_MAX - 1], "<h127.h>");
}

TEST(a_name_longer_than_the_limit_is_skipped)
{
	static char text[SG_C_INCLUDE_NAME_MAX + 64];
	int len = snprintf(text, sizeof(text), "#include <%0*d.h>\n#include <ok.h>\n",
			   SG_C_INCLUDE_NAME_MAX, 0);

	CHECK(len > 0 && (size_t)len < sizeof(text));
	CHECK_EQ(scan(text, &seen), 1u);
	CHECK_STR(seen.names[0], "<ok.h>");
}

/* A real header of the build machine: the names the preprocessor opens from it are there. */
TEST(a_real_glibc_header_names_what_it_includes)
{
	static char buf[256 << 10];
	FILE *f = fopen("/usr/include/stdio.h", "rb");
	if (!f)
		SKIP("no /usr/include/stdio.h");
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	CHECK(scan(buf, &seen) >= 5);
	bool header_start = false, types = false;
	for (unsigned i = 0; i < seen.n; i++) {
		header_start |= strcmp(seen.names[i], "<bits/libc-header-start.h>") == 0;
		types |= strcmp(seen.names[i], "<bits/types.h>") == 0;
	}
	CHECK(header_start && types);
}

/* Every prefix of a header: each run reports only whole lines, in bounds (ASan checks the
 * reads against an exact-size copy). */
TEST(every_truncation_stays_in_bounds)
{
	const char *text = "#include <a.h>\n# include_next \"b/c.h\"\n#include <d.h>\n";
	size_t len = strlen(text);

	for (size_t cut = 0; cut <= len; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1);
		memcpy(copy, text, cut);
		memset(&seen, 0, sizeof(seen));
		unsigned n = sg_c_includes(copy, cut, on_include, &seen);
		free(copy);
		CHECK_EQ(n, cut < 15 ? 0u : cut < 38 ? 1u : cut < len ? 2u : 3u);
	}
}

TEST_MAIN()
