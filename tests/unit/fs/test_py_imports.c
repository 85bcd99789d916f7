/* The modules a Python source imports (fs/py_imports.h), over text a command line or a
 * container's script gives us, so hostile: statements give their dotted names in order,
 * relative and malformed imports give nothing, every truncation stays in bounds (run it
 * under ASan: tests/run.sh asan). */
#include "fs/py_imports.h"
#include "tests/unit/test.h"

#include <stdio.h>
#include <stdlib.h>

struct seen {
	unsigned n;
	char names[SG_PY_IMPORTS_MAX][SG_PY_MODULE_MAX + 1];
};

static void on_name(void *ctx, const char *name, size_t len)
{
	struct seen *s = ctx;

	CHECK(s->n < SG_PY_IMPORTS_MAX);
	CHECK(len > 0 && len <= SG_PY_MODULE_MAX && name[len] == 0 && strlen(name) == len);
	memcpy(s->names[s->n++], name, len + 1);
}

static unsigned scan(const char *text, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	unsigned n = sg_py_imports((const uint8_t *)text, strlen(text), on_name, s);
	CHECK_EQ(n, s->n);
	return n;
}

static struct seen seen;

TEST(a_command_line_gives_its_imports_in_order)
{
	CHECK_EQ(scan("import asyncio, json, email.mime.multipart, xml.dom.minidom as md; "
		      "print(\"hello\")", &seen), 4u);
	CHECK_STR(seen.names[0], "asyncio");
	CHECK_STR(seen.names[1], "json");
	CHECK_STR(seen.names[2], "email.mime.multipart");
	CHECK_STR(seen.names[3], "xml.dom.minidom");
}

TEST(a_script_gives_its_imports_and_from_imports_members)
{
	const char *text =
		"#!/usr/bin/env python3\n"
		"\"\"\"An app.\"\"\"\n"
		"import os  # import not_this\n"
		"from http.server import HTTPServer, BaseHTTPRequestHandler as H\n"
		"from . import sibling\n"
		"from .pkg import other\n"
		"def main():\n"
		"    import logging.handlers\n"
		"    x = 1; import sqlite3\n"
		"importer = 3\n"
		"fromage = 4\n"
		"from (bad) import x\n";

	CHECK_EQ(scan(text, &seen), 6u);
	CHECK_STR(seen.names[0], "os");
	CHECK_STR(seen.names[1], "http.server");
	CHECK_STR(seen.names[2], "http.server.HTTPServer");
	CHECK_STR(seen.names[3], "http.server.BaseHTTPRequestHandler");
	CHECK_STR(seen.names[4], "logging.handlers");
	CHECK_STR(seen.names[5], "sqlite3");
}

TEST(at_most_the_limit_and_no_overlong_name)
{
	static char text[SG_PY_IMPORTS_MAX * 2 * 16 + 600];
	size_t at = (size_t)snprintf(text, sizeof(text), "import %0*d\n", SG_PY_MODULE_MAX + 1, 0);

	text[7] = 'x';   /* an identifier, one byte too long: skipped */
	for (unsigned i = 0; i < SG_PY_IMPORTS_MAX * 2; i++)
		at += (size_t)snprintf(text + at, sizeof(text) - at, "import m%u\n", i);
	CHECK_EQ(scan(text, &seen), SG_PY_IMPORTS_MAX);
	CHECK_STR(seen.names[0], "m0");
}

/* Every prefix of a source: in bounds (ASan checks the reads against an exact-size copy). */
TEST(every_truncation_stays_in_bounds)
{
	const char *text = "import a.b as c, d\nfrom e.f import (g, h)\n";
	size_t len = strlen(text);

	for (size_t cut = 0; cut <= len; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1);
		memcpy(copy, text, cut);
		memset(&seen, 0, sizeof(seen));
		unsigned n = sg_py_imports(copy, cut, on_name, &seen);
		free(copy);
		CHECK(n <= 5);
	}
	CHECK_EQ(scan(text, &seen), 5u);
	CHECK_STR(seen.names[4], "e.f.h");
}

TEST_MAIN()
